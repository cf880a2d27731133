//! The incident evidence bundle an emergency rekey leaves behind, however it ends (`emergency`,
//! `resume`, `abort` before publish, a rerun, or `run`/`daemon` continuing it): who, where, why, when each step
//! began and ended, the fingerprints, what was revoked and what each verification saw. Built from
//! the journal, so a resumed emergency's bundle covers the interrupted run too. It holds
//! identifiers, fingerprints, counts and Salesforce's own answers — never key bytes or tokens.

use super::{Closed, Emergency, Ending, Stopped};
use crate::config::Config;
use crate::config::CredentialConfig;
use crate::wiring;
use chrono::{DateTime, Utc};
use rekey_api::Result;
use rekey_api::{JournalEntry, Phase, Revoked, RotationId, Step};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The bundle, as written to `<dir>/<rotation id>.json`.
#[derive(Serialize)]
pub(crate) struct Evidence<'a> {
    /// Always `rekey-emergency-evidence`.
    pub kind: &'static str,
    /// Format version.
    pub version: u32,
    /// The credential.
    pub credential: &'a str,
    /// Its app.
    pub app: &'a str,
    /// Its org.
    pub org: &'a str,
    /// The rotation, once one was started.
    pub rotation_id: Option<&'a RotationId>,
    /// `completed`, `aborted` (before its new certificate could reach the app) or `failed`.
    pub outcome: &'static str,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// The operator's reason.
    pub reason: &'a str,
    /// Whether the kill switch was used.
    pub kill_switch: bool,
    /// Who ran it (the login name).
    pub operator: String,
    /// On which machine.
    pub host: String,
    /// The first journal entry's time.
    pub started_at: Option<DateTime<Utc>>,
    /// When this bundle was written.
    pub finished_at: DateTime<Utc>,
    /// The certificate the app held before (the leaked key's).
    pub old_fingerprint: Option<String>,
    /// The certificate that replaced it.
    pub new_fingerprint: Option<String>,
    /// What the revoke step ended.
    pub revoked: Option<Revoked>,
    /// What the verification saw (the new key accepted, the old refused).
    pub verification: Option<String>,
    /// What the destroy step removed.
    pub destroyed: Option<String>,
    /// Every journal entry of the rotation.
    pub timeline: Vec<Moment<'a>>,
}

/// One journal entry.
#[derive(Serialize)]
pub(crate) struct Moment<'a> {
    /// When.
    pub at: DateTime<Utc>,
    /// Which step.
    pub step: Step,
    /// Begin, done or failed.
    pub phase: Phase,
    /// What it did or why it failed.
    pub detail: Option<&'a str>,
}

/// Builds the bundle for `cred`'s emergency from its outcome and its journal.
fn build<'a>(
    cred: &'a CredentialConfig,
    emergency: &'a Emergency,
    result: &'a std::result::Result<Closed, Stopped>,
    journal: &'a [JournalEntry],
    operator: String,
) -> Evidence<'a> {
    let rotation_id = match result {
        Ok(o) => Some(&o.rotation_id),
        Err(f) => f.rotation_id.as_ref(),
    };
    let entries: Vec<&JournalEntry> = journal
        .iter()
        .filter(|e| Some(&e.rotation_id) == rotation_id)
        .collect();
    let done = |step: Step| {
        entries
            .iter()
            .rev()
            .find(|e| e.step == step && e.phase == Phase::Done)
            .and_then(|e| e.detail.as_deref())
    };
    let fingerprint = |f: Option<rekey_api::Fingerprint>| f.map(|f| f.to_hex());
    Evidence {
        kind: "rekey-emergency-evidence",
        version: 1,
        credential: &cred.name,
        app: &cred.app,
        org: &cred.org,
        rotation_id,
        outcome: match result {
            Ok(Closed {
                ending: Ending::Rotated,
                ..
            }) => "completed",
            // Only before its new certificate could reach the app: an emergency is never rolled
            // back, and aborting one is refused after that.
            Ok(_) => "aborted",
            Err(_) => "failed",
        },
        error: result.as_ref().err().map(|f| f.error.to_string()),
        reason: &emergency.reason,
        kill_switch: emergency.kill_switch,
        operator,
        host: super::hostname(),
        started_at: entries.first().map(|e| e.at),
        finished_at: rekey_api::now(),
        old_fingerprint: fingerprint(entries.iter().find_map(|e| e.old_fingerprint)),
        new_fingerprint: fingerprint(entries.iter().rev().find_map(|e| e.new_fingerprint)),
        revoked: done(Step::Revoke).and_then(|d| serde_json::from_str(d).ok()),
        verification: done(Step::Verify).map(str::to_string),
        destroyed: done(Step::Destroy).map(str::to_string),
        timeline: entries
            .iter()
            .map(|e| Moment {
                at: e.at,
                step: e.step,
                phase: e.phase,
                detail: e.detail.as_deref(),
            })
            .collect(),
    }
}

/// Writes `evidence` to `<dir>/<rotation id or credential>.json` (0600, atomic) and returns the path.
fn write(dir: &Path, evidence: &Evidence<'_>) -> rekey_api::Result<PathBuf> {
    let name = evidence.rotation_id.map_or_else(
        || format!("{}-not-started", evidence.credential),
        |id| id.to_string(),
    );
    let path = dir.join(format!("{name}.json"));
    let io = |e: std::io::Error| {
        rekey_api::Error::new(
            rekey_api::ErrorKind::Config,
            format!("cannot write the evidence bundle {}", path.display()),
        )
        .with_source(e)
        .with_hint("pass --evidence-dir DIR with a directory rekey can write")
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut text = serde_json::to_vec_pretty(evidence).expect("evidence always serializes");
    text.push(b'\n');
    rekey_api::write_atomic(&path, &text, 0o600).map_err(io)?;
    Ok(path)
}

/// Where evidence bundles go: `given`, else `evidence/` beside the config file.
pub fn evidence_dir(config: &Config, given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| {
        config
            .path
            .parent()
            .unwrap_or(Path::new("."))
            .join("evidence")
    })
}

/// Writes the evidence bundle of the rotation `result` ended into `dir` when the journal says it
/// is an emergency (or, before anything was journaled, when `asked` is one): built from the
/// journal, so its reason and timeline are the ones journaled when the emergency began, whichever
/// command ends it. `None`: no emergency, nothing written. What went wrong without stopping the
/// bundle goes to `warnings`.
pub async fn evidence_of(
    config: &Config,
    cred: &CredentialConfig,
    result: &std::result::Result<Closed, Stopped>,
    dir: &Path,
    asked: Option<&Emergency>,
    warnings: &mut Vec<String>,
) -> Option<Result<PathBuf>> {
    let id = match result {
        Ok(closed) => Some(&closed.rotation_id),
        Err(stopped) => stopped.rotation_id.as_ref(),
    };
    if id.is_none() && asked.is_none() {
        // No rotation began and none was asked for as an emergency: nothing to tell.
        return None;
    }
    let journal = match wiring::stores(config, cred).await {
        Ok(stores) => stores[0].read_journal(&cred.name).await,
        Err(e) => Err(e),
    };
    let journaled = match (&journal, id) {
        (Ok(journal), Some(id)) => super::history::emergency_in(journal, id),
        _ => None,
    };
    let emergency = journaled.or_else(|| asked.cloned())?;
    let journal = journal.unwrap_or_else(|e| {
        // The bundle is still written, so the incident has the outcome and fingerprints.
        warnings.push(format!(
            "{}: the evidence bundle has no timeline: the journal could not be read: {e}",
            cred.name
        ));
        Vec::new()
    });
    let bundle = build(cred, &emergency, result, &journal, wiring::operator());
    Some(write(dir, &bundle))
}
