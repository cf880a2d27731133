//! Key pairs and self-signed certificates for JWT bearer (RS256), and the proof that a key and a
//! certificate belong together.
//!
//! rcgen generates (its aws-lc-rs backend is the one that can make RSA keys), or signs the
//! certificate of a key in custody through its service; x509-parser reads
//! back through `rekey_api::Certificate`; jsonwebtoken signs and verifies the probe exactly the way
//! a Salesforce token request is signed, so a pair that passes here is a pair Salesforce can use.

use chrono::{DateTime, Duration, Utc};
use rekey_api::{
    Certificate, CreatedKey, CustodyKey, Error, ErrorKind, Fingerprint, Generation, KeyCustody,
    KeyMaterial, Result, Signer,
};
use serde::Serialize;
use std::fmt;
use std::sync::Arc;

/// The key algorithms JWT bearer accepts: RSA with SHA-256 signatures (RS256).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum KeyAlgorithm {
    /// RSA, 2048-bit modulus (the default).
    #[serde(rename = "rsa-2048")]
    Rsa2048,
    /// RSA, 3072-bit modulus.
    #[serde(rename = "rsa-3072")]
    Rsa3072,
    /// RSA, 4096-bit modulus.
    #[serde(rename = "rsa-4096")]
    Rsa4096,
}

impl KeyAlgorithm {
    /// Parses a config name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Its modulus size in bits.
    pub fn bits(self) -> u32 {
        match self {
            KeyAlgorithm::Rsa2048 => 2048,
            KeyAlgorithm::Rsa3072 => 3072,
            KeyAlgorithm::Rsa4096 => 4096,
        }
    }

    fn rsa_size(self) -> rcgen::RsaKeySize {
        match self {
            KeyAlgorithm::Rsa2048 => rcgen::RsaKeySize::_2048,
            KeyAlgorithm::Rsa3072 => rcgen::RsaKeySize::_3072,
            KeyAlgorithm::Rsa4096 => rcgen::RsaKeySize::_4096,
        }
    }
}

impl KeyAlgorithm {
    /// Every algorithm.
    pub const ALL: [KeyAlgorithm; 3] = [
        KeyAlgorithm::Rsa2048,
        KeyAlgorithm::Rsa3072,
        KeyAlgorithm::Rsa4096,
    ];

    /// The names accepted in `rekey.toml` and on the command line, for error hints.
    pub fn names() -> String {
        Self::ALL.map(Self::name).join(", ")
    }

    /// Its name in `rekey.toml` and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            KeyAlgorithm::Rsa2048 => "rsa-2048",
            KeyAlgorithm::Rsa3072 => "rsa-3072",
            KeyAlgorithm::Rsa4096 => "rsa-4096",
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The subject of the self-signed certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Subject {
    /// Common name.
    pub cn: String,
    /// Organization.
    pub o: Option<String>,
    /// Organizational unit.
    pub ou: Option<String>,
}

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertSpec {
    /// Key algorithm and size.
    pub algorithm: KeyAlgorithm,
    /// Certificate subject.
    pub subject: Subject,
    /// Days from issuance to notAfter.
    pub validity_days: u32,
}

/// Generates a key pair and a self-signed certificate for it, valid from `now`, then proves the two
/// belong together before handing them out.
pub fn generate(spec: &CertSpec, now: DateTime<Utc>) -> Result<(KeyMaterial, Certificate)> {
    let key = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, spec.algorithm.rsa_size())
        .map_err(|e| pki_error("generate an RSA key", e))?;
    let cert = params(spec, now)?
        .self_signed(&key)
        .map_err(|e| pki_error("sign the certificate", e))?;
    let material = KeyMaterial::from_pem(key.serialize_pem())?;
    let certificate = Certificate::from_der(cert.der().to_vec())?;
    prove_pair(&material, &certificate)?;
    Ok((material, certificate))
}

/// Has `custody` generate the key of `credential`'s `generation` (or find the one it made for
/// it before), signs a self-signed certificate for it with the service, then proves the two
/// belong together with a signature the service makes and this process verifies.
pub async fn generate_in_custody(
    spec: &CertSpec,
    now: DateTime<Utc>,
    custody: Arc<dyn KeyCustody>,
    credential: &str,
    generation: Generation,
) -> Result<(CustodyKey, Certificate)> {
    let created = custody
        .create_key(credential, generation, spec.algorithm.bits())
        .await?;
    let remote = RemoteKey::new(&created, Arc::clone(&custody))?;
    let params = params(spec, now)?;
    // rcgen signs synchronously: on the blocking pool, where the service's answer can be
    // awaited without stalling the runtime's own threads.
    let cert = tokio::task::spawn_blocking(move || {
        params
            .self_signed(&remote)
            .map_err(|e| match remote.failure() {
                Some(failure) => failure,
                None => pki_error("sign the certificate", e),
            })
    })
    .await
    .map_err(|e| {
        Error::new(ErrorKind::Unexpected, "certificate signing stopped").with_source(e)
    })??;
    let certificate = Certificate::from_der(cert.der().to_vec())?;
    let key = CustodyKey::new(created.handle).held_by(custody);
    prove_in_custody(&key, &certificate).await?;
    Ok((key, certificate))
}

/// The certificate rekey issues for `spec` from `now`, before it is signed.
fn params(spec: &CertSpec, now: DateTime<Utc>) -> Result<rcgen::CertificateParams> {
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, spec.subject.cn.as_str());
    if let Some(o) = &spec.subject.o {
        dn.push(rcgen::DnType::OrganizationName, o.as_str());
    }
    if let Some(ou) = &spec.subject.ou {
        dn.push(rcgen::DnType::OrganizationalUnitName, ou.as_str());
    }
    params.distinguished_name = dn;
    // A random, positive 128-bit serial: the top bit is cleared so DER does not need a sign byte.
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    params.not_before = to_offset(now)?;
    params.not_after = to_offset(now + Duration::days(i64::from(spec.validity_days)))?;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    // rcgen 0.14 writes no extensions at all (key usage included) unless one of a few others is
    // set; an explicit CA:FALSE is right for this leaf certificate and makes key usage appear.
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    Ok(params)
}

/// A key in custody as rcgen's signing key: its public half from the service, its signatures
/// made by the service (awaited from the blocking pool thread rcgen runs on).
struct RemoteKey {
    public_key: Vec<u8>,
    custody: Arc<dyn KeyCustody>,
    handle: rekey_api::KeyHandle,
    runtime: tokio::runtime::Handle,
    /// The service's own error, kept because rcgen's error type cannot carry it.
    failed: std::sync::Mutex<Option<Error>>,
}

impl RemoteKey {
    fn new(created: &CreatedKey, custody: Arc<dyn KeyCustody>) -> Result<Self> {
        let (_, spki) =
            <x509_parser::x509::SubjectPublicKeyInfo as x509_parser::prelude::FromDer<_>>::from_der(
                &created.spki_der,
            )
            .map_err(|e| pki_error(&format!("read the public key of {}", created.handle), e))?;
        Ok(RemoteKey {
            public_key: spki.subject_public_key.data.to_vec(),
            custody,
            handle: created.handle.clone(),
            runtime: tokio::runtime::Handle::current(),
            failed: std::sync::Mutex::new(None),
        })
    }

    fn failure(&self) -> Option<Error> {
        self.failed.lock().ok()?.take()
    }
}

impl rcgen::PublicKeyData for RemoteKey {
    fn der_bytes(&self) -> &[u8] {
        &self.public_key
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_RSA_SHA256
    }
}

impl rcgen::SigningKey for RemoteKey {
    fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, rcgen::Error> {
        self.runtime
            .block_on(self.custody.sign(&self.handle, msg))
            .map_err(|e| {
                if let Ok(mut failed) = self.failed.lock() {
                    *failed = Some(e);
                }
                rcgen::Error::RemoteKeyError
            })
    }
}

/// The claims of the proof that a key and a certificate belong together.
fn probe_claims() -> serde_json::Value {
    serde_json::json!({ "probe": "rekey key/certificate match", "exp": u32::MAX })
}

/// Refuses certificates whose key Salesforce would refuse.
fn check_usable(certificate: &Certificate) -> Result<()> {
    if certificate.key_algorithm != "RSA" || certificate.key_bits < 2048 {
        return Err(Error::new(
            ErrorKind::InvalidCertificate,
            format!(
                "certificate {} has a {}-bit {} key; JWT bearer needs RSA of at least 2048 bits",
                certificate.fingerprint, certificate.key_bits, certificate.key_algorithm
            ),
        ));
    }
    Ok(())
}

/// Verifies the probe `token` with `certificate`'s public key; `signer` names what signed it.
fn verify_probe(token: &str, certificate: &Certificate, signer: &str) -> Result<()> {
    let decoding = jsonwebtoken::DecodingKey::from_rsa_pem(certificate.pem().as_bytes())
        .map_err(|e| pki_error("read the certificate's public key", e))?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<serde_json::Value>(token, &decoding, &validation).map_err(|_| {
        Error::new(
            ErrorKind::InvalidCertificate,
            format!(
                "{signer} does not belong to certificate {}",
                certificate.fingerprint
            ),
        )
        .with_hint("Salesforce would answer 'invalid assertion'; use the key the certificate was issued for")
    })?;
    Ok(())
}

/// Proves that `key` is the private half of `certificate` by signing an RS256 probe with the key
/// and verifying it with the certificate's public key. Also refuses keys Salesforce would refuse.
pub fn prove_pair(key: &KeyMaterial, certificate: &Certificate) -> Result<()> {
    check_usable(certificate)?;
    let encoding = jsonwebtoken::EncodingKey::from_rsa_pem(key.expose_secret_pem().as_bytes())
        .map_err(|_| {
            Error::new(
                ErrorKind::InvalidCertificate,
                "the private key is not a usable RSA key",
            )
        })?;
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    let token = jsonwebtoken::encode(&header, &probe_claims(), &encoding).map_err(|_| {
        Error::new(
            ErrorKind::InvalidCertificate,
            "the private key cannot sign with RS256",
        )
    })?;
    verify_probe(&token, certificate, "the private key")
}

/// [`prove_pair`] for a key in custody: the service signs the probe, this process verifies it.
pub async fn prove_in_custody(key: &CustodyKey, certificate: &Certificate) -> Result<()> {
    check_usable(certificate)?;
    let signer = Signer::Custody(key);
    let token = signer.jwt(&probe_claims()).await?;
    verify_probe(token.expose_secret(), certificate, &signer.describe())
}

/// Public facts about a private key, for `rekey inspect`; never the key itself.
#[derive(Clone, Debug, Serialize)]
pub struct KeyFacts {
    /// `RSA` or another algorithm name.
    pub algorithm: String,
    /// Modulus size in bits.
    pub bits: usize,
    /// SHA-256 of the public key's SubjectPublicKeyInfo: equal to a certificate's
    /// `spki_fingerprint` exactly when the certificate was issued for this key.
    pub spki_fingerprint: Fingerprint,
}

/// Reads the public half of a PKCS#8 private key.
pub fn key_facts(key: &KeyMaterial) -> Result<KeyFacts> {
    use rcgen::PublicKeyData as _;
    let pair = rcgen::KeyPair::from_pem(key.expose_secret_pem()).map_err(|_| {
        Error::new(ErrorKind::InvalidCertificate, "not a PKCS#8 private key").with_hint(
            "convert a PKCS#1 key with: openssl pkcs8 -topk8 -nocrypt -in old.key -out new.key",
        )
    })?;
    let spki_der = pair.subject_public_key_info();
    let (_, spki) =
        <x509_parser::x509::SubjectPublicKeyInfo as x509_parser::prelude::FromDer<_>>::from_der(
            &spki_der,
        )
        .map_err(|e| pki_error("parse the public key", e))?;
    let (algorithm, bits) = match spki.parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => ("RSA".to_string(), rsa.key_size()),
        Ok(x509_parser::public_key::PublicKey::EC(point)) => ("EC".to_string(), point.key_size()),
        _ => (spki.algorithm.algorithm.to_id_string(), 0),
    };
    Ok(KeyFacts {
        algorithm,
        bits,
        spki_fingerprint: Fingerprint::of(&spki_der),
    })
}

fn to_offset(t: DateTime<Utc>) -> Result<::time::OffsetDateTime> {
    ::time::OffsetDateTime::from_unix_timestamp(t.timestamp())
        .map_err(|e| pki_error("convert a timestamp", e))
}

fn pki_error(action: &str, e: impl fmt::Display) -> Error {
    Error::new(
        ErrorKind::InvalidCertificate,
        format!("cannot {action}: {e}"),
    )
}

/// What a PEM file given to rekey should hold, for the words and the conversion command when it
/// does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PemFile {
    /// A private key.
    Key,
    /// A certificate.
    Certificate,
    /// Either (`inspect`).
    Either,
}

/// Reads a key or certificate file, which rekey takes as PEM: a file that cannot be read is a
/// configuration error; a DER (binary) one and an encrypted key are unreadable input (exit 65)
/// named as such, with the openssl command that converts them.
pub fn read_pem(path: &std::path::Path, expected: PemFile) -> Result<String> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| {
        Error::new(ErrorKind::Config, format!("cannot read {shown}")).with_source(e)
    })?;
    let text = match String::from_utf8(bytes) {
        Ok(text) if text.contains("-----BEGIN ") || !text.starts_with('\u{30}') => text,
        Ok(text) => return Err(der(path, text.as_bytes(), expected)),
        Err(e) => return Err(der(path, e.as_bytes(), expected)),
    };
    // PKCS#8 says so in its block label (`ENCRYPTED …`), the legacy OpenSSL form in a header.
    let labels = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("-----BEGIN ")?.strip_suffix("-----"));
    if labels
        .into_iter()
        .any(|label| label.starts_with("ENCRYPTED "))
        || text.contains("Proc-Type: 4,ENCRYPTED")
    {
        return Err(Error::new(
            ErrorKind::InvalidCertificate,
            format!("{shown}: the private key is encrypted (protected by a passphrase); rekey reads unencrypted PEM keys"),
        )
        .with_hint(format!(
            "decrypt it into a file only you can read and give rekey that one: (umask 077; openssl pkey -in {shown} -out {shown}.dec)"
        )));
    }
    Ok(text)
}

/// The error for a file that is not text: DER, most likely, which openssl converts to PEM.
fn der(path: &std::path::Path, bytes: &[u8], expected: PemFile) -> Error {
    let shown = path.display();
    let certificate = x509_parser::parse_x509_certificate(bytes).is_ok();
    let looks_der = bytes.first() == Some(&0x30);
    let convert_cert = format!("openssl x509 -inform der -in {shown} -out {shown}.pem");
    let convert_key = format!("openssl pkey -inform der -in {shown} -out {shown}.pem");
    // PKCS#8 DER parses as a key pair; the pair is dropped (and zeroed) at once.
    let key = !certificate && rcgen::KeyPair::try_from(bytes).is_ok();
    let (what, hint) = match (certificate, key, expected) {
        (true, _, _) | (false, false, PemFile::Certificate) => ("a certificate", convert_cert),
        (false, true, _) | (false, false, PemFile::Key) => {
            ("a private key", format!("(umask 077; {convert_key})"))
        }
        (false, false, PemFile::Either) => (
            "a certificate or key",
            format!("a certificate: {convert_cert}; a key: (umask 077; {convert_key})"),
        ),
    };
    let form = if looks_der {
        "DER (binary)"
    } else {
        "not text"
    };
    Error::new(
        ErrorKind::InvalidCertificate,
        format!("{shown}: {form}, not PEM; rekey reads {what} in PEM form"),
    )
    .with_hint(format!("convert it to PEM: {hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> CertSpec {
        CertSpec {
            algorithm: KeyAlgorithm::Rsa2048,
            subject: Subject {
                cn: "billing-sync".into(),
                o: Some("Acme".into()),
                ou: Some("Integrations".into()),
            },
            validity_days: 365,
        }
    }

    #[test]
    fn generated_pairs_carry_the_configured_subject_validity_and_usage() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let (key, cert) = generate(&spec(), now).unwrap();
        assert_eq!(cert.subject, "CN=billing-sync, O=Acme, OU=Integrations");
        assert_eq!(cert.issuer, cert.subject, "self-signed");
        assert_eq!(cert.not_before, now);
        assert_eq!(cert.not_after, now + Duration::days(365));
        assert_eq!((cert.key_algorithm.as_str(), cert.key_bits), ("RSA", 2048));
        assert_eq!(
            key_facts(&key).unwrap().spki_fingerprint,
            cert.spki_fingerprint
        );
        let (_, x509) = x509_parser::parse_x509_certificate(cert.der()).unwrap();
        let usage = x509.key_usage().unwrap().unwrap().value;
        assert!(usage.digital_signature() && !usage.key_cert_sign());
        assert!(!x509.is_ca());
        assert_eq!(
            x509.signature_algorithm.algorithm,
            x509_parser::oid_registry::OID_PKCS1_SHA256WITHRSA
        );
    }

    #[test]
    fn the_configured_rsa_size_is_the_size_generated() {
        let spec = CertSpec {
            algorithm: KeyAlgorithm::parse("rsa-3072").unwrap(),
            ..spec()
        };
        let (key, cert) = generate(&spec, Utc::now()).unwrap();
        assert_eq!(cert.key_bits, 3072);
        assert_eq!(key_facts(&key).unwrap().bits, 3072);
        assert_eq!(KeyAlgorithm::parse("rsa-4096"), Some(KeyAlgorithm::Rsa4096));
        assert_eq!(KeyAlgorithm::parse("ec-256"), None);
    }

    #[test]
    fn serials_are_random_and_positive() {
        let now = Utc::now();
        let (_, a) = generate(&spec(), now).unwrap();
        let (_, b) = generate(&spec(), now).unwrap();
        assert_ne!(a.serial, b.serial);
        let first = u8::from_str_radix(&a.serial[..2], 16).unwrap();
        assert!(first < 0x80, "serial {} would be negative", a.serial);
    }

    #[test]
    fn a_key_from_another_pair_is_refused_by_the_probe() {
        let (key_a, _) = generate(&spec(), Utc::now()).unwrap();
        let (_, cert_b) = generate(&spec(), Utc::now()).unwrap();
        let err = prove_pair(&key_a, &cert_b).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidCertificate);
        assert!(
            err.to_string().contains(&cert_b.fingerprint.to_hex()),
            "{err}"
        );
        assert!(!err.to_string().contains("PRIVATE KEY"));
    }

    #[test]
    fn small_or_non_rsa_keys_are_refused() {
        let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".into()])
            .unwrap()
            .self_signed(&ec)
            .unwrap();
        let err = prove_pair(
            &KeyMaterial::from_pem(ec.serialize_pem()).unwrap(),
            &Certificate::from_pem(&cert.pem()).unwrap(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("needs RSA of at least 2048 bits"),
            "{err}"
        );
    }
}
