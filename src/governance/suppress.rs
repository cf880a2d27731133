//! `[[audit.ignore]]`: accepted exceptions. A suppression matches a finding by id, and by org and
//! app when it names them; it stops applying the day after its `until`. A suppression without a
//! reason still applies but is reported, and an expired one is reported instead of applied: an
//! exception nobody justified or reviewed is itself a finding.

use super::rules::AuditFinding;
use crate::config::Suppression;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// A finding an exception accepted, with the exception.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Suppressed {
    /// The finding.
    pub finding: AuditFinding,
    /// Why it is accepted (`None`: no reason given, which is reported).
    pub reason: Option<String>,
    /// Until when (inclusive).
    pub until: Option<chrono::NaiveDate>,
    /// Where the entry is in rekey.toml.
    pub origin: String,
}

fn matches(s: &Suppression, f: &AuditFinding) -> bool {
    s.id == f.id
        && s.org.as_ref().is_none_or(|o| *o == f.org)
        && s.app.as_ref().is_none_or(|a| Some(a) == f.app.as_ref())
}

fn expired(s: &Suppression, now: DateTime<Utc>) -> bool {
    s.until.is_some_and(|until| now.date_naive() > until)
}

/// Splits `findings` into those that count and those an in-date suppression accepts, and adds
/// the findings about the suppressions themselves (the third list).
pub fn apply_suppressions(
    suppressions: &[Suppression],
    findings: Vec<AuditFinding>,
    now: DateTime<Utc>,
) -> (Vec<AuditFinding>, Vec<Suppressed>, Vec<AuditFinding>) {
    let mut counted = Vec::new();
    let mut suppressed = Vec::new();
    for finding in findings {
        match suppressions
            .iter()
            .find(|s| !expired(s, now) && matches(s, &finding))
        {
            Some(s) => suppressed.push(Suppressed {
                finding,
                reason: s.reason.clone(),
                until: s.until,
                origin: s.origin.clone(),
            }),
            None => counted.push(finding),
        }
    }
    let mut about = Vec::new();
    for s in suppressions {
        // An entry for every org is about the config, not one org.
        let org = s.org.clone().unwrap_or_else(|| "*".into());
        let what = match &s.app {
            Some(app) => format!("{} on {app}", s.id),
            None => s.id.clone(),
        };
        if s.reason.is_none() {
            about.push(AuditFinding::new(
                "suppression-without-reason",
                &org,
                s.app.as_deref(),
                format!("{}: the suppression of {what} gives no reason", s.origin),
            ));
        }
        if let Some(until) = s.until.filter(|_| expired(s, now)) {
            about.push(AuditFinding::new(
                "suppression-expired",
                &org,
                s.app.as_deref(),
                format!(
                    "{}: the suppression of {what} ended on {until}; it no longer applies",
                    s.origin
                ),
            ));
        }
    }
    (counted, suppressed, about)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn finding(id: &'static str, app: &str) -> AuditFinding {
        AuditFinding::new(id, "acme", Some(app), format!("{id} on {app}"))
    }

    fn suppression(
        id: &str,
        app: Option<&str>,
        reason: Option<&str>,
        until: Option<&str>,
    ) -> Suppression {
        Suppression {
            id: id.into(),
            org: None,
            app: app.map(Into::into),
            reason: reason.map(Into::into),
            until: until.map(|d| d.parse::<NaiveDate>().unwrap()),
            origin: "rekey.toml:40:1".into(),
        }
    }

    fn at(day: &str) -> DateTime<Utc> {
        format!("{day}T12:00:00Z").parse().unwrap()
    }

    #[test]
    fn a_valid_suppression_moves_only_its_finding_and_reports_nothing() {
        let (counted, suppressed, about) = apply_suppressions(
            &[suppression(
                "scope-full",
                Some("Portal"),
                Some("vendor needs it"),
                Some("2027-01-31"),
            )],
            vec![
                finding("scope-full", "Portal"),
                finding("scope-full", "Other"),
                finding("self-authorize", "Portal"),
            ],
            at("2027-01-31"),
        );
        assert_eq!(suppressed.len(), 1);
        assert_eq!(suppressed[0].finding.app.as_deref(), Some("Portal"));
        assert_eq!(suppressed[0].reason.as_deref(), Some("vendor needs it"));
        assert_eq!(counted.len(), 2);
        assert!(about.is_empty(), "{about:?}");
    }

    #[test]
    fn an_expired_suppression_no_longer_applies_and_is_reported() {
        let (counted, suppressed, about) = apply_suppressions(
            &[suppression(
                "scope-full",
                Some("Portal"),
                Some("vendor"),
                Some("2027-01-31"),
            )],
            vec![finding("scope-full", "Portal")],
            at("2027-02-01"),
        );
        assert!(suppressed.is_empty());
        assert_eq!(counted.len(), 1);
        assert_eq!(about.len(), 1);
        assert_eq!(about[0].id, "suppression-expired");
        assert!(
            about[0].message.starts_with("rekey.toml:40:1"),
            "{}",
            about[0].message
        );
    }

    #[test]
    fn a_reasonless_suppression_applies_but_is_reported() {
        let (counted, suppressed, about) = apply_suppressions(
            &[suppression("unused-app", None, None, None)],
            vec![finding("unused-app", "A"), finding("unused-app", "B")],
            at("2027-01-01"),
        );
        assert!(counted.is_empty());
        assert_eq!(suppressed.len(), 2);
        assert_eq!(
            about.iter().map(|f| f.id).collect::<Vec<_>>(),
            ["suppression-without-reason"]
        );
    }
}
