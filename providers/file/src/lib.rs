//! rekey's embedded default secret store: a directory per credential on the local disk.
//!
//! See this crate's README for the layout. Durability comes from write-to-temp + fsync + rename
//! (+ directory fsync) for every file. The stage map (which generation is CURRENT, PENDING,
//! PREVIOUS) is one small file, so every stage change, promotion and rollback included, is a
//! single atomic rename.

mod settings;

pub use settings::{FileConfig, FileSettings};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rekey_api::{
    Certificate, ConsumerKey, Damage, Error, ErrorKind, Exposure, Fingerprint, Generation,
    JournalEntry, JournalRead, KeyMaterial, Material, NewVersion, Public, Result, RotationId,
    RotationLock, SecretStore, Stage, Stages, StoredVersion, VersionInfo,
};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The stage map's file name in each credential directory.
const STAGES: &str = "stages.json";
/// The rotation journal's file name in each credential directory.
const JOURNAL: &str = "journal.jsonl";
/// The file whose OS lock is the rotation lease, and which names its holder.
const LOCK: &str = "lock";
/// The file holding the fence of the newest lease ever taken on the credential.
const LEASE: &str = "lease";

/// The file store rooted at one directory.
#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
    /// Generations kept besides those CURRENT, PENDING and PREVIOUS name ([`SecretStore::prune`]).
    keep_generations: usize,
}

/// The older generations a file store keeps by default besides CURRENT, PENDING and PREVIOUS.
pub const DEFAULT_KEEP_GENERATIONS: usize = 1;

/// Per-generation metadata kept beside the key and certificate.
#[derive(Serialize, Deserialize)]
struct Meta {
    created_at: DateTime<Utc>,
    rotation_id: Option<RotationId>,
    /// A consumer secret's public half (its `.key` file then holds the consumer key and secret
    /// as JSON, and there is no `.crt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    consumer: Option<ConsumerMeta>,
}

/// [`ConsumerKey`] as `NNNNNN.json` keeps it.
#[derive(Serialize, Deserialize)]
struct ConsumerMeta {
    key: String,
    fingerprint: Fingerprint,
}

/// The stage map, as stored in `stages.json`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Pointers {
    current: Option<Generation>,
    pending: Option<Generation>,
    previous: Option<Generation>,
}

/// The lease on one credential: the OS lock on its `lock` file, plus the fence this holder wrote
/// to its `lease` file.
#[derive(Debug)]
struct FileLock {
    /// Holding the open file is holding the OS lock; closing it (drop, or the process dying)
    /// releases it.
    _locked: HeldLock,
    /// The credential's `lease` file, read again by `confirm`.
    lease: PathBuf,
    fence: u64,
    /// `file(<root>): credential '<name>'`, for messages.
    owner: String,
}

/// The `lock` file while its OS lock is held. Its holder note is cleared when the lease ends
/// (released, or dropped on an error), so a runner refused later never names a holder that is
/// gone; only a process that died holding it leaves its note, until the next holder's replaces it.
#[derive(Debug)]
struct HeldLock(File);

impl Drop for HeldLock {
    fn drop(&mut self) {
        // Before the file closes and the OS lock with it.
        let _ = self.0.set_len(0);
    }
}

#[async_trait]
impl RotationLock for FileLock {
    fn fence(&self) -> u64 {
        self.fence
    }

    async fn confirm(&self) -> Result<()> {
        // Every lease writes a greater number here while holding the OS lock, so any other value
        // means someone took the lock besides us: only possible if the `lock` or `lease` file was
        // removed or replaced by hand while we held it.
        let now = read_lease(&self.lease)?;
        if now == Some(self.fence) {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::LeaseLost,
            format!(
                "{}: the lease counter {} reads {}, but this runner holds lease {}",
                self.owner,
                self.lease.display(),
                now.map_or_else(|| "nothing".to_string(), |n| n.to_string()),
                self.fence
            ),
        )
        .with_hint(
            "the credential's lock or lease file was removed or replaced while this rotation ran, so another runner may be rotating it too; stop, and inspect `rekey journal` before running again",
        ))
    }

    async fn release(self: Box<Self>) -> Result<()> {
        // Dropping the file closes it, which releases the OS lock; the fence stays in `lease` so
        // the next holder's is greater.
        Ok(())
    }
}

impl FileStore {
    /// A store rooted at `root`. Nothing is created until the first write.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FileStore {
            root: root.into(),
            keep_generations: DEFAULT_KEEP_GENERATIONS,
        }
    }

    /// The same store keeping `n` generations besides those CURRENT, PENDING and PREVIOUS name.
    pub fn keeping(mut self, n: usize) -> Self {
        self.keep_generations = n;
        self
    }

    fn dir(&self, credential: &str) -> Result<PathBuf> {
        // Credential names come from the config; refuse anything that could escape the root.
        rekey_api::check_credential_name(credential)?;
        Ok(self.root.join(credential))
    }

    fn ensure_dir(&self, dir: &Path) -> Result<()> {
        for d in [&self.root, dir] {
            if !d.exists() {
                fs::create_dir_all(d).map_err(|e| io_error("create directory", d, e))?;
                fs::set_permissions(d, fs::Permissions::from_mode(0o700))
                    .map_err(|e| io_error("set mode 0700 on", d, e))?;
            }
        }
        Ok(())
    }

    fn read_pointers(dir: &Path) -> Result<Pointers> {
        let path = dir.join(STAGES);
        let Some(text) = read_optional(&path)? else {
            return Ok(Pointers::default());
        };
        serde_json::from_str(&text).map_err(|e| {
            Error::new(
                ErrorKind::Unexpected,
                format!("{} is not a stage map: {e}", path.display()),
            )
            .with_hint("the file store was edited by hand; restore stages.json from a backup")
        })
    }

    fn write_pointers(dir: &Path, pointers: &Pointers) -> Result<()> {
        write_atomic(&dir.join(STAGES), &to_json(pointers)?, 0o644)
    }

    /// The metadata of `generation`, `None` when it has none on disk.
    fn read_meta(dir: &Path, generation: Generation) -> Result<Option<Meta>> {
        let path = dir.join(file_name(generation, "json"));
        let Some(text) = read_optional(&path)? else {
            return Ok(None);
        };
        serde_json::from_str(&text).map(Some).map_err(|e| {
            Error::new(
                ErrorKind::Unexpected,
                format!("{} is not valid metadata: {e}", path.display()),
            )
        })
    }

    fn version_info(dir: &Path, generation: Generation) -> Result<VersionInfo> {
        let meta = Self::read_meta(dir, generation)?.ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!(
                    "{} is missing",
                    dir.join(file_name(generation, "json")).display()
                ),
            )
        })?;
        let public = match meta.consumer {
            Some(c) => Public::Consumer(ConsumerKey {
                key: c.key,
                fingerprint: c.fingerprint,
            }),
            None => {
                let cert_path = dir.join(file_name(generation, "crt"));
                let pem =
                    fs::read_to_string(&cert_path).map_err(|e| io_error("read", &cert_path, e))?;
                Public::Certificate(
                    Certificate::from_pem(&pem).map_err(|e| e.context(cert_path.display()))?,
                )
            }
        };
        Ok(VersionInfo {
            generation,
            public,
            created_at: meta.created_at,
            rotation_id: meta.rotation_id,
        })
    }

    /// The key and metadata of `generation`, read from its files.
    fn read_version(dir: &Path, generation: Generation) -> Result<StoredVersion> {
        let info = Self::version_info(dir, generation)?;
        let key_path = dir.join(file_name(generation, "key"));
        let mut text = String::new();
        File::open(&key_path)
            .and_then(|mut f| f.read_to_string(&mut text))
            .map_err(|e| io_error("read", &key_path, e))?;
        let material = match &info.public {
            Public::Certificate(_) => KeyMaterial::from_pem(text).map(Material::Key),
            Public::Consumer(_) => {
                let text = zeroize::Zeroizing::new(text);
                serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text)
                    .map_err(|_| {
                        Error::new(
                            ErrorKind::Unexpected,
                            "not a consumer key and secret record",
                        )
                    })
                    .and_then(|mut record| rekey_api::take_material(&mut record))
            }
        }
        .map_err(|e| e.context(key_path.display()))?;
        Ok(StoredVersion { info, material })
    }

    fn stages_in(dir: &Path) -> Result<Stages> {
        let p = Self::read_pointers(dir)?;
        let load = |g: Option<Generation>| g.map(|g| Self::version_info(dir, g)).transpose();
        Ok(Stages {
            current: load(p.current)?,
            pending: load(p.pending)?,
            previous: load(p.previous)?,
        })
    }

    /// Takes the next fence of the credential in `dir` and writes it to its `lease` file; the
    /// caller holds the OS lock, so nobody else writes it meanwhile.
    fn next_fence(&self, dir: &Path) -> Result<u64> {
        let path = dir.join(LEASE);
        // The journal's greatest fence is a floor: with a `lease` file lost or restored from an
        // older backup, a smaller fence would leave the new holder unable to append.
        let journaled = rekey_api::greatest_fence(&self.whole_journal(dir)?);
        let fence = read_lease(&path)?
            .max(journaled)
            .unwrap_or(0)
            .checked_add(1)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Unexpected,
                    format!(
                        "{self}: {} holds the greatest possible fence",
                        path.display()
                    ),
                )
            })?;
        write_atomic(&path, format!("{fence}\n").as_bytes(), 0o644)?;
        Ok(fence)
    }
}

impl FileStore {
    /// The journal in `dir`, refused (`Conflict`) when an entry is damaged: what writes decides
    /// on the whole journal or not at all.
    fn whole_journal(&self, dir: &Path) -> Result<Vec<JournalEntry>> {
        let credential = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        scan_journal_at(&dir.join(JOURNAL), &credential)?.complete(self, &credential)
    }

    /// The generations that have any file in `dir`, ascending.
    fn generations_on_disk(dir: &Path) -> Result<Vec<Generation>> {
        let mut found = std::collections::BTreeSet::new();
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("list", dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_error("list", dir, e))?;
            let name = entry.file_name();
            let Some((stem, extension)) = name.to_str().and_then(|n| n.split_once('.')) else {
                continue;
            };
            if ["key", "crt", "json"].contains(&extension)
                && stem.len() >= 6
                && let Some(generation) = Generation::from_digits(stem)
            {
                found.insert(generation);
            }
        }
        Ok(found.into_iter().collect())
    }

    /// Removes the files of `generation` in `dir`, the key first (so a crash half-way leaves a
    /// generation `read_generation` already calls destroyed).
    fn remove_generation(dir: &Path, generation: Generation) -> Result<()> {
        for extension in ["key", "crt", "json"] {
            let path = dir.join(file_name(generation, extension));
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("remove", &path, e)),
            }
        }
        Ok(())
    }
}

impl fmt::Display for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "file({})", self.root.display())
    }
}

#[async_trait]
impl SecretStore for FileStore {
    async fn preflight(&self, credential: &str) -> Result<()> {
        let dir = self.dir(credential)?;
        // The nearest existing ancestor must be a writable directory, or the first stage fails.
        let existing = dir
            .ancestors()
            .find(|p| p.exists())
            .unwrap_or(Path::new("/"));
        let meta = fs::metadata(existing).map_err(|e| io_error("inspect", existing, e))?;
        if !meta.is_dir() {
            return Err(Error::new(
                ErrorKind::Config,
                format!("{} is not a directory", existing.display()),
            ));
        }
        if meta.permissions().readonly() {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!("{} is read-only", existing.display()),
            ));
        }
        if dir.exists() {
            Self::stages_in(&dir)?;
            // A rotation decides its steps on the whole journal: refuse before writing anything.
            self.whole_journal(&dir)?;
        }
        Ok(())
    }

    async fn stages(&self, credential: &str) -> Result<Stages> {
        let dir = self.dir(credential)?;
        if !dir.exists() {
            return Ok(Stages::default());
        }
        Self::stages_in(&dir)
    }

    async fn read_stage(&self, credential: &str, stage: Stage) -> Result<Option<StoredVersion>> {
        let dir = self.dir(credential)?;
        if !dir.exists() {
            return Ok(None);
        }
        let p = Self::read_pointers(&dir)?;
        let generation = match stage {
            Stage::Current => p.current,
            Stage::Pending => p.pending,
            Stage::Previous => p.previous,
        };
        // The map names only generations whose files are complete, so a missing file here is
        // an error, not `None`.
        generation.map(|g| Self::read_version(&dir, g)).transpose()
    }

    async fn stage(&self, credential: &str, new: &NewVersion<'_>) -> Result<()> {
        let dir = self.dir(credential)?;
        self.ensure_dir(&dir)?;
        let mut pointers = Self::read_pointers(&dir)?;
        if let Some(pending) = pointers.pending {
            let held = Self::version_info(&dir, pending)?;
            if pending == new.generation && held.public.fingerprint() == new.public.fingerprint() {
                return Ok(());
            }
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{self}: credential '{credential}' already has generation {pending} pending (rotation {})",
                    held.rotation_id.map_or_else(|| "unknown".to_string(), |r| r.0)
                ),
            )
            .with_hint("finish or abandon that rotation before starting another"));
        }
        if let Some(current) = pointers.current.filter(|c| *c >= new.generation) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{self}: cannot stage generation {} of '{credential}': generation {current} is already current",
                    new.generation
                ),
            ));
        }
        // A generation's files can outlive its stage: a discarded generation (its certificate
        // may be trusted by the app) or PREVIOUS after a revert. Never overwrite another
        // rotation's key. Files of this same rotation that no stage names are what a stage
        // interrupted before its stage map write left; rewriting those is how it resumes.
        if let Some(held) = Self::read_meta(&dir, new.generation)?
            && held.rotation_id.as_ref() != Some(new.rotation_id)
        {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{self}: generation {} of '{credential}' already holds the key of rotation {}",
                    new.generation,
                    held.rotation_id.map_or_else(|| "unknown".to_string(), |r| r.0)
                ),
            )
            .with_hint("stage a generation greater than every stored one; the kept key stays readable until it is destroyed"));
        }
        let mut meta = Meta {
            created_at: rekey_api::now(),
            rotation_id: Some(new.rotation_id.clone()),
            consumer: None,
        };
        match (new.material, new.public) {
            (Material::Key(key), Public::Certificate(certificate)) => {
                write_atomic(
                    &dir.join(file_name(new.generation, "key")),
                    key.expose_secret_pem().as_bytes(),
                    0o600,
                )?;
                write_atomic(
                    &dir.join(file_name(new.generation, "crt")),
                    certificate.pem().as_bytes(),
                    0o644,
                )?;
            }
            (Material::Consumer(secret), Public::Consumer(public)) => {
                let record = zeroize::Zeroizing::new(
                    serde_json::json!({
                        "consumerKey": secret.key(),
                        "consumerSecret": secret.expose_secret(),
                    })
                    .to_string(),
                );
                write_atomic(
                    &dir.join(file_name(new.generation, "key")),
                    record.as_bytes(),
                    0o600,
                )?;
                meta.consumer = Some(ConsumerMeta {
                    key: public.key.clone(),
                    fingerprint: public.fingerprint,
                });
            }
            (material, public) => {
                return Err(Error::new(
                    ErrorKind::Unexpected,
                    format!(
                        "{self}: generation {} of '{credential}' pairs a {} secret with a {} public half",
                        new.generation,
                        material.kind(),
                        public.kind()
                    ),
                ));
            }
        }
        write_atomic(
            &dir.join(file_name(new.generation, "json")),
            &to_json(&meta)?,
            0o644,
        )?;
        pointers.pending = Some(new.generation);
        Self::write_pointers(&dir, &pointers)
    }

    async fn promote(&self, credential: &str, generation: Generation) -> Result<()> {
        let dir = self.dir(credential)?;
        let p = Self::read_pointers(&dir)?;
        if p.current == Some(generation) {
            return Ok(());
        }
        if p.pending != Some(generation) {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "{self}: generation {generation} of '{credential}' is not pending, so it cannot be promoted"
                ),
            ));
        }
        let promoted = Pointers {
            current: Some(generation),
            pending: None,
            previous: p.current,
        };
        Self::write_pointers(&dir, &promoted)
    }

    async fn revert(&self, credential: &str, to: Generation) -> Result<()> {
        let dir = self.dir(credential)?;
        let p = Self::read_pointers(&dir)?;
        if p.current == Some(to) {
            return Ok(());
        }
        if p.previous != Some(to) {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "{self}: generation {to} of '{credential}' is not PREVIOUS, so it cannot be made current again"
                ),
            ));
        }
        Self::write_pointers(
            &dir,
            &Pointers {
                current: Some(to),
                pending: p.pending,
                previous: p.current,
            },
        )
    }

    async fn discard(&self, credential: &str, generation: Generation) -> Result<()> {
        let dir = self.dir(credential)?;
        let p = Self::read_pointers(&dir)?;
        if p.pending != Some(generation) {
            return Ok(());
        }
        // Only the map changes: the files stay, so `read_generation` still finds the key.
        Self::write_pointers(&dir, &Pointers { pending: None, ..p })
    }

    async fn read_generation(
        &self,
        credential: &str,
        generation: Generation,
    ) -> Result<Option<StoredVersion>> {
        let dir = self.dir(credential)?;
        match Self::read_version(&dir, generation) {
            Ok(stored) => Ok(Some(stored)),
            // `destroy` removes the key file first and `stage` writes the metadata last, so a
            // missing file means destroyed (perhaps interrupted) or never completely stored.
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn destroy(&self, credential: &str, generation: Generation) -> Result<()> {
        let dir = self.dir(credential)?;
        if !dir.exists() {
            return Ok(());
        }
        let mut p = Self::read_pointers(&dir)?;
        if p.current == Some(generation) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("{self}: generation {generation} of '{credential}' is CURRENT and cannot be destroyed"),
            )
            .with_hint("rotate or revert first, so that another generation is CURRENT"));
        }
        // Unpoint first: a crash between the two steps leaves an orphan file, never a pointer to
        // a missing key.
        if p.pending == Some(generation) || p.previous == Some(generation) {
            p.pending = p.pending.filter(|g| *g != generation);
            p.previous = p.previous.filter(|g| *g != generation);
            Self::write_pointers(&dir, &p)?;
        }
        Self::remove_generation(&dir, generation)?;
        sync_dir(&dir)
    }

    async fn prune(&self, credential: &str) -> Result<Vec<Generation>> {
        let dir = self.dir(credential)?;
        if !dir.exists() {
            return Ok(Vec::new());
        }
        let p = Self::read_pointers(&dir)?;
        let staged = [p.current, p.pending, p.previous];
        // The files of every generation no stage names, newest first: the first
        // `keep_generations` stay (a discarded key, the app may have trusted it; an older
        // PREVIOUS), the rest go.
        let unstaged: Vec<Generation> = Self::generations_on_disk(&dir)?
            .into_iter()
            .rev()
            .filter(|g| !staged.contains(&Some(*g)))
            .collect();
        let mut destroyed: Vec<Generation> =
            unstaged.into_iter().skip(self.keep_generations).collect();
        destroyed.reverse();
        for &generation in &destroyed {
            Self::remove_generation(&dir, generation)?;
        }
        if !destroyed.is_empty() {
            sync_dir(&dir)?;
        }
        Ok(destroyed)
    }

    async fn exposure(&self, credential: &str) -> Vec<Exposure> {
        let Ok(dir) = self.dir(credential) else {
            return Vec::new();
        };
        let mode = |path: &Path| {
            fs::metadata(path)
                .ok()
                .map(|m| m.permissions().mode() & 0o7777)
        };
        let mut found = Vec::new();
        let stages = Self::read_pointers(&dir).unwrap_or_default();
        if let Ok(generations) = Self::generations_on_disk(&dir) {
            for generation in generations {
                let path = dir.join(file_name(generation, "key"));
                let Some(mode) = mode(&path).filter(|m| m & 0o077 != 0) else {
                    continue;
                };
                let role = match generation {
                    g if stages.current == Some(g) => "the CURRENT key",
                    g if stages.pending == Some(g) => "the PENDING key",
                    g if stages.previous == Some(g) => "the PREVIOUS key",
                    _ => "a retired key",
                };
                found.push(Exposure {
                    key_exposed: true,
                    message: format!(
                        "{} ({role}, generation {generation}) is mode {mode:04o}: other users of this machine can {}; `chmod 600` it, and if someone may have read it, treat it as leaked (`rekey emergency`)",
                        path.display(),
                        if mode & 0o022 != 0 { "read or replace it" } else { "read it" }
                    ),
                });
            }
        }
        for (folder, what) in [
            (&dir, "the credential's folder"),
            (&self.root, "the store's folder"),
        ] {
            let Some(mode) = mode(folder) else { continue };
            if mode & 0o022 != 0 && mode & 0o1000 == 0 {
                found.push(Exposure {
                    key_exposed: true,
                    message: format!(
                        "{} ({what}) is mode {mode:04o}: other users of this machine can replace the keys in it; `chmod 700` it",
                        folder.display()
                    ),
                });
            } else if mode & 0o044 != 0 && folder == &dir {
                found.push(Exposure {
                    key_exposed: false,
                    message: format!(
                        "{} ({what}) is mode {mode:04o}: other users of this machine can list it and read its certificates and stage map; `chmod 700` it",
                        folder.display()
                    ),
                });
            }
        }
        found
    }

    async fn append_journal(&self, credential: &str, entry: &JournalEntry) -> Result<()> {
        let dir = self.dir(credential)?;
        self.ensure_dir(&dir)?;
        let path = dir.join(JOURNAL);
        let mut file = OpenOptions::new()
            .read(true)
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io_error("open", &path, e))?;
        // The lease holder is normally the only writer, but the fence check and the append must
        // be one conditional write for anyone: hold the journal's own OS lock across both. It is
        // released when `file` is closed.
        file.lock().map_err(|e| io_error("lock", &path, e))?;
        let mut text = Vec::new();
        file.read_to_end(&mut text)
            .map_err(|e| io_error("read", &path, e))?;
        let (complete, read) = parse_journal(&path, credential, &text);
        // Never append to a damaged journal: the next reader could not tell what the hole was.
        let entries = read.complete(self, credential)?;
        let linked = rekey_api::link(&entries, entry).map_err(|e| e.context(self))?;
        let mut line = to_json(&linked)?;
        line.push(b'\n');
        if complete < text.len() {
            // A crash tore the last line; appending after it would glue our line to the
            // fragment and make both unreadable. `O_APPEND` writes at the new end.
            file.set_len(complete as u64)
                .map_err(|e| io_error("truncate the torn last line of", &path, e))?;
        }
        file.write_all(&line)
            .and_then(|()| file.sync_all())
            .map_err(|e| io_error("append to", &path, e))
    }

    async fn scan_journal(&self, credential: &str) -> Result<JournalRead> {
        scan_journal_at(&self.dir(credential)?.join(JOURNAL), credential)
    }

    async fn lock(&self, credential: &str, holder: &str) -> Result<Box<dyn RotationLock>> {
        let dir = self.dir(credential)?;
        self.ensure_dir(&dir)?;
        let path = dir.join(LOCK);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io_error("open", &path, e))?;
        match file.try_lock() {
            Ok(()) => {
                // The note first, so a runner refused from now on names this holder (rekey's
                // holders carry their pid). A lease that ended cleared its note; only a holder
                // that died leaves one behind, until this write replaces it.
                let note = format!("{holder}\n");
                file.set_len(0)
                    .and_then(|()| file.write_all(note.as_bytes()))
                    .map_err(|e| io_error("write", &path, e))?;
                let file = HeldLock(file);
                // A damaged journal refuses the lease before anything is written: whoever
                // takes it would decide on a journal with a hole.
                self.whole_journal(&dir)?;
                // Written durably before the lease is handed out, so it survives this process
                // dying with the lock held: the next holder's fence is greater.
                let fence = self.next_fence(&dir)?;
                Ok(Box::new(FileLock {
                    _locked: file,
                    lease: dir.join(LEASE),
                    fence,
                    owner: format!("{self}: credential '{credential}'"),
                }))
            }
            Err(fs::TryLockError::WouldBlock) => {
                // The holder writes its note right after taking the lock; a runner refused in
                // between sees an empty file for a moment, longer on a loaded machine (up to 2 s
                // here: a refusal that names its holder is worth the wait).
                let mut who = String::new();
                for _ in 0..100 {
                    who.clear();
                    let _ = file.rewind().and_then(|()| file.read_to_string(&mut who));
                    if !who.trim().is_empty() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                let who = match who.trim() {
                    "" => "another rekey process",
                    note => note,
                };
                Err(Error::new(
                    ErrorKind::Busy,
                    format!("{self}: credential '{credential}' is locked by {who}"),
                )
                .with_hint(
                    "another rekey process is rotating this credential; wait for it to finish",
                ))
            }
            Err(fs::TryLockError::Error(e)) => Err(io_error("lock", &path, e)),
        }
    }
}

/// The fence in the `lease` file at `path`, `None` before the first lease.
fn read_lease(path: &Path) -> Result<Option<u64>> {
    read_optional(path)?
        .map(|text| {
            text.trim().parse().map_err(|e| {
                Error::new(
                    ErrorKind::Unexpected,
                    format!("{} is not a lease number: {e}", path.display()),
                )
                .with_hint("the file store was edited by hand; remove the file and the next lock starts above the journal's greatest fence")
            })
        })
        .transpose()
}

/// The journal at `path` as far as it can be read; empty when it does not exist.
fn scan_journal_at(path: &Path, credential: &str) -> Result<JournalRead> {
    match fs::read(path) {
        Ok(bytes) => Ok(parse_journal(path, credential, &bytes).1),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(JournalRead::default()),
        Err(e) => Err(io_error("read", path, e)),
    }
}

/// Reads `bytes`, the journal at `path`: how many of them are complete lines, and their entries.
/// A crash mid-append leaves a last line without its newline: it is left out, not damaged. A
/// blank line is skipped; any other line that is not an entry (not UTF-8, not JSON, not a
/// journal entry) is named as `path:line`.
fn parse_journal(path: &Path, credential: &str, bytes: &[u8]) -> (usize, JournalRead) {
    let complete = bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |end| end + 1);
    let mut read = JournalRead::default();
    // Every line up to the last newline (the empty slice after it is not a line).
    let lines = match complete {
        0 => None,
        n => Some(bytes[..n - 1].split(|&b| b == b'\n')),
    };
    for (i, line) in lines.into_iter().flatten().enumerate() {
        let parsed = match std::str::from_utf8(line) {
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => serde_json::from_str(text).map_err(|e| rekey_api::parse_problem(&e)),
            Err(e) => Err(format!("not UTF-8 text (byte {})", e.valid_up_to() + 1)),
        };
        match parsed {
            Ok(entry) => {
                read.entries.push(entry);
                read.locations.push(format!("{}:{}", path.display(), i + 1));
            }
            Err(problem) => read.damaged.push(Damage {
                location: format!("{}:{}", path.display(), i + 1),
                problem,
                after: read.entries.len(),
            }),
        }
    }
    if !read.damaged.is_empty() {
        let lines: Vec<String> = read
            .damaged
            .iter()
            .filter_map(|d| d.location.rsplit(':').next().map(|n| format!("{n}d")))
            .collect();
        read.repair = Some(format!(
            "To repair it, put the damaged line back from a backup, or delete it: `sed -i.damaged '{}' '{}'` deletes it and keeps the original as {}.damaged. A deleted line loses the step it recorded: if it belonged to the last rotation, compare `rekey status {credential}` with the lines around it first.",
            lines.join(";"),
            path.display(),
            path.display()
        ));
    }
    (complete, read)
}

/// The contents of `path`, `None` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("read", path, e)),
    }
}

fn file_name(generation: Generation, extension: &str) -> String {
    format!("{:06}.{extension}", generation.0)
}

fn to_json(value: &impl Serialize) -> Result<Vec<u8>> {
    serde_json::to_vec(value)
        .map_err(|e| Error::new(ErrorKind::Unexpected, format!("cannot encode JSON: {e}")))
}

/// [`rekey_api::write_atomic`], with the error naming `path`.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    rekey_api::write_atomic(path, bytes, mode).map_err(|e| io_error("write", path, e))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("sync directory", dir, e))
}

fn io_error(action: &str, path: &Path, e: io::Error) -> Error {
    let kind = match e.kind() {
        io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        io::ErrorKind::NotFound => ErrorKind::NotFound,
        _ => ErrorKind::Unexpected,
    };
    Error::new(kind, format!("cannot {action} {}", path.display())).with_source(e)
}
