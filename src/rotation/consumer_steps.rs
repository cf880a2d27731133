//! The consumer steps: `prepare` before the switchover (a refusal stops the rotation while nothing
//! changed), `activate` right after promotion, `adopt` (each consumer polled until it shows the new
//! key or its deadline passes) and, when undoing, `recall` (activate with the previous key).

use super::inflight::InFlight;
use super::outcome::{Progress, Unadopted};
use crate::config::OnAdoptionFailure;
use crate::consumers::{self, Adoption, Announcement, Consumer};
use rekey_api::{Error, ErrorKind, Fingerprint, Result, Stage, Step, StoredVersion};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// How many consumers are told (or asked) at once.
pub(super) const CONSUMERS_AT_ONCE: usize = 8;

/// First pause between two adoption polls; doubled per round up to [`ADOPT_POLL_MAX`].
pub(super) const ADOPT_POLL: Duration = Duration::from_millis(250);

/// Longest pause between two adoption polls.
pub(super) const ADOPT_POLL_MAX: Duration = Duration::from_secs(2);

impl<'a, 'r> InFlight<'a, 'r> {
    /// What consumers are told about `key` in `stage`: `old` is the certificate it replaces.
    pub(super) fn announcement<'k>(
        &self,
        key: &'k StoredVersion,
        stage: Stage,
        old: Option<Fingerprint>,
    ) -> Announcement<'k>
    where
        'r: 'k,
    {
        let r = self.rotation;
        Announcement {
            credential: r.credential,
            generation: key.info.generation,
            new_fingerprint: key.info.public.fingerprint(),
            old_fingerprint: old,
            stage,
            material: Some(&key.material),
            certificate_pem: key.info.public.certificate().map(|c| c.pem()),
            read_from: format!("{} {} {stage}", r.primary(), r.credential),
        }
    }

    /// Every consumer told through `op` ([`CONSUMERS_AT_ONCE`] at a time) under a confirmed
    /// lease: `name: detail` of those that accepted, and `(name, error)` of those that refused.
    pub(super) async fn tell_everyone<'c, F, Fut>(
        &'c self,
        op: F,
    ) -> Result<(Vec<String>, Vec<(String, Error)>)>
    where
        F: FnMut(&'c dyn Consumer) -> Fut,
        Fut: std::future::Future<Output = Result<String>>,
    {
        self.lease.confirm().await?;
        let mut told = Vec::new();
        let mut refused = Vec::new();
        let consumers = &self.rotation.consumers.consumers;
        for (consumer, result) in
            consumers::for_all(consumers.iter().map(|c| c.as_ref()), CONSUMERS_AT_ONCE, op).await
        {
            match result {
                Ok(detail) => told.push(format!("{}: {detail}", consumer.name())),
                Err(e) => refused.push((consumer.name().to_string(), e)),
            }
        }
        Ok((told, refused))
    }

    /// Before the switchover, every consumer hears of the new generation; one that refuses stops
    /// the rotation while nothing has changed for anyone.
    pub(super) async fn prepare(&self) -> Result<String> {
        let key = self.new_key().await?;
        let announcement = self.announcement(&key, Stage::Pending, self.old_fingerprint);
        let (told, refused) = self.tell_everyone(|c| c.prepare(&announcement)).await?;
        let credential = self.rotation.credential;
        all_told(
            told,
            refused,
            |count| format!("{credential}: {count} refused prepare before the switchover"),
            || {
                format!(
                    "nothing was published; fix the consumer, then `rekey resume {credential}` (or `rekey abort {credential}`)"
                )
            },
        )
    }

    /// Right after promotion, every consumer is told to use the new generation. A refusal is a
    /// consumer that will not adopt it: under `rollback` that undoes the rotation, otherwise it
    /// is kept as unadopted and the others go on.
    pub(super) async fn activate(&mut self) -> Result<String> {
        let key = self.new_key().await?;
        let announcement = self.announcement(&key, Stage::Current, self.old_fingerprint);
        let (told, refused) = self.tell_everyone(|c| c.activate(&announcement)).await?;
        let refused: Vec<Unadopted> = refused
            .into_iter()
            .map(|(consumer, e)| Unadopted {
                consumer,
                reason: format!("refused activate: {e}"),
            })
            .collect();
        self.unadoptable(refused, "activate", told)
    }

    /// Polls every consumer that accepted `activate` until it shows it uses the new generation or
    /// its `adopt_timeout` passes.
    pub(super) async fn adopt(
        &mut self,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<String> {
        let key = self.new_key().await?;
        let announcement = self.announcement(&key, Stage::Current, self.old_fingerprint);
        let refused: BTreeSet<String> = self.unadopted.iter().map(|u| u.consumer.clone()).collect();
        let mut waiting: Vec<&dyn Consumer> = self
            .rotation
            .consumers
            .consumers
            .iter()
            .map(|c| c.as_ref())
            .filter(|c| !refused.contains(c.name()))
            .collect();
        let mut adopted = Vec::new();
        let mut late = Vec::new();
        let mut reported: Vec<String> = Vec::new();
        let started = Instant::now();
        for round in 0u32.. {
            self.lease.confirm().await?;
            let answers = consumers::for_all(waiting.iter().copied(), CONSUMERS_AT_ONCE, |c| {
                c.adopted(&announcement)
            })
            .await;
            let mut still = Vec::new();
            let mut last = Vec::new();
            for (consumer, answer) in answers {
                match answer {
                    Ok(Adoption::Adopted { detail }) => {
                        adopted.push(format!("{}: {detail}", consumer.name()))
                    }
                    // A status answer rekey cannot read will not become readable by waiting.
                    Err(e) => late.push(Unadopted {
                        consumer: consumer.name().to_string(),
                        reason: e.to_string(),
                    }),
                    Ok(Adoption::Waiting { detail })
                        if started.elapsed() >= consumer.adopt_timeout() =>
                    {
                        late.push(Unadopted {
                            consumer: consumer.name().to_string(),
                            reason: format!(
                                "not adopted within {}s; last: {detail}",
                                consumer.adopt_timeout().as_secs()
                            ),
                        });
                    }
                    Ok(Adoption::Waiting { detail }) => {
                        last.push(format!("{} ({detail})", consumer.name()));
                        still.push(consumer);
                    }
                }
            }
            waiting = still;
            if waiting.is_empty() {
                break;
            }
            let names: Vec<String> = waiting.iter().map(|c| c.name().to_string()).collect();
            if names != reported {
                progress(Progress::AdoptionPending { waiting: last });
                reported = names;
            }
            // Never sleep past the earliest deadline still ahead: a consumer is judged at it.
            let until_deadline = waiting
                .iter()
                .map(|c| c.adopt_timeout().saturating_sub(started.elapsed()))
                .min()
                .unwrap_or_default();
            let pause = ADOPT_POLL
                .saturating_mul(1 << round.min(8))
                .min(ADOPT_POLL_MAX)
                .min(until_deadline);
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                // Waiting changes nothing, so it can stop mid-wait; its begin is journaled.
                () = crate::shutdown::wait() => {
                    return Err(crate::shutdown::stopped(self.rotation.credential, "while waiting for consumers to adopt the new key"));
                }
            }
        }
        self.unadoptable(late, "adopt", adopted)
    }

    /// The end of `activate` or `adopt`: `fine` are the consumers' details; `failed` those that
    /// did not take the new key. Under `rollback` (outside an emergency) they fail the step, which
    /// undoes the rotation; otherwise they are kept for the outcome and the alert.
    pub(super) fn unadoptable(
        &mut self,
        failed: Vec<Unadopted>,
        what: &str,
        fine: Vec<String>,
    ) -> Result<String> {
        if failed.is_empty() {
            return Ok(fine.join("; "));
        }
        let listed = failed
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        let rollback = self.emergency.is_none()
            && self.rotation.consumers.on_adoption_failure == OnAdoptionFailure::Rollback;
        if rollback {
            return Err(Error::new(
                ErrorKind::VerificationFailed,
                format!(
                    "{}: generation {} was not adopted by {listed}",
                    self.rotation.credential, self.generation
                ),
            )
            .with_hint("on_adoption_failure = \"rollback\": the previous key is being put back everywhere; fix the consumer, then rotate again"));
        }
        self.unadopted.extend(failed);
        let fine = if fine.is_empty() {
            String::new()
        } else {
            format!("{}; ", fine.join("; "))
        };
        Ok(format!("{fine}NOT adopted ({what}): {listed}"))
    }

    /// Undo, consumer side: every consumer told to use the previous generation again (the
    /// mirror of `activate`), once they may have heard of the new one.
    pub(super) async fn recall(&self) -> Result<String> {
        let r = self.rotation;
        if !self.begun.contains(&Step::Prepare) {
            return Ok(format!(
                "{} never heard of generation {}; nothing to recall",
                r.consumer_names(),
                self.generation
            ));
        }
        let previous = self.previous_key().await?;
        let announcement = self.announcement(&previous, Stage::Current, self.new_fingerprint);
        let (told, refused) = self.tell_everyone(|c| c.activate(&announcement)).await?;
        all_told(
            told,
            refused,
            |count| {
                format!(
                    "{}: generation {} is CURRENT again, but {count} refused it",
                    r.credential, previous.info.generation
                )
            },
            || {
                format!(
                    "the app and the stores are back on the previous key; fix the consumer, then `rekey resume {}` tells it again",
                    r.credential
                )
            },
        )
    }
}

/// What the consumers `told` said, or, when some `refused`, the error for them: `what("N
/// consumers")`, then each consumer and its error. Temporary (so the step is retried) only if every
/// refusal was.
pub(super) fn all_told(
    told: Vec<String>,
    refused: Vec<(String, Error)>,
    what: impl FnOnce(String) -> String,
    hint: impl FnOnce() -> String,
) -> Result<String> {
    if refused.is_empty() {
        return Ok(told.join("; "));
    }
    let count = match refused.len() {
        1 => "1 consumer".to_string(),
        n => format!("{n} consumers"),
    };
    let kind = if refused.iter().all(|(_, e)| e.is_temporary()) {
        ErrorKind::Unavailable
    } else {
        ErrorKind::Rejected
    };
    let each = refused
        .iter()
        .map(|(name, e)| format!("{name}: {e}"))
        .collect::<Vec<_>>()
        .join("; ");
    Err(Error::new(kind, format!("{}: {each}", what(count))).with_hint(hint()))
}
