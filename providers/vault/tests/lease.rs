//! The rotation lease in Vault, against the real OpenBao server: conflicts, release and expiry,
//! a lease taken over after expiry is lost to its old holder (its fence is refused), confirm
//! extends it, racing takers cannot both win, and a record from before fences is fence zero.

mod common;

use common::*;
use rekey_api::{ErrorKind, JournalEntry, SecretStore};
use rekey_testkit::openbao::OpenBao;
use rekey_vault::VaultStore;
use std::time::Duration;

#[tokio::test]
async fn the_lock_conflicts_releases_and_expires() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("lock");
    let mut cfg = config(bao, &prefix, token(bao.root_token()));
    cfg.lock_ttl = LEASE_TTL;
    let short = VaultStore::new(cfg).unwrap();
    let other = root_store(bao, &prefix);

    let held = short.lock(CRED, "runner-a").await.unwrap();
    let err = other.lock(CRED, "runner-b").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Busy);
    assert!(
        err.to_string().contains("runner-a") && err.to_string().contains("until"),
        "{err}"
    );
    held.release().await.unwrap();
    assert_eq!(
        kv_field(bao, &format!("{prefix}/{CRED}/lock"), "holder"),
        "runner-a"
    );
    assert!(!kv_field(bao, &format!("{prefix}/{CRED}/lock"), "released_at").is_empty());

    // A crashed holder (never released) is freed by the lease; its late release is refused
    // and leaves the new holder's lease alone.
    let crashed = short.lock(CRED, "runner-c").await.unwrap();
    advance_clock(LEASE_TTL + Duration::from_secs(1));
    let taken = other.lock(CRED, "runner-d").await.unwrap();
    let err = crashed.release().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LeaseLost, "{err}");
    assert_eq!(
        kv_field(bao, &format!("{prefix}/{CRED}/lock"), "holder"),
        "runner-d"
    );
    taken.confirm().await.unwrap();
    taken.release().await.unwrap();

    // Dropping a guard releases it for the next lock() of the same store.
    let guard = other.lock(CRED, "runner-e").await.unwrap();
    drop(guard);
    other
        .lock(CRED, "runner-f")
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
}

/// A journal entry of `rotation` written under lease `fence`.
fn fenced(n: i64, rotation: &str, fence: u64) -> JournalEntry {
    JournalEntry {
        fence: Some(fence),
        ..entry(n, rotation)
    }
}

/// A runner whose lease expired and was taken over learns it from `confirm()` and can no
/// longer journal; its late release leaves the new holder's lease alone.
#[tokio::test]
async fn a_lease_taken_over_after_expiry_is_lost_to_its_old_holder() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("takeover");
    let mut cfg = config(bao, &prefix, token(bao.root_token()));
    cfg.lock_ttl = LEASE_TTL;
    let a_store = VaultStore::new(cfg).unwrap();
    let b_store = root_store(bao, &prefix);

    let a = a_store.lock(CRED, "runner-a").await.unwrap();
    a_store
        .append_journal(CRED, &fenced(1, "ra", a.fence()))
        .await
        .unwrap();
    advance_clock(LEASE_TTL + Duration::from_secs(1));
    let b = b_store.lock(CRED, "runner-b").await.unwrap();
    assert!(b.fence() > a.fence(), "{} then {}", a.fence(), b.fence());

    let err = a.confirm().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LeaseLost, "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("'{CRED}'"))
            && text.contains(&format!("lease {}", a.fence()))
            && text.contains(&format!("lease {} of runner-b", b.fence())),
        "{text}"
    );
    assert!(
        err.hint().is_some_and(|h| h.contains("lock_ttl")),
        "{err:?}"
    );

    b_store
        .append_journal(CRED, &fenced(2, "rb", b.fence()))
        .await
        .unwrap();
    let err = a_store
        .append_journal(CRED, &fenced(3, "ra", a.fence()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LeaseLost, "{err}");
    b_store
        .append_journal(CRED, &fenced(4, "rb", b.fence()))
        .await
        .unwrap();
    assert_eq!(
        rekey_testkit::conformance::unchained(b_store.read_journal(CRED).await.unwrap()),
        vec![
            fenced(1, "ra", a.fence()),
            fenced(2, "rb", b.fence()),
            fenced(4, "rb", b.fence())
        ],
        "the old holder's entry was not written"
    );

    let err = a.release().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LeaseLost, "{err}");
    b.confirm().await.unwrap();
    let err = a_store.lock(CRED, "runner-a").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Busy, "{err}");
    b.release().await.unwrap();
}

/// `confirm()` extends a lease past half its TTL, and even after it expired as long as nobody
/// took it; before half its TTL it writes nothing.
#[tokio::test]
async fn confirm_extends_the_lease() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("extend");
    let mut cfg = config(bao, &prefix, token(bao.root_token()));
    cfg.lock_ttl = LEASE_TTL;
    let store = VaultStore::new(cfg).unwrap();
    let other = root_store(bao, &prefix);
    let path = format!("secret/{prefix}/{CRED}/lock");
    let version = || kv_metadata(bao, &path)["data"]["current_version"].clone();
    let expires_at = || {
        let at = kv_field(bao, &format!("{prefix}/{CRED}/lock"), "expires_at");
        chrono::DateTime::parse_from_rfc3339(&at).unwrap()
    };

    let lease = store.lock(CRED, "runner-a").await.unwrap();
    let taken = version();
    lease.confirm().await.unwrap();
    assert_eq!(version(), taken, "no write before half the TTL");

    advance_clock(LEASE_TTL / 2 + Duration::from_secs(1));
    lease.confirm().await.unwrap();
    let extended = version();
    assert_ne!(extended, taken, "extended");
    assert_eq!(
        kv_field(bao, &format!("{prefix}/{CRED}/lock"), "fence"),
        lease.fence().to_string(),
        "the fence is kept"
    );
    // Past the first expiry (TTL + 1 s after taking it), short of the extended one.
    advance_clock(LEASE_TTL / 2);
    let err = other.lock(CRED, "runner-b").await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Busy,
        "still held past the first expiry: {err}"
    );

    // Past the extended expiry: expired, but nobody took it, so still ours.
    let left = expires_at().signed_duration_since(rekey_api::now());
    advance_clock(left.to_std().unwrap_or_default() + Duration::from_secs(1));
    lease.confirm().await.unwrap();
    assert_ne!(version(), extended, "extended again");
    let err = other.lock(CRED, "runner-b").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Busy, "held again: {err}");
    let fence = lease.fence();
    lease.release().await.unwrap();
    let next = other.lock(CRED, "runner-b").await.unwrap();
    assert_eq!(next.fence(), fence + 1);
    next.release().await.unwrap();
}

/// Two runners taking a free lease at once: check-and-set lets one win; the other is Busy and
/// is told who won.
#[tokio::test]
async fn racing_takers_cannot_both_win() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("lock-race");
    let (one, two) = (root_store(bao, &prefix), root_store(bao, &prefix));
    let (a, b) = tokio::join!(one.lock(CRED, "runner-one"), two.lock(CRED, "runner-two"));
    let (won, lost, winner) = match (a, b) {
        (Ok(won), Err(lost)) => (won, lost, "runner-one"),
        (Err(lost), Ok(won)) => (won, lost, "runner-two"),
        (a, b) => panic!("exactly one taker wins: {a:?} {b:?}"),
    };
    assert_eq!(lost.kind(), ErrorKind::Busy, "{lost}");
    assert!(lost.to_string().contains(winner), "{lost}");
    assert_eq!(won.fence(), 1);
    won.release().await.unwrap();
}

/// A lock record written before leases carried a fence counts as fence 0; once expired or
/// released, the next lease is 1.
#[tokio::test]
async fn a_lock_record_without_a_fence_is_fence_zero() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("legacy-lock");
    bao.bao_ok(&[
        "kv",
        "put",
        &format!("secret/{prefix}/{CRED}/lock"),
        "holder=old-runner",
        "acquired_at=2020-01-01T00:00:00+00:00",
        "expires_at=2020-01-01T00:30:00+00:00",
    ]);
    let store = root_store(bao, &prefix);
    let lease = store.lock(CRED, "new-runner").await.unwrap();
    assert_eq!(lease.fence(), 1);
    lease.release().await.unwrap();
}
