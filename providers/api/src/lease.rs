//! The fenced rotation lease of remote stores, written once: a lock record per credential,
//! changed only by a conditional write, whose fence grows with every lease taken.
//!
//! A store offers [`LeaseStore`]: read the credential's lock record with an opaque version, and
//! write a record only if that version is unchanged. [`Leases`] runs the protocol on top and
//! hands out the [`RotationLock`]s:
//!
//! - **take**: a record nobody holds (released, or expired) is replaced by a new lease whose fence
//!   is one more than the record's and than every fence in the credential's journal (so deleting
//!   the record by hand, say to free a stuck lock, never lets a new lease fall below entries the
//!   journal would then refuse); a held one is `Busy`.
//! - **confirm**: the record must still be this lease (same fence, not released), or it is
//!   `LeaseLost`; past half its time to live it is extended (an expired lease nobody took is
//!   still this holder's).
//! - **release**: marks the record released, only if it is still this lease: a late release
//!   never frees a lease another runner took over.
//! - **drop** without release: released in the background; the next [`Leases::take`] of the same
//!   store waits for it, so dropping a guard and locking again behaves like a file lock.
//!
//! Of two writers racing on one record, the conditional write lets one win; the other reads
//! again and decides again ([`Backoff::STALE_WRITE`]), so two takers never both win.

use crate::{Backoff, Error, ErrorKind, JournalEntry, Result, RotationLock};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// What a credential's lock record says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRecord {
    /// Who took the lease (a rotation id or an operator label); `None` in a record that does not
    /// say.
    pub holder: Option<String>,
    /// The lease's fencing number; 0 in a record written before leases carried one, so the next
    /// lease gets 1.
    pub fence: u64,
    /// When the lease was taken.
    pub acquired_at: Option<DateTime<Utc>>,
    /// When it expires unless confirmed; `None` when missing or unreadable: such a lease does
    /// not expire by itself, since nothing says it did.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was given back; `None` while it is held (or expired without a release).
    pub released_at: Option<DateTime<Utc>>,
}

impl LeaseRecord {
    /// Reads a lock record leniently, as every rekey version wrote one: the fence a number or a
    /// string of digits (or absent: 0), times as RFC 3339 strings (an unreadable one counts as
    /// missing, but a `released_at` that is there at all means released). `Err` says what is
    /// malformed, for the store to wrap with where the record is.
    pub fn parse(data: &Map<String, Value>) -> std::result::Result<LeaseRecord, String> {
        let fence = match data.get("fence") {
            None => Some(0),
            Some(Value::String(s)) => s.parse().ok(),
            Some(other) => other.as_u64(),
        }
        .ok_or("a 'fence' that is not a whole number")?;
        let time = |key: &str| {
            data.get(key)
                .and_then(Value::as_str)
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        let released_at = match data.get("released_at") {
            None | Some(Value::Null) => None,
            // A release whose time cannot be read is still a release.
            Some(_) => Some(time("released_at").unwrap_or(DateTime::UNIX_EPOCH)),
        };
        Ok(LeaseRecord {
            holder: data
                .get("holder")
                .and_then(Value::as_str)
                .map(str::to_string),
            fence,
            acquired_at: time("acquired_at"),
            expires_at: time("expires_at"),
            released_at,
        })
    }

    /// The record as JSON: `holder`, `fence` (a number), `acquired_at`, `expires_at` and, once
    /// released, `released_at` (RFC 3339), each only when known. Every earlier rekey version
    /// reads this.
    pub fn to_json(&self) -> Map<String, Value> {
        let mut data = Map::new();
        if let Some(holder) = &self.holder {
            data.insert("holder".into(), holder.clone().into());
        }
        data.insert("fence".into(), self.fence.into());
        for (key, time) in [
            ("acquired_at", self.acquired_at),
            ("expires_at", self.expires_at),
            ("released_at", self.released_at),
        ] {
            if let Some(time) = time {
                data.insert(key.into(), time.to_rfc3339().into());
            }
        }
        data
    }

    /// Someone holds it at `now`: not released and not expired.
    pub fn held(&self, now: DateTime<Utc>) -> bool {
        self.released_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }

    fn holder_name(&self) -> &str {
        self.holder.as_deref().unwrap_or("an unknown holder")
    }
}

/// What a store offers for [`Leases`]: its credentials' lock records, each changed only by a
/// conditional write. `Display` names the store in messages (`vault(https://… secret/rekey)`).
#[async_trait]
pub trait LeaseStore: fmt::Display + Send + Sync + 'static {
    /// What a conditional write must name: the version of the record that was read (a KV
    /// version, the version holding a label, or "there is no record yet").
    type Version: Send + Sync;

    /// The lock record of `credential` (`None` when there is none yet) and its version.
    ///
    /// # Errors
    /// A record that is not a lock record is an error naming where it is; so are transport and
    /// permission failures.
    async fn read_lease(&self, credential: &str) -> Result<(Option<LeaseRecord>, Self::Version)>;

    /// Writes `record` as the lock record of `credential` if it is still at `seen`: `Ok(true)`
    /// when written, `Ok(false)` when another writer changed it since it was read.
    async fn write_lease(
        &self,
        credential: &str,
        record: &LeaseRecord,
        seen: &Self::Version,
    ) -> Result<bool>;

    /// Where the lock record of `credential` is, for messages (`secret/data/rekey/billing/lock`).
    fn lease_location(&self, credential: &str) -> String;
}

/// The rotation leases of one store: [`LeaseStore`]'s records, the lease time to live, and the
/// releases dropped guards started.
pub struct Leases<S: LeaseStore> {
    shared: Arc<Shared<S>>,
}

impl<S: LeaseStore> fmt::Debug for Leases<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leases")
            .field("store", &self.shared.store.to_string())
            .field("ttl", &self.shared.ttl)
            .finish_non_exhaustive()
    }
}

struct Shared<S> {
    store: S,
    ttl: Duration,
    /// Releases started by dropped guards.
    releases: Mutex<Vec<JoinHandle<()>>>,
}

/// What a step of the protocol decided about the record it read.
enum Change<T> {
    /// Leave it: answer `T`.
    Keep(T),
    /// Write this record (conditionally), then answer `T`.
    Write(LeaseRecord, T),
}

impl<S: LeaseStore> Leases<S> {
    /// Leases on `store` that last `ttl` unless confirmed.
    pub fn new(store: S, ttl: Duration) -> Self {
        Leases {
            shared: Arc::new(Shared {
                store,
                ttl,
                releases: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The store underneath.
    pub fn store(&self) -> &S {
        &self.shared.store
    }

    /// Takes the lease of `credential` for `holder`, with a fence greater than the record's and
    /// than every fence in `journal` (the credential's, as read just before). The contract of
    /// [`crate::SecretStore::lock`].
    ///
    /// # Errors
    /// `Busy` naming the holder, its fence, its expiry and the record's location when another
    /// holder has it (also when other takers kept winning the record for
    /// [`Backoff::STALE_WRITE`]'s attempts).
    pub async fn take(
        &self,
        credential: &str,
        holder: &str,
        journal: &[JournalEntry],
    ) -> Result<Box<dyn RotationLock>> {
        let pending: Vec<_> = self
            .shared
            .releases
            .lock()
            .map(|mut r| r.drain(..).collect())
            .unwrap_or_default();
        for release in pending {
            let _ = release.await;
        }
        let floor = crate::greatest_fence(journal).unwrap_or(0);
        let fence = self.shared.take(credential, holder, floor).await?;
        Ok(Box::new(Lease {
            shared: Arc::clone(&self.shared),
            credential: credential.to_string(),
            fence,
            released: false,
        }))
    }
}

impl<S: LeaseStore> Shared<S> {
    /// Reads the record, lets `decide` say what to write, and writes it conditionally; when
    /// another writer got in between, reads again and decides again. `contended` is the kind of
    /// the error when every attempt lost.
    async fn change<T>(
        &self,
        credential: &str,
        contended: ErrorKind,
        decide: impl Fn(Option<&LeaseRecord>) -> Result<Change<T>>,
    ) -> Result<T> {
        let done = Backoff::STALE_WRITE
            .retry_stale(|| async {
                let (record, seen) = self.store.read_lease(credential).await?;
                match decide(record.as_ref())? {
                    Change::Keep(answer) => Ok(Some(answer)),
                    Change::Write(new, answer) => Ok(self
                        .store
                        .write_lease(credential, &new, &seen)
                        .await?
                        .then_some(answer)),
                }
            })
            .await?;
        done.ok_or_else(|| {
            Error::new(
                contended,
                format!(
                    "{}: credential '{credential}': the lease at {} kept changing: other runners wrote it first {} times in a row",
                    self.store,
                    self.store.lease_location(credential),
                    Backoff::STALE_WRITE.attempts
                ),
            )
            .with_hint("other rekey processes are taking this credential's lease at the same moment; retry")
            .temporary()
        })
    }

    /// `ttl` after `now`, saturating for a time to live too large for a date.
    fn expiry(&self, now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
        chrono::Duration::from_std(ttl)
            .ok()
            .and_then(|ttl| now.checked_add_signed(ttl))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    async fn take(&self, credential: &str, holder: &str, floor: u64) -> Result<u64> {
        let fence = self
            .change(credential, ErrorKind::Busy, |record| {
                let now = crate::now();
                if let Some(held) = record.filter(|r| r.held(now)) {
                    return Err(self.busy(credential, held));
                }
                let fence = record
                    .map_or(0, |r| r.fence)
                    .max(floor)
                    .checked_add(1)
                    .ok_or_else(|| {
                        Error::new(
                            ErrorKind::Unexpected,
                            format!(
                                "{}: credential '{credential}': {} holds the greatest possible fence",
                                self.store,
                                self.store.lease_location(credential)
                            ),
                        )
                    })?;
                let record = LeaseRecord {
                    holder: Some(holder.to_string()),
                    fence,
                    acquired_at: Some(now),
                    expires_at: Some(self.expiry(now, self.ttl)),
                    released_at: None,
                };
                Ok(Change::Write(record, fence))
            })
            .await?;
        tracing::debug!(store = %self.store, credential, holder, fence, "took the rotation lease");
        Ok(fence)
    }

    async fn confirm(&self, credential: &str, fence: u64) -> Result<()> {
        let extended_to = self
            .change(credential, ErrorKind::Conflict, |record| {
                let record = self.own(credential, fence, record)?;
                let now = crate::now();
                // Extending only past half the time to live keeps a confirm before every write
                // from writing a new version each time (versions are kept, and counted by some
                // stores' quotas). An expired lease nobody took is still this holder's.
                if record
                    .expires_at
                    .is_some_and(|at| at >= self.expiry(now, self.ttl / 2))
                {
                    return Ok(Change::Keep(None));
                }
                let until = self.expiry(now, self.ttl);
                let extended = LeaseRecord {
                    expires_at: Some(until),
                    ..record.clone()
                };
                Ok(Change::Write(extended, Some(until)))
            })
            .await?;
        if let Some(until) = extended_to {
            tracing::debug!(store = %self.store, credential, fence, %until, "extended the rotation lease");
        }
        Ok(())
    }

    /// Marks the lease `fence` released, unless it is no longer this holder's.
    async fn release(&self, credential: &str, fence: u64) -> Result<()> {
        self.change(credential, ErrorKind::Conflict, |record| {
            let record = self.own(credential, fence, record)?;
            let released = LeaseRecord {
                released_at: Some(crate::now()),
                ..record.clone()
            };
            Ok(Change::Write(released, ()))
        })
        .await?;
        tracing::debug!(store = %self.store, credential, fence, "released the rotation lease");
        Ok(())
    }

    /// `record` if it is the unreleased lease `fence`; `LeaseLost` otherwise.
    fn own<'r>(
        &self,
        credential: &str,
        fence: u64,
        record: Option<&'r LeaseRecord>,
    ) -> Result<&'r LeaseRecord> {
        match record {
            Some(r) if r.fence == fence && r.released_at.is_none() => Ok(r),
            other => Err(self.lost(credential, fence, other)),
        }
    }

    /// `Busy`: `held` is another holder's lease.
    fn busy(&self, credential: &str, held: &LeaseRecord) -> Error {
        let until = held
            .expires_at
            .map_or_else(|| "an unknown time".to_string(), |t| t.to_rfc3339());
        Error::new(
            ErrorKind::Busy,
            format!(
                "{}: credential '{credential}' is locked by {} until {until} (lease {}, {})",
                self.store,
                held.holder_name(),
                held.fence,
                self.store.lease_location(credential)
            ),
        )
        .with_hint("another rekey process is rotating this credential; wait for it to finish or for its lease to expire")
    }

    /// `LeaseLost`: the lease `ours` is gone; `found` is what the record says instead.
    fn lost(&self, credential: &str, ours: u64, found: Option<&LeaseRecord>) -> Error {
        let location = self.store.lease_location(credential);
        let now = match found {
            Some(theirs) if theirs.fence != ours => format!(
                "{location} now carries lease {} of {}",
                theirs.fence,
                theirs.holder_name()
            ),
            Some(_) => format!("{location} shows it released"),
            None => format!("{location} holds no lease"),
        };
        Error::new(
            ErrorKind::LeaseLost,
            format!(
                "{}: credential '{credential}': this runner's lease {ours} is lost: {now}",
                self.store
            ),
        )
        .with_hint("the lease expired (lock_ttl) and another runner took the rotation over, or it was released; stop, let the other runner finish, then inspect `rekey journal`")
    }
}

/// A held rotation lease: the credential's lock record carrying this fence.
struct Lease<S: LeaseStore> {
    shared: Arc<Shared<S>>,
    credential: String,
    fence: u64,
    released: bool,
}

impl<S: LeaseStore> fmt::Debug for Lease<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("store", &self.shared.store.to_string())
            .field("credential", &self.credential)
            .field("fence", &self.fence)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<S: LeaseStore> RotationLock for Lease<S> {
    fn fence(&self) -> u64 {
        self.fence
    }

    async fn confirm(&self) -> Result<()> {
        self.shared.confirm(&self.credential, self.fence).await
    }

    async fn release(mut self: Box<Self>) -> Result<()> {
        self.released = true;
        self.shared.release(&self.credential, self.fence).await
    }
}

impl<S: LeaseStore> Drop for Lease<S> {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        // Dropped without release(): release in the background if a runtime is around; the
        // lease's expiry frees it otherwise.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (shared, credential, fence) = (
            Arc::clone(&self.shared),
            self.credential.clone(),
            self.fence,
        );
        let task = runtime.spawn(async move {
            if let Err(e) = shared.release(&credential, fence).await {
                tracing::warn!(error = %e, "could not release a dropped rotation lease; it frees itself when it expires");
            }
        });
        if let Ok(mut releases) = self.shared.releases.lock() {
            releases.push(task);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tokio::sync::Mutex as AsyncMutex;

    #[test]
    fn records_of_every_rekey_version_parse() {
        let parse = |value: Value| LeaseRecord::parse(value.as_object().unwrap());
        // Vault before fences: no fence, times with +00:00.
        let legacy = parse(json!({
            "holder": "old-runner",
            "acquired_at": "2020-01-01T00:00:00+00:00",
            "expires_at": "2020-01-01T00:30:00+00:00",
        }))
        .unwrap();
        assert_eq!(legacy.fence, 0);
        assert_eq!(legacy.holder.as_deref(), Some("old-runner"));
        assert!(!legacy.held(crate::now()), "expired long ago");
        // Vault with fences: the fence as a string, released_at present.
        let vault = parse(json!({
            "holder": "r", "fence": "7", "expires_at": "2999-01-01T00:00:00+00:00",
            "released_at": "2020-01-01T00:00:00+00:00",
        }))
        .unwrap();
        assert_eq!((vault.fence, vault.held(crate::now())), (7, false));
        // AWS: chrono's serde form (Z, nanoseconds), the fence a number, no released_at.
        let aws = parse(json!({
            "holder": "r", "fence": 3, "acquired_at": "2026-01-01T00:00:00.123456789Z",
            "expires_at": "2999-01-01T00:00:00Z",
        }))
        .unwrap();
        assert_eq!((aws.fence, aws.held(crate::now())), (3, true));
        // A lease whose expiry cannot be read does not expire by itself.
        let no_expiry = parse(json!({ "holder": "r", "fence": 1, "expires_at": "soon" })).unwrap();
        assert!(no_expiry.held(DateTime::<Utc>::MAX_UTC));
        for bad in [json!("seven"), json!(-1), json!(1.5), json!(true)] {
            assert!(parse(json!({ "fence": bad.clone() })).is_err(), "{bad}");
        }
        // What this version writes reads back the same.
        let written = LeaseRecord::parse(&aws.to_json()).unwrap();
        assert_eq!(written, aws);
        assert_eq!(aws.to_json()["fence"], json!(3));
        assert!(!aws.to_json().contains_key("released_at"));
    }

    /// An in-memory store: a record and a version counter, with a hook to let another writer in
    /// between a read and the write.
    #[derive(Default)]
    struct Memory {
        state: AsyncMutex<(Option<Map<String, Value>>, u64)>,
        interfere: std::sync::Mutex<u32>,
    }

    impl fmt::Display for Memory {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("memory")
        }
    }

    #[async_trait]
    impl LeaseStore for Memory {
        type Version = u64;

        async fn read_lease(&self, _: &str) -> Result<(Option<LeaseRecord>, u64)> {
            let state = self.state.lock().await;
            let record = state
                .0
                .as_ref()
                .map(|data| LeaseRecord::parse(data).unwrap());
            Ok((record, state.1))
        }

        async fn write_lease(&self, _: &str, record: &LeaseRecord, seen: &u64) -> Result<bool> {
            let mut state = self.state.lock().await;
            let mut interfere = self.interfere.lock().unwrap();
            if *interfere > 0 {
                *interfere -= 1;
                state.1 += 1;
            }
            if state.1 != *seen {
                return Ok(false);
            }
            *state = (Some(record.to_json()), state.1 + 1);
            Ok(true)
        }

        fn lease_location(&self, credential: &str) -> String {
            format!("memory/{credential}/lock")
        }
    }

    const TTL: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn take_confirm_release_and_the_fences_between() {
        let leases = Leases::new(Memory::default(), TTL);
        let a = leases.take("billing", "runner-a", &[]).await.unwrap();
        assert_eq!(a.fence(), 1);
        let err = leases.take("billing", "runner-b", &[]).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Busy);
        assert!(
            err.to_string()
                .starts_with("memory: credential 'billing' is locked by runner-a until ")
                && err.to_string().ends_with("(lease 1, memory/billing/lock)"),
            "{err}"
        );
        a.confirm().await.unwrap();
        a.release().await.unwrap();
        // The journal's greatest fence outnumbers the record's.
        let journal = [5, 2].map(|fence| JournalEntry {
            rotation_id: crate::RotationId("r".into()),
            at: crate::now(),
            step: crate::Step::Generate,
            phase: crate::Phase::Done,
            generation: crate::Generation(1),
            previous_generation: None,
            new_fingerprint: None,
            old_fingerprint: None,
            detail: None,
            fence: Some(fence),
            prev: None,
            hash: None,
        });
        let b = leases.take("billing", "runner-b", &journal).await.unwrap();
        assert_eq!(b.fence(), 6);
        drop(b);
        // The dropped guard's release is awaited by the next take.
        let c = leases.take("billing", "runner-c", &[]).await.unwrap();
        assert_eq!(c.fence(), 7);

        // Expired and taken over: the old holder learns it and cannot release.
        crate::clock::advance_on_this_thread(chrono::Duration::hours(2));
        let d = leases.take("billing", "runner-d", &[]).await.unwrap();
        let err = c.confirm().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LeaseLost);
        assert_eq!(
            err.to_string(),
            "memory: credential 'billing': this runner's lease 7 is lost: memory/billing/lock now carries lease 8 of runner-d"
        );
        assert!(err.hint().unwrap().contains("lock_ttl"));
        assert_eq!(c.release().await.unwrap_err().kind(), ErrorKind::LeaseLost);
        d.confirm().await.unwrap();
        d.release().await.unwrap();
    }

    #[tokio::test]
    async fn confirm_extends_only_past_half_the_time_to_live_even_when_expired() {
        let leases = Leases::new(Memory::default(), TTL);
        let lease = leases.take("billing", "runner-a", &[]).await.unwrap();
        let version = || async { leases.store().state.lock().await.1 };
        let taken = version().await;
        lease.confirm().await.unwrap();
        assert_eq!(
            version().await,
            taken,
            "no write before half the time to live"
        );
        crate::clock::advance_on_this_thread(chrono::Duration::minutes(31));
        lease.confirm().await.unwrap();
        assert_ne!(version().await, taken, "extended");
        crate::clock::advance_on_this_thread(chrono::Duration::hours(2));
        lease.confirm().await.unwrap();
        let err = leases.take("billing", "runner-b", &[]).await.unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::Busy,
            "expired, nobody took it: still held"
        );
        lease.release().await.unwrap();
    }

    #[tokio::test]
    async fn a_lost_race_is_read_again_and_endless_contention_is_reported() {
        let leases = Leases::new(Memory::default(), TTL);
        *leases.store().interfere.lock().unwrap() = 2;
        let lease = leases.take("billing", "runner-a", &[]).await.unwrap();
        assert_eq!(lease.fence(), 1, "won on the third try");
        lease.release().await.unwrap();
        *leases.store().interfere.lock().unwrap() = u32::MAX;
        let err = leases.take("billing", "runner-b", &[]).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Busy);
        assert!(err.is_temporary());
        assert!(err.to_string().contains("kept changing"), "{err}");
    }
}
