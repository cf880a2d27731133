//! `rekey token` through the real binary against the org emulator: a working token with no
//! admin connection, the cache and what invalidates it, the `env` format through a real shell,
//! no failed mint while a rotation's certificate change propagates (only one key trusted at a
//! time), refusals another key cannot fix, and the config key `token_cache_secs`.

mod world;

use orgsim::{Fault, FaultKind, PropagationMode};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use world::{Run, World};

const CRED: &str = "billing";
const APP: &str = "Billing_Sync";
/// The consumer key of Billing_Sync in the demo seed.
const CONSUMER_KEY: &str = "3MVG9BillingSyncConsumerKey0001";
const TOKEN_PATH: &str = "/services/oauth2/token";
/// Longer than any test: the window a certificate change propagates in stays open until the
/// test closes it.
const WINDOW_SECS: u64 = 3600;

/// A world with `billing` imported, its consumer key in the config (as consumers should have
/// it), and the token cache inside the world.
async fn world() -> World {
    let mut w = World::new().await;
    w.import_legacy(CRED).await;
    w.edit_config(|c| {
        c.replacen(
            &format!("app = \"{APP}\"\n"),
            &format!("app = \"{APP}\"\nconsumer_key = \"{CONSUMER_KEY}\"\n"),
            1,
        )
    });
    let cache = w.path("cache").display().to_string();
    w.env.push(("XDG_CACHE_HOME".into(), cache));
    w
}

fn cache_file(w: &World) -> PathBuf {
    w.path("cache/rekey/tokens/billing.json")
}

fn parsed(run: &Run) -> Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}{}", run.stdout, run.stderr))
}

/// `rekey token ARGS`, which must succeed: its JSON, after checking that the token appears on
/// stdout only.
async fn token(w: &mut World, args: &[&str]) -> Value {
    let mut all = vec!["token", CRED];
    all.extend_from_slice(args);
    let run = w.ok(&all).await;
    let json = parsed(&run);
    let access_token = json["access_token"].as_str().unwrap();
    assert!(!access_token.is_empty());
    assert!(
        !run.stderr.contains(access_token),
        "token in stderr:\n{}",
        run.stderr
    );
    json
}

/// Where a token came from: (cached, stage, generation).
fn origin(json: &Value) -> (bool, &str, u64) {
    (
        json["cached"].as_bool().unwrap(),
        json["stage"].as_str().unwrap(),
        json["generation"].as_u64().unwrap(),
    )
}

fn token_requests(w: &World) -> usize {
    w.sim
        .calls()
        .iter()
        .filter(|c| c.path == TOKEN_PATH)
        .count()
}

/// A `rekey` process that waits at test hold points (`REKEY_TEST_HOLD_AT`, comma-separated):
/// it writes the hold file at each and goes on once the file is gone. Output goes to files, not
/// pipes, which nobody would read while it waits.
struct Paused {
    child: tokio::process::Child,
    file: PathBuf,
    args: Vec<String>,
}

impl Paused {
    fn spawn(w: &World, args: &[&str], points: &str) -> Paused {
        let file = w.path("token-test-hold");
        let output = |ext: &str| std::fs::File::create(file.with_extension(ext)).unwrap();
        let child = w
            .command(args)
            .env("REKEY_TEST_HOLD_AT", points)
            .env("REKEY_TEST_HOLD_FILE", &file)
            .stdout(output("out"))
            .stderr(output("err"))
            .spawn()
            .unwrap();
        Paused {
            child,
            file,
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// `rekey rotate billing`, once it holds at `point`.
    async fn rotation_at(w: &World, point: &str) -> Paused {
        let mut rotation = Paused::spawn(w, &["rotate", CRED], point);
        rotation.held_at(point).await;
        rotation
    }

    /// Waits until the process holds at `point`.
    async fn held_at(&mut self, point: &str) {
        for _ in 0..3000 {
            if std::fs::read_to_string(&self.file).is_ok_and(|p| p == point) {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "{:?} ended ({status}) before {point}:\n{}",
                    self.args,
                    std::fs::read_to_string(self.file.with_extension("err")).unwrap()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{:?} never reached {point}", self.args);
    }

    fn go_on(&self) {
        std::fs::remove_file(&self.file).unwrap();
    }

    /// Waits for the end; what it printed.
    async fn finish(mut self) -> (Vec<String>, std::process::Output) {
        let status = self.child.wait().await.unwrap();
        let read = |ext: &str| std::fs::read(self.file.with_extension(ext)).unwrap();
        let out = std::process::Output {
            status,
            stdout: read("out"),
            stderr: read("err"),
        };
        (self.args, out)
    }
}

/// Keeps a paused process's output for the leak check and asserts it succeeded.
fn finished_ok(w: &mut World, (args, out): (Vec<String>, std::process::Output)) -> Run {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = w.record(&args, out);
    assert_eq!(run.code, 0, "{args:?}:\n{}{}", run.stdout, run.stderr);
    run
}

#[tokio::test]
async fn a_consumer_gets_a_working_token_without_the_admin_connection_and_cached() {
    let mut w = world().await;
    // The admin key is rekey's, not the consumer's: minting must not need it.
    std::fs::rename(w.path("admin.key"), w.path("admin.away")).unwrap();
    let before = w.sim.calls().len();

    let first = token(&mut w, &[]).await;
    let access_token = first["access_token"].as_str().unwrap().to_string();
    assert_eq!(origin(&first), (false, "current", 1));
    assert_eq!(first["fingerprint"], w.app_fingerprint(APP));
    assert_eq!(first["instance_url"], w.sim.base_url());
    let calls: Vec<String> = w.sim.calls()[before..]
        .iter()
        .map(|c| c.path.clone())
        .collect();
    assert_eq!(
        calls,
        [TOKEN_PATH],
        "one grant, no admin login or metadata read"
    );
    let (status, body) = w.sim.limits(&access_token).await;
    assert_eq!(status, 200, "{body}");

    let file = cache_file(&w);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(file.parent().unwrap()), 0o700);
    let requests = token_requests(&w);
    let second = token(&mut w, &[]).await;
    assert_eq!(origin(&second), (true, "current", 1));
    assert_eq!(second["access_token"], access_token.as_str());
    assert_eq!(token_requests(&w), requests, "a cached token asks nothing");

    let fresh = token(&mut w, &["--no-cache", "-vv"]).await;
    assert!(
        w.printed
            .last()
            .unwrap()
            .contains("INFO token minted credential=billing stage=CURRENT")
    );
    assert_eq!(fresh["cached"], false);
    assert_eq!(token_requests(&w), requests + 1);

    // A token older than token_cache_secs (600 by default) is minted again.
    w.set_clock(601);
    assert_eq!(token(&mut w, &[]).await["cached"], false);
    w.set_clock(0);

    // Temporary failures of the token endpoint are retried.
    w.sim.inject_fault(
        Fault::new(FaultKind::ServerError {
            status: 503,
            body: String::new(),
        })
        .on_path(TOKEN_PATH)
        .times(2),
    );
    assert_eq!(token(&mut w, &["--no-cache"]).await["cached"], false);

    // The env format through a real shell: exported, so a child process like `sf` sees both.
    let run = w.ok(&["token", CRED, "--format", "env"]).await;
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert!(
        lines[0].starts_with("export SF_ACCESS_TOKEN='"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("export SF_INSTANCE_URL='"),
        "{}",
        lines[1]
    );
    let shell = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"eval "$1" && sh -c 'printf "%s\n%s" "$SF_ACCESS_TOKEN" "$SF_INSTANCE_URL"'"#)
        .arg("sh")
        .arg(&run.stdout)
        .output()
        .unwrap();
    assert!(shell.status.success());
    assert_eq!(
        String::from_utf8(shell.stdout).unwrap(),
        format!("{access_token}\n{}", w.sim.base_url())
    );

    std::fs::rename(w.path("admin.away"), w.path("admin.key")).unwrap();
    w.assert_no_key_bytes_leaked();
}

#[tokio::test]
async fn a_cached_token_is_not_reused_once_its_key_left_the_store() {
    let mut w = world().await;
    assert_eq!(token(&mut w, &[]).await["generation"], 1);
    w.ok(&["rotate", CRED]).await;
    // Generation 1 is PREVIOUS now: its session is still valid, and the cache says which key.
    let after_one = token(&mut w, &[]).await;
    assert_eq!(origin(&after_one), (true, "previous", 1));
    w.ok(&["rotate", CRED]).await;
    let after_two = token(&mut w, &[]).await;
    assert_eq!(origin(&after_two), (false, "current", 3));
    assert_eq!(after_two["fingerprint"], w.app_fingerprint(APP));
}

/// Asserts that Salesforce refuses the CURRENT key and accepts the `stage` one right now.
async fn only_trusted(w: &mut World, stage: &str) {
    assert_eq!(w.rekey(&["verify", CRED]).await.code, 3, "CURRENT accepted");
    w.ok(&["verify", CRED, "--stage", stage]).await;
}

#[tokio::test]
async fn no_mint_fails_while_only_one_of_the_two_keys_is_trusted() {
    let mut w = world().await;

    // After publish, only the new key works (CURRENT refused): PENDING signs.
    w.sim.set_propagation(WINDOW_SECS, PropagationMode::New);
    let rotation = Paused::rotation_at(&w, "publish:done").await;
    only_trusted(&mut w, "pending").await;
    let during = token(&mut w, &["--no-cache"]).await;
    assert_eq!(origin(&during), (false, "pending", 2));
    assert_eq!(during["fingerprint"], w.app_fingerprint(APP));
    let (status, _) = w.sim.limits(during["access_token"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    rotation.go_on();
    finished_ok(&mut w, rotation.finish().await);

    // The next rotation is verified and promoted while the new key works; then (still inside
    // its window) only the old one does: CURRENT refused, PENDING gone, PREVIOUS signs.
    let old_fingerprint = w.app_fingerprint(APP);
    let rotation = Paused::rotation_at(&w, "promote:done").await;
    w.sim.set_propagation(WINDOW_SECS, PropagationMode::Old);
    only_trusted(&mut w, "previous").await;
    let during = token(&mut w, &["--no-cache"]).await;
    assert_eq!(origin(&during), (false, "previous", 2));
    assert_eq!(during["fingerprint"], old_fingerprint.as_str());
    rotation.go_on();
    finished_ok(&mut w, rotation.finish().await);

    // The window closes: only the new key, CURRENT, works.
    w.sim.set_propagation(0, PropagationMode::New);
    let after = token(&mut w, &["--no-cache"]).await;
    assert_eq!(origin(&after), (false, "current", 3));
    w.assert_no_key_bytes_leaked();
}

/// Waits until the consumer loop counted more than `beyond` mints in `count` (a 30 s hang
/// guard).
async fn seen(count: &AtomicUsize, beyond: usize) {
    for _ in 0..3000 {
        if count.load(Ordering::SeqCst) > beyond {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the consumer never minted with the key it needed");
}

#[tokio::test]
async fn a_consumer_minting_every_100ms_through_a_whole_rotation_never_fails() {
    let mut w = world().await;
    w.sim.set_propagation(WINDOW_SECS, PropagationMode::New);
    let stop = AtomicBool::new(false);
    let (current, pending, previous, minted) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    let args = ["token", CRED, "--no-cache"];
    let consumer = async {
        let mut runs = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let out = w.command(&args).output().await.unwrap();
            let stage = serde_json::from_slice::<Value>(&out.stdout)
                .map(|json| json["stage"].clone())
                .unwrap_or_default();
            for (name, count) in [
                ("current", &current),
                ("pending", &pending),
                ("previous", &previous),
            ] {
                if stage == name {
                    count.fetch_add(1, Ordering::SeqCst);
                }
            }
            runs.push(out);
            minted.fetch_add(1, Ordering::SeqCst);
            // The consumer's own pace, not a synchronisation: the rotation below waits for
            // its mints.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        runs
    };
    let rotating = async {
        seen(&current, 0).await;
        // Held where only one key is trusted, until the consumer has minted there: after
        // publish only the new one (PENDING), after promote only the old one (PREVIOUS).
        let mut rotation = Paused::spawn(&w, &["rotate", CRED], "publish:done,promote:done");
        rotation.held_at("publish:done").await;
        seen(&pending, 0).await;
        rotation.go_on();
        rotation.held_at("promote:done").await;
        w.sim.set_propagation(WINDOW_SECS, PropagationMode::Old);
        seen(&previous, 0).await;
        rotation.go_on();
        let finished = rotation.finish().await;
        // The consumer keeps minting once the rotation is over, and while the window closes:
        // one more mint inside it, then one with CURRENT after it closed.
        seen(&minted, minted.load(Ordering::SeqCst)).await;
        let before_close = current.load(Ordering::SeqCst);
        w.sim.set_propagation(0, PropagationMode::New);
        seen(&current, before_close).await;
        stop.store(true, Ordering::SeqCst);
        finished
    };
    let (runs, finished) = tokio::join!(consumer, rotating);
    finished_ok(&mut w, finished);
    let mut stages = Vec::new();
    for out in runs {
        let run = w.record(&args, out);
        assert_eq!(run.code, 0, "a mint failed:\n{}{}", run.stdout, run.stderr);
        let json = parsed(&run);
        assert!(!run.stderr.contains(json["access_token"].as_str().unwrap()));
        stages.push(json["stage"].as_str().unwrap().to_string());
    }
    for stage in ["current", "pending", "previous"] {
        assert!(
            stages.iter().any(|s| s == stage),
            "no {stage} mint: {stages:?}"
        );
    }
    assert_eq!(stages.last().unwrap(), "current", "{stages:?}");
    assert_eq!(w.json(&["status", CRED]).await[0]["generation"], 2);
    w.assert_no_key_bytes_leaked();
}

/// Mints in a loop until `stop`, each through a new `rekey token --no-cache` process.
async fn mint_until(
    w: &World,
    stop: &AtomicBool,
    minted: &AtomicUsize,
) -> Vec<std::process::Output> {
    let mut runs = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        runs.push(
            w.command(&["token", CRED, "--no-cache"])
                .output()
                .await
                .unwrap(),
        );
        minted.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_consumers_never_fail_while_each_request_reaches_a_random_node() {
    // Each token request is checked against only the old or only the new certificate, at
    // random: the same key is refused by one request and accepted by the next.
    let mut w = world().await;
    w.sim.set_propagation(WINDOW_SECS, PropagationMode::Random);
    let stop = AtomicBool::new(false);
    let minted = AtomicUsize::new(0);
    let consumers = futures_util::future::join_all((0..3).map(|_| mint_until(&w, &stop, &minted)));
    let rotating = async {
        world::grew_by(&minted, 6, "minting").await;
        let mut rotation = Paused::spawn(&w, &["rotate", CRED], "publish:done,promote:done");
        rotation.held_at("publish:done").await;
        world::grew_by(&minted, 30, "minting").await;
        rotation.go_on();
        rotation.held_at("promote:done").await;
        world::grew_by(&minted, 30, "minting").await;
        rotation.go_on();
        let finished = rotation.finish().await;
        world::grew_by(&minted, 6, "minting").await;
        stop.store(true, Ordering::SeqCst);
        finished
    };
    let (runs, finished) = tokio::join!(consumers, rotating);
    finished_ok(&mut w, finished);
    let args = ["token", CRED, "--no-cache"];
    let mut stages = std::collections::BTreeMap::<String, usize>::new();
    let mut total = 0;
    for out in runs.into_iter().flatten() {
        let run = w.record(&args, out);
        assert_eq!(run.code, 0, "a mint failed:\n{}{}", run.stdout, run.stderr);
        *stages
            .entry(parsed(&run)["stage"].as_str().unwrap().to_string())
            .or_default() += 1;
        total += 1;
    }
    assert!(total >= 72, "{total} mints");
    // Both keys were needed: the old one as CURRENT then PREVIOUS, the new one as PENDING then
    // CURRENT.
    for stage in ["current", "pending", "previous"] {
        assert!(stages.contains_key(stage), "no {stage} mint: {stages:?}");
    }
    w.assert_no_key_bytes_leaked();
}

#[tokio::test]
async fn a_refusal_another_key_cannot_fix_exits_3_after_one_grant() {
    let mut w = world().await;
    w.ok(&["rotate", CRED]).await; // CURRENT and PREVIOUS both held: neither may be tried
    // The admin exists but is not pre-authorized on the integration app.
    w.edit_config(|c| {
        c.replacen(
            "username = \"integration@acme.example\"",
            "username = \"rekey-admin@acme.example\"",
            1,
        )
    });
    let requests = token_requests(&w);
    let run = w.rekey(&["token", CRED]).await;
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    for part in [
        "billing (connected app Billing_Sync in org acme)",
        "rekey-admin@acme.example signed with the CURRENT key (generation 2)",
        "invalid_app_access: user is not admin approved to access this app",
        "hint: assign the integration user's profile or permission set to the integration app",
    ] {
        assert!(run.stderr.contains(part), "{part} missing:\n{}", run.stderr);
    }
    assert_eq!(token_requests(&w), requests + 1, "no other key was tried");

    w.edit_config(|c| {
        c.replacen(
            "rekey-admin@acme.example\"\nstore",
            "integration@acme.example\"\nstore",
            1,
        )
        .replace(CONSUMER_KEY, "3MVG9NoSuchConsumerKey")
    });
    let requests = token_requests(&w);
    let run = w.rekey(&["token", CRED, "--json"]).await;
    assert_eq!(run.code, 3);
    let error = parsed(&run)["error"].clone();
    assert_eq!(error["kind"], "rejected");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("invalid_client_id: client identifier invalid"),
        "{message}"
    );
    assert_eq!(token_requests(&w), requests + 1, "no other key was tried");
    assert!(!cache_file(&w).exists(), "nothing was cached");
}

#[tokio::test]
async fn when_no_key_is_trusted_it_says_so_and_exits_3() {
    let mut w = world().await;
    w.sim.set_propagation(WINDOW_SECS, PropagationMode::Neither);
    let rotation = Paused::rotation_at(&w, "publish:done").await;
    let run = w.rekey(&["token", CRED, "--no-cache"]).await;
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains(
            "trusts none of its keys right now: CURRENT (generation 1), PENDING (generation 2) refused with invalid_grant: invalid assertion"
        ),
        "{}",
        run.stderr
    );
    w.sim.set_propagation(0, PropagationMode::New);
    rotation.go_on();
    finished_ok(&mut w, rotation.finish().await);
    assert_eq!(token(&mut w, &["--no-cache"]).await["generation"], 2);
}

#[tokio::test]
async fn an_unreadable_primary_store_falls_back_to_the_next_and_the_eca_key_is_read_from_the_app() {
    let mut w = world().await;
    w.edit_config(|c| {
        c.replacen("store = \"local\"", "stores = [\"local\", \"backup\"]", 1)
            .replace(
                "[credentials.billing]",
                "[stores.backup]\nkind = \"file\"\npath = \"backup\"\n\n[credentials.billing]",
            )
    });
    w.import_legacy(CRED).await; // into the new store too
    std::fs::write(w.path("keys/billing/stages.json"), "not a stage map").unwrap();
    let run = w.ok(&["token", CRED]).await;
    assert_eq!(parsed(&run)["stage"], "current");
    assert!(
        run.stderr.contains("cannot read the store"),
        "{}",
        run.stderr
    );

    // Without consumer_key the app's is read through the admin connection.
    w.import_legacy("billing-eca").await;
    let run = w.ok(&["token", "billing-eca"]).await;
    let json = parsed(&run);
    assert_eq!(json["fingerprint"], w.app_fingerprint("Billing_Sync_ECA"));
    let (status, _) = w.sim.limits(json["access_token"].as_str().unwrap()).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn token_cache_secs_is_checked_at_load_and_zero_disables_the_cache() {
    let mut w = world().await;
    w.edit_config(|c| {
        c.replacen(
            "store = \"local\"\n",
            "store = \"local\"\ntoken_cache_secs = 86401\n",
            1,
        )
    });
    let text = std::fs::read_to_string(w.path("rekey.toml")).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("token_cache_secs"))
        .unwrap()
        + 1;
    let run = w.rekey(&["token", CRED]).await;
    assert_eq!(run.code, 64, "{}{}", run.stdout, run.stderr);
    let at =
        format!("rekey.toml:{line}:20: token_cache_secs = 86401 is out of range; use 0..=86400");
    assert!(run.stderr.contains(&at), "{at} missing:\n{}", run.stderr);

    w.edit_config(|c| c.replace("token_cache_secs = 86401", "token_cache_secs = 0"));
    assert_eq!(token(&mut w, &[]).await["cached"], false);
    assert_eq!(token(&mut w, &[]).await["cached"], false);
    assert!(!cache_file(&w).exists());
}

/// `rekey token billing`, which must succeed: (cached, the warnings about the cache on stderr).
async fn token_warned(w: &mut World) -> (Value, Vec<String>) {
    let run = w.ok(&["token", CRED]).await;
    let json = parsed(&run);
    let warnings = run
        .stderr
        .lines()
        .filter(|l| l.contains("token cache"))
        .map(str::to_string)
        .collect();
    (json, warnings)
}

/// Asserts that exactly one warning about the cache was printed, containing every one of
/// `parts`, and that the token was minted, not read from the cache.
fn ignored_once(json: &Value, warnings: &[String], parts: &[&str]) {
    assert_eq!(warnings.len(), 1, "one warning: {warnings:?}");
    assert!(
        warnings[0].starts_with("warning: ignoring the token cache"),
        "{warnings:?}"
    );
    for part in parts {
        assert!(
            warnings[0].contains(part),
            "{part:?} missing: {}",
            warnings[0]
        );
    }
    assert_eq!(json["cached"], false, "{json}");
}

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode_of(path: &std::path::Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

#[tokio::test]
async fn a_cache_file_others_could_have_written_is_ignored_once_and_replaced() {
    let mut w = world().await;
    let minted = token(&mut w, &[]).await;
    let file = cache_file(&w);
    let dir = file.parent().unwrap().to_path_buf();

    // Readable (and so perhaps written) by others.
    chmod(&file, 0o644);
    let (json, warnings) = token_warned(&mut w).await;
    ignored_once(
        &json,
        &warnings,
        &[&file.display().to_string(), "mode is 0644"],
    );
    assert_eq!(mode_of(&file), 0o600, "the new token replaced it");
    let (json, warnings) = token_warned(&mut w).await;
    assert_eq!((json["cached"].as_bool(), warnings.len()), (Some(true), 0));

    // A planted token for another instance, in a file that passes every other test: the token
    // would be sent, and everything done with it, elsewhere.
    let mut planted: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    planted["access_token"] = "00Dplanted!token".into();
    planted["instance_url"] = "https://evil.example".into();
    std::fs::write(&file, planted.to_string()).unwrap();
    assert_eq!(mode_of(&file), 0o600);
    let (json, warnings) = token_warned(&mut w).await;
    ignored_once(&json, &warnings, &["instance_url is not the org's"]);
    assert_ne!(json["access_token"], "00Dplanted!token");
    assert_eq!(json["instance_url"], w.sim.base_url());
    let (json, _) = token_warned(&mut w).await;
    assert_eq!(json["cached"], true, "replaced by the minted token");
    assert_eq!(json["instance_url"], w.sim.base_url());

    // A symbolic link to a file of ours that would pass: never followed, and replaced by a file.
    let elsewhere = w.path("elsewhere.json");
    std::fs::rename(&file, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &file).unwrap();
    let (json, warnings) = token_warned(&mut w).await;
    ignored_once(&json, &warnings, &["symbolic link"]);
    assert!(
        std::fs::symlink_metadata(&file)
            .unwrap()
            .file_type()
            .is_file()
    );

    // A second name (hard link) another user could have made to a file of ours.
    std::fs::hard_link(&file, w.path("second-name.json")).unwrap();
    let (json, warnings) = token_warned(&mut w).await;
    ignored_once(&json, &warnings, &["2 names"]);

    // Not a file at all: a FIFO is not opened for reading (which would hang).
    std::fs::remove_file(&file).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&file)
        .status()
        .unwrap();
    assert!(made.success());
    let (json, warnings) = token_warned(&mut w).await;
    ignored_once(&json, &warnings, &["not a regular file"]);

    // Owned by another user: only root can make one, so only then is it tried.
    if rustix::process::geteuid().is_root() {
        token(&mut w, &[]).await;
        let chown = |path: &std::path::Path| {
            let status = std::process::Command::new("chown")
                .arg("65534")
                .arg(path)
                .status()
                .unwrap();
            assert!(status.success());
        };
        chown(&file);
        let (json, warnings) = token_warned(&mut w).await;
        ignored_once(
            &json,
            &warnings,
            &["belongs to user id 65534, not to this user (0)"],
        );
        chown(&dir);
        let (json, warnings) = token_warned(&mut w).await;
        ignored_once(&json, &warnings, &["belongs to user id 65534"]);
    } else {
        eprintln!(
            "skipped: a cache file or folder owned by another user needs root to make (checked by fstat's uid against geteuid)"
        );
    }
    assert!(!minted["access_token"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn a_cache_folder_others_can_write_is_neither_read_nor_written() {
    let mut w = world().await;
    token(&mut w, &[]).await;
    let file = cache_file(&w);
    let dir = file.parent().unwrap().to_path_buf();
    let before = std::fs::read(&file).unwrap();

    for folder in [dir.clone(), dir.parent().unwrap().to_path_buf()] {
        chmod(&folder, 0o777);
        for _ in 0..2 {
            let (json, warnings) = token_warned(&mut w).await;
            ignored_once(
                &json,
                &warnings,
                &[
                    &format!("{} is mode 0777", folder.display()),
                    "caching nothing",
                ],
            );
        }
        assert_eq!(std::fs::read(&file).unwrap(), before, "not written");
        // Group-writable is as bad.
        chmod(&folder, 0o770);
        let (json, warnings) = token_warned(&mut w).await;
        ignored_once(&json, &warnings, &["is mode 0770"]);
        chmod(&folder, 0o700);
    }
    // A sticky folder others may write (as /tmp) is fine: there only an entry's owner can
    // rename or remove it, and the folders below it are checked.
    let parent = dir.parent().unwrap();
    chmod(parent, 0o1777);
    let (json, warnings) = token_warned(&mut w).await;
    assert_eq!(
        (json["cached"].as_bool(), warnings.len()),
        (Some(true), 0),
        "{warnings:?}"
    );
    chmod(parent, 0o700);

    // A folder reached through a symbolic link is judged where it leads, too.
    let real = w.path("real-cache");
    std::fs::create_dir(&real).unwrap();
    chmod(&real, 0o777);
    w.env.retain(|(k, _)| k != "XDG_CACHE_HOME");
    let link = w.path("linked-cache");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    w.env
        .push(("XDG_CACHE_HOME".into(), link.display().to_string()));
    let (json, warnings) = token_warned(&mut w).await;
    ignored_once(&json, &warnings, &["is mode 0777"]);
    assert!(!real.join("rekey").exists(), "nothing written there");
    w.assert_no_key_bytes_leaked();
}
