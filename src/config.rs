//! `rekey.toml`: parsed, then validated into types the rest of the program can trust.
//!
//! Every problem names `file:line:column` and says how to fix it; all problems are collected before
//! failing, so one run shows every mistake. Nothing here touches the network or a key.

use crate::pki::{CertSpec, KeyAlgorithm, Subject};
use crate::schedule::{self, Schedule, Window};
use rekey_api::{Error, ErrorKind, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// The Salesforce API version rekey speaks unless an org says otherwise.
pub const DEFAULT_API_VERSION: &str = "67.0";

/// A validated configuration.
#[derive(Debug)]
pub struct Config {
    /// Where it was read from (for messages).
    pub path: PathBuf,
    /// Admin connections, by name.
    pub orgs: BTreeMap<String, OrgConfig>,
    /// Secret stores, by name.
    pub stores: BTreeMap<String, StoreConfig>,
    /// Credentials, by name.
    pub credentials: BTreeMap<String, CredentialConfig>,
    /// Where alerts and rotation outcomes are sent; `None` without an `[alerts]` section.
    pub alerts: Option<AlertsConfig>,
    /// `rekey run`'s settings.
    pub run: RunConfig,
    /// `rekey daemon`'s settings.
    pub daemon: DaemonConfig,
}

/// `[alerts]`: channels, and the state that de-duplicates what was already sent.
#[derive(Debug)]
pub struct AlertsConfig {
    /// Which findings were sent to which channel, and when.
    pub state_file: PathBuf,
    /// A finding still open is sent again after this long.
    pub renotify: Duration,
    /// The channels, in config order.
    pub channels: Vec<ChannelSettings>,
}

/// How much a channel wants to hear: `info` everything, `warning` no successful rotations,
/// `critical` only critical findings and failed rotations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Successful rotations and resolves.
    Info,
    /// Warning and unknown findings, rolled-back rotations.
    Warning,
    /// Critical findings and failed rotations.
    Critical,
}

/// One `[alerts.channels.NAME]`.
#[derive(Debug)]
pub struct ChannelSettings {
    /// Its name in the config.
    pub name: String,
    /// The least a message must weigh to be sent here.
    pub min_level: Level,
    /// Kind and where its secret comes from.
    pub kind: ChannelKindSettings,
    /// `file:line` of its section, for errors found at run time (a missing variable).
    pub origin: String,
}

/// A channel's kind and settings; secrets are read when the channel is built, never stored here.
#[derive(Debug)]
pub enum ChannelKindSettings {
    /// A Slack incoming webhook (the whole URL is the secret).
    Slack {
        /// Where the webhook URL comes from.
        webhook_url: SecretSource,
    },
    /// PagerDuty Events API v2.
    PagerDuty {
        /// Where the integration (routing) key comes from.
        routing_key: SecretSource,
        /// Events endpoint override (EU service region, tests).
        events_url: Option<String>,
    },
    /// A generic HTTPS receiver; bodies signed with HMAC-SHA256.
    Webhook {
        /// Where to POST.
        url: String,
        /// Where the signing secret comes from.
        secret: SecretSource,
    },
}

/// `[run]`.
#[derive(Debug)]
pub struct RunConfig {
    /// How many credentials rotate at once.
    pub concurrency: usize,
}

/// `[daemon]`.
#[derive(Debug)]
pub struct DaemonConfig {
    /// Where `/metrics` and `/healthz` are served.
    pub listen: std::net::SocketAddr,
    /// Time from the start of one `run` to the start of the next.
    pub interval: Duration,
}

/// How rekey reaches one org as an administrator.
#[derive(Debug)]
pub struct OrgConfig {
    /// Token endpoint base (My Domain, login.salesforce.com, or the emulator).
    pub login_url: String,
    /// JWT `aud`; defaults to `login_url`.
    pub audience: String,
    /// Salesforce API version, e.g. `67.0`.
    pub api_version: String,
    /// The admin connection.
    pub admin: AdminConfig,
}

/// rekey's own admin credentials for an org.
#[derive(Debug)]
pub enum AdminConfig {
    /// JWT bearer with rekey's own admin key (never the integration key it rotates).
    Jwt {
        /// Consumer key of the admin app.
        consumer_key: String,
        /// Admin username.
        username: String,
        /// Path of the admin private key.
        key_file: PathBuf,
        /// `file:line` of the setting, for errors about the file.
        origin: String,
    },
    /// `SF_ACCESS_TOKEN` and `SF_INSTANCE_URL` from the environment.
    AccessTokenEnv,
}

/// A secret store.
#[derive(Debug)]
pub enum StoreConfig {
    /// The embedded local file store.
    File {
        /// Its root directory.
        path: PathBuf,
    },
    /// HashiCorp Vault (or OpenBao) KV v2.
    Vault(Box<VaultStoreConfig>),
    /// AWS Secrets Manager; credentials and, unless set here, the region come from the AWS
    /// default chain.
    Aws(AwsStoreConfig),
}

/// An AWS Secrets Manager store as configured.
#[derive(Debug)]
pub struct AwsStoreConfig {
    /// Region; `None` = the default chain's.
    pub region: Option<String>,
    /// Endpoint override (VPC endpoints, tests).
    pub endpoint_url: Option<String>,
    /// Secret names are `<name_prefix>/<credential>`.
    pub name_prefix: String,
    /// KMS key for secrets rekey creates.
    pub kms_key_id: Option<String>,
    /// Whether rekey may create a missing secret.
    pub create_missing: bool,
    /// Lease of the rotation lock.
    pub lock_ttl: Duration,
}

/// A Vault store as configured; unset connection settings come from the `VAULT_*` environment.
#[derive(Debug)]
pub struct VaultStoreConfig {
    /// Server address; `None` = `$VAULT_ADDR`.
    pub address: Option<String>,
    /// KV v2 mount.
    pub mount: String,
    /// Path under the mount that holds one folder per credential.
    pub path_prefix: String,
    /// Enterprise/HCP namespace; `None` = `$VAULT_NAMESPACE`.
    pub namespace: Option<String>,
    /// CA certificate file; `None` = `$VAULT_CACERT`.
    pub ca_cert: Option<PathBuf>,
    /// Directory of CA certificates; `None` = `$VAULT_CAPATH`.
    pub ca_path: Option<PathBuf>,
    /// Skip TLS verification (only ever when written in the config).
    pub tls_skip_verify: bool,
    /// KV versions kept per path.
    pub max_versions: u32,
    /// Lease of the rotation lock.
    pub lock_ttl: Duration,
    /// How rekey logs in.
    pub auth: VaultAuthConfig,
    /// `file:line` of the store's section, for errors found later (missing env, unreadable files).
    pub origin: String,
}

/// How rekey logs in to Vault.
#[derive(Debug)]
pub enum VaultAuthConfig {
    /// A token: `token_file` when set, else `$VAULT_TOKEN`, else `~/.vault-token`.
    Token {
        /// A file holding the token.
        token_file: Option<PathBuf>,
    },
    /// AppRole: role_id plus a secret_id from a file or an environment variable.
    AppRole {
        /// Auth mount, default `approle`.
        mount: String,
        /// The role id (not secret on its own).
        role_id: String,
        /// Where the secret_id comes from.
        secret_id: SecretSource,
    },
    /// Kubernetes: the pod's service-account JWT.
    Kubernetes {
        /// Auth mount, default `kubernetes`.
        mount: String,
        /// The Vault role.
        role: String,
        /// The service-account token file.
        jwt_path: PathBuf,
    },
}

/// Where a secret setting is read from at run time (never written into the config itself).
#[derive(Debug)]
pub enum SecretSource {
    /// A file's contents.
    File(PathBuf),
    /// An environment variable.
    Env(String),
}

/// Connected App or External Client App.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AppKind {
    /// `ConnectedApp` metadata.
    ConnectedApp,
    /// External Client App (`ExtlClntAppGlobalOauthSettings` holds the certificate).
    ExternalClientApp,
}

/// What a rotation does when Salesforce never accepts the new key after it was published.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnVerifyFailure {
    /// Put the previous certificate back, prove the previous key works, clear PENDING and close
    /// the rotation as rolled back (the default: consumers keep working).
    Rollback,
    /// Leave the new certificate on the app and the rotation open for `rekey resume`.
    Keep,
}

/// What a rotation does when a consumer has not adopted the new key within its deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnAdoptionFailure {
    /// Redeploy the previous certificate, revert the stores and the consumers (the default).
    Rollback,
    /// Keep the new key and raise an alert.
    Alert,
}

/// One `[[credentials.NAME.consumers]]` entry: something that uses the credential's key and is
/// told about (or handed) each new generation.
#[derive(Debug)]
pub struct ConsumerConfig {
    /// Its name, unique within the credential.
    pub name: String,
    /// How it learns about a new key, and how its adoption is checked.
    pub kind: ConsumerKindSettings,
    /// How long it may take to report the new fingerprint after `activate`.
    pub adopt_timeout: Duration,
    /// `file:line:column` of its entry, for errors found at run time (a missing variable).
    pub origin: String,
}

/// A consumer's kind and settings; secrets are read when the consumer is built, never stored
/// here.
#[derive(Debug)]
pub enum ConsumerKindSettings {
    /// Reads CURRENT from the store itself; nothing is pushed to it.
    Store {
        /// Where it reports the fingerprint it uses (`{"fingerprint": "<hex>"}`), if it does.
        status_url: Option<String>,
    },
    /// Receives signed `prepare` and `activate` POSTs.
    Webhook {
        /// Where to POST.
        url: String,
        /// Where the HMAC-SHA256 signing secret comes from.
        secret: SecretSource,
        /// Where it reports the fingerprint it uses; without it, adoption is the activate POST's
        /// 2xx.
        status_url: Option<String>,
    },
    /// A command run with `REKEY_*` variables; its exit status is the verdict.
    Exec {
        /// The program (absolute, or resolved against the config's folder; never looked up in
        /// `$PATH`) and its arguments.
        command: Vec<String>,
        /// How the key reaches it, if at all (never on the command line or in a variable).
        deliver_key: DeliverKey,
        /// How long one run may take.
        timeout: Duration,
    },
    /// Key and certificate PEMs written to files, for consumers that cannot read a store.
    File {
        /// Where the private key goes (0600).
        key_path: PathBuf,
        /// Where the certificate goes (0644).
        cert_path: PathBuf,
    },
}

/// How an `exec` consumer receives the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliverKey {
    /// Not at all: it reads the store (`REKEY_READ_FROM` says where).
    None,
    /// In a 0600 temporary file named by `REKEY_KEY_FILE`, removed after the run.
    File,
    /// As PEM on its standard input.
    Stdin,
}

/// Expiry and age thresholds for `rekey check`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Policy {
    /// Warn when the certificate expires in this many days or fewer.
    pub warn_days: i64,
    /// Critical when it expires in this many days or fewer.
    pub critical_days: i64,
    /// Warn when the key is older than this many days (Salesforce never enforces expiry, so age
    /// is the signal that a key has lived too long).
    pub max_key_age_days: Option<i64>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            warn_days: 28,
            critical_days: 14,
            max_key_age_days: None,
        }
    }
}

/// One integration credential: an app's JWT certificate and the key behind it.
#[derive(Debug)]
pub struct CredentialConfig {
    /// Its name in the config.
    pub name: String,
    /// The org (key of `orgs`).
    pub org: String,
    /// App kind.
    pub app_kind: AppKind,
    /// App API name.
    pub app: String,
    /// Integration username that mints tokens.
    pub username: String,
    /// The app's consumer key, when it should not be read from the app's metadata.
    pub consumer_key: Option<String>,
    /// The stores holding its keys (keys of `stores`), primary first. The primary also keeps the
    /// journal and the rotation lock; every store receives the same generations.
    pub stores: Vec<String>,
    /// What to generate.
    pub cert: CertSpec,
    /// How long to keep asking Salesforce to accept the new key after publishing.
    pub verify_timeout: Duration,
    /// How long to wait for a Metadata deploy.
    pub deploy_timeout: Duration,
    /// How long to wait for any one Salesforce request.
    pub request_timeout: Duration,
    /// `rekey rotate` continues an open rotation younger than this and refuses an older one
    /// (an operator decides with `rekey resume` or `rekey abort`).
    pub resume_max_age: Duration,
    /// How long `rekey token` reuses a token it minted (zero: never). Salesforce does not say
    /// when a token expires (no `expires_in`), so this stays below the app's session timeout.
    pub token_cache: Duration,
    /// What to do when Salesforce never accepts the new key after it was published.
    pub on_verify_failure: OnVerifyFailure,
    /// Alert thresholds.
    pub policy: Policy,
    /// When `rekey run` rotates it.
    pub schedule: Schedule,
    /// Who uses its key and is told about each new generation, in config order.
    pub consumers: Vec<ConsumerConfig>,
    /// What to do when a consumer has not adopted the new key within its deadline.
    pub on_adoption_failure: OnAdoptionFailure,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    orgs: BTreeMap<String, Spanned<RawOrg>>,
    #[serde(default)]
    stores: BTreeMap<String, Spanned<RawStore>>,
    #[serde(default)]
    credentials: BTreeMap<String, Spanned<RawCredential>>,
    alerts: Option<Spanned<RawAlerts>>,
    run: Option<RawRun>,
    daemon: Option<RawDaemon>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    state_file: Option<Spanned<String>>,
    renotify_hours: Option<Spanned<i64>>,
    #[serde(default)]
    channels: BTreeMap<String, Spanned<RawChannel>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannel {
    kind: Spanned<String>,
    min_severity: Option<Spanned<String>>,
    webhook_url_env: Option<Spanned<String>>,
    webhook_url_file: Option<Spanned<String>>,
    routing_key_env: Option<Spanned<String>>,
    routing_key_file: Option<Spanned<String>>,
    events_url: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    secret_env: Option<Spanned<String>>,
    secret_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRun {
    concurrency: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    listen: Option<Spanned<String>>,
    interval_secs: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    cron: Spanned<String>,
    timezone: Option<Spanned<String>>,
    duration_minutes: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrg {
    login_url: Spanned<String>,
    audience: Option<Spanned<String>>,
    api_version: Option<Spanned<String>>,
    admin: Spanned<RawAdmin>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    auth: Spanned<String>,
    consumer_key: Option<String>,
    username: Option<String>,
    key_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    kind: Spanned<String>,
    path: Option<Spanned<String>>,
    address: Option<Spanned<String>>,
    mount: Option<Spanned<String>>,
    path_prefix: Option<Spanned<String>>,
    namespace: Option<Spanned<String>>,
    ca_cert: Option<Spanned<String>>,
    ca_path: Option<Spanned<String>>,
    tls_skip_verify: Option<Spanned<bool>>,
    max_versions: Option<Spanned<i64>>,
    lock_ttl_secs: Option<Spanned<i64>>,
    auth: Option<Spanned<RawVaultAuth>>,
    region: Option<Spanned<String>>,
    endpoint_url: Option<Spanned<String>>,
    name_prefix: Option<Spanned<String>>,
    kms_key_id: Option<Spanned<String>>,
    create_missing: Option<Spanned<bool>>,
}

/// The keys each store kind accepts besides `kind`.
const FILE_KEYS: &[&str] = &["path"];
const VAULT_KEYS: &[&str] = &[
    "address",
    "mount",
    "path_prefix",
    "namespace",
    "ca_cert",
    "ca_path",
    "tls_skip_verify",
    "max_versions",
    "lock_ttl_secs",
    "auth",
];
const AWS_KEYS: &[&str] = &[
    "region",
    "endpoint_url",
    "name_prefix",
    "kms_key_id",
    "create_missing",
    "lock_ttl_secs",
];

impl RawStore {
    /// Every optional key that is set, with where it is.
    fn present(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        let span = |v: Option<std::ops::Range<usize>>, key: &'static str| v.map(|s| (key, s));
        [
            span(self.path.as_ref().map(Spanned::span), "path"),
            span(self.address.as_ref().map(Spanned::span), "address"),
            span(self.mount.as_ref().map(Spanned::span), "mount"),
            span(self.path_prefix.as_ref().map(Spanned::span), "path_prefix"),
            span(self.namespace.as_ref().map(Spanned::span), "namespace"),
            span(self.ca_cert.as_ref().map(Spanned::span), "ca_cert"),
            span(self.ca_path.as_ref().map(Spanned::span), "ca_path"),
            span(
                self.tls_skip_verify.as_ref().map(Spanned::span),
                "tls_skip_verify",
            ),
            span(
                self.max_versions.as_ref().map(Spanned::span),
                "max_versions",
            ),
            span(
                self.lock_ttl_secs.as_ref().map(Spanned::span),
                "lock_ttl_secs",
            ),
            span(self.auth.as_ref().map(Spanned::span), "auth"),
            span(self.region.as_ref().map(Spanned::span), "region"),
            span(
                self.endpoint_url.as_ref().map(Spanned::span),
                "endpoint_url",
            ),
            span(self.name_prefix.as_ref().map(Spanned::span), "name_prefix"),
            span(self.kms_key_id.as_ref().map(Spanned::span), "kms_key_id"),
            span(
                self.create_missing.as_ref().map(Spanned::span),
                "create_missing",
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVaultAuth {
    method: Spanned<String>,
    token_file: Option<Spanned<String>>,
    mount: Option<Spanned<String>>,
    role_id: Option<Spanned<String>>,
    secret_id_file: Option<Spanned<String>>,
    secret_id_env: Option<Spanned<String>>,
    role: Option<Spanned<String>>,
    jwt_path: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredential {
    org: Spanned<String>,
    app_kind: Spanned<String>,
    app: Spanned<String>,
    username: Spanned<String>,
    consumer_key: Option<String>,
    store: Option<Spanned<String>>,
    stores: Option<Spanned<Vec<Spanned<String>>>>,
    key_algorithm: Option<Spanned<String>>,
    validity_days: Option<Spanned<i64>>,
    verify_timeout_secs: Option<Spanned<i64>>,
    deploy_timeout_secs: Option<Spanned<i64>>,
    request_timeout_secs: Option<Spanned<i64>>,
    resume_max_age_hours: Option<Spanned<i64>>,
    token_cache_secs: Option<Spanned<i64>>,
    on_verify_failure: Option<Spanned<String>>,
    rotate_every_days: Option<Spanned<i64>>,
    renew_before_days: Option<Spanned<i64>>,
    heal_drift: Option<bool>,
    #[serde(default)]
    windows: Vec<Spanned<RawWindow>>,
    subject: Spanned<RawSubject>,
    #[serde(default)]
    policy: Option<Spanned<RawPolicy>>,
    #[serde(default)]
    consumers: Vec<Spanned<RawConsumer>>,
    on_adoption_failure: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsumer {
    name: Spanned<String>,
    kind: Spanned<String>,
    url: Option<Spanned<String>>,
    secret_env: Option<Spanned<String>>,
    secret_file: Option<Spanned<String>>,
    status_url: Option<Spanned<String>>,
    adopt_timeout_secs: Option<Spanned<i64>>,
    command: Option<Spanned<Vec<Spanned<String>>>>,
    deliver_key: Option<Spanned<String>>,
    timeout_secs: Option<Spanned<i64>>,
    key_path: Option<Spanned<String>>,
    cert_path: Option<Spanned<String>>,
}

impl RawConsumer {
    /// Every optional key that is set, with where it is.
    fn present(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        let s = |v: &Option<Spanned<String>>| v.as_ref().map(Spanned::span);
        let n = |v: &Option<Spanned<i64>>| v.as_ref().map(Spanned::span);
        [
            ("url", s(&self.url)),
            ("secret_env", s(&self.secret_env)),
            ("secret_file", s(&self.secret_file)),
            ("status_url", s(&self.status_url)),
            ("adopt_timeout_secs", n(&self.adopt_timeout_secs)),
            ("command", self.command.as_ref().map(Spanned::span)),
            ("deliver_key", s(&self.deliver_key)),
            ("timeout_secs", n(&self.timeout_secs)),
            ("key_path", s(&self.key_path)),
            ("cert_path", s(&self.cert_path)),
        ]
        .into_iter()
        .filter_map(|(key, span)| span.map(|span| (key, span)))
        .collect()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubject {
    cn: Spanned<String>,
    o: Option<String>,
    ou: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    warn_days: Option<i64>,
    critical_days: Option<i64>,
    max_key_age_days: Option<i64>,
}

/// Collects problems with their positions while validating.
struct Problems<'a> {
    file: String,
    text: &'a str,
    found: Vec<String>,
}

impl Problems<'_> {
    fn at(&self, span: std::ops::Range<usize>) -> String {
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        format!("{}:{line}:{column}", self.file)
    }

    fn add(&mut self, span: std::ops::Range<usize>, message: impl AsRef<str>) {
        let at = self.at(span);
        self.found.push(format!("{at}: {}", message.as_ref()));
    }
}

/// Reads and validates `path`.
pub fn load(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::new(ErrorKind::Config, format!("cannot read {}", path.display()))
            .with_source(e)
            .with_hint("pass --config PATH or set REKEY_CONFIG; every key is shown in rekey.example.toml (src/config/ in rekey's repository)")
    })?;
    parse(&text, path)
}

/// Validates config `text` read from `path` (relative paths resolve against its folder).
pub fn parse(text: &str, path: &Path) -> Result<Config> {
    let file = path.display().to_string();
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let mut problems = Problems {
            file: file.clone(),
            text,
            found: Vec::new(),
        };
        let message = e.message().to_string();
        match e.span() {
            Some(span) => problems.add(span, &message),
            None => problems.found.push(format!("{file}: {message}")),
        }
        config_error(problems.found)
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut problems = Problems {
        file,
        text,
        found: Vec::new(),
    };
    let orgs = validate_orgs(&raw, &base, &mut problems);
    let stores = validate_stores(&raw, &base, &mut problems);
    let credentials = validate_credentials(&raw, &base, &mut problems);
    let alerts = raw
        .alerts
        .as_ref()
        .map(|a| validate_alerts(a, &base, &mut problems));
    let run = RunConfig {
        concurrency: raw.run.as_ref().map_or(4, |r| {
            positive(&r.concurrency, 4, 1..=64, "run.concurrency", &mut problems)
        }) as usize,
    };
    let daemon = validate_daemon(raw.daemon.as_ref(), &mut problems);
    if !problems.found.is_empty() {
        return Err(config_error(problems.found));
    }
    Ok(Config {
        path: path.to_path_buf(),
        orgs,
        stores,
        credentials,
        alerts,
        run,
        daemon,
    })
}

fn config_error(found: Vec<String>) -> Error {
    Error::new(ErrorKind::Config, found.join("\n"))
        .with_hint("fix the lines above; rekey.example.toml (src/config/ in rekey's repository) shows every key")
}

fn validate_orgs(raw: &RawConfig, base: &Path, p: &mut Problems) -> BTreeMap<String, OrgConfig> {
    let mut out = BTreeMap::new();
    for (name, org) in &raw.orgs {
        let org = org.get_ref();
        let login_url = org.login_url.get_ref().trim_end_matches('/').to_string();
        check_url(&org.login_url, "login_url", p);
        let audience = match &org.audience {
            Some(a) => {
                check_url(a, "audience", p);
                a.get_ref().trim_end_matches('/').to_string()
            }
            None => login_url.clone(),
        };
        let api_version = match &org.api_version {
            Some(v) if !is_api_version(v.get_ref()) => {
                p.add(
                    v.span(),
                    format!("api_version '{}' is not of the form 67.0", v.get_ref()),
                );
                String::new()
            }
            Some(v) => v.get_ref().clone(),
            None => DEFAULT_API_VERSION.to_string(),
        };
        let admin = org.admin.get_ref();
        let admin = match admin.auth.get_ref().as_str() {
            "jwt" => match (&admin.consumer_key, &admin.username, &admin.key_file) {
                (Some(consumer_key), Some(username), Some(key_file)) => AdminConfig::Jwt {
                    consumer_key: consumer_key.clone(),
                    username: username.clone(),
                    key_file: base.join(key_file.get_ref()),
                    origin: p.at(key_file.span()),
                },
                _ => {
                    p.add(org.admin.span(), format!("orgs.{name}.admin: auth = \"jwt\" needs consumer_key, username and key_file"));
                    continue;
                }
            },
            "access_token_env" => AdminConfig::AccessTokenEnv,
            other => {
                p.add(
                    admin.auth.span(),
                    format!("unknown admin auth '{other}'; use \"jwt\" or \"access_token_env\""),
                );
                continue;
            }
        };
        out.insert(
            name.clone(),
            OrgConfig {
                login_url,
                audience,
                api_version,
                admin,
            },
        );
    }
    out
}

fn validate_stores(
    raw: &RawConfig,
    base: &Path,
    p: &mut Problems,
) -> BTreeMap<String, StoreConfig> {
    let mut out = BTreeMap::new();
    for (name, spanned) in &raw.stores {
        let store = spanned.get_ref();
        let config = match store.kind.get_ref().as_str() {
            "file" => {
                only_keys(p, name, "file", store, FILE_KEYS);
                match &store.path {
                    Some(path) => StoreConfig::File {
                        path: base.join(path.get_ref()),
                    },
                    None => {
                        p.add(
                            store.kind.span(),
                            format!("stores.{name}: kind = \"file\" needs path = \"DIR\""),
                        );
                        continue;
                    }
                }
            }
            "vault" => {
                only_keys(p, name, "vault", store, VAULT_KEYS);
                if let Some(address) = &store.address {
                    check_url(address, "address", p);
                }
                let Some(auth) = validate_vault_auth(name, store, base, p) else {
                    continue;
                };
                StoreConfig::Vault(Box::new(VaultStoreConfig {
                    address: text(&store.address),
                    mount: text(&store.mount).unwrap_or_else(|| rekey_vault::DEFAULT_MOUNT.into()),
                    path_prefix: text(&store.path_prefix)
                        .unwrap_or_else(|| rekey_vault::DEFAULT_PATH_PREFIX.into()),
                    namespace: text(&store.namespace),
                    ca_cert: text(&store.ca_cert).map(|f| base.join(f)),
                    ca_path: text(&store.ca_path).map(|d| base.join(d)),
                    tls_skip_verify: store.tls_skip_verify.as_ref().is_some_and(|v| *v.get_ref()),
                    // Rollback reads PREVIOUS from KV history, so at least two versions are kept.
                    max_versions: positive(
                        &store.max_versions,
                        rekey_vault::DEFAULT_MAX_VERSIONS.into(),
                        2..=1000,
                        "max_versions",
                        p,
                    ) as u32,
                    lock_ttl: Duration::from_secs(positive(
                        &store.lock_ttl_secs,
                        rekey_vault::DEFAULT_LOCK_TTL.as_secs() as i64,
                        1..=86_400,
                        "lock_ttl_secs",
                        p,
                    ) as u64),
                    auth,
                    origin: p.at(spanned.span()),
                }))
            }
            "aws" => {
                only_keys(p, name, "aws", store, AWS_KEYS);
                if let Some(url) = &store.endpoint_url {
                    check_url(url, "endpoint_url", p);
                }
                StoreConfig::Aws(AwsStoreConfig {
                    region: text(&store.region),
                    endpoint_url: text(&store.endpoint_url),
                    name_prefix: text(&store.name_prefix)
                        .unwrap_or_else(|| rekey_aws::DEFAULT_NAME_PREFIX.into()),
                    kms_key_id: text(&store.kms_key_id),
                    create_missing: store.create_missing.as_ref().is_none_or(|v| *v.get_ref()),
                    lock_ttl: Duration::from_secs(positive(
                        &store.lock_ttl_secs,
                        rekey_aws::DEFAULT_LOCK_TTL.as_secs() as i64,
                        1..=86_400,
                        "lock_ttl_secs",
                        p,
                    ) as u64),
                })
            }
            other => {
                p.add(
                    store.kind.span(),
                    format!("unknown store kind '{other}'; use \"file\", \"vault\" or \"aws\""),
                );
                continue;
            }
        };
        out.insert(name.clone(), config);
    }
    out
}

fn validate_alerts(raw: &Spanned<RawAlerts>, base: &Path, p: &mut Problems) -> AlertsConfig {
    let a = raw.get_ref();
    let mut channels = Vec::new();
    for (name, spanned) in &a.channels {
        let c = spanned.get_ref();
        let origin = p.at(spanned.span());
        let secret = |p: &mut Problems,
                      env: &Option<Spanned<String>>,
                      file: &Option<Spanned<String>>,
                      key: &str| {
            match (env, file) {
                (Some(var), None) => Some(SecretSource::Env(var.get_ref().clone())),
                (None, Some(path)) => Some(SecretSource::File(base.join(path.get_ref()))),
                _ => {
                    p.add(spanned.span(), format!("alerts.channels.{name}: set exactly one of {key}_env = \"VARIABLE\" or {key}_file = \"PATH\" (secrets are never written into rekey.toml)"));
                    None
                }
            }
        };
        let used: Vec<(&str, Option<std::ops::Range<usize>>)> = vec![
            (
                "webhook_url_env",
                c.webhook_url_env.as_ref().map(Spanned::span),
            ),
            (
                "webhook_url_file",
                c.webhook_url_file.as_ref().map(Spanned::span),
            ),
            (
                "routing_key_env",
                c.routing_key_env.as_ref().map(Spanned::span),
            ),
            (
                "routing_key_file",
                c.routing_key_file.as_ref().map(Spanned::span),
            ),
            ("events_url", c.events_url.as_ref().map(Spanned::span)),
            ("url", c.url.as_ref().map(Spanned::span)),
            ("secret_env", c.secret_env.as_ref().map(Spanned::span)),
            ("secret_file", c.secret_file.as_ref().map(Spanned::span)),
        ];
        let kind = c.kind.get_ref().as_str();
        let allowed: &[&str] = match kind {
            "slack" => &["webhook_url_env", "webhook_url_file"],
            "pagerduty" => &["routing_key_env", "routing_key_file", "events_url"],
            "webhook" => &["url", "secret_env", "secret_file"],
            other => {
                p.add(
                    c.kind.span(),
                    format!("unknown channel kind '{other}'; use \"slack\", \"pagerduty\" or \"webhook\""),
                );
                continue;
            }
        };
        for (key, span) in &used {
            if let (Some(span), false) = (span, allowed.contains(key)) {
                p.add(
                    span.clone(),
                    format!("alerts.channels.{name}: '{key}' does not apply to {kind}"),
                );
            }
        }
        let min_level = match c.min_severity.as_ref() {
            None => Level::Info,
            Some(v) => match v.get_ref().as_str() {
                "info" => Level::Info,
                "warning" => Level::Warning,
                "critical" => Level::Critical,
                other => {
                    p.add(
                        v.span(),
                        format!("unknown min_severity '{other}'; use \"info\", \"warning\" or \"critical\""),
                    );
                    Level::Info
                }
            },
        };
        for url in [&c.events_url, &c.url].into_iter().flatten() {
            check_url(url, "url", p);
        }
        let kind = match kind {
            "slack" => secret(p, &c.webhook_url_env, &c.webhook_url_file, "webhook_url")
                .map(|webhook_url| ChannelKindSettings::Slack { webhook_url }),
            "pagerduty" => secret(p, &c.routing_key_env, &c.routing_key_file, "routing_key").map(
                |routing_key| ChannelKindSettings::PagerDuty {
                    routing_key,
                    events_url: text(&c.events_url),
                },
            ),
            _ => {
                let secret = secret(p, &c.secret_env, &c.secret_file, "secret");
                match (text(&c.url), secret) {
                    (Some(url), Some(secret)) => Some(ChannelKindSettings::Webhook { url, secret }),
                    (None, _) => {
                        p.add(
                            spanned.span(),
                            format!("alerts.channels.{name}: kind = \"webhook\" needs url = \"https://…\""),
                        );
                        None
                    }
                    _ => None,
                }
            }
        };
        if let Some(kind) = kind {
            channels.push(ChannelSettings {
                name: name.clone(),
                min_level,
                kind,
                origin,
            });
        }
    }
    AlertsConfig {
        state_file: a.state_file.as_ref().map_or_else(
            || base.join("rekey-alerts.json"),
            |f| base.join(f.get_ref()),
        ),
        renotify: Duration::from_secs(
            positive(&a.renotify_hours, 24, 1..=720, "alerts.renotify_hours", p) as u64 * 3600,
        ),
        channels,
    }
}

fn validate_daemon(raw: Option<&RawDaemon>, p: &mut Problems) -> DaemonConfig {
    let default_listen = std::net::SocketAddr::from(([127, 0, 0, 1], 9817));
    let listen = match raw.and_then(|d| d.listen.as_ref()) {
        None => default_listen,
        Some(l) => l.get_ref().parse().unwrap_or_else(|_| {
            p.add(
                l.span(),
                format!(
                    "daemon.listen '{}' is not an address:port such as 127.0.0.1:9817",
                    l.get_ref()
                ),
            );
            default_listen
        }),
    };
    let interval = raw.map_or(3600, |d| {
        positive(
            &d.interval_secs,
            3600,
            1..=86_400,
            "daemon.interval_secs",
            p,
        )
    });
    DaemonConfig {
        listen,
        interval: Duration::from_secs(interval as u64),
    }
}

/// A credential's rotation schedule. A change window must open at least once in every
/// `renew_before_days` stretch, or a certificate could expire while rekey waits for a window.
fn validate_schedule(c: &RawCredential, validity_days: i64, p: &mut Problems) -> Schedule {
    let rotate_every = c
        .rotate_every_days
        .as_ref()
        .map(|_| positive(&c.rotate_every_days, 90, 1..=3650, "rotate_every_days", p));
    let renew_before_days = positive(
        &c.renew_before_days,
        30.min(validity_days - 1).max(1),
        1..=3650,
        "renew_before_days",
        p,
    );
    if let Some(r) = &c.renew_before_days
        && *r.get_ref() >= validity_days
    {
        p.add(
            r.span(),
            format!(
                "renew_before_days = {} is not below validity_days = {validity_days}: every new certificate would be due at once",
                r.get_ref()
            ),
        );
    }
    let renew_before = chrono::Duration::days(renew_before_days);
    let mut windows = Vec::new();
    for w in &c.windows {
        let raw = w.get_ref();
        let zone = raw
            .timezone
            .as_ref()
            .map_or("UTC", |z| z.get_ref().as_str());
        match Window::parse(raw.cron.get_ref(), zone, *raw.duration_minutes.get_ref()) {
            Ok(window) => windows.push(window),
            Err(message) => p.add(w.span(), format!("window: {message}")),
        }
    }
    if windows.len() == c.windows.len()
        && let Some(first) = c.windows.first()
    {
        let horizon = chrono::Duration::days(2 * 366);
        let listed = windows
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        match schedule::longest_closed(&windows, rekey_api::now(), horizon) {
            None => p.add(
                first.span(),
                format!("the windows ({listed}) never open in the next two years; fix the cron expression"),
            ),
            Some(gap) if gap >= renew_before => p.add(
                first.span(),
                format!(
                    "the windows ({listed}) stay closed for up to {} days at a stretch, but renew_before_days = {renew_before_days}: a certificate could expire before a window opens; open a window more often or raise renew_before_days",
                    (gap.num_hours() + 23) / 24
                ),
            ),
            Some(_) => {}
        }
    }
    Schedule {
        rotate_every: rotate_every.map(chrono::Duration::days),
        renew_before,
        heal_drift: c.heal_drift.unwrap_or(false),
        windows,
    }
}

fn validate_vault_auth(
    name: &str,
    store: &RawStore,
    base: &Path,
    p: &mut Problems,
) -> Option<VaultAuthConfig> {
    let Some(auth) = &store.auth else {
        return Some(VaultAuthConfig::Token { token_file: None });
    };
    let a = auth.get_ref();
    let span = |v: &Option<Spanned<String>>| v.as_ref().map(Spanned::span);
    let require = |p: &mut Problems, value: &Option<Spanned<String>>, key: &str, method: &str| {
        if value.is_none() {
            p.add(
                auth.span(),
                format!("stores.{name}.auth: method = \"{method}\" needs {key}"),
            );
        }
        text(value)
    };
    match a.method.get_ref().as_str() {
        "token" => {
            misplaced(
                p,
                name,
                "token auth",
                &[
                    ("mount", span(&a.mount)),
                    ("role_id", span(&a.role_id)),
                    ("secret_id_file", span(&a.secret_id_file)),
                    ("secret_id_env", span(&a.secret_id_env)),
                    ("role", span(&a.role)),
                    ("jwt_path", span(&a.jwt_path)),
                ],
            );
            Some(VaultAuthConfig::Token {
                token_file: text(&a.token_file).map(|f| base.join(f)),
            })
        }
        "approle" => {
            misplaced(
                p,
                name,
                "approle auth",
                &[
                    ("token_file", span(&a.token_file)),
                    ("role", span(&a.role)),
                    ("jwt_path", span(&a.jwt_path)),
                ],
            );
            let role_id = require(p, &a.role_id, "role_id", "approle");
            let secret_id = match (text(&a.secret_id_file), text(&a.secret_id_env)) {
                (Some(file), None) => Some(SecretSource::File(base.join(file))),
                (None, Some(var)) => Some(SecretSource::Env(var)),
                _ => {
                    p.add(auth.span(), format!("stores.{name}.auth: approle needs exactly one of secret_id_file or secret_id_env"));
                    None
                }
            };
            Some(VaultAuthConfig::AppRole {
                mount: text(&a.mount).unwrap_or_else(|| "approle".into()),
                role_id: role_id?,
                secret_id: secret_id?,
            })
        }
        "kubernetes" => {
            misplaced(
                p,
                name,
                "kubernetes auth",
                &[
                    ("token_file", span(&a.token_file)),
                    ("role_id", span(&a.role_id)),
                    ("secret_id_file", span(&a.secret_id_file)),
                    ("secret_id_env", span(&a.secret_id_env)),
                ],
            );
            let role = require(p, &a.role, "role", "kubernetes");
            Some(VaultAuthConfig::Kubernetes {
                mount: text(&a.mount).unwrap_or_else(|| "kubernetes".into()),
                role: role?,
                jwt_path: text(&a.jwt_path).map_or_else(
                    || PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount/token"),
                    |f| base.join(f),
                ),
            })
        }
        other => {
            p.add(
                a.method.span(),
                format!("unknown Vault auth method '{other}'; use \"token\", \"approle\" or \"kubernetes\""),
            );
            None
        }
    }
}

/// Reports keys that belong to another kind of store instead of ignoring them.
fn only_keys(p: &mut Problems, name: &str, kind: &str, store: &RawStore, allowed: &[&str]) {
    for (key, span) in store.present() {
        if !allowed.contains(&key) {
            p.add(
                span,
                format!("stores.{name}: '{key}' does not apply to {kind}"),
            );
        }
    }
}

/// Reports keys that belong to another auth method instead of ignoring them.
fn misplaced(
    p: &mut Problems,
    name: &str,
    kind: &str,
    keys: &[(&str, Option<std::ops::Range<usize>>)],
) {
    for (key, span) in keys {
        if let Some(span) = span {
            p.add(
                span.clone(),
                format!("stores.{name}: '{key}' does not apply to {kind}"),
            );
        }
    }
}

fn text(value: &Option<Spanned<String>>) -> Option<String> {
    value.as_ref().map(|v| v.get_ref().clone())
}

fn validate_credentials(
    raw: &RawConfig,
    base: &Path,
    p: &mut Problems,
) -> BTreeMap<String, CredentialConfig> {
    let mut out = BTreeMap::new();
    for (name, cred) in &raw.credentials {
        let c = cred.get_ref();
        let before = p.found.len();
        if !raw.orgs.contains_key(c.org.get_ref()) {
            p.add(
                c.org.span(),
                format!(
                    "unknown org '{}'; defined orgs: {}",
                    c.org.get_ref(),
                    names(&raw.orgs)
                ),
            );
        }
        let stores: Vec<&Spanned<String>> = match (&c.store, &c.stores) {
            (Some(one), None) => vec![one],
            (None, Some(list)) if !list.get_ref().is_empty() => list.get_ref().iter().collect(),
            (None, Some(list)) => {
                p.add(list.span(), "stores must name at least one store");
                Vec::new()
            }
            _ => {
                p.add(cred.span(), format!("credentials.{name}: set exactly one of store = \"…\" or stores = [\"primary\", …]"));
                Vec::new()
            }
        };
        for (i, store) in stores.iter().enumerate() {
            if !raw.stores.contains_key(store.get_ref()) {
                p.add(
                    store.span(),
                    format!(
                        "unknown store '{}'; defined stores: {}",
                        store.get_ref(),
                        names(&raw.stores)
                    ),
                );
            }
            if stores[..i].iter().any(|s| s.get_ref() == store.get_ref()) {
                p.add(
                    store.span(),
                    format!("store '{}' is listed twice", store.get_ref()),
                );
            }
        }
        let app_kind = match c.app_kind.get_ref().as_str() {
            "connected_app" => AppKind::ConnectedApp,
            "external_client_app" => AppKind::ExternalClientApp,
            other => {
                p.add(c.app_kind.span(), format!("unknown app_kind '{other}'; use \"connected_app\" or \"external_client_app\""));
                AppKind::ConnectedApp
            }
        };
        for (field, value) in [
            ("app", &c.app),
            ("username", &c.username),
            ("subject.cn", &c.subject.get_ref().cn),
        ] {
            if value.get_ref().trim().is_empty() {
                p.add(value.span(), format!("{field} must not be empty"));
            }
        }
        let algorithm = match &c.key_algorithm {
            Some(a) => KeyAlgorithm::parse(a.get_ref()).unwrap_or_else(|| {
                p.add(
                    a.span(),
                    format!(
                        "unknown key_algorithm '{}'; use one of {}",
                        a.get_ref(),
                        KeyAlgorithm::NAMES.join(", ")
                    ),
                );
                KeyAlgorithm::Rsa2048
            }),
            None => KeyAlgorithm::Rsa2048,
        };
        let validity_days = positive(&c.validity_days, 365, 1..=3650, "validity_days", p);
        let schedule = validate_schedule(c, validity_days, p);
        let verify_timeout = positive(
            &c.verify_timeout_secs,
            900,
            1..=86_400,
            "verify_timeout_secs",
            p,
        );
        let deploy_timeout = positive(
            &c.deploy_timeout_secs,
            600,
            1..=86_400,
            "deploy_timeout_secs",
            p,
        );
        let request_timeout = positive(
            &c.request_timeout_secs,
            60,
            1..=600,
            "request_timeout_secs",
            p,
        );
        let resume_max_age_hours = positive(
            &c.resume_max_age_hours,
            24,
            1..=8760,
            "resume_max_age_hours",
            p,
        );
        let token_cache_secs =
            positive(&c.token_cache_secs, 600, 0..=86_400, "token_cache_secs", p);
        let on_verify_failure = match c.on_verify_failure.as_ref() {
            None => OnVerifyFailure::Rollback,
            Some(v) => match v.get_ref().as_str() {
                "rollback" => OnVerifyFailure::Rollback,
                "keep" => OnVerifyFailure::Keep,
                other => {
                    p.add(
                        v.span(),
                        format!(
                            "unknown on_verify_failure '{other}'; use \"rollback\" or \"keep\""
                        ),
                    );
                    OnVerifyFailure::Rollback
                }
            },
        };
        let policy = c.policy.as_ref().map_or_else(Policy::default, |raw| {
            let defaults = Policy::default();
            let policy = Policy {
                warn_days: raw.get_ref().warn_days.unwrap_or(defaults.warn_days),
                critical_days: raw
                    .get_ref()
                    .critical_days
                    .unwrap_or(defaults.critical_days),
                max_key_age_days: raw.get_ref().max_key_age_days,
            };
            if policy.critical_days < 0 || policy.warn_days < policy.critical_days {
                p.add(raw.span(), "policy needs 0 <= critical_days <= warn_days");
            }
            if policy.max_key_age_days.is_some_and(|d| d < 1) {
                p.add(raw.span(), "policy.max_key_age_days must be at least 1");
            }
            policy
        });
        let consumers = validate_consumers(name, &c.consumers, base, p);
        let on_adoption_failure = match c.on_adoption_failure.as_ref() {
            None => OnAdoptionFailure::Rollback,
            Some(v) => match v.get_ref().as_str() {
                "rollback" => OnAdoptionFailure::Rollback,
                "alert" => OnAdoptionFailure::Alert,
                other => {
                    p.add(
                        v.span(),
                        format!(
                            "unknown on_adoption_failure '{other}'; use \"rollback\" or \"alert\""
                        ),
                    );
                    OnAdoptionFailure::Rollback
                }
            },
        };
        if p.found.len() > before {
            continue;
        }
        let subject = c.subject.get_ref();
        out.insert(
            name.clone(),
            CredentialConfig {
                name: name.clone(),
                org: c.org.get_ref().clone(),
                app_kind,
                app: c.app.get_ref().clone(),
                username: c.username.get_ref().clone(),
                consumer_key: c.consumer_key.clone(),
                stores: stores.iter().map(|s| s.get_ref().clone()).collect(),
                cert: CertSpec {
                    algorithm,
                    subject: Subject {
                        cn: subject.cn.get_ref().clone(),
                        o: subject.o.clone(),
                        ou: subject.ou.clone(),
                    },
                    validity_days: validity_days as u32,
                },
                verify_timeout: Duration::from_secs(verify_timeout as u64),
                deploy_timeout: Duration::from_secs(deploy_timeout as u64),
                request_timeout: Duration::from_secs(request_timeout as u64),
                resume_max_age: Duration::from_secs(resume_max_age_hours as u64 * 3600),
                token_cache: Duration::from_secs(token_cache_secs as u64),
                on_verify_failure,
                policy,
                schedule,
                consumers,
                on_adoption_failure,
            },
        );
    }
    out
}

/// The keys each consumer kind accepts besides `name` and `kind`.
fn consumer_keys(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "store" => &["status_url", "adopt_timeout_secs"],
        "webhook" => &[
            "url",
            "secret_env",
            "secret_file",
            "status_url",
            "adopt_timeout_secs",
        ],
        "exec" => &["command", "deliver_key", "timeout_secs"],
        "file" => &["key_path", "cert_path"],
        _ => return None,
    })
}

/// A credential's `[[credentials.NAME.consumers]]`: names unique and plain, each kind's required
/// keys present, keys of other kinds named, URLs https (except loopback), paths resolved against
/// the config's folder.
fn validate_consumers(
    credential: &str,
    raw: &[Spanned<RawConsumer>],
    base: &Path,
    p: &mut Problems,
) -> Vec<ConsumerConfig> {
    let mut out = Vec::new();
    for (i, spanned) in raw.iter().enumerate() {
        let c = spanned.get_ref();
        let name = c.name.get_ref();
        let section = format!("credentials.{credential}.consumers '{name}'");
        let before = p.found.len();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            p.add(
                c.name.span(),
                format!("consumer name '{name}' must be letters, digits, '-', '_' or '.'"),
            );
        }
        if raw[..i].iter().any(|o| o.get_ref().name.get_ref() == name) {
            p.add(
                c.name.span(),
                format!("consumer '{name}' is listed twice for credential '{credential}'; names must be unique"),
            );
        }
        let kind = c.kind.get_ref().as_str();
        let Some(allowed) = consumer_keys(kind) else {
            p.add(
                c.kind.span(),
                format!("unknown consumer kind '{kind}'; use \"store\", \"webhook\", \"exec\" or \"file\""),
            );
            continue;
        };
        for (key, span) in c.present() {
            if !allowed.contains(&key) {
                p.add(span, format!("{section}: '{key}' does not apply to {kind}"));
            }
        }
        if let Some(url) = &c.url {
            check_url(url, "url", p);
        }
        if let Some(url) = &c.status_url {
            check_url(url, "status_url", p);
        }
        let adopt_timeout = positive(
            &c.adopt_timeout_secs,
            300,
            1..=86_400,
            "adopt_timeout_secs",
            p,
        );
        if kind == "store"
            && c.status_url.is_none()
            && let Some(t) = &c.adopt_timeout_secs
        {
            p.add(
                t.span(),
                format!("{section}: adopt_timeout_secs needs status_url (without it a store consumer has nothing to wait for)"),
            );
        }
        let status_url = text(&c.status_url);
        let require =
            |p: &mut Problems, value: &Option<Spanned<String>>, key: &str, example: &str| {
                if value.is_none() {
                    p.add(
                        spanned.span(),
                        format!("{section}: kind = \"{kind}\" needs {key} = {example}"),
                    );
                }
                text(value)
            };
        let settings = match kind {
            "store" => Some(ConsumerKindSettings::Store { status_url }),
            "webhook" => {
                let url = require(p, &c.url, "url", "\"https://…\"");
                let secret = match (&c.secret_env, &c.secret_file) {
                    (Some(var), None) => Some(SecretSource::Env(var.get_ref().clone())),
                    (None, Some(path)) => Some(SecretSource::File(base.join(path.get_ref()))),
                    _ => {
                        p.add(spanned.span(), format!("{section}: set exactly one of secret_env = \"VARIABLE\" or secret_file = \"PATH\" (secrets are never written into rekey.toml)"));
                        None
                    }
                };
                match (url, secret) {
                    (Some(url), Some(secret)) => Some(ConsumerKindSettings::Webhook {
                        url,
                        secret,
                        status_url,
                    }),
                    _ => None,
                }
            }
            "exec" => {
                let command = match &c.command {
                    None => {
                        p.add(spanned.span(), format!("{section}: kind = \"exec\" needs command = [\"/path/to/program\", \"arg\", …]"));
                        None
                    }
                    Some(list) => match list.get_ref().first() {
                        None => {
                            p.add(
                                list.span(),
                                format!("{section}: command must name a program"),
                            );
                            None
                        }
                        Some(program) if program.get_ref().trim().is_empty() => {
                            p.add(
                                program.span(),
                                format!("{section}: command's program is empty"),
                            );
                            None
                        }
                        Some(program) => {
                            let program = base.join(program.get_ref()).display().to_string();
                            Some(
                                std::iter::once(program)
                                    .chain(list.get_ref()[1..].iter().map(|a| a.get_ref().clone()))
                                    .collect(),
                            )
                        }
                    },
                };
                let deliver_key = match c.deliver_key.as_ref() {
                    None => DeliverKey::None,
                    Some(v) => match v.get_ref().as_str() {
                        "none" => DeliverKey::None,
                        "file" => DeliverKey::File,
                        "stdin" => DeliverKey::Stdin,
                        other => {
                            p.add(
                                v.span(),
                                format!("unknown deliver_key '{other}'; use \"none\", \"file\" or \"stdin\" (never the command line)"),
                            );
                            DeliverKey::None
                        }
                    },
                };
                let timeout = positive(&c.timeout_secs, 60, 1..=3600, "timeout_secs", p);
                command.map(|command| ConsumerKindSettings::Exec {
                    command,
                    deliver_key,
                    timeout: Duration::from_secs(timeout as u64),
                })
            }
            _ => {
                let key_path = require(p, &c.key_path, "key_path", "\"PATH\"");
                let cert_path = require(p, &c.cert_path, "cert_path", "\"PATH\"");
                match (key_path, cert_path) {
                    (Some(key), Some(cert)) => {
                        let (key_path, cert_path) = (base.join(key), base.join(cert));
                        if key_path == cert_path {
                            p.add(
                                spanned.span(),
                                format!("{section}: key_path and cert_path are the same file"),
                            );
                        }
                        Some(ConsumerKindSettings::File {
                            key_path,
                            cert_path,
                        })
                    }
                    _ => None,
                }
            }
        };
        if let (Some(kind), true) = (settings, p.found.len() == before) {
            out.push(ConsumerConfig {
                name: name.clone(),
                kind,
                adopt_timeout: Duration::from_secs(adopt_timeout as u64),
                origin: p.at(spanned.span()),
            });
        }
    }
    out
}

fn positive(
    value: &Option<Spanned<i64>>,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
    field: &str,
    p: &mut Problems,
) -> i64 {
    match value {
        Some(v) if !range.contains(v.get_ref()) => {
            p.add(
                v.span(),
                format!(
                    "{field} = {} is out of range; use {}..={}",
                    v.get_ref(),
                    range.start(),
                    range.end()
                ),
            );
            default
        }
        Some(v) => *v.get_ref(),
        None => default,
    }
}

fn check_url(url: &Spanned<String>, field: &str, p: &mut Problems) {
    let text = url.get_ref();
    let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|prefix| {
            text.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
        });
    if !(text.starts_with("https://") || loopback) {
        p.add(url.span(), format!("{field} '{text}' must be an https:// URL (plain http is allowed only for 127.0.0.1/localhost)"));
    }
}

fn is_api_version(v: &str) -> bool {
    v.split_once('.').is_some_and(|(major, minor)| {
        !major.is_empty() && major.bytes().all(|b| b.is_ascii_digit()) && minor == "0"
    })
}

fn names<T>(map: &BTreeMap<String, T>) -> String {
    if map.is_empty() {
        "none".to_string()
    } else {
        map.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[orgs.acme]
login_url = "https://acme.my.salesforce.com"
[orgs.acme.admin]
auth = "jwt"
consumer_key = "3MVG9admin"
username = "admin@acme.example"
key_file = "admin.key"

[stores.local]
kind = "file"
path = "keys"

[credentials.billing]
org = "acme"
app_kind = "connected_app"
app = "Billing_Sync"
username = "integration@acme.example"
store = "local"
subject = { cn = "billing-sync", o = "Acme" }
"#;

    #[test]
    fn a_minimal_config_gets_the_documented_defaults() {
        let config = parse(GOOD, Path::new("/etc/rekey/rekey.toml")).unwrap();
        let cred = &config.credentials["billing"];
        assert_eq!(cred.cert.algorithm, KeyAlgorithm::Rsa2048);
        assert_eq!(cred.cert.validity_days, 365);
        assert_eq!(
            (
                cred.request_timeout,
                cred.resume_max_age,
                cred.token_cache,
                cred.on_verify_failure
            ),
            (
                Duration::from_secs(60),
                Duration::from_secs(24 * 3600),
                Duration::from_secs(600),
                OnVerifyFailure::Rollback
            )
        );
        assert_eq!(
            cred.policy,
            Policy {
                warn_days: 28,
                critical_days: 14,
                max_key_age_days: None
            }
        );
        let org = &config.orgs["acme"];
        assert_eq!(org.audience, "https://acme.my.salesforce.com");
        assert_eq!(org.api_version, DEFAULT_API_VERSION);
        match &org.admin {
            AdminConfig::Jwt {
                key_file, origin, ..
            } => {
                assert_eq!(key_file, Path::new("/etc/rekey/admin.key"));
                assert_eq!(origin, "/etc/rekey/rekey.toml:8:12");
            }
            AdminConfig::AccessTokenEnv => panic!("expected jwt"),
        }
        assert!(
            matches!(&config.stores["local"], StoreConfig::File { path } if path == Path::new("/etc/rekey/keys"))
        );
        assert_eq!(cred.schedule.rotate_every, None);
        assert_eq!(cred.schedule.renew_before, chrono::Duration::days(30));
        assert!(!cred.schedule.heal_drift && cred.schedule.windows.is_empty());
        assert!(config.alerts.is_none());
        assert_eq!(config.run.concurrency, 4);
        assert_eq!(config.daemon.listen.to_string(), "127.0.0.1:9817");
        assert_eq!(config.daemon.interval, Duration::from_secs(3600));
    }

    #[test]
    fn windows_that_never_open_or_open_too_rarely_are_refused_at_load() {
        let with = |extra: &str| GOOD.to_string() + extra;
        let err = |text: String| {
            parse(&text, Path::new("rekey.toml"))
                .unwrap_err()
                .to_string()
        };
        let never = err(with(
            "[[credentials.billing.windows]]\ncron = \"0 0 30 2 *\"\nduration_minutes = 60\n",
        ));
        assert!(
            never.starts_with("rekey.toml:21:1: the windows (0 0 30 2 * UTC for 1h) never open"),
            "{never}"
        );
        // Once a year, but a certificate is renewed only 30 days before it expires.
        let yearly = err(with(
            "[[credentials.billing.windows]]\ncron = \"0 2 1 6 *\"\ntimezone = \"Europe/Berlin\"\nduration_minutes = 240\n",
        ));
        assert!(
            yearly.contains("(0 2 1 6 * Europe/Berlin for 4h) stay closed for up to 36")
                && yearly.contains("days at a stretch, but renew_before_days = 30"),
            "{yearly}"
        );
        let bad = err(with(
            "[[credentials.billing.windows]]\ncron = \"0 25 * * *\"\ntimezone = \"Europe/Berln\"\nduration_minutes = 0\n",
        ));
        assert!(bad.contains("rekey.toml:21:1: window: "), "{bad}");
        // A weekly window is fine with the default renew_before_days, in any zone.
        let weekly = with(
            "[[credentials.billing.windows]]\ncron = \"0 2 * * SAT\"\ntimezone = \"America/New_York\"\nduration_minutes = 240\n",
        );
        let config = parse(&weekly, Path::new("rekey.toml")).unwrap();
        assert_eq!(config.credentials["billing"].schedule.windows.len(), 1);
        let too_late = err(GOOD.replace(
            "store = \"local\"",
            "store = \"local\"\nvalidity_days = 30\nrenew_before_days = 30",
        ));
        assert!(
            too_late.contains("renew_before_days = 30 is not below validity_days = 30"),
            "{too_late}"
        );
    }

    #[test]
    fn alert_channels_take_secrets_from_env_or_file_only_and_name_misplaced_keys() {
        let text = GOOD.to_string()
            + r#"
[alerts]
renotify_hours = 6

[alerts.channels.ops]
kind = "slack"
webhook_url_env = "SLACK_URL"

[alerts.channels.pager]
kind = "pagerduty"
routing_key_file = "pd.key"
min_severity = "critical"

[alerts.channels.hook]
kind = "webhook"
url = "https://hooks.example/rekey"
secret_env = "HOOK_SECRET"
"#;
        let config = parse(&text, Path::new("/etc/rekey/rekey.toml")).unwrap();
        let alerts = config.alerts.unwrap();
        assert_eq!(alerts.state_file, Path::new("/etc/rekey/rekey-alerts.json"));
        assert_eq!(alerts.renotify, Duration::from_secs(6 * 3600));
        let names: Vec<(&str, Level)> = alerts
            .channels
            .iter()
            .map(|c| (c.name.as_str(), c.min_level))
            .collect();
        assert_eq!(
            names,
            [
                ("hook", Level::Info),
                ("ops", Level::Info),
                ("pager", Level::Critical)
            ]
        );
        assert!(matches!(
            &alerts.channels[2].kind,
            ChannelKindSettings::PagerDuty { routing_key: SecretSource::File(f), events_url: None }
                if f == Path::new("/etc/rekey/pd.key")
        ));

        let bad = GOOD.to_string()
            + r#"
[alerts.channels.ops]
kind = "slack"
webhook_url_env = "SLACK_URL"
webhook_url_file = "slack.url"
url = "https://x.example"

[alerts.channels.hook]
kind = "webhook"
url = "http://hooks.example/rekey"
secret_env = "S"
min_severity = "loud"

[alerts.channels.mail]
kind = "email"
"#;
        let err = parse(&bad, Path::new("rekey.toml"))
            .unwrap_err()
            .to_string();
        for expected in [
            "rekey.toml:35:8: unknown channel kind 'email'",
            "alerts.channels.ops: set exactly one of webhook_url_env = \"VARIABLE\" or webhook_url_file = \"PATH\"",
            "alerts.channels.ops: 'url' does not apply to slack",
            "url 'http://hooks.example/rekey' must be an https:// URL",
            "unknown min_severity 'loud'",
        ] {
            assert!(err.contains(expected), "{expected}\n{err}");
        }
    }

    #[test]
    fn token_cache_secs_may_be_zero_but_not_over_a_day() {
        let with = |secs: &str| {
            GOOD.replace(
                "store = \"local\"",
                &format!("store = \"local\"\ntoken_cache_secs = {secs}"),
            )
        };
        let config = parse(&with("0"), Path::new("rekey.toml")).unwrap();
        assert_eq!(config.credentials["billing"].token_cache, Duration::ZERO);
        for bad in ["-1", "86401"] {
            let err = parse(&with(bad), Path::new("rekey.toml")).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "rekey.toml:20:20: token_cache_secs = {bad} is out of range; use 0..=86400"
                )
            );
        }
    }

    #[test]
    fn an_unknown_key_names_file_line_and_column() {
        let text = GOOD.replace("store = \"local\"", "store = \"local\"\nvalidity = 30");
        let err = parse(&text, Path::new("rekey.toml")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(
            err.to_string()
                .starts_with("rekey.toml:20:1: unknown field `validity`"),
            "{err}"
        );
    }

    #[test]
    fn every_bad_value_is_reported_at_once_with_its_position_and_fix() {
        let text = GOOD
            .replace("org = \"acme\"", "org = \"acm\"")
            .replace(
                "https://acme.my.salesforce.com",
                "http://acme.my.salesforce.com",
            )
            .replace(
                "store = \"local\"",
                "store = \"local\"\nkey_algorithm = \"ec-256\"\nvalidity_days = 0\non_verify_failure = \"retry\"\nresume_max_age_hours = 0",
            );
        let err = parse(&text, Path::new("rekey.toml"))
            .unwrap_err()
            .to_string();
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(
            lines,
            [
                "rekey.toml:3:13: login_url 'http://acme.my.salesforce.com' must be an https:// URL (plain http is allowed only for 127.0.0.1/localhost)",
                "rekey.toml:15:7: unknown org 'acm'; defined orgs: acme",
                "rekey.toml:20:17: unknown key_algorithm 'ec-256'; use one of rsa-2048, rsa-3072, rsa-4096",
                "rekey.toml:21:17: validity_days = 0 is out of range; use 1..=3650",
                "rekey.toml:23:24: resume_max_age_hours = 0 is out of range; use 1..=8760",
                "rekey.toml:22:21: unknown on_verify_failure 'retry'; use \"rollback\" or \"keep\"",
            ]
        );
    }

    #[test]
    fn a_vault_store_takes_defaults_and_leaves_unset_connection_settings_to_the_environment() {
        let text = GOOD.replace(
            "[stores.local]\nkind = \"file\"\npath = \"keys\"",
            "[stores.local]\nkind = \"vault\"\nauth = { method = \"approle\", role_id = \"r-1\", secret_id_env = \"SID\" }",
        );
        let config = parse(&text, Path::new("/etc/rekey/rekey.toml")).unwrap();
        let StoreConfig::Vault(v) = &config.stores["local"] else {
            panic!("expected a vault store")
        };
        assert_eq!(
            (
                v.address.as_deref(),
                v.mount.as_str(),
                v.path_prefix.as_str()
            ),
            (None, "secret", "rekey")
        );
        assert_eq!(
            (v.max_versions, v.lock_ttl, v.tls_skip_verify),
            (10, Duration::from_secs(1800), false)
        );
        assert!(matches!(
            &v.auth,
            VaultAuthConfig::AppRole { mount, role_id, secret_id: SecretSource::Env(var) }
                if mount == "approle" && role_id == "r-1" && var == "SID"
        ));
        assert_eq!(v.origin, "/etc/rekey/rekey.toml:10:1");
    }

    #[test]
    fn vault_settings_that_do_not_fit_are_named_not_ignored() {
        let text = GOOD.replace(
            "[stores.local]\nkind = \"file\"\npath = \"keys\"",
            "[stores.local]\nkind = \"vault\"\npath = \"keys\"\naddress = \"http://vault.example:8200\"\n\
             auth = { method = \"approle\", role_id = \"r\", jwt_path = \"/t\" }",
        );
        let err = parse(&text, Path::new("rekey.toml"))
            .unwrap_err()
            .to_string();
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(
            lines,
            [
                "rekey.toml:12:8: stores.local: 'path' does not apply to vault",
                "rekey.toml:13:11: address 'http://vault.example:8200' must be an https:// URL (plain http is allowed only for 127.0.0.1/localhost)",
                "rekey.toml:14:56: stores.local: 'jwt_path' does not apply to approle auth",
                "rekey.toml:14:8: stores.local.auth: approle needs exactly one of secret_id_file or secret_id_env",
            ]
        );
    }

    #[test]
    fn a_credential_names_one_store_or_a_list_with_the_primary_first() {
        let two = GOOD.replace("store = \"local\"", "stores = [\"local\", \"other\"]")
            + "\n[stores.other]\nkind = \"file\"\npath = \"other\"\n";
        let config = parse(&two, Path::new("r.toml")).unwrap();
        assert_eq!(config.credentials["billing"].stores, ["local", "other"]);

        let cases = [
            ("stores = []", "stores must name at least one store"),
            (
                "stores = [\"local\", \"local\"]",
                "store 'local' is listed twice",
            ),
            (
                "stores = [\"local\", \"nope\"]",
                "unknown store 'nope'; defined stores: local",
            ),
            (
                "store = \"local\"\nstores = [\"local\"]",
                "set exactly one of store",
            ),
        ];
        for (line, expected) in cases {
            let text = GOOD.replace("store = \"local\"", line);
            let err = parse(&text, Path::new("r.toml")).unwrap_err().to_string();
            assert!(err.contains(expected), "{line}: {err}");
        }
    }

    #[test]
    fn consumers_take_documented_defaults_and_paths_relative_to_the_config() {
        let text = GOOD.to_string()
            + r#"
[[credentials.billing.consumers]]
name = "etl"
kind = "store"

[[credentials.billing.consumers]]
name = "middleware"
kind = "webhook"
url = "https://mw.example/rekey"
secret_file = "mw.secret"

[[credentials.billing.consumers]]
name = "reload"
kind = "exec"
command = ["hooks/reload.sh", "--fast"]

[[credentials.billing.consumers]]
name = "legacy"
kind = "file"
key_path = "legacy/key.pem"
cert_path = "/srv/legacy/cert.pem"

[[credentials.billing.consumers]]
name = "polled"
kind = "store"
status_url = "http://127.0.0.1:9000/status"
adopt_timeout_secs = 30
"#;
        let config = parse(&text, Path::new("/etc/rekey/rekey.toml")).unwrap();
        let cred = &config.credentials["billing"];
        assert_eq!(cred.on_adoption_failure, OnAdoptionFailure::Rollback);
        let c = &cred.consumers;
        assert_eq!(
            c.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["etl", "middleware", "reload", "legacy", "polled"]
        );
        assert!(
            c[..4]
                .iter()
                .all(|c| c.adopt_timeout == Duration::from_secs(300))
        );
        assert_eq!(c[4].adopt_timeout, Duration::from_secs(30));
        assert_eq!(c[0].origin, "/etc/rekey/rekey.toml:22:1");
        assert!(matches!(
            &c[0].kind,
            ConsumerKindSettings::Store { status_url: None }
        ));
        assert!(matches!(
            &c[1].kind,
            ConsumerKindSettings::Webhook { url, secret: SecretSource::File(f), status_url: None }
                if url == "https://mw.example/rekey" && f == Path::new("/etc/rekey/mw.secret")
        ));
        assert!(matches!(
            &c[2].kind,
            ConsumerKindSettings::Exec { command, deliver_key: DeliverKey::None, timeout }
                if command == &["/etc/rekey/hooks/reload.sh", "--fast"] && *timeout == Duration::from_secs(60)
        ));
        assert!(matches!(
            &c[3].kind,
            ConsumerKindSettings::File { key_path, cert_path }
                if key_path == Path::new("/etc/rekey/legacy/key.pem") && cert_path == Path::new("/srv/legacy/cert.pem")
        ));
        assert!(matches!(
            &c[4].kind,
            ConsumerKindSettings::Store { status_url: Some(u) } if u == "http://127.0.0.1:9000/status"
        ));

        let alert = GOOD.replace(
            "store = \"local\"",
            "store = \"local\"\non_adoption_failure = \"alert\"",
        ) + "\n[[credentials.billing.consumers]]\nname = \"x\"\nkind = \"exec\"\ncommand = [\"/bin/true\"]\ndeliver_key = \"stdin\"\ntimeout_secs = 5\n";
        let config = parse(&alert, Path::new("r.toml")).unwrap();
        let cred = &config.credentials["billing"];
        assert_eq!(cred.on_adoption_failure, OnAdoptionFailure::Alert);
        assert!(matches!(
            &cred.consumers[0].kind,
            ConsumerKindSettings::Exec { deliver_key: DeliverKey::Stdin, timeout, .. }
                if *timeout == Duration::from_secs(5)
        ));
    }

    #[test]
    fn every_consumer_problem_is_reported_at_once_with_its_position() {
        let text = GOOD.replace(
            "store = \"local\"",
            "store = \"local\"\non_adoption_failure = \"retry\"",
        ) + r#"
[[credentials.billing.consumers]]
name = "hook"
kind = "webhook"
url = "http://mw.example/rekey"
secret_env = "S"
secret_file = "s.txt"
command = ["/bin/true"]

[[credentials.billing.consumers]]
name = "hook"
kind = "exec"
command = []
deliver_key = "argv"
timeout_secs = 0

[[credentials.billing.consumers]]
name = "bad name"
kind = "file"
key_path = "same.pem"
cert_path = "same.pem"

[[credentials.billing.consumers]]
name = "polled"
kind = "store"
adopt_timeout_secs = 60

[[credentials.billing.consumers]]
name = "x"
kind = "queue"

[[credentials.billing.consumers]]
name = "nocert"
kind = "file"
key_path = "k.pem"
status_url = "https://x.example/status"

[[credentials.billing.consumers]]
name = "nourl"
kind = "webhook"
secret_env = "S"
"#;
        let err = parse(&text, Path::new("rekey.toml"))
            .unwrap_err()
            .to_string();
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(
            lines,
            [
                "rekey.toml:29:11: credentials.billing.consumers 'hook': 'command' does not apply to webhook",
                "rekey.toml:26:7: url 'http://mw.example/rekey' must be an https:// URL (plain http is allowed only for 127.0.0.1/localhost)",
                "rekey.toml:23:1: credentials.billing.consumers 'hook': set exactly one of secret_env = \"VARIABLE\" or secret_file = \"PATH\" (secrets are never written into rekey.toml)",
                "rekey.toml:32:8: consumer 'hook' is listed twice for credential 'billing'; names must be unique",
                "rekey.toml:34:11: credentials.billing.consumers 'hook': command must name a program",
                "rekey.toml:35:15: unknown deliver_key 'argv'; use \"none\", \"file\" or \"stdin\" (never the command line)",
                "rekey.toml:36:16: timeout_secs = 0 is out of range; use 1..=3600",
                "rekey.toml:39:8: consumer name 'bad name' must be letters, digits, '-', '_' or '.'",
                "rekey.toml:38:1: credentials.billing.consumers 'bad name': key_path and cert_path are the same file",
                "rekey.toml:47:22: credentials.billing.consumers 'polled': adopt_timeout_secs needs status_url (without it a store consumer has nothing to wait for)",
                "rekey.toml:51:8: unknown consumer kind 'queue'; use \"store\", \"webhook\", \"exec\" or \"file\"",
                "rekey.toml:57:14: credentials.billing.consumers 'nocert': 'status_url' does not apply to file",
                "rekey.toml:53:1: credentials.billing.consumers 'nocert': kind = \"file\" needs cert_path = \"PATH\"",
                "rekey.toml:59:1: credentials.billing.consumers 'nourl': kind = \"webhook\" needs url = \"https://…\"",
                "rekey.toml:20:23: unknown on_adoption_failure 'retry'; use \"rollback\" or \"alert\"",
            ]
        );
        // An unknown key is a parse error with its position, like everywhere else.
        let unknown = GOOD.to_string()
            + "\n[[credentials.billing.consumers]]\nname = \"a\"\nkind = \"store\"\nstatus = \"x\"\n";
        let err = parse(&unknown, Path::new("rekey.toml")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("rekey.toml:25:1: unknown field `status`"),
            "{err}"
        );
    }

    #[test]
    fn loopback_http_is_allowed_for_the_emulator_only() {
        let text = GOOD.replace("https://acme.my.salesforce.com", "http://127.0.0.1:8080");
        assert!(parse(&text, Path::new("r.toml")).is_ok());
        let text = GOOD.replace(
            "https://acme.my.salesforce.com",
            "http://127.0.0.1.evil.example",
        );
        assert!(parse(&text, Path::new("r.toml")).is_err());
    }

    /// `src/config/rekey.example.toml` is the config reference: it must stay a config rekey
    /// accepts, showing every kind of store, admin login, consumer and alert channel.
    #[test]
    fn the_annotated_example_config_is_accepted() {
        let config = parse(
            include_str!("config/rekey.example.toml"),
            Path::new("/etc/rekey/rekey.toml"),
        )
        .unwrap_or_else(|e| panic!("the example config is refused: {e}"));
        assert_eq!(
            config.credentials.keys().collect::<Vec<_>>(),
            ["billing", "payments"]
        );
        let kinds: Vec<&str> = config
            .stores
            .values()
            .map(|s| match s {
                StoreConfig::File { .. } => "file",
                StoreConfig::Vault(_) => "vault",
                StoreConfig::Aws(_) => "aws",
            })
            .collect();
        assert_eq!(kinds, ["aws", "file", "vault"]);
        assert!(
            matches!(&config.stores["local"], StoreConfig::File { path } if path == Path::new("/etc/rekey/keys"))
        );
        assert!(matches!(
            &config.orgs["acme"].admin,
            AdminConfig::Jwt { key_file, .. } if key_file == Path::new("/etc/rekey/admin.key")
        ));
        assert!(matches!(
            config.orgs["uat"].admin,
            AdminConfig::AccessTokenEnv
        ));

        let billing = &config.credentials["billing"];
        assert_eq!(billing.stores, ["vault", "local"]);
        assert_eq!(billing.app_kind, AppKind::ConnectedApp);
        let consumers: Vec<&str> = billing
            .consumers
            .iter()
            .map(|c| match c.kind {
                ConsumerKindSettings::Webhook { .. } => "webhook",
                ConsumerKindSettings::Exec { .. } => "exec",
                ConsumerKindSettings::File { .. } => "file",
                ConsumerKindSettings::Store { .. } => "store",
            })
            .collect();
        assert_eq!(consumers, ["webhook", "exec", "file", "store"]);
        assert_eq!(billing.schedule.windows.len(), 1);
        assert_eq!(
            billing.schedule.rotate_every,
            Some(chrono::Duration::days(90))
        );
        assert_eq!(billing.policy.max_key_age_days, Some(180));

        // The second credential leaves everything optional out, so it shows the defaults.
        let payments = &config.credentials["payments"];
        assert_eq!(payments.app_kind, AppKind::ExternalClientApp);
        assert_eq!(payments.stores, ["aws"]);
        assert_eq!(payments.policy, Policy::default());
        assert!(payments.consumers.is_empty() && payments.schedule.windows.is_empty());

        let channels: Vec<&str> = config
            .alerts
            .as_ref()
            .expect("the example has [alerts]")
            .channels
            .iter()
            .map(|c| match c.kind {
                ChannelKindSettings::Slack { .. } => "slack",
                ChannelKindSettings::PagerDuty { .. } => "pagerduty",
                ChannelKindSettings::Webhook { .. } => "webhook",
            })
            .collect();
        assert_eq!(channels, ["webhook", "pagerduty", "slack"]);
        assert_eq!(config.run.concurrency, 4);
        assert_eq!(config.daemon.listen.to_string(), "127.0.0.1:9817");
    }
}
