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
    Certificate, Error, ErrorKind, Generation, JournalEntry, KeyMaterial, NewVersion, Result,
    RotationId, RotationLock, SecretStore, Stage, Stages, StoredKey, VersionInfo,
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
}

/// Per-generation metadata kept beside the key and certificate.
#[derive(Serialize, Deserialize)]
struct Meta {
    created_at: DateTime<Utc>,
    rotation_id: Option<RotationId>,
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
    _locked: File,
    /// The credential's `lease` file, read again by `confirm`.
    lease: PathBuf,
    fence: u64,
    /// `file(<root>): credential '<name>'`, for messages.
    owner: String,
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
        FileStore { root: root.into() }
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
        let cert_path = dir.join(file_name(generation, "crt"));
        let pem = fs::read_to_string(&cert_path).map_err(|e| io_error("read", &cert_path, e))?;
        let certificate =
            Certificate::from_pem(&pem).map_err(|e| e.context(cert_path.display()))?;
        let meta = Self::read_meta(dir, generation)?.ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!(
                    "{} is missing",
                    dir.join(file_name(generation, "json")).display()
                ),
            )
        })?;
        Ok(VersionInfo {
            generation,
            certificate,
            created_at: meta.created_at,
            rotation_id: meta.rotation_id,
        })
    }

    /// The key and metadata of `generation`, read from its files.
    fn read_version(dir: &Path, generation: Generation) -> Result<StoredKey> {
        let info = Self::version_info(dir, generation)?;
        let key_path = dir.join(file_name(generation, "key"));
        let mut pem = String::new();
        File::open(&key_path)
            .and_then(|mut f| f.read_to_string(&mut pem))
            .map_err(|e| io_error("read", &key_path, e))?;
        let key = KeyMaterial::from_pem(pem).map_err(|e| e.context(key_path.display()))?;
        Ok(StoredKey { info, key })
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
        let journaled = rekey_api::greatest_fence(&read_journal_at(&dir.join(JOURNAL))?);
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

    async fn read_key(&self, credential: &str, stage: Stage) -> Result<Option<StoredKey>> {
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
            if pending == new.generation
                && held.certificate.fingerprint == new.certificate.fingerprint
            {
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
        let meta = Meta {
            created_at: rekey_api::now(),
            rotation_id: Some(new.rotation_id.clone()),
        };
        write_atomic(
            &dir.join(file_name(new.generation, "key")),
            new.key.expose_secret_pem().as_bytes(),
            0o600,
        )?;
        write_atomic(
            &dir.join(file_name(new.generation, "crt")),
            new.certificate.pem().as_bytes(),
            0o644,
        )?;
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
    ) -> Result<Option<StoredKey>> {
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
        for extension in ["key", "crt", "json"] {
            let path = dir.join(file_name(generation, extension));
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("remove", &path, e)),
            }
        }
        sync_dir(&dir)
    }

    async fn append_journal(&self, credential: &str, entry: &JournalEntry) -> Result<()> {
        let dir = self.dir(credential)?;
        self.ensure_dir(&dir)?;
        let path = dir.join(JOURNAL);
        let mut line = to_json(entry)?;
        line.push(b'\n');
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
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(|e| io_error("read", &path, e))?;
        let (complete, entries) = parse_journal(&path, &text)?;
        rekey_api::check_fence(&entries, entry).map_err(|e| e.context(self))?;
        if complete.len() < text.len() {
            // A crash tore the last line; appending after it would glue our line to the
            // fragment and make both unreadable. `O_APPEND` writes at the new end.
            file.set_len(complete.len() as u64)
                .map_err(|e| io_error("truncate the torn last line of", &path, e))?;
        }
        file.write_all(&line)
            .and_then(|()| file.sync_all())
            .map_err(|e| io_error("append to", &path, e))
    }

    async fn read_journal(&self, credential: &str) -> Result<Vec<JournalEntry>> {
        read_journal_at(&self.dir(credential)?.join(JOURNAL))
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
                // The note first: until it is replaced, a refused runner would name the
                // previous holder.
                // The holder names its process (rekey's holders carry their pid).
                let note = format!("{holder}\n");
                file.set_len(0)
                    .and_then(|()| file.write_all(note.as_bytes()))
                    .map_err(|e| io_error("write", &path, e))?;
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

/// The entries of the journal at `path`, none when it does not exist.
fn read_journal_at(path: &Path) -> Result<Vec<JournalEntry>> {
    match read_optional(path)? {
        Some(text) => parse_journal(path, &text).map(|(_, entries)| entries),
        None => Ok(Vec::new()),
    }
}

/// Splits `text`, the journal at `path`, into its complete lines and their entries. A crash
/// mid-append leaves a last line without its newline: it is left out.
fn parse_journal<'t>(path: &Path, text: &'t str) -> Result<(&'t str, Vec<JournalEntry>)> {
    let complete = text.rfind('\n').map_or("", |end| &text[..=end]);
    let entries = complete
        .lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| {
                Error::new(
                    ErrorKind::Unexpected,
                    format!("{}:{}: not a journal entry: {e}", path.display(), i + 1),
                )
            })
        })
        .collect::<Result<_>>()?;
    Ok((complete, entries))
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
