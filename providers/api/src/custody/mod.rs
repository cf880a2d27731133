//! Keys in custody: private keys generated inside a key-management service (Vault / OpenBao
//! transit, AWS KMS) that the service will not export and that only sign. A store of such a
//! credential keeps, for each generation, a [`KeyHandle`] (which key, in which service) beside
//! the certificate; everything that needs the key asks the service to sign through a [`Signer`].

mod store;

pub use store::CustodyStore;

use crate::{Error, ErrorKind, Generation, KeyMaterial, Result, SecretString};
use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// The key-management services rekey can leave keys in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustodyService {
    /// The transit engine of HashiCorp Vault or OpenBao.
    VaultTransit,
    /// AWS Key Management Service.
    AwsKms,
}

impl CustodyService {
    /// The store kind that keeps keys there (`kind = "…"` in `rekey.toml`).
    pub fn name(self) -> &'static str {
        match self {
            CustodyService::VaultTransit => "vault_transit",
            CustodyService::AwsKms => "aws_kms",
        }
    }
}

impl fmt::Display for CustodyService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Names one key in custody. Not a secret: it says where the key is, and only the service's
/// own policies decide who may sign with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyHandle {
    /// Which service holds it.
    pub service: CustodyService,
    /// The transit key's name, or the KMS key's ARN.
    pub key_id: String,
    /// The version of the key that signs (transit keys are versioned; KMS keys are not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// The key's algorithm in rekey's words (`rsa-2048`, `rsa-3072`, `rsa-4096`).
    pub algorithm: String,
}

impl fmt::Display for KeyHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.version {
            Some(v) => write!(f, "{} key {} version {v}", self.service, self.key_id),
            None => write!(f, "{} key {}", self.service, self.key_id),
        }
    }
}

/// What the service says about a key now (`rekey inspect`, `rekey status`, emergency evidence).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyState {
    /// The key.
    pub handle: KeyHandle,
    /// Whether the service would hand the private key out. rekey creates keys that it will
    /// not; `true` means someone changed the key's settings.
    pub exportable: bool,
    /// Whether it signs now.
    pub enabled: bool,
    /// The service's words for its state (`Enabled`, `Disabled`, `PendingDeletion until …`,
    /// `deleted`).
    pub state: String,
}

/// A key the service just made (or had already made for this generation).
#[derive(Clone, Debug)]
pub struct CreatedKey {
    /// Where it is.
    pub handle: KeyHandle,
    /// Its public half, as a DER SubjectPublicKeyInfo.
    pub spki_der: Vec<u8>,
}

/// A key-management service holding a credential's keys.
///
/// One key per generation, so that any generation can be destroyed alone (an aborted rotation's
/// key is newer than the current one; an emergency destroys an older one).
#[async_trait]
pub trait KeyCustody: fmt::Display + fmt::Debug + Send + Sync {
    /// Read-only preflight: the service is reachable and the caller may create, sign with,
    /// describe and destroy `credential`'s keys. `keys` are the keys the stores name now.
    ///
    /// # Behavior
    /// - Never creates, changes or destroys a key. A missing permission is `PermissionDenied`
    ///   naming it (`transit/sign/NAME update`, `kms:Sign`).
    async fn preflight(&self, credential: &str, keys: &[KeyHandle]) -> Result<()>;

    /// Creates the non-exportable RSA key of `credential`'s `generation` with `bits` bits.
    ///
    /// # Behavior
    /// - Idempotent per credential and generation: when the key exists already (a rotation
    ///   resumed after its generate step), returns it instead of making another.
    /// - The key can sign RSASSA-PKCS1-v1_5 with SHA-256 and never leaves the service.
    async fn create_key(
        &self,
        credential: &str,
        generation: Generation,
        bits: u32,
    ) -> Result<CreatedKey>;

    /// An RSASSA-PKCS1-v1_5 SHA-256 signature of `message` (the digest is computed by the
    /// service or here; either way the result is what RS256 needs).
    ///
    /// # Behavior
    /// - Fails when the key is disabled, deleted or unknown, naming the key.
    async fn sign(&self, key: &KeyHandle, message: &[u8]) -> Result<Vec<u8>>;

    /// What the service says about `key`.
    async fn describe(&self, key: &KeyHandle) -> Result<KeyState>;

    /// Destroys `key` as far as the service allows, and says what was done (for the journal and
    /// the evidence bundle), e.g. "deleted transit key rekey-billing-3" or "disabled KMS key …
    /// and scheduled its deletion for 2026-12-13 (the shortest window, 7 days)".
    ///
    /// # Behavior
    /// - Idempotent: a key already gone (or already scheduled) succeeds.
    /// - After it returns, the key signs no more.
    async fn destroy_key(&self, key: &KeyHandle) -> Result<String>;

    /// What [`KeyCustody::destroy_key`] does in this service, for the evidence of an emergency
    /// ("transit keys deleted", "KMS keys disabled and scheduled for deletion in 7 days").
    fn destroy_means(&self) -> String;

    /// The keys of `credential` the service holds, with their generations, oldest first.
    async fn keys_of(&self, credential: &str) -> Result<Vec<(Generation, KeyHandle)>>;

    /// `key` just became CURRENT: a service that names the current key for operators (AWS: the
    /// alias `alias/<prefix><credential>`) points it there.
    ///
    /// # Behavior
    /// - Idempotent. The default does nothing.
    async fn made_current(&self, credential: &str, key: &KeyHandle) -> Result<()> {
        let _ = (credential, key);
        Ok(())
    }
}

/// A generation's key in custody: its handle and, once a store that holds custody of it read
/// it, the service that signs with it.
#[derive(Clone)]
pub struct CustodyKey {
    handle: KeyHandle,
    custody: Option<Arc<dyn KeyCustody>>,
}

impl fmt::Debug for CustodyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CustodyKey({})", self.handle)
    }
}

impl CustodyKey {
    /// A handle read from a store record, not yet able to sign.
    pub fn new(handle: KeyHandle) -> Self {
        CustodyKey {
            handle,
            custody: None,
        }
    }

    /// The same key, signing through `custody`.
    pub fn held_by(mut self, custody: Arc<dyn KeyCustody>) -> Self {
        self.custody = Some(custody);
        self
    }

    /// Where the key is.
    pub fn handle(&self) -> &KeyHandle {
        &self.handle
    }

    /// The service that signs with it.
    pub fn custody(&self) -> Result<&dyn KeyCustody> {
        self.custody.as_deref().ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!(
                    "{} is in custody, and this store was not opened as its '{}' store",
                    self.handle, self.handle.service
                ),
            )
            .with_hint(format!(
                "declare the store that holds this credential with kind = \"{}\"",
                self.handle.service
            ))
        })
    }
}

/// What signs RS256 for a credential: a private key held here, or a key in custody.
#[derive(Clone, Copy, Debug)]
pub enum Signer<'a> {
    /// A private key in memory.
    Local(&'a KeyMaterial),
    /// A key only its service can use.
    Custody(&'a CustodyKey),
}

/// The JOSE header of every RS256 JWT rekey signs.
const RS256_HEADER: &str = r#"{"alg":"RS256","typ":"JWT"}"#;

impl Signer<'_> {
    /// An RSASSA-PKCS1-v1_5 SHA-256 signature of `message`.
    pub async fn sign_rs256(&self, message: &[u8]) -> Result<Vec<u8>> {
        match self {
            Signer::Local(key) => {
                let encoding =
                    jsonwebtoken::EncodingKey::from_rsa_pem(key.expose_secret_pem().as_bytes())
                        .map_err(|_| {
                            // jsonwebtoken's error names the failure kind only, never key bytes.
                            Error::new(
                                ErrorKind::InvalidCertificate,
                                "the private key is not a usable RSA key",
                            )
                        })?;
                let signed =
                    jsonwebtoken::crypto::sign(message, &encoding, jsonwebtoken::Algorithm::RS256)
                        .map_err(|e| {
                            Error::new(
                                ErrorKind::InvalidCertificate,
                                format!("the private key cannot sign with RS256: {e}"),
                            )
                        })?;
                URL_SAFE_NO_PAD.decode(signed).map_err(|e| {
                    Error::new(
                        ErrorKind::Unexpected,
                        format!("an RS256 signature is not base64url: {e}"),
                    )
                })
            }
            Signer::Custody(key) => key.custody()?.sign(key.handle(), message).await,
        }
    }

    /// A compact RS256 JWT of `claims` (header `{"alg":"RS256","typ":"JWT"}`), as Salesforce's
    /// JWT bearer flow takes it.
    pub async fn jwt(&self, claims: &impl Serialize) -> Result<SecretString> {
        let claims = serde_json::to_vec(claims).map_err(|e| {
            Error::new(
                ErrorKind::Unexpected,
                format!("cannot encode JWT claims: {e}"),
            )
        })?;
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(RS256_HEADER),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature = self.sign_rs256(input.as_bytes()).await?;
        Ok(SecretString::new(format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        )))
    }

    /// How messages name what signs: "the private key" or the key in custody.
    pub fn describe(&self) -> String {
        match self {
            Signer::Local(_) => "the private key".to_string(),
            Signer::Custody(key) => key.handle().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_read_from_a_record_cannot_sign_until_its_store_holds_it() {
        let key = CustodyKey::new(KeyHandle {
            service: CustodyService::AwsKms,
            key_id: "arn:aws:kms:us-east-1:1:key/k".into(),
            version: None,
            algorithm: "rsa-2048".into(),
        });
        let err = key.custody().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.to_string().contains("aws_kms key arn:aws:kms"), "{err}");
        assert!(
            err.hint().unwrap().contains("kind = \"aws_kms\""),
            "{err:?}"
        );
        assert_eq!(
            format!("{key:?}"),
            "CustodyKey(aws_kms key arn:aws:kms:us-east-1:1:key/k)"
        );
    }
}
