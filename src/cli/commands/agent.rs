//! `rekey agent`: a local token service until SIGTERM.

use crate::cli::render;
use crate::config;
use crate::exit::Exit;
use crate::shutdown;
use rekey_api::Result;
use std::path::Path;

/// Serves tokens until SIGTERM or SIGINT, then exits 0.
pub(super) async fn agent(config_path: &Path) -> Result<Exit> {
    let config = config::load(config_path)?;
    shutdown::listen()?;
    crate::token::agent::serve(config, &mut render::agent).await?;
    Ok(Exit::Ok)
}
