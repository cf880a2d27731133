//! What the notifier is told — the findings of a run, how a rotation ended — and what it answers:
//! each message to each channel, and whether it arrived.

use crate::config::CredentialConfig;
use crate::monitor::findings::Finding;
use crate::monitor::observe::Observation;
use crate::rotation::{Closed, Ending, Stopped};
use rekey_notify::Outcome;
use serde::Serialize;

/// One credential as `check` saw it in this run.
pub struct Observed<'a> {
    /// What its sources held (decides whether a cleared finding may be resolved).
    pub observation: &'a Observation,
    /// Its findings now; an earlier finding missing here has cleared.
    pub findings: &'a [Finding],
}

/// How a rotation ended, for the channels.
#[derive(Clone, Debug)]
pub struct RotationNews {
    /// The credential name.
    pub credential: String,
    /// Its app.
    pub app: String,
    /// Its org.
    pub org: String,
    /// How it ended.
    pub outcome: Outcome,
    /// One line, without the credential name.
    pub summary: String,
    /// The rotation's id, when one was assigned.
    pub rotation_id: Option<String>,
}

impl RotationNews {
    /// What the channels hear about a rotation; nothing when another runner held the lease (that
    /// runner reports its own outcome).
    pub fn of(
        cred: &CredentialConfig,
        result: &std::result::Result<Closed, Stopped>,
    ) -> Option<RotationNews> {
        let (outcome, summary, rotation_id) = match result {
            Ok(o) => {
                let now = format!(
                    "generation {} ({}), valid until {}",
                    o.generation.map_or_else(|| "-".into(), |g| g.to_string()),
                    o.fingerprint.map_or_else(|| "-".into(), |f| f.to_string()),
                    o.not_after
                        .map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d").to_string())
                );
                let reason = o.reason.as_deref().unwrap_or("no reason given");
                let (outcome, summary) = match o.ending {
                    Ending::Rotated if o.unadopted.is_empty() => (
                        rekey_notify::Outcome::Succeeded,
                        format!("rotated to {now}"),
                    ),
                    Ending::Rotated => (
                        rekey_notify::Outcome::Unadopted,
                        format!(
                            "rotated to {now}, but NOT adopted by {}",
                            o.unadopted
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join("; ")
                        ),
                    ),
                    Ending::Retired => (
                        rekey_notify::Outcome::Succeeded,
                        format!("previous consumer secret deleted at Salesforce; {now} is CURRENT"),
                    ),
                    Ending::Aborted => (
                        rekey_notify::Outcome::RolledBack,
                        format!("rotation aborted ({reason}); {now} is CURRENT again"),
                    ),
                    Ending::RolledBack => (
                        rekey_notify::Outcome::RolledBack,
                        format!("rotation rolled back ({reason}); {now} is CURRENT again"),
                    ),
                };
                (outcome, summary, Some(&o.rotation_id))
            }
            Err(f) if f.error.kind() == rekey_api::ErrorKind::Busy => return None,
            Err(f) => {
                let at = f
                    .step
                    .map_or_else(|| "before it started".into(), |s| format!("at step {s}"));
                (
                    rekey_notify::Outcome::Failed,
                    format!("rotation failed {at}: {}", f.error),
                    f.rotation_id.as_ref(),
                )
            }
        };
        Some(RotationNews {
            credential: cred.name.clone(),
            app: cred.app.clone(),
            org: cred.org.clone(),
            outcome,
            summary,
            rotation_id: rotation_id.map(ToString::to_string),
        })
    }
}

/// One message to one channel, and how it went. Serialize for --json.
#[derive(Clone, Debug, Serialize)]
pub struct Delivery {
    /// The channel's name in `rekey.toml`.
    pub channel: String,
    /// The credential the message is about.
    pub credential: String,
    /// `alert expiry/app (critical)`, `re-alert expiry/app (warning)`, `resolve expiry/app`,
    /// `rotation succeeded`, …
    pub what: String,
    /// Why it was not delivered; `None` = delivered.
    pub error: Option<String>,
}
