//! The steps only a consumer secret has, or has differently: Salesforce generates the new pair
//! (a staged credential), the previous pair stays valid after the rotation until it is deleted
//! (`retire`), and an undo can only delete what was staged, never make the previous pair primary
//! again.

use super::inflight::InFlight;
use super::outcome::Progress;
use super::target::{consumer, describe_slot};
use rekey_api::{ConsumerSecretTarget, Material, Public, Result, Stage, Staged, StagedState, Step};

/// How far a staged credential's creation may precede the journal entry before it (clock skew
/// between this host and Salesforce) and still be recognised as this rotation's own.
const SKEW: chrono::Duration = chrono::Duration::minutes(5);

impl<'a, 'r> InFlight<'a, 'r> {
    /// Generate, consumer secret: Salesforce stages a new pair. A resumed run whose stage request
    /// may have reached Salesforce adopts the staged pair it finds if it was created after this
    /// rotation began; anyone else's staged pair is never touched. A pair rotated out by rekey's
    /// previous rotation (PREVIOUS's) is deleted first: this rotation makes it two generations
    /// old.
    pub(super) async fn generate_consumer(
        &mut self,
        fresh: &mut Option<(Material, Public)>,
    ) -> Result<String> {
        let target = consumer(&self.rotation.target)?;
        let mut note = String::new();
        let staged = target.staged().await?;
        let ours = match &staged {
            Some((slot, _)) => self.is_ours(slot).await?,
            None => false,
        };
        match staged {
            Some((slot, Some(secret))) if ours => {
                note = format!(" (staged before the interruption as {}, adopted)", slot.id);
                self.keep(fresh, Material::Consumer(secret));
            }
            Some((slot, _))
                if slot.state == StagedState::Rotated && self.is_previous(&slot).await? =>
            {
                self.lease.confirm().await?;
                target.delete_staged(&slot.id).await?;
                note = format!(
                    "; the pair rotated out by the previous rotation ({}) deleted first",
                    slot.key
                );
            }
            _ => {}
        }
        if fresh.is_none() {
            self.lease.confirm().await?;
            // Refused with `Conflict` (nothing deleted) when someone else's pair is staged.
            let (slot, secret) = target.stage().await?;
            note = format!(" (staged credential {}){note}", slot.id);
            self.keep(fresh, Material::Consumer(secret));
        }
        let public = fresh.as_ref().map(|(_, p)| p).expect("kept above");
        Ok(format!(
            "Salesforce staged consumer key {}{note}",
            public.consumer().map_or("", |c| c.key.as_str())
        ))
    }

    fn keep(&mut self, fresh: &mut Option<(Material, Public)>, material: Material) {
        let secret = material.consumer().expect("a consumer secret");
        let public = Public::Consumer(secret.public());
        self.new_fingerprint = Some(public.fingerprint());
        *fresh = Some((material, public));
    }

    /// Whether an Active `slot` is the pair this rotation's stage request made, when that
    /// request may have reached Salesforce before the journal heard of it: staged after this
    /// rotation began, by the user rekey's admin session acts as (when Salesforce says who and
    /// rekey can tell who it is). A fresh rotation never gets here with a pair in the slot: it
    /// refuses before journaling anything.
    async fn is_ours(&self, slot: &Staged) -> Result<bool> {
        if slot.state != StagedState::Active
            || !self.begun.contains(&Step::Generate)
            || slot
                .created_at
                .is_none_or(|created| created + SKEW < self.started_at)
        {
            return Ok(false);
        }
        let admin = consumer(&self.rotation.target)?.admin_user_id().await?;
        Ok(match (&slot.created_by, admin) {
            (Some(by), Some(admin)) => by.eq_ignore_ascii_case(&admin),
            _ => true,
        })
    }

    /// Whether a Rotated pair is the one PREVIOUS holds (rekey rotated it out itself).
    async fn is_previous(&self, slot: &Staged) -> Result<bool> {
        let r = self.rotation;
        let previous = r.primary().stages(r.credential).await?.previous;
        Ok(previous.is_some_and(|p| p.public.consumer().is_some_and(|c| c.key == slot.key)))
    }

    /// Retire: the previous pair deleted at Salesforce now when every consumer proved it uses
    /// the new one (or there was nothing to wait for in an emergency); otherwise kept valid for
    /// `revoke_previous_after_hours`, after which `rekey run` deletes it.
    pub(super) async fn retire(&self) -> Result<String> {
        let r = self.rotation;
        let consumers = &r.consumers.consumers;
        let proven = !consumers.is_empty() && self.unadopted.is_empty();
        if !proven {
            let why = if consumers.is_empty() {
                "no consumer is configured to prove adoption"
            } else {
                "not every consumer adopted the new pair"
            };
            return Ok(format!(
                "the previous consumer secret stays valid for {}h ({why}); `rekey run` deletes it after that, `rekey retire {}` at once",
                r.revoke_previous_after.as_secs() / 3600,
                r.credential
            ));
        }
        self.delete_previous(consumer(&r.target)?).await
    }

    /// Deletes the pair this rotation replaced, if Salesforce still keeps it.
    pub(super) async fn delete_previous(
        &self,
        target: &dyn ConsumerSecretTarget,
    ) -> Result<String> {
        let old_key = self.previous_consumer_key().await?;
        match target.staged().await?.map(|(s, _)| s) {
            Some(slot)
                if Some(&slot.key) == old_key.as_ref() && slot.state != StagedState::Active =>
            {
                self.lease.confirm().await?;
                target.delete_staged(&slot.id).await?;
                Ok(format!(
                    "previous consumer key {} deleted at Salesforce: it is refused from now on",
                    slot.key
                ))
            }
            other => Ok(format!(
                "the previous consumer secret is no longer at Salesforce (the staged slot is {})",
                describe_slot(other.as_ref())
            )),
        }
    }

    /// The consumer key of the generation this rotation replaced.
    async fn previous_consumer_key(&self) -> Result<Option<String>> {
        let r = self.rotation;
        let Some(previous) = self.previous_generation else {
            return Ok(None);
        };
        for store in r.stores {
            let stages = store.stages(r.credential).await?;
            for v in [stages.current, stages.previous].into_iter().flatten() {
                if v.generation == previous {
                    return Ok(v.public.consumer().map(|c| c.key.clone()));
                }
            }
            if let Some(v) = store.read_generation(r.credential, previous).await? {
                return Ok(v.info.public.consumer().map(|c| c.key.clone()));
            }
        }
        Ok(None)
    }

    /// Emergency revoke, consumer secret: the leaked pair deleted first (it stays valid until
    /// then), proven refused while the new one is accepted, then the sessions and refresh tokens
    /// it may have minted ended.
    pub(super) async fn revoke_consumer(
        &self,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<String> {
        let r = self.rotation;
        let target = consumer(&r.target)?;
        let deleted = self.delete_previous(target).await?;
        let proven = self.verify_switched(progress).await?;
        self.lease.confirm().await?;
        let revoked = r.target.revoke_access().await?;
        tracing::info!(credential = r.credential, %deleted, %proven, "old consumer secret revoked");
        // JSON, so the evidence bundle reads the counts back from the journal.
        Ok(serde_json::to_string(&revoked).unwrap_or_default())
    }

    /// Undo, consumer secret: the pair this rotation staged deleted at Salesforce (so nothing is
    /// left orphaned there). Once it was rotated to primary nothing can be undone, which
    /// [`refuse_undo_after_rotate`] says before an abort writes anything.
    pub(super) async fn unstage(&self) -> Result<String> {
        let r = self.rotation;
        let target = consumer(&r.target)?;
        if !self.begun.contains(&Step::Generate) {
            return Ok(format!("nothing was staged at {}", r.target));
        }
        let primary = target.primary().await?.fingerprint();
        if Some(primary) == self.new_fingerprint {
            return Err(super::target::rotated_already(
                r.credential,
                &r.target.to_string(),
            ));
        }
        match target.staged().await?.map(|(s, _)| s) {
            Some(slot) if slot.state == StagedState::Active && self.staged_here(&slot).await? => {
                self.lease.confirm().await?;
                target.delete_staged(&slot.id).await?;
                Ok(format!(
                    "staged credential {} (consumer key {}) deleted at {}; the app's primary consumer secret never changed",
                    slot.id, slot.key, r.target
                ))
            }
            other => Ok(format!(
                "{} holds no staged credential of this rotation (the slot is {}); the app's primary consumer secret never changed",
                r.target,
                describe_slot(other.as_ref())
            )),
        }
    }

    /// Whether an Active staged pair is this rotation's: the key PENDING holds, or (stage request
    /// sent, never journaled) one created after the rotation began.
    async fn staged_here(&self, slot: &Staged) -> Result<bool> {
        let r = self.rotation;
        if let Some(pending) = r.primary().read_stage(r.credential, Stage::Pending).await?
            && pending.info.generation == self.generation
        {
            return Ok(pending
                .info
                .public
                .consumer()
                .is_some_and(|c| c.key == slot.key));
        }
        self.is_ours(slot).await
    }
}
