//! `audit` (text and JSON; SARIF in `sarif`), `inventory` (text, JSON, CSV) and `grants`.

use super::lines::{opt, print_json};
use crate::cli::args::{AuditFormat, InventoryFormat};
use crate::governance::{AuditReport, GrantsReport, InventoryRow, RevokeOutcome, Unreadable};
use rekey_api::Severity;

/// `rekey audit`. What could not be read is also named on stderr, so a script sees why the
/// exit code is 3.
pub fn audit(report: &AuditReport, format: AuditFormat) {
    for problem in &report.unreadable {
        err!("error: could not read {problem}");
    }
    for warning in &report.ledger_warnings {
        err!("warning: {warning}; the next audit records them");
    }
    match format {
        AuditFormat::Json => print_json(report),
        AuditFormat::Sarif => print_json(&super::sarif::sarif(report)),
        AuditFormat::Text => audit_text(report),
    }
}

fn audit_text(report: &AuditReport) {
    for f in &report.findings {
        let at = match &f.app {
            Some(app) => format!("{}/{app}", f.org),
            None => f.org.clone(),
        };
        out!(
            "{:<8} {:<36} {at}: {}",
            f.severity.as_str().to_uppercase(),
            f.id,
            f.message
        );
        out!("         fix: {}", f.remediation);
    }
    for s in &report.suppressed {
        out!(
            "{:<8} {:<36} {}/{}: suppressed at {} until {} ({})",
            "ignored",
            s.finding.id,
            s.finding.org,
            opt(s.finding.app.as_deref()),
            s.origin,
            opt(s.until),
            s.reason.as_deref().unwrap_or("no reason given")
        );
    }
    let count = |sev: Severity| report.findings.iter().filter(|f| f.severity == sev).count();
    out!(
        "{} finding(s): {} critical, {} warning, {} info; {} suppressed{}",
        report.findings.len(),
        count(Severity::Critical),
        count(Severity::Warning),
        count(Severity::Info),
        report.suppressed.len(),
        match report.unreadable.len() {
            0 => String::new(),
            n => format!("; {n} source(s) could not be read (see above)"),
        }
    );
}

/// `rekey inventory`.
pub fn inventory(rows: &[InventoryRow], unreadable: &[Unreadable], format: InventoryFormat) {
    for problem in unreadable {
        err!("error: could not read {problem}");
    }
    match format {
        InventoryFormat::Json => print_json(&rows),
        InventoryFormat::Csv => inventory_csv(rows),
        InventoryFormat::Text => inventory_text(rows),
    }
}

fn managed(r: &InventoryRow) -> String {
    if r.managed_by.is_empty() {
        return "-".into();
    }
    r.managed_by
        .iter()
        .map(|m| format!("{} ({})", m.credential, m.stores.join("+")))
        .collect::<Vec<_>>()
        .join(", ")
}

fn owners(r: &InventoryRow) -> String {
    let owners: Vec<&str> = r
        .managed_by
        .iter()
        .filter_map(|m| m.owner.as_deref())
        .collect();
    if owners.is_empty() {
        "-".into()
    } else {
        owners.join(", ")
    }
}

fn inventory_text(rows: &[InventoryRow]) {
    let header = [
        "ORG",
        "APP",
        "KIND",
        "FLOWS",
        "SCOPES",
        "USERS",
        "CERT EXPIRES",
        "SECRET AGE",
        "LAST LOGIN",
        "GRANTS",
        "MANAGED BY",
        "OWNER",
    ];
    let list = |items: &[String]| {
        if items.is_empty() {
            "-".to_string()
        } else {
            items.join(",")
        }
    };
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.org.clone(),
                r.app.clone(),
                r.kind.to_string(),
                list(&r.flows.iter().map(|f| f.to_string()).collect::<Vec<_>>()),
                list(&r.scopes),
                r.permitted_users.to_string(),
                opt(r.certificate_expires.map(|t| t.format("%Y-%m-%d"))),
                opt(r.consumer_secret_age_days.map(|d| format!("{d}d"))),
                opt(r.last_login.map(|t| t.format("%Y-%m-%d"))),
                opt(r.active_grants),
                managed(r),
                owners(r),
            ]
        })
        .collect();
    // Each column as wide as its widest cell, so the table stays a table whatever the names.
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            table
                .iter()
                .map(|row| row[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join(" ").trim_end().to_string()
    };
    out!("{}", line(header.iter().map(|h| h.to_string()).collect()));
    for row in table {
        out!("{}", line(row));
    }
}

/// One CSV field: quoted when it holds a comma, a quote or a line break (RFC 4180).
fn csv(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

fn inventory_csv(rows: &[InventoryRow]) {
    out!(
        "org,app,label,kind,flows,scopes,permitted_users,authorized,run_as,certificate_fingerprint,certificate_expires,consumer_secret_age_days,managed_by,owner,last_login,active_grants"
    );
    let date = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    };
    for r in rows {
        let managed = if r.managed_by.is_empty() {
            String::new()
        } else {
            managed(r)
        };
        let owner = owners(r);
        let fields = [
            r.org.clone(),
            r.app.clone(),
            r.label.clone(),
            r.kind.to_string(),
            r.flows.join(";"),
            r.scopes.join(";"),
            r.permitted_users.to_string(),
            r.authorized.join(";"),
            r.run_as.clone().unwrap_or_default(),
            r.certificate_fingerprint.clone().unwrap_or_default(),
            date(r.certificate_expires),
            r.consumer_secret_age_days
                .map(|d| d.to_string())
                .unwrap_or_default(),
            managed,
            if owner == "-" { String::new() } else { owner },
            date(r.last_login),
            r.active_grants.map(|n| n.to_string()).unwrap_or_default(),
        ];
        out!(
            "{}",
            fields.iter().map(|f| csv(f)).collect::<Vec<_>>().join(",")
        );
    }
}

/// `rekey grants`: the stale grants, and what a revocation did.
pub fn grants(report: &GrantsReport, outcome: Option<&RevokeOutcome>, revoke: bool, json: bool) {
    if let Some(outcome) = outcome {
        for failed in &outcome.failed {
            err!("error: could not revoke the grant of {failed}");
        }
    }
    if json {
        return print_json(&serde_json::json!({
            "org": report.org,
            "stale_after_days": report.stale_after_days,
            "grants": report.total,
            "stale": report.rows,
            "revoked": outcome,
            "dry_run": !revoke,
        }));
    }
    out!(
        "{:<20} {:<28} {:<10} {:<10} {:>5} {:>9}",
        "APP",
        "USER",
        "GRANTED",
        "LAST USED",
        "USES",
        "IDLE DAYS"
    );
    for r in &report.rows {
        out!(
            "{:<20} {:<28} {:<10} {:<10} {:>5} {:>9}",
            r.app,
            r.user,
            r.created.format("%Y-%m-%d"),
            opt(r.last_used.map(|t| t.format("%Y-%m-%d"))),
            r.use_count,
            r.idle_days
        );
    }
    out!(
        "{} of {} grant(s) in org {} unused for {} days or more",
        report.rows.len(),
        report.total,
        report.org,
        report.stale_after_days
    );
    match outcome {
        Some(o) => out!(
            "revoked {}, already gone {}, failed {} (journaled: rekey journal --org {})",
            o.revoked,
            o.already_gone,
            o.failed.len(),
            report.org
        ),
        None if !revoke && !report.rows.is_empty() => {
            out!("dry run: nothing was revoked; add --revoke to revoke them")
        }
        None => {}
    }
}
