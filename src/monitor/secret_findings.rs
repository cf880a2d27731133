//! What only a consumer secret can have wrong, read from Salesforce's staged credential slot:
//! the previous pair still valid long after its rotation (anyone holding it can still log in),
//! and a staged pair that no rotation of rekey's made or that will expire before its rotation
//! finishes (the next rotation is refused while the slot is taken).

use super::observe::{ConsumerSlot, Observation};
use chrono::{DateTime, Utc};
use rekey_api::{Severity, StagedState};

/// How long past `revoke_previous_after_hours` a previous pair may stay valid before `check`
/// warns: `rekey run` retires it once the hours pass, so only a run that never came leaves it.
const GRACE: chrono::Duration = chrono::Duration::hours(24);

/// How long before its expiry an open rotation's staged pair is worth a warning.
const STAGED_EXPIRY_WARNING: chrono::Duration = chrono::Duration::days(7);

/// The consumer secret findings of `o` (none for a certificate), each handed to `add` as
/// (id, severity, message).
pub fn evaluate(
    o: &Observation,
    now: DateTime<Utc>,
    add: &mut dyn FnMut(String, Severity, String),
) {
    let Some(slot) = &o.consumer else {
        return;
    };
    let cred = &o.credential;
    let staged = match &slot.staged {
        Err(e) => {
            return add(
                "unreadable/staged".into(),
                Severity::Unknown,
                format!(
                    "{}'s staged consumer credential could not be read: {e}",
                    o.app
                ),
            );
        }
        Ok(None) => return,
        Ok(Some(staged)) => staged,
    };
    if let Some(previous) = slot.previous_still_valid()
        && let Some(rotated) = previous.created_at
        && now - rotated > limit(slot)
    {
        add(
            "previous-secret/app".into(),
            Severity::Warning,
            format!(
                "{}'s previous consumer secret (consumer key {}) still logs in {}h after the rotation (revoke_previous_after_hours = {}): whoever still holds it keeps access; `rekey retire {cred}` deletes it (`rekey run` does after the hours)",
                o.app,
                previous.key,
                (now - rotated).num_hours(),
                slot.revoke_previous_after.as_secs() / 3600
            ),
        );
    }
    if staged.state == StagedState::Active {
        let expires = staged.expires_at.map_or_else(String::new, |t| {
            format!(", expires {}", t.format("%Y-%m-%d"))
        });
        match &o.open_rotation {
            None => add(
                "staged-secret/app".into(),
                Severity::Warning,
                format!(
                    "{} holds a staged consumer secret (consumer key {}{}{expires}) that no rotation of rekey's made: `rekey rotate {cred}` is refused until whoever staged it rotates or deletes it (Setup → External Client App Manager → the app → OAuth credentials)",
                    o.app,
                    staged.key,
                    staged
                        .created_by
                        .as_ref()
                        .map_or_else(String::new, |u| format!(", staged by {u}"))
                ),
            ),
            Some((id, _))
                if staged
                    .expires_at
                    .is_some_and(|t| t - now < STAGED_EXPIRY_WARNING) =>
            {
                add(
                    "staged-expiring/app".into(),
                    Severity::Warning,
                    format!(
                        "rotation {id} staged consumer key {} at {}{expires}: finish it before then (`rekey resume {cred}`), or Salesforce drops the pair and the rotation must be aborted",
                        staged.key, o.app
                    ),
                );
            }
            Some(_) => {}
        }
    }
}

fn limit(slot: &ConsumerSlot) -> chrono::Duration {
    chrono::Duration::from_std(slot.revoke_previous_after).unwrap_or(chrono::Duration::MAX) + GRACE
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::observe::fixtures::{at, billing};
    use rekey_api::Staged;
    use std::time::Duration;

    fn with_slot(state: StagedState, key: &str, staged_days: i64, open: bool) -> Observation {
        let mut o = billing(None, None);
        o.consumer = Some(ConsumerSlot {
            staged: Ok(Some(Staged {
                id: "0Hs1".into(),
                key: key.into(),
                state,
                created_by: Some("005admin".into()),
                created_at: Some(at(staged_days)),
                expires_at: Some(at(staged_days + 30)),
            })),
            previous_key: Some("3MVGold".into()),
            revoke_previous_after: Duration::from_secs(24 * 3600),
        });
        if open {
            o.open_rotation = Some((rekey_api::RotationId("r9".into()), at(staged_days)));
        }
        o
    }

    fn found(o: &Observation, now: DateTime<Utc>) -> Vec<(String, String)> {
        let mut found = Vec::new();
        evaluate(o, now, &mut |id, _, message| found.push((id, message)));
        found
    }

    fn ids(o: &Observation, now: DateTime<Utc>) -> Vec<String> {
        found(o, now).into_iter().map(|(id, _)| id).collect()
    }

    #[test]
    fn the_previous_pair_is_reported_only_long_after_its_hours_and_only_when_it_is_rekeys() {
        let o = with_slot(StagedState::Rotated, "3MVGold", 0, false);
        assert!(ids(&o, at(1)).is_empty(), "within hours + grace");
        assert_eq!(ids(&o, at(3)), ["previous-secret/app"]);
        assert!(
            o.consumer.as_ref().unwrap().retire_due(at(1)),
            "run retires after the hours"
        );
        assert!(!o.consumer.as_ref().unwrap().retire_due(at(0)));
        let theirs = with_slot(StagedState::Rotated, "3MVGsomeone", 0, false);
        assert!(ids(&theirs, at(3)).is_empty());
        assert!(
            !theirs.consumer.as_ref().unwrap().retire_due(at(3)),
            "never deletes a pair it did not rotate out"
        );
    }

    #[test]
    fn a_staged_pair_is_someone_elses_without_a_rotation_and_expiring_with_one() {
        let o = with_slot(StagedState::Active, "3MVGnew", 0, false);
        let found = found(&o, at(1));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "staged-secret/app");
        assert!(found[0].1.contains("staged by 005admin"), "{}", found[0].1);
        let open = with_slot(StagedState::Active, "3MVGnew", 0, true);
        assert!(
            ids(&open, at(1)).is_empty(),
            "a young rotation's own staged pair"
        );
        assert_eq!(ids(&open, at(25)), ["staged-expiring/app"]);
        let mut unreadable = open;
        unreadable.consumer.as_mut().unwrap().staged = Err("403 FUNCTIONALITY_NOT_ENABLED".into());
        assert_eq!(ids(&unreadable, at(1)), ["unreadable/staged"]);
    }
}
