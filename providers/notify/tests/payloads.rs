//! The exact requests each channel sends, checked on a real HTTP receiver on 127.0.0.1.

mod common;

use common::{FAST, Receiver, Reply, take_recent_time};
use rekey_api::{SecretString, Severity};
use rekey_http::{signature, verify_signature};
use rekey_notify::{Channel, ChannelConfig, Message, Outcome};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

const SLACK_PATH: &str = "/services/T0001/B0002/SlackHookToken123";
const ROUTING_KEY: &str = "R0UT1NGKEY0123456789abcdef012345";
const WEBHOOK_SECRET: &str = "whsec-shared-signing-secret";

fn alert(severity: Severity) -> Message {
    Message::Alert {
        dedup_key: "rekey/expiry/prod/billing".into(),
        severity,
        credential: "billing".into(),
        app: "Billing_Sync".into(),
        org: "prod".into(),
        summary: "certificate expires in 9 days".into(),
        details: BTreeMap::from([
            ("not_after".to_string(), "2026-06-01T00:00:00Z".to_string()),
            ("days_left".to_string(), "9".to_string()),
        ]),
    }
}

fn resolve() -> Message {
    Message::Resolve {
        dedup_key: "rekey/expiry/prod/billing".into(),
        credential: "billing".into(),
        app: "Billing_Sync".into(),
        org: "prod".into(),
        summary: "certificate renewed, expires 2027-06-01".into(),
    }
}

fn rotation(outcome: Outcome) -> Message {
    Message::Rotation {
        credential: "billing".into(),
        app: "Billing_Sync".into(),
        org: "prod".into(),
        outcome,
        summary: "generation 4".into(),
        rotation_id: Some("r-20260520-01".into()),
    }
}

fn slack(rx: &Receiver) -> Channel {
    Channel::new(ChannelConfig::Slack {
        name: "ops".into(),
        webhook_url: SecretString::new(rx.url(SLACK_PATH)),
    })
    .unwrap()
    .with_backoff(FAST)
}

fn pagerduty(rx: &Receiver) -> Channel {
    Channel::new(ChannelConfig::PagerDuty {
        name: "oncall".into(),
        routing_key: SecretString::new(ROUTING_KEY),
        events_url: Some(rx.url("/v2/enqueue")),
    })
    .unwrap()
    .with_backoff(FAST)
}

fn webhook(rx: &Receiver) -> Channel {
    Channel::new(ChannelConfig::Webhook {
        name: "audit".into(),
        url: rx.url("/hooks/rekey"),
        secret: SecretString::new(WEBHOOK_SECRET),
    })
    .unwrap()
    .with_backoff(FAST)
}

async fn pagerduty_receiver() -> Receiver {
    Receiver::answering(
        202,
        r#"{"status":"success","message":"Event processed","dedup_key":"x"}"#,
    )
    .await
}

fn fields(credential: &str, app: &str, org: &str) -> serde_json::Value {
    json!([
        { "type": "mrkdwn", "text": format!("*Credential*\n{credential}") },
        { "type": "mrkdwn", "text": format!("*App*\n{app}") },
        { "type": "mrkdwn", "text": format!("*Org*\n{org}") },
    ])
}

#[tokio::test]
async fn slack_alert_posts_text_header_fields_and_details() {
    let rx = Receiver::answering(200, "ok").await;
    slack(&rx).send(&alert(Severity::Critical)).await.unwrap();
    let req = rx.single();
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, SLACK_PATH);
    assert_eq!(req.header("content-type").unwrap(), "application/json");
    assert_eq!(
        req.json(),
        json!({
            "text": "[CRITICAL] billing: certificate expires in 9 days",
            "blocks": [
                { "type": "header", "text": { "type": "plain_text", "text": "[CRITICAL] billing: certificate expires in 9 days" } },
                { "type": "section", "fields": fields("billing", "Billing_Sync", "prod") },
                { "type": "section", "text": { "type": "mrkdwn", "text": "*days_left*: 9\n*not_after*: 2026-06-01T00:00:00Z" } },
            ],
        })
    );
}

#[tokio::test]
async fn slack_warning_and_unknown_are_tagged() {
    let rx = Receiver::answering(200, "ok").await;
    let ch = slack(&rx);
    ch.send(&alert(Severity::Warning)).await.unwrap();
    ch.send(&alert(Severity::Unknown)).await.unwrap();
    let texts: Vec<_> = rx
        .requests()
        .iter()
        .map(|r| r.json()["text"].clone())
        .collect();
    assert_eq!(
        texts,
        [
            "[WARNING] billing: certificate expires in 9 days",
            "[UNKNOWN] billing: certificate expires in 9 days"
        ]
    );
}

#[tokio::test]
async fn slack_resolve_posts_resolved() {
    let rx = Receiver::answering(200, "ok").await;
    slack(&rx).send(&resolve()).await.unwrap();
    assert_eq!(
        rx.single().json(),
        json!({
            "text": "[RESOLVED] billing: certificate renewed, expires 2027-06-01",
            "blocks": [
                { "type": "header", "text": { "type": "plain_text", "text": "[RESOLVED] billing: certificate renewed, expires 2027-06-01" } },
                { "type": "section", "fields": fields("billing", "Billing_Sync", "prod") },
            ],
        })
    );
}

#[tokio::test]
async fn slack_rotation_outcomes_are_tagged_and_carry_the_rotation_id() {
    let rx = Receiver::answering(200, "ok").await;
    let ch = slack(&rx);
    for outcome in [Outcome::Succeeded, Outcome::Failed, Outcome::RolledBack] {
        ch.send(&rotation(outcome)).await.unwrap();
    }
    let mut with_rotation = fields("billing", "Billing_Sync", "prod");
    with_rotation
        .as_array_mut()
        .unwrap()
        .push(json!({ "type": "mrkdwn", "text": "*Rotation*\nr-20260520-01" }));
    let bodies: Vec<_> = rx.requests().iter().map(|r| r.json()).collect();
    for (body, tag) in bodies
        .iter()
        .zip(["[ROTATED]", "[ROTATION FAILED]", "[ROLLED BACK]"])
    {
        let line = format!("{tag} billing: generation 4");
        assert_eq!(
            *body,
            json!({
                "text": line,
                "blocks": [
                    { "type": "header", "text": { "type": "plain_text", "text": line } },
                    { "type": "section", "fields": with_rotation },
                ],
            })
        );
    }
}

#[tokio::test]
async fn pagerduty_alert_triggers_with_every_payload_field() {
    let rx = pagerduty_receiver().await;
    pagerduty(&rx)
        .send(&alert(Severity::Critical))
        .await
        .unwrap();
    let req = rx.single();
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/v2/enqueue");
    assert_eq!(req.header("content-type").unwrap(), "application/json");
    let mut body = req.json();
    take_recent_time(&mut body["payload"], "timestamp");
    assert_eq!(
        body,
        json!({
            "routing_key": ROUTING_KEY,
            "event_action": "trigger",
            "dedup_key": "rekey/expiry/prod/billing",
            "client": "rekey",
            "payload": {
                "summary": "billing: certificate expires in 9 days",
                "source": "rekey/prod/billing",
                "severity": "critical",
                "component": "Billing_Sync",
                "group": "prod",
                "class": "certificate-expiry",
                "custom_details": {
                    "credential": "billing",
                    "app": "Billing_Sync",
                    "org": "prod",
                    "not_after": "2026-06-01T00:00:00Z",
                    "days_left": "9",
                },
            },
        })
    );
}

#[tokio::test]
async fn pagerduty_severities_map_and_unknown_is_error() {
    let rx = pagerduty_receiver().await;
    let ch = pagerduty(&rx);
    for s in [Severity::Warning, Severity::Critical, Severity::Unknown] {
        ch.send(&alert(s)).await.unwrap();
    }
    let severities: Vec<_> = rx
        .requests()
        .iter()
        .map(|r| r.json()["payload"]["severity"].clone())
        .collect();
    assert_eq!(severities, ["warning", "critical", "error"]);
}

#[tokio::test]
async fn pagerduty_resolve_uses_the_alerts_dedup_key() {
    let rx = pagerduty_receiver().await;
    let ch = pagerduty(&rx);
    ch.send(&alert(Severity::Warning)).await.unwrap();
    ch.send(&resolve()).await.unwrap();
    let requests = rx.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[1].json(),
        json!({
            "routing_key": ROUTING_KEY,
            "event_action": "resolve",
            "dedup_key": "rekey/expiry/prod/billing",
        })
    );
    assert_eq!(
        requests[0].json()["dedup_key"],
        requests[1].json()["dedup_key"]
    );
}

#[tokio::test]
async fn pagerduty_failed_rotation_triggers_and_a_success_resolves_it() {
    let rx = pagerduty_receiver().await;
    let ch = pagerduty(&rx);
    ch.send(&rotation(Outcome::Failed)).await.unwrap();
    ch.send(&rotation(Outcome::RolledBack)).await.unwrap();
    ch.send(&rotation(Outcome::Succeeded)).await.unwrap();
    let requests = rx.requests();
    assert_eq!(requests.len(), 3);
    for (req, outcome) in requests.iter().zip(["failed", "rolled_back"]) {
        let mut body = req.json();
        take_recent_time(&mut body["payload"], "timestamp");
        assert_eq!(
            body,
            json!({
                "routing_key": ROUTING_KEY,
                "event_action": "trigger",
                "dedup_key": "rekey/rotation/prod/billing",
                "client": "rekey",
                "payload": {
                    "summary": "billing: generation 4",
                    "source": "rekey/prod/billing",
                    "severity": "error",
                    "component": "Billing_Sync",
                    "group": "prod",
                    "class": "key-rotation",
                    "custom_details": {
                        "credential": "billing",
                        "app": "Billing_Sync",
                        "org": "prod",
                        "outcome": outcome,
                        "rotation_id": "r-20260520-01",
                    },
                },
            })
        );
    }
    assert_eq!(
        requests[2].json(),
        json!({
            "routing_key": ROUTING_KEY,
            "event_action": "resolve",
            "dedup_key": "rekey/rotation/prod/billing",
        })
    );
}

#[tokio::test]
async fn pagerduty_unadopted_rotation_triggers_at_warning_under_the_rotation_key() {
    let rx = pagerduty_receiver().await;
    pagerduty(&rx)
        .send(&rotation(Outcome::Unadopted))
        .await
        .unwrap();
    let body = rx.single().json();
    assert_eq!(body["event_action"], "trigger");
    assert_eq!(body["dedup_key"], "rekey/rotation/prod/billing");
    assert_eq!(body["payload"]["severity"], "warning");
    assert_eq!(body["payload"]["custom_details"]["outcome"], "unadopted");
}

#[tokio::test]
async fn pagerduty_refuses_a_dedup_key_over_255_characters_without_sending() {
    let rx = pagerduty_receiver().await;
    let mut m = alert(Severity::Critical);
    if let Message::Alert { dedup_key, .. } = &mut m {
        *dedup_key = "k".repeat(256);
    }
    let err = pagerduty(&rx).send(&m).await.unwrap_err();
    assert_eq!(err.kind(), rekey_api::ErrorKind::Config);
    assert!(
        err.to_string().contains("pagerduty channel 'oncall'"),
        "{err}"
    );
    assert_eq!(rx.count(), 0);
}

#[tokio::test]
async fn webhook_posts_the_message_signed_over_timestamp_and_body() {
    let rx = Receiver::answering(204, "").await;
    webhook(&rx).send(&alert(Severity::Critical)).await.unwrap();
    let req = rx.single();
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/hooks/rekey");
    assert_eq!(req.header("content-type").unwrap(), "application/json");

    let mut body = req.json();
    take_recent_time(&mut body, "sent_at");
    assert_eq!(
        body,
        json!({
            "type": "alert",
            "dedup_key": "rekey/expiry/prod/billing",
            "severity": "critical",
            "credential": "billing",
            "app": "Billing_Sync",
            "org": "prod",
            "summary": "certificate expires in 9 days",
            "details": { "days_left": "9", "not_after": "2026-06-01T00:00:00Z" },
        })
    );

    let ts = req.header("x-rekey-timestamp").unwrap();
    let sig = req.header("x-rekey-signature").unwrap();
    let sent: i64 = ts.parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - sent).abs() < 60);
    assert_eq!(sig, signature(WEBHOOK_SECRET.as_bytes(), sent, &req.body));
    assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64, "{sig}");

    let now = chrono::Utc::now();
    let tolerance = Duration::from_secs(300);
    let secret = WEBHOOK_SECRET.as_bytes();
    assert!(verify_signature(
        secret, &ts, &req.body, &sig, now, tolerance
    ));
    // A tampered body.
    let mut tampered = req.body.clone();
    let at = tampered.iter().position(|b| *b == b'9').unwrap();
    tampered[at] = b'8';
    assert!(!verify_signature(
        secret, &ts, &tampered, &sig, now, tolerance
    ));
    // A wrong secret.
    assert!(!verify_signature(
        b"not-the-secret",
        &ts,
        &req.body,
        &sig,
        now,
        tolerance
    ));
    // A replay after the tolerance.
    let later = now + chrono::Duration::seconds(301);
    assert!(!verify_signature(
        secret, &ts, &req.body, &sig, later, tolerance
    ));
    assert!(verify_signature(
        secret,
        &ts,
        &req.body,
        &sig,
        now + chrono::Duration::seconds(200),
        tolerance
    ));
}

#[tokio::test]
async fn webhook_resolve_and_rotation_bodies() {
    let rx = Receiver::answering(200, "").await;
    let ch = webhook(&rx);
    ch.send(&resolve()).await.unwrap();
    let mut no_id = rotation(Outcome::RolledBack);
    if let Message::Rotation { rotation_id, .. } = &mut no_id {
        *rotation_id = None;
    }
    ch.send(&no_id).await.unwrap();
    let mut bodies: Vec<_> = rx.requests().iter().map(|r| r.json()).collect();
    for b in &mut bodies {
        take_recent_time(b, "sent_at");
    }
    assert_eq!(
        bodies,
        [
            json!({
                "type": "resolve",
                "dedup_key": "rekey/expiry/prod/billing",
                "credential": "billing",
                "app": "Billing_Sync",
                "org": "prod",
                "summary": "certificate renewed, expires 2027-06-01",
            }),
            json!({
                "type": "rotation",
                "credential": "billing",
                "app": "Billing_Sync",
                "org": "prod",
                "outcome": "rolled_back",
                "summary": "generation 4",
                "rotation_id": null,
            }),
        ]
    );
}

#[tokio::test]
async fn webhook_retries_are_signed_afresh_and_verify() {
    let rx = Receiver::start(vec![Reply::status(503, "busy")], Reply::status(200, "")).await;
    webhook(&rx).send(&rotation(Outcome::Failed)).await.unwrap();
    let requests = rx.requests();
    assert_eq!(requests.len(), 2);
    for req in &requests {
        assert!(verify_signature(
            WEBHOOK_SECRET.as_bytes(),
            &req.header("x-rekey-timestamp").unwrap(),
            &req.body,
            &req.header("x-rekey-signature").unwrap(),
            chrono::Utc::now(),
            Duration::from_secs(300),
        ));
    }
    assert_eq!(requests[0].body, requests[1].body);
}
