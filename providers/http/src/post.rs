//! POSTing one JSON body to a receiver until it is taken — what alert channels and webhook
//! consumers both do: transport errors, 429 and 5xx are retried per a [`Backoff`] (a
//! `Retry-After` honoured, capped by it), any 2xx is taken, any other answer is final. What
//! happened is reported as data, without the URL or a secret; each caller words it.

use crate::{ERROR_BODY_MAX, answer_detail, read_limited, retry_after, retryable};
use rekey_api::Backoff;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use reqwest::{StatusCode, Url};
use std::time::Duration;

/// Where and how to POST.
pub struct Post<'a> {
    /// The client (see [`crate::http_client`]).
    pub client: &'a reqwest::Client,
    /// The receiver.
    pub url: &'a Url,
    /// How long one request (connect, send, answer) may take.
    pub timeout: Duration,
    /// How often and how patiently.
    pub backoff: Backoff,
    /// Strings a receiver's answer may quote that must never reach a message (replaced by `***`).
    pub secrets: &'a [&'a str],
    /// Who is posting, for the debug log line of each retry (`channel 'ops'`).
    pub who: &'a str,
}

/// A body the receiver took.
#[derive(Debug)]
pub struct Posted {
    /// Its 2xx answer.
    pub status: StatusCode,
    /// How many requests it took (1: the first).
    pub attempts: u32,
}

/// Why a body was not taken.
#[derive(Debug)]
pub enum Refusal {
    /// The receiver answered a non-2xx status; `detail` is its own words on one line, secrets
    /// masked (empty when it said nothing useful).
    Status {
        /// The status.
        status: StatusCode,
        /// Its explanation.
        detail: String,
    },
    /// No answer (connection refused, timeout, reset). The error carries no URL.
    Transport(reqwest::Error),
}

/// A body that was not taken, and after how many requests.
#[derive(Debug)]
pub struct Unposted {
    /// The last refusal.
    pub refusal: Refusal,
    /// How many requests were made.
    pub attempts: u32,
}

impl Unposted {
    /// Whether another attempt later might be taken (no answer, 429, 5xx): the caller's error is
    /// then temporary.
    pub fn retryable(&self) -> bool {
        match &self.refusal {
            Refusal::Status { status, .. } => retryable(*status),
            Refusal::Transport(_) => true,
        }
    }

    /// ` (gave up after N attempts)` when the attempts ran out on a retryable refusal, else
    /// nothing: for the end of the caller's message.
    pub fn gave_up(&self) -> String {
        if self.retryable() && self.attempts > 1 {
            format!(" (gave up after {} attempts)", self.attempts)
        } else {
            String::new()
        }
    }
}

/// POSTs `body` as JSON until it is taken, refused for good, or the attempts run out; `headers`
/// gives each attempt's extra headers (a signature made per attempt stays fresh after a long
/// wait).
pub async fn post_json(
    post: &Post<'_>,
    body: &[u8],
    headers: impl Fn(&[u8]) -> Vec<(&'static str, String)>,
) -> Result<Posted, Unposted> {
    let attempts = post.backoff.attempts.max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut request = post
            .client
            .post(post.url.clone())
            .timeout(post.timeout)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body.to_vec());
        for (name, value) in headers(body) {
            request = request.header(name, value);
        }
        let (refusal, wait_hint) = match request.send().await {
            Ok(response) if response.status().is_success() => {
                return Ok(Posted {
                    status: response.status(),
                    attempts: attempt,
                });
            }
            Ok(response) => {
                let status = response.status();
                let wait_hint = retry_after(response.headers());
                let raw = read_limited(response, ERROR_BODY_MAX).await;
                let detail = answer_detail(&raw, post.secrets);
                (Refusal::Status { status, detail }, wait_hint)
            }
            Err(e) => (Refusal::Transport(e.without_url()), None),
        };
        let unposted = Unposted {
            refusal,
            attempts: attempt,
        };
        if !unposted.retryable() || attempt >= attempts {
            return Err(unposted);
        }
        let wait = post.backoff.delay(attempt, wait_hint);
        tracing::debug!(
            who = post.who,
            attempt,
            wait_ms = wait.as_millis() as u64,
            refusal = ?unposted.refusal,
            "not taken yet; retrying"
        );
        tokio::time::sleep(wait).await;
    }
}
