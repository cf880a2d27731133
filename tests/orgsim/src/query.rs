//! REST SOQL: `GET /services/data/vNN.0/query?q=…` (also `queryAll` and `tooling/query`, served
//! the same over the same objects) and the query locator pages `…/query/<01g…>-<offset>`
//! (providers/salesforce/platform.md §5.1). Parsing and evaluation are the [`crate::soql`]
//! engine's; the records are [`crate::records`]'.

use crate::records::{Viewer, dataset};
use crate::rest::{Caller, rest_error};
use crate::server::{AppState, json_response};
use crate::soql::{self, SoqlError};
use crate::state::Cursor;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};
use std::collections::HashMap;

/// The batch sizes a client may ask for with `Sforce-Query-Options: batchSize=N`.
const BATCH_SIZES: std::ops::RangeInclusive<usize> = 200..=2000;

fn query_error(e: SoqlError) -> Response {
    rest_error(StatusCode::BAD_REQUEST, e.code, &e.message)
}

/// The batch size a client asked for, within Salesforce's bounds.
fn requested_batch(headers: &HeaderMap) -> Option<usize> {
    let options = headers.get("Sforce-Query-Options")?.to_str().ok()?;
    let size = options.split(',').find_map(|o| {
        let (k, v) = o.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("batchSize")
            .then(|| v.trim().parse::<usize>().ok())?
    })?;
    Some(size.clamp(*BATCH_SIZES.start(), *BATCH_SIZES.end()))
}

/// One page of a cursor starting at `offset`; `base` is the resource path the locator hangs
/// under (`/services/data/v67.0/query`).
fn page(cursor: &Cursor, base: &str, locator: &str, offset: usize) -> Value {
    let end = (offset + cursor.page_size).min(cursor.deliverable);
    let start = offset.min(end);
    let done = end >= cursor.deliverable;
    let mut body = json!({
        "totalSize": cursor.total,
        "done": done,
        "records": cursor.records[start..end],
    });
    if !done {
        body["nextRecordsUrl"] = json!(format!("{base}/{locator}-{end}"));
    }
    body
}

/// `GET /services/data/vNN.0/{query,queryAll,tooling/query}?q=<SOQL>`.
pub(crate) async fn query(
    State(app): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    uri: Uri,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    Caller { session, user }: Caller,
) -> Response {
    let version = params.get("version").map_or("", String::as_str);
    let form = crate::token::parse_form(raw.as_deref().unwrap_or(""));
    let Some(text) = form.get("q").filter(|q| !q.trim().is_empty()) else {
        return rest_error(
            StatusCode::BAD_REQUEST,
            "MALFORMED_QUERY",
            "A query string has to be specified",
        );
    };
    let q = match soql::parse(text) {
        Ok(q) => q,
        Err(e) => return query_error(e),
    };
    let mut st = app.lock();
    let viewer = Viewer {
        session: &session,
        user: &user,
    };
    let data = match dataset(&st, q.object, &q.parent_objects(), &viewer, text) {
        Ok(data) => data,
        Err(e) => return query_error(e),
    };
    let now_ms = st.now() * 1000;
    let outcome = soql::run(&q, &data, now_ms, version);
    let batch = requested_batch(&headers).unwrap_or(st.settings.query_page_size);
    // OauthToken pages hold 500 rows and a query reaches 2500 at most (§4.2).
    let (page_size, deliverable) = if q.object.name == "OauthToken" {
        let max = st.settings.oauth_token_max_rows;
        let size = batch.min(st.settings.oauth_token_page_size);
        (size, outcome.records.len().min(max))
    } else {
        (batch, outcome.records.len())
    };
    let cursor = Cursor {
        total: outcome.total,
        records: outcome.records,
        page_size: page_size.max(1),
        deliverable,
    };
    let locator = st.new_id("01g");
    let base = uri.path().trim_end_matches('/');
    let body = page(&cursor, base, &locator, 0);
    if body["done"] == json!(false) {
        st.cursors.insert(locator, cursor);
    }
    json_response(StatusCode::OK, body)
}

/// `GET …/query/<locator>-<offset>` (a `nextRecordsUrl`).
pub(crate) async fn more(
    State(app): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    uri: Uri,
    _: Caller,
) -> Response {
    let st = app.lock();
    let locator = params.get("locator").map_or("", String::as_str);
    let base = uri
        .path()
        .trim_end_matches('/')
        .rsplit_once('/')
        .map_or("", |(b, _)| b);
    let found = locator.rsplit_once('-').and_then(|(id, offset)| {
        let offset: usize = offset.parse().ok()?;
        let cursor = st.cursors.get(id)?;
        (offset <= cursor.deliverable).then(|| page(cursor, base, id, offset))
    });
    match found {
        Some(body) => json_response(StatusCode::OK, body),
        None => rest_error(
            StatusCode::BAD_REQUEST,
            "INVALID_QUERY_LOCATOR",
            "invalid query locator",
        ),
    }
}
