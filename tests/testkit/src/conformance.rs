//! The `SecretStore` contract as executable checks. Every store crate runs [`secret_store`]
//! against its real backend, so the file store and the Vault store are held to the same rules.
//!
//! Each check uses its own credential, named `{prefix}-{check}`, so runs can share a backend.
//! A failed check panics with the check's name and what was expected.

use rekey_api::{
    Certificate, ChainProblem, ConsumerSecret, CredentialKind, ErrorKind, Generation, JournalEntry,
    KeyMaterial, Material, NewVersion, Phase, Public, RotationId, SecretStore, Stage, Step,
};
use std::future::Future;
use std::pin::Pin;

/// Opens a new, independent handle on the store under test (a second "process").
pub type Open<'a> = &'a (dyn Fn() -> Box<dyn SecretStore> + Sync);

/// Writes a credential's journal as an earlier rekey left it, around the store: `(credential,
/// entries)`, each entry the JSON object that version wrote (no `prev`, no `hash`).
pub type WriteLegacy<'a> =
    &'a (dyn Fn(&str, Vec<serde_json::Value>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Sync);

/// Runs every check of the contract, for private keys and for consumer secrets: a store keeps
/// both kinds of material under the same rules.
pub async fn secret_store(open: Open<'_>, prefix: &str, legacy: WriteLegacy<'_>) {
    unknown_credentials_are_empty(open, &format!("{prefix}-empty")).await;
    journal_round_trips_in_order(open, &format!("{prefix}-journal")).await;
    the_journal_refuses_entries_from_an_older_lease(open, &format!("{prefix}-fence")).await;
    appended_entries_form_a_hash_chain(open, &format!("{prefix}-chain")).await;
    a_journal_from_before_chaining_chains_on(open, legacy, &format!("{prefix}-legacy")).await;
    the_lock_is_exclusive_until_released(open, &format!("{prefix}-lock")).await;
    checks(open, prefix, CredentialKind::JwtCertificate).await;
    checks(
        open,
        &format!("{prefix}-cs"),
        CredentialKind::ConsumerSecret,
    )
    .await;
}

/// The checks of what a store does with one kind of material.
async fn checks(open: Open<'_>, prefix: &str, kind: CredentialKind) {
    stage_is_idempotent_per_rotation(open, &format!("{prefix}-stage"), kind).await;
    promote_moves_current_to_previous(open, &format!("{prefix}-promote"), kind).await;
    staging_behind_a_moved_current_is_a_conflict(open, &format!("{prefix}-moved"), kind).await;
    revert_makes_previous_current_again(open, &format!("{prefix}-revert"), kind).await;
    destroy_removes_a_generation_but_never_current(open, &format!("{prefix}-destroy"), kind).await;
    discard_clears_pending_but_keeps_the_key(open, &format!("{prefix}-discard"), kind).await;
    prune_never_touches_a_staged_generation(open, &format!("{prefix}-prune"), kind).await;
}

/// One generation's secret and public halves, as a rotation would stage them.
#[derive(Debug)]
pub struct Pair {
    /// The private key or consumer secret.
    pub material: Material,
    /// The certificate or consumer key.
    pub public: Public,
}

impl Pair {
    /// The secret as a store writes it: the key's PEM or the consumer secret (a key in custody:
    /// which key it is).
    pub fn secret(&self) -> &str {
        match &self.material {
            Material::Key(k) => k.expose_secret_pem(),
            Material::Consumer(c) => c.expose_secret(),
            Material::Custody(k) => &k.handle().key_id,
        }
    }

    /// The certificate, for a key pair.
    pub fn certificate(&self) -> &Certificate {
        self.public.certificate().expect("a key pair")
    }
}

/// A throwaway key pair. Stores do not care about the algorithm, so P-256 keeps the suite fast.
pub fn pair() -> Pair {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
    let cert = rcgen::CertificateParams::new(vec!["conformance".into()])
        .expect("params")
        .self_signed(&key)
        .expect("self-signed certificate");
    Pair {
        material: Material::Key(KeyMaterial::from_pem(key.serialize_pem()).expect("PEM key")),
        public: Public::Certificate(Certificate::from_pem(&cert.pem()).expect("PEM certificate")),
    }
}

/// A throwaway consumer key and secret, shaped like Salesforce's (both change on rotation).
pub fn consumer_pair() -> Pair {
    let hex = |n: usize| {
        (0..n)
            .map(|_| format!("{:x}", rand::random::<u8>() & 0xf))
            .collect::<String>()
    };
    let secret = ConsumerSecret::new(format!("3MVG9{}", hex(40)), hex(64)).expect("consumer");
    Pair {
        public: Public::Consumer(secret.public()),
        material: Material::Consumer(secret),
    }
}

/// A throwaway generation of `kind`.
pub fn pair_of(kind: CredentialKind) -> Pair {
    match kind {
        CredentialKind::JwtCertificate => pair(),
        CredentialKind::ConsumerSecret => consumer_pair(),
    }
}

/// Stages `pair` as `generation` of `credential` for rotation `rotation`.
pub async fn stage_as(
    store: &dyn SecretStore,
    credential: &str,
    generation: u64,
    rotation: &str,
    pair: &Pair,
) -> rekey_api::Result<()> {
    let rotation_id = RotationId(rotation.to_string());
    let new = NewVersion {
        generation: Generation(generation),
        material: &pair.material,
        public: &pair.public,
        rotation_id: &rotation_id,
    };
    store.stage(credential, &new).await
}

async fn stage(
    store: &dyn SecretStore,
    credential: &str,
    generation: u64,
    pair: &Pair,
) -> rekey_api::Result<()> {
    stage_as(
        store,
        credential,
        generation,
        &format!("{credential}-r{generation}"),
        pair,
    )
    .await
}

/// Stages and promotes generations `1..=n`; returns their pairs.
async fn rotate_to(
    store: &dyn SecretStore,
    credential: &str,
    n: u64,
    kind: CredentialKind,
) -> Vec<Pair> {
    let mut pairs = Vec::new();
    for generation in 1..=n {
        let p = pair_of(kind);
        stage(store, credential, generation, &p)
            .await
            .expect("stage");
        store
            .promote(credential, Generation(generation))
            .await
            .expect("promote");
        pairs.push(p);
    }
    pairs
}

async fn generation_at(store: &dyn SecretStore, credential: &str, stage: Stage) -> Option<u64> {
    let stages = store.stages(credential).await.expect("stages");
    stages.get(stage).map(|v| v.generation.0)
}

/// The secret a store holds for a generation, as text: the key's PEM or the consumer secret (a
/// key in custody: which key it is).
pub fn secret_of(material: &Material) -> String {
    match material {
        Material::Key(k) => k.expose_secret_pem().to_string(),
        Material::Consumer(c) => c.expose_secret().to_string(),
        Material::Custody(k) => k.handle().key_id.clone(),
    }
}

async fn key_at(store: &dyn SecretStore, credential: &str, stage: Stage) -> Option<String> {
    let stored = store
        .read_stage(credential, stage)
        .await
        .expect("read_stage");
    stored.map(|s| secret_of(&s.material))
}

async fn unknown_credentials_are_empty(open: Open<'_>, credential: &str) {
    let store = open();
    assert_eq!(
        store.stages(credential).await.expect("stages"),
        Default::default(),
        "empty: stages"
    );
    for s in Stage::ALL {
        assert!(
            key_at(store.as_ref(), credential, s).await.is_none(),
            "empty: {s} key"
        );
    }
    assert!(
        store
            .read_journal(credential)
            .await
            .expect("journal")
            .is_empty(),
        "empty: journal"
    );
    store
        .preflight(credential)
        .await
        .expect("empty: check passes before the first write");
}

async fn stage_is_idempotent_per_rotation(open: Open<'_>, credential: &str, kind: CredentialKind) {
    let store = open();
    let first = pair_of(kind);
    stage(store.as_ref(), credential, 1, &first)
        .await
        .expect("stage: first write");
    stage(store.as_ref(), credential, 1, &first)
        .await
        .expect("stage: the same rotation again is a no-op");
    assert_eq!(
        generation_at(store.as_ref(), credential, Stage::Pending).await,
        Some(1),
        "stage: PENDING"
    );
    assert_eq!(
        generation_at(store.as_ref(), credential, Stage::Current).await,
        None,
        "stage: never CURRENT"
    );
    let pending = key_at(store.as_ref(), credential, Stage::Pending).await;
    assert_eq!(
        pending.as_deref(),
        Some(first.secret()),
        "stage: PENDING key round trip"
    );
    let stages = store.stages(credential).await.expect("stages");
    let info = stages.pending.expect("pending info");
    assert_eq!(info.public, first.public, "stage: PENDING certificate");
    assert_eq!(
        info.rotation_id,
        Some(RotationId(format!("{credential}-r1"))),
        "stage: rotation id kept"
    );

    let err = stage(store.as_ref(), credential, 2, &pair_of(kind))
        .await
        .expect_err("stage: a second rotation");
    assert_eq!(
        err.kind(),
        ErrorKind::Conflict,
        "stage: another pending generation is a conflict: {err}"
    );
    let err = stage(open().as_ref(), credential, 1, &pair_of(kind))
        .await
        .expect_err("stage: other key, same generation");
    assert_eq!(
        err.kind(),
        ErrorKind::Conflict,
        "stage: a different key under a pending generation: {err}"
    );
}

async fn promote_moves_current_to_previous(open: Open<'_>, credential: &str, kind: CredentialKind) {
    let store = open();
    let pairs = rotate_to(store.as_ref(), credential, 2, kind).await;
    assert_eq!(
        generation_at(store.as_ref(), credential, Stage::Current).await,
        Some(2),
        "promote: CURRENT"
    );
    assert_eq!(
        generation_at(store.as_ref(), credential, Stage::Previous).await,
        Some(1),
        "promote: PREVIOUS"
    );
    assert_eq!(
        generation_at(store.as_ref(), credential, Stage::Pending).await,
        None,
        "promote: PENDING cleared"
    );
    let current = key_at(store.as_ref(), credential, Stage::Current).await;
    assert_eq!(
        current.as_deref(),
        Some(pairs[1].secret()),
        "promote: CURRENT key"
    );
    let previous = key_at(open().as_ref(), credential, Stage::Previous).await;
    assert_eq!(
        previous.as_deref(),
        Some(pairs[0].secret()),
        "promote: PREVIOUS key, other handle"
    );

    store
        .promote(credential, Generation(2))
        .await
        .expect("promote: the current generation again is a no-op");
    let err = store
        .promote(credential, Generation(7))
        .await
        .expect_err("promote: nothing pending");
    assert_eq!(
        err.kind(),
        ErrorKind::NotFound,
        "promote: a generation that is not pending: {err}"
    );
}

async fn staging_behind_a_moved_current_is_a_conflict(
    open: Open<'_>,
    credential: &str,
    kind: CredentialKind,
) {
    let (ours, theirs) = (open(), open());
    rotate_to(ours.as_ref(), credential, 1, kind).await;
    // Another runner rotates to generation 2 after we planned generation 2 from CURRENT 1.
    let their_pair = pair_of(kind);
    stage(theirs.as_ref(), credential, 2, &their_pair)
        .await
        .expect("moved: their stage");
    theirs
        .promote(credential, Generation(2))
        .await
        .expect("moved: their promote");
    let err = stage(ours.as_ref(), credential, 2, &pair_of(kind))
        .await
        .expect_err("moved: our stale stage");
    assert_eq!(
        err.kind(),
        ErrorKind::Conflict,
        "moved: staging at or below CURRENT: {err}"
    );
    let current = key_at(ours.as_ref(), credential, Stage::Current).await;
    assert_eq!(
        current.as_deref(),
        Some(their_pair.secret()),
        "moved: their CURRENT kept"
    );
}

async fn revert_makes_previous_current_again(
    open: Open<'_>,
    credential: &str,
    kind: CredentialKind,
) {
    let store = open();
    let pairs = rotate_to(store.as_ref(), credential, 2, kind).await;
    store
        .revert(credential, Generation(1))
        .await
        .expect("revert");
    assert_eq!(
        generation_at(store.as_ref(), credential, Stage::Current).await,
        Some(1),
        "revert: CURRENT"
    );
    assert_eq!(
        generation_at(store.as_ref(), credential, Stage::Previous).await,
        Some(2),
        "revert: PREVIOUS"
    );
    let current = key_at(open().as_ref(), credential, Stage::Current).await;
    assert_eq!(
        current.as_deref(),
        Some(pairs[0].secret()),
        "revert: CURRENT key"
    );
    store
        .revert(credential, Generation(1))
        .await
        .expect("revert: again is a no-op");
    let err = store
        .revert(credential, Generation(9))
        .await
        .expect_err("revert: unknown generation");
    assert_eq!(
        err.kind(),
        ErrorKind::NotFound,
        "revert: not PREVIOUS: {err}"
    );
}

async fn destroy_removes_a_generation_but_never_current(
    open: Open<'_>,
    credential: &str,
    kind: CredentialKind,
) {
    let store = open();
    rotate_to(store.as_ref(), credential, 2, kind).await;
    let err = store
        .destroy(credential, Generation(2))
        .await
        .expect_err("destroy: CURRENT");
    assert_eq!(
        err.kind(),
        ErrorKind::Conflict,
        "destroy: refuses CURRENT: {err}"
    );
    store
        .destroy(credential, Generation(1))
        .await
        .expect("destroy: PREVIOUS");
    assert_eq!(
        key_at(store.as_ref(), credential, Stage::Previous).await,
        None,
        "destroy: PREVIOUS gone"
    );
    assert!(
        generation_key(store.as_ref(), credential, 1)
            .await
            .is_none(),
        "destroy: no copy of generation 1 left to read"
    );
    store
        .destroy(credential, Generation(1))
        .await
        .expect("destroy: already gone is fine");
    store
        .destroy(credential, Generation(42))
        .await
        .expect("destroy: never existed is fine");

    stage(store.as_ref(), credential, 3, &pair_of(kind))
        .await
        .expect("destroy: stage 3");
    store
        .destroy(credential, Generation(3))
        .await
        .expect("destroy: PENDING");
    assert_eq!(
        key_at(store.as_ref(), credential, Stage::Pending).await,
        None,
        "destroy: PENDING gone"
    );
    let fresh = pair_of(kind);
    stage(store.as_ref(), credential, 3, &fresh)
        .await
        .expect("destroy: a destroyed generation can be staged anew");
    let pending = key_at(store.as_ref(), credential, Stage::Pending).await;
    assert_eq!(
        pending.as_deref(),
        Some(fresh.secret()),
        "destroy: the new PENDING key"
    );
    assert_eq!(
        generation_at(store.as_ref(), credential, Stage::Current).await,
        Some(2),
        "destroy: CURRENT untouched"
    );
}

async fn generation_key(
    store: &dyn SecretStore,
    credential: &str,
    generation: u64,
) -> Option<String> {
    let stored = store
        .read_generation(credential, Generation(generation))
        .await
        .expect("read_generation");
    stored.map(|s| {
        assert_eq!(
            s.info.generation.0, generation,
            "read_generation: the generation asked for"
        );
        secret_of(&s.material)
    })
}

async fn discard_clears_pending_but_keeps_the_key(
    open: Open<'_>,
    credential: &str,
    kind: CredentialKind,
) {
    let store = open();
    let pairs = rotate_to(store.as_ref(), credential, 2, kind).await;
    let staged = pair_of(kind);
    stage(store.as_ref(), credential, 3, &staged)
        .await
        .expect("discard: stage 3");
    store
        .discard(credential, Generation(3))
        .await
        .expect("discard");
    assert_eq!(
        generation_at(store.as_ref(), credential, Stage::Pending).await,
        None,
        "discard: PENDING cleared"
    );
    assert_eq!(
        generation_at(store.as_ref(), credential, Stage::Current).await,
        Some(2),
        "discard: CURRENT untouched"
    );
    assert_eq!(
        generation_at(store.as_ref(), credential, Stage::Previous).await,
        Some(1),
        "discard: PREVIOUS untouched"
    );
    let other = open();
    assert_eq!(
        generation_key(other.as_ref(), credential, 3)
            .await
            .as_deref(),
        Some(staged.secret()),
        "discard: the discarded key is still recoverable"
    );
    assert_eq!(
        generation_key(other.as_ref(), credential, 2)
            .await
            .as_deref(),
        Some(pairs[1].secret()),
        "read_generation: CURRENT's generation"
    );
    assert_eq!(
        generation_key(other.as_ref(), credential, 1)
            .await
            .as_deref(),
        Some(pairs[0].secret()),
        "read_generation: PREVIOUS's generation"
    );
    assert!(
        generation_key(other.as_ref(), credential, 9)
            .await
            .is_none(),
        "read_generation: never stored"
    );
    store
        .discard(credential, Generation(3))
        .await
        .expect("discard: again is a no-op");
    store
        .discard(credential, Generation(2))
        .await
        .expect("discard: a generation that is not PENDING is a no-op");
    assert_eq!(
        generation_at(store.as_ref(), credential, Stage::Current).await,
        Some(2),
        "discard: never touches CURRENT"
    );
    let next = pair_of(kind);
    stage(store.as_ref(), credential, 4, &next)
        .await
        .expect("discard: the next rotation stages after the discarded generation");
    store
        .promote(credential, Generation(4))
        .await
        .expect("discard: and promotes");
    assert_eq!(
        generation_key(store.as_ref(), credential, 3)
            .await
            .as_deref(),
        Some(staged.secret()),
        "discard: still recoverable after the next rotation"
    );
}

/// A journal entry of rotation `rotation` introducing generation 2 over 1, timestamped by its
/// step, for store tests that need entries to write.
pub fn journal_entry(rotation: &str, step: Step, phase: Phase, fence: Option<u64>) -> JournalEntry {
    JournalEntry {
        rotation_id: RotationId(rotation.to_string()),
        at: chrono::DateTime::from_timestamp(1_800_000_000 + step as i64, 0).expect("timestamp"),
        step,
        phase,
        generation: Generation(2),
        previous_generation: Some(Generation(1)),
        new_fingerprint: None,
        old_fingerprint: None,
        detail: Some(format!("{step} {phase:?}")),
        fence,
        prev: None,
        hash: None,
    }
}

async fn the_journal_refuses_entries_from_an_older_lease(open: Open<'_>, credential: &str) {
    let store = open();
    let newer = journal_entry(
        &format!("{credential}-r1"),
        Step::Generate,
        Phase::Begin,
        Some(7),
    );
    store
        .append_journal(credential, &newer)
        .await
        .expect("fence: append under lease 7");
    let stale = journal_entry(
        &format!("{credential}-r1"),
        Step::Stage,
        Phase::Begin,
        Some(6),
    );
    let err = open()
        .append_journal(credential, &stale)
        .await
        .expect_err("fence: an entry under an older lease");
    assert_eq!(err.kind(), ErrorKind::LeaseLost, "fence: LeaseLost: {err}");
    let same = journal_entry(
        &format!("{credential}-r1"),
        Step::Generate,
        Phase::Done,
        Some(7),
    );
    store
        .append_journal(credential, &same)
        .await
        .expect("fence: the same lease appends");
    let read = open().read_journal(credential).await.expect("fence: read");
    assert_eq!(
        unchained(read),
        vec![newer, same],
        "fence: the stale entry was not written"
    );
}

async fn journal_round_trips_in_order(open: Open<'_>, credential: &str) {
    let store = open();
    let entry =
        |step: Step, phase: Phase| journal_entry(&format!("{credential}-r1"), step, phase, None);
    let written: Vec<JournalEntry> = Step::ALL
        .iter()
        .flat_map(|&s| [entry(s, Phase::Begin), entry(s, Phase::Done)])
        .collect();
    for e in &written {
        store
            .append_journal(credential, e)
            .await
            .expect("journal: append");
    }
    let read = open()
        .read_journal(credential)
        .await
        .expect("journal: read from another handle");
    assert_eq!(unchained(read), written, "journal: every entry, in order");
}

/// `entries` without the chain fields the store's append set, to compare with what was appended.
pub fn unchained(entries: Vec<JournalEntry>) -> Vec<JournalEntry> {
    entries
        .into_iter()
        .map(|e| JournalEntry {
            prev: None,
            hash: None,
            ..e
        })
        .collect()
}

async fn appended_entries_form_a_hash_chain(open: Open<'_>, credential: &str) {
    let store = open();
    let rotation = format!("{credential}-r1");
    for (step, phase) in [
        (Step::Generate, Phase::Begin),
        (Step::Generate, Phase::Done),
        (Step::Stage, Phase::Begin),
    ] {
        // Whatever chain fields a caller sets are replaced by the store's own link.
        let mut entry = journal_entry(&rotation, step, phase, Some(1));
        entry.prev = Some("0".repeat(64));
        store
            .append_journal(credential, &entry)
            .await
            .expect("chain: append");
    }
    let read = open().scan_journal(credential).await.expect("chain: read");
    let e = &read.entries;
    assert_eq!(e.len(), 3, "chain: three entries");
    assert_eq!(
        e[0].prev.as_deref(),
        Some(rekey_api::GENESIS),
        "chain: starts at genesis"
    );
    for (i, entry) in e.iter().enumerate() {
        assert_eq!(
            entry.hash,
            Some(rekey_api::entry_hash(entry)),
            "chain: entry {} hashed",
            i + 1
        );
    }
    assert_eq!(e[1].prev, e[0].hash, "chain: entry 2 follows entry 1");
    assert_eq!(e[2].prev, e[1].hash, "chain: entry 3 follows entry 2");
    assert_eq!(read.locations.len(), 3, "chain: every entry located");
    let verdict = rekey_api::verify_chain(&read);
    assert_eq!(
        (verdict.entries, verdict.legacy),
        (3, 0),
        "chain: {verdict:?}"
    );
    assert!(verdict.intact(), "chain: intact {verdict:?}");

    // The same entries with one detail changed, as read back: named at that entry, in place.
    let mut edited = read.clone();
    edited.entries[1].detail = Some("edited".into());
    let broken = rekey_api::verify_chain(&edited)
        .broken
        .expect("chain: an edit breaks it");
    assert_eq!(
        (broken.number, broken.problem, broken.location.clone()),
        (2, ChainProblem::ContentChanged, read.locations[1].clone()),
        "chain: the edited entry named"
    );
}

async fn a_journal_from_before_chaining_chains_on(
    open: Open<'_>,
    legacy: WriteLegacy<'_>,
    credential: &str,
) {
    let rotation = format!("{credential}-r1");
    let old: Vec<serde_json::Value> = [
        (Step::Generate, Phase::Begin),
        (Step::Generate, Phase::Done),
    ]
    .into_iter()
    .map(|(step, phase)| {
        serde_json::to_value(journal_entry(&rotation, step, phase, Some(1))).expect("JSON")
    })
    .collect();
    legacy(credential, old).await;
    let store = open();
    let before = store.scan_journal(credential).await.expect("legacy: read");
    assert_eq!(before.entries.len(), 2, "legacy: the old entries read");
    let verdict = rekey_api::verify_chain(&before);
    assert!(
        verdict.intact() && verdict.legacy == 2,
        "legacy: accepted {verdict:?}"
    );
    for phase in [Phase::Begin, Phase::Done] {
        store
            .append_journal(
                credential,
                &journal_entry(&rotation, Step::Stage, phase, Some(1)),
            )
            .await
            .expect("legacy: append after old entries");
    }
    let read = open()
        .scan_journal(credential)
        .await
        .expect("legacy: read again");
    assert_eq!(
        read.entries[2].prev,
        Some(rekey_api::entry_hash(&read.entries[1])),
        "legacy: the first chained entry follows the last old one"
    );
    let verdict = rekey_api::verify_chain(&read);
    assert_eq!(
        (verdict.entries, verdict.legacy),
        (4, 2),
        "legacy: {verdict:?}"
    );
    assert!(verdict.intact(), "legacy: intact {verdict:?}");
}

async fn the_lock_is_exclusive_until_released(open: Open<'_>, credential: &str) {
    let (first, second) = (open(), open());
    let held = first
        .lock(credential, "conformance holder one")
        .await
        .expect("lock: first");
    let err = second
        .lock(credential, "conformance holder two")
        .await
        .expect_err("lock: second while held");
    assert_eq!(
        err.kind(),
        ErrorKind::Busy,
        "lock: second holder refused: {err}"
    );
    assert!(
        err.to_string().contains("conformance holder one"),
        "lock: the refusal names the holder: {err}"
    );
    held.confirm().await.expect("lock: confirm while held");
    let first_fence = held.fence();
    held.release().await.expect("lock: release");
    let again = second
        .lock(credential, "conformance holder two")
        .await
        .expect("lock: free after release");
    assert!(
        again.fence() > first_fence,
        "lock: fences increase ({} then {})",
        first_fence,
        again.fence()
    );
    again
        .confirm()
        .await
        .expect("lock: the new holder confirms");
    again.release().await.expect("lock: release again");
    let third = open()
        .lock(credential, "conformance holder three")
        .await
        .expect("lock: a third holder from a new handle");
    assert!(
        third.fence() > first_fence + 1,
        "lock: fences keep increasing across handles"
    );
    third.release().await.expect("lock: release the third");
}

async fn prune_never_touches_a_staged_generation(
    open: Open<'_>,
    credential: &str,
    kind: CredentialKind,
) {
    let store = open();
    let pairs = rotate_to(store.as_ref(), credential, 4, kind).await;
    let pending = pair_of(kind);
    stage(store.as_ref(), credential, 6, &pending)
        .await
        .expect("prune: stage");
    let destroyed = store.prune(credential).await.expect("prune");
    for g in [4, 3, 6] {
        assert!(
            !destroyed.contains(&Generation(g)),
            "prune: destroyed staged generation {g}: {destroyed:?}"
        );
    }
    for (stage, pem) in [
        (Stage::Current, pairs[3].secret()),
        (Stage::Previous, pairs[2].secret()),
        (Stage::Pending, pending.secret()),
    ] {
        assert_eq!(
            key_at(open().as_ref(), credential, stage).await.as_deref(),
            Some(pem),
            "prune: {stage} key kept"
        );
    }
    for g in &destroyed {
        assert!(
            generation_key(store.as_ref(), credential, g.0)
                .await
                .is_none(),
            "prune: generation {g} reported destroyed but still readable"
        );
    }
    assert_eq!(
        store.prune(credential).await.expect("prune: again"),
        [],
        "prune: idempotent"
    );
}
