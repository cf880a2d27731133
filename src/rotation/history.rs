//! What the journal says: the open rotation (if any) and what it completed, the last success, and
//! the next generation to hand out.

use super::emergency::Emergency;
use chrono::{DateTime, Utc};
use rekey_api::{Fingerprint, Generation, JournalEntry, Phase, RotationId, Step};
use std::collections::BTreeSet;

/// Journal detail prefixes that tell an operator's abort from an automatic rollback.
pub(super) const ABORTED: &str = "aborted: ";

pub(super) const ROLLED_BACK: &str = "rolled back: ";

/// An unfinished rotation, as the journal tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenRotation {
    /// Its id.
    pub rotation_id: RotationId,
    /// When its first entry was written.
    pub started_at: DateTime<Utc>,
    /// The generation it introduces.
    pub generation: Generation,
    /// The generation CURRENT when it began.
    pub previous_generation: Option<Generation>,
    /// The new certificate's fingerprint, once generated.
    pub new_fingerprint: Option<Fingerprint>,
    /// What the app held when it began.
    pub old_fingerprint: Option<Fingerprint>,
    /// Steps begun (including those done).
    pub begun: BTreeSet<Step>,
    /// Steps completed.
    pub done: BTreeSet<Step>,
    /// Its newest entry's step and phase.
    pub last: (Step, Phase),
    /// Set once it is being undone: the journaled reason ("aborted: …" / "rolled back: …").
    pub undoing: Option<String>,
    /// Set when it is an emergency rekey.
    pub emergency: Option<Emergency>,
}

/// The rotation the journal leaves open (the last one, unless it was finalized or closed).
pub fn open_rotation(journal: &[JournalEntry]) -> Option<OpenRotation> {
    // A governance event (an org ledger's) is no rotation, open or not.
    let last = journal.iter().rev().find(|e| !e.step.is_governance())?;
    let entries: Vec<&JournalEntry> = journal
        .iter()
        .filter(|e| e.rotation_id == last.rotation_id && !e.step.is_governance())
        .collect();
    let steps = |phase: Phase| -> BTreeSet<Step> {
        entries
            .iter()
            .filter(|e| e.phase == phase)
            .map(|e| e.step)
            .collect()
    };
    let done = steps(Phase::Done);
    if done.contains(&Step::Finalize) || done.contains(&Step::Close) {
        return None;
    }
    let newest =
        |f: fn(&JournalEntry) -> Option<Fingerprint>| entries.iter().rev().find_map(|e| f(e));
    Some(OpenRotation {
        rotation_id: last.rotation_id.clone(),
        started_at: entries[0].at,
        generation: last.generation,
        previous_generation: entries[0].previous_generation,
        new_fingerprint: newest(|e| e.new_fingerprint),
        old_fingerprint: entries.iter().find_map(|e| e.old_fingerprint),
        begun: steps(Phase::Begin),
        done,
        last: (last.step, last.phase),
        undoing: entries
            .iter()
            .find(|e| e.step.is_undo() && e.phase == Phase::Begin)
            .and_then(|e| e.detail.clone()),
        emergency: emergency_of(&entries),
    })
}

/// The emergency settings journaled with a rotation's first step, if it is one.
pub(super) fn emergency_of(entries: &[&JournalEntry]) -> Option<Emergency> {
    entries
        .iter()
        .find(|e| e.step == Step::Generate && e.phase == Phase::Begin)
        .and_then(|e| e.detail.as_deref())
        .and_then(Emergency::from_detail)
}

/// The emergency settings journaled with rotation `id`'s first step, if it is an emergency: what
/// every way of ending one (the first run, `resume`, a rerun) builds its evidence from.
pub(super) fn emergency_in(journal: &[JournalEntry], id: &RotationId) -> Option<Emergency> {
    let entries: Vec<&JournalEntry> = journal.iter().filter(|e| &e.rotation_id == id).collect();
    emergency_of(&entries)
}

/// The last finalized rotation's end time, for `status` and `check` (a retire of a previous
/// consumer secret is no rotation: it generated nothing).
pub fn last_success(journal: &[JournalEntry]) -> Option<DateTime<Utc>> {
    journal
        .iter()
        .rev()
        .filter(|e| e.step == Step::Finalize && e.phase == Phase::Done)
        .find(|f| {
            journal
                .iter()
                .any(|e| e.rotation_id == f.rotation_id && e.step == Step::Generate)
        })
        .map(|e| e.at)
}

/// Whether the rotation whose entries these are is a retire (nothing generated, a retire begun).
pub(super) fn is_retire(begun: &BTreeSet<Step>) -> bool {
    begun.contains(&Step::Retire) && !begun.contains(&Step::Generate)
}

/// The generation a new rotation introduces: above CURRENT and above every generation the
/// journal ever handed out, so an aborted generation's retained key is never overwritten.
pub(super) fn next_generation(journal: &[JournalEntry], current: Option<Generation>) -> Generation {
    journal
        .iter()
        .filter(|e| !e.step.is_governance())
        .map(|e| e.generation)
        .chain(current)
        .max()
        .unwrap_or(Generation(0))
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn entry(id: &str, step: Step, phase: Phase) -> JournalEntry {
        JournalEntry {
            rotation_id: RotationId(id.into()),
            at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            step,
            phase,
            generation: Generation(2),
            previous_generation: Some(Generation(1)),
            new_fingerprint: (step >= Step::Stage).then(|| Fingerprint::of(id.as_bytes())),
            old_fingerprint: Some(Fingerprint::of(b"old")),
            detail: step.is_undo().then(|| format!("{ABORTED}test")),
            fence: Some(1),
            prev: None,
            hash: None,
        }
    }

    pub(super) fn completed(id: &str, steps: &[Step]) -> Vec<JournalEntry> {
        steps
            .iter()
            .flat_map(|&s| [entry(id, s, Phase::Begin), entry(id, s, Phase::Done)])
            .collect()
    }

    #[test]
    pub(super) fn a_finalized_rotation_leaves_nothing_open() {
        let journal = completed("r1", &Step::ALL);
        assert_eq!(open_rotation(&journal), None);
        assert_eq!(last_success(&journal), Some(journal[0].at));
        assert_eq!(open_rotation(&[]), None);
    }

    #[test]
    pub(super) fn an_interrupted_rotation_is_open_with_the_steps_it_completed() {
        let mut journal = completed("r1", &Step::ALL);
        journal.extend(completed("r2", &[Step::Generate, Step::Stage]));
        journal.extend([
            entry("r2", Step::Publish, Phase::Begin),
            entry("r2", Step::Publish, Phase::Failed),
        ]);
        let open = open_rotation(&journal).unwrap();
        assert_eq!(open.rotation_id, RotationId("r2".into()));
        assert_eq!(open.done, BTreeSet::from([Step::Generate, Step::Stage]));
        assert_eq!(
            open.begun,
            BTreeSet::from([Step::Generate, Step::Stage, Step::Publish])
        );
        assert_eq!(open.last, (Step::Publish, Phase::Failed));
        assert_eq!(open.generation, Generation(2));
        assert_eq!(open.previous_generation, Some(Generation(1)));
        assert_eq!(open.new_fingerprint, Some(Fingerprint::of(b"r2")));
        assert_eq!(open.old_fingerprint, Some(Fingerprint::of(b"old")));
        assert_eq!(open.undoing, None);
    }

    #[test]
    pub(super) fn an_undo_in_progress_is_open_until_closed() {
        let mut journal = completed("r1", &[Step::Generate, Step::Stage, Step::Publish]);
        journal.extend(completed("r1", &[Step::Restore]));
        let open = open_rotation(&journal).unwrap();
        assert_eq!(open.undoing.as_deref(), Some("aborted: test"));
        journal.extend(completed("r1", &[Step::Revert, Step::Close]));
        assert_eq!(open_rotation(&journal), None);
        assert_eq!(
            last_success(&journal),
            None,
            "an undone rotation is no success"
        );
    }

    #[test]
    pub(super) fn a_new_rotation_never_reuses_a_generation_the_journal_handed_out() {
        // r1 introduced generation 2 and was aborted: CURRENT is still 1.
        let journal = completed("r1", &[Step::Generate, Step::Restore, Step::Close]);
        assert_eq!(
            next_generation(&journal, Some(Generation(1))),
            Generation(3)
        );
        assert_eq!(next_generation(&[], None), Generation(1));
        assert_eq!(next_generation(&[], Some(Generation(7))), Generation(8));
    }

    #[test]
    fn governance_events_are_passed_over() {
        let mut journal = completed("r1", &Step::ALL);
        let mut grant = entry("_org.acme-1", Step::RevokeGrant, Phase::Done);
        grant.generation = Generation(40);
        journal.extend([grant, entry("_org.acme-2", Step::Suppress, Phase::Done)]);
        assert_eq!(open_rotation(&journal), None);
        assert_eq!(last_success(&journal), Some(journal[0].at));
        assert_eq!(
            next_generation(&journal, Some(Generation(2))),
            Generation(3)
        );
        journal.extend(completed("r2", &[Step::Generate]));
        journal.push(entry("_org.acme-3", Step::Suppress, Phase::Done));
        let open = open_rotation(&journal).unwrap();
        assert_eq!(open.rotation_id, RotationId("r2".into()));
        assert_eq!(open.last, (Step::Generate, Phase::Done));
    }
}
