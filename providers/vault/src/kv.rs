//! The KV v2 calls the store is built from: metadata (versions, `cas_required`, `max_versions`),
//! versioned reads, check-and-set writes and destroy, all vaultrs's own endpoints.

use crate::client::{Client, VaultFailure, logged};
use chrono::{DateTime, Utc};
use rekey_api::{Error, ErrorKind, Result};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use vaultrs::api::kv2::requests::{
    ReadSecretRequest, SetSecretMetadataRequest, SetSecretRequestOptions,
};
use vaultrs::{api, kv2};

/// One version as listed in a key's metadata.
#[derive(Clone, Debug)]
pub(crate) struct VersionState {
    pub(crate) deleted: bool,
    pub(crate) destroyed: bool,
}

impl VersionState {
    /// Readable: neither soft-deleted nor destroyed.
    pub(crate) fn live(&self) -> bool {
        !self.deleted && !self.destroyed
    }
}

/// A key's metadata.
#[derive(Clone, Debug)]
pub(crate) struct Meta {
    pub(crate) current_version: u64,
    pub(crate) versions: BTreeMap<u64, VersionState>,
    cas_required: bool,
    max_versions: u64,
}

/// One version's data.
pub(crate) struct Version {
    pub(crate) number: u64,
    pub(crate) created: Option<DateTime<Utc>>,
    pub(crate) data: Map<String, Value>,
}

/// What a check-and-set write did.
pub(crate) enum Written {
    /// Stored as this version.
    Done(u64),
    /// Another writer changed the key since the version we read.
    Stale,
}

/// An RFC 3339 time; Vault sends an empty string for "never".
fn parse_time(value: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A missing key or version: a 404 without `errors` (a deleted version's 404 carries its
/// metadata instead), or with an empty list.
fn absent(failure: &VaultFailure) -> bool {
    matches!(failure, VaultFailure::Status { code: 404, errors } if errors.is_empty())
}

/// KV v2 access under one mount.
#[derive(Debug)]
pub(crate) struct Kv {
    pub(crate) client: Arc<Client>,
    pub(crate) mount: String,
    max_versions: u32,
}

impl Kv {
    pub(crate) fn new(client: Arc<Client>, mount: &str, max_versions: u32) -> Kv {
        Kv {
            client,
            mount: mount.trim_matches('/').to_string(),
            max_versions,
        }
    }

    /// `M/data/{key}`, as policies and `vault kv get` name it.
    pub(crate) fn data_path(&self, key: &str) -> String {
        format!("{}/data/{key}", self.mount)
    }

    pub(crate) fn metadata_path(&self, key: &str) -> String {
        format!("{}/metadata/{key}", self.mount)
    }

    pub(crate) fn destroy_path(&self, key: &str) -> String {
        format!("{}/destroy/{key}", self.mount)
    }

    /// The key's metadata; `None` if it was never written.
    pub(crate) async fn metadata(&self, key: &str) -> Result<Option<Meta>> {
        let what = format!("read {}", self.metadata_path(key));
        let client = self.client.authed().await?;
        let data = match logged(
            self.client.address(),
            "GET",
            &self.metadata_path(key),
            kv2::read_metadata(&client, &self.mount, key),
        )
        .await
        {
            Ok(data) => data,
            Err(e) => return self.none_if_absent(&what, e),
        };
        let versions = data
            .versions
            .iter()
            .filter_map(|(n, v)| {
                let state = VersionState {
                    deleted: parse_time(&v.deletion_time).is_some(),
                    destroyed: v.destroyed,
                };
                Some((n.parse().ok()?, state))
            })
            .collect();
        Ok(Some(Meta {
            current_version: data.current_version,
            versions,
            cas_required: data.cas_required,
            max_versions: data.max_versions,
        }))
    }

    /// `Ok(None)` for a missing key or version, the error otherwise.
    fn none_if_absent<T>(&self, what: &str, e: vaultrs::error::ClientError) -> Result<Option<T>> {
        match self.client.failure(what, e) {
            failure if absent(&failure) => Ok(None),
            VaultFailure::Status { code, errors } => {
                Err(self.client.status_error(what, code, &errors))
            }
            VaultFailure::Other(err) => Err(err),
        }
    }

    /// Sets `cas_required` and `max_versions` unless `meta` shows they are already in place.
    pub(crate) async fn ensure_metadata(&self, key: &str, meta: Option<&Meta>) -> Result<()> {
        if meta.is_some_and(|m| m.cas_required && m.max_versions == u64::from(self.max_versions)) {
            return Ok(());
        }
        let what = format!("update {}", self.metadata_path(key));
        let client = self.client.authed().await?;
        let mut options = SetSecretMetadataRequest::builder();
        options
            .cas_required(true)
            .max_versions(u64::from(self.max_versions));
        logged(
            self.client.address(),
            "POST",
            &self.metadata_path(key),
            kv2::set_metadata(&client, &self.mount, key, Some(&mut options)),
        )
        .await
        .map_err(|e| self.client.error(&what, e))
    }

    /// Version `number` of `key`; `None` when it is missing, deleted or destroyed.
    pub(crate) async fn read(&self, key: &str, number: u64) -> Result<Option<Version>> {
        let what = format!("read {} version {number}", self.data_path(key));
        let client = self.client.authed().await?;
        // The endpoint rather than `kv2::read_version`, which drops the version's metadata
        // (its creation time).
        let endpoint = ReadSecretRequest {
            mount: self.mount.clone(),
            path: key.to_string(),
            version: Some(number),
        };
        let reply = match logged(
            self.client.address(),
            "GET",
            &self.data_path(key),
            api::exec_with_result(&client, endpoint),
        )
        .await
        {
            Ok(reply) => reply,
            Err(e) => return self.none_if_absent(&what, e),
        };
        let Value::Object(data) = reply.data else {
            return Ok(None);
        };
        Ok(Some(Version {
            number,
            created: parse_time(&reply.metadata.created_time),
            data,
        }))
    }

    /// The latest version, if it is live.
    pub(crate) async fn latest(&self, key: &str, meta: Option<&Meta>) -> Result<Option<Version>> {
        match meta {
            Some(m)
                if m.versions
                    .get(&m.current_version)
                    .is_some_and(VersionState::live) =>
            {
                self.read(key, m.current_version).await
            }
            _ => Ok(None),
        }
    }

    /// Writes `data` as a new version if `key` is still at version `cas` (0: does not exist).
    pub(crate) async fn write(&self, key: &str, data: &Value, cas: u64) -> Result<Written> {
        let what = format!(
            "write {} (check-and-set version {cas})",
            self.data_path(key)
        );
        // vaultrs types `cas` as u32; KV versions never get near it.
        let options = SetSecretRequestOptions {
            cas: u32::try_from(cas).map_err(|_| {
                Error::new(
                    ErrorKind::Unexpected,
                    format!(
                        "vault at {}: {what}: version out of range",
                        self.client.address()
                    ),
                )
            })?,
        };
        let client = self.client.authed().await?;
        match logged(
            self.client.address(),
            "POST",
            &self.data_path(key),
            kv2::set_with_options(&client, &self.mount, key, data, options),
        )
        .await
        {
            Ok(written) => Ok(Written::Done(written.version)),
            Err(e) => match self.client.failure(&what, e) {
                VaultFailure::Status { code: 400, errors } if errors.contains("check-and-set") => {
                    Ok(Written::Stale)
                }
                VaultFailure::Status { code, errors } => {
                    Err(self.client.status_error(&what, code, &errors))
                }
                VaultFailure::Other(err) => Err(err),
            },
        }
    }

    /// Permanently destroys `versions` of `key`.
    pub(crate) async fn destroy(&self, key: &str, versions: &[u64]) -> Result<()> {
        let what = format!("destroy versions {versions:?} of {}", self.data_path(key));
        let client = self.client.authed().await?;
        logged(
            self.client.address(),
            "PUT",
            &self.destroy_path(key),
            kv2::destroy_versions(&client, &self.mount, key, versions.to_vec()),
        )
        .await
        .map_err(|e| self.client.error(&what, e))
    }
}
