//! One admin session per org per process: every credential's target and every org read of the
//! same org (and admin identity) share it, so a run over N credentials logs in once, and a
//! daemon keeps the session across cycles until Salesforce refuses it.

use crate::config::{AdminConfig, OrgConfig};
use rekey_api::Result;
use rekey_salesforce::AdminSession;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

static SESSIONS: LazyLock<Mutex<HashMap<String, AdminSession>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The org's shared admin session, built by `build` (which reads the admin key or token) the
/// first time this org and admin identity are asked for.
pub(super) fn shared(
    org: &OrgConfig,
    name: &str,
    build: impl FnOnce() -> Result<AdminSession>,
) -> Result<AdminSession> {
    let key = identity(org, name);
    let mut sessions = SESSIONS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(session) = sessions.get(&key) {
        return Ok(session.clone());
    }
    // Built under the lock: two credentials of one org never read the key (or ask the
    // Salesforce CLI) twice.
    let session = build()?;
    sessions.insert(key, session.clone());
    Ok(session)
}

/// Every org session this process holds, by org name (for metrics).
pub(super) fn all() -> Vec<(String, AdminSession)> {
    let sessions = SESSIONS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    sessions
        .iter()
        .map(|(k, s)| {
            (
                k.split('\n').next().unwrap_or_default().to_string(),
                s.clone(),
            )
        })
        .collect()
}

/// What makes two admin connections the same: the org, where it logs in, and who logs in with
/// what (a replaced admin key file is a new identity).
fn identity(org: &OrgConfig, name: &str) -> String {
    let who = match &org.admin {
        AdminConfig::Jwt {
            consumer_key,
            username,
            key_file,
            ..
        } => {
            let changed = std::fs::metadata(key_file)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            format!(
                "jwt {consumer_key} {username} {} {changed}",
                key_file.display()
            )
        }
        AdminConfig::AccessTokenEnv => "access_token_env".to_string(),
        AdminConfig::SfCli { target_org, .. } => format!("sf {target_org}"),
    };
    format!("{name}\n{}\n{who}", org.login_url)
}
