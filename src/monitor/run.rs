//! `rekey run`, the cron entrypoint (and each cycle of `rekey daemon`): observe every credential,
//! rotate the ones that are due and inside a change window (a bounded number at a time), observe
//! again, alert on what is still wrong, and report one summary whose exit code is the worst
//! outcome.

use crate::config::{Config, CredentialConfig};
use crate::exit::Exit;
use crate::monitor::alerts::{Delivery, Notifier, Observed, RotationNews};
use crate::monitor::batch;
pub use crate::monitor::batch::RunEvent;
use crate::monitor::budget::{Budget, DeferredAudit};
use crate::monitor::due::{self, Reason};
use crate::monitor::findings::{self, CheckRow, Finding, check_row};
use crate::monitor::observe::{self, Observation};
use crate::rotation::{Closed, Ending, Intent, Stopped};
use crate::windows::{self, WindowState};
use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use rekey_api::Severity;
use serde::Serialize;

/// What a run did with one credential.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Not due.
    NotDue,
    /// Due, but its change window is closed.
    Waiting {
        /// When the next window opens (`None`: never again).
        opens: Option<DateTime<Utc>>,
    },
    /// Due for a reason that can wait (key age, drift), but its org is above
    /// `api_budget_share` of its daily API requests: a later run rotates it.
    Deferred {
        /// The org's usage against its share.
        reason: String,
    },
    /// `--dry-run`: would rotate now.
    WouldRotate,
    /// `--dry-run`: would delete the previous consumer secret now.
    WouldRetire,
    /// Deleted the previous consumer secret at Salesforce (`revoke_previous_after_hours` passed).
    Retired {
        /// The retire's journal id.
        rotation_id: String,
    },
    /// Rotated (or finished an interrupted rotation).
    Rotated {
        /// The rotation.
        rotation_id: String,
        /// The generation now CURRENT.
        generation: Option<u64>,
        /// Its certificate.
        fingerprint: Option<String>,
        /// Consumers that had not adopted it by their deadline (`on_adoption_failure = "alert"`).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        unadopted: Vec<String>,
    },
    /// Salesforce never accepted the new key; the rotation undid itself.
    RolledBack {
        /// The rotation.
        rotation_id: String,
        /// Why.
        reason: String,
    },
    /// Due, but not rotated: the canary order (`[run] org_order`) stopped at an earlier org.
    Held {
        /// The org whose rotations did not all succeed.
        stopped_at: String,
    },
    /// The rotation stopped; see the error and its hint.
    Failed {
        /// The rotation, if one started.
        rotation_id: Option<String>,
        /// The error.
        error: String,
        /// What to do.
        hint: Option<String>,
        /// The exit code `rekey rotate` would have given.
        exit: Exit,
    },
}

/// One credential's line in the summary.
#[derive(Serialize)]
pub struct RunRow {
    /// What was done.
    #[serde(flatten)]
    pub action: Action,
    /// Why it was due (empty: not due).
    pub reasons: Vec<Reason>,
    /// Its change windows now.
    pub window: WindowState,
    /// `check` after the run.
    pub check: CheckRow,
}

/// One run.
#[derive(Serialize)]
pub struct RunReport {
    /// When it began, by rekey's clock.
    pub started_at: DateTime<Utc>,
    /// `--dry-run`: nothing was rotated or sent.
    pub dry_run: bool,
    /// One row per credential, in config order.
    pub credentials: Vec<RunRow>,
    /// One row per org when `[audit] in_check` is on (`org:<ORG>`, the audit's findings).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub audit: Vec<CheckRow>,
    /// `[run] org_order`: the org whose rotations did not all succeed, where the run stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary_stopped_at: Option<String>,
    /// The orgs whose due credentials the run left untouched because the canary order stopped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub untouched_orgs: Vec<String>,
    /// Orgs whose in-check audit waited for a later run (above `api_budget_share`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub audit_deferred: Vec<DeferredAudit>,
    /// Every alert and rotation notice sent, and whether it arrived.
    pub deliveries: Vec<Delivery>,
    /// Why alerting itself failed (the state file), if it did.
    pub alert_error: Option<String>,
    /// The process exit code.
    pub exit: Exit,
    /// Every credential's facts after the run, for metrics.
    #[serde(skip)]
    pub observed: Vec<(Observation, Severity)>,
    /// The org audit's metrics (empty without `[audit] in_check`).
    #[serde(skip)]
    pub audit_metrics: String,
}

/// Runs once over every credential. `--dry-run` decides but neither rotates nor sends.
/// `progress` hears what happens as it happens, from rotations running side by side.
pub async fn cycle(
    config: &Config,
    notifier: Option<&Notifier>,
    dry_run: bool,
    progress: &(dyn Fn(RunEvent<'_>) + Sync),
) -> RunReport {
    let started_at = rekey_api::now();
    let limit = config.run.concurrency;
    let creds: Vec<&CredentialConfig> = config.credentials.values().collect();
    let total = creds.len();
    crate::wiring::read_ahead(config, &creds).await;
    let before: Vec<Observation> = futures_util::stream::iter(&creds)
        .map(|cred| observe::observe(config, cred))
        .buffered(limit)
        .enumerate()
        .map(|(i, o)| {
            progress(RunEvent::Observed { done: i + 1, total });
            o
        })
        .collect()
        .await;
    let due: Vec<Vec<Reason>> = creds
        .iter()
        .zip(&before)
        .map(|(cred, o)| due::due(o, &cred.schedule, started_at))
        .collect();
    let budget = Budget::read(
        config,
        creds.iter().copied().zip(due.iter().map(Vec::as_slice)),
    )
    .await;
    let decisions: Vec<Decision> = creds
        .iter()
        .zip(&before)
        .zip(due)
        .map(|((cred, o), reasons)| decide(cred, o, reasons, &budget, started_at))
        .collect();
    let jobs = creds
        .iter()
        .zip(&decisions)
        .enumerate()
        .filter(|_| !dry_run)
        .filter_map(|(index, (cred, d))| {
            // A due rotation retires the previous pair itself (before staging a new one).
            let intent = match (d.go, d.retire) {
                (true, _) => Intent::Rotate,
                (false, true) => Intent::Retire,
                (false, false) => return None,
            };
            Some(batch::Job {
                index,
                cred,
                intent,
            })
        })
        .collect();
    let rotations = batch::rotate_all(config, jobs, progress).await;
    let mut results: Vec<Option<std::result::Result<Closed, Stopped>>> =
        creds.iter().map(|_| None).collect();
    for (index, result) in rotations.results {
        results[index] = Some(result);
    }
    let mut deliveries = Vec::new();
    let mut alert_error = None;
    let notifier = notifier.filter(|_| !dry_run);
    if let Some(notifier) = notifier {
        for (cred, result) in creds.iter().zip(&results) {
            let Some(news) = result.as_ref().and_then(|r| RotationNews::of(cred, r)) else {
                continue;
            };
            match notifier.rotation(&news, rekey_api::now()).await {
                Ok(sent) => deliveries.extend(sent),
                Err(e) => alert_error = Some(e.to_string()),
            }
        }
    }
    // What rotated (or tried to) is read again, so alerts and metrics describe the end state.
    let touched: Vec<&CredentialConfig> = creds
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.is_some())
        .map(|(c, _)| *c)
        .collect();
    let mut again = observe_all(config, &touched, limit).await.into_iter();
    let after: Vec<Observation> = before
        .into_iter()
        .zip(&results)
        .map(|(o, r)| match r {
            Some(_) => again.next().unwrap_or(o),
            None => o,
        })
        .collect();
    let now = rekey_api::now();
    let findings: Vec<Vec<Finding>> = after.iter().map(|o| findings::evaluate(o, now)).collect();
    let (audit, audit_deferred) = budget.audit(config, now).await;
    let orgs = audit
        .as_ref()
        .map(|report| Budget::subjects(config, report, &audit_deferred))
        .unwrap_or_default();
    if let Some(notifier) = notifier {
        let observed: Vec<Observed<'_>> = after
            .iter()
            .zip(&findings)
            .chain(orgs.iter().map(|(o, f)| (o, f)))
            .map(|(observation, findings)| Observed {
                observation,
                findings,
            })
            .collect();
        match notifier.findings(&observed, now).await {
            Ok(sent) => deliveries.extend(sent),
            Err(e) => alert_error = Some(e.to_string()),
        }
    }
    let mut rows = Vec::new();
    let mut observed = Vec::new();
    for (((o, findings), decision), result) in
        after.into_iter().zip(findings).zip(decisions).zip(results)
    {
        let check = check_row(&o, findings, now);
        observed.push((o, check.severity));
        let action = match (&result, &decision.window) {
            (Some(result), _) => action(result),
            (None, _) if rotations.held.contains(&rows.len()) => Action::Held {
                stopped_at: rotations.stopped_at.clone().unwrap_or_default(),
            },
            (None, _) if decision.retire && !decision.go => Action::WouldRetire,
            (None, _) if decision.reasons.is_empty() => Action::NotDue,
            (None, _) if decision.deferred.is_some() => Action::Deferred {
                reason: decision.deferred.clone().unwrap_or_default(),
            },
            (None, _) if decision.go => Action::WouldRotate,
            (None, WindowState::Closed { opens }) => Action::Waiting { opens: *opens },
            (None, _) => Action::NotDue,
        };
        rows.push(RunRow {
            action,
            reasons: decision.reasons,
            window: decision.window,
            check,
        });
    }
    let audit_rows: Vec<CheckRow> = orgs
        .into_iter()
        .map(|(o, findings)| check_row(&o, findings, now))
        .collect();
    let exit = worst(&rows, &audit_rows, &deliveries, alert_error.is_some());
    RunReport {
        started_at,
        dry_run,
        credentials: rows,
        audit: audit_rows,
        canary_stopped_at: rotations.stopped_at,
        untouched_orgs: rotations.untouched,
        audit_deferred,
        deliveries,
        alert_error,
        exit,
        observed,
        audit_metrics: audit
            .as_ref()
            .map(crate::monitor::audited::metrics)
            .unwrap_or_default(),
    }
}

/// Whether (and why) one credential rotates in this run.
struct Decision {
    reasons: Vec<Reason>,
    window: WindowState,
    go: bool,
    /// A consumer secret whose previous pair is past `revoke_previous_after_hours`: deleting it
    /// ends access nobody should have, so it waits for no change window.
    retire: bool,
    /// Why a rotation that can wait waits for the org's API budget.
    deferred: Option<String>,
}

fn decide(
    cred: &CredentialConfig,
    o: &Observation,
    reasons: Vec<Reason>,
    budget: &Budget,
    now: DateTime<Utc>,
) -> Decision {
    let window = windows::window_state(&cred.schedule.windows, now);
    // Finishing an interrupted rotation is not a new change, so it never waits for a window.
    let interrupted = reasons
        .iter()
        .any(|r| matches!(r, Reason::Interrupted { .. }));
    let open = !matches!(window, WindowState::Closed { .. });
    let retire =
        o.open_rotation.is_none() && o.consumer.as_ref().is_some_and(|slot| slot.retire_due(now));
    let go = !reasons.is_empty() && (open || interrupted);
    let deferred = go.then(|| budget.defers(cred, &reasons)).flatten();
    Decision {
        go: go && deferred.is_none(),
        reasons,
        window,
        retire,
        deferred,
    }
}

async fn observe_all(
    config: &Config,
    creds: &[&CredentialConfig],
    limit: usize,
) -> Vec<Observation> {
    crate::wiring::read_ahead(config, creds).await;
    futures_util::stream::iter(creds)
        .map(|cred| observe::observe(config, cred))
        .buffered(limit)
        .collect()
        .await
}

fn action(result: &std::result::Result<Closed, Stopped>) -> Action {
    match result {
        Ok(o) if o.ending == Ending::Retired => Action::Retired {
            rotation_id: o.rotation_id.to_string(),
        },
        Ok(o) if o.ending == Ending::Rotated => Action::Rotated {
            rotation_id: o.rotation_id.to_string(),
            generation: o.generation.map(|g| g.0),
            fingerprint: o.fingerprint.map(|f| f.to_string()),
            unadopted: o.unadopted.iter().map(ToString::to_string).collect(),
        },
        Ok(o) => Action::RolledBack {
            rotation_id: o.rotation_id.to_string(),
            reason: o.reason.clone().unwrap_or_default(),
        },
        Err(f) => Action::Failed {
            rotation_id: f.rotation_id.as_ref().map(ToString::to_string),
            error: f.error.to_string(),
            hint: f.error.hint().map(str::to_string),
            exit: f.exit(),
        },
    }
}

/// The run's exit code: a failed rotation's code first, then a rollback, then the worst check
/// (an undeliverable alert counts as unknown: nobody was told).
fn worst(rows: &[RunRow], audit: &[CheckRow], deliveries: &[Delivery], alert_failed: bool) -> Exit {
    if let Some(exit) = rows.iter().find_map(|r| match &r.action {
        Action::Failed { exit, .. } => Some(*exit),
        _ => None,
    }) {
        return exit;
    }
    if rows
        .iter()
        .any(|r| matches!(r.action, Action::RolledBack { .. }))
    {
        return Exit::RolledBack;
    }
    // The canary stopped (on an unadopted rotation): what it held back was not touched.
    if rows.iter().any(|r| matches!(r.action, Action::Held { .. })) {
        return Exit::FailedBeforePublish;
    }
    let undelivered = alert_failed || deliveries.iter().any(|d| d.error.is_some());
    let severity = rows
        .iter()
        .map(|r| r.check.severity)
        .chain(audit.iter().map(|r| r.severity))
        .chain(undelivered.then_some(Severity::Unknown))
        .max()
        .unwrap_or(Severity::Ok);
    Exit::of_severity(severity)
}
