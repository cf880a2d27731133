//! Connect REST resources for an External Client App's OAuth consumer credentials (v65.0+):
//! read the consumer key and secret, and stage, rotate and delete a second pair
//! (`/services/data/vNN.0/apps/oauth/credentials/{appId}/{consumerId}[/staged[/{stagedId}]]`).
//! The lifecycle itself is `state/consumers.rs`.
//!
//! Gates, in order and before anything changes: API version (404 below v65.0), session (401),
//! the org setting `eca_secrets_over_rest` (403 `FUNCTIONALITY_NOT_ENABLED`), the caller's
//! permissions (403 `INSUFFICIENT_ACCESS` naming the missing one), then the app (404 unknown,
//! 400 for a packaged ECA, whose credentials its developer org owns).

use crate::records::sf_datetime;
use crate::rest::{authenticate_versioned, missing, rest_error};
use crate::server::{AppState, json_response};
use crate::state::{ECA, OrgState, StagedCredential, User, same_id};
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

/// The first API version with the credential resources.
const MIN_VERSION: u32 = 65;
/// Needed for every credential resource.
const DEVELOPER: &str = "ExternalClientAppDeveloper";
/// Needed for anything that returns a secret or changes credentials.
const VIEW_SECRET: &str = "ViewClientSecret";

/// Whether the operation shows a secret or changes credentials (needs View Client Secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    KeyOnly,
    Secret,
}

/// The version, session, org-setting and permission gates; `Ok` is the caller.
#[allow(clippy::result_large_err)] // the error is the response to send, built once per request
fn guard(
    app: &AppState,
    version: &str,
    headers: &HeaderMap,
    access: Access,
) -> Result<User, Response> {
    let number = version
        .strip_prefix('v')
        .and_then(|v| v.strip_suffix(".0"))
        .and_then(|v| v.parse::<u32>().ok());
    // Older versions do not have the resources at all, whatever the token.
    if number.is_none_or(|n| n < MIN_VERSION) {
        return Err(missing());
    }
    let (_, user) = authenticate_versioned(app, version, headers)?;
    let st = app.lock();
    if !st.settings.eca_secrets_over_rest {
        return Err(rest_error(
            StatusCode::FORBIDDEN,
            "FUNCTIONALITY_NOT_ENABLED",
            "This feature is not currently enabled for this user.",
        ));
    }
    let mut needed = vec![DEVELOPER];
    if access == Access::Secret {
        needed.push(VIEW_SECRET);
    }
    if let Some(lacking) = needed.iter().find(|p| !st.has_permission(&user, p)) {
        return Err(rest_error(
            StatusCode::FORBIDDEN,
            "INSUFFICIENT_ACCESS",
            &format!(
                "You don't have permission to view or manage consumer secrets of External \
                 Client Apps: the {lacking} permission is missing (needs External Client App \
                 Developer and View Client Secret)."
            ),
        ));
    }
    Ok(user)
}

/// The ECA with this app id, local (not packaged); `Err` is the 404 or 400 to send.
#[allow(clippy::result_large_err)] // the error is the response to send, built once per request
fn local_eca(st: &OrgState, app_id: &str) -> Result<String, Response> {
    let (name, header) = st
        .components
        .iter()
        .find(|((t, _), c)| t == ECA.name && same_id(&c.id, app_id))
        .map(|((_, name), c)| (name.clone(), &c.element))
        .ok_or_else(missing)?;
    if header.child_text("distributionState") == Some("Packaged") {
        return Err(rest_error(
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
            "You can manage OAuth credentials only of local External Client Apps; this app is \
             packaged.",
        ));
    }
    Ok(name)
}

/// The ECA and its consumer for (appId, consumerId); 404 when either is unknown.
#[allow(clippy::result_large_err)] // the error is the response to send, built once per request
fn consumer(st: &OrgState, app_id: &str, consumer_id: &str) -> Result<String, Response> {
    let eca = local_eca(st, app_id)?;
    match st.eca_consumer_id(&eca) {
        Some(id) if same_id(&id, consumer_id) => Ok(eca),
        _ => Err(missing()),
    }
}

fn consumer_url(version: &str, app_id: &str, consumer_id: &str) -> String {
    format!("/services/data/{version}/apps/oauth/credentials/{app_id}/{consumer_id}")
}

/// A staged credential as the resources render it (secret included: the caller holds View
/// Client Secret).
fn staged_json(s: &StagedCredential, now: i64, staged_url: &str) -> Value {
    json!({
        "id": s.id,
        "key": s.key,
        "secret": s.secret,
        "state": s.state_at(now),
        "url": format!("{staged_url}/{}", s.id),
        "stagedCredentialsUrl": staged_url,
        "createdBy": s.created_by,
        "createdDate": sf_datetime(s.created),
        "expirationDate": sf_datetime(s.expires),
    })
}

fn staged_body(s: &StagedCredential, now: i64, staged_url: &str) -> Value {
    json!({"stagedCredentials": [staged_json(s, now, staged_url)], "url": staged_url})
}

/// `GET …/apps/oauth/credentials/{appId}`: the app's consumers with their primary keys.
pub(crate) async fn list(
    State(app): State<AppState>,
    Path((version, app_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = guard(&app, &version, &headers, Access::KeyOnly) {
        return r;
    }
    let st = app.lock();
    let eca = match local_eca(&st, &app_id) {
        Ok(eca) => eca,
        Err(r) => return r,
    };
    let consumers: Vec<Value> = st
        .eca_consumer_id(&eca)
        .zip(st.eca_primary(&eca))
        .map(|(id, (key, _))| {
            let url = consumer_url(&version, &app_id, &id);
            json!({
                "id": id,
                "key": key,
                "name": eca,
                "url": url,
                "stagedCredentialsUrl": format!("{url}/staged"),
            })
        })
        .into_iter()
        .collect();
    let body = json!({
        "consumers": consumers,
        "currentPageUrl": format!("/services/data/{version}/apps/oauth/credentials/{app_id}"),
        "nextPageUrl": null,
    });
    json_response(StatusCode::OK, body)
}

/// `GET …/{appId}/{consumerId}?part=key|secret|keyandsecret` (default `key`).
pub(crate) async fn read(
    State(app): State<AppState>,
    Path((version, app_id, consumer_id)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = crate::token::parse_form(query.as_deref().unwrap_or(""));
    let part = params
        .get("part")
        .map_or("key".to_string(), |p| p.to_ascii_lowercase());
    let (key, secret) = match part.as_str() {
        "key" => (true, false),
        "secret" => (false, true),
        "keyandsecret" => (true, true),
        _ => {
            return rest_error(
                StatusCode::BAD_REQUEST,
                "INVALID_PARAMETER_VALUE",
                "part must be key, secret or keyandsecret",
            );
        }
    };
    let access = if secret {
        Access::Secret
    } else {
        Access::KeyOnly
    };
    if let Err(r) = guard(&app, &version, &headers, access) {
        return r;
    }
    let st = app.lock();
    let eca = match consumer(&st, &app_id, &consumer_id) {
        Ok(eca) => eca,
        Err(r) => return r,
    };
    let Some((k, s)) = st.eca_primary(&eca) else {
        return missing();
    };
    let mut body = serde_json::Map::new();
    if key {
        body.insert("key".into(), Value::String(k));
    }
    if secret {
        body.insert("secret".into(), Value::String(s));
    }
    json_response(StatusCode::OK, Value::Object(body))
}

/// `GET …/{consumerId}/staged`: the staged credential (an expired one too), 404 when none.
pub(crate) async fn staged(
    State(app): State<AppState>,
    Path((version, app_id, consumer_id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = guard(&app, &version, &headers, Access::Secret) {
        return r;
    }
    let st = app.lock();
    let eca = match consumer(&st, &app_id, &consumer_id) {
        Ok(eca) => eca,
        Err(r) => return r,
    };
    let url = format!("{}/staged", consumer_url(&version, &app_id, &consumer_id));
    match st.staged_credential(&eca) {
        Some(s) => json_response(StatusCode::OK, staged_body(s, st.now(), &url)),
        None => missing(),
    }
}

/// `POST …/{consumerId}/staged` (body `{}` or empty): stages a new pair → 201.
pub(crate) async fn stage(
    State(app): State<AppState>,
    Path((version, app_id, consumer_id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let user = match guard(&app, &version, &headers, Access::Secret) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let text = String::from_utf8_lossy(&body);
    if !text.trim().is_empty() && !serde_json::from_str::<Value>(&text).is_ok_and(|v| v.is_object())
    {
        return rest_error(
            StatusCode::BAD_REQUEST,
            "JSON_PARSER_ERROR",
            "The request body must be a JSON object or empty.",
        );
    }
    let mut st = app.lock();
    let eca = match consumer(&st, &app_id, &consumer_id) {
        Ok(eca) => eca,
        Err(r) => return r,
    };
    let url = format!("{}/staged", consumer_url(&version, &app_id, &consumer_id));
    match st.stage_credential(&eca, &user.id) {
        Ok(s) => json_response(StatusCode::CREATED, staged_body(&s, st.now(), &url)),
        Err(e) => consumer_error(e),
    }
}

/// `PATCH …/staged/{stagedId}` with `{"command":"rotate"}`: the staged Active pair becomes
/// primary; answers the new staged slot (the Rotated former primary pair).
pub(crate) async fn rotate(
    State(app): State<AppState>,
    Path((version, app_id, consumer_id, staged_id)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let user = match guard(&app, &version, &headers, Access::Secret) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let command = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("command").and_then(Value::as_str).map(str::to_string));
    if command.as_deref() != Some("rotate") {
        return rest_error(
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
            "The only supported command is rotate: send {\"command\":\"rotate\"}.",
        );
    }
    let mut st = app.lock();
    let eca = match consumer(&st, &app_id, &consumer_id) {
        Ok(eca) => eca,
        Err(r) => return r,
    };
    let url = format!("{}/staged", consumer_url(&version, &app_id, &consumer_id));
    match st.rotate_credential(&eca, &staged_id, &user.id) {
        Ok(s) => json_response(StatusCode::OK, staged_body(&s, st.now(), &url)),
        Err(e) => consumer_error(e),
    }
}

/// `DELETE …/staged/{stagedId}` → 204; a Rotated pair is refused at once afterwards.
pub(crate) async fn delete(
    State(app): State<AppState>,
    Path((version, app_id, consumer_id, staged_id)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let user = match guard(&app, &version, &headers, Access::Secret) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let mut st = app.lock();
    let eca = match consumer(&st, &app_id, &consumer_id) {
        Ok(eca) => eca,
        Err(r) => return r,
    };
    match st.delete_credential(&eca, &staged_id, &user.id) {
        Ok(()) => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
        Err(e) => consumer_error(e),
    }
}

fn consumer_error((status, code, message): crate::state::ConsumerError) -> Response {
    rest_error(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        code,
        &message,
    )
}
