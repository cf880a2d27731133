//! The request log `-v` and `-vv` promise: each request's method, host and path at info before
//! it goes out, and its status and time at debug when it is answered. Never the query (it may
//! carry a token or a filter on secrets), a header or a body.

use std::time::Instant;

/// `METHOD host[:port]/path` of `url`, without userinfo, query or fragment.
pub fn request_line(method: &str, url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("?");
            match u.port() {
                Some(port) => format!("{method} {host}:{port}{}", u.path()),
                None => format!("{method} {host}{}", u.path()),
            }
        }
        Err(_) => format!("{method} (unparsable URL)"),
    }
}

/// Logs a request about to be sent (info: `-v`).
pub fn log_request(method: &str, url: &str) {
    tracing::info!("request {}", request_line(method, url));
}

/// Logs what a request got (debug: `-vv`): its status, or that it got none, and how long it took.
pub fn log_answer(line: &str, status: Option<u16>, started: Instant) {
    let millis = started.elapsed().as_millis();
    match status {
        Some(status) => tracing::debug!("answer {status} to {line} in {millis} ms"),
        None => tracing::debug!("no answer to {line} after {millis} ms"),
    }
}

/// Sends `request` as `RequestBuilder::send` does, logging it (see the module docs).
pub async fn send(request: reqwest::RequestBuilder) -> reqwest::Result<reqwest::Response> {
    let (client, request) = request.build_split();
    let request = request?;
    let line = request_line(request.method().as_str(), request.url().as_str());
    tracing::info!("request {line}");
    let started = Instant::now();
    let answer = client.execute(request).await;
    log_answer(
        &line,
        answer.as_ref().ok().map(|r| r.status().as_u16()),
        started,
    );
    answer
}

/// [`send`] as a method: `builder.send_logged().await` where `builder.send().await` was.
pub trait SendLogged {
    /// Sends the request, logging it.
    fn send_logged(self) -> impl Future<Output = reqwest::Result<reqwest::Response>> + Send;
}

impl SendLogged for reqwest::RequestBuilder {
    fn send_logged(self) -> impl Future<Output = reqwest::Result<reqwest::Response>> + Send {
        send(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_line_has_no_query_userinfo_or_fragment() {
        assert_eq!(
            request_line(
                "GET",
                "https://u:p@acme.my.salesforce.com/services/data/v67.0/query?q=SELECT+Id#x"
            ),
            "GET acme.my.salesforce.com/services/data/v67.0/query"
        );
        assert_eq!(
            request_line("POST", "http://127.0.0.1:8200/v1/secret/data/a"),
            "POST 127.0.0.1:8200/v1/secret/data/a"
        );
    }
}
