//! Retries, final answers, fan-out and secret hygiene, on real HTTP receivers on 127.0.0.1.

mod common;

use common::{FAST, Receiver, Reply};
use rekey_api::{Backoff, ErrorKind, SecretString};
use rekey_notify::{Channel, ChannelConfig, Message, Outcome, send_all};
use rekey_testkit::receiver::{Gate, RefusingPort};
use std::future::Future;
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);

/// Only a guard against hanging: far above what any delivery here takes on a loaded machine
/// (the backoffs wait milliseconds), far below the hour a wait that should not happen would take.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// `delivery`'s output, or a failure naming `what` if it was still waiting at [`HANG_GUARD`].
async fn before_hang_guard<T>(what: &str, delivery: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG_GUARD, delivery)
        .await
        .unwrap_or_else(|_| panic!("{what}: still waiting after {HANG_GUARD:?}"))
}

const SLACK_PATH: &str = "/services/T0001/B0002/SlackHookToken123";
const ROUTING_KEY: &str = "R0UT1NGKEY0123456789abcdef012345";
const WEBHOOK_SECRET: &str = "whsec-shared-signing-secret";

fn message() -> Message {
    Message::Rotation {
        credential: "billing".into(),
        app: "Billing_Sync".into(),
        org: "prod".into(),
        outcome: Outcome::Failed,
        summary: "verify failed".into(),
        rotation_id: None,
    }
}

fn slack_at(url: String) -> Channel {
    Channel::new(ChannelConfig::Slack {
        name: "ops".into(),
        webhook_url: SecretString::new(url),
    })
    .unwrap()
    .with_backoff(FAST)
}

fn slack(rx: &Receiver) -> Channel {
    slack_at(rx.url(SLACK_PATH))
}

fn pagerduty_at(url: String) -> Channel {
    Channel::new(ChannelConfig::PagerDuty {
        name: "oncall".into(),
        routing_key: SecretString::new(ROUTING_KEY),
        events_url: Some(url),
    })
    .unwrap()
    .with_backoff(FAST)
}

fn webhook_at(url: String) -> Channel {
    Channel::new(ChannelConfig::Webhook {
        name: "audit".into(),
        url,
        secret: SecretString::new(WEBHOOK_SECRET),
    })
    .unwrap()
    .with_backoff(FAST)
}

/// Nothing secret in `text`: not the Slack URL or its path, the routing key or the signing secret.
fn assert_clean(text: &str) {
    for secret in [
        SLACK_PATH,
        "SlackHookToken123",
        ROUTING_KEY,
        WEBHOOK_SECRET,
        "/v2/enqueue",
    ] {
        assert!(!text.contains(secret), "{secret:?} leaked into {text:?}");
    }
}

fn describe(err: &rekey_api::Error) -> String {
    format!("{err} | {err:?} | {}", err.hint().unwrap_or_default())
}

#[tokio::test]
async fn two_503s_then_202_succeeds_on_the_third_request() {
    let rx = Receiver::start(
        vec![Reply::status(503, "busy"), Reply::status(503, "busy")],
        Reply::status(202, r#"{"status":"success"}"#),
    )
    .await;
    pagerduty_at(rx.url("/v2/enqueue"))
        .send(&message())
        .await
        .unwrap();
    assert_eq!(rx.count(), 3);
    let bodies: Vec<_> = rx.requests().into_iter().map(|r| r.body).collect();
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
}

#[tokio::test]
async fn a_429_with_retry_after_zero_is_retried_at_once() {
    let rx = Receiver::start(
        vec![Reply::status(429, "rate_limited").header("retry-after", "0")],
        Reply::status(200, "ok"),
    )
    .await;
    // A backoff of an hour: only honouring Retry-After: 0 gets the retry in before the guard.
    let ch = slack(&rx).with_backoff(Backoff {
        attempts: 4,
        base: HOUR,
        max_delay: HOUR,
    });
    before_hang_guard("the retry after Retry-After: 0", ch.send(&message()))
        .await
        .unwrap();
    assert_eq!(rx.count(), 2);
}

#[tokio::test]
async fn a_long_retry_after_is_capped_by_max_delay() {
    let rx = Receiver::start(
        vec![Reply::status(503, "maintenance").header("retry-after", "3600")],
        Reply::status(200, "ok"),
    )
    .await;
    // FAST waits at most 20 ms: the hour asked for is never waited.
    before_hang_guard(
        "the retry after Retry-After: 3600",
        slack(&rx).send(&message()),
    )
    .await
    .unwrap();
    assert_eq!(rx.count(), 2);
}

#[test]
fn the_wait_is_retry_after_capped_by_max_delay_else_a_jittered_doubling_of_base() {
    let backoff = Backoff {
        attempts: 4,
        base: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
    };
    assert_eq!(backoff.delay(1, Some(HOUR)), Duration::from_secs(1));
    assert_eq!(backoff.delay(3, Some(Duration::ZERO)), Duration::ZERO);
    assert_eq!(
        backoff.delay(2, Some(Duration::from_millis(250))),
        Duration::from_millis(250)
    );
    // The jitter is random; these bounds hold for every draw.
    for (attempt, full_ms) in [
        (1, 100),
        (2, 200),
        (3, 400),
        (4, 800),
        (5, 1000),
        (40, 1000),
    ] {
        let full = Duration::from_millis(full_ms);
        for _ in 0..200 {
            let wait = backoff.delay(attempt, None);
            assert!(
                wait >= full / 2 && wait <= full,
                "attempt {attempt}: {wait:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_400_is_final_after_one_request_and_names_channel_and_status() {
    let rx = Receiver::answering(400, "invalid_payload").await;
    let err = slack(&rx).send(&message()).await.unwrap_err();
    assert_eq!(rx.count(), 1);
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert!(!err.is_temporary());
    let text = err.to_string();
    assert!(text.contains("slack channel 'ops'"), "{text}");
    assert!(text.contains("127.0.0.1"), "{text}");
    assert!(text.contains("HTTP 400"), "{text}");
    assert!(text.contains("invalid_payload"), "{text}");
    assert!(err.hint().is_some());
    assert_clean(&describe(&err));
}

#[tokio::test]
async fn other_4xx_are_final_and_classified() {
    for (status, kind) in [
        (401, ErrorKind::Unauthenticated),
        (403, ErrorKind::PermissionDenied),
        (404, ErrorKind::NotFound),
        (410, ErrorKind::NotFound),
        (422, ErrorKind::Rejected),
    ] {
        let rx = Receiver::answering(status, "no").await;
        let err = webhook_at(rx.url("/hook"))
            .send(&message())
            .await
            .unwrap_err();
        assert_eq!(rx.count(), 1, "HTTP {status}");
        assert_eq!(err.kind(), kind, "HTTP {status}");
        assert!(!err.is_temporary());
        assert!(
            err.to_string().contains(&format!(
                "webhook channel 'audit' (127.0.0.1): HTTP {status}"
            )),
            "{err}"
        );
    }
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let rx = Receiver::start(
        Vec::new(),
        Reply::status(302, "").header("location", "http://127.0.0.1:1/elsewhere"),
    )
    .await;
    let err = slack(&rx).send(&message()).await.unwrap_err();
    assert_eq!(rx.count(), 1);
    assert_eq!(err.kind(), ErrorKind::Unexpected);
    assert!(err.to_string().contains("HTTP 302"), "{err}");
}

#[tokio::test]
async fn persistent_5xx_gives_up_after_the_attempts_as_temporary() {
    let rx = Receiver::answering(
        500,
        r#"{"status":"Internal error","message":"try again","errors":["overloaded"]}"#,
    )
    .await;
    let err = pagerduty_at(rx.url("/v2/enqueue"))
        .send(&message())
        .await
        .unwrap_err();
    assert_eq!(rx.count(), 4);
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.is_temporary());
    assert_eq!(
        err.to_string(),
        "pagerduty channel 'oncall' (127.0.0.1): HTTP 500 (Internal error; try again; overloaded) (gave up after 4 attempts)"
    );
    assert_clean(&describe(&err));
}

#[tokio::test]
async fn a_closed_port_is_a_temporary_error_after_the_attempts() {
    let refusing = RefusingPort::bind();
    let ch = slack_at(refusing.url(SLACK_PATH));
    let err = ch.send(&message()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.is_temporary());
    let text = err.to_string();
    assert!(
        text.starts_with(
            "slack channel 'ops' (127.0.0.1): could not connect (gave up after 4 attempts)"
        ),
        "{text}"
    );
    assert_clean(&describe(&err));
}

#[tokio::test]
async fn send_all_reports_every_channel_and_delivers_to_the_live_one() {
    let live = Receiver::answering(200, "ok").await;
    let dead = RefusingPort::bind();
    let channels = [webhook_at(dead.url("/hook")), slack(&live)];
    let results = send_all(&channels, &message()).await;
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].0, "audit");
    let err = results[0].1.as_ref().unwrap_err();
    assert!(err.is_temporary());
    assert!(err.to_string().contains("webhook channel 'audit'"), "{err}");
    assert_eq!(results[1].0, "ops");
    assert!(results[1].1.is_ok());
    assert_eq!(live.count(), 1);
    assert_eq!(
        live.single().json()["text"],
        "[ROTATION FAILED] billing: verify failed"
    );
}

#[tokio::test]
async fn send_all_sends_concurrently() {
    // Every receiver holds its first answer until all three have a request: one channel after
    // the other would never get past the first, whose request waits for an hour.
    let gate = Gate::default();
    let mut receivers = Vec::new();
    for _ in 0..3 {
        receivers.push(
            Receiver::start(
                vec![Reply::status(503, "").held_until(&gate)],
                Reply::status(200, "ok"),
            )
            .await,
        );
    }
    let channels: Vec<_> = receivers
        .iter()
        .map(|rx| slack(rx).with_timeout(HOUR))
        .collect();
    let all_in_flight = async {
        for rx in &receivers {
            rx.received(1).await;
        }
        gate.open();
    };
    let message = message();
    let (results, ()) =
        before_hang_guard("three channels with one request each in flight", async {
            tokio::join!(send_all(&channels, &message), all_in_flight)
        })
        .await;
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    assert!(receivers.iter().all(|rx| rx.count() == 2));
}

#[tokio::test]
async fn echoed_secrets_are_scrubbed_from_errors() {
    let rx = Receiver::answering(
        400,
        &format!(
            r#"{{"status":"invalid event","message":"bad key {ROUTING_KEY}","errors":["x"]}}"#
        ),
    )
    .await;
    let err = pagerduty_at(rx.url("/v2/enqueue"))
        .send(&message())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("bad key ***"), "{err}");
    assert_clean(&describe(&err));

    let path = SLACK_PATH;
    let rx = Receiver::answering(404, &format!("no_service for {path}")).await;
    let err = slack(&rx).send(&message()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("no_service for ***"), "{err}");
    assert_clean(&describe(&err));

    let rx = Receiver::answering(
        401,
        &format!("bad signature, expected secret {WEBHOOK_SECRET}"),
    )
    .await;
    let err = webhook_at(rx.url("/hook"))
        .send(&message())
        .await
        .unwrap_err();
    assert_clean(&describe(&err));
}

#[tokio::test]
async fn debug_output_shows_no_secret() {
    let rx = Receiver::answering(200, "ok").await;
    let configs = [
        ChannelConfig::Slack {
            name: "ops".into(),
            webhook_url: SecretString::new(rx.url(SLACK_PATH)),
        },
        ChannelConfig::PagerDuty {
            name: "oncall".into(),
            routing_key: SecretString::new(ROUTING_KEY),
            events_url: Some(rx.url("/v2/enqueue")),
        },
        ChannelConfig::Webhook {
            name: "audit".into(),
            url: rx.url("/hook"),
            secret: SecretString::new(WEBHOOK_SECRET),
        },
    ];
    for config in configs {
        let config_debug = format!("{config:?}");
        assert_clean(&config_debug);
        let channel = Channel::new(config).unwrap();
        let debug = format!("{channel:?}");
        assert_clean(&debug);
        assert!(debug.contains(channel.name()), "{debug}");
        assert!(debug.contains("127.0.0.1"), "{debug}");
    }
    assert_eq!(format!("{:?}", SecretString::new(ROUTING_KEY)), "***");
    assert_eq!(SecretString::new(ROUTING_KEY).to_string(), "***");
}

#[test]
fn https_is_required_except_on_loopback() {
    let slack = |url: &str| {
        Channel::new(ChannelConfig::Slack {
            name: "ops".into(),
            webhook_url: SecretString::new(url),
        })
    };
    for url in [
        "http://hooks.slack.com/services/T0001/B0002/SlackHookToken123",
        "ftp://127.0.0.1/services/T0001/B0002/SlackHookToken123",
        "hooks.slack.com/services/T0001/B0002/SlackHookToken123",
    ] {
        let err = slack(url).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{url}");
        assert!(err.to_string().starts_with("slack channel 'ops'"), "{err}");
        assert_clean(&describe(&err));
    }
    for url in [
        "https://hooks.slack.com/services/T0001/B0002/SlackHookToken123",
        "http://127.0.0.1:9/services/x",
        "http://localhost:9/services/x",
        "http://[::1]:9/services/x",
    ] {
        let ch = slack(url).unwrap();
        assert_clean(&format!("{ch:?}"));
    }
    assert_eq!(
        slack("https://hooks.slack.com/services/T0001/B0002/SlackHookToken123")
            .unwrap()
            .host(),
        "hooks.slack.com"
    );

    let err = Channel::new(ChannelConfig::PagerDuty {
        name: "oncall".into(),
        routing_key: SecretString::new(ROUTING_KEY),
        events_url: Some("http://events.pagerduty.com/v2/enqueue".into()),
    })
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("pagerduty channel 'oncall': events_url must use https"),
        "{err}"
    );
    let ok = Channel::new(ChannelConfig::PagerDuty {
        name: "oncall".into(),
        routing_key: SecretString::new(ROUTING_KEY),
        events_url: None,
    })
    .unwrap();
    assert_eq!(ok.host(), "events.pagerduty.com");

    let err = Channel::new(ChannelConfig::Webhook {
        name: "audit".into(),
        url: "http://10.0.0.1/hook".into(),
        secret: SecretString::new(WEBHOOK_SECRET),
    })
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("webhook channel 'audit': url must use https"),
        "{err}"
    );
}

#[test]
fn empty_names_and_secrets_are_config_errors() {
    let err = Channel::new(ChannelConfig::Webhook {
        name: "audit".into(),
        url: "https://example.com/hook".into(),
        secret: SecretString::new(""),
    })
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert_eq!(err.to_string(), "webhook channel 'audit': secret is empty");
    let err = Channel::new(ChannelConfig::PagerDuty {
        name: " ".into(),
        routing_key: SecretString::new(ROUTING_KEY),
        events_url: None,
    })
    .unwrap_err();
    assert_eq!(err.to_string(), "pagerduty channel: the name is empty");
    let err = Channel::new(ChannelConfig::PagerDuty {
        name: "oncall".into(),
        routing_key: SecretString::new("  "),
        events_url: None,
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "pagerduty channel 'oncall': routing_key is empty"
    );
}
