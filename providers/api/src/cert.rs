//! Public certificates: parsed once, carried with their fingerprints and validity.

use crate::{Error, ErrorKind, Result};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::fmt;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

/// A SHA-256 digest, shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Fingerprint(Sha256::digest(bytes).into())
    }

    /// Wraps a SHA-256 digest computed elsewhere (e.g. over more than one value).
    pub fn from_digest(digest: [u8; 32]) -> Self {
        Fingerprint(digest)
    }

    /// Parses 64 hex digits (colons allowed, any case), as printed by rekey or `openssl -fingerprint`.
    pub fn parse(text: &str) -> Result<Self> {
        let digits: String = text.chars().filter(|c| *c != ':').collect();
        let mut out = [0u8; 32];
        hex::decode_to_slice(&digits, &mut out).map_err(|_| {
            Error::new(
                ErrorKind::Config,
                format!("'{text}' is not a SHA-256 fingerprint (64 hex digits)"),
            )
        })?;
        Ok(Fingerprint(out))
    }

    /// The hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.to_hex())
    }
}

impl serde::Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Fingerprint::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// An X.509 certificate we may print, store and upload freely, with what rekey needs to know
/// about it already extracted.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    pem: String,
    der: Vec<u8>,
    /// SHA-256 of the certificate DER (what `openssl x509 -fingerprint -sha256` shows).
    pub fingerprint: Fingerprint,
    /// SHA-256 of the SubjectPublicKeyInfo DER: identifies the key pair across re-issued certs.
    pub spki_fingerprint: Fingerprint,
    /// Subject distinguished name, RFC 4514 style.
    pub subject: String,
    /// Issuer distinguished name, RFC 4514 style.
    pub issuer: String,
    /// Serial number as hex.
    pub serial: String,
    /// Start of validity.
    pub not_before: DateTime<Utc>,
    /// End of validity.
    pub not_after: DateTime<Utc>,
    /// Public key algorithm, e.g. `RSA`.
    pub key_algorithm: String,
    /// Public key size in bits (RSA modulus length).
    pub key_bits: usize,
}

impl Certificate {
    /// Parses a PEM certificate. Salesforce metadata sometimes carries the base64 body without
    /// armour; that form is accepted too and re-armoured.
    pub fn from_pem(text: &str) -> Result<Self> {
        let body: String = if text.contains("-----BEGIN CERTIFICATE-----") {
            let start = text.find("-----BEGIN CERTIFICATE-----").unwrap_or(0)
                + "-----BEGIN CERTIFICATE-----".len();
            let end = text[start..]
                .find("-----END CERTIFICATE-----")
                .map(|e| start + e)
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidCertificate,
                        "PEM certificate has no '-----END CERTIFICATE-----' line",
                    )
                })?;
            text[start..end]
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect()
        } else {
            text.chars().filter(|c| !c.is_whitespace()).collect()
        };
        let der = base64_decode(&body).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidCertificate,
                "certificate is neither PEM nor base64 DER",
            )
        })?;
        Self::from_der(der)
    }

    /// Parses a DER certificate.
    pub fn from_der(der: Vec<u8>) -> Result<Self> {
        let (_, x509) = X509Certificate::from_der(&der).map_err(|e| {
            Error::new(
                ErrorKind::InvalidCertificate,
                format!("cannot parse X.509 certificate: {e}"),
            )
        })?;
        let validity = x509.validity();
        let timestamp = |t: i64| {
            DateTime::<Utc>::from_timestamp(t, 0).ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidCertificate,
                    "certificate validity out of range",
                )
            })
        };
        let not_before = timestamp(validity.not_before.timestamp())?;
        let not_after = timestamp(validity.not_after.timestamp())?;
        let spki = x509.public_key();
        let (key_algorithm, key_bits) = match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => ("RSA".to_string(), rsa.key_size()),
            Ok(PublicKey::EC(point)) => ("EC".to_string(), point.key_size()),
            Ok(_) | Err(_) => (spki.algorithm.algorithm.to_id_string(), 0),
        };
        let cert = Certificate {
            fingerprint: Fingerprint::of(&der),
            spki_fingerprint: Fingerprint::of(spki.raw),
            subject: x509.subject().to_string(),
            issuer: x509.issuer().to_string(),
            serial: x509.raw_serial_as_string().replace(':', ""),
            not_before,
            not_after,
            key_algorithm,
            key_bits,
            pem: pem_armour(&der),
            der: Vec::new(),
        };
        Ok(Certificate { der, ..cert })
    }

    /// The certificate as PEM with standard armour and 64-column lines.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The certificate DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Whole days from `now` until `not_after` (negative once expired).
    pub fn days_left(&self, now: DateTime<Utc>) -> i64 {
        (self.not_after - now).num_days()
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("subject", &self.subject)
            .field("fingerprint", &self.fingerprint)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

fn pem_armour(der: &[u8]) -> String {
    let body = base64_encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn base64_encode(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()
        .filter(|d| !d.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_parses_openssl_form_and_rejects_junk() {
        let fp = Fingerprint::of(b"x");
        let colons: String = fp
            .to_hex()
            .to_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|p| std::str::from_utf8(p).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(Fingerprint::parse(&colons).unwrap(), fp);
        assert!(Fingerprint::parse("abc").is_err());
    }

    #[test]
    fn garbage_is_an_invalid_certificate() {
        let err =
            Certificate::from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----")
                .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidCertificate);
    }
}
