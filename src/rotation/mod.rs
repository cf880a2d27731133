//! The rotation protocol: generate → stage → (prepare) → publish → verify → promote → (activate →
//! adopt) → finalize, and its undo: restore → revert → (recall) → close (the steps in parentheses only for
//! a credential with consumers).
//!
//! Every step writes a journal entry to the credential's primary store before it acts and another
//! when it is done, and every step is idempotent for its rotation id, so a run that dies anywhere
//! is finished (`rekey resume`, or `rekey rotate` while the rotation is young) or undone
//! (`rekey abort`) by a later run with the same id, generation and (once staged) the same key.
//!
//! Only the holder of the credential's lease writes: journal entries carry the lease's fence, which
//! the store checks in the same conditional write, and the lease is confirmed against the store
//! before every other write (stores, the app), so a runner whose lease was taken over stops before
//! its next write.
//!
//! This module never prints: it reports [`Progress`] to a callback the CLI renders.

mod consumer_steps;
mod emergency;
mod emergency_steps;
pub mod evidence;
mod history;
mod hold;
mod inflight;
mod outcome;
mod plan;
mod retry;
mod secret_steps;
mod setup;
mod store_steps;
mod target;
mod undo;
mod verify;
mod wired;

pub use emergency::Emergency;
pub use history::{OpenRotation, last_success, open_rotation};
pub use inflight::hostname;
pub use outcome::{Closed, Ending, Progress, Stopped, Unadopted};
pub use plan::Plan;
pub use setup::Intent;
pub use target::consumer as consumer_target;
pub use wired::{plan_credential, rotate_credential, rotate_credential_in, target_of};
