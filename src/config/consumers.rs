//! `[[credentials.NAME.consumers]]`: who uses a credential's key and how each is told.

use rekey_api::SecretSource;
use rekey_api::config::{Spanned, Validator, text};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// One `[[credentials.NAME.consumers]]` entry: something that uses the credential's key and is
/// told about (or handed) each new generation.
#[derive(Debug)]
pub struct ConsumerConfig {
    /// Its name, unique within the credential.
    pub name: String,
    /// How it learns about a new key, and how its adoption is checked.
    pub kind: ConsumerKindSettings,
    /// How long it may take to report the new fingerprint after `activate`.
    pub adopt_timeout: Duration,
    /// `file:line:column` of its entry, for errors found at run time (a missing variable).
    pub origin: String,
}

/// A consumer's kind and settings; secrets are read when the consumer is built, never stored
/// here.
#[derive(Debug)]
pub enum ConsumerKindSettings {
    /// Reads CURRENT from the store itself; nothing is pushed to it.
    Store {
        /// Where it reports the fingerprint it uses (`{"fingerprint": "<hex>"}`), if it does.
        status_url: Option<String>,
    },
    /// Receives signed `prepare` and `activate` POSTs.
    Webhook {
        /// Where to POST.
        url: String,
        /// Where the HMAC-SHA256 signing secret comes from.
        secret: SecretSource,
        /// Where it reports the fingerprint it uses; without it, adoption is the activate POST's
        /// 2xx.
        status_url: Option<String>,
    },
    /// A command run with `REKEY_*` variables; its exit status is the verdict.
    Exec {
        /// The program (absolute, or resolved against the config's folder; never looked up in
        /// `$PATH`) and its arguments.
        command: Vec<String>,
        /// How the key reaches it, if at all (never on the command line or in a variable).
        deliver_key: DeliverKey,
        /// How long one run may take.
        timeout: Duration,
    },
    /// Key and certificate PEMs written to files, for consumers that cannot read a store.
    File {
        /// Where the private key goes (0600).
        key_path: PathBuf,
        /// Where the certificate goes (0644).
        cert_path: PathBuf,
    },
}

/// How an `exec` consumer receives the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliverKey {
    /// Not at all: it reads the store (`REKEY_READ_FROM` says where).
    None,
    /// In a 0600 temporary file named by `REKEY_KEY_FILE`, removed after the run.
    File,
    /// As PEM on its standard input.
    Stdin,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConsumer {
    pub(super) name: Spanned<String>,
    pub(super) kind: Spanned<String>,
    pub(super) url: Option<Spanned<String>>,
    pub(super) secret_env: Option<Spanned<String>>,
    pub(super) secret_file: Option<Spanned<String>>,
    pub(super) status_url: Option<Spanned<String>>,
    pub(super) adopt_timeout_secs: Option<Spanned<i64>>,
    pub(super) command: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) deliver_key: Option<Spanned<String>>,
    pub(super) timeout_secs: Option<Spanned<i64>>,
    pub(super) key_path: Option<Spanned<String>>,
    pub(super) cert_path: Option<Spanned<String>>,
}

impl RawConsumer {
    /// Every optional key that is set, with where it is.
    fn present(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        let s = |v: &Option<Spanned<String>>| v.as_ref().map(Spanned::span);
        let n = |v: &Option<Spanned<i64>>| v.as_ref().map(Spanned::span);
        [
            ("url", s(&self.url)),
            ("secret_env", s(&self.secret_env)),
            ("secret_file", s(&self.secret_file)),
            ("status_url", s(&self.status_url)),
            ("adopt_timeout_secs", n(&self.adopt_timeout_secs)),
            ("command", self.command.as_ref().map(Spanned::span)),
            ("deliver_key", s(&self.deliver_key)),
            ("timeout_secs", n(&self.timeout_secs)),
            ("key_path", s(&self.key_path)),
            ("cert_path", s(&self.cert_path)),
        ]
        .into_iter()
        .filter_map(|(key, span)| span.map(|span| (key, span)))
        .collect()
    }
}

/// The keys each consumer kind accepts besides `name` and `kind`.
pub(super) fn consumer_keys(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "store" => &["status_url", "adopt_timeout_secs"],
        "webhook" => &[
            "url",
            "secret_env",
            "secret_file",
            "status_url",
            "adopt_timeout_secs",
        ],
        "exec" => &["command", "deliver_key", "timeout_secs"],
        "file" => &["key_path", "cert_path"],
        _ => return None,
    })
}

/// A credential's `[[credentials.NAME.consumers]]`: names unique and plain, each kind's required
/// keys present, keys of other kinds named, URLs https (except loopback), paths resolved against
/// the config's folder.
pub(super) fn validate_consumers(
    credential: &str,
    raw: &[Spanned<RawConsumer>],
    v: &mut Validator,
) -> Vec<ConsumerConfig> {
    let mut out = Vec::new();
    for (i, spanned) in raw.iter().enumerate() {
        let c = spanned.get_ref();
        let name = c.name.get_ref();
        let section = format!("credentials.{credential}.consumers '{name}'");
        let before = v.problems().len();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            v.problem(
                c.name.span(),
                format!("consumer name '{name}' must be letters, digits, '-', '_' or '.'"),
            );
        }
        if raw[..i].iter().any(|o| o.get_ref().name.get_ref() == name) {
            v.problem(
                c.name.span(),
                format!("consumer '{name}' is listed twice for credential '{credential}'; names must be unique"),
            );
        }
        let kind = c.kind.get_ref().as_str();
        let Some(allowed) = consumer_keys(kind) else {
            v.problem(
                c.kind.span(),
                format!("unknown consumer kind '{kind}'; use \"store\", \"webhook\", \"exec\" or \"file\""),
            );
            continue;
        };
        for (key, span) in c.present() {
            if !allowed.contains(&key) {
                v.problem(span, format!("{section}: '{key}' does not apply to {kind}"));
            }
        }
        if let Some(url) = &c.url {
            v.endpoint(url, "url", &section);
        }
        if let Some(url) = &c.status_url {
            v.endpoint(url, "status_url", &section);
        }
        let adopt_timeout =
            v.positive(&c.adopt_timeout_secs, 300, 1..=86_400, "adopt_timeout_secs");
        if kind == "store"
            && c.status_url.is_none()
            && let Some(t) = &c.adopt_timeout_secs
        {
            v.problem(
                t.span(),
                format!("{section}: adopt_timeout_secs needs status_url (without it a store consumer has nothing to wait for)"),
            );
        }
        let status_url = text(&c.status_url);
        let require =
            |v: &mut Validator, value: &Option<Spanned<String>>, key: &str, example: &str| {
                if value.is_none() {
                    v.problem(
                        spanned.span(),
                        format!("{section}: kind = \"{kind}\" needs {key} = {example}"),
                    );
                }
                text(value)
            };
        let settings = match kind {
            "store" => Some(ConsumerKindSettings::Store { status_url }),
            "webhook" => {
                let url = require(v, &c.url, "url", "\"https://…\"");
                let secret = v.secret_source(
                    &c.secret_env,
                    &c.secret_file,
                    "secret",
                    spanned.span(),
                    &section,
                );
                match (url, secret) {
                    (Some(url), Some(secret)) => Some(ConsumerKindSettings::Webhook {
                        url,
                        secret,
                        status_url,
                    }),
                    _ => None,
                }
            }
            "exec" => {
                let command = match &c.command {
                    None => {
                        v.problem(spanned.span(), format!("{section}: kind = \"exec\" needs command = [\"/path/to/program\", \"arg\", …]"));
                        None
                    }
                    Some(list) => match list.get_ref().first() {
                        None => {
                            v.problem(
                                list.span(),
                                format!("{section}: command must name a program"),
                            );
                            None
                        }
                        Some(program) if program.get_ref().trim().is_empty() => {
                            v.problem(
                                program.span(),
                                format!("{section}: command's program is empty"),
                            );
                            None
                        }
                        Some(program) => {
                            let program = v.path(program.get_ref()).display().to_string();
                            Some(
                                std::iter::once(program)
                                    .chain(list.get_ref()[1..].iter().map(|a| a.get_ref().clone()))
                                    .collect(),
                            )
                        }
                    },
                };
                let deliver_key = match c.deliver_key.as_ref() {
                    None => DeliverKey::None,
                    Some(deliver) => match deliver.get_ref().as_str() {
                        "none" => DeliverKey::None,
                        "file" => DeliverKey::File,
                        "stdin" => DeliverKey::Stdin,
                        other => {
                            v.problem(
                                deliver.span(),
                                format!("unknown deliver_key '{other}'; use \"none\", \"file\" or \"stdin\" (never the command line)"),
                            );
                            DeliverKey::None
                        }
                    },
                };
                let timeout = v.positive(&c.timeout_secs, 60, 1..=3600, "timeout_secs");
                command.map(|command| ConsumerKindSettings::Exec {
                    command,
                    deliver_key,
                    timeout: Duration::from_secs(timeout as u64),
                })
            }
            _ => {
                let key_path = require(v, &c.key_path, "key_path", "\"PATH\"");
                let cert_path = require(v, &c.cert_path, "cert_path", "\"PATH\"");
                match (key_path, cert_path) {
                    (Some(key), Some(cert)) => {
                        let (key_path, cert_path) = (v.path(&key), v.path(&cert));
                        if key_path == cert_path {
                            v.problem(
                                spanned.span(),
                                format!("{section}: key_path and cert_path are the same file"),
                            );
                        }
                        Some(ConsumerKindSettings::File {
                            key_path,
                            cert_path,
                        })
                    }
                    _ => None,
                }
            }
        };
        if let (Some(kind), true) = (settings, v.problems().len() == before) {
            out.push(ConsumerConfig {
                name: name.clone(),
                kind,
                adopt_timeout: Duration::from_secs(adopt_timeout as u64),
                origin: v.at(spanned.span()),
            });
        }
    }
    out
}
