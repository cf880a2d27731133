//! The plan as data: the steps the next rotation of a credential would run (or the rest of the open
//! one), each in words, read from the stores alone — what `rekey plan` prints.

use super::emergency::Emergency;
use super::history::{next_generation, open_rotation};
use super::setup::Rotation;
use crate::config::OnAdoptionFailure;
use rekey_api::{Generation, Result, RotationId, Step};
use serde::Serialize;

/// A step as data: what `rekey plan` prints and `rekey rotate` executes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlannedStep {
    /// Which step.
    pub step: Step,
    /// What it will do, in words.
    pub action: String,
    /// Whether it changes something outside rekey's memory.
    pub mutates: bool,
}

/// The plan of the next rotation of a credential.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// Credential name.
    pub credential: String,
    /// The open rotation this plan resumes, if any.
    pub resumes: Option<RotationId>,
    /// Generation that is CURRENT now.
    pub current_generation: Option<Generation>,
    /// Generation the rotation introduces.
    pub new_generation: Generation,
    /// Steps still to run, in order.
    pub steps: Vec<PlannedStep>,
}

/// Builds the plan for `credential` from its store state alone (no network): the open rotation's
/// remaining steps, else those of a new rotation (an emergency one when `emergency` is given).
pub async fn plan(rotation: &Rotation<'_>, emergency: Option<&Emergency>) -> Result<Plan> {
    let stages = rotation.primary().stages(rotation.credential).await?;
    let journal = rotation.primary().read_journal(rotation.credential).await?;
    let open = open_rotation(&journal);
    let current_generation = stages.current.as_ref().map(|v| v.generation);
    let new_generation = open.as_ref().map_or_else(
        || next_generation(&journal, current_generation),
        |o| o.generation,
    );
    let done = open
        .as_ref()
        .map(|o| rotation.done_on_resume(o))
        .unwrap_or_default();
    let undoing = open.as_ref().is_some_and(|o| o.undoing.is_some());
    let emergency = match &open {
        Some(o) => o.emergency.as_ref(),
        None => emergency,
    };
    let spec = rotation.spec;
    let consumers = rotation.consumer_names();
    let longest_wait = rotation
        .consumers
        .consumers
        .iter()
        .map(|c| c.adopt_timeout())
        .max()
        .unwrap_or_default()
        .as_secs();
    let on_unadopted = match (emergency, rotation.consumers.on_adoption_failure) {
        (Some(_), _) | (None, OnAdoptionFailure::Alert) => "keep the new key and alert",
        (None, OnAdoptionFailure::Rollback) => "roll the rotation back",
    };
    let steps = rotation
        .steps(emergency, undoing)
        .into_iter()
        .filter(|s| !done.contains(s))
        .map(|step| {
            let secret = rotation.target.kind() == rekey_api::CredentialKind::ConsumerSecret;
            let (action, mutates) = match step {
                Step::Generate if secret => (
                    format!("ask {} to stage a new consumer key and secret (they cannot log in until rotated); a staged credential someone else made stops the rotation", rotation.target),
                    true,
                ),
                Step::Publish if secret => (
                    format!("rotate the staged credential to primary on {}; the previous consumer secret stays valid until retired, so no consumer is cut off", rotation.target),
                    true,
                ),
                Step::Verify if secret => (
                    format!("prove the new consumer secret works: a client credentials login (or, without that flow, read it back) within {}s", rotation.verify_timeout.as_secs()),
                    false,
                ),
                Step::Revoke if secret => (
                    format!("delete the old consumer secret at {} and prove it refused, then end the run-as user's sessions and the app's refresh tokens", rotation.target),
                    true,
                ),
                Step::Retire => (
                    format!("delete the previous consumer secret at {} once every consumer adopted the new one; else keep it valid for {}h (then `rekey run` deletes it)", rotation.target, rotation.revoke_previous_after.as_secs() / 3600),
                    true,
                ),
                Step::Restore if secret => (
                    format!("delete the consumer secret this rotation staged at {} (refused once it is primary: `rekey resume` finishes)", rotation.target),
                    true,
                ),
                Step::Generate => (
                    format!(
                        "generate an {} key and a self-signed certificate for CN={} valid {} days; prove they match",
                        spec.algorithm, spec.subject.cn, spec.validity_days
                    ),
                    false,
                ),
                Step::Stage => (format!("write generation {new_generation} as PENDING in {}", rotation.store_names()), true),
                Step::Prepare => (format!("tell {consumers} that generation {new_generation} is coming (prepare); any refusal stops the rotation before the switchover"), true),
                Step::Activate => (format!("tell {consumers} to use generation {new_generation} now (activate)"), true),
                Step::Adopt => (format!("wait until every consumer ({consumers}) shows it uses generation {new_generation} (up to {longest_wait}s each); else {on_unadopted}"), false),
                Step::Recall => (format!("tell {consumers} to use the previous generation again (activate)"), true),
                Step::Publish => (
                    format!("deploy the new certificate to {} (checkOnly, then deploy; every other field kept)", rotation.target),
                    true,
                ),
                Step::Verify if emergency.is_some() => (
                    format!(
                        "mint tokens with the new key and the old one until Salesforce accepts the new AND refuses the old (up to {}s); never put the old certificate back",
                        rotation.verify_timeout.as_secs()
                    ),
                    false,
                ),
                Step::Verify => (
                    format!(
                        "mint a token signed by the new key until Salesforce accepts it (up to {}s)",
                        rotation.verify_timeout.as_secs()
                    ),
                    false,
                ),
                Step::OauthOff => (format!("switch OAuth off for {}: every token request is refused, with any key", rotation.target), true),
                Step::OauthOn => (format!("switch OAuth on again for {} (it holds the new certificate)", rotation.target), true),
                Step::Revoke => (format!("delete every live session of the integration user and revoke the grants and tokens of {}", rotation.target), true),
                Step::Destroy => (format!("destroy every generation before {new_generation} in {}", rotation.store_names()), true),
                Step::Promote => (format!("make generation {new_generation} CURRENT; the old key becomes PREVIOUS"), true),
                Step::Finalize if secret => ("confirm the app's primary consumer secret equals CURRENT and close the journal".to_string(), true),
                Step::Finalize => ("confirm the app's certificate equals CURRENT and close the journal".to_string(), true),
                Step::Restore => (format!("put the previous certificate back on {} and prove the previous key is accepted", rotation.target), true),
                Step::Revert => (format!("make the previous generation CURRENT again and clear generation {new_generation} from {}", rotation.store_names()), true),
                Step::Close => ("close the rotation as undone".to_string(), true),
                // Never among a rotation's steps (`Rotation::steps`); named if ever listed.
                Step::RevokeGrant | Step::Suppress | Step::AlertState => (format!("{step}: a governance event, not a rotation step"), false),
            };
            PlannedStep { step, action, mutates }
        })
        .collect();
    Ok(Plan {
        credential: rotation.credential.to_string(),
        resumes: open.map(|o| o.rotation_id),
        current_generation,
        new_generation,
        steps,
    })
}
