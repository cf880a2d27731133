//! How `rekey agent` is reached: a Unix socket (mode 0660, its group configurable: whoever may
//! open it may ask) or loopback HTTP where each request carries `Authorization: Bearer <secret>`,
//! the secret read at start from `[agent] bearer_file` (held to the token cache's trust rule:
//! this user's, 0600, in folders nobody else can change) and compared in constant time.

use super::tokens::{Agent, AgentToken, Refused};
use crate::config::{AgentListen, Config};
use crate::shutdown;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rekey_api::{Error, ErrorKind, Result};
use sha2::{Digest as _, Sha256};
use std::path::Path;
use std::sync::Arc;

/// What the agent reports as it goes, for the CLI to print.
pub enum AgentEvent<'a> {
    /// Serving `at` (`unix:PATH` or `http://ADDRESS`, the port the system picked with port 0).
    Listening {
        /// Where.
        at: &'a str,
        /// The credentials served.
        credentials: &'a [&'a str],
    },
    /// Stopped by SIGTERM or SIGINT.
    Stopped,
}

/// What the HTTP handlers share.
struct Shared {
    agent: Agent,
    /// SHA-256 of the bearer secret (HTTP only): digests of equal length, compared in constant
    /// time, so neither the secret's bytes nor its length show in response times.
    bearer: Option<[u8; 32]>,
}

/// Serves `config`'s `[agent]` until SIGTERM or SIGINT (the caller listens for them), then
/// removes its socket; `report` hears each [`AgentEvent`].
pub async fn serve(config: Config, report: &mut dyn FnMut(AgentEvent<'_>)) -> Result<()> {
    let agent = Agent::new(config)?;
    let settings = agent.config.agent.as_ref().expect("Agent::new checked");
    let (refresh, listen) = (settings.refresh, &settings.listen);
    // Everything that can refuse to start is done before the first request is accepted.
    let (bearer, socket) = match listen {
        AgentListen::Socket { path, group } => (None, Some(bind_socket(path, group.as_deref())?)),
        AgentListen::Http { bearer_file, .. } => (Some(read_bearer(bearer_file)?), None),
    };
    let tcp = match listen {
        AgentListen::Http { address, .. } => {
            Some(tokio::net::TcpListener::bind(address).await.map_err(|e| {
                Error::new(
                    ErrorKind::Config,
                    format!("cannot listen on {address} ([agent] listen)"),
                )
                .with_source(e)
                .with_hint(
                    "choose a free loopback address:port in [agent] listen, or stop what holds it",
                )
            })?)
        }
        AgentListen::Socket { .. } => None,
    };
    let socket_path = match listen {
        AgentListen::Socket { path, .. } => Some(path.clone()),
        AgentListen::Http { .. } => None,
    };
    let at = match (&socket_path, &tcp) {
        (Some(path), _) => format!("unix:{}", path.display()),
        (None, Some(tcp)) => match tcp.local_addr() {
            Ok(bound) => format!("http://{bound}"),
            Err(e) => {
                return Err(
                    Error::new(ErrorKind::Unexpected, "cannot tell the bound address")
                        .with_source(e),
                );
            }
        },
        (None, None) => unreachable!("one listener per mode"),
    };
    let shared = Arc::new(Shared { agent, bearer });
    let app = axum::Router::new()
        .route("/v1/token/{credential}", axum::routing::get(token))
        .route("/metrics", axum::routing::get(metrics))
        .fallback(not_found)
        .with_state(shared.clone());
    let refresher = tokio::spawn({
        let shared = shared.clone();
        async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(refresh) => shared.agent.refresh().await,
                    () = shutdown::wait() => return,
                }
            }
        }
    });
    let names: Vec<&str> = shared.agent.credentials().collect();
    report(AgentEvent::Listening {
        at: &at,
        credentials: &names,
    });
    let served = match (socket, tcp) {
        (Some(socket), _) => {
            axum::serve(socket, app)
                .with_graceful_shutdown(shutdown::wait())
                .await
        }
        (None, Some(tcp)) => {
            axum::serve(tcp, app)
                .with_graceful_shutdown(shutdown::wait())
                .await
        }
        (None, None) => unreachable!("one listener per mode"),
    };
    refresher.abort();
    if let Some(path) = &socket_path {
        // The socket goes with the agent: a consumer then gets "no such file" rather than a
        // connection refused by nobody, and the next start binds without a leftover.
        if let Err(e) = std::fs::remove_file(path) {
            tracing::warn!(error = %e, "cannot remove the socket {}", path.display());
        }
    }
    served.map_err(|e| {
        Error::new(ErrorKind::Unexpected, "the agent's server failed").with_source(e)
    })?;
    report(AgentEvent::Stopped);
    Ok(())
}

/// Binds the Unix socket at `path` with mode 0660 (no moment with a wider one) and gives it to
/// `group`. A leftover socket nobody listens on is replaced; a live one, or anything else at
/// `path`, is an error.
fn bind_socket(path: &Path, group: Option<&str>) -> Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    let problem = |what: String| {
        Error::new(
            ErrorKind::Config,
            format!("[agent] socket {}: {what}", path.display()),
        )
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(problem("something that is not a socket is there".into())
                .with_hint("remove it or choose another path for [agent] socket"));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(problem("another process listens on it".into())
                .with_hint("stop the other agent, or choose another path for [agent] socket"));
        }
        std::fs::remove_file(path)
            .map_err(|e| problem("cannot remove the leftover socket".into()).with_source(e))?;
    }
    let gid = group.map(group_id).transpose()?;
    // The mode the socket is created with; the umask is the process's, restored at once.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o117));
    let bound = tokio::net::UnixListener::bind(path);
    rustix::process::umask(old);
    let listener = bound.map_err(|e| {
        problem("cannot listen on it".into())
            .with_source(e)
            .with_hint("check that its folder exists and this user may create files in it")
    })?;
    let set = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .and_then(|()| std::os::unix::fs::chown(path, None, gid));
    if let Err(e) = set {
        let _ = std::fs::remove_file(path);
        return Err(problem("cannot set its mode 0660 or its group".into())
            .with_source(e)
            .with_hint("[agent] group must be a group this user belongs to"));
    }
    Ok(listener)
}

/// The id of `group`, a number or a name in /etc/group.
fn group_id(group: &str) -> Result<u32> {
    if let Ok(id) = group.parse() {
        return Ok(id);
    }
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    groups
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let id = fields.nth(1)?.parse().ok()?;
            Some((name, id))
        })
        .find_map(|(name, id)| (name == group).then_some(id))
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!("[agent] group '{group}' is not a group of this machine"),
            )
            .with_hint("give a group name from /etc/group or a numeric group id")
        })
}

/// The digest of the bearer secret in `file`, which must be this user's and private
/// (the token cache's rule, `token/cache.rs`).
fn read_bearer(file: &Path) -> Result<[u8; 32]> {
    use std::io::Read as _;
    let uid = rustix::process::geteuid().as_raw();
    let refuse = |why: String| {
        Error::new(
            ErrorKind::Config,
            format!("[agent] bearer_file {}: {why}", file.display()),
        )
        .with_hint("write the secret into a file of this user with mode 0600 (chmod 600), in a folder only this user and root can change")
    };
    if let Some(why) =
        crate::token::cache::untrusted_dir(file.parent().unwrap_or(Path::new("/")), uid)
    {
        return Err(refuse(why));
    }
    let opened = crate::token::cache::open_private(file, uid).map_err(refuse)?;
    let Some(opened) = opened else {
        return Err(refuse("there is no such file".into()));
    };
    let mut bytes = Vec::new();
    let read = opened.take(64 * 1024).read_to_end(&mut bytes);
    let secret = std::str::from_utf8(&bytes)
        .ok()
        .map(|s| s.strip_suffix('\n').unwrap_or(s))
        .map(|s| s.strip_suffix('\r').unwrap_or(s))
        .filter(|s| !s.trim().is_empty())
        .map(|s| Sha256::digest(s.as_bytes()).into());
    crate::token::cache::wipe(&mut bytes);
    read.map_err(|e| refuse(format!("cannot read it: {e}")))?;
    secret.ok_or_else(|| refuse("it is empty or not text".into()))
}

/// Whether the request may have a token: always on the socket (its mode decided), over HTTP
/// only with the bearer secret.
fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    let Some(expected) = &shared.bearer else {
        return true;
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    // Every byte compared whatever the first difference: constant time.
    let differ = digest
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(differ) == 0 && !presented.is_empty()
}

fn unauthorized() -> Response {
    StatusCode::UNAUTHORIZED.into_response()
}

/// An error as JSON: `{"error", "hint"}` (never a token or key: errors carry none).
fn error(status: StatusCode, e: &Error) -> Response {
    let body = serde_json::json!({"error": e.to_string(), "hint": e.hint()});
    (status, axum::Json(body)).into_response()
}

async fn token(
    State(shared): State<Arc<Shared>>,
    UrlPath(credential): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    match shared.agent.token(&credential).await {
        Ok(token) => token_response(&token),
        Err(Refused::NotServed(e)) => error(StatusCode::NOT_FOUND, &e),
        Err(Refused::Failed(e)) => error(
            match e.kind() {
                ErrorKind::Rejected => StatusCode::BAD_GATEWAY,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            },
            &e,
        ),
    }
}

/// The token's JSON, built straight from the secret (no second copy kept).
fn token_response(token: &AgentToken) -> Response {
    #[derive(serde::Serialize)]
    struct TokenJson<'a> {
        access_token: &'a str,
        instance_url: &'a str,
        expires_at: chrono::DateTime<chrono::Utc>,
        fingerprint: rekey_api::Fingerprint,
        generation: rekey_api::Generation,
        stage: rekey_api::Stage,
        cached: bool,
    }
    let json = TokenJson {
        access_token: token.access_token.expose_secret(),
        instance_url: &token.instance_url,
        expires_at: token.expires_at,
        fingerprint: token.fingerprint,
        generation: token.generation,
        stage: token.stage,
        cached: token.cached,
    };
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(json)).into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        shared.agent.metrics().await,
    )
        .into_response()
}

async fn not_found(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    StatusCode::NOT_FOUND.into_response()
}
