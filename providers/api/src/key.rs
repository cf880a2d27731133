//! Private key material as a type that cannot leak by accident.

use crate::{Error, ErrorKind, Result};
use std::fmt;
use zeroize::Zeroizing;

const PEM_LABELS: [&str; 2] = [
    "-----BEGIN PRIVATE KEY-----",
    "-----BEGIN RSA PRIVATE KEY-----",
];

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
        if !PEM_LABELS.iter().any(|label| trimmed.starts_with(label)) {
            return Err(Error::new(
                ErrorKind::InvalidCertificate,
                "not a PEM private key (expected '-----BEGIN PRIVATE KEY-----' or '-----BEGIN RSA PRIVATE KEY-----')",
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
        let key = KeyMaterial::from_pem(
            "-----BEGIN PRIVATE KEY-----\nSECRETBYTES\n-----END PRIVATE KEY-----\n".into(),
        )
        .unwrap();
        assert_eq!(format!("{key:?}"), "KeyMaterial([secret key elided])");
        assert!(key.expose_secret_pem().contains("SECRETBYTES"));

        let err = KeyMaterial::from_pem("SECRETBYTES".into()).unwrap_err();
        assert!(!err.to_string().contains("SECRETBYTES"));
        assert_eq!(err.kind(), ErrorKind::InvalidCertificate);
    }
}
