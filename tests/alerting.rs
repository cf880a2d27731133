//! Scheduled rotation and expiry alerting through the real binary: `rekey check` alerts with
//! de-duplication, re-notification and resolves; `rekey run` rotating only what is due and inside
//! its change window; rotation outcomes and drift reaching the channels; `rekey daemon` serving
//! metrics and stopping cleanly. Time moves with the clock offset shared by rekey and the org
//! emulator; alerts land on recording HTTP receivers on 127.0.0.1.

mod world;

use chrono::Datelike as _;
use orgsim::{Fault, FaultKind};
use rekey_testkit::receiver::Receiver;
use serde_json::Value;
use std::time::Duration;
use world::World;

const DAY: i64 = 86_400;
const HOOK_SECRET: &str = "hook-signing-secret-0001";
const ROUTING_KEY: &str = "R0UTINGKEY00000000000000000000AB";

/// Runs `rekey check` and asserts its exit code.
async fn check_exits(w: &mut World, code: i32) {
    let run = w.rekey(&["check"]).await;
    assert_eq!(run.code, code, "{}{}", run.stdout, run.stderr);
}

/// A webhook, a Slack webhook and a critical-only PagerDuty channel, all recording.
struct Channels {
    hook: Receiver,
    slack: Receiver,
    pager: Receiver,
    seen: [usize; 3],
}

impl Channels {
    async fn attach(w: &mut World) -> Channels {
        let hook = Receiver::answering(200, "ok").await;
        let slack = Receiver::answering(200, "ok").await;
        let pager = Receiver::answering(202, r#"{"status":"success"}"#).await;
        std::fs::write(w.path("hook.secret"), format!("{HOOK_SECRET}\n")).unwrap();
        std::fs::write(w.path("pd.key"), ROUTING_KEY).unwrap();
        w.env.push((
            "TEST_SLACK_WEBHOOK".into(),
            slack.url("/services/T000/B000/XXXX"),
        ));
        let (hook_url, pager_url) = (hook.url("/rekey"), pager.url("/v2/enqueue"));
        w.edit_config(|c| {
            format!(
                "{c}
[alerts]
state_file = \"state/alerts.json\"
renotify_hours = 24

[alerts.channels.hook]
kind = \"webhook\"
url = \"{hook_url}\"
secret_file = \"hook.secret\"

[alerts.channels.slack]
kind = \"slack\"
webhook_url_env = \"TEST_SLACK_WEBHOOK\"

[alerts.channels.pager]
kind = \"pagerduty\"
routing_key_file = \"pd.key\"
events_url = \"{pager_url}\"
min_severity = \"critical\"
"
            )
        });
        Channels {
            hook,
            slack,
            pager,
            seen: [0; 3],
        }
    }

    /// What each channel received since the last call: (webhook, slack, pagerduty) bodies.
    fn received(&mut self) -> (Vec<Value>, Vec<Value>, Vec<Value>) {
        let mut take = |i: usize, r: &Receiver| {
            let all = r.requests();
            let fresh: Vec<_> = all[self.seen[i]..].to_vec();
            self.seen[i] = all.len();
            fresh
        };
        let hook = take(0, &self.hook);
        for request in &hook {
            let timestamp = request
                .header("x-rekey-timestamp")
                .expect("timestamp header");
            let signature = request
                .header("x-rekey-signature")
                .expect("signature header");
            assert!(
                rekey_http::verify_signature(
                    HOOK_SECRET.as_bytes(),
                    &timestamp,
                    &request.body,
                    &signature,
                    chrono::Utc::now(),
                    Duration::from_secs(300),
                ),
                "bad webhook signature on {}",
                String::from_utf8_lossy(&request.body)
            );
        }
        let slack = take(1, &self.slack);
        let pager = take(2, &self.pager);
        (
            hook.iter().map(|r| r.json()).collect(),
            slack.iter().map(|r| r.json()).collect(),
            pager.iter().map(|r| r.json()).collect(),
        )
    }
}

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

/// `(type, dedup_key or outcome, severity)` of each webhook body, sorted.
fn kinds(bodies: &[Value]) -> Vec<(String, String, String)> {
    let field = |b: &Value, k: &str| b[k].as_str().unwrap_or("").to_string();
    let mut out: Vec<_> = bodies
        .iter()
        .map(|b| {
            let key = if b["type"] == "rotation" {
                field(b, "outcome")
            } else {
                field(b, "dedup_key")
            };
            (field(b, "type"), key, field(b, "severity"))
        })
        .collect();
    out.sort();
    out
}

fn key(finding: &str) -> String {
    format!("rekey/acme/billing/{finding}")
}

fn alert(finding: &str, severity: &str) -> (String, String, String) {
    ("alert".into(), key(finding), severity.into())
}

/// The expiry alerts of both sources that hold the certificate: the app and the store.
fn expiry_alerts(severity: &str) -> Vec<(String, String, String)> {
    vec![
        alert("expiry/app", severity),
        alert("expiry/store:local", severity),
    ]
}

fn resolve(finding: &str) -> (String, String, String) {
    ("resolve".into(), key(finding), String::new())
}

/// The openssl certificate `import_legacy` puts on the app is valid for 30 days, so on day 0 it
/// has 29 days left: inside policy (warn at 28, critical at 14).
#[tokio::test(flavor = "multi_thread")]
async fn check_alerts_on_each_crossing_once_renotifies_after_the_interval_and_resolves() {
    let mut w = World::billing_only().await;
    let mut ch = Channels::attach(&mut w).await;

    check_exits(&mut w, 0).await;
    assert_eq!(ch.received(), (vec![], vec![], vec![]));

    // Day 2: 27 days left on the app and in the store: a warning each, not for PagerDuty.
    w.set_clock(2 * DAY);
    check_exits(&mut w, 1).await;
    let (hook, slack, pager) = ch.received();
    assert_eq!(kinds(&hook), expiry_alerts("warning"));
    let app_alert = hook
        .iter()
        .find(|b| b["dedup_key"] == key("expiry/app"))
        .unwrap();
    assert_eq!(app_alert["credential"], "billing");
    assert_eq!(app_alert["app"], "Billing_Sync");
    assert_eq!(app_alert["org"], "acme");
    assert!(
        app_alert["summary"]
            .as_str()
            .unwrap()
            .contains("expires in 27 days"),
        "{app_alert}"
    );
    assert_eq!(app_alert["details"]["finding"], "expiry/app");
    assert_eq!(app_alert["details"]["days_left"], "27");
    assert_eq!(slack.len(), 2, "{slack:?}");
    assert!(
        slack[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("[WARNING] billing:"),
        "{slack:?}"
    );
    assert!(pager.is_empty(), "{pager:?}");

    // The same day again, and 23 hours later: nothing new.
    check_exits(&mut w, 1).await;
    w.set_clock(2 * DAY + 23 * 3600);
    check_exits(&mut w, 1).await;
    assert_eq!(ch.received(), (vec![], vec![], vec![]));

    // 25 hours after the first alert: re-notified.
    w.set_clock(3 * DAY + 3600);
    check_exits(&mut w, 1).await;
    let (hook, slack, pager) = ch.received();
    assert_eq!(kinds(&hook), expiry_alerts("warning"));
    assert_eq!((slack.len(), pager.len()), (2, 0));

    // Day 17: 12 days left. The severity rose, so everyone hears at once, PagerDuty included.
    w.set_clock(17 * DAY);
    check_exits(&mut w, 2).await;
    let (hook, slack, pager) = ch.received();
    assert_eq!(kinds(&hook), expiry_alerts("critical"));
    assert_eq!(slack.len(), 2);
    let mut triggered: Vec<_> = pager
        .iter()
        .map(|p| {
            assert_eq!(p["routing_key"], ROUTING_KEY);
            assert_eq!(p["event_action"], "trigger");
            assert_eq!(p["payload"]["severity"], "critical");
            p["dedup_key"].as_str().unwrap().to_string()
        })
        .collect();
    triggered.sort();
    assert_eq!(
        triggered,
        vec![key("expiry/app"), key("expiry/store:local")]
    );

    // The rotation is announced (not to the critical-only pager) and the next check resolves
    // both alerts everywhere they were sent.
    w.ok(&["rotate", "billing"]).await;
    let (hook, slack, pager) = ch.received();
    assert_eq!(
        kinds(&hook),
        vec![("rotation".into(), "succeeded".into(), String::new())]
    );
    assert_eq!((slack.len(), pager.len()), (1, 0));
    w.ok(&["check"]).await;
    let (hook, slack, pager) = ch.received();
    assert_eq!(
        kinds(&hook),
        vec![resolve("expiry/app"), resolve("expiry/store:local")]
    );
    assert_eq!(slack.len(), 2);
    assert!(
        slack
            .iter()
            .all(|s| s["text"].as_str().unwrap().starts_with("[RESOLVED]")),
        "{slack:?}"
    );
    let mut resolved: Vec<_> = pager
        .iter()
        .map(|p| {
            assert_eq!(p["event_action"], "resolve");
            p["dedup_key"].as_str().unwrap().to_string()
        })
        .collect();
    resolved.sort();
    assert_eq!(resolved, vec![key("expiry/app"), key("expiry/store:local")]);
    w.ok(&["check"]).await;
    assert_eq!(ch.received(), (vec![], vec![], vec![]));
    w.assert_no_key_bytes_leaked();
}

/// Nobody ran rekey while the certificate crossed the warning threshold: the first run after
/// the gap alerts at the severity that holds now, and `--no-notify` sends nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_missed_run_never_skips_an_alert() {
    let mut w = World::billing_only().await;
    let mut ch = Channels::attach(&mut w).await;
    w.set_clock(20 * DAY);
    let quiet = w.rekey(&["check", "--no-notify"]).await;
    assert_eq!(quiet.code, 2, "{}", quiet.stdout);
    assert_eq!(ch.received(), (vec![], vec![], vec![]));
    let loud = w.rekey(&["check", "billing"]).await;
    assert_eq!(loud.code, 2, "{}{}", loud.stdout, loud.stderr);
    let (hook, _, pager) = ch.received();
    assert_eq!(kinds(&hook), expiry_alerts("critical"));
    assert_eq!(pager.len(), 2);
}

/// The instant `hours_ahead` hours after the start of the current UTC hour, and a weekly cron
/// that fires exactly then in Asia/Kolkata (UTC+05:30, no DST).
fn kolkata_window(hours_ahead: i64) -> (i64, String) {
    let now = chrono::Utc::now().timestamp();
    let opens = now - now % 3600 + hours_ahead * 3600;
    let local = opens + 5 * 3600 + 1800;
    let weekday = chrono::DateTime::from_timestamp(local, 0)
        .unwrap()
        .weekday()
        .num_days_from_sunday();
    let cron = format!("{} {} * * {weekday}", local % 3600 / 60, local % DAY / 3600);
    (opens, cron)
}

/// `billing` is due by expiry (29 days left, renew_before_days 30) but may only rotate in a
/// one-hour window 30 hours from now (Asia/Kolkata); `billing-eca` has no window and rotates
/// when its key is a day old.
#[tokio::test(flavor = "multi_thread")]
async fn run_rotates_only_due_credentials_and_only_inside_their_windows() {
    let mut w = World::new().await;
    w.import_legacy("billing").await;
    w.import_legacy("billing-eca").await;
    let (opens, cron) = kolkata_window(30);
    w.edit_config(|c| {
        c.replace(
            "[credentials.billing-eca]\n",
            "[credentials.billing-eca]\nrotate_every_days = 1\nrenew_before_days = 7\n",
        ) + &format!(
            "\n[[credentials.billing.windows]]\ncron = \"{cron}\"\ntimezone = \"Asia/Kolkata\"\nduration_minutes = 60\n\n[run]\nconcurrency = 1\n"
        )
    });
    let journal_len = |w: &World, cred: &str| {
        std::fs::read_to_string(w.path(&format!("keys/{cred}/journal.jsonl")))
            .map_or(0, |j| j.lines().count())
    };
    let before = (journal_len(&w, "billing"), journal_len(&w, "billing-eca"));

    // Now: billing is due but its window is closed; billing-eca's key is new.
    let dry = w.json(&["run", "--dry-run"]).await;
    let rows = dry["credentials"].as_array().unwrap();
    let row = |name: &str| {
        rows.iter()
            .find(|r| r["check"]["credential"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(row("billing")["action"], "waiting", "{dry}");
    assert_eq!(row("billing")["reasons"][0]["reason"], "expiry", "{dry}");
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(row("billing")["opens"].as_str().unwrap())
            .unwrap()
            .timestamp(),
        opens,
        "{dry}"
    );
    assert_eq!(row("billing-eca")["action"], "not_due", "{dry}");
    let text = w.ok(&["run"]).await;
    assert!(text.stdout.contains("0 rotated"), "{}", text.stdout);
    assert_eq!(
        (journal_len(&w, "billing"), journal_len(&w, "billing-eca")),
        before,
        "nothing may change outside a window"
    );

    // Inside the window, 30 hours on: both are due; the dry run says so and changes nothing.
    w.set_clock(opens - chrono::Utc::now().timestamp() + 600);
    let dry = w.json_any(&["run", "--dry-run"]).await;
    assert_eq!(dry["exit"], 1, "28 days left is a warning: {dry}");
    let rows = dry["credentials"].as_array().unwrap();
    for r in rows {
        assert_eq!(r["action"], "would_rotate", "{dry}");
    }
    let eca = rows
        .iter()
        .find(|r| r["check"]["credential"] == "billing-eca")
        .unwrap();
    assert_eq!(eca["reasons"][0]["reason"], "key_age", "{dry}");
    assert_eq!(
        (journal_len(&w, "billing"), journal_len(&w, "billing-eca")),
        before
    );
    let old = (
        w.app_fingerprint("Billing_Sync"),
        w.app_fingerprint("Billing_Sync_ECA"),
    );
    let done = w.json(&["run"]).await;
    assert_eq!(done["exit"], 0, "{done}");
    for r in done["credentials"].as_array().unwrap() {
        assert_eq!(r["action"], "rotated", "{done}");
        assert_eq!(r["check"]["severity"], "ok", "{done}");
    }
    assert_ne!(w.app_fingerprint("Billing_Sync"), old.0);
    assert_ne!(w.app_fingerprint("Billing_Sync_ECA"), old.1);
    // concurrency = 1: one rotation's journal entries all precede the other's.
    let mut spans = Vec::new();
    for cred in ["billing", "billing-eca"] {
        let journal = w.json(&["journal", cred]).await;
        let times: Vec<String> = journal
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["step"] != "import")
            .map(|e| e["at"].as_str().unwrap().to_string())
            .collect();
        let parse = |t: &String| chrono::DateTime::parse_from_rfc3339(t).unwrap();
        let first = times.iter().map(parse).min().unwrap();
        let last = times.iter().map(parse).max().unwrap();
        spans.push((first, last));
    }
    spans.sort();
    assert!(spans[0].1 < spans[1].0, "rotations overlapped: {spans:?}");

    // Right after: nothing is due any more.
    let again = w.json(&["run"]).await;
    for r in again["credentials"].as_array().unwrap() {
        assert_eq!(r["action"], "not_due", "{again}");
    }
    w.assert_no_key_bytes_leaked();
}

/// Someone deploys another certificate to the app by hand: `run` raises a critical drift alert;
/// with `heal_drift` it rotates and the alert resolves. A rotation that fails is announced
/// (PagerDuty included) and its incident resolved by the next successful run.
#[tokio::test(flavor = "multi_thread")]
async fn drift_and_rotation_outcomes_reach_the_channels() {
    let mut w = World::new().await;
    w.drop_credential("billing-eca");
    w.edit_config(|c| {
        c.replace(
            "[credentials.billing]\n",
            "[credentials.billing]\nrenew_before_days = 7\n",
        )
    });
    w.import_legacy("billing").await;
    // The hand deploy: another store's rotation puts a different certificate on the app.
    w.edit_config(|c| c.replace("path = \"keys\"", "path = \"elsewhere\""));
    w.import_legacy("billing").await;
    w.ok(&["rotate", "billing"]).await;
    w.edit_config(|c| c.replace("path = \"elsewhere\"", "path = \"keys\""));
    let mut ch = Channels::attach(&mut w).await;

    let drift = w.json_any(&["run"]).await;
    assert_eq!(drift["exit"], 2, "{drift}");
    assert_eq!(drift["credentials"][0]["action"], "not_due", "{drift}");
    let (hook, _, pager) = ch.received();
    assert_eq!(kinds(&hook), vec![alert("drift/store:local", "critical")]);
    assert_eq!(pager.len(), 1);

    w.edit_config(|c| {
        c.replace(
            "renew_before_days = 7\n",
            "renew_before_days = 7\nheal_drift = true\n",
        )
    });
    let healed = w.json(&["run"]).await;
    assert_eq!(healed["credentials"][0]["action"], "rotated", "{healed}");
    assert_eq!(
        healed["credentials"][0]["reasons"][0]["reason"], "drift",
        "{healed}"
    );
    let (hook, _, pager) = ch.received();
    assert_eq!(
        kinds(&hook),
        vec![
            resolve("drift/store:local"),
            ("rotation".into(), "succeeded".into(), String::new())
        ]
    );
    assert_eq!(pager.len(), 1, "only the drift resolve: {pager:?}");
    assert_eq!(pager[0]["event_action"], "resolve");

    // 360 days on the new certificate has 5 days left: due, and the deploy fails once.
    w.set_clock(360 * DAY);
    w.sim.inject_fault(
        Fault::new(FaultKind::DeployFails {
            problem: "Metadata API is read-only during the test".into(),
        })
        .times(1),
    );
    let failed = w.json_any(&["run"]).await;
    assert_eq!(failed["credentials"][0]["action"], "failed", "{failed}");
    assert_eq!(failed["exit"], 5, "{failed}");
    let (hook, _, pager) = ch.received();
    let outcomes: Vec<_> = kinds(&hook)
        .into_iter()
        .filter(|k| k.0 == "rotation")
        .collect();
    assert_eq!(
        outcomes,
        vec![("rotation".into(), "failed".into(), String::new())]
    );
    let incident = pager
        .iter()
        .find(|p| p["dedup_key"] == "rekey/rotation/acme/billing")
        .unwrap_or_else(|| panic!("no rotation incident: {pager:?}"));
    assert_eq!(incident["event_action"], "trigger");

    let recovered = w.json(&["run"]).await;
    assert_eq!(
        recovered["credentials"][0]["action"], "rotated",
        "{recovered}"
    );
    let (_, _, pager) = ch.received();
    assert!(
        pager
            .iter()
            .any(|p| p["dedup_key"] == "rekey/rotation/acme/billing"
                && p["event_action"] == "resolve"),
        "the rotation incident is resolved: {pager:?}"
    );
    w.assert_no_key_bytes_leaked();
}

/// `rekey daemon` runs on its interval, serves the check metrics and its own over HTTP, and stops
/// with exit 0 on SIGTERM.
#[tokio::test(flavor = "multi_thread")]
async fn daemon_serves_metrics_and_health_and_stops_on_sigterm() {
    let w = World::billing_only().await;
    // Port 0: the daemon binds a free port itself and says which one when it is ready.
    w.edit_config(|c| format!("{c}\n[daemon]\nlisten = \"127.0.0.1:0\"\ninterval_secs = 1\n"));
    let mut daemon = spawn_logged(&w, &["daemon"], "daemon.log", &[]);
    let ready = "rekey daemon: /metrics and /healthz on ";
    printed(&w.path("daemon.log"), ready).await;
    let log = std::fs::read_to_string(w.path("daemon.log")).unwrap();
    let base = log
        .lines()
        .find_map(|l| l.strip_prefix(ready))
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no address in the readiness line:\n{log}"))
        .to_string();
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

/// A channel that cannot be reached is named on stderr for every alert it missed, and because
/// nothing is recorded for it, the next run tries again; the other channels are unaffected.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_channel_is_reported_and_retried_on_the_next_run() {
    let mut w = World::billing_only().await;
    let mut ch = Channels::attach(&mut w).await;
    // Refuses connections for the whole test, both runs.
    let dead = rekey_testkit::receiver::RefusingPort::bind();
    let dead_url = dead.url("/hook");
    w.edit_config(|c| {
        format!(
            "{c}\n[alerts.channels.dead]\nkind = \"webhook\"\nurl = \"{dead_url}\"\nsecret_file = \"hook.secret\"\n"
        )
    });
    w.set_clock(20 * DAY);
    for attempt in 0..2 {
        let run = w.rekey(&["check"]).await;
        assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
        for finding in ["expiry/app", "expiry/store:local"] {
            assert!(
                run.stderr.contains(&format!(
                    "warning: dead: alert {finding} (critical) for billing was not delivered"
                )),
                "attempt {attempt}: {}",
                run.stderr
            );
        }
        let (hook, _, _) = ch.received();
        assert_eq!(hook.len(), if attempt == 0 { 2 } else { 0 }, "{hook:?}");
    }
}

/// `rekey run --dry-run` decides and reports but sends nothing: no deploy reaches the app, no
/// channel hears anything (though a critical expiry and a due rotation are there to tell), no
/// store file or alert state changes. The same run without `--dry-run` does all three.
#[tokio::test(flavor = "multi_thread")]
async fn run_dry_run_deploys_notifies_and_writes_nothing() {
    let mut w = World::billing_only().await;
    let mut ch = Channels::attach(&mut w).await;
    // 20 days on, the legacy certificate has 9 left: critical, and due.
    w.set_clock(20 * DAY);
    let keys = world::snapshot(&w.path("keys"));
    let calls = w.sim.calls().len();
    let dry = w.json_any(&["run", "--dry-run"]).await;
    assert_eq!(dry["credentials"][0]["action"], "would_rotate", "{dry}");
    assert_eq!(
        dry["credentials"][0]["check"]["severity"], "critical",
        "{dry}"
    );
    let deploys = |w: &World, from: usize| {
        w.sim.calls()[from..]
            .iter()
            .filter(|c| c.method == "POST" && c.path.ends_with("/metadata/deployRequest"))
            .count()
    };
    assert_eq!(deploys(&w, calls), 0, "a dry run deploys nothing");
    assert_eq!(
        ch.received(),
        (vec![], vec![], vec![]),
        "a dry run tells no channel"
    );
    assert_eq!(
        world::snapshot(&w.path("keys")),
        keys,
        "a dry run writes no store file"
    );
    assert!(!w.path("state").exists(), "nor alert state");

    let run = w.json_any(&["run"]).await;
    assert_eq!(run["credentials"][0]["action"], "rotated", "{run}");
    assert!(deploys(&w, calls) >= 1);
    let (hook, _, _) = ch.received();
    assert!(!hook.is_empty(), "the real run tells the channels");
    assert_ne!(world::snapshot(&w.path("keys")), keys);
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
    let ready = "rekey daemon: /metrics and /healthz on ";
    printed(&w.path("daemon.log"), ready).await;
    let log_text = || std::fs::read_to_string(w.path("daemon.log")).unwrap();
    let base = log_text()
        .lines()
        .find_map(|l| l.strip_prefix(ready))
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .to_string();
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
    printed(&w.path("daemon2.log"), ready).await;
    let log2 = || std::fs::read_to_string(w.path("daemon2.log")).unwrap();
    let base = log2()
        .lines()
        .find_map(|l| l.strip_prefix(ready))
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .to_string();
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
    let ready = "rekey daemon: /metrics and /healthz on ";
    printed(&w.path("daemon.log"), ready).await;
    let log_text = || std::fs::read_to_string(w.path("daemon.log")).unwrap();
    let base = log_text()
        .lines()
        .find_map(|l| l.strip_prefix(ready))
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .to_string();
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
