//! The hardening checklist as rules: one org as read → its findings. Pure (no I/O), so every
//! rule is tested on values; the conditions are the catalogue's (`crate::controls`).

use super::read::OrgRead;
use crate::config::{AdminConfig, Config, CredentialConfig};
use crate::controls::{self, Control};
use chrono::{DateTime, Duration, Utc};
use rekey_api::{CredentialKind, Severity};
use rekey_salesforce::{IpRelaxation, OAuthApp, OAuthAppKind, RefreshTokenPolicy};
use serde::Serialize;

/// Beyond this clock difference JWT bearer assertions start failing (Salesforce accepts `exp`
/// up to a few minutes ahead; signers put it seconds to minutes ahead).
const CLOCK_CRITICAL_SECS: i64 = 60;

/// One finding of an audit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditFinding {
    /// The catalogue id (`scope-full`, …).
    pub id: &'static str,
    /// How bad.
    pub severity: Severity,
    /// The org (config name).
    pub org: String,
    /// The app's API name; `None` for findings about the org or this host.
    pub app: Option<String>,
    /// The credential of rekey.toml it is about, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// What is wrong here, with the values found.
    pub message: String,
    /// What to change.
    pub remediation: &'static str,
    /// The control it implements.
    pub control: &'static str,
}

impl AuditFinding {
    /// A finding of catalogue entry `id` at its own severity.
    pub(super) fn new(id: &'static str, org: &str, app: Option<&str>, message: String) -> Self {
        let c: &Control = controls::control(id).expect("every rule's id is in the catalogue");
        AuditFinding {
            id: c.id,
            severity: c.severity,
            org: org.to_string(),
            app: app.map(str::to_string),
            credential: None,
            message,
            remediation: c.remediation,
            control: c.control,
        }
    }

    fn severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    fn credential(mut self, name: &str) -> Self {
        self.credential = Some(name.to_string());
        self
    }
}

/// The findings for one org as read at `now`, unsuppressed, in no particular order.
pub fn evaluate(config: &Config, read: &OrgRead, now: DateTime<Utc>) -> Vec<AuditFinding> {
    let org = read.org.as_str();
    let credentials: Vec<&CredentialConfig> = config
        .credentials
        .values()
        .filter(|c| c.org == org)
        .collect();
    let mut out = Vec::new();
    for app in read.apps.iter().flatten() {
        app_findings(config, read, app, &credentials, now, &mut out);
    }
    for c in &credentials {
        if c.owner.is_none() {
            out.push(
                AuditFinding::new(
                    "no-owner",
                    org,
                    Some(&c.app),
                    format!(
                        "credential {} (app {}) has no owner in rekey.toml",
                        c.name, c.app
                    ),
                )
                .credential(&c.name),
            );
        }
        if let Some(stored) = read.secret_stored.get(&c.name) {
            let age = (now - *stored).num_days();
            let max = i64::from(config.audit.consumer_secret_max_age_days);
            if age > max {
                out.push(
                    AuditFinding::new(
                        "consumer-secret-age",
                        org,
                        Some(&c.app),
                        format!(
                            "the consumer secret of credential {} (app {}) is {age} days old (stored {}); the limit is {max} days",
                            c.name,
                            c.app,
                            stored.format("%Y-%m-%d")
                        ),
                    )
                    .credential(&c.name),
                );
            }
        }
    }
    if let Some(clock) = &read.clock {
        // Only what the measurement is sure of: the offset less its uncertainty.
        let sure_ms = clock
            .offset_ms
            .abs()
            .saturating_sub(clock.uncertainty_ms.abs());
        let limit_ms = i64::from(config.audit.clock_skew_secs) * 1000;
        if sure_ms > limit_ms {
            let ahead = if clock.offset_ms > 0 {
                "behind"
            } else {
                "ahead of"
            };
            let finding = AuditFinding::new(
                "clock-skew",
                org,
                None,
                format!(
                    "this host's clock is {:.1} s {ahead} Salesforce's (±{:.1} s); the limit is {} s",
                    clock.offset_ms.abs() as f64 / 1000.0,
                    clock.uncertainty_ms.abs() as f64 / 1000.0,
                    config.audit.clock_skew_secs
                ),
            );
            out.push(if sure_ms > CLOCK_CRITICAL_SECS * 1000 {
                finding.severity(Severity::Critical)
            } else {
                finding
            });
        }
    }
    out
}

/// Whether `app` is rekey's own admin app for this org (its JWT login): rekey never rotates
/// the certificate it logs in with, so it is not an unmanaged certificate.
fn is_admin_app(config: &Config, org: &str, app: &OAuthApp) -> bool {
    match (config.orgs.get(org).map(|o| &o.admin), &app.consumer_key) {
        (Some(AdminConfig::Jwt { consumer_key, .. }), Some(key)) => consumer_key == key,
        _ => false,
    }
}

/// An IP relaxation as Setup words it.
fn relaxation(r: &IpRelaxation) -> String {
    match r {
        IpRelaxation::Enforce => "Enforce IP restrictions".into(),
        IpRelaxation::Bypass => "Relax IP restrictions".into(),
        IpRelaxation::BypassTwoFactor => "Relax IP restrictions with second factor".into(),
        IpRelaxation::EnforceRelaxRefresh => {
            "Enforce IP restrictions, but relax for refresh tokens".into()
        }
        IpRelaxation::Other(value) => format!("'{value}'"),
    }
}

/// Whether credential `c` is about `app` (same name, same kind of app).
pub(super) fn manages(c: &CredentialConfig, app: &OAuthApp) -> bool {
    let kind = match c.app_kind {
        crate::config::AppKind::ConnectedApp => OAuthAppKind::ConnectedApp,
        crate::config::AppKind::ExternalClientApp => OAuthAppKind::ExternalClientApp,
    };
    c.app == app.name && kind == app.kind
}

fn app_findings(
    config: &Config,
    read: &OrgRead,
    app: &OAuthApp,
    credentials: &[&CredentialConfig],
    now: DateTime<Utc>,
    out: &mut Vec<AuditFinding>,
) {
    let org = read.org.as_str();
    let name = Some(app.name.as_str());
    let has = |scope: &str| app.scopes.iter().any(|s| s.eq_ignore_ascii_case(scope));
    let server_to_server = app.certificate.is_some() || app.client_credentials_enabled;
    let finding = |id: &'static str, message: String| AuditFinding::new(id, org, name, message);
    if has("Full") {
        out.push(finding(
            "scope-full",
            format!(
                "{} grants the full scope (scopes: {})",
                app.name,
                app.scopes.join(", ")
            ),
        ));
    }
    if has("RefreshToken") && app.refresh_token == RefreshTokenPolicy::Infinite {
        out.push(finding(
            "refresh-token-infinite",
            format!("{} issues refresh tokens valid until revoked", app.name),
        ));
    }
    if !app.admin_approved {
        let with_key = app.certificate.is_some();
        let found = finding(
            "self-authorize",
            if with_key {
                format!(
                    "all users may self-authorize {}, which holds a JWT certificate: its key can mint tokens for any user who ever approved it",
                    app.name
                )
            } else {
                format!("all users may self-authorize {}", app.name)
            },
        );
        out.push(if with_key {
            found.severity(Severity::Critical)
        } else {
            found
        });
    }
    if server_to_server && app.ip_relaxation != IpRelaxation::Enforce {
        out.push(finding(
            "ip-relaxed",
            format!(
                "{} is used server to server but its IP relaxation is {}",
                app.name,
                relaxation(&app.ip_relaxation)
            ),
        ));
    }
    if app.callback_url.is_some() && app.pkce_required && !app.consumer_secret_optional {
        out.push(finding(
            "pkce-with-required-secret",
            format!(
                "{} requires PKCE and the consumer secret for the web server flow",
                app.name
            ),
        ));
    }
    if !server_to_server && (has("Api") || has("Full")) && !app.high_assurance {
        out.push(finding(
            "high-assurance-not-required",
            format!(
                "{} grants API access to interactive logins without requiring a high-assurance session",
                app.name
            ),
        ));
    }
    if app.client_credentials_enabled
        && !credentials
            .iter()
            .any(|c| c.kind == CredentialKind::ConsumerSecret && manages(c, app))
    {
        out.push(finding(
            "client-credentials-enabled",
            format!(
                "{} enables the client credentials flow (run as {}) and no consumer_secret credential rotates its secret",
                app.name,
                app.client_credentials_user
                    .as_deref()
                    .unwrap_or("nobody set")
            ),
        ));
    }
    if app.client_credentials_enabled
        && let Some(user) = &app.client_credentials_user
        && let Some(Some(access)) = read.run_as.get(user)
        && !access.privileged.is_empty()
    {
        out.push(finding(
            "client-credentials-privileged-user",
            format!(
                "{}'s client credentials run-as user {user} holds {}",
                app.name,
                access.privileged.join(", ")
            ),
        ));
    }
    if let Some(cert) = &app.certificate {
        let days_left = cert.days_left(now);
        if cert.not_after <= now {
            out.push(finding(
                "certificate-expired",
                format!(
                    "{}'s JWT certificate expired on {} ({})",
                    app.name,
                    cert.not_after.format("%Y-%m-%d"),
                    cert.fingerprint
                ),
            ));
        } else if days_left <= i64::from(config.audit.certificate_warn_days) {
            out.push(finding(
                "certificate-expiring",
                format!(
                    "{}'s JWT certificate expires in {days_left} days, on {} ({})",
                    app.name,
                    cert.not_after.format("%Y-%m-%d"),
                    cert.fingerprint
                ),
            ));
        }
        if cert.key_algorithm.to_ascii_uppercase().contains("RSA") && cert.key_bits < 2048 {
            out.push(finding(
                "certificate-weak-key",
                format!(
                    "{}'s JWT certificate has a {}-bit RSA key ({})",
                    app.name, cert.key_bits, cert.fingerprint
                ),
            ));
        }
        let managed = credentials
            .iter()
            .any(|c| c.kind == CredentialKind::JwtCertificate && manages(c, app));
        if !managed && !is_admin_app(config, org, app) {
            out.push(finding(
                "unmanaged-certificate",
                format!(
                    "{} holds a JWT certificate ({}, expires {}) that no credential in rekey.toml rotates",
                    app.name,
                    cert.fingerprint,
                    cert.not_after.format("%Y-%m-%d")
                ),
            ));
        }
    }
    if let Some(grants) = &read.grants {
        let cutoff = now - Duration::days(i64::from(config.audit.stale_after_days));
        let stale: Vec<_> = grants
            .iter()
            .filter(|g| g.app == app.name && super::grants::last_activity(g) < cutoff)
            .collect();
        if !stale.is_empty() {
            let users: std::collections::BTreeSet<&str> = stale
                .iter()
                .map(|g| g.username.as_deref().unwrap_or(g.user_id.as_str()))
                .collect();
            out.push(finding(
                "stale-oauth-grants",
                format!(
                    "{} has {} OAuth grant(s) unused for more than {} days, held by {}",
                    app.name,
                    stale.len(),
                    config.audit.stale_after_days,
                    users.into_iter().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    if let Some(logins) = &read.logins {
        let cutoff = now - Duration::days(i64::from(config.audit.unused_after_days));
        match logins.get(&app.name) {
            Some(last) if *last >= cutoff => {}
            last => out.push(finding(
                "unused-app",
                match last {
                    Some(last) => format!(
                        "nobody logged in through {} since {} (more than {} days)",
                        app.name,
                        last.format("%Y-%m-%d"),
                        config.audit.unused_after_days
                    ),
                    None => format!(
                        "no successful login through {} in LoginHistory (it keeps six months)",
                        app.name
                    ),
                },
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{CertSpec, KeyAlgorithm, Subject};
    use std::collections::BTreeMap;

    /// The config tests' minimal config, its credential given an owner.
    fn config() -> Config {
        let text = format!("{}owner = \"platform\"\n", crate::config::tests::GOOD);
        crate::config::parse(&text, std::path::Path::new("/rekey.toml")).unwrap()
    }

    fn now() -> DateTime<Utc> {
        "2027-03-01T00:00:00Z".parse().unwrap()
    }

    fn certificate(days: u32) -> rekey_api::Certificate {
        let spec = CertSpec {
            algorithm: KeyAlgorithm::Rsa2048,
            subject: Subject {
                cn: "t".into(),
                o: None,
                ou: None,
            },
            validity_days: days,
        };
        crate::pki::generate(&spec, now()).unwrap().1
    }

    /// A hardened server-to-server app managed by `billing`: nothing to report.
    fn clean() -> OAuthApp {
        OAuthApp {
            kind: OAuthAppKind::ConnectedApp,
            name: "Billing_Sync".into(),
            label: "Billing Sync".into(),
            consumer_key: Some("3MVG9billing".into()),
            callback_url: None,
            scopes: vec!["Api".into()],
            admin_approved: true,
            profiles: vec!["Integration".into()],
            permission_sets: vec![],
            ip_relaxation: IpRelaxation::Enforce,
            refresh_token: RefreshTokenPolicy::Zero,
            pkce_required: false,
            consumer_secret_optional: false,
            secret_required_for_refresh: true,
            high_assurance: false,
            client_credentials_enabled: false,
            client_credentials_user: None,
            introspect_all_tokens: false,
            oauth_enabled: true,
            certificate: Some(certificate(365)),
            certificate_problem: None,
        }
    }

    fn ids(app: OAuthApp) -> Vec<(&'static str, Severity)> {
        let logins = BTreeMap::from([(app.name.clone(), now() - Duration::days(1))]);
        let read = OrgRead {
            org: "acme".into(),
            apps: Some(vec![app]),
            grants: None,
            logins: Some(logins),
            run_as: BTreeMap::new(),
            clock: None,
            secret_stored: BTreeMap::new(),
            unreadable: vec![],
            connection: None,
        };
        let mut found: Vec<_> = evaluate(&config(), &read, now())
            .into_iter()
            .map(|f| (f.id, f.severity))
            .collect();
        found.sort();
        found
    }

    #[test]
    fn a_hardened_managed_server_to_server_app_has_no_finding() {
        assert_eq!(ids(clean()), vec![]);
    }

    #[test]
    fn self_authorization_is_critical_only_when_the_app_holds_a_jwt_certificate() {
        let open = OAuthApp {
            admin_approved: false,
            ..clean()
        };
        assert_eq!(ids(open), vec![("self-authorize", Severity::Critical)]);
        let portal = OAuthApp {
            admin_approved: false,
            certificate: None,
            scopes: vec![],
            ..clean()
        };
        assert_eq!(ids(portal), vec![("self-authorize", Severity::Warning)]);
    }

    #[test]
    fn relaxed_ip_counts_only_for_server_to_server_apps() {
        let relaxed = OAuthApp {
            ip_relaxation: IpRelaxation::EnforceRelaxRefresh,
            ..clean()
        };
        assert_eq!(ids(relaxed), vec![("ip-relaxed", Severity::Warning)]);
        let interactive = OAuthApp {
            ip_relaxation: IpRelaxation::Bypass,
            certificate: None,
            scopes: vec!["OpenID".into()],
            ..clean()
        };
        assert_eq!(ids(interactive), vec![]);
    }

    #[test]
    fn high_assurance_is_asked_of_interactive_api_apps_only() {
        let interactive = OAuthApp {
            certificate: None,
            callback_url: Some("https://x.example/cb".into()),
            ..clean()
        };
        assert_eq!(
            ids(interactive.clone()),
            vec![("high-assurance-not-required", Severity::Info)]
        );
        assert_eq!(
            ids(OAuthApp {
                high_assurance: true,
                ..interactive
            }),
            vec![]
        );
    }

    #[test]
    fn pkce_with_a_required_secret_needs_an_authorization_code_flow() {
        let both = OAuthApp {
            pkce_required: true,
            callback_url: Some("https://x.example/cb".into()),
            ..clean()
        };
        assert_eq!(
            ids(both.clone()),
            vec![("pkce-with-required-secret", Severity::Warning)]
        );
        assert_eq!(
            ids(OAuthApp {
                consumer_secret_optional: true,
                ..both
            }),
            vec![]
        );
        assert_eq!(
            ids(OAuthApp {
                pkce_required: true,
                ..clean()
            }),
            vec![]
        );
    }

    #[test]
    fn refresh_tokens_that_never_expire_count_only_with_the_refresh_scope() {
        let infinite = OAuthApp {
            refresh_token: RefreshTokenPolicy::Infinite,
            ..clean()
        };
        assert_eq!(ids(infinite.clone()), vec![]);
        let with_scope = OAuthApp {
            scopes: vec!["Api".into(), "RefreshToken".into()],
            ..infinite
        };
        assert_eq!(
            ids(with_scope),
            vec![("refresh-token-infinite", Severity::Warning)]
        );
    }

    #[test]
    fn certificate_expiry_has_a_warning_window_and_the_admin_app_is_not_unmanaged() {
        let expiring = OAuthApp {
            certificate: Some(certificate(30)),
            ..clean()
        };
        assert_eq!(
            ids(expiring),
            vec![("certificate-expiring", Severity::Warning)]
        );
        let fine = OAuthApp {
            certificate: Some(certificate(31)),
            ..clean()
        };
        assert_eq!(ids(fine), vec![]);
        let stranger = OAuthApp {
            name: "Other".into(),
            ..clean()
        };
        assert_eq!(
            ids(stranger),
            vec![("unmanaged-certificate", Severity::Warning)]
        );
        let admin = OAuthApp {
            name: "Rekey_Admin".into(),
            consumer_key: Some("3MVG9admin".into()),
            ..clean()
        };
        assert_eq!(ids(admin), vec![]);
    }

    #[test]
    fn client_credentials_without_a_rotated_secret_is_reported() {
        let cc = OAuthApp {
            certificate: None,
            client_credentials_enabled: true,
            client_credentials_user: Some("runner@acme.example".into()),
            ..clean()
        };
        assert_eq!(
            ids(cc),
            vec![("client-credentials-enabled", Severity::Warning)]
        );
    }
}
