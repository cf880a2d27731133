//! A real moto server (the AWS Secrets Manager, KMS and IAM APIs) for tests: no fakes.
//!
//! `moto_server` comes from PyPI (`moto[secretsmanager,kms]==5.2.5` with flask and flask-cors), installed
//! once into the workspace's git-ignored `.venv` that OpenBao uses too (or taken from
//! `REKEY_MOTO_SERVER`). The server binds a port of its own choosing (`-p 0`, race-free) and
//! prints it on stderr, which goes to a log file under `target/moto/`: werkzeug logs every request
//! there, and an undrained pipe would block it. It runs under the same parent-watching `sh`
//! wrapper as OpenBao, so the shared server dies with the test process.

use crate::openbao::WRAPPER;
use crate::venv::{venv_tool, workspace_root};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The pinned moto release and the two packages its server mode needs. The `kms` extra (like
/// `secretsmanager`) requires no package of its own in 5.2.5: a venv installed before it was
/// named here serves KMS already, so the `moto_server` check of [`venv_tool`] is enough.
const MOTO_PACKAGES: [&str; 3] = ["moto[secretsmanager,kms]==5.2.5", "flask", "flask-cors"];
/// How long the server may take to print its port and answer `/moto-api/` with 200.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running moto server on 127.0.0.1.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    endpoint: String,
    log: PathBuf,
}

static SHARED: OnceLock<Moto> = OnceLock::new();
static COUNTER: AtomicU64 = AtomicU64::new(0);

impl Moto {
    /// The server shared by every test of this test binary, started on first use. It is killed
    /// by its wrapper when the test process exits (statics are never dropped).
    pub fn shared() -> &'static Moto {
        SHARED.get_or_init(Moto::start)
    }

    /// A fresh, separate server. Dropping it kills it.
    pub fn start() -> Moto {
        let moto = moto_binary();
        let dir = workspace_root().join("target/moto");
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let log = dir.join(format!("moto-{}-{n}.log", std::process::id()));
        let out = File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = out.try_clone().expect("clone log handle");
        let child = Command::new("sh")
            .arg("-c")
            .arg(WRAPPER)
            .arg("moto-wrapper")
            .arg(std::process::id().to_string())
            .arg(&moto)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", moto.display()));
        let mut server = Moto {
            child,
            endpoint: String::new(),
            log,
        };
        server.wait_ready();
        server
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// A name no other test on this server uses: `t-<name>-<counter>-<pid>`. moto's only reset
    /// is global, so parallel tests keep apart by name instead.
    pub fn unique_name(&self, name: &str) -> String {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        format!("t-{name}-{n}-{}", std::process::id())
    }

    /// Waits for the `Running on http://127.0.0.1:PORT` line in the log, then for `/moto-api/`
    /// to answer 200; panics with the log's path if the server exits or is too slow.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("moto_server exited ({status}); see {}", self.log.display());
            }
            if self.endpoint.is_empty() {
                if let Some(port) = port_in_log(&self.log) {
                    self.endpoint = format!("http://127.0.0.1:{port}");
                }
            } else if status_of_moto_api(&self.endpoint) == Some(200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("moto_server not ready in time; see {}", self.log.display());
    }
}

/// The AWS SDK configured for the moto server at `endpoint`: static dummy credentials and an
/// explicit region, so the default chain (and the EC2 metadata address) is never asked.
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "static"))
        .endpoint_url(endpoint)
        .load()
        .await
}

/// Version id → sorted staging labels of every version of `secret`, deprecated ones included:
/// what tests assert label behaviour on, since emulators have got labels wrong before.
pub async fn version_labels(
    client: &aws_sdk_secretsmanager::Client,
    secret: &str,
) -> std::collections::BTreeMap<String, Vec<String>> {
    let out = client
        .list_secret_version_ids()
        .secret_id(secret)
        .include_deprecated(true)
        .send()
        .await
        .unwrap_or_else(|e| panic!("ListSecretVersionIds {secret}: {e}"));
    out.versions()
        .iter()
        .map(|v| {
            let mut labels = v.version_stages().to_vec();
            labels.sort();
            (v.version_id().unwrap_or_default().to_string(), labels)
        })
        .collect()
}

/// Access keys of an IAM user made on a moto server.
#[derive(Clone, Debug)]
pub struct IamKeys {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
}

impl IamKeys {
    /// An SDK configuration for the server at `endpoint` that signs as this user.
    pub async fn sdk_config(&self, endpoint: &str) -> aws_config::SdkConfig {
        use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                &self.access_key_id,
                &self.secret_access_key,
                None,
                None,
                "static",
            ))
            .endpoint_url(endpoint)
            .load()
            .await
    }
}

impl Moto {
    /// Makes IAM user `name` with the inline identity policy `policy` (a JSON document) and
    /// returns its access keys. Call it before [`Moto::enforce_iam`]: moto checks nothing until
    /// then, so these IAM calls go unsigned.
    pub fn iam_user(&self, name: &str, policy: &str) -> IamKeys {
        self.iam_call(&[("Action", "CreateUser"), ("UserName", name)]);
        self.iam_call(&[
            ("Action", "PutUserPolicy"),
            ("UserName", name),
            ("PolicyName", "rekey-test"),
            ("PolicyDocument", policy),
        ]);
        let answer = self.iam_call(&[("Action", "CreateAccessKey"), ("UserName", name)]);
        let field = |tag: &str| {
            let open = format!("<{tag}>");
            let start = answer.find(&open).map(|i| i + open.len());
            let end = answer.find(&format!("</{tag}>"));
            match (start, end) {
                (Some(s), Some(e)) => answer[s..e].to_string(),
                _ => panic!("no {tag} in CreateAccessKey's answer: {answer}"),
            }
        };
        IamKeys {
            access_key_id: field("AccessKeyId"),
            secret_access_key: field("SecretAccessKey"),
        }
    }

    /// From now on every request must be signed by an IAM user's keys and be allowed by its
    /// policies (moto's `INITIAL_NO_AUTH_ACTION_COUNT`, set to 0 through `/moto-api/reset-auth`
    /// rather than at start, so that [`Moto::iam_user`] can make the users first). For a server
    /// of its own ([`Moto::start`]): the setting is the whole server's.
    pub fn enforce_iam(&self) {
        let (status, body) = self.post("/moto-api/reset-auth", "text/plain", None, "0");
        assert_eq!(status, 200, "reset-auth: {body}");
    }

    /// One IAM query call, unsigned (moto picks the service from the credential scope).
    fn iam_call(&self, params: &[(&str, &str)]) -> String {
        let mut form = String::from("Version=2010-05-08");
        for (key, value) in params {
            form.push('&');
            form.push_str(key);
            form.push('=');
            form.push_str(&form_encode(value));
        }
        let auth = "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0";
        let (status, body) = self.post("/", "application/x-www-form-urlencoded", Some(auth), &form);
        assert_eq!(status, 200, "IAM {params:?}: {body}");
        body
    }

    /// POSTs `body` by hand (this crate has no HTTP client); the status and the answer.
    fn post(
        &self,
        path: &str,
        content_type: &str,
        authorization: Option<&str>,
        body: &str,
    ) -> (u16, String) {
        let authority = self
            .endpoint
            .strip_prefix("http://")
            .expect("http endpoint");
        let mut stream = TcpStream::connect(authority).expect("connect to moto");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        let auth = authorization.map_or_else(String::new, |a| format!("Authorization: {a}\r\n"));
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: {content_type}\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("write to moto");
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .expect("read moto's answer");
        let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = answer
            .split_once("\r\n\r\n")
            .map_or(String::new(), |(_, b)| b.to_string());
        (status, body)
    }
}

/// `application/x-www-form-urlencoded` of `value`: unreserved characters as they are, every
/// other byte as `%XX`.
fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Moto {
    /// Freezes the server (SIGSTOP): connections hang as with a stalled network, and the state is
    /// kept, unlike a restart of moto, which forgets every secret.
    pub fn pause(&self) {
        self.signal_server("-STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal_server("-CONT");
    }

    /// Signals moto_server itself.
    fn signal_server(&self, signal: &str) {
        let pid = self
            .server_pid()
            .unwrap_or_else(|| panic!("no moto_server under wrapper {}", self.child.id()));
        let status = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    /// The wrapper's child running moto_server (its other children are short `sleep`s).
    fn server_pid(&self) -> Option<String> {
        let wrapper = self.child.id();
        let children =
            fs::read_to_string(format!("/proc/{wrapper}/task/{wrapper}/children")).ok()?;
        children
            .split_whitespace()
            .find(|pid| {
                fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|cmd| String::from_utf8_lossy(&cmd).contains("moto_server"))
            })
            .map(str::to_string)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // A paused server would not act on SIGTERM, and the wrapper would wait for it forever.
        if let Some(pid) = self.server_pid() {
            let _ = Command::new("kill").args(["-CONT", &pid]).status();
        }
        // SIGTERM lets the wrapper's trap stop the server; SIGKILL would orphan it.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// `REKEY_MOTO_SERVER`, or `.venv/bin/moto_server`, installed on first use.
fn moto_binary() -> PathBuf {
    match std::env::var_os("REKEY_MOTO_SERVER") {
        Some(path) => PathBuf::from(path),
        None => venv_tool("moto_server", &MOTO_PACKAGES),
    }
}

/// The port from werkzeug's `Running on http://127.0.0.1:PORT` banner.
fn port_in_log(log: &PathBuf) -> Option<u16> {
    let text = fs::read_to_string(log).ok()?;
    let marker = "Running on http://127.0.0.1:";
    let rest = &text[text.find(marker)? + marker.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The HTTP status of `GET /moto-api/`, spoken by hand to keep this crate free of an HTTP client.
fn status_of_moto_api(endpoint: &str) -> Option<u16> {
    let authority = endpoint.strip_prefix("http://")?;
    let mut stream = TcpStream::connect(authority).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET /moto-api/ HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_answers_and_dies_with_its_handle() {
        let server = Moto::start();
        let endpoint = server.endpoint();
        assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
        assert_eq!(status_of_moto_api(&endpoint), Some(200));
        assert_ne!(server.unique_name("x"), server.unique_name("x"));
        drop(server);
        assert_eq!(status_of_moto_api(&endpoint), None, "gone after drop");
    }
}
