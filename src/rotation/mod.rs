//! The rotation protocol: generate → stage → [prepare] → publish → verify → promote → [activate →
//! adopt] → finalize, and its undo: restore → revert → [recall] → close (the bracketed steps only for
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
mod history;
mod hold;
mod inflight;
mod outcome;
mod plan;
mod retry;
mod store_steps;
mod verify;
mod wired;

pub use emergency::Emergency;
pub use history::{last_success, open_rotation};
pub use outcome::{Closed, Ending, Progress, Stopped, Unadopted};
pub use plan::{Plan, plan};
pub use wired::{plan_credential, rotate_credential};

use crate::config::OnVerifyFailure;
use crate::consumers::{Consumer, CredentialConsumers};
use crate::pki::CertSpec;
use hold::hold_point;
use inflight::under_lease;
use rekey_api::{CertificateTarget, SecretStore, Step};
use retry::retrying;
use std::time::Duration;

/// Journal detail prefixes that tell an operator's abort from an automatic rollback.
const ABORTED: &str = "aborted: ";

const ROLLED_BACK: &str = "rolled back: ";

/// Everything one rotation needs.
pub struct Rotation<'a> {
    /// The credential's name.
    pub credential: &'a str,
    /// Where its keys live, primary first. The primary also holds the journal and the lease;
    /// every store receives the same generations.
    pub stores: &'a [Box<dyn SecretStore>],
    /// The app that trusts its certificate.
    pub target: &'a dyn CertificateTarget,
    /// What to generate.
    pub spec: &'a CertSpec,
    /// How long Salesforce may take to accept the new key.
    pub verify_timeout: Duration,
    /// `Intent::Rotate` continues an open rotation younger than this and refuses an older one.
    pub resume_max_age: Duration,
    /// What to do when Salesforce never accepts the published key.
    pub on_verify_failure: OnVerifyFailure,
    /// Who uses the key, and what to do when one of them does not adopt a new one.
    pub consumers: &'a CredentialConsumers,
}

impl Rotation<'_> {
    /// The store that holds the journal and the lease, and the one staged first.
    fn primary(&self) -> &dyn SecretStore {
        self.stores[0].as_ref()
    }

    /// The steps a rotation runs, in order: `undoing` one, an `emergency` one, or a plain one;
    /// without consumers, none of the consumer steps.
    fn steps(&self, emergency: Option<&Emergency>, undoing: bool) -> Vec<Step> {
        let steps = if undoing {
            Step::UNDO.to_vec()
        } else if let Some(e) = emergency {
            e.steps()
        } else {
            Step::ALL.to_vec()
        };
        let has_consumers = !self.consumers.consumers.is_empty();
        steps
            .into_iter()
            .filter(|s| has_consumers || !s.is_consumer_step())
            .collect()
    }

    /// The consumers' names, for messages: "etl, billing-api".
    fn consumer_names(&self) -> String {
        self.consumers
            .consumers
            .iter()
            .map(Consumer::name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The stores, for messages: "file(keys), vault(…)".
    fn store_names(&self) -> String {
        self.stores
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What the operator asked for.
#[derive(Clone, Debug)]
pub enum Intent {
    /// `rekey rotate`: continue an open rotation younger than `resume_max_age`, else start one.
    Rotate,
    /// `rekey resume`: continue the open rotation, whatever its age.
    Resume,
    /// `rekey abort`: undo the open rotation.
    Abort {
        /// Why, for the journal.
        reason: String,
    },
    /// `rekey emergency`: a rotation for a leaked key (or the continuation of one).
    Emergency(Emergency),
}

impl Intent {
    fn verb(&self) -> &'static str {
        match self {
            Intent::Rotate => "rotate",
            Intent::Resume => "resume",
            Intent::Abort { .. } => "abort",
            Intent::Emergency(_) => "emergency rekey",
        }
    }
}

/// Runs `intent` on `rotation.credential`: a new rotation, or the continuation or undo of the open
/// one.
pub async fn rotate(
    rotation: &Rotation<'_>,
    intent: &Intent,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> std::result::Result<Closed, Stopped> {
    // Preflight before anything is written: the store grants what a rotation needs, the admin
    // connection works, and the app is one rekey may rotate.
    for store in rotation.stores {
        retrying("store preflight", || store.check(rotation.credential))
            .await
            .map_err(Stopped::before_start)?;
    }
    retrying("Salesforce preflight", || rotation.target.check())
        .await
        .map_err(Stopped::before_start)?;
    let holder = format!(
        "rekey {} on {} (pid {})",
        intent.verb(),
        hostname(),
        std::process::id()
    );
    let lease = rotation
        .primary()
        .lock(rotation.credential, &holder)
        .await
        .map_err(Stopped::before_start)?;
    hold_point("leased").await;
    let result = under_lease(rotation, intent, lease.as_ref(), progress).await;
    // The outcome stands either way; a lease that cannot be given back expires by itself.
    if let Err(e) = lease.release().await {
        tracing::warn!(credential = rotation.credential, error = %e, "could not release the rotation lease");
    }
    result
}

/// This machine's name, for lease holders and evidence.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown host".into())
}
