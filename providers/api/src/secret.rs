//! A secret string that cannot leak by accident: tokens, webhook URLs, routing keys, signing
//! secrets, AppRole secret ids.

use std::fmt;
use zeroize::Zeroizing;

/// A string that must never reach a log line, an error or a report: a Vault token, a Salesforce
/// access token, a Slack webhook URL, a PagerDuty routing key, a webhook signing secret.
///
/// `Debug` and `Display` print `***`; the memory is zeroed on drop; the value leaves only through
/// [`SecretString::expose_secret`] (grep for it). There is deliberately no `Clone`, no
/// `Serialize` and no `PartialEq` (a comparison would be a timing side channel). Private keys are
/// [`crate::KeyMaterial`], not this.
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Wraps `value` as it is (no trimming: callers decide what is part of the secret).
    pub fn new(value: impl Into<String>) -> Self {
        SecretString(Zeroizing::new(value.into()))
    }

    /// The secret value. Every call site is a place where the secret leaves the type: use it
    /// only to build a request (a header, a body, a signature), never to format a message.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty or only whitespace.
    pub fn is_blank(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        SecretString::new(value)
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        SecretString::new(value)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::SecretString;

    #[test]
    fn debug_and_display_are_redacted() {
        let s = SecretString::new("R0UT1NGKEY");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{:?}", Some(&s)), "Some(***)");
        assert_eq!(s.expose_secret(), "R0UT1NGKEY");
        assert!(!s.is_blank());
        assert!(SecretString::from(" \n").is_blank());
        assert!(SecretString::from(String::new()).is_blank());
    }
}
