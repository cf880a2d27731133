//! Which replica of `rekey daemon` leads: the one holding the leader lease `_daemon` in the
//! coordination store (`Config::coordination_store`), the same fenced lease a rotation takes
//! (file store: flock + fence counter; Vault and AWS: the conditional write of
//! `rekey_api::lease`, expiring after the store's `lock_ttl_secs` unless confirmed).
//!
//! A follower runs no cycle; it tries to take the lease every [`Leadership::poll`]. The leader
//! keeps the lease across cycles, confirming it every quarter of its time to live (during a cycle
//! too, so a long rotation does not lose it). A leader that learns its lease is gone — another
//! replica took it, or it could not confirm it for half its time to live and so cannot tell that
//! nobody did — stands down at once: its cycle is dropped where it stands, as if the process had
//! died there. That is safe because every rotation holds its own credential's lease and journals
//! each step before it acts: the new leader's run sees the open journal and finishes the rotation
//! through the normal resume path.

use crate::config::{Config, DAEMON_LEASE, StoreConfig};
use crate::wiring;
use rekey_api::{ErrorKind, Result, RotationLock, SecretStore};
use std::time::{Duration, Instant};

/// The leader lease of one replica: held or not.
pub(super) struct Leadership {
    store: Box<dyn SecretStore>,
    /// The store's name in `rekey.toml`.
    store_name: String,
    /// This replica, as the lease's holder (`daemon-pid<PID>-<random>`).
    holder: String,
    /// The lease's time to live (`None`: a file lock, held until the process ends).
    ttl: Option<Duration>,
    lease: Option<Box<dyn RotationLock>>,
    /// When the lease was last proven ours.
    confirmed: Instant,
}

/// What a try to lead found.
pub(super) enum Standing {
    /// This replica holds the lease.
    Leads,
    /// Another replica does (or the store could not be asked); why, for the operator.
    Follows(String),
}

impl Leadership {
    /// The leadership of this replica over the config's coordination store; `None` when the
    /// config has no store at all (nothing to rotate, nothing to share: it runs alone).
    pub(super) async fn new(config: &Config) -> Result<Option<Leadership>> {
        let Some(name) = config.coordination_store() else {
            return Ok(None);
        };
        let settings = &config.stores[name];
        let store = wiring::open_store(settings).await.map_err(|e| {
            e.context(format!(
                "the daemon's coordination store '{name}' ([daemon] coordination_store)"
            ))
        })?;
        Ok(Some(Leadership {
            store,
            store_name: name.to_string(),
            holder: format!(
                "daemon-pid{}-{:04x}",
                std::process::id(),
                rand::random::<u16>()
            ),
            ttl: lease_ttl(settings),
            lease: None,
            confirmed: Instant::now(),
        }))
    }

    /// The coordination store's name.
    pub(super) fn store_name(&self) -> &str {
        &self.store_name
    }

    /// Whether this replica leads now: confirms a lease it holds, or tries to take it.
    pub(super) async fn try_lead(&mut self) -> Standing {
        if self.lease.is_some() && self.renew().await {
            return Standing::Leads;
        }
        match self.store.lock(DAEMON_LEASE, &self.holder).await {
            Ok(lease) => {
                tracing::info!(store = %self.store_name, fence = lease.fence(), holder = %self.holder, "this replica leads");
                self.lease = Some(lease);
                self.confirmed = Instant::now();
                Standing::Leads
            }
            Err(e) if e.kind() == ErrorKind::Busy => Standing::Follows(e.to_string()),
            Err(e) => {
                tracing::warn!(store = %self.store_name, error = %e, "cannot take the daemon's leader lease; following until it can");
                Standing::Follows(e.to_string())
            }
        }
    }

    /// Proves the lease still ours (extending it past half its time to live); false once it is
    /// not, or once it could not be proven for half its time to live.
    async fn renew(&mut self) -> bool {
        let Some(lease) = &self.lease else {
            return false;
        };
        match lease.confirm().await {
            Ok(()) => {
                self.confirmed = Instant::now();
                return true;
            }
            Err(e) if e.kind() == ErrorKind::LeaseLost => {
                tracing::warn!(store = %self.store_name, error = %e, "this replica lost the leader lease; standing down");
            }
            Err(e) => {
                let Some(ttl) = self.ttl.filter(|ttl| self.confirmed.elapsed() >= *ttl / 2) else {
                    tracing::warn!(store = %self.store_name, error = %e, "cannot confirm the leader lease; trying again");
                    return true;
                };
                tracing::warn!(store = %self.store_name, error = %e, ttl_secs = ttl.as_secs(), "the leader lease could not be confirmed for half its time to live; standing down");
            }
        }
        // Given back if it is still ours after all; refused (and nothing written) when another
        // replica holds it, which is what stood this one down.
        if let Some(lease) = self.lease.take()
            && let Err(e) = lease.release().await
        {
            tracing::debug!(store = %self.store_name, error = %e, "the lost leader lease was not released");
        }
        false
    }

    /// Keeps the lease while it is ours: confirms it every quarter of its time to live; returns
    /// once it is lost (never, while it holds).
    pub(super) async fn keep(&mut self) {
        if self.lease.is_none() {
            return;
        }
        loop {
            tokio::time::sleep(self.renew_every()).await;
            if !self.renew().await {
                return;
            }
        }
    }

    fn renew_every(&self) -> Duration {
        self.ttl
            .map_or(Duration::from_secs(30), |ttl| ttl / 4)
            .max(Duration::from_millis(100))
    }

    /// How long a follower waits before trying to lead again: `interval` at most, and a quarter
    /// of the lease's time to live (a dead leader's lease is taken soon after it expires).
    pub(super) fn poll(&self, interval: Duration) -> Duration {
        self.renew_every()
            .min(Duration::from_secs(10))
            .min(interval)
    }

    /// Gives the lease back (on a clean stop), so another replica leads at once.
    pub(super) async fn release(&mut self) {
        if let Some(lease) = self.lease.take()
            && let Err(e) = lease.release().await
        {
            tracing::warn!(store = %self.store_name, error = %e, "could not release the leader lease; it frees itself when it expires");
        }
    }
}

/// The time to live of a store's leases; `None` for the file store, whose lock is the process's
/// own.
fn lease_ttl(store: &StoreConfig) -> Option<Duration> {
    match store {
        StoreConfig::File(_) => None,
        StoreConfig::Vault(vault) => Some(vault.lock_ttl),
        StoreConfig::Aws(aws) => Some(aws.lock_ttl),
    }
}
