//! Store hygiene through the real binary: the file store keeps CURRENT, PENDING, PREVIOUS and
//! `keep_generations` retired generations (default 1) and destroys the rest when a rotation
//! finishes (journaled with finalize, resumable after a crash at any point of it); `check`
//! flags a key file or a credential folder other users can open.

mod world;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;
use world::{Held, World};

const CRED: &str = "billing";

/// The generations with any file in the credential's folder, and those with a key file.
fn generations(w: &World) -> (BTreeSet<u64>, BTreeSet<u64>) {
    let (mut any, mut keys) = (BTreeSet::new(), BTreeSet::new());
    for entry in std::fs::read_dir(w.path("keys/billing")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if let Some((stem, ext)) = name.split_once('.')
            && let Ok(n) = stem.parse::<u64>()
        {
            any.insert(n);
            if ext == "key" {
                keys.insert(n);
            }
        }
    }
    (any, keys)
}

fn set(gens: &[u64]) -> BTreeSet<u64> {
    gens.iter().copied().collect()
}

/// The detail of the newest `finalize done` journal line.
async fn finalize_detail(w: &mut World) -> String {
    let journal = w.json(&["journal", CRED]).await;
    journal
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["step"] == "finalize" && e["phase"] == "done")
        .map(|e| e["detail"].as_str().unwrap().to_string())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalize_keeps_current_previous_and_one_retired_generation_by_default() {
    let mut w = World::new().await;
    w.import_legacy(CRED).await;
    w.ok(&["rotate", CRED]).await; // 2
    assert_eq!(generations(&w).1, set(&[1, 2]), "nothing retired yet");
    w.ok(&["rotate", CRED]).await; // 3: 1 is the one retired generation kept
    assert_eq!(generations(&w).1, set(&[1, 2, 3]));
    w.ok(&["rotate", CRED]).await; // 4
    assert_eq!(generations(&w), (set(&[2, 3, 4]), set(&[2, 3, 4])));
    assert!(
        finalize_detail(&mut w).await.ends_with(&format!(
            "; retired generation 1 destroyed in file({})",
            w.path("keys").display()
        )),
        "journaled with finalize"
    );

    // An aborted rotation's key (5, the app trusted it for a while) is the newest retired
    // generation, so it is the one kept.
    let held = Held::spawn(&w, &["rotate", CRED], "publish:done")
        .reached(&mut w)
        .await;
    held.kill(&mut w).await;
    w.ok(&["abort", CRED, "--reason", "test"]).await;
    assert_eq!(
        generations(&w).1,
        set(&[2, 3, 4, 5]),
        "abort destroys nothing"
    );
    w.ok(&["rotate", CRED]).await; // 6: CURRENT 6, PREVIOUS 4, kept 5
    assert_eq!(generations(&w), (set(&[4, 5, 6]), set(&[4, 5, 6])));
    assert!(
        finalize_detail(&mut w)
            .await
            .contains("retired generations 2, 3 destroyed"),
    );
    w.ok(&["rotate", CRED]).await; // 7: CURRENT 7, PREVIOUS 6, kept 5
    assert_eq!(generations(&w), (set(&[5, 6, 7]), set(&[5, 6, 7])));
    let status = w.json(&["status", CRED]).await;
    assert_eq!(status[0]["generation"], 7);
    assert_eq!(status[0]["previous_generation"], 6);
    w.ok(&["verify", CRED]).await;
    w.ok(&["check", CRED, "--no-notify"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_generations_is_configurable_and_a_crash_inside_finalize_resumes_the_cleanup() {
    let mut w = World::new().await;
    w.edit_config(|c| {
        c.replacen(
            "[stores.local]\nkind = \"file\"\npath = \"keys\"",
            "[stores.local]\nkind = \"file\"\npath = \"keys\"\nkeep_generations = 0",
            1,
        )
    });
    w.import_legacy(CRED).await;
    for _ in 0..3 {
        w.ok(&["rotate", CRED]).await;
    }
    assert_eq!(generations(&w), (set(&[3, 4]), set(&[3, 4])));

    // Killed after finalize began, before it destroyed anything: resume destroys.
    let held = Held::spawn(&w, &["rotate", CRED], "finalize:begin")
        .reached(&mut w)
        .await;
    held.kill(&mut w).await;
    assert_eq!(generations(&w).1, set(&[3, 4, 5]));
    w.ok(&["resume", CRED]).await;
    assert_eq!(generations(&w), (set(&[4, 5]), set(&[4, 5])));

    // Killed after it destroyed, before finalize was journaled done: resume finishes, destroying
    // nothing more.
    let held = Held::spawn(&w, &["rotate", CRED], "finalize:acted")
        .reached(&mut w)
        .await;
    held.kill(&mut w).await;
    assert_eq!(generations(&w).1, set(&[5, 6]));
    w.ok(&["resume", CRED]).await;
    assert_eq!(generations(&w), (set(&[5, 6]), set(&[5, 6])));

    // A cleanup cut off half-way (the key removed, its certificate left) is finished next time.
    w.edit_config(|c| c.replace("keep_generations = 0", "keep_generations = 2"));
    w.ok(&["rotate", CRED]).await; // 7: keeps 5 as retired
    w.ok(&["rotate", CRED]).await; // 8: keeps 6, 5
    assert_eq!(generations(&w).1, set(&[5, 6, 7, 8]));
    std::fs::write(w.path("keys/billing/000002.crt"), "left over").unwrap();
    w.ok(&["rotate", CRED]).await; // 9: keeps 7, 6; destroys 5 and the leftover of 2
    assert_eq!(generations(&w), (set(&[6, 7, 8, 9]), set(&[6, 7, 8, 9])));

    // Out of range is a config error naming the line.
    w.edit_config(|c| c.replace("keep_generations = 2", "keep_generations = -1"));
    let run = w.rekey(&["status"]).await;
    assert_eq!(run.code, 64, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("keep_generations = -1 is out of range; use 0..=1000"),
        "{}",
        run.stderr
    );
    w.assert_no_key_bytes_leaked();
}

/// `check billing --json`: its exit code and billing's findings as (id, severity, message).
async fn findings(w: &mut World) -> (i32, Vec<(String, String, String)>) {
    let run = w.rekey(&["check", CRED, "--json", "--no-notify"]).await;
    let rows: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let found = rows[0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_string(),
                f["severity"].as_str().unwrap().to_string(),
                f["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (run.code, found)
}

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test]
async fn check_flags_a_key_file_or_credential_folder_other_users_can_open() {
    let mut w = World::new().await;
    w.import_legacy(CRED).await;
    w.ok(&["rotate", CRED]).await;
    assert_eq!(findings(&mut w).await, (0, vec![]));

    let key = w.path("keys/billing/000002.key");
    chmod(&key, 0o644);
    let (code, found) = findings(&mut w).await;
    assert_eq!(code, 2, "{found:?}");
    assert_eq!(found.len(), 1, "{found:?}");
    let (id, severity, message) = &found[0];
    assert_eq!(
        (id.as_str(), severity.as_str()),
        ("exposed/store:local", "critical")
    );
    for part in [
        key.display().to_string().as_str(),
        "the CURRENT key, generation 2",
        "mode 0644",
        "chmod 600",
        "rekey emergency",
    ] {
        assert!(message.contains(part), "{part} missing: {message}");
    }
    // A retired key others can read is as bad.
    chmod(&key, 0o600);
    chmod(&w.path("keys/billing/000001.key"), 0o640);
    let (code, found) = findings(&mut w).await;
    assert_eq!(code, 2);
    assert!(
        found[0].2.contains("the PREVIOUS key, generation 1"),
        "{found:?}"
    );
    chmod(&w.path("keys/billing/000001.key"), 0o600);

    // A folder others can list: names and certificates only, a warning.
    let folder = w.path("keys/billing");
    chmod(&folder, 0o755);
    let (code, found) = findings(&mut w).await;
    assert_eq!(code, 1, "{found:?}");
    assert_eq!(found[0].0, "exposed/store:local");
    assert_eq!(found[0].1, "warning");
    assert!(
        found[0].2.contains("mode 0755") && found[0].2.contains("chmod 700"),
        "{found:?}"
    );
    // One others can write to: they could replace a key, critical.
    chmod(&folder, 0o777);
    let (code, found) = findings(&mut w).await;
    assert_eq!(code, 2);
    assert!(
        found[0].2.contains("can replace the keys in it"),
        "{found:?}"
    );
    chmod(&folder, 0o700);
    assert_eq!(findings(&mut w).await, (0, vec![]));

    // The text report says the same.
    chmod(&key, 0o604);
    let run = w.rekey(&["check", CRED, "--no-notify"]).await;
    assert_eq!(run.code, 2);
    assert!(run.stdout.contains("mode 0604"), "{}", run.stdout);
}

#[tokio::test]
async fn a_cleanup_that_fails_never_holds_a_finished_rotation_open() {
    let mut w = World::new().await;
    w.import_legacy(CRED).await;
    w.ok(&["rotate", CRED]).await;
    // Generation 0 cannot be removed: its "key file" is a folder with something in it.
    let stuck = w.path("keys/billing/000000.key");
    std::fs::create_dir(&stuck).unwrap();
    std::fs::write(stuck.join("x"), "x").unwrap();
    let run = w.ok(&["rotate", CRED]).await;
    assert!(
        run.stderr.contains("could not destroy the retired keys"),
        "{}",
        run.stderr
    );
    assert!(
        finalize_detail(&mut w)
            .await
            .contains("retired keys not destroyed in file(")
    );
    assert_eq!(
        w.json(&["status", CRED]).await[0]["open_rotation"],
        serde_json::Value::Null
    );
    // Once it can be removed, the next rotation does.
    std::fs::remove_dir_all(&stuck).unwrap();
    w.ok(&["rotate", CRED]).await;
    assert_eq!(generations(&w).1, set(&[2, 3, 4]));
}
