//! What one rotation is given: the credential, its stores (primary first), the app, what to
//! generate, its timeouts and policies, its consumers — and what the operator asked for.

use super::emergency::Emergency;
use super::history::OpenRotation;
use super::target::Target;
use crate::config::OnVerifyFailure;
use crate::consumers::CredentialConsumers;
use crate::pki::CertSpec;
use rekey_api::{CredentialKind, SecretStore, Step};
use std::collections::BTreeSet;
use std::time::Duration;

/// Everything one rotation needs.
pub struct Rotation<'a> {
    /// The credential's name.
    pub credential: &'a str,
    /// Where its keys live, primary first. The primary also holds the journal and the lease;
    /// every store receives the same generations.
    pub stores: &'a [Box<dyn SecretStore>],
    /// The app that trusts its certificate or holds its consumer secret.
    pub target: Target<'a>,
    /// What to generate.
    pub spec: &'a CertSpec,
    /// How long Salesforce may take to accept the new key.
    pub verify_timeout: Duration,
    /// `Intent::Rotate` continues an open rotation younger than this and refuses an older one.
    pub resume_max_age: Duration,
    /// What to do when Salesforce never accepts the published key.
    pub on_verify_failure: OnVerifyFailure,
    /// Who uses the key, and what to do when one of them does not adopt a new one.
    pub consumers: &'a CredentialConsumers,
    /// Consumer secrets: how long the previous pair stays valid when adoption was not proven.
    pub revoke_previous_after: Duration,
}

impl Rotation<'_> {
    /// The store that holds the journal and the lease, and the one staged first.
    pub(super) fn primary(&self) -> &dyn SecretStore {
        self.stores[0].as_ref()
    }

    /// The steps a rotation runs, in order: `undoing` one, an `emergency` one, or a plain one;
    /// without consumers, none of the consumer steps.
    pub(super) fn steps(&self, emergency: Option<&Emergency>, undoing: bool) -> Vec<Step> {
        self.steps_of(emergency, undoing, false)
    }

    /// [`Rotation::steps`], or a retire's own two steps.
    pub(super) fn steps_of(
        &self,
        emergency: Option<&Emergency>,
        undoing: bool,
        retire_only: bool,
    ) -> Vec<Step> {
        if retire_only {
            return vec![Step::Retire, Step::Finalize];
        }
        let steps = if undoing {
            Step::UNDO.to_vec()
        } else if let Some(e) = emergency {
            e.steps()
        } else {
            Step::ALL.to_vec()
        };
        let has_consumers = !self.consumers.consumers.is_empty();
        let consumer_secret = self.target.kind() == CredentialKind::ConsumerSecret;
        steps
            .into_iter()
            .filter(|s| has_consumers || !s.is_consumer_step())
            .filter(|s| consumer_secret || *s != Step::Retire)
            // The kill switch is the certificate emergency's; a consumer secret's old pair is
            // deleted outright instead.
            .filter(|s| !consumer_secret || !matches!(s, Step::OauthOff | Step::OauthOn))
            .collect()
    }

    /// What a resumed run of `open` counts as done: what the journal says, less the consumer
    /// steps whose answers lived only in the interrupted run. Which consumers refused `activate`
    /// is known only to the run that asked, so `activate` is asked again (idempotent) until
    /// adoption is journaled; and a consumer secret's retire deletes the previous pair only when
    /// every consumer adopted the new one, so before retire a resumed run asks them again rather
    /// than cut off a laggard the interrupted run had found.
    pub(super) fn done_on_resume(&self, open: &OpenRotation) -> BTreeSet<Step> {
        let mut done = open.done.clone();
        if !done.contains(&Step::Adopt) {
            done.remove(&Step::Activate);
        }
        if self.target.kind() == CredentialKind::ConsumerSecret
            && open.emergency.is_none()
            && !super::history::is_retire(&open.begun)
            && !done.contains(&Step::Retire)
        {
            done.remove(&Step::Activate);
            done.remove(&Step::Adopt);
        }
        done
    }

    /// The consumers' names, for messages: "etl, billing-api".
    pub(super) fn consumer_names(&self) -> String {
        self.consumers
            .consumers
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The stores, for messages: "file(keys), vault(…)".
    pub(super) fn store_names(&self) -> String {
        self.stores
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What the operator asked for.
#[derive(Clone, Debug)]
pub enum Intent {
    /// `rekey rotate`: continue an open rotation younger than `resume_max_age`, else start one.
    Rotate,
    /// `rekey resume`: continue the open rotation, whatever its age.
    Resume,
    /// `rekey abort`: undo the open rotation.
    Abort {
        /// Why, for the journal.
        reason: String,
    },
    /// `rekey emergency`: a rotation for a leaked key (or the continuation of one).
    Emergency(Emergency),
    /// `rekey retire` and `rekey run`: delete the consumer secret a finished rotation replaced
    /// (it stays valid at Salesforce until then). Journaled as a short run of its own: retire,
    /// finalize.
    Retire,
}

impl Intent {
    pub(super) fn verb(&self) -> &'static str {
        match self {
            Intent::Rotate => "rotate",
            Intent::Resume => "resume",
            Intent::Abort { .. } => "abort",
            Intent::Emergency(_) => "emergency rekey",
            Intent::Retire => "retire",
        }
    }
}
