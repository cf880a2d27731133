//! An emergency rekey's settings: journaled with its first step, so a resumed run keeps them.

use rekey_api::Step;
use serde::Serialize;

/// An emergency rekey's settings, journaled with its first entry so a resumed run keeps them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Emergency {
    /// Why, for the journal and the evidence bundle.
    pub reason: String,
    /// External Client Apps: switch OAuth off before publishing, on again after.
    pub kill_switch: bool,
}

pub(super) const EMERGENCY: &str = "emergency: ";

pub(super) const EMERGENCY_KILL_SWITCH: &str = "emergency with kill switch: ";

impl Emergency {
    pub(super) fn journal_detail(&self) -> String {
        let prefix = if self.kill_switch {
            EMERGENCY_KILL_SWITCH
        } else {
            EMERGENCY
        };
        format!("{prefix}{}", self.reason)
    }

    pub(super) fn from_detail(detail: &str) -> Option<Emergency> {
        let (kill_switch, reason) = match detail.strip_prefix(EMERGENCY_KILL_SWITCH) {
            Some(reason) => (true, reason),
            None => (false, detail.strip_prefix(EMERGENCY)?),
        };
        Some(Emergency {
            reason: reason.to_string(),
            kill_switch,
        })
    }

    /// Its steps, in order.
    pub fn steps(&self) -> Vec<Step> {
        Step::EMERGENCY
            .into_iter()
            .filter(|s| self.kill_switch || !matches!(s, Step::OauthOff | Step::OauthOn))
            .collect()
    }
}
