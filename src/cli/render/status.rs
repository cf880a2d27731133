//! `status`, `check` and `check --preflight`.

use super::lines::{opt, print_json};
use crate::cli::reports::{PreflightRow, StatusRow};
use crate::monitor::findings::CheckRow;
use rekey_api::{Severity, StagedState};

/// `rekey status`. A credential that could not be read, or whose journal is damaged, is also
/// named on stderr (with `--json` too), so a script sees why the exit code is not 0.
pub fn status(rows: &[StatusRow], json: bool) {
    for r in rows {
        if let Some(error) = &r.error {
            err!("error: {}: cannot be read: {error}", r.credential);
        }
        if let Some(first) = r.journal_damaged.first() {
            err!(
                "error: {}: the rotation journal is damaged at {first}{}; `rekey journal {}` shows what can be read and how to repair it; rotations of {} are refused until then",
                r.credential,
                match r.journal_damaged.len() {
                    1 => String::new(),
                    n => format!(" (and {} more entries)", n - 1),
                },
                r.credential,
                r.credential
            );
        }
    }
    if json {
        return print_json(&rows);
    }
    out!(
        "{:<20} {:<22} {:>4} {:<16} {:<10} {:>9} {:<10} LAST ROTATION",
        "CREDENTIAL",
        "APP",
        "GEN",
        "FINGERPRINT",
        "NOT AFTER",
        "DAYS LEFT",
        "PENDING"
    );
    for r in rows {
        let pending = match (&r.open_rotation, r.pending_generation) {
            (Some(id), _) => format!("open: {id}"),
            (None, Some(g)) => format!("gen {g}"),
            (None, None) => "-".to_string(),
        };
        out!(
            "{:<20} {:<22} {:>4} {:<16} {:<10} {:>9} {:<10} {}",
            r.credential,
            r.app,
            opt(r.generation),
            r.fingerprint
                .as_deref()
                .map_or("-".to_string(), |f| format!("{}…", &f[..15])),
            opt(r.not_after.map(|t| t.format("%Y-%m-%d"))),
            opt(r.days_left),
            pending,
            opt(r.last_rotation.map(|t| t.format("%Y-%m-%d %H:%M:%SZ"))),
        );
        if let Some(error) = &r.error {
            out!("    UNREADABLE: {error}");
            continue;
        }
        for d in &r.journal_damaged {
            out!("    journal DAMAGED at {d}");
        }
        match (&r.app_fingerprint, &r.app_error) {
            (Some(f), _) => out!("    app holds {f}"),
            (None, Some(e)) => out!("    app unreadable: {e}"),
            (None, None) => out!("    app holds no certificate"),
        }
        if let Some(s) = &r.staged {
            let until = s.expires_at.map_or_else(String::new, |t| {
                format!(" until {}", t.format("%Y-%m-%d %H:%MZ"))
            });
            match s.state {
                StagedState::Rotated => out!(
                    "    previous consumer key {} still logs in{until}: `rekey retire {}` deletes it",
                    s.key,
                    r.credential
                ),
                StagedState::Active => out!(
                    "    staged at Salesforce, not yet primary: consumer key {}{}{until}",
                    s.key,
                    s.created_by
                        .as_ref()
                        .map_or_else(String::new, |u| format!(", by {u}"))
                ),
                StagedState::Expired => out!("    staged slot: consumer key {} (expired)", s.key),
            }
        }
        for st in &r.stores {
            let verdict = match st.matches_app {
                Some(true) => "= app",
                Some(false) if st.rotation_in_progress => "rotation in progress (not drift)",
                Some(false) => "DIFFERS FROM THE APP",
                None => "app unknown",
            };
            out!(
                "    {:<48} gen {:>3}  {}  {verdict}",
                st.store,
                opt(st.generation),
                st.fingerprint.as_deref().unwrap_or("-")
            );
            if let Some(k) = &st.custody {
                out!(
                    "      key in custody: {} ({}, {}, {})",
                    k.handle,
                    k.handle.algorithm,
                    if k.exportable {
                        "EXPORTABLE"
                    } else {
                        "non-exportable"
                    },
                    k.state
                );
            }
            if let Some(e) = &st.custody_error {
                out!("      key in custody: cannot be described: {e}");
            }
        }
    }
}

/// `rekey check`.
pub fn check(rows: &[CheckRow], json: bool) {
    if json {
        return print_json(&rows);
    }
    for r in rows {
        let label = severity_label(r.severity);
        out!(
            "{label:<8} {:<20} days left {:>5}  key age {:>5}",
            r.credential,
            opt(r.days_left),
            opt(r.key_age_days)
        );
        for f in &r.findings {
            out!("         - [{:?}] {}", f.severity, f.message);
        }
    }
}

/// `rekey check --preflight`.
pub fn preflight(rows: &[PreflightRow], json: bool) {
    if json {
        return print_json(&rows);
    }
    for r in rows {
        let ok = r.store_problem.is_none() && r.target_problem.is_none();
        out!(
            "{:<8} {}",
            if ok { "READY" } else { "BLOCKED" },
            r.credential
        );
        for (what, problem) in [(&r.store, &r.store_problem), (&r.target, &r.target_problem)] {
            out!("         {what}: {}", problem.as_deref().unwrap_or("ok"));
        }
    }
}

pub(super) fn severity_label(severity: Severity) -> &'static str {
    match severity {
        Severity::Ok => "OK",
        Severity::Info => "INFO",
        Severity::Warning => "WARNING",
        Severity::Critical => "CRITICAL",
        Severity::Unknown => "UNKNOWN",
    }
}
