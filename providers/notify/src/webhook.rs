//! The generic webhook's body: the [`Message`] as JSON, signed per attempt with
//! [`rekey_http::signature`] (the scheme is in [`rekey_http::signing`]).

use crate::message::Message;
use chrono::{DateTime, SecondsFormat, Utc};

/// The JSON body: the message's fields, its `type`, and `sent_at` (RFC 3339, UTC, seconds).
pub(crate) fn body(message: &Message, now: DateTime<Utc>) -> Vec<u8> {
    let mut value = serde_json::to_value(message).expect("a message always serializes");
    if let Some(object) = value.as_object_mut() {
        object.insert(
            "sent_at".into(),
            now.to_rfc3339_opts(SecondsFormat::Secs, true).into(),
        );
    }
    serde_json::to_vec(&value).expect("a JSON value always serializes")
}
