//! What a rotation reports: its progress while it runs, and how it ended — closed (rotated,
//! aborted, rolled back) or stopped with the journal open.

use crate::exit::Exit;
use chrono::{DateTime, Utc};
use rekey_api::{Error, Fingerprint, Generation, RotationId, Step};
use serde::Serialize;

/// Progress reported while rotating.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Progress {
    /// An open rotation was found and is being continued.
    Resuming {
        /// Its id.
        rotation_id: RotationId,
        /// The last step it completed.
        last_done: Option<Step>,
        /// Set when the rotation is being undone: why.
        undoing: Option<String>,
    },
    /// A step finished.
    StepDone {
        /// Which step.
        step: Step,
        /// How long it took.
        millis: u128,
        /// What it did.
        detail: String,
    },
    /// Some consumers have not yet shown that they use the new key.
    AdoptionPending {
        /// Their names, each with what it last reported.
        waiting: Vec<String>,
    },
    /// A step hit a temporary error and will be tried again.
    Retry {
        /// Which step.
        step: Step,
        /// Attempt that failed, from 1.
        attempt: u32,
        /// Wait before the next attempt.
        delay_ms: u128,
        /// The error.
        reason: String,
    },
    /// A verification attempt was refused, or got no answer, and will be retried.
    VerifyRetry {
        /// Attempt number, from 1.
        attempt: u32,
        /// `refused (<Salesforce's error>)` or `got no answer (<why>)`.
        reason: String,
    },
    /// Salesforce never accepted the new key: the rotation is being rolled back.
    RollingBack {
        /// The verification failure.
        reason: String,
    },
}

/// How a rotation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// The new key is CURRENT and on the app.
    Rotated,
    /// An operator undid it: the previous key is CURRENT and on the app.
    Aborted,
    /// Salesforce never accepted the new key, so it was undone automatically.
    RolledBack,
    /// A consumer secret's previous pair was deleted at Salesforce (`rekey retire`, `rekey run`).
    Retired,
}

/// A closed rotation.
#[derive(Clone, Debug, Serialize)]
pub struct Closed {
    /// Its id.
    pub rotation_id: RotationId,
    /// How it ended.
    pub ending: Ending,
    /// Why it was undone, when it was.
    pub reason: Option<String>,
    /// The generation CURRENT now.
    pub generation: Option<Generation>,
    /// CURRENT's certificate, which the app holds.
    pub fingerprint: Option<Fingerprint>,
    /// That certificate's notAfter.
    pub not_after: Option<DateTime<Utc>>,
    /// The certificate the app held before the rotation, if any.
    pub old_fingerprint: Option<Fingerprint>,
    /// The certificate the rotation introduced, once generated.
    pub new_fingerprint: Option<Fingerprint>,
    /// Whether an interrupted rotation was continued.
    pub resumed: bool,
    /// Consumers that had not shown they use the new key by their deadline, or refused it
    /// (kept only with `on_adoption_failure = "alert"`, and in an emergency).
    pub unadopted: Vec<Unadopted>,
}

/// A consumer that did not adopt a rotation's key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unadopted {
    /// Its name.
    pub consumer: String,
    /// What it last said, or why it could not be told.
    pub reason: String,
}

impl std::fmt::Display for Unadopted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.consumer, self.reason)
    }
}

/// A failed rotation: the error, and where the protocol stood.
#[derive(Debug)]
pub struct Stopped {
    /// What went wrong.
    pub error: Error,
    /// The rotation, if one was started.
    pub rotation_id: Option<RotationId>,
    /// The step that failed.
    pub step: Option<Step>,
    /// Whether the new certificate may already be on the app (the switchover point passed).
    pub published: bool,
    /// Whether the open rotation is an emergency rekey (never undone once published).
    pub emergency: bool,
}

impl Stopped {
    /// A failure before any rotation began (preflight, lease, reading the journal).
    pub fn before_start(error: Error) -> Self {
        Stopped {
            error,
            rotation_id: None,
            step: None,
            published: false,
            emergency: false,
        }
    }
}

impl Closed {
    /// The exit code: an automatic rollback is a failure of the rotation (7), even though the
    /// previous key works again.
    pub fn exit(&self) -> Exit {
        match self.ending {
            Ending::Rotated | Ending::Aborted | Ending::Retired => Exit::Ok,
            Ending::RolledBack => Exit::RolledBack,
        }
    }
}

impl Stopped {
    /// The exit code: 4 once the new certificate may be on the app, 5 once a rotation started
    /// before that, the error's own otherwise (and for conflicts, leases and configuration).
    pub fn exit(&self) -> Exit {
        Exit::of_stopped_rotation(
            self.error.kind(),
            self.rotation_id.is_some(),
            self.published,
        )
    }
}
