//! Store settings read the way the binary reads them: a `rekey.toml` text with `[stores.NAME]`
//! tables, deserialized by `toml` (so spans are positions in that text) and validated.

use rekey_api::config::Validator;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;

/// The config file name and folder problems and relative paths are judged against.
pub const CONFIG: &str = "/etc/rekey/rekey.toml";

/// Deserializes `text`'s `[stores.NAME]` tables as `S` and validates the one named `name` with
/// `validate` (a provider's `…Settings::validate`), as if `text` were [`CONFIG`]: the validated
/// config, if any, and every problem found, `file:line:column` first.
///
/// # Panics
/// When `text` does not deserialize (a test of serde's own refusals parses by itself) or has no
/// store `name`.
pub fn validate_store<S, C>(
    text: &str,
    name: &str,
    validate: impl FnOnce(S, &str, &mut Validator<'_>) -> Option<C>,
) -> (Option<C>, Vec<String>)
where
    S: DeserializeOwned,
{
    let mut doc: Doc<S> = toml::from_str(text).unwrap_or_else(|e| panic!("{e}"));
    let settings = doc
        .stores
        .remove(name)
        .unwrap_or_else(|| panic!("no [stores.{name}] in the text"));
    let mut v = Validator::new(CONFIG, text, "/etc/rekey");
    let config = validate(settings, name, &mut v);
    (config, v.problems().to_vec())
}

/// The problem `text` is refused with when its `[stores.NAME]` tables do not deserialize as `S`
/// (a key of another kind, a value of the wrong type), as the binary reports it:
/// `file:line:column: message`.
///
/// # Panics
/// When `text` deserializes.
pub fn refusal<S: DeserializeOwned>(text: &str) -> String {
    let Err(e) = toml::from_str::<Doc<S>>(text) else {
        panic!("the text deserializes");
    };
    let mut v = Validator::new(CONFIG, text, "/etc/rekey");
    match e.span() {
        Some(span) => v.problem(span, e.message()),
        None => v.problem_in_file(e.message()),
    }
    v.problems()[0].clone()
}

#[derive(serde::Deserialize)]
#[serde(bound = "S: DeserializeOwned")]
struct Doc<S> {
    stores: BTreeMap<String, S>,
}
