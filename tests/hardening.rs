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
