//! Consumers of a credential's key: who is told about (or handed) each new generation, and how
//! rekey learns that they adopted it.
//!
//! Four kinds, configured as `[[credentials.NAME.consumers]]`:
//!
//! - `store`: reads CURRENT from the store itself, so nothing is pushed; with `status_url` its
//!   adoption is polled like a webhook's, without it it counts as adopted at once.
//! - `webhook`: a signed JSON POST `prepare` before the certificate is published and `activate`
//!   right after promotion; adoption is polled from `status_url` (`{"fingerprint": "<hex>"}`), or
//!   is the activate POST's 2xx without one.
//! - `exec`: a command run with `REKEY_*` variables and, when configured, the key in a 0600
//!   temporary file or on its standard input (never on the command line or in a variable); its
//!   exit status is the verdict, and adoption is the activate run's success.
//! - `file`: the key (0600) and certificate (0644) PEMs written atomically; adoption is the files
//!   holding the new certificate and a key that belongs to it.
//!
//! The orchestrator calls [`Consumer::prepare`] for every consumer (bounded-parallel through
//! [`for_all`]) before it publishes, [`Consumer::activate`] right after it promotes, then
//! [`Consumer::adopted`] — one poll each — until each consumer's [`Consumer::adopt_timeout`].
//! Every operation is idempotent for its [`Announcement`] and answers a one-line detail for the
//! journal: names, generations, fingerprints, hosts, paths and exit codes, never key bytes or
//! secrets. Reverting a consumer is `activate` with the previous generation's announcement.

use crate::alerts::read_secret_from;
use crate::config::{
    ConsumerConfig, ConsumerKindSettings, CredentialConfig, DeliverKey, OnAdoptionFailure,
};
use crate::pki;
use rekey_api::{
    Backoff, Certificate, Error, ErrorKind, Fingerprint, Generation, KeyMaterial, Result,
    SecretString, Stage,
};
use rekey_http::{SIGNATURE_HEADER, TIMESTAMP_HEADER};
use reqwest::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use std::ffi::OsString;
use std::fmt;
use std::future::Future;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// One HTTP request (connect, send, answer).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an HTTP answer is read (status documents, error details).
const BODY_MAX: usize = 64 * 1024;
/// How much of an answer's or a command's own words goes into a message.
const DETAIL_MAX: usize = 200;
/// How many of a failed command's last stderr lines are quoted.
const STDERR_LINES: usize = 5;
/// How much of a command's stderr is kept while it runs (the tail).
const STDERR_KEEP: usize = 16 * 1024;
/// How long a finished command's stderr may stay open (a background child holding it).
const STDERR_GRACE: Duration = Duration::from_secs(2);
/// The only variables of rekey's own environment an `exec` consumer inherits: rekey's
/// credentials (`VAULT_TOKEN`, `AWS_*`, `SF_ACCESS_TOKEN`, secrets named by `*_env`) never reach it.
const INHERITED_ENV: [&str; 8] = [
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR",
];

/// What a consumer is told about a generation.
#[derive(Debug)]
pub struct Announcement<'a> {
    /// The credential's name.
    pub credential: &'a str,
    /// The generation announced.
    pub generation: Generation,
    /// Its certificate's SHA-256 fingerprint.
    pub new_fingerprint: Fingerprint,
    /// The certificate it replaces, if any.
    pub old_fingerprint: Option<Fingerprint>,
    /// [`Stage::Pending`] for `prepare`, [`Stage::Current`] for `activate` (the operations refuse
    /// anything else).
    pub stage: Stage,
    /// The key, for consumers that are handed it (`exec` with `deliver_key`, `file`).
    pub key: Option<&'a KeyMaterial>,
    /// The certificate, PEM (public).
    pub certificate_pem: &'a str,
    /// Where the consumer reads the key: the primary store, the credential and the stage, e.g.
    /// `file(/srv/rekey/keys) billing PENDING` for `prepare`, `… CURRENT` for `activate`. Sent
    /// as `read_from` and `REKEY_READ_FROM`.
    pub read_from: String,
}

/// One poll of a consumer's adoption.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Adoption {
    /// It uses the announced generation.
    Adopted {
        /// How that is known, for the journal.
        detail: String,
    },
    /// Not yet (or it could not be asked just now); ask again until the deadline.
    Waiting {
        /// What it reported, for the journal and the final error.
        detail: String,
    },
}

#[cfg(test)]
impl Adoption {
    /// Whether the consumer adopted the generation.
    pub fn is_adopted(&self) -> bool {
        matches!(self, Adoption::Adopted { .. })
    }

    /// The detail, either way.
    pub fn detail(&self) -> &str {
        match self {
            Adoption::Adopted { detail } | Adoption::Waiting { detail } => detail,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    Prepare,
    Activate,
}

impl Event {
    fn as_str(self) -> &'static str {
        match self {
            Event::Prepare => "prepare",
            Event::Activate => "activate",
        }
    }

    fn stage(self) -> Stage {
        match self {
            Event::Prepare => Stage::Pending,
            Event::Activate => Stage::Current,
        }
    }
}

fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::Current => "current",
        Stage::Pending => "pending",
        Stage::Previous => "previous",
    }
}

/// A URL a consumer is reached at, with the host: the only part of it messages show (a path or
/// query may carry a token).
struct Endpoint {
    url: Url,
    host: String,
}

impl Endpoint {
    fn parse(text: &str, what: &str, label: &str) -> Result<Endpoint> {
        let rekey_api::Endpoint { url, host } = rekey_api::endpoint(text, what, label)?;
        Ok(Endpoint { url, host })
    }
}

struct Exec {
    program: PathBuf,
    args: Vec<String>,
    deliver_key: DeliverKey,
    timeout: Duration,
    /// [`INHERITED_ENV`] as rekey found it when the consumer was built.
    inherited: Vec<(&'static str, OsString)>,
}

enum Kind {
    Store {
        status: Option<Endpoint>,
    },
    Webhook {
        endpoint: Endpoint,
        secret: SecretString,
        status: Option<Endpoint>,
    },
    Exec(Exec),
    File {
        key_path: PathBuf,
        cert_path: PathBuf,
    },
}

/// One consumer of a credential's key, built from its config with its secret read. `Debug` shows
/// the name, the kind, hosts, the program and paths: never a secret or a URL's path.
pub struct Consumer {
    name: String,
    origin: String,
    adopt_timeout: Duration,
    kind: Kind,
    /// Set for webhooks and `status_url`s.
    http: Option<reqwest::Client>,
    backoff: Backoff,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Consumer");
        d.field("name", &self.name).field("kind", &self.kind_name());
        match &self.kind {
            Kind::Store { status } => {
                d.field("status_host", &status.as_ref().map(|s| &s.host));
            }
            Kind::Webhook {
                endpoint, status, ..
            } => {
                d.field("host", &endpoint.host)
                    .field("status_host", &status.as_ref().map(|s| &s.host));
            }
            Kind::Exec(exec) => {
                d.field("program", &exec.program)
                    .field("deliver_key", &exec.deliver_key)
                    .field("timeout", &exec.timeout);
            }
            Kind::File {
                key_path,
                cert_path,
            } => {
                d.field("key_path", key_path).field("cert_path", cert_path);
            }
        }
        d.field("adopt_timeout", &self.adopt_timeout)
            .finish_non_exhaustive()
    }
}

/// A credential's consumers and what to do when one does not adopt a new key in time.
#[derive(Debug)]
pub struct CredentialConsumers {
    /// In config order.
    pub consumers: Vec<Consumer>,
    /// The credential's `on_adoption_failure`.
    pub on_adoption_failure: OnAdoptionFailure,
}

impl CredentialConsumers {
    /// Builds every consumer of `credential`, reading webhook secrets now; the first error names
    /// the consumer and its config position.
    pub fn from_config(credential: &CredentialConfig) -> Result<CredentialConsumers> {
        Ok(CredentialConsumers {
            consumers: credential
                .consumers
                .iter()
                .map(|c| Consumer::from_config(&credential.name, c))
                .collect::<Result<_>>()?,
            on_adoption_failure: credential.on_adoption_failure,
        })
    }
}

impl Consumer {
    /// Builds a consumer of `credential` from its settings. A webhook's secret is read now (env
    /// or file); errors name the consumer, its `file:line:column` and the variable or file, never
    /// the secret.
    pub fn from_config(credential: &str, settings: &ConsumerConfig) -> Result<Consumer> {
        let name = settings.name.clone();
        let label = |kind: &str| format!("{kind} consumer '{name}'");
        let status = |url: &Option<String>, kind: &str| {
            url.as_deref()
                .map(|u| Endpoint::parse(u, "status_url", &label(kind)))
                .transpose()
        };
        let kind = match &settings.kind {
            ConsumerKindSettings::Store { status_url } => Kind::Store {
                status: status(status_url, "store")?,
            },
            ConsumerKindSettings::Webhook {
                url,
                secret,
                status_url,
            } => {
                let secret = read_secret_from(
                    secret,
                    &format!("{}: consumer '{name}'", settings.origin),
                    "webhook signing secret",
                    "secret",
                    &format!("[[credentials.{credential}.consumers]] '{name}'"),
                )?;
                Kind::Webhook {
                    endpoint: Endpoint::parse(url, "url", &label("webhook"))?,
                    secret,
                    status: status(status_url, "webhook")?,
                }
            }
            ConsumerKindSettings::Exec {
                command,
                deliver_key,
                timeout,
            } => {
                let (program, args) = command.split_first().ok_or_else(|| {
                    Error::new(
                        ErrorKind::Config,
                        format!("{}: command is empty", label("exec")),
                    )
                })?;
                Kind::Exec(Exec {
                    program: PathBuf::from(program),
                    args: args.to_vec(),
                    deliver_key: *deliver_key,
                    timeout: *timeout,
                    inherited: INHERITED_ENV
                        .iter()
                        .filter_map(|var| std::env::var_os(var).map(|v| (*var, v)))
                        .collect(),
                })
            }
            ConsumerKindSettings::File {
                key_path,
                cert_path,
            } => Kind::File {
                key_path: key_path.clone(),
                cert_path: cert_path.clone(),
            },
        };
        let needs_http = match &kind {
            Kind::Store { status } => status.is_some(),
            Kind::Webhook { .. } => true,
            Kind::Exec(_) | Kind::File { .. } => false,
        };
        let http = needs_http
            .then(|| rekey_http::http_client(&format!("consumer '{name}'")))
            .transpose()?;
        Ok(Consumer {
            name,
            origin: settings.origin.clone(),
            adopt_timeout: settings.adopt_timeout,
            kind,
            http,
            backoff: Backoff::default(),
        })
    }

    /// Replaces the webhook retry policy (tests use millisecond waits).
    #[cfg(test)]
    fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Its name, unique within the credential.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `store`, `webhook`, `exec` or `file`.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            Kind::Store { .. } => "store",
            Kind::Webhook { .. } => "webhook",
            Kind::Exec(_) => "exec",
            Kind::File { .. } => "file",
        }
    }

    /// How long after `activate` it may take to adopt the new key.
    pub fn adopt_timeout(&self) -> Duration {
        self.adopt_timeout
    }

    /// `webhook consumer 'etl' (hooks.example)`: how errors name it.
    fn label(&self) -> String {
        match &self.kind {
            Kind::Webhook { endpoint, .. } => format!(
                "{} consumer '{}' ({})",
                self.kind_name(),
                self.name,
                endpoint.host
            ),
            _ => format!("{} consumer '{}'", self.kind_name(), self.name),
        }
    }

    fn check_stage(&self, event: Event, p: &Announcement<'_>) -> Result<()> {
        if p.stage == event.stage() {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Unexpected,
            format!(
                "{}: {} announced with stage {}, expected {}",
                self.label(),
                event.as_str(),
                stage_name(p.stage),
                stage_name(event.stage())
            ),
        )
        .with_hint("this is a rekey bug; please report it"))
    }

    /// Before the certificate is published: a webhook gets `prepare`, a command runs with
    /// `REKEY_EVENT=prepare` (and the PENDING key when it is delivered), a file consumer's
    /// folders are checked writable (nothing is written), a store consumer needs nothing.
    pub async fn prepare(&self, p: &Announcement<'_>) -> Result<String> {
        self.check_stage(Event::Prepare, p)?;
        match &self.kind {
            Kind::Store { .. } => Ok(store_detail()),
            Kind::Webhook {
                endpoint, secret, ..
            } => self.post(endpoint, secret, Event::Prepare, p).await,
            Kind::Exec(exec) => self.run(exec, Event::Prepare, p).await,
            Kind::File {
                key_path,
                cert_path,
            } => self.check_writable(key_path, cert_path),
        }
    }

    /// Right after promotion (or, when reverting, with the previous generation): a webhook gets
    /// `activate`, a command runs with `REKEY_EVENT=activate`, a file consumer's files are
    /// replaced (unless they already hold exactly this), a store consumer needs nothing.
    pub async fn activate(&self, p: &Announcement<'_>) -> Result<String> {
        self.check_stage(Event::Activate, p)?;
        match &self.kind {
            Kind::Store { .. } => Ok(store_detail()),
            Kind::Webhook {
                endpoint, secret, ..
            } => self.post(endpoint, secret, Event::Activate, p).await,
            Kind::Exec(exec) => self.run(exec, Event::Activate, p).await,
            Kind::File {
                key_path,
                cert_path,
            } => self.write_files(key_path, cert_path, p),
        }
    }

    /// One look at whether the consumer uses `p`'s generation; call it only after
    /// [`Consumer::activate`] succeeded for `p`, and again until [`Consumer::adopt_timeout`].
    /// With a `status_url`, an unreachable or 5xx status counts as waiting; an answer that is not
    /// `{"fingerprint": "<hex>"}` is an error.
    pub async fn adopted(&self, p: &Announcement<'_>) -> Result<Adoption> {
        match &self.kind {
            Kind::Store { status: Some(s) }
            | Kind::Webhook {
                status: Some(s), ..
            } => self.poll(s, p).await,
            Kind::Store { status: None } => Ok(Adoption::Adopted {
                detail: "reads CURRENT from the store (no status_url to ask)".into(),
            }),
            Kind::Webhook { endpoint, .. } => Ok(Adoption::Adopted {
                detail: format!("{} accepted activate (no status_url to ask)", endpoint.host),
            }),
            Kind::Exec(exec) => Ok(Adoption::Adopted {
                detail: format!("{} succeeded for activate", exec.program.display()),
            }),
            Kind::File {
                key_path,
                cert_path,
            } => Ok(file_adoption(key_path, cert_path, p)),
        }
    }

    fn http(&self) -> &reqwest::Client {
        self.http
            .as_ref()
            .expect("consumers with a URL are built with an HTTP client")
    }

    // -----------------------------------------------------------------------------------------
    // webhook

    /// POSTs the signed event until a 2xx, a final answer, or the attempts run out.
    async fn post(
        &self,
        endpoint: &Endpoint,
        secret: &SecretString,
        event: Event,
        p: &Announcement<'_>,
    ) -> Result<String> {
        let body = serde_json::to_vec(&serde_json::json!({
            "event": event.as_str(),
            "credential": p.credential,
            "generation": p.generation,
            "new_fingerprint": p.new_fingerprint,
            "old_fingerprint": p.old_fingerprint,
            "read_from": p.read_from,
        }))
        .expect("a JSON value always serializes");
        let attempts = self.backoff.attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            // Signed per attempt, so a retry after a long wait is still fresh for the receiver.
            let timestamp = chrono::Utc::now().timestamp();
            let signature =
                rekey_http::signature(secret.expose_secret().as_bytes(), timestamp, &body);
            let sent = self
                .http()
                .post(endpoint.url.clone())
                .timeout(REQUEST_TIMEOUT)
                .header(CONTENT_TYPE, "application/json")
                .header(TIMESTAMP_HEADER, timestamp.to_string())
                .header(SIGNATURE_HEADER, signature)
                .body(body.clone())
                .send()
                .await;
            let (error, retry_after) = match sent {
                Ok(response) if response.status().is_success() => {
                    let tries = if attempt > 1 {
                        format!(" (attempt {attempt})")
                    } else {
                        String::new()
                    };
                    return Ok(format!(
                        "{} accepted {} of generation {}: HTTP {}{tries}",
                        endpoint.host,
                        event.as_str(),
                        p.generation,
                        response.status().as_u16()
                    ));
                }
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let detail = self.answer_detail(response, Some(secret)).await;
                    let error = self.status_error(status, event.as_str(), &detail);
                    if !retryable(status) {
                        return Err(error);
                    }
                    (error, retry_after)
                }
                Err(e) => (self.transport_error(e, event.as_str()), None),
            };
            if attempt >= attempts {
                let message = format!("{} (gave up after {attempts} attempts)", error.message());
                let mut out = Error::new(error.kind(), message).temporary();
                if let Some(hint) = error.hint() {
                    out = out.with_hint(hint);
                }
                return Err(out);
            }
            let wait = self.backoff.delay(attempt, retry_after);
            tracing::debug!(
                consumer = %self.name,
                attempt,
                wait_ms = wait.as_millis() as u64,
                error = %error,
                "consumer not reached yet; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// One GET of a status URL.
    async fn poll(&self, status: &Endpoint, p: &Announcement<'_>) -> Result<Adoption> {
        let host = &status.host;
        let response = match self
            .http()
            .get(status.url.clone())
            .timeout(REQUEST_TIMEOUT)
            .header(ACCEPT, "application/json")
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                return Ok(Adoption::Waiting {
                    detail: format!("status at {host}: {}", transport_how(&e)),
                });
            }
        };
        let code = response.status();
        if retryable(code) {
            return Ok(Adoption::Waiting {
                detail: format!("status at {host}: HTTP {}", code.as_u16()),
            });
        }
        if !code.is_success() {
            let detail = self.answer_detail(response, None).await;
            return Err(self.status_error(code, "status", &detail));
        }
        let body = read_limited(response).await;
        let reported = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("fingerprint")?.as_str().map(str::to_string))
            .and_then(|f| Fingerprint::parse(&f).ok());
        let Some(reported) = reported else {
            return Err(Error::new(
                ErrorKind::Rejected,
                format!(
                    "{}: the status at {host} is not {{\"fingerprint\": \"<64 hex digits>\"}}",
                    self.label()
                ),
            )
            .with_hint("the consumer's status URL must answer the SHA-256 fingerprint of the certificate whose key it uses"));
        };
        Ok(if reported == p.new_fingerprint {
            Adoption::Adopted {
                detail: format!("{host} reports {reported} (generation {})", p.generation),
            }
        } else {
            Adoption::Waiting {
                detail: format!(
                    "{host} reports {reported}, not yet {} (generation {})",
                    p.new_fingerprint, p.generation
                ),
            }
        })
    }

    /// The answer's own words, one short line, without the secret.
    async fn answer_detail(
        &self,
        response: reqwest::Response,
        secret: Option<&SecretString>,
    ) -> String {
        let raw = read_limited(response).await;
        let text = String::from_utf8_lossy(&raw);
        let text = match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(v) => ["message", "error", "status"]
                .iter()
                .filter_map(|k| v.get(k).and_then(|s| s.as_str()))
                .collect::<Vec<_>>()
                .join("; "),
            Err(_) if text.trim_start().starts_with('<') => String::new(),
            Err(_) => text.lines().next().unwrap_or_default().to_string(),
        };
        let mut text = one_line(&text);
        if let Some(secret) = secret
            .map(SecretString::expose_secret)
            .filter(|s| !s.is_empty())
        {
            text = text.replace(secret, "***");
        }
        text
    }

    fn status_error(&self, status: StatusCode, what: &str, detail: &str) -> Error {
        let code = status.as_u16();
        let kind = rekey_http::status_kind(status);
        let detail = if detail.is_empty() {
            String::new()
        } else {
            format!(" ({detail})")
        };
        let hint = match code {
            401 | 403 => {
                "the consumer refused the request: check that both sides use the same signing secret and that their clocks agree"
            }
            300..=399 => "redirects are not followed: configure the consumer's final URL",
            429 | 500..=599 => "the consumer is failing or unavailable; retry later",
            _ => "check the consumer's URL and its logs",
        };
        let error = Error::new(
            kind,
            format!("{}: {what}: HTTP {code}{detail}", self.label()),
        )
        .with_hint(hint);
        if retryable(status) {
            error.temporary()
        } else {
            error
        }
    }

    fn transport_error(&self, e: reqwest::Error, what: &str) -> Error {
        Error::new(
            ErrorKind::Unavailable,
            format!("{}: {what}: {}", self.label(), transport_how(&e)),
        )
        .with_hint("check that this host can reach the consumer (proxy, firewall, DNS)")
        // Without the URL: its path or query may carry a token.
        .with_source(e.without_url())
        .temporary()
    }

    // -----------------------------------------------------------------------------------------
    // exec

    /// Runs the command once for `event`; exit 0 is success.
    async fn run(&self, exec: &Exec, event: Event, p: &Announcement<'_>) -> Result<String> {
        let label = self.label();
        let program = exec.program.display().to_string();
        let key = match exec.deliver_key {
            DeliverKey::None => None,
            DeliverKey::File | DeliverKey::Stdin => Some(p.key.ok_or_else(|| {
                Error::new(
                    ErrorKind::Unexpected,
                    format!(
                        "{label}: deliver_key needs the key, but {} was announced without it",
                        event.as_str()
                    ),
                )
                .with_hint("this is a rekey bug; please report it")
            })?),
        };
        let mut command = tokio::process::Command::new(&exec.program);
        command
            .args(&exec.args)
            .env_clear()
            .envs(exec.inherited.iter().map(|(k, v)| (k, v)))
            .env("REKEY_CREDENTIAL", p.credential)
            .env("REKEY_GENERATION", p.generation.to_string())
            .env("REKEY_FINGERPRINT", p.new_fingerprint.to_hex())
            .env("REKEY_STAGE", stage_name(p.stage))
            .env("REKEY_EVENT", event.as_str())
            .env("REKEY_READ_FROM", &p.read_from)
            .stdin(if exec.deliver_key == DeliverKey::Stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout ends whatever it started too.
            .process_group(0)
            .kill_on_drop(true);
        if let Some(old) = p.old_fingerprint {
            command.env("REKEY_OLD_FINGERPRINT", old.to_hex());
        }
        // Removed when this function returns, whatever happens.
        let key_file = match (exec.deliver_key, key) {
            (DeliverKey::File, Some(key)) => Some(KeyFile::create(key, &label)?),
            _ => None,
        };
        if let Some(file) = &key_file {
            command.env("REKEY_KEY_FILE", &file.path);
        }
        let started = Instant::now();
        let mut child = command.spawn().map_err(|e| {
            let kind = match e.kind() {
                std::io::ErrorKind::NotFound => ErrorKind::Config,
                std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
                _ => ErrorKind::Unexpected,
            };
            Error::new(kind, format!("{label}: cannot run {program}"))
                .with_source(e)
                .with_hint(format!(
                    "{}: command[0] must be an executable file (absolute, or relative to the config's folder; $PATH is not searched)",
                    self.origin
                ))
        })?;
        // Declared after `child`, so dropped before it: the group is killed while its leader is
        // not yet reaped (its id cannot have been reused).
        let mut group = GroupKill(
            child
                .id()
                .and_then(|id| rustix::process::Pid::from_raw(i32::try_from(id).ok()?)),
        );
        let stderr = child.stderr.take();
        let tail = tokio::spawn(async move {
            let mut kept = Vec::new();
            if let Some(mut stderr) = stderr {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stderr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    kept.extend_from_slice(&buf[..n]);
                    if kept.len() > STDERR_KEEP {
                        kept.drain(..kept.len() - STDERR_KEEP);
                    }
                }
            }
            kept
        });
        let stdin = child.stdin.take();
        let feed = async {
            if let (Some(mut stdin), Some(key)) = (stdin, key) {
                // A command that exits without reading is judged by its exit status alone.
                if let Err(e) = stdin.write_all(key.expose_secret_pem().as_bytes()).await {
                    tracing::debug!(consumer = %self.name, error = %e, "stdin not fully read");
                }
                // Dropping it closes the pipe: end of input.
            }
        };
        let waited = tokio::time::timeout(exec.timeout, async {
            let ((), status) = tokio::join!(feed, child.wait());
            status
        })
        .await;
        let status = match waited {
            Ok(status) => {
                // Reaped: whatever it left running in its group was meant to keep running.
                group.0 = None;
                status.map_err(|e| {
                    Error::new(
                        ErrorKind::Unexpected,
                        format!("{label}: lost track of {program}"),
                    )
                    .with_source(e)
                })?
            }
            Err(_) => {
                group.kill();
                let _ = child.kill().await;
                tail.abort();
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "{label}: {program} did not finish {} within {} s and was killed",
                        event.as_str(),
                        exec.timeout.as_secs()
                    ),
                )
                .with_hint("raise the consumer's timeout_secs or make the command faster"));
            }
        };
        let millis = started.elapsed().as_millis();
        drop(key_file);
        if status.success() {
            tail.abort();
            let delivered = match exec.deliver_key {
                DeliverKey::None => "",
                DeliverKey::File => ", key by file",
                DeliverKey::Stdin => ", key on stdin",
            };
            return Ok(format!(
                "{program} {}: exit 0 in {millis} ms{delivered}",
                event.as_str()
            ));
        }
        let stderr = match tokio::time::timeout(STDERR_GRACE, tail).await {
            Ok(Ok(bytes)) => bytes,
            _ => Vec::new(),
        };
        let said = stderr_tail(&stderr, p.key);
        let how = match (
            status.code(),
            std::os::unix::process::ExitStatusExt::signal(&status),
        ) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => "failed".to_string(),
        };
        let said = if said.is_empty() {
            String::new()
        } else {
            format!(": {said}")
        };
        Err(Error::new(
            ErrorKind::Rejected,
            format!("{label}: {program} {} failed with {how}{said}", event.as_str()),
        )
        .with_hint("the command's last stderr lines are quoted; fix the consumer, then `rekey resume` repeats the step"))
    }

    // -----------------------------------------------------------------------------------------
    // file

    /// The folders exist and this user may create files in them; nothing is written.
    fn check_writable(&self, key_path: &Path, cert_path: &Path) -> Result<String> {
        let mut dirs: Vec<&Path> = Vec::new();
        for path in [key_path, cert_path] {
            let dir = parent(path);
            let label = self.label();
            let metadata = std::fs::metadata(dir).map_err(|e| {
                Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "{label}: cannot use the folder {} of {}",
                        dir.display(),
                        path.display()
                    ),
                )
                .with_source(e)
                .with_hint("create the folder (rekey writes the files, never folders)")
            })?;
            if !metadata.is_dir() {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("{label}: {} is not a folder", dir.display()),
                ));
            }
            rustix::fs::accessat(
                rustix::fs::CWD,
                dir,
                rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
                rustix::fs::AtFlags::EACCESS,
            )
            .map_err(|e| {
                Error::new(
                    ErrorKind::PermissionDenied,
                    format!("{label}: cannot create files in {}", dir.display()),
                )
                .with_source(std::io::Error::from(e))
                .with_hint("let the user rekey runs as write to the folder")
            })?;
            if std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("{label}: {} is a folder, not a file", path.display()),
                ));
            }
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        Ok(format!("can write {}", dirs.join(" and ")))
    }

    /// Key first, certificate last: the certificate marks a complete write (adoption reads it).
    fn write_files(
        &self,
        key_path: &Path,
        cert_path: &Path,
        p: &Announcement<'_>,
    ) -> Result<String> {
        let label = self.label();
        let key = p.key.ok_or_else(|| {
            Error::new(
                ErrorKind::Unexpected,
                format!("{label}: activate was announced without the key"),
            )
            .with_hint("this is a rekey bug; please report it")
        })?;
        let wrote_key = write_if_changed(key_path, key.expose_secret_pem().as_bytes(), 0o600, true)
            .map_err(|e| file_error(&label, key_path, e))?;
        let wrote_cert = write_if_changed(cert_path, p.certificate_pem.as_bytes(), 0o644, false)
            .map_err(|e| file_error(&label, cert_path, e))?;
        let what = |wrote: bool| if wrote { "wrote" } else { "unchanged" };
        Ok(format!(
            "key {} ({}, 0600), certificate {} ({}, 0644): generation {} ({})",
            key_path.display(),
            what(wrote_key),
            cert_path.display(),
            what(wrote_cert),
            p.generation,
            p.new_fingerprint
        ))
    }
}

fn store_detail() -> String {
    "reads CURRENT from the store".to_string()
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

fn transport_how(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "request timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    }
}

async fn read_limited(mut response: reqwest::Response) -> Vec<u8> {
    let mut raw = Vec::new();
    while raw.len() < BODY_MAX {
        match response.chunk().await {
            Ok(Some(chunk)) => raw.extend_from_slice(&chunk),
            _ => break,
        }
    }
    raw.truncate(BODY_MAX);
    raw
}

/// Control characters out, cut to [`DETAIL_MAX`] characters.
fn one_line(text: &str) -> String {
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = text.trim();
    match text.char_indices().nth(DETAIL_MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The last non-empty lines a command wrote to stderr, one line each, joined by ` | `. A line
/// that could be key material is replaced by `[elided]` (see [`could_be_key`]).
fn stderr_tail(stderr: &[u8], key: Option<&KeyMaterial>) -> String {
    let text = String::from_utf8_lossy(stderr);
    let known = key.map(|k| KnownKey::of(k.expose_secret_pem()));
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(STDERR_LINES)..]
        .iter()
        .map(|line| {
            if could_be_key(line, known.as_ref()) {
                "[elided]".to_string()
            } else {
                one_line(line)
            }
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The shortest run of a key's PEM body that is elided wherever it appears: long enough that
/// ordinary words and hex fingerprints do not match a random base64 body by chance (64^-8 per
/// position), short enough that any meaningful piece of the key is caught.
const KEY_FRAGMENT: usize = 8;

/// What rekey knows of the key it handed over, to recognise it in what a command printed.
/// Matching what was handed over, rather than guessing from a line's length, also catches the
/// last line of a PEM body, which can be as short as 20 characters.
struct KnownKey<'k> {
    /// Every non-empty line of the PEM, trimmed: armour lines and body lines, however short.
    lines: Vec<&'k str>,
    /// The base64 body without armour or whitespace, so a fragment spanning two lines matches.
    body: String,
}

impl<'k> KnownKey<'k> {
    fn of(pem: &'k str) -> KnownKey<'k> {
        let lines: Vec<&str> = pem
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let body = lines
            .iter()
            .filter(|l| !l.starts_with("-----"))
            .flat_map(|l| l.chars())
            .filter(|c| !c.is_whitespace())
            .collect();
        KnownKey { lines, body }
    }

    /// `line` holds one of the PEM's lines, or a run of at least [`KEY_FRAGMENT`]
    /// non-whitespace characters found in its body.
    fn appears_in(&self, line: &str) -> bool {
        if self.lines.iter().any(|l| line.contains(l)) {
            return true;
        }
        // Every run of KEY_FRAGMENT or more that occurs in the body contains a KEY_FRAGMENT-long
        // window that does, so windows of the whitespace-separated runs are enough. Bytes, not
        // characters: the body is ASCII, so only an ASCII window (valid UTF-8) can match.
        line.split(char::is_whitespace)
            .flat_map(|run| run.as_bytes().windows(KEY_FRAGMENT))
            .filter_map(|window| std::str::from_utf8(window).ok())
            .any(|window| self.body.contains(window))
    }
}

/// Whether a stderr line could be key material: part of the key rekey handed over (when it
/// did), or, for any other key the command might print, a line mentioning a PEM private key or
/// a long base64 run that is not a hex digest (fingerprints are fine to show).
fn could_be_key(line: &str, key: Option<&KnownKey<'_>>) -> bool {
    if key.is_some_and(|k| k.appears_in(line)) || line.contains("PRIVATE KEY") {
        return true;
    }
    let base64 = |c: &char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
    let mut run = String::new();
    for c in line.chars().chain(std::iter::once(' ')) {
        if base64(&c) {
            run.push(c);
            continue;
        }
        if run.len() >= 40 && !run.chars().all(|c| c.is_ascii_hexdigit()) {
            return true;
        }
        run.clear();
    }
    false
}

/// Kills an `exec` consumer's process group when dropped (a timeout, or the run abandoned),
/// unless disarmed once its leader was reaped.
struct GroupKill(Option<rustix::process::Pid>);

impl GroupKill {
    fn kill(&mut self) {
        if let Some(group) = self.0.take() {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A 0600 temporary file holding the key, created fresh (never through an existing name) and
/// removed when dropped.
struct KeyFile {
    path: PathBuf,
}

impl KeyFile {
    fn create(key: &KeyMaterial, label: &str) -> Result<KeyFile> {
        let dir = std::env::temp_dir();
        let mut last = None;
        for _ in 0..8 {
            let path = dir.join(format!(
                "rekey-key-{}-{:016x}.pem",
                std::process::id(),
                rand::random::<u64>()
            ));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(mut file) => {
                    // From here on the guard removes it, also if writing fails.
                    let guard = KeyFile { path };
                    file.write_all(key.expose_secret_pem().as_bytes())
                        .and_then(|()| file.sync_all())
                        .map_err(|e| file_error(label, &guard.path, e))?;
                    return Ok(guard);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(file_error(label, &path, e)),
            }
        }
        Err(file_error(
            label,
            &dir,
            last.unwrap_or_else(|| std::io::Error::other("no free name")),
        ))
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn file_error(label: &str, path: &Path, e: std::io::Error) -> Error {
    let kind = match e.kind() {
        std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
        _ => ErrorKind::Unexpected,
    };
    Error::new(kind, format!("{label}: cannot write {}", path.display()))
        .with_source(e)
        .with_hint("check that the folder exists and the user rekey runs as may write to it")
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Writes `bytes` atomically with exactly `mode` unless the file already holds them with that
/// mode; whether it wrote. A key file is read back through [`KeyMaterial`] (zeroed on drop).
fn write_if_changed(path: &Path, bytes: &[u8], mode: u32, secret: bool) -> std::io::Result<bool> {
    let same_mode = std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o7777 == mode);
    let same_bytes = same_mode
        && if secret {
            std::fs::read_to_string(path)
                .ok()
                .and_then(|text| KeyMaterial::from_pem(text).ok())
                .is_some_and(|held| held.expose_secret_pem().as_bytes() == bytes)
        } else {
            std::fs::read(path).is_ok_and(|held| held == bytes)
        };
    if same_bytes {
        return Ok(false);
    }
    crate::atomic_file::write(path, bytes, mode)?;
    // The umask may have narrowed the mode; a consumer expects exactly this one.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(true)
}

/// The files hold the announced certificate and a key that belongs to it.
fn file_adoption(key_path: &Path, cert_path: &Path, p: &Announcement<'_>) -> Adoption {
    let waiting = |detail: String| Adoption::Waiting { detail };
    let cert = match std::fs::read_to_string(cert_path) {
        Ok(text) => match Certificate::from_pem(&text) {
            Ok(cert) => cert,
            Err(_) => {
                return waiting(format!(
                    "{} holds no readable certificate",
                    cert_path.display()
                ));
            }
        },
        Err(e) => return waiting(format!("cannot read {}: {e}", cert_path.display())),
    };
    if cert.fingerprint != p.new_fingerprint {
        return waiting(format!(
            "{} holds {}, not {} (generation {})",
            cert_path.display(),
            cert.fingerprint,
            p.new_fingerprint,
            p.generation
        ));
    }
    let key = match std::fs::read_to_string(key_path) {
        Ok(text) => match KeyMaterial::from_pem(text) {
            Ok(key) => key,
            Err(_) => return waiting(format!("{} holds no readable key", key_path.display())),
        },
        Err(e) => return waiting(format!("cannot read {}: {e}", key_path.display())),
    };
    if pki::prove_pair(&key, &cert).is_err() {
        return waiting(format!(
            "the key in {} does not belong to the certificate in {}",
            key_path.display(),
            cert_path.display()
        ));
    }
    Adoption::Adopted {
        detail: format!(
            "{} holds {} (generation {}) and {} its key",
            cert_path.display(),
            p.new_fingerprint,
            p.generation,
            key_path.display()
        ),
    }
}

/// Runs `op` for every consumer, at most `limit` at a time, and answers each consumer's result in
/// the order of `consumers`. A failing consumer never stops the others.
pub async fn for_all<'c, T, F, Fut>(
    consumers: impl IntoIterator<Item = &'c Consumer>,
    limit: usize,
    mut op: F,
) -> Vec<(&'c Consumer, Result<T>)>
where
    F: FnMut(&'c Consumer) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    use futures_util::stream::{self, StreamExt as _};
    stream::iter(consumers)
        .map(|consumer| {
            let running = op(consumer);
            async move { (consumer, running.await) }
        })
        .buffered(limit.max(1))
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{CertSpec, KeyAlgorithm, Subject};
    use rekey_testkit::receiver::{Receiver, Reply};
    use sha2::Digest as _;
    use std::os::unix::fs::MetadataExt as _;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const BASE: &str = r#"
[orgs.acme]
login_url = "https://acme.my.salesforce.com"
[orgs.acme.admin]
auth = "access_token_env"

[stores.local]
kind = "file"
path = "keys"

[credentials.billing]
org = "acme"
app_kind = "connected_app"
app = "Billing_Sync"
username = "integration@acme.example"
store = "local"
subject = { cn = "billing-sync" }
"#;

    const SECRET: &str = "whsec-consumer-test";
    const FAST: Backoff = Backoff {
        attempts: 3,
        base: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
    };

    /// Two generations, made once: (new key, new cert, old key, old cert). The new key is the
    /// hard case for keeping it out of messages: see [`SHORT_TAIL`].
    fn pairs() -> &'static (KeyMaterial, Certificate, KeyMaterial, Certificate) {
        static PAIRS: OnceLock<(KeyMaterial, Certificate, KeyMaterial, Certificate)> =
            OnceLock::new();
        PAIRS.get_or_init(|| {
            let spec = CertSpec {
                algorithm: KeyAlgorithm::Rsa2048,
                subject: Subject {
                    cn: "consumer-test".into(),
                    o: None,
                    ou: None,
                },
                validity_days: 30,
            };
            let (new_key, new_cert) = (0..500)
                .map(|_| pki::generate(&spec, rekey_api::now()).unwrap())
                .find(|(key, _)| last_body_line(key).len() < SHORT_TAIL)
                .expect("none of 500 RSA keys had a PEM body whose last line is short");
            let (old_key, old_cert) = pki::generate(&spec, rekey_api::now()).unwrap();
            (new_key, new_cert, old_key, old_cert)
        })
    }

    /// An RSA-2048 PEM body's last line is usually 24 characters (sometimes 28), but 20 for
    /// about one key in 27 (its DER a byte or two shorter): such a line once slipped past a
    /// length-based filter, so the key the tests hand over is always one whose last line is
    /// that short, rather than the random key failing the tests now and then.
    const SHORT_TAIL: usize = 24;

    fn last_body_line(key: &KeyMaterial) -> &str {
        key.expose_secret_pem()
            .lines()
            .rfind(|l| !l.trim().is_empty() && !l.starts_with("-----"))
            .unwrap()
    }

    fn announce(stage: Stage) -> Announcement<'static> {
        let (key, cert, _, old) = pairs();
        Announcement {
            credential: "billing",
            generation: Generation(7),
            new_fingerprint: cert.fingerprint,
            old_fingerprint: Some(old.fingerprint),
            stage,
            key: Some(key),
            certificate_pem: cert.pem(),
            read_from: "vault secret/rekey/billing/pending".into(),
        }
    }

    /// The previous generation announced as CURRENT again: what reverting a consumer sends.
    fn revert() -> Announcement<'static> {
        let (_, cert, key, old) = pairs();
        Announcement {
            credential: "billing",
            generation: Generation(6),
            new_fingerprint: old.fingerprint,
            old_fingerprint: Some(cert.fingerprint),
            stage: Stage::Current,
            key: Some(key),
            certificate_pem: old.pem(),
            read_from: "vault secret/rekey/billing/current".into(),
        }
    }

    /// The key's PEM body lines, the short last one too: none may appear anywhere but where it
    /// is delivered.
    fn key_lines() -> Vec<String> {
        pairs()
            .0
            .expose_secret_pem()
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("-----"))
            .map(str::to_string)
            .collect()
    }

    fn assert_no_key(text: &str) {
        for line in key_lines() {
            assert!(!text.contains(&line), "key material in: {text}");
        }
    }

    /// The consumers of a config in `dir` whose credential lists `entries`.
    fn consumers(dir: &Path, entries: &str) -> Vec<Consumer> {
        let text = format!("{BASE}\n{entries}");
        let config = crate::config::parse(&text, &dir.join("rekey.toml")).unwrap();
        CredentialConsumers::from_config(&config.credentials["billing"])
            .unwrap()
            .consumers
            .into_iter()
            .map(|c| c.with_backoff(FAST))
            .collect()
    }

    fn one(dir: &Path, entry: &str) -> Consumer {
        consumers(dir, &format!("[[credentials.billing.consumers]]\n{entry}"))
            .pop()
            .unwrap()
    }

    fn webhook(dir: &Path, url: &str, status_url: Option<&str>) -> Consumer {
        std::fs::write(dir.join("hook.secret"), format!("{SECRET}\n")).unwrap();
        let status = status_url.map_or(String::new(), |u| format!("status_url = \"{u}\"\n"));
        one(
            dir,
            &format!(
                "name = \"mw\"\nkind = \"webhook\"\nurl = \"{url}\"\nsecret_file = \"hook.secret\"\n{status}"
            ),
        )
    }

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn exec(dir: &Path, script: &Path, extra: &str) -> Consumer {
        let out = dir.join("out");
        std::fs::create_dir_all(&out).unwrap();
        one(
            dir,
            &format!(
                "name = \"reload\"\nkind = \"exec\"\ncommand = [\"{}\", \"{}\"]\n{extra}",
                script.display(),
                out.display()
            ),
        )
    }

    fn read(path: PathBuf) -> String {
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[tokio::test]
    async fn a_webhook_gets_the_exact_signed_payload_and_is_retried_after_a_503() {
        let dir = tempfile::tempdir().unwrap();
        let receiver = Receiver::start(
            vec![Reply::status(503, r#"{"message":"warming up"}"#)],
            Reply::status(200, "ok"),
        )
        .await;
        let hook = webhook(dir.path(), &receiver.url("/rekey/in?token=t0p"), None);
        let debug = format!("{hook:?}");
        assert!(
            debug.contains("127.0.0.1") && !debug.contains(SECRET) && !debug.contains("t0p"),
            "{debug}"
        );

        let detail = hook.prepare(&announce(Stage::Pending)).await.unwrap();
        assert_eq!(
            detail,
            "127.0.0.1 accepted prepare of generation 7: HTTP 200 (attempt 2)"
        );
        let detail = hook.activate(&announce(Stage::Current)).await.unwrap();
        assert_eq!(
            detail,
            "127.0.0.1 accepted activate of generation 7: HTTP 200"
        );

        let (_, cert, _, old) = pairs();
        let requests = receiver.requests();
        assert_eq!(requests.len(), 3, "{requests:?}");
        for (request, event) in requests.iter().zip(["prepare", "prepare", "activate"]) {
            assert_eq!(request.method, "POST");
            assert_eq!(request.path, "/rekey/in");
            assert_eq!(
                request.header("content-type").as_deref(),
                Some("application/json")
            );
            assert_eq!(
                request.json(),
                serde_json::json!({
                    "event": event,
                    "credential": "billing",
                    "generation": 7,
                    "new_fingerprint": cert.fingerprint.to_hex(),
                    "old_fingerprint": old.fingerprint.to_hex(),
                    "read_from": "vault secret/rekey/billing/pending",
                })
            );
            let timestamp = request.header(TIMESTAMP_HEADER).unwrap();
            let signature = request.header(SIGNATURE_HEADER).unwrap();
            assert!(signature.starts_with("sha256="), "{signature}");
            assert!(rekey_http::verify_signature(
                SECRET.as_bytes(),
                &timestamp,
                &request.body,
                &signature,
                chrono::Utc::now(),
                Duration::from_secs(300),
            ));
            assert!(!rekey_http::verify_signature(
                b"another secret",
                &timestamp,
                &request.body,
                &signature,
                chrono::Utc::now(),
                Duration::from_secs(300),
            ));
            assert_no_key(&String::from_utf8_lossy(&request.body));
        }

        // A refusal is final; a consumer that stays down is given up on, as a temporary error.
        let refusing = Receiver::answering(401, r#"{"error":"bad signature"}"#).await;
        let hook = webhook(dir.path(), &refusing.url("/in"), None);
        let err = hook.prepare(&announce(Stage::Pending)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unauthenticated);
        assert!(!err.is_temporary());
        assert_eq!(refusing.count(), 1);
        assert_eq!(
            err.to_string(),
            "webhook consumer 'mw' (127.0.0.1): prepare: HTTP 401 (bad signature)"
        );
        let down = Receiver::answering(503, "").await;
        let hook = webhook(dir.path(), &down.url("/in"), None);
        let err = hook.activate(&announce(Stage::Current)).await.unwrap_err();
        assert!(err.is_temporary(), "{err:?}");
        assert!(
            err.to_string()
                .ends_with("HTTP 503 (gave up after 3 attempts)"),
            "{err}"
        );
        assert_eq!(down.count(), 3);
        let refusing = rekey_testkit::receiver::RefusingPort::bind();
        let hook = webhook(dir.path(), &refusing.url("/in"), None);
        let err = hook.prepare(&announce(Stage::Pending)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert!(err.to_string().contains("could not connect"), "{err}");
    }

    #[tokio::test]
    async fn adoption_is_polled_until_the_status_reports_the_new_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let (_, cert, _, old) = pairs();
        let answer = |f: &Fingerprint| Reply::status(200, &format!(r#"{{"fingerprint":"{f}"}}"#));
        // openssl's form (colons, upper case) is the same fingerprint.
        let openssl_form = cert
            .fingerprint
            .to_hex()
            .to_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(":");
        let status = Receiver::start(
            vec![
                answer(&old.fingerprint),
                Reply::status(503, "restarting"),
                Reply::status(200, &format!(r#"{{"fingerprint":"{openssl_form}"}}"#)),
            ],
            Reply::status(500, ""),
        )
        .await;
        let posts = Receiver::answering(204, "").await;
        let hook = webhook(dir.path(), &posts.url("/in"), Some(&status.url("/status")));
        let p = announce(Stage::Current);
        let first = hook.adopted(&p).await.unwrap();
        assert_eq!(
            first,
            Adoption::Waiting {
                detail: format!(
                    "127.0.0.1 reports {}, not yet {} (generation 7)",
                    old.fingerprint, cert.fingerprint
                )
            }
        );
        let second = hook.adopted(&p).await.unwrap();
        assert_eq!(second.detail(), "status at 127.0.0.1: HTTP 503");
        assert!(!second.is_adopted());
        let third = hook.adopted(&p).await.unwrap();
        assert!(third.is_adopted(), "{third:?}");
        assert_eq!(
            third.detail(),
            format!("127.0.0.1 reports {} (generation 7)", cert.fingerprint)
        );
        assert!(status.requests().iter().all(|r| r.method == "GET"));
        assert_eq!(posts.count(), 0, "polling never POSTs");

        // Without a status URL the accepted activate is the adoption; a store consumer reads the
        // store; a status that is not a fingerprint is an error, not a wait.
        let plain = webhook(dir.path(), &posts.url("/in"), None);
        assert!(plain.adopted(&p).await.unwrap().is_adopted());
        let store = one(dir.path(), "name = \"etl\"\nkind = \"store\"\n");
        assert_eq!(
            store.prepare(&announce(Stage::Pending)).await.unwrap(),
            "reads CURRENT from the store"
        );
        assert_eq!(
            store.activate(&p).await.unwrap(),
            "reads CURRENT from the store"
        );
        assert!(store.adopted(&p).await.unwrap().is_adopted());
        let garbled = Receiver::answering(200, r#"{"status":"ok"}"#).await;
        let polled = one(
            dir.path(),
            &format!(
                "name = \"etl\"\nkind = \"store\"\nstatus_url = \"{}\"\nadopt_timeout_secs = 5\n",
                garbled.url("/status")
            ),
        );
        assert_eq!(polled.adopt_timeout(), Duration::from_secs(5));
        let err = polled.adopted(&p).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Rejected);
        let refusing = rekey_testkit::receiver::RefusingPort::bind();
        let gone = one(
            dir.path(),
            &format!(
                "name = \"etl\"\nkind = \"store\"\nstatus_url = \"{}\"\n",
                refusing.url("/s")
            ),
        );
        assert_eq!(
            gone.adopted(&p).await.unwrap().detail(),
            "status at 127.0.0.1: could not connect"
        );
    }

    #[tokio::test]
    async fn exec_gets_rekey_variables_and_the_key_in_a_0600_file_that_is_gone_afterwards() {
        let dir = tempfile::tempdir().unwrap();
        let hook = script(
            dir.path(),
            "hook.sh",
            r#"out="$1"
env > "$out/env"
printf '%s\n' "$0" "$@" > "$out/argv"
echo "$REKEY_KEY_FILE" > "$out/path"
stat -c %a "$REKEY_KEY_FILE" > "$out/mode"
sha256sum < "$REKEY_KEY_FILE" | cut -d' ' -f1 > "$out/key.sha256""#,
        );
        let consumer = exec(dir.path(), &hook, "deliver_key = \"file\"\n");
        let detail = consumer.prepare(&announce(Stage::Pending)).await.unwrap();
        assert!(
            detail.starts_with(&format!("{} prepare: exit 0 in ", hook.display()))
                && detail.ends_with(" ms, key by file"),
            "{detail}"
        );
        let out = dir.path().join("out");
        let (key, cert, _, old) = pairs();
        assert_eq!(
            read(out.join("key.sha256")).trim(),
            hex::encode(sha2::Sha256::digest(key.expose_secret_pem()))
        );
        assert_eq!(read(out.join("mode")).trim(), "600");
        let key_file = PathBuf::from(read(out.join("path")).trim());
        assert!(key_file.starts_with(std::env::temp_dir()), "{key_file:?}");
        assert!(!key_file.exists(), "the key file is removed after the run");

        let env = read(out.join("env"));
        for expected in [
            "REKEY_CREDENTIAL=billing".to_string(),
            "REKEY_GENERATION=7".to_string(),
            format!("REKEY_FINGERPRINT={}", cert.fingerprint),
            format!("REKEY_OLD_FINGERPRINT={}", old.fingerprint),
            "REKEY_STAGE=pending".to_string(),
            "REKEY_EVENT=prepare".to_string(),
            "REKEY_READ_FROM=vault secret/rekey/billing/pending".to_string(),
            format!("REKEY_KEY_FILE={}", key_file.display()),
        ] {
            assert!(env.lines().any(|l| l == expected), "{expected} in\n{env}");
        }
        // rekey's own environment stays behind (cargo sets CARGO_* for tests).
        if std::env::var_os("CARGO_MANIFEST_DIR").is_some() {
            assert!(!env.contains("CARGO_MANIFEST_DIR="), "{env}");
        }
        let argv = read(out.join("argv"));
        assert_eq!(argv, format!("{}\n{}\n", hook.display(), out.display()));
        assert_no_key(&env);
        assert_no_key(&argv);
    }

    #[tokio::test]
    async fn exec_can_get_the_key_on_stdin_and_is_told_activate() {
        let dir = tempfile::tempdir().unwrap();
        let hook = script(
            dir.path(),
            "hook.sh",
            r#"sha256sum | cut -d' ' -f1 > "$1/stdin.sha256"
env > "$1/env"
printf '%s\n' "$0" "$@" > "$1/argv""#,
        );
        let consumer = exec(dir.path(), &hook, "deliver_key = \"stdin\"\n");
        let p = announce(Stage::Current);
        let detail = consumer.activate(&p).await.unwrap();
        assert!(detail.ends_with(" ms, key on stdin"), "{detail}");
        let out = dir.path().join("out");
        assert_eq!(
            read(out.join("stdin.sha256")).trim(),
            hex::encode(sha2::Sha256::digest(pairs().0.expose_secret_pem()))
        );
        let env = read(out.join("env"));
        assert!(
            env.lines().any(|l| l == "REKEY_EVENT=activate")
                && env.lines().any(|l| l == "REKEY_STAGE=current")
                && !env.contains("REKEY_KEY_FILE"),
            "{env}"
        );
        assert_no_key(&env);
        assert_no_key(&read(out.join("argv")));
        let adoption = consumer.adopted(&p).await.unwrap();
        assert!(adoption.is_adopted(), "{adoption:?}");

        // Without deliver_key the command gets nothing on stdin.
        let quiet = exec(dir.path(), &hook, "");
        quiet.activate(&p).await.unwrap();
        assert_eq!(
            read(out.join("stdin.sha256")).trim(),
            hex::encode(sha2::Sha256::digest(b""))
        );
    }

    #[tokio::test]
    async fn a_failing_command_is_an_error_with_its_code_and_stderr_but_never_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let hook = script(
            dir.path(),
            "fail.sh",
            r#"echo "$REKEY_KEY_FILE" > "$1/path"
echo "reloading billing-sync" >&2
cat "$REKEY_KEY_FILE" >&2
echo "cannot reload: permission denied" >&2
exit 3"#,
        );
        let consumer = exec(dir.path(), &hook, "deliver_key = \"file\"\n");
        let err = consumer
            .activate(&announce(Stage::Current))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Rejected);
        let text = err.to_string();
        // The last five lines: two full body lines, the short last one, the END armour line.
        assert_eq!(
            text,
            format!(
                "exec consumer 'reload': {} activate failed with exit code 3: \
                 [elided] | [elided] | [elided] | [elided] | cannot reload: permission denied",
                hook.display()
            )
        );
        assert_no_key(&text);
        assert_no_key(&format!("{err:?}"));
        let key_file = PathBuf::from(read(dir.path().join("out/path")).trim());
        assert!(!key_file.exists(), "removed after a failure too");

        // A program that is not there is named, with where it is configured.
        let missing = exec(dir.path(), &dir.path().join("nope.sh"), "");
        let err = missing
            .prepare(&announce(Stage::Pending))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.to_string().contains("cannot run"), "{err}");
        assert!(err.hint().unwrap().contains("rekey.toml:"), "{err:?}");

        // The stage must match the operation.
        let err = missing
            .prepare(&announce(Stage::Current))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unexpected);
    }

    /// A generous bound on waiting for a process to end or a file to appear: only a guard
    /// against hanging, far above what either takes on a loaded machine.
    const HANG_GUARD: Duration = Duration::from_secs(60);

    /// Whether process `pid` is gone (or a zombie nobody reaped yet), before [`HANG_GUARD`].
    async fn ends(pid: &str) -> bool {
        let deadline = Instant::now() + HANG_GUARD;
        while Instant::now() < deadline {
            match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Err(_) => return true,
                Ok(stat)
                    if stat
                        .rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('Z') =>
                {
                    return true;
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        false
    }

    /// The contents of `path` once a command has written it (renamed into place, so complete).
    async fn written(path: PathBuf) -> String {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            if let Ok(text) = std::fs::read_to_string(&path) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{} never appeared",
                path.display()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_command_that_times_out_or_is_abandoned_is_ended_with_what_it_started() {
        let dir = tempfile::tempdir().unwrap();
        // Never finishes on its own: it waits for a sleep far longer than any timeout here, and
        // says which process that sleep is once it started it.
        let slow = script(
            dir.path(),
            "slow.sh",
            "echo \"$REKEY_KEY_FILE\" > \"$1/path\"\nsleep 3600 &\necho $! > \"$1/child.new\"\nmv \"$1/child.new\" \"$1/child\"\nwait\n",
        );
        let out = dir.path().join("out");
        // The timeout runs from the spawn: on a machine too loaded for the script to even start
        // its sleep within it, there is nothing to check, so that try is repeated with a longer
        // timeout. Whether the command is killed never depends on speed: it cannot finish.
        let mut timeout = 1;
        let child = loop {
            let consumer = exec(
                dir.path(),
                &slow,
                &format!("deliver_key = \"file\"\ntimeout_secs = {timeout}\n"),
            );
            let err = consumer
                .prepare(&announce(Stage::Pending))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Unavailable);
            assert!(
                err.to_string().contains(&format!(
                    "did not finish prepare within {timeout} s and was killed"
                )),
                "{err}"
            );
            if let Ok(child) = std::fs::read_to_string(out.join("child")) {
                break child;
            }
            assert!(timeout < 32, "the script never got to start its sleep");
            timeout *= 2;
        };
        assert!(ends(child.trim()).await, "the sleep it started was killed");
        assert!(!PathBuf::from(read(out.join("path")).trim()).exists());

        // Abandoned (the future dropped) once the command is known to be running; only then.
        std::fs::remove_file(out.join("child")).unwrap();
        let consumer = exec(
            dir.path(),
            &slow,
            "deliver_key = \"file\"\ntimeout_secs = 3600\n",
        );
        let current = announce(Stage::Current);
        let child = tokio::select! {
            done = consumer.activate(&current) => panic!("finished: {done:?}"),
            child = written(out.join("child")) => child,
        };
        assert!(ends(child.trim()).await, "killed when abandoned");
        assert!(!PathBuf::from(read(out.join("path")).trim()).exists());
    }

    #[tokio::test]
    async fn a_file_consumer_gets_both_pems_atomically_with_their_modes_and_only_once() {
        let dir = tempfile::tempdir().unwrap();
        let consumer = one(
            dir.path(),
            "name = \"legacy\"\nkind = \"file\"\nkey_path = \"legacy/key.pem\"\ncert_path = \"legacy/cert.pem\"\n",
        );
        let folder = dir.path().join("legacy");
        let listing = || {
            let mut names: Vec<String> = std::fs::read_dir(&folder)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        let err = consumer
            .prepare(&announce(Stage::Pending))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        std::fs::create_dir(&folder).unwrap();
        assert_eq!(
            consumer.prepare(&announce(Stage::Pending)).await.unwrap(),
            format!("can write {}", folder.display())
        );
        assert!(listing().is_empty(), "prepare writes nothing");
        let p = announce(Stage::Current);
        assert!(!consumer.adopted(&p).await.unwrap().is_adopted());

        let detail = consumer.activate(&p).await.unwrap();
        assert!(
            detail.contains("(wrote, 0600)") && detail.contains("(wrote, 0644)"),
            "{detail}"
        );
        assert_no_key(&detail);
        let (key, cert, _, _) = pairs();
        let (key_path, cert_path) = (folder.join("key.pem"), folder.join("cert.pem"));
        assert_eq!(read(key_path.clone()), key.expose_secret_pem());
        assert_eq!(read(cert_path.clone()), cert.pem());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&key_path), mode(&cert_path)), (0o600, 0o644));
        assert_eq!(
            listing(),
            ["cert.pem", "key.pem"],
            "no temporary file is left"
        );
        assert!(consumer.adopted(&p).await.unwrap().is_adopted());

        // Again: nothing is rewritten.
        let inode = |p: &Path| std::fs::metadata(p).unwrap().ino();
        let before = (inode(&key_path), inode(&cert_path));
        let detail = consumer.activate(&p).await.unwrap();
        assert!(
            detail.contains("(unchanged, 0600)") && detail.contains("(unchanged, 0644)"),
            "{detail}"
        );
        assert_eq!((inode(&key_path), inode(&cert_path)), before);

        // Reverting writes the previous generation by rename (new inodes), and the new one is
        // then no longer adopted.
        let old = revert();
        consumer.activate(&old).await.unwrap();
        assert_ne!(inode(&key_path), before.0);
        assert_eq!(read(cert_path.clone()), pairs().3.pem());
        assert!(consumer.adopted(&old).await.unwrap().is_adopted());
        let waiting = consumer.adopted(&p).await.unwrap();
        assert!(!waiting.is_adopted(), "{waiting:?}");

        // A certificate without its key is not an adoption.
        std::fs::write(&cert_path, cert.pem()).unwrap();
        let mismatch = consumer.adopted(&p).await.unwrap();
        assert!(
            mismatch.detail().contains("does not belong"),
            "{mismatch:?}"
        );
        assert_eq!(listing(), ["cert.pem", "key.pem"]);
    }

    #[tokio::test]
    async fn for_all_runs_at_most_limit_at_once_and_answers_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let entries: String = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|n| {
                format!("[[credentials.billing.consumers]]\nname = \"{n}\"\nkind = \"store\"\n")
            })
            .collect();
        let all = consumers(dir.path(), &entries);
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let results = for_all(&all, 2, |c| {
            let (running, most) = (&running, &most);
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                if c.name() == "c" {
                    Err(Error::new(ErrorKind::Rejected, "c refused"))
                } else {
                    c.prepare(&announce(Stage::Pending)).await
                }
            }
        })
        .await;
        assert_eq!(most.load(Ordering::SeqCst), 2);
        let names: Vec<&str> = results.iter().map(|(c, _)| c.name()).collect();
        assert_eq!(names, ["a", "b", "c", "d", "e"]);
        assert_eq!(
            results.iter().filter(|(_, r)| r.is_ok()).count(),
            4,
            "one failure stops nobody else"
        );
    }

    #[test]
    fn a_webhook_secret_that_is_not_there_names_the_consumer_and_where_it_is_configured() {
        let dir = tempfile::tempdir().unwrap();
        let unset = "REKEY_CONSUMER_TEST_UNSET_5e1b";
        assert!(std::env::var_os(unset).is_none());
        let text = format!(
            "{BASE}\n[[credentials.billing.consumers]]\nname = \"mw\"\nkind = \"webhook\"\nurl = \"https://mw.example/in\"\nsecret_env = \"{unset}\"\n"
        );
        let config = crate::config::parse(&text, &dir.path().join("rekey.toml")).unwrap();
        let err = CredentialConsumers::from_config(&config.credentials["billing"]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("rekey.toml:19:1: consumer 'mw'") && text.contains(unset),
            "{text}"
        );
        assert!(
            err.hint()
                .unwrap()
                .contains("secret_file = \"PATH\" in [[credentials.billing.consumers]] 'mw'"),
            "{err:?}"
        );
    }

    #[test]
    fn every_piece_of_the_key_handed_over_is_elided_however_short() {
        let key = &pairs().0;
        let pem = key.expose_secret_pem();
        let elided = |line: &str| stderr_tail(line.as_bytes(), Some(key)) == "[elided]";
        // Each line alone, as a command that prints the key file line by line would, armour
        // included; indented or not, the comparison is after trimming.
        for line in pem.lines().filter(|l| !l.trim().is_empty()) {
            assert!(elided(line), "not elided: a line of the key");
            assert!(
                elided(&format!("  {line}  ")),
                "not elided: an indented line"
            );
        }
        let last = last_body_line(key);
        assert!(last.len() < SHORT_TAIL);
        assert!(elided(last), "not elided: the short last line");
        assert!(elided(&format!("read {last} at EOF")));
        // Eight characters of the body, across a line break, inside other text.
        let body: String = key_lines().concat();
        let across = key_lines()[0].len() - 4;
        let fragment = &body[across..across + KEY_FRAGMENT];
        assert!(
            elided(&format!("bad token x{fragment}y in request")),
            "{fragment}"
        );
        // Fewer are not key material: they could be anything.
        let short = &fragment[..KEY_FRAGMENT - 1];
        let seven = format!("saw {short} here");
        assert_eq!(stderr_tail(seven.as_bytes(), Some(key)), seven);
        // A hex fingerprint is shown, the new one as any other.
        for fingerprint in [pairs().1.fingerprint, pairs().3.fingerprint] {
            let line = format!("fingerprint {fingerprint} not adopted");
            assert_eq!(stderr_tail(line.as_bytes(), Some(key)), line);
        }
    }

    #[test]
    fn stderr_lines_that_could_be_key_material_are_elided() {
        let key = &pairs().0;
        let body_line = key_lines()[3].clone();
        // The generated key's own armour line, as a command that cats the key file would print.
        let armour = key.expose_secret_pem().lines().next().unwrap().to_string();
        assert!(armour.starts_with("-----BEGIN"), "{armour}");
        let text = format!(
            "one\n\nfingerprint {}\n{body_line}\nsecret: {}\n{armour}\nsix\nseven\n",
            pairs().1.fingerprint,
            &body_line[5..40]
        );
        let tail = stderr_tail(text.as_bytes(), Some(key));
        assert_eq!(tail, "[elided] | [elided] | [elided] | six | seven");
        let tail = stderr_tail(
            b"fingerprint ok\nQUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlq\n",
            None,
        );
        assert_eq!(tail, "fingerprint ok | [elided]");
        let hex = format!("reports {}", pairs().1.fingerprint);
        assert_eq!(stderr_tail(hex.as_bytes(), None), hex);
    }
}
