//! `rekey inventory`: one row per OAuth app of an org, whether rekey manages it or not — the
//! authoritative list a non-human-identity governance process starts from.

use super::read::OrgRead;
use crate::config::Config;
use chrono::{DateTime, Utc};
use rekey_api::CredentialKind;
use rekey_salesforce::{OAuthApp, OAuthAppKind};
use serde::Serialize;

/// A credential of rekey.toml that manages an app.
#[derive(Clone, Debug, Serialize)]
pub struct ManagedBy {
    /// The credential's name.
    pub credential: String,
    /// What it rotates (`jwt_certificate` or `consumer_secret`).
    pub kind: CredentialKind,
    /// Its stores, primary first.
    pub stores: Vec<String>,
    /// Its owner, if set.
    pub owner: Option<String>,
}

/// One app.
#[derive(Clone, Debug, Serialize)]
pub struct InventoryRow {
    /// The org (config name).
    pub org: String,
    /// API name.
    pub app: String,
    /// Label (what Setup and OauthToken show).
    pub label: String,
    /// `CA` (Connected App) or `ECA` (External Client App).
    pub kind: &'static str,
    /// OAuth flows the app enables: `jwt-bearer`, `client-credentials`, `authorization-code`,
    /// `refresh-token`.
    pub flows: Vec<&'static str>,
    /// OAuth scopes, canonical names.
    pub scopes: Vec<String>,
    /// `admin-approved` or `self-authorize`.
    pub permitted_users: &'static str,
    /// Profiles and permission sets pre-authorized.
    pub authorized: Vec<String>,
    /// The client credentials run-as user.
    pub run_as: Option<String>,
    /// SHA-256 fingerprint of the JWT certificate.
    pub certificate_fingerprint: Option<String>,
    /// When it expires.
    pub certificate_expires: Option<DateTime<Utc>>,
    /// Days since rekey stored the consumer secret (only where rekey keeps it).
    pub consumer_secret_age_days: Option<i64>,
    /// The credentials of rekey.toml that manage it (none: unmanaged).
    pub managed_by: Vec<ManagedBy>,
    /// The latest successful login through it (`None`: none in the history, or unreadable).
    pub last_login: Option<DateTime<Utc>>,
    /// How many OAuth grants it has (`None`: unreadable).
    pub active_grants: Option<usize>,
}

fn flows(app: &OAuthApp) -> Vec<&'static str> {
    let mut out = Vec::new();
    if app.certificate.is_some() {
        out.push("jwt-bearer");
    }
    if app.client_credentials_enabled {
        out.push("client-credentials");
    }
    if app.callback_url.is_some() {
        out.push("authorization-code");
    }
    if app.scopes.iter().any(|s| s == "RefreshToken") {
        out.push("refresh-token");
    }
    out
}

/// The rows for one org as read, by app name.
pub fn inventory(config: &Config, read: &OrgRead, now: DateTime<Utc>) -> Vec<InventoryRow> {
    let Some(apps) = &read.apps else {
        return Vec::new();
    };
    apps.iter()
        .map(|app| {
            let managed_by: Vec<ManagedBy> = config
                .credentials
                .values()
                .filter(|c| c.org == read.org && super::rules::manages(c, app))
                .map(|c| ManagedBy {
                    credential: c.name.clone(),
                    kind: c.kind,
                    stores: c.stores.clone(),
                    owner: c.owner.clone(),
                })
                .collect();
            let consumer_secret_age_days = managed_by
                .iter()
                .filter_map(|m| read.secret_stored.get(&m.credential))
                .map(|stored| (now - *stored).num_days())
                .min();
            InventoryRow {
                org: read.org.clone(),
                app: app.name.clone(),
                label: app.label.clone(),
                kind: match app.kind {
                    OAuthAppKind::ConnectedApp => "CA",
                    OAuthAppKind::ExternalClientApp => "ECA",
                },
                flows: flows(app),
                scopes: app.scopes.clone(),
                permitted_users: if app.admin_approved {
                    "admin-approved"
                } else {
                    "self-authorize"
                },
                authorized: app
                    .profiles
                    .iter()
                    .chain(&app.permission_sets)
                    .cloned()
                    .collect(),
                run_as: app
                    .client_credentials_user
                    .clone()
                    .filter(|_| app.client_credentials_enabled),
                certificate_fingerprint: app.certificate.as_ref().map(|c| c.fingerprint.to_hex()),
                certificate_expires: app.certificate.as_ref().map(|c| c.not_after),
                consumer_secret_age_days,
                managed_by,
                last_login: read.logins.as_ref().and_then(|l| l.get(&app.name).copied()),
                active_grants: read
                    .grants
                    .as_ref()
                    .map(|g| g.iter().filter(|g| g.app == app.name).count()),
            }
        })
        .collect()
}
