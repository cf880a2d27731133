//! `rekey.toml`: parsed, then validated into types the rest of the program can trust.
//!
//! Every problem names `file:line:column` and says how to fix it; all problems are collected before
//! failing, so one run shows every mistake. Nothing here touches the network or a key.

pub use rekey_api::SecretSource;
use rekey_api::config::{Spanned, Validator};
use rekey_api::{Error, ErrorKind, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue};

mod agent;
mod alerts;
mod audit;
mod consumers;
mod credentials;
#[cfg(test)]
mod custody_tests;
mod orgs;
mod service;
#[cfg(test)]
mod service_tests;
mod stores;
mod tables;
#[cfg(test)]
pub(crate) mod tests;

pub use agent::{AgentConfig, AgentListen};
pub use alerts::{ALERTS_JOURNAL, AlertsConfig, ChannelKindSettings, ChannelSettings};
pub use audit::{AuditConfig, LEDGER_PREFIX, Suppression};
pub use consumers::{ConsumerConfig, ConsumerKindSettings, DeliverKey};
pub use credentials::{
    AppKind, CredentialConfig, OnAdoptionFailure, OnVerifyFailure, Policy, Schedule,
};
pub use orgs::{AdminConfig, OrgConfig};
pub use service::{DAEMON_LEASE, DaemonConfig, RunConfig};
pub use stores::StoreConfig;

/// The annotated reference configuration that `rekey init` writes: every key with its default and
/// why one would set it. A test loads it, so it is always a valid config.
pub const EXAMPLE: &str = include_str!("rekey.example.toml");

use agent::{RawAgent, validate_agent};
use alerts::{RawAlerts, validate_alerts};
use audit::{RawAudit, validate_audit};
use credentials::{Known, RawCredential, validate_credentials};
use orgs::{RawOrg, validate_orgs};
use service::{RawDaemon, RawRun, validate_daemon, validate_run};

/// A validated configuration.
#[derive(Debug)]
pub struct Config {
    /// Where it was read from (for messages).
    pub path: PathBuf,
    /// Admin connections, by name.
    pub orgs: BTreeMap<String, OrgConfig>,
    /// Secret stores, by name.
    pub stores: BTreeMap<String, StoreConfig>,
    /// Credentials, by name.
    pub credentials: BTreeMap<String, CredentialConfig>,
    /// Where alerts and rotation outcomes are sent; `None` without an `[alerts]` section.
    pub alerts: Option<AlertsConfig>,
    /// `rekey run`'s settings.
    pub run: RunConfig,
    /// `rekey daemon`'s settings.
    pub daemon: DaemonConfig,
    /// `rekey audit`'s thresholds and suppressions.
    pub audit: AuditConfig,
    /// `rekey agent`'s settings; `None` without an `[agent]` section.
    pub agent: Option<AgentConfig>,
}

impl Config {
    /// The org named `name`; a `Config` error naming the orgs there are when there is none.
    pub fn org(&self, name: &str) -> Result<&OrgConfig> {
        self.orgs.get(name).ok_or_else(|| {
            Error::new(ErrorKind::Config, format!("unknown org '{name}'")).with_hint(format!(
                "use a key of [orgs] in {}: {}",
                self.path.display(),
                self.orgs.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// The store `rekey daemon` replicas take their leader lease (`_daemon`) in: `[daemon]
    /// coordination_store`, else the primary store of the first credential (by name), else the
    /// first store (by name); `None` only without stores.
    pub fn coordination_store(&self) -> Option<&str> {
        self.daemon
            .coordination_store
            .as_deref()
            .or_else(|| {
                self.credentials
                    .values()
                    .find_map(|c| c.stores.first())
                    .map(String::as_str)
            })
            .or_else(|| self.stores.keys().next().map(String::as_str))
    }

    /// Where `org`'s governance ledger lives: its journal name (`_org.<ORG>`) and its store —
    /// `[audit] ledger_store`, else the primary store of the org's first credential (by name),
    /// else the first store (by name).
    pub fn ledger(&self, org: &str) -> Result<(String, &str)> {
        self.org(org)?;
        let name = format!("{LEDGER_PREFIX}{org}");
        rekey_api::check_credential_name(&name).map_err(|e| {
            e.context(format!(
                "org '{org}': its name cannot name a ledger in a store"
            ))
        })?;
        let store = self
            .audit
            .ledger_store
            .as_deref()
            .or_else(|| {
                self.credentials
                    .values()
                    .find(|c| c.org == org)
                    .and_then(|c| c.stores.first())
                    .map(String::as_str)
            })
            .or_else(|| self.stores.keys().next().map(String::as_str))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Config,
                    format!("org {org}: there is no store for its governance ledger"),
                )
                .with_hint("declare a [stores.NAME] (or set [audit] ledger_store) so grant revocations and suppressions are journaled")
            })?;
        Ok((name, store))
    }
}

/// The root's own sections as written; `[stores.NAME]` tables are read apart, each by its
/// provider's settings type (see `stores`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    orgs: BTreeMap<String, Spanned<RawOrg>>,
    #[serde(default)]
    credentials: BTreeMap<String, Spanned<RawCredential>>,
    alerts: Option<Spanned<RawAlerts>>,
    run: Option<RawRun>,
    daemon: Option<RawDaemon>,
    audit: Option<RawAudit>,
    agent: Option<Spanned<RawAgent>>,
}

/// Reads and validates `path`.
pub fn load(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::new(ErrorKind::Config, format!("cannot read {}", path.display()))
            .with_source(e)
            .with_hint("pass --config PATH or set REKEY_CONFIG; every key is shown in rekey.example.toml (src/config/ in rekey's repository)")
    })?;
    parse(&text, path)
}

/// Validates config `text` read from `path` (relative paths resolve against its folder). The
/// text is parsed once, keeping every value's position; each section is then validated, and
/// every problem of every section is reported at once with its `file:line:column`.
pub fn parse(text: &str, path: &Path) -> Result<Config> {
    let folder = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut v = Validator::new(path.display().to_string(), text, folder);
    let mut document = match DeTable::parse(text) {
        Ok(document) => document.into_inner(),
        Err(e) => {
            problem(&mut v, &e);
            return v
                .finish()
                .map(|()| unreachable!("a parse error is a problem"));
        }
    };
    let store_tables = document.remove("stores");
    let consumers = consumer_entries(&mut document, &mut v);
    let channels = channel_tables(&mut document, &mut v);
    let document = Spanned::new(0..text.len(), DeValue::Table(document));
    let Some(raw) = tables::read::<RawConfig>(document, &mut v) else {
        return v
            .finish()
            .map(|()| unreachable!("a type error is a problem"));
    };
    let (stores, declared_stores) = stores::validate_stores(store_tables, &mut v);
    let orgs = validate_orgs(&raw.orgs, &mut v);
    let known = Known {
        orgs: raw.orgs.keys().cloned().collect(),
        stores: declared_stores,
        custody: stores
            .iter()
            .filter_map(|(name, store)| Some((name.clone(), store.custody()?)))
            .collect(),
    };
    let credentials = validate_credentials(&raw.credentials, consumers, &known, &mut v);
    let alerts = raw
        .alerts
        .as_ref()
        .map(|a| validate_alerts(a, channels, &known.stores, &mut v));
    let run = validate_run(raw.run.as_ref(), &known.orgs, &mut v);
    let daemon = validate_daemon(raw.daemon.as_ref(), &known.stores, &mut v);
    let audit = validate_audit(raw.audit.as_ref(), &known.orgs, &known.stores, &mut v);
    let agent = raw.agent.as_ref().and_then(|a| {
        let names = raw.credentials.keys().cloned().collect();
        validate_agent(a, &names, &mut v)
    });
    v.finish()?;
    Ok(Config {
        path: path.to_path_buf(),
        orgs,
        stores,
        credentials,
        alerts,
        run,
        daemon,
        audit,
        agent,
    })
}

/// What TOML itself refused, at its position when it has one.
fn problem(v: &mut Validator, e: &toml::de::Error) {
    match e.span() {
        Some(span) => v.problem(span, e.message()),
        None => v.problem_in_file(e.message()),
    }
}

/// Takes every `[[credentials.NAME.consumers]]` list out of the document, by credential, so each
/// entry can be read by its kind's own type (see `consumers`).
fn consumer_entries<'i>(
    document: &mut DeTable<'i>,
    v: &mut Validator,
) -> BTreeMap<String, Vec<Spanned<DeValue<'i>>>> {
    let mut out = BTreeMap::new();
    let Some(credentials) = document.get_mut("credentials") else {
        return out;
    };
    let DeValue::Table(credentials) = credentials.get_mut() else {
        return out;
    };
    for (name, credential) in credentials.iter_mut() {
        let DeValue::Table(credential) = credential.get_mut() else {
            continue;
        };
        let Some(entries) = credential.remove("consumers") else {
            continue;
        };
        let span = entries.span();
        match entries.into_inner() {
            DeValue::Array(list) => {
                out.insert(name.get_ref().to_string(), list.into_iter().collect());
            }
            _ => v.problem(
                span,
                format!(
                    "credentials.{}.consumers must be a list of [[credentials.{0}.consumers]] tables",
                    name.get_ref()
                ),
            ),
        }
    }
    out
}

/// Takes the `[alerts.channels.NAME]` tables out of the document, so each can be read by its
/// kind's own type (see `alerts`).
fn channel_tables<'i>(
    document: &mut DeTable<'i>,
    v: &mut Validator,
) -> Vec<(String, Spanned<DeValue<'i>>)> {
    let Some(alerts) = document.get_mut("alerts") else {
        return Vec::new();
    };
    let DeValue::Table(alerts) = alerts.get_mut() else {
        return Vec::new();
    };
    let Some(channels) = alerts.remove("channels") else {
        return Vec::new();
    };
    let span = channels.span();
    match channels.into_inner() {
        DeValue::Table(channels) => channels
            .into_iter()
            .map(|(name, table)| (name.get_ref().to_string(), table))
            .collect(),
        _ => {
            v.problem(
                span,
                "alerts.channels must be tables: [alerts.channels.NAME]",
            );
            Vec::new()
        }
    }
}
