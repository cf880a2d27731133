//! The rotation protocol: generate → stage → publish → verify → promote → finalize, and its undo:
//! restore → revert → close.
//!
//! Every step writes a journal entry to the credential's primary store before it acts and another
//! when it is done, and every step is idempotent for its rotation id, so a run that dies anywhere
//! is finished (`rekey resume`, or `rekey rotate` while the rotation is young) or undone
//! (`rekey abort`) by a later run with the same id, generation and (once staged) the same key.
//!
//! Only the holder of the credential's lease writes: journal entries carry the lease's fence, which
//! the store checks in the same conditional write, and the lease is confirmed against the store
//! before every other write (stores, the app), so a runner whose lease was taken over stops before
//! its next write.
//!
//! This module never prints: it reports [`Event`]s to a callback the CLI renders.

use crate::config::{OnAdoptionFailure, OnVerifyFailure};
use crate::consumers::{self, Adoption, Announcement, Consumer, CredentialConsumers};
use crate::pki::{self, CertSpec};
use chrono::{DateTime, Utc};
use rekey_api::{
    Certificate, CertificateTarget, Error, ErrorKind, Fingerprint, Generation, Installed,
    JournalEntry, KeyMaterial, Phase, Probe, Result, RotationId, RotationLock, SecretStore, Stage,
    Step, StoredKey,
};
use serde::Serialize;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Attempts per step when a provider reports a temporary error (5xx, timeout, rate limit).
const ATTEMPTS: u32 = 5;
/// First retry delay; doubled per attempt up to [`RETRY_MAX`], with jitter.
const RETRY_BASE: Duration = Duration::from_millis(400);
/// Longest retry delay.
const RETRY_MAX: Duration = Duration::from_secs(8);
/// How many consumers are told (or asked) at once.
const CONSUMERS_AT_ONCE: usize = 8;
/// First pause between two adoption polls; doubled per round up to [`ADOPT_POLL_MAX`].
const ADOPT_POLL: Duration = Duration::from_millis(250);
/// Longest pause between two adoption polls.
const ADOPT_POLL_MAX: Duration = Duration::from_secs(2);
/// Journal detail prefixes that tell an operator's abort from an automatic rollback.
const ABORTED: &str = "aborted: ";
const ROLLED_BACK: &str = "rolled back: ";

/// Everything one rotation needs.
pub struct Rotation<'a> {
    /// The credential's name.
    pub credential: &'a str,
    /// Where its keys live, primary first. The primary also holds the journal and the lease;
    /// every store receives the same generations.
    pub stores: &'a [Box<dyn SecretStore>],
    /// The app that trusts its certificate.
    pub target: &'a dyn CertificateTarget,
    /// What to generate.
    pub spec: &'a CertSpec,
    /// How long Salesforce may take to accept the new key.
    pub verify_timeout: Duration,
    /// `Intent::Rotate` continues an open rotation younger than this and refuses an older one.
    pub resume_max_age: Duration,
    /// What to do when Salesforce never accepts the published key.
    pub on_verify_failure: OnVerifyFailure,
    /// Who uses the key, and what to do when one of them does not adopt a new one.
    pub consumers: &'a CredentialConsumers,
}

impl Rotation<'_> {
    /// The store that holds the journal and the lease, and the one staged first.
    fn primary(&self) -> &dyn SecretStore {
        self.stores[0].as_ref()
    }

    /// The steps a rotation runs, in order: `undoing` one, an `emergency` one, or a plain one;
    /// without consumers, none of the consumer steps.
    fn steps(&self, emergency: Option<&Emergency>, undoing: bool) -> Vec<Step> {
        let steps = if undoing {
            Step::UNDO.to_vec()
        } else if let Some(e) = emergency {
            e.steps()
        } else {
            Step::ALL.to_vec()
        };
        let has_consumers = !self.consumers.consumers.is_empty();
        steps
            .into_iter()
            .filter(|s| has_consumers || !s.is_consumer_step())
            .collect()
    }

    /// The consumers' names, for messages: "etl, billing-api".
    fn consumer_names(&self) -> String {
        self.consumers
            .consumers
            .iter()
            .map(Consumer::name)
            .collect::<Vec<_>>()
            .join(", ")
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

/// What the operator asked for.
#[derive(Clone, Debug)]
pub enum Intent {
    /// `rekey rotate`: continue an open rotation younger than `resume_max_age`, else start one.
    Rotate,
    /// `rekey resume`: continue the open rotation, whatever its age.
    Resume,
    /// `rekey abort`: undo the open rotation.
    Abort {
        /// Why, for the journal.
        reason: String,
    },
    /// `rekey emergency`: a rotation for a leaked key (or the continuation of one).
    Emergency(Emergency),
}

/// An emergency rekey's settings, journaled with its first entry so a resumed run keeps them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Emergency {
    /// Why, for the journal and the evidence bundle.
    pub reason: String,
    /// External Client Apps: switch OAuth off before publishing, on again after.
    pub kill_switch: bool,
}

const EMERGENCY: &str = "emergency: ";
const EMERGENCY_KILL_SWITCH: &str = "emergency with kill switch: ";

impl Emergency {
    fn journal_detail(&self) -> String {
        let prefix = if self.kill_switch {
            EMERGENCY_KILL_SWITCH
        } else {
            EMERGENCY
        };
        format!("{prefix}{}", self.reason)
    }

    fn from_detail(detail: &str) -> Option<Emergency> {
        let (kill_switch, reason) = match detail.strip_prefix(EMERGENCY_KILL_SWITCH) {
            Some(reason) => (true, reason),
            None => (false, detail.strip_prefix(EMERGENCY)?),
        };
        Some(Emergency {
            reason: reason.to_string(),
            kill_switch,
        })
    }

    /// Its steps, in order.
    pub fn steps(&self) -> Vec<Step> {
        Step::EMERGENCY
            .into_iter()
            .filter(|s| self.kill_switch || !matches!(s, Step::OauthOff | Step::OauthOn))
            .collect()
    }
}

impl Intent {
    fn verb(&self) -> &'static str {
        match self {
            Intent::Rotate => "rotate",
            Intent::Resume => "resume",
            Intent::Abort { .. } => "abort",
            Intent::Emergency(_) => "emergency rekey",
        }
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
        /// Set when the rotation is being undone: why.
        undoing: Option<String>,
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
    /// Some consumers have not yet shown that they use the new key.
    AdoptionPending {
        /// Their names, each with what it last reported.
        waiting: Vec<String>,
    },
    /// A step hit a temporary error and will be tried again.
    Retry {
        /// Which step.
        step: Step,
        /// Attempt that failed, from 1.
        attempt: u32,
        /// Wait before the next attempt.
        delay_ms: u128,
        /// The error.
        reason: String,
    },
    /// A verification attempt was refused and will be retried.
    VerifyRetry {
        /// Attempt number, from 1.
        attempt: u32,
        /// Why it was refused.
        reason: String,
    },
    /// Salesforce never accepted the new key: the rotation is being rolled back.
    RollingBack {
        /// The verification failure.
        reason: String,
    },
}

/// How a rotation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// The new key is CURRENT and on the app.
    Rotated,
    /// An operator undid it: the previous key is CURRENT and on the app.
    Aborted,
    /// Salesforce never accepted the new key, so it was undone automatically.
    RolledBack,
}

/// A closed rotation.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// Its id.
    pub rotation_id: RotationId,
    /// How it ended.
    pub ending: Ending,
    /// Why it was undone, when it was.
    pub reason: Option<String>,
    /// The generation CURRENT now.
    pub generation: Option<Generation>,
    /// CURRENT's certificate, which the app holds.
    pub fingerprint: Option<Fingerprint>,
    /// That certificate's notAfter.
    pub not_after: Option<DateTime<Utc>>,
    /// The certificate the app held before the rotation, if any.
    pub old_fingerprint: Option<Fingerprint>,
    /// The certificate the rotation introduced, once generated.
    pub new_fingerprint: Option<Fingerprint>,
    /// Whether an interrupted rotation was continued.
    pub resumed: bool,
    /// Consumers that had not shown they use the new key by their deadline, or refused it
    /// (kept only with `on_adoption_failure = "alert"`, and in an emergency).
    pub unadopted: Vec<Unadopted>,
}

/// A consumer that did not adopt a rotation's key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unadopted {
    /// Its name.
    pub consumer: String,
    /// What it last said, or why it could not be told.
    pub reason: String,
}

impl std::fmt::Display for Unadopted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.consumer, self.reason)
    }
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
    /// A failure before any rotation began (preflight, lease, reading the journal).
    pub fn before_start(error: Error) -> Self {
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
    /// Steps begun (including those done).
    pub begun: BTreeSet<Step>,
    /// Steps completed.
    pub done: BTreeSet<Step>,
    /// Its newest entry's step and phase.
    pub last: (Step, Phase),
    /// Set once it is being undone: the journaled reason ("aborted: …" / "rolled back: …").
    pub undoing: Option<String>,
    /// Set when it is an emergency rekey.
    pub emergency: Option<Emergency>,
}

/// The rotation the journal leaves open (the last one, unless it was finalized or closed).
pub fn open_rotation(journal: &[JournalEntry]) -> Option<OpenRotation> {
    let last = journal.last()?;
    let entries: Vec<&JournalEntry> = journal
        .iter()
        .filter(|e| e.rotation_id == last.rotation_id)
        .collect();
    let steps = |phase: Phase| -> BTreeSet<Step> {
        entries
            .iter()
            .filter(|e| e.phase == phase)
            .map(|e| e.step)
            .collect()
    };
    let done = steps(Phase::Done);
    if done.contains(&Step::Finalize) || done.contains(&Step::Close) {
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
        begun: steps(Phase::Begin),
        done,
        last: (last.step, last.phase),
        undoing: entries
            .iter()
            .find(|e| e.step.is_undo() && e.phase == Phase::Begin)
            .and_then(|e| e.detail.clone()),
        emergency: emergency_of(&entries),
    })
}

/// The emergency settings journaled with a rotation's first step, if it is one.
fn emergency_of(entries: &[&JournalEntry]) -> Option<Emergency> {
    entries
        .iter()
        .find(|e| e.step == Step::Generate && e.phase == Phase::Begin)
        .and_then(|e| e.detail.as_deref())
        .and_then(Emergency::from_detail)
}

/// The last finalized rotation's end time, for `status` and `check`.
pub fn last_success(journal: &[JournalEntry]) -> Option<DateTime<Utc>> {
    journal
        .iter()
        .rev()
        .find(|e| e.step == Step::Finalize && e.phase == Phase::Done)
        .map(|e| e.at)
}

/// The generation a new rotation introduces: above CURRENT and above every generation the
/// journal ever handed out, so an aborted generation's retained key is never overwritten.
fn next_generation(journal: &[JournalEntry], current: Option<Generation>) -> Generation {
    journal
        .iter()
        .map(|e| e.generation)
        .chain(current)
        .max()
        .unwrap_or(Generation(0))
        .next()
}

/// Builds the plan for `credential` from its store state alone (no network): the open rotation's
/// remaining steps, else those of a new rotation (an emergency one when `emergency` is given).
pub async fn plan(rotation: &Rotation<'_>, emergency: Option<&Emergency>) -> Result<Plan> {
    let stages = rotation.primary().stages(rotation.credential).await?;
    let journal = rotation.primary().read_journal(rotation.credential).await?;
    let open = open_rotation(&journal);
    let current_generation = stages.current.as_ref().map(|v| v.generation);
    let new_generation = open.as_ref().map_or_else(
        || next_generation(&journal, current_generation),
        |o| o.generation,
    );
    let done = open.as_ref().map(|o| o.done.clone()).unwrap_or_default();
    let undoing = open.as_ref().is_some_and(|o| o.undoing.is_some());
    let emergency = match &open {
        Some(o) => o.emergency.as_ref(),
        None => emergency,
    };
    let spec = rotation.spec;
    let consumers = rotation.consumer_names();
    let longest_wait = rotation
        .consumers
        .consumers
        .iter()
        .map(Consumer::adopt_timeout)
        .max()
        .unwrap_or_default()
        .as_secs();
    let on_unadopted = match (emergency, rotation.consumers.on_adoption_failure) {
        (Some(_), _) | (None, OnAdoptionFailure::Alert) => "keep the new key and alert",
        (None, OnAdoptionFailure::Rollback) => "roll the rotation back",
    };
    let steps = rotation
        .steps(emergency, undoing)
        .into_iter()
        .filter(|s| !done.contains(s))
        .map(|step| {
            let (action, mutates) = match step {
                Step::Generate => (
                    format!(
                        "generate an {} key and a self-signed certificate for CN={} valid {} days; prove they match",
                        spec.algorithm, spec.subject.cn, spec.validity_days
                    ),
                    false,
                ),
                Step::Stage => (format!("write generation {new_generation} as PENDING in {}", rotation.store_names()), true),
                Step::Prepare => (format!("tell {consumers} that generation {new_generation} is coming (prepare); any refusal stops the rotation before the switchover"), true),
                Step::Activate => (format!("tell {consumers} to use generation {new_generation} now (activate)"), true),
                Step::Adopt => (format!("wait until every consumer ({consumers}) shows it uses generation {new_generation} (up to {longest_wait}s each); else {on_unadopted}"), false),
                Step::Recall => (format!("tell {consumers} to use the previous generation again (activate)"), true),
                Step::Publish => (
                    format!("deploy the new certificate to {} (checkOnly, then deploy; every other field kept)", rotation.target),
                    true,
                ),
                Step::Verify if emergency.is_some() => (
                    format!(
                        "mint tokens with the new key and the old one until Salesforce accepts the new AND refuses the old (up to {}s); never put the old certificate back",
                        rotation.verify_timeout.as_secs()
                    ),
                    false,
                ),
                Step::Verify => (
                    format!(
                        "mint a token signed by the new key until Salesforce accepts it (up to {}s)",
                        rotation.verify_timeout.as_secs()
                    ),
                    false,
                ),
                Step::OauthOff => (format!("switch OAuth off for {}: every token request is refused, with any key", rotation.target), true),
                Step::OauthOn => (format!("switch OAuth on again for {} (it holds the new certificate)", rotation.target), true),
                Step::Revoke => (format!("delete every live session of the integration user and revoke the grants and tokens of {}", rotation.target), true),
                Step::Destroy => (format!("destroy every generation before {new_generation} in {}", rotation.store_names()), true),
                Step::Promote => (format!("make generation {new_generation} CURRENT; the old key becomes PREVIOUS"), true),
                Step::Finalize => ("confirm the app's certificate equals CURRENT and close the journal".to_string(), true),
                Step::Restore => (format!("put the previous certificate back on {} and prove the previous key is accepted", rotation.target), true),
                Step::Revert => (format!("make the previous generation CURRENT again and clear generation {new_generation} from {}", rotation.store_names()), true),
                Step::Close => ("close the rotation as undone".to_string(), true),
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

/// Runs `intent` on `rotation.credential`: a new rotation, or the continuation or undo of the open
/// one.
pub async fn rotate(
    rotation: &Rotation<'_>,
    intent: &Intent,
    progress: &mut (dyn FnMut(Event) + Send),
) -> std::result::Result<Outcome, Failure> {
    // Preflight before anything is written: the store grants what a rotation needs, the admin
    // connection works, and the app is one rekey may rotate.
    for store in rotation.stores {
        retrying("store preflight", || store.preflight(rotation.credential))
            .await
            .map_err(Failure::before_start)?;
    }
    retrying("Salesforce preflight", || rotation.target.preflight())
        .await
        .map_err(Failure::before_start)?;
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
        .map_err(Failure::before_start)?;
    hold_point("leased").await;
    let result = run_leased(rotation, intent, lease.as_ref(), progress).await;
    // The outcome stands either way; a lease that cannot be given back expires by itself.
    if let Err(e) = lease.release().await {
        tracing::warn!(credential = rotation.credential, error = %e, "could not release the rotation lease");
    }
    result
}

async fn run_leased(
    rotation: &Rotation<'_>,
    intent: &Intent,
    lease: &dyn RotationLock,
    progress: &mut (dyn FnMut(Event) + Send),
) -> std::result::Result<Outcome, Failure> {
    let cred = rotation.credential;
    let journal = retrying("reading the journal", || {
        rotation.primary().read_journal(cred)
    })
    .await
    .map_err(Failure::before_start)?;
    let mut run = match (open_rotation(&journal), intent) {
        (None, Intent::Rotate | Intent::Emergency(_)) => {
            let stages = retrying("reading the stages", || rotation.primary().stages(cred))
                .await
                .map_err(Failure::before_start)?;
            let current = stages.current.as_ref().map(|v| v.generation);
            let old_fingerprint = retrying("reading the app", || rotation.target.installed())
                .await
                .map_err(Failure::before_start)?
                .map(|c| c.fingerprint);
            let mut run = Run::start(
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
            return Err(Failure::before_start(
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
            return Err(Failure {
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
            });
        }
        (Some(open), Intent::Abort { .. })
            if open.emergency.is_some() && open.begun.contains(&Step::Publish) =>
        {
            return Err(Failure {
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
            });
        }
        (Some(open), Intent::Rotate) if age(open.started_at) > rotation.resume_max_age => {
            return Err(Failure {
                error: too_old(rotation, &open),
                rotation_id: Some(open.rotation_id.clone()),
                step: Some(open.last.0),
                published: open.begun.contains(&Step::Publish),
            });
        }
        (Some(open), _) => {
            progress(Event::Resuming {
                rotation_id: open.rotation_id.clone(),
                last_done: open.done.iter().max().copied(),
                undoing: open.undoing.clone(),
            });
            Run::resume(rotation, lease, open)
        }
    };
    if let Intent::Abort { reason } = intent
        && run.undoing.is_none()
    {
        run.undoing = Some(format!("{ABORTED}{reason}"));
    }
    run.execute(progress).await
}

fn age(since: DateTime<Utc>) -> Duration {
    (rekey_api::now() - since).to_std().unwrap_or_default()
}

/// The refusal to continue a rotation nobody has looked at for longer than `resume_max_age`.
fn too_old(rotation: &Rotation<'_>, open: &OpenRotation) -> Error {
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
struct Run<'a, 'r> {
    rotation: &'r Rotation<'a>,
    lease: &'r dyn RotationLock,
    id: RotationId,
    generation: Generation,
    previous_generation: Option<Generation>,
    old_fingerprint: Option<Fingerprint>,
    begun: BTreeSet<Step>,
    done: BTreeSet<Step>,
    new_fingerprint: Option<Fingerprint>,
    undoing: Option<String>,
    resumed: bool,
    emergency: Option<Emergency>,
    unadopted: Vec<Unadopted>,
}

impl<'a, 'r> Run<'a, 'r> {
    fn start(
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
        Run {
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
        }
    }

    fn resume(rotation: &'r Rotation<'a>, lease: &'r dyn RotationLock, open: OpenRotation) -> Self {
        let mut done = open.done;
        // Which consumers refused `activate` lives only in the run that asked them; activating
        // again (idempotent) finds out, so adoption never counts a consumer that refused.
        if !done.contains(&Step::Adopt) {
            done.remove(&Step::Activate);
        }
        Run {
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
        }
    }

    /// Appends a journal entry under this run's lease, retrying temporary store errors.
    async fn journal(&self, step: Step, phase: Phase, detail: Option<String>) -> Result<()> {
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
        };
        retrying("journal write", || {
            self.rotation
                .primary()
                .append_journal(self.rotation.credential, &entry)
        })
        .await
    }

    fn failure(&self, step: Step, error: Error) -> Failure {
        // A deploy Salesforce refused was rolled back whole (rollbackOnError), so only a publish
        // that failed some other way may have reached the app.
        let published = self.done.contains(&Step::Publish)
            || (self.begun.contains(&Step::Publish)
                && !(step == Step::Publish && error.kind() == ErrorKind::Rejected));
        Failure {
            error,
            rotation_id: Some(self.id.clone()),
            step: Some(step),
            published,
        }
    }

    async fn execute(
        &mut self,
        progress: &mut (dyn FnMut(Event) + Send),
    ) -> std::result::Result<Outcome, Failure> {
        // The key exists only in memory until it is staged; after that it is always re-read from
        // the store, so a resumed run signs with exactly the key that was staged.
        let mut fresh: Option<(KeyMaterial, Certificate)> = None;
        if self.undoing.is_none() {
            for step in self.rotation.steps(self.emergency.as_ref(), false) {
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
                    let roll_back = policy
                        && error.kind() == ErrorKind::VerificationFailed
                        && self.emergency.is_none();
                    if !roll_back {
                        return Err(self.failure(step, error));
                    }
                    progress(Event::RollingBack {
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
    fn stop_if_asked(&self, step: Step) -> std::result::Result<(), Failure> {
        if crate::shutdown::requested() {
            let error =
                crate::shutdown::stopped(self.rotation.credential, &format!("before {step}"));
            return Err(self.failure(step, error));
        }
        Ok(())
    }

    /// One step: journal Begin, act (retrying temporary errors), journal Done.
    async fn step(
        &mut self,
        step: Step,
        fresh: &mut Option<(KeyMaterial, Certificate)>,
        progress: &mut (dyn FnMut(Event) + Send),
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
                Err(e) if e.is_temporary() && attempt < ATTEMPTS => {
                    let delay = backoff(attempt);
                    progress(Event::Retry {
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
        progress(Event::StepDone {
            step,
            millis: started.elapsed().as_millis(),
            detail,
        });
        Ok(())
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
                let (key, cert) = pki::generate(r.spec, rekey_api::now())?;
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
            Step::Stage => self.stage(fresh).await,
            Step::Prepare => self.prepare().await,
            Step::Activate => self.activate().await,
            Step::Adopt => self.adopt(progress).await,
            Step::Recall => self.recall().await,
            Step::Publish => {
                let pending = self.pending().await?;
                self.lease.confirm().await?;
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
            Step::Verify if self.emergency.is_some() => self.verify_switched(progress).await,
            Step::Verify => {
                let pending = self.pending().await?;
                verify(r, self.lease, &pending.key, "the new key", progress).await
            }
            Step::OauthOff | Step::OauthOn => {
                let on = step == Step::OauthOn;
                self.lease.confirm().await?;
                r.target.set_oauth_enabled(on, &self.id).await?;
                Ok(if on {
                    format!("OAuth on again for {}", r.target)
                } else {
                    format!("OAuth off for {}: every token request is refused", r.target)
                })
            }
            Step::Revoke => {
                self.lease.confirm().await?;
                let revoked = r.target.revoke_access().await?;
                // JSON, so the evidence bundle reads the counts back from the journal.
                Ok(serde_json::to_string(&revoked).unwrap_or_default())
            }
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
            Step::Restore => self.restore(progress).await,
            Step::Revert => self.revert().await,
            Step::Close => Ok(self.undoing.clone().unwrap_or_default()),
        }
    }

    /// Emergency verification: the new key accepted AND the old key refused in the same attempt,
    /// polled through the propagation window. Until both hold, the leaked key may still mint.
    async fn verify_switched(&self, progress: &mut (dyn FnMut(Event) + Send)) -> Result<String> {
        let r = self.rotation;
        let new = self.pending().await?;
        let old = match self.previous_generation {
            Some(_) => Some(self.previous_key().await?),
            None => None,
        };
        let started = Instant::now();
        for attempt in 1u32.. {
            self.lease.confirm().await?;
            // Temporary errors are waited out like a refusal that may clear; others stop.
            let answer = |result: Result<Probe>| match result {
                Err(e) if !e.is_temporary() => Err(e),
                other => Ok(other.map_err(|e| e.to_string())),
            };
            let new_answer = answer(r.target.probe(&new.key).await)?;
            let refused_old = match &old {
                None => Some("rekey holds no earlier key to probe".to_string()),
                Some(old) => match answer(r.target.probe(&old.key).await)? {
                    Ok(Probe::Rejected {
                        error, description, ..
                    }) => Some(format!("the old key is refused ({error}: {description})")),
                    _ => None,
                },
            };
            let reason = match (&new_answer, refused_old) {
                (Ok(Probe::Accepted { instance_url }), Some(refused)) => {
                    return Ok(format!(
                        "Salesforce accepted the new key for {instance_url} and {refused} (attempt {attempt})"
                    ));
                }
                (
                    Ok(Probe::Rejected {
                        error,
                        description,
                        may_clear: false,
                    }),
                    _,
                ) => {
                    return Err(Error::new(
                        ErrorKind::VerificationFailed,
                        format!("{} refused a token signed by the new key: {error}: {description}", r.target),
                    )
                    .with_hint("waiting will not fix this; correct the app or user setup, then `rekey resume`"));
                }
                (Ok(Probe::Accepted { .. }), None) => {
                    "the new key is accepted but the old one still is too (propagating)".to_string()
                }
                (
                    Ok(Probe::Rejected {
                        error, description, ..
                    }),
                    _,
                ) => {
                    format!("the new key is refused for now ({error}: {description})")
                }
                (Err(e), _) => e.clone(),
            };
            before_next_attempt(r, started, attempt, reason, "the emergency rekey", progress, |last| {
                Error::new(
                    ErrorKind::VerificationFailed,
                    format!(
                        "{} did not accept the new key and refuse the old one within {}s ({attempt} attempts; last: {last})",
                        r.target,
                        r.verify_timeout.as_secs()
                    ),
                )
                .with_hint("`rekey resume` keeps verifying; an emergency rekey is never rolled back, because that would trust the leaked key again")
            })
            .await?;
        }
        unreachable!("the attempt counter is unbounded")
    }

    /// Emergency: every generation before this one destroyed in every store (CURRENT is this
    /// one by now, so only the leaked and older keys go).
    async fn destroy_older(&self) -> Result<String> {
        let r = self.rotation;
        for store in r.stores {
            for g in 1..self.generation.0 {
                self.lease.confirm().await?;
                store.destroy(r.credential, Generation(g)).await?;
            }
        }
        Ok(format!(
            "generations 1 to {} destroyed in {}",
            self.generation.0 - 1,
            r.store_names()
        ))
    }

    /// This rotation's generation as a store holds it (PENDING before promotion, CURRENT after),
    /// checked against the journal's fingerprint.
    async fn new_key(&self) -> Result<StoredKey> {
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
        if Some(stored.info.certificate.fingerprint) != self.new_fingerprint {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{primary}: generation {} holds certificate {}, not the one rotation {} staged",
                    self.generation, stored.info.certificate.fingerprint, self.id
                ),
            )
            .with_hint(
                "another process changed the store; inspect `rekey journal` before going further",
            ));
        }
        Ok(stored)
    }

    /// What consumers are told about `key` in `stage`: `old` is the certificate it replaces.
    fn announcement<'k>(
        &self,
        key: &'k StoredKey,
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
            new_fingerprint: key.info.certificate.fingerprint,
            old_fingerprint: old,
            stage,
            key: Some(&key.key),
            certificate_pem: key.info.certificate.pem(),
            read_from: format!("{} {} {stage}", r.primary(), r.credential),
        }
    }

    /// Every consumer told through `op` ([`CONSUMERS_AT_ONCE`] at a time) under a confirmed
    /// lease: `name: detail` of those that accepted, and `(name, error)` of those that refused.
    async fn tell_everyone<'c, F, Fut>(
        &'c self,
        op: F,
    ) -> Result<(Vec<String>, Vec<(String, Error)>)>
    where
        F: FnMut(&'c Consumer) -> Fut,
        Fut: std::future::Future<Output = Result<String>>,
    {
        self.lease.confirm().await?;
        let mut told = Vec::new();
        let mut refused = Vec::new();
        let consumers = &self.rotation.consumers.consumers;
        for (consumer, result) in consumers::for_all(consumers, CONSUMERS_AT_ONCE, op).await {
            match result {
                Ok(detail) => told.push(format!("{}: {detail}", consumer.name())),
                Err(e) => refused.push((consumer.name().to_string(), e)),
            }
        }
        Ok((told, refused))
    }

    /// Before the switchover, every consumer hears of the new generation; one that refuses stops
    /// the rotation while nothing has changed for anyone.
    async fn prepare(&self) -> Result<String> {
        let key = self.new_key().await?;
        let announcement = self.announcement(&key, Stage::Pending, self.old_fingerprint);
        let (told, refused) = self.tell_everyone(|c| c.prepare(&announcement)).await?;
        if refused.is_empty() {
            return Ok(told.join("; "));
        }
        Err(refusal(
            &refused,
            |count| {
                format!(
                    "{}: {count} refused prepare before the switchover",
                    self.rotation.credential
                )
            },
            format!(
                "nothing was published; fix the consumer, then `rekey resume {0}` (or `rekey abort {0}`)",
                self.rotation.credential
            ),
        ))
    }

    /// Right after promotion, every consumer is told to use the new generation. A refusal is a
    /// consumer that will not adopt it: under `rollback` that undoes the rotation, otherwise it
    /// is kept as unadopted and the others go on.
    async fn activate(&mut self) -> Result<String> {
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
    async fn adopt(&mut self, progress: &mut (dyn FnMut(Event) + Send)) -> Result<String> {
        let key = self.new_key().await?;
        let announcement = self.announcement(&key, Stage::Current, self.old_fingerprint);
        let refused: BTreeSet<String> = self.unadopted.iter().map(|u| u.consumer.clone()).collect();
        let mut waiting: Vec<&Consumer> = self
            .rotation
            .consumers
            .consumers
            .iter()
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
                progress(Event::AdoptionPending { waiting: last });
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
    fn unadoptable(
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
    async fn recall(&self) -> Result<String> {
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
        if refused.is_empty() {
            return Ok(told.join("; "));
        }
        Err(refusal(
            &refused,
            |count| {
                format!(
                    "{}: generation {} is CURRENT again, but {count} refused it",
                    r.credential, previous.info.generation
                )
            },
            format!(
                "the app and the stores are back on the previous key; fix the consumer, then `rekey resume {}` tells it again",
                r.credential
            ),
        ))
    }

    async fn stage(&mut self, fresh: &mut Option<(KeyMaterial, Certificate)>) -> Result<String> {
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
                self.new_fingerprint = Some(staged.certificate.fingerprint);
                adopted = true;
            } else {
                // Resumed after Generate but before anything was written: the key never left
                // memory, so nothing refers to it and a new one is as good.
                let pair = pki::generate(r.spec, rekey_api::now())?;
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

    async fn finalize(&self) -> Result<String> {
        let r = self.rotation;
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
                    "find out who changed it; put CURRENT's certificate back on the app (runbooks/rollback.md), then run `rekey resume` to finalize",
                ));
            }
        }
        Ok(format!(
            "app certificate equals CURRENT {} in {}",
            installed.map_or_else(String::new, |f| f.to_hex()),
            r.store_names()
        ))
    }

    /// Undo, app side: the previous generation's certificate back on the app, its key proven.
    async fn restore(&self, progress: &mut (dyn FnMut(Event) + Send)) -> Result<String> {
        let r = self.rotation;
        if !self.begun.contains(&Step::Publish) {
            return Ok(format!(
                "the new certificate never reached {}; nothing to restore",
                r.target
            ));
        }
        let previous = self.previous_key().await?;
        let certificate = &previous.info.certificate;
        let installed = r.target.installed().await?.map(|c| c.fingerprint);
        let put_back = if installed == Some(certificate.fingerprint) {
            format!("{} still holds", r.target)
        } else {
            self.lease.confirm().await?;
            r.target.install(certificate, &self.id).await?;
            format!("redeployed to {}", r.target)
        };
        let verified = verify(r, self.lease, &previous.key, "the previous key", progress).await?;
        Ok(format!(
            "{put_back} generation {}'s certificate {}; {verified}",
            previous.info.generation, certificate.fingerprint
        ))
    }

    /// The key consumers used before this rotation, from the first store that still has it.
    async fn previous_key(&self) -> Result<StoredKey> {
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

    /// Undo, store side: the previous generation CURRENT again everywhere, this rotation's
    /// generation out of PENDING: kept (recoverable) if the app may have trusted it, destroyed if
    /// it never left rekey's stores.
    async fn revert(&self) -> Result<String> {
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

    async fn outcome(&self) -> std::result::Result<Outcome, Failure> {
        let stages = self
            .rotation
            .primary()
            .stages(self.rotation.credential)
            .await
            .map_err(|error| Failure {
                error,
                rotation_id: Some(self.id.clone()),
                step: None,
                published: self.begun.contains(&Step::Publish),
            })?;
        let current = stages.current;
        let (ending, reason) = match self.undoing.as_deref() {
            None => (Ending::Rotated, None),
            Some(why) => match why.strip_prefix(ROLLED_BACK) {
                Some(reason) => (Ending::RolledBack, Some(reason.to_string())),
                None => (
                    Ending::Aborted,
                    Some(why.strip_prefix(ABORTED).unwrap_or(why).to_string()),
                ),
            },
        };
        Ok(Outcome {
            rotation_id: self.id.clone(),
            ending,
            reason,
            generation: current.as_ref().map(|v| v.generation),
            fingerprint: current.as_ref().map(|v| v.certificate.fingerprint),
            not_after: current.as_ref().map(|v| v.certificate.not_after),
            old_fingerprint: self.old_fingerprint,
            new_fingerprint: self.new_fingerprint,
            resumed: self.resumed,
            unadopted: self.unadopted.clone(),
        })
    }

    /// The staged key of this rotation, checked against the journal's fingerprint.
    async fn pending(&self) -> Result<StoredKey> {
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

/// The error for consumers that refused: `what("N consumers")`, then each consumer and its
/// error. Temporary (so the step is retried) only if every refusal was.
fn refusal(
    refused: &[(String, Error)],
    what: impl FnOnce(String) -> String,
    hint: String,
) -> Error {
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
    Error::new(kind, format!("{}: {each}", what(count))).with_hint(hint)
}

/// Runs `op` until it succeeds, fails permanently, or has failed temporarily [`ATTEMPTS`] times,
/// waiting [`backoff`] in between. For calls outside a step (preflight, reads before the first
/// journal entry, journal writes); steps retry as a whole (see `Run::step`).
async fn retrying<T, F, Fut>(what: &str, mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if e.is_temporary() && attempt < ATTEMPTS => {
                let delay = backoff(attempt);
                tracing::warn!(attempt, error = %e, "{what} failed; retrying in {}ms", delay.as_millis());
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Exponential backoff with jitter: a random delay in [d/2, d] for d = base·2^(attempt−1), capped,
/// so runners that failed together do not retry together.
fn backoff(attempt: u32) -> Duration {
    let ceiling = RETRY_BASE
        .saturating_mul(1 << (attempt - 1).min(16))
        .min(RETRY_MAX);
    ceiling / 2 + ceiling.mul_f64(rand::random::<f64>() / 2.0)
}

/// Asks Salesforce for a token signed by `key` until it is accepted, a refusal that waiting cannot
/// fix arrives, or the deadline passes. Certificate changes take minutes to propagate, so
/// `invalid assertion` and temporary errors are retried with backoff; the lease is confirmed
/// (and so extended) on every attempt.
async fn verify(
    r: &Rotation<'_>,
    lease: &dyn RotationLock,
    key: &KeyMaterial,
    which: &str,
    progress: &mut (dyn FnMut(Event) + Send),
) -> Result<String> {
    let started = Instant::now();
    for attempt in 1u32.. {
        lease.confirm().await?;
        let reason = match r.target.probe(key).await {
            Ok(Probe::Accepted { instance_url }) => {
                return Ok(format!(
                    "Salesforce accepted {which} for {instance_url} (attempt {attempt})"
                ));
            }
            Ok(Probe::Rejected {
                error,
                description,
                may_clear: false,
            }) => {
                return Err(Error::new(
                    ErrorKind::VerificationFailed,
                    format!("{} refused a token signed by {which}: {error}: {description}", r.target),
                )
                .with_hint("waiting will not fix this; correct the app or user setup, then run `rekey resume` (or `rekey abort`)"));
            }
            Ok(Probe::Rejected {
                error,
                description,
                may_clear: true,
            }) => format!("{error}: {description}"),
            Err(e) if e.is_temporary() => e.to_string(),
            Err(e) => return Err(e),
        };
        before_next_attempt(r, started, attempt, reason, which, progress, |last| {
            Error::new(
                ErrorKind::VerificationFailed,
                format!(
                    "{} did not accept {which} within {}s ({attempt} attempts; last answer: {last})",
                    r.target,
                    r.verify_timeout.as_secs()
                ),
            )
            .with_hint("`rekey resume` keeps verifying (raise verify_timeout_secs if propagation is slow); `rekey abort` undoes the rotation")
        })
        .await?;
    }
    unreachable!("the attempt counter is unbounded")
}

/// Between two verification attempts: gives up with `timed_out(last refusal)` when the next
/// attempt would come after `verify_timeout`; else reports the refusal and waits the backoff.
async fn before_next_attempt(
    r: &Rotation<'_>,
    started: Instant,
    attempt: u32,
    reason: String,
    what: &str,
    progress: &mut (dyn FnMut(Event) + Send),
    timed_out: impl FnOnce(&str) -> Error,
) -> Result<()> {
    let delay = backoff(attempt).max(Duration::from_millis(250));
    if started.elapsed() + delay > r.verify_timeout {
        return Err(timed_out(&reason));
    }
    progress(Event::VerifyRetry { attempt, reason });
    tokio::select! {
        () = tokio::time::sleep(delay) => Ok(()),
        // Verifying changes nothing, so it can stop mid-wait; its begin is journaled.
        () = crate::shutdown::wait() => Err(crate::shutdown::stopped(r.credential, &format!("while verifying {what}"))),
    }
}

/// Test-only pause at a named point of a rotation (`generate:begin`, `publish:acted`,
/// `promote:done`, `leased`, …): when `REKEY_TEST_HOLD_AT` lists the point, the process creates
/// the file `REKEY_TEST_HOLD_FILE` and waits until it is removed. The fault-matrix tests kill the
/// process with SIGKILL while it waits, or break a store and let it go on. Compiled out of
/// release builds.
#[cfg(debug_assertions)]
async fn hold_point(point: &str) {
    let listed = std::env::var("REKEY_TEST_HOLD_AT")
        .is_ok_and(|points| points.split(',').any(|p| p.trim() == point));
    let Some(file) = std::env::var_os("REKEY_TEST_HOLD_FILE").filter(|_| listed) else {
        return;
    };
    let file = std::path::PathBuf::from(file);
    if let Err(e) = std::fs::write(&file, point) {
        tracing::warn!(point, error = %e, "cannot write the test hold file");
        return;
    }
    while file.exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(not(debug_assertions))]
async fn hold_point(_point: &str) {}

/// This machine's name, for lease holders and evidence.
pub fn hostname() -> String {
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
            detail: step.is_undo().then(|| format!("{ABORTED}test")),
            fence: Some(1),
        }
    }

    fn completed(id: &str, steps: &[Step]) -> Vec<JournalEntry> {
        steps
            .iter()
            .flat_map(|&s| [entry(id, s, Phase::Begin), entry(id, s, Phase::Done)])
            .collect()
    }

    #[test]
    fn a_finalized_rotation_leaves_nothing_open() {
        let journal = completed("r1", &Step::ALL);
        assert_eq!(open_rotation(&journal), None);
        assert_eq!(last_success(&journal), Some(journal[0].at));
        assert_eq!(open_rotation(&[]), None);
    }

    #[test]
    fn an_interrupted_rotation_is_open_with_the_steps_it_completed() {
        let mut journal = completed("r1", &Step::ALL);
        journal.extend(completed("r2", &[Step::Generate, Step::Stage]));
        journal.extend([
            entry("r2", Step::Publish, Phase::Begin),
            entry("r2", Step::Publish, Phase::Failed),
        ]);
        let open = open_rotation(&journal).unwrap();
        assert_eq!(open.rotation_id, RotationId("r2".into()));
        assert_eq!(open.done, BTreeSet::from([Step::Generate, Step::Stage]));
        assert_eq!(
            open.begun,
            BTreeSet::from([Step::Generate, Step::Stage, Step::Publish])
        );
        assert_eq!(open.last, (Step::Publish, Phase::Failed));
        assert_eq!(open.generation, Generation(2));
        assert_eq!(open.previous_generation, Some(Generation(1)));
        assert_eq!(open.new_fingerprint, Some(Fingerprint::of(b"r2")));
        assert_eq!(open.old_fingerprint, Some(Fingerprint::of(b"old")));
        assert_eq!(open.undoing, None);
    }

    #[test]
    fn an_undo_in_progress_is_open_until_closed() {
        let mut journal = completed("r1", &[Step::Generate, Step::Stage, Step::Publish]);
        journal.extend(completed("r1", &[Step::Restore]));
        let open = open_rotation(&journal).unwrap();
        assert_eq!(open.undoing.as_deref(), Some("aborted: test"));
        journal.extend(completed("r1", &[Step::Revert, Step::Close]));
        assert_eq!(open_rotation(&journal), None);
        assert_eq!(
            last_success(&journal),
            None,
            "an undone rotation is no success"
        );
    }

    #[test]
    fn a_new_rotation_never_reuses_a_generation_the_journal_handed_out() {
        // r1 introduced generation 2 and was aborted: CURRENT is still 1.
        let journal = completed("r1", &[Step::Generate, Step::Restore, Step::Close]);
        assert_eq!(
            next_generation(&journal, Some(Generation(1))),
            Generation(3)
        );
        assert_eq!(next_generation(&[], None), Generation(1));
        assert_eq!(next_generation(&[], Some(Generation(7))), Generation(8));
    }

    #[test]
    fn backoff_grows_with_jitter_and_stays_capped() {
        for attempt in 1..=10 {
            let ceiling = RETRY_BASE.saturating_mul(1 << (attempt - 1)).min(RETRY_MAX);
            let d = backoff(attempt);
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "attempt {attempt}: {d:?} outside [{:?}, {ceiling:?}]",
                ceiling / 2
            );
        }
        let draws: BTreeSet<u128> = (0..20).map(|_| backoff(4).as_micros()).collect();
        assert!(draws.len() > 1, "jitter varies the delay");
    }
}
