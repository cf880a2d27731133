//! Keys in custody in AWS KMS (`kind = "aws_kms"`): one asymmetric RSA `SIGN_VERIFY` key per
//! generation, found by its alias `alias/<prefix><credential>/<generation>`, signing with
//! RSASSA-PKCS1-v1_5 SHA-256. The private key never leaves KMS: KMS has no operation that returns
//! the private half of an asymmetric key it generated (`GetPublicKey` returns the public half
//! only; `GenerateDataKeyPair` makes exportable pairs, and rekey never calls it).

use crate::error::{SdkFailure, Service, failure};
use async_trait::async_trait;
use aws_sdk_kms::Client;
use aws_sdk_kms::primitives::{Blob, DateTime, DateTimeFormat};
use aws_sdk_kms::types::{
    KeySpec, KeyState as KmsKeyState, KeyUsageType, MessageType, OriginType, SigningAlgorithmSpec,
    Tag,
};
use rekey_api::{
    CreatedKey, CustodyService, Error, ErrorKind, Generation, KeyCustody, KeyHandle, KeyState,
    Result,
};
use std::fmt;

/// The shortest pending window AWS allows before deleting a key (7–30 days).
const PENDING_WINDOW_DAYS: i32 = 7;
/// The longest message `Sign` takes with `MessageType = RAW`. What rekey signs (a JWT's signing
/// input, a certificate's TBS part) stays far below. A longer message could be sent as its
/// SHA-256 digest (`MessageType = DIGEST`), which moto 5.2.5 does not implement (it hashes the
/// digest again), so rekey refuses it here instead of sending something untested.
const RAW_MESSAGE_MAX: usize = 4096;
/// What preflight asks KMS to sign (with `DryRun`, so nothing is signed on AWS).
const PROBE: &[u8] = b"rekey preflight";

/// AWS KMS holding a store's keys in custody; built by [`crate::AwsStore::connect`] from the
/// store's SDK configuration (credentials, region, endpoint, retries, timeouts).
pub struct KmsCustody {
    client: Client,
    label: String,
    alias_prefix: String,
    policy: Option<String>,
}

impl fmt::Debug for KmsCustody {
    // By hand: the client's configuration holds the credentials provider.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsCustody")
            .field("custody", &self.label)
            .field("key_policy", &self.policy.is_some())
            .finish_non_exhaustive()
    }
}

impl fmt::Display for KmsCustody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

/// The algorithm of a key in rekey's words and KMS's key spec, by size.
fn spec_of(bits: u32) -> Option<(&'static str, KeySpec)> {
    match bits {
        2048 => Some(("rsa-2048", KeySpec::Rsa2048)),
        3072 => Some(("rsa-3072", KeySpec::Rsa3072)),
        4096 => Some(("rsa-4096", KeySpec::Rsa4096)),
        _ => None,
    }
}

/// `YYYY-MM-DD` of a KMS date.
fn day(date: Option<&DateTime>) -> String {
    date.and_then(|d| d.fmt(DateTimeFormat::DateTime).ok())
        .map_or_else(|| "an unknown date".to_string(), |d| d[..10].to_string())
}

/// The key id (the last part) of a key ARN.
fn key_id_of(arn: &str) -> &str {
    arn.split_once(":key/").map_or(arn, |(_, id)| id)
}

impl KmsCustody {
    pub(crate) fn new(
        client: Client,
        label: String,
        alias_prefix: String,
        policy: Option<String>,
    ) -> Self {
        KmsCustody {
            client,
            label,
            alias_prefix,
            policy,
        }
    }

    fn fail<E>(
        &self,
        action: &str,
        on: (&str, &str),
        err: aws_sdk_kms::error::SdkError<E, aws_sdk_kms::config::http::HttpResponse>,
    ) -> SdkFailure
    where
        E: aws_sdk_kms::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        failure(Service::Kms, &self.label, action, on, err)
    }

    /// `alias/<prefix><credential>`: the credential's current key. Alias names take letters,
    /// digits and `/_-`, so a credential named with a `.` cannot keep keys in KMS.
    fn current_alias(&self, credential: &str) -> Result<String> {
        rekey_api::check_credential_name(credential)?;
        if credential.contains('.') {
            return Err(Error::new(
                ErrorKind::Config,
                format!("{self}: credential name '{credential}' cannot be part of a KMS alias name ('.' is not allowed there)"),
            )
            .with_hint("rename the credential with letters, digits, '-' and '_' only"));
        }
        Ok(format!("alias/{}{credential}", self.alias_prefix))
    }

    /// `alias/<prefix><credential>/<generation>`.
    fn generation_alias(&self, credential: &str, generation: Generation) -> Result<String> {
        Ok(format!(
            "{}/{}",
            self.current_alias(credential)?,
            generation.0
        ))
    }

    fn check_handle<'k>(&self, key: &'k KeyHandle) -> Result<&'k str> {
        if key.service != CustodyService::AwsKms {
            return Err(Error::new(
                ErrorKind::Config,
                format!("{self}: {key} is not a KMS key"),
            ));
        }
        Ok(&key.key_id)
    }

    /// DescribeKey of `key_id` (an ARN or an alias); `None` when KMS knows no such key.
    async fn describe_key(&self, key_id: &str) -> Result<Option<aws_sdk_kms::types::KeyMetadata>> {
        match self.client.describe_key().key_id(key_id).send().await {
            Ok(out) => Ok(out.key_metadata),
            Err(e) => self
                .fail("DescribeKey", ("key", key_id), e)
                .missing_is_none(),
        }
    }

    async fn public_key(&self, arn: &str) -> Result<Vec<u8>> {
        let out = self
            .client
            .get_public_key()
            .key_id(arn)
            .send()
            .await
            .map_err(|e| self.fail("GetPublicKey", ("key", arn), e).error)?;
        out.public_key.map(Blob::into_inner).ok_or_else(|| {
            Error::new(
                ErrorKind::Unexpected,
                format!("{self}: GetPublicKey of key {arn} returned no public key"),
            )
        })
    }

    /// The handle and public key of the existing key `metadata`, which must have `spec`.
    async fn existing(
        &self,
        metadata: &aws_sdk_kms::types::KeyMetadata,
        alias: &str,
        (algorithm, spec): (&str, KeySpec),
    ) -> Result<CreatedKey> {
        let arn = metadata.arn().unwrap_or_default();
        if metadata.key_spec() != Some(&spec) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{self}: {alias} names key {arn} of spec {:?}, not the {} requested",
                    metadata.key_spec().map(KeySpec::as_str),
                    spec.as_str()
                ),
            )
            .with_hint("that generation was made with another key size; rotate again to make a new generation"));
        }
        // A destroy interrupted before it deleted the alias leaves it on a key that signs no
        // more: that generation is spent.
        if metadata.key_state() != Some(&KmsKeyState::Enabled) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{self}: {alias} names key {arn}, which is {} (the generation was destroyed)",
                    metadata
                        .key_state()
                        .map_or("in an unknown state", KmsKeyState::as_str)
                ),
            )
            .with_hint("rotate again to make a new generation"));
        }
        Ok(CreatedKey {
            spki_der: self.public_key(arn).await?,
            handle: KeyHandle {
                service: CustodyService::AwsKms,
                key_id: arn.to_string(),
                version: None,
                algorithm: algorithm.to_string(),
            },
        })
    }

    /// Every alias of the account and region (ListAliases, every page).
    async fn aliases(
        &self,
        of_key: Option<&str>,
    ) -> Result<Vec<aws_sdk_kms::types::AliasListEntry>> {
        let mut all = Vec::new();
        let mut marker = None;
        loop {
            let out = self
                .client
                .list_aliases()
                .set_key_id(of_key.map(str::to_string))
                .set_marker(marker.take())
                .send()
                .await;
            let out = match out {
                Ok(out) => out,
                Err(e) => {
                    let f = self.fail(
                        "ListAliases",
                        ("aliases", &format!("alias/{}*", self.alias_prefix)),
                        e,
                    );
                    // The aliases of a key that no longer exists: none.
                    if of_key.is_some() && f.not_found() {
                        return Ok(all);
                    }
                    return Err(f.error);
                }
            };
            all.extend(out.aliases.unwrap_or_default());
            match out.next_marker {
                Some(next) if out.truncated => marker = Some(next),
                _ => return Ok(all),
            }
        }
    }

    /// Disables `arn` (when enabled) and schedules its deletion; the deletion date. The key
    /// id, not the ARN, goes to DisableKey and ScheduleKeyDeletion: AWS takes either, and moto
    /// 5.2.5 fails (HTTP 500) on an ARN there.
    async fn disable_and_schedule(
        &self,
        arn: &str,
        metadata: &aws_sdk_kms::types::KeyMetadata,
    ) -> Result<Option<DateTime>> {
        let id = key_id_of(arn);
        if metadata.key_state() == Some(&KmsKeyState::Enabled) {
            self.client
                .disable_key()
                .key_id(id)
                .send()
                .await
                .map_err(|e| self.fail("DisableKey", ("key", arn), e).error)?;
        }
        let out = self
            .client
            .schedule_key_deletion()
            .key_id(id)
            .pending_window_in_days(PENDING_WINDOW_DAYS)
            .send()
            .await
            .map_err(|e| self.fail("ScheduleKeyDeletion", ("key", arn), e).error)?;
        Ok(out.deletion_date)
    }

    /// Deletes `alias`; one already gone is fine.
    async fn delete_alias(&self, alias: &str) -> Result<()> {
        match self.client.delete_alias().alias_name(alias).send().await {
            Ok(_) => Ok(()),
            Err(e) => self
                .fail("DeleteAlias", ("alias", alias), e)
                .missing_is_none::<()>()
                .map(|_| ()),
        }
    }

    /// The generation `alias` names for `credential`, if it is one of its generation aliases.
    fn generation_of(&self, credential: &str, alias: &str) -> Option<Generation> {
        Generation::from_digits(
            alias
                .strip_prefix("alias/")?
                .strip_prefix(&self.alias_prefix)?
                .strip_prefix(credential)?
                .strip_prefix('/')?,
        )
    }
}

#[async_trait]
impl KeyCustody for KmsCustody {
    async fn preflight(&self, credential: &str, keys: &[KeyHandle]) -> Result<()> {
        self.current_alias(credential)?;
        let listed = self.client.list_aliases().limit(1).send().await;
        if let Err(e) = listed {
            return Err(self
                .fail(
                    "ListAliases",
                    ("aliases", &format!("alias/{}*", self.alias_prefix)),
                    e,
                )
                .error);
        }
        for key in keys {
            let arn = self.check_handle(key)?;
            let Some(metadata) = self.describe_key(arn).await? else {
                continue;
            };
            // A destroyed generation's key neither signs nor needs to.
            if metadata.key_state() != Some(&KmsKeyState::Enabled) {
                continue;
            }
            self.public_key(arn).await?;
            // With DryRun, AWS checks the permission and the key and answers
            // DryRunOperationException instead of signing. moto 5.2.5 ignores the flag and
            // signs, which proves the same.
            let probe = self
                .client
                .sign()
                .key_id(arn)
                .message(Blob::new(PROBE))
                .message_type(MessageType::Raw)
                .signing_algorithm(SigningAlgorithmSpec::RsassaPkcs1V15Sha256)
                .dry_run(true)
                .send()
                .await;
            if let Err(e) = probe {
                let f = self.fail("Sign", ("key", arn), e);
                if f.code.as_deref() != Some("DryRunOperationException") {
                    return Err(f.error);
                }
            }
        }
        Ok(())
    }

    async fn create_key(
        &self,
        credential: &str,
        generation: Generation,
        bits: u32,
    ) -> Result<CreatedKey> {
        let alias = self.generation_alias(credential, generation)?;
        let Some(spec) = spec_of(bits) else {
            return Err(Error::new(
                ErrorKind::Config,
                format!("{self}: KMS makes RSA keys of 2048, 3072 or 4096 bits, not {bits}"),
            ));
        };
        if let Some(metadata) = self.describe_key(&alias).await? {
            return self.existing(&metadata, &alias, spec.clone()).await;
        }
        let created = self
            .client
            .create_key()
            .key_spec(spec.1.clone())
            .key_usage(KeyUsageType::SignVerify)
            .description(format!(
                "rekey: credential {credential}, generation {}",
                generation.0
            ))
            .tags(
                Tag::builder()
                    .tag_key("rekey:credential")
                    .tag_value(credential)
                    .build()
                    .expect("both set"),
            )
            .tags(
                Tag::builder()
                    .tag_key("rekey:generation")
                    .tag_value(generation.0.to_string())
                    .build()
                    .expect("both set"),
            )
            .set_policy(self.policy.clone())
            .send()
            .await
            .map_err(|e| self.fail("CreateKey", ("key for", &alias), e).error)?;
        let arn = created
            .key_metadata()
            .and_then(|m| m.arn())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Unexpected,
                    format!("{self}: CreateKey for {alias} returned no key ARN"),
                )
            })?
            .to_string();
        let aliased = self
            .client
            .create_alias()
            .alias_name(&alias)
            .target_key_id(&arn)
            .send()
            .await;
        if let Err(e) = aliased {
            let f = self.fail("CreateAlias", ("alias", &alias), e);
            if !f.exists() {
                return Err(f.error);
            }
            // Another runner made this generation's key first: keep theirs, retire ours.
            if let Some(ours) = self.describe_key(&arn).await? {
                self.disable_and_schedule(&arn, &ours).await?;
            }
            let Some(theirs) = self.describe_key(&alias).await? else {
                return Err(f.error);
            };
            return self.existing(&theirs, &alias, spec).await;
        }
        tracing::info!(custody = %self, credential, generation = generation.0, key = %arn, "created KMS key {alias}");
        Ok(CreatedKey {
            spki_der: self.public_key(&arn).await?,
            handle: KeyHandle {
                service: CustodyService::AwsKms,
                key_id: arn,
                version: None,
                algorithm: spec.0.to_string(),
            },
        })
    }

    async fn sign(&self, key: &KeyHandle, message: &[u8]) -> Result<Vec<u8>> {
        let arn = self.check_handle(key)?;
        if message.len() > RAW_MESSAGE_MAX {
            return Err(Error::new(
                ErrorKind::Unexpected,
                format!(
                    "{self}: a message of {} bytes is longer than the {RAW_MESSAGE_MAX} bytes KMS signs as it is (key {arn})",
                    message.len()
                ),
            ));
        }
        let out = self
            .client
            .sign()
            .key_id(arn)
            .message(Blob::new(message))
            .message_type(MessageType::Raw)
            .signing_algorithm(SigningAlgorithmSpec::RsassaPkcs1V15Sha256)
            .send()
            .await
            .map_err(|e| self.fail("Sign", ("key", arn), e).error)?;
        out.signature.map(Blob::into_inner).ok_or_else(|| {
            Error::new(
                ErrorKind::Unexpected,
                format!("{self}: Sign with key {arn} returned no signature"),
            )
        })
    }

    async fn describe(&self, key: &KeyHandle) -> Result<KeyState> {
        let arn = self.check_handle(key)?;
        let Some(metadata) = self.describe_key(arn).await? else {
            return Ok(KeyState {
                handle: key.clone(),
                exportable: false,
                enabled: false,
                state: "deleted".to_string(),
            });
        };
        let state = match metadata.key_state() {
            Some(KmsKeyState::PendingDeletion) => {
                format!("PendingDeletion until {}", day(metadata.deletion_date()))
            }
            Some(state) => state.as_str().to_string(),
            None => "unknown".to_string(),
        };
        Ok(KeyState {
            handle: key.clone(),
            // KMS has no operation that exports the private key of an asymmetric key, so a
            // key KMS generated (origin AWS_KMS) exists nowhere else. Key material imported
            // into KMS (origin EXTERNAL) came from outside and may exist there still.
            exportable: metadata.origin() != Some(&OriginType::AwsKms),
            enabled: metadata.enabled,
            state,
        })
    }

    async fn destroy_key(&self, key: &KeyHandle) -> Result<String> {
        let arn = self.check_handle(key)?;
        let Some(metadata) = self.describe_key(arn).await? else {
            return Ok(format!("KMS key {arn} no longer exists"));
        };
        let done = if metadata.key_state() == Some(&KmsKeyState::PendingDeletion) {
            format!(
                "KMS key {arn} was already disabled and scheduled for deletion on {}",
                day(metadata.deletion_date())
            )
        } else {
            let date = self.disable_and_schedule(arn, &metadata).await?;
            format!(
                "disabled KMS key {arn} and scheduled its deletion for {} ({PENDING_WINDOW_DAYS} days, the shortest window)",
                day(date.as_ref())
            )
        };
        // Its generation alias goes too, so keys_of no longer lists it. The credential's
        // current alias is moved, never deleted, by made_current.
        for alias in self.aliases(Some(arn)).await? {
            let Some(name) = alias.alias_name() else {
                continue;
            };
            let generation_alias = name
                .strip_prefix("alias/")
                .and_then(|n| n.strip_prefix(&self.alias_prefix))
                .and_then(|n| n.rsplit_once('/'))
                .is_some_and(|(_, g)| Generation::from_digits(g).is_some());
            if generation_alias {
                self.delete_alias(name).await?;
            }
        }
        Ok(done)
    }

    fn destroy_means(&self) -> String {
        format!("KMS keys disabled and scheduled for deletion in {PENDING_WINDOW_DAYS} days")
    }

    async fn keys_of(&self, credential: &str) -> Result<Vec<(Generation, KeyHandle)>> {
        self.current_alias(credential)?;
        let mut keys: Vec<(Generation, KeyHandle)> = Vec::new();
        for alias in self.aliases(None).await? {
            let (Some(name), Some(alias_arn), Some(target)) =
                (alias.alias_name(), alias.alias_arn(), alias.target_key_id())
            else {
                continue;
            };
            let Some(generation) = self.generation_of(credential, name) else {
                continue;
            };
            // arn:aws:kms:REGION:ACCOUNT:alias/NAME → arn:aws:kms:REGION:ACCOUNT:key/ID
            let Some((account, _)) = alias_arn.split_once(":alias/") else {
                continue;
            };
            let arn = format!("{account}:key/{}", key_id_of(target));
            let algorithm = match self.describe_key(&arn).await? {
                Some(m) => match m.key_spec() {
                    Some(KeySpec::Rsa2048) => "rsa-2048",
                    Some(KeySpec::Rsa3072) => "rsa-3072",
                    Some(KeySpec::Rsa4096) => "rsa-4096",
                    _ => "unknown",
                },
                None => continue,
            };
            keys.push((
                generation,
                KeyHandle {
                    service: CustodyService::AwsKms,
                    key_id: arn,
                    version: None,
                    algorithm: algorithm.to_string(),
                },
            ));
        }
        keys.sort_by_key(|(g, _)| *g);
        Ok(keys)
    }

    async fn made_current(&self, credential: &str, key: &KeyHandle) -> Result<()> {
        let alias = self.current_alias(credential)?;
        let arn = self.check_handle(key)?;
        let updated = self
            .client
            .update_alias()
            .alias_name(&alias)
            .target_key_id(arn)
            .send()
            .await;
        match updated {
            Ok(_) => Ok(()),
            Err(e) => {
                let f = self.fail("UpdateAlias", ("alias", &alias), e);
                if !f.not_found() {
                    return Err(f.error);
                }
                match self
                    .client
                    .create_alias()
                    .alias_name(&alias)
                    .target_key_id(arn)
                    .send()
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) => Err(self.fail("CreateAlias", ("alias", &alias), e).error),
                }
            }
        }
    }
}
