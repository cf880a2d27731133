//! End to end: the real `rekey` binary against the org emulator and the file store.
//!
//! Each test builds a fresh world in a temporary directory: keys made by `openssl` the way the
//! Salesforce docs tell users to make them, the shared demo seed (tests/demo), an emulator on a
//! free loopback port, and a `rekey.toml` pointing at it.

mod world;

use orgsim::{Fault, FaultKind, PropagationMode};
use world::{World, openssl, rekey_api_fingerprint};

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

    // A credential's stage, read from its store, is described the same way.
    w.import_legacy("billing").await;
    let stored = w.json(&["inspect", "--credential", "billing"]).await;
    assert_eq!(stored["files"][0]["path"], "billing CURRENT (generation 1)");
    assert_eq!(
        stored["files"][0]["fingerprint_sha256"],
        file["fingerprint_sha256"]
    );
    assert_eq!(stored["files"][1]["kind"], "private_key");
    assert_eq!(stored["files"][1]["spki_fingerprint"], file["spki_sha256"]);
    assert_eq!(stored["key_matches_certificate"], true);
    let none = w
        .rekey(&["inspect", "--credential", "billing", "--stage", "pending"])
        .await;
    assert_eq!(none.code, 64, "{}", none.stderr);
    assert!(
        none.stderr
            .contains("credential 'billing' has no PENDING key"),
        "{}",
        none.stderr
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
