//! The webhook signing scheme alert webhooks and webhook consumers share: the raw body signed
//! with HMAC-SHA256 over `"<unix seconds>.<raw body>"` (the Stripe / Slack request-signing
//! pattern), so a receiver can check both who sent it and that it is fresh.
//!
//! Each request carries two headers:
//!
//! ```text
//! X-Rekey-Timestamp: 1779523200
//! X-Rekey-Signature: sha256=<lowercase hex HMAC-SHA256(secret, "1779523200." + raw body)>
//! ```
//!
//! A receiver recomputes the MAC over the raw bytes it received (before any JSON parsing),
//! compares in constant time, and refuses a timestamp too far from its clock
//! ([`verify_signature`] does all three). The sender signs each attempt anew, so a retry after a
//! long wait is still fresh.

use aws_lc_rs::hmac;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// Header carrying the signing time in Unix seconds.
pub const TIMESTAMP_HEADER: &str = "X-Rekey-Timestamp";
/// Header carrying `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub const SIGNATURE_HEADER: &str = "X-Rekey-Signature";

fn key(secret: &[u8]) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, secret)
}

fn signed_bytes(timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(timestamp.len() + 1 + body.len());
    data.extend_from_slice(timestamp.as_bytes());
    data.push(b'.');
    data.extend_from_slice(body);
    data
}

/// The `X-Rekey-Signature` value for `body` sent at `timestamp` (Unix seconds):
/// `sha256=` and the lowercase hex HMAC-SHA256 of `"<timestamp>.<body>"` under `secret`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let tag = hmac::sign(&key(secret), &signed_bytes(&timestamp.to_string(), body));
    format!("sha256={}", hex::encode(tag.as_ref()))
}

/// The two headers of a delivery of `body` signed now with `secret`.
pub fn signed_headers(secret: &[u8], body: &[u8]) -> Vec<(&'static str, String)> {
    let timestamp = Utc::now().timestamp();
    vec![
        (TIMESTAMP_HEADER, timestamp.to_string()),
        (SIGNATURE_HEADER, signature(secret, timestamp, body)),
    ]
}

/// Checks a delivery as a receiver should: `header` (the `X-Rekey-Signature` value) must be the
/// HMAC-SHA256 of `"<timestamp>.<body>"` under `secret` (compared in constant time), and
/// `timestamp` (the `X-Rekey-Timestamp` value, Unix seconds) must be within `tolerance` of `now`
/// in either direction, so a captured request cannot be replayed later.
///
/// `body` must be the raw bytes received, before any JSON parsing.
pub fn verify_signature(
    secret: &[u8],
    timestamp: &str,
    body: &[u8],
    header: &str,
    now: DateTime<Utc>,
    tolerance: Duration,
) -> bool {
    let Ok(sent) = timestamp.trim().parse::<i64>() else {
        return false;
    };
    let age = now.timestamp().abs_diff(sent);
    if age > tolerance.as_secs() {
        return false;
    }
    let Some(hex_tag) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(tag) = hex::decode(hex_tag) else {
        return false;
    };
    hmac::verify(&key(secret), &signed_bytes(timestamp.trim(), body), &tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_hmac_sha256() {
        // The MAC covers "<timestamp>.<body>"; the primitive is checked against RFC 4231
        // test case 2 (key "Jefe", data "what do ya want for nothing?").
        let sig = signature(b"Jefe", 1, b"x");
        let expected = hmac::sign(&key(b"Jefe"), b"1.x");
        assert_eq!(sig, format!("sha256={}", hex::encode(expected.as_ref())));
        let rfc = hmac::sign(&key(b"Jefe"), b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(rfc.as_ref()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn signature_matches_the_readme_python_receiver() {
        // hmac.new(b"whsec-test", b'1700000000.{"type":"resolve"}', hashlib.sha256).hexdigest()
        assert_eq!(
            signature(b"whsec-test", 1_700_000_000, br#"{"type":"resolve"}"#),
            "sha256=300a872a463e079af4145e936a5d85607f6800113b9478e4b1eca97834c74fa3"
        );
    }

    #[test]
    fn verify_rejects_garbage_and_future_timestamps() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let tol = Duration::from_secs(300);
        let sig = signature(b"s", 1_700_000_000, b"{}");
        assert!(verify_signature(b"s", "1700000000", b"{}", &sig, now, tol));
        assert!(!verify_signature(
            b"s",
            "1700000000",
            b"{}",
            "sha256=zz",
            now,
            tol
        ));
        assert!(!verify_signature(
            b"s",
            "1700000000",
            b"{}",
            "md5=00",
            now,
            tol
        ));
        assert!(!verify_signature(b"s", "soon", b"{}", &sig, now, tol));
        let future = signature(b"s", 1_700_000_301, b"{}");
        assert!(!verify_signature(
            b"s",
            "1700000301",
            b"{}",
            &future,
            now,
            tol
        ));
        // The timestamp is inside the MAC: moving it invalidates the signature.
        assert!(!verify_signature(b"s", "1700000001", b"{}", &sig, now, tol));
    }
}
