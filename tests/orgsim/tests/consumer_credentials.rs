//! An External Client App's consumer key and secret over Connect REST (v65.0+): list and read,
//! stage → rotate → the old pair keeps logging in (client credentials) → delete → refused; the
//! 30-day expiry on the simulated clock; the gates (version, org setting, permissions,
//! packaged apps) in order; audit rows, API counting and the control channel.

mod common;

use common::*;
use orgsim::OrgSim;
use reqwest::Method;
use serde_json::{Value, json};

const DAY: i64 = 86_400;

/// The `key`/`secret` of the single staged credential of a staged-credentials answer.
fn staged_pair(body: &Value) -> (String, String, String, String) {
    let s = &body["stagedCredentials"][0];
    let text = |f: &str| s[f].as_str().unwrap_or_default().to_string();
    (text("id"), text("key"), text("secret"), text("state"))
}

/// Logs in with client credentials (body) and asserts success; returns the access token.
async fn cc_ok(sim: &OrgSim, key: &str, secret: &str, case: &str) -> String {
    let (status, body) = cc_login(sim, key, secret, "body", None).await;
    assert_eq!(status, 200, "{case}: {body}");
    body["access_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn stage_rotate_overlap_delete_lifecycle() {
    let (sim, admin) = start_credentials("").await;
    let consumer = sim.eca_consumer("Cred_ECA").unwrap();
    assert_eq!(
        (consumer.key.as_str(), consumer.secret.as_str()),
        (CRED_KEY, CRED_SECRET)
    );
    assert!(consumer.app_id.starts_with("0xI") && consumer.app_id.len() == 18);

    // The usage list names the app; its consumers list the primary key.
    let (status, usage) = connect(
        &sim,
        Method::GET,
        &format!("{V}/apps/oauth/usage?page=0&pageSize=100"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 200, "{usage}");
    let listed = usage["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["developerName"] == "Cred_ECA")
        .cloned()
        .unwrap();
    assert_eq!(listed["identifier"], consumer.app_id.as_str());
    assert!(listed["identifier"].as_str().unwrap().starts_with("0x"));

    let list_path = format!("{V}/apps/oauth/credentials/{}", consumer.app_id);
    let (status, list) = connect(&sim, Method::GET, &list_path, &admin, None).await;
    assert_eq!(status, 200, "{list}");
    let path = consumer_path(&sim, "Cred_ECA");
    assert_eq!(
        list["consumers"],
        json!([{"id": consumer.consumer_id, "key": CRED_KEY, "name": "Cred_ECA", "url": path, "stagedCredentialsUrl": format!("{path}/staged")}])
    );
    assert_eq!(list["nextPageUrl"], Value::Null);
    assert_eq!(list["currentPageUrl"], list_path);

    // Key by default, the secret only when asked.
    for (part, expected) in [
        ("", json!({"key": CRED_KEY})),
        ("?part=key", json!({"key": CRED_KEY})),
        ("?part=secret", json!({"secret": CRED_SECRET})),
        (
            "?part=keyandsecret",
            json!({"key": CRED_KEY, "secret": CRED_SECRET}),
        ),
    ] {
        let (status, body) =
            connect(&sim, Method::GET, &format!("{path}{part}"), &admin, None).await;
        assert_eq!((status, body), (200, expected), "part {part:?}");
    }

    // Nothing staged yet.
    let staged = format!("{path}/staged");
    let (status, body) = connect(&sim, Method::GET, &staged, &admin, None).await;
    assert_eq!((status, error_code(&body)), (404, "NOT_FOUND"));

    // Stage (empty body): 201 with the new pair, Active, 30 days.
    let r = request(&sim, Method::POST, &staged)
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    let (staged_id, new_key, new_secret, state) = staged_pair(&body);
    assert_eq!(state, "Active");
    assert!(
        new_key.starts_with("3MVG9") && new_key.len() == 85,
        "{new_key}"
    );
    assert!(
        new_secret.len() == 64 && new_secret.chars().all(|c| c.is_ascii_hexdigit()),
        "{new_secret}"
    );
    let item = &body["stagedCredentials"][0];
    assert_eq!(item["createdBy"], "0055g00000ADMINAAA");
    assert_eq!(item["url"], format!("{staged}/{staged_id}"));
    assert_eq!(item["stagedCredentialsUrl"], staged);
    assert_eq!(body["url"], staged);
    let created = chrono::DateTime::parse_from_str(
        item["createdDate"].as_str().unwrap(),
        "%Y-%m-%dT%H:%M:%S%.3f%z",
    )
    .unwrap();
    let expires = chrono::DateTime::parse_from_str(
        item["expirationDate"].as_str().unwrap(),
        "%Y-%m-%dT%H:%M:%S%.3f%z",
    )
    .unwrap();
    assert_eq!((expires - created).num_seconds(), 30 * DAY);
    assert!(item["createdDate"].as_str().unwrap().ends_with(".000+0000"));

    // A staged Active pair does not log in; the primary still does.
    expect_cc_error(
        "staged, not rotated",
        &sim,
        &new_key,
        &new_secret,
        "invalid_client_id",
        "client identifier invalid",
    )
    .await;
    cc_ok(&sim, CRED_KEY, CRED_SECRET, "primary before rotate").await;

    // A second stage is refused (JSON body `{}` this time), nothing changes.
    let (status, body) = connect(&sim, Method::POST, &staged, &admin, Some(json!({}))).await;
    assert_eq!(
        (status, body),
        (
            400,
            json!([{"errorCode": "INVALID_INPUT", "message": "A staged credential already exists for this consumer. Rotate or delete it before staging new credentials."}])
        )
    );
    assert_eq!(
        sim.eca_consumer("Cred_ECA").unwrap().staged.unwrap().id,
        staged_id
    );

    // GET shows it with its secret.
    let (status, body) = connect(&sim, Method::GET, &staged, &admin, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        staged_pair(&body),
        (
            staged_id.clone(),
            new_key.clone(),
            new_secret.clone(),
            "Active".into()
        )
    );

    // Other commands are refused.
    let one = format!("{staged}/{staged_id}");
    let (status, body) = connect(
        &sim,
        Method::PATCH,
        &one,
        &admin,
        Some(json!({"command": "promote"})),
    )
    .await;
    assert_eq!((status, error_code(&body)), (400, "INVALID_INPUT"));

    // Rotate: the new pair is primary, the old one is Rotated under a new id.
    let (status, body) = connect(
        &sim,
        Method::PATCH,
        &one,
        &admin,
        Some(json!({"command": "rotate"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (rotated_id, old_key, old_secret, state) = staged_pair(&body);
    assert_eq!(
        (old_key.as_str(), old_secret.as_str(), state.as_str()),
        (CRED_KEY, CRED_SECRET, "Rotated")
    );
    assert_ne!(rotated_id, staged_id);
    let now = sim.eca_consumer("Cred_ECA").unwrap();
    assert_eq!(
        (now.key.as_str(), now.secret.as_str()),
        (new_key.as_str(), new_secret.as_str())
    );
    let (_, body) = connect(&sim, Method::GET, &path, &admin, None).await;
    assert_eq!(body, json!({"key": new_key}));

    // Metadata reads show the primary key, never a secret.
    let (_, xml) = soap(&sim, &admin, "<met:readMetadata><met:type>ExtlClntAppGlobalOauthSettings</met:type><met:fullNames>Cred_ECA_glbloauth</met:fullNames></met:readMetadata>").await;
    assert!(
        xml.contains(&format!("<consumerKey>{new_key}</consumerKey>")),
        "{xml}"
    );
    assert!(
        !xml.contains(CRED_KEY) && !xml.contains("consumerSecret") && !xml.contains(&new_secret)
    );

    // Rotating the old id again, or the Rotated one: refused.
    let (status, _) = connect(
        &sim,
        Method::PATCH,
        &one,
        &admin,
        Some(json!({"command": "rotate"})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = connect(
        &sim,
        Method::PATCH,
        &format!("{staged}/{rotated_id}"),
        &admin,
        Some(json!({"command": "rotate"})),
    )
    .await;
    assert_eq!((status, error_code(&body)), (400, "INVALID_INPUT"));
    assert!(
        body[0]["message"].as_str().unwrap().contains("Rotated"),
        "{body}"
    );

    // Both pairs log in during the overlap; the old secret does not go with the new key.
    cc_ok(&sim, &new_key, &new_secret, "new pair").await;
    cc_ok(&sim, CRED_KEY, CRED_SECRET, "rotated pair during overlap").await;
    expect_cc_error(
        "crossed pair",
        &sim,
        &new_key,
        CRED_SECRET,
        "invalid_client",
        "invalid client credentials",
    )
    .await;

    // DELETE of an unknown id: 404; of the Rotated one: 204, then the old pair is refused.
    let (status, _) = connect(
        &sim,
        Method::DELETE,
        &format!("{staged}/0Hs5g0000000999AAA"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = connect(
        &sim,
        Method::DELETE,
        &format!("{staged}/{rotated_id}"),
        &admin,
        None,
    )
    .await;
    assert_eq!((status, body), (204, Value::Null));
    expect_cc_error(
        "old pair after delete",
        &sim,
        CRED_KEY,
        CRED_SECRET,
        "invalid_client_id",
        "client identifier invalid",
    )
    .await;
    expect_cc_error(
        "new key, old secret",
        &sim,
        &new_key,
        CRED_SECRET,
        "invalid_client",
        "invalid client credentials",
    )
    .await;
    cc_ok(&sim, &new_key, &new_secret, "new pair after delete").await;
    let (status, _) = connect(&sim, Method::GET, &staged, &admin, None).await;
    assert_eq!(status, 404, "nothing staged after the delete");
    assert!(sim.eca_consumer("Cred_ECA").unwrap().staged.is_none());

    // The audit trail has one row per change, by the admin.
    let (status, body) = soql(&sim, Some(&admin), "SELECT Action, Section, Display, CreatedById FROM SetupAuditTrail WHERE Action LIKE '%EcaCredential' ORDER BY CreatedDate").await;
    assert_eq!(status, 200, "{body}");
    let rows: Vec<(String, String, String)> = body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["CreatedById"], "0055g00000ADMINAAA");
            (
                r["Action"].as_str().unwrap().into(),
                r["Section"].as_str().unwrap().into(),
                r["Display"].as_str().unwrap().into(),
            )
        })
        .collect();
    let actions: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        actions,
        [
            "stageEcaCredential",
            "rotateEcaCredential",
            "deleteEcaCredential"
        ]
    );
    for (_, section, display) in &rows {
        assert_eq!(section, "External Client Apps");
        assert!(display.contains("Cred ECA"), "{display}");
    }

    // Every Connect call is in the call log and counted as an API request.
    let calls = sim.calls();
    for (method, status) in [
        ("POST", 201),
        ("POST", 400),
        ("PATCH", 200),
        ("DELETE", 204),
        ("DELETE", 404),
    ] {
        assert!(
            calls.iter().any(|c| c.method == method
                && c.status == status
                && c.path.starts_with(&format!("{V}/apps/oauth/credentials/"))),
            "{method} {status} logged"
        );
    }
    let api = calls
        .iter()
        .filter(|c| c.path.starts_with("/services/data/v") || c.path.starts_with("/services/Soap/"))
        .count();
    let (_, limits) = get_json(&sim, LIMITS_PATH, Some(&admin)).await;
    assert_eq!(
        limits["DailyApiRequests"]["Remaining"],
        15000 - api as u64 - 1
    );
    sim.shutdown().await;
}

const LIMITS_PATH: &str = "/services/data/v67.0/limits/";

#[tokio::test]
async fn staged_and_rotated_credentials_expire_after_30_days() {
    let (sim, admin) = start_credentials("").await;
    let staged = format!("{}/staged", consumer_path(&sim, "Cred_ECA"));
    let (_, body) = connect(&sim, Method::POST, &staged, &admin, None).await;
    let (first_id, ..) = staged_pair(&body);

    // An hour before the 30 days are over it is Active; an hour after, Expired and not
    // rotatable (the margins keep the test independent of how long it runs).
    sim.set_clock_offset(30 * DAY - 3600);
    let admin = admin_token_at(&sim, 30 * DAY - 3600).await;
    let (_, body) = connect(&sim, Method::GET, &staged, &admin, None).await;
    assert_eq!(staged_pair(&body).3, "Active");
    sim.set_clock_offset(30 * DAY + 3600);
    let admin = admin_token_at(&sim, 30 * DAY + 3600).await;
    let (status, body) = connect(&sim, Method::GET, &staged, &admin, None).await;
    assert_eq!(
        (status, staged_pair(&body).0, staged_pair(&body).3),
        (200, first_id.clone(), "Expired".into())
    );
    assert_eq!(
        sim.eca_consumer("Cred_ECA").unwrap().staged.unwrap().state,
        "Expired"
    );
    let (status, body) = connect(
        &sim,
        Method::PATCH,
        &format!("{staged}/{first_id}"),
        &admin,
        Some(json!({"command": "rotate"})),
    )
    .await;
    assert_eq!((status, error_code(&body)), (400, "INVALID_INPUT"));
    assert!(body[0]["message"].as_str().unwrap().contains("Expired"));
    assert_eq!(
        sim.eca_consumer("Cred_ECA").unwrap().key,
        CRED_KEY,
        "nothing rotated"
    );
    let expired = sim.eca_consumer("Cred_ECA").unwrap().staged.unwrap();
    expect_cc_error(
        "expired staged pair",
        &sim,
        &expired.key,
        &expired.secret,
        "invalid_client_id",
        "client identifier invalid",
    )
    .await;

    // An expired staged credential does not block staging: it is replaced.
    let (status, body) = connect(&sim, Method::POST, &staged, &admin, None).await;
    assert_eq!(status, 201, "{body}");
    let (second_id, new_key, new_secret, _) = staged_pair(&body);
    assert_ne!(second_id, first_id);
    let (status, body) = connect(
        &sim,
        Method::PATCH,
        &format!("{staged}/{second_id}"),
        &admin,
        Some(json!({"command": "rotate"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // The rotated-out pair (rotated at day 30 + 1 h) works for 30 days, then stops; the new
    // one goes on.
    sim.set_clock_offset(60 * DAY);
    cc_ok(
        &sim,
        CRED_KEY,
        CRED_SECRET,
        "old pair an hour before its expiry",
    )
    .await;
    sim.set_clock_offset(60 * DAY + 7200);
    expect_cc_error(
        "old pair after 30 days",
        &sim,
        CRED_KEY,
        CRED_SECRET,
        "invalid_client_id",
        "client identifier invalid",
    )
    .await;
    cc_ok(&sim, &new_key, &new_secret, "new pair after 30 days").await;
    let admin = admin_token_at(&sim, 60 * DAY + 7200).await;
    let (_, body) = connect(&sim, Method::GET, &staged, &admin, None).await;
    assert_eq!(staged_pair(&body).3, "Expired");
    sim.shutdown().await;
}

#[tokio::test]
async fn gates_answer_in_order_and_change_nothing() {
    let (sim, admin) = start_credentials("eca_secrets_over_rest = false").await;
    let path = consumer_path(&sim, "Cred_ECA");
    let staged = format!("{path}/staged");

    // Below v65.0 the resources do not exist, whatever else is wrong.
    let old = staged.replace("/v67.0/", "/v64.0/");
    for token in [admin.as_str(), "bogus"] {
        let (status, body) = connect(&sim, Method::POST, &old, token, None).await;
        assert_eq!(
            (status, body),
            (
                404,
                json!([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}])
            )
        );
    }
    let (status, _) = connect(
        &sim,
        Method::GET,
        &path.replace("/v67.0/", "/v65.0/"),
        "bogus",
        None,
    )
    .await;
    assert_eq!(status, 401, "v65.0 has them: the session is checked");

    // The org setting is off (the default): 403 even for a user lacking permissions too.
    sim.set_user_permission(ADMIN, "ViewClientSecret", false)
        .unwrap();
    for (method, p) in [(Method::GET, path.clone()), (Method::POST, staged.clone())] {
        let (status, body) = connect(&sim, method, &p, &admin, None).await;
        assert_eq!(status, 403);
        assert_eq!(error_code(&body), "FUNCTIONALITY_NOT_ENABLED");
        assert!(
            body[0]["message"]
                .as_str()
                .unwrap()
                .contains("not currently enabled"),
            "{body}"
        );
    }
    assert!(sim.eca_consumer("Cred_ECA").unwrap().staged.is_none());

    // Setting on, View Client Secret missing: the key is readable, secrets and changes are not.
    sim.set_eca_secrets_over_rest(true);
    let (status, _) = connect(&sim, Method::GET, &path, &admin, None).await;
    assert_eq!(status, 200);
    for (method, p) in [
        (Method::GET, format!("{path}?part=secret")),
        (Method::GET, format!("{path}?part=keyandsecret")),
        (Method::GET, staged.clone()),
        (Method::POST, staged.clone()),
        (Method::PATCH, format!("{staged}/0Hs5g0000000001AAA")),
        (Method::DELETE, format!("{staged}/0Hs5g0000000001AAA")),
    ] {
        let (status, body) = connect(
            &sim,
            method.clone(),
            &p,
            &admin,
            Some(json!({"command": "rotate"})),
        )
        .await;
        assert_eq!(
            (status, error_code(&body)),
            (403, "INSUFFICIENT_ACCESS"),
            "{method} {p}"
        );
        assert!(
            body[0]["message"]
                .as_str()
                .unwrap()
                .contains("ViewClientSecret"),
            "{body}"
        );
    }
    assert!(sim.eca_consumer("Cred_ECA").unwrap().staged.is_none());

    // Without External Client App Developer nothing is served.
    sim.set_user_permission(ADMIN, "ViewClientSecret", true)
        .unwrap();
    sim.set_user_permission(ADMIN, "ExternalClientAppDeveloper", false)
        .unwrap();
    let (status, body) = connect(&sim, Method::GET, &path, &admin, None).await;
    assert_eq!((status, error_code(&body)), (403, "INSUFFICIENT_ACCESS"));
    assert!(
        body[0]["message"]
            .as_str()
            .unwrap()
            .contains("ExternalClientAppDeveloper"),
        "{body}"
    );
    sim.set_user_permission(ADMIN, "ExternalClientAppDeveloper", true)
        .unwrap();

    // Packaged ECAs: 400; unknown app or consumer: 404; a Connected App's id is no ECA.
    let packaged = consumer_path(&sim, "Packaged_ECA");
    let (status, body) = connect(
        &sim,
        Method::POST,
        &format!("{packaged}/staged"),
        &admin,
        None,
    )
    .await;
    assert_eq!((status, error_code(&body)), (400, "INVALID_INPUT"));
    assert!(
        body[0]["message"]
            .as_str()
            .unwrap()
            .contains("only of local External Client Apps")
    );
    assert!(sim.eca_consumer("Packaged_ECA").unwrap().staged.is_none());
    let app_id = sim.app_id("Cred_ECA").unwrap();
    let ca_id = sim.app_id("CC_App").unwrap();
    for p in [
        format!("{V}/apps/oauth/credentials/0xI5g0000000999AAA"),
        format!("{V}/apps/oauth/credentials/{ca_id}"),
        format!("{V}/apps/oauth/credentials/{app_id}/0H45g0000000999AAA"),
        format!("{V}/apps/oauth/credentials/{app_id}/0H45g0000000999AAA/staged"),
    ] {
        let (status, body) = connect(&sim, Method::GET, &p, &admin, None).await;
        assert_eq!((status, error_code(&body)), (404, "NOT_FOUND"), "{p}");
    }
    let (status, body) = connect(
        &sim,
        Method::GET,
        &format!("{path}?part=everything"),
        &admin,
        None,
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (400, "INVALID_PARAMETER_VALUE")
    );

    // With every gate open it works.
    let (status, _) = connect(&sim, Method::POST, &staged, &admin, None).await;
    assert_eq!(status, 201);
    sim.shutdown().await;
}

#[tokio::test]
async fn control_channel_reads_consumers_and_changes_settings_and_permissions() {
    let (sim, admin) = start_credentials("eca_secrets_over_rest = false").await;
    let (status, body) = control(&sim, Method::GET, "apps/Cred_ECA/consumer", None).await;
    assert_eq!(status, 200);
    let c = sim.eca_consumer("Cred_ECA").unwrap();
    assert_eq!(body, json!(c));
    assert_eq!(
        (
            body["key"].as_str(),
            body["secret"].as_str(),
            &body["staged"]
        ),
        (Some(CRED_KEY), Some(CRED_SECRET), &Value::Null)
    );
    let (status, _) = control(&sim, Method::GET, "apps/Nope/consumer", None).await;
    assert_eq!(status, 404);

    let (status, body) = control(
        &sim,
        Method::POST,
        "settings",
        Some(json!({"eca_secrets_over_rest": true})),
    )
    .await;
    assert_eq!((status, body), (200, json!({"ok": true})));
    let path = consumer_path(&sim, "Cred_ECA");
    let (status, _) = connect(&sim, Method::POST, &format!("{path}/staged"), &admin, None).await;
    assert_eq!(status, 201);
    let (_, body) = control(&sim, Method::GET, "apps/Cred_ECA/consumer", None).await;
    let staged = &body["staged"];
    assert_eq!(staged["state"], "Active");
    assert_eq!(
        staged["expires"].as_i64().unwrap() - staged["created"].as_i64().unwrap(),
        30 * DAY
    );
    assert_eq!(staged["created_by"], "0055g00000ADMINAAA");

    for bad in [
        json!({"no_such_setting": 1}),
        json!({"eca_secrets_over_rest": "yes"}),
        json!([1]),
    ] {
        let (status, body) = control(&sim, Method::POST, "settings", Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, _) = control(
        &sim,
        Method::POST,
        "users/admin@acme.example/permissions",
        Some(json!({"permission": "ViewClientSecret", "granted": false})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = connect(&sim, Method::GET, &format!("{path}/staged"), &admin, None).await;
    assert_eq!((status, error_code(&body)), (403, "INSUFFICIENT_ACCESS"));
    let (status, _) = control(
        &sim,
        Method::POST,
        "users/ghost@acme.example/permissions",
        Some(json!({"permission": "ViewClientSecret", "granted": true})),
    )
    .await;
    assert_eq!(status, 400);
    sim.shutdown().await;
}

#[tokio::test]
async fn seed_consumer_fields_are_used_checked_and_generated() {
    let (sim, _) = start_credentials("").await;
    // Generated when the seed gives none: a 3MVG9… key of 85 characters, a 64-hex secret.
    let other = sim.eca_consumer("NoUser_ECA").unwrap();
    assert!(other.key.starts_with("3MVG9") && other.key.len() == 85);
    assert!(other.secret.len() == 64 && other.secret.chars().all(|c| c.is_ascii_hexdigit()));
    // A Connected App's seed secret is its secret; Connected Apps have no staged API.
    assert!(sim.eca_consumer("CC_App").is_none());
    cc_ok(&sim, CC_CA_KEY, CC_CA_SECRET, "CA seed secret").await;
    sim.shutdown().await;

    // The seed field and the XML must agree.
    let text = credentials_seed_toml("").replace(
        "consumer_secret = \"CCCASECRET000005\"",
        "consumer_key = \"3MVG9different000000\"",
    );
    let err = orgsim::Seed::from_toml_str(&text, std::path::Path::new(".")).unwrap_err();
    assert!(err.to_string().contains("consumerKey differs"), "{err}");
}
