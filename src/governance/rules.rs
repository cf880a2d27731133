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
                    format!("credential {} (app {}) has no owner in rekey.toml", c.name, c.app),
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
        let sure_ms = clock.offset_ms.abs().saturating_sub(clock.uncertainty_ms.abs());
        let limit_ms = i64::from(config.audit.clock_skew_secs) * 1000;
        if sure_ms > limit_ms {
            let ahead = if clock.offset_ms > 0 { "behind" } else { "ahead of" };
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

fn manages(c: &CredentialConfig, app: &OAuthApp) -> bool {
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
    let mut add = |id: &'static str, message: String| {
        out.push(AuditFinding::new(id, org, name, message));
    };
    if has("Full") {
        add("scope-full", format!("{} grants the full scope (scopes: {})", app.name, app.scopes.join(", ")));
    }
    if has("RefreshToken") && app.refresh_token == RefreshTokenPolicy::Infinite {
        add(
            "refresh-token-infinite",
            format!("{} issues refresh tokens valid until revoked", app.name),
        );
    }
    if !app.admin_approved {
        let with_key = app.certificate.is_some();
        let finding = AuditFinding::new(
            "self-authorize",
            org,
            name,
            if with_key {
                format!("all users may self-authorize {}, which holds a JWT certificate: its key can mint tokens for any user who ever approved it", app.name)
            } else {
                format!("all users may self-authorize {}", app.name)
            },
        );
        out.push(if with_key {
            finding.severity(Severity::Critical)
        } else {
            finding
        });
    }
    let mut add = |id: &'static str, message: String| {
        out.push(AuditFinding::new(id, org, name, message));
    };
    if server_to_server && app.ip_relaxation != IpRelaxation::Enforce {
        add(
            "ip-relaxed",
            format!(
                "{} is used server to server but its IP relaxation is {}",
                app.name,
                relaxation(&app.ip_relaxation)
            ),
        );
    }
    if app.callback_url.is_some() && app.pkce_required && !app.consumer_secret_optional {
        add(
            "pkce-with-required-secret",
            format!("{} requires PKCE and the consumer secret for the web server flow", app.name),
        );
    }
    if !server_to_server && (has("Api") || has("Full")) && !app.high_assurance {
        add(
            "high-assurance-not-required",
            format!(
                "{} grants API access to interactive logins without requiring a high-assurance session",
                app.name
            ),
        );
    }
    if app.client_credentials_enabled
        && !credentials
            .iter()
            .any(|c| c.kind == CredentialKind::ConsumerSecret && manages(c, app))
    {
        add(
            "client-credentials-enabled",
            format!(
                "{} enables the client credentials flow (run as {}) and no consumer_secret credential rotates its secret",
                app.name,
                app.client_credentials_user.as_deref().unwrap_or("nobody set")
            ),
        );
    }
    if app.client_credentials_enabled
        && let Some(user) = &app.client_credentials_user
        && let Some(Some(access)) = read.run_as.get(user)
        && !access.privileged.is_empty()
    {
        add(
            "client-credentials-privileged-user",
            format!(
                "{}'s client credentials run-as user {user} holds {}",
                app.name,
                access.privileged.join(", ")
            ),
        );
    }
    if let Some(cert) = &app.certificate {
        let days_left = cert.days_left(now);
        if cert.not_after <= now {
            add(
                "certificate-expired",
                format!(
                    "{}'s JWT certificate expired on {} ({})",
                    app.name,
                    cert.not_after.format("%Y-%m-%d"),
                    cert.fingerprint
                ),
            );
        } else if days_left <= i64::from(config.audit.certificate_warn_days) {
            add(
                "certificate-expiring",
                format!(
                    "{}'s JWT certificate expires in {days_left} days, on {} ({})",
                    app.name,
                    cert.not_after.format("%Y-%m-%d"),
                    cert.fingerprint
                ),
            );
        }
        if cert.key_algorithm.to_ascii_uppercase().contains("RSA") && cert.key_bits < 2048 {
            add(
                "certificate-weak-key",
                format!(
                    "{}'s JWT certificate has a {}-bit RSA key ({})",
                    app.name, cert.key_bits, cert.fingerprint
                ),
            );
        }
        let managed = credentials
            .iter()
            .any(|c| c.kind == CredentialKind::JwtCertificate && manages(c, app));
        if !managed && !is_admin_app(config, org, app) {
            add(
                "unmanaged-certificate",
                format!(
                    "{} holds a JWT certificate ({}, expires {}) that no credential in rekey.toml rotates",
                    app.name,
                    cert.fingerprint,
                    cert.not_after.format("%Y-%m-%d")
                ),
            );
        }
    }
    if let Some(grants) = &read.grants {
        let cutoff = now - Duration::days(i64::from(config.audit.stale_after_days));
        let stale: Vec<_> = grants
            .iter()
            .filter(|g| g.app == app.name && g.last_used.unwrap_or(g.created) < cutoff)
            .collect();
        if !stale.is_empty() {
            let users: std::collections::BTreeSet<&str> = stale
                .iter()
                .map(|g| g.username.as_deref().unwrap_or(g.user_id.as_str()))
                .collect();
            add(
                "stale-oauth-grants",
                format!(
                    "{} has {} OAuth grant(s) unused for more than {} days, held by {}",
                    app.name,
                    stale.len(),
                    config.audit.stale_after_days,
                    users.into_iter().collect::<Vec<_>>().join(", ")
                ),
            );
        }
    }
    if let Some(logins) = &read.logins {
        let cutoff = now - Duration::days(i64::from(config.audit.unused_after_days));
        match logins.get(&app.name) {
            Some(last) if *last >= cutoff => {}
            last => add(
                "unused-app",
                match last {
                    Some(last) => format!(
                        "nobody logged in through {} since {} (more than {} days)",
                        app.name,
                        last.format("%Y-%m-%d"),
                        config.audit.unused_after_days
                    ),
                    None => format!(
                        "no login through {} in the login history Salesforce keeps (more than {} days)",
                        app.name, config.audit.unused_after_days
                    ),
                },
            ),
        }
    }
}
