//! An External Client App's consumer key and secret (the client credentials of the OAuth client
//! credentials and web-server flows) as a type that cannot leak by accident, and what a
//! generation of either kind of credential holds.

use crate::{Certificate, CustodyKey, Error, ErrorKind, Fingerprint, KeyMaterial, Result, Signer};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::fmt;
use zeroize::Zeroizing;

/// Domain separation for [`ConsumerSecret::fingerprint`], so the digest of a consumer credential
/// can never equal the digest of anything else rekey fingerprints.
const FINGERPRINT_DOMAIN: &[u8] = b"rekey consumer credential v1\0";

/// An OAuth consumer key (the `client_id`, an identifier that may be shown) and its consumer
/// secret (a password that must never be shown).
///
/// Not `Clone`, `Serialize` or `Display`, on purpose; `Debug` shows the key and hides the secret;
/// the secret is zeroed on drop and leaves this type only through
/// [`ConsumerSecret::expose_secret`].
pub struct ConsumerSecret {
    key: String,
    secret: Zeroizing<String>,
}

impl ConsumerSecret {
    /// Wraps a consumer key and secret as Salesforce issued them. Neither may be empty or hold
    /// whitespace (a pasted line break is the usual mistake); the error never quotes the secret.
    pub fn new(key: impl Into<String>, secret: impl Into<String>) -> Result<Self> {
        let key = key.into();
        let secret = Zeroizing::new(secret.into());
        let bad = |s: &str| s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control());
        if bad(&key) {
            return Err(Error::new(
                ErrorKind::Config,
                "a consumer key is empty or holds whitespace",
            )
            .with_hint("copy the consumer key exactly as Salesforce shows it, on one line"));
        }
        if bad(&secret) {
            return Err(Error::new(
                ErrorKind::Config,
                format!("the consumer secret of consumer key {key} is empty or holds whitespace"),
            )
            .with_hint("copy the consumer secret exactly as Salesforce shows it, on one line"));
        }
        Ok(ConsumerSecret { key, secret })
    }

    /// The consumer key (`client_id`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The consumer secret. Every call site is a place where the secret leaves the type: use it
    /// only to build a request or a store record, never to format a message.
    pub fn expose_secret(&self) -> &str {
        &self.secret
    }

    /// SHA-256 over the key and the secret (domain-separated): what journals, reports and
    /// adoption checks compare. The secret is 256 random bits or more, so the digest reveals
    /// nothing usable about it.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut hasher = Sha256::new();
        hasher.update(FINGERPRINT_DOMAIN);
        hasher.update(self.key.as_bytes());
        hasher.update([0]);
        hasher.update(self.secret.as_bytes());
        Fingerprint::from_digest(hasher.finalize().into())
    }

    /// The public half: the key and the fingerprint.
    pub fn public(&self) -> ConsumerKey {
        ConsumerKey {
            key: self.key.clone(),
            fingerprint: self.fingerprint(),
        }
    }
}

impl fmt::Debug for ConsumerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumerSecret")
            .field("key", &self.key)
            .field("secret", &"[secret elided]")
            .finish()
    }
}

/// The public half of a consumer credential: what stores list and reports show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerKey {
    /// The consumer key (`client_id`).
    pub key: String,
    /// [`ConsumerSecret::fingerprint`] of the pair.
    pub fingerprint: Fingerprint,
}

/// What a credential rotates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// A private key whose certificate the app trusts for the JWT bearer flow.
    JwtCertificate,
    /// An External Client App's consumer key and secret (client credentials flow).
    ConsumerSecret,
}

impl fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CredentialKind::JwtCertificate => "jwt_certificate",
            CredentialKind::ConsumerSecret => "consumer_secret",
        })
    }
}

/// The public half of one generation: what may be printed, listed and uploaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Public {
    /// The certificate of a key.
    Certificate(Certificate),
    /// The consumer key of a consumer secret.
    Consumer(ConsumerKey),
}

impl Public {
    /// The generation's identity in journals and reports: the certificate's fingerprint, or the
    /// consumer credential's.
    pub fn fingerprint(&self) -> Fingerprint {
        match self {
            Public::Certificate(c) => c.fingerprint,
            Public::Consumer(c) => c.fingerprint,
        }
    }

    /// The certificate, for a key.
    pub fn certificate(&self) -> Option<&Certificate> {
        match self {
            Public::Certificate(c) => Some(c),
            Public::Consumer(_) => None,
        }
    }

    /// The consumer key, for a consumer secret.
    pub fn consumer(&self) -> Option<&ConsumerKey> {
        match self {
            Public::Certificate(_) => None,
            Public::Consumer(c) => Some(c),
        }
    }

    /// When it stops being valid by itself: a certificate's `notAfter`. A consumer secret has
    /// no expiry of its own.
    pub fn not_after(&self) -> Option<DateTime<Utc>> {
        self.certificate().map(|c| c.not_after)
    }

    /// Which kind of credential it belongs to.
    pub fn kind(&self) -> CredentialKind {
        match self {
            Public::Certificate(_) => CredentialKind::JwtCertificate,
            Public::Consumer(_) => CredentialKind::ConsumerSecret,
        }
    }
}

/// The secret half of one generation.
#[derive(Debug)] // safe: both variants redact their secret in Debug
pub enum Material {
    /// A private key.
    Key(KeyMaterial),
    /// A consumer key and secret.
    Consumer(ConsumerSecret),
    /// A private key kept by a key-management service, which signs with it and never hands it
    /// out: only its handle is here.
    Custody(CustodyKey),
}

impl Material {
    /// The private key itself, or a `Config` error naming what is held instead (a consumer
    /// secret, or a key in custody, which is never handed out).
    pub fn key(&self) -> Result<&KeyMaterial> {
        match self {
            Material::Key(k) => Ok(k),
            Material::Consumer(c) => Err(Error::new(
                ErrorKind::Config,
                format!(
                    "the store holds the consumer secret of consumer key {}, not a private key",
                    c.key()
                ),
            )
            .with_hint(
                "a credential's `kind` decides what its stores hold; check `kind` in rekey.toml",
            )),
            Material::Custody(k) => Err(Error::new(
                ErrorKind::Config,
                format!(
                    "the private key is in custody ({}) and never leaves it",
                    k.handle()
                ),
            )
            .with_hint("consumers of a key in custody get tokens: `rekey token` or `rekey agent`")),
        }
    }

    /// What signs with this generation's key: the key itself, or its service.
    pub fn signer(&self) -> Result<Signer<'_>> {
        match self {
            Material::Key(k) => Ok(Signer::Local(k)),
            Material::Custody(k) => Ok(Signer::Custody(k)),
            Material::Consumer(_) => Err(Error::new(
                ErrorKind::Config,
                "the store holds a consumer secret, not a private key",
            )
            .with_hint(
                "a credential's `kind` decides what its stores hold; check `kind` in rekey.toml",
            )),
        }
    }

    /// The consumer secret, or a `Config` error naming what is held instead.
    pub fn consumer(&self) -> Result<&ConsumerSecret> {
        match self {
            Material::Consumer(c) => Ok(c),
            Material::Key(_) | Material::Custody(_) => Err(Error::new(
                ErrorKind::Config,
                "the store holds a private key, not a consumer secret",
            )
            .with_hint(
                "a credential's `kind` decides what its stores hold; check `kind` in rekey.toml",
            )),
        }
    }

    /// Which kind of credential it belongs to.
    pub fn kind(&self) -> CredentialKind {
        match self {
            Material::Key(_) | Material::Custody(_) => CredentialKind::JwtCertificate,
            Material::Consumer(_) => CredentialKind::ConsumerSecret,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_key_never_the_secret_and_the_fingerprint_binds_both() {
        let s = ConsumerSecret::new("3MVGkey", "TOPSECRETVALUE").unwrap();
        let shown = format!(
            "{s:?} {:?}",
            Material::Consumer(ConsumerSecret::new("k", "TOPSECRETVALUE").unwrap())
        );
        assert!(shown.contains("3MVGkey"));
        assert!(!shown.contains("TOPSECRETVALUE"), "{shown}");
        let other_secret = ConsumerSecret::new("3MVGkey", "TOPSECRETVALUF").unwrap();
        let other_key = ConsumerSecret::new("3MVGkez", "TOPSECRETVALUE").unwrap();
        assert_ne!(s.fingerprint(), other_secret.fingerprint());
        assert_ne!(s.fingerprint(), other_key.fingerprint());
        assert_eq!(s.public().fingerprint, s.fingerprint());
    }

    #[test]
    fn blank_or_wrapped_values_are_refused_without_quoting_the_secret() {
        let err = ConsumerSecret::new("k", "SEC RET").unwrap_err();
        assert!(!err.to_string().contains("SEC"), "{err}");
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(ConsumerSecret::new("", "x").is_err());
        assert!(ConsumerSecret::new("k", "secret\n").is_err());
    }
}
