//! `rekey token`: an access token for a consumer that should never handle the key.

use crate::cli::args::TokenFormat;
use crate::cli::render;
use crate::config;
use crate::exit::Exit;
use crate::wiring;
use rekey_api::{ErrorKind, Result};
use std::path::Path;

pub(super) async fn token(
    config_path: &Path,
    name: &str,
    format: TokenFormat,
    use_cache: bool,
    json: bool,
) -> Result<Exit> {
    let config = config::load(config_path)?;
    let cred = wiring::credential(&config, name)?;
    let cache = match wiring::token_cache_dir() {
        Some(dir) if use_cache && !cred.token_cache.is_zero() => {
            Some(crate::token::cache_file(&dir, cred)?)
        }
        _ => None,
    };
    let mut warnings = Vec::new();
    let issued = crate::token::issue(&config, cred, cache.as_deref(), &mut warnings).await;
    for warning in &warnings {
        render::warning(warning);
    }
    match issued {
        Ok(issued) => Ok(render::token(name, &issued, format)),
        // Salesforce's refusal is the answer, as for `verify`: exit 3, not an internal error.
        Err(error) if error.kind() == ErrorKind::Rejected => {
            render::error(&error, json);
            Ok(Exit::Refused)
        }
        Err(error) => Err(error),
    }
}
