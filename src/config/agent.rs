//! `[agent]`: where `rekey agent` listens (a Unix socket, or loopback HTTP with a bearer secret)
//! and which credentials it hands out tokens for.

use rekey_api::config::{Spanned, Validator};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

/// `[agent]`.
#[derive(Debug)]
pub struct AgentConfig {
    /// Where consumers reach it.
    pub listen: AgentListen,
    /// The credentials it serves, by name (every configured one unless `credentials` is set).
    pub credentials: Vec<String>,
    /// How often it reads each served credential's stages again, dropping a token whose key has
    /// left the store and renewing one close to lapsing.
    pub refresh: Duration,
}

/// How `rekey agent` is reached.
#[derive(Debug)]
pub enum AgentListen {
    /// A Unix socket at `path` (mode 0660), given to `group` when set: whoever may open it may
    /// ask for tokens.
    Socket {
        /// The socket's path.
        path: PathBuf,
        /// A group name or numeric id.
        group: Option<String>,
    },
    /// HTTP on a loopback address; each request carries `Authorization: Bearer <secret>`, the
    /// secret read from `bearer_file`.
    Http {
        /// The address (port 0: the system picks one, which the agent says).
        address: std::net::SocketAddr,
        /// The file holding the bearer secret (0600, this user's).
        bearer_file: PathBuf,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAgent {
    socket: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
    listen: Option<Spanned<String>>,
    bearer_file: Option<Spanned<String>>,
    credentials: Option<Vec<Spanned<String>>>,
    refresh_secs: Option<Spanned<i64>>,
}

/// Validates `[agent]` (at `at`) against the configured `credentials`.
pub(super) fn validate_agent(
    raw: &Spanned<RawAgent>,
    credentials: &BTreeSet<String>,
    v: &mut Validator,
) -> Option<AgentConfig> {
    let at = raw.span();
    let raw = raw.get_ref();
    let listen = match (&raw.socket, &raw.listen) {
        (Some(socket), None) => {
            v.does_not_apply(
                "agent",
                "a Unix socket (it is guarded by its mode and group)",
                &[("bearer_file", raw.bearer_file.as_ref().map(Spanned::span))],
            );
            if socket.get_ref().trim().is_empty() {
                v.problem(
                    socket.span(),
                    "agent.socket is empty; give the socket's path",
                );
            }
            if let Some(group) = &raw.group
                && group.get_ref().trim().is_empty()
            {
                v.problem(
                    group.span(),
                    "agent.group is empty; give a group name or id, or remove it",
                );
            }
            Some(AgentListen::Socket {
                path: v.path(socket.get_ref()),
                group: raw.group.as_ref().map(|g| g.get_ref().clone()),
            })
        }
        (None, Some(listen)) => {
            v.does_not_apply(
                "agent",
                "HTTP (only a Unix socket has a group)",
                &[("group", raw.group.as_ref().map(Spanned::span))],
            );
            let address = match listen.get_ref().parse::<std::net::SocketAddr>() {
                Ok(address) if address.ip().is_loopback() => Some(address),
                Ok(_) => {
                    v.problem(
                        listen.span(),
                        format!(
                            "agent.listen '{}' is not a loopback address: tokens are served to this machine only (use 127.0.0.1:PORT, or a socket)",
                            listen.get_ref()
                        ),
                    );
                    None
                }
                Err(_) => {
                    v.problem(
                        listen.span(),
                        format!(
                            "agent.listen '{}' is not an address:port such as 127.0.0.1:9818",
                            listen.get_ref()
                        ),
                    );
                    None
                }
            };
            let bearer_file = match &raw.bearer_file {
                Some(file) => Some(v.path(file.get_ref())),
                None => {
                    v.problem(
                        listen.span(),
                        "agent.listen needs bearer_file = \"PATH\": a file (0600) holding the secret each request must carry as `Authorization: Bearer …`",
                    );
                    None
                }
            };
            address
                .zip(bearer_file)
                .map(|(address, bearer_file)| AgentListen::Http {
                    address,
                    bearer_file,
                })
        }
        _ => {
            v.problem(
                at.clone(),
                "agent: set exactly one of socket = \"PATH\" (a Unix socket) or listen = \"127.0.0.1:PORT\" (HTTP with bearer_file)",
            );
            None
        }
    };
    let served = match &raw.credentials {
        None => credentials.iter().cloned().collect(),
        Some(names) => {
            if names.is_empty() {
                v.problem(
                    at.clone(),
                    "agent.credentials is empty; remove it to serve every credential",
                );
            }
            let mut served = Vec::new();
            for name in names {
                if !credentials.contains(name.get_ref()) {
                    v.problem(
                        name.span(),
                        format!(
                            "agent.credentials: unknown credential '{}'; use a key of [credentials]",
                            name.get_ref()
                        ),
                    );
                } else if !served.contains(name.get_ref()) {
                    served.push(name.get_ref().clone());
                }
            }
            served
        }
    };
    let refresh = v.positive(&raw.refresh_secs, 5, 1..=3600, "agent.refresh_secs");
    Some(AgentConfig {
        listen: listen?,
        credentials: served,
        refresh: Duration::from_secs(refresh as u64),
    })
}
