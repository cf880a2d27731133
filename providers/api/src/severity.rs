//! How much attention something needs: one scale for `check` findings, the exit status of a check,
//! the alerts sent for them and the least a channel wants to hear.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How much attention something needs, least first (the order findings combine in: the worst
/// wins).
///
/// `Ok` is nothing to report; `Info` is worth knowing without acting (a rotation that succeeded);
/// `Unknown` is a source that could not be read, so nothing can be said about it; `Warning` and
/// `Critical` are thresholds crossed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Within policy: nothing to report.
    Ok,
    /// Worth knowing, nothing to do.
    Info,
    /// Something could not be read, so nothing can be said about it.
    Unknown,
    /// Past a warning threshold: act soon.
    Warning,
    /// Past a critical threshold, or consumers are failing now: act now.
    Critical,
}

impl Severity {
    /// `ok`, `info`, `unknown`, `warning` or `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Info => "info",
            Severity::Unknown => "unknown",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// The Nagios plugin status: 0 ok, 1 warning, 2 critical, 3 unknown (`Info` is ok).
    pub fn nagios(self) -> u8 {
        match self {
            Severity::Ok | Severity::Info => 0,
            Severity::Warning => 1,
            Severity::Critical => 2,
            Severity::Unknown => 3,
        }
    }

    /// Whether something of this severity reaches whoever asked to hear `min` and worse. An
    /// unknown counts as a warning there: nothing could be read, so someone has to look.
    pub fn reaches(self, min: Severity) -> bool {
        let weight = |s: Severity| match s {
            Severity::Unknown => Severity::Warning,
            other => other,
        };
        weight(self) >= weight(min)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Severity::{self, *};

    #[test]
    fn the_worst_wins_and_nagios_reads_it() {
        assert_eq!([Ok, Warning, Unknown].into_iter().max(), Some(Warning));
        assert_eq!([Ok, Info, Unknown].into_iter().max(), Some(Unknown));
        let nagios: Vec<u8> = [Ok, Info, Unknown, Warning, Critical]
            .map(Severity::nagios)
            .to_vec();
        assert_eq!(nagios, [0, 0, 3, 1, 2]);
    }

    #[test]
    fn a_threshold_hears_what_is_at_least_as_bad_and_unknown_as_a_warning() {
        assert!(Info.reaches(Info) && !Info.reaches(Warning));
        assert!(Unknown.reaches(Warning) && !Unknown.reaches(Critical));
        assert!(Warning.reaches(Info) && !Warning.reaches(Critical));
        assert!(Critical.reaches(Critical));
    }

    #[test]
    fn it_serializes_as_its_name() {
        for s in [Ok, Info, Unknown, Warning, Critical] {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<Severity>(&json).unwrap(), s);
        }
    }
}
