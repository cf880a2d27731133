//! The file store against the shared `SecretStore` contract.

use rekey_api::SecretStore;
use rekey_file::FileStore;
use std::os::unix::fs::PermissionsExt;

#[tokio::test]
async fn the_file_store_meets_the_secret_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("keys");
    let legacy_root = root.clone();
    let open = move || Box::new(FileStore::new(&root)) as Box<dyn SecretStore>;
    // An earlier rekey's journal: one JSON line per entry in the credential's folder.
    let legacy = move |credential: &str, entries: Vec<serde_json::Value>| {
        let folder = legacy_root.join(credential);
        for d in [&legacy_root, &folder] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        let lines: String = entries.iter().map(|e| format!("{e}\n")).collect();
        std::fs::write(folder.join("journal.jsonl"), lines).unwrap();
        Box::pin(async {}) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
    };
    rekey_testkit::conformance::secret_store(&open, "file", &legacy).await;
}
