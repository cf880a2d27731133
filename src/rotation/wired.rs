//! A credential's rotation from its configuration: the stores, the app and the consumers it names,
//! built, then handed to the protocol. What `rekey rotate`, `rekey run` and `rekey emergency` share.

use super::emergency::Emergency;
use super::inflight::rotate;
use super::outcome::{Closed, Progress, Stopped};
use super::plan::{Plan, plan};
use super::setup::{Intent, Rotation};
use super::target::Target;
use crate::config::{Config, CredentialConfig};
use crate::consumers::CredentialConsumers;
use crate::wiring;
use rekey_api::{CredentialKind, Result, SecretStore};
use rekey_salesforce::{BatchMember, SalesforceTarget};

/// The plan of `cred`'s next rotation (an `emergency` one when given) from its stores alone.
pub async fn plan_credential(
    config: &Config,
    cred: &CredentialConfig,
    emergency: Option<&Emergency>,
) -> Result<Plan> {
    let stores = wiring::stores(config, cred).await?;
    let target = wiring::salesforce_target(config, cred)?;
    let consumers = CredentialConsumers::from_config(cred, wiring::environment())?;
    plan(&rotation_of(cred, &stores, &target, &consumers), emergency).await
}

pub(super) fn rotation_of<'a>(
    cred: &'a CredentialConfig,
    stores: &'a [Box<dyn SecretStore>],
    target: &'a SalesforceTarget,
    consumers: &'a CredentialConsumers,
) -> Rotation<'a> {
    Rotation {
        credential: &cred.name,
        stores,
        target: target_of(cred, target),
        spec: &cred.cert,
        verify_timeout: cred.verify_timeout,
        resume_max_age: cred.resume_max_age,
        on_verify_failure: cred.on_verify_failure,
        consumers,
        revoke_previous_after: cred.revoke_previous_after,
    }
}

/// Rotates (resumes, aborts) one credential: the stores and app it names, then the protocol.
pub async fn rotate_credential(
    config: &Config,
    cred: &CredentialConfig,
    intent: &Intent,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> std::result::Result<Closed, Stopped> {
    rotate_credential_in(config, cred, intent, None, progress).await
}

/// [`rotate_credential`], its certificate published in the one deployment of `batch` (a member of
/// it) together with the other members' (`rekey run`'s batches of one org), or alone (`None`).
pub async fn rotate_credential_in(
    config: &Config,
    cred: &CredentialConfig,
    intent: &Intent,
    batch: Option<BatchMember>,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> std::result::Result<Closed, Stopped> {
    let stores = wiring::stores(config, cred)
        .await
        .map_err(Stopped::before_start)?;
    let mut target = wiring::salesforce_target(config, cred).map_err(Stopped::before_start)?;
    if let Some(member) = batch {
        target = target.in_batch(member);
    }
    // Built first: a webhook secret that cannot be read stops the rotation before it starts.
    let consumers = CredentialConsumers::from_config(cred, wiring::environment())
        .map_err(Stopped::before_start)?;
    rotate(
        &rotation_of(cred, &stores, &target, &consumers),
        intent,
        progress,
    )
    .await
}

/// What `cred` rotates on its app: the certificate, or the consumer secret.
pub fn target_of<'a>(cred: &CredentialConfig, target: &'a SalesforceTarget) -> Target<'a> {
    match cred.kind {
        CredentialKind::JwtCertificate => Target::Certificate(target),
        CredentialKind::ConsumerSecret => Target::Consumer(target),
    }
}
