//! The OAuth 2.0 client credentials grant at `/services/oauth2/token`: the pair in the body,
//! `Authorization: Basic` or the query string; every refusal in its place in the check order
//! (host → key → secret → flow enabled → run-as user → ECA OAuth plugin); the answer's shape; the
//! session, `LoginHistory` rows and the login rate limit.

mod common;

use base64::Engine;
use common::*;
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn pair_in_body_basic_or_query_logs_the_run_as_user_in() {
    let (sim, _) = start_credentials("").await;
    let run_as_id = sim
        .sessions()
        .iter()
        .find(|s| s.username == RUN_AS)
        .map(|s| s.user_id.clone());
    assert!(run_as_id.is_none(), "no session before the first login");
    let mut tokens = Vec::new();
    for how in ["body", "basic", "query"] {
        let (status, body) = cc_login(&sim, CRED_KEY, CRED_SECRET, how, None).await;
        assert_eq!(status, 200, "{how}: {body}");
        let keys: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "access_token",
                "id",
                "instance_url",
                "issued_at",
                "scope",
                "signature",
                "token_type"
            ],
            "no refresh_token, no expires_in"
        );
        let token = body["access_token"].as_str().unwrap();
        assert!(token.starts_with("00D5g000000ACME!"), "{token}");
        // Full and RefreshToken are dropped; Api and Basic (id) stay.
        assert_eq!(body["scope"], "api id");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["instance_url"], sim.base_url());
        let id = body["id"].as_str().unwrap();
        assert!(
            id.starts_with(&format!("{}/id/{ORG_ID}/005", sim.base_url())),
            "{id}"
        );
        assert!(body["issued_at"].as_str().unwrap().parse::<i64>().unwrap() > 1_700_000_000_000);
        let signature = base64::engine::general_purpose::STANDARD
            .decode(body["signature"].as_str().unwrap())
            .unwrap();
        assert_eq!(signature.len(), 32, "an HMAC-SHA256");
        tokens.push(token.to_string());
        // The token is a session of the run-as user.
        let (status, info) = get_json(&sim, "/services/oauth2/userinfo", Some(token)).await;
        assert_eq!(
            (status, info["preferred_username"].as_str()),
            (200, Some(RUN_AS))
        );
    }
    // One session per (user, app): the same token each time.
    assert!(tokens.windows(2).all(|w| w[0] == w[1]), "{tokens:?}");
    let live = sim.live_sessions(RUN_AS);
    assert_eq!(live.len(), 1);
    assert_eq!(
        (live[0].app.as_str(), live[0].app_type.as_str()),
        ("Cred_ECA", "ExternalClientApplication")
    );

    // A Connected App with the flow on, its scopes without `web`.
    let (status, body) = cc_login(&sim, CC_CA_KEY, CC_CA_SECRET, "basic", None).await;
    assert_eq!(
        (status, body["scope"].as_str()),
        (200, Some("api")),
        "{body}"
    );
    sim.shutdown().await;
}

/// (case, key, secret, Host header, error, error_description); an empty error means success.
type Case<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, &'a str, &'a str);

#[tokio::test]
async fn refusals_come_in_the_documented_order() {
    let (sim, _) = start_credentials("").await;
    let d = defaults();
    let cases: [Case<'_>; 9] = [
        // The generic login hosts refuse the flow before anything else is looked at.
        (
            "login host",
            "nope",
            "nope",
            Some("login.salesforce.com"),
            "invalid_grant",
            "request not supported on this domain",
        ),
        (
            "test host",
            CRED_KEY,
            CRED_SECRET,
            Some("test.salesforce.com:443"),
            "invalid_grant",
            "request not supported on this domain",
        ),
        // An unknown key wins over a wrong secret.
        (
            "unknown key",
            "3MVG9nobody",
            "wrong",
            None,
            "invalid_client_id",
            "client identifier invalid",
        ),
        (
            "missing key",
            "",
            CRED_SECRET,
            None,
            "invalid_client_id",
            "client identifier invalid",
        ),
        // A wrong secret wins over the flow being off (Billing_ECA and Billing_Sync have it off).
        (
            "wrong secret",
            ECA_KEY,
            "wrong",
            None,
            "invalid_client",
            "invalid client credentials",
        ),
        (
            "empty secret",
            CRED_KEY,
            "",
            None,
            "invalid_client",
            "invalid client credentials",
        ),
        (
            "ECA flow off",
            ECA_KEY,
            ECA_SECRET,
            None,
            "invalid_grant",
            &d.client_credentials_disabled_description,
        ),
        (
            "CA flow off",
            CA_KEY,
            "CASECRET0001",
            None,
            "invalid_grant",
            &d.client_credentials_disabled_description,
        ),
        // A My Domain host is served.
        (
            "My Domain host",
            CRED_KEY,
            CRED_SECRET,
            Some("acme.my.salesforce.com"),
            "",
            "",
        ),
    ];
    for (case, key, secret, host, error, description) in cases {
        let (status, body) = cc_login(&sim, key, secret, "body", host).await;
        if error.is_empty() {
            assert_eq!(status, 200, "{case}: My Domain is served: {body}");
            continue;
        }
        assert_eq!(
            (status, body),
            (
                400,
                json!({"error": error, "error_description": description})
            ),
            "{case}"
        );
    }
    assert_eq!(
        d.client_credentials_disabled_description,
        "client credentials flow is not enabled for this app"
    );

    // Off_ECA: everything right but its OAuth plugin, which answers as for the JWT flow…
    let off = sim.eca_consumer("Off_ECA").unwrap();
    expect_cc_error(
        "plugin off",
        &sim,
        &off.key,
        &off.secret,
        &d.oauth_disabled_error,
        &d.oauth_disabled_description,
    )
    .await;
    // …unless its run-as user is wrong too: that is checked first.
    sim.set_user_permission(RUN_AS, "ApiUserOnly", false)
        .unwrap();
    expect_cc_error(
        "plugin off, user without API Only",
        &sim,
        &off.key,
        &off.secret,
        "invalid_grant",
        "no client credentials user enabled",
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn run_as_user_must_exist_be_active_and_api_only() {
    let (sim, _) = start_credentials("").await;
    let refused = "no client credentials user enabled";
    for eca in ["NoUser_ECA", "Ghost_ECA", "Gone_ECA"] {
        let c = sim.eca_consumer(eca).unwrap();
        expect_cc_error(eca, &sim, &c.key, &c.secret, "invalid_grant", refused).await;
    }
    // gone@ is refused for being inactive, not only for lacking API Only.
    sim.set_user_permission("gone@acme.example", "ApiUserOnly", true)
        .unwrap();
    let gone = sim.eca_consumer("Gone_ECA").unwrap();
    expect_cc_error(
        "inactive",
        &sim,
        &gone.key,
        &gone.secret,
        "invalid_grant",
        refused,
    )
    .await;

    // API Only taken away and given back (also under the name `ApiOnly`).
    sim.set_user_permission(RUN_AS, "ApiUserOnly", false)
        .unwrap();
    expect_cc_error(
        "no API Only",
        &sim,
        CRED_KEY,
        CRED_SECRET,
        "invalid_grant",
        refused,
    )
    .await;
    expect_cc_error(
        "CA, no API Only",
        &sim,
        CC_CA_KEY,
        CC_CA_SECRET,
        "invalid_grant",
        refused,
    )
    .await;
    sim.set_user_permission(RUN_AS, "ApiOnly", true).unwrap();
    let (status, body) = cc_login(&sim, CRED_KEY, CRED_SECRET, "body", None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = sim.client_credentials_grant(CC_CA_KEY, CC_CA_SECRET).await;
    assert_eq!(status, 200, "{body}");
    sim.shutdown().await;
}

#[tokio::test]
async fn logins_are_in_login_history_and_count_toward_the_rate_limit() {
    let (sim, admin) = start_credentials("logins_per_user_per_hour = 3").await;
    let (status, _) = cc_login(&sim, CRED_KEY, CRED_SECRET, "body", None).await;
    assert_eq!(status, 200);
    expect_cc_error(
        "wrong secret",
        &sim,
        CRED_KEY,
        "wrong",
        "invalid_client",
        "invalid client credentials",
    )
    .await;
    let (status, _) = cc_login(&sim, CRED_KEY, CRED_SECRET, "basic", None).await;
    assert_eq!(status, 200);
    // The fourth request in the hour is over the limit.
    let d = defaults();
    expect_cc_error(
        "rate",
        &sim,
        CRED_KEY,
        CRED_SECRET,
        "rate_limit_exceeded",
        &d.rate_limit_description,
    )
    .await;
    // An unknown key names no user: no row, and no refusal by the limit.
    expect_cc_error(
        "unknown key",
        &sim,
        "3MVG9nobody",
        "x",
        "invalid_client_id",
        "client identifier invalid",
    )
    .await;

    let (_, user) = soql(
        &sim,
        Some(&admin),
        "SELECT Id FROM User WHERE Username = 'runas@acme.example'",
    )
    .await;
    let run_as_id = user["records"][0]["Id"].as_str().unwrap().to_string();
    let (status, body) = soql(
        &sim,
        Some(&admin),
        &format!("SELECT UserId, Application, Status, LoginType, LoginUrl FROM LoginHistory WHERE UserId = '{run_as_id}' ORDER BY LoginTime"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let rows: Vec<(String, String, String)> = body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["LoginType"], d.auth_session_login_type.as_str());
            assert!(
                r["LoginUrl"].as_str().unwrap().starts_with("127.0.0.1"),
                "{r}"
            );
            let text = |f: &str| r[f].as_str().unwrap_or_default().to_string();
            assert_eq!(text("UserId"), run_as_id);
            (text("Application"), text("Status"), text("UserId"))
        })
        .collect();
    let seen: Vec<(&str, &str)> = rows.iter().map(|r| (r.0.as_str(), r.1.as_str())).collect();
    assert_eq!(
        seen,
        [
            ("Cred ECA", "Success"),
            ("Cred ECA", "Failed: invalid client credentials"),
            ("Cred ECA", "Success"),
            ("Cred ECA", "Login rate exceeded"),
        ]
    );
    // The session's AuthSession record points at the first successful login.
    let (_, sessions) = soql(
        &sim,
        Some(&admin),
        "SELECT Id, LoginHistoryId FROM AuthSession WHERE Users.Username = 'runas@acme.example'",
    )
    .await;
    assert_eq!(sessions["totalSize"], 1, "{sessions}");
    let (_, first) = soql(
        &sim,
        Some(&admin),
        &format!(
            "SELECT Id FROM LoginHistory WHERE UserId = '{run_as_id}' ORDER BY LoginTime LIMIT 1"
        ),
    )
    .await;
    assert_eq!(
        sessions["records"][0]["LoginHistoryId"],
        first["records"][0]["Id"]
    );
    // Token calls are not API calls.
    let (_, limits) = get_json(&sim, "/services/data/v67.0/limits/", Some(&admin)).await;
    let api = sim
        .calls()
        .iter()
        .filter(|c| c.path.starts_with("/services/data/v"))
        .count() as u64;
    assert_eq!(limits["DailyApiRequests"]["Remaining"], json!(15000 - api));
    sim.shutdown().await;
}

#[tokio::test]
async fn consumer_keys_and_secrets_are_not_revocable_tokens_staged_ones_neither() {
    let (sim, admin) = start_credentials("").await;
    let staged = format!("{}/staged", consumer_path(&sim, "Cred_ECA"));
    let (status, body) = connect(&sim, Method::POST, &staged, &admin, None).await;
    assert_eq!(status, 201, "{body}");
    let key = body["stagedCredentials"][0]["key"]
        .as_str()
        .unwrap()
        .to_string();
    let r = request(&sim, Method::POST, "/services/oauth2/revoke")
        .form(&[("token", key.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unsupported_token_type");
    sim.shutdown().await;
}
