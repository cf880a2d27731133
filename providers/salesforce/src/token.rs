//! One org's OAuth token endpoint: the JWT-bearer grant (the admin login, probes of integration
//! keys, `rekey token`) and the client credentials grant (probes of consumer secrets, `rekey
//! token` for them), with one reading of the answer for both.
//!
//! Assertions, secrets and tokens travel only in form bodies and zeroed buffers; no message built
//! here quotes a body, only the OAuth error code and text Salesforce put in it.

use crate::client::{content_type, html_error, is_html, transport};
use crate::mint::Refusal;
use rekey_api::{Error, ErrorKind, Result, SecretString, Signer};
use rekey_http::log::SendLogged as _;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;
use zeroize::Zeroizing;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

const JWT_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Salesforce wants assertions that expire "within 3 minutes".
const ASSERTION_LIFETIME_SECS: i64 = 180;

/// What the token endpoint said to one grant request.
pub(crate) enum TokenAnswer {
    /// A token was issued.
    Granted {
        access_token: SecretString,
        instance_url: String,
    },
    /// A 4xx with Salesforce's OAuth error.
    Refused(Refusal),
}

/// One org's OAuth token endpoint: JWT-bearer grants for the admin login, for probes of the
/// integration keys, and for consumers minting with them (no admin connection needed); client
/// credentials grants for consumer secrets.
#[derive(Debug)] // safe: no secret is kept here
pub(crate) struct TokenEndpoint {
    http: reqwest::Client,
    org: String,
    login_url: String,
    audience: String,
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
}

/// Signs a JWT-bearer assertion, here or in the key's service. `whose` names the key in errors
/// ("admin key").
async fn assertion(
    iss: &str,
    sub: &str,
    aud: &str,
    signer: Signer<'_>,
    whose: &str,
) -> Result<SecretString> {
    let claims = Claims {
        iss,
        sub,
        aud,
        exp: rekey_api::now().timestamp() + ASSERTION_LIFETIME_SECS,
    };
    signer
        .jwt(&claims)
        .await
        .map_err(|e| e.context(format!("cannot sign a JWT with the {whose}")))
}

impl TokenEndpoint {
    /// The token endpoint of the org at `login_url` (already checked by [`check_url`]); no
    /// request is made yet.
    pub(crate) fn new(
        org: &str,
        login_url: String,
        audience: &str,
        request_timeout: Duration,
    ) -> Result<Self> {
        let http = Self::client(org, request_timeout)?;
        Ok(Self::with_client(org, login_url, audience, http))
    }

    /// The HTTP client of an org's calls with `request_timeout`.
    pub(crate) fn client(org: &str, request_timeout: Duration) -> Result<reqwest::Client> {
        // No redirects: one would be an HTML login page or a misconfigured host; it is surfaced
        // instead.
        rekey_http::build_client(
            rekey_http::client_builder()
                .timeout(request_timeout)
                .connect_timeout(CONNECT_TIMEOUT),
            &format!("salesforce org {org}"),
        )
    }

    /// The token endpoint of the org at `login_url`, through `http` (built by
    /// [`TokenEndpoint::client`]).
    pub(crate) fn with_client(
        org: &str,
        login_url: String,
        audience: &str,
        http: reqwest::Client,
    ) -> Self {
        TokenEndpoint {
            http,
            org: org.to_string(),
            login_url,
            audience: audience.to_string(),
        }
    }

    /// The `reqwest` client, shared with the API calls (one connection pool).
    pub(crate) fn http(&self) -> reqwest::Client {
        self.http.clone()
    }

    /// The login host (no trailing slash).
    pub(crate) fn login_url(&self) -> &str {
        &self.login_url
    }

    /// The org's label, for messages.
    pub(crate) fn org(&self) -> &str {
        &self.org
    }

    /// One JWT-bearer token request.
    pub(crate) async fn request(
        &self,
        iss: &str,
        sub: &str,
        signer: Signer<'_>,
        whose: &str,
    ) -> Result<TokenAnswer> {
        let what = format!("token request for {sub} in org {}", self.org);
        let jwt = assertion(iss, sub, &self.audience, signer, whose).await?;
        let form = [
            ("grant_type", JWT_GRANT),
            ("assertion", jwt.expose_secret()),
        ];
        self.grant(&what, &form).await
    }

    /// One grant request with `form`, and Salesforce's answer read: a token, an OAuth refusal
    /// (4xx), or an error (temporary for 5xx, limits, throttling and maintenance pages).
    pub(crate) async fn grant(&self, what: &str, form: &[(&str, &str)]) -> Result<TokenAnswer> {
        let url = format!("{}/services/oauth2/token", self.login_url);
        let resp = self
            .http
            .post(&url)
            .form(form)
            .send_logged()
            .await
            .map_err(|e| transport(what, e))?;
        let status = resp.status();
        let content_type = content_type(&resp);
        // The body of a 200 holds the access token: keep it in a zeroed buffer.
        let body = Zeroizing::new(resp.text().await.map_err(|e| transport(what, e))?);
        if is_html(&content_type, &body) {
            return Err(html_error(what, status, &body));
        }
        if status.is_server_error() {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("{what}: token endpoint answered HTTP {}", status.as_u16()),
            )
            .temporary());
        }
        // The REST limit answer (403 REQUEST_LIMIT_EXCEEDED, or a plain 429) can come from any
        // endpoint behind the org's gateway, the token endpoint included.
        if status == StatusCode::TOO_MANY_REQUESTS || body.contains("REQUEST_LIMIT_EXCEEDED") {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("{what}: HTTP {}: REQUEST_LIMIT_EXCEEDED", status.as_u16()),
            )
            .with_hint("the org's API request limit is exhausted; wait for it to recover")
            .temporary());
        }
        let json: Option<Value> = serde_json::from_str(&body).ok();
        let field = |name: &str| {
            json.as_ref()
                .and_then(|v| v.get(name))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        if status.is_success() {
            return match (
                field("access_token").map(SecretString::new),
                field("instance_url"),
            ) {
                (Some(token), Some(instance_url)) => Ok(TokenAnswer::Granted {
                    access_token: token,
                    instance_url,
                }),
                _ => Err(Error::new(
                    ErrorKind::Unexpected,
                    format!(
                        "{what}: token endpoint answered HTTP 200 without access_token and instance_url"
                    ),
                )),
            };
        }
        match field("error") {
            Some(error) if error == "rate_limit_exceeded" => Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "{what}: {error}: {}",
                    field("error_description").unwrap_or_default()
                ),
            )
            .with_hint("Salesforce is throttling logins for this user; wait a few minutes")
            .temporary()),
            Some(error) if status.is_client_error() => Ok(TokenAnswer::Refused(Refusal {
                error,
                description: field("error_description").unwrap_or_default(),
            })),
            _ => Err(Error::new(
                ErrorKind::Unexpected,
                format!(
                    "{what}: token endpoint answered HTTP {} without an OAuth error",
                    status.as_u16()
                ),
            )),
        }
    }
}
