//! The scene the fault-matrix and runbook tests share: a world whose `billing` key lives in one
//! store kind (file, Vault through OpenBao, AWS through moto), the invariants every scenario ends
//! with, and running scenarios side by side.

// Each test crate that includes this module uses a different subset of it.
#![allow(dead_code)]

use crate::world::{self, *};
use rekey_api::{Generation, SecretStore};
use rekey_testkit::moto::{Moto, sdk_config, version_labels};
use rekey_testkit::openbao::OpenBao;
use std::collections::BTreeSet;
use std::sync::Arc;

pub(crate) const CRED: &str = "billing";
pub(crate) const APP: &str = "Billing_Sync";
/// The lease time to live in these worlds: a killed runner's lease blocks others this long. An
/// hour, so that no lease runs out by accident while a scenario runs, however loaded the machine
/// (a racing loser must never find the winner's lease expired); a scenario that needs a lease to
/// run out runs the next command with rekey's clock [`PAST_LEASE`] ahead instead of waiting.
pub(crate) const LEASE_SECS: u64 = 3600;
/// How far a command's clock is moved to see every lease taken before it expired: a minute past
/// the time to live, for the seconds the scenario took up to then.
pub(crate) const PAST_LEASE: i64 = LEASE_SECS as i64 + 60;
/// Scenarios of one matrix run at once (each is a few short processes and an emulator).
pub(crate) const PARALLEL: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Vault,
    Aws,
    /// Keys in custody in OpenBao's transit engine, the rest in its KV v2.
    VaultTransit,
    /// Keys in custody in moto's KMS, the rest in its Secrets Manager.
    AwsKms,
}

impl Kind {
    /// Whether the keys stay in a key-management service.
    pub(crate) fn custody(self) -> bool {
        matches!(self, Kind::VaultTransit | Kind::AwsKms)
    }

    /// Whether stages and journal are in Secrets Manager.
    fn aws(self) -> bool {
        matches!(self, Kind::Aws | Kind::AwsKms)
    }
}

/// A world with `billing`'s key in one store kind, its legacy key imported as generation 1 (with
/// keys in custody, which take no key from outside: generation 1 made by a first rotation).
pub(crate) struct Scene {
    pub(crate) w: World,
    pub(crate) kind: Kind,
    pub(crate) prefix: String,
    /// Vault address or moto endpoint.
    pub(crate) endpoint: String,
    /// A Vault token that can read everything, for the checks.
    pub(crate) root: String,
    /// Every private key this scene ever held, for the leak scan.
    pub(crate) secrets: Vec<String>,
    /// The certificates the app held before rekey managed its key (with keys in custody, the
    /// legacy one its first rotation replaced): no store keeps their keys.
    unmanaged: usize,
}

impl Scene {
    pub(crate) async fn new(kind: Kind) -> Scene {
        match kind {
            Kind::File => Scene::file().await,
            Kind::Vault => Scene::vault(OpenBao::shared(), OpenBao::shared().root_token()).await,
            Kind::Aws => Scene::aws(Moto::shared()).await,
            Kind::VaultTransit => Scene::vault_transit(OpenBao::shared()).await,
            Kind::AwsKms => Scene::aws_kms(Moto::shared()).await,
        }
    }

    pub(crate) async fn vault_transit(bao: &OpenBao) -> Scene {
        let (w, prefix) = vault_world(bao).await;
        let line = format!("path_prefix = \"{prefix}\"");
        w.edit_config(|c| {
            c.replacen("kind = \"vault\"", "kind = \"vault_transit\"", 1)
                .replace(
                    &line,
                    &format!("{line}\nkey_prefix = \"{prefix}-\"\nlock_ttl_secs = {LEASE_SECS}"),
                )
        });
        let (endpoint, root) = (bao.addr(), bao.root_token().to_string());
        Scene::ready(w, Kind::VaultTransit, prefix, endpoint, root).await
    }

    pub(crate) async fn aws_kms(moto: &Moto) -> Scene {
        let mut w = World::new().await;
        let prefix = with_aws_store(&mut w, moto);
        let line = format!("name_prefix = \"{prefix}\"");
        w.edit_config(|c| {
            c.replacen("store = \"local\"", "store = \"aws\"", 1)
                .replacen("kind = \"aws\"", "kind = \"aws_kms\"", 1)
                .replace(
                    &line,
                    &format!(
                        "{line}\nkms_alias_prefix = \"{prefix}/\"\nlock_ttl_secs = {LEASE_SECS}"
                    ),
                )
        });
        Scene::ready(w, Kind::AwsKms, prefix, moto.endpoint(), String::new()).await
    }

    pub(crate) async fn file() -> Scene {
        Scene::ready(
            World::new().await,
            Kind::File,
            String::new(),
            String::new(),
            String::new(),
        )
        .await
    }

    pub(crate) async fn vault(bao: &OpenBao, token: &str) -> Scene {
        let (mut w, prefix) = vault_world(bao).await;
        let line = format!("path_prefix = \"{prefix}\"");
        w.edit_config(|c| c.replace(&line, &format!("{line}\nlock_ttl_secs = {LEASE_SECS}")));
        w.env.retain(|(k, _)| k != "VAULT_TOKEN");
        w.env.push(("VAULT_TOKEN".into(), token.into()));
        Scene::ready(w, Kind::Vault, prefix, bao.addr(), bao.root_token().into()).await
    }

    pub(crate) async fn aws(moto: &Moto) -> Scene {
        let mut w = World::new().await;
        let prefix = with_aws_store(&mut w, moto);
        let line = format!("name_prefix = \"{prefix}\"");
        w.edit_config(|c| {
            c.replacen("store = \"local\"", "store = \"aws\"", 1)
                .replace(&line, &format!("{line}\nlock_ttl_secs = {LEASE_SECS}"))
        });
        Scene::ready(w, Kind::Aws, prefix, moto.endpoint(), String::new()).await
    }

    pub(crate) async fn ready(
        mut w: World,
        kind: Kind,
        prefix: String,
        endpoint: String,
        root: String,
    ) -> Scene {
        if kind.custody() {
            w.ok(&["rotate", CRED]).await;
        } else {
            w.import_legacy(CRED).await;
        }
        let secrets = world::walk(w.dir.path())
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "key"))
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        Scene {
            w,
            kind,
            prefix,
            endpoint,
            root,
            secrets,
            unmanaged: usize::from(kind.custody()),
        }
    }

    /// A handle on the credential's store, for checks rekey's own output cannot make.
    pub(crate) async fn store(&self) -> Box<dyn SecretStore> {
        store_of(self.kind, &self.w, &self.endpoint, &self.root, &self.prefix).await
    }

    pub(crate) fn set(&self, key: &str, value: &str) {
        // Settings go into billing's section, right after its verify timeout.
        self.w.edit_config(|c| {
            c.replacen(
                "verify_timeout_secs = 60",
                &format!("verify_timeout_secs = 60\n{key} = {value}"),
                1,
            )
        });
    }

    /// The invariants every closed rotation leaves behind, checked through rekey, the store and
    /// the emulator. `generation` must be CURRENT in every store and its certificate on the app.
    pub(crate) async fn assert_settled(&mut self, generation: u64, context: &str) {
        self.assert_settled_since(0, generation, context).await;
    }

    /// Like [`Scene::assert_settled`], for a later rotation: only the certificates the app held
    /// from `history[since]` on (the one it held when that rotation began) must keep their keys.
    pub(crate) async fn assert_settled_since(
        &mut self,
        since: usize,
        generation: u64,
        context: &str,
    ) {
        let status = self.w.json(&["status", CRED]).await;
        let row = &status[0];
        assert_eq!(
            row["generation"], generation,
            "{context}: CURRENT\n{status}"
        );
        assert!(
            row["pending_generation"].is_null(),
            "{context}: PENDING cleared\n{status}"
        );
        assert!(
            row["open_rotation"].is_null(),
            "{context}: journal closed\n{status}"
        );
        let app = self.w.app_fingerprint(APP);
        assert_eq!(
            row["fingerprint"],
            app.as_str(),
            "{context}: the app holds CURRENT\n{status}"
        );
        for store in row["stores"].as_array().unwrap() {
            assert_eq!(
                store["matches_app"], true,
                "{context}: every store agrees\n{status}"
            );
        }

        let store = self.store().await;
        let stages = store.stages(CRED).await.unwrap();
        assert_eq!(
            stages.current.map(|v| v.generation),
            Some(Generation(generation)),
            "{context}: CURRENT read from the store"
        );
        if self.kind.aws() {
            let labels = aws_labels(&self.endpoint, &format!("{}/{CRED}", self.prefix)).await;
            let current = labels.iter().filter(|l| *l == "AWSCURRENT").count();
            assert_eq!(current, 1, "{context}: exactly one AWSCURRENT: {labels:?}");
            assert!(
                !labels.iter().any(|l| l == "AWSPENDING"),
                "{context}: {labels:?}"
            );
        }
        // Every certificate the app ever held still has its private key somewhere.
        let mut kept = BTreeSet::new();
        for g in 1..=generation + 2 {
            if let Some(k) = store.read_generation(CRED, Generation(g)).await.unwrap() {
                kept.insert(k.info.public.fingerprint().to_hex());
                // A key in custody is not here to leak: only which key it is, which may show.
                if !matches!(k.material, rekey_api::Material::Custody(_)) {
                    self.secrets
                        .push(rekey_testkit::conformance::secret_of(&k.material));
                }
            }
        }
        for pem in self
            .w
            .sim
            .certificate_history(APP)
            .iter()
            .skip(since.max(self.unmanaged))
        {
            let fp = rekey_api_fingerprint(pem);
            assert!(
                kept.contains(&fp),
                "{context}: the app held {fp}, whose key is in no store (kept: {kept:?})"
            );
        }

        let journal = self.w.json(&["journal", CRED]).await;
        // Empty when the only rotation was killed before its first entry.
        if let Some(last) = journal.as_array().unwrap().last() {
            assert!(
                matches!(last["step"].as_str(), Some("finalize" | "close"))
                    && last["phase"] == "done",
                "{context}: the journal ends closed: {last}"
            );
        }
        // A token signed by CURRENT is accepted.
        self.w.ok(&["verify", CRED]).await;
    }

    /// Occurrences of key material (armour, or any 32-character piece of a key's base64 body) in
    /// everything rekey printed, logged or journaled in this scene.
    pub(crate) fn leaks(&self) -> usize {
        let mut fragments = BTreeSet::new();
        for pem in &self.secrets {
            let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            let chars: Vec<char> = body.chars().collect();
            for start in (0..chars.len().saturating_sub(32)).step_by(16) {
                fragments.insert(chars[start..start + 32].iter().collect::<String>());
            }
        }
        assert!(
            fragments.len() > 100,
            "the scan needs the keys it looks for"
        );
        let mut texts = self.w.printed.clone();
        texts.extend(
            world::walk(self.w.dir.path())
                .into_iter()
                .filter(|p| p.file_name().is_some_and(|n| n == "journal.jsonl"))
                .map(|p| std::fs::read_to_string(p).unwrap()),
        );
        texts
            .iter()
            .map(|t| {
                let flat = t.replace("\\n", "").replace(['\n', '\r'], "");
                flat.matches("PRIVATE KEY").count()
                    + fragments
                        .iter()
                        .filter(|f| flat.contains(f.as_str()))
                        .count()
            })
            .sum()
    }

    pub(crate) fn assert_no_leaks(&self, context: &str) {
        assert_eq!(
            self.leaks(),
            0,
            "{context}: key material printed or journaled"
        );
    }
}

/// Every staging label on every version of `secret`, deprecated versions included.
pub(crate) async fn aws_labels(endpoint: &str, secret: &str) -> Vec<String> {
    let client = aws_sdk_secretsmanager::Client::new(&sdk_config(endpoint).await);
    version_labels(&client, secret)
        .await
        .into_values()
        .flatten()
        .collect()
}

/// Runs `scenarios` at most [`PARALLEL`] at a time, re-raising the first panic; returns how many
/// finished.
pub(crate) async fn run_all<F>(scenarios: impl IntoIterator<Item = F>) -> usize
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let limit = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let mut set = tokio::task::JoinSet::new();
    for scenario in scenarios {
        let limit = limit.clone();
        set.spawn(async move {
            let _permit = limit.acquire_owned().await.unwrap();
            scenario.await
        });
    }
    let mut finished = 0;
    while let Some(result) = set.join_next().await {
        if let Err(e) = result {
            std::panic::resume_unwind(e.into_panic());
        }
        finished += 1;
    }
    finished
}

/// A handle on a store of `kind` as a scene set it up: the world's `keys` folder, or the Vault or
/// AWS server at `endpoint` (root token `root`, names under `prefix`).
pub(crate) async fn store_of(
    kind: Kind,
    w: &World,
    endpoint: &str,
    root: &str,
    prefix: &str,
) -> Box<dyn SecretStore> {
    match kind {
        Kind::File => Box::new(rekey_file::FileStore::new(w.path("keys"))),
        Kind::Vault | Kind::VaultTransit => {
            let auth = rekey_vault::VaultAuth::Token(rekey_api::SecretString::new(root));
            let mut config = rekey_vault::VaultConfig::new(endpoint.to_string(), auth);
            config.path_prefix = prefix.to_string();
            if kind == Kind::VaultTransit {
                config.transit = Some(rekey_vault::TransitConfig {
                    key_prefix: format!("{prefix}-"),
                    ..rekey_vault::TransitConfig::default()
                });
            }
            let store = rekey_vault::VaultStore::new(config).unwrap();
            match store.transit() {
                Some(transit) => Box::new(rekey_api::CustodyStore::new(Box::new(store), transit)),
                None => Box::new(store),
            }
        }
        Kind::Aws | Kind::AwsKms => {
            let config = rekey_aws::AwsConfig {
                name_prefix: prefix.to_string(),
                kms: (kind == Kind::AwsKms).then(|| rekey_aws::KmsConfig {
                    alias_prefix: format!("{prefix}/"),
                    ..rekey_aws::KmsConfig::default()
                }),
                ..rekey_aws::AwsConfig::default()
            };
            let store =
                rekey_aws::AwsStore::with_sdk_config(config, &sdk_config(endpoint).await).unwrap();
            match store.kms() {
                Some(kms) => Box::new(rekey_api::CustodyStore::new(Box::new(store), kms)),
                None => Box::new(store),
            }
        }
    }
}
