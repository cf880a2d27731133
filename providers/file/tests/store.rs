//! What the file store promises beyond the shared contract (tests/conformance.rs): file modes,
//! atomic writes, a crash-torn journal, the OS lock, safe credential names.

use rekey_api::{
    ErrorKind, Generation, JournalEntry, NewVersion, Phase, RotationId, SecretStore, Step,
};
use rekey_file::FileStore;
use rekey_testkit::conformance::pair;
use std::os::unix::fs::PermissionsExt;

/// Stages and promotes generations `1..=n` of credential `billing`.
async fn rotate_to(store: &FileStore, n: u64) {
    for generation in 1..=n {
        let (key, cert) = pair();
        let rotation_id = RotationId(format!("r{generation}"));
        let new = NewVersion {
            generation: Generation(generation),
            key: &key,
            certificate: &cert,
            rotation_id: &rotation_id,
        };
        store.stage("billing", &new).await.unwrap();
        store
            .promote("billing", Generation(generation))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn keys_are_private_and_no_temporary_file_is_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path().join("keys"));
    rotate_to(&store, 2).await;
    let cred_dir = dir.path().join("keys/billing");
    for (file, mode) in [
        ("000001.key", 0o600),
        ("000002.key", 0o600),
        ("000002.crt", 0o644),
    ] {
        let actual = std::fs::metadata(cred_dir.join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(actual, mode, "{file}");
    }
    assert_eq!(
        std::fs::metadata(&cred_dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let leftovers: Vec<_> = std::fs::read_dir(&cred_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files left behind: {leftovers:?}"
    );
}

#[tokio::test]
async fn destroy_removes_the_files_and_revert_swaps_in_one_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    rotate_to(&store, 2).await;
    store.revert("billing", Generation(1)).await.unwrap();
    let stages: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("billing/stages.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        stages,
        serde_json::json!({"current": 1, "pending": null, "previous": 2})
    );

    store.destroy("billing", Generation(2)).await.unwrap();
    for file in ["000002.key", "000002.crt", "000002.json"] {
        assert!(
            !dir.path().join("billing").join(file).exists(),
            "{file} survived destroy"
        );
    }
    assert!(dir.path().join("billing/000001.key").exists());
}

#[tokio::test]
async fn journal_survives_a_torn_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    assert!(store.read_journal("billing").await.unwrap().is_empty());
    let entry = JournalEntry {
        rotation_id: RotationId("r1".into()),
        at: chrono::Utc::now(),
        step: Step::Stage,
        phase: Phase::Begin,
        generation: Generation(2),
        previous_generation: Some(Generation(1)),
        new_fingerprint: None,
        old_fingerprint: None,
        detail: None,
    };
    store.append_journal("billing", &entry).await.unwrap();
    store
        .append_journal(
            "billing",
            &JournalEntry {
                phase: Phase::Done,
                ..entry.clone()
            },
        )
        .await
        .unwrap();
    let path = dir.path().join("billing/journal.jsonl");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{\"rotation_id\":\"r1\",\"at\":");
    std::fs::write(&path, text).unwrap();

    let journal = store.read_journal("billing").await.unwrap();
    assert_eq!(
        journal,
        vec![
            entry.clone(),
            JournalEntry {
                phase: Phase::Done,
                ..entry
            }
        ]
    );
}

#[tokio::test]
async fn the_lock_is_exclusive_names_its_holder_and_is_released_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let guard = store.lock("billing", "rotation r7").await.unwrap();
    let err = store.lock("billing", "rotation r8").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(
        err.to_string()
            .contains(&format!("locked by rotation r7 pid {}", std::process::id())),
        "{err}"
    );
    drop(guard);
    store
        .lock("billing", "rotation r8")
        .await
        .expect("the lock is free once the holder is gone");
}

#[tokio::test]
async fn credential_names_cannot_escape_the_store() {
    let store = FileStore::new("/tmp/rekey-never-created");
    for name in ["../etc", "a/b", "", ".hidden"] {
        let err = store.stages(name).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{name}");
    }
}
