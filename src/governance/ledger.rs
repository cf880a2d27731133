//! An org's governance ledger: the journal named `_org.<ORG>` in the ledger store
//! (`Config::ledger`), holding what governance changed or accepted — each OAuth grant
//! revoked (journaled before the revocation, and again with its outcome) and each audit
//! suppression the first time an audit saw it. It is a journal like a credential's: written
//! under the store's lease, hash-chained by the store, verified and exported by `rekey journal`.
//!
//! Each entry's `detail` is one JSON object (`event`, then its facts), so a SIEM can read it
//! without parsing prose. Never a token: a grant is named by app, user and dates.

use crate::config::{Config, Suppression};
use crate::wiring;
use rekey_api::{
    Generation, JournalEntry, Phase, Result, RotationId, RotationLock, SecretStore, Step,
};
use serde_json::{Value, json};

/// A ledger opened for writing: its store and the lease every entry is fenced by.
pub struct Ledger {
    store: Box<dyn SecretStore>,
    lease: Box<dyn RotationLock>,
    name: String,
    run: RotationId,
    entries: Vec<JournalEntry>,
}

impl Ledger {
    /// Opens `org`'s ledger for the run named `what` (`grants`, `audit`), taking its lease.
    pub async fn open(config: &Config, org: &str, what: &str) -> Result<Ledger> {
        let (name, store_name) = config.ledger(org)?;
        let store = wiring::store(config, store_name).await?;
        let now = rekey_api::now();
        let run = RotationId(format!(
            "{name}-{what}-{}-{:04x}",
            now.format("%Y%m%dT%H%M%SZ"),
            rand::random::<u16>()
        ));
        let lease = store.lock(&name, &run.0).await?;
        let entries = match store.read_journal(&name).await {
            Ok(entries) => entries,
            Err(e) => {
                let _ = lease.release().await;
                return Err(e);
            }
        };
        Ok(Ledger {
            store,
            lease,
            name,
            run,
            entries,
        })
    }

    /// The entries already in the ledger, oldest first.
    pub fn entries(&self) -> &[JournalEntry] {
        &self.entries
    }

    /// Appends one event: `step` and `phase`, its facts as `detail`.
    pub async fn append(&mut self, step: Step, phase: Phase, detail: Value) -> Result<()> {
        self.lease.confirm().await?;
        let entry = JournalEntry {
            rotation_id: self.run.clone(),
            at: rekey_api::now(),
            step,
            phase,
            generation: Generation(0),
            previous_generation: None,
            new_fingerprint: None,
            old_fingerprint: None,
            detail: Some(detail.to_string()),
            fence: Some(self.lease.fence()),
            prev: None,
            hash: None,
        };
        self.store.append_journal(&self.name, &entry).await?;
        self.entries.push(entry);
        Ok(())
    }

    /// Releases the lease.
    pub async fn close(self) -> Result<()> {
        self.lease.release().await
    }
}

/// What identifies a suppression in the ledger: everything but where it sits in the file (the
/// line moves when the file is edited; the exception does not).
fn suppression_facts(s: &Suppression, org: &str) -> Value {
    json!({
        "event": "suppression-added",
        "org": org,
        "id": s.id,
        "app": s.app,
        "reason": s.reason,
        "until": s.until.map(|d| d.to_string()),
    })
}

/// Records, in each org's ledger, the suppressions of the config it has not recorded yet.
/// Returns one line per ledger that could not be written (the audit reports them).
pub async fn record_new_suppressions(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    for org in config.orgs.keys() {
        let mine: Vec<&Suppression> = config
            .audit
            .ignore
            .iter()
            .filter(|s| s.org.as_ref().is_none_or(|o| o == org))
            .collect();
        if mine.is_empty() {
            continue;
        }
        if let Err(e) = record(config, org, &mine).await {
            problems.push(format!(
                "org {org}: recording suppressions in its ledger: {e}"
            ));
        }
    }
    problems
}

async fn record(config: &Config, org: &str, suppressions: &[&Suppression]) -> Result<()> {
    let mut ledger = Ledger::open(config, org, "audit").await?;
    let known: Vec<Value> = ledger
        .entries()
        .iter()
        .filter(|e| e.step == Step::Suppress)
        .filter_map(|e| e.detail.as_deref())
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .map(|mut v| {
            if let Some(o) = v.as_object_mut() {
                o.remove("origin");
            }
            v
        })
        .collect();
    let mut result = Ok(());
    for s in suppressions {
        let facts = suppression_facts(s, org);
        if known.contains(&facts) {
            continue;
        }
        let mut detail = facts;
        detail["origin"] = Value::from(s.origin.clone());
        if let Err(e) = ledger.append(Step::Suppress, Phase::Done, detail).await {
            result = Err(e);
            break;
        }
    }
    let closed = ledger.close().await;
    result.and(closed)
}
