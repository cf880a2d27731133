//! Graceful stop for every command that changes a credential (`rotate`, `resume`, `abort`,
//! `emergency`, `run`, `daemon`): SIGTERM or SIGINT asks every rotation to stop at its next step
//! boundary (or while it waits for Salesforce), with the journal left open for `rekey resume`,
//! instead of dying between a write and its journal entry. A second SIGTERM or SIGINT ends the
//! process at once, for an operator who cannot wait (the journal still says where it stood, as
//! after a crash). SIGHUP, a closed terminal, is not a request to stop: the rotation goes on to
//! its next safe state and what it can no longer print is dropped.

use rekey_api::{Error, ErrorKind};
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::Notify;

static REQUESTED: AtomicBool = AtomicBool::new(false);
static NOTIFY: Notify = Notify::const_new();

/// The signals this module acts on.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    /// The next SIGTERM or SIGINT, with its name and the exit code a death by it would give;
    /// SIGHUPs until then are noted and otherwise ignored.
    async fn next_stop(&mut self) -> (&'static str, u8) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return ("SIGTERM", 128 + 15),
                _ = self.int.recv() => return ("SIGINT", 128 + 2),
                _ = self.hup.recv() => tracing::info!("SIGHUP: going on; output that cannot be written is dropped"),
            }
        }
    }
}

/// Starts listening for SIGTERM, SIGINT and SIGHUP (once per process).
pub fn listen() -> Result<(), Error> {
    let mut signals = (|| {
        Ok::<_, std::io::Error>(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    })()
    .map_err(|e| {
        Error::new(
            ErrorKind::Unexpected,
            "cannot listen for SIGTERM, SIGINT and SIGHUP",
        )
        .with_source(e)
    })?;
    tokio::spawn(async move {
        let (signal, _) = signals.next_stop().await;
        REQUESTED.store(true, Ordering::SeqCst);
        NOTIFY.notify_waiters();
        // Said once the stop is in force, so whoever reads the line (an operator, a test) knows
        // that the next step boundary will stop.
        tracing::warn!("{signal}: stopping after the current step (send it again to stop now)");
        let (signal, code) = signals.next_stop().await;
        tracing::warn!(
            "{signal} again: stopping now; `rekey resume` or `rekey abort` picks up from the journal"
        );
        std::process::exit(i32::from(code));
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
        "the next `rekey run` (or `rekey resume {credential}`) finishes it, `rekey abort {credential}` undoes it"
    ))
}
