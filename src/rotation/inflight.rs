//! One rotation in flight under the credential's lease: started or resumed from the journal, each
//! step journaled before it acts and after, temporary errors retried, a refused verification or
//! adoption turned into the undo when the policy says so, and a shutdown honoured between steps.

use super::emergency::Emergency;
use super::history::{ABORTED, OpenRotation, ROLLED_BACK, next_generation, open_rotation};
use super::hold::hold_point;
use super::outcome::{Closed, Ending, Progress, Stopped, Unadopted};
use super::retry::{RETRY, retrying};
use super::setup::{Intent, Rotation};
use super::target::{rotated_already, someone_elses};
use super::verify::verify;
use crate::config::{OnAdoptionFailure, OnVerifyFailure};
use chrono::{DateTime, Utc};
use rekey_api::{
    CredentialKind, Error, ErrorKind, Fingerprint, Generation, Installed, JournalEntry, Material,
    Phase, Public, Result, RotationId, RotationLock, Step,
};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Runs `intent` on `rotation.credential`: a new rotation, or the continuation or undo of the open
/// one.
pub async fn rotate(
    rotation: &Rotation<'_>,
    intent: &Intent,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> std::result::Result<Closed, Stopped> {
    // Preflight before anything is written: the store grants what a rotation needs, the admin
    // connection works, and the app is one rekey may rotate.
    for store in rotation.stores {
        retrying("store preflight", || store.preflight(rotation.credential))
            .await
            .map_err(Stopped::before_start)?;
    }
    retrying("Salesforce preflight", || rotation.target.preflight())
        .await
        .map_err(Stopped::before_start)?;
    let holder = format!(
        "rekey {} on {} (pid {})",
        intent.verb(),
        hostname(),
        std::process::id()
    );
    let lease = rotation
        .primary()
        .lock(rotation.credential, &holder)
        .await
        .map_err(Stopped::before_start)?;
    hold_point("leased").await;
    let result = under_lease(rotation, intent, lease.as_ref(), progress).await;
    // The outcome stands either way; a lease that cannot be given back expires by itself.
    if let Err(e) = lease.release().await {
        tracing::warn!(credential = rotation.credential, error = %e, "could not release the rotation lease");
    }
    result
}

/// This machine's name, for lease holders and evidence.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown host".into())
}

pub(super) async fn under_lease(
    rotation: &Rotation<'_>,
    intent: &Intent,
    lease: &dyn RotationLock,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> std::result::Result<Closed, Stopped> {
    let cred = rotation.credential;
    let journal = retrying("reading the journal", || {
        rotation.primary().read_journal(cred)
    })
    .await
    .map_err(Stopped::before_start)?;
    let mut run = match (open_rotation(&journal), intent) {
        (None, Intent::Retire) if rotation.target.kind() != CredentialKind::ConsumerSecret => {
            return Err(Stopped::before_start(Error::new(
                ErrorKind::Config,
                format!(
                    "{cred} rotates a certificate: the app trusts one at a time, so there is no previous one to retire"
                ),
            )));
        }
        (None, Intent::Retire) => {
            let stages = retrying("reading the stages", || rotation.primary().stages(cred))
                .await
                .map_err(Stopped::before_start)?;
            let (Some(current), Some(previous)) = (&stages.current, &stages.previous) else {
                return Err(Stopped::before_start(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "{cred}: {} holds no previous consumer secret to retire",
                        rotation.primary()
                    ),
                )));
            };
            let mut run = InFlight::start(
                rotation,
                lease,
                Some(previous.generation),
                current.generation,
                None,
            );
            run.new_fingerprint = Some(current.public.fingerprint());
            run.retire_only = true;
            run
        }
        (Some(open), Intent::Retire) => {
            return Err(Stopped::before_start(Error::new(
                ErrorKind::Conflict,
                format!("{cred}: rotation {} is open; retire the previous consumer secret after it finished", open.rotation_id),
            )
            .with_hint(format!("`rekey resume {cred}` finishes it (and retires the previous secret when every consumer adopted)"))));
        }
        (None, Intent::Rotate | Intent::Emergency(_)) => {
            let stages = retrying("reading the stages", || rotation.primary().stages(cred))
                .await
                .map_err(Stopped::before_start)?;
            let current = stages.current.as_ref().map(|v| v.generation);
            let old_fingerprint = retrying("reading the app", || rotation.target.installed())
                .await
                .map_err(Stopped::before_start)?;
            // An Active staged pair before this rotation began is someone else's: refused before
            // anything is journaled, so neither this run nor a resume or abort of it could take
            // it for the pair this rotation staged (and rotate or delete it).
            if let Ok(target) = super::target::consumer(&rotation.target)
                && let Some((slot, _)) = retrying("reading the staged slot", || target.staged())
                    .await
                    .map_err(Stopped::before_start)?
                && slot.state == rekey_api::StagedState::Active
            {
                return Err(Stopped::before_start(someone_elses(
                    cred,
                    &rotation.target.to_string(),
                    &slot,
                )));
            }
            let mut run = InFlight::start(
                rotation,
                lease,
                current,
                next_generation(&journal, current),
                old_fingerprint,
            );
            if let Intent::Emergency(e) = intent {
                run.emergency = Some(e.clone());
            }
            run
        }
        (None, _) => {
            return Err(Stopped::before_start(
                Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "{cred}: no open rotation to {} in {}",
                        intent.verb(),
                        rotation.primary()
                    ),
                )
                .with_hint(format!(
                    "`rekey journal {cred}` shows how the last rotation ended; `rekey rotate {cred}` starts a new one"
                )),
            ));
        }
        (Some(open), Intent::Emergency(_)) if open.emergency.is_none() => {
            return Err(Stopped {
                error: Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "{cred}: rotation {} is open (last journaled: {} {:?}); an emergency rekey starts only from a closed journal",
                        open.rotation_id, open.last.0, open.last.1
                    ),
                )
                .with_hint(format!(
                    "finish it with `rekey resume {cred}` (or undo it with `rekey abort {cred}`), then run the emergency rekey; runbooks/emergency-rekey.md"
                )),
                rotation_id: Some(open.rotation_id.clone()),
                step: Some(open.last.0),
                published: open.begun.contains(&Step::Publish),
                emergency: false,
            });
        }
        (Some(open), Intent::Abort { .. })
            if open.emergency.is_some() && open.begun.contains(&Step::Publish) =>
        {
            return Err(Stopped {
                error: Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "{cred}: rotation {} is an emergency rekey whose new certificate may be on the app; undoing it would put the leaked key's certificate back",
                        open.rotation_id
                    ),
                )
                .with_hint(format!("finish it: `rekey resume {cred}` (runbooks/emergency-rekey.md)")),
                rotation_id: Some(open.rotation_id.clone()),
                step: Some(open.last.0),
                published: true,
                emergency: true,
            });
        }
        (Some(open), Intent::Abort { .. })
            if rotation.target.kind() == CredentialKind::ConsumerSecret
                && open.begun.contains(&Step::Publish)
                && open.new_fingerprint.is_some()
                && retrying("reading the app", || rotation.target.installed())
                    .await
                    .map_err(Stopped::before_start)?
                    == open.new_fingerprint =>
        {
            return Err(Stopped {
                error: rotated_already(cred, &rotation.target.to_string()),
                rotation_id: Some(open.rotation_id.clone()),
                step: Some(open.last.0),
                published: true,
                emergency: open.emergency.is_some(),
            });
        }
        (Some(open), Intent::Rotate) if age(open.started_at) > rotation.resume_max_age => {
            return Err(Stopped {
                error: too_old(rotation, &open),
                rotation_id: Some(open.rotation_id.clone()),
                step: Some(open.last.0),
                published: open.begun.contains(&Step::Publish),
                emergency: open.emergency.is_some(),
            });
        }
        (Some(open), _) => {
            progress(Progress::Resuming {
                rotation_id: open.rotation_id.clone(),
                last_done: open.done.iter().max().copied(),
                undoing: open.undoing.clone(),
            });
            InFlight::resume(rotation, lease, open)
        }
    };
    if let Intent::Abort { reason } = intent
        && run.undoing.is_none()
    {
        run.undoing = Some(format!("{ABORTED}{reason}"));
    }
    run.execute(progress).await
}

pub(super) fn age(since: DateTime<Utc>) -> Duration {
    (rekey_api::now() - since).to_std().unwrap_or_default()
}

/// The refusal to continue a rotation nobody has looked at for longer than `resume_max_age`.
pub(super) fn too_old(rotation: &Rotation<'_>, open: &OpenRotation) -> Error {
    let cred = rotation.credential;
    let age = age(open.started_at);
    let (step, phase) = open.last;
    Error::new(
        ErrorKind::Conflict,
        format!(
            "{cred}: rotation {} has been open since {} ({}h{:02}m ago; last journaled: {step} {phase:?}), longer than resume_max_age_hours = {}",
            open.rotation_id,
            open.started_at.format("%Y-%m-%d %H:%M:%SZ"),
            age.as_secs() / 3600,
            age.as_secs() % 3600 / 60,
            rotation.resume_max_age.as_secs() / 3600
        ),
    )
    .with_hint(format!(
        "inspect it with `rekey journal {cred}` and `rekey status {cred}`, then finish it with `rekey resume {cred}` or undo it with `rekey abort {cred} --reason \"…\"` (runbooks/rollback.md)"
    ))
}

/// One rotation in flight.
pub(super) struct InFlight<'a, 'r> {
    pub(super) rotation: &'r Rotation<'a>,
    pub(super) lease: &'r dyn RotationLock,
    pub(super) id: RotationId,
    pub(super) generation: Generation,
    pub(super) previous_generation: Option<Generation>,
    pub(super) old_fingerprint: Option<Fingerprint>,
    pub(super) begun: BTreeSet<Step>,
    pub(super) done: BTreeSet<Step>,
    pub(super) new_fingerprint: Option<Fingerprint>,
    pub(super) undoing: Option<String>,
    pub(super) resumed: bool,
    pub(super) emergency: Option<Emergency>,
    pub(super) unadopted: Vec<Unadopted>,
    /// When the rotation's first entry was (or is about to be) journaled.
    pub(super) started_at: DateTime<Utc>,
    /// A retire of the previous consumer secret: its own two steps, nothing generated.
    pub(super) retire_only: bool,
}

impl<'a, 'r> InFlight<'a, 'r> {
    pub(super) fn start(
        rotation: &'r Rotation<'a>,
        lease: &'r dyn RotationLock,
        current: Option<Generation>,
        generation: Generation,
        old_fingerprint: Option<Fingerprint>,
    ) -> Self {
        let now = rekey_api::now();
        let id = RotationId(format!(
            "{}-{}-{:04x}",
            rotation.credential,
            now.format("%Y%m%dT%H%M%SZ"),
            rand::random::<u16>()
        ));
        InFlight {
            rotation,
            lease,
            id,
            generation,
            previous_generation: current,
            old_fingerprint,
            begun: BTreeSet::new(),
            done: BTreeSet::new(),
            new_fingerprint: None,
            undoing: None,
            resumed: false,
            emergency: None,
            unadopted: Vec::new(),
            started_at: now,
            retire_only: false,
        }
    }

    pub(super) fn resume(
        rotation: &'r Rotation<'a>,
        lease: &'r dyn RotationLock,
        open: OpenRotation,
    ) -> Self {
        let retire_only = super::history::is_retire(&open.begun);
        let done = rotation.done_on_resume(&open);
        InFlight {
            rotation,
            lease,
            id: open.rotation_id,
            generation: open.generation,
            previous_generation: open.previous_generation,
            old_fingerprint: open.old_fingerprint,
            begun: open.begun,
            done,
            new_fingerprint: open.new_fingerprint,
            undoing: open.undoing,
            resumed: true,
            emergency: open.emergency,
            unadopted: Vec::new(),
            started_at: open.started_at,
            retire_only,
        }
    }

    /// Appends a journal entry under this run's lease, retrying temporary store errors.
    pub(super) async fn journal(
        &self,
        step: Step,
        phase: Phase,
        detail: Option<String>,
    ) -> Result<()> {
        let entry = JournalEntry {
            rotation_id: self.id.clone(),
            at: rekey_api::now(),
            step,
            phase,
            generation: self.generation,
            previous_generation: self.previous_generation,
            new_fingerprint: self.new_fingerprint,
            old_fingerprint: self.old_fingerprint,
            detail,
            fence: Some(self.lease.fence()),
            // Linked by the store's append (`rekey_api::link`), which knows the entry before.
            prev: None,
            hash: None,
        };
        retrying("journal write", || {
            self.rotation
                .primary()
                .append_journal(self.rotation.credential, &entry)
        })
        .await
    }

    pub(super) fn failure(&self, step: Step, error: Error) -> Stopped {
        // A deploy Salesforce refused was rolled back whole (rollbackOnError), and a check-only
        // deploy (or a read before the deploy) changes nothing, so only a publish that failed
        // some other way may have reached the app.
        let unchanged = error.kind() == ErrorKind::Rejected || error.is_changed_nothing();
        let published = self.done.contains(&Step::Publish)
            || (self.begun.contains(&Step::Publish) && !(step == Step::Publish && unchanged));
        Stopped {
            error,
            rotation_id: Some(self.id.clone()),
            step: Some(step),
            published,
            emergency: self.emergency.is_some(),
        }
    }

    pub(super) async fn execute(
        &mut self,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> std::result::Result<Closed, Stopped> {
        // The key exists only in memory until it is staged; after that it is always re-read from
        // the store, so a resumed run signs with exactly the key that was staged.
        let mut fresh: Option<(Material, Public)> = None;
        if self.undoing.is_none() {
            for step in self
                .rotation
                .steps_of(self.emergency.as_ref(), false, self.retire_only)
            {
                if self.done.contains(&step) {
                    continue;
                }
                self.stop_if_asked(step)?;
                if let Err(error) = self.step(step, &mut fresh, progress).await {
                    // An emergency never puts the leaked key's certificate back (and consumer
                    // failures in one are kept as `unadopted`, never returned here).
                    let policy = match step {
                        Step::Verify => {
                            self.rotation.on_verify_failure == OnVerifyFailure::Rollback
                        }
                        Step::Activate | Step::Adopt => {
                            self.rotation.consumers.on_adoption_failure
                                == OnAdoptionFailure::Rollback
                        }
                        _ => false,
                    };
                    // A consumer secret rotated to primary cannot be made secondary again, and
                    // the previous pair still works, so there is nothing to roll back to.
                    let irreversible = self.rotation.target.kind()
                        == CredentialKind::ConsumerSecret
                        && self.begun.contains(&Step::Publish);
                    let roll_back = policy
                        && error.kind() == ErrorKind::VerificationFailed
                        && self.emergency.is_none()
                        && !irreversible;
                    if !roll_back {
                        return Err(self.failure(step, error));
                    }
                    progress(Progress::RollingBack {
                        reason: error.to_string(),
                    });
                    self.undoing = Some(format!("{ROLLED_BACK}{error}"));
                    break;
                }
            }
        }
        if self.undoing.is_some() {
            for step in self.rotation.steps(None, true) {
                if self.done.contains(&step) {
                    continue;
                }
                self.stop_if_asked(step)?;
                self.step(step, &mut fresh, progress)
                    .await
                    .map_err(|error| self.failure(step, error))?;
            }
        }
        self.outcome().await
    }

    /// Stops before `step` when a shutdown was asked for: between steps the journal says
    /// exactly what is done, so the next run resumes here.
    pub(super) fn stop_if_asked(&self, step: Step) -> std::result::Result<(), Stopped> {
        if crate::shutdown::requested() {
            let error =
                crate::shutdown::stopped(self.rotation.credential, &format!("before {step}"));
            return Err(self.failure(step, error));
        }
        Ok(())
    }

    /// One step: journal Begin, act (retrying temporary errors), journal Done.
    pub(super) async fn step(
        &mut self,
        step: Step,
        fresh: &mut Option<(Material, Public)>,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<()> {
        let started = Instant::now();
        let why = match (&self.emergency, step) {
            (_, step) if step.is_undo() => self.undoing.clone(),
            (Some(e), Step::Generate) => Some(e.journal_detail()),
            _ => None,
        };
        self.journal(step, Phase::Begin, why).await?;
        self.begun.insert(step);
        hold_point(&format!("{step}:begin")).await;
        let mut attempt = 1;
        let detail = loop {
            match self.act(step, fresh, progress).await {
                Ok(detail) => break detail,
                Err(e) if e.is_temporary() && attempt < RETRY.attempts => {
                    let delay = RETRY.delay(attempt, None);
                    progress(Progress::Retry {
                        step,
                        attempt,
                        delay_ms: delay.as_millis(),
                        reason: e.to_string(),
                    });
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(error) => {
                    // Best effort: the failure is recorded if the store still answers (and the
                    // lease is still ours); the error that stopped the step is what the operator
                    // needs either way.
                    let _ = self
                        .journal(step, Phase::Failed, Some(error.to_string()))
                        .await;
                    return Err(error);
                }
            }
        };
        hold_point(&format!("{step}:acted")).await;
        self.done.insert(step);
        self.journal(step, Phase::Done, Some(detail.clone()))
            .await?;
        hold_point(&format!("{step}:done")).await;
        progress(Progress::StepDone {
            step,
            millis: started.elapsed().as_millis(),
            detail,
        });
        Ok(())
    }

    pub(super) async fn act(
        &mut self,
        step: Step,
        fresh: &mut Option<(Material, Public)>,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<String> {
        let r = self.rotation;
        let consumer_secret = r.target.kind() == CredentialKind::ConsumerSecret;
        match step {
            Step::Generate if consumer_secret => self.generate_consumer(fresh).await,
            Step::Generate => self.generate_key(fresh).await,
            Step::Stage => self.stage(fresh).await,
            Step::Prepare => self.prepare().await,
            Step::Activate => self.activate().await,
            Step::Adopt => self.adopt(progress).await,
            Step::Recall => self.recall().await,
            Step::Publish => {
                let pending = self.pending().await?;
                self.lease.confirm().await?;
                let what = if consumer_secret {
                    "the new consumer secret as primary (the previous one stays valid until retired)"
                } else {
                    "the certificate"
                };
                match r.target.install(&pending.info.public, &self.id).await? {
                    Installed::AlreadyPresent => Ok(format!("{} already holds {what}", r.target)),
                    Installed::Deployed { deploy_id } if consumer_secret => {
                        Ok(format!("{} holds {what} ({deploy_id})", r.target))
                    }
                    Installed::Deployed { deploy_id } => {
                        Ok(format!("deployed to {} (deploy {deploy_id})", r.target))
                    }
                }
            }
            Step::Verify if self.emergency.is_some() && !consumer_secret => {
                self.verify_switched(progress).await
            }
            Step::Verify => {
                let pending = self.pending().await?;
                let which = if consumer_secret {
                    "the new consumer secret"
                } else {
                    "the new key"
                };
                verify(r, self.lease, &pending.material, which, progress).await
            }
            Step::OauthOff | Step::OauthOn => {
                let on = step == Step::OauthOn;
                self.lease.confirm().await?;
                r.target
                    .certificate()?
                    .set_oauth_enabled(on, &self.id)
                    .await?;
                Ok(if on {
                    format!("OAuth on again for {}", r.target)
                } else {
                    format!("OAuth off for {}: every token request is refused", r.target)
                })
            }
            Step::Revoke if consumer_secret => self.revoke_consumer(progress).await,
            Step::Revoke => {
                self.lease.confirm().await?;
                let revoked = r.target.revoke_access().await?;
                // JSON, so the evidence bundle reads the counts back from the journal.
                Ok(serde_json::to_string(&revoked).unwrap_or_default())
            }
            Step::Retire if self.retire_only => {
                self.delete_previous(super::target::consumer(&r.target)?)
                    .await
            }
            Step::Retire => self.retire().await,
            Step::Destroy => self.destroy_older().await,
            Step::Promote => {
                for store in r.stores {
                    self.lease.confirm().await?;
                    store.promote(r.credential, self.generation).await?;
                }
                Ok(format!(
                    "generation {} CURRENT in {}",
                    self.generation,
                    r.store_names()
                ))
            }
            Step::Finalize => self.finalize().await,
            Step::Restore if consumer_secret => self.unstage().await,
            Step::Restore => self.restore(progress).await,
            Step::Revert => self.revert().await,
            Step::Close => Ok(self.undoing.clone().unwrap_or_default()),
            // Governance events are journaled by whoever records them, never acted by a rotation.
            Step::RevokeGrant | Step::Suppress | Step::AlertState => Err(rekey_api::Error::new(
                rekey_api::ErrorKind::Unexpected,
                format!("{step} is a governance event, not a rotation step"),
            )),
        }
    }

    pub(super) async fn outcome(&self) -> std::result::Result<Closed, Stopped> {
        let stages = self
            .rotation
            .primary()
            .stages(self.rotation.credential)
            .await
            .map_err(|error| Stopped {
                error,
                rotation_id: Some(self.id.clone()),
                step: None,
                published: self.begun.contains(&Step::Publish),
                emergency: self.emergency.is_some(),
            })?;
        let current = stages.current;
        let (ending, reason) = match self.undoing.as_deref() {
            None if self.retire_only => (Ending::Retired, None),
            None => (Ending::Rotated, None),
            Some(why) => match why.strip_prefix(ROLLED_BACK) {
                Some(reason) => (Ending::RolledBack, Some(reason.to_string())),
                None => (
                    Ending::Aborted,
                    Some(why.strip_prefix(ABORTED).unwrap_or(why).to_string()),
                ),
            },
        };
        Ok(Closed {
            rotation_id: self.id.clone(),
            ending,
            reason,
            generation: current.as_ref().map(|v| v.generation),
            fingerprint: current.as_ref().map(|v| v.public.fingerprint()),
            not_after: current.as_ref().and_then(|v| v.public.not_after()),
            old_fingerprint: self.old_fingerprint,
            new_fingerprint: self.new_fingerprint,
            resumed: self.resumed,
            unadopted: self.unadopted.clone(),
        })
    }
}
