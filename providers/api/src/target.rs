//! The certificate target contract: an app that trusts exactly one certificate and can be asked
//! whether it accepts a token signed by a given key.

use crate::{Certificate, Result, RotationId, Signer};
use async_trait::async_trait;
use std::fmt;

/// What [`CertificateTarget::install`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Installed {
    /// The app already held this certificate; nothing was deployed.
    AlreadyPresent,
    /// A deployment replaced the app's certificate.
    Deployed {
        /// The relying party's id for the change (a Metadata deploy id).
        deploy_id: String,
    },
}

/// The answer to one token request signed with a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// A token was issued. The token itself is not kept.
    Accepted {
        /// The instance URL the token is for.
        instance_url: String,
    },
    /// The relying party refused, with its own error code and text.
    Rejected {
        /// e.g. `invalid_grant`.
        error: String,
        /// e.g. `invalid assertion`.
        description: String,
        /// Whether this refusal can clear by itself (a certificate change still propagating),
        /// as opposed to a configuration error that waiting will not fix.
        may_clear: bool,
    },
}

/// What [`CertificateTarget::revoke_access`] ended: counts only, never a token.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Revoked {
    /// Live sessions of the integration user that were deleted (Salesforce `AuthSession`).
    pub sessions: u32,
    /// Refresh-token grants of the app that were revoked (`OauthToken` rows, through
    /// `/services/oauth2/revoke` with their `DeleteToken`).
    pub grants: u32,
    /// External Client Apps: whether every refresh token of the app was deleted through
    /// `DELETE /apps/oauth/usage/{appId}/tokens` (`None` for a Connected App).
    pub app_tokens_deleted: Option<bool>,
}

/// An app (Salesforce Connected App or External Client App) that trusts one certificate.
#[async_trait]
pub trait CertificateTarget: fmt::Display + fmt::Debug + Send + Sync {
    /// Read-only preflight: the admin connection works and the app exists.
    ///
    /// # Behavior
    /// - Never writes.
    async fn preflight(&self) -> Result<()>;

    /// The certificate the app holds now, read from the relying party (not assumed).
    ///
    /// # Behavior
    /// - `Ok(None)` when the app exists but holds no certificate.
    /// - `NotFound` when the app does not exist.
    async fn installed(&self) -> Result<Option<Certificate>>;

    /// Makes the app trust `certificate` instead of whatever it trusts now. Every other setting
    /// of the app is preserved (read-modify-write).
    ///
    /// # Behavior
    /// - Idempotent by fingerprint: if the app already holds `certificate`, returns
    ///   [`Installed::AlreadyPresent`] and deploys nothing.
    /// - This is the switchover point: from its success on, consumers holding the old key
    ///   may be refused.
    /// - Fails with `Rejected` carrying the relying party's failure text verbatim.
    async fn install(
        &self,
        certificate: &Certificate,
        rotation_id: &RotationId,
    ) -> Result<Installed>;

    /// Requests one token signed by `signer` (the new key, here or in its service) for the
    /// configured integration user.
    ///
    /// # Behavior
    /// - Never changes anything on the app. A refusal is `Ok(Probe::Rejected)`, not an error;
    ///   errors are transport or server failures.
    async fn probe(&self, signer: Signer<'_>) -> Result<Probe>;

    /// Whether the app's OAuth is switched on: `Some` for an External Client App
    /// (`ExtlClntAppConfigurablePolicies.isOauthPluginEnabled`), `None` for a Connected App, which
    /// has no such switch.
    async fn oauth_enabled(&self) -> Result<Option<bool>>;

    /// The emergency kill switch: switches the External Client App's OAuth off (every grant is
    /// refused, with any key) or on again, keeping every other policy setting.
    ///
    /// # Behavior
    /// - Idempotent: setting the state the app already has deploys nothing.
    /// - `Config` error for a Connected App.
    async fn set_oauth_enabled(&self, enabled: bool, rotation_id: &RotationId) -> Result<()>;

    /// Ends access that outlives a certificate change: deletes every live session of the
    /// integration user, revokes every refresh-token grant of the app, and for an External Client
    /// App deletes all its refresh tokens.
    ///
    /// # Behavior
    /// - Idempotent: a second call finds nothing left and reports zero counts.
    /// - Call it only after the old key is proven refused, or the holder of the old key mints a
    ///   new session at once.
    async fn revoke_access(&self) -> Result<Revoked>;
}
