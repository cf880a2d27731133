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
            "\n[[credentials.billing.windows]]\ncron = \"{cron}\"\ntimezone = \"Asia/Kolkata\"\nduration_minutes = 60\n\n[run]\nconcurrency = 1\nmax_batch = 1\n"
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
    // concurrency = 1 and max_batch = 1: one rotation's journal entries all precede the other's.
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
