//! Small identifiers a rotation is made of.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A key generation of one credential: 1 for the first key rekey knows of, +1 per rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Generation(pub u64);

impl Generation {
    /// The generation after this one.
    pub fn next(self) -> Generation {
        Generation(self.0 + 1)
    }

    /// The generation `text` names when it is decimal digits and nothing else (no sign, no
    /// space), as stores write it into file, key and alias names.
    pub fn from_digits(text: &str) -> Option<Generation> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        text.parse().ok().map(Generation)
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Which version of a credential a reader wants; named after AWS Secrets Manager's
/// AWSCURRENT / AWSPENDING / AWSPREVIOUS labels, which stores without labels emulate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// The key consumers sign with.
    Current,
    /// A staged key that Salesforce has not yet been proven to accept.
    Pending,
    /// The key that was current before the last promotion; kept for rollback.
    Previous,
}

impl Stage {
    /// Every stage, in display order.
    pub const ALL: [Stage; 3] = [Stage::Current, Stage::Pending, Stage::Previous];
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Current => "CURRENT",
            Stage::Pending => "PENDING",
            Stage::Previous => "PREVIOUS",
        })
    }
}

/// One id per rotation, reused by every retry of every step: the idempotency key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RotationId(pub String);

impl fmt::Display for RotationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_digits_name_a_generation() {
        assert_eq!(Generation::from_digits("000012"), Some(Generation(12)));
        assert_eq!(Generation::from_digits("3"), Some(Generation(3)));
        for not in [
            "",
            "+3",
            "-3",
            " 3",
            "3a",
            "eu-2",
            "99999999999999999999999",
        ] {
            assert_eq!(Generation::from_digits(not), None, "{not}");
        }
    }
}
