//! rekey's HashiCorp Vault (and OpenBao) secret store on a KV v2 mount.
//!
//! Each credential is four KV keys under `{mount}/{prefix}/{credential}/`: `current` (what
//! consumers read; a promotion is one write), `pending`, `journal` and `lock`. PREVIOUS is the
//! version of `current` before its latest one, so a rollback needs no access beyond the
//! credential's own keys. Every write is check-and-set. See this crate's README for the layout
//! and the minimal policy.

mod client;
mod config;
mod kv;

pub use config::{
    DEFAULT_LOCK_TTL, DEFAULT_MAX_VERSIONS, DEFAULT_MOUNT, DEFAULT_PATH_PREFIX, VaultAuth,
    VaultConfig, VaultToken,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use client::Client;
use kv::{Kv, Meta, Version, Written};
use rekey_api::{
    Error, ErrorKind, Generation, JournalEntry, KeyMaterial, NewVersion, Result, RotationLock,
    SecretStore, Stage, Stages, StoredKey, VersionInfo,
};
use serde_json::{Map, Value, json};
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// The journal keeps this many newest entries; older ones drop off (a KV value has a size limit).
pub const JOURNAL_CAP: usize = 500;
/// Journal appends re-read and retry this often when another writer got in between.
const JOURNAL_ATTEMPTS: u32 = 10;

/// The four KV keys of a credential.
#[derive(Clone, Copy)]
enum Leaf {
    Current,
    Pending,
    Journal,
    Lock,
}

impl Leaf {
    const ALL: [Leaf; 4] = [Leaf::Current, Leaf::Pending, Leaf::Journal, Leaf::Lock];

    fn name(self) -> &'static str {
        match self {
            Leaf::Current => "current",
            Leaf::Pending => "pending",
            Leaf::Journal => "journal",
            Leaf::Lock => "lock",
        }
    }
}

/// Shared by the store and its lock guards.
#[derive(Debug)]
struct Inner {
    kv: Kv,
    prefix: String,
    lock_ttl: Duration,
    /// Releases started by dropped lock guards; `lock()` waits for them so that dropping a guard
    /// and locking again in the same process behaves like a file lock.
    releases: StdMutex<Vec<JoinHandle<()>>>,
}

impl Inner {
    /// `{prefix}/{credential}/{leaf}`: the KV key, relative to the mount.
    fn key(&self, credential: &str, leaf: Leaf) -> String {
        if self.prefix.is_empty() {
            format!("{credential}/{}", leaf.name())
        } else {
            format!("{}/{credential}/{}", self.prefix, leaf.name())
        }
    }
}

/// A KV key's metadata and its latest live version.
struct Snapshot {
    key: String,
    meta: Option<Meta>,
    latest: Option<Version>,
}

impl Snapshot {
    /// The version a check-and-set write must name (0: the key does not exist yet).
    fn cas(&self) -> u64 {
        self.meta.as_ref().map_or(0, |m| m.current_version)
    }
}

/// A key record (`current` or `pending` version) parsed, without the key.
struct Record {
    info: VersionInfo,
}

/// HashiCorp Vault / OpenBao KV v2 as a [`SecretStore`].
#[derive(Debug)] // safe: the config's secrets redact themselves; the live token is not printed
pub struct VaultStore {
    inner: Arc<Inner>,
    label: String,
}

impl VaultStore {
    /// Checks the configuration and reads the CA files; no network. Logs in on first use.
    pub fn new(config: VaultConfig) -> Result<Self> {
        let address = config.validate()?;
        let mount = config.mount.trim_matches('/').to_string();
        let prefix = config.path_prefix.trim_matches('/').to_string();
        let namespace = config.namespace.clone();
        let label = match &namespace {
            Some(ns) => format!("vault({address} namespace {ns} {mount}/{prefix})"),
            None => format!("vault({address} {mount}/{prefix})"),
        };
        let (max_versions, lock_ttl) = (config.max_versions, config.lock_ttl);
        let client = Client::new(config, address)?;
        Ok(VaultStore {
            inner: Arc::new(Inner {
                kv: Kv::new(client, &mount, max_versions),
                prefix,
                lock_ttl,
                releases: StdMutex::new(Vec::new()),
            }),
            label,
        })
    }

    fn kv(&self) -> &Kv {
        &self.inner.kv
    }

    async fn snapshot(&self, credential: &str, leaf: Leaf) -> Result<Snapshot> {
        rekey_api::check_credential_name(credential)?;
        let key = self.inner.key(credential, leaf);
        let meta = self.kv().metadata(&key).await?;
        let latest = self.kv().latest(&key, meta.as_ref()).await?;
        Ok(Snapshot { key, meta, latest })
    }

    /// Parses a `current`/`pending` version; `None` for a version without a key (a cleared
    /// `pending`).
    fn record(&self, key: &str, version: &Version) -> Result<Option<Record>> {
        let info = rekey_api::parse_key_record(&version.data, version.created).map_err(|what| {
            Error::new(
                ErrorKind::Unexpected,
                format!("{self}: version {} of {} has {what}", version.number, self.kv().data_path(key)),
            )
            .with_hint("the value was not written by rekey; restore a good version with `vault kv rollback`")
        })?;
        Ok(info.map(|info| Record { info }))
    }

    fn key_material(&self, key: &str, version: &mut Version) -> Result<KeyMaterial> {
        rekey_api::take_key(&mut version.data).map_err(|e| {
            e.context(format!(
                "{self}: version {} of {}",
                version.number,
                self.kv().data_path(key)
            ))
        })
    }

    /// CURRENT: the latest live version of `current`.
    fn current_of(&self, snap: &Snapshot) -> Result<Option<Record>> {
        snap.latest
            .as_ref()
            .map(|v| self.record(&snap.key, v))
            .transpose()
            .map(Option::flatten)
    }

    /// PENDING: the latest live version of `pending`, if it holds a key newer than CURRENT.
    fn pending_of(&self, snap: &Snapshot, current: Option<&Record>) -> Result<Option<Record>> {
        let pending = self.current_of(snap)?;
        Ok(pending.filter(|p| current.is_none_or(|c| p.info.generation > c.info.generation)))
    }

    /// PREVIOUS: the version of `current` just before its latest, if live and a different
    /// generation.
    async fn previous_of(
        &self,
        snap: &Snapshot,
        current: Option<&Record>,
    ) -> Result<Option<(Record, Version)>> {
        let (Some(meta), Some(current)) = (&snap.meta, current) else {
            return Ok(None);
        };
        let number = meta.current_version.saturating_sub(1);
        if !meta
            .versions
            .get(&number)
            .is_some_and(kv::VersionState::live)
        {
            return Ok(None);
        }
        let Some(version) = self.kv().read(&snap.key, number).await? else {
            return Ok(None);
        };
        Ok(self
            .record(&snap.key, &version)?
            .filter(|r| r.info.generation != current.info.generation)
            .map(|r| (r, version)))
    }

    fn stale(&self, key: &str, expected: u64) -> Error {
        Error::new(
            ErrorKind::Conflict,
            format!(
                "{self}: someone else changed {} (expected version {expected})",
                self.kv().data_path(key)
            ),
        )
        .with_hint(
            "another writer moved this credential; re-read its state (rekey status) and retry",
        )
    }

    /// Writes `data` with check-and-set, after putting `cas_required`/`max_versions` in place.
    async fn write(&self, snap: &Snapshot, data: &Value) -> Result<u64> {
        self.kv()
            .ensure_metadata(&snap.key, snap.meta.as_ref())
            .await?;
        match self.kv().write(&snap.key, data, snap.cas()).await? {
            Written::Done(version) => Ok(version),
            Written::Stale => Err(self.stale(&snap.key, snap.cas())),
        }
    }

    /// Replaces a PENDING that has been promoted with a record without a key, so that opt-in
    /// readers of `pending` stop seeing it and a later revert does not resurrect it.
    async fn clear_pending(&self, pending: &Snapshot, promoted: Generation) -> Result<()> {
        let data = json!({
            "cleared_at": Utc::now().to_rfc3339(),
            "promoted_generation": promoted.0.to_string(),
        });
        self.write(pending, &data).await.map(|_| ())
    }

    /// Every live version of `key` whose record holds `generation`.
    async fn versions_holding(&self, key: &str, generation: Generation) -> Result<Vec<u64>> {
        let Some(meta) = self.kv().metadata(key).await? else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        for (number, state) in &meta.versions {
            if !state.live() {
                continue;
            }
            if let Some(version) = self.kv().read(key, *number).await?
                && self
                    .record(key, &version)?
                    .is_some_and(|r| r.info.generation == generation)
            {
                found.push(*number);
            }
        }
        Ok(found)
    }

    /// Every path and capability a rotation needs.
    fn required_capabilities(&self, credential: &str) -> Vec<(String, &'static [&'static str])> {
        const RW: &[&str] = &["create", "read", "update"];
        const DESTROY: &[&str] = &["update"];
        let mut needed = Vec::new();
        for leaf in Leaf::ALL {
            let key = self.inner.key(credential, leaf);
            needed.push((self.kv().data_path(&key), RW));
            needed.push((self.kv().metadata_path(&key), RW));
            if matches!(leaf, Leaf::Current | Leaf::Pending) {
                needed.push((self.kv().destroy_path(&key), DESTROY));
            }
        }
        needed
    }
}

impl fmt::Display for VaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

/// Deterministic-enough jitter for retries, without a random number generator.
fn jitter(attempt: u32) -> Duration {
    let spread = RandomState::new().hash_one(attempt) % 50;
    Duration::from_millis(10 * u64::from(attempt) + spread)
}

#[async_trait]
impl SecretStore for VaultStore {
    async fn check(&self, credential: &str) -> Result<()> {
        rekey_api::check_credential_name(credential)?;
        let mount = &self.kv().mount;
        match self.kv().mount_info().await? {
            None => {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("{self}: mount '{mount}' does not exist or this token may not use it"),
                )
                .with_hint(format!(
                    "enable it (vault secrets enable -path={mount} kv-v2) or grant the token the policy in the rekey-vault README"
                )));
            }
            Some((kind, version)) if kind != "kv" || version != "2" => {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("{self}: mount '{mount}' is a '{kind}' engine version {version}, not KV version 2"),
                )
                .with_hint(format!("upgrade it with: vault kv enable-versioning {mount}")));
            }
            Some(_) => {}
        }
        let needed = self.required_capabilities(credential);
        let paths: Vec<String> = needed.iter().map(|(p, _)| p.clone()).collect();
        let held = self.kv().capabilities(&paths).await?;
        let mut missing = Vec::new();
        for (path, caps) in &needed {
            let have = held.get(path).cloned().unwrap_or_default();
            if have.iter().any(|c| c == "root") {
                continue;
            }
            let deny = have.iter().any(|c| c == "deny");
            for cap in *caps {
                if deny || !have.iter().any(|c| c == cap) {
                    missing.push(format!("token lacks '{cap}' on {path}"));
                }
            }
        }
        if !missing.is_empty() {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!("{self}: {}", missing.join("; ")),
            )
            .with_hint("grant the policy shown in the rekey-vault README for this credential"));
        }
        self.stages(credential).await.map(|_| ())
    }

    async fn stages(&self, credential: &str) -> Result<Stages> {
        let current_snap = self.snapshot(credential, Leaf::Current).await?;
        let current = self.current_of(&current_snap)?;
        let pending_snap = self.snapshot(credential, Leaf::Pending).await?;
        let pending = self.pending_of(&pending_snap, current.as_ref())?;
        let previous = self.previous_of(&current_snap, current.as_ref()).await?;
        Ok(Stages {
            current: current.map(|r| r.info),
            pending: pending.map(|r| r.info),
            previous: previous.map(|(r, _)| r.info),
        })
    }

    async fn read_key(&self, credential: &str, stage: Stage) -> Result<Option<StoredKey>> {
        let mut current_snap = self.snapshot(credential, Leaf::Current).await?;
        let current = self.current_of(&current_snap)?;
        let (key_name, found) = match stage {
            Stage::Current => (
                current_snap.key.clone(),
                current.and_then(|r| current_snap.latest.take().map(|v| (r, v))),
            ),
            Stage::Pending => {
                let mut pending_snap = self.snapshot(credential, Leaf::Pending).await?;
                let pending = self.pending_of(&pending_snap, current.as_ref())?;
                let found = pending.and_then(|r| pending_snap.latest.take().map(|v| (r, v)));
                (pending_snap.key, found)
            }
            Stage::Previous => (
                current_snap.key.clone(),
                self.previous_of(&current_snap, current.as_ref()).await?,
            ),
        };
        let Some((record, mut version)) = found else {
            return Ok(None);
        };
        let key = self.key_material(&key_name, &mut version)?;
        Ok(Some(StoredKey {
            info: record.info,
            key,
        }))
    }

    async fn stage(&self, credential: &str, new: &NewVersion<'_>) -> Result<()> {
        let current_snap = self.snapshot(credential, Leaf::Current).await?;
        let current = self.current_of(&current_snap)?;
        let pending_snap = self.snapshot(credential, Leaf::Pending).await?;
        if let Some(pending) = self.pending_of(&pending_snap, current.as_ref())? {
            let held = pending.info;
            if held.generation == new.generation
                && held.certificate.fingerprint == new.certificate.fingerprint
            {
                return Ok(());
            }
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{self}: credential '{credential}' already has generation {} pending (rotation {})",
                    held.generation,
                    held.rotation_id.map_or_else(|| "unknown".to_string(), |r| r.0)
                ),
            )
            .with_hint("finish or abandon that rotation before starting another"));
        }
        if let Some(current) = current.filter(|c| c.info.generation >= new.generation) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{self}: cannot stage generation {} of '{credential}': generation {} is already current",
                    new.generation, current.info.generation
                ),
            ));
        }
        let info = VersionInfo {
            generation: new.generation,
            certificate: new.certificate.clone(),
            created_at: Utc::now(),
            rotation_id: Some(new.rotation_id.clone()),
        };
        let data = rekey_api::key_record(&info, new.key);
        let version = self.write(&pending_snap, &data).await?;
        tracing::info!(store = %self, credential, generation = new.generation.0, version, "staged pending key");
        Ok(())
    }

    async fn promote(&self, credential: &str, generation: Generation) -> Result<()> {
        let current_snap = self.snapshot(credential, Leaf::Current).await?;
        let current = self.current_of(&current_snap)?;
        let mut pending_snap = self.snapshot(credential, Leaf::Pending).await?;
        let pending_record = self.current_of(&pending_snap)?;
        if current
            .as_ref()
            .is_some_and(|c| c.info.generation == generation)
        {
            // Finish a promotion interrupted between the CURRENT write and clearing PENDING.
            if pending_record.is_some_and(|p| p.info.generation == generation) {
                self.clear_pending(&pending_snap, generation).await?;
            }
            return Ok(());
        }
        let pending = self.pending_of(&pending_snap, current.as_ref())?;
        let (Some(pending), Some(version)) = (
            pending.filter(|p| p.info.generation == generation),
            pending_snap.latest.as_mut(),
        ) else {
            // A concurrent promotion of the same generation can land between the two reads
            // above (`current` read before its write, `pending` after it was cleared): then it
            // is done, not missing.
            let now = self.snapshot(credential, Leaf::Current).await?;
            if self
                .current_of(&now)?
                .is_some_and(|c| c.info.generation == generation)
            {
                return Ok(());
            }
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "{self}: generation {generation} of '{credential}' is not pending, so it cannot be promoted"
                ),
            ));
        };
        let key = self.key_material(&pending_snap.key, version)?;
        let data = rekey_api::key_record(&pending.info, &key);
        let written = self.write(&current_snap, &data).await?;
        tracing::info!(store = %self, credential, generation = generation.0, version = written, "promoted pending key to current");
        pending_snap.latest = None;
        self.clear_pending(&pending_snap, generation).await
    }

    async fn revert(&self, credential: &str, to: Generation) -> Result<()> {
        let current_snap = self.snapshot(credential, Leaf::Current).await?;
        let current = self.current_of(&current_snap)?;
        if current.as_ref().is_some_and(|c| c.info.generation == to) {
            return Ok(());
        }
        let previous = self.previous_of(&current_snap, current.as_ref()).await?;
        let Some((record, mut version)) = previous.filter(|(r, _)| r.info.generation == to) else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "{self}: generation {to} of '{credential}' is neither current nor previous"
                ),
            ));
        };
        let key = self.key_material(&current_snap.key, &mut version)?;
        let data = rekey_api::key_record(&record.info, &key);
        let written = self.write(&current_snap, &data).await?;
        tracing::info!(store = %self, credential, generation = to.0, version = written, "reverted current to the previous key");
        Ok(())
    }

    async fn destroy(&self, credential: &str, generation: Generation) -> Result<()> {
        let current_snap = self.snapshot(credential, Leaf::Current).await?;
        if let Some(current) = self
            .current_of(&current_snap)?
            .filter(|c| c.info.generation == generation)
        {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{self}: refusing to destroy generation {} of '{credential}': it is current",
                    current.info.generation
                ),
            )
            .with_hint("rotate or revert first so that another generation is current"));
        }
        for leaf in [Leaf::Current, Leaf::Pending] {
            let key = self.inner.key(credential, leaf);
            let versions = self.versions_holding(&key, generation).await?;
            if !versions.is_empty() {
                self.kv().destroy(&key, &versions).await?;
                tracing::info!(store = %self, credential, generation = generation.0, ?versions, path = %self.kv().data_path(&key), "destroyed key versions");
            }
        }
        Ok(())
    }

    async fn append_journal(&self, credential: &str, entry: &JournalEntry) -> Result<()> {
        let line = serde_json::to_value(entry).map_err(|e| {
            Error::new(
                ErrorKind::Unexpected,
                format!("cannot encode a journal entry: {e}"),
            )
        })?;
        for attempt in 0..JOURNAL_ATTEMPTS {
            let snap = self.snapshot(credential, Leaf::Journal).await?;
            let mut entries = snap
                .latest
                .as_ref()
                .and_then(|v| v.data.get("entries"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            entries.push(line.clone());
            let excess = entries.len().saturating_sub(JOURNAL_CAP);
            entries.drain(..excess);
            self.kv()
                .ensure_metadata(&snap.key, snap.meta.as_ref())
                .await?;
            match self
                .kv()
                .write(&snap.key, &json!({ "entries": entries }), snap.cas())
                .await?
            {
                Written::Done(_) => return Ok(()),
                Written::Stale => tokio::time::sleep(jitter(attempt + 1)).await,
            }
        }
        let key = self.inner.key(credential, Leaf::Journal);
        Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "{self}: could not append to {} after {JOURNAL_ATTEMPTS} attempts: other writers kept changing it",
                self.kv().data_path(&key)
            ),
        )
        .temporary())
    }

    async fn read_journal(&self, credential: &str) -> Result<Vec<JournalEntry>> {
        let snap = self.snapshot(credential, Leaf::Journal).await?;
        let Some(version) = snap.latest else {
            return Ok(Vec::new());
        };
        let entries = version
            .data
            .get("entries")
            .cloned()
            .unwrap_or(Value::Array(Vec::new()));
        serde_json::from_value(entries).map_err(|e| {
            Error::new(
                ErrorKind::Unexpected,
                format!(
                    "{self}: version {} of {} is not a rekey journal: {e}",
                    version.number,
                    self.kv().data_path(&snap.key)
                ),
            )
        })
    }

    async fn lock(&self, credential: &str, holder: &str) -> Result<Box<dyn RotationLock>> {
        let pending: Vec<_> = self
            .inner
            .releases
            .lock()
            .map(|mut r| r.drain(..).collect())
            .unwrap_or_default();
        for release in pending {
            let _ = release.await;
        }
        let snap = self.snapshot(credential, Leaf::Lock).await?;
        if let Some(held) = snap.latest.as_ref().map(|v| &v.data)
            && held.get("released_at").is_none()
        {
            let expires = held
                .get("expires_at")
                .and_then(Value::as_str)
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok());
            if expires.is_none_or(|at| at > Utc::now()) {
                let who = held
                    .get("holder")
                    .and_then(Value::as_str)
                    .unwrap_or("an unknown holder");
                let until =
                    expires.map_or_else(|| "an unknown time".to_string(), |t| t.to_rfc3339());
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "{self}: credential '{credential}' is locked by {who} until {until} ({})",
                        self.kv().data_path(&snap.key)
                    ),
                )
                .with_hint("another rekey process is rotating this credential; wait for it to finish or for the lock to expire"));
            }
        }
        let now = Utc::now();
        let ttl = chrono::Duration::from_std(self.inner.lock_ttl).unwrap_or(chrono::Duration::MAX);
        let mut record = Map::new();
        record.insert("holder".into(), holder.into());
        record.insert("acquired_at".into(), now.to_rfc3339().into());
        record.insert("expires_at".into(), (now + ttl).to_rfc3339().into());
        let version = match self.write(&snap, &Value::Object(record.clone())).await {
            Ok(v) => v,
            Err(e) if e.kind() == ErrorKind::Conflict => {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "{self}: credential '{credential}' was locked by another process at the same moment ({})",
                        self.kv().data_path(&snap.key)
                    ),
                ));
            }
            Err(e) => return Err(e),
        };
        tracing::debug!(store = %self, credential, holder, "took the rotation lock");
        Ok(Box::new(VaultLock {
            inner: Arc::clone(&self.inner),
            label: self.label.clone(),
            key: snap.key,
            version,
            record,
            released: false,
        }))
    }
}

/// The rotation lock: a version of the credential's `lock` key that we wrote.
struct VaultLock {
    inner: Arc<Inner>,
    label: String,
    key: String,
    version: u64,
    record: Map<String, Value>,
    released: bool,
}

impl fmt::Debug for VaultLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultLock")
            .field("store", &self.label)
            .field("key", &self.key)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Writes the released record over our own lock version.
async fn release_lock(
    inner: &Inner,
    label: &str,
    key: &str,
    version: u64,
    mut record: Map<String, Value>,
) -> Result<()> {
    record.insert("released_at".into(), Utc::now().to_rfc3339().into());
    match inner.kv.write(key, &Value::Object(record), version).await? {
        Written::Done(_) => Ok(()),
        Written::Stale => Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "{label}: the lock at {} changed since it was taken (expected version {version}): it expired and someone else took it",
                inner.kv.data_path(key)
            ),
        )
        .with_hint("the rotation outlived lock_ttl; check the journal and raise lock_ttl")),
    }
}

#[async_trait]
impl RotationLock for VaultLock {
    async fn release(mut self: Box<Self>) -> Result<()> {
        self.released = true;
        release_lock(
            &self.inner,
            &self.label,
            &self.key,
            self.version,
            std::mem::take(&mut self.record),
        )
        .await
    }
}

impl Drop for VaultLock {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        // Dropped without release(): release in the background if a runtime is around; the
        // lease expiry frees the lock otherwise.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (inner, label, key, version) = (
                Arc::clone(&self.inner),
                self.label.clone(),
                self.key.clone(),
                self.version,
            );
            let record = std::mem::take(&mut self.record);
            let task = runtime.spawn(async move {
                if let Err(e) = release_lock(&inner, &label, &key, version, record).await {
                    tracing::warn!(error = %e, "could not release a dropped rotation lock; it expires with its lease");
                }
            });
            if let Ok(mut releases) = self.inner.releases.lock() {
                releases.push(task);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rekey_testkit::openbao::OpenBao;

    /// The check-and-set every promote, revert and stage relies on, with another writer (the
    /// `bao` CLI) landing exactly between the store's read and its write.
    #[tokio::test]
    async fn an_outside_write_between_read_and_write_is_a_conflict() {
        let bao = OpenBao::shared();
        let prefix = bao.unique_prefix("unit-cas");
        let mut config = VaultConfig::new(
            bao.addr(),
            VaultAuth::Token(VaultToken::new(bao.root_token().to_string())),
        );
        config.path_prefix = prefix.clone();
        let store = VaultStore::new(config).unwrap();
        let snap = store.snapshot("billing", Leaf::Current).await.unwrap();
        store.write(&snap, &json!({ "v": "1" })).await.unwrap();

        let snap = store.snapshot("billing", Leaf::Current).await.unwrap();
        let path = format!("secret/{prefix}/billing/current");
        bao.bao_ok(&["kv", "put", "-cas=1", &path, "v=outside"]);
        let err = store.write(&snap, &json!({ "v": "2" })).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert!(
            err.to_string().contains(&format!(
                "someone else changed secret/data/{prefix}/billing/current (expected version 1)"
            )),
            "{err}"
        );
        assert_eq!(bao.bao_ok(&["kv", "get", "-field=v", &path]), "outside");
    }
}
