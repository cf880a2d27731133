//! The alert decisions as data: what is sent, re-sent, resolved and recorded for each state.

use super::decide::*;
use super::state::*;
use super::*;
use crate::monitor::findings::Finding;
use crate::monitor::observe::Held;
use crate::monitor::observe::Observation;
use crate::monitor::observe::fixtures::{self, source};
use chrono::TimeDelta;
use rekey_api::{Fingerprint, RotationId};
use rekey_notify::Message;
use rekey_notify::Outcome;
use std::collections::BTreeMap;

const RENOTIFY: Duration = Duration::from_secs(24 * 3600);
/// A chatty channel and a critical-only one.
const CHANNELS: &[(&str, Severity)] = &[("ops", Severity::Info), ("pager", Severity::Critical)];

/// `hours` hours after the fixtures' `at(0)` (2027-01-15T08:00:00Z).
pub(super) fn at(hours: i64) -> DateTime<Utc> {
    fixtures::at(0) + TimeDelta::hours(hours)
}

/// The certificate with fingerprint `fp`, its key written long ago.
pub(super) fn held(fp: &[u8], not_after: DateTime<Utc>) -> Option<Held> {
    fixtures::held(fp, not_after, Some(at(-1000)))
}

/// `credential` with the app and `store:local` holding the same certificate, 10 days left.
pub(super) fn observation(credential: &str) -> Observation {
    fixtures::observation(
        credential,
        vec![
            source("app", Ok(held(b"a", at(240)))),
            source("store:local", Ok(held(b"a", at(240)))),
        ],
    )
}

fn finding(id: &str, severity: Severity) -> Finding {
    Finding {
        id: id.into(),
        severity,
        message: format!("{id} is {severity:?}"),
    }
}

/// `o` with its `findings`, as the only credential observed.
pub(super) fn observed<'a>(o: &'a Observation, findings: &'a [Finding]) -> [Observed<'a>; 1] {
    [Observed {
        observation: o,
        findings,
    }]
}

/// One run: plans, delivers to every channel except `failing`, records what was delivered;
/// returns `channel: what` for every planned message.
fn run_with(
    state: &mut State,
    o: &Observation,
    findings: &[Finding],
    now: DateTime<Utc>,
    failing: &[&str],
) -> Vec<String> {
    let planned = plan_findings(state, &observed(o, findings), CHANNELS, now, RENOTIFY);
    deliver(state, planned, CHANNELS, failing)
}

fn run(
    state: &mut State,
    o: &Observation,
    findings: &[Finding],
    now: DateTime<Utc>,
) -> Vec<String> {
    run_with(state, o, findings, now, &[])
}

fn deliver(
    state: &mut State,
    planned: Vec<Planned>,
    channels: &[(&str, Severity)],
    failing: &[&str],
) -> Vec<String> {
    let mut sent = Vec::new();
    for p in planned {
        let name = channels[p.channel].0;
        sent.push(format!("{name}: {}", p.what));
        if !failing.contains(&name) {
            apply(state, p.on_success);
        }
    }
    sent
}

fn record<'s>(
    state: &'s State,
    channel: &str,
    credential: &str,
    id: &str,
) -> Option<&'s AlertRecord> {
    state.channels.get(channel)?.alerts.get(credential)?.get(id)
}

#[test]
fn a_finding_is_sent_once_then_again_only_after_renotify() {
    let mut state = empty();
    let o = observation("billing");
    let findings = [finding("expiry/app", Severity::Warning)];
    let planned = plan_findings(
        &mut state,
        &observed(&o, &findings),
        CHANNELS,
        at(0),
        RENOTIFY,
    );
    assert_eq!(planned.len(), 1, "{planned:?}");
    let Message::Alert {
        dedup_key,
        severity,
        credential,
        app,
        org,
        summary,
        details,
    } = &planned[0].message
    else {
        panic!("expected an alert: {:?}", planned[0].message)
    };
    assert_eq!(dedup_key, "rekey/acme/billing/expiry/app");
    assert_eq!(*severity, Severity::Warning);
    assert_eq!(
        (credential.as_str(), app.as_str(), org.as_str()),
        ("billing", "Billing_Sync", "acme")
    );
    assert_eq!(summary, "expiry/app is Warning");
    let expected: BTreeMap<String, String> = [
        ("finding", "expiry/app".to_string()),
        ("severity", "warning".to_string()),
        ("source", "app".to_string()),
        ("fingerprint", Fingerprint::of(b"a").to_string()),
        ("not_after", "2027-01-25T08:00:00Z".to_string()),
        ("days_left", "10".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(details, &expected);
    assert_eq!(at(240).to_rfc3339(), "2027-01-25T08:00:00+00:00");
    assert_eq!(
        deliver(&mut state, planned, CHANNELS, &[]),
        ["ops: alert expiry/app (warning)"]
    );

    assert!(run(&mut state, &o, &findings, at(1)).is_empty());
    assert!(run(&mut state, &o, &findings, at(23)).is_empty());
    assert_eq!(
        run(&mut state, &o, &findings, at(24)),
        ["ops: re-alert expiry/app (warning)"]
    );
    assert_eq!(
        record(&state, "ops", "billing", "expiry/app")
            .unwrap()
            .sent_at,
        at(24)
    );
    assert!(run(&mut state, &o, &findings, at(47)).is_empty());
    // A missed day never skips one: two days late is one re-alert, at once.
    assert_eq!(
        run(&mut state, &o, &findings, at(100)),
        ["ops: re-alert expiry/app (warning)"]
    );
}

#[test]
fn a_rise_is_sent_at_once_and_a_fall_then_a_rise_again() {
    let mut state = empty();
    let o = observation("billing");
    let warning = [finding("expiry/app", Severity::Warning)];
    let critical = [finding("expiry/app", Severity::Critical)];
    assert_eq!(
        run(&mut state, &o, &warning, at(0)),
        ["ops: alert expiry/app (warning)"]
    );
    assert_eq!(
        run(&mut state, &o, &critical, at(1)),
        [
            "ops: re-alert expiry/app (critical)",
            "pager: alert expiry/app (critical)"
        ]
    );
    assert!(run(&mut state, &o, &critical, at(2)).is_empty());
    // Less bad: nothing sent, nothing resolved, but the lower severity is remembered.
    assert!(run(&mut state, &o, &warning, at(3)).is_empty());
    for channel in ["ops", "pager"] {
        let r = record(&state, channel, "billing", "expiry/app").unwrap();
        assert_eq!((r.severity, r.sent_at), (Severity::Warning, at(1)));
    }
    assert_eq!(
        run(&mut state, &o, &critical, at(4)),
        [
            "ops: re-alert expiry/app (critical)",
            "pager: re-alert expiry/app (critical)"
        ]
    );
    // Unknown < warning: an unreadable source that turns into a warning is a rise.
    let unknown = [finding("unreadable/app", Severity::Unknown)];
    let mut state = empty();
    assert_eq!(
        run(&mut state, &o, &unknown, at(0)),
        ["ops: alert unreadable/app (unknown)"]
    );
    assert_eq!(
        run(
            &mut state,
            &o,
            &[finding("unreadable/app", Severity::Warning)],
            at(1)
        ),
        ["ops: re-alert unreadable/app (warning)"]
    );
}

#[test]
fn a_cleared_finding_is_resolved_once_under_its_dedup_key() {
    let mut state = empty();
    let o = observation("billing");
    let findings = [
        finding("expiry/app", Severity::Critical),
        finding("key-age/store:local", Severity::Warning),
    ];
    assert_eq!(
        run(&mut state, &o, &findings, at(0)),
        [
            "ops: alert expiry/app (critical)",
            "ops: alert key-age/store:local (warning)",
            "pager: alert expiry/app (critical)"
        ]
    );
    let planned = plan_findings(
        &mut state,
        &observed(&o, &findings[1..]),
        CHANNELS,
        at(1),
        RENOTIFY,
    );
    let messages: Vec<&Message> = planned.iter().map(|p| &p.message).collect();
    assert_eq!(messages.len(), 2);
    for m in messages {
        assert!(
            matches!(m, Message::Resolve { dedup_key, summary, .. }
                    if dedup_key == "rekey/acme/billing/expiry/app" && summary == "expiry/app no longer applies"),
            "{m:?}"
        );
    }
    assert_eq!(
        deliver(&mut state, planned, CHANNELS, &[]),
        ["ops: resolve expiry/app", "pager: resolve expiry/app"]
    );
    assert!(record(&state, "ops", "billing", "expiry/app").is_none());
    assert!(!state.channels.contains_key("pager"), "{state:?}");
    assert!(run(&mut state, &o, &findings[1..], at(2)).is_empty());
    assert_eq!(
        run(&mut state, &o, &[], at(3)),
        ["ops: resolve key-age/store:local"]
    );
    assert_eq!(state, empty());
}

#[test]
fn nothing_is_resolved_while_what_it_depends_on_cannot_be_read() {
    let mut state = empty();
    let mut o = observation("billing");
    let open = [
        finding("expiry/store:local", Severity::Warning),
        finding("drift/store:local", Severity::Critical),
        finding("open-rotation", Severity::Warning),
    ];
    assert_eq!(run(&mut state, &o, &open, at(0)).len(), 4);

    // The store is down: its expiry and drift are unknown, the new finding says so.
    o.sources[1].read = Err("vault: HTTP 503".into());
    let unreadable = [
        finding("unreadable/store:local", Severity::Unknown),
        finding("open-rotation", Severity::Warning),
    ];
    assert_eq!(
        run(&mut state, &o, &unreadable, at(1)),
        ["ops: alert unreadable/store:local (unknown)"]
    );
    assert!(record(&state, "ops", "billing", "expiry/store:local").is_some());

    // The app is down: drift depends on it too.
    o.sources[1].read = Ok(held(b"a", at(240)));
    o.sources[0].read = Err("org acme: HTTP 503".into());
    let app_down = [
        finding("unreadable/app", Severity::Unknown),
        finding("expiry/store:local", Severity::Warning),
        finding("open-rotation", Severity::Warning),
    ];
    assert_eq!(
        run(&mut state, &o, &app_down, at(2)),
        [
            "ops: alert unreadable/app (unknown)",
            "ops: resolve unreadable/store:local"
        ]
    );
    assert!(record(&state, "pager", "billing", "drift/store:local").is_some());

    // The journal cannot be read: the open rotation is unknown, not closed.
    o.sources[0].read = Ok(held(b"a", at(240)));
    o.journal_error = Some("vault: HTTP 503".into());
    let journal_down = [
        finding("expiry/store:local", Severity::Warning),
        finding("unreadable/journal", Severity::Unknown),
    ];
    assert_eq!(
        run(&mut state, &o, &journal_down, at(3)),
        [
            "ops: alert unreadable/journal (unknown)",
            "ops: resolve drift/store:local",
            "ops: resolve unreadable/app",
            "pager: resolve drift/store:local"
        ]
    );
    assert!(record(&state, "ops", "billing", "open-rotation").is_some());

    // Everything readable and fine: everything left resolves.
    o.journal_error = None;
    assert_eq!(
        run(&mut state, &o, &[], at(4)),
        [
            "ops: resolve expiry/store:local",
            "ops: resolve open-rotation",
            "ops: resolve unreadable/journal"
        ]
    );
    assert_eq!(state, empty());
}

#[test]
fn a_primary_store_that_cannot_be_opened_hides_the_journal_too() {
    let mut state = empty();
    let mut o = observation("billing");
    let open = [finding("open-rotation", Severity::Warning)];
    run(&mut state, &o, &open, at(0));
    // `check` reports no journal error when the stores cannot even be opened.
    o.sources[1].read = Err("VAULT_ADDR is not set".into());
    assert_eq!(
        run(
            &mut state,
            &o,
            &[finding("unreadable/store:local", Severity::Unknown)],
            at(1)
        ),
        ["ops: alert unreadable/store:local (unknown)"]
    );
    assert!(record(&state, "ops", "billing", "open-rotation").is_some());
}

#[test]
fn credentials_not_observed_are_left_alone_and_removed_channels_dropped() {
    let mut state = empty();
    let payroll = observation("payroll");
    let findings = [finding("expiry/app", Severity::Critical)];
    run(&mut state, &payroll, &findings, at(0));
    let billing = observation("billing");
    assert!(run(&mut state, &billing, &[], at(1)).is_empty());
    assert!(record(&state, "ops", "payroll", "expiry/app").is_some());
    assert!(record(&state, "pager", "payroll", "expiry/app").is_some());

    // `pager` was removed from the config: its records go, `ops` keeps its own.
    let planned = plan_findings(&mut state, &[], &[("ops", Severity::Info)], at(2), RENOTIFY);
    assert!(planned.is_empty());
    assert_eq!(state.channels.keys().collect::<Vec<_>>(), ["ops"]);
}

#[test]
fn a_channel_hears_only_findings_at_or_above_its_min_severity() {
    let mut state = empty();
    let o = observation("billing");
    assert_eq!(
        run(
            &mut state,
            &o,
            &[
                finding("unreadable/journal", Severity::Unknown),
                finding("key-age/app", Severity::Warning),
                finding("ok/app", Severity::Ok),
            ],
            at(0)
        ),
        [
            "ops: alert unreadable/journal (unknown)",
            "ops: alert key-age/app (warning)"
        ]
    );
    assert!(!state.channels.contains_key("pager"));
    let channels = [("team", Severity::Warning), ("pager", Severity::Critical)];
    let findings = [
        finding("key-age/app", Severity::Warning),
        finding("no-certificate/app", Severity::Critical),
    ];
    let planned = plan_findings(
        &mut empty(),
        &observed(&o, &findings),
        &channels,
        at(0),
        RENOTIFY,
    );
    assert_eq!(
        deliver(&mut state, planned, &channels, &[]),
        [
            "team: alert key-age/app (warning)",
            "team: alert no-certificate/app (critical)",
            "pager: alert no-certificate/app (critical)"
        ]
    );
}

#[test]
fn an_undelivered_alert_is_retried_and_an_undelivered_resolve_kept() {
    let mut state = empty();
    let o = observation("billing");
    let findings = [finding("expiry/app", Severity::Critical)];
    assert_eq!(
        run_with(&mut state, &o, &findings, at(0), &["pager"]),
        [
            "ops: alert expiry/app (critical)",
            "pager: alert expiry/app (critical)"
        ]
    );
    assert!(record(&state, "pager", "billing", "expiry/app").is_none());
    assert_eq!(
        run(&mut state, &o, &findings, at(1)),
        ["pager: alert expiry/app (critical)"]
    );
    // A failed re-send keeps the old record, so it is due again next run.
    assert_eq!(
        run_with(&mut state, &o, &findings, at(24), &["ops"]),
        ["ops: re-alert expiry/app (critical)"]
    );
    assert_eq!(
        run(&mut state, &o, &findings, at(24)),
        ["ops: re-alert expiry/app (critical)"]
    );
    assert_eq!(
        run_with(&mut state, &o, &[], at(32), &["ops"]),
        ["ops: resolve expiry/app", "pager: resolve expiry/app"]
    );
    assert!(record(&state, "ops", "billing", "expiry/app").is_some());
    assert_eq!(
        run(&mut state, &o, &[], at(33)),
        ["ops: resolve expiry/app"]
    );
    assert_eq!(state, empty());
}

pub(super) fn news(outcome: Outcome) -> RotationNews {
    RotationNews {
        credential: "billing".into(),
        app: "Billing_Sync".into(),
        org: "acme".into(),
        outcome,
        summary: "generation 4 is live".into(),
        rotation_id: Some("billing-r4".into()),
    }
}

#[test]
fn rotation_outcomes_go_by_level_and_a_success_closes_every_failure_sent() {
    let channels = [
        ("ops", Severity::Info),
        ("team", Severity::Warning),
        ("pager", Severity::Critical),
    ];
    let mut state = empty();
    let rotate = |state: &mut State, outcome, failing: &[&str]| {
        let planned = plan_rotation(state, &news(outcome), &channels, at(0));
        for p in &planned {
            assert_eq!(
                p.message,
                Message::Rotation {
                    credential: "billing".into(),
                    app: "Billing_Sync".into(),
                    org: "acme".into(),
                    outcome,
                    summary: "generation 4 is live".into(),
                    rotation_id: Some("billing-r4".into()),
                }
            );
        }
        deliver(state, planned, &channels, failing)
    };
    assert_eq!(
        rotate(&mut state, Outcome::Succeeded, &[]),
        ["ops: rotation succeeded"]
    );
    assert_eq!(
        rotate(&mut state, Outcome::RolledBack, &[]),
        ["ops: rotation rolled back", "team: rotation rolled back"]
    );
    assert_eq!(
        rotate(&mut state, Outcome::Succeeded, &[]),
        ["ops: rotation succeeded", "team: rotation succeeded"]
    );
    assert_eq!(state, empty());
    assert_eq!(
        rotate(&mut state, Outcome::Failed, &[]),
        [
            "ops: rotation failed",
            "team: rotation failed",
            "pager: rotation failed"
        ]
    );
    let open = &state.channels["pager"].rotations["billing"];
    assert_eq!(
        (open.outcome, open.rotation_id.as_deref()),
        (Unfinished::Failed, Some("billing-r4"))
    );
    // The success reaches the critical-only channel because it was told of the failure,
    // and stays owed to it while it cannot be delivered.
    assert_eq!(
        rotate(&mut state, Outcome::Succeeded, &["pager"]),
        [
            "ops: rotation succeeded",
            "team: rotation succeeded",
            "pager: rotation succeeded"
        ]
    );
    assert_eq!(state.channels.keys().collect::<Vec<_>>(), ["pager"]);
    assert_eq!(
        rotate(&mut state, Outcome::Succeeded, &[]),
        ["ops: rotation succeeded", "pager: rotation succeeded"]
    );
    assert_eq!(state, empty());
    // A failure the pager never received leaves nothing to close there.
    rotate(&mut state, Outcome::Failed, &["pager"]);
    assert_eq!(
        rotate(&mut state, Outcome::Succeeded, &[]),
        ["ops: rotation succeeded", "team: rotation succeeded"]
    );
}

#[test]
fn dedup_keys_are_stable_and_fit_pagerduty() {
    assert_eq!(
        dedup_key("acme", "billing", "drift/store:local"),
        "rekey/acme/billing/drift/store:local"
    );
    let long = "x".repeat(300);
    let a = dedup_key("acme", &long, "expiry/app");
    let b = dedup_key("acme", &long, "expiry/store:local");
    assert_eq!(a.chars().count(), DEDUP_KEY_MAX);
    assert!(a.starts_with("rekey/acme/xxx"), "{a}");
    assert_ne!(a, b);
    assert_eq!(a, dedup_key("acme", &long, "expiry/app"));
}

#[test]
fn drift_and_open_rotation_alerts_carry_their_facts() {
    let details_of =
        |o: &Observation, id: &str, severity| details(o, &finding(id, severity), at(0));
    let mut o = observation("billing");
    o.sources[0].read = Ok(held(b"hand-deployed", at(500)));
    o.open_rotation = Some((RotationId("billing-r9".into()), at(-30)));
    let drift = details_of(&o, "drift/store:local", Severity::Critical);
    assert_eq!(drift["source"], "store:local");
    assert_eq!(drift["fingerprint"], Fingerprint::of(b"a").to_string());
    assert_eq!(
        drift["app_fingerprint"],
        Fingerprint::of(b"hand-deployed").to_string()
    );
    let open = details_of(&o, "open-rotation", Severity::Warning);
    assert_eq!(open["rotation_id"], "billing-r9");
    assert!(!open.contains_key("fingerprint"));
    o.sources[1].read = Err("down".into());
    let unreadable = details_of(&o, "unreadable/store:local", Severity::Unknown);
    assert_eq!(
        unreadable.keys().collect::<Vec<_>>(),
        ["finding", "severity", "source"]
    );
}

#[test]
fn the_state_file_format_is_versioned_json() {
    let mut state = empty();
    run(
        &mut state,
        &observation("billing"),
        &[finding("expiry/app", Severity::Critical)],
        at(0),
    );
    apply(
        &mut state,
        Change::OpenRotation {
            channel: "pager".into(),
            credential: "billing".into(),
            record: RotationRecord {
                outcome: Unfinished::RolledBack,
                rotation_id: None,
                sent_at: at(0),
            },
        },
    );
    let json: serde_json::Value = serde_json::to_value(&state).unwrap();
    let record = serde_json::json!({
        "dedup_key": "rekey/acme/billing/expiry/app",
        "severity": "critical",
        "sent_at": "2027-01-15T08:00:00Z"
    });
    assert_eq!(
        json,
        serde_json::json!({
            "version": 1,
            "channels": {
                "ops": { "alerts": { "billing": { "expiry/app": record } } },
                "pager": {
                    "alerts": { "billing": { "expiry/app": record } },
                    "rotations": { "billing": { "outcome": "rolled_back", "sent_at": "2027-01-15T08:00:00Z" } }
                }
            }
        })
    );
    assert_eq!(serde_json::from_value::<State>(json).unwrap(), state);
}
