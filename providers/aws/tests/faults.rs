//! The AWS store's error mapping for the faults moto cannot produce: moto performs no IAM
//! checks, never throttles, never fails with a 5xx and accepts any credentials. For these faults
//! only, the tests point the store at a small fault server on 127.0.0.1 that speaks just enough of
//! the Secrets Manager JSON protocol (`application/x-amz-json-1.1`, the error code in `__type`,
//! the text in `Message`) to answer every POST with one configured AWS error, and records each
//! request's `X-Amz-Target` and `SecretId` (one test lets `DescribeSecret` succeed with a canned
//! label map, to reach `GetSecretValue`). Everything else about the store is tested against
//! moto in `aws.rs`.
//!
//! KMS custody (`kind = "aws_kms"`) goes through the same server for the answers moto does not
//! give as AWS does: `DryRunOperationException` to a dry-run `Sign` (moto ignores `DryRun`),
//! `DisabledException` / `KMSInvalidStateException` to a `Sign` with a destroyed key (moto still
//! signs), and `AccessDeniedException` in AWS's JSON form (moto's IAM answers an XML
//! `AccessDenied`, tested in `kms.rs`).
//!
//! The store goes through the real SDK (signing, its standard retry policy, its JSON error
//! parsing) with static dummy credentials, so the tests also prove that the SDK retried the
//! retryable faults and that no message carries the secret access key. The crate exposes no
//! retry settings, so the three retried tests wait out the SDK's jittered backoff (up to 3 s
//! each, in parallel): the file measured 2.4–3.4 s.

use aws_config::SdkConfig;
use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use rekey_api::{CustodyService, KeyCustody, KeyHandle};
use rekey_api::{Error, ErrorKind, SecretStore, Stage};
use rekey_aws::{AwsConfig, AwsStore, KmsConfig};
use std::sync::{Arc, Mutex};

const CRED: &str = "billing";
const SECRET: &str = "rekey/billing";
/// The dummy secret access key: it must never appear in an error.
const SECRET_ACCESS_KEY: &str = "faultsDummySecretAccessKey0123456789abcd";
/// The standard retry mode's attempts per call (`RetryConfig::standard()`).
const STANDARD_MAX_ATTEMPTS: usize = 3;

/// One request the fault server saw.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    /// The `X-Amz-Target` header, e.g. `secretsmanager.DescribeSecret`.
    target: String,
    /// The request body's `SecretId`.
    secret_id: Option<String>,
}

/// What the fault server answers.
struct Fault {
    status: StatusCode,
    /// The AWS JSON error body, `{"__type": …, "Message": …}`.
    body: String,
    /// Targets answered with `200` and this body instead, to reach a later call.
    answers: Vec<(&'static str, String)>,
}

impl Fault {
    fn new(status: u16, code: &str, message: &str) -> Fault {
        Fault {
            status: StatusCode::from_u16(status).unwrap(),
            body: serde_json::json!({ "__type": code, "Message": message }).to_string(),
            answers: Vec::new(),
        }
    }

    fn answering(mut self, target: &'static str, body: serde_json::Value) -> Fault {
        self.answers.push((target, body.to_string()));
        self
    }
}

struct Shared {
    fault: Fault,
    seen: Mutex<Vec<Seen>>,
}

/// The fault server and a store pointed at it.
struct FaultServer {
    endpoint: String,
    shared: Arc<Shared>,
}

impl FaultServer {
    async fn start(fault: Fault) -> FaultServer {
        let shared = Arc::new(Shared {
            fault,
            seen: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/", post(answer))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FaultServer { endpoint, shared }
    }

    /// A store with static dummy credentials whose endpoint is this server.
    async fn store(&self) -> AwsStore {
        self.store_with(None).await
    }

    /// The same, with keys in custody in KMS (this server answers KMS too).
    async fn custody_store(&self) -> AwsStore {
        self.store_with(Some(KmsConfig::default())).await
    }

    async fn store_with(&self, kms: Option<KmsConfig>) -> AwsStore {
        let sdk: SdkConfig = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                "AKIAFAULTSDUMMY00000",
                SECRET_ACCESS_KEY,
                None,
                None,
                "static",
            ))
            .load()
            .await;
        let config = AwsConfig {
            endpoint_url: Some(self.endpoint.clone()),
            kms,
            ..AwsConfig::default()
        };
        AwsStore::with_sdk_config(config, &sdk).unwrap()
    }

    fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }
}

async fn answer(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let secret_id = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["SecretId"].as_str().map(str::to_string));
    shared.seen.lock().unwrap().push(Seen {
        target: target.clone(),
        secret_id,
    });
    let fault = &shared.fault;
    let (status, body) = match fault.answers.iter().find(|(t, _)| *t == target) {
        Some((_, body)) => (StatusCode::OK, body.clone()),
        None => (fault.status, fault.body.clone()),
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/x-amz-json-1.1")],
        body,
    )
        .into_response()
}

fn request(action: &str, secret: &str) -> Seen {
    Seen {
        target: format!("secretsmanager.{action}"),
        secret_id: Some(secret.to_string()),
    }
}

/// Nothing the operator sees carries the secret access key.
fn assert_no_secret_key(err: &Error) {
    for shown in [
        err.to_string(),
        format!("{err:?}"),
        err.hint().unwrap_or_default().to_string(),
    ] {
        assert!(!shown.contains(SECRET_ACCESS_KEY), "{shown}");
    }
}

#[tokio::test]
async fn access_denied_names_the_action_and_the_secret() {
    // DescribeSecret is allowed (one version holds AWSCURRENT); reading that version is not.
    let server = FaultServer::start(
        Fault::new(
            400,
            "AccessDeniedException",
            "User: arn:aws:iam::123456789012:user/x is not authorized to perform: \
             secretsmanager:GetSecretValue on resource: rekey/billing",
        )
        .answering(
            "secretsmanager.DescribeSecret",
            serde_json::json!({
                "ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:rekey/billing-AbCdEf",
                "Name": SECRET,
                "VersionIdsToStages": { "v1": ["AWSCURRENT"] },
            }),
        ),
    )
    .await;
    let err = server
        .store()
        .await
        .read_stage(CRED, Stage::Current)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(!err.is_temporary(), "{err}");
    // The store's own words name the action and the secret, then AWS's code and message.
    assert!(
        err.message().contains(
            "GetSecretValue on secret rekey/billing failed (AccessDeniedException: User:"
        ),
        "{err}"
    );
    let hint = err.hint().expect("a hint");
    assert!(
        hint.contains("secretsmanager:GetSecretValue on rekey/billing"),
        "{hint}"
    );
    assert_no_secret_key(&err);
    // Not retried: one DescribeSecret, one GetSecretValue.
    assert_eq!(
        server.seen(),
        [
            request("DescribeSecret", SECRET),
            request("GetSecretValue", SECRET)
        ]
    );
}

#[tokio::test]
async fn access_denied_is_named_even_when_aws_does_not_name_the_secret() {
    let server = FaultServer::start(Fault::new(
        400,
        "AccessDeniedException",
        "because no identity-based policy allows the action",
    ))
    .await;
    let err = server.store().await.stages(CRED).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(!err.is_temporary(), "{err}");
    assert!(
        err.message()
            .contains("DescribeSecret on secret rekey/billing"),
        "{err}"
    );
    assert!(
        err.hint()
            .unwrap()
            .contains("secretsmanager:DescribeSecret on rekey/billing"),
        "{err:?}"
    );
    assert_no_secret_key(&err);
    assert_eq!(server.seen(), [request("DescribeSecret", SECRET)]);
}

/// A fault the SDK's standard retry policy retries: the store tried `STANDARD_MAX_ATTEMPTS` times
/// (each `target` on `secret`), then gave up with a temporary `Unavailable` naming the call.
/// The policy backs off from 1 s with full jitter, so each such test takes up to ~3 s.
fn assert_retried_then_unavailable(
    err: &rekey_api::Error,
    server: &FaultServer,
    expected: &str,
    target: &str,
    secret: &str,
) {
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_temporary(), "{err}");
    assert!(err.message().contains(expected), "{err}");
    assert_no_secret_key(err);
    assert_eq!(
        server.seen(),
        vec![request(target, secret); STANDARD_MAX_ATTEMPTS]
    );
}

#[tokio::test]
async fn throttling_is_retried_then_temporarily_unavailable() {
    let server = FaultServer::start(Fault::new(400, "ThrottlingException", "Rate exceeded")).await;
    let err = server.store().await.stages(CRED).await.unwrap_err();
    let expected =
        "DescribeSecret on secret rekey/billing failed (ThrottlingException: Rate exceeded)";
    assert_retried_then_unavailable(&err, &server, expected, "DescribeSecret", SECRET);
}

#[tokio::test]
async fn internal_service_error_is_retried_then_temporarily_unavailable() {
    let fault = Fault::new(
        500,
        "InternalServiceError",
        "An error occurred on the server side.",
    );
    let server = FaultServer::start(fault).await;
    let err = server.store().await.read_journal(CRED).await.unwrap_err();
    let expected = "GetSecretValue on secret rekey/billing/journal failed (InternalServiceError:";
    assert_retried_then_unavailable(
        &err,
        &server,
        expected,
        "GetSecretValue",
        "rekey/billing/journal",
    );
}

#[tokio::test]
async fn an_unparsable_5xx_is_retried_then_temporarily_unavailable() {
    // A proxy's error page in front of a VPC endpoint: no AWS error code at all.
    let server = FaultServer::start(Fault {
        status: StatusCode::BAD_GATEWAY,
        body: "<html>502 Bad Gateway</html>".into(),
        answers: Vec::new(),
    })
    .await;
    let err = server.store().await.stages(CRED).await.unwrap_err();
    assert_retried_then_unavailable(
        &err,
        &server,
        "DescribeSecret on secret rekey/billing",
        "DescribeSecret",
        SECRET,
    );
}

#[tokio::test]
async fn rejected_credentials_are_unauthenticated_with_a_hint() {
    for (code, message) in [
        (
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ),
        (
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method.",
        ),
    ] {
        let server = FaultServer::start(Fault::new(400, code, message)).await;
        // `preflight` resolves the (static) credentials, then AWS rejects them on DescribeSecret.
        let err = server.store().await.preflight(CRED).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{code}: {err}");
        assert!(!err.is_temporary(), "{code}: {err}");
        assert!(
            err.message().contains(&format!(
                "DescribeSecret on secret rekey/billing failed ({code}: "
            )),
            "{err}"
        );
        let hint = err.hint().expect("a hint");
        assert!(hint.contains("credentials were rejected"), "{hint}");
        assert_no_secret_key(&err);
        assert_eq!(server.seen(), [request("DescribeSecret", SECRET)], "{code}");
    }
}

const KEY_ARN: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn kms_handle() -> KeyHandle {
    KeyHandle {
        service: CustodyService::AwsKms,
        key_id: KEY_ARN.to_string(),
        version: None,
        algorithm: "rsa-2048".to_string(),
    }
}

/// ListAliases, DescribeKey (an enabled key) and GetPublicKey answered as AWS does, so that
/// preflight reaches Sign.
fn kms_reads(fault: Fault) -> Fault {
    fault
        .answering(
            "TrentService.ListAliases",
            serde_json::json!({ "Aliases": [], "Truncated": false }),
        )
        .answering(
            "TrentService.DescribeKey",
            serde_json::json!({ "KeyMetadata": {
                "KeyId": "1234abcd-12ab-34cd-56ef-1234567890ab", "Arn": KEY_ARN,
                "Enabled": true, "KeyState": "Enabled", "KeySpec": "RSA_2048",
                "KeyUsage": "SIGN_VERIFY", "Origin": "AWS_KMS",
            }}),
        )
        .answering(
            "TrentService.GetPublicKey",
            serde_json::json!({ "KeyId": KEY_ARN, "PublicKey": "MA==" }),
        )
}

fn kms_targets(server: &FaultServer) -> Vec<String> {
    server.seen().into_iter().map(|s| s.target).collect()
}

#[tokio::test]
async fn a_dry_run_sign_that_aws_would_have_done_passes_preflight() {
    let server = FaultServer::start(kms_reads(Fault::new(
        412,
        "DryRunOperationException",
        "The request would have succeeded, but the DryRun option is set.",
    )))
    .await;
    let kms = server.custody_store().await.kms().unwrap();
    kms.preflight(CRED, &[kms_handle()]).await.unwrap();
    assert_eq!(
        kms_targets(&server),
        [
            "TrentService.ListAliases",
            "TrentService.DescribeKey",
            "TrentService.GetPublicKey",
            "TrentService.Sign"
        ]
    );
}

#[tokio::test]
async fn kms_access_denied_names_the_kms_action_and_the_key() {
    let server = FaultServer::start(kms_reads(Fault::new(
        400,
        "AccessDeniedException",
        "User: arn:aws:iam::123456789012:user/x is not authorized to perform: kms:Sign",
    )))
    .await;
    let kms = server.custody_store().await.kms().unwrap();
    let err = kms.preflight(CRED, &[kms_handle()]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(
        err.message().contains(&format!(
            "kms:Sign on key {KEY_ARN} failed (AccessDeniedException: User:"
        )),
        "{err}"
    );
    assert!(
        err.hint()
            .unwrap()
            .contains(&format!("grant kms:Sign on {KEY_ARN}")),
        "{err:?}"
    );
    assert_no_secret_key(&err);
}

#[tokio::test]
async fn signing_with_a_destroyed_key_is_refused_naming_the_key() {
    for (code, message) in [
        ("DisabledException", "arn is disabled."),
        ("KMSInvalidStateException", "arn is pending deletion."),
    ] {
        let server = FaultServer::start(Fault::new(400, code, message)).await;
        let kms = server.custody_store().await.kms().unwrap();
        let err = kms.sign(&kms_handle(), b"input").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
        assert!(!err.is_temporary(), "{err}");
        assert!(
            err.message()
                .contains(&format!("kms:Sign on key {KEY_ARN} failed ({code}: ")),
            "{err}"
        );
        assert!(
            err.hint().unwrap().contains("cancel-key-deletion"),
            "{err:?}"
        );
        assert_eq!(kms_targets(&server), ["TrentService.Sign"], "not retried");
    }
}
