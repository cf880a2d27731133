//! The service sections: `[run]`'s API budget, `[daemon]` and `[alerts]` replicas, `[agent]`.

use super::tests::GOOD;
use super::*;
use std::path::Path;
use std::time::Duration;

#[test]
fn the_api_budget_share_is_a_share_above_zero_and_at_most_one() {
    let load = |share: &str| {
        parse(
            &format!("{GOOD}\n[run]\napi_budget_share = {share}\n"),
            Path::new("rekey.toml"),
        )
    };
    assert_eq!(load("0.5").unwrap().run.api_budget_share, 0.5);
    assert_eq!(load("1.0").unwrap().run.api_budget_share, 1.0);
    for bad in ["0.0", "1.5", "-0.2"] {
        let e = load(bad).unwrap_err().to_string();
        assert!(
            e.contains(&format!(
                "rekey.toml:23:20: run.api_budget_share = {}",
                bad.parse::<f64>().unwrap()
            )) && e.contains("above 0 and at most 1"),
            "{bad}: {e}"
        );
    }
}

/// `[daemon] coordination_store` and `[alerts] state_store` name a declared store (else an error
/// at the value); the coordination store defaults to the first credential's primary store; the
/// names of the leader lease and the alerts' state are reserved.
#[test]
fn replicas_coordinate_in_a_declared_store_under_reserved_names() {
    let config = parse(GOOD, Path::new("rekey.toml")).unwrap();
    assert_eq!(config.coordination_store(), Some("local"));
    assert!(config.alerts.is_none());
    let chosen = GOOD.to_string()
        + "[stores.shared]\nkind = \"file\"\npath = \"shared\"\n[daemon]\ncoordination_store = \"shared\"\n[alerts]\nstate_store = \"shared\"\n";
    let config = parse(&chosen, Path::new("rekey.toml")).unwrap();
    assert_eq!(config.coordination_store(), Some("shared"));
    assert_eq!(
        config.alerts.unwrap().state_store.as_deref(),
        Some("shared")
    );
    let unknown = GOOD.to_string()
        + "[daemon]\ncoordination_store = \"nowhere\"\n[alerts]\nstate_store = \"elsewhere\"\n";
    let err = parse(&unknown, Path::new("rekey.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rekey.toml:22:22: daemon.coordination_store: unknown store 'nowhere'"),
        "{err}"
    );
    assert!(
        err.contains("rekey.toml:24:15: alerts.state_store: unknown store 'elsewhere'"),
        "{err}"
    );
    for reserved in ["_daemon", "_alerts"] {
        let text = GOOD.replace(
            "[credentials.billing]",
            &format!("[credentials.{reserved}]"),
        );
        let err = parse(&text, Path::new("rekey.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("credentials.{reserved}: '{reserved}' is reserved")),
            "{err}"
        );
    }
}

/// `[agent]`: a socket (with an optional group) or loopback HTTP with a bearer file, never both;
/// the credentials it serves must be configured ones (default: all).
#[test]
fn the_agent_listens_on_a_socket_or_loopback_http_with_a_bearer() {
    let with = |agent: &str| format!("{GOOD}\n[agent]\n{agent}\n");
    let config = parse(
        &with("socket = \"run/agent.sock\"\ngroup = \"integrations\""),
        Path::new("/etc/rekey/rekey.toml"),
    )
    .unwrap();
    let agent = config.agent.unwrap();
    assert_eq!(agent.credentials, ["billing"]);
    assert_eq!(agent.refresh, Duration::from_secs(5));
    match agent.listen {
        AgentListen::Socket { path, group } => {
            assert_eq!(path, Path::new("/etc/rekey/run/agent.sock"));
            assert_eq!(group.as_deref(), Some("integrations"));
        }
        other => panic!("{other:?}"),
    }
    let config = parse(
        &with("listen = \"127.0.0.1:9818\"\nbearer_file = \"agent.bearer\"\ncredentials = [\"billing\"]\nrefresh_secs = 60"),
        Path::new("/etc/rekey/rekey.toml"),
    )
    .unwrap();
    let agent = config.agent.unwrap();
    assert_eq!(agent.refresh, Duration::from_secs(60));
    assert!(matches!(
        agent.listen,
        AgentListen::Http { ref bearer_file, .. } if bearer_file == Path::new("/etc/rekey/agent.bearer")
    ));
    // [agent] is line 22.
    for (agent, expected) in [
        (
            "group = \"x\"",
            "rekey.toml:22:1: agent: set exactly one of socket = \"PATH\"",
        ),
        (
            "socket = \"a.sock\"\nlisten = \"127.0.0.1:1\"",
            "rekey.toml:22:1: agent: set exactly one of socket",
        ),
        (
            "listen = \"10.0.0.1:9818\"\nbearer_file = \"b\"",
            "rekey.toml:23:10: agent.listen '10.0.0.1:9818' is not a loopback address",
        ),
        (
            "listen = \"127.0.0.1:9818\"",
            "rekey.toml:23:10: agent.listen needs bearer_file",
        ),
        (
            "listen = \"127.0.0.1:9818\"\nbearer_file = \"b\"\ngroup = \"x\"",
            "rekey.toml:25:9: agent: 'group' does not apply to HTTP",
        ),
        (
            "socket = \"a.sock\"\nbearer_file = \"b\"",
            "rekey.toml:24:15: agent: 'bearer_file' does not apply to a Unix socket",
        ),
        (
            "socket = \"a.sock\"\ncredentials = [\"billing\", \"nope\"]",
            "rekey.toml:24:27: agent.credentials: unknown credential 'nope'",
        ),
        (
            "socket = \"a.sock\"\nrefresh_secs = 0",
            "rekey.toml:24:16: agent.refresh_secs = 0 is out of range; use 1..=3600",
        ),
    ] {
        let err = parse(&with(agent), Path::new("rekey.toml")).unwrap_err();
        assert!(err.to_string().contains(expected), "{agent}: {err}");
    }
}
