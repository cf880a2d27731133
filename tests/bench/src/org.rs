//! One benchmark world: a temporary directory, an org emulator seeded with rekey's admin app and
//! N integration apps, a `rekey.toml` with one credential per app on a file store, and the real
//! `rekey` binary run as a user would run it.

use futures_util::StreamExt as _;
use orgsim::{OrgSim, PropagationMode, Seed};
use rekey_api::{Certificate, KeyMaterial};
use rekey_salesforce::{
    AdminAuth, AppKind, MintConfig, Minter, SalesforceConfig, SalesforceTarget,
};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

/// What the bench's steps fail with; the message says what failed and why.
pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

/// The org id every world's emulator uses.
pub(crate) const ORG_ID: &str = "00D5g000000BENCHAA";
/// The org's name in `rekey.toml`.
pub(crate) const ORG: &str = "bench";
pub(crate) const ADMIN_USER: &str = "rekey-admin@bench.example";
pub(crate) const ADMIN_CONSUMER_KEY: &str = "3MVG9BenchRekeyAdminConsumerKey0001";
/// The user every integration app mints tokens for.
pub(crate) const INTEGRATION_USER: &str = "integration@bench.example";
/// Deploys spend this long in Pending and then as long in InProgress (the demo's setting).
pub(crate) const DEPLOY_PHASE_MS: u64 = 50;

/// The real `rekey` binary.
#[derive(Clone, Debug)]
pub(crate) struct Rekey {
    /// Its path.
    pub(crate) bin: PathBuf,
}

impl Rekey {
    /// `rekey ARGS` in `dir` with `dir/rekey.toml`, in a hermetic environment: no Salesforce or
    /// Vault variables and no test hooks from the caller, `HOME` and the token cache inside
    /// `dir`. Killed if dropped before it ends.
    pub(crate) fn command(&self, dir: &Path, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.args(args)
            .current_dir(dir)
            .env("REKEY_CONFIG", dir.join("rekey.toml"))
            .env("HOME", dir)
            .env("XDG_CACHE_HOME", dir.join("cache"))
            .env_remove("SF_ACCESS_TOKEN")
            .env_remove("SF_INSTANCE_URL")
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN")
            .env_remove("REKEY_TEST_HOLD_AT")
            .env_remove("REKEY_TEST_CLOCK_OFFSET_SECS")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `rekey ARGS` in `dir` to its end; its output whatever the exit status.
    pub(crate) async fn output(&self, dir: &Path, args: &[&str]) -> Result<Output, Error> {
        self.command(dir, args)
            .output()
            .await
            .map_err(|e| format!("cannot run {}: {e}", self.bin.display()).into())
    }

    /// Runs `rekey ARGS` in `dir`, which must exit 0; its output.
    pub(crate) async fn ok(&self, dir: &Path, args: &[&str]) -> Result<Output, Error> {
        let out = self.output(dir, args).await?;
        if out.status.success() {
            Ok(out)
        } else {
            // rekey never prints key bytes or tokens but for `token`'s stdout, which this
            // message leaves out.
            Err(format!(
                "rekey {} exited with {}:\n{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )
            .into())
        }
    }

    /// `rekey generate` of a key and a certificate valid for `days`, into `key` and `cert`.
    pub(crate) async fn generate(
        &self,
        dir: &Path,
        key: &Path,
        cert: &Path,
        cn: &str,
        days: u32,
    ) -> Result<(), Error> {
        let (key, cert, days) = (path_arg(key)?, path_arg(cert)?, days.to_string());
        let args = [
            "generate",
            "--key-out",
            key,
            "--cert-out",
            cert,
            "--cn",
            cn,
            "--days",
            &days,
        ];
        self.ok(dir, &args).await.map(drop)
    }
}

/// A path as a command-line argument.
pub(crate) fn path_arg(path: &Path) -> Result<&str, Error> {
    path.to_str()
        .ok_or_else(|| format!("{} is not UTF-8", path.display()).into())
}

/// Runs `openssl ARGS` to its end, which must succeed.
pub(crate) async fn openssl(args: &[&str]) -> Result<(), Error> {
    let out = tokio::process::Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run openssl (make bench installs it): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {} exited with {}:\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into())
    }
}

/// Runs the futures `jobs` makes for `0..n`, at most `limit` at a time; the first error.
pub(crate) async fn bounded<F, Fut>(n: usize, limit: usize, jobs: F) -> Result<(), Error>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    let mut results = futures_util::stream::iter((0..n).map(jobs)).buffer_unordered(limit.max(1));
    while let Some(result) = results.next().await {
        result?;
    }
    Ok(())
}

/// One integration app and the credential that manages its key.
#[derive(Clone, Debug)]
pub(crate) struct App {
    /// The credential's name in `rekey.toml` (also the file names of its first key pair).
    pub(crate) credential: String,
    /// The Connected App's full name.
    pub(crate) name: String,
    /// Its consumer key.
    pub(crate) consumer_key: String,
}

impl App {
    fn new(i: usize) -> App {
        App {
            credential: format!("app-{i:05}"),
            name: format!("Bench_App_{i:05}"),
            consumer_key: format!("3MVG9BenchAppConsumerKey{i:05}"),
        }
    }
}

/// How to build a [`World`].
#[derive(Clone, Debug)]
pub(crate) struct Spec {
    /// Integration apps (and credentials).
    pub(crate) apps: usize,
    /// Validity of each app's first certificate, in days.
    pub(crate) days: u32,
    /// The emulator's propagation window after a certificate change.
    pub(crate) propagation_secs: u64,
    /// What the token endpoint trusts during the window.
    pub(crate) propagation_mode: PropagationMode,
    /// Setup steps (first key pairs, imports) run this many at a time; also `[run] concurrency`.
    pub(crate) concurrency: usize,
}

/// A directory with keys, seed and config, and the emulator serving that seed.
pub(crate) struct World {
    /// Everything the world writes; removed on drop.
    pub(crate) dir: tempfile::TempDir,
    /// The org emulator, on a free loopback port.
    pub(crate) sim: OrgSim,
    /// The integration apps, in seed and config order.
    pub(crate) apps: Vec<App>,
    /// Wall time of the setup's `rekey generate` runs (the apps' first key pairs, `concurrency`
    /// at a time).
    pub(crate) keygen: Duration,
}

impl World {
    /// Makes the admin key with openssl and each app's first key pair with `rekey generate`,
    /// starts the emulator with those certificates on the apps, writes `rekey.toml` and imports
    /// every first key pair.
    pub(crate) async fn build(rekey: &Rekey, spec: &Spec) -> Result<World, Error> {
        let dir = tempfile::Builder::new().prefix("rekey-bench-").tempdir()?;
        let root = dir.path();
        admin_pair(root).await?;
        let apps: Vec<App> = (1..=spec.apps).map(App::new).collect();
        let started = Instant::now();
        bounded(apps.len(), spec.concurrency, |i| {
            let app = &apps[i];
            let key = root.join(format!("{}.key", app.credential));
            let crt = root.join(format!("{}.crt", app.credential));
            async move {
                rekey
                    .generate(root, &key, &crt, &app.credential, spec.days)
                    .await
            }
        })
        .await?;
        let keygen = started.elapsed();
        std::fs::write(root.join("seed.toml"), seed_toml(spec, &apps))?;
        let seed = Seed::from_path(&root.join("seed.toml"))
            .map_err(|e| format!("the bench's seed is invalid: {e}"))?;
        let sim = OrgSim::start(seed).await?;
        std::fs::write(
            root.join("rekey.toml"),
            config_toml(&sim.base_url(), spec.concurrency, &apps),
        )?;
        let world = World {
            dir,
            sim,
            apps,
            keygen,
        };
        let w = &world;
        bounded(w.apps.len(), spec.concurrency, |i| {
            let cred = w.apps[i].credential.as_str();
            async move {
                let (key, crt) = (format!("{cred}.key"), format!("{cred}.crt"));
                let args = ["import", cred, "--key", &key, "--cert", &crt];
                rekey.ok(w.path(), &args).await.map(drop)
            }
        })
        .await?;
        Ok(world)
    }

    /// The world's directory.
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The file store rekey.toml names.
    pub(crate) fn store(&self) -> rekey_file::FileStore {
        rekey_file::FileStore::new(self.path().join("keys"))
    }

    /// The certificate `app` holds now, as the emulator has it.
    pub(crate) fn app_certificate(&self, app: &App) -> Option<String> {
        self.sim.app_certificate_pem(&app.name)
    }

    /// A JWT-bearer client for `app`'s integration user (a consumer of its key).
    pub(crate) fn minter(&self, app: &App) -> Result<Minter, Error> {
        Ok(Minter::new(MintConfig {
            org: ORG.into(),
            login_url: self.sim.base_url(),
            audience: self.sim.base_url(),
            consumer_key: app.consumer_key.clone(),
            username: INTEGRATION_USER.into(),
            request_timeout: Duration::from_secs(30),
        })?)
    }

    /// The Salesforce target rekey itself uses for `app`, logged in with the admin key.
    pub(crate) fn target(&self, app: &App) -> Result<SalesforceTarget, Error> {
        let key = KeyMaterial::from_pem(std::fs::read_to_string(self.path().join("admin.key"))?)?;
        Ok(SalesforceTarget::new(SalesforceConfig {
            org: ORG.into(),
            login_url: self.sim.base_url(),
            audience: self.sim.base_url(),
            api_version: "67.0".into(),
            admin: AdminAuth::Jwt {
                consumer_key: ADMIN_CONSUMER_KEY.into(),
                username: ADMIN_USER.into(),
                key,
            }
            .into(),
            app_kind: AppKind::ConnectedApp,
            app: app.name.clone(),
            integration_username: INTEGRATION_USER.into(),
            consumer_key: Some(app.consumer_key.clone()),
            deploy_timeout: Duration::from_secs(600),
            request_timeout: Duration::from_secs(60),
        })?)
    }

    /// Stops the emulator; the directory goes when the world is dropped.
    pub(crate) async fn shutdown(self) {
        self.sim.shutdown().await;
    }
}

/// The SHA-256 fingerprint (lowercase hex, as `rekey token` prints it) of a PEM certificate.
pub(crate) fn fingerprint(pem: &str) -> Result<String, Error> {
    Ok(Certificate::from_pem(pem)?.fingerprint.to_hex())
}

/// The emulator's seed: rekey's admin app and user, the integration user, and the apps, each
/// with its first certificate (a file next to the seed).
fn seed_toml(spec: &Spec, apps: &[App]) -> String {
    let mode = match spec.propagation_mode {
        PropagationMode::Old => "old",
        PropagationMode::New => "new",
        PropagationMode::Either => "either",
        PropagationMode::Neither => "neither",
        PropagationMode::Random => "random",
    };
    let mut seed = format!(
        r#"[org]
id = "{ORG_ID}"
name = "Bench"

[settings]
deploy_phase_ms = {DEPLOY_PHASE_MS}
propagation_secs = {secs}
propagation_mode = "{mode}"
# The bench makes more API calls than a day's default allowance of a small org.
daily_api_requests = 1000000000
# 50 consumers minting every 2 s log one user in 90,000 times an hour, and a fleet's verifications
# log its integration user in once per app (1,000 apps: rekey's admin user several times that);
# Salesforce would throttle them at 3,600 an hour (the bench measures rotations, not the throttle).
logins_per_user_per_hour = 1000000000
# Salesforce runs one deploy at a time per org, and so does the emulator: `rekey run` publishes a
# fleet's certificates in one deployment per batch (`[run] max_batch`), not one per app.
deploys_one_at_a_time = true

{people}
"#,
        secs = spec.propagation_secs,
        people = people_seed(),
    );
    for app in apps {
        let _ = write!(
            seed,
            r#"
[[connected_apps]]
full_name = "{name}"
certificate_file = "{cred}.crt"
metadata = """<ConnectedApp xmlns="http://soap.sforce.com/2006/04/metadata">
    <contactEmail>bench@bench.example</contactEmail>
    <label>{name}</label>
    <oauthConfig>
        <callbackUrl>https://localhost/unused</callbackUrl>
        <consumerKey>{key}</consumerKey>
        <isAdminApproved>true</isAdminApproved>
        <scopes>Api</scopes>
    </oauthConfig>
    <profileName>Bench Integration</profileName>
    <sessionPolicy>
        <sessionTimeout>15</sessionTimeout>
    </sessionPolicy>
</ConnectedApp>"""
"#,
            name = app.name,
            cred = app.credential,
            key = app.consumer_key,
        );
    }
    seed
}

/// `rekey.toml`: the admin connection, the file store, `[run] concurrency`, and one credential
/// per app with its consumer key (so `rekey token` needs no admin connection), certificates of
/// a year renewed 30 days before they end.
fn config_toml(login_url: &str, concurrency: usize, apps: &[App]) -> String {
    let mut config = format!(
        r#"[orgs.{ORG}]
login_url = "{login_url}"

[orgs.{ORG}.admin]
auth = "jwt"
consumer_key = "{ADMIN_CONSUMER_KEY}"
username = "{ADMIN_USER}"
key_file = "admin.key"

[stores.local]
kind = "file"
path = "keys"

[run]
concurrency = {concurrency}
"#
    );
    for app in apps {
        let _ = write!(
            config,
            r#"
[credentials.{cred}]
org = "{ORG}"
app_kind = "connected_app"
app = "{name}"
username = "{INTEGRATION_USER}"
consumer_key = "{key}"
store = "local"
key_algorithm = "rsa-2048"
validity_days = 365
renew_before_days = 30
verify_timeout_secs = 300
subject = {{ cn = "{cred}" }}
"#,
            cred = app.credential,
            name = app.name,
            key = app.consumer_key,
        );
    }
    config
}

/// The profiles, users and rekey's admin app every bench org has: the admin (System
/// Administrator) and the integration user its apps log in as.
pub(crate) fn people_seed() -> String {
    format!(
        r#"[[profiles]]
name = "System Administrator"
permissions = ["ModifyAllData", "ModifyMetadata", "CustomizeApplication", "ViewSetup", "ApiEnabled"]

[[profiles]]
name = "Bench Integration"
permissions = ["ApiEnabled"]

[[users]]
username = "{ADMIN_USER}"
profile = "System Administrator"

[[users]]
username = "{INTEGRATION_USER}"
profile = "Bench Integration"

{admin_app}
"#,
        admin_app = admin_app_seed(),
    )
}

/// rekey's own admin app in a bench seed: a Connected App whose certificate is `admin.crt`,
/// pre-authorized for the System Administrator profile.
pub(crate) fn admin_app_seed() -> String {
    format!(
        r#"[[connected_apps]]
full_name = "Rekey_Admin"
certificate_file = "admin.crt"
metadata = """<ConnectedApp xmlns="http://soap.sforce.com/2006/04/metadata">
    <contactEmail>bench@bench.example</contactEmail>
    <label>rekey admin</label>
    <oauthConfig>
        <callbackUrl>https://localhost/unused</callbackUrl>
        <consumerKey>{ADMIN_CONSUMER_KEY}</consumerKey>
        <isAdminApproved>true</isAdminApproved>
        <scopes>Api</scopes>
        <scopes>Full</scopes>
    </oauthConfig>
    <profileName>System Administrator</profileName>
</ConnectedApp>""""#
    )
}

/// rekey's admin key and certificate (`admin.key`, `admin.crt` in `root`), made with openssl.
pub(crate) async fn admin_pair(root: &Path) -> Result<(), Error> {
    let (admin_key, admin_crt) = (root.join("admin.key"), root.join("admin.crt"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "30",
        "-subj",
        "/CN=rekey-admin",
        "-keyout",
        path_arg(&admin_key)?,
        "-out",
        path_arg(&admin_crt)?,
    ])
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_and_config_name_every_app_once() {
        let apps: Vec<App> = (1..=3).map(App::new).collect();
        let spec = Spec {
            apps: 3,
            days: 10,
            propagation_secs: 5,
            propagation_mode: PropagationMode::Random,
            concurrency: 2,
        };
        let seed = seed_toml(&spec, &apps);
        assert!(seed.contains("propagation_mode = \"random\""));
        assert!(seed.contains("propagation_secs = 5\n"));
        let config = config_toml("http://127.0.0.1:1", 2, &apps);
        assert!(config.contains("concurrency = 2\n"));
        for app in &apps {
            assert_eq!(seed.matches(&format!(">{}<", app.consumer_key)).count(), 1);
            assert_eq!(
                config.matches(&format!("\"{}\"", app.consumer_key)).count(),
                1
            );
            assert_eq!(
                config
                    .matches(&format!("[credentials.{}]", app.credential))
                    .count(),
                1
            );
        }
        assert_eq!(App::new(7).name, "Bench_App_00007");
    }
}
