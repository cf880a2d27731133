//! The seed: the org an emulator starts with (org, settings, users, apps), loaded from TOML or
//! JSON. `*_file` fields are read at load time so a `Seed` value is always self-contained.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Everything an `OrgSim` starts with. See the crate README for the format.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// Org identity and defaults.
    pub org: OrgSeed,
    /// Emulator behaviour switches; every field has a default.
    #[serde(default)]
    pub settings: Settings,
    /// Profiles and the permissions they grant.
    #[serde(default)]
    pub profiles: Vec<ProfileSeed>,
    /// Permission sets and the permissions they grant.
    #[serde(default)]
    pub permission_sets: Vec<PermissionSetSeed>,
    /// Users.
    #[serde(default)]
    pub users: Vec<UserSeed>,
    /// Self-authorization approvals (a user approved an app and holds a refresh token).
    #[serde(default)]
    pub approvals: Vec<ApprovalSeed>,
    /// Past logins (`LoginHistory` rows).
    #[serde(default)]
    pub logins: Vec<LoginSeed>,
    /// Connected Apps.
    #[serde(default)]
    pub connected_apps: Vec<ConnectedAppSeed>,
    /// External Client Apps.
    #[serde(default)]
    pub external_client_apps: Vec<EcaSeed>,
}

/// `[org]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgSeed {
    /// 18-character org id (`00D…`).
    pub id: String,
    /// Org name.
    #[serde(default = "default_org_name")]
    pub name: String,
    /// Accepted JWT `aud` values besides the server's own base URL.
    #[serde(default = "default_audiences")]
    pub audiences: Vec<String>,
    /// Org-wide session timeout, the last fallback after app and profile.
    #[serde(default = "default_session_minutes")]
    pub session_timeout_minutes: u32,
    /// `Organization.IsSandbox`.
    #[serde(default)]
    pub is_sandbox: bool,
    /// `Organization.InstanceName`.
    #[serde(default = "default_instance_name")]
    pub instance_name: String,
    /// `Organization.OrganizationType`.
    #[serde(default = "default_organization_type")]
    pub organization_type: String,
    /// The org's trusted IP ranges (Setup → Network Access), for IP restriction policies.
    #[serde(default)]
    pub trusted_ip_ranges: Vec<IpRangeSeed>,
}

/// `[[org.trusted_ip_ranges]]`: an inclusive range of addresses of one family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpRangeSeed {
    /// First address.
    pub start: std::net::IpAddr,
    /// Last address.
    pub end: std::net::IpAddr,
}

impl IpRangeSeed {
    /// Whether `ip` lies in the range.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr::{V4, V6};
        match (self.start, self.end, ip) {
            (V4(s), V4(e), V4(i)) => s <= i && i <= e,
            (V6(s), V6(e), V6(i)) => s <= i && i <= e,
            _ => false,
        }
    }
}

/// Which certificate the token endpoint trusts while a certificate change propagates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PropagationMode {
    /// Only the previous certificate verifies (the change has not reached this node yet).
    Old,
    /// Only the new certificate verifies.
    New,
    /// Either certificate verifies.
    #[default]
    Either,
    /// Neither verifies: the old certificate is gone and the new one has not arrived yet.
    Neither,
    /// Each token request is verified against either only the previous or only the new
    /// certificate, chosen at random per request (a request reaching a node the change has, or
    /// has not, reached yet).
    Random,
}

/// How certificates appear in `readMetadata` results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CertificateFormat {
    /// Full PEM with armor.
    #[default]
    Pem,
    /// Base64 DER body only.
    Base64,
}

/// `[settings]`: the knobs for behaviour providers/salesforce/platform.md marks as inferred.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Seconds after `exp` an assertion is still accepted.
    pub exp_skew_secs: i64,
    /// Maximum `exp - now`; 0 disables the check (Salesforce accepts far-future `exp`).
    pub max_assertion_lifetime_secs: i64,
    /// Reject assertions when the app certificate's notAfter has passed.
    pub enforce_certificate_expiry: bool,
    /// Deploying a ConnectedApp that does not exist yet fails (Spring '26 behaviour).
    pub block_connected_app_creation: bool,
    /// componentFailure problem text for a blocked ConnectedApp creation.
    pub block_connected_app_creation_message: String,
    /// Length of the window after a certificate change.
    pub propagation_secs: u64,
    /// Which certificate verifies during the window.
    pub propagation_mode: PropagationMode,
    /// Milliseconds a deploy spends in Pending and then in InProgress.
    pub deploy_phase_ms: u64,
    /// Each deploy stays in Pending, then in InProgress (or Canceling), until a test steps it
    /// on ([`crate::OrgSim::step_deploy`], `POST /__orgsim/deploys/{id}/step`), so a test can
    /// look at, or cancel, a deploy in a given state; `deploy_phase_ms` is then unused.
    pub hold_deploys: bool,
    /// GET deployRequest renders booleans and numbers as strings (Salesforce's GET example).
    pub string_values_in_deploy_status: bool,
    /// Certificate rendering in readMetadata.
    pub certificate_format_in_reads: CertificateFormat,
    /// `Max` of DailyApiRequests; requests beyond it get REQUEST_LIMIT_EXCEEDED.
    pub daily_api_requests: u64,
    /// `error_description` when `sub`/`prn` names no user (Salesforce's text is unknown).
    pub unknown_user_description: String,
    /// `error_description` for `inactive_user` (Salesforce's text is unknown).
    pub inactive_user_description: String,
    /// `error` when an ECA has `isOauthPluginEnabled=false` (Salesforce's answer is unknown).
    pub oauth_disabled_error: String,
    /// `error_description` for the above.
    pub oauth_disabled_description: String,
    /// `error_description` for `unsupported_grant_type`.
    pub unsupported_grant_type_description: String,
    /// `error_description` of `rate_limit_exceeded`: the login rate limit and the injected fault.
    pub rate_limit_description: String,
    /// Records per page of a REST query (Salesforce's default batch size is 2000).
    pub query_page_size: usize,
    /// Records per page of an `OauthToken` query (Salesforce: 500).
    pub oauth_token_page_size: usize,
    /// Rows an `OauthToken` query delivers at most, over all pages (Salesforce: 2500).
    pub oauth_token_max_rows: usize,
    /// `AuthSession.SessionType` of a JWT-bearer session (the real value is unverified).
    pub auth_session_type: String,
    /// `AuthSession.LoginType` of a JWT-bearer session and `LoginHistory.LoginType` of a token
    /// request (the real value is unverified).
    pub auth_session_login_type: String,
    /// The address every request comes from (`LoginHistory.SourceIp`, `AuthSession.SourceIp`),
    /// so IP restrictions can be exercised on loopback.
    pub source_ip: std::net::IpAddr,
    /// Token requests a user may make per rolling hour; beyond it the token endpoint answers
    /// `rate_limit_exceeded` (Salesforce: 3,600).
    pub logins_per_user_per_hour: u64,
    /// Metadata deployments run one at a time per org; later ones wait in `Pending`.
    pub deploys_one_at_a_time: bool,
    /// `//services/…` is served as `/services/…` (runs of slashes in a path are collapsed).
    pub collapse_double_slashes: bool,
    /// The org setting "Allow access to External Client App consumer secrets via REST API"
    /// (`enableClientSecretInRestApiAccess`), off in a new org: while off the Connect REST
    /// consumer-credential resources answer 403 `FUNCTIONALITY_NOT_ENABLED`.
    pub eca_secrets_over_rest: bool,
    /// `error_description` of the client credentials grant when the app does not enable the
    /// flow (`invalid_grant`; Salesforce's exact text is not documented).
    pub client_credentials_disabled_description: String,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            exp_skew_secs: 180,
            max_assertion_lifetime_secs: 0,
            enforce_certificate_expiry: false,
            block_connected_app_creation: true,
            block_connected_app_creation_message: "You can't create a connected app. Create an \
                external client app instead, or contact Salesforce Customer Support."
                .into(),
            propagation_secs: 0,
            propagation_mode: PropagationMode::Either,
            deploy_phase_ms: 100,
            hold_deploys: false,
            string_values_in_deploy_status: false,
            certificate_format_in_reads: CertificateFormat::Pem,
            daily_api_requests: 15000,
            unknown_user_description: "user hasn't approved this consumer".into(),
            inactive_user_description: "user is inactive".into(),
            oauth_disabled_error: "invalid_client_id".into(),
            oauth_disabled_description: "client identifier invalid".into(),
            unsupported_grant_type_description: "grant type not supported".into(),
            rate_limit_description: "login rate exceeded".into(),
            query_page_size: 2000,
            oauth_token_page_size: 500,
            oauth_token_max_rows: 2500,
            auth_session_type: "Oauth2".into(),
            auth_session_login_type: "Remote Access 2.0".into(),
            source_ip: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            logins_per_user_per_hour: 3600,
            deploys_one_at_a_time: true,
            collapse_double_slashes: true,
            eca_secrets_over_rest: false,
            client_credentials_disabled_description:
                "client credentials flow is not enabled for this app".into(),
        }
    }
}

/// `[[profiles]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSeed {
    /// Profile name as apps reference it.
    pub name: String,
    /// Permission API names (`ModifyAllData`, `ModifyMetadata`, …).
    #[serde(default)]
    pub permissions: Vec<String>,
    /// Profile session timeout, used when the app sets none.
    #[serde(default)]
    pub session_timeout_minutes: Option<u32>,
}

/// `[[permission_sets]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionSetSeed {
    /// API name as apps reference it.
    pub name: String,
    /// Permission API names.
    #[serde(default)]
    pub permissions: Vec<String>,
}

/// `[[users]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSeed {
    /// Login username (the JWT `sub`).
    pub username: String,
    /// 18-character user id; generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// Display name; derived from the username when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// Profile name.
    pub profile: String,
    /// Assigned permission sets.
    #[serde(default)]
    pub permission_sets: Vec<String>,
    /// Inactive users get `inactive_user`.
    #[serde(default = "default_true")]
    pub active: bool,
}

/// `[[approvals]]`: refresh-token grants (`OauthToken` rows).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalSeed {
    /// The approving user.
    pub username: String,
    /// ConnectedApp full name or ECA name.
    pub app: String,
    /// How many grants (each with its own refresh and delete token) the user holds.
    #[serde(default = "default_one")]
    pub count: u32,
    /// `OauthToken.CreatedDate`, in days before the org starts (default: now).
    #[serde(default)]
    pub created_days_ago: Option<u32>,
    /// `OauthToken.LastUsedDate`, in days before the org starts (default: when created).
    #[serde(default)]
    pub last_used_days_ago: Option<u32>,
    /// `OauthToken.UseCount` (default 0).
    #[serde(default)]
    pub use_count: Option<u32>,
}

/// `[[logins]]`: a `LoginHistory` row from before the org started.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginSeed {
    /// Who logged in.
    pub username: String,
    /// Through which app: ConnectedApp full name or ECA name (the row shows its label).
    pub app: String,
    /// `LoginTime`, in days before the org starts.
    pub days_ago: u32,
    /// `Status`: `Success`, or why the login failed.
    #[serde(default = "default_login_status")]
    pub status: String,
}

/// `[[connected_apps]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectedAppSeed {
    /// ConnectedApp full name.
    pub full_name: String,
    /// ConnectedApp metadata XML.
    #[serde(default)]
    pub metadata: Option<String>,
    /// File holding the metadata XML.
    #[serde(default)]
    pub metadata_file: Option<PathBuf>,
    /// Certificate (PEM) that replaces `oauthConfig/certificate`.
    #[serde(default)]
    pub certificate: Option<String>,
    /// File holding that certificate.
    #[serde(default)]
    pub certificate_file: Option<PathBuf>,
    /// `oauthConfig/consumerKey` (the XML may carry the same value; generated when neither does).
    #[serde(default)]
    pub consumer_key: Option<String>,
    /// `oauthConfig/consumerSecret` (the XML may carry the same value; generated when neither
    /// does: 64 hex characters).
    #[serde(default)]
    pub consumer_secret: Option<String>,
}

/// `[[external_client_apps]]`; each XML field also has an `_file` twin.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EcaSeed {
    /// ExternalClientApplication full name.
    pub name: String,
    /// The app's 18-character `0xI…` id (the Connect REST `appId`); generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// ExternalClientApplication XML.
    #[serde(default)]
    pub header: Option<String>,
    /// File for `header`.
    #[serde(default)]
    pub header_file: Option<PathBuf>,
    /// ExtlClntAppOauthSettings XML (member `<name>_oauth`).
    #[serde(default)]
    pub oauth_settings: Option<String>,
    /// File for `oauth_settings`.
    #[serde(default)]
    pub oauth_settings_file: Option<PathBuf>,
    /// ExtlClntAppGlobalOauthSettings XML (member `<name>_glbloauth`).
    #[serde(default)]
    pub global_oauth_settings: Option<String>,
    /// File for `global_oauth_settings`.
    #[serde(default)]
    pub global_oauth_settings_file: Option<PathBuf>,
    /// ExtlClntAppOauthConfigurablePolicies XML (member `<name>_oauthPlcy`).
    #[serde(default)]
    pub oauth_policies: Option<String>,
    /// File for `oauth_policies`.
    #[serde(default)]
    pub oauth_policies_file: Option<PathBuf>,
    /// ExtlClntAppConfigurablePolicies XML (member `<name>_plcy`).
    #[serde(default)]
    pub policies: Option<String>,
    /// File for `policies`.
    #[serde(default)]
    pub policies_file: Option<PathBuf>,
    /// Certificate (PEM) set on the global OAuth settings.
    #[serde(default)]
    pub certificate: Option<String>,
    /// File holding that certificate.
    #[serde(default)]
    pub certificate_file: Option<PathBuf>,
    /// The primary consumer key (global settings `consumerKey`; the XML may carry the same
    /// value; generated `3MVG9…` when neither does). Giving it creates the global settings
    /// component when the seed has none.
    #[serde(default)]
    pub consumer_key: Option<String>,
    /// The primary consumer secret (global settings `consumerSecret`; generated when absent:
    /// 64 hex characters).
    #[serde(default)]
    pub consumer_secret: Option<String>,
}

/// Why a seed could not be loaded.
#[derive(Debug)]
pub enum SeedError {
    /// A seed or referenced file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The seed is not valid TOML/JSON of the expected shape.
    Syntax(String),
    /// The seed parses but describes an impossible org (bad XML, unknown profile, …).
    Invalid(String),
}

impl std::fmt::Display for SeedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SeedError::Io { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            SeedError::Syntax(msg) => write!(f, "seed syntax: {msg}"),
            SeedError::Invalid(msg) => write!(f, "invalid seed: {msg}"),
        }
    }
}

impl std::error::Error for SeedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SeedError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl Seed {
    /// Loads a `.json` seed (by extension) or a TOML one; relative `*_file` paths resolve
    /// against the seed file's folder.
    pub fn from_path(path: &Path) -> Result<Seed, SeedError> {
        let text = std::fs::read_to_string(path).map_err(|source| SeedError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            Seed::from_json_str(&text, base)
        } else {
            Seed::from_toml_str(&text, base)
        }
    }

    /// Parses a TOML seed; relative `*_file` paths resolve against `base_dir`.
    pub fn from_toml_str(text: &str, base_dir: &Path) -> Result<Seed, SeedError> {
        let seed: Seed = toml::from_str(text).map_err(|e| SeedError::Syntax(e.to_string()))?;
        seed.finish(base_dir)
    }

    /// Parses a JSON seed; relative `*_file` paths resolve against `base_dir`.
    pub fn from_json_str(text: &str, base_dir: &Path) -> Result<Seed, SeedError> {
        let seed: Seed =
            serde_json::from_str(text).map_err(|e| SeedError::Syntax(e.to_string()))?;
        seed.finish(base_dir)
    }

    /// Inlines every `*_file` and checks that the org can be built from it.
    fn finish(mut self, base: &Path) -> Result<Seed, SeedError> {
        for app in &mut self.connected_apps {
            inline(&mut app.metadata, &mut app.metadata_file, base)?;
            inline(&mut app.certificate, &mut app.certificate_file, base)?;
        }
        for eca in &mut self.external_client_apps {
            inline(&mut eca.header, &mut eca.header_file, base)?;
            inline(&mut eca.oauth_settings, &mut eca.oauth_settings_file, base)?;
            inline(
                &mut eca.global_oauth_settings,
                &mut eca.global_oauth_settings_file,
                base,
            )?;
            inline(&mut eca.oauth_policies, &mut eca.oauth_policies_file, base)?;
            inline(&mut eca.policies, &mut eca.policies_file, base)?;
            inline(&mut eca.certificate, &mut eca.certificate_file, base)?;
        }
        crate::state::OrgState::from_seed(&self).map_err(SeedError::Invalid)?;
        Ok(self)
    }
}

/// Moves a file's content into its inline twin; an inline value set too is a conflict.
fn inline(
    value: &mut Option<String>,
    file: &mut Option<PathBuf>,
    base: &Path,
) -> Result<(), SeedError> {
    let Some(rel) = file.take() else {
        return Ok(());
    };
    if value.is_some() {
        return Err(SeedError::Invalid(format!(
            "both an inline value and a file ({}) are given",
            rel.display()
        )));
    }
    let path = base.join(&rel);
    *value = Some(std::fs::read_to_string(&path).map_err(|source| SeedError::Io { path, source })?);
    Ok(())
}

fn default_org_name() -> String {
    "Acme".into()
}

fn default_audiences() -> Vec<String> {
    vec![
        "https://login.salesforce.com".into(),
        "https://test.salesforce.com".into(),
    ]
}

fn default_instance_name() -> String {
    "EMU1".into()
}

fn default_organization_type() -> String {
    "Enterprise Edition".into()
}

fn default_session_minutes() -> u32 {
    120
}

fn default_true() -> bool {
    true
}

fn default_one() -> u32 {
    1
}

fn default_login_status() -> String {
    "Success".into()
}
