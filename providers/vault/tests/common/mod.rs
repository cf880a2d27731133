//! What the Vault store's test files share: a store under its own prefix on the shared OpenBao
//! server, root access for the checks, staged pairs, tokens with a given policy.

// Each test file uses a different subset.
#![allow(dead_code)]

use rekey_api::{Generation, JournalEntry, Phase, SecretStore, SecretString, Step};
use rekey_testkit::conformance::{self, Pair};
use rekey_testkit::openbao::OpenBao;
use rekey_vault::{VaultAuth, VaultConfig, VaultStore};
use serde_json::Value;
use std::time::Duration;

pub(crate) const CRED: &str = "billing";

/// The lock TTL of the lease tests: an hour, so no lease expires by itself while a test runs,
/// however slow the machine. A lease expires when the test moves rekey's clock past it.
pub(crate) const LEASE_TTL: Duration = Duration::from_secs(3600);

/// Moves rekey's clock ahead by `by`, for this test only (its thread; see
/// `rekey_api::advance_on_this_thread`), instead of waiting for a lease to expire.
pub(crate) fn advance_clock(by: Duration) {
    rekey_api::advance_on_this_thread(chrono::Duration::from_std(by).unwrap());
}

/// Only a guard against hanging, for waits on the server's own clock (token TTLs of a few
/// seconds): far above them on a loaded machine.
pub(crate) const HANG_GUARD: Duration = Duration::from_secs(60);

/// `path` (under `/v1/`) as OpenBao's root sees it: the status and the JSON answer, if any.
pub(crate) async fn as_root(
    bao: &OpenBao,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = reqwest::Client::new()
        .request(method, format!("{}/v1/{path}", bao.addr()))
        .header("X-Vault-Token", bao.root_token());
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The token behind `accessor` as the server sees it; `None` once it has expired or was
/// revoked.
pub(crate) async fn token_by_accessor(bao: &OpenBao, accessor: &str) -> Option<Value> {
    let body = serde_json::json!({ "accessor": accessor });
    match as_root(bao, "POST", "auth/token/lookup-accessor", Some(body)).await {
        (200, answer) => Some(answer["data"].clone()),
        _ => None,
    }
}

/// The accessors of the live tokens that logins at `auth/{mount}` issued.
pub(crate) async fn login_tokens(bao: &OpenBao, mount: &str) -> Vec<String> {
    let (status, list) = as_root(bao, "LIST", "auth/token/accessors", None).await;
    assert_eq!(status, 200, "{list}");
    let mut found = Vec::new();
    for accessor in list["data"]["keys"].as_array().unwrap() {
        let accessor = accessor.as_str().unwrap();
        if let Some(token) = token_by_accessor(bao, accessor).await
            && token["path"] == format!("auth/{mount}/login")
        {
            found.push(accessor.to_string());
        }
    }
    found
}

pub(crate) fn pair() -> Pair {
    rekey_testkit::conformance::pair()
}

pub(crate) fn config(bao: &OpenBao, prefix: &str, auth: VaultAuth) -> VaultConfig {
    let mut config = VaultConfig::new(bao.addr(), auth);
    config.path_prefix = prefix.to_string();
    config
}

pub(crate) fn token(s: &str) -> VaultAuth {
    VaultAuth::Token(SecretString::new(s))
}

pub(crate) fn root_store(bao: &OpenBao, prefix: &str) -> VaultStore {
    VaultStore::new(config(bao, prefix, token(bao.root_token()))).unwrap()
}

pub(crate) async fn stage(store: &VaultStore, generation: u64, p: &Pair) -> rekey_api::Result<()> {
    rekey_testkit::conformance::stage_as(store, CRED, generation, &format!("r{generation}"), p)
        .await
}

pub(crate) async fn rotate(store: &VaultStore, generation: u64) -> Pair {
    let p = pair();
    stage(store, generation, &p).await.unwrap();
    store.promote(CRED, Generation(generation)).await.unwrap();
    p
}

pub(crate) fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap()
}

/// `bao kv get -field=...` of a path under the test's prefix.
/// `bao kv metadata get` of `path`, as JSON.
pub(crate) fn kv_metadata(bao: &OpenBao, path: &str) -> Value {
    json(&bao.bao_ok(&["kv", "metadata", "get", "-format=json", path]))
}

/// Asserts that none of the credential's `leaves` exists in KV: nothing was written.
pub(crate) fn assert_never_written(bao: &OpenBao, prefix: &str, leaves: &[&str], why: &str) {
    for leaf in leaves {
        let out = bao.bao(&[
            "kv",
            "metadata",
            "get",
            &format!("secret/{prefix}/{CRED}/{leaf}"),
        ]);
        assert!(!out.status.success(), "{leaf} exists: {why}");
    }
}

pub(crate) fn kv_field(bao: &OpenBao, path: &str, field: &str) -> String {
    bao.bao_ok(&[
        "kv",
        "get",
        &format!("-field={field}"),
        &format!("secret/{path}"),
    ])
}

/// Writes the minimal policy of the README for `prefix`/`CRED`, minus `(leaf path, capability)`,
/// and returns a token holding only it (plus the default policy).
pub(crate) fn token_with_policy(
    bao: &OpenBao,
    prefix: &str,
    without: Option<(&str, &str)>,
    extra: &[&str],
) -> String {
    let mut hcl = String::new();
    for leaf in ["current", "pending", "journal", "lock"] {
        for kind in ["data", "metadata"] {
            let path = format!("secret/{kind}/{prefix}/{CRED}/{leaf}");
            let caps: Vec<&str> = ["create", "read", "update"]
                .into_iter()
                .filter(|c| without != Some((path.as_str(), *c)))
                .collect();
            hcl.push_str(&format!("path \"{path}\" {{ capabilities = {caps:?} }}\n"));
        }
    }
    for leaf in ["current", "pending"] {
        hcl.push_str(&format!(
            "path \"secret/destroy/{prefix}/{CRED}/{leaf}\" {{ capabilities = [\"update\"] }}\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.hcl");
    std::fs::write(&file, hcl).unwrap();
    bao.bao_ok(&["policy", "write", prefix, file.to_str().unwrap()]);
    let mut args = vec!["token", "create", "-format=json"];
    let policy = format!("-policy={prefix}");
    args.push(&policy);
    args.extend_from_slice(extra);
    json(&bao.bao_ok(&args))["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string()
}

pub(crate) fn entry(n: i64, rotation: &str) -> JournalEntry {
    JournalEntry {
        at: chrono::DateTime::from_timestamp(1_800_000_000 + n, 0).unwrap(),
        detail: Some(format!("entry {n}")),
        ..conformance::journal_entry(rotation, Step::Stage, Phase::Begin, None)
    }
}

/// A TLS server config for 127.0.0.1 with a fresh self-signed certificate, and that certificate's
/// PEM for clients to trust. The IP SAN matters: Go's TLS client (OpenBao's) matches 127.0.0.1
/// against it and never against the CN.
pub(crate) fn loopback_tls() -> (tokio_rustls::rustls::ServerConfig, String) {
    use tokio_rustls::rustls::{self, pki_types};
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        )
        .unwrap();
    (tls, cert.pem())
}
