//! Admin sessions borrowed from the Salesforce CLI (`[orgs.NAME.admin] auth = "sf_cli"`):
//! administrators already hold their orgs' logins in `sf`, so rekey asks it, as other tools do,
//! with `sf org display --json --target-org ALIAS`, which answers with the org's access token and
//! instance URL (refreshing an expired access token first when the CLI holds a refresh token).
//!
//! The token stays in this process's memory, is asked for once per org alias per process, and is
//! never printed, logged or stored; `sf`'s own output is read only for its fields and its error
//! name and message.

use rekey_api::{Error, ErrorKind, Result, SecretString};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The program run; `REKEY_SF` names another (a wrapper, or a CLI installed off the PATH).
const SF: &str = "sf";

/// A session the CLI handed over.
pub(super) struct Session {
    pub(super) token: SecretString,
    pub(super) instance_url: String,
}

impl Session {
    /// Another copy for one more credential (the secret type is deliberately not `Clone`, so
    /// copies are made only where they are meant).
    fn copy(&self) -> Session {
        Session {
            token: SecretString::new(self.token.expose_secret()),
            instance_url: self.instance_url.clone(),
        }
    }
}

/// Sessions already asked for in this process, by `--target-org`: one `sf` run per org, however
/// many credentials a command touches.
static SESSIONS: Mutex<BTreeMap<String, Session>> = Mutex::new(BTreeMap::new());

/// `sf org display --json`: `{"status": 0, "result": {...}}`, or on failure
/// `{"status": 1, "name": "NamedOrgNotFoundError", "message": "..."}`.
#[derive(Deserialize)]
struct Display {
    status: i64,
    result: Option<DisplayResult>,
    name: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DisplayResult {
    access_token: Option<String>,
    instance_url: Option<String>,
    connected_status: Option<String>,
}

/// The session of `target_org`; `origin` is the setting's `file:line:column`.
pub(super) fn session(target_org: &str, origin: &str, program: Option<String>) -> Result<Session> {
    let mut sessions = SESSIONS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(session) = sessions.get(target_org) {
        return Ok(session.copy());
    }
    let session = ask(target_org, origin, program.as_deref().unwrap_or(SF))?;
    sessions.insert(target_org.to_string(), session.copy());
    Ok(session)
}

fn ask(target_org: &str, origin: &str, program: &str) -> Result<Session> {
    let login = format!("sf org login web --alias {target_org} (or sf org login jwt …)");
    let output = std::process::Command::new(program)
        .args(["org", "display", "--json", "--target-org", target_org])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            let missing = e.kind() == std::io::ErrorKind::NotFound;
            Error::new(
                ErrorKind::Config,
                if missing {
                    format!("{origin}: auth = \"sf_cli\" needs the Salesforce CLI, and `{program}` is not on PATH")
                } else {
                    format!("{origin}: cannot run `{program}`")
                },
            )
            .with_hint("install it (npm install --global @salesforce/cli), set REKEY_SF to its path, or use auth = \"jwt\"")
            .with_source(e)
        })?;
    let display: Option<Display> = serde_json::from_slice(&output.stdout).ok();
    let Some(display) = display else {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "{origin}: `{program} org display --json --target-org {target_org}` did not answer JSON (exit {})",
                output.status.code().map_or_else(|| "by signal".into(), |c| c.to_string())
            ),
        )
        .with_hint(format!("run it yourself to see why; log in with {login}")));
    };
    // sf's messages name orgs and users, never tokens; kept to one bounded line all the same.
    let said = || {
        rekey_http::one_line(
            &format!(
                "{}: {}",
                display.name.as_deref().unwrap_or("error"),
                display.message.as_deref().unwrap_or("no message")
            ),
            rekey_http::DETAIL_MAX,
        )
    };
    if display.status != 0 || !output.status.success() {
        let not_logged_in = display.name.as_deref() == Some("NamedOrgNotFoundError")
            || display
                .message
                .as_deref()
                .is_some_and(|m| m.contains("No authorization information"));
        let what = if not_logged_in {
            format!("the Salesforce CLI has no login for '{target_org}'")
        } else {
            format!("the Salesforce CLI cannot give a session for '{target_org}'")
        };
        return Err(
            Error::new(ErrorKind::Config, format!("{origin}: {what} ({})", said()))
                .with_hint(format!("log in with {login}, then run rekey again")),
        );
    }
    let result = display.result.unwrap_or(DisplayResult {
        access_token: None,
        instance_url: None,
        connected_status: None,
    });
    // "Connected" when the CLI reached the org; "Unknown" when it did not try. Anything else
    // (an expired or revoked refresh token) means the access token will be refused.
    if let Some(status) = result
        .connected_status
        .as_deref()
        .filter(|s| !matches!(*s, "Connected" | "Unknown"))
    {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "{origin}: the Salesforce CLI's login for '{target_org}' no longer works: {}",
                rekey_http::one_line(status, rekey_http::DETAIL_MAX)
            ),
        )
        .with_hint(format!("log in again with {login}")));
    }
    match (result.access_token, result.instance_url) {
        (Some(token), Some(instance_url)) if !token.is_empty() && !instance_url.is_empty() => {
            Ok(Session {
                token: SecretString::new(token),
                instance_url: instance_url.trim_end_matches('/').to_string(),
            })
        }
        _ => Err(Error::new(
            ErrorKind::Config,
            format!("{origin}: the Salesforce CLI answered for '{target_org}' without an access token and instance URL"),
        )
        .with_hint(format!("log in again with {login}"))),
    }
}
