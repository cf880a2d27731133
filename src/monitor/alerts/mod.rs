//! Alerts: findings and rotation outcomes sent to the `[alerts]` channels, de-duplicated.
//!
//! A state file remembers, per channel, which finding of which credential was sent at which
//! severity and when, and which channel was told about a failed rotation. With it a finding is
//! sent once, again when it gets worse or when `renotify` has passed, and resolved once it clears;
//! a channel that failed is tried again on the next run because nothing is recorded for it.
//!
//! Deciding what to send is a pure function of the state, the findings, the channels and the time
//! (`decide`); only [`Notifier`] touches the network and the file.

mod decide;
#[cfg(test)]
mod delivery_tests;
mod state;
#[cfg(test)]
mod tests;

use super::findings::Finding;
use super::observe::Observation;
use crate::config::{ChannelKindSettings, ChannelSettings, Config, CredentialConfig, SecretSource};
use crate::rotation::{Closed, Ending, Stopped};
use chrono::{DateTime, Utc};
use decide::{Planned, apply, plan_findings, plan_rotation};
use rekey_api::{Result, Severity};
use rekey_notify::{Channel, ChannelConfig, Outcome, Secret};
use serde::Serialize;
use state::{State, load, lock, save};
use std::path::PathBuf;
use std::time::Duration;

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
    min_level: Severity,
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

impl RotationNews {
    /// What the channels hear about a rotation; nothing when another runner held the lease (that
    /// runner reports its own outcome).
    pub fn of(
        cred: &CredentialConfig,
        result: &std::result::Result<Closed, Stopped>,
    ) -> Option<RotationNews> {
        let (outcome, summary, rotation_id) = match result {
            Ok(o) => {
                let now = format!(
                    "generation {} ({}), valid until {}",
                    o.generation.map_or_else(|| "-".into(), |g| g.to_string()),
                    o.fingerprint.map_or_else(|| "-".into(), |f| f.to_string()),
                    o.not_after
                        .map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d").to_string())
                );
                let reason = o.reason.as_deref().unwrap_or("no reason given");
                let (outcome, summary) = match o.ending {
                    Ending::Rotated if o.unadopted.is_empty() => (
                        rekey_notify::Outcome::Succeeded,
                        format!("rotated to {now}"),
                    ),
                    Ending::Rotated => (
                        rekey_notify::Outcome::Unadopted,
                        format!(
                            "rotated to {now}, but NOT adopted by {}",
                            o.unadopted
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join("; ")
                        ),
                    ),
                    Ending::Aborted => (
                        rekey_notify::Outcome::RolledBack,
                        format!("rotation aborted ({reason}); {now} is CURRENT again"),
                    ),
                    Ending::RolledBack => (
                        rekey_notify::Outcome::RolledBack,
                        format!("rotation rolled back ({reason}); {now} is CURRENT again"),
                    ),
                };
                (outcome, summary, Some(&o.rotation_id))
            }
            Err(f) if f.error.kind() == rekey_api::ErrorKind::Busy => return None,
            Err(f) => {
                let at = f
                    .step
                    .map_or_else(|| "before it started".into(), |s| format!("at step {s}"));
                (
                    rekey_notify::Outcome::Failed,
                    format!("rotation failed {at}: {}", f.error),
                    f.rotation_id.as_ref(),
                )
            }
        };
        Some(RotationNews {
            credential: cred.name.clone(),
            app: cred.app.clone(),
            org: cred.org.clone(),
            outcome,
            summary,
            rotation_id: rotation_id.map(ToString::to_string),
        })
    }
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

    fn specs(&self) -> Vec<(&str, Severity)> {
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

/// A channel's secret, read from where `[alerts.channels.NAME]` says.
fn read_secret(
    s: &ChannelSettings,
    source: &SecretSource,
    what: &str,
    key: &str,
) -> Result<Secret> {
    source.read(
        &format!("{}: alerts channel '{}'", s.origin, s.name),
        what,
        key,
        &format!("[alerts.channels.{}]", s.name),
    )
}
