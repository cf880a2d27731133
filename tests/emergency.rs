//! Emergency rekey through the real binary: an attacker holding the leaked key and a live token
//! minted with it is locked out by one command — the old key refused, the session dead, older
//! generations destroyed, an evidence bundle written — also when the command is interrupted.

mod world;

use rekey_api::{SecretStore, Stage};
use serde_json::Value;
use world::{Held, World};

const API: &str = "v67.0";
const REASON: &str = "key committed to a public repo";
const USER: &str = "integration@acme.example";

/// Someone outside rekey who holds a private key and talks to the org directly.
struct Attacker {
    base: String,
    http: reqwest::Client,
    consumer_key: &'static str,
}

impl Attacker {
    fn new(w: &World, consumer_key: &'static str) -> Attacker {
        Attacker {
            base: w.sim.base_url(),
            http: reqwest::Client::new(),
            consumer_key,
        }
    }

    /// The JWT-bearer grant with `key_pem`: Ok(access token) or Err(the error code).
    async fn mint(&self, w: &World, key_pem: &str) -> Result<String, String> {
        let answer = world::jwt_grant(w, self.consumer_key, USER, key_pem).await;
        match answer["access_token"].as_str() {
            Some(token) => Ok(token.to_string()),
            None => Err(format!(
                "{}: {}",
                answer["error"].as_str().unwrap_or(""),
                answer["error_description"].as_str().unwrap_or("")
            )),
        }
    }

    /// (status of a REST call, status and body of userinfo) with `token`.
    async fn use_token(&self, token: &str) -> (u16, u16, String) {
        let rest = self
            .http
            .get(format!("{}/services/data/{API}/limits", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        let info = self
            .http
            .get(format!("{}/services/oauth2/userinfo", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = info.status().as_u16();
        (rest, status, info.text().await.unwrap())
    }
}

/// `emergency <who> --reason REASON <extra> --yes`.
fn emergency<'a>(who: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["emergency"];
    args.extend_from_slice(who);
    args.extend_from_slice(&["--reason", REASON]);
    args.extend_from_slice(extra);
    args.push("--yes");
    args
}

fn file_store(w: &World) -> rekey_file::FileStore {
    rekey_file::FileStore::new(w.path("keys"))
}

/// The PEM of `credential`'s key at `stage` in the file store.
async fn key_pem(w: &World, credential: &str, stage: Stage) -> String {
    file_store(w)
        .read_stage(credential, stage)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{credential} has no {stage:?} key"))
        .material
        .key()
        .unwrap()
        .expose_secret_pem()
        .to_string()
}

/// The evidence bundle a finished `rekey emergency --json` names for its first credential.
fn evidence(w: &mut World, report: &Value) -> Value {
    let path = report[0]["evidence"].as_str().expect("an evidence path");
    let text = std::fs::read_to_string(path).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{path}");
    // Scanned for key bytes with everything else the world printed.
    w.printed.push(text.clone());
    serde_json::from_str(&text).unwrap()
}

fn done_steps(bundle: &Value) -> Vec<String> {
    bundle["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["phase"] == "done")
        .map(|m| m["step"].as_str().unwrap().to_string())
        .collect()
}

/// The attacker holds the CURRENT key (generation 2: the openssl key was imported, then rotated
/// once) and a live token minted with it. After `rekey emergency`: the old key's grant is refused,
/// the attacker's token is dead on REST (401) and userinfo (403 Bad_OAuth_Token), the new key
/// mints a working token, generations 1 and 2 are gone, and the evidence tells the story.
#[tokio::test(flavor = "multi_thread")]
async fn one_command_locks_out_an_attacker_holding_the_leaked_key() {
    let mut w = World::billing_only().await;
    w.ok(&["rotate", "billing"]).await;
    let leaked = key_pem(&w, "billing", Stage::Current).await;
    let leaked_fingerprint = w.app_fingerprint("Billing_Sync");
    let attacker = Attacker::new(&w, "3MVG9BillingSyncConsumerKey0001");
    let stolen_token = attacker
        .mint(&w, &leaked)
        .await
        .expect("the leaked key works");
    assert_eq!(attacker.use_token(&stolen_token).await.0, 200);
    // A refresh-token grant of the app (some user once approved it interactively).
    w.sim.add_grant(USER, "Billing_Sync").unwrap();
    let hook = rekey_testkit::receiver::Receiver::answering(200, "ok").await;
    std::fs::write(w.path("hook.secret"), "hook-signing-secret").unwrap();
    let url = hook.url("/incident");
    w.edit_config(|c| {
        format!("{c}\n[alerts.channels.hook]\nkind = \"webhook\"\nurl = \"{url}\"\nsecret_file = \"hook.secret\"\n")
    });

    let report = w.json(&emergency(&["billing"], &[])).await;
    assert_eq!(report[0]["outcome"], "rekeyed", "{report}");
    assert!(
        w.sim.live_sessions(USER).is_empty(),
        "{:?}",
        w.sim.sessions()
    );
    assert!(
        w.sim.grants().iter().all(|g| g.app != "Billing_Sync"),
        "{:?}",
        w.sim.grants()
    );

    assert_eq!(
        attacker.mint(&w, &leaked).await,
        Err("invalid_grant: invalid assertion".to_string())
    );
    let (rest, info, body) = attacker.use_token(&stolen_token).await;
    assert_eq!((rest, info, body.trim()), (401, 403, "Bad_OAuth_Token"));
    let fresh = key_pem(&w, "billing", Stage::Current).await;
    let token = attacker.mint(&w, &fresh).await.expect("the new key works");
    assert_ne!(token, stolen_token, "a new session, not the revoked one");
    assert_eq!(attacker.use_token(&token).await.0, 200);

    let store = file_store(&w);
    for generation in [1, 2] {
        assert!(
            store
                .read_generation("billing", rekey_api::Generation(generation))
                .await
                .unwrap()
                .is_none(),
            "generation {generation} survived"
        );
    }
    let stages = store.stages("billing").await.unwrap();
    assert_eq!(stages.current.unwrap().generation, rekey_api::Generation(3));
    assert!(stages.previous.is_none() && stages.pending.is_none());

    let notice = hook.single().json();
    assert_eq!(notice["type"], "rotation", "{notice}");
    assert_eq!(notice["outcome"], "succeeded", "{notice}");
    assert!(
        notice["summary"].as_str().unwrap().starts_with(&format!(
            "emergency rekey ({REASON}): rotated to generation 3"
        )),
        "{notice}"
    );
    let bundle = evidence(&mut w, &report);
    assert_eq!(bundle["outcome"], "completed");
    assert_eq!(bundle["reason"], REASON);
    assert_eq!(bundle["kill_switch"], false);
    assert!(!bundle["operator"].as_str().unwrap().is_empty());
    assert!(!bundle["host"].as_str().unwrap().is_empty());
    assert_eq!(bundle["old_fingerprint"], leaked_fingerprint.as_str());
    assert_eq!(
        bundle["new_fingerprint"],
        w.app_fingerprint("Billing_Sync").as_str()
    );
    assert_eq!(bundle["revoked"]["sessions"], 1, "{bundle}");
    assert_eq!(bundle["revoked"]["grants"], 1, "{bundle}");
    assert!(
        bundle["revoked"]["app_tokens_deleted"].is_null(),
        "{bundle}"
    );
    assert!(
        bundle["verification"]
            .as_str()
            .unwrap()
            .contains("the old key is refused (invalid_grant: invalid assertion)"),
        "{bundle}"
    );
    assert_eq!(
        done_steps(&bundle),
        [
            "generate", "stage", "publish", "verify", "revoke", "promote", "destroy", "finalize"
        ]
    );
    w.assert_no_key_bytes_leaked();
}

/// An External Client App with the kill switch: OAuth is off while the certificate changes and on
/// again afterwards, so the new key works and the old one does not; the keys live in Vault.
#[tokio::test(flavor = "multi_thread")]
async fn the_kill_switch_closes_an_external_client_app_during_the_switch() {
    let bao = rekey_testkit::openbao::OpenBao::shared();
    let (mut w, _prefix) = world::vault_world(bao).await;
    w.drop_credential("billing");
    w.import_legacy("billing-eca").await;
    let leaked = std::fs::read_to_string(w.path("billing-eca.key")).unwrap();
    let attacker = Attacker::new(&w, "3MVG9BillingSyncEcaConsumerKey01");
    let stolen_token = attacker
        .mint(&w, &leaked)
        .await
        .expect("the leaked key works");

    let report = w
        .json(&emergency(&["billing-eca"], &["--kill-switch"]))
        .await;
    assert_eq!(report[0]["outcome"], "rekeyed", "{report}");
    let bundle = evidence(&mut w, &report);
    assert_eq!(bundle["kill_switch"], true);
    assert_eq!(bundle["revoked"]["app_tokens_deleted"], true, "{bundle}");
    assert_eq!(
        done_steps(&bundle),
        [
            "generate",
            "stage",
            "oauth_off",
            "publish",
            "oauth_on",
            "verify",
            "revoke",
            "promote",
            "destroy",
            "finalize"
        ]
    );
    assert!(attacker.mint(&w, &leaked).await.is_err());
    assert_eq!(attacker.use_token(&stolen_token).await.0, 401);
    // OAuth is on again: rekey's own check of the new key passes.
    w.ok(&["verify", "billing-eca"]).await;
    let status = w.json(&["status", "billing-eca"]).await;
    assert_eq!(status[0]["generation"], 2, "{status}");
    assert!(status[0]["previous_generation"].is_null(), "{status}");
    w.assert_no_key_bytes_leaked();
}

/// Killed right after the new certificate reached the app, before anything was revoked: abort is
/// refused (it would trust the leaked key again); the emergency run again finishes the same
/// rotation and revokes the attacker's session.
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_emergency_resumes_and_completes_the_revocation() {
    let mut w = World::billing_only().await;
    let leaked = std::fs::read_to_string(w.path("billing.key")).unwrap();
    let attacker = Attacker::new(&w, "3MVG9BillingSyncConsumerKey0001");
    let stolen_token = attacker.mint(&w, &leaked).await.unwrap();

    let hold = w.path("hold");
    let mut child = w
        .command(&emergency(&["billing"], &[]))
        .env("REKEY_TEST_HOLD_AT", "publish:done")
        .env("REKEY_TEST_HOLD_FILE", &hold)
        .stdout(std::fs::File::create(w.path("held.out")).unwrap())
        .stderr(std::fs::File::create(w.path("held.err")).unwrap())
        .spawn()
        .unwrap();
    for _ in 0..600 {
        if hold.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(hold.exists(), "the emergency never reached publish:done");
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    std::fs::remove_file(&hold).unwrap();
    // The session survived the kill: nothing was revoked yet.
    assert_eq!(attacker.use_token(&stolen_token).await.0, 200);

    let abort = w
        .rekey(&["abort", "billing", "--reason", "second thoughts"])
        .await;
    assert_eq!(abort.code, 6, "{}{}", abort.stdout, abort.stderr);
    assert!(abort.stderr.contains("leaked key"), "{}", abort.stderr);
    // The refusal points to the one way out, never back to abort.
    assert!(
        abort.stderr.contains("`rekey resume billing`") && !abort.stderr.contains("`rekey abort"),
        "{}",
        abort.stderr
    );

    let report = w.json(&emergency(&["billing"], &[])).await;
    assert_eq!(report[0]["outcome"], "rekeyed", "{report}");
    let bundle = evidence(&mut w, &report);
    assert_eq!(bundle["outcome"], "completed");
    let timeline = bundle["timeline"].as_array().unwrap();
    assert_eq!(timeline[0]["step"], "generate");
    assert_eq!(
        timeline
            .iter()
            .filter(|m| m["step"] == "publish" && m["phase"] == "done")
            .count(),
        1,
        "one rotation, published once: {bundle}"
    );
    assert_eq!(attacker.use_token(&stolen_token).await.0, 401);
    assert!(attacker.mint(&w, &leaked).await.is_err());
    w.assert_no_key_bytes_leaked();
}

/// Refusals that change nothing: the kill switch on a Connected App, and no confirmation.
#[tokio::test(flavor = "multi_thread")]
async fn an_emergency_that_cannot_or_may_not_run_changes_nothing() {
    let mut w = World::new().await;
    w.import_legacy("billing").await;
    let before = w.app_fingerprint("Billing_Sync");
    let kill = w.rekey(&emergency(&["billing"], &["--kill-switch"])).await;
    assert_eq!(kill.code, 64, "{}{}", kill.stdout, kill.stderr);
    assert!(kill.stderr.contains("Connected App"), "{}", kill.stderr);

    let mut unconfirmed = w
        .command(&["emergency", "billing", "--reason", REASON])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use tokio::io::AsyncWriteExt as _;
    let mut stdin = unconfirmed.stdin.take().unwrap();
    stdin.write_all(b"no\n").await.unwrap();
    drop(stdin);
    let out = unconfirmed.wait_with_output().await.unwrap();
    let run = w.record(&["emergency", "billing"], out);
    assert_eq!(run.code, 64, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("publish"),
        "the plan is shown: {}",
        run.stdout
    );
    assert!(run.stderr.contains("not confirmed"), "{}", run.stderr);
    assert_eq!(w.app_fingerprint("Billing_Sync"), before);
    assert!(
        w.json(&["journal", "billing"])
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
}

/// `--all-in-org` rekeys every credential of the org in turn and stops at the first failure,
/// naming the credentials it did not start.
#[tokio::test(flavor = "multi_thread")]
async fn all_in_org_goes_one_by_one_and_stops_at_the_first_failure() {
    let mut w = World::new().await;
    w.import_legacy("billing").await;
    w.import_legacy("billing-eca").await;
    w.sim.inject_fault(
        orgsim::Fault::new(orgsim::FaultKind::DeployFails {
            problem: "the org is locked for maintenance".into(),
        })
        .times(1),
    );
    let failed = w
        .rekey(&emergency(&["--all-in-org", "acme"], &["--json"]))
        .await;
    assert_eq!(failed.code, 5, "{}{}", failed.stdout, failed.stderr);
    let rows: Value = serde_json::from_str(&failed.stdout).unwrap();
    assert_eq!(rows[0]["credential"], "billing");
    assert_eq!(rows[0]["outcome"], "failed");
    assert_eq!(rows[1]["credential"], "billing-eca");
    assert_eq!(rows[1]["outcome"], "not started", "{rows}");

    let done = w.json(&emergency(&["--all-in-org", "acme"], &[])).await;
    assert_eq!(done[0]["outcome"], "rekeyed", "{done}");
    assert_eq!(done[1]["outcome"], "rekeyed", "{done}");
    w.ok(&["verify", "billing"]).await;
    w.ok(&["verify", "billing-eca"]).await;
}

/// The bundle at `path`, 0600, kept for the key-leak scan.
fn bundle_at(w: &mut World, path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no evidence bundle at {}: {e}", path.display()));
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", path.display());
    w.printed.push(text.clone());
    serde_json::from_str(&text).unwrap()
}

/// Every way an emergency ends leaves its evidence bundle, built from the journal: killed after
/// publish and finished by `rekey resume` (with `--evidence-dir`), the bundle holds the reason the
/// emergency was started with, its whole timeline and the completed revocation; the first run
/// honours `--evidence-dir` too.
#[tokio::test(flavor = "multi_thread")]
async fn an_emergency_finished_by_resume_leaves_its_evidence_with_its_reason() {
    let mut w = World::billing_only().await;
    let held = Held::spawn(&w, &emergency(&["billing"], &[]), "publish:done")
        .reached(&mut w)
        .await;
    held.kill(&mut w).await;
    let dir = w.path("incident-42");
    let dir_arg = dir.to_str().unwrap().to_string();
    let resumed = w
        .ok(&["resume", "billing", "--evidence-dir", &dir_arg])
        .await;
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "resume wrote no evidence into {dir_arg} ({e}):\n{}",
                resumed.stderr
            )
        })
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        resumed.stderr.contains(files[0].to_str().unwrap()),
        "resume names the bundle:\n{}",
        resumed.stderr
    );
    let bundle = bundle_at(&mut w, &files[0]);
    assert_eq!(bundle["reason"], REASON, "{bundle:#}");
    assert_eq!(bundle["outcome"], "completed", "{bundle:#}");
    let done = done_steps(&bundle);
    for step in [
        "generate", "publish", "verify", "revoke", "destroy", "finalize",
    ] {
        assert!(done.contains(&step.to_string()), "{step} in {done:?}");
    }
    assert!(bundle["revoked"].is_object(), "{bundle:#}");
    assert!(
        !w.path("evidence").exists(),
        "nothing in the default folder when --evidence-dir is given"
    );

    // A first run with --evidence-dir writes there, named by its rotation.
    let other = w.path("incident-43");
    let mut args = emergency(&["billing"], &["--evidence-dir"]);
    let other_arg = other.to_str().unwrap().to_string();
    args.insert(args.len() - 1, &other_arg);
    let report = w.json(&args).await;
    let path = std::path::PathBuf::from(report[0]["evidence"].as_str().unwrap());
    assert_eq!(path.parent().unwrap(), other, "{report}");
    let rotation = report[0]["rotation_id"].as_str().unwrap();
    assert_eq!(
        path.file_name().unwrap(),
        format!("{rotation}.json").as_str()
    );
    let bundle = bundle_at(&mut w, &path);
    assert_eq!(bundle["reason"], REASON);
    assert_eq!(bundle["outcome"], "completed");
    w.assert_no_key_bytes_leaked();
}

/// A rerun of `emergency` that finishes an interrupted one keeps the reason journaled when it
/// began (the evidence is the incident's, not the rerun's command line).
#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_emergency_keeps_the_journaled_reason_in_its_evidence() {
    let mut w = World::billing_only().await;
    let held = Held::spawn(&w, &emergency(&["billing"], &[]), "verify:begin")
        .reached(&mut w)
        .await;
    held.kill(&mut w).await;
    let report = w
        .json(&["emergency", "billing", "--reason", "finishing it", "--yes"])
        .await;
    assert_eq!(report[0]["outcome"], "rekeyed", "{report}");
    let bundle = evidence(&mut w, &report);
    assert_eq!(bundle["reason"], REASON, "{bundle:#}");
    assert_eq!(bundle["outcome"], "completed");
}

/// `rekey run` (and so each daemon cycle) continues an interrupted emergency like any young
/// rotation, and writes its evidence bundle where `rekey emergency` would, with the reason
/// journaled when it began.
#[tokio::test(flavor = "multi_thread")]
async fn an_emergency_finished_by_run_leaves_its_evidence() {
    let mut w = World::billing_only().await;
    let held = Held::spawn(&w, &emergency(&["billing"], &[]), "verify:begin")
        .reached(&mut w)
        .await;
    held.kill(&mut w).await;
    let run = w.json_any(&["run"]).await;
    assert_eq!(run["credentials"][0]["action"], "rotated", "{run}");
    let journal = w.json(&["journal", "billing"]).await;
    let rotation = journal.as_array().unwrap().last().unwrap()["rotation_id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = w.path(&format!("evidence/{rotation}.json"));
    let bundle = bundle_at(&mut w, &path);
    assert_eq!(bundle["reason"], REASON, "{bundle:#}");
    assert_eq!(bundle["outcome"], "completed", "{bundle:#}");
    assert!(
        done_steps(&bundle).contains(&"revoke".to_string()),
        "{bundle:#}"
    );
    w.assert_no_key_bytes_leaked();
}
