//! `[stores.NAME]`: where keys live. Each table is read by the settings type of the provider its
//! `kind` names (the file store, Vault KV v2, AWS Secrets Manager), which validates it with the
//! positions of the whole file: the providers own their settings, defined once.

use rekey_api::config::Validator;
use rekey_aws::{AwsConfig, AwsSettings};
use rekey_file::{FileConfig, FileSettings};
use rekey_vault::{VaultSettings, VaultStoreConfig};
use serde::Deserialize;
use serde::de::IgnoredAny;
use std::collections::{BTreeMap, BTreeSet};
use toml::Spanned;
use toml::de::{DeValue, ValueDeserializer};

/// A secret store, validated by its provider.
#[derive(Debug)]
pub enum StoreConfig {
    /// The embedded local file store.
    File(FileConfig),
    /// HashiCorp Vault (or OpenBao) KV v2; unset connection settings come from the `VAULT_*`
    /// environment when the store is opened.
    Vault(Box<VaultStoreConfig>),
    /// AWS Secrets Manager; credentials and, unless set here, the region come from the AWS
    /// default chain.
    Aws(AwsConfig),
}

/// Just a table's `kind`, to choose the provider that reads the rest.
#[derive(Deserialize)]
struct Kind {
    kind: Spanned<String>,
    #[serde(flatten)]
    _rest: BTreeMap<String, IgnoredAny>,
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
            "stores must be tables: [stores.NAME] with kind = \"file\", \"vault\" or \"aws\"",
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
        "vault" => {
            let table = only_keys_of::<VaultSettings>(table, &section, "vault", v);
            StoreConfig::Vault(Box::new(
                read::<VaultSettings>(table, v)?.validate(name, v)?,
            ))
        }
        "aws" => {
            let table = only_keys_of::<AwsSettings>(table, &section, "aws", v);
            StoreConfig::Aws(read::<AwsSettings>(table, v)?.validate(name, v)?)
        }
        other => {
            v.problem(
                kind.span(),
                format!("unknown store kind '{other}'; use \"file\", \"vault\" or \"aws\""),
            );
            return None;
        }
    };
    Some(store)
}

/// `table` as a `T`, or `None` with serde's complaint recorded at its position.
fn read<'de, T: Deserialize<'de>>(table: Spanned<DeValue<'de>>, v: &mut Validator) -> Option<T> {
    let at = table.span();
    match T::deserialize(ValueDeserializer::from(table)) {
        Ok(value) => Some(value),
        Err(e) => {
            v.problem(e.span().unwrap_or(at), e.message());
            None
        }
    }
}

/// `table` without the keys settings type `T` does not have, each reported where it is
/// (`stores.x: 'path' does not apply to vault`) instead of stopping at the first: the rest of
/// the table is still validated, so one run shows every problem.
fn only_keys_of<'de, T: Deserialize<'de>>(
    table: Spanned<DeValue<'de>>,
    section: &str,
    kind: &str,
    v: &mut Validator,
) -> Spanned<DeValue<'de>> {
    let span = table.span();
    let DeValue::Table(mut keys) = table.into_inner() else {
        return Spanned::new(span, DeValue::Table(Default::default()));
    };
    let accepted = fields_of::<T>();
    let foreign: Vec<_> = keys
        .keys()
        .filter(|k| !accepted.contains(&k.get_ref().as_ref()))
        .cloned()
        .collect();
    for key in foreign {
        v.problem(
            key.span(),
            format!("{section}: '{}' does not apply to {kind}", key.get_ref()),
        );
        keys.remove(key.get_ref().as_ref());
    }
    Spanned::new(span, DeValue::Table(keys))
}

/// The keys a settings type accepts, as its `Deserialize` derive names them: read off the derive
/// itself, so no list of keys is kept by hand beside the type.
fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    /// A deserializer that answers nothing, but remembers the fields a struct asks for.
    struct Probe(&'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for &mut Probe {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: serde::de::Visitor<'de>>(
            self,
            _: V,
        ) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("only structs are probed"))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = fields;
            Err(serde::de::Error::custom("probed"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let mut probe = Probe(&[]);
    let _ = T::deserialize(&mut probe);
    probe.0
}
