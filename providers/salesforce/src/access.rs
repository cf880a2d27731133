//! Ending access after a leak (providers/salesforce/platform.md §4): the External Client
//! App kill switch (`ExtlClntAppConfigurablePolicies.isOauthPluginEnabled`, a read-modify-write
//! deploy), and revocation of the integration user's sessions (`AuthSession`), the app's refresh-token grants
//! (`OauthToken` → `/services/oauth2/revoke`) and, for an ECA, all its refresh tokens
//! (`DELETE /apps/oauth/usage/{appId}/tokens`).
//!
//! No token, delete token or session token ever appears in a message or a log line: messages
//! name the org, the app, the user and the call.

use crate::client::{soql_string, with_permission_hint};
use crate::config::AppKind;
use crate::xml::{self, Element, METADATA_NS};
use crate::{SalesforceTarget, metadata};
use quick_xml::escape::escape;
use rekey_api::{Error, ErrorKind, Result, Revoked, RotationId};
use serde_json::Value;

/// The ECA policy field that switches OAuth (every token grant) off.
const KILL_SWITCH: &str = "isOauthPluginEnabled";
/// An OauthToken query delivers at most 2500 rows; revoked rows drop out of the next query, so
/// a truncated answer is queried again, at most this often.
const MAX_GRANT_ROUNDS: usize = 20;
/// Page size for `GET /apps/oauth/usage` (Connect REST allows up to 100).
const USAGE_PAGE_SIZE: usize = 100;
const MAX_USAGE_PAGES: usize = 100;

const SESSIONS_HINT: &str =
    "the admin user needs Manage Users to see and delete other users' sessions (AuthSession)";
pub(crate) const GRANTS_HINT: &str = "the admin user needs Customize Application to see and revoke other users' OAuth tokens (OauthToken)";
const ECA_TOKENS_HINT: &str = "the admin user needs Customize Application to manage the OAuth usage of External Client Apps, and api_version must be 59.0 or later";

/// Whether a policies record has OAuth on. Absent means on, as for an ECA without a policies
/// component.
fn plugin_enabled(record: &Element) -> bool {
    !record
        .text_at(&[KILL_SWITCH])
        .is_some_and(|v| v.eq_ignore_ascii_case("false"))
}

/// Ids from Salesforce go into URL paths: refuse anything but a plain id.
pub(crate) fn checked_id<'a>(id: &'a str, what: &str) -> Result<&'a str> {
    if !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()) {
        Ok(id)
    } else {
        Err(Error::new(
            ErrorKind::Unexpected,
            format!("{what}: Salesforce answered an id that is not an id"),
        ))
    }
}

/// A new `ExtlClntAppConfigurablePolicies` for an ECA that has none, with OAuth off.
fn new_policies(app: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{t} xmlns=\"{METADATA_NS}\">\n    \
<externalClientApplication>{}</externalClientApplication>\n    <isEnabled>true</isEnabled>\n    \
<{KILL_SWITCH}>false</{KILL_SWITCH}>\n</{t}>\n",
        escape(app),
        t = metadata::ECA_POLICIES,
    )
}

impl SalesforceTarget {
    /// [`rekey_api::CertificateTarget::oauth_enabled`].
    pub(crate) async fn read_oauth_enabled(&self) -> Result<Option<bool>> {
        if self.app_kind == AppKind::ConnectedApp {
            return Ok(None);
        }
        match self.find_satellite(metadata::ECA_POLICIES).await? {
            Some((_, record)) => Ok(Some(plugin_enabled(&record))),
            None => {
                // No policies component: OAuth is on, if the app exists at all.
                self.eca_header().await?;
                Ok(Some(true))
            }
        }
    }

    /// [`rekey_api::CertificateTarget::set_oauth_enabled`]: one deploy of the ECA's policies
    /// with only `isOauthPluginEnabled` changed (no check-only pass: in an emergency the switch
    /// should flip at once, and a failed deploy changes nothing), then a read-back.
    pub(crate) async fn write_oauth_enabled(
        &self,
        enabled: bool,
        rotation_id: &RotationId,
    ) -> Result<()> {
        if self.app_kind == AppKind::ConnectedApp {
            return Err(Error::new(
                ErrorKind::Config,
                format!("{} has no OAuth kill switch: only External Client Apps have one", self.label()),
            )
            .with_hint("revoke access instead (the integration user's sessions and the app's OAuth tokens), or move the integration to an External Client App"));
        }
        if !enabled
            && let Some(admin_key) = self.client.admin_consumer_key()
            && self.consumer_key().await? == admin_key
        {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "{} is rekey's own admin app (consumer key {admin_key}); switching its OAuth off would lock rekey out",
                    self.label()
                ),
            )
            .with_hint("switch it off in Setup, or through a second admin app"));
        }
        let value = if enabled { "true" } else { "false" };
        let (member, body) = match self.find_satellite(metadata::ECA_POLICIES).await? {
            Some((member, mut record)) => {
                let current = record.text_at(&[KILL_SWITCH]);
                if current.is_some_and(|v| v.eq_ignore_ascii_case(value)) {
                    tracing::info!(target_app = %self, %rotation_id, enabled, "OAuth already in that state; nothing deployed");
                    return Ok(());
                }
                // Keep the WSDL (alphabetical) order when the field is missing.
                let after = record
                    .elements()
                    .map(|e| e.name.clone())
                    .filter(|n| n.as_str() < KILL_SWITCH)
                    .last()
                    .unwrap_or_default();
                record.set_text(&[KILL_SWITCH], &after, value);
                (member, xml::to_deploy_file(&record, metadata::ECA_POLICIES))
            }
            None => {
                self.eca_header().await?;
                if enabled {
                    tracing::info!(target_app = %self, %rotation_id, "no policies component: OAuth is on; nothing deployed");
                    return Ok(());
                }
                (format!("{}_plcy", self.app), new_policies(&self.app))
            }
        };
        let zip = self.deploy_zip(metadata::ECA_POLICIES, &member, &body)?;
        tracing::warn!(target_app = %self, %rotation_id, enabled, member = %member, "switching the app's OAuth");
        let deploy_id = self
            .deploy(metadata::ECA_POLICIES, &member, &zip, false)
            .await?;
        let now = self.read_oauth_enabled().await?;
        if now != Some(enabled) {
            return Err(Error::new(
                ErrorKind::Unexpected,
                format!(
                    "{}: deploy {deploy_id} succeeded but OAuth is still {}",
                    self.label(),
                    if enabled { "off" } else { "on" }
                ),
            )
            .with_hint("someone else may be changing the app; check its policies in Setup"));
        }
        tracing::info!(target_app = %self, %rotation_id, %deploy_id, enabled, "app OAuth switched");
        Ok(())
    }

    /// [`rekey_api::CertificateTarget::revoke_access`].
    pub(crate) async fn revoke_everything(&self) -> Result<Revoked> {
        if let Some(admin) = self.client.admin_username()
            && admin.eq_ignore_ascii_case(&self.integration_username)
        {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "{}: the integration user {admin} is rekey's admin user; revoking its sessions would end rekey's own",
                    self.label()
                ),
            )
            .with_hint("log rekey in as a separate admin user"));
        }
        let user = &self.integration_username;
        let user_id = self
            .user_id(user, "integration user")
            .await?
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("integration user {user} not found in org {}", self.org),
                )
                .with_hint("check integration_username: the login name the JWT's sub names")
            })?;
        let sessions = self.delete_sessions(user, &user_id).await?;
        let app_name = self.token_app_name().await?;
        let grants = self.revoke_grants(&app_name).await?;
        let app_tokens_deleted = match self.app_kind {
            AppKind::ConnectedApp => None,
            AppKind::ExternalClientApp => Some(self.delete_eca_tokens().await?),
        };
        tracing::info!(target_app = %self, sessions, grants, ?app_tokens_deleted, "access revoked");
        Ok(Revoked {
            sessions,
            grants,
            app_tokens_deleted,
        })
    }

    /// The id of the user `username` (the `role` it plays, for messages), or `None` when there
    /// is no such user.
    pub(crate) async fn user_id(&self, username: &str, role: &str) -> Result<Option<String>> {
        let what = format!("looking up {role} {username} in org {}", self.org);
        let soql = format!(
            "SELECT Id FROM User WHERE Username = {}",
            soql_string(username)
        );
        let answer = self.client.query(&what, &soql).await?;
        answer
            .records
            .first()
            .and_then(|r| r.get("Id"))
            .and_then(Value::as_str)
            .map(|id| checked_id(id, &what).map(str::to_string))
            .transpose()
    }

    /// Deletes every live session of the user except the caller's own; returns how many.
    pub(crate) async fn delete_sessions(&self, user: &str, user_id: &str) -> Result<u32> {
        let what = format!("listing sessions of {user} for {}", self.label());
        let soql = format!(
            "SELECT Id, IsCurrent FROM AuthSession WHERE UsersId = {}",
            soql_string(user_id)
        );
        let answer = self
            .client
            .query(&what, &soql)
            .await
            .map_err(|e| with_permission_hint(e, SESSIONS_HINT))?;
        if answer.records.is_empty() {
            tracing::info!(target_app = %self, user = %user, "no live session found (without Manage Users the admin sees only its own sessions)");
        }
        let mut deleted = 0;
        for record in &answer.records {
            let Some(id) = record.get("Id").and_then(Value::as_str) else {
                continue;
            };
            // Never end the session rekey itself is working with.
            if record.get("IsCurrent").and_then(Value::as_bool) == Some(true) {
                tracing::warn!(target_app = %self, session = %id, "skipping the admin's own current session");
                continue;
            }
            let what = format!("deleting session {id} of {user} for {}", self.label());
            let path = format!(
                "/services/data/v{}/sobjects/AuthSession/{}",
                self.client.api_version(),
                checked_id(id, &what)?
            );
            match self.client.rest_delete(&what, &path).await {
                Ok(()) => deleted += 1,
                // Ended meanwhile (timed out, logged out): nothing left to do.
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    tracing::debug!(target_app = %self, session = %id, "session already gone");
                }
                Err(e) => return Err(with_permission_hint(e, SESSIONS_HINT)),
            }
        }
        Ok(deleted)
    }

    /// The name `OauthToken.AppName` uses for the app: its label.
    async fn token_app_name(&self) -> Result<String> {
        let record = match self.app_kind {
            AppKind::ConnectedApp => self.read_app().await?.record,
            AppKind::ExternalClientApp => self.eca_header().await?,
        };
        Ok(record
            .text_at(&["label"])
            .unwrap_or_else(|| self.app.clone()))
    }

    /// Revokes every refresh-token grant (`OauthToken` row) of the app through its
    /// `DeleteToken`; returns how many Salesforce revoked.
    async fn revoke_grants(&self, app_name: &str) -> Result<u32> {
        let what = format!("listing OAuth tokens of {}", self.label());
        let soql = format!(
            "SELECT DeleteToken, UserId FROM OauthToken WHERE AppName = {}",
            soql_string(app_name)
        );
        let mut revoked = 0;
        for _ in 0..MAX_GRANT_ROUNDS {
            let answer = self
                .client
                .query(&what, &soql)
                .await
                .map_err(|e| with_permission_hint(e, GRANTS_HINT))?;
            let mut this_round = 0;
            for record in &answer.records {
                let Some(token) = record
                    .get("DeleteToken")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                else {
                    continue;
                };
                let user = record.get("UserId").and_then(Value::as_str).unwrap_or("?");
                let what = format!(
                    "revoking an OAuth token of user {user} for {}",
                    self.label()
                );
                // Ok(false): already revoked (invalid_token), which is what we want.
                if self.client.revoke_token(&what, token).await? {
                    this_round += 1;
                }
            }
            revoked += this_round;
            let truncated = answer.total_size > answer.records.len() as u64;
            if !truncated || this_round == 0 {
                break;
            }
        }
        Ok(revoked)
    }

    /// ECA: `DELETE /apps/oauth/usage/{appId}/tokens`. `false` when the app is not in the OAuth
    /// usage list (no OAuth usage, so no refresh token to delete).
    pub(crate) async fn delete_eca_tokens(&self) -> Result<bool> {
        let Some(app_id) = self.eca_app_id().await? else {
            tracing::info!(target_app = %self, "not listed in the org's OAuth usage: no refresh tokens to delete");
            return Ok(false);
        };
        let what = format!("deleting every refresh token of {}", self.label());
        let path = format!(
            "/services/data/v{}/apps/oauth/usage/{}/tokens",
            self.client.api_version(),
            checked_id(&app_id, &what)?
        );
        self.client
            .rest_delete(&what, &path)
            .await
            .map_err(|e| with_permission_hint(e, ECA_TOKENS_HINT))?;
        Ok(true)
    }

    /// The ECA's Connect REST id (`identifier`, `0xI…`), from `GET /apps/oauth/usage` by
    /// developer name.
    pub(crate) async fn eca_app_id(&self) -> Result<Option<String>> {
        let what = format!(
            "listing the OAuth usage of org {} to find {}",
            self.org, self.app
        );
        for page in 0..MAX_USAGE_PAGES {
            let path = format!(
                "/services/data/v{}/apps/oauth/usage?page={page}&pageSize={USAGE_PAGE_SIZE}",
                self.client.api_version()
            );
            let answer = self
                .client
                .rest_get(&what, &path)
                .await
                .map_err(|e| with_permission_hint(e, ECA_TOKENS_HINT))?;
            let apps = answer.get("apps").and_then(Value::as_array);
            let found = apps.into_iter().flatten().find(|a| {
                a.get("developerName")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.eq_ignore_ascii_case(&self.app))
            });
            if let Some(app) = found {
                return Ok(app
                    .get("identifier")
                    .and_then(Value::as_str)
                    .map(str::to_string));
            }
            let more = answer.get("nextPageUrl").is_some_and(|n| !n.is_null());
            if !more || apps.is_none_or(|a| a.is_empty()) {
                break;
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_state_and_new_policies() {
        let on = xml::parse("<r><isOauthPluginEnabled>true</isOauthPluginEnabled></r>").unwrap();
        let off = xml::parse("<r><isOauthPluginEnabled>False</isOauthPluginEnabled></r>").unwrap();
        let absent = xml::parse("<r><isEnabled>true</isEnabled></r>").unwrap();
        assert!(plugin_enabled(&on) && !plugin_enabled(&off) && plugin_enabled(&absent));
        let doc = xml::parse(&new_policies("A&B")).unwrap();
        assert_eq!(doc.name, "ExtlClntAppConfigurablePolicies");
        assert_eq!(
            doc.text_at(&["externalClientApplication"]).as_deref(),
            Some("A&B")
        );
        assert!(!plugin_enabled(&doc));
        assert!(checked_id("0Ak5g0000000001AAA", "x").is_ok());
        assert!(checked_id("../x", "x").is_err() && checked_id("", "x").is_err());
    }
}
