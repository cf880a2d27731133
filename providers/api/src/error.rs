//! One error type at the provider boundary: a kind the orchestrator branches on, a message that
//! names the thing (never its secret contents), an optional hint telling the operator what to do.

use std::fmt;

/// Result alias used across every provider trait.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, coarse enough for the orchestrator and the CLI's exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Invalid or missing configuration or input.
    Config,
    /// Credentials missing, expired or rejected.
    Unauthenticated,
    /// Authenticated but not allowed.
    PermissionDenied,
    /// The object (credential, app, version) does not exist.
    NotFound,
    /// A precondition failed: another rotation in flight, a stage that moved.
    Conflict,
    /// Another runner holds the credential's rotation lease.
    Busy,
    /// This runner's lease was taken over (it expired and another runner took a greater fence):
    /// the runner must stop before its next write.
    LeaseLost,
    /// Network trouble, 5xx, rate limits, maintenance pages.
    Unavailable,
    /// A certificate or key that cannot be parsed or does not belong together.
    InvalidCertificate,
    /// The relying party refused a change (for example a Metadata deploy's componentFailures).
    Rejected,
    /// The relying party never accepted a token signed by the key within the deadline.
    VerificationFailed,
    /// A bug, or a response we cannot classify.
    Unexpected,
}

impl ErrorKind {
    fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "configuration",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::NotFound => "not found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Busy => "busy",
            ErrorKind::LeaseLost => "lease lost",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::InvalidCertificate => "invalid certificate",
            ErrorKind::Rejected => "rejected",
            ErrorKind::VerificationFailed => "verification failed",
            ErrorKind::Unexpected => "unexpected",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error every provider returns.
///
/// `Display` is one line: the message, then the source chain. The hint is separate so the CLI
/// can print it on its own line.
pub struct Error {
    kind: ErrorKind,
    message: String,
    hint: Option<String>,
    temporary: bool,
    changed_nothing: bool,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// A new error. `message` names what failed and on which object; never secret contents.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            hint: None,
            temporary: false,
            changed_nothing: false,
            source: None,
        }
    }

    /// What the operator should do next.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Marks the error as worth retrying (network, 5xx, rate limit).
    pub fn temporary(mut self) -> Self {
        self.temporary = true;
        self
    }

    /// Marks the error as one that certainly left the relying party as it was, whatever its kind
    /// (a check-only deploy, a read before any write): a rotation that stops on it has not
    /// reached its switchover point.
    pub fn changed_nothing(mut self) -> Self {
        self.changed_nothing = true;
        self
    }

    /// Whether the failed call certainly changed nothing (see [`Error::changed_nothing`]).
    pub fn is_changed_nothing(&self) -> bool {
        self.changed_nothing
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Prefixes the message with where it happened, e.g. the credential or the store.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// The coarse kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The operator hint, if any.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// Whether a retry may succeed.
    pub fn is_temporary(&self) -> bool {
        self.temporary
    }

    /// The message without the source chain.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        let mut source = self
            .source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static));
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("hint", &self.hint)
            .field("temporary", &self.temporary)
            .field("changed_nothing", &self.changed_nothing)
            .field("source", &self.source)
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_includes_the_source_chain_and_keeps_the_hint_apart() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied by mode 0400");
        let err = Error::new(
            ErrorKind::PermissionDenied,
            "cannot write keys/billing/3.key",
        )
        .with_source(io)
        .with_hint("check the directory's owner")
        .context("file store ./keys");
        assert_eq!(
            err.to_string(),
            "file store ./keys: cannot write keys/billing/3.key: denied by mode 0400"
        );
        assert_eq!(err.hint(), Some("check the directory's owner"));
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
        assert!(!err.is_temporary());
    }
}
