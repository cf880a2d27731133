//! The time every expiry, key age, lease and journal timestamp is judged against.
//!
//! Debug builds honour `REKEY_TEST_CLOCK_OFFSET_SECS`, so tests can move rekey (and, separately,
//! the org emulator) days or months ahead to cross an expiry threshold without waiting for it.
//! That variable is process-wide: it is for tests that run the binary. Tests inside one process
//! run in parallel, so they move the clock of their own thread instead
//! ([`advance_on_this_thread`]). Release builds have neither: a production clock cannot be moved.

use chrono::{DateTime, Utc};

/// Now, by rekey's clock.
pub fn now() -> DateTime<Utc> {
    Utc::now() + offset()
}

#[cfg(debug_assertions)]
thread_local! {
    /// This thread's own shift, in milliseconds, on top of the environment's.
    static THREAD_OFFSET_MS: std::cell::Cell<i64> = const { std::cell::Cell::new(0) };
}

/// Tests only (debug builds): moves [`now`] ahead by `by` for the calling thread, on top of
/// `REKEY_TEST_CLOCK_OFFSET_SECS` and of earlier calls; other threads keep their clock.
///
/// Each test runs on a thread of its own, and a `#[tokio::test]` runtime is current-thread
/// unless told otherwise, so everything such a test awaits or spawns sees the moved clock and
/// tests running in parallel do not move each other's. Tasks of a multi-thread runtime would
/// not all see it: use it from current-thread runtimes.
#[cfg(debug_assertions)]
pub fn advance_on_this_thread(by: chrono::Duration) {
    THREAD_OFFSET_MS.with(|offset| offset.set(offset.get() + by.num_milliseconds()));
}

#[cfg(debug_assertions)]
fn offset() -> chrono::Duration {
    let environment = std::env::var("REKEY_TEST_CLOCK_OFFSET_SECS")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .map_or_else(chrono::Duration::zero, chrono::Duration::seconds);
    environment + chrono::Duration::milliseconds(THREAD_OFFSET_MS.with(std::cell::Cell::get))
}

#[cfg(not(debug_assertions))]
fn offset() -> chrono::Duration {
    chrono::Duration::zero()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_moves_only_its_own_clock() {
        let before = now();
        advance_on_this_thread(chrono::Duration::hours(1));
        advance_on_this_thread(chrono::Duration::minutes(1));
        let moved = now() - before;
        assert!(moved >= chrono::Duration::minutes(61), "{moved}");
        // Another thread reads the real clock: it would take this test an hour to get there.
        let other = std::thread::spawn(now).join().unwrap() - before;
        assert!(other < chrono::Duration::minutes(60), "{other}");
    }
}
