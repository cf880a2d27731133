//! rekey's embedded default secret store: a directory per credential on the local disk.
//!
//! See this crate's README for the layout. Durability comes from write-to-temp + fsync + rename
//! (+ directory fsync) for every file. The stage map (which generation is CURRENT, PENDING,
//! PREVIOUS) is one small file, so every stage change, promotion and rollback included, is a
//! single atomic rename.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rekey_api::{
    Certificate, Error, ErrorKind, Generation, JournalEntry, KeyMaterial, NewVersion, Result,
    RotationId, RotationLock, SecretStore, Stage, Stages, StoredKey, VersionInfo,
};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The stage map's file name in each credential directory.
const STAGES: &str = "stages.json";

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

/// Holds the OS lock on the credential's `lock` file; closing the file releases it.
#[derive(Debug)]
struct FileLock {
    _file: File,
}

#[async_trait]
impl RotationLock for FileLock {
    async fn release(self: Box<Self>) -> Result<()> {
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
        match fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                Error::new(
                    ErrorKind::Unexpected,
                    format!("{} is not a stage map: {e}", path.display()),
                )
                .with_hint("the file store was edited by hand; restore stages.json from a backup")
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Pointers::default()),
            Err(e) => Err(io_error("read", &path, e)),
        }
    }

    fn write_pointers(dir: &Path, pointers: &Pointers) -> Result<()> {
        write_atomic(&dir.join(STAGES), &to_json(pointers)?, 0o644)
    }

    fn version_info(dir: &Path, generation: Generation) -> Result<VersionInfo> {
        let cert_path = dir.join(file_name(generation, "crt"));
        let pem = fs::read_to_string(&cert_path).map_err(|e| io_error("read", &cert_path, e))?;
        let certificate =
            Certificate::from_pem(&pem).map_err(|e| e.context(cert_path.display()))?;
        let meta_path = dir.join(file_name(generation, "json"));
        let meta: Meta = serde_json::from_str(
            &fs::read_to_string(&meta_path).map_err(|e| io_error("read", &meta_path, e))?,
        )
        .map_err(|e| {
            Error::new(
                ErrorKind::Unexpected,
                format!("{} is not valid metadata: {e}", meta_path.display()),
            )
        })?;
        Ok(VersionInfo {
            generation,
            certificate,
            created_at: meta.created_at,
            rotation_id: meta.rotation_id,
        })
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
}

impl fmt::Display for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "file({})", self.root.display())
    }
}

#[async_trait]
impl SecretStore for FileStore {
    async fn check(&self, credential: &str) -> Result<()> {
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
        let Some(generation) = generation else {
            return Ok(None);
        };
        let info = Self::version_info(&dir, generation)?;
        let key_path = dir.join(file_name(generation, "key"));
        let mut pem = String::new();
        File::open(&key_path)
            .and_then(|mut f| f.read_to_string(&mut pem))
            .map_err(|e| io_error("read", &key_path, e))?;
        let key = KeyMaterial::from_pem(pem).map_err(|e| e.context(key_path.display()))?;
        Ok(Some(StoredKey { info, key }))
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
        let meta = Meta {
            created_at: Utc::now(),
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
        let path = dir.join("journal.jsonl");
        let mut line = to_json(entry)?;
        line.push(b'\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io_error("open", &path, e))?;
        file.write_all(&line)
            .and_then(|()| file.sync_all())
            .map_err(|e| io_error("append to", &path, e))
    }

    async fn read_journal(&self, credential: &str) -> Result<Vec<JournalEntry>> {
        let path = self.dir(credential)?.join("journal.jsonl");
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("read", &path, e)),
        };
        // Only complete lines count: a crash mid-append leaves a last line without its newline.
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
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
            .collect()
    }

    async fn lock(&self, credential: &str, holder: &str) -> Result<Box<dyn RotationLock>> {
        let dir = self.dir(credential)?;
        self.ensure_dir(&dir)?;
        let path = dir.join("lock");
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
                let note = format!("{holder} pid {}\n", std::process::id());
                file.set_len(0)
                    .and_then(|()| file.write_all(note.as_bytes()))
                    .map_err(|e| io_error("write", &path, e))?;
                Ok(Box::new(FileLock { _file: file }))
            }
            Err(fs::TryLockError::WouldBlock) => {
                let mut who = String::new();
                let _ = file.read_to_string(&mut who);
                Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "{self}: credential '{credential}' is locked by {}",
                        who.trim()
                    ),
                )
                .with_hint(
                    "another rekey process is rotating this credential; wait for it to finish",
                ))
            }
            Err(fs::TryLockError::Error(e)) => Err(io_error("lock", &path, e)),
        }
    }
}

fn file_name(generation: Generation, extension: &str) -> String {
    format!("{:06}.{extension}", generation.0)
}

fn to_json(value: &impl Serialize) -> Result<Vec<u8>> {
    serde_json::to_vec(value)
        .map_err(|e| Error::new(ErrorKind::Unexpected, format!("cannot encode JSON: {e}")))
}

/// Writes `bytes` to `path` so that a reader or a crash sees the old file or the new one, never a
/// mix: the temp file is created with `mode` (so a key is never world-readable, even briefly),
/// fsynced, renamed over `path`, and the directory fsynced to make the rename durable.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io_error("write", path, e));
    }
    sync_dir(dir)
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
