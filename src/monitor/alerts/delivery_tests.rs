//! Alerts through real HTTP, from a parsed config: delivered once, resolved when cleared, retried
//! after a refusal, and channel secrets read from where the config says.

use super::tests::{held, news, observation, observed};
use super::*;
use crate::monitor::observe::Observation;
use crate::monitor::observe::fixtures;
use chrono::TimeDelta;
use rekey_api::Fingerprint;
use rekey_notify::Outcome;
use rekey_testkit::receiver::{Receiver, Recorded};
use std::path::Path;

/// The JSON bodies `receiver` got on `path`, in order.
fn bodies(receiver: &Receiver, path: &str) -> Vec<serde_json::Value> {
    receiver
        .requests()
        .iter()
        .filter(|r| r.path == path)
        .map(Recorded::json)
        .collect()
}

const HOOK_SECRET: &str = "whsec-test-0123456789";

/// A receiver and a notifier sending to it, from a config in a directory of their own.
struct Http {
    receiver: Receiver,
    dir: tempfile::TempDir,
    notifier: Notifier,
}

impl Http {
    /// A receiver answering `status`, and a config in a fresh directory with a webhook channel
    /// and a Slack channel (`extra` ends the Slack channel's table), both pointing at the
    /// receiver, their secrets in files beside it.
    async fn start(status: u16, extra: &str) -> Http {
        let receiver = Receiver::answering(status, "ok").await;
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path(), receiver.port, extra);
        let notifier = Notifier::from_config(&config).unwrap().unwrap();
        Http {
            receiver,
            dir,
            notifier,
        }
    }

    /// Where the config keeps the alert state.
    fn state_file(&self) -> PathBuf {
        self.dir.path().join("state/alerts.json")
    }

    /// The state file, parsed.
    fn state(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.state_file()).unwrap()).unwrap()
    }

    /// Evaluates `o` at `now` and sends what its findings call for.
    async fn check(&self, o: &Observation, now: DateTime<Utc>) -> Vec<Delivery> {
        let findings = crate::monitor::findings::evaluate(o, now);
        self.notifier
            .findings(&observed(o, &findings), now)
            .await
            .unwrap()
    }

    /// Sends the news of a rotation of `billing` that ended in `outcome`, now.
    async fn rotation(&self, outcome: Outcome) -> Result<Vec<Delivery>> {
        self.notifier.rotation(&news(outcome), wall_clock()).await
    }
}

/// A config in `dir` with a webhook channel and a Slack channel, both pointing at `port`,
/// their secrets in files beside it.
fn config_in(dir: &Path, port: u16, extra: &str) -> crate::config::Config {
    std::fs::write(dir.join("hook.secret"), format!("{HOOK_SECRET}\n")).unwrap();
    std::fs::write(
        dir.join("slack.url"),
        format!("http://127.0.0.1:{port}/slack/T000/B000/token\n"),
    )
    .unwrap();
    let text = format!(
        r#"
[alerts]
state_file = "state/alerts.json"
renotify_hours = 24

[alerts.channels.hook]
kind = "webhook"
url = "http://127.0.0.1:{port}/hook"
secret_file = "hook.secret"

[alerts.channels.chat]
kind = "slack"
webhook_url_file = "slack.url"
{extra}"#
    );
    crate::config::parse(&text, &dir.join("rekey.toml")).unwrap()
}

/// [`config_in`]'s channels (their secret files already beside it) with the state in the file
/// store `shared` of `dir` (`[alerts] state_store`).
fn store_config_in(dir: &Path, port: u16) -> crate::config::Config {
    let text = format!(
        r#"
[alerts]
state_file = "state/alerts.json"
state_store = "shared"

[alerts.channels.hook]
kind = "webhook"
url = "http://127.0.0.1:{port}/hook"
secret_file = "hook.secret"

[alerts.channels.chat]
kind = "slack"
webhook_url_file = "slack.url"

[stores.shared]
kind = "file"
path = "shared"
"#
    );
    crate::config::parse(&text, &dir.join("rekey.toml")).unwrap()
}

/// Now, to the second, so the receiver's signature check agrees with it.
fn wall_clock() -> DateTime<Utc> {
    DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap()
}

fn expiring(now: DateTime<Utc>, days: i64) -> Observation {
    let mut o = observation("billing");
    let not_after = now + TimeDelta::days(days) + TimeDelta::hours(1);
    o.sources[0].read = Ok(held(b"a", not_after));
    o.sources[1].read = Ok(fixtures::held(b"a", not_after, Some(now)));
    o
}

fn whats(deliveries: &[Delivery]) -> Vec<String> {
    deliveries
        .iter()
        .map(|d| {
            assert_eq!(d.credential, "billing");
            assert!(d.error.is_none(), "{d:?}");
            format!("{}: {}", d.channel, d.what)
        })
        .collect()
}

#[tokio::test]
async fn alerts_are_delivered_once_over_http_and_resolved_when_cleared() {
    use std::os::unix::fs::PermissionsExt as _;
    let http = Http::start(200, "").await;
    let receiver = &http.receiver;
    let now = wall_clock();

    let expiring = expiring(now, 10);
    assert_eq!(
        whats(&http.check(&expiring, now).await),
        [
            "chat: alert expiry/app (critical)",
            "chat: alert expiry/store:local (critical)",
            "hook: alert expiry/app (critical)",
            "hook: alert expiry/store:local (critical)"
        ]
    );
    let hook = bodies(&receiver, "/hook");
    assert_eq!(hook.len(), 2, "{hook:?}");
    let alert = hook
        .iter()
        .find(|b| b["dedup_key"] == "rekey/acme/billing/expiry/app")
        .expect("the app's expiry alert");
    assert_eq!(alert["type"], "alert");
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["credential"], "billing");
    assert_eq!(alert["details"]["finding"], "expiry/app");
    assert_eq!(alert["details"]["days_left"], "10");
    assert_eq!(
        alert["details"]["fingerprint"],
        Fingerprint::of(b"a").to_string()
    );
    assert!(
        alert["summary"]
            .as_str()
            .unwrap()
            .contains("expires in 10 days"),
        "{alert}"
    );
    for request in receiver.requests() {
        if request.path == "/hook" {
            let header = |name: &str| request.header(name).unwrap();
            assert!(rekey_http::verify_signature(
                HOOK_SECRET.as_bytes(),
                &header(rekey_http::TIMESTAMP_HEADER),
                &request.body,
                &header(rekey_http::SIGNATURE_HEADER),
                Utc::now(),
                Duration::from_secs(300),
            ));
        }
    }
    let slack = bodies(&receiver, "/slack/T000/B000/token");
    assert_eq!(slack.len(), 2, "{slack:?}");
    assert!(
        slack.iter().all(|b| b["text"]
            .as_str()
            .unwrap()
            .starts_with("[CRITICAL] billing: ")),
        "{slack:?}"
    );

    let mode = std::fs::metadata(http.state_file())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let state = http.state();
    assert_eq!(state["version"], 1);
    assert_eq!(
        state["channels"]["hook"]["alerts"]["billing"]["expiry/app"]["severity"],
        "critical"
    );

    // The next run finds the same: nothing is sent.
    assert!(
        http.check(&expiring, now + TimeDelta::hours(1))
            .await
            .is_empty()
    );
    assert_eq!(receiver.count(), 4);

    // Renewed everywhere: each channel gets each resolve once.
    let renewed = self::expiring(now, 300);
    assert_eq!(
        whats(&http.check(&renewed, now + TimeDelta::hours(2)).await),
        [
            "chat: resolve expiry/app",
            "chat: resolve expiry/store:local",
            "hook: resolve expiry/app",
            "hook: resolve expiry/store:local"
        ]
    );
    let hook = bodies(&receiver, "/hook");
    assert_eq!(hook.len(), 4);
    assert_eq!(hook[2]["type"], "resolve");
    assert_eq!(hook[2]["dedup_key"], "rekey/acme/billing/expiry/app");
    assert!(
        http.check(&renewed, now + TimeDelta::hours(3))
            .await
            .is_empty()
    );
    assert_eq!(receiver.count(), 8);
    assert_eq!(
        http.state(),
        serde_json::json!({ "version": 1, "channels": {} })
    );
}

#[tokio::test]
async fn a_refused_delivery_is_reported_and_sent_again_next_run() {
    let http = Http::start(400, "min_severity = \"critical\"\n").await;
    let now = wall_clock();
    // 20 days left: a warning, which the critical-only Slack channel does not want.
    let o = expiring(now, 20);
    for run in 0..2 {
        let deliveries = http.check(&o, now + TimeDelta::hours(run)).await;
        assert_eq!(deliveries.len(), 2, "{deliveries:?}");
        for d in &deliveries {
            assert_eq!(d.channel, "hook");
            let error = d.error.as_deref().expect("not delivered");
            assert!(error.contains("HTTP 400"), "{error}");
            assert!(!error.contains(HOOK_SECRET), "{error}");
        }
    }
    assert_eq!(bodies(&http.receiver, "/hook").len(), 4);
    assert!(bodies(&http.receiver, "/slack/T000/B000/token").is_empty());
}

#[tokio::test]
async fn rotation_news_goes_out_and_a_corrupt_state_file_is_replaced() {
    let http = Http::start(200, "").await;
    let state_file = http.state_file();
    std::fs::create_dir_all(state_file.parent().unwrap()).unwrap();
    std::fs::write(&state_file, "{\"version\": 1, \"channels\": [").unwrap();
    let deliveries = http.rotation(Outcome::RolledBack).await.unwrap();
    assert_eq!(
        whats(&deliveries),
        ["chat: rotation rolled back", "hook: rotation rolled back"]
    );
    let hook = bodies(&http.receiver, "/hook");
    assert_eq!(hook[0]["type"], "rotation");
    assert_eq!(hook[0]["outcome"], "rolled_back");
    assert_eq!(hook[0]["rotation_id"], "billing-r4");
    let state = http.state();
    assert_eq!(state["version"], 1);
    assert_eq!(
        state["channels"]["hook"]["rotations"]["billing"]["outcome"],
        "rolled_back"
    );
}

#[tokio::test]
async fn a_state_file_that_cannot_be_read_is_an_error_naming_it() {
    let http = Http::start(200, "").await;
    // A directory where the file should be: it exists but cannot be read as a file.
    let state_file = http.state_file();
    std::fs::create_dir_all(&state_file).unwrap();
    let err = http.rotation(Outcome::Failed).await.unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("alert state file {}", state_file.display())),
        "{err}"
    );
    assert!(err.hint().unwrap().contains("state_file"), "{err:?}");
    assert_eq!(
        http.receiver.count(),
        0,
        "nothing is sent without the state"
    );
}

#[test]
fn channel_secrets_come_from_files_or_the_environment_and_errors_name_where() {
    let dir = tempfile::tempdir().unwrap();
    let parse = |text: &str| crate::config::parse(text, &dir.path().join("rekey.toml")).unwrap();
    assert!(Notifier::from_config(&parse("")).unwrap().is_none());
    assert!(
        Notifier::from_config(&parse("[alerts]\n"))
            .unwrap()
            .is_none()
    );

    let unset = "REKEY_ALERTS_TEST_UNSET_7d2c91";
    assert!(std::env::var_os(unset).is_none());
    let config = parse(&format!(
        "[alerts]\n\n[alerts.channels.pager]\nkind = \"pagerduty\"\nrouting_key_env = \"{unset}\"\n"
    ));
    let err = Notifier::from_config(&config)
        .err()
        .expect("the variable is unset");
    let text = err.to_string();
    assert!(text.contains("rekey.toml:3:"), "{text}");
    assert!(text.contains("'pager'") && text.contains(unset), "{text}");
    assert!(err.hint().unwrap().contains("routing_key_file"), "{err:?}");

    std::fs::write(dir.path().join("empty"), "\n").unwrap();
    let config = parse(
        "[alerts.channels.hook]\nkind = \"webhook\"\nurl = \"https://hooks.example/in\"\nsecret_file = \"empty\"\n",
    );
    let err = Notifier::from_config(&config)
        .err()
        .expect("the file is empty");
    assert!(err.to_string().contains("empty"), "{err}");

    // The channel's own checks are reported with the config position, never the URL's path.
    std::fs::write(
        dir.path().join("slack.url"),
        "http://hooks.slack.example/services/T0/B0/s3cretToken\n",
    )
    .unwrap();
    let config =
        parse("[alerts.channels.chat]\nkind = \"slack\"\nwebhook_url_file = \"slack.url\"\n");
    let err = Notifier::from_config(&config).err().expect("plain http");
    let text = err.to_string();
    assert!(
        text.contains("rekey.toml:1:") && text.contains("https"),
        "{text}"
    );
    assert!(!text.contains("s3cretToken"), "{text}");
}

/// With `[alerts] state_store`, the state moves from the file into the store's `_alerts`
/// journal (nothing already sent goes out again), two notifiers over the same store (two
/// replicas) de-duplicate against each other, even sending at the same moment, and the file is
/// never written again.
#[tokio::test]
async fn the_state_in_a_store_is_shared_by_every_notifier_and_starts_from_the_file() {
    let http = Http::start(200, "").await;
    let now = wall_clock();
    assert_eq!(http.check(&expiring(now, 20), now).await.len(), 4);
    let file = std::fs::read(http.state_file()).unwrap();

    let config = store_config_in(http.dir.path(), http.receiver.port);
    let replica = || Notifier::from_config(&config).unwrap().unwrap();
    let (a, b) = (replica(), replica());
    assert!(a.state_in_store());
    let check = async |n: &Notifier, o: &Observation| {
        let findings = crate::monitor::findings::evaluate(o, now);
        n.findings(&observed(o, &findings), now).await.unwrap()
    };
    assert!(
        check(&a, &expiring(now, 20)).await.is_empty(),
        "seeded from the file"
    );
    assert_eq!(
        whats(&check(&a, &expiring(now, 10)).await),
        [
            "chat: re-alert expiry/app (critical)",
            "chat: re-alert expiry/store:local (critical)",
            "hook: re-alert expiry/app (critical)",
            "hook: re-alert expiry/store:local (critical)"
        ]
    );
    assert!(
        check(&b, &expiring(now, 10)).await.is_empty(),
        "b knows what a sent"
    );
    let cleared = expiring(now, 300);
    let (from_a, from_b) = tokio::join!(check(&a, &cleared), check(&b, &cleared));
    let mut resolves = whats(&from_a);
    resolves.extend(whats(&from_b));
    resolves.sort();
    assert_eq!(
        resolves,
        [
            "chat: resolve expiry/app",
            "chat: resolve expiry/store:local",
            "hook: resolve expiry/app",
            "hook: resolve expiry/store:local"
        ]
    );
    assert_eq!(bodies(&http.receiver, "/hook").len(), 6);
    assert_eq!(std::fs::read(http.state_file()).unwrap(), file);
    let journal =
        std::fs::read_to_string(http.dir.path().join("shared/_alerts/journal.jsonl")).unwrap();
    // Two deliveries changed the state (the critical alerts, the resolves); nothing else wrote.
    assert_eq!(journal.lines().count(), 2, "{journal}");
    assert!(
        journal
            .lines()
            .all(|l| l.contains("\"step\":\"alert_state\"")),
        "{journal}"
    );
}
