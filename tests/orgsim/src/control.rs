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
