//! API economy through the real binary against the org emulator, counted from its call log: one
//! admin login per org per process (and per daemon, across cycles), app reads in batches of ten,
//! the org's API budget respected, a throttled login waited out.

mod world;

use orgsim::{CallRecord, Seed};
use std::time::Duration;
use world::World;

/// Connected Apps added to the demo org, each with a credential (the demo's `billing` makes 26).
const FLEET_CAS: usize = 25;
/// External Client Apps with a certificate added to it (the demo's `billing-eca` makes 4).
const FLEET_ECAS: usize = 3;

/// What one command cost at Salesforce.
#[derive(Debug, Default, PartialEq, Eq)]
struct Cost {
    logins: usize,
    reads: usize,
    lists: usize,
}

/// The calls made since call `since` of the emulator's log, counted.
fn cost_since(w: &World, since: usize) -> (Cost, Vec<CallRecord>) {
    let calls: Vec<CallRecord> = w.sim.calls().into_iter().skip(since).collect();
    let op = |c: &CallRecord, name: &str| {
        c.operation
            .as_deref()
            .is_some_and(|o| o.starts_with(name))
    };
    let cost = Cost {
        logins: calls
            .iter()
            .filter(|c| c.path.ends_with("/oauth2/token"))
            .count(),
        reads: calls.iter().filter(|c| op(c, "readMetadata")).count(),
        lists: calls.iter().filter(|c| op(c, "listMetadata")).count(),
    };
    (cost, calls)
}

/// The demo world plus `FLEET_CAS` Connected Apps and `FLEET_ECAS` External Client Apps (copies
/// of Billing_Sync and Billing_Sync_ECA under new names and consumer keys), each with a
/// certificate credential in the one org, none imported (what the apps hold is what counts).
async fn fleet() -> World {
    let w = World::new().await;
    let seed_path = w.path("seed.toml");
    let seed = std::fs::read_to_string(&seed_path).unwrap();
    let block = |start: &str, end: &str| {
        let from = seed.find(start).unwrap();
        let to = from + seed[from..].find(end).unwrap();
        seed[from..to].to_string()
    };
    let ca = block(
        "[[connected_apps]]\nfull_name = \"Billing_Sync\"",
        "# The same integration as an External Client App.",
    );
    let eca = block(
        "[[external_client_apps]]\nname = \"Billing_Sync_ECA\"",
        "# A nightly ETL job",
    );
    let mut more = String::new();
    let mut creds = String::new();
    for i in 0..FLEET_CAS {
        let name = format!("Fleet_{i:02}");
        more += &ca
            .replace("3MVG9BillingSyncConsumerKey0001", &format!("3MVG9FleetConsumerKey{i:02}"))
            .replace("Billing_Sync", &name);
        creds += &format!(
            "\n[credentials.fleet-{i:02}]\norg = \"acme\"\napp_kind = \"connected_app\"\napp = \"{name}\"\n\
             username = \"integration@acme.example\"\nstore = \"local\"\nsubject = {{ cn = \"fleet-{i:02}\" }}\n"
        );
    }
    for i in 0..FLEET_ECAS {
        let name = format!("Fleet_ECA_{i}");
        more += &eca
            .replace("3MVG9BillingSyncEcaConsumerKey01", &format!("3MVG9FleetEcaConsumerKey{i}"))
            .replace("Billing_Sync_ECA", &name);
        creds += &format!(
            "\n[credentials.fleet-eca-{i}]\norg = \"acme\"\napp_kind = \"external_client_app\"\napp = \"{name}\"\n\
             username = \"integration@acme.example\"\nstore = \"local\"\nsubject = {{ cn = \"fleet-eca-{i}\" }}\n"
        );
    }
    std::fs::write(&seed_path, format!("{seed}\n{more}")).unwrap();
    w.sim.reseed(&Seed::from_path(&seed_path).unwrap()).unwrap();
    w.edit_config(|c| c + &creds);
    w
}

/// Connected App credentials of the fleet world.
const CAS: usize = FLEET_CAS + 1;
/// Global OAuth settings in the org: the demo's two External Client Apps and the fleet's.
const ECA_SETTINGS: usize = FLEET_ECAS + 2;

/// What observing every credential of the fleet world costs when apps are read in batches: one
/// login; the Connected Apps by name, ten a read; the External Client Apps' global OAuth
/// settings listed once and read ten a call. Reading each app alone would cost 30 reads (and 4
/// listings).
fn batched() -> Cost {
    Cost {
        logins: 1,
        reads: CAS.div_ceil(10) + ECA_SETTINGS.div_ceil(10),
        lists: 1,
    }
}

/// `check`, `status` and `run --dry-run` of 30 credentials in one org log in once and read the
/// apps in batches of ten.
#[tokio::test(flavor = "multi_thread")]
async fn observing_a_fleet_logs_in_once_and_reads_apps_ten_at_a_time() {
    let mut w = fleet().await;
    assert_eq!(batched(), Cost { logins: 1, reads: 4, lists: 1 });
    for args in [
        &["check", "--json"][..],
        &["status", "--json"],
        &["run", "--dry-run", "--json"],
    ] {
        let since = w.sim.calls().len();
        let run = w.rekey(args).await;
        let (cost, calls) = cost_since(&w, since);
        assert_eq!(
            cost,
            batched(),
            "rekey {args:?} (exit {}): {} calls\n{calls:#?}\n{}",
            run.code,
            calls.len(),
            run.stderr
        );
        // Every credential was read: its app's certificate is in the output.
        let out: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        let text = out.to_string();
        assert!(text.contains("fleet-24") && text.contains("fleet-eca-2"), "{text}");
    }
}

/// `audit` reads the whole org in batches on its own connection; run inside `check`
/// (`[audit] in_check`) it shares check's session: one login for both.
#[tokio::test(flavor = "multi_thread")]
async fn an_audit_inside_check_shares_its_login() {
    let mut w = fleet().await;
    // The audit lists each of the six app metadata types once and reads each type's members ten
    // at a time: 27 Connected Apps (rekey's admin app too) in 3 reads; 5 External Client Apps,
    // whose header and four satellite types take one read each.
    let audit = Cost {
        logins: 1,
        reads: 27usize.div_ceil(10) + 5,
        lists: 6,
    };
    let since = w.sim.calls().len();
    let run = w.rekey(&["audit", "--json"]).await;
    let (cost, calls) = cost_since(&w, since);
    assert_eq!(cost, audit, "audit (exit {}): {calls:#?}\n{}", run.code, run.stderr);

    w.edit_config(|c| c + "\n[audit]\nin_check = true\n");
    let since = w.sim.calls().len();
    let run = w.rekey(&["check", "--json"]).await;
    let (cost, calls) = cost_since(&w, since);
    let both = Cost {
        logins: 1,
        reads: batched().reads + audit.reads,
        lists: batched().lists + audit.lists,
    };
    assert_eq!(cost, both, "check with the audit (exit {}): {calls:#?}\n{}", run.code, run.stderr);
    assert!(run.stdout.contains("org:acme"), "{}", run.stdout);
}

/// Admin logins (through rekey's admin app, label "rekey admin") in the org's login history
/// after row `since`.
fn admin_logins_since(w: &World, since: usize) -> Vec<String> {
    w.sim
        .login_history()
        .into_iter()
        .skip(since)
        .filter(|(_, _, app, _)| app.as_deref() == Some("rekey admin"))
        .map(|(_, _, _, status)| status)
        .collect()
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

/// `rekey daemon` in the background with its output in `daemon.log`, and the address it serves
/// `/metrics` on once it said so.
async fn daemon(w: &World) -> (tokio::process::Child, String) {
    let log = std::fs::File::create(w.path("daemon.log")).unwrap();
    let child = w
        .command(&["daemon"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let ready = "rekey daemon: /metrics and /healthz on ";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(w.path("daemon.log")).unwrap_or_default();
        if let Some(base) = text
            .lines()
            .find_map(|l| l.strip_prefix(ready))
            .and_then(|rest| rest.split(';').next())
        {
            return (child, base.to_string());
        }
        assert!(tokio::time::Instant::now() < deadline, "never ready:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The daemon's metrics once `done(metrics)` holds, under a generous hang guard.
async fn metrics_when(base: &str, done: impl Fn(&str) -> bool) -> String {
    let http = reqwest::Client::new();
    let mut metrics = String::new();
    for _ in 0..600 {
        if let Ok(r) = http.get(format!("{base}/metrics")).send().await {
            metrics = r.text().await.unwrap();
            if done(&metrics) {
                return metrics;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the daemon's metrics never got there:\n{metrics}");
}

/// A daemon keeps its admin session across cycles: two cycles (the first rotating `billing`,
/// which is due) log in once in all.
#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_logs_in_once_across_cycles() {
    let w = World::billing_only().await;
    w.edit_config(|c| format!("{c}\n[daemon]\nlisten = \"127.0.0.1:0\"\ninterval_secs = 1\n"));
    let since = w.sim.login_history().len();
    let (mut child, base) = daemon(&w).await;
    let metrics = metrics_when(&base, |m| {
        metric(m, "rekey_runs_total").is_some_and(|n| n >= 3.0)
    })
    .await;
    child.kill().await.unwrap();
    assert_eq!(
        metric(&metrics, "rekey_rotations_total{outcome=\"succeeded\"}"),
        Some(1.0),
        "{metrics}"
    );
    let logins = admin_logins_since(&w, since);
    assert_eq!(logins, ["Success"], "{metrics}");
}
