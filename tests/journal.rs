//! A damaged rotation journal, through the real binary: one line of the file store's
//! `journal.jsonl` that is not an entry (garbage, bytes that are not UTF-8, an entry cut short)
//! never takes down the other credentials. `status` shows them all and marks the damaged one
//! (exit 6), `journal` shows every entry it can read with the damaged line named as
//! `PATH:LINE` (exit 6), every command that writes to the credential refuses with exit 6 and
//! changes nothing, `check` keeps reporting (unknown for that journal), and the way out the
//! error names works.

mod world;

use std::path::PathBuf;
use world::{Run, World};

const CRED: &str = "billing";

/// A world with `billing` and `billing-eca` imported and `billing` rotated once, so that its
/// journal has a rotation's worth of lines.
async fn world() -> World {
    let mut w = World::new().await;
    w.import_legacy(CRED).await;
    w.import_legacy("billing-eca").await;
    w.ok(&["rotate", CRED]).await;
    w
}

fn journal_path(w: &World) -> PathBuf {
    w.path("keys/billing/journal.jsonl")
}

/// Replaces line `n` (1-based) of the journal with `bytes`.
fn damage_line(w: &World, n: usize, bytes: &[u8]) {
    let path = journal_path(w);
    let text = std::fs::read(&path).unwrap();
    let mut lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    assert!(lines.len() > n, "the journal has fewer than {n} lines");
    lines[n - 1] = bytes;
    std::fs::write(&path, lines.join(&b'\n')).unwrap();
}

fn assert_mentions(run: &Run, parts: &[&str]) {
    for part in parts {
        assert!(
            run.stderr.contains(part) || run.stdout.contains(part),
            "{part:?} missing:\n{}\n{}",
            run.stdout,
            run.stderr
        );
    }
}

#[tokio::test]
async fn a_damaged_line_is_named_and_the_other_credentials_are_still_served() {
    let mut w = world().await;
    let entries = std::fs::read_to_string(journal_path(&w))
        .unwrap()
        .lines()
        .count();
    damage_line(&w, 3, b"{\"rotation_id\": \"billing-2026");
    let at = format!("{}:3", journal_path(&w).display());

    // status: both credentials, the damaged one marked, exit 6.
    let status = w.rekey(&["status"]).await;
    assert_eq!(status.code, 6, "{}{}", status.stdout, status.stderr);
    assert!(status.stdout.contains("billing-eca"), "{}", status.stdout);
    assert!(
        status.stdout.contains(&format!("journal DAMAGED at {at}")),
        "{}",
        status.stdout
    );
    assert_mentions(
        &status,
        &[
            "error: billing: the rotation journal is damaged at",
            "rekey journal billing",
        ],
    );
    let json = w.rekey(&["status", "--json"]).await;
    assert_eq!(json.code, 6);
    let rows: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let billing = rows.iter().find(|r| r["credential"] == CRED).unwrap();
    assert_eq!(billing["journal_damaged"][0]["location"], at.as_str());
    assert_eq!(billing["generation"], 2, "the stores are still read");
    let eca = rows
        .iter()
        .find(|r| r["credential"] == "billing-eca")
        .unwrap();
    assert_eq!(eca["journal_damaged"].as_array().unwrap().len(), 0);
    assert_eq!(eca["generation"], 1);
    // The intact credential alone is fine.
    w.ok(&["status", "billing-eca"]).await;

    // journal: every readable entry, the damaged one named in its place.
    let journal = w.rekey(&["journal", CRED]).await;
    assert_eq!(journal.code, 6, "{}{}", journal.stdout, journal.stderr);
    let lines: Vec<&str> = journal.stdout.lines().collect();
    assert_eq!(lines.len(), entries, "{}", journal.stdout);
    assert!(
        lines[2].starts_with(&format!("{at}: JSON"))
            || lines[2].starts_with(&format!("{at}: cut off")),
        "the damaged line in place: {}",
        journal.stdout
    );
    assert!(lines[2].contains("DAMAGED"), "{}", lines[2]);
    assert_mentions(&journal, &["sed -i.damaged '3d'", "1 of"]);
    let listed = w.rekey(&["journal", CRED, "--json"]).await;
    assert_eq!(listed.code, 6);
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), entries - 1);

    // check copes: the journal is unknown, the other credential is judged as ever.
    let check = w.rekey(&["check", "--json", "--no-notify"]).await;
    assert_eq!(check.code, 3, "{}{}", check.stdout, check.stderr);
    let rows: serde_json::Value = serde_json::from_str(&check.stdout).unwrap();
    let billing = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["credential"] == CRED)
        .unwrap();
    let finding = billing["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "unreadable/journal")
        .unwrap_or_else(|| panic!("{billing}"));
    assert!(
        finding["message"].as_str().unwrap().contains(&at),
        "{finding}"
    );

    // run (and so the daemon) observes every credential as check does.
    let run = w.json_any(&["run", "--dry-run"]).await;
    let rows = run["credentials"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{run}");
    let ids = |r: &serde_json::Value| r["check"]["findings"].to_string();
    assert!(ids(&rows[0]).contains("unreadable/journal"), "{run}");
    assert!(!ids(&rows[1]).contains("unreadable/journal"), "{run}");
}

#[tokio::test]
async fn every_command_that_writes_refuses_a_damaged_journal_changes_nothing_and_names_the_way_out()
{
    let mut w = world().await;
    // Not even UTF-8: a line a disk error or a stray binary write could leave.
    damage_line(&w, 4, b"\xff\xfe\x00garbage\x00");
    let at = format!("{}:4", journal_path(&w).display());
    let before = world::snapshot(&w.path("keys/billing"));
    let on_app = w.app_fingerprint("Billing_Sync");

    for args in [
        vec!["rotate", CRED],
        vec!["resume", CRED],
        vec!["abort", CRED],
        vec!["plan", CRED],
        vec!["emergency", CRED, "--reason", "leak drill", "--yes"],
    ] {
        let run = w.rekey(&args).await;
        assert_eq!(run.code, 6, "{args:?}:\n{}{}", run.stdout, run.stderr);
        assert_mentions(
            &run,
            &[
                &at,
                "not UTF-8",
                "nothing was changed",
                "rekey journal billing",
                "sed -i.damaged '4d'",
            ],
        );
        assert_eq!(
            world::snapshot(&w.path("keys/billing")),
            before,
            "{args:?} changed the store"
        );
        assert_eq!(w.app_fingerprint("Billing_Sync"), on_app);
    }
    // The other credential rotates as ever.
    w.ok(&["rotate", "billing-eca"]).await;

    // The way out the hint names: delete the line (the original kept beside it).
    let path = journal_path(&w);
    let sh = std::process::Command::new("sed")
        .args(["-i.damaged", "4d"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(sh.success());
    assert!(path.with_extension("jsonl.damaged").exists());
    w.ok(&["journal", CRED]).await;
    w.ok(&["rotate", CRED]).await;
    w.ok(&["status"]).await;
    assert_eq!(w.json(&["status", CRED]).await[0]["generation"], 3);
    w.assert_no_key_bytes_leaked();
}

#[tokio::test]
async fn a_damaged_last_line_and_a_valid_json_line_that_is_no_entry_are_damage_too_but_a_blank_line_is_not()
 {
    let mut w = world().await;
    let path = journal_path(&w);
    let text = std::fs::read_to_string(&path).unwrap();
    let count = text.lines().count();
    // A blank line is harmless.
    std::fs::write(&path, text.replacen('\n', "\n\n", 1)).unwrap();
    w.ok(&["journal", CRED]).await;
    w.ok(&["status"]).await;
    std::fs::write(&path, &text).unwrap();

    // The last complete line (finalize done) is JSON but not an entry.
    damage_line(&w, count, br#"{"step":"finalize","phase":"sideways"}"#);
    let journal = w.rekey(&["journal", CRED]).await;
    assert_eq!(journal.code, 6);
    assert_mentions(
        &journal,
        &[&format!(
            "{}:{count}: JSON, but not a journal entry",
            path.display()
        )],
    );
    let rotate = w.rekey(&["rotate", CRED]).await;
    assert_eq!(rotate.code, 6, "{}", rotate.stderr);
    // The torn last line a crash mid-append leaves (no newline) is still no damage.
    std::fs::write(&path, format!("{text}{{\"rotation_id\":\"x")).unwrap();
    w.ok(&["journal", CRED]).await;
    w.ok(&["rotate", CRED]).await;
}

#[tokio::test]
async fn a_credential_whose_store_cannot_be_read_is_marked_and_the_others_are_still_shown() {
    let mut w = world().await;
    std::fs::write(w.path("keys/billing-eca/stages.json"), "not a stage map").unwrap();
    let status = w.rekey(&["status"]).await;
    assert_eq!(status.code, 70, "{}{}", status.stdout, status.stderr);
    assert!(status.stdout.contains("UNREADABLE"), "{}", status.stdout);
    assert!(
        status
            .stderr
            .contains("error: billing-eca: cannot be read:")
            && status.stderr.contains("is not a stage map"),
        "{}",
        status.stderr
    );
    let json = w.rekey(&["status", "--json"]).await;
    let rows: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(rows[0]["credential"], CRED);
    assert_eq!(rows[0]["generation"], 2);
    assert!(
        rows[1]["error"]
            .as_str()
            .unwrap()
            .contains("not a stage map")
    );
    w.ok(&["status", CRED]).await;
}
