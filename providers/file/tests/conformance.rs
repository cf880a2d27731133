//! The file store against the shared `SecretStore` contract.

use rekey_api::SecretStore;
use rekey_file::FileStore;

#[tokio::test]
async fn the_file_store_meets_the_secret_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("keys");
    let open = move || Box::new(FileStore::new(&root)) as Box<dyn SecretStore>;
    rekey_testkit::conformance::secret_store(&open, "file").await;
}
