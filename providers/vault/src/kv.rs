//! The KV v2 calls the store is built from: metadata (versions, `cas_required`, `max_versions`),
//! versioned reads, check-and-set writes, destroy, and `sys/capabilities-self`.

use crate::client::Client;
use chrono::{DateTime, Utc};
use rekey_api::{Error, ErrorKind, Result};
use reqwest::Method;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

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

fn parse_time(value: &Value) -> Option<DateTime<Utc>> {
    value
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// KV v2 access under one mount.
#[derive(Debug)]
pub(crate) struct Kv {
    pub(crate) client: Client,
    pub(crate) mount: String,
    max_versions: u32,
}

impl Kv {
    pub(crate) fn new(client: Client, mount: &str, max_versions: u32) -> Kv {
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
        let path = self.metadata_path(key);
        let what = format!("read {path}");
        let reply = self.client.call(Method::GET, &path, None, &what).await?;
        if reply.status.as_u16() == 404 && reply.errors().is_empty() {
            return Ok(None);
        }
        if !reply.status.is_success() {
            return Err(self.client.status_error(&what, &reply));
        }
        let data = &reply.body["data"];
        let versions = data["versions"]
            .as_object()
            .map(|versions| {
                versions
                    .iter()
                    .filter_map(|(n, v)| {
                        let state = VersionState {
                            deleted: parse_time(&v["deletion_time"]).is_some(),
                            destroyed: v["destroyed"].as_bool().unwrap_or(false),
                        };
                        Some((n.parse().ok()?, state))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(Meta {
            current_version: data["current_version"].as_u64().unwrap_or(0),
            versions,
            cas_required: data["cas_required"].as_bool().unwrap_or(false),
            max_versions: data["max_versions"].as_u64().unwrap_or(0),
        }))
    }

    /// Sets `cas_required` and `max_versions` unless `meta` shows they are already in place.
    pub(crate) async fn ensure_metadata(&self, key: &str, meta: Option<&Meta>) -> Result<()> {
        if meta.is_some_and(|m| m.cas_required && m.max_versions == u64::from(self.max_versions)) {
            return Ok(());
        }
        let path = self.metadata_path(key);
        let body = json!({ "cas_required": true, "max_versions": self.max_versions });
        self.client
            .call_ok(Method::POST, &path, Some(&body), &format!("update {path}"))
            .await?;
        Ok(())
    }

    /// Version `number` of `key`; `None` when it is missing, deleted or destroyed.
    pub(crate) async fn read(&self, key: &str, number: u64) -> Result<Option<Version>> {
        let path = self.data_path(key);
        let what = format!("read {path} version {number}");
        let reply = self
            .client
            .call(
                Method::GET,
                &format!("{path}?version={number}"),
                None,
                &what,
            )
            .await?;
        if reply.status.as_u16() == 404 && reply.errors().is_empty() {
            return Ok(None);
        }
        if !reply.status.is_success() {
            return Err(self.client.status_error(&what, &reply));
        }
        let mut body = reply.body;
        let Value::Object(data) = body["data"]["data"].take() else {
            return Ok(None);
        };
        Ok(Some(Version {
            number,
            created: parse_time(&body["data"]["metadata"]["created_time"]),
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
        let path = self.data_path(key);
        let what = format!("write {path} (check-and-set version {cas})");
        let body = json!({ "options": { "cas": cas }, "data": data });
        let reply = self
            .client
            .call(Method::POST, &path, Some(&body), &what)
            .await?;
        if reply.status.as_u16() == 400 && reply.errors().contains("check-and-set") {
            return Ok(Written::Stale);
        }
        if !reply.status.is_success() {
            return Err(self.client.status_error(&what, &reply));
        }
        let version = reply.body["data"]["version"].as_u64().ok_or_else(|| {
            Error::new(
                ErrorKind::Unexpected,
                format!(
                    "vault at {}: {what}: no version in the answer",
                    self.client.address()
                ),
            )
        })?;
        Ok(Written::Done(version))
    }

    /// Permanently destroys `versions` of `key`.
    pub(crate) async fn destroy(&self, key: &str, versions: &[u64]) -> Result<()> {
        let path = self.destroy_path(key);
        let body = json!({ "versions": versions });
        let what = format!("destroy versions {versions:?} of {}", self.data_path(key));
        self.client
            .call_ok(Method::PUT, &path, Some(&body), &what)
            .await?;
        Ok(())
    }

    /// The token's capabilities on each path (`sys/capabilities-self`).
    pub(crate) async fn capabilities(
        &self,
        paths: &[String],
    ) -> Result<BTreeMap<String, Vec<String>>> {
        let body = json!({ "paths": paths });
        let reply = self
            .client
            .call_ok(
                Method::POST,
                "sys/capabilities-self",
                Some(&body),
                "sys/capabilities-self",
            )
            .await?;
        let list = |v: &Value| -> Option<Vec<String>> {
            v.as_array().map(|caps| {
                caps.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
        };
        Ok(paths
            .iter()
            .map(|p| {
                let caps = list(&reply.body["data"][p])
                    .or_else(|| list(&reply.body[p]))
                    .unwrap_or_default();
                (p.clone(), caps)
            })
            .collect())
    }

    /// The mount's engine as `sys/internal/ui/mounts/{mount}` reports it: `(type, version)`.
    /// `None` when the mount does not exist or the token may not use it.
    pub(crate) async fn mount_info(&self) -> Result<Option<(String, String)>> {
        let path = format!("sys/internal/ui/mounts/{}", self.mount);
        let reply = self
            .client
            .call(Method::GET, &path, None, &format!("read {path}"))
            .await?;
        if !reply.status.is_success() {
            if matches!(reply.status.as_u16(), 400 | 403 | 404)
                && !reply.errors().contains("sealed")
            {
                return Ok(None);
            }
            return Err(self.client.status_error(&format!("read {path}"), &reply));
        }
        let data = &reply.body["data"];
        let kind = data["type"].as_str().unwrap_or_default().to_string();
        let version = data["options"]["version"]
            .as_str()
            .unwrap_or("1")
            .to_string();
        Ok(Some((kind, version)))
    }
}
