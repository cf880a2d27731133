//! Reading a table of `rekey.toml` by the type its `kind` names: the kind first, then the keys
//! that type does not have (each reported where it is, and dropped so the rest is still
//! checked), then the type itself — all with the positions of the whole file.

use rekey_api::config::Validator;
use serde::Deserialize;
use serde::de::IgnoredAny;
use std::collections::BTreeMap;
use toml::Spanned;
use toml::de::{DeValue, ValueDeserializer};

/// Just a table's `kind` (and, for list entries, its `name`), to choose the type that reads the
/// rest.
#[derive(Deserialize)]
pub(super) struct Kind {
    pub(super) kind: Spanned<String>,
    pub(super) name: Option<Spanned<String>>,
    #[serde(flatten)]
    _rest: BTreeMap<String, IgnoredAny>,
}

/// `table` as a `T`, or `None` with serde's complaint recorded at its position.
pub(super) fn read<'de, T: Deserialize<'de>>(
    table: Spanned<DeValue<'de>>,
    v: &mut Validator,
) -> Option<T> {
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
pub(super) fn only_keys_of<'de, T: Deserialize<'de>>(
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
            format!(
                "{section}: '{}' does not apply to {kind}; its keys are {}",
                key.get_ref(),
                accepted.join(", ")
            ),
        );
        keys.remove(key.get_ref().as_ref());
    }
    Spanned::new(span, DeValue::Table(keys))
}

/// The keys a settings type accepts, as its `Deserialize` derive names them: read off the derive
/// itself, so no list of keys is kept by hand beside the type.
pub(super) fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
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
