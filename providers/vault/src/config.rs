//! What the CLI hands the Vault store: address, KV v2 mount and prefix, TLS trust, login method,
//! and the checks that refuse an unsafe or malformed configuration before any request is made.

use rekey_api::{Error, ErrorKind, Result, SecretString};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Default KV v2 mount.
pub const DEFAULT_MOUNT: &str = "secret";
/// Default path prefix under the mount.
pub const DEFAULT_PATH_PREFIX: &str = "rekey";
/// Default number of KV versions kept per path (the rollback history).
pub const DEFAULT_MAX_VERSIONS: u32 = 10;
/// Default lease of the rotation lock: longer than a rotation, short enough that a crashed
/// holder does not block the next scheduled run for long.
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(30 * 60);

/// Default transit mount of a `vault_transit` store.
pub const DEFAULT_TRANSIT_MOUNT: &str = "transit";
/// Default start of the transit key names of a `vault_transit` store (`rekey-billing-3`).
pub const DEFAULT_KEY_PREFIX: &str = "rekey-";

/// Where a `vault_transit` store keeps its keys: the transit mount, and how key names start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransitConfig {
    /// The transit engine's mount, default `transit`.
    pub mount: String,
    /// Every key is `{key_prefix}{credential}-{generation}`; default `rekey-`.
    pub key_prefix: String,
}

impl Default for TransitConfig {
    fn default() -> Self {
        TransitConfig {
            mount: DEFAULT_TRANSIT_MOUNT.to_string(),
            key_prefix: DEFAULT_KEY_PREFIX.to_string(),
        }
    }
}

/// How rekey logs in to Vault.
#[derive(Debug)] // safe: SecretString redacts itself
pub enum VaultAuth {
    /// A ready token (`VAULT_TOKEN` or a token file), validated with `lookup-self` at login.
    /// Whitespace around it is not part of it.
    Token(SecretString),
    /// AppRole login at `auth/<mount>/login`.
    AppRole {
        /// Where the AppRole method is enabled, usually `approle`.
        mount: String,
        /// The role id (not secret on its own).
        role_id: String,
        /// The secret id; whitespace around it is not part of it.
        secret_id: SecretString,
    },
    /// Kubernetes login at `auth/<mount>/login` with the pod's service-account JWT.
    Kubernetes {
        /// Where the Kubernetes method is enabled, usually `kubernetes`.
        mount: String,
        /// The Vault role bound to the service account.
        role: String,
        /// The service-account JWT file, read at every login (it is rotated by the kubelet).
        jwt_path: PathBuf,
    },
}

impl VaultAuth {
    /// How messages name the method: "token", "approle login at auth/approle".
    pub(crate) fn label(&self) -> String {
        match self {
            VaultAuth::Token(_) => "token".to_string(),
            VaultAuth::AppRole { mount, .. } => format!("approle login at auth/{mount}"),
            VaultAuth::Kubernetes { mount, role, .. } => {
                format!("kubernetes login as role '{role}' at auth/{mount}")
            }
        }
    }
}

/// Everything the Vault store needs.
#[derive(Debug)] // safe: the auth redacts its secrets
pub struct VaultConfig {
    /// Server address, e.g. `https://vault.example:8200`; plain http only on loopback.
    pub address: String,
    /// KV v2 mount, default `secret`.
    pub mount: String,
    /// Path prefix under the mount, default `rekey`.
    pub path_prefix: String,
    /// `X-Vault-Namespace` (Vault Enterprise / HCP, OpenBao namespaces).
    pub namespace: Option<String>,
    /// PEM file of CA certificates to trust instead of the system roots (`VAULT_CACERT`).
    pub ca_cert: Option<PathBuf>,
    /// Directory of PEM CA certificates to trust instead of the system roots (`VAULT_CAPATH`).
    pub ca_path: Option<PathBuf>,
    /// Disables TLS verification; only when set explicitly in the configuration.
    pub tls_skip_verify: bool,
    /// KV versions kept per path: the rollback history. At least 2.
    pub max_versions: u32,
    /// Lease of the rotation lock; a crashed holder's lock expires after it.
    pub lock_ttl: Duration,
    /// How to log in.
    pub auth: VaultAuth,
    /// Keys in custody in a transit engine of the same server (`kind = "vault_transit"`);
    /// `None`: private keys are kept in KV.
    pub transit: Option<TransitConfig>,
}

impl VaultConfig {
    /// A configuration with the defaults: mount `secret`, prefix `rekey`, 10 versions, a
    /// 30-minute lock lease, TLS verified against the system roots, no namespace.
    pub fn new(address: impl Into<String>, auth: VaultAuth) -> Self {
        VaultConfig {
            address: address.into(),
            mount: DEFAULT_MOUNT.to_string(),
            path_prefix: DEFAULT_PATH_PREFIX.to_string(),
            namespace: None,
            ca_cert: None,
            ca_path: None,
            tls_skip_verify: false,
            max_versions: DEFAULT_MAX_VERSIONS,
            lock_ttl: DEFAULT_LOCK_TTL,
            auth,
            transit: None,
        }
    }

    /// Checks every field that can be checked offline; returns the normalised address.
    pub(crate) fn validate(&self) -> Result<String> {
        let address = check_address(&self.address, LABEL)?;
        check_path(LABEL, "mount", &self.mount, false)?;
        check_path(LABEL, "path_prefix", &self.path_prefix, true)?;
        if let Some(ns) = &self.namespace {
            check_path(LABEL, "namespace", ns, false)?;
        }
        if self.max_versions < 2 {
            return Err(config_error(format!(
                "max_versions is {}; it must be at least 2 so that the previous key stays in the history",
                self.max_versions
            )));
        }
        if self.lock_ttl < Duration::from_secs(1) {
            return Err(config_error("lock_ttl must be at least one second"));
        }
        match &self.auth {
            VaultAuth::Token(token) if token.is_blank() => {
                return Err(config_error("the token is empty")
                    .with_hint("set VAULT_TOKEN or point the configuration at a token file"));
            }
            VaultAuth::AppRole {
                mount,
                role_id,
                secret_id,
            } => {
                check_path(LABEL, "approle mount", mount, false)?;
                if role_id.trim().is_empty() || secret_id.is_blank() {
                    return Err(config_error("approle role_id or secret_id is empty"));
                }
            }
            VaultAuth::Kubernetes { mount, role, .. } => {
                check_path(LABEL, "kubernetes mount", mount, false)?;
                if role.trim().is_empty() {
                    return Err(config_error("kubernetes role is empty"));
                }
            }
            VaultAuth::Token(_) => {}
        }
        if let Some(transit) = &self.transit {
            check_path(LABEL, "transit_mount", &transit.mount, false)?;
            check_key_prefix(LABEL, &transit.key_prefix)?;
        }
        Ok(address)
    }
}

/// How messages about a configuration name the store before it has a label of its own.
const LABEL: &str = "vault store";

fn config_error(message: impl fmt::Display) -> Error {
    Error::new(ErrorKind::Config, format!("{LABEL}: {message}"))
}

/// [`rekey_api::endpoint`] (https, or http to a loopback address: a dev server), and no path,
/// query or credentials: the address of the server only. Answers it without a trailing slash.
/// `label` starts the message: the store, or its config section.
pub(crate) fn check_address(address: &str, label: &str) -> Result<String> {
    let url = rekey_api::endpoint(address, "address", label)?.url;
    if !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.path().trim_end_matches('/').is_empty()
    {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "{label}: address must be scheme://host[:port] only (no path, query or credentials)"
            ),
        )
        .with_hint("use the form https://vault.example.com:8200"));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// A KV mount, prefix or namespace: `/`-separated segments of safe characters, no `.`/`..`.
/// `label` starts the message: the store, or its config section.
pub(crate) fn check_path(label: &str, field: &str, value: &str, may_be_empty: bool) -> Result<()> {
    let bad = |message: String| Error::new(ErrorKind::Config, format!("{label}: {message}"));
    let trimmed = value.trim_matches('/');
    if trimmed.is_empty() {
        return if may_be_empty {
            Ok(())
        } else {
            Err(bad(format!("{field} is empty")))
        };
    }
    let ok = trimmed.split('/').all(|segment| {
        !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    });
    if ok {
        Ok(())
    } else {
        Err(bad(format!(
            "{field} '{value}' is not a usable Vault path (letters, digits, '-', '_', '.' and '/' only)"
        )))
    }
}

/// A transit key-name prefix: letters, digits, '-', '_' and '.' (a key name is one path
/// segment), not starting with '-' or '.', possibly empty. `label` starts the message: the store, or its config section.
pub(crate) fn check_key_prefix(label: &str, prefix: &str) -> Result<()> {
    // Transit key names start and end with a word character.
    let starts_well = prefix
        .chars()
        .next()
        .is_none_or(|c| c.is_ascii_alphanumeric() || c == '_');
    if starts_well
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Config,
            format!(
                "{label}: key_prefix '{prefix}' is not usable in a transit key name (letters, digits, '-', '_' and '.', starting with a letter, digit or '_')"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(address: &str) -> VaultConfig {
        VaultConfig::new(address, VaultAuth::Token(SecretString::new("s.TOPSECRET")))
    }

    #[test]
    fn plain_http_is_refused_unless_loopback() {
        for ok in [
            "https://vault.example:8200",
            "http://127.0.0.1:8200",
            "http://[::1]:8200/",
            "http://localhost:8200",
        ] {
            assert!(config(ok).validate().is_ok(), "{ok}");
        }
        for bad in [
            "http://vault.example:8200",
            "ftp://vault.example",
            "https://vault.example/v1",
            "https://u:p@vault.example",
            "not a url",
        ] {
            let err = config(bad).validate().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{bad}");
        }
        assert_eq!(
            config("http://127.0.0.1:8200/").validate().unwrap(),
            "http://127.0.0.1:8200"
        );
    }

    #[test]
    fn debug_redacts_tokens_and_secret_ids() {
        let mut c = config("https://vault.example");
        c.auth = VaultAuth::AppRole {
            mount: "approle".into(),
            role_id: "role".into(),
            secret_id: SecretString::new("SECRETID"),
        };
        let text = format!("{c:?} {:?}", SecretString::new("s.TOPSECRET"));
        assert!(
            !text.contains("SECRETID") && !text.contains("TOPSECRET"),
            "{text}"
        );
        assert!(text.contains("***"));
    }

    #[test]
    fn paths_and_limits_are_checked() {
        let mut c = config("https://vault.example");
        c.mount = "../sys".into();
        assert!(c.validate().is_err());
        c.mount = "kv/team-a".into();
        c.path_prefix = String::new();
        assert!(c.validate().is_ok());
        c.max_versions = 1;
        assert!(c.validate().is_err());
        c.max_versions = 2;
        c.transit = Some(TransitConfig::default());
        assert!(c.validate().is_ok());
        c.transit = Some(TransitConfig {
            mount: "transit".into(),
            key_prefix: "a/b".into(),
        });
        assert!(c.validate().is_err());
        c.transit = Some(TransitConfig {
            mount: "transit".into(),
            key_prefix: "-rekey-".into(),
        });
        assert!(c.validate().is_err());
        c.transit = Some(TransitConfig {
            mount: "..".into(),
            key_prefix: String::new(),
        });
        assert!(c.validate().is_err());
    }
}
