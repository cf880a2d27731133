//! Deciding what to send: a pure function of the state, the findings or the rotation outcome, the
//! channels and the time.

use super::news::{Observed, RotationNews};
use super::state::{AlertRecord, RotationRecord, State, Unfinished};
use crate::monitor::findings::Finding;
use crate::monitor::observe::Observation;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use rekey_api::Severity;
use rekey_notify::{Message, Outcome};
use std::collections::BTreeMap;
use std::time::Duration;

/// PagerDuty's limit for a dedup key.
pub(super) const DEDUP_KEY_MAX: usize = 255;

/// A message to send to one channel, and what to record if it is delivered.
#[derive(Debug)]
pub(super) struct Planned {
    /// Index into the channels the plan was made for.
    pub(super) channel: usize,
    pub(super) credential: String,
    pub(super) what: String,
    pub(super) message: Message,
    pub(super) on_success: Change,
}

/// One change to the state.
#[derive(Debug, PartialEq)]
pub(super) enum Change {
    SetAlert {
        channel: String,
        credential: String,
        finding: String,
        record: AlertRecord,
    },
    RemoveAlert {
        channel: String,
        credential: String,
        finding: String,
    },
    OpenRotation {
        channel: String,
        credential: String,
        record: RotationRecord,
    },
    CloseRotation {
        channel: String,
        credential: String,
    },
}

pub(super) fn apply(state: &mut State, change: Change) {
    match change {
        Change::SetAlert {
            channel,
            credential,
            finding,
            record,
        } => {
            state
                .channels
                .entry(channel)
                .or_default()
                .alerts
                .entry(credential)
                .or_default()
                .insert(finding, record);
        }
        Change::RemoveAlert {
            channel,
            credential,
            finding,
        } => {
            if let Some(c) = state.channels.get_mut(&channel) {
                if let Some(records) = c.alerts.get_mut(&credential) {
                    records.remove(&finding);
                    if records.is_empty() {
                        c.alerts.remove(&credential);
                    }
                }
                if c.alerts.is_empty() && c.rotations.is_empty() {
                    state.channels.remove(&channel);
                }
            }
        }
        Change::OpenRotation {
            channel,
            credential,
            record,
        } => {
            state
                .channels
                .entry(channel)
                .or_default()
                .rotations
                .insert(credential, record);
        }
        Change::CloseRotation {
            channel,
            credential,
        } => {
            if let Some(c) = state.channels.get_mut(&channel) {
                c.rotations.remove(&credential);
                if c.alerts.is_empty() && c.rotations.is_empty() {
                    state.channels.remove(&channel);
                }
            }
        }
    }
}

/// Drops the records of channels that are no longer configured.
pub(super) fn prune(state: &mut State, channels: &[(&str, Severity)]) {
    state
        .channels
        .retain(|name, _| channels.iter().any(|(c, _)| c == name));
}

/// `rekey/<org>/<credential>/<finding id>`; stable from run to run. A key longer than PagerDuty
/// allows keeps its start and ends with a digest of the whole, so it stays stable and distinct.
pub(super) fn dedup_key(org: &str, credential: &str, finding: &str) -> String {
    let key = format!("rekey/{org}/{credential}/{finding}");
    if key.chars().count() <= DEDUP_KEY_MAX {
        return key;
    }
    use sha2::Digest as _;
    let digest = hex::encode(sha2::Sha256::digest(key.as_bytes()));
    let keep: String = key.chars().take(DEDUP_KEY_MAX - digest.len() - 1).collect();
    format!("{keep}~{digest}")
}

/// Whether everything `finding` is computed from could be read in `o`. A finding that is gone
/// while one of its sources is unreadable may only be hidden, so it must not be resolved.
pub(super) fn inputs_readable(o: &Observation, finding: &str) -> bool {
    let source_ok = |name: &str| {
        // A source no longer configured can never bring the finding back: it is cleared.
        o.sources
            .iter()
            .find(|s| s.name == name)
            .is_none_or(|s| s.read.is_ok())
    };
    // The journal lives in the primary store: when that could not even be opened, `check`
    // reports no journal error, but no journal was read either.
    let journal_ok = || {
        o.journal_error.is_none()
            && o.sources
                .iter()
                .find(|s| !s.is_app)
                .is_none_or(|s| s.read.is_ok())
    };
    match finding.split_once('/') {
        Some((_, "journal")) => journal_ok(),
        Some(("drift", store)) => source_ok(store) && source_ok("app"),
        Some((_, source)) => source_ok(source),
        None if finding == "open-rotation" => journal_ok(),
        None if finding == "rotation-in-progress" => journal_ok() && source_ok("app"),
        None => true,
    }
}

/// The facts an alert carries besides its summary: never key material.
pub(super) fn details(
    o: &Observation,
    f: &Finding,
    now: DateTime<Utc>,
) -> BTreeMap<String, String> {
    let mut details = BTreeMap::new();
    details.insert("finding".to_string(), f.id.clone());
    details.insert("severity".to_string(), f.severity.as_str().to_string());
    let held = |name: &str| {
        o.sources
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.read.as_ref().ok())
            .and_then(Option::as_ref)
    };
    if let Some((_, source)) = f.id.split_once('/')
        && o.sources.iter().any(|s| s.name == source)
    {
        details.insert("source".to_string(), source.to_string());
        if let Some(h) = held(source) {
            details.insert("fingerprint".to_string(), h.fingerprint.to_string());
            if let Some(not_after) = h.not_after {
                details.insert(
                    "not_after".to_string(),
                    not_after.to_rfc3339_opts(SecondsFormat::Secs, true),
                );
                details.insert(
                    "days_left".to_string(),
                    (not_after - now).num_days().to_string(),
                );
            }
        }
        if f.id.starts_with("drift/")
            && let Some(app) = held("app")
        {
            details.insert("app_fingerprint".to_string(), app.fingerprint.to_string());
        }
    }
    if (f.id == "open-rotation" || f.id == "rotation-in-progress")
        && let Some((id, started)) = &o.open_rotation
    {
        details.insert("rotation_id".to_string(), id.to_string());
        details.insert(
            "rotation_started_at".to_string(),
            started.to_rfc3339_opts(SecondsFormat::Secs, true),
        );
    }
    details
}

/// What to send for `observed` to `channels` (names and `min_severity`), given what `state`
/// records; `state` is updated at once for what needs no delivery (a lowered severity, removed
/// channels), and each [`Planned::on_success`] is for the caller to apply once delivered.
pub(super) fn plan_findings(
    state: &mut State,
    observed: &[Observed<'_>],
    channels: &[(&str, Severity)],
    now: DateTime<Utc>,
    renotify: Duration,
) -> Vec<Planned> {
    prune(state, channels);
    let renotify = TimeDelta::from_std(renotify).unwrap_or(TimeDelta::MAX);
    let mut planned = Vec::new();
    let mut lowered = Vec::new();
    for Observed {
        observation: o,
        findings,
    } in observed
    {
        let mut active: Vec<(&Finding, Severity)> = Vec::new();
        for f in findings.iter() {
            if let Some(severity) = Some(f.severity).filter(|s| *s > Severity::Ok)
                && !active.iter().any(|(a, _)| a.id == f.id)
            {
                active.push((f, severity));
            }
        }
        let none = BTreeMap::new();
        for (index, &(channel, min_level)) in channels.iter().enumerate() {
            let records = state
                .channels
                .get(channel)
                .and_then(|c| c.alerts.get(&o.credential))
                .unwrap_or(&none);
            for &(f, severity) in &active {
                let record = records.get(&f.id);
                if let Some(r) = record
                    && severity < r.severity
                {
                    // Still open, only less bad: not worth a message, but remembered so that
                    // getting worse again is.
                    lowered.push(Change::SetAlert {
                        channel: channel.to_string(),
                        credential: o.credential.clone(),
                        finding: f.id.clone(),
                        record: AlertRecord {
                            severity,
                            ..r.clone()
                        },
                    });
                    continue;
                }
                if !severity.reaches(min_level) {
                    continue;
                }
                let (verb, key) = match record {
                    None => ("alert", dedup_key(&o.org, &o.credential, &f.id)),
                    // A clock that went backwards (sent "in the future") re-sends: the safe side.
                    Some(r)
                        if severity > r.severity
                            || r.sent_at > now
                            || now - r.sent_at >= renotify =>
                    {
                        ("re-alert", r.dedup_key.clone())
                    }
                    Some(_) => continue,
                };
                planned.push(Planned {
                    channel: index,
                    credential: o.credential.clone(),
                    what: format!("{verb} {} ({})", f.id, severity.as_str()),
                    message: Message::Alert {
                        dedup_key: key.clone(),
                        severity,
                        credential: o.credential.clone(),
                        app: o.app.clone(),
                        org: o.org.clone(),
                        summary: f.message.clone(),
                        details: details(o, f, now),
                    },
                    on_success: Change::SetAlert {
                        channel: channel.to_string(),
                        credential: o.credential.clone(),
                        finding: f.id.clone(),
                        record: AlertRecord {
                            dedup_key: key,
                            severity,
                            sent_at: now,
                        },
                    },
                });
            }
            for (id, record) in records {
                if active.iter().any(|(f, _)| &f.id == id) || !inputs_readable(o, id) {
                    continue;
                }
                planned.push(Planned {
                    channel: index,
                    credential: o.credential.clone(),
                    what: format!("resolve {id}"),
                    message: Message::Resolve {
                        dedup_key: record.dedup_key.clone(),
                        credential: o.credential.clone(),
                        app: o.app.clone(),
                        org: o.org.clone(),
                        summary: format!("{id} no longer applies"),
                    },
                    on_success: Change::RemoveAlert {
                        channel: channel.to_string(),
                        credential: o.credential.clone(),
                        finding: id.clone(),
                    },
                });
            }
        }
    }
    for change in lowered {
        apply(state, change);
    }
    planned
}

/// What to send for a rotation's outcome: to each channel that wants its level, and a success
/// also to each channel still holding a failure of the credential (so that incident closes).
pub(super) fn plan_rotation(
    state: &mut State,
    news: &RotationNews,
    channels: &[(&str, Severity)],
    now: DateTime<Utc>,
) -> Vec<Planned> {
    prune(state, channels);
    let (level, unfinished) = match news.outcome {
        Outcome::Succeeded => (Severity::Info, None),
        Outcome::RolledBack => (Severity::Warning, Some(Unfinished::RolledBack)),
        Outcome::Unadopted => (Severity::Warning, Some(Unfinished::Unadopted)),
        Outcome::Failed => (Severity::Critical, Some(Unfinished::Failed)),
    };
    let message = Message::Rotation {
        credential: news.credential.clone(),
        app: news.app.clone(),
        org: news.org.clone(),
        outcome: news.outcome,
        summary: news.summary.clone(),
        rotation_id: news.rotation_id.clone(),
    };
    let mut planned = Vec::new();
    for (index, &(channel, min_level)) in channels.iter().enumerate() {
        let open = state
            .channels
            .get(channel)
            .is_some_and(|c| c.rotations.contains_key(&news.credential));
        if !(level.reaches(min_level) || (open && unfinished.is_none())) {
            continue;
        }
        let on_success = match unfinished {
            Some(outcome) => Change::OpenRotation {
                channel: channel.to_string(),
                credential: news.credential.clone(),
                record: RotationRecord {
                    outcome,
                    rotation_id: news.rotation_id.clone(),
                    sent_at: now,
                },
            },
            None => Change::CloseRotation {
                channel: channel.to_string(),
                credential: news.credential.clone(),
            },
        };
        planned.push(Planned {
            channel: index,
            credential: news.credential.clone(),
            what: format!("rotation {}", news.outcome.as_str().replace('_', " ")),
            message: message.clone(),
            on_success,
        });
    }
    planned
}
