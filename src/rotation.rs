//! The rotation protocol: generate → stage → publish → verify → promote → finalize.
//!
//! Each step writes a journal entry to the credential's store before it acts and another when it
//! is done, and every step is idempotent for its rotation id, so a run that dies anywhere is
//! finished by running `rekey rotate` again: it finds the open rotation in the journal and
//! continues it with the same id, generation and (once staged) the same key.
//!
//! This module never prints: it reports [`Event`]s to a callback the CLI renders.

use crate::pki::{self, CertSpec};
use chrono::{DateTime, Utc};
use rekey_api::{
    Certificate, CertificateTarget, Error, ErrorKind, Fingerprint, Generation, Installed,
    JournalEntry, KeyMaterial, Phase, Probe, Result, RotationId, SecretStore, Stage, Step,
};
use serde::Serialize;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Everything one rotation needs.
pub struct Rotation<'a> {
    /// The credential's name.
    pub credential: &'a str,
    /// Where its keys live, primary first. The primary also holds the journal and the lock;
    /// every store receives the same generations.
    pub stores: &'a [Box<dyn SecretStore>],
    /// The app that trusts its certificate.
    pub target: &'a dyn CertificateTarget,
    /// What to generate.
    pub spec: &'a CertSpec,
    /// How long Salesforce may take to accept the new key.
    pub verify_timeout: Duration,
}

impl Rotation<'_> {
    /// The store that holds the journal and the lock, and the one staged first.
    fn primary(&self) -> &dyn SecretStore {
        self.stores[0].as_ref()
    }

    /// The stores, for messages: "file(keys), vault(…)".
    fn store_names(&self) -> String {
        self.stores
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A step as data: what `rekey plan` prints and `rekey rotate` executes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlannedStep {
    /// Which step.
    pub step: Step,
    /// What it will do, in words.
    pub action: String,
    /// Whether it changes something outside rekey's memory.
    pub mutates: bool,
}

/// The plan of the next rotation of a credential.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// Credential name.
    pub credential: String,
    /// The open rotation this plan resumes, if any.
    pub resumes: Option<RotationId>,
    /// Generation that is CURRENT now.
    pub current_generation: Option<Generation>,
    /// Generation the rotation introduces.
    pub new_generation: Generation,
    /// Steps still to run, in order.
    pub steps: Vec<PlannedStep>,
}

/// Progress reported while rotating.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// An open rotation was found and is being continued.
    Resuming {
        /// Its id.
        rotation_id: RotationId,
        /// The last step it completed.
        last_done: Option<Step>,
    },
    /// A step finished.
    StepDone {
        /// Which step.
        step: Step,
        /// How long it took.
        millis: u128,
        /// What it did.
        detail: String,
    },
    /// A verification attempt was refused and will be retried.
    VerifyRetry {
        /// Attempt number, from 1.
        attempt: u32,
        /// Why it was refused.
        reason: String,
    },
}

/// A completed rotation.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// Its id.
    pub rotation_id: RotationId,
    /// The generation now CURRENT.
    pub generation: Generation,
    /// The certificate the app held before, if any.
    pub old_fingerprint: Option<Fingerprint>,
    /// The certificate the app holds now.
    pub new_fingerprint: Fingerprint,
    /// The new certificate's notAfter.
    pub not_after: DateTime<Utc>,
    /// Whether an interrupted rotation was continued.
    pub resumed: bool,
}

/// A failed rotation: the error, and where the protocol stood.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong.
    pub error: Error,
    /// The rotation, if one was started.
    pub rotation_id: Option<RotationId>,
    /// The step that failed.
    pub step: Option<Step>,
    /// Whether the new certificate may already be on the app (the switchover point passed).
    pub published: bool,
}

impl Failure {
    /// A failure before any rotation began (preflight, lock, reading the journal).
    fn before_start(error: Error) -> Self {
        Failure {
            error,
            rotation_id: None,
            step: None,
            published: false,
        }
    }
}

/// An unfinished rotation, as the journal tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenRotation {
    /// Its id.
    pub rotation_id: RotationId,
    /// When its first entry was written.
    pub started_at: DateTime<Utc>,
    /// The generation it introduces.
    pub generation: Generation,
    /// The generation CURRENT when it began.
    pub previous_generation: Option<Generation>,
    /// The new certificate's fingerprint, once generated.
    pub new_fingerprint: Option<Fingerprint>,
    /// What the app held when it began.
    pub old_fingerprint: Option<Fingerprint>,
    /// Steps completed.
    pub done: BTreeSet<Step>,
}

/// The rotation the journal leaves open (the last one, unless it was finalized).
pub fn open_rotation(journal: &[JournalEntry]) -> Option<OpenRotation> {
    let last = journal.last()?;
    let entries: Vec<&JournalEntry> = journal
        .iter()
        .filter(|e| e.rotation_id == last.rotation_id)
        .collect();
    let done: BTreeSet<Step> = entries
        .iter()
        .filter(|e| e.phase == Phase::Done)
        .map(|e| e.step)
        .collect();
    if done.contains(&Step::Finalize) {
        return None;
    }
    let newest =
        |f: fn(&JournalEntry) -> Option<Fingerprint>| entries.iter().rev().find_map(|e| f(e));
    Some(OpenRotation {
        rotation_id: last.rotation_id.clone(),
        started_at: entries[0].at,
        generation: last.generation,
        previous_generation: entries[0].previous_generation,
        new_fingerprint: newest(|e| e.new_fingerprint),
        old_fingerprint: entries.iter().find_map(|e| e.old_fingerprint),
        done,
    })
}

/// The last finalized rotation's end time, for `status` and `check`.
pub fn last_success(journal: &[JournalEntry]) -> Option<DateTime<Utc>> {
    journal
        .iter()
        .rev()
        .find(|e| e.step == Step::Finalize && e.phase == Phase::Done)
        .map(|e| e.at)
}

/// Builds the plan for `credential` from its store state alone (no network).
pub async fn plan(rotation: &Rotation<'_>) -> Result<Plan> {
    let stages = rotation.primary().stages(rotation.credential).await?;
    let journal = rotation.primary().read_journal(rotation.credential).await?;
    let open = open_rotation(&journal);
    let current_generation = stages.current.as_ref().map(|v| v.generation);
    let new_generation = open.as_ref().map_or_else(
        || current_generation.unwrap_or(Generation(0)).next(),
        |o| o.generation,
    );
    let done = open.as_ref().map(|o| o.done.clone()).unwrap_or_default();
    let spec = rotation.spec;
    let steps = Step::ALL
        .iter()
        .filter(|s| !done.contains(s))
        .map(|&step| {
            let (action, mutates) = match step {
                Step::Generate => (
                    format!(
                        "generate an {} key and a self-signed certificate for CN={} valid {} days; prove they match",
                        spec.algorithm, spec.subject.cn, spec.validity_days
                    ),
                    false,
                ),
                Step::Stage => (format!("write generation {new_generation} as PENDING in {}", rotation.store_names()), true),
                Step::Publish => (
                    format!("deploy the new certificate to {} (checkOnly, then deploy; every other field kept)", rotation.target),
                    true,
                ),
                Step::Verify => (
                    format!(
                        "mint a token signed by the new key until Salesforce accepts it (up to {}s)",
                        rotation.verify_timeout.as_secs()
                    ),
                    false,
                ),
                Step::Promote => (format!("make generation {new_generation} CURRENT; the old key becomes PREVIOUS"), true),
                Step::Finalize => ("confirm the app's certificate equals CURRENT and close the journal".to_string(), true),
            };
            PlannedStep { step, action, mutates }
        })
        .collect();
    Ok(Plan {
        credential: rotation.credential.to_string(),
        resumes: open.map(|o| o.rotation_id),
        current_generation,
        new_generation,
        steps,
    })
}

/// Runs (or resumes) a rotation of `rotation.credential`.
pub async fn rotate(
    rotation: &Rotation<'_>,
    progress: &mut (dyn FnMut(Event) + Send),
) -> std::result::Result<Outcome, Failure> {
    // Preflight before anything is written: the store grants what a rotation needs, the admin
    // connection works, and the app is one rekey may rotate.
    for store in rotation.stores {
        store
            .check(rotation.credential)
            .await
            .map_err(Failure::before_start)?;
    }
    rotation
        .target
        .check()
        .await
        .map_err(Failure::before_start)?;
    let holder = format!("rekey rotate on {}", hostname());
    let lock = rotation
        .primary()
        .lock(rotation.credential, &holder)
        .await
        .map_err(Failure::before_start)?;
    let result = rotate_locked(rotation, progress).await;
    // The outcome stands either way; a lock that cannot be given back expires by itself.
    if let Err(e) = lock.release().await {
        tracing::warn!(credential = rotation.credential, error = %e, "could not release the rotation lock");
    }
    result
}

async fn rotate_locked(
    rotation: &Rotation<'_>,
    progress: &mut (dyn FnMut(Event) + Send),
) -> std::result::Result<Outcome, Failure> {
    let journal = rotation
        .primary()
        .read_journal(rotation.credential)
        .await
        .map_err(Failure::before_start)?;
    let stages = rotation
        .primary()
        .stages(rotation.credential)
        .await
        .map_err(Failure::before_start)?;

    let mut run = match open_rotation(&journal) {
        Some(open) => {
            progress(Event::Resuming {
                rotation_id: open.rotation_id.clone(),
                last_done: open.done.iter().max().copied(),
            });
            Run::resume(rotation, open)
        }
        None => {
            let current = stages.current.as_ref().map(|v| v.generation);
            let old_fingerprint = rotation
                .target
                .installed()
                .await
                .map_err(Failure::before_start)?
                .map(|c| c.fingerprint);
            Run::start(rotation, current, old_fingerprint)
        }
    };
    run.execute(progress).await
}

/// One rotation in flight.
struct Run<'a, 'r> {
    rotation: &'r Rotation<'a>,
    id: RotationId,
    generation: Generation,
    previous_generation: Option<Generation>,
    old_fingerprint: Option<Fingerprint>,
    done: BTreeSet<Step>,
    new_fingerprint: Option<Fingerprint>,
    resumed: bool,
}

impl<'a, 'r> Run<'a, 'r> {
    fn start(
        rotation: &'r Rotation<'a>,
        current: Option<Generation>,
        old_fingerprint: Option<Fingerprint>,
    ) -> Self {
        let now = Utc::now();
        let id = RotationId(format!(
            "{}-{}-{:04x}",
            rotation.credential,
            now.format("%Y%m%dT%H%M%SZ"),
            rand::random::<u16>()
        ));
        Run {
            rotation,
            id,
            generation: current.unwrap_or(Generation(0)).next(),
            previous_generation: current,
            old_fingerprint,
            done: BTreeSet::new(),
            new_fingerprint: None,
            resumed: false,
        }
    }

    fn resume(rotation: &'r Rotation<'a>, open: OpenRotation) -> Self {
        Run {
            rotation,
            id: open.rotation_id,
            generation: open.generation,
            previous_generation: open.previous_generation,
            old_fingerprint: open.old_fingerprint,
            done: open.done,
            new_fingerprint: open.new_fingerprint,
            resumed: true,
        }
    }

    async fn journal(&self, step: Step, phase: Phase, detail: Option<String>) -> Result<()> {
        let entry = JournalEntry {
            rotation_id: self.id.clone(),
            at: Utc::now(),
            step,
            phase,
            generation: self.generation,
            previous_generation: self.previous_generation,
            new_fingerprint: self.new_fingerprint,
            old_fingerprint: self.old_fingerprint,
            detail,
        };
        self.rotation
            .primary()
            .append_journal(self.rotation.credential, &entry)
            .await
    }

    async fn execute(
        &mut self,
        progress: &mut (dyn FnMut(Event) + Send),
    ) -> std::result::Result<Outcome, Failure> {
        // The key exists only in memory until it is staged; after that it is always re-read from
        // the store, so a resumed run signs with exactly the key that was staged.
        let mut fresh: Option<(KeyMaterial, Certificate)> = None;
        for step in Step::ALL {
            if self.done.contains(&step) {
                continue;
            }
            let started = Instant::now();
            let result: Result<String> = async {
                self.journal(step, Phase::Begin, None).await?;
                let detail = self.act(step, &mut fresh, progress).await?;
                self.done.insert(step);
                self.journal(step, Phase::Done, Some(detail.clone()))
                    .await?;
                Ok(detail)
            }
            .await;
            match result {
                Ok(detail) => progress(Event::StepDone {
                    step,
                    millis: started.elapsed().as_millis(),
                    detail,
                }),
                Err(error) => {
                    // Best effort: the failure is recorded if the store still answers; the error
                    // that stopped the step is what the operator needs either way.
                    let _ = self
                        .journal(step, Phase::Failed, Some(error.to_string()))
                        .await;
                    // A deploy Salesforce refused was rolled back whole (rollbackOnError), so
                    // only a publish that failed some other way may have reached the app.
                    let published = self.done.contains(&Step::Publish)
                        || (step == Step::Publish && error.kind() != ErrorKind::Rejected);
                    return Err(Failure {
                        error,
                        rotation_id: Some(self.id.clone()),
                        step: Some(step),
                        published,
                    });
                }
            }
        }
        let stages = self
            .rotation
            .primary()
            .stages(self.rotation.credential)
            .await
            .map_err(|error| Failure {
                error,
                rotation_id: Some(self.id.clone()),
                step: None,
                published: true,
            })?;
        let current = stages
            .current
            .expect("finalize checked that CURRENT exists");
        Ok(Outcome {
            rotation_id: self.id.clone(),
            generation: current.generation,
            old_fingerprint: self.old_fingerprint,
            new_fingerprint: current.certificate.fingerprint,
            not_after: current.certificate.not_after,
            resumed: self.resumed,
        })
    }

    async fn act(
        &mut self,
        step: Step,
        fresh: &mut Option<(KeyMaterial, Certificate)>,
        progress: &mut (dyn FnMut(Event) + Send),
    ) -> Result<String> {
        let r = self.rotation;
        match step {
            Step::Generate => {
                let (key, cert) = pki::generate(r.spec, Utc::now())?;
                self.new_fingerprint = Some(cert.fingerprint);
                let detail = format!(
                    "{} certificate {} valid until {}",
                    r.spec.algorithm,
                    cert.fingerprint,
                    cert.not_after.format("%Y-%m-%d")
                );
                *fresh = Some((key, cert));
                Ok(detail)
            }
            Step::Stage => {
                let primary = r.primary();
                let mut adopted = false;
                if fresh.is_none() {
                    // Resumed: the interrupted run may have written the key and died before
                    // journaling it. A PENDING of this rotation in the primary is that key; adopt
                    // it, and stage the same key in the other stores.
                    let stages = primary.stages(r.credential).await?;
                    if let Some(staged) = stages.pending.filter(|p| {
                        p.rotation_id.as_ref() == Some(&self.id) && p.generation == self.generation
                    }) {
                        self.new_fingerprint = Some(staged.certificate.fingerprint);
                        adopted = true;
                    } else {
                        // Resumed after Generate but before anything was written: the key never
                        // left memory, so nothing refers to it and a new one is as good.
                        let pair = pki::generate(r.spec, Utc::now())?;
                        self.new_fingerprint = Some(pair.1.fingerprint);
                        *fresh = Some(pair);
                    }
                }
                let staged_key;
                let (key, cert) = match fresh.as_ref() {
                    Some((key, cert)) => (key, cert),
                    None => {
                        staged_key = self.pending().await?;
                        (&staged_key.key, &staged_key.info.certificate)
                    }
                };
                let new = rekey_api::NewVersion {
                    generation: self.generation,
                    key,
                    certificate: cert,
                    rotation_id: &self.id,
                };
                // Primary first: it is where a resumed run finds the key again.
                for store in r.stores {
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
            Step::Publish => {
                let pending = self.pending().await?;
                match r
                    .target
                    .install(&pending.info.certificate, &self.id)
                    .await?
                {
                    Installed::AlreadyPresent => {
                        Ok(format!("{} already holds the certificate", r.target))
                    }
                    Installed::Deployed { deploy_id } => {
                        Ok(format!("deployed to {} (deploy {deploy_id})", r.target))
                    }
                }
            }
            Step::Verify => {
                let pending = self.pending().await?;
                verify(r, &pending.key, progress).await
            }
            Step::Promote => {
                for store in r.stores {
                    store.promote(r.credential, self.generation).await?;
                }
                Ok(format!(
                    "generation {} CURRENT in {}",
                    self.generation,
                    r.store_names()
                ))
            }
            Step::Finalize => {
                let installed = r.target.installed().await?.map(|c| c.fingerprint);
                for store in r.stores {
                    let current = store.stages(r.credential).await?.current.ok_or_else(|| {
                        Error::new(
                            ErrorKind::Unexpected,
                            format!("{store}: no CURRENT key after promotion"),
                        )
                    })?;
                    if installed != Some(current.certificate.fingerprint) {
                        return Err(Error::new(
                            ErrorKind::Conflict,
                            format!(
                                "{} now holds certificate {}, not {store}'s CURRENT {}: the app or the store was changed during the rotation",
                                r.target,
                                installed.map_or_else(|| "none".to_string(), |f| f.to_hex()),
                                current.certificate.fingerprint
                            ),
                        )
                        .with_hint(
                            "find out who changed it; put CURRENT's certificate back on the app (runbooks/interrupted-rotation.md), then run `rekey rotate` again to finalize",
                        ));
                    }
                }
                Ok(format!(
                    "app certificate equals CURRENT {} in {}",
                    installed.map_or_else(String::new, |f| f.to_hex()),
                    r.store_names()
                ))
            }
        }
    }

    /// The staged key of this rotation, checked against the journal's fingerprint.
    async fn pending(&self) -> Result<rekey_api::StoredKey> {
        let r = self.rotation;
        let primary = r.primary();
        let stored = primary.read_key(r.credential, Stage::Pending).await?.ok_or_else(|| {
            Error::new(ErrorKind::NotFound, format!("{primary}: no PENDING key for rotation {}", self.id))
                .with_hint("the staged key is gone from the store; inspect `rekey journal` before going further")
        })?;
        if stored.info.generation != self.generation
            || Some(stored.info.certificate.fingerprint) != self.new_fingerprint
        {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{}: PENDING holds generation {} ({}), but rotation {} staged generation {}",
                    primary,
                    stored.info.generation,
                    stored.info.certificate.fingerprint,
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
}

/// Asks Salesforce for a token signed by `key` until it is accepted, a refusal that waiting cannot
/// fix arrives, or the deadline passes. Certificate changes take minutes to propagate, so
/// `invalid assertion` and temporary errors are retried with exponential backoff.
async fn verify(
    r: &Rotation<'_>,
    key: &KeyMaterial,
    progress: &mut (dyn FnMut(Event) + Send),
) -> Result<String> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(500);
    for attempt in 1u32.. {
        let reason = match r.target.probe(key).await {
            Ok(Probe::Accepted { instance_url }) => {
                return Ok(format!(
                    "Salesforce accepted the new key for {instance_url} (attempt {attempt})"
                ));
            }
            Ok(Probe::Rejected {
                error,
                description,
                may_clear: false,
            }) => {
                return Err(Error::new(
                    ErrorKind::VerificationFailed,
                    format!("{} refused a token signed by the new key: {error}: {description}", r.target),
                )
                .with_hint("waiting will not fix this; correct the app or user setup, then run `rekey rotate` again to resume"));
            }
            Ok(Probe::Rejected {
                error,
                description,
                may_clear: true,
            }) => format!("{error}: {description}"),
            Err(e) if e.is_temporary() => e.to_string(),
            Err(e) => return Err(e),
        };
        if started.elapsed() + delay > r.verify_timeout {
            return Err(Error::new(
                ErrorKind::VerificationFailed,
                format!(
                    "{} did not accept the new key within {}s ({attempt} attempts; last answer: {reason})",
                    r.target,
                    r.verify_timeout.as_secs()
                ),
            )
            .with_hint("the new certificate is on the app; run `rekey rotate` again to keep verifying, or raise verify_timeout_secs"));
        }
        progress(Event::VerifyRetry { attempt, reason });
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(15));
    }
    unreachable!("the attempt counter is unbounded")
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown host".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, step: Step, phase: Phase) -> JournalEntry {
        JournalEntry {
            rotation_id: RotationId(id.into()),
            at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            step,
            phase,
            generation: Generation(2),
            previous_generation: Some(Generation(1)),
            new_fingerprint: (step >= Step::Stage).then(|| Fingerprint::of(id.as_bytes())),
            old_fingerprint: Some(Fingerprint::of(b"old")),
            detail: None,
        }
    }

    #[test]
    fn a_finalized_rotation_leaves_nothing_open() {
        let journal: Vec<_> = Step::ALL
            .iter()
            .flat_map(|&s| [entry("r1", s, Phase::Begin), entry("r1", s, Phase::Done)])
            .collect();
        assert_eq!(open_rotation(&journal), None);
        assert_eq!(last_success(&journal), Some(journal[0].at));
        assert_eq!(open_rotation(&[]), None);
    }

    #[test]
    fn an_interrupted_rotation_is_open_with_the_steps_it_completed() {
        let mut journal: Vec<_> = Step::ALL
            .iter()
            .flat_map(|&s| [entry("r1", s, Phase::Begin), entry("r1", s, Phase::Done)])
            .collect();
        journal.extend([
            entry("r2", Step::Generate, Phase::Begin),
            entry("r2", Step::Generate, Phase::Done),
            entry("r2", Step::Stage, Phase::Begin),
            entry("r2", Step::Stage, Phase::Done),
            entry("r2", Step::Publish, Phase::Begin),
            entry("r2", Step::Publish, Phase::Failed),
        ]);
        let open = open_rotation(&journal).unwrap();
        assert_eq!(open.rotation_id, RotationId("r2".into()));
        assert_eq!(open.done, BTreeSet::from([Step::Generate, Step::Stage]));
        assert_eq!(open.generation, Generation(2));
        assert_eq!(open.previous_generation, Some(Generation(1)));
        assert_eq!(open.new_fingerprint, Some(Fingerprint::of(b"r2")));
        assert_eq!(open.old_fingerprint, Some(Fingerprint::of(b"old")));
    }
}
