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
    /// How many credentials rotate at once (in a batch: how many generate and stage at once).
    pub concurrency: usize,
    /// The most JWT-certificate credentials of one org whose certificates one deployment
    /// publishes.
    pub max_batch: usize,
    /// Canary order: these orgs rotate one after the other, in this order, and a run stops at
    /// the first whose rotations did not all succeed; orgs not listed follow (empty: every org
    /// at once).
    pub org_order: Vec<String>,
    /// Above this share of an org's daily API allocation, `run` defers that org's non-urgent
    /// work (`api_budget_share`, default 0.8).
    pub api_budget_share: f64,
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
    pub(super) max_batch: Option<Spanned<i64>>,
    pub(super) org_order: Option<Vec<Spanned<String>>>,
    pub(super) api_budget_share: Option<Spanned<f64>>,
}

/// `[run]`, its `org_order` checked against the defined `orgs`.
pub(super) fn validate_run(
    raw: Option<&RawRun>,
    orgs: &std::collections::BTreeSet<String>,
    v: &mut Validator,
) -> RunConfig {
    let concurrency = raw.map_or(4, |r| {
        v.positive(&r.concurrency, 4, 1..=64, "run.concurrency")
    });
    let max_batch = raw.map_or(50, |r| {
        v.positive(&r.max_batch, 50, 1..=1000, "run.max_batch")
    });
    let mut org_order: Vec<String> = Vec::new();
    for name in raw.and_then(|r| r.org_order.as_ref()).into_iter().flatten() {
        let org = name.get_ref();
        if !orgs.contains(org) {
            let defined: Vec<&str> = orgs.iter().map(String::as_str).collect();
            v.problem(
                name.span(),
                format!(
                    "run.org_order names org '{org}', which is not defined (defined orgs: {})",
                    if defined.is_empty() {
                        "none".into()
                    } else {
                        defined.join(", ")
                    }
                ),
            );
        } else if org_order.contains(org) {
            v.problem(
                name.span(),
                format!("run.org_order lists org '{org}' twice"),
            );
        } else {
            org_order.push(org.clone());
        }
    }
    RunConfig {
        concurrency: concurrency as usize,
        max_batch: max_batch as usize,
        org_order,
        api_budget_share: validate_api_budget_share(raw, v),
    }
}

/// `run.api_budget_share`: a share of the daily API allocation in (0, 1].
fn validate_api_budget_share(raw: Option<&RawRun>, v: &mut Validator) -> f64 {
    const DEFAULT: f64 = 0.8;
    match raw.and_then(|r| r.api_budget_share.as_ref()) {
        None => DEFAULT,
        Some(share) if *share.get_ref() > 0.0 && *share.get_ref() <= 1.0 => *share.get_ref(),
        Some(share) => {
            v.problem(
                share.span(),
                format!(
                    "run.api_budget_share = {} is out of range; use a share above 0 and at most 1 (0.8 = 80 % of the org's daily API requests)",
                    share.get_ref()
                ),
            );
            DEFAULT
        }
    }
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
