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
//!
//! The cache is trusted the way ssh trusts its files (StrictModes), since a planted file would
//! hand a consumer someone else's token and instance: only a regular file (not a symbolic link,
//! one name only) that this user owns, of mode 0600, in a folder chain nobody else can change —
//! each folder up to `/`, as written and as resolved, owned by root or this user and writable by
//! neither group nor others. A sticky folder (like `/tmp`, mode 1777) may be writable by all:
//! there only an entry's owner may rename or remove it, and the folder below it is checked to be
//! ours. And the token's `instance_url` must be the org's ([`implied_instance`]). Anything else
//! is ignored with one warning, and a token is minted; an untrusted folder is not written to.

use crate::config::{Config, CredentialConfig};
use crate::wiring;
use chrono::{DateTime, Utc};
use rekey_api::{
    CredentialKind, Error, ErrorKind, Fingerprint, Generation, Material, Result, SecretStore,
    SecretString, Stage, Stages,
};
use rekey_salesforce::{
    ClientCredentialsConfig, ClientCredentialsMinter, Mint, MintConfig, Minter, Refusal,
};
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

/// A token for `cred`: from the cache file `cache` while it holds one still usable and
/// trusted, else minted (and then written to `cache`, when its folder is trusted). Why a cache
/// was not trusted goes to `warnings`, once, for the caller to print.
pub async fn issue(
    config: &Config,
    cred: &CredentialConfig,
    cache: Option<&Path>,
    warnings: &mut Vec<String>,
) -> Result<IssuedToken> {
    let (store, stages) = readable_store(config, cred).await?;
    let login_url = &config.orgs[&cred.org].login_url;
    let uid = rustix::process::geteuid().as_raw();
    // The folder first: a file in a folder others can change is never read, nor written.
    let cache = cache.filter(|path| {
        let dir = path.parent().unwrap_or(Path::new("/"));
        match untrusted_dir(dir, uid) {
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
        match cached(path, uid, cred, login_url, &stages) {
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
    let minter = minter(config, cred).await?;
    let token = mint(store.as_ref(), &minter, cred).await?;
    if let Some(path) = cache
        && let Err(e) = save(path, uid, cred, login_url, &token)
    {
        // The token is good either way; the next call mints again.
        tracing::warn!(credential = %cred.name, error = %e, "cannot write the token cache {}", path.display());
    }
    Ok(token)
}

/// Why `dir` (or, before it exists, the nearest folder above it) is not a folder only this user
/// and root can change; `None` when it is. See the module docs for the rule.
fn untrusted_dir(dir: &Path, uid: u32) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let existing = dir.ancestors().find(|p| p.exists())?;
    let resolved = match std::fs::canonicalize(existing) {
        Ok(path) => path,
        Err(e) => return Some(format!("cannot resolve {}: {e}", existing.display())),
    };
    // As written (each link's own folder) and as resolved (where the links lead).
    for folder in existing.ancestors().chain(resolved.ancestors()) {
        if folder.as_os_str().is_empty() {
            continue;
        }
        let meta = match std::fs::metadata(folder) {
            Ok(meta) => meta,
            Err(e) => return Some(format!("cannot inspect {}: {e}", folder.display())),
        };
        if !meta.is_dir() {
            return Some(format!("{} is not a folder", folder.display()));
        }
        if meta.uid() != 0 && meta.uid() != uid {
            return Some(format!(
                "{} belongs to user id {}, not to this user ({uid}) or root",
                folder.display(),
                meta.uid()
            ));
        }
        let mode = meta.permissions().mode();
        let sticky = mode & 0o1000 != 0;
        if mode & 0o022 != 0 && !sticky {
            return Some(format!(
                "{} is mode {:04o}: others can replace what is in it",
                folder.display(),
                mode & 0o7777
            ));
        }
    }
    None
}

/// Whether `instance_url`, from a cached token, is where the org `login_url` names sends its
/// tokens: the same origin (a My Domain or the emulator), or, when `login_url` is Salesforce's
/// generic login (`login.salesforce.com`, `test.salesforce.com`), an https My Domain
/// (`*.my.salesforce.com`). A token is only ever sent to its instance: a planted
/// `instance_url` would send it, and everything done with it, elsewhere.
pub fn implied_instance(login_url: &str, instance_url: &str) -> bool {
    let (Ok(login), Ok(instance)) = (
        reqwest::Url::parse(login_url),
        reqwest::Url::parse(instance_url),
    ) else {
        return false;
    };
    if rekey_api::endpoint(instance_url, "instance_url", "token cache").is_err() {
        return false;
    }
    let same_origin = login.scheme() == instance.scheme()
        && login.host_str() == instance.host_str()
        && login.port_or_known_default() == instance.port_or_known_default();
    let generic_login = matches!(
        login.host_str(),
        Some("login.salesforce.com" | "test.salesforce.com")
    );
    same_origin
        || (generic_login
            && instance.scheme() == "https"
            && instance.port().is_none()
            && instance
                .host_str()
                .is_some_and(|h| h.ends_with(".my.salesforce.com")))
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

/// How a credential's consumers get tokens: JWT bearer signed with a key, or the client
/// credentials flow with a consumer key and secret.
enum Grant {
    Jwt(Minter),
    ClientCredentials(ClientCredentialsMinter),
}

impl Grant {
    async fn mint(&self, material: &Material) -> Result<Mint> {
        match self {
            Grant::Jwt(minter) => minter.mint(material.key()?).await,
            Grant::ClientCredentials(minter) => minter.mint(material.consumer()?).await,
        }
    }
}

async fn minter(config: &Config, cred: &CredentialConfig) -> Result<Grant> {
    let org = &config.orgs[&cred.org];
    Ok(match cred.kind {
        CredentialKind::JwtCertificate => Grant::Jwt(Minter::new(MintConfig {
            org: cred.org.clone(),
            login_url: org.login_url.clone(),
            audience: org.audience.clone(),
            consumer_key: consumer_key(config, cred).await?,
            username: cred.username.clone(),
            request_timeout: cred.request_timeout,
        })?),
        CredentialKind::ConsumerSecret => {
            Grant::ClientCredentials(ClientCredentialsMinter::new(ClientCredentialsConfig {
                org: cred.org.clone(),
                login_url: org.login_url.clone(),
                request_timeout: cred.request_timeout,
            })?)
        }
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
    minter: &Grant,
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
    minter: &Grant,
    cred: &CredentialConfig,
    untrusted: &mut Vec<String>,
) -> Result<Option<IssuedToken>> {
    let mut tried: Vec<Fingerprint> = Vec::new();
    for _ in 0..PASSES {
        let tried_before = tried.len();
        for stage in Stage::ALL {
            let Some(stored) = store
                .read_stage(&cred.name, stage)
                .await
                .map_err(|e| e.context(&cred.name))?
            else {
                continue;
            };
            let (fingerprint, generation) =
                (stored.info.public.fingerprint(), stored.info.generation);
            if tried.contains(&fingerprint) {
                continue;
            }
            tried.push(fingerprint);
            let answer = minter
                .mint(&stored.material)
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
                Mint::Refused(refusal) if refuses_this_one(&refusal, cred.kind) => {
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

/// Whether Salesforce refused this key or pair itself (so another stage may work): a key it does
/// not trust right now, or a consumer key or secret it does not know (deleted, expired, not yet
/// rotated to primary).
fn refuses_this_one(refusal: &Refusal, kind: CredentialKind) -> bool {
    match kind {
        CredentialKind::JwtCertificate => refusal.untrusted_key(),
        CredentialKind::ConsumerSecret => {
            matches!(
                refusal.error.as_str(),
                "invalid_client_id" | "invalid_client"
            )
        }
    }
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
            "{}: Salesforce refused a token for {} {} the {stage} {} (generation {generation}): {refusal}",
            label(cred),
            match cred.kind {
                CredentialKind::JwtCertificate => cred.username.as_str(),
                CredentialKind::ConsumerSecret => "the client credentials run-as user",
            },
            match cred.kind {
                CredentialKind::JwtCertificate => "signed with",
                CredentialKind::ConsumerSecret => "with",
            },
            match cred.kind {
                CredentialKind::JwtCertificate => "key",
                CredentialKind::ConsumerSecret => "consumer secret",
            }
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
/// than `token_cache_secs` ago, with a key the store still holds (`Ok(None)`: a plain miss).
/// `Err` says why a file that is there cannot be trusted (see the module docs).
fn cached(
    path: &Path,
    uid: u32,
    cred: &CredentialConfig,
    login_url: &str,
    stages: &Stages,
) -> std::result::Result<Option<IssuedToken>, String> {
    use rustix::fs::{Mode, OFlags};
    use std::io::Read as _;
    // Not through a symbolic link; and non-blocking, so a FIFO planted there cannot hang us.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let file = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => std::fs::File::from(fd),
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(rustix::io::Errno::LOOP) => return Err("it is a symbolic link".into()),
        Err(e) => return Err(format!("cannot open it: {e}")),
    };
    // The opened file's own facts (fstat), not the name's: nothing can swap it in between.
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot inspect it: {e}"))?;
    if !meta.file_type().is_file() {
        return Err("it is not a regular file".into());
    }
    if meta.uid() != uid {
        return Err(format!(
            "it belongs to user id {}, not to this user ({uid})",
            meta.uid()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "its mode is {:04o}, not 0600: others could have read or written it",
            meta.mode() & 0o7777
        ));
    }
    if meta.nlink() != 1 {
        return Err(format!("it has {} names (hard links)", meta.nlink()));
    }
    let mut bytes = Vec::new();
    // A cache file is a few hundred bytes; more is not one.
    let read = file.take(64 * 1024).read_to_end(&mut bytes);
    let hit = match read {
        Err(e) => Err(format!("cannot read it: {e}")),
        Ok(_) => match serde_json::from_slice::<Cached>(&bytes) {
            Err(e) => {
                tracing::info!(credential = %cred.name, problem = %rekey_api::parse_problem(&e), "unreadable token cache; minting");
                Ok(None)
            }
            Ok(c) => usable(c, cred, login_url, stages),
        },
    };
    wipe(&mut bytes);
    hit
}

fn usable(
    c: Cached<'_>,
    cred: &CredentialConfig,
    login_url: &str,
    stages: &Stages,
) -> std::result::Result<Option<IssuedToken>, String> {
    let age = rekey_api::now() - c.minted_at;
    let fresh =
        age >= chrono::Duration::zero() && age.to_std().is_ok_and(|age| age < cred.token_cache);
    if !fresh || c.username != cred.username || c.login_url != login_url {
        return Ok(None);
    }
    if !implied_instance(login_url, &c.instance_url) {
        return Err(format!(
            "its instance_url is not the org's (login_url {login_url})"
        ));
    }
    // A rotation, abort or emergency rekey since: a token from a key the store no longer holds
    // may belong to a session that was revoked with it.
    let Some((stage, info)) = Stage::ALL.into_iter().find_map(|stage| {
        stages
            .get(stage)
            .filter(|v| v.public.fingerprint() == c.fingerprint)
            .map(|v| (stage, v))
    }) else {
        return Ok(None);
    };
    Ok(Some(IssuedToken {
        access_token: SecretString::new(c.access_token.into_owned()),
        instance_url: c.instance_url,
        fingerprint: c.fingerprint,
        generation: info.generation,
        stage,
        cached: true,
    }))
}

/// Writes `token` to the cache file `path` (0600, replaced whole by `write_atomic`), once its
/// folders exist and are still trusted; a token for an instance the org does not imply is not
/// cached, since it would never be read back.
fn save(
    path: &Path,
    uid: u32,
    cred: &CredentialConfig,
    login_url: &str,
    token: &IssuedToken,
) -> std::io::Result<()> {
    if !implied_instance(login_url, &token.instance_url) {
        tracing::info!(credential = %cred.name, "not caching the token: its instance_url is not the one login_url implies");
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        if let Some(why) = untrusted_dir(dir, uid) {
            return Err(std::io::Error::other(why));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_instance_must_be_where_the_login_url_sends_tokens() {
        let my_domain = "https://acme.my.salesforce.com";
        assert!(implied_instance(
            my_domain,
            "https://acme.my.salesforce.com"
        ));
        assert!(implied_instance(
            my_domain,
            "https://acme.my.salesforce.com/"
        ));
        assert!(implied_instance(
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080"
        ));
        for foreign in [
            "https://evil.example",
            "https://acme.my.salesforce.com.evil.example",
            "https://other.my.salesforce.com",
            "http://acme.my.salesforce.com",
            "https://acme.my.salesforce.com:8443",
            "http://127.0.0.1:8081",
            "not a url",
        ] {
            assert!(!implied_instance(my_domain, foreign), "{foreign}");
        }
        assert!(!implied_instance(
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8081"
        ));
        // Salesforce's generic login hands out the org's My Domain, whichever it is.
        for login in [
            "https://login.salesforce.com",
            "https://test.salesforce.com",
        ] {
            assert!(implied_instance(login, "https://acme.my.salesforce.com"));
            assert!(implied_instance(
                login,
                "https://acme--uat.sandbox.my.salesforce.com"
            ));
            assert!(!implied_instance(login, "https://evil.example"));
            assert!(!implied_instance(login, "http://acme.my.salesforce.com"));
            assert!(!implied_instance(
                login,
                "https://my.salesforce.com.evil.example"
            ));
        }
    }

    #[test]
    fn a_folder_chain_is_trusted_only_when_no_one_else_can_change_it() {
        use std::os::unix::fs::PermissionsExt as _;
        let uid = rustix::process::geteuid().as_raw();
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("a/b");
        std::fs::create_dir_all(&dir).unwrap();
        let chmod = |p: &Path, mode: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        chmod(base.path(), 0o700);
        chmod(&base.path().join("a"), 0o755);
        chmod(&dir, 0o700);
        assert_eq!(untrusted_dir(&dir, uid), None);
        // Not there yet: judged by the nearest folder that is.
        assert_eq!(untrusted_dir(&dir.join("c/d"), uid), None);
        chmod(&base.path().join("a"), 0o775);
        let why = untrusted_dir(&dir.join("c"), uid).unwrap();
        assert!(
            why.ends_with("a is mode 0775: others can replace what is in it"),
            "{why}"
        );
        chmod(&base.path().join("a"), 0o1777);
        assert_eq!(untrusted_dir(&dir, uid), None, "sticky");
        // Someone else's folder: root may make one; anyone else stands in as "someone else"
        // for a folder of theirs by asking as uid + 1 (root's folders are trusted by everyone).
        let why = if uid == 0 {
            let status = std::process::Command::new("chown")
                .arg("65534")
                .arg(&dir)
                .status()
                .unwrap();
            assert!(status.success());
            untrusted_dir(&dir, uid)
        } else {
            untrusted_dir(&dir, uid + 1)
        };
        let why = why.unwrap();
        assert!(why.contains("not to this user"), "{why}");
    }
}
