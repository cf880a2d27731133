//! Token endpoint: every §1.5 error row, check order, success shape, token reuse, exp skew,
//! authorization models, ECA rules, sessions and the propagation window.

mod common;

use common::*;
use orgsim::PropagationMode;
use serde_json::json;

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

#[tokio::test]
async fn success_body_has_exactly_five_keys_and_headers() {
    let sim = start("").await;
    let (status, body, headers) = grant(
        &sim,
        &assertion(&keys()[0].key_pem, CA_KEY, "integ@acme.example", LOGIN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let obj = body.as_object().unwrap();
    let mut names: Vec<_> = obj.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(
        names,
        ["access_token", "id", "instance_url", "scope", "token_type"]
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "api refresh_token");
    assert_eq!(body["instance_url"], sim.base_url());
    let id = body["id"].as_str().unwrap();
    assert!(
        id.starts_with(&format!("{}/id/{ORG_ID}/005", sim.base_url())),
        "{id}"
    );
    assert_eq!(id.rsplit('/').next().unwrap().len(), 18);
    let token = body["access_token"].as_str().unwrap();
    assert!(token.starts_with(&format!("{}!", &ORG_ID[..15])), "{token}");
    assert_eq!(
        headers["cache-control"],
        "no-cache,must-revalidate,max-age=0,no-store,private"
    );
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn repeated_grants_return_the_same_token_per_user_and_app() {
    let sim = start("").await;
    let k = &keys()[0].key_pem;
    let first = token_for(&sim, k, CA_KEY, "integ@acme.example").await;
    assert_eq!(
        first,
        token_for(&sim, k, CA_KEY, "integ@acme.example").await
    );
    assert_ne!(
        first,
        token_for(&sim, k, CA_KEY, "admin@acme.example").await
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn session_timeout_comes_from_app_then_profile_then_org_and_slides() {
    let sim = start("").await;
    let k = &keys()[0].key_pem;
    // Billing_Sync sets no sessionPolicy; the Billing Integration profile says 30 minutes.
    let t1 = token_for(&sim, k, CA_KEY, "integ@acme.example").await;
    sim.set_clock_offset(25 * 60);
    assert_eq!(
        t1,
        token_for(&sim, k, CA_KEY, "integ@acme.example").await,
        "still live at 25 min"
    );
    // The grant at +25 min renewed it, so +50 min is still inside 30 minutes of last use.
    sim.set_clock_offset(50 * 60);
    assert_eq!(t1, token_for(&sim, k, CA_KEY, "integ@acme.example").await);
    sim.set_clock_offset(50 * 60 + 31 * 60);
    assert_ne!(
        t1,
        token_for(&sim, k, CA_KEY, "integ@acme.example").await,
        "expired after 30 idle minutes"
    );
    // Admin's profile has no timeout: the org's 120 minutes apply.
    let admin = admin_token(&sim).await;
    sim.set_clock_offset(50 * 60 + 31 * 60 + 119 * 60);
    assert_eq!(admin, admin_token(&sim).await);
    sim.shutdown().await;
}

#[tokio::test]
async fn eca_session_timeout_comes_from_its_policy() {
    let sim = start("").await;
    let k = &keys()[1].key_pem;
    let t = token_for(&sim, k, ECA_KEY, "integ@acme.example").await;
    sim.set_clock_offset(16 * 60);
    assert_ne!(
        t,
        token_for(&sim, k, ECA_KEY, "integ@acme.example").await,
        "15-minute ECA policy"
    );
    sim.shutdown().await;
}

// ---- §1.5 rows, one assertion each ----

#[tokio::test]
async fn row_user_not_approved() {
    let sim = start("").await;
    // Self_App is self-authorized; integ never approved it.
    expect_error(
        &sim,
        &assertion(&keys()[0].key_pem, SELF_CA_KEY, "integ@acme.example", LOGIN),
        "invalid_grant",
        "user hasn't approved this consumer",
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn row_not_admin_approved() {
    let sim = start("").await;
    expect_error(
        &sim,
        &assertion(&keys()[0].key_pem, CA_KEY, "nobody@acme.example", LOGIN),
        "invalid_app_access",
        "user is not admin approved to access this app",
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn row_audience_invalid() {
    let sim = start("").await;
    expect_error(
        &sim,
        &assertion(
            &keys()[0].key_pem,
            CA_KEY,
            "integ@acme.example",
            "https://evil.example",
        ),
        "invalid_grant",
        "audience is invalid",
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn row_eca_sandbox_audience() {
    let sim = start("").await;
    expect_error(
        &sim,
        &assertion(&keys()[1].key_pem, ECA_KEY, "integ@acme.example", TEST_HOST),
        "app_not_found",
        "External client app is not installed in this org",
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn row_signature_with_wrong_key() {
    let sim = start("").await;
    expect_error(
        &sim,
        &assertion(&keys()[2].key_pem, CA_KEY, "integ@acme.example", LOGIN),
        "invalid_grant",
        "invalid assertion",
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn row_malformed_jwt() {
    let sim = start("").await;
    expect_error(&sim, "not.a.jwt", "invalid_grant", "invalid assertion").await;
    sim.shutdown().await;
}

#[tokio::test]
async fn row_unknown_issuer() {
    let sim = start("").await;
    expect_error(
        &sim,
        &assertion(
            &keys()[0].key_pem,
            "3MVG9unknown",
            "integ@acme.example",
            LOGIN,
        ),
        "invalid_client_id",
        "client identifier invalid",
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn row_expired() {
    let sim = start("").await;
    let a = sign(
        &keys()[0].key_pem,
        &json!({"iss": CA_KEY, "sub": "integ@acme.example", "aud": LOGIN, "exp": now() - 181}),
    );
    expect_error(&sim, &a, "invalid_grant", "expired authorization code").await;
    sim.shutdown().await;
}

#[tokio::test]
async fn row_inactive_user() {
    let sim = start("").await;
    expect_error(
        &sim,
        &assertion(&keys()[0].key_pem, CA_KEY, "gone@acme.example", LOGIN),
        "inactive_user",
        &defaults().inactive_user_description,
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn row_unsupported_grant_type() {
    let sim = start("").await;
    let params = [("grant_type", "password"), ("assertion", "x")];
    let r = client()
        .post(format!("{}/services/oauth2/token", sim.base_url()))
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": "unsupported_grant_type", "error_description": defaults().unsupported_grant_type_description})
    );
    sim.shutdown().await;
}

// rate_limit_exceeded and the HTML page are injected faults: see rest.rs.

// ---- check order ----

#[tokio::test]
async fn bad_audience_beats_unapproved_user_and_bad_signature() {
    let sim = start("").await;
    // Wrong key, wrong aud, unapproved user: aud is checked before signature and user.
    let a = assertion(
        &keys()[2].key_pem,
        SELF_CA_KEY,
        "integ@acme.example",
        "https://evil.example",
    );
    expect_error(&sim, &a, "invalid_grant", "audience is invalid").await;
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_issuer_beats_bad_audience() {
    let sim = start("").await;
    let a = assertion(
        &keys()[0].key_pem,
        "nope",
        "integ@acme.example",
        "https://evil.example",
    );
    expect_error(&sim, &a, "invalid_client_id", "client identifier invalid").await;
    sim.shutdown().await;
}

#[tokio::test]
async fn grant_type_beats_everything() {
    let sim = start("").await;
    let params = [
        ("grant_type", "authorization_code"),
        ("assertion", "garbage"),
    ];
    let r = client()
        .post(format!("{}/services/oauth2/token", sim.base_url()))
        .form(&params)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unsupported_grant_type");
    sim.shutdown().await;
}

#[tokio::test]
async fn signature_beats_expiry_and_expiry_beats_user() {
    let sim = start("").await;
    let stale =
        json!({"iss": CA_KEY, "sub": "gone@acme.example", "aud": LOGIN, "exp": now() - 3600});
    expect_error(
        &sim,
        &sign(&keys()[2].key_pem, &stale),
        "invalid_grant",
        "invalid assertion",
    )
    .await;
    expect_error(
        &sim,
        &sign(&keys()[0].key_pem, &stale),
        "invalid_grant",
        "expired authorization code",
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn inactive_user_beats_authorization() {
    let sim = start("").await;
    // gone@ is inactive and not approved for Self_App: inactive wins.
    expect_error(
        &sim,
        &assertion(&keys()[0].key_pem, SELF_CA_KEY, "gone@acme.example", LOGIN),
        "inactive_user",
        &defaults().inactive_user_description,
    )
    .await;
    sim.shutdown().await;
}

// ---- claims ----

#[tokio::test]
async fn exp_skew_boundary_and_string_exp() {
    let sim = start("").await;
    let k = &keys()[0].key_pem;
    let claims = |exp: serde_json::Value| json!({"iss": CA_KEY, "sub": "integ@acme.example", "aud": LOGIN, "exp": exp});
    let (s, b, _) = grant(&sim, &sign(k, &claims(json!(now() - 120)))).await;
    assert_eq!(s, 200, "inside the 180 s skew: {b}");
    let (s, b, _) = grant(&sim, &sign(k, &claims(json!((now() + 60).to_string())))).await;
    assert_eq!(s, 200, "string exp: {b}");
    // sfdx-core signs exp in milliseconds: far future is accepted (no max lifetime).
    let (s, b, _) = grant(&sim, &sign(k, &claims(json!(now() * 1000 + 300)))).await;
    assert_eq!(s, 200, "far-future exp: {b}");
    expect_error(
        &sim,
        &sign(
            k,
            &json!({"iss": CA_KEY, "sub": "integ@acme.example", "aud": LOGIN}),
        ),
        "invalid_grant",
        "invalid assertion",
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn strict_max_lifetime_and_custom_skew() {
    let sim = start("exp_skew_secs = 10\nmax_assertion_lifetime_secs = 300").await;
    let k = &keys()[0].key_pem;
    let claims =
        |exp: i64| json!({"iss": CA_KEY, "sub": "integ@acme.example", "aud": LOGIN, "exp": exp});
    expect_error(
        &sim,
        &sign(k, &claims(now() - 30)),
        "invalid_grant",
        "expired authorization code",
    )
    .await;
    expect_error(
        &sim,
        &sign(k, &claims(now() + 3600)),
        "invalid_grant",
        "invalid assertion",
    )
    .await;
    let (s, _, _) = grant(&sim, &sign(k, &claims(now() + 200))).await;
    assert_eq!(s, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn clock_offset_moves_the_exp_check() {
    let sim = start("").await;
    let a = sign(
        &keys()[0].key_pem,
        &json!({"iss": CA_KEY, "sub": "integ@acme.example", "aud": LOGIN, "exp": now() + 300}),
    );
    assert_eq!(grant(&sim, &a).await.0, 200);
    sim.set_clock_offset(300 + 181);
    expect_error(&sim, &a, "invalid_grant", "expired authorization code").await;
    sim.shutdown().await;
}

#[tokio::test]
async fn prn_wins_over_sub() {
    let sim = start("").await;
    let a = sign(
        &keys()[0].key_pem,
        &json!({"iss": CA_KEY, "sub": "integ@acme.example", "prn": "nobody@acme.example", "aud": LOGIN, "exp": now() + 60}),
    );
    expect_error(
        &sim,
        &a,
        "invalid_app_access",
        "user is not admin approved to access this app",
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_user_uses_configured_text() {
    let sim = start("").await;
    expect_error(
        &sim,
        &assertion(&keys()[0].key_pem, CA_KEY, "ghost@acme.example", LOGIN),
        "invalid_grant",
        "user hasn't approved this consumer",
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn audiences_my_domain_own_url_array_and_trailing_slash() {
    let sim = start("").await;
    let k = &keys()[0].key_pem;
    for aud in [
        json!("https://acme.my.salesforce.com/"),
        json!(sim.base_url()),
        json!(["https://x.example", TEST_HOST]),
    ] {
        let a = sign(
            k,
            &json!({"iss": CA_KEY, "sub": "integ@acme.example", "aud": aud, "exp": now() + 60}),
        );
        let (s, b, _) = grant(&sim, &a).await;
        assert_eq!(s, 200, "{aud}: {b}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn non_rs256_is_invalid_assertion() {
    let sim = start("").await;
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(keys()[0].key_pem.as_bytes()).unwrap();
    let claims =
        json!({"iss": CA_KEY, "sub": "integ@acme.example", "aud": LOGIN, "exp": now() + 60});
    let a = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS512),
        &claims,
        &key,
    )
    .unwrap();
    expect_error(&sim, &a, "invalid_grant", "invalid assertion").await;
    sim.shutdown().await;
}

#[tokio::test]
async fn query_string_parameters_are_tolerated() {
    let sim = start("").await;
    let a = assertion(&keys()[0].key_pem, CA_KEY, "integ@acme.example", LOGIN);
    let r = client()
        .post(format!(
            "{}/services/oauth2/token?grant_type={JWT_BEARER}&assertion={a}",
            sim.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    sim.shutdown().await;
}

// ---- authorization models ----

#[tokio::test]
async fn admin_approved_by_profile_or_permission_set() {
    let sim = start("").await;
    let k = &keys()[0].key_pem;
    token_for(&sim, k, CA_KEY, "integ@acme.example").await; // profile
    token_for(&sim, k, CA_KEY, "permset@acme.example").await; // permission set
    token_for(&sim, &keys()[1].key_pem, ECA_KEY, "permset@acme.example").await; // ECA permission set
    expect_error(
        &sim,
        &assertion(&keys()[1].key_pem, ECA_KEY, "nobody@acme.example", LOGIN),
        "invalid_app_access",
        "user is not admin approved to access this app",
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn self_authorized_needs_an_approval() {
    let sim = start("").await;
    token_for(&sim, &keys()[0].key_pem, SELF_CA_KEY, "nobody@acme.example").await;
    expect_error(
        &sim,
        &assertion(&keys()[0].key_pem, SELF_CA_KEY, "admin@acme.example", LOGIN),
        "invalid_grant",
        "user hasn't approved this consumer",
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn eca_works_with_login_audience() {
    let sim = start("").await;
    let (s, body, _) = grant(
        &sim,
        &assertion(&keys()[1].key_pem, ECA_KEY, "integ@acme.example", LOGIN),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["scope"], "api refresh_token");
    sim.shutdown().await;
}

#[tokio::test]
async fn eca_kill_switch_blocks_every_grant() {
    let sim = start("").await;
    let admin = admin_token(&sim).await;
    let plcy = r#"<ExtlClntAppConfigurablePolicies xmlns="http://soap.sforce.com/2006/04/metadata"><externalClientApplication>Billing_ECA</externalClientApplication><isEnabled>true</isEnabled><isOauthPluginEnabled>false</isOauthPluginEnabled></ExtlClntAppConfigurablePolicies>"#;
    let z = zip(&[
        (
            "package.xml",
            &package(&[("ExtlClntAppConfigurablePolicies", "Billing_ECA_plcy")]),
        ),
        ("extlClntAppPolicies/Billing_ECA_plcy.ecaPlcy", plcy),
    ]);
    let done = deploy(&sim, &admin, default_options(), z).await;
    assert_eq!(done["deployResult"]["status"], "Succeeded", "{done}");
    let d = defaults();
    for user in ["integ@acme.example", "admin@acme.example"] {
        expect_error(
            &sim,
            &assertion(&keys()[1].key_pem, ECA_KEY, user, LOGIN),
            &d.oauth_disabled_error,
            &d.oauth_disabled_description,
        )
        .await;
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn certificate_expiry_is_ignored_unless_enforced() {
    // An already-expired certificate for key 2.
    let kp = rcgen::KeyPair::from_pem(&keys()[2].key_pem).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["old".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let expired = params.self_signed(&kp).unwrap().pem();
    let seed_for = |enforce: bool| {
        let text = seed_toml(&format!("enforce_certificate_expiry = {enforce}")).replacen(
            &keys()[0].cert_pem,
            &expired,
            1,
        );
        orgsim::Seed::from_toml_str(&text, std::path::Path::new(".")).unwrap()
    };
    let a = assertion(&keys()[2].key_pem, CA_KEY, "integ@acme.example", LOGIN);
    let lax = orgsim::OrgSim::start(seed_for(false)).await.unwrap();
    assert_eq!(grant(&lax, &a).await.0, 200);
    lax.shutdown().await;
    let strict = orgsim::OrgSim::start(seed_for(true)).await.unwrap();
    expect_error(&strict, &a, "invalid_grant", "invalid assertion").await;
    strict.shutdown().await;
}

// ---- propagation ----

/// Deploys key 2's certificate onto Billing_Sync.
async fn rotate_billing_cert(sim: &orgsim::OrgSim) {
    let admin = admin_token(sim).await;
    let xml = with_cert(&billing_ca_xml(""), &keys()[2].cert_pem);
    let done = deploy(sim, &admin, default_options(), ca_zip(&xml)).await;
    assert_eq!(done["deployResult"]["status"], "Succeeded", "{done}");
    assert_eq!(
        sim.app_certificate_pem("Billing_Sync").unwrap().trim(),
        keys()[2].cert_pem.trim()
    );
}

async fn grant_status(sim: &orgsim::OrgSim, key: usize) -> u16 {
    // permset@ keeps each probe on a fresh session-less path that still needs a valid signature.
    grant(
        sim,
        &assertion(&keys()[key].key_pem, CA_KEY, "permset@acme.example", LOGIN),
    )
    .await
    .0
}

#[tokio::test]
async fn propagation_modes() {
    let sim = start("").await;
    rotate_billing_cert(&sim).await;
    // No window by default: only the new key works at once.
    assert_eq!(
        (grant_status(&sim, 0).await, grant_status(&sim, 2).await),
        (400, 200)
    );

    sim.set_propagation(600, PropagationMode::Old);
    assert_eq!(
        (grant_status(&sim, 0).await, grant_status(&sim, 2).await),
        (200, 400)
    );
    sim.set_propagation(600, PropagationMode::New);
    assert_eq!(
        (grant_status(&sim, 0).await, grant_status(&sim, 2).await),
        (400, 200)
    );
    sim.set_propagation(600, PropagationMode::Either);
    assert_eq!(
        (grant_status(&sim, 0).await, grant_status(&sim, 2).await),
        (200, 200)
    );
    // After the window only the new certificate verifies.
    sim.set_clock_offset(601);
    assert_eq!(
        (grant_status(&sim, 0).await, grant_status(&sim, 2).await),
        (400, 200)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn propagation_from_seed_settings() {
    let sim = start("propagation_secs = 120\npropagation_mode = \"old\"").await;
    rotate_billing_cert(&sim).await;
    assert_eq!(
        (grant_status(&sim, 0).await, grant_status(&sim, 2).await),
        (200, 400)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn live_sessions_survive_a_certificate_change() {
    let sim = start("").await;
    let before = token_for(&sim, &keys()[0].key_pem, CA_KEY, "integ@acme.example").await;
    rotate_billing_cert(&sim).await;
    let r = client()
        .get(format!("{}/services/oauth2/userinfo", sim.base_url()))
        .bearer_auth(&before)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // And a new grant with the new key hands back the same live session token.
    assert_eq!(
        before,
        token_for(&sim, &keys()[2].key_pem, CA_KEY, "integ@acme.example").await
    );
    sim.shutdown().await;
}
