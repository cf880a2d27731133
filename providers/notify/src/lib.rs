//! rekey's alert channels: how `rekey check` reports expiring certificates and how `rekey run`
//! reports rotation outcomes.
//!
//! - **Slack**: an incoming webhook; the whole webhook URL is a [`rekey_api::SecretString`].
//! - **PagerDuty**: Events API v2; alerts trigger and resolve under the caller's dedup key,
//!   failed rotations trigger under `rekey/rotation/<org>/<credential>` and a later successful
//!   rotation resolves it (table in the `pagerduty` module, see [`rotation_dedup_key`]).
//! - **Webhook**: the [`Message`] as JSON, signed with HMAC-SHA256 over `"<timestamp>.<body>"`
//!   ([`rekey_http::signing`]; receivers check it with [`rekey_http::verify_signature`]).
//!
//! The caller parses `rekey.toml` into [`ChannelConfig`]s; [`Channel::new`] checks them (https
//! except for loopback hosts) and [`Channel::send`] / [`send_all`] deliver, retrying transport
//! errors, 5xx and 429 per a [`rekey_api::Backoff`]. Errors are `rekey_api::Error`s that name the channel and
//! its host, never a secret or a URL path.

mod channel;
mod message;
mod pagerduty;
mod slack;
mod webhook;

pub use channel::{Channel, ChannelConfig, ChannelKind, DEFAULT_TIMEOUT};
pub use message::{Message, Outcome};
pub use pagerduty::{DEFAULT_EVENTS_URL, rotation_dedup_key};

use rekey_api::Result;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

/// Sends `message` to every channel at once and reports each channel's result, in the order of
/// `channels`, under the channel's name. A failing channel never stops the others.
pub async fn send_all(channels: &[Channel], message: &Message) -> Vec<(String, Result<()>)> {
    type Delivery<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;
    let mut pending: Vec<Option<Delivery<'_>>> = channels
        .iter()
        .map(|c| Some(Box::pin(c.send(message)) as Delivery<'_>))
        .collect();
    let mut results: Vec<Option<Result<()>>> = channels.iter().map(|_| None).collect();
    // A join over borrowed futures, without a dependency for it.
    std::future::poll_fn(|cx| {
        let mut waiting = false;
        for (slot, result) in pending.iter_mut().zip(results.iter_mut()) {
            if let Some(delivery) = slot {
                match delivery.as_mut().poll(cx) {
                    Poll::Ready(r) => {
                        *result = Some(r);
                        *slot = None;
                    }
                    Poll::Pending => waiting = true,
                }
            }
        }
        if waiting {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    channels
        .iter()
        .zip(results)
        .map(|(c, r)| {
            (
                c.name().to_string(),
                r.expect("every delivery finished before the join returned"),
            )
        })
        .collect()
}
