//! The Vault store against a real OpenBao dev server: the KV layout consumers rely on,
//! check-and-set, history-based PREVIOUS, destroy, journal, the minimal policy, token renewal,
//! the error cases, and that neither VAULT_* variables nor vaultrs's logging leak through (the
//! lease is in `lease.rs`, AppRole and Kubernetes logins in `logins.rs`). Every test works under
//! its own prefix, so they run in parallel on one shared server.

mod common;

use common::*;
use rekey_api::{ErrorKind, Generation, SecretStore, Stage};
use rekey_testkit::openbao::OpenBao;
use rekey_testkit::receiver::RefusingPort;
use rekey_vault::{VaultConfig, VaultStore};
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test]
async fn conformance() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("conformance");
    let open = || Box::new(root_store(bao, &prefix)) as Box<dyn SecretStore>;
    // An earlier rekey's journal: the KV value `{"entries": [...]}`, written with the bao CLI.
    let legacy = |credential: &str, entries: Vec<Value>| {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), json!({ "entries": entries }).to_string()).unwrap();
        bao.bao_ok(&[
            "kv",
            "put",
            &format!("secret/{prefix}/{credential}/journal"),
            &format!("@{}", file.path().display()),
        ]);
        Box::pin(async {}) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
    };
    rekey_testkit::conformance::secret_store(&open, "c", &legacy).await;
}

#[tokio::test]
async fn layout_is_what_consumers_read() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("layout");
    let store = root_store(bao, &prefix);
    let first = rotate(&store, 1).await;
    let second = pair();
    stage(&store, 2, &second).await.unwrap();
    // PENDING sits beside CURRENT and is never what a CURRENT read returns.
    assert_eq!(
        kv_field(bao, &format!("{prefix}/{CRED}/current"), "certificate"),
        first.certificate().pem()
    );
    assert_eq!(
        kv_field(bao, &format!("{prefix}/{CRED}/pending"), "certificate"),
        second.certificate().pem()
    );
    assert_eq!(
        kv_field(bao, &format!("{prefix}/{CRED}/pending"), "generation"),
        "2"
    );
    store.promote(CRED, Generation(2)).await.unwrap();
    let current = format!("{prefix}/{CRED}/current");
    assert_eq!(
        kv_field(bao, &current, "certificate"),
        second.certificate().pem()
    );
    assert_eq!(kv_field(bao, &current, "private_key"), second.secret());
    assert_eq!(
        kv_field(bao, &current, "fingerprint"),
        second.certificate().fingerprint.to_hex()
    );
    assert_eq!(kv_field(bao, &current, "rotation_id"), "r2");
    // PREVIOUS comes from the history of `current`.
    assert_eq!(
        bao.bao_ok(&[
            "kv",
            "get",
            "-version=1",
            "-field=generation",
            &format!("secret/{current}")
        ]),
        "1"
    );
    let stages = store.stages(CRED).await.unwrap();
    assert_eq!(stages.current.unwrap().generation, Generation(2));
    assert_eq!(
        stages.previous.unwrap().public.fingerprint(),
        first.certificate().fingerprint
    );
    assert!(stages.pending.is_none());
    // The pending key is cleared for its readers once promoted.
    let pending = json(&bao.bao_ok(&[
        "kv",
        "get",
        "-format=json",
        &format!("secret/{prefix}/{CRED}/pending"),
    ]));
    assert!(
        pending["data"]["data"].get("private_key").is_none(),
        "{pending}"
    );
    for leaf in ["current", "pending", "journal", "lock"] {
        if leaf == "journal" || leaf == "lock" {
            continue;
        }
        let meta = kv_metadata(bao, &format!("secret/{prefix}/{CRED}/{leaf}"));
        assert_eq!(meta["data"]["max_versions"], 10, "{leaf}");
        assert_eq!(meta["data"]["cas_required"], true, "{leaf}");
    }
}

#[tokio::test]
async fn racing_promotions_write_current_once() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("race");
    let ours = root_store(bao, &prefix);
    let theirs = root_store(bao, &prefix);
    rotate(&ours, 1).await;
    stage(&ours, 2, &pair()).await.unwrap();
    // Two handles promote at once: both may read version 1 of `current`; check-and-set lets
    // one write and turns the other into a Conflict (or it sees the promotion already done).
    let path = format!("secret/{prefix}/{CRED}/current");
    let (a, b) = tokio::join!(
        ours.promote(CRED, Generation(2)),
        theirs.promote(CRED, Generation(2))
    );
    for r in [&a, &b] {
        if let Err(e) = r {
            assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
            assert!(e.to_string().contains("someone else changed"), "{e}");
            assert!(e.to_string().contains(&format!("{prefix}/{CRED}")), "{e}");
        }
    }
    assert!(a.is_ok() || b.is_ok());
    // Exactly one new version of current was written.
    let meta = kv_metadata(bao, &path);
    assert_eq!(meta["data"]["current_version"], 2);
}

#[tokio::test]
async fn revert_writes_the_previous_version_back() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("revert");
    let store = root_store(bao, &prefix);
    let first = rotate(&store, 1).await;
    rotate(&store, 2).await;
    store.revert(CRED, Generation(1)).await.unwrap();
    let current = format!("{prefix}/{CRED}/current");
    assert_eq!(kv_field(bao, &current, "private_key"), first.secret());
    let meta = kv_metadata(bao, &format!("secret/{current}"));
    assert_eq!(
        meta["data"]["current_version"], 3,
        "a revert is a new version"
    );
    let stages = store.stages(CRED).await.unwrap();
    assert_eq!(stages.current.unwrap().generation, Generation(1));
    assert_eq!(stages.previous.unwrap().generation, Generation(2));
    assert!(
        stages.pending.is_none(),
        "a reverted promotion does not resurrect PENDING"
    );
}

#[tokio::test]
async fn destroy_really_destroys_every_version_holding_the_generation() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("destroy");
    let store = root_store(bao, &prefix);
    rotate(&store, 1).await;
    rotate(&store, 2).await;
    let err = store.destroy(CRED, Generation(2)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    store.destroy(CRED, Generation(1)).await.unwrap();
    let current = kv_metadata(bao, &format!("secret/{prefix}/{CRED}/current"));
    assert_eq!(current["data"]["versions"]["1"]["destroyed"], true);
    assert_eq!(current["data"]["versions"]["2"]["destroyed"], false);
    let pending = kv_metadata(bao, &format!("secret/{prefix}/{CRED}/pending"));
    assert_eq!(
        pending["data"]["versions"]["1"]["destroyed"], true,
        "the staged copy too"
    );
    assert_eq!(
        pending["data"]["versions"]["3"]["destroyed"], false,
        "generation 2's copy stays"
    );
    assert!(
        store
            .read_stage(CRED, Stage::Previous)
            .await
            .unwrap()
            .is_none()
    );
}

/// Many rotations' worth of entries: the server's JSON limits (OpenBao refuses a body with more
/// than 1,000 strings) never stop an append, up to the journal's cap and beyond it.
#[tokio::test]
async fn a_long_journal_keeps_taking_appends_and_stays_chained() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("long-journal");
    let store = root_store(bao, &prefix);
    // An earlier version's journal of objects, as it stood when appends began to fail.
    let old: Vec<Value> = (0..40)
        .map(|n| serde_json::to_value(entry(n, "old")).unwrap())
        .collect();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), json!({ "entries": old }).to_string()).unwrap();
    bao.bao_ok(&[
        "kv",
        "put",
        &format!("secret/{prefix}/{CRED}/journal"),
        &format!("@{}", file.path().display()),
    ]);
    for n in 0..470 {
        store
            .append_journal(CRED, &entry(n, "r"))
            .await
            .unwrap_or_else(|e| panic!("append {n}: {e}"));
    }
    let scan = store.scan_journal(CRED).await.unwrap();
    assert!(scan.damaged.is_empty(), "{:?}", scan.damaged);
    assert_eq!(scan.entries.len(), 500, "the newest 500 are kept");
    assert_eq!(
        scan.entries.last().unwrap().detail.as_deref(),
        Some("entry 469")
    );
    assert!(
        rekey_api::verify_chain(&scan).intact(),
        "{:?}",
        rekey_api::verify_chain(&scan).broken
    );
}

#[tokio::test]
async fn concurrent_journal_appends_are_not_lost() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("journal");
    let mut tasks = Vec::new();
    for writer in 0..6 {
        let store = root_store(bao, &prefix);
        tasks.push(tokio::spawn(async move {
            for n in 0..4 {
                store
                    .append_journal(CRED, &entry(n, &format!("w{writer}")))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let scan = root_store(bao, &prefix).scan_journal(CRED).await.unwrap();
    // Every writer that lost a check-and-set race linked again on what won.
    assert!(rekey_api::verify_chain(&scan).intact(), "{scan:?}");
    let read = rekey_testkit::conformance::unchained(scan.entries);
    assert_eq!(read.len(), 24);
    for writer in 0..6 {
        let mine: Vec<_> = read
            .iter()
            .filter(|e| e.rotation_id.0 == format!("w{writer}"))
            .collect();
        let want: Vec<_> = (0..4).map(|n| entry(n, &format!("w{writer}"))).collect();
        assert_eq!(
            mine,
            want.iter().collect::<Vec<_>>(),
            "each writer's entries, in order"
        );
    }
}

#[tokio::test]
async fn a_damaged_journal_entry_is_named_and_the_others_are_still_read() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("damaged");
    let store = root_store(bao, &prefix);
    for n in 0..3 {
        store.append_journal(CRED, &entry(n, "r1")).await.unwrap();
    }
    // Someone writes the journal back with its second entry mangled.
    let path = format!("secret/data/{prefix}/{CRED}/journal");
    let (status, latest) = as_root(bao, "GET", &path, None).await;
    assert_eq!(status, 200, "{latest}");
    let mut entries = latest["data"]["data"]["entries"].clone();
    entries[1] = json!({"step": "stage", "phase": "sideways", "secret": "do not print me"});
    let cas = latest["data"]["metadata"]["version"].clone();
    let body = json!({ "options": { "cas": cas }, "data": { "entries": entries } });
    let (status, written) = as_root(bao, "POST", &path, Some(body)).await;
    assert_eq!(status, 200, "{written}");
    let version = written["data"]["version"].as_u64().unwrap();

    let read = store.scan_journal(CRED).await.unwrap();
    assert_eq!(
        rekey_testkit::conformance::unchained(read.entries.clone()),
        [entry(0, "r1"), entry(2, "r1")]
    );
    assert_eq!(read.damaged.len(), 1);
    let damage = &read.damaged[0];
    assert_eq!(
        damage.location,
        format!("{path} version {version}, entry 2 of 3")
    );
    assert_eq!(damage.problem, "JSON, but not a journal entry");
    assert_eq!(damage.after, 1);
    assert!(read.repair.unwrap().contains("vault kv rollback"));

    // Whatever writes refuses, naming the entry and changing nothing.
    for err in [
        store.read_journal(CRED).await.unwrap_err(),
        store
            .append_journal(CRED, &entry(3, "r1"))
            .await
            .unwrap_err(),
        store.preflight(CRED).await.unwrap_err(),
        store.lock(CRED, "test").await.unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
        assert!(err.to_string().contains("entry 2 of 3"), "{err}");
        assert!(!err.to_string().contains("do not print me"), "{err}");
    }
    let (_, after) = as_root(bao, "GET", &path, None).await;
    assert_eq!(after["data"]["metadata"]["version"].as_u64(), Some(version));
}

/// A discarded key is no longer PENDING for readers of `pending` but stays in its KV history,
/// where `read_generation` finds it.
#[tokio::test]
async fn discard_keeps_the_key_in_the_history_of_pending() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("discard");
    let store = root_store(bao, &prefix);
    rotate(&store, 1).await;
    let staged = pair();
    stage(&store, 2, &staged).await.unwrap();
    store.discard(CRED, Generation(2)).await.unwrap();
    let path = format!("secret/{prefix}/{CRED}/pending");
    let pending = json(&bao.bao_ok(&["kv", "get", "-format=json", &path]));
    assert!(
        pending["data"]["data"].get("private_key").is_none(),
        "{pending}"
    );
    assert_eq!(pending["data"]["data"]["discarded_generation"], "2");
    let version = pending["data"]["metadata"]["version"].as_u64().unwrap();
    assert_eq!(
        bao.bao_ok(&[
            "kv",
            "get",
            &format!("-version={}", version - 1),
            "-field=private_key",
            &path
        ]),
        staged.secret()
    );
    let read = store
        .read_generation(CRED, Generation(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        read.info.public.fingerprint(),
        staged.certificate().fingerprint
    );
    assert_eq!(
        kv_field(bao, &format!("{prefix}/{CRED}/current"), "generation"),
        "1",
        "CURRENT untouched"
    );
    store.destroy(CRED, Generation(2)).await.unwrap();
    assert!(
        store
            .read_generation(CRED, Generation(2))
            .await
            .unwrap()
            .is_none(),
        "destroyed"
    );
}

#[tokio::test]
async fn the_minimal_policy_is_enough_for_everything() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("minimal");
    let t = token_with_policy(bao, &prefix, None, &[]);
    let store = VaultStore::new(config(bao, &prefix, token(&t))).unwrap();
    store.preflight(CRED).await.unwrap();
    rotate(&store, 1).await;
    rotate(&store, 2).await;
    store.revert(CRED, Generation(1)).await.unwrap();
    store.destroy(CRED, Generation(2)).await.unwrap();
    store.append_journal(CRED, &entry(1, "r")).await.unwrap();
    assert_eq!(store.read_journal(CRED).await.unwrap().len(), 1);
    store
        .lock(CRED, "me")
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    assert!(
        store
            .read_stage(CRED, Stage::Current)
            .await
            .unwrap()
            .is_some()
    );
    store.preflight(CRED).await.unwrap();
}

#[tokio::test]
async fn check_names_a_missing_capability_and_changes_nothing() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("lacking");
    let missing = format!("secret/data/{prefix}/{CRED}/current");
    let t = token_with_policy(bao, &prefix, Some((&missing, "update")), &[]);
    let store = VaultStore::new(config(bao, &prefix, token(&t))).unwrap();
    let err = store.preflight(CRED).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(
        err.to_string()
            .contains(&format!("token lacks 'update' on {missing}")),
        "{err}"
    );
    assert!(!err.to_string().contains(&t), "never the token");
    assert_eq!(
        err.to_string().matches("lacks").count(),
        1,
        "only that one: {err}"
    );
    assert_never_written(bao, &prefix, &["current"], "check wrote nothing");
}

#[tokio::test]
async fn a_short_lived_token_is_renewed_across_operations() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("renew");
    let t = token_with_policy(bao, &prefix, None, &["-ttl=3s", "-explicit-max-ttl=1m"]);
    let store = VaultStore::new(config(bao, &prefix, token(&t))).unwrap();
    let expiry = |token: &Value| {
        chrono::DateTime::parse_from_rfc3339(token["expire_time"].as_str().unwrap()).unwrap()
    };
    let (status, issued) = as_root(
        bao,
        "POST",
        "auth/token/lookup",
        Some(serde_json::json!({ "token": t })),
    )
    .await;
    assert_eq!(status, 200, "{issued}");
    let first_expiry = expiry(&issued["data"]);
    // Operations until the server's clock is past the token's first expiry: a real wait on
    // the server (about 3 s), for the condition, under a hang guard.
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    let mut operations = 0;
    while chrono::Utc::now() <= first_expiry {
        store.stages(CRED).await.unwrap();
        operations += 1;
        assert!(
            tokio::time::Instant::now() < deadline,
            "still before {first_expiry}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Past it, the 3 s token still works, because the store renewed it.
    store.append_journal(CRED, &entry(1, "r")).await.unwrap();
    assert_eq!(store.read_journal(CRED).await.unwrap().len(), 1);
    let (status, renewed) = as_root(
        bao,
        "POST",
        "auth/token/lookup",
        Some(serde_json::json!({ "token": t })),
    )
    .await;
    assert_eq!(status, 200, "{renewed}");
    assert!(
        expiry(&renewed["data"]) > first_expiry,
        "renewed on the server: {renewed} after {operations} operations"
    );
}

#[tokio::test]
async fn errors_are_clear_and_change_nothing() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("errors");

    // A port that refuses connections (held for the whole test: nothing else can take it).
    let refusing = RefusingPort::bind();
    let port = refusing.port();
    let mut cfg = config(bao, &prefix, token(bao.root_token()));
    cfg.address = format!("http://127.0.0.1:{port}");
    let err = VaultStore::new(cfg)
        .unwrap()
        .preflight(CRED)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_temporary());
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );

    // An invalid token.
    let err = VaultStore::new(config(bao, &prefix, token("s.not-a-token")))
        .unwrap()
        .preflight(CRED)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    assert!(!err.to_string().contains("s.not-a-token"), "{err}");

    // A missing mount.
    let mut cfg = config(bao, &prefix, token(bao.root_token()));
    cfg.mount = format!("{prefix}-nomount");
    let store = VaultStore::new(cfg).unwrap();
    let err = store.preflight(CRED).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(
        err.to_string()
            .contains(&format!("mount '{prefix}-nomount'")),
        "{err}"
    );
    let err = stage(&store, 1, &pair()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(
        err.to_string().contains(&format!("{prefix}-nomount")),
        "{err}"
    );

    // A token without access to the path.
    let t = json(&bao.bao_ok(&["token", "create", "-format=json", "-policy=default"]))["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    let store = VaultStore::new(config(bao, &prefix, token(&t))).unwrap();
    let err = stage(&store, 1, &pair()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(
        err.to_string()
            .contains(&format!("secret/metadata/{prefix}/{CRED}/current")),
        "{err}"
    );
    let err = store.preflight(CRED).await.unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::PermissionDenied | ErrorKind::NotFound
        ),
        "{err}"
    );
    assert_never_written(bao, &prefix, &["current"], "nothing was written");
}

#[tokio::test]
async fn a_sealed_server_is_unavailable_with_a_hint() {
    let bao = OpenBao::start();
    let store = root_store(&bao, "sealed");
    store.preflight(CRED).await.unwrap();
    bao.bao_ok(&["operator", "seal"]);
    let fresh = root_store(&bao, "sealed");
    for err in [
        store.stages(CRED).await.unwrap_err(),
        fresh.preflight(CRED).await.unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        assert!(err.is_temporary());
        assert!(err.hint().unwrap_or_default().contains("unseal"), "{err:?}");
        assert!(err.to_string().contains(&bao.addr()), "{err}");
    }
}

#[tokio::test]
async fn the_namespace_header_selects_the_namespace() {
    let bao = OpenBao::shared();
    let ns = bao.unique_prefix("ns");
    bao.bao_ok(&["namespace", "create", &ns]);
    let in_ns = format!("-namespace={ns}");
    bao.bao_ok(&["secrets", "enable", &in_ns, "-path=secret", "kv-v2"]);
    let mut cfg = config(bao, "rekey", token(bao.root_token()));
    cfg.namespace = Some(ns.clone());
    let store = VaultStore::new(cfg).unwrap();
    assert!(
        store.to_string().contains(&format!("namespace {ns}")),
        "{store}"
    );
    store.preflight(CRED).await.unwrap();
    rotate(&store, 1).await;
    let generation = bao.bao_ok(&[
        "kv",
        "get",
        &in_ns,
        "-field=generation",
        &format!("secret/rekey/{CRED}/current"),
    ]);
    assert_eq!(generation, "1");
}

/// Set in the child process that [`the_environment_changes_nothing`] starts.
const ENV_PROBE: &str = "REKEY_VAULT_ENV_PROBE";

/// vaultrs's settings builder reads VAULT_ADDR, VAULT_TOKEN, VAULT_SKIP_VERIFY, VAULT_CACERT,
/// VAULT_CAPATH and VAULT_CLIENT_CERT/KEY for every field left unset, but the store must depend
/// on its `VaultConfig` alone (the CLI resolves the environment). Setting variables in this
/// process would need `unsafe` (edition 2024), which the workspace forbids, and would leak
/// into the tests running beside it, so [`environment_probe`] runs in a child: this test
/// binary again, filtered to that one test, with hostile variables set.
#[tokio::test]
async fn the_environment_changes_nothing() {
    let bao = OpenBao::shared();
    // Refuses connections while the probe runs: nothing else can take the port meanwhile.
    let refusing = RefusingPort::bind();
    let closed = format!("127.0.0.1:{}", refusing.port());
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "environment_probe", "--nocapture"])
        .env(ENV_PROBE, "1")
        .env("REKEY_VAULT_ENV_PROBE_ADDR", bao.addr())
        .env("REKEY_VAULT_ENV_PROBE_TOKEN", bao.root_token())
        .env("REKEY_VAULT_ENV_PROBE_DIR", dir.path())
        .env("VAULT_ADDR", format!("http://{closed}"))
        .env("VAULT_TOKEN", "s.from-the-environment")
        .env("VAULT_NAMESPACE", "from-the-environment")
        .env("VAULT_SKIP_VERIFY", "true")
        .env("VAULT_CACERT", dir.path().join("ca.pem"))
        .env("VAULT_CAPATH", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("environment probe: passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A TLS server on 127.0.0.1 with a self-signed certificate that answers every request like a
/// sealed Vault. Returns its address and the certificate's PEM.
async fn sealed_tls_server() -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tls, ca_pem) = loopback_tls();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("https://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that does not trust the certificate aborts the handshake here.
                let Ok(mut stream) = acceptor.accept(socket).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let body = r#"{"errors":["Vault is sealed"]}"#;
                let answer = format!(
                    "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (address, ca_pem)
}

/// Run by [`the_environment_changes_nothing`] in a child process; returns at once otherwise.
#[tokio::test]
async fn environment_probe() {
    let var = |name: &str| std::env::var(name).unwrap();
    if std::env::var_os(ENV_PROBE).is_none() {
        return;
    }
    // VAULT_ADDR (a closed port), VAULT_TOKEN (invalid) and VAULT_NAMESPACE (nonexistent) are
    // not used: the configured server, token and no namespace are.
    let auth = token(&var("REKEY_VAULT_ENV_PROBE_TOKEN"));
    let mut cfg = VaultConfig::new(var("REKEY_VAULT_ENV_PROBE_ADDR"), auth);
    cfg.path_prefix = format!("t-env-{}", std::process::id());
    let store = VaultStore::new(cfg).unwrap();
    store.preflight(CRED).await.unwrap();
    rotate(&store, 1).await;
    assert_eq!(
        store
            .stages(CRED)
            .await
            .unwrap()
            .current
            .unwrap()
            .generation,
        Generation(1)
    );

    // VAULT_SKIP_VERIFY=true and VAULT_CACERT / VAULT_CAPATH holding the server's own
    // certificate do not make an unconfigured store trust it: the handshake fails.
    let (address, pem) = sealed_tls_server().await;
    let dir = std::path::PathBuf::from(var("REKEY_VAULT_ENV_PROBE_DIR"));
    std::fs::write(dir.join("ca.pem"), &pem).unwrap();
    let store = VaultStore::new(VaultConfig::new(address.clone(), token("s.x"))).unwrap();
    let err = store.preflight(CRED).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(
        !err.hint().unwrap_or_default().contains("unseal"),
        "{err:?}"
    );

    // The same server is reached when the configuration says so, which shows the probe can
    // tell the difference: its sealed answer arrives.
    for trust in ["tls_skip_verify", "ca_cert"] {
        let mut cfg = VaultConfig::new(address.clone(), token("s.x"));
        if trust == "tls_skip_verify" {
            cfg.tls_skip_verify = true;
        } else {
            cfg.ca_cert = Some(dir.join("ca.pem"));
        }
        let err = VaultStore::new(cfg)
            .unwrap()
            .preflight(CRED)
            .await
            .unwrap_err();
        assert!(
            err.hint().unwrap_or_default().contains("unseal"),
            "{trust}: {err:?}"
        );
    }
    println!("environment probe: passed");
}

/// Records the WARN and ERROR events of the thread it is the default subscriber on.
struct LoudEvents(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl tracing::Subscriber for LoudEvents {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let meta = event.metadata();
        if *meta.level() <= tracing::Level::WARN {
            let line = format!("{} {}", meta.level(), meta.target());
            self.0.lock().unwrap().push(line);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// vaultrs logs every non-2xx answer at ERROR, and the CLI prints WARN and above by default.
/// A fresh credential's keys all answer 404 and concurrent journal appends meet check-and-set
/// conflicts; neither is an error worth printing, and the store's own errors say what failed.
#[test]
fn routine_answers_log_no_warnings() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("quiet");
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    // Thread-local, hence the current-thread runtime below.
    let _guard = tracing::subscriber::set_default(LoudEvents(events.clone()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = root_store(bao, &prefix);
        store.preflight(CRED).await.unwrap();
        rotate(&store, 1).await;
        let other = root_store(bao, &prefix);
        let (first, second) = (entry(1, "a"), entry(2, "b"));
        let (a, b) = tokio::join!(
            store.append_journal(CRED, &first),
            other.append_journal(CRED, &second)
        );
        a.unwrap();
        b.unwrap();
    });
    assert_eq!(*events.lock().unwrap(), Vec::<String>::new());
}
