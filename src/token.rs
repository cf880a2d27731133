//! `rekey token`: an access token for a credential's integration user, so the consumers of its
//! key (jobs, scripts, the sf CLI) never handle the key itself.
//!
//! The token is minted by JWT bearer with the key the credential's stores hold as CURRENT.
//! While a rotation's certificate change propagates, the app may trust only the new key
//! (PENDING, before promotion) or only the old one (PREVIOUS, after it); Salesforce then answers
//! `invalid_grant: invalid assertion` and the next stage's key is tried, so a consumer sees no
//! failed mint at any point of a rotation. Every other refusal is about the app, the user or the
//! request, and is reported at once. A token is reused from a per-credential cache file for
//! `token_cache_secs`, unless the key it was minted with has left the store meanwhile.

use crate::config::{Config, CredentialConfig};
use crate::wiring;
use chrono::{DateTime, Utc};
use rekey_api::{
    Error, ErrorKind, Fingerprint, Generation, Result, SecretStore, SecretString, Stage, Stages,
};
use rekey_salesforce::{Mint, MintConfig, Minter, Refusal};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

/// How often one sweep reads the stages again after every key was refused: a rotation may
/// promote between reading one stage and the next, so a pass can miss the key trusted now.
const PASSES: usize = 3;
/// Sweeps through the stages before "no key is trusted" is the answer. While a change propagates
/// each request may reach a server that has it or one that has not, so one sweep over two keys
/// misses both by chance a quarter of the time; ten leave about one in a million.
const SWEEPS: u32 = 10;
/// Pause after the first sweep that found no trusted key; grows with each sweep up to
/// [`SWEEP_PAUSE_MAX`] (about 4.5 s over all sweeps).
const SWEEP_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);
/// Longest pause between sweeps.
const SWEEP_PAUSE_MAX: std::time::Duration = std::time::Duration::from_secs(1);

/// A token for a credential's integration user, and which key it came from.
#[derive(Debug)] // safe: SecretString redacts itself
pub struct IssuedToken {
    /// The token; printed only by `render::token`.
    pub access_token: SecretString,
    /// Where to use it.
    pub instance_url: String,
    /// The certificate of the key that signed the grant.
    pub fingerprint: Fingerprint,
    /// That key's generation.
    pub generation: Generation,
    /// The stage that key holds now.
    pub stage: Stage,
    /// Whether it came from the cache instead of Salesforce.
    pub cached: bool,
}

/// The cache file of `cred` in `dir`.
pub fn cache_file(dir: &Path, cred: &CredentialConfig) -> Result<PathBuf> {
    // The name becomes a file name: no separators, no `..`.
    rekey_api::check_credential_name(&cred.name)?;
    Ok(dir.join(format!("{}.json", cred.name)))
}

/// A token for `cred`: from the cache file `cache` while it holds one still usable, else minted
/// (and then written to `cache`).
pub async fn issue(
    config: &Config,
    cred: &CredentialConfig,
    cache: Option<&Path>,
) -> Result<IssuedToken> {
    let (store, stages) = readable_store(config, cred).await?;
    let login_url = &config.orgs[&cred.org].login_url;
    if let Some(hit) = cache.and_then(|path| cached(path, cred, login_url, &stages)) {
        tracing::info!(credential = %cred.name, stage = %hit.stage, generation = %hit.generation, "token from the cache");
        return Ok(hit);
    }
    let minter = minter(config, cred).await?;
    let token = mint(store.as_ref(), &minter, cred).await?;
    if let Some(path) = cache
        && let Err(e) = save(path, cred, login_url, &token)
    {
        // The token is good either way; the next call mints again.
        tracing::warn!(credential = %cred.name, error = %e, "cannot write the token cache {}", path.display());
    }
    Ok(token)
}

/// The first of the credential's stores (primary first) whose stage map can be read, with it.
async fn readable_store(
    config: &Config,
    cred: &CredentialConfig,
) -> Result<(Box<dyn SecretStore>, Stages)> {
    let mut first_error = None;
    for name in &cred.stores {
        let read = async {
            let store = wiring::store(config, name).await?;
            let stages = store.stages(&cred.name).await?;
            Ok::<_, Error>((store, stages))
        };
        match read.await {
            Ok(found) => return Ok(found),
            Err(e) => {
                tracing::warn!(credential = %cred.name, store = %name, error = %e, "cannot read the store");
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error
        .expect("config load requires a store per credential")
        .context(&cred.name))
}

/// The configured consumer key, or the one in the app's metadata, read through the admin
/// connection (which consumers should not need: set `consumer_key`).
async fn consumer_key(config: &Config, cred: &CredentialConfig) -> Result<String> {
    if let Some(key) = cred
        .consumer_key
        .as_deref()
        .filter(|k| !k.trim().is_empty())
    {
        return Ok(key.to_string());
    }
    tracing::info!(credential = %cred.name, "consumer_key is not set: reading it from the app through the admin connection");
    wiring::salesforce_target(config, cred)?
        .consumer_key()
        .await
        .map_err(|e| e.context(&cred.name))
}

async fn minter(config: &Config, cred: &CredentialConfig) -> Result<Minter> {
    let org = &config.orgs[&cred.org];
    Minter::new(MintConfig {
        org: cred.org.clone(),
        login_url: org.login_url.clone(),
        audience: org.audience.clone(),
        consumer_key: consumer_key(config, cred).await?,
        username: cred.username.clone(),
        request_timeout: cred.request_timeout,
    })
}

/// How messages name a credential: `billing (connected app Billing_Sync in org acme)`.
fn label(cred: &CredentialConfig) -> String {
    format!(
        "{} ({} {} in org {})",
        cred.name, cred.app_kind, cred.app, cred.org
    )
}

/// Mints with CURRENT, then PENDING, then PREVIOUS, moving on only when Salesforce does not
/// trust a key right now; when it trusts none, sweeps again after a pause, since servers may
/// disagree while a certificate change propagates.
async fn mint(
    store: &dyn SecretStore,
    minter: &Minter,
    cred: &CredentialConfig,
) -> Result<IssuedToken> {
    let mut untrusted = Vec::new();
    for sweep in 1..=SWEEPS {
        untrusted.clear();
        if let Some(token) = sweep_stages(store, minter, cred, &mut untrusted).await? {
            return Ok(token);
        }
        if untrusted.is_empty() {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("{}: the store holds no key for it", label(cred)),
            )
            .with_hint(format!(
                "put its key under management first: `rekey import {} --key K --cert C`",
                cred.name
            )));
        }
        if sweep < SWEEPS {
            tokio::time::sleep((SWEEP_PAUSE * sweep).min(SWEEP_PAUSE_MAX)).await;
        }
    }
    Err(Error::new(
        ErrorKind::Rejected,
        format!(
            "{}: Salesforce trusts none of its keys right now: {} refused with invalid_grant: invalid assertion",
            label(cred),
            untrusted.join(", ")
        ),
    )
    .with_hint(format!(
        "either the app holds a certificate none of the stores has (compare `rekey status {}` with the app), or a certificate change is still propagating: try again in a few minutes",
        cred.name
    )))
}

/// One sweep through the stages: each key the store holds is tried once, however often the
/// stages are read. `Ok(None)` when Salesforce trusted none of them (each is then named in
/// `untrusted`).
async fn sweep_stages(
    store: &dyn SecretStore,
    minter: &Minter,
    cred: &CredentialConfig,
    untrusted: &mut Vec<String>,
) -> Result<Option<IssuedToken>> {
    let mut tried: Vec<Fingerprint> = Vec::new();
    for _ in 0..PASSES {
        let tried_before = tried.len();
        for stage in Stage::ALL {
            let Some(stored) = store
                .read_key(&cred.name, stage)
                .await
                .map_err(|e| e.context(&cred.name))?
            else {
                continue;
            };
            let (fingerprint, generation) =
                (stored.info.certificate.fingerprint, stored.info.generation);
            if tried.contains(&fingerprint) {
                continue;
            }
            tried.push(fingerprint);
            let answer = minter
                .mint(&stored.key)
                .await
                .map_err(|e| e.context(label(cred)))?;
            drop(stored);
            match answer {
                Mint::Granted(minted) => {
                    tracing::info!(credential = %cred.name, %stage, %generation, "token minted");
                    return Ok(Some(IssuedToken {
                        access_token: minted.access_token,
                        instance_url: minted.instance_url,
                        fingerprint,
                        generation,
                        stage,
                        cached: false,
                    }));
                }
                Mint::Refused(refusal) if refusal.untrusted_key() => {
                    tracing::info!(credential = %cred.name, %stage, %generation, "the app does not trust this key right now ({refusal}); trying the next stage");
                    untrusted.push(format!("{stage} (generation {generation})"));
                }
                Mint::Refused(refusal) => {
                    return Err(refused(cred, stage, generation, &refusal));
                }
            }
        }
        if tried.len() == tried_before {
            break;
        }
    }
    Ok(None)
}

/// A refusal another key cannot fix: the app, the user or the request is the problem.
fn refused(
    cred: &CredentialConfig,
    stage: Stage,
    generation: Generation,
    refusal: &Refusal,
) -> Error {
    Error::new(
        ErrorKind::Rejected,
        format!(
            "{}: Salesforce refused a token for {} signed with the {stage} key (generation {generation}): {refusal}",
            label(cred),
            cred.username
        ),
    )
    .with_hint(refusal.hint("integration"))
}

/// A cache file's contents.
#[derive(Serialize, Deserialize)]
struct Cached<'a> {
    #[serde(borrow)]
    access_token: Cow<'a, str>,
    instance_url: String,
    fingerprint: Fingerprint,
    minted_at: DateTime<Utc>,
    /// With the login URL: whose token it is, so a changed config never reuses another's.
    username: String,
    login_url: String,
}

/// The cached token of `cred`, if it is still usable: minted for the same user and org less
/// than `token_cache_secs` ago, with a key the store still holds. Anything else is a miss.
fn cached(
    path: &Path,
    cred: &CredentialConfig,
    login_url: &str,
    stages: &Stages,
) -> Option<IssuedToken> {
    let meta = std::fs::metadata(path).ok()?;
    // A file others could have written might hold a token that is not ours.
    if meta.mode() & 0o077 != 0 {
        tracing::warn!(credential = %cred.name, "ignoring the token cache {}: its mode is not 0600", path.display());
        return None;
    }
    let mut bytes = std::fs::read(path).ok()?;
    let hit = serde_json::from_slice::<Cached>(&bytes)
        .inspect_err(|e| tracing::info!(credential = %cred.name, error = %e, "unreadable token cache; minting"))
        .ok()
        .and_then(|c| usable(c, cred, login_url, stages));
    wipe(&mut bytes);
    hit
}

fn usable(
    c: Cached<'_>,
    cred: &CredentialConfig,
    login_url: &str,
    stages: &Stages,
) -> Option<IssuedToken> {
    let age = rekey_api::now() - c.minted_at;
    let fresh =
        age >= chrono::Duration::zero() && age.to_std().is_ok_and(|age| age < cred.token_cache);
    if !fresh || c.username != cred.username || c.login_url != login_url {
        return None;
    }
    // A rotation, abort or emergency rekey since: a token from a key the store no longer holds
    // may belong to a session that was revoked with it.
    let (stage, info) = Stage::ALL.into_iter().find_map(|stage| {
        stages
            .get(stage)
            .filter(|v| v.certificate.fingerprint == c.fingerprint)
            .map(|v| (stage, v))
    })?;
    Some(IssuedToken {
        access_token: SecretString::new(c.access_token.into_owned()),
        instance_url: c.instance_url,
        fingerprint: c.fingerprint,
        generation: info.generation,
        stage,
        cached: true,
    })
}

fn save(
    path: &Path,
    cred: &CredentialConfig,
    login_url: &str,
    token: &IssuedToken,
) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let entry = Cached {
        access_token: Cow::Borrowed(token.access_token.expose_secret()),
        instance_url: token.instance_url.clone(),
        fingerprint: token.fingerprint,
        minted_at: rekey_api::now(),
        username: cred.username.clone(),
        login_url: login_url.to_string(),
    };
    let mut bytes = serde_json::to_vec(&entry)?;
    let written = rekey_api::write_atomic(path, &bytes, 0o600);
    wipe(&mut bytes);
    written
}

/// Overwrites a buffer that held a token before it is freed. Best effort (the token also passed
/// through the HTTP and JSON layers), but it keeps the plain copies this module makes short-lived.
fn wipe(bytes: &mut [u8]) {
    bytes.fill(0);
    std::hint::black_box(bytes);
}
