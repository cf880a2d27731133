//! The org as a whole, for governance (`rekey audit`, `inventory`, `grants`): every Connected App
//! and External Client App with its OAuth policy (`apps.rs`, parsed by `policy.rs`), the users'
//! refresh-token grants and their revocation, the latest login through each app, a user's
//! privileged permissions, and this host's clock against Salesforce's (`activity.rs`).
//!
//! Everything here reads, except [`SalesforceOrg::revoke_grant`]. No message or log line carries a
//! token, a delete token or a secret: they name the org, the app, the user and the call.

mod activity;
mod ahead;
mod apps;
mod policy;

pub use policy::{IpRelaxation, RefreshTokenPolicy};

use crate::client::Client;
use crate::config::{check_admin, check_api_version, check_url};
use crate::session::AdminSession;
use chrono::{DateTime, Utc};
use rekey_api::{Certificate, Error, ErrorKind, Result, SecretString};
use serde::Serialize;
use std::fmt;
use std::time::Duration;

/// Metadata reads (`listMetadata`, `readMetadata`) refused.
const METADATA_HINT: &str = "the admin user needs Modify Metadata Through Metadata API Functions (or Modify All Data) to read the org's apps; Customize Application with View Setup and Configuration also allows reading them";
/// `LoginHistory` refused.
const LOGINS_HINT: &str = "the admin user needs Manage Users or Monitor Login History to see other users' logins (LoginHistory)";
/// `User` / `PermissionSetAssignment` refused.
const USERS_HINT: &str = "the admin user needs View Setup and Configuration to read users and their permission set assignments";

/// How to reach one org as an administrator, for governance reads.
#[derive(Debug)] // safe: AdminAuth redacts its key and token
pub struct OrgConnection {
    /// Label for messages, e.g. `acme`.
    pub org: String,
    /// Token endpoint base (My Domain), e.g. `https://acme.my.salesforce.com`; also where the
    /// clock is read.
    pub login_url: String,
    /// JWT `aud` of the admin login.
    pub audience: String,
    /// Metadata and REST API version, e.g. `67.0`.
    pub api_version: String,
    /// rekey's admin connection, shared with the org's targets (one login).
    pub admin: AdminSession,
    /// Give up on one HTTP request after this.
    pub request_timeout: Duration,
}

/// One org, read as a whole.
#[derive(Debug)] // safe: the Client redacts its admin key and keeps sessions out of Debug
pub struct SalesforceOrg {
    client: Client,
    org: String,
}

/// Connected App or External Client App.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum OAuthAppKind {
    /// `ConnectedApp` metadata.
    ConnectedApp,
    /// `ExternalClientApplication` and its satellites.
    ExternalClientApp,
}

impl OAuthAppKind {
    /// How messages name an app of this kind.
    pub fn label(self) -> &'static str {
        match self {
            OAuthAppKind::ConnectedApp => "connected app",
            OAuthAppKind::ExternalClientApp => "external client app",
        }
    }
}

/// An app's OAuth posture as its metadata states it, defaults applied (platform.md §8).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OAuthApp {
    /// Connected App or External Client App.
    pub kind: OAuthAppKind,
    /// API name (full name).
    pub name: String,
    /// The label (what `OauthToken.AppName` and `LoginHistory.Application` show).
    pub label: String,
    /// The (primary) consumer key.
    pub consumer_key: Option<String>,
    /// The OAuth callback URL.
    pub callback_url: Option<String>,
    /// Canonical metadata scope names (`Api`, `Full`, `RefreshToken`, …), synonyms normalised,
    /// sorted, deduplicated.
    pub scopes: Vec<String>,
    /// Only pre-authorized (admin-approved) users may use the app.
    pub admin_approved: bool,
    /// Pre-authorized profiles.
    pub profiles: Vec<String>,
    /// Pre-authorized permission sets.
    pub permission_sets: Vec<String>,
    /// IP relaxation policy.
    pub ip_relaxation: IpRelaxation,
    /// Refresh token policy.
    pub refresh_token: RefreshTokenPolicy,
    /// PKCE required for the flows that support it.
    pub pkce_required: bool,
    /// The web server flow does not need the consumer secret.
    pub consumer_secret_optional: bool,
    /// The refresh token flow needs the consumer secret.
    pub secret_required_for_refresh: bool,
    /// High Assurance sessions required.
    pub high_assurance: bool,
    /// The client credentials flow is on (for an ECA: in both its settings and its policies).
    pub client_credentials_enabled: bool,
    /// The client credentials run-as user.
    pub client_credentials_user: Option<String>,
    /// The app may introspect every token of the org.
    pub introspect_all_tokens: bool,
    /// OAuth is on (an ECA's kill switch `isOauthPluginEnabled`; always true for a CA).
    pub oauth_enabled: bool,
    /// The JWT bearer certificate, parsed.
    #[serde(serialize_with = "certificate_summary")]
    pub certificate: Option<Certificate>,
    /// Why a certificate present on the app could not be parsed.
    pub certificate_problem: Option<String>,
}

/// A certificate as JSON: what identifies it and what an audit judges, never the PEM.
fn certificate_summary<S: serde::Serializer>(
    c: &Option<Certificate>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Summary<'a> {
        fingerprint: String,
        subject: &'a str,
        issuer: &'a str,
        not_before: DateTime<Utc>,
        not_after: DateTime<Utc>,
        key_algorithm: &'a str,
        key_bits: usize,
    }
    c.as_ref()
        .map(|c| Summary {
            fingerprint: c.fingerprint.to_string(),
            subject: &c.subject,
            issuer: &c.issuer,
            not_before: c.not_before,
            not_after: c.not_after,
            key_algorithm: &c.key_algorithm,
            key_bits: c.key_bits,
        })
        .serialize(s)
}

/// One user's refresh-token grant of an app (an `OauthToken` row).
#[derive(Serialize)]
pub struct OAuthGrant {
    /// The app's API name when `AppName` matches an app's label (or name); otherwise `AppName`
    /// as Salesforce wrote it.
    pub app: String,
    /// `AppName` as Salesforce wrote it (the app's label).
    pub app_label: String,
    /// The user's id.
    pub user_id: String,
    /// The user's login name, when the org answered it.
    pub username: Option<String>,
    /// When the user approved the app.
    pub created: DateTime<Utc>,
    /// When the grant's refresh token was last used.
    pub last_used: Option<DateTime<Utc>>,
    /// How often it was used.
    pub use_count: u64,
    /// Revokes the grant through `/services/oauth2/revoke`; never shown.
    #[serde(skip)]
    delete_token: SecretString,
}

impl fmt::Debug for OAuthGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthGrant")
            .field("app", &self.app)
            .field("app_label", &self.app_label)
            .field("user_id", &self.user_id)
            .field("username", &self.username)
            .field("created", &self.created)
            .field("last_used", &self.last_used)
            .field("use_count", &self.use_count)
            .finish_non_exhaustive()
    }
}

impl Clone for OAuthGrant {
    fn clone(&self) -> Self {
        OAuthGrant {
            app: self.app.clone(),
            app_label: self.app_label.clone(),
            user_id: self.user_id.clone(),
            username: self.username.clone(),
            created: self.created,
            last_used: self.last_used,
            use_count: self.use_count,
            delete_token: SecretString::new(self.delete_token.expose_secret()),
        }
    }
}

/// A user and the privileged permissions they hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UserAccess {
    /// The user's id.
    pub id: String,
    /// Login name.
    pub username: String,
    /// `User.IsActive`.
    pub active: bool,
    /// API Only (`PermissionsApiUserOnly` through profile or a permission set).
    pub api_only: bool,
    /// Which of `ModifyAllData`, `ViewAllData`, `ModifyMetadata`, `ManageUsers` the user holds,
    /// in that order.
    pub privileged: Vec<String>,
}

/// This host's clock against Salesforce's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ClockReading {
    /// Salesforce's clock minus this host's, in milliseconds.
    pub offset_ms: i64,
    /// How far the true offset may lie from `offset_ms`, either way.
    pub uncertainty_ms: i64,
}

impl SalesforceOrg {
    /// Checks the connection settings (names, API version, URLs) without contacting Salesforce.
    pub fn new(c: OrgConnection) -> Result<Self> {
        if c.org.trim().is_empty() || c.audience.trim().is_empty() {
            return Err(Error::new(
                ErrorKind::Config,
                "salesforce org: 'org' and 'audience' must not be empty",
            ));
        }
        check_api_version("salesforce org", &c.api_version)?;
        let login_url = check_url("login_url", &c.login_url)?;
        check_admin(c.admin.admin())?;
        let client = Client::new(
            &c.org,
            login_url,
            &c.audience,
            &c.api_version,
            c.admin,
            c.request_timeout,
        )?;
        Ok(SalesforceOrg { client, org: c.org })
    }

    /// The org's label, as messages name it.
    pub fn org(&self) -> &str {
        &self.org
    }
}

impl fmt::Display for SalesforceOrg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "salesforce org {}", self.org)
    }
}
