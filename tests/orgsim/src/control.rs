//! The test-control side channel under `/__orgsim/…` (no Salesforce client uses that path),
//! and the shared logic behind the matching `OrgSim` methods.

use crate::certs::Cert;
use crate::faults::Fault;
use crate::seed::{PropagationMode, Seed};
use crate::server::{AppState, Shared, json_response};
use crate::soap::public_view;
use crate::state::{CONNECTED_APP, ECA, META_TYPES, OrgState};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
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
        .route("/apps/{name}", get(app))
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

/// Live sessions (the future AuthSession records); tokens are not shown.
async fn sessions(State(app): State<AppState>) -> Response {
    let st = app.lock();
    let now = st.now();
    let list: Vec<Value> = st
        .sessions
        .iter()
        .filter(|s| now < s.last_used + s.timeout_secs)
        .map(|s| {
            json!({
                "id": s.id,
                "user_id": s.user_id,
                "app": s.app_key,
                "created": s.created,
                "last_used": s.last_used,
                "expires": s.last_used + s.timeout_secs,
            })
        })
        .collect();
    json_response(StatusCode::OK, Value::Array(list))
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
