//! The org as sObject records: one row builder per object the SOQL engine and the sObject
//! resources serve, each reading the live org state, and who may see which rows.

use crate::soql::schema::{self, PERMISSION_FIELDS, SObject};
use crate::soql::{Dataset, Row, SoqlError};
use crate::state::{AuditEntry, CONNECTED_APP, Component, Login, OrgState, Session, User, id18};
use crate::xml::Element;
use serde_json::{Value, json};
use std::collections::HashMap;

/// Salesforce's REST datetime format: `2026-01-01T00:00:00.000+0000`.
pub(crate) fn sf_datetime(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
        .to_string()
}

fn into_map(v: Value) -> Row {
    match v {
        Value::Object(m) => m,
        _ => Row::new(),
    }
}

/// Who runs a query: their session (for `AuthSession.IsCurrent`) and user (for visibility).
pub(crate) struct Viewer<'a> {
    pub(crate) session: &'a Session,
    pub(crate) user: &'a User,
}

/// The rows of `object` the viewer may see, and every row of the parents the query reaches.
/// `SetupAuditTrail` without View Setup and Configuration does not exist for the viewer.
pub(crate) fn dataset(
    st: &OrgState,
    object: &'static SObject,
    parents: &[&'static str],
    viewer: &Viewer<'_>,
    soql: &str,
) -> Result<Dataset, SoqlError> {
    if object.name == schema::SETUP_AUDIT_TRAIL.name
        && !st.has_permission_or_all_data(viewer.user, "ViewSetup")
    {
        let at = soql
            .to_ascii_lowercase()
            .find("setupaudittrail")
            .unwrap_or(0);
        return Err(SoqlError::at(
            soql,
            soql[..at].chars().count(),
            "INVALID_TYPE",
            "sObject type 'SetupAuditTrail' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names.",
        ));
    }
    let mut data = Dataset {
        rows: rows(st, object.name, Some(viewer)),
        ..Dataset::default()
    };
    for parent in parents {
        data.parents.insert(parent, rows(st, parent, None));
    }
    Ok(data)
}

/// Every row of an object; with a viewer, only the rows that viewer may see.
pub(crate) fn rows(st: &OrgState, object: &str, viewer: Option<&Viewer<'_>>) -> Vec<Row> {
    let sees_all =
        |permission: &str| viewer.is_none_or(|v| st.has_permission_or_all_data(v.user, permission));
    let own = |user_id: &str| viewer.is_none_or(|v| v.user.id == user_id);
    let now = st.now();
    let current = viewer.map_or("", |v| v.session.id.as_str());
    match object {
        "Organization" => vec![organization_row(st)],
        "User" => {
            let last_logins = last_logins(st);
            st.users
                .iter()
                .map(|u| user_fields(st, u, last_logins.get(u.id.as_str()).copied()))
                .collect()
        }
        "Profile" => st
            .profiles()
            .into_iter()
            .map(|(name, id)| profile_row(st, name, id))
            .collect(),
        "PermissionSet" => permission_set_rows(st),
        "PermissionSetAssignment" => st
            .assignments
            .iter()
            .map(|a| {
                into_map(json!({
                    "Id": a.id, "AssigneeId": a.user_id, "PermissionSetId": a.permission_set_id,
                    "PermissionSetGroupId": null, "IsActive": true, "ExpirationDate": null,
                    "IsRevoked": false,
                }))
            })
            .collect(),
        "ConnectedApplication" => st
            .components
            .iter()
            .filter(|((t, _), _)| t == CONNECTED_APP.name)
            .map(|(_, c)| connected_application_row(c))
            .collect(),
        "AuthSession" => {
            // Manage Users shows every user's sessions; others see their own.
            let all = sees_all("ManageUsers");
            st.sessions
                .iter()
                .filter(|s| s.live_at(now) && (all || own(&s.user_id)))
                .map(|s| auth_session_row(st, s, current))
                .collect()
        }
        "OauthToken" => {
            // Customize Application shows every user's tokens; others see their own.
            let all = sees_all("CustomizeApplication");
            st.grants
                .iter()
                .filter(|g| all || own(&g.user_id))
                .map(|g| {
                    let menu_item = st
                        .app_component_id(&g.app_key)
                        .map(|id| id18(&format!("0DS{}", id.get(3..15).unwrap_or(""))));
                    into_map(json!({
                        // "Reserved for future use. Currently, the value is always null."
                        "Id": null,
                        // A masked refresh token: enough to tell rows apart, useless to a thief.
                        "AccessToken": format!("{}…", g.refresh_token.get(..10).unwrap_or("")),
                        "AppMenuItemId": menu_item,
                        "AppName": st.app_label(&g.app_key),
                        "CreatedDate": sf_datetime(g.created),
                        "DeleteToken": g.delete_token,
                        "LastUsedDate": sf_datetime(g.last_used),
                        "RequestToken": null,
                        "UseCount": g.use_count,
                        "UserId": g.user_id,
                    }))
                })
                .collect()
        }
        "LoginHistory" => {
            // Manage Users or Monitor Login History shows everyone's; others see their own.
            let all = sees_all("ManageUsers") || sees_all("MonitorLoginHistory");
            st.logins
                .iter()
                .filter(|l| all || own(&l.user_id))
                .map(|l| login_row(st, l))
                .collect()
        }
        "SetupAuditTrail" => st.audit.iter().map(audit_row).collect(),
        _ => Vec::new(),
    }
}

fn organization_row(st: &OrgState) -> Row {
    into_map(json!({
        "Id": st.org.id,
        "Name": st.org.name,
        "IsSandbox": st.org.is_sandbox,
        "InstanceName": st.org.instance_name,
        "OrganizationType": st.org.organization_type,
        "NamespacePrefix": null,
        "TrialExpirationDate": null,
        "IsReadOnly": false,
        "TimeZoneSidKey": "Europe/Paris",
        "CreatedDate": sf_datetime(st.created),
    }))
}

/// Each user's latest successful login (`User.LastLoginDate`), by user id.
fn last_logins(st: &OrgState) -> HashMap<&str, i64> {
    let mut out: HashMap<&str, i64> = HashMap::new();
    for l in st.logins.iter().filter(|l| l.succeeded()) {
        let latest = out.entry(l.user_id.as_str()).or_insert(l.time);
        *latest = (*latest).max(l.time);
    }
    out
}

/// A `User` record with every field the emulator knows.
fn user_fields(st: &OrgState, u: &User, last_login: Option<i64>) -> Row {
    let (first, last) = match u.name.split_once(' ') {
        Some((f, l)) => (Value::from(f), Value::from(l)),
        None => (Value::Null, Value::from(u.name.as_str())),
    };
    into_map(json!({
        "Id": u.id,
        "Username": u.username,
        "Name": u.name,
        "FirstName": first,
        "LastName": last,
        "Email": u.username,
        "IsActive": u.active,
        "ProfileId": st.profile_id(&u.profile),
        "UserType": "Standard",
        "LastLoginDate": last_login.map(sf_datetime),
        "UserRoleId": null,
        "FederationIdentifier": null,
        "CreatedDate": sf_datetime(st.created),
    }))
}

/// The `Permissions*` flags for a list of granted permission names.
fn permission_flags(row: &mut Row, granted: &[String]) {
    for field in PERMISSION_FIELDS {
        let name = field.name.trim_start_matches("Permissions");
        row.insert(
            field.name.into(),
            Value::Bool(granted.iter().any(|g| g == name)),
        );
    }
}

fn profile_row(st: &OrgState, name: &str, id: &str) -> Row {
    let mut row = into_map(json!({
        "Id": id,
        "Name": name,
        "UserLicenseId": id18(&format!("100{}", id.get(3..15).unwrap_or(""))),
        "UserType": "Standard",
    }));
    permission_flags(&mut row, st.profile_permissions(name));
    row
}

/// Every permission set, the ones profiles own included (`IsOwnedByProfile`).
fn permission_set_rows(st: &OrgState) -> Vec<Row> {
    let mut out = Vec::new();
    for (name, id) in st.profiles() {
        let owned = st.profile_permission_set_id(name).unwrap_or_default();
        let mut row = into_map(json!({
            // Salesforce names a profile's own permission set after its id.
            "Id": owned, "Name": format!("X{}", id.get(..15).unwrap_or("")), "Label": name,
            "IsOwnedByProfile": true, "ProfileId": id, "PermissionSetGroupId": null,
            "Type": "Profile", "LicenseId": null,
        }));
        permission_flags(&mut row, st.profile_permissions(name));
        out.push(row);
    }
    for (name, id, permissions) in st.permission_sets() {
        let mut row = into_map(json!({
            "Id": id, "Name": name, "Label": name.replace('_', " "), "IsOwnedByProfile": false,
            "ProfileId": null, "PermissionSetGroupId": null, "Type": "Regular", "LicenseId": null,
        }));
        permission_flags(&mut row, permissions);
        out.push(row);
    }
    out
}

/// A Connected App's policy options as the (read-only) `ConnectedApplication` object shows them.
fn connected_application_row(c: &Component) -> Row {
    let e = &c.element;
    let oauth = e.child("oauthConfig");
    let flag = |holder: Option<&Element>, name: &str| {
        holder.and_then(|h| h.child_bool(name)).unwrap_or(false)
    };
    let refresh = e
        .child("oauthPolicy")
        .and_then(|p| p.child_text("refreshTokenPolicy"))
        .unwrap_or("infinite");
    // `specific_lifetime:<n>:<unit>` / `specific_inactivity:<n>:<unit>`.
    let mut parts = refresh.split(':');
    let kind = parts.next().unwrap_or("");
    let period: Option<i64> = parts.next().and_then(|n| n.parse().ok());
    let high_assurance = e
        .child("sessionPolicy")
        .and_then(|p| p.child_text("sessionLevel"))
        == Some("HIGH_ASSURANCE");
    into_map(json!({
        "Id": c.id,
        "Name": e.child_text("label"),
        "CreatedDate": sf_datetime(c.created),
        "CreatedById": c.created_by,
        "LastModifiedDate": sf_datetime(c.modified),
        "LastModifiedById": c.modified_by,
        "SystemModstamp": sf_datetime(c.modified),
        "MobileSessionTimeout": null,
        "MobileStartUrl": e.child("mobileStartUrl").map(|m| m.text.clone()),
        "OptionsAllowAdminApprovedUsersOnly": flag(oauth, "isAdminApproved"),
        "OptionsCodeCredentialGuestEnabled": flag(oauth, "isCodeCredentialEnabled"),
        "OptionsFullContentPushNotifications": false,
        "OptionsHasSessionLevelPolicy": high_assurance,
        "OptionsIsInternal": false,
        "OptionsRefreshTokenValidityMetric": kind == "specific_inactivity",
        "OptionsTokenExchangeManageBitEnabled": flag(oauth, "isTokenExchangeEnabled"),
        "PinLength": null,
        "RefreshTokenValidityPeriod": period,
        "StartUrl": e.child_text("startUrl"),
        "UvidTimeout": null,
    }))
}

/// An `AuthSession` record with every field; `current` is the caller's session id.
fn auth_session_row(st: &OrgState, s: &Session, current: &str) -> Row {
    into_map(json!({
        "Id": s.id,
        "UsersId": s.user_id,
        "CreatedDate": sf_datetime(s.created),
        "LastModifiedDate": sf_datetime(s.last_used),
        "NumSecondsValid": s.timeout_secs,
        "SessionType": st.settings.auth_session_type,
        "LoginType": st.settings.auth_session_login_type,
        "SourceIp": s.source_ip,
        "UserType": "Standard",
        "SessionSecurityLevel": "STANDARD",
        "ParentId": null,
        "LoginHistoryId": s.login_history_id,
        "LoginGeoId": null,
        "IsCurrent": s.id == current,
        "LogoutUrl": null,
        "IsAssociatedWithJwtAccessToken": false,
    }))
}

fn login_row(st: &OrgState, l: &Login) -> Row {
    into_map(json!({
        "Id": l.id,
        "ApiType": "N/A",
        "ApiVersion": "N/A",
        "Application": l.application,
        "AuthenticationServiceId": null,
        "Browser": "Unknown",
        "CipherSuite": null,
        "ClientVersion": "N/A",
        "CountryIso": null,
        "LoginGeoId": null,
        "LoginSubType": null,
        "LoginTime": sf_datetime(l.time),
        "LoginType": st.settings.auth_session_login_type,
        "LoginUrl": l.login_url,
        "NetworkId": null,
        "OptionsIsGet": false,
        "OptionsIsPost": true,
        "Platform": "Unknown",
        "SourceIp": l.source_ip,
        "Status": l.status,
        "TlsProtocol": null,
        "UserId": l.user_id,
    }))
}

fn audit_row(a: &AuditEntry) -> Row {
    into_map(json!({
        "Id": a.id,
        "Action": a.action,
        "Section": a.section,
        "Display": a.display,
        "CreatedDate": sf_datetime(a.created),
        "CreatedById": a.created_by,
        "CreatedByContext": null,
        "CreatedByIssuer": null,
        "DelegateUser": null,
        "ResponsibleNamespacePrefix": null,
    }))
}
