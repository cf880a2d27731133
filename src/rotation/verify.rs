//! Proving Salesforce accepts a key: token requests until it is accepted, a refusal that waiting
//! cannot fix arrives, or the deadline passes.

use super::outcome::Progress;
use super::retry::RETRY;
use super::setup::Rotation;
use rekey_api::{Error, ErrorKind, Material, Probe, Result, RotationLock};
use std::time::{Duration, Instant};

/// Asks Salesforce for a token signed by `key` until it is accepted, a refusal that waiting cannot
/// fix arrives, or the deadline passes. Certificate changes take minutes to propagate, so
/// `invalid assertion` and temporary errors are retried with backoff; the lease is confirmed
/// (and so extended) on every attempt.
pub(super) async fn verify(
    r: &Rotation<'_>,
    lease: &dyn RotationLock,
    key: &Material,
    which: &str,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<String> {
    let started = Instant::now();
    for attempt in 1u32.. {
        lease.confirm().await?;
        // Whether Salesforce answered at all: an outage is no refusal (see the deadline below).
        let mut answered = true;
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
            }) => format!("refused ({error}: {description})"),
            Err(e) if e.is_temporary() => {
                answered = false;
                format!("got no answer ({e})")
            }
            Err(e) => return Err(e),
        };
        let cred = r.credential;
        before_next_attempt(r, started, attempt, reason, which, progress, |last| {
            // An outage is retried like a propagation delay, never taken for a refusal; at the
            // deadline it is as much a failure to verify as a refusal is, so the rotation's
            // on_verify_failure policy applies: rolling back puts the certificate its consumers
            // hold back on the app, which its Metadata API may well still accept.
            let what = if answered {
                format!("did not accept {which}")
            } else {
                format!("did not answer for {which} (neither accepted nor refused)")
            };
            Error::new(
                ErrorKind::VerificationFailed,
                format!(
                    "{} {what} within {}s ({attempt} attempts; last answer: {last})",
                    r.target,
                    r.verify_timeout.as_secs()
                ),
            )
            .with_hint(format!("`rekey resume {cred}` keeps verifying (raise verify_timeout_secs if propagation is slow); `rekey abort {cred}` undoes the rotation"))
        })
        .await?;
    }
    unreachable!("the attempt counter is unbounded")
}

/// Between two verification attempts: gives up with `timed_out(last refusal)` when the next
/// attempt would come after `verify_timeout`; else reports the refusal and waits the backoff.
pub(super) async fn before_next_attempt(
    r: &Rotation<'_>,
    started: Instant,
    attempt: u32,
    reason: String,
    what: &str,
    progress: &mut (dyn FnMut(Progress) + Send),
    timed_out: impl FnOnce(&str) -> Error,
) -> Result<()> {
    let delay = RETRY.delay(attempt, None).max(Duration::from_millis(250));
    if started.elapsed() + delay > r.verify_timeout {
        return Err(timed_out(&reason));
    }
    progress(Progress::VerifyRetry { attempt, reason });
    tokio::select! {
        () = tokio::time::sleep(delay) => Ok(()),
        // Verifying changes nothing, so it can stop mid-wait; its begin is journaled.
        () = crate::shutdown::wait() => Err(crate::shutdown::stopped(r.credential, &format!("while verifying {what}"))),
    }
}
