//! The file store's `[stores.NAME]` table in `rekey.toml`, as written and as validated.

use crate::FileStore;
use rekey_api::config::{Spanned, Validator};
use serde::Deserialize;
use std::path::PathBuf;

/// A `[stores.NAME]` table of `kind = "file"`, as written. Keys of other store kinds are
/// refused by serde, naming the key and the ones that apply.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    /// `"file"`.
    pub kind: Spanned<String>,
    /// The store's root folder, relative to the config's folder unless absolute.
    pub path: Option<Spanned<String>>,
    /// Retired generations kept besides CURRENT, PENDING and PREVIOUS (default 1, 0..=1000).
    pub keep_generations: Option<Spanned<i64>>,
}

/// A validated file store: where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileConfig {
    /// Its root folder, resolved against the config's folder.
    pub path: PathBuf,
    /// Retired generations kept besides CURRENT, PENDING and PREVIOUS; older ones are destroyed
    /// when a rotation finishes.
    pub keep_generations: usize,
}

impl FileSettings {
    /// Checks the settings of store `name`, recording every problem in `v`; `None` when they
    /// cannot make a store.
    pub fn validate(self, name: &str, v: &mut Validator) -> Option<FileConfig> {
        let section = format!("stores.{name}");
        if !v.expect_kind(&self.kind, "file", &section) {
            return None;
        }
        let keep_generations = v.positive(
            &self.keep_generations,
            crate::DEFAULT_KEEP_GENERATIONS as i64,
            0..=1000,
            "keep_generations",
        );
        let Some(path) = self.path else {
            v.problem(
                self.kind.span(),
                format!("{section}: kind = \"file\" needs path = \"DIR\""),
            );
            return None;
        };
        Some(FileConfig {
            path: v.path(path.get_ref()),
            keep_generations: keep_generations as usize,
        })
    }
}

impl FileStore {
    /// The store a validated config describes. Nothing is created until the first write.
    pub fn from_config(config: &FileConfig) -> FileStore {
        FileStore::new(&config.path).keeping(config.keep_generations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(text: &str) -> (Option<FileConfig>, Vec<String>) {
        rekey_testkit::settings::validate_store(text, "local", FileSettings::validate)
    }

    #[test]
    fn a_relative_path_is_the_config_folders_and_a_missing_one_is_named() {
        let (config, problems) = validate("[stores.local]\nkind = \"file\"\npath = \"keys\"\n");
        assert_eq!(problems, Vec::<String>::new());
        let config = config.unwrap();
        assert_eq!(
            config.path,
            PathBuf::from("/etc/rekey/keys"),
            "relative to the config's folder"
        );
        assert_eq!(config.keep_generations, 1, "the default");
        let (config, _) = validate("[stores.local]\nkind = \"file\"\npath = \"/srv/keys\"\n");
        assert_eq!(config.unwrap().path, PathBuf::from("/srv/keys"));
        assert_eq!(
            FileStore::from_config(&FileConfig {
                path: "/srv/keys".into(),
                keep_generations: 1,
            })
            .to_string(),
            "file(/srv/keys)"
        );

        let (config, problems) = validate("[stores.local]\nkind = \"file\"\n");
        assert_eq!(config, None);
        assert_eq!(
            problems,
            ["/etc/rekey/rekey.toml:2:8: stores.local: kind = \"file\" needs path = \"DIR\""]
        );
    }

    #[test]
    fn keys_of_other_store_kinds_are_refused_by_name() {
        let refusal = rekey_testkit::settings::refusal::<FileSettings>(
            "[stores.local]\nkind = \"file\"\npath = \"keys\"\naddress = \"https://v\"\n",
        );
        assert_eq!(
            refusal,
            "/etc/rekey/rekey.toml:4:1: unknown field `address`, expected one of `kind`, `path`, `keep_generations`"
        );
    }

    #[test]
    fn keep_generations_is_a_small_whole_number() {
        let (config, problems) =
            validate("[stores.local]\nkind = \"file\"\npath = \"keys\"\nkeep_generations = 0\n");
        assert_eq!(problems, Vec::<String>::new());
        assert_eq!(config.unwrap().keep_generations, 0);
        let (_, problems) =
            validate("[stores.local]\nkind = \"file\"\npath = \"keys\"\nkeep_generations = -1\n");
        assert_eq!(
            problems,
            ["/etc/rekey/rekey.toml:4:20: keep_generations = -1 is out of range; use 0..=1000"]
        );
    }
}
