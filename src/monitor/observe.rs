//! What every source of a credential says: the certificate on the app (read from Salesforce,
//! never assumed), each store's CURRENT, and the journal.
//!
//! Observing never fails: a source that cannot be read is recorded as such (and becomes a finding
//! of severity unknown), so an outage can never hide an expiring certificate behind an error exit.

use crate::config::{Config, CredentialConfig, Policy};
use crate::{rotation, wiring};
use chrono::{DateTime, Utc};
use rekey_api::{CredentialKind, Fingerprint, Generation, RotationId, Staged, StagedState};
use std::time::Duration;

/// A certificate as one source holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// Its fingerprint.
    pub fingerprint: Fingerprint,
    /// Its notAfter; `None` for a consumer secret, which does not expire by itself.
    pub not_after: Option<DateTime<Utc>>,
    /// Since when the key exists, which its age counts from (stores only): when the store wrote
    /// it, or its certificate's notBefore when that is older (an imported key: a 2022 key
    /// imported today is not 0 days old).
    pub created_at: Option<DateTime<Utc>>,
    /// Its generation (stores only).
    pub generation: Option<Generation>,
}

/// One place a credential's certificate lives.
#[derive(Clone, Debug)]
pub struct Source {
    /// `app`, or `store:<name from rekey.toml>`.
    pub name: String,
    /// Whether it is the app (the others are stores).
    pub is_app: bool,
    /// What it holds (`None`: nothing), or why it could not be read.
    pub read: std::result::Result<Option<Held>, String>,
}

/// Everything `check` knows about one credential.
#[derive(Clone, Debug)]
pub struct Observation {
    /// Credential name.
    pub credential: String,
    /// Its app.
    pub app: String,
    /// Its org.
    pub org: String,
    /// Its thresholds.
    pub policy: Policy,
    /// A rotation open longer than this needs a human.
    pub open_rotation_limit: Duration,
    /// The app first, then the stores, primary first.
    pub sources: Vec<Source>,
    /// When the last rotation finished.
    pub last_success: Option<DateTime<Utc>>,
    /// The open rotation and when it began.
    pub open_rotation: Option<(RotationId, DateTime<Utc>)>,
    /// The certificates the open rotation moves between (default when none is open).
    pub in_flight: InFlight,
    /// A rotation whose new certificate is on the app longer than this is stuck, not in progress.
    pub verify_timeout: Duration,
    /// Why the journal could not be read, if it could not.
    pub journal_error: Option<String>,
    /// The first entry of the journal's hash chain that does not fit, with the store holding it
    /// (`store:<name>`); `None` when the chain is intact or the journal unread.
    pub chain_break: Option<(String, rekey_api::ChainBreak)>,
    /// How each store leaves the keys open to others on this machine (`store:<name>`, what).
    pub exposure: Vec<(String, rekey_api::Exposure)>,
    /// A consumer secret's staged slot at Salesforce (`None` for a certificate).
    pub consumer: Option<ConsumerSlot>,
}

/// A consumer secret's state at Salesforce beside its primary pair: the staged slot, which holds
/// either a pair somebody staged or the previous pair, still valid until it is deleted.
#[derive(Clone, Debug)]
pub struct ConsumerSlot {
    /// The slot as read, or why it could not be.
    pub staged: std::result::Result<Option<Staged>, String>,
    /// The consumer key of the primary store's PREVIOUS generation.
    pub previous_key: Option<String>,
    /// `revoke_previous_after_hours`.
    pub revoke_previous_after: Duration,
}

impl ConsumerSlot {
    /// The previous pair rekey rotated out, still valid at Salesforce, and since when.
    pub fn previous_still_valid(&self) -> Option<&Staged> {
        let staged = self.staged.as_ref().ok()?.as_ref()?;
        (staged.state == StagedState::Rotated && Some(&staged.key) == self.previous_key.as_ref())
            .then_some(staged)
    }

    /// Whether the previous pair is due to be retired at `now`.
    pub fn retire_due(&self, now: DateTime<Utc>) -> bool {
        self.previous_still_valid().is_some_and(|s| {
            s.created_at.is_some_and(|rotated| {
                (now - rotated).to_std().unwrap_or_default() >= self.revoke_previous_after
            })
        })
    }
}

/// What an open rotation may leave on the app and in the stores while it runs: the app holds its
/// PENDING certificate between publish and promote (and some stores still the PREVIOUS one between
/// promotions), and while it is undone the app holds the PREVIOUS one again before the stores do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InFlight {
    /// The open rotation's new certificate, once generated.
    pub pending: Option<Fingerprint>,
    /// What the app held when it began.
    pub previous: Option<Fingerprint>,
    /// Whether it is being undone.
    pub undoing: bool,
}

impl InFlight {
    /// What the journal's open rotation (if any) moves between.
    pub fn of(open: Option<&rotation::OpenRotation>) -> InFlight {
        open.map_or_else(InFlight::default, |o| InFlight {
            pending: o.new_fingerprint,
            previous: o.old_fingerprint,
            undoing: o.undoing.is_some(),
        })
    }

    /// Whether the app holding `app` while a store's CURRENT is `store` is this rotation at
    /// work rather than drift: one is its PENDING certificate and the other its PREVIOUS, and the
    /// app holds the PREVIOUS one only while the rotation is being undone (restore puts it back
    /// on the app before revert puts it back in the stores).
    pub fn explains(&self, app: Fingerprint, store: Fingerprint) -> bool {
        let (Some(pending), Some(previous)) = (self.pending, self.previous) else {
            return false;
        };
        (app == pending && store == previous)
            || (self.undoing && app == previous && store == pending)
    }
}

impl Observation {
    /// Whether a store holding `store` differs from the app because of the open rotation.
    pub fn rotating(&self, store: Fingerprint) -> bool {
        self.on_app()
            .is_some_and(|app| self.in_flight.explains(app.fingerprint, store))
    }

    /// The certificate on the app, when it could be read and holds one.
    pub fn on_app(&self) -> Option<&Held> {
        self.sources
            .iter()
            .find(|s| s.is_app)
            .and_then(|s| s.read.as_ref().ok())
            .and_then(Option::as_ref)
    }
}

/// Reads every source of `cred`; what cannot be read is recorded, not returned as an error.
pub async fn observe(config: &Config, cred: &CredentialConfig) -> Observation {
    let mut sources = Vec::new();
    let (app, staged) = match wiring::salesforce_target(config, cred) {
        Ok(target) => {
            let relying = rotation::target_of(cred, &target);
            let staged = match rotation::consumer_target(&relying) {
                Err(_) => None,
                // The secret Salesforce returns with the slot is dropped (and zeroed) here.
                Ok(t) => Some(
                    t.staged()
                        .await
                        .map(|s| s.map(|(slot, _secret)| slot))
                        .map_err(|e| e.to_string()),
                ),
            };
            (relying.held().await, staged)
        }
        Err(e) => {
            let staged = (cred.kind == CredentialKind::ConsumerSecret).then(|| Err(e.to_string()));
            (Err(e), staged)
        }
    };
    let mut previous_key = None;
    sources.push(Source {
        name: "app".into(),
        is_app: true,
        read: app.map_err(|e| e.to_string()).map(|held| {
            held.map(|(fingerprint, not_after)| Held {
                fingerprint,
                not_after,
                created_at: None,
                generation: None,
            })
        }),
    });
    let (mut last_success, mut open_rotation, mut journal_error) = (None, None, None);
    let mut chain_break = None;
    let mut exposure = Vec::new();
    let mut in_flight = InFlight::default();
    match wiring::stores(config, cred).await {
        Err(e) => {
            for name in &cred.stores {
                sources.push(Source {
                    name: format!("store:{name}"),
                    is_app: false,
                    read: Err(e.to_string()),
                });
            }
        }
        Ok(stores) => {
            for (i, (name, store)) in cred.stores.iter().zip(&stores).enumerate() {
                let read = store.stages(&cred.name).await.map(|stages| {
                    if i == 0 {
                        previous_key = stages
                            .previous
                            .as_ref()
                            .and_then(|p| p.public.consumer().map(|c| c.key.clone()));
                    }
                    stages.current.map(|v| Held {
                        fingerprint: v.public.fingerprint(),
                        not_after: v.public.not_after(),
                        created_at: Some(
                            v.public
                                .certificate()
                                .map_or(v.created_at, |c| v.created_at.min(c.not_before)),
                        ),
                        generation: Some(v.generation),
                    })
                });
                sources.push(Source {
                    name: format!("store:{name}"),
                    is_app: false,
                    read: read.map_err(|e| format!("{store}: {e}")),
                });
                for found in store.exposure(&cred.name).await {
                    exposure.push((format!("store:{name}"), found));
                }
            }
            // One read for both: the chain is judged on what was read, the rotations on the
            // whole journal (refused when an entry is damaged, as before).
            let read = stores[0].scan_journal(&cred.name).await.and_then(|read| {
                let verdict = rekey_api::verify_chain(&read);
                // A damaged entry is reported as an unreadable journal already.
                chain_break = verdict
                    .broken
                    .filter(|b| b.problem != rekey_api::ChainProblem::Damaged)
                    .map(|b| (format!("store:{}", cred.stores[0]), b));
                read.complete(&stores[0].to_string(), &cred.name)
            });
            match read {
                Ok(journal) => {
                    last_success = rotation::last_success(&journal);
                    let open = rotation::open_rotation(&journal);
                    in_flight = InFlight::of(open.as_ref());
                    open_rotation = open.map(|o| (o.rotation_id, o.started_at));
                }
                Err(e) => journal_error = Some(e.to_string()),
            }
        }
    }
    Observation {
        credential: cred.name.clone(),
        app: cred.app.clone(),
        org: cred.org.clone(),
        policy: cred.policy,
        open_rotation_limit: cred.resume_max_age,
        sources,
        last_success,
        open_rotation,
        in_flight,
        verify_timeout: cred.verify_timeout,
        journal_error,
        chain_break,
        exposure,
        consumer: staged.map(|staged| ConsumerSlot {
            staged,
            previous_key,
            revoke_previous_after: cred.revoke_previous_after,
        }),
    }
}

/// Observations to test with, shared by the tests of the findings, the due rules and the alerts.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// `days` days after a fixed instant (2027-01-15T08:00:00Z); negative: before it.
    pub(crate) fn at(days: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + days * 86_400, 0).unwrap()
    }

    /// The certificate with fingerprint `fp`; with `created`, as a store holds it (a generation
    /// too), without, as the app does.
    pub(crate) fn held(
        fp: &[u8],
        not_after: DateTime<Utc>,
        created: Option<DateTime<Utc>>,
    ) -> Option<Held> {
        Some(Held {
            fingerprint: Fingerprint::of(fp),
            not_after: Some(not_after),
            created_at: created,
            generation: created.map(|_| Generation(1)),
        })
    }

    /// A source named `name` (`app` is the app, anything else a store) that read `read`.
    pub(crate) fn source(name: &str, read: Result<Option<Held>, String>) -> Source {
        Source {
            name: name.into(),
            is_app: name == "app",
            read,
        }
    }

    /// `credential` of app Billing_Sync in org acme, under the default policy, with `sources`, no
    /// rotation ever finished or open, and a readable journal.
    pub(crate) fn observation(credential: &str, sources: Vec<Source>) -> Observation {
        Observation {
            credential: credential.into(),
            app: "Billing_Sync".into(),
            org: "acme".into(),
            policy: Policy::default(),
            open_rotation_limit: Duration::from_secs(24 * 3600),
            sources,
            last_success: None,
            open_rotation: None,
            in_flight: InFlight::default(),
            verify_timeout: Duration::from_secs(60),
            journal_error: None,
            chain_break: None,
            exposure: Vec::new(),
            consumer: None,
        }
    }

    /// `billing` with the app and `store:local` holding `app` and `store`, keys allowed 180 days,
    /// last rotated 10 days before `at(0)`.
    pub(crate) fn billing(app: Option<Held>, store: Option<Held>) -> Observation {
        let mut o = observation(
            "billing",
            vec![source("app", Ok(app)), source("store:local", Ok(store))],
        );
        o.policy.max_key_age_days = Some(180);
        o.last_success = Some(at(-10));
        o
    }
}
