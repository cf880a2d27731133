//! The state file: which finding of which credential was sent to which channel, at which
//! severity and when, and which channel was told of a failed rotation.

use chrono::{DateTime, Utc};
use rekey_api::Severity;
use rekey_api::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The state file's format; another number is treated like an unreadable file.
pub(super) const STATE_VERSION: u32 = 1;
/// How long to wait for another rekey (a cron `run`, a `check`) to finish with the state file.
/// Its sends take at most about a minute (4 attempts of 10 s each, plus waits).
pub(super) const LOCK_WAIT: Duration = Duration::from_secs(180);
/// How often a held lock is tried again.
pub(super) const LOCK_POLL: Duration = Duration::from_millis(50);

/// What was sent where. `channels` → name → records; keyed by name so that a renamed or removed
/// channel's records can be dropped.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct State {
    pub(super) version: u32,
    #[serde(default)]
    pub(super) channels: BTreeMap<String, ChannelState>,
}

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct ChannelState {
    /// credential → finding id → the open alert.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) alerts: BTreeMap<String, BTreeMap<String, AlertRecord>>,
    /// credential → the failed or rolled-back rotation this channel was told about and not yet
    /// told the end of.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) rotations: BTreeMap<String, RotationRecord>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct AlertRecord {
    /// The key it was sent under, so the resolve closes that one even if the org was renamed.
    pub(super) dedup_key: String,
    /// The severity last seen (sent, or lowered since without sending).
    pub(super) severity: Severity,
    /// When it was last sent.
    pub(super) sent_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct RotationRecord {
    pub(super) outcome: Unfinished,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) rotation_id: Option<String>,
    pub(super) sent_at: DateTime<Utc>,
}

/// A rotation outcome that leaves an incident open until a later success.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Unfinished {
    Failed,
    RolledBack,
    Unadopted,
}

pub(super) fn state_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::new(
        ErrorKind::Config,
        format!("cannot {what} the alert state file {}", path.display()),
    )
    .with_source(e)
    .with_hint(
        "check that [alerts] state_file is in a directory rekey can write (rekey creates the directory if it can)",
    )
}

/// `<state_file>.lock`, locked exclusively; the lock is released when the file is dropped.
pub(super) async fn lock(state_file: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = parent(state_file) {
        std::fs::create_dir_all(dir)
            .map_err(|e| state_error("create the directory of", state_file, e))?;
    }
    let mut name = state_file.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| state_error("open the lock of", state_file, e))?;
    let deadline = tokio::time::Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(LOCK_POLL).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::new(
                    ErrorKind::Busy,
                    format!(
                        "another rekey has held {} for {} s",
                        path.display(),
                        LOCK_WAIT.as_secs()
                    ),
                )
                .with_hint(
                    "a `rekey run` or `rekey check` is sending alerts; try again when it is done",
                )
                .temporary());
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(state_error("lock", &path, e));
            }
        }
    }
}

/// The directory of `path`, when it names one.
pub(super) fn parent(path: &Path) -> Option<&Path> {
    path.parent().filter(|d| !d.as_os_str().is_empty())
}

/// The recorded state: empty when there is no file yet, or (with a warning) when the file cannot
/// be understood — sending again is the safe side.
pub(super) fn load(path: &Path) -> Result<State> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(empty()),
        Err(e) => return Err(state_error("read", path, e)),
    };
    match serde_json::from_slice::<State>(&bytes) {
        Ok(state) if state.version == STATE_VERSION => Ok(state),
        Ok(state) => {
            tracing::warn!(
                file = %path.display(),
                version = state.version,
                "the alert state file has an unknown version; starting afresh (open alerts are sent again)"
            );
            Ok(empty())
        }
        Err(e) => {
            tracing::warn!(
                file = %path.display(),
                error = %e,
                "the alert state file cannot be parsed; starting afresh (open alerts are sent again)"
            );
            Ok(empty())
        }
    }
}

pub(super) fn empty() -> State {
    State {
        version: STATE_VERSION,
        channels: BTreeMap::new(),
    }
}

/// Replaces the state file atomically: a reader sees the old file or the new one, and a crash
/// leaves one of them.
pub(super) fn save(path: &Path, state: &State) -> Result<()> {
    let mut text = serde_json::to_vec_pretty(state).expect("the state always serializes");
    text.push(b'\n');
    rekey_api::write_atomic(path, &text, 0o600).map_err(|e| state_error("write", path, e))
}
