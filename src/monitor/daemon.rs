//! `rekey daemon`: `rekey run` every `[daemon] interval_secs`, with `/metrics` (Prometheus text:
//! the `check` families plus the daemon's own) and `/healthz` served on `[daemon] listen`.
//!
//! SIGTERM/SIGINT stop it cleanly: the HTTP server stops accepting, a rotation in flight stops at
//! its next step boundary with the journal open (the next run resumes it), and the process exits 0.
//! The config is read once at start; restart the daemon to apply a changed config.
//!
//! Several replicas may run with the same config and stores: only the one holding the leader
//! lease runs cycles (`leader`); the others wait, healthy, and say so (`role` in `/healthz`,
//! `rekey_daemon_leader` in `/metrics`).

use super::alerts::Notifier;
use super::leader::{Leadership, Standing};
use super::metrics;
use super::run::{self, Action, RunReport};
use crate::config::Config;
use crate::exit::Exit;
use crate::shutdown;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use rekey_api::{Error, ErrorKind, Result};
use std::fmt::Write as _;
use std::future::IntoFuture as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the HTTP side shows: the last run's results and the daemon's counters.
#[derive(Default)]
struct Shared {
    /// `check`'s metric families as of the last run.
    facts: String,
    last_finished: Option<(Instant, DateTime<Utc>, Exit)>,
    runs: u64,
    rotated: u64,
    rolled_back: u64,
    failed: u64,
    undelivered: u64,
    /// This replica holds the leader lease (always, without a coordination store).
    leader: bool,
    /// Since when it does.
    leads_since: Option<Instant>,
    /// When this replica last tried to lead (or confirmed that it does).
    tried: Option<Instant>,
    /// Rotations and audits deferred for their org's API budget.
    deferred: u64,
}

struct Daemon {
    shared: Mutex<Shared>,
    /// A run that has not finished within this long means the daemon is stuck.
    stale_after: Duration,
}

/// What the daemon reports as it goes, for the CLI to print.
pub enum DaemonEvent<'a> {
    /// Serving `/metrics` and `/healthz` on `address` (the one bound: with port 0 the system
    /// picked the port), a run every `interval`.
    Listening {
        /// Where.
        address: std::net::SocketAddr,
        /// How often a run starts.
        interval: Duration,
    },
    /// A run finished.
    Ran(&'a RunReport),
    /// This replica took the leader lease in `store`: it runs the cycles now.
    Leads {
        /// The coordination store.
        store: &'a str,
    },
    /// Another replica leads (or this one stood down); this one waits for the lease.
    Follows {
        /// Why: who holds the lease, or what failed.
        why: &'a str,
    },
    /// Stopped by SIGTERM or SIGINT.
    Stopped,
}

/// Runs `rekey run` every `[daemon] interval_secs` until SIGTERM or SIGINT (the caller listens for
/// them), serving the metrics; `report` hears each [`DaemonEvent`].
pub async fn serve(
    config: &Config,
    notifier: Option<&Notifier>,
    report: &mut dyn FnMut(DaemonEvent<'_>),
) -> Result<()> {
    let address = config.daemon.listen;
    let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!("cannot listen on {address} ([daemon] listen)"),
        )
        .with_source(e)
        .with_hint("choose a free address:port in [daemon] listen, or stop what holds it")
    })?;
    // The address bound, not the one configured: with port 0 the system picked the port.
    let bound = listener.local_addr().unwrap_or(address);
    let interval = config.daemon.interval;
    let daemon = Arc::new(Daemon {
        shared: Mutex::new(Shared::default()),
        // Two missed cycles plus the longest a rotation may legitimately take.
        stale_after: interval * 2 + run_allowance(),
    });
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .route("/healthz", axum::routing::get(healthz))
        .with_state(daemon.clone());
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown::wait())
            .into_future(),
    );
    report(DaemonEvent::Listening {
        address: bound,
        interval,
    });
    let mut leadership = Leadership::new(config).await?;
    let mut leading = None;
    while !shutdown::requested() {
        let standing = match leadership.as_mut() {
            None => Standing::Leads,
            Some(l) => l.try_lead().await,
        };
        let leads = matches!(standing, Standing::Leads);
        {
            let mut s = daemon.shared.lock().unwrap_or_else(|p| p.into_inner());
            if leads && !s.leader {
                s.leads_since = Some(Instant::now());
            }
            s.leader = leads;
            s.tried = Some(Instant::now());
        }
        if leading != Some(leads) {
            match (&standing, leadership.as_ref()) {
                (Standing::Leads, Some(l)) => report(DaemonEvent::Leads {
                    store: l.store_name(),
                }),
                (Standing::Follows(why), _) => {
                    report(DaemonEvent::Follows { why });
                    if notifier.is_some_and(|n| !n.state_in_store()) {
                        tracing::warn!(
                            "another replica leads, but the alerts' state is in a file of this machine: a replica that takes over sends every open alert again; set [alerts] state_store"
                        );
                    }
                }
                (Standing::Leads, None) => {}
            }
            leading = Some(leads);
        }
        let ran = match leadership.as_mut() {
            // A follower waits for its next try.
            Some(l) if !leads => {
                tokio::select! {
                    () = tokio::time::sleep(l.poll(interval)) => {}
                    () = shutdown::wait() => {}
                }
                continue;
            }
            // The cycle runs while the lease is kept; once it is lost, the cycle is dropped where
            // it stands (see `leader`).
            Some(l) => tokio::select! {
                ran = run::cycle(config, notifier, false, &|_| {}) => Some(ran),
                () = l.keep() => None,
            },
            // Alone (no coordination store): every cycle is this replica's.
            None => Some(run::cycle(config, notifier, false, &|_| {}).await),
        };
        let Some(ran) = ran else {
            continue;
        };
        report(DaemonEvent::Ran(&ran));
        record(&daemon, &ran);
        let keep = async {
            match leadership.as_mut() {
                Some(l) => l.keep().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shutdown::wait() => {}
            () = keep => {}
        }
    }
    // Given back on a clean stop, so another replica leads at once.
    if let Some(l) = leadership.as_mut() {
        l.release().await;
    }
    if let Ok(Err(e)) = server.await {
        tracing::warn!(error = %e, "the metrics server stopped with an error");
    }
    report(DaemonEvent::Stopped);
    Ok(())
}

/// The longest a run may legitimately take (its rotations included) before `/healthz` calls the
/// daemon stuck: 30 minutes.
const RUN_ALLOWANCE: Duration = Duration::from_secs(1800);

/// [`RUN_ALLOWANCE`]; in debug builds `REKEY_TEST_DAEMON_RUN_ALLOWANCE_SECS` shortens it, so a
/// test sees `/healthz` turn 503 without waiting half an hour. Compiled out of release builds.
#[cfg(debug_assertions)]
fn run_allowance() -> Duration {
    std::env::var("REKEY_TEST_DAEMON_RUN_ALLOWANCE_SECS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .map_or(RUN_ALLOWANCE, Duration::from_secs)
}

#[cfg(not(debug_assertions))]
fn run_allowance() -> Duration {
    RUN_ALLOWANCE
}

fn record(daemon: &Daemon, report: &RunReport) {
    let mut s = daemon.shared.lock().unwrap_or_else(|p| p.into_inner());
    s.last_finished = Some((Instant::now(), rekey_api::now(), report.exit));
    s.runs += 1;
    s.deferred += report.audit_deferred.len() as u64;
    for row in &report.credentials {
        match row.action {
            Action::Rotated { .. } => s.rotated += 1,
            Action::RolledBack { .. } => s.rolled_back += 1,
            Action::Failed { .. } => s.failed += 1,
            Action::Deferred { .. } => s.deferred += 1,
            Action::NotDue
            | Action::Waiting { .. }
            | Action::WouldRotate
            | Action::WouldRetire
            | Action::Retired { .. }
            | Action::Held { .. } => {}
        }
    }
    s.facts = metrics::metrics(&report.observed)
        + &report.audit_metrics
        + &super::budget::metrics(Some(s.deferred));
    s.undelivered += report
        .deliveries
        .iter()
        .filter(|d| d.error.is_some())
        .count() as u64;
}

async fn metrics(State(daemon): State<Arc<Daemon>>) -> impl IntoResponse {
    let s = daemon.shared.lock().unwrap_or_else(|p| p.into_inner());
    let mut text = s.facts.clone();
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(&str, f64)]| {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(text, "{name}{labels} {value}");
        }
    };
    if let Some((_, at, exit)) = s.last_finished {
        family(
            "rekey_run_last_finished_timestamp_seconds",
            "gauge",
            "When the daemon's last run finished.",
            &[("", at.timestamp() as f64)],
        );
        family(
            "rekey_run_last_exit_code",
            "gauge",
            "The exit code `rekey run` would have given for the last run.",
            &[("", f64::from(exit as u8))],
        );
    }
    family(
        "rekey_daemon_leader",
        "gauge",
        "1 while this replica holds the leader lease and runs the cycles, 0 while it follows.",
        &[("", if s.leader { 1.0 } else { 0.0 })],
    );
    family(
        "rekey_runs_total",
        "counter",
        "Runs finished since the daemon started.",
        &[("", s.runs as f64)],
    );
    family(
        "rekey_rotations_total",
        "counter",
        "Rotations the daemon ran, by how they ended.",
        &[
            ("{outcome=\"succeeded\"}", s.rotated as f64),
            ("{outcome=\"rolled_back\"}", s.rolled_back as f64),
            ("{outcome=\"failed\"}", s.failed as f64),
        ],
    );
    family(
        "rekey_notifications_failed_total",
        "counter",
        "Alerts and rotation notices a channel did not accept.",
        &[("", s.undelivered as f64)],
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

async fn healthz(State(daemon): State<Arc<Daemon>>) -> impl IntoResponse {
    let s = daemon.shared.lock().unwrap_or_else(|p| p.into_inner());
    // A follower runs nothing by design: it is healthy while it keeps trying to lead.
    let Some(leads_since) = s.leads_since.filter(|_| s.leader) else {
        let since = s.tried.map_or(Duration::ZERO, |at| at.elapsed());
        if since <= daemon.stale_after {
            return (
                StatusCode::OK,
                "ok: another replica leads; waiting for the leader lease; role: follower\n"
                    .to_string(),
            );
        }
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "stale: the last try to lead was {}s ago (limit {}s); role: follower\n",
                since.as_secs(),
                daemon.stale_after.as_secs()
            ),
        );
    };
    // A replica that took over is judged from then, not from its last run as the leader before.
    let since = s
        .last_finished
        .map_or(leads_since, |(at, _, _)| at.max(leads_since))
        .elapsed();
    let what = if s.last_finished.is_some_and(|(at, _, _)| at >= leads_since) {
        "the last run finished"
    } else {
        "started, first run under way,"
    };
    if since <= daemon.stale_after {
        (
            StatusCode::OK,
            format!("ok: {what} {}s ago; role: leader\n", since.as_secs()),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "stale: {what} {}s ago (limit {}s); role: leader\n",
                since.as_secs(),
                daemon.stale_after.as_secs()
            ),
        )
    }
}
