//! Keys in custody (`kind = "vault_transit"` on OpenBao's transit engine, `kind = "aws_kms"` on
//! moto's KMS): the key is made in the service and only signs there; rotations, `verify`,
//! `token`, `status` and `inspect` work through it; the stores keep only which key it is; the
//! service refuses to export it; an emergency destroys the leaked key in the service; consumers
//! that would need the key, and keys from outside, are refused with nothing changed.
//!
//! The kill -9 matrix on these kinds is in `faults.rs`; agent consumers through a rotation in
//! `agent.rs`.

mod scene;
mod world;

use aws_sdk_kms::types::KeyState as AwsKeyState;
use rekey_api::{KeyHandle, Material, SecretStore, Stage};
use rekey_testkit::moto::sdk_config;
use rekey_testkit::openbao::OpenBao;
use scene::*;
use serde_json::Value;
use x509_parser::prelude::FromDer as _;
use x509_parser::x509::SubjectPublicKeyInfo;

/// The handle CURRENT names in the scene's store.
async fn current_key(s: &Scene) -> KeyHandle {
    handle_at(s.store().await.as_ref(), Stage::Current).await
}

async fn handle_at(store: &dyn SecretStore, stage: Stage) -> KeyHandle {
    match store.read_stage(CRED, stage).await.unwrap() {
        Some(stored) => match stored.material {
            Material::Custody(key) => key.handle().clone(),
            other => panic!("{stage:?} holds {other:?}, not a key in custody"),
        },
        None => panic!("no {stage:?}"),
    }
}

/// The JSON record the store keeps for CURRENT, read around rekey (the `bao` CLI, the AWS SDK).
async fn current_record(s: &Scene) -> Value {
    match s.kind {
        Kind::VaultTransit => {
            let path = format!("secret/{}/{CRED}/current", s.prefix);
            let text = OpenBao::shared().bao_ok(&["kv", "get", "-format=json", &path]);
            let json: Value = serde_json::from_str(&text).unwrap();
            json["data"]["data"].clone()
        }
        Kind::AwsKms => {
            let client = aws_sdk_secretsmanager::Client::new(&sdk_config(&s.endpoint).await);
            let value = client
                .get_secret_value()
                .secret_id(format!("{}/{CRED}", s.prefix))
                .version_stage("AWSCURRENT")
                .send()
                .await
                .unwrap();
            serde_json::from_str(value.secret_string().unwrap()).unwrap()
        }
        other => panic!("{other:?} keeps no keys in custody"),
    }
}

async fn kms(s: &Scene) -> aws_sdk_kms::Client {
    aws_sdk_kms::Client::new(&sdk_config(&s.endpoint).await)
}

/// What the service says of `key` now: (enabled, state), through the service's own API.
async fn service_state(s: &Scene, key: &KeyHandle) -> (bool, String) {
    match s.kind {
        Kind::VaultTransit => {
            let read = OpenBao::shared().bao(&[
                "read",
                "-format=json",
                &format!("transit/keys/{}", key.key_id),
            ]);
            if read.status.success() {
                (true, "present".into())
            } else {
                (false, "deleted".into())
            }
        }
        Kind::AwsKms => {
            let described = kms(s)
                .await
                .describe_key()
                .key_id(&key.key_id)
                .send()
                .await
                .unwrap();
            let meta = described.key_metadata().unwrap();
            (meta.enabled(), format!("{:?}", meta.key_state().unwrap()))
        }
        other => panic!("{other:?} keeps no keys in custody"),
    }
}

/// The service refuses to hand the private key out.
async fn assert_not_exportable(s: &Scene, key: &KeyHandle) {
    match s.kind {
        Kind::VaultTransit => {
            let export = OpenBao::shared().bao(&[
                "read",
                &format!("transit/export/signing-key/{}", key.key_id),
            ]);
            let said = String::from_utf8_lossy(&export.stderr);
            assert!(!export.status.success(), "transit exported the key");
            assert!(said.contains("not exportable"), "{said}");
            assert!(!String::from_utf8_lossy(&export.stdout).contains("PRIVATE KEY"));
        }
        Kind::AwsKms => {
            // KMS has no operation that returns an asymmetric private key; what it hands out is
            // the public key, and the key was made inside it (never imported).
            let client = kms(s).await;
            let meta = client
                .describe_key()
                .key_id(&key.key_id)
                .send()
                .await
                .unwrap();
            let meta = meta.key_metadata().unwrap();
            assert_eq!(meta.origin().unwrap().as_str(), "AWS_KMS");
            assert_eq!(meta.key_usage().unwrap().as_str(), "SIGN_VERIFY");
            let public = client
                .get_public_key()
                .key_id(&key.key_id)
                .send()
                .await
                .unwrap();
            // Only a SubjectPublicKeyInfo: the public half.
            let der = public.public_key().unwrap().as_ref();
            let (_, spki) = SubjectPublicKeyInfo::from_der(der).unwrap();
            assert_eq!(
                spki.algorithm.algorithm.to_id_string(),
                "1.2.840.113549.1.1.1"
            );
        }
        other => panic!("{other:?} keeps no keys in custody"),
    }
}

async fn a_rotation_keeps_the_key_in_the_service(kind: Kind) {
    let mut s = Scene::new(kind).await;
    let context = format!("{kind:?}");
    // Generation 1 was made in the service by the scene's first rotation.
    s.assert_settled(1, &context).await;
    let first = current_key(&s).await;
    let record = current_record(&s).await;
    assert!(record.get("private_key").is_none(), "{context}: {record}");
    assert_eq!(
        record["custody"]["key_id"],
        first.key_id.as_str(),
        "{record}"
    );
    assert_not_exportable(&s, &first).await;

    let status = s.w.json(&["status", CRED]).await;
    let custody = &status[0]["stores"][0]["custody"];
    assert_eq!(custody["exportable"], false, "{status}");
    assert_eq!(custody["enabled"], true, "{status}");
    assert_eq!(
        custody["handle"]["key_id"],
        first.key_id.as_str(),
        "{status}"
    );
    assert_eq!(custody["handle"]["algorithm"], "rsa-2048", "{status}");
    let text = s.w.ok(&["status", CRED]).await;
    assert!(text.stdout.contains("non-exportable"), "{}", text.stdout);

    let inspected = s.w.json(&["inspect", "--credential", CRED]).await;
    assert_eq!(inspected["key_matches_certificate"], true, "{inspected}");
    assert_eq!(
        inspected["files"][1]["kind"], "key_in_custody",
        "{inspected}"
    );
    assert_eq!(inspected["files"][1]["exportable"], false, "{inspected}");
    assert_eq!(
        inspected["files"][1]["handle"]["key_id"],
        first.key_id.as_str()
    );

    // `check` reads the app and the store as for any store: the same certificate, nothing due.
    let check = s.w.rekey(&["check", CRED]).await;
    assert_eq!(check.code, 0, "{context}: {}{}", check.stdout, check.stderr);
    assert!(check.stdout.starts_with("OK "), "{}", check.stdout);

    // A consumer's token, signed by the service.
    let token = s.w.json(&["token", CRED]).await;
    assert_eq!(token["generation"], 1, "{token}");

    // Two more rotations: each generation its own key; the oldest goes once nothing names it.
    s.w.ok(&["rotate", CRED]).await;
    s.assert_settled(2, &context).await;
    let second = current_key(&s).await;
    assert_ne!(second.key_id, first.key_id);
    assert_eq!(
        handle_at(s.store().await.as_ref(), Stage::Previous).await,
        first
    );
    assert!(
        service_state(&s, &first).await.0,
        "{context}: PREVIOUS still signs"
    );
    // From here on only the certificates since generation 2's must keep their keys: generation
    // 1's goes now, in the service and (Secrets Manager) in the store.
    let since = s.w.sim.certificate_history(APP).len() - 1;
    s.w.ok(&["rotate", CRED]).await;
    s.assert_settled_since(since, 3, &context).await;
    let (enabled, state) = service_state(&s, &first).await;
    assert!(
        !enabled,
        "{context}: generation 1's key was pruned: {state}"
    );
    assert!(
        service_state(&s, &second).await.0,
        "{context}: PREVIOUS still signs"
    );
    s.assert_no_leaks(&context);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_with_keys_in_vault_transit_never_let_the_key_out() {
    a_rotation_keeps_the_key_in_the_service(Kind::VaultTransit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_with_keys_in_aws_kms_never_let_the_key_out() {
    a_rotation_keeps_the_key_in_the_service(Kind::AwsKms).await;
}

async fn an_emergency_destroys_the_leaked_key_in_the_service(kind: Kind) {
    let mut s = Scene::new(kind).await;
    let leaked = current_key(&s).await;
    let report =
        s.w.json(&[
            "emergency",
            CRED,
            "--reason",
            "key in custody misused",
            "--yes",
        ])
        .await;
    let path = report[0]["evidence"].as_str().expect("an evidence path");
    let bundle: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let destroyed = bundle["destroyed"].as_str().unwrap_or_default();
    let means = match kind {
        Kind::VaultTransit => "transit keys deleted",
        _ => "KMS keys disabled and scheduled for deletion in 7 days",
    };
    assert!(destroyed.contains(means), "{kind:?}: {bundle}");
    // The leaked generation's certificate is gone with its key: only the new one must have one.
    let since = s.w.sim.certificate_history(APP).len() - 1;
    s.assert_settled_since(since, 2, &format!("{kind:?} after the emergency"))
        .await;
    let (enabled, state) = service_state(&s, &leaked).await;
    assert!(!enabled, "{kind:?}: the leaked key is disabled: {state}");
    let store = s.store().await;
    match kind {
        Kind::VaultTransit => {
            // Gone from the service: nothing can sign with it any more.
            let custody = store.custody().unwrap();
            let err = custody.sign(&leaked, b"header.claims").await.unwrap_err();
            assert!(err.to_string().contains(&leaked.key_id), "{err}");
        }
        _ => {
            // moto 5.2.5 still signs with a key pending deletion (AWS refuses: the key state is
            // the proof here); its deletion is a week out, AWS's shortest window.
            assert_eq!(state, format!("{:?}", AwsKeyState::PendingDeletion));
            let meta = kms(&s)
                .await
                .describe_key()
                .key_id(&leaked.key_id)
                .send()
                .await
                .unwrap();
            let when = meta.key_metadata().unwrap().deletion_date().unwrap().secs();
            let days = (when - chrono::Utc::now().timestamp()) as f64 / 86_400.0;
            assert!((6.9..=7.1).contains(&days), "deletion in {days} days");
        }
    }
    // The stores no longer name it.
    for stage in [Stage::Current, Stage::Pending, Stage::Previous] {
        if let Some(v) = store.read_stage(CRED, stage).await.unwrap()
            && let Material::Custody(key) = &v.material
        {
            assert_ne!(key.handle().key_id, leaked.key_id, "{stage:?}");
        }
    }
    s.w.printed.push(bundle.to_string());
    s.assert_no_leaks(&format!("{kind:?} emergency"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_deletes_the_leaked_transit_key() {
    an_emergency_destroys_the_leaked_key_in_the_service(Kind::VaultTransit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_schedules_the_leaked_kms_key_for_deletion() {
    an_emergency_destroys_the_leaked_key_in_the_service(Kind::AwsKms).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_would_hand_a_key_in_custody_out_is_refused_with_nothing_changed() {
    let mut s = Scene::new(Kind::VaultTransit).await;
    let before = s.w.json(&["status", CRED]).await;
    let config = std::fs::read_to_string(s.w.path("rekey.toml")).unwrap();

    // A key from outside cannot be put in custody.
    let import =
        s.w.rekey(&[
            "import",
            CRED,
            "--key",
            "billing.key",
            "--cert",
            "billing.crt",
        ])
        .await;
    assert_eq!(import.code, 64, "{}", import.stderr);
    assert!(
        import.stderr.contains("keeps its keys in custody"),
        "{}",
        import.stderr
    );
    assert!(
        import.stderr.contains("rekey rotate billing"),
        "{}",
        import.stderr
    );

    // Consumers that would be handed the key are refused at load, where they are declared.
    for (consumer, why) in [
        (
            "kind = \"file\"\nkey_path = \"out/billing.key\"\ncert_path = \"out/billing.crt\"",
            "a file consumer writes the private key to a file",
        ),
        (
            "kind = \"exec\"\ncommand = [\"/bin/true\"]\ndeliver_key = \"stdin\"",
            "an exec consumer with deliver_key is handed the private key",
        ),
    ] {
        s.w.edit_config(|_| {
            format!("{config}\n[[credentials.{CRED}.consumers]]\nname = \"etl\"\n{consumer}\n")
        });
        let check = s.w.rekey(&["config", "check"]).await;
        assert_eq!(check.code, 64, "{}", check.stderr);
        let line = config.lines().count() + 2;
        assert!(
            check.stderr.contains(&format!("rekey.toml:{line}:")),
            "{}",
            check.stderr
        );
        assert!(check.stderr.contains(why), "{}", check.stderr);
        assert!(
            check
                .stderr
                .contains("keys in custody are never handed out"),
            "{}",
            check.stderr
        );
        assert!(check.stderr.contains("rekey agent"), "{}", check.stderr);
    }
    // A consumer that reads the store (through `rekey token` / `rekey agent`) is fine.
    s.w.edit_config(|_| {
        format!("{config}\n[[credentials.{CRED}.consumers]]\nname = \"etl\"\nkind = \"store\"\n")
    });
    s.w.ok(&["config", "check"]).await;
    s.w.edit_config(|_| config.clone());
    assert_eq!(s.w.json(&["status", CRED]).await, before, "nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_names_the_transit_permission_a_token_lacks() {
    let bao = OpenBao::shared();
    let mut s = Scene::new(Kind::VaultTransit).await;
    let policy = format!("custody-{}", s.prefix);
    // Everything a rotation needs but signing.
    let hcl = format!(
        "path \"secret/data/{p}/*\" {{ capabilities = [\"create\", \"read\", \"update\"] }}\n\
         path \"secret/metadata/{p}/*\" {{ capabilities = [\"create\", \"read\", \"update\"] }}\n\
         path \"secret/destroy/{p}/*\" {{ capabilities = [\"update\"] }}\n\
         path \"transit/keys/{p}-{CRED}-*\" {{ capabilities = [\"create\", \"read\", \"update\", \"delete\"] }}\n\
         path \"transit/keys\" {{ capabilities = [\"list\"] }}\n",
        p = s.prefix
    );
    let file = s.w.path("custody.hcl");
    std::fs::write(&file, hcl).unwrap();
    bao.bao_ok(&["policy", "write", &policy, file.to_str().unwrap()]);
    let token = bao
        .bao_ok(&["token", "create", "-field=token", "-policy", &policy])
        .trim()
        .to_string();
    s.w.env.retain(|(k, _)| k != "VAULT_TOKEN");
    s.w.env.push(("VAULT_TOKEN".into(), token));
    let run = s.w.rekey(&["check", "--preflight", "--json"]).await;
    let rows: Value = serde_json::from_str(&run.stdout).unwrap();
    let problem = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["credential"] == CRED)
        .and_then(|r| r["store_problem"].as_str())
        .unwrap_or_else(|| panic!("no store problem: {rows}"))
        .to_string();
    assert!(
        problem.contains("lacks 'update' on transit/sign/"),
        "{problem}"
    );
    assert!(
        !problem.contains("secret/"),
        "only what is missing: {problem}"
    );
}
