//! HTTP to one org: the cached admin session (re-logged in once when Salesforce calls it
//! invalid), SOAP Metadata calls, REST and Connect REST calls, and the one place where
//! Salesforce's answers become `rekey_api::Error` kinds.
//!
//! Tokens, assertions and keys travel only in headers and bodies; no message built here contains
//! a response body verbatim, only the error codes and texts Salesforce put in it.

use crate::config::{AdminAuth, check_url};
use crate::metadata;
use crate::session::{AdminSession, ApiUsage};
use crate::token::{TokenAnswer, TokenEndpoint};
use crate::xml::{self, Element};
use rekey_api::{Error, ErrorKind, Result, SecretString};
use rekey_http::log::SendLogged as _;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

/// How long an admin login throttled by Salesforce (or met by a passing outage) is retried: five
/// tries over about half a minute, so a run waits out a short burst but never hangs for the
/// hour a login rate limit can last.
const LOGIN_BACKOFF: rekey_api::Backoff =
    rekey_api::Backoff::new(5, Duration::from_secs(1), Duration::from_secs(16));

/// Whether a login failed for Salesforce's login rate limit (`token.rs` words it so).
fn throttled(e: &Error) -> bool {
    e.is_temporary() && e.message().contains("rate_limit_exceeded")
}

/// A query following more `nextRecordsUrl` pages than this is refused (2000 rows a page).
const MAX_QUERY_PAGES: usize = 1000;

/// What a REST query found: every record over all pages, and Salesforce's `totalSize`, which
/// can exceed the records delivered (OauthToken queries stop after 2500 rows).
pub(crate) struct QueryAnswer {
    pub(crate) records: Vec<Value>,
    pub(crate) total_size: u64,
}

/// A SOQL string literal: `value` quoted, with SOQL's backslash escapes, so no value can end
/// the literal early.
pub(crate) fn soql_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Salesforce's dates: `2026-12-06T11:42:40.000+0000`, or RFC 3339.
pub(crate) fn parse_date(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(text))
        .ok()
        .map(|d| d.with_timezone(&chrono::Utc))
}

/// Replaces the generic Metadata-permission hint of a `PermissionDenied` error with one naming
/// the permission the call at hand needs.
pub(crate) fn with_permission_hint(e: Error, hint: &str) -> Error {
    if e.kind() == ErrorKind::PermissionDenied {
        e.with_hint(hint)
    } else {
        e
    }
}

/// Percent-encodes a query parameter value (everything but RFC 3986 unreserved characters).
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A resource's own reading of an error answer: (what, status, error code, message) → the
/// error to return instead of the generic one, or `None`.
pub(crate) type Classify<'a> = dyn Fn(&str, StatusCode, &str, &str) -> Option<Error> + Sync + 'a;

/// A logged-in admin session.
#[derive(Debug)]
pub(crate) struct Session {
    token: SecretString,
    instance_url: String,
}

/// Connection to one org.
pub(crate) struct Client {
    http: reqwest::Client,
    org: String,
    endpoint: TokenEndpoint,
    api_version: String,
    /// The org's admin session, shared with every other client of the org in this process.
    shared: AdminSession,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The admin auth redacts its key and token; the session cache is left out entirely.
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .field("api_version", &self.api_version)
            .field("admin", self.admin())
            .finish_non_exhaustive()
    }
}

/// A transport failure: connection refused, timeout, reset. Always worth a retry.
pub(crate) fn transport(what: &str, e: reqwest::Error) -> Error {
    rekey_http::transport_error(what, e)
}

pub(crate) fn is_html(content_type: &str, body: &str) -> bool {
    let head = body
        .trim_start()
        .get(..15)
        .unwrap_or_default()
        .to_ascii_lowercase();
    content_type.contains("text/html")
        || head.starts_with("<!doctype html")
        || head.starts_with("<html")
}

/// The `<title>` of an HTML page, for messages (e.g. "Data Not Available").
fn html_title(body: &str) -> Option<String> {
    let lower = body.to_ascii_lowercase();
    let start = lower.find("<title>")? + "<title>".len();
    let end = start + lower[start..].find("</title>")?;
    let title: String = body[start..end]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    (!title.is_empty()).then(|| title.chars().take(100).collect())
}

pub(crate) fn html_error(what: &str, status: StatusCode, body: &str) -> Error {
    let title = html_title(body).unwrap_or_else(|| "an HTML page".into());
    Error::new(
        ErrorKind::Unavailable,
        format!(
            "{what}: salesforce answered HTTP {} with '{title}' instead of an API response",
            status.as_u16()
        ),
    )
    .with_hint("the org may be in maintenance or temporarily unavailable; retry later")
    .temporary()
}

/// The first error code and message of a REST error array, an OAuth error object or a SOAP
/// fault, and whether it was a SOAP fault (always sent as HTTP 500, so the code decides).
fn error_details(body: &str) -> (String, String, bool) {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        let first = match &v {
            Value::Array(items) => items.first().cloned().unwrap_or(Value::Null),
            other => other.clone(),
        };
        let field = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| first.get(*n).and_then(Value::as_str))
                .unwrap_or_default()
                .to_string()
        };
        return (
            field(&["errorCode", "error"]),
            field(&["message", "error_description"]),
            false,
        );
    }
    if let Some(f) = xml::parse(body).ok().as_ref().and_then(metadata::fault) {
        return (f.code, f.message, true);
    }
    (String::new(), String::new(), false)
}

impl Client {
    /// A client for the org; no request is made yet.
    pub(crate) fn new(
        org: &str,
        login_url: String,
        audience: &str,
        api_version: &str,
        shared: AdminSession,
        request_timeout: Duration,
    ) -> Result<Self> {
        // One HTTP client (and connection pool) per org and request timeout, not per target:
        // building one loads the TLS roots.
        let http = shared.http_client(request_timeout, || {
            TokenEndpoint::client(org, request_timeout)
        })?;
        let endpoint = TokenEndpoint::with_client(org, login_url, audience, http);
        Ok(Client {
            // One connection pool for the token endpoint and the API calls.
            http: endpoint.http(),
            org: org.to_string(),
            endpoint,
            api_version: api_version.to_string(),
            shared,
        })
    }

    /// How rekey logs in to the org.
    fn admin(&self) -> &AdminAuth {
        self.shared.admin()
    }

    /// The org's shared admin session (and what it read ahead).
    pub(crate) fn shared(&self) -> &AdminSession {
        &self.shared
    }

    /// Keeps the org's API usage from an answer's `Sforce-Limit-Info` header.
    fn note(&self, resp: &reqwest::Response) {
        if let Some(usage) = resp
            .headers()
            .get("Sforce-Limit-Info")
            .and_then(|v| v.to_str().ok())
            .and_then(ApiUsage::parse)
        {
            self.shared.note_usage(usage);
        }
    }

    /// A request that may change the org: what was read ahead is stale from now on.
    fn wrote(&self) {
        self.shared.invalidate();
    }

    /// The API version used in paths and package.xml.
    pub(crate) fn api_version(&self) -> &str {
        &self.api_version
    }

    /// The org's token endpoint.
    pub(crate) fn token_endpoint(&self) -> &TokenEndpoint {
        &self.endpoint
    }

    /// Logs the admin in (JWT mode) or wraps the given token.
    async fn login(&self) -> Result<Session> {
        let (consumer_key, username, key) = match self.admin() {
            AdminAuth::Jwt {
                consumer_key,
                username,
                key,
            } => (consumer_key, username, key),
            AdminAuth::AccessToken {
                token,
                instance_url,
            } => {
                return Ok(Session {
                    token: SecretString::new(token.expose_secret()),
                    instance_url: check_url("instance_url", instance_url)?,
                });
            }
        };
        tracing::debug!(org = %self.org, user = %username, "admin JWT login");
        let mut attempt = 1;
        let answer = loop {
            match self
                .endpoint
                .request(
                    consumer_key,
                    username,
                    rekey_api::Signer::Local(key),
                    "admin key",
                )
                .await
            {
                // Salesforce throttles logins per user (`rate_limit_exceeded`, temporary): wait
                // a bounded while for the rolling hour to free a login rather than fail the run.
                // Other temporary failures are the orchestrator's to retry, as for any call.
                Err(e) if throttled(&e) && attempt < LOGIN_BACKOFF.attempts => {
                    let wait = LOGIN_BACKOFF.delay(attempt, None);
                    tracing::warn!(org = %self.org, user = %username, attempt, wait_ms = wait.as_millis() as u64, error = %e, "admin login refused for now (login rate limit); retrying after a wait");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => {
                    return Err(e.context(format!("admin login as {username} to org {}", self.org)));
                }
                Ok(answer) => break answer,
            }
        };
        match answer {
            TokenAnswer::Granted {
                access_token,
                instance_url,
            } => {
                let instance_url =
                    check_url("instance_url returned by the token endpoint", &instance_url)?;
                Ok(Session {
                    token: access_token,
                    instance_url,
                })
            }
            TokenAnswer::Refused(refusal) => Err(Error::new(
                ErrorKind::Unauthenticated,
                format!(
                    "admin login as {username} to org {} refused: {refusal}",
                    self.org
                ),
            )
            .with_hint(refusal.hint("admin"))),
        }
    }

    /// The org's cached session, logging in first if there is none (one login at a time per
    /// org: the others wait for it and share it).
    async fn session(&self) -> Result<Arc<Session>> {
        let mut guard = self.shared.session_slot().lock().await;
        if let Some(s) = guard.as_ref() {
            return Ok(s.clone());
        }
        if let Some(e) = self.shared.recent_refusal() {
            return Err(e);
        }
        let s = match self.login().await {
            Ok(s) => Arc::new(s),
            Err(e) => {
                // A throttled login already waited its bounded while: the org's other reads in
                // this run fail at once with the same temporary error instead of waiting again.
                if throttled(&e) {
                    self.shared.note_refusal(&e);
                }
                return Err(e);
            }
        };
        if matches!(self.admin(), AdminAuth::Jwt { .. }) {
            self.shared.note_login();
        }
        *guard = Some(s.clone());
        Ok(s)
    }

    /// Runs `op` with the session; when Salesforce calls the session invalid and rekey can log
    /// in by itself (JWT mode), logs in again and runs `op` once more. No other retry here: the
    /// orchestrator owns retries.
    async fn authed<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: Fn(Arc<Session>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let session = self.session().await?;
        match op(session.clone()).await {
            Err(e)
                if e.kind() == ErrorKind::Unauthenticated
                    && matches!(self.admin(), AdminAuth::Jwt { .. }) =>
            {
                tracing::debug!(org = %self.org, "admin session refused, logging in again");
                {
                    let mut guard = self.shared.session_slot().lock().await;
                    if guard.as_ref().is_some_and(|s| Arc::ptr_eq(s, &session)) {
                        *guard = None;
                    }
                }
                op(self.session().await?).await
            }
            other => other,
        }
    }

    /// Turns a non-success API answer into an error of the right kind.
    fn api_error(&self, what: &str, status: StatusCode, content_type: &str, body: &str) -> Error {
        if is_html(content_type, body) {
            return html_error(what, status, body);
        }
        let (code, message, soap_fault) = error_details(body);
        let detail = match (code.is_empty(), message.is_empty()) {
            (false, false) => format!("{code}: {message}"),
            (false, true) => code.clone(),
            (true, false) => message.clone(),
            (true, true) => "no error details".into(),
        };
        let text = format!("{what}: HTTP {}: {detail}", status.as_u16());
        if code == "REQUEST_LIMIT_EXCEEDED" || status == StatusCode::TOO_MANY_REQUESTS {
            return Error::new(ErrorKind::Unavailable, text)
                .with_hint("the org's API request limit is exhausted; wait for it to recover")
                .temporary();
        }
        if code == "INVALID_SESSION_ID" || status == StatusCode::UNAUTHORIZED {
            let hint = match self.admin() {
                AdminAuth::AccessToken { .. } => {
                    "the access token expired or was revoked: refresh SF_ACCESS_TOKEN (e.g. `sf org display`)"
                }
                AdminAuth::Jwt { .. } => {
                    "the admin session was refused right after login; check the admin app's session policy"
                }
            };
            return Error::new(ErrorKind::Unauthenticated, text).with_hint(hint);
        }
        if code.contains("INSUFFICIENT_ACCESS") || status == StatusCode::FORBIDDEN {
            return Error::new(ErrorKind::PermissionDenied, text).with_hint(
                "the admin user needs Modify Metadata Through Metadata API Functions or Modify All Data \
                 (for external client apps also access to OAuth consumer secrets via the Metadata API)",
            );
        }
        if (status.is_server_error() && !soap_fault)
            || code == "UNKNOWN_EXCEPTION"
            || code == "SERVER_UNAVAILABLE"
        {
            return Error::new(ErrorKind::Unavailable, text)
                .with_hint("Salesforce is temporarily unavailable; retry later")
                .temporary();
        }
        if code == "NOT_FOUND" || status == StatusCode::NOT_FOUND {
            return Error::new(ErrorKind::NotFound, text);
        }
        Error::new(ErrorKind::Unexpected, text)
    }

    /// The consumer key of rekey's own admin app, when it logs in through one (JWT mode).
    pub(crate) fn admin_consumer_key(&self) -> Option<&str> {
        match self.admin() {
            AdminAuth::Jwt { consumer_key, .. } => Some(consumer_key),
            AdminAuth::AccessToken { .. } => None,
        }
    }

    /// One SOAP Metadata API call; `body` builds the envelope from the session token.
    pub(crate) async fn soap(&self, what: &str, body: impl Fn(&str) -> String) -> Result<Element> {
        self.authed(|s| {
            let envelope = body(s.token.expose_secret());
            async move {
                let url = format!("{}/services/Soap/m/{}", s.instance_url, self.api_version);
                let resp = self
                    .http
                    .post(&url)
                    .header("Content-Type", "text/xml; charset=UTF-8")
                    .header("SOAPAction", "\"\"")
                    .body(envelope)
                    .send_logged()
                    .await
                    .map_err(|e| transport(what, e))?;
                self.note(&resp);
                let (status, content_type, text) = read(what, resp).await?;
                if !status.is_success() || is_html(&content_type, &text) {
                    return Err(self.api_error(what, status, &content_type, &text));
                }
                let doc = xml::parse(&text).map_err(|e| {
                    Error::new(
                        ErrorKind::Unexpected,
                        format!("{what}: unreadable SOAP answer"),
                    )
                    .with_source(e)
                })?;
                match metadata::fault(&doc) {
                    Some(_) => Err(self.api_error(what, status, &content_type, &text)),
                    None => Ok(doc),
                }
            }
        })
        .await
    }

    /// `readMetadata` of up to ten `members` of `type_name` (`what` names the read for
    /// messages); names that do not exist are left out.
    pub(crate) async fn read_metadata(
        &self,
        what: &str,
        type_name: &str,
        members: &[String],
    ) -> Result<Vec<Element>> {
        let doc = self
            .soap(what, |session| {
                metadata::read_request(session, type_name, members)
            })
            .await?;
        Ok(metadata::records(&doc))
    }

    /// `listMetadata` of one type: every member's full name.
    pub(crate) async fn list_metadata(&self, what: &str, type_name: &str) -> Result<Vec<String>> {
        let doc = self
            .soap(what, |session| {
                metadata::list_request(session, type_name, &self.api_version)
            })
            .await?;
        Ok(metadata::listed_names(&doc))
    }

    /// An unauthenticated `GET /services/data/` on the login host, for its `Date` header:
    /// (local time sent, local time answered, the header's time if it had a readable one).
    pub(crate) async fn server_date(
        &self,
        what: &str,
    ) -> Result<(
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
        Option<chrono::DateTime<chrono::Utc>>,
    )> {
        let url = format!("{}/services/data/", self.endpoint.login_url());
        let sent = chrono::Utc::now();
        let resp = self
            .http
            .get(url)
            .send_logged()
            .await
            .map_err(|e| transport(what, e))?;
        let received = chrono::Utc::now();
        let date = resp
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
            .map(|d| d.with_timezone(&chrono::Utc));
        Ok((sent, received, date))
    }

    /// Sends a `method` request for a REST path (starting with `/services/data/…`) to the
    /// session's instance, with its bearer token.
    async fn send_rest(
        &self,
        what: &str,
        session: &Session,
        method: Method,
        path: &str,
    ) -> Result<reqwest::Response> {
        if method != Method::GET {
            self.wrote();
        }
        let resp = self
            .http
            .request(method, format!("{}{path}", session.instance_url))
            .bearer_auth(session.token.expose_secret())
            .send_logged()
            .await
            .map_err(|e| transport(what, e))?;
        self.note(&resp);
        Ok(resp)
    }

    /// `GET` of a REST path (starting with `/services/data/…`) answering JSON.
    pub(crate) async fn rest_get(&self, what: &str, path: &str) -> Result<Value> {
        self.authed(|s| async move {
            let resp = self.send_rest(what, &s, Method::GET, path).await?;
            self.json(what, resp).await
        })
        .await
    }

    /// A REST call with an optional JSON body (sent as `application/json`: Salesforce's
    /// Connect resources hang on a POST without one), whose answer is kept in a zeroed buffer
    /// because Connect's credential resources answer consumer secrets. An error answer goes to
    /// `classify` first (with its status, error code and message), which may name it better than
    /// the generic mapping (an org setting that is off, a slot that is taken).
    pub(crate) async fn rest_secret(
        &self,
        what: &str,
        method: Method,
        path: &str,
        body: Option<&str>,
        classify: &Classify<'_>,
    ) -> Result<Zeroizing<String>> {
        self.authed(|s| {
            let method = method.clone();
            async move {
                if method != Method::GET {
                    self.wrote();
                }
                let mut request = self
                    .http
                    .request(method, format!("{}{path}", s.instance_url))
                    .bearer_auth(s.token.expose_secret());
                if let Some(body) = body {
                    request = request
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.to_string());
                }
                let resp = request
                    .send_logged()
                    .await
                    .map_err(|e| transport(what, e))?;
                self.note(&resp);
                let status = resp.status();
                let content_type = content_type(&resp);
                let text = Zeroizing::new(resp.text().await.map_err(|e| transport(what, e))?);
                let html = is_html(&content_type, &text);
                if status.is_success() && !html {
                    return Ok(text);
                }
                if !html {
                    let (code, message, _) = error_details(&text);
                    if let Some(e) = classify(what, status, &code, &message) {
                        return Err(e);
                    }
                }
                Err(self.api_error(what, status, &content_type, &text))
            }
        })
        .await
    }

    /// `DELETE` of a REST path; `NotFound` when Salesforce answers 404.
    pub(crate) async fn rest_delete(&self, what: &str, path: &str) -> Result<()> {
        self.authed(|s| async move {
            let resp = self.send_rest(what, &s, Method::DELETE, path).await?;
            let (status, content_type, text) = read(what, resp).await?;
            if status.is_success() && !is_html(&content_type, &text) {
                Ok(())
            } else {
                Err(self.api_error(what, status, &content_type, &text))
            }
        })
        .await
    }

    /// Runs a SOQL query and follows `nextRecordsUrl` until `done`.
    pub(crate) async fn query(&self, what: &str, soql: &str) -> Result<QueryAnswer> {
        let mut path = format!(
            "/services/data/v{}/query?q={}",
            self.api_version,
            percent_encode(soql)
        );
        let mut records = Vec::new();
        for _ in 0..MAX_QUERY_PAGES {
            let page = self.rest_get(what, &path).await?;
            let total_size = page.get("totalSize").and_then(Value::as_u64).unwrap_or(0);
            match page.get("records") {
                Some(Value::Array(items)) => records.extend(items.iter().cloned()),
                _ => {
                    return Err(Error::new(
                        ErrorKind::Unexpected,
                        format!("{what}: query answer has no records"),
                    ));
                }
            }
            let done = page.get("done").and_then(Value::as_bool).unwrap_or(true);
            let next = page.get("nextRecordsUrl").and_then(Value::as_str);
            match next {
                Some(next) if !done => {
                    // The bearer token only ever goes to the configured instance.
                    if !next.starts_with("/services/data/") {
                        return Err(Error::new(
                            ErrorKind::Unexpected,
                            format!("{what}: nextRecordsUrl is not a path on the instance"),
                        ));
                    }
                    path = next.to_string();
                }
                _ => {
                    return Ok(QueryAnswer {
                        records,
                        total_size,
                    });
                }
            }
        }
        Err(Error::new(
            ErrorKind::Unexpected,
            format!("{what}: more than {MAX_QUERY_PAGES} pages of results"),
        ))
    }

    /// `POST /services/oauth2/revoke` with `token=` on the org's instance. `Ok(true)`: revoked;
    /// `Ok(false)`: Salesforce calls it `invalid_token` (already revoked or expired).
    pub(crate) async fn revoke_token(&self, what: &str, token: &str) -> Result<bool> {
        self.authed(|s| async move {
            let url = format!("{}/services/oauth2/revoke", s.instance_url);
            self.wrote();
            let resp = self
                .http
                .post(url)
                .form(&[("token", token)])
                .send_logged()
                .await
                .map_err(|e| transport(what, e))?;
            let (status, content_type, text) = read(what, resp).await?;
            if is_html(&content_type, &text) {
                return Err(html_error(what, status, &text));
            }
            if status.is_success() {
                return Ok(true);
            }
            let (code, _, _) = error_details(&text);
            if status == StatusCode::BAD_REQUEST && code == "invalid_token" {
                return Ok(false);
            }
            Err(self.api_error(what, status, &content_type, &text))
        })
        .await
    }

    /// The admin's username, when rekey logs in by JWT.
    pub(crate) fn admin_username(&self) -> Option<&str> {
        match self.admin() {
            AdminAuth::Jwt { username, .. } => Some(username),
            AdminAuth::AccessToken { .. } => None,
        }
    }

    /// `POST …/metadata/deployRequest` with the `json` and `file` parts.
    pub(crate) async fn deploy_request(
        &self,
        what: &str,
        options: &str,
        zip: &[u8],
    ) -> Result<Value> {
        self.authed(|s| async move {
            let part = |p: reqwest::multipart::Part, mime: &str| {
                p.mime_str(mime).map_err(|e| {
                    Error::new(
                        ErrorKind::Unexpected,
                        format!("{what}: bad MIME type {mime}"),
                    )
                    .with_source(e)
                })
            };
            let form = reqwest::multipart::Form::new()
                .part(
                    "json",
                    part(
                        reqwest::multipart::Part::text(options.to_string()),
                        "application/json",
                    )?,
                )
                .part(
                    "file",
                    part(
                        reqwest::multipart::Part::bytes(zip.to_vec()).file_name("deploy.zip"),
                        "application/zip",
                    )?,
                );
            let url = format!(
                "{}/services/data/v{}/metadata/deployRequest",
                s.instance_url, self.api_version
            );
            let resp = self
                .http
                .post(url)
                .bearer_auth(s.token.expose_secret())
                .multipart(form)
                .send_logged()
                .await
                .map_err(|e| transport(what, e))?;
            self.wrote();
            self.note(&resp);
            self.json(what, resp).await
        })
        .await
    }

    async fn json(&self, what: &str, resp: reqwest::Response) -> Result<Value> {
        let (status, content_type, text) = read(what, resp).await?;
        if !status.is_success() || is_html(&content_type, &text) {
            return Err(self.api_error(what, status, &content_type, &text));
        }
        serde_json::from_str(&text).map_err(|e| {
            Error::new(
                ErrorKind::Unexpected,
                format!("{what}: unreadable JSON answer"),
            )
            .with_source(e)
        })
    }
}

pub(crate) fn content_type(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

async fn read(what: &str, resp: reqwest::Response) -> Result<(StatusCode, String, String)> {
    let status = resp.status();
    let content_type = content_type(&resp);
    let text = resp.text().await.map_err(|e| transport(what, e))?;
    Ok((status, content_type, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(admin: AdminAuth) -> Client {
        Client::new(
            "acme",
            "http://127.0.0.1:1".into(),
            "http://127.0.0.1:1",
            "67.0",
            admin.into(),
            Duration::from_secs(5),
        )
        .unwrap()
    }

    fn token_client() -> Client {
        client(AdminAuth::AccessToken {
            token: SecretString::new("t"),
            instance_url: "http://127.0.0.1:1".into(),
        })
    }

    #[test]
    fn soql_strings_cannot_be_broken_out_of() {
        assert_eq!(soql_string("integ@acme.test"), "'integ@acme.test'");
        assert_eq!(
            soql_string("x' OR Username != 'y"),
            r"'x\' OR Username != \'y'"
        );
        assert_eq!(soql_string("a\\b\n\"c"), r#"'a\\b\n\"c'"#);
        assert_eq!(
            percent_encode("SELECT Id FROM User WHERE Username = 'a+b@x'"),
            "SELECT%20Id%20FROM%20User%20WHERE%20Username%20%3D%20%27a%2Bb%40x%27"
        );
    }

    #[test]
    fn classifies_salesforce_errors() {
        let c = token_client();
        let e = c.api_error(
            "reading x",
            StatusCode::FORBIDDEN,
            "application/json",
            r#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
        );
        assert_eq!((e.kind(), e.is_temporary()), (ErrorKind::Unavailable, true));
        assert_eq!(
            e.to_string(),
            "reading x: HTTP 403: REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded."
        );

        let e = c.api_error(
            "reading x",
            StatusCode::UNAUTHORIZED,
            "application/json",
            r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#,
        );
        assert_eq!(e.kind(), ErrorKind::Unauthenticated);
        assert!(e.hint().unwrap().contains("SF_ACCESS_TOKEN"));

        let fault = "<soapenv:Envelope xmlns:soapenv=\"s\"><soapenv:Body><soapenv:Fault><faultcode>sf:INSUFFICIENT_ACCESS</faultcode>\
                     <faultstring>INSUFFICIENT_ACCESS: no</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>";
        let e = c.api_error(
            "reading x",
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/xml",
            fault,
        );
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert!(e.hint().unwrap().contains("Modify All Data"));

        let other = fault.replace("INSUFFICIENT_ACCESS", "INVALID_TYPE");
        let e = c.api_error(
            "reading x",
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/xml",
            &other,
        );
        assert_eq!((e.kind(), e.is_temporary()), (ErrorKind::Unexpected, false));

        let html = "<!DOCTYPE html><html><head><title>Data Not Available</title></head><body>maintenance</body></html>";
        let e = c.api_error("reading x", StatusCode::OK, "text/html;charset=UTF-8", html);
        assert_eq!((e.kind(), e.is_temporary()), (ErrorKind::Unavailable, true));
        assert!(e.to_string().contains("Data Not Available"), "{e}");

        let e = c.api_error("reading x", StatusCode::SERVICE_UNAVAILABLE, "", "");
        assert_eq!((e.kind(), e.is_temporary()), (ErrorKind::Unavailable, true));
        let e = c.api_error(
            "reading x",
            StatusCode::BAD_REQUEST,
            "application/json",
            r#"[{"errorCode":"MALFORMED_ID","message":"m"}]"#,
        );
        assert_eq!((e.kind(), e.is_temporary()), (ErrorKind::Unexpected, false));
    }
}
