//! `rekey import` through the real binary: it reads the certificate the app holds from
//! Salesforce and refuses (exit 6, both fingerprints named, nothing written) any other; it warns
//! about an expired or expiring certificate and a key file others can read; and the key's age
//! counts from the certificate's notBefore when that is older than the import.

mod world;

use std::os::unix::fs::PermissionsExt as _;
use world::{Run, World, rekey_api_fingerprint};

const CRED: &str = "billing";
const APP: &str = "Billing_Sync";

fn import_args<'a>(key: &'a str, cert: &'a str) -> [&'a str; 6] {
    ["import", CRED, "--key", key, "--cert", cert]
}

fn fingerprint_of(w: &World, file: &str) -> String {
    rekey_api_fingerprint(&std::fs::read_to_string(w.path(file)).unwrap())
}

fn assert_refused(run: &Run, on_app: &str, offered: &str) {
    assert_eq!(run.code, 6, "{}{}", run.stdout, run.stderr);
    for part in [
        format!("holds certificate {on_app}, not {offered}"),
        "nothing was imported".to_string(),
    ] {
        assert!(
            run.stderr.contains(&part),
            "{part} missing:\n{}",
            run.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_the_app_does_not_hold_is_refused_naming_both_and_nothing_changes() {
    let mut w = World::new().await;
    w.ok(&[
        "generate",
        "--key-out",
        "other.key",
        "--cert-out",
        "other.crt",
        "--cn",
        "other",
    ])
    .await;
    let on_app = w.app_fingerprint(APP);
    let other = fingerprint_of(&w, "other.crt");

    let run = w.rekey(&import_args("other.key", "other.crt")).await;
    assert_refused(&run, &on_app, &other);
    assert!(
        run.stderr.contains("salesforce(acme/Billing_Sync)"),
        "{}",
        run.stderr
    );
    assert!(
        !w.path("keys").exists(),
        "nothing written, not even the lock"
    );
    let json = w
        .rekey(&[
            "import",
            CRED,
            "--key",
            "other.key",
            "--cert",
            "other.crt",
            "--json",
        ])
        .await;
    assert_eq!(json.code, 6);
    let error: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(error["error"]["kind"], "conflict");

    // A certificate another app holds is no better.
    let eca = fingerprint_of(&w, "billing-eca.crt");
    let run = w
        .rekey(&import_args("billing-eca.key", "billing-eca.crt"))
        .await;
    assert_refused(&run, &on_app, &eca);

    // The pair the app holds is imported, and Salesforce accepts it.
    w.import_legacy(CRED).await;
    w.ok(&["verify", CRED]).await;
    let before = std::fs::read(w.path("keys/billing/stages.json")).unwrap();

    // Once rotated, the old pair is no longer what the app holds.
    w.ok(&["rotate", CRED]).await;
    let rotated = w.app_fingerprint(APP);
    let stages = std::fs::read(w.path("keys/billing/stages.json")).unwrap();
    assert_ne!(stages, before);
    let legacy = fingerprint_of(&w, "billing.crt");
    let run = w.rekey(&import_args("billing.key", "billing.crt")).await;
    assert_refused(&run, &rotated, &legacy);
    assert_eq!(
        std::fs::read(w.path("keys/billing/stages.json")).unwrap(),
        stages
    );
    w.assert_no_key_bytes_leaked();
}

#[tokio::test]
async fn a_key_file_others_can_read_is_imported_with_a_warning_on_stderr_and_in_json() {
    let mut w = World::new().await;
    let key = w.path("billing.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = w
        .rekey(&[
            "import",
            CRED,
            "--key",
            "billing.key",
            "--cert",
            "billing.crt",
            "--json",
        ])
        .await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let warnings = report["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let warning = warnings[0].as_str().unwrap();
    for part in [
        "billing.key is mode 0644",
        "read the private key",
        "chmod 600",
        "rekey emergency billing",
    ] {
        assert!(warning.contains(part), "{part} missing: {warning}");
    }
    assert!(
        run.stderr.contains(&format!("warning: {warning}")),
        "{}",
        run.stderr
    );
    // The store's copy is 0600 whatever the original's mode.
    let stored = std::fs::metadata(w.path("keys/billing/000001.key")).unwrap();
    assert_eq!(stored.permissions().mode() & 0o777, 0o600);

    // A key only its owner can read: no warning at all.
    std::fs::set_permissions(
        w.path("billing-eca.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let run = w
        .ok(&[
            "import",
            "billing-eca",
            "--key",
            "billing-eca.key",
            "--cert",
            "billing-eca.crt",
        ])
        .await;
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
}

#[tokio::test]
async fn an_expiring_certificate_is_warned_about_and_its_key_is_as_old_as_its_certificate() {
    let mut w = World::new().await;
    // The legacy certificates are valid for 30 days from now (and were made now): 25 days on,
    // 5 are left, under warn_days (28).
    w.set_clock(25 * 86_400);
    let run = w.ok(&import_args("billing.key", "billing.crt")).await;
    assert!(
        run.stderr.contains("billing.crt expires on")
            && run
                .stderr
                .contains("(warn_days = 28): rotate soon (`rekey rotate billing`)"),
        "{}",
        run.stderr
    );
    // Imported just now, but its certificate (so the key) is 25 days old.
    let check = w.rekey(&["check", CRED, "--json", "--no-notify"]).await;
    let rows: serde_json::Value = serde_json::from_str(&check.stdout).unwrap();
    assert_eq!(rows[0]["key_age_days"], 25, "{}", check.stdout);
    // So is the due rule's: with rotate_every_days = 20 the key is due already.
    w.edit_config(|c| {
        c.replacen(
            "[credentials.billing]\n",
            "[credentials.billing]\nrotate_every_days = 20\n",
            1,
        )
    });
    let plan = w.json_any(&["run", "--dry-run"]).await;
    let billing = plan["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["check"]["credential"] == CRED)
        .unwrap()
        .clone();
    assert_eq!(billing["action"], "would_rotate", "{billing}");
    let reasons = billing["reasons"].to_string();
    assert!(reasons.contains("\"age_days\":25"), "{reasons}");

    // 31 days on, it has expired.
    w.set_clock(31 * 86_400);
    let run = w
        .ok(&[
            "import",
            "billing-eca",
            "--key",
            "billing-eca.key",
            "--cert",
            "billing-eca.crt",
        ])
        .await;
    assert!(
        run.stderr.contains("billing-eca.crt expired on")
            && run
                .stderr
                .contains("rotate right away (`rekey rotate billing-eca`)"),
        "{}",
        run.stderr
    );
}
