//! Access tokens for the consumers of an integration credential, through the org's token
//! endpoint only (no admin connection), with temporary failures retried: one JWT-bearer grant
//! for the integration user signed with a key the caller chose ([`Minter`]), or one client
//! credentials grant with a consumer key and secret ([`ClientCredentialsMinter`]).

use crate::config::check_url;
use crate::token::{TokenAnswer, TokenEndpoint};
use rekey_api::{Backoff, ConsumerSecret, Error, ErrorKind, Result, SecretString, Signer};
use std::fmt;
use std::future::Future;
use std::time::Duration;

/// Grants tried per mint ([`Minter::mint`], [`ClientCredentialsMinter::mint`]) when Salesforce fails temporarily (5xx, timeout,
/// `REQUEST_LIMIT_EXCEEDED`, login throttling, a maintenance page): 4, waiting 300 ms (with
/// jitter, so consumers that failed together spread out) and doubling.
const MINT_RETRY: Backoff = Backoff::new(4, Duration::from_millis(300), Duration::from_secs(10));

/// Where and as whom [`Minter`] asks for tokens.
#[derive(Debug)]
pub struct MintConfig {
    /// Label for messages, e.g. `acme`.
    pub org: String,
    /// Token endpoint base, e.g. `https://acme.my.salesforce.com`.
    pub login_url: String,
    /// JWT `aud`.
    pub audience: String,
    /// The integration app's consumer key (JWT `iss`).
    pub consumer_key: String,
    /// The integration user (JWT `sub`).
    pub username: String,
    /// Give up on one HTTP request after this (it is then retried like any temporary failure).
    pub request_timeout: Duration,
}

/// An access token Salesforce issued, and the instance it is for.
#[derive(Debug)] // safe: SecretString redacts itself
pub struct Minted {
    /// The token; zeroed on drop, redacted in `Debug`.
    pub access_token: SecretString,
    /// The instance to send it to (`https`, or loopback `http` for the emulator).
    pub instance_url: String,
}

/// Salesforce's OAuth error for a grant it refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// `error`, e.g. `invalid_grant`.
    pub error: String,
    /// `error_description`, e.g. `invalid assertion`.
    pub description: String,
}

impl Refusal {
    /// Whether the app does not trust the signing key right now (`invalid_grant: invalid
    /// assertion`): a key that does not match the app's certificate, or one that has not (or no
    /// longer) propagated after a certificate change. Every other refusal is about the app, the
    /// user or the request, and another key would be refused the same way.
    pub fn untrusted_key(&self) -> bool {
        self.error == "invalid_grant" && self.description == "invalid assertion"
    }

    /// What to do about it, for the `role` ("admin", "integration") whose key, app and user
    /// were refused.
    pub fn hint(&self, role: &str) -> String {
        match (self.error.as_str(), self.description.as_str()) {
            (_, d) if d.contains("hasn't approved") => format!(
                "pre-authorize the {role} user's profile or permission set on the {role} app (policy: admin approved users are pre-authorized)"
            ),
            (_, d) if d.contains("audience") => "set audience and login_url to the org's My Domain URL (https://<domain>.my.salesforce.com)".into(),
            ("invalid_client_id", _) => format!("check the {role} app's consumer key"),
            ("invalid_app_access", _) => {
                format!("assign the {role} user's profile or permission set to the {role} app")
            }
            _ if self.untrusted_key() => {
                format!("the {role} key does not match the certificate uploaded to the {role} app")
            }
            (_, d) if d.contains("no client credentials user") => format!(
                "give the {role} app a client credentials run-as user, one with the API Only permission (External Client App Manager → the app → Policies → OAuth Policies → Client Credentials Flow → Run As)"
            ),
            (_, d) if d.contains("client credentials flow is not enabled") => format!(
                "enable the client credentials flow on the {role} app (its OAuth settings and its OAuth policies)"
            ),
            ("app_not_found", _) => "use the org's My Domain URL as login_url and audience (not test.salesforce.com)".into(),
            _ => format!("check the {role} app, the {role} user and the login URL"),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error, self.description)
    }
}

/// What Salesforce answered a grant.
#[derive(Debug)]
pub enum Mint {
    /// A token was issued.
    Granted(Minted),
    /// Refused with an OAuth error (HTTP 4xx).
    Refused(Refusal),
}

/// Mints access tokens for one integration user of one app.
#[derive(Debug)]
pub struct Minter {
    endpoint: TokenEndpoint,
    consumer_key: String,
    username: String,
}

impl Minter {
    /// Checks the configuration (names, https) without contacting Salesforce.
    pub fn new(config: MintConfig) -> Result<Self> {
        for (field, value) in [
            ("consumer_key", &config.consumer_key),
            ("username", &config.username),
            ("audience", &config.audience),
        ] {
            if value.trim().is_empty() {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("token for org {}: '{field}' is empty", config.org),
                ));
            }
        }
        let login_url = check_url("login_url", &config.login_url)?;
        Ok(Minter {
            endpoint: TokenEndpoint::new(
                &config.org,
                login_url,
                &config.audience,
                config.request_timeout,
            )?,
            consumer_key: config.consumer_key,
            username: config.username,
        })
    }

    /// Asks for a token signed by `signer` (a key here, or its service). Temporary failures are
    /// retried a few times with backoff; a refusal is an answer, not an error.
    pub async fn mint(&self, signer: Signer<'_>) -> Result<Mint> {
        retrying(&self.endpoint, || {
            self.endpoint.request(
                &self.consumer_key,
                &self.username,
                signer,
                "integration key",
            )
        })
        .await
    }
}

/// Where [`ClientCredentialsMinter`] asks for tokens. There is no user and no consumer key here:
/// the consumer key comes with the secret, and Salesforce issues the token for the app's run-as
/// user.
#[derive(Debug)]
pub struct ClientCredentialsConfig {
    /// Label for messages, e.g. `acme`.
    pub org: String,
    /// Token endpoint base: the org's My Domain, e.g. `https://acme.my.salesforce.com` (the
    /// client credentials flow is refused on login.salesforce.com).
    pub login_url: String,
    /// Give up on one HTTP request after this (it is then retried like any temporary failure).
    pub request_timeout: Duration,
}

/// Mints access tokens with an External Client App's consumer key and secret (client
/// credentials flow), for `rekey token`.
#[derive(Debug)]
pub struct ClientCredentialsMinter {
    endpoint: TokenEndpoint,
}

impl ClientCredentialsMinter {
    /// Checks the configuration (https) without contacting Salesforce.
    pub fn new(config: ClientCredentialsConfig) -> Result<Self> {
        let login_url = check_url("login_url", &config.login_url)?;
        Ok(ClientCredentialsMinter {
            // No JWT is signed here: the audience is never used.
            endpoint: TokenEndpoint::new(&config.org, login_url, "", config.request_timeout)?,
        })
    }

    /// Asks for a token with `secret`, with the same retries as [`Minter::mint`]; a refusal
    /// (e.g. `invalid_client: invalid client credentials`) is an answer, not an error.
    pub async fn mint(&self, secret: &ConsumerSecret) -> Result<Mint> {
        retrying(&self.endpoint, || self.endpoint.client_credentials(secret)).await
    }
}

/// Runs `grant` until it answers or fails for good: temporary failures are retried per
/// [`MINT_RETRY`]; a granted instance URL must pass the same check as every configured URL,
/// since the token is sent there next.
async fn retrying<F, Fut>(endpoint: &TokenEndpoint, grant: F) -> Result<Mint>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<TokenAnswer>>,
{
    let mut attempt = 1;
    loop {
        match grant().await {
            Ok(TokenAnswer::Granted {
                access_token,
                instance_url,
            }) => {
                let instance_url =
                    check_url("instance_url returned by the token endpoint", &instance_url)?;
                return Ok(Mint::Granted(Minted {
                    access_token,
                    instance_url,
                }));
            }
            Ok(TokenAnswer::Refused(refusal)) => return Ok(Mint::Refused(refusal)),
            Err(e) if e.is_temporary() && attempt < MINT_RETRY.attempts => {
                let delay = MINT_RETRY.delay(attempt, None);
                tracing::warn!(org = %endpoint.org(), attempt, error = %e, "token request failed; retrying in {}ms", delay.as_millis());
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(error: &str, description: &str) -> Refusal {
        Refusal {
            error: error.into(),
            description: description.into(),
        }
    }

    #[test]
    fn only_an_invalid_assertion_blames_the_key() {
        assert!(refusal("invalid_grant", "invalid assertion").untrusted_key());
        for (error, description) in [
            ("invalid_grant", "user hasn't approved this consumer"),
            ("invalid_grant", "audience is invalid"),
            ("invalid_grant", "expired authorization code"),
            ("invalid_client_id", "client identifier invalid"),
            (
                "invalid_app_access",
                "user is not admin approved to access this app",
            ),
        ] {
            assert!(!refusal(error, description).untrusted_key(), "{error}");
        }
        assert_eq!(
            refusal("invalid_client_id", "client identifier invalid").hint("integration"),
            "check the integration app's consumer key"
        );
        assert_eq!(
            refusal("invalid_grant", "invalid assertion").to_string(),
            "invalid_grant: invalid assertion"
        );
    }

    #[test]
    fn a_minter_refuses_empty_names_and_plain_http_off_this_machine() {
        let config = |login_url: &str, consumer_key: &str| MintConfig {
            org: "acme".into(),
            login_url: login_url.into(),
            audience: "https://acme.my.salesforce.com".into(),
            consumer_key: consumer_key.into(),
            username: "integration@acme.example".into(),
            request_timeout: Duration::from_secs(5),
        };
        Minter::new(config("https://acme.my.salesforce.com", "3MVG9")).unwrap();
        for bad in [
            config("http://acme.my.salesforce.com", "3MVG9"),
            config("https://acme.my.salesforce.com", " "),
        ] {
            assert_eq!(Minter::new(bad).unwrap_err().kind(), ErrorKind::Config);
        }
    }
}
