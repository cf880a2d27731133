//! `[run]` and `[daemon]`: how many credentials `rekey run` rotates at once, and where and how often
//! `rekey daemon` runs.

use rekey_api::config::{Spanned, Validator};
use serde::Deserialize;
use std::time::Duration;

/// `[run]`.
#[derive(Debug)]
pub struct RunConfig {
    /// How many credentials rotate at once.
    pub concurrency: usize,
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRun {
    pub(super) concurrency: Option<Spanned<i64>>,
    pub(super) api_budget_share: Option<Spanned<f64>>,
}

/// `run.api_budget_share`: a share of the daily API allocation in (0, 1].
pub(super) fn validate_api_budget_share(raw: Option<&RawRun>, v: &mut Validator) -> f64 {
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
}

pub(super) fn validate_daemon(raw: Option<&RawDaemon>, v: &mut Validator) -> DaemonConfig {
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
    DaemonConfig {
        listen,
        interval: Duration::from_secs(interval as u64),
    }
}
