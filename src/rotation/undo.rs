//! Undoing a rotation, app and stores: the previous certificate back on the app with its key
//! proven, then the previous generation CURRENT again everywhere and this rotation's out of PENDING.
//! (The consumers' side, `recall`, is with the other consumer steps.)

use super::inflight::InFlight;
use super::outcome::Progress;
use super::verify::verify;
use rekey_api::{Error, ErrorKind, Result, Step};

impl<'a, 'r> InFlight<'a, 'r> {
    /// Undo, app side: the previous generation's certificate back on the app, its key proven.
    pub(super) async fn restore(
        &self,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<String> {
        let r = self.rotation;
        if !self.begun.contains(&Step::Publish) {
            return Ok(format!(
                "the new certificate never reached {}; nothing to restore",
                r.target
            ));
        }
        let previous = self.previous_key().await?;
        let public = &previous.info.public;
        let installed = r.target.installed().await?;
        let put_back = if installed == Some(public.fingerprint()) {
            format!("{} still holds", r.target)
        } else {
            self.lease.confirm().await?;
            r.target.install(public, &self.id).await?;
            format!("redeployed to {}", r.target)
        };
        let verified = verify(
            r,
            self.lease,
            &previous.material,
            "the previous key",
            progress,
        )
        .await?;
        Ok(format!(
            "{put_back} generation {}'s certificate {}; {verified}",
            previous.info.generation,
            public.fingerprint()
        ))
    }

    /// Undo, store side: the previous generation CURRENT again everywhere, this rotation's
    /// generation out of PENDING: kept (recoverable) if the app may have trusted it, destroyed if
    /// it never left rekey's stores.
    pub(super) async fn revert(&self) -> Result<String> {
        let r = self.rotation;
        let published = self.begun.contains(&Step::Publish);
        for store in r.stores {
            let current = store
                .stages(r.credential)
                .await?
                .current
                .map(|v| v.generation);
            if current == Some(self.generation) {
                let previous = self.previous_generation.ok_or_else(|| {
                    Error::new(
                        ErrorKind::Conflict,
                        format!(
                            "{store}: generation {} is CURRENT and there is no earlier generation to go back to",
                            self.generation
                        ),
                    )
                })?;
                self.lease.confirm().await?;
                store.revert(r.credential, previous).await?;
            }
            self.lease.confirm().await?;
            if published {
                store.discard(r.credential, self.generation).await?;
            } else {
                store.destroy(r.credential, self.generation).await?;
            }
        }
        let current = self.previous_generation.map_or_else(
            || "no generation".to_string(),
            |g| format!("generation {g}"),
        );
        let fate = if published {
            "discarded (its key kept, recoverable)"
        } else {
            "destroyed (it never reached the app)"
        };
        Ok(format!(
            "{current} CURRENT in {}; generation {} {fate}",
            r.store_names(),
            self.generation
        ))
    }
}
