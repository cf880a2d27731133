//! A string that must never reach a log line, an error or a report.

use std::fmt;
use zeroize::Zeroizing;

/// A secret string: a Slack webhook URL, a PagerDuty routing key, a webhook signing secret.
///
/// `Debug` and `Display` print `***`; the memory is zeroed on drop; the value leaves only through
/// [`Secret::expose_secret`] (grep for it). There is deliberately no `Clone` and no `Serialize`.
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Zeroizing::new(value.into()))
    }

    /// The secret value. Use it only to build a request, never to format a message.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty or only whitespace.
    pub(crate) fn is_blank(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn debug_and_display_are_redacted() {
        let s = Secret::new("R0UT1NGKEY");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{:?}", Some(&s)), "Some(***)");
        assert_eq!(s.expose_secret(), "R0UT1NGKEY");
        assert!(!s.is_blank());
        assert!(Secret::from(" ").is_blank());
    }
}
