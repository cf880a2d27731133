//! The secret store contract: where private keys live, with CURRENT / PENDING / PREVIOUS stages,
//! and where the rotation journal of each credential is kept.

use crate::{Certificate, Generation, JournalEntry, KeyMaterial, Result, RotationId, Stage};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::fmt;

/// What a store knows about one stored generation; never the key itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionInfo {
    /// The generation number.
    pub generation: Generation,
    /// Its certificate.
    pub certificate: Certificate,
    /// When the store wrote it.
    pub created_at: DateTime<Utc>,
    /// The rotation that introduced it, if it came from one.
    pub rotation_id: Option<RotationId>,
}

/// The stage map of one credential.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stages {
    /// What consumers read.
    pub current: Option<VersionInfo>,
    /// A staged key not yet proven.
    pub pending: Option<VersionInfo>,
    /// The key before the last promotion.
    pub previous: Option<VersionInfo>,
}

impl Stages {
    /// The version carrying `stage`.
    pub fn get(&self, stage: Stage) -> Option<&VersionInfo> {
        match stage {
            Stage::Current => self.current.as_ref(),
            Stage::Pending => self.pending.as_ref(),
            Stage::Previous => self.previous.as_ref(),
        }
    }
}

/// A key read back from a store, with what is known about it.
#[derive(Debug)] // safe: KeyMaterial's Debug is redacted
pub struct StoredKey {
    /// Version metadata.
    pub info: VersionInfo,
    /// The private key.
    pub key: KeyMaterial,
}

/// A new generation to stage.
#[derive(Debug)]
pub struct NewVersion<'a> {
    /// Its generation number: one more than the current one.
    pub generation: Generation,
    /// The private key.
    pub key: &'a KeyMaterial,
    /// Its certificate, already proven to match `key`.
    pub certificate: &'a Certificate,
    /// The rotation staging it (the idempotency key).
    pub rotation_id: &'a RotationId,
}

/// Held while a rotation runs.
#[async_trait]
pub trait RotationLock: fmt::Debug + Send + Sync {
    /// Gives the lock back.
    ///
    /// # Behavior
    /// - A lock that is never released (the process died) is freed by the store itself: the OS
    ///   for a file lock, the lease's expiry for a remote store.
    async fn release(self: Box<Self>) -> Result<()>;
}

/// A place that keeps private keys for credentials.
///
/// A credential is named by the string the operator uses in `rekey.toml`; each store maps it to
/// its own layout (a directory, a KV path, a secret name).
#[async_trait]
pub trait SecretStore: fmt::Display + fmt::Debug + Send + Sync {
    /// Read-only preflight: the store is reachable and the credential's location is usable.
    ///
    /// # Behavior
    /// - Never writes. A credential that has no versions yet is not an error.
    async fn check(&self, credential: &str) -> Result<()>;

    /// The stage map of `credential`.
    ///
    /// # Behavior
    /// - A credential the store has never seen yields an empty [`Stages`], not an error.
    /// - Never returns key bytes.
    async fn stages(&self, credential: &str) -> Result<Stages>;

    /// The key carrying `stage`.
    ///
    /// # Behavior
    /// - `Ok(None)` when no version carries `stage`.
    async fn read_key(&self, credential: &str, stage: Stage) -> Result<Option<StoredKey>>;

    /// Writes a new generation as PENDING.
    ///
    /// # Behavior
    /// - Idempotent per rotation: if PENDING already holds this generation with the same
    ///   certificate fingerprint, succeeds and writes nothing.
    /// - Fails with `Conflict` if PENDING holds a different generation (another rotation is in
    ///   flight) or if the generation is not greater than CURRENT's.
    /// - Never changes which version is CURRENT. The key is durable before this returns.
    async fn stage(&self, credential: &str, new: &NewVersion<'_>) -> Result<()>;

    /// Makes the PENDING `generation` CURRENT; the old CURRENT becomes PREVIOUS, PENDING is cleared.
    ///
    /// # Behavior
    /// - Succeeds without change if `generation` is already CURRENT.
    /// - Fails with `NotFound` if PENDING does not hold `generation`.
    /// - Atomic for readers: there is never a moment with no CURRENT.
    async fn promote(&self, credential: &str, generation: Generation) -> Result<()>;

    /// Makes `to`, the PREVIOUS generation, CURRENT again; the generation that was CURRENT
    /// becomes PREVIOUS (rollback after a promotion).
    ///
    /// # Behavior
    /// - Succeeds without change if `to` is already CURRENT.
    /// - Fails with `NotFound` if `to` is neither CURRENT nor PREVIOUS.
    /// - Atomic for readers, like `promote`; conditional on the stage map it read (`Conflict` if
    ///   another writer moved CURRENT in between).
    async fn revert(&self, credential: &str, to: Generation) -> Result<()>;

    /// Permanently destroys every stored copy of `generation`'s key (emergency rekey, abort).
    ///
    /// # Behavior
    /// - Refuses with `Conflict` to destroy the CURRENT generation.
    /// - A PENDING or PREVIOUS stage holding it becomes empty.
    /// - Destroying a generation that is already gone, or never existed, succeeds.
    async fn destroy(&self, credential: &str, generation: Generation) -> Result<()>;

    /// Appends one entry to the credential's rotation journal.
    ///
    /// # Behavior
    /// - Durable before it returns (the journal is write-ahead).
    /// - Appending the same entry twice is harmless; readers take the last entry per step.
    async fn append_journal(&self, credential: &str, entry: &JournalEntry) -> Result<()>;

    /// The whole journal of `credential`, oldest first.
    ///
    /// # Behavior
    /// - Empty when no rotation was ever journaled.
    async fn read_journal(&self, credential: &str) -> Result<Vec<JournalEntry>>;

    /// Takes the credential's rotation lock for `holder` (a rotation id or an operator label).
    ///
    /// # Behavior
    /// - Fails at once with `Conflict`, naming the holder when known, if another process holds it.
    /// - The lock lasts until the returned guard is dropped or the process dies.
    async fn lock(&self, credential: &str, holder: &str) -> Result<Box<dyn RotationLock>>;
}
