//! The small pieces every report uses: one JSON document on stdout, `-` for what is unknown, and
//! the lines that go to stderr (warnings, notes, prompts, notifications sent).

use crate::monitor::alerts::Delivery;
use serde::Serialize;

pub(super) fn print_json(value: &impl Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => out!("{text}"),
        Err(e) => err!("error: cannot encode JSON output: {e}"),
    }
}

pub(super) fn opt<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// Alerts and rotation notices sent: each on stderr, so `--json` stdout stays one document; a
/// channel that failed is always named.
pub fn deliveries(deliveries: &[Delivery], json: bool) {
    for d in deliveries {
        match &d.error {
            Some(error) => err!(
                "warning: {}: {} for {} was not delivered: {error}",
                d.channel,
                d.what,
                d.credential
            ),
            None if !json => err!("notified {}: {} ({})", d.channel, d.what, d.credential),
            None => {}
        }
    }
}

/// A warning on stderr.
pub fn warning(message: &str) {
    err!("warning: {message}");
}

/// A line about what a long-running command is doing, on stderr.
pub fn note(message: &str) {
    err!("{message}");
}

/// A question on stderr, answered on stdin by the caller.
pub fn prompt(question: &str) {
    use std::io::Write as _;
    let mut stderr = std::io::stderr().lock();
    let _ = write!(stderr, "{question}").and_then(|()| stderr.flush());
}
