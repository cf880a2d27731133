//! `rekey run` once, and `rekey daemon` on an interval.

use crate::cli::render;
use crate::config;
use crate::exit::Exit;
use crate::monitor::alerts::Notifier;
use crate::monitor::{daemon, run};
use crate::shutdown;
use rekey_api::Result;
use std::path::Path;

/// `rekey daemon`: runs until SIGTERM or SIGINT.
pub(super) async fn serve(config_path: &Path) -> Result<Exit> {
    let config = config::load(config_path)?;
    let notifier = Notifier::from_config(&config)?;
    shutdown::listen()?;
    daemon::serve(&config, notifier.as_ref(), &mut render::daemon).await?;
    Ok(Exit::Ok)
}

pub(super) async fn run_once(config_path: &Path, dry_run: bool, json: bool) -> Result<Exit> {
    let config = config::load(config_path)?;
    let notifier = Notifier::from_config(&config)?;
    shutdown::listen()?;
    let progress = render::RunProgress::new(json);
    let report = run::cycle(&config, notifier.as_ref(), dry_run, &|e| progress.event(e)).await;
    progress.finish();
    render::deliveries(&report.deliveries, json);
    render::run(&report, json);
    Ok(report.exit)
}
