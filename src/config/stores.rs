//! `[stores.NAME]`: where keys live. Each table is read by the settings type of the provider its
//! `kind` names (the file store, Vault KV v2, AWS Secrets Manager), which validates it with the
//! positions of the whole file: the providers own their settings, defined once.

use super::tables::{Kind, only_keys_of, read};
use rekey_api::config::Validator;
use rekey_aws::{AwsConfig, AwsSettings};
use rekey_file::{FileConfig, FileSettings};
use rekey_vault::{VaultSettings, VaultStoreConfig};
use std::collections::{BTreeMap, BTreeSet};
use toml::Spanned;
use toml::de::DeValue;

/// A secret store, validated by its provider.
#[derive(Clone, Debug)]
pub enum StoreConfig {
    /// The embedded local file store.
    File(FileConfig),
    /// HashiCorp Vault (or OpenBao) KV v2 (with `transit`: keys in custody in its transit
    /// engine); unset connection settings come from the `VAULT_*` environment when the store is
    /// opened.
    Vault(Box<VaultStoreConfig>),
    /// AWS Secrets Manager (with `kms`: keys in custody in KMS); credentials and, unless set
    /// here, the region come from the AWS default chain.
    Aws(AwsConfig),
}

impl StoreConfig {
    /// The key-management service that keeps this store's keys, when it keeps them in custody.
    pub fn custody(&self) -> Option<rekey_api::CustodyService> {
        match self {
            StoreConfig::Vault(vault) if vault.transit.is_some() => {
                Some(rekey_api::CustodyService::VaultTransit)
            }
            StoreConfig::Aws(aws) if aws.kms.is_some() => Some(rekey_api::CustodyService::AwsKms),
            StoreConfig::File(_) | StoreConfig::Vault(_) | StoreConfig::Aws(_) => None,
        }
    }
}

/// Every `[stores.NAME]` table of `tables` (the document's `stores` value, when it has one),
/// each validated by its provider; a store with a problem is left out (and the problem recorded),
/// and the name of every store declared, usable or not.
pub(super) fn validate_stores(
    tables: Option<Spanned<DeValue<'_>>>,
    v: &mut Validator,
) -> (BTreeMap<String, StoreConfig>, BTreeSet<String>) {
    let mut out = BTreeMap::new();
    let mut declared = BTreeSet::new();
    let Some(tables) = tables else {
        return (out, declared);
    };
    let span = tables.span();
    let DeValue::Table(tables) = tables.into_inner() else {
        v.problem(
            span,
            "stores must be tables: [stores.NAME] with kind = \"file\", \"vault\", \"aws\", \"vault_transit\" or \"aws_kms\"",
        );
        return (out, declared);
    };
    for (name, table) in tables {
        let name = name.get_ref().to_string();
        declared.insert(name.clone());
        if let Some(store) = validate_store(&name, table, v) {
            out.insert(name, store);
        }
    }
    (out, declared)
}

fn validate_store(
    name: &str,
    table: Spanned<DeValue<'_>>,
    v: &mut Validator,
) -> Option<StoreConfig> {
    let kind = read::<Kind>(table.clone(), v)?.kind;
    let section = format!("stores.{name}");
    let store = match kind.get_ref().as_str() {
        "file" => {
            let table = only_keys_of::<FileSettings>(table, &section, "file", v);
            StoreConfig::File(read::<FileSettings>(table, v)?.validate(name, v)?)
        }
        kind @ ("vault" | "vault_transit") => {
            let table = only_keys_of::<VaultSettings>(table, &section, kind, v);
            StoreConfig::Vault(Box::new(
                read::<VaultSettings>(table, v)?.validate(name, v)?,
            ))
        }
        kind @ ("aws" | "aws_kms") => {
            let table = only_keys_of::<AwsSettings>(table, &section, kind, v);
            StoreConfig::Aws(read::<AwsSettings>(table, v)?.validate(name, v)?)
        }
        other => {
            v.problem(
                kind.span(),
                format!("unknown store kind '{other}'; use \"file\", \"vault\", \"aws\", or for keys in custody \"vault_transit\" or \"aws_kms\""),
            );
            return None;
        }
    };
    Some(store)
}
