//! Private key material as a type that cannot leak by accident.

use crate::{Error, ErrorKind, Result};
use std::fmt;
use zeroize::Zeroizing;

/// PEM labels of RSA private keys: PKCS#8, and PKCS#1 as older `openssl genrsa` writes it.
const PEM_LABELS: [&str; 2] = ["PRIVATE KEY", "RSA PRIVATE KEY"];

/// An RSA private key as PEM (PKCS#8, or PKCS#1 as written by older `openssl genrsa`).
///
/// Not `Clone`, `Serialize` or `Display`, on purpose; `Debug` prints a placeholder; the buffer is
/// zeroed on drop. The bytes leave this type only through [`KeyMaterial::expose_secret_pem`].
pub struct KeyMaterial(Zeroizing<String>);

impl KeyMaterial {
    /// Wraps a PEM private key. Only the armour is checked here; whether the key matches a
    /// certificate is proven by the PKI layer before anything is uploaded.
    pub fn from_pem(pem: String) -> Result<Self> {
        let pem = Zeroizing::new(pem);
        let trimmed = pem.trim_start();
        let armoured = |label: &&str| {
            trimmed
                .strip_prefix("-----BEGIN ")
                .and_then(|rest| rest.strip_prefix(*label))
                .is_some_and(|rest| rest.starts_with("-----"))
        };
        if !PEM_LABELS.iter().any(armoured) {
            return Err(Error::new(
                ErrorKind::InvalidCertificate,
                "not a PEM private key (expected a 'BEGIN PRIVATE KEY' or 'BEGIN RSA PRIVATE KEY' block)",
            ));
        }
        Ok(KeyMaterial(pem))
    }

    /// The PEM text. Every call site is a place where key bytes leave the type: keep them few
    /// and never pass the result to a formatter, logger or serializer.
    pub fn expose_secret_pem(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyMaterial([secret key elided])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_key_and_bad_armour_is_refused_without_echoing_input() {
        let key = KeyMaterial::from_pem(format!(
            "-----BEGIN {0}-----\nSECRETBYTES\n-----END {0}-----\n",
            PEM_LABELS[0]
        ))
        .unwrap();
        assert_eq!(format!("{key:?}"), "KeyMaterial([secret key elided])");
        assert!(key.expose_secret_pem().contains("SECRETBYTES"));

        let err = KeyMaterial::from_pem("SECRETBYTES".into()).unwrap_err();
        assert!(!err.to_string().contains("SECRETBYTES"));
        assert_eq!(err.kind(), ErrorKind::InvalidCertificate);
    }
}
