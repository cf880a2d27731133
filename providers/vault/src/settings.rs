//! The Vault store's `[stores.NAME]` table in `rekey.toml`, as written and as validated, and the
//! one place that completes it from the `VAULT_*` environment the way the vault CLI does and
//! reads its secrets.

use crate::config::{check_address, check_key_prefix, check_path};
use crate::{
    DEFAULT_KEY_PREFIX, DEFAULT_LOCK_TTL, DEFAULT_MAX_VERSIONS, DEFAULT_MOUNT, DEFAULT_PATH_PREFIX,
    DEFAULT_TRANSIT_MOUNT, TransitConfig, VaultAuth, VaultConfig, VaultStore,
};
use rekey_api::config::{Spanned, Validator, span, text};
use rekey_api::{Env, Error, ErrorKind, Result, SecretSource, SecretString};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where Kubernetes mounts a pod's service-account token.
pub const DEFAULT_JWT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// A `[stores.NAME]` table of `kind = "vault"` or `kind = "vault_transit"` (the same store with
/// its keys in custody in a transit engine), as written. Keys of other store kinds are refused
/// by serde, naming the key and the ones that apply. Connection settings left out come
/// from the `VAULT_*` environment when the store is opened ([`VaultStoreConfig::resolve`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSettings {
    /// `"vault"`, or `"vault_transit"` for keys in custody.
    pub kind: Spanned<String>,
    /// Server address; unset: `$VAULT_ADDR`.
    pub address: Option<Spanned<String>>,
    /// KV v2 mount; default `secret`.
    pub mount: Option<Spanned<String>>,
    /// Path under the mount holding a folder per credential; default `rekey`.
    pub path_prefix: Option<Spanned<String>>,
    /// Enterprise / HCP / OpenBao namespace; unset: `$VAULT_NAMESPACE`.
    pub namespace: Option<Spanned<String>>,
    /// CA certificate file, relative to the config's folder; unset: `$VAULT_CACERT`.
    pub ca_cert: Option<Spanned<String>>,
    /// Folder of CA certificates, relative to the config's folder; unset: `$VAULT_CAPATH`.
    pub ca_path: Option<Spanned<String>>,
    /// Skips TLS verification; only ever when written here (never from the environment).
    pub tls_skip_verify: Option<Spanned<bool>>,
    /// KV versions kept per path, 2..=1000; default 10.
    pub max_versions: Option<Spanned<i64>>,
    /// The rotation lease's time to live in seconds, 1..=86400; default 1800.
    pub lock_ttl_secs: Option<Spanned<i64>>,
    /// How rekey logs in; unset: a token.
    pub auth: Option<Spanned<VaultAuthSettings>>,
    /// `vault_transit` only: the transit engine's mount; default `transit`.
    pub transit_mount: Option<Spanned<String>>,
    /// `vault_transit` only: how key names start (`rekey-billing-3`); default `rekey-`.
    pub key_prefix: Option<Spanned<String>>,
}

/// The `auth = { method = …, … }` of a Vault store, as written: one table for the three
/// methods, so a key of another method is named instead of ignored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultAuthSettings {
    /// `"token"`, `"approle"` or `"kubernetes"`.
    pub method: Spanned<String>,
    /// token: a file holding the token; unset: `$VAULT_TOKEN`, else `~/.vault-token`.
    pub token_file: Option<Spanned<String>>,
    /// approle, kubernetes: where the method is enabled; default `approle` / `kubernetes`.
    pub mount: Option<Spanned<String>>,
    /// approle: the role id (not secret on its own).
    pub role_id: Option<Spanned<String>>,
    /// approle: a file holding the secret id.
    pub secret_id_file: Option<Spanned<String>>,
    /// approle: a variable holding the secret id.
    pub secret_id_env: Option<Spanned<String>>,
    /// kubernetes: the Vault role bound to the service account.
    pub role: Option<Spanned<String>>,
    /// kubernetes: the service-account token file; default [`DEFAULT_JWT_PATH`].
    pub jwt_path: Option<Spanned<String>>,
}

/// A validated Vault store: every setting checked, paths resolved against the config's folder,
/// secrets not read yet (only where they come from).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultStoreConfig {
    /// The store's name in `rekey.toml`.
    pub name: String,
    /// Server address; `None`: `$VAULT_ADDR`.
    pub address: Option<String>,
    /// KV v2 mount.
    pub mount: String,
    /// Path under the mount that holds one folder per credential.
    pub path_prefix: String,
    /// Namespace; `None`: `$VAULT_NAMESPACE`.
    pub namespace: Option<String>,
    /// CA certificate file; `None`: `$VAULT_CACERT`.
    pub ca_cert: Option<PathBuf>,
    /// Folder of CA certificates; `None`: `$VAULT_CAPATH`.
    pub ca_path: Option<PathBuf>,
    /// Skip TLS verification.
    pub tls_skip_verify: bool,
    /// KV versions kept per path.
    pub max_versions: u32,
    /// The rotation lease's time to live.
    pub lock_ttl: Duration,
    /// How rekey logs in.
    pub auth: VaultAuthConfig,
    /// `kind = "vault_transit"`: where the keys are kept in custody; `None` for `kind = "vault"`.
    pub transit: Option<TransitConfig>,
    /// `file:line:column` of the store's `kind`, starting errors found when it is opened (a
    /// variable not set, a file that cannot be read).
    pub origin: String,
}

/// How rekey logs in to Vault, as validated: where each secret comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VaultAuthConfig {
    /// A token: `token_file` when set, else `$VAULT_TOKEN`, else `~/.vault-token`.
    Token {
        /// A file holding the token.
        token_file: Option<PathBuf>,
    },
    /// AppRole: a role id plus a secret id from a variable or a file.
    AppRole {
        /// Where the method is enabled.
        mount: String,
        /// The role id.
        role_id: String,
        /// Where the secret id comes from.
        secret_id: SecretSource,
    },
    /// Kubernetes: the pod's service-account JWT.
    Kubernetes {
        /// Where the method is enabled.
        mount: String,
        /// The Vault role.
        role: String,
        /// The service-account token file, read at every login.
        jwt_path: PathBuf,
    },
}

impl VaultSettings {
    /// Checks the settings of store `name`, recording every problem in `v`; `None` when they
    /// cannot make a store. Defaults as documented on the fields.
    pub fn validate(self, name: &str, v: &mut Validator) -> Option<VaultStoreConfig> {
        let section = format!("stores.{name}");
        let in_custody = self.kind.get_ref() == "vault_transit";
        if !in_custody && !v.expect_kind(&self.kind, "vault", &section) {
            return None;
        }
        let before = v.problems().len();
        if let Some(address) = &self.address {
            v.check(address.span(), check_address(address.get_ref(), &section));
        }
        let mut path = |value: &Option<Spanned<String>>, field: &str, default: &str| {
            let Some(value) = value else {
                return default.to_string();
            };
            let may_be_empty = field == "path_prefix";
            v.check(
                value.span(),
                check_path(&section, field, value.get_ref(), may_be_empty),
            );
            value.get_ref().clone()
        };
        let mount = path(&self.mount, "mount", DEFAULT_MOUNT);
        let path_prefix = path(&self.path_prefix, "path_prefix", DEFAULT_PATH_PREFIX);
        let namespace = self
            .namespace
            .is_some()
            .then(|| path(&self.namespace, "namespace", ""));
        let transit = if in_custody {
            let transit_mount = path(&self.transit_mount, "transit_mount", DEFAULT_TRANSIT_MOUNT);
            let key_prefix = match &self.key_prefix {
                Some(prefix) => {
                    v.check(prefix.span(), check_key_prefix(&section, prefix.get_ref()));
                    prefix.get_ref().clone()
                }
                None => DEFAULT_KEY_PREFIX.to_string(),
            };
            Some(TransitConfig {
                mount: transit_mount.trim_matches('/').to_string(),
                key_prefix,
            })
        } else {
            v.does_not_apply(
                &section,
                "kind = \"vault\" (keys in custody are kind = \"vault_transit\")",
                &[
                    ("transit_mount", span(&self.transit_mount)),
                    ("key_prefix", span(&self.key_prefix)),
                ],
            );
            None
        };
        // Rollback reads PREVIOUS from the KV history, so at least two versions are kept.
        let max_versions = v.positive(
            &self.max_versions,
            DEFAULT_MAX_VERSIONS.into(),
            2..=1000,
            "max_versions",
        );
        let lock_ttl = v.positive(
            &self.lock_ttl_secs,
            DEFAULT_LOCK_TTL.as_secs() as i64,
            1..=86_400,
            "lock_ttl_secs",
        );
        let auth = match self.auth {
            None => Some(VaultAuthConfig::Token { token_file: None }),
            Some(auth) => validate_auth(name, auth, v),
        };
        let auth = auth.filter(|_| v.problems().len() == before)?;
        Some(VaultStoreConfig {
            name: name.to_string(),
            address: text(&self.address),
            mount,
            path_prefix,
            namespace,
            ca_cert: self.ca_cert.as_ref().map(|f| v.path(f.get_ref())),
            ca_path: self.ca_path.as_ref().map(|d| v.path(d.get_ref())),
            tls_skip_verify: self.tls_skip_verify.as_ref().is_some_and(|t| *t.get_ref()),
            max_versions: max_versions as u32,
            lock_ttl: Duration::from_secs(lock_ttl as u64),
            auth,
            transit,
            origin: v.at(self.kind.span()),
        })
    }
}

/// The `auth` table of store `name`.
fn validate_auth(
    name: &str,
    auth: Spanned<VaultAuthSettings>,
    v: &mut Validator,
) -> Option<VaultAuthConfig> {
    let at = auth.span();
    let a = auth.into_inner();
    let section = format!("stores.{name}");
    let auth_section = format!("stores.{name}.auth");
    let require = |v: &mut Validator, value: &Option<Spanned<String>>, key: &str, method: &str| {
        if value.is_none() {
            v.problem(
                at.clone(),
                format!("{auth_section}: method = \"{method}\" needs {key}"),
            );
        }
        text(value)
    };
    let mount = |v: &mut Validator, default: &str, field: &str| match &a.mount {
        Some(mount) => {
            v.check(
                mount.span(),
                check_path(&auth_section, field, mount.get_ref(), false),
            );
            mount.get_ref().clone()
        }
        None => default.to_string(),
    };
    match a.method.get_ref().as_str() {
        "token" => {
            v.does_not_apply(
                &section,
                "token auth",
                &[
                    ("mount", span(&a.mount)),
                    ("role_id", span(&a.role_id)),
                    ("secret_id_file", span(&a.secret_id_file)),
                    ("secret_id_env", span(&a.secret_id_env)),
                    ("role", span(&a.role)),
                    ("jwt_path", span(&a.jwt_path)),
                ],
            );
            Some(VaultAuthConfig::Token {
                token_file: a.token_file.as_ref().map(|f| v.path(f.get_ref())),
            })
        }
        "approle" => {
            v.does_not_apply(
                &section,
                "approle auth",
                &[
                    ("token_file", span(&a.token_file)),
                    ("role", span(&a.role)),
                    ("jwt_path", span(&a.jwt_path)),
                ],
            );
            let role_id = require(v, &a.role_id, "role_id", "approle");
            let secret_id = v.secret_source(
                &a.secret_id_env,
                &a.secret_id_file,
                "secret_id",
                at.clone(),
                &auth_section,
            );
            let mount = mount(v, "approle", "mount");
            Some(VaultAuthConfig::AppRole {
                mount,
                role_id: role_id?,
                secret_id: secret_id?,
            })
        }
        "kubernetes" => {
            v.does_not_apply(
                &section,
                "kubernetes auth",
                &[
                    ("token_file", span(&a.token_file)),
                    ("role_id", span(&a.role_id)),
                    ("secret_id_file", span(&a.secret_id_file)),
                    ("secret_id_env", span(&a.secret_id_env)),
                ],
            );
            let role = require(v, &a.role, "role", "kubernetes");
            let mount = mount(v, "kubernetes", "mount");
            Some(VaultAuthConfig::Kubernetes {
                mount,
                role: role?,
                jwt_path: a
                    .jwt_path
                    .as_ref()
                    .map_or_else(|| PathBuf::from(DEFAULT_JWT_PATH), |f| v.path(f.get_ref())),
            })
        }
        other => {
            v.problem(
                a.method.span(),
                format!(
                    "unknown Vault auth method '{other}'; use \"token\", \"approle\" or \"kubernetes\""
                ),
            );
            None
        }
    }
}

impl VaultStoreConfig {
    /// The store's full configuration: what the config left out taken from the `VAULT_*`
    /// variables of `env` the way the vault CLI does (`VAULT_ADDR`, `VAULT_TOKEN` then
    /// `$HOME/.vault-token`, `VAULT_NAMESPACE`, `VAULT_CACERT`, `VAULT_CAPATH`; an empty variable
    /// counts as unset), and the token or secret id read. No network.
    ///
    /// # Errors
    /// `Config`, starting with [`VaultStoreConfig::origin`] and naming the variable or the file
    /// that is missing, never a secret.
    pub fn resolve(&self, env: &dyn Env) -> Result<VaultConfig> {
        let origin = &self.origin;
        let from_env = |name: &str| env.var(name).filter(|s| !s.is_empty());
        let address = self
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
        let auth = match &self.auth {
            VaultAuthConfig::Token {
                token_file: Some(file),
            } => VaultAuth::Token(read_token(origin, file, "Vault token")?),
            VaultAuthConfig::Token { token_file: None } => match from_env("VAULT_TOKEN") {
                Some(token) => VaultAuth::Token(SecretString::new(token)),
                None => {
                    let helper =
                        from_env("HOME").map(|home| PathBuf::from(home).join(".vault-token"));
                    match helper.filter(|f| f.exists()) {
                        Some(file) => VaultAuth::Token(read_token(origin, &file, "Vault token")?),
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
                secret_id: secret_id.read(
                    env,
                    origin,
                    "AppRole secret_id",
                    "secret_id",
                    &format!("[stores.{}.auth]", self.name),
                )?,
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
        Ok(VaultConfig {
            address,
            mount: self.mount.clone(),
            path_prefix: self.path_prefix.clone(),
            namespace: self
                .namespace
                .clone()
                .or_else(|| from_env("VAULT_NAMESPACE")),
            ca_cert: self.ca_cert.clone().or_else(|| path_env("VAULT_CACERT")),
            ca_path: self.ca_path.clone().or_else(|| path_env("VAULT_CAPATH")),
            tls_skip_verify: self.tls_skip_verify,
            max_versions: self.max_versions,
            lock_ttl: self.lock_ttl,
            auth,
            transit: self.transit.clone(),
        })
    }
}

/// A token file's contents; whitespace around the token is not part of it.
fn read_token(origin: &str, path: &Path, what: &str) -> Result<SecretString> {
    std::fs::read_to_string(path)
        .map(|s| SecretString::new(s.trim()))
        .map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("{origin}: cannot read the {what} file {}", path.display()),
            )
            .with_source(e)
        })
}

impl VaultStore {
    /// The store a validated config describes, completed from `env` ([`VaultStoreConfig::resolve`]);
    /// no network yet. Errors start with the config's position.
    pub fn from_config(config: &VaultStoreConfig, env: &dyn Env) -> Result<VaultStore> {
        VaultStore::new(config.resolve(env)?).map_err(|e| e.context(&config.origin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rekey_testkit::settings::refusal;
    use std::collections::BTreeMap;

    fn validate(text: &str) -> (Option<VaultStoreConfig>, Vec<String>) {
        rekey_testkit::settings::validate_store(text, "local", VaultSettings::validate)
    }

    fn env(vars: &[(&str, &str)]) -> BTreeMap<String, String> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const APPROLE: &str = "[stores.local]\nkind = \"vault\"\n\
        auth = { method = \"approle\", role_id = \"r-1\", secret_id_env = \"SID\" }\n";

    #[test]
    fn defaults_leave_unset_connection_settings_to_the_environment() {
        let (config, problems) = validate(APPROLE);
        assert_eq!(problems, Vec::<String>::new());
        assert_eq!(
            config.unwrap(),
            VaultStoreConfig {
                name: "local".into(),
                address: None,
                mount: "secret".into(),
                path_prefix: "rekey".into(),
                namespace: None,
                ca_cert: None,
                ca_path: None,
                tls_skip_verify: false,
                max_versions: 10,
                lock_ttl: Duration::from_secs(1800),
                auth: VaultAuthConfig::AppRole {
                    mount: "approle".into(),
                    role_id: "r-1".into(),
                    secret_id: SecretSource::Env("SID".into()),
                },
                transit: None,
                origin: "/etc/rekey/rekey.toml:2:8".into(),
            }
        );
        let (config, _) = validate("[stores.local]\nkind = \"vault\"\n");
        assert_eq!(
            config.unwrap().auth,
            VaultAuthConfig::Token { token_file: None }
        );
        let (config, _) = validate(
            "[stores.local]\nkind = \"vault\"\naddress = \"https://vault.example:8200\"\n\
             mount = \"kv/team-a\"\npath_prefix = \"\"\nnamespace = \"team-a\"\nca_cert = \"ca.pem\"\n\
             ca_path = \"/etc/ssl/vault\"\ntls_skip_verify = true\nmax_versions = 2\nlock_ttl_secs = 60\n\
             auth = { method = \"token\", token_file = \"token\" }\n",
        );
        let config = config.unwrap();
        assert_eq!(
            (
                config.address.as_deref(),
                config.mount.as_str(),
                config.path_prefix.as_str(),
                config.namespace.as_deref()
            ),
            (
                Some("https://vault.example:8200"),
                "kv/team-a",
                "",
                Some("team-a")
            )
        );
        assert_eq!(
            (config.ca_cert, config.ca_path),
            (
                Some(PathBuf::from("/etc/rekey/ca.pem")),
                Some(PathBuf::from("/etc/ssl/vault"))
            )
        );
        assert_eq!(
            (config.tls_skip_verify, config.max_versions, config.lock_ttl),
            (true, 2, Duration::from_secs(60))
        );
        assert_eq!(
            config.auth,
            VaultAuthConfig::Token {
                token_file: Some("/etc/rekey/token".into())
            }
        );
        let (config, _) = validate(
            "[stores.local]\nkind = \"vault\"\nauth = { method = \"kubernetes\", role = \"rekey\" }\n",
        );
        assert_eq!(
            config.unwrap().auth,
            VaultAuthConfig::Kubernetes {
                mount: "kubernetes".into(),
                role: "rekey".into(),
                jwt_path: DEFAULT_JWT_PATH.into(),
            }
        );
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_position() {
        let text = "[stores.local]\nkind = \"vault\"\naddress = \"http://vault.example:8200\"\n\
                    mount = \"../sys\"\nmax_versions = 1\nlock_ttl_secs = 0\n\
                    auth = { method = \"approle\", jwt_path = \"/t\" }\n";
        let (config, problems) = validate(text);
        assert_eq!(config, None);
        assert_eq!(
            problems,
            [
                "/etc/rekey/rekey.toml:3:11: stores.local: address must use https (plain http is allowed only for loopback hosts)",
                "/etc/rekey/rekey.toml:4:9: stores.local: mount '../sys' is not a usable Vault path (letters, digits, '-', '_', '.' and '/' only)",
                "/etc/rekey/rekey.toml:5:16: max_versions = 1 is out of range; use 2..=1000",
                "/etc/rekey/rekey.toml:6:17: lock_ttl_secs = 0 is out of range; use 1..=86400",
                "/etc/rekey/rekey.toml:7:41: stores.local: 'jwt_path' does not apply to approle auth",
                "/etc/rekey/rekey.toml:7:8: stores.local.auth: method = \"approle\" needs role_id",
                "/etc/rekey/rekey.toml:7:8: stores.local.auth: set exactly one of secret_id_env = \"VARIABLE\" or secret_id_file = \"PATH\" (secrets are never written into rekey.toml)",
            ]
        );
        let (_, problems) = validate(
            "[stores.local]\nkind = \"vault\"\naddress = \"https://vault.example/v1\"\n\
             auth = { method = \"kubernetes\", token_file = \"t\" }\n",
        );
        assert_eq!(
            problems,
            [
                "/etc/rekey/rekey.toml:3:11: stores.local: address must be scheme://host[:port] only (no path, query or credentials)",
                "/etc/rekey/rekey.toml:4:46: stores.local: 'token_file' does not apply to kubernetes auth",
                "/etc/rekey/rekey.toml:4:8: stores.local.auth: method = \"kubernetes\" needs role",
            ]
        );
        let (_, problems) = validate(
            "[stores.local]\nkind = \"vault\"\nauth = { method = \"userpass\", role = \"x\" }\n",
        );
        assert_eq!(
            problems,
            [
                "/etc/rekey/rekey.toml:3:19: unknown Vault auth method 'userpass'; use \"token\", \"approle\" or \"kubernetes\""
            ]
        );
    }

    #[test]
    fn keys_that_do_not_apply_are_named() {
        let path = refusal::<VaultSettings>("[stores.local]\nkind = \"vault\"\npath = \"keys\"\n");
        assert!(
            path.starts_with(
                "/etc/rekey/rekey.toml:3:1: unknown field `path`, expected one of `kind`, `address`"
            ),
            "{path}"
        );
        let secret = refusal::<VaultSettings>(
            "[stores.local]\nkind = \"vault\"\nauth = { method = \"token\", secret = \"x\" }\n",
        );
        assert!(
            secret.starts_with("/etc/rekey/rekey.toml:3:28: unknown field `secret`"),
            "{secret}"
        );
        let (_, problems) = validate(
            "[stores.local]\nkind = \"vault\"\nauth = { method = \"token\", role = \"r\", mount = \"m\" }\n",
        );
        assert_eq!(
            problems,
            [
                "/etc/rekey/rekey.toml:3:48: stores.local: 'mount' does not apply to token auth",
                "/etc/rekey/rekey.toml:3:35: stores.local: 'role' does not apply to token auth",
            ]
        );
    }

    #[test]
    fn the_environment_completes_what_the_config_leaves_out() {
        let dir = std::env::temp_dir().join(format!("rekey-vault-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (config, _) = validate("[stores.local]\nkind = \"vault\"\n");
        let config = config.unwrap();

        let err = config.resolve(&env(&[("VAULT_TOKEN", "s.x")])).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert_eq!(
            err.to_string(),
            "/etc/rekey/rekey.toml:2:8: the Vault store has no address and VAULT_ADDR is not set"
        );
        let resolved = config
            .resolve(&env(&[
                ("VAULT_ADDR", "https://vault.example:8200"),
                ("VAULT_TOKEN", "s.from-env"),
                ("VAULT_NAMESPACE", "team-a"),
                ("VAULT_CACERT", "/etc/ssl/ca.pem"),
                ("VAULT_CAPATH", ""),
            ]))
            .unwrap();
        assert_eq!(resolved.address, "https://vault.example:8200");
        assert_eq!(resolved.namespace.as_deref(), Some("team-a"));
        assert_eq!(resolved.ca_cert, Some(PathBuf::from("/etc/ssl/ca.pem")));
        assert_eq!(resolved.ca_path, None, "an empty variable counts as unset");
        assert!(matches!(&resolved.auth, VaultAuth::Token(t) if t.expose_secret() == "s.from-env"));

        // No VAULT_TOKEN: ~/.vault-token, trimmed.
        std::fs::write(dir.join(".vault-token"), "s.from-helper\n").unwrap();
        let home = dir.to_str().unwrap();
        let base = [("VAULT_ADDR", "https://v.example"), ("HOME", home)];
        let resolved = config.resolve(&env(&base)).unwrap();
        assert!(
            matches!(&resolved.auth, VaultAuth::Token(t) if t.expose_secret() == "s.from-helper")
        );
        let err = config
            .resolve(&env(&[
                ("VAULT_ADDR", "https://v.example"),
                ("HOME", "/nonexistent"),
            ]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/rekey/rekey.toml:2:8: no Vault token: VAULT_TOKEN is not set and ~/.vault-token does not exist"
        );

        // The config's own settings win over the environment.
        let text = format!(
            "[stores.local]\nkind = \"vault\"\naddress = \"https://mine.example\"\nnamespace = \"mine\"\n\
             auth = {{ method = \"token\", token_file = \"{home}/.vault-token\" }}\n"
        );
        let (mine, _) = validate(&text);
        let resolved = mine
            .unwrap()
            .resolve(&env(&[
                ("VAULT_ADDR", "https://env.example"),
                ("VAULT_NAMESPACE", "env"),
                ("VAULT_TOKEN", "s.env"),
            ]))
            .unwrap();
        assert_eq!(
            (resolved.address.as_str(), resolved.namespace.as_deref()),
            ("https://mine.example", Some("mine"))
        );
        assert!(
            matches!(&resolved.auth, VaultAuth::Token(t) if t.expose_secret() == "s.from-helper")
        );

        // AppRole's secret id from its variable; a missing one is named, never a value.
        let (approle, _) = validate(APPROLE);
        let approle = approle.unwrap();
        let resolved = approle
            .resolve(&env(&[
                ("VAULT_ADDR", "https://v.example"),
                ("SID", "TOPSECRET"),
            ]))
            .unwrap();
        assert!(matches!(
            &resolved.auth,
            VaultAuth::AppRole { role_id, secret_id, .. }
                if role_id == "r-1" && secret_id.expose_secret() == "TOPSECRET"
        ));
        assert!(!format!("{resolved:?}").contains("TOPSECRET"));
        let err = approle
            .resolve(&env(&[("VAULT_ADDR", "https://v.example")]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/rekey/rekey.toml:2:8: the AppRole secret_id variable SID is not set"
        );
        assert!(
            err.hint().unwrap().contains("[stores.local.auth]"),
            "{err:?}"
        );

        // Opening checks the resolved configuration and says where it came from.
        let err = VaultStore::from_config(
            &mine_with_mount(&approle, ".."),
            &env(&[("VAULT_ADDR", "https://v.example"), ("SID", "s")]),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with(
                "/etc/rekey/rekey.toml:2:8: vault store: mount '..' is not a usable Vault path"
            ),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn vault_transit_takes_every_vault_key_plus_where_its_keys_are() {
        let (config, problems) = validate(
            "[stores.local]\nkind = \"vault_transit\"\naddress = \"https://vault.example:8200\"\n\
             mount = \"kv\"\nlock_ttl_secs = 60\nauth = { method = \"kubernetes\", role = \"rekey\" }\n\
             transit_mount = \"/keys/team-a/\"\nkey_prefix = \"sf-\"\n",
        );
        assert_eq!(problems, Vec::<String>::new());
        let config = config.unwrap();
        assert_eq!(
            config.transit,
            Some(TransitConfig {
                mount: "keys/team-a".into(),
                key_prefix: "sf-".into(),
            })
        );
        assert_eq!(
            (config.mount.as_str(), config.lock_ttl),
            ("kv", Duration::from_secs(60))
        );
        // The defaults, and the resolved configuration carries them to the store.
        let (config, _) = validate("[stores.local]\nkind = \"vault_transit\"\n");
        let config = config.unwrap();
        assert_eq!(config.transit, Some(TransitConfig::default()));
        assert_eq!(
            config.transit,
            Some(TransitConfig {
                mount: "transit".into(),
                key_prefix: "rekey-".into(),
            })
        );
        let resolved = config
            .resolve(&env(&[
                ("VAULT_ADDR", "http://127.0.0.1:8200"),
                ("VAULT_TOKEN", "s.x"),
            ]))
            .unwrap();
        assert_eq!(resolved.transit, Some(TransitConfig::default()));
        let store = VaultStore::new(resolved).unwrap();
        assert_eq!(
            store.transit().unwrap().to_string(),
            "transit(http://127.0.0.1:8200 transit/)"
        );
        // A plain vault store has no custody.
        let (config, _) = validate("[stores.local]\nkind = \"vault\"\n");
        let config = config.unwrap();
        assert_eq!(config.transit, None);
        let resolved = config
            .resolve(&env(&[
                ("VAULT_ADDR", "http://127.0.0.1:8200"),
                ("VAULT_TOKEN", "s.x"),
            ]))
            .unwrap();
        assert!(VaultStore::new(resolved).unwrap().transit().is_none());
    }

    #[test]
    fn transit_keys_are_refused_on_a_plain_vault_store_and_checked_on_a_transit_one() {
        let (config, problems) = validate(
            "[stores.local]\nkind = \"vault\"\ntransit_mount = \"transit\"\nkey_prefix = \"x-\"\n",
        );
        assert_eq!(config, None);
        assert_eq!(
            problems,
            [
                "/etc/rekey/rekey.toml:3:17: stores.local: 'transit_mount' does not apply to kind = \"vault\" (keys in custody are kind = \"vault_transit\")",
                "/etc/rekey/rekey.toml:4:14: stores.local: 'key_prefix' does not apply to kind = \"vault\" (keys in custody are kind = \"vault_transit\")",
            ]
        );
        let (config, problems) = validate(
            "[stores.local]\nkind = \"vault_transit\"\ntransit_mount = \"../sys\"\nkey_prefix = \"a/b-\"\n",
        );
        assert_eq!(config, None);
        assert_eq!(
            problems,
            [
                "/etc/rekey/rekey.toml:3:17: stores.local: transit_mount '../sys' is not a usable Vault path (letters, digits, '-', '_', '.' and '/' only)",
                "/etc/rekey/rekey.toml:4:14: stores.local: key_prefix 'a/b-' is not usable in a transit key name (letters, digits, '-', '_' and '.', starting with a letter, digit or '_')",
            ]
        );
        let (config, problems) = validate("[stores.local]\nkind = \"vaults\"\n");
        assert_eq!(config, None);
        assert_eq!(
            problems,
            [
                "/etc/rekey/rekey.toml:2:8: stores.local: kind = \"vaults\" where \"vault\" was expected"
            ]
        );
        // Of another store kind entirely, serde names the key and the keys that do apply.
        let foreign = refusal::<VaultSettings>(
            "[stores.local]\nkind = \"vault_transit\"\nkey_alias_prefix = \"x\"\n",
        );
        assert!(
            foreign.starts_with("/etc/rekey/rekey.toml:3:1: unknown field `key_alias_prefix`")
                && foreign.contains("`transit_mount`, `key_prefix`"),
            "{foreign}"
        );
    }

    fn mine_with_mount(config: &VaultStoreConfig, mount: &str) -> VaultStoreConfig {
        VaultStoreConfig {
            mount: mount.into(),
            ..config.clone()
        }
    }
}
