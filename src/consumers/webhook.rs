//! A `webhook` consumer gets a signed JSON POST `prepare` before the certificate is published and
//! `activate` right after promotion (retried on transport errors, 429 and 5xx); its adoption is
//! polled from `status_url`, or is the activate POST's 2xx without one.

use super::http::{Http, REQUEST_TIMEOUT};
use super::{Adoption, Announcement, Consumer, Identity, Notice, expect_stage};
use async_trait::async_trait;
use rekey_api::{Backoff, Endpoint, Result, SecretString, endpoint};
use rekey_http::{Post, post_json, signed_headers};
use std::fmt;

/// A consumer told by signed POSTs.
pub(super) struct WebhookConsumer {
    id: Identity,
    endpoint: Endpoint,
    secret: SecretString,
    status: Option<Endpoint>,
    http: Http,
    backoff: Backoff,
}

impl fmt::Debug for WebhookConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The host only: a URL's path or query may carry a token, and the secret never shows.
        f.debug_struct("WebhookConsumer")
            .field("name", &self.id.name)
            .field("host", &self.endpoint.host)
            .field("status_host", &self.status.as_ref().map(|s| &s.host))
            .field("adopt_timeout", &self.id.adopt_timeout)
            .finish_non_exhaustive()
    }
}

impl WebhookConsumer {
    /// A webhook consumer POSTing to `url`, signing with `secret`, retrying per `backoff`.
    pub(super) fn new(
        id: Identity,
        url: &str,
        secret: SecretString,
        status_url: Option<&str>,
        backoff: Backoff,
    ) -> Result<WebhookConsumer> {
        let named = format!("webhook consumer '{}'", id.name);
        let endpoint = endpoint(url, "url", &named)?;
        let status = status_url
            .map(|u| rekey_api::endpoint(u, "status_url", &named))
            .transpose()?;
        let http = Http::new(format!("{named} ({})", endpoint.host))?;
        Ok(WebhookConsumer {
            id,
            endpoint,
            secret,
            status,
            http,
            backoff,
        })
    }

    /// POSTs the signed notice until a 2xx, a final answer, or the attempts run out.
    async fn post(&self, notice: Notice, p: &Announcement<'_>) -> Result<String> {
        let body = serde_json::to_vec(&serde_json::json!({
            "event": notice.as_str(),
            "credential": p.credential,
            "generation": p.generation,
            "new_fingerprint": p.new_fingerprint,
            "old_fingerprint": p.old_fingerprint,
            "read_from": p.read_from,
        }))
        .expect("a JSON value always serializes");
        let label = self.label();
        let post = Post {
            client: self.http.client(),
            url: &self.endpoint.url,
            timeout: REQUEST_TIMEOUT,
            backoff: self.backoff,
            secrets: &[self.secret.expose_secret()],
            who: &label,
        };
        // Signed per attempt, so a retry after a long wait is still fresh for the receiver.
        let signed = |body: &[u8]| signed_headers(self.secret.expose_secret().as_bytes(), body);
        match post_json(&post, &body, signed).await {
            Ok(posted) => {
                let tries = if posted.attempts > 1 {
                    format!(" (attempt {})", posted.attempts)
                } else {
                    String::new()
                };
                Ok(format!(
                    "{} accepted {} of generation {}: HTTP {}{tries}",
                    self.endpoint.host,
                    notice.as_str(),
                    p.generation,
                    posted.status.as_u16()
                ))
            }
            Err(unposted) => Err(self.http.refused(notice.as_str(), unposted)),
        }
    }
}

#[async_trait]
impl Consumer for WebhookConsumer {
    fn identity(&self) -> &Identity {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn label(&self) -> String {
        format!(
            "webhook consumer '{}' ({})",
            self.id.name, self.endpoint.host
        )
    }

    async fn prepare(&self, p: &Announcement<'_>) -> Result<String> {
        expect_stage(&self.label(), Notice::Prepare, p)?;
        self.post(Notice::Prepare, p).await
    }

    async fn activate(&self, p: &Announcement<'_>) -> Result<String> {
        expect_stage(&self.label(), Notice::Activate, p)?;
        self.post(Notice::Activate, p).await
    }

    async fn adopted(&self, p: &Announcement<'_>) -> Result<Adoption> {
        match &self.status {
            Some(status) => self.http.poll(status, p).await,
            None => Ok(Adoption::Adopted {
                detail: format!(
                    "{} accepted activate (no status_url to ask)",
                    self.endpoint.host
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::consumers::testing::*;
    use rekey_api::{ErrorKind, Stage};
    use rekey_testkit::receiver::{Receiver, Reply};
    use std::time::Duration;

    #[tokio::test]
    async fn a_webhook_gets_the_exact_signed_payload_and_is_retried_after_a_503() {
        let dir = tempfile::tempdir().unwrap();
        let receiver = Receiver::start(
            vec![Reply::status(503, r#"{"message":"warming up"}"#)],
            Reply::status(200, "ok"),
        )
        .await;
        let hook = webhook(dir.path(), &receiver.url("/rekey/in?token=t0p"), None);
        let debug = format!("{hook:?}");
        assert!(
            debug.contains("127.0.0.1") && !debug.contains(SECRET) && !debug.contains("t0p"),
            "{debug}"
        );

        let detail = hook.prepare(&announce(Stage::Pending)).await.unwrap();
        assert_eq!(
            detail,
            "127.0.0.1 accepted prepare of generation 7: HTTP 200 (attempt 2)"
        );
        let detail = hook.activate(&announce(Stage::Current)).await.unwrap();
        assert_eq!(
            detail,
            "127.0.0.1 accepted activate of generation 7: HTTP 200"
        );

        let (_, cert, _, old) = pairs();
        let requests = receiver.requests();
        assert_eq!(requests.len(), 3, "{requests:?}");
        for (request, event) in requests.iter().zip(["prepare", "prepare", "activate"]) {
            assert_eq!(request.method, "POST");
            assert_eq!(request.path, "/rekey/in");
            assert_eq!(
                request.header("content-type").as_deref(),
                Some("application/json")
            );
            assert_eq!(
                request.json(),
                serde_json::json!({
                    "event": event,
                    "credential": "billing",
                    "generation": 7,
                    "new_fingerprint": cert.fingerprint.to_hex(),
                    "old_fingerprint": old.fingerprint.to_hex(),
                    "read_from": "vault secret/rekey/billing/pending",
                })
            );
            let timestamp = request.header(rekey_http::TIMESTAMP_HEADER).unwrap();
            let signature = request.header(rekey_http::SIGNATURE_HEADER).unwrap();
            assert!(signature.starts_with("sha256="), "{signature}");
            assert!(rekey_http::verify_signature(
                SECRET.as_bytes(),
                &timestamp,
                &request.body,
                &signature,
                chrono::Utc::now(),
                Duration::from_secs(300),
            ));
            assert!(!rekey_http::verify_signature(
                b"another secret",
                &timestamp,
                &request.body,
                &signature,
                chrono::Utc::now(),
                Duration::from_secs(300),
            ));
            assert_no_key(&String::from_utf8_lossy(&request.body));
        }

        // A refusal is final; a consumer that stays down is given up on, as a temporary error.
        let refusing = Receiver::answering(401, r#"{"error":"bad signature"}"#).await;
        let hook = webhook(dir.path(), &refusing.url("/in"), None);
        let err = hook.prepare(&announce(Stage::Pending)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unauthenticated);
        assert!(!err.is_temporary());
        assert_eq!(refusing.count(), 1);
        assert_eq!(
            err.to_string(),
            "webhook consumer 'mw' (127.0.0.1): prepare: HTTP 401 (bad signature)"
        );
        let down = Receiver::answering(503, "").await;
        let hook = webhook(dir.path(), &down.url("/in"), None);
        let err = hook.activate(&announce(Stage::Current)).await.unwrap_err();
        assert!(err.is_temporary(), "{err:?}");
        assert!(
            err.to_string()
                .ends_with("HTTP 503 (gave up after 3 attempts)"),
            "{err}"
        );
        assert_eq!(down.count(), 3);
        let refusing = rekey_testkit::receiver::RefusingPort::bind();
        let hook = webhook(dir.path(), &refusing.url("/in"), None);
        let err = hook.prepare(&announce(Stage::Pending)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert!(err.to_string().contains("could not connect"), "{err}");
    }

    #[test]
    fn a_webhook_secret_that_is_not_there_names_the_consumer_and_where_it_is_configured() {
        let dir = tempfile::tempdir().unwrap();
        let unset = "REKEY_CONSUMER_TEST_UNSET_5e1b";
        assert!(std::env::var_os(unset).is_none());
        let text = format!(
            "{BASE}\n[[credentials.billing.consumers]]\nname = \"mw\"\nkind = \"webhook\"\nurl = \"https://mw.example/in\"\nsecret_env = \"{unset}\"\n"
        );
        let config = crate::config::parse(&text, &dir.path().join("rekey.toml")).unwrap();
        let err = crate::consumers::CredentialConsumers::from_config(
            &config.credentials["billing"],
            &|_: &str| None,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("rekey.toml:19:1: consumer 'mw'") && text.contains(unset),
            "{text}"
        );
        assert!(
            err.hint()
                .unwrap()
                .contains("secret_file = \"PATH\" in [[credentials.billing.consumers]] 'mw'"),
            "{err:?}"
        );
    }
}
