//! The facts `check` observed as Prometheus metrics: the text format node_exporter's textfile
//! collector and the daemon's `/metrics` serve.

use super::observe::Observation;
use rekey_api::Severity;
use std::fmt::Write as _;

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
        let on_app = o.on_app().map(|h| h.fingerprint);
        for s in &o.sources {
            let labels = format!("{base},source=\"{}\"", escape(&s.name));
            up.push((labels.clone(), f64::from(u8::from(s.read.is_ok()))));
            let Ok(Some(held)) = &s.read else { continue };
            if let Some(t) = held.not_after {
                not_after.push((labels.clone(), t.timestamp() as f64));
            }
            if let Some(at) = held.created_at {
                created.push((labels.clone(), at.timestamp() as f64));
            }
            if let (false, Some(on_app)) = (s.is_app, on_app) {
                let drifted = on_app != held.fingerprint && !o.rotating(held.fingerprint);
                drift.push((labels, f64::from(u8::from(drifted))));
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
            "1 when a store's CURRENT certificate differs from the one on the app, but for an open rotation's own steps.",
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
    rekey_api::write_atomic(path, text.as_bytes(), 0o644).map_err(|e| {
        rekey_api::Error::new(
            rekey_api::ErrorKind::Config,
            format!("cannot write the metrics file {}", path.display()),
        )
        .with_source(e)
        .with_hint("check that its directory exists and is writable by rekey")
    })
}

/// A label value as the Prometheus text format wants it.
pub(super) fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::observe::fixtures::{at, billing, held};

    #[test]
    fn metrics_follow_the_prometheus_text_format() {
        let mut o = billing(held(b"x", at(100), None), held(b"a", at(100), Some(at(0))));
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
