//! `rekey.toml`: parsed, then validated into types the rest of the program can trust.
//!
//! Every problem names `file:line:column` and says how to fix it; all problems are collected before
//! failing, so one run shows every mistake. Nothing here touches the network or a key.

use rekey_api::{Error, ErrorKind, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

mod alerts;
mod consumers;
mod credentials;
mod orgs;
mod service;
mod stores;
#[cfg(test)]
mod tests;

pub use alerts::{AlertsConfig, ChannelKindSettings, ChannelSettings};
pub use consumers::{ConsumerConfig, ConsumerKindSettings, DeliverKey};
pub use credentials::{
    AppKind, CredentialConfig, OnAdoptionFailure, OnVerifyFailure, Policy, Schedule,
};
pub use orgs::{AdminConfig, OrgConfig};
pub use service::{DaemonConfig, RunConfig};
pub use stores::{StoreConfig, VaultAuthConfig, VaultStoreConfig};

use alerts::{RawAlerts, validate_alerts};
use credentials::{RawCredential, validate_credentials};
use orgs::{RawOrg, validate_orgs};
use service::{RawDaemon, RawRun, validate_daemon};
use stores::{RawStore, validate_stores};

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
}

/// Where a secret setting is read from at run time (never written into the config itself).
#[derive(Debug)]
pub enum SecretSource {
    /// A file's contents.
    File(PathBuf),
    /// An environment variable.
    Env(String),
}

impl SecretSource {
    /// A secret named in the config by `<key>_env` or `<key>_file` (alert channels, webhook
    /// consumers). Errors start with `owner` (`file:line: what it belongs to`) and name the variable
    /// or the file, never the value, with a hint to set the other form in `section`; an empty
    /// variable counts as unset, and a file's trailing newline is not part of the secret.
    pub fn read(
        &self,
        owner: &str,
        what: &str,
        key: &str,
        section: &str,
    ) -> Result<rekey_notify::Secret> {
        let channel = owner;
        match self {
            SecretSource::Env(var) => match std::env::var(var) {
                Ok(value) if !value.is_empty() => Ok(rekey_notify::Secret::new(value)),
                _ => Err(Error::new(
                    ErrorKind::Config,
                    format!("{channel}: the {what} variable {var} is not set"),
                )
                .with_hint(format!(
                    "export {var} with the {what}, or set {key}_file = \"PATH\" in {section} instead"
                ))),
            },
            SecretSource::File(path) => {
                let mut text = std::fs::read_to_string(path).map_err(|e| {
                    Error::new(
                        ErrorKind::Config,
                        format!("{channel}: cannot read the {what} file {}", path.display()),
                    )
                    .with_source(e)
                    .with_hint("check that the file exists and is readable by the user rekey runs as")
                })?;
                // Moved, not copied, into the Secret, so no second plain copy is left behind.
                let len = text
                    .strip_suffix('\n')
                    .map_or(text.len(), |t| t.strip_suffix('\r').unwrap_or(t).len());
                text.truncate(len);
                if text.trim().is_empty() {
                    return Err(Error::new(
                        ErrorKind::Config,
                        format!("{channel}: the {what} file {} is empty", path.display()),
                    )
                    .with_hint(format!("write the {what} into it")));
                }
                Ok(rekey_notify::Secret::new(text))
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    orgs: BTreeMap<String, Spanned<RawOrg>>,
    #[serde(default)]
    stores: BTreeMap<String, Spanned<RawStore>>,
    #[serde(default)]
    credentials: BTreeMap<String, Spanned<RawCredential>>,
    alerts: Option<Spanned<RawAlerts>>,
    run: Option<RawRun>,
    daemon: Option<RawDaemon>,
}

/// Collects problems with their positions while validating.
struct Problems<'a> {
    file: String,
    text: &'a str,
    found: Vec<String>,
}

impl Problems<'_> {
    fn at(&self, span: std::ops::Range<usize>) -> String {
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        format!("{}:{line}:{column}", self.file)
    }

    fn add(&mut self, span: std::ops::Range<usize>, message: impl AsRef<str>) {
        let at = self.at(span);
        self.found.push(format!("{at}: {}", message.as_ref()));
    }
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

/// Validates config `text` read from `path` (relative paths resolve against its folder).
pub fn parse(text: &str, path: &Path) -> Result<Config> {
    let file = path.display().to_string();
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let mut problems = Problems {
            file: file.clone(),
            text,
            found: Vec::new(),
        };
        let message = e.message().to_string();
        match e.span() {
            Some(span) => problems.add(span, &message),
            None => problems.found.push(format!("{file}: {message}")),
        }
        config_error(problems.found)
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut problems = Problems {
        file,
        text,
        found: Vec::new(),
    };
    let orgs = validate_orgs(&raw, &base, &mut problems);
    let stores = validate_stores(&raw, &base, &mut problems);
    let credentials = validate_credentials(&raw, &base, &mut problems);
    let alerts = raw
        .alerts
        .as_ref()
        .map(|a| validate_alerts(a, &base, &mut problems));
    let run = RunConfig {
        concurrency: raw.run.as_ref().map_or(4, |r| {
            positive(&r.concurrency, 4, 1..=64, "run.concurrency", &mut problems)
        }) as usize,
    };
    let daemon = validate_daemon(raw.daemon.as_ref(), &mut problems);
    if !problems.found.is_empty() {
        return Err(config_error(problems.found));
    }
    Ok(Config {
        path: path.to_path_buf(),
        orgs,
        stores,
        credentials,
        alerts,
        run,
        daemon,
    })
}

fn config_error(found: Vec<String>) -> Error {
    Error::new(ErrorKind::Config, found.join("\n"))
        .with_hint("fix the lines above; rekey.example.toml (src/config/ in rekey's repository) shows every key")
}

fn text(value: &Option<Spanned<String>>) -> Option<String> {
    value.as_ref().map(|v| v.get_ref().clone())
}

fn positive(
    value: &Option<Spanned<i64>>,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
    field: &str,
    p: &mut Problems,
) -> i64 {
    match value {
        Some(v) if !range.contains(v.get_ref()) => {
            p.add(
                v.span(),
                format!(
                    "{field} = {} is out of range; use {}..={}",
                    v.get_ref(),
                    range.start(),
                    range.end()
                ),
            );
            default
        }
        Some(v) => *v.get_ref(),
        None => default,
    }
}

fn check_url(url: &Spanned<String>, field: &str, p: &mut Problems) {
    let text = url.get_ref();
    let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|prefix| {
            text.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
        });
    if !(text.starts_with("https://") || loopback) {
        p.add(url.span(), format!("{field} '{text}' must be an https:// URL (plain http is allowed only for 127.0.0.1/localhost)"));
    }
}

fn names<T>(map: &BTreeMap<String, T>) -> String {
    if map.is_empty() {
        "none".to_string()
    } else {
        map.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}
