//! Where secret settings come from: the environment or a file, never the config file itself.

use crate::{Error, ErrorKind, Result, SecretString};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

/// The environment variables a provider may read. Only the binary reads the process's own
/// environment (it implements this over `std::env::var`); providers take it as a parameter, so
/// tests hand them a map instead of changing the process's environment.
pub trait Env {
    /// The variable `name`, `None` when it is unset (or not valid Unicode).
    fn var(&self, name: &str) -> Option<String>;
}

impl Env for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// Where a secret setting is read from at run time, as the config's `<key>_env` or `<key>_file`
/// said (a secret is never written into the config itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable.
    Env(String),
    /// A file's contents.
    File(PathBuf),
}

impl SecretSource {
    /// Reads the secret: `what` it is (`webhook signing secret`), `key` its setting without the
    /// `_env`/`_file` suffix (`secret`), `owner` what it belongs to for messages
    /// (`rekey.toml:12:1: alerts channel 'ops'`), `section` where the setting lives
    /// (`[alerts.channels.ops]`).
    ///
    /// # Behavior
    /// - A variable that is empty counts as unset.
    /// - A file's one trailing newline (`\n` or `\r\n`) is not part of the secret; a file that is
    ///   empty or only whitespace is refused.
    ///
    /// # Errors
    /// `Config`, starting with `owner` and naming the variable or the file, never the value, with
    /// a hint: export the variable or use the `_file` form in `section` instead, or make the file
    /// readable, or write the secret into it.
    pub fn read(
        &self,
        env: &dyn Env,
        owner: &str,
        what: &str,
        key: &str,
        section: &str,
    ) -> Result<SecretString> {
        match self {
            SecretSource::Env(var) => match env.var(var) {
                Some(value) if !value.is_empty() => Ok(SecretString::new(value)),
                _ => Err(Error::new(
                    ErrorKind::Config,
                    format!("{owner}: the {what} variable {var} is not set"),
                )
                .with_hint(format!(
                    "export {var} with the {what}, or set {key}_file = \"PATH\" in {section} instead"
                ))),
            },
            SecretSource::File(path) => {
                let mut text = std::fs::read_to_string(path).map_err(|e| {
                    Error::new(
                        ErrorKind::Config,
                        format!("{owner}: cannot read the {what} file {}", path.display()),
                    )
                    .with_source(e)
                    .with_hint(
                        "check that the file exists and is readable by the user rekey runs as",
                    )
                })?;
                // Cut in place and moved, not copied, into the SecretString, so no second plain
                // copy is left behind.
                let len = text
                    .strip_suffix('\n')
                    .map_or(text.len(), |t| t.strip_suffix('\r').unwrap_or(t).len());
                text.truncate(len);
                let secret = SecretString::new(text);
                if secret.is_blank() {
                    return Err(Error::new(
                        ErrorKind::Config,
                        format!("{owner}: the {what} file {} is empty", path.display()),
                    )
                    .with_hint(format!("write the {what} into it")));
                }
                Ok(secret)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(source: &SecretSource, env: &dyn Env) -> Result<SecretString> {
        source.read(
            env,
            "rekey.toml:3:1: alerts channel 'ops'",
            "webhook signing secret",
            "secret",
            "[alerts.channels.ops]",
        )
    }

    #[test]
    fn a_variable_is_read_and_an_empty_one_counts_as_unset() {
        let env: BTreeMap<String, String> = [
            ("HOOK".to_string(), " s3cr3t \n".to_string()),
            ("EMPTY".to_string(), String::new()),
        ]
        .into();
        let secret = read(&SecretSource::Env("HOOK".into()), &env).unwrap();
        assert_eq!(
            secret.expose_secret(),
            " s3cr3t \n",
            "a variable is taken as it is"
        );
        for var in ["EMPTY", "UNSET"] {
            let err = read(&SecretSource::Env(var.into()), &env).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config);
            assert_eq!(
                err.to_string(),
                format!(
                    "rekey.toml:3:1: alerts channel 'ops': the webhook signing secret variable {var} is not set"
                )
            );
            assert_eq!(
                err.hint(),
                Some(
                    format!(
                        "export {var} with the webhook signing secret, or set secret_file = \"PATH\" in [alerts.channels.ops] instead"
                    )
                    .as_str()
                )
            );
        }
        let by_closure = |name: &str| (name == "HOOK").then(|| "from a closure".to_string());
        let secret = read(&SecretSource::Env("HOOK".into()), &by_closure).unwrap();
        assert_eq!(secret.expose_secret(), "from a closure");
    }

    #[test]
    fn a_file_loses_one_trailing_newline_and_must_hold_something() {
        let dir = std::env::temp_dir().join(format!("rekey-api-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let env = BTreeMap::new();
        for (contents, expected) in [
            ("TOPSECRET\n", "TOPSECRET"),
            ("TOPSECRET\r\n", "TOPSECRET"),
            ("TOPSECRET\n\n", "TOPSECRET\n"),
            (" TOPSECRET ", " TOPSECRET "),
        ] {
            let path = dir.join("secret");
            std::fs::write(&path, contents).unwrap();
            let secret = read(&SecretSource::File(path), &env).unwrap();
            assert_eq!(secret.expose_secret(), expected, "{contents:?}");
        }
        let empty = dir.join("empty");
        std::fs::write(&empty, " \n").unwrap();
        let err = read(&SecretSource::File(empty.clone()), &env).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "rekey.toml:3:1: alerts channel 'ops': the webhook signing secret file {} is empty",
                empty.display()
            )
        );
        let missing = dir.join("missing");
        let err = read(&SecretSource::File(missing.clone()), &env).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(
            err.to_string().starts_with(&format!(
                "rekey.toml:3:1: alerts channel 'ops': cannot read the webhook signing secret file {}",
                missing.display()
            )),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
