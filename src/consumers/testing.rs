//! What the consumer tests share: two key generations made once (the new key chosen to be the
//! hard case for keeping it out of messages), announcements of them, consumers built from a real
//! config, and scripts for `exec` consumers.

use super::*;
use crate::pki::{self, CertSpec, KeyAlgorithm, Subject};
use rekey_api::Certificate;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::sync::OnceLock;

pub(super) const BASE: &str = r#"
[orgs.acme]
login_url = "https://acme.my.salesforce.com"
[orgs.acme.admin]
auth = "access_token_env"

[stores.local]
kind = "file"
path = "keys"

[credentials.billing]
org = "acme"
app_kind = "connected_app"
app = "Billing_Sync"
username = "integration@acme.example"
store = "local"
subject = { cn = "billing-sync" }
"#;

pub(super) const SECRET: &str = "whsec-consumer-test";
pub(super) const FAST: Backoff = Backoff {
    attempts: 3,
    base: Duration::from_millis(5),
    max_delay: Duration::from_millis(20),
};

/// Two generations, made once: (new key, new cert, old key, old cert). The new key is the
/// hard case for keeping it out of messages: see [`SHORT_TAIL`].
pub(super) fn pairs() -> &'static (Material, Certificate, Material, Certificate) {
    static PAIRS: OnceLock<(Material, Certificate, Material, Certificate)> = OnceLock::new();
    PAIRS.get_or_init(|| {
        let spec = CertSpec {
            algorithm: KeyAlgorithm::Rsa2048,
            subject: Subject {
                cn: "consumer-test".into(),
                o: None,
                ou: None,
            },
            validity_days: 30,
        };
        let (new_key, new_cert) = (0..500)
            .map(|_| pki::generate(&spec, rekey_api::now()).unwrap())
            .find(|(key, _)| {
                key.expose_secret_pem()
                    .lines()
                    .rfind(|l| !l.trim().is_empty() && !l.starts_with("-----"))
                    .is_some_and(|l| l.len() < SHORT_TAIL)
            })
            .expect("none of 500 RSA keys had a PEM body whose last line is short");
        let (old_key, old_cert) = pki::generate(&spec, rekey_api::now()).unwrap();
        (
            Material::Key(new_key),
            new_cert,
            Material::Key(old_key),
            old_cert,
        )
    })
}

/// An RSA-2048 PEM body's last line is usually 24 characters (sometimes 28), but 20 for
/// about one key in 27 (its DER a byte or two shorter): such a line once slipped past a
/// length-based filter, so the key the tests hand over is always one whose last line is
/// that short, rather than the random key failing the tests now and then.
pub(super) const SHORT_TAIL: usize = 24;

pub(super) fn last_body_line(key: &Material) -> &str {
    secret_text(key)
        .unwrap()
        .lines()
        .rfind(|l| !l.trim().is_empty() && !l.starts_with("-----"))
        .unwrap()
}

pub(super) fn announce(stage: Stage) -> Announcement<'static> {
    let (key, cert, _, old) = pairs();
    Announcement {
        credential: "billing",
        generation: Generation(7),
        new_fingerprint: cert.fingerprint,
        old_fingerprint: Some(old.fingerprint),
        stage,
        material: Some(key),
        certificate_pem: Some(cert.pem()),
        read_from: "vault secret/rekey/billing/pending".into(),
    }
}

/// The previous generation announced as CURRENT again: what reverting a consumer sends.
pub(super) fn revert() -> Announcement<'static> {
    let (_, cert, key, old) = pairs();
    Announcement {
        credential: "billing",
        generation: Generation(6),
        new_fingerprint: old.fingerprint,
        old_fingerprint: Some(cert.fingerprint),
        stage: Stage::Current,
        material: Some(key),
        certificate_pem: Some(old.pem()),
        read_from: "vault secret/rekey/billing/current".into(),
    }
}

/// The key's PEM body lines, the short last one too: none may appear anywhere but where it
/// is delivered.
pub(super) fn key_lines() -> Vec<String> {
    secret_text(&pairs().0)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("-----"))
        .map(str::to_string)
        .collect()
}

pub(super) fn assert_no_key(text: &str) {
    for line in key_lines() {
        assert!(!text.contains(&line), "key material in: {text}");
    }
}

/// The consumers of a config in `dir` whose credential lists `entries`.
pub(super) fn consumers(dir: &Path, entries: &str) -> Vec<Box<dyn Consumer>> {
    let text = format!("{BASE}\n{entries}");
    let config = crate::config::parse(&text, &dir.join("rekey.toml")).unwrap();
    CredentialConsumers::with_backoff(
        &config.credentials["billing"],
        crate::wiring::environment(),
        FAST,
    )
    .unwrap()
    .consumers
}

pub(super) fn one(dir: &Path, entry: &str) -> Box<dyn Consumer> {
    consumers(dir, &format!("[[credentials.billing.consumers]]\n{entry}"))
        .pop()
        .unwrap()
}

pub(super) fn webhook(dir: &Path, url: &str, status_url: Option<&str>) -> Box<dyn Consumer> {
    std::fs::write(dir.join("hook.secret"), format!("{SECRET}\n")).unwrap();
    let status = status_url.map_or(String::new(), |u| format!("status_url = \"{u}\"\n"));
    one(
        dir,
        &format!(
            "name = \"mw\"\nkind = \"webhook\"\nurl = \"{url}\"\nsecret_file = \"hook.secret\"\n{status}"
        ),
    )
}

pub(super) fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

pub(super) fn exec(dir: &Path, script: &Path, extra: &str) -> Box<dyn Consumer> {
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    one(
        dir,
        &format!(
            "name = \"reload\"\nkind = \"exec\"\ncommand = [\"{}\", \"{}\"]\n{extra}",
            script.display(),
            out.display()
        ),
    )
}

pub(super) fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
