//! Graceful stop for `rekey run` and `rekey daemon`: SIGTERM or SIGINT asks every rotation to stop
//! at its next step boundary (or while it waits for Salesforce), with the journal left open for
//! `rekey resume`, instead of dying between a write and its journal entry.

use rekey_api::{Error, ErrorKind};
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

static REQUESTED: AtomicBool = AtomicBool::new(false);
static NOTIFY: Notify = Notify::const_new();

/// Starts listening for SIGTERM and SIGINT (once per process).
pub fn listen() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let signal = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        REQUESTED.store(true, Ordering::SeqCst);
        NOTIFY.notify_waiters();
        // Said once the stop is in force, so whoever reads the line (an operator, a test) knows
        // that the next step boundary will stop.
        tracing::warn!("{signal}: stopping after the current step");
    });
    Ok(())
}

/// Whether a stop was asked for.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Resolves once a stop is asked for.
pub async fn wait() {
    let notified = NOTIFY.notified();
    if requested() {
        return;
    }
    notified.await;
}

/// The error a rotation stops with when asked to, `before` naming where it stopped.
pub fn stopped(credential: &str, before: &str) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!("{credential}: stopped by a shutdown signal {before}; the rotation is journaled and open"),
    )
    .with_hint(format!(
        "the next `rekey run` (or `rekey resume {credential}`) finishes it"
    ))
}
