//! The agent's state: the tokens it holds per credential, how it mints, refreshes and counts.

use crate::config::{Config, CredentialConfig};
use crate::token::mint::{Grant, IssuedToken};
use crate::wiring;
use chrono::{DateTime, Utc};
use rekey_api::{
    Error, ErrorKind, Fingerprint, Generation, Result, SecretStore, SecretString, Stage,
};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, OnceCell};

/// A token as the agent hands it out.
#[derive(Debug)] // safe: SecretString redacts itself
pub struct AgentToken {
    /// The token.
    pub access_token: SecretString,
    /// Where to use it.
    pub instance_url: String,
    /// Until when the agent hands out this token (Salesforce does not say when it expires:
    /// this is `token_cache_secs` after it was minted).
    pub expires_at: DateTime<Utc>,
    /// The certificate (or consumer secret) fingerprint of what it was minted with, as
    /// `rekey token` reports it.
    pub fingerprint: Fingerprint,
    /// The generation of the key or consumer secret it was minted with.
    pub generation: Generation,
    /// The stage that key held when the agent last read the store.
    pub stage: Stage,
    /// Whether it was held from an earlier request instead of minted for this one.
    pub cached: bool,
}

/// Why the agent gave no token.
#[derive(Debug)]
pub enum Refused {
    /// The agent does not serve this credential.
    NotServed(Error),
    /// Minting failed (Salesforce refused every key, a store could not be read, ...).
    Failed(Error),
}

/// A token held in memory, and when it was minted.
struct Held {
    token: IssuedToken,
    minted: Instant,
    minted_at: DateTime<Utc>,
}

impl Held {
    fn answer(&self, lifetime: Duration, cached: bool) -> AgentToken {
        AgentToken {
            access_token: SecretString::new(self.token.access_token.expose_secret()),
            instance_url: self.token.instance_url.clone(),
            expires_at: self.minted_at
                + chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::zero()),
            fingerprint: self.token.fingerprint,
            generation: self.token.generation,
            stage: self.token.stage,
            cached,
        }
    }
}

/// What the agent counts per credential, for `/metrics`.
#[derive(Default)]
struct Counters {
    mints: AtomicU64,
    failures: AtomicU64,
    fallbacks: AtomicU64,
    hits: AtomicU64,
    dropped: AtomicU64,
}

/// One credential the agent serves.
#[derive(Default)]
struct Served {
    /// Built on the first request (it may read the consumer key through the admin connection).
    grant: OnceCell<Grant>,
    held: Mutex<Option<Held>>,
    counters: Counters,
}

/// The agent's state: the config, the stores it keeps open, a slot per served credential.
pub struct Agent {
    pub(super) config: Config,
    served: BTreeMap<String, Served>,
    stores: Mutex<BTreeMap<String, Arc<dyn SecretStore>>>,
}

impl Agent {
    /// An agent for the credentials `[agent]` names (every one by default).
    pub fn new(config: Config) -> Result<Agent> {
        let Some(agent) = &config.agent else {
            return Err(Error::new(
                ErrorKind::Config,
                format!("{} has no [agent] section", config.path.display()),
            )
            .with_hint("add [agent] with socket = \"PATH\" (or listen = \"127.0.0.1:PORT\" and bearer_file = \"PATH\"); rekey.example.toml shows every key"));
        };
        let served = agent
            .credentials
            .iter()
            .map(|name| (name.clone(), Served::default()))
            .collect();
        Ok(Agent {
            config,
            served,
            stores: Mutex::new(BTreeMap::new()),
        })
    }

    /// The credentials served, by name.
    pub fn credentials(&self) -> impl Iterator<Item = &str> {
        self.served.keys().map(String::as_str)
    }

    /// A token for credential `name`: the one held while it is fresh, else a new one.
    pub async fn token(&self, name: &str) -> std::result::Result<AgentToken, Refused> {
        let Some(served) = self.served.get(name) else {
            return Err(Refused::NotServed(
                Error::new(
                    ErrorKind::NotFound,
                    format!("rekey agent serves no credential '{name}'"),
                )
                .with_hint(format!(
                    "it serves: {} ([agent] credentials in {})",
                    self.served.keys().cloned().collect::<Vec<_>>().join(", "),
                    self.config.path.display()
                )),
            ));
        };
        let cred = &self.config.credentials[name];
        let lifetime = cred.token_cache;
        if lifetime.is_zero() {
            let token = self.mint(cred, served).await.map_err(Refused::Failed)?;
            return Ok(Held::from(token).answer(lifetime, false));
        }
        // Held across the mint: concurrent requests for a credential without a token wait for
        // the one mint instead of each minting.
        let mut held = served.held.lock().await;
        if let Some(h) = held.as_ref().filter(|h| h.minted.elapsed() < lifetime) {
            served.counters.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(h.answer(lifetime, true));
        }
        let token = self.mint(cred, served).await.map_err(Refused::Failed)?;
        let fresh = Held::from(token);
        let answer = fresh.answer(lifetime, false);
        *held = Some(fresh);
        Ok(answer)
    }

    /// A new token for `cred` with the fallback of `rekey token`, counted.
    async fn mint(&self, cred: &CredentialConfig, served: &Served) -> Result<IssuedToken> {
        let minted = async {
            let grant = served
                .grant
                .get_or_try_init(|| crate::token::mint::minter(&self.config, cred))
                .await?;
            // One store: no stage map to read first, the mint reads the stages it needs (a
            // request costs a grant, not more store reads than that).
            let store = match cred.stores.as_slice() {
                [only] => self.store(only).await.map_err(|e| e.context(&cred.name))?,
                _ => {
                    crate::token::mint::first_readable(cred, |name| self.store(name))
                        .await?
                        .0
                }
            };
            crate::token::mint::mint(store.as_ref(), grant, cred).await
        }
        .await;
        let counters = &served.counters;
        match &minted {
            Ok(token) => {
                counters.mints.fetch_add(1, Ordering::Relaxed);
                if token.stage != Stage::Current {
                    counters.fallbacks.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => {
                counters.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(credential = %cred.name, error = %e, "no token minted");
            }
        }
        minted
    }

    /// The store `name`, opened once and kept.
    async fn store(&self, name: &str) -> Result<Arc<dyn SecretStore>> {
        let mut stores = self.stores.lock().await;
        if let Some(store) = stores.get(name) {
            return Ok(store.clone());
        }
        let store: Arc<dyn SecretStore> = wiring::store(&self.config, name).await?.into();
        stores.insert(name.to_string(), store.clone());
        Ok(store)
    }

    /// Reads the stages of every held token's credential again: drops a token whose key has
    /// left the store or whose life is over, mints anew one past three quarters of its life,
    /// and notes the stage a held token's key holds now.
    pub async fn refresh(&self) {
        for (name, served) in &self.served {
            let cred = &self.config.credentials[name];
            let lifetime = cred.token_cache;
            let (fingerprint, age) = {
                let held = served.held.lock().await;
                match held.as_ref() {
                    Some(h) => (h.token.fingerprint, h.minted.elapsed()),
                    None => continue,
                }
            };
            let stages = match crate::token::mint::first_readable(cred, |n| self.store(n)).await {
                Ok((_, stages)) => stages,
                // Kept until it lapses: the store may be back by the next round.
                Err(_) => {
                    self.drop_if(served, name, fingerprint, |h| {
                        h.minted.elapsed() >= lifetime
                    })
                    .await;
                    continue;
                }
            };
            let stage_now = Stage::ALL.into_iter().find(|stage| {
                stages
                    .get(*stage)
                    .is_some_and(|v| v.public.fingerprint() == fingerprint)
            });
            let Some(stage_now) = stage_now else {
                self.drop_if(served, name, fingerprint, |_| true).await;
                continue;
            };
            if age >= lifetime * 3 / 4 {
                match self.mint(cred, served).await {
                    Ok(token) => {
                        tracing::info!(credential = %name, stage = %token.stage, generation = %token.generation, "token renewed before it lapses");
                        *served.held.lock().await = Some(Held::from(token));
                    }
                    Err(_) => {
                        self.drop_if(served, name, fingerprint, |h| {
                            h.minted.elapsed() >= lifetime
                        })
                        .await;
                    }
                }
                continue;
            }
            let mut held = served.held.lock().await;
            if let Some(h) = held.as_mut().filter(|h| h.token.fingerprint == fingerprint) {
                h.token.stage = stage_now;
            }
        }
    }

    /// Drops the held token of `served` if it is still the one of `fingerprint` and `drop`
    /// says so.
    async fn drop_if(
        &self,
        served: &Served,
        name: &str,
        fingerprint: Fingerprint,
        drop: impl Fn(&Held) -> bool,
    ) {
        let mut held = served.held.lock().await;
        if held
            .as_ref()
            .is_some_and(|h| h.token.fingerprint == fingerprint && drop(h))
        {
            *held = None;
            served.counters.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::info!(credential = %name, "token dropped: its key left the store, or it lapsed");
        }
    }

    /// `/metrics`: Prometheus text.
    pub async fn metrics(&self) -> String {
        let mut text = String::new();
        let families: [Family; 5] = [
            (
                "rekey_agent_mints_total",
                "counter",
                "Tokens minted at Salesforce.",
                |c| &c.mints,
            ),
            (
                "rekey_agent_mint_failures_total",
                "counter",
                "Requests for which no token could be minted.",
                |c| &c.failures,
            ),
            (
                "rekey_agent_fallbacks_total",
                "counter",
                "Tokens minted with a PENDING or PREVIOUS key because Salesforce did not trust CURRENT yet or any more.",
                |c| &c.fallbacks,
            ),
            (
                "rekey_agent_cache_hits_total",
                "counter",
                "Requests answered with a token held in memory.",
                |c| &c.hits,
            ),
            (
                "rekey_agent_tokens_dropped_total",
                "counter",
                "Held tokens dropped because their key left the store or they lapsed.",
                |c| &c.dropped,
            ),
        ];
        for (name, kind, help, counter) in families {
            let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (cred, served) in &self.served {
                let value = counter(&served.counters).load(Ordering::Relaxed);
                let _ = writeln!(text, "{name}{{credential=\"{cred}\"}} {value}");
            }
        }
        let _ = writeln!(
            text,
            "# HELP rekey_agent_tokens_held Tokens held in memory.\n# TYPE rekey_agent_tokens_held gauge"
        );
        for (cred, served) in &self.served {
            let held = u8::from(served.held.lock().await.is_some());
            let _ = writeln!(
                text,
                "rekey_agent_tokens_held{{credential=\"{cred}\"}} {held}"
            );
        }
        text
    }
}

/// A counter family of `/metrics`: name, type, help, and which counter.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&Counters) -> &AtomicU64,
);

impl From<IssuedToken> for Held {
    fn from(token: IssuedToken) -> Held {
        Held {
            token,
            minted: Instant::now(),
            minted_at: rekey_api::now(),
        }
    }
}
