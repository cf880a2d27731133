//! When a credential needs rotating: its key's age, its certificate's expiry, drift, an
//! interrupted rotation — read off what `check` observed, under the credential's schedule.

use super::observe::{Held, Observation, Source};
use crate::config::Schedule;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::fmt;

/// Why a credential is due. `days` are whole days, rounded down.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    /// A store's key is at least `rotate_every` old.
    KeyAge {
        /// The store holding the oldest key.
        source: String,
        /// That key's age.
        age_days: i64,
        /// `rotate_every_days`.
        every_days: i64,
    },
    /// A certificate expires within `renew_before` (or has expired).
    Expiry {
        /// The source holding the certificate that expires first.
        source: String,
        /// Days until it expires; negative once it has expired.
        days_left: i64,
        /// `renew_before_days`.
        renew_before_days: i64,
    },
    /// A store's CURRENT is not the certificate on the app.
    Drift {
        /// The first such store.
        source: String,
    },
    /// A rotation was left open; it must be finished before anything else.
    Interrupted {
        /// The open rotation.
        rotation_id: String,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::KeyAge {
                source,
                age_days,
                every_days,
            } => write!(
                f,
                "key in {source} is {} old (rotate_every_days = {every_days})",
                days(*age_days)
            ),
            Reason::Expiry {
                source,
                days_left,
                renew_before_days,
            } => {
                let place = if source == "app" { "on" } else { "in" };
                let when = if *days_left < 0 {
                    format!("expired {} ago", days(-days_left))
                } else {
                    format!("expires in {}", days(*days_left))
                };
                write!(
                    f,
                    "certificate {place} {source} {when} (renew_before_days = {renew_before_days})"
                )
            }
            Reason::Drift { source } => write!(
                f,
                "{source}'s CURRENT differs from the certificate on the app (heal_drift)"
            ),
            Reason::Interrupted { rotation_id } => {
                write!(f, "rotation {rotation_id} was interrupted; finishing it")
            }
        }
    }
}

/// What `source` holds, when it could be read and holds something.
fn held(source: &Source) -> Option<&Held> {
    source.read.as_ref().ok().and_then(Option::as_ref)
}

/// `n` days, in words.
fn days(n: i64) -> String {
    if n == 1 {
        "1 day".into()
    } else {
        format!("{n} days")
    }
}

/// Every reason `o` is due at `now` under `s`, most urgent first (interrupted, drift, expiry, key
/// age); empty: not due. A source that could not be read is never a reason.
pub fn due(o: &Observation, s: &Schedule, now: DateTime<Utc>) -> Vec<Reason> {
    let readable = || o.sources.iter().filter_map(|src| Some((src, held(src)?)));
    let stores = || readable().filter(|(src, _)| !src.is_app);
    let mut reasons = Vec::new();
    if let Some((id, _)) = &o.open_rotation {
        reasons.push(Reason::Interrupted {
            rotation_id: id.0.clone(),
        });
    }
    let on_app = readable().find(|(src, _)| src.is_app).map(|(_, h)| h);
    if let (true, Some(on_app)) = (s.heal_drift, on_app)
        && let Some((src, _)) = stores()
            .find(|(_, h)| h.fingerprint != on_app.fingerprint && !o.rotating(h.fingerprint))
    {
        reasons.push(Reason::Drift {
            source: src.name.clone(),
        });
    }
    if let Some((src, not_after)) = readable()
        .filter_map(|(src, h)| h.not_after.map(|t| (src, t)))
        .min_by_key(|(_, t)| *t)
    {
        let left = not_after - now;
        if left <= s.renew_before {
            reasons.push(Reason::Expiry {
                source: src.name.clone(),
                days_left: left.num_seconds().div_euclid(86_400),
                renew_before_days: s.renew_before.num_days(),
            });
        }
    }
    let oldest = stores()
        .filter_map(|(src, h)| Some((src, h.created_at?)))
        .min_by_key(|&(_, created)| created);
    if let (Some(every), Some((src, created))) = (s.rotate_every, oldest)
        && now - created >= every
    {
        reasons.push(Reason::KeyAge {
            source: src.name.clone(),
            age_days: (now - created).num_days(),
            every_days: every.num_days(),
        });
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::observe::fixtures::{at, held, source};
    use chrono::Duration;
    use rekey_api::RotationId;

    fn observation(sources: Vec<Source>) -> Observation {
        crate::monitor::observe::fixtures::observation("billing", sources)
    }

    fn schedule(rotate_every_days: Option<i64>, heal_drift: bool) -> Schedule {
        Schedule {
            rotate_every: rotate_every_days.map(Duration::days),
            renew_before: Duration::days(30),
            heal_drift,
            windows: Vec::new(),
        }
    }

    #[test]
    fn an_old_key_is_due_once_naming_the_oldest_store() {
        let o = observation(vec![
            source("app", Ok(held(b"a", at(400), None))),
            source("store:local", Ok(held(b"a", at(400), Some(at(10))))),
            source("store:vault", Ok(held(b"a", at(400), Some(at(0))))),
            source("store:aws", Ok(None)),
        ]);
        let s = schedule(Some(90), false);
        assert!(due(&o, &s, at(89)).is_empty());
        let reasons = due(&o, &s, at(91));
        assert_eq!(
            reasons,
            [Reason::KeyAge {
                source: "store:vault".into(),
                age_days: 91,
                every_days: 90
            }]
        );
        assert_eq!(
            reasons[0].to_string(),
            "key in store:vault is 91 days old (rotate_every_days = 90)"
        );
        assert!(due(&o, &schedule(None, false), at(300)).is_empty());
    }

    #[test]
    fn an_expiring_certificate_is_due_naming_the_source_that_expires_first() {
        let o = observation(vec![
            source("app", Ok(held(b"a", at(100), None))),
            source("store:local", Ok(held(b"b", at(80), Some(at(0))))),
        ]);
        let s = schedule(None, false);
        assert!(due(&o, &s, at(49)).is_empty(), "31 days left");
        let reasons = due(&o, &s, at(50));
        assert_eq!(
            reasons,
            [Reason::Expiry {
                source: "store:local".into(),
                days_left: 30,
                renew_before_days: 30
            }]
        );
        assert_eq!(
            reasons[0].to_string(),
            "certificate in store:local expires in 30 days (renew_before_days = 30)"
        );
        let expired = due(&o, &s, at(83));
        assert_eq!(
            expired[0].to_string(),
            "certificate in store:local expired 3 days ago (renew_before_days = 30)"
        );
        let app_first = observation(vec![
            source("app", Ok(held(b"a", at(12), None))),
            source("store:local", Ok(held(b"a", at(80), Some(at(0))))),
        ]);
        assert_eq!(
            due(&app_first, &s, at(0))[0].to_string(),
            "certificate on app expires in 12 days (renew_before_days = 30)"
        );
    }

    #[test]
    fn drift_is_due_only_when_healing_is_on() {
        let o = observation(vec![
            source("app", Ok(held(b"hand-deployed", at(400), None))),
            source("store:local", Ok(held(b"a", at(400), Some(at(0))))),
            source("store:vault", Ok(held(b"b", at(400), Some(at(0))))),
        ]);
        assert!(due(&o, &schedule(None, false), at(1)).is_empty());
        let reasons = due(&o, &schedule(None, true), at(1));
        assert_eq!(
            reasons,
            [Reason::Drift {
                source: "store:local".into()
            }]
        );
        assert_eq!(
            reasons[0].to_string(),
            "store:local's CURRENT differs from the certificate on the app (heal_drift)"
        );
        let agreeing = observation(vec![
            source("app", Ok(held(b"a", at(400), None))),
            source("store:local", Ok(held(b"a", at(400), Some(at(0))))),
        ]);
        assert!(due(&agreeing, &schedule(None, true), at(1)).is_empty());
    }

    #[test]
    fn reasons_come_most_urgent_first_and_an_interrupted_rotation_always_counts() {
        let mut o = observation(vec![
            source("app", Ok(held(b"x", at(100), None))),
            source("store:local", Ok(held(b"a", at(100), Some(at(0))))),
        ]);
        o.open_rotation = Some((RotationId("billing-r9".into()), at(1)));
        let reasons = due(&o, &schedule(Some(90), true), at(95));
        assert_eq!(
            reasons,
            [
                Reason::Interrupted {
                    rotation_id: "billing-r9".into()
                },
                Reason::Drift {
                    source: "store:local".into()
                },
                Reason::Expiry {
                    source: "app".into(),
                    days_left: 5,
                    renew_before_days: 30
                },
                Reason::KeyAge {
                    source: "store:local".into(),
                    age_days: 95,
                    every_days: 90
                },
            ]
        );
        assert_eq!(
            reasons[0].to_string(),
            "rotation billing-r9 was interrupted; finishing it"
        );
        assert_eq!(
            serde_json::to_value(&reasons[2]).unwrap(),
            serde_json::json!({"reason": "expiry", "source": "app", "days_left": 5, "renew_before_days": 30})
        );
        o.sources.truncate(1);
        o.sources[0].read = Ok(held(b"x", at(400), None));
        assert_eq!(due(&o, &schedule(Some(90), true), at(0)).len(), 1);
    }

    #[test]
    fn unreadable_sources_are_never_a_reason() {
        let down = |name: &str| source(name, Err("HTTP 503".into()));
        let s = schedule(Some(1), true);
        let all_down = observation(vec![down("app"), down("store:local")]);
        assert!(due(&all_down, &s, at(1000)).is_empty());
        // The app cannot be read: no drift, and only the store's certificate counts.
        let app_down = observation(vec![
            down("app"),
            source("store:local", Ok(held(b"a", at(400), Some(at(0))))),
        ]);
        assert_eq!(
            due(&app_down, &s, at(2)),
            [Reason::KeyAge {
                source: "store:local".into(),
                age_days: 2,
                every_days: 1
            }]
        );
        // A store that cannot be read neither drifts nor ages; the app's expiry still counts.
        let store_down = observation(vec![
            source("app", Ok(held(b"x", at(20), None))),
            down("store:local"),
        ]);
        assert_eq!(
            due(&store_down, &s, at(0)),
            [Reason::Expiry {
                source: "app".into(),
                days_left: 20,
                renew_before_days: 30
            }]
        );
    }
}
