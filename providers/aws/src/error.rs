//! SDK errors (Secrets Manager's and KMS's) converted to rekey's error kinds at the crate's edge.
//! Messages name the action and the secret or key, never a secret value; AWS's own messages never
//! contain values either.

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_secretsmanager::config::http::HttpResponse;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use rekey_api::{Error, ErrorKind};

/// Which AWS service answered: how messages and hints name its actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Service {
    SecretsManager,
    Kms,
}

impl Service {
    /// The IAM action prefix (`secretsmanager:GetSecretValue`, `kms:Sign`).
    fn iam(self) -> &'static str {
        match self {
            Service::SecretsManager => "secretsmanager",
            Service::Kms => "kms",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Service::SecretsManager => "Secrets Manager",
            Service::Kms => "KMS",
        }
    }
}

/// How an SDK call failed, before it becomes an [`Error`].
pub(crate) struct SdkFailure {
    /// The AWS error code, e.g. `ResourceNotFoundException`, for service errors.
    pub(crate) code: Option<String>,
    /// The converted error.
    pub(crate) error: Error,
}

impl SdkFailure {
    /// Whether AWS said the secret (or the version asked for), the key or the alias does not
    /// exist.
    pub(crate) fn not_found(&self) -> bool {
        matches!(
            self.code.as_deref(),
            Some("ResourceNotFoundException" | "NotFoundException")
        )
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

    /// Whether KMS said the alias (or key) to be created exists already.
    pub(crate) fn exists(&self) -> bool {
        self.code.as_deref() == Some("AlreadyExistsException")
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

/// The error code of an answer whose body is not AWS JSON but an XML `ErrorResponse` (IAM's
/// refusal in front of a JSON service can take that form; moto's IAM enforcement answers so).
fn xml_code(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<Code>")? + "<Code>".len();
    let len = text[start..].find("</Code>")?;
    Some(text[start..start + len].to_string())
}

/// Converts `err` from `action` on `what` `name` (`secret rekey/billing`, `key arn:…`) of
/// `service`; `store` is the store's (or custody's) display label.
pub(crate) fn failure<E>(
    service: Service,
    store: &str,
    action: &str,
    (what, name): (&str, &str),
    err: SdkError<E, HttpResponse>,
) -> SdkFailure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let shown = match service {
        Service::SecretsManager => action.to_string(),
        Service::Kms => format!("kms:{action}"),
    };
    let at = format!("{store}: {shown} on {what} {name}");
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().map(str::to_string).or_else(|| {
        err.raw_response()
            .and_then(|r| r.body().bytes())
            .and_then(xml_code)
    });
    let iam = service.iam();
    let error = match &err {
        SdkError::ServiceError(_) => {
            let detail = match (&code, err.message()) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.clone(),
                _ => format!("HTTP {}", status.unwrap_or_default()),
            };
            let message = format!("{at} failed ({detail})");
            match (service, code.as_deref().unwrap_or_default()) {
                (_, "ResourceNotFoundException" | "NotFoundException") => {
                    Error::new(ErrorKind::NotFound, message)
                }
                (_, "AccessDeniedException" | "AccessDenied") => {
                    // A key that does not exist yet cannot be named in a policy.
                    let resource = if (service, action) == (Service::Kms, "CreateKey") {
                        "\"*\" (it cannot be limited to a key)"
                    } else {
                        name
                    };
                    Error::new(ErrorKind::PermissionDenied, message).with_hint(format!(
                        "grant {iam}:{action} on {resource} (see the minimal IAM policy in rekey-aws's README)"
                    ))
                }
                (
                    _,
                    "UnrecognizedClientException"
                    | "InvalidClientTokenId"
                    | "InvalidSignatureException"
                    | "SignatureDoesNotMatch"
                    | "ExpiredTokenException"
                    | "ExpiredToken",
                ) => Error::new(ErrorKind::Unauthenticated, message).with_hint(
                    "the AWS credentials were rejected; refresh them (aws sts get-caller-identity shows what the chain finds)",
                ),
                (
                    Service::SecretsManager,
                    "InvalidParameterException"
                    | "ResourceExistsException"
                    | "PreconditionNotMetException",
                ) => Error::new(ErrorKind::Conflict, message)
                    .with_hint("another writer changed this secret; re-read its state (rekey status) and retry"),
                (Service::SecretsManager, "InvalidRequestException") => {
                    Error::new(ErrorKind::Conflict, message).with_hint(
                        "the secret may be scheduled for deletion: aws secretsmanager restore-secret",
                    )
                }
                (Service::SecretsManager, "DecryptionFailure" | "EncryptionFailure") => {
                    Error::new(ErrorKind::PermissionDenied, message)
                        .with_hint("allow kms:Decrypt / kms:GenerateDataKey on the secret's KMS key")
                }
                (Service::SecretsManager, "LimitExceededException") => {
                    Error::new(ErrorKind::Unavailable, message).with_hint(
                        "a Secrets Manager quota was reached: versions per secret (retry later, once old versions expire) or 20 staging labels per secret (destroy old discarded generations, labelled REKEY_DISCARDED_G<n>)",
                    )
                }
                (Service::Kms, "AlreadyExistsException") => Error::new(ErrorKind::Conflict, message)
                    .with_hint("another runner created this alias; re-read the credential's state (rekey status) and retry"),
                (Service::Kms, "DisabledException" | "KMSInvalidStateException") => {
                    Error::new(ErrorKind::Conflict, message).with_hint(
                        "the key is disabled or scheduled for deletion (a destroyed generation); aws kms describe-key shows its state, and cancel-key-deletion then enable-key bring back a key destroyed by mistake",
                    )
                }
                (Service::Kms, "MalformedPolicyDocumentException") => {
                    Error::new(ErrorKind::Config, message).with_hint(
                        "fix kms_key_policy_file: KMS refuses a key policy that is not valid or that would not let this principal manage the key",
                    )
                }
                (Service::Kms, "LimitExceededException") => {
                    Error::new(ErrorKind::Unavailable, message).with_hint(
                        "a KMS quota was reached (customer managed keys or aliases per account and region); destroy unused keys or ask AWS for a higher quota",
                    )
                }
                (
                    Service::Kms,
                    "KMSInternalException" | "DependencyTimeoutException" | "KeyUnavailableException",
                ) => Error::new(ErrorKind::Unavailable, message).temporary(),
                (
                    _,
                    "ThrottlingException" | "InternalServiceError" | "InternalFailure"
                    | "ServiceUnavailable" | "RequestTimeout",
                ) => Error::new(ErrorKind::Unavailable, message).temporary(),
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
                format!("{at}: {} did not answer", service.title()),
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
