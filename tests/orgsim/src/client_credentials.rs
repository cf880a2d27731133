//! The OAuth 2.0 client credentials grant at the token endpoint (Salesforce Help, "OAuth 2.0
//! Client Credentials Flow for Server-to-Server Integration"): `grant_type=client_credentials`
//! with the consumer key and secret (form body, query string, or `Authorization: Basic`) buys a
//! session for the app's run-as user. Salesforce serves it on My Domain only.
//!
//! Checks run in a fixed order — host, key, secret, flow enabled, run-as user, ECA OAuth plugin
//! — so a request with several problems reports the first one (an unknown key wins over a wrong
//! secret). An ECA's `Rotated` credential (see `state/consumers.rs`) is accepted like its
//! primary pair until deleted or expired.

use crate::refresh::hmac_sha256;
use crate::state::{CONNECTED_APP, ECA_GLOBAL, ECA_OAUTH_POLICIES, OrgState, User};
use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use std::collections::HashMap;

/// The `grant_type` of the flow.
pub(crate) const CLIENT_CREDENTIALS: &str = "client_credentials";

/// The generic login hosts, where Salesforce refuses the flow (it needs the org's My Domain).
const LOGIN_HOSTS: [&str; 2] = ["login.salesforce.com", "test.salesforce.com"];

/// Scopes a client credentials token never carries: the flow has no refresh token and no UI.
const DROPPED_SCOPES: [&str; 4] = ["full", "web", "offline_access", "refresh_token"];

/// A token-endpoint error: (`error`, `error_description`).
type GrantError = (String, String);

fn err(error: &str, description: &str) -> GrantError {
    (error.to_string(), description.to_string())
}

fn no_user() -> GrantError {
    err("invalid_grant", "no client credentials user enabled")
}

/// Fills `client_id`/`client_secret` from `Authorization: Basic base64(id:secret)` when the
/// form and query string do not carry them.
pub(crate) fn add_basic_credentials(headers: &HeaderMap, params: &mut HashMap<String, String>) {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return;
    };
    let Some((scheme, encoded)) = value.trim().split_once(' ') else {
        return;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return;
    }
    let Some(decoded) = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
    else {
        return;
    };
    if let Some((id, secret)) = decoded.split_once(':') {
        params
            .entry("client_id".into())
            .or_insert_with(|| id.to_string());
        params
            .entry("client_secret".into())
            .or_insert_with(|| secret.to_string());
    }
}

/// The run-as user an app names (CA `oauthConfig/oauthClientCredentialUser`, ECA policies
/// `clientCredentialsFlowUser`), when it is a user of the org.
fn run_as_user(st: &OrgState, key: &str) -> Option<User> {
    let app = st.consumer_pair(key)?.app;
    let username = if app.kind == CONNECTED_APP {
        st.component(CONNECTED_APP, &app.name)?
            .element
            .child("oauthConfig")?
            .child_text("oauthClientCredentialUser")?
            .to_string()
    } else {
        st.satellite(ECA_OAUTH_POLICIES, &app.name)?
            .1
            .element
            .child_text("clientCredentialsFlowUser")?
            .to_string()
    };
    st.user_by_username(&username).cloned()
}

/// The user and app label a client credentials request names (for its `LoginHistory` row):
/// the run-as user of the app its `client_id` belongs to.
pub(crate) fn named_login(
    st: &OrgState,
    params: &HashMap<String, String>,
) -> Option<(String, Option<String>)> {
    let key = params.get("client_id")?;
    let user = run_as_user(st, key)?;
    let app = st.consumer_pair(key)?.app;
    Some((user.id, st.app_label(&app.key())))
}

/// Whether the app enables the flow: CA `oauthConfig/isClientCredentialEnabled`; ECA global
/// settings `isClientCredentialsFlowEnabled` and policies `isClientCredentialsFlowEnabled`.
fn flow_enabled(st: &OrgState, kind_is_ca: bool, name: &str) -> bool {
    let flag = |e: Option<&crate::xml::Element>, field: &str| {
        e.and_then(|e| e.child_bool(field)).unwrap_or(false)
    };
    if kind_is_ca {
        let oauth = st
            .component(CONNECTED_APP, name)
            .and_then(|c| c.element.child("oauthConfig"));
        return flag(oauth, "isClientCredentialEnabled");
    }
    let global = st.satellite(ECA_GLOBAL, name).map(|(_, c)| &c.element);
    let policies = st
        .satellite(ECA_OAUTH_POLICIES, name)
        .map(|(_, c)| &c.element);
    flag(global, "isClientCredentialsFlowEnabled")
        && flag(policies, "isClientCredentialsFlowEnabled")
}

/// The grant; a new session (or the run-as user's live one for the app) is created by login
/// `login_id`. `host` is the `Host` the request was sent to.
pub(crate) fn grant(
    st: &mut OrgState,
    base_url: &str,
    host: &str,
    params: &HashMap<String, String>,
    login_id: &str,
) -> Result<Value, GrantError> {
    let hostname = host.rsplit_once(':').map_or(host, |(h, _)| h);
    if LOGIN_HOSTS.iter().any(|h| h.eq_ignore_ascii_case(hostname)) {
        return Err(err("invalid_grant", "request not supported on this domain"));
    }
    let key = params.get("client_id").map_or("", String::as_str);
    let pair = st
        .consumer_pair(key)
        .ok_or_else(|| err("invalid_client_id", "client identifier invalid"))?;
    let given = params.get("client_secret").map(String::as_str);
    let secret = pair.secret.as_deref().filter(|s| !s.is_empty());
    if secret.is_none() || given != secret {
        return Err(err("invalid_client", "invalid client credentials"));
    }
    let app = pair.app;
    if !flow_enabled(st, app.kind == CONNECTED_APP, &app.name) {
        return Err(err(
            "invalid_grant",
            &st.settings.client_credentials_disabled_description,
        ));
    }
    let user = run_as_user(st, key).ok_or_else(no_user)?;
    // Salesforce asks for an integration user with API Only (`PermissionsApiUserOnly`); the
    // seed may name the permission either way.
    let api_only = st.has_permission(&user, "ApiUserOnly") || st.has_permission(&user, "ApiOnly");
    if !user.active || !api_only {
        return Err(no_user());
    }
    if !app.oauth_enabled {
        return Err(err(
            &st.settings.oauth_disabled_error,
            &st.settings.oauth_disabled_description,
        ));
    }
    let minutes = app
        .session_timeout_minutes
        .or_else(|| st.profile_timeout(&user))
        .unwrap_or(st.org.session_timeout_minutes);
    let session = st.session_for(&user.id, &app.key(), i64::from(minutes) * 60, login_id);
    let id = format!("{base_url}/id/{}/{}", st.org.id, user.id);
    let issued_at = (st.now() * 1000).to_string();
    let signature = STANDARD.encode(hmac_sha256(
        secret.unwrap_or_default().as_bytes(),
        format!("{id}{issued_at}").as_bytes(),
    ));
    let mut scopes: Vec<&str> = app
        .scope
        .split(' ')
        .filter(|s| !s.is_empty() && !DROPPED_SCOPES.contains(s))
        .collect();
    if scopes.is_empty() {
        scopes.push("api");
    }
    Ok(json!({
        "access_token": session.token,
        "signature": signature,
        "scope": scopes.join(" "),
        "instance_url": base_url,
        "id": id,
        "token_type": "Bearer",
        "issued_at": issued_at,
    }))
}
