//! Validating a provider's settings where they are written: every problem with the config file's
//! `file:line:column`, all collected before failing, so one run shows every mistake.
//!
//! A provider deserializes its `[stores.NAME]` table with serde into a type whose fields are
//! [`Spanned`] (the spans `toml` records), then validates it against a [`Validator`], which turns
//! spans into positions, resolves relative paths against the config's folder and offers the
//! checks every section shares. Nothing here reads a secret, the network or the environment.

use crate::{Endpoint, Error, ErrorKind, Result, SecretSource};
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};

/// A value with the byte range of the config text it was read from (the type `toml::Spanned` is).
pub use serde_spanned::Spanned;

/// The text of an optional setting, owned.
pub fn text(value: &Option<Spanned<String>>) -> Option<String> {
    value.as_ref().map(|v| v.get_ref().clone())
}

/// The span of an optional setting, for [`Validator::does_not_apply`].
pub fn span<T>(value: &Option<Spanned<T>>) -> Option<Range<usize>> {
    value.as_ref().map(Spanned::span)
}

/// Collects the problems of one config file while its sections are validated.
#[derive(Debug)]
pub struct Validator<'t> {
    file: String,
    text: &'t str,
    folder: PathBuf,
    problems: Vec<String>,
}

impl<'t> Validator<'t> {
    /// A validator for `text`, read from `file` (as messages name it), whose relative paths
    /// resolve against `folder` (the config file's folder).
    pub fn new(file: impl Into<String>, text: &'t str, folder: impl Into<PathBuf>) -> Self {
        Validator {
            file: file.into(),
            text,
            folder: folder.into(),
            problems: Vec::new(),
        }
    }

    /// `file:line:column` of the byte offset where `span` starts (both 1-based, the column in
    /// bytes).
    pub fn at(&self, span: Range<usize>) -> String {
        let mut start = span.start.min(self.text.len());
        while !self.text.is_char_boundary(start) {
            start -= 1;
        }
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        format!("{}:{line}:{column}", self.file)
    }

    /// Records a problem at `span`: `file:line:column: message`.
    pub fn problem(&mut self, span: Range<usize>, message: impl AsRef<str>) {
        let at = self.at(span);
        self.problems.push(format!("{at}: {}", message.as_ref()));
    }

    /// Records a problem that has no position in the file: `file: message`.
    pub fn problem_in_file(&mut self, message: impl AsRef<str>) {
        self.problems
            .push(format!("{}: {}", self.file, message.as_ref()));
    }

    /// Every problem so far, in the order found.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// `Ok` when nothing was found, else one `Config` error listing every problem, a line each.
    pub fn finish(self) -> Result<()> {
        if self.problems.is_empty() {
            return Ok(());
        }
        Err(Error::new(ErrorKind::Config, self.problems.join("\n"))
            .with_hint("fix the lines above; rekey.example.toml shows every key with its default"))
    }

    /// `relative` resolved against the config's folder (an absolute path stays as it is).
    pub fn path(&self, relative: &str) -> PathBuf {
        self.folder.join(relative)
    }

    /// The config's folder.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// `result`'s value, or `None` with its error's message recorded at `span` (the hint is
    /// left out: the message says what is wrong with the setting).
    pub fn check<T>(&mut self, span: Range<usize>, result: Result<T>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                self.problem(span, e.message());
                None
            }
        }
    }

    /// A whole number setting within `range`, or `default` when it is not set; out of range it
    /// is a problem (`field = 0 is out of range; use 1..=3650`) and `default` stands in, so
    /// validation goes on.
    pub fn positive(
        &mut self,
        value: &Option<Spanned<i64>>,
        default: i64,
        range: RangeInclusive<i64>,
        field: &str,
    ) -> i64 {
        match value {
            Some(v) if !range.contains(v.get_ref()) => {
                self.problem(
                    v.span(),
                    format!(
                        "{field} = {} is out of range; use {}..={}",
                        v.get_ref(),
                        range.start(),
                        range.end()
                    ),
                );
                default
            }
            Some(v) => *v.get_ref(),
            None => default,
        }
    }

    /// [`crate::endpoint`] on a setting: https, or plain http only for loopback hosts. A problem
    /// names `label` and `what`, never the URL.
    pub fn endpoint(
        &mut self,
        value: &Spanned<String>,
        what: &str,
        label: &str,
    ) -> Option<Endpoint> {
        self.check(value.span(), crate::endpoint(value.get_ref(), what, label))
    }

    /// Where a secret comes from, set as exactly one of `<key>_env` or `<key>_file` in `section`
    /// (whose table is at `at`); a file resolves against the config's folder.
    pub fn secret_source(
        &mut self,
        env: &Option<Spanned<String>>,
        file: &Option<Spanned<String>>,
        key: &str,
        at: Range<usize>,
        section: &str,
    ) -> Option<SecretSource> {
        match (env, file) {
            (Some(var), None) => Some(SecretSource::Env(var.get_ref().clone())),
            (None, Some(path)) => Some(SecretSource::File(self.path(path.get_ref()))),
            _ => {
                self.problem(
                    at,
                    format!(
                        "{section}: set exactly one of {key}_env = \"VARIABLE\" or {key}_file = \"PATH\" (secrets are never written into rekey.toml)"
                    ),
                );
                None
            }
        }
    }

    /// Reports each of `keys` that is set (`Some` span) as not applying to `kind` in `section`,
    /// instead of ignoring it: `section: 'jwt_path' does not apply to approle auth`.
    pub fn does_not_apply(
        &mut self,
        section: &str,
        kind: &str,
        keys: &[(&str, Option<Range<usize>>)],
    ) {
        for (key, span) in keys {
            if let Some(span) = span {
                self.problem(
                    span.clone(),
                    format!("{section}: '{key}' does not apply to {kind}"),
                );
            }
        }
    }

    /// Whether `kind` is `expected`; otherwise a problem (these settings were handed to the
    /// wrong provider).
    pub fn expect_kind(&mut self, kind: &Spanned<String>, expected: &str, section: &str) -> bool {
        if kind.get_ref() == expected {
            return true;
        }
        self.problem(
            kind.span(),
            format!(
                "{section}: kind = \"{}\" where \"{expected}\" was expected",
                kind.get_ref()
            ),
        );
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_carry_file_line_and_column() {
        let text = "[stores.a]\nkind = \"vault\"\nmax_versions = 1\n";
        let mut v = Validator::new("/etc/rekey/rekey.toml", text, "/etc/rekey");
        let at = |needle: &str| {
            let start = text.find(needle).unwrap();
            start..start + needle.len()
        };
        assert_eq!(v.at(0..1), "/etc/rekey/rekey.toml:1:1");
        assert_eq!(v.at(at("\"vault\"")), "/etc/rekey/rekey.toml:2:8");
        assert_eq!(v.at(usize::MAX..usize::MAX), "/etc/rekey/rekey.toml:4:1");
        let one = Some(Spanned::new(at("1\n").start..at("1\n").start + 1, 1));
        assert_eq!(v.positive(&one, 10, 2..=1000, "max_versions"), 10);
        assert_eq!(v.positive(&None, 10, 2..=1000, "max_versions"), 10);
        let kind = Spanned::new(at("\"vault\""), "vault".to_string());
        assert!(v.expect_kind(&kind, "vault", "stores.a"));
        assert!(!v.expect_kind(&kind, "aws", "stores.a"));
        v.problem_in_file("expected a table");
        assert_eq!(
            v.problems(),
            [
                "/etc/rekey/rekey.toml:3:16: max_versions = 1 is out of range; use 2..=1000",
                "/etc/rekey/rekey.toml:2:8: stores.a: kind = \"vault\" where \"aws\" was expected",
                "/etc/rekey/rekey.toml: expected a table",
            ]
        );
        let err = v.finish().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert_eq!(err.to_string().lines().count(), 3);
        assert!(Validator::new("r.toml", "", ".").finish().is_ok());
        // A span inside a multi-byte character still has a position.
        assert_eq!(Validator::new("r.toml", "é", ".").at(1..2), "r.toml:1:1");
    }

    #[test]
    fn shared_checks_word_their_problems_like_the_rest_of_the_config() {
        let doc = "0123456789";
        let s = |range: Range<usize>, value: &str| Some(Spanned::new(range, value.to_string()));
        let mut v = Validator::new("rekey.toml", doc, "/etc/rekey");
        let url = s(2..3, "http://hooks.example/T0/SECRET").unwrap();
        assert!(v.endpoint(&url, "url", "alerts.channels.ops").is_none());
        let ok = s(2..3, "http://127.0.0.1:9/x").unwrap();
        assert_eq!(
            v.endpoint(&ok, "url", "alerts.channels.ops").unwrap().host,
            "127.0.0.1"
        );
        assert_eq!(
            v.secret_source(&s(1..2, "SID"), &None, "secret_id", 0..1, "stores.v.auth"),
            Some(SecretSource::Env("SID".into()))
        );
        assert_eq!(
            v.secret_source(&None, &s(1..2, "sid"), "secret_id", 0..1, "stores.v.auth"),
            Some(SecretSource::File(PathBuf::from("/etc/rekey/sid")))
        );
        assert_eq!(
            v.secret_source(
                &s(1..2, "SID"),
                &s(1..2, "f"),
                "secret_id",
                4..5,
                "stores.v.auth"
            ),
            None
        );
        assert_eq!(v.secret_source(&None, &None, "secret", 5..6, "[x]"), None);
        v.does_not_apply(
            "stores.v",
            "token auth",
            &[("role", Some(7..8)), ("mount", None)],
        );
        assert_eq!(
            v.problems(),
            [
                "rekey.toml:1:3: alerts.channels.ops: url must use https (plain http is allowed only for loopback hosts)",
                "rekey.toml:1:5: stores.v.auth: set exactly one of secret_id_env = \"VARIABLE\" or secret_id_file = \"PATH\" (secrets are never written into rekey.toml)",
                "rekey.toml:1:6: [x]: set exactly one of secret_env = \"VARIABLE\" or secret_file = \"PATH\" (secrets are never written into rekey.toml)",
                "rekey.toml:1:8: stores.v: 'role' does not apply to token auth",
            ]
        );
        assert!(!format!("{:?}", v.problems()).contains("SECRET"));
        assert_eq!(text(&s(0..1, "x")), Some("x".to_string()));
        assert_eq!(span(&s(3..4, "x")), Some(3..4));
    }
}
