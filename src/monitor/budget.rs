//! The org's API budget in `rekey run` and each daemon cycle: above `[run] api_budget_share` of
//! an org's daily API requests (as Salesforce reports it in `Sforce-Limit-Info`), the run defers
//! that org's work that can wait — a scheduled rotation for key age or drift, and the in-check
//! audit — to a later run. Nothing driven by expiry (`renew_before_days`), an interrupted
//! rotation or an emergency (an open rotation) ever waits.

use super::audited;
use super::due::Reason;
use super::findings::Finding;
use super::observe::Observation;
use crate::config::{Config, CredentialConfig};
use crate::governance::{self, AuditReport};
use crate::wiring;
use chrono::{DateTime, Utc};
use rekey_salesforce::ApiUsage;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Each org's API usage where the run had something it could defer, against the share allowed.
pub struct Budget {
    share: f64,
    usage: BTreeMap<String, ApiUsage>,
}

/// An org whose in-check audit waited for a later run.
#[derive(Clone, Debug, Serialize)]
pub struct DeferredAudit {
    /// The org.
    pub org: String,
    /// Why.
    pub reason: String,
}

/// Whether a rotation due only for these reasons may wait: key age and drift may, an expiring
/// certificate and an interrupted (or emergency) rotation may not.
pub fn can_wait(reasons: &[Reason]) -> bool {
    !reasons.is_empty()
        && reasons
            .iter()
            .all(|r| matches!(r, Reason::KeyAge { .. } | Reason::Drift { .. }))
}

impl Budget {
    /// Reads the usage of every org with work that could wait: a credential due only for
    /// reasons that can (`due` of each credential), or an in-check audit. An org whose usage
    /// cannot be read defers nothing (the work is worth more than the guess).
    pub async fn read(
        config: &Config,
        due: impl IntoIterator<Item = (&CredentialConfig, &[Reason])>,
    ) -> Budget {
        let mut orgs: Vec<&str> = due
            .into_iter()
            .filter(|(_, reasons)| can_wait(reasons))
            .map(|(cred, _)| cred.org.as_str())
            .collect();
        if config.audit.in_check {
            orgs.extend(config.orgs.keys().map(String::as_str));
        }
        orgs.sort_unstable();
        orgs.dedup();
        let mut usage = BTreeMap::new();
        for org in orgs {
            match wiring::org_api_usage(config, org).await {
                Ok(u) => {
                    usage.insert(org.to_string(), u);
                }
                Err(e) => {
                    tracing::warn!(%org, error = %e, "cannot read the org's API usage; nothing is deferred for it");
                }
            }
        }
        Budget {
            share: config.run.api_budget_share,
            usage,
        }
    }

    /// Why `org`'s work that can wait waits, when its usage is above the share.
    fn over(&self, org: &str) -> Option<String> {
        let usage = self.usage.get(org)?;
        (usage.ratio() > self.share).then(|| {
            format!(
                "org {org} has used {usage}, above api_budget_share = {}",
                self.share
            )
        })
    }

    /// Why a credential due for `reasons` waits for a later run, if it does (with a warning).
    pub fn defers(&self, cred: &CredentialConfig, reasons: &[Reason]) -> Option<String> {
        if !can_wait(reasons) {
            return None;
        }
        let why = self.over(&cred.org)?;
        tracing::warn!(credential = %cred.name, org = %cred.org, "rotation deferred: {why}");
        Some(format!("{why}; a rotation for key age or drift waits"))
    }

    /// The in-check audit (`[audit] in_check`) of the orgs within their budget, and the orgs
    /// whose audit waits (each with a warning).
    pub async fn audit(
        &self,
        config: &Config,
        now: DateTime<Utc>,
    ) -> (Option<AuditReport>, Vec<DeferredAudit>) {
        if !config.audit.in_check {
            return (None, Vec::new());
        }
        let mut deferred = Vec::new();
        let mut within = Vec::new();
        for org in config.orgs.keys() {
            match self.over(org) {
                Some(why) => {
                    tracing::warn!(%org, "audit deferred: {why}");
                    deferred.push(DeferredAudit {
                        org: org.clone(),
                        reason: format!("{why}; the audit waits"),
                    });
                }
                None => within.push(org.clone()),
            }
        }
        if deferred.is_empty() {
            return (audited::audit_if_asked(config, now).await, deferred);
        }
        if within.is_empty() {
            return (None, deferred);
        }
        let report = governance::audit(config, &within, now).await;
        for warning in &report.ledger_warnings {
            tracing::warn!("{warning}; the next audit records them");
        }
        (Some(report), deferred)
    }

    /// The audited orgs as subjects: an org whose audit waited is left out, so its alerts are
    /// neither sent nor resolved on what was not read.
    pub fn subjects(
        config: &Config,
        report: &AuditReport,
        deferred: &[DeferredAudit],
    ) -> Vec<(Observation, Vec<Finding>)> {
        let mut subjects = audited::subjects(config, report);
        subjects.retain(|(o, _)| !deferred.iter().any(|d| d.org == o.org));
        subjects
    }
}

/// Makes sure each of `orgs` has its API usage known for [`metrics`] (one call to an org no
/// answer reported it for yet); an org that cannot say is left out.
pub async fn read_usage(config: &Config, orgs: impl IntoIterator<Item = &str>) {
    let mut orgs: Vec<&str> = orgs.into_iter().collect();
    orgs.sort_unstable();
    orgs.dedup();
    for org in orgs {
        if let Err(e) = wiring::org_api_usage(config, org).await {
            tracing::debug!(%org, error = %e, "the org's API usage is unknown");
        }
    }
}

/// `rekey_api_usage_ratio{org}` (each org's share of its daily API requests, as last reported
/// to this process) and, when given, `rekey_deferred_total` (work deferred for the budget).
pub fn metrics(deferred_total: Option<u64>) -> String {
    let mut text = String::new();
    let usage = wiring::api_usage();
    if !usage.is_empty() {
        let name = "rekey_api_usage_ratio";
        let _ = writeln!(
            text,
            "# HELP {name} The org's share of its daily API requests used, as Salesforce last reported it (Sforce-Limit-Info).\n# TYPE {name} gauge"
        );
        for (org, u) in usage {
            let _ = writeln!(
                text,
                "{name}{{org=\"{}\"}} {}",
                super::metrics::escape(&org),
                u.ratio()
            );
        }
    }
    if let Some(total) = deferred_total {
        let name = "rekey_deferred_total";
        let _ = writeln!(
            text,
            "# HELP {name} Rotations and audits deferred because their org was above api_budget_share.\n# TYPE {name} counter\n{name} {total}"
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_key_age_and_drift_can_wait() {
        let age = Reason::KeyAge {
            source: "store:local".into(),
            age_days: 200,
            every_days: 180,
        };
        let drift = Reason::Drift {
            source: "store:local".into(),
        };
        let expiry = Reason::Expiry {
            source: "app".into(),
            days_left: 10,
            renew_before_days: 30,
        };
        let interrupted = Reason::Interrupted {
            rotation_id: "r".into(),
        };
        assert!(can_wait(std::slice::from_ref(&age)));
        assert!(can_wait(&[age.clone(), drift.clone()]));
        assert!(!can_wait(&[]));
        assert!(!can_wait(&[age.clone(), expiry]));
        assert!(!can_wait(&[drift, interrupted]));
    }

    #[test]
    fn an_org_above_its_share_defers() {
        let budget = Budget {
            share: 0.8,
            usage: BTreeMap::from([
                (
                    "busy".to_string(),
                    ApiUsage {
                        used: 850,
                        max: 1000,
                    },
                ),
                (
                    "calm".to_string(),
                    ApiUsage {
                        used: 800,
                        max: 1000,
                    },
                ),
            ]),
        };
        assert_eq!(
            budget.over("busy").unwrap(),
            "org busy has used 850/1000 API requests (85 %), above api_budget_share = 0.8"
        );
        assert_eq!(budget.over("calm"), None);
        assert_eq!(budget.over("unread"), None);
    }
}
