//! The request log `-v` and `-vv` promise, for the SDK's requests: each request's method, host,
//! path and operation at info before it is sent, and its status at debug once answered. Never a
//! query, another header (the signature) or a body (the key).

use aws_sdk_secretsmanager::config::interceptors::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_secretsmanager::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_secretsmanager::error::BoxError;

/// Logs every attempt of every operation (retries included).
#[derive(Debug)]
pub(crate) struct RequestLog;

/// `METHOD host/path (Operation)` of a request: no scheme, userinfo or query.
pub(crate) fn request_line(method: &str, uri: &str, target: Option<&str>) -> String {
    let rest = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let operation = target
        .and_then(|t| t.rsplit('.').next())
        .map_or_else(String::new, |op| format!(" ({op})"));
    format!("{method} {rest}{operation}")
}

impl Intercept for RequestLog {
    fn name(&self) -> &'static str {
        "rekey request log"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        let target = request.headers().get("x-amz-target");
        tracing::info!(
            "request {}",
            request_line(request.method(), request.uri(), target)
        );
        Ok(())
    }

    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        tracing::debug!("answer {}", context.response().status().as_u16());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_line_names_the_operation_and_never_the_query() {
        assert_eq!(
            request_line(
                "POST",
                "https://secretsmanager.us-east-1.amazonaws.com/?X-Amz-Signature=abc",
                Some("secretsmanager.GetSecretValue")
            ),
            "POST secretsmanager.us-east-1.amazonaws.com/ (GetSecretValue)"
        );
    }
}
