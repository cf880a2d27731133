//! The file store against its contract, on a real temporary directory.

use rekey_api::{
    Certificate, ErrorKind, Generation, JournalEntry, KeyMaterial, NewVersion, Phase, RotationId,
    SecretStore, Stage, Step,
};
use rekey_file::FileStore;
use std::os::unix::fs::PermissionsExt;

/// A throwaway key pair; the store does not care about the algorithm, so P-256 keeps tests fast.
fn pair() -> (KeyMaterial, Certificate) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["test".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (
        KeyMaterial::from_pem(key.serialize_pem()).unwrap(),
        Certificate::from_pem(&cert.pem()).unwrap(),
    )
}

async fn stage(
    store: &FileStore,
    generation: u64,
    key: &KeyMaterial,
    cert: &Certificate,
) -> rekey_api::Result<()> {
    let rotation_id = RotationId(format!("r{generation}"));
    store
        .stage(
            "billing",
            &NewVersion {
                generation: Generation(generation),
                key,
                certificate: cert,
                rotation_id: &rotation_id,
            },
        )
        .await
}

#[tokio::test]
async fn stage_then_promote_moves_current_to_previous_and_keeps_keys_private() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path().join("keys"));
    assert_eq!(store.stages("billing").await.unwrap(), Default::default());

    let (k1, c1) = pair();
    stage(&store, 1, &k1, &c1).await.unwrap();
    let stages = store.stages("billing").await.unwrap();
    assert!(
        stages.current.is_none(),
        "staging must never create CURRENT"
    );
    assert_eq!(
        stages.pending.as_ref().unwrap().certificate.fingerprint,
        c1.fingerprint
    );
    store.promote("billing", Generation(1)).await.unwrap();

    let (k2, c2) = pair();
    stage(&store, 2, &k2, &c2).await.unwrap();
    let read = store
        .read_key("billing", Stage::Pending)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.key.expose_secret_pem(), k2.expose_secret_pem());
    assert_eq!(
        store
            .stages("billing")
            .await
            .unwrap()
            .current
            .unwrap()
            .generation,
        Generation(1)
    );

    store.promote("billing", Generation(2)).await.unwrap();
    store
        .promote("billing", Generation(2))
        .await
        .expect("promoting the current generation again is a no-op");
    let stages = store.stages("billing").await.unwrap();
    assert_eq!(
        stages.current.unwrap().certificate.fingerprint,
        c2.fingerprint
    );
    assert_eq!(
        stages.previous.unwrap().certificate.fingerprint,
        c1.fingerprint
    );
    assert!(stages.pending.is_none());
    let previous = store
        .read_key("billing", Stage::Previous)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(previous.key.expose_secret_pem(), k1.expose_secret_pem());

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
async fn stage_is_idempotent_per_rotation_and_refuses_a_second_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let (k1, c1) = pair();
    stage(&store, 1, &k1, &c1).await.unwrap();
    stage(&store, 1, &k1, &c1)
        .await
        .expect("the same generation and certificate again is a retry");

    let (k2, c2) = pair();
    let err = stage(&store, 2, &k2, &c2).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(
        err.to_string()
            .contains("generation 1 pending (rotation r1)"),
        "{err}"
    );

    store.promote("billing", Generation(1)).await.unwrap();
    let err = stage(&store, 1, &k2, &c2).await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Conflict,
        "a generation at or below CURRENT must be refused"
    );
    let err = store.promote("billing", Generation(5)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn destroy_removes_the_files_and_revert_swaps_in_one_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    for generation in 1..=2 {
        let (key, cert) = pair();
        stage(&store, generation, &key, &cert).await.unwrap();
        store
            .promote("billing", Generation(generation))
            .await
            .unwrap();
    }
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
