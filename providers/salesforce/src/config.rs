//! What the CLI hands the Salesforce target: the org, the admin connection, the app, and the
//! checks that refuse unsafe URLs before any request is made.

use crate::session::AdminSession;
use rekey_api::{Error, ErrorKind, KeyMaterial, Result, SecretString};
use std::time::Duration;

/// Which kind of Salesforce app holds the certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppKind {
    /// A Connected App (`ConnectedApp` metadata, certificate in `oauthConfig/certificate`).
    ConnectedApp,
    /// An External Client App (certificate in its `ExtlClntAppGlobalOauthSettings`).
    ExternalClientApp,
}

impl AppKind {
    /// How messages name an app of this kind.
    pub(crate) fn label(self) -> &'static str {
        match self {
            AppKind::ConnectedApp => "connected app",
            AppKind::ExternalClientApp => "external client app",
        }
    }
}

/// How rekey itself connects to the org as an administrator.
#[derive(Debug)] // safe: KeyMaterial and SecretString redact themselves
pub enum AdminAuth {
    /// rekey's own admin connection: JWT bearer with its own key (never the integration key being rotated).
    Jwt {
        /// Consumer key of the admin app.
        consumer_key: String,
        /// Admin username (`sub`).
        username: String,
        /// The admin app's private key.
        key: KeyMaterial,
    },
    /// An access token + instance URL taken from the environment (SF_ACCESS_TOKEN / SF_INSTANCE_URL), as sf CLI users have.
    AccessToken {
        /// The session token.
        token: SecretString,
        /// The instance it belongs to.
        instance_url: String,
    },
}

/// Everything the Salesforce target needs.
#[derive(Debug)]
pub struct SalesforceConfig {
    /// Label for messages, e.g. `acme`.
    pub org: String,
    /// Token endpoint base, e.g. `https://acme.my.salesforce.com`.
    pub login_url: String,
    /// JWT `aud` for both admin and integration tokens.
    pub audience: String,
    /// Metadata and REST API version, e.g. `67.0`.
    pub api_version: String,
    /// rekey's admin connection to the org, shared by every target of the org (one login).
    pub admin: AdminSession,
    /// Connected App or External Client App.
    pub app_kind: AppKind,
    /// CA full name or ECA name.
    pub app: String,
    /// The user the integration mints tokens for (JWT bearer). Empty for a consumer secret
    /// credential, whose client credentials run-as user is set on the app; the JWT calls refuse
    /// an empty one.
    pub integration_username: String,
    /// The integration app's consumer key; `None` = read it from the app's metadata.
    pub consumer_key: Option<String>,
    /// Give up polling a deploy after this.
    pub deploy_timeout: Duration,
    /// Give up on one HTTP request after this (a hung org answers nothing; the orchestrator
    /// retries a timed-out call).
    pub request_timeout: Duration,
}

impl SalesforceConfig {
    /// Refuses empty names, odd API versions and unsafe URLs.
    pub(crate) fn validate(&self) -> Result<()> {
        let required = [
            ("org", &self.org),
            ("app", &self.app),
            ("audience", &self.audience),
        ];
        for (field, value) in required {
            if value.trim().is_empty() {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("salesforce target: '{field}' is empty"),
                ));
            }
        }
        check_api_version("salesforce target", &self.api_version)?;
        check_url("login_url", &self.login_url)?;
        check_admin(self.admin.admin())
    }
}

/// Refuses an admin connection without its names or token.
pub(crate) fn check_admin(admin: &AdminAuth) -> Result<()> {
    match admin {
        AdminAuth::Jwt {
            consumer_key,
            username,
            ..
        } => {
            if consumer_key.trim().is_empty() || username.trim().is_empty() {
                return Err(Error::new(
                    ErrorKind::Config,
                    "salesforce target: admin JWT login needs a consumer key and a username",
                ));
            }
        }
        AdminAuth::AccessToken {
            token,
            instance_url,
        } => {
            check_url("instance_url", instance_url)?;
            if token.is_blank() {
                return Err(Error::new(
                    ErrorKind::Config,
                    "salesforce target: admin access token is empty",
                )
                .with_hint("set SF_ACCESS_TOKEN, e.g. from `sf org display --json`"));
            }
        }
    }
    Ok(())
}

/// Refuses an API version not of the form `67.0` (it goes into URL paths and package.xml).
pub(crate) fn check_api_version(what: &str, version: &str) -> Result<()> {
    let ok = version.split_once('.').is_some_and(|(a, b)| {
        !a.is_empty() && !b.is_empty() && (a.to_owned() + b).bytes().all(|c| c.is_ascii_digit())
    });
    if ok {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Config,
            format!("{what}: api version '{version}' is not of the form 67.0"),
        ))
    }
}

/// [`rekey_api::endpoint`]: `https`, or plain `http` to a loopback host (the emulator). Returns
/// the URL without a trailing slash, ready for path concatenation.
pub(crate) fn check_url(what: &str, url: &str) -> Result<String> {
    let url = rekey_api::endpoint(url, what, "salesforce target")?.url;
    Ok(url.as_str().trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_http_only_on_loopback() {
        assert_eq!(
            check_url("u", "https://acme.my.salesforce.com/").unwrap(),
            "https://acme.my.salesforce.com"
        );
        assert_eq!(
            check_url("u", "http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(check_url("u", "http://localhost:1/").is_ok());
        assert!(check_url("u", "http://[::1]:9/").is_ok());
        let err = check_url("login_url", "http://acme.my.salesforce.com").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert_eq!(
            err.to_string(),
            "salesforce target: login_url must use https (plain http is allowed only for loopback hosts)"
        );
        assert!(check_url("u", "ftp://127.0.0.1").is_err());
        assert!(check_url("u", "not a url").is_err());
    }
}
