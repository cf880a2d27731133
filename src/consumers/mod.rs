//! Consumers of a credential's key: who is told about (or handed) each new generation, and how
//! rekey learns that they adopted it. One file per kind, each behind the [`Consumer`] trait:
//!
//! - `store` ([`store`]): reads CURRENT from the store itself, so nothing is pushed; with
//!   `status_url` its adoption is polled like a webhook's, without it it counts as adopted at once.
//! - `webhook` ([`webhook`]): a signed JSON POST `prepare` before the certificate is published and
//!   `activate` right after promotion; adoption is polled from `status_url`
//!   (`{"fingerprint": "<hex>"}`), or is the activate POST's 2xx without one.
//! - `exec` ([`exec`]): a command run with `REKEY_*` variables and, when configured, the key in a
//!   0600 temporary file or on its standard input (never on the command line or in a variable);
//!   its exit status is the verdict, and adoption is the activate run's success.
//! - `file` ([`mod@file`]): the key (0600) and certificate (0644) PEMs written atomically; adoption is
//!   the files holding the new certificate and a key that belongs to it.
//!
//! The rotation calls [`Consumer::prepare`] for every consumer (bounded-parallel through
//! [`for_all`]) before it publishes, [`Consumer::activate`] right after it promotes, then
//! [`Consumer::adopted`] — one poll each — until each consumer's [`Consumer::adopt_timeout`].
//! Reverting a consumer is `activate` with the previous generation's announcement. What each kind
//! receives is written for integrators in this folder's README.md.

mod elide;
mod exec;
mod file;
mod http;
mod store;
#[cfg(test)]
mod testing;
mod webhook;

use crate::config::{ConsumerConfig, ConsumerKindSettings, CredentialConfig, OnAdoptionFailure};
use async_trait::async_trait;
use rekey_api::{Backoff, Env, Error, ErrorKind, Fingerprint, Generation, Material, Result, Stage};
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

/// What a consumer is told about a generation.
#[derive(Debug)]
pub struct Announcement<'a> {
    /// The credential's name.
    pub credential: &'a str,
    /// The generation announced.
    pub generation: Generation,
    /// Its certificate's SHA-256 fingerprint.
    pub new_fingerprint: Fingerprint,
    /// The certificate it replaces, if any.
    pub old_fingerprint: Option<Fingerprint>,
    /// [`Stage::Pending`] for `prepare`, [`Stage::Current`] for `activate` (the operations refuse
    /// anything else).
    pub stage: Stage,
    /// The key or consumer secret, for consumers that are handed it (`exec` with
    /// `deliver_key`, `file`).
    pub material: Option<&'a Material>,
    /// The certificate, PEM (public); `None` for a consumer secret.
    pub certificate_pem: Option<&'a str>,
    /// Where the consumer reads the key: the primary store, the credential and the stage, e.g.
    /// `file(/srv/rekey/keys) billing PENDING` for `prepare`, `… CURRENT` for `activate`. Sent
    /// as `read_from` and `REKEY_READ_FROM`.
    pub read_from: String,
}

/// One poll of a consumer's adoption.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Adoption {
    /// It uses the announced generation.
    Adopted {
        /// How that is known, for the journal.
        detail: String,
    },
    /// Not yet (or it could not be asked just now); ask again until the deadline.
    Waiting {
        /// What it reported, for the journal and the final error.
        detail: String,
    },
}

#[cfg(test)]
impl Adoption {
    /// Whether the consumer adopted the generation.
    pub fn is_adopted(&self) -> bool {
        matches!(self, Adoption::Adopted { .. })
    }

    /// The detail, either way.
    pub fn detail(&self) -> &str {
        match self {
            Adoption::Adopted { detail } | Adoption::Waiting { detail } => detail,
        }
    }
}

/// Who a consumer is, whatever its kind.
#[derive(Debug)]
pub struct Identity {
    /// Its name, unique within the credential.
    pub name: String,
    /// `file:line:column` of its `[[credentials.NAME.consumers]]` entry, for errors found at run
    /// time.
    pub origin: String,
    /// How long after `activate` it may take to adopt the new key.
    pub adopt_timeout: Duration,
}

/// Something that uses a credential's key and is told about (or handed) each new generation.
///
/// Every operation is idempotent for its [`Announcement`] (asked twice, it does the same, or
/// nothing the second time) and answers a one-line detail for the journal: names, generations,
/// fingerprints, hosts, paths and exit codes — never key bytes, secrets or a URL's path.
#[async_trait]
pub trait Consumer: fmt::Debug + Send + Sync {
    /// Its name, config origin and adoption deadline.
    fn identity(&self) -> &Identity;

    /// `store`, `webhook`, `exec` or `file`.
    fn kind(&self) -> &'static str;

    /// Before the certificate is published, with the PENDING generation.
    ///
    /// # Behavior
    /// - Refuses (an error) an announcement whose stage is not PENDING: a rekey bug.
    /// - Changes nothing the consumer serves from yet: it may fetch or stage the new key, never
    ///   switch to it.
    /// - An error is a refusal: the rotation stops before the switchover, while nothing changed
    ///   for anyone. A temporary error (unreachable, 5xx) is retried by the rotation.
    async fn prepare(&self, announcement: &Announcement<'_>) -> Result<String>;

    /// Right after promotion with the new CURRENT generation, or, when a rotation is undone, with
    /// the previous one again.
    ///
    /// # Behavior
    /// - Refuses an announcement whose stage is not CURRENT: a rekey bug.
    /// - After it succeeds, the consumer uses (or is about to use) the announced generation.
    /// - An error means the consumer will not adopt it: under `on_adoption_failure = "rollback"`
    ///   the rotation is undone.
    async fn activate(&self, announcement: &Announcement<'_>) -> Result<String>;

    /// One look at whether the consumer uses the announced generation; asked only after
    /// [`Consumer::activate`] succeeded for it, and again until [`Consumer::adopt_timeout`].
    ///
    /// # Behavior
    /// - `Waiting` while it cannot tell yet (a status URL unreachable or answering 5xx, files not
    ///   written yet): asked again.
    /// - An error is an answer waiting will not change (a status document rekey cannot read).
    /// - Never writes anything.
    async fn adopted(&self, announcement: &Announcement<'_>) -> Result<Adoption>;

    /// Its name, unique within the credential.
    fn name(&self) -> &str {
        &self.identity().name
    }

    /// How long after `activate` it may take to adopt the new key.
    fn adopt_timeout(&self) -> Duration {
        self.identity().adopt_timeout
    }

    /// `exec consumer 'reload'`: how errors name it.
    fn label(&self) -> String {
        format!("{} consumer '{}'", self.kind(), self.name())
    }
}

/// A credential's consumers and what to do when one does not adopt a new key in time.
#[derive(Debug)]
pub struct CredentialConsumers {
    /// In config order.
    pub consumers: Vec<Box<dyn Consumer>>,
    /// The credential's `on_adoption_failure`.
    pub on_adoption_failure: OnAdoptionFailure,
}

impl CredentialConsumers {
    /// Builds every consumer of `credential`, reading webhook secrets now; the first error names
    /// the consumer and its config position.
    pub fn from_config(
        credential: &CredentialConfig,
        env: &dyn Env,
    ) -> Result<CredentialConsumers> {
        Self::with_backoff(credential, env, Backoff::default())
    }

    /// [`CredentialConsumers::from_config`] with webhooks retried per `backoff` (tests use
    /// millisecond waits).
    fn with_backoff(
        credential: &CredentialConfig,
        env: &dyn Env,
        backoff: Backoff,
    ) -> Result<CredentialConsumers> {
        Ok(CredentialConsumers {
            consumers: credential
                .consumers
                .iter()
                .map(|c| build(&credential.name, c, env, backoff))
                .collect::<Result<_>>()?,
            on_adoption_failure: credential.on_adoption_failure,
        })
    }
}

/// One consumer of `credential` from its settings. A webhook's secret is read now (env or file);
/// errors name the consumer, its `file:line:column` and the variable or file, never the secret.
fn build(
    credential: &str,
    settings: &ConsumerConfig,
    env: &dyn Env,
    backoff: Backoff,
) -> Result<Box<dyn Consumer>> {
    let id = Identity {
        name: settings.name.clone(),
        origin: settings.origin.clone(),
        adopt_timeout: settings.adopt_timeout,
    };
    Ok(match &settings.kind {
        ConsumerKindSettings::Store { status_url } => {
            Box::new(store::StoreConsumer::new(id, status_url.as_deref())?)
        }
        ConsumerKindSettings::Webhook {
            url,
            secret,
            status_url,
        } => {
            let secret = secret.read(
                env,
                &format!("{}: consumer '{}'", settings.origin, settings.name),
                "webhook signing secret",
                "secret",
                &format!("[[credentials.{credential}.consumers]] '{}'", settings.name),
            )?;
            Box::new(webhook::WebhookConsumer::new(
                id,
                url,
                secret,
                status_url.as_deref(),
                backoff,
            )?)
        }
        ConsumerKindSettings::Exec {
            command,
            deliver_key,
            timeout,
        } => Box::new(exec::ExecConsumer::new(
            id,
            command,
            *deliver_key,
            *timeout,
        )?),
        ConsumerKindSettings::File {
            key_path,
            cert_path,
        } => Box::new(file::FileConsumer::new(id, key_path, cert_path.as_deref())),
    })
}

/// Which operation an announcement is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Notice {
    Prepare,
    Activate,
}

impl Notice {
    fn as_str(self) -> &'static str {
        match self {
            Notice::Prepare => "prepare",
            Notice::Activate => "activate",
        }
    }

    fn stage(self) -> Stage {
        match self {
            Notice::Prepare => Stage::Pending,
            Notice::Activate => Stage::Current,
        }
    }
}

/// Refuses an announcement whose stage does not fit `notice`: a rekey bug, never a consumer's.
fn expect_stage(label: &str, notice: Notice, p: &Announcement<'_>) -> Result<()> {
    if p.stage == notice.stage() {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Unexpected,
        format!(
            "{label}: {} announced with stage {}, expected {}",
            notice.as_str(),
            stage_name(p.stage),
            stage_name(notice.stage())
        ),
    )
    .with_hint("this is a rekey bug; please report it"))
}

fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::Current => "current",
        Stage::Pending => "pending",
        Stage::Previous => "previous",
    }
}

fn file_error(label: &str, path: &Path, e: std::io::Error) -> Error {
    let kind = match e.kind() {
        std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
        _ => ErrorKind::Unexpected,
    };
    Error::new(kind, format!("{label}: cannot write {}", path.display()))
        .with_source(e)
        .with_hint("check that the folder exists and the user rekey runs as may write to it")
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Runs `op` for every consumer, at most `limit` at a time, and answers each consumer's result in
/// the order of `consumers`. A failing consumer never stops the others.
pub async fn for_all<'c, T, F, Fut>(
    consumers: impl IntoIterator<Item = &'c dyn Consumer>,
    limit: usize,
    mut op: F,
) -> Vec<(&'c dyn Consumer, Result<T>)>
where
    F: FnMut(&'c dyn Consumer) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    use futures_util::stream::{self, StreamExt as _};
    stream::iter(consumers)
        .map(|consumer| {
            let running = op(consumer);
            async move { (consumer, running.await) }
        })
        .buffered(limit.max(1))
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumers::testing::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn for_all_runs_at_most_limit_at_once_and_answers_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let entries: String = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|n| {
                format!("[[credentials.billing.consumers]]\nname = \"{n}\"\nkind = \"store\"\n")
            })
            .collect();
        let all = consumers(dir.path(), &entries);
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let results = for_all(all.iter().map(|c| c.as_ref()), 2, |c| {
            let (running, most) = (&running, &most);
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                if c.name() == "c" {
                    Err(Error::new(ErrorKind::Rejected, "c refused"))
                } else {
                    c.prepare(&announce(Stage::Pending)).await
                }
            }
        })
        .await;
        assert_eq!(most.load(Ordering::SeqCst), 2);
        let names: Vec<&str> = results.iter().map(|(c, _)| c.name()).collect();
        assert_eq!(names, ["a", "b", "c", "d", "e"]);
        assert_eq!(
            results.iter().filter(|(_, r)| r.is_ok()).count(),
            4,
            "one failure stops nobody else"
        );
    }
}

/// What rekey hands a consumer that is given the secret (an `exec` command's file or stdin, a
/// `file` consumer's key file): a key's PEM, or for a consumer secret a JSON document
/// `{"consumer_key": "…", "consumer_secret": "…"}`. Zeroed on drop. A key in custody is never
/// handed out (configuration refuses such consumers; this refuses again).
pub(crate) fn handover(material: &Material) -> rekey_api::Result<zeroize::Zeroizing<String>> {
    Ok(zeroize::Zeroizing::new(match material {
        Material::Key(key) => key.expose_secret_pem().to_string(),
        Material::Consumer(c) => serde_json::json!({
            "consumer_key": c.key(),
            "consumer_secret": c.expose_secret(),
        })
        .to_string(),
        Material::Custody(_) => return material.key().map(|_| zeroize::Zeroizing::default()),
    }))
}

/// The part of `material` that must never appear in what a consumer printed: the key's PEM or
/// the consumer secret (the consumer key is an identifier); nothing for a key in custody, which
/// is never here.
pub(crate) fn secret_text(material: &Material) -> Option<&str> {
    match material {
        Material::Key(key) => Some(key.expose_secret_pem()),
        Material::Consumer(c) => Some(c.expose_secret()),
        Material::Custody(_) => None,
    }
}
