//! `[audit]` and `[[audit.ignore]]`: the thresholds `rekey audit` judges an org's OAuth apps by,
//! whether `check`/`run`/`daemon` include its findings, where an org's governance ledger lives, and
//! the accepted exceptions (like cargo-deny's ignore list: each with a reason and a date).

use crate::controls;
use chrono::NaiveDate;
use rekey_api::config::{Spanned, Validator};
use serde::Deserialize;

/// Journal names of the orgs' governance ledgers (grant revocations, suppressions added) begin
/// with this; no credential may.
pub const LEDGER_PREFIX: &str = "_org.";

/// `[audit]`.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// `check`, `run` and `daemon` audit every org too, alert on its findings and export them
    /// as metrics.
    pub in_check: bool,
    /// An OAuth grant unused this many days is stale.
    pub stale_after_days: u32,
    /// An app nobody logged in through for this many days is unused.
    pub unused_after_days: u32,
    /// A consumer secret older than this is reported.
    pub consumer_secret_max_age_days: u32,
    /// A JWT certificate expiring within this many days is reported.
    pub certificate_warn_days: u32,
    /// Clock differences beyond this many seconds are reported.
    pub clock_skew_secs: u32,
    /// The store holding the orgs' governance ledgers; `None`: the primary store of the org's
    /// first credential, else the first store (`Config::ledger`).
    pub ledger_store: Option<String>,
    /// Accepted exceptions, in config order.
    pub ignore: Vec<Suppression>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            in_check: false,
            stale_after_days: 30,
            unused_after_days: 90,
            consumer_secret_max_age_days: 90,
            certificate_warn_days: 30,
            clock_skew_secs: 30,
            ledger_store: None,
            ignore: Vec::new(),
        }
    }
}

/// One `[[audit.ignore]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    /// The finding id it suppresses.
    pub id: String,
    /// Only in this org; `None`: every org.
    pub org: Option<String>,
    /// Only for this app (API name); `None`: every app.
    pub app: Option<String>,
    /// Why the exception is accepted; a suppression without one is itself reported.
    pub reason: Option<String>,
    /// The last day it applies (UTC); past it, it no longer suppresses and is reported.
    pub until: Option<NaiveDate>,
    /// `file:line:column` of the entry, for the findings about it.
    pub origin: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    in_check: Option<bool>,
    stale_after_days: Option<Spanned<i64>>,
    unused_after_days: Option<Spanned<i64>>,
    consumer_secret_max_age_days: Option<Spanned<i64>>,
    certificate_warn_days: Option<Spanned<i64>>,
    clock_skew_secs: Option<Spanned<i64>>,
    ledger_store: Option<Spanned<String>>,
    #[serde(default)]
    ignore: Vec<Spanned<RawSuppression>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSuppression {
    id: Spanned<String>,
    org: Option<Spanned<String>>,
    app: Option<String>,
    reason: Option<String>,
    until: Option<Spanned<toml::value::Datetime>>,
}

pub(super) fn validate_audit(
    raw: Option<&RawAudit>,
    orgs: &std::collections::BTreeSet<String>,
    stores: &std::collections::BTreeSet<String>,
    v: &mut Validator,
) -> AuditConfig {
    let defaults = AuditConfig::default();
    let Some(raw) = raw else {
        return defaults;
    };
    let mut days = |value: &Option<Spanned<i64>>, default: u32, max: i64, name: &str| {
        v.positive(value, i64::from(default), 1..=max, name) as u32
    };
    let stale_after_days = days(&raw.stale_after_days, 30, 3650, "audit.stale_after_days");
    let unused_after_days = days(&raw.unused_after_days, 90, 3650, "audit.unused_after_days");
    let consumer_secret_max_age_days = days(
        &raw.consumer_secret_max_age_days,
        90,
        3650,
        "audit.consumer_secret_max_age_days",
    );
    let certificate_warn_days = days(
        &raw.certificate_warn_days,
        30,
        3650,
        "audit.certificate_warn_days",
    );
    let clock_skew_secs = days(&raw.clock_skew_secs, 30, 3600, "audit.clock_skew_secs");
    let ledger_store = raw.ledger_store.as_ref().map(|s| {
        if !stores.contains(s.get_ref()) {
            v.problem(
                s.span(),
                format!(
                    "audit.ledger_store: unknown store '{}'; use a key of [stores]",
                    s.get_ref()
                ),
            );
        }
        s.get_ref().clone()
    });
    let ignore = raw
        .ignore
        .iter()
        .filter_map(|entry| suppression(entry, orgs, v))
        .collect();
    AuditConfig {
        in_check: raw.in_check.unwrap_or(defaults.in_check),
        stale_after_days,
        unused_after_days,
        consumer_secret_max_age_days,
        certificate_warn_days,
        clock_skew_secs,
        ledger_store,
        ignore,
    }
}

fn suppression(
    entry: &Spanned<RawSuppression>,
    orgs: &std::collections::BTreeSet<String>,
    v: &mut Validator,
) -> Option<Suppression> {
    let raw = entry.get_ref();
    let before = v.problems().len();
    let id = raw.id.get_ref();
    if controls::control(id).is_none() {
        let known: Vec<&str> = controls::CONTROLS.iter().map(|c| c.id).collect();
        v.problem(
            raw.id.span(),
            format!(
                "audit.ignore: unknown finding id '{id}'; ids: {}",
                known.join(", ")
            ),
        );
    }
    if let Some(org) = &raw.org
        && !orgs.contains(org.get_ref())
    {
        v.problem(
            org.span(),
            format!(
                "audit.ignore: unknown org '{}'; use a key of [orgs]",
                org.get_ref()
            ),
        );
    }
    let until = raw.until.as_ref().and_then(|u| {
        let date = u.get_ref();
        match (date.date, date.time) {
            (Some(d), None) => {
                NaiveDate::from_ymd_opt(i32::from(d.year), d.month.into(), d.day.into())
            }
            _ => {
                v.problem(
                    u.span(),
                    "audit.ignore.until must be a date such as 2027-01-31 (no time)",
                );
                None
            }
        }
    });
    if v.problems().len() > before {
        return None;
    }
    Some(Suppression {
        id: id.clone(),
        org: raw.org.as_ref().map(|o| o.get_ref().clone()),
        app: raw.app.clone(),
        reason: raw.reason.clone().filter(|r| !r.trim().is_empty()),
        until,
        origin: v.at(entry.span()),
    })
}
