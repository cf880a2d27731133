//! An External Client App's consumer key and secret as a [`ConsumerSecretTarget`], through
//! Salesforce's staged credentials (Connect REST, API v65.0+, platform.md §3.4): stage a new
//! pair, rotate it to primary (the former pair keeps working as `Rotated`), delete the rotated
//! pair. Connected Apps have no such API and are refused with the manual path.
//!
//! The resources answer secrets: answers are read into zeroed buffers and the secrets moved
//! straight into [`ConsumerSecret`]; no message names a secret, a token or a URL (ids, states,
//! users and dates only).

use crate::access::checked_id;
use crate::client::{Classify, parse_date};
use crate::config::AppKind;
use crate::token::TokenAnswer;
use crate::{SalesforceTarget, metadata};
use async_trait::async_trait;
use rekey_api::{
    ConsumerSecret, ConsumerSecretTarget, Error, ErrorKind, Probe, Proof, Result, Revoked, Staged,
    StagedState,
};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// The staged-credential resources exist from API v65.0 on.
const MIN_API_MAJOR: u32 = 65;

const SETTING_HINT: &str = "turn on \"Allow access to External Client App consumer secrets via REST API\" \
(ExternalClientAppSettings.enableClientSecretInRestApiAccess) in Setup → External Client App Settings";
const PERMISSION_HINT: &str = "give the admin user the \"External Client App Developer\" and \"View Client Secret\" \
permissions (e.g. in a permission set); Salesforce's message above names the one it missed";
const CONFLICT_HINT: &str = "someone else may be rotating this app's consumer secret: rekey never deletes \
their staged credential silently. `rekey status` and the app's Setup page (Manage Consumer Details) show it; \
finish or delete it there, or wait for it to expire, then run again";

/// The ECA's Connect REST ids: the app (`identifier`, `0x…`) and its consumer. Found once per
/// target: they do not change when the consumer key does.
#[derive(Clone, Debug)]
pub(crate) struct ConsumerIds {
    app: String,
    consumer: String,
}

/// Reads Connect's gates out of a refusal: the org setting that lets admins read and stage ECA
/// consumer secrets over REST (403 `FUNCTIONALITY_NOT_ENABLED`, or a message saying the feature
/// is not enabled), and the admin's permissions (403 `INSUFFICIENT_ACCESS`). Both changed nothing.
fn gates(what: &str, status: StatusCode, code: &str, message: &str) -> Option<Error> {
    let lower = message.to_ascii_lowercase();
    let setting_off = code == "FUNCTIONALITY_NOT_ENABLED"
        || (status == StatusCode::FORBIDDEN
            && [
                "not currently enabled",
                "feature is not enabled",
                "not enabled for this user",
            ]
            .iter()
            .any(|m| lower.contains(m)));
    if setting_off {
        return Some(
            Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "{what}: the org does not allow access to External Client App consumer secrets via REST API (HTTP {}: {code}: {message})",
                    status.as_u16()
                ),
            )
            .with_hint(SETTING_HINT)
            .changed_nothing(),
        );
    }
    if status == StatusCode::FORBIDDEN && code.contains("INSUFFICIENT_ACCESS") {
        return Some(
            Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "{what}: the admin user lacks a permission for External Client App consumer secrets (HTTP 403: {code}: {message})"
                ),
            )
            .with_hint(PERMISSION_HINT)
            .changed_nothing(),
        );
    }
    None
}

/// [`gates`], and for a POST of a staged credential Salesforce's answer when the slot is taken
/// (400 `INVALID_INPUT`): a `Conflict` that `stage` then names with what holds the slot.
fn stage_gates(what: &str, status: StatusCode, code: &str, message: &str) -> Option<Error> {
    gates(what, status, code, message).or_else(|| {
        (status == StatusCode::BAD_REQUEST && code == "INVALID_INPUT").then(|| {
            Error::new(
                ErrorKind::Conflict,
                format!("{what}: HTTP 400: {code}: {message}"),
            )
            .with_hint(CONFLICT_HINT)
            .changed_nothing()
        })
    })
}

/// Moves the first string field of `names` out of `v` (no copy of a secret is left behind in
/// `v`).
fn take_str(v: &mut Value, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|name| match v.get_mut(*name).map(Value::take) {
            Some(Value::String(s)) if !s.is_empty() => Some(s),
            _ => None,
        })
}

/// The id at the end of a resource URL (`…/staged/{id}`), ignoring a query and the collection
/// name itself.
fn last_segment(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    path.rsplit('/')
        .find(|s| !s.is_empty())
        .filter(|s| *s != "staged")
        .map(str::to_string)
}

fn parse_state(text: &str) -> Option<StagedState> {
    [
        StagedState::Active,
        StagedState::Rotated,
        StagedState::Expired,
    ]
    .into_iter()
    .find(|s| s.to_string().eq_ignore_ascii_case(text))
}

/// The staged credential in an answer of `…/staged`. Tolerant as real clients are: the
/// documented `{"stagedCredentials": [...]}`, `stagedCredentials` as one object, a bare array,
/// or the credential itself; an empty list is nothing staged. Its id is `id`,
/// `stagedCredentialId`, or the last segment of its `url` / `stagedCredentialsUrl`.
fn parse_staged(mut answer: Value, what: &str) -> Result<Option<(Staged, Option<ConsumerSecret>)>> {
    let mut item = match answer.get_mut("stagedCredentials").map(Value::take) {
        Some(inner) => inner,
        None => answer,
    };
    if let Value::Array(items) = &mut item {
        match items.iter_mut().next() {
            Some(first) => item = first.take(),
            None => return Ok(None),
        }
    }
    if !item.is_object() || item.as_object().is_some_and(|o| o.is_empty()) {
        return Ok(None);
    }
    let bad = |field: &str| {
        Error::new(
            ErrorKind::Unexpected,
            format!("{what}: the staged credential has no {field}"),
        )
    };
    let id = match take_str(&mut item, &["id", "stagedCredentialId"]) {
        Some(id) => id,
        None => take_str(
            &mut item,
            &["url", "stagedCredentialsUrl", "stagedCredentialsURL"],
        )
        .as_deref()
        .and_then(last_segment)
        .ok_or_else(|| bad("id"))?,
    };
    let id = checked_id(&id, what)?.to_string();
    let key = take_str(&mut item, &["key"]).ok_or_else(|| bad("consumer key"))?;
    let state_text = take_str(&mut item, &["state"]).ok_or_else(|| bad("state"))?;
    let state = parse_state(&state_text).ok_or_else(|| {
        Error::new(
            ErrorKind::Unexpected,
            format!("{what}: staged credential {id} is in state '{state_text}', which rekey does not know"),
        )
    })?;
    let secret = take_str(&mut item, &["secret"])
        .map(|s| ConsumerSecret::new(key.clone(), s))
        .transpose()?;
    let date =
        |item: &mut Value, name: &str| take_str(item, &[name]).as_deref().and_then(parse_date);
    let staged = Staged {
        id,
        key,
        state,
        created_by: take_str(&mut item, &["createdBy"]),
        created_at: date(&mut item, "createdDate"),
        expires_at: date(&mut item, "expirationDate"),
    };
    Ok(Some((staged, secret)))
}

/// The `{"key", "secret"}` pair of an answer.
fn parse_pair(mut answer: Value, what: &str) -> Result<ConsumerSecret> {
    match (
        take_str(&mut answer, &["key"]),
        take_str(&mut answer, &["secret"]),
    ) {
        (Some(key), Some(secret)) => ConsumerSecret::new(key, secret),
        _ => Err(Error::new(
            ErrorKind::Unexpected,
            format!("{what}: the answer holds no consumer key and secret"),
        )),
    }
}

/// "Active, staged by 005… on 2026-12-06 11:42:40 UTC, consumer key 3MVG…": what a conflict
/// names.
fn describe(staged: &Staged) -> String {
    let by = staged.created_by.as_deref().unwrap_or("an unknown user");
    let when = staged
        .created_at
        .map_or_else(|| "at an unknown time".to_string(), |d| format!("on {d}"));
    format!(
        "staged credential {} (state {}, staged by {by} {when}, consumer key {})",
        staged.id, staged.state, staged.key
    )
}

fn is_true(record: &crate::xml::Element, field: &str) -> bool {
    record
        .text_at(&[field])
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

impl SalesforceTarget {
    /// Connected Apps have no consumer secret API: every method refuses them.
    fn eca_only(&self) -> Result<()> {
        match self.app_kind {
            AppKind::ExternalClientApp => Ok(()),
            AppKind::ConnectedApp => Err(Error::new(
                ErrorKind::Config,
                format!("{}: Salesforce has no API to rotate a Connected App's consumer secret", self.label()),
            )
            .with_hint("rotate it by hand: Setup → App Manager → the app → Manage Consumer Details → generate a new consumer secret; or migrate the integration to an External Client App, whose consumer secret rekey can rotate")
            .changed_nothing()),
        }
    }

    /// `/services/data/vNN.0/apps/oauth/credentials`, once the API version is known to have it.
    fn credentials_base(&self) -> Result<String> {
        self.eca_only()?;
        let version = self.client.api_version();
        let major = version
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok())
            .unwrap_or(0);
        if major < MIN_API_MAJOR {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "{}: api_version {version} is too old: External Client App staged credentials need API version {MIN_API_MAJOR}.0 or later",
                    self.label()
                ),
            )
            .with_hint(format!("set api_version = \"{MIN_API_MAJOR}.0\" or later for org {}", self.org))
            .changed_nothing());
        }
        Ok(format!("/services/data/v{version}/apps/oauth/credentials"))
    }

    /// One Connect call; its answer as JSON (`Null` when empty).
    async fn connect(
        &self,
        what: &str,
        method: Method,
        path: &str,
        body: Option<&str>,
        classify: &Classify<'_>,
    ) -> Result<Value> {
        let text = self
            .client
            .rest_secret(what, method, path, body, classify)
            .await?;
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| {
            Error::new(
                ErrorKind::Unexpected,
                format!("{what}: unreadable JSON answer"),
            )
            .with_source(e)
        })
    }

    /// The app's and its consumer's Connect ids, found once. The app's comes from the OAuth
    /// usage list by developer name. An ECA normally has one consumer; when Salesforce lists
    /// several, the one whose key is the app's consumer key in its metadata is taken, else the
    /// first listed.
    async fn consumer_ids(&self) -> Result<ConsumerIds> {
        let base = self.credentials_base()?;
        let mut cached = self.consumer_ids.lock().await;
        if let Some(ids) = cached.as_ref() {
            return Ok(ids.clone());
        }
        let app = self.eca_app_id().await?.ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("{} is not in the org's OAuth usage list", self.label()),
            )
            .with_hint("use the app's API name, and enable OAuth on it")
        })?;
        let what = format!("listing the consumers of {}", self.label());
        let app = checked_id(&app, &what)?.to_string();
        let answer = self
            .connect(&what, Method::GET, &format!("{base}/{app}"), None, &gates)
            .await?;
        let consumers: Vec<&Value> = match answer.get("consumers") {
            Some(Value::Array(items)) => items.iter().collect(),
            Some(item @ Value::Object(_)) => vec![item],
            _ => Vec::new(),
        };
        let field = |c: &Value, name: &str| c.get(name).and_then(Value::as_str).map(str::to_string);
        let chosen = if consumers.len() > 1 {
            let app_key = self
                .read_app()
                .await?
                .record
                .text_at(self.consumer_key_path());
            consumers
                .iter()
                .find(|c| app_key.is_some() && field(c, "key") == app_key)
                .or(consumers.first())
        } else {
            consumers.first()
        };
        let consumer = chosen
            .and_then(|c| {
                field(c, "id").or_else(|| field(c, "url").as_deref().and_then(last_segment))
            })
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("{} has no OAuth consumer", self.label()),
                )
                .with_hint("enable OAuth on the app")
            })?;
        let ids = ConsumerIds {
            app,
            consumer: checked_id(&consumer, &what)?.to_string(),
        };
        *cached = Some(ids.clone());
        Ok(ids)
    }

    /// `…/credentials/{appId}/{consumerId}`.
    async fn consumer_path(&self) -> Result<String> {
        let base = self.credentials_base()?;
        let ids = self.consumer_ids().await?;
        Ok(format!("{base}/{}/{}", ids.app, ids.consumer))
    }

    /// The ECA's OAuth policies record, if it has one.
    async fn oauth_policies(&self) -> Result<Option<crate::xml::Element>> {
        Ok(self
            .find_satellite(metadata::ECA_OAUTH_POLICIES)
            .await?
            .map(|(_, record)| record))
    }

    /// The client credentials run-as user named in the policies, if any.
    async fn run_as_user(&self) -> Result<Option<String>> {
        Ok(self
            .oauth_policies()
            .await?
            .and_then(|p| p.text_at(&["clientCredentialsFlowUser"]))
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty()))
    }
}

#[async_trait]
impl ConsumerSecretTarget for SalesforceTarget {
    async fn admin_user_id(&self) -> Result<Option<String>> {
        match self.client.admin_username() {
            Some(admin) => self.user_id(admin, "admin user").await,
            None => Ok(None),
        }
    }

    async fn preflight(&self) -> Result<()> {
        self.credentials_base()?;
        let app = self.read_app().await?;
        let header = self.eca_header().await?;
        if header
            .text_at(&["distributionState"])
            .is_some_and(|s| s.trim().eq_ignore_ascii_case("Packaged"))
        {
            return Err(Error::new(
                ErrorKind::Config,
                format!("{} is a packaged External Client App: Salesforce stages consumer credentials for local apps only", self.label()),
            )
            .with_hint("rotate the consumer secret in the org that owns the package, where the app is local")
            .changed_nothing());
        }
        self.refuse_admin_app(&app, "the consumer secret it logs in with")
            .map_err(Error::changed_nothing)?;
        // A read of the consumer key surfaces the org setting and External Client App
        // Developer before anything is written; reading the staged slot (which answers
        // secrets) surfaces View Client Secret, which stage, rotate and delete need too.
        let what = format!("reading the consumer key of {}", self.label());
        let path = format!("{}?part=key", self.consumer_path().await?);
        self.connect(&what, Method::GET, &path, None, &gates)
            .await?;
        self.staged().await?;
        Ok(())
    }

    async fn proof(&self) -> Result<Proof> {
        self.eca_only()?;
        let global = self.read_app().await?.record;
        let policies = self.oauth_policies().await?;
        let on = is_true(&global, "isClientCredentialsFlowEnabled")
            && policies.as_ref().is_some_and(|p| {
                is_true(p, "isClientCredentialsFlowEnabled")
                    && p.text_at(&["clientCredentialsFlowUser"])
                        .is_some_and(|u| !u.trim().is_empty())
            });
        Ok(if on {
            Proof::ClientCredentials
        } else {
            Proof::ReadBack
        })
    }

    async fn primary(&self) -> Result<ConsumerSecret> {
        let what = format!(
            "reading the primary consumer credentials of {}",
            self.label()
        );
        let path = format!("{}?part=keyandsecret", self.consumer_path().await?);
        let answer = self
            .connect(&what, Method::GET, &path, None, &gates)
            .await?;
        parse_pair(answer, &what)
    }

    async fn staged(&self) -> Result<Option<(Staged, Option<ConsumerSecret>)>> {
        let what = format!(
            "reading the staged consumer credentials of {}",
            self.label()
        );
        let path = format!("{}/staged", self.consumer_path().await?);
        match self.connect(&what, Method::GET, &path, None, &gates).await {
            Ok(answer) => parse_staged(answer, &what),
            // Salesforce answers 404 when nothing is staged.
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn stage(&self) -> Result<(Staged, ConsumerSecret)> {
        let what = format!("staging new consumer credentials for {}", self.label());
        let path = format!("{}/staged", self.consumer_path().await?);
        // Salesforce hangs on a POST without a body.
        let answer = match self
            .connect(&what, Method::POST, &path, Some("{}"), &stage_gates)
            .await
        {
            Ok(answer) => answer,
            Err(e) if e.kind() == ErrorKind::Conflict => {
                return Err(match self.staged().await {
                    Ok(Some((existing, _))) => Error::new(
                        ErrorKind::Conflict,
                        format!(
                            "{what}: the staged slot is taken by {}",
                            describe(&existing)
                        ),
                    )
                    .with_hint(CONFLICT_HINT)
                    .changed_nothing(),
                    _ => e,
                });
            }
            Err(e) => return Err(e),
        };
        match parse_staged(answer, &what)? {
            Some((staged, Some(secret))) => {
                tracing::info!(target_app = %self, staged_id = %staged.id, key = %staged.key, "consumer credentials staged");
                Ok((staged, secret))
            }
            _ => Err(Error::new(
                ErrorKind::Unexpected,
                format!("{what}: Salesforce answered without the staged key and secret"),
            )
            .with_hint("the slot may be taken now: check `rekey status` or the app's Setup page before running again")),
        }
    }

    async fn rotate(&self, staged_id: &str) -> Result<()> {
        let what = format!("rotating staged credential {staged_id} of {}", self.label());
        let path = format!(
            "{}/staged/{}",
            self.consumer_path().await?,
            checked_id(staged_id, &what)?
        );
        self.connect(
            &what,
            Method::PATCH,
            &path,
            Some(r#"{"command":"rotate"}"#),
            &gates,
        )
        .await?;
        tracing::info!(target_app = %self, %staged_id, "staged consumer credentials rotated to primary");
        Ok(())
    }

    async fn delete_staged(&self, staged_id: &str) -> Result<()> {
        let what = format!("deleting staged credential {staged_id} of {}", self.label());
        let path = format!(
            "{}/staged/{}",
            self.consumer_path().await?,
            checked_id(staged_id, &what)?
        );
        match self
            .connect(&what, Method::DELETE, &path, None, &gates)
            .await
        {
            Ok(_) => {
                tracing::info!(target_app = %self, %staged_id, "staged consumer credentials deleted");
                Ok(())
            }
            // Deleted or expired already: what was asked for.
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn probe(&self, secret: &ConsumerSecret) -> Result<Probe> {
        self.eca_only()?;
        let answer = self
            .client
            .token_endpoint()
            .client_credentials(secret)
            .await?;
        Ok(match answer {
            // The access token is dropped (and zeroed) here: a probe never keeps it.
            TokenAnswer::Granted { instance_url, .. } => Probe::Accepted { instance_url },
            TokenAnswer::Refused(refusal) => Probe::Rejected {
                may_clear: refusal.may_clear_for_consumer_secret(),
                error: refusal.error,
                description: refusal.description,
            },
        })
    }

    async fn revoke_access(&self) -> Result<Revoked> {
        self.eca_only()?;
        // The run-as user the app names; without one, the configured integration user.
        let user = self
            .run_as_user()
            .await?
            .unwrap_or_else(|| self.integration_username.clone());
        if let Some(admin) = self.client.admin_username()
            && admin.eq_ignore_ascii_case(&user)
        {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "{}: the run-as user {admin} is rekey's admin user; revoking its sessions would end rekey's own",
                    self.label()
                ),
            )
            .with_hint("log rekey in as a separate admin user"));
        }
        let sessions = match self.user_id(&user, "run-as user").await? {
            Some(user_id) => self.delete_sessions(&user, &user_id).await?,
            None => {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("run-as user {user} of {} not found", self.label()),
                )
                .with_hint(
                    "check the app's client credentials run-as user (clientCredentialsFlowUser)",
                ));
            }
        };
        let app_tokens_deleted = Some(self.delete_eca_tokens().await?);
        tracing::info!(target_app = %self, sessions, ?app_tokens_deleted, "access revoked");
        Ok(Revoked {
            sessions,
            grants: 0,
            app_tokens_deleted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const WHAT: &str = "reading x";

    fn staged_of(v: Value) -> Option<(Staged, Option<ConsumerSecret>)> {
        parse_staged(v, WHAT).unwrap()
    }

    #[test]
    fn staged_answers_in_every_shape_real_clients_meet() {
        let item = json!({"id": "0Xs1", "key": "K2", "secret": "S2", "state": "active",
            "createdBy": "005A", "createdDate": "2026-12-06T11:42:40.000+0000",
            "expirationDate": "2027-01-05T11:42:40.000+0000"});
        for shape in [
            json!({"stagedCredentials": [item.clone()], "url": "/x/staged"}),
            json!({"stagedCredentials": item.clone()}),
            json!([item.clone()]),
            item.clone(),
        ] {
            let (s, secret) = staged_of(shape).unwrap();
            assert_eq!(
                (s.id.as_str(), s.key.as_str(), s.state),
                ("0Xs1", "K2", StagedState::Active)
            );
            assert_eq!(s.created_by.as_deref(), Some("005A"));
            assert_eq!(
                s.created_at.unwrap().to_rfc3339(),
                "2026-12-06T11:42:40+00:00"
            );
            assert!(s.expires_at.is_some());
            assert_eq!(secret.unwrap().expose_secret(), "S2");
        }
        let by_url = json!({"stagedCredentials": [{"stagedCredentialsUrl": "/services/data/v65.0/apps/oauth/credentials/0xA/0xC/staged/0Xs9?x=1", "key": "K", "state": "ROTATED"}]});
        let (s, secret) = staged_of(by_url).unwrap();
        assert_eq!((s.id.as_str(), s.state), ("0Xs9", StagedState::Rotated));
        assert!(secret.is_none());
        assert!(staged_of(json!({"stagedCredentials": []})).is_none());
        assert!(staged_of(json!([])).is_none());
        assert!(staged_of(json!({})).is_none());
        let odd =
            parse_staged(json!({"id": "1", "key": "K", "state": "Pending"}), WHAT).unwrap_err();
        assert!(odd.to_string().contains("'Pending'"), "{odd}");
        assert!(parse_staged(json!({"id": "../x", "key": "K", "state": "Active"}), WHAT).is_err());
    }

    #[test]
    fn the_two_gates_read_differently_and_other_refusals_fall_through() {
        let setting = gates(
            WHAT,
            StatusCode::FORBIDDEN,
            "FUNCTIONALITY_NOT_ENABLED",
            "nope",
        )
        .unwrap();
        let by_text = gates(
            WHAT,
            StatusCode::FORBIDDEN,
            "",
            "This feature is not currently enabled",
        )
        .unwrap();
        let permission = gates(
            WHAT,
            StatusCode::FORBIDDEN,
            "INSUFFICIENT_ACCESS",
            "needs View Client Secret",
        )
        .unwrap();
        for e in [&setting, &by_text] {
            assert_eq!(e.kind(), ErrorKind::PermissionDenied);
            assert!(
                e.hint()
                    .unwrap()
                    .contains("enableClientSecretInRestApiAccess")
            );
            assert!(e.is_changed_nothing());
        }
        assert!(permission.to_string().contains("needs View Client Secret"));
        assert!(
            permission
                .hint()
                .unwrap()
                .contains("External Client App Developer")
        );
        assert!(gates(WHAT, StatusCode::BAD_REQUEST, "INVALID_INPUT", "taken").is_none());
        let conflict =
            stage_gates(WHAT, StatusCode::BAD_REQUEST, "INVALID_INPUT", "taken").unwrap();
        assert_eq!(conflict.kind(), ErrorKind::Conflict);
        assert!(stage_gates(WHAT, StatusCode::NOT_FOUND, "NOT_FOUND", "x").is_none());
    }

    #[test]
    fn pairs_and_dates() {
        let pair = parse_pair(json!({"key": "K", "secret": "S"}), WHAT).unwrap();
        assert_eq!((pair.key(), pair.expose_secret()), ("K", "S"));
        assert!(parse_pair(json!({"key": "K"}), WHAT).is_err());
        assert!(parse_date("2026-12-06T11:42:40Z").is_some());
        assert!(parse_date("yesterday").is_none());
        assert_eq!(last_segment("/a/staged"), None);
        assert_eq!(last_segment("/a/staged/0X1/"), Some("0X1".into()));
    }
}
