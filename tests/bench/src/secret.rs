//! Consumer secret rotation: consumers on the client credentials flow log in continuously with
//! the External Client App's consumer key and secret they hold, through one `rekey rotate` of
//! that pair (Salesforce's staged credentials) and the deletion of the previous pair, either
//! once every consumer moved (`rekey retire`, as rekey's adoption tracking does) or right after
//! the rotation (what a tool without adoption tracking does).

use crate::machine::{CpuMeter, Load};
use crate::org::{self, Error, Rekey, World};
use crate::stats::{self, MintRecord, Switch};
use crate::table::{self, Align, Table};
use orgsim::{OrgSim, Seed};
use rekey_api::{ConsumerSecret, SecretStore as _, Stage};
use rekey_file::FileStore;
use rekey_salesforce::{ClientCredentialsConfig, ClientCredentialsMinter, Mint};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The credential's name in `rekey.toml`.
const CREDENTIAL: &str = "etl";
/// The External Client App whose consumer key and secret are rotated.
const APP: &str = "Nightly_ETL";
/// The app's run-as user for the client credentials flow.
const RUN_AS: &str = "etl-runner@bench.example";

/// When the previous pair is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// `rekey rotate`, then `rekey retire` once every consumer logs in with the new pair.
    Rekey,
    /// `rekey rotate`, then `rekey retire` at once: the previous pair is deleted right after
    /// the rotation, as a tool without adoption tracking does.
    Naive,
}

impl Strategy {
    /// Both, in table order.
    pub(crate) const ALL: [Strategy; 2] = [Strategy::Rekey, Strategy::Naive];

    /// How the table names it.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Strategy::Rekey => "`rekey rotate`; `rekey retire` once all consumers moved",
            Strategy::Naive => "naive: `rekey rotate`, old pair deleted at once",
        }
    }
}

/// The consumers' behaviour and the phases of one run.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    /// Consumers logging in at once.
    pub(crate) consumers: usize,
    /// Pause between a consumer's logins (each one drawn from 0.5–1.5 times this).
    pub(crate) interval: Duration,
    /// How often a consumer reads the store's CURRENT pair again on its own (each consumer at
    /// its own phase).
    pub(crate) refresh: Duration,
    /// Logging in before the rotation starts.
    pub(crate) warmup: Duration,
    /// Logging in after the previous pair was deleted and every consumer moved.
    pub(crate) settle: Duration,
    /// Give up waiting for every consumer to move after this (the previous pair is then
    /// retired anyway, and the table says who never moved).
    pub(crate) adopt_timeout: Duration,
    /// Print what `rekey rotate` and `rekey retire` printed to stderr.
    pub(crate) verbose: bool,
}

/// What one strategy's run measured.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// Which strategy.
    pub(crate) strategy: Strategy,
    /// Consumers.
    pub(crate) consumers: usize,
    /// Logins in all.
    pub(crate) logins: usize,
    /// Logins Salesforce refused (or that got no answer).
    pub(crate) failed: usize,
    /// From the rotation's start until the last consumer logged in with the new pair (and
    /// never with the old one again); `None` if the rotation failed.
    pub(crate) switch: Option<Switch>,
    /// From the rotation's start until the previous pair was deleted.
    pub(crate) retired: Option<Duration>,
    /// Wall time of `rekey rotate` (naive: `rekey rotate` and `rekey retire`), or why it
    /// failed.
    pub(crate) rotation: Result<Duration, String>,
    /// Median and 99th percentile of a login's duration.
    pub(crate) latency: (Duration, Duration),
    /// How busy the machine was from the first consumer's start to the last one's end.
    pub(crate) load: Load,
}

impl Outcome {
    /// The table's verdict: the goal is no failed login and every consumer on the new pair.
    fn verdict(&self) -> String {
        match (self.strategy, &self.rotation, &self.switch) {
            (_, Err(_), _) => "FAIL: the rotation failed".into(),
            (Strategy::Naive, _, _) => format!(
                "contrast: {} failed logins without the overlap",
                self.failed
            ),
            (Strategy::Rekey, _, Some(Switch::NotAll { missing, .. })) => {
                format!("FAIL: {missing} consumers never moved")
            }
            (Strategy::Rekey, _, _) if self.failed > 0 => {
                format!("FAIL: {} failed logins (goal 0)", self.failed)
            }
            (Strategy::Rekey, _, _) => "pass: 0 failed logins (goal 0)".into(),
        }
    }
}

/// A world with rekey's admin app and the `Nightly_ETL` External Client App (client
/// credentials flow), its current consumer key and secret imported from Salesforce into the
/// file store as credential `etl`.
pub(crate) async fn prepare(rekey: &Rekey) -> Result<World, Error> {
    let dir = tempfile::Builder::new()
        .prefix("rekey-bench-secret-")
        .tempdir()?;
    let root = dir.path();
    org::admin_pair(root).await?;
    std::fs::write(root.join("seed.toml"), seed_toml())?;
    let seed = Seed::from_path(&root.join("seed.toml"))
        .map_err(|e| format!("the bench's consumer secret seed is invalid: {e}"))?;
    let sim = OrgSim::start(seed).await?;
    std::fs::write(root.join("rekey.toml"), config_toml(&sim.base_url()))?;
    let world = World {
        dir,
        sim,
        apps: Vec::new(),
        keygen: Duration::ZERO,
    };
    rekey.ok(world.path(), &["import", CREDENTIAL]).await?;
    Ok(world)
}

/// The store's CURRENT consumer key and secret.
async fn read_current(store: &FileStore) -> Option<ConsumerSecret> {
    let stored = store.read_stage(CREDENTIAL, Stage::Current).await.ok()??;
    match stored.material {
        rekey_api::Material::Consumer(pair) => Some(pair),
        rekey_api::Material::Key(_) | rekey_api::Material::Custody(_) => None,
    }
}

/// What every consumer shares: the run's start, the stop flag, the record of logins.
#[derive(Clone)]
struct Shared {
    start: Instant,
    stop: Arc<AtomicBool>,
    records: Arc<Mutex<Vec<MintRecord>>>,
}

/// Logs in until told to stop, recording each login with the consumer key it used. The pair
/// comes from the store's CURRENT: at the start, every `refresh`, and after a refused login
/// (which counts as failed; the next login uses what was read).
async fn consume(
    id: usize,
    store: FileStore,
    minter: Arc<ClientCredentialsMinter>,
    options: Options,
    shared: Shared,
) {
    // Consumers start spread over one interval and re-read at phases of their own, as
    // independent jobs would.
    tokio::time::sleep(options.interval.mul_f64(rand::random::<f64>())).await;
    let mut held = read_current(&store).await;
    let mut next_read = Instant::now() + options.refresh.mul_f64(rand::random::<f64>());
    while !shared.stop.load(Ordering::SeqCst) {
        if Instant::now() >= next_read {
            if let Some(fresh) = read_current(&store).await {
                held = Some(fresh);
            }
            next_read = Instant::now() + options.refresh;
        }
        let started = Instant::now();
        let granted = match &held {
            Some(pair) => matches!(minter.mint(pair).await, Ok(Mint::Granted(_))),
            None => false,
        };
        let record = MintRecord {
            consumer: id,
            at: shared.start.elapsed(),
            took: started.elapsed(),
            // The consumer key tells the pairs apart (it changes with the secret).
            fingerprint: granted
                .then(|| held.as_ref().map(|p| p.key().to_string()))
                .flatten(),
        };
        shared.records.lock().unwrap().push(record);
        if !granted {
            if let Some(fresh) = read_current(&store).await {
                held = Some(fresh);
            }
            next_read = Instant::now() + options.refresh;
        }
        tokio::time::sleep(options.interval.mul_f64(rand::random_range(0.5..1.5))).await;
    }
}

/// Whether every consumer's last successful login used `key`, from what was recorded so far.
fn all_on(shared: &Shared, consumers: usize, key: &str) -> bool {
    let records = shared.records.lock().unwrap().clone();
    matches!(stats::switch(&records, consumers, key), Switch::All { .. })
}

/// Waits until every consumer logs in with `key`, polling every 50 ms, for at most `limit`.
async fn wait_all_on(shared: &Shared, consumers: usize, key: &str, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if all_on(shared, consumers, key) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    all_on(shared, consumers, key)
}

/// `rekey ARGS`, its output on stderr with `verbose`.
async fn rekey_step(
    rekey: &Rekey,
    world: &World,
    args: &[&str],
    verbose: bool,
) -> Result<(), Error> {
    let out = rekey.ok(world.path(), args).await?;
    if verbose {
        eprint!("{}", String::from_utf8_lossy(&out.stdout));
    }
    Ok(())
}

/// One strategy through one rotation in `world` (from [`prepare`]): the consumers start, the
/// rotation starts after `options.warmup`, the previous pair is retired as the strategy says,
/// and the run ends `options.settle` after every consumer moved. The world is shut down at the
/// end.
pub(crate) async fn run(
    rekey: &Rekey,
    world: World,
    strategy: Strategy,
    options: &Options,
) -> Result<Outcome, Error> {
    let store = world.store();
    let minter = Arc::new(ClientCredentialsMinter::new(ClientCredentialsConfig {
        org: org::ORG.into(),
        login_url: world.sim.base_url(),
        request_timeout: Duration::from_secs(30),
    })?);
    let old_key = read_current(&store)
        .await
        .ok_or("the store holds no CURRENT consumer secret")?
        .key()
        .to_string();
    let shared = Shared {
        start: Instant::now(),
        stop: Arc::new(AtomicBool::new(false)),
        records: Arc::new(Mutex::new(Vec::new())),
    };
    let meter = CpuMeter::start();
    let consumers: Vec<_> = (0..options.consumers)
        .map(|id| {
            tokio::spawn(consume(
                id,
                store.clone(),
                minter.clone(),
                options.clone(),
                shared.clone(),
            ))
        })
        .collect();

    tokio::time::sleep(options.warmup).await;
    let began = shared.start.elapsed();
    let started = Instant::now();
    let mut retired = None;
    let rotation: Result<Duration, Error> = async {
        rekey_step(rekey, &world, &["rotate", CREDENTIAL], options.verbose).await?;
        if strategy == Strategy::Naive {
            rekey_step(rekey, &world, &["retire", CREDENTIAL], options.verbose).await?;
            retired = Some(started.elapsed());
        }
        Ok(started.elapsed())
    }
    .await;
    let new_key = read_current(&store)
        .await
        .map(|p| p.key().to_string())
        .filter(|k| *k != old_key);
    if let (Ok(_), Some(key)) = (&rotation, &new_key) {
        wait_all_on(&shared, options.consumers, key, options.adopt_timeout).await;
        if strategy == Strategy::Rekey {
            rekey_step(rekey, &world, &["retire", CREDENTIAL], options.verbose).await?;
            retired = Some(started.elapsed());
        }
    }
    tokio::time::sleep(options.settle).await;
    shared.stop.store(true, Ordering::SeqCst);
    for consumer in consumers {
        consumer.await?;
    }
    let load = meter.stop();

    let records = std::mem::take(&mut *shared.records.lock().unwrap());
    let switch = match (&rotation, &new_key) {
        (Ok(_), Some(key)) => Some(stats::switch(&records, options.consumers, key).since(began)),
        _ => None,
    };
    let took: Vec<Duration> = records.iter().map(|r| r.took).collect();
    let outcome = Outcome {
        strategy,
        consumers: options.consumers,
        logins: records.len(),
        failed: records.iter().filter(|r| !r.ok()).count(),
        switch,
        retired,
        rotation: rotation.map_err(|e| e.to_string()),
        latency: (
            stats::median(&took).unwrap_or_default(),
            stats::percentile(&took, 99.0).unwrap_or_default(),
        ),
        load,
    };
    world.shutdown().await;
    Ok(outcome)
}

/// The consumer secret table: one row per strategy.
pub(crate) fn table(outcomes: &[Outcome]) -> String {
    let mut t = Table::new(&[
        ("strategy", Align::Left),
        ("consumers", Align::Right),
        ("logins", Align::Right),
        ("failed", Align::Right),
        (
            "rotation start → last consumer on new pair (median consumer)",
            Align::Right,
        ),
        ("old pair deleted at", Align::Right),
        ("rotation wall time", Align::Right),
        ("login p50 / p99", Align::Right),
        ("CPU busy avg / peak", Align::Right),
        ("verdict", Align::Left),
    ]);
    for o in outcomes {
        let switch = match &o.switch {
            None => "rotation failed".to_string(),
            Some(Switch::All { last, median }) => {
                format!("{} ({})", table::secs(*last), table::secs(*median))
            }
            Some(Switch::NotAll { missing, of }) => {
                format!("not all: {missing} of {of} never moved")
            }
        };
        let rotation = match &o.rotation {
            Ok(d) => table::secs(*d),
            Err(_) => "failed".to_string(),
        };
        t.row(vec![
            o.strategy.label().to_string(),
            o.consumers.to_string(),
            o.logins.to_string(),
            o.failed.to_string(),
            switch,
            o.retired.map_or("never".into(), table::secs),
            rotation,
            format!(
                "{} / {}",
                table::millis(o.latency.0),
                table::millis(o.latency.1)
            ),
            o.load.render(),
            o.verdict(),
        ]);
    }
    t.render()
}

/// The emulator's seed: rekey's admin app and user (allowed to read and rotate consumer
/// secrets), and the `Nightly_ETL` app with its run-as user, as in the demo seed.
fn seed_toml() -> String {
    let (org_id, admin) = (org::ORG_ID, org::ADMIN_USER);
    format!(
        r#"[org]
id = "{org_id}"
name = "Bench"

[settings]
deploy_phase_ms = {phase}
daily_api_requests = 1000000000
# 50 consumers logging in every 2 s log the run-as user in 90,000 times an hour; Salesforce would
# throttle them at 3,600 (the bench measures the rotation, not the throttle).
logins_per_user_per_hour = 1000000000
# "Allow access to External Client App consumer secrets via REST API".
eca_secrets_over_rest = true

[[profiles]]
name = "System Administrator"
permissions = ["ModifyAllData", "ModifyMetadata", "CustomizeApplication", "ViewSetup", "ApiEnabled", "ExternalClientAppDeveloper", "ViewClientSecret"]

[[profiles]]
name = "ETL Run-As"
permissions = ["ApiEnabled", "ApiUserOnly"]

[[users]]
username = "{admin}"
profile = "System Administrator"

[[users]]
username = "{RUN_AS}"
profile = "ETL Run-As"

{admin_app}

[[external_client_apps]]
name = "{APP}"
header = """<ExternalClientApplication xmlns="http://soap.sforce.com/2006/04/metadata">
    <contactEmail>bench@bench.example</contactEmail>
    <distributionState>Local</distributionState>
    <isProtected>false</isProtected>
    <label>Nightly ETL</label>
</ExternalClientApplication>"""
oauth_settings = """<ExtlClntAppOauthSettings xmlns="http://soap.sforce.com/2006/04/metadata">
    <commaSeparatedOauthScopes>Api</commaSeparatedOauthScopes>
    <externalClientApplication>{APP}</externalClientApplication>
    <label>Nightly ETL OAuth</label>
</ExtlClntAppOauthSettings>"""
global_oauth_settings = """<ExtlClntAppGlobalOauthSettings xmlns="http://soap.sforce.com/2006/04/metadata">
    <callbackUrl>https://localhost/unused</callbackUrl>
    <consumerKey>3MVG9BenchNightlyEtlConsumerKey01</consumerKey>
    <externalClientApplication>{APP}</externalClientApplication>
    <isClientCredentialsFlowEnabled>true</isClientCredentialsFlowEnabled>
    <isConsumerSecretOptional>false</isConsumerSecretOptional>
    <isIntrospectAllTokens>false</isIntrospectAllTokens>
    <isPkceRequired>false</isPkceRequired>
    <isSecretRequiredForRefreshToken>true</isSecretRequiredForRefreshToken>
    <label>Nightly ETL Global OAuth</label>
    <shouldRotateConsumerKey>false</shouldRotateConsumerKey>
    <shouldRotateConsumerSecret>false</shouldRotateConsumerSecret>
</ExtlClntAppGlobalOauthSettings>"""
oauth_policies = """<ExtlClntAppOauthConfigurablePolicies xmlns="http://soap.sforce.com/2006/04/metadata">
    <clientCredentialsFlowUser>{RUN_AS}</clientCredentialsFlowUser>
    <externalClientApplication>{APP}</externalClientApplication>
    <ipRelaxationPolicyType>Enforce</ipRelaxationPolicyType>
    <isClientCredentialsFlowEnabled>true</isClientCredentialsFlowEnabled>
    <label>Nightly ETL Policies</label>
    <permittedUsersPolicyType>AdminApprovedPreAuthorized</permittedUsersPolicyType>
    <sessionTimeoutInMinutes>15</sessionTimeoutInMinutes>
</ExtlClntAppOauthConfigurablePolicies>"""
policies = """<ExtlClntAppConfigurablePolicies xmlns="http://soap.sforce.com/2006/04/metadata">
    <externalClientApplication>{APP}</externalClientApplication>
    <isEnabled>true</isEnabled>
    <isOauthPluginEnabled>true</isOauthPluginEnabled>
    <label>Nightly ETL Plugin Policies</label>
</ExtlClntAppConfigurablePolicies>"""
"#,
        phase = org::DEPLOY_PHASE_MS,
        admin_app = org::admin_app_seed(),
    )
}

/// `rekey.toml`: the admin connection, the file store, and the consumer secret credential
/// (as `tests/demo/etl.toml` has it, on this org).
fn config_toml(login_url: &str) -> String {
    let (name, admin, admin_key) = (org::ORG, org::ADMIN_USER, org::ADMIN_CONSUMER_KEY);
    format!(
        r#"[orgs.{name}]
login_url = "{login_url}"

[orgs.{name}.admin]
auth = "jwt"
consumer_key = "{admin_key}"
username = "{admin}"
key_file = "admin.key"

[stores.local]
kind = "file"
path = "keys"

[credentials.{CREDENTIAL}]
kind = "consumer_secret"
org = "{name}"
app_kind = "external_client_app"
app = "{APP}"
store = "local"
verify_timeout_secs = 60
revoke_previous_after_hours = 24
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_and_config_name_the_app_its_run_as_user_and_the_credential() {
        let seed = seed_toml();
        assert!(seed.contains(&format!("<clientCredentialsFlowUser>{RUN_AS}<")));
        assert!(seed.contains("eca_secrets_over_rest = true"));
        let config = config_toml("http://127.0.0.1:1");
        assert!(config.contains("[credentials.etl]\nkind = \"consumer_secret\""));
        assert!(config.contains("app = \"Nightly_ETL\""));
    }
}
