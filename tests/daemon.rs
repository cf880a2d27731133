//! `rekey daemon` and stopping runs through the real binary: metrics and health served while it
//! runs, SIGTERM stopping a rotation of `run` or of the daemon at a step boundary with the journal
//! open for the next run, `/healthz` turning 503 when runs stop.

mod world;

use std::time::Duration;
use world::World;

/// Any signing secret: the dead channel never receives what it would sign.
const HOOK_SECRET: &str = "hook-signing-secret-0001";

/// `rekey args` in the background, its output in the file `log` of the world.
fn spawn_logged(
    w: &World,
    args: &[&str],
    log: &str,
    env: &[(&str, &std::path::Path)],
) -> tokio::process::Child {
    // A file, not a pipe: nobody reads a pipe while the process runs.
    let log = std::fs::File::create(w.path(log)).unwrap();
    w.command(args)
        .envs(env.iter().copied())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Waits until the log file `log` of a running process holds `line`, under a hang guard far
/// above the milliseconds it takes.
async fn printed(log: &std::path::Path, line: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(line) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never printed {line:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Where a daemon logging to `log` serves `/metrics` and `/healthz`: the address it says it bound
/// (it listens on port 0), once it has said so.
async fn daemon_address(log: &std::path::Path) -> String {
    let ready = "rekey daemon: /metrics and /healthz on ";
    printed(log, ready).await;
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(ready))
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .to_string()
}

/// Waits until a process spawned with a hold point reached it (its hold file exists), under a
/// hang guard; panics with its log otherwise.
async fn reached_hold(hold: &std::path::Path, log: &std::path::Path) {
    for _ in 0..1200 {
        if hold.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "never reached its hold point:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// SIGTERM to a process waiting at its hold point; once it says the stop is in force (the hold
/// point itself ignores the signal), lets it go on to the next step boundary and waits for it.
async fn stop_at_the_next_boundary(
    child: &mut tokio::process::Child,
    hold: &std::path::Path,
    log: &std::path::Path,
) -> std::process::ExitStatus {
    sigterm(child);
    printed(log, "SIGTERM: stopping after the current step").await;
    std::fs::remove_file(hold).unwrap();
    tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("it stops after SIGTERM")
        .unwrap()
}

fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().unwrap().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
}

/// `rekey daemon` runs on its interval, serves the check metrics and its own over HTTP, and stops
/// with exit 0 on SIGTERM.
#[tokio::test(flavor = "multi_thread")]
async fn daemon_serves_metrics_and_health_and_stops_on_sigterm() {
    let w = World::billing_only().await;
    // Port 0: the daemon binds a free port itself and says which one when it is ready.
    w.edit_config(|c| format!("{c}\n[daemon]\nlisten = \"127.0.0.1:0\"\ninterval_secs = 1\n"));
    let mut daemon = spawn_logged(&w, &["daemon"], "daemon.log", &[]);
    let base = daemon_address(&w.path("daemon.log")).await;
    assert!(
        base.starts_with("http://127.0.0.1:") && !base.ends_with(":0"),
        "the address it bound: {base}"
    );
    let http = reqwest::Client::new();
    let mut metrics = String::new();
    for _ in 0..300 {
        if let Ok(r) = http.get(format!("{base}/metrics")).send().await {
            metrics = r.text().await.unwrap();
            if metric(&metrics, "rekey_runs_total").is_some_and(|n| n >= 2.0) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log_text = || std::fs::read_to_string(w.path("daemon.log")).unwrap();
    assert!(
        metric(&metrics, "rekey_runs_total").is_some_and(|n| n >= 2.0),
        "{metrics}\n{}",
        log_text()
    );
    // billing was due (29 days left, renew_before_days 30), so the first run rotated it.
    assert_eq!(
        metric(&metrics, "rekey_rotations_total{outcome=\"succeeded\"}"),
        Some(1.0),
        "{metrics}"
    );
    let not_after = metrics
        .lines()
        .find(|l| {
            l.starts_with("rekey_certificate_not_after_timestamp_seconds{")
                && l.contains("source=\"app\"")
        })
        .unwrap_or_else(|| panic!("{metrics}"));
    let value: f64 = not_after.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(
        value > (chrono::Utc::now() + chrono::Duration::days(300)).timestamp() as f64,
        "the rotated certificate: {not_after}"
    );
    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(health.text().await.unwrap().starts_with("ok"));

    sigterm(&daemon);
    let status = tokio::time::timeout(Duration::from_secs(20), daemon.wait())
        .await
        .expect("the daemon stops within 20 s of SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0), "{}", log_text());
    assert!(
        log_text().contains("rekey daemon: stopped"),
        "{}",
        log_text()
    );
}

/// The value of the sample `series` (a metric name, or a name with its labels).
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// SIGTERM while `rekey run` is between two steps of a rotation: it stops there with the journal
/// open (exit 4: the certificate was published), and the next run finishes the rotation even
/// though the credential is no longer due.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_a_rotation_at_a_step_boundary_and_the_next_run_finishes_it() {
    let mut w = World::billing_only().await;
    let hold = w.path("hold");
    let mut run = spawn_logged(
        &w,
        &["run"],
        "run.log",
        &[
            ("REKEY_TEST_HOLD_AT", std::path::Path::new("publish:done")),
            ("REKEY_TEST_HOLD_FILE", &hold),
        ],
    );
    reached_hold(&hold, &w.path("run.log")).await;
    let status = stop_at_the_next_boundary(&mut run, &hold, &w.path("run.log")).await;
    let log_text = std::fs::read_to_string(w.path("run.log")).unwrap();
    assert_eq!(status.code(), Some(4), "{log_text}");
    assert!(
        log_text.contains("stopped by a shutdown signal before verify"),
        "{log_text}"
    );
    let journal = w.json(&["journal", "billing"]).await;
    let last = journal.as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["step"].as_str(), last["phase"].as_str()),
        (Some("publish"), Some("done")),
        "{journal}"
    );

    let finished = w.json(&["run"]).await;
    let row = &finished["credentials"][0];
    assert_eq!(row["action"], "rotated", "{finished}");
    assert_eq!(row["reasons"][0]["reason"], "interrupted", "{finished}");
    assert_eq!(
        w.app_fingerprint("Billing_Sync"),
        w.current_fingerprint("billing").await
    );
}

/// SIGTERM to the daemon while a run rotates: it stops at the next step boundary with the journal
/// open, and the next run finishes the rotation. Its `/metrics` meanwhile carry the last run's
/// time and exit code and count the notifications a channel refused.
#[tokio::test(flavor = "multi_thread")]
async fn daemon_sigterm_mid_rotation_leaves_the_journal_for_the_next_run_and_metrics_tell_the_runs()
{
    let w = World::billing_only().await;
    let dead = rekey_testkit::receiver::RefusingPort::bind();
    let dead_url = dead.url("/hook");
    w.edit_config(|c| {
        format!(
            "{c}\n[daemon]\nlisten = \"127.0.0.1:0\"\ninterval_secs = 1\n\n[alerts]\nstate_file = \"state/alerts.json\"\n\n[alerts.channels.dead]\nkind = \"webhook\"\nurl = \"{dead_url}\"\nsecret_file = \"hook.secret\"\n"
        )
    });
    std::fs::write(w.path("hook.secret"), format!("{HOOK_SECRET}\n")).unwrap();
    let hold = w.path("hold");
    // The first run rotates billing (29 days left, renew_before_days 30) and waits after publish.
    let mut daemon = spawn_logged(
        &w,
        &["daemon"],
        "daemon.log",
        &[
            ("REKEY_TEST_HOLD_AT", std::path::Path::new("publish:done")),
            ("REKEY_TEST_HOLD_FILE", &hold),
        ],
    );
    let log_text = || std::fs::read_to_string(w.path("daemon.log")).unwrap();
    let base = daemon_address(&w.path("daemon.log")).await;
    reached_hold(&hold, &w.path("daemon.log")).await;
    // No run has finished yet: the run metrics are not there, the counters are zero.
    let http = reqwest::Client::new();
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(metric(&metrics, "rekey_runs_total"), Some(0.0), "{metrics}");
    assert!(
        metric(&metrics, "rekey_run_last_exit_code").is_none(),
        "{metrics}"
    );
    // The run ends (stopped before verify), its metrics are recorded, then the daemon stops.
    let status = stop_at_the_next_boundary(&mut daemon, &hold, &w.path("daemon.log")).await;
    assert_eq!(status.code(), Some(0), "{}", log_text());
    assert!(
        log_text().contains("stopped by a shutdown signal before verify"),
        "{}",
        log_text()
    );
    let mut w = w;
    let journal = w.json(&["journal", "billing"]).await;
    let last = journal.as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["step"].as_str(), last["phase"].as_str()),
        (Some("publish"), Some("done")),
        "{journal}"
    );

    // A daemon again (no hold): its first run finishes the rotation; the dead channel refuses
    // the rotation notice, and /metrics say so with the run's time and exit code.
    let mut daemon = spawn_logged(&w, &["daemon"], "daemon2.log", &[]);
    let log2 = || std::fs::read_to_string(w.path("daemon2.log")).unwrap();
    let base = daemon_address(&w.path("daemon2.log")).await;
    let mut metrics = String::new();
    for _ in 0..600 {
        metrics = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metric(&metrics, "rekey_runs_total").is_some_and(|n| n >= 1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        metric(&metrics, "rekey_rotations_total{outcome=\"succeeded\"}"),
        Some(1.0),
        "the interrupted rotation was finished\n{metrics}\n{}",
        log2()
    );
    let finished =
        metric(&metrics, "rekey_run_last_finished_timestamp_seconds").expect("last run time");
    let now = chrono::Utc::now().timestamp() as f64;
    assert!(
        (now - 600.0..=now + 5.0).contains(&finished),
        "{finished} vs {now}"
    );
    // Nothing is past a threshold any more, but the dead channel is "unknown" (3).
    assert_eq!(
        metric(&metrics, "rekey_run_last_exit_code"),
        Some(3.0),
        "{metrics}"
    );
    assert!(
        metric(&metrics, "rekey_notifications_failed_total").is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    sigterm(&daemon);
    let status = tokio::time::timeout(Duration::from_secs(30), daemon.wait())
        .await
        .expect("the daemon stops")
        .unwrap();
    assert_eq!(status.code(), Some(0), "{}", log2());
    assert_eq!(
        w.app_fingerprint("Billing_Sync"),
        w.current_fingerprint("billing").await
    );
    w.assert_no_key_bytes_leaked();
}

/// `/healthz` answers 503 once runs stop finishing (here a rotation hangs at a hold point past
/// two intervals plus the run allowance, shortened for the test), and 200 again once a run
/// finishes; the daemon keeps serving meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn healthz_turns_503_when_runs_stop_and_200_when_they_finish_again() {
    let w = World::billing_only().await;
    w.edit_config(|c| format!("{c}\n[daemon]\nlisten = \"127.0.0.1:0\"\ninterval_secs = 1\n"));
    let hold = w.path("hold");
    let mut daemon = spawn_logged(
        &w,
        &["daemon"],
        "daemon.log",
        &[
            ("REKEY_TEST_HOLD_AT", std::path::Path::new("publish:done")),
            ("REKEY_TEST_HOLD_FILE", &hold),
            (
                "REKEY_TEST_DAEMON_RUN_ALLOWANCE_SECS",
                std::path::Path::new("3"),
            ),
        ],
    );
    let log_text = || std::fs::read_to_string(w.path("daemon.log")).unwrap();
    let base = daemon_address(&w.path("daemon.log")).await;
    let http = reqwest::Client::new();
    let health_until = |want: u16| {
        let (http, url) = (http.clone(), format!("{base}/healthz"));
        async move {
            let mut last = (0, String::new());
            for _ in 0..600 {
                let r = http.get(&url).send().await.unwrap();
                last = (r.status().as_u16(), r.text().await.unwrap());
                if last.0 == want {
                    return last.1;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("/healthz never answered {want}; last {last:?}");
        }
    };
    let stale = health_until(503).await;
    assert!(hold.exists(), "the run is the one that hangs");
    assert!(
        stale.starts_with("stale: started, first run under way"),
        "{stale}"
    );
    std::fs::remove_file(&hold).unwrap();
    let ok = health_until(200).await;
    assert!(ok.starts_with("ok: the last run finished"), "{ok}");
    sigterm(&daemon);
    let status = tokio::time::timeout(Duration::from_secs(30), daemon.wait())
        .await
        .expect("the daemon stops")
        .unwrap();
    assert_eq!(status.code(), Some(0), "{}", log_text());
}

/// With `[audit] in_check = true` the daemon audits every org each run and serves the counts as
/// `rekey_audit_findings{id,severity,org}`.
#[tokio::test(flavor = "multi_thread")]
async fn daemon_metrics_carry_the_org_audit_when_asked() {
    let w = World::governance().await;
    w.drop_credential("clean-jwt");
    w.drop_credential("clean-eca");
    w.edit_config(|c| {
        format!("{c}\n[daemon]\nlisten = \"127.0.0.1:0\"\ninterval_secs = 1\n\n[audit]\nin_check = true\nledger_store = \"local\"\n")
    });
    let mut daemon = spawn_logged(&w, &["daemon"], "daemon.log", &[]);
    let base = daemon_address(&w.path("daemon.log")).await;
    let http = reqwest::Client::new();
    let series =
        "rekey_audit_findings{id=\"unmanaged-certificate\",severity=\"warning\",org=\"gov\"}";
    let mut metrics = String::new();
    for _ in 0..300 {
        if let Ok(r) = http.get(format!("{base}/metrics")).send().await {
            metrics = r.text().await.unwrap();
            if metric(&metrics, series).is_some() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sigterm(&daemon);
    let _ = tokio::time::timeout(Duration::from_secs(20), daemon.wait()).await;
    let log = std::fs::read_to_string(w.path("daemon.log")).unwrap();
    // Weak_Key_App, Expired_App, Expiring_App: and with no credential left, Clean_JWT too.
    assert_eq!(metric(&metrics, series), Some(4.0), "{metrics}\n{log}");
    assert_eq!(
        metric(
            &metrics,
            "rekey_audit_findings{id=\"certificate-expired\",severity=\"critical\",org=\"gov\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
}
