//! The Slack incoming-webhook body: a `text` fallback (what notifications and old clients show)
//! and Block Kit `blocks`: a `header` block (plain text, at most 150 characters) with the
//! headline, a `section` with up to ten `fields` (credential, app, org, rotation id), and for
//! alerts with details a second `section` listing them.
//!
//! Checked against Slack's docs (docs.slack.dev, "Header block": plain_text only, max 150
//! characters; Slack's incoming-webhook error changelog of 2016-05-17: 200 `ok` on success, 400
//! `invalid_payload`, 403 `action_prohibited`, 404 `channel_not_found`/`no_service`, 410
//! `channel_is_archived`, 500 `rollup_error`; 429 when rate limited).

use crate::message::Message;
use rekey_http::truncate;
use serde_json::{Value, json};

/// Slack's limit for a header block's text.
const HEADER_MAX: usize = 150;
/// Slack's limit for one section field's text is 2000 characters.
const FIELD_MAX: usize = 1900;
/// Slack's limit for a section's text is 3000 characters.
const SECTION_MAX: usize = 2900;

/// `&`, `<` and `>` are markup in Slack's `mrkdwn` and the `text` fallback (`<!channel>` pings
/// everyone), so every value is escaped before it goes in.
pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn field(label: &str, value: &str) -> Value {
    json!({
        "type": "mrkdwn",
        "text": format!("*{label}*\n{}", truncate(&escape(value), FIELD_MAX)),
    })
}

/// The JSON body for `message`.
pub(crate) fn payload(message: &Message) -> Value {
    let headline = message.headline();
    let mut fields = vec![
        field("Credential", message.credential()),
        field("App", message.app()),
        field("Org", message.org()),
    ];
    if let Message::Rotation {
        rotation_id: Some(id),
        ..
    } = message
    {
        fields.push(field("Rotation", id));
    }
    let mut blocks = vec![
        json!({
            "type": "header",
            "text": { "type": "plain_text", "text": truncate(&headline, HEADER_MAX) },
        }),
        json!({ "type": "section", "fields": fields }),
    ];
    if let Message::Alert { details, .. } = message
        && !details.is_empty()
    {
        let lines: Vec<String> = details
            .iter()
            .map(|(k, v)| format!("*{}*: {}", escape(k), escape(v)))
            .collect();
        blocks.push(json!({
            "type": "section",
            "text": { "type": "mrkdwn", "text": truncate(&lines.join("\n"), SECTION_MAX) },
        }));
    }
    json!({ "text": escape(&headline), "blocks": blocks })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Outcome;

    #[test]
    fn markup_is_escaped_and_the_header_is_cut_to_150_characters() {
        let m = Message::Rotation {
            credential: "a<b>&c".into(),
            app: "<!channel>".into(),
            org: "o".into(),
            outcome: Outcome::Succeeded,
            summary: "x".repeat(300),
            rotation_id: None,
        };
        let p = payload(&m);
        assert!(
            p["text"]
                .as_str()
                .unwrap()
                .starts_with("[ROTATED] a&lt;b&gt;&amp;c: xxx")
        );
        assert_eq!(
            p["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .chars()
                .count(),
            150
        );
        assert_eq!(
            p["blocks"][1]["fields"][1]["text"],
            "*App*\n&lt;!channel&gt;"
        );
    }
}
