//! The config tests: defaults, every refusal with its position, the annotated example.

use super::orgs::DEFAULT_API_VERSION;
use super::*;
use crate::pki::KeyAlgorithm;
use std::time::Duration;

/// A minimal valid config (one org, one file store, one Connected App credential).
pub(crate) const GOOD: &str = r#"
[orgs.acme]
login_url = "https://acme.my.salesforce.com"
[orgs.acme.admin]
auth = "jwt"
consumer_key = "3MVG9admin"
username = "admin@acme.example"
key_file = "admin.key"

[stores.local]
kind = "file"
path = "keys"

[credentials.billing]
org = "acme"
app_kind = "connected_app"
app = "Billing_Sync"
username = "integration@acme.example"
store = "local"
subject = { cn = "billing-sync", o = "Acme" }
"#;

#[test]
fn a_minimal_config_gets_the_documented_defaults() {
    let config = parse(GOOD, Path::new("/etc/rekey/rekey.toml")).unwrap();
    let cred = &config.credentials["billing"];
    assert_eq!(cred.cert.algorithm, KeyAlgorithm::Rsa2048);
    assert_eq!(cred.cert.validity_days, 365);
    assert_eq!(
        (
            cred.request_timeout,
            cred.resume_max_age,
            cred.token_cache,
            cred.on_verify_failure
        ),
        (
            Duration::from_secs(60),
            Duration::from_secs(24 * 3600),
            Duration::from_secs(600),
            OnVerifyFailure::Rollback
        )
    );
    assert_eq!(
        cred.policy,
        Policy {
            warn_days: 28,
            critical_days: 14,
            max_key_age_days: None
        }
    );
    let org = &config.orgs["acme"];
    assert_eq!(org.audience, "https://acme.my.salesforce.com");
    assert_eq!(org.api_version, DEFAULT_API_VERSION);
    match &org.admin {
        AdminConfig::Jwt {
            key_file, origin, ..
        } => {
            assert_eq!(key_file, Path::new("/etc/rekey/admin.key"));
            assert_eq!(origin, "/etc/rekey/rekey.toml:8:12");
        }
        other => panic!("expected jwt, got {other:?}"),
    }
    assert!(
        matches!(&config.stores["local"], StoreConfig::File(file) if file.path == Path::new("/etc/rekey/keys"))
    );
    assert_eq!(cred.schedule.rotate_every, None);
    assert_eq!(cred.schedule.renew_before, chrono::Duration::days(30));
    assert!(!cred.schedule.heal_drift && cred.schedule.windows.is_empty());
    assert!(config.alerts.is_none());
    assert_eq!(config.run.concurrency, 4);
    assert_eq!(config.run.api_budget_share, 0.8);
    assert_eq!(config.daemon.listen.to_string(), "127.0.0.1:9817");
    assert_eq!(config.daemon.interval, Duration::from_secs(3600));
}

#[test]
fn windows_that_never_open_or_open_too_rarely_are_refused_at_load() {
    let with = |extra: &str| GOOD.to_string() + extra;
    let err = |text: String| {
        parse(&text, Path::new("rekey.toml"))
            .unwrap_err()
            .to_string()
    };
    let never = err(with(
        "[[credentials.billing.windows]]\ncron = \"0 0 30 2 *\"\nduration_minutes = 60\n",
    ));
    assert!(
        never.starts_with("rekey.toml:21:1: the windows (0 0 30 2 * UTC for 1h) never open"),
        "{never}"
    );
    // Once a year, but a certificate is renewed only 30 days before it expires.
    let yearly = err(with(
        "[[credentials.billing.windows]]\ncron = \"0 2 1 6 *\"\ntimezone = \"Europe/Berlin\"\nduration_minutes = 240\n",
    ));
    assert!(
        yearly.contains("(0 2 1 6 * Europe/Berlin for 4h) stay closed for up to 36")
            && yearly.contains("days at a stretch, but renew_before_days = 30"),
        "{yearly}"
    );
    let bad = err(with(
        "[[credentials.billing.windows]]\ncron = \"0 25 * * *\"\ntimezone = \"Europe/Berln\"\nduration_minutes = 0\n",
    ));
    assert!(bad.contains("rekey.toml:21:1: window: "), "{bad}");
    // A weekly window is fine with the default renew_before_days, in any zone.
    let weekly = with(
        "[[credentials.billing.windows]]\ncron = \"0 2 * * SAT\"\ntimezone = \"America/New_York\"\nduration_minutes = 240\n",
    );
    let config = parse(&weekly, Path::new("rekey.toml")).unwrap();
    assert_eq!(config.credentials["billing"].schedule.windows.len(), 1);
    let too_late = err(GOOD.replace(
        "store = \"local\"",
        "store = \"local\"\nvalidity_days = 30\nrenew_before_days = 30",
    ));
    assert!(
        too_late.contains("renew_before_days = 30 is not below validity_days = 30"),
        "{too_late}"
    );
}

#[test]
fn alert_channels_take_secrets_from_env_or_file_only_and_name_misplaced_keys() {
    let text = GOOD.to_string()
        + r#"
[alerts]
renotify_hours = 6

[alerts.channels.ops]
kind = "slack"
webhook_url_env = "SLACK_URL"

[alerts.channels.pager]
kind = "pagerduty"
routing_key_file = "pd.key"
min_severity = "critical"

[alerts.channels.hook]
kind = "webhook"
url = "https://hooks.example/rekey"
secret_env = "HOOK_SECRET"
"#;
    let config = parse(&text, Path::new("/etc/rekey/rekey.toml")).unwrap();
    let alerts = config.alerts.unwrap();
    assert_eq!(alerts.state_file, Path::new("/etc/rekey/rekey-alerts.json"));
    assert_eq!(alerts.renotify, Duration::from_secs(6 * 3600));
    let names: Vec<(&str, rekey_api::Severity)> = alerts
        .channels
        .iter()
        .map(|c| (c.name.as_str(), c.min_level))
        .collect();
    assert_eq!(
        names,
        [
            ("hook", rekey_api::Severity::Info),
            ("ops", rekey_api::Severity::Info),
            ("pager", rekey_api::Severity::Critical)
        ]
    );
    assert!(matches!(
        &alerts.channels[2].kind,
        ChannelKindSettings::PagerDuty { routing_key: SecretSource::File(f), events_url: None }
            if f == Path::new("/etc/rekey/pd.key")
    ));

    let bad = GOOD.to_string()
        + r#"
[alerts.channels.ops]
kind = "slack"
webhook_url_env = "SLACK_URL"
webhook_url_file = "slack.url"
url = "https://x.example"

[alerts.channels.hook]
kind = "webhook"
url = "http://hooks.example/rekey"
secret_env = "S"
min_severity = "loud"

[alerts.channels.mail]
kind = "email"
"#;
    let err = parse(&bad, Path::new("rekey.toml"))
        .unwrap_err()
        .to_string();
    for expected in [
        "rekey.toml:35:8: unknown channel kind 'email'",
        "alerts.channels.ops: set exactly one of webhook_url_env = \"VARIABLE\" or webhook_url_file = \"PATH\"",
        "alerts.channels.ops: 'url' does not apply to slack",
        "alerts.channels.hook: url must use https (plain http is allowed only for loopback hosts)",
        "unknown min_severity 'loud'",
    ] {
        assert!(err.contains(expected), "{expected}\n{err}");
    }
}

#[test]
fn token_cache_secs_may_be_zero_but_not_over_a_day() {
    let with = |secs: &str| {
        GOOD.replace(
            "store = \"local\"",
            &format!("store = \"local\"\ntoken_cache_secs = {secs}"),
        )
    };
    let config = parse(&with("0"), Path::new("rekey.toml")).unwrap();
    assert_eq!(config.credentials["billing"].token_cache, Duration::ZERO);
    for bad in ["-1", "86401"] {
        let err = parse(&with(bad), Path::new("rekey.toml")).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("rekey.toml:20:20: token_cache_secs = {bad} is out of range; use 0..=86400")
        );
    }
}

#[test]
fn an_unknown_key_names_file_line_and_column() {
    let text = GOOD.replace("store = \"local\"", "store = \"local\"\nvalidity = 30");
    let err = parse(&text, Path::new("rekey.toml")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(
        err.to_string()
            .starts_with("rekey.toml:20:1: unknown field `validity`"),
        "{err}"
    );
}

#[test]
fn every_bad_value_is_reported_at_once_with_its_position_and_fix() {
    let text = GOOD
            .replace("org = \"acme\"", "org = \"acm\"")
            .replace(
                "https://acme.my.salesforce.com",
                "http://acme.my.salesforce.com",
            )
            .replace(
                "store = \"local\"",
                "store = \"local\"\nkey_algorithm = \"ec-256\"\nvalidity_days = 0\non_verify_failure = \"retry\"\nresume_max_age_hours = 0",
            );
    let err = parse(&text, Path::new("rekey.toml"))
        .unwrap_err()
        .to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines,
        [
            "rekey.toml:3:13: orgs.acme: login_url must use https (plain http is allowed only for loopback hosts)",
            "rekey.toml:15:7: unknown org 'acm'; defined orgs: acme",
            "rekey.toml:20:17: unknown key_algorithm 'ec-256'; use one of rsa-2048, rsa-3072, rsa-4096",
            "rekey.toml:21:17: validity_days = 0 is out of range; use 1..=3650",
            "rekey.toml:23:24: resume_max_age_hours = 0 is out of range; use 1..=8760",
            "rekey.toml:22:21: unknown on_verify_failure 'retry'; use \"rollback\" or \"keep\"",
        ]
    );
}

#[test]
fn a_vault_store_takes_defaults_and_leaves_unset_connection_settings_to_the_environment() {
    let text = GOOD.replace(
            "[stores.local]\nkind = \"file\"\npath = \"keys\"",
            "[stores.local]\nkind = \"vault\"\nauth = { method = \"approle\", role_id = \"r-1\", secret_id_env = \"SID\" }",
        );
    let config = parse(&text, Path::new("/etc/rekey/rekey.toml")).unwrap();
    let StoreConfig::Vault(v) = &config.stores["local"] else {
        panic!("expected a vault store")
    };
    assert_eq!(
        (
            v.address.as_deref(),
            v.mount.as_str(),
            v.path_prefix.as_str()
        ),
        (None, "secret", "rekey")
    );
    assert_eq!(
        (v.max_versions, v.lock_ttl, v.tls_skip_verify),
        (10, Duration::from_secs(1800), false)
    );
    assert!(matches!(
        &v.auth,
        rekey_vault::VaultAuthConfig::AppRole { mount, role_id, secret_id: SecretSource::Env(var) }
            if mount == "approle" && role_id == "r-1" && var == "SID"
    ));
    // The position of its `kind`, inside the `[stores.vault]` table.
    assert_eq!(v.origin, "/etc/rekey/rekey.toml:11:8");
}

#[test]
fn vault_settings_that_do_not_fit_are_named_not_ignored() {
    let text = GOOD.replace(
            "[stores.local]\nkind = \"file\"\npath = \"keys\"",
            "[stores.local]\nkind = \"vault\"\npath = \"keys\"\naddress = \"http://vault.example:8200\"\n\
             auth = { method = \"approle\", role_id = \"r\", jwt_path = \"/t\" }",
        );
    let err = parse(&text, Path::new("rekey.toml"))
        .unwrap_err()
        .to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines,
        [
            "rekey.toml:12:1: stores.local: 'path' does not apply to vault; its keys are kind, address, mount, path_prefix, namespace, ca_cert, ca_path, tls_skip_verify, max_versions, lock_ttl_secs, auth, transit_mount, key_prefix",
            "rekey.toml:13:11: stores.local: address must use https (plain http is allowed only for loopback hosts)",
            "rekey.toml:14:56: stores.local: 'jwt_path' does not apply to approle auth",
            "rekey.toml:14:8: stores.local.auth: set exactly one of secret_id_env = \"VARIABLE\" or secret_id_file = \"PATH\" (secrets are never written into rekey.toml)",
        ]
    );
}

#[test]
fn a_credential_names_one_store_or_a_list_with_the_primary_first() {
    let two = GOOD.replace("store = \"local\"", "stores = [\"local\", \"other\"]")
        + "\n[stores.other]\nkind = \"file\"\npath = \"other\"\n";
    let config = parse(&two, Path::new("r.toml")).unwrap();
    assert_eq!(config.credentials["billing"].stores, ["local", "other"]);

    let cases = [
        ("stores = []", "stores must name at least one store"),
        (
            "stores = [\"local\", \"local\"]",
            "store 'local' is listed twice",
        ),
        (
            "stores = [\"local\", \"nope\"]",
            "unknown store 'nope'; defined stores: local",
        ),
        (
            "store = \"local\"\nstores = [\"local\"]",
            "set exactly one of store",
        ),
    ];
    for (line, expected) in cases {
        let text = GOOD.replace("store = \"local\"", line);
        let err = parse(&text, Path::new("r.toml")).unwrap_err().to_string();
        assert!(err.contains(expected), "{line}: {err}");
    }
}

#[test]
fn consumers_take_documented_defaults_and_paths_relative_to_the_config() {
    let text = GOOD.to_string()
        + r#"
[[credentials.billing.consumers]]
name = "etl"
kind = "store"

[[credentials.billing.consumers]]
name = "middleware"
kind = "webhook"
url = "https://mw.example/rekey"
secret_file = "mw.secret"

[[credentials.billing.consumers]]
name = "reload"
kind = "exec"
command = ["hooks/reload.sh", "--fast"]

[[credentials.billing.consumers]]
name = "legacy"
kind = "file"
key_path = "legacy/key.pem"
cert_path = "/srv/legacy/cert.pem"

[[credentials.billing.consumers]]
name = "polled"
kind = "store"
status_url = "http://127.0.0.1:9000/status"
adopt_timeout_secs = 30
"#;
    let config = parse(&text, Path::new("/etc/rekey/rekey.toml")).unwrap();
    let cred = &config.credentials["billing"];
    assert_eq!(cred.on_adoption_failure, OnAdoptionFailure::Rollback);
    let c = &cred.consumers;
    assert_eq!(
        c.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["etl", "middleware", "reload", "legacy", "polled"]
    );
    assert!(
        c[..4]
            .iter()
            .all(|c| c.adopt_timeout == Duration::from_secs(300))
    );
    assert_eq!(c[4].adopt_timeout, Duration::from_secs(30));
    assert_eq!(c[0].origin, "/etc/rekey/rekey.toml:22:1");
    assert!(matches!(
        &c[0].kind,
        ConsumerKindSettings::Store { status_url: None }
    ));
    assert!(matches!(
        &c[1].kind,
        ConsumerKindSettings::Webhook { url, secret: SecretSource::File(f), status_url: None }
            if url == "https://mw.example/rekey" && f == Path::new("/etc/rekey/mw.secret")
    ));
    assert!(matches!(
        &c[2].kind,
        ConsumerKindSettings::Exec { command, deliver_key: DeliverKey::None, timeout }
            if command == &["/etc/rekey/hooks/reload.sh", "--fast"] && *timeout == Duration::from_secs(60)
    ));
    assert!(matches!(
        &c[3].kind,
        ConsumerKindSettings::File { key_path, cert_path }
            if key_path == Path::new("/etc/rekey/legacy/key.pem") && cert_path.as_deref() == Some(Path::new("/srv/legacy/cert.pem"))
    ));
    assert!(matches!(
        &c[4].kind,
        ConsumerKindSettings::Store { status_url: Some(u) } if u == "http://127.0.0.1:9000/status"
    ));

    let alert = GOOD.replace(
        "store = \"local\"",
        "store = \"local\"\non_adoption_failure = \"alert\"",
    ) + "\n[[credentials.billing.consumers]]\nname = \"x\"\nkind = \"exec\"\ncommand = [\"/bin/true\"]\ndeliver_key = \"stdin\"\ntimeout_secs = 5\n";
    let config = parse(&alert, Path::new("r.toml")).unwrap();
    let cred = &config.credentials["billing"];
    assert_eq!(cred.on_adoption_failure, OnAdoptionFailure::Alert);
    assert!(matches!(
        &cred.consumers[0].kind,
        ConsumerKindSettings::Exec { deliver_key: DeliverKey::Stdin, timeout, .. }
            if *timeout == Duration::from_secs(5)
    ));
}

#[test]
fn every_consumer_problem_is_reported_at_once_with_its_position() {
    let text = GOOD.replace(
        "store = \"local\"",
        "store = \"local\"\non_adoption_failure = \"retry\"",
    ) + r#"
[[credentials.billing.consumers]]
name = "hook"
kind = "webhook"
url = "http://mw.example/rekey"
secret_env = "S"
secret_file = "s.txt"
command = ["/bin/true"]

[[credentials.billing.consumers]]
name = "hook"
kind = "exec"
command = []
deliver_key = "argv"
timeout_secs = 0

[[credentials.billing.consumers]]
name = "bad name"
kind = "file"
key_path = "same.pem"
cert_path = "same.pem"

[[credentials.billing.consumers]]
name = "polled"
kind = "store"
adopt_timeout_secs = 60

[[credentials.billing.consumers]]
name = "x"
kind = "queue"

[[credentials.billing.consumers]]
name = "nocert"
kind = "file"
key_path = "k.pem"
status_url = "https://x.example/status"

[[credentials.billing.consumers]]
name = "nourl"
kind = "webhook"
secret_env = "S"
"#;
    let err = parse(&text, Path::new("rekey.toml"))
        .unwrap_err()
        .to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines,
        [
            "rekey.toml:29:1: credentials.billing.consumers 'hook': 'command' does not apply to webhook; its keys are name, kind, url, secret_env, secret_file, status_url, adopt_timeout_secs",
            "rekey.toml:26:7: credentials.billing.consumers 'hook': url must use https (plain http is allowed only for loopback hosts)",
            "rekey.toml:23:1: credentials.billing.consumers 'hook': set exactly one of secret_env = \"VARIABLE\" or secret_file = \"PATH\" (secrets are never written into rekey.toml)",
            "rekey.toml:32:8: consumer 'hook' is listed twice for credential 'billing'; names must be unique",
            "rekey.toml:34:11: credentials.billing.consumers 'hook': command must name a program",
            "rekey.toml:35:15: unknown deliver_key 'argv'; use \"none\", \"file\" or \"stdin\" (never the command line)",
            "rekey.toml:36:16: timeout_secs = 0 is out of range; use 1..=3600",
            "rekey.toml:39:8: consumer name 'bad name' must be letters, digits, '-', '_' or '.'",
            "rekey.toml:38:1: credentials.billing.consumers 'bad name': key_path and cert_path are the same file",
            "rekey.toml:47:22: credentials.billing.consumers 'polled': adopt_timeout_secs needs status_url (without it a store consumer has nothing to wait for)",
            "rekey.toml:51:8: unknown consumer kind 'queue'; use \"store\", \"webhook\", \"exec\" or \"file\"",
            "rekey.toml:57:1: credentials.billing.consumers 'nocert': 'status_url' does not apply to file; its keys are name, kind, key_path, cert_path",
            "rekey.toml:53:1: credentials.billing.consumers 'nocert': kind = \"file\" needs cert_path = \"PATH\"",
            "rekey.toml:59:1: credentials.billing.consumers 'nourl': kind = \"webhook\" needs url = \"https://…\"",
            "rekey.toml:20:23: unknown on_adoption_failure 'retry'; use \"rollback\" or \"alert\"",
        ]
    );
    // A key no kind has (a typo) is named where it is, with the keys its kind does have.
    let unknown = GOOD.to_string()
        + "\n[[credentials.billing.consumers]]\nname = \"a\"\nkind = \"store\"\nstatus = \"x\"\n";
    let err = parse(&unknown, Path::new("rekey.toml")).unwrap_err();
    assert_eq!(
        err.message(),
        "rekey.toml:25:1: credentials.billing.consumers 'a': 'status' does not apply to store; its keys are name, kind, status_url, adopt_timeout_secs"
    );
}

#[test]
fn loopback_http_is_allowed_for_the_emulator_only() {
    let text = GOOD.replace("https://acme.my.salesforce.com", "http://127.0.0.1:8080");
    assert!(parse(&text, Path::new("r.toml")).is_ok());
    let text = GOOD.replace(
        "https://acme.my.salesforce.com",
        "http://127.0.0.1.evil.example",
    );
    assert!(parse(&text, Path::new("r.toml")).is_err());
}

/// `src/config/rekey.example.toml` is the config reference: it must stay a config rekey
/// accepts, showing every kind of store, admin login, consumer and alert channel.
#[test]
fn the_annotated_example_config_is_accepted() {
    let config = parse(super::EXAMPLE, Path::new("/etc/rekey/rekey.toml"))
        .unwrap_or_else(|e| panic!("the example config is refused: {e}"));
    assert_eq!(
        config.credentials.keys().collect::<Vec<_>>(),
        ["billing", "etl", "payments"]
    );
    assert_eq!(
        config.credentials["etl"].kind,
        rekey_api::CredentialKind::ConsumerSecret
    );
    let kinds: Vec<&str> = config
        .stores
        .values()
        .map(|s| match (s, s.custody()) {
            (_, Some(custody)) => custody.name(),
            (StoreConfig::File { .. }, None) => "file",
            (StoreConfig::Vault(_), None) => "vault",
            (StoreConfig::Aws(_), None) => "aws",
        })
        .collect();
    assert_eq!(kinds, ["aws", "aws_kms", "file", "vault_transit", "vault"]);
    assert!(
        matches!(&config.stores["local"], StoreConfig::File(file) if file.path == Path::new("/etc/rekey/keys"))
    );
    assert!(matches!(
        &config.orgs["acme"].admin,
        AdminConfig::Jwt { key_file, .. } if key_file == Path::new("/etc/rekey/admin.key")
    ));
    assert!(matches!(
        config.orgs["uat"].admin,
        AdminConfig::AccessTokenEnv
    ));

    let billing = &config.credentials["billing"];
    assert_eq!(billing.stores, ["vault", "local"]);
    assert_eq!(billing.app_kind, AppKind::ConnectedApp);
    let consumers: Vec<&str> = billing
        .consumers
        .iter()
        .map(|c| match c.kind {
            ConsumerKindSettings::Webhook { .. } => "webhook",
            ConsumerKindSettings::Exec { .. } => "exec",
            ConsumerKindSettings::File { .. } => "file",
            ConsumerKindSettings::Store { .. } => "store",
        })
        .collect();
    assert_eq!(consumers, ["webhook", "exec", "file", "store"]);
    assert_eq!(billing.schedule.windows.len(), 1);
    assert_eq!(
        billing.schedule.rotate_every,
        Some(chrono::Duration::days(90))
    );
    assert_eq!(billing.policy.max_key_age_days, Some(180));

    // The second credential leaves everything optional out, so it shows the defaults.
    let payments = &config.credentials["payments"];
    assert_eq!(payments.app_kind, AppKind::ExternalClientApp);
    assert_eq!(payments.stores, ["aws"]);
    assert_eq!(payments.policy, Policy::default());
    assert!(payments.consumers.is_empty() && payments.schedule.windows.is_empty());

    let channels: Vec<&str> = config
        .alerts
        .as_ref()
        .expect("the example has [alerts]")
        .channels
        .iter()
        .map(|c| match c.kind {
            ChannelKindSettings::Slack { .. } => "slack",
            ChannelKindSettings::PagerDuty { .. } => "pagerduty",
            ChannelKindSettings::Webhook { .. } => "webhook",
        })
        .collect();
    assert_eq!(channels, ["webhook", "pagerduty", "slack"]);
    assert_eq!(config.run.concurrency, 4);
    assert_eq!(config.daemon.listen.to_string(), "127.0.0.1:9817");
}

/// Every key rekey accepts, in every section and for every kind, is shown in the example that
/// `rekey init` writes (set, or commented out as an alternative): the example is the reference,
/// so a key added without it fails here. Keys are read off the settings types themselves.
#[test]
fn every_key_rekey_accepts_appears_in_the_example() {
    use super::tables::fields_of;
    let sections: [(&str, &[&str]); 22] = [
        ("the top level", fields_of::<super::RawConfig>()),
        ("[orgs.NAME]", fields_of::<super::orgs::RawOrg>()),
        ("[orgs.NAME.admin]", fields_of::<super::orgs::RawAdmin>()),
        (
            "[credentials.NAME]",
            fields_of::<super::credentials::RawCredential>(),
        ),
        ("subject", fields_of::<super::credentials::RawSubject>()),
        ("policy", fields_of::<super::credentials::RawPolicy>()),
        ("window", fields_of::<super::credentials::RawWindow>()),
        ("[run]", fields_of::<super::service::RawRun>()),
        ("[daemon]", fields_of::<super::service::RawDaemon>()),
        ("[agent]", fields_of::<super::agent::RawAgent>()),
        ("[alerts]", fields_of::<super::alerts::RawAlerts>()),
        ("a slack channel", fields_of::<super::alerts::SlackEntry>()),
        (
            "a pagerduty channel",
            fields_of::<super::alerts::PagerDutyEntry>(),
        ),
        (
            "a webhook channel",
            fields_of::<super::alerts::WebhookEntry>(),
        ),
        (
            "a store consumer",
            fields_of::<super::consumers::StoreEntry>(),
        ),
        (
            "a webhook consumer",
            fields_of::<super::consumers::WebhookEntry>(),
        ),
        (
            "an exec consumer",
            fields_of::<super::consumers::ExecEntry>(),
        ),
        (
            "a file consumer",
            fields_of::<super::consumers::FileEntry>(),
        ),
        ("a file store", fields_of::<rekey_file::FileSettings>()),
        ("a vault store", fields_of::<rekey_vault::VaultSettings>()),
        (
            "a vault store's auth",
            fields_of::<rekey_vault::VaultAuthSettings>(),
        ),
        ("an aws store", fields_of::<rekey_aws::AwsSettings>()),
    ];
    let mut missing = Vec::new();
    for (section, keys) in sections {
        assert!(!keys.is_empty(), "{section}: no keys read off its type");
        for key in keys {
            // `key = …` (set, or as `# key = …`), an inline `{ key = … }`, or a table header.
            let shown = EXAMPLE.lines().any(|line| {
                let line = line.trim_start_matches(['#', ' ']);
                line.starts_with(&format!("{key} ="))
                    || line.contains(&format!(" {key} ="))
                    || line.contains(&format!("{{ {key} ="))
                    || line.contains(&format!(".{key}]"))
                    || line.starts_with(&format!("[{key}]"))
                    || line.starts_with(&format!("[{key}."))
            });
            if !shown {
                missing.push(format!("{section}: {key}"));
            }
        }
    }
    assert!(missing.is_empty(), "not in rekey.example.toml: {missing:?}");
}

/// A consumer secret: an External Client App only (Salesforce has no API for a Connected App's),
/// without the certificate settings, with its own retention of the previous pair.
#[test]
fn a_consumer_secret_credential_is_an_eca_without_certificate_settings() {
    let secret = |extra: &str| {
        GOOD.replace(
            "[credentials.billing]",
            &format!(
                "[credentials.etl]\nkind = \"consumer_secret\"\norg = \"acme\"\napp_kind = \"external_client_app\"\napp = \"Nightly_ETL\"\nstore = \"local\"\n{extra}\n[credentials.billing]"
            ),
        )
    };
    let config = parse(&secret(""), Path::new("r.toml")).unwrap();
    let etl = &config.credentials["etl"];
    assert_eq!(etl.kind, rekey_api::CredentialKind::ConsumerSecret);
    assert_eq!(etl.revoke_previous_after, Duration::from_secs(24 * 3600));
    assert_eq!(
        config.credentials["billing"].kind,
        rekey_api::CredentialKind::JwtCertificate,
        "the default kind: existing configs change nothing"
    );
    let config = parse(
        &secret("revoke_previous_after_hours = 0"),
        Path::new("r.toml"),
    )
    .unwrap();
    assert_eq!(
        config.credentials["etl"].revoke_previous_after,
        Duration::ZERO
    );

    // A file consumer of a consumer secret gets the pair in key_path; a cert_path is refused.
    let file_consumer = "[[credentials.etl.consumers]]\nname = \"legacy\"\nkind = \"file\"\nkey_path = \"etl.json\"\n";
    let config = parse(
        &format!("{}\n{file_consumer}", secret("")),
        Path::new("/etc/rekey/r.toml"),
    )
    .unwrap();
    assert!(matches!(
        &config.credentials["etl"].consumers[0].kind,
        ConsumerKindSettings::File { key_path, cert_path: None } if key_path == Path::new("/etc/rekey/etl.json")
    ));
    let err = parse(
        &format!("{}\n{file_consumer}cert_path = \"etl.crt\"\n", secret("")),
        Path::new("r.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("a consumer secret has no certificate; remove cert_path"),
        "{err}"
    );

    let err = parse(
        &secret("").replace(
            "app_kind = \"external_client_app\"\napp = \"Nightly_ETL\"",
            "app_kind = \"connected_app\"\napp = \"Nightly_ETL\"",
        ),
        Path::new("r.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("r.toml:15:"), "the line of `kind`: {err}");
    assert!(
        err.contains("no API to rotate a Connected App's consumer secret"),
        "{err}"
    );
    assert!(
        err.contains("Manage Consumer Details"),
        "the manual path: {err}"
    );

    let err = parse(
        &secret("validity_days = 30\nsubject = { cn = \"x\" }\nrevoke_previous_after_hours = 721"),
        Path::new("r.toml"),
    )
    .unwrap_err()
    .to_string();
    for named in [
        "validity_days applies to certificates",
        "subject applies to certificates",
        "revoke_previous_after_hours",
    ] {
        assert!(err.contains(named), "{named}: {err}");
    }
    let err = parse(
        &GOOD.replace(
            "store = \"local\"",
            "store = \"local\"\nrevoke_previous_after_hours = 2",
        ),
        Path::new("r.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("applies to kind = \"consumer_secret\" only"),
        "{err}"
    );
    let err = parse(
        &GOOD.replace(
            "store = \"local\"",
            "store = \"local\"\nkind = \"password\"",
        ),
        Path::new("r.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown kind 'password'"), "{err}");
}
