//! Retrying temporary errors (5xx, timeouts, rate limits, a sealed Vault) with exponential backoff
//! and jitter; permanent ones stop at once.

use rekey_api::{Backoff, Result};
use std::time::Duration;

/// How a rotation retries a temporary error: 5 attempts, waits from 400 ms doubling up to 8 s, with
/// jitter so that runners that failed together do not retry together.
pub(super) const RETRY: Backoff =
    Backoff::new(5, Duration::from_millis(400), Duration::from_secs(8));

/// Runs `op` until it succeeds, fails permanently, or has failed temporarily [`RETRY`]`.attempts`
/// times, waiting in between. For calls outside a step (preflight, reads before the first journal
/// entry, journal writes); steps retry as a whole (see `InFlight::step`).
pub(super) async fn retrying<T, F, Fut>(what: &str, mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if e.is_temporary() && attempt < RETRY.attempts => {
                let delay = RETRY.delay(attempt, None);
                tracing::warn!(attempt, error = %e, "{what} failed; retrying in {}ms", delay.as_millis());
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}
