//! rekey's HashiCorp Vault (and OpenBao) secret store on a KV v2 mount.
//!
//! Each credential is four KV keys under `{mount}/{prefix}/{credential}/`: `current` (what
//! consumers read; a promotion is one write), `pending`, `journal` and `lock` (the fenced
//! rotation lease). PREVIOUS is the version of `current` before its latest one, so a rollback
//! needs no access beyond the credential's own keys; a discarded key stays in the history of
//! `pending`. Every write is check-and-set. See this crate's README for the layout and the
//! minimal policy.
//!
//! With `kind = "vault_transit"` the keys are in custody in the transit engine of the same server
//! ([`TransitCustody`], [`VaultStore::transit`]): the KV records hold key handles instead of
//! private keys.

mod client;
mod config;
mod kv;
mod settings;
mod sys;
mod transit;

pub use config::{
    DEFAULT_KEY_PREFIX, DEFAULT_LOCK_TTL, DEFAULT_MAX_VERSIONS, DEFAULT_MOUNT, DEFAULT_PATH_PREFIX,
    DEFAULT_TRANSIT_MOUNT, TransitConfig, VaultAuth, VaultConfig,
};
pub use settings::{
    DEFAULT_JWT_PATH, VaultAuthConfig, VaultAuthSettings, VaultSettings, VaultStoreConfig,
};
pub use transit::TransitCustody;

use async_trait::async_trait;
use client::Client;
use kv::{Kv, Meta, Version, Written};
use rekey_api::lease::{LeaseRecord, LeaseStore, Leases};
use rekey_api::{
    Backoff, Damage, Error, ErrorKind, Generation, JournalEntry, JournalRead, Material, NewVersion,
    Result, RotationLock, SecretStore, Stage, Stages, StoredVersion, VersionInfo,
};
use serde_json::{Map, Value, json};
use std::fmt;
use std::sync::Arc;

/// The journal keeps this many newest entries; older ones drop off (a KV value has a size limit).
pub const JOURNAL_CAP: usize = 500;

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
    /// How messages name the store, e.g. `vault(https://vault.example:8200 secret/rekey)`.
    label: String,
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

    /// The metadata and latest live version of `credential`'s `leaf`.
    async fn snapshot(&self, credential: &str, leaf: Leaf) -> Result<Snapshot> {
        rekey_api::check_credential_name(credential)?;
        let key = self.key(credential, leaf);
        let meta = self.kv.metadata(&key).await?;
        let latest = self.kv.latest(&key, meta.as_ref()).await?;
        Ok(Snapshot { key, meta, latest })
    }

    /// Writes `data` with check-and-set against the version `snap` read, after putting
    /// `cas_required`/`max_versions` in place.
    async fn write_cas(&self, snap: &Snapshot, data: &Value) -> Result<Written> {
        self.kv
            .ensure_metadata(&snap.key, snap.meta.as_ref())
            .await?;
        self.kv.write(&snap.key, data, snap.cas()).await
    }

    /// The error for `version` of `key`, which holds `what` (something malformed).
    fn not_rekeys(&self, key: &str, version: &Version, what: &str) -> Error {
        Error::new(
            ErrorKind::Unexpected,
            format!(
                "{}: version {} of {} has {what}",
                self.label,
                version.number,
                self.kv.data_path(key)
            ),
        )
        .with_hint(
            "the value was not written by rekey; restore a good version with `vault kv rollback`",
        )
    }
}

/// The credentials' `lock` keys, for the lease protocol ([`rekey_api::lease`]).
struct LockKeys(Arc<Inner>);

impl fmt::Display for LockKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.label)
    }
}

#[async_trait]
impl LeaseStore for LockKeys {
    type Version = Snapshot;

    async fn read_lease(&self, credential: &str) -> Result<(Option<LeaseRecord>, Snapshot)> {
        let snap = self.0.snapshot(credential, Leaf::Lock).await?;
        let record = snap
            .latest
            .as_ref()
            .map(|version| {
                LeaseRecord::parse(&version.data)
                    .map_err(|what| self.0.not_rekeys(&snap.key, version, &what))
            })
            .transpose()?;
        Ok((record, snap))
    }

    async fn write_lease(
        &self,
        _credential: &str,
        record: &LeaseRecord,
        seen: &Snapshot,
    ) -> Result<bool> {
        let mut data = record.to_json();
        // The fence as a string, like a key record's generation and the way `vault kv put`
        // writes numbers (every rekey version reads either).
        data.insert("fence".into(), record.fence.to_string().into());
        Ok(matches!(
            self.0.write_cas(seen, &Value::Object(data)).await?,
            Written::Done(_)
        ))
    }

    fn lease_location(&self, credential: &str) -> String {
        self.0.kv.data_path(&self.0.key(credential, Leaf::Lock))
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

/// Why `pending` is overwritten with a record without a key; the record says so for operators
/// reading `pending`.
#[derive(Clone, Copy)]
enum Cleared {
    /// The generation became CURRENT.
    Promoted,
    /// The rotation was abandoned; the key stays in the history of `pending`.
    Discarded,
}

impl Cleared {
    fn field(self) -> &'static str {
        match self {
            Cleared::Promoted => "promoted_generation",
            Cleared::Discarded => "discarded_generation",
        }
    }
}

/// HashiCorp Vault / OpenBao KV v2 as a [`SecretStore`].
#[derive(Debug)] // safe: the config's secrets redact themselves; the live token is not printed
pub struct VaultStore {
    inner: Arc<Inner>,
    leases: Leases<LockKeys>,
    transit: Option<Arc<TransitCustody>>,
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
        let transit = config.transit.clone();
        let client = Arc::new(Client::new(config, address)?);
        let transit = transit.map(|t| {
            Arc::new(TransitCustody::new(
                Arc::clone(&client),
                t,
                namespace.as_deref(),
            ))
        });
        let inner = Arc::new(Inner {
            kv: Kv::new(client, &mount, max_versions),
            prefix,
            label,
        });
        Ok(VaultStore {
            leases: Leases::new(LockKeys(Arc::clone(&inner)), lock_ttl),
            inner,
            transit,
        })
    }

    /// The transit engine that keeps this store's keys in custody, on the same connection and
    /// login, when it was configured with one (`kind = "vault_transit"`). The store itself keeps
    /// the records, journal and lease: wrap it as `CustodyStore::new(Box::new(store), transit)`.
    pub fn transit(&self) -> Option<Arc<TransitCustody>> {
        self.transit.clone()
    }

    fn kv(&self) -> &Kv {
        &self.inner.kv
    }

    async fn snapshot(&self, credential: &str, leaf: Leaf) -> Result<Snapshot> {
        self.inner.snapshot(credential, leaf).await
    }

    /// Parses a `current`/`pending` version; `None` for a version without a key (a cleared
    /// `pending`).
    fn record(&self, key: &str, version: &Version) -> Result<Option<Record>> {
        let info = rekey_api::parse_version_record(&version.data, version.created)
            .map_err(|what| self.inner.not_rekeys(key, version, &what))?;
        Ok(info.map(|info| Record { info }))
    }

    fn material(&self, key: &str, version: &mut Version) -> Result<Material> {
        rekey_api::take_material(&mut version.data).map_err(|e| {
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

    async fn write_cas(&self, snap: &Snapshot, data: &Value) -> Result<Written> {
        self.inner.write_cas(snap, data).await
    }

    /// [`VaultStore::write_cas`], with another writer's change a `Conflict`.
    async fn write(&self, snap: &Snapshot, data: &Value) -> Result<u64> {
        match self.write_cas(snap, data).await? {
            Written::Done(version) => Ok(version),
            Written::Stale => Err(self.stale(&snap.key, snap.cas())),
        }
    }

    /// Reads `leaf`, lets `decide` say what to write, and writes it with check-and-set; when
    /// another writer got in between, reads again and decides again ([`Backoff::STALE_WRITE`]).
    async fn read_modify_write(
        &self,
        credential: &str,
        leaf: Leaf,
        decide: impl Fn(&Snapshot) -> Result<Value>,
    ) -> Result<()> {
        let written = Backoff::STALE_WRITE
            .retry_stale(|| async {
                let snap = self.snapshot(credential, leaf).await?;
                let data = decide(&snap)?;
                Ok(match self.write_cas(&snap, &data).await? {
                    Written::Done(_) => Some(()),
                    Written::Stale => None,
                })
            })
            .await?;
        written.ok_or_else(|| {
            let key = self.inner.key(credential, leaf);
            Error::new(
                ErrorKind::Conflict,
                format!(
                    "{self}: could not update {} after {} attempts: other writers kept changing it",
                    self.kv().data_path(&key),
                    Backoff::STALE_WRITE.attempts
                ),
            )
            .temporary()
        })
    }

    /// Replaces PENDING with a record without a key, so that opt-in readers of `pending` stop
    /// seeing it and a later revert does not resurrect it; the key stays in the KV history.
    async fn clear_pending(
        &self,
        pending: &Snapshot,
        why: Cleared,
        generation: Generation,
    ) -> Result<()> {
        let mut data = Map::new();
        data.insert("cleared_at".into(), rekey_api::now().to_rfc3339().into());
        data.insert(why.field().into(), generation.0.to_string().into());
        self.write(pending, &Value::Object(data)).await.map(|_| ())
    }

    /// Every live version of `key` whose record holds `generation`, oldest first.
    async fn versions_holding(
        &self,
        key: &str,
        generation: Generation,
    ) -> Result<Vec<(Record, Version)>> {
        let Some(meta) = self.kv().metadata(key).await? else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        for (number, state) in &meta.versions {
            if !state.live() {
                continue;
            }
            let Some(version) = self.kv().read(key, *number).await? else {
                continue;
            };
            if let Some(record) = self
                .record(key, &version)?
                .filter(|r| r.info.generation == generation)
            {
                found.push((record, version));
            }
        }
        Ok(found)
    }

    /// The journal in `snap` as far as it can be read, oldest first: an entry that is not one is
    /// named (`damaged`), the others are returned; a value whose `entries` is not a list is not a
    /// journal at all (`Conflict`).
    fn scan_of(&self, snap: &Snapshot, credential: &str) -> Result<JournalRead> {
        let Some(version) = &snap.latest else {
            return Ok(JournalRead::default());
        };
        let path = self.kv().data_path(&snap.key);
        let repair = format!(
            "To repair it, make a version of {path} whose entries are all intact the latest again (`vault kv metadata get` lists the versions, `vault kv rollback -version=N` restores one), or write the latest back without the damaged entry."
        );
        let entries = match version.data.get("entries") {
            None => return Ok(JournalRead::default()),
            Some(Value::Array(entries)) => entries,
            Some(_) => {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "{self}: version {} of {path} (the rotation journal of '{credential}') has no list of entries; nothing was changed",
                        version.number
                    ),
                )
                .with_hint(repair));
            }
        };
        let mut read = JournalRead {
            anchor: version
                .data
                .get("anchor")
                .and_then(Value::as_str)
                .map(str::to_string),
            ..JournalRead::default()
        };
        for (i, entry) in entries.iter().enumerate() {
            let location = format!(
                "{path} version {}, entry {} of {}",
                version.number,
                i + 1,
                entries.len()
            );
            // Entries are stored as one JSON string each; older versions stored objects.
            let parsed = match entry {
                Value::String(text) => serde_json::from_str(text),
                other => serde_json::from_value(other.clone()),
            };
            match parsed {
                Ok(entry) => {
                    read.entries.push(entry);
                    read.locations.push(location);
                }
                Err(e) => read.damaged.push(Damage {
                    location,
                    problem: rekey_api::parse_problem(&e),
                    after: read.entries.len(),
                }),
            }
        }
        if !read.damaged.is_empty() {
            read.repair = Some(repair);
        }
        Ok(read)
    }

    /// Every path and capability a rotation needs.
    fn required_capabilities(&self, credential: &str) -> sys::Needed {
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
        f.write_str(&self.inner.label)
    }
}

#[async_trait]
impl SecretStore for VaultStore {
    async fn preflight(&self, credential: &str) -> Result<()> {
        rekey_api::check_credential_name(credential)?;
        let mount = &self.kv().mount;
        match sys::mount_info(&self.kv().client, mount).await? {
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
        let missing = sys::missing_capabilities(&self.kv().client, &needed).await?;
        if !missing.is_empty() {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!("{self}: {}", missing.join("; ")),
            )
            .with_hint("grant the policy shown in the rekey-vault README for this credential"));
        }
        self.stages(credential).await?;
        // A rotation decides its steps on the whole journal: refuse before writing anything.
        self.read_journal(credential).await.map(|_| ())
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

    async fn read_stage(&self, credential: &str, stage: Stage) -> Result<Option<StoredVersion>> {
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
        let material = self.material(&key_name, &mut version)?;
        Ok(Some(StoredVersion {
            info: record.info,
            material,
        }))
    }

    async fn stage(&self, credential: &str, new: &NewVersion<'_>) -> Result<()> {
        let current_snap = self.snapshot(credential, Leaf::Current).await?;
        let current = self.current_of(&current_snap)?;
        let pending_snap = self.snapshot(credential, Leaf::Pending).await?;
        if let Some(pending) = self.pending_of(&pending_snap, current.as_ref())? {
            let held = pending.info;
            if held.generation == new.generation
                && held.public.fingerprint() == new.public.fingerprint()
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
            public: new.public.clone(),
            created_at: rekey_api::now(),
            rotation_id: Some(new.rotation_id.clone()),
        };
        let data = rekey_api::version_record(&info, new.material)?;
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
                self.clear_pending(&pending_snap, Cleared::Promoted, generation)
                    .await?;
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
        let material = self.material(&pending_snap.key, version)?;
        let data = rekey_api::version_record(&pending.info, &material)?;
        let written = self.write(&current_snap, &data).await?;
        tracing::info!(store = %self, credential, generation = generation.0, version = written, "promoted pending key to current");
        pending_snap.latest = None;
        self.clear_pending(&pending_snap, Cleared::Promoted, generation)
            .await
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
        let material = self.material(&current_snap.key, &mut version)?;
        let data = rekey_api::version_record(&record.info, &material)?;
        let written = self.write(&current_snap, &data).await?;
        tracing::info!(store = %self, credential, generation = to.0, version = written, "reverted current to the previous key");
        Ok(())
    }

    async fn discard(&self, credential: &str, generation: Generation) -> Result<()> {
        let current_snap = self.snapshot(credential, Leaf::Current).await?;
        let current = self.current_of(&current_snap)?;
        let pending_snap = self.snapshot(credential, Leaf::Pending).await?;
        if self
            .pending_of(&pending_snap, current.as_ref())?
            .is_some_and(|p| p.info.generation == generation)
        {
            self.clear_pending(&pending_snap, Cleared::Discarded, generation)
                .await?;
            tracing::info!(store = %self, credential, generation = generation.0, "discarded the pending key; it stays in the history of pending");
        }
        Ok(())
    }

    async fn read_generation(
        &self,
        credential: &str,
        generation: Generation,
    ) -> Result<Option<StoredVersion>> {
        rekey_api::check_credential_name(credential)?;
        // `current` first: if a generation was staged more than once (discarded, then staged
        // again), the copy that was promoted is the one the app trusts.
        for leaf in [Leaf::Current, Leaf::Pending] {
            let key = self.inner.key(credential, leaf);
            if let Some((record, mut version)) =
                self.versions_holding(&key, generation).await?.pop()
            {
                let material = self.material(&key, &mut version)?;
                return Ok(Some(StoredVersion {
                    info: record.info,
                    material,
                }));
            }
        }
        Ok(None)
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
            let versions: Vec<u64> = self
                .versions_holding(&key, generation)
                .await?
                .iter()
                .map(|(_, version)| version.number)
                .collect();
            if !versions.is_empty() {
                self.kv().destroy(&key, &versions).await?;
                tracing::info!(store = %self, credential, generation = generation.0, ?versions, path = %self.kv().data_path(&key), "destroyed key versions");
            }
        }
        Ok(())
    }

    async fn append_journal(&self, credential: &str, entry: &JournalEntry) -> Result<()> {
        self.read_modify_write(credential, Leaf::Journal, |snap| {
            let read = self.scan_of(snap, credential)?;
            let anchor = read.anchor.clone();
            let mut journal = read.complete(self, credential)?;
            let linked = rekey_api::link(&journal, entry)
                .map_err(|e| e.context(format!("{self}: credential '{credential}'")))?;
            let line = serde_json::to_string(&linked).map_err(|e| {
                Error::new(
                    ErrorKind::Unexpected,
                    format!("cannot encode a journal entry: {e}"),
                )
            })?;
            // Each entry is stored as one JSON string: Vault and OpenBao refuse a request whose
            // JSON holds too many strings (OpenBao: 1,000 by default), and an entry written as
            // an object counts each of its keys and values, so a journal of objects stops taking
            // appends after a few rotations. The stored entries are kept as written (an older
            // version's objects become strings of themselves), so that fields a newer rekey
            // added survive an append by this one.
            let mut entries: Vec<Value> = snap
                .latest
                .as_ref()
                .and_then(|v| v.data.get("entries"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|e| match e {
                    Value::String(_) => e,
                    other => Value::String(other.to_string()),
                })
                .collect();
            entries.push(Value::String(line));
            journal.push(linked);
            let excess = entries.len().saturating_sub(JOURNAL_CAP);
            entries.drain(..excess);
            // The oldest kept entry names a dropped one as its `prev`: keep that hash beside the
            // entries so the chain can still be checked from there.
            match rekey_api::anchor_after(&journal[..excess], anchor) {
                Some(anchor) => Ok(json!({ "entries": entries, "anchor": anchor })),
                None => Ok(json!({ "entries": entries })),
            }
        })
        .await
    }

    async fn scan_journal(&self, credential: &str) -> Result<JournalRead> {
        let snap = self.snapshot(credential, Leaf::Journal).await?;
        self.scan_of(&snap, credential)
    }

    async fn lock(&self, credential: &str, holder: &str) -> Result<Box<dyn RotationLock>> {
        let journal = self.read_journal(credential).await?;
        self.leases.take(credential, holder, &journal).await
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
            VaultAuth::Token(rekey_api::SecretString::new(bao.root_token())),
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
