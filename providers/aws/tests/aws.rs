//! The AWS store against a real moto server: the conformance suite, Secrets Manager's labels
//! after every step (read back with the raw SDK), the AWS guard, tags, creation switched off, the
//! journal secret, error mapping, and the default credential chain (in a child process, so the
//! environment is set without touching this one); the lease is in `lease.rs`. Credentials are
//! always static dummies, so nothing ever asks the EC2 metadata address. Every test uses its own
//! prefix, so they run in parallel on one shared server.

mod common;

use common::*;
use rekey_api::{ErrorKind, Generation, SecretStore, Stage, Step};
use rekey_aws::{AwsConfig, AwsStore};
use rekey_testkit::conformance;
use rekey_testkit::moto::{Moto, sdk_config};
use std::process::Command;

#[tokio::test]
async fn conformance() {
    let env = Env::new("conformance").await;
    let (sdk, prefix) = (env.sdk.clone(), env.prefix.clone());
    let open = move || -> Box<dyn SecretStore> {
        Box::new(AwsStore::with_sdk_config(config(&prefix), &sdk).unwrap())
    };
    // An earlier rekey's journal: the secret `<prefix>/<credential>/journal` holding
    // `{"entries": [...]}`, created with the raw SDK.
    let legacy = |credential: &str, entries: Vec<serde_json::Value>| {
        let (raw, name) = (
            env.raw.clone(),
            format!("{}/{credential}/journal", env.prefix),
        );
        let value = serde_json::json!({ "entries": entries }).to_string();
        Box::pin(async move {
            raw.create_secret()
                .name(name)
                .secret_string(value)
                .send()
                .await
                .unwrap();
        }) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
    };
    conformance::secret_store(&open, "c", &legacy).await;
}

#[tokio::test]
async fn labels_follow_every_step() {
    let env = Env::new("labels").await;
    let store = env.store();
    assert_eq!(store.to_string(), format!("aws(us-east-1 {}/)", env.prefix));

    let debug = format!("{store:?}");
    assert!(
        !debug.contains("testing"),
        "no credentials in Debug: {debug}"
    );

    let first = pair();
    stage(&store, 1, "r1", &first).await.unwrap();
    let v = env.versions().await;
    assert_eq!(v.len(), 2, "placeholder + generation 1: {v:?}");
    let placeholder = env.holders("AWSCURRENT").await;
    assert_eq!(placeholder.len(), 1, "exactly one AWSCURRENT");
    let (_, value) = env.consumer_read(&env.secret()).await;
    assert!(
        value.get("private_key").is_none(),
        "the placeholder holds no key: {value}"
    );
    let g1 = env.holders("AWSPENDING").await;
    assert_eq!(g1.len(), 1);
    assert_ne!(g1, placeholder, "a staged key is never CURRENT");
    assert_eq!(labels(&v, &g1[0]), ["AWSPENDING"]);

    stage(&store, 1, "r1", &first).await.unwrap();
    assert_eq!(
        env.versions().await,
        v,
        "a replayed stage writes no second version"
    );

    store.promote(CRED, Generation(1)).await.unwrap();
    let v = env.versions().await;
    assert_eq!(
        labels(&v, &g1[0]),
        ["AWSCURRENT"],
        "no stray AWSPENDING: {v:?}"
    );
    assert_eq!(
        labels(&v, &placeholder[0]),
        ["AWSPREVIOUS"],
        "AWSPREVIOUS followed"
    );
    assert_eq!(env.holders("AWSCURRENT").await, g1);
    store.promote(CRED, Generation(1)).await.unwrap();
    assert_eq!(
        env.versions().await,
        v,
        "a replayed promote changes nothing"
    );

    let (version, value) = env.consumer_read(&env.secret()).await;
    assert_eq!(version, g1[0]);
    assert_eq!(value["private_key"], first.secret());
    assert_eq!(value["certificate"], first.certificate().pem());
    assert_eq!(value["generation"], "1");
    assert_eq!(
        value["fingerprint"],
        first.certificate().fingerprint.to_hex()
    );
    assert_eq!(value["rotation_id"], "r1");
    for field in ["not_after", "created_at"] {
        assert!(value[field].is_string(), "{field}: {value}");
    }

    let second = pair();
    stage(&store, 2, "r2", &second).await.unwrap();
    let g2 = env.holders("AWSPENDING").await;
    assert_eq!(
        env.holders("AWSCURRENT").await,
        g1,
        "stage leaves CURRENT alone"
    );
    store.promote(CRED, Generation(2)).await.unwrap();
    let v = env.versions().await;
    assert_eq!(labels(&v, &g2[0]), ["AWSCURRENT"]);
    assert_eq!(labels(&v, &g1[0]), ["AWSPREVIOUS"]);
    assert_eq!(labels(&v, &placeholder[0]), Vec::<String>::new());
    assert_eq!(env.holders("AWSCURRENT").await.len(), 1);
    assert!(env.holders("AWSPENDING").await.is_empty());
    let stages = store.stages(CRED).await.unwrap();
    assert_eq!(stages.current.unwrap().generation, Generation(2));
    assert_eq!(stages.previous.unwrap().generation, Generation(1));
    assert!(stages.pending.is_none());

    store.revert(CRED, Generation(1)).await.unwrap();
    let v = env.versions().await;
    assert_eq!(labels(&v, &g1[0]), ["AWSCURRENT"], "revert: {v:?}");
    assert_eq!(labels(&v, &g2[0]), ["AWSPREVIOUS"]);
    let (_, value) = env.consumer_read(&env.secret()).await;
    assert_eq!(value["generation"], "1");
    store.revert(CRED, Generation(1)).await.unwrap();
    assert_eq!(env.versions().await, v, "a replayed revert changes nothing");
}

#[tokio::test]
async fn a_foreign_pending_is_a_conflict_naming_its_version_and_a_resume_proceeds() {
    let env = Env::new("guard").await;
    let store = env.store();
    rotate(&store, 1).await;

    // Another tool staged its own version; its value is a valid generation 2.
    let theirs = pair();
    let foreign = "f0000000-0000-4000-8000-000000000001";
    let value = serde_json::json!({
        "private_key": theirs.secret(), "certificate": theirs.certificate().pem(),
        "generation": "2", "fingerprint": theirs.certificate().fingerprint.to_hex(), "rotation_id": "other",
    });
    env.raw
        .put_secret_value()
        .secret_id(env.secret())
        .client_request_token(foreign)
        .secret_string(value.to_string())
        .version_stages("AWSPENDING")
        .send()
        .await
        .unwrap();
    let err = stage(&store, 2, "mine", &pair()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(
        err.to_string().contains(foreign),
        "names the version: {err}"
    );
    assert!(
        !err.to_string().contains("PRIVATE KEY"),
        "no key bytes: {err}"
    );

    // Its owner aborts it; our rotation stages, is interrupted after the write (the label is
    // lost), and resumes: the same version gets the label back, no second version is written.
    store.destroy(CRED, Generation(2)).await.unwrap();
    let ours = pair();
    stage(&store, 2, "mine", &ours).await.unwrap();
    let pending = env.holders("AWSPENDING").await;
    env.raw
        .update_secret_version_stage()
        .secret_id(env.secret())
        .version_stage("AWSPENDING")
        .remove_from_version_id(&pending[0])
        .send()
        .await
        .unwrap();
    let before = env.versions().await;
    stage(&store, 2, "mine", &ours).await.unwrap();
    assert_eq!(
        env.holders("AWSPENDING").await,
        pending,
        "resumed onto the same version"
    );
    assert_eq!(
        env.versions().await.len(),
        before.len(),
        "no second version"
    );
    let read = store
        .read_stage(CRED, Stage::Pending)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conformance::secret_of(&read.material), ours.secret());
}

#[tokio::test]
async fn destroy_strips_every_label_of_the_generation() {
    let env = Env::new("destroy").await;
    let store = env.store();
    rotate(&store, 1).await;
    rotate(&store, 2).await;
    let g1 = env.holders("AWSPREVIOUS").await;
    store.destroy(CRED, Generation(1)).await.unwrap();
    let v = env.versions().await;
    assert_eq!(labels(&v, &g1[0]), Vec::<String>::new(), "{v:?}");
    assert!(
        store
            .read_stage(CRED, Stage::Previous)
            .await
            .unwrap()
            .is_none()
    );

    stage(&store, 3, "r3", &pair()).await.unwrap();
    let g3 = env.holders("AWSPENDING").await;
    store.destroy(CRED, Generation(3)).await.unwrap();
    assert_eq!(labels(&env.versions().await, &g3[0]), Vec::<String>::new());
    let err = store.destroy(CRED, Generation(2)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert_eq!(env.holders("AWSCURRENT").await.len(), 1);
}

#[tokio::test]
async fn tags_and_kms_key_are_set() {
    let env = Env::new("tags").await;
    let store = env.store_with(AwsConfig {
        kms_key_id: Some("alias/rekey-test".into()),
        ..config(&env.prefix)
    });
    stage(&store, 1, "r1", &pair()).await.unwrap();
    let tags = env.tags().await;
    assert_eq!(tags["rekey:credential"], CRED);
    assert_eq!(tags["rekey:generation"], "none");
    store.promote(CRED, Generation(1)).await.unwrap();
    rotate(&store, 2).await;
    assert_eq!(env.tags().await["rekey:generation"], "2");
    store.revert(CRED, Generation(1)).await.unwrap();
    assert_eq!(env.tags().await["rekey:generation"], "1");
    let out = env
        .raw
        .describe_secret()
        .secret_id(env.secret())
        .send()
        .await
        .unwrap();
    assert_eq!(out.kms_key_id(), Some("alias/rekey-test"));
}

#[tokio::test]
async fn creation_can_be_forbidden() {
    let env = Env::new("nocreate").await;
    let store = env.store_with(AwsConfig {
        create_missing: false,
        ..config(&env.prefix)
    });
    for err in [
        store.preflight(CRED).await.unwrap_err(),
        stage(&store, 1, "r1", &pair()).await.unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert!(err.to_string().contains(&env.secret()), "names it: {err}");
    }
    let err = store.lock(CRED, "me").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    let missing = env
        .raw
        .describe_secret()
        .secret_id(env.secret())
        .send()
        .await;
    assert!(missing.is_err(), "nothing was created");

    // A secret created by hand (without a value) is used.
    env.raw
        .create_secret()
        .name(env.secret())
        .send()
        .await
        .unwrap();
    store.preflight(CRED).await.unwrap();
    stage(&store, 1, "r1", &pair()).await.unwrap();
    store.promote(CRED, Generation(1)).await.unwrap();
    assert_eq!(env.holders("AWSCURRENT").await.len(), 1);

    // So is a lock secret without a value: its first lease is written like any other.
    env.raw
        .create_secret()
        .name(format!("{}/lock", env.secret()))
        .send()
        .await
        .unwrap();
    let first = store.lock(CRED, "me").await.unwrap();
    assert_eq!(first.fence(), 1);
    first.release().await.unwrap();
    let second = store.lock(CRED, "me").await.unwrap();
    assert_eq!(second.fence(), 2);
    second.release().await.unwrap();
}

#[tokio::test]
async fn the_journal_is_a_secret_readable_from_another_handle() {
    let env = Env::new("journal").await;
    let entry = |step: Step| journal_entry(step, None);
    let writer = env.store();
    let written: Vec<_> = Step::ALL.iter().map(|&s| entry(s)).collect();
    for e in &written {
        writer.append_journal(CRED, e).await.unwrap();
    }
    assert_eq!(
        conformance::unchained(env.store().read_journal(CRED).await.unwrap()),
        written
    );
    let (_, value) = env
        .consumer_read(&format!("{}/journal", env.secret()))
        .await;
    assert_eq!(value["entries"].as_array().unwrap().len(), written.len());

    // Concurrent appends from two handles lose nothing.
    let (a, b) = (env.store(), env.store());
    let (ea, eb) = (entry(Step::Generate), entry(Step::Stage));
    let (ra, rb) = tokio::join!(a.append_journal(CRED, &ea), b.append_journal(CRED, &eb));
    ra.unwrap();
    rb.unwrap();
    let read = env.store().scan_journal(CRED).await.unwrap();
    assert_eq!(read.entries.len(), written.len() + 2);
    // The loser of the race linked again on what the winner wrote.
    assert!(rekey_api::verify_chain(&read).intact(), "{read:?}");
}

/// Past 60,000 bytes the oldest entries drop off; the hash of the newest dropped one stays as
/// the value's `anchor`, so the kept entries still verify from their first.
#[tokio::test]
async fn a_bounded_journal_keeps_its_anchor_and_still_verifies() {
    let env = Env::new("bounded").await;
    let store = env.store();
    let long = "x".repeat(2_000);
    let mut n = 0;
    let read = loop {
        let mut entry = journal_entry(Step::Stage, None);
        entry.detail = Some(format!("{n} {long}"));
        store.append_journal(CRED, &entry).await.unwrap();
        n += 1;
        let read = store.scan_journal(CRED).await.unwrap();
        if read.entries.len() < n {
            break read;
        }
    };
    assert!(read.anchor.is_some(), "entries dropped, anchor kept");
    assert_eq!(read.anchor, read.entries[0].prev);
    assert!(rekey_api::verify_chain(&read).intact(), "{:?}", read.anchor);
    // One more append drops another and moves the anchor along.
    let mut entry = journal_entry(Step::Stage, None);
    entry.detail = Some(format!("{n} {long}"));
    store.append_journal(CRED, &entry).await.unwrap();
    let again = store.scan_journal(CRED).await.unwrap();
    assert_ne!(again.anchor, read.anchor);
    assert!(rekey_api::verify_chain(&again).intact());
}

#[tokio::test]
async fn a_damaged_journal_entry_is_named_and_the_others_are_still_read() {
    let env = Env::new("damaged").await;
    let store = env.store();
    let written: Vec<_> = [Step::Generate, Step::Stage, Step::Publish]
        .iter()
        .map(|&s| journal_entry(s, None))
        .collect();
    for e in &written {
        store.append_journal(CRED, e).await.unwrap();
    }
    // Another tool puts the journal back with its third entry mangled.
    let name = format!("{}/journal", env.secret());
    let (old, mut value) = env.consumer_read(&name).await;
    value["entries"][2] = serde_json::json!("do not print me");
    let put = env
        .raw
        .put_secret_value()
        .secret_id(&name)
        .secret_string(value.to_string())
        .version_stages("tampered")
        .send()
        .await
        .unwrap();
    let version = put.version_id().unwrap().to_string();
    env.raw
        .update_secret_version_stage()
        .secret_id(&name)
        .version_stage("AWSCURRENT")
        .move_to_version_id(&version)
        .remove_from_version_id(old)
        .send()
        .await
        .unwrap();
    assert_eq!(env.consumer_read(&name).await.0, version);

    let read = store.scan_journal(CRED).await.unwrap();
    assert_eq!(conformance::unchained(read.entries.clone()), written[..2]);
    assert_eq!(read.damaged.len(), 1);
    assert_eq!(
        read.damaged[0].location,
        format!("secret {name} version {version}, entry 3 of 3")
    );
    assert_eq!(read.damaged[0].problem, "JSON, but not a journal entry");
    assert!(read.repair.unwrap().contains("AWSCURRENT"));
    for err in [
        store.read_journal(CRED).await.unwrap_err(),
        store.append_journal(CRED, &written[0]).await.unwrap_err(),
        store.lock(CRED, "test").await.unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
        assert!(err.to_string().contains("entry 3 of 3"), "{err}");
        assert!(!err.to_string().contains("do not print me"), "{err}");
    }
    assert_eq!(env.consumer_read(&name).await.0, version, "nothing written");

    // A value that is no journal at all is refused whole, without quoting it.
    let put = env
        .raw
        .put_secret_value()
        .secret_id(&name)
        .secret_string("do not print me")
        .version_stages("tampered")
        .send()
        .await
        .unwrap();
    env.raw
        .update_secret_version_stage()
        .secret_id(&name)
        .version_stage("AWSCURRENT")
        .move_to_version_id(put.version_id().unwrap())
        .remove_from_version_id(&version)
        .send()
        .await
        .unwrap();
    let err = store.scan_journal(CRED).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(
        err.to_string().contains("is not a journal: not JSON"),
        "{err}"
    );
    assert!(!err.to_string().contains("do not print me"), "{err}");
}

#[tokio::test]
async fn discard_trades_awspending_for_a_discard_label() {
    let env = Env::new("discard").await;
    let store = env.store();
    rotate(&store, 1).await;
    rotate(&store, 2).await;
    let staged = pair();
    stage(&store, 3, "r3", &staged).await.unwrap();
    let g3 = env.holders("AWSPENDING").await;
    let before = env.versions().await;

    store.discard(CRED, Generation(3)).await.unwrap();
    let v = env.versions().await;
    assert_eq!(labels(&v, &g3[0]), ["REKEY_DISCARDED_G3"], "{v:?}");
    assert!(env.holders("AWSPENDING").await.is_empty(), "{v:?}");
    for kept in ["AWSCURRENT", "AWSPREVIOUS"] {
        let holder = env.holders(kept).await;
        assert_eq!(holder.len(), 1, "{kept}: {v:?}");
        assert_eq!(
            labels(&v, &holder[0]),
            labels(&before, &holder[0]),
            "{kept}"
        );
    }
    assert_eq!(v.len(), before.len(), "discard writes no version");
    let read = store
        .read_generation(CRED, Generation(3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conformance::secret_of(&read.material), staged.secret());
    store.discard(CRED, Generation(3)).await.unwrap();
    assert_eq!(
        env.versions().await,
        v,
        "a replayed discard changes nothing"
    );

    // A second key staged under the discarded generation cannot take its label: that would
    // leave the first key without any label.
    stage(&store, 3, "r3-again", &pair()).await.unwrap();
    let g3_again = env.holders("AWSPENDING").await;
    let err = store.discard(CRED, Generation(3)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.to_string().contains(&g3[0]), "names the holder: {err}");
    assert_eq!(env.holders("AWSPENDING").await, g3_again);

    // destroy strips the discard label too, and then nothing finds generation 3.
    store.destroy(CRED, Generation(3)).await.unwrap();
    let v = env.versions().await;
    for id in [&g3[0], &g3_again[0]] {
        assert_eq!(labels(&v, id), Vec::<String>::new(), "{v:?}");
    }
    assert!(
        store
            .read_generation(CRED, Generation(3))
            .await
            .unwrap()
            .is_none()
    );

    // Secrets Manager allows 20 labels per secret: with 17 taken besides the three stages,
    // discard refuses instead of failing half-way.
    stage(&store, 4, "r4", &pair()).await.unwrap();
    let g4 = env.holders("AWSPENDING").await;
    let unlabelled = v.iter().find(|(_, l)| l.is_empty()).unwrap().0.clone();
    for n in 100..117 {
        env.raw
            .update_secret_version_stage()
            .secret_id(env.secret())
            .version_stage(format!("REKEY_DISCARDED_G{n}"))
            .move_to_version_id(&unlabelled)
            .send()
            .await
            .unwrap();
    }
    let err = store.discard(CRED, Generation(4)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(
        err.hint().unwrap().contains("destroy old discarded"),
        "{err:?}"
    );
    assert_eq!(env.holders("AWSPENDING").await, g4, "nothing changed");
}

#[tokio::test]
async fn prune_removes_the_labels_of_all_but_the_newest_discarded_generation() {
    let env = Env::new("prune").await;
    let store = env.store();
    rotate(&store, 1).await;
    for g in [2, 3] {
        stage(&store, g, &format!("r{g}"), &pair()).await.unwrap();
        store.discard(CRED, Generation(g)).await.unwrap();
    }
    rotate(&store, 4).await;
    rotate(&store, 5).await;
    assert_eq!(store.prune(CRED).await.unwrap(), [Generation(2)]);
    let left: Vec<String> = env.versions().await.into_values().flatten().collect();
    assert!(!left.iter().any(|l| l == "REKEY_DISCARDED_G2"), "{left:?}");
    assert!(left.iter().any(|l| l == "REKEY_DISCARDED_G3"), "{left:?}");
    assert!(
        store
            .read_generation(CRED, Generation(2))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .read_generation(CRED, Generation(3))
            .await
            .unwrap()
            .is_some()
    );
    let stages = store.stages(CRED).await.unwrap();
    assert_eq!(stages.current.unwrap().generation, Generation(5));
    assert_eq!(stages.previous.unwrap().generation, Generation(4));
    assert_eq!(store.prune(CRED).await.unwrap(), [], "idempotent");
}

#[tokio::test]
async fn a_closed_port_is_unavailable() {
    // Refuses connections for the whole test: nothing else can take the port meanwhile.
    let refusing = rekey_testkit::receiver::RefusingPort::bind();
    let endpoint = refusing.url("");
    let store = AwsStore::with_sdk_config(config("rekey"), &sdk_config(&endpoint).await).unwrap();
    let err = store.stages(CRED).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_temporary());
    assert!(err.to_string().contains("rekey/billing"), "{err}");
}

#[tokio::test]
async fn configuration_is_checked_before_any_request() {
    let err = AwsStore::connect(AwsConfig {
        endpoint_url: Some("http://10.1.2.3:4566".into()),
        ..AwsConfig::default()
    })
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    let store = AwsStore::with_sdk_config(config("rekey"), &sdk_config("http://127.0.0.1:9").await)
        .unwrap();
    let err = store.stages("a/b").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
}

/// Runs `child_connect_through_the_default_chain` in a child process with `env` (and IMDS off,
/// no profile files), returning its combined output.
fn child(env: &[(&str, &str)]) -> String {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "child_connect_through_the_default_chain",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/rekey-aws-test/config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/rekey-aws-test/credentials",
        )
        .env("HOME", "/nonexistent/rekey-aws-test");
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child failed: {text}");
    text
}

#[test]
fn the_default_chain_finds_env_credentials_and_reports_missing_ones() {
    let endpoint = Moto::shared().endpoint();
    let prefix = Moto::shared().unique_name("chain");
    let with = child(&[
        ("REKEY_AWS_CHILD", "with"),
        ("REKEY_AWS_CHILD_ENDPOINT", &endpoint),
        ("REKEY_AWS_CHILD_PREFIX", &prefix),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
    ]);
    assert!(with.contains("child: ok with"), "{with}");
    let without = child(&[
        ("REKEY_AWS_CHILD", "without"),
        ("REKEY_AWS_CHILD_ENDPOINT", &endpoint),
        ("REKEY_AWS_CHILD_PREFIX", &prefix),
        ("AWS_REGION", "us-east-1"),
    ]);
    assert!(without.contains("child: ok without"), "{without}");
}

/// The child half of the test above; does nothing unless started by it.
#[tokio::test]
async fn child_connect_through_the_default_chain() {
    let Ok(mode) = std::env::var("REKEY_AWS_CHILD") else {
        return;
    };
    let store = AwsStore::connect(AwsConfig {
        endpoint_url: Some(std::env::var("REKEY_AWS_CHILD_ENDPOINT").unwrap()),
        name_prefix: std::env::var("REKEY_AWS_CHILD_PREFIX").unwrap(),
        ..AwsConfig::default()
    })
    .await
    .unwrap();
    if mode == "with" {
        store.preflight(CRED).await.unwrap();
        rotate(&store, 1).await;
        assert_eq!(
            store
                .stages(CRED)
                .await
                .unwrap()
                .current
                .unwrap()
                .generation,
            Generation(1)
        );
    } else {
        let err = store.preflight(CRED).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
        assert!(err.hint().is_some());
        let err = store.stages(CRED).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err:?}");
    }
    println!("child: ok {mode}");
}
