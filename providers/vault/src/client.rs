//! The connection to one Vault server, through vaultrs: login (token, AppRole, Kubernetes),
//! keeping the token alive (renew-self at half its TTL, re-login when it cannot be renewed), and
//! the one place where vaultrs's errors become `rekey_api::Error` kinds.
//!
//! Tokens travel only in the `X-Vault-Token` header and login bodies. Messages name the address,
//! the method and the path, and quote Vault's own `errors` texts, which never contain secrets.

use crate::config::{VaultAuth, VaultConfig};
use async_trait::async_trait;
use rekey_api::{Error, ErrorKind, Result, SecretString};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::instrument::{WithDispatch, WithSubscriber};
use tracing::subscriber::NoSubscriber;
use vaultrs::api::{AuthInfo, EndpointMiddleware};
use vaultrs::client::{VaultClient, VaultClientSettings, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;
use zeroize::Zeroize;

/// The whole request, connecting included; vaultrs offers no separate connect timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How a vaultrs call failed, before it becomes a `rekey_api::Error`.
pub(crate) enum VaultFailure {
    /// Vault answered with a non-2xx status; `errors` is its `errors` array joined (may be
    /// empty, e.g. a 404 for a deleted version carries data instead).
    Status { code: u16, errors: String },
    /// No usable answer: the request never got one, or it was not shaped like Vault's.
    Other(Error),
}

/// A logged-in token and how long it lives.
struct Session {
    token: SecretString,
    /// The TTL the token was issued (or last renewed) with; zero for tokens that never expire.
    lease: Duration,
    /// When the token expires; `None` for tokens that never expire.
    expires: Option<Instant>,
    renewable: bool,
}

impl Session {
    fn from_lease(token: SecretString, ttl_secs: u64, renewable: bool) -> Session {
        let lease = Duration::from_secs(ttl_secs);
        Session {
            token,
            lease,
            expires: (ttl_secs > 0).then(|| Instant::now() + lease),
            renewable,
        }
    }

    /// Less than half of the TTL left: renew before the next operation.
    fn needs_refresh(&self) -> bool {
        self.expires
            .is_some_and(|at| at.saturating_duration_since(Instant::now()) < self.lease / 2)
    }
}

/// The shared [`VaultClient`] seen with one token. vaultrs keeps the token in the client's
/// middleware and changes it only through `&mut`; a per-call view lets concurrent operations
/// share one connection pool, one TLS setup and one namespace header while the session renews
/// or replaces the token underneath.
pub(crate) struct Authed<'a> {
    base: &'a VaultClient,
    middle: EndpointMiddleware,
}

impl Drop for Authed<'_> {
    fn drop(&mut self) {
        // vaultrs holds the token in a plain String; wipe our copy like the session's own.
        self.middle.token.zeroize();
    }
}

#[async_trait]
impl vaultrs::client::Client for Authed<'_> {
    fn http(&self) -> &rustify::clients::reqwest::Client {
        &self.base.http
    }

    fn middle(&self) -> &EndpointMiddleware {
        &self.middle
    }

    fn settings(&self) -> &VaultClientSettings {
        &self.base.settings
    }

    fn set_token(&mut self, token: &str) {
        self.middle.token.zeroize();
        self.middle.token = token.to_string();
    }
}

/// Connection to one Vault server.
pub(crate) struct Client {
    vault: VaultClient,
    address: String,
    namespace: Option<String>,
    mount: String,
    auth: VaultAuth,
    session: Mutex<Option<Session>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The auth redacts its secrets; the session (the live token) is left out entirely.
        f.debug_struct("Client")
            .field("address", &self.address)
            .field("namespace", &self.namespace)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// Runs a vaultrs call with tracing switched off. vaultrs and rustify log every non-2xx answer
/// at ERROR (a key not written yet, a check-and-set conflict the journal retries), which the CLI
/// would print at its default level; rekey turns each answer into its own error or log line.
pub(crate) fn quiet<F: Future>(call: F) -> WithDispatch<F> {
    call.with_subscriber(NoSubscriber::default())
}

/// [`quiet`], logged: the request (`METHOD host/v1/path`) at info before, whether it was answered
/// with success and how long it took at debug after (see `rekey_http::log`).
pub(crate) async fn logged<T, E, F: Future<Output = std::result::Result<T, E>>>(
    address: &str,
    method: &str,
    path: &str,
    call: F,
) -> std::result::Result<T, E> {
    let line = rekey_http::log::request_line(
        method,
        &format!("{}/v1/{path}", address.trim_end_matches('/')),
    );
    tracing::info!("request {line}");
    let started = std::time::Instant::now();
    let result = quiet(call).await;
    let millis = started.elapsed().as_millis();
    match &result {
        Ok(_) => tracing::debug!("success answer to {line} in {millis} ms"),
        Err(_) => tracing::debug!("failure answer to {line} after {millis} ms"),
    }
    result
}

/// Vault's `errors` array, joined.
fn joined(errors: &[String]) -> String {
    errors.join("; ")
}

/// How a request without an answer failed ([`rekey_http::transport_how`]), from the reqwest
/// error rustify wrapped.
fn how_it_failed(cause: &(dyn std::error::Error + 'static)) -> &'static str {
    cause
        .downcast_ref::<reqwest::Error>()
        .map_or("request failed", rekey_http::transport_how)
}

/// A transport failure: connection refused, timeout, TLS. Worth a retry. Built here rather than
/// by [`rekey_http::transport_error`] because its cause is rustify's error around reqwest's.
fn transport(address: &str, what: &str, how: &str, source: rustify::errors::ClientError) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!("vault at {address}: {what}: {how}"),
    )
    .with_source(source)
    .with_hint("check the address (VAULT_ADDR), that the server runs, and its TLS certificate (VAULT_CACERT)")
    .temporary()
}

/// The files of `ca_cert` and `ca_path`, each checked to hold PEM CA certificates, so that a
/// bad file is a clear `Config` error rather than vaultrs's generic one.
fn ca_files(config: &VaultConfig) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    if let Some(file) = &config.ca_cert {
        files.push(file.clone());
    }
    if let Some(dir) = &config.ca_path {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("vault store: cannot read ca_path {}", dir.display()),
            )
            .with_source(e)
        })?;
        let mut found: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        files.extend(found);
    }
    for file in &files {
        let pem = std::fs::read(file).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("vault store: cannot read CA file {}", file.display()),
            )
            .with_source(e)
        })?;
        reqwest::Certificate::from_pem_bundle(&pem)
            .ok()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Config,
                    format!(
                        "vault store: {} holds no PEM CA certificate",
                        file.display()
                    ),
                )
            })?;
    }
    Ok(files)
}

/// vaultrs settings with every field set from `config`. The builder fills unset fields from
/// VAULT_ADDR, VAULT_TOKEN, VAULT_SKIP_VERIFY, VAULT_CACERT, VAULT_CAPATH, VAULT_CLIENT_CERT and
/// VAULT_CLIENT_KEY; the CLI has already resolved the environment into `config`, so nothing may
/// come from it here.
fn settings(
    config: &VaultConfig,
    address: &str,
    namespace: Option<String>,
) -> Result<VaultClientSettings> {
    let ca_certs = ca_files(config)?
        .into_iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    VaultClientSettingsBuilder::default()
        .address(address)
        // No token in the shared client: logins must go out without one, and every other call
        // attaches the session's current token through an `Authed` view.
        .token(String::new())
        .verify(!config.tls_skip_verify)
        .ca_certs(ca_certs)
        .identity(None)
        .namespace(namespace)
        .timeout(Some(REQUEST_TIMEOUT))
        .version(1)
        .wrapping(false)
        .build()
        .map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("vault store: invalid client settings: {e}"),
            )
        })
}

impl Client {
    /// A client for the server; no request is made yet. `address` is already validated, so
    /// vaultrs's panicking address setter cannot fire.
    pub(crate) fn new(config: VaultConfig, address: String) -> Result<Client> {
        let namespace = config
            .namespace
            .as_deref()
            .map(|n| n.trim_matches('/').to_string())
            .filter(|n| !n.is_empty());
        if config.tls_skip_verify {
            tracing::warn!(address = %address, "vault TLS verification is disabled (tls_skip_verify)");
        }
        let settings = settings(&config, &address, namespace.clone())?;
        let vault = VaultClient::new(settings).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                "vault store: cannot build the HTTP client",
            )
            .with_source(e)
        })?;
        Ok(Client {
            vault,
            address,
            namespace,
            mount: config.mount.trim_matches('/').to_string(),
            auth: config.auth,
            session: Mutex::new(None),
        })
    }

    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// The shared client carrying `token` (empty: none, for logins).
    fn with_token(&self, token: &str) -> Authed<'_> {
        let mut middle = self.vault.middle.clone();
        middle.token = token.to_string();
        Authed {
            base: &self.vault,
            middle,
        }
    }

    /// The shared client with a usable token (logging in or renewing first when needed).
    pub(crate) async fn authed(&self) -> Result<Authed<'_>> {
        let token = self.token().await?;
        Ok(self.with_token(token.expose_secret()))
    }

    /// Sorts a vaultrs error into a status answer or an already final error.
    pub(crate) fn failure(&self, what: &str, e: ClientError) -> VaultFailure {
        use rustify::errors::ClientError as Rest;
        match e {
            ClientError::APIError { code, errors } => VaultFailure::Status {
                code,
                errors: joined(&errors),
            },
            ClientError::RestClientError { source: rest } => match rest {
                // An answer whose body has no `errors` (vaultrs parses only those).
                Rest::ServerResponseError { code, .. } => VaultFailure::Status {
                    code,
                    errors: String::new(),
                },
                Rest::RequestError { ref source, .. } | Rest::ResponseError { ref source } => {
                    let how = how_it_failed(source.as_ref());
                    VaultFailure::Other(transport(&self.address, what, how, rest))
                }
                other => VaultFailure::Other(self.unexpected(what, &other)),
            },
            other => VaultFailure::Other(self.unexpected(what, &other)),
        }
    }

    /// A vaultrs error as a `rekey_api::Error`.
    pub(crate) fn error(&self, what: &str, e: ClientError) -> Error {
        match self.failure(what, e) {
            VaultFailure::Status { code, errors } => self.status_error(what, code, &errors),
            VaultFailure::Other(err) => err,
        }
    }

    /// An answer that is not shaped like Vault's.
    fn unexpected(&self, what: &str, e: &dyn std::error::Error) -> Error {
        let mut text = e.to_string();
        let mut next = e.source();
        while let Some(inner) = next {
            text.push_str(": ");
            text.push_str(&inner.to_string());
            next = inner.source();
        }
        Error::new(
            ErrorKind::Unexpected,
            format!(
                "vault at {}: {what}: unexpected answer: {text}",
                self.address
            ),
        )
    }

    /// Classifies a non-2xx answer.
    pub(crate) fn status_error(&self, what: &str, code: u16, errors: &str) -> Error {
        let message = format!(
            "vault at {}: {what}: HTTP {code}{}{errors}",
            self.address,
            if errors.is_empty() { "" } else { ": " }
        );
        let lower = errors.to_ascii_lowercase();
        if code == 503 && lower.contains("sealed") {
            return Error::new(ErrorKind::Unavailable, message)
                .with_hint(
                    "the Vault server is sealed; unseal it (vault operator unseal) and retry",
                )
                .temporary();
        }
        if lower.contains("no handler for route") {
            return Error::new(
                ErrorKind::NotFound,
                format!("{message} (is the KV v2 mount '{}' enabled?)", self.mount),
            )
            .with_hint(format!(
                "enable it with: vault secrets enable -path={} kv-v2, or set the store's mount",
                self.mount
            ));
        }
        match code {
            401 => Error::new(ErrorKind::Unauthenticated, message),
            403 => Error::new(ErrorKind::PermissionDenied, message).with_hint(
                "the token's policy does not allow this; `rekey check` lists every missing capability",
            ),
            404 => Error::new(ErrorKind::NotFound, message),
            412 | 429 | 500..=599 => Error::new(ErrorKind::Unavailable, message).temporary(),
            // reqwest follows up to 10 redirects; a 3xx only surfaces past that or without a
            // Location.
            300..=399 => Error::new(ErrorKind::Unavailable, message)
                .with_hint("the address redirects (a standby node?); point rekey at the active node or the load balancer"),
            _ => Error::new(ErrorKind::Unexpected, message),
        }
    }

    /// A usable token: logs in on first use, renews it when less than half its TTL is left,
    /// and logs in again (AppRole, Kubernetes) when it can no longer be renewed.
    async fn token(&self) -> Result<SecretString> {
        let mut session = self.session.lock().await;
        match session.as_ref() {
            None => *session = Some(self.login().await?),
            Some(s) if s.needs_refresh() => {
                let renewed = if s.renewable {
                    self.renew(s).await
                } else {
                    None
                };
                match renewed {
                    Some(fresh) => *session = Some(fresh),
                    None if !matches!(self.auth, VaultAuth::Token(_)) => {
                        tracing::info!(address = %self.address, method = %self.auth.label(), "vault token cannot be renewed; logging in again");
                        *session = Some(self.login().await?);
                    }
                    None => {
                        if s.expires.is_some_and(|at| at <= Instant::now()) {
                            return Err(Error::new(
                                ErrorKind::Unauthenticated,
                                format!("vault at {}: the token has expired and cannot be renewed", self.address),
                            )
                            .with_hint("provide a fresh token (VAULT_TOKEN) or use AppRole/Kubernetes login"));
                        }
                        tracing::warn!(address = %self.address, "vault token cannot be renewed; it expires soon");
                    }
                }
            }
            Some(_) => {}
        }
        // A copy for the caller, so the lock is not held across its request.
        Ok(SecretString::new(
            session.as_ref().map_or("", |s| s.token.expose_secret()),
        ))
    }

    /// `auth/token/renew-self` for the token's own TTL. `None` when Vault refused or could
    /// not give at least half of it back (the token hit its max TTL).
    async fn renew(&self, session: &Session) -> Option<Session> {
        let increment = format!("{}s", session.lease.as_secs());
        let auth = match logged(
            &self.address,
            "POST",
            "auth/token/renew-self",
            vaultrs::token::renew_self(
                &self.with_token(session.token.expose_secret()),
                Some(&increment),
            ),
        )
        .await
        {
            Ok(auth) => auth,
            Err(e) => {
                if let VaultFailure::Status { code, errors } = self.failure("renew the token", e) {
                    tracing::warn!(address = %self.address, status = code, errors = %errors, "vault token renewal refused");
                }
                return None;
            }
        };
        let ttl = auth.lease_duration;
        if ttl < session.lease.as_secs() / 2 {
            return None;
        }
        tracing::debug!(address = %self.address, ttl_secs = ttl, "vault token renewed");
        Some(Session {
            token: SecretString::new(session.token.expose_secret()),
            lease: session.lease,
            expires: Some(Instant::now() + Duration::from_secs(ttl)),
            renewable: auth.renewable,
        })
    }

    async fn login(&self) -> Result<Session> {
        let what = format!("{} login", self.auth.label());
        // Logins go out without a token.
        let anonymous = self.with_token("");
        let (mount, result) = match &self.auth {
            VaultAuth::Token(token) => return self.lookup_self(token.expose_secret().trim()).await,
            VaultAuth::AppRole {
                mount,
                role_id,
                secret_id,
            } => {
                let mount = mount.trim_matches('/');
                let result = logged(
                    &self.address,
                    "POST",
                    &format!("auth/{mount}/login"),
                    vaultrs::auth::approle::login(
                        &anonymous,
                        mount,
                        role_id,
                        secret_id.expose_secret().trim(),
                    ),
                )
                .await;
                (mount, result)
            }
            VaultAuth::Kubernetes {
                mount,
                role,
                jwt_path,
            } => {
                let mount = mount.trim_matches('/');
                let jwt = read_jwt(jwt_path)?;
                let result = logged(
                    &self.address,
                    "POST",
                    &format!("auth/{mount}/login"),
                    vaultrs::auth::kubernetes::login(&anonymous, mount, role, jwt.expose_secret()),
                )
                .await;
                (mount, result)
            }
        };
        let auth: AuthInfo = match result {
            Ok(auth) => auth,
            Err(ClientError::ResponseEmptyError) => {
                return Err(Error::new(
                    ErrorKind::Unexpected,
                    format!(
                        "vault at {}: {what}: the answer has no 'auth' object",
                        self.address
                    ),
                ));
            }
            Err(e) => {
                let (code, errors) = match self.failure(&what, e) {
                    VaultFailure::Status { code, errors } => (code, errors),
                    VaultFailure::Other(err) => return Err(err),
                };
                let err = self.status_error(&what, code, &errors);
                // Vault answers a bad role or secret with 400 or 403: both mean "not who you say".
                return Err(match code {
                    404 => Error::new(
                        ErrorKind::Config,
                        format!(
                            "vault at {}: no auth method is enabled at auth/{mount}/login",
                            self.address
                        ),
                    )
                    .with_hint("check the auth mount in the store configuration"),
                    400 | 401 | 403 => Error::new(
                        ErrorKind::Unauthenticated,
                        err.message().to_string(),
                    )
                    .with_hint(
                        "check the role and its credentials (secret_id or service-account token)",
                    ),
                    _ => err,
                });
            }
        };
        let ttl = auth.lease_duration;
        let renewable = auth.renewable;
        tracing::info!(address = %self.address, method = %self.auth.label(), ttl_secs = ttl, renewable, "logged in to vault");
        Ok(Session::from_lease(
            SecretString::new(auth.client_token),
            ttl,
            renewable,
        ))
    }

    /// Validates a given token and learns its TTL.
    async fn lookup_self(&self, token: &str) -> Result<Session> {
        let what = "token lookup-self";
        let data = match logged(
            &self.address,
            "GET",
            "auth/token/lookup-self",
            vaultrs::token::lookup_self(&self.with_token(token)),
        )
        .await
        {
            Ok(data) => data,
            Err(e) => {
                let (code, errors) = match self.failure(what, e) {
                    VaultFailure::Status { code, errors } => (code, errors),
                    VaultFailure::Other(err) => return Err(err),
                };
                return Err(match code {
                    401 | 403 => Error::new(
                        ErrorKind::Unauthenticated,
                        format!(
                            "vault at {} rejected the token (lookup-self: {errors})",
                            self.address
                        ),
                    )
                    .with_hint(
                        "the token is invalid, expired or revoked; set VAULT_TOKEN to a valid token",
                    ),
                    _ => self.status_error(what, code, &errors),
                });
            }
        };
        let ttl = data.ttl;
        let creation_ttl = Some(data.creation_ttl).filter(|c| *c > 0).unwrap_or(ttl);
        let renewable = data.renewable.unwrap_or(false);
        let mut session = Session::from_lease(SecretString::new(token), creation_ttl, renewable);
        session.expires = (ttl > 0).then(|| Instant::now() + Duration::from_secs(ttl));
        tracing::debug!(address = %self.address, ttl_secs = ttl, renewable, "vault token validated");
        Ok(session)
    }
}

/// The service-account JWT, read at every login because the kubelet rotates it.
fn read_jwt(path: &Path) -> Result<SecretString> {
    std::fs::read_to_string(path)
        .map(|s| SecretString::new(s.trim()))
        .map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!(
                    "vault kubernetes login: cannot read the service-account token {}",
                    path.display()
                ),
            )
            .with_source(e)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Pins down the exact login request (path, body, namespace header, no token header), which
    /// the end-to-end Kubernetes tests against OpenBao (tests/vault.rs) cannot observe.
    #[tokio::test]
    async fn kubernetes_login_posts_the_role_and_the_service_account_jwt() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Read until the JSON body is complete (it ends the request).
            while !request.ends_with(b"}") {
                let n = socket.read(&mut buf).await.unwrap();
                request.extend_from_slice(&buf[..n]);
            }
            // A login answer as Vault shapes it (vaultrs insists on the full envelope).
            let body = json!({
                "request_id": "r", "lease_id": "", "lease_duration": 0, "renewable": false,
                "data": null, "warnings": null, "wrap_info": null,
                "auth": {
                    "client_token": "s.issued", "accessor": "a", "policies": ["default"],
                    "token_policies": ["default"], "metadata": null, "lease_duration": 60,
                    "renewable": true, "entity_id": "", "token_type": "service", "orphan": true
                }
            })
            .to_string();
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8(request).unwrap()
        });
        let dir = tempfile::tempdir().unwrap();
        let jwt_path = dir.path().join("token");
        std::fs::write(&jwt_path, "eyJ.service-account.jwt\n").unwrap();
        let mut config = VaultConfig::new(
            address.clone(),
            VaultAuth::Kubernetes {
                mount: "k8s-prod".into(),
                role: "rekey".into(),
                jwt_path,
            },
        );
        config.namespace = Some("team-a".into());
        let client = Client::new(config, address).unwrap();
        let token = client.token().await.unwrap();
        assert_eq!(token.expose_secret(), "s.issued");
        let request = server.await.unwrap();
        let lower = request.to_ascii_lowercase();
        assert!(
            request.starts_with("POST /v1/auth/k8s-prod/login HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(lower.contains("x-vault-namespace: team-a\r\n"), "{request}");
        assert!(!lower.contains("x-vault-token"), "{request}");
        let body: Value = serde_json::from_str(request.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(
            body,
            json!({ "role": "rekey", "jwt": "eyJ.service-account.jwt" })
        );
    }
}
