//! Consumers through the real binary against the org emulator: every kind (webhook, exec, file,
//! store) hears `prepare` before the certificate is published and `activate` after promotion, in
//! that order against the journal; a consumer that never adopts the new key rolls the rotation
//! back (app, stores and consumers on the previous key again) or, with `alert`, is reported; a
//! refused `prepare` stops the rotation before the switchover; a process killed at any consumer
//! step finishes on resume.

mod world;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use rekey_testkit::moto::{Moto, sdk_config, version_labels};
use rekey_testkit::openbao::OpenBao;
use rekey_testkit::receiver::Receiver;
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use world::{Held, World, openssl, rekey_api_fingerprint, vault_world, with_aws_store};

const CRED: &str = "billing";
const APP: &str = "Billing_Sync";
const SECRET: &str = "consumer-hook-secret-for-tests";

/// One signed POST the webhook consumer received.
#[derive(Clone, Debug)]
struct Heard {
    at: DateTime<Utc>,
    body: Value,
}

impl Heard {
    fn event(&self) -> (&str, u64) {
        (
            self.body["event"].as_str().unwrap(),
            self.body["generation"].as_u64().unwrap(),
        )
    }
}

#[derive(Default)]
struct ConsumerState {
    heard: Vec<Heard>,
    /// The fingerprint it reports as in use: the last activated one, unless stubborn.
    in_use: Option<String>,
    /// Never takes a new key: keeps reporting the fingerprint it had.
    stubborn: bool,
    bad_signatures: usize,
}

/// A webhook consumer on a free loopback port: checks each POST's signature, adopts the
/// activated fingerprint (unless stubborn) and reports it at `/status`.
struct HookConsumer {
    url: String,
    state: Arc<Mutex<ConsumerState>>,
}

impl HookConsumer {
    async fn start(stubborn: bool, in_use: &str) -> HookConsumer {
        let state = Arc::new(Mutex::new(ConsumerState {
            stubborn,
            in_use: Some(in_use.to_string()),
            ..ConsumerState::default()
        }));
        let app = axum::Router::new()
            .route("/hook", post(hook))
            .route("/status", get(status))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        HookConsumer { url, state }
    }

    fn heard(&self) -> Vec<Heard> {
        let state = self.state.lock().unwrap();
        assert_eq!(state.bad_signatures, 0, "a POST with a bad signature");
        state.heard.clone()
    }

    fn events(&self) -> Vec<(String, u64)> {
        self.heard()
            .iter()
            .map(|h| {
                let (e, g) = h.event();
                (e.to_string(), g)
            })
            .collect()
    }
}

async fn hook(
    State(state): State<Arc<Mutex<ConsumerState>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let mut state = state.lock().unwrap();
    if !rekey_http::verify_signature(
        SECRET.as_bytes(),
        &header(rekey_http::TIMESTAMP_HEADER),
        &body,
        &header(rekey_http::SIGNATURE_HEADER),
        Utc::now(),
        Duration::from_secs(300),
    ) {
        state.bad_signatures += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let body: Value = serde_json::from_slice(&body).unwrap();
    if body["event"] == "activate" && !state.stubborn {
        state.in_use = body["new_fingerprint"].as_str().map(str::to_string);
    }
    state.heard.push(Heard {
        at: Utc::now(),
        body,
    });
    StatusCode::NO_CONTENT
}

async fn status(State(state): State<Arc<Mutex<ConsumerState>>>) -> axum::Json<Value> {
    axum::Json(json!({ "fingerprint": state.lock().unwrap().in_use }))
}

/// The world: `billing` imported, a webhook consumer `api`, an exec consumer `etl` that logs
/// each event and proves the key it is handed, a file consumer `legacy` and a store consumer
/// `reader`, with `extra` added to the credential's table.
struct Scene {
    w: World,
    api: HookConsumer,
    legacy_fingerprint: String,
}

impl Scene {
    async fn new(stubborn: bool, extra: &str, etl_fails_on: Option<&str>) -> Scene {
        Scene::in_world(World::new().await, stubborn, extra, etl_fails_on).await
    }

    /// The scene in `w`, whose config names the store `billing` uses.
    async fn in_world(
        mut w: World,
        stubborn: bool,
        extra: &str,
        etl_fails_on: Option<&str>,
    ) -> Scene {
        w.import_legacy(CRED).await;
        let legacy_fingerprint = w.app_fingerprint(APP);
        let api = HookConsumer::start(stubborn, &legacy_fingerprint).await;
        let dir = w.path("");
        let dir = dir.display();
        // The environment is cleared for the command, so the script knows its folder itself.
        let refuse = etl_fails_on.map_or_else(String::new, |event| {
            format!(
                "if [ \"$REKEY_EVENT\" = {event} ]; then echo \"etl cannot take generation $REKEY_GENERATION: disk full\" >&2; exit 3; fi\n"
            )
        });
        let script = format!(
            "#!/bin/sh\n{refuse}\
             echo \"$REKEY_EVENT $REKEY_GENERATION $REKEY_FINGERPRINT $REKEY_STAGE $(stat -c %a \"$REKEY_KEY_FILE\") $(env | grep -c 'PRIVATE KEY')\" >> {dir}/etl.log\n\
             openssl pkey -in \"$REKEY_KEY_FILE\" -pubout > {dir}/etl-$REKEY_EVENT-$REKEY_GENERATION.pub\n"
        );
        std::fs::write(w.path("etl.sh"), script).unwrap();
        std::fs::set_permissions(w.path("etl.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(w.path("legacy")).unwrap();
        let url = &api.url;
        w.edit_config(|c| {
            let c = c.replacen(
                &format!("app = \"{APP}\"\n"),
                &format!("app = \"{APP}\"\n{extra}"),
                1,
            );
            format!(
                "{c}
[[credentials.billing.consumers]]
name = \"api\"
kind = \"webhook\"
url = \"{url}/hook\"
status_url = \"{url}/status\"
secret_env = \"API_HOOK_SECRET\"
adopt_timeout_secs = 2

[[credentials.billing.consumers]]
name = \"etl\"
kind = \"exec\"
command = [\"etl.sh\"]
deliver_key = \"file\"

[[credentials.billing.consumers]]
name = \"legacy\"
kind = \"file\"
key_path = \"legacy/key.pem\"
cert_path = \"legacy/cert.pem\"

[[credentials.billing.consumers]]
name = \"reader\"
kind = \"store\"
"
            )
        });
        w.env.push(("API_HOOK_SECRET".into(), SECRET.into()));
        Scene {
            w,
            api,
            legacy_fingerprint,
        }
    }

    /// The exec consumer's log: `event generation fingerprint stage key-file-mode key-in-env`.
    fn etl_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.w.path("etl.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// (step, phase) → time, from `rekey journal --json`, for the last rotation.
    async fn journal(&mut self) -> Vec<(String, String, DateTime<Utc>, String)> {
        let journal = self.w.json(&["journal", CRED]).await;
        let entries = journal["entries"]
            .as_array()
            .or_else(|| journal.as_array())
            .unwrap_or_else(|| panic!("journal JSON: {journal}"))
            .clone();
        let last = entries.last().unwrap()["rotation_id"].clone();
        entries
            .iter()
            .filter(|e| e["rotation_id"] == last)
            .map(|e| {
                (
                    e["step"].as_str().unwrap().to_string(),
                    e["phase"].as_str().unwrap().to_string(),
                    e["at"].as_str().unwrap().parse().unwrap(),
                    e["detail"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }
}

fn at(
    journal: &[(String, String, DateTime<Utc>, String)],
    step: &str,
    phase: &str,
) -> DateTime<Utc> {
    journal
        .iter()
        .find(|(s, p, ..)| s == step && p == phase)
        .unwrap_or_else(|| panic!("no {step} {phase} in {journal:#?}"))
        .2
}

fn done_steps(journal: &[(String, String, DateTime<Utc>, String)]) -> Vec<&str> {
    journal
        .iter()
        .filter(|(_, p, ..)| p == "done")
        .map(|(s, ..)| s.as_str())
        .collect()
}

/// The SubjectPublicKeyInfo of a certificate file, as `openssl pkey -pubout` prints a key's.
fn cert_public_key(w: &World, cert: &str) -> Vec<u8> {
    openssl(&[
        "x509",
        "-in",
        w.path(cert).to_str().unwrap(),
        "-noout",
        "-pubkey",
    ])
    .stdout
}

fn app_pem(w: &World) -> String {
    w.sim.app_certificate_pem(APP).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_hears_prepare_before_the_switchover_and_activate_after_promotion() {
    let mut s = Scene::new(false, "", None).await;
    let plan = s.w.ok(&["plan", CRED]).await.stdout;
    for words in [
        "tell api, etl, legacy, reader that generation 2 is coming (prepare)",
        "tell api, etl, legacy, reader to use generation 2 now (activate)",
        "up to 300s each); else roll the rotation back",
    ] {
        assert!(plan.contains(words), "{words:?} not in:\n{plan}");
    }

    s.w.ok(&["rotate", CRED]).await;
    let new_fingerprint = s.w.app_fingerprint(APP);
    assert_ne!(new_fingerprint, s.legacy_fingerprint);
    let journal = s.journal().await;
    assert_eq!(
        done_steps(&journal),
        [
            "generate", "stage", "prepare", "publish", "verify", "promote", "activate", "adopt",
            "finalize"
        ]
    );

    // The webhook: prepare (PENDING) before the publish began, activate after promotion.
    let heard = s.api.heard();
    assert_eq!(
        s.api.events(),
        [("prepare".into(), 2), ("activate".into(), 2)]
    );
    for h in &heard {
        assert_eq!(h.body["credential"], CRED);
        assert_eq!(h.body["new_fingerprint"], new_fingerprint.as_str());
        assert_eq!(h.body["old_fingerprint"], s.legacy_fingerprint.as_str());
    }
    assert!(
        heard[0].body["read_from"]
            .as_str()
            .unwrap()
            .ends_with("billing PENDING"),
        "{:?}",
        heard[0].body
    );
    assert!(
        heard[1].body["read_from"]
            .as_str()
            .unwrap()
            .ends_with("billing CURRENT")
    );
    assert!(
        heard[0].at <= at(&journal, "publish", "begin"),
        "prepare came after the publish began"
    );
    assert!(
        heard[1].at >= at(&journal, "promote", "done"),
        "activate came before promotion"
    );
    let adopt = &journal
        .iter()
        .find(|(s, p, ..)| s == "adopt" && p == "done")
        .unwrap()
        .3;
    for adopted in [
        format!("api: 127.0.0.1 reports {new_fingerprint} (generation 2)"),
        "etl: ".to_string(),
        "legacy: ".to_string(),
        "reader: reads CURRENT from the store".to_string(),
    ] {
        assert!(adopt.contains(&adopted), "{adopted:?} not in {adopt}");
    }

    // The command: handed the PENDING key, then the CURRENT one, each in a 0600 file, never in
    // its environment; the key it got is the one the app's certificate is for.
    assert_eq!(
        s.etl_log(),
        [
            format!("prepare 2 {new_fingerprint} pending 600 0"),
            format!("activate 2 {new_fingerprint} current 600 0"),
        ]
    );
    std::fs::write(s.w.path("app.crt"), app_pem(&s.w)).unwrap();
    let app_key = cert_public_key(&s.w, "app.crt");
    for event in ["prepare", "activate"] {
        assert_eq!(
            std::fs::read(s.w.path(&format!("etl-{event}-2.pub"))).unwrap(),
            app_key
        );
    }

    // The files: the new certificate and its key (0600).
    assert_eq!(
        rekey_api_fingerprint(&std::fs::read_to_string(s.w.path("legacy/cert.pem")).unwrap()),
        new_fingerprint
    );
    let key_file = s.w.path("legacy/key.pem");
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let key_pub = openssl(&["pkey", "-in", key_file.to_str().unwrap(), "-pubout"]).stdout;
    assert_eq!(key_pub, app_key);
    s.w.assert_no_key_bytes_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_never_adopts_rolls_everything_back_consumers_included() {
    let mut s = Scene::new(true, "", None).await;
    let run = s.w.rekey(&["rotate", CRED]).await;
    assert_eq!(run.code, 7, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("rolled back") && run.stderr.contains("api (not adopted within 2s"),
        "{}",
        run.stderr
    );
    // The app trusts the old key again and every store has it CURRENT.
    assert_eq!(s.w.app_fingerprint(APP), s.legacy_fingerprint);
    assert_eq!(s.w.current_fingerprint(CRED).await, s.legacy_fingerprint);
    s.w.ok(&["verify", CRED]).await;
    let journal = s.journal().await;
    assert_eq!(
        done_steps(&journal),
        [
            "generate", "stage", "prepare", "publish", "verify", "promote", "activate", "restore",
            "revert", "recall", "close"
        ]
    );
    assert!(
        journal
            .iter()
            .any(|(s, p, ..)| s == "adopt" && p == "failed")
    );

    // Every consumer was told to go back to generation 1, after the stores were reverted.
    let heard = s.api.heard();
    assert_eq!(
        s.api.events(),
        [
            ("prepare".into(), 2),
            ("activate".into(), 2),
            ("activate".into(), 1)
        ]
    );
    assert_eq!(
        heard[2].body["new_fingerprint"],
        s.legacy_fingerprint.as_str()
    );
    assert_eq!(
        heard[2].body["old_fingerprint"],
        heard[1].body["new_fingerprint"]
    );
    assert!(heard[2].at >= at(&journal, "revert", "done"));
    let log = s.etl_log();
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(
        log[2].starts_with(&format!("activate 1 {} current", s.legacy_fingerprint)),
        "{log:?}"
    );
    let legacy_key = cert_public_key(&s.w, "billing.crt");
    assert_eq!(
        std::fs::read(s.w.path("etl-activate-1.pub")).unwrap(),
        legacy_key
    );
    assert_eq!(
        rekey_api_fingerprint(&std::fs::read_to_string(s.w.path("legacy/cert.pem")).unwrap()),
        s.legacy_fingerprint
    );
    let key_file = s.w.path("legacy/key.pem");
    assert_eq!(
        openssl(&["pkey", "-in", key_file.to_str().unwrap(), "-pubout"]).stdout,
        legacy_key
    );
    s.w.assert_no_key_bytes_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_alert_the_new_key_stays_and_the_laggard_is_reported_on_every_channel() {
    let channel = Receiver::answering(200, "ok").await;
    let mut s = Scene::new(
        true,
        "on_adoption_failure = \"alert\"\nrotate_every_days = 1\n",
        None,
    )
    .await;
    std::fs::write(s.w.path("hook.secret"), "alert-secret").unwrap();
    let url = channel.url("/alerts");
    s.w.edit_config(|c| {
        format!("{c}\n[alerts]\n[alerts.channels.ops]\nkind = \"webhook\"\nurl = \"{url}\"\nsecret_file = \"hook.secret\"\nmin_severity = \"warning\"\n")
    });
    let run = s.w.rekey(&["rotate", CRED]).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("warning: billing: consumer api (not adopted within 2s"),
        "{}",
        run.stderr
    );
    let new_fingerprint = s.w.app_fingerprint(APP);
    assert_ne!(new_fingerprint, s.legacy_fingerprint);
    assert_eq!(s.w.current_fingerprint(CRED).await, new_fingerprint);
    assert_eq!(
        s.api.events(),
        [("prepare".into(), 2), ("activate".into(), 2)]
    );
    let journal = s.journal().await;
    assert_eq!(done_steps(&journal).last(), Some(&"finalize"));
    let adopt = &journal
        .iter()
        .find(|(s, p, ..)| s == "adopt" && p == "done")
        .unwrap()
        .3;
    assert!(adopt.contains("NOT adopted (adopt): api"), "{adopt}");

    let sent = channel.single().json();
    assert_eq!(sent["type"], "rotation");
    assert_eq!(sent["outcome"], "unadopted");
    assert!(
        sent["summary"]
            .as_str()
            .unwrap()
            .contains("NOT adopted by api"),
        "{sent}"
    );

    // Two days on, `rekey run` rotates again (key age) and its summary names the laggard.
    s.w.set_clock(2 * 86_400);
    let run = s.w.json_any(&["run"]).await;
    let row = run["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["check"]["credential"] == CRED)
        .unwrap_or_else(|| panic!("{run}"))
        .clone();
    assert_eq!(row["action"], "rotated", "{run}");
    let unadopted = row["unadopted"]
        .as_array()
        .unwrap_or_else(|| panic!("{run}"));
    assert_eq!(unadopted.len(), 1, "{run}");
    assert!(
        unadopted[0]
            .as_str()
            .unwrap()
            .starts_with("api (not adopted within 2s"),
        "{run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_prepare_stops_before_the_switchover_and_abort_recalls_the_others() {
    let mut s = Scene::new(false, "", Some("prepare")).await;
    let run = s.w.rekey(&["rotate", CRED]).await;
    assert_eq!(run.code, 5, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("1 consumer refused prepare before the switchover: etl:")
            && run.stderr.contains("disk full")
            && run.stderr.contains("nothing was published"),
        "{}",
        run.stderr
    );
    assert_eq!(s.w.app_fingerprint(APP), s.legacy_fingerprint);
    assert_eq!(s.api.events(), [("prepare".into(), 2)]);

    s.w.ok(&["abort", CRED, "--reason", "etl is out of disk"])
        .await;
    assert_eq!(s.w.app_fingerprint(APP), s.legacy_fingerprint);
    assert_eq!(
        s.api.events(),
        [("prepare".into(), 2), ("activate".into(), 1)]
    );
    let journal = s.journal().await;
    let recall = &journal
        .iter()
        .find(|(s, p, ..)| s == "recall" && p == "done")
        .unwrap()
        .3;
    assert!(
        recall.contains("api:") && recall.contains("etl:"),
        "{recall}"
    );
    assert_eq!(
        s.etl_log(),
        [format!("activate 1 {} current 600 0", s.legacy_fingerprint)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_never_rolls_back_for_a_consumer_and_says_who_lags() {
    let mut s = Scene::new(true, "", None).await;
    let run =
        s.w.rekey(&[
            "emergency",
            CRED,
            "--reason",
            "key in a public gist",
            "--yes",
        ])
        .await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("consumer api (not adopted"),
        "{}",
        run.stderr
    );
    let new_fingerprint = s.w.app_fingerprint(APP);
    assert_ne!(new_fingerprint, s.legacy_fingerprint);
    assert_eq!(s.w.current_fingerprint(CRED).await, new_fingerprint);
    let journal = s.journal().await;
    let steps = done_steps(&journal);
    assert_eq!(
        steps,
        [
            "generate", "stage", "prepare", "publish", "verify", "revoke", "promote", "activate",
            "adopt", "destroy", "finalize"
        ]
    );
}

/// Killed with SIGKILL at `point`, then `rekey resume`: the rotation ends as `ending` and every
/// consumer was last told about the generation that is CURRENT.
async fn killed_at(point: &str, stubborn: bool) {
    let mut s = Scene::new(stubborn, "", None).await;
    let held = Held::spawn(&s.w, &["rotate", CRED], point)
        .reached(&mut s.w)
        .await;
    let killed = held.kill(&mut s.w).await;
    assert_eq!(killed.code, -1, "killed at {point}");
    let run = s.w.rekey(&["resume", CRED]).await;
    let expected = if stubborn { 7 } else { 0 };
    assert_eq!(
        run.code, expected,
        "resume after a kill at {point}:\n{}{}",
        run.stdout, run.stderr
    );
    let current = s.w.current_fingerprint(CRED).await;
    assert_eq!(s.w.app_fingerprint(APP), current, "after {point}");
    assert_eq!(current == s.legacy_fingerprint, stubborn, "after {point}");
    let events = s.api.events();
    let generation = if stubborn { 1 } else { 2 };
    assert_eq!(
        events.last(),
        Some(&("activate".to_string(), generation)),
        "after {point}: {events:?}"
    );
    assert_eq!(
        events[0],
        ("prepare".to_string(), 2),
        "after {point}: {events:?}"
    );
    let log = s.etl_log();
    assert!(
        log.last()
            .unwrap()
            .starts_with(&format!("activate {generation} {current}")),
        "after {point}: {log:?}"
    );
    assert_eq!(
        rekey_api_fingerprint(&std::fs::read_to_string(s.w.path("legacy/cert.pem")).unwrap()),
        current
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_preparing_the_consumers_resume_finishes() {
    killed_at("prepare:acted", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_activating_the_consumers_resume_finishes() {
    killed_at("activate:acted", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_waiting_for_adoption_resume_finishes() {
    killed_at("adopt:begin", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_recalling_the_consumers_resume_finishes_the_rollback() {
    killed_at("recall:begin", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_vault_consumers_are_handed_the_staged_key_and_then_the_current_one() {
    let (w, _) = vault_world(OpenBao::shared()).await;
    let mut s = Scene::in_world(w, false, "", None).await;
    s.w.ok(&["rotate", CRED]).await;
    let new_fingerprint = s.w.app_fingerprint(APP);
    assert_ne!(new_fingerprint, s.legacy_fingerprint);
    assert_eq!(
        s.api.events(),
        [("prepare".into(), 2), ("activate".into(), 2)]
    );
    let read_from = s.api.heard()[0].body["read_from"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        read_from.starts_with("vault(") && read_from.ends_with("billing PENDING"),
        "{read_from}"
    );
    assert_eq!(
        s.etl_log(),
        [
            format!("prepare 2 {new_fingerprint} pending 600 0"),
            format!("activate 2 {new_fingerprint} current 600 0"),
        ]
    );
    std::fs::write(s.w.path("app.crt"), app_pem(&s.w)).unwrap();
    let app_key = cert_public_key(&s.w, "app.crt");
    assert_eq!(
        std::fs::read(s.w.path("etl-prepare-2.pub")).unwrap(),
        app_key
    );
    s.w.assert_no_key_bytes_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_aws_a_laggard_rolls_the_staging_labels_and_the_consumers_back() {
    let moto = Moto::shared();
    let mut w = World::new().await;
    let prefix = with_aws_store(&mut w, moto);
    w.edit_config(|c| c.replacen("store = \"local\"", "store = \"aws\"", 1));
    let mut s = Scene::in_world(w, true, "", None).await;
    let run = s.w.rekey(&["rotate", CRED]).await;
    assert_eq!(run.code, 7, "{}{}", run.stdout, run.stderr);
    assert_eq!(s.w.app_fingerprint(APP), s.legacy_fingerprint);
    assert_eq!(s.w.current_fingerprint(CRED).await, s.legacy_fingerprint);
    let status = s.w.json(&["status", CRED]).await;
    assert_eq!(status[0]["generation"], 1, "{status}");
    assert!(status[0]["pending_generation"].is_null(), "{status}");
    // The labels themselves: AWSCURRENT back on the imported version, no AWSPENDING left.
    let client = aws_sdk_secretsmanager::Client::new(&sdk_config(&moto.endpoint()).await);
    let secret = format!("{prefix}/billing");
    let labels: Vec<String> = version_labels(&client, &secret)
        .await
        .into_values()
        .flatten()
        .collect();
    assert_eq!(
        labels.iter().filter(|l| *l == "AWSCURRENT").count(),
        1,
        "{labels:?}"
    );
    assert!(!labels.iter().any(|l| l == "AWSPENDING"), "{labels:?}");
    let current = client
        .get_secret_value()
        .secret_id(&secret)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .unwrap();
    let value: Value = serde_json::from_str(current.secret_string().unwrap()).unwrap();
    assert_eq!(
        rekey_api_fingerprint(value["certificate"].as_str().unwrap()),
        s.legacy_fingerprint
    );
    assert_eq!(
        s.api.events(),
        [
            ("prepare".into(), 2),
            ("activate".into(), 2),
            ("activate".into(), 1)
        ]
    );
    assert_eq!(
        rekey_api_fingerprint(&std::fs::read_to_string(s.w.path("legacy/cert.pem")).unwrap()),
        s.legacy_fingerprint
    );
}

/// An exec consumer that echoes pieces of the key it was handed to stderr and fails: its stderr
/// tail is quoted (error, stderr, journal) with every piece elided, whatever its length — whole
/// body lines, the short last body line alone, and a 9-character run inside other text. The
/// pieces are chosen on purpose, so the hard case is there on every run whatever the random key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_echoes_the_key_never_gets_a_piece_of_it_quoted() {
    let mut w = World::new().await;
    w.drop_credential("billing-eca");
    w.import_legacy(CRED).await;
    let dir = w.path("");
    let dir = dir.display();
    let script = format!(
        "#!/bin/sh\n\
         body() {{ grep -v -- ----- \"$REKEY_KEY_FILE\"; }}\n\
         last=$(body | tail -1); run=$(body | sed -n 3p | cut -c20-28)\n\
         printf '%s\\n%s\\n' \"$last\" \"$run\" > {dir}/pieces.txt\n\
         body | head -2 >&2\n\
         echo \"$last\" >&2\n\
         echo \"etl: bad token=$run in the config\" >&2\n\
         echo 'etl cannot load the key' >&2\n\
         exit 3\n"
    );
    std::fs::write(w.path("leaky.sh"), script).unwrap();
    std::fs::set_permissions(w.path("leaky.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    w.edit_config(|c| {
        format!(
            "{c}
[[credentials.billing.consumers]]
name = \"etl\"
kind = \"exec\"
command = [\"leaky.sh\"]
deliver_key = \"file\"
"
        )
    });
    let run = w.rekey(&["rotate", CRED]).await;
    assert_eq!(run.code, 5, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("etl cannot load the key") && run.stderr.contains("[elided]"),
        "the tail is quoted, with the key lines elided:\n{}",
        run.stderr
    );
    let json = w.rekey(&["--json", "journal", CRED]).await;
    let pieces = std::fs::read_to_string(w.path("pieces.txt")).unwrap();
    let pieces: Vec<&str> = pieces.lines().collect();
    assert!(
        pieces.len() == 2 && pieces[1].len() == 9,
        "the script printed its pieces: {pieces:?}"
    );
    let journal = std::fs::read_to_string(w.path("keys/billing/journal.jsonl")).unwrap();
    for text in [&run.stdout, &run.stderr, &json.stdout, &journal] {
        for piece in &pieces {
            assert!(!text.contains(piece), "{piece:?} quoted in:\n{text}");
        }
    }
    w.assert_no_key_bytes_leaked();
}
