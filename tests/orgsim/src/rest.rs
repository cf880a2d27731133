//! REST endpoints outside the Metadata API: version list, limits, userinfo, plus the shared
//! REST error shape and bearer-token authentication.

use crate::server::{AppState, json_response};
use crate::state::{Session, User};
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;

/// The oldest API version Salesforce still serves (v21–v30 retired in Summer '25).
const OLDEST_VERSION: u32 = 31;
/// The current API version (Summer '26).
pub(crate) const CURRENT_VERSION: u32 = 67;

/// The release of an API version: v31.0 is Summer '14, and three releases a year follow
/// (Winter, Spring, Summer; Winter carries the next year's number).
fn release_label(version: u32) -> String {
    let i = version - OLDEST_VERSION;
    let season = ["Summer", "Winter", "Spring"][(i % 3) as usize];
    format!("{season} '{:02}", 14 + i.div_ceil(3))
}

/// The API version number of a `vNN.0` segment (`NN.0` for SOAP paths).
fn version_number(segment: &str) -> Option<u32> {
    let number = segment.strip_prefix('v').unwrap_or(segment);
    number.strip_suffix(".0")?.parse().ok()
}

/// A REST error: Salesforce always sends a JSON array of `{message, errorCode}`.
pub(crate) fn rest_error(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(status, json!([{"message": message, "errorCode": code}]))
}

/// 401 for a missing, unknown or expired session.
pub(crate) fn invalid_session() -> Response {
    rest_error(
        StatusCode::UNAUTHORIZED,
        "INVALID_SESSION_ID",
        "Session expired or invalid",
    )
}

/// 404 `NOT_FOUND`.
pub(crate) fn missing() -> Response {
    rest_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "The requested resource does not exist",
    )
}

/// Router fallback.
pub(crate) async fn not_found() -> Response {
    missing()
}

/// Accepts `vNN.0` for the served versions, v31.0 to the current one (`NN.0` for SOAP paths).
pub(crate) fn known_version(segment: &str) -> bool {
    version_number(segment).is_some_and(|n| (OLDEST_VERSION..=CURRENT_VERSION).contains(&n))
}

/// 410 for a retired API version (v30.0 and older), 404 for one that never existed.
pub(crate) fn unknown_version(segment: &str) -> Response {
    match version_number(segment) {
        Some(n) if (7..OLDEST_VERSION).contains(&n) => rest_error(
            StatusCode::GONE,
            "API_VERSION_RETIRED",
            &format!("Version {n}.0 of the API has been retired and is no longer supported"),
        ),
        _ => missing(),
    }
}

/// The access token from `Authorization: Bearer` (or `OAuth`), if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let ok = scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("oauth");
    ok.then(|| token.trim().to_string())
}

/// Resolves a token to its live session and user, renewing the session.
pub(crate) fn session_user(app: &AppState, token: Option<&str>) -> Option<(Session, User)> {
    let mut st = app.lock();
    let session = st.use_session(token?)?;
    let user = st.user_by_id(&session.user_id)?.clone();
    Some((session, user))
}

/// Authenticates a REST data call; `Err` is the 401 to send.
#[allow(clippy::result_large_err)] // the error is the response to send, built once per request
pub(crate) fn authenticate(
    app: &AppState,
    headers: &HeaderMap,
) -> Result<(Session, User), Response> {
    session_user(app, bearer(headers).as_deref()).ok_or_else(invalid_session)
}

/// Authenticates a REST data call under `/services/data/{version}/`: 404 for an unknown API
/// version, before the token is looked at, then 401 for a bad session.
#[allow(clippy::result_large_err)] // the error is the response to send, built once per request
pub(crate) fn authenticate_versioned(
    app: &AppState,
    version: &str,
    headers: &HeaderMap,
) -> Result<(Session, User), Response> {
    if !known_version(version) {
        return Err(unknown_version(version));
    }
    authenticate(app, headers)
}

/// The caller of a REST data call under `/services/data/{version}/`, checked by
/// [`authenticate_versioned`] with the route's `{version}` segment: a handler taking one has
/// already answered 404 or 401 when the version or the session is bad.
pub(crate) struct Caller {
    pub(crate) session: Session,
    pub(crate) user: User,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Caller, Response> {
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, app)
            .await
            .map_err(IntoResponse::into_response)?;
        let version = params.get("version").map_or("", String::as_str);
        let (session, user) = authenticate_versioned(app, version, &parts.headers)?;
        Ok(Caller { session, user })
    }
}

/// 403 for a user without Modify All Data / Modify Metadata.
pub(crate) fn insufficient_access() -> Response {
    rest_error(
        StatusCode::FORBIDDEN,
        "INSUFFICIENT_ACCESS",
        "insufficient access rights on object id: Modify All Data or Modify Metadata required",
    )
}

/// `GET /services/data/`: every served version, oldest first; no authentication.
pub(crate) async fn versions() -> Response {
    let list: Vec<Value> = (OLDEST_VERSION..=CURRENT_VERSION)
        .map(|v| json!({"label": release_label(v), "url": format!("/services/data/v{v}.0"), "version": format!("{v}.0")}))
        .collect();
    json_response(StatusCode::OK, Value::Array(list))
}

/// `GET /services/data/vNN.0[/]`: the resources of a version, relative URLs except the
/// absolute identity URL.
pub(crate) async fn resources(
    State(app): State<AppState>,
    Path(version): Path<String>,
    Caller { user, .. }: Caller,
) -> Response {
    let org = app.lock().org.id.clone();
    let mut map = serde_json::Map::new();
    for name in [
        "tooling",
        "metadata",
        "eclair",
        "folders",
        "prechatForms",
        "contact-tracing",
        "jsonxform",
        "chatter",
        "tabs",
        "appMenu",
        "quickActions",
        "queryAll",
        "commerce",
        "wave",
        "iot",
        "analytics",
        "search",
        "identity",
        "composite",
        "parameterizedSearch",
        "fingerprint",
        "theme",
        "nouns",
        "domino",
        "event",
        "serviceTemplates",
        "recent",
        "connect",
        "licensing",
        "limits",
        "process",
        "dedupe",
        "async-queries",
        "query",
        "match",
        "emailConnect",
        "compactLayouts",
        "knowledgeManagement",
        "sobjects",
        "actions",
        "support",
    ] {
        let url = if name == "identity" {
            format!("{}/id/{org}/{}", app.base_url, user.id)
        } else {
            format!("/services/data/{version}/{name}")
        };
        map.insert(name.into(), Value::String(url));
    }
    json_response(StatusCode::OK, Value::Object(map))
}

/// `GET /services/data/vNN.0/limits/`.
pub(crate) async fn limits(State(app): State<AppState>, _: Caller) -> Response {
    let mut st = app.lock();
    let max = st.settings.daily_api_requests;
    let remaining = max.saturating_sub(st.api_used());
    let pair = |max: u64, remaining: u64| json!({"Max": max, "Remaining": remaining});
    let body = json!({
        "ConcurrentAsyncGetReportInstances": pair(200, 200),
        "DailyApiRequests": pair(max, remaining),
        "DailyAsyncApexExecutions": pair(250000, 250000),
        "DailyBulkApiBatches": pair(15000, 15000),
        "DataStorageMB": pair(1024, 1024),
        "FileStorageMB": pair(1024, 1024),
        "PermissionSets": {"Max": 1500, "Remaining": 1499, "CreateCustom": pair(1000, 999)},
        "SingleEmail": pair(5000, 5000),
    });
    json_response(StatusCode::OK, body)
}

/// `GET /services/oauth2/userinfo` and `GET /id/{org}/{user}`: 403 `Bad_OAuth_Token` (plain
/// text) for a bad token, unlike the data API's 401.
pub(crate) async fn userinfo(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let from_query = query
        .as_deref()
        .map(crate::token::parse_form)
        .and_then(|q| q.get("oauth_token").cloned());
    let token = bearer(&headers).or(from_query);
    let Some((_, user)) = session_user(&app, token.as_deref()) else {
        return (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain;charset=UTF-8")],
            "Bad_OAuth_Token",
        )
            .into_response();
    };
    let st = app.lock();
    let base = &app.base_url;
    let org = &st.org.id;
    let (given, family) = user.name.split_once(' ').unwrap_or((&user.name, ""));
    let body = json!({
        "sub": format!("{base}/id/{org}/{}", user.id),
        "user_id": user.id,
        "organization_id": org,
        "preferred_username": user.username,
        "nickname": user.username.split('@').next().unwrap_or(""),
        "name": user.name,
        "email": user.username,
        "email_verified": true,
        "given_name": given,
        "family_name": family,
        "zoneinfo": "Europe/Paris",
        "photos": {"picture": format!("{base}/profilephoto/005/F"), "thumbnail": format!("{base}/profilephoto/005/T")},
        "profile": format!("{base}/{}", user.id),
        "picture": format!("{base}/profilephoto/005/F"),
        "address": {"country": "FR"},
        "is_salesforce_integration_user": false,
        "urls": {
            "enterprise": format!("{base}/services/Soap/c/{{version}}/{org}"),
            "metadata": format!("{base}/services/Soap/m/{{version}}/{org}"),
            "partner": format!("{base}/services/Soap/u/{{version}}/{org}"),
            "rest": format!("{base}/services/data/v{{version}}/"),
            "sobjects": format!("{base}/services/data/v{{version}}/sobjects/"),
            "search": format!("{base}/services/data/v{{version}}/search/"),
            "query": format!("{base}/services/data/v{{version}}/query/"),
            "recent": format!("{base}/services/data/v{{version}}/recent/"),
            "tooling_soap": format!("{base}/services/Soap/T/{{version}}/{org}"),
            "tooling_rest": format!("{base}/services/data/v{{version}}/tooling/"),
            "profile": format!("{base}/{}", user.id),
            "custom_domain": base,
        },
        "active": user.active,
        "user_type": "STANDARD",
        "language": "en_US",
        "locale": "en_US",
        "utcOffset": 3600000,
        "updated_at": "2026-01-01T00:00:00Z",
        "is_app_installed": true,
    });
    json_response(StatusCode::OK, body)
}
