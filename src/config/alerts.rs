//! `[alerts]`: the channels findings and rotation outcomes go to, and the de-duplication state.

use super::tables::{Kind, only_keys_of, read};
use rekey_api::config::{Spanned, Validator, text};
use rekey_api::{SecretSource, Severity};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use toml::de::DeValue;

/// The journal (and lease) name of the alerts' state in `[alerts] state_store`; no credential
/// may take it.
pub const ALERTS_JOURNAL: &str = "_alerts";

/// `[alerts]`: channels, and the state that de-duplicates what was already sent.
#[derive(Debug)]
pub struct AlertsConfig {
    /// Which findings were sent to which channel, and when (unless `state_store` is set; then
    /// only read once, to seed the store).
    pub state_file: PathBuf,
    /// The store keeping that state instead (journal `_alerts`, under its lease), shared by
    /// every machine that alerts: `rekey daemon` replicas.
    pub state_store: Option<String>,
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
    pub(super) state_store: Option<Spanned<String>>,
}

/// A `slack` channel's table as written (each kind's table is its own type, so the keys that
/// apply to a kind are those of its type).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SlackEntry {
    #[serde(rename = "kind")]
    _kind: serde::de::IgnoredAny,
    min_severity: Option<Spanned<String>>,
    webhook_url_env: Option<Spanned<String>>,
    webhook_url_file: Option<Spanned<String>>,
}

/// A `pagerduty` channel's table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PagerDutyEntry {
    #[serde(rename = "kind")]
    _kind: serde::de::IgnoredAny,
    min_severity: Option<Spanned<String>>,
    routing_key_env: Option<Spanned<String>>,
    routing_key_file: Option<Spanned<String>>,
    events_url: Option<Spanned<String>>,
}

/// A `webhook` channel's table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WebhookEntry {
    #[serde(rename = "kind")]
    _kind: serde::de::IgnoredAny,
    min_severity: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    secret_env: Option<Spanned<String>>,
    secret_file: Option<Spanned<String>>,
}

/// `[alerts]` with its `[alerts.channels.NAME]` tables (taken out of the document apart, each read
/// by its kind's own type).
pub(super) fn validate_alerts(
    raw: &Spanned<RawAlerts>,
    channel_tables: Vec<(String, Spanned<DeValue<'_>>)>,
    stores: &std::collections::BTreeSet<String>,
    v: &mut Validator,
) -> AlertsConfig {
    let a = raw.get_ref();
    let mut channels = Vec::new();
    for (name, table) in channel_tables {
        let at = table.span();
        let Some(head) = read::<Kind>(table.clone(), v) else {
            continue;
        };
        let section = format!("alerts.channels.{name}");
        let kind = head.kind.get_ref().as_str();
        let secret =
            |v: &mut Validator,
             env: &Option<Spanned<String>>,
             file: &Option<Spanned<String>>,
             key: &str| { v.secret_source(env, file, key, at.clone(), &section) };
        let (min_severity, settings) = match kind {
            "slack" => {
                let Some(e) =
                    read::<SlackEntry>(only_keys_of::<SlackEntry>(table, &section, kind, v), v)
                else {
                    continue;
                };
                let webhook_url = secret(v, &e.webhook_url_env, &e.webhook_url_file, "webhook_url");
                (
                    e.min_severity,
                    webhook_url.map(|webhook_url| ChannelKindSettings::Slack { webhook_url }),
                )
            }
            "pagerduty" => {
                let Some(e) = read::<PagerDutyEntry>(
                    only_keys_of::<PagerDutyEntry>(table, &section, kind, v),
                    v,
                ) else {
                    continue;
                };
                if let Some(url) = &e.events_url {
                    v.endpoint(url, "events_url", &section);
                }
                let routing_key = secret(v, &e.routing_key_env, &e.routing_key_file, "routing_key");
                let events_url = text(&e.events_url);
                (
                    e.min_severity,
                    routing_key.map(|routing_key| ChannelKindSettings::PagerDuty {
                        routing_key,
                        events_url,
                    }),
                )
            }
            "webhook" => {
                let Some(e) =
                    read::<WebhookEntry>(only_keys_of::<WebhookEntry>(table, &section, kind, v), v)
                else {
                    continue;
                };
                if let Some(url) = &e.url {
                    v.endpoint(url, "url", &section);
                }
                let secret = secret(v, &e.secret_env, &e.secret_file, "secret");
                let settings = match (text(&e.url), secret) {
                    (Some(url), Some(secret)) => Some(ChannelKindSettings::Webhook { url, secret }),
                    (None, _) => {
                        v.problem(
                            at.clone(),
                            format!("{section}: kind = \"webhook\" needs url = \"https://…\""),
                        );
                        None
                    }
                    _ => None,
                };
                (e.min_severity, settings)
            }
            other => {
                v.problem(
                    head.kind.span(),
                    format!("unknown channel kind '{other}'; use \"slack\", \"pagerduty\" or \"webhook\""),
                );
                continue;
            }
        };
        let min_level = match min_severity.as_ref() {
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
        if let Some(kind) = settings {
            channels.push(ChannelSettings {
                name,
                min_level,
                kind,
                origin: v.at(at),
            });
        }
    }
    let state_store = a.state_store.as_ref().map(|s| {
        if !stores.contains(s.get_ref()) {
            v.problem(
                s.span(),
                format!(
                    "alerts.state_store: unknown store '{}'; use a key of [stores]",
                    s.get_ref()
                ),
            );
        }
        s.get_ref().clone()
    });
    AlertsConfig {
        state_store,
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
