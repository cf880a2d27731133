//! `rekey run`'s summary, and what `rekey daemon` says as it goes.

use super::lines::{deliveries, note, opt, print_json};
use super::status::severity_label;
use crate::monitor::daemon::DaemonEvent;
use crate::monitor::run::{Action, RunReport};

/// What `rekey daemon` says: where it serves, each run's deliveries and summary, its stop.
pub fn daemon(event: DaemonEvent<'_>) {
    match event {
        DaemonEvent::Listening { address, interval } => note(&format!(
            "rekey daemon: /metrics and /healthz on http://{address}; a run every {}s",
            interval.as_secs()
        )),
        DaemonEvent::Ran(report) => {
            deliveries(&report.deliveries, false);
            run(report, false);
        }
        DaemonEvent::Leads { store } => note(&format!(
            "rekey daemon: leading (the leader lease _daemon in store '{store}')"
        )),
        DaemonEvent::Follows { why } => note(&format!("rekey daemon: following: {why}")),
        DaemonEvent::Stopped => note("rekey daemon: stopped"),
    }
}

/// `rekey run`'s summary.
pub fn run(report: &RunReport, json: bool) {
    if json {
        return print_json(report);
    }
    let (mut rotated, mut rolled_back, mut failed, mut waiting, mut would, mut held) =
        (0, 0, 0, 0, 0, 0);
    let mut deferred = report.audit_deferred.len();
    for row in &report.credentials {
        let c = &row.check;
        let action = match &row.action {
            Action::NotDue => "not due".to_string(),
            Action::Deferred { reason } => {
                deferred += 1;
                format!("due; deferred: {reason}")
            }
            Action::WouldRotate => {
                would += 1;
                "would rotate".to_string()
            }
            Action::WouldRetire => {
                would += 1;
                "would delete the previous consumer secret".to_string()
            }
            Action::Retired { rotation_id } => {
                format!("previous consumer secret deleted at Salesforce ({rotation_id})")
            }
            Action::Waiting { opens } => {
                waiting += 1;
                match opens {
                    Some(t) => format!("due; window opens {}", t.format("%Y-%m-%d %H:%MZ")),
                    None => "due; no window will open".to_string(),
                }
            }
            Action::Rotated {
                generation,
                fingerprint,
                unadopted,
                ..
            } => {
                rotated += 1;
                let unadopted = if unadopted.is_empty() {
                    String::new()
                } else {
                    format!("; NOT adopted by {}", unadopted.join("; "))
                };
                format!(
                    "rotated to generation {} ({}){unadopted}",
                    opt(*generation),
                    opt(fingerprint.as_ref())
                )
            }
            Action::RolledBack { reason, .. } => {
                rolled_back += 1;
                format!("rolled back: {reason}")
            }
            Action::Failed { error, .. } => {
                failed += 1;
                format!("FAILED: {error}")
            }
            Action::Held { stopped_at } => {
                held += 1;
                format!("due; held back: the canary order stopped at org {stopped_at}")
            }
        };
        out!(
            "{:<20} {:<8} {action}",
            c.credential,
            severity_label(c.severity)
        );
        for reason in &row.reasons {
            out!("{:<29} because {reason}", "");
        }
        if let Action::Failed {
            hint: Some(hint), ..
        } = &row.action
        {
            out!("{:<29} hint: {hint}", "");
        }
        for f in &c.findings {
            out!("{:<29} - [{:?}] {}", "", f.severity, f.message);
        }
    }
    for c in &report.audit {
        out!(
            "{:<20} {:<8} audited",
            c.credential,
            severity_label(c.severity)
        );
        for f in &c.findings {
            out!("{:<29} - [{:?}] {}", "", f.severity, f.message);
        }
    }
    for d in &report.audit_deferred {
        out!(
            "{:<20} {:<8} audit deferred: {}",
            format!("org:{}", d.org),
            "",
            d.reason
        );
    }
    let total = report.credentials.len();
    let verb = if report.dry_run { "dry run" } else { "run" };
    out!(
        "{verb}: {total} credentials: {rotated} rotated, {would} would rotate, {rolled_back} rolled back, {failed} failed, {waiting} waiting for a window{}; exit {}",
        if deferred > 0 {
            format!(", {deferred} deferred for the API budget")
        } else {
            String::new()
        },
        report.exit as u8
    );
    if let Some(org) = &report.canary_stopped_at {
        out!(
            "canary: stopped at org {org} (a rotation there did not succeed); {held} due credentials held back; orgs left untouched: {}",
            if report.untouched_orgs.is_empty() {
                "none".to_string()
            } else {
                report.untouched_orgs.join(", ")
            }
        );
    }
    if let Some(e) = &report.alert_error {
        out!("alerts: {e}");
    }
}
