//! `[run]` and `[daemon]`: how many credentials `rekey run` rotates at once, and where and how often
//! `rekey daemon` runs, and where its replicas agree which one leads.

use rekey_api::config::{Spanned, Validator};
use serde::Deserialize;
use std::time::Duration;

/// The name of the daemon replicas' leader lease in the coordination store; no credential may
/// take it.
pub const DAEMON_LEASE: &str = "_daemon";

/// `[run]`.
#[derive(Debug)]
pub struct RunConfig {
    /// How many credentials rotate at once.
    pub concurrency: usize,
}

/// `[daemon]`.
#[derive(Debug)]
pub struct DaemonConfig {
    /// Where `/metrics` and `/healthz` are served.
    pub listen: std::net::SocketAddr,
    /// Time from the start of one `run` to the start of the next.
    pub interval: Duration,
    /// The store holding the leader lease (`_daemon`) replicas take before a cycle; `None`: see
    /// `Config::coordination_store` for the default.
    pub coordination_store: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRun {
    pub(super) concurrency: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) interval_secs: Option<Spanned<i64>>,
    pub(super) coordination_store: Option<Spanned<String>>,
}

pub(super) fn validate_daemon(
    raw: Option<&RawDaemon>,
    stores: &std::collections::BTreeSet<String>,
    v: &mut Validator,
) -> DaemonConfig {
    let default_listen = std::net::SocketAddr::from(([127, 0, 0, 1], 9817));
    let listen = match raw.and_then(|d| d.listen.as_ref()) {
        None => default_listen,
        Some(l) => l.get_ref().parse().unwrap_or_else(|_| {
            v.problem(
                l.span(),
                format!(
                    "daemon.listen '{}' is not an address:port such as 127.0.0.1:9817",
                    l.get_ref()
                ),
            );
            default_listen
        }),
    };
    let interval = raw.map_or(3600, |d| {
        v.positive(&d.interval_secs, 3600, 1..=86_400, "daemon.interval_secs")
    });
    let coordination_store = raw.and_then(|d| d.coordination_store.as_ref()).map(|s| {
        if !stores.contains(s.get_ref()) {
            v.problem(
                s.span(),
                format!(
                    "daemon.coordination_store: unknown store '{}'; use a key of [stores]",
                    s.get_ref()
                ),
            );
        }
        s.get_ref().clone()
    });
    DaemonConfig {
        listen,
        interval: Duration::from_secs(interval as u64),
        coordination_store,
    }
}
