//! The test-control side channel under `/__orgsim/…` (no Salesforce client uses that path),
//! and the shared logic behind the matching `OrgSim` methods.

use crate::certs::Cert;
use crate::faults::Fault;
use crate::seed::{PropagationMode, Seed};
use crate::server::{AppState, Shared, json_response};
use crate::soap::public_view;
use crate::state::{CONNECTED_APP, ECA, Grant, META_TYPES, OrgState, SessionEnd};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Routes nested under `/__orgsim`.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/seed", post(seed))
        .route("/clock", post(clock))
        .route("/propagation", post(propagation))
        .route("/faults", post(add_fault).delete(clear_faults))
        .route("/calls", get(calls))
        .route("/sessions", get(sessions))
        .route("/grants", get(grants).post(add_grant))
        .route("/apps/{name}", get(app))
        .route("/apps/{name}/consumer", get(consumer))
        .route("/settings", post(settings))
        .route("/users/{username}/permissions", post(user_permission))
        .route("/deploys/{id}/step", post(step_deploy))
}

fn ok() -> Response {
    json_response(StatusCode::OK, json!({"ok": true}))
}

fn bad(message: &str) -> Response {
    json_response(StatusCode::BAD_REQUEST, json!({"error": message}))
}

/// Replaces the whole org (users, apps, sessions, deploys, faults, call log).
pub(crate) fn reseed(shared: &Shared, seed: &Seed) -> Result<(), String> {
    let fresh = OrgState::from_seed(seed)?;
    *shared.lock() = fresh;
    Ok(())
}

/// Sets the propagation window and mode.
pub(crate) fn set_propagation(shared: &Shared, secs: u64, mode: PropagationMode) {
    let mut st = shared.lock();
    st.settings.propagation_secs = secs;
    st.settings.propagation_mode = mode;
}

/// `POST /__orgsim/seed`: TOML, or JSON when the content type or first character says so.
/// Relative `*_file` paths resolve against the server's working directory.
async fn seed(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let text = String::from_utf8_lossy(&body);
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    let base = std::env::current_dir().unwrap_or_default();
    let parsed = if json_type || text.trim_start().starts_with('{') {
        Seed::from_json_str(&text, &base)
    } else {
        Seed::from_toml_str(&text, &base)
    };
    match parsed
        .map_err(|e| e.to_string())
        .and_then(|s| reseed(&app, &s))
    {
        Ok(()) => ok(),
        Err(e) => bad(&e),
    }
}

#[derive(Deserialize)]
struct ClockBody {
    offset_secs: i64,
}

async fn clock(State(app): State<AppState>, body: Bytes) -> Response {
    match serde_json::from_slice::<ClockBody>(&body) {
        Ok(b) => {
            app.lock().clock_offset = b.offset_secs;
            ok()
        }
        Err(e) => bad(&e.to_string()),
    }
}

#[derive(Deserialize)]
struct PropagationBody {
    secs: u64,
    mode: PropagationMode,
}

async fn propagation(State(app): State<AppState>, body: Bytes) -> Response {
    match serde_json::from_slice::<PropagationBody>(&body) {
        Ok(b) => {
            set_propagation(&app, b.secs, b.mode);
            ok()
        }
        Err(e) => bad(&e.to_string()),
    }
}

async fn add_fault(State(app): State<AppState>, body: Bytes) -> Response {
    match serde_json::from_slice::<Fault>(&body) {
        Ok(f) => {
            app.lock().faults.push(f);
            ok()
        }
        Err(e) => bad(&e.to_string()),
    }
}

async fn clear_faults(State(app): State<AppState>) -> Response {
    app.lock().faults.clear();
    ok()
}

async fn calls(State(app): State<AppState>) -> Response {
    let calls = app.lock().calls.clone();
    json_response(StatusCode::OK, json!(calls))
}

/// Where a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Authenticates; an `AuthSession` record.
    Live,
    /// Timed out (simulated clock past `expires`).
    Expired,
    /// Ended by `DELETE /sobjects/AuthSession/{id}`.
    Deleted,
    /// Ended by `/services/oauth2/revoke` (its access token, or a grant of its user and app)
    /// or an ECA's `DELETE /apps/oauth/usage/{appId}/tokens`.
    Revoked,
}

/// A session as the control API shows it (never its token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The `AuthSession` id (`0Ak…`).
    pub id: String,
    /// The user's id.
    pub user_id: String,
    /// The user's login name.
    pub username: String,
    /// ConnectedApp full name or ECA name the session was granted through.
    pub app: String,
    /// `ConnectedApp` or `ExternalClientApplication`.
    pub app_type: String,
    /// Unix seconds (simulated clock).
    pub created: i64,
    /// Last use, unix seconds (sliding expiry starts here).
    pub last_used: i64,
    /// When it times out if unused, unix seconds.
    pub expires: i64,
    /// Live or how it ended.
    pub state: SessionState,
}

impl SessionInfo {
    /// Whether the session still authenticates.
    pub fn is_live(&self) -> bool {
        self.state == SessionState::Live
    }
}

/// A refresh-token grant (an `OauthToken` row) with its secrets, for tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantInfo {
    /// The user's id.
    pub user_id: String,
    /// The user's login name.
    pub username: String,
    /// ConnectedApp full name or ECA name.
    pub app: String,
    /// `ConnectedApp` or `ExternalClientApplication`.
    pub app_type: String,
    /// The refresh token (revocable through `/services/oauth2/revoke`).
    pub refresh_token: String,
    /// `OauthToken.DeleteToken` (revocable through `/services/oauth2/revoke`).
    pub delete_token: String,
    /// Unix seconds (simulated clock).
    pub created: i64,
}

fn split_key(key: &str) -> (String, String) {
    let (t, n) = key.split_once(':').unwrap_or(("", key));
    (n.to_string(), t.to_string())
}

/// The login name of the user with this id; empty when there is no such user.
fn username_of(st: &OrgState, user_id: &str) -> String {
    st.user_by_id(user_id)
        .map(|u| u.username.clone())
        .unwrap_or_default()
}

/// Every session the org ever had, oldest first.
pub(crate) fn session_infos(st: &OrgState) -> Vec<SessionInfo> {
    let now = st.now();
    st.sessions
        .iter()
        .map(|s| {
            let (app, app_type) = split_key(&s.app_key);
            let state = match s.ended {
                Some(SessionEnd::Deleted) => SessionState::Deleted,
                Some(SessionEnd::Revoked) => SessionState::Revoked,
                None if s.live_at(now) => SessionState::Live,
                None => SessionState::Expired,
            };
            SessionInfo {
                id: s.id.clone(),
                user_id: s.user_id.clone(),
                username: username_of(st, &s.user_id),
                app,
                app_type,
                created: s.created,
                last_used: s.last_used,
                expires: s.last_used + s.timeout_secs,
                state,
            }
        })
        .collect()
}

/// A grant as [`GrantInfo`].
pub(crate) fn grant_info(st: &OrgState, g: &Grant) -> GrantInfo {
    let (app, app_type) = split_key(&g.app_key);
    GrantInfo {
        user_id: g.user_id.clone(),
        username: username_of(st, &g.user_id),
        app,
        app_type,
        refresh_token: g.refresh_token.clone(),
        delete_token: g.delete_token.clone(),
        created: g.created,
    }
}

/// `GET /__orgsim/sessions`: every session with its state; tokens are not shown.
async fn sessions(State(app): State<AppState>) -> Response {
    let list = session_infos(&app.lock());
    json_response(StatusCode::OK, json!(list))
}

/// `GET /__orgsim/grants`: the grants that exist (revoked ones are gone), with their tokens.
async fn grants(State(app): State<AppState>) -> Response {
    let st = app.lock();
    let list: Vec<GrantInfo> = st.grants.iter().map(|g| grant_info(&st, g)).collect();
    json_response(StatusCode::OK, json!(list))
}

#[derive(Deserialize)]
struct GrantBody {
    username: String,
    app: String,
}

/// `POST /__orgsim/grants {"username","app"}`: adds a grant, answers it with its tokens.
async fn add_grant(State(app): State<AppState>, body: Bytes) -> Response {
    let b = match serde_json::from_slice::<GrantBody>(&body) {
        Ok(b) => b,
        Err(e) => return bad(&e.to_string()),
    };
    let mut st = app.lock();
    match st.add_grant(&b.username, &b.app) {
        Ok(g) => json_response(StatusCode::OK, json!(grant_info(&st, &g))),
        Err(e) => bad(&e),
    }
}

/// `POST /__orgsim/deploys/{id}/step`: moves a held deploy (setting `hold_deploys`) to its next
/// state; 200 `{"id", "status"}` with the new one, 400 `{"error"}` when it cannot move (unknown,
/// finished, or deploys are not held).
async fn step_deploy(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    match crate::deploy::step(&mut app.lock(), &id) {
        Ok(status) => json_response(StatusCode::OK, json!({"id": id, "status": status})),
        Err(e) => bad(&e),
    }
}

/// `GET /__orgsim/apps/{name}`.
async fn app(State(app): State<AppState>, Path(name): Path<String>) -> Response {
    match app_info(&app.lock(), &name) {
        Some(info) => json_response(StatusCode::OK, info),
        None => json_response(
            StatusCode::NOT_FOUND,
            json!({"error": format!("no app named {name}")}),
        ),
    }
}

/// Kind, certificate (PEM and SHA-256), and metadata of a ConnectedApp or ECA.
fn app_info(st: &OrgState, name: &str) -> Option<Value> {
    let view = st.app_by_name(name)?;
    let cert = view
        .certificate
        .as_deref()
        .and_then(|t| Cert::parse(t).ok());
    let mut components = Map::new();
    let metadata_xml = if view.kind == CONNECTED_APP {
        st.component(CONNECTED_APP, name)
            .map(|c| public_view(&c.element).to_document())
    } else {
        for kind in META_TYPES.into_iter().filter(|k| k.is_eca_satellite()) {
            if let Some((member, c)) = st.satellite(kind, name) {
                components.insert(
                    kind.name.into(),
                    json!({"member": member, "xml": public_view(&c.element).to_document()}),
                );
            }
        }
        st.component(ECA, name)
            .map(|c| public_view(&c.element).to_document())
    };
    Some(json!({
        "name": name,
        "kind": view.kind.name,
        "certificate_pem": cert.as_ref().map(Cert::pem),
        "certificate_sha256": cert.as_ref().map(Cert::sha256_hex),
        "metadata_xml": metadata_xml,
        "components": components,
    }))
}

/// A staged ECA credential as the control API shows it (secrets included: a test channel).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedInfo {
    /// The staged credential's id (`0Hs…`).
    pub id: String,
    /// Its consumer key.
    pub key: String,
    /// Its consumer secret.
    pub secret: String,
    /// `Active`, `Rotated` or `Expired` (simulated clock).
    pub state: String,
    /// User id of who staged or rotated it.
    pub created_by: String,
    /// Unix seconds (simulated clock).
    pub created: i64,
    /// Unix seconds: 30 days after `created`.
    pub expires: i64,
}

/// An ECA's OAuth consumer: primary pair and staged slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerInfo {
    /// ECA name.
    pub app: String,
    /// The ECA's `0xI…` id (Connect REST `appId`).
    pub app_id: String,
    /// The consumer's id (Connect REST `consumerId`).
    pub consumer_id: String,
    /// Primary consumer key.
    pub key: String,
    /// Primary consumer secret.
    pub secret: String,
    /// The staged credential, if any (expired ones too).
    pub staged: Option<StagedInfo>,
}

/// The consumer of ECA `name`; `None` for an unknown ECA or one without global OAuth settings.
pub(crate) fn consumer_info(st: &OrgState, name: &str) -> Option<ConsumerInfo> {
    let (key, secret) = st.eca_primary(name)?;
    let now = st.now();
    Some(ConsumerInfo {
        app: name.to_string(),
        app_id: st.component(ECA, name)?.id.clone(),
        consumer_id: st.eca_consumer_id(name)?,
        key,
        secret,
        staged: st.staged_credential(name).map(|s| StagedInfo {
            id: s.id.clone(),
            key: s.key.clone(),
            secret: s.secret.clone(),
            state: s.state_at(now).to_string(),
            created_by: s.created_by.clone(),
            created: s.created,
            expires: s.expires,
        }),
    })
}

/// `GET /__orgsim/apps/{name}/consumer`: [`ConsumerInfo`], 404 `{"error"}` when the ECA has no
/// consumer.
async fn consumer(State(app): State<AppState>, Path(name): Path<String>) -> Response {
    match consumer_info(&app.lock(), &name) {
        Some(info) => json_response(StatusCode::OK, json!(info)),
        None => json_response(
            StatusCode::NOT_FOUND,
            json!({"error": format!("no External Client App consumer named {name}")}),
        ),
    }
}

/// Changes `[settings]` fields at runtime: `patch` is a JSON object of field names and values
/// (as in a seed); unknown fields or wrong types change nothing.
pub(crate) fn patch_settings(shared: &Shared, patch: &Value) -> Result<(), String> {
    let Value::Object(fields) = patch else {
        return Err("the body must be a JSON object of settings".into());
    };
    let mut st = shared.lock();
    let mut current = serde_json::to_value(&st.settings).map_err(|e| e.to_string())?;
    if let Value::Object(map) = &mut current {
        for (k, v) in fields {
            map.insert(k.clone(), v.clone());
        }
    }
    let known: Vec<String> = match &serde_json::to_value(&st.settings) {
        Ok(Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    };
    if let Some(unknown) = fields.keys().find(|k| !known.contains(k)) {
        return Err(format!("unknown setting {unknown}"));
    }
    st.settings = serde_json::from_value(current).map_err(|e| e.to_string())?;
    Ok(())
}

/// `POST /__orgsim/settings {"eca_secrets_over_rest": true, …}`.
async fn settings(State(app): State<AppState>, body: Bytes) -> Response {
    let result = serde_json::from_slice::<Value>(&body)
        .map_err(|e| e.to_string())
        .and_then(|v| patch_settings(&app, &v));
    match result {
        Ok(()) => ok(),
        Err(e) => bad(&e),
    }
}

#[derive(Deserialize)]
struct PermissionBody {
    permission: String,
    granted: bool,
}

/// `POST /__orgsim/users/{username}/permissions {"permission","granted"}`: grants or takes
/// away a permission of one user, over what the seed gives.
async fn user_permission(
    State(app): State<AppState>,
    Path(username): Path<String>,
    body: Bytes,
) -> Response {
    let b = match serde_json::from_slice::<PermissionBody>(&body) {
        Ok(b) => b,
        Err(e) => return bad(&e.to_string()),
    };
    match app
        .lock()
        .set_user_permission(&username, &b.permission, b.granted)
    {
        Ok(()) => ok(),
        Err(e) => bad(&e),
    }
}
