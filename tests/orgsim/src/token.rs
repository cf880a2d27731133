//! `POST /services/oauth2/token`: the OAuth 2.0 JWT bearer grant
//! (providers/salesforce/platform.md §1).
//!
//! Checks run in the fixed order grant_type → iss → aud → signature → exp → user →
//! authorization, so a request with several problems reports the first one only. The refresh
//! token grant is `refresh.rs`', the client credentials grant `client_credentials.rs`'; all
//! get a `LoginHistory` row and the login rate limit here.

use crate::client_credentials::CLIENT_CREDENTIALS;
use crate::refresh::REFRESH_TOKEN;
use crate::server::{AppState, json_response};
use crate::state::{ECA, LOGIN_RATE_EXCEEDED, OrgState};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use std::collections::HashMap;

/// Path of the token endpoint.
pub(crate) const TOKEN_PATH: &str = "/services/oauth2/token";

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// ECAs stopped accepting the sandbox login host as audience in Spring '26.
const SANDBOX_AUDIENCE: &str = "https://test.salesforce.com";

/// A token-endpoint error: (`error`, `error_description`).
type GrantError = (String, String);

fn err(error: &str, description: &str) -> GrantError {
    (error.to_string(), description.to_string())
}

fn invalid_assertion() -> GrantError {
    err("invalid_grant", "invalid assertion")
}

/// The handler: form body, with query parameters tolerated (body wins).
pub(crate) async fn token(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut params = parse_form(query.as_deref().unwrap_or(""));
    params.extend(parse_form(&String::from_utf8_lossy(&body)));
    if params.get("grant_type").map(String::as_str) == Some(CLIENT_CREDENTIALS) {
        crate::client_credentials::add_basic_credentials(&headers, &mut params);
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let result = {
        let mut st = app.lock();
        logged_grant(&mut st, &app.base_url, host, &params)
    };
    match result {
        Ok(body) => json_response(StatusCode::OK, body),
        Err((error, description)) => token_error(&error, &description),
    }
}

/// Any method but POST on the token endpoint: the JSON error every other token-endpoint
/// failure uses.
pub(crate) async fn not_post() -> Response {
    token_error("invalid_request", "must use HTTP POST")
}

/// The user and app a token request names, when both its assertion and its user can be read:
/// (user id, app label).
fn named_login(
    st: &OrgState,
    params: &HashMap<String, String>,
) -> Option<(String, Option<String>)> {
    let jws = Jws::parse(params.get("assertion")?)?;
    let claim = |name: &str| jws.claims.get(name).and_then(Value::as_str);
    let user = st.user_by_username(claim("prn").or_else(|| claim("sub"))?)?;
    let app = claim("iss")
        .and_then(|iss| st.app_by_consumer_key(iss))
        .and_then(|a| st.app_label(&a.key()));
    Some((user.id.clone(), app))
}

/// A grant with its `LoginHistory` row (for requests naming a known user) and the per-user
/// login rate limit.
fn logged_grant(
    st: &mut OrgState,
    base_url: &str,
    host: &str,
    params: &HashMap<String, String>,
) -> Result<Value, GrantError> {
    let grant_type = params.get("grant_type").map(String::as_str);
    let run = |st: &mut OrgState, login_id: &str| match grant_type {
        Some(REFRESH_TOKEN) => crate::refresh::grant(st, base_url, params, login_id),
        Some(CLIENT_CREDENTIALS) => {
            crate::client_credentials::grant(st, base_url, host, params, login_id)
        }
        _ => grant(st, base_url, params, login_id),
    };
    let named = match grant_type {
        Some(REFRESH_TOKEN) => crate::refresh::named_login(st, params),
        Some(CLIENT_CREDENTIALS) => crate::client_credentials::named_login(st, params),
        _ => named_login(st, params),
    };
    let Some((user_id, application)) = named else {
        return run(st, "");
    };
    if st.login_rate_exceeded(&user_id) {
        st.record_login(&user_id, application, LOGIN_RATE_EXCEEDED, host);
        return Err(err(
            "rate_limit_exceeded",
            &st.settings.rate_limit_description,
        ));
    }
    let login_id = st.record_login(&user_id, application, "Success", host);
    let result = run(st, &login_id);
    if let Err((_, description)) = &result
        && let Some(login) = st.logins.iter_mut().find(|l| l.id == login_id)
    {
        login.status = format!("Failed: {description}");
    }
    result
}

/// 400 with the `{"error","error_description"}` body every token failure uses.
pub(crate) fn token_error(error: &str, description: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        json!({"error": error, "error_description": description}),
    )
}

/// The JWT bearer grant (any grant type but the refresh token's); a new session is created by
/// login `login_id`.
fn grant(
    st: &mut OrgState,
    base_url: &str,
    params: &HashMap<String, String>,
    login_id: &str,
) -> Result<Value, GrantError> {
    if params.get("grant_type").map(String::as_str) != Some(JWT_BEARER) {
        return Err(err(
            "unsupported_grant_type",
            &st.settings.unsupported_grant_type_description,
        ));
    }
    let assertion = params.get("assertion").ok_or_else(invalid_assertion)?;
    let jws = Jws::parse(assertion).ok_or_else(invalid_assertion)?;

    let iss = jws.claims.get("iss").and_then(Value::as_str).unwrap_or("");
    let app = st
        .app_by_consumer_key(iss)
        .ok_or_else(|| err("invalid_client_id", "client identifier invalid"))?;
    if !app.oauth_enabled {
        return Err(err(
            &st.settings.oauth_disabled_error,
            &st.settings.oauth_disabled_description,
        ));
    }

    let audiences: Vec<&str> = match jws.claims.get("aud") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let normal = |a: &str| a.trim_end_matches('/').to_string();
    if app.kind == ECA && audiences.iter().any(|a| normal(a) == SANDBOX_AUDIENCE) {
        return Err(err(
            "app_not_found",
            "External client app is not installed in this org",
        ));
    }
    let accepted = |a: &&str| {
        normal(a) == normal(base_url) || st.org.audiences.iter().any(|x| normal(x) == normal(a))
    };
    if !audiences.iter().any(accepted) {
        return Err(err("invalid_grant", "audience is invalid"));
    }

    let now = st.now();
    if jws.header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(invalid_assertion());
    }
    let verifying: Vec<_> = st
        .trusted_certs(&app)
        .into_iter()
        .filter(|c| c.verifies(jws.signed.as_bytes(), &jws.signature))
        .collect();
    let expiry_ok =
        !st.settings.enforce_certificate_expiry || verifying.iter().any(|c| !c.expired_at(now));
    if verifying.is_empty() || !expiry_ok {
        return Err(invalid_assertion());
    }

    // Salesforce's own example sends exp as a string; accept both.
    let exp = match jws.claims.get("exp") {
        Some(Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
    .ok_or_else(invalid_assertion)?;
    if now > exp.saturating_add(st.settings.exp_skew_secs) {
        return Err(err("invalid_grant", "expired authorization code"));
    }
    let max = st.settings.max_assertion_lifetime_secs;
    if max > 0 && exp.saturating_sub(now) > max {
        return Err(invalid_assertion());
    }

    // `prn` is the legacy spelling of `sub`; when both are present `prn` wins.
    let username = jws
        .claims
        .get("prn")
        .or_else(|| jws.claims.get("sub"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let user = st
        .user_by_username(username)
        .cloned()
        .ok_or_else(|| err("invalid_grant", &st.settings.unknown_user_description))?;
    if !user.active {
        return Err(err("inactive_user", &st.settings.inactive_user_description));
    }

    if app.admin_approved {
        let assigned = app.profiles.contains(&user.profile)
            || user
                .permission_sets
                .iter()
                .any(|p| app.permission_sets.contains(p));
        if !assigned {
            return Err(err(
                "invalid_app_access",
                "user is not admin approved to access this app",
            ));
        }
    } else if !st.use_approval(&user, &app) {
        return Err(err("invalid_grant", "user hasn't approved this consumer"));
    }

    let minutes = app
        .session_timeout_minutes
        .or_else(|| st.profile_timeout(&user))
        .unwrap_or(st.org.session_timeout_minutes);
    let session = st.session_for(&user.id, &app.key(), i64::from(minutes) * 60, login_id);
    Ok(json!({
        "access_token": session.token,
        "scope": app.scope,
        "instance_url": base_url,
        "id": format!("{base_url}/id/{}/{}", st.org.id, user.id),
        "token_type": "Bearer",
    }))
}

/// A compact JWS split into its decoded parts.
struct Jws {
    header: serde_json::Map<String, Value>,
    claims: serde_json::Map<String, Value>,
    /// `base64url(header).base64url(claims)`, the signed input.
    signed: String,
    signature: String,
}

impl Jws {
    fn parse(token: &str) -> Option<Jws> {
        let mut parts = token.trim().split('.');
        let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let decode = |part: &str| -> Option<serde_json::Map<String, Value>> {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
        };
        Some(Jws {
            header: decode(h)?,
            claims: decode(c)?,
            signed: format!("{h}.{c}"),
            signature: s.to_string(),
        })
    }
}

/// Parses `application/x-www-form-urlencoded` text.
pub(crate) fn parse_form(text: &str) -> HashMap<String, String> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        let p = parse_form("grant_type=urn%3Aietf%3Aparams&a=b+c&bad=%zz&end=%4");
        assert_eq!(p["grant_type"], "urn:ietf:params");
        assert_eq!(p["a"], "b c");
        assert_eq!(p["bad"], "%zz");
        assert_eq!(p["end"], "%4");
    }
}
