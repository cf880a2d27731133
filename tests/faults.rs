//! The fault matrix: whatever happens mid-rotation, rekey never leaves a certificate on the app
//! whose private key is lost, never lets two runners rotate one credential, and the next run
//! finishes or cleanly undoes what was started.
//!
//! The real `rekey` binary is stopped at every step boundary by its test-only hold point
//! (`REKEY_TEST_HOLD_AT`, compiled out of release builds) and killed there with SIGKILL, then
//! resumed or aborted, for every store kind; Salesforce (the org emulator) fails each kind of call
//! in each way it can; stores go away mid-rotation; runners race. After every scenario the same
//! invariants are checked, and everything rekey printed or journaled is scanned for key bytes.

mod scene;
mod world;

use orgsim::{Fault, FaultKind, PropagationMode};
use rekey_api::Generation;
use rekey_testkit::moto::Moto;
use rekey_testkit::openbao::OpenBao;
use scene::*;
use std::collections::BTreeSet;
use std::time::Duration;
use world::Held;

/// Every point at which a rotation can be killed: after the lease is taken, and before, inside
/// and after each step (journaled Begin → acted → journaled Done).
fn kill_points() -> Vec<String> {
    let steps = [
        "generate", "stage", "publish", "verify", "promote", "finalize",
    ];
    std::iter::once("leased".to_string())
        .chain(steps.iter().flat_map(|s| {
            ["begin", "acted", "done"]
                .iter()
                .map(move |p| format!("{s}:{p}"))
        }))
        .collect()
}

#[derive(Clone, Copy, Debug)]
enum Then {
    Resume,
    Abort,
}

/// Kill -9 at `point`, then `then`.
async fn killed_at(kind: Kind, point: String, then: Then) {
    let mut s = Scene::new(kind).await;
    let context = format!("{kind:?} killed at {point}, then {then:?}");
    let before = s.w.app_fingerprint(APP);
    let held = Held::spawn(&s.w, &["rotate", CRED, "-vv"], &point)
        .reached(&mut s.w)
        .await;
    let killed = held.kill(&mut s.w).await;
    assert_eq!(killed.code, -1, "{context}: killed by a signal");

    let verb = match then {
        Then::Resume => "resume",
        Then::Abort => "abort",
    };
    // A killed runner cannot give its lease back; it expires, so the next runner runs after that
    // (what it sees before: `a_killed_runners_lease_holds_until_it_expires`). A file lock is
    // the kernel's and goes with the process, so there it runs at once.
    let ahead = if kind == Kind::File { 0 } else { PAST_LEASE };
    // Before any journal entry, or after the last, there is no open rotation.
    let nothing_open = point == "leased" || point == "finalize:done";
    let mut args = vec![verb, CRED, "-vv"];
    if let Then::Abort = then {
        args.extend(["--reason", "fault matrix"]);
    }
    // Every later command runs on the real clock: it finds the lease this runner took over
    // given back, not expired.
    let run = s.w.rekey_ahead(ahead, &args).await;
    let expected_code = if nothing_open { 64 } else { 0 };
    assert_eq!(
        run.code, expected_code,
        "{context}\n{}{}",
        run.stdout, run.stderr
    );

    let rotated = point == "finalize:done";
    match then {
        Then::Resume if nothing_open && !rotated => {
            // Killed before anything was journaled: a plain rotate starts afresh.
            s.w.ok(&["rotate", CRED]).await;
            s.assert_settled(2, &context).await;
        }
        Then::Resume => s.assert_settled(2, &context).await,
        Then::Abort if rotated => s.assert_settled(2, &context).await,
        Then::Abort => {
            s.assert_settled(1, &context).await;
            assert_eq!(
                s.w.app_fingerprint(APP),
                before,
                "{context}: the certificate the app held before is back on it"
            );
            // And the credential rotates cleanly afterwards, to a generation never used before.
            let since = s.w.sim.certificate_history(APP).len() - 1;
            s.w.ok(&["rotate", CRED]).await;
            let expected = if point == "leased" { 2 } else { 3 };
            s.assert_settled_since(since, expected, &format!("{context}, rotated again"))
                .await;
        }
    }
    s.assert_no_leaks(&context);
}

async fn matrix(kind: Kind, then: Then) {
    let points = kill_points();
    let n = points.len();
    let converged = run_all(points.into_iter().map(|p| killed_at(kind, p, then))).await;
    println!("fault matrix {kind:?} kill -9 then {then:?}: {n} scenarios, {converged} converged");
    assert_eq!(converged, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn file_store_killed_at_every_step_then_resumed() {
    matrix(Kind::File, Then::Resume).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn file_store_killed_at_every_step_then_aborted() {
    matrix(Kind::File, Then::Abort).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vault_store_killed_at_every_step_then_resumed() {
    matrix(Kind::Vault, Then::Resume).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vault_store_killed_at_every_step_then_aborted() {
    matrix(Kind::Vault, Then::Abort).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aws_store_killed_at_every_step_then_resumed() {
    matrix(Kind::Aws, Then::Resume).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aws_store_killed_at_every_step_then_aborted() {
    matrix(Kind::Aws, Then::Abort).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_in_vault_transit_killed_at_every_step_then_resumed() {
    matrix(Kind::VaultTransit, Then::Resume).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_in_vault_transit_killed_at_every_step_then_aborted() {
    matrix(Kind::VaultTransit, Then::Abort).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_in_aws_kms_killed_at_every_step_then_resumed() {
    matrix(Kind::AwsKms, Then::Resume).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_in_aws_kms_killed_at_every_step_then_aborted() {
    matrix(Kind::AwsKms, Then::Abort).await;
}

/// Where each kind of Salesforce call goes: OAuth (admin login and every verification), SOAP
/// (readMetadata, listMetadata) and REST (deployRequest and its status).
const SALESFORCE_CALLS: [&str; 3] = [
    "/services/oauth2/token",
    "/services/Soap/m",
    "/services/data",
];

/// rekey's request timeout while a "timeout" scenario rotates. The injected latency outlasts it
/// many times over, so the client's timer fires first however the machine stalls.
const SHORT_TIMEOUT: &str = "2";

fn temporary_faults() -> Vec<(&'static str, FaultKind)> {
    vec![
        (
            "500",
            FaultKind::ServerError {
                status: 500,
                body: "internal error".into(),
            },
        ),
        ("timeout", FaultKind::Latency { ms: 30_000 }),
        ("REQUEST_LIMIT_EXCEEDED", FaultKind::RequestLimit),
        ("Data Not Available page", FaultKind::DataNotAvailable),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn temporary_salesforce_faults_at_every_call_are_retried_until_the_rotation_converges() {
    let mut scenarios = Vec::new();
    for path in SALESFORCE_CALLS {
        for (name, fault) in temporary_faults() {
            scenarios.push(async move {
                let mut s = Scene::file().await;
                let context = format!("{name} twice on {path}");
                // Only the rotation of a timeout scenario runs with a short request timeout:
                // every other request under it races the timer too, and the checks after the
                // rotation (which do not retry) once lost that race on a loaded machine.
                let times_out = matches!(fault, FaultKind::Latency { .. });
                if times_out {
                    s.set("request_timeout_secs", SHORT_TIMEOUT);
                }
                s.w.sim
                    .inject_fault(Fault::new(fault).on_path(path).times(2));
                let run = s.w.rekey(&["rotate", CRED, "-v"]).await;
                assert_eq!(run.code, 0, "{context}\n{}{}", run.stdout, run.stderr);
                if times_out {
                    let line = format!("\nrequest_timeout_secs = {SHORT_TIMEOUT}");
                    s.w.edit_config(|c| c.replacen(&line, "", 1));
                }
                assert!(
                    run.stdout.contains("retrying") || run.stderr.contains("retrying"),
                    "{context}: the retries are reported\n{}{}",
                    run.stdout,
                    run.stderr
                );
                s.assert_settled(2, &context).await;
                s.assert_no_leaks(&context);
            });
        }
    }
    let n = run_all(scenarios).await;
    println!("salesforce temporary faults: {n} scenarios converged");
    assert_eq!(n, SALESFORCE_CALLS.len() * temporary_faults().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_deploy_stops_at_once_and_resume_finishes_after_the_cause_is_gone() {
    let mut s = Scene::file().await;
    let legacy = s.w.app_fingerprint(APP);
    s.w.sim.inject_fault(
        Fault::new(FaultKind::DeployFails {
            problem: "Invalid certificate for this org".into(),
        })
        .times(1),
    );
    let failed = s.w.rekey(&["rotate", CRED, "-v"]).await;
    assert_eq!(failed.code, 5, "{}{}", failed.stdout, failed.stderr);
    assert!(
        failed.stderr.contains("Invalid certificate for this org"),
        "{}",
        failed.stderr
    );
    assert!(
        !failed.stdout.contains("retrying"),
        "componentFailures are not retried:\n{}",
        failed.stdout
    );
    let deploys =
        s.w.sim
            .calls()
            .iter()
            .filter(|c| c.method == "POST" && c.path.ends_with("/metadata/deployRequest"))
            .count();
    assert_eq!(deploys, 1, "exactly one deploy was attempted");
    assert_eq!(s.w.app_fingerprint(APP), legacy, "the app is unchanged");

    s.w.ok(&["resume", CRED]).await;
    s.assert_settled(2, "resumed after a failed deploy").await;
    s.assert_no_leaks("failed deploy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verification_rides_through_propagation_windows() {
    for (mode, secs) in [
        (PropagationMode::Neither, 5),
        (PropagationMode::Old, 5),
        (PropagationMode::Either, 30),
    ] {
        let mut s = Scene::file().await;
        s.w.sim.set_propagation(secs, mode);
        let run = s.w.rekey(&["rotate", CRED]).await;
        let context = format!("{mode:?} for {secs}s");
        assert_eq!(run.code, 0, "{context}\n{}{}", run.stdout, run.stderr);
        let refused = run.stdout.contains("refused (invalid_grant");
        assert_eq!(
            refused,
            mode != PropagationMode::Either,
            "{context}\n{}",
            run.stdout
        );
        s.assert_settled(2, &context).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_salesforce_never_accepts_is_rolled_back_to_the_previous_one() {
    let mut s = Scene::file().await;
    let legacy = s.w.app_fingerprint(APP);
    s.w.edit_config(|c| c.replacen("verify_timeout_secs = 60", "verify_timeout_secs = 2", 1));
    // Salesforce keeps trusting only the certificate it had for an hour after any change…
    s.w.sim.set_propagation(3600, PropagationMode::Old);
    let held = Held::spawn(&s.w, &["rotate", CRED], "restore:begin")
        .reached(&mut s.w)
        .await;
    // Meanwhile `plan` shows what is left: the undo, not the rotation.
    let plan = s.w.json(&["plan", CRED]).await;
    let steps: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|st| st["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["restore", "revert", "close"], "{plan}");
    // …until rekey starts to put the old one back, which then takes effect at once.
    s.w.sim.set_propagation(0, PropagationMode::Either);
    let run = held.release(&mut s.w).await;
    assert_eq!(run.code, 7, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("rolled back"), "{}", run.stderr);
    assert!(
        run.stderr.contains("did not accept the new key within 2s"),
        "the reason: {}",
        run.stderr
    );
    assert_eq!(
        s.w.app_fingerprint(APP),
        legacy,
        "the previous certificate is back"
    );
    s.assert_settled(1, "rolled back").await;
    let journal = s.w.json(&["journal", CRED]).await;
    let close = journal.as_array().unwrap().last().unwrap();
    assert!(
        close["detail"]
            .as_str()
            .unwrap()
            .starts_with("rolled back: "),
        "{close}"
    );
    // The rolled-back key stays recoverable (the app trusted it for a while), out of every stage.
    let store = s.store().await;
    assert!(
        store
            .read_generation(CRED, Generation(2))
            .await
            .unwrap()
            .is_some()
    );
    s.assert_no_leaks("rollback");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_interrupted_rotation_is_refused_by_rotate_and_finished_by_resume() {
    let mut s = Scene::file().await;
    s.set("resume_max_age_hours", "1");
    let held = Held::spawn(&s.w, &["rotate", CRED], "publish:done")
        .reached(&mut s.w)
        .await;
    held.kill(&mut s.w).await;
    // Make the open rotation two hours old.
    let path = s.w.path("keys/billing/journal.jsonl");
    let journal = std::fs::read_to_string(&path).unwrap();
    let two_hours_ago = (chrono::Utc::now() - chrono::Duration::hours(2)).to_rfc3339();
    let aged: String = journal
        .lines()
        .map(|l| {
            let mut e: serde_json::Value = serde_json::from_str(l).unwrap();
            if e["step"] != "finalize" {
                e["at"] = two_hours_ago.clone().into();
            }
            e.to_string() + "\n"
        })
        .collect();
    std::fs::write(&path, aged).unwrap();
    let open = s.w.json(&["status", CRED]).await[0]["open_rotation"].clone();

    let refused = s.w.rekey(&["rotate", CRED]).await;
    assert_eq!(refused.code, 6, "{}", refused.stderr);
    for expected in [
        open.as_str().unwrap(),
        "publish",
        "2h00m ago",
        "rekey resume billing",
        "rekey abort billing",
    ] {
        assert!(
            refused.stderr.contains(expected),
            "names {expected}: {}",
            refused.stderr
        );
    }
    s.w.ok(&["resume", CRED]).await;
    s.assert_settled(2, "resumed an old rotation").await;
}

/// `n` runners started together: exactly one rotates, the rest refuse with exit code 75.
async fn race(kind: Kind, n: usize) {
    let mut s = Scene::new(kind).await;
    let context = format!("{n} runners on {kind:?}");
    let mut runners: Vec<Held> = (0..n)
        .map(|_| Held::spawn(&s.w, &["rotate", CRED], "leased"))
        .collect();
    // Wait until one holds the lease and every other one has given up.
    let mut refused = Vec::new();
    for _ in 0..3000 {
        let mut i = 0;
        while i < runners.len() {
            if !runners[i].is_waiting() && runners[i].child.try_wait().unwrap().is_some() {
                refused.push(runners.remove(i).finish(&mut s.w).await);
            } else {
                i += 1;
            }
        }
        if runners.len() == 1 && runners[0].is_waiting() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(runners.len(), 1, "{context}: one runner holds the lease");
    assert_eq!(refused.len(), n - 1, "{context}");
    for run in &refused {
        assert_eq!(run.code, 75, "{context}: refused\n{}", run.stderr);
        assert!(
            run.stderr.contains("rekey rotate on"),
            "{context}: names the holder: {}",
            run.stderr
        );
    }
    let winner = runners.pop().unwrap().release(&mut s.w).await;
    assert_eq!(
        winner.code, 0,
        "{context}: the winner\n{}{}",
        winner.stdout, winner.stderr
    );
    s.assert_settled(2, &context).await;
    let journal = s.w.json(&["journal", CRED]).await;
    let ids: BTreeSet<&str> = journal
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["rotation_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids.len(),
        1,
        "{context}: exactly one rotation journaled: {ids:?}"
    );
    assert_eq!(
        journal.as_array().unwrap().len(),
        12,
        "{context}: begin+done for six steps"
    );
    s.assert_no_leaks(&context);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_runners_on_one_credential_rotate_once() {
    for kind in [Kind::File, Kind::Vault, Kind::Aws] {
        run_all([2, 4, 8].map(|n| race(kind, n))).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_sealed_mid_rotation_fails_cleanly_and_resume_finishes_once_unsealed() {
    let bao = OpenBao::start();
    let mut s = Scene::vault(&bao, bao.root_token()).await;
    let held = Held::spawn(&s.w, &["rotate", CRED], "publish:done")
        .reached(&mut s.w)
        .await;
    bao.bao_ok(&["operator", "seal"]);
    let failed = held.release(&mut s.w).await;
    assert_eq!(failed.code, 4, "{}{}", failed.stdout, failed.stderr);
    assert!(
        failed.stderr.to_lowercase().contains("sealed"),
        "names the cause: {}",
        failed.stderr
    );
    bao.unseal();
    // The stopped runner could not give its lease back to a sealed Vault: resume runs once it
    // expired.
    s.w.ok_ahead(PAST_LEASE, &["resume", CRED]).await;
    s.assert_settled(2, "vault sealed after publish").await;
    s.assert_no_leaks("vault sealed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_vault_token_stops_the_rotation_and_a_new_token_resumes_it() {
    let bao = OpenBao::shared();
    let token = bao.bao_ok(&["token", "create", "-policy=root", "-field=token"]);
    let mut s = Scene::vault(bao, token.trim()).await;
    let held = Held::spawn(&s.w, &["rotate", CRED], "stage:done")
        .reached(&mut s.w)
        .await;
    bao.bao_ok(&["token", "revoke", token.trim()]);
    let failed = held.release(&mut s.w).await;
    assert_eq!(
        failed.code, 5,
        "stopped before the app was touched\n{}{}",
        failed.stdout, failed.stderr
    );
    assert!(
        failed.stderr.contains("VAULT_TOKEN") || failed.stderr.contains("token"),
        "{}",
        failed.stderr
    );
    let fresh = bao.bao_ok(&["token", "create", "-policy=root", "-field=token"]);
    s.w.env.retain(|(k, _)| k != "VAULT_TOKEN");
    s.w.env.push(("VAULT_TOKEN".into(), fresh.trim().into()));
    // The stopped runner could not give its lease back with a revoked token: resume runs once
    // it expired.
    s.w.ok_ahead(PAST_LEASE, &["resume", CRED]).await;
    s.assert_settled(2, "vault token revoked").await;
    s.assert_no_leaks("vault token revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_secrets_manager_is_waited_out() {
    let moto = Moto::start();
    let mut s = Scene::aws(&moto).await;
    let held = Held::spawn(&s.w, &["rotate", CRED], "verify:done")
        .reached(&mut s.w)
        .await;
    // Freeze Secrets Manager, let rekey go on into promote, and bring it back once rekey is
    // stuck on it (not after a fixed time, which a slow rekey might not have reached it in).
    moto.pause();
    std::fs::remove_file(&held.file).unwrap();
    let port: u16 = moto.endpoint().rsplit(':').next().unwrap().parse().unwrap();
    for _ in 0..3000 {
        if unread_at(port) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        unread_at(port),
        "rekey never sent the frozen server a request"
    );
    moto.resume();
    let run = held.finish(&mut s.w).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    s.assert_settled(2, "secrets manager stalled during promote")
        .await;
    s.assert_no_leaks("secrets manager stalled");
}

/// Whether something waits, unread, at the server listening on 127.0.0.1:`port`: a connection
/// holding bytes it has not read, or one in its accept queue (`/proc/net/tcp`: for a listening
/// socket the receive queue is the accept backlog). A frozen server reads nothing.
fn unread_at(port: u16) -> bool {
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        text.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let hex = |s: Option<&str>| s.and_then(|s| u64::from_str_radix(s, 16).ok());
            let local_port = hex(fields.get(1).and_then(|a| a.rsplit(':').next()));
            let unread = hex(fields.get(4).and_then(|q| q.split(':').nth(1)));
            local_port == Some(u64::from(port)) && unread.is_some_and(|n| n > 0)
        })
    })
}

/// A runner stuck longer than its lease loses the credential to the next runner and, when it
/// wakes up, stops before its next write.
async fn a_runner_that_lost_its_lease_stops_before_writing(kind: Kind) {
    let mut s = Scene::new(kind).await;
    let context = format!("{kind:?}");
    let stale = Held::spawn(&s.w, &["rotate", CRED], "publish:done")
        .reached(&mut s.w)
        .await;
    // The next runner comes after the stale one's lease expired (by its clock; the stale one's
    // own clock has not moved, so only the store can tell it that it lost the lease).
    let took_over = s.w.rekey_ahead(PAST_LEASE, &["resume", CRED]).await;
    assert_eq!(
        took_over.code, 0,
        "{context}: the next runner\n{}{}",
        took_over.stdout, took_over.stderr
    );
    let before = s.w.json(&["journal", CRED]).await;

    let woke = stale.release(&mut s.w).await;
    assert_eq!(
        woke.code, 6,
        "{context}: the stale runner\n{}{}",
        woke.stdout, woke.stderr
    );
    assert!(
        woke.stderr.contains("lease"),
        "{context}: says why: {}",
        woke.stderr
    );
    assert_eq!(
        s.w.json(&["journal", CRED]).await,
        before,
        "{context}: the stale runner wrote nothing"
    );
    s.assert_settled(2, &context).await;
    s.assert_no_leaks(&context);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_that_lost_its_lease_stops_before_writing_to_vault_or_aws() {
    a_runner_that_lost_its_lease_stops_before_writing(Kind::Vault).await;
    a_runner_that_lost_its_lease_stops_before_writing(Kind::Aws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_runners_lease_holds_until_it_expires() {
    for kind in [Kind::Vault, Kind::Aws] {
        let mut s = Scene::new(kind).await;
        let context = format!("{kind:?}");
        let held = Held::spawn(&s.w, &["rotate", CRED], "publish:done")
            .reached(&mut s.w)
            .await;
        let pid = held.child.id().unwrap();
        held.kill(&mut s.w).await;
        // Right away, and half its time to live later (by rekey's clock: what a lease is judged
        // by), every runner is refused and told who holds it until when.
        for (ahead, verb) in [
            (0, "resume"),
            (0, "abort"),
            (0, "rotate"),
            (LEASE_SECS as i64 / 2, "resume"),
        ] {
            let blocked = s.w.rekey_ahead(ahead, &[verb, CRED]).await;
            let context = format!("{context} {verb} {ahead}s later");
            assert_eq!(blocked.code, 75, "{context}\n{}", blocked.stderr);
            for expected in [
                "rekey rotate on".to_string(),
                format!("(pid {pid})"),
                "until".to_string(),
            ] {
                assert!(
                    blocked.stderr.contains(&expected),
                    "{context}: names {expected}: {}",
                    blocked.stderr
                );
            }
        }
        let status = s.w.json(&["status", CRED]).await;
        assert!(
            status[0]["open_rotation"].is_string(),
            "{context}: nothing changed\n{status}"
        );
        // Once it has expired, the next runner takes it over and finishes the rotation.
        s.w.ok_ahead(PAST_LEASE, &["resume", CRED]).await;
        s.assert_settled(2, &format!("{context}: resumed after the lease expired"))
            .await;
    }
}
