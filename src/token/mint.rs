//! The consumer-side mint, the one definition `rekey token` and `rekey agent` share: CURRENT,
//! then PENDING, then PREVIOUS, moving on only when Salesforce does not trust a key right now,
//! swept again after a pause while a certificate change propagates.

use crate::config::{Config, CredentialConfig};
use crate::wiring;
use rekey_api::{
    CredentialKind, Error, ErrorKind, Fingerprint, Generation, Material, Result, SecretStore,
    SecretString, Stage, Stages,
};
use rekey_salesforce::{
    ClientCredentialsConfig, ClientCredentialsMinter, Mint, MintConfig, Minter, Refusal,
};

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

/// The first of the credential's stores (primary first) whose stage map can be read, with it.
pub(crate) async fn readable_store(
    config: &Config,
    cred: &CredentialConfig,
) -> Result<(Box<dyn SecretStore>, Stages)> {
    first_readable(cred, |name| wiring::store(config, name)).await
}

/// [`readable_store`] with the stores `open` gives by name (the agent keeps its stores open).
pub(crate) async fn first_readable<'c, S, F, Fut>(
    cred: &'c CredentialConfig,
    open: F,
) -> Result<(S, Stages)>
where
    S: std::ops::Deref<Target = dyn SecretStore>,
    F: Fn(&'c str) -> Fut,
    Fut: std::future::Future<Output = Result<S>>,
{
    let mut first_error = None;
    for name in &cred.stores {
        let read = async {
            let store = open(name).await?;
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
pub(crate) enum Grant {
    Jwt(Minter),
    ClientCredentials(ClientCredentialsMinter),
}

impl Grant {
    async fn mint(&self, material: &Material) -> Result<Mint> {
        match self {
            Grant::Jwt(minter) => minter.mint(material.signer()?).await,
            Grant::ClientCredentials(minter) => minter.mint(material.consumer()?).await,
        }
    }
}

pub(crate) async fn minter(config: &Config, cred: &CredentialConfig) -> Result<Grant> {
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
pub(crate) async fn mint(
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
