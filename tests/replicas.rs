//! `rekey daemon` as three replicas with one config and one set of stores, through the real
//! binary: exactly one leads (its `/healthz` and `/metrics` say so, the others follow, healthy);
//! killed with SIGKILL in the middle of a rotation, another replica takes the leader lease, the
//! interrupted rotation is finished through the resume path, and every alert reaches the
//! receiver exactly once — also after the next leader is killed and a third takes over, with the
//! de-duplication state in the store (`[alerts] state_store`). Against a real OpenBao (leases
//! that expire after `lock_ttl_secs`) and the file store (leases that die with the process).

mod world;

use rekey_testkit::openbao::OpenBao;
use rekey_testkit::receiver::Receiver;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use world::{World, vault_world};

const HOOK_SECRET: &str = "hook-signing-secret-0001";
/// The hang guard of every wait: far above the seconds each takes.
const PATIENCE: Duration = Duration::from_secs(180);

/// One `rekey daemon` process, waiting at `publish:done` whenever a rotation of its gets there.
struct Replica {
    child: tokio::process::Child,
    log: PathBuf,
    hold: PathBuf,
    base: String,
}

impl Replica {
    async fn spawn(w: &World, n: usize) -> Replica {
        let (log, hold) = (
            w.path(&format!("daemon-{n}.log")),
            w.path(&format!("hold-{n}")),
        );
        // A file, not a pipe: nobody reads a pipe while the process runs.
        let out = std::fs::File::create(&log).unwrap();
        let child = w
            .command(&["daemon"])
            .env("REKEY_TEST_HOLD_AT", "publish:done")
            .env("REKEY_TEST_HOLD_FILE", &hold)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let base = address(&log).await;
        Replica {
            child,
            log,
            hold,
            base,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `/metrics`, or `None` when it does not answer (it was killed).
    async fn metrics(&self, http: &reqwest::Client) -> Option<String> {
        let r = http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .ok()?;
        r.text().await.ok()
    }

    async fn healthz(&self, http: &reqwest::Client) -> (u16, String) {
        let r = http
            .get(format!("{}/healthz", self.base))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn leads(&self, http: &reqwest::Client) -> bool {
        self.metrics(http)
            .await
            .is_some_and(|m| metric(&m, "rekey_daemon_leader") == Some(1.0))
    }

    async fn runs(&self, http: &reqwest::Client) -> f64 {
        let m = self.metrics(http).await.unwrap_or_default();
        metric(&m, "rekey_runs_total").unwrap_or(0.0)
    }
}

/// Where a daemon logging to `log` serves `/metrics` and `/healthz`, once it says.
async fn address(log: &std::path::Path) -> String {
    let ready = "rekey daemon: /metrics and /healthz on ";
    let text = until("the daemon to listen", async || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        text.contains(ready).then_some(text)
    })
    .await;
    text.lines()
        .find_map(|l| l.strip_prefix(ready))
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .to_string()
}

/// Polls `check` until it answers, under the hang guard.
async fn until<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "waited {PATIENCE:?} for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of the sample `series`.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Each webhook body as (type, what it is about, severity): an alert or resolve by its dedup
/// key, a rotation notice by its credential and outcome.
fn kinds(bodies: &[Value]) -> Vec<(String, String, String)> {
    let field = |b: &Value, k: &str| b[k].as_str().unwrap_or("").to_string();
    bodies
        .iter()
        .map(|b| {
            let about = if b["type"] == "rotation" {
                format!("{}/{}", field(b, "credential"), field(b, "outcome"))
            } else {
                field(b, "dedup_key")
            };
            (field(b, "type"), about, field(b, "severity"))
        })
        .collect()
}

/// The world's config made for replicas: a run every second, alerts to `hook` with their state
/// in the store, the org audit in every run (findings that stay open, so a new leader would send
/// them again without the shared state).
fn replicated(w: &World, hook: &Receiver) {
    std::fs::write(w.path("hook.secret"), format!("{HOOK_SECRET}\n")).unwrap();
    let url = hook.url("/rekey");
    w.edit_config(|c| {
        format!(
            "{c}
[daemon]
listen = \"127.0.0.1:0\"
interval_secs = 1

[audit]
in_check = true

[alerts]
state_store = \"local\"

[alerts.channels.hook]
kind = \"webhook\"
url = \"{url}\"
secret_file = \"hook.secret\"
"
        )
    });
}

/// Three replicas; the leader killed at `publish:done` of billing's rotation; the next one
/// finishes it; that one killed once nothing is left to send; the third leads. Returns the
/// failover time after the first kill.
async fn three_replicas_fail_over(w: &mut World, hook: &Receiver) -> Duration {
    let http = reqwest::Client::new();
    let mut replicas = Vec::new();
    for n in 0..3 {
        replicas.push(Replica::spawn(w, n).await);
    }
    // billing is due (29 days left, renew_before_days 30): the leader's first run rotates it
    // and waits after publishing.
    let leader = until("a replica to reach publish:done", async || {
        replicas.iter().position(|r| r.hold.exists())
    })
    .await;
    let logs = |replicas: &[Replica]| {
        replicas
            .iter()
            .map(Replica::log)
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    // Exactly one leads: the one rotating. The others follow, healthy, and never rotate.
    for (n, r) in replicas.iter().enumerate() {
        let expected = n == leader;
        until("every replica to know and say its role", async || {
            let said = r.log().contains(if expected {
                "rekey daemon: leading (the leader lease _daemon in store 'local')"
            } else {
                "rekey daemon: following: "
            });
            (said && r.leads(&http).await == expected).then_some(())
        })
        .await;
        let (status, body) = r.healthz(&http).await;
        assert_eq!(status, 200, "{body}");
        let role = if expected { "leader" } else { "follower" };
        assert!(
            body.trim_end().ends_with(&format!("role: {role}")),
            "{body}"
        );
        assert_eq!(r.hold.exists(), expected, "only the leader rotates");
    }
    assert_eq!(hook.count(), 0, "nothing is sent before the first run ends");

    // SIGKILL the leader while it waits between publish and verify.
    let killed_at = Instant::now();
    replicas[leader].child.start_kill().unwrap();
    replicas[leader].child.wait().await.unwrap();
    let old = replicas.remove(leader);
    let _ = std::fs::remove_file(&old.hold);
    let second = until("another replica to lead", async || {
        for (i, r) in replicas.iter().enumerate() {
            if r.leads(&http).await {
                return Some(i);
            }
        }
        None
    })
    .await;
    let failover = killed_at.elapsed();
    // It finishes the rotation through the resume path (a replica that reaches the hold point
    // again is let go on).
    until("the interrupted rotation to be finished", async || {
        for r in &replicas {
            let _ = std::fs::remove_file(&r.hold);
        }
        let m = replicas[second].metrics(&http).await?;
        (metric(&m, "rekey_rotations_total{outcome=\"succeeded\"}") >= Some(1.0)).then_some(())
    })
    .await;
    assert_rotation_finished(w).await;
    for (i, r) in replicas.iter().enumerate() {
        assert_eq!(r.leads(&http).await, i == second, "{}", logs(&replicas));
    }

    // Once two runs in a row sent nothing new, kill the second leader (so no delivery is cut
    // in half) and let the third lead for two runs of its own: nothing is sent again.
    let settled = until("two runs in a row that send nothing new", async || {
        let (count, runs) = (hook.count(), replicas[second].runs(&http).await);
        let after = until("two more runs", async || {
            (replicas[second].runs(&http).await >= runs + 2.0).then_some(hook.count())
        })
        .await;
        (count > 0 && after == count).then_some(count)
    })
    .await;
    replicas[second].child.start_kill().unwrap();
    replicas[second].child.wait().await.unwrap();
    drop(replicas.remove(second));
    let last = &replicas[0];
    until("the third replica to lead", async || {
        last.leads(&http).await.then_some(())
    })
    .await;
    let runs = last.runs(&http).await;
    until("two runs of the third leader", async || {
        (last.runs(&http).await >= runs + 2.0).then_some(())
    })
    .await;
    assert_eq!(hook.count(), settled, "{}", logs(&replicas));

    // Every alert, resolve and rotation notice arrived once.
    let bodies: Vec<Value> = hook.requests().iter().map(|r| r.json()).collect();
    let sent = kinds(&bodies);
    let mut times = BTreeMap::new();
    for kind in &sent {
        *times.entry(kind.clone()).or_insert(0) += 1;
    }
    let twice: Vec<_> = times.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}\n{sent:?}");
    assert_eq!(
        sent.iter()
            .filter(|(t, about, _)| t == "rotation" && about == "billing/succeeded")
            .count(),
        1,
        "{sent:?}"
    );
    assert!(
        sent.iter()
            .any(|(t, about, _)| t == "alert" && !about.contains("/billing/")),
        "the org audit's findings were alerted: {sent:?}"
    );
    let mut last = replicas.remove(0);
    let pid = last.child.id().unwrap().to_string();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(term.success());
    let status = tokio::time::timeout(PATIENCE, last.child.wait())
        .await
        .expect("it stops after SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0), "{}", last.log());
    // The state lived in the store: the state file was never written.
    assert!(!w.path("rekey-alerts.json").exists());
    w.assert_no_key_bytes_leaked();
    failover
}

/// The billing credential alone on OpenBao, its legacy key imported, with leases of 3 s so a dead
/// holder's lease expires within the test.
async fn billing_on_vault(bao: &OpenBao) -> (World, String) {
    let (mut w, prefix) = vault_world(bao).await;
    w.drop_credential("billing-eca");
    w.import_legacy("billing").await;
    w.edit_config(|c| {
        c.replace(
            &format!("path_prefix = \"{prefix}\""),
            &format!("path_prefix = \"{prefix}\"\nlock_ttl_secs = 3"),
        )
    });
    (w, prefix)
}

/// With the keys, the journal, the leases and the alerts' state in OpenBao: the dead leader's
/// lease expires after `lock_ttl_secs` (3 here) and a follower takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_on_vault_fail_over_finish_the_rotation_and_alert_once() {
    let bao = OpenBao::shared();
    let (mut w, prefix) = billing_on_vault(bao).await;
    let hook = Receiver::answering(200, "ok").await;
    replicated(&w, &hook);
    let failover = three_replicas_fail_over(&mut w, &hook).await;
    // The leader lease and the alerts' state sit beside the credentials.
    let lease = bao.bao_ok(&[
        "kv",
        "get",
        "-format=json",
        &format!("secret/{prefix}/_daemon/lock"),
    ]);
    assert!(lease.contains("\"fence\""), "{lease}");
    let state = bao.bao_ok(&[
        "kv",
        "get",
        "-format=json",
        &format!("secret/{prefix}/_alerts/journal"),
    ]);
    assert!(state.contains("alert_state"), "{state}");
    eprintln!(
        "vault: another replica led {failover:?} after the leader was killed (lock_ttl_secs = 3)"
    );
}

/// With the file store (replicas on one machine): the dead leader's flock dies with it, so a
/// follower leads at its next try.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_on_the_file_store_fail_over_finish_the_rotation_and_alert_once() {
    let mut w = World::billing_only().await;
    let hook = Receiver::answering(200, "ok").await;
    replicated(&w, &hook);
    let failover = three_replicas_fail_over(&mut w, &hook).await;
    let state = std::fs::read_to_string(w.path("keys/_alerts/journal.jsonl")).unwrap();
    assert!(state.contains("\"alert_state\""), "{state}");
    eprintln!("file store: another replica led {failover:?} after the leader was killed");
}

/// A leader whose lease is taken from it (here: someone writes a greater fence into the lock
/// record by hand, as a replica would after the lease expired) stands down at its next
/// confirmation, in the middle of a rotation: it follows from then on, and once that lease
/// expires a replica leads again and finishes the rotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_is_taken_stands_down_mid_rotation() {
    let bao = OpenBao::shared();
    let (mut w, prefix) = billing_on_vault(bao).await;
    let hook = Receiver::answering(200, "ok").await;
    replicated(&w, &hook);
    let http = reqwest::Client::new();
    let replicas = [Replica::spawn(&w, 0).await, Replica::spawn(&w, 1).await];
    let leader = until("a replica to reach publish:done", async || {
        replicas.iter().position(|r| r.hold.exists())
    })
    .await;
    let lock = format!("secret/{prefix}/_daemon/lock");
    // Written as a replica would: a check-and-set on the version read (the leader's renewals
    // may get in between; then read again).
    let fence = until("the lock record to be overwritten", async || {
        let read = bao.bao(&["kv", "get", "-format=json", &lock]);
        let record: Value = serde_json::from_slice(&read.stdout).ok()?;
        let version = record["data"]["metadata"]["version"].as_u64()?;
        let fence: u64 = match &record["data"]["data"]["fence"] {
            Value::String(s) => s.parse().ok()?,
            other => other.as_u64()?,
        };
        let now = chrono::Utc::now();
        let expires = now + chrono::Duration::seconds(5);
        let put = bao.bao(&[
            "kv",
            "put",
            &format!("-cas={version}"),
            &lock,
            "holder=intruder",
            &format!("fence={}", fence + 10),
            &format!("acquired_at={}", now.to_rfc3339()),
            &format!("expires_at={}", expires.to_rfc3339()),
        ]);
        put.status.success().then_some(fence)
    })
    .await;
    let deposed = &replicas[leader];
    until("the leader to stand down", async || {
        let (_, body) = deposed.healthz(&http).await;
        (body.contains("role: follower") && deposed.log().contains("lost the leader lease"))
            .then_some(())
    })
    .await;
    // Its rotation stopped where it stood: nobody waits at the hold point any more.
    std::fs::remove_file(&deposed.hold).unwrap();
    until(
        "a replica to lead again and finish the rotation",
        async || {
            for r in &replicas {
                let _ = std::fs::remove_file(&r.hold);
                let m = r.metrics(&http).await.unwrap_or_default();
                if metric(&m, "rekey_daemon_leader") == Some(1.0)
                    && metric(&m, "rekey_rotations_total{outcome=\"succeeded\"}") >= Some(1.0)
                {
                    return Some(());
                }
            }
            None
        },
    )
    .await;
    assert_rotation_finished(&mut w).await;
    let leases = bao.bao_ok(&["kv", "get", "-field=fence", &lock]);
    assert!(
        leases.trim().parse::<u64>().unwrap() > fence + 10,
        "the lease after the intruder's has a greater fence: {leases}"
    );
}

/// billing's journal ends with a finished rotation, and the app holds CURRENT's certificate.
async fn assert_rotation_finished(w: &mut World) {
    let journal = w.json(&["journal", "billing"]).await;
    let last = journal.as_array().unwrap().last().unwrap();
    assert_eq!(
        (last["step"].as_str(), last["phase"].as_str()),
        (Some("finalize"), Some("done")),
        "{journal}"
    );
    assert_eq!(
        w.app_fingerprint("Billing_Sync"),
        w.current_fingerprint("billing").await
    );
}
