//! Alerts: findings and rotation outcomes sent to the `[alerts]` channels, de-duplicated.
//!
//! A state file (or, with `[alerts] state_store`, a store: `stored`) remembers, per channel, which finding of which credential was sent at which
//! severity and when, and which channel was told about a failed rotation. With it a finding is
//! sent once, again when it gets worse or when `renotify` has passed, and resolved once it clears;
//! a channel that failed is tried again on the next run because nothing is recorded for it.
//!
//! Deciding what to send is a pure function of the state, the findings, the channels and the time
//! (`decide`); only [`Notifier`] touches the network and the file (or the store).

mod decide;
#[cfg(test)]
mod delivery_tests;
mod news;
mod state;
mod stored;
#[cfg(test)]
mod tests;

use crate::config::{ChannelKindSettings, ChannelSettings, Config, SecretSource};
use chrono::{DateTime, Utc};
use decide::{Planned, apply, plan_findings, plan_rotation};
pub use news::{Delivery, Observed, RotationNews};
use rekey_api::SecretString;
use rekey_api::{Result, Severity};
use rekey_notify::{Channel, ChannelConfig};
use state::{State, load, lock, save};
use std::path::PathBuf;
use std::time::Duration;

/// The configured channels plus the de-duplication state.
pub struct Notifier {
    channels: Vec<Configured>,
    home: Home,
    renotify: Duration,
}

/// Where the de-duplication state lives.
enum Home {
    /// `[alerts] state_file`, flocked for each delivery.
    File(PathBuf),
    /// `[alerts] state_store`: the journal `_alerts`, under its lease for each delivery.
    Store(Box<stored::Stored>),
}

/// One channel, ready to send.
struct Configured {
    /// Its name in `rekey.toml`; the key of its records in the state file.
    name: String,
    min_level: Severity,
    channel: Channel,
}

impl Notifier {
    /// None when the config has no `[alerts]` section or no channels. Reads every channel's secret
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
        let home = match &alerts.state_store {
            Some(name) => Home::Store(Box::new(stored::Stored::new(
                name.clone(),
                config.stores[name].clone(),
                alerts.state_file.clone(),
            ))),
            None => Home::File(alerts.state_file.clone()),
        };
        Ok(Some(Notifier {
            channels,
            home,
            renotify: alerts.renotify,
        }))
    }

    /// Whether the state lives in a store (`[alerts] state_store`), shared by every machine.
    pub fn state_in_store(&self) -> bool {
        matches!(self.home, Home::Store(_))
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

    /// Under the state's lock (the file's flock, or the store's lease): plans with the recorded
    /// state, sends everything at once, and records what was delivered.
    async fn deliver(
        &self,
        plan: impl FnOnce(&mut State) -> Vec<Planned>,
    ) -> Result<Vec<Delivery>> {
        let (held, mut state) = match &self.home {
            Home::File(path) => {
                let lock = lock(path).await?;
                (Held::File(lock, path), load(path)?)
            }
            Home::Store(stored) => {
                let (held, state) = stored.open().await?;
                (Held::Store(held), state)
            }
        };
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
        match held {
            Held::File(_lock, path) => save(path, &state)?,
            Held::Store(held) => held.save(&state).await?,
        }
        Ok(deliveries)
    }
}

/// The state's lock while a delivery runs.
enum Held<'n> {
    File(std::fs::File, &'n std::path::Path),
    Store(stored::Held<'n>),
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
) -> Result<SecretString> {
    source.read(
        crate::wiring::environment(),
        &format!("{}: alerts channel '{}'", s.origin, s.name),
        what,
        key,
        &format!("[alerts.channels.{}]", s.name),
    )
}
