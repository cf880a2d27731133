//! The scene the consumer secret tests share: a world whose `etl` credential (the Nightly_ETL
//! External Client App's consumer key and secret) lives in one store kind (file, Vault through
//! OpenBao, AWS through moto), imported from Salesforce as generation 1, and the invariants a
//! closed consumer secret rotation leaves behind.

// Each test crate that includes this module uses a different subset of it.
#![allow(dead_code)]

use crate::scene::{Kind, LEASE_SECS, aws_labels, store_of};
use crate::world::*;
use rekey_api::{ConsumerSecret, Generation, SecretStore};
use rekey_testkit::moto::Moto;
use rekey_testkit::openbao::OpenBao;
use rekey_testkit::receiver::Receiver;
use std::collections::BTreeSet;

pub(crate) const CRED: &str = "etl";
pub(crate) const APP: &str = "Nightly_ETL";
/// The webhook consumers' signing secret (`ETL_HOOK_SECRET`).
pub(crate) const HOOK_SECRET: &str = "etl-hook-secret-for-tests";

/// SHA-256 fingerprint (hex) of a consumer key and secret, as rekey computes it.
pub(crate) fn fingerprint(key: &str, secret: &str) -> String {
    ConsumerSecret::new(key, secret)
        .unwrap()
        .fingerprint()
        .to_hex()
}

/// A world with `etl` in one store kind, imported from the app as generation 1.
pub(crate) struct SecretScene {
    pub(crate) w: World,
    pub(crate) kind: Kind,
    pub(crate) prefix: String,
    /// Vault address or moto endpoint.
    pub(crate) endpoint: String,
    /// A Vault token that can read everything, for the checks.
    pub(crate) root: String,
    /// Every consumer secret this scene ever saw at Salesforce, for the leak scan.
    pub(crate) secrets: BTreeSet<String>,
}

impl SecretScene {
    pub(crate) async fn new(kind: Kind) -> SecretScene {
        let mut w = World::new().await;
        let (prefix, endpoint, root) = match kind {
            Kind::File => {
                w.use_etl_only("local");
                (String::new(), String::new(), String::new())
            }
            Kind::Vault => {
                let bao = OpenBao::shared();
                let prefix = bao.unique_prefix("secrets");
                let store = format!(
                    "[stores.local]\nkind = \"vault\"\naddress = \"{}\"\npath_prefix = \"{prefix}\"\nlock_ttl_secs = {LEASE_SECS}",
                    bao.addr()
                );
                w.edit_config(|c| {
                    c.replace("[stores.local]\nkind = \"file\"\npath = \"keys\"", &store)
                });
                w.env.push(("VAULT_TOKEN".into(), bao.root_token().into()));
                w.use_etl_only("local");
                (prefix, bao.addr(), bao.root_token().to_string())
            }
            Kind::Aws => {
                let moto = Moto::shared();
                let prefix = with_aws_store(&mut w, moto);
                let line = format!("name_prefix = \"{prefix}\"");
                w.edit_config(|c| {
                    c.replace(&line, &format!("{line}\nlock_ttl_secs = {LEASE_SECS}"))
                });
                w.use_etl_only("aws");
                (prefix, moto.endpoint(), String::new())
            }
            Kind::VaultTransit | Kind::AwsKms => {
                panic!("a consumer secret is never kept in custody (config refuses it)")
            }
        };
        w.ok(&["import", CRED]).await;
        let mut s = SecretScene {
            w,
            kind,
            prefix,
            endpoint,
            root,
            secrets: BTreeSet::new(),
        };
        s.observe();
        s
    }

    /// Notes every consumer secret Salesforce holds now (primary and staged), for the leak scan.
    pub(crate) fn observe(&mut self) -> orgsim::ConsumerInfo {
        let app = self.w.etl_consumer();
        self.secrets.insert(app.secret.clone());
        if let Some(staged) = &app.staged {
            self.secrets.insert(staged.secret.clone());
        }
        app
    }

    /// A handle on the credential's store, for checks rekey's own output cannot make.
    pub(crate) async fn store(&self) -> Box<dyn SecretStore> {
        store_of(self.kind, &self.w, &self.endpoint, &self.root, &self.prefix).await
    }

    /// `rekey status etl --json`'s row.
    pub(crate) async fn status(&mut self) -> serde_json::Value {
        let status = self.w.json(&["status", CRED]).await;
        status.as_array().map_or(status.clone(), |a| a[0].clone())
    }

    /// The invariants every closed rotation leaves: `generation` CURRENT in every store, which
    /// all agree and equal the app's primary pair; nothing PENDING (no AWSPENDING); the journal
    /// closed; and nothing of ours left at Salesforce but, when `previous_valid`, the Rotated
    /// previous pair, which is the store's PREVIOUS (else the staged slot is empty).
    pub(crate) async fn assert_settled(
        &mut self,
        generation: u64,
        previous_valid: bool,
        context: &str,
    ) {
        let app = self.observe();
        let primary = fingerprint(&app.key, &app.secret);
        let row = self.status().await;
        assert_eq!(row["generation"], generation, "{context}: CURRENT\n{row}");
        assert!(
            row["pending_generation"].is_null(),
            "{context}: PENDING cleared\n{row}"
        );
        assert!(
            row["open_rotation"].is_null(),
            "{context}: journal closed\n{row}"
        );
        assert_eq!(
            row["fingerprint"],
            primary.as_str(),
            "{context}: the app's primary pair is CURRENT\n{row}"
        );
        for store in row["stores"].as_array().unwrap() {
            assert_eq!(
                store["matches_app"], true,
                "{context}: every store agrees\n{row}"
            );
        }

        // The store itself, read directly.
        let store = self.store().await;
        let stages = store.stages(CRED).await.unwrap();
        let current = stages.current.as_ref().expect("a CURRENT");
        assert_eq!(current.generation, Generation(generation), "{context}");
        assert_eq!(current.public.fingerprint().to_hex(), primary, "{context}");
        assert!(
            stages.pending.is_none(),
            "{context}: no PENDING in the store"
        );
        let cur = store
            .read_generation(CRED, Generation(generation))
            .await
            .unwrap()
            .expect("CURRENT readable");
        let cur = cur.material.consumer().unwrap();
        assert_eq!(
            (cur.key(), cur.expose_secret()),
            (app.key.as_str(), app.secret.as_str()),
            "{context}: the store's CURRENT is exactly the app's primary pair"
        );
        if self.kind == Kind::Aws {
            let labels = aws_labels(&self.endpoint, &format!("{}/{CRED}", self.prefix)).await;
            let n = labels.iter().filter(|l| *l == "AWSCURRENT").count();
            assert_eq!(n, 1, "{context}: exactly one AWSCURRENT: {labels:?}");
            assert!(
                !labels.iter().any(|l| l == "AWSPENDING"),
                "{context}: {labels:?}"
            );
        }

        // Nothing orphaned at Salesforce.
        match (&app.staged, previous_valid) {
            (None, false) => {}
            (Some(slot), true) => {
                assert_eq!(slot.state, "Rotated", "{context}: {slot:?}");
                let previous = stages
                    .previous
                    .as_ref()
                    .unwrap_or_else(|| panic!("{context}: the Rotated pair is in no PREVIOUS"));
                assert_eq!(
                    previous.public.fingerprint().to_hex(),
                    fingerprint(&slot.key, &slot.secret),
                    "{context}: the pair still valid at Salesforce is the store's PREVIOUS"
                );
            }
            (slot, _) => panic!(
                "{context}: Salesforce's staged slot is {slot:?} (expected {})",
                if previous_valid {
                    "the Rotated previous pair"
                } else {
                    "empty"
                }
            ),
        }

        let journal = self.w.json(&["journal", CRED]).await;
        if let Some(last) = journal.as_array().unwrap().last() {
            assert!(
                matches!(last["step"].as_str(), Some("finalize" | "close"))
                    && last["phase"] == "done",
                "{context}: the journal ends closed: {last}"
            );
        }
    }

    /// Occurrences of any consumer secret this scene saw in everything rekey printed or
    /// journaled.
    pub(crate) fn assert_no_leaks(&mut self, context: &str) {
        self.observe();
        assert!(
            !self.secrets.is_empty(),
            "the scan needs the secrets it looks for"
        );
        let mut texts = self.w.printed.clone();
        texts.extend(
            walk(self.w.dir.path())
                .into_iter()
                .filter(|p| p.file_name().is_some_and(|n| n == "journal.jsonl"))
                .map(|p| std::fs::read_to_string(p).unwrap()),
        );
        for text in &texts {
            for secret in &self.secrets {
                assert!(
                    !text.contains(secret.as_str()),
                    "{context}: a consumer secret was printed or journaled:\n{text}"
                );
            }
        }
    }
}

/// Adds `etl` consumers (TOML tables without their header) and `settings` to its table.
pub(crate) fn add_consumers(w: &World, settings: &str, consumers: &[String]) {
    w.edit_config(|c| {
        let mut c = c.replacen(
            "revoke_previous_after_hours = 24\n",
            &format!("revoke_previous_after_hours = 24\n{settings}"),
            1,
        );
        for table in consumers {
            c.push_str(&format!("\n[[credentials.etl.consumers]]\n{table}\n"));
        }
        c
    });
}

/// A webhook consumer's table for `hook` (`/hook`); with `status`, adoption is asked of its
/// `/status` (1 s to adopt).
pub(crate) fn webhook(name: &str, hook: &Receiver, status: bool) -> String {
    let status = if status {
        format!(
            "status_url = \"{}\"\nadopt_timeout_secs = 1\n",
            hook.url("/status")
        )
    } else {
        String::new()
    };
    format!(
        "name = \"{name}\"\nkind = \"webhook\"\nurl = \"{}\"\nsecret_env = \"ETL_HOOK_SECRET\"\n{status}",
        hook.url("/hook")
    )
}

/// A webhook consumer `laggard` that acknowledges every event but keeps reporting the pair
/// `holds` (it never adopts), with `on_adoption_failure = "alert"`; the receiver, to keep alive.
pub(crate) async fn add_laggard(s: &mut SecretScene, holds: &orgsim::ConsumerInfo) -> Receiver {
    let stubborn = Receiver::answering(
        200,
        &serde_json::json!({"fingerprint": fingerprint(&holds.key, &holds.secret)}).to_string(),
    )
    .await;
    add_consumers(
        &s.w,
        "on_adoption_failure = \"alert\"\n",
        &[webhook("laggard", &stubborn, true)],
    );
    s.w.env.push(("ETL_HOOK_SECRET".into(), HOOK_SECRET.into()));
    stubborn
}
