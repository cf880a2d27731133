//! Keys in custody in the transit engine of the store's own server (`kind = "vault_transit"`):
//! one non-exportable RSA key per generation, `{key_prefix}{credential}-{generation}`, that only
//! signs. It shares the KV store's [`Client`] (one login, one TLS setup, one namespace).
//!
//! vaultrs's own endpoints create, configure, delete and list keys; reading a key and signing are
//! defined here, because vaultrs's key answer insists on fields OpenBao and older servers do not
//! all send, and its hash algorithm names are not the ones the API takes (`sha2-256`).

use crate::client::{Client, VaultFailure, logged};
use crate::config::TransitConfig;
use crate::sys;
use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rekey_api::{
    CreatedKey, CustodyService, Error, ErrorKind, Generation, KeyCustody, KeyHandle, KeyState,
    Result,
};
use rustify_derive::Endpoint;
use serde_json::Value;
use std::fmt;
use std::sync::Arc;
use vaultrs::api;
use vaultrs::api::transit::KeyType;
use vaultrs::api::transit::requests::{CreateKeyRequest, UpdateKeyConfigurationRequest};

/// `GET {mount}/keys/{name}`: the key's type, settings and each version's public key.
#[derive(Debug, Endpoint)]
#[endpoint(path = "{self.mount}/keys/{self.name}", response = "Value")]
struct ReadKeyRequest {
    #[endpoint(skip)]
    mount: String,
    #[endpoint(skip)]
    name: String,
}

/// `POST {mount}/sign/{name}`: an RSASSA-PKCS1-v1_5 signature over the SHA-256 the service
/// computes of `input`.
#[derive(Debug, Endpoint)]
#[endpoint(
    path = "{self.mount}/sign/{self.name}",
    method = "POST",
    response = "Value"
)]
struct SignRequest {
    #[endpoint(skip)]
    mount: String,
    #[endpoint(skip)]
    name: String,
    input: String,
    hash_algorithm: String,
    signature_algorithm: String,
    key_version: u64,
}

/// rekey's name of an RSA key of `bits` bits, which is also transit's key type.
fn algorithm(bits: u32) -> Result<&'static str> {
    match bits {
        2048 => Ok("rsa-2048"),
        3072 => Ok("rsa-3072"),
        4096 => Ok("rsa-4096"),
        other => Err(Error::new(
            ErrorKind::Config,
            format!("transit keeps RSA keys of 2048, 3072 or 4096 bits, not {other}"),
        )),
    }
}

fn key_type(algorithm: &str) -> KeyType {
    match algorithm {
        "rsa-3072" => KeyType::Rsa3072,
        "rsa-4096" => KeyType::Rsa4096,
        _ => KeyType::Rsa2048,
    }
}

/// A transit key as read: what rekey needs of `GET {mount}/keys/{name}`.
struct TransitKey {
    key_type: String,
    exportable: bool,
    deletion_allowed: bool,
    /// OpenBao's soft deletion: the key is kept but signs no more until restored.
    soft_deleted: bool,
    latest_version: u64,
    data: Value,
}

impl TransitKey {
    fn parse(data: Value) -> TransitKey {
        let versions = data["keys"]
            .as_object()
            .map(|k| k.keys().filter_map(|v| v.parse::<u64>().ok()).max())
            .unwrap_or_default();
        TransitKey {
            key_type: data["type"].as_str().unwrap_or_default().to_string(),
            exportable: data["exportable"].as_bool().unwrap_or(false),
            deletion_allowed: data["deletion_allowed"].as_bool().unwrap_or(false),
            soft_deleted: data["soft_deleted"].as_bool().unwrap_or(false),
            latest_version: data["latest_version"]
                .as_u64()
                .or(versions)
                .unwrap_or_default(),
            data,
        }
    }

    /// Whether `version` is one the key still signs with.
    fn has_version(&self, version: u64) -> bool {
        let min = self.data["min_encryption_version"].as_u64().unwrap_or(0);
        version >= min && self.data["keys"].get(version.to_string()).is_some()
    }
}

/// A PEM public key's DER.
fn pem_der(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect();
    STANDARD.decode(body).ok().filter(|der| !der.is_empty())
}

/// A transit engine holding credentials' keys, as [`KeyCustody`].
#[derive(Debug)] // safe: the client's Debug leaves out the token
pub struct TransitCustody {
    client: Arc<Client>,
    mount: String,
    key_prefix: String,
    /// How messages name it: `transit(https://vault.example:8200 transit/)`.
    label: String,
}

impl fmt::Display for TransitCustody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

impl TransitCustody {
    pub(crate) fn new(client: Arc<Client>, config: TransitConfig, namespace: Option<&str>) -> Self {
        let mount = config.mount.trim_matches('/').to_string();
        let label = match namespace {
            Some(ns) => format!("transit({} namespace {ns} {mount}/)", client.address()),
            None => format!("transit({} {mount}/)", client.address()),
        };
        TransitCustody {
            client,
            mount,
            key_prefix: config.key_prefix,
            label,
        }
    }

    /// The transit key of `credential`'s `generation`.
    pub fn key_name(&self, credential: &str, generation: Generation) -> String {
        format!("{}{credential}-{}", self.key_prefix, generation.0)
    }

    /// The generation `name` holds for `credential`: `{key_prefix}{credential}-<digits>` only,
    /// so `billing` never takes `billing-eu`'s keys (`rekey-billing-eu-2`).
    fn generation_in(&self, credential: &str, name: &str) -> Option<Generation> {
        Generation::from_digits(
            name.strip_prefix(&self.key_prefix)?
                .strip_prefix(credential)?
                .strip_prefix('-')?,
        )
    }

    /// `{mount}/{tail}`, as policies name it.
    fn path(&self, tail: &str) -> String {
        format!("{}/{tail}", self.mount)
    }

    /// The error for a failed call: a mount that is not there, or what the store's client makes
    /// of the answer.
    fn error(&self, what: &str, failure: VaultFailure) -> Error {
        match failure {
            VaultFailure::Status { errors, .. } if errors.contains("no handler for route") => {
                self.no_mount(Some(&errors))
            }
            VaultFailure::Status { code, errors } => self.client.status_error(what, code, &errors),
            VaultFailure::Other(err) => err,
        }
    }

    fn no_mount(&self, answer: Option<&str>) -> Error {
        let mount = &self.mount;
        let answer = answer.map(|a| format!(" ({a})")).unwrap_or_default();
        Error::new(
            ErrorKind::NotFound,
            format!("{self}: mount '{mount}' does not exist or this token may not use it{answer}"),
        )
        .with_hint(format!(
            "enable it with: vault secrets enable -path={mount} transit (or set transit_mount), and grant the policy in the rekey-vault README"
        ))
    }

    fn check_handle(&self, key: &KeyHandle) -> Result<()> {
        if key.service == CustodyService::VaultTransit {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Config,
            format!("{self}: {key} is not a transit key"),
        )
        .with_hint(format!(
            "declare the store that holds this credential with kind = \"{}\"",
            key.service
        )))
    }

    /// `name`, or `None` when no such key exists.
    async fn read_key(&self, name: &str) -> Result<Option<TransitKey>> {
        let path = self.path(&format!("keys/{name}"));
        let what = format!("read {path}");
        let client = self.client.authed().await?;
        let endpoint = ReadKeyRequest {
            mount: self.mount.clone(),
            name: name.to_string(),
        };
        match logged(
            self.client.address(),
            "GET",
            &path,
            api::exec_with_result(&client, endpoint),
        )
        .await
        {
            Ok(data) => Ok(Some(TransitKey::parse(data))),
            Err(e) => match self.client.failure(&what, e) {
                VaultFailure::Status { code: 404, errors } if errors.is_empty() => Ok(None),
                failure => Err(self.error(&what, failure)),
            },
        }
    }

    async fn create(&self, name: &str, algorithm: &str) -> Result<()> {
        let path = self.path(&format!("keys/{name}"));
        let what = format!("create {path}");
        let client = self.client.authed().await?;
        let endpoint = CreateKeyRequest {
            mount: self.mount.clone(),
            name: name.to_string(),
            key_type: Some(key_type(algorithm)),
            exportable: Some(false),
            allow_plaintext_backup: Some(false),
            ..CreateKeyRequest::default()
        };
        logged(
            self.client.address(),
            "POST",
            &path,
            api::exec_with_empty(&client, endpoint),
        )
        .await
        .map_err(|e| self.error(&what, self.client.failure(&what, e)))
    }

    /// The handle and public key of `name`, read as `key`; a key that is not what rekey would
    /// have made for `algorithm` is a `Conflict` naming it.
    fn created(&self, name: &str, algorithm: &str, key: &TransitKey) -> Result<CreatedKey> {
        let path = self.path(&format!("keys/{name}"));
        if key.key_type != algorithm || key.exportable {
            let what = if key.exportable {
                format!("is exportable (type {})", key.key_type)
            } else {
                format!("has type {}", key.key_type)
            };
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{self}: transit key {name} already exists and {what}; rekey needs a non-exportable {algorithm} key there"
                ),
            )
            .with_hint(format!(
                "someone else made {path}; move it out of the way (rekey never reuses or deletes a key it did not make) or set another key_prefix"
            )));
        }
        let version = key.latest_version;
        let spki_der = key.data["keys"][version.to_string()]["public_key"]
            .as_str()
            .and_then(pem_der)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Unexpected,
                    format!("{self}: {path} has no PEM public key for version {version}"),
                )
            })?;
        Ok(CreatedKey {
            handle: KeyHandle {
                service: CustodyService::VaultTransit,
                key_id: name.to_string(),
                version: Some(version),
                algorithm: algorithm.to_string(),
            },
            spki_der,
        })
    }

    /// The handle of `name` for [`KeyCustody::keys_of`]; `None` when it is gone.
    async fn handle_of(&self, name: &str) -> Result<Option<KeyHandle>> {
        Ok(self.read_key(name).await?.map(|key| KeyHandle {
            service: CustodyService::VaultTransit,
            key_id: name.to_string(),
            version: Some(key.latest_version),
            algorithm: key.key_type,
        }))
    }

    /// Every path and capability the keys `names` need: create, sign with, describe, destroy.
    fn required_capabilities(&self, names: &[String]) -> sys::Needed {
        const KEY: &[&str] = &["create", "read", "update", "delete"];
        const UPDATE: &[&str] = &["update"];
        const LIST: &[&str] = &["list"];
        let mut needed = vec![(self.path("keys"), LIST)];
        for name in names {
            needed.push((self.path(&format!("keys/{name}")), KEY));
            needed.push((self.path(&format!("keys/{name}/config")), UPDATE));
            needed.push((self.path(&format!("sign/{name}")), UPDATE));
        }
        needed
    }
}

#[async_trait]
impl KeyCustody for TransitCustody {
    async fn preflight(&self, credential: &str, keys: &[KeyHandle]) -> Result<()> {
        rekey_api::check_credential_name(credential)?;
        match sys::mount_info(&self.client, &self.mount).await? {
            None => return Err(self.no_mount(None)),
            Some((kind, _)) if kind != "transit" => {
                let mount = &self.mount;
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("{self}: mount '{mount}' is a '{kind}' engine, not transit"),
                )
                .with_hint(
                    "set transit_mount to the transit engine's mount, or enable one: vault secrets enable -path=transit transit",
                ));
            }
            Some(_) => {}
        }
        let mut names: Vec<String> = Vec::new();
        let mut greatest = None;
        for key in keys
            .iter()
            .filter(|k| k.service == CustodyService::VaultTransit)
        {
            greatest = greatest.max(self.generation_in(credential, &key.key_id));
            if !names.contains(&key.key_id) {
                names.push(key.key_id.clone());
            }
        }
        let next = self.key_name(credential, greatest.map_or(Generation(1), |g| g.next()));
        if !names.contains(&next) {
            names.push(next);
        }
        let missing =
            sys::missing_capabilities(&self.client, &self.required_capabilities(&names)).await?;
        if missing.is_empty() {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::PermissionDenied,
            format!("{self}: {}", missing.join("; ")),
        )
        .with_hint(
            "grant the transit paths of the policy under \"Keys in custody\" in the rekey-vault README",
        ))
    }

    async fn create_key(
        &self,
        credential: &str,
        generation: Generation,
        bits: u32,
    ) -> Result<CreatedKey> {
        rekey_api::check_credential_name(credential)?;
        let algorithm = algorithm(bits)?;
        let name = self.key_name(credential, generation);
        if let Some(key) = self.read_key(&name).await? {
            return self.created(&name, algorithm, &key);
        }
        // Creating a key that exists changes nothing in transit, so a concurrent creator is
        // harmless; what is there afterwards is checked either way.
        self.create(&name, algorithm).await?;
        let key = self.read_key(&name).await?.ok_or_else(|| {
            Error::new(
                ErrorKind::Unexpected,
                format!(
                    "{self}: transit key {name} was created but cannot be read back (deleted at once?)"
                ),
            )
        })?;
        let created = self.created(&name, algorithm, &key)?;
        tracing::info!(custody = %self, credential, generation = generation.0, key = %name, "created transit key");
        Ok(created)
    }

    async fn sign(&self, key: &KeyHandle, message: &[u8]) -> Result<Vec<u8>> {
        self.check_handle(key)?;
        let name = &key.key_id;
        let path = self.path(&format!("sign/{name}"));
        let what = format!("sign with {path}");
        let client = self.client.authed().await?;
        let endpoint = SignRequest {
            mount: self.mount.clone(),
            name: name.clone(),
            input: STANDARD.encode(message),
            hash_algorithm: "sha2-256".into(),
            signature_algorithm: "pkcs1v15".into(),
            // A handle without a version (written by hand) signs with the latest one.
            key_version: key.version.unwrap_or(0),
        };
        let answer = match logged(
            self.client.address(),
            "POST",
            &path,
            api::exec_with_result(&client, endpoint),
        )
        .await
        {
            Ok(answer) => answer,
            Err(e) => {
                return Err(match self.client.failure(&what, e) {
                    VaultFailure::Status { code: 400, errors }
                        if errors.contains("not found") =>
                    {
                        Error::new(
                            ErrorKind::NotFound,
                            format!(
                                "{self}: transit key {name} does not exist (it was destroyed?), so it cannot sign"
                            ),
                        )
                        .with_hint(
                            "the key of this generation is gone; rotate to a new generation (`rekey rotate`)",
                        )
                    }
                    // OpenBao answers it with a 500.
                    VaultFailure::Status { errors, .. } if errors.contains("soft-deleted") => {
                        Error::new(
                            ErrorKind::Conflict,
                            format!("{self}: transit key {name} is soft-deleted, so it cannot sign"),
                        )
                        .with_hint(format!(
                            "restore it (DELETE {}/keys/{name}/soft-delete-restore) or rotate to a new generation",
                            self.mount
                        ))
                    }
                    failure => self.error(&what, failure).context(format!("{key}")),
                });
            }
        };
        let text = answer["signature"].as_str().unwrap_or_default();
        // `vault:v<version>:<base64>`.
        text.splitn(3, ':')
            .nth(2)
            .and_then(|b64| STANDARD.decode(b64).ok())
            .filter(|signature| !signature.is_empty())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Unexpected,
                    format!("{self}: {path} answered no signature of the form vault:vN:BASE64"),
                )
            })
    }

    async fn describe(&self, key: &KeyHandle) -> Result<KeyState> {
        self.check_handle(key)?;
        let Some(found) = self.read_key(&key.key_id).await? else {
            return Ok(KeyState {
                handle: key.clone(),
                exportable: false,
                enabled: false,
                state: "deleted".into(),
            });
        };
        let version = key.version.unwrap_or(found.latest_version);
        let enabled = !found.soft_deleted && found.has_version(version);
        let mut state = if found.soft_deleted {
            "soft-deleted (restorable; signs no more)".to_string()
        } else if enabled {
            format!(
                "enabled ({}, version {version} of {})",
                found.key_type, found.latest_version
            )
        } else {
            format!(
                "version {version} cannot sign (latest {}, trimmed or below min_encryption_version)",
                found.latest_version
            )
        };
        if found.deletion_allowed {
            state.push_str(", deletion allowed");
        }
        Ok(KeyState {
            handle: key.clone(),
            exportable: found.exportable,
            enabled,
            state,
        })
    }

    async fn destroy_key(&self, key: &KeyHandle) -> Result<String> {
        self.check_handle(key)?;
        let name = &key.key_id;
        let mount = &self.mount;
        let Some(found) = self.read_key(name).await? else {
            return Ok(format!(
                "transit key {name} in {mount}/ was already deleted"
            ));
        };
        let client = self.client.authed().await?;
        if !found.deletion_allowed {
            let path = self.path(&format!("keys/{name}/config"));
            let what = format!("allow deletion with {path}");
            let endpoint = UpdateKeyConfigurationRequest {
                mount: mount.clone(),
                name: name.clone(),
                deletion_allowed: Some(true),
                ..UpdateKeyConfigurationRequest::default()
            };
            match logged(
                self.client.address(),
                "POST",
                &path,
                api::exec_with_empty(&client, endpoint),
            )
            .await
            {
                Ok(()) => {}
                // Deleted by someone else since the read.
                Err(e) => match self.client.failure(&what, e) {
                    VaultFailure::Status { code: 400, errors }
                        if errors.contains("could be found") =>
                    {
                        return Ok(format!(
                            "transit key {name} in {mount}/ was already deleted"
                        ));
                    }
                    failure => return Err(self.error(&what, failure)),
                },
            }
        }
        let path = self.path(&format!("keys/{name}"));
        let what = format!("delete {path}");
        match logged(
            self.client.address(),
            "DELETE",
            &path,
            vaultrs::transit::key::delete(&client, mount, name),
        )
        .await
        {
            Ok(()) => {}
            // Deleted by someone else between the read and here: gone is what was asked.
            Err(e) => match self.client.failure(&what, e) {
                VaultFailure::Status { code: 400, errors } if errors.contains("not found") => {}
                failure => return Err(self.error(&what, failure)),
            },
        }
        tracing::info!(custody = %self, key = %name, "deleted transit key");
        Ok(format!("deleted transit key {name} from {mount}/"))
    }

    fn destroy_means(&self) -> String {
        "transit keys deleted".to_string()
    }

    async fn keys_of(&self, credential: &str) -> Result<Vec<(Generation, KeyHandle)>> {
        rekey_api::check_credential_name(credential)?;
        let path = self.path("keys");
        let what = format!("list {path}");
        let client = self.client.authed().await?;
        let names = match logged(
            self.client.address(),
            "LIST",
            &path,
            vaultrs::transit::key::list(&client, &self.mount),
        )
        .await
        {
            Ok(list) => list.keys,
            Err(e) => match self.client.failure(&what, e) {
                // No key at all in the mount.
                VaultFailure::Status { code: 404, errors } if errors.is_empty() => Vec::new(),
                failure => return Err(self.error(&what, failure)),
            },
        };
        let mut mine: Vec<(Generation, String)> = names
            .into_iter()
            .filter_map(|name| Some((self.generation_in(credential, &name)?, name)))
            .collect();
        mine.sort();
        let mut found = Vec::new();
        for (generation, name) in mine {
            if let Some(handle) = self.handle_of(&name).await? {
                found.push((generation, handle));
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{VaultAuth, VaultConfig};

    fn custody(prefix: &str) -> TransitCustody {
        let config = VaultConfig::new(
            "http://127.0.0.1:8200",
            VaultAuth::Token(rekey_api::SecretString::new("s.TOPSECRET")),
        );
        let client = Client::new(config, "http://127.0.0.1:8200".into()).unwrap();
        TransitCustody::new(
            Arc::new(client),
            TransitConfig {
                mount: "transit/".into(),
                key_prefix: prefix.into(),
            },
            None,
        )
    }

    #[test]
    fn a_credential_takes_only_its_own_key_names() {
        let c = custody("rekey-");
        assert_eq!(c.key_name("billing", Generation(3)), "rekey-billing-3");
        let of = |name: &str| c.generation_in("billing", name);
        assert_eq!(of("rekey-billing-3"), Some(Generation(3)));
        assert_eq!(of("rekey-billing-12"), Some(Generation(12)));
        for other in [
            "rekey-billing-eu-2",
            "rekey-billing-",
            "rekey-billing",
            "rekey-billing-2x",
            "rekey-billing-+2",
            "rekey-billing2-2",
            "other-billing-2",
            "billing-2",
        ] {
            assert_eq!(of(other), None, "{other}");
        }
        assert_eq!(
            c.generation_in("billing-eu", "rekey-billing-eu-2"),
            Some(Generation(2))
        );
        assert_eq!(
            custody("").generation_in("billing", "billing-7"),
            Some(Generation(7))
        );
    }

    #[test]
    fn display_and_debug_name_the_mount_and_never_the_token() {
        let c = custody("rekey-");
        assert_eq!(c.to_string(), "transit(http://127.0.0.1:8200 transit/)");
        let debug = format!("{c:?}");
        assert!(!debug.contains("TOPSECRET"), "{debug}");
        assert_eq!(c.destroy_means(), "transit keys deleted");
    }

    #[test]
    fn only_rsa_sizes_transit_knows_are_accepted() {
        assert_eq!(algorithm(3072).unwrap(), "rsa-3072");
        let err = algorithm(1024).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
    }
}
