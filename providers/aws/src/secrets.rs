//! The few Secrets Manager calls the store makes, with errors converted at this edge and values
//! kept in zeroizing buffers.

use crate::error::{SdkFailure, Service, failure};
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::types::Tag;
use rekey_api::{Error, ErrorKind, Result};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet};
use zeroize::Zeroizing;

/// The transient label a compare-and-set write puts on its new version before moving
/// AWSCURRENT onto it (AWS requires at least one label on a write; a label moves to the newest
/// version that asks for it, so at most one version carries it).
pub(crate) const WRITE: &str = "rekey-write";

/// Which version carries which labels, from `DescribeSecret`.
pub(crate) struct Snapshot {
    versions: BTreeMap<String, Vec<String>>,
}

impl Snapshot {
    /// The version carrying `label`.
    pub(crate) fn holder(&self, label: &str) -> Option<&str> {
        self.versions
            .iter()
            .find(|(_, labels)| labels.iter().any(|l| l == label))
            .map(|(id, _)| id.as_str())
    }

    /// Every label some version carries, each once.
    pub(crate) fn labels(&self) -> BTreeSet<&str> {
        self.versions
            .values()
            .flatten()
            .map(String::as_str)
            .collect()
    }

    /// Every version that carries at least one label, with its labels.
    pub(crate) fn labelled_versions(&self) -> impl Iterator<Item = (&str, &Vec<String>)> {
        self.versions
            .iter()
            .filter(|(_, labels)| !labels.is_empty())
            .map(|(id, labels)| (id.as_str(), labels))
    }
}

/// A value read by stage.
pub(crate) struct Read {
    pub(crate) version_id: String,
    pub(crate) value: Zeroizing<String>,
}

/// The AWSCURRENT state of a journal or lock secret: what a compare-and-set write is based on.
pub(crate) enum Current {
    /// The secret does not exist.
    Missing,
    /// The secret exists without any version (created by hand without a value).
    Empty,
    /// AWSCURRENT is on `version_id`.
    At {
        version_id: String,
        value: Zeroizing<String>,
    },
}

impl Current {
    /// The AWSCURRENT value as `T`; `None` when there is none.
    pub(crate) fn parse<T: DeserializeOwned>(&self, name: &str, store: &str) -> Result<Option<T>> {
        let Current::At { value, .. } = self else {
            return Ok(None);
        };
        serde_json::from_str(value)
            .map(Some)
            .map_err(|e| self.malformed(name, store, &e.to_string()))
    }

    /// The error for an AWSCURRENT value of secret `name` that is not what rekey writes: `what`
    /// says how.
    pub(crate) fn malformed(&self, name: &str, store: &str, what: &str) -> Error {
        let version = match self {
            Current::At { version_id, .. } => version_id.as_str(),
            Current::Missing | Current::Empty => "(none)",
        };
        Error::new(
            ErrorKind::Unexpected,
            format!(
                "{store}: version {version} of secret {name} is not what rekey writes ({what})"
            ),
        )
        .with_hint("the value was not written by rekey; move AWSCURRENT back to a good version")
    }
}

/// The Secrets Manager client and the store's label for messages.
pub(crate) struct Secrets {
    client: Client,
    label: String,
}

impl Secrets {
    pub(crate) fn new(client: Client, label: String) -> Self {
        Secrets { client, label }
    }

    /// How messages name the store, e.g. `aws(us-east-1 rekey/)`.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    fn fail<E>(
        &self,
        action: &str,
        name: &str,
        err: aws_sdk_secretsmanager::error::SdkError<
            E,
            aws_sdk_secretsmanager::config::http::HttpResponse,
        >,
    ) -> SdkFailure
    where
        E: aws_sdk_secretsmanager::error::ProvideErrorMetadata
            + std::error::Error
            + Send
            + Sync
            + 'static,
    {
        failure(
            Service::SecretsManager,
            &self.label,
            action,
            ("secret", name),
            err,
        )
    }

    /// The label map; `None` when the secret does not exist.
    pub(crate) async fn describe(&self, name: &str) -> Result<Option<Snapshot>> {
        match self.client.describe_secret().secret_id(name).send().await {
            Ok(out) => Ok(Some(Snapshot {
                versions: out
                    .version_ids_to_stages()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default(),
            })),
            Err(e) => self.fail("DescribeSecret", name, e).missing_is_none(),
        }
    }

    /// The value of one version; `None` if it is gone.
    pub(crate) async fn value_by_id(
        &self,
        name: &str,
        version_id: &str,
    ) -> Result<Option<Zeroizing<String>>> {
        match self
            .client
            .get_secret_value()
            .secret_id(name)
            .version_id(version_id)
            .send()
            .await
        {
            Ok(out) => Ok(Some(Zeroizing::new(
                out.secret_string().unwrap_or_default().to_string(),
            ))),
            Err(e) => self.fail("GetSecretValue", name, e).missing_is_none(),
        }
    }

    /// The value carrying `stage`, always asked for by stage (a stage-less read may be stale on
    /// moto after a label move); `None` when no version carries it or the secret is missing.
    pub(crate) async fn value_by_stage(&self, name: &str, stage: &str) -> Result<Option<Read>> {
        match self
            .client
            .get_secret_value()
            .secret_id(name)
            .version_stage(stage)
            .send()
            .await
        {
            Ok(out) => Ok(Some(Read {
                version_id: out.version_id().unwrap_or_default().to_string(),
                value: Zeroizing::new(out.secret_string().unwrap_or_default().to_string()),
            })),
            Err(e) => self.fail("GetSecretValue", name, e).missing_is_none(),
        }
    }

    /// AWSCURRENT of `name`, telling a missing secret from one without versions.
    pub(crate) async fn current(&self, name: &str) -> Result<Current> {
        match self.value_by_stage(name, "AWSCURRENT").await? {
            Some(Read { version_id, value }) => Ok(Current::At { version_id, value }),
            None if self.describe(name).await?.is_some() => Ok(Current::Empty),
            None => Ok(Current::Missing),
        }
    }

    /// Creates `name` with `value` as its first (AWSCURRENT) version; `Ok(None)` if another
    /// writer created it first with a different version.
    pub(crate) async fn create(
        &self,
        name: &str,
        token: Option<&str>,
        value: &str,
        tags: &[(&str, String)],
        kms_key_id: Option<&str>,
    ) -> Result<Option<String>> {
        let mut call = self
            .client
            .create_secret()
            .name(name)
            .secret_string(value)
            .description("managed by rekey")
            .set_client_request_token(token.map(str::to_string))
            .set_kms_key_id(kms_key_id.map(str::to_string));
        for (key, value) in tags {
            call = call.tags(Tag::builder().key(*key).value(value).build());
        }
        match call.send().await {
            Ok(out) => Ok(Some(out.version_id().unwrap_or_default().to_string())),
            Err(e) => {
                let f = self.fail("CreateSecret", name, e);
                if f.stale() { Ok(None) } else { Err(f.error) }
            }
        }
    }

    /// Writes a new version carrying `stages`; returns its id. A token reused with another
    /// value is a `Conflict` on AWS (moto overwrites instead; nothing here relies on either).
    pub(crate) async fn put(
        &self,
        name: &str,
        token: Option<&str>,
        value: &str,
        stages: &[&str],
    ) -> Result<String> {
        let mut call = self
            .client
            .put_secret_value()
            .secret_id(name)
            .secret_string(value)
            .set_client_request_token(token.map(str::to_string));
        for stage in stages {
            call = call.version_stages(*stage);
        }
        match call.send().await {
            Ok(out) => Ok(out.version_id().unwrap_or_default().to_string()),
            Err(e) => Err(self.fail("PutSecretValue", name, e).error),
        }
    }

    /// Moves `label` to `to` (or just removes it) from `from`. Secrets Manager refuses when
    /// `from` no longer holds the label, which makes this a compare-and-set: `Ok(false)` then.
    pub(crate) async fn move_label(
        &self,
        name: &str,
        label: &str,
        to: Option<&str>,
        from: Option<&str>,
    ) -> Result<bool> {
        match self
            .client
            .update_secret_version_stage()
            .secret_id(name)
            .version_stage(label)
            .set_move_to_version_id(to.map(str::to_string))
            .set_remove_from_version_id(from.map(str::to_string))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => {
                let f = self.fail("UpdateSecretVersionStage", name, e);
                if f.stale() { Ok(false) } else { Err(f.error) }
            }
        }
    }

    /// Sets tags on `name`.
    pub(crate) async fn tag(&self, name: &str, tags: &[(&str, String)]) -> Result<()> {
        let mut call = self.client.tag_resource().secret_id(name);
        for (key, value) in tags {
            call = call.tags(Tag::builder().key(*key).value(value).build());
        }
        call.send()
            .await
            .map(|_| ())
            .map_err(|e| self.fail("TagResource", name, e).error)
    }
}
