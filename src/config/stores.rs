//! `[stores.NAME]`: where keys live (the file store, Vault KV v2, AWS Secrets Manager).

use super::*;

/// A secret store.
#[derive(Debug)]
pub enum StoreConfig {
    /// The embedded local file store.
    File {
        /// Its root directory.
        path: PathBuf,
    },
    /// HashiCorp Vault (or OpenBao) KV v2.
    Vault(Box<VaultStoreConfig>),
    /// AWS Secrets Manager; credentials and, unless set here, the region come from the AWS
    /// default chain.
    Aws(AwsStoreConfig),
}

/// An AWS Secrets Manager store as configured.
#[derive(Debug)]
pub struct AwsStoreConfig {
    /// Region; `None` = the default chain's.
    pub region: Option<String>,
    /// Endpoint override (VPC endpoints, tests).
    pub endpoint_url: Option<String>,
    /// Secret names are `<name_prefix>/<credential>`.
    pub name_prefix: String,
    /// KMS key for secrets rekey creates.
    pub kms_key_id: Option<String>,
    /// Whether rekey may create a missing secret.
    pub create_missing: bool,
    /// Lease of the rotation lock.
    pub lock_ttl: Duration,
}

/// A Vault store as configured; unset connection settings come from the `VAULT_*` environment.
#[derive(Debug)]
pub struct VaultStoreConfig {
    /// Server address; `None` = `$VAULT_ADDR`.
    pub address: Option<String>,
    /// KV v2 mount.
    pub mount: String,
    /// Path under the mount that holds one folder per credential.
    pub path_prefix: String,
    /// Enterprise/HCP namespace; `None` = `$VAULT_NAMESPACE`.
    pub namespace: Option<String>,
    /// CA certificate file; `None` = `$VAULT_CACERT`.
    pub ca_cert: Option<PathBuf>,
    /// Directory of CA certificates; `None` = `$VAULT_CAPATH`.
    pub ca_path: Option<PathBuf>,
    /// Skip TLS verification (only ever when written in the config).
    pub tls_skip_verify: bool,
    /// KV versions kept per path.
    pub max_versions: u32,
    /// Lease of the rotation lock.
    pub lock_ttl: Duration,
    /// How rekey logs in.
    pub auth: VaultAuthConfig,
    /// `file:line` of the store's section, for errors found later (missing env, unreadable files).
    pub origin: String,
}

/// How rekey logs in to Vault.
#[derive(Debug)]
pub enum VaultAuthConfig {
    /// A token: `token_file` when set, else `$VAULT_TOKEN`, else `~/.vault-token`.
    Token {
        /// A file holding the token.
        token_file: Option<PathBuf>,
    },
    /// AppRole: role_id plus a secret_id from a file or an environment variable.
    AppRole {
        /// Auth mount, default `approle`.
        mount: String,
        /// The role id (not secret on its own).
        role_id: String,
        /// Where the secret_id comes from.
        secret_id: SecretSource,
    },
    /// Kubernetes: the pod's service-account JWT.
    Kubernetes {
        /// Auth mount, default `kubernetes`.
        mount: String,
        /// The Vault role.
        role: String,
        /// The service-account token file.
        jwt_path: PathBuf,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    pub(super) kind: Spanned<String>,
    pub(super) path: Option<Spanned<String>>,
    pub(super) address: Option<Spanned<String>>,
    pub(super) mount: Option<Spanned<String>>,
    pub(super) path_prefix: Option<Spanned<String>>,
    pub(super) namespace: Option<Spanned<String>>,
    pub(super) ca_cert: Option<Spanned<String>>,
    pub(super) ca_path: Option<Spanned<String>>,
    pub(super) tls_skip_verify: Option<Spanned<bool>>,
    pub(super) max_versions: Option<Spanned<i64>>,
    pub(super) lock_ttl_secs: Option<Spanned<i64>>,
    pub(super) auth: Option<Spanned<RawVaultAuth>>,
    pub(super) region: Option<Spanned<String>>,
    pub(super) endpoint_url: Option<Spanned<String>>,
    pub(super) name_prefix: Option<Spanned<String>>,
    pub(super) kms_key_id: Option<Spanned<String>>,
    pub(super) create_missing: Option<Spanned<bool>>,
}

/// The keys each store kind accepts besides `kind`.
pub(super) const FILE_KEYS: &[&str] = &["path"];
pub(super) const VAULT_KEYS: &[&str] = &[
    "address",
    "mount",
    "path_prefix",
    "namespace",
    "ca_cert",
    "ca_path",
    "tls_skip_verify",
    "max_versions",
    "lock_ttl_secs",
    "auth",
];
pub(super) const AWS_KEYS: &[&str] = &[
    "region",
    "endpoint_url",
    "name_prefix",
    "kms_key_id",
    "create_missing",
    "lock_ttl_secs",
];

impl RawStore {
    /// Every optional key that is set, with where it is.
    fn present(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        let span = |v: Option<std::ops::Range<usize>>, key: &'static str| v.map(|s| (key, s));
        [
            span(self.path.as_ref().map(Spanned::span), "path"),
            span(self.address.as_ref().map(Spanned::span), "address"),
            span(self.mount.as_ref().map(Spanned::span), "mount"),
            span(self.path_prefix.as_ref().map(Spanned::span), "path_prefix"),
            span(self.namespace.as_ref().map(Spanned::span), "namespace"),
            span(self.ca_cert.as_ref().map(Spanned::span), "ca_cert"),
            span(self.ca_path.as_ref().map(Spanned::span), "ca_path"),
            span(
                self.tls_skip_verify.as_ref().map(Spanned::span),
                "tls_skip_verify",
            ),
            span(
                self.max_versions.as_ref().map(Spanned::span),
                "max_versions",
            ),
            span(
                self.lock_ttl_secs.as_ref().map(Spanned::span),
                "lock_ttl_secs",
            ),
            span(self.auth.as_ref().map(Spanned::span), "auth"),
            span(self.region.as_ref().map(Spanned::span), "region"),
            span(
                self.endpoint_url.as_ref().map(Spanned::span),
                "endpoint_url",
            ),
            span(self.name_prefix.as_ref().map(Spanned::span), "name_prefix"),
            span(self.kms_key_id.as_ref().map(Spanned::span), "kms_key_id"),
            span(
                self.create_missing.as_ref().map(Spanned::span),
                "create_missing",
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVaultAuth {
    pub(super) method: Spanned<String>,
    pub(super) token_file: Option<Spanned<String>>,
    pub(super) mount: Option<Spanned<String>>,
    pub(super) role_id: Option<Spanned<String>>,
    pub(super) secret_id_file: Option<Spanned<String>>,
    pub(super) secret_id_env: Option<Spanned<String>>,
    pub(super) role: Option<Spanned<String>>,
    pub(super) jwt_path: Option<Spanned<String>>,
}

pub(super) fn validate_stores(
    raw: &RawConfig,
    base: &Path,
    p: &mut Problems,
) -> BTreeMap<String, StoreConfig> {
    let mut out = BTreeMap::new();
    for (name, spanned) in &raw.stores {
        let store = spanned.get_ref();
        let config = match store.kind.get_ref().as_str() {
            "file" => {
                only_keys(p, name, "file", store, FILE_KEYS);
                match &store.path {
                    Some(path) => StoreConfig::File {
                        path: base.join(path.get_ref()),
                    },
                    None => {
                        p.add(
                            store.kind.span(),
                            format!("stores.{name}: kind = \"file\" needs path = \"DIR\""),
                        );
                        continue;
                    }
                }
            }
            "vault" => {
                only_keys(p, name, "vault", store, VAULT_KEYS);
                if let Some(address) = &store.address {
                    check_url(address, "address", p);
                }
                let Some(auth) = validate_vault_auth(name, store, base, p) else {
                    continue;
                };
                StoreConfig::Vault(Box::new(VaultStoreConfig {
                    address: text(&store.address),
                    mount: text(&store.mount).unwrap_or_else(|| rekey_vault::DEFAULT_MOUNT.into()),
                    path_prefix: text(&store.path_prefix)
                        .unwrap_or_else(|| rekey_vault::DEFAULT_PATH_PREFIX.into()),
                    namespace: text(&store.namespace),
                    ca_cert: text(&store.ca_cert).map(|f| base.join(f)),
                    ca_path: text(&store.ca_path).map(|d| base.join(d)),
                    tls_skip_verify: store.tls_skip_verify.as_ref().is_some_and(|v| *v.get_ref()),
                    // Rollback reads PREVIOUS from KV history, so at least two versions are kept.
                    max_versions: positive(
                        &store.max_versions,
                        rekey_vault::DEFAULT_MAX_VERSIONS.into(),
                        2..=1000,
                        "max_versions",
                        p,
                    ) as u32,
                    lock_ttl: Duration::from_secs(positive(
                        &store.lock_ttl_secs,
                        rekey_vault::DEFAULT_LOCK_TTL.as_secs() as i64,
                        1..=86_400,
                        "lock_ttl_secs",
                        p,
                    ) as u64),
                    auth,
                    origin: p.at(spanned.span()),
                }))
            }
            "aws" => {
                only_keys(p, name, "aws", store, AWS_KEYS);
                if let Some(url) = &store.endpoint_url {
                    check_url(url, "endpoint_url", p);
                }
                StoreConfig::Aws(AwsStoreConfig {
                    region: text(&store.region),
                    endpoint_url: text(&store.endpoint_url),
                    name_prefix: text(&store.name_prefix)
                        .unwrap_or_else(|| rekey_aws::DEFAULT_NAME_PREFIX.into()),
                    kms_key_id: text(&store.kms_key_id),
                    create_missing: store.create_missing.as_ref().is_none_or(|v| *v.get_ref()),
                    lock_ttl: Duration::from_secs(positive(
                        &store.lock_ttl_secs,
                        rekey_aws::DEFAULT_LOCK_TTL.as_secs() as i64,
                        1..=86_400,
                        "lock_ttl_secs",
                        p,
                    ) as u64),
                })
            }
            other => {
                p.add(
                    store.kind.span(),
                    format!("unknown store kind '{other}'; use \"file\", \"vault\" or \"aws\""),
                );
                continue;
            }
        };
        out.insert(name.clone(), config);
    }
    out
}

pub(super) fn validate_vault_auth(
    name: &str,
    store: &RawStore,
    base: &Path,
    p: &mut Problems,
) -> Option<VaultAuthConfig> {
    let Some(auth) = &store.auth else {
        return Some(VaultAuthConfig::Token { token_file: None });
    };
    let a = auth.get_ref();
    let span = |v: &Option<Spanned<String>>| v.as_ref().map(Spanned::span);
    let require = |p: &mut Problems, value: &Option<Spanned<String>>, key: &str, method: &str| {
        if value.is_none() {
            p.add(
                auth.span(),
                format!("stores.{name}.auth: method = \"{method}\" needs {key}"),
            );
        }
        text(value)
    };
    match a.method.get_ref().as_str() {
        "token" => {
            misplaced(
                p,
                name,
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
                token_file: text(&a.token_file).map(|f| base.join(f)),
            })
        }
        "approle" => {
            misplaced(
                p,
                name,
                "approle auth",
                &[
                    ("token_file", span(&a.token_file)),
                    ("role", span(&a.role)),
                    ("jwt_path", span(&a.jwt_path)),
                ],
            );
            let role_id = require(p, &a.role_id, "role_id", "approle");
            let secret_id = match (text(&a.secret_id_file), text(&a.secret_id_env)) {
                (Some(file), None) => Some(SecretSource::File(base.join(file))),
                (None, Some(var)) => Some(SecretSource::Env(var)),
                _ => {
                    p.add(auth.span(), format!("stores.{name}.auth: approle needs exactly one of secret_id_file or secret_id_env"));
                    None
                }
            };
            Some(VaultAuthConfig::AppRole {
                mount: text(&a.mount).unwrap_or_else(|| "approle".into()),
                role_id: role_id?,
                secret_id: secret_id?,
            })
        }
        "kubernetes" => {
            misplaced(
                p,
                name,
                "kubernetes auth",
                &[
                    ("token_file", span(&a.token_file)),
                    ("role_id", span(&a.role_id)),
                    ("secret_id_file", span(&a.secret_id_file)),
                    ("secret_id_env", span(&a.secret_id_env)),
                ],
            );
            let role = require(p, &a.role, "role", "kubernetes");
            Some(VaultAuthConfig::Kubernetes {
                mount: text(&a.mount).unwrap_or_else(|| "kubernetes".into()),
                role: role?,
                jwt_path: text(&a.jwt_path).map_or_else(
                    || PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount/token"),
                    |f| base.join(f),
                ),
            })
        }
        other => {
            p.add(
                a.method.span(),
                format!("unknown Vault auth method '{other}'; use \"token\", \"approle\" or \"kubernetes\""),
            );
            None
        }
    }
}

/// Reports keys that belong to another kind of store instead of ignoring them.
pub(super) fn only_keys(
    p: &mut Problems,
    name: &str,
    kind: &str,
    store: &RawStore,
    allowed: &[&str],
) {
    for (key, span) in store.present() {
        if !allowed.contains(&key) {
            p.add(
                span,
                format!("stores.{name}: '{key}' does not apply to {kind}"),
            );
        }
    }
}

/// Reports keys that belong to another auth method instead of ignoring them.
pub(super) fn misplaced(
    p: &mut Problems,
    name: &str,
    kind: &str,
    keys: &[(&str, Option<std::ops::Range<usize>>)],
) {
    for (key, span) in keys {
        if let Some(span) = span {
            p.add(
                span.clone(),
                format!("stores.{name}: '{key}' does not apply to {kind}"),
            );
        }
    }
}
