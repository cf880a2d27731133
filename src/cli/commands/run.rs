//! `rekey run` once, and `rekey daemon` on an interval.

use crate::cli::render;
use crate::config;
use crate::exit::Exit;
use crate::monitor::alerts::Notifier;
use crate::monitor::{daemon, run};
use crate::shutdown;
use rekey_api::{Error, ErrorKind, Result};
use std::path::Path;

/// Listens for SIGTERM and SIGINT, so a rotation stops at its next step boundary.
fn listen_for_shutdown() -> Result<()> {
    shutdown::listen()
        .map_err(|e| Error::new(ErrorKind::Unexpected, "cannot listen for SIGTERM").with_source(e))
}

/// `rekey daemon`: runs until SIGTERM or SIGINT.
pub(super) async fn serve(config_path: &Path) -> Result<Exit> {
    let config = config::load(config_path)?;
    let notifier = Notifier::from_config(&config)?;
    listen_for_shutdown()?;
    daemon::serve(&config, notifier.as_ref(), &mut render::daemon).await?;
    Ok(Exit::Ok)
}

pub(super) async fn run_once(config_path: &Path, dry_run: bool, json: bool) -> Result<Exit> {
    let config = config::load(config_path)?;
    let notifier = Notifier::from_config(&config)?;
    listen_for_shutdown()?;
    let report = run::cycle(&config, notifier.as_ref(), dry_run).await;
    render::deliveries(&report.deliveries, json);
    render::run(&report, json);
    Ok(report.exit)
}
