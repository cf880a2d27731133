//! `audit`, `inventory` and `grants`: the org as a whole, beyond the credentials rekey rotates.

use crate::cli::args::{AuditFormat, FailOn, InventoryFormat};
use crate::cli::render;
use crate::config::{self, Config};
use crate::exit::Exit;
use crate::governance;
use rekey_api::{Error, ErrorKind, Result};
use std::path::Path;

/// Refuses an org the config does not define, naming the ones it does.
fn known_orgs(config: &Config, orgs: &[String]) -> Result<()> {
    orgs.iter().try_for_each(|o| config.org(o).map(|_| ()))
}

/// `rekey audit`.
pub(super) async fn audit(
    config_path: &Path,
    orgs: &[String],
    format: AuditFormat,
    fail_on: FailOn,
    json: bool,
) -> Result<Exit> {
    let config = config::load(config_path)?;
    known_orgs(&config, orgs)?;
    let report = governance::audit(&config, orgs, rekey_api::now()).await;
    let format = if json { AuditFormat::Json } else { format };
    render::audit(&report, format);
    Ok(Exit::of_severity(report.worst(fail_on.into())))
}

/// `rekey inventory`.
pub(super) async fn inventory(
    config_path: &Path,
    orgs: &[String],
    format: InventoryFormat,
    json: bool,
) -> Result<Exit> {
    let config = config::load(config_path)?;
    known_orgs(&config, orgs)?;
    let now = rekey_api::now();
    let mut rows = Vec::new();
    let mut unreadable = Vec::new();
    for org in governance::selected_orgs(&config, orgs) {
        let read = governance::read_org(&config, &org, now).await;
        rows.extend(governance::inventory(&config, &read, now));
        unreadable.extend(read.unreadable);
    }
    let format = if json { InventoryFormat::Json } else { format };
    render::inventory(&rows, &unreadable, format);
    Ok(if unreadable.is_empty() {
        Exit::Ok
    } else {
        Exit::UNKNOWN
    })
}

/// `rekey grants`.
pub(super) async fn grants(
    config_path: &Path,
    org: Option<String>,
    app: Option<&str>,
    stale_after_days: u32,
    revoke: bool,
    yes: bool,
    json: bool,
) -> Result<Exit> {
    let config = config::load(config_path)?;
    let org = match org {
        Some(org) => org,
        None if config.orgs.len() == 1 => config.orgs.keys().next().cloned().unwrap_or_default(),
        None => {
            return Err(
                Error::new(ErrorKind::Config, "which org? the config has several").with_hint(
                    format!(
                        "pass --org, one of: {}",
                        config.orgs.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ),
            );
        }
    };
    known_orgs(&config, std::slice::from_ref(&org))?;
    let report =
        governance::stale_grants(&config, &org, app, stale_after_days, rekey_api::now()).await?;
    if !revoke || report.rows.is_empty() {
        render::grants(&report, None, revoke, json);
        return Ok(Exit::Ok);
    }
    if !json {
        render::grants(&report, None, false, false);
    }
    if !yes && !confirmed(report.rows.len(), &org)? {
        return Err(Error::new(
            ErrorKind::Config,
            "the revocation was not confirmed; nothing was revoked",
        )
        .with_hint("answer yes at the prompt, or pass --yes in automation"));
    }
    let outcome = report.revoke(&config).await?;
    render::grants(&report, Some(&outcome), true, json);
    Ok(if outcome.failed.is_empty() {
        Exit::Ok
    } else {
        Exit::UNKNOWN
    })
}

fn confirmed(count: usize, org: &str) -> Result<bool> {
    render::prompt(&format!(
        "This revokes {count} OAuth grant(s) in org {org}: their users must approve the app again. Type yes to go on: "
    ));
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).map_err(|e| {
        Error::new(ErrorKind::Config, "cannot read the confirmation").with_source(e)
    })?;
    Ok(answer.trim() == "yes")
}
