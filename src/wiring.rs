//! Builds providers from validated configuration: the only place that knows which crate serves
//! which config kind, and the only place that reads the environment for credentials.

use crate::config::{
    AdminConfig, AppKind, Config, CredentialConfig, SecretSource, StoreConfig, VaultAuthConfig,
    VaultStoreConfig,
};
use rekey_api::{
    CertificateTarget, Error, ErrorKind, KeyMaterial, Result, SecretStore, SecretString,
};
use rekey_salesforce::{AdminAuth, SalesforceConfig, SalesforceTarget};
use rekey_vault::{VaultAuth, VaultConfig};
use std::path::{Path, PathBuf};

/// The credential named on the command line.
pub fn credential<'c>(config: &'c Config, name: &str) -> Result<&'c CredentialConfig> {
    config.credentials.get(name).ok_or_else(|| {
        let known: Vec<&str> = config.credentials.keys().map(String::as_str).collect();
        Error::new(
            ErrorKind::Config,
            format!("{}: no credential named '{name}'", config.path.display()),
        )
        .with_hint(format!(
            "defined credentials: {}",
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        ))
    })
}

/// The stores a credential's keys live in, primary first.
pub async fn stores(
    config: &Config,
    credential: &CredentialConfig,
) -> Result<Vec<Box<dyn SecretStore>>> {
    let mut out = Vec::new();
    for name in &credential.stores {
        out.push(open_store(&config.stores[name]).await?);
    }
    Ok(out)
}

/// One store by its name in `stores` (checked at config load).
pub async fn store(config: &Config, name: &str) -> Result<Box<dyn SecretStore>> {
    open_store(&config.stores[name]).await
}

async fn open_store(store: &StoreConfig) -> Result<Box<dyn SecretStore>> {
    Ok(match store {
        StoreConfig::File { path } => Box::new(rekey_file::FileStore::new(path)),
        StoreConfig::Vault(vault) => Box::new(vault_store(vault)?),
        StoreConfig::Aws(aws) => Box::new(
            rekey_aws::AwsStore::connect(rekey_aws::AwsConfig {
                region: aws.region.clone(),
                endpoint_url: aws.endpoint_url.clone(),
                name_prefix: aws.name_prefix.clone(),
                kms_key_id: aws.kms_key_id.clone(),
                create_missing: aws.create_missing,
                lock_ttl: aws.lock_ttl,
            })
            .await?,
        ),
    })
}

/// A Vault store, with every setting the config leaves out taken from the `VAULT_*` environment
/// the way the vault CLI does.
fn vault_store(v: &VaultStoreConfig) -> Result<rekey_vault::VaultStore> {
    let origin = &v.origin;
    let from_env = |name: &str| std::env::var(name).ok().filter(|s| !s.is_empty());
    let address = v
        .address
        .clone()
        .or_else(|| from_env("VAULT_ADDR"))
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!("{origin}: the Vault store has no address and VAULT_ADDR is not set"),
            )
            .with_hint(
                "set address = \"https://vault.example:8200\" in the store or export VAULT_ADDR",
            )
        })?;
    let read_secret = |path: &Path, what: &str| {
        std::fs::read_to_string(path)
            .map(|s| SecretString::new(s.trim()))
            .map_err(|e| {
                Error::new(
                    ErrorKind::Config,
                    format!("{origin}: cannot read the {what} file {}", path.display()),
                )
                .with_source(e)
            })
    };
    let auth = match &v.auth {
        VaultAuthConfig::Token {
            token_file: Some(file),
        } => VaultAuth::Token(read_secret(file, "Vault token")?),
        VaultAuthConfig::Token { token_file: None } => match from_env("VAULT_TOKEN") {
            Some(token) => VaultAuth::Token(SecretString::new(token)),
            None => {
                let helper = from_env("HOME").map(|home| PathBuf::from(home).join(".vault-token"));
                match helper.filter(|f| f.exists()) {
                    Some(file) => VaultAuth::Token(read_secret(&file, "Vault token")?),
                    None => {
                        return Err(Error::new(
                            ErrorKind::Config,
                            format!("{origin}: no Vault token: VAULT_TOKEN is not set and ~/.vault-token does not exist"),
                        )
                        .with_hint("export VAULT_TOKEN, run `vault login`, or configure auth = { method = \"approle\", … }"));
                    }
                }
            }
        },
        VaultAuthConfig::AppRole {
            mount,
            role_id,
            secret_id,
        } => VaultAuth::AppRole {
            mount: mount.clone(),
            role_id: role_id.clone(),
            secret_id: match secret_id {
                SecretSource::File(file) => read_secret(file, "AppRole secret_id")?,
                SecretSource::Env(var) => SecretString::new(from_env(var).ok_or_else(|| {
                    Error::new(
                        ErrorKind::Config,
                        format!("{origin}: the AppRole secret_id variable {var} is not set"),
                    )
                })?),
            },
        },
        VaultAuthConfig::Kubernetes {
            mount,
            role,
            jwt_path,
        } => VaultAuth::Kubernetes {
            mount: mount.clone(),
            role: role.clone(),
            jwt_path: jwt_path.clone(),
        },
    };
    let path_env = |name: &str| from_env(name).map(PathBuf::from);
    rekey_vault::VaultStore::new(VaultConfig {
        address,
        mount: v.mount.clone(),
        path_prefix: v.path_prefix.clone(),
        namespace: v.namespace.clone().or_else(|| from_env("VAULT_NAMESPACE")),
        ca_cert: v.ca_cert.clone().or_else(|| path_env("VAULT_CACERT")),
        ca_path: v.ca_path.clone().or_else(|| path_env("VAULT_CAPATH")),
        tls_skip_verify: v.tls_skip_verify,
        max_versions: v.max_versions,
        lock_ttl: v.lock_ttl,
        auth,
    })
    .map_err(|e| e.context(origin))
}

/// The app a credential's certificate is deployed to.
pub fn target(
    config: &Config,
    credential: &CredentialConfig,
) -> Result<Box<dyn CertificateTarget>> {
    Ok(Box::new(salesforce_target(config, credential)?))
}

/// The app a credential's certificate is deployed to, as the Salesforce target itself (for what
/// only it offers, like reading the app's consumer key).
pub fn salesforce_target(
    config: &Config,
    credential: &CredentialConfig,
) -> Result<SalesforceTarget> {
    let org = &config.orgs[&credential.org];
    let admin = match &org.admin {
        AdminConfig::Jwt {
            consumer_key,
            username,
            key_file,
            origin,
        } => {
            let pem = std::fs::read_to_string(key_file).map_err(|e| {
                Error::new(
                    ErrorKind::Config,
                    format!(
                        "{origin}: cannot read admin key file {}",
                        key_file.display()
                    ),
                )
                .with_source(e)
            })?;
            let key = KeyMaterial::from_pem(pem).map_err(|e| {
                e.context(format!("{origin}: admin key file {}", key_file.display()))
            })?;
            AdminAuth::Jwt {
                consumer_key: consumer_key.clone(),
                username: username.clone(),
                key,
            }
        }
        AdminConfig::AccessTokenEnv => AdminAuth::AccessToken {
            token: SecretString::new(env("SF_ACCESS_TOKEN", &credential.org)?),
            instance_url: env("SF_INSTANCE_URL", &credential.org)?,
        },
    };
    SalesforceTarget::new(SalesforceConfig {
        org: credential.org.clone(),
        login_url: org.login_url.clone(),
        audience: org.audience.clone(),
        api_version: org.api_version.clone(),
        admin,
        app_kind: match credential.app_kind {
            AppKind::ConnectedApp => rekey_salesforce::AppKind::ConnectedApp,
            AppKind::ExternalClientApp => rekey_salesforce::AppKind::ExternalClientApp,
        },
        app: credential.app.clone(),
        integration_username: credential.username.clone(),
        consumer_key: credential.consumer_key.clone(),
        deploy_timeout: credential.deploy_timeout,
        request_timeout: credential.request_timeout,
    })
}

fn env(name: &str, org: &str) -> Result<String> {
    std::env::var(name).map_err(|_| {
        Error::new(
            ErrorKind::Config,
            format!("org '{org}' uses auth = \"access_token_env\" but {name} is not set"),
        )
        .with_hint("export SF_ACCESS_TOKEN and SF_INSTANCE_URL (e.g. from `sf org display --json`)")
    })
}

/// Where `rekey token` caches access tokens: `$XDG_CACHE_HOME/rekey/tokens`, else
/// `$HOME/.cache/rekey/tokens`; `None` when neither is set (then nothing is cached).
pub fn token_cache_dir() -> Option<PathBuf> {
    let from_env = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            // The XDG spec says to ignore a relative path; a relative HOME is as meaningless.
            .filter(|p| p.is_absolute())
    };
    from_env("XDG_CACHE_HOME")
        .or_else(|| from_env("HOME").map(|home| home.join(".cache")))
        .map(|cache| cache.join("rekey").join("tokens"))
}

/// Who is running rekey, for evidence: the login name from the environment.
pub fn operator() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| {
            use std::os::unix::fs::MetadataExt as _;
            // No login name in the environment (a service): the user id owning this process.
            std::fs::metadata("/proc/self")
                .map_or_else(|_| "unknown".to_string(), |m| format!("uid {}", m.uid()))
        })
}
