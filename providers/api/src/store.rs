//! The secret store contract: where private keys and consumer secrets live, with CURRENT /
//! PENDING / PREVIOUS stages, and where the rotation journal of each credential is kept.

use crate::{
    Generation, JournalEntry, JournalRead, KeyCustody, Material, Public, Result, RotationId, Stage,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::fmt;
use std::sync::Arc;

/// What a store knows about one stored generation; never its secret half.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionInfo {
    /// The generation number.
    pub generation: Generation,
    /// Its public half: the certificate of a key, the consumer key of a consumer secret.
    pub public: Public,
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

/// A generation read back from a store, with what is known about it.
#[derive(Debug)] // safe: Material's Debug is redacted
pub struct StoredVersion {
    /// Version metadata.
    pub info: VersionInfo,
    /// The private key or consumer secret.
    pub material: Material,
}

/// A new generation to stage.
#[derive(Debug)]
pub struct NewVersion<'a> {
    /// Its generation number: one more than the current one.
    pub generation: Generation,
    /// The private key or consumer secret.
    pub material: &'a Material,
    /// Its public half: a certificate already proven to match the key, or the consumer key.
    pub public: &'a Public,
    /// The rotation staging it (the idempotency key).
    pub rotation_id: &'a RotationId,
}

/// One way a store leaves a credential's keys open to others ([`SecretStore::exposure`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exposure {
    /// Whether others can read (or replace) a private key itself; otherwise only what surrounds
    /// it (names, certificates) is open.
    pub key_exposed: bool,
    /// What is open and how to close it, e.g. `keys/billing/000002.key is mode 0644 (others can
    /// read it): chmod 600 …`.
    pub message: String,
}

/// The lease on a credential's rotation: only its holder may write the credential's stages,
/// journal or app certificate.
///
/// A lease is a fence, not just a lock: each one carries a number greater than that of every lease
/// taken before on the same credential, written with the store's conditional write, and every
/// journal entry carries it, so a runner whose lease expired and was taken over cannot append
/// (see [`crate::check_fence`]) and learns it from [`RotationLock::confirm`] before its next write.
#[async_trait]
pub trait RotationLock: fmt::Debug + Send + Sync {
    /// The fencing number: greater than every earlier lease's on the same credential.
    fn fence(&self) -> u64;

    /// Proves, by reading the store, that the lease is still this holder's; extends it when more
    /// than half of its time to live has passed.
    ///
    /// # Behavior
    /// - Fails with `LeaseLost` when another holder took the lease (a greater fence) or it was
    ///   released. An expired lease nobody took is extended and still counts as held.
    async fn confirm(&self) -> Result<()>;

    /// Gives the lease back.
    ///
    /// # Behavior
    /// - A lease that is never released (the process died) is freed by the store itself: the OS
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
    async fn preflight(&self, credential: &str) -> Result<()>;

    /// The stage map of `credential`.
    ///
    /// # Behavior
    /// - A credential the store has never seen yields an empty [`Stages`], not an error.
    /// - Never returns key bytes.
    async fn stages(&self, credential: &str) -> Result<Stages>;

    /// The generation carrying `stage`, with its secret half.
    ///
    /// # Behavior
    /// - `Ok(None)` when no version carries `stage`.
    async fn read_stage(&self, credential: &str, stage: Stage) -> Result<Option<StoredVersion>>;

    /// Writes a new generation as PENDING.
    ///
    /// # Behavior
    /// - Idempotent per rotation: if PENDING already holds this generation with the same
    ///   fingerprint, succeeds and writes nothing.
    /// - Fails with `Conflict` if PENDING holds a different generation (another rotation is in
    ///   flight) or if the generation is not greater than CURRENT's.
    /// - Never changes which version is CURRENT. The secret is durable before this returns.
    /// - Stores every kind of material ([`Material`]): a private key with its certificate, or a
    ///   consumer key and secret.
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

    /// Clears PENDING when it holds `generation`, keeping the key recoverable through
    /// [`SecretStore::read_generation`] (abort after the certificate may have reached the app:
    /// the app may have trusted that key, so it is not destroyed).
    ///
    /// # Behavior
    /// - Succeeds without change when PENDING does not hold `generation`.
    /// - Never touches CURRENT or PREVIOUS.
    async fn discard(&self, credential: &str, generation: Generation) -> Result<()>;

    /// The key of `generation`, whatever stage it carries, including none (discarded).
    ///
    /// # Behavior
    /// - `Ok(None)` when the generation was destroyed or never stored.
    async fn read_generation(
        &self,
        credential: &str,
        generation: Generation,
    ) -> Result<Option<StoredVersion>>;

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
    /// - Refuses with `LeaseLost`, writing nothing, when the journal holds an entry with a greater
    ///   fence than `entry`'s ([`crate::check_fence`]); the check and the append are one
    ///   conditional write.
    /// - Stores what [`crate::link`] makes of `entry` in that same write: `prev` naming the
    ///   journal's last entry and `hash` set, whatever the caller put there. A store that drops
    ///   old entries keeps the newest dropped one's hash ([`crate::anchor_after`]) and returns
    ///   it as [`JournalRead::anchor`].
    async fn append_journal(&self, credential: &str, entry: &JournalEntry) -> Result<()>;

    /// The journal of `credential` as far as it can be read, oldest first.
    ///
    /// # Behavior
    /// - Empty when no rotation was ever journaled.
    /// - An entry that cannot be parsed is left out and named in [`JournalRead::damaged`] (with
    ///   where it is and what is wrong, never its contents), with the store's way to repair it in
    ///   [`JournalRead::repair`]; the entries around it are returned.
    /// - Says where each entry is ([`JournalRead::locations`]), in the same terms as a damaged
    ///   one's location.
    /// - Fails only when the journal cannot be read at all (the store is unreachable, or the
    ///   value holding the journal is not one).
    async fn scan_journal(&self, credential: &str) -> Result<JournalRead>;

    /// The whole journal of `credential`, oldest first: [`SecretStore::scan_journal`], refused
    /// with `Conflict` ([`JournalRead::complete`]) when an entry is damaged.
    ///
    /// # Behavior
    /// - Empty when no rotation was ever journaled.
    async fn read_journal(&self, credential: &str) -> Result<Vec<JournalEntry>> {
        let read = self.scan_journal(credential).await?;
        read.complete(&self.to_string(), credential)
    }

    /// Destroys the keys of `credential` that the store's retention no longer keeps, and returns
    /// their generations (ascending). Called at the end of every rotation that finished, under
    /// its lease.
    ///
    /// # Behavior
    /// - Never touches the generations CURRENT, PENDING and PREVIOUS name.
    /// - Idempotent: a second call destroys nothing; a call interrupted half-way is finished by
    ///   the next one.
    /// - The default destroys nothing: for stores whose own retention bounds old versions
    ///   (Vault, whose KV keeps only `max_versions` versions of each key).
    async fn prune(&self, credential: &str) -> Result<Vec<Generation>> {
        let _ = credential;
        Ok(Vec::new())
    }

    /// How the store leaves `credential`'s keys open to others on this machine (a key file or a
    /// folder other users can read), one line each; empty when nothing is. `rekey check` reports
    /// them.
    ///
    /// # Behavior
    /// - Never writes, and never fails: what cannot be inspected is not reported.
    /// - The default reports nothing: stores whose access is governed by their own policies
    ///   (Vault, AWS).
    async fn exposure(&self, credential: &str) -> Vec<Exposure> {
        let _ = credential;
        Vec::new()
    }

    /// The key-management service that holds this store's keys, when it keeps keys in custody
    /// ([`crate::CustodyStore`]): generation happens there, and only it signs.
    ///
    /// # Behavior
    /// - The default: `None`, the store holds private keys itself.
    fn custody(&self) -> Option<Arc<dyn KeyCustody>> {
        None
    }

    /// Takes the credential's rotation lease for `holder` (a rotation id or an operator label).
    ///
    /// # Behavior
    /// - Fails at once with `Busy`, naming the holder when known, if another process holds it.
    /// - The new lease's fence is greater than every earlier lease's on this credential, even
    ///   after a process died holding one.
    /// - The lease lasts until the returned guard is released or dropped, the process dies, or
    ///   (remote stores) its time to live passes without a `confirm`.
    async fn lock(&self, credential: &str, holder: &str) -> Result<Box<dyn RotationLock>>;
}
