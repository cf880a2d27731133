//! Everything rekey prints, and the exit codes. The only module that writes to stdout/stderr.
//!
//! Reports handed in here carry fingerprints, names and dates, never key bytes: the types that
//! reach this module have no field that could hold one.

use crate::cli::TokenFormat;
use crate::commands::{
    EmergencyRow, ImportReport, InspectReport, Inspected, PreflightRow, StatusRow, VerifyReport,
};
pub use crate::exit::Exit;
use crate::monitor::alerts::Delivery;
use crate::monitor::findings::CheckRow;
use crate::rotation::{Closed, Ending, Plan, Progress, Unadopted};
use crate::run::{Action, RunReport};
use crate::token::IssuedToken;
use rekey_api::Severity;
use rekey_api::{Error, JournalEntry, RotationId, Step};
use serde::Serialize;

fn print_json(value: &impl Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("error: cannot encode JSON output: {e}"),
    }
}

fn opt<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// Where a failed rotation stood.
pub struct RotationFailure {
    /// The rotation, if one started.
    pub rotation_id: Option<RotationId>,
    /// The step that failed.
    pub step: Option<Step>,
    /// Whether the app may already hold the new certificate.
    pub published: bool,
}

#[derive(Serialize)]
struct ErrorJson<'a> {
    kind: String,
    message: String,
    hint: Option<&'a str>,
    rotation_id: Option<&'a RotationId>,
    step: Option<Step>,
    published: Option<bool>,
}

/// The exit code of `error`, which stopped `rotation` if one was under way.
pub fn failure_exit(error: &Error, rotation: Option<&RotationFailure>) -> Exit {
    match rotation {
        Some(r) => Exit::of_stopped_rotation(error.kind(), r.rotation_id.is_some(), r.published),
        None => Exit::of_error(error.kind()),
    }
}

/// Prints an error (stderr; and stdout as JSON with `--json`) and returns its exit code.
pub fn error(error: &Error, rotation: Option<&RotationFailure>, json: bool) -> Exit {
    let exit = failure_exit(error, rotation);
    if json {
        print_json(&serde_json::json!({ "error": ErrorJson {
            kind: error.kind().to_string(),
            message: error.to_string(),
            hint: error.hint(),
            rotation_id: rotation.and_then(|r| r.rotation_id.as_ref()),
            step: rotation.and_then(|r| r.step),
            published: rotation.map(|r| r.published),
        }}));
    }
    match rotation {
        Some(RotationFailure {
            rotation_id: Some(id),
            step,
            published,
        }) => {
            eprintln!(
                "error: rotation {id} failed at step {}: {error}",
                opt(*step)
            );
            if *published {
                eprintln!(
                    "note: the new certificate may already be on the app; the journal stays open: `rekey resume` finishes the rotation, `rekey abort` undoes it (runbooks/rollback.md)"
                );
            } else {
                eprintln!("note: the app was not changed");
            }
        }
        _ => eprintln!("error: {error}"),
    }
    if let Some(hint) = error.hint() {
        eprintln!("hint: {hint}");
    }
    exit
}

/// `rekey inspect`.
pub fn inspect(report: &InspectReport, json: bool) {
    if json {
        return print_json(report);
    }
    for file in &report.files {
        match file {
            Inspected::Certificate {
                path,
                subject,
                issuer,
                serial,
                not_before,
                not_after,
                days_left,
                key_algorithm,
                key_bits,
                fingerprint_sha256,
                spki_sha256,
            } => {
                println!("{}: certificate", path.display());
                println!("  subject:         {subject}");
                println!("  issuer:          {issuer}");
                println!("  serial:          {serial}");
                println!("  not before:      {not_before}");
                println!("  not after:       {not_after} ({days_left} days left)");
                println!("  key:             {key_algorithm} {key_bits} bits");
                println!("  sha256:          {fingerprint_sha256}");
                println!("  public key sha256: {spki_sha256}");
            }
            Inspected::PrivateKey { path, facts } => {
                println!("{}: private key (contents not shown)", path.display());
                println!("  key:             {} {} bits", facts.algorithm, facts.bits);
                println!("  public key sha256: {}", facts.spki_fingerprint);
            }
        }
    }
    match report.key_matches_certificate {
        Some(true) => println!("key and certificate belong together"),
        Some(false) => println!(
            "key and certificate do NOT belong together: Salesforce would answer 'invalid assertion'"
        ),
        None => {}
    }
}

/// `rekey plan`.
pub fn plan(plan: &Plan, json: bool) {
    if json {
        return print_json(plan);
    }
    match &plan.resumes {
        Some(id) => println!(
            "{}: resumes rotation {id} (generation {})",
            plan.credential, plan.new_generation
        ),
        None => println!(
            "{}: rotate generation {} -> {}",
            plan.credential,
            opt(plan.current_generation),
            plan.new_generation
        ),
    }
    for (i, step) in plan.steps.iter().enumerate() {
        let marker = if step.mutates { "changes" } else { "reads  " };
        println!(
            "  {}. {:<9} [{marker}] {}",
            i + 1,
            step.step.to_string(),
            step.action
        );
    }
}

/// Collects rotation events; prints a line per step (text) or one document at the end (JSON).
pub struct RotateProgress {
    credential: String,
    json: bool,
    events: Vec<Progress>,
}

impl RotateProgress {
    /// A renderer for a rotation of `credential`.
    pub fn new(credential: &str, json: bool) -> Self {
        RotateProgress {
            credential: credential.to_string(),
            json,
            events: Vec::new(),
        }
    }

    /// Reports one event.
    pub fn event(&mut self, event: Progress) {
        if !self.json {
            match &event {
                Progress::Resuming {
                    rotation_id,
                    last_done,
                    undoing,
                } => {
                    println!(
                        "{}: resuming rotation {rotation_id} after step {}{}",
                        self.credential,
                        opt(*last_done),
                        undoing
                            .as_ref()
                            .map_or_else(String::new, |why| format!(" (undoing it: {why})"))
                    )
                }
                Progress::StepDone {
                    step,
                    millis,
                    detail,
                } => {
                    println!(
                        "  {:<9} {:>7.2}s  {detail}",
                        step.to_string(),
                        *millis as f64 / 1000.0
                    )
                }
                Progress::AdoptionPending { waiting } => {
                    println!("  adopt     waiting for {}", waiting.join(", "))
                }
                Progress::VerifyRetry { attempt, reason } => {
                    println!("  verify    attempt {attempt} refused ({reason}); retrying")
                }
                Progress::Retry {
                    step,
                    attempt,
                    delay_ms,
                    reason,
                } => println!(
                    "  {:<9} attempt {attempt} failed ({reason}); retrying in {:.1}s",
                    step.to_string(),
                    *delay_ms as f64 / 1000.0
                ),
                Progress::RollingBack { reason } => {
                    println!("{}: rolling back: {reason}", self.credential)
                }
            }
        }
        self.events.push(event);
    }

    /// Prints the outcome; a rollback is a failure of the rotation, so it exits non-zero.
    pub fn finish(self, outcome: &Closed) -> Exit {
        let exit = match outcome.ending {
            Ending::Rotated | Ending::Aborted => Exit::Ok,
            Ending::RolledBack => Exit::RolledBack,
        };
        if self.json {
            print_json(&serde_json::json!({ "outcome": outcome, "events": self.events }));
            return exit;
        }
        let now = format!(
            "generation {} ({}), valid until {}",
            opt(outcome.generation),
            opt(outcome.fingerprint),
            opt(outcome.not_after.map(|t| t.format("%Y-%m-%d")))
        );
        let id = &outcome.rotation_id;
        let reason = outcome.reason.as_deref().unwrap_or("");
        match outcome.ending {
            Ending::Rotated => println!("{}: rotated to {now}; rotation {id}", self.credential),
            Ending::Aborted => println!(
                "{}: rotation {id} aborted ({reason}); CURRENT is {now}",
                self.credential
            ),
            Ending::RolledBack => eprintln!(
                "error: {}: rotation {id} rolled back: {reason}\nnote: the previous key is CURRENT and on the app again: {now}",
                self.credential
            ),
        }
        unadopted(&self.credential, &outcome.unadopted);
        exit
    }
}

/// `rekey status`.
pub fn status(rows: &[StatusRow], json: bool) {
    if json {
        return print_json(&rows);
    }
    println!(
        "{:<20} {:<22} {:>4} {:<16} {:<10} {:>9} {:<10} LAST ROTATION",
        "CREDENTIAL", "APP", "GEN", "FINGERPRINT", "NOT AFTER", "DAYS LEFT", "PENDING"
    );
    for r in rows {
        let pending = match (&r.open_rotation, r.pending_generation) {
            (Some(id), _) => format!("open: {id}"),
            (None, Some(g)) => format!("gen {g}"),
            (None, None) => "-".to_string(),
        };
        println!(
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
        match (&r.app_fingerprint, &r.app_error) {
            (Some(f), _) => println!("    app holds {f}"),
            (None, Some(e)) => println!("    app unreadable: {e}"),
            (None, None) => println!("    app holds no certificate"),
        }
        for st in &r.stores {
            let verdict = match st.matches_app {
                Some(true) => "= app",
                Some(false) => "DIFFERS FROM THE APP",
                None => "app unknown",
            };
            println!(
                "    {:<48} gen {:>3}  {}  {verdict}",
                st.store,
                opt(st.generation),
                st.fingerprint.as_deref().unwrap_or("-")
            );
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
        println!(
            "{label:<8} {:<20} days left {:>5}  key age {:>5}",
            r.credential,
            opt(r.days_left),
            opt(r.key_age_days)
        );
        for f in &r.findings {
            println!("         - [{:?}] {}", f.severity, f.message);
        }
    }
}

/// Alerts and rotation notices sent: each on stderr, so `--json` stdout stays one document; a
/// channel that failed is always named.
pub fn deliveries(deliveries: &[Delivery], json: bool) {
    for d in deliveries {
        match &d.error {
            Some(error) => eprintln!(
                "warning: {}: {} for {} was not delivered: {error}",
                d.channel, d.what, d.credential
            ),
            None if !json => eprintln!("notified {}: {} ({})", d.channel, d.what, d.credential),
            None => {}
        }
    }
}

/// `rekey run`'s summary.
pub fn run(report: &RunReport, json: bool) {
    if json {
        return print_json(report);
    }
    let (mut rotated, mut rolled_back, mut failed, mut waiting, mut would) = (0, 0, 0, 0, 0);
    for row in &report.credentials {
        let c = &row.check;
        let action = match &row.action {
            Action::NotDue => "not due".to_string(),
            Action::WouldRotate => {
                would += 1;
                "would rotate".to_string()
            }
            Action::Waiting { opens } => {
                waiting += 1;
                match opens {
                    Some(t) => format!("due; window opens {}", t.format("%Y-%m-%d %H:%MZ")),
                    None => "due; no window will open".to_string(),
                }
            }
            Action::Rotated {
                generation,
                fingerprint,
                unadopted,
                ..
            } => {
                rotated += 1;
                let unadopted = if unadopted.is_empty() {
                    String::new()
                } else {
                    format!("; NOT adopted by {}", unadopted.join("; "))
                };
                format!(
                    "rotated to generation {} ({}){unadopted}",
                    opt(*generation),
                    opt(fingerprint.as_ref())
                )
            }
            Action::RolledBack { reason, .. } => {
                rolled_back += 1;
                format!("rolled back: {reason}")
            }
            Action::Failed { error, .. } => {
                failed += 1;
                format!("FAILED: {error}")
            }
        };
        println!(
            "{:<20} {:<8} {action}",
            c.credential,
            severity_label(c.severity)
        );
        for reason in &row.reasons {
            println!("{:<29} because {reason}", "");
        }
        if let Action::Failed {
            hint: Some(hint), ..
        } = &row.action
        {
            println!("{:<29} hint: {hint}", "");
        }
        for f in &c.findings {
            println!("{:<29} - [{:?}] {}", "", f.severity, f.message);
        }
    }
    let total = report.credentials.len();
    let verb = if report.dry_run { "dry run" } else { "run" };
    println!(
        "{verb}: {total} credentials: {rotated} rotated, {would} would rotate, {rolled_back} rolled back, {failed} failed, {waiting} waiting for a window; exit {}",
        report.exit as u8
    );
    if let Some(e) = &report.alert_error {
        println!("alerts: {e}");
    }
}

fn severity_label(severity: Severity) -> &'static str {
    match severity {
        Severity::Ok => "OK",
        Severity::Info => "INFO",
        Severity::Warning => "WARNING",
        Severity::Critical => "CRITICAL",
        Severity::Unknown => "UNKNOWN",
    }
}

/// A warning on stderr.
pub fn warning(message: &str) {
    eprintln!("warning: {message}");
}

/// A line about what a long-running command is doing, on stderr.
pub fn note(message: &str) {
    eprintln!("{message}");
}

/// A question on stderr, answered on stdin by the caller.
pub fn prompt(question: &str) {
    use std::io::Write as _;
    eprint!("{question}");
    let _ = std::io::stderr().flush();
}

/// `rekey emergency`'s summary, one line per credential.
pub fn emergency(rows: &[EmergencyRow], json: bool) {
    if json {
        return print_json(&rows);
    }
    for r in rows {
        println!(
            "{}: emergency rekey {}{}",
            r.credential,
            r.outcome,
            r.rotation_id
                .as_ref()
                .map_or_else(String::new, |id| format!(" (rotation {id})"))
        );
        if let Some(e) = &r.error {
            eprintln!("error: {}: {e}", r.credential);
        }
        if let Some(h) = &r.hint {
            eprintln!("hint: {h}");
        }
        if let Some(path) = &r.evidence {
            println!("  evidence: {}", path.display());
        }
        unadopted(&r.credential, &r.unadopted);
    }
}

/// A warning for each consumer that did not adopt `credential`'s new key.
fn unadopted(credential: &str, consumers: &[Unadopted]) {
    for u in consumers {
        warning(&format!(
            "{credential}: consumer {u} does not use the new key; it fails to get tokens until it does"
        ));
    }
}

/// `rekey check --preflight`.
pub fn preflight(rows: &[PreflightRow], json: bool) {
    if json {
        return print_json(&rows);
    }
    for r in rows {
        let ok = r.store_problem.is_none() && r.target_problem.is_none();
        println!(
            "{:<8} {}",
            if ok { "READY" } else { "BLOCKED" },
            r.credential
        );
        for (what, problem) in [(&r.store, &r.store_problem), (&r.target, &r.target_problem)] {
            println!("         {what}: {}", problem.as_deref().unwrap_or("ok"));
        }
    }
}

/// `rekey import`.
pub fn import(report: &ImportReport, json: bool) {
    if json {
        return print_json(report);
    }
    println!(
        "{}: generation {} CURRENT ({}), valid until {}",
        report.credential,
        report.generation,
        report.fingerprint,
        report.not_after.format("%Y-%m-%d")
    );
}

/// `rekey verify`.
pub fn verify(report: &VerifyReport, json: bool) {
    if json {
        return print_json(report);
    }
    let who = format!(
        "{} {} key (generation {}, {})",
        report.credential, report.stage, report.generation, report.fingerprint
    );
    if report.accepted {
        println!("accepted: Salesforce issued a token for the {who}");
    } else {
        println!(
            "refused: {}: {} ({who})",
            report.error.as_deref().unwrap_or("?"),
            report.error_description.as_deref().unwrap_or("?")
        );
    }
}

/// `rekey token`: the only place an access token is printed, and only to stdout. Written
/// straight to the locked stdout, without building the whole output as a string first.
pub fn token(token: &IssuedToken, format: TokenFormat) -> Exit {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let secret = token.access_token.expose_secret();
    let written = match format {
        TokenFormat::Json => {
            #[derive(Serialize)]
            struct TokenJson<'a> {
                access_token: &'a str,
                instance_url: &'a str,
                fingerprint: rekey_api::Fingerprint,
                generation: rekey_api::Generation,
                stage: rekey_api::Stage,
                cached: bool,
            }
            let json = TokenJson {
                access_token: secret,
                instance_url: &token.instance_url,
                fingerprint: token.fingerprint,
                generation: token.generation,
                stage: token.stage,
                cached: token.cached,
            };
            serde_json::to_writer_pretty(&mut out, &json)
                .map_err(std::io::Error::from)
                .and_then(|()| writeln!(out))
        }
        TokenFormat::Env => [
            ("SF_ACCESS_TOKEN", secret),
            ("SF_INSTANCE_URL", token.instance_url.as_str()),
        ]
        .iter()
        .try_for_each(|(name, value)| {
            write!(out, "export {name}=")?;
            write_shell_quoted(&mut out, value)?;
            writeln!(out)
        }),
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => Exit::Ok,
        Err(e) => {
            eprintln!("error: cannot write the token to stdout: {e}");
            Exit::Internal
        }
    }
}

/// `value` as one POSIX shell word: single-quoted, each `'` written as `'\''`. Nothing inside
/// single quotes is expanded, so `eval` assigns exactly `value`.
fn write_shell_quoted(out: &mut impl std::io::Write, value: &str) -> std::io::Result<()> {
    out.write_all(b"'")?;
    for (i, part) in value.split('\'').enumerate() {
        if i > 0 {
            out.write_all(br"'\''")?;
        }
        out.write_all(part.as_bytes())?;
    }
    out.write_all(b"'")
}

/// `rekey journal`.
pub fn journal(entries: &[JournalEntry], json: bool) {
    if json {
        return print_json(&entries);
    }
    for e in entries {
        println!(
            "{} {} {:<9} {:<6} gen {} {}",
            e.at.format("%Y-%m-%dT%H:%M:%SZ"),
            e.rotation_id,
            e.step.to_string(),
            format!("{:?}", e.phase).to_lowercase(),
            e.generation,
            e.detail.as_deref().unwrap_or("")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_keeps_every_character_literal() {
        let quoted = |value: &str| {
            let mut out = Vec::new();
            write_shell_quoted(&mut out, value).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(quoted("00Dx!AQ.a$b`c\"d"), "'00Dx!AQ.a$b`c\"d'");
        assert_eq!(quoted("it's"), r"'it'\''s'");
        assert_eq!(quoted(""), "''");
    }
}
