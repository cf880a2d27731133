//! The two `sys/` endpoints vaultrs 0.8 lacks, `sys/capabilities-self` and
//! `sys/internal/ui/mounts/{mount}`, defined the way vaultrs defines its own and run through the
//! same client; and the one reading of their answers both preflights (KV and transit) share.

use crate::client::{Client, VaultFailure, logged};
use rekey_api::Result;
use rustify_derive::Endpoint;
use serde_json::Value;
use std::collections::BTreeMap;
use vaultrs::api;

/// `POST sys/capabilities-self`: the calling token's capabilities on each path. Part of the
/// `default` policy; vaultrs 0.8 has no endpoint for it.
#[derive(Debug, Endpoint)]
#[endpoint(path = "sys/capabilities-self", method = "POST", response = "Value")]
struct CapabilitiesSelfRequest {
    paths: Vec<String>,
}

/// `GET sys/internal/ui/mounts/{mount}`: a mount's engine type and options, readable with only
/// a policy on paths inside it (`sys/mounts` would need `sudo`-like access). vaultrs 0.8 has no
/// endpoint for it.
#[derive(Debug, Endpoint)]
#[endpoint(path = "sys/internal/ui/mounts/{self.mount}", response = "Value")]
struct MountInfoRequest {
    #[endpoint(skip)]
    mount: String,
}

/// Paths and the capabilities an operation needs on each.
pub(crate) type Needed = Vec<(String, &'static [&'static str])>;

/// The token's capabilities on each path (`sys/capabilities-self`).
pub(crate) async fn capabilities(
    client: &Client,
    paths: &[String],
) -> Result<BTreeMap<String, Vec<String>>> {
    let what = "sys/capabilities-self";
    let authed = client.authed().await?;
    let endpoint = CapabilitiesSelfRequest {
        paths: paths.to_vec(),
    };
    // Not `exec_with_result`: older servers put the answer at the top level as well as in
    // `data`, so the whole body is parsed and both places are looked at.
    let body = logged(
        client.address(),
        "POST",
        "sys/capabilities/self",
        api::exec_with_no_result(&authed, endpoint),
    )
    .await
    .map_err(|e| client.error(what, e))?;
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
            let caps = list(&body["data"][p])
                .or_else(|| list(&body[p]))
                .unwrap_or_default();
            (p.clone(), caps)
        })
        .collect())
}

/// Every capability of `needed` the token lacks, as `token lacks 'update' on PATH` (empty: it
/// holds them all). `root` grants everything; `deny` on a path takes everything there away.
pub(crate) async fn missing_capabilities(client: &Client, needed: &Needed) -> Result<Vec<String>> {
    let paths: Vec<String> = needed.iter().map(|(p, _)| p.clone()).collect();
    let held = capabilities(client, &paths).await?;
    let mut missing = Vec::new();
    for (path, caps) in needed {
        let have = held.get(path).cloned().unwrap_or_default();
        if have.iter().any(|c| c == "root") {
            continue;
        }
        let deny = have.iter().any(|c| c == "deny");
        for cap in *caps {
            if deny || !have.iter().any(|c| c == cap) {
                missing.push(format!("token lacks '{cap}' on {path}"));
            }
        }
    }
    Ok(missing)
}

/// `mount`'s engine as `sys/internal/ui/mounts/{mount}` reports it: `(type, version)`. `None`
/// when the mount does not exist or the token may not use it.
pub(crate) async fn mount_info(client: &Client, mount: &str) -> Result<Option<(String, String)>> {
    let what = format!("read sys/internal/ui/mounts/{mount}");
    let authed = client.authed().await?;
    let endpoint = MountInfoRequest {
        mount: mount.to_string(),
    };
    let data = match logged(
        client.address(),
        "GET",
        &format!("sys/internal/ui/mounts/{mount}"),
        api::exec_with_result(&authed, endpoint),
    )
    .await
    {
        Ok(data) => data,
        Err(e) => {
            return match client.failure(&what, e) {
                VaultFailure::Status { code, errors }
                    if matches!(code, 400 | 403 | 404) && !errors.contains("sealed") =>
                {
                    Ok(None)
                }
                VaultFailure::Status { code, errors } => {
                    Err(client.status_error(&what, code, &errors))
                }
                VaultFailure::Other(err) => Err(err),
            };
        }
    };
    let kind = data["type"].as_str().unwrap_or_default().to_string();
    let version = data["options"]["version"]
        .as_str()
        .unwrap_or("1")
        .to_string();
    Ok(Some((kind, version)))
}
