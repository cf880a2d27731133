//! What the file store promises beyond the shared contract (tests/conformance.rs): file modes,
//! atomic writes, a crash-torn journal, the OS lock and its fence across processes, keys kept
//! after a discard, safe credential names.

use rekey_api::{
    ErrorKind, Generation, JournalEntry, NewVersion, Phase, RotationId, SecretStore, Stage, Step,
};
use rekey_file::FileStore;
use rekey_testkit::conformance::{self, pair, stage_as};
use std::io::BufRead;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

/// Stages and promotes generations `1..=n` of credential `billing`.
async fn rotate_to(store: &FileStore, n: u64) {
    for generation in 1..=n {
        let p = pair();
        let rotation_id = RotationId(format!("r{generation}"));
        let new = NewVersion {
            generation: Generation(generation),
            material: &p.material,
            public: &p.public,
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
    let entry = journal_entry(Phase::Begin, None);
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

    let journal = conformance::unchained(store.read_journal("billing").await.unwrap());
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
    let guard = store.lock("billing", "rotation r7 (pid 42)").await.unwrap();
    let err = store.lock("billing", "rotation r8").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Busy);
    // The holder as given, once: it names its own process.
    assert!(
        err.to_string().ends_with("locked by rotation r7 (pid 42)"),
        "{err}"
    );
    drop(guard);
    store
        .lock("billing", "rotation r8")
        .await
        .expect("the lock is free once the holder is gone");
}

/// A lease that ended leaves no holder behind: a runner refused while the next holder has taken
/// the OS lock but not yet written its note (forced here by holding the lock from outside) says
/// "another rekey process", never the holder that is gone.
#[tokio::test]
async fn a_refused_runner_never_names_a_holder_whose_lease_ended() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let lease = store
        .lock("billing", "rekey import (pid 41)")
        .await
        .unwrap();
    lease.release().await.unwrap();
    let dropped = store
        .lock("billing", "rekey rotate (pid 42)")
        .await
        .unwrap();
    drop(dropped);
    let lock_file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.path().join("billing").join("lock"))
        .unwrap();
    lock_file.try_lock().expect("nobody holds the lock");
    let err = store.lock("billing", "rekey run").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Busy);
    assert!(
        err.to_string().ends_with("locked by another rekey process"),
        "{err}"
    );
}

#[tokio::test]
async fn credential_names_cannot_escape_the_store() {
    let store = FileStore::new("/tmp/rekey-never-created");
    for name in ["../etc", "a/b", "", ".hidden"] {
        let err = store.stages(name).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{name}");
    }
}

/// A journal entry of rotation `r1` under lease `fence`.
fn journal_entry(phase: Phase, fence: Option<u64>) -> JournalEntry {
    conformance::journal_entry("r1", Step::Stage, phase, fence)
}

#[tokio::test]
async fn appending_after_a_torn_line_drops_the_fragment() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let begin = journal_entry(Phase::Begin, Some(1));
    store.append_journal("billing", &begin).await.unwrap();
    let path = dir.path().join("billing/journal.jsonl");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{\"rotation_id\":\"r1\",\"at\":");
    std::fs::write(&path, text).unwrap();

    let done = journal_entry(Phase::Done, Some(1));
    store.append_journal("billing", &done).await.unwrap();
    assert_eq!(
        conformance::unchained(store.read_journal("billing").await.unwrap()),
        vec![begin, done]
    );
}

/// Set in the child process of `a_killed_holder_leaves_a_fence_below_the_next_lease`: the store
/// root in which the child takes the lock and waits to be killed.
const HOLD_LOCK_IN: &str = "REKEY_FILE_TEST_HOLD_LOCK_IN";

#[tokio::test]
async fn a_killed_holder_leaves_a_fence_below_the_next_lease() {
    if let Ok(root) = std::env::var(HOLD_LOCK_IN) {
        // The child: hold the lease until the parent's SIGKILL; never release it.
        let lease = FileStore::new(root)
            .lock(
                "billing",
                &format!("doomed child (pid {})", std::process::id()),
            )
            .await
            .unwrap();
        println!("fence {}", lease.fence());
        std::thread::sleep(std::time::Duration::from_secs(60));
        panic!("the parent never killed this lease holder");
    }

    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let first = store.lock("billing", "parent").await.unwrap();
    let first_fence = first.fence();
    first.release().await.unwrap();

    // Another process, so the OS lock and the fence really outlive a holder that dies.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "a_killed_holder_leaves_a_fence_below_the_next_lease",
            "--exact",
            "--nocapture",
        ])
        .env(HOLD_LOCK_IN, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let child_fence: u64 = std::io::BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.strip_prefix("fence ").map(|n| n.parse().unwrap()))
        .expect("the child prints its fence once it holds the lease");
    assert!(
        child_fence > first_fence,
        "{child_fence} after {first_fence}"
    );

    let err = store.lock("billing", "parent").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Busy, "{err}");
    assert!(
        err.to_string()
            .contains(&format!("locked by doomed child (pid {})", child.id())),
        "{err}"
    );

    child.kill().unwrap(); // SIGKILL: no destructor, no release
    child.wait().unwrap();
    let next = store
        .lock("billing", "parent")
        .await
        .expect("the OS freed the dead holder's lock");
    assert!(
        next.fence() > child_fence,
        "{} after the killed holder's {child_fence}",
        next.fence()
    );
    next.confirm().await.unwrap();
}

#[tokio::test]
async fn confirm_reports_a_lost_lease_when_the_counter_moved() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let lease = store.lock("billing", "rotation r1").await.unwrap();
    lease.confirm().await.unwrap();
    let fence = lease.fence();

    // What a second holder would write after someone removed the lock file by hand.
    let counter = dir.path().join("billing/lease");
    std::fs::write(&counter, format!("{}\n", fence + 1)).unwrap();
    let err = lease.confirm().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LeaseLost, "{err}");
    let message = err.to_string();
    for part in [
        "'billing'".to_string(),
        format!("reads {}", fence + 1),
        format!("holds lease {fence}"),
    ] {
        assert!(message.contains(&part), "{part} missing from: {message}");
    }
    assert!(err.hint().is_some());

    std::fs::remove_file(&counter).unwrap();
    let err = lease.confirm().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LeaseLost, "a removed counter: {err}");
}

#[tokio::test]
async fn a_lost_counter_file_restarts_above_the_journals_greatest_fence() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    store
        .append_journal("billing", &journal_entry(Phase::Begin, Some(41)))
        .await
        .unwrap();
    let lease = store.lock("billing", "rotation r1").await.unwrap();
    assert_eq!(lease.fence(), 42);
    store
        .append_journal("billing", &journal_entry(Phase::Done, Some(lease.fence())))
        .await
        .expect("the new holder can append");
}

#[tokio::test]
async fn discarded_keys_stay_on_disk_and_are_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    rotate_to(&store, 1).await;
    let discarded = pair();
    stage_as(&store, "billing", 2, "r2", &discarded)
        .await
        .unwrap();
    store.discard("billing", Generation(2)).await.unwrap();
    let stages: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("billing/stages.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        stages,
        serde_json::json!({"current": 1, "pending": null, "previous": null})
    );
    for file in ["000002.key", "000002.crt", "000002.json"] {
        assert!(
            dir.path().join("billing").join(file).exists(),
            "{file} removed by discard"
        );
    }

    // The next rotation planning generation 2 again must not replace a key the app may trust.
    let err = stage_as(&store, "billing", 2, "r3", &pair())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.to_string().contains("rotation r2"), "{err}");
    let kept = store
        .read_generation("billing", Generation(2))
        .await
        .unwrap()
        .expect("the discarded key");
    assert_eq!(conformance::secret_of(&kept.material), discarded.secret());

    // The rotation that wrote those files may rewrite them: that is a stage interrupted before
    // its stage map write, resumed with a key that never left memory.
    let resumed = pair();
    stage_as(&store, "billing", 2, "r2", &resumed)
        .await
        .expect("the same rotation resumes");
    let pending = store
        .read_stage("billing", Stage::Pending)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conformance::secret_of(&pending.material), resumed.secret());
}

#[tokio::test]
async fn a_damaged_line_is_named_by_file_and_line_and_everything_that_writes_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let entries: Vec<JournalEntry> = [Phase::Begin, Phase::Done, Phase::Failed]
        .into_iter()
        .map(|phase| journal_entry(phase, Some(1)))
        .collect();
    for e in &entries {
        store.append_journal("billing", e).await.unwrap();
    }
    let path = dir.path().join("billing/journal.jsonl");
    let text = std::fs::read(&path).unwrap();
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    // Line 2 is bytes that are not UTF-8, a blank line follows (harmless), line 4 is cut off.
    let damaged = [
        lines[0],
        b"\xff\xfe {\"secret\": 1}",
        b"   ",
        &lines[1][..20],
        lines[2],
        b"",
    ]
    .join(&b'\n');
    std::fs::write(&path, &damaged).unwrap();
    std::fs::write(dir.path().join("billing/lease"), "7\n").unwrap();

    let read = store.scan_journal("billing").await.unwrap();
    assert_eq!(
        conformance::unchained(read.entries.clone()),
        [entries[0].clone(), entries[2].clone()]
    );
    let found: Vec<(String, &str, usize)> = read
        .damaged
        .iter()
        .map(|d| (d.location.clone(), d.problem.as_str(), d.after))
        .collect();
    let at = |line: usize| format!("{}:{line}", path.display());
    assert_eq!(
        found,
        [
            (at(2), "not UTF-8 text (byte 1)", 1),
            (at(4), "cut off (column 20)", 1),
        ]
    );
    assert!(read.repair.unwrap().contains("sed -i.damaged '2d;4d'"));

    for err in [
        store.read_journal("billing").await.unwrap_err(),
        store
            .append_journal("billing", &entries[0])
            .await
            .unwrap_err(),
        store.preflight("billing").await.unwrap_err(),
        store.lock("billing", "test").await.unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
        assert!(err.to_string().contains(&at(2)), "{err}");
        assert!(err.to_string().contains("and 1 more"), "{err}");
        assert!(!err.to_string().contains("secret"), "{err}");
    }
    assert_eq!(std::fs::read(&path).unwrap(), damaged, "nothing appended");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("billing/lease")).unwrap(),
        "7\n",
        "no lease taken"
    );
}

/// The generations with a file in `dir`, ascending.
fn on_disk(dir: &std::path::Path) -> Vec<u64> {
    let mut found: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.split_once('.')?.0.parse().ok()
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

#[tokio::test]
async fn prune_keeps_the_staged_generations_and_the_newest_retired_ones() {
    let dir = tempfile::tempdir().unwrap();
    let cred = dir.path().join("billing");
    let store = FileStore::new(dir.path());
    assert_eq!(store.prune("billing").await.unwrap(), [], "no folder yet");
    rotate_to(&store, 5).await; // CURRENT 5, PREVIOUS 4
    stage_as(&store, "billing", 7, "r7", &pair()).await.unwrap(); // PENDING 7
    // A leftover of 2 without its key (a destroy cut off half-way) and a stray file.
    std::fs::remove_file(cred.join("000002.key")).unwrap();
    std::fs::write(cred.join("notes.txt"), "mine").unwrap();

    assert_eq!(
        store.prune("billing").await.unwrap(),
        [Generation(1), Generation(2)],
        "3 is the one retired generation kept"
    );
    assert_eq!(on_disk(&cred), [3, 4, 5, 7]);
    assert!(cred.join("notes.txt").exists(), "only generation files go");
    assert_eq!(store.prune("billing").await.unwrap(), [], "idempotent");
    let stages = store.stages("billing").await.unwrap();
    assert_eq!(stages.current.unwrap().generation, Generation(5));
    assert_eq!(stages.previous.unwrap().generation, Generation(4));
    assert_eq!(stages.pending.unwrap().generation, Generation(7));

    let strict = FileStore::new(dir.path()).keeping(0);
    assert_eq!(strict.prune("billing").await.unwrap(), [Generation(3)]);
    assert_eq!(on_disk(&cred), [4, 5, 7]);
}

#[tokio::test]
async fn exposure_names_key_files_and_folders_others_can_open() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("keys");
    let store = FileStore::new(&root);
    assert_eq!(store.exposure("billing").await, []);
    rotate_to(&store, 2).await;
    assert_eq!(store.exposure("billing").await, []);
    let chmod = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    let key = root.join("billing/000002.key");
    chmod(&key, 0o640);
    let found = store.exposure("billing").await;
    assert_eq!(found.len(), 1);
    assert!(found[0].key_exposed);
    assert!(
        found[0].message.starts_with(&format!(
            "{} (the CURRENT key, generation 2) is mode 0640: other users of this machine can read it",
            key.display()
        )),
        "{}",
        found[0].message
    );
    chmod(&key, 0o600);
    chmod(&root.join("billing"), 0o750);
    let found = store.exposure("billing").await;
    assert_eq!(found.len(), 1);
    assert!(!found[0].key_exposed, "{}", found[0].message);
    chmod(&root.join("billing"), 0o700);
    chmod(&root, 0o777);
    let found = store.exposure("billing").await;
    assert!(found[0].key_exposed && found[0].message.contains("the store's folder"));
    chmod(&root, 0o1777);
    assert_eq!(
        store.exposure("billing").await,
        [],
        "sticky: entries stay their owners'"
    );
}
