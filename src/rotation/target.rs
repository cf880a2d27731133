//! What a rotation publishes to, for either kind of credential: an app that trusts one
//! certificate (the JWT bearer flow), or an External Client App whose consumer key and secret
//! are rotated through Salesforce's staged credentials. The protocol's steps are the same; this
//! is where they mean different calls.

use rekey_api::{
    CertificateTarget, ConsumerSecret, ConsumerSecretTarget, CredentialKind, Error, ErrorKind,
    Fingerprint, Installed, Material, Probe, Proof, Public, Result, Revoked, RotationId, Staged,
    StagedState,
};
use std::fmt;

/// The relying party of one credential.
#[derive(Clone, Copy)]
pub enum Target<'a> {
    /// The app's certificate.
    Certificate(&'a dyn CertificateTarget),
    /// The External Client App's consumer key and secret.
    Consumer(&'a dyn ConsumerSecretTarget),
}

impl fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Certificate(t) => t.fmt(f),
            Target::Consumer(t) => t.fmt(f),
        }
    }
}

impl fmt::Debug for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<'a> Target<'a> {
    /// Which kind of credential it rotates.
    pub fn kind(&self) -> CredentialKind {
        match self {
            Target::Certificate(_) => CredentialKind::JwtCertificate,
            Target::Consumer(_) => CredentialKind::ConsumerSecret,
        }
    }

    /// The certificate target, for the steps only certificates have (the kill switch).
    pub fn certificate(&self) -> Result<&'a dyn CertificateTarget> {
        match self {
            Target::Certificate(t) => Ok(*t),
            Target::Consumer(t) => Err(Error::new(
                ErrorKind::Config,
                format!("{t} rotates a consumer secret, which has no certificate"),
            )),
        }
    }

    /// The read-only preflight of the relying party.
    pub async fn preflight(&self) -> Result<()> {
        match self {
            Target::Certificate(t) => t.preflight().await,
            Target::Consumer(t) => t.preflight().await,
        }
    }

    /// What the app trusts now: its certificate's fingerprint, or its primary consumer
    /// credential's.
    pub async fn installed(&self) -> Result<Option<Fingerprint>> {
        Ok(self.held().await?.map(|(fingerprint, _)| fingerprint))
    }

    /// What the app trusts now with its expiry, for `check`: the certificate's fingerprint and
    /// notAfter, or the primary consumer credential's fingerprint (no expiry).
    pub async fn held(
        &self,
    ) -> Result<Option<(Fingerprint, Option<chrono::DateTime<chrono::Utc>>)>> {
        match self {
            Target::Certificate(t) => Ok(t
                .installed()
                .await?
                .map(|c| (c.fingerprint, Some(c.not_after)))),
            Target::Consumer(t) => Ok(Some((t.primary().await?.fingerprint(), None))),
        }
    }

    /// Asks for one token with `material`. A consumer secret of an app without the client
    /// credentials flow is proven by reading the app's primary pair back instead: accepted when
    /// it is this pair, refused (for good) otherwise.
    pub async fn probe(&self, material: &Material) -> Result<Probe> {
        match self {
            Target::Certificate(t) => t.probe(material.signer()?).await,
            Target::Consumer(t) => {
                let secret = material.consumer()?;
                match t.proof().await? {
                    Proof::ClientCredentials => t.probe(secret).await,
                    Proof::ReadBack => read_back(*t, secret).await,
                }
            }
        }
    }

    /// Makes the app trust `public`: deploys the certificate, or rotates the staged consumer
    /// credential holding that consumer key to primary. Idempotent: a target that already
    /// trusts it changes nothing.
    pub async fn install(&self, public: &Public, rotation_id: &RotationId) -> Result<Installed> {
        match (self, public) {
            (Target::Certificate(t), Public::Certificate(c)) => t.install(c, rotation_id).await,
            (Target::Consumer(t), Public::Consumer(c)) => {
                if t.primary().await?.key() == c.key {
                    return Ok(Installed::AlreadyPresent);
                }
                let staged = t.staged().await?.map(|(s, _)| s);
                match staged {
                    Some(s) if s.key == c.key && s.state == StagedState::Active => {
                        t.rotate(&s.id).await?;
                        Ok(Installed::Deployed {
                            deploy_id: format!("staged credential {} rotated to primary", s.id),
                        })
                    }
                    other => Err(Error::new(
                        ErrorKind::Conflict,
                        format!(
                            "{t}: the staged credential with consumer key {} is {}, so it cannot be rotated to primary",
                            c.key,
                            describe_slot(other.as_ref())
                        ),
                    )
                    .with_hint("abort this rotation (`rekey abort`), which discards its PENDING secret, then rotate again")),
                }
            }
            _ => Err(mismatch(self, public)),
        }
    }

    /// Ends access that outlives the change: sessions and refresh tokens.
    pub async fn revoke_access(&self) -> Result<Revoked> {
        match self {
            Target::Certificate(t) => t.revoke_access().await,
            Target::Consumer(t) => t.revoke_access().await,
        }
    }
}

/// The consumer secret target, for the steps only consumer secrets have.
pub fn consumer<'a>(target: &Target<'a>) -> Result<&'a dyn ConsumerSecretTarget> {
    match target {
        Target::Consumer(t) => Ok(*t),
        Target::Certificate(t) => Err(Error::new(
            ErrorKind::Config,
            format!("{t} rotates a certificate, which has no consumer secret"),
        )),
    }
}

/// "Active, staged by 005… on 2026-12-06" / "empty", for messages.
pub fn describe_slot(staged: Option<&Staged>) -> String {
    match staged {
        None => "not there (the slot is empty)".to_string(),
        Some(s) => format!(
            "{} (consumer key {}, staged{}{})",
            s.state,
            s.key,
            s.created_by
                .as_ref()
                .map_or_else(String::new, |u| format!(" by {u}")),
            s.created_at.map_or_else(String::new, |t| format!(
                " on {}",
                t.format("%Y-%m-%d %H:%M UTC")
            ))
        ),
    }
}

async fn read_back(target: &dyn ConsumerSecretTarget, secret: &ConsumerSecret) -> Result<Probe> {
    let primary = target.primary().await?;
    Ok(if primary.fingerprint() == secret.fingerprint() {
        Probe::Accepted {
            instance_url: format!("{target} (read back: it is the app's primary consumer secret)"),
        }
    } else if primary.key() == secret.key() {
        Probe::Rejected {
            error: "read_back".into(),
            description: "the app's primary consumer key is this one but its secret differs".into(),
            may_clear: false,
        }
    } else {
        Probe::Rejected {
            error: "read_back".into(),
            description: format!(
                "the app's primary consumer key is {}, not {}",
                primary.key(),
                secret.key()
            ),
            may_clear: false,
        }
    })
}

fn mismatch(target: &Target<'_>, public: &Public) -> Error {
    Error::new(
        ErrorKind::Unexpected,
        format!(
            "{target} rotates a {} credential but was handed a {} generation",
            target.kind(),
            public.kind()
        ),
    )
}

/// The refusal to undo a consumer secret rotation whose new pair is already primary.
pub fn rotated_already(credential: &str, target: &str) -> Error {
    Error::new(
        ErrorKind::Conflict,
        format!(
            "{credential}: the new consumer secret is already the primary one of {target}, and Salesforce cannot make the previous one primary again; both pairs work until the previous one is deleted, so no consumer is cut off"
        ),
    )
    .with_hint(format!(
        "finish the rotation instead: `rekey resume {credential}` (the previous pair stays valid until it is retired)"
    ))
}

/// The refusal to start a consumer secret rotation while the staged slot holds an Active pair
/// that no rotation of rekey made (it is never adopted, rotated or deleted).
pub(super) fn someone_elses(credential: &str, target: &str, slot: &Staged) -> Error {
    Error::new(
        ErrorKind::Conflict,
        format!(
            "{credential}: the staged slot of {target} is taken by staged credential {}: {}, which this rotation did not make; nothing was changed",
            slot.id,
            describe_slot(Some(slot))
        ),
    )
    .with_hint(format!(
        "someone else may be rotating this app's consumer secret: rekey never deletes or adopts their staged credential. The app's Setup page (Manage Consumer Details) shows it; finish or delete it there, or wait for it to expire, then run `rekey rotate {credential}` again"
    ))
}
