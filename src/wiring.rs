//! Builds providers from validated configuration: the only place that knows which crate serves
//! which config kind, and the only place that reads the environment for credentials.

use crate::config::{AdminConfig, AppKind, Config, CredentialConfig, StoreConfig};
use rekey_api::{CertificateTarget, Error, ErrorKind, KeyMaterial, Result, SecretStore};
use rekey_salesforce::{AccessToken, AdminAuth, SalesforceConfig, SalesforceTarget};

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

/// The store a credential lives in.
pub fn store(config: &Config, credential: &CredentialConfig) -> Box<dyn SecretStore> {
    match &config.stores[&credential.store] {
        StoreConfig::File { path } => Box::new(rekey_file::FileStore::new(path)),
    }
}

/// The app a credential's certificate is deployed to.
pub fn target(
    config: &Config,
    credential: &CredentialConfig,
) -> Result<Box<dyn CertificateTarget>> {
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
            token: AccessToken::new(env("SF_ACCESS_TOKEN", &credential.org)?),
            instance_url: env("SF_INSTANCE_URL", &credential.org)?,
        },
    };
    let target = SalesforceTarget::new(SalesforceConfig {
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
    })?;
    Ok(Box::new(target))
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
