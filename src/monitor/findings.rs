//! `rekey check`'s verdict: the findings for what a credential's sources hold, against its
//! policy, each with a stable id (so alerts can be de-duplicated and resolved), and one line per
//! credential for the report.

use super::observe::Observation;
use chrono::{DateTime, Utc};
use rekey_api::Severity;
use serde::Serialize;

/// One thing wrong with a credential.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable within the credential (`expiry/app`, `drift/store:local`, …): the same problem keeps
    /// its id from run to run, so alerts can be de-duplicated and resolved.
    pub id: String,
    /// How bad.
    pub severity: Severity,
    /// What is wrong and what to do, in words.
    pub message: String,
}

/// The findings for `o` at `now`, worst first.
pub fn evaluate(o: &Observation, now: DateTime<Utc>) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut add = |id: String, severity: Severity, message: String| {
        findings.push(Finding {
            id,
            severity,
            message,
        })
    };
    let on_app = o.on_app().map(|h| h.fingerprint);
    // Stores that differ from the app only because the open rotation is between two steps.
    let mut rotating = Vec::new();
    for source in &o.sources {
        let name = &source.name;
        let held = match &source.read {
            Err(e) => {
                add(
                    format!("unreadable/{name}"),
                    Severity::Unknown,
                    format!("{name} could not be read: {e}"),
                );
                continue;
            }
            Ok(None) if source.is_app => {
                add(
                    format!("no-certificate/{name}"),
                    Severity::Critical,
                    format!(
                        "{} holds no certificate: no consumer can get a token",
                        o.app
                    ),
                );
                continue;
            }
            Ok(None) => {
                add(
                    format!("no-current/{name}"),
                    Severity::Critical,
                    format!("{name} has no CURRENT key; run `rekey import` or `rekey rotate`"),
                );
                continue;
            }
            Ok(Some(held)) => held,
        };
        let p = &o.policy;
        let days_left = held.not_after.map(|t| (t - now).num_days());
        let expiry = if let Some(days_left) = days_left
            && days_left <= p.critical_days
        {
            Some((Severity::Critical, p.critical_days))
        } else if let Some(days_left) = days_left
            && days_left <= p.warn_days
        {
            Some((Severity::Warning, p.warn_days))
        } else {
            None
        };
        if let (Some((severity, threshold)), Some(days_left), Some(not_after)) =
            (expiry, days_left, held.not_after)
        {
            let when = if days_left < 0 {
                format!("expired {} days ago", -days_left)
            } else {
                format!("expires in {days_left} days")
            };
            add(
                format!("expiry/{name}"),
                severity,
                format!(
                    "the certificate in {name} ({}) {when}, on {} (threshold {threshold} days); run `rekey rotate {}`",
                    held.fingerprint,
                    not_after.format("%Y-%m-%d"),
                    o.credential
                ),
            );
        }
        if let (Some(created), Some(max)) = (held.created_at, p.max_key_age_days) {
            let age = (now - created).num_days();
            if age > max {
                add(
                    format!("key-age/{name}"),
                    Severity::Warning,
                    format!(
                        "the key in {name} is {age} days old (maximum {max}); run `rekey rotate {}`",
                        o.credential
                    ),
                );
            }
        }
        if let Some(on_app) = on_app.filter(|_| !source.is_app)
            && on_app != held.fingerprint
        {
            if o.rotating(held.fingerprint) {
                rotating.push(name.as_str());
                continue;
            }
            add(
                format!("drift/{name}"),
                Severity::Critical,
                format!(
                    "{} holds certificate {on_app}, but {name}'s CURRENT is {}: consumers reading {name} are refused; find out who changed the app, then `rekey rotate {}` (runbooks/expiry-alert-response.md)",
                    o.app, held.fingerprint, o.credential
                ),
            );
        }
    }
    for (store, found) in exposure_by_store(o) {
        let severity = if found.iter().any(|x| x.key_exposed) {
            Severity::Critical
        } else {
            Severity::Warning
        };
        let what: Vec<&str> = found.iter().map(|x| x.message.as_str()).collect();
        add(format!("exposed/{store}"), severity, what.join("; "));
    }
    if let (Some((id, started)), Some(on_app)) = (&o.open_rotation, on_app)
        && !rotating.is_empty()
    {
        let (finding, severity) = in_progress(o, id, *started, on_app, &rotating, now);
        add("rotation-in-progress".into(), severity, finding);
    }
    if let Some(e) = &o.journal_error {
        add(
            "unreadable/journal".into(),
            Severity::Unknown,
            format!("the rotation journal could not be read: {e}"),
        );
    }
    if let Some((store, broken)) = &o.chain_break {
        add(
            format!("journal-chain/{store}"),
            Severity::Critical,
            format!(
                "the rotation journal in {store} was changed outside rekey: {broken}; `rekey journal {} --verify` shows the chain, and the journal exported to your SIEM (`rekey journal --export`) what it held",
                o.credential
            ),
        );
    }
    if let Some((id, started)) = &o.open_rotation {
        let age = (now - *started).to_std().unwrap_or_default();
        if age > o.open_rotation_limit {
            add(
                "open-rotation".into(),
                Severity::Warning,
                format!(
                    "rotation {id} has been open for {}h: `rekey resume {}` or `rekey abort {}` (runbooks/rollback.md)",
                    age.as_secs() / 3600,
                    o.credential,
                    o.credential
                ),
            );
        }
    }
    super::secret_findings::evaluate(o, now, &mut add);
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.id.cmp(&b.id)));
    findings
}

/// What each store leaves open to others (`exposed/<store>`: critical when a key itself is,
/// since a copy may already have been taken and only a human can judge that; a warning when only
/// names and certificates are), grouped by store in observation order.
fn exposure_by_store(o: &Observation) -> Vec<(&str, Vec<&rekey_api::Exposure>)> {
    let mut grouped: Vec<(&str, Vec<&rekey_api::Exposure>)> = Vec::new();
    for (store, found) in &o.exposure {
        match grouped.iter_mut().find(|(s, _)| s == store) {
            Some((_, list)) => list.push(found),
            None => grouped.push((store, vec![found])),
        }
    }
    grouped
}

/// The finding for stores that differ from the app because rotation `id` is between two steps:
/// no drift, but worth a warning once it has taken longer than verifying may.
fn in_progress(
    o: &Observation,
    id: &rekey_api::RotationId,
    started: DateTime<Utc>,
    on_app: rekey_api::Fingerprint,
    stores: &[&str],
    now: DateTime<Utc>,
) -> (String, Severity) {
    let stores = stores.join(", ");
    let what = if o.in_flight.undoing {
        format!(
            "rotation {id} is being undone: {} holds {on_app}, {stores} will follow",
            o.app
        )
    } else {
        format!(
            "rotation {id} is in progress: {} holds its new certificate {on_app}, {stores} will get it when it is promoted",
            o.app
        )
    };
    let age = (now - started).to_std().unwrap_or_default();
    if age <= o.verify_timeout {
        return (format!("{what}; not drift"), Severity::Info);
    }
    (
        format!(
            "{what}, but it began {}s ago (verify_timeout_secs = {}): if no rekey process is still running it, `rekey resume {}` finishes it or `rekey abort {}` undoes it (runbooks/rollback.md)",
            age.as_secs(),
            o.verify_timeout.as_secs(),
            o.credential,
            o.credential
        ),
        Severity::Warning,
    )
}

/// The worst severity among `findings` (`Ok` when there are none).
pub fn worst(findings: &[Finding]) -> Severity {
    findings
        .iter()
        .map(|f| f.severity)
        .max()
        .unwrap_or(Severity::Ok)
}

/// One credential's result in `check`.
#[derive(Serialize)]
pub struct CheckRow {
    /// Credential name.
    pub credential: String,
    /// Its app.
    pub app: String,
    /// Its org.
    pub org: String,
    /// Worst finding.
    pub severity: Severity,
    /// Days until the soonest notAfter among the sources that could be read.
    pub days_left: Option<i64>,
    /// Days since the primary store's CURRENT key was written.
    pub key_age_days: Option<i64>,
    /// Days since the last rotation finished.
    pub days_since_rotation: Option<i64>,
    /// What is wrong, worst first.
    pub findings: Vec<Finding>,
}

/// `check`'s line for one observed credential.
pub fn check_row(o: &Observation, findings: Vec<Finding>, now: DateTime<Utc>) -> CheckRow {
    let held = || {
        o.sources
            .iter()
            .filter_map(|s| s.read.as_ref().ok().cloned().flatten())
    };
    CheckRow {
        credential: o.credential.clone(),
        app: o.app.clone(),
        org: o.org.clone(),
        severity: worst(&findings),
        days_left: held()
            .filter_map(|h| h.not_after.map(|t| (t - now).num_days()))
            .min(),
        key_age_days: held()
            .find_map(|h| h.created_at)
            .map(|t| (now - t).num_days()),
        days_since_rotation: o.last_success.map(|t| (now - t).num_days()),
        findings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::observe::fixtures::{at, billing as observation, held};
    use rekey_api::RotationId;

    fn ids(findings: &[Finding]) -> Vec<(&str, Severity)> {
        findings
            .iter()
            .map(|f| (f.id.as_str(), f.severity))
            .collect()
    }

    #[test]
    fn expiry_crosses_warning_then_critical_in_every_source() {
        let o = observation(held(b"a", at(100), None), held(b"a", at(100), Some(at(0))));
        assert!(
            evaluate(&o, at(0)).is_empty(),
            "72 days left, key 0 days old"
        );
        assert_eq!(
            ids(&evaluate(&o, at(72))),
            [
                ("expiry/app", Severity::Warning),
                ("expiry/store:local", Severity::Warning)
            ]
        );
        let critical = evaluate(&o, at(86));
        assert_eq!(
            ids(&critical),
            [
                ("expiry/app", Severity::Critical),
                ("expiry/store:local", Severity::Critical)
            ]
        );
        assert!(
            critical[0].message.contains("expires in 14 days"),
            "{}",
            critical[0].message
        );
        let expired = evaluate(&o, at(103));
        assert!(
            expired[0].message.contains("expired 3 days ago"),
            "{}",
            expired[0].message
        );
    }

    #[test]
    fn a_store_that_differs_from_the_app_is_drift() {
        let o = observation(
            held(b"hand-deployed", at(300), None),
            held(b"a", at(300), Some(at(0))),
        );
        let findings = evaluate(&o, at(1));
        assert_eq!(ids(&findings), [("drift/store:local", Severity::Critical)]);
        assert!(
            findings[0]
                .message
                .contains("consumers reading store:local are refused")
        );
    }

    #[test]
    fn the_open_rotations_own_certificates_are_a_rotation_in_progress_and_any_other_is_drift() {
        use crate::monitor::observe::InFlight;
        let mut o = observation(
            held(b"new", at(300), None),
            held(b"old", at(300), Some(at(0))),
        );
        o.open_rotation = Some((RotationId("billing-r9".into()), at(0)));
        o.in_flight = InFlight {
            pending: Some(rekey_api::Fingerprint::of(b"new")),
            previous: Some(rekey_api::Fingerprint::of(b"old")),
            undoing: false,
        };
        let during = evaluate(&o, at(0));
        assert_eq!(ids(&during), [("rotation-in-progress", Severity::Info)]);
        assert!(
            during[0].message.contains("billing-r9"),
            "{}",
            during[0].message
        );
        assert_eq!(
            ids(&evaluate(&o, at(1))),
            [("rotation-in-progress", Severity::Warning)],
            "a day is longer than the verify timeout"
        );
        // The app back on the previous certificate with the store ahead: only while undoing.
        let swapped = |undoing| {
            let mut o = o.clone();
            o.sources.swap(0, 1);
            (o.sources[0].name, o.sources[1].name) = ("app".into(), "store:local".into());
            (o.sources[0].is_app, o.sources[1].is_app) = (true, false);
            o.in_flight.undoing = undoing;
            ids(&evaluate(&o, at(0)))
                .into_iter()
                .map(|(id, s)| (id.to_string(), s))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            swapped(true),
            [("rotation-in-progress".to_string(), Severity::Info)]
        );
        assert_eq!(
            swapped(false),
            [("drift/store:local".to_string(), Severity::Critical)]
        );
        // A certificate the rotation never journaled is drift, rotation or not.
        o.sources[0].read = Ok(held(b"hand-deployed", at(300), None));
        assert_eq!(
            ids(&evaluate(&o, at(0))),
            [("drift/store:local", Severity::Critical)]
        );
    }

    #[test]
    fn old_keys_open_rotations_and_unreadable_sources_are_findings() {
        let mut o = observation(held(b"a", at(900), None), held(b"a", at(900), Some(at(0))));
        o.open_rotation = Some((RotationId("billing-r9".into()), at(200)));
        o.sources[0].read = Err("org acme: HTTP 503".into());
        let findings = evaluate(&o, at(202));
        assert_eq!(
            ids(&findings),
            [
                ("key-age/store:local", Severity::Warning),
                ("open-rotation", Severity::Warning),
                ("unreadable/app", Severity::Unknown),
            ]
        );
        assert!(findings[1].message.contains("billing-r9"));
        o.sources[1].read = Ok(None);
        assert_eq!(evaluate(&o, at(202))[0].id, "no-current/store:local");
    }

    #[test]
    fn a_broken_journal_chain_is_critical_and_names_the_entry() {
        let mut o = observation(held(b"a", at(300), None), held(b"a", at(300), Some(at(0))));
        o.chain_break = Some((
            "store:local".into(),
            rekey_api::ChainBreak {
                number: 7,
                location: "keys/billing/journal.jsonl:7".into(),
                rotation_id: Some(RotationId("billing-r2".into())),
                step: Some(rekey_api::Step::Publish),
                phase: Some(rekey_api::Phase::Done),
                problem: rekey_api::ChainProblem::ContentChanged,
            },
        ));
        let findings = evaluate(&o, at(0));
        assert_eq!(
            ids(&findings),
            [("journal-chain/store:local", Severity::Critical)]
        );
        let message = &findings[0].message;
        assert!(
            message.contains("entry 7 (billing-r2 publish done) at keys/billing/journal.jsonl:7")
                && message.contains("`rekey journal billing --verify`"),
            "{message}"
        );
    }

    #[test]
    fn keys_others_can_open_are_critical_and_a_listable_folder_a_warning() {
        let mut o = observation(held(b"a", at(300), None), held(b"a", at(300), Some(at(0))));
        let exposure = |key_exposed: bool, message: &str| rekey_api::Exposure {
            key_exposed,
            message: message.into(),
        };
        o.exposure = vec![("store:local".into(), exposure(false, "folder 0755"))];
        assert_eq!(
            ids(&evaluate(&o, at(1))),
            [("exposed/store:local", Severity::Warning)]
        );
        o.exposure
            .push(("store:local".into(), exposure(true, "key 0644")));
        let findings = evaluate(&o, at(1));
        assert_eq!(
            ids(&findings),
            [("exposed/store:local", Severity::Critical)]
        );
        assert_eq!(findings[0].message, "folder 0755; key 0644");
    }
}
