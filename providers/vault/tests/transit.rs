//! Keys in custody in OpenBao's transit engine (`kind = "vault_transit"`), against the real dev
//! server: what the service makes, signs, refuses to export and deletes, and the custody store
//! the root crate wraps around the KV store.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{CRED, as_root, json, kv_metadata};
use rekey_api::{
    Certificate, CustodyKey, CustodyService, CustodyStore, ErrorKind, Fingerprint, Generation,
    KeyCustody, KeyHandle, Material, NewVersion, Public, RotationId, SecretStore, Stage,
};
use rekey_testkit::openbao::OpenBao;
use rekey_vault::{TransitConfig, TransitCustody, VaultStore};
use std::sync::Arc;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

/// A store under its own KV prefix whose keys are in `transit/` under a key prefix of its own
/// (`t-<name>-<n>-<pid>-`), as `token` sees them.
fn transit_store(
    bao: &OpenBao,
    name: &str,
    token: &str,
) -> (VaultStore, Arc<TransitCustody>, String) {
    let prefix = bao.unique_prefix(name);
    let (store, transit) = store_at(bao, &prefix, token, "transit");
    (store, transit, prefix)
}

/// A store under the KV prefix `prefix` whose keys are in `mount` under the key prefix
/// `<prefix>-`, as `token` sees them.
fn store_at(
    bao: &OpenBao,
    prefix: &str,
    token: &str,
    mount: &str,
) -> (VaultStore, Arc<TransitCustody>) {
    let mut config = common::config(bao, prefix, common::token(token));
    config.transit = Some(TransitConfig {
        mount: mount.into(),
        key_prefix: format!("{prefix}-"),
    });
    let store = VaultStore::new(config).unwrap();
    let transit = store.transit().expect("configured with transit");
    (store, transit)
}

fn root_transit_store(bao: &OpenBao, name: &str) -> (VaultStore, Arc<TransitCustody>, String) {
    transit_store(bao, name, bao.root_token())
}

/// The RSA public key in a SubjectPublicKeyInfo: jsonwebtoken's verifying key and the size.
fn rsa_public(spki_der: &[u8]) -> (jsonwebtoken::DecodingKey, usize) {
    let (rest, spki) = SubjectPublicKeyInfo::from_der(spki_der).unwrap();
    assert!(rest.is_empty());
    let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
        panic!("not an RSA key");
    };
    (
        jsonwebtoken::DecodingKey::from_rsa_der(&spki.subject_public_key.data),
        rsa.key_size(),
    )
}

/// Whether `signature` is an RS256 signature of `message` by the key in `spki_der`.
fn verifies(spki_der: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let (key, _) = rsa_public(spki_der);
    jsonwebtoken::crypto::verify(
        &URL_SAFE_NO_PAD.encode(signature),
        message,
        &key,
        jsonwebtoken::Algorithm::RS256,
    )
    .unwrap()
}

/// An rcgen key whose private half is a transit key: what the root crate signs a certificate
/// with when the key is in custody.
struct TransitSigner<'a> {
    custody: &'a TransitCustody,
    handle: KeyHandle,
    /// The PKCS#1 RSAPublicKey inside the SubjectPublicKeyInfo.
    public: Vec<u8>,
}

impl rcgen::PublicKeyData for TransitSigner<'_> {
    fn der_bytes(&self) -> &[u8] {
        &self.public
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_RSA_SHA256
    }
}

impl rcgen::SigningKey for TransitSigner<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        // rcgen signs synchronously; the test runs on a multi-threaded runtime.
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(self.custody.sign(&self.handle, msg))
        })
        .map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

/// A self-signed certificate for the transit key `created`, signed by transit, with its
/// signature checked against the key transit handed out.
fn certificate_for(custody: &TransitCustody, created: &rekey_api::CreatedKey) -> Certificate {
    let (_, spki) = SubjectPublicKeyInfo::from_der(&created.spki_der).unwrap();
    let signer = TransitSigner {
        custody,
        handle: created.handle.clone(),
        public: spki.subject_public_key.data.to_vec(),
    };
    let cert = rcgen::CertificateParams::new(vec![CRED.into()])
        .unwrap()
        .self_signed(&signer)
        .unwrap();
    let (_, x509) = x509_parser::parse_x509_certificate(cert.der()).unwrap();
    assert!(
        verifies(
            &created.spki_der,
            x509.tbs_certificate.as_ref(),
            &x509.signature_value.data
        ),
        "the certificate's signature verifies against the transit key"
    );
    let certificate = Certificate::from_der(cert.der().to_vec()).unwrap();
    assert_eq!(
        certificate.spki_fingerprint,
        Fingerprint::of(&created.spki_der),
        "the certificate carries transit's public key"
    );
    certificate
}

#[tokio::test]
async fn create_is_idempotent_and_makes_a_non_exportable_key_of_the_asked_size() {
    let bao = OpenBao::shared();
    let (_store, transit, prefix) = root_transit_store(bao, "create");
    let name = format!("{prefix}-{CRED}-1");

    let first = transit.create_key(CRED, Generation(1), 3072).await.unwrap();
    assert_eq!(
        first.handle,
        KeyHandle {
            service: CustodyService::VaultTransit,
            key_id: name.clone(),
            version: Some(1),
            algorithm: "rsa-3072".into(),
        }
    );
    assert_eq!(rsa_public(&first.spki_der).1, 3072);
    let again = transit.create_key(CRED, Generation(1), 3072).await.unwrap();
    assert_eq!(again.handle, first.handle, "the same key");
    assert_eq!(again.spki_der, first.spki_der, "the same public key");

    // What the service says, as root sees it.
    let (status, key) = as_root(bao, "GET", &format!("transit/keys/{name}"), None).await;
    assert_eq!(status, 200, "{key}");
    assert_eq!(key["data"]["type"], "rsa-3072");
    assert_eq!(key["data"]["exportable"], false);
    assert_eq!(key["data"]["allow_plaintext_backup"], false);

    // Another size for the same generation is another key: refused, naming it.
    let err = transit
        .create_key(CRED, Generation(1), 2048)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(
        err.to_string().contains(&format!(
            "transit key {name} already exists and has type rsa-3072"
        )),
        "{err}"
    );
    let err = transit
        .create_key(CRED, Generation(2), 1024)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transit_signature_verifies_against_the_key_it_handed_out_and_signs_a_certificate() {
    let bao = OpenBao::shared();
    let (_store, transit, _) = root_transit_store(bao, "sign");
    let created = transit.create_key(CRED, Generation(1), 2048).await.unwrap();
    let message = b"eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJ4In0";
    let signature = transit.sign(&created.handle, message).await.unwrap();
    assert_eq!(signature.len(), 256);
    assert!(verifies(&created.spki_der, message, &signature));
    assert!(!verifies(&created.spki_der, b"another message", &signature));

    let certificate = certificate_for(&transit, &created);
    assert_eq!(
        (certificate.key_algorithm.as_str(), certificate.key_bits),
        ("RSA", 2048)
    );
}

#[tokio::test]
async fn the_service_refuses_to_export_the_key_and_describe_says_so() {
    let bao = OpenBao::shared();
    let (_store, transit, _) = root_transit_store(bao, "export");
    let created = transit.create_key(CRED, Generation(1), 2048).await.unwrap();
    let name = &created.handle.key_id;

    // Not even root gets the private key: over HTTP, and through the CLI.
    for kind in ["signing-key", "encryption-key", "hmac-key"] {
        let (status, answer) =
            as_root(bao, "GET", &format!("transit/export/{kind}/{name}"), None).await;
        assert_eq!(status, 400, "{kind}: {answer}");
        assert!(answer["data"].is_null(), "{kind}: {answer}");
    }
    let out = bao.bao(&["read", &format!("transit/export/signing-key/{name}")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not exportable"), "{stderr}");

    let state = transit.describe(&created.handle).await.unwrap();
    assert!(!state.exportable);
    assert!(state.enabled);
    assert_eq!(state.state, "enabled (rsa-2048, version 1 of 1)");
    assert_eq!(state.handle, created.handle);
}

#[tokio::test]
async fn a_destroyed_key_signs_no_more_and_destroying_it_again_succeeds() {
    let bao = OpenBao::shared();
    let (_store, transit, _) = root_transit_store(bao, "destroy");
    let created = transit.create_key(CRED, Generation(3), 2048).await.unwrap();
    let name = created.handle.key_id.clone();

    let done = transit.destroy_key(&created.handle).await.unwrap();
    assert_eq!(done, format!("deleted transit key {name} from transit/"));
    let (status, _) = as_root(bao, "GET", &format!("transit/keys/{name}"), None).await;
    assert_eq!(status, 404, "gone from the service");

    let err = transit.sign(&created.handle, b"x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(
        err.to_string()
            .contains(&format!("transit key {name} does not exist")),
        "{err}"
    );
    let state = transit.describe(&created.handle).await.unwrap();
    assert_eq!(
        (state.enabled, state.exportable, state.state.as_str()),
        (false, false, "deleted")
    );
    let again = transit.destroy_key(&created.handle).await.unwrap();
    assert_eq!(
        again,
        format!("transit key {name} in transit/ was already deleted")
    );

    // OpenBao's soft deletion: the key is there but signs no more, and destroy still deletes it.
    let soft = transit.create_key(CRED, Generation(4), 2048).await.unwrap();
    let soft_name = &soft.handle.key_id;
    let (status, answer) = as_root(
        bao,
        "DELETE",
        &format!("transit/keys/{soft_name}/soft-delete"),
        None,
    )
    .await;
    assert!(matches!(status, 200 | 204), "{answer}");
    let state = transit.describe(&soft.handle).await.unwrap();
    assert!(!state.enabled);
    assert!(state.state.starts_with("soft-deleted"), "{}", state.state);
    let err = transit.sign(&soft.handle, b"x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(
        err.to_string()
            .contains(&format!("transit key {soft_name} is soft-deleted")),
        "{err}"
    );
    transit.destroy_key(&soft.handle).await.unwrap();
    assert_eq!(
        transit.describe(&soft.handle).await.unwrap().state,
        "deleted"
    );
    let again = transit.destroy_key(&created.handle).await.unwrap();
    assert_eq!(
        again,
        format!("transit key {name} in transit/ was already deleted")
    );
}

#[tokio::test]
async fn keys_of_lists_a_credentials_generations_oldest_first_and_nothing_else() {
    let bao = OpenBao::shared();
    let (_store, transit, prefix) = root_transit_store(bao, "keys-of");
    assert_eq!(transit.keys_of(CRED).await.unwrap(), []);
    for generation in [10, 2] {
        transit
            .create_key(CRED, Generation(generation), 2048)
            .await
            .unwrap();
    }
    // Another credential sharing the name's start, and a key rekey did not name.
    transit
        .create_key("billing-eu", Generation(2), 2048)
        .await
        .unwrap();
    as_root(
        bao,
        "POST",
        &format!("transit/keys/{prefix}-{CRED}-x"),
        Some(serde_json::json!({"type": "rsa-2048"})),
    )
    .await;

    let keys = transit.keys_of(CRED).await.unwrap();
    let listed: Vec<(u64, &str, Option<u64>, &str)> = keys
        .iter()
        .map(|(g, h)| (g.0, h.key_id.as_str(), h.version, h.algorithm.as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            (
                2,
                format!("{prefix}-{CRED}-2").as_str(),
                Some(1),
                "rsa-2048"
            ),
            (
                10,
                format!("{prefix}-{CRED}-10").as_str(),
                Some(1),
                "rsa-2048"
            ),
        ]
    );
    let eu = transit.keys_of("billing-eu").await.unwrap();
    assert_eq!(eu.len(), 1);
    assert_eq!(eu[0].1.key_id, format!("{prefix}-billing-eu-2"));
}

/// The transit half of the README's policy for `billing` under `key_prefix`, without `skip`
/// (a path glob), as HCL.
fn transit_policy(key_prefix: &str, skip: Option<&str>) -> String {
    [
        (
            format!("transit/keys/{key_prefix}{CRED}-*"),
            r#"["create", "read", "update", "delete"]"#,
        ),
        (
            format!("transit/sign/{key_prefix}{CRED}-*"),
            r#"["update"]"#,
        ),
        ("transit/keys".to_string(), r#"["list"]"#),
    ]
    .into_iter()
    .filter(|(path, _)| Some(path.as_str()) != skip)
    .map(|(path, caps)| format!("path \"{path}\" {{ capabilities = {caps} }}\n"))
    .collect()
}

/// A token holding the README's KV policy for `prefix` plus `transit_hcl`.
fn token_with_transit_policy(bao: &OpenBao, prefix: &str, transit_hcl: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("transit.hcl");
    std::fs::write(&file, transit_hcl).unwrap();
    let transit = format!("{prefix}-transit");
    bao.bao_ok(&["policy", "write", &transit, file.to_str().unwrap()]);
    common::token_with_policy(bao, prefix, None, &[&format!("-policy={transit}")])
}

#[tokio::test]
async fn preflight_names_each_transit_path_and_capability_the_token_lacks() {
    let bao = OpenBao::shared();
    let (_root_store, root, prefix) = root_transit_store(bao, "preflight");
    let key_prefix = format!("{prefix}-");
    let current = root
        .create_key(CRED, Generation(1), 2048)
        .await
        .unwrap()
        .handle;

    let token = token_with_transit_policy(
        bao,
        &prefix,
        &transit_policy(
            &key_prefix,
            Some(&format!("transit/sign/{key_prefix}{CRED}-*")),
        ),
    );
    let (store, transit) = store_at(bao, &prefix, &token, "transit");
    let err = transit
        .preflight(CRED, std::slice::from_ref(&current))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    let text = err.to_string();
    for name in [1, 2].map(|g| format!("{key_prefix}{CRED}-{g}")) {
        assert!(
            text.contains(&format!("token lacks 'update' on transit/sign/{name}")),
            "{text}"
        );
    }
    assert!(
        !text.contains("transit/keys"),
        "only sign is missing: {text}"
    );
    assert!(err.hint().unwrap().contains("README"), "{err:?}");
    // What the missing capability does to a signature: refused, naming the path.
    let err = transit.sign(&current, b"m").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert!(
        err.to_string().contains(&format!(
            "sign with transit/sign/{key_prefix}{CRED}-1: HTTP 403"
        )),
        "{err}"
    );

    // Through the custody store too, after the KV preflight passed.
    let custody = CustodyStore::new(Box::new(store), transit);
    let err = custody.preflight(CRED).await.unwrap_err();
    assert!(err.to_string().contains("transit/sign/"), "{err}");

    // A mount that is not transit, and one that is not there.
    for (mount, kind) in [
        ("secret", ErrorKind::Config),
        ("no-such-transit", ErrorKind::NotFound),
    ] {
        let (_, transit) = store_at(bao, &prefix, bao.root_token(), mount);
        let err = transit.preflight(CRED, &[]).await.unwrap_err();
        assert_eq!(err.kind(), kind, "{mount}: {err}");
        assert!(
            err.hint().unwrap().contains("vault secrets enable -path="),
            "{mount}: {err:?}"
        );
    }
}

/// Stages generation `generation` of `CRED` with a fresh transit key and its certificate.
async fn stage_in_custody(
    store: &CustodyStore,
    transit: &TransitCustody,
    generation: u64,
) -> rekey_api::CreatedKey {
    let created = transit
        .create_key(CRED, Generation(generation), 2048)
        .await
        .unwrap();
    let certificate = certificate_for(transit, &created);
    let material = Material::Custody(CustodyKey::new(created.handle.clone()));
    let public = Public::Certificate(certificate);
    let rotation_id = RotationId(format!("r{generation}"));
    store
        .stage(
            CRED,
            &NewVersion {
                generation: Generation(generation),
                material: &material,
                public: &public,
                rotation_id: &rotation_id,
            },
        )
        .await
        .unwrap();
    created
}

/// The whole life of keys in custody through the store the root crate builds, with a token
/// holding exactly the README's policy (KV paths and transit globs).
#[tokio::test(flavor = "multi_thread")]
async fn a_custody_store_stages_signs_promotes_and_destroys_with_the_readme_policy() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("custody");
    let key_prefix = format!("{prefix}-");
    let token = token_with_transit_policy(bao, &prefix, &transit_policy(&key_prefix, None));
    let (store, transit) = store_at(bao, &prefix, &token, "transit");
    let custody = CustodyStore::new(Box::new(store), transit.clone());
    custody.preflight(CRED).await.unwrap();
    assert!(custody.custody().is_some());

    let first = stage_in_custody(&custody, &transit, 1).await;
    let pending = custody
        .read_stage(CRED, Stage::Pending)
        .await
        .unwrap()
        .unwrap();
    let Material::Custody(key) = &pending.material else {
        panic!("not a key in custody");
    };
    assert_eq!(key.handle(), &first.handle);
    let message = b"header.claims";
    let signature = pending
        .material
        .signer()
        .unwrap()
        .sign_rs256(message)
        .await
        .unwrap();
    assert!(
        verifies(&first.spki_der, message, &signature),
        "read back, it signs"
    );

    custody.promote(CRED, Generation(1)).await.unwrap();
    let second = stage_in_custody(&custody, &transit, 2).await;
    custody.promote(CRED, Generation(2)).await.unwrap();
    custody.preflight(CRED).await.unwrap();

    // KV holds the handle and the certificate, never a private key.
    let record = json(&bao.bao_ok(&[
        "kv",
        "get",
        "-format=json",
        &format!("secret/{prefix}/{CRED}/current"),
    ]));
    let data = &record["data"]["data"];
    assert_eq!(data["custody"]["key_id"], second.handle.key_id.as_str());
    assert_eq!(data["custody"]["service"], "vault_transit");
    assert!(data.get("private_key").is_none(), "{data}");
    let current = custody
        .read_stage(CRED, Stage::Current)
        .await
        .unwrap()
        .unwrap();
    let jwt = current
        .material
        .signer()
        .unwrap()
        .jwt(&serde_json::json!({"iss": "x"}))
        .await
        .unwrap();
    let (input, sig) = jwt.expose_secret().rsplit_once('.').unwrap();
    assert!(verifies(
        &second.spki_der,
        input.as_bytes(),
        &URL_SAFE_NO_PAD.decode(sig).unwrap()
    ));

    // The current generation stays; the previous one goes from the service and from KV.
    let err = custody.destroy(CRED, Generation(2)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    custody.destroy(CRED, Generation(1)).await.unwrap();
    let keys = transit.keys_of(CRED).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].1.key_id, second.handle.key_id);
    assert_eq!(
        transit.describe(&first.handle).await.unwrap().state,
        "deleted"
    );
    assert!(
        custody
            .read_generation(CRED, Generation(1))
            .await
            .unwrap()
            .is_none()
    );
    let meta = kv_metadata(bao, &format!("secret/{prefix}/{CRED}/current"));
    assert_eq!(meta["data"]["versions"]["1"]["destroyed"], true, "{meta}");
    assert_eq!(meta["data"]["versions"]["2"]["destroyed"], false, "{meta}");
    // Destroying it again finds nothing left to do.
    custody.destroy(CRED, Generation(1)).await.unwrap();
    let still = custody
        .read_stage(CRED, Stage::Current)
        .await
        .unwrap()
        .unwrap();
    assert!(
        still
            .material
            .signer()
            .unwrap()
            .sign_rs256(b"m")
            .await
            .is_ok()
    );
}
