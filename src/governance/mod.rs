//! Governance of a whole org, beyond the credentials rekey rotates: every Connected App and
//! External Client App read once (`read`), judged against the hardening checklist
//! (`rules`, the catalogue in `crate::controls`), with the config's accepted exceptions applied
//! (`suppress`); the inventory an NHI process starts from (`inventory`); stale OAuth grants and
//! their revocation (`grants`), recorded in the org's governance ledger (`ledger`).
//!
//! Reads never change anything at Salesforce; what cannot be read is named in the report and
//! makes the verdict unknown, never silently clean.

mod grants;
mod inventory;
mod ledger;
mod read;
mod rules;
mod suppress;

pub use grants::{GrantsReport, RevokeOutcome, stale_grants};
pub use inventory::{InventoryRow, inventory};
pub use ledger::record_new_suppressions;
pub use read::{Unreadable, read_org};
pub use rules::{AuditFinding, evaluate};
pub use suppress::{Suppressed, apply_suppressions};

use crate::config::Config;
use chrono::{DateTime, Utc};
use rekey_api::Severity;
use serde::Serialize;

/// `rekey audit`'s verdict over the orgs it read.
#[derive(Debug, Serialize)]
pub struct AuditReport {
    /// When the audit ran.
    pub at: DateTime<Utc>,
    /// Findings that count, worst first.
    pub findings: Vec<AuditFinding>,
    /// Findings an `[[audit.ignore]]` entry accepted, with the entry.
    pub suppressed: Vec<Suppressed>,
    /// What could not be read, one line each (org and source named).
    pub unreadable: Vec<Unreadable>,
    /// Suppressions that could not be recorded in an org's ledger this time, one line each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ledger_warnings: Vec<String>,
}

impl AuditReport {
    /// The worst severity that counts at `fail_on` and above; `Unknown` when something could not
    /// be read and nothing worse was found.
    pub fn worst(&self, fail_on: Severity) -> Severity {
        let found = self
            .findings
            .iter()
            .map(|f| f.severity)
            .filter(|s| *s >= fail_on)
            .max()
            .unwrap_or(Severity::Ok);
        if self.unreadable.is_empty() {
            found
        } else {
            found.max(Severity::Unknown)
        }
    }
}

/// Audits `orgs` (every org of the config when empty): reads each, evaluates, applies the
/// suppressions, and records suppressions the org's ledger has not seen yet.
pub async fn audit(config: &Config, orgs: &[String], now: DateTime<Utc>) -> AuditReport {
    let mut findings = Vec::new();
    let mut unreadable = Vec::new();
    for org in selected_orgs(config, orgs) {
        let read = read_org(config, &org, now).await;
        unreadable.extend(read.unreadable.iter().cloned());
        findings.extend(evaluate(config, &read, now));
    }
    let (mut findings, suppressed, about) = apply_suppressions(&config.audit.ignore, findings, now);
    findings.extend(about);
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.org.cmp(&b.org))
            .then_with(|| a.app.cmp(&b.app))
            .then_with(|| a.id.cmp(b.id))
    });
    // A ledger that cannot be written now (another runner holds its lease, the store is down)
    // records the suppressions on a later audit; it says nothing about the org's apps.
    let ledger_warnings = record_new_suppressions(config).await;
    AuditReport {
        at: now,
        findings,
        suppressed,
        unreadable,
        ledger_warnings,
    }
}

/// The orgs named, or every org of the config.
pub fn selected_orgs(config: &Config, orgs: &[String]) -> Vec<String> {
    if orgs.is_empty() {
        config.orgs.keys().cloned().collect()
    } else {
        orgs.to_vec()
    }
}
