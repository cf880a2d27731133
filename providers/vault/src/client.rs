//! HTTP to one Vault server: login (token, AppRole, Kubernetes), keeping the token alive
//! (renew-self at half its TTL, re-login when it cannot be renewed), and the one place where
//! Vault's answers become `rekey_api::Error` kinds.
//!
//! Tokens travel only in the `X-Vault-Token` header and login bodies. Messages name the address,
//! the method and the path, and quote Vault's own `errors` texts, which never contain secrets.

use crate::config::{VaultAuth, VaultConfig};
use rekey_api::{Error, ErrorKind, Result};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;
use zeroize::Zeroizing;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A Vault answer that arrived: status and JSON body (`Null` for 204 or a non-JSON body).
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
}

impl Reply {
    /// Vault's `errors` array, joined.
    pub(crate) fn errors(&self) -> String {
        self.body
            .get("errors")
            .and_then(Value::as_array)
            .map(|errors| {
                errors
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default()
    }
}

/// A logged-in token and how long it lives.
struct Session {
    token: Zeroizing<String>,
    /// The TTL the token was issued (or last renewed) with; zero for tokens that never expire.
    lease: Duration,
    /// When the token expires; `None` for tokens that never expire.
    expires: Option<Instant>,
    renewable: bool,
}

impl Session {
    fn from_lease(token: Zeroizing<String>, ttl_secs: u64, renewable: bool) -> Session {
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

/// Connection to one Vault server.
pub(crate) struct Client {
    http: reqwest::Client,
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

/// A transport failure: connection refused, timeout, TLS. Worth a retry.
fn transport(address: &str, what: &str, e: reqwest::Error) -> Error {
    let how = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    Error::new(
        ErrorKind::Unavailable,
        format!("vault at {address}: {what}: request {how}"),
    )
    .with_source(e)
    .with_hint("check the address (VAULT_ADDR), that the server runs, and its TLS certificate (VAULT_CACERT)")
    .temporary()
}

/// Reads the CA files of `VAULT_CACERT` / `VAULT_CAPATH`.
fn trusted_roots(config: &VaultConfig) -> Result<Vec<reqwest::Certificate>> {
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
    let mut roots = Vec::new();
    for file in files {
        let pem = std::fs::read(&file).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("vault store: cannot read CA file {}", file.display()),
            )
            .with_source(e)
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
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
        roots.extend(certs);
    }
    Ok(roots)
}

impl Client {
    /// A client for the server; no request is made yet.
    pub(crate) fn new(config: VaultConfig, address: String) -> Result<Client> {
        let roots = trusted_roots(&config)?;
        let mut builder = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            // A standby's redirect would carry the token to another host: surface it instead.
            .redirect(reqwest::redirect::Policy::none());
        if !roots.is_empty() {
            // Like the Vault CLI: a configured CA replaces the system roots.
            builder = builder.tls_certs_only(roots);
        }
        if config.tls_skip_verify {
            tracing::warn!(address = %address, "vault TLS verification is disabled (tls_skip_verify)");
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let http = builder.build().map_err(|e| {
            Error::new(
                ErrorKind::Config,
                "vault store: cannot build the HTTP client",
            )
            .with_source(e)
        })?;
        Ok(Client {
            http,
            address,
            namespace: config
                .namespace
                .map(|n| n.trim_matches('/').to_string())
                .filter(|n| !n.is_empty()),
            mount: config.mount.trim_matches('/').to_string(),
            auth: config.auth,
            session: Mutex::new(None),
        })
    }

    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// One request to `/v1/{path}`. Fails only when no answer arrived.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
        what: &str,
    ) -> Result<Reply> {
        let mut request = self
            .http
            .request(method, format!("{}/v1/{path}", self.address));
        if let Some(ns) = &self.namespace {
            request = request.header("X-Vault-Namespace", ns);
        }
        if let Some(token) = token {
            request = request.header("X-Vault-Token", token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport(&self.address, what, e))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport(&self.address, what, e))?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Reply { status, body })
    }

    /// An authenticated request (logging in or renewing first when needed).
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Reply> {
        let token = self.token().await?;
        self.send(method, path, body, Some(&token), what).await
    }

    /// Like [`Client::call`], but any non-2xx answer is an error.
    pub(crate) async fn call_ok(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Reply> {
        let reply = self.call(method, path, body, what).await?;
        if reply.status.is_success() {
            Ok(reply)
        } else {
            Err(self.status_error(what, &reply))
        }
    }

    /// Classifies a non-2xx answer.
    pub(crate) fn status_error(&self, what: &str, reply: &Reply) -> Error {
        let errors = reply.errors();
        let code = reply.status.as_u16();
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
            300..=399 => Error::new(ErrorKind::Unavailable, message)
                .with_hint("the address redirects (a standby node?); point rekey at the active node or the load balancer"),
            _ => Error::new(ErrorKind::Unexpected, message),
        }
    }

    /// A usable token: logs in on first use, renews it when less than half its TTL is left,
    /// and logs in again (AppRole, Kubernetes) when it can no longer be renewed.
    async fn token(&self) -> Result<Zeroizing<String>> {
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
        Ok(session
            .as_ref()
            .map(|s| s.token.clone())
            .unwrap_or_default())
    }

    /// `auth/token/renew-self` for the token's own TTL. `None` when Vault refused or could
    /// not give at least half of it back (the token hit its max TTL).
    async fn renew(&self, session: &Session) -> Option<Session> {
        let body = json!({ "increment": format!("{}s", session.lease.as_secs()) });
        let reply = self
            .send(
                Method::POST,
                "auth/token/renew-self",
                Some(&body),
                Some(&session.token),
                "renew the token",
            )
            .await
            .ok()?;
        if !reply.status.is_success() {
            tracing::warn!(address = %self.address, status = reply.status.as_u16(), errors = %reply.errors(), "vault token renewal refused");
            return None;
        }
        let auth = reply.body.get("auth")?;
        let ttl = auth.get("lease_duration").and_then(Value::as_u64)?;
        if ttl < session.lease.as_secs() / 2 {
            return None;
        }
        tracing::debug!(address = %self.address, ttl_secs = ttl, "vault token renewed");
        Some(Session {
            token: session.token.clone(),
            lease: session.lease,
            expires: Some(Instant::now() + Duration::from_secs(ttl)),
            renewable: auth
                .get("renewable")
                .and_then(Value::as_bool)
                .unwrap_or(true),
        })
    }

    async fn login(&self) -> Result<Session> {
        let what = format!("{} login", self.auth.label());
        let (path, body) = match &self.auth {
            VaultAuth::Token(token) => return self.lookup_self(token.expose_secret()).await,
            VaultAuth::AppRole {
                mount,
                role_id,
                secret_id,
            } => (
                format!("auth/{}/login", mount.trim_matches('/')),
                json!({ "role_id": role_id, "secret_id": secret_id.expose_secret() }),
            ),
            VaultAuth::Kubernetes {
                mount,
                role,
                jwt_path,
            } => (
                format!("auth/{}/login", mount.trim_matches('/')),
                json!({ "role": role, "jwt": read_jwt(jwt_path)?.as_str() }),
            ),
        };
        let reply = self
            .send(Method::POST, &path, Some(&body), None, &what)
            .await?;
        if !reply.status.is_success() {
            let err = self.status_error(&what, &reply);
            // Vault answers a bad role or secret with 400 or 403: both mean "not who you say".
            return Err(match reply.status.as_u16() {
                404 => Error::new(
                    ErrorKind::Config,
                    format!(
                        "vault at {}: no auth method is enabled at {path}",
                        self.address
                    ),
                )
                .with_hint("check the auth mount in the store configuration"),
                400 | 401 | 403 => {
                    Error::new(ErrorKind::Unauthenticated, err.message().to_string()).with_hint(
                        "check the role and its credentials (secret_id or service-account token)",
                    )
                }
                _ => err,
            });
        }
        let auth = reply
            .body
            .get("auth")
            .filter(|a| a.is_object())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Unexpected,
                    format!(
                        "vault at {}: {what}: the answer has no 'auth' object",
                        self.address
                    ),
                )
            })?;
        let token = auth
            .get("client_token")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Unexpected,
                    format!(
                        "vault at {}: {what}: the answer has no client token",
                        self.address
                    ),
                )
            })?;
        let ttl = auth
            .get("lease_duration")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let renewable = auth
            .get("renewable")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        tracing::info!(address = %self.address, method = %self.auth.label(), ttl_secs = ttl, renewable, "logged in to vault");
        Ok(Session::from_lease(
            Zeroizing::new(token.to_string()),
            ttl,
            renewable,
        ))
    }

    /// Validates a given token and learns its TTL.
    async fn lookup_self(&self, token: &str) -> Result<Session> {
        let what = "token lookup-self";
        let reply = self
            .send(
                Method::GET,
                "auth/token/lookup-self",
                None,
                Some(token),
                what,
            )
            .await?;
        if !reply.status.is_success() {
            let err = self.status_error(what, &reply);
            return Err(match reply.status.as_u16() {
                401 | 403 => Error::new(
                    ErrorKind::Unauthenticated,
                    format!(
                        "vault at {} rejected the token (lookup-self: {})",
                        self.address,
                        reply.errors()
                    ),
                )
                .with_hint(
                    "the token is invalid, expired or revoked; set VAULT_TOKEN to a valid token",
                ),
                _ => err,
            });
        }
        let data = &reply.body["data"];
        let ttl = data.get("ttl").and_then(Value::as_u64).unwrap_or(0);
        let creation_ttl = data
            .get("creation_ttl")
            .and_then(Value::as_u64)
            .filter(|c| *c > 0)
            .unwrap_or(ttl);
        let renewable = data
            .get("renewable")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut session =
            Session::from_lease(Zeroizing::new(token.to_string()), creation_ttl, renewable);
        session.expires = (ttl > 0).then(|| Instant::now() + Duration::from_secs(ttl));
        tracing::debug!(address = %self.address, ttl_secs = ttl, renewable, "vault token validated");
        Ok(session)
    }
}

/// The service-account JWT, read at every login because the kubelet rotates it.
fn read_jwt(path: &Path) -> Result<Zeroizing<String>> {
    std::fs::read_to_string(path)
        .map(|s| Zeroizing::new(s.trim().to_string()))
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Kubernetes login cannot run against OpenBao here (its Kubernetes method always asks a
    /// Kubernetes API's TokenReview), so this pins down the request rekey sends instead.
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
            let body =
                r#"{"auth":{"client_token":"s.issued","lease_duration":60,"renewable":true}}"#;
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
        assert_eq!(token.as_str(), "s.issued");
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
