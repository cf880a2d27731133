//! The governance reads of a whole org, end to end against orgsim seeded with
//! `tests/governance/seed.toml` (its certificates generated here): every app and its policy,
//! batched metadata reads, grants and their revocation, last logins, users' access, the clock,
//! permission hints, and no delete token in any text.

use chrono::{DateTime, Duration as Days, Utc};
use orgsim::{Fault, FaultKind, OrgSim, Seed};
use rekey_api::ErrorKind;
use rekey_salesforce::{
    AdminAuth, IpRelaxation, OAuthApp, OAuthAppKind, OrgConnection, RefreshTokenPolicy,
    SalesforceOrg,
};
use std::path::Path;
use std::time::Duration;

const SEED: &str = include_str!("../../../tests/governance/seed.toml");
const ADMIN: &str = "admin@gov.example";
const ADMIN_KEY: &str = "3MVG9GovAdminKey";

/// A self-signed certificate (and its key) valid from `not_before` to `not_after`.
fn rsa_2048(cn: &str, not_before: DateTime<Utc>, not_after: DateTime<Utc>) -> (String, String) {
    let date = |d: DateTime<Utc>| {
        use chrono::Datelike as _;
        rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8)
    };
    let kp = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        .unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.not_before = date(not_before);
    params.not_after = date(not_after);
    let cert = params.self_signed(&kp).unwrap();
    (kp.serialize_pem(), cert.pem())
}

/// An RSA-1024 certificate: rcgen's backend refuses keys that small, so openssl makes it.
fn rsa_1024(dir: &Path) -> String {
    let out = dir.join("weak.crt");
    let status = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:1024", "-nodes", "-subj", "/CN=weak",
        ])
        .args(["-days", "365", "-keyout"])
        .arg(dir.join("weak.key"))
        .arg("-out")
        .arg(&out)
        .output()
        .expect("openssl");
    assert!(status.status.success(), "{status:?}");
    std::fs::read_to_string(out).unwrap()
}

/// The governance org, running.
struct Gov {
    sim: OrgSim,
    admin_key: String,
    _dir: tempfile::TempDir,
}

impl Gov {
    /// The seed's org plus `extra` seed tables.
    async fn start(extra: &str) -> Gov {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        let (admin_key, admin) =
            rsa_2048("rekey admin", now - Days::days(1), now + Days::days(400));
        let clean = rsa_2048("clean", now - Days::days(1), now + Days::days(400)).1;
        let expired = rsa_2048("expired", now - Days::days(400), now - Days::days(30)).1;
        let expiring = rsa_2048("expiring", now - Days::days(300), now + Days::days(10)).1;
        for (name, pem) in [
            ("admin.crt", admin),
            ("clean.crt", clean),
            ("expired.crt", expired),
            ("expiring.crt", expiring),
        ] {
            std::fs::write(dir.path().join(name), pem).unwrap();
        }
        rsa_1024(dir.path());
        let seed = Seed::from_toml_str(&format!("{SEED}\n{extra}"), dir.path()).unwrap();
        let sim = OrgSim::start(seed).await.unwrap();
        Gov {
            sim,
            admin_key,
            _dir: dir,
        }
    }

    fn org(&self) -> SalesforceOrg {
        let base = self.sim.base_url();
        SalesforceOrg::new(OrgConnection {
            org: "gov".into(),
            login_url: base.clone(),
            audience: base,
            api_version: "67.0".into(),
            admin: AdminAuth::Jwt {
                consumer_key: ADMIN_KEY.into(),
                username: ADMIN.into(),
                key: rekey_api::KeyMaterial::from_pem(self.admin_key.clone()).unwrap(),
            }
            .into(),
            request_timeout: Duration::from_secs(60),
        })
        .unwrap()
    }
}

fn app<'a>(apps: &'a [OAuthApp], name: &str) -> &'a OAuthApp {
    apps.iter()
        .find(|a| a.name == name)
        .unwrap_or_else(|| panic!("no app {name}"))
}

fn days_ago(t: DateTime<Utc>) -> i64 {
    (Utc::now() - t + Days::hours(1)).num_days()
}

#[tokio::test]
async fn every_app_is_read_with_its_policy() {
    let gov = Gov::start("").await;
    let apps = gov.org().oauth_apps().await.unwrap();
    let names: Vec<&str> = apps.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Clean_ECA",
            "Clean_JWT",
            "Expired_App",
            "Expiring_App",
            "Privileged_CC",
            "Rekey_Admin",
            "Risky_Portal",
            "Weak_Key_App"
        ]
    );

    let admin = app(&apps, "Rekey_Admin");
    assert_eq!(admin.kind, OAuthAppKind::ConnectedApp);
    assert_eq!(admin.label, "Rekey Admin");
    assert_eq!(admin.consumer_key.as_deref(), Some(ADMIN_KEY));
    assert_eq!(admin.scopes, ["Api", "RefreshToken"]);
    assert_eq!(admin.profiles, ["System Administrator"]);
    assert_eq!(
        admin.refresh_token,
        RefreshTokenPolicy::Lifetime {
            amount: 1,
            unit: "DAYS".into()
        }
    );
    assert!(admin.admin_approved && admin.certificate.is_some());

    let risky = app(&apps, "Risky_Portal");
    assert_eq!(risky.scopes, ["Full", "RefreshToken", "Web"]);
    assert_eq!(risky.refresh_token, RefreshTokenPolicy::Infinite);
    assert_eq!(
        risky.callback_url.as_deref(),
        Some("https://portal.gov.example/cb")
    );
    assert!(!risky.admin_approved && risky.pkce_required && !risky.consumer_secret_optional);
    assert!(!risky.high_assurance && risky.secret_required_for_refresh);
    assert!(risky.certificate.is_none() && risky.certificate_problem.is_none());

    let weak = app(&apps, "Weak_Key_App");
    assert_eq!(weak.ip_relaxation, IpRelaxation::Bypass);
    assert_eq!(weak.refresh_token, RefreshTokenPolicy::Zero);
    assert_eq!(weak.certificate.as_ref().unwrap().key_bits, 1024);
    let expired = app(&apps, "Expired_App").certificate.as_ref().unwrap();
    assert!(expired.not_after < Utc::now());

    let clean_eca = app(&apps, "Clean_ECA");
    assert_eq!(clean_eca.kind, OAuthAppKind::ExternalClientApp);
    assert_eq!(clean_eca.label, "Clean ECA");
    assert_eq!(clean_eca.consumer_key.as_deref(), Some("3MVG9CleanEcaKey"));
    assert_eq!(clean_eca.scopes, ["Api"]);
    assert_eq!(clean_eca.profiles, ["Integration"]);
    assert_eq!(clean_eca.ip_relaxation, IpRelaxation::Enforce);
    assert_eq!(clean_eca.refresh_token, RefreshTokenPolicy::Zero);
    assert!(clean_eca.admin_approved && clean_eca.client_credentials_enabled);
    assert_eq!(
        clean_eca.client_credentials_user.as_deref(),
        Some("etl-runner@gov.example")
    );
    // ECA defaults: PKCE on, OAuth on, no callback, no certificate.
    assert!(
        clean_eca.pkce_required && clean_eca.oauth_enabled && clean_eca.secret_required_for_refresh
    );
    assert!(clean_eca.callback_url.is_none() && clean_eca.certificate.is_none());

    let expiring = app(&apps, "Expiring_App");
    let days_left = (expiring.certificate.as_ref().unwrap().not_after - Utc::now()).num_days();
    assert!((8..=10).contains(&days_left), "{days_left}");
    assert!(
        !expiring.client_credentials_enabled,
        "no global settings flag, no flow"
    );
    assert_eq!(
        app(&apps, "Privileged_CC")
            .client_credentials_user
            .as_deref(),
        Some("god-runner@gov.example")
    );
    let json = serde_json::to_string(&apps).unwrap();
    assert!(
        !json.contains("BEGIN CERTIFICATE") && json.contains("\"key_bits\":1024"),
        "{json}"
    );
    gov.sim.shutdown().await;
}

#[tokio::test]
async fn reads_go_in_batches_of_ten_and_synonyms_are_normalised() {
    let mut extra = String::new();
    // 5 seeded Connected Apps + 18 = 23: three reads of ConnectedApp.
    for i in 0..18 {
        extra.push_str(&format!(
            "[[connected_apps]]\nfull_name = \"Bulk_{i:02}\"\nmetadata = '''<ConnectedApp xmlns=\"http://soap.sforce.com/2006/04/metadata\">\
<contactEmail>x@gov.example</contactEmail><label>Bulk {i}</label><oauthConfig><callbackUrl>https://x.gov.example/cb</callbackUrl>\
<scopes>OfflineAccess</scopes><scopes>Email</scopes><scopes>Profile</scopes><scopes>Api</scopes></oauthConfig>\
<oauthPolicy><ipRelaxation>bypass_2factor</ipRelaxation><refreshTokenPolicy>specific_inactivity:30:DAYS</refreshTokenPolicy></oauthPolicy>\
<sessionPolicy><sessionLevel>HIGH_ASSURANCE</sessionLevel></sessionPolicy></ConnectedApp>'''\n"
        ));
    }
    let gov = Gov::start(&extra).await;
    let apps = gov.org().oauth_apps().await.unwrap();
    assert_eq!(apps.len(), 26);
    let bulk = app(&apps, "Bulk_07");
    assert_eq!(bulk.scopes, ["Api", "Basic", "RefreshToken"]);
    assert_eq!(bulk.ip_relaxation, IpRelaxation::BypassTwoFactor);
    assert_eq!(
        bulk.refresh_token,
        RefreshTokenPolicy::Inactivity {
            amount: 30,
            unit: "DAYS".into()
        }
    );
    assert!(bulk.high_assurance && !bulk.admin_approved);

    let count = |op: &str| {
        gov.sim
            .calls()
            .iter()
            .filter(|c| c.operation.as_deref() == Some(op))
            .count()
    };
    assert_eq!(count("readMetadata ConnectedApp"), 3);
    assert_eq!(count("listMetadata ConnectedApp"), 1);
    for eca_type in [
        "ExternalClientApplication",
        "ExtlClntAppOauthSettings",
        "ExtlClntAppGlobalOauthSettings",
        "ExtlClntAppOauthConfigurablePolicies",
    ] {
        assert_eq!(count(&format!("listMetadata {eca_type}")), 1, "{eca_type}");
        assert_eq!(count(&format!("readMetadata {eca_type}")), 1, "{eca_type}");
    }
    // No ECA has plugin switches: listed, nothing to read.
    assert_eq!(count("listMetadata ExtlClntAppConfigurablePolicies"), 1);
    assert_eq!(count("readMetadata ExtlClntAppConfigurablePolicies"), 0);
    gov.sim.shutdown().await;
}

#[tokio::test]
async fn grants_are_listed_with_their_apps_and_revoked_one_by_one() {
    let gov = Gov::start("").await;
    let org = gov.org();
    let apps = org.oauth_apps().await.unwrap();
    let since = Utc::now() - Days::days(365);
    let logins_before = org.last_logins(&apps, since).await.unwrap();
    let grants = org.grants(&apps).await.unwrap();
    assert_eq!(grants.len(), 3, "{grants:?}");
    let alice: Vec<_> = grants
        .iter()
        .filter(|g| g.username.as_deref() == Some("alice@gov.example"))
        .collect();
    assert_eq!(alice.len(), 2);
    for g in &alice {
        assert_eq!(
            (g.app.as_str(), g.app_label.as_str()),
            ("Risky_Portal", "Risky Portal")
        );
        assert_eq!(days_ago(g.last_used.unwrap()), 45);
        assert_eq!(days_ago(g.created), 90);
        assert_eq!(g.use_count, 3);
        assert!(g.user_id.starts_with("005"));
    }
    let bob = grants
        .iter()
        .find(|g| g.username.as_deref() == Some("bob@gov.example"))
        .unwrap();
    assert_eq!((days_ago(bob.last_used.unwrap()), bob.use_count), (2, 40));

    // No delete token in any text a grant gives.
    let delete_tokens: Vec<String> = gov
        .sim
        .grants()
        .into_iter()
        .map(|g| g.delete_token)
        .collect();
    let texts = format!(
        "{grants:?} {} {org:?}",
        serde_json::to_string(&grants).unwrap()
    );
    for t in &delete_tokens {
        assert!(!texts.contains(t.as_str()), "delete token leaked: {texts}");
    }

    // A failing revoke says so without the token.
    gov.sim.inject_fault(Fault {
        kind: FaultKind::ServerError {
            status: 500,
            body: "boom".into(),
        },
        path_prefix: Some("/services/oauth2/revoke".into()),
        count: Some(1),
    });
    let err = org.revoke_grant(alice[0]).await.unwrap_err();
    let text = format!("{err} {err:?} {}", err.hint().unwrap_or_default());
    assert!(
        text.contains("alice@gov.example") && text.contains("gov"),
        "{text}"
    );
    for t in &delete_tokens {
        assert!(!text.contains(t.as_str()), "delete token leaked: {text}");
    }

    let before = gov.sim.grants().len();
    assert!(org.revoke_grant(alice[0]).await.unwrap());
    let after = gov.sim.grants();
    assert_eq!(after.len(), before - 1);
    let left = org.grants(&apps).await.unwrap();
    assert_eq!(left.len(), 2);
    assert_eq!(
        left.iter()
            .filter(|g| g.username.as_deref() == Some("alice@gov.example"))
            .count(),
        1
    );
    assert!(!org.revoke_grant(alice[0]).await.unwrap(), "already gone");
    assert_eq!(gov.sim.grants().len(), after.len());
    // Revoking grants leaves the login history alone (the admin logged in once more, at most).
    let logins_after = org.last_logins(&apps, since).await.unwrap();
    for (app, at) in &logins_before {
        if app != "Rekey_Admin" {
            assert_eq!(logins_after.get(app), Some(at), "{app}");
        }
    }
    gov.sim.shutdown().await;
}

#[tokio::test]
async fn last_logins_are_per_app_and_successful_only() {
    // A failed login does not count as use.
    let extra = "[[logins]]\nusername = \"etl-runner@gov.example\"\napp = \"Expired_App\"\ndays_ago = 5\nstatus = \"Failed: invalid assertion\"\n";
    let gov = Gov::start(extra).await;
    let org = gov.org();
    let apps = org.oauth_apps().await.unwrap();
    let recent = org
        .last_logins(&apps, Utc::now() - Days::days(30))
        .await
        .unwrap();
    let days: Vec<(&str, i64)> = recent
        .iter()
        .map(|(a, t)| (a.as_str(), days_ago(*t)))
        .collect();
    assert_eq!(
        days,
        [
            ("Clean_ECA", 2),
            ("Clean_JWT", 1),
            ("Expiring_App", 1),
            ("Privileged_CC", 1),
            // rekey's own login just now.
            ("Rekey_Admin", 0),
            ("Risky_Portal", 1),
            ("Weak_Key_App", 3),
        ]
    );
    let year = org
        .last_logins(&apps, Utc::now() - Days::days(365))
        .await
        .unwrap();
    assert_eq!(days_ago(year["Expired_App"]), 120);
    gov.sim.shutdown().await;
}

#[tokio::test]
async fn user_access_names_privileged_permissions() {
    let gov = Gov::start("").await;
    let org = gov.org();
    let god = org
        .user_access("god-runner@gov.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(god.privileged, ["ModifyAllData"]);
    assert!(god.active && !god.api_only && god.id.starts_with("005"));
    let etl = org
        .user_access("ETL-Runner@gov.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(etl.username, "etl-runner@gov.example");
    assert!(etl.privileged.is_empty() && etl.api_only);
    let admin = org.user_access(ADMIN).await.unwrap().unwrap();
    assert_eq!(
        admin.privileged,
        ["ModifyAllData", "ModifyMetadata", "ManageUsers"]
    );
    assert!(
        org.user_access("nobody@gov.example")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        org.user_access("x' OR Username != 'y")
            .await
            .unwrap()
            .is_none()
    );
    gov.sim.shutdown().await;
}

#[tokio::test]
async fn the_clock_offset_is_measured_from_the_date_header() {
    let gov = Gov::start("").await;
    let org = gov.org();
    let level = org.clock_offset().await.unwrap();
    assert!(level.offset_ms.abs() <= 2000, "{level:?}");
    assert!((500..2000).contains(&level.uncertainty_ms), "{level:?}");
    gov.sim.set_clock_offset(45);
    let skewed = org.clock_offset().await.unwrap();
    assert!((skewed.offset_ms - 45_000).abs() <= 2000, "{skewed:?}");
    gov.sim.set_clock_offset(-45);
    let behind = org.clock_offset().await.unwrap();
    assert!((behind.offset_ms + 45_000).abs() <= 2000, "{behind:?}");
    gov.sim.shutdown().await;
}

#[tokio::test]
async fn a_missing_metadata_permission_names_it() {
    let gov = Gov::start("").await;
    for permission in ["ModifyAllData", "ModifyMetadata"] {
        gov.sim
            .set_user_permission(ADMIN, permission, false)
            .unwrap();
    }
    let err = gov.org().oauth_apps().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(
        err.to_string().contains("listing ConnectedApp in org gov"),
        "{err}"
    );
    assert!(
        err.hint().unwrap().contains("Modify Metadata"),
        "{:?}",
        err.hint()
    );
    gov.sim.shutdown().await;
}

#[test]
fn connections_are_checked_before_any_request() {
    let connection = |login_url: &str, api_version: &str| OrgConnection {
        org: "gov".into(),
        login_url: login_url.into(),
        audience: "https://login.salesforce.com".into(),
        api_version: api_version.into(),
        admin: AdminAuth::AccessToken {
            token: rekey_api::SecretString::new("00Dx!secret-session"),
            instance_url: "https://gov.my.salesforce.com".into(),
        }
        .into(),
        request_timeout: Duration::from_secs(5),
    };
    let org = SalesforceOrg::new(connection("https://gov.my.salesforce.com", "67.0")).unwrap();
    assert_eq!(
        (org.org(), org.to_string().as_str()),
        ("gov", "salesforce org gov")
    );
    assert!(!format!("{org:?}").contains("secret-session"));
    let err = SalesforceOrg::new(connection("http://gov.my.salesforce.com", "67.0")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    let err = SalesforceOrg::new(connection("https://gov.my.salesforce.com", "67")).unwrap_err();
    assert!(err.to_string().contains("api version"), "{err}");
}
