//! How long to wait before trying again: exponential backoff with jitter, one definition for
//! alert deliveries, webhook consumers, token grants, rotation steps and conditional writes that
//! lost a race.

use crate::Result;
use std::future::Future;
use std::time::Duration;

/// How often and how patiently something is retried.
///
/// The wait after failed attempt `n` (1-based) is a random duration between half and all of
/// `base * 2^(n-1)`, capped at `max_delay`: the randomness spreads out retries that failed
/// together (alert channels of one run, runners racing for one lease). A `Retry-After` the other
/// side sent is waited instead, also capped at `max_delay`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Tries in total, the first included (at least 1).
    pub attempts: u32,
    /// The first wait (before jitter).
    pub base: Duration,
    /// The longest single wait, `Retry-After` included.
    pub max_delay: Duration,
}

impl Default for Backoff {
    /// 4 attempts, 200 ms first wait, at most 10 s per wait: HTTP deliveries.
    fn default() -> Self {
        Backoff::new(4, Duration::from_millis(200), Duration::from_secs(10))
    }
}

impl Backoff {
    /// Conditional writes (check-and-set, a label move) that lost their race to another writer:
    /// re-read and decide again up to 10 times, after a short random wait so that racing writers
    /// do not collide again in lockstep.
    pub const STALE_WRITE: Backoff =
        Backoff::new(10, Duration::from_millis(20), Duration::from_millis(250));

    /// A policy of `attempts` tries in total, waiting `base` (with jitter) after the first and
    /// doubling each time up to `max_delay`.
    pub const fn new(attempts: u32, base: Duration, max_delay: Duration) -> Self {
        Backoff {
            attempts,
            base,
            max_delay,
        }
    }

    /// The wait after failed attempt `attempt` (1-based); `retry_after` is what the other side
    /// asked for, if it did.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(self.max_delay);
        }
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        let full = self.base.saturating_mul(factor).min(self.max_delay);
        let half = full / 2;
        half + full.saturating_sub(half).mul_f64(rand::random::<f64>())
    }

    /// Runs `write` (a read, a decision and a conditional write) until it answers `Some` or an
    /// error, at most [`Backoff::attempts`] times, waiting [`Backoff::delay`] after each `None`
    /// (the write lost its race: another writer changed what was read). `Ok(None)` when every
    /// attempt lost; the caller words that error, since it knows what was contended.
    pub async fn retry_stale<T, F, Fut>(&self, mut write: F) -> Result<Option<T>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>>>,
    {
        let attempts = self.attempts.max(1);
        for attempt in 1..=attempts {
            if let Some(done) = write().await? {
                return Ok(Some(done));
            }
            if attempt < attempts {
                tokio::time::sleep(self.delay(attempt, None)).await;
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn the_delay_grows_with_jitter_and_stays_capped() {
        // The rotation's retry policy: 400 ms doubling up to 8 s.
        let policy = Backoff::new(5, Duration::from_millis(400), Duration::from_secs(8));
        for attempt in 1..=40 {
            let ceiling = Duration::from_millis(400)
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(Duration::from_secs(8));
            let d = policy.delay(attempt, None);
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "attempt {attempt}: {d:?} outside [{:?}, {ceiling:?}]",
                ceiling / 2
            );
        }
        let draws: BTreeSet<u128> = (0..20).map(|_| policy.delay(4, None).as_micros()).collect();
        assert!(draws.len() > 1, "jitter varies the delay");
    }

    #[test]
    fn retry_after_is_waited_but_capped() {
        let policy = Backoff::default();
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(3600))),
            policy.max_delay
        );
    }

    #[tokio::test]
    async fn retry_stale_tries_again_until_written_or_out_of_attempts() {
        let policy = Backoff::new(3, Duration::from_millis(1), Duration::from_millis(2));
        let mut tries = 0;
        let written = policy
            .retry_stale(|| {
                tries += 1;
                let won = tries == 2;
                async move { Ok(won.then_some("written")) }
            })
            .await
            .unwrap();
        assert_eq!((written, tries), (Some("written"), 2));

        let mut tries = 0;
        let lost: Option<()> = policy
            .retry_stale(|| {
                tries += 1;
                async { Ok(None) }
            })
            .await
            .unwrap();
        assert_eq!((lost, tries), (None, 3));
    }
}
