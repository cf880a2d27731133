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
    let op =
        |c: &CallRecord, name: &str| c.operation.as_deref().is_some_and(|o| o.starts_with(name));
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
            .replace(
                "3MVG9BillingSyncConsumerKey0001",
                &format!("3MVG9FleetConsumerKey{i:02}"),
            )
            .replace("Billing_Sync", &name);
        creds += &format!(
            "\n[credentials.fleet-{i:02}]\norg = \"acme\"\napp_kind = \"connected_app\"\napp = \"{name}\"\n\
             username = \"integration@acme.example\"\nstore = \"local\"\nsubject = {{ cn = \"fleet-{i:02}\" }}\n"
        );
    }
    for i in 0..FLEET_ECAS {
        let name = format!("Fleet_ECA_{i}");
        more += &eca
            .replace(
                "3MVG9BillingSyncEcaConsumerKey01",
                &format!("3MVG9FleetEcaConsumerKey{i}"),
            )
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
    assert_eq!(
        batched(),
        Cost {
            logins: 1,
            reads: 4,
            lists: 1
        }
    );
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
        assert!(
            text.contains("fleet-24") && text.contains("fleet-eca-2"),
            "{text}"
        );
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
    assert_eq!(
        cost, audit,
        "audit (exit {}): {calls:#?}\n{}",
        run.code, run.stderr
    );

    w.edit_config(|c| c + "\n[audit]\nin_check = true\n");
    let since = w.sim.calls().len();
    let run = w.rekey(&["check", "--json"]).await;
    let (cost, calls) = cost_since(&w, since);
    let both = Cost {
        logins: 1,
        reads: batched().reads + audit.reads,
        lists: batched().lists + audit.lists,
    };
    assert_eq!(
        cost, both,
        "check with the audit (exit {}): {calls:#?}\n{}",
        run.code, run.stderr
    );
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
        assert!(
            tokio::time::Instant::now() < deadline,
            "never ready:\n{text}"
        );
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

/// `name.key` and `name.crt`: RSA-2048, valid from `age_days` ago for `days_left` more days.
fn aged_pair(dir: &std::path::Path, name: &str, age_days: i64, days_left: i64) {
    let key = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        .unwrap();
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(age_days);
    params.not_after = now + time::Duration::days(days_left);
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
}

/// Changes emulator settings (`POST /__orgsim/settings`).
async fn settings(w: &World, patch: serde_json::Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/__orgsim/settings", w.sim.base_url()))
        .json(&patch)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

/// Spends `n` of the org's daily API requests (any REST data call counts, answered or not).
async fn spend_api_requests(w: &World, n: usize) {
    let http = reqwest::Client::new();
    let url = format!("{}/services/data/v67.0/limits", w.sim.base_url());
    for _ in 0..n {
        http.get(&url).send().await.unwrap();
    }
}

/// The demo world with `billing` (its certificate expires in 30 days: due for expiry) and
/// `billing-eca` (a key made 200 days ago, valid 200 more, under `rotate_every_days = 180`:
/// due for its age only), both imported.
async fn one_expiring_one_old() -> World {
    let mut w = World::new().await;
    aged_pair(w.dir.path(), "billing-eca", 200, 200);
    w.sim
        .reseed(&Seed::from_path(&w.path("seed.toml")).unwrap())
        .unwrap();
    w.edit_config(|c| {
        c.replace(
            "app = \"Billing_Sync_ECA\"\n",
            "app = \"Billing_Sync_ECA\"\nrotate_every_days = 180\n",
        )
    });
    w.import_legacy("billing").await;
    w.import_legacy("billing-eca").await;
    w
}

/// The run's row of `credential`.
fn row<'a>(report: &'a serde_json::Value, credential: &str) -> &'a serde_json::Value {
    report["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["check"]["credential"] == credential)
        .unwrap_or_else(|| panic!("no row for {credential}: {report:#}"))
}

/// Above `api_budget_share` (default 80 %) of the org's daily API requests, a run defers the
/// rotation that is due only for its key's age — with a warning, a row saying why and the
/// daemon's `rekey_deferred_total` — and still rotates the certificate that expires. Under the
/// share, nothing waits.
#[tokio::test(flavor = "multi_thread")]
async fn an_org_above_its_api_budget_defers_what_can_wait_but_not_an_expiring_certificate() {
    let mut w = one_expiring_one_old().await;
    settings(&w, serde_json::json!({ "daily_api_requests": 2000 })).await;
    spend_api_requests(&w, 1700).await;

    let run = w.rekey(&["run", "--json"]).await;
    let report: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", run.stdout, run.stderr));
    let old = row(&report, "billing-eca");
    assert_eq!(old["action"], "deferred", "{report:#}\n{}", run.stderr);
    let reason = old["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("org acme has used 17")
            && reason.contains("/2000 API requests")
            && reason.contains("above api_budget_share = 0.8"),
        "{reason}"
    );
    assert_eq!(old["reasons"][0]["reason"], "key_age", "{old:#}");
    assert!(run.stderr.contains("rotation deferred"), "{}", run.stderr);
    assert_eq!(
        row(&report, "billing")["action"],
        "rotated",
        "{report:#}\n{}",
        run.stderr
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);

    // The text report says it too.
    let text = w.rekey(&["run", "--dry-run"]).await;
    assert!(
        text.stdout.contains("due; deferred: org acme has used")
            && text.stdout.contains("1 deferred for the API budget"),
        "{}",
        text.stdout
    );

    // check's metrics carry the org's usage; the daemon's also what it deferred.
    w.ok(&["check", "--prometheus-textfile", "rekey.prom"])
        .await;
    let prom = std::fs::read_to_string(w.path("rekey.prom")).unwrap();
    let ratio =
        metric(&prom, "rekey_api_usage_ratio{org=\"acme\"}").unwrap_or_else(|| panic!("{prom}"));
    assert!(ratio > 0.85 && ratio < 1.0, "{prom}");
    w.edit_config(|c| format!("{c}\n[daemon]\nlisten = \"127.0.0.1:0\"\ninterval_secs = 3600\n"));
    let (mut child, base) = daemon(&w).await;
    let metrics = metrics_when(&base, |m| metric(m, "rekey_runs_total") == Some(1.0)).await;
    child.kill().await.unwrap();
    assert_eq!(
        metric(&metrics, "rekey_deferred_total"),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        metric(&metrics, "rekey_api_usage_ratio{org=\"acme\"}").is_some_and(|r| r > 0.85),
        "{metrics}"
    );

    // The in-check audit waits too: no audit row, a deferral instead.
    w.edit_config(|c| c + "\n[audit]\nin_check = true\n");
    let audited = w.rekey(&["run", "--dry-run", "--json"]).await;
    let report: serde_json::Value = serde_json::from_str(&audited.stdout).unwrap();
    assert_eq!(report["audit_deferred"][0]["org"], "acme", "{report:#}");
    assert!(report.get("audit").is_none(), "{report:#}");
    assert!(
        audited.stderr.contains("audit deferred"),
        "{}",
        audited.stderr
    );

    // Under the share, the old key is rotated and the org audited.
    settings(&w, serde_json::json!({ "daily_api_requests": 15000 })).await;
    let report = w.json_any(&["run", "--dry-run"]).await;
    assert_eq!(
        row(&report, "billing-eca")["action"],
        "would_rotate",
        "{report:#}"
    );
    assert_eq!(report["audit"][0]["credential"], "org:acme", "{report:#}");
    assert!(report.get("audit_deferred").is_none(), "{report:#}");
}

/// The admin user's logins refused by the login rate limit after row `since` of the history.
fn throttled_since(w: &World, since: usize) -> usize {
    admin_logins_since(w, since)
        .iter()
        .filter(|s| *s == "Login rate exceeded")
        .count()
}

/// The demo world (`billing` imported; `billing-eca` too with `with_eca`, else left out) whose admin user has
/// used up its logins for the hour: the limit (`logins_per_user_per_hour`) set to the logins its
/// setup made.
async fn throttled(with_eca: bool) -> World {
    let mut w = World::new().await;
    let since = w.sim.login_history().len();
    if with_eca {
        w.import_legacy("billing-eca").await;
    } else {
        w.drop_credential("billing-eca");
    }
    w.import_legacy("billing").await;
    let used = admin_logins_since(&w, since).len();
    assert!(used >= 1);
    settings(&w, serde_json::json!({ "logins_per_user_per_hour": used })).await;
    w
}

/// An admin login refused by Salesforce's login rate limit is waited out (bounded backoff), not
/// a failed run: once a login is free again the run goes on and rotates what is due.
#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_admin_login_is_waited_out() {
    let w = throttled(false).await;
    let since = w.sim.login_history().len();
    let run = w.command(&["run", "--json"]).output();
    let run = tokio::spawn(run);
    // Once rekey met the limit, the hour "passes": logins are free again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while throttled_since(&w, since) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never throttled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    settings(&w, serde_json::json!({ "logins_per_user_per_hour": 3600 })).await;
    let out = run.await.unwrap().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(row(&report, "billing")["action"], "rotated", "{report:#}");
    assert!(
        stderr.contains("admin login refused for now (login rate limit); retrying after a wait"),
        "{stderr}"
    );
    let logins = admin_logins_since(&w, since);
    assert_eq!(
        logins.last().map(String::as_str),
        Some("Success"),
        "{logins:?}"
    );
    assert_eq!(
        logins.iter().filter(|s| *s == "Success").count(),
        1,
        "{logins:?}"
    );
}

/// A login rate limit that outlasts the bounded wait is a temporary error naming the org: the
/// app's source is unknown (exit 3), after one series of attempts for the whole run, not one
/// per credential.
#[tokio::test(flavor = "multi_thread")]
async fn a_login_limit_that_outlasts_the_wait_is_a_temporary_error_naming_the_org() {
    let mut w = throttled(true).await;
    let since = w.sim.login_history().len();
    let run = w.rekey(&["check", "--json"]).await;
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    let rows: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    for cred in ["billing", "billing-eca"] {
        let row = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["credential"] == cred)
            .unwrap();
        let text = row.to_string();
        assert!(
            text.contains("admin login as rekey-admin@acme.example to org acme")
                && text.contains("rate_limit_exceeded"),
            "{row:#}"
        );
    }
    // Five attempts (the first and four after waits), for both credentials together.
    assert_eq!(throttled_since(&w, since), 5, "{}", run.stderr);
}

/// A daemon's kept session that Salesforce ends (an administrator deleted it) is replaced by
/// one fresh login on its next call, and that one is kept again.
#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_logs_in_again_once_when_its_session_is_ended() {
    let w = World::billing_only().await;
    w.edit_config(|c| format!("{c}\n[daemon]\nlisten = \"127.0.0.1:0\"\ninterval_secs = 1\n"));
    let since = w.sim.login_history().len();
    let (mut child, base) = daemon(&w).await;
    let runs = |m: &str| metric(m, "rekey_runs_total").unwrap_or(0.0);
    let metrics = metrics_when(&base, |m| runs(m) >= 2.0).await;
    assert_eq!(admin_logins_since(&w, since), ["Success"], "{metrics}");
    let live = |w: &World| -> Vec<String> {
        w.sim
            .live_sessions("rekey-admin@acme.example")
            .into_iter()
            .map(|s| s.id)
            .collect()
    };
    let rekeys = live(&w);
    assert_eq!(rekeys.len(), 1, "the daemon's one session");
    // An administrator ends it (through a session of their own).
    let token = world::admin_access_token(&w).await;
    let (status, body) = {
        let r = reqwest::Client::new()
            .delete(format!(
                "{}/services/data/v67.0/sobjects/AuthSession/{}",
                w.sim.base_url(),
                rekeys[0]
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    };
    assert!(status.is_success(), "{status}: {body}");
    let ended_after = runs(&metrics_when(&base, |_| true).await);
    let metrics = metrics_when(&base, |m| runs(m) >= ended_after + 3.0).await;
    child.kill().await.unwrap();
    // The daemon's first login, the administrator's, and one fresh login of the daemon.
    assert_eq!(
        admin_logins_since(&w, since),
        ["Success", "Success", "Success"],
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "rekey_run_last_exit_code"),
        Some(0.0),
        "{metrics}"
    );
}
