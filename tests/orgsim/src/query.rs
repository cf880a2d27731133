//! REST SOQL: `GET /services/data/vNN.0/query?q=…` and `GET …/query/<locator>-<offset>`
//! (providers/salesforce/salesforce-api.md §5.1) over the sObjects rekey reads: `AuthSession`
//! (§4.3), `OauthToken` (§4.2) and `User`.
//!
//! The SOQL subset is `SELECT f1, f2 FROM Object [WHERE f = literal [AND f != literal …]]`
//! with case-insensitive keywords, field and object names; literals are quoted strings (with
//! SOQL's backslash escapes), `true`/`false`, `null` and integers. Anything else is a
//! `MALFORMED_QUERY`.

use crate::rest::{Caller, rest_error};
use crate::server::{AppState, json_response};
use crate::state::{Cursor, OrgState, Session, User, same_id};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

/// The type of an sObject field, for filter checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldType {
    Id,
    Text,
    Bool,
    Int,
    DateTime,
}

/// An sObject the emulator can query: its API name and fields.
#[derive(Debug)]
struct SObject {
    name: &'static str,
    fields: &'static [(&'static str, FieldType)],
}

use FieldType::{Bool, DateTime, Id, Int, Text};

const AUTH_SESSION: SObject = SObject {
    name: "AuthSession",
    fields: &[
        ("Id", Id),
        ("UsersId", Id),
        ("CreatedDate", DateTime),
        ("LastModifiedDate", DateTime),
        ("NumSecondsValid", Int),
        ("SessionType", Text),
        ("LoginType", Text),
        ("SourceIp", Text),
        ("UserType", Text),
        ("SessionSecurityLevel", Text),
        ("ParentId", Id),
        ("LoginHistoryId", Id),
        ("LoginGeoId", Id),
        ("IsCurrent", Bool),
        ("LogoutUrl", Text),
        ("IsAssociatedWithJwtAccessToken", Bool),
    ],
};

const OAUTH_TOKEN: SObject = SObject {
    name: "OauthToken",
    fields: &[
        ("Id", Id),
        ("AccessToken", Text),
        ("AppMenuItemId", Id),
        ("AppName", Text),
        ("CreatedDate", DateTime),
        ("DeleteToken", Text),
        ("LastUsedDate", DateTime),
        ("RequestToken", Text),
        ("UseCount", Int),
        ("UserId", Id),
    ],
};

const USER: SObject = SObject {
    name: "User",
    fields: &[
        ("Id", Id),
        ("Username", Text),
        ("Name", Text),
        ("FirstName", Text),
        ("LastName", Text),
        ("Email", Text),
        ("IsActive", Bool),
        ("ProfileId", Id),
        ("UserType", Text),
    ],
};

const OBJECTS: [&SObject; 3] = [&AUTH_SESSION, &OAUTH_TOKEN, &USER];

/// A literal on the right of a filter.
#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Str(String),
    Bool(bool),
    Int(i64),
    Null,
}

/// One `field = literal` / `field != literal` filter.
#[derive(Debug, Clone, PartialEq)]
struct Condition {
    field: &'static str,
    negated: bool,
    value: Literal,
}

/// A parsed query.
#[derive(Debug)]
struct Query {
    object: &'static SObject,
    fields: Vec<&'static str>,
    conditions: Vec<Condition>,
}

/// Why a query was refused: (errorCode, message).
type QueryError = (&'static str, String);

fn malformed(message: impl Into<String>) -> QueryError {
    ("MALFORMED_QUERY", message.into())
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Str(String),
    Int(i64),
    Comma,
    Eq,
    Ne,
}

fn describe(t: Option<&Token>) -> String {
    match t {
        None => "end of query".into(),
        Some(Token::Word(w)) => format!("'{w}'"),
        Some(Token::Str(s)) => format!("'{s}' (a string)"),
        Some(Token::Int(n)) => format!("'{n}'"),
        Some(Token::Comma) => "','".into(),
        Some(Token::Eq) => "'='".into(),
        Some(Token::Ne) => "'!='".into(),
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, QueryError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            ',' => {
                out.push(Token::Comma);
                i += 1;
            }
            '=' => {
                out.push(Token::Eq);
                i += 1;
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                out.push(Token::Ne);
                i += 2;
            }
            '\'' => {
                let mut value = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(malformed("unterminated string literal")),
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some('\\') => {
                            let escaped = match chars.get(i + 1) {
                                Some('\'') => '\'',
                                Some('"') => '"',
                                Some('\\') => '\\',
                                Some('n') => '\n',
                                Some('r') => '\r',
                                Some('t') => '\t',
                                Some('b') => '\u{8}',
                                Some('f') => '\u{c}',
                                other => {
                                    return Err(malformed(format!(
                                        "Invalid string literal: illegal escape sequence \\{}",
                                        other.map(char::to_string).unwrap_or_default()
                                    )));
                                }
                            };
                            value.push(escaped);
                            i += 2;
                        }
                        Some(ch) => {
                            value.push(*ch);
                            i += 1;
                        }
                    }
                }
                out.push(Token::Str(value));
            }
            c if c.is_ascii_digit() => {
                let start = i;
                while chars.get(i).is_some_and(char::is_ascii_digit) {
                    i += 1;
                }
                let digits: String = chars[start..i].iter().collect();
                let n = digits
                    .parse()
                    .map_err(|_| malformed(format!("number out of range: {digits}")))?;
                out.push(Token::Int(n));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while chars
                    .get(i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
                {
                    i += 1;
                }
                out.push(Token::Word(chars[start..i].iter().collect()));
            }
            other => return Err(malformed(format!("unexpected token: '{other}'"))),
        }
    }
    Ok(out)
}

fn keyword(t: Option<&Token>, kw: &str) -> bool {
    matches!(t, Some(Token::Word(w)) if w.eq_ignore_ascii_case(kw))
}

fn field_of(object: &'static SObject, name: &str) -> Result<(&'static str, FieldType), QueryError> {
    object
        .fields
        .iter()
        .find(|(f, _)| f.eq_ignore_ascii_case(name))
        .copied()
        .ok_or_else(|| {
            (
                "INVALID_FIELD",
                format!(
                    "No such column '{name}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.",
                    object.name
                ),
            )
        })
}

/// Parses the supported SOQL subset.
fn parse(text: &str) -> Result<Query, QueryError> {
    let tokens = tokenize(text)?;
    let mut at = 0;
    if !keyword(tokens.first(), "SELECT") {
        return Err(malformed(format!(
            "unexpected token: {}",
            describe(tokens.first())
        )));
    }
    at += 1;
    let mut names = Vec::new();
    loop {
        match tokens.get(at) {
            Some(Token::Word(w)) if !w.eq_ignore_ascii_case("FROM") => names.push(w.clone()),
            other => return Err(malformed(format!("unexpected token: {}", describe(other)))),
        }
        at += 1;
        if tokens.get(at) == Some(&Token::Comma) {
            at += 1;
            continue;
        }
        break;
    }
    if !keyword(tokens.get(at), "FROM") {
        return Err(malformed(format!(
            "unexpected token: {}",
            describe(tokens.get(at))
        )));
    }
    at += 1;
    let object_name = match tokens.get(at) {
        Some(Token::Word(w)) => w.clone(),
        other => return Err(malformed(format!("unexpected token: {}", describe(other)))),
    };
    at += 1;
    let object = OBJECTS
        .into_iter()
        .find(|o| o.name.eq_ignore_ascii_case(&object_name))
        .ok_or_else(|| {
            (
                "INVALID_TYPE",
                format!(
                    "sObject type '{object_name}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names."
                ),
            )
        })?;
    let mut fields = Vec::new();
    for name in &names {
        let (field, _) = field_of(object, name)?;
        if fields.contains(&field) {
            return Err(malformed(format!("duplicate field selected: {field}")));
        }
        fields.push(field);
    }
    let mut conditions = Vec::new();
    if keyword(tokens.get(at), "WHERE") {
        at += 1;
        loop {
            let name = match tokens.get(at) {
                Some(Token::Word(w)) => w.clone(),
                other => return Err(malformed(format!("unexpected token: {}", describe(other)))),
            };
            let (field, kind) = field_of(object, &name)?;
            let negated = match tokens.get(at + 1) {
                Some(Token::Eq) => false,
                Some(Token::Ne) => true,
                other => return Err(malformed(format!("unexpected token: {}", describe(other)))),
            };
            let value = match tokens.get(at + 2) {
                Some(Token::Str(s)) => Literal::Str(s.clone()),
                Some(Token::Int(n)) => Literal::Int(*n),
                Some(Token::Word(w)) if w.eq_ignore_ascii_case("true") => Literal::Bool(true),
                Some(Token::Word(w)) if w.eq_ignore_ascii_case("false") => Literal::Bool(false),
                Some(Token::Word(w)) if w.eq_ignore_ascii_case("null") => Literal::Null,
                other => return Err(malformed(format!("unexpected token: {}", describe(other)))),
            };
            check_literal(field, kind, &value)?;
            conditions.push(Condition {
                field,
                negated,
                value,
            });
            at += 3;
            if keyword(tokens.get(at), "AND") {
                at += 1;
                continue;
            }
            break;
        }
    }
    if at != tokens.len() {
        return Err(malformed(format!(
            "unexpected token: {}",
            describe(tokens.get(at))
        )));
    }
    Ok(Query {
        object,
        fields,
        conditions,
    })
}

/// Salesforce refuses a literal of the wrong type for the field.
fn check_literal(field: &str, kind: FieldType, value: &Literal) -> Result<(), QueryError> {
    let expected = match (kind, value) {
        (_, Literal::Null)
        | (Id | Text, Literal::Str(_))
        | (Bool, Literal::Bool(_))
        | (Int, Literal::Int(_)) => return Ok(()),
        (Id | Text, _) => "string and should be enclosed in quotes",
        (Bool, _) => "boolean and should not be enclosed in quotes",
        (Int, _) => "number and should not be enclosed in quotes",
        (DateTime, _) => "dateTime and should not be enclosed in quotes",
    };
    Err((
        "INVALID_QUERY_FILTER_OPERATOR",
        format!("value of filter criterion for field '{field}' must be of type {expected}"),
    ))
}

fn matches(row: &Map<String, Value>, c: &Condition) -> bool {
    let value = row.get(c.field).unwrap_or(&Value::Null);
    let equal = match (&c.value, value) {
        (Literal::Null, v) => v.is_null(),
        (Literal::Str(s), Value::String(v)) => same_id(v, s) || v.eq_ignore_ascii_case(s),
        (Literal::Bool(b), Value::Bool(v)) => b == v,
        (Literal::Int(n), Value::Number(v)) => v.as_i64() == Some(*n),
        _ => false,
    };
    equal != c.negated
}

/// Salesforce's REST datetime format: `2026-01-01T00:00:00.000+0000`.
pub(crate) fn sf_datetime(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
        .to_string()
}

/// An `AuthSession` record with every field; `current` is the caller's session id.
pub(crate) fn auth_session_row(st: &OrgState, s: &Session, current: &str) -> Map<String, Value> {
    let row = json!({
        "Id": s.id,
        "UsersId": s.user_id,
        "CreatedDate": sf_datetime(s.created),
        "LastModifiedDate": sf_datetime(s.last_used),
        "NumSecondsValid": s.timeout_secs,
        "SessionType": st.settings.auth_session_type,
        "LoginType": st.settings.auth_session_login_type,
        "SourceIp": "127.0.0.1",
        "UserType": "Standard",
        "SessionSecurityLevel": "STANDARD",
        "ParentId": null,
        "LoginHistoryId": s.login_history_id,
        "LoginGeoId": null,
        "IsCurrent": s.id == current,
        "LogoutUrl": null,
        "IsAssociatedWithJwtAccessToken": false,
    });
    into_map(row)
}

/// A `User` record with every field the emulator knows.
pub(crate) fn user_row(st: &OrgState, u: &User) -> Map<String, Value> {
    let (first, last) = match u.name.split_once(' ') {
        Some((f, l)) => (Value::from(f), Value::from(l)),
        None => (Value::Null, Value::from(u.name.as_str())),
    };
    into_map(json!({
        "Id": u.id,
        "Username": u.username,
        "Name": u.name,
        "FirstName": first,
        "LastName": last,
        "Email": u.username,
        "IsActive": u.active,
        "ProfileId": st.profile_id(&u.profile),
        "UserType": "Standard",
    }))
}

fn into_map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Every row of the object the caller may see, with all fields.
fn rows(
    st: &OrgState,
    object: &SObject,
    session: &Session,
    user: &User,
) -> Vec<Map<String, Value>> {
    let now = st.now();
    match object.name {
        "AuthSession" => {
            // Manage Users shows every user's sessions; others see their own.
            let all = st.has_permission_or_all_data(user, "ManageUsers");
            st.sessions
                .iter()
                .filter(|s| s.live_at(now) && (all || s.user_id == user.id))
                .map(|s| auth_session_row(st, s, &session.id))
                .collect()
        }
        "OauthToken" => {
            // Customize Application shows every user's tokens; others see their own.
            let all = st.has_permission_or_all_data(user, "CustomizeApplication");
            st.grants
                .iter()
                .filter(|g| all || g.user_id == user.id)
                .map(|g| {
                    let menu_item = st.app_component_id(&g.app_key).map(|id| {
                        crate::state::id18(&format!("0DS{}", id.get(3..15).unwrap_or("")))
                    });
                    into_map(json!({
                        // "Reserved for future use. Currently, the value is always null."
                        "Id": null,
                        // A masked refresh token: enough to tell rows apart, useless to a thief.
                        "AccessToken": format!("{}…", g.refresh_token.get(..10).unwrap_or("")),
                        "AppMenuItemId": menu_item,
                        "AppName": st.app_label(&g.app_key),
                        "CreatedDate": sf_datetime(g.created),
                        "DeleteToken": g.delete_token,
                        "LastUsedDate": sf_datetime(g.last_used),
                        "RequestToken": null,
                        "UseCount": g.use_count,
                        "UserId": g.user_id,
                    }))
                })
                .collect()
        }
        _ => st.users.iter().map(|u| user_row(st, u)).collect(),
    }
}

/// A record as the REST API renders it: `attributes` plus the selected fields.
fn render(row: &Map<String, Value>, q: &Query, version: &str) -> Value {
    let url = match row.get("Id") {
        Some(Value::String(id)) => Value::from(format!(
            "/services/data/{version}/sobjects/{}/{id}",
            q.object.name
        )),
        _ => Value::Null,
    };
    let mut out = Map::new();
    out.insert(
        "attributes".into(),
        json!({"type": q.object.name, "url": url}),
    );
    for f in &q.fields {
        out.insert((*f).into(), row.get(*f).cloned().unwrap_or(Value::Null));
    }
    Value::Object(out)
}

/// One page of a cursor starting at `offset`.
fn page(cursor: &Cursor, locator: &str, offset: usize, version: &str) -> Value {
    let end = (offset + cursor.page_size).min(cursor.deliverable);
    let start = offset.min(end);
    let done = end >= cursor.deliverable;
    let mut body = json!({
        "totalSize": cursor.records.len(),
        "done": done,
        "records": cursor.records[start..end],
    });
    if !done {
        body["nextRecordsUrl"] = json!(format!("/services/data/{version}/query/{locator}-{end}"));
    }
    body
}

fn query_error((code, message): QueryError) -> Response {
    rest_error(StatusCode::BAD_REQUEST, code, &message)
}

/// `GET /services/data/vNN.0/query?q=<SOQL>`.
pub(crate) async fn query(
    State(app): State<AppState>,
    Path(version): Path<String>,
    RawQuery(raw): RawQuery,
    Caller { session, user }: Caller,
) -> Response {
    let params = crate::token::parse_form(raw.as_deref().unwrap_or(""));
    let Some(text) = params.get("q").filter(|q| !q.trim().is_empty()) else {
        return query_error(malformed("A query string has to be specified"));
    };
    let q = match parse(text) {
        Ok(q) => q,
        Err(e) => return query_error(e),
    };
    let mut st = app.lock();
    let records: Vec<Value> = rows(&st, q.object, &session, &user)
        .iter()
        .filter(|row| q.conditions.iter().all(|c| matches(row, c)))
        .map(|row| render(row, &q, &version))
        .collect();
    let (page_size, deliverable) = if q.object.name == "OauthToken" {
        let max = st.settings.oauth_token_max_rows;
        (st.settings.oauth_token_page_size, records.len().min(max))
    } else {
        (st.settings.query_page_size, records.len())
    };
    let cursor = Cursor {
        records,
        page_size: page_size.max(1),
        deliverable,
    };
    let locator = st.new_id("01g");
    let body = page(&cursor, &locator, 0, &version);
    if body["done"] == json!(false) {
        st.cursors.insert(locator, cursor);
    }
    json_response(StatusCode::OK, body)
}

/// `GET /services/data/vNN.0/query/<locator>-<offset>` (a `nextRecordsUrl`).
pub(crate) async fn more(
    State(app): State<AppState>,
    Path((version, locator)): Path<(String, String)>,
    _: Caller,
) -> Response {
    let st = app.lock();
    let found = locator.rsplit_once('-').and_then(|(id, offset)| {
        let offset: usize = offset.parse().ok()?;
        let cursor = st.cursors.get(id)?;
        (offset <= cursor.deliverable).then(|| page(cursor, id, offset, &version))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_subset() {
        let q = parse(
            "select id, UsersId from authsession where UsersId = '005\\'x' AND IsCurrent != true",
        )
        .unwrap();
        assert_eq!(q.object.name, "AuthSession");
        assert_eq!(q.fields, ["Id", "UsersId"]);
        assert_eq!(
            q.conditions,
            [
                Condition {
                    field: "UsersId",
                    negated: false,
                    value: Literal::Str("005'x".into())
                },
                Condition {
                    field: "IsCurrent",
                    negated: true,
                    value: Literal::Bool(true)
                }
            ]
        );
        assert!(parse("SELECT Id FROM User").unwrap().conditions.is_empty());
        assert_eq!(
            parse("SELECT Id FROM User WHERE UseCount = 1")
                .unwrap_err()
                .0,
            "INVALID_FIELD"
        );
    }

    #[test]
    fn refuses_what_it_does_not_support() {
        for (q, code) in [
            ("", "MALFORMED_QUERY"),
            ("SELECT FROM User", "MALFORMED_QUERY"),
            ("SELECT Id User", "MALFORMED_QUERY"),
            ("SELECT Id FROM User WHERE", "MALFORMED_QUERY"),
            (
                "SELECT Id FROM User WHERE Id = 'a' OR Id = 'b'",
                "MALFORMED_QUERY",
            ),
            ("SELECT Id FROM User LIMIT 5", "MALFORMED_QUERY"),
            (
                "SELECT Id FROM User WHERE Id = 'unterminated",
                "MALFORMED_QUERY",
            ),
            ("SELECT Id FROM User WHERE Id = 'bad\\q'", "MALFORMED_QUERY"),
            ("SELECT Id, id FROM User", "MALFORMED_QUERY"),
            ("SELECT Id FROM User WHERE Id < 'a'", "MALFORMED_QUERY"),
            ("SELECT Id FROM Account", "INVALID_TYPE"),
            ("SELECT Nope FROM User", "INVALID_FIELD"),
            (
                "SELECT Id FROM User WHERE IsActive = 'true'",
                "INVALID_QUERY_FILTER_OPERATOR",
            ),
            (
                "SELECT Id FROM User WHERE Username = true",
                "INVALID_QUERY_FILTER_OPERATOR",
            ),
        ] {
            assert_eq!(parse(q).unwrap_err().0, code, "{q}");
        }
    }
}
