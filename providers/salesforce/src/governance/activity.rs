//! What users and apps do in the org, over SOQL: refresh-token grants (`OauthToken`) and their
//! revocation, logins (`LoginHistory`), a user's privileged permissions (`User`,
//! `PermissionSetAssignment`), and the clock (the `Date` header of `GET /services/data/`).
//! providers/salesforce/platform.md §4.2, §5.6 and §5.7.

use super::{
    ClockReading, LOGINS_HINT, OAuthApp, OAuthGrant, SalesforceOrg, USERS_HINT, UserAccess,
};
use crate::access::{GRANTS_HINT, checked_id};
use crate::client::{parse_date, soql_string, with_permission_hint};
use chrono::{DateTime, SecondsFormat, Utc};
use rekey_api::{Error, ErrorKind, Result, SecretString};
use serde_json::Value;
use std::collections::BTreeMap;

/// The permissions that make a user privileged, in the order [`UserAccess::privileged`] lists
/// them.
const PRIVILEGED: [&str; 4] = [
    "ModifyAllData",
    "ViewAllData",
    "ModifyMetadata",
    "ManageUsers",
];

/// The `Date` header has a resolution of one second: the server's time lies anywhere in the
/// second it names.
const DATE_RESOLUTION_MS: i64 = 1000;

/// The app an `OauthToken.AppName` or `LoginHistory.Application` means: an app of that API
/// name, else the first (by name) of that label. Labels are not unique; a name is.
fn resolve<'a>(apps: &'a [OAuthApp], shown: &str) -> Option<&'a OAuthApp> {
    apps.iter()
        .find(|a| a.name == shown)
        .or_else(|| apps.iter().find(|a| a.label == shown))
}

fn str_field<'a>(record: &'a Value, name: &str) -> Option<&'a str> {
    record.get(name).and_then(Value::as_str)
}

impl SalesforceOrg {
    /// Every `OauthToken` row (all pages), its app resolved to an [`OAuthApp`] name when
    /// `AppName` matches an app's name or label.
    pub async fn grants(&self, apps: &[OAuthApp]) -> Result<Vec<OAuthGrant>> {
        let what = format!("listing the OAuth grants (OauthToken) of org {}", self.org);
        let soql = "SELECT AppName, UserId, User.Username, CreatedDate, LastUsedDate, UseCount, \
                    DeleteToken FROM OauthToken";
        let answer = self
            .client
            .query(&what, soql)
            .await
            .map_err(|e| with_permission_hint(e, GRANTS_HINT))?;
        if answer.total_size > answer.records.len() as u64 {
            // Salesforce delivers at most 2,500 OauthToken rows; the rest appear only once
            // some are revoked.
            tracing::warn!(org = %self.org, delivered = answer.records.len(), total = answer.total_size, "OauthToken query cut off by Salesforce; grants beyond it are not listed");
        }
        let mut grants = Vec::with_capacity(answer.records.len());
        for record in &answer.records {
            let app_label = str_field(record, "AppName").unwrap_or_default().to_string();
            let user_id = str_field(record, "UserId").unwrap_or_default().to_string();
            let Some(delete_token) = str_field(record, "DeleteToken").filter(|t| !t.is_empty())
            else {
                tracing::warn!(org = %self.org, app = %app_label, user = %user_id, "OauthToken row without a DeleteToken; skipped");
                continue;
            };
            let created = str_field(record, "CreatedDate")
                .and_then(parse_date)
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::Unexpected,
                        format!("{what}: a grant of user {user_id} has no readable CreatedDate"),
                    )
                })?;
            grants.push(OAuthGrant {
                app: resolve(apps, &app_label)
                    .map_or_else(|| app_label.clone(), |a| a.name.clone()),
                app_label,
                user_id,
                username: record
                    .get("User")
                    .and_then(|u| str_field(u, "Username"))
                    .map(str::to_string),
                created,
                last_used: str_field(record, "LastUsedDate").and_then(parse_date),
                use_count: record.get("UseCount").and_then(Value::as_u64).unwrap_or(0),
                delete_token: SecretString::new(delete_token),
            });
        }
        Ok(grants)
    }

    /// Revokes one grant through its `DeleteToken` (`/services/oauth2/revoke`): `Ok(true)`
    /// revoked now, `Ok(false)` already gone.
    pub async fn revoke_grant(&self, grant: &OAuthGrant) -> Result<bool> {
        let what = format!(
            "revoking the OAuth grant of user {} for app {} in org {}",
            grant.username.as_deref().unwrap_or(&grant.user_id),
            grant.app,
            self.org
        );
        let revoked = self
            .client
            .revoke_token(&what, grant.delete_token.expose_secret())
            .await
            .map_err(|e| with_permission_hint(e, GRANTS_HINT))?;
        tracing::info!(org = %self.org, app = %grant.app, user = %grant.user_id, revoked, "OAuth grant revoked");
        Ok(revoked)
    }

    /// The latest successful login through each app since `since`, keyed by app name.
    /// `LoginHistory.Application` cannot be filtered on, so the query filters on `LoginTime`
    /// and the rows are matched to apps here; a label several apps share credits each of them
    /// (the row cannot tell them apart, and an audit must not call a used app unused).
    pub async fn last_logins(
        &self,
        apps: &[OAuthApp],
        since: DateTime<Utc>,
    ) -> Result<BTreeMap<String, DateTime<Utc>>> {
        let what = format!("reading the login history of org {}", self.org);
        let soql = format!(
            "SELECT Application, LoginTime, Status FROM LoginHistory WHERE LoginTime >= {}",
            since.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
        let answer = self
            .client
            .query(&what, &soql)
            .await
            .map_err(|e| with_permission_hint(e, LOGINS_HINT))?;
        let mut latest: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
        for record in &answer.records {
            if str_field(record, "Status") != Some("Success") {
                continue;
            }
            let (Some(application), Some(time)) = (
                str_field(record, "Application"),
                str_field(record, "LoginTime").and_then(parse_date),
            ) else {
                continue;
            };
            let matching = apps
                .iter()
                .filter(|a| a.name == application || a.label == application);
            for app in matching {
                let entry = latest.entry(app.name.clone()).or_insert(time);
                *entry = (*entry).max(time);
            }
        }
        Ok(latest)
    }

    /// The user's access, `None` when there is no such user: API Only, and which privileged
    /// permissions the user holds through the profile's own permission set or any other
    /// assigned one.
    pub async fn user_access(&self, username: &str) -> Result<Option<UserAccess>> {
        let what = format!("looking up user {username} in org {}", self.org);
        let soql = format!(
            "SELECT Id, Username, IsActive FROM User WHERE Username = {}",
            soql_string(username)
        );
        let answer = self
            .client
            .query(&what, &soql)
            .await
            .map_err(|e| with_permission_hint(e, USERS_HINT))?;
        let Some(user) = answer.records.first() else {
            return Ok(None);
        };
        let id = checked_id(str_field(user, "Id").unwrap_or_default(), &what)?.to_string();
        let what = format!(
            "reading the permission set assignments of {username} in org {}",
            self.org
        );
        let fields: Vec<String> = PRIVILEGED
            .iter()
            .chain(&["ApiUserOnly"])
            .map(|p| format!("PermissionSet.Permissions{p}"))
            .collect();
        let soql = format!(
            "SELECT {} FROM PermissionSetAssignment WHERE AssigneeId = {}",
            fields.join(", "),
            soql_string(&id)
        );
        let assignments = self
            .client
            .query(&what, &soql)
            .await
            .map_err(|e| with_permission_hint(e, USERS_HINT))?;
        let holds = |permission: &str| {
            let field = format!("Permissions{permission}");
            assignments.records.iter().any(|a| {
                a.get("PermissionSet")
                    .and_then(|p| p.get(&field))
                    .and_then(Value::as_bool)
                    == Some(true)
            })
        };
        Ok(Some(UserAccess {
            username: str_field(user, "Username").unwrap_or(username).to_string(),
            active: user
                .get("IsActive")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            api_only: holds("ApiUserOnly"),
            privileged: PRIVILEGED
                .iter()
                .filter(|p| holds(p))
                .map(|p| p.to_string())
                .collect(),
            id,
        }))
    }

    /// This host's clock against Salesforce's, from the `Date` header of an unauthenticated
    /// `GET /services/data/` on the login host: offset = server − the local midpoint of send and
    /// receive; uncertainty = half the round trip plus half the header's one-second resolution.
    pub async fn clock_offset(&self) -> Result<ClockReading> {
        let what = format!("reading the clock of org {}", self.org);
        let (sent, received, date) = self.client.server_date(&what).await?;
        let date = date.ok_or_else(|| {
            Error::new(
                ErrorKind::Unexpected,
                format!("{what}: the answer has no readable Date header"),
            )
            .with_hint("a proxy between this host and Salesforce may strip the header")
        })?;
        let round_trip = (received - sent).num_milliseconds().max(0);
        let local_mid = sent.timestamp_millis() + round_trip / 2;
        let server_mid = date.timestamp_millis() + DATE_RESOLUTION_MS / 2;
        Ok(ClockReading {
            offset_ms: server_mid - local_mid,
            uncertainty_ms: round_trip / 2 + DATE_RESOLUTION_MS / 2,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::governance::{IpRelaxation, OAuthAppKind, RefreshTokenPolicy};

    fn app(name: &str, label: &str) -> OAuthApp {
        OAuthApp {
            kind: OAuthAppKind::ConnectedApp,
            name: name.into(),
            label: label.into(),
            consumer_key: None,
            callback_url: None,
            scopes: vec![],
            admin_approved: false,
            profiles: vec![],
            permission_sets: vec![],
            ip_relaxation: IpRelaxation::Enforce,
            refresh_token: RefreshTokenPolicy::Infinite,
            pkce_required: false,
            consumer_secret_optional: false,
            secret_required_for_refresh: true,
            high_assurance: false,
            client_credentials_enabled: false,
            client_credentials_user: None,
            introspect_all_tokens: false,
            oauth_enabled: true,
            certificate: None,
            certificate_problem: None,
        }
    }

    #[test]
    fn names_win_over_labels() {
        let apps = [app("A", "Shared"), app("B", "A"), app("C", "Shared")];
        assert_eq!(resolve(&apps, "A").unwrap().name, "A");
        assert_eq!(resolve(&apps, "Shared").unwrap().name, "A");
        assert!(resolve(&apps, "Nope").is_none());
    }
}
