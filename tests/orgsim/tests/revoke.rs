//! Ending access: REST SOQL over AuthSession/OauthToken/User with paging, AuthSession delete,
//! `/services/oauth2/revoke`, the ECA OAuth usage resources, the kill switch round trip, and
//! the control API and `OrgSim` helpers for sessions and grants.

mod common;

use common::*;
use orgsim::{OrgSim, Seed, SessionState};
use reqwest::Method;
use serde_json::{Value, json};

const INTEG: &str = "integ@acme.example";
const NOBODY: &str = "nobody@acme.example";
const REVOKE: &str = "/services/oauth2/revoke";

/// A request with a bearer token; returns (status, body text).
async fn call(sim: &OrgSim, method: Method, path: &str, token: &str) -> (u16, String) {
    let r = request(sim, method, path)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// DELETE of an sObject record with a bearer token; returns (status, body text).
async fn delete_record(sim: &OrgSim, object: &str, id: &str, token: &str) -> (u16, String) {
    let path = format!("{V}/sobjects/{object}/{id}");
    call(sim, Method::DELETE, &path, token).await
}

/// The ECA OAuth usage resource that deletes every refresh token of app `id`.
fn app_tokens_path(id: &str) -> String {
    format!("{V}/apps/oauth/usage/{id}/tokens")
}

/// POSTs `token=` to the revoke endpoint as a form.
async fn post_revoke(sim: &OrgSim, token: &str) -> reqwest::Response {
    request(sim, Method::POST, REVOKE)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
}

/// [`post_revoke`]; returns (status, body text).
async fn revoke(sim: &OrgSim, token: &str) -> (u16, String) {
    let r = post_revoke(sim, token).await;
    (r.status().as_u16(), r.text().await.unwrap())
}

fn user_id(sim: &OrgSim, username: &str) -> String {
    sim.sessions()
        .into_iter()
        .find(|s| s.username == username)
        .map(|s| s.user_id)
        .expect("user has a session")
}

// ---- SOQL ----

#[tokio::test]
async fn auth_session_records_carry_every_documented_field() {
    let (sim, admin) = start_as_admin("").await;
    token_for(&sim, 0, CA_KEY, INTEG).await;
    let fields = "Id, UsersId, CreatedDate, LastModifiedDate, NumSecondsValid, SessionType, \
                  LoginType, SourceIp, UserType, SessionSecurityLevel, ParentId, LoginHistoryId, \
                  LoginGeoId, IsCurrent, LogoutUrl, IsAssociatedWithJwtAccessToken";
    let (status, body) = soql(
        &sim,
        Some(&admin),
        &format!("SELECT {fields} FROM AuthSession"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["totalSize"].clone(), body["done"].clone()),
        (json!(2), json!(true))
    );
    assert!(body.get("nextRecordsUrl").is_none());
    let records = body["records"].as_array().unwrap();
    let mine = records.iter().find(|r| r["IsCurrent"] == true).unwrap();
    assert_eq!(mine["UsersId"], "0055g00000ADMINAAA");
    let other = records.iter().find(|r| r["IsCurrent"] == false).unwrap();
    let id = other["Id"].as_str().unwrap();
    assert!(id.starts_with("0Ak") && id.len() == 18, "{id}");
    assert_eq!(
        other["attributes"],
        json!({"type": "AuthSession", "url": format!("{V}/sobjects/AuthSession/{id}")})
    );
    assert_eq!(
        other["NumSecondsValid"],
        30 * 60,
        "Billing Integration profile timeout"
    );
    assert_eq!(other["SessionType"], "Oauth2");
    assert_eq!(other["LoginType"], "Remote Access 2.0");
    assert_eq!(other["UserType"], "Standard");
    assert_eq!(other["SessionSecurityLevel"], "STANDARD");
    assert_eq!(other["IsAssociatedWithJwtAccessToken"], false);
    assert!(other["LoginHistoryId"].as_str().unwrap().starts_with("0Ya"));
    assert!(other["ParentId"].is_null() && other["LogoutUrl"].is_null());
    let created = other["CreatedDate"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_str(created, "%Y-%m-%dT%H:%M:%S%.3f%z").is_ok(),
        "{created}"
    );
    // Only the selected fields (plus attributes) come back.
    let (_, body) = soql(&sim, Some(&admin), "SELECT Id FROM AuthSession").await;
    assert_eq!(body["records"][0].as_object().unwrap().len(), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn without_manage_users_a_user_sees_only_own_sessions_and_tokens() {
    let sim = start("").await;
    token_for(&sim, 0, CA_KEY, INTEG).await;
    let nobody = token_for(&sim, 0, SELF_CA_KEY, NOBODY).await;
    sim.add_grant(INTEG, "Billing_Sync").unwrap();
    let (_, body) = soql(&sim, Some(&nobody), "SELECT Id, UsersId FROM AuthSession").await;
    assert_eq!(body["totalSize"], 1);
    assert_eq!(body["records"][0]["IsCurrent"], Value::Null, "not selected");
    let (_, body) = soql(
        &sim,
        Some(&nobody),
        "SELECT UserId, AppName FROM OauthToken",
    )
    .await;
    assert_eq!(body["totalSize"], 1, "{body}");
    assert_eq!(body["records"][0]["AppName"], "Self App");
    sim.shutdown().await;
}

#[tokio::test]
async fn query_filters_with_escapes_case_insensitive_keywords_and_no_where() {
    let (sim, admin) = start_as_admin("").await;
    let (s, body) = soql(
        &sim,
        Some(&admin),
        "select Id, Username, Name, IsActive, ProfileId from USER where username = 'INTEG@acme.example'",
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["totalSize"], 1);
    let r = &body["records"][0];
    assert_eq!(r["Username"], INTEG);
    assert_eq!(r["Name"], "Integration User");
    assert_eq!(r["IsActive"], true);
    assert!(r["ProfileId"].as_str().unwrap().starts_with("00e"));
    assert_eq!(r["attributes"]["type"], "User");
    let (_, all) = soql(&sim, Some(&admin), "SELECT Id FROM User").await;
    assert_eq!(all["totalSize"], 5);
    let (_, inactive) = soql(
        &sim,
        Some(&admin),
        "SELECT Id FROM User WHERE IsActive = false AND Username != 'x'",
    )
    .await;
    assert_eq!(inactive["totalSize"], 1);
    // An escaped quote is part of the value, not the end of the literal.
    let (s, none) = soql(
        &sim,
        Some(&admin),
        r"SELECT Id FROM User WHERE Username = 'x\' OR Username != \'y'",
    )
    .await;
    assert_eq!((s, none["totalSize"].clone()), (200, json!(0)), "{none}");
    sim.shutdown().await;
}

#[tokio::test]
async fn query_errors_are_error_arrays() {
    let (sim, admin) = start_as_admin("").await;
    for (q, status, code) in [
        ("SELEC Id FROM User", 400, "MALFORMED_QUERY"),
        (
            "SELECT Id FROM User WHERE Id = 'a' OR Id = 'b' AND Id = 'c'",
            400,
            "MALFORMED_QUERY",
        ),
        (
            "SELECT Id FROM User WHERE Username = 'open",
            400,
            "MALFORMED_QUERY",
        ),
        ("SELECT Id FROM Account", 400, "INVALID_TYPE"),
        ("SELECT Password FROM User", 400, "INVALID_FIELD"),
        (
            "SELECT Id FROM User WHERE IsActive = 'yes'",
            400,
            "INVALID_QUERY_FILTER_OPERATOR",
        ),
        ("", 400, "MALFORMED_QUERY"),
    ] {
        let (s, body) = soql(&sim, Some(&admin), q).await;
        assert_eq!((s, error_code(&body)), (status, code), "{q}: {body}");
        assert!(body[0]["message"].is_string());
    }
    for token in [None, Some("00D5g000000ACME!bogus")] {
        let (s, body) = soql(&sim, token, "SELECT Id FROM User").await;
        assert_eq!(s, 401);
        assert_eq!(
            body,
            json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
        );
    }
    let r = get(
        &sim,
        "/services/data/v99.0/query?q=SELECT+Id+FROM+User",
        Some(&admin),
    )
    .await;
    assert_eq!(r.status(), 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn query_pages_follow_next_records_url() {
    let (sim, admin) = start_as_admin("query_page_size = 2").await;
    let (_, first) = soql(&sim, Some(&admin), "SELECT Id, Username FROM User").await;
    assert_eq!(first["totalSize"], 5);
    assert_eq!(first["done"], false);
    assert_eq!(first["records"].as_array().unwrap().len(), 2);
    let mut next = first["nextRecordsUrl"].as_str().unwrap().to_string();
    assert!(
        next.starts_with(&format!("{V}/query/01g")) && next.ends_with("-2"),
        "{next}"
    );
    let mut usernames: Vec<Value> = first["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Username"].clone())
        .collect();
    let mut pages = 1;
    loop {
        let (s, page) = get_json(&sim, &next, Some(&admin)).await;
        assert_eq!(s, 200, "{page}");
        pages += 1;
        assert_eq!(page["totalSize"], 5);
        usernames.extend(
            page["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["Username"].clone()),
        );
        match page["nextRecordsUrl"].as_str() {
            Some(n) => next = n.to_string(),
            None => {
                assert_eq!(page["done"], true);
                break;
            }
        }
    }
    assert_eq!((pages, usernames.len()), (3, 5));
    assert!(usernames.contains(&json!(INTEG)));
    // A locator that does not exist, a malformed one, and one without a session.
    for bad in [format!("{V}/query/01gNOPE-2"), format!("{V}/query/garbage")] {
        let (s, body) = get_json(&sim, &bad, Some(&admin)).await;
        assert_eq!(
            (s, error_code(&body)),
            (400, "INVALID_QUERY_LOCATOR"),
            "{bad}"
        );
    }
    assert_eq!(get(&sim, &next, None).await.status(), 401);
    sim.shutdown().await;
}

#[tokio::test]
async fn oauth_token_pages_of_500_stop_at_2500() {
    let (sim, admin) = start_as_admin("").await;
    for _ in 0..2600 {
        sim.add_grant(NOBODY, "Self_App").unwrap();
    }
    let (_, page) = soql(&sim, Some(&admin), "SELECT DeleteToken FROM OauthToken").await;
    assert_eq!(page["totalSize"], 2601, "the seeded approval plus 2600");
    let mut seen = page["records"].as_array().unwrap().len();
    assert_eq!(seen, 500);
    let mut next = page["nextRecordsUrl"].as_str().map(str::to_string);
    while let Some(url) = next {
        let (s, page) = get_json(&sim, &url, Some(&admin)).await;
        assert_eq!(s, 200);
        let n = page["records"].as_array().unwrap().len();
        assert!(n <= 500);
        seen += n;
        next = page["nextRecordsUrl"].as_str().map(str::to_string);
        if next.is_none() {
            assert_eq!(page["done"], true);
        }
    }
    assert_eq!(seen, 2500, "nothing after 2500 rows");
    sim.shutdown().await;
}

#[tokio::test]
async fn oauth_token_rows_are_grants_without_ids_or_real_tokens() {
    let (sim, admin) = start_as_admin("").await;
    let grant = sim.add_grant(INTEG, "Billing_ECA").unwrap();
    assert_eq!(
        (grant.app.as_str(), grant.app_type.as_str()),
        ("Billing_ECA", "ExternalClientApplication")
    );
    let (_, body) = soql(
        &sim,
        Some(&admin),
        "SELECT Id, AccessToken, AppMenuItemId, AppName, CreatedDate, DeleteToken, LastUsedDate, \
         RequestToken, UseCount, UserId FROM OauthToken WHERE AppName = 'Billing ECA'",
    )
    .await;
    assert_eq!(body["totalSize"], 1, "{body}");
    let r = &body["records"][0];
    assert_eq!(r["Id"], Value::Null);
    assert_eq!(r["attributes"], json!({"type": "OauthToken", "url": null}));
    assert_eq!(r["DeleteToken"], grant.delete_token.as_str());
    assert_eq!(r["UserId"], grant.user_id.as_str());
    assert_eq!(r["UseCount"], 0);
    assert_eq!(r["RequestToken"], Value::Null);
    assert!(r["AppMenuItemId"].as_str().unwrap().starts_with("0DS"));
    let shown = r["AccessToken"].as_str().unwrap();
    assert!(
        !shown.contains(&grant.refresh_token),
        "the refresh token is masked"
    );
    assert!(!body.to_string().contains(&grant.refresh_token));
    sim.shutdown().await;
}

// ---- AuthSession delete and retrieve ----

#[tokio::test]
async fn deleting_an_auth_session_kills_its_token_and_the_next_grant_gets_a_new_one() {
    let (sim, admin) = start_as_admin("").await;
    let integ = token_for(&sim, 0, CA_KEY, INTEG).await;
    assert_eq!(sim.limits(&integ).await.0, 200);
    let session = sim.live_sessions(INTEG).pop().unwrap();
    let path = format!("{V}/sobjects/AuthSession/{}", session.id);
    let (s, record) = get_json(&sim, &path, Some(&admin)).await;
    assert_eq!(s, 200);
    assert_eq!(
        (record["Id"].as_str(), record["UsersId"].as_str()),
        (Some(session.id.as_str()), Some(session.user_id.as_str()))
    );
    assert_eq!(record["attributes"]["type"], "AuthSession");

    let (s, body) = call(&sim, Method::DELETE, &path, &admin).await;
    assert_eq!((s, body.as_str()), (204, ""));
    let (s, body) = sim.limits(&integ).await;
    assert_eq!(s, 401);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
    );
    assert_eq!(soql(&sim, Some(&integ), "SELECT Id FROM User").await.0, 401);
    assert_eq!(
        sim.userinfo(&integ).await,
        (403, "Bad_OAuth_Token".to_string())
    );
    let state = sim
        .sessions()
        .into_iter()
        .find(|s| s.id == session.id)
        .unwrap()
        .state;
    assert_eq!(state, SessionState::Deleted);
    // The record is gone: a second delete and a retrieve are 404 NOT_FOUND.
    for method in [Method::DELETE, Method::GET] {
        let (s, body) = call(&sim, method.clone(), &path, &admin).await;
        assert_eq!(s, 404, "{method}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            json!([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}])
        );
    }
    let (_, body) = soql(&sim, Some(&admin), "SELECT Id FROM AuthSession").await;
    assert_eq!(body["totalSize"], 1, "only the admin's session is left");

    // A new JWT grant creates a new session with a new token.
    let again = token_for(&sim, 0, CA_KEY, INTEG).await;
    assert_ne!(again, integ);
    assert_eq!(sim.limits(&again).await.0, 200);
    assert_ne!(sim.live_sessions(INTEG)[0].id, session.id);
    sim.shutdown().await;
}

#[tokio::test]
async fn session_delete_permissions_and_unsupported_objects() {
    let (sim, admin) = start_as_admin("").await;
    let integ = token_for(&sim, 0, CA_KEY, INTEG).await;
    let nobody = token_for(&sim, 0, SELF_CA_KEY, NOBODY).await;
    let integ_session = sim.live_sessions(INTEG)[0].id.clone();
    // Another user's session without Manage Users.
    let (s, body) = delete_record(&sim, "AuthSession", &integ_session, &nobody).await;
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("INSUFFICIENT_ACCESS_OR_READONLY"));
    assert_eq!(sim.limits(&integ).await.0, 200);
    // Unknown id.
    let (s, body) = delete_record(&sim, "AuthSession", "0Ak5g0000000000AAA", &admin).await;
    assert_eq!(s, 404, "{body}");
    // OauthToken supports query only.
    let (s, body) = delete_record(&sim, "OauthToken", "whatever", &admin).await;
    assert_eq!(s, 405);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!([{"errorCode": "METHOD_NOT_ALLOWED", "message": "HTTP Method 'DELETE' not allowed. Allowed are GET,HEAD"}])
    );
    let (s, _) = delete_record(&sim, "Account", "001000000000000AAA", &admin).await;
    assert_eq!(s, 404);
    // Retrieve a user; a user may delete their own session.
    let uid = user_id(&sim, INTEG);
    let (s, user) = get_json(&sim, &format!("{V}/sobjects/User/{uid}"), Some(&admin)).await;
    assert_eq!((s, user["Username"].as_str()), (200, Some(INTEG)));
    let own = sim.live_sessions(NOBODY)[0].id.clone();
    let (s, _) = delete_record(&sim, "AuthSession", &own, &nobody).await;
    assert_eq!(s, 204);
    assert_eq!(sim.limits(&nobody).await.0, 401);
    // No session: 401.
    let (s, _) = delete_record(&sim, "AuthSession", &integ_session, "bogus").await;
    assert_eq!(s, 401);
    sim.shutdown().await;
}

// ---- /services/oauth2/revoke ----

#[tokio::test]
async fn revoking_an_access_token_ends_its_session() {
    let sim = start("").await;
    let integ = token_for(&sim, 0, CA_KEY, INTEG).await;
    assert_eq!(revoke(&sim, &integ).await, (200, String::new()));
    assert_eq!(sim.limits(&integ).await.0, 401);
    assert_eq!(sim.userinfo(&integ).await.0, 403);
    assert_eq!(sim.sessions()[0].state, SessionState::Revoked);
    // Revoked twice: invalid_token.
    let r = post_revoke(&sim, &integ).await;
    assert_eq!(r.status(), 400);
    assert!(content_type(r.headers()).starts_with("application/json"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token");
    // GET with the token in the query string works too.
    let again = token_for(&sim, 0, CA_KEY, INTEG).await;
    let path = with_query(REVOKE, &[("token", again.as_str())]);
    let r = request(&sim, Method::GET, &path).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sim.limits(&again).await.0, 401);
    // The call log never shows the token.
    assert!(
        !serde_json::to_string(&sim.calls())
            .unwrap()
            .contains(&again)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn revoking_a_refresh_or_delete_token_removes_the_grant_and_its_sessions() {
    let sim = start("").await;
    // The seeded approval lets nobody@ use the self-authorized app.
    let t = token_for(&sim, 0, SELF_CA_KEY, NOBODY).await;
    let seeded = sim
        .grants()
        .into_iter()
        .find(|g| g.username == NOBODY)
        .unwrap();
    assert_eq!(revoke(&sim, &seeded.refresh_token).await.0, 200);
    assert!(sim.grants().iter().all(|g| g.username != NOBODY));
    assert_eq!(
        sim.limits(&t).await.0,
        401,
        "the grant's access tokens are revoked"
    );
    expect_error(
        &sim,
        &assertion(0, SELF_CA_KEY, NOBODY, LOGIN),
        "invalid_grant",
        "user hasn't approved this consumer",
    )
    .await;
    assert_eq!(revoke(&sim, &seeded.refresh_token).await.0, 400);

    // A new approval, revoked through its DeleteToken.
    let grant = sim.add_grant(NOBODY, "Self_App").unwrap();
    token_for(&sim, 0, SELF_CA_KEY, NOBODY).await;
    assert_eq!(
        revoke(&sim, &grant.delete_token).await,
        (200, String::new())
    );
    assert!(sim.grants().is_empty());
    let (s, body) = revoke(&sim, &grant.delete_token).await;
    assert_eq!(s, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "invalid_token"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn revoke_refuses_unknown_missing_and_unsupported_tokens() {
    let sim = start("").await;
    for (token, error) in [
        ("nope", "invalid_token"),
        ("", "invalid_token"),
        (CA_KEY, "unsupported_token_type"),
        (ECA_SECRET, "unsupported_token_type"),
    ] {
        let (s, body) = revoke(&sim, token).await;
        assert_eq!(s, 400, "{token}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"], error, "{token}");
        assert!(body["error_description"].is_string());
    }
    let jws = assertion(0, CA_KEY, INTEG, LOGIN);
    let (s, body) = revoke(&sim, &jws).await;
    assert_eq!(s, 400);
    assert!(body.contains("unsupported_token_type"));
    let r = request(&sim, Method::POST, REVOKE).send().await.unwrap();
    assert_eq!(r.status(), 400);
    sim.shutdown().await;
}

// ---- ECA OAuth usage ----

#[tokio::test]
async fn eca_usage_lists_the_app_id_and_delete_tokens_revokes_every_refresh_token() {
    let (sim, admin) = start_as_admin("").await;
    let id = sim.app_id("Billing_ECA").unwrap();
    assert!(id.starts_with("0xI") && id.len() == 18, "{id}");
    let usage = format!("{V}/apps/oauth/usage");
    let (s, body) = get_json(&sim, &format!("{usage}?page=0&pageSize=100"), Some(&admin)).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body["apps"],
        json!([{"developerName": "Billing_ECA", "identifier": id, "label": "Billing ECA"}])
    );
    assert_eq!(body["nextPageUrl"], Value::Null);
    let (_, empty) = get_json(&sim, &format!("{usage}?page=1&pageSize=1"), Some(&admin)).await;
    assert_eq!(empty["apps"], json!([]));
    let (s, _) = get_json(&sim, &format!("{usage}?pageSize=0"), Some(&admin)).await;
    assert_eq!(s, 400);

    let eca_session = token_for(&sim, 1, ECA_KEY, INTEG).await;
    sim.add_grant(INTEG, "Billing_ECA").unwrap();
    sim.add_grant("permset@acme.example", "Billing_ECA")
        .unwrap();
    let other_app = sim.add_grant(NOBODY, "Self_App").unwrap();
    let path = app_tokens_path(&id);
    assert_eq!(
        call(&sim, Method::DELETE, &path, &admin).await,
        (204, String::new())
    );
    let left: Vec<String> = sim.grants().into_iter().map(|g| g.delete_token).collect();
    assert_eq!(
        left.len(),
        2,
        "the seeded Self_App approval and the new one"
    );
    assert!(left.contains(&other_app.delete_token));
    assert_eq!(
        sim.limits(&eca_session).await.0,
        401,
        "the grants' sessions end"
    );
    // Idempotent.
    assert_eq!(call(&sim, Method::DELETE, &path, &admin).await.0, 204);

    // Unknown app, a Connected App's id, no permission, too old an API version.
    let ca_id = sim.app_id("Billing_Sync").unwrap();
    for bad in ["0xI5g0000000000AAA", ca_id.as_str()] {
        let (s, body) = call(&sim, Method::DELETE, &app_tokens_path(bad), &admin).await;
        assert_eq!(s, 404, "{bad}");
        assert!(body.contains("NOT_FOUND"));
    }
    let integ = token_for(&sim, 0, CA_KEY, INTEG).await;
    let (s, body) = call(&sim, Method::DELETE, &path, &integ).await;
    assert_eq!(s, 403, "{body}");
    let old = format!("/services/data/v58.0/apps/oauth/usage/{id}/tokens");
    assert_eq!(call(&sim, Method::DELETE, &old, &admin).await.0, 404);
    sim.shutdown().await;
}

// ---- kill switch ----

#[tokio::test]
async fn eca_kill_switch_off_blocks_grants_and_on_restores_them() {
    let (sim, admin) = start_as_admin("").await;
    let live = token_for(&sim, 1, ECA_KEY, INTEG).await;
    let done = deploy(&sim, &admin, default_options(), eca_oauth_zip(false)).await;
    assert_eq!(done["deployResult"]["status"], "Succeeded", "{done}");
    expect_eca_oauth_disabled(&sim, INTEG).await;
    // Switching OAuth off blocks grants; sessions already issued live on until revoked.
    assert_eq!(sim.limits(&live).await.0, 200);
    let done = deploy(&sim, &admin, default_options(), eca_oauth_zip(true)).await;
    assert_eq!(done["deployResult"]["status"], "Succeeded", "{done}");
    token_for(&sim, 1, ECA_KEY, INTEG).await;
    sim.shutdown().await;
}

// ---- control API and helpers ----

#[tokio::test]
async fn control_api_lists_sessions_with_state_and_adds_grants() {
    let (sim, admin) = start_as_admin("").await;
    let integ = token_for(&sim, 0, CA_KEY, INTEG).await;
    revoke(&sim, &integ).await;
    sim.set_clock_offset(10 * 3600);
    let (_, list) = control(&sim, Method::GET, "sessions", None).await;
    let states: Vec<(&str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["username"].as_str().unwrap(),
                s["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [("admin@acme.example", "expired"), (INTEG, "revoked")]
    );
    assert_eq!(list[1]["app"], "Billing_Sync");
    assert_eq!(list[1]["app_type"], "ConnectedApp");
    assert!(!list.to_string().contains(&integ) && !list.to_string().contains(&admin));
    sim.set_clock_offset(0);

    let body = json!({"username": INTEG, "app": "Billing_ECA"});
    let (s, grant) = control(&sim, Method::POST, "grants", Some(body)).await;
    assert_eq!(s, 200);
    assert_eq!(grant["app_type"], "ExternalClientApplication");
    assert!(grant["delete_token"].is_string() && grant["refresh_token"].is_string());
    let (_, grants) = control(&sim, Method::GET, "grants", None).await;
    assert_eq!(grants.as_array().unwrap().len(), 2);
    for bad in [
        json!({"username": "ghost@x", "app": "Billing_ECA"}),
        json!({"username": INTEG, "app": "Nope"}),
        json!({}),
    ] {
        let (s, _) = control(&sim, Method::POST, "grants", Some(bad.clone())).await;
        assert_eq!(s, 400, "{bad}");
    }
    assert!(sim.add_grant(INTEG, "Nope").is_err());
    sim.shutdown().await;
}

#[tokio::test]
async fn helpers_call_userinfo_limits_and_the_token_endpoint() {
    let sim = start("").await;
    let (s, body) = sim.jwt_grant(&assertion(0, CA_KEY, INTEG, LOGIN)).await;
    assert_eq!(s, 200, "{body}");
    let token = serde_json::from_str::<Value>(&body).unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, info) = sim.userinfo(&token).await;
    assert_eq!(s, 200);
    assert!(info.contains(INTEG));
    assert_eq!(sim.limits(&token).await.0, 200);
    assert_eq!(
        sim.get_with_token(&format!("{V}/query?q=SELECT+Id+FROM+User"), &token)
            .await
            .0,
        200
    );
    let (s, body) = sim.jwt_grant("not-a-jwt").await;
    assert_eq!(s, 400, "{body}");
    sim.shutdown().await;
}

#[test]
fn seeds_set_eca_ids_and_approval_counts() {
    let base = std::path::Path::new(".");
    let text = seed_toml("").replace(
        "name = \"Billing_ECA\"",
        "name = \"Billing_ECA\"\nid = \"0xI5g00000ECA0001A\"",
    );
    let text = text.replace("app = \"Self_App\"", "app = \"Self_App\"\ncount = 3");
    let seed = Seed::from_toml_str(&text, base).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let sim = OrgSim::start(seed).await.unwrap();
        assert_eq!(
            sim.app_id("Billing_ECA").as_deref(),
            Some("0xI5g00000ECA0001A")
        );
        assert_eq!(sim.grants().len(), 3);
        assert_eq!(sim.app_id("Nope"), None);
        sim.shutdown().await;
    });
    let bad = seed_toml("").replace(
        "name = \"Billing_ECA\"",
        "name = \"Billing_ECA\"\nid = \"001short\"",
    );
    assert!(matches!(
        Seed::from_toml_str(&bad, base),
        Err(orgsim::SeedError::Invalid(_))
    ));
}
