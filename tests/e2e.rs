//! End to end: the real `rekey` binary against the org emulator and the file store.
//!
//! Each test builds a fresh world in a temporary directory: keys made by `openssl` the way the
//! Salesforce docs tell users to make them, the shared demo seed (tests/demo), an emulator on a
//! free loopback port, and a `rekey.toml` pointing at it.

mod world;

use orgsim::{Fault, FaultKind, PropagationMode};
use rekey_testkit::moto::Moto;
use rekey_testkit::openbao::OpenBao;
use world::{World, openssl, rekey_api_fingerprint, vault_world, with_aws_store};

const ECA_GLOBAL: &str = "ExtlClntAppGlobalOauthSettings";
const ECA_COMPONENTS: [(&str, &str); 5] = [
    ("ExternalClientApplication", "Billing_Sync_ECA"),
    ("ExtlClntAppOauthSettings", "Billing_Sync_ECA_oauth"),
    (ECA_GLOBAL, "Billing_Sync_ECA_glbloauth"),
    (
        "ExtlClntAppOauthConfigurablePolicies",
        "Billing_Sync_ECA_oauthPlcy",
    ),
    ("ExtlClntAppConfigurablePolicies", "Billing_Sync_ECA_plcy"),
];

/// The XML with its `<certificate>` element removed, to compare everything else.
fn without_certificate(xml: &str) -> String {
    let start = xml
        .find("<certificate>")
        .expect("certificate element present");
    let end = xml.find("</certificate>").unwrap() + "</certificate>".len();
    format!("{}{}", &xml[..start], &xml[end..])
}

fn app_state(world: &World, credential: &str) -> Vec<String> {
    match credential {
        "billing" => vec![without_certificate(
            &world.sim.connected_app_xml("Billing_Sync").unwrap(),
        )],
        _ => ECA_COMPONENTS
            .iter()
            .map(|(ty, member)| {
                let xml = world
                    .sim
                    .eca_component_xml(ty, member)
                    .unwrap_or_else(|| panic!("{ty} {member} missing"));
                if *ty == ECA_GLOBAL {
                    without_certificate(&xml)
                } else {
                    xml
                }
            })
            .collect(),
    }
}

async fn rotate_end_to_end(credential: &str, app: &str) {
    let mut w = World::new().await;
    w.import_legacy(credential).await;
    let old_fingerprint = w.current_fingerprint(credential).await;
    assert_eq!(
        w.app_fingerprint(app),
        old_fingerprint,
        "import keeps the app's certificate"
    );
    let before = app_state(&w, credential);
    w.ok(&["verify", credential]).await;

    let plan = w.json(&["plan", credential]).await;
    let steps: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "generate", "stage", "publish", "verify", "promote", "finalize"
        ]
    );

    let rotated = w.ok(&["rotate", credential]).await;
    for step in steps {
        assert!(
            rotated.stdout.contains(&format!("  {step}")),
            "no progress line for {step}:\n{}",
            rotated.stdout
        );
    }

    // The app holds exactly the store's CURRENT certificate, and nothing else about it changed.
    let new_fingerprint = w.current_fingerprint(credential).await;
    assert_ne!(new_fingerprint, old_fingerprint);
    assert_eq!(w.app_fingerprint(app), new_fingerprint);
    assert_eq!(
        app_state(&w, credential),
        before,
        "a field other than the certificate changed"
    );

    // Salesforce accepts the new key and refuses the old one with its own error text.
    w.ok(&["verify", credential]).await;
    let old = w
        .rekey(&["verify", credential, "--stage", "previous"])
        .await;
    assert_eq!(old.code, 3, "{}{}", old.stdout, old.stderr);
    assert!(
        old.stdout
            .contains("refused: invalid_grant: invalid assertion"),
        "{}",
        old.stdout
    );

    // The journal holds begin and done for every step of one rotation, and nothing is open.
    let journal = w.json(&["journal", credential]).await;
    let entries = journal.as_array().unwrap();
    let rotation_id = entries.last().unwrap()["rotation_id"].as_str().unwrap();
    let of_rotation: Vec<String> = entries
        .iter()
        .filter(|e| e["rotation_id"] == rotation_id)
        .map(|e| {
            format!(
                "{} {}",
                e["step"].as_str().unwrap(),
                e["phase"].as_str().unwrap()
            )
        })
        .collect();
    let expected: Vec<String> = [
        "generate", "stage", "publish", "verify", "promote", "finalize",
    ]
    .iter()
    .flat_map(|s| [format!("{s} begin"), format!("{s} done")])
    .collect();
    assert_eq!(of_rotation, expected);
    let status = w.json(&["status", credential]).await;
    assert_eq!(status[0]["generation"], 2);
    assert_eq!(status[0]["previous_generation"], 1);
    assert!(status[0]["open_rotation"].is_null());
    assert!(status[0]["pending_generation"].is_null());

    // What rekey wrote is accepted by openssl.
    let store = w.path(&format!("keys/{credential}"));
    let text = openssl(&[
        "x509",
        "-noout",
        "-text",
        "-in",
        store.join("000002.crt").to_str().unwrap(),
    ]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("Public-Key: (2048 bit)") && text.contains("Digital Signature"),
        "{text}"
    );
    let check = openssl(&[
        "rsa",
        "-check",
        "-noout",
        "-in",
        store.join("000002.key").to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&check.stdout).contains("RSA key ok"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(store.join("000002.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // A second rotation moves on from the first; -vv logs every call to stderr, and still no
    // secret: the leak check below covers it, and no access token (they start with the org id).
    let verbose = w.ok(&["rotate", credential, "-vv"]).await;
    assert!(
        verbose.stderr.contains("deploy succeeded"),
        "{}",
        verbose.stderr
    );
    assert!(
        !verbose.stderr.contains("00D5g000000ACME!"),
        "an access token was logged:\n{}",
        verbose.stderr
    );
    let status = w.json(&["status", credential]).await;
    assert_eq!(
        (
            status[0]["generation"].clone(),
            status[0]["previous_generation"].clone()
        ),
        (3.into(), 2.into())
    );
    assert_eq!(
        w.app_fingerprint(app),
        w.current_fingerprint(credential).await
    );

    w.assert_no_key_bytes_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_app_rotation_end_to_end() {
    rotate_end_to_end("billing", "Billing_Sync").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_client_app_rotation_end_to_end() {
    rotate_end_to_end("billing-eca", "Billing_Sync_ECA").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_keep_policy_a_verification_that_times_out_leaves_the_rotation_open_for_resume() {
    let mut w = World::new().await;
    w.import_legacy("billing").await;
    w.edit_config(|c| {
        c.replace(
            "verify_timeout_secs = 60",
            "verify_timeout_secs = 2\non_verify_failure = \"keep\"",
        )
    });
    // Salesforce keeps trusting the old certificate for an hour after the change.
    w.sim.set_propagation(3600, PropagationMode::Old);

    let failed = w.rekey(&["rotate", "billing"]).await;
    assert_eq!(failed.code, 4, "{}{}", failed.stdout, failed.stderr);
    assert!(
        failed.stderr.contains("failed at step verify"),
        "{}",
        failed.stderr
    );
    assert!(
        failed
            .stderr
            .contains("did not accept the new key within 2s"),
        "{}",
        failed.stderr
    );
    assert!(
        failed
            .stderr
            .contains("hint: `rekey resume billing` keeps verifying"),
        "{}",
        failed.stderr
    );
    let status = w.json(&["status", "billing"]).await;
    assert_eq!(
        status[0]["generation"], 1,
        "nothing is promoted before Salesforce accepts the key"
    );
    assert_eq!(status[0]["pending_generation"], 2);
    let open = status[0]["open_rotation"].as_str().unwrap().to_string();

    w.sim.set_propagation(0, PropagationMode::Either);
    let resumed = w.ok(&["resume", "billing"]).await;
    assert!(
        resumed
            .stdout
            .contains(&format!("resuming rotation {open} after step publish")),
        "{}",
        resumed.stdout
    );
    assert!(
        !resumed.stdout.contains("  generate"),
        "a resumed rotation must not generate again"
    );
    let status = w.json(&["status", "billing"]).await;
    assert_eq!(status[0]["generation"], 2);
    assert!(status[0]["open_rotation"].is_null());
    assert_eq!(
        w.app_fingerprint("Billing_Sync"),
        w.current_fingerprint("billing").await
    );
    w.assert_no_key_bytes_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_deploy_names_salesforces_problem_and_leaves_the_app_and_current_alone() {
    let mut w = World::new().await;
    w.import_legacy("billing").await;
    let old = w.app_fingerprint("Billing_Sync");
    w.sim.inject_fault(
        Fault::new(FaultKind::DeployFails {
            problem: "Cannot change the certificate during a release freeze".into(),
        })
        .times(1),
    );
    let failed = w.rekey(&["rotate", "billing", "--json"]).await;
    assert_eq!(failed.code, 5, "{}{}", failed.stdout, failed.stderr);
    assert!(
        failed
            .stderr
            .contains("Cannot change the certificate during a release freeze"),
        "{}",
        failed.stderr
    );
    let error: serde_json::Value = serde_json::from_str(&failed.stdout).unwrap();
    assert_eq!(error["error"]["step"], "publish");
    assert_eq!(error["error"]["published"], false);
    assert_eq!(w.app_fingerprint("Billing_Sync"), old);
    w.ok(&["verify", "billing"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_names_file_and_line_and_changes_nothing() {
    let mut w = World::new().await;
    w.edit_config(|c| c.replace("validity_days = 365", "validity_days = 0\ncolour = \"red\""));
    let run = w.rekey(&["rotate", "billing"]).await;
    assert_eq!(run.code, 64);
    let config_path = w.path("rekey.toml");
    let text = std::fs::read_to_string(&config_path).unwrap();
    let line = text.lines().position(|l| l.starts_with("colour")).unwrap() + 1;
    let unknown = format!("{}:{line}:1: unknown field `colour`", config_path.display());
    assert!(run.stderr.contains(&unknown), "{}", run.stderr);
    // Parsing stops at an unknown key; once it is gone the bad value is reported, one line up.
    std::fs::write(&config_path, text.replace("colour = \"red\"\n", "")).unwrap();
    let run = w.rekey(&["rotate", "billing"]).await;
    assert_eq!(run.code, 64);
    let range = format!(
        "{}:{}:17: validity_days = 0 is out of range; use 1..=3650",
        config_path.display(),
        line - 1
    );
    assert!(run.stderr.contains(&range), "{}", run.stderr);
    assert!(
        !w.path("keys").exists(),
        "a config error must not touch the store"
    );

    let run = w
        .rekey(&["--config", "/nonexistent/rekey.toml", "status"])
        .await;
    assert_eq!(run.code, 64);
    assert!(
        run.stderr.contains("cannot read /nonexistent/rekey.toml")
            && run.stderr.contains("hint: pass --config"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_writes_a_pair_openssl_accepts_and_never_overwrites_by_accident() {
    use std::os::unix::fs::PermissionsExt as _;
    let mut w = World::new().await;
    let args = [
        "generate",
        "--key-out",
        "new.key",
        "--cert-out",
        "new.crt",
        "--cn",
        "etl-prod",
        "--days",
        "90",
    ];
    let made = w.json(&args).await;
    assert_eq!(made["key_matches_certificate"], true);
    let mode = |f: &str| std::fs::metadata(w.path(f)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("new.key"), 0o600);
    let (key, crt) = (w.path("new.key"), w.path("new.crt"));
    let (key, crt) = (key.to_str().unwrap(), crt.to_str().unwrap());
    let cert_pub = openssl(&["x509", "-in", crt, "-noout", "-pubkey"]).stdout;
    let key_pub = openssl(&["pkey", "-in", key, "-pubout"]).stdout;
    assert_eq!(cert_pub, key_pub, "the certificate is not for the key");
    let subject = openssl(&[
        "x509",
        "-in",
        crt,
        "-noout",
        "-subject",
        "-checkend",
        "7689600",
    ]);
    assert!(String::from_utf8_lossy(&subject.stdout).contains("CN = etl-prod"));
    // 90 days: still valid in 89, expired in 91.
    let expired_in_91 = std::process::Command::new("openssl")
        .args(["x509", "-in", crt, "-noout", "-checkend", "7862400"])
        .output()
        .unwrap();
    assert!(!expired_in_91.status.success());
    assert_eq!(
        made["files"][1]["fingerprint_sha256"],
        rekey_api_fingerprint(&std::fs::read_to_string(crt).unwrap())
    );

    let before = std::fs::read(key).unwrap();
    let again = w.rekey(&args).await;
    assert_eq!(again.code, 64, "{}", again.stderr);
    assert!(
        again
            .stderr
            .contains("new.crt already exists; nothing was written")
            || again
                .stderr
                .contains("new.key already exists; nothing was written"),
        "{}",
        again.stderr
    );
    assert_eq!(std::fs::read(key).unwrap(), before, "the key was replaced");
    let mut forced = args.to_vec();
    forced.push("--force");
    w.ok(&forced).await;
    assert_ne!(std::fs::read(key).unwrap(), before);
    let bad = w
        .rekey(&[
            "generate",
            "--key-out",
            "x.key",
            "--cert-out",
            "x.crt",
            "--algorithm",
            "ec-256",
        ])
        .await;
    assert_eq!(bad.code, 64);
    assert!(
        bad.stderr
            .contains("[possible values: rsa-2048, rsa-3072, rsa-4096]"),
        "{}",
        bad.stderr
    );
    assert!(!w.path("x.key").exists() && !w.path("x.crt").exists());
    w.assert_no_key_bytes_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_agrees_with_openssl_and_spots_a_key_from_another_pair() {
    let mut w = World::new().await;
    let cert = w.json(&["inspect", "billing.crt"]).await;
    let file = &cert["files"][0];
    assert_eq!(file["kind"], "certificate");
    assert_eq!(
        file["fingerprint_sha256"],
        rekey_api_fingerprint(&std::fs::read_to_string(w.path("billing.crt")).unwrap())
    );
    assert_eq!(file["subject"], "CN=billing-legacy");
    assert_eq!(file["key_bits"], 2048);
    let days = file["days_left"].as_i64().unwrap();
    assert!((29..=30).contains(&days), "{days}");

    let pair = w.json(&["inspect", "billing.key", "billing.crt"]).await;
    assert_eq!(pair["key_matches_certificate"], true);
    assert_eq!(
        pair["files"][0]["spki_fingerprint"],
        pair["files"][1]["spki_sha256"]
    );
    let mismatch = w.rekey(&["inspect", "admin.key", "billing.crt"]).await;
    assert_eq!(mismatch.code, 65);
    assert!(
        mismatch.stdout.contains("do NOT belong together"),
        "{}",
        mismatch.stdout
    );

    let import = w
        .rekey(&[
            "import",
            "billing",
            "--key",
            "admin.key",
            "--cert",
            "billing.crt",
        ])
        .await;
    assert_eq!(import.code, 65, "{}", import.stderr);
    assert!(
        import.stderr.contains("does not belong to certificate"),
        "{}",
        import.stderr
    );
    w.assert_no_key_bytes_leaked();
}

/// An admin access token obtained the way the sf CLI user got theirs: a JWT grant for the admin
/// user, made outside rekey.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_access_token_from_the_environment_drives_a_rotation_and_is_never_printed() {
    let mut w = World::new().await;
    w.import_legacy("billing").await;
    w.set_admin("auth = \"access_token_env\"");

    let missing = w.rekey(&["rotate", "billing"]).await;
    assert_eq!(missing.code, 64, "{}", missing.stderr);
    assert!(
        missing
            .stderr
            .contains("org 'acme' uses auth = \"access_token_env\" but SF_ACCESS_TOKEN is not set"),
        "{}",
        missing.stderr
    );
    let status = w.json(&["status", "billing"]).await;
    assert_eq!(
        (
            status[0]["generation"].clone(),
            status[0]["open_rotation"].clone()
        ),
        (1.into(), serde_json::Value::Null)
    );

    let token = world::admin_access_token(&w).await;
    let base = w.sim.base_url();
    let env = [
        ("SF_ACCESS_TOKEN", token.as_str()),
        ("SF_INSTANCE_URL", base.as_str()),
    ];
    let rotated = w.rekey_with_env(&["rotate", "billing"], &env).await;
    assert_eq!(rotated.code, 0, "{}{}", rotated.stdout, rotated.stderr);
    assert_eq!(
        w.app_fingerprint("Billing_Sync"),
        w.current_fingerprint("billing").await
    );

    let bad = [
        ("SF_ACCESS_TOKEN", "00D5g000000ACME!notatoken"),
        ("SF_INSTANCE_URL", base.as_str()),
    ];
    let refused = w.rekey_with_env(&["rotate", "billing"], &bad).await;
    assert_eq!(refused.code, 77, "{}{}", refused.stdout, refused.stderr);
    assert!(
        refused.stderr.contains("INVALID_SESSION_ID"),
        "{}",
        refused.stderr
    );
    for printed in &w.printed {
        assert!(
            !printed.contains(&token),
            "the admin access token was printed:\n{printed}"
        );
        assert!(
            !printed.contains("notatoken"),
            "an access token was printed:\n{printed}"
        );
    }
    w.assert_no_key_bytes_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_exit_codes_follow_the_policy_thresholds_and_key_age() {
    let mut w = World::new().await;
    // The imported legacy certificate is valid for 30 days.
    w.import_legacy("billing").await;
    let set_policy = |w: &World, policy: &str| {
        w.edit_config(|c| {
            let lines: Vec<&str> = c
                .lines()
                .map(|l| {
                    if l.starts_with("policy = ") {
                        policy
                    } else {
                        l
                    }
                })
                .collect();
            lines.join("\n")
        })
    };

    let ok = w.rekey(&["check", "billing"]).await;
    assert_eq!(ok.code, 0, "{}", ok.stdout);
    assert!(ok.stdout.starts_with("OK "), "{}", ok.stdout);

    set_policy(&w, "policy = { warn_days = 45, critical_days = 14 }");
    let warning = w.rekey(&["check", "billing", "--json"]).await;
    assert_eq!(warning.code, 1, "{}", warning.stdout);
    let rows: serde_json::Value = serde_json::from_str(&warning.stdout).unwrap();
    assert_eq!(rows[0]["severity"], "warning");
    let days = rows[0]["days_left"].as_i64().unwrap();
    // The app and the store hold the same certificate; each is judged.
    let findings = rows[0]["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 2, "{findings:?}");
    for (finding, source) in findings.iter().zip(["app", "store:local"]) {
        assert_eq!(finding["id"], format!("expiry/{source}"));
        assert_eq!(finding["severity"], "warning");
        let message = finding["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("in {source} ("))
                && message.contains(&format!("expires in {days} days"))
                && message.contains("threshold 45 days"),
            "{message}"
        );
    }

    set_policy(&w, "policy = { warn_days = 45, critical_days = 31 }");
    let critical = w.rekey(&["check", "billing"]).await;
    assert_eq!(critical.code, 2, "{}", critical.stdout);
    assert!(
        critical.stdout.contains(&format!("expires in {days} days"))
            && critical.stdout.contains("(threshold 31 days)"),
        "{}",
        critical.stdout
    );

    // A key stored 200 days ago breaks a 180-day maximum age even with a fresh certificate window.
    set_policy(
        &w,
        "policy = { warn_days = 5, critical_days = 1, max_key_age_days = 180 }",
    );
    let meta_path = w.path("keys/billing/000001.json");
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
    meta["created_at"] = (chrono::Utc::now() - chrono::Duration::days(200))
        .to_rfc3339()
        .into();
    std::fs::write(&meta_path, meta.to_string()).unwrap();
    let old = w.rekey(&["check", "billing"]).await;
    assert_eq!(old.code, 1, "{}", old.stdout);
    assert!(
        old.stdout
            .contains("the key in store:local is 200 days old (maximum 180)"),
        "{}",
        old.stdout
    );

    // A credential with no key at all is critical, and the worst credential sets the exit code.
    let all = w.rekey(&["check"]).await;
    assert_eq!(all.code, 2, "{}", all.stdout);
    assert!(
        all.stdout.contains("store:local has no CURRENT key"),
        "{}",
        all.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_staging_and_journaling_resumes_with_the_staged_key() {
    let mut w = World::new().await;
    w.import_legacy("billing").await;
    // Stop the rotation at publish, after the key was staged.
    w.sim.inject_fault(
        Fault::new(FaultKind::DeployFails {
            problem: "held".into(),
        })
        .times(1),
    );
    assert_eq!(w.rekey(&["rotate", "billing"]).await.code, 5);
    let staged = w.json(&["status", "billing"]).await;
    assert_eq!(staged[0]["pending_generation"], 2);

    // Rewrite the journal as a crash right after the store write would have left it: the stage
    // step begun, never recorded as done, nothing after it.
    let journal_path = w.path("keys/billing/journal.jsonl");
    let journal = std::fs::read_to_string(&journal_path).unwrap();
    let kept: Vec<&str> = journal
        .lines()
        .take_while(|l| !(l.contains("\"step\":\"stage\"") && l.contains("\"phase\":\"done\"")))
        .collect();
    assert!(
        kept.last().unwrap().contains("\"step\":\"stage\""),
        "{journal}"
    );
    std::fs::write(&journal_path, kept.join("\n") + "\n").unwrap();
    let pending_cert = std::fs::read_to_string(w.path("keys/billing/000002.crt")).unwrap();

    let resumed = w.ok(&["rotate", "billing"]).await;
    assert!(
        resumed.stdout.contains("staged before the interruption"),
        "{}",
        resumed.stdout
    );
    assert_eq!(
        std::fs::read_to_string(w.path("keys/billing/000002.crt")).unwrap(),
        pending_cert,
        "the resumed rotation must publish the key it staged, not a new one"
    );
    assert_eq!(
        w.app_fingerprint("Billing_Sync"),
        w.current_fingerprint("billing").await
    );
    w.ok(&["verify", "billing"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekey_refuses_to_rotate_its_own_admin_app_before_writing_anything() {
    let mut w = World::new().await;
    w.edit_config(|c| {
        format!(
            "{c}\n[credentials.admin-self]\norg = \"acme\"\napp_kind = \"connected_app\"\napp = \"Rekey_Admin\"\n\
             username = \"rekey-admin@acme.example\"\nstore = \"local\"\nsubject = {{ cn = \"admin\" }}\n"
        )
    });
    let before = w.app_fingerprint("Rekey_Admin");
    let run = w.rekey(&["rotate", "admin-self"]).await;
    assert_eq!(run.code, 64, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("Rekey_Admin in org acme is rekey's own admin app"),
        "{}",
        run.stderr
    );
    assert!(
        !w.path("keys/admin-self").exists(),
        "nothing may be written for a refused rotation"
    );
    assert_eq!(w.app_fingerprint("Rekey_Admin"), before);

    // A misspelt app is refused at the same preflight, naming the app and the org.
    w.edit_config(|c| c.replace("app = \"Rekey_Admin\"", "app = \"Rekey_Admn\""));
    let missing = w.rekey(&["rotate", "admin-self"]).await;
    assert_eq!(missing.code, 64, "{}", missing.stderr);
    assert!(
        missing.stderr.contains("Rekey_Admn") && missing.stderr.contains("acme"),
        "{}",
        missing.stderr
    );
    assert!(!w.path("keys/admin-self").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_retries_through_the_propagation_window_until_salesforce_accepts() {
    let mut w = World::new().await;
    w.import_legacy("billing").await;
    // For two seconds after the deploy Salesforce still checks tokens against the old certificate.
    w.sim.set_propagation(2, PropagationMode::Old);
    let rotated = w.ok(&["rotate", "billing"]).await;
    assert!(
        rotated
            .stdout
            .contains("verify    attempt 1 refused (invalid_grant: invalid assertion); retrying"),
        "{}",
        rotated.stdout
    );
    let accepted = rotated
        .stdout
        .lines()
        .find(|l| l.contains("Salesforce accepted the new key"))
        .unwrap();
    let attempt: u32 = accepted
        .rsplit("(attempt ")
        .next()
        .unwrap()
        .trim_end_matches(')')
        .parse()
        .unwrap();
    assert!(attempt >= 2, "{accepted}");
    assert_eq!(
        w.app_fingerprint("Billing_Sync"),
        w.current_fingerprint("billing").await
    );
}

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

fn metric(text: &str, name: &str, source: Option<&str>) -> Option<f64> {
    let labels = r#"credential="billing",app="Billing_Sync",org="acme""#;
    let series = match source {
        Some(source) => format!("{name}{{{labels},source=\"{source}\"}} "),
        None => format!("{name}{{{labels}}} "),
    };
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .map(|v| v.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reads_the_app_and_every_store_flags_drift_and_unreadable_sources_and_writes_metrics()
{
    let mut w = World::new().await;
    w.import_legacy("billing").await;
    let prom = w.path("metrics/rekey.prom");
    std::fs::create_dir_all(prom.parent().unwrap()).unwrap();
    let prom_arg = prom.to_str().unwrap().to_string();

    w.ok(&["check", "billing", "--prometheus-textfile", &prom_arg])
        .await;
    let text = std::fs::read_to_string(&prom).unwrap();
    let not_after = metric(
        &text,
        "rekey_certificate_not_after_timestamp_seconds",
        Some("app"),
    );
    assert!(not_after.is_some(), "{text}");
    assert_eq!(
        not_after,
        metric(
            &text,
            "rekey_certificate_not_after_timestamp_seconds",
            Some("store:local")
        )
    );
    assert_eq!(metric(&text, "rekey_drift", Some("store:local")), Some(0.0));
    assert_eq!(metric(&text, "rekey_source_up", Some("app")), Some(1.0));
    assert_eq!(metric(&text, "rekey_check_status", None), Some(0.0));
    assert!(
        metric(
            &text,
            "rekey_key_created_timestamp_seconds",
            Some("store:local")
        )
        .is_some()
    );

    // Someone deploys another certificate to the app by hand (here: with another store).
    w.edit_config(|c| c.replace("path = \"keys\"", "path = \"elsewhere\""));
    w.import_legacy("billing").await;
    w.ok(&["rotate", "billing"]).await;
    w.edit_config(|c| c.replace("path = \"elsewhere\"", "path = \"keys\""));
    let drift = w
        .rekey(&[
            "check",
            "billing",
            "--json",
            "--prometheus-textfile",
            &prom_arg,
        ])
        .await;
    assert_eq!(drift.code, 2, "{}", drift.stdout);
    let rows: serde_json::Value = serde_json::from_str(&drift.stdout).unwrap();
    assert_eq!(rows[0]["findings"][0]["id"], "drift/store:local", "{rows}");
    let text = std::fs::read_to_string(&prom).unwrap();
    assert_eq!(
        metric(&text, "rekey_drift", Some("store:local")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(metric(&text, "rekey_check_status", None), Some(2.0));

    // An org that cannot be read is reported as such (exit 3, unknown), never skipped.
    w.edit_config(|c| c.replace("path = \"keys\"", "path = \"elsewhere\""));
    w.sim.inject_fault(Fault::new(FaultKind::ServerError {
        status: 503,
        body: "down".into(),
    }));
    let unknown = w
        .rekey(&["check", "billing", "--prometheus-textfile", &prom_arg])
        .await;
    assert_eq!(unknown.code, 3, "{}{}", unknown.stdout, unknown.stderr);
    assert!(unknown.stdout.starts_with("UNKNOWN"), "{}", unknown.stdout);
    assert!(
        unknown.stdout.contains("app could not be read"),
        "{}",
        unknown.stdout
    );
    let text = std::fs::read_to_string(&prom).unwrap();
    assert_eq!(
        metric(&text, "rekey_source_up", Some("app")),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "rekey_source_up", Some("store:local")),
        Some(1.0)
    );
    assert_eq!(metric(&text, "rekey_check_status", None), Some(3.0));
    assert!(
        std::fs::read_dir(prom.parent().unwrap()).unwrap().count() == 1,
        "no temporary files left beside the metrics file"
    );
}
