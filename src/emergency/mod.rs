//! The emergency rekey after a leak, for one credential or every credential of an org: which
//! credentials, the refusals that change nothing, then one credential at a time — the emergency
//! protocol, the evidence bundle, the channels told — stopping at the first failure.

use crate::config::{AppKind, Config, CredentialConfig};
use crate::exit::Exit;
use crate::monitor::alerts::{Delivery, Notifier, RotationNews};
use crate::rotation::{self, Emergency, Intent, Progress, Unadopted};
use crate::wiring;
use rekey_api::{CredentialKind, Error, ErrorKind, Result, RotationId};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What `rekey emergency` rekeys.
pub enum Which {
    /// One credential.
    Credential(String),
    /// Every credential of an org.
    Org(String),
}

/// One credential's result in `rekey emergency`.
#[derive(Serialize)]
pub struct EmergencyRow {
    /// Credential name.
    pub credential: String,
    /// `rekeyed`, `failed` or `not started` (after an earlier failure).
    pub outcome: &'static str,
    /// The rotation, once one was started.
    pub rotation_id: Option<RotationId>,
    /// Why it failed.
    pub error: Option<String>,
    /// What to do about it.
    pub hint: Option<String>,
    /// Where its evidence bundle was written.
    pub evidence: Option<PathBuf>,
    /// Consumers that had not adopted the new key by their deadline.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unadopted: Vec<Unadopted>,
}

impl EmergencyRow {
    /// A credential left alone because an earlier one failed.
    pub fn not_started(cred: &CredentialConfig) -> EmergencyRow {
        EmergencyRow {
            credential: cred.name.clone(),
            outcome: "not started",
            rotation_id: None,
            error: None,
            hint: None,
            evidence: None,
            unadopted: Vec::new(),
        }
    }
}

/// The credentials `which` names, refusing (and changing nothing) when there are none or when a
/// kill switch is asked of a Connected App, which has none.
pub fn select<'c>(
    config: &'c Config,
    which: &Which,
    emergency: &Emergency,
) -> Result<Vec<&'c CredentialConfig>> {
    let creds: Vec<&CredentialConfig> = match which {
        Which::Credential(name) => vec![wiring::credential(config, name)?],
        Which::Org(org) => {
            config.org(org)?;
            config
                .credentials
                .values()
                .filter(|c| &c.org == org)
                .collect()
        }
    };
    if creds.is_empty() {
        return Err(Error::new(
            ErrorKind::Config,
            "no credential to rekey in that org",
        ));
    }
    if emergency.kill_switch
        && let Some(cred) = creds
            .iter()
            .find(|c| c.kind == CredentialKind::ConsumerSecret)
    {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "{}: a consumer secret needs no kill switch: its leaked pair is deleted at Salesforce as soon as the new one works",
                cred.name
            ),
        )
        .with_hint("omit --kill-switch for consumer secret credentials; nothing was changed"));
    }
    if emergency.kill_switch
        && let Some(cred) = creds
            .iter()
            .find(|c| c.app_kind != AppKind::ExternalClientApp)
    {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "{}: {} is a Connected App, which has no OAuth kill switch",
                cred.name, cred.app
            ),
        )
        .with_hint(
            "omit --kill-switch (it applies to External Client Apps only); nothing was changed",
        ));
    }
    Ok(creds)
}

pub use crate::rotation::evidence::{evidence_dir, evidence_of};

/// One credential rekeyed (or not): its row, its exit code, what the channels were told, and
/// what the operator should be warned about.
pub struct Rekeyed {
    /// The summary row.
    pub row: EmergencyRow,
    /// Its exit code (`Ok` when it was rekeyed and its evidence written).
    pub exit: Exit,
    /// Notifications sent about it.
    pub deliveries: Vec<Delivery>,
    /// What went wrong around it without failing it (evidence without a timeline, a notification
    /// that could not be recorded, an evidence bundle that could not be written).
    pub warnings: Vec<String>,
}

/// Rekeys `cred` through the emergency protocol, writes its evidence bundle into `dir` (built
/// from the journal, so a resumed emergency's covers the interrupted run) and tells the channels.
pub async fn rekey(
    config: &Config,
    cred: &CredentialConfig,
    emergency: &Emergency,
    dir: &Path,
    notifier: Option<&Notifier>,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Rekeyed {
    let mut warnings = Vec::new();
    let mut deliveries = Vec::new();
    let result = rotation::rotate_credential(
        config,
        cred,
        &Intent::Emergency(emergency.clone()),
        progress,
    )
    .await;
    let written = evidence_of(config, cred, &result, dir, Some(emergency), &mut warnings)
        .await
        .unwrap_or_else(|| {
            Err(Error::new(
                ErrorKind::Unexpected,
                format!(
                    "{}: no rotation was started, so there is no evidence bundle",
                    cred.name
                ),
            ))
        });
    if let (Some(notifier), Some(mut news)) = (notifier, RotationNews::of(cred, &result)) {
        news.summary = format!("emergency rekey ({}): {}", emergency.reason, news.summary);
        match notifier.rotation(&news, rekey_api::now()).await {
            Ok(sent) => deliveries = sent,
            Err(e) => warnings.push(format!("could not record the notification: {e}")),
        }
    }
    let mut exit = Exit::Ok;
    let (outcome, rotation_id, error, hint) = match &result {
        Ok(o) => ("rekeyed", Some(o.rotation_id.clone()), None, None),
        Err(stopped) => {
            exit = stopped.exit();
            (
                "failed",
                stopped.rotation_id.clone(),
                Some(stopped.error.to_string()),
                stopped.error.hint().map(str::to_string),
            )
        }
    };
    let evidence = match written {
        Ok(path) => Some(path),
        Err(e) => {
            warnings.push(match e.hint() {
                Some(hint) => format!("{e}; {hint}"),
                None => e.to_string(),
            });
            if exit == Exit::Ok {
                exit = Exit::Internal;
            }
            None
        }
    };
    Rekeyed {
        row: EmergencyRow {
            credential: cred.name.clone(),
            outcome,
            rotation_id,
            error,
            hint,
            evidence,
            unadopted: result.map(|o| o.unadopted).unwrap_or_default(),
        },
        exit,
        deliveries,
        warnings,
    }
}
