//! The HTTP server: shared state, routing, and the request gate that applies injected
//! faults, API-usage accounting, the `Sforce-Limit-Info` header and the call log.

use crate::faults::{CallRecord, FaultKind, SoapOperation, take_fault};
use crate::state::OrgState;
use crate::{control, credentials, deploy, describe, query, rest, revoke, soap, token};
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use serde_json::Value;
use std::sync::{Arc, Mutex, MutexGuard};

/// State shared by all handlers.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<OrgState>,
    /// `http://127.0.0.1:PORT`: instance URL, identity host and an accepted audience.
    pub(crate) base_url: String,
}

/// Handle passed to handlers.
pub(crate) type AppState = Arc<Shared>;

impl Shared {
    /// Wraps a fresh org.
    pub(crate) fn new(state: OrgState, base_url: String) -> Shared {
        Shared {
            state: Mutex::new(state),
            base_url,
        }
    }

    /// Locks the org. A handler that panicked mid-update leaves state a test should still be
    /// able to inspect, so poisoning is ignored.
    pub(crate) fn lock(&self) -> MutexGuard<'_, OrgState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Zip uploads may be up to 39 MB on Salesforce.
const MAX_BODY: usize = 40 * 1024 * 1024;

/// All routes, behind the path normalisation (which has to run before routing).
pub(crate) fn router(app: AppState) -> Router {
    Router::new()
        .fallback_service(routes(app.clone()))
        .layer(from_fn_with_state(app.clone(), collapse_slashes))
        .layer(from_fn_with_state(app, date_header))
}

/// Every response's `Date` (RFC 9110 IMF-fixdate) comes from the emulator's clock, so a test
/// that moves the clock (`set_clock_offset`) sees a skewed server, as a client measuring its
/// offset would. hyper adds its own `Date` only when a response has none.
async fn date_header(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let now = app.lock().now();
    if let Ok(value) = HeaderValue::from_str(&http_date(now)) {
        response.headers_mut().insert(header::DATE, value);
    }
    response
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` for unix seconds `secs`.
pub(crate) fn http_date(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// `//services/data/…` as `/services/data/…` (setting `collapse_double_slashes`): clients that
/// join an instance URL ending in `/` with an absolute path send such paths.
async fn collapse_slashes(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path.contains("//") && app.lock().settings.collapse_double_slashes {
        let mut collapsed = String::with_capacity(path.len());
        for c in path.chars() {
            if !(c == '/' && collapsed.ends_with('/')) {
                collapsed.push(c);
            }
        }
        if let Some(q) = req.uri().query() {
            collapsed = format!("{collapsed}?{q}");
        }
        let mut parts = req.uri().clone().into_parts();
        parts.path_and_query = collapsed.parse().ok();
        if let Ok(uri) = axum::http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    next.run(req).await
}

fn routes(app: AppState) -> Router {
    let deploy_path = "/services/data/{version}/metadata/deployRequest";
    let creds = "/services/data/{version}/apps/oauth/credentials";
    let mut router = Router::new()
        .route(
            token::TOKEN_PATH,
            post(token::token).fallback(token::not_post),
        )
        .route(
            "/services/oauth2/userinfo",
            get(rest::userinfo).post(rest::userinfo),
        )
        .route("/id/{org}/{user}", get(rest::userinfo))
        .route("/services/data", get(rest::versions))
        .route("/services/data/", get(rest::versions))
        .route("/services/data/{version}", get(rest::resources))
        .route("/services/data/{version}/", get(rest::resources))
        .route("/services/data/{version}/sobjects", get(describe::global))
        .route("/services/data/{version}/sobjects/", get(describe::global))
        .route(
            "/services/data/{version}/sobjects/{object}",
            get(describe::basic),
        )
        .route(
            "/services/data/{version}/sobjects/{object}/",
            get(describe::basic),
        )
        .route(
            "/services/data/{version}/sobjects/{object}/describe",
            get(describe::object),
        )
        .route(
            "/services/data/{version}/sobjects/{object}/describe/",
            get(describe::object),
        )
        .route("/services/data/{version}/limits", get(rest::limits))
        .route("/services/data/{version}/limits/", get(rest::limits))
        .route(deploy_path, post(deploy::create))
        .route(
            &format!("{deploy_path}/{{id}}"),
            get(deploy::status).patch(deploy::cancel),
        )
        .route(
            revoke::REVOKE_PATH,
            get(revoke::revoke).post(revoke::revoke),
        )
        .route(
            "/services/data/{version}/sobjects/{object}/{id}",
            get(revoke::sobject_get).delete(revoke::sobject_delete),
        )
        .route(
            "/services/data/{version}/apps/oauth/usage",
            get(revoke::usage),
        )
        .route(
            "/services/data/{version}/apps/oauth/usage/{app_id}/tokens",
            delete(revoke::delete_app_tokens),
        )
        .route(&format!("{creds}/{{app_id}}"), get(credentials::list))
        .route(
            &format!("{creds}/{{app_id}}/{{consumer_id}}"),
            get(credentials::read),
        )
        .route(
            &format!("{creds}/{{app_id}}/{{consumer_id}}/staged"),
            get(credentials::staged).post(credentials::stage),
        )
        .route(
            &format!("{creds}/{{app_id}}/{{consumer_id}}/staged/{{staged_id}}"),
            patch(credentials::rotate).delete(credentials::delete),
        )
        .route("/services/Soap/m/{version}", post(soap::metadata));
    // The same SOQL over the same objects: REST query, queryAll (the emulator deletes no
    // records) and the Tooling API's query.
    for resource in ["query", "queryAll", "tooling/query"] {
        let base = format!("/services/data/{{version}}/{resource}");
        router = router
            .route(&base, get(query::query))
            .route(&format!("{base}/"), get(query::query))
            .route(&format!("{base}/{{locator}}"), get(query::more));
    }
    router
        .nest("/__orgsim", control::router())
        .fallback(rest::not_found)
        .layer(from_fn_with_state(app.clone(), gate))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

/// Every request passes here: faults first, then API accounting, then the handler.
async fn gate(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if path.starts_with("/__orgsim") {
        return next.run(req).await;
    }
    let method = req.method().to_string();
    let timestamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);

    let delay = {
        let mut st = app.lock();
        take_fault(&mut st.faults, |f| {
            matches!(f.kind, FaultKind::Latency { .. }) && f.matches(&path)
        })
    };
    if let Some(FaultKind::Latency { ms }) = delay {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    let injected = {
        let mut st = app.lock();
        take_fault(&mut st.faults, |f| {
            !matches!(f.kind, FaultKind::Latency { .. }) && f.matches(&path)
        })
    };
    // API calls are REST data calls under a version and SOAP calls; the token endpoint does
    // not count toward the 24-hour allocation.
    let counts = path.starts_with("/services/data/v") || path.starts_with("/services/Soap/");
    let over_limit = counts && !app.lock().take_api_call();
    let mut response = match injected {
        Some(kind) => fault_response(&app, kind),
        None if over_limit => request_limit(),
        None => next.run(req).await,
    };
    let mut st = app.lock();
    if path.starts_with("/services/data") {
        let usage = format!(
            "api-usage={}/{}",
            st.api_used(),
            st.settings.daily_api_requests
        );
        if let Ok(value) = HeaderValue::from_str(&usage) {
            response.headers_mut().insert("Sforce-Limit-Info", value);
        }
    }
    let operation = response
        .extensions()
        .get::<SoapOperation>()
        .map(|o| o.0.clone());
    st.calls.push(CallRecord {
        method,
        path,
        status: response.status().as_u16(),
        timestamp,
        operation,
    });
    response
}

fn fault_response(app: &AppState, kind: FaultKind) -> Response {
    match kind {
        FaultKind::ServerError { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let json = body.trim_start().starts_with(['[', '{']);
            let kind = if json {
                "application/json;charset=UTF-8"
            } else {
                "text/plain;charset=UTF-8"
            };
            (status, [(header::CONTENT_TYPE, kind)], body).into_response()
        }
        FaultKind::RequestLimit => request_limit(),
        FaultKind::DataNotAvailable => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html;charset=UTF-8")],
            DATA_NOT_AVAILABLE,
        )
            .into_response(),
        FaultKind::RateLimitExceeded => {
            let description = app.lock().settings.rate_limit_description.clone();
            token::token_error("rate_limit_exceeded", &description)
        }
        // Never selected by the gate (see `Fault::matches`), kept exhaustive for the compiler.
        FaultKind::Latency { .. }
        | FaultKind::DeployFails { .. }
        | FaultKind::ComponentFails { .. } => StatusCode::OK.into_response(),
    }
}

fn request_limit() -> Response {
    rest::rest_error(
        StatusCode::FORBIDDEN,
        "REQUEST_LIMIT_EXCEEDED",
        "TotalRequests Limit exceeded.",
    )
}

/// The page Salesforce serves instead of JSON while an org is unavailable.
const DATA_NOT_AVAILABLE: &str = "<html>\n<head><title>Data Not Available</title></head>\n<body>\n\
<h1>Data Not Available</h1>\n<p>The data you were trying to access could not be found. It may be \
due to another user deleting the data or a system error. If you know the data is not deleted but \
cannot access it, please look at our support page.</p>\n</body>\n</html>\n";

/// A JSON response with Salesforce's content type and no-store caching.
pub(crate) fn json_response(status: StatusCode, body: Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache,must-revalidate,max-age=0,no-store,private"),
    );
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_are_rfc_9110_imf_fixdate() {
        // RFC 9110 §5.6.7's own example.
        assert_eq!(
            super::http_date(784_111_777),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
    }
}
