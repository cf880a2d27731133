//! What the CLI hands the AWS store, and the checks that refuse an unsafe or malformed
//! configuration before any request is made.

use rekey_api::{Error, ErrorKind, Result};
use std::path::PathBuf;
use std::time::Duration;

/// Default prefix of the secret names.
pub const DEFAULT_NAME_PREFIX: &str = "rekey";
/// Default start of the KMS aliases of keys in custody (`alias/rekey/billing/3`).
pub const DEFAULT_KMS_ALIAS_PREFIX: &str = "rekey/";
/// Default lease of the rotation lock: longer than a rotation, short enough that a crashed
/// holder does not block the next scheduled run for long.
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(30 * 60);

/// Everything the AWS Secrets Manager store needs. Credentials are not here: they come from the
/// AWS default chain (environment, profile, web identity, IMDS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsConfig {
    /// The region; `None` takes the default chain's (`AWS_REGION`, the profile, IMDS).
    pub region: Option<String>,
    /// An endpoint override for tests and VPC endpoints; `https://` unless it is this machine.
    pub endpoint_url: Option<String>,
    /// Secret names are `<prefix>/<credential>`; default `rekey`.
    pub name_prefix: String,
    /// A customer-managed KMS key for secrets rekey creates; `None` uses `aws/secretsmanager`.
    pub kms_key_id: Option<String>,
    /// Whether rekey may create a missing secret (default). When false, a missing secret is a
    /// `Config` error naming it.
    pub create_missing: bool,
    /// Lease of the rotation lock; a crashed holder's lock expires after it.
    pub lock_ttl: Duration,
    /// Keys in custody in KMS (`kind = "aws_kms"`); `None` for keys kept in the secrets.
    pub kms: Option<KmsConfig>,
}

/// Where keys in custody live in KMS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KmsConfig {
    /// Aliases are `alias/<alias_prefix><credential>/<generation>`; default `rekey/`.
    pub alias_prefix: String,
    /// The key policy every key rekey creates gets; `None` leaves KMS's default policy.
    pub key_policy: Option<KeyPolicy>,
}

impl Default for KmsConfig {
    fn default() -> Self {
        KmsConfig {
            alias_prefix: DEFAULT_KMS_ALIAS_PREFIX.to_string(),
            key_policy: None,
        }
    }
}

/// A key policy read from `kms_key_policy_file` when the configuration was loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPolicy {
    /// Where it was read from, for messages.
    pub path: PathBuf,
    /// The JSON document, as KMS takes it.
    pub document: String,
}

impl KeyPolicy {
    /// Reads `path`: it must be readable and hold a JSON object. A problem names the path and
    /// what is wrong, never the document.
    pub fn read(path: PathBuf, label: &str) -> Result<KeyPolicy> {
        let document = std::fs::read_to_string(&path).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!(
                    "{label}: kms_key_policy_file {} cannot be read: {e}",
                    path.display()
                ),
            )
        })?;
        match serde_json::from_str::<serde_json::Value>(&document) {
            Ok(serde_json::Value::Object(_)) => Ok(KeyPolicy { path, document }),
            Ok(_) => Err(Error::new(
                ErrorKind::Config,
                format!(
                    "{label}: kms_key_policy_file {} is not a JSON object (a key policy is {{\"Version\": …, \"Statement\": […]}})",
                    path.display()
                ),
            )),
            Err(e) => Err(Error::new(
                ErrorKind::Config,
                format!(
                    "{label}: kms_key_policy_file {} is not valid JSON: {}",
                    path.display(),
                    rekey_api::parse_problem(&e)
                ),
            )),
        }
    }
}

/// `prefix` if it can start a KMS alias name after `alias/`: letters, digits, `/_-`, not
/// `aws/` (reserved for AWS managed keys), no empty path segment.
pub(crate) fn check_alias_prefix(prefix: &str, label: &str) -> Result<String> {
    let chars_ok = prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/_-".contains(c));
    if !chars_ok || prefix.starts_with('/') || prefix.contains("//") || prefix.starts_with("aws/") {
        return Err(Error::new(
            ErrorKind::Config,
            format!("{label}: kms_alias_prefix '{prefix}' cannot start a KMS alias name"),
        )
        .with_hint("use letters, digits and /_- only, without empty path segments, and not aws/ (e.g. \"rekey/\")"));
    }
    Ok(prefix.to_string())
}

impl Default for AwsConfig {
    fn default() -> Self {
        AwsConfig {
            region: None,
            endpoint_url: None,
            name_prefix: DEFAULT_NAME_PREFIX.to_string(),
            kms_key_id: None,
            create_missing: true,
            lock_ttl: DEFAULT_LOCK_TTL,
            kms: None,
        }
    }
}

impl AwsConfig {
    /// Refuses plain `http://` off this machine, a malformed endpoint, a prefix that is not a
    /// valid secret-name part, and a zero lock lease. Returns the prefix without outer slashes.
    pub(crate) fn validate(&self) -> Result<String> {
        if let Some(url) = &self.endpoint_url {
            check_endpoint(url, LABEL)?;
        }
        let prefix = check_name_prefix(&self.name_prefix, LABEL)?;
        if self.lock_ttl.is_zero() {
            return Err(Error::new(
                ErrorKind::Config,
                format!("{LABEL}: lock_ttl must be positive"),
            ));
        }
        if let Some(kms) = &self.kms {
            check_alias_prefix(&kms.alias_prefix, LABEL)?;
        }
        Ok(prefix)
    }
}

/// How messages about a configuration name the store before it has a label of its own.
const LABEL: &str = "aws store";

/// [`rekey_api::endpoint`] (`https://`, or `http://` for a loopback host only), without
/// credentials in it. `label` starts the message: the store, or its config section.
pub(crate) fn check_endpoint(url: &str, label: &str) -> Result<()> {
    let url = rekey_api::endpoint(url, "endpoint_url", label)?.url;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::new(
            ErrorKind::Config,
            format!("{label}: endpoint_url must not carry credentials"),
        )
        .with_hint(
            "credentials come from the AWS default chain (AWS_PROFILE, AWS_ACCESS_KEY_ID, a role)",
        ));
    }
    Ok(())
}

/// `prefix` without outer slashes, if it can start a Secrets Manager secret name.
pub(crate) fn check_name_prefix(prefix: &str, label: &str) -> Result<String> {
    let prefix = prefix.trim_matches('/').to_string();
    let name_ok = prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c));
    if !name_ok || prefix.contains("//") {
        return Err(Error::new(
            ErrorKind::Config,
            format!("{label}: name_prefix '{prefix}' is not a valid Secrets Manager name prefix"),
        )
        .with_hint("use letters, digits and /_+=.@- only, without empty path segments"));
    }
    Ok(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_endpoint(url: &str) -> AwsConfig {
        AwsConfig {
            endpoint_url: Some(url.to_string()),
            ..AwsConfig::default()
        }
    }

    #[test]
    fn plain_http_only_on_loopback() {
        for ok in [
            "https://secretsmanager.vpce.example",
            "http://127.0.0.1:5000",
            "http://localhost:1/x",
            "http://[::1]:4566",
        ] {
            with_endpoint(ok).validate().expect(ok);
        }
        for bad in [
            "http://10.0.0.1:5000",
            "http://127.0.0.1.evil.example",
            "ftp://127.0.0.1",
            "127.0.0.1:5000",
            "https://user:pw@host",
            "https://",
        ] {
            let err = with_endpoint(bad).validate().expect_err(bad);
            assert_eq!(err.kind(), ErrorKind::Config, "{bad}");
        }
    }

    #[test]
    fn prefixes_and_credentials_must_be_valid_names() {
        let mut config = AwsConfig {
            name_prefix: "/team/rekey/".into(),
            ..AwsConfig::default()
        };
        assert_eq!(config.validate().unwrap(), "team/rekey");
        config.name_prefix = "a b".into();
        assert_eq!(config.validate().unwrap_err().kind(), ErrorKind::Config);
        config.name_prefix = "a//b".into();
        assert_eq!(config.validate().unwrap_err().kind(), ErrorKind::Config);
    }
}
