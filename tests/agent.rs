//! `rekey agent` through the real binary against the org emulator: tokens over a Unix socket
//! (mode 0660) and over loopback HTTP with a bearer secret (401 without it), rotations followed
//! without a restart (a token whose key left the store dropped, no failed mint while a
//! certificate change propagates), a consumer secret through client credentials, and SIGTERM
//! stopping it with exit 0 and its socket removed, no token or key in its logs; with the key in
//! custody (OpenBao transit, moto KMS) too.

mod scene;
mod world;

use orgsim::PropagationMode;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use world::{Held, World};

const CRED: &str = "billing";
const APP: &str = "Billing_Sync";
/// The consumer key of Billing_Sync in the demo seed.
const CONSUMER_KEY: &str = "3MVG9BillingSyncConsumerKey0001";
const BEARER: &str = "agent-bearer-for-tests-7f3a";
/// Longer than any test: the propagation window stays open until the test closes it.
const WINDOW_SECS: u64 = 3600;

/// A world with `billing` imported, its consumer key in the config, and `[agent]` as `agent`
/// (its lines) serving billing only.
async fn world(agent: &str) -> World {
    let mut w = World::new().await;
    w.import_legacy(CRED).await;
    serve(&w, agent);
    w
}

/// `w`'s config with billing's consumer key and `[agent]` as `agent` (its lines) serving billing
/// only.
fn serve(w: &World, agent: &str) {
    w.edit_config(|c| {
        c.replacen(
            &format!("app = \"{APP}\"\n"),
            &format!("app = \"{APP}\"\nconsumer_key = \"{CONSUMER_KEY}\"\n"),
            1,
        ) + &format!("\n[agent]\ncredentials = [\"{CRED}\"]\n{agent}\n")
    });
}

/// A running `rekey -vv agent`, its stdout and stderr in `agent.log`.
struct Agent {
    child: tokio::process::Child,
    log: PathBuf,
    /// `unix:PATH` or `http://ADDRESS`, as it said.
    at: String,
}

impl Agent {
    async fn start(w: &World) -> Agent {
        Agent::start_serving(w, CRED).await
    }

    /// Starts it and waits until it says it serves `credential`.
    async fn start_serving(w: &World, credential: &str) -> Agent {
        let log = w.path("agent.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = w
            .command(&["-vv", "agent"])
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        let mut agent = Agent {
            child,
            log,
            at: String::new(),
        };
        let ready = format!("rekey agent: serving tokens for {credential} on ");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let text = agent.log_text();
            if let Some(at) = text.lines().find_map(|l| l.strip_prefix(ready.as_str())) {
                agent.at = at.trim().to_string();
                return agent;
            }
            if let Some(status) = agent.child.try_wait().unwrap() {
                panic!("the agent ended ({status}) before serving:\n{text}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the agent never said it serves:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET path` with `bearer` (if any): (status, body).
    async fn get(&self, path: &str, bearer: Option<&str>) -> (u16, String) {
        if let Some(socket) = self.at.strip_prefix("unix:") {
            let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
            request(stream, path, bearer).await
        } else {
            let address = self.at.strip_prefix("http://").unwrap();
            let stream = tokio::net::TcpStream::connect(address).await.unwrap();
            request(stream, path, bearer).await
        }
    }

    /// A token for `credential`, which must be served: its JSON.
    async fn token(&self, credential: &str, bearer: Option<&str>) -> Value {
        let (status, body) = self.get(&format!("/v1/token/{credential}"), bearer).await;
        assert_eq!(status, 200, "{body}");
        let json: Value = serde_json::from_str(&body).unwrap();
        assert!(!json["access_token"].as_str().unwrap().is_empty(), "{json}");
        json
    }

    /// SIGTERM; the agent must exit 0 and say it stopped. Its log.
    async fn stop(mut self) -> String {
        let pid = self.child.id().unwrap().to_string();
        let kill = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(kill.success());
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the agent stops within 30 s of SIGTERM")
            .unwrap();
        let log = self.log_text();
        assert_eq!(status.code(), Some(0), "{log}");
        assert!(log.contains("rekey agent: stopped"), "{log}");
        log
    }
}

/// One HTTP/1.1 request on `stream`, the connection closed after: (status, body).
async fn request(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    path: &str,
    bearer: Option<&str>,
) -> (u16, String) {
    let auth = bearer
        .map(|b| format!("Authorization: Bearer {b}\r\n"))
        .unwrap_or_default();
    let head = format!("GET {path} HTTP/1.1\r\nHost: agent\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// The stage and generation a token answer names.
fn origin(json: &Value) -> (&str, u64) {
    (
        json["stage"].as_str().unwrap(),
        json["generation"].as_u64().unwrap(),
    )
}

/// The value of the metric sample `sample` (`name{labels}`) in `metrics`.
fn metric(metrics: &str, sample: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {sample} in:\n{metrics}"))
}

/// Asserts that none of `tokens` (nor any key) is in the agent's `log`.
fn no_secret_in(w: &mut World, log: String, tokens: &[String]) {
    for token in tokens {
        assert!(
            !log.contains(token.as_str()),
            "a token in the agent's log:\n{log}"
        );
    }
    w.printed.push(log);
    w.assert_no_key_bytes_leaked();
}

#[tokio::test]
async fn on_a_unix_socket_it_serves_held_tokens_drops_them_with_their_key_and_stops_on_sigterm() {
    let mut w = world("socket = \"agent.sock\"\nrefresh_secs = 1").await;
    let agent = Agent::start(&w).await;
    let socket = w.path("agent.sock");
    assert_eq!(agent.at, format!("unix:{}", socket.display()));
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660, "socket mode {:o}", mode & 0o777);

    let first = agent.token(CRED, None).await;
    assert_eq!(origin(&first), ("current", 1));
    assert_eq!(first["cached"], false);
    assert!(first["expires_at"].as_str().is_some(), "{first}");
    // The certificate's fingerprint, as `rekey token` gives it; nothing of the key.
    assert_eq!(
        first["fingerprint"].as_str().unwrap(),
        w.current_fingerprint(CRED).await
    );
    assert!(first.get("key").is_none() && first.get("private_key").is_none());
    // Held in memory: the same token, and no second grant at Salesforce.
    let grants = |w: &World| {
        w.sim
            .calls()
            .iter()
            .filter(|c| c.path == "/services/oauth2/token")
            .count()
    };
    let before = grants(&w);
    let again = agent.token(CRED, None).await;
    assert_eq!(again["cached"], true);
    assert_eq!(again["access_token"], first["access_token"]);
    assert_eq!(grants(&w), before);

    // A credential it does not serve, configured or not: 404 naming it.
    for name in ["billing-eca", "nope"] {
        let (status, body) = agent.get(&format!("/v1/token/{name}"), None).await;
        assert_eq!(status, 404, "{body}");
        assert!(
            body.contains(&format!("serves no credential '{name}'")),
            "{body}"
        );
    }

    // Two rotations, no restart: after the second the key of generation 1 has left the store,
    // so its token is dropped and the next request gets one minted with generation 3.
    w.ok(&["rotate", CRED]).await;
    w.ok(&["rotate", CRED]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let after = loop {
        let json = agent.token(CRED, None).await;
        if json["generation"] == 3 {
            break json;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent still hands out {json:?} after two rotations:\n{}",
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(origin(&after), ("current", 3));

    let (status, metrics) = agent.get("/metrics", None).await;
    assert_eq!(status, 200);
    let of = |name: &str| metric(&metrics, &format!("{name}{{credential=\"billing\"}}"));
    assert!(of("rekey_agent_mints_total") >= 2.0, "{metrics}");
    assert!(of("rekey_agent_cache_hits_total") >= 1.0, "{metrics}");
    assert!(of("rekey_agent_tokens_dropped_total") >= 1.0, "{metrics}");
    assert_eq!(of("rekey_agent_mint_failures_total"), 0.0, "{metrics}");

    let log = agent.stop().await;
    assert!(!socket.exists(), "the socket is left behind");
    let tokens = [&first, &after].map(|j| j["access_token"].as_str().unwrap().to_string());
    no_secret_in(&mut w, log, &tokens);
}

#[tokio::test]
async fn over_loopback_http_only_the_bearer_gets_a_token() {
    let mut w = world("listen = \"127.0.0.1:0\"\nbearer_file = \"agent.bearer\"").await;
    let bearer = w.path("agent.bearer");
    std::fs::write(&bearer, format!("{BEARER}\n")).unwrap();
    // A bearer file others could read is refused, and nothing is served.
    std::fs::set_permissions(&bearer, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = w.rekey(&["agent"]).await;
    assert_eq!(refused.code, 64, "{}{}", refused.stdout, refused.stderr);
    assert!(
        refused
            .stderr
            .contains("agent.bearer: its mode is 0644, not 0600"),
        "{}",
        refused.stderr
    );
    std::fs::set_permissions(&bearer, std::fs::Permissions::from_mode(0o600)).unwrap();

    let agent = Agent::start(&w).await;
    assert!(agent.at.starts_with("http://127.0.0.1:"), "{}", agent.at);
    for (path, bearer) in [
        ("/v1/token/billing", None),
        ("/v1/token/billing", Some("wrong")),
        ("/v1/token/billing", Some("")),
        ("/v1/token/nope", None),
        ("/metrics", None),
        ("/metrics", Some(&BEARER[..BEARER.len() - 1])),
    ] {
        let (status, body) = agent.get(path, bearer).await;
        assert_eq!((status, body.as_str()), (401, ""), "{path} with {bearer:?}");
    }
    let token = agent.token(CRED, Some(BEARER)).await;
    assert_eq!(origin(&token), ("current", 1));
    let (status, body) = agent.get("/v1/token/nope", Some(BEARER)).await;
    assert_eq!(status, 404, "{body}");
    let (status, metrics) = agent.get("/metrics", Some(BEARER)).await;
    assert_eq!(status, 200);
    assert_eq!(
        metric(&metrics, "rekey_agent_mints_total{credential=\"billing\"}"),
        1.0
    );

    let log = agent.stop().await;
    assert!(!log.contains(BEARER), "the bearer in the log:\n{log}");
    let tokens = [token["access_token"].as_str().unwrap().to_string()];
    no_secret_in(&mut w, log, &tokens);
}

/// Requests tokens through `agent` until `stop`, every 20 ms: each answer's (status, body).
async fn request_until(
    agent: &Agent,
    stop: &AtomicBool,
    answered: &AtomicUsize,
) -> Vec<(u16, String)> {
    let mut answers = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        answers.push(agent.get("/v1/token/billing", None).await);
        answered.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    answers
}

/// Waits until the held `rotation` waits at `point`.
async fn held_at(rotation: &mut Held, point: &str) {
    for _ in 0..3000 {
        if std::fs::read_to_string(&rotation.file).is_ok_and(|p| p == point) {
            return;
        }
        assert!(
            rotation.child.try_wait().unwrap().is_none(),
            "the rotation ended before {point}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the rotation never reached {point}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_mint_through_the_agent_fails_while_a_rotation_propagates() {
    no_mint_fails_while_a_rotation_propagates(world("socket = \"agent.sock\"").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_mint_fails_while_a_rotation_of_a_key_in_transit_propagates() {
    let w = scene::Scene::new(scene::Kind::VaultTransit).await.w;
    serve(&w, "socket = \"agent.sock\"");
    no_mint_fails_while_a_rotation_propagates(w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_mint_fails_while_a_rotation_of_a_key_in_kms_propagates() {
    let w = scene::Scene::new(scene::Kind::AwsKms).await.w;
    serve(&w, "socket = \"agent.sock\"");
    no_mint_fails_while_a_rotation_propagates(w).await;
}

/// Two consumers ask the agent of `w` (serving billing on a socket) for tokens every 20 ms while
/// billing rotates through a propagation window in which Salesforce checks each grant against
/// the old or the new certificate at random: not one mint fails, and all three stages sign.
async fn no_mint_fails_while_a_rotation_propagates(mut w: World) {
    // token_cache_secs = 0: every request is a mint, so every request meets the rotation.
    w.edit_config(|c| {
        c.replacen(
            &format!("consumer_key = \"{CONSUMER_KEY}\"\n"),
            &format!("consumer_key = \"{CONSUMER_KEY}\"\ntoken_cache_secs = 0\n"),
            1,
        )
    });
    // Each grant is checked against only the old or only the new certificate, at random.
    w.sim.set_propagation(WINDOW_SECS, PropagationMode::Random);
    let agent = Agent::start(&w).await;
    let stop = AtomicBool::new(false);
    let answered = AtomicUsize::new(0);
    let consumers =
        futures_util::future::join_all((0..2).map(|_| request_until(&agent, &stop, &answered)));
    let rotating = async {
        world::grew_by(&answered, 6, "asking").await;
        let mut rotation = Held::spawn(&w, &["rotate", CRED], "publish:done,promote:done");
        held_at(&mut rotation, "publish:done").await;
        world::grew_by(&answered, 30, "asking").await;
        std::fs::remove_file(&rotation.file).unwrap();
        held_at(&mut rotation, "promote:done").await;
        world::grew_by(&answered, 30, "asking").await;
        std::fs::remove_file(&rotation.file).unwrap();
        rotation
    };
    let (answers, rotation) = tokio::join!(consumers, async {
        let rotation = rotating.await;
        let status = rotation.child.wait_with_output();
        let out = status.await.unwrap();
        world::grew_by(&answered, 6, "asking").await;
        stop.store(true, Ordering::SeqCst);
        out
    });
    assert!(rotation.status.success(), "the rotation failed");
    let mut stages = std::collections::BTreeMap::<String, usize>::new();
    let mut tokens = Vec::new();
    for (status, body) in answers.into_iter().flatten() {
        assert_eq!(status, 200, "a mint failed: {body}");
        let json: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["cached"], false);
        *stages
            .entry(json["stage"].as_str().unwrap().to_string())
            .or_default() += 1;
        tokens.push(json["access_token"].as_str().unwrap().to_string());
    }
    assert!(tokens.len() >= 72, "{} mints", tokens.len());
    // Both keys were needed: the old one as CURRENT then PREVIOUS, the new one as PENDING then
    // CURRENT.
    for stage in ["current", "pending", "previous"] {
        assert!(stages.contains_key(stage), "no {stage} mint: {stages:?}");
    }
    let (_, metrics) = agent.get("/metrics", None).await;
    assert_eq!(
        metric(
            &metrics,
            "rekey_agent_mint_failures_total{credential=\"billing\"}"
        ),
        0.0
    );
    assert!(
        metric(
            &metrics,
            "rekey_agent_fallbacks_total{credential=\"billing\"}"
        ) >= 1.0
    );
    w.sim.set_propagation(0, PropagationMode::New);
    let log = agent.stop().await;
    tokens.dedup();
    no_secret_in(&mut w, log, &tokens);
}

#[tokio::test]
async fn a_consumer_secret_credential_gets_its_token_through_client_credentials() {
    let mut w = World::etl_only().await;
    // Without [agent] it refuses to start, saying what to add.
    let refused = w.rekey(&["agent"]).await;
    assert_eq!(refused.code, 64, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("has no [agent] section") && refused.stderr.contains("socket ="),
        "{}",
        refused.stderr
    );
    w.edit_config(|c| format!("{c}\n[agent]\nsocket = \"agent.sock\"\n"));
    let agent = Agent::start_serving(&w, "etl").await;
    let token = agent.token("etl", None).await;
    assert_eq!(origin(&token), ("current", 1));
    let log = agent.stop().await;
    assert!(
        !log.contains(token["access_token"].as_str().unwrap()),
        "{log}"
    );
    assert!(!Path::new(&w.path("agent.sock")).exists());
}

/// A group other than this process's own when it may give one (root may give any), so the
/// socket's group shows the setting took effect.
fn another_group() -> u32 {
    let own = |flag: &str| {
        let out = std::process::Command::new("id").arg(flag).output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let primary: u32 = own("-g").trim().parse().unwrap();
    if own("-u").trim() == "0" {
        return if primary == 65534 { 65533 } else { 65534 };
    }
    own("-G")
        .split_whitespace()
        .filter_map(|g| g.parse().ok())
        .find(|g| *g != primary)
        .unwrap_or(primary)
}

#[tokio::test]
async fn a_held_token_is_renewed_before_it_lapses_and_the_socket_gets_its_group() {
    use std::os::unix::fs::MetadataExt as _;
    let group = another_group();
    let w = world(&format!(
        "socket = \"agent.sock\"\ngroup = \"{group}\"\nrefresh_secs = 1"
    ))
    .await;
    w.edit_config(|c| {
        c.replacen(
            &format!("consumer_key = \"{CONSUMER_KEY}\"\n"),
            &format!("consumer_key = \"{CONSUMER_KEY}\"\ntoken_cache_secs = 2\n"),
            1,
        )
    });
    let agent = Agent::start(&w).await;
    let socket = std::fs::metadata(w.path("agent.sock")).unwrap();
    assert_eq!((socket.gid(), socket.mode() & 0o777), (group, 0o660));
    let first = agent.token(CRED, None).await;
    assert_eq!(first["cached"], false);
    // No request in between: the agent mints again on its own once 3/4 of the 2 s have passed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, metrics) = agent.get("/metrics", None).await;
        if metric(&metrics, "rekey_agent_mints_total{credential=\"billing\"}") >= 2.0 {
            assert_eq!(
                metric(
                    &metrics,
                    "rekey_agent_cache_hits_total{credential=\"billing\"}"
                ),
                0.0
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never renewed:\n{metrics}\n{}",
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let held = agent.token(CRED, None).await;
    assert_eq!(origin(&held), ("current", 1));
    agent.stop().await;
}
