//! Rotations with the key in the remote stores, through the real binary against the org
//! emulator: HashiCorp Vault (a real OpenBao server) and AWS Secrets Manager (a real moto
//! server), alone, together, and beside the file store; the documented Vault policy; what a
//! connection problem says.

mod world;

use rekey_testkit::moto::Moto;
use rekey_testkit::openbao::OpenBao;
use world::{World, rekey_api_fingerprint, vault_world, with_aws_store};

fn bao_field(bao: &OpenBao, path: &str, field: &str) -> String {
    let out = bao.bao(&["kv", "get", &format!("-field={field}"), path]);
    assert!(
        out.status.success(),
        "bao kv get {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_app_rotation_with_the_key_in_vault() {
    let bao = OpenBao::shared();
    let (mut w, prefix) = vault_world(bao).await;
    w.import_legacy("billing").await;
    w.ok(&["rotate", "billing"]).await;

    // A consumer's plain KV read of the documented CURRENT path sees the new certificate, and it
    // is the one the app holds.
    let current = format!("secret/{prefix}/billing/current");
    let cert = bao_field(bao, &current, "certificate");
    assert_eq!(
        rekey_api_fingerprint(&cert),
        w.app_fingerprint("Billing_Sync")
    );
    assert_eq!(bao_field(bao, &current, "generation").trim(), "2");
    w.ok(&["verify", "billing"]).await;
    let old = w.rekey(&["verify", "billing", "--stage", "previous"]).await;
    assert_eq!(old.code, 3, "{}", old.stdout);

    // The journal lives next to the credential in Vault: another machine reads the same one.
    let journal = w.json(&["journal", "billing"]).await;
    assert_eq!(journal.as_array().unwrap().len(), 12, "{journal}");
    let status = w.json(&["status", "billing"]).await;
    assert_eq!(
        (
            status[0]["generation"].clone(),
            status[0]["previous_generation"].clone()
        ),
        (2.into(), 1.into())
    );
    w.assert_no_key_bytes_leaked();
    for printed in &w.printed {
        assert!(
            !printed.contains(bao.root_token()),
            "the Vault token was printed:\n{printed}"
        );
    }
}

/// The minimal one-credential policy exactly as providers/vault/README.md documents it, moved
/// under `prefix`.
fn documented_policy(prefix: &str) -> String {
    let readme = include_str!("../providers/vault/README.md");
    let section = &readme[readme
        .find("## Minimal policy")
        .expect("README has a Minimal policy section")..];
    let start = section.find("```hcl\n").expect("an hcl block") + "```hcl\n".len();
    let end = start + section[start..].find("```").expect("the block ends");
    section[start..end].replace("/rekey/billing/", &format!("/{prefix}/billing/"))
}

/// A token holding only `policy` (and Vault's default policy).
fn token_with_policy(bao: &OpenBao, name: &str, policy: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.hcl");
    std::fs::write(&file, policy).unwrap();
    bao.bao_ok(&["policy", "write", name, file.to_str().unwrap()]);
    let created: serde_json::Value = serde_json::from_str(&bao.bao_ok(&[
        "token",
        "create",
        "-format=json",
        &format!("-policy={name}"),
    ]))
    .unwrap();
    created["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_vault_policy_is_enough_and_a_missing_update_stops_rotation_at_preflight() {
    let bao = OpenBao::shared();
    let (mut w, prefix) = vault_world(bao).await;
    w.import_legacy("billing").await;

    let policy = documented_policy(&prefix);
    let token = token_with_policy(bao, &format!("{prefix}-full"), &policy);
    w.env = vec![("VAULT_TOKEN".into(), token)];
    let ready = w.ok(&["check", "--preflight", "billing"]).await;
    assert!(
        ready.stdout.starts_with("READY    billing"),
        "{}",
        ready.stdout
    );
    w.ok(&["rotate", "billing"]).await;
    let current = format!("secret/{prefix}/billing/current");
    assert_eq!(
        rekey_api_fingerprint(&bao_field(bao, &current, "certificate")),
        w.app_fingerprint("Billing_Sync")
    );

    // The same policy without 'update' on the CURRENT data path.
    let data_current = format!("path \"secret/data/{prefix}/billing/current\"");
    let crippled: String = policy
        .lines()
        .map(|l| if l.starts_with(&data_current) { l.replace(", \"update\"", "") } else { l.to_string() } + "\n")
        .collect();
    assert_ne!(crippled, policy, "the policy line to cripple was found");
    let token = token_with_policy(bao, &format!("{prefix}-crippled"), &crippled);
    w.env = vec![("VAULT_TOKEN".into(), token.clone())];
    let journal_before = w.json(&["journal", "billing"]).await;

    let blocked = w
        .rekey(&["check", "--preflight", "billing", "--json"])
        .await;
    assert_eq!(blocked.code, 77, "{}{}", blocked.stdout, blocked.stderr);
    let rows: serde_json::Value = serde_json::from_str(&blocked.stdout).unwrap();
    let problem = rows[0]["store_problem"].as_str().unwrap();
    assert!(
        problem.contains(&format!(
            "lacks 'update' on secret/data/{prefix}/billing/current"
        )),
        "{problem}"
    );
    assert!(rows[0]["target_problem"].is_null(), "{rows}");

    let refused = w.rekey(&["rotate", "billing"]).await;
    assert_eq!(refused.code, 77, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("lacks 'update'"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        w.json(&["journal", "billing"]).await,
        journal_before,
        "a refused rotation journals nothing"
    );
    assert_eq!(bao_field(bao, &current, "generation").trim(), "2");
    assert_eq!(
        rekey_api_fingerprint(&bao_field(bao, &current, "certificate")),
        w.app_fingerprint("Billing_Sync")
    );
    for printed in &w.printed {
        assert!(
            !printed.contains(&token),
            "a Vault token was printed:\n{printed}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_connection_problems_are_named_with_their_exit_codes() {
    let bao = OpenBao::shared();
    let (mut w, _) = vault_world(bao).await;
    w.env = vec![("VAULT_TOKEN".into(), "s.notarealtoken".into())];
    let bad_token = w.rekey(&["check", "--preflight", "billing"]).await;
    assert_eq!(
        bad_token.code, 77,
        "{}{}",
        bad_token.stdout, bad_token.stderr
    );
    assert!(
        bad_token.stdout.contains("BLOCKED  billing"),
        "{}",
        bad_token.stdout
    );
    assert!(
        !bad_token.stdout.contains("s.notarealtoken"),
        "{}",
        bad_token.stdout
    );

    w.env.clear();
    let no_token = w.rekey(&["status"]).await;
    assert_eq!(no_token.code, 64, "{}", no_token.stderr);
    assert!(
        no_token
            .stderr
            .contains("no Vault token: VAULT_TOKEN is not set"),
        "{}",
        no_token.stderr
    );

    w.env = vec![("VAULT_TOKEN".into(), bao.root_token().into())];
    w.edit_config(|c| c.replace(&bao.addr(), "http://127.0.0.1:1"));
    let unreachable = w.rekey(&["status", "billing"]).await;
    assert_eq!(unreachable.code, 69, "{}", unreachable.stderr);
    assert!(
        unreachable.stderr.contains("127.0.0.1:1"),
        "{}",
        unreachable.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_generation_across_a_file_store_and_vault_and_status_flags_a_store_that_drifted() {
    let bao = OpenBao::shared();
    let mut w = World::new().await;
    let prefix = bao.unique_prefix("multi");
    let vault = format!(
        "[stores.vault]\nkind = \"vault\"\naddress = \"{}\"\npath_prefix = \"{prefix}\"\n\n[stores.local]",
        bao.addr()
    );
    w.edit_config(|c| {
        c.replacen("[stores.local]", &vault, 1).replacen(
            "store = \"local\"",
            "stores = [\"local\", \"vault\"]",
            1,
        )
    });
    w.env.push(("VAULT_TOKEN".into(), bao.root_token().into()));
    w.import_legacy("billing").await;
    let rotated = w.ok(&["rotate", "billing"]).await;
    assert!(
        rotated.stdout.contains("PENDING in file("),
        "{}",
        rotated.stdout
    );
    assert!(
        rotated.stdout.contains(", vault(http://127.0.0.1"),
        "{}",
        rotated.stdout
    );

    // Both stores hold generation 2 as CURRENT, and it is the app's certificate.
    let app = w.app_fingerprint("Billing_Sync");
    let status = w.json(&["status", "billing"]).await;
    assert_eq!(status[0]["app_fingerprint"], app.as_str());
    let stores = status[0]["stores"].as_array().unwrap();
    assert_eq!(stores.len(), 2, "{status}");
    for store in stores {
        assert_eq!(store["generation"], 2, "{store}");
        assert_eq!(store["fingerprint"], app.as_str(), "{store}");
        assert_eq!(store["matches_app"], true, "{store}");
    }
    let current = format!("secret/{prefix}/billing/current");
    assert_eq!(
        rekey_api_fingerprint(&bao_field(bao, &current, "certificate")),
        app
    );
    assert_eq!(
        std::fs::read_to_string(w.path("keys/billing/000002.crt"))
            .unwrap()
            .trim(),
        {
            let pem = bao_field(bao, &current, "certificate");
            pem.trim().to_string()
        }
    );

    // Someone puts another certificate into the replica by hand: status names that store.
    let meta: serde_json::Value =
        serde_json::from_str(&bao.bao_ok(&["kv", "metadata", "get", "-format=json", &current]))
            .unwrap();
    let version = meta["data"]["current_version"].as_u64().unwrap();
    let legacy = format!("certificate=@{}", w.path("billing.crt").display());
    bao.bao_ok(&["kv", "patch", &format!("-cas={version}"), &current, &legacy]);
    let status = w.json(&["status", "billing"]).await;
    assert_eq!(status[0]["stores"][0]["matches_app"], true, "{status}");
    assert_eq!(status[0]["stores"][1]["matches_app"], false, "{status}");
    let text = w.ok(&["status", "billing"]).await;
    assert!(
        text.stdout.contains("DIFFERS FROM THE APP"),
        "{}",
        text.stdout
    );
    w.assert_no_key_bytes_leaked();
}

/// Adds an AWS Secrets Manager store named `aws` (moto on loopback) under a prefix of its own,
/// with the static dummy credentials every AWS test uses and IMDS disabled.
/// What a consumer in AWS reads: `GetSecretValue` with the default stage.
async fn aws_current_certificate(moto: &Moto, secret: &str) -> String {
    let sdk = rekey_testkit::moto::sdk_config(&moto.endpoint()).await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let value = client
        .get_secret_value()
        .secret_id(secret)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(value.secret_string().unwrap()).unwrap();
    json["certificate"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_app_rotation_with_the_key_in_aws_secrets_manager() {
    let moto = Moto::shared();
    let mut w = World::new().await;
    let prefix = with_aws_store(&mut w, moto);
    w.edit_config(|c| c.replacen("store = \"local\"", "store = \"aws\"", 1));
    w.import_legacy("billing").await;
    w.ok(&["check", "--preflight", "billing"]).await;
    w.ok(&["rotate", "billing"]).await;

    let app = w.app_fingerprint("Billing_Sync");
    let cert = aws_current_certificate(moto, &format!("{prefix}/billing")).await;
    assert_eq!(rekey_api_fingerprint(&cert), app);
    let status = w.json(&["status", "billing"]).await;
    assert_eq!(
        (
            status[0]["generation"].clone(),
            status[0]["previous_generation"].clone()
        ),
        (2.into(), 1.into())
    );
    assert_eq!(status[0]["stores"][0]["matches_app"], true, "{status}");
    w.ok(&["verify", "billing"]).await;
    assert_eq!(
        w.rekey(&["verify", "billing", "--stage", "previous"])
            .await
            .code,
        3
    );
    assert_eq!(
        w.json(&["journal", "billing"])
            .await
            .as_array()
            .unwrap()
            .len(),
        12
    );
    w.assert_no_key_bytes_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_generation_in_vault_and_aws_together() {
    let (bao, moto) = (OpenBao::shared(), Moto::shared());
    let (mut w, vault_prefix) = vault_world(bao).await;
    // vault_world turned `local` into the Vault store; add AWS as the replica.
    let aws_prefix = with_aws_store(&mut w, moto);
    w.edit_config(|c| c.replacen("store = \"local\"", "stores = [\"local\", \"aws\"]", 1));
    w.import_legacy("billing").await;
    w.ok(&["rotate", "billing"]).await;

    let app = w.app_fingerprint("Billing_Sync");
    let vault_cert = bao_field(
        bao,
        &format!("secret/{vault_prefix}/billing/current"),
        "certificate",
    );
    let aws_cert = aws_current_certificate(moto, &format!("{aws_prefix}/billing")).await;
    assert_eq!(rekey_api_fingerprint(&vault_cert), app);
    assert_eq!(rekey_api_fingerprint(&aws_cert), app);
    let status = w.json(&["status", "billing"]).await;
    let stores = status[0]["stores"].as_array().unwrap();
    assert_eq!(stores.len(), 2);
    assert!(
        stores
            .iter()
            .all(|s| s["matches_app"] == true && s["generation"] == 2),
        "{status}"
    );
    w.assert_no_key_bytes_leaked();
}
