//! Alerts: findings and rotation outcomes sent to the `[alerts]` channels, de-duplicated.
//!
//! A state file remembers, per channel, which finding of which credential was sent at which
//! severity and when, and which channel was told about a failed rotation. With it a finding is
//! sent once, again when it gets worse or when `renotify` has passed, and resolved once it clears;
//! a channel that failed is tried again on the next run because nothing is recorded for it.
//!
//! Deciding what to send is a pure function of the state, the findings, the channels and the time
//! ([`plan_findings`], [`plan_rotation`]); only [`Notifier`] touches the network and the file.

use crate::check::{Finding, Observation, Severity};
use crate::config::{ChannelKindSettings, ChannelSettings, Config, Level, SecretSource};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use rekey_api::{Error, ErrorKind, Result, SecretString};
use rekey_notify::{Channel, ChannelConfig, Message, Outcome};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The state file's format; another number is treated like an unreadable file.
const STATE_VERSION: u32 = 1;
/// PagerDuty's limit for a dedup key.
const DEDUP_KEY_MAX: usize = 255;
/// How long to wait for another rekey (a cron `run`, a `check`) to finish with the state file.
/// Its sends take at most about a minute (4 attempts of 10 s each, plus waits).
const LOCK_WAIT: Duration = Duration::from_secs(180);
/// How often a held lock is tried again.
const LOCK_POLL: Duration = Duration::from_millis(50);

/// The configured channels plus the de-duplication state file.
pub struct Notifier {
    channels: Vec<Configured>,
    state_file: PathBuf,
    renotify: Duration,
}

/// One channel, ready to send.
struct Configured {
    /// Its name in `rekey.toml`; the key of its records in the state file.
    name: String,
    min_level: Level,
    channel: Channel,
}

/// One credential as `check` saw it in this run.
pub struct Observed<'a> {
    /// What its sources held (decides whether a cleared finding may be resolved).
    pub observation: &'a Observation,
    /// Its findings now; an earlier finding missing here has cleared.
    pub findings: &'a [Finding],
}

/// How a rotation ended, for the channels.
#[derive(Clone, Debug)]
pub struct RotationNews {
    /// The credential name.
    pub credential: String,
    /// Its app.
    pub app: String,
    /// Its org.
    pub org: String,
    /// How it ended.
    pub outcome: Outcome,
    /// One line, without the credential name.
    pub summary: String,
    /// The rotation's id, when one was assigned.
    pub rotation_id: Option<String>,
}

/// One message to one channel, and how it went. Serialize for --json.
#[derive(Clone, Debug, Serialize)]
pub struct Delivery {
    /// The channel's name in `rekey.toml`.
    pub channel: String,
    /// The credential the message is about.
    pub credential: String,
    /// `alert expiry/app (critical)`, `re-alert expiry/app (warning)`, `resolve expiry/app`,
    /// `rotation succeeded`, …
    pub what: String,
    /// Why it was not delivered; `None` = delivered.
    pub error: Option<String>,
}

impl Notifier {
    /// None when the config has no [alerts] section or no channels. Reads every channel's secret
    /// now (env var or file); an error names the channel, its config origin (file:line) and the
    /// variable or file — never the secret — and hints how to fix it. Builds rekey_notify::Channel
    /// for each (which refuses non-https except loopback).
    pub fn from_config(config: &Config) -> Result<Option<Notifier>> {
        let Some(alerts) = config.alerts.as_ref().filter(|a| !a.channels.is_empty()) else {
            return Ok(None);
        };
        let channels = alerts
            .channels
            .iter()
            .map(|s| {
                Ok(Configured {
                    name: s.name.clone(),
                    min_level: s.min_level,
                    channel: build_channel(s)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(Notifier {
            channels,
            state_file: alerts.state_file.clone(),
            renotify: alerts.renotify,
        }))
    }

    /// Alerts for the credentials observed in this run, de-duplicated against the state file.
    pub async fn findings(
        &self,
        observed: &[Observed<'_>],
        now: DateTime<Utc>,
    ) -> Result<Vec<Delivery>> {
        let channels = self.specs();
        self.deliver(|state| plan_findings(state, observed, &channels, now, self.renotify))
            .await
    }

    /// A rotation's outcome.
    pub async fn rotation(&self, news: &RotationNews, now: DateTime<Utc>) -> Result<Vec<Delivery>> {
        let channels = self.specs();
        self.deliver(|state| plan_rotation(state, news, &channels, now))
            .await
    }

    fn specs(&self) -> Vec<(&str, Level)> {
        self.channels
            .iter()
            .map(|c| (c.name.as_str(), c.min_level))
            .collect()
    }

    /// Under the state file's lock: plans with the recorded state, sends everything at once, and
    /// records what was delivered.
    async fn deliver(
        &self,
        plan: impl FnOnce(&mut State) -> Vec<Planned>,
    ) -> Result<Vec<Delivery>> {
        let _lock = lock(&self.state_file).await?;
        let mut state = load(&self.state_file)?;
        let planned = plan(&mut state);
        let results = futures_util::future::join_all(
            planned
                .iter()
                .map(|p| self.channels[p.channel].channel.send(&p.message)),
        )
        .await;
        let mut deliveries = Vec::with_capacity(planned.len());
        for (p, result) in planned.into_iter().zip(results) {
            let error = match result {
                Ok(()) => {
                    apply(&mut state, p.on_success);
                    None
                }
                Err(e) => Some(match e.hint() {
                    Some(hint) => format!("{e}; {hint}"),
                    None => e.to_string(),
                }),
            };
            deliveries.push(Delivery {
                channel: self.channels[p.channel].name.clone(),
                credential: p.credential,
                what: p.what,
                error,
            });
        }
        save(&self.state_file, &state)?;
        Ok(deliveries)
    }
}

/// A channel from its settings, with its secret read from the environment or a file.
fn build_channel(s: &ChannelSettings) -> Result<Channel> {
    let name = s.name.clone();
    let config = match &s.kind {
        ChannelKindSettings::Slack { webhook_url } => ChannelConfig::Slack {
            name,
            webhook_url: read_secret(s, webhook_url, "Slack webhook URL", "webhook_url")?,
        },
        ChannelKindSettings::PagerDuty {
            routing_key,
            events_url,
        } => ChannelConfig::PagerDuty {
            name,
            routing_key: read_secret(s, routing_key, "PagerDuty routing key", "routing_key")?,
            events_url: events_url.clone(),
        },
        ChannelKindSettings::Webhook { url, secret } => ChannelConfig::Webhook {
            name,
            url: url.clone(),
            secret: read_secret(s, secret, "webhook signing secret", "secret")?,
        },
    };
    Channel::new(config).map_err(|e| e.context(&s.origin))
}

/// A channel's secret (see [`read_secret_from`]).
fn read_secret(
    s: &ChannelSettings,
    source: &SecretSource,
    what: &str,
    key: &str,
) -> Result<SecretString> {
    read_secret_from(
        source,
        &format!("{}: alerts channel '{}'", s.origin, s.name),
        what,
        key,
        &format!("[alerts.channels.{}]", s.name),
    )
}

/// A secret named in the config by `<key>_env` or `<key>_file` (alert channels, webhook
/// consumers). Errors start with `owner` (`file:line: what it belongs to`) and name the variable
/// or the file, never the value, with a hint to set the other form in `section`; an empty
/// variable counts as unset, and a file's trailing newline is not part of the secret.
pub(crate) fn read_secret_from(
    source: &SecretSource,
    owner: &str,
    what: &str,
    key: &str,
    section: &str,
) -> Result<SecretString> {
    let channel = owner;
    match source {
        SecretSource::Env(var) => match std::env::var(var) {
            Ok(value) if !value.is_empty() => Ok(SecretString::new(value)),
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
            // Moved, not copied, into the SecretString, so no second plain copy is left behind.
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
            Ok(SecretString::new(text))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The state file.

/// What was sent where. `channels` → name → records; keyed by name so that a renamed or removed
/// channel's records can be dropped.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct State {
    version: u32,
    #[serde(default)]
    channels: BTreeMap<String, ChannelState>,
}

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct ChannelState {
    /// credential → finding id → the open alert.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    alerts: BTreeMap<String, BTreeMap<String, AlertRecord>>,
    /// credential → the failed or rolled-back rotation this channel was told about and not yet
    /// told the end of.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    rotations: BTreeMap<String, RotationRecord>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct AlertRecord {
    /// The key it was sent under, so the resolve closes that one even if the org was renamed.
    dedup_key: String,
    /// The severity last seen (sent, or lowered since without sending).
    severity: AlertSeverity,
    /// When it was last sent.
    sent_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct RotationRecord {
    outcome: Unfinished,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rotation_id: Option<String>,
    sent_at: DateTime<Utc>,
}

/// A finding's severity in the order that decides a re-send (`check::Severity` without `Ok`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum AlertSeverity {
    Unknown,
    Warning,
    Critical,
}

impl AlertSeverity {
    /// `None` for `Ok`, which is no finding at all.
    fn of(severity: Severity) -> Option<AlertSeverity> {
        match severity {
            Severity::Ok => None,
            Severity::Unknown => Some(AlertSeverity::Unknown),
            Severity::Warning => Some(AlertSeverity::Warning),
            Severity::Critical => Some(AlertSeverity::Critical),
        }
    }

    /// What a channel's `min_severity` is compared with.
    fn level(self) -> Level {
        match self {
            AlertSeverity::Unknown | AlertSeverity::Warning => Level::Warning,
            AlertSeverity::Critical => Level::Critical,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            AlertSeverity::Unknown => "unknown",
            AlertSeverity::Warning => "warning",
            AlertSeverity::Critical => "critical",
        }
    }

    fn notify(self) -> rekey_notify::Severity {
        match self {
            AlertSeverity::Unknown => rekey_notify::Severity::Unknown,
            AlertSeverity::Warning => rekey_notify::Severity::Warning,
            AlertSeverity::Critical => rekey_notify::Severity::Critical,
        }
    }
}

/// A rotation outcome that leaves an incident open until a later success.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Unfinished {
    Failed,
    RolledBack,
    Unadopted,
}

fn state_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::new(
        ErrorKind::Config,
        format!("cannot {what} the alert state file {}", path.display()),
    )
    .with_source(e)
    .with_hint(
        "check that [alerts] state_file is in a directory rekey can write (rekey creates the directory if it can)",
    )
}

/// `<state_file>.lock`, locked exclusively; the lock is released when the file is dropped.
async fn lock(state_file: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = parent(state_file) {
        std::fs::create_dir_all(dir)
            .map_err(|e| state_error("create the directory of", state_file, e))?;
    }
    let mut name = state_file.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| state_error("open the lock of", state_file, e))?;
    let deadline = tokio::time::Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(LOCK_POLL).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::new(
                    ErrorKind::Busy,
                    format!(
                        "another rekey has held {} for {} s",
                        path.display(),
                        LOCK_WAIT.as_secs()
                    ),
                )
                .with_hint(
                    "a `rekey run` or `rekey check` is sending alerts; try again when it is done",
                )
                .temporary());
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(state_error("lock", &path, e));
            }
        }
    }
}

/// The directory of `path`, when it names one.
fn parent(path: &Path) -> Option<&Path> {
    path.parent().filter(|d| !d.as_os_str().is_empty())
}

/// The recorded state: empty when there is no file yet, or (with a warning) when the file cannot
/// be understood — sending again is the safe side.
fn load(path: &Path) -> Result<State> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(empty()),
        Err(e) => return Err(state_error("read", path, e)),
    };
    match serde_json::from_slice::<State>(&bytes) {
        Ok(state) if state.version == STATE_VERSION => Ok(state),
        Ok(state) => {
            tracing::warn!(
                file = %path.display(),
                version = state.version,
                "the alert state file has an unknown version; starting afresh (open alerts are sent again)"
            );
            Ok(empty())
        }
        Err(e) => {
            tracing::warn!(
                file = %path.display(),
                error = %e,
                "the alert state file cannot be parsed; starting afresh (open alerts are sent again)"
            );
            Ok(empty())
        }
    }
}

fn empty() -> State {
    State {
        version: STATE_VERSION,
        channels: BTreeMap::new(),
    }
}

/// Replaces the state file atomically: a reader sees the old file or the new one, and a crash
/// leaves one of them.
fn save(path: &Path, state: &State) -> Result<()> {
    let mut text = serde_json::to_vec_pretty(state).expect("the state always serializes");
    text.push(b'\n');
    crate::atomic_file::write(path, &text, 0o600).map_err(|e| state_error("write", path, e))
}

// ---------------------------------------------------------------------------------------------
// Deciding what to send.

/// A message to send to one channel, and what to record if it is delivered.
#[derive(Debug)]
struct Planned {
    /// Index into the channels the plan was made for.
    channel: usize,
    credential: String,
    what: String,
    message: Message,
    on_success: Change,
}

/// One change to the state.
#[derive(Debug, PartialEq)]
enum Change {
    SetAlert {
        channel: String,
        credential: String,
        finding: String,
        record: AlertRecord,
    },
    RemoveAlert {
        channel: String,
        credential: String,
        finding: String,
    },
    OpenRotation {
        channel: String,
        credential: String,
        record: RotationRecord,
    },
    CloseRotation {
        channel: String,
        credential: String,
    },
}

fn apply(state: &mut State, change: Change) {
    match change {
        Change::SetAlert {
            channel,
            credential,
            finding,
            record,
        } => {
            state
                .channels
                .entry(channel)
                .or_default()
                .alerts
                .entry(credential)
                .or_default()
                .insert(finding, record);
        }
        Change::RemoveAlert {
            channel,
            credential,
            finding,
        } => {
            if let Some(c) = state.channels.get_mut(&channel) {
                if let Some(records) = c.alerts.get_mut(&credential) {
                    records.remove(&finding);
                    if records.is_empty() {
                        c.alerts.remove(&credential);
                    }
                }
                if c.alerts.is_empty() && c.rotations.is_empty() {
                    state.channels.remove(&channel);
                }
            }
        }
        Change::OpenRotation {
            channel,
            credential,
            record,
        } => {
            state
                .channels
                .entry(channel)
                .or_default()
                .rotations
                .insert(credential, record);
        }
        Change::CloseRotation {
            channel,
            credential,
        } => {
            if let Some(c) = state.channels.get_mut(&channel) {
                c.rotations.remove(&credential);
                if c.alerts.is_empty() && c.rotations.is_empty() {
                    state.channels.remove(&channel);
                }
            }
        }
    }
}

/// Drops the records of channels that are no longer configured.
fn prune(state: &mut State, channels: &[(&str, Level)]) {
    state
        .channels
        .retain(|name, _| channels.iter().any(|(c, _)| c == name));
}

/// `rekey/<org>/<credential>/<finding id>`; stable from run to run. A key longer than PagerDuty
/// allows keeps its start and ends with a digest of the whole, so it stays stable and distinct.
fn dedup_key(org: &str, credential: &str, finding: &str) -> String {
    let key = format!("rekey/{org}/{credential}/{finding}");
    if key.chars().count() <= DEDUP_KEY_MAX {
        return key;
    }
    use sha2::Digest as _;
    let digest = hex::encode(sha2::Sha256::digest(key.as_bytes()));
    let keep: String = key.chars().take(DEDUP_KEY_MAX - digest.len() - 1).collect();
    format!("{keep}~{digest}")
}

/// Whether everything `finding` is computed from could be read in `o`. A finding that is gone
/// while one of its sources is unreadable may only be hidden, so it must not be resolved.
fn inputs_readable(o: &Observation, finding: &str) -> bool {
    let source_ok = |name: &str| {
        // A source no longer configured can never bring the finding back: it is cleared.
        o.sources
            .iter()
            .find(|s| s.name == name)
            .is_none_or(|s| s.read.is_ok())
    };
    // The journal lives in the primary store: when that could not even be opened, `check`
    // reports no journal error, but no journal was read either.
    let journal_ok = || {
        o.journal_error.is_none()
            && o.sources
                .iter()
                .find(|s| !s.is_app)
                .is_none_or(|s| s.read.is_ok())
    };
    match finding.split_once('/') {
        Some((_, "journal")) => journal_ok(),
        Some(("drift", store)) => source_ok(store) && source_ok("app"),
        Some((_, source)) => source_ok(source),
        None if finding == "open-rotation" => journal_ok(),
        None => true,
    }
}

/// The facts an alert carries besides its summary: never key material.
fn details(
    o: &Observation,
    f: &Finding,
    severity: AlertSeverity,
    now: DateTime<Utc>,
) -> BTreeMap<String, String> {
    let mut details = BTreeMap::new();
    details.insert("finding".to_string(), f.id.clone());
    details.insert("severity".to_string(), severity.as_str().to_string());
    let held = |name: &str| {
        o.sources
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.read.as_ref().ok())
            .and_then(Option::as_ref)
    };
    if let Some((_, source)) = f.id.split_once('/')
        && o.sources.iter().any(|s| s.name == source)
    {
        details.insert("source".to_string(), source.to_string());
        if let Some(h) = held(source) {
            details.insert("fingerprint".to_string(), h.fingerprint.to_string());
            details.insert(
                "not_after".to_string(),
                h.not_after.to_rfc3339_opts(SecondsFormat::Secs, true),
            );
            details.insert(
                "days_left".to_string(),
                (h.not_after - now).num_days().to_string(),
            );
        }
        if f.id.starts_with("drift/")
            && let Some(app) = held("app")
        {
            details.insert("app_fingerprint".to_string(), app.fingerprint.to_string());
        }
    }
    if f.id == "open-rotation"
        && let Some((id, started)) = &o.open_rotation
    {
        details.insert("rotation_id".to_string(), id.to_string());
        details.insert(
            "rotation_started_at".to_string(),
            started.to_rfc3339_opts(SecondsFormat::Secs, true),
        );
    }
    details
}

/// What to send for `observed` to `channels` (names and `min_severity`), given what `state`
/// records; `state` is updated at once for what needs no delivery (a lowered severity, removed
/// channels), and each [`Planned::on_success`] is for the caller to apply once delivered.
fn plan_findings(
    state: &mut State,
    observed: &[Observed<'_>],
    channels: &[(&str, Level)],
    now: DateTime<Utc>,
    renotify: Duration,
) -> Vec<Planned> {
    prune(state, channels);
    let renotify = TimeDelta::from_std(renotify).unwrap_or(TimeDelta::MAX);
    let mut planned = Vec::new();
    let mut lowered = Vec::new();
    for Observed {
        observation: o,
        findings,
    } in observed
    {
        let mut active: Vec<(&Finding, AlertSeverity)> = Vec::new();
        for f in findings.iter() {
            if let Some(severity) = AlertSeverity::of(f.severity)
                && !active.iter().any(|(a, _)| a.id == f.id)
            {
                active.push((f, severity));
            }
        }
        let none = BTreeMap::new();
        for (index, &(channel, min_level)) in channels.iter().enumerate() {
            let records = state
                .channels
                .get(channel)
                .and_then(|c| c.alerts.get(&o.credential))
                .unwrap_or(&none);
            for &(f, severity) in &active {
                let record = records.get(&f.id);
                if let Some(r) = record
                    && severity < r.severity
                {
                    // Still open, only less bad: not worth a message, but remembered so that
                    // getting worse again is.
                    lowered.push(Change::SetAlert {
                        channel: channel.to_string(),
                        credential: o.credential.clone(),
                        finding: f.id.clone(),
                        record: AlertRecord {
                            severity,
                            ..r.clone()
                        },
                    });
                    continue;
                }
                if severity.level() < min_level {
                    continue;
                }
                let (verb, key) = match record {
                    None => ("alert", dedup_key(&o.org, &o.credential, &f.id)),
                    // A clock that went backwards (sent "in the future") re-sends: the safe side.
                    Some(r)
                        if severity > r.severity
                            || r.sent_at > now
                            || now - r.sent_at >= renotify =>
                    {
                        ("re-alert", r.dedup_key.clone())
                    }
                    Some(_) => continue,
                };
                planned.push(Planned {
                    channel: index,
                    credential: o.credential.clone(),
                    what: format!("{verb} {} ({})", f.id, severity.as_str()),
                    message: Message::Alert {
                        dedup_key: key.clone(),
                        severity: severity.notify(),
                        credential: o.credential.clone(),
                        app: o.app.clone(),
                        org: o.org.clone(),
                        summary: f.message.clone(),
                        details: details(o, f, severity, now),
                    },
                    on_success: Change::SetAlert {
                        channel: channel.to_string(),
                        credential: o.credential.clone(),
                        finding: f.id.clone(),
                        record: AlertRecord {
                            dedup_key: key,
                            severity,
                            sent_at: now,
                        },
                    },
                });
            }
            for (id, record) in records {
                if active.iter().any(|(f, _)| &f.id == id) || !inputs_readable(o, id) {
                    continue;
                }
                planned.push(Planned {
                    channel: index,
                    credential: o.credential.clone(),
                    what: format!("resolve {id}"),
                    message: Message::Resolve {
                        dedup_key: record.dedup_key.clone(),
                        credential: o.credential.clone(),
                        app: o.app.clone(),
                        org: o.org.clone(),
                        summary: format!("{id} no longer applies"),
                    },
                    on_success: Change::RemoveAlert {
                        channel: channel.to_string(),
                        credential: o.credential.clone(),
                        finding: id.clone(),
                    },
                });
            }
        }
    }
    for change in lowered {
        apply(state, change);
    }
    planned
}

/// What to send for a rotation's outcome: to each channel that wants its level, and a success
/// also to each channel still holding a failure of the credential (so that incident closes).
fn plan_rotation(
    state: &mut State,
    news: &RotationNews,
    channels: &[(&str, Level)],
    now: DateTime<Utc>,
) -> Vec<Planned> {
    prune(state, channels);
    let (level, unfinished) = match news.outcome {
        Outcome::Succeeded => (Level::Info, None),
        Outcome::RolledBack => (Level::Warning, Some(Unfinished::RolledBack)),
        Outcome::Unadopted => (Level::Warning, Some(Unfinished::Unadopted)),
        Outcome::Failed => (Level::Critical, Some(Unfinished::Failed)),
    };
    let message = Message::Rotation {
        credential: news.credential.clone(),
        app: news.app.clone(),
        org: news.org.clone(),
        outcome: news.outcome,
        summary: news.summary.clone(),
        rotation_id: news.rotation_id.clone(),
    };
    let mut planned = Vec::new();
    for (index, &(channel, min_level)) in channels.iter().enumerate() {
        let open = state
            .channels
            .get(channel)
            .is_some_and(|c| c.rotations.contains_key(&news.credential));
        if !(min_level <= level || (open && unfinished.is_none())) {
            continue;
        }
        let on_success = match unfinished {
            Some(outcome) => Change::OpenRotation {
                channel: channel.to_string(),
                credential: news.credential.clone(),
                record: RotationRecord {
                    outcome,
                    rotation_id: news.rotation_id.clone(),
                    sent_at: now,
                },
            },
            None => Change::CloseRotation {
                channel: channel.to_string(),
                credential: news.credential.clone(),
            },
        };
        planned.push(Planned {
            channel: index,
            credential: news.credential.clone(),
            what: format!("rotation {}", news.outcome.as_str().replace('_', " ")),
            message: message.clone(),
            on_success,
        });
    }
    planned
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Held;
    use crate::check::fixtures::{self, source};
    use rekey_api::{Fingerprint, RotationId};

    const RENOTIFY: Duration = Duration::from_secs(24 * 3600);
    /// A chatty channel and a critical-only one.
    const CHANNELS: &[(&str, Level)] = &[("ops", Level::Info), ("pager", Level::Critical)];

    /// `hours` hours after the fixtures' `at(0)` (2027-01-15T08:00:00Z).
    fn at(hours: i64) -> DateTime<Utc> {
        fixtures::at(0) + TimeDelta::hours(hours)
    }

    /// The certificate with fingerprint `fp`, its key written long ago.
    fn held(fp: &[u8], not_after: DateTime<Utc>) -> Option<Held> {
        fixtures::held(fp, not_after, Some(at(-1000)))
    }

    /// `credential` with the app and `store:local` holding the same certificate, 10 days left.
    fn observation(credential: &str) -> Observation {
        fixtures::observation(
            credential,
            vec![
                source("app", Ok(held(b"a", at(240)))),
                source("store:local", Ok(held(b"a", at(240)))),
            ],
        )
    }

    fn finding(id: &str, severity: Severity) -> Finding {
        Finding {
            id: id.into(),
            severity,
            message: format!("{id} is {severity:?}"),
        }
    }

    /// `o` with its `findings`, as the only credential observed.
    fn observed<'a>(o: &'a Observation, findings: &'a [Finding]) -> [Observed<'a>; 1] {
        [Observed {
            observation: o,
            findings,
        }]
    }

    /// One run: plans, delivers to every channel except `failing`, records what was delivered;
    /// returns `channel: what` for every planned message.
    fn run_with(
        state: &mut State,
        o: &Observation,
        findings: &[Finding],
        now: DateTime<Utc>,
        failing: &[&str],
    ) -> Vec<String> {
        let planned = plan_findings(state, &observed(o, findings), CHANNELS, now, RENOTIFY);
        deliver(state, planned, CHANNELS, failing)
    }

    fn run(
        state: &mut State,
        o: &Observation,
        findings: &[Finding],
        now: DateTime<Utc>,
    ) -> Vec<String> {
        run_with(state, o, findings, now, &[])
    }

    fn deliver(
        state: &mut State,
        planned: Vec<Planned>,
        channels: &[(&str, Level)],
        failing: &[&str],
    ) -> Vec<String> {
        let mut sent = Vec::new();
        for p in planned {
            let name = channels[p.channel].0;
            sent.push(format!("{name}: {}", p.what));
            if !failing.contains(&name) {
                apply(state, p.on_success);
            }
        }
        sent
    }

    fn record<'s>(
        state: &'s State,
        channel: &str,
        credential: &str,
        id: &str,
    ) -> Option<&'s AlertRecord> {
        state.channels.get(channel)?.alerts.get(credential)?.get(id)
    }

    #[test]
    fn a_finding_is_sent_once_then_again_only_after_renotify() {
        let mut state = empty();
        let o = observation("billing");
        let findings = [finding("expiry/app", Severity::Warning)];
        let planned = plan_findings(
            &mut state,
            &observed(&o, &findings),
            CHANNELS,
            at(0),
            RENOTIFY,
        );
        assert_eq!(planned.len(), 1, "{planned:?}");
        let Message::Alert {
            dedup_key,
            severity,
            credential,
            app,
            org,
            summary,
            details,
        } = &planned[0].message
        else {
            panic!("expected an alert: {:?}", planned[0].message)
        };
        assert_eq!(dedup_key, "rekey/acme/billing/expiry/app");
        assert_eq!(*severity, rekey_notify::Severity::Warning);
        assert_eq!(
            (credential.as_str(), app.as_str(), org.as_str()),
            ("billing", "Billing_Sync", "acme")
        );
        assert_eq!(summary, "expiry/app is Warning");
        let expected: BTreeMap<String, String> = [
            ("finding", "expiry/app".to_string()),
            ("severity", "warning".to_string()),
            ("source", "app".to_string()),
            ("fingerprint", Fingerprint::of(b"a").to_string()),
            ("not_after", "2027-01-25T08:00:00Z".to_string()),
            ("days_left", "10".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(details, &expected);
        assert_eq!(at(240).to_rfc3339(), "2027-01-25T08:00:00+00:00");
        assert_eq!(
            deliver(&mut state, planned, CHANNELS, &[]),
            ["ops: alert expiry/app (warning)"]
        );

        assert!(run(&mut state, &o, &findings, at(1)).is_empty());
        assert!(run(&mut state, &o, &findings, at(23)).is_empty());
        assert_eq!(
            run(&mut state, &o, &findings, at(24)),
            ["ops: re-alert expiry/app (warning)"]
        );
        assert_eq!(
            record(&state, "ops", "billing", "expiry/app")
                .unwrap()
                .sent_at,
            at(24)
        );
        assert!(run(&mut state, &o, &findings, at(47)).is_empty());
        // A missed day never skips one: two days late is one re-alert, at once.
        assert_eq!(
            run(&mut state, &o, &findings, at(100)),
            ["ops: re-alert expiry/app (warning)"]
        );
    }

    #[test]
    fn a_rise_is_sent_at_once_and_a_fall_then_a_rise_again() {
        let mut state = empty();
        let o = observation("billing");
        let warning = [finding("expiry/app", Severity::Warning)];
        let critical = [finding("expiry/app", Severity::Critical)];
        assert_eq!(
            run(&mut state, &o, &warning, at(0)),
            ["ops: alert expiry/app (warning)"]
        );
        assert_eq!(
            run(&mut state, &o, &critical, at(1)),
            [
                "ops: re-alert expiry/app (critical)",
                "pager: alert expiry/app (critical)"
            ]
        );
        assert!(run(&mut state, &o, &critical, at(2)).is_empty());
        // Less bad: nothing sent, nothing resolved, but the lower severity is remembered.
        assert!(run(&mut state, &o, &warning, at(3)).is_empty());
        for channel in ["ops", "pager"] {
            let r = record(&state, channel, "billing", "expiry/app").unwrap();
            assert_eq!((r.severity, r.sent_at), (AlertSeverity::Warning, at(1)));
        }
        assert_eq!(
            run(&mut state, &o, &critical, at(4)),
            [
                "ops: re-alert expiry/app (critical)",
                "pager: re-alert expiry/app (critical)"
            ]
        );
        // Unknown < warning: an unreadable source that turns into a warning is a rise.
        let unknown = [finding("unreadable/app", Severity::Unknown)];
        let mut state = empty();
        assert_eq!(
            run(&mut state, &o, &unknown, at(0)),
            ["ops: alert unreadable/app (unknown)"]
        );
        assert_eq!(
            run(
                &mut state,
                &o,
                &[finding("unreadable/app", Severity::Warning)],
                at(1)
            ),
            ["ops: re-alert unreadable/app (warning)"]
        );
    }

    #[test]
    fn a_cleared_finding_is_resolved_once_under_its_dedup_key() {
        let mut state = empty();
        let o = observation("billing");
        let findings = [
            finding("expiry/app", Severity::Critical),
            finding("key-age/store:local", Severity::Warning),
        ];
        assert_eq!(
            run(&mut state, &o, &findings, at(0)),
            [
                "ops: alert expiry/app (critical)",
                "ops: alert key-age/store:local (warning)",
                "pager: alert expiry/app (critical)"
            ]
        );
        let planned = plan_findings(
            &mut state,
            &observed(&o, &findings[1..]),
            CHANNELS,
            at(1),
            RENOTIFY,
        );
        let messages: Vec<&Message> = planned.iter().map(|p| &p.message).collect();
        assert_eq!(messages.len(), 2);
        for m in messages {
            assert!(
                matches!(m, Message::Resolve { dedup_key, summary, .. }
                    if dedup_key == "rekey/acme/billing/expiry/app" && summary == "expiry/app no longer applies"),
                "{m:?}"
            );
        }
        assert_eq!(
            deliver(&mut state, planned, CHANNELS, &[]),
            ["ops: resolve expiry/app", "pager: resolve expiry/app"]
        );
        assert!(record(&state, "ops", "billing", "expiry/app").is_none());
        assert!(!state.channels.contains_key("pager"), "{state:?}");
        assert!(run(&mut state, &o, &findings[1..], at(2)).is_empty());
        assert_eq!(
            run(&mut state, &o, &[], at(3)),
            ["ops: resolve key-age/store:local"]
        );
        assert_eq!(state, empty());
    }

    #[test]
    fn nothing_is_resolved_while_what_it_depends_on_cannot_be_read() {
        let mut state = empty();
        let mut o = observation("billing");
        let open = [
            finding("expiry/store:local", Severity::Warning),
            finding("drift/store:local", Severity::Critical),
            finding("open-rotation", Severity::Warning),
        ];
        assert_eq!(run(&mut state, &o, &open, at(0)).len(), 4);

        // The store is down: its expiry and drift are unknown, the new finding says so.
        o.sources[1].read = Err("vault: HTTP 503".into());
        let unreadable = [
            finding("unreadable/store:local", Severity::Unknown),
            finding("open-rotation", Severity::Warning),
        ];
        assert_eq!(
            run(&mut state, &o, &unreadable, at(1)),
            ["ops: alert unreadable/store:local (unknown)"]
        );
        assert!(record(&state, "ops", "billing", "expiry/store:local").is_some());

        // The app is down: drift depends on it too.
        o.sources[1].read = Ok(held(b"a", at(240)));
        o.sources[0].read = Err("org acme: HTTP 503".into());
        let app_down = [
            finding("unreadable/app", Severity::Unknown),
            finding("expiry/store:local", Severity::Warning),
            finding("open-rotation", Severity::Warning),
        ];
        assert_eq!(
            run(&mut state, &o, &app_down, at(2)),
            [
                "ops: alert unreadable/app (unknown)",
                "ops: resolve unreadable/store:local"
            ]
        );
        assert!(record(&state, "pager", "billing", "drift/store:local").is_some());

        // The journal cannot be read: the open rotation is unknown, not closed.
        o.sources[0].read = Ok(held(b"a", at(240)));
        o.journal_error = Some("vault: HTTP 503".into());
        let journal_down = [
            finding("expiry/store:local", Severity::Warning),
            finding("unreadable/journal", Severity::Unknown),
        ];
        assert_eq!(
            run(&mut state, &o, &journal_down, at(3)),
            [
                "ops: alert unreadable/journal (unknown)",
                "ops: resolve drift/store:local",
                "ops: resolve unreadable/app",
                "pager: resolve drift/store:local"
            ]
        );
        assert!(record(&state, "ops", "billing", "open-rotation").is_some());

        // Everything readable and fine: everything left resolves.
        o.journal_error = None;
        assert_eq!(
            run(&mut state, &o, &[], at(4)),
            [
                "ops: resolve expiry/store:local",
                "ops: resolve open-rotation",
                "ops: resolve unreadable/journal"
            ]
        );
        assert_eq!(state, empty());
    }

    #[test]
    fn a_primary_store_that_cannot_be_opened_hides_the_journal_too() {
        let mut state = empty();
        let mut o = observation("billing");
        let open = [finding("open-rotation", Severity::Warning)];
        run(&mut state, &o, &open, at(0));
        // `check` reports no journal error when the stores cannot even be opened.
        o.sources[1].read = Err("VAULT_ADDR is not set".into());
        assert_eq!(
            run(
                &mut state,
                &o,
                &[finding("unreadable/store:local", Severity::Unknown)],
                at(1)
            ),
            ["ops: alert unreadable/store:local (unknown)"]
        );
        assert!(record(&state, "ops", "billing", "open-rotation").is_some());
    }

    #[test]
    fn credentials_not_observed_are_left_alone_and_removed_channels_dropped() {
        let mut state = empty();
        let payroll = observation("payroll");
        let findings = [finding("expiry/app", Severity::Critical)];
        run(&mut state, &payroll, &findings, at(0));
        let billing = observation("billing");
        assert!(run(&mut state, &billing, &[], at(1)).is_empty());
        assert!(record(&state, "ops", "payroll", "expiry/app").is_some());
        assert!(record(&state, "pager", "payroll", "expiry/app").is_some());

        // `pager` was removed from the config: its records go, `ops` keeps its own.
        let planned = plan_findings(&mut state, &[], &[("ops", Level::Info)], at(2), RENOTIFY);
        assert!(planned.is_empty());
        assert_eq!(state.channels.keys().collect::<Vec<_>>(), ["ops"]);
    }

    #[test]
    fn a_channel_hears_only_findings_at_or_above_its_min_severity() {
        let mut state = empty();
        let o = observation("billing");
        assert_eq!(
            run(
                &mut state,
                &o,
                &[
                    finding("unreadable/journal", Severity::Unknown),
                    finding("key-age/app", Severity::Warning),
                    finding("ok/app", Severity::Ok),
                ],
                at(0)
            ),
            [
                "ops: alert unreadable/journal (unknown)",
                "ops: alert key-age/app (warning)"
            ]
        );
        assert!(!state.channels.contains_key("pager"));
        let channels = [("team", Level::Warning), ("pager", Level::Critical)];
        let findings = [
            finding("key-age/app", Severity::Warning),
            finding("no-certificate/app", Severity::Critical),
        ];
        let planned = plan_findings(
            &mut empty(),
            &observed(&o, &findings),
            &channels,
            at(0),
            RENOTIFY,
        );
        assert_eq!(
            deliver(&mut state, planned, &channels, &[]),
            [
                "team: alert key-age/app (warning)",
                "team: alert no-certificate/app (critical)",
                "pager: alert no-certificate/app (critical)"
            ]
        );
    }

    #[test]
    fn an_undelivered_alert_is_retried_and_an_undelivered_resolve_kept() {
        let mut state = empty();
        let o = observation("billing");
        let findings = [finding("expiry/app", Severity::Critical)];
        assert_eq!(
            run_with(&mut state, &o, &findings, at(0), &["pager"]),
            [
                "ops: alert expiry/app (critical)",
                "pager: alert expiry/app (critical)"
            ]
        );
        assert!(record(&state, "pager", "billing", "expiry/app").is_none());
        assert_eq!(
            run(&mut state, &o, &findings, at(1)),
            ["pager: alert expiry/app (critical)"]
        );
        // A failed re-send keeps the old record, so it is due again next run.
        assert_eq!(
            run_with(&mut state, &o, &findings, at(24), &["ops"]),
            ["ops: re-alert expiry/app (critical)"]
        );
        assert_eq!(
            run(&mut state, &o, &findings, at(24)),
            ["ops: re-alert expiry/app (critical)"]
        );
        assert_eq!(
            run_with(&mut state, &o, &[], at(32), &["ops"]),
            ["ops: resolve expiry/app", "pager: resolve expiry/app"]
        );
        assert!(record(&state, "ops", "billing", "expiry/app").is_some());
        assert_eq!(
            run(&mut state, &o, &[], at(33)),
            ["ops: resolve expiry/app"]
        );
        assert_eq!(state, empty());
    }

    fn news(outcome: Outcome) -> RotationNews {
        RotationNews {
            credential: "billing".into(),
            app: "Billing_Sync".into(),
            org: "acme".into(),
            outcome,
            summary: "generation 4 is live".into(),
            rotation_id: Some("billing-r4".into()),
        }
    }

    #[test]
    fn rotation_outcomes_go_by_level_and_a_success_closes_every_failure_sent() {
        let channels = [
            ("ops", Level::Info),
            ("team", Level::Warning),
            ("pager", Level::Critical),
        ];
        let mut state = empty();
        let rotate = |state: &mut State, outcome, failing: &[&str]| {
            let planned = plan_rotation(state, &news(outcome), &channels, at(0));
            for p in &planned {
                assert_eq!(
                    p.message,
                    Message::Rotation {
                        credential: "billing".into(),
                        app: "Billing_Sync".into(),
                        org: "acme".into(),
                        outcome,
                        summary: "generation 4 is live".into(),
                        rotation_id: Some("billing-r4".into()),
                    }
                );
            }
            deliver(state, planned, &channels, failing)
        };
        assert_eq!(
            rotate(&mut state, Outcome::Succeeded, &[]),
            ["ops: rotation succeeded"]
        );
        assert_eq!(
            rotate(&mut state, Outcome::RolledBack, &[]),
            ["ops: rotation rolled back", "team: rotation rolled back"]
        );
        assert_eq!(
            rotate(&mut state, Outcome::Succeeded, &[]),
            ["ops: rotation succeeded", "team: rotation succeeded"]
        );
        assert_eq!(state, empty());
        assert_eq!(
            rotate(&mut state, Outcome::Failed, &[]),
            [
                "ops: rotation failed",
                "team: rotation failed",
                "pager: rotation failed"
            ]
        );
        let open = &state.channels["pager"].rotations["billing"];
        assert_eq!(
            (open.outcome, open.rotation_id.as_deref()),
            (Unfinished::Failed, Some("billing-r4"))
        );
        // The success reaches the critical-only channel because it was told of the failure,
        // and stays owed to it while it cannot be delivered.
        assert_eq!(
            rotate(&mut state, Outcome::Succeeded, &["pager"]),
            [
                "ops: rotation succeeded",
                "team: rotation succeeded",
                "pager: rotation succeeded"
            ]
        );
        assert_eq!(state.channels.keys().collect::<Vec<_>>(), ["pager"]);
        assert_eq!(
            rotate(&mut state, Outcome::Succeeded, &[]),
            ["ops: rotation succeeded", "pager: rotation succeeded"]
        );
        assert_eq!(state, empty());
        // A failure the pager never received leaves nothing to close there.
        rotate(&mut state, Outcome::Failed, &["pager"]);
        assert_eq!(
            rotate(&mut state, Outcome::Succeeded, &[]),
            ["ops: rotation succeeded", "team: rotation succeeded"]
        );
    }

    #[test]
    fn dedup_keys_are_stable_and_fit_pagerduty() {
        assert_eq!(
            dedup_key("acme", "billing", "drift/store:local"),
            "rekey/acme/billing/drift/store:local"
        );
        let long = "x".repeat(300);
        let a = dedup_key("acme", &long, "expiry/app");
        let b = dedup_key("acme", &long, "expiry/store:local");
        assert_eq!(a.chars().count(), DEDUP_KEY_MAX);
        assert!(a.starts_with("rekey/acme/xxx"), "{a}");
        assert_ne!(a, b);
        assert_eq!(a, dedup_key("acme", &long, "expiry/app"));
    }

    #[test]
    fn drift_and_open_rotation_alerts_carry_their_facts() {
        let details_of = |o: &Observation, id: &str, severity| {
            let alert_severity = AlertSeverity::of(severity).unwrap();
            details(o, &finding(id, severity), alert_severity, at(0))
        };
        let mut o = observation("billing");
        o.sources[0].read = Ok(held(b"hand-deployed", at(500)));
        o.open_rotation = Some((RotationId("billing-r9".into()), at(-30)));
        let drift = details_of(&o, "drift/store:local", Severity::Critical);
        assert_eq!(drift["source"], "store:local");
        assert_eq!(drift["fingerprint"], Fingerprint::of(b"a").to_string());
        assert_eq!(
            drift["app_fingerprint"],
            Fingerprint::of(b"hand-deployed").to_string()
        );
        let open = details_of(&o, "open-rotation", Severity::Warning);
        assert_eq!(open["rotation_id"], "billing-r9");
        assert!(!open.contains_key("fingerprint"));
        o.sources[1].read = Err("down".into());
        let unreadable = details_of(&o, "unreadable/store:local", Severity::Unknown);
        assert_eq!(
            unreadable.keys().collect::<Vec<_>>(),
            ["finding", "severity", "source"]
        );
    }

    #[test]
    fn the_state_file_format_is_versioned_json() {
        let mut state = empty();
        run(
            &mut state,
            &observation("billing"),
            &[finding("expiry/app", Severity::Critical)],
            at(0),
        );
        apply(
            &mut state,
            Change::OpenRotation {
                channel: "pager".into(),
                credential: "billing".into(),
                record: RotationRecord {
                    outcome: Unfinished::RolledBack,
                    rotation_id: None,
                    sent_at: at(0),
                },
            },
        );
        let json: serde_json::Value = serde_json::to_value(&state).unwrap();
        let record = serde_json::json!({
            "dedup_key": "rekey/acme/billing/expiry/app",
            "severity": "critical",
            "sent_at": "2027-01-15T08:00:00Z"
        });
        assert_eq!(
            json,
            serde_json::json!({
                "version": 1,
                "channels": {
                    "ops": { "alerts": { "billing": { "expiry/app": record } } },
                    "pager": {
                        "alerts": { "billing": { "expiry/app": record } },
                        "rotations": { "billing": { "outcome": "rolled_back", "sent_at": "2027-01-15T08:00:00Z" } }
                    }
                }
            })
        );
        assert_eq!(serde_json::from_value::<State>(json).unwrap(), state);
    }

    // --- Through real HTTP, from a parsed config. ---

    use axum::body::Bytes;
    use axum::extract::State as Shared;
    use axum::http::{HeaderMap, StatusCode, Uri};
    use std::sync::{Arc, Mutex};

    /// What a receiver got: path, headers, body.
    type Got = Arc<Mutex<Vec<(String, HeaderMap, Vec<u8>)>>>;

    /// A receiver on a free loopback port that records every request and answers `status`.
    struct Receiver {
        port: u16,
        got: Got,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Receiver {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl Receiver {
        async fn start(status: u16) -> Receiver {
            async fn record(
                Shared((got, status)): Shared<(Got, u16)>,
                uri: Uri,
                headers: HeaderMap,
                body: Bytes,
            ) -> StatusCode {
                got.lock()
                    .unwrap()
                    .push((uri.path().to_string(), headers, body.to_vec()));
                StatusCode::from_u16(status).unwrap()
            }
            let got = Got::default();
            let router = axum::Router::new()
                .fallback(record)
                .with_state((got.clone(), status));
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
                .await
                .unwrap();
            let port = listener.local_addr().unwrap().port();
            let task = tokio::spawn(async move {
                axum::serve(listener, router).await.unwrap();
            });
            Receiver { port, got, task }
        }

        /// The JSON bodies received on `path`, in order.
        fn bodies(&self, path: &str) -> Vec<serde_json::Value> {
            self.got
                .lock()
                .unwrap()
                .iter()
                .filter(|(p, _, _)| p == path)
                .map(|(_, _, body)| serde_json::from_slice(body).unwrap())
                .collect()
        }

        fn count(&self) -> usize {
            self.got.lock().unwrap().len()
        }
    }

    const HOOK_SECRET: &str = "whsec-test-0123456789";

    /// A receiver and a notifier sending to it, from a config in a directory of their own.
    struct Http {
        receiver: Receiver,
        dir: tempfile::TempDir,
        notifier: Notifier,
    }

    impl Http {
        /// A receiver answering `status`, and a config in a fresh directory with a webhook channel
        /// and a Slack channel (`extra` ends the Slack channel's table), both pointing at the
        /// receiver, their secrets in files beside it.
        async fn start(status: u16, extra: &str) -> Http {
            let receiver = Receiver::start(status).await;
            let dir = tempfile::tempdir().unwrap();
            let config = config_in(dir.path(), receiver.port, extra);
            let notifier = Notifier::from_config(&config).unwrap().unwrap();
            Http {
                receiver,
                dir,
                notifier,
            }
        }

        /// Where the config keeps the alert state.
        fn state_file(&self) -> PathBuf {
            self.dir.path().join("state/alerts.json")
        }

        /// The state file, parsed.
        fn state(&self) -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(self.state_file()).unwrap()).unwrap()
        }

        /// Evaluates `o` at `now` and sends what its findings call for.
        async fn check(&self, o: &Observation, now: DateTime<Utc>) -> Vec<Delivery> {
            let findings = crate::check::evaluate(o, now);
            self.notifier
                .findings(&observed(o, &findings), now)
                .await
                .unwrap()
        }

        /// Sends the news of a rotation of `billing` that ended in `outcome`, now.
        async fn rotation(&self, outcome: Outcome) -> Result<Vec<Delivery>> {
            self.notifier.rotation(&news(outcome), wall_clock()).await
        }
    }

    /// A config in `dir` with a webhook channel and a Slack channel, both pointing at `port`,
    /// their secrets in files beside it.
    fn config_in(dir: &Path, port: u16, extra: &str) -> crate::config::Config {
        std::fs::write(dir.join("hook.secret"), format!("{HOOK_SECRET}\n")).unwrap();
        std::fs::write(
            dir.join("slack.url"),
            format!("http://127.0.0.1:{port}/slack/T000/B000/token\n"),
        )
        .unwrap();
        let text = format!(
            r#"
[alerts]
state_file = "state/alerts.json"
renotify_hours = 24

[alerts.channels.hook]
kind = "webhook"
url = "http://127.0.0.1:{port}/hook"
secret_file = "hook.secret"

[alerts.channels.chat]
kind = "slack"
webhook_url_file = "slack.url"
{extra}"#
        );
        crate::config::parse(&text, &dir.join("rekey.toml")).unwrap()
    }

    /// Now, to the second, so the receiver's signature check agrees with it.
    fn wall_clock() -> DateTime<Utc> {
        DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap()
    }

    fn expiring(now: DateTime<Utc>, days: i64) -> Observation {
        let mut o = observation("billing");
        let not_after = now + TimeDelta::days(days) + TimeDelta::hours(1);
        o.sources[0].read = Ok(held(b"a", not_after));
        o.sources[1].read = Ok(fixtures::held(b"a", not_after, Some(now)));
        o
    }

    fn whats(deliveries: &[Delivery]) -> Vec<String> {
        deliveries
            .iter()
            .map(|d| {
                assert_eq!(d.credential, "billing");
                assert!(d.error.is_none(), "{d:?}");
                format!("{}: {}", d.channel, d.what)
            })
            .collect()
    }

    #[tokio::test]
    async fn alerts_are_delivered_once_over_http_and_resolved_when_cleared() {
        use std::os::unix::fs::PermissionsExt as _;
        let http = Http::start(200, "").await;
        let receiver = &http.receiver;
        let now = wall_clock();

        let expiring = expiring(now, 10);
        assert_eq!(
            whats(&http.check(&expiring, now).await),
            [
                "chat: alert expiry/app (critical)",
                "chat: alert expiry/store:local (critical)",
                "hook: alert expiry/app (critical)",
                "hook: alert expiry/store:local (critical)"
            ]
        );
        let hook = receiver.bodies("/hook");
        assert_eq!(hook.len(), 2, "{hook:?}");
        let alert = hook
            .iter()
            .find(|b| b["dedup_key"] == "rekey/acme/billing/expiry/app")
            .expect("the app's expiry alert");
        assert_eq!(alert["type"], "alert");
        assert_eq!(alert["severity"], "critical");
        assert_eq!(alert["credential"], "billing");
        assert_eq!(alert["details"]["finding"], "expiry/app");
        assert_eq!(alert["details"]["days_left"], "10");
        assert_eq!(
            alert["details"]["fingerprint"],
            Fingerprint::of(b"a").to_string()
        );
        assert!(
            alert["summary"]
                .as_str()
                .unwrap()
                .contains("expires in 10 days"),
            "{alert}"
        );
        for (path, headers, body) in receiver.got.lock().unwrap().iter() {
            if path == "/hook" {
                let header = |name: &str| headers[name].to_str().unwrap().to_string();
                assert!(rekey_http::verify_signature(
                    HOOK_SECRET.as_bytes(),
                    &header(rekey_http::TIMESTAMP_HEADER),
                    body,
                    &header(rekey_http::SIGNATURE_HEADER),
                    Utc::now(),
                    Duration::from_secs(300),
                ));
            }
        }
        let slack = receiver.bodies("/slack/T000/B000/token");
        assert_eq!(slack.len(), 2, "{slack:?}");
        assert!(
            slack.iter().all(|b| b["text"]
                .as_str()
                .unwrap()
                .starts_with("[CRITICAL] billing: ")),
            "{slack:?}"
        );

        let mode = std::fs::metadata(http.state_file())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let state = http.state();
        assert_eq!(state["version"], 1);
        assert_eq!(
            state["channels"]["hook"]["alerts"]["billing"]["expiry/app"]["severity"],
            "critical"
        );

        // The next run finds the same: nothing is sent.
        assert!(
            http.check(&expiring, now + TimeDelta::hours(1))
                .await
                .is_empty()
        );
        assert_eq!(receiver.count(), 4);

        // Renewed everywhere: each channel gets each resolve once.
        let renewed = self::expiring(now, 300);
        assert_eq!(
            whats(&http.check(&renewed, now + TimeDelta::hours(2)).await),
            [
                "chat: resolve expiry/app",
                "chat: resolve expiry/store:local",
                "hook: resolve expiry/app",
                "hook: resolve expiry/store:local"
            ]
        );
        let hook = receiver.bodies("/hook");
        assert_eq!(hook.len(), 4);
        assert_eq!(hook[2]["type"], "resolve");
        assert_eq!(hook[2]["dedup_key"], "rekey/acme/billing/expiry/app");
        assert!(
            http.check(&renewed, now + TimeDelta::hours(3))
                .await
                .is_empty()
        );
        assert_eq!(receiver.count(), 8);
        assert_eq!(
            http.state(),
            serde_json::json!({ "version": 1, "channels": {} })
        );
    }

    #[tokio::test]
    async fn a_refused_delivery_is_reported_and_sent_again_next_run() {
        let http = Http::start(400, "min_severity = \"critical\"\n").await;
        let now = wall_clock();
        // 20 days left: a warning, which the critical-only Slack channel does not want.
        let o = expiring(now, 20);
        for run in 0..2 {
            let deliveries = http.check(&o, now + TimeDelta::hours(run)).await;
            assert_eq!(deliveries.len(), 2, "{deliveries:?}");
            for d in &deliveries {
                assert_eq!(d.channel, "hook");
                let error = d.error.as_deref().expect("not delivered");
                assert!(error.contains("HTTP 400"), "{error}");
                assert!(!error.contains(HOOK_SECRET), "{error}");
            }
        }
        assert_eq!(http.receiver.bodies("/hook").len(), 4);
        assert!(http.receiver.bodies("/slack/T000/B000/token").is_empty());
    }

    #[tokio::test]
    async fn rotation_news_goes_out_and_a_corrupt_state_file_is_replaced() {
        let http = Http::start(200, "").await;
        let state_file = http.state_file();
        std::fs::create_dir_all(state_file.parent().unwrap()).unwrap();
        std::fs::write(&state_file, "{\"version\": 1, \"channels\": [").unwrap();
        let deliveries = http.rotation(Outcome::RolledBack).await.unwrap();
        assert_eq!(
            whats(&deliveries),
            ["chat: rotation rolled back", "hook: rotation rolled back"]
        );
        let hook = http.receiver.bodies("/hook");
        assert_eq!(hook[0]["type"], "rotation");
        assert_eq!(hook[0]["outcome"], "rolled_back");
        assert_eq!(hook[0]["rotation_id"], "billing-r4");
        let state = http.state();
        assert_eq!(state["version"], 1);
        assert_eq!(
            state["channels"]["hook"]["rotations"]["billing"]["outcome"],
            "rolled_back"
        );
    }

    #[tokio::test]
    async fn a_state_file_that_cannot_be_read_is_an_error_naming_it() {
        let http = Http::start(200, "").await;
        // A directory where the file should be: it exists but cannot be read as a file.
        let state_file = http.state_file();
        std::fs::create_dir_all(&state_file).unwrap();
        let err = http.rotation(Outcome::Failed).await.unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("alert state file {}", state_file.display())),
            "{err}"
        );
        assert!(err.hint().unwrap().contains("state_file"), "{err:?}");
        assert_eq!(
            http.receiver.count(),
            0,
            "nothing is sent without the state"
        );
    }

    #[test]
    fn channel_secrets_come_from_files_or_the_environment_and_errors_name_where() {
        let dir = tempfile::tempdir().unwrap();
        let parse =
            |text: &str| crate::config::parse(text, &dir.path().join("rekey.toml")).unwrap();
        assert!(Notifier::from_config(&parse("")).unwrap().is_none());
        assert!(
            Notifier::from_config(&parse("[alerts]\n"))
                .unwrap()
                .is_none()
        );

        let unset = "REKEY_ALERTS_TEST_UNSET_7d2c91";
        assert!(std::env::var_os(unset).is_none());
        let config = parse(&format!(
            "[alerts]\n\n[alerts.channels.pager]\nkind = \"pagerduty\"\nrouting_key_env = \"{unset}\"\n"
        ));
        let err = Notifier::from_config(&config)
            .err()
            .expect("the variable is unset");
        let text = err.to_string();
        assert!(text.contains("rekey.toml:3:"), "{text}");
        assert!(text.contains("'pager'") && text.contains(unset), "{text}");
        assert!(err.hint().unwrap().contains("routing_key_file"), "{err:?}");

        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let config = parse(
            "[alerts.channels.hook]\nkind = \"webhook\"\nurl = \"https://hooks.example/in\"\nsecret_file = \"empty\"\n",
        );
        let err = Notifier::from_config(&config)
            .err()
            .expect("the file is empty");
        assert!(err.to_string().contains("empty"), "{err}");

        // The channel's own checks are reported with the config position, never the URL's path.
        std::fs::write(
            dir.path().join("slack.url"),
            "http://hooks.slack.example/services/T0/B0/s3cretToken\n",
        )
        .unwrap();
        let config =
            parse("[alerts.channels.chat]\nkind = \"slack\"\nwebhook_url_file = \"slack.url\"\n");
        let err = Notifier::from_config(&config).err().expect("plain http");
        let text = err.to_string();
        assert!(
            text.contains("rekey.toml:1:") && text.contains("https"),
            "{text}"
        );
        assert!(!text.contains("s3cretToken"), "{text}");
    }
}
