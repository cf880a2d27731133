//! The journal as a hash chain: every entry names the hash of the one before it, so an entry
//! changed, removed or inserted in the middle of a journal no longer fits its neighbours.
//!
//! The link is made by the store's conditional append ([`link`]), the one place that knows the
//! entry before; [`verify_chain`] walks a journal read back. Journals written before chaining keep
//! working: their entries carry no hash, and the chain starts at the first entry that does.

use crate::{Damage, JournalEntry, JournalRead, Phase, RotationId, Slot, Step};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt;

/// The `prev` of a journal's first chained entry when nothing came before it: SHA-256 of no bytes.
pub const GENESIS: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The canonical encoding of `entry` without its `hash`: JSON with every object's keys sorted
/// (recursively) and no whitespace, of the fields as the entry stores them. Written out here
/// rather than left to serde_json's map order, which a feature flag anywhere in the build changes.
pub fn canonical(entry: &JournalEntry) -> Vec<u8> {
    let mut value = serde_json::to_value(entry).expect("a journal entry is JSON");
    if let Value::Object(map) = &mut value {
        map.remove("hash");
    }
    let mut out = String::new();
    write_canonical(&value, &mut out);
    out.into_bytes()
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        // Strings (escaped), numbers, booleans and null print the same way whatever the map order.
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The hex SHA-256 of `entry`'s [`canonical`] encoding: what its `hash` must be.
pub fn entry_hash(entry: &JournalEntry) -> String {
    hex::encode(Sha256::digest(canonical(entry)))
}

/// What the entry after `entry` names as its `prev`: its `hash`, or for an entry from before
/// chaining (no hash) the hash of its content.
pub fn chain_hash(entry: &JournalEntry) -> String {
    entry.hash.clone().unwrap_or_else(|| entry_hash(entry))
}

/// The entry a store appends after `journal` (the whole journal, read in the same conditional
/// write): the fence checked ([`crate::check_fence`]), `prev` naming the last entry and `hash` set.
/// Every store appends what this returns, so there is one way to link.
pub fn link(journal: &[JournalEntry], entry: &JournalEntry) -> crate::Result<JournalEntry> {
    crate::check_fence(journal, entry)?;
    let mut linked = entry.clone();
    linked.hash = None;
    linked.prev = Some(
        journal
            .last()
            .map_or_else(|| GENESIS.to_string(), chain_hash),
    );
    linked.hash = Some(entry_hash(&linked));
    Ok(linked)
}

/// The anchor a bounded journal keeps after dropping `dropped` from its front: the chain hash of
/// the newest dropped entry, so the oldest remaining entry can still be checked; `anchor` (the
/// one kept before) when nothing was dropped.
pub fn anchor_after(dropped: &[JournalEntry], anchor: Option<String>) -> Option<String> {
    dropped.last().map(chain_hash).or(anchor)
}

/// What [`verify_chain`] found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainVerdict {
    /// Every entry of the journal, damaged ones included.
    pub entries: usize,
    /// How many of them came before chaining (no hash) and were accepted as they are.
    pub legacy: usize,
    /// The first entry that does not fit; `None` when the chain is intact.
    #[serde(rename = "broken_at")]
    pub broken: Option<ChainBreak>,
}

impl ChainVerdict {
    /// Whether the chain is intact.
    pub fn intact(&self) -> bool {
        self.broken.is_none()
    }

    /// The state of entry `number` (1-based), for a listing: before the break `legacy` or `ok`,
    /// from it on `broken`.
    pub fn state_of(&self, number: usize) -> ChainState {
        match &self.broken {
            Some(b) if number >= b.number => ChainState::Broken,
            _ if number <= self.legacy => ChainState::Legacy,
            _ => ChainState::Ok,
        }
    }
}

/// One entry's place in the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChainState {
    /// Chained and fits.
    Ok,
    /// Written before chaining; accepted, not provable.
    Legacy,
    /// At or after the first entry that does not fit.
    Broken,
}

/// The first entry of a journal that does not fit its chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainBreak {
    /// Its number, 1-based, in journal order (damaged entries counted).
    pub number: usize,
    /// Where it is, in the store's terms (`PATH:LINE`; a remote journal's version and entry).
    pub location: String,
    /// Its rotation, step and phase; `None` for a damaged entry.
    pub rotation_id: Option<RotationId>,
    /// Its step.
    pub step: Option<Step>,
    /// Its phase.
    pub phase: Option<Phase>,
    /// What does not fit.
    pub problem: ChainProblem,
}

/// Why an entry does not fit its chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainProblem {
    /// Its hash does not match its content: the entry was changed after it was written.
    ContentChanged,
    /// Its `prev` is not the hash of the entry before it: an entry before it was changed,
    /// removed or inserted.
    DoesNotFollow,
    /// It has no hash, after entries that do: written or rewritten outside rekey's append.
    Unhashed,
    /// It cannot be read at all.
    Damaged,
}

impl fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChainProblem::ContentChanged => "its content changed after it was written",
            ChainProblem::DoesNotFollow => "it does not follow the entry before it",
            ChainProblem::Unhashed => "it has no hash, after entries that do",
            ChainProblem::Damaged => "it is damaged",
        })
    }
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "entry {}", self.number)?;
        if let (Some(id), Some(step), Some(phase)) = (&self.rotation_id, self.step, self.phase) {
            write!(f, " ({id} {step} {})", format!("{phase:?}").to_lowercase())?;
        }
        if !self.location.is_empty() {
            write!(f, " at {}", self.location)?;
        }
        write!(f, ": {}", self.problem)
    }
}

/// Walks the journal in `read`: entries without a hash before the first hashed one are accepted
/// (written before chaining); the first hashed entry must follow the last of them (or the read's
/// anchor, or [`GENESIS`]); every later entry needs a hash matching its content and a `prev`
/// matching its predecessor's. A hand-edited entry is named itself: its own hash no longer fits.
pub fn verify_chain(read: &JournalRead) -> ChainVerdict {
    let slots = read.slots();
    let mut verdict = ChainVerdict {
        entries: slots.len(),
        legacy: 0,
        broken: None,
    };
    let mut last = read.anchor.clone();
    let mut chained = false;
    for (i, slot) in slots.iter().enumerate() {
        let problem = match *slot {
            Slot::Damaged(_) => Some(ChainProblem::Damaged),
            Slot::Entry(e, _) => match &e.hash {
                None if chained || e.prev.is_some() => Some(ChainProblem::Unhashed),
                None => {
                    verdict.legacy += 1;
                    last = Some(entry_hash(e));
                    None
                }
                Some(hash) if *hash != entry_hash(e) => Some(ChainProblem::ContentChanged),
                Some(hash) => {
                    let expected = last.replace(hash.clone());
                    chained = true;
                    (e.prev.as_deref() != Some(expected.as_deref().unwrap_or(GENESIS)))
                        .then_some(ChainProblem::DoesNotFollow)
                }
            },
        };
        if let Some(problem) = problem {
            verdict.broken = Some(broken_at(i + 1, slot, problem));
            break;
        }
    }
    verdict
}

fn broken_at(number: usize, slot: &Slot<'_>, problem: ChainProblem) -> ChainBreak {
    match *slot {
        Slot::Damaged(Damage { location, .. }) => ChainBreak {
            number,
            location: location.clone(),
            rotation_id: None,
            step: None,
            phase: None,
            problem,
        },
        Slot::Entry(e, location) => ChainBreak {
            number,
            location: location.to_string(),
            rotation_id: Some(e.rotation_id.clone()),
            step: Some(e.step),
            phase: Some(e.phase),
            problem,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Generation;

    fn entry(n: i64, fence: Option<u64>) -> JournalEntry {
        JournalEntry {
            rotation_id: RotationId(format!("r{n}")),
            at: chrono::DateTime::from_timestamp(1_800_000_000 + n, 0).unwrap(),
            step: Step::Stage,
            phase: Phase::Begin,
            generation: Generation(2),
            previous_generation: Some(Generation(1)),
            new_fingerprint: None,
            old_fingerprint: None,
            detail: Some(format!("entry {n}")),
            fence,
            prev: None,
            hash: None,
        }
    }

    /// `legacy` entries without hashes, then `chained` appended through [`link`].
    fn journal(legacy: i64, chained: i64) -> Vec<JournalEntry> {
        let mut j: Vec<JournalEntry> = (1..=legacy).map(|n| entry(n, None)).collect();
        for n in legacy + 1..=legacy + chained {
            let linked = link(&j, &entry(n, Some(1))).unwrap();
            j.push(linked);
        }
        j
    }

    fn read(entries: Vec<JournalEntry>) -> JournalRead {
        JournalRead {
            entries,
            ..JournalRead::default()
        }
    }

    #[test]
    fn the_canonical_encoding_sorts_keys_has_no_whitespace_and_leaves_the_hash_out() {
        let mut e = entry(1, Some(3));
        e.hash = Some("ff".into());
        let text = String::from_utf8(canonical(&e)).unwrap();
        assert_eq!(
            text,
            r#"{"at":"2027-01-15T08:00:01Z","detail":"entry 1","fence":3,"generation":2,"new_fingerprint":null,"old_fingerprint":null,"phase":"begin","previous_generation":1,"rotation_id":"r1","step":"stage"}"#
        );
        assert_eq!(entry_hash(&e), hex::encode(Sha256::digest(text.as_bytes())));
    }

    #[test]
    fn appended_entries_chain_from_genesis_and_verify() {
        let j = journal(0, 4);
        assert_eq!(j[0].prev.as_deref(), Some(GENESIS));
        assert_eq!(j[1].prev, j[0].hash);
        let v = verify_chain(&read(j));
        assert_eq!((v.entries, v.legacy, v.intact()), (4, 0, true), "{v:?}");
    }

    #[test]
    fn legacy_entries_are_accepted_and_the_chain_starts_after_them() {
        let j = journal(3, 2);
        assert_eq!(j[3].prev, Some(entry_hash(&j[2])));
        let v = verify_chain(&read(j.clone()));
        assert_eq!((v.entries, v.legacy, v.intact()), (5, 3, true), "{v:?}");
        assert_eq!(v.state_of(3), ChainState::Legacy);
        assert_eq!(v.state_of(4), ChainState::Ok);
        // Only legacy entries: intact, nothing chained yet.
        assert!(verify_chain(&read(j[..3].to_vec())).intact());
    }

    #[test]
    fn an_edited_entry_is_named_itself() {
        let mut j = journal(1, 4);
        j[2].detail = Some("changed".into());
        let v = verify_chain(&read(j));
        let b = v.broken.as_ref().unwrap();
        assert_eq!((b.number, b.problem), (3, ChainProblem::ContentChanged));
        assert_eq!(b.rotation_id, Some(RotationId("r3".into())));
        assert_eq!(v.state_of(2), ChainState::Ok);
        assert_eq!(v.state_of(4), ChainState::Broken);
    }

    #[test]
    fn a_removed_or_unhashed_or_damaged_entry_breaks_the_chain_there() {
        let mut removed = journal(0, 4);
        removed.remove(1);
        let b = verify_chain(&read(removed)).broken.unwrap();
        assert_eq!((b.number, b.problem), (2, ChainProblem::DoesNotFollow));

        let mut unhashed = journal(0, 3);
        unhashed[2].hash = None;
        let b = verify_chain(&read(unhashed)).broken.unwrap();
        assert_eq!((b.number, b.problem), (3, ChainProblem::Unhashed));

        // The last legacy entry changed: the first chained entry no longer follows it.
        let mut legacy = journal(2, 2);
        legacy[1].detail = None;
        let b = verify_chain(&read(legacy)).broken.unwrap();
        assert_eq!((b.number, b.problem), (3, ChainProblem::DoesNotFollow));

        let mut damaged = read(journal(0, 3));
        damaged.damaged.push(Damage {
            location: "journal.jsonl:2".into(),
            problem: "not JSON".into(),
            after: 1,
        });
        let b = verify_chain(&damaged).broken.unwrap();
        assert_eq!((b.number, b.problem), (2, ChainProblem::Damaged));
        assert_eq!(b.location, "journal.jsonl:2");
        assert_eq!(verify_chain(&damaged).entries, 4);
    }

    #[test]
    fn a_bounded_journal_verifies_from_its_anchor() {
        let j = journal(2, 4);
        let anchor = anchor_after(&j[..3], None);
        let mut trimmed = read(j[3..].to_vec());
        assert!(!verify_chain(&trimmed).intact(), "without the anchor");
        trimmed.anchor = anchor;
        assert!(verify_chain(&trimmed).intact());
    }

    #[test]
    fn link_checks_the_fence() {
        let j = journal(0, 2);
        assert!(link(&j, &entry(9, None)).is_err());
    }
}
