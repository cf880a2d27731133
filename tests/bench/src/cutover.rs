//! Cutover: consumers minting tokens continuously through one rotation, while the emulator's
//! propagation window trusts the old or the new certificate at random per request, for four
//! ways of rotating and consuming the key — on equal terms: every strategy gets the same warm-up
//! before its rotation and every consumer the same retry budget ([`ATTEMPTS`] tries over about
//! 4.5 s, the sweeps `rekey token` makes), and failures are counted inside the window too.

use crate::machine::{CpuMeter, Load};
use crate::org::{App, Error, Rekey, Spec, World, fingerprint};
use crate::stats::{self, MintRecord, Switch};
use crate::table::{self, Align, Table};
use orgsim::PropagationMode;
use rekey_api::{
    Certificate, CertificateTarget as _, KeyMaterial, NewVersion, RotationId, SecretStore as _,
    Stage,
};
use rekey_file::FileStore;
use rekey_salesforce::{Mint, Minter};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the key is rotated and how its consumers get it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Strategy {
    /// What a script would do: the new key into the store as CURRENT, then the certificate onto
    /// the app. Consumers sign with the store's CURRENT and re-read it after a failed mint.
    Naive,
    /// `rekey rotate` (stage, publish, verify, promote). The same store-pull consumers.
    Rekey,
    /// `rekey rotate`; each consumer mint is a `rekey token --no-cache` process.
    #[value(name = "token")]
    TokenHelper,
    /// `rekey rotate`; each consumer mint is a request to one `rekey agent` over its Unix socket
    /// (`token_cache_secs = 0`, so every request is a grant at Salesforce).
    Agent,
}

impl Strategy {
    /// Every strategy, in table order.
    pub(crate) const ALL: [Strategy; 4] = [
        Strategy::Naive,
        Strategy::Rekey,
        Strategy::TokenHelper,
        Strategy::Agent,
    ];

    /// How the table names it.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Strategy::Naive => "(a) naive script + store-pull consumers",
            Strategy::Rekey => "(b) `rekey rotate` + store-pull consumers",
            Strategy::TokenHelper => "(c) `rekey rotate` + `rekey token` consumers",
            Strategy::Agent => "(d) `rekey rotate` + `rekey agent` consumers",
        }
    }

    /// What its consumers may do to get a token, for the table.
    pub(crate) fn consumers_may(self) -> &'static str {
        match self {
            Strategy::Naive | Strategy::Rekey => {
                "sign with CURRENT; after a refusal read CURRENT again; ≤ 10 tries in ~4.5 s"
            }
            Strategy::TokenHelper => {
                "a process per mint: CURRENT, PENDING, PREVIOUS; ≤ 10 sweeps in ~4.5 s"
            }
            Strategy::Agent => {
                "a request per mint: CURRENT, PENDING, PREVIOUS; ≤ 10 sweeps in ~4.5 s"
            }
        }
    }
}

/// Tries a store-pull consumer makes before its mint counts as failed: the sweeps `rekey token`
/// (and so `rekey agent`) make through the stages before giving up.
const ATTEMPTS: u32 = 10;

/// The pause after failed try `n` (1-based): `rekey token`'s between sweeps, 0.1 s growing by
/// 0.1 s up to 1 s (about 4.5 s over all tries).
fn pause_after(n: u32) -> Duration {
    (Duration::from_millis(100) * n).min(Duration::from_secs(1))
}

/// The consumers' behaviour and the phases of one run.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    /// Consumers minting at once.
    pub(crate) consumers: usize,
    /// Pause between a consumer's mints (each one drawn from 0.5–1.5 times this).
    pub(crate) interval: Duration,
    /// Minting before the rotation starts.
    pub(crate) warmup: Duration,
    /// Minting after both the rotation and the propagation window ended.
    pub(crate) settle: Duration,
    /// Print what `rekey rotate` printed (its steps and their durations) to stderr.
    pub(crate) verbose: bool,
}

/// What one strategy's run measured.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// Which strategy.
    pub(crate) strategy: Strategy,
    /// The propagation window the emulator used.
    pub(crate) window: Duration,
    /// Mints in all.
    pub(crate) mints: usize,
    /// Mints that got no token (after every try the retry budget allows).
    pub(crate) failed: usize,
    /// Mints that ended inside the window (from the certificate change to the window's end),
    /// and how many of them failed; `None` if the certificate never changed.
    pub(crate) in_window: Option<(usize, usize)>,
    /// From the app's certificate change ("Salesforce accepts the new certificate") to the
    /// moment every consumer signs with the new key; `None` if the certificate never changed.
    pub(crate) switch: Option<Switch>,
    /// Wall time of the rotation (the script, or `rekey rotate`), or why it failed.
    pub(crate) rotation: Result<Duration, String>,
    /// Median and 99th percentile of a mint's duration.
    pub(crate) latency: (Duration, Duration),
    /// How busy the machine was from the first consumer's start to the last one's end.
    pub(crate) load: Load,
}

/// How a consumer gets a token.
enum Consumer {
    /// Signs with the key it read from the store's CURRENT; after a refused grant it reads
    /// CURRENT again and tries again, up to [`ATTEMPTS`] tries.
    StorePull {
        store: FileStore,
        minter: Minter,
        credential: String,
    },
    /// Runs `rekey token CREDENTIAL --no-cache --format json` per mint.
    Helper {
        rekey: Rekey,
        dir: PathBuf,
        credential: String,
    },
    /// `GET /v1/token/CREDENTIAL` to `rekey agent` on its Unix socket per mint.
    Agent { socket: PathBuf, credential: String },
}

/// What every consumer shares: the run's start, the stop flag, the record of mints.
#[derive(Clone)]
struct Shared {
    start: Instant,
    stop: Arc<AtomicBool>,
    records: Arc<Mutex<Vec<MintRecord>>>,
}

/// The store's CURRENT key and the fingerprint of its certificate.
async fn read_current(store: &FileStore, credential: &str) -> Option<(KeyMaterial, String)> {
    let stored = store.read_stage(credential, Stage::Current).await.ok()??;
    let fingerprint = stored.info.public.fingerprint().to_hex();
    match stored.material {
        rekey_api::Material::Key(key) => Some((key, fingerprint)),
        rekey_api::Material::Consumer(_) | rekey_api::Material::Custody(_) => None,
    }
}

/// One grant signed with `held`; the fingerprint if Salesforce issued a token.
async fn mint_with(minter: &Minter, held: Option<&(KeyMaterial, String)>) -> Option<String> {
    let (key, fp) = held?;
    match minter.mint(rekey_api::Signer::Local(key)).await {
        Ok(Mint::Granted(_token)) => Some(fp.clone()),
        _ => None,
    }
}

/// One `GET /v1/token/CREDENTIAL` to the agent on `socket`: the fingerprint of what signed the
/// grant if it answered with a token.
async fn agent_mint(socket: &Path, credential: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::UnixStream::connect(socket).await.ok()?;
    let request =
        format!("GET /v1/token/{credential} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.ok()?;
    let text = String::from_utf8(answer).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    if head.split(' ').nth(1) != Some("200") {
        return None;
    }
    // The body holds the token too; only the fingerprint is kept.
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["fingerprint"].as_str().map(str::to_string))
}

/// `rekey agent` serving `app` in `world` on `agent.sock`, with `token_cache_secs = 0` so every
/// request is a grant; started once its socket exists.
async fn start_agent(
    rekey: &Rekey,
    world: &World,
    app: &App,
) -> Result<(tokio::process::Child, PathBuf), Error> {
    let config_path = world.path().join("rekey.toml");
    let config = std::fs::read_to_string(&config_path)?;
    let header = format!("[credentials.{}]\n", app.credential);
    if !config.contains(&header) {
        return Err(format!("rekey.toml has no {header}").into());
    }
    let config = config.replacen(&header, &format!("{header}token_cache_secs = 0\n"), 1)
        + &format!(
            "\n[agent]\nsocket = \"agent.sock\"\ncredentials = [\"{}\"]\n",
            app.credential
        );
    std::fs::write(&config_path, config)?;
    let socket = world.path().join("agent.sock");
    let log = std::fs::File::create(world.path().join("agent.log"))?;
    let mut child = rekey
        .command(world.path(), &["agent"])
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !socket.exists() {
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(world.path().join("agent.log")).unwrap_or_default();
            return Err(format!("rekey agent exited with {status}:\n{log}").into());
        }
        if Instant::now() > deadline {
            return Err("rekey agent did not listen within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok((child, socket))
}

/// SIGTERM to the agent, which must stop with exit 0.
async fn stop_agent(mut child: tokio::process::Child) -> Result<(), Error> {
    let pid = child.id().ok_or("rekey agent already ended")?.to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()?;
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .map_err(|_| "rekey agent did not stop within 30 s of SIGTERM")??;
    if !status.success() {
        return Err(format!("rekey agent stopped with {status}").into());
    }
    Ok(())
}

/// Mints until told to stop, recording each mint.
async fn consume(id: usize, consumer: Consumer, interval: Duration, shared: Shared) {
    // Consumers start spread over one interval, as independent jobs would.
    tokio::time::sleep(interval.mul_f64(rand::random::<f64>())).await;
    let mut held: Option<(KeyMaterial, String)> = None;
    while !shared.stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        let fingerprint = match &consumer {
            Consumer::StorePull {
                store,
                minter,
                credential,
            } => {
                let mut minted = None;
                for attempt in 1..=ATTEMPTS {
                    if (held.is_none() || attempt > 1)
                        && let Some(fresh) = read_current(store, credential).await
                    {
                        held = Some(fresh);
                    }
                    minted = mint_with(minter, held.as_ref()).await;
                    if minted.is_some() || attempt == ATTEMPTS {
                        break;
                    }
                    tokio::time::sleep(pause_after(attempt)).await;
                }
                minted
            }
            Consumer::Helper {
                rekey,
                dir,
                credential,
            } => {
                let args = ["token", credential, "--no-cache", "--format", "json"];
                match rekey.output(dir, &args).await {
                    Ok(out) if out.status.success() => {
                        // stdout holds the token too; only the fingerprint is kept.
                        serde_json::from_slice::<serde_json::Value>(&out.stdout)
                            .ok()
                            .and_then(|v| v["fingerprint"].as_str().map(str::to_string))
                    }
                    _ => None,
                }
            }
            Consumer::Agent { socket, credential } => agent_mint(socket, credential).await,
        };
        let record = MintRecord {
            consumer: id,
            at: shared.start.elapsed(),
            took: started.elapsed(),
            fingerprint,
        };
        shared.records.lock().unwrap().push(record);
        tokio::time::sleep(interval.mul_f64(rand::random_range(0.5..1.5))).await;
    }
}

/// The naive rotation: a new key pair (`rekey generate`), written into the store as CURRENT
/// (staged and promoted at once), then the certificate deployed onto the app (the same
/// read-modify-write Metadata deploy rekey uses), with no verification in between.
async fn naive_rotation(rekey: &Rekey, world: &World, app: &App) -> Result<(), Error> {
    let (key_path, cert_path) = (
        world.path().join("naive.key"),
        world.path().join("naive.crt"),
    );
    rekey
        .generate(world.path(), &key_path, &cert_path, &app.credential, 365)
        .await?;
    let key = KeyMaterial::from_pem(std::fs::read_to_string(&key_path)?)?;
    let certificate = Certificate::from_pem(&std::fs::read_to_string(&cert_path)?)?;
    let store = world.store();
    let current = store
        .stages(&app.credential)
        .await?
        .current
        .ok_or("the store holds no CURRENT key")?;
    let generation = current.generation.next();
    let rotation_id = RotationId("naive-script".into());
    let (material, public) = (
        rekey_api::Material::Key(key),
        rekey_api::Public::Certificate(certificate.clone()),
    );
    let new = NewVersion {
        generation,
        material: &material,
        public: &public,
        rotation_id: &rotation_id,
    };
    store.stage(&app.credential, &new).await?;
    store.promote(&app.credential, generation).await?;
    world
        .target(app)?
        .install(&certificate, &rotation_id)
        .await?;
    Ok(())
}

/// A world for one strategy's run: one app whose certificate changes propagate for
/// `window_secs`, trusting the old or the new certificate at random per token request.
pub(crate) async fn prepare(rekey: &Rekey, window_secs: u64) -> Result<World, Error> {
    let spec = Spec {
        apps: 1,
        days: 365,
        propagation_secs: window_secs,
        propagation_mode: PropagationMode::Random,
        concurrency: 1,
    };
    World::build(rekey, &spec).await
}

/// One strategy through one rotation in `world` (from [`prepare`] with `window_secs`): the
/// consumers start, the rotation starts after `options.warmup`, and the run ends
/// `options.settle` after both the rotation and the propagation window ended. The world is shut
/// down at the end.
pub(crate) async fn run(
    rekey: &Rekey,
    world: World,
    strategy: Strategy,
    window_secs: u64,
    options: &Options,
) -> Result<Outcome, Error> {
    let app = world.apps[0].clone();
    let initial = world
        .app_certificate(&app)
        .ok_or("the app holds no certificate")?;
    let window = Duration::from_secs(window_secs);

    let agent = match strategy {
        Strategy::Agent => Some(start_agent(rekey, &world, &app).await?),
        _ => None,
    };
    let shared = Shared {
        start: Instant::now(),
        stop: Arc::new(AtomicBool::new(false)),
        records: Arc::new(Mutex::new(Vec::new())),
    };
    let meter = CpuMeter::start();
    let mut consumers = Vec::new();
    for id in 0..options.consumers {
        let consumer = match strategy {
            Strategy::Naive | Strategy::Rekey => Consumer::StorePull {
                store: world.store(),
                minter: world.minter(&app)?,
                credential: app.credential.clone(),
            },
            Strategy::TokenHelper => Consumer::Helper {
                rekey: rekey.clone(),
                dir: world.path().to_path_buf(),
                credential: app.credential.clone(),
            },
            Strategy::Agent => Consumer::Agent {
                socket: agent.as_ref().map(|(_, s)| s.clone()).unwrap_or_default(),
                credential: app.credential.clone(),
            },
        };
        consumers.push(tokio::spawn(consume(
            id,
            consumer,
            options.interval,
            shared.clone(),
        )));
    }

    let rotated = AtomicBool::new(false);
    // When the app's certificate changed, polled every 10 ms (None: it never did).
    let accepted = async {
        loop {
            // Read before the certificate: a rotation that ended has made its change already.
            let ended = rotated.load(Ordering::SeqCst);
            if world.app_certificate(&app).is_some_and(|c| c != initial) {
                return Some(shared.start.elapsed());
            }
            if ended {
                // The rotation ended without changing the certificate.
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let rotation = async {
        tokio::time::sleep(options.warmup).await;
        let started = Instant::now();
        let result = match strategy {
            Strategy::Naive => naive_rotation(rekey, &world, &app).await,
            Strategy::Rekey | Strategy::TokenHelper | Strategy::Agent => rekey
                .ok(world.path(), &["rotate", &app.credential])
                .await
                .map(|out| {
                    if options.verbose {
                        eprint!("{}", String::from_utf8_lossy(&out.stdout));
                    }
                }),
        };
        let took = started.elapsed();
        rotated.store(true, Ordering::SeqCst);
        result.map(|()| took).map_err(|e| e.to_string())
    };
    let (accepted, rotation) = tokio::join!(accepted, rotation);

    // Until the rotation ended and the window closed, then the settle margin.
    let window_end = accepted.map_or(Duration::ZERO, |at| at + window);
    let end = shared.start.elapsed().max(window_end) + options.settle;
    tokio::time::sleep_until((shared.start + end).into()).await;
    shared.stop.store(true, Ordering::SeqCst);
    for consumer in consumers {
        consumer.await?;
    }
    let load = meter.stop();
    if let Some((child, _)) = agent {
        stop_agent(child).await?;
    }

    let records = std::mem::take(&mut *shared.records.lock().unwrap());
    let new_fingerprint = fingerprint(
        &world
            .app_certificate(&app)
            .ok_or("the app holds no certificate")?,
    )?;
    let switch =
        accepted.map(|at| stats::switch(&records, options.consumers, &new_fingerprint).since(at));
    let took: Vec<Duration> = records.iter().map(|r| r.took).collect();
    let outcome = Outcome {
        strategy,
        window,
        mints: records.len(),
        failed: records.iter().filter(|r| !r.ok()).count(),
        in_window: accepted.map(|at| stats::within(&records, at, at + window)),
        switch,
        rotation,
        latency: (
            stats::median(&took).unwrap_or_default(),
            stats::percentile(&took, 99.0).unwrap_or_default(),
        ),
        load,
    };
    world.shutdown().await;
    Ok(outcome)
}

/// The cutover table: one row per window and strategy.
pub(crate) fn table(outcomes: &[Outcome]) -> String {
    let mut t = Table::new(&[
        ("P", Align::Right),
        ("strategy", Align::Left),
        ("its consumers may", Align::Left),
        ("mints", Align::Right),
        ("failed (%)", Align::Right),
        ("in the window: mints, failed (%)", Align::Right),
        (
            "accepted → all consumers on new key (median consumer)",
            Align::Right,
        ),
        ("rotation wall time", Align::Right),
        ("mint p50 / p99", Align::Right),
        ("CPU busy avg / peak", Align::Right),
    ]);
    for o in outcomes {
        let switch = match &o.switch {
            None => "certificate never changed".to_string(),
            Some(Switch::All { last, median }) => {
                format!("{} ({})", table::secs(*last), table::secs(*median))
            }
            Some(Switch::NotAll { missing, of }) => {
                format!("not all: {missing} of {of} never switched")
            }
        };
        let rotation = match &o.rotation {
            Ok(d) => table::secs(*d),
            Err(_) => "failed".to_string(),
        };
        let in_window = match o.in_window {
            None => "n/a".to_string(),
            Some((mints, failed)) => {
                format!("{mints}, {failed} ({})", table::percent(failed, mints))
            }
        };
        t.row(vec![
            format!("{} s", o.window.as_secs()),
            o.strategy.label().to_string(),
            o.strategy.consumers_may().to_string(),
            o.mints.to_string(),
            format!("{} ({})", o.failed, table::percent(o.failed, o.mints)),
            in_window,
            switch,
            rotation,
            format!(
                "{} / {}",
                table::millis(o.latency.0),
                table::millis(o.latency.1)
            ),
            o.load.render(),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_budget_is_the_sweeps_of_rekey_token() {
        let pauses: Duration = (1..ATTEMPTS).map(pause_after).sum();
        assert_eq!(pauses, Duration::from_millis(4500));
        assert_eq!(pause_after(1), Duration::from_millis(100));
        assert_eq!(pause_after(12), Duration::from_secs(1));
    }
}
