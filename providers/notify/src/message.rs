//! What rekey tells its channels. Plain data with no field that could hold a secret.

use rekey_api::Severity;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// How a rotation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The new key is promoted and the rotation is finalized.
    Succeeded,
    /// The rotation stopped and needs an operator (`rekey resume` or `rekey abort`).
    Failed,
    /// Salesforce never accepted the new key, and the rotation undid itself.
    RolledBack,
    /// The new key is promoted, but some consumers had not adopted it by their deadline.
    Unadopted,
}

impl Outcome {
    /// `succeeded`, `failed` or `rolled_back`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::RolledBack => "rolled_back",
            Outcome::Unadopted => "unadopted",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One notification. The generic webhook receives it as JSON, tagged by `type`
/// (`alert`, `resolve`, `rotation`) with the fields below plus `sent_at`.
///
/// `summary` should not repeat the credential name: the Slack and PagerDuty channels prefix it
/// (`billing: certificate expires in 9 days`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// A problem that stays open until a [`Message::Resolve`] with the same `dedup_key`.
    Alert {
        /// Stable per problem, chosen by the caller (for example `rekey/expiry/<org>/<credential>`);
        /// PagerDuty accepts at most 255 characters.
        dedup_key: String,
        /// How bad it is.
        severity: Severity,
        /// The credential name from `rekey.toml`.
        credential: String,
        /// The Connected App or External Client App.
        app: String,
        /// The org alias from `rekey.toml`.
        org: String,
        /// One line, e.g. `certificate expires in 9 days`.
        summary: String,
        /// Extra facts (`not_after`, `fingerprint`, `days_left`, …); never key material.
        details: BTreeMap<String, String>,
    },
    /// The problem reported under `dedup_key` is gone.
    Resolve {
        /// The `dedup_key` of the alert to close.
        dedup_key: String,
        /// The credential name.
        credential: String,
        /// The app.
        app: String,
        /// The org alias.
        org: String,
        /// One line, e.g. `certificate renewed, expires 2027-05-01`.
        summary: String,
    },
    /// A rotation ended.
    Rotation {
        /// The credential name.
        credential: String,
        /// The app.
        app: String,
        /// The org alias.
        org: String,
        /// How it ended.
        outcome: Outcome,
        /// One line, e.g. `generation 4 is live` or `verify failed: invalid_grant`.
        summary: String,
        /// The rotation's id, when one was assigned.
        rotation_id: Option<String>,
    },
}

impl Message {
    /// The credential the message is about.
    pub fn credential(&self) -> &str {
        match self {
            Message::Alert { credential, .. }
            | Message::Resolve { credential, .. }
            | Message::Rotation { credential, .. } => credential,
        }
    }

    /// The app the message is about.
    pub fn app(&self) -> &str {
        match self {
            Message::Alert { app, .. }
            | Message::Resolve { app, .. }
            | Message::Rotation { app, .. } => app,
        }
    }

    /// The org alias the message is about.
    pub fn org(&self) -> &str {
        match self {
            Message::Alert { org, .. }
            | Message::Resolve { org, .. }
            | Message::Rotation { org, .. } => org,
        }
    }

    /// The one-line summary.
    pub fn summary(&self) -> &str {
        match self {
            Message::Alert { summary, .. }
            | Message::Resolve { summary, .. }
            | Message::Rotation { summary, .. } => summary,
        }
    }

    /// `[CRITICAL]`, `[RESOLVED]`, `[ROTATED]`, `[ROTATION FAILED]`, `[ROLLED BACK]`, …
    pub fn tag(&self) -> &'static str {
        match self {
            Message::Alert { severity, .. } => match severity {
                Severity::Ok | Severity::Info => "[INFO]",
                Severity::Warning => "[WARNING]",
                Severity::Critical => "[CRITICAL]",
                Severity::Unknown => "[UNKNOWN]",
            },
            Message::Resolve { .. } => "[RESOLVED]",
            Message::Rotation { outcome, .. } => match outcome {
                Outcome::Succeeded => "[ROTATED]",
                Outcome::Failed => "[ROTATION FAILED]",
                Outcome::RolledBack => "[ROLLED BACK]",
                Outcome::Unadopted => "[NOT ADOPTED]",
            },
        }
    }

    /// `<credential>: <summary>`, the title PagerDuty and Slack show.
    pub fn title(&self) -> String {
        format!("{}: {}", self.credential(), self.summary())
    }

    /// `<tag> <credential>: <summary>`, the Slack header line.
    pub fn headline(&self) -> String {
        format!("{} {}", self.tag(), self.title())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headline_names_severity_credential_and_summary() {
        let m = Message::Alert {
            dedup_key: "k".into(),
            severity: Severity::Critical,
            credential: "billing".into(),
            app: "Billing_Sync".into(),
            org: "prod".into(),
            summary: "certificate expires in 9 days".into(),
            details: BTreeMap::new(),
        };
        assert_eq!(
            m.headline(),
            "[CRITICAL] billing: certificate expires in 9 days"
        );
        let r = Message::Rotation {
            credential: "billing".into(),
            app: "a".into(),
            org: "o".into(),
            outcome: Outcome::RolledBack,
            summary: "s".into(),
            rotation_id: None,
        };
        assert_eq!(r.headline(), "[ROLLED BACK] billing: s");
    }
}
