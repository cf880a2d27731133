//! The write-ahead rotation journal: what each step is about to do and what it did.
//!
//! Entries hold identifiers and fingerprints only; there is no field that could carry key bytes.

use crate::{Fingerprint, Generation, RotationId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The steps of a rotation, in protocol order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// Generate the key pair and certificate (in memory; proven to match).
    Generate,
    /// Write the key as PENDING in the store.
    Stage,
    /// Tell every consumer a new key is coming (`prepare`), before the switchover.
    Prepare,
    /// Emergency with the kill switch: switch the External Client App's OAuth off.
    #[serde(rename = "oauth_off")]
    OauthOff,
    /// Deploy the certificate to the app: the switchover point.
    Publish,
    /// Emergency with the kill switch: switch OAuth on again (the app holds the new certificate).
    #[serde(rename = "oauth_on")]
    OauthOn,
    /// Prove Salesforce accepts a token signed by the new key (emergency: and refuses the old).
    Verify,
    /// Emergency: end the integration user's sessions and revoke the app's grants and tokens.
    Revoke,
    /// Make the new key CURRENT; the old one becomes PREVIOUS.
    Promote,
    /// Tell every consumer to use the new key now (`activate`).
    Activate,
    /// Wait until every consumer proves it uses the new key, within its deadline.
    Adopt,
    /// Consumer secrets: delete the previous consumer key and secret at Salesforce (they stay
    /// valid after a rotation until deleted), once every consumer adopted the new pair.
    Retire,
    /// Emergency: destroy every older generation in every store.
    Destroy,
    /// Close the rotation.
    Finalize,
    /// Undo: put the previous certificate back on the app and prove the previous key is accepted.
    Restore,
    /// Undo: make the previous generation CURRENT again in every store and clear PENDING.
    Revert,
    /// Undo: tell every consumer to use the previous generation again (`activate`).
    Recall,
    /// Undo: close the rotation as aborted or rolled back.
    Close,
    /// Governance (an org-level ledger, `_org.<ORG>`): grants of an app revoked for a user;
    /// `detail` names the app, the user and how many. No rotation step.
    #[serde(rename = "revoke_grant")]
    RevokeGrant,
    /// Governance (an org-level ledger): an audit suppression was added; `detail` names its id,
    /// the app, the reason and until when. No rotation step.
    Suppress,
    /// The alerts' de-duplication state (journal `_alerts`, `[alerts] state_store`): `detail` is
    /// the whole state after a delivery, the newest entry the one in force. No rotation step.
    #[serde(rename = "alert_state")]
    AlertState,
}

impl Step {
    /// Every step, in protocol order (the consumer steps only when the credential has consumers,
    /// `Retire` only for consumer secrets).
    pub const ALL: [Step; 10] = [
        Step::Generate,
        Step::Stage,
        Step::Prepare,
        Step::Publish,
        Step::Verify,
        Step::Promote,
        Step::Activate,
        Step::Adopt,
        Step::Retire,
        Step::Finalize,
    ];
    /// An emergency rekey's steps, in order (`OauthOff`/`OauthOn` only with the kill switch, the
    /// consumer steps only with consumers).
    pub const EMERGENCY: [Step; 13] = [
        Step::Generate,
        Step::Stage,
        Step::Prepare,
        Step::OauthOff,
        Step::Publish,
        Step::OauthOn,
        Step::Verify,
        Step::Revoke,
        Step::Promote,
        Step::Activate,
        Step::Adopt,
        Step::Destroy,
        Step::Finalize,
    ];
    /// The steps that undo a rotation (`rekey abort`, rollback after a failed verification or a
    /// consumer that did not adopt the new key).
    pub const UNDO: [Step; 4] = [Step::Restore, Step::Revert, Step::Recall, Step::Close];

    /// Whether this step talks to the credential's consumers (skipped when it has none).
    pub fn is_consumer_step(self) -> bool {
        matches!(
            self,
            Step::Prepare | Step::Activate | Step::Adopt | Step::Recall
        )
    }

    /// Whether this step undoes a rotation.
    pub fn is_undo(self) -> bool {
        Step::UNDO.contains(&self)
    }

    /// Whether this entry records a governance event (or the alerts' state) rather than a step
    /// of a rotation: what reads a credential's rotations back passes over it.
    pub fn is_governance(self) -> bool {
        matches!(self, Step::RevokeGrant | Step::Suppress | Step::AlertState)
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Generate => "generate",
            Step::Stage => "stage",
            Step::Prepare => "prepare",
            Step::OauthOff => "oauth_off",
            Step::Publish => "publish",
            Step::OauthOn => "oauth_on",
            Step::Verify => "verify",
            Step::Revoke => "revoke",
            Step::Promote => "promote",
            Step::Activate => "activate",
            Step::Adopt => "adopt",
            Step::Retire => "retire",
            Step::Destroy => "destroy",
            Step::Finalize => "finalize",
            Step::Restore => "restore",
            Step::Revert => "revert",
            Step::Recall => "recall",
            Step::Close => "close",
            Step::RevokeGrant => "revoke_grant",
            Step::Suppress => "suppress",
            Step::AlertState => "alert_state",
        })
    }
}

/// Whether an entry announces a step or records its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Written before the step acts.
    Begin,
    /// Written after the step succeeded.
    Done,
    /// Written when the step failed; `detail` says why.
    Failed,
}

/// One journal line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// The rotation this entry belongs to.
    pub rotation_id: RotationId,
    /// When it was written.
    pub at: DateTime<Utc>,
    /// Which step.
    pub step: Step,
    /// Begin, done or failed.
    pub phase: Phase,
    /// The generation being introduced.
    pub generation: Generation,
    /// The generation that was CURRENT when the rotation began, if any.
    pub previous_generation: Option<Generation>,
    /// Certificate fingerprint of the new generation, once known.
    pub new_fingerprint: Option<Fingerprint>,
    /// Certificate fingerprint the app held when the rotation began, if any.
    pub old_fingerprint: Option<Fingerprint>,
    /// Free text: failure reason, deploy id, verification outcome. Never key bytes.
    pub detail: Option<String>,
    /// The fencing number of the lease under which the entry was written; `None` in entries
    /// written before leases carried one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<u64>,
    /// The hash ([`crate::chain_hash`]) of the entry before this one in the journal, or
    /// [`crate::GENESIS`] for the first; set by the store's append ([`crate::link`]), `None` in
    /// entries written before journals were chained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<String>,
    /// The hex SHA-256 of this entry's canonical encoding without `hash` ([`crate::entry_hash`]);
    /// set with `prev`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

/// A journal read back as far as it goes: the entries that parse, in order, and where the ones
/// that do not are. One damaged entry never hides the others: `status` and `journal` show what
/// can be read, while everything that writes refuses ([`JournalRead::complete`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalRead {
    /// The readable entries, oldest first.
    pub entries: Vec<JournalEntry>,
    /// The entries that could not be read, in journal order.
    pub damaged: Vec<Damage>,
    /// How to repair the journal, in the store's own terms; set when `damaged` is not empty.
    pub repair: Option<String>,
    /// Where each readable entry is, in the store's terms, parallel to `entries` (may be shorter
    /// for a read built in memory).
    pub locations: Vec<String>,
    /// The chain hash of the newest entry the store's retention dropped from the front (Vault,
    /// AWS keep a bounded journal): what the oldest remaining entry's `prev` names. `None` when
    /// nothing was dropped.
    pub anchor: Option<String>,
}

/// One place in a journal read, in journal order: an entry, or one that could not be read.
#[derive(Clone, Copy, Debug)]
pub enum Slot<'a> {
    /// A readable entry, with where it is (empty when unknown).
    Entry(&'a JournalEntry, &'a str),
    /// A damaged entry.
    Damaged(&'a Damage),
}

/// One journal entry that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Damage {
    /// Where it is: `PATH:LINE` in the file store; the store, the credential and the entry's
    /// number in a remote one.
    pub location: String,
    /// What is wrong with it: the parser's verdict and column, never the entry's contents (a
    /// damaged line may hold anything).
    pub problem: String,
    /// How many readable entries come before it, so a listing can show it in place.
    pub after: usize,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.problem)
    }
}

impl JournalRead {
    /// Every entry and damaged entry in journal order (a damaged one before the readable entry
    /// it preceded); its index + 1 is the entry's number.
    pub fn slots(&self) -> Vec<Slot<'_>> {
        let mut slots = Vec::with_capacity(self.entries.len() + self.damaged.len());
        let mut damaged = self.damaged.iter().peekable();
        for (i, e) in self.entries.iter().enumerate() {
            while let Some(d) = damaged.next_if(|d| d.after <= i) {
                slots.push(Slot::Damaged(d));
            }
            let at = self.locations.get(i).map_or("", String::as_str);
            slots.push(Slot::Entry(e, at));
        }
        slots.extend(damaged.map(Slot::Damaged));
        slots
    }

    /// The whole journal, or, when an entry is damaged, a `Conflict` naming it, saying that
    /// nothing was changed and how to repair it. Whatever writes to a credential (a rotation,
    /// its resume or undo, an emergency rekey, an import) reads the journal this way: a step
    /// decided on a journal with a hole could repeat or skip what the missing entry recorded.
    pub fn complete(
        self,
        store: &dyn fmt::Display,
        credential: &str,
    ) -> crate::Result<Vec<JournalEntry>> {
        let Some(first) = self.damaged.first() else {
            return Ok(self.entries);
        };
        let more = match self.damaged.len() {
            1 => String::new(),
            n => format!(" (and {} more damaged entries)", n - 1),
        };
        Err(crate::Error::new(
            crate::ErrorKind::Conflict,
            format!("{store}: the rotation journal of '{credential}' is damaged at {first}{more}"),
        )
        .with_hint(format!(
            "nothing was changed. `rekey journal {credential}` shows every entry it can read and where the damaged ones are. {} Then run the command again.",
            self.repair.as_deref().unwrap_or("Restore the journal from a backup.")
        )))
    }
}

/// What is wrong with a journal entry that did not parse, without quoting it: serde's messages
/// quote the values they refuse, and a damaged line may hold anything.
pub fn parse_problem(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Syntax => "not JSON",
        Category::Eof => "cut off",
        Category::Data => "JSON, but not a journal entry",
        Category::Io => "unreadable",
    };
    match e.column() {
        // Parsed from a value, not from text: there is no column to name.
        0 => what.to_string(),
        column => format!("{what} (column {column})"),
    }
}

/// The greatest lease fence any entry of `journal` was written under; `None` when none carries
/// one. A new lease must outnumber it, or the journal would refuse what it writes.
pub fn greatest_fence(journal: &[JournalEntry]) -> Option<u64> {
    journal.iter().filter_map(|e| e.fence).max()
}

/// The fence check every store makes, in the same conditional write, before appending `new`:
/// an entry written under a greater fence means a newer runner took the lease over, and an
/// unfenced entry after fenced ones comes from a writer outside the lease protocol.
pub fn check_fence(journal: &[JournalEntry], new: &JournalEntry) -> crate::Result<()> {
    let newest = greatest_fence(journal);
    match (newest, new.fence) {
        (Some(newest), None) => Err(crate::Error::new(
            crate::ErrorKind::LeaseLost,
            format!(
                "rotation {}: an entry without a lease after entries written under lease {newest}",
                new.rotation_id
            ),
        )
        .with_hint("only a runner holding the credential's lease may write its journal")),
        (Some(newest), Some(ours)) if newest > ours => Err(crate::Error::new(
            crate::ErrorKind::LeaseLost,
            format!(
                "rotation {}: the journal holds entries written under lease {newest}, newer than this runner's lease {ours}",
                new.rotation_id
            ),
        )
        .with_hint("another runner took the rotation over after this runner's lease expired; let it finish, then inspect `rekey journal`")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn entry(fence: Option<u64>) -> JournalEntry {
        JournalEntry {
            rotation_id: RotationId("r1".into()),
            at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            step: Step::Stage,
            phase: Phase::Begin,
            generation: Generation(2),
            previous_generation: Some(Generation(1)),
            new_fingerprint: None,
            old_fingerprint: None,
            detail: None,
            fence,
            prev: None,
            hash: None,
        }
    }

    #[test]
    fn only_the_newest_lease_may_append() {
        let journal = [entry(None), entry(Some(3)), entry(Some(5))];
        assert!(check_fence(&journal, &entry(Some(5))).is_ok());
        assert!(check_fence(&journal, &entry(Some(6))).is_ok());
        for stale in [Some(4), None] {
            let err = check_fence(&journal, &entry(stale)).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::LeaseLost, "{stale:?}: {err}");
            assert!(err.to_string().contains("lease 5"), "{err}");
        }
        // Journals from before leases carried fences accept anything.
        assert!(check_fence(&[entry(None)], &entry(None)).is_ok());
        assert!(check_fence(&[], &entry(Some(1))).is_ok());
    }
}
