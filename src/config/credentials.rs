//! `[credentials.NAME]`: one integration credential — its app, key, stores, timeouts, policy and
//! schedule.

use super::consumers::{ConsumerConfig, validate_consumers};
use crate::pki::{CertSpec, KeyAlgorithm, Subject};
use crate::windows::{self, Window};
use rekey_api::config::{Spanned, Validator};
use rekey_api::{CredentialKind, CustodyService};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use toml::de::DeValue;

/// Connected App or External Client App.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AppKind {
    /// `ConnectedApp` metadata.
    ConnectedApp,
    /// External Client App (`ExtlClntAppGlobalOauthSettings` holds the certificate).
    ExternalClientApp,
}

impl std::fmt::Display for AppKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AppKind::ConnectedApp => "connected app",
            AppKind::ExternalClientApp => "external client app",
        })
    }
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

/// One integration credential: an app's JWT certificate and the key behind it, or an External
/// Client App's consumer key and secret.
#[derive(Debug)]
pub struct CredentialConfig {
    /// Its name in the config.
    pub name: String,
    /// What it rotates (`kind`, default `jwt_certificate`).
    pub kind: CredentialKind,
    /// The org (key of `orgs`).
    pub org: String,
    /// App kind.
    pub app_kind: AppKind,
    /// App API name.
    pub app: String,
    /// Integration username that mints tokens (JWT bearer); empty for a consumer secret, whose
    /// client credentials run-as user is set on the app.
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
    /// Consumer secrets: how long the previous consumer secret stays valid after a rotation
    /// when adoption was not proven for every consumer (it is deleted at once when it was).
    pub revoke_previous_after: Duration,
    /// Who answers for the integration (a team or a person): whom to ask before a rotation and
    /// after a leak. `rekey audit` reports a credential without one (`no-owner`).
    pub owner: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWindow {
    pub(super) cron: Spanned<String>,
    pub(super) timezone: Option<Spanned<String>>,
    pub(super) duration_minutes: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCredential {
    pub(super) org: Spanned<String>,
    pub(super) kind: Option<Spanned<String>>,
    pub(super) app_kind: Spanned<String>,
    pub(super) app: Spanned<String>,
    pub(super) username: Option<Spanned<String>>,
    pub(super) consumer_key: Option<String>,
    pub(super) store: Option<Spanned<String>>,
    pub(super) stores: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) key_algorithm: Option<Spanned<String>>,
    pub(super) validity_days: Option<Spanned<i64>>,
    pub(super) verify_timeout_secs: Option<Spanned<i64>>,
    pub(super) deploy_timeout_secs: Option<Spanned<i64>>,
    pub(super) request_timeout_secs: Option<Spanned<i64>>,
    pub(super) resume_max_age_hours: Option<Spanned<i64>>,
    pub(super) token_cache_secs: Option<Spanned<i64>>,
    pub(super) on_verify_failure: Option<Spanned<String>>,
    pub(super) rotate_every_days: Option<Spanned<i64>>,
    pub(super) renew_before_days: Option<Spanned<i64>>,
    pub(super) heal_drift: Option<bool>,
    #[serde(default)]
    pub(super) windows: Vec<Spanned<RawWindow>>,
    pub(super) subject: Option<Spanned<RawSubject>>,
    #[serde(default)]
    pub(super) policy: Option<Spanned<RawPolicy>>,
    #[serde(default)]
    pub(super) on_adoption_failure: Option<Spanned<String>>,
    pub(super) revoke_previous_after_hours: Option<Spanned<i64>>,
    pub(super) owner: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSubject {
    pub(super) cn: Spanned<String>,
    pub(super) o: Option<String>,
    pub(super) ou: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub(super) warn_days: Option<i64>,
    pub(super) critical_days: Option<i64>,
    pub(super) max_key_age_days: Option<i64>,
}

/// A credential's rotation schedule. A change window must open at least once in every
/// `renew_before_days` stretch, or a certificate could expire while rekey waits for a window.
pub(super) fn validate_schedule(
    c: &RawCredential,
    validity_days: i64,
    v: &mut Validator,
) -> Schedule {
    let rotate_every = c
        .rotate_every_days
        .as_ref()
        .map(|_| v.positive(&c.rotate_every_days, 90, 1..=3650, "rotate_every_days"));
    let renew_before_days = v.positive(
        &c.renew_before_days,
        30.min(validity_days - 1).max(1),
        1..=3650,
        "renew_before_days",
    );
    if let Some(r) = &c.renew_before_days
        && *r.get_ref() >= validity_days
    {
        v.problem(
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
            Err(message) => v.problem(w.span(), format!("window: {message}")),
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
        match windows::longest_closed(&windows, rekey_api::now(), horizon) {
            None => v.problem(
                first.span(),
                format!("the windows ({listed}) never open in the next two years; fix the cron expression"),
            ),
            Some(gap) if gap >= renew_before => v.problem(
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

/// The names a credential may refer to.
pub(super) struct Known {
    /// `[orgs.NAME]`.
    pub(super) orgs: BTreeSet<String>,
    /// `[stores.NAME]`, every one declared (a broken one is reported at its own table, not
    /// again at each credential naming it).
    pub(super) stores: BTreeSet<String>,
    /// The stores that keep keys in custody, and where.
    pub(super) custody: BTreeMap<String, CustodyService>,
}

/// `a, b, c`, or `none`.
fn listed(names: &BTreeSet<String>) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

pub(super) fn validate_credentials(
    credentials: &BTreeMap<String, Spanned<RawCredential>>,
    mut consumers: BTreeMap<String, Vec<Spanned<DeValue<'_>>>>,
    known: &Known,
    v: &mut Validator,
) -> BTreeMap<String, CredentialConfig> {
    let mut out = BTreeMap::new();
    for (name, cred) in credentials {
        let c = cred.get_ref();
        let before = v.problems().len();
        if name.starts_with(super::audit::LEDGER_PREFIX) {
            v.problem(
                cred.span(),
                format!(
                    "credentials.{name}: names starting with '{}' are reserved for the orgs' governance ledgers; rename the credential",
                    super::audit::LEDGER_PREFIX
                ),
            );
        }
        if [super::service::DAEMON_LEASE, super::alerts::ALERTS_JOURNAL].contains(&name.as_str()) {
            v.problem(
                cred.span(),
                format!(
                    "credentials.{name}: '{name}' is reserved ({}); rename the credential",
                    if name == super::service::DAEMON_LEASE {
                        "the daemon replicas' leader lease"
                    } else {
                        "the alerts' state in [alerts] state_store"
                    }
                ),
            );
        }
        if !known.orgs.contains(c.org.get_ref()) {
            v.problem(
                c.org.span(),
                format!(
                    "unknown org '{}'; defined orgs: {}",
                    c.org.get_ref(),
                    listed(&known.orgs)
                ),
            );
        }
        let stores: Vec<&Spanned<String>> = match (&c.store, &c.stores) {
            (Some(one), None) => vec![one],
            (None, Some(list)) if !list.get_ref().is_empty() => list.get_ref().iter().collect(),
            (None, Some(list)) => {
                v.problem(list.span(), "stores must name at least one store");
                Vec::new()
            }
            _ => {
                v.problem(cred.span(), format!("credentials.{name}: set exactly one of store = \"…\" or stores = [\"primary\", …]"));
                Vec::new()
            }
        };
        for (i, store) in stores.iter().enumerate() {
            if !known.stores.contains(store.get_ref()) {
                v.problem(
                    store.span(),
                    format!(
                        "unknown store '{}'; defined stores: {}",
                        store.get_ref(),
                        listed(&known.stores)
                    ),
                );
            }
            if stores[..i].iter().any(|s| s.get_ref() == store.get_ref()) {
                v.problem(
                    store.span(),
                    format!("store '{}' is listed twice", store.get_ref()),
                );
            }
        }
        let custody = stores.iter().find_map(|s| {
            known
                .custody
                .get(s.get_ref())
                .map(|service| (s.get_ref().as_str(), *service))
        });
        if let (Some((store, service)), true) = (custody, stores.len() > 1) {
            v.problem(
                c.stores.as_ref().map_or_else(|| cred.span(), Spanned::span),
                format!(
                    "credentials.{name}: store '{store}' keeps the keys in custody (kind = \"{service}\"), where they stay: list that store alone (stores = [\"{store}\"])"
                ),
            );
        }
        let app_kind = match c.app_kind.get_ref().as_str() {
            "connected_app" => AppKind::ConnectedApp,
            "external_client_app" => AppKind::ExternalClientApp,
            other => {
                v.problem(c.app_kind.span(), format!("unknown app_kind '{other}'; use \"connected_app\" or \"external_client_app\""));
                AppKind::ConnectedApp
            }
        };
        let kind = validate_kind(name, c, app_kind, v);
        if let (Some((store, service)), CredentialKind::ConsumerSecret) = (custody, kind) {
            v.problem(
                cred.span(),
                format!(
                    "credentials.{name}: store '{store}' (kind = \"{service}\") keeps private keys of certificates in custody; a consumer secret cannot be kept there: use a \"vault\", \"aws\" or \"file\" store"
                ),
            );
        }
        let mut required = vec![("app", Some(&c.app))];
        if kind == CredentialKind::JwtCertificate {
            required.push(("username", c.username.as_ref()));
            required.push(("subject.cn", c.subject.as_ref().map(|s| &s.get_ref().cn)));
        }
        for (field, value) in required {
            match value {
                Some(value) if value.get_ref().trim().is_empty() => {
                    v.problem(value.span(), format!("{field} must not be empty"));
                }
                Some(_) => {}
                None => v.problem(
                    cred.span(),
                    format!("credentials.{name}: {field} is required for kind = \"{kind}\""),
                ),
            }
        }
        let algorithm = match &c.key_algorithm {
            Some(a) => KeyAlgorithm::parse(a.get_ref()).unwrap_or_else(|| {
                v.problem(
                    a.span(),
                    format!(
                        "unknown key_algorithm '{}'; use one of {}",
                        a.get_ref(),
                        KeyAlgorithm::names()
                    ),
                );
                KeyAlgorithm::Rsa2048
            }),
            None => KeyAlgorithm::Rsa2048,
        };
        let validity_days = v.positive(&c.validity_days, 365, 1..=3650, "validity_days");
        let schedule = validate_schedule(c, validity_days, v);
        let verify_timeout = v.positive(
            &c.verify_timeout_secs,
            900,
            1..=86_400,
            "verify_timeout_secs",
        );
        let deploy_timeout = v.positive(
            &c.deploy_timeout_secs,
            600,
            1..=86_400,
            "deploy_timeout_secs",
        );
        let request_timeout =
            v.positive(&c.request_timeout_secs, 60, 1..=600, "request_timeout_secs");
        let resume_max_age_hours = v.positive(
            &c.resume_max_age_hours,
            24,
            1..=8760,
            "resume_max_age_hours",
        );
        let token_cache_secs = v.positive(&c.token_cache_secs, 600, 0..=86_400, "token_cache_secs");
        let on_verify_failure = match c.on_verify_failure.as_ref() {
            None => OnVerifyFailure::Rollback,
            Some(choice) => match choice.get_ref().as_str() {
                "rollback" => OnVerifyFailure::Rollback,
                "keep" => OnVerifyFailure::Keep,
                other => {
                    v.problem(
                        choice.span(),
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
                v.problem(raw.span(), "policy needs 0 <= critical_days <= warn_days");
            }
            if policy.max_key_age_days.is_some_and(|d| d < 1) {
                v.problem(raw.span(), "policy.max_key_age_days must be at least 1");
            }
            policy
        });
        let consumers = validate_consumers(
            name,
            kind,
            custody,
            consumers.remove(name).unwrap_or_default(),
            v,
        );
        let on_adoption_failure = match c.on_adoption_failure.as_ref() {
            None => OnAdoptionFailure::Rollback,
            Some(choice) => match choice.get_ref().as_str() {
                "rollback" => OnAdoptionFailure::Rollback,
                "alert" => OnAdoptionFailure::Alert,
                other => {
                    v.problem(
                        choice.span(),
                        format!(
                            "unknown on_adoption_failure '{other}'; use \"rollback\" or \"alert\""
                        ),
                    );
                    OnAdoptionFailure::Rollback
                }
            },
        };
        let revoke_previous_after_hours = v.positive(
            &c.revoke_previous_after_hours,
            24,
            0..=720,
            "revoke_previous_after_hours",
        );
        let owner = c.owner.as_ref().and_then(|o| {
            let text = o.get_ref().trim();
            if text.is_empty() {
                v.problem(
                    o.span(),
                    "owner is empty; name a team or a person, or leave owner out",
                );
            }
            (!text.is_empty()).then(|| text.to_string())
        });
        if v.problems().len() > before {
            continue;
        }
        let subject = c.subject.as_ref().map(|s| s.get_ref());
        out.insert(
            name.clone(),
            CredentialConfig {
                name: name.clone(),
                kind,
                org: c.org.get_ref().clone(),
                app_kind,
                app: c.app.get_ref().clone(),
                username: c
                    .username
                    .as_ref()
                    .map(|u| u.get_ref().clone())
                    .unwrap_or_default(),
                consumer_key: c.consumer_key.clone(),
                stores: stores.iter().map(|s| s.get_ref().clone()).collect(),
                cert: CertSpec {
                    algorithm,
                    subject: Subject {
                        cn: subject.map(|s| s.cn.get_ref().clone()).unwrap_or_default(),
                        o: subject.and_then(|s| s.o.clone()),
                        ou: subject.and_then(|s| s.ou.clone()),
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
                revoke_previous_after: Duration::from_secs(
                    revoke_previous_after_hours as u64 * 3600,
                ),
                owner,
            },
        );
    }
    out
}

/// `kind`: what the credential rotates. A Connected App's consumer secret is refused: Salesforce
/// has no API to rotate it. Certificate settings on a consumer secret are refused too, so a
/// misplaced `kind` cannot pass silently.
fn validate_kind(
    name: &str,
    c: &RawCredential,
    app_kind: AppKind,
    v: &mut Validator,
) -> CredentialKind {
    let kind = match c.kind.as_ref().map(|k| (k, k.get_ref().as_str())) {
        None | Some((_, "jwt_certificate")) => CredentialKind::JwtCertificate,
        Some((_, "consumer_secret")) => CredentialKind::ConsumerSecret,
        Some((raw, other)) => {
            v.problem(
                raw.span(),
                format!("unknown kind '{other}'; use \"jwt_certificate\" or \"consumer_secret\""),
            );
            return CredentialKind::JwtCertificate;
        }
    };
    if let (CredentialKind::ConsumerSecret, Some(raw)) = (kind, &c.kind) {
        if app_kind == AppKind::ConnectedApp {
            v.problem(
                raw.span(),
                format!(
                    "credentials.{name}: kind = \"consumer_secret\" needs app_kind = \"external_client_app\": Salesforce has no API to rotate a Connected App's consumer secret; rotate it by hand (Setup → App Manager → the app → View → Manage Consumer Details → Generate) or move the integration to an External Client App"
                ),
            );
        }
        let certificate_only = [
            ("key_algorithm", c.key_algorithm.as_ref().map(|s| s.span())),
            ("validity_days", c.validity_days.as_ref().map(|s| s.span())),
            (
                "renew_before_days",
                c.renew_before_days.as_ref().map(|s| s.span()),
            ),
            ("subject", c.subject.as_ref().map(|s| s.span())),
        ];
        for (field, span) in certificate_only {
            if let Some(span) = span {
                v.problem(
                    span,
                    format!("credentials.{name}: {field} applies to certificates, not to kind = \"consumer_secret\"; remove it"),
                );
            }
        }
    } else if let Some(r) = &c.revoke_previous_after_hours {
        v.problem(
            r.span(),
            format!("credentials.{name}: revoke_previous_after_hours applies to kind = \"consumer_secret\" only; remove it"),
        );
    }
    kind
}

/// When a credential should be rotated (config: rotate_every_days, renew_before_days, heal_drift,
/// windows).
#[derive(Clone, Debug)]
pub struct Schedule {
    /// Rotate once a store's key is this old; None: age alone never triggers rotation.
    pub rotate_every: Option<chrono::Duration>,
    /// Rotate once a certificate expires within this long.
    pub renew_before: chrono::Duration,
    /// Rotate when a store's CURRENT differs from the certificate on the app.
    pub heal_drift: bool,
    /// When rotation may run; empty: at any time.
    pub windows: Vec<Window>,
}
