//! An External Client App's OAuth consumer and its credential lifecycle (Salesforce Help, "Stage,
//! Rotate, and Delete OAuth Credentials for an External Client App"): the primary consumer
//! key/secret live on the ECA's global OAuth settings component (so `readMetadata` always shows the
//! primary key), and at most one staged credential sits next to them. A staged `Active` pair is
//! not usable until rotated; a rotate swaps it in and keeps the former primary pair as `Rotated`,
//! still valid for logins, until it is deleted or its 30 days are over. Also the lookup of a
//! consumer key/secret pair for the client credentials grant, and runtime permission changes.

use super::*;

/// How long a staged (or rotated-out) credential stays valid: 30 days.
pub(crate) const STAGED_LIFETIME_SECS: i64 = 30 * 86_400;

/// Where a staged credential stands, before expiry is taken into account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StagedKind {
    /// Created by a stage call, waiting to be rotated in; not usable for logins.
    Active,
    /// The former primary pair after a rotate; still accepted for logins.
    Rotated,
}

/// The one staged credential an ECA consumer may have.
#[derive(Debug, Clone)]
pub(crate) struct StagedCredential {
    pub(crate) id: String,
    pub(crate) key: String,
    pub(crate) secret: String,
    pub(crate) kind: StagedKind,
    /// User id of who staged (or rotated) it.
    pub(crate) created_by: String,
    /// Unix seconds (simulated clock).
    pub(crate) created: i64,
    pub(crate) expires: i64,
}

impl StagedCredential {
    /// `Active`, `Rotated`, or `Expired` once `now` is past the expiration date.
    pub(crate) fn state_at(&self, now: i64) -> &'static str {
        match self.kind {
            _ if now > self.expires => "Expired",
            StagedKind::Active => "Active",
            StagedKind::Rotated => "Rotated",
        }
    }

    fn expired_at(&self, now: i64) -> bool {
        now > self.expires
    }
}

/// Why a staged-credential change was refused: (HTTP status, errorCode, message).
pub(crate) type ConsumerError = (u16, &'static str, String);

/// A consumer key the token endpoint accepts, with the secret that goes with it.
#[derive(Debug, Clone)]
pub(crate) struct ConsumerPair {
    pub(crate) app: AppView,
    pub(crate) secret: Option<String>,
}

impl OrgState {
    /// The primary (key, secret) of an ECA, from its global OAuth settings; `None` when the ECA
    /// has no global settings component (no OAuth consumer).
    pub(crate) fn eca_primary(&self, eca: &str) -> Option<(String, String)> {
        let (_, c) = self.satellite(ECA_GLOBAL, eca)?;
        Some((
            c.element.child_text("consumerKey")?.to_string(),
            c.element
                .child_text("consumerSecret")
                .unwrap_or("")
                .to_string(),
        ))
    }

    /// The consumer id of an ECA: its app id with the ConnectedApplication key prefix (`0H4`),
    /// so it is stable for the app and distinct from every other id.
    pub(crate) fn eca_consumer_id(&self, eca: &str) -> Option<String> {
        self.eca_primary(eca)?;
        let app_id = &self.component(ECA, eca)?.id;
        Some(id18(&format!("0H4{}", app_id.get(3..15)?)))
    }

    /// The staged credential of an ECA (expired ones included).
    pub(crate) fn staged_credential(&self, eca: &str) -> Option<&StagedCredential> {
        self.staged.get(eca)
    }

    /// Stages a new key/secret pair for the ECA. An unexpired staged credential (Active or
    /// Rotated) blocks it; an expired one is replaced.
    pub(crate) fn stage_credential(
        &mut self,
        eca: &str,
        by: &str,
    ) -> Result<StagedCredential, ConsumerError> {
        let now = self.now();
        if self.staged.get(eca).is_some_and(|s| !s.expired_at(now)) {
            return Err((
                400,
                "INVALID_INPUT",
                "A staged credential already exists for this consumer. Rotate or delete it \
                 before staging new credentials."
                    .into(),
            ));
        }
        let staged = StagedCredential {
            id: self.new_id("0Hs"),
            key: fresh_consumer_key(),
            secret: fresh_consumer_secret(),
            kind: StagedKind::Active,
            created_by: by.to_string(),
            created: now,
            expires: now + STAGED_LIFETIME_SECS,
        };
        self.staged.insert(eca.to_string(), staged.clone());
        let label = self.eca_label(eca);
        self.audit(
            by,
            "stageEcaCredential",
            "External Client Apps",
            format!("Staged new OAuth consumer credentials for External Client App {label}"),
        );
        Ok(staged)
    }

    /// Rotates the staged `Active` credential `id` in: it becomes the primary pair, the former
    /// primary pair becomes the staged `Rotated` one (new id, 30 more days).
    pub(crate) fn rotate_credential(
        &mut self,
        eca: &str,
        id: &str,
        by: &str,
    ) -> Result<StagedCredential, ConsumerError> {
        let now = self.now();
        let staged = match self.staged.get(eca) {
            Some(s) if same_id(&s.id, id) => s.clone(),
            _ => return Err(not_staged(id)),
        };
        if staged.state_at(now) != "Active" {
            return Err((
                400,
                "INVALID_INPUT",
                format!(
                    "The staged credential {id} is {} and can't be rotated; only an Active \
                     staged credential can.",
                    staged.state_at(now)
                ),
            ));
        }
        let (old_key, old_secret) = self.eca_primary(eca).ok_or_else(|| not_staged(id))?;
        let member = self
            .satellite(ECA_GLOBAL, eca)
            .map(|(m, _)| m.to_string())
            .ok_or_else(|| not_staged(id))?;
        let component = self
            .components
            .get_mut(&(ECA_GLOBAL.name.to_string(), member))
            .expect("found above");
        component.element.set_child_text("consumerKey", &staged.key);
        component
            .element
            .set_child_text("consumerSecret", &staged.secret);
        component.modified = now;
        component.modified_by = by.to_string();
        let rotated = StagedCredential {
            id: self.new_id("0Hs"),
            key: old_key,
            secret: old_secret,
            kind: StagedKind::Rotated,
            created_by: by.to_string(),
            created: now,
            expires: now + STAGED_LIFETIME_SECS,
        };
        self.staged.insert(eca.to_string(), rotated.clone());
        let label = self.eca_label(eca);
        self.audit(
            by,
            "rotateEcaCredential",
            "External Client Apps",
            format!("Rotated OAuth consumer credentials for External Client App {label}"),
        );
        Ok(rotated)
    }

    /// Deletes the staged credential `id` (whatever its state); a Rotated pair stops working at
    /// once.
    pub(crate) fn delete_credential(
        &mut self,
        eca: &str,
        id: &str,
        by: &str,
    ) -> Result<(), ConsumerError> {
        match self.staged.get(eca) {
            Some(s) if same_id(&s.id, id) => {
                self.staged.remove(eca);
            }
            _ => return Err(not_staged(id)),
        }
        let label = self.eca_label(eca);
        self.audit(
            by,
            "deleteEcaCredential",
            "External Client Apps",
            format!("Deleted staged OAuth consumer credentials for External Client App {label}"),
        );
        Ok(())
    }

    /// The app a consumer key belongs to and the secret valid with it: a Connected App's or
    /// ECA's primary key, or an ECA's unexpired `Rotated` key. A staged `Active` key is not
    /// usable yet.
    pub(crate) fn consumer_pair(&self, key: &str) -> Option<ConsumerPair> {
        if let Some(app) = self.app_by_consumer_key(key) {
            let (_, secret) = self.refresh_secret(&app);
            return Some(ConsumerPair { app, secret });
        }
        let now = self.now();
        let (eca, staged) = self
            .staged
            .iter()
            .find(|(_, s)| s.key == key && s.kind == StagedKind::Rotated && !s.expired_at(now))?;
        Some(ConsumerPair {
            app: self.app_view(ECA, eca)?,
            secret: Some(staged.secret.clone()),
        })
    }

    /// Whether `text` is a staged (or rotated-out) key or secret of some ECA.
    pub(crate) fn is_staged_credential(&self, text: &str) -> bool {
        self.staged
            .values()
            .any(|s| s.key == text || s.secret == text)
    }

    /// The ECA's label (its name when it has none).
    pub(crate) fn eca_label(&self, eca: &str) -> String {
        self.app_label(&app_key(ECA, eca))
            .unwrap_or_else(|| eca.to_string())
    }

    /// Grants (`true`) or takes away (`false`) a permission of a user at runtime, whatever the
    /// seed's profiles and permission sets say (the `Permissions*` fields of SOQL keep showing
    /// the seed).
    pub(crate) fn set_user_permission(
        &mut self,
        username: &str,
        permission: &str,
        granted: bool,
    ) -> Result<(), String> {
        let id = self
            .user_by_username(username)
            .ok_or(format!("unknown user {username}"))?
            .id
            .clone();
        self.permission_overrides
            .insert((id, permission.to_string()), granted);
        Ok(())
    }
}

fn not_staged(id: &str) -> ConsumerError {
    (
        404,
        "NOT_FOUND",
        format!("No staged credential with id {id} exists for this consumer."),
    )
}

/// A new consumer key: `3MVG9` and 80 base64-ish characters, like Salesforce's (85 in all).
pub(crate) fn fresh_consumer_key() -> String {
    random_token(80, "3MVG9")
}

/// A new consumer secret: 64 upper-case hex characters.
pub(crate) fn fresh_consumer_secret() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    hex::encode_upper(bytes)
}
