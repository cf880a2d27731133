//! Ending access (providers/salesforce/platform.md §4): `/services/oauth2/revoke`,
//! `GET|DELETE /sobjects/AuthSession/{id}` (and the refusals for `OauthToken`/`User`), and the
//! ECA token management of Connect REST: `GET /apps/oauth/usage` and `DELETE
//! /apps/oauth/usage/{appId}/tokens`.

use crate::records::{Viewer, rows};
use crate::rest::{Caller, authenticate_versioned, missing, rest_error};
use crate::server::{AppState, json_response};
use crate::soql::schema;
use crate::state::{ECA, SessionEnd, User, same_id};
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value, json};

/// Path of the revoke endpoint.
pub(crate) const REVOKE_PATH: &str = "/services/oauth2/revoke";

/// The first API version with the OAuth usage resources (v59.0).
const USAGE_MIN_VERSION: u32 = 59;

/// 400 `{"error","error_description"}`, the OAuth endpoints' error shape.
fn oauth_error(error: &str, description: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        json!({"error": error, "error_description": description}),
    )
}

fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

/// `POST|GET /services/oauth2/revoke` with `token=` in the form body or the query string (the
/// body wins). No authentication: the token is its own proof.
///
/// - a live access token: its session ends;
/// - a refresh token or an `OauthToken.DeleteToken`: the grant is gone (and with it the
///   approval a self-authorized app needs) and the live sessions of that user and app end;
/// - a consumer key/secret or a JWT bearer assertion: 400 `unsupported_token_type`;
/// - anything else (unknown, expired, already revoked, missing): 400 `invalid_token`.
pub(crate) async fn revoke(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let mut params = crate::token::parse_form(query.as_deref().unwrap_or(""));
    params.extend(crate::token::parse_form(&String::from_utf8_lossy(&body)));
    let token = params.get("token").map(|t| t.trim()).unwrap_or("");
    if token.is_empty() {
        return oauth_error("invalid_token", "token is missing");
    }
    let mut st = app.lock();
    let now = st.now();
    if let Some(s) = st
        .sessions
        .iter_mut()
        .find(|s| s.token == token && s.live_at(now))
    {
        s.ended = Some(SessionEnd::Revoked);
        return empty(StatusCode::OK);
    }
    if st.revoke_grants(|g| g.refresh_token == token || g.delete_token == token) > 0 {
        return empty(StatusCode::OK);
    }
    let is_jws = token.split('.').count() == 3 && !token.contains('!');
    if is_jws || st.is_app_credential(token) {
        return oauth_error(
            "unsupported_token_type",
            "only access tokens, refresh tokens and delete tokens can be revoked",
        );
    }
    oauth_error("invalid_token", "invalid token")
}

/// 405 for a method an sObject does not support.
fn method_not_allowed(method: &str, allowed: &str) -> Response {
    let mut response = rest_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        &format!("HTTP Method '{method}' not allowed. Allowed are {allowed}"),
    );
    if let Ok(v) = HeaderValue::from_str(allowed) {
        response.headers_mut().insert(header::ALLOW, v);
    }
    response
}

fn sobject_record(mut row: Map<String, Value>, object: &str, id: &str, version: &str) -> Value {
    row.insert(
        "attributes".into(),
        json!({"type": object, "url": format!("/services/data/{version}/sobjects/{object}/{id}")}),
    );
    Value::Object(row)
}

/// Whether `user` may see (and delete) another user's sessions.
fn manages_users(app: &AppState, user: &User) -> bool {
    app.lock().has_permission_or_all_data(user, "ManageUsers")
}

/// `GET /services/data/vNN.0/sobjects/{object}/{id}`: a record of any object the emulator
/// serves, among the rows the caller may see (`AuthSession`: live sessions); 404 otherwise,
/// `OauthToken` included (its ids are null).
pub(crate) async fn sobject_get(
    State(app): State<AppState>,
    Path((version, object, id)): Path<(String, String, String)>,
    Caller { session, user }: Caller,
) -> Response {
    let Some(o) = schema::object(&object) else {
        return missing();
    };
    let st = app.lock();
    if o.name == schema::SETUP_AUDIT_TRAIL.name
        && !st.has_permission_or_all_data(&user, "ViewSetup")
    {
        return missing();
    }
    let viewer = Viewer {
        session: &session,
        user: &user,
    };
    let found = rows(&st, o.name, Some(&viewer)).into_iter().find(|row| {
        row.get("Id")
            .and_then(Value::as_str)
            .is_some_and(|rid| same_id(rid, &id))
    });
    match found {
        Some(row) => {
            let id = row["Id"].as_str().unwrap_or_default().to_string();
            json_response(StatusCode::OK, sobject_record(row, o.name, &id, &version))
        }
        None => missing(),
    }
}

/// `DELETE /services/data/vNN.0/sobjects/{object}/{id}`.
///
/// `AuthSession`: 204 and the session is dead (401 on REST, 403 `Bad_OAuth_Token` on
/// userinfo; the next JWT grant makes a new session); 404 when no live session has the id;
/// 403 `INSUFFICIENT_ACCESS_OR_READONLY` for another user's session without Manage Users.
/// `OauthToken` and `User` support no delete: 405 `METHOD_NOT_ALLOWED`.
pub(crate) async fn sobject_delete(
    State(app): State<AppState>,
    Path((_, object, id)): Path<(String, String, String)>,
    Caller { user, .. }: Caller,
) -> Response {
    if object.eq_ignore_ascii_case("OauthToken") || object.eq_ignore_ascii_case("User") {
        return method_not_allowed("DELETE", "GET,HEAD");
    }
    if !object.eq_ignore_ascii_case("AuthSession") {
        return missing();
    }
    let all = manages_users(&app, &user);
    let mut st = app.lock();
    let now = st.now();
    let owner = st
        .sessions
        .iter()
        .find(|s| same_id(&s.id, &id) && s.live_at(now))
        .map(|s| s.user_id.clone());
    match owner {
        None => missing(),
        Some(owner) if owner != user.id && !all => rest_error(
            StatusCode::FORBIDDEN,
            "INSUFFICIENT_ACCESS_OR_READONLY",
            "insufficient access rights on object id",
        ),
        Some(_) => {
            st.end_session(&id, SessionEnd::Deleted);
            empty(StatusCode::NO_CONTENT)
        }
    }
}

/// The version gate and permission check of the OAuth usage resources; returns the caller.
#[allow(clippy::result_large_err)] // the error is the response to send, built once per request
fn usage_guard(app: &AppState, version: &str, headers: &HeaderMap) -> Result<User, Response> {
    let number = version
        .strip_prefix('v')
        .and_then(|v| v.strip_suffix(".0"))
        .and_then(|v| v.parse::<u32>().ok());
    // Older versions do not have the resource at all, whatever the token.
    if number.is_none_or(|n| n < USAGE_MIN_VERSION) {
        return Err(missing());
    }
    let (_, user) = authenticate_versioned(app, version, headers)?;
    if !app
        .lock()
        .has_permission_or_all_data(&user, "CustomizeApplication")
    {
        return Err(rest_error(
            StatusCode::FORBIDDEN,
            "INSUFFICIENT_ACCESS",
            "You don't have permission to manage OAuth usage of external client apps.",
        ));
    }
    Ok(user)
}

/// `GET /services/data/vNN.0/apps/oauth/usage?page=0&pageSize=25` (v59+): every External
/// Client App of the org (used or not) as `{developerName, identifier, label}`, paged
/// (`pageSize` 1–100, default 25) with `currentPageUrl` and `nextPageUrl` (null on the last page).
pub(crate) async fn usage(
    State(app): State<AppState>,
    Path(version): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = usage_guard(&app, &version, &headers) {
        return response;
    }
    let params = crate::token::parse_form(query.as_deref().unwrap_or(""));
    let number = |name: &str, default: usize| match params.get(name) {
        None => Some(default),
        Some(v) => v.parse::<usize>().ok(),
    };
    let (Some(page), Some(size)) = (number("page", 0), number("pageSize", 25)) else {
        return rest_error(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER_VALUE",
            "page and pageSize must be non-negative integers",
        );
    };
    if !(1..=100).contains(&size) {
        return rest_error(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER_VALUE",
            "pageSize must be between 1 and 100",
        );
    }
    let st = app.lock();
    let apps: Vec<Value> = st
        .components
        .iter()
        .filter(|((t, _), _)| t == ECA.name)
        .map(|((_, name), c)| {
            json!({
                "developerName": name,
                "identifier": c.id,
                "label": c.element.child_text("label").unwrap_or(name),
            })
        })
        .collect();
    let start = page.saturating_mul(size).min(apps.len());
    let end = (start + size).min(apps.len());
    let url =
        |p: usize| format!("/services/data/{version}/apps/oauth/usage?page={p}&pageSize={size}");
    let body = json!({
        "apps": apps[start..end],
        "currentPageUrl": url(page),
        "nextPageUrl": (end < apps.len()).then(|| url(page + 1)),
    });
    json_response(StatusCode::OK, body)
}

/// `DELETE /services/data/vNN.0/apps/oauth/usage/{appId}/tokens` (v59+): revokes every refresh
/// token of the External Client App (and the grants' live sessions, as revoke does) → 204;
/// 404 `NOT_FOUND` for an id that is no ECA.
pub(crate) async fn delete_app_tokens(
    State(app): State<AppState>,
    Path((version, app_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = usage_guard(&app, &version, &headers) {
        return response;
    }
    let mut st = app.lock();
    let key = st
        .components
        .iter()
        .find(|((t, _), c)| t == ECA.name && same_id(&c.id, &app_id))
        .map(|((_, name), _)| crate::state::app_key(ECA, name));
    match key {
        Some(key) => {
            st.revoke_grants(|g| g.app_key == key);
            empty(StatusCode::NO_CONTENT)
        }
        None => missing(),
    }
}
