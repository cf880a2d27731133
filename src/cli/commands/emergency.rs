//! `rekey emergency`: show the plans, ask (unless `--yes`), then rekey each credential, printing
//! its progress, what the channels were told and the evidence bundle's place.

use crate::cli::render;
use crate::config::{self, CredentialConfig};
use crate::emergency::{self, EmergencyRow, Which};
use crate::exit::Exit;
use crate::monitor::alerts::Notifier;
use crate::rotation::{self, Emergency};
use rekey_api::{Error, ErrorKind, Result};
use std::path::{Path, PathBuf};

pub(super) async fn emergency(
    config_path: &Path,
    which: &Which,
    emergency: &Emergency,
    yes: bool,
    evidence_dir: Option<PathBuf>,
    json: bool,
) -> Result<Exit> {
    let config = config::load(config_path)?;
    let creds = emergency::select(&config, which, emergency)?;
    let notifier = Notifier::from_config(&config)?;
    for cred in &creds {
        let plan = rotation::plan_credential(&config, cred, Some(emergency)).await?;
        if !json {
            render::plan(&plan, false);
        }
    }
    if !yes && !confirmed(&creds)? {
        return Err(Error::new(
            ErrorKind::Config,
            "the emergency rekey was not confirmed; nothing was changed",
        )
        .with_hint("answer yes at the prompt, or pass --yes in automation"));
    }
    // Only after the answer: Ctrl-C at the prompt ends the process at once, with nothing changed.
    crate::shutdown::listen()?;
    let dir = emergency::evidence_dir(&config, evidence_dir);
    let mut rows = Vec::new();
    let mut exit = Exit::Ok;
    for cred in &creds {
        if exit != Exit::Ok {
            rows.push(EmergencyRow::not_started(cred));
            continue;
        }
        let mut progress = render::RotateProgress::new(&cred.name, json);
        let rekeyed = emergency::rekey(
            &config,
            cred,
            emergency,
            &dir,
            notifier.as_ref(),
            &mut |e| progress.event(e),
        )
        .await;
        render::deliveries(&rekeyed.deliveries, json);
        for warning in &rekeyed.warnings {
            render::warning(warning);
        }
        exit = rekeyed.exit;
        rows.push(rekeyed.row);
    }
    render::emergency(&rows, json);
    Ok(exit)
}

/// Asks on the terminal; anything but `yes` is a no.
fn confirmed(creds: &[&CredentialConfig]) -> Result<bool> {
    let names: Vec<&str> = creds.iter().map(|c| c.name.as_str()).collect();
    render::prompt(&format!(
        "This replaces the key and certificate of {} now, ends the integration sessions and destroys every older key. Type yes to go on: ",
        names.join(", ")
    ));
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).map_err(|e| {
        Error::new(ErrorKind::Config, "cannot read the confirmation").with_source(e)
    })?;
    Ok(answer.trim() == "yes")
}
