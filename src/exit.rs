//! The process exit codes (the README's table) and what decides them: an error's kind, the worst
//! severity `check` found (Nagios), or how far a rotation got before it stopped.

use rekey_api::{ErrorKind, Severity};
use serde::Serialize;
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Success; `check`: everything within policy.
    Ok = 0,
    /// `check`: a warning threshold was crossed.
    Warning = 1,
    /// `check`: a critical threshold was crossed.
    Critical = 2,
    /// `verify`: Salesforce refused the token. (`check`: [`Exit::UNKNOWN`].)
    Refused = 3,
    /// `rotate` failed after the new certificate may have reached the app; the journal is open.
    FailedAfterPublish = 4,
    /// `rotate` failed before the app was touched.
    FailedBeforePublish = 5,
    /// The state moved under us (a stage, the app, a lease taken over), or an interrupted
    /// rotation is older than resume_max_age_hours and needs `resume` or `abort`.
    Conflict = 6,
    /// `rotate`: Salesforce never accepted the new key, so the rotation was rolled back; the
    /// previous key is CURRENT and on the app again.
    RolledBack = 7,
    /// Usage or configuration error.
    Config = 64,
    /// Unreadable or mismatched certificate/key input.
    BadInput = 65,
    /// A service was unreachable or answered 5xx/maintenance; safe to retry.
    Unavailable = 69,
    /// Unexpected internal error.
    Internal = 70,
    /// Another rekey process holds the credential's rotation lease; try again later.
    Busy = 75,
    /// Authentication or permission refused.
    Denied = 77,
}

impl Exit {
    /// `check`: a source could not be read, so nothing can be said about it (Nagios UNKNOWN).
    pub const UNKNOWN: Exit = Exit::Refused;

    /// `check`'s exit code for the worst severity found (Nagios: 0 ok, 1 warning, 2 critical,
    /// 3 unknown).
    pub fn of_severity(severity: Severity) -> Exit {
        match severity {
            Severity::Ok | Severity::Info => Exit::Ok,
            Severity::Warning => Exit::Warning,
            Severity::Critical => Exit::Critical,
            Severity::Unknown => Exit::UNKNOWN,
        }
    }

    /// The exit code for an error of `kind` outside a rotation.
    pub fn of_error(kind: ErrorKind) -> Exit {
        match kind {
            // A missing app or credential is nearly always a wrong name in the config.
            ErrorKind::Config | ErrorKind::NotFound => Exit::Config,
            ErrorKind::InvalidCertificate => Exit::BadInput,
            ErrorKind::Unauthenticated | ErrorKind::PermissionDenied => Exit::Denied,
            ErrorKind::Conflict | ErrorKind::LeaseLost => Exit::Conflict,
            ErrorKind::Busy => Exit::Busy,
            ErrorKind::Unavailable => Exit::Unavailable,
            // Rejected, VerificationFailed outside a rotation, Unexpected, and kinds added later.
            _ => Exit::Internal,
        }
    }

    /// The exit code of a rotation stopped by an error of `kind`: `started` once it had an id
    /// (something may be staged), `published` once the new certificate may be on the app.
    pub fn of_stopped_rotation(kind: ErrorKind, started: bool, published: bool) -> Exit {
        match kind {
            ErrorKind::Config => Exit::Config,
            ErrorKind::Conflict | ErrorKind::LeaseLost | ErrorKind::Busy => Exit::of_error(kind),
            _ if published => Exit::FailedAfterPublish,
            _ if started => Exit::FailedBeforePublish,
            _ => Exit::of_error(kind),
        }
    }
}

impl Serialize for Exit {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(*self as u8)
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}
