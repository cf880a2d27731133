//! The world the end-to-end and fault-matrix tests run the real `rekey` binary in: a temporary
//! directory with keys made by `openssl` the way the Salesforce docs tell users to make them, the
//! shared demo seed (tests/demo), an org emulator on a free loopback port, a `rekey.toml` pointing
//! at it, and optionally a Vault (OpenBao) or AWS (moto) store.

// Each test crate that includes this module uses a different subset of it.
#![allow(dead_code)]

use orgsim::{OrgSim, PropagationMode, Seed};
use rekey_testkit::moto::Moto;
use rekey_testkit::openbao::OpenBao;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

pub(crate) struct World {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) sim: OrgSim,
    /// Everything any rekey command printed, for the key-leak check.
    pub(crate) printed: Vec<String>,
    /// Environment given to every rekey command.
    pub(crate) env: Vec<(String, String)>,
}

pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

pub(crate) fn openssl(args: &[&str]) -> Output {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl must be installed (make test installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `name.key` and `name.crt` made with openssl as the Salesforce docs tell users to: RSA-2048,
/// a 30-day certificate, the "existing" key a world starts with.
pub(crate) fn legacy_pair(dir: &Path, name: &str) {
    self_signed(dir, name, &format!("{name}-legacy"), 2048, 30);
}

/// `name.key` and a self-signed `name.crt` for CN `cn` (RSA of `bits`, valid `days` from now),
/// by openssl.
pub(crate) fn self_signed(dir: &Path, name: &str, cn: &str, bits: u32, days: u32) {
    let key = dir.join(format!("{name}.key"));
    let crt = dir.join(format!("{name}.crt"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        &format!("rsa:{bits}"),
        "-nodes",
        "-days",
        &days.to_string(),
        "-subj",
        &format!("/CN={cn}"),
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        crt.to_str().unwrap(),
    ]);
}

/// `name.key` and `name.crt` whose validity ended ten days ago (openssl cannot date a
/// certificate in the past, rcgen can).
pub(crate) fn expired_pair(dir: &Path, name: &str) {
    let key = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        .unwrap();
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(400);
    params.not_after = now - time::Duration::days(10);
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
}

impl World {
    pub(crate) async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        for name in ["admin", "billing", "billing-eca"] {
            legacy_pair(dir.path(), name);
        }
        let w = World::from_folder(dir, "tests/demo").await;
        // The demo's propagation window is for people watching; a test that wants one sets it.
        w.sim.set_propagation(0, PropagationMode::Either);
        w
    }

    /// A world in `dir` (its keys and certificates made) from `folder`'s `seed.toml` and
    /// `rekey.toml.in`: the emulator started on the seed, the config pointed at it.
    async fn from_folder(dir: tempfile::TempDir, folder: &str) -> World {
        let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join(folder);
        std::fs::copy(folder.join("seed.toml"), dir.path().join("seed.toml")).unwrap();
        let sim = OrgSim::start(Seed::from_path(&dir.path().join("seed.toml")).unwrap())
            .await
            .unwrap();
        let config = std::fs::read_to_string(folder.join("rekey.toml.in"))
            .unwrap()
            .replace("@LOGIN_URL@", &sim.base_url());
        std::fs::write(dir.path().join("rekey.toml"), config).unwrap();
        World {
            dir,
            sim,
            printed: Vec::new(),
            env: Vec::new(),
        }
    }

    /// The governance world: the org of tests/governance/seed.toml (apps that trip every audit
    /// finding and apps that trip none) with certificates made now — RSA-2048 valid a year
    /// (admin, clean), RSA-1024 (weak), expiring in ten days, expired ten days ago — and
    /// tests/governance/rekey.toml.in managing Clean_JWT and Clean_ECA.
    pub(crate) async fn governance() -> World {
        let dir = tempfile::tempdir().unwrap();
        for (name, bits, days) in [
            ("admin", 2048, 365),
            ("clean", 2048, 365),
            ("weak", 1024, 365),
            ("expiring", 2048, 10),
        ] {
            self_signed(dir.path(), name, name, bits, days);
        }
        expired_pair(dir.path(), "expired");
        World::from_folder(dir, "tests/governance").await
    }

    /// A world with only the `billing` Connected App's credential, its openssl-made key (already
    /// on the app) imported.
    pub(crate) async fn billing_only() -> World {
        let mut w = World::new().await;
        w.drop_credential("billing-eca");
        w.import_legacy("billing").await;
        w
    }

    /// A world with only the `etl` consumer secret credential (the Nightly_ETL External Client
    /// App, client credentials flow; tests/demo/etl.toml), its current pair imported from
    /// Salesforce.
    pub(crate) async fn etl_only() -> World {
        let mut w = World::new().await;
        w.use_etl_only("local");
        w.ok(&["import", "etl"]).await;
        w
    }

    /// Replaces the config's credentials with the `etl` consumer secret credential of
    /// tests/demo/etl.toml, kept in store `store` (not imported yet).
    pub(crate) fn use_etl_only(&self, store: &str) {
        self.drop_credential("billing");
        self.drop_credential("billing-eca");
        let etl = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/demo/etl.toml"),
        )
        .unwrap()
        .replacen("store = \"local\"", &format!("store = \"{store}\""), 1);
        self.edit_config(|c| format!("{c}\n{etl}"));
    }

    /// The Nightly_ETL app's consumer state as Salesforce holds it.
    pub(crate) fn etl_consumer(&self) -> orgsim::ConsumerInfo {
        self.sim
            .eca_consumer("Nightly_ETL")
            .expect("the demo seed has Nightly_ETL")
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub(crate) async fn rekey(&mut self, args: &[&str]) -> Run {
        self.rekey_with_env(args, &[]).await
    }

    /// The `rekey` command this world runs: its config, a hermetic environment (no Vault or
    /// Salesforce variables, no ~/.vault-token from the machine) plus `self.env`.
    pub(crate) fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_rekey"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("REKEY_CONFIG", self.path("rekey.toml"))
            .env_remove("SF_ACCESS_TOKEN")
            .env_remove("SF_INSTANCE_URL")
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN")
            .env_remove("REKEY_TEST_HOLD_AT")
            .env("HOME", self.dir.path())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .kill_on_drop(true);
        cmd
    }

    /// `bash -c script` in this world's folder and environment (as [`World::command`] sets it),
    /// with `$REKEY` the binary: for what only a shell can set up (closed descriptors, a pty).
    pub(crate) fn shell(&self, script: &str) -> tokio::process::Command {
        let rekey = self.command(&[]);
        let mut shell = tokio::process::Command::new("bash");
        shell
            .args(["-c", script])
            .current_dir(self.dir.path())
            .env("REKEY", rekey.as_std().get_program())
            .kill_on_drop(true);
        for (key, value) in rekey.as_std().get_envs() {
            match value {
                Some(value) => shell.env(key, value),
                None => shell.env_remove(key),
            };
        }
        shell
    }

    /// Keeps what a finished command printed, for the key-leak check.
    pub(crate) fn record(&mut self, args: &[&str], out: std::process::Output) -> Run {
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        };
        self.printed.push(format!(
            "$ rekey {}\n{}{}",
            args.join(" "),
            run.stdout,
            run.stderr
        ));
        run
    }

    pub(crate) async fn rekey_with_env(&mut self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let out = self
            .command(args)
            .envs(env.iter().copied())
            .output()
            .await
            .unwrap();
        self.record(args, out)
    }

    /// Puts the openssl-made key of `credential` (already on its app) under rekey's management.
    pub(crate) async fn import_legacy(&mut self, credential: &str) {
        let (key, crt) = (format!("{credential}.key"), format!("{credential}.crt"));
        self.ok(&["import", credential, "--key", &key, "--cert", &crt])
            .await;
    }

    /// Replaces the `[orgs.acme.admin]` table with `table` (its lines, without the header).
    pub(crate) fn set_admin(&self, table: &str) {
        self.edit_config(|c| {
            let (start, end) = (
                c.find("[orgs.acme.admin]").unwrap(),
                c.find("[stores.local]").unwrap(),
            );
            format!("{}[orgs.acme.admin]\n{table}\n\n{}", &c[..start], &c[end..])
        });
    }

    /// Rewrites `rekey.toml` through `edit`.
    pub(crate) fn edit_config(&self, edit: impl FnOnce(String) -> String) {
        let path = self.path("rekey.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, edit(text)).unwrap();
    }

    /// Moves rekey's clock and the org emulator's clock `secs` ahead of real time (both, so JWTs
    /// rekey signs are judged by the same clock that judges them).
    pub(crate) fn set_clock(&mut self, secs: i64) {
        self.env
            .retain(|(k, _)| k != "REKEY_TEST_CLOCK_OFFSET_SECS");
        self.env
            .push(("REKEY_TEST_CLOCK_OFFSET_SECS".into(), secs.to_string()));
        self.sim.set_clock_offset(secs);
    }

    /// `rekey args` with rekey's clock `secs` further ahead than the world's, for this one
    /// process: the org emulator, the test and every other command keep their clocks. How a test
    /// lets a lease run out (leases are judged by rekey's clock) without waiting for it.
    pub(crate) async fn rekey_ahead(&mut self, secs: i64, args: &[&str]) -> Run {
        let world: i64 = self
            .env
            .iter()
            .rfind(|(k, _)| k == "REKEY_TEST_CLOCK_OFFSET_SECS")
            .map_or(0, |(_, v)| v.parse().unwrap());
        let offset = (world + secs).to_string();
        self.rekey_with_env(args, &[("REKEY_TEST_CLOCK_OFFSET_SECS", &offset)])
            .await
    }

    /// [`World::rekey_ahead`], which must answer 0.
    pub(crate) async fn ok_ahead(&mut self, secs: i64, args: &[&str]) -> Run {
        let run = self.rekey_ahead(secs, args).await;
        assert_eq!(
            run.code, 0,
            "rekey {args:?} (clock {secs}s ahead) failed:\n{}{}",
            run.stdout, run.stderr
        );
        run
    }

    /// Removes a credential's section (the demo config's credentials each have one table).
    pub(crate) fn drop_credential(&self, name: &str) {
        let header = format!("[credentials.{name}]");
        self.edit_config(|c| {
            let start = c.find(&header).expect("the credential is in the config");
            let end = c[start + header.len()..]
                .find("\n[")
                .map_or(c.len(), |i| start + header.len() + i + 1);
            format!("{}{}", &c[..start], &c[end..])
        });
    }

    pub(crate) async fn ok(&mut self, args: &[&str]) -> Run {
        let run = self.rekey(args).await;
        assert_eq!(
            run.code, 0,
            "rekey {args:?} failed:\n{}{}",
            run.stdout, run.stderr
        );
        run
    }

    pub(crate) async fn json(&mut self, args: &[&str]) -> serde_json::Value {
        let mut args = args.to_vec();
        args.push("--json");
        let run = self.ok(&args).await;
        serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("{args:?} printed non-JSON ({e}):\n{}", run.stdout))
    }

    /// `args --json` whatever its exit code, parsed.
    pub(crate) async fn json_any(&mut self, args: &[&str]) -> serde_json::Value {
        let mut args = args.to_vec();
        args.push("--json");
        let run = self.rekey(&args).await;
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?} printed non-JSON ({e}):\n{}{}",
                run.stdout, run.stderr
            )
        })
    }

    /// The fingerprint of the file store's CURRENT certificate for `credential`.
    pub(crate) async fn current_fingerprint(&mut self, credential: &str) -> String {
        let status = self.json(&["status", credential]).await;
        status[0]["fingerprint"].as_str().unwrap().to_string()
    }

    pub(crate) fn app_fingerprint(&self, app: &str) -> String {
        let pem = self
            .sim
            .app_certificate_pem(app)
            .expect("app holds a certificate");
        rekey_api_fingerprint(&pem)
    }

    /// Asserts that no private key held anywhere in this world was printed or journaled.
    pub(crate) fn assert_no_key_bytes_leaked(&self) {
        self.assert_no_key_bytes_leaked_with(&[]);
    }

    /// [`World::assert_no_key_bytes_leaked`], also for `remote` keys (PEM) the test read back
    /// from Vault or AWS, which never touch this world's disk.
    pub(crate) fn assert_no_key_bytes_leaked_with(&self, remote: &[String]) {
        let mut secrets: Vec<String> = remote
            .iter()
            .flat_map(|pem| {
                pem.lines()
                    .filter(|l| !l.starts_with("-----") && l.len() > 20)
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        for entry in walk(self.dir.path()) {
            if entry.extension().is_some_and(|e| e == "key") {
                let pem = std::fs::read_to_string(&entry).unwrap();
                secrets.extend(
                    // The short last line of a body too: it is the piece length heuristics miss.
                    pem.lines()
                        .filter(|l| !l.starts_with("-----") && l.len() >= 12)
                        .map(str::to_string),
                );
            }
        }
        assert!(
            secrets.len() > 50,
            "expected several keys in the world, found {} key lines",
            secrets.len()
        );
        let mut haystacks = self.printed.clone();
        for entry in walk(self.dir.path())
            .into_iter()
            .filter(|p| p.file_name().is_some_and(|n| n == "journal.jsonl"))
        {
            haystacks.push(std::fs::read_to_string(entry).unwrap());
        }
        for text in &haystacks {
            assert!(!text.contains("PRIVATE KEY"), "key armour printed:\n{text}");
            for line in &secrets {
                assert!(
                    !text.contains(line.as_str()),
                    "private key bytes printed:\n{text}"
                );
            }
        }
    }
}

/// An access token of the org's admin user (rekey's own admin app), minted outside rekey, as an
/// administrator's other tools (`sf`, an SF_ACCESS_TOKEN export) hold one.
pub(crate) async fn admin_access_token(w: &World) -> String {
    let key = std::fs::read_to_string(w.path("admin.key")).unwrap();
    jwt_grant(
        w,
        "3MVG9RekeyAdminConsumerKey0001",
        "rekey-admin@acme.example",
        &key,
    )
    .await["access_token"]
        .as_str()
        .expect("admin token")
        .to_string()
}

/// A JWT-bearer grant made outside rekey, as any holder of `key_pem` could: the token endpoint's
/// JSON answer (`access_token`, or `error` and `error_description`).
pub(crate) async fn jwt_grant(
    w: &World,
    consumer_key: &str,
    username: &str,
    key_pem: &str,
) -> serde_json::Value {
    let claims = serde_json::json!({
        "iss": consumer_key,
        "sub": username,
        "aud": w.sim.base_url(),
        "exp": chrono::Utc::now().timestamp() + 180,
    });
    let assertion = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    reqwest::Client::new()
        .post(format!("{}/services/oauth2/token", w.sim.base_url()))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", &assertion),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub(crate) fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path))
        } else {
            out.push(path)
        }
    }
    out
}

/// SHA-256 of a PEM certificate's DER, as `openssl x509 -fingerprint -sha256` computes it.
pub(crate) fn rekey_api_fingerprint(pem: &str) -> String {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), pem).unwrap();
    let out = openssl(&[
        "x509",
        "-noout",
        "-fingerprint",
        "-sha256",
        "-in",
        tmp.path().to_str().unwrap(),
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    text.trim()
        .rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
        .to_lowercase()
}

/// A world whose credentials keep their keys in a real OpenBao (Vault API) server, under a
/// prefix of their own.
pub(crate) async fn vault_world(bao: &OpenBao) -> (World, String) {
    let mut w = World::new().await;
    let prefix = bao.unique_prefix("e2e");
    let store = format!(
        "[stores.local]\nkind = \"vault\"\naddress = \"{}\"\npath_prefix = \"{prefix}\"",
        bao.addr()
    );
    w.edit_config(|c| c.replace("[stores.local]\nkind = \"file\"\npath = \"keys\"", &store));
    w.env.push(("VAULT_TOKEN".into(), bao.root_token().into()));
    (w, prefix)
}

pub(crate) fn with_aws_store(w: &mut World, moto: &Moto) -> String {
    let prefix = moto.unique_name("e2e");
    let store = format!(
        "[stores.aws]\nkind = \"aws\"\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\nname_prefix = \"{prefix}\"\n\n[stores.local]",
        moto.endpoint()
    );
    w.edit_config(|c| c.replacen("[stores.local]", &store, 1));
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ] {
        w.env.push((k.into(), v.into()));
    }
    prefix
}

/// A `rekey` process waiting at a hold point.
pub(crate) struct Held {
    pub(crate) child: tokio::process::Child,
    pub(crate) file: PathBuf,
    point: String,
    args: Vec<String>,
}

impl Held {
    /// Starts `rekey args` to wait at `point` (it does not wait for it to get there).
    pub(crate) fn spawn(w: &World, args: &[&str], point: &str) -> Held {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = w.path(&format!("hold-{n}"));
        let child = w
            .command(args)
            .env("REKEY_TEST_HOLD_AT", point)
            .env("REKEY_TEST_HOLD_FILE", &file)
            // Files, not pipes: nobody reads a pipe while the process waits, and -vv logs would
            // fill it and block the process before its hold point.
            .stdout(std::fs::File::create(file.with_extension("out")).unwrap())
            .stderr(std::fs::File::create(file.with_extension("err")).unwrap())
            .spawn()
            .unwrap();
        Held {
            child,
            file,
            point: point.to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    pub(crate) fn is_waiting(&self) -> bool {
        self.file.exists()
    }

    /// Waits until the process reached its hold point; panics with its output if it ended first.
    pub(crate) async fn reached(mut self, w: &mut World) -> Held {
        for _ in 0..3000 {
            if self.is_waiting() {
                return self;
            }
            if self.child.try_wait().unwrap().is_some() {
                let run = self.finish(w).await;
                panic!(
                    "rekey ended before its hold point (exit {}):\n{}{}",
                    run.code, run.stdout, run.stderr
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let point = self.point.clone();
        let run = self.kill(w).await;
        panic!(
            "rekey never reached its hold point {point} in 30s (killed):\n{}{}",
            run.stdout,
            tail(&run.stderr, 30)
        );
    }

    /// Sends `signal` (`TERM`, `INT`, `HUP`) to the process.
    pub(crate) fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("the process runs").to_string();
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal} {pid}");
    }

    /// Waits until the process printed `line` on stderr, under a hang guard far above the
    /// milliseconds it takes.
    pub(crate) async fn said(&self, line: &str) {
        let err = self.file.with_extension("err");
        for _ in 0..3000 {
            if std::fs::read_to_string(&err)
                .unwrap_or_default()
                .contains(line)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "never said {line:?}:\n{}",
            std::fs::read_to_string(&err).unwrap_or_default()
        );
    }

    /// Whether the process has ended (without waiting for it).
    pub(crate) fn ended(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// SIGKILL, as a crash or an OOM kill would.
    pub(crate) async fn kill(mut self, w: &mut World) -> Run {
        self.child.start_kill().unwrap();
        self.finish(w).await
    }

    /// Lets it go on from the hold point.
    pub(crate) async fn release(self, w: &mut World) -> Run {
        std::fs::remove_file(&self.file).unwrap();
        self.finish(w).await
    }

    pub(crate) async fn finish(mut self, w: &mut World) -> Run {
        let status = self.child.wait().await.unwrap();
        let out = std::process::Output {
            status,
            stdout: std::fs::read(self.file.with_extension("out")).unwrap(),
            stderr: std::fs::read(self.file.with_extension("err")).unwrap(),
        };
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        w.record(&args, out)
    }
}

/// Every file under `dir` with its bytes, sorted: to prove a command changed none.
pub(crate) fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = walk(dir)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    files.sort();
    files
}

/// The last `n` lines of `text` (debug logs run long).
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The `rekey` commands of a runbook's `sh` blocks, comments stripped, quotes honoured, `CRED`
/// replaced by `credential`.
pub(crate) fn runbook_commands(path: &str, credential: &str) -> Vec<Vec<String>> {
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

/// Waits until `count` (consumers' answers or mints, counted as they come) grew by `more`: a
/// minute at most, then the consumers have stopped (`what` says doing what).
pub(crate) async fn grew_by(count: &std::sync::atomic::AtomicUsize, more: usize, what: &str) {
    use std::sync::atomic::Ordering;
    let target = count.load(Ordering::SeqCst) + more;
    for _ in 0..1200 {
        if count.load(Ordering::SeqCst) >= target {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the consumers stopped {what}");
}
