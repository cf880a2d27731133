//! PagerDuty Events API v2 events.
//!
//! Field names and values checked against PagerDuty's OpenAPI description of the Events API v2
//! (`PagerDuty/api-schema`, `reference/events-v2/openapiv3.json`): `POST /v2/enqueue` with
//! `routing_key` (the integration key), `event_action` (`trigger` | `acknowledge` | `resolve`),
//! `dedup_key` (required unless triggering; at most 255 characters per PagerDuty's docs),
//! `client`, and for triggers a `payload` with the required `summary`, `source` and `severity`
//! (`critical` | `error` | `warning` | `info`) and the optional `timestamp`, `component`,
//! `group`, `class` and `custom_details`. A resolve carries no payload. `202 Accepted` is success;
//! its retry table says: 400 no retry, 429 and 5xx and network errors retry after some time.
//!
//! What rekey sends:
//!
//! | message | event |
//! |---|---|
//! | `Alert` | `trigger` under the caller's `dedup_key`; `Warning` → `warning`, `Critical` → `critical`, `Unknown` → `error`; class `certificate-expiry` |
//! | `Resolve` | `resolve` of the caller's `dedup_key` |
//! | `Rotation` failed or rolled back | `trigger`, severity `error`, class `key-rotation`, dedup key `rekey/rotation/<org>/<credential>` |
//! | `Rotation` succeeded but not adopted by every consumer | the same `trigger` with severity `warning` |
//! | `Rotation` succeeded | `resolve` of `rekey/rotation/<org>/<credential>` |

use crate::message::{Message, Outcome};
use chrono::{DateTime, SecondsFormat, Utc};
use rekey_api::Severity;
use rekey_http::truncate;
use serde::Serialize;
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// The public Events API v2 endpoint.
pub const DEFAULT_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// PagerDuty's limit for `dedup_key`.
pub(crate) const DEDUP_KEY_MAX: usize = 255;
/// PagerDuty's limit for `payload.summary`.
const SUMMARY_MAX: usize = 1024;

#[derive(Serialize)]
struct Enqueue<'a> {
    routing_key: &'a str,
    event_action: &'static str,
    dedup_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<Payload<'a>>,
}

#[derive(Serialize)]
struct Payload<'a> {
    summary: String,
    source: String,
    severity: &'static str,
    timestamp: String,
    component: &'a str,
    group: &'a str,
    class: &'static str,
    custom_details: BTreeMap<&'a str, &'a str>,
}

/// The dedup key of a credential's rotation incident.
pub fn rotation_dedup_key(org: &str, credential: &str) -> String {
    format!("rekey/rotation/{org}/{credential}")
}

/// The dedup key the event for `message` uses.
pub(crate) fn dedup_key(message: &Message) -> String {
    match message {
        Message::Alert { dedup_key, .. } | Message::Resolve { dedup_key, .. } => dedup_key.clone(),
        Message::Rotation {
            org, credential, ..
        } => rotation_dedup_key(org, credential),
    }
}

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Ok | Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
        Severity::Unknown => "error",
    }
}

/// `details` plus the credential, app and org (which win over details of the same name).
fn with_subject<'a>(
    mut details: BTreeMap<&'a str, &'a str>,
    message: &'a Message,
) -> BTreeMap<&'a str, &'a str> {
    details.insert("credential", message.credential());
    details.insert("app", message.app());
    details.insert("org", message.org());
    details
}

/// The JSON body for `message`. It holds the routing key, so it is zeroed when dropped.
pub(crate) fn event(
    routing_key: &str,
    message: &Message,
    now: DateTime<Utc>,
) -> Zeroizing<Vec<u8>> {
    let dedup_key = dedup_key(message);
    let payload = |severity: &'static str, class: &'static str, custom_details| Payload {
        summary: truncate(&message.title(), SUMMARY_MAX),
        source: format!("rekey/{}/{}", message.org(), message.credential()),
        severity,
        timestamp: now.to_rfc3339_opts(SecondsFormat::Secs, true),
        component: message.app(),
        group: message.org(),
        class,
        custom_details,
    };
    let trigger = match message {
        Message::Alert {
            severity: s,
            details,
            ..
        } => {
            let details = details
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            Some(payload(
                severity(*s),
                "certificate-expiry",
                with_subject(details, message),
            ))
        }
        Message::Resolve { .. }
        | Message::Rotation {
            outcome: Outcome::Succeeded,
            ..
        } => None,
        Message::Rotation {
            outcome,
            rotation_id,
            ..
        } => {
            let mut details = BTreeMap::from([("outcome", outcome.as_str())]);
            if let Some(id) = rotation_id {
                details.insert("rotation_id", id.as_str());
            }
            let level = match outcome {
                Outcome::Unadopted => "warning",
                _ => "error",
            };
            Some(payload(
                level,
                "key-rotation",
                with_subject(details, message),
            ))
        }
    };
    let event = match trigger {
        Some(payload) => Enqueue {
            routing_key,
            event_action: "trigger",
            dedup_key: &dedup_key,
            client: Some("rekey"),
            payload: Some(payload),
        },
        None => Enqueue {
            routing_key,
            event_action: "resolve",
            dedup_key: &dedup_key,
            client: None,
            payload: None,
        },
    };
    Zeroizing::new(serde_json::to_vec(&event).expect("an event always serializes"))
}
