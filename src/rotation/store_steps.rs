//! The steps on the stores: stage the new generation (primary first, adopting a key an interrupted
//! run staged), confirm at finalize that the app holds CURRENT and destroy the retired keys the
//! stores no longer keep, revert on undo; and reading this rotation's keys back, checked against
//! the journal.

use super::inflight::InFlight;
use crate::pki;
use rekey_api::{CredentialKind, Error, ErrorKind, Material, Public, Result, Stage, StoredVersion};

impl<'a, 'r> InFlight<'a, 'r> {
    /// The new generation's key and certificate, into `fresh`: made here, or by the primary
    /// store's key-management service when it keeps the keys in custody. Returns what the
    /// journal says of it.
    pub(super) async fn generate_key(
        &mut self,
        fresh: &mut Option<(Material, Public)>,
    ) -> Result<String> {
        let r = self.rotation;
        let (spec, now) = (r.spec.clone(), rekey_api::now());
        let (material, cert) = match r.primary().custody() {
            Some(custody) => {
                let (key, cert) =
                    pki::generate_in_custody(&spec, now, custody, r.credential, self.generation)
                        .await?;
                (Material::Custody(key), cert)
            }
            None => {
                // Seconds of CPU: on the blocking pool, so rotations side by side (a run's
                // batch) use every core while this thread keeps serving the others.
                let (key, cert) = tokio::task::spawn_blocking(move || pki::generate(&spec, now))
                    .await
                    .map_err(|e| {
                        Error::new(ErrorKind::Unexpected, "key generation stopped").with_source(e)
                    })??;
                (Material::Key(key), cert)
            }
        };
        self.new_fingerprint = Some(cert.fingerprint);
        let held = match &material {
            Material::Custody(key) => format!(" in custody ({})", key.handle()),
            _ => String::new(),
        };
        let detail = format!(
            "{} certificate {} valid until {}{held}",
            r.spec.algorithm,
            cert.fingerprint,
            cert.not_after.format("%Y-%m-%d")
        );
        *fresh = Some((material, Public::Certificate(cert)));
        Ok(detail)
    }

    pub(super) async fn stage(&mut self, fresh: &mut Option<(Material, Public)>) -> Result<String> {
        let r = self.rotation;
        let primary = r.primary();
        let mut adopted = false;
        if fresh.is_none() {
            // Resumed: the interrupted run may have written the key and died before journaling
            // it. A PENDING of this rotation in the primary is that key; adopt it, and stage the
            // same key in the other stores.
            let stages = primary.stages(r.credential).await?;
            if let Some(staged) = stages.pending.filter(|p| {
                p.rotation_id.as_ref() == Some(&self.id) && p.generation == self.generation
            }) {
                self.new_fingerprint = Some(staged.public.fingerprint());
                adopted = true;
            } else if r.target.kind() == CredentialKind::ConsumerSecret {
                // Resumed after Generate: the pair is in Salesforce's staged slot, not in
                // memory; read it back from there (never staging a second one).
                self.generate_consumer(fresh).await?;
            } else {
                // Resumed after Generate but before anything was written: the key never left
                // memory, so nothing refers to it and a new one is as good (a key in custody is
                // the one the service made for this generation, with a new certificate).
                self.generate_key(fresh).await?;
            }
        }
        let staged_key;
        let (material, public) = match fresh.as_ref() {
            Some((material, public)) => (material, public),
            None => {
                staged_key = self.pending().await?;
                (&staged_key.material, &staged_key.info.public)
            }
        };
        let new = rekey_api::NewVersion {
            generation: self.generation,
            material,
            public,
            rotation_id: &self.id,
        };
        // Primary first: it is where a resumed run finds the key again.
        for store in r.stores {
            self.lease.confirm().await?;
            store.stage(r.credential, &new).await?;
        }
        let note = if adopted {
            " (staged before the interruption, adopted)"
        } else {
            ""
        };
        Ok(format!(
            "generation {} PENDING in {}{note}",
            self.generation,
            r.store_names()
        ))
    }

    pub(super) async fn finalize(&self) -> Result<String> {
        let r = self.rotation;
        let installed = r.target.installed().await?;
        for store in r.stores {
            let current = store.stages(r.credential).await?.current.ok_or_else(|| {
                Error::new(
                    ErrorKind::Unexpected,
                    format!("{store}: no CURRENT key after promotion"),
                )
            })?;
            if installed != Some(current.public.fingerprint()) {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "{} now holds {} {}, not {store}'s CURRENT {}: the app or the store was changed during the rotation",
                        r.target,
                        what(r.target.kind()),
                        installed.map_or_else(|| "none".to_string(), |f| f.to_hex()),
                        current.public.fingerprint()
                    ),
                )
                .with_hint(
                    "find out who changed it; put CURRENT's certificate back on the app (runbooks/rollback.md), then run `rekey resume` to finalize",
                ));
            }
        }
        // Store hygiene: the keys the stores' retention no longer keeps go now that no undo can
        // need them. Idempotent, so a finalize interrupted half-way finishes on resume, and a
        // cleanup that fails never holds a finished rotation open: it is journaled and logged,
        // and the next finalize tries again.
        let mut pruned = Vec::new();
        for store in r.stores {
            self.lease.confirm().await?;
            match store.prune(r.credential).await {
                Ok(destroyed) if destroyed.is_empty() => {}
                Ok(destroyed) => {
                    let list: Vec<String> = destroyed.iter().map(ToString::to_string).collect();
                    pruned.push(format!(
                        "; retired generation{} {} destroyed in {store}",
                        if destroyed.len() == 1 { "" } else { "s" },
                        list.join(", ")
                    ));
                }
                Err(e) => {
                    tracing::warn!(credential = r.credential, %store, error = %e, "could not destroy the retired keys the store no longer keeps; the next rotation tries again");
                    pruned.push(format!("; retired keys not destroyed in {store}: {e}"));
                }
            }
        }
        Ok(format!(
            "app {} equals CURRENT {} in {}{}",
            what(r.target.kind()),
            installed.map_or_else(String::new, |f| f.to_hex()),
            r.store_names(),
            pruned.concat()
        ))
    }

    /// The staged key of this rotation, checked against the journal's fingerprint.
    pub(super) async fn pending(&self) -> Result<StoredVersion> {
        let r = self.rotation;
        let primary = r.primary();
        let stored = primary.read_stage(r.credential, Stage::Pending).await?.ok_or_else(|| {
            Error::new(ErrorKind::NotFound, format!("{primary}: no PENDING key for rotation {}", self.id))
                .with_hint("the staged key is gone from the store; inspect `rekey journal` before going further")
        })?;
        if stored.info.generation != self.generation
            || Some(stored.info.public.fingerprint()) != self.new_fingerprint
        {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{}: PENDING holds generation {} ({}), but rotation {} staged generation {}",
                    primary,
                    stored.info.generation,
                    stored.info.public.fingerprint(),
                    self.id,
                    self.generation
                ),
            )
            .with_hint(
                "another process changed the store; inspect `rekey journal` before going further",
            ));
        }
        Ok(stored)
    }

    /// This rotation's generation as a store holds it (PENDING before promotion, CURRENT after),
    /// checked against the journal's fingerprint.
    pub(super) async fn new_key(&self) -> Result<StoredVersion> {
        let r = self.rotation;
        let primary = r.primary();
        let stored = primary
            .read_generation(r.credential, self.generation)
            .await?
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("{primary}: generation {} of rotation {} is gone", self.generation, self.id),
                )
                .with_hint("the staged key is gone from the store; inspect `rekey journal` before going further")
            })?;
        if Some(stored.info.public.fingerprint()) != self.new_fingerprint {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{primary}: generation {} holds {}, not the one rotation {} staged",
                    self.generation,
                    stored.info.public.fingerprint(),
                    self.id
                ),
            )
            .with_hint(
                "another process changed the store; inspect `rekey journal` before going further",
            ));
        }
        Ok(stored)
    }

    /// The key consumers used before this rotation, from the first store that still has it.
    pub(super) async fn previous_key(&self) -> Result<StoredVersion> {
        let r = self.rotation;
        let cred = r.credential;
        let Some(previous) = self.previous_generation else {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{cred}: the certificate {} held before rotation {} ({}) has no key in {}, so putting it back would leave the app trusting a key nobody can use",
                    r.target,
                    self.id,
                    self.old_fingerprint.map_or_else(|| "none".to_string(), |f| f.to_hex()),
                    r.store_names()
                ),
            )
            .with_hint(format!("finish the rotation instead: `rekey resume {cred}`")));
        };
        for store in r.stores {
            if let Some(key) = store.read_generation(cred, previous).await? {
                return Ok(key);
            }
        }
        Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "{cred}: generation {previous}, CURRENT before rotation {}, is in none of {}",
                self.id,
                r.store_names()
            ),
        )
        .with_hint(format!(
            "the previous key is gone, so the rotation cannot be undone; finish it with `rekey resume {cred}`"
        )))
    }
}

/// What the app holds for a credential of `kind`, for messages.
fn what(kind: CredentialKind) -> &'static str {
    match kind {
        CredentialKind::JwtCertificate => "certificate",
        CredentialKind::ConsumerSecret => "consumer secret",
    }
}
