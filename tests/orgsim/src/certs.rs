//! Certificates as Salesforce stores them on apps: parsing (PEM with or without armor),
//! rendering for reads, fingerprints, and JWT signature checks against the public key.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, DecodingKey};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

/// Salesforce rejects ECA certificates larger than this (in characters as deployed).
pub(crate) const ECA_MAX_CERT_CHARS: usize = 4096;

/// Minimum RSA modulus size the token endpoint accepts.
const MIN_RSA_BITS: usize = 2048;

/// A parsed certificate: its DER plus what the token endpoint needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cert {
    pub(crate) der: Vec<u8>,
    /// PKCS#1 RSA public key when the key is RSA; other key types never verify (ECDSA is
    /// "silently rejected" by Salesforce).
    rsa_pkcs1: Option<Vec<u8>>,
    rsa_bits: usize,
    not_after: i64,
}

impl Cert {
    /// Parses a certificate as deployed: full PEM, or the bare base64 body (sfpowerkit style).
    pub(crate) fn parse(text: &str) -> Result<Cert, String> {
        let body: String = if text.contains("-----BEGIN") {
            let start = text
                .find("-----BEGIN CERTIFICATE-----")
                .ok_or("not a CERTIFICATE PEM")?;
            let rest = &text[start + "-----BEGIN CERTIFICATE-----".len()..];
            let end = rest
                .find("-----END CERTIFICATE-----")
                .ok_or("PEM has no END line")?;
            rest[..end].to_string()
        } else {
            text.to_string()
        };
        let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        let der = STANDARD
            .decode(compact)
            .map_err(|e| format!("bad base64: {e}"))?;
        let (_, parsed) =
            X509Certificate::from_der(&der).map_err(|e| format!("bad X.509 certificate: {e}"))?;
        let spki = parsed.public_key();
        let (rsa_pkcs1, rsa_bits) = match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => {
                (Some(spki.subject_public_key.data.to_vec()), rsa.key_size())
            }
            _ => (None, 0),
        };
        let not_after = parsed.validity().not_after.timestamp();
        Ok(Cert {
            der,
            rsa_pkcs1,
            rsa_bits,
            not_after,
        })
    }

    /// The subject as Salesforce's audit trail prints it: most specific attribute first,
    /// `EMAILADDRESS=a@x.com, O=DeathStar, C=GE`.
    pub(crate) fn subject(&self) -> String {
        let Ok((_, parsed)) = X509Certificate::from_der(&self.der) else {
            return String::new();
        };
        let mut parts: Vec<String> = Vec::new();
        for rdn in parsed.subject().iter() {
            for attr in rdn.iter() {
                let oid = attr.attr_type();
                let name =
                    x509_parser::objects::oid2abbrev(oid, x509_parser::objects::oid_registry())
                        .map(|n| {
                            if n == "Email" {
                                "EMAILADDRESS".to_string()
                            } else {
                                n.to_string()
                            }
                        })
                        .unwrap_or_else(|_| oid.to_id_string());
                let value = attr.as_str().map(str::to_string).unwrap_or_default();
                parts.push(format!("{name}={value}"));
            }
        }
        parts.reverse();
        parts.join(", ")
    }

    /// Armored PEM with 64-character lines.
    pub(crate) fn pem(&self) -> String {
        let body = STANDARD.encode(&self.der);
        let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
        for line in body.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
        out
    }

    /// The base64 DER body without armor or line breaks.
    pub(crate) fn base64(&self) -> String {
        STANDARD.encode(&self.der)
    }

    /// Lowercase hex SHA-256 of the DER.
    pub(crate) fn sha256_hex(&self) -> String {
        hex::encode(Sha256::digest(&self.der))
    }

    /// True when `not_after` lies before `now` (unix seconds).
    pub(crate) fn expired_at(&self, now: i64) -> bool {
        self.not_after < now
    }

    /// Checks an RS256 signature over `message` (the first two JWS segments).
    pub(crate) fn verifies(&self, message: &[u8], signature_b64url: &str) -> bool {
        let Some(pkcs1) = &self.rsa_pkcs1 else {
            return false;
        };
        if self.rsa_bits < MIN_RSA_BITS {
            return false;
        }
        let key = DecodingKey::from_rsa_der(pkcs1);
        jsonwebtoken::crypto::verify(signature_b64url, message, &key, Algorithm::RS256)
            .unwrap_or(false)
    }
}
