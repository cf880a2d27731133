//! `rekey token`: an access token for a credential's integration user, so the consumers of its
//! key (jobs, scripts, the sf CLI) never handle the key itself; and `rekey agent` ([`agent`]),
//! which hands out the same tokens from a long-running process.
//!
//! The token is minted by JWT bearer with the key the credential's stores hold as CURRENT.
//! While a rotation's certificate change propagates, the app may trust only the new key
//! (PENDING, before promotion) or only the old one (PREVIOUS, after it); Salesforce then answers
//! `invalid_grant: invalid assertion` and the next stage's key is tried, so a consumer sees no
//! failed mint at any point of a rotation. Every other refusal is about the app, the user or the
//! request, and is reported at once. `mint.rs` is that fallback, the one both commands use. A
//! token is reused from a per-credential cache file for `token_cache_secs`, unless the key it
//! was minted with has left the store meanwhile ([`cache`] says which files are trusted).

pub mod agent;
mod cache;
mod mint;

pub use cache::cache_file;
pub use mint::IssuedToken;

use crate::config::{Config, CredentialConfig};
use rekey_api::Result;
use std::path::Path;

/// A token for `cred`: from the cache file `cache` while it holds one still usable and
/// trusted, else minted (and then written to `cache`, when its folder is trusted). Why a cache
/// was not trusted goes to `warnings`, once, for the caller to print.
pub async fn issue(
    config: &Config,
    cred: &CredentialConfig,
    cache: Option<&Path>,
    warnings: &mut Vec<String>,
) -> Result<IssuedToken> {
    let (store, stages) = mint::readable_store(config, cred).await?;
    let login_url = &config.orgs[&cred.org].login_url;
    let uid = rustix::process::geteuid().as_raw();
    // The folder first: a file in a folder others can change is never read, nor written.
    let cache = cache.filter(|path| {
        let dir = path.parent().unwrap_or(Path::new("/"));
        match cache::untrusted_dir(dir, uid) {
            None => true,
            Some(why) => {
                warnings.push(format!(
                    "ignoring the token cache in {}: {why}; minting a token and caching nothing (make the folders yours and not writable by others, or set XDG_CACHE_HOME)",
                    dir.display()
                ));
                false
            }
        }
    });
    if let Some(path) = cache {
        match cache::cached(path, uid, cred, login_url, &stages) {
            Ok(Some(hit)) => {
                tracing::info!(credential = %cred.name, stage = %hit.stage, generation = %hit.generation, "token from the cache");
                return Ok(hit);
            }
            Ok(None) => {}
            Err(why) => warnings.push(format!(
                "ignoring the token cache {}: {why}; minting a new token, which replaces it",
                path.display()
            )),
        }
    }
    let minter = mint::minter(config, cred).await?;
    let token = mint::mint(store.as_ref(), &minter, cred).await?;
    if let Some(path) = cache
        && let Err(e) = cache::save(path, uid, cred, login_url, &token)
    {
        // The token is good either way; the next call mints again.
        tracing::warn!(credential = %cred.name, error = %e, "cannot write the token cache {}", path.display());
    }
    Ok(token)
}
