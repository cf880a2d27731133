//! The fault matrix for consumer secrets: whatever point a `rekey rotate etl` is killed at
//! (SIGKILL at every step boundary, through the debug-only hold points), `rekey resume` finishes
//! the rotation, and `rekey abort` either undoes it (while Salesforce's primary pair is still the
//! old one) or is refused with exit 6, changing nothing, once the staged pair was rotated to
//! primary — after which `rekey resume` finishes. For the file store, Vault (OpenBao) and AWS
//! (moto). After every scenario: one CURRENT, equal in every store and to the app's primary pair;
//! nothing of ours left at Salesforce but the Rotated previous pair (which is the store's
//! PREVIOUS); the journal closed; no consumer secret in anything rekey printed or journaled.
//! Also killed at each consumer step (a `file` consumer): resume deletes the previous pair only
//! once the consumers adopted, and never when the interrupted run had found a laggard.

mod scene;
mod secret_scene;
mod world;

use scene::{Kind, PAST_LEASE, run_all};
use secret_scene::{CRED, SecretScene, add_consumers, add_laggard};
use serde_json::json;
use world::Held;

/// The steps of a plain consumer secret rotation without consumers, in order.
const STEPS: [&str; 7] = [
    "generate", "stage", "publish", "verify", "promote", "retire", "finalize",
];

/// Every point a rotation can be killed at: after the lease is taken, and before, inside and
/// after each step (journaled Begin → acted → journaled Done).
fn kill_points() -> Vec<String> {
    std::iter::once("leased".to_string())
        .chain(STEPS.iter().flat_map(|s| {
            ["begin", "acted", "done"]
                .iter()
                .map(move |p| format!("{s}:{p}"))
        }))
        .collect()
}

/// Whether the PATCH that makes the staged pair primary has reached Salesforce by `point`.
fn rotated_at_salesforce(point: &str) -> bool {
    let (step, phase) = point.split_once(':').unwrap_or((point, ""));
    match STEPS.iter().position(|s| *s == step) {
        None => false,
        Some(i) if STEPS[i] == "publish" => phase != "begin",
        Some(i) => i > 2,
    }
}

#[derive(Clone, Copy, Debug)]
enum Then {
    Resume,
    Abort,
}

/// The store's generations (CURRENT, PENDING, PREVIOUS), to prove a command changed none.
async fn generations(s: &SecretScene) -> [Option<u64>; 3] {
    let stages = s.store().await.stages(CRED).await.unwrap();
    [stages.current, stages.pending, stages.previous].map(|v| v.map(|v| v.generation.0))
}

/// Kill -9 at `point`, then `then`, then the invariants.
async fn killed_at(kind: Kind, point: String, then: Then) {
    let mut s = SecretScene::new(kind).await;
    let context = format!("{kind:?} killed at {point}, then {then:?}");
    let original = s.observe();
    let held = Held::spawn(&s.w, &["rotate", CRED, "-vv"], &point)
        .reached(&mut s.w)
        .await;
    let killed = held.kill(&mut s.w).await;
    assert_eq!(killed.code, -1, "{context}: killed by a signal");
    let at_kill = s.observe();
    let rotated = rotated_at_salesforce(&point);
    assert_eq!(
        at_kill.key != original.key,
        rotated,
        "{context}: the app's primary pair at the kill: {at_kill:?}"
    );

    // A killed runner cannot give its lease back; it expires, so the next command runs with
    // rekey's clock past it. A file lock is the kernel's and goes with the process.
    let ahead = if kind == Kind::File { 0 } else { PAST_LEASE };
    let nothing_open = point == "leased" || point == "finalize:done";
    match then {
        Then::Resume => {
            let run = s.w.rekey_ahead(ahead, &["resume", CRED, "-vv"]).await;
            let expected = if nothing_open { 64 } else { 0 };
            assert_eq!(
                run.code, expected,
                "{context}\n{}{}",
                run.stdout, run.stderr
            );
            if point == "leased" {
                // Killed before anything was journaled: a plain rotate starts afresh.
                s.w.ok(&["rotate", CRED]).await;
            }
            s.assert_settled(2, true, &context).await;
        }
        Then::Abort if nothing_open => {
            let run =
                s.w.rekey_ahead(ahead, &["abort", CRED, "--reason", "fault matrix"])
                    .await;
            assert_eq!(run.code, 64, "{context}\n{}{}", run.stdout, run.stderr);
            let generation = if point == "leased" { 1 } else { 2 };
            s.assert_settled(generation, generation == 2, &context)
                .await;
        }
        Then::Abort if !rotated => {
            let run =
                s.w.rekey_ahead(ahead, &["abort", CRED, "-vv", "--reason", "fault matrix"])
                    .await;
            assert_eq!(run.code, 0, "{context}\n{}{}", run.stdout, run.stderr);
            s.assert_settled(1, false, &context).await;
            let app = s.observe();
            assert_eq!(
                (app.key.as_str(), app.secret.as_str()),
                (original.key.as_str(), original.secret.as_str()),
                "{context}: the app's primary pair never changed"
            );
            // And the credential rotates cleanly afterwards, to a generation never used before.
            s.w.ok(&["rotate", CRED]).await;
            s.assert_settled(3, true, &format!("{context}, rotated again"))
                .await;
        }
        Then::Abort => {
            let journal = s.w.json(&["journal", CRED]).await;
            let stages = generations(&s).await;
            let run =
                s.w.rekey_ahead(ahead, &["abort", CRED, "--reason", "fault matrix"])
                    .await;
            assert_eq!(
                run.code, 6,
                "{context}: refused\n{}{}",
                run.stdout, run.stderr
            );
            for expected in [
                "cannot make the previous one primary again",
                "rekey resume etl",
            ] {
                assert!(
                    run.stderr.contains(expected),
                    "{context}: says {expected:?}:\n{}",
                    run.stderr
                );
            }
            assert_eq!(
                s.w.json(&["journal", CRED]).await,
                journal,
                "{context}: the refused abort journaled nothing"
            );
            assert_eq!(
                generations(&s).await,
                stages,
                "{context}: the stores are unchanged"
            );
            assert_eq!(s.observe(), at_kill, "{context}: Salesforce is unchanged");
            // The refused abort gave the lease it took over back: resume runs at once.
            s.w.ok(&["resume", CRED, "-vv"]).await;
            s.assert_settled(2, true, &context).await;
        }
    }
    s.assert_no_leaks(&context);
}

/// Every kill point, each resumed in one world and aborted in another.
async fn matrix(kind: Kind) {
    let points = kill_points();
    let n = points.len() * 2;
    let scenarios = points.into_iter().flat_map(|p| {
        [
            killed_at(kind, p.clone(), Then::Resume),
            killed_at(kind, p, Then::Abort),
        ]
    });
    let converged = run_all(scenarios).await;
    println!("consumer secret fault matrix {kind:?}: {n} scenarios converged");
    assert_eq!(converged, n);
}

#[test]
fn the_matrix_covers_every_step_and_knows_where_the_rotate_happens() {
    let points = kill_points();
    assert_eq!(points.len(), 1 + 3 * STEPS.len());
    let rotated: Vec<&str> = points
        .iter()
        .filter(|p| rotated_at_salesforce(p))
        .map(String::as_str)
        .collect();
    assert_eq!(rotated.first(), Some(&"publish:acted"));
    assert!(!rotated.contains(&"publish:begin"));
    assert_eq!(rotated.len(), 2 + 3 * 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn file_store_killed_at_every_step_then_resumed_or_aborted() {
    matrix(Kind::File).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vault_store_killed_at_every_step_then_resumed_or_aborted() {
    matrix(Kind::Vault).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aws_store_killed_at_every_step_then_resumed_or_aborted() {
    matrix(Kind::Aws).await;
}

/// Killed at a consumer step (a `file` consumer), resumed: the consumer ends up with the new
/// pair, and only then is the previous pair deleted at Salesforce.
async fn consumer_killed_at(point: &'static str) {
    let mut s = SecretScene::new(Kind::File).await;
    let context = format!("with a file consumer, killed at {point}, then resumed");
    add_consumers(
        &s.w,
        "",
        &["name = \"nightly\"\nkind = \"file\"\nkey_path = \"etl.json\"".to_string()],
    );
    let old = s.observe();
    let held = Held::spawn(&s.w, &["rotate", CRED], point)
        .reached(&mut s.w)
        .await;
    held.kill(&mut s.w).await;
    s.w.ok(&["resume", CRED]).await;
    let new = s.observe();
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.w.path("etl.json")).unwrap()).unwrap();
    assert_eq!(
        file,
        json!({"consumer_key": new.key, "consumer_secret": new.secret}),
        "{context}"
    );
    let (status, body) =
        s.w.sim
            .client_credentials_grant(&old.key, &old.secret)
            .await;
    assert_eq!(
        status, 400,
        "{context}: the previous pair is deleted: {body}"
    );
    s.assert_settled(2, false, &context).await;
    s.assert_no_leaks(&context);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_at_a_consumer_step_resume_deletes_the_old_pair_only_after_adoption() {
    let points = [
        "prepare:begin",
        "prepare:done",
        "activate:begin",
        "activate:acted",
        "activate:done",
        "adopt:begin",
        "adopt:done",
        "retire:begin",
    ];
    let n = run_all(points.map(consumer_killed_at)).await;
    assert_eq!(n, points.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_laggard_found_before_a_kill_still_keeps_the_old_pair_valid_after_resume() {
    let mut s = SecretScene::new(Kind::File).await;
    let old = s.observe();
    let _stubborn = add_laggard(&mut s, &old).await;
    // Killed after the adopt step journaled the laggard, before the retire step.
    let held = Held::spawn(&s.w, &["rotate", CRED], "retire:begin")
        .reached(&mut s.w)
        .await;
    held.kill(&mut s.w).await;
    let run = s.w.ok(&["resume", CRED]).await;
    let (status, body) =
        s.w.sim
            .client_credentials_grant(&old.key, &old.secret)
            .await;
    assert_eq!(
        status, 200,
        "the laggard still uses the previous pair, which must stay valid: {body}\n{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("stays valid for 24h (not every consumer adopted the new pair)"),
        "{}",
        run.stdout
    );
    s.assert_settled(2, true, "laggard, killed before retire")
        .await;
    s.assert_no_leaks("laggard");
}
