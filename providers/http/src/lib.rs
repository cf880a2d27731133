//! rekey's shared HTTP plumbing, for everything that POSTs to or polls a receiver rekey was
//! configured with (alert channels, webhook consumers) and for the Salesforce target:
//!
//! - [`http_client`] / [`client_builder`]: a bounded connect and no redirects, which would
//!   re-send a signed body (or a secret URL) elsewhere.
//! - [`status_kind`] and [`retryable`]: what an HTTP status means for rekey.
//! - [`transport_error`] and [`transport_how`]: the one wording for a request that got no answer.
//! - [`read_limited`], [`answer_detail`], [`one_line`] and [`truncate`]: a receiver's own words
//!   in a message, bounded, on one line, without secrets.
//! - [`signature`] and [`verify_signature`]: the webhook signing scheme (module [`signing`]).
//! - [`post_json`]: one JSON body POSTed until a receiver takes it, retried per a `Backoff`.
//! - [`log::send`] and [`log::log_request`]: the request log of `-v` (method, host, path) and
//!   `-vv` (status, time), never a query, header or body.
//!
//! Errors are `rekey_api::Error`s; no message built here contains a URL's path or query.

pub mod log;
pub mod post;
pub mod signing;

pub use post::{Post, Posted, Refusal, Unposted, post_json};
pub use signing::{
    SIGNATURE_HEADER, TIMESTAMP_HEADER, signature, signed_headers, verify_signature,
};

use rekey_api::{Error, ErrorKind, Result};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use std::fmt;
use std::time::Duration;

/// How long connecting may take before a request counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of an answer's own words goes into a message, in characters.
pub const DETAIL_MAX: usize = 200;
/// How much of an error answer is read for its explanation, in bytes.
pub const ERROR_BODY_MAX: usize = 4096;

/// A client builder with rekey's defaults: connecting bounded by [`CONNECT_TIMEOUT`], no
/// redirects (a redirect would re-send a signed body, a secret URL or a token elsewhere; the
/// caller reports the 3xx instead), and a `rekey/<version>` user agent. Callers add their own
/// request timeout.
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("rekey/", env!("CARGO_PKG_VERSION")))
}

/// Builds `builder`; `label` names its user in the error.
pub fn build_client(builder: reqwest::ClientBuilder, label: &str) -> Result<reqwest::Client> {
    builder.build().map_err(|e| {
        Error::new(
            ErrorKind::Unexpected,
            format!("{label}: cannot build the HTTP client"),
        )
        .with_source(e.without_url())
    })
}

/// The HTTP client for signed deliveries (alert channels, webhook consumers): [`client_builder`]
/// as it is. `label` names its user in the error.
pub fn http_client(label: &str) -> Result<reqwest::Client> {
    build_client(client_builder(), label)
}

/// What an HTTP error status from a receiver means: 429 and 5xx temporary, auth, not found, or
/// refused.
pub fn status_kind(status: StatusCode) -> ErrorKind {
    match status.as_u16() {
        401 => ErrorKind::Unauthenticated,
        403 => ErrorKind::PermissionDenied,
        404 | 410 => ErrorKind::NotFound,
        429 | 500..=599 => ErrorKind::Unavailable,
        400..=499 => ErrorKind::Rejected,
        _ => ErrorKind::Unexpected,
    }
}

/// Whether asking again may get another answer: 429 and 5xx.
pub fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// The `Retry-After: <seconds>` of an answer, if it has one in that form (the HTTP-date form is
/// not used by the receivers rekey talks to).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// How a request that got no answer failed: `request timed out`, `could not connect` or
/// `request failed`.
pub fn transport_how(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "request timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    }
}

/// The error for a request that got no answer: `Unavailable` and temporary (connection refused,
/// timeout, reset are worth a retry), `"<what>: <how>"` ([`transport_how`]), with the cause
/// attached without its URL (a path or query may carry a token). Callers add a hint naming what
/// to check.
pub fn transport_error(what: impl fmt::Display, e: reqwest::Error) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!("{what}: {}", transport_how(&e)),
    )
    .with_source(e.without_url())
    .temporary()
}

/// At most `max` bytes of an answer's body; whatever cannot be read counts as the end (the body
/// only ever explains a status that is already known).
pub async fn read_limited(mut response: reqwest::Response, max: usize) -> Vec<u8> {
    let mut raw = Vec::new();
    while raw.len() < max {
        match response.chunk().await {
            Ok(Some(chunk)) => raw.extend_from_slice(&chunk),
            _ => break,
        }
    }
    raw.truncate(max);
    raw
}

/// A receiver's own words from an error answer, for a message: the `status`, `message` and
/// `error` strings and the `errors` array of a JSON body, joined by `; `, or the first line of a
/// text body (nothing for an HTML page); every one of `secrets` replaced by `***`; then
/// [`one_line`] of at most [`DETAIL_MAX`] characters. Empty when there is nothing to say.
pub fn answer_detail(body: &[u8], secrets: &[&str]) -> String {
    let body = String::from_utf8_lossy(body);
    let mut text = match serde_json::from_str::<serde_json::Value>(&body) {
        Ok(v) => {
            let mut parts: Vec<&str> = ["status", "message", "error"]
                .iter()
                .filter_map(|k| v.get(k).and_then(|s| s.as_str()))
                .collect();
            if let Some(errors) = v.get("errors").and_then(|e| e.as_array()) {
                parts.extend(errors.iter().filter_map(|e| e.as_str()));
            }
            parts.join("; ")
        }
        Err(_) if body.trim_start().starts_with('<') => String::new(),
        Err(_) => body.lines().next().unwrap_or_default().to_string(),
    };
    // Masked before the cut, so that a secret straddling the cut cannot survive in part.
    for secret in secrets {
        if !secret.is_empty() && *secret != "/" {
            text = text.replace(secret, "***");
        }
    }
    one_line(&text, DETAIL_MAX)
}

/// `text` on one line for a message: control characters (newlines, escapes) become spaces, the
/// ends are trimmed, and it is [`truncate`]d to `max` characters.
pub fn one_line(text: &str, max: usize) -> String {
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    truncate(text.trim(), max)
}

/// Cuts `text` to at most `max` characters, ending with `…` when it was cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_mean_what_rekey_does_about_them() {
        let kind = |code: u16| status_kind(StatusCode::from_u16(code).unwrap());
        assert_eq!(kind(401), ErrorKind::Unauthenticated);
        assert_eq!(kind(403), ErrorKind::PermissionDenied);
        assert_eq!(kind(410), ErrorKind::NotFound);
        assert_eq!(kind(429), ErrorKind::Unavailable);
        assert_eq!(kind(503), ErrorKind::Unavailable);
        assert_eq!(kind(400), ErrorKind::Rejected);
        assert_eq!(kind(302), ErrorKind::Unexpected);
        assert!(retryable(StatusCode::TOO_MANY_REQUESTS));
        assert!(retryable(StatusCode::BAD_GATEWAY));
        assert!(!retryable(StatusCode::UNAUTHORIZED));
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, " 7 ".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn an_answer_is_one_short_line_of_the_receivers_words_without_secrets() {
        assert_eq!(
            answer_detail(
                br#"{"status":"Internal error","message":"try again","errors":["overloaded"]}"#,
                &[]
            ),
            "Internal error; try again; overloaded"
        );
        assert_eq!(
            answer_detail(b"bad key R0UT1NG\nsecond line", &["R0UT1NG", "", "/"]),
            "bad key ***"
        );
        assert_eq!(answer_detail(b"<html><title>Down</title></html>", &[]), "");
        let long = format!("{}SECRET", "x".repeat(DETAIL_MAX - 3));
        let cut = answer_detail(long.as_bytes(), &["SECRET"]);
        assert!(!cut.contains("SEC"), "masked before the cut: {cut}");
        assert_eq!(cut.chars().count(), DETAIL_MAX);
        assert_eq!(one_line(" a\r\nb\u{1b}[31m ", 10), "a  b [31m");
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "ab…");
        assert_eq!(truncate("ééééé", 4), "ééé…");
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_temporary_could_not_connect_without_the_url() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let client = http_client("test").unwrap();
        let e = client
            .get(format!("http://127.0.0.1:{port}/hook/SECRET"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(transport_how(&e), "could not connect");
        let err = transport_error("webhook consumer 'etl'", e);
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert!(err.is_temporary());
        assert_eq!(err.message(), "webhook consumer 'etl': could not connect");
        assert!(!format!("{err} {err:?}").contains("SECRET"), "{err:?}");
    }
}
