//! Consumer secret rotations through the real binary against the org emulator, beyond the plain
//! rotation (tests/secrets.rs): consumers told in order and the previous pair deleted only after
//! they adopted; an emergency; racing runners; someone else's staged credential; the documented
//! failure modes; import from a file or stdin; what `rekey token` mints during and after a
//! rotation; the same rotation on Vault and AWS stores.

mod scene;
mod secret_scene;
mod world;

use rekey_testkit::moto::{Moto, sdk_config, version_labels};
use rekey_testkit::receiver::Receiver;
use scene::Kind;
use secret_scene::{
    CRED, HOOK_SECRET, SecretScene, add_consumers, add_laggard, fingerprint, webhook,
};
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt as _;
use std::process::Stdio;
use tokio::io::AsyncWriteExt as _;
use world::{Held, World, admin_access_token};

const RUN_AS: &str = "etl-runner@acme.example";
const ADMIN: &str = "rekey-admin@acme.example";

/// Salesforce's answer to a client credentials login with `key`/`secret`: (status, JSON body).
async fn login(w: &World, key: &str, secret: &str) -> (u16, Value) {
    let (status, body) = w.sim.client_credentials_grant(key, secret).await;
    let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, body)
}

/// Asserts that Salesforce refuses the pair with its own error for an unknown consumer key.
async fn assert_refused(w: &World, key: &str, secret: &str, context: &str) {
    let (status, body) = login(w, key, secret).await;
    assert_eq!(
        (status, &body),
        (
            400,
            &json!({"error": "invalid_client_id", "error_description": "client identifier invalid"})
        ),
        "{context}"
    );
}

/// `etl`'s journal as (step, phase, detail).
async fn journal(w: &mut World) -> Vec<(String, String, String)> {
    let journal = w.json(&["journal", CRED]).await;
    journal
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["step"].as_str().unwrap().to_string(),
                e["phase"].as_str().unwrap().to_string(),
                e["detail"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn position(journal: &[(String, String, String)], step: &str, phase: &str) -> usize {
    journal
        .iter()
        .position(|(s, p, _)| s == step && p == phase)
        .unwrap_or_else(|| panic!("no {step} {phase} in {journal:?}"))
}

/// The events a webhook consumer was told: (event, generation, new_fingerprint).
fn events(hook: &Receiver) -> Vec<(String, u64, String)> {
    hook.requests()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| {
            let b = r.json();
            (
                b["event"].as_str().unwrap().to_string(),
                b["generation"].as_u64().unwrap(),
                b["new_fingerprint"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_are_told_in_order_and_the_old_pair_is_deleted_only_after_they_adopted() {
    let mut s = SecretScene::new(Kind::File).await;
    let hook = Receiver::answering(204, "").await;
    add_consumers(
        &s.w,
        "",
        &[
            "name = \"nightly\"\nkind = \"file\"\nkey_path = \"nightly/etl.json\"".to_string(),
            webhook("api", &hook, false),
            "name = \"loader\"\nkind = \"exec\"\ncommand = [\"loader.sh\"]\ndeliver_key = \"file\""
                .to_string(),
        ],
    );
    std::fs::create_dir(s.w.path("nightly")).unwrap();
    // The exec consumer keeps what it was handed (its environment is cleared: absolute paths).
    let dir = s.w.path("");
    let script = format!(
        "#!/bin/sh\ncat \"$REKEY_KEY_FILE\" > {}/loader-$REKEY_EVENT.json\n",
        dir.display()
    );
    std::fs::write(s.w.path("loader.sh"), script).unwrap();
    std::fs::set_permissions(
        s.w.path("loader.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    s.w.env.push(("ETL_HOOK_SECRET".into(), HOOK_SECRET.into()));
    let before = s.observe();

    let run = s.w.ok(&["rotate", CRED]).await;
    let after = s.observe();
    assert_ne!(after.key, before.key);
    let new = fingerprint(&after.key, &after.secret);

    // The file consumer holds the new pair (0600), the webhook heard prepare, then activate.
    let path = s.w.path("nightly/etl.json");
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        file,
        json!({"consumer_key": after.key, "consumer_secret": after.secret})
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The exec consumer was handed the same JSON: PENDING at prepare, CURRENT at activate.
    for event in ["prepare", "activate"] {
        let handed = std::fs::read_to_string(s.w.path(&format!("loader-{event}.json"))).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&handed).unwrap(),
            file,
            "{event}"
        );
    }
    assert_eq!(
        events(&hook),
        [
            ("prepare".to_string(), 2, new.clone()),
            ("activate".to_string(), 2, new.clone())
        ]
    );
    // In the journal's order: prepare before the rotate at Salesforce, activate after promote,
    // the previous pair deleted only after adoption was proven.
    let j = journal(&mut s.w).await;
    assert!(
        position(&j, "prepare", "done") < position(&j, "publish", "begin"),
        "{j:?}"
    );
    assert!(
        position(&j, "promote", "done") < position(&j, "activate", "begin"),
        "{j:?}"
    );
    assert!(
        position(&j, "adopt", "done") < position(&j, "retire", "begin"),
        "{j:?}"
    );
    let retire = &j[position(&j, "retire", "done")].2;
    assert!(
        retire.contains(&format!("previous consumer key {} deleted", before.key)),
        "{retire}"
    );
    assert!(!run.stdout.contains("stays valid for"), "{}", run.stdout);

    assert_refused(&s.w, &before.key, &before.secret, "the previous pair").await;
    assert_eq!(login(&s.w, &after.key, &after.secret).await.0, 200);
    assert!(
        s.observe().staged.is_none(),
        "nothing left staged at Salesforce"
    );
    s.assert_settled(2, false, "adopted").await;
    s.assert_no_leaks("adopted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_consumer_that_never_adopts_and_alert_the_old_pair_stays_valid_and_says_so() {
    let mut s = SecretScene::new(Kind::File).await;
    let before = s.observe();
    let _stubborn = add_laggard(&mut s, &before).await;

    let run = s.w.rekey(&["rotate", CRED]).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("consumer laggard (not adopted within 1s"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout
            .contains("stays valid for 24h (not every consumer adopted the new pair)"),
        "{}",
        run.stdout
    );
    let after = s.observe();
    assert_eq!(
        login(&s.w, &before.key, &before.secret).await.0,
        200,
        "old pair still valid"
    );
    assert_eq!(login(&s.w, &after.key, &after.secret).await.0, 200);
    s.assert_settled(2, true, "unadopted").await;
    s.assert_no_leaks("unadopted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_deletes_the_old_pair_ends_its_sessions_and_writes_the_evidence() {
    let mut s = SecretScene::new(Kind::File).await;
    let old = s.observe();
    let (status, body) = login(&s.w, &old.key, &old.secret).await;
    assert_eq!(status, 200, "{body}");
    let stolen = body["access_token"].as_str().unwrap().to_string();
    let session = s.w.sim.live_sessions(RUN_AS);
    assert_eq!(session.len(), 1, "{session:?}");
    assert_eq!(s.w.sim.limits(&stolen).await.0, 200);

    let report =
        s.w.json(&["emergency", CRED, "--reason", "leak", "--yes"])
            .await;
    assert_eq!(report[0]["outcome"], "rekeyed", "{report}");
    let new = s.observe();
    assert_ne!(new.key, old.key);
    assert_refused(&s.w, &old.key, &old.secret, "the leaked pair").await;
    assert!(
        new.staged.is_none(),
        "the leaked pair is not kept staged: {new:?}"
    );
    let ended =
        s.w.sim
            .sessions()
            .into_iter()
            .find(|x| x.id == session[0].id)
            .unwrap();
    assert_ne!(ended.state, orgsim::SessionState::Live, "{ended:?}");
    assert_eq!(
        s.w.sim.limits(&stolen).await.0,
        401,
        "the stolen token is dead"
    );
    assert_eq!(login(&s.w, &new.key, &new.secret).await.0, 200);

    let path = report[0]["evidence"].as_str().expect("an evidence path");
    let text = std::fs::read_to_string(path).unwrap();
    assert_eq!(
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    s.w.printed.push(text.clone());
    let bundle: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(bundle["reason"], "leak", "{bundle}");
    assert_eq!(bundle["outcome"], "completed", "{bundle}");
    assert_eq!(
        bundle["old_fingerprint"],
        fingerprint(&old.key, &old.secret).as_str()
    );
    assert_eq!(
        bundle["new_fingerprint"],
        fingerprint(&new.key, &new.secret).as_str()
    );

    // The old generation is destroyed: nothing but CURRENT is left anywhere.
    let store = s.store().await;
    assert!(
        store
            .read_generation(CRED, rekey_api::Generation(1))
            .await
            .unwrap()
            .is_none()
    );
    s.assert_settled(2, false, "emergency").await;
    s.assert_no_leaks("emergency");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_runner_is_refused_while_the_first_holds_the_lease_and_changes_nothing() {
    let mut s = SecretScene::new(Kind::File).await;
    let first = Held::spawn(&s.w, &["rotate", CRED], "generate:acted")
        .reached(&mut s.w)
        .await;
    let staged = s.observe();
    assert!(staged.staged.is_some(), "the first runner staged its pair");
    let journal_before = journal(&mut s.w).await;

    let second = s.w.rekey(&["rotate", CRED]).await;
    assert_eq!(second.code, 75, "{}{}", second.stdout, second.stderr);
    assert!(
        second.stderr.contains("rekey rotate on"),
        "names the holder: {}",
        second.stderr
    );
    assert_eq!(s.observe(), staged, "Salesforce unchanged");
    assert_eq!(journal(&mut s.w).await, journal_before, "nothing journaled");

    let run = first.release(&mut s.w).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let stages =
        s.w.sim
            .calls()
            .iter()
            .filter(|c| c.method == "POST" && c.path.ends_with("/staged"))
            .count();
    assert_eq!(stages, 1, "only one staged credential ever existed");
    s.assert_settled(2, true, "raced").await;
    s.assert_no_leaks("raced");
}

/// Stages a pair at Salesforce as another admin tool would: Connect REST, outside rekey.
async fn stage_outside(s: &SecretScene) -> Value {
    let app = s.w.etl_consumer();
    let token = admin_access_token(&s.w).await;
    let url = format!(
        "{}/services/data/v65.0/apps/oauth/credentials/{}/{}/staged",
        s.w.sim.base_url(),
        app.app_id,
        app.consumer_id
    );
    let answer = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 201);
    answer.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn someone_elses_staged_pair_stops_the_rotation_and_is_never_deleted_or_adopted() {
    let mut s = SecretScene::new(Kind::File).await;
    let before = s.observe();
    stage_outside(&s).await;
    let theirs = s.observe().staged.expect("their staged pair");

    let run = s.w.rekey(&["rotate", CRED]).await;
    assert_eq!(run.code, 6, "{}{}", run.stdout, run.stderr);
    for expected in [
        format!("is taken by staged credential {}", theirs.id),
        theirs.key.clone(),
        "someone else may be rotating this app's consumer secret".to_string(),
    ] {
        assert!(
            run.stderr.contains(&expected),
            "names {expected}:\n{}",
            run.stderr
        );
    }
    let app = s.observe();
    assert_eq!(
        app.staged.as_ref(),
        Some(&theirs),
        "their staged pair is untouched"
    );
    assert_eq!(
        (app.key.as_str(), app.secret.as_str()),
        (before.key.as_str(), before.secret.as_str())
    );
    assert_eq!(
        journal(&mut s.w).await,
        [],
        "refused before anything was journaled"
    );

    // Neither finishing nor undoing what the refused run left deletes or adopts their pair.
    let abort = s.w.rekey(&["abort", CRED, "--reason", "theirs"]).await;
    assert!(
        matches!(abort.code, 0 | 64),
        "{}{}",
        abort.stdout,
        abort.stderr
    );
    assert_eq!(
        s.observe().staged.as_ref(),
        Some(&theirs),
        "abort deleted their pair"
    );
    let resume = s.w.rekey(&["resume", CRED]).await;
    assert_ne!(resume.code, 0, "{}{}", resume.stdout, resume.stderr);
    let app = s.observe();
    assert_eq!(
        app.staged.as_ref(),
        Some(&theirs),
        "resume touched their pair"
    );
    assert_eq!(app.key, before.key, "resume rotated their pair to primary");
    let row = s.status().await;
    assert_eq!(row["generation"], 1, "{row}");
    assert!(row["pending_generation"].is_null(), "{row}");
    s.assert_no_leaks("someone else's staged pair");
}

/// Stages a pair at Salesforce as another admin (integration@acme.example, given the two
/// permissions staging needs, logged in through the Billing_Sync app with its key).
async fn stage_as_another_admin(s: &SecretScene) -> orgsim::StagedInfo {
    let user = "integration@acme.example";
    for permission in ["ExternalClientAppDeveloper", "ViewClientSecret"] {
        s.w.sim.set_user_permission(user, permission, true).unwrap();
    }
    let key = std::fs::read_to_string(s.w.path("billing.key")).unwrap();
    let grant = world::jwt_grant(&s.w, "3MVG9BillingSyncConsumerKey0001", user, &key).await;
    let token = grant["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{grant}"));
    let app = s.w.etl_consumer();
    let url = format!(
        "{}/services/data/v65.0/apps/oauth/credentials/{}/{}/staged",
        s.w.sim.base_url(),
        app.app_id,
        app.consumer_id
    );
    let answer = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .json(&json!({}))
        .send();
    assert_eq!(answer.await.unwrap().status().as_u16(), 201);
    s.w.etl_consumer().staged.expect("their staged pair")
}

/// A rotation killed after journaling `generate` but before its stage request, then a pair
/// another admin stages: neither `rekey abort` nor `rekey resume` may delete theirs or rotate it
/// to primary.
async fn killed_before_staging_then_someone_else_stages(then: &str) {
    let mut s = SecretScene::new(Kind::File).await;
    let before = s.observe();
    let held = Held::spawn(&s.w, &["rotate", CRED], "generate:begin")
        .reached(&mut s.w)
        .await;
    held.kill(&mut s.w).await;
    let theirs = stage_as_another_admin(&s).await;
    let args: &[&str] = if then == "abort" {
        &["abort", CRED, "--reason", "probe"]
    } else {
        &["resume", CRED]
    };
    let run = s.w.rekey(args).await;
    let app = s.observe();
    assert_eq!(
        app.staged.as_ref(),
        Some(&theirs),
        "{then} deleted or rotated their pair:\n{}",
        run.stdout
    );
    assert_eq!(
        app.key, before.key,
        "{then} rotated their pair to primary:\n{}",
        run.stdout
    );
}

// A pair staged after the rotation began is this rotation's only when rekey's admin staged it
// (its `createdBy`): abort leaves another admin's staged credential alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_never_deletes_a_pair_someone_else_staged_after_the_rotation_began() {
    killed_before_staging_then_someone_else_stages("abort").await;
}

// Nor does resume adopt it (and rotate to primary a secret someone else also has).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_never_adopts_a_pair_someone_else_staged_after_the_rotation_began() {
    killed_before_staging_then_someone_else_stages("resume").await;
}

/// Runs `rotate etl`, which must fail with `code` saying `says`, and change nothing.
async fn refused_before_anything(s: &mut SecretScene, code: i32, says: &[&str], context: &str) {
    let before = s.observe();
    let run = s.w.rekey(&["rotate", CRED]).await;
    assert_eq!(run.code, code, "{context}\n{}{}", run.stdout, run.stderr);
    for expected in says {
        assert!(
            run.stderr.contains(expected),
            "{context}: says {expected:?}\n{}",
            run.stderr
        );
    }
    assert_eq!(s.observe(), before, "{context}: Salesforce unchanged");
    let row = s.status().await;
    assert_eq!(row["generation"], 1, "{context}: {row}");
    assert!(
        row["open_rotation"].is_null(),
        "{context}: nothing journaled: {row}"
    );
    assert_eq!(journal(&mut s.w).await, [], "{context}: nothing journaled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_failure_modes_change_nothing_and_say_what_to_fix() {
    let mut s = SecretScene::new(Kind::File).await;
    s.w.sim.set_eca_secrets_over_rest(false);
    refused_before_anything(
        &mut s,
        77,
        &["Allow access to External Client App consumer secrets via REST API"],
        "org setting off",
    )
    .await;
    s.w.sim.set_eca_secrets_over_rest(true);

    s.w.sim
        .set_user_permission(ADMIN, "ViewClientSecret", false)
        .unwrap();
    refused_before_anything(&mut s, 77, &["View Client Secret"], "no View Client Secret").await;
    s.w.sim
        .set_user_permission(ADMIN, "ViewClientSecret", true)
        .unwrap();
    s.w.ok(&["rotate", CRED]).await;
    s.assert_settled(2, true, "after the fixes").await;
    s.assert_no_leaks("failure modes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_run_as_user_verification_reads_the_pair_back() {
    // The app's policies name no client credentials run-as user: Salesforce then refuses every
    // client credentials login, so rekey cannot prove the new pair by logging in with it. It
    // proves it by reading the app's primary pair back instead (Target::probe, Proof::ReadBack)
    // and the rotation succeeds; `rekey token` has nothing to mint with and says why.
    let mut w = World::new().await;
    let seed = std::fs::read_to_string(w.path("seed.toml")).unwrap();
    let line = format!("<clientCredentialsFlowUser>{RUN_AS}</clientCredentialsFlowUser>");
    assert!(seed.contains(&line));
    std::fs::write(w.path("seed.toml"), seed.replacen(&line, "", 1)).unwrap();
    w.sim
        .reseed(&orgsim::Seed::from_path(&w.path("seed.toml")).unwrap())
        .unwrap();
    w.sim.set_propagation(0, orgsim::PropagationMode::Either);
    w.use_etl_only("local");
    w.ok(&["import", CRED]).await;
    let before = w.etl_consumer();
    assert_ne!(
        login(&w, &before.key, &before.secret).await.0,
        200,
        "no login without a run-as user"
    );

    let run = w.rekey(&["rotate", CRED, "-v"]).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("read back"), "{}", run.stdout);
    let after = w.etl_consumer();
    assert_ne!(after.key, before.key);
    let row = w.json(&["status", CRED]).await;
    assert_eq!(
        row[0]["fingerprint"],
        fingerprint(&after.key, &after.secret).as_str()
    );
    let token = w.rekey(&["token", CRED, "--no-cache"]).await;
    assert_ne!(token.code, 0, "{}", token.stdout);
    // Salesforce's refusal, and what to change: the app's run-as user.
    assert!(
        token.stderr.contains("no client credentials user enabled"),
        "{}",
        token.stderr
    );
    assert!(
        token.stderr.contains("client credentials run-as user"),
        "{}",
        token.stderr
    );
    for secret in [&before.secret, &after.secret] {
        assert!(
            !w.printed.iter().any(|p| p.contains(secret.as_str())),
            "a secret was printed"
        );
    }
}

/// `rekey import etl` with the pair handed over by `how` ("file" or "stdin"): the run.
async fn import(w: &mut World, how: &str, key: &str, secret: &str) -> world::Run {
    let pair = json!({"consumer_key": key, "consumer_secret": secret}).to_string();
    if how == "file" {
        std::fs::write(w.path("pair.json"), &pair).unwrap();
        std::fs::set_permissions(w.path("pair.json"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        return w
            .rekey(&["import", CRED, "--secret-file", "pair.json"])
            .await;
    }
    let args = ["import", CRED, "--secret-stdin"];
    let mut child = w
        .command(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(pair.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    w.record(&args, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_takes_the_pair_from_a_file_or_stdin_never_argv_and_refuses_a_wrong_one() {
    for how in ["file", "stdin"] {
        let mut w = World::new().await;
        w.use_etl_only("local");
        let app = w.etl_consumer();
        let wrong = import(&mut w, how, &app.key, "not-the-secret").await;
        assert_ne!(
            wrong.code, 0,
            "{how}: a wrong secret\n{}{}",
            wrong.stdout, wrong.stderr
        );
        assert!(
            !w.path("keys").exists() || world::walk(&w.path("keys")).is_empty(),
            "{how}: nothing written: {:?}",
            world::walk(&w.path("keys"))
        );
        let argv = w.rekey(&["import", CRED, "--secret", &app.secret]).await;
        assert_ne!(
            argv.code, 0,
            "{how}: a secret on the command line is refused"
        );
        let run = import(&mut w, how, &app.key, &app.secret).await;
        assert_eq!(run.code, 0, "{how}\n{}{}", run.stdout, run.stderr);
        let row = w.json(&["status", CRED]).await;
        assert_eq!(row[0]["generation"], 1, "{how}: {row}");
        assert_eq!(
            row[0]["fingerprint"],
            fingerprint(&app.key, &app.secret).as_str()
        );
        // The argv attempt is the test's own echo of the secret; every other output is clean.
        let printed: Vec<&String> = w
            .printed
            .iter()
            .filter(|p| !p.starts_with("$ rekey import etl --secret "))
            .collect();
        assert!(
            !printed.iter().any(|p| p.contains(app.secret.as_str())),
            "{how}: printed"
        );
    }
}

/// `rekey token etl --json --no-cache`: (stage, generation).
async fn token(w: &mut World) -> (String, u64) {
    let t = w.json(&["token", CRED, "--no-cache"]).await;
    (
        t["stage"].as_str().unwrap().to_string(),
        t["generation"].as_u64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_mints_at_every_point_of_a_rotation_and_after_retire() {
    let mut s = SecretScene::new(Kind::File).await;
    let mut held = Held::spawn(
        &s.w,
        &["rotate", CRED],
        "stage:done,publish:acted,promote:done,retire:done",
    );
    // What a consumer calling `rekey token` sees at each point: the pair CURRENT holds works
    // until promotion (before the rotate it is primary, after it the Rotated pair), then the
    // new one.
    for (point, expected) in [
        ("stage:done", ("current", 1)),
        ("publish:acted", ("current", 1)),
        ("promote:done", ("current", 2)),
        ("retire:done", ("current", 2)),
    ] {
        held = held.reached(&mut s.w).await;
        assert_eq!(std::fs::read_to_string(&held.file).unwrap(), point);
        let got = token(&mut s.w).await;
        assert_eq!((got.0.as_str(), got.1), expected, "at {point}");
        // Let it go on to the next point (it writes the file again there).
        std::fs::remove_file(&held.file).unwrap();
    }
    let run = held.finish(&mut s.w).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    // After the rotation, nothing deleted: CURRENT mints; after retire, CURRENT still mints.
    assert_eq!(token(&mut s.w).await, ("current".to_string(), 2));
    s.w.ok(&["retire", CRED]).await;
    assert_eq!(token(&mut s.w).await, ("current".to_string(), 2));
    s.assert_settled(2, false, "retired").await;
    s.assert_no_leaks("token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_old_pair_is_deleted_mid_rotation_token_falls_back_to_the_pending_pair() {
    // Someone deletes the Rotated old pair in Setup while the rotation is between the rotate and
    // promotion: CURRENT (the old pair) is refused with invalid_client_id, and `rekey token`
    // moves on to PENDING, Salesforce's primary pair, instead of failing the consumer.
    let mut s = SecretScene::new(Kind::File).await;
    let held = Held::spawn(&s.w, &["rotate", CRED], "publish:done")
        .reached(&mut s.w)
        .await;
    let app = s.observe();
    let old = app.staged.clone().expect("the Rotated old pair");
    let token_ = admin_access_token(&s.w).await;
    let url = format!(
        "{}/services/data/v65.0/apps/oauth/credentials/{}/{}/staged/{}",
        s.w.sim.base_url(),
        app.app_id,
        app.consumer_id,
        old.id
    );
    let deleted = reqwest::Client::new()
        .delete(url)
        .bearer_auth(token_)
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    assert_refused(&s.w, &old.key, &old.secret, "the deleted old pair").await;
    assert_eq!(token(&mut s.w).await, ("pending".to_string(), 2));
    let run = held.release(&mut s.w).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(token(&mut s.w).await, ("current".to_string(), 2));
    s.assert_settled(2, false, "old pair deleted outside").await;
    s.assert_no_leaks("fallback");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_vault_a_rotation_settles_and_retires_like_on_files() {
    let mut s = SecretScene::new(Kind::Vault).await;
    s.w.ok(&["rotate", CRED]).await;
    s.assert_settled(2, true, "vault").await;
    s.w.ok(&["retire", CRED]).await;
    s.assert_settled(2, false, "vault, retired").await;
    s.assert_no_leaks("vault");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_aws_the_staging_labels_follow_the_rotation() {
    let mut s = SecretScene::new(Kind::Aws).await;
    let old = s.observe();
    s.w.ok(&["rotate", CRED]).await;
    let new = s.observe();
    s.assert_settled(2, true, "aws").await;

    let client = aws_sdk_secretsmanager::Client::new(&sdk_config(&Moto::shared().endpoint()).await);
    let name = format!("{}/{CRED}", s.prefix);
    let value = |stage: &'static str| {
        let client = client.clone();
        let name = name.clone();
        async move {
            let out = client
                .get_secret_value()
                .secret_id(name)
                .version_stage(stage)
                .send()
                .await
                .unwrap();
            let v: Value = serde_json::from_str(out.secret_string().unwrap()).unwrap();
            (out.version_id().unwrap().to_string(), v)
        }
    };
    let (current_id, current) = value("AWSCURRENT").await;
    let (previous_id, previous) = value("AWSPREVIOUS").await;
    assert_eq!(
        (&current["consumerKey"], &current["consumerSecret"]),
        (&json!(new.key), &json!(new.secret))
    );
    assert_eq!(
        (&previous["consumerKey"], &previous["consumerSecret"]),
        (&json!(old.key), &json!(old.secret))
    );
    let labels = version_labels(&client, &name).await;
    assert!(
        labels[&current_id].contains(&"AWSCURRENT".to_string()),
        "{labels:?}"
    );
    assert!(
        labels[&previous_id].contains(&"AWSPREVIOUS".to_string()),
        "{labels:?}"
    );
    assert!(
        !labels.values().flatten().any(|l| l == "AWSPENDING"),
        "{labels:?}"
    );
    s.assert_no_leaks("aws");
}

// `rekey run` deletes the previous pair once revoke_previous_after_hours passed, not before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekey_run_deletes_the_previous_pair_only_after_revoke_previous_after_hours() {
    let mut s = SecretScene::new(Kind::File).await;
    let old = s.observe();
    s.w.ok(&["rotate", CRED]).await;
    // 23 hours on, the previous pair is still inside its 24 hours: `rekey run` keeps it.
    s.w.set_clock(23 * 3600);
    let run = s.w.rekey(&["run"]).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        login(&s.w, &old.key, &old.secret).await.0,
        200,
        "kept at 23h\n{}",
        run.stdout
    );
    s.assert_settled(2, true, "23h").await;
    // 25 hours on, it deletes it: refused with Salesforce's own error, nothing left staged.
    s.w.set_clock(25 * 3600);
    let run = s.w.rekey(&["run"]).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_refused(&s.w, &old.key, &old.secret, "deleted at 25h").await;
    s.assert_settled(2, false, "25h").await;
    s.assert_no_leaks("rekey run");
}
