//! `[alerts]`: the channels findings and rotation outcomes go to, and the de-duplication state.

use rekey_api::config::{Spanned, Validator, text};
use rekey_api::{SecretSource, Severity};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// `[alerts]`: channels, and the state that de-duplicates what was already sent.
#[derive(Debug)]
pub struct AlertsConfig {
    /// Which findings were sent to which channel, and when.
    pub state_file: PathBuf,
    /// A finding still open is sent again after this long.
    pub renotify: Duration,
    /// The channels, in config order.
    pub channels: Vec<ChannelSettings>,
}

/// One `[alerts.channels.NAME]`.
#[derive(Debug)]
pub struct ChannelSettings {
    /// Its name in the config.
    pub name: String,
    /// The least a message must weigh to be sent here.
    pub min_level: Severity,
    /// Kind and where its secret comes from.
    pub kind: ChannelKindSettings,
    /// `file:line` of its section, for errors found at run time (a missing variable).
    pub origin: String,
}

/// A channel's kind and settings; secrets are read when the channel is built, never stored here.
#[derive(Debug)]
pub enum ChannelKindSettings {
    /// A Slack incoming webhook (the whole URL is the secret).
    Slack {
        /// Where the webhook URL comes from.
        webhook_url: SecretSource,
    },
    /// PagerDuty Events API v2.
    PagerDuty {
        /// Where the integration (routing) key comes from.
        routing_key: SecretSource,
        /// Events endpoint override (EU service region, tests).
        events_url: Option<String>,
    },
    /// A generic HTTPS receiver; bodies signed with HMAC-SHA256.
    Webhook {
        /// Where to POST.
        url: String,
        /// Where the signing secret comes from.
        secret: SecretSource,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlerts {
    pub(super) state_file: Option<Spanned<String>>,
    pub(super) renotify_hours: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) channels: BTreeMap<String, Spanned<RawChannel>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChannel {
    pub(super) kind: Spanned<String>,
    pub(super) min_severity: Option<Spanned<String>>,
    pub(super) webhook_url_env: Option<Spanned<String>>,
    pub(super) webhook_url_file: Option<Spanned<String>>,
    pub(super) routing_key_env: Option<Spanned<String>>,
    pub(super) routing_key_file: Option<Spanned<String>>,
    pub(super) events_url: Option<Spanned<String>>,
    pub(super) url: Option<Spanned<String>>,
    pub(super) secret_env: Option<Spanned<String>>,
    pub(super) secret_file: Option<Spanned<String>>,
}

pub(super) fn validate_alerts(raw: &Spanned<RawAlerts>, v: &mut Validator) -> AlertsConfig {
    let a = raw.get_ref();
    let mut channels = Vec::new();
    for (name, spanned) in &a.channels {
        let c = spanned.get_ref();
        let origin = v.at(spanned.span());
        let section = format!("alerts.channels.{name}");
        let secret =
            |v: &mut Validator,
             env: &Option<Spanned<String>>,
             file: &Option<Spanned<String>>,
             key: &str| { v.secret_source(env, file, key, spanned.span(), &section) };
        let used: Vec<(&str, Option<std::ops::Range<usize>>)> = vec![
            (
                "webhook_url_env",
                c.webhook_url_env.as_ref().map(Spanned::span),
            ),
            (
                "webhook_url_file",
                c.webhook_url_file.as_ref().map(Spanned::span),
            ),
            (
                "routing_key_env",
                c.routing_key_env.as_ref().map(Spanned::span),
            ),
            (
                "routing_key_file",
                c.routing_key_file.as_ref().map(Spanned::span),
            ),
            ("events_url", c.events_url.as_ref().map(Spanned::span)),
            ("url", c.url.as_ref().map(Spanned::span)),
            ("secret_env", c.secret_env.as_ref().map(Spanned::span)),
            ("secret_file", c.secret_file.as_ref().map(Spanned::span)),
        ];
        let kind = c.kind.get_ref().as_str();
        let allowed: &[&str] = match kind {
            "slack" => &["webhook_url_env", "webhook_url_file"],
            "pagerduty" => &["routing_key_env", "routing_key_file", "events_url"],
            "webhook" => &["url", "secret_env", "secret_file"],
            other => {
                v.problem(
                    c.kind.span(),
                    format!("unknown channel kind '{other}'; use \"slack\", \"pagerduty\" or \"webhook\""),
                );
                continue;
            }
        };
        for (key, span) in &used {
            if let (Some(span), false) = (span, allowed.contains(key)) {
                v.problem(
                    span.clone(),
                    format!("alerts.channels.{name}: '{key}' does not apply to {kind}"),
                );
            }
        }
        let min_level = match c.min_severity.as_ref() {
            None => Severity::Info,
            Some(level) => match level.get_ref().as_str() {
                "info" => Severity::Info,
                "warning" => Severity::Warning,
                "critical" => Severity::Critical,
                other => {
                    v.problem(
                        level.span(),
                        format!("unknown min_severity '{other}'; use \"info\", \"warning\" or \"critical\""),
                    );
                    Severity::Info
                }
            },
        };
        for url in [&c.events_url, &c.url].into_iter().flatten() {
            v.endpoint(url, "url", &section);
        }
        let kind = match kind {
            "slack" => secret(v, &c.webhook_url_env, &c.webhook_url_file, "webhook_url")
                .map(|webhook_url| ChannelKindSettings::Slack { webhook_url }),
            "pagerduty" => secret(v, &c.routing_key_env, &c.routing_key_file, "routing_key").map(
                |routing_key| ChannelKindSettings::PagerDuty {
                    routing_key,
                    events_url: text(&c.events_url),
                },
            ),
            _ => {
                let secret = secret(v, &c.secret_env, &c.secret_file, "secret");
                match (text(&c.url), secret) {
                    (Some(url), Some(secret)) => Some(ChannelKindSettings::Webhook { url, secret }),
                    (None, _) => {
                        v.problem(
                            spanned.span(),
                            format!("alerts.channels.{name}: kind = \"webhook\" needs url = \"https://…\""),
                        );
                        None
                    }
                    _ => None,
                }
            }
        };
        if let Some(kind) = kind {
            channels.push(ChannelSettings {
                name: name.clone(),
                min_level,
                kind,
                origin,
            });
        }
    }
    AlertsConfig {
        state_file: a
            .state_file
            .as_ref()
            .map_or_else(|| v.path("rekey-alerts.json"), |f| v.path(f.get_ref())),
        renotify: Duration::from_secs(
            v.positive(&a.renotify_hours, 24, 1..=720, "alerts.renotify_hours") as u64 * 3600,
        ),
        channels,
    }
}
