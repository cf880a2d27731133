//! rekey's AWS Secrets Manager secret store.
//!
//! Each credential is one secret, `<prefix>/<credential>`, whose versions carry Secrets Manager's
//! own AWSCURRENT / AWSPENDING / AWSPREVIOUS labels, so consumers read it with a plain
//! `GetSecretValue`. The journal and the lock are two more secrets beside it, each written with a
//! compare-and-set label move. See this crate's README for the schema, the IAM policy and the
//! design of the journal and the lock.
//!
//! With `kind = "aws_kms"`, the keys themselves are in custody in AWS KMS ([`KmsCustody`], from
//! [`AwsStore::kms`]): the secret keeps each generation's key handle beside its certificate.

mod config;
mod error;
mod kms;
mod log;
mod secrets;
mod settings;
mod store;

pub use config::{
    AwsConfig, DEFAULT_KMS_ALIAS_PREFIX, DEFAULT_LOCK_TTL, DEFAULT_NAME_PREFIX, KeyPolicy,
    KmsConfig,
};
pub use kms::KmsCustody;
pub use settings::AwsSettings;

use async_trait::async_trait;
use aws_sdk_secretsmanager::config::retry::RetryConfig;
use aws_sdk_secretsmanager::config::timeout::TimeoutConfig;
use aws_sdk_secretsmanager::config::{
    BehaviorVersion, ProvideCredentials, Region, SharedCredentialsProvider,
};
use rekey_api::lease::{LeaseRecord, LeaseStore, Leases};
use rekey_api::{
    Backoff, Damage, Error, ErrorKind, Generation, JournalEntry, JournalRead, NewVersion, Result,
    RotationLock, SecretStore, Stage, Stages, StoredVersion, VersionInfo,
};
use secrets::{Current, Secrets, Snapshot};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

/// The label consumers read.
const CURRENT: &str = "AWSCURRENT";
/// The label of a staged, unproven version.
const PENDING: &str = "AWSPENDING";
/// The label AWS moves onto the old AWSCURRENT version.
const PREVIOUS: &str = "AWSPREVIOUS";
/// The label that keeps a discarded generation's version findable, followed by the generation
/// (`REKEY_DISCARDED_G3`): a version without labels is "deprecated", which Secrets Manager may
/// delete and which reads the same as a destroyed one. A staging label is 1–256 characters (this
/// one is at most 37), and a secret carries at most 20 distinct staging labels across all its
/// versions (the quota "Staging labels attached across all versions of a secret"; more is a
/// `LimitExceededException`).
const DISCARDED_PREFIX: &str = "REKEY_DISCARDED_G";
/// Discarded generations a key secret can keep: the 20-label quota less AWSCURRENT, AWSPENDING
/// and AWSPREVIOUS, which the next rotation needs.
const MAX_DISCARDED: usize = 20 - 3;
/// Discarded generations `prune` keeps (the newest): as the file store's default
/// `keep_generations`.
const KEEP_DISCARDED: usize = 1;
/// The journal keeps at most this many bytes of JSON: a secret value is limited to 65,536.
const JOURNAL_MAX_BYTES: usize = 60_000;
/// Per-attempt and connect timeouts; the SDK's standard retry policy retries throttling, 5xx
/// and transport errors within them.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Shared by the store and its lock guards.
struct Inner {
    secrets: Secrets,
    prefix: String,
    create_missing: bool,
    kms_key_id: Option<String>,
    credentials: Option<SharedCredentialsProvider>,
}

impl fmt::Debug for Inner {
    // By hand: the credentials provider's Debug would show the access key id.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsStore")
            .field("store", &self.secrets.label())
            .field("create_missing", &self.create_missing)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn name(&self, credential: &str, leaf: Option<&str>) -> String {
        let mut name = if self.prefix.is_empty() {
            credential.to_string()
        } else {
            format!("{}/{credential}", self.prefix)
        };
        if let Some(leaf) = leaf {
            name.push('/');
            name.push_str(leaf);
        }
        name
    }

    fn missing(&self, name: &str) -> Error {
        Error::new(
            ErrorKind::Config,
            format!(
                "{}: secret {name} does not exist and create_missing is off",
                self.secrets.label()
            ),
        )
        .with_hint(format!(
            "create it (aws secretsmanager create-secret --name {name}) or allow creation"
        ))
    }

    /// Writes `value` as the new AWSCURRENT of `name`, conditional on the state it was computed
    /// from; `Ok(None)` when another writer moved AWSCURRENT first (re-read and retry).
    async fn cas_put(
        &self,
        name: &str,
        credential: &str,
        seen: &Current,
        value: &str,
    ) -> Result<Option<String>> {
        match seen {
            Current::Missing => {
                if !self.create_missing {
                    return Err(self.missing(name));
                }
                self.secrets
                    .create(
                        name,
                        None,
                        value,
                        &[("rekey:credential", credential.to_string())],
                        self.kms_key_id.as_deref(),
                    )
                    .await
            }
            // A secret without AWSCURRENT (created by hand without a value). Secrets Manager
            // makes the first version of a secret AWSCURRENT whatever labels the write asks
            // for, so of two racing first writers only one gets it; a plain write asking for
            // AWSCURRENT would let both win.
            Current::Empty => {
                let new = self
                    .secrets
                    .put(name, None, value, &[secrets::WRITE])
                    .await?;
                let Some(snap) = self.secrets.describe(name).await? else {
                    return Ok(None);
                };
                let won = match snap.holder(CURRENT) {
                    Some(holder) => holder == new,
                    // Versions exist but none is AWSCURRENT: AWS refuses this move once
                    // another version holds the label.
                    None => {
                        self.secrets
                            .move_label(name, CURRENT, Some(&new), None)
                            .await?
                    }
                };
                Ok(won.then_some(new))
            }
            Current::At { version_id, .. } => {
                let new = self
                    .secrets
                    .put(name, None, value, &[secrets::WRITE])
                    .await?;
                let moved = self
                    .secrets
                    .move_label(name, CURRENT, Some(&new), Some(version_id))
                    .await?;
                Ok(moved.then_some(new))
            }
        }
    }

    /// Reads AWSCURRENT of `name`, lets `decide` say what to write, and writes it with
    /// [`Inner::cas_put`]; when another writer moved AWSCURRENT in between, reads again and
    /// decides again ([`Backoff::STALE_WRITE`]). When every attempt lost, fails with
    /// `contended()`.
    async fn read_modify_write(
        &self,
        name: &str,
        credential: &str,
        decide: impl Fn(&Current) -> Result<String>,
        contended: impl FnOnce() -> Error,
    ) -> Result<()> {
        let written = Backoff::STALE_WRITE
            .retry_stale(|| async {
                let seen = self.secrets.current(name).await?;
                let value = decide(&seen)?;
                let put = self.cas_put(name, credential, &seen, &value).await?;
                Ok(put.map(|_| ()))
            })
            .await?;
        written.ok_or_else(contended)
    }

    /// The tags of a new key secret; `rekey:generation` follows CURRENT from the first promotion.
    fn tags(&self, credential: &str) -> Vec<(&'static str, String)> {
        vec![
            ("rekey:credential", credential.to_string()),
            ("rekey:generation", "none".to_string()),
        ]
    }
}

/// The credentials' lock secrets, for the lease protocol ([`rekey_api::lease`]): the record is
/// the JSON value of AWSCURRENT, written with [`Inner::cas_put`].
struct LockSecrets(Arc<Inner>);

impl fmt::Display for LockSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.secrets.label())
    }
}

#[async_trait]
impl LeaseStore for LockSecrets {
    type Version = Current;

    async fn read_lease(&self, credential: &str) -> Result<(Option<LeaseRecord>, Current)> {
        let name = self.0.name(credential, Some("lock"));
        let label = self.0.secrets.label();
        let seen = self.0.secrets.current(&name).await?;
        let record = seen
            .parse::<Map<String, Value>>(&name, label)?
            .map(|data| {
                LeaseRecord::parse(&data).map_err(|what| seen.malformed(&name, label, &what))
            })
            .transpose()?;
        Ok((record, seen))
    }

    async fn write_lease(
        &self,
        credential: &str,
        record: &LeaseRecord,
        seen: &Current,
    ) -> Result<bool> {
        let name = self.0.name(credential, Some("lock"));
        let value = Value::Object(record.to_json()).to_string();
        Ok(self
            .0
            .cas_put(&name, credential, seen, &value)
            .await?
            .is_some())
    }

    fn lease_location(&self, credential: &str) -> String {
        format!("secret {}", self.0.name(credential, Some("lock")))
    }
}

/// AWS Secrets Manager as a [`SecretStore`].
#[derive(Debug)] // safe: Inner's Debug shows neither credentials nor values
pub struct AwsStore {
    inner: Arc<Inner>,
    leases: Leases<LockSecrets>,
    kms: Option<Arc<KmsCustody>>,
}

impl AwsStore {
    /// Connects through the AWS default chain (environment, profile, web identity, IMDS) for
    /// credentials and, unless `config.region` is set, the region. No request is made yet;
    /// [`SecretStore::preflight`] resolves the credentials.
    pub async fn connect(config: AwsConfig) -> Result<Self> {
        config.validate()?;
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let sdk = loader.load().await;
        AwsStore::with_sdk_config(config, &sdk)
    }

    /// Like [`AwsStore::connect`], with an SDK configuration the caller built (tests give static
    /// credentials and a region this way, so nothing probes the EC2 metadata address).
    /// `config.region` and `config.endpoint_url`, when set, override the SDK configuration's.
    /// With `config.kms`, the KMS client of [`AwsStore::kms`] is built from the same.
    pub fn with_sdk_config(config: AwsConfig, sdk: &aws_config::SdkConfig) -> Result<Self> {
        let prefix = config.validate()?;
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .build();
        let mut builder = aws_sdk_secretsmanager::config::Builder::from(sdk)
            .interceptor(log::RequestLog)
            .retry_config(RetryConfig::standard())
            .timeout_config(timeouts.clone());
        if let Some(region) = &config.region {
            builder = builder.region(Region::new(region.clone()));
        }
        if let Some(url) = &config.endpoint_url {
            builder = builder.endpoint_url(url.clone());
        }
        let service = builder.build();
        let region = service.region().map(|r| r.to_string()).ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                "no AWS region configured for the aws store",
            )
            .with_hint("set `region` in the store's configuration, AWS_REGION, or a profile region")
        })?;
        let label = match &config.endpoint_url {
            Some(url) => format!("aws({region} {url} {prefix}/)"),
            None => format!("aws({region} {prefix}/)"),
        };
        let kms = config.kms.as_ref().map(|kms| {
            let mut builder = aws_sdk_kms::config::Builder::from(sdk)
                .interceptor(log::RequestLog)
                .retry_config(RetryConfig::standard())
                .timeout_config(timeouts)
                .region(Region::new(region.clone()));
            if let Some(url) = &config.endpoint_url {
                builder = builder.endpoint_url(url.clone());
            }
            let label = match &config.endpoint_url {
                Some(url) => format!("kms({region} {url} alias/{})", kms.alias_prefix),
                None => format!("kms({region} alias/{})", kms.alias_prefix),
            };
            Arc::new(KmsCustody::new(
                aws_sdk_kms::Client::from_conf(builder.build()),
                label,
                kms.alias_prefix.clone(),
                kms.key_policy.as_ref().map(|p| p.document.clone()),
            ))
        });
        let inner = Arc::new(Inner {
            secrets: Secrets::new(aws_sdk_secretsmanager::Client::from_conf(service), label),
            prefix,
            create_missing: config.create_missing,
            kms_key_id: config.kms_key_id,
            credentials: sdk.credentials_provider(),
        });
        Ok(AwsStore {
            leases: Leases::new(LockSecrets(Arc::clone(&inner)), config.lock_ttl),
            inner,
            kms,
        })
    }

    /// The KMS custody of a `kind = "aws_kms"` store (its keys), sharing this store's SDK
    /// configuration; `None` for a plain Secrets Manager store. The store keeps the stages,
    /// records (a key handle instead of the key), journal and lease:
    /// `CustodyStore::new(Box::new(store), kms)`.
    pub fn kms(&self) -> Option<Arc<KmsCustody>> {
        self.kms.clone()
    }

    fn secrets(&self) -> &Secrets {
        &self.inner.secrets
    }

    fn key_name(&self, credential: &str) -> Result<String> {
        rekey_api::check_credential_name(credential)?;
        Ok(self.inner.name(credential, None))
    }

    /// The version holding `label`, with its parsed record; `None` for no holder or a holder
    /// without a key (the placeholder).
    async fn labelled(
        &self,
        name: &str,
        snap: &Snapshot,
        label: &str,
    ) -> Result<Option<(String, VersionInfo)>> {
        let Some(version_id) = snap.holder(label) else {
            return Ok(None);
        };
        let Some(value) = self.secrets().value_by_id(name, version_id).await? else {
            return Ok(None);
        };
        Ok(record(self.secrets().label(), name, version_id, &value)?
            .map(|info| (version_id.to_string(), info)))
    }

    /// CURRENT, PENDING (a different version with a newer generation) and PREVIOUS (a different
    /// version with another generation) of the key secret, with their version ids.
    async fn stage_map(&self, name: &str, snap: &Snapshot) -> Result<Labelled> {
        let current = self.labelled(name, snap, CURRENT).await?;
        let current_id = current.as_ref().map(|(id, _)| id.clone());
        let current_gen = current.as_ref().map(|(_, i)| i.generation);
        let other = |(id, _): &(String, VersionInfo)| Some(id) != current_id.as_ref();
        let pending = self
            .labelled(name, snap, PENDING)
            .await?
            .filter(other)
            .filter(|(_, i)| current_gen.is_none_or(|c| i.generation > c));
        let previous = self
            .labelled(name, snap, PREVIOUS)
            .await?
            .filter(other)
            .filter(|(_, i)| Some(i.generation) != current_gen);
        Ok(Labelled {
            current,
            pending,
            previous,
        })
    }

    /// Every labelled version of the key secret `name` that holds `generation`'s key.
    async fn holding(
        &self,
        name: &str,
        snap: &Snapshot,
        generation: Generation,
    ) -> Result<Vec<Held>> {
        let mut found = Vec::new();
        for (version_id, labels) in snap.labelled_versions() {
            let Some(value) = self.secrets().value_by_id(name, version_id).await? else {
                continue;
            };
            let Some(info) = record(self.secrets().label(), name, version_id, &value)? else {
                continue;
            };
            if info.generation == generation {
                found.push(Held {
                    version_id: version_id.to_string(),
                    labels: labels.clone(),
                    info,
                    value,
                });
            }
        }
        Ok(found)
    }

    /// The key in `value`, the value of version `version_id` of `name`, described by `info`.
    fn stored_key(
        &self,
        name: &str,
        version_id: &str,
        value: &str,
        info: VersionInfo,
    ) -> Result<StoredVersion> {
        let mut data: Map<String, Value> = serde_json::from_str(value).map_err(|_| {
            Error::new(
                ErrorKind::Unexpected,
                format!("{self}: version {version_id} of secret {name} is not a JSON object"),
            )
        })?;
        let material = rekey_api::take_material(&mut data)
            .map_err(|e| e.context(format!("{self}: version {version_id} of secret {name}")))?;
        Ok(StoredVersion { info, material })
    }

    /// Points the `rekey:generation` tag at CURRENT's generation.
    async fn tag_generation(&self, name: &str, generation: Generation) -> Result<()> {
        self.secrets()
            .tag(name, &[("rekey:generation", generation.0.to_string())])
            .await
    }

    /// Puts the keyless placeholder in as AWSCURRENT when no version holds it: AWS makes the
    /// first version of a secret AWSCURRENT whatever labels the write asks for, and a staged key
    /// must not become CURRENT.
    async fn ensure_current_holder(&self, credential: &str, name: &str) -> Result<Snapshot> {
        let snap = match self.secrets().describe(name).await? {
            Some(snap) => snap,
            None if !self.inner.create_missing => return Err(self.inner.missing(name)),
            None => {
                let placeholder = placeholder(credential);
                self.secrets()
                    .create(
                        name,
                        Some(&token(&["placeholder", name])),
                        &placeholder,
                        &self.inner.tags(credential),
                        self.inner.kms_key_id.as_deref(),
                    )
                    .await?;
                return self.describe_existing(name).await;
            }
        };
        if snap.holder(CURRENT).is_some() {
            return Ok(snap);
        }
        self.secrets()
            .put(
                name,
                Some(&token(&["placeholder", name])),
                &placeholder(credential),
                &[CURRENT],
            )
            .await?;
        self.describe_existing(name).await
    }

    async fn describe_existing(&self, name: &str) -> Result<Snapshot> {
        self.secrets().describe(name).await?.ok_or_else(|| {
            Error::new(
                ErrorKind::Conflict,
                format!(
                    "{}: secret {name} vanished while rekey wrote it",
                    self.secrets().label()
                ),
            )
        })
    }
}

/// A labelled version of a key secret holding a given generation.
struct Held {
    version_id: String,
    labels: Vec<String>,
    info: VersionInfo,
    value: Zeroizing<String>,
}

impl Held {
    /// Which of several versions holding one generation `read_generation` prefers: a stage
    /// rekey reports first, in the order CURRENT, PENDING, PREVIOUS, then a discarded one.
    fn rank(&self) -> usize {
        let stages = [CURRENT, PENDING, PREVIOUS];
        self.labels
            .iter()
            .filter_map(|l| stages.iter().position(|s| s == l))
            .min()
            .unwrap_or(stages.len())
    }
}

/// The three labelled versions of a key secret.
struct Labelled {
    current: Option<(String, VersionInfo)>,
    pending: Option<(String, VersionInfo)>,
    previous: Option<(String, VersionInfo)>,
}

impl fmt::Display for AwsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.secrets().label())
    }
}

/// 64 hex digits of SHA-256 over `parts`: a `ClientRequestToken` (32–64 characters) that is the
/// same for every retry of the same write.
fn token(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    hex::encode(hash.finalize())
}

/// The version id of a staged generation: the rotation, the generation and the fingerprint, so
/// a retry of the same stage names the same version and a different secret never reuses it.
fn stage_token(new: &NewVersion<'_>) -> String {
    token(&[
        "stage",
        &new.rotation_id.0,
        &new.generation.0.to_string(),
        &new.public.fingerprint().to_hex(),
    ])
}

/// The label of discarded `generation`.
fn discard_label(generation: Generation) -> String {
    format!("{DISCARDED_PREFIX}{}", generation.0)
}

/// The keyless value AWSCURRENT holds before the first promotion.
fn placeholder(credential: &str) -> String {
    json!({ "rekey_placeholder": true, "credential": credential, "note": "no key has been promoted yet" })
        .to_string()
}

/// The value of a version: the shared record schema (see the README).
fn version_value(info: &VersionInfo, material: &rekey_api::Material) -> Result<Zeroizing<String>> {
    Ok(Zeroizing::new(
        rekey_api::version_record(info, material)?.to_string(),
    ))
}

/// Parses a key version without its key; `None` for a value without `private_key` (the
/// placeholder).
fn record(store: &str, name: &str, version_id: &str, value: &str) -> Result<Option<VersionInfo>> {
    let bad = |what: &str| {
        Error::new(
            ErrorKind::Unexpected,
            format!("{store}: version {version_id} of secret {name} has {what}"),
        )
        .with_hint("the value was not written by rekey; move AWSCURRENT back to a good version")
    };
    let data: Map<String, Value> =
        serde_json::from_str(value).map_err(|_| bad("a value that is not a JSON object"))?;
    rekey_api::parse_version_record(&data, None).map_err(|what| bad(&what))
}

/// The journal secret's value.
#[derive(Default, Serialize, Deserialize)]
struct Journal {
    entries: Vec<JournalEntry>,
    /// The chain hash of the newest entry dropped from the front ([`rekey_api::anchor_after`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    anchor: Option<String>,
}
