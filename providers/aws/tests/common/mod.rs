//! What the Secrets Manager store's test files share: a store under its own prefix on the moto
//! server, an SDK client for the checks, staged pairs, labels by version.

// Each test file uses a different subset.
#![allow(dead_code)]

use aws_config::SdkConfig;
use aws_sdk_secretsmanager::Client;
use rekey_api::{Generation, JournalEntry, Phase, SecretStore, Step};
use rekey_aws::{AwsConfig, AwsStore};
use rekey_testkit::conformance::{self, Pair};
use rekey_testkit::moto::{Moto, sdk_config, version_labels};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

pub(crate) const CRED: &str = "billing";

/// The lock time to live of the lease tests: an hour, so no lease expires by itself while a
/// test runs, however slow the machine. A lease expires when the test moves rekey's clock.
pub(crate) const LEASE_TTL: Duration = Duration::from_secs(3600);

/// Moves rekey's clock ahead by `by`, for this test only (its thread; see
/// `rekey_api::advance_on_this_thread`), instead of waiting for a lease to expire.
pub(crate) fn advance_clock(by: Duration) {
    rekey_api::advance_on_this_thread(chrono::Duration::from_std(by).unwrap());
}

pub(crate) fn config(prefix: &str) -> AwsConfig {
    AwsConfig {
        name_prefix: prefix.to_string(),
        ..AwsConfig::default()
    }
}

pub(crate) struct Env {
    pub(crate) sdk: SdkConfig,
    pub(crate) raw: Client,
    pub(crate) prefix: String,
}

impl Env {
    pub(crate) async fn new(name: &str) -> Env {
        let moto = Moto::shared();
        let sdk = sdk_config(&moto.endpoint()).await;
        Env {
            raw: Client::new(&sdk),
            sdk,
            prefix: moto.unique_name(name),
        }
    }

    pub(crate) fn store(&self) -> AwsStore {
        self.store_with(config(&self.prefix))
    }

    pub(crate) fn store_with(&self, config: AwsConfig) -> AwsStore {
        AwsStore::with_sdk_config(config, &self.sdk).unwrap()
    }

    pub(crate) fn secret(&self) -> String {
        format!("{}/{CRED}", self.prefix)
    }

    /// Version id → labels of every version, deprecated ones included.
    pub(crate) async fn versions(&self) -> BTreeMap<String, Vec<String>> {
        version_labels(&self.raw, &self.secret()).await
    }

    /// The versions carrying `label`, from DescribeSecret.
    pub(crate) async fn holders(&self, label: &str) -> Vec<String> {
        let out = self
            .raw
            .describe_secret()
            .secret_id(self.secret())
            .send()
            .await
            .unwrap();
        out.version_ids_to_stages()
            .unwrap()
            .iter()
            .filter(|(_, labels)| labels.iter().any(|l| l == label))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The consumer read path: GetSecretValue of AWSCURRENT (explicitly: moto's stage-less read
    /// can be stale after a label move; on AWS the default is AWSCURRENT).
    pub(crate) async fn consumer_read(&self, secret: &str) -> (String, Value) {
        let out = self
            .raw
            .get_secret_value()
            .secret_id(secret)
            .version_stage("AWSCURRENT")
            .send()
            .await
            .unwrap();
        (
            out.version_id().unwrap().to_string(),
            serde_json::from_str(out.secret_string().unwrap()).unwrap(),
        )
    }

    pub(crate) async fn tags(&self) -> BTreeMap<String, String> {
        let out = self
            .raw
            .describe_secret()
            .secret_id(self.secret())
            .send()
            .await
            .unwrap();
        out.tags()
            .iter()
            .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
            .collect()
    }
}

pub(crate) fn pair() -> Pair {
    conformance::pair()
}

pub(crate) async fn stage(
    store: &AwsStore,
    generation: u64,
    rotation: &str,
    p: &Pair,
) -> rekey_api::Result<()> {
    conformance::stage_as(store, CRED, generation, rotation, p).await
}

pub(crate) async fn rotate(store: &AwsStore, generation: u64) -> Pair {
    let p = pair();
    stage(store, generation, &format!("r{generation}"), &p)
        .await
        .unwrap();
    store.promote(CRED, Generation(generation)).await.unwrap();
    p
}

pub(crate) fn labels(of: &BTreeMap<String, Vec<String>>, id: &str) -> Vec<String> {
    of.get(id).cloned().unwrap_or_default()
}

pub(crate) fn journal_entry(step: Step, fence: Option<u64>) -> JournalEntry {
    conformance::journal_entry("r2", step, Phase::Done, fence)
}
