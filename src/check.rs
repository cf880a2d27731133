//! `rekey check`: what every source of a credential says — the certificate on the app (read from
//! Salesforce, never assumed), each store's CURRENT, the journal — the findings against the
//! credential's policy, and the same facts as Prometheus metrics.
//!
//! Observing never fails: a source that cannot be read is itself a finding (severity unknown), so
//! an outage can never hide an expiring certificate behind an error exit.

use crate::config::{Config, CredentialConfig, Policy};
use crate::{rotation, wiring};
use chrono::{DateTime, Utc};
use rekey_api::{Fingerprint, Generation, RotationId};
use serde::Serialize;
use std::fmt::Write as _;
use std::time::Duration;

/// How bad a finding is, in the order findings combine (the worst wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Within policy.
    Ok,
    /// Something could not be read, so nothing can be said about it.
    Unknown,
    /// Past a warning threshold.
    Warning,
    /// Past a critical threshold, or consumers are failing now (drift, no key).
    Critical,
}

impl Severity {
    /// The Nagios exit status: 0 ok, 1 warning, 2 critical, 3 unknown.
    pub fn nagios(self) -> u8 {
        match self {
            Severity::Ok => 0,
            Severity::Warning => 1,
            Severity::Critical => 2,
            Severity::Unknown => 3,
        }
    }
}

/// A certificate as one source holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// Its fingerprint.
    pub fingerprint: Fingerprint,
    /// Its notAfter.
    pub not_after: DateTime<Utc>,
    /// When the store wrote the key (stores only).
    pub created_at: Option<DateTime<Utc>>,
    /// Its generation (stores only).
    pub generation: Option<Generation>,
}

/// One place a credential's certificate lives.
#[derive(Clone, Debug)]
pub struct Source {
    /// `app`, or `store:<name from rekey.toml>`.
    pub name: String,
    /// Whether it is the app (the others are stores).
    pub is_app: bool,
    /// What it holds (`None`: nothing), or why it could not be read.
    pub read: std::result::Result<Option<Held>, String>,
}

/// Everything `check` knows about one credential.
#[derive(Clone, Debug)]
pub struct Observation {
    /// Credential name.
    pub credential: String,
    /// Its app.
    pub app: String,
    /// Its org.
    pub org: String,
    /// Its thresholds.
    pub policy: Policy,
    /// A rotation open longer than this needs a human.
    pub open_rotation_limit: Duration,
    /// The app first, then the stores, primary first.
    pub sources: Vec<Source>,
    /// When the last rotation finished.
    pub last_success: Option<DateTime<Utc>>,
    /// The open rotation and when it began.
    pub open_rotation: Option<(RotationId, DateTime<Utc>)>,
    /// Why the journal could not be read, if it could not.
    pub journal_error: Option<String>,
}

/// Reads every source of `cred`; what cannot be read is recorded, not returned as an error.
pub async fn observe(config: &Config, cred: &CredentialConfig) -> Observation {
    let mut sources = Vec::new();
    let app = match wiring::target(config, cred) {
        Ok(target) => target.installed().await,
        Err(e) => Err(e),
    };
    sources.push(Source {
        name: "app".into(),
        is_app: true,
        read: app.map_err(|e| e.to_string()).map(|cert| {
            cert.map(|c| Held {
                fingerprint: c.fingerprint,
                not_after: c.not_after,
                created_at: None,
                generation: None,
            })
        }),
    });
    let (mut last_success, mut open_rotation, mut journal_error) = (None, None, None);
    match wiring::stores(config, cred).await {
        Err(e) => {
            for name in &cred.stores {
                sources.push(Source {
                    name: format!("store:{name}"),
                    is_app: false,
                    read: Err(e.to_string()),
                });
            }
        }
        Ok(stores) => {
            for (name, store) in cred.stores.iter().zip(&stores) {
                let read = store.stages(&cred.name).await.map(|stages| {
                    stages.current.map(|v| Held {
                        fingerprint: v.certificate.fingerprint,
                        not_after: v.certificate.not_after,
                        created_at: Some(v.created_at),
                        generation: Some(v.generation),
                    })
                });
                sources.push(Source {
                    name: format!("store:{name}"),
                    is_app: false,
                    read: read.map_err(|e| format!("{store}: {e}")),
                });
            }
            match stores[0].read_journal(&cred.name).await {
                Ok(journal) => {
                    last_success = rotation::last_success(&journal);
                    open_rotation =
                        rotation::open_rotation(&journal).map(|o| (o.rotation_id, o.started_at));
                }
                Err(e) => journal_error = Some(e.to_string()),
            }
        }
    }
    Observation {
        credential: cred.name.clone(),
        app: cred.app.clone(),
        org: cred.org.clone(),
        policy: cred.policy,
        open_rotation_limit: cred.resume_max_age,
        sources,
        last_success,
        open_rotation,
        journal_error,
    }
}

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
    let on_app = held_by_app(o).map(|h| h.fingerprint);
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
        let days_left = (held.not_after - now).num_days();
        let p = &o.policy;
        let expiry = if days_left <= p.critical_days {
            Some((Severity::Critical, p.critical_days))
        } else if days_left <= p.warn_days {
            Some((Severity::Warning, p.warn_days))
        } else {
            None
        };
        if let Some((severity, threshold)) = expiry {
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
                    held.not_after.format("%Y-%m-%d"),
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
    if let Some(e) = &o.journal_error {
        add(
            "unreadable/journal".into(),
            Severity::Unknown,
            format!("the rotation journal could not be read: {e}"),
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
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.id.cmp(&b.id)));
    findings
}

/// The worst severity among `findings` (`Ok` when there are none).
pub fn worst(findings: &[Finding]) -> Severity {
    findings
        .iter()
        .map(|f| f.severity)
        .max()
        .unwrap_or(Severity::Ok)
}

/// The certificate on the app, when it could be read and holds one.
fn held_by_app(o: &Observation) -> Option<&Held> {
    o.sources
        .iter()
        .find(|s| s.is_app)
        .and_then(|s| s.read.as_ref().ok())
        .and_then(Option::as_ref)
}

/// The Prometheus text exposition of `observations` (one gauge family per fact; label values
/// escaped as the format requires).
pub fn metrics(observations: &[(Observation, Severity)]) -> String {
    let (mut not_after, mut created, mut last_success) = (vec![], vec![], vec![]);
    let (mut drift, mut up, mut status) = (vec![], vec![], vec![]);
    for (o, severity) in observations {
        let base = format!(
            "credential=\"{}\",app=\"{}\",org=\"{}\"",
            escape(&o.credential),
            escape(&o.app),
            escape(&o.org)
        );
        let on_app = held_by_app(o).map(|h| h.fingerprint);
        for s in &o.sources {
            let labels = format!("{base},source=\"{}\"", escape(&s.name));
            up.push((labels.clone(), f64::from(u8::from(s.read.is_ok()))));
            let Ok(Some(held)) = &s.read else { continue };
            not_after.push((labels.clone(), held.not_after.timestamp() as f64));
            if let Some(at) = held.created_at {
                created.push((labels.clone(), at.timestamp() as f64));
            }
            if let (false, Some(on_app)) = (s.is_app, on_app) {
                drift.push((labels, f64::from(u8::from(on_app != held.fingerprint))));
            }
        }
        if let Some(at) = o.last_success {
            last_success.push((base.clone(), at.timestamp() as f64));
        }
        status.push((base, f64::from(severity.nagios())));
    }
    let families = [
        (
            "rekey_certificate_not_after_timestamp_seconds",
            "notAfter of the certificate each source holds, as a Unix timestamp.",
            not_after,
        ),
        (
            "rekey_key_created_timestamp_seconds",
            "When each store wrote its CURRENT key, as a Unix timestamp.",
            created,
        ),
        (
            "rekey_last_rotation_success_timestamp_seconds",
            "When the last rotation of the credential finished.",
            last_success,
        ),
        (
            "rekey_drift",
            "1 when a store's CURRENT certificate differs from the one on the app.",
            drift,
        ),
        ("rekey_source_up", "1 when the source could be read.", up),
        (
            "rekey_check_status",
            "The credential's check result: 0 ok, 1 warning, 2 critical, 3 unknown.",
            status,
        ),
    ];
    let mut text = String::new();
    for (name, help, samples) in families {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(text, "{name}{{{labels}}} {value}");
        }
    }
    text
}

/// Writes `text` to `path` so that a reader (node_exporter's textfile collector) sees the old
/// file or the new one, never a half-written one: a temporary file beside it, then a rename.
pub fn write_textfile(path: &std::path::Path, text: &str) -> rekey_api::Result<()> {
    // Readable by node_exporter, which usually runs as another user.
    crate::atomic_file::write(path, text.as_bytes(), 0o644).map_err(|e| {
        rekey_api::Error::new(
            rekey_api::ErrorKind::Config,
            format!("cannot write the metrics file {}", path.display()),
        )
        .with_source(e)
        .with_hint("check that its directory exists and is writable by rekey")
    })
}

/// A label value as the Prometheus text format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Observations to test with, shared by the tests of `check`, `schedule` and `alerts`.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// `days` days after a fixed instant (2027-01-15T08:00:00Z); negative: before it.
    pub(crate) fn at(days: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + days * 86_400, 0).unwrap()
    }

    /// The certificate with fingerprint `fp`; with `created`, as a store holds it (a generation
    /// too), without, as the app does.
    pub(crate) fn held(
        fp: &[u8],
        not_after: DateTime<Utc>,
        created: Option<DateTime<Utc>>,
    ) -> Option<Held> {
        Some(Held {
            fingerprint: Fingerprint::of(fp),
            not_after,
            created_at: created,
            generation: created.map(|_| Generation(1)),
        })
    }

    /// A source named `name` (`app` is the app, anything else a store) that read `read`.
    pub(crate) fn source(name: &str, read: Result<Option<Held>, String>) -> Source {
        Source {
            name: name.into(),
            is_app: name == "app",
            read,
        }
    }

    /// `credential` of app Billing_Sync in org acme, under the default policy, with `sources`, no
    /// rotation ever finished or open, and a readable journal.
    pub(crate) fn observation(credential: &str, sources: Vec<Source>) -> Observation {
        Observation {
            credential: credential.into(),
            app: "Billing_Sync".into(),
            org: "acme".into(),
            policy: Policy::default(),
            open_rotation_limit: Duration::from_secs(24 * 3600),
            sources,
            last_success: None,
            open_rotation: None,
            journal_error: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{at, held, source};
    use super::*;

    /// `billing` with the app and `store:local` holding `app` and `store`, keys allowed 180 days,
    /// last rotated 10 days before `at(0)`.
    fn observation(app: Option<Held>, store: Option<Held>) -> Observation {
        let mut o = fixtures::observation(
            "billing",
            vec![source("app", Ok(app)), source("store:local", Ok(store))],
        );
        o.policy.max_key_age_days = Some(180);
        o.last_success = Some(at(-10));
        o
    }

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
    fn metrics_follow_the_prometheus_text_format() {
        let mut o = observation(held(b"x", at(100), None), held(b"a", at(100), Some(at(0))));
        o.credential = "we\"ird\\name".into();
        let text = metrics(&[(o, Severity::Critical)]);
        let base = r#"credential="we\"ird\\name",app="Billing_Sync",org="acme""#;
        for line in [
            "# TYPE rekey_certificate_not_after_timestamp_seconds gauge".to_string(),
            format!(
                "rekey_certificate_not_after_timestamp_seconds{{{base},source=\"app\"}} {}",
                at(100).timestamp()
            ),
            format!(
                "rekey_key_created_timestamp_seconds{{{base},source=\"store:local\"}} {}",
                at(0).timestamp()
            ),
            format!(
                "rekey_last_rotation_success_timestamp_seconds{{{base}}} {}",
                at(-10).timestamp()
            ),
            format!("rekey_drift{{{base},source=\"store:local\"}} 1"),
            format!("rekey_source_up{{{base},source=\"app\"}} 1"),
            format!("rekey_check_status{{{base}}} 2"),
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
    }
}
