//! Token endpoint: every §1.5 error row, check order, success shape, token reuse, exp skew,
//! authorization models, ECA rules, sessions and the propagation window.

mod common;

use common::*;
use orgsim::PropagationMode;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn success_body_has_exactly_five_keys_and_headers() {
    let sim = start("").await;
    let (status, body, headers) =
        grant(&sim, &assertion(0, CA_KEY, "integ@acme.example", LOGIN)).await;
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
    assert!(content_type(&headers).starts_with("application/json"));
    sim.shutdown().await;
}

#[tokio::test]
async fn repeated_grants_return_the_same_token_per_user_and_app() {
    let sim = start("").await;
    let first = token_for(&sim, 0, CA_KEY, "integ@acme.example").await;
    assert_eq!(
        first,
        token_for(&sim, 0, CA_KEY, "integ@acme.example").await
    );
    assert_ne!(
        first,
        token_for(&sim, 0, CA_KEY, "admin@acme.example").await
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn session_timeout_comes_from_app_then_profile_then_org_and_slides() {
    let sim = start("").await;
    // Billing_Sync sets no sessionPolicy; the Billing Integration profile says 30 minutes.
    let t1 = token_for(&sim, 0, CA_KEY, "integ@acme.example").await;
    sim.set_clock_offset(25 * 60);
    assert_eq!(
        t1,
        token_for(&sim, 0, CA_KEY, "integ@acme.example").await,
        "still live at 25 min"
    );
    // The grant at +25 min renewed it, so +50 min is still inside 30 minutes of last use.
    sim.set_clock_offset(50 * 60);
    assert_eq!(t1, token_for(&sim, 0, CA_KEY, "integ@acme.example").await);
    sim.set_clock_offset(50 * 60 + 31 * 60);
    assert_ne!(
        t1,
        token_for(&sim, 0, CA_KEY, "integ@acme.example").await,
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
    let t = token_for(&sim, 1, ECA_KEY, "integ@acme.example").await;
    sim.set_clock_offset(16 * 60);
    assert_ne!(
        t,
        token_for(&sim, 1, ECA_KEY, "integ@acme.example").await,
        "15-minute ECA policy"
    );
    sim.shutdown().await;
}

// ---- §1.5 rows ----

/// Asserts that each `(case, assertion, error, description)` is refused with that OAuth error.
/// One emulator serves every case: a refused grant changes no state.
async fn expect_refusals(cases: &[(&str, String, &str, &str)]) {
    let sim = start("").await;
    for (case, assertion, error, description) in cases {
        expect_error_for(case, &sim, assertion, error, description).await;
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn every_section_1_5_row() {
    let d = defaults();
    let expired =
        json!({"iss": CA_KEY, "sub": "integ@acme.example", "aud": LOGIN, "exp": now() - 181});
    expect_refusals(&[
        // Self_App is self-authorized; integ never approved it.
        (
            "user not approved",
            assertion(0, SELF_CA_KEY, "integ@acme.example", LOGIN),
            "invalid_grant",
            "user hasn't approved this consumer",
        ),
        (
            "not admin approved",
            assertion(0, CA_KEY, "nobody@acme.example", LOGIN),
            "invalid_app_access",
            "user is not admin approved to access this app",
        ),
        (
            "audience invalid",
            assertion(0, CA_KEY, "integ@acme.example", "https://evil.example"),
            "invalid_grant",
            "audience is invalid",
        ),
        (
            "ECA with the sandbox audience",
            assertion(1, ECA_KEY, "integ@acme.example", TEST_HOST),
            "app_not_found",
            "External client app is not installed in this org",
        ),
        (
            "signature with the wrong key",
            assertion(2, CA_KEY, "integ@acme.example", LOGIN),
            "invalid_grant",
            "invalid assertion",
        ),
        (
            "malformed JWT",
            "not.a.jwt".into(),
            "invalid_grant",
            "invalid assertion",
        ),
        (
            "unknown issuer",
            assertion(0, "3MVG9unknown", "integ@acme.example", LOGIN),
            "invalid_client_id",
            "client identifier invalid",
        ),
        (
            "expired",
            sign(0, &expired),
            "invalid_grant",
            "expired authorization code",
        ),
        (
            "inactive user",
            assertion(0, CA_KEY, "gone@acme.example", LOGIN),
            "inactive_user",
            &d.inactive_user_description,
        ),
        (
            "unknown user uses the configured text",
            assertion(0, CA_KEY, "ghost@acme.example", LOGIN),
            "invalid_grant",
            "user hasn't approved this consumer",
        ),
    ])
    .await;
}

#[tokio::test]
async fn row_unsupported_grant_type() {
    let sim = start("").await;
    let r = post_token(&sim, &[("grant_type", "password"), ("assertion", "x")]).await;
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
async fn checks_run_in_salesforce_order() {
    let d = defaults();
    let stale =
        json!({"iss": CA_KEY, "sub": "gone@acme.example", "aud": LOGIN, "exp": now() - 3600});
    expect_refusals(&[
        // Wrong key, wrong aud, unapproved user: aud is checked before signature and user.
        (
            "bad audience beats unapproved user and bad signature",
            assertion(2, SELF_CA_KEY, "integ@acme.example", "https://evil.example"),
            "invalid_grant",
            "audience is invalid",
        ),
        (
            "unknown issuer beats bad audience",
            assertion(0, "nope", "integ@acme.example", "https://evil.example"),
            "invalid_client_id",
            "client identifier invalid",
        ),
        (
            "signature beats expiry",
            sign(2, &stale),
            "invalid_grant",
            "invalid assertion",
        ),
        (
            "expiry beats inactive user",
            sign(0, &stale),
            "invalid_grant",
            "expired authorization code",
        ),
        // gone@ is inactive and not approved for Self_App: inactive wins.
        (
            "inactive user beats authorization",
            assertion(0, SELF_CA_KEY, "gone@acme.example", LOGIN),
            "inactive_user",
            &d.inactive_user_description,
        ),
    ])
    .await;
}

#[tokio::test]
async fn grant_type_beats_everything() {
    let sim = start("").await;
    let params = [
        ("grant_type", "authorization_code"),
        ("assertion", "garbage"),
    ];
    let body: serde_json::Value = post_token(&sim, &params).await.json().await.unwrap();
    assert_eq!(body["error"], "unsupported_grant_type");
    sim.shutdown().await;
}

// ---- claims ----

#[tokio::test]
async fn exp_skew_boundary_and_string_exp() {
    let sim = start("").await;
    let claims = |exp: serde_json::Value| json!({"iss": CA_KEY, "sub": "integ@acme.example", "aud": LOGIN, "exp": exp});
    let (s, b, _) = grant(&sim, &sign(0, &claims(json!(now() - 120)))).await;
    assert_eq!(s, 200, "inside the 180 s skew: {b}");
    let (s, b, _) = grant(&sim, &sign(0, &claims(json!((now() + 60).to_string())))).await;
    assert_eq!(s, 200, "string exp: {b}");
    // sfdx-core signs exp in milliseconds: far future is accepted (no max lifetime).
    let (s, b, _) = grant(&sim, &sign(0, &claims(json!(now() * 1000 + 300)))).await;
    assert_eq!(s, 200, "far-future exp: {b}");
    expect_error(
        &sim,
        &sign(
            0,
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
    let claims =
        |exp: i64| json!({"iss": CA_KEY, "sub": "integ@acme.example", "aud": LOGIN, "exp": exp});
    expect_error(
        &sim,
        &sign(0, &claims(now() - 30)),
        "invalid_grant",
        "expired authorization code",
    )
    .await;
    expect_error(
        &sim,
        &sign(0, &claims(now() + 3600)),
        "invalid_grant",
        "invalid assertion",
    )
    .await;
    let (s, _, _) = grant(&sim, &sign(0, &claims(now() + 200))).await;
    assert_eq!(s, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn clock_offset_moves_the_exp_check() {
    let sim = start("").await;
    let a = sign(
        0,
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
        0,
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
async fn audiences_my_domain_own_url_array_and_trailing_slash() {
    let sim = start("").await;
    for aud in [
        json!("https://acme.my.salesforce.com/"),
        json!(sim.base_url()),
        json!(["https://x.example", TEST_HOST]),
    ] {
        let a = sign(
            0,
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
    let a = assertion(0, CA_KEY, "integ@acme.example", LOGIN);
    let path = format!("/services/oauth2/token?grant_type={JWT_BEARER}&assertion={a}");
    let r = request(&sim, Method::POST, &path).send().await.unwrap();
    assert_eq!(r.status(), 200);
    sim.shutdown().await;
}

// ---- authorization models ----

#[tokio::test]
async fn admin_approved_by_profile_or_permission_set() {
    let sim = start("").await;
    token_for(&sim, 0, CA_KEY, "integ@acme.example").await; // profile
    token_for(&sim, 0, CA_KEY, "permset@acme.example").await; // permission set
    token_for(&sim, 1, ECA_KEY, "permset@acme.example").await; // ECA permission set
    expect_error(
        &sim,
        &assertion(1, ECA_KEY, "nobody@acme.example", LOGIN),
        "invalid_app_access",
        "user is not admin approved to access this app",
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn self_authorized_needs_an_approval() {
    let sim = start("").await;
    token_for(&sim, 0, SELF_CA_KEY, "nobody@acme.example").await;
    expect_error(
        &sim,
        &assertion(0, SELF_CA_KEY, "admin@acme.example", LOGIN),
        "invalid_grant",
        "user hasn't approved this consumer",
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn eca_works_with_login_audience() {
    let sim = start("").await;
    let (s, body, _) = grant(&sim, &assertion(1, ECA_KEY, "integ@acme.example", LOGIN)).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["scope"], "api refresh_token");
    sim.shutdown().await;
}

#[tokio::test]
async fn eca_kill_switch_blocks_every_grant() {
    let (sim, admin) = start_as_admin("").await;
    let done = deploy(&sim, &admin, default_options(), eca_oauth_off_zip()).await;
    assert_eq!(done["deployResult"]["status"], "Succeeded", "{done}");
    for user in ["integ@acme.example", "admin@acme.example"] {
        expect_eca_oauth_disabled(&sim, user).await;
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
    let a = assertion(2, CA_KEY, "integ@acme.example", LOGIN);
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
    let done = deploy(sim, &admin, default_options(), billing_cert_zip(2)).await;
    assert_eq!(done["deployResult"]["status"], "Succeeded", "{done}");
    assert_app_cert(sim, "Billing_Sync", 2);
}

/// The grant statuses with the old key (0) and the new key (2), in that order.
async fn old_and_new_key_statuses(sim: &orgsim::OrgSim) -> (u16, u16) {
    // permset@ keeps each probe on a fresh session-less path that still needs a valid signature.
    let status = async |key| {
        grant(sim, &assertion(key, CA_KEY, "permset@acme.example", LOGIN))
            .await
            .0
    };
    (status(0).await, status(2).await)
}

#[tokio::test]
async fn propagation_modes() {
    let sim = start("").await;
    let before = sim.certificate_history("Billing_Sync");
    assert_eq!(before.len(), 1, "the seeded certificate");
    rotate_billing_cert(&sim).await;
    let after = sim.certificate_history("Billing_Sync");
    assert_eq!(
        after.len(),
        2,
        "the seeded certificate, then the deployed one"
    );
    assert_eq!(after[0], before[0]);
    assert_eq!(
        Some(&after[1]),
        sim.app_certificate_pem("Billing_Sync").as_ref()
    );
    // No window by default: only the new key works at once.
    assert_eq!(old_and_new_key_statuses(&sim).await, (400, 200));

    sim.set_propagation(600, PropagationMode::Old);
    assert_eq!(old_and_new_key_statuses(&sim).await, (200, 400));
    sim.set_propagation(600, PropagationMode::New);
    assert_eq!(old_and_new_key_statuses(&sim).await, (400, 200));
    sim.set_propagation(600, PropagationMode::Either);
    assert_eq!(old_and_new_key_statuses(&sim).await, (200, 200));
    sim.set_propagation(600, PropagationMode::Neither);
    assert_eq!(old_and_new_key_statuses(&sim).await, (400, 400));
    // After the window only the new certificate verifies.
    sim.set_clock_offset(601);
    assert_eq!(old_and_new_key_statuses(&sim).await, (400, 200));
    sim.shutdown().await;
}

#[tokio::test]
async fn propagation_from_seed_settings() {
    let sim = start("propagation_secs = 120\npropagation_mode = \"old\"").await;
    rotate_billing_cert(&sim).await;
    assert_eq!(old_and_new_key_statuses(&sim).await, (200, 400));
    sim.shutdown().await;
}

#[tokio::test]
async fn live_sessions_survive_a_certificate_change() {
    let sim = start("").await;
    let before = token_for(&sim, 0, CA_KEY, "integ@acme.example").await;
    rotate_billing_cert(&sim).await;
    let r = get(&sim, "/services/oauth2/userinfo", Some(&before)).await;
    assert_eq!(r.status(), 200);
    // And a new grant with the new key hands back the same live session token.
    assert_eq!(
        before,
        token_for(&sim, 2, CA_KEY, "integ@acme.example").await
    );
    sim.shutdown().await;
}
