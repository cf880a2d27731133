//! Notify-specific test helpers; the recording receiver itself is `rekey_testkit::receiver`.

#![allow(dead_code, unreachable_pub, missing_docs)]

use rekey_api::Backoff;
pub use rekey_testkit::receiver::{Receiver, Reply};
use serde_json::Value;
use std::time::Duration;

/// Fast retries for tests.
pub const FAST: Backoff = Backoff {
    attempts: 4,
    base: Duration::from_millis(1),
    max_delay: Duration::from_millis(20),
};

/// Removes `object[key]`, asserting it is an RFC 3339 UTC time within a minute of now.
pub fn take_recent_time(object: &mut Value, key: &str) {
    let value = object
        .as_object_mut()
        .expect("an object")
        .remove(key)
        .unwrap_or_else(|| panic!("no {key} in {object}"));
    let text = value.as_str().expect("a string");
    assert!(text.ends_with('Z'), "{text}");
    let at = chrono::DateTime::parse_from_rfc3339(text).expect("RFC 3339");
    let skew = (chrono::Utc::now() - at.to_utc()).num_seconds().abs();
    assert!(skew < 60, "{text} is {skew} s from now");
}
