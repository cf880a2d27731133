//! `rekey audit --format sarif`: SARIF 2.1.0 (OASIS), so code-scanning dashboards can show and
//! track the findings. One rule per catalogue entry; each result names its app as a logical
//! location (there is no source file) and carries a stable fingerprint (org, app, id), so a
//! dashboard follows a finding from run to run; suppressed findings are results with an
//! external suppression and its justification.

use crate::controls::{CONTROLS, Control};
use crate::governance::{AuditFinding, AuditReport};
use rekey_api::Severity;
use serde_json::{Value, json};

/// SARIF's level for a severity.
fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "error",
        Severity::Warning | Severity::Unknown => "warning",
        Severity::Info | Severity::Ok => "note",
    }
}

fn rule(c: &Control) -> Value {
    json!({
        "id": c.id,
        "name": c.id.split('-').map(|w| {
            let mut chars = w.chars();
            chars.next().map(|f| f.to_uppercase().chain(chars).collect::<String>()).unwrap_or_default()
        }).collect::<String>(),
        "shortDescription": { "text": c.title },
        "fullDescription": { "text": c.condition },
        "help": { "text": c.remediation },
        "defaultConfiguration": { "level": level(c.severity) },
        "properties": { "control": c.control, "severity": c.severity.as_str(), "tags": ["security", "salesforce", "oauth"] },
    })
}

fn result(f: &AuditFinding, suppression: Option<Value>) -> Value {
    let index = CONTROLS.iter().position(|c| c.id == f.id).unwrap_or(0);
    let name = f.app.clone().unwrap_or_else(|| f.org.clone());
    let qualified = match &f.app {
        Some(app) => format!("{}/{app}", f.org),
        None => f.org.clone(),
    };
    let mut r = json!({
        "ruleId": f.id,
        "ruleIndex": index,
        "level": level(f.severity),
        "message": { "text": format!("{} Fix: {}", f.message, f.remediation) },
        "locations": [{
            "logicalLocations": [{
                "name": name,
                "fullyQualifiedName": qualified,
                "kind": if f.app.is_some() { "resource" } else { "namespace" },
            }]
        }],
        "partialFingerprints": { "rekeyFinding/v1": format!("{qualified}/{}", f.id) },
        "properties": { "org": f.org, "severity": f.severity.as_str(), "control": f.control },
    });
    if let Some(s) = suppression {
        r["suppressions"] = json!([s]);
    }
    r
}

/// The SARIF log of an audit.
pub fn sarif(report: &AuditReport) -> Value {
    let mut results: Vec<Value> = report.findings.iter().map(|f| result(f, None)).collect();
    for s in &report.suppressed {
        let mut justification = s.reason.clone().unwrap_or_else(|| "no reason given".into());
        if let Some(until) = s.until {
            justification.push_str(&format!(" (until {until})"));
        }
        results.push(result(
            &s.finding,
            Some(json!({
                "kind": "external",
                "justification": justification,
                "location": { "physicalLocation": { "artifactLocation": { "uri": s.origin.split(':').next().unwrap_or("rekey.toml") } } },
            })),
        ));
    }
    let notifications: Vec<Value> = report
        .unreadable
        .iter()
        .map(|u| json!({ "level": "error", "message": { "text": format!("could not read {u}") } }))
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "rekey",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": CONTROLS.iter().map(rule).collect::<Vec<_>>(),
            }},
            "invocations": [{
                "executionSuccessful": report.unreadable.is_empty(),
                "endTimeUtc": report.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "toolExecutionNotifications": notifications,
            }],
            "results": results,
        }]
    })
}
