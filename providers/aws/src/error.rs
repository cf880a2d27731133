//! SDK errors converted to rekey's error kinds at the store's edge. Messages name the action and
//! the secret, never a secret value; AWS's own messages never contain values either.

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_secretsmanager::config::http::HttpResponse;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use rekey_api::{Error, ErrorKind};

/// How an SDK call failed, before it becomes an [`Error`].
pub(crate) struct SdkFailure {
    /// The AWS error code, e.g. `ResourceNotFoundException`, for service errors.
    pub(crate) code: Option<String>,
    /// The converted error.
    pub(crate) error: Error,
}

impl SdkFailure {
    /// Whether AWS said the secret (or the version asked for) does not exist.
    pub(crate) fn not_found(&self) -> bool {
        self.code.as_deref() == Some("ResourceNotFoundException")
    }

    /// For reads where a missing secret or version is an answer, not an error: `Ok(None)` for
    /// ResourceNotFound, the converted error otherwise.
    pub(crate) fn missing_is_none<T>(self) -> Result<Option<T>, rekey_api::Error> {
        if self.not_found() {
            Ok(None)
        } else {
            Err(self.error)
        }
    }

    /// Whether a label move or a creation lost a race: `RemoveFromVersionId` no longer holds the
    /// label, or the secret was created in between.
    pub(crate) fn stale(&self) -> bool {
        matches!(
            self.code.as_deref(),
            Some("InvalidParameterException" | "ResourceExistsException")
        )
    }
}

/// Whether the chain below `err` holds a credentials-provider failure (nothing found in the
/// default chain, an expired SSO/web-identity session).
fn credentials_failure(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.downcast_ref::<CredentialsError>().is_some() {
            return true;
        }
        next = e.source();
    }
    false
}

/// Converts `err` from `action` on `secret`; `store` is the store's display label.
pub(crate) fn failure<E>(
    store: &str,
    action: &str,
    secret: &str,
    err: SdkError<E, HttpResponse>,
) -> SdkFailure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let at = format!("{store}: {action} on secret {secret}");
    let code = err.code().map(str::to_string);
    let status = err.raw_response().map(|r| r.status().as_u16());
    let error = match &err {
        SdkError::ServiceError(_) => {
            let detail = match (&code, err.message()) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.clone(),
                _ => format!("HTTP {}", status.unwrap_or_default()),
            };
            let message = format!("{at} failed ({detail})");
            match code.as_deref().unwrap_or_default() {
                "ResourceNotFoundException" => Error::new(ErrorKind::NotFound, message),
                "AccessDeniedException" => Error::new(ErrorKind::PermissionDenied, message)
                    .with_hint(format!(
                        "grant secretsmanager:{action} on {secret} (see the minimal IAM policy in rekey-aws's README)"
                    )),
                "UnrecognizedClientException"
                | "InvalidClientTokenId"
                | "InvalidSignatureException"
                | "SignatureDoesNotMatch"
                | "ExpiredTokenException"
                | "ExpiredToken" => Error::new(ErrorKind::Unauthenticated, message).with_hint(
                    "the AWS credentials were rejected; refresh them (aws sts get-caller-identity shows what the chain finds)",
                ),
                "InvalidParameterException"
                | "ResourceExistsException"
                | "PreconditionNotMetException" => Error::new(ErrorKind::Conflict, message)
                    .with_hint("another writer changed this secret; re-read its state (rekey status) and retry"),
                "InvalidRequestException" => Error::new(ErrorKind::Conflict, message).with_hint(
                    "the secret may be scheduled for deletion: aws secretsmanager restore-secret",
                ),
                "DecryptionFailure" | "EncryptionFailure" => {
                    Error::new(ErrorKind::PermissionDenied, message)
                        .with_hint("allow kms:Decrypt / kms:GenerateDataKey on the secret's KMS key")
                }
                "ThrottlingException" | "InternalServiceError" | "InternalFailure"
                | "ServiceUnavailable" | "RequestTimeout" => {
                    Error::new(ErrorKind::Unavailable, message).temporary()
                }
                "LimitExceededException" => Error::new(ErrorKind::Unavailable, message).with_hint(
                    "a Secrets Manager quota was reached: versions per secret (retry later, once old versions expire) or 20 staging labels per secret (destroy old discarded generations, labelled REKEY_DISCARDED_G<n>)",
                ),
                _ if status.is_some_and(|s| s == 429 || s >= 500) => {
                    Error::new(ErrorKind::Unavailable, message).temporary()
                }
                _ => Error::new(ErrorKind::Unexpected, message),
            }
        }
        _ if credentials_failure(&err) => Error::new(
            ErrorKind::Unauthenticated,
            format!("{at}: no usable AWS credentials"),
        )
        .with_hint(
            "set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run where a role is attached (web identity, instance profile)",
        ),
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Error::new(
                ErrorKind::Unavailable,
                format!("{at}: Secrets Manager did not answer"),
            )
            .temporary()
        }
        _ => Error::new(ErrorKind::Unexpected, format!("{at}: the request failed")),
    };
    SdkFailure {
        code,
        error: error.with_source(err),
    }
}
