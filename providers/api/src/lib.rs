//! The shared vocabulary of rekey and the traits every provider implements.
//!
//! The orchestrator (root crate) only ever talks to the world through [`SecretStore`] and
//! [`CertificateTarget`]; providers convert their SDK types and errors at their own edge, so no
//! SDK type crosses this crate.
//!
//! Private key bytes live in [`KeyMaterial`] and leave it only through
//! [`KeyMaterial::expose_secret_pem`]; every other secret (tokens, webhook URLs, signing secrets)
//! is a [`SecretString`], leaving only through [`SecretString::expose_secret`]: the accessors
//! reviewers grep for.

mod atomic;
mod backoff;
mod cert;
mod chain;
mod clock;
pub mod config;
mod consumer;
mod consumer_target;
mod custody;
mod endpoint;
mod error;
mod journal;
mod key;
pub mod lease;
mod record;
mod secret;
mod severity;
mod source;
mod store;
mod target;
mod types;

pub use atomic::write_atomic;
pub use backoff::Backoff;
pub use cert::{Certificate, Fingerprint};
pub use chain::{
    ChainBreak, ChainProblem, ChainState, ChainVerdict, GENESIS, anchor_after, canonical,
    chain_hash, entry_hash, link, verify_chain,
};
#[cfg(debug_assertions)]
pub use clock::advance_on_this_thread;
pub use clock::now;
pub use consumer::{ConsumerKey, ConsumerSecret, CredentialKind, Material, Public};
pub use consumer_target::{ConsumerSecretTarget, Proof, Staged, StagedState};
pub use custody::{
    CreatedKey, CustodyKey, CustodyService, CustodyStore, KeyCustody, KeyHandle, KeyState, Signer,
};
pub use endpoint::{Endpoint, endpoint, is_loopback_host};
pub use error::{Error, ErrorKind, Result};
pub use journal::{
    Damage, JournalEntry, JournalRead, Phase, Slot, Step, check_fence, greatest_fence,
    parse_problem,
};
pub use key::KeyMaterial;
pub use record::{check_credential_name, parse_version_record, take_material, version_record};
pub use secret::SecretString;
pub use severity::Severity;
pub use source::{Env, SecretSource};
pub use store::{
    Exposure, NewVersion, RotationLock, SecretStore, Stages, StoredVersion, VersionInfo,
};
pub use target::{CertificateTarget, Installed, Probe, Revoked};
pub use types::{Generation, RotationId, Stage};
