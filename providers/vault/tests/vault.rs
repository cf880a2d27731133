//! The Vault store against a real OpenBao dev server: the KV layout consumers rely on,
//! check-and-set, history-based PREVIOUS, destroy, journal, lock, logins (Kubernetes against a
//! stand-in for the Kubernetes TokenReview API, the one piece not real here), the minimal policy,
//! token renewal, the error cases, and that neither VAULT_* variables nor vaultrs's logging leak
//! through. Every test works under its own prefix, so they run in
//! parallel on one shared server.

use rekey_api::{
    Certificate, ErrorKind, Generation, JournalEntry, KeyMaterial, Phase, SecretStore,
    SecretString, Stage, Step,
};
use rekey_testkit::conformance;
use rekey_testkit::openbao::OpenBao;
use rekey_testkit::receiver::RefusingPort;
use rekey_vault::{VaultAuth, VaultConfig, VaultStore};
use serde_json::{Value, json};
use std::time::Duration;

const CRED: &str = "billing";

/// The lock TTL of the lease tests: an hour, so no lease expires by itself while a test runs,
/// however slow the machine. A lease expires when the test moves rekey's clock past it.
const LEASE_TTL: Duration = Duration::from_secs(3600);

/// Moves rekey's clock ahead by `by`, for this test only (its thread; see
/// `rekey_api::advance_on_this_thread`), instead of waiting for a lease to expire.
fn advance_clock(by: Duration) {
    rekey_api::advance_on_this_thread(chrono::Duration::from_std(by).unwrap());
}

/// Only a guard against hanging, for waits on the server's own clock (token TTLs of a few
/// seconds): far above them on a loaded machine.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// `path` (under `/v1/`) as OpenBao's root sees it: the status and the JSON answer, if any.
async fn as_root(bao: &OpenBao, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = reqwest::Client::new()
        .request(method, format!("{}/v1/{path}", bao.addr()))
        .header("X-Vault-Token", bao.root_token());
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The token behind `accessor` as the server sees it; `None` once it has expired or was
/// revoked.
async fn token_by_accessor(bao: &OpenBao, accessor: &str) -> Option<Value> {
    let body = serde_json::json!({ "accessor": accessor });
    match as_root(bao, "POST", "auth/token/lookup-accessor", Some(body)).await {
        (200, answer) => Some(answer["data"].clone()),
        _ => None,
    }
}

/// The accessors of the live tokens that logins at `auth/{mount}` issued.
async fn login_tokens(bao: &OpenBao, mount: &str) -> Vec<String> {
    let (status, list) = as_root(bao, "LIST", "auth/token/accessors", None).await;
    assert_eq!(status, 200, "{list}");
    let mut found = Vec::new();
    for accessor in list["data"]["keys"].as_array().unwrap() {
        let accessor = accessor.as_str().unwrap();
        if let Some(token) = token_by_accessor(bao, accessor).await
            && token["path"] == format!("auth/{mount}/login")
        {
            found.push(accessor.to_string());
        }
    }
    found
}

fn pair() -> (KeyMaterial, Certificate) {
    rekey_testkit::conformance::pair()
}

fn config(bao: &OpenBao, prefix: &str, auth: VaultAuth) -> VaultConfig {
    let mut config = VaultConfig::new(bao.addr(), auth);
    config.path_prefix = prefix.to_string();
    config
}

fn token(s: &str) -> VaultAuth {
    VaultAuth::Token(SecretString::new(s))
}

fn root_store(bao: &OpenBao, prefix: &str) -> VaultStore {
    VaultStore::new(config(bao, prefix, token(bao.root_token()))).unwrap()
}

async fn stage(
    store: &VaultStore,
    generation: u64,
    p: &(KeyMaterial, Certificate),
) -> rekey_api::Result<()> {
    rekey_testkit::conformance::stage_as(store, CRED, generation, &format!("r{generation}"), p)
        .await
}

async fn rotate(store: &VaultStore, generation: u64) -> (KeyMaterial, Certificate) {
    let p = pair();
    stage(store, generation, &p).await.unwrap();
    store.promote(CRED, Generation(generation)).await.unwrap();
    p
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap()
}

/// `bao kv get -field=...` of a path under the test's prefix.
/// `bao kv metadata get` of `path`, as JSON.
fn kv_metadata(bao: &OpenBao, path: &str) -> Value {
    json(&bao.bao_ok(&["kv", "metadata", "get", "-format=json", path]))
}

/// Asserts that none of the credential's `leaves` exists in KV: nothing was written.
fn assert_never_written(bao: &OpenBao, prefix: &str, leaves: &[&str], why: &str) {
    for leaf in leaves {
        let out = bao.bao(&[
            "kv",
            "metadata",
            "get",
            &format!("secret/{prefix}/{CRED}/{leaf}"),
        ]);
        assert!(!out.status.success(), "{leaf} exists: {why}");
    }
}

fn kv_field(bao: &OpenBao, path: &str, field: &str) -> String {
    bao.bao_ok(&[
        "kv",
        "get",
        &format!("-field={field}"),
        &format!("secret/{path}"),
    ])
}

/// Writes the minimal policy of the README for `prefix`/`CRED`, minus `(leaf path, capability)`,
/// and returns a token holding only it (plus the default policy).
fn token_with_policy(
    bao: &OpenBao,
    prefix: &str,
    without: Option<(&str, &str)>,
    extra: &[&str],
) -> String {
    let mut hcl = String::new();
    for leaf in ["current", "pending", "journal", "lock"] {
        for kind in ["data", "metadata"] {
            let path = format!("secret/{kind}/{prefix}/{CRED}/{leaf}");
            let caps: Vec<&str> = ["create", "read", "update"]
                .into_iter()
                .filter(|c| without != Some((path.as_str(), *c)))
                .collect();
            hcl.push_str(&format!("path \"{path}\" {{ capabilities = {caps:?} }}\n"));
        }
    }
    for leaf in ["current", "pending"] {
        hcl.push_str(&format!(
            "path \"secret/destroy/{prefix}/{CRED}/{leaf}\" {{ capabilities = [\"update\"] }}\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.hcl");
    std::fs::write(&file, hcl).unwrap();
    bao.bao_ok(&["policy", "write", prefix, file.to_str().unwrap()]);
    let mut args = vec!["token", "create", "-format=json"];
    let policy = format!("-policy={prefix}");
    args.push(&policy);
    args.extend_from_slice(extra);
    json(&bao.bao_ok(&args))["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn conformance() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("conformance");
    let open = || Box::new(root_store(bao, &prefix)) as Box<dyn SecretStore>;
    rekey_testkit::conformance::secret_store(&open, "c").await;
}

#[tokio::test]
async fn layout_is_what_consumers_read() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("layout");
    let store = root_store(bao, &prefix);
    let first = rotate(&store, 1).await;
    let second = pair();
    stage(&store, 2, &second).await.unwrap();
    // PENDING sits beside CURRENT and is never what a CURRENT read returns.
    assert_eq!(
        kv_field(bao, &format!("{prefix}/{CRED}/current"), "certificate"),
        first.1.pem()
    );
    assert_eq!(
        kv_field(bao, &format!("{prefix}/{CRED}/pending"), "certificate"),
        second.1.pem()
    );
    assert_eq!(
        kv_field(bao, &format!("{prefix}/{CRED}/pending"), "generation"),
        "2"
    );
    store.promote(CRED, Generation(2)).await.unwrap();
    let current = format!("{prefix}/{CRED}/current");
    assert_eq!(kv_field(bao, &current, "certificate"), second.1.pem());
    assert_eq!(
        kv_field(bao, &current, "private_key"),
        second.0.expose_secret_pem()
    );
    assert_eq!(
        kv_field(bao, &current, "fingerprint"),
        second.1.fingerprint.to_hex()
    );
    assert_eq!(kv_field(bao, &current, "rotation_id"), "r2");
    // PREVIOUS comes from the history of `current`.
    assert_eq!(
        bao.bao_ok(&[
            "kv",
            "get",
            "-version=1",
            "-field=generation",
            &format!("secret/{current}")
        ]),
        "1"
    );
    let stages = store.stages(CRED).await.unwrap();
    assert_eq!(stages.current.unwrap().generation, Generation(2));
    assert_eq!(
        stages.previous.unwrap().certificate.fingerprint,
        first.1.fingerprint
    );
    assert!(stages.pending.is_none());
    // The pending key is cleared for its readers once promoted.
    let pending = json(&bao.bao_ok(&[
        "kv",
        "get",
        "-format=json",
        &format!("secret/{prefix}/{CRED}/pending"),
    ]));
    assert!(
        pending["data"]["data"].get("private_key").is_none(),
        "{pending}"
    );
    for leaf in ["current", "pending", "journal", "lock"] {
        if leaf == "journal" || leaf == "lock" {
            continue;
        }
        let meta = kv_metadata(bao, &format!("secret/{prefix}/{CRED}/{leaf}"));
        assert_eq!(meta["data"]["max_versions"], 10, "{leaf}");
        assert_eq!(meta["data"]["cas_required"], true, "{leaf}");
    }
}

#[tokio::test]
async fn racing_promotions_write_current_once() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("race");
    let ours = root_store(bao, &prefix);
    let theirs = root_store(bao, &prefix);
    rotate(&ours, 1).await;
    stage(&ours, 2, &pair()).await.unwrap();
    // Two handles promote at once: both may read version 1 of `current`; check-and-set lets
    // one write and turns the other into a Conflict (or it sees the promotion already done).
    let path = format!("secret/{prefix}/{CRED}/current");
    let (a, b) = tokio::join!(
        ours.promote(CRED, Generation(2)),
        theirs.promote(CRED, Generation(2))
    );
    for r in [&a, &b] {
        if let Err(e) = r {
            assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
            assert!(e.to_string().contains("someone else changed"), "{e}");
            assert!(e.to_string().contains(&format!("{prefix}/{CRED}")), "{e}");
        }
    }
    assert!(a.is_ok() || b.is_ok());
    // Exactly one new version of current was written.
    let meta = kv_metadata(bao, &path);
    assert_eq!(meta["data"]["current_version"], 2);
}

#[tokio::test]
async fn revert_writes_the_previous_version_back() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("revert");
    let store = root_store(bao, &prefix);
    let first = rotate(&store, 1).await;
    rotate(&store, 2).await;
    store.revert(CRED, Generation(1)).await.unwrap();
    let current = format!("{prefix}/{CRED}/current");
    assert_eq!(
        kv_field(bao, &current, "private_key"),
        first.0.expose_secret_pem()
    );
    let meta = kv_metadata(bao, &format!("secret/{current}"));
    assert_eq!(
        meta["data"]["current_version"], 3,
        "a revert is a new version"
    );
    let stages = store.stages(CRED).await.unwrap();
    assert_eq!(stages.current.unwrap().generation, Generation(1));
    assert_eq!(stages.previous.unwrap().generation, Generation(2));
    assert!(
        stages.pending.is_none(),
        "a reverted promotion does not resurrect PENDING"
    );
}

#[tokio::test]
async fn destroy_really_destroys_every_version_holding_the_generation() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("destroy");
    let store = root_store(bao, &prefix);
    rotate(&store, 1).await;
    rotate(&store, 2).await;
    let err = store.destroy(CRED, Generation(2)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    store.destroy(CRED, Generation(1)).await.unwrap();
    let current = kv_metadata(bao, &format!("secret/{prefix}/{CRED}/current"));
    assert_eq!(current["data"]["versions"]["1"]["destroyed"], true);
    assert_eq!(current["data"]["versions"]["2"]["destroyed"], false);
    let pending = kv_metadata(bao, &format!("secret/{prefix}/{CRED}/pending"));
    assert_eq!(
        pending["data"]["versions"]["1"]["destroyed"], true,
        "the staged copy too"
    );
    assert_eq!(
        pending["data"]["versions"]["3"]["destroyed"], false,
        "generation 2's copy stays"
    );
    assert!(
        store
            .read_key(CRED, Stage::Previous)
            .await
            .unwrap()
            .is_none()
    );
}

fn entry(n: i64, rotation: &str) -> JournalEntry {
    JournalEntry {
        at: chrono::DateTime::from_timestamp(1_800_000_000 + n, 0).unwrap(),
        detail: Some(format!("entry {n}")),
        ..conformance::journal_entry(rotation, Step::Stage, Phase::Begin, None)
    }
}

#[tokio::test]
async fn concurrent_journal_appends_are_not_lost() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("journal");
    let mut tasks = Vec::new();
    for writer in 0..6 {
        let store = root_store(bao, &prefix);
        tasks.push(tokio::spawn(async move {
            for n in 0..4 {
                store
                    .append_journal(CRED, &entry(n, &format!("w{writer}")))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let read = root_store(bao, &prefix).read_journal(CRED).await.unwrap();
    assert_eq!(read.len(), 24);
    for writer in 0..6 {
        let mine: Vec<_> = read
            .iter()
            .filter(|e| e.rotation_id.0 == format!("w{writer}"))
            .collect();
        let want: Vec<_> = (0..4).map(|n| entry(n, &format!("w{writer}"))).collect();
        assert_eq!(
            mine,
            want.iter().collect::<Vec<_>>(),
            "each writer's entries, in order"
        );
    }
}

#[tokio::test]
async fn a_damaged_journal_entry_is_named_and_the_others_are_still_read() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("damaged");
    let store = root_store(bao, &prefix);
    for n in 0..3 {
        store.append_journal(CRED, &entry(n, "r1")).await.unwrap();
    }
    // Someone writes the journal back with its second entry mangled.
    let path = format!("secret/data/{prefix}/{CRED}/journal");
    let (status, latest) = as_root(bao, "GET", &path, None).await;
    assert_eq!(status, 200, "{latest}");
    let mut entries = latest["data"]["data"]["entries"].clone();
    entries[1] = json!({"step": "stage", "phase": "sideways", "secret": "do not print me"});
    let cas = latest["data"]["metadata"]["version"].clone();
    let body = json!({ "options": { "cas": cas }, "data": { "entries": entries } });
    let (status, written) = as_root(bao, "POST", &path, Some(body)).await;
    assert_eq!(status, 200, "{written}");
    let version = written["data"]["version"].as_u64().unwrap();

    let read = store.scan_journal(CRED).await.unwrap();
    assert_eq!(read.entries, [entry(0, "r1"), entry(2, "r1")]);
    assert_eq!(read.damaged.len(), 1);
    let damage = &read.damaged[0];
    assert_eq!(
        damage.location,
        format!("{path} version {version}, entry 2 of 3")
    );
    assert_eq!(damage.problem, "JSON, but not a journal entry");
    assert_eq!(damage.after, 1);
    assert!(read.repair.unwrap().contains("vault kv rollback"));

    // Whatever writes refuses, naming the entry and changing nothing.
    for err in [
        store.read_journal(CRED).await.unwrap_err(),
        store
            .append_journal(CRED, &entry(3, "r1"))
            .await
            .unwrap_err(),
        store.preflight(CRED).await.unwrap_err(),
        store.lock(CRED, "test").await.unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
        assert!(err.to_string().contains("entry 2 of 3"), "{err}");
        assert!(!err.to_string().contains("do not print me"), "{err}");
    }
    let (_, after) = as_root(bao, "GET", &path, None).await;
    assert_eq!(after["data"]["metadata"]["version"].as_u64(), Some(version));
}

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
        b_store.read_journal(CRED).await.unwrap(),
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

/// A discarded key is no longer PENDING for readers of `pending` but stays in its KV history,
/// where `read_generation` finds it.
#[tokio::test]
async fn discard_keeps_the_key_in_the_history_of_pending() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("discard");
    let store = root_store(bao, &prefix);
    rotate(&store, 1).await;
    let staged = pair();
    stage(&store, 2, &staged).await.unwrap();
    store.discard(CRED, Generation(2)).await.unwrap();
    let path = format!("secret/{prefix}/{CRED}/pending");
    let pending = json(&bao.bao_ok(&["kv", "get", "-format=json", &path]));
    assert!(
        pending["data"]["data"].get("private_key").is_none(),
        "{pending}"
    );
    assert_eq!(pending["data"]["data"]["discarded_generation"], "2");
    let version = pending["data"]["metadata"]["version"].as_u64().unwrap();
    assert_eq!(
        bao.bao_ok(&[
            "kv",
            "get",
            &format!("-version={}", version - 1),
            "-field=private_key",
            &path
        ]),
        staged.0.expose_secret_pem()
    );
    let read = store
        .read_generation(CRED, Generation(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.info.certificate.fingerprint, staged.1.fingerprint);
    assert_eq!(
        kv_field(bao, &format!("{prefix}/{CRED}/current"), "generation"),
        "1",
        "CURRENT untouched"
    );
    store.destroy(CRED, Generation(2)).await.unwrap();
    assert!(
        store
            .read_generation(CRED, Generation(2))
            .await
            .unwrap()
            .is_none(),
        "destroyed"
    );
}

#[tokio::test]
async fn approle_login_runs_a_rotation() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("approle");
    // The role's token holds only the minimal policy.
    token_with_policy(bao, &prefix, None, &[]);
    bao.bao_ok(&["auth", "enable", &format!("-path={prefix}"), "approle"]);
    bao.bao_ok(&[
        "write",
        &format!("auth/{prefix}/role/rekey"),
        &format!("token_policies={prefix}"),
        "token_ttl=5m",
    ]);
    let role_id = bao.bao_ok(&[
        "read",
        "-field=role_id",
        &format!("auth/{prefix}/role/rekey/role-id"),
    ]);
    let secret_id = bao.bao_ok(&[
        "write",
        "-f",
        "-field=secret_id",
        &format!("auth/{prefix}/role/rekey/secret-id"),
    ]);
    let auth = VaultAuth::AppRole {
        mount: prefix.clone(),
        role_id: role_id.trim().to_string(),
        secret_id: SecretString::new(secret_id),
    };
    let store = VaultStore::new(config(bao, &prefix, auth)).unwrap();
    store.preflight(CRED).await.unwrap();
    rotate(&store, 1).await;
    store.append_journal(CRED, &entry(1, "r1")).await.unwrap();
    assert_eq!(
        store.read_journal(CRED).await.unwrap(),
        vec![entry(1, "r1")]
    );
    assert_eq!(
        kv_field(bao, &format!("{prefix}/{CRED}/current"), "generation"),
        "1"
    );

    let bad = VaultAuth::AppRole {
        mount: prefix.clone(),
        role_id: role_id.trim().to_string(),
        secret_id: SecretString::new("not-the-secret-id"),
    };
    let err = VaultStore::new(config(bao, &prefix, bad))
        .unwrap()
        .preflight(CRED)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    assert!(!err.to_string().contains("not-the-secret-id"));
}

/// The service account every Kubernetes test logs in as.
const SA_NAMESPACE: &str = "payments";
const SA_NAME: &str = "rekey";
const SA_UID: &str = "4c1e7a52-9d0b-4f3e-8a61-2b7d5e0f9c13";
/// The bearer OpenBao presents to the TokenReview API (`token_reviewer_jwt`). The responder
/// insists on it, as an API server would, so a review made with the login JWT instead fails.
const REVIEWER_BEARER: &str = "token-reviewer-bearer";

/// A stand-in for the one Kubernetes API endpoint OpenBao's Kubernetes auth method calls,
/// `POST /apis/authentication.k8s.io/v1/tokenreviews`, over TLS: OpenBao 2.7.2 refuses a config
/// without `kubernetes_ca_cert` once `disable_local_ca_jwt` is set, so the CA it must be given
/// might as well be one it really checks.
struct TokenReviewer {
    /// `https://127.0.0.1:PORT`, OpenBao's `kubernetes_host`.
    host: String,
    /// The self-signed certificate it serves, OpenBao's `kubernetes_ca_cert`.
    ca_pem: String,
    /// `spec.token` of every review asked for, in order.
    reviewed: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl TokenReviewer {
    /// Serves on 127.0.0.1:0 until the test's runtime ends. Reviews of a token in `accepted`
    /// authenticate the service account; any other token is not authenticated.
    async fn start(accepted: &[&str]) -> TokenReviewer {
        use axum::body::Bytes;
        use axum::extract::State;
        use axum::http::{HeaderMap, StatusCode, header};
        use std::sync::{Arc, Mutex};

        #[derive(Clone)]
        struct Review {
            accepted: Arc<Vec<String>>,
            reviewed: Arc<Mutex<Vec<String>>>,
        }

        async fn review(
            State(state): State<Review>,
            headers: HeaderMap,
            body: Bytes,
        ) -> (StatusCode, axum::Json<Value>) {
            let bearer = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            if bearer != Some(&format!("Bearer {REVIEWER_BEARER}")) {
                // The API server's answer to a caller it does not know.
                let status = serde_json::json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Failure", "message": "Unauthorized", "reason": "Unauthorized",
                    "code": 401
                });
                return (StatusCode::UNAUTHORIZED, axum::Json(status));
            }
            let request: Value = serde_json::from_slice(&body).unwrap();
            let token = request["spec"]["token"].as_str().unwrap_or_default();
            state.reviewed.lock().unwrap().push(token.to_string());
            let status = if state.accepted.iter().any(|t| t == token) {
                serde_json::json!({
                    "authenticated": true,
                    "user": {
                        "username": format!("system:serviceaccount:{SA_NAMESPACE}:{SA_NAME}"),
                        "uid": SA_UID,
                        "groups": [
                            "system:serviceaccounts",
                            format!("system:serviceaccounts:{SA_NAMESPACE}"),
                            "system:authenticated"
                        ]
                    },
                    // OpenBao asks for the token's own audiences and insists on one back.
                    "audiences": request["spec"]["audiences"]
                })
            } else {
                serde_json::json!({ "authenticated": false, "user": {}, "error": "invalid bearer token" })
            };
            let answer = serde_json::json!({
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "metadata": {},
                "spec": request["spec"],
                "status": status
            });
            (StatusCode::CREATED, axum::Json(answer))
        }

        /// axum over TLS: the handshake happens in `accept`, which is enough for one client.
        struct TlsListener {
            tcp: tokio::net::TcpListener,
            acceptor: tokio_rustls::TlsAcceptor,
        }

        impl axum::serve::Listener for TlsListener {
            type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
            type Addr = std::net::SocketAddr;

            async fn accept(&mut self) -> (Self::Io, Self::Addr) {
                loop {
                    let Ok((socket, addr)) = self.tcp.accept().await else {
                        continue;
                    };
                    if let Ok(stream) = self.acceptor.accept(socket).await {
                        return (stream, addr);
                    }
                }
            }

            fn local_addr(&self) -> std::io::Result<Self::Addr> {
                self.tcp.local_addr()
            }
        }

        let (tls, ca_pem) = loopback_tls();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = format!("https://{}", tcp.local_addr().unwrap());
        let listener = TlsListener {
            tcp,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
        };
        let reviewed = Arc::new(Mutex::new(Vec::new()));
        let state = Review {
            accepted: Arc::new(accepted.iter().map(|t| t.to_string()).collect()),
            reviewed: reviewed.clone(),
        };
        let app = axum::Router::new()
            .route(
                "/apis/authentication.k8s.io/v1/tokenreviews",
                axum::routing::post(review),
            )
            .with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await });
        TokenReviewer {
            host,
            ca_pem,
            reviewed,
        }
    }

    fn reviewed(&self) -> Vec<String> {
        self.reviewed.lock().unwrap().clone()
    }
}

/// A projected service-account token as the kubelet mounts it (the kind it rotates), told
/// apart by `jti`. OpenBao parses its claims and requires an RS/ES signature, but without
/// `pem_keys` it leaves the verdict to the TokenReview, so a throwaway key signs it.
fn service_account_jwt(jti: &str) -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "aud": ["https://kubernetes.default.svc.cluster.local"],
        "exp": now + 3600,
        "iat": now,
        "nbf": now,
        "iss": "https://kubernetes.default.svc.cluster.local",
        "jti": jti,
        "kubernetes.io": {
            "namespace": SA_NAMESPACE,
            "pod": { "name": "rekey-7d9f8c6b5-x2kqp", "uid": "0f3b9c1e-5a7d-4e2b-9c8f-6d1a2b3c4d5e" },
            "serviceaccount": { "name": SA_NAME, "uid": SA_UID }
        },
        "sub": format!("system:serviceaccount:{SA_NAMESPACE}:{SA_NAME}")
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("test-signing-key".into());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap(),
    )
    .unwrap()
}

/// Enables the Kubernetes auth method at `auth/<prefix>`, pointed at `reviewer`, with a role
/// `rekey` bound to the test's service account whose tokens hold only the minimal policy for
/// `prefix`. Only parameters HashiCorp Vault's Kubernetes method has too.
fn kubernetes_auth(bao: &OpenBao, prefix: &str, reviewer: &TokenReviewer, token_ttl: &[&str]) {
    token_with_policy(bao, prefix, None, &[]);
    bao.bao_ok(&["auth", "enable", &format!("-path={prefix}"), "kubernetes"]);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &reviewer.ca_pem).unwrap();
    bao.bao_ok(&[
        "write",
        &format!("auth/{prefix}/config"),
        &format!("kubernetes_host={}", reviewer.host),
        &format!("kubernetes_ca_cert=@{}", ca.display()),
        // The dev server is not in a pod: no local CA or reviewer JWT to fall back on.
        "disable_local_ca_jwt=true",
        &format!("token_reviewer_jwt={REVIEWER_BEARER}"),
    ]);
    let mut role = vec![
        "write".to_string(),
        format!("auth/{prefix}/role/rekey"),
        format!("bound_service_account_names={SA_NAME}"),
        format!("bound_service_account_namespaces={SA_NAMESPACE}"),
        format!("token_policies={prefix}"),
    ];
    role.extend(token_ttl.iter().map(|s| s.to_string()));
    bao.bao_ok(&role.iter().map(String::as_str).collect::<Vec<_>>());
}

fn kubernetes(prefix: &str, jwt_path: &std::path::Path) -> VaultAuth {
    VaultAuth::Kubernetes {
        mount: prefix.to_string(),
        role: "rekey".into(),
        jwt_path: jwt_path.to_path_buf(),
    }
}

/// Kubernetes login end to end: OpenBao has the JWT read from `jwt_path` reviewed by the
/// (stand-in) Kubernetes API, and the token it issues, holding only the minimal policy, runs
/// check, stage, promote and the journal. The review saw exactly the file's JWT, once.
#[tokio::test]
async fn kubernetes_login_runs_a_rotation() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("k8s");
    let jwt = service_account_jwt("first");
    let reviewer = TokenReviewer::start(&[&jwt]).await;
    kubernetes_auth(bao, &prefix, &reviewer, &["token_ttl=5m"]);
    let dir = tempfile::tempdir().unwrap();
    let jwt_path = dir.path().join("token");
    std::fs::write(&jwt_path, &jwt).unwrap();

    let store = VaultStore::new(config(bao, &prefix, kubernetes(&prefix, &jwt_path))).unwrap();
    store.preflight(CRED).await.unwrap();
    rotate(&store, 1).await;
    store.append_journal(CRED, &entry(1, "r1")).await.unwrap();
    assert_eq!(
        store.read_journal(CRED).await.unwrap(),
        vec![entry(1, "r1")]
    );
    assert_eq!(
        kv_field(bao, &format!("{prefix}/{CRED}/current"), "generation"),
        "1"
    );
    assert_eq!(
        reviewer.reviewed(),
        vec![jwt],
        "one login, with the file's JWT"
    );
}

/// A well-formed service-account JWT that Kubernetes does not authenticate makes every
/// operation fail as Unauthenticated, naming the auth mount and never the JWT, before anything
/// is written. That the review saw it shows the refusal is Kubernetes' verdict, not OpenBao
/// failing to parse the token.
#[tokio::test]
async fn a_rejected_service_account_jwt_is_unauthenticated_and_writes_nothing() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("k8s-rejected");
    let rejected = service_account_jwt("revoked");
    let reviewer = TokenReviewer::start(&[&service_account_jwt("accepted")]).await;
    kubernetes_auth(bao, &prefix, &reviewer, &["token_ttl=5m"]);
    let dir = tempfile::tempdir().unwrap();
    let jwt_path = dir.path().join("token");
    std::fs::write(&jwt_path, &rejected).unwrap();

    let store = VaultStore::new(config(bao, &prefix, kubernetes(&prefix, &jwt_path))).unwrap();
    let errors = [
        store.preflight(CRED).await.unwrap_err(),
        stage(&store, 1, &pair()).await.unwrap_err(),
    ];
    for err in &errors {
        assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
        assert!(
            err.to_string().contains(&format!(
                "kubernetes login as role 'rekey' at auth/{prefix}"
            )),
            "{err}"
        );
        let shown = format!("{err} {err:?} {}", err.hint().unwrap_or_default());
        assert!(!shown.contains(&rejected), "never the JWT: {shown}");
    }
    assert_eq!(reviewer.reviewed(), vec![rejected.clone(), rejected]);
    assert_never_written(
        bao,
        &prefix,
        &["current", "pending", "journal"],
        "a refused login writes nothing",
    );
}

/// The JWT file is read again at every login, as the kubelet rotates it: once the token
/// can no longer be renewed (token_ttl = token_max_ttl = 2 s, and expired), the store logs in
/// again with the file's new JWT and carries on.
#[tokio::test]
async fn the_service_account_jwt_is_read_again_at_each_login() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("k8s-rotated");
    let (first, second) = (service_account_jwt("first"), service_account_jwt("second"));
    let reviewer = TokenReviewer::start(&[&first, &second]).await;
    kubernetes_auth(
        bao,
        &prefix,
        &reviewer,
        &["token_ttl=2s", "token_max_ttl=2s"],
    );
    let dir = tempfile::tempdir().unwrap();
    let jwt_path = dir.path().join("token");
    std::fs::write(&jwt_path, &first).unwrap();

    let store = VaultStore::new(config(bao, &prefix, kubernetes(&prefix, &jwt_path))).unwrap();
    store.append_journal(CRED, &entry(1, "r")).await.unwrap();
    std::fs::write(&jwt_path, &second).unwrap();
    // Until the server has ended the first token (its max TTL passed), so its renewal is
    // refused and the store logs in again. Not a guess at how long that takes: just short of
    // the max TTL, OpenBao may still report a whole second left, and the store renews.
    let first_token = login_tokens(bao, &prefix).await;
    assert_eq!(first_token.len(), 1, "the store's login: {first_token:?}");
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    while token_by_accessor(bao, &first_token[0]).await.is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the 2 s token is still alive"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    store.append_journal(CRED, &entry(2, "r")).await.unwrap();
    // Read by root: another operation of the store could renew its new token, which has the
    // JWT reviewed again.
    assert_eq!(
        root_store(bao, &prefix)
            .read_journal(CRED)
            .await
            .unwrap()
            .len(),
        2
    );
    // OpenBao also reviews the login's JWT when a token is renewed, so the first JWT may be
    // seen more than once; the new one comes only from the second login, and last.
    let reviewed = reviewer.reviewed();
    assert_eq!(reviewed.first(), Some(&first), "the first login");
    assert_eq!(reviewed.last(), Some(&second), "the second login");
    assert_eq!(
        reviewed.iter().filter(|t| **t == second).count(),
        1,
        "one login with the new JWT"
    );
    assert!(
        reviewed.iter().all(|t| *t == first || *t == second),
        "nothing else"
    );
}

#[tokio::test]
async fn the_minimal_policy_is_enough_for_everything() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("minimal");
    let t = token_with_policy(bao, &prefix, None, &[]);
    let store = VaultStore::new(config(bao, &prefix, token(&t))).unwrap();
    store.preflight(CRED).await.unwrap();
    rotate(&store, 1).await;
    rotate(&store, 2).await;
    store.revert(CRED, Generation(1)).await.unwrap();
    store.destroy(CRED, Generation(2)).await.unwrap();
    store.append_journal(CRED, &entry(1, "r")).await.unwrap();
    assert_eq!(store.read_journal(CRED).await.unwrap().len(), 1);
    store
        .lock(CRED, "me")
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    assert!(
        store
            .read_key(CRED, Stage::Current)
            .await
            .unwrap()
            .is_some()
    );
    store.preflight(CRED).await.unwrap();
}

#[tokio::test]
async fn check_names_a_missing_capability_and_changes_nothing() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("lacking");
    let missing = format!("secret/data/{prefix}/{CRED}/current");
    let t = token_with_policy(bao, &prefix, Some((&missing, "update")), &[]);
    let store = VaultStore::new(config(bao, &prefix, token(&t))).unwrap();
    let err = store.preflight(CRED).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(
        err.to_string()
            .contains(&format!("token lacks 'update' on {missing}")),
        "{err}"
    );
    assert!(!err.to_string().contains(&t), "never the token");
    assert_eq!(
        err.to_string().matches("lacks").count(),
        1,
        "only that one: {err}"
    );
    assert_never_written(bao, &prefix, &["current"], "check wrote nothing");
}

#[tokio::test]
async fn a_short_lived_token_is_renewed_across_operations() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("renew");
    let t = token_with_policy(bao, &prefix, None, &["-ttl=3s", "-explicit-max-ttl=1m"]);
    let store = VaultStore::new(config(bao, &prefix, token(&t))).unwrap();
    let expiry = |token: &Value| {
        chrono::DateTime::parse_from_rfc3339(token["expire_time"].as_str().unwrap()).unwrap()
    };
    let (status, issued) = as_root(
        bao,
        "POST",
        "auth/token/lookup",
        Some(serde_json::json!({ "token": t })),
    )
    .await;
    assert_eq!(status, 200, "{issued}");
    let first_expiry = expiry(&issued["data"]);
    // Operations until the server's clock is past the token's first expiry: a real wait on
    // the server (about 3 s), for the condition, under a hang guard.
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    let mut operations = 0;
    while chrono::Utc::now() <= first_expiry {
        store.stages(CRED).await.unwrap();
        operations += 1;
        assert!(
            tokio::time::Instant::now() < deadline,
            "still before {first_expiry}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Past it, the 3 s token still works, because the store renewed it.
    store.append_journal(CRED, &entry(1, "r")).await.unwrap();
    assert_eq!(store.read_journal(CRED).await.unwrap().len(), 1);
    let (status, renewed) = as_root(
        bao,
        "POST",
        "auth/token/lookup",
        Some(serde_json::json!({ "token": t })),
    )
    .await;
    assert_eq!(status, 200, "{renewed}");
    assert!(
        expiry(&renewed["data"]) > first_expiry,
        "renewed on the server: {renewed} after {operations} operations"
    );
}

#[tokio::test]
async fn errors_are_clear_and_change_nothing() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("errors");

    // A port that refuses connections (held for the whole test: nothing else can take it).
    let refusing = RefusingPort::bind();
    let port = refusing.port();
    let mut cfg = config(bao, &prefix, token(bao.root_token()));
    cfg.address = format!("http://127.0.0.1:{port}");
    let err = VaultStore::new(cfg)
        .unwrap()
        .preflight(CRED)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_temporary());
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );

    // An invalid token.
    let err = VaultStore::new(config(bao, &prefix, token("s.not-a-token")))
        .unwrap()
        .preflight(CRED)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    assert!(!err.to_string().contains("s.not-a-token"), "{err}");

    // A missing mount.
    let mut cfg = config(bao, &prefix, token(bao.root_token()));
    cfg.mount = format!("{prefix}-nomount");
    let store = VaultStore::new(cfg).unwrap();
    let err = store.preflight(CRED).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(
        err.to_string()
            .contains(&format!("mount '{prefix}-nomount'")),
        "{err}"
    );
    let err = stage(&store, 1, &pair()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(
        err.to_string().contains(&format!("{prefix}-nomount")),
        "{err}"
    );

    // A token without access to the path.
    let t = json(&bao.bao_ok(&["token", "create", "-format=json", "-policy=default"]))["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    let store = VaultStore::new(config(bao, &prefix, token(&t))).unwrap();
    let err = stage(&store, 1, &pair()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(
        err.to_string()
            .contains(&format!("secret/metadata/{prefix}/{CRED}/current")),
        "{err}"
    );
    let err = store.preflight(CRED).await.unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::PermissionDenied | ErrorKind::NotFound
        ),
        "{err}"
    );
    assert_never_written(bao, &prefix, &["current"], "nothing was written");
}

#[tokio::test]
async fn a_sealed_server_is_unavailable_with_a_hint() {
    let bao = OpenBao::start();
    let store = root_store(&bao, "sealed");
    store.preflight(CRED).await.unwrap();
    bao.bao_ok(&["operator", "seal"]);
    let fresh = root_store(&bao, "sealed");
    for err in [
        store.stages(CRED).await.unwrap_err(),
        fresh.preflight(CRED).await.unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        assert!(err.is_temporary());
        assert!(err.hint().unwrap_or_default().contains("unseal"), "{err:?}");
        assert!(err.to_string().contains(&bao.addr()), "{err}");
    }
}

#[tokio::test]
async fn the_namespace_header_selects_the_namespace() {
    let bao = OpenBao::shared();
    let ns = bao.unique_prefix("ns");
    bao.bao_ok(&["namespace", "create", &ns]);
    let in_ns = format!("-namespace={ns}");
    bao.bao_ok(&["secrets", "enable", &in_ns, "-path=secret", "kv-v2"]);
    let mut cfg = config(bao, "rekey", token(bao.root_token()));
    cfg.namespace = Some(ns.clone());
    let store = VaultStore::new(cfg).unwrap();
    assert!(
        store.to_string().contains(&format!("namespace {ns}")),
        "{store}"
    );
    store.preflight(CRED).await.unwrap();
    rotate(&store, 1).await;
    let generation = bao.bao_ok(&[
        "kv",
        "get",
        &in_ns,
        "-field=generation",
        &format!("secret/rekey/{CRED}/current"),
    ]);
    assert_eq!(generation, "1");
}

/// Set in the child process that [`the_environment_changes_nothing`] starts.
const ENV_PROBE: &str = "REKEY_VAULT_ENV_PROBE";

/// vaultrs's settings builder reads VAULT_ADDR, VAULT_TOKEN, VAULT_SKIP_VERIFY, VAULT_CACERT,
/// VAULT_CAPATH and VAULT_CLIENT_CERT/KEY for every field left unset, but the store must depend
/// on its `VaultConfig` alone (the CLI resolves the environment). Setting variables in this
/// process would need `unsafe` (edition 2024), which the workspace forbids, and would leak
/// into the tests running beside it, so [`environment_probe`] runs in a child: this test
/// binary again, filtered to that one test, with hostile variables set.
#[tokio::test]
async fn the_environment_changes_nothing() {
    let bao = OpenBao::shared();
    // Refuses connections while the probe runs: nothing else can take the port meanwhile.
    let refusing = RefusingPort::bind();
    let closed = format!("127.0.0.1:{}", refusing.port());
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "environment_probe", "--nocapture"])
        .env(ENV_PROBE, "1")
        .env("REKEY_VAULT_ENV_PROBE_ADDR", bao.addr())
        .env("REKEY_VAULT_ENV_PROBE_TOKEN", bao.root_token())
        .env("REKEY_VAULT_ENV_PROBE_DIR", dir.path())
        .env("VAULT_ADDR", format!("http://{closed}"))
        .env("VAULT_TOKEN", "s.from-the-environment")
        .env("VAULT_NAMESPACE", "from-the-environment")
        .env("VAULT_SKIP_VERIFY", "true")
        .env("VAULT_CACERT", dir.path().join("ca.pem"))
        .env("VAULT_CAPATH", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("environment probe: passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A TLS server on 127.0.0.1 with a self-signed certificate that answers every request like a
/// sealed Vault. Returns its address and the certificate's PEM.
async fn sealed_tls_server() -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tls, ca_pem) = loopback_tls();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("https://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that does not trust the certificate aborts the handshake here.
                let Ok(mut stream) = acceptor.accept(socket).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let body = r#"{"errors":["Vault is sealed"]}"#;
                let answer = format!(
                    "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (address, ca_pem)
}

/// A TLS server config for 127.0.0.1 with a fresh self-signed certificate, and that certificate's
/// PEM for clients to trust. The IP SAN matters: Go's TLS client (OpenBao's) matches 127.0.0.1
/// against it and never against the CN.
fn loopback_tls() -> (tokio_rustls::rustls::ServerConfig, String) {
    use tokio_rustls::rustls::{self, pki_types};
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        )
        .unwrap();
    (tls, cert.pem())
}

/// Run by [`the_environment_changes_nothing`] in a child process; returns at once otherwise.
#[tokio::test]
async fn environment_probe() {
    let var = |name: &str| std::env::var(name).unwrap();
    if std::env::var_os(ENV_PROBE).is_none() {
        return;
    }
    // VAULT_ADDR (a closed port), VAULT_TOKEN (invalid) and VAULT_NAMESPACE (nonexistent) are
    // not used: the configured server, token and no namespace are.
    let auth = token(&var("REKEY_VAULT_ENV_PROBE_TOKEN"));
    let mut cfg = VaultConfig::new(var("REKEY_VAULT_ENV_PROBE_ADDR"), auth);
    cfg.path_prefix = format!("t-env-{}", std::process::id());
    let store = VaultStore::new(cfg).unwrap();
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

    // VAULT_SKIP_VERIFY=true and VAULT_CACERT / VAULT_CAPATH holding the server's own
    // certificate do not make an unconfigured store trust it: the handshake fails.
    let (address, pem) = sealed_tls_server().await;
    let dir = std::path::PathBuf::from(var("REKEY_VAULT_ENV_PROBE_DIR"));
    std::fs::write(dir.join("ca.pem"), &pem).unwrap();
    let store = VaultStore::new(VaultConfig::new(address.clone(), token("s.x"))).unwrap();
    let err = store.preflight(CRED).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(
        !err.hint().unwrap_or_default().contains("unseal"),
        "{err:?}"
    );

    // The same server is reached when the configuration says so, which shows the probe can
    // tell the difference: its sealed answer arrives.
    for trust in ["tls_skip_verify", "ca_cert"] {
        let mut cfg = VaultConfig::new(address.clone(), token("s.x"));
        if trust == "tls_skip_verify" {
            cfg.tls_skip_verify = true;
        } else {
            cfg.ca_cert = Some(dir.join("ca.pem"));
        }
        let err = VaultStore::new(cfg)
            .unwrap()
            .preflight(CRED)
            .await
            .unwrap_err();
        assert!(
            err.hint().unwrap_or_default().contains("unseal"),
            "{trust}: {err:?}"
        );
    }
    println!("environment probe: passed");
}

/// Records the WARN and ERROR events of the thread it is the default subscriber on.
struct LoudEvents(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl tracing::Subscriber for LoudEvents {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let meta = event.metadata();
        if *meta.level() <= tracing::Level::WARN {
            let line = format!("{} {}", meta.level(), meta.target());
            self.0.lock().unwrap().push(line);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// vaultrs logs every non-2xx answer at ERROR, and the CLI prints WARN and above by default.
/// A fresh credential's keys all answer 404 and concurrent journal appends meet check-and-set
/// conflicts; neither is an error worth printing, and the store's own errors say what failed.
#[test]
fn routine_answers_log_no_warnings() {
    let bao = OpenBao::shared();
    let prefix = bao.unique_prefix("quiet");
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    // Thread-local, hence the current-thread runtime below.
    let _guard = tracing::subscriber::set_default(LoudEvents(events.clone()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = root_store(bao, &prefix);
        store.preflight(CRED).await.unwrap();
        rotate(&store, 1).await;
        let other = root_store(bao, &prefix);
        let (first, second) = (entry(1, "a"), entry(2, "b"));
        let (a, b) = tokio::join!(
            store.append_journal(CRED, &first),
            other.append_journal(CRED, &second)
        );
        a.unwrap();
        b.unwrap();
    });
    assert_eq!(*events.lock().unwrap(), Vec::<String>::new());
}
