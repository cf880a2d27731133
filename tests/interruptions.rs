//! What the world does to a running rotation besides crashing it (that is `faults.rs`): output
//! that cannot be written (a reader that went away, closed descriptors, a full disk) and signals
//! (SIGHUP of a closed terminal, SIGTERM/SIGINT from an operator or a supervisor, twice).
//!
//! The rule under test: printing never interrupts the protocol, SIGHUP changes nothing, and a
//! stop request ends the command at the next step boundary with the journal open for `resume`.

mod world;

use std::process::Stdio;
use world::{Held, World};

/// Asserts the app trusts the store's CURRENT, that it is not `old` (the rotation finished), and
/// that no rotation is left open.
async fn finished_rotation(w: &mut World, old: &str, context: &str) {
    let current = w.current_fingerprint("billing").await;
    assert_ne!(current, old, "{context}: CURRENT is still the old key");
    assert_eq!(
        w.app_fingerprint("Billing_Sync"),
        current,
        "{context}: the app holds CURRENT"
    );
    let status = w.json(&["status", "billing"]).await;
    assert!(
        status[0]["open_rotation"].is_null(),
        "{context}: a rotation is left open: {status}"
    );
}

/// A writer whose reader has already gone: the first write fails with EPIPE, as
/// `rekey rotate billing | head -0` would.
fn broken_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer.into()
}

/// A file where every write fails with ENOSPC.
fn full_disk() -> Stdio {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap()
        .into()
}

/// `rekey rotate` (text and `--json`) and `rekey run` whose stdout and stderr cannot be written
/// (`-vv`, so every step logs too) still finish the rotation; nothing panics on the way.
#[tokio::test(flavor = "multi_thread")]
async fn output_that_cannot_be_written_never_stops_a_rotation() {
    let mut w = World::billing_only().await;
    // `run` first: it rotates only what is due, and the imported openssl key is.
    let cases: [(&str, &[&str], fn() -> Stdio); 4] = [
        (
            "run | a reader that went away",
            &["-vv", "run"],
            broken_pipe,
        ),
        (
            "rotate | a reader that went away",
            &["-vv", "rotate", "billing"],
            broken_pipe,
        ),
        (
            "rotate --json > /dev/full",
            &["-vv", "--json", "rotate", "billing"],
            full_disk,
        ),
        (
            "rotate > /dev/full",
            &["-vv", "rotate", "billing"],
            full_disk,
        ),
    ];
    for (context, args, sink) in cases {
        let old = w.current_fingerprint("billing").await;
        let status = w
            .command(args)
            .stdout(sink())
            .stderr(sink())
            .status()
            .await
            .unwrap();
        assert_eq!(status.code(), Some(0), "{context}: exit code");
        finished_rotation(&mut w, &old, context).await;
    }
}

/// `rekey rotate >&- 2>&-`: with its standard descriptors closed, rekey must neither fail nor
/// write its report into the next file it opens (which would take descriptor 1 or 2).
#[tokio::test(flavor = "multi_thread")]
async fn closed_standard_descriptors_never_stop_a_rotation_or_reach_a_file() {
    let mut w = World::billing_only().await;
    let old = w.current_fingerprint("billing").await;
    let mut closed = w.shell(r#"exec "$REKEY" -vv rotate billing <&- >&- 2>&-"#);
    let status = closed.status().await.unwrap();
    assert_eq!(status.code(), Some(0), "exit code");
    finished_rotation(&mut w, &old, "rotate >&- 2>&-").await;
    // Every key and certificate rekey wrote still parses, and no file of the world holds a log
    // line (-vv logs every step at DEBUG).
    let run = w.rekey(&["verify", "billing"]).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    for file in world::walk(&w.path("")) {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            !text.contains(" DEBUG ") && !text.contains(" INFO "),
            "{} holds log lines:\n{text}",
            file.display()
        );
    }
}

/// SIGHUP (the terminal closed) at the switchover point: the rotation goes on and finishes.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_at_the_switchover_point_changes_nothing() {
    let mut w = World::billing_only().await;
    let old = w.current_fingerprint("billing").await;
    let held = Held::spawn(&w, &["-v", "rotate", "billing"], "publish:done")
        .reached(&mut w)
        .await;
    held.signal("HUP");
    held.said("SIGHUP: going on").await;
    let run = held.release(&mut w).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    finished_rotation(&mut w, &old, "SIGHUP after publish").await;
}

/// SIGTERM to `rotate`, SIGINT to `emergency` after publish: each stops before verify with exit 4
/// (the app may hold the new certificate), the journal open at `publish done`; `resume` finishes.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_or_sigint_stops_rotate_and_emergency_at_the_next_step_boundary() {
    let mut w = World::billing_only().await;
    let cases: [(&str, &[&str], &str); 2] = [
        ("TERM", &["rotate", "billing"], "SIGTERM"),
        (
            "INT",
            &["emergency", "billing", "--reason", "leak drill", "--yes"],
            "SIGINT",
        ),
    ];
    for (signal, args, name) in cases {
        let old = w.current_fingerprint("billing").await;
        let held = Held::spawn(&w, args, "publish:done").reached(&mut w).await;
        held.signal(signal);
        // The hold point ignores the signal; only once the stop is in force may it go on.
        held.said(&format!("{name}: stopping after the current step"))
            .await;
        let run = held.release(&mut w).await;
        assert_eq!(run.code, 4, "{name} {args:?}: {}{}", run.stdout, run.stderr);
        assert!(
            run.stderr
                .contains("stopped by a shutdown signal before verify"),
            "{}",
            run.stderr
        );
        let journal = w.json(&["journal", "billing"]).await;
        let last = journal.as_array().unwrap().last().unwrap();
        assert_eq!(
            (last["step"].as_str(), last["phase"].as_str()),
            (Some("publish"), Some("done")),
            "{journal}"
        );
        assert_eq!(w.current_fingerprint("billing").await, old, "not promoted");
        w.ok(&["resume", "billing"]).await;
        finished_rotation(&mut w, &old, &format!("{name} then resume")).await;
    }
    w.assert_no_key_bytes_leaked();
}

/// SIGINT to `abort` half-way through the undo stops it at a step boundary; the next `abort`
/// finishes it and the app trusts the old key again.
#[tokio::test(flavor = "multi_thread")]
async fn sigint_stops_an_abort_at_a_step_boundary_and_abort_again_finishes_it() {
    let mut w = World::billing_only().await;
    let old = w.current_fingerprint("billing").await;
    Held::spawn(&w, &["rotate", "billing"], "publish:done")
        .reached(&mut w)
        .await
        .kill(&mut w)
        .await;
    assert_ne!(w.app_fingerprint("Billing_Sync"), old, "published");
    let held = Held::spawn(&w, &["abort", "billing"], "restore:done")
        .reached(&mut w)
        .await;
    held.signal("INT");
    held.said("SIGINT: stopping after the current step").await;
    let run = held.release(&mut w).await;
    assert_ne!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("stopped by a shutdown signal before"),
        "{}",
        run.stderr
    );
    let status = w.json(&["status", "billing"]).await;
    assert!(
        !status[0]["open_rotation"].is_null(),
        "still open: {status}"
    );
    w.ok(&["abort", "billing"]).await;
    assert_eq!(
        w.app_fingerprint("Billing_Sync"),
        old,
        "the old key is back"
    );
    assert_eq!(w.current_fingerprint("billing").await, old);
}

/// A second SIGTERM does not wait for the step boundary: the process ends at once (exit 143), and
/// the journal lets `resume` finish the rotation.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_sigterm_ends_the_process_at_once_and_resume_finishes() {
    let mut w = World::billing_only().await;
    let old = w.current_fingerprint("billing").await;
    let mut held = Held::spawn(&w, &["rotate", "billing"], "publish:done")
        .reached(&mut w)
        .await;
    held.signal("TERM");
    held.said("SIGTERM: stopping after the current step").await;
    held.signal("TERM");
    held.said("SIGTERM again: stopping now").await;
    for _ in 0..3000 {
        if held.ended() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(held.is_waiting(), "it never left its hold point");
    let run = held.finish(&mut w).await;
    assert_eq!(run.code, 143, "{}{}", run.stdout, run.stderr);
    w.ok(&["resume", "billing"]).await;
    finished_rotation(&mut w, &old, "two SIGTERMs then resume").await;
}

/// An evidence bundle that cannot be written (its folder cannot be made) does not stop the
/// emergency rekey: the leaked key is replaced, and the exit code (70) and a warning say the
/// bundle is missing and how to get one.
#[tokio::test(flavor = "multi_thread")]
async fn an_evidence_bundle_that_cannot_be_written_never_stops_an_emergency() {
    let mut w = World::billing_only().await;
    let old = w.current_fingerprint("billing").await;
    std::fs::write(w.path("not-a-folder"), "").unwrap();
    let dir = w.path("not-a-folder/evidence");
    let run = w
        .rekey(&[
            "emergency",
            "billing",
            "--reason",
            "leak drill",
            "--yes",
            "--evidence-dir",
            dir.to_str().unwrap(),
        ])
        .await;
    assert_eq!(run.code, 70, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("cannot write the evidence bundle")
            && run.stderr.contains("--evidence-dir"),
        "{}",
        run.stderr
    );
    finished_rotation(&mut w, &old, "emergency without its evidence folder").await;
}
