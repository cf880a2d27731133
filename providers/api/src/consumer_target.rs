//! The consumer secret target contract: an External Client App whose consumer key and secret are
//! rotated through Salesforce's staged credentials (stage → rotate → delete the rotated pair),
//! and that can be asked whether it accepts a client credentials login with a given pair.

use crate::{ConsumerSecret, Probe, Result, Revoked};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::fmt;

/// The state of the consumer's staged credential slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StagedState {
    /// Staged and not yet rotated: it cannot log in until it is rotated to primary.
    Active,
    /// The former primary pair after a rotation: still logs in until deleted or expired.
    Rotated,
    /// Past its expiry: it no longer logs in.
    Expired,
}

impl fmt::Display for StagedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StagedState::Active => "Active",
            StagedState::Rotated => "Rotated",
            StagedState::Expired => "Expired",
        })
    }
}

/// The staged credential slot as Salesforce describes it; the secret is apart, in a
/// [`ConsumerSecret`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Staged {
    /// Salesforce's id for it (what rotate and delete name).
    pub id: String,
    /// Its consumer key.
    pub key: String,
    /// Active, Rotated or Expired.
    pub state: StagedState,
    /// Who staged it (a user id), when Salesforce says.
    pub created_by: Option<String>,
    /// When it was staged (or, for a Rotated pair, when it was rotated out).
    pub created_at: Option<DateTime<Utc>>,
    /// When Salesforce removes it by itself.
    pub expires_at: Option<DateTime<Utc>>,
}

/// How a new consumer secret is proven to work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proof {
    /// The app has the client credentials flow with a run-as user: mint a token with the pair.
    ClientCredentials,
    /// The app has no client credentials flow: read the primary pair back and compare.
    ReadBack,
}

/// An External Client App whose consumer key and secret are rotated in place.
#[async_trait]
pub trait ConsumerSecretTarget: fmt::Display + fmt::Debug + Send + Sync {
    /// Read-only preflight: the admin connection works, the app exists and is a local External
    /// Client App, the org lets the admin read and stage its consumer secrets over REST, and the
    /// app is not the one rekey's own admin session uses.
    ///
    /// # Behavior
    /// - Never writes. Each documented refusal (the org setting off, a missing permission) is a
    ///   `Permission` or `Config` error naming the setting or permission and where to change it.
    async fn preflight(&self) -> Result<()>;

    /// How this app proves a new pair works: by a client credentials login when the flow is on
    /// with a run-as user, else by reading it back.
    async fn proof(&self) -> Result<Proof>;

    /// The app's primary consumer key and secret, read from Salesforce.
    async fn primary(&self) -> Result<ConsumerSecret>;

    /// The staged slot, with its secret when Salesforce returns it; `None` when nothing is
    /// staged.
    async fn staged(&self) -> Result<Option<(Staged, Option<ConsumerSecret>)>>;

    /// The id of the user rekey's admin session acts as (`005…`), to tell a staged credential
    /// rekey made ([`Staged::created_by`]) from one somebody else made; `None` when it cannot be
    /// known (an admin session borrowed as a bare access token).
    async fn admin_user_id(&self) -> Result<Option<String>>;

    /// Creates a staged credential (a new key and secret that cannot log in until rotated).
    ///
    /// # Behavior
    /// - Fails with `Conflict` when the slot is taken (only one may exist per consumer), naming
    ///   its state, who staged it and when; it is never deleted silently.
    async fn stage(&self) -> Result<(Staged, ConsumerSecret)>;

    /// Makes the staged credential `staged_id` the primary one; the former primary pair moves to
    /// the staged slot as `Rotated` and keeps working until deleted or expired.
    ///
    /// # Behavior
    /// - Not idempotent by itself (a second rotate fails): callers check [`Self::primary`] first.
    async fn rotate(&self, staged_id: &str) -> Result<()>;

    /// Deletes the staged credential `staged_id`: a staged pair never used, or a Rotated pair,
    /// which is refused at once afterwards.
    ///
    /// # Behavior
    /// - Succeeds when it is already gone (deleted or expired).
    async fn delete_staged(&self, staged_id: &str) -> Result<()>;

    /// Requests one token with `secret` through the client credentials flow.
    ///
    /// # Behavior
    /// - Never changes anything on the app. A refusal is `Ok(Probe::Rejected)` with Salesforce's
    ///   error code and text; errors are transport or server failures.
    async fn probe(&self, secret: &ConsumerSecret) -> Result<Probe>;

    /// Ends access that outlives a secret change: the client credentials run-as user's live
    /// sessions and every refresh token of the app.
    ///
    /// # Behavior
    /// - Idempotent: a second call finds nothing left and reports zero counts.
    async fn revoke_access(&self) -> Result<Revoked>;
}
