//! The rotation lease in Secrets Manager, against the real moto server: conflicts, release and
//! expiry, an expired lease taken over with the old holder fenced out, racing takers, confirm.

mod common;

use common::*;
use rekey_api::{ErrorKind, SecretStore, Step};
use rekey_aws::AwsConfig;
use serde_json::Value;
use std::time::Duration;

#[tokio::test]
async fn the_lock_conflicts_releases_and_expires() {
    let env = Env::new("lock").await;
    let short = AwsConfig {
        lock_ttl: LEASE_TTL,
        ..config(&env.prefix)
    };
    let (first, second) = (env.store_with(short.clone()), env.store_with(short));
    let held = first.lock(CRED, "holder one").await.unwrap();
    let err = second.lock(CRED, "holder two").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Busy, "{err}");
    assert!(err.to_string().contains("holder one"), "{err}");
    held.release().await.unwrap();
    let (_, value) = env.consumer_read(&format!("{}/lock", env.secret())).await;
    assert!(value["released_at"].is_string(), "{value}");

    // An expired lease is taken over; the old holder's release is then refused.
    let stale = first.lock(CRED, "holder one").await.unwrap();
    advance_clock(LEASE_TTL + Duration::from_secs(1));
    let taken = second.lock(CRED, "holder two").await.unwrap();
    let err = stale.release().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LeaseLost, "{err}");
    drop(taken); // released in the background; the next lock() waits for it
    let again = second.lock(CRED, "holder three").await.unwrap();
    again.release().await.unwrap();
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_and_the_old_holder_is_fenced_out() {
    let env = Env::new("takeover").await;
    let short = AwsConfig {
        lock_ttl: LEASE_TTL,
        ..config(&env.prefix)
    };
    let (runner_a, runner_b) = (env.store_with(short.clone()), env.store_with(short));
    let a = runner_a.lock(CRED, "runner a").await.unwrap();
    let a_entry = journal_entry(Step::Generate, Some(a.fence()));
    runner_a.append_journal(CRED, &a_entry).await.unwrap();

    // A stalls past its time to live without confirming; B takes the lease and journals.
    advance_clock(LEASE_TTL + Duration::from_secs(1));
    let b = runner_b.lock(CRED, "runner b").await.unwrap();
    assert!(
        b.fence() > a.fence(),
        "fences increase: {} then {}",
        a.fence(),
        b.fence()
    );
    let b_entry = journal_entry(Step::Generate, Some(b.fence()));
    runner_b.append_journal(CRED, &b_entry).await.unwrap();

    let err = a.confirm().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LeaseLost, "{err}");
    for named in [CRED, &a.fence().to_string(), &b.fence().to_string()] {
        assert!(err.to_string().contains(named), "names {named}: {err}");
    }
    assert!(err.hint().is_some(), "{err:?}");

    let stale = journal_entry(Step::Stage, Some(a.fence()));
    let err = runner_a.append_journal(CRED, &stale).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LeaseLost, "{err}");
    assert_eq!(
        rekey_testkit::conformance::unchained(runner_b.read_journal(CRED).await.unwrap()),
        [a_entry, b_entry],
        "A's entry after the takeover was not written"
    );

    // B still holds the lease: A's release is refused and leaves it alone.
    let err = a.release().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LeaseLost, "{err}");
    b.confirm().await.unwrap();
    let (_, value) = env.consumer_read(&format!("{}/lock", env.secret())).await;
    assert_eq!(value["fence"], b.fence(), "{value}");
    assert!(value.get("released_at").is_none(), "{value}");
    let b_fence = b.fence();
    b.release().await.unwrap();

    // Deleting the lock secret (say, to free a stuck lock by hand) does not reset the fence:
    // the journal remembers B's, so the next lease still outnumbers it.
    env.raw
        .delete_secret()
        .secret_id(format!("{}/lock", env.secret()))
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    let c = env.store().lock(CRED, "runner c").await.unwrap();
    assert!(c.fence() > b_fence, "{} after {b_fence}", c.fence());
    c.release().await.unwrap();
}

#[tokio::test]
async fn of_two_racing_takers_exactly_one_wins() {
    let env = Env::new("race").await;
    // "payroll"'s lock secret exists without a value, as with create_missing = false;
    // "billing"'s does not exist; later rounds race over a released record.
    let empty = "payroll";
    env.raw
        .create_secret()
        .name(format!("{}/{empty}/lock", env.prefix))
        .send()
        .await
        .unwrap();
    for credential in [CRED, empty] {
        let mut last_fence = 0;
        for round in 0..3 {
            let (a, b) = (env.store(), env.store());
            let (ra, rb) =
                tokio::join!(a.lock(credential, "racer a"), b.lock(credential, "racer b"));
            let won = match (ra, rb) {
                (Ok(won), Err(lost)) | (Err(lost), Ok(won)) => {
                    assert_eq!(lost.kind(), ErrorKind::Busy, "{credential} {round}: {lost}");
                    won
                }
                (a, b) => panic!("{credential} {round}: not exactly one winner: {a:?} / {b:?}"),
            };
            assert!(won.fence() > last_fence, "{credential} {round}");
            last_fence = won.fence();
            won.release().await.unwrap();
        }
    }
}

#[tokio::test]
async fn confirm_extends_a_lease_past_half_its_time_to_live() {
    let env = Env::new("confirm").await;
    let ttl = AwsConfig {
        lock_ttl: LEASE_TTL,
        ..config(&env.prefix)
    };
    let lock_secret = format!("{}/lock", env.secret());
    let expiry = |value: &Value| {
        chrono::DateTime::parse_from_rfc3339(value["expires_at"].as_str().unwrap()).unwrap()
    };
    let held = env
        .store_with(ttl.clone())
        .lock(CRED, "holder")
        .await
        .unwrap();
    let (taken, record) = env.consumer_read(&lock_secret).await;

    held.confirm().await.unwrap();
    assert_eq!(
        env.consumer_read(&lock_secret).await.0,
        taken,
        "a fresh lease is confirmed without a write"
    );

    advance_clock(LEASE_TTL / 2 + Duration::from_secs(1));
    held.confirm().await.unwrap();
    let (extended, value) = env.consumer_read(&lock_secret).await;
    assert_ne!(
        extended, taken,
        "past half the time to live, confirm writes"
    );
    assert!(expiry(&value) > expiry(&record), "{record} then {value}");
    assert_eq!(value["fence"], held.fence());

    // Expired, but nobody took it: confirm extends it and it is still held.
    advance_clock(LEASE_TTL + Duration::from_secs(1));
    held.confirm().await.unwrap();
    let (_, value) = env.consumer_read(&lock_secret).await;
    assert!(expiry(&value) > rekey_api::now(), "{value}");
    assert_eq!(value["fence"], held.fence());
    let err = env.store_with(ttl).lock(CRED, "another").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Busy, "{err}");
    held.release().await.unwrap();
}
