//! `[[credentials.NAME.consumers]]`: who uses a credential's key and how each is told.

use super::tables::{Kind, only_keys_of, read};
use rekey_api::config::{Spanned, Validator, text};
use rekey_api::{CredentialKind, CustodyService, SecretSource};
use serde::Deserialize;
use serde::de::IgnoredAny;
use std::path::PathBuf;
use std::time::Duration;
use toml::de::DeValue;

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
    /// Key and certificate PEMs written to files, for consumers that cannot read a store (for a
    /// consumer secret: the key and secret as JSON in `key_path`).
    File {
        /// Where the private key (or the consumer key and secret) goes (0600).
        key_path: PathBuf,
        /// Where the certificate goes (0644); `None` for a consumer secret, which has none.
        cert_path: Option<PathBuf>,
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

/// A `store` consumer's entry as written (each kind's entry is its own type, so the keys that
/// apply to a kind are those of its type).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StoreEntry {
    #[serde(rename = "name")]
    _name: IgnoredAny,
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    status_url: Option<Spanned<String>>,
    adopt_timeout_secs: Option<Spanned<i64>>,
}

/// A `webhook` consumer's entry as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WebhookEntry {
    #[serde(rename = "name")]
    _name: IgnoredAny,
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    url: Option<Spanned<String>>,
    secret_env: Option<Spanned<String>>,
    secret_file: Option<Spanned<String>>,
    status_url: Option<Spanned<String>>,
    adopt_timeout_secs: Option<Spanned<i64>>,
}

/// An `exec` consumer's entry as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExecEntry {
    #[serde(rename = "name")]
    _name: IgnoredAny,
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    command: Option<Spanned<Vec<Spanned<String>>>>,
    deliver_key: Option<Spanned<String>>,
    timeout_secs: Option<Spanned<i64>>,
}

/// A `file` consumer's entry as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileEntry {
    #[serde(rename = "name")]
    _name: IgnoredAny,
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    key_path: Option<Spanned<String>>,
    cert_path: Option<Spanned<String>>,
}

/// How long a consumer may take to adopt a new key when its entry does not say.
const ADOPT_TIMEOUT_SECS: i64 = 300;

/// A credential's `[[credentials.NAME.consumers]]` entries: names unique and plain, each kind's
/// entry read by its own type (keys of other kinds named where they are), required keys present,
/// URLs https (except loopback), paths resolved against the config's folder.
pub(super) fn validate_consumers(
    credential: &str,
    material: CredentialKind,
    custody: Option<(&str, CustodyService)>,
    entries: Vec<Spanned<DeValue<'_>>>,
    v: &mut Validator,
) -> Vec<ConsumerConfig> {
    let heads: Vec<Option<Kind>> = entries
        .iter()
        .map(|entry| read::<Kind>(entry.clone(), v))
        .collect();
    let mut out = Vec::new();
    for (i, entry) in entries.into_iter().enumerate() {
        let Some(head) = &heads[i] else {
            continue;
        };
        let at = entry.span();
        let Some(name) = &head.name else {
            v.problem(
                at,
                format!("credentials.{credential}.consumers: every consumer needs name = \"…\""),
            );
            continue;
        };
        let before = v.problems().len();
        check_name(credential, name, &heads[..i], v);
        let section = format!("credentials.{credential}.consumers '{}'", name.get_ref());
        let kind = head.kind.get_ref().as_str();
        let needs = Needs {
            at: at.clone(),
            section: &section,
            kind,
        };
        let read_as = |v: &mut Validator| only_keys_of_kind(entry, &section, kind, v);
        let settings = match kind {
            "store" => read_as(v)
                .and_then(|e| read::<StoreEntry>(e, v))
                .map(|e| store(e, &needs, v)),
            "webhook" => read_as(v)
                .and_then(|e| read::<WebhookEntry>(e, v))
                .map(|e| webhook(e, &needs, v)),
            "exec" => read_as(v)
                .and_then(|e| read::<ExecEntry>(e, v))
                .map(|e| exec(e, &needs, v)),
            "file" => read_as(v)
                .and_then(|e| read::<FileEntry>(e, v))
                .map(|e| file(e, &needs, material, v)),
            other => {
                v.problem(
                    head.kind.span(),
                    format!("unknown consumer kind '{other}'; use \"store\", \"webhook\", \"exec\" or \"file\""),
                );
                continue;
            }
        };
        if let (Some(Some((kind, _))), Some((store, service))) = (&settings, custody) {
            let needs_key = match kind {
                ConsumerKindSettings::File { .. } => {
                    Some("a file consumer writes the private key to a file")
                }
                ConsumerKindSettings::Exec { deliver_key, .. }
                    if *deliver_key != DeliverKey::None =>
                {
                    Some("an exec consumer with deliver_key is handed the private key")
                }
                _ => None,
            };
            if let Some(why) = needs_key {
                v.problem(
                    at.clone(),
                    format!(
                        "{section}: {why}, but the keys of '{credential}' are in custody (store '{store}', kind = \"{service}\") and keys in custody are never handed out; let this consumer get tokens instead from `rekey agent` (a Unix socket or loopback HTTP) or `rekey token {credential}`, which sign through the service, and declare it as kind = \"store\" (with its status_url) or as an exec consumer with deliver_key = \"none\""
                    ),
                );
            }
        }
        if let (Some(Some((kind, adopt_timeout))), true) = (settings, v.problems().len() == before)
        {
            out.push(ConsumerConfig {
                name: name.get_ref().clone(),
                kind,
                adopt_timeout: Duration::from_secs(adopt_timeout as u64),
                origin: v.at(at),
            });
        }
    }
    out
}

/// The entry without the keys its kind's type does not have (each reported).
fn only_keys_of_kind<'de>(
    entry: Spanned<DeValue<'de>>,
    section: &str,
    kind: &str,
    v: &mut Validator,
) -> Option<Spanned<DeValue<'de>>> {
    Some(match kind {
        "store" => only_keys_of::<StoreEntry>(entry, section, kind, v),
        "webhook" => only_keys_of::<WebhookEntry>(entry, section, kind, v),
        "exec" => only_keys_of::<ExecEntry>(entry, section, kind, v),
        "file" => only_keys_of::<FileEntry>(entry, section, kind, v),
        _ => return None,
    })
}

/// A name plain enough for messages, logs and file names, and unique within the credential.
fn check_name(
    credential: &str,
    name: &Spanned<String>,
    earlier: &[Option<Kind>],
    v: &mut Validator,
) {
    let text = name.get_ref();
    if text.is_empty()
        || !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        v.problem(
            name.span(),
            format!("consumer name '{text}' must be letters, digits, '-', '_' or '.'"),
        );
    }
    let taken = earlier
        .iter()
        .flatten()
        .any(|h| h.name.as_ref().is_some_and(|n| n.get_ref() == text));
    if taken {
        v.problem(
            name.span(),
            format!("consumer '{text}' is listed twice for credential '{credential}'; names must be unique"),
        );
    }
}

/// Where an entry is and what it is, for the problems of its required keys.
struct Needs<'a> {
    at: std::ops::Range<usize>,
    section: &'a str,
    kind: &'a str,
}

impl Needs<'_> {
    /// `value`, or a problem naming the key and an example of it.
    fn require(
        &self,
        v: &mut Validator,
        value: &Option<Spanned<String>>,
        key: &str,
        example: &str,
    ) -> Option<String> {
        if value.is_none() {
            v.problem(
                self.at.clone(),
                format!(
                    "{}: kind = \"{}\" needs {key} = {example}",
                    self.section, self.kind
                ),
            );
        }
        text(value)
    }
}

/// A kind's settings and its adoption deadline in seconds, or `None` when the entry cannot make
/// a consumer (its problems recorded).
type Settings = Option<(ConsumerKindSettings, i64)>;

fn adopt_timeout(value: &Option<Spanned<i64>>, v: &mut Validator) -> i64 {
    v.positive(value, ADOPT_TIMEOUT_SECS, 1..=86_400, "adopt_timeout_secs")
}

fn status_url(
    value: &Option<Spanned<String>>,
    needs: &Needs<'_>,
    v: &mut Validator,
) -> Option<String> {
    if let Some(url) = value {
        v.endpoint(url, "status_url", needs.section);
    }
    text(value)
}

fn store(e: StoreEntry, needs: &Needs<'_>, v: &mut Validator) -> Settings {
    let status_url = status_url(&e.status_url, needs, v);
    if status_url.is_none()
        && let Some(t) = &e.adopt_timeout_secs
    {
        v.problem(
            t.span(),
            format!("{}: adopt_timeout_secs needs status_url (without it a store consumer has nothing to wait for)", needs.section),
        );
    }
    let adopt = adopt_timeout(&e.adopt_timeout_secs, v);
    Some((ConsumerKindSettings::Store { status_url }, adopt))
}

fn webhook(e: WebhookEntry, needs: &Needs<'_>, v: &mut Validator) -> Settings {
    if let Some(url) = &e.url {
        v.endpoint(url, "url", needs.section);
    }
    let status_url = status_url(&e.status_url, needs, v);
    let adopt = adopt_timeout(&e.adopt_timeout_secs, v);
    let url = needs.require(v, &e.url, "url", "\"https://…\"");
    let secret = v.secret_source(
        &e.secret_env,
        &e.secret_file,
        "secret",
        needs.at.clone(),
        needs.section,
    );
    Some((
        ConsumerKindSettings::Webhook {
            url: url?,
            secret: secret?,
            status_url,
        },
        adopt,
    ))
}

fn exec(e: ExecEntry, needs: &Needs<'_>, v: &mut Validator) -> Settings {
    let section = needs.section;
    let command = match &e.command {
        None => {
            v.problem(
                needs.at.clone(),
                format!(
                    "{section}: kind = \"exec\" needs command = [\"/path/to/program\", \"arg\", …]"
                ),
            );
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
    let deliver_key = match e.deliver_key.as_ref() {
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
    let timeout = v.positive(&e.timeout_secs, 60, 1..=3600, "timeout_secs");
    Some((
        ConsumerKindSettings::Exec {
            command: command?,
            deliver_key,
            timeout: Duration::from_secs(timeout as u64),
        },
        ADOPT_TIMEOUT_SECS,
    ))
}

fn file(e: FileEntry, needs: &Needs<'_>, material: CredentialKind, v: &mut Validator) -> Settings {
    let key_path = needs.require(v, &e.key_path, "key_path", "\"PATH\"");
    if material == CredentialKind::ConsumerSecret {
        if let Some(cert) = &e.cert_path {
            v.problem(
                cert.span(),
                format!(
                    "{}: a consumer secret has no certificate; remove cert_path (key_path gets the consumer key and secret as JSON)",
                    needs.section
                ),
            );
        }
        return Some((
            ConsumerKindSettings::File {
                key_path: v.path(&key_path?),
                cert_path: None,
            },
            ADOPT_TIMEOUT_SECS,
        ));
    }
    let cert_path = needs.require(v, &e.cert_path, "cert_path", "\"PATH\"");
    let (key_path, cert_path) = (v.path(&key_path?), v.path(&cert_path?));
    if key_path == cert_path {
        v.problem(
            needs.at.clone(),
            format!(
                "{}: key_path and cert_path are the same file",
                needs.section
            ),
        );
    }
    Some((
        ConsumerKindSettings::File {
            key_path,
            cert_path: Some(cert_path),
        },
        ADOPT_TIMEOUT_SECS,
    ))
}
