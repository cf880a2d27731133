//! What an operator sees in the situations an independent probe found wanting (issue 15): the
//! monitor during rekey's own rotation, exit codes and words for bad input and partial failures,
//! and the promises the README makes that had no test. Every test runs the real binary.

mod world;

use serde_json::Value;
use world::{Held, World};

const CRED: &str = "billing";

/// `check CRED --json`'s row, whatever its exit code, and the code.
async fn check(w: &mut World, ahead: i64) -> (i32, Value) {
    let run = w.rekey_ahead(ahead, &["check", CRED, "--json"]).await;
    let rows: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "check printed non-JSON ({e}):\n{}{}",
            run.stdout, run.stderr
        )
    });
    (run.code, rows[0].clone())
}

fn finding<'a>(row: &'a Value, id: &str) -> Option<&'a Value> {
    row["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id)
}

fn no_drift(row: &Value, context: &str) {
    for f in row["findings"].as_array().unwrap() {
        let id = f["id"].as_str().unwrap();
        assert!(
            !id.starts_with("drift/") && f["severity"] != "critical",
            "{context}: rekey's own rotation is no drift:\n{row:#}"
        );
    }
}

// Item 4: between publish and promote the app holds the open rotation's PENDING certificate, and
// while a rotation is undone the app holds its PREVIOUS one before the store does: neither is
// drift, and `check`, `status` and the alerts say a rotation is in progress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_status_call_rekeys_own_rotation_in_progress_not_drift() {
    let mut w = World::new().await;
    w.import_legacy(CRED).await;
    let held = Held::spawn(&w, &["rotate", CRED], "publish:done")
        .reached(&mut w)
        .await;
    let (code, row) = check(&mut w, 0).await;
    no_drift(&row, "between publish and promote");
    assert_eq!(code, 0, "an info finding exits 0:\n{row:#}");
    let progress = finding(&row, "rotation-in-progress").expect("the rotation is reported");
    assert_eq!(progress["severity"], "info", "{row:#}");
    assert!(
        progress["message"]
            .as_str()
            .unwrap()
            .contains("is in progress"),
        "{progress}"
    );
    let status = w.json(&["status", CRED]).await;
    assert_eq!(status[0]["stores"][0]["matches_app"], false, "{status:#}");
    assert_eq!(
        status[0]["stores"][0]["rotation_in_progress"], true,
        "{status:#}"
    );
    let text = w.ok(&["status", CRED]).await.stdout;
    assert!(
        text.contains("rotation in progress") && !text.contains("DIFFERS"),
        "{text}"
    );
    // Longer than verify_timeout_secs (60 in this world): worth a warning, still no drift.
    let (code, row) = check(&mut w, 120).await;
    no_drift(&row, "stuck after publish");
    assert_eq!(code, 1, "{row:#}");
    let stuck = finding(&row, "rotation-in-progress").unwrap();
    assert_eq!(stuck["severity"], "warning");
    assert!(
        stuck["message"]
            .as_str()
            .unwrap()
            .contains("`rekey resume billing`"),
        "{stuck}"
    );
    let done = held.release(&mut w).await;
    assert_eq!(done.code, 0, "{}{}", done.stdout, done.stderr);
    let (code, row) = check(&mut w, 0).await;
    assert_eq!(code, 0, "{row:#}");
    assert!(finding(&row, "rotation-in-progress").is_none(), "{row:#}");

    // The undo variant: promoted, then aborted; held after restore put the previous certificate
    // back on the app while the store still has the new one CURRENT.
    let held = Held::spawn(&w, &["rotate", CRED], "promote:done")
        .reached(&mut w)
        .await;
    held.kill(&mut w).await;
    let abort = Held::spawn(&w, &["abort", CRED, "--reason", "probe"], "restore:done")
        .reached(&mut w)
        .await;
    let (code, row) = check(&mut w, 0).await;
    no_drift(&row, "between restore and revert");
    assert_eq!(code, 0, "{row:#}");
    let undoing = finding(&row, "rotation-in-progress").expect("the undo is reported");
    assert!(
        undoing["message"]
            .as_str()
            .unwrap()
            .contains("being undone"),
        "{undoing}"
    );
    let done = abort.release(&mut w).await;
    assert_eq!(done.code, 0, "{}{}", done.stdout, done.stderr);
    w.assert_no_key_bytes_leaked();
}

// Item 8: exit codes and words.

/// `name` converted by openssl into `dir/out` with `args` (e.g. DER, or encrypted).
fn convert(w: &World, args: &[&str], from: &str, out: &str) -> String {
    let (from, out_path) = (w.path(from), w.path(out));
    let mut all = args.to_vec();
    all.extend([
        "-in",
        from.to_str().unwrap(),
        "-out",
        out_path.to_str().unwrap(),
    ]);
    world::openssl(&all);
    out.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn der_and_encrypted_files_are_named_with_the_command_that_converts_them() {
    let mut w = World::new().await;
    let cert_der = convert(
        &w,
        &["x509", "-outform", "der"],
        "billing.crt",
        "billing.crt.der",
    );
    let key_der = convert(
        &w,
        &["pkey", "-outform", "der"],
        "billing.key",
        "billing.key.der",
    );
    let encrypted = convert(
        &w,
        &["pkey", "-aes256", "-passout", "pass:secret"],
        "billing.key",
        "billing.key.enc",
    );
    let legacy = convert(
        &w,
        &["rsa", "-aes256", "-passout", "pass:secret", "-traditional"],
        "billing.key",
        "billing.key.enc1",
    );
    for (args, words) in [
        (
            vec!["inspect", cert_der.as_str()],
            vec![
                "DER",
                "openssl x509 -inform der -in billing.crt.der -out billing.crt.der.pem",
            ],
        ),
        (
            vec!["inspect", key_der.as_str()],
            vec![
                "DER",
                "a private key",
                "openssl pkey -inform der -in billing.key.der",
            ],
        ),
        (
            vec![
                "import",
                "billing",
                "--key",
                "billing.key",
                "--cert",
                cert_der.as_str(),
            ],
            vec!["DER", "openssl x509 -inform der"],
        ),
        (
            vec![
                "import",
                "billing",
                "--key",
                key_der.as_str(),
                "--cert",
                "billing.crt",
            ],
            vec!["DER", "openssl pkey -inform der"],
        ),
        (
            vec![
                "import",
                "billing",
                "--key",
                encrypted.as_str(),
                "--cert",
                "billing.crt",
            ],
            vec![
                "encrypted",
                "openssl pkey -in billing.key.enc -out billing.key.enc.dec",
            ],
        ),
        (
            vec!["inspect", legacy.as_str()],
            vec!["encrypted", "openssl pkey -in billing.key.enc1"],
        ),
    ] {
        let run = w.rekey(&args).await;
        assert_eq!(
            run.code, 65,
            "{args:?}: unreadable input is 65\n{}",
            run.stderr
        );
        for word in words {
            assert!(
                run.stderr.contains(word),
                "{args:?}: says {word}:\n{}",
                run.stderr
            );
        }
        assert!(!run.stderr.contains("UTF-8"), "{}", run.stderr);
    }
    // Nothing was imported.
    let status = w.json(&["status", CRED]).await;
    assert!(status[0]["generation"].is_null(), "{status}");
    // The admin key file too (the org's admin login).
    w.edit_config(|c| c.replace("key_file = \"admin.key\"", "key_file = \"billing.key.der\""));
    let run = w.rekey(&["rotate", CRED]).await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(
        run.stderr.contains("admin key file") && run.stderr.contains("DER"),
        "{}",
        run.stderr
    );
}

/// The deploy path of the emulator's Metadata API.
const DEPLOY: &str = "/services/data/v67.0/metadata/deployRequest";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_check_only_deploy_changed_nothing_and_says_what_is_left_and_how_to_clear_it() {
    let mut w = World::new().await;
    w.import_legacy(CRED).await;
    let before = w.app_fingerprint("Billing_Sync");
    // Every deploy answers 503: the check-only one, first, never gets through.
    w.sim.inject_fault(
        orgsim::Fault::new(orgsim::FaultKind::ServerError {
            status: 503,
            body: "down".into(),
        })
        .on_path(DEPLOY),
    );
    let run = w.rekey(&["rotate", CRED]).await;
    assert_eq!(run.code, 5, "nothing reached the app:\n{}", run.stderr);
    assert!(
        !run.stderr.contains("may already be on the app"),
        "{}",
        run.stderr
    );
    for words in [
        "the app was not changed",
        "staged as PENDING",
        "`rekey resume billing`",
        "`rekey abort billing` clears it",
    ] {
        assert!(run.stderr.contains(words), "says {words}:\n{}", run.stderr);
    }
    assert_eq!(w.app_fingerprint("Billing_Sync"), before);
    let status = w.json(&["status", CRED]).await;
    assert!(status[0]["open_rotation"].is_string(), "{status}");
    assert_eq!(status[0]["pending_generation"], 2, "{status}");
    // The command it names clears exactly that.
    w.sim.clear_faults();
    w.ok(&["abort", CRED]).await;
    let status = w.json(&["status", CRED]).await;
    assert!(status[0]["open_rotation"].is_null(), "{status}");
    assert!(status[0]["pending_generation"].is_null(), "{status}");
    assert_eq!(status[0]["generation"], 1, "{status}");

    // A deploy Salesforce refuses (rolled back whole) says the same.
    w.sim.inject_fault(
        orgsim::Fault::new(orgsim::FaultKind::DeployFails {
            problem: "Invalid certificate".into(),
        })
        .times(1),
    );
    let run = w.rekey(&["rotate", CRED]).await;
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(run.stderr.contains("Invalid certificate"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("nothing was changed"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("staged as PENDING"), "{}", run.stderr);
    w.ok(&["resume", CRED]).await;
    assert_eq!(w.json(&["status", CRED]).await[0]["generation"], 3);
    w.assert_no_key_bytes_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_with_type_and_range_errors_reports_them_all() {
    let mut w = World::new().await;
    w.edit_config(|c| {
        c.replace("verify_timeout_secs = 60", "verify_timeout_secs = \"soon\"")
            .replace("validity_days = 365", "validity_days = -5")
            .replace("warn_days = 28", "warn_days = \"x\"")
    });
    let run = w.rekey(&["status"]).await;
    assert_eq!(run.code, 64, "{}", run.stderr);
    for problem in [
        "invalid type: string \"soon\"",
        "invalid type: string \"x\"",
        "validity_days = -5 is out of range",
    ] {
        assert!(
            run.stderr.contains(problem),
            "reports {problem}:\n{}",
            run.stderr
        );
    }
    assert!(!run.stderr.contains("missing field"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_message_names_the_holders_pid_once() {
    let mut w = World::new().await;
    w.import_legacy(CRED).await;
    let held = Held::spawn(&w, &["rotate", CRED], "publish:done")
        .reached(&mut w)
        .await;
    let pid = held.child.id().unwrap();
    let run = w.rekey(&["rotate", CRED]).await;
    assert_eq!(run.code, 75, "{}", run.stderr);
    assert_eq!(
        run.stderr.matches(&pid.to_string()).count(),
        1,
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("(pid {pid})")),
        "{}",
        run.stderr
    );
    held.release(&mut w).await;
}

/// With `-v` every request to Salesforce is logged (method, host, path), with `-vv` its answer
/// too; never a query, a token or a key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbose_logs_each_salesforce_request_without_secrets() {
    let mut w = World::new().await;
    w.import_legacy(CRED).await;
    let host = w.sim.base_url().trim_start_matches("http://").to_string();
    let quiet = w.ok(&["check", CRED]).await;
    assert!(!quiet.stderr.contains("request "), "{}", quiet.stderr);
    let v = w.ok(&["-v", "rotate", CRED]).await;
    for line in [
        format!("request POST {host}/services/oauth2/token"),
        format!("request POST {host}/services/data/v67.0/metadata/deployRequest"),
        format!("request GET {host}/services/data/v67.0/metadata/deployRequest/"),
    ] {
        assert!(v.stderr.contains(&line), "-v logs {line}:\n{}", v.stderr);
    }
    assert!(!v.stderr.contains("answer 200"), "{}", v.stderr);
    assert!(
        !v.stderr.contains("includeDetails"),
        "no query: {}",
        v.stderr
    );
    let vv = w.ok(&["-vv", "verify", CRED]).await;
    assert!(
        vv.stderr
            .contains(&format!("answer 200 to POST {host}/services/oauth2/token")),
        "{}",
        vv.stderr
    );
    for secret in ["assertion=", "access_token", "Bearer "] {
        assert!(
            !v.stderr.contains(secret) && !vv.stderr.contains(secret),
            "{secret}"
        );
    }
    w.assert_no_key_bytes_leaked();
}

/// An outage of the token endpoint while verifying is no refusal: rekey keeps asking, and once
/// Salesforce answers within the deadline the rotation finishes. Past the deadline it is a failed
/// verification like any other: on_verify_failure = "rollback" puts the previous certificate back
/// (the Metadata API still works), and the proof that the previous key works waits for the token
/// endpoint, so `resume` finishes the undo once it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_outage_while_verifying_is_not_a_refusal_and_the_deadline_rolls_back() {
    let mut w = World::new().await;
    w.import_legacy(CRED).await;
    let old = w.app_fingerprint("Billing_Sync");
    w.edit_config(|c| c.replace("verify_timeout_secs = 60", "verify_timeout_secs = 3"));
    let outage = |times: Option<u32>| {
        let fault = orgsim::Fault::new(orgsim::FaultKind::ServerError {
            status: 503,
            body: "down".into(),
        })
        .on_path("/services/oauth2/token");
        match times {
            Some(n) => fault.times(n),
            None => fault,
        }
    };

    // Two unanswered attempts, then Salesforce is back: no refusal, no rollback.
    let held = Held::spawn(&w, &["rotate", CRED], "verify:begin")
        .reached(&mut w)
        .await;
    w.sim.inject_fault(outage(Some(2)));
    let run = held.release(&mut w).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("got no answer"), "{}", run.stdout);
    assert!(
        !run.stdout.contains("refused") && !run.stdout.contains("rolling back"),
        "an outage is no refusal:\n{}",
        run.stdout
    );
    let rotated = w.current_fingerprint(CRED).await;
    assert_eq!(w.app_fingerprint("Billing_Sync"), rotated);

    // Down past the deadline: rolled back as the policy says, the undo left open until the
    // previous key can be proven, then finished by `resume`.
    let held = Held::spawn(&w, &["rotate", CRED], "verify:begin")
        .reached(&mut w)
        .await;
    w.sim.inject_fault(outage(None));
    let run = held.release(&mut w).await;
    assert_eq!(run.code, 4, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("got no answer") && !run.stdout.contains("refused ("),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("rolling back") && run.stdout.contains("did not answer"),
        "{}{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(
        w.app_fingerprint("Billing_Sync"),
        rotated,
        "the previous certificate is back on the app"
    );
    assert_eq!(w.current_fingerprint(CRED).await, rotated, "not promoted");
    w.sim.clear_faults();
    let resumed = w.rekey(&["resume", CRED]).await;
    assert_eq!(resumed.code, 7, "{}{}", resumed.stdout, resumed.stderr);
    assert_eq!(w.app_fingerprint("Billing_Sync"), rotated);
    assert_ne!(rotated, old);
    let status = w.json(&["status", CRED]).await;
    assert!(status[0]["open_rotation"].is_null(), "{status}");
}

/// Every key generation `store` holds for `billing`, as PEM, for the leak scan.
async fn keys_in(store: &dyn rekey_api::SecretStore) -> Vec<String> {
    let mut pems = Vec::new();
    for g in 1..=4 {
        if let Some(k) = store
            .read_generation(CRED, rekey_api::Generation(g))
            .await
            .unwrap()
        {
            pems.push(rekey_testkit::conformance::secret_of(&k.material));
        }
    }
    assert!(pems.len() >= 2, "the rotation's keys are in the store");
    pems
}

/// `-v` logs each request to Vault and to AWS (method, host, path; AWS's operation), `-vv`
/// their answers; and neither, nor anything else rekey printed or journaled, holds a fragment
/// of the keys generated into Vault or AWS (read back from the servers after the rotation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbose_logs_vault_and_aws_requests_and_no_key_generated_there_leaks() {
    use rekey_testkit::{moto::Moto, openbao::OpenBao};
    let bao = OpenBao::shared();
    let (mut w, prefix) = world::vault_world(bao).await;
    w.import_legacy(CRED).await;
    let v = w.ok(&["-v", "rotate", CRED]).await;
    let host = bao.addr().trim_start_matches("http://").to_string();
    let read = format!("request GET {host}/v1/secret/data/{prefix}/billing/");
    let write = format!("request POST {host}/v1/secret/data/{prefix}/billing/");
    assert!(
        v.stderr.contains(&read) && v.stderr.contains(&write),
        "{read} / {write}:\n{}",
        v.stderr
    );
    let vv = w.ok(&["-vv", "status", CRED]).await;
    assert!(vv.stderr.contains("success answer to GET"), "{}", vv.stderr);
    let auth =
        rekey_vault::VaultAuth::Token(rekey_api::SecretString::new(bao.root_token().to_string()));
    let mut config = rekey_vault::VaultConfig::new(bao.addr(), auth);
    config.path_prefix = prefix;
    let vault = rekey_vault::VaultStore::new(config).unwrap();
    w.assert_no_key_bytes_leaked_with(&keys_in(&vault).await);

    let moto = Moto::shared();
    let mut w = World::new().await;
    let prefix = world::with_aws_store(&mut w, moto);
    w.edit_config(|c| c.replacen("store = \"local\"", "store = \"aws\"", 1));
    w.import_legacy(CRED).await;
    let v = w.ok(&["-v", "rotate", CRED]).await;
    let host = moto.endpoint().trim_start_matches("http://").to_string();
    for op in [
        "GetSecretValue",
        "PutSecretValue",
        "UpdateSecretVersionStage",
    ] {
        let line = format!("request POST {host}/ ({op})");
        assert!(v.stderr.contains(&line), "{line}:\n{}", v.stderr);
    }
    let vv = w.ok(&["-vv", "rotate", CRED]).await;
    assert!(vv.stderr.contains("answer 200"), "{}", vv.stderr);
    let config = rekey_aws::AwsConfig {
        name_prefix: prefix,
        ..rekey_aws::AwsConfig::default()
    };
    let aws = rekey_aws::AwsStore::with_sdk_config(
        config,
        &rekey_testkit::moto::sdk_config(&moto.endpoint()).await,
    )
    .unwrap();
    w.assert_no_key_bytes_leaked_with(&keys_in(&aws).await);
}

// Item 10: promises without a test.

/// The modulus size openssl reads from `pem` (a key or a certificate).
fn rsa_bits(pem: &str, certificate: bool) -> String {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), pem).unwrap();
    let path = tmp.path().to_str().unwrap();
    let out = if certificate {
        world::openssl(&["x509", "-noout", "-text", "-in", path])
    } else {
        world::openssl(&["pkey", "-noout", "-text", "-in", path])
    };
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("Private-Key: (") || l.contains("Public-Key: ("))
        .unwrap_or_else(|| panic!("no key size in:\n{text}"));
    line.split('(')
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string()
}

/// `key_algorithm = "rsa-3072"` and `"rsa-4096"` rotate to keys of that size: the key in the
/// store and the certificate on the app, as openssl reads them, and Salesforce accepts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_with_rsa_3072_and_rsa_4096_keys() {
    use rekey_api::SecretStore as _;
    let mut w = World::new().await;
    w.import_legacy(CRED).await;
    for bits in ["3072", "4096"] {
        w.edit_config(|c| {
            let start = c.find("key_algorithm = \"rsa-").unwrap();
            let end = start + "key_algorithm = \"rsa-2048\"".len();
            format!("{}key_algorithm = \"rsa-{bits}\"{}", &c[..start], &c[end..])
        });
        w.ok(&["rotate", CRED]).await;
        let stored = rekey_file::FileStore::new(w.path("keys"))
            .read_stage(CRED, rekey_api::Stage::Current)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            rsa_bits(stored.material.key().unwrap().expose_secret_pem(), false),
            bits,
            "the stored key"
        );
        assert_eq!(
            rsa_bits(stored.info.public.certificate().unwrap().pem(), true),
            bits,
            "the stored certificate"
        );
        let on_app = w.sim.app_certificate_pem("Billing_Sync").unwrap();
        assert_eq!(rsa_bits(&on_app, true), bits, "the certificate on the app");
        w.ok(&["verify", CRED]).await;
    }
    w.assert_no_key_bytes_leaked();
}

/// The release build ignores the test-only hooks (hold points, clock offset). Building the
/// release profile here would take longer than the whole suite, so this checks, in the product
/// source that build compiles (src/ and every provider's src/, test modules aside), the one
/// thing that decides it: every read of a `REKEY_TEST_*` variable is inside a function compiled
/// only `#[cfg(debug_assertions)]`, and a `#[cfg(not(debug_assertions))]` function of the same
/// name stands in for it, reading nothing. The debug build's hooks work (the fault matrix uses
/// them), so a hook outside such a function would reach release builds.
#[test]
fn the_test_hooks_are_compiled_only_into_debug_builds() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![root.join("src")];
    for entry in std::fs::read_dir(root.join("providers")).unwrap() {
        dirs.push(entry.unwrap().path().join("src"));
    }
    let fn_name = |line: &str| -> Option<String> {
        let rest = line.trim_start();
        let rest = rest
            .strip_prefix("pub(crate) ")
            .or_else(|| rest.strip_prefix("pub(super) "))
            .or_else(|| rest.strip_prefix("pub "))
            .unwrap_or(rest);
        let rest = rest.strip_prefix("async ").unwrap_or(rest);
        let name = rest.strip_prefix("fn ")?;
        Some(name.split(['(', '<']).next().unwrap().to_string())
    };
    let mut hooks = Vec::new();
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        for file in world::walk(dir)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        {
            let text = std::fs::read_to_string(&file).unwrap();
            let code = text.split("\n#[cfg(test)]\nmod tests {").next().unwrap();
            let lines: Vec<&str> = code.lines().collect();
            for (n, line) in lines.iter().enumerate() {
                let trimmed = line.trim_start();
                if trimmed.starts_with("//") || !line.contains("\"REKEY_TEST_") {
                    continue;
                }
                let place = format!("{}:{}", file.display(), n + 1);
                let (at, name) = lines[..n]
                    .iter()
                    .enumerate()
                    .rev()
                    .find_map(|(i, l)| Some((i, fn_name(l)?)))
                    .unwrap_or_else(|| panic!("{place}: a test hook outside any function"));
                let attributes: Vec<&str> = lines[..at]
                    .iter()
                    .rev()
                    .map(|l| l.trim())
                    .take_while(|l| l.starts_with("#[") || l.starts_with("///"))
                    .collect();
                assert!(
                    attributes.contains(&"#[cfg(debug_assertions)]"),
                    "{place}: fn {name} reads a test hook but is not #[cfg(debug_assertions)]"
                );
                let stand_in = lines.windows(2).any(|w| {
                    w[0].trim() == "#[cfg(not(debug_assertions))]"
                        && fn_name(w[1]).as_deref() == Some(name.as_str())
                });
                assert!(
                    stand_in,
                    "{place}: no #[cfg(not(debug_assertions))] fn {name} for release builds"
                );
                hooks.push(format!("{place} {name}"));
            }
        }
    }
    // The hooks this check exists for: the hold point and the clock offset.
    for hook in ["hold_point", "offset"] {
        assert!(
            hooks.iter().any(|h| h.ends_with(&format!(" {hook}"))),
            "{hook} not found: {hooks:?}"
        );
    }
}
