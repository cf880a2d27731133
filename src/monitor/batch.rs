//! How `rekey run` rotates what it decided: org by org, the due JWT-certificate credentials of one
//! org as batches of at most `[run] max_batch` whose certificates one deployment publishes
//! (Salesforce runs one deployment at a time per org), everything else one by one, `[run]
//! concurrency` at a time; and with `[run] org_order`, the orgs one after the other as canaries.
//!
//! A batch shares only the deploy: every member runs the one rotation protocol with its own
//! journal, lease and undo, and publishes through a [`DeployBatch`] that waits for every member's
//! certificate (or for the member to leave) before it deploys them together.

use crate::config::{Config, CredentialConfig};
use crate::rotation::evidence;
use crate::rotation::{Closed, Ending, Intent, Progress, Stopped};
use futures_util::StreamExt as _;
use rekey_api::{CredentialKind, Step};
use rekey_salesforce::{BatchMember, DeployBatch};
use std::sync::Mutex;
use tokio::sync::Semaphore;

/// One credential the run rotates (or retires), at `index` in config order.
pub(super) struct Job<'a> {
    pub(super) index: usize,
    pub(super) cred: &'a CredentialConfig,
    pub(super) intent: Intent,
}

type Outcome = std::result::Result<Closed, Stopped>;

/// What a run is doing as it goes, for a progress display (the report says what it did).
#[derive(Clone, Copy, Debug)]
pub enum RunEvent<'a> {
    /// `done` of `total` credentials observed, before anything is decided.
    Observed {
        /// How many so far.
        done: usize,
        /// How many in all.
        total: usize,
    },
    /// A credential's rotation begins.
    Rotating {
        /// The credential.
        credential: &'a str,
    },
    /// A credential's rotation ended.
    Rotated {
        /// The credential.
        credential: &'a str,
        /// Rotated (not rolled back or stopped).
        ok: bool,
    },
}

/// What the rotations came to.
pub(super) struct Rotations {
    /// Each job's outcome, by index.
    pub(super) results: Vec<(usize, Outcome)>,
    /// The org whose rotations did not all succeed, which stopped the canary order.
    pub(super) stopped_at: Option<String>,
    /// Orgs with due credentials left untouched because the canary order stopped, in order.
    pub(super) untouched: Vec<String>,
    /// The jobs of those orgs, by index.
    pub(super) held: Vec<usize>,
}

/// Rotates every job: each org's jobs by [`rotate_org`]; the orgs of `[run] org_order` one after
/// the other (then the orgs it does not list), stopping at the first org whose rotations did not
/// all succeed; without an order, every org at once.
pub(super) async fn rotate_all(
    config: &Config,
    jobs: Vec<Job<'_>>,
    progress: &(dyn Fn(RunEvent<'_>) + Sync),
) -> Rotations {
    let mut by_org: Vec<(String, Vec<Job<'_>>)> = Vec::new();
    for job in jobs {
        match by_org.iter_mut().find(|(org, _)| *org == job.cred.org) {
            Some((_, list)) => list.push(job),
            None => by_org.push((job.cred.org.clone(), vec![job])),
        }
    }
    let mut out = Rotations {
        results: Vec::new(),
        stopped_at: None,
        untouched: Vec::new(),
        held: Vec::new(),
    };
    if config.run.org_order.is_empty() {
        let all = futures_util::future::join_all(
            by_org
                .into_iter()
                .map(|(_, jobs)| rotate_org(config, jobs, progress)),
        )
        .await;
        out.results = all.into_iter().flatten().collect();
        return out;
    }
    // The listed orgs in their order, then the others by name.
    let rank = |org: &str| {
        config
            .run
            .org_order
            .iter()
            .position(|o| o == org)
            .unwrap_or(usize::MAX)
    };
    by_org.sort_by(|(a, _), (b, _)| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
    for (org, jobs) in by_org {
        if out.stopped_at.is_some() {
            out.held.extend(jobs.iter().map(|j| j.index));
            out.untouched.push(org);
            continue;
        }
        let results = rotate_org(config, jobs, progress).await;
        if results.iter().any(|(_, r)| !succeeded(r)) {
            tracing::warn!(org = %org, "a rotation in this org did not succeed; the canary order stops here");
            out.stopped_at = Some(org);
        }
        out.results.extend(results);
    }
    out
}

/// Rotated (or retired) and adopted by every consumer.
fn succeeded(result: &Outcome) -> bool {
    result.as_ref().is_ok_and(|c| {
        matches!(c.ending, Ending::Rotated | Ending::Retired) && c.unadopted.is_empty()
    })
}

/// One org's jobs: its due JWT-certificate rotations in batches of `[run] max_batch`, two batches
/// in flight (one deploying and verifying while the next generates; the org deploys one at a time
/// anyway), at most `[run] concurrency` rotations of the org generating and staging at once;
/// beside them, everything else (consumer secrets, retires) one by one, `[run] concurrency` at a
/// time.
async fn rotate_org(
    config: &Config,
    jobs: Vec<Job<'_>>,
    progress: &(dyn Fn(RunEvent<'_>) + Sync),
) -> Vec<(usize, Outcome)> {
    let (batched, single): (Vec<Job<'_>>, Vec<Job<'_>>) = jobs.into_iter().partition(|j| {
        j.cred.kind == CredentialKind::JwtCertificate && matches!(j.intent, Intent::Rotate)
    });
    // Fair (first come, first served): the first batch's members stage before the second's.
    let staging = Semaphore::new(config.run.concurrency);
    let staging = &staging;
    let batches = futures_util::stream::iter(batched.chunks(config.run.max_batch))
        .map(|chunk| rotate_batch(config, chunk, staging, progress))
        .buffered(batches_in_flight(config.run.concurrency))
        .collect::<Vec<_>>();
    let singles = futures_util::stream::iter(&single)
        .map(|job| async move {
            (
                job.index,
                rotate_one(config, job, None, &|_| {}, progress).await,
            )
        })
        .buffered(config.run.concurrency)
        .collect::<Vec<_>>();
    let (batches, mut results) = futures_util::future::join(batches, singles).await;
    results.extend(batches.into_iter().flatten());
    results
}

/// Batches of one org in flight at once: one deploying and verifying, the next generating; one
/// at `[run] concurrency = 1`, which (with `max_batch = 1`) rotates strictly one at a time.
fn batches_in_flight(concurrency: usize) -> usize {
    concurrency.clamp(1, 2)
}

/// One batch: every member joins the batch's deployment first, then all rotate at once, holding
/// one of the org's `staging` permits until their key is staged (generation is the costly part).
async fn rotate_batch(
    config: &Config,
    chunk: &[Job<'_>],
    staging: &Semaphore,
    progress: &(dyn Fn(RunEvent<'_>) + Sync),
) -> Vec<(usize, Outcome)> {
    let batch = DeployBatch::new();
    let members: Vec<BatchMember> = chunk.iter().map(|_| batch.join()).collect();
    futures_util::future::join_all(chunk.iter().zip(members).map(|(job, member)| async move {
        let permit = Mutex::new(staging.acquire().await.ok());
        let leaving = member.clone();
        let on_event = move |event: &Progress| {
            if !keeps_staging(event) {
                permit.lock().unwrap_or_else(|e| e.into_inner()).take();
            }
            if !before_publish(event) {
                leaving.leave();
            }
        };
        (
            job.index,
            rotate_one(config, job, Some(member), &on_event, progress).await,
        )
    }))
    .await
}

/// Still generating or staging (the part `[run] concurrency` bounds).
fn keeps_staging(event: &Progress) -> bool {
    matches!(
        event,
        Progress::StepDone {
            step: Step::Generate,
            ..
        } | Progress::Retry {
            step: Step::Generate | Step::Stage,
            ..
        }
    )
}

/// Whether the rotation may still publish its certificate in the batch's deployment: a resumed
/// rotation past publish, or one being undone, never hands one in, so the batch stops waiting for
/// it (a later install of its deploys on its own).
fn before_publish(event: &Progress) -> bool {
    let early = |step: &Step| matches!(step, Step::Generate | Step::Stage | Step::Prepare);
    match event {
        Progress::Resuming {
            last_done, undoing, ..
        } => undoing.is_none() && last_done.as_ref().is_none_or(early),
        Progress::StepDone { step, .. } | Progress::Retry { step, .. } => early(step),
        _ => false,
    }
}

/// One credential's rotation through the protocol (in `member`'s batch, if any), `on_event`
/// hearing its progress; an emergency it finished gets its evidence bundle.
async fn rotate_one(
    config: &Config,
    job: &Job<'_>,
    member: Option<BatchMember>,
    on_event: &(dyn Fn(&Progress) + Sync),
    progress: &(dyn Fn(RunEvent<'_>) + Sync),
) -> Outcome {
    let cred = job.cred;
    let mut log = |event: Progress| {
        on_event(&event);
        tracing::info!(credential = %cred.name, ?event);
    };
    progress(RunEvent::Rotating {
        credential: &cred.name,
    });
    let result =
        crate::rotation::rotate_credential_in(config, cred, &job.intent, member, &mut log).await;
    // A run continues an open emergency rekey like any young rotation; its evidence bundle goes
    // where `rekey emergency` puts it by default.
    let dir = evidence::evidence_dir(config, None);
    let mut warnings = Vec::new();
    match evidence::evidence_of(config, cred, &result, &dir, None, &mut warnings).await {
        Some(Ok(path)) => {
            tracing::warn!(credential = %cred.name, evidence = %path.display(), "this run finished an emergency rekey; its evidence bundle is written")
        }
        Some(Err(e)) => warnings.push(e.to_string()),
        None => {}
    }
    for warning in warnings {
        tracing::warn!(credential = %cred.name, "{warning}");
    }
    progress(RunEvent::Rotated {
        credential: &cred.name,
        ok: result
            .as_ref()
            .is_ok_and(|c| matches!(c.ending, Ending::Rotated | Ending::Retired)),
    });
    result
}
