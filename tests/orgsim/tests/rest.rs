//! REST basics (versions, limits, userinfo, errors), injected faults, and the test-control
//! API over HTTP.

mod common;

use common::*;
use orgsim::{Fault, FaultKind, OrgSim, Seed};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

const LIMITS: &str = "/services/data/v67.0/limits/";

/// The status of a GET.
async fn status(sim: &OrgSim, path: &str, token: Option<&str>) -> u16 {
    get(sim, path, token).await.status().as_u16()
}

#[tokio::test]
async fn versions_need_no_auth() {
    let sim = start("").await;
    let r = get(&sim, "/services/data/", None).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("sforce-limit-info"));
    let list: Value = r.json().await.unwrap();
    assert!(list.as_array().unwrap().contains(
        &json!({"label": "Summer '26", "url": "/services/data/v67.0", "version": "67.0"})
    ));
    sim.shutdown().await;
}

#[tokio::test]
async fn limits_count_api_usage_and_header_tracks_it() {
    let (sim, t) = start_as_admin("daily_api_requests = 3").await;
    let r = get(&sim, LIMITS, Some(&t)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["sforce-limit-info"], "api-usage=1/3");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["DailyApiRequests"], json!({"Max": 3, "Remaining": 2}));
    assert!(body["DataStorageMB"]["Max"].is_number());
    assert_eq!(
        status(&sim, "/services/data/v67.0/limits", Some(&t)).await,
        200
    );
    assert_eq!(status(&sim, LIMITS, Some(&t)).await, 200);
    // The allocation is used up: 403 REQUEST_LIMIT_EXCEEDED.
    let r = get(&sim, LIMITS, Some(&t)).await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn rest_401_and_404_are_error_arrays() {
    let sim = start("").await;
    for token in [None, Some("00D5g000000ACME!nope")] {
        let r = get(&sim, LIMITS, token).await;
        assert_eq!(r.status(), 401);
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body,
            json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
        );
    }
    let r = get(&sim, "/services/data/v67.0/nothing-here", None).await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()[0]["errorCode"],
        "NOT_FOUND"
    );
    // Retired versions are gone; versions that never existed are not found.
    let r = get(&sim, "/services/data/v30.0/limits/", None).await;
    assert_eq!(r.status(), 410);
    assert_eq!(
        r.json::<Value>().await.unwrap()[0]["errorCode"],
        "API_VERSION_RETIRED"
    );
    assert_eq!(
        status(&sim, "/services/data/v99.0/limits/", None).await,
        404
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn expired_session_is_rejected() {
    let sim = start("").await;
    let t = token_for(&sim, 0, CA_KEY, "integ@acme.example").await;
    sim.set_clock_offset(31 * 60);
    assert_eq!(status(&sim, LIMITS, Some(&t)).await, 401);
    sim.shutdown().await;
}

#[tokio::test]
async fn userinfo_ok_and_bad_token() {
    let sim = start("").await;
    let t = token_for(&sim, 0, CA_KEY, "integ@acme.example").await;
    let r = get(&sim, "/services/oauth2/userinfo", Some(&t)).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["preferred_username"], "integ@acme.example");
    assert_eq!(body["organization_id"], ORG_ID);
    assert_eq!(body["name"], "Integration User");
    let user_id = body["user_id"].as_str().unwrap();
    assert_eq!(
        body["sub"],
        format!("{}/id/{ORG_ID}/{user_id}", sim.base_url())
    );
    assert_eq!(
        status(&sim, &format!("/id/{ORG_ID}/{user_id}"), Some(&t)).await,
        200
    );

    for token in [None, Some("bogus")] {
        let r = get(&sim, "/services/oauth2/userinfo", token).await;
        assert_eq!(r.status(), 403);
        assert!(content_type(r.headers()).starts_with("text/plain"));
        assert_eq!(r.text().await.unwrap(), "Bad_OAuth_Token");
    }
    sim.shutdown().await;
}

// ---- faults ----

#[tokio::test]
async fn fault_server_error_with_prefix_and_count() {
    let sim = start("").await;
    sim.inject_fault(
        Fault::new(FaultKind::ServerError {
            status: 503,
            body: "down".into(),
        })
        .on_path("/services/data")
        .times(2),
    );
    for _ in 0..2 {
        let r = get(&sim, "/services/data/", None).await;
        assert_eq!(r.status(), 503);
        assert_eq!(r.text().await.unwrap(), "down");
    }
    assert_eq!(
        status(&sim, "/services/data/", None).await,
        200,
        "count used up"
    );
    sim.inject_fault(
        Fault::new(FaultKind::ServerError {
            status: 500,
            body: String::new(),
        })
        .on_path("/services/Soap"),
    );
    assert_eq!(
        status(&sim, "/services/data/", None).await,
        200,
        "prefix does not match"
    );
    sim.shutdown().await;
}

/// Only a guard against hanging: far above what a request to the emulator takes on a loaded
/// machine, far below the hour a held request waits.
const HANG_GUARD: Duration = Duration::from_secs(60);

async fn before_hang_guard<T>(what: &str, work: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(HANG_GUARD, work)
        .await
        .unwrap_or_else(|_| panic!("{what}: still waiting after {HANG_GUARD:?}"))
}

#[tokio::test]
async fn fault_latency_holds_as_many_requests_as_counted_then_handles_them() {
    let sim = start("").await;
    // An hour: the request that takes it is still held when the test ends, however slow or
    // fast the machine is.
    sim.inject_fault(Fault::new(FaultKind::Latency { ms: 3_600_000 }).times(1));
    let held = get(&sim, "/services/data/", None);
    tokio::pin!(held);
    let taken = async {
        while !sim.faults().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::select! {
        r = &mut held => panic!("the delayed request was answered: {}", r.status()),
        () = before_hang_guard("the first request taking the fault", taken) => {}
    }
    // Used up: the next request is answered while the first is still held.
    let next = tokio::select! {
        r = &mut held => panic!("the delayed request was answered: {}", r.status()),
        r = before_hang_guard("the second request", get(&sim, "/services/data/", None)) => r,
    };
    assert_eq!(next.status(), 200);
    assert_eq!(sim.calls().len(), 1, "only the second request was answered");

    // Once its delay is over, a delayed request is handled as any other.
    sim.inject_fault(Fault::new(FaultKind::Latency { ms: 1 }).times(1));
    let r = before_hang_guard("a request delayed by 1 ms", get(&sim, LIMITS, None)).await;
    assert_eq!(r.status(), 401, "handled normally: no token");
    assert!(sim.faults().is_empty());
    // No graceful shutdown: it would wait the hour for the held request.
}

#[tokio::test]
async fn fault_request_limit() {
    let (sim, t) = start_as_admin("").await;
    sim.inject_fault(Fault::new(FaultKind::RequestLimit).times(1));
    let r = get(&sim, LIMITS, Some(&t)).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    );
    assert_eq!(status(&sim, LIMITS, Some(&t)).await, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn fault_data_not_available() {
    let sim = start("").await;
    sim.inject_fault(
        Fault::new(FaultKind::DataNotAvailable)
            .on_path("/services/oauth2/token")
            .times(1),
    );
    let r = post_token(&sim, &[("grant_type", JWT_BEARER), ("assertion", "x")]).await;
    assert_eq!(r.status(), 200);
    assert!(content_type(r.headers()).starts_with("text/html"));
    assert!(r.text().await.unwrap().contains("Data Not Available"));
    sim.shutdown().await;
}

#[tokio::test]
async fn fault_rate_limit_hits_only_the_token_endpoint() {
    let sim = start("").await;
    sim.inject_fault(Fault::new(FaultKind::RateLimitExceeded).times(1));
    assert_eq!(status(&sim, "/services/data/", None).await, 200);
    expect_error(
        &sim,
        &assertion(0, CA_KEY, "integ@acme.example", LOGIN),
        "rate_limit_exceeded",
        &defaults().rate_limit_description,
    )
    .await;
    token_for(&sim, 0, CA_KEY, "integ@acme.example").await;
    sim.shutdown().await;
}

#[tokio::test]
async fn fault_next_deploy_fails() {
    let (sim, admin) = start_as_admin("").await;
    sim.inject_fault(
        Fault::new(FaultKind::DeployFails {
            problem: "Simulated failure".into(),
        })
        .times(1),
    );
    let done = deploy(&sim, &admin, default_options(), billing_cert_zip(2)).await;
    assert_eq!(done["deployResult"]["status"], "Failed");
    assert_eq!(
        done["deployResult"]["details"]["componentFailures"][0]["problem"],
        "Simulated failure"
    );
    assert_eq!(
        done["deployResult"]["details"]["componentFailures"][0]["problemType"],
        "Error"
    );
    assert_app_cert(&sim, "Billing_Sync", 0);
    assert_eq!(
        deploy(&sim, &admin, default_options(), billing_cert_zip(2)).await["deployResult"]["status"],
        "Succeeded"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn clear_faults_removes_everything() {
    let sim = start("").await;
    sim.inject_fault(Fault::new(FaultKind::ServerError {
        status: 502,
        body: String::new(),
    }));
    assert_eq!(status(&sim, "/services/data/", None).await, 502);
    sim.clear_faults();
    assert_eq!(status(&sim, "/services/data/", None).await, 200);
    sim.shutdown().await;
}

// ---- call log and control API ----

#[tokio::test]
async fn calls_record_method_path_status_without_secrets() {
    let (sim, t) = start_as_admin("").await;
    get(&sim, LIMITS, Some(&t)).await;
    let a = assertion(0, CA_KEY, "admin@acme.example", LOGIN);
    request(
        &sim,
        Method::POST,
        &format!("/services/oauth2/token?assertion={a}"),
    )
    .send()
    .await
    .unwrap();
    let calls = sim.calls();
    let summary: Vec<_> = calls
        .iter()
        .map(|c| (c.method.as_str(), c.path.as_str(), c.status))
        .collect();
    assert_eq!(
        summary,
        [
            ("POST", "/services/oauth2/token", 200),
            ("GET", LIMITS, 200),
            ("POST", "/services/oauth2/token", 400)
        ]
    );
    assert!(chrono::DateTime::parse_from_rfc3339(&calls[0].timestamp).is_ok());
    let json = serde_json::to_string(&calls).unwrap();
    assert!(!json.contains(&t) && !json.contains(&a));
    sim.shutdown().await;
}

#[tokio::test]
async fn control_api_over_http() {
    let sim = start("").await;
    // apps
    let (s, app) = control(&sim, Method::GET, "apps/Billing_Sync", None).await;
    assert_eq!(s, 200);
    assert_eq!(app["kind"], "ConnectedApp");
    assert_eq!(
        app["certificate_pem"].as_str().unwrap().trim(),
        keys()[0].cert_pem.trim()
    );
    assert_eq!(app["certificate_sha256"].as_str().unwrap().len(), 64);
    assert!(
        app["metadata_xml"]
            .as_str()
            .unwrap()
            .contains("<ConnectedApp")
    );
    let (_, eca) = control(&sim, Method::GET, "apps/Billing_ECA", None).await;
    assert_eq!(eca["kind"], "ExternalClientApplication");
    assert_eq!(
        eca["components"]["ExtlClntAppGlobalOauthSettings"]["member"],
        "Billing_ECA_glbloauth"
    );
    assert!(!eca.to_string().contains(ECA_SECRET));
    assert_eq!(control(&sim, Method::GET, "apps/Nope", None).await.0, 404);

    // faults
    let fault = json!({"kind": "server_error", "status": 500, "body": "boom", "path_prefix": "/services/data", "count": 1});
    assert_eq!(
        control(&sim, Method::POST, "faults", Some(fault)).await.0,
        200
    );
    assert_eq!(status(&sim, "/services/data/", None).await, 500);
    control(
        &sim,
        Method::POST,
        "faults",
        Some(json!({"kind": "request_limit"})),
    )
    .await;
    assert_eq!(control(&sim, Method::DELETE, "faults", None).await.0, 200);
    assert_eq!(status(&sim, "/services/data/", None).await, 200);
    assert_eq!(
        control(&sim, Method::POST, "faults", Some(json!({"kind": "nope"})))
            .await
            .0,
        400
    );

    // clock
    let t = token_for(&sim, 0, CA_KEY, "integ@acme.example").await;
    let (_, sessions) = control(&sim, Method::GET, "sessions", None).await;
    assert_eq!(sessions.as_array().unwrap().len(), 1);
    assert!(sessions[0]["id"].as_str().unwrap().starts_with("0Ak"));
    control(
        &sim,
        Method::POST,
        "clock",
        Some(json!({"offset_secs": 3600})),
    )
    .await;
    assert_eq!(status(&sim, LIMITS, Some(&t)).await, 401);
    control(&sim, Method::POST, "clock", Some(json!({"offset_secs": 0}))).await;

    // propagation
    for (mode, expected) in [("old", 200), ("sideways", 400)] {
        let window = json!({"secs": 60, "mode": mode});
        let (s, _) = control(&sim, Method::POST, "propagation", Some(window)).await;
        assert_eq!(s, expected, "propagation mode {mode}");
    }

    // calls (control calls themselves are not logged)
    let (_, calls) = control(&sim, Method::GET, "calls", None).await;
    assert!(
        calls
            .as_array()
            .unwrap()
            .iter()
            .all(|c| !c["path"].as_str().unwrap().starts_with("/__orgsim"))
    );
    assert!(
        calls
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["path"] == "/services/oauth2/token")
    );

    // seed replaces everything: the old session is gone.
    let r = request(&sim, Method::POST, "/__orgsim/seed")
        .body(seed_toml(""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(status(&sim, LIMITS, Some(&t)).await, 401);
    let (_, calls) = control(&sim, Method::GET, "calls", None).await;
    assert_eq!(calls.as_array().unwrap().len(), 1);
    let r = request(&sim, Method::POST, "/__orgsim/seed")
        .body("[org]\nid = \"short\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    sim.shutdown().await;
}

#[tokio::test]
async fn json_seed_over_http_and_from_path() {
    let sim = start("").await;
    let seed = seed_with("");
    let r = request(&sim, Method::POST, "/__orgsim/seed")
        .json(&seed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    token_for(&sim, 0, CA_KEY, "integ@acme.example").await;
    sim.shutdown().await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("seed.json"),
        serde_json::to_string(&seed).unwrap(),
    )
    .unwrap();
    let again = Seed::from_path(&dir.path().join("seed.json")).unwrap();
    assert_eq!(again.connected_apps.len(), 2);
}

#[tokio::test]
async fn example_seed_loads_with_generated_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/seeds/example.toml");
    std::fs::copy(example, dir.path().join("example.toml")).unwrap();
    std::fs::write(dir.path().join("billing.crt"), &keys()[0].cert_pem).unwrap();
    std::fs::write(dir.path().join("eca.crt"), &keys()[1].cert_pem).unwrap();
    let seed = Seed::from_path(&dir.path().join("example.toml")).unwrap();
    let sim = OrgSim::start(seed).await.unwrap();
    assert_app_cert(&sim, "Billing_Sync", 0);
    assert_app_cert(&sim, "Billing_Sync_ECA", 1);
    sim.shutdown().await;

    // A missing certificate file is an Io error naming the file.
    std::fs::remove_file(dir.path().join("eca.crt")).unwrap();
    let err = Seed::from_path(&dir.path().join("example.toml")).unwrap_err();
    assert!(err.to_string().contains("eca.crt"), "{err}");
}

#[test]
fn seed_validation_errors() {
    let base = std::path::Path::new(".");
    assert!(matches!(
        Seed::from_toml_str("[org]\nid = 5", base),
        Err(orgsim::SeedError::Syntax(_))
    ));
    let bad_profile =
        "[org]\nid = \"00D5g000000ACMEEAA\"\n[[users]]\nusername = \"a@b\"\nprofile = \"Ghost\"";
    assert!(matches!(
        Seed::from_toml_str(bad_profile, base),
        Err(orgsim::SeedError::Invalid(_))
    ));
    let bad_xml = seed_toml("").replace("<label>Self App</label>", "<label>Self App</labl>");
    assert!(matches!(
        Seed::from_toml_str(&bad_xml, base),
        Err(orgsim::SeedError::Invalid(_))
    ));
}
