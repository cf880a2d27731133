//! The fault matrix: whatever happens mid-rotation, rekey never leaves a certificate on the app
//! whose private key is lost, never lets two runners rotate one credential, and the next run
//! finishes or cleanly undoes what was started.
//!
//! The real `rekey` binary is stopped at every step boundary by its test-only hold point
//! (`REKEY_TEST_HOLD_AT`, compiled out of release builds) and killed there with SIGKILL, then
//! resumed or aborted, for every store kind; Salesforce (the org emulator) fails each kind of call
//! in each way it can; stores go away mid-rotation; runners race. After every scenario the same
//! invariants are checked, and everything rekey printed or journaled is scanned for key bytes.

mod world;

use orgsim::{Fault, FaultKind, PropagationMode};
use rekey_api::{Generation, SecretStore};
use rekey_testkit::moto::{Moto, sdk_config, version_labels};
use rekey_testkit::openbao::OpenBao;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use world::{Held, World, rekey_api_fingerprint, vault_world, with_aws_store};

const CRED: &str = "billing";
const APP: &str = "Billing_Sync";
/// The lease time to live in these worlds: a killed runner's lease blocks others this long. An
/// hour, so that no lease runs out by accident while a scenario runs, however loaded the machine
/// (a racing loser must never find the winner's lease expired); a scenario that needs a lease to
/// run out runs the next command with rekey's clock [`PAST_LEASE`] ahead instead of waiting.
const LEASE_SECS: u64 = 3600;
/// How far a command's clock is moved to see every lease taken before it expired: a minute past
/// the time to live, for the seconds the scenario took up to then.
const PAST_LEASE: i64 = LEASE_SECS as i64 + 60;
/// Scenarios of one matrix run at once (each is a few short processes and an emulator).
const PARALLEL: usize = 4;

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    File,
    Vault,
    Aws,
}

/// A world with `billing`'s key in one store kind, its legacy key imported as generation 1.
struct Scene {
    w: World,
    kind: Kind,
    prefix: String,
    /// Vault address or moto endpoint.
    endpoint: String,
    /// A Vault token that can read everything, for the checks.
    root: String,
    /// Every private key this scene ever held, for the leak scan.
    secrets: Vec<String>,
}

impl Scene {
    async fn new(kind: Kind) -> Scene {
        match kind {
            Kind::File => Scene::file().await,
            Kind::Vault => Scene::vault(OpenBao::shared(), OpenBao::shared().root_token()).await,
            Kind::Aws => Scene::aws(Moto::shared()).await,
        }
    }

    async fn file() -> Scene {
        Scene::ready(
            World::new().await,
            Kind::File,
            String::new(),
            String::new(),
            String::new(),
        )
        .await
    }

    async fn vault(bao: &OpenBao, token: &str) -> Scene {
        let (mut w, prefix) = vault_world(bao).await;
        let line = format!("path_prefix = \"{prefix}\"");
        w.edit_config(|c| c.replace(&line, &format!("{line}\nlock_ttl_secs = {LEASE_SECS}")));
        w.env.retain(|(k, _)| k != "VAULT_TOKEN");
        w.env.push(("VAULT_TOKEN".into(), token.into()));
        Scene::ready(w, Kind::Vault, prefix, bao.addr(), bao.root_token().into()).await
    }

    async fn aws(moto: &Moto) -> Scene {
        let mut w = World::new().await;
        let prefix = with_aws_store(&mut w, moto);
        let line = format!("name_prefix = \"{prefix}\"");
        w.edit_config(|c| {
            c.replacen("store = \"local\"", "store = \"aws\"", 1)
                .replace(&line, &format!("{line}\nlock_ttl_secs = {LEASE_SECS}"))
        });
        Scene::ready(w, Kind::Aws, prefix, moto.endpoint(), String::new()).await
    }

    async fn ready(
        mut w: World,
        kind: Kind,
        prefix: String,
        endpoint: String,
        root: String,
    ) -> Scene {
        w.import_legacy(CRED).await;
        let secrets = world::walk(w.dir.path())
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "key"))
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        Scene {
            w,
            kind,
            prefix,
            endpoint,
            root,
            secrets,
        }
    }

    /// A handle on the credential's store, for checks rekey's own output cannot make.
    async fn store(&self) -> Box<dyn SecretStore> {
        match self.kind {
            Kind::File => Box::new(rekey_file::FileStore::new(self.w.path("keys"))),
            Kind::Vault => {
                let auth =
                    rekey_vault::VaultAuth::Token(rekey_api::SecretString::new(self.root.clone()));
                let mut config = rekey_vault::VaultConfig::new(self.endpoint.clone(), auth);
                config.path_prefix = self.prefix.clone();
                Box::new(rekey_vault::VaultStore::new(config).unwrap())
            }
            Kind::Aws => {
                let config = rekey_aws::AwsConfig {
                    name_prefix: self.prefix.clone(),
                    ..rekey_aws::AwsConfig::default()
                };
                Box::new(
                    rekey_aws::AwsStore::with_sdk_config(config, &sdk_config(&self.endpoint).await)
                        .unwrap(),
                )
            }
        }
    }

    fn set(&self, key: &str, value: &str) {
        // Settings go into billing's section, right after its verify timeout.
        self.w.edit_config(|c| {
            c.replacen(
                "verify_timeout_secs = 60",
                &format!("verify_timeout_secs = 60\n{key} = {value}"),
                1,
            )
        });
    }

    /// The invariants every closed rotation leaves behind, checked through rekey, the store and
    /// the emulator. `generation` must be CURRENT in every store and its certificate on the app.
    async fn assert_settled(&mut self, generation: u64, context: &str) {
        self.assert_settled_since(0, generation, context).await;
    }

    /// Like [`Scene::assert_settled`], for a later rotation: only the certificates the app held
    /// from `history[since]` on (the one it held when that rotation began) must keep their keys.
    async fn assert_settled_since(&mut self, since: usize, generation: u64, context: &str) {
        let status = self.w.json(&["status", CRED]).await;
        let row = &status[0];
        assert_eq!(
            row["generation"], generation,
            "{context}: CURRENT\n{status}"
        );
        assert!(
            row["pending_generation"].is_null(),
            "{context}: PENDING cleared\n{status}"
        );
        assert!(
            row["open_rotation"].is_null(),
            "{context}: journal closed\n{status}"
        );
        let app = self.w.app_fingerprint(APP);
        assert_eq!(
            row["fingerprint"],
            app.as_str(),
            "{context}: the app holds CURRENT\n{status}"
        );
        for store in row["stores"].as_array().unwrap() {
            assert_eq!(
                store["matches_app"], true,
                "{context}: every store agrees\n{status}"
            );
        }

        let store = self.store().await;
        let stages = store.stages(CRED).await.unwrap();
        assert_eq!(
            stages.current.map(|v| v.generation),
            Some(Generation(generation)),
            "{context}: CURRENT read from the store"
        );
        if self.kind == Kind::Aws {
            let labels = aws_labels(&self.endpoint, &format!("{}/{CRED}", self.prefix)).await;
            let current = labels.iter().filter(|l| *l == "AWSCURRENT").count();
            assert_eq!(current, 1, "{context}: exactly one AWSCURRENT: {labels:?}");
            assert!(
                !labels.iter().any(|l| l == "AWSPENDING"),
                "{context}: {labels:?}"
            );
        }
        // Every certificate the app ever held still has its private key somewhere.
        let mut kept = BTreeSet::new();
        for g in 1..=generation + 2 {
            if let Some(k) = store.read_generation(CRED, Generation(g)).await.unwrap() {
                kept.insert(k.info.certificate.fingerprint.to_hex());
                self.secrets.push(k.key.expose_secret_pem().to_string());
            }
        }
        for pem in self.w.sim.certificate_history(APP).iter().skip(since) {
            let fp = rekey_api_fingerprint(pem);
            assert!(
                kept.contains(&fp),
                "{context}: the app held {fp}, whose key is in no store (kept: {kept:?})"
            );
        }

        let journal = self.w.json(&["journal", CRED]).await;
        // Empty when the only rotation was killed before its first entry.
        if let Some(last) = journal.as_array().unwrap().last() {
            assert!(
                matches!(last["step"].as_str(), Some("finalize" | "close"))
                    && last["phase"] == "done",
                "{context}: the journal ends closed: {last}"
            );
        }
        // A token signed by CURRENT is accepted.
        self.w.ok(&["verify", CRED]).await;
    }

    /// Occurrences of key material (armour, or any 32-character piece of a key's base64 body) in
    /// everything rekey printed, logged or journaled in this scene.
    fn leaks(&self) -> usize {
        let mut fragments = BTreeSet::new();
        for pem in &self.secrets {
            let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            let chars: Vec<char> = body.chars().collect();
            for start in (0..chars.len().saturating_sub(32)).step_by(16) {
                fragments.insert(chars[start..start + 32].iter().collect::<String>());
            }
        }
        assert!(
            fragments.len() > 100,
            "the scan needs the keys it looks for"
        );
        let mut texts = self.w.printed.clone();
        texts.extend(
            world::walk(self.w.dir.path())
                .into_iter()
                .filter(|p| p.file_name().is_some_and(|n| n == "journal.jsonl"))
                .map(|p| std::fs::read_to_string(p).unwrap()),
        );
        texts
            .iter()
            .map(|t| {
                let flat = t.replace("\\n", "").replace(['\n', '\r'], "");
                flat.matches("PRIVATE KEY").count()
                    + fragments
                        .iter()
                        .filter(|f| flat.contains(f.as_str()))
                        .count()
            })
            .sum()
    }

    fn assert_no_leaks(&self, context: &str) {
        assert_eq!(
            self.leaks(),
            0,
            "{context}: key material printed or journaled"
        );
    }
}

/// Every staging label on every version of `secret`, deprecated versions included.
async fn aws_labels(endpoint: &str, secret: &str) -> Vec<String> {
    let client = aws_sdk_secretsmanager::Client::new(&sdk_config(endpoint).await);
    version_labels(&client, secret)
        .await
        .into_values()
        .flatten()
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
                rekey_api_fingerprint(&std::fs::read_to_string(s.w.path("billing.crt")).unwrap()),
                "{context}: the original certificate is back on the app"
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

/// Runs `scenarios` at most [`PARALLEL`] at a time, re-raising the first panic; returns how many
/// finished.
async fn run_all<F>(scenarios: impl IntoIterator<Item = F>) -> usize
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let limit = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let mut set = tokio::task::JoinSet::new();
    for scenario in scenarios {
        let limit = limit.clone();
        set.spawn(async move {
            let _permit = limit.acquire_owned().await.unwrap();
            scenario.await
        });
    }
    let mut finished = 0;
    while let Some(result) = set.join_next().await {
        if let Err(e) = result {
            std::panic::resume_unwind(e.into_panic());
        }
        finished += 1;
    }
    finished
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

/// The `rekey` commands of a runbook's `sh` blocks, comments stripped, quotes honoured, `CRED`
/// replaced by `credential`.
fn runbook_commands(path: &str, credential: &str) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap();
    let mut in_sh = false;
    let mut commands = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        let Some(command) = line.strip_prefix("rekey ").filter(|_| in_sh) else {
            continue;
        };
        let command = command.split(" #").next().unwrap();
        let mut words = Vec::new();
        for (i, part) in command.split('"').enumerate() {
            if i % 2 == 1 {
                words.push(part.to_string());
            } else {
                words.extend(part.split_whitespace().map(str::to_string));
            }
        }
        for w in &mut words {
            *w = w.replace("CRED", credential);
        }
        commands.push(words);
    }
    commands
}

/// What a read-only command must leave as it found it: every store file and the app's
/// certificate.
fn looked_at(s: &Scene) -> (Vec<(std::path::PathBuf, Vec<u8>)>, String) {
    (world::snapshot(&s.w.path("keys")), s.w.app_fingerprint(APP))
}

/// The state a runbook command leaves, by what it is for: a rotation finished (`rotate`,
/// `resume`, a `run` that found billing due), undone (`abort`), a key put under management
/// (`import`); anything else only looks, and changes no store file and not the app.
async fn assert_runbook_state(
    s: &mut Scene,
    args: &[&str],
    before: &(Vec<(std::path::PathBuf, Vec<u8>)>, String),
    context: &str,
) {
    match args {
        ["rotate", ..] | ["resume", ..] | ["run"] => s.assert_settled(2, context).await,
        ["abort", ..] => {
            s.assert_settled(1, context).await;
            let journal = s.w.json(&["journal", CRED]).await;
            let close = journal.as_array().unwrap().last().unwrap().clone();
            let reason = args
                .iter()
                .skip_while(|a| **a != "--reason")
                .nth(1)
                .unwrap();
            assert_eq!(close["detail"], format!("aborted: {reason}"), "{context}");
        }
        ["import", ..] => {
            let status = s.w.json(&["status", CRED]).await;
            assert_eq!(status[0]["generation"], 1, "{context}\n{status}");
            assert_eq!(
                status[0]["stores"][0]["matches_app"], true,
                "{context}\n{status}"
            );
            assert!(status[0]["open_rotation"].is_null(), "{context}\n{status}");
            s.w.ok(&["verify", CRED]).await;
        }
        _ => assert!(
            looked_at(s) == *before,
            "{context}: changed the store or the app"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_command_of_the_rollback_runbook_works_on_a_stuck_rotation() {
    let commands = runbook_commands("runbooks/rollback.md", CRED);
    assert!(commands.len() >= 7, "{commands:?}");
    let scenarios = commands.into_iter().map(|command| async move {
        let mut s = Scene::file().await;
        let context = format!("rekey {}", command.join(" "));
        // Stuck after the new certificate reached the app.
        let held = Held::spawn(&s.w, &["rotate", CRED], "publish:done")
            .reached(&mut s.w)
            .await;
        held.kill(&mut s.w).await;
        let args: Vec<&str> = command.iter().map(String::as_str).collect();
        let before = looked_at(&s);
        let run = s.w.rekey(&args).await;
        assert_eq!(run.code, 0, "{context}\n{}{}", run.stdout, run.stderr);
        match args[0] {
            "resume" => s.assert_settled(2, &context).await,
            "abort" => {
                s.assert_settled(1, &context).await;
                let journal = s.w.json(&["journal", CRED]).await;
                let close = journal.as_array().unwrap().last().unwrap().clone();
                assert_eq!(
                    close["detail"], "aborted: deploy window closed",
                    "{context}"
                );
            }
            _ => {
                let status = s.w.json(&["status", CRED]).await;
                assert!(
                    status[0]["open_rotation"].is_string(),
                    "{context}: only looks\n{status}"
                );
                assert!(
                    looked_at(&s) == before,
                    "{context}: changed the store or the app"
                );
            }
        }
        s.assert_no_leaks(&context);
    });
    run_all(scenarios).await;
}

/// Every `rekey` command of the scheduling and alert-response runbooks, each on its own world in
/// the state the runbook describes (a stuck rotation for resume/abort, an emptied store for
/// import), answers 0. The systemd unit and the CronJob run subcommands tested here or, for the
/// daemon, in tests/alerting.rs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_command_of_the_scheduling_and_alert_runbooks_works() {
    let schedule = "runbooks/scheduled-rotation.md";
    let mut commands = runbook_commands(schedule, CRED);
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(schedule)).unwrap();
    let deployed: Vec<&str> = text
        .split("ExecStart=/usr/local/bin/rekey ")
        .skip(1)
        .chain(text.split("args: [\"").skip(1))
        .map(|rest| rest.split(['"', '`', '\n', ' ']).next().unwrap())
        .collect();
    assert!(deployed.len() >= 3, "{deployed:?}");
    for sub in deployed {
        assert!(
            sub == "daemon" || commands.iter().any(|c| c == &[sub]),
            "{schedule} deploys `rekey {sub}`, which no test runs"
        );
    }
    commands.extend(runbook_commands("runbooks/expiry-alert-response.md", CRED));
    assert!(commands.len() >= 18, "{commands:?}");
    let scenarios = commands.into_iter().map(|command| async move {
        let mut s = Scene::file().await;
        s.w.drop_credential("billing-eca");
        let context = format!("rekey {}", command.join(" "));
        match command[0].as_str() {
            "resume" | "abort" => {
                let held = Held::spawn(&s.w, &["rotate", CRED], "publish:done")
                    .reached(&mut s.w)
                    .await;
                held.kill(&mut s.w).await;
            }
            // The runbook's case: a store without CURRENT.
            "import" => std::fs::remove_dir_all(s.w.path(&format!("keys/{CRED}"))).unwrap(),
            _ => {}
        }
        let args: Vec<&str> = command.iter().map(String::as_str).collect();
        let before = looked_at(&s);
        let run = s.w.rekey(&args).await;
        assert_eq!(run.code, 0, "{context}\n{}{}", run.stdout, run.stderr);
        assert_runbook_state(&mut s, &args, &before, &context).await;
        s.assert_no_leaks(&context);
    });
    run_all(scenarios).await;
}

/// Every `rekey` command of the emergency runbook answers 0, each on its own world: `resume` on
/// an emergency killed after publishing; the kill-switch variant on the External Client App;
/// `--all-in-org` with both credentials imported.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_command_of_the_emergency_runbook_works() {
    let commands = runbook_commands("runbooks/emergency-rekey.md", CRED);
    assert!(commands.len() >= 8, "{commands:?}");
    let scenarios = commands.into_iter().map(|command| async move {
        let mut s = Scene::file().await;
        let mut args: Vec<String> = command
            .iter()
            .map(|w| {
                if w == "ORG" {
                    "acme".to_string()
                } else {
                    w.clone()
                }
            })
            .collect();
        if args.iter().any(|a| a == "--kill-switch") {
            for a in &mut args {
                if a == CRED {
                    *a = "billing-eca".into();
                }
            }
        }
        if args
            .iter()
            .any(|a| a == "--kill-switch" || a == "--all-in-org")
        {
            s.w.import_legacy("billing-eca").await;
        }
        let context = format!("rekey {}", args.join(" "));
        if args[0] == "resume" {
            let held = Held::spawn(
                &s.w,
                &["emergency", CRED, "--reason", "leak", "--yes"],
                "publish:done",
            )
            .reached(&mut s.w)
            .await;
            held.kill(&mut s.w).await;
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let before = looked_at(&s);
        let run = s.w.rekey(&args).await;
        assert_eq!(run.code, 0, "{context}\n{}{}", run.stdout, run.stderr);
        assert_emergency_state(&mut s, &args, &before, &context).await;
        s.assert_no_leaks(&context);
    });
    run_all(scenarios).await;
}

/// The state an emergency runbook command leaves: each credential it rekeyed (or, `resume`,
/// finished) settled on generation 2 with every older key destroyed and its evidence bundle
/// written; anything else only looks.
async fn assert_emergency_state(
    s: &mut Scene,
    args: &[&str],
    before: &(Vec<(std::path::PathBuf, Vec<u8>)>, String),
    context: &str,
) {
    let rekeyed: Vec<&str> = match args {
        ["emergency", "--all-in-org", ..] => vec![CRED, "billing-eca"],
        ["emergency", cred, ..] | ["resume", cred] => vec![*cred],
        _ => {
            assert!(
                looked_at(s) == *before,
                "{context}: changed the store or the app"
            );
            return;
        }
    };
    for cred in rekeyed {
        // Not `assert_settled`: an emergency destroys the leaked key the app once held.
        s.w.ok(&["verify", cred]).await;
        let status = s.w.json(&["status", cred]).await;
        let row = &status[0];
        assert_eq!(row["generation"], 2, "{context}: {cred}\n{status}");
        assert!(
            row["previous_generation"].is_null(),
            "{context}: old keys destroyed\n{status}"
        );
        assert!(row["open_rotation"].is_null(), "{context}\n{status}");
        assert_eq!(row["stores"][0]["matches_app"], true, "{context}\n{status}");
        let store = rekey_file::FileStore::new(s.w.path("keys"));
        assert!(
            store
                .read_generation(cred, Generation(1))
                .await
                .unwrap()
                .is_none(),
            "{context}: {cred}'s leaked key is destroyed"
        );
        let journal = s.w.json(&["journal", cred]).await;
        let rotation = journal.as_array().unwrap().last().unwrap()["rotation_id"]
            .as_str()
            .unwrap()
            .to_string();
        let bundle = s.w.path(&format!("evidence/{rotation}.json"));
        let text = std::fs::read_to_string(&bundle)
            .unwrap_or_else(|e| panic!("{context}: no evidence {}: {e}", bundle.display()));
        let evidence: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(evidence["outcome"], "completed", "{context}");
        s.w.printed.push(text);
    }
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
