//! The shared vocabulary of rekey and the traits every provider implements.
//!
//! The orchestrator (root crate) only ever talks to the world through [`SecretStore`] and
//! [`CertificateTarget`]; providers convert their SDK types and errors at their own edge, so no
//! SDK type crosses this crate.
//!
//! Private key bytes live in [`KeyMaterial`] and leave it only through
//! [`KeyMaterial::expose_secret_pem`], the one accessor reviewers grep for.

mod cert;
mod error;
mod journal;
mod key;
mod store;
mod target;
mod types;

pub use cert::{Certificate, Fingerprint};
pub use error::{Error, ErrorKind, Result};
pub use journal::{JournalEntry, Phase, Step};
pub use key::KeyMaterial;
pub use store::{NewVersion, RotationLock, SecretStore, Stages, StoredKey, VersionInfo};
pub use target::{CertificateTarget, Installed, Probe};
pub use types::{Generation, RotationId, Stage};
