//! Retrying temporary errors (5xx, timeouts, rate limits, a sealed Vault) with exponential backoff
//! and jitter; permanent ones stop at once.

use rekey_api::Result;
use std::time::Duration;

/// Attempts per step when a provider reports a temporary error (5xx, timeout, rate limit).
pub(super) const ATTEMPTS: u32 = 5;

/// First retry delay; doubled per attempt up to [`RETRY_MAX`], with jitter.
pub(super) const RETRY_BASE: Duration = Duration::from_millis(400);

/// Longest retry delay.
pub(super) const RETRY_MAX: Duration = Duration::from_secs(8);

/// Runs `op` until it succeeds, fails permanently, or has failed temporarily [`ATTEMPTS`] times,
/// waiting [`backoff`] in between. For calls outside a step (preflight, reads before the first
/// journal entry, journal writes); steps retry as a whole (see `InFlight::step`).
pub(super) async fn retrying<T, F, Fut>(what: &str, mut op: F) -> Result<T>
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
pub(super) fn backoff(attempt: u32) -> Duration {
    let ceiling = RETRY_BASE
        .saturating_mul(1 << (attempt - 1).min(16))
        .min(RETRY_MAX);
    ceiling / 2 + ceiling.mul_f64(rand::random::<f64>() / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    pub(super) fn backoff_grows_with_jitter_and_stays_capped() {
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
