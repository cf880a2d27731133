//! A store whose keys are in custody: the stages, journal and lease of an ordinary store (Vault
//! KV v2, Secrets Manager) that holds, for each generation, a key handle and the certificate,
//! and a key-management service that holds the keys themselves.

use crate::{
    Error, ErrorKind, Generation, JournalEntry, JournalRead, KeyCustody, KeyHandle, Material,
    NewVersion, Result, RotationLock, SecretStore, Stage, Stages, StoredVersion,
};
use async_trait::async_trait;
use std::fmt;
use std::sync::Arc;

/// [`SecretStore`] over `store` (pointers, certificates, journal, lease) and `custody` (the keys).
///
/// What it adds to the store: what it reads signs through the service; it stages only keys made
/// in the service; destroying a generation destroys its key in the service first; promoting
/// tells the service which key is current; pruning deletes the keys older than every stage.
#[derive(Debug)]
pub struct CustodyStore {
    store: Box<dyn SecretStore>,
    custody: Arc<dyn KeyCustody>,
}

impl CustodyStore {
    /// `store`'s records with `custody`'s keys.
    pub fn new(store: Box<dyn SecretStore>, custody: Arc<dyn KeyCustody>) -> Self {
        CustodyStore { store, custody }
    }

    /// What was read, able to sign through the service.
    fn held(&self, version: Option<StoredVersion>) -> Option<StoredVersion> {
        version.map(|mut v| {
            if let Material::Custody(key) = v.material {
                v.material = Material::Custody(key.held_by(Arc::clone(&self.custody)));
            }
            v
        })
    }

    /// The key handle of `stage`, when one is there.
    async fn handle_of(&self, credential: &str, stage: Stage) -> Result<Option<KeyHandle>> {
        Ok(match self.store.read_stage(credential, stage).await? {
            Some(StoredVersion {
                material: Material::Custody(key),
                ..
            }) => Some(key.handle().clone()),
            _ => None,
        })
    }

    /// Points the service's name for the current key at CURRENT's.
    async fn tell_current(&self, credential: &str) -> Result<()> {
        if let Some(handle) = self.handle_of(credential, Stage::Current).await? {
            self.custody.made_current(credential, &handle).await?;
        }
        Ok(())
    }
}

impl fmt::Display for CustodyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} with keys in {}", self.store, self.custody)
    }
}

#[async_trait]
impl SecretStore for CustodyStore {
    async fn preflight(&self, credential: &str) -> Result<()> {
        self.store.preflight(credential).await?;
        let mut keys = Vec::new();
        for stage in [Stage::Current, Stage::Pending, Stage::Previous] {
            keys.extend(self.handle_of(credential, stage).await?);
        }
        self.custody.preflight(credential, &keys).await
    }

    async fn stages(&self, credential: &str) -> Result<Stages> {
        self.store.stages(credential).await
    }

    async fn read_stage(&self, credential: &str, stage: Stage) -> Result<Option<StoredVersion>> {
        let version = self.store.read_stage(credential, stage).await?;
        Ok(self.held(version))
    }

    async fn stage(&self, credential: &str, new: &NewVersion<'_>) -> Result<()> {
        if !matches!(new.material, Material::Custody(_)) {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "{self}: credential '{credential}' keeps its keys in custody, so its store takes only keys made in {}; nothing was written",
                    self.custody
                ),
            )
            .with_hint(
                "a key that exists outside the service cannot be put in custody; let `rekey rotate` make one there",
            ));
        }
        self.store.stage(credential, new).await
    }

    async fn promote(&self, credential: &str, generation: Generation) -> Result<()> {
        self.store.promote(credential, generation).await?;
        self.tell_current(credential).await
    }

    async fn revert(&self, credential: &str, to: Generation) -> Result<()> {
        self.store.revert(credential, to).await?;
        self.tell_current(credential).await
    }

    async fn discard(&self, credential: &str, generation: Generation) -> Result<()> {
        self.store.discard(credential, generation).await
    }

    async fn read_generation(
        &self,
        credential: &str,
        generation: Generation,
    ) -> Result<Option<StoredVersion>> {
        let version = self.store.read_generation(credential, generation).await?;
        Ok(self.held(version))
    }

    async fn destroy(&self, credential: &str, generation: Generation) -> Result<()> {
        let stages = self.store.stages(credential).await?;
        if stages
            .current
            .as_ref()
            .is_some_and(|c| c.generation == generation)
        {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{self}: refusing to destroy generation {generation} of '{credential}': it is current"
                ),
            )
            .with_hint("rotate or revert first so that another generation is current"));
        }
        // The service first: a crash between the two leaves a record naming a key that is gone
        // (the next destroy finishes), never a key nobody's record names any more. Keys the
        // service holds for this generation are found through it too, since a store's own
        // retention may have dropped the record already.
        let mut keys: Vec<KeyHandle> = self
            .custody
            .keys_of(credential)
            .await?
            .into_iter()
            .filter(|(g, _)| *g == generation)
            .map(|(_, handle)| handle)
            .collect();
        if let Some(StoredVersion {
            material: Material::Custody(key),
            ..
        }) = self.store.read_generation(credential, generation).await?
            && !keys.iter().any(|k| k.key_id == key.handle().key_id)
        {
            keys.push(key.handle().clone());
        }
        for key in &keys {
            let done = self.custody.destroy_key(key).await?;
            tracing::info!(store = %self, credential, generation = generation.0, "{done}");
        }
        self.store.destroy(credential, generation).await
    }

    async fn append_journal(&self, credential: &str, entry: &JournalEntry) -> Result<()> {
        self.store.append_journal(credential, entry).await
    }

    async fn scan_journal(&self, credential: &str) -> Result<JournalRead> {
        self.store.scan_journal(credential).await
    }

    async fn read_journal(&self, credential: &str) -> Result<Vec<JournalEntry>> {
        self.store.read_journal(credential).await
    }

    /// The store's own pruning, then every key in the service older than the oldest generation
    /// a stage names (a discarded key newer than that stays: the app may have trusted it).
    async fn prune(&self, credential: &str) -> Result<Vec<Generation>> {
        let mut pruned = self.store.prune(credential).await?;
        let stages = self.store.stages(credential).await?;
        let Some(oldest) = [Stage::Current, Stage::Pending, Stage::Previous]
            .into_iter()
            .filter_map(|s| stages.get(s).map(|v| v.generation))
            .min()
        else {
            return Ok(pruned);
        };
        for (generation, key) in self.custody.keys_of(credential).await? {
            if generation < oldest {
                let done = self.custody.destroy_key(&key).await?;
                tracing::info!(store = %self, credential, generation = generation.0, "{done}");
                pruned.push(generation);
            }
        }
        pruned.sort();
        pruned.dedup();
        Ok(pruned)
    }

    async fn exposure(&self, credential: &str) -> Vec<crate::Exposure> {
        self.store.exposure(credential).await
    }

    fn custody(&self) -> Option<Arc<dyn KeyCustody>> {
        Some(Arc::clone(&self.custody))
    }

    async fn lock(&self, credential: &str, holder: &str) -> Result<Box<dyn RotationLock>> {
        self.store.lock(credential, holder).await
    }
}
