//! The Salesforce target end to end against orgsim: reading and replacing CA and ECA
//! certificates, idempotence, deploy failures, probes, admin auth modes and error kinds.

mod common;

use common::{CA, ECA_GLOBAL_MEMBER, INTEGRATION_USER, Org, Pair, without_certificate};
use orgsim::{Fault, FaultKind, PropagationMode};
use rekey_api::{CertificateTarget, ErrorKind, Fingerprint, Installed, Probe, RotationId};
use rekey_salesforce::{AppKind, SalesforceTarget};

fn rid() -> RotationId {
    RotationId("r-test-1".into())
}

/// The fingerprint of the certificate `target` reads back from the org.
async fn installed(target: &SalesforceTarget) -> Option<Fingerprint> {
    target.installed().await.unwrap().map(|c| c.fingerprint)
}

/// Installs `new` through `target`, asserting that it took a deploy.
async fn install_deploys(target: &SalesforceTarget, new: &Pair) {
    let outcome = target.install(&new.cert(), &rid()).await.unwrap();
    assert!(
        matches!(outcome, Installed::Deployed { .. }),
        "expected a deploy, got {outcome:?}"
    );
}

#[tokio::test]
async fn installed_reads_the_ca_and_eca_certificates() {
    let org = Org::start().await;
    let fp = org.old.cert().fingerprint;
    let ca = org.target(AppKind::ConnectedApp);
    ca.preflight().await.unwrap();
    assert_eq!(installed(&ca).await, Some(fp));
    assert_eq!(ca.to_string(), "salesforce(acme/Billing_Sync)");
    let eca = org.target(AppKind::ExternalClientApp);
    eca.preflight().await.unwrap();
    assert_eq!(installed(&eca).await, Some(fp));
    org.sim.shutdown().await;
}

#[tokio::test]
async fn check_refuses_the_admin_app_itself_unless_logged_in_by_token() {
    let org = Org::start().await;
    let err = org
        .target_with(AppKind::ConnectedApp, org.jwt_admin(), |c| {
            c.app = "Rekey_Admin".into();
        })
        .preflight()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(
        err.to_string().contains("is rekey's own admin app"),
        "{err}"
    );

    let token = org.admin_access_token().await;
    org.target_with(AppKind::ConnectedApp, org.token_admin(&token), |c| {
        c.app = "Rekey_Admin".into();
    })
    .preflight()
    .await
    .expect("a token login does not depend on the app");
    org.sim.shutdown().await;
}

#[tokio::test]
async fn a_missing_app_is_not_found_naming_app_and_org() {
    let org = Org::start().await;
    for kind in [AppKind::ConnectedApp, AppKind::ExternalClientApp] {
        let target = org.target_with(kind, org.jwt_admin(), |c| c.app = "No_Such_App".into());
        let err = target.preflight().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert!(
            err.to_string().contains("No_Such_App") && err.to_string().contains("acme"),
            "{err}"
        );
        assert_eq!(
            target.installed().await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }
    org.sim.shutdown().await;
}

#[tokio::test]
async fn ca_install_replaces_only_the_certificate_after_a_check_only_deploy() {
    let org = Org::start().await;
    let target = org.target(AppKind::ConnectedApp);
    let before = org.sim.connected_app_xml(CA).unwrap();
    let new = Pair::generate("billing integration 2");

    let outcome = target.install(&new.cert(), &rid()).await.unwrap();
    let Installed::Deployed { deploy_id } = outcome else {
        panic!("expected a deploy, got {outcome:?}")
    };
    assert!(!deploy_id.is_empty());

    let after = org.sim.connected_app_xml(CA).unwrap();
    assert_eq!(without_certificate(&before), without_certificate(&after));
    for kept in [
        "<isAdminApproved>true</isAdminApproved>",
        "<scopes>RefreshToken</scopes>",
        "<profileName>Billing Integration</profileName>",
        "<sessionTimeout>15</sessionTimeout>",
        "<consumerKey>3MVG9billingSync.key_0002</consumerKey>",
    ] {
        assert!(after.contains(kept), "{kept} lost:\n{after}");
    }
    assert_eq!(installed(&target).await, Some(new.cert().fingerprint));
    let pem = org.sim.app_certificate_pem(CA).unwrap();
    assert_eq!(
        rekey_api::Certificate::from_pem(&pem).unwrap().fingerprint,
        new.cert().fingerprint
    );

    // Two deploys (check-only, then real), the real one's id returned.
    assert_eq!(org.deploy_posts(), 2);
    let deploys = common::deploys(&org).await;
    assert_eq!(deploys.len(), 2, "{deploys:?}");
    assert!(
        deploys[0].1 && !deploys[1].1,
        "check-only must come first: {deploys:?}"
    );
    assert_eq!(deploys[1].0, deploy_id);
    org.sim.shutdown().await;
}

#[tokio::test]
async fn eca_install_replaces_only_the_global_settings_certificate() {
    let org = Org::start().await;
    let target = org.target(AppKind::ExternalClientApp);
    let component = "ExtlClntAppGlobalOauthSettings";
    let before = org
        .sim
        .eca_component_xml(component, ECA_GLOBAL_MEMBER)
        .unwrap();
    let new = Pair::generate("billing eca 2");
    install_deploys(&target, &new).await;
    let after = org
        .sim
        .eca_component_xml(component, ECA_GLOBAL_MEMBER)
        .unwrap();
    assert_eq!(without_certificate(&before), without_certificate(&after));
    assert!(
        after.contains("<consumerKey>3MVG9billingEca.key_0003</consumerKey>"),
        "{after}"
    );
    assert_eq!(installed(&target).await, Some(new.cert().fingerprint));
    // The probe reads the consumer key from the global settings.
    assert!(matches!(
        target
            .probe(rekey_api::Signer::Local(&new.key()))
            .await
            .unwrap(),
        Probe::Accepted { .. }
    ));
    org.sim.shutdown().await;
}

#[tokio::test]
async fn string_booleans_in_deploy_status_and_bare_base64_certificates_are_understood() {
    let org = Org::start_with(
        "string_values_in_deploy_status = true\ncertificate_format_in_reads = \"base64\"",
    )
    .await;
    for kind in [AppKind::ConnectedApp, AppKind::ExternalClientApp] {
        let target = org.target(kind);
        assert_eq!(installed(&target).await, Some(org.old.cert().fingerprint));
        let new = Pair::generate("billing integration 2");
        install_deploys(&target, &new).await;
        assert_eq!(installed(&target).await, Some(new.cert().fingerprint));
        assert_eq!(
            target.install(&new.cert(), &rid()).await.unwrap(),
            Installed::AlreadyPresent
        );
    }
    org.sim.shutdown().await;
}

#[tokio::test]
async fn reinstalling_the_same_certificate_deploys_nothing() {
    let org = Org::start().await;
    let target = org.target(AppKind::ConnectedApp);
    assert_eq!(
        target.install(&org.old.cert(), &rid()).await.unwrap(),
        Installed::AlreadyPresent
    );
    assert_eq!(org.deploy_posts(), 0);
    let new = Pair::generate("billing integration 2");
    target.install(&new.cert(), &rid()).await.unwrap();
    assert_eq!(org.deploy_posts(), 2);
    assert_eq!(
        target.install(&new.cert(), &rid()).await.unwrap(),
        Installed::AlreadyPresent
    );
    assert_eq!(org.deploy_posts(), 2);
    org.sim.shutdown().await;
}

#[tokio::test]
async fn a_failed_deploy_is_rejected_verbatim_and_changes_nothing() {
    let org = Org::start().await;
    let target = org.target(AppKind::ConnectedApp);
    let before = org.sim.connected_app_xml(CA).unwrap();
    let problem = "The certificate is not valid: unsupported key size (Error 4711)";
    org.sim.inject_fault(
        Fault::new(FaultKind::DeployFails {
            problem: problem.into(),
        })
        .times(1),
    );
    let err = target
        .install(&Pair::generate("billing 2").cert(), &rid())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected, "{err}");
    assert!(err.to_string().contains(problem), "{err}");
    assert!(
        err.to_string()
            .contains("connectedApps/Billing_Sync.connectedApp"),
        "{err}"
    );
    // The check-only deploy failed, so no real deploy was attempted.
    assert_eq!(org.deploy_posts(), 1);
    assert_eq!(org.sim.connected_app_xml(CA).unwrap(), before);
    org.sim.shutdown().await;
}

#[tokio::test]
async fn probe_accepts_the_new_key_and_rejects_the_old_one_after_install() {
    let org = Org::start().await;
    let target = org.target(AppKind::ConnectedApp);
    assert!(matches!(
        target
            .probe(rekey_api::Signer::Local(&org.old.key()))
            .await
            .unwrap(),
        Probe::Accepted { .. }
    ));
    let new = Pair::generate("billing integration 2");
    target.install(&new.cert(), &rid()).await.unwrap();
    match target
        .probe(rekey_api::Signer::Local(&new.key()))
        .await
        .unwrap()
    {
        Probe::Accepted { instance_url } => assert_eq!(instance_url, org.sim.base_url()),
        other => panic!("new key refused: {other:?}"),
    }
    match target
        .probe(rekey_api::Signer::Local(&org.old.key()))
        .await
        .unwrap()
    {
        Probe::Rejected {
            error,
            description,
            may_clear,
        } => {
            assert_eq!(
                (error.as_str(), description.as_str(), may_clear),
                ("invalid_grant", "invalid assertion", true)
            );
        }
        other => panic!("old key accepted: {other:?}"),
    }

    // While a change propagates, the new key's refusal is one that may clear by itself.
    org.sim.set_propagation(600, PropagationMode::Old);
    let newer = Pair::generate("billing integration 3");
    target.install(&newer.cert(), &rid()).await.unwrap();
    match target
        .probe(rekey_api::Signer::Local(&newer.key()))
        .await
        .unwrap()
    {
        Probe::Rejected { may_clear, .. } => assert!(may_clear),
        other => panic!("new key accepted before propagation: {other:?}"),
    }
    assert!(matches!(
        target
            .probe(rekey_api::Signer::Local(&new.key()))
            .await
            .unwrap(),
        Probe::Accepted { .. }
    ));
    org.sim.shutdown().await;
}

#[tokio::test]
async fn a_refusal_that_waiting_will_not_fix_is_not_marked_may_clear() {
    let org = Org::start().await;
    let target = org.target_with(AppKind::ConnectedApp, org.jwt_admin(), |c| {
        c.integration_username = "nobody@acme.test".into();
        c.consumer_key = Some(common::CA_KEY.into());
    });
    match target
        .probe(rekey_api::Signer::Local(&org.old.key()))
        .await
        .unwrap()
    {
        Probe::Rejected {
            may_clear, error, ..
        } => assert!(!may_clear, "{error}"),
        other => panic!("unknown user accepted: {other:?}"),
    }
    assert_eq!(INTEGRATION_USER, "integration@acme.test");
    org.sim.shutdown().await;
}

#[tokio::test]
async fn a_wrong_admin_key_is_unauthenticated_with_salesforce_error() {
    let org = Org::start().await;
    let stranger = Pair::generate("not the admin");
    let admin = org.jwt_admin_as(common::ADMIN_USER, &stranger);
    let target = org.target_as(AppKind::ConnectedApp, admin);
    let err = target.preflight().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    assert!(
        err.to_string().contains("invalid_grant: invalid assertion"),
        "{err}"
    );
    assert!(err.hint().is_some());

    // An admin the app does not pre-authorize.
    let admin = org.jwt_admin_as(INTEGRATION_USER, &org.admin);
    let target = org.target_as(AppKind::ConnectedApp, admin);
    let err = target.preflight().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    org.sim.shutdown().await;
}

#[tokio::test]
async fn an_admin_without_metadata_rights_is_permission_denied() {
    let org = Org::start().await;
    let admin = org.jwt_admin_as(common::AUDITOR_USER, &org.admin);
    let target = org.target_as(AppKind::ConnectedApp, admin);
    let err = target.preflight().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(err.hint().unwrap().contains("Modify All Data"));
    org.sim.shutdown().await;
}

#[tokio::test]
async fn a_deploy_still_running_at_the_deadline_is_temporary() {
    // Held, the deploy never finishes by itself: the 400 ms deadline runs out first however
    // slowly the client runs (a deploy that merely took 6 s could finish first after a stall).
    let org = Org::start_with("hold_deploys = true").await;
    let target = org.target_with(AppKind::ConnectedApp, org.jwt_admin(), |c| {
        c.deploy_timeout = std::time::Duration::from_millis(400);
    });
    let err = target
        .install(&Pair::generate("slow").cert(), &rid())
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind(), err.is_temporary()),
        (ErrorKind::Unavailable, true),
        "{err}"
    );
    assert!(err.to_string().contains("still"), "{err}");
    org.sim.shutdown().await;
}

#[tokio::test]
async fn access_token_mode_reads_and_installs() {
    let org = Org::start().await;
    let token = org.admin_access_token().await;
    let target = org.token_target(AppKind::ConnectedApp, &token);
    assert_eq!(installed(&target).await, Some(org.old.cert().fingerprint));
    let new = Pair::generate("billing integration 2");
    install_deploys(&target, &new).await;

    let bad = org.token_target(AppKind::ConnectedApp, "00D000000000001!notatoken");
    let err = bad.preflight().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    assert!(err.hint().unwrap().contains("SF_ACCESS_TOKEN"));
    assert!(!format!("{err} {err:?} {bad:?}").contains("notatoken"));
    org.sim.shutdown().await;
}

#[tokio::test]
async fn an_expired_admin_session_is_renewed_once_in_jwt_mode_only() {
    let org = Org::start().await;
    let token = org.admin_access_token().await;
    let jwt = org.target(AppKind::ConnectedApp);
    jwt.preflight().await.unwrap();
    let logins = org.token_posts();
    // The admin app's sessions last one minute; the assertion (exp = now + 3 min) stays valid.
    org.sim.set_clock_offset(120);
    jwt.installed().await.unwrap();
    assert_eq!(org.token_posts(), logins + 1, "exactly one re-login");

    let by_token = org.token_target(AppKind::ConnectedApp, &token);
    let err = by_token.installed().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    assert_eq!(
        org.token_posts(),
        logins + 1,
        "access-token mode never logs in"
    );
    org.sim.shutdown().await;
}

#[tokio::test]
async fn outages_and_limits_are_temporary_unavailable() {
    let org = Org::start().await;
    let target = org.target(AppKind::ConnectedApp);
    target.preflight().await.unwrap(); // log in first so faults hit the API calls
    let faults = [
        FaultKind::ServerError {
            status: 503,
            body: String::new(),
        },
        FaultKind::RequestLimit,
        FaultKind::DataNotAvailable,
    ];
    for kind in faults {
        org.sim.inject_fault(Fault::new(kind.clone()).times(1));
        let err = target.installed().await.unwrap_err();
        assert_eq!(
            (err.kind(), err.is_temporary()),
            (ErrorKind::Unavailable, true),
            "{kind:?}: {err}"
        );
        org.sim.clear_faults();
    }
    org.sim
        .inject_fault(Fault::new(FaultKind::RateLimitExceeded).times(1));
    let err = target
        .probe(rekey_api::Signer::Local(&org.old.key()))
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind(), err.is_temporary()),
        (ErrorKind::Unavailable, true),
        "{err}"
    );
    org.sim.shutdown().await;
}

#[tokio::test]
async fn plain_http_to_a_remote_host_is_refused_at_construction() {
    let org = Org::start().await;
    let mut config = org.config(AppKind::ConnectedApp, org.jwt_admin());
    config.login_url = "http://acme.my.salesforce.com".into();
    let err = SalesforceTarget::new(config).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    // The setting is named; the URL itself is not quoted (a URL may carry a token).
    assert_eq!(
        err.to_string(),
        "salesforce target: login_url must use https (plain http is allowed only for loopback hosts)"
    );
    org.sim.shutdown().await;
}

#[tokio::test]
async fn secrets_never_appear_in_debug_or_errors() {
    let org = Org::start().await;
    let token = org.admin_access_token().await;
    let key_body: String = org.admin.key_pem.lines().nth(2).unwrap().to_string();
    let jwt_target = org.target(AppKind::ConnectedApp);
    jwt_target.preflight().await.unwrap(); // a cached session now exists
    let token_target = org.token_target(AppKind::ConnectedApp, &token);
    let admin_auth = org.jwt_admin();
    let mut shown = format!("{jwt_target:?} {token_target:?} {admin_auth:?}");
    org.sim.inject_fault(
        Fault::new(FaultKind::ServerError {
            status: 500,
            body: String::new(),
        })
        .times(1),
    );
    let err = token_target.installed().await.unwrap_err();
    shown.push_str(&format!("{err} {err:?}"));
    assert!(shown.contains("***"), "{shown}");
    assert!(!shown.contains(&token), "access token leaked: {shown}");
    assert!(!shown.contains(&key_body), "key leaked");
    assert!(!shown.contains("PRIVATE KEY"), "key leaked");
    org.sim.shutdown().await;
}
