//! The alerts' state kept in a store (`[alerts] state_store`) instead of a file, so that every
//! machine that alerts — the replicas of `rekey daemon` — de-duplicates against the same record:
//! a replica that takes over never pages again for what another already sent.
//!
//! The state is the journal `_alerts` of that store: each delivery that changed something
//! appends the whole state as one entry, and the newest entry is the state in force. Like a
//! credential's journal it is written only under the store's fenced lease of the same name
//! (taken for the delivery and released after it, as the state file is flocked), the lease
//! confirmed before the append and the append refused under an older fence, so a process that
//! lost the lease never overwrites what the new holder recorded. A store with no state yet starts
//! from the state file when there is one (moving from a file to a store sends nothing again).

use super::state::{self, LOCK_POLL, LOCK_WAIT, State};
use crate::config::{ALERTS_JOURNAL, StoreConfig};
use crate::wiring;
use rekey_api::{
    ErrorKind, Generation, JournalEntry, Phase, Result, RotationId, RotationLock, SecretStore, Step,
};
use serde_json::Value;
use std::path::PathBuf;

/// Where the state lives: a store, opened on first use.
pub(super) struct Stored {
    /// The store's name in `rekey.toml`, for messages.
    name: String,
    settings: StoreConfig,
    store: tokio::sync::OnceCell<Box<dyn SecretStore>>,
    /// The state file, read only while the store holds no state yet.
    seed: PathBuf,
}

/// The state's lease, held for one delivery, and the state as it was read.
pub(super) struct Held<'s> {
    store: &'s dyn SecretStore,
    lease: Box<dyn RotationLock>,
    read: Value,
}

impl Stored {
    pub(super) fn new(name: String, settings: StoreConfig, seed: PathBuf) -> Stored {
        Stored {
            name,
            settings,
            store: tokio::sync::OnceCell::new(),
            seed,
        }
    }

    /// Takes the state's lease (waiting for another holder as long as for the state file's lock)
    /// and reads the state in force.
    pub(super) async fn open(&self) -> Result<(Held<'_>, State)> {
        let context = || format!("the alerts' state in store '{}'", self.name);
        let store = self
            .store
            .get_or_try_init(|| wiring::open_store(&self.settings))
            .await
            .map_err(|e| e.context(context()))?
            .as_ref();
        let holder = format!(
            "alerts-pid{}-{:04x}",
            std::process::id(),
            rand::random::<u16>()
        );
        let deadline = tokio::time::Instant::now() + LOCK_WAIT;
        let lease = loop {
            match store.lock(ALERTS_JOURNAL, &holder).await {
                Ok(lease) => break lease,
                Err(e) if e.kind() == ErrorKind::Busy && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(LOCK_POLL).await;
                }
                Err(e) => return Err(e.context(context())),
            }
        };
        let journal = match store.read_journal(ALERTS_JOURNAL).await {
            Ok(journal) => journal,
            Err(e) => {
                let _ = lease.release().await;
                return Err(e.context(context()));
            }
        };
        let state = match journal.iter().rev().find(|e| e.step == Step::AlertState) {
            Some(entry) => parse(entry.detail.as_deref().unwrap_or_default(), &self.name),
            None => match state::load(&self.seed) {
                Ok(state) => state,
                Err(e) => {
                    let _ = lease.release().await;
                    return Err(e);
                }
            },
        };
        let read = serde_json::to_value(&state).expect("the state always serializes");
        Ok((Held { store, lease, read }, state))
    }
}

impl Held<'_> {
    /// Records `state` (when it differs from what was read) under the lease, then releases it.
    pub(super) async fn save(self, state: &State) -> Result<()> {
        let value = serde_json::to_value(state).expect("the state always serializes");
        let written = if value == self.read {
            Ok(())
        } else {
            self.append(value).await
        };
        let released = self.lease.release().await;
        written.and(released)
    }

    async fn append(&self, value: Value) -> Result<()> {
        self.lease.confirm().await?;
        let now = rekey_api::now();
        let entry = JournalEntry {
            rotation_id: RotationId(format!(
                "{ALERTS_JOURNAL}-{}-{:04x}",
                now.format("%Y%m%dT%H%M%SZ"),
                rand::random::<u16>()
            )),
            at: now,
            step: Step::AlertState,
            phase: Phase::Done,
            generation: Generation(0),
            previous_generation: None,
            new_fingerprint: None,
            old_fingerprint: None,
            detail: Some(value.to_string()),
            fence: Some(self.lease.fence()),
            prev: None,
            hash: None,
        };
        self.store.append_journal(ALERTS_JOURNAL, &entry).await
    }
}

/// The state an entry holds: empty (with a warning) when it cannot be understood — sending
/// again is the safe side, as with an unreadable state file.
fn parse(detail: &str, store: &str) -> State {
    match serde_json::from_str::<State>(detail) {
        Ok(state) if state.version == state::STATE_VERSION => state,
        Ok(_) | Err(_) => {
            tracing::warn!(
                store,
                "the alerts' state in the store cannot be read; starting afresh (open alerts are sent again)"
            );
            state::empty()
        }
    }
}
