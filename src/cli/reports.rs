//! The reports the CLI assembles itself (`inspect`, `status`, `check --preflight`, `import`,
//! `verify`, `journal`, `config check`), for `render` to print as text or JSON. Plain data: no field could hold key bytes.

use crate::pki;
use chrono::{DateTime, Utc};
use rekey_api::{ChainState, ChainVerdict, Damage, Generation, JournalEntry, RotationId, Stage};
use serde::Serialize;
use std::path::PathBuf;

/// What `inspect` reports about one file.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Inspected {
    /// An X.509 certificate.
    Certificate {
        /// The file.
        path: PathBuf,
        /// Subject DN.
        subject: String,
        /// Issuer DN.
        issuer: String,
        /// Serial (hex).
        serial: String,
        /// notBefore.
        not_before: DateTime<Utc>,
        /// notAfter.
        not_after: DateTime<Utc>,
        /// Days until notAfter.
        days_left: i64,
        /// Key algorithm.
        key_algorithm: String,
        /// Key size in bits.
        key_bits: usize,
        /// SHA-256 of the DER.
        fingerprint_sha256: String,
        /// SHA-256 of the public key info.
        spki_sha256: String,
    },
    /// A private key: only its public facts.
    PrivateKey {
        /// The file.
        path: PathBuf,
        /// Public facts.
        #[serde(flatten)]
        facts: pki::KeyFacts,
    },
    /// A key in custody: what its service says, never more.
    KeyInCustody {
        /// Which credential's stage it is, e.g. `billing current (generation 3)`.
        path: PathBuf,
        /// The key.
        #[serde(flatten)]
        state: rekey_api::KeyState,
    },
}

/// `inspect`'s whole report.
#[derive(Serialize)]
pub struct InspectReport {
    /// One entry per file.
    pub files: Vec<Inspected>,
    /// When exactly one key and one certificate were given: whether the key signs for the cert.
    pub key_matches_certificate: Option<bool>,
}

/// One credential's line in `status`.
#[derive(Serialize)]
pub struct StatusRow {
    /// Credential name.
    pub credential: String,
    /// Its app.
    pub app: String,
    /// Its store (display form).
    pub store: String,
    /// CURRENT generation.
    pub generation: Option<Generation>,
    /// CURRENT certificate fingerprint.
    pub fingerprint: Option<String>,
    /// CURRENT notAfter.
    pub not_after: Option<DateTime<Utc>>,
    /// Days until then.
    pub days_left: Option<i64>,
    /// PENDING generation, if a rotation is in flight.
    pub pending_generation: Option<Generation>,
    /// PREVIOUS generation.
    pub previous_generation: Option<Generation>,
    /// When the last rotation finished.
    pub last_rotation: Option<DateTime<Utc>>,
    /// An unfinished rotation.
    pub open_rotation: Option<RotationId>,
    /// The certificate the app holds now, read from Salesforce.
    pub app_fingerprint: Option<String>,
    /// Why the app could not be read, when it could not.
    pub app_error: Option<String>,
    /// Every store's CURRENT, primary first (the fields above are the primary's).
    pub stores: Vec<StoreStatus>,
    /// A consumer secret's staged slot at Salesforce: the previous pair still valid, or a
    /// staged pair (none for a certificate, or when the slot is empty or unreadable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staged: Option<rekey_api::Staged>,
    /// The primary's journal entries that could not be read (the rotation fields above come from
    /// the others); empty when the journal is intact.
    pub journal_damaged: Vec<Damage>,
    /// Why the credential's stores could not be read at all, when they could not (every field
    /// above that comes from a store is then empty).
    pub error: Option<String>,
}

impl StatusRow {
    /// The row of a credential whose stores could not be read at all: its name and why.
    pub fn unreadable(cred: &crate::config::CredentialConfig, error: &rekey_api::Error) -> Self {
        StatusRow {
            credential: cred.name.clone(),
            app: cred.app.clone(),
            store: cred.stores.join(", "),
            generation: None,
            fingerprint: None,
            not_after: None,
            days_left: None,
            pending_generation: None,
            previous_generation: None,
            last_rotation: None,
            open_rotation: None,
            app_fingerprint: None,
            app_error: None,
            stores: Vec::new(),
            staged: None,
            journal_damaged: Vec::new(),
            error: Some(match error.hint() {
                Some(hint) => format!("{error} ({hint})"),
                None => error.to_string(),
            }),
        }
    }
}

/// One store's CURRENT for a credential.
#[derive(Serialize)]
pub struct StoreStatus {
    /// The store (display form).
    pub store: String,
    /// CURRENT generation.
    pub generation: Option<Generation>,
    /// CURRENT certificate fingerprint.
    pub fingerprint: Option<String>,
    /// Whether that is the certificate the app holds; `None` when the app could not be read.
    pub matches_app: Option<bool>,
    /// It differs from the app only because the open rotation is between two of its steps.
    pub rotation_in_progress: bool,
    /// CURRENT's key as its service describes it, when the store keeps keys in custody.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custody: Option<rekey_api::KeyState>,
    /// Why the service could not describe it, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custody_error: Option<String>,
}

/// One credential's preflight result: `None` means the check passed.
#[derive(Serialize)]
pub struct PreflightRow {
    /// Credential name.
    pub credential: String,
    /// The store, as displayed.
    pub store: String,
    /// Why the store would refuse a rotation.
    pub store_problem: Option<String>,
    /// The app, as displayed.
    pub target: String,
    /// Why the app side would refuse a rotation.
    pub target_problem: Option<String>,
}

/// What `import` did.
#[derive(Serialize)]
pub struct ImportReport {
    /// Credential name.
    pub credential: String,
    /// The generation it became.
    pub generation: Generation,
    /// Its fingerprint (the certificate's, or the consumer key and secret's).
    pub fingerprint: String,
    /// Its certificate's notAfter (`None` for a consumer secret).
    pub not_after: Option<DateTime<Utc>>,
    /// The consumer key of an imported consumer secret.
    pub consumer_key: Option<String>,
    /// What the operator should know about the input (an expired or expiring certificate, a key
    /// file others can read); also printed on stderr.
    pub warnings: Vec<String>,
}

/// What `verify` observed.
#[derive(Serialize)]
pub struct VerifyReport {
    /// Credential name.
    pub credential: String,
    /// Which key signed.
    pub stage: Stage,
    /// Its generation.
    pub generation: Generation,
    /// Its certificate's fingerprint.
    pub fingerprint: String,
    /// Whether Salesforce issued a token.
    pub accepted: bool,
    /// Salesforce's error code when refused.
    pub error: Option<String>,
    /// Salesforce's error text when refused.
    pub error_description: Option<String>,
}

/// One credential as `config check` describes it.
#[derive(Serialize)]
pub struct CredentialLine {
    /// Its name.
    pub name: String,
    /// `org/App (connected app)`.
    pub rotates: String,
    /// Each store, `name (kind: where)`, primary first.
    pub stores: Vec<String>,
    /// How many consumers are told of a rotation.
    pub consumers: usize,
}

/// `journal --verify`: a credential's hash chain as its primary store holds it.
#[derive(Serialize)]
pub struct ChainReport {
    /// The credential.
    pub credential: String,
    /// Its primary store (the config's name), which holds the journal.
    pub store: String,
    /// Whether every entry fits the chain.
    pub intact: bool,
    /// How many entries, how many from before chaining, and the first that does not fit.
    #[serde(flatten)]
    pub verdict: ChainVerdict,
}

/// One line of `journal --export`: an entry with where it is from and its place in the chain.
#[derive(Serialize)]
pub struct ExportLine<'a> {
    /// The credential.
    pub credential: &'a str,
    /// Its primary store (the config's name).
    pub store: &'a str,
    /// The entry's number in its journal, 1-based (a damaged entry's number is skipped).
    pub seq: usize,
    /// Whether it fits the chain.
    pub chain: ChainState,
    /// The entry's own fields.
    #[serde(flatten)]
    pub entry: &'a JournalEntry,
}
