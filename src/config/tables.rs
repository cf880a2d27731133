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

/// `table` as a `T`, with serde's complaints recorded at their positions. Serde stops at the
/// first value of the wrong type, so that value is taken out and the table read again, until it
/// reads: every type error is reported, and the value read without them (`Some`, though the
/// validator already holds a problem) still gets its range and reference checks, so one run shows
/// every mistake. `None` when what is left cannot be read (a missing key, or no position).
pub(super) fn read<'de, T: Deserialize<'de>>(
    table: Spanned<DeValue<'de>>,
    v: &mut Validator,
) -> Option<T> {
    let at = table.span();
    let mut table = table;
    let mut dropped = false;
    // Bounded: each round removes one value of the file.
    for _ in 0..64 {
        match T::deserialize(ValueDeserializer::from(table.clone())) {
            Ok(value) => return Some(value),
            Err(e) => {
                // A key that became missing because its bad value was taken out is no news:
                // the table that misses it goes too, so the rest is still read.
                let missing = dropped && e.message().starts_with("missing field");
                if !missing {
                    v.problem(e.span().unwrap_or_else(|| at.clone()), e.message());
                }
                match e.span() {
                    Some(span) if drop_value_at(table.get_mut(), &span, missing) => dropped = true,
                    _ => return None,
                }
            }
        }
    }
    None
}

/// Takes out of `value` the key whose scalar value (or whose name) lies around `span`, searching
/// every nested table and list (a `[a.b]` header's table has no span around its keys); whole
/// tables and lists stay, so their other keys are still read, unless `whole` and the table or
/// list is exactly at `span`.
fn drop_value_at(value: &mut DeValue<'_>, span: &std::ops::Range<usize>, whole: bool) -> bool {
    let around = |outer: std::ops::Range<usize>| outer.start <= span.start && span.end <= outer.end;
    // A list of plain values is one value: a bad item takes the whole list out.
    fn nested(v: &DeValue<'_>) -> bool {
        match v {
            DeValue::Table(_) => true,
            DeValue::Array(items) => items.iter().any(|i| nested(i.get_ref())),
            _ => false,
        }
    }
    match value {
        DeValue::Table(table) => {
            let hit = table
                .iter()
                .find(|(k, v)| {
                    around(k.span())
                        || (!nested(v.get_ref()) && around(v.span()))
                        || (whole && v.span() == *span)
                })
                .map(|(k, _)| k.clone());
            if let Some(key) = hit {
                table.remove(&key);
                return true;
            }
            table
                .iter_mut()
                .any(|(_, v)| nested(v.get_ref()) && drop_value_at(v.get_mut(), span, whole))
        }
        DeValue::Array(items) => items
            .iter_mut()
            .any(|v| nested(v.get_ref()) && drop_value_at(v.get_mut(), span, whole)),
        _ => false,
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
