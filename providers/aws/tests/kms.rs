//! Keys in custody in KMS (`kind = "aws_kms"`) against a real moto server: keys made once per
//! generation with their size, alias, tags and policy; signatures that verify against the public
//! key KMS hands out (an X.509 certificate signed in KMS, checked with x509-parser, and an RS256
//! JWT); what describe and destroy say and do; the aliases keys_of and made_current read and
//! move; the custody store over Secrets Manager; and preflight refused `kms:Sign` by moto's IAM
//! enforcement. Every test uses its own secret prefix and alias prefix, so they run in parallel
//! on one shared server (the IAM test has a server of its own).
//!
//! Known moto 5.2.5 gaps, asserted around rather than relied on (see the README):
//! - `Sign` succeeds with a disabled or pending-deletion key (AWS refuses: `DisabledException`,
//!   `KMSInvalidStateException`), so after destroy the tests assert the key's state, not a
//!   refused signature.
//! - `Sign` ignores `DryRun` and signs (AWS answers `DryRunOperationException`).

use aws_sdk_kms::Client;
use aws_sdk_kms::types::{KeySpec, KeyState as KmsKeyState, KeyUsageType, OriginType};
use rcgen::{CertificateParams, PublicKeyData, SignatureAlgorithm, SigningKey};
use rekey_api::{
    Certificate, CustodyKey, CustodyStore, ErrorKind, Generation, KeyCustody, KeyHandle, Material,
    NewVersion, Public, RotationId, SecretStore, Signer, Stage,
};
use rekey_aws::{AwsConfig, AwsStore, KeyPolicy, KmsConfig, KmsCustody};
use rekey_testkit::moto::{Moto, sdk_config};
use std::sync::Arc;
use x509_parser::prelude::{FromDer, SubjectPublicKeyInfo, X509Certificate};

const CRED: &str = "billing";

struct Env {
    raw: Client,
    alias_prefix: String,
    store: AwsStore,
}

impl Env {
    async fn new(name: &str) -> Env {
        Env::with_policy(name, None).await
    }

    async fn with_policy(name: &str, key_policy: Option<KeyPolicy>) -> Env {
        let moto = Moto::shared();
        let sdk = sdk_config(&moto.endpoint()).await;
        let prefix = moto.unique_name(name);
        let alias_prefix = format!("{prefix}/");
        let config = AwsConfig {
            name_prefix: prefix,
            kms: Some(KmsConfig {
                alias_prefix: alias_prefix.clone(),
                key_policy,
            }),
            ..AwsConfig::default()
        };
        Env {
            raw: Client::new(&sdk),
            alias_prefix,
            store: AwsStore::with_sdk_config(config, &sdk).unwrap(),
        }
    }

    fn kms(&self) -> Arc<KmsCustody> {
        self.store.kms().expect("an aws_kms store has custody")
    }

    fn alias(&self, credential: &str, generation: Option<u64>) -> String {
        match generation {
            Some(g) => format!("alias/{}{credential}/{g}", self.alias_prefix),
            None => format!("alias/{}{credential}", self.alias_prefix),
        }
    }

    /// The key an alias names, from DescribeKey; `None` when the alias does not exist.
    async fn key_of_alias(&self, alias: &str) -> Option<aws_sdk_kms::types::KeyMetadata> {
        match self.raw.describe_key().key_id(alias).send().await {
            Ok(out) => out.key_metadata,
            Err(e) => {
                assert_eq!(e.code(), Some("NotFoundException"), "{e:?}");
                None
            }
        }
    }

    async fn metadata(&self, arn: &str) -> aws_sdk_kms::types::KeyMetadata {
        self.raw
            .describe_key()
            .key_id(arn)
            .send()
            .await
            .unwrap()
            .key_metadata
            .unwrap()
    }
}

use aws_sdk_kms::error::ProvideErrorMetadata as _;

/// The modulus size of an RSA SubjectPublicKeyInfo.
fn rsa_bits(spki_der: &[u8]) -> usize {
    let (_, spki) = SubjectPublicKeyInfo::from_der(spki_der).unwrap();
    match spki.parsed().unwrap() {
        x509_parser::public_key::PublicKey::RSA(rsa) => rsa.key_size(),
        other => panic!("not an RSA key: {other:?}"),
    }
}

/// An rcgen signing key whose private half is in KMS: `sign` asks KMS. rcgen's trait is
/// synchronous, so it blocks on the (multi-threaded) test runtime.
struct KmsSigningKey {
    custody: Arc<KmsCustody>,
    handle: KeyHandle,
    /// The RSAPublicKey inside the SPKI, which is what rcgen's `der_bytes` means for RSA.
    rsa_public: Vec<u8>,
}

impl KmsSigningKey {
    fn new(custody: Arc<KmsCustody>, handle: KeyHandle, spki_der: &[u8]) -> Self {
        let (_, spki) = SubjectPublicKeyInfo::from_der(spki_der).unwrap();
        KmsSigningKey {
            custody,
            handle,
            rsa_public: spki.subject_public_key.data.to_vec(),
        }
    }
}

impl PublicKeyData for KmsSigningKey {
    fn der_bytes(&self) -> &[u8] {
        &self.rsa_public
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_RSA_SHA256
    }
}

impl SigningKey for KmsSigningKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current()
                .block_on(self.custody.sign(&self.handle, msg))
                .map_err(|_| rcgen::Error::RemoteKeyError)
        })
    }
}

/// A self-signed certificate for `handle`'s key, signed in KMS.
fn certificate(
    custody: &Arc<KmsCustody>,
    handle: &KeyHandle,
    spki_der: &[u8],
) -> rcgen::Certificate {
    let key = KmsSigningKey::new(Arc::clone(custody), handle.clone(), spki_der);
    CertificateParams::new(vec!["billing.rekey.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap()
}

#[tokio::test]
async fn create_is_idempotent_with_the_requested_size_alias_and_tags() {
    let env = Env::new("kms-create").await;
    let kms = env.kms();
    // The endpoint is the SDK configuration's here, not the store's endpoint_url.
    assert_eq!(
        kms.to_string(),
        format!("kms(us-east-1 alias/{})", env.alias_prefix)
    );
    assert!(
        !format!("{kms:?}").contains("testing"),
        "no credentials in Debug: {kms:?}"
    );

    let first = kms.create_key(CRED, Generation(1), 3072).await.unwrap();
    let again = kms.create_key(CRED, Generation(1), 3072).await.unwrap();
    assert_eq!(again.handle, first.handle, "the same key, not a second one");
    assert_eq!(again.spki_der, first.spki_der);
    assert_eq!(first.handle.algorithm, "rsa-3072");
    assert_eq!(first.handle.version, None);
    assert_eq!(rsa_bits(&first.spki_der), 3072);
    let arn = &first.handle.key_id;
    assert!(
        arn.starts_with("arn:aws:kms:us-east-1:123456789012:key/"),
        "the key ARN: {arn}"
    );

    let by_alias = env.key_of_alias(&env.alias(CRED, Some(1))).await.unwrap();
    assert_eq!(by_alias.arn(), Some(arn.as_str()));
    assert_eq!(by_alias.key_spec(), Some(&KeySpec::Rsa3072));
    assert_eq!(by_alias.key_usage(), Some(&KeyUsageType::SignVerify));
    assert_eq!(by_alias.origin(), Some(&OriginType::AwsKms));
    assert_eq!(
        by_alias.description(),
        Some("rekey: credential billing, generation 1")
    );
    let tags = env
        .raw
        .list_resource_tags()
        .key_id(arn)
        .send()
        .await
        .unwrap();
    let mut tags: Vec<(String, String)> = tags
        .tags()
        .iter()
        .map(|t| (t.tag_key().to_string(), t.tag_value().to_string()))
        .collect();
    tags.sort();
    assert_eq!(
        tags,
        [
            ("rekey:credential".to_string(), "billing".to_string()),
            ("rekey:generation".to_string(), "1".to_string())
        ]
    );
    // One key in the account for this generation: a replayed create made no second one.
    let keys = env.raw.list_aliases().send().await.unwrap();
    let ours: Vec<_> = keys
        .aliases()
        .iter()
        .filter(|a| {
            a.alias_name()
                .is_some_and(|n| n.starts_with(&format!("alias/{}", env.alias_prefix)))
        })
        .collect();
    assert_eq!(ours.len(), 1, "{ours:?}");

    let other = kms.create_key(CRED, Generation(2), 2048).await.unwrap();
    assert_ne!(other.handle.key_id, *arn, "one key per generation");
    assert_eq!(
        (other.handle.algorithm.as_str(), rsa_bits(&other.spki_der)),
        ("rsa-2048", 2048)
    );
    let err = kms.create_key(CRED, Generation(2), 4096).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert_eq!(
        kms.create_key(CRED, Generation(3), 1024)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Config
    );
    let dotted = kms
        .create_key("billing.eu", Generation(1), 2048)
        .await
        .unwrap_err();
    assert_eq!(dotted.kind(), ErrorKind::Config, "{dotted}");
}

#[tokio::test]
async fn describe_says_kms_made_the_key_and_only_the_public_half_comes_out() {
    let env = Env::new("kms-describe").await;
    let kms = env.kms();
    let created = kms.create_key(CRED, Generation(1), 2048).await.unwrap();
    let state = kms.describe(&created.handle).await.unwrap();
    assert_eq!(state.handle, created.handle);
    assert!(state.enabled);
    assert_eq!(state.state, "Enabled");
    assert!(
        !state.exportable,
        "generated in KMS (origin AWS_KMS): never exported"
    );
    assert_eq!(
        env.metadata(&created.handle.key_id).await.origin(),
        Some(&OriginType::AwsKms)
    );
    // KMS has no operation that returns the private half of an asymmetric key it generated.
    // What comes closest, GetPublicKey, answers the SubjectPublicKeyInfo and nothing more: the
    // same DER create_key returned, which parses as a public key.
    let out = env
        .raw
        .get_public_key()
        .key_id(&created.handle.key_id)
        .send()
        .await
        .unwrap();
    let public = out.public_key().unwrap().as_ref().to_vec();
    assert_eq!(public, created.spki_der);
    assert_eq!(rsa_bits(&public), 2048);
    assert_eq!(out.key_usage(), Some(&KeyUsageType::SignVerify));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_made_in_kms_verifies_against_its_public_key() {
    let env = Env::new("kms-sign").await;
    let kms = env.kms();
    let created = kms.create_key(CRED, Generation(1), 2048).await.unwrap();

    let cert = certificate(&kms, &created.handle, &created.spki_der);
    let (_, parsed) = X509Certificate::from_der(cert.der()).unwrap();
    assert_eq!(
        parsed.public_key().raw,
        created.spki_der.as_slice(),
        "the certificate carries KMS's public key"
    );
    parsed
        .verify_signature(None)
        .expect("the certificate's signature, made in KMS, verifies against its own key");
    // rekey keeps it as it keeps every certificate.
    Certificate::from_pem(&cert.pem()).unwrap();

    // An RS256 JWT, signed through the custody key as rekey's token and verify steps do, checks
    // out with the same algorithm identifier (sha256WithRSAEncryption) and public key.
    let key = CustodyKey::new(created.handle.clone()).held_by(kms.clone());
    let jwt = Signer::Custody(&key)
        .jwt(&serde_json::json!({ "iss": "3MVG9", "sub": "rekey@example.com", "aud": "https://login.salesforce.com", "exp": 1 }))
        .await
        .unwrap();
    let jwt = jwt.expose_secret();
    let (input, signature) = jwt.rsplit_once('.').unwrap();
    use base64::Engine as _;
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(signature)
        .unwrap();
    assert_eq!(signature.len(), 256);
    let (_, spki) = SubjectPublicKeyInfo::from_der(&created.spki_der).unwrap();
    let verify = |message: &[u8], signature: &[u8]| {
        x509_parser::verify::verify_signature(
            &spki,
            &parsed.signature_algorithm,
            &x509_parser::der_parser::asn1_rs::BitString::new(0, signature),
            message,
        )
    };
    verify(input.as_bytes(), &signature).expect("the JWT verifies");
    assert!(
        verify(b"something else", &signature).is_err(),
        "and the check can fail"
    );

    // Sign takes at most 4096 bytes of raw message; rekey refuses more before asking.
    let at_limit = vec![b'x'; 4096];
    let signature = kms.sign(&created.handle, &at_limit).await.unwrap();
    verify(&at_limit, &signature).expect("a 4096-byte message's signature verifies");
    let err = kms.sign(&created.handle, &[b'x'; 4097]).await.unwrap_err();
    assert!(
        err.message()
            .contains("4097 bytes is longer than the 4096 bytes"),
        "{err}"
    );
}

#[tokio::test]
async fn destroy_disables_schedules_deletion_in_seven_days_and_drops_the_alias() {
    let env = Env::new("kms-destroy").await;
    let kms = env.kms();
    let created = kms.create_key(CRED, Generation(1), 2048).await.unwrap();
    let kept = kms.create_key(CRED, Generation(2), 2048).await.unwrap();
    assert_eq!(
        kms.destroy_means(),
        "KMS keys disabled and scheduled for deletion in 7 days"
    );

    let days = |n| {
        (chrono::Utc::now() + chrono::Duration::days(n))
            .format("%Y-%m-%d")
            .to_string()
    };
    let before = days(7);
    let done = kms.destroy_key(&created.handle).await.unwrap();
    let after = days(7);
    let arn = &created.handle.key_id;
    let date = [before, after]
        .into_iter()
        .find(|d| done == format!("disabled KMS key {arn} and scheduled its deletion for {d} (7 days, the shortest window)"))
        .unwrap_or_else(|| panic!("{done}"));

    let metadata = env.metadata(arn).await;
    assert_eq!(metadata.key_state(), Some(&KmsKeyState::PendingDeletion));
    assert!(!metadata.enabled);
    let deletion = metadata.deletion_date().unwrap().secs();
    let in_seven_days = chrono::Utc::now().timestamp() + 7 * 86_400;
    assert!(
        (in_seven_days - deletion).abs() < 120,
        "{deletion} vs {in_seven_days}"
    );
    assert!(
        env.key_of_alias(&env.alias(CRED, Some(1))).await.is_none(),
        "its alias is gone"
    );

    let state = kms.describe(&created.handle).await.unwrap();
    assert!(!state.enabled);
    assert_eq!(state.state, format!("PendingDeletion until {date}"));
    // moto 5.2.5 still signs with a key pending deletion (AWS answers KMSInvalidStateException),
    // so what proves the key signs no more is its state above, not a refused Sign.

    // A destroy interrupted before it deleted the alias: the generation cannot be made again.
    env.raw
        .create_alias()
        .alias_name(env.alias(CRED, Some(1)))
        .target_key_id(arn)
        .send()
        .await
        .unwrap();
    let err = kms.create_key(CRED, Generation(1), 2048).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(
        err.message()
            .contains("PendingDeletion (the generation was destroyed)"),
        "{err}"
    );

    let twice = kms.destroy_key(&created.handle).await.unwrap();
    assert_eq!(
        twice,
        format!("KMS key {arn} was already disabled and scheduled for deletion on {date}")
    );
    let listed = kms.keys_of(CRED).await.unwrap();
    assert_eq!(
        listed,
        [(Generation(2), kept.handle.clone())],
        "only the kept key is listed"
    );
    assert!(
        kms.describe(&kept.handle).await.unwrap().enabled,
        "the other generation is untouched"
    );
}

#[tokio::test]
async fn keys_of_lists_a_credentials_generations_oldest_first_and_nobody_elses() {
    let env = Env::new("kms-keys-of").await;
    let kms = env.kms();
    let g10 = kms.create_key(CRED, Generation(10), 2048).await.unwrap();
    let g2 = kms.create_key(CRED, Generation(2), 2048).await.unwrap();
    let eu = kms
        .create_key("billing-eu", Generation(1), 2048)
        .await
        .unwrap();
    kms.made_current(CRED, &g2.handle).await.unwrap();
    // An alias under the credential's that is not a generation.
    env.raw
        .create_alias()
        .alias_name(format!("{}/notes", env.alias(CRED, None)))
        .target_key_id(&g2.handle.key_id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        kms.keys_of(CRED).await.unwrap(),
        [(Generation(2), g2.handle), (Generation(10), g10.handle)]
    );
    assert_eq!(
        kms.keys_of("billing-eu").await.unwrap(),
        [(Generation(1), eu.handle)]
    );
    assert_eq!(kms.keys_of("bill").await.unwrap(), []);
}

#[tokio::test]
async fn made_current_points_the_credentials_alias_at_the_key() {
    let env = Env::new("kms-current").await;
    let kms = env.kms();
    let g1 = kms.create_key(CRED, Generation(1), 2048).await.unwrap();
    let g2 = kms.create_key(CRED, Generation(2), 2048).await.unwrap();
    let current = env.alias(CRED, None);
    assert!(env.key_of_alias(&current).await.is_none());
    for handle in [&g1.handle, &g2.handle, &g2.handle, &g1.handle] {
        kms.made_current(CRED, handle).await.unwrap();
        let named = env.key_of_alias(&current).await.unwrap();
        assert_eq!(named.arn(), Some(handle.key_id.as_str()));
    }
}

#[tokio::test]
async fn a_key_policy_file_is_the_policy_of_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.json");
    let document = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{ "Sid": "RekeyTest", "Effect": "Allow", "Principal": { "AWS": "arn:aws:iam::123456789012:root" }, "Action": "kms:*", "Resource": "*" }]
    })
    .to_string();
    std::fs::write(&path, &document).unwrap();
    let policy = KeyPolicy::read(path, "stores.kms").unwrap();
    let env = Env::with_policy("kms-policy", Some(policy)).await;
    let created = env
        .kms()
        .create_key(CRED, Generation(1), 2048)
        .await
        .unwrap();
    let applied = env
        .raw
        .get_key_policy()
        .key_id(&created.handle.key_id)
        .policy_name("default")
        .send()
        .await
        .unwrap();
    assert_eq!(applied.policy(), Some(document.as_str()));
}

/// Stages generation `g` of `store` with a key made in KMS and its certificate signed there.
async fn stage_custody(store: &CustodyStore, kms: &Arc<KmsCustody>, g: u64) -> KeyHandle {
    let created = kms.create_key(CRED, Generation(g), 2048).await.unwrap();
    let cert = certificate(kms, &created.handle, &created.spki_der);
    let public = Public::Certificate(Certificate::from_pem(&cert.pem()).unwrap());
    let material = Material::Custody(CustodyKey::new(created.handle.clone()));
    let rotation = RotationId(format!("r{g}"));
    let new = NewVersion {
        generation: Generation(g),
        material: &material,
        public: &public,
        rotation_id: &rotation,
    };
    store.stage(CRED, &new).await.unwrap();
    created.handle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custody_store_keeps_handles_in_secrets_manager_and_keys_in_kms() {
    let env = Env::new("kms-store").await;
    let kms = env.kms();
    let current = env.alias(CRED, None);
    let store = CustodyStore::new(Box::new(env.store), kms.clone());
    store.preflight(CRED).await.unwrap();

    let g1 = stage_custody(&store, &kms, 1).await;
    let read = store
        .read_stage(CRED, Stage::Pending)
        .await
        .unwrap()
        .unwrap();
    let Material::Custody(key) = &read.material else {
        panic!("a custody record: {:?}", read.material);
    };
    assert_eq!(key.handle(), &g1);
    let signature = Signer::Custody(key).sign_rs256(b"input").await.unwrap();
    assert_eq!(signature.len(), 256, "read back, it signs through KMS");
    store.promote(CRED, Generation(1)).await.unwrap();
    assert_eq!(
        env_arn(&env.raw, &current).await,
        g1.key_id,
        "the alias follows CURRENT"
    );

    let g2 = stage_custody(&store, &kms, 2).await;
    store.preflight(CRED).await.unwrap();
    store.promote(CRED, Generation(2)).await.unwrap();
    assert_eq!(env_arn(&env.raw, &current).await, g2.key_id);
    let err = store.destroy(CRED, Generation(2)).await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Conflict,
        "CURRENT is never destroyed: {err}"
    );

    store.destroy(CRED, Generation(1)).await.unwrap();
    let state = kms.describe(&g1).await.unwrap();
    assert!(
        state.state.starts_with("PendingDeletion until "),
        "{state:?}"
    );
    assert!(
        store
            .read_generation(CRED, Generation(1))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        kms.keys_of(CRED).await.unwrap(),
        [(Generation(2), g2.clone())]
    );
    assert!(kms.describe(&g2).await.unwrap().enabled);
    store.preflight(CRED).await.unwrap();
}

async fn env_arn(raw: &Client, alias: &str) -> String {
    let out = raw.describe_key().key_id(alias).send().await.unwrap();
    out.key_metadata().unwrap().arn().unwrap().to_string()
}

#[tokio::test]
async fn preflight_names_kms_sign_when_iam_refuses_it() {
    // A server of its own: IAM enforcement is the whole server's setting.
    let moto = Moto::start();
    let admin = sdk_config(&moto.endpoint()).await;
    let prefix = moto.unique_name("kms-iam");
    let config = AwsConfig {
        name_prefix: prefix.clone(),
        kms: Some(KmsConfig {
            alias_prefix: format!("{prefix}/"),
            key_policy: None,
        }),
        ..AwsConfig::default()
    };
    let owner = AwsStore::with_sdk_config(config.clone(), &admin).unwrap();
    let created = owner
        .kms()
        .unwrap()
        .create_key(CRED, Generation(1), 2048)
        .await
        .unwrap();

    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": ["secretsmanager:*", "kms:ListAliases", "kms:DescribeKey", "kms:GetPublicKey"],
            "Resource": "*"
        }]
    });
    let keys = moto.iam_user("rekey-no-sign", &policy.to_string());
    moto.enforce_iam();
    let sdk = keys.sdk_config(&moto.endpoint()).await;
    let store = AwsStore::with_sdk_config(config, &sdk).unwrap();
    let kms = store.kms().unwrap();
    kms.preflight(CRED, &[])
        .await
        .expect("ListAliases is allowed");
    let err = kms
        .preflight(CRED, std::slice::from_ref(&created.handle))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err:?}");
    let arn = &created.handle.key_id;
    assert!(
        err.message()
            .contains(&format!("kms:Sign on key {arn} failed (AccessDenied")),
        "{err}"
    );
    assert_eq!(
        err.hint(),
        Some(
            format!("grant kms:Sign on {arn} (see the minimal IAM policy in rekey-aws's README)")
                .as_str()
        )
    );
    assert!(
        !err.to_string().contains(&keys.secret_access_key),
        "no secret in the error"
    );
}
