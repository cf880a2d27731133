//! The time every expiry, key age, lease and journal timestamp is judged against.
//!
//! Debug builds honour `REKEY_TEST_CLOCK_OFFSET_SECS`, so tests can move rekey (and, separately,
//! the org emulator) days or months ahead to cross an expiry threshold without waiting for it.
//! Release builds ignore it: a production clock cannot be moved by the environment.

use chrono::{DateTime, Utc};

/// Now, by rekey's clock.
pub fn now() -> DateTime<Utc> {
    Utc::now() + offset()
}

#[cfg(debug_assertions)]
fn offset() -> chrono::Duration {
    std::env::var("REKEY_TEST_CLOCK_OFFSET_SECS")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .map_or_else(chrono::Duration::zero, chrono::Duration::seconds)
}

#[cfg(not(debug_assertions))]
fn offset() -> chrono::Duration {
    chrono::Duration::zero()
}
