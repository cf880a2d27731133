//! The one rule for every URL rekey sends a secret or a key to: https, or plain http only for
//! this machine.

use crate::{Error, ErrorKind, Result};
use url::Url;

/// A configured URL that passed [`endpoint`], with its host: the only part of it messages show
/// (a path or query may carry a token, as a Slack webhook URL's does).
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The parsed URL (reqwest's `Url` is this type).
    pub url: Url,
    /// Its host, IPv6 in brackets.
    pub host: String,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The host only: the path and query may be secret.
        f.debug_struct("Endpoint")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// Parses `text`, the setting `what` of `label` (e.g. `url` of `webhook consumer 'etl'`): https
/// with a host, or plain http only when the host is this machine ([`is_loopback_host`]: test
/// receivers, the org emulator, a dev Vault), so secrets never cross a network unencrypted.
///
/// # Errors
/// `Config`, starting with `label` and naming `what`, never the text: a URL may carry a token.
/// Callers add their own constraints on top (Vault's address takes no path).
pub fn endpoint(text: &str, what: &str, label: &str) -> Result<Endpoint> {
    let url = Url::parse(text.trim()).map_err(|e| {
        // url's errors describe the shape ("relative URL without a base"), never the input.
        Error::new(
            ErrorKind::Config,
            format!("{label}: {what} is not a URL: {e}"),
        )
        .with_hint(format!(
            "set {what} to a URL of the form https://host[:port][/path]"
        ))
    })?;
    let host = url.host_str().unwrap_or_default().to_string();
    match url.scheme() {
        "https" if !host.is_empty() => Ok(Endpoint { url, host }),
        "http" if is_loopback_host(&host) => Ok(Endpoint { url, host }),
        _ => Err(Error::new(
            ErrorKind::Config,
            format!(
                "{label}: {what} must use https (plain http is allowed only for loopback hosts)"
            ),
        )
        .with_hint("use https:// (plain http is accepted only for 127.0.0.1, ::1 and localhost)")),
    }
}

/// Whether `host` (a URL's host, IPv6 with or without brackets) is this machine. Providers accept
/// plain `http://` only for such hosts, so secrets never cross a network unencrypted; anything
/// else must be `https://` with verified TLS.
pub fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_machine_counts_as_loopback() {
        for host in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "[::1]",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "10.0.0.1",
            "vault.example",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn https_anywhere_http_only_on_loopback_and_errors_never_quote_the_url() {
        for ok in [
            "https://hooks.slack.com/services/T0/B0/SECRET",
            " https://vault.example:8200/ ",
            "http://127.0.0.1:8080/x",
            "http://localhost:1",
            "http://[::1]:9/",
        ] {
            let e = endpoint(ok, "url", "test").unwrap();
            assert!(!e.host.is_empty(), "{ok}");
        }
        assert_eq!(
            endpoint("https://hooks.slack.com/services/T0/B0/SECRET", "url", "x")
                .unwrap()
                .host,
            "hooks.slack.com"
        );
        assert_eq!(
            endpoint("http://[::1]:9/", "url", "x").unwrap().host,
            "[::1]"
        );
        for bad in [
            "http://SECRET.example/x",
            "http://127.0.0.1.SECRET.example",
            "ftp://127.0.0.1/SECRET",
            "https://",
            "127.0.0.1:5000/SECRET",
            "not a url SECRET",
            "",
        ] {
            let err = endpoint(bad, "webhook_url", "slack channel 'ops'").unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{bad}");
            let text = format!("{err} {:?}", err.hint());
            assert!(
                text.starts_with("slack channel 'ops': webhook_url "),
                "{text}"
            );
            assert!(!text.contains("SECRET"), "the URL leaked: {text}");
        }
        let shown = format!(
            "{:?}",
            endpoint("https://h.example/SECRET", "u", "x").unwrap()
        );
        assert!(!shown.contains("SECRET"), "{shown}");
    }
}
