//! Talking to consumers over HTTP: one client per consumer, polling a status URL for the
//! fingerprint a consumer uses, and the errors for what a consumer answered (or did not).

use super::{Adoption, Announcement};
use rekey_api::{Endpoint, Error, ErrorKind, Fingerprint, Result};
use rekey_http::{
    ERROR_BODY_MAX, Refusal, Unposted, answer_detail, read_limited, retryable, transport_how,
};
use reqwest::StatusCode;
use reqwest::header::ACCEPT;
use std::time::Duration;

/// One HTTP request (connect, send, answer).
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a status document is read.
const STATUS_MAX: usize = 64 * 1024;

/// How a consumer is reached over HTTP: its client (no redirects, bounded connect) and how errors
/// name it.
pub(super) struct Http {
    label: String,
    client: reqwest::Client,
}

impl Http {
    /// A client for the consumer errors call `label`.
    pub(super) fn new(label: String) -> Result<Http> {
        let client = rekey_http::http_client(&label)?;
        Ok(Http { label, client })
    }

    /// The client.
    pub(super) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// One GET of a status URL.
    pub(super) async fn poll(&self, status: &Endpoint, p: &Announcement<'_>) -> Result<Adoption> {
        let host = &status.host;
        let response = match self
            .client
            .get(status.url.clone())
            .timeout(REQUEST_TIMEOUT)
            .header(ACCEPT, "application/json")
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                return Ok(Adoption::Waiting {
                    detail: format!("status at {host}: {}", transport_how(&e)),
                });
            }
        };
        let code = response.status();
        if retryable(code) {
            return Ok(Adoption::Waiting {
                detail: format!("status at {host}: HTTP {}", code.as_u16()),
            });
        }
        if !code.is_success() {
            let detail = answer_detail(&read_limited(response, ERROR_BODY_MAX).await, &[]);
            return Err(self.status_error(code, "status", &detail));
        }
        let body = read_limited(response, STATUS_MAX).await;
        let reported = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("fingerprint")?.as_str().map(str::to_string))
            .and_then(|f| Fingerprint::parse(&f).ok());
        let Some(reported) = reported else {
            return Err(Error::new(
                ErrorKind::Rejected,
                format!(
                    "{}: the status at {host} is not {{\"fingerprint\": \"<64 hex digits>\"}}",
                    self.label
                ),
            )
            .with_hint("the consumer's status URL must answer the SHA-256 fingerprint of the certificate whose key it uses"));
        };
        Ok(if reported == p.new_fingerprint {
            Adoption::Adopted {
                detail: format!("{host} reports {reported} (generation {})", p.generation),
            }
        } else {
            Adoption::Waiting {
                detail: format!(
                    "{host} reports {reported}, not yet {} (generation {})",
                    p.new_fingerprint, p.generation
                ),
            }
        })
    }

    pub(super) fn status_error(&self, status: StatusCode, what: &str, detail: &str) -> Error {
        let code = status.as_u16();
        let kind = rekey_http::status_kind(status);
        let detail = if detail.is_empty() {
            String::new()
        } else {
            format!(" ({detail})")
        };
        let hint = match code {
            401 | 403 => {
                "the consumer refused the request: check that both sides use the same signing secret and that their clocks agree"
            }
            300..=399 => "redirects are not followed: configure the consumer's final URL",
            429 | 500..=599 => "the consumer is failing or unavailable; retry later",
            _ => "check the consumer's URL and its logs",
        };
        let error = Error::new(kind, format!("{}: {what}: HTTP {code}{detail}", self.label))
            .with_hint(hint);
        if retryable(status) {
            error.temporary()
        } else {
            error
        }
    }

    pub(super) fn transport_error(&self, e: reqwest::Error, what: &str) -> Error {
        Error::new(
            ErrorKind::Unavailable,
            format!("{}: {what}: {}", self.label, transport_how(&e)),
        )
        .with_hint("check that this host can reach the consumer (proxy, firewall, DNS)")
        // Without the URL: its path or query may carry a token.
        .with_source(e.without_url())
        .temporary()
    }

    /// The error for a notice `what` the consumer did not take.
    pub(super) fn refused(&self, what: &str, unposted: Unposted) -> Error {
        let gave_up = unposted.gave_up();
        let error = match unposted.refusal {
            Refusal::Status { status, detail } => self.status_error(status, what, &detail),
            Refusal::Transport(e) => self.transport_error(e, what),
        };
        if gave_up.is_empty() {
            return error;
        }
        let mut out = Error::new(error.kind(), format!("{}{gave_up}", error.message())).temporary();
        if let Some(hint) = error.hint() {
            out = out.with_hint(hint);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumers::testing::*;
    use rekey_api::Stage;
    use rekey_testkit::receiver::{Receiver, Reply};

    #[tokio::test]
    async fn adoption_is_polled_until_the_status_reports_the_new_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let (_, cert, _, old) = pairs();
        let answer = |f: &Fingerprint| Reply::status(200, &format!(r#"{{"fingerprint":"{f}"}}"#));
        // openssl's form (colons, upper case) is the same fingerprint.
        let openssl_form = cert
            .fingerprint
            .to_hex()
            .to_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(":");
        let status = Receiver::start(
            vec![
                answer(&old.fingerprint),
                Reply::status(503, "restarting"),
                Reply::status(200, &format!(r#"{{"fingerprint":"{openssl_form}"}}"#)),
            ],
            Reply::status(500, ""),
        )
        .await;
        let posts = Receiver::answering(204, "").await;
        let hook = webhook(dir.path(), &posts.url("/in"), Some(&status.url("/status")));
        let p = announce(Stage::Current);
        let first = hook.adopted(&p).await.unwrap();
        assert_eq!(
            first,
            Adoption::Waiting {
                detail: format!(
                    "127.0.0.1 reports {}, not yet {} (generation 7)",
                    old.fingerprint, cert.fingerprint
                )
            }
        );
        let second = hook.adopted(&p).await.unwrap();
        assert_eq!(second.detail(), "status at 127.0.0.1: HTTP 503");
        assert!(!second.is_adopted());
        let third = hook.adopted(&p).await.unwrap();
        assert!(third.is_adopted(), "{third:?}");
        assert_eq!(
            third.detail(),
            format!("127.0.0.1 reports {} (generation 7)", cert.fingerprint)
        );
        assert!(status.requests().iter().all(|r| r.method == "GET"));
        assert_eq!(posts.count(), 0, "polling never POSTs");

        // Without a status URL the accepted activate is the adoption; a store consumer reads the
        // store; a status that is not a fingerprint is an error, not a wait.
        let plain = webhook(dir.path(), &posts.url("/in"), None);
        assert!(plain.adopted(&p).await.unwrap().is_adopted());
        let store = one(dir.path(), "name = \"etl\"\nkind = \"store\"\n");
        assert_eq!(
            store.prepare(&announce(Stage::Pending)).await.unwrap(),
            "reads CURRENT from the store"
        );
        assert_eq!(
            store.activate(&p).await.unwrap(),
            "reads CURRENT from the store"
        );
        assert!(store.adopted(&p).await.unwrap().is_adopted());
        let garbled = Receiver::answering(200, r#"{"status":"ok"}"#).await;
        let polled = one(
            dir.path(),
            &format!(
                "name = \"etl\"\nkind = \"store\"\nstatus_url = \"{}\"\nadopt_timeout_secs = 5\n",
                garbled.url("/status")
            ),
        );
        assert_eq!(polled.adopt_timeout(), Duration::from_secs(5));
        let err = polled.adopted(&p).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Rejected);
        let refusing = rekey_testkit::receiver::RefusingPort::bind();
        let gone = one(
            dir.path(),
            &format!(
                "name = \"etl\"\nkind = \"store\"\nstatus_url = \"{}\"\n",
                refusing.url("/s")
            ),
        );
        assert_eq!(
            gone.adopted(&p).await.unwrap().detail(),
            "status at 127.0.0.1: could not connect"
        );
    }
}
