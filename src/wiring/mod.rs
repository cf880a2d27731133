//! Builds providers from validated configuration: the only place that knows which crate serves
//! which config kind, and the only place that reads the process environment for settings and
//! secrets ([`environment`], which it hands to the providers and secret sources that need it).

use crate::config::{AdminConfig, AppKind, Config, CredentialConfig, OrgConfig, StoreConfig};
use rekey_api::{
    CertificateTarget, CustodyStore, Env, Error, ErrorKind, KeyMaterial, Result, SecretStore,
    SecretString,
};
use rekey_salesforce::{
    AdminAuth, AdminSession, ApiUsage, OrgConnection, SalesforceConfig, SalesforceOrg,
    SalesforceTarget,
};
use std::path::PathBuf;

mod sessions;
mod sf_cli;

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

/// A store from its settings (for what keeps a store's settings rather than the whole config).
pub async fn open_store(store: &StoreConfig) -> Result<Box<dyn SecretStore>> {
    Ok(match store {
        StoreConfig::File(file) => Box::new(rekey_file::FileStore::from_config(file)),
        StoreConfig::Vault(vault) => {
            let store = rekey_vault::VaultStore::from_config(vault, environment())?;
            match store.transit() {
                Some(transit) => Box::new(CustodyStore::new(Box::new(store), transit)),
                None => Box::new(store),
            }
        }
        StoreConfig::Aws(aws) => {
            let store = rekey_aws::AwsStore::connect(aws.clone()).await?;
            match store.kms() {
                Some(kms) => Box::new(CustodyStore::new(Box::new(store), kms)),
                None => Box::new(store),
            }
        }
    })
}

/// The process environment, as providers and secret sources read it (`VAULT_*`, a secret's
/// `*_env` variable, `SF_ACCESS_TOKEN`): rekey reads its environment for settings and secrets
/// only through this.
pub fn environment() -> &'static dyn Env {
    fn var(name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
    &var
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
    let admin = admin_session(org, &credential.org)?;
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

/// rekey's admin session to the org named `name`, shared by everything in this process that
/// talks to that org (its key or token read the first time).
fn admin_session(org: &OrgConfig, name: &str) -> Result<AdminSession> {
    sessions::shared(org, name, || admin_auth(org, name).map(AdminSession::new))
}

/// The org's API usage as Salesforce last reported it to this process, for every org it
/// talked to (`rekey_api_usage_ratio`).
pub fn api_usage() -> Vec<(String, ApiUsage)> {
    let mut out: Vec<(String, ApiUsage)> = sessions::all()
        .into_iter()
        .filter_map(|(org, s)| s.usage().map(|u| (org, u)))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The API usage of the org named `name`: as Salesforce reported it in the last minute, else
/// read from its `limits` resource (one call).
pub async fn org_api_usage(config: &Config, name: &str) -> Result<ApiUsage> {
    org(config, name)?.api_usage().await
}

/// Reads ahead, org by org, the apps `credentials` will observe (see
/// [`SalesforceOrg::read_ahead`]): a run over N credentials of one org then spends ⌈N/10⌉
/// metadata reads instead of N.
pub async fn read_ahead(config: &Config, credentials: &[&CredentialConfig]) {
    let mut orgs: std::collections::BTreeMap<&str, (Vec<String>, bool)> =
        std::collections::BTreeMap::new();
    for cred in credentials {
        // A consumer secret is read through Connect REST, not its metadata.
        if cred.kind == rekey_api::CredentialKind::ConsumerSecret {
            continue;
        }
        let entry = orgs.entry(cred.org.as_str()).or_default();
        match cred.app_kind {
            AppKind::ConnectedApp => entry.0.push(cred.app.clone()),
            AppKind::ExternalClientApp => entry.1 = true,
        }
    }
    for (name, (connected_apps, ecas)) in orgs {
        // Fewer than two apps gain nothing by reading ahead.
        if connected_apps.len() + usize::from(ecas) < 2 {
            continue;
        }
        match org(config, name) {
            Ok(org) => org.read_ahead(&connected_apps, ecas).await,
            Err(e) => tracing::debug!(org = %name, error = %e, "not reading ahead"),
        }
    }
}

/// rekey's admin connection to the org named `name`, its key or token read now.
fn admin_auth(org: &OrgConfig, name: &str) -> Result<AdminAuth> {
    Ok(match &org.admin {
        AdminConfig::Jwt {
            consumer_key,
            username,
            key_file,
            origin,
        } => {
            let pem = crate::pki::read_pem(key_file, crate::pki::PemFile::Key)
                .map_err(|e| e.context(format!("{origin}: admin key file")))?;
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
            token: SecretString::new(env("SF_ACCESS_TOKEN", name)?),
            instance_url: env("SF_INSTANCE_URL", name)?,
        },
        AdminConfig::SfCli { target_org, origin } => {
            let session = sf_cli::session(target_org, origin, environment().var("REKEY_SF"))?;
            AdminAuth::AccessToken {
                token: session.token,
                instance_url: session.instance_url,
            }
        }
    })
}

/// The org named `name` as a whole (every OAuth app, grants, logins), through rekey's admin
/// connection: what `audit`, `inventory` and `grants` read.
pub fn org(config: &Config, name: &str) -> Result<SalesforceOrg> {
    let org = config.org(name)?;
    SalesforceOrg::new(OrgConnection {
        org: name.to_string(),
        login_url: org.login_url.clone(),
        audience: org.audience.clone(),
        api_version: org.api_version.clone(),
        admin: admin_session(org, name)?,
        request_timeout: ORG_REQUEST_TIMEOUT,
    })
}

/// One request to an org outside a rotation (credentials set their own `request_timeout_secs`).
const ORG_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

fn env(name: &str, org: &str) -> Result<String> {
    environment().var(name).ok_or_else(|| {
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
