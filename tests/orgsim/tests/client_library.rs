//! A Salesforce client library nobody on this project wrote drives the emulator: simple-salesforce
//! (PyPI, pinned, installed into the workspace's `.venv` on first use) logs in with the JWT bearer
//! flow using an openssl-made key whose certificate the seed puts on the app, then queries with
//! `ORDER BY`/`LIMIT` and `COUNT()`, reads the limits, and pages through more than one batch.

mod common;

use common::*;
use orgsim::{OrgSim, Seed};
use serde_json::{Value, json};
use std::process::Command;

/// The pinned client release.
const SIMPLE_SALESFORCE: &str = "simple-salesforce==1.12.10";
/// Users besides the seed's five, so that a 200-record batch is not the whole answer.
const EXTRA_USERS: usize = 450;

/// An RSA key and self-signed certificate made by openssl, as an integration's would be.
fn openssl_pair(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let (key, cert) = (dir.join("integration.key"), dir.join("integration.crt"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
        ])
        .args(["-subj", "/CN=integration/O=Acme"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (key, std::fs::read_to_string(cert).unwrap())
}

#[tokio::test]
async fn simple_salesforce_logs_in_with_jwt_queries_pages_and_reads_limits() {
    let python = rekey_testkit::venv::venv_python("simple_salesforce", &[SIMPLE_SALESFORCE]);
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = openssl_pair(dir.path());
    // The openssl certificate replaces key 0's on Billing_Sync (its first appearance).
    let text = seed_toml_with_users("", EXTRA_USERS).replacen(&keys()[0].cert_pem, &cert, 1);
    let sim = OrgSim::start(Seed::from_toml_str(&text, dir.path()).unwrap())
        .await
        .unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/simple_salesforce_client.py"
    );
    let out = tokio::process::Command::new(&python)
        .arg(script)
        .arg(sim.base_url())
        .args(["integ@acme.example", CA_KEY])
        .arg(&key)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the client failed:\n{stderr}");
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();

    let users = 5 + EXTRA_USERS;
    assert_eq!(seen["version"], "59.0");
    for resource in ["limits", "query", "sobjects", "tooling"] {
        assert!(
            seen["resources"]
                .as_array()
                .unwrap()
                .contains(&json!(resource)),
            "{seen}"
        );
    }
    assert!(
        seen["user_fields"]
            .as_array()
            .unwrap()
            .contains(&json!("Username")),
        "{seen}"
    );
    assert_eq!(
        seen["ordered"],
        json!([
            "user-0449@acme.example",
            "user-0448@acme.example",
            "user-0447@acme.example"
        ])
    );
    assert_eq!(seen["ordered_total"], 3);
    assert_eq!(seen["count"], users - 1, "gone@ is inactive");
    assert_eq!(seen["daily_api_requests"]["Max"], 15000);
    assert_eq!(seen["paged_total"], users);
    assert_eq!(seen["page_sizes"], json!([200, 200, 55]));
    assert_eq!(seen["paged_usernames_sorted"], true);
    assert_eq!(seen["paged_distinct"], users);
    assert_eq!(seen["query_all_total"], users);
    assert_eq!(seen["bad_object"], "INVALID_TYPE");
    let calls = sim.calls();
    let api_calls = calls
        .iter()
        .filter(|c| c.path.starts_with("/services/data/v"))
        .count();
    // The client keeps the Sforce-Limit-Info of its last successful answer: every API call but
    // the refused query, which came last.
    assert_eq!(seen["api_usage"], json!([api_calls - 1, 15000]));
    // Everything went to the emulator, through the token endpoint first.
    assert_eq!(
        (
            calls[0].method.as_str(),
            calls[0].path.as_str(),
            calls[0].status
        ),
        ("POST", "/services/oauth2/token", 200)
    );
    assert!(
        calls
            .iter()
            .any(|c| c.path.starts_with("/services/data/v59.0/query/01g")),
        "nextRecordsUrl was followed"
    );
    sim.shutdown().await;
}

/// simple-salesforce's client credentials login: given a consumer key and secret and a My
/// Domain (`domain="acme.my"`), it posts `grant_type=client_credentials` with the pair in
/// `Authorization: Basic` to `https://acme.my.salesforce.com/services/oauth2/token` (the adapter
/// keeps that host in the Host header), then queries as the run-as user. With `domain="login"`
/// it does not try the flow (it raises `INVALID AUTH` before sending anything).
#[tokio::test]
async fn simple_salesforce_logs_in_with_client_credentials_on_my_domain_and_queries() {
    let python = rekey_testkit::venv::venv_python("simple_salesforce", &[SIMPLE_SALESFORCE]);
    let (sim, admin) = start_credentials("").await;
    // The ECA's pair after a rotation, so the library uses a key only the staged API made.
    let staged = format!("{}/staged", consumer_path(&sim, "Cred_ECA"));
    let (status, body) = connect(&sim, reqwest::Method::POST, &staged, &admin, None).await;
    assert_eq!(status, 201, "{body}");
    let id = body["stagedCredentials"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = connect(
        &sim,
        reqwest::Method::PATCH,
        &format!("{staged}/{id}"),
        &admin,
        Some(json!({"command": "rotate"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let consumer = sim.eca_consumer("Cred_ECA").unwrap();
    let before = sim.calls().len();

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/simple_salesforce_client.py"
    );
    let out = tokio::process::Command::new(&python)
        .arg(script)
        .arg("--client-credentials")
        .arg(sim.base_url())
        .args([&consumer.key, &consumer.secret, "acme.my"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the client failed:\n{stderr}");
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["queried"], json!([RUN_AS]));
    assert_eq!(seen["org_count"], 1);
    assert_eq!(seen["login_domain"], "INVALID AUTH");
    assert_eq!(
        seen["instance"],
        sim.base_url().trim_start_matches("http://")
    );

    // The library's first call was the token request, and it succeeded.
    let calls = sim.calls();
    let first = &calls[before];
    assert_eq!(
        (first.method.as_str(), first.path.as_str(), first.status),
        ("POST", "/services/oauth2/token", 200)
    );
    assert_eq!(
        calls[before..]
            .iter()
            .filter(|c| c.path == "/services/oauth2/token")
            .count(),
        1,
        "no token request for domain=login"
    );
    // It went to the My Domain host, for the run-as user, through the ECA.
    let (_, rows) = soql(
        &sim,
        Some(&admin),
        "SELECT LoginUrl, Application, Status FROM LoginHistory WHERE LoginUrl = 'acme.my.salesforce.com'",
    )
    .await;
    assert_eq!(rows["totalSize"], 1, "{rows}");
    assert_eq!(rows["records"][0]["Application"], "Cred ECA");
    assert_eq!(rows["records"][0]["Status"], "Success");
    assert_eq!(sim.live_sessions(RUN_AS).len(), 1);
    sim.shutdown().await;
}
