//! Test controls that shape responses: injected faults and the call log.

use serde::{Deserialize, Serialize};

/// What an injected fault does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer with this 5xx status and body.
    ServerError {
        /// HTTP status (500–599).
        status: u16,
        /// Response body.
        #[serde(default)]
        body: String,
    },
    /// Delay the request, then handle it normally.
    Latency {
        /// Added delay.
        ms: u64,
    },
    /// 403 `REQUEST_LIMIT_EXCEEDED` (`TotalRequests Limit exceeded.`).
    RequestLimit,
    /// The HTML "Data Not Available" page with status 200 (org maintenance).
    DataNotAvailable,
    /// Token endpoint answers 400 `rate_limit_exceeded` (login throttling).
    RateLimitExceeded,
    /// The next deploy ends `Failed` with this problem as a componentFailure of its first
    /// component.
    DeployFails {
        /// componentFailure problem text.
        problem: String,
    },
    /// The next deploy holding component `member` ends `Failed` with this problem as that
    /// component's failure (deploys without it are not affected): one app of a batch refused.
    ComponentFails {
        /// The component's full name.
        member: String,
        /// componentFailure problem text.
        problem: String,
    },
}

/// An injected fault: a behaviour, an optional path-prefix filter and a use count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// The behaviour.
    #[serde(flatten)]
    pub kind: FaultKind,
    /// Only requests whose path starts with this are affected.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// How many requests (or deploys) it affects before it stops; `None` = until cleared.
    #[serde(default)]
    pub count: Option<u32>,
}

impl Fault {
    /// A fault that applies to every matching request until cleared.
    pub fn new(kind: FaultKind) -> Fault {
        Fault {
            kind,
            path_prefix: None,
            count: None,
        }
    }

    /// Restricts the fault to paths starting with `prefix`.
    pub fn on_path(mut self, prefix: &str) -> Fault {
        self.path_prefix = Some(prefix.to_string());
        self
    }

    /// Stops the fault after `n` uses.
    pub fn times(mut self, n: u32) -> Fault {
        self.count = Some(n);
        self
    }

    /// Whether this fault applies to a request path.
    pub(crate) fn matches(&self, path: &str) -> bool {
        let kind_ok = match self.kind {
            FaultKind::RateLimitExceeded => path == crate::token::TOKEN_PATH,
            // Consumed by the deploy handler, never by the request filter.
            FaultKind::DeployFails { .. } | FaultKind::ComponentFails { .. } => false,
            _ => true,
        };
        kind_ok && self.path_ok(path)
    }

    /// Whether the path filter (if any) admits this path.
    pub(crate) fn path_ok(&self, path: &str) -> bool {
        self.path_prefix
            .as_deref()
            .is_none_or(|p| path.starts_with(p))
    }
}

/// Takes one use of the first fault satisfying `pick`, dropping it when its count runs out.
pub(crate) fn take_fault(
    faults: &mut Vec<Fault>,
    pick: impl Fn(&Fault) -> bool,
) -> Option<FaultKind> {
    let index = faults.iter().position(pick)?;
    let fault = &mut faults[index];
    let kind = fault.kind.clone();
    if let Some(n) = &mut fault.count {
        *n = n.saturating_sub(1);
        if *n == 0 {
            faults.remove(index);
        }
    }
    Some(kind)
}

/// One handled request, as the audit log keeps it (no bodies, no query strings: those can
/// carry tokens).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    /// HTTP method.
    pub method: String,
    /// Request path without the query string.
    pub path: String,
    /// Response status.
    pub status: u16,
    /// RFC 3339 UTC time the request arrived (wall clock, not the simulated one).
    pub timestamp: String,
    /// For a SOAP Metadata call: its operation and first type, e.g. `readMetadata
    /// ConnectedApp` (so tests can count reads, which all share one path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
}

/// The SOAP operation a response answered, handed from the SOAP handler to the call log as a
/// response extension.
#[derive(Debug, Clone)]
pub(crate) struct SoapOperation(pub(crate) String);
