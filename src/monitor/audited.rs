//! `[audit] in_check = true`: the org audit as part of `check`, `run` and `daemon`. Each org is
//! one subject beside the credentials — `org:<ORG>` in alerts, rows and the alert state file (a
//! name no credential can have) — so its findings are alerted, de-duplicated and resolved like
//! a credential's, and counted in `/metrics` as `rekey_audit_findings{id,severity,org}`.

use super::findings::Finding;
use super::observe::{InFlight, Observation, Source};
use crate::config::{Config, Policy};
use crate::governance::{self, AuditReport};
use chrono::{DateTime, Utc};
use rekey_api::Severity;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// The one source an org subject has: the org as the audit read it.
const SOURCE: &str = "audit";

/// The audit of every org, when the config asks for it in `check`.
pub async fn audit_if_asked(config: &Config, now: DateTime<Utc>) -> Option<AuditReport> {
    if !config.audit.in_check {
        return None;
    }
    let report = governance::audit(config, &[], now).await;
    for warning in &report.ledger_warnings {
        tracing::warn!("{warning}; the next audit records them");
    }
    Some(report)
}

/// Each org as a subject with its findings, for the notifier and `check`'s rows. A finding's id
/// is `<finding>:<app>/audit`: one alert per app, and (as for a credential's sources) never
/// resolved while the org could not be read.
pub fn subjects(config: &Config, report: &AuditReport) -> Vec<(Observation, Vec<Finding>)> {
    config
        .orgs
        .keys()
        .map(|org| {
            let read = match report.unreadable.iter().find(|u| u.org == *org) {
                None => Ok(None),
                Some(first) => Err(first.what.clone()),
            };
            let mut findings: Vec<Finding> = report
                .findings
                .iter()
                .filter(|f| f.org == *org)
                .map(|f| Finding {
                    id: match &f.app {
                        Some(app) => format!("{}:{app}/{SOURCE}", f.id),
                        None => format!("{}/{SOURCE}", f.id),
                    },
                    severity: f.severity,
                    message: f.message.clone(),
                })
                .collect();
            if let Err(e) = &read {
                findings.push(Finding {
                    id: format!("unreadable/{SOURCE}"),
                    severity: Severity::Unknown,
                    message: format!("the audit could not read org {org}: {e}"),
                });
            }
            findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
            let subject = Observation {
                credential: format!("org:{org}"),
                app: "*".into(),
                org: org.clone(),
                policy: Policy::default(),
                open_rotation_limit: Duration::ZERO,
                sources: vec![Source {
                    name: SOURCE.into(),
                    is_app: false,
                    read,
                }],
                last_success: None,
                open_rotation: None,
                in_flight: InFlight::default(),
                verify_timeout: Duration::ZERO,
                journal_error: None,
                chain_break: None,
                exposure: Vec::new(),
                consumer: None,
            };
            (subject, findings)
        })
        .collect()
}

/// `rekey_audit_findings{id,severity,org}`: how many unsuppressed findings of each id an org has.
pub fn metrics(report: &AuditReport) -> String {
    let mut counts: BTreeMap<(&str, &str, &str), u32> = BTreeMap::new();
    for f in &report.findings {
        *counts
            .entry((f.org.as_str(), f.id, f.severity.as_str()))
            .or_default() += 1;
    }
    let name = "rekey_audit_findings";
    let mut text = format!(
        "# HELP {name} Unsuppressed findings of `rekey audit`, by finding id, severity and org.\n# TYPE {name} gauge\n"
    );
    for ((org, id, severity), n) in counts {
        let _ = writeln!(
            text,
            "{name}{{id=\"{id}\",severity=\"{severity}\",org=\"{}\"}} {n}",
            super::metrics::escape(org)
        );
    }
    text
}
