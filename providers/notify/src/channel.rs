//! Channels: validated at construction, delivered over HTTPS with retries.

use crate::message::Message;
use crate::pagerduty::{self, DEDUP_KEY_MAX};
use crate::{slack, webhook};
use chrono::Utc;
use rekey_api::{Backoff, Error, ErrorKind, Result, SecretString};
use rekey_http::{Post, Refusal, Unposted};
use reqwest::Url;
use std::fmt;
use std::time::Duration;
use zeroize::Zeroizing;

/// Per-request timeout (connect, send, answer).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A channel as configured: plain typed values the caller took from `rekey.toml` (and the
/// environment, for the secrets). [`Channel::new`] validates it.
pub enum ChannelConfig {
    /// A Slack incoming webhook.
    Slack {
        /// The channel's name in `rekey.toml`, used in errors and reports.
        name: String,
        /// `https://hooks.slack.com/services/T…/B…/…`: the whole URL is the credential.
        webhook_url: SecretString,
    },
    /// A PagerDuty service's Events API v2 integration.
    PagerDuty {
        /// The channel's name in `rekey.toml`.
        name: String,
        /// The integration key of the service's Events API v2 integration.
        routing_key: SecretString,
        /// The enqueue endpoint; `None` for [`DEFAULT_EVENTS_URL`](crate::DEFAULT_EVENTS_URL).
        events_url: Option<String>,
    },
    /// Any HTTPS endpoint that accepts signed JSON (see the crate README).
    Webhook {
        /// The channel's name in `rekey.toml`.
        name: String,
        /// Where to POST.
        url: String,
        /// The HMAC-SHA256 signing secret shared with the receiver.
        secret: SecretString,
    },
}

impl fmt::Debug for ChannelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // URLs may carry tokens (Slack's always does): only the kind and the name are shown.
        let (kind, name) = match self {
            ChannelConfig::Slack { name, .. } => (ChannelKind::Slack, name),
            ChannelConfig::PagerDuty { name, .. } => (ChannelKind::PagerDuty, name),
            ChannelConfig::Webhook { name, .. } => (ChannelKind::Webhook, name),
        };
        f.debug_struct("ChannelConfig")
            .field("kind", &kind)
            .field("name", name)
            .finish_non_exhaustive()
    }
}

/// Which service a channel talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    /// Slack incoming webhook.
    Slack,
    /// PagerDuty Events API v2.
    PagerDuty,
    /// Signed generic webhook.
    Webhook,
}

impl ChannelKind {
    /// `slack`, `pagerduty` or `webhook`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Slack => "slack",
            ChannelKind::PagerDuty => "pagerduty",
            ChannelKind::Webhook => "webhook",
        }
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

enum Endpoint {
    Slack {
        webhook_url: SecretString,
    },
    PagerDuty {
        routing_key: SecretString,
        url: String,
    },
    Webhook {
        url: String,
        secret: SecretString,
    },
}

/// One alert channel, ready to send. Built by [`Channel::new`] from a [`ChannelConfig`].
///
/// `Debug` shows the kind, the name and the host only.
pub struct Channel {
    name: String,
    kind: ChannelKind,
    host: String,
    endpoint: Endpoint,
    http: reqwest::Client,
    backoff: Backoff,
    timeout: Duration,
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("host", &self.host)
            .field("backoff", &self.backoff)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Channel {
    /// Validates `config`: a non-empty name and secret, and an `https` URL (plain `http` only for
    /// loopback hosts). Errors are [`ErrorKind::Config`] and name the channel, never the secret or
    /// the URL's path.
    pub fn new(config: ChannelConfig) -> Result<Channel> {
        let (kind, name, url, secret) = match &config {
            ChannelConfig::Slack { name, webhook_url } => (
                ChannelKind::Slack,
                name,
                webhook_url.expose_secret(),
                webhook_url,
            ),
            ChannelConfig::PagerDuty {
                name,
                routing_key,
                events_url,
            } => (
                ChannelKind::PagerDuty,
                name,
                events_url
                    .as_deref()
                    .unwrap_or(pagerduty::DEFAULT_EVENTS_URL),
                routing_key,
            ),
            ChannelConfig::Webhook { name, url, secret } => {
                (ChannelKind::Webhook, name, url.as_str(), secret)
            }
        };
        let name = name.trim().to_string();
        if name.is_empty() {
            return Err(Error::new(
                ErrorKind::Config,
                format!("{kind} channel: the name is empty"),
            ));
        }
        let label = format!("{kind} channel '{name}'");
        let what = match kind {
            ChannelKind::Slack => "webhook_url",
            ChannelKind::PagerDuty => "events_url",
            ChannelKind::Webhook => "url",
        };
        let rekey_api::Endpoint { url: parsed, host } = rekey_api::endpoint(url, what, &label)?;
        if secret.is_blank() {
            let secret_name = match kind {
                ChannelKind::Slack => "webhook_url",
                ChannelKind::PagerDuty => "routing_key",
                ChannelKind::Webhook => "secret",
            };
            return Err(Error::new(
                ErrorKind::Config,
                format!("{label}: {secret_name} is empty"),
            ));
        }
        let http = rekey_http::http_client(&label)?;
        let endpoint = match config {
            ChannelConfig::Slack { webhook_url, .. } => Endpoint::Slack { webhook_url },
            ChannelConfig::PagerDuty { routing_key, .. } => Endpoint::PagerDuty {
                routing_key,
                url: parsed.to_string(),
            },
            ChannelConfig::Webhook { secret, .. } => Endpoint::Webhook {
                url: parsed.to_string(),
                secret,
            },
        };
        Ok(Channel {
            name,
            kind,
            host,
            endpoint,
            http,
            backoff: Backoff::default(),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Replaces the retry policy (tests use millisecond waits).
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Replaces the per-request timeout ([`DEFAULT_TIMEOUT`] by default).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The service it talks to.
    pub fn kind(&self) -> ChannelKind {
        self.kind
    }

    /// The endpoint's host: the only part of the URL that may appear in messages.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `slack channel 'ops' (hooks.slack.com)`: how errors name the channel.
    fn label(&self) -> String {
        format!("{} channel '{}' ({})", self.kind, self.name, self.host)
    }

    /// Delivers `message`, retrying transport errors, 5xx and 429 per the channel's [`Backoff`]
    /// ([`Backoff::default`] unless replaced), `Retry-After` honoured up to its `max_delay`.
    ///
    /// Errors name the channel, the HTTP status and carry a hint; transport errors, 5xx and 429
    /// are [`Error::is_temporary`]. No error contains a secret or a URL path.
    pub async fn send(&self, message: &Message) -> Result<()> {
        let (url, body, signing_secret) = match &self.endpoint {
            Endpoint::Slack { webhook_url } => {
                let body = serde_json::to_vec(&slack::payload(message))
                    .expect("a JSON value always serializes");
                (webhook_url.expose_secret(), Zeroizing::new(body), None)
            }
            Endpoint::PagerDuty { routing_key, url } => {
                let dedup_key = pagerduty::dedup_key(message);
                if dedup_key.chars().count() > DEDUP_KEY_MAX {
                    return Err(Error::new(
                        ErrorKind::Config,
                        format!(
                            "{}: dedup key '{}' is longer than PagerDuty's {DEDUP_KEY_MAX} characters",
                            self.label(),
                            rekey_http::truncate(&dedup_key, 60)
                        ),
                    ));
                }
                let body = pagerduty::event(routing_key.expose_secret(), message, Utc::now());
                (url.as_str(), body, None)
            }
            Endpoint::Webhook { url, secret } => (
                url.as_str(),
                Zeroizing::new(webhook::body(message, Utc::now())),
                Some(secret),
            ),
        };
        // The bodies are zeroed when dropped: PagerDuty's carries the routing key.
        // Checked when the channel was built; parsed here so a secret URL never sits in a field.
        let url = Url::parse(url.trim()).map_err(|_| {
            Error::new(
                ErrorKind::Unexpected,
                format!("{}: its URL no longer parses", self.label()),
            )
        })?;
        let secrets = self.secrets();
        let label = self.label();
        let post = Post {
            client: &self.http,
            url: &url,
            timeout: self.timeout,
            backoff: self.backoff,
            secrets: &secrets,
            who: &label,
        };
        // A webhook delivery is signed per attempt, so a retry after a long Retry-After is still
        // fresh for the receiver.
        let headers = |body: &[u8]| {
            signing_secret.map_or_else(Vec::new, |s: &SecretString| {
                rekey_http::signed_headers(s.expose_secret().as_bytes(), body)
            })
        };
        match rekey_http::post_json(&post, &body, headers).await {
            Ok(_) => Ok(()),
            Err(unposted) => Err(self.undelivered(unposted)),
        }
    }

    /// The error for a notification the receiver did not take: the channel, the status or what
    /// went wrong, and a hint; temporary when another attempt later might be taken.
    fn undelivered(&self, unposted: Unposted) -> Error {
        let gave_up = unposted.gave_up();
        let temporary = unposted.retryable();
        let error = match unposted.refusal {
            Refusal::Status { status, detail } => {
                let code = status.as_u16();
                let detail = if detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({detail})")
                };
                Error::new(
                    rekey_http::status_kind(status),
                    format!("{}: HTTP {code}{detail}{gave_up}", self.label()),
                )
                .with_hint(self.hint(code))
            }
            Refusal::Transport(e) => Error::new(
                ErrorKind::Unavailable,
                format!(
                    "{}: {}{gave_up}",
                    self.label(),
                    rekey_http::transport_how(&e)
                ),
            )
            .with_hint(format!(
                "check that this host can reach {} (proxy, firewall, DNS); the notification was not delivered",
                self.host
            ))
            .with_source(e),
        };
        if temporary { error.temporary() } else { error }
    }

    /// Strings an error message must never contain.
    fn secrets(&self) -> Vec<&str> {
        match &self.endpoint {
            Endpoint::Slack { webhook_url } => {
                let url = webhook_url.expose_secret().trim();
                // The path is the secret part; also catch it on its own.
                let path = url
                    .find("://")
                    .and_then(|i| url[i + 3..].find('/').map(|j| &url[i + 3 + j..]))
                    .unwrap_or_default();
                // And its last segment, the token, in case a body quotes only that.
                let token = path.rsplit('/').next().unwrap_or_default();
                vec![url, path, token]
            }
            Endpoint::PagerDuty { routing_key, .. } => vec![routing_key.expose_secret()],
            Endpoint::Webhook { secret, .. } => vec![secret.expose_secret()],
        }
    }

    fn hint(&self, code: u16) -> String {
        match (self.kind, code) {
            (_, 429) => format!(
                "{} is rate limiting this sender; the notification was not delivered, retry later",
                self.host
            ),
            (_, 500..=599) => format!(
                "{} is failing or unavailable; the notification was not delivered, retry later",
                self.host
            ),
            (_, 300..=399) => {
                "redirects are not followed: configure the final URL of the endpoint".into()
            }
            (ChannelKind::Slack, 400) => {
                "Slack refused the message as invalid; report it as a rekey bug".into()
            }
            (ChannelKind::Slack, 403 | 404 | 410) => "the incoming webhook was revoked or its Slack channel was deleted or archived; create a new incoming webhook and update the channel's webhook_url".into(),
            (ChannelKind::PagerDuty, 400) => "PagerDuty refused the event: check that routing_key is the 32-character Integration Key of an Events API v2 integration".into(),
            (ChannelKind::PagerDuty, _) => "check the channel's events_url (default https://events.pagerduty.com/v2/enqueue) and routing_key".into(),
            (ChannelKind::Webhook, 401 | 403) => "the receiver refused the delivery: check that both sides use the same signing secret and that their clocks agree within the receiver's tolerance".into(),
            (ChannelKind::Webhook, _) => "check the channel's url and the receiver's logs".into(),
            (ChannelKind::Slack, _) => "check the channel's webhook_url".into(),
        }
    }
}
