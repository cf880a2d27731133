//! Ending access against orgsim: `revoke_access` (AuthSession deletes, OauthToken grants revoked
//! through their DeleteToken, ECA app tokens deleted), the ECA kill switch
//! (`oauth_enabled`/`set_oauth_enabled`) and how their failures are classified.

mod common;

use common::{AUDITOR_USER, CA, CA_KEY, DEPLOYER_USER, ECA, ECA_KEY, INTEGRATION_USER, Org};
use orgsim::{Fault, FaultKind};
use rekey_api::{CertificateTarget, Error, ErrorKind, KeyMaterial, Probe, Revoked, RotationId};
use rekey_salesforce::{AppKind, SalesforceTarget};
use serde_json::Value;

const POLICIES: &str = "ExtlClntAppConfigurablePolicies";
const POLICIES_MEMBER: &str = "Billing_ECA_plcy";
const REVOKE: &str = "/services/oauth2/revoke";

fn rid() -> RotationId {
    RotationId("r-revoke-1".into())
}

/// Asserts that `token` is dead everywhere: 401 INVALID_SESSION_ID on REST, 403
/// Bad_OAuth_Token on userinfo.
async fn assert_dead(org: &Org, token: &str) {
    let (status, body) = org.sim.limits(token).await;
    assert_eq!(status, 401, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body[0]["errorCode"], "INVALID_SESSION_ID");
    let query = "/services/data/v67.0/query?q=SELECT+Id+FROM+User";
    assert_eq!(org.sim.get_with_token(query, token).await.0, 401);
    assert_eq!(
        org.sim.userinfo(token).await,
        (403, "Bad_OAuth_Token".to_string())
    );
}

async fn assert_alive(org: &Org, token: &str) {
    assert_eq!(org.sim.limits(token).await.0, 200);
    assert_eq!(org.sim.userinfo(token).await.0, 200);
}

fn deploy_posts(org: &Org) -> usize {
    org.deploy_posts()
}

/// What `revoke_access` should report: sessions deleted, grants revoked, and whether the ECA's
/// refresh tokens were deleted (`None` for a Connected App).
fn revoked(sessions: u32, grants: u32, app_tokens_deleted: Option<bool>) -> Revoked {
    Revoked {
        sessions,
        grants,
        app_tokens_deleted,
    }
}

/// The delete tokens of the grants the org still has.
fn delete_tokens_left(org: &Org) -> Vec<String> {
    org.sim
        .grants()
        .into_iter()
        .map(|g| g.delete_token)
        .collect()
}

/// `revoke_access` of the Connected App with `username` as its integration user, which must
/// fail.
async fn revoke_error_for_user(org: &Org, username: String) -> Error {
    org.target_with(AppKind::ConnectedApp, org.jwt_admin(), |c| {
        c.integration_username = username;
    })
    .revoke_access()
    .await
    .unwrap_err()
}

/// Fails the next call to `path` with HTTP `status`, then asserts that `revoke_access` fails as
/// a temporary outage; returns the error.
async fn revoke_error_in_outage(
    org: &Org,
    target: &SalesforceTarget,
    status: u16,
    path: &str,
) -> Error {
    org.sim.inject_fault(
        Fault::new(FaultKind::ServerError {
            status,
            body: String::new(),
        })
        .on_path(path)
        .times(1),
    );
    let err = target.revoke_access().await.unwrap_err();
    assert_eq!(
        (err.kind(), err.is_temporary()),
        (ErrorKind::Unavailable, true),
        "{err}"
    );
    err
}

/// Whether the app gives `key` a token now (accepted) or refuses it (rejected).
async fn accepts(target: &SalesforceTarget, key: &KeyMaterial) -> bool {
    match target.probe(rekey_api::Signer::Local(key)).await.unwrap() {
        Probe::Accepted { .. } => true,
        Probe::Rejected { .. } => false,
    }
}

/// The ECA target of `org` and the key it trusts, asserting that OAuth starts on.
async fn eca_with_oauth_on(org: &Org) -> (SalesforceTarget, KeyMaterial) {
    let target = org.target(AppKind::ExternalClientApp);
    assert_eq!(target.oauth_enabled().await.unwrap(), Some(true));
    (target, org.old.key())
}

#[tokio::test]
async fn connected_app_revoke_ends_every_session_of_the_user_and_the_apps_grants() {
    let org = Org::start().await;
    let target = org.target(AppKind::ConnectedApp);
    target.preflight().await.unwrap(); // rekey's own admin session exists from here on
    let logins = org.token_posts();
    // The integration user has a session through each app; an attacker with the old key
    // would hold the same tokens (repeated grants return the live session's token).
    let ca_token = org.integration_token(AppKind::ConnectedApp).await;
    let eca_token = org.integration_token(AppKind::ExternalClientApp).await;
    let auditor_session = org
        .mint(common::ADMIN_APP_KEY, AUDITOR_USER, &org.admin)
        .await
        .1["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    org.sim.add_grant(INTEGRATION_USER, CA).unwrap();
    org.sim.add_grant(AUDITOR_USER, CA).unwrap();
    let other_app = org.sim.add_grant(INTEGRATION_USER, ECA).unwrap();

    assert_eq!(target.revoke_access().await.unwrap(), revoked(2, 2, None));
    assert_dead(&org, &ca_token).await;
    assert_dead(&org, &eca_token).await;
    assert!(org.sim.live_sessions(INTEGRATION_USER).is_empty());
    // Another user's session and another app's grant are untouched.
    assert_alive(&org, &auditor_session).await;
    assert_eq!(delete_tokens_left(&org), [other_app.delete_token]);
    // The grants went through /services/oauth2/revoke, one call each.
    assert_eq!(org.calls_to("POST", REVOKE), 2);
    // rekey's admin session survived: no second login was needed.
    assert_eq!(
        org.token_posts(),
        logins + 2 + 1,
        "only the test's own mints"
    );

    // Idempotent: nothing left.
    assert_eq!(target.revoke_access().await.unwrap(), Revoked::default());

    // The key still works (this test never rotated it): a new grant is a new session.
    let again = org.integration_token(AppKind::ConnectedApp).await;
    assert_ne!(again, ca_token);
    assert_alive(&org, &again).await;
    org.sim.shutdown().await;
}

#[tokio::test]
async fn eca_revoke_also_deletes_every_refresh_token_of_the_app() {
    let org = Org::start().await;
    let target = org.target(AppKind::ExternalClientApp);
    let token = org.integration_token(AppKind::ExternalClientApp).await;
    let g1 = org.sim.add_grant(INTEGRATION_USER, ECA).unwrap();
    org.sim.add_grant(AUDITOR_USER, ECA).unwrap();
    let ca_grant = org.sim.add_grant(INTEGRATION_USER, CA).unwrap();

    assert_eq!(
        target.revoke_access().await.unwrap(),
        revoked(1, 2, Some(true))
    );
    assert_dead(&org, &token).await;
    let app_id = org.sim.app_id(ECA).unwrap();
    let tokens_path = format!("/services/data/v67.0/apps/oauth/usage/{app_id}/tokens");
    let deletes: Vec<u16> = org
        .sim
        .calls()
        .iter()
        .filter(|c| c.method == "DELETE" && c.path == tokens_path)
        .map(|c| c.status)
        .collect();
    assert_eq!(deletes, [204]);
    let left = delete_tokens_left(&org);
    assert_eq!(left, [ca_grant.delete_token]);
    // The revoked grant's delete token is dead.
    assert!(!left.contains(&g1.delete_token));

    // Idempotent: zero counts, the app-wide delete is harmless again.
    assert_eq!(
        target.revoke_access().await.unwrap(),
        revoked(0, 0, Some(true))
    );
    org.sim.shutdown().await;
}

#[tokio::test]
async fn revoke_follows_query_pages_and_requeries_truncated_oauth_token_answers() {
    let org =
        Org::start_with("query_page_size = 1\noauth_token_page_size = 1\noauth_token_max_rows = 2")
            .await;
    let target = org.target(AppKind::ConnectedApp);
    org.integration_token(AppKind::ConnectedApp).await;
    org.integration_token(AppKind::ExternalClientApp).await;
    for _ in 0..5 {
        org.sim.add_grant(INTEGRATION_USER, CA).unwrap();
    }
    let revoked = target.revoke_access().await.unwrap();
    assert_eq!((revoked.sessions, revoked.grants), (2, 5));
    assert!(org.sim.grants().is_empty());
    let pages = org
        .sim
        .calls()
        .iter()
        .filter(|c| c.path.starts_with("/services/data/v67.0/query/01g"))
        .count();
    assert!(pages >= 3, "nextRecordsUrl followed ({pages} pages)");
    org.sim.shutdown().await;
}

#[tokio::test]
async fn the_admins_current_session_is_never_deleted() {
    let org = Org::start().await;
    // Access-token mode cannot know the admin's username: the current session is skipped by
    // IsCurrent.
    let token = org.admin_access_token().await;
    let target = org.target_with(AppKind::ConnectedApp, org.token_admin(&token), |c| {
        c.integration_username = common::ADMIN_USER.into();
    });
    let revoked = target.revoke_access().await.unwrap();
    assert_eq!(revoked.sessions, 0);
    assert_alive(&org, &token).await;

    // In JWT mode the same misconfiguration is refused before anything is touched.
    let err = revoke_error_for_user(&org, common::ADMIN_USER.to_uppercase()).await;
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert_alive(&org, &token).await;
    org.sim.shutdown().await;
}

#[tokio::test]
async fn revoke_failures_are_classified_and_name_org_app_and_call() {
    let org = Org::start().await;
    let target = org.target(AppKind::ConnectedApp);
    target.preflight().await.unwrap();
    let grant = org.sim.add_grant(INTEGRATION_USER, CA).unwrap();

    let query = "/services/data/v67.0/query";
    let err = revoke_error_in_outage(&org, &target, 503, query).await;
    assert!(err.to_string().contains("org acme"), "{err}");

    let err = revoke_error_in_outage(&org, &target, 500, REVOKE).await;
    let text = format!("{err} {err:?}");
    assert!(
        text.contains("connected app Billing_Sync in org acme"),
        "{text}"
    );
    assert!(text.contains("revoking an OAuth token"), "{text}");
    assert!(
        !text.contains(&grant.delete_token),
        "delete token leaked: {text}"
    );
    assert!(!text.contains(&grant.refresh_token));
    // The retry (the orchestrator's) finishes the job.
    assert_eq!(target.revoke_access().await.unwrap().grants, 1);

    // A value with a quote is escaped, not a broken query: the user is simply not found.
    let err = revoke_error_for_user(&org, "o'brien@acme.test".into()).await;
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("o'brien@acme.test"), "{err}");
    org.sim.shutdown().await;
}

#[tokio::test]
async fn an_admin_without_the_permissions_is_denied_with_a_hint() {
    let org = Org::start().await;
    let token = org.integration_token(AppKind::ExternalClientApp).await;
    // Metadata rights but no Manage Users / Customize Application: the integration user's
    // session and the grants are invisible (so untouched), the ECA usage call is refused.
    let deployer = org.jwt_admin_as(DEPLOYER_USER, &org.admin);
    let target = org.target_as(AppKind::ExternalClientApp, deployer);
    let err = target.revoke_access().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(
        err.hint().unwrap().contains("Customize Application"),
        "{:?}",
        err.hint()
    );
    assert_alive(&org, &token).await;
    // No metadata rights at all: the app's label cannot be read.
    let auditor = org.jwt_admin_as(AUDITOR_USER, &org.admin);
    let err = org
        .target_as(AppKind::ConnectedApp, auditor)
        .revoke_access()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    org.sim.shutdown().await;
}

// ---- kill switch ----

#[tokio::test]
async fn kill_switch_off_blocks_a_valid_key_and_on_restores_it() {
    let org = Org::start().await;
    let (target, key) = eca_with_oauth_on(&org).await;
    assert!(accepts(&target, &key).await);
    let before = org
        .sim
        .eca_component_xml(POLICIES, POLICIES_MEMBER)
        .unwrap();

    let deploys = deploy_posts(&org);
    target.set_oauth_enabled(false, &rid()).await.unwrap();
    assert_eq!(deploy_posts(&org), deploys + 1, "one deploy, no check-only");
    assert_eq!(target.oauth_enabled().await.unwrap(), Some(false));
    match target.probe(rekey_api::Signer::Local(&key)).await.unwrap() {
        Probe::Rejected {
            error, may_clear, ..
        } => assert_eq!((error.as_str(), may_clear), ("invalid_client_id", false)),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let (status, _) = org.mint(ECA_KEY, INTEGRATION_USER, &org.old).await;
    assert_eq!(status, 400, "a valid key gets no token while OAuth is off");
    // Every other policy field is kept.
    let after = org
        .sim
        .eca_component_xml(POLICIES, POLICIES_MEMBER)
        .unwrap();
    assert_eq!(
        after,
        before.replace(
            "<isOauthPluginEnabled>true</isOauthPluginEnabled>",
            "<isOauthPluginEnabled>false</isOauthPluginEnabled>"
        )
    );
    assert!(after.contains("<isSamlPluginEnabled>false</isSamlPluginEnabled>"));

    // Idempotent: the state it already has deploys nothing.
    target.set_oauth_enabled(false, &rid()).await.unwrap();
    assert_eq!(deploy_posts(&org), deploys + 1);

    target.set_oauth_enabled(true, &rid()).await.unwrap();
    assert_eq!(deploy_posts(&org), deploys + 2);
    assert_eq!(target.oauth_enabled().await.unwrap(), Some(true));
    assert!(accepts(&target, &key).await);
    target.set_oauth_enabled(true, &rid()).await.unwrap();
    assert_eq!(deploy_posts(&org), deploys + 2);
    assert_eq!(
        org.sim
            .eca_component_xml(POLICIES, POLICIES_MEMBER)
            .unwrap(),
        before
    );
    org.sim.shutdown().await;
}

#[tokio::test]
async fn kill_switch_creates_the_policies_of_an_eca_that_has_none() {
    let org = Org::start_without_eca_policies().await;
    let (target, key) = eca_with_oauth_on(&org).await;
    let deploys = deploy_posts(&org);
    target.set_oauth_enabled(true, &rid()).await.unwrap();
    assert_eq!(deploy_posts(&org), deploys, "already on");
    target.set_oauth_enabled(false, &rid()).await.unwrap();
    assert_eq!(deploy_posts(&org), deploys + 1);
    assert!(
        org.sim
            .eca_component_xml(POLICIES, POLICIES_MEMBER)
            .unwrap()
            .contains("<isOauthPluginEnabled>false</isOauthPluginEnabled>")
    );
    assert!(!accepts(&target, &key).await);
    target.set_oauth_enabled(true, &rid()).await.unwrap();
    assert!(accepts(&target, &key).await);
    org.sim.shutdown().await;
}

#[tokio::test]
async fn a_connected_app_has_no_kill_switch() {
    let org = Org::start().await;
    let target = org.target(AppKind::ConnectedApp);
    assert_eq!(target.oauth_enabled().await.unwrap(), None);
    let deploys = deploy_posts(&org);
    for enabled in [false, true] {
        let err = target.set_oauth_enabled(enabled, &rid()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert!(
            err.to_string().contains("connected app Billing_Sync"),
            "{err}"
        );
    }
    assert_eq!(deploy_posts(&org), deploys);
    // A missing ECA is NotFound, for reading and switching alike.
    let missing = org.target_with(AppKind::ExternalClientApp, org.jwt_admin(), |c| {
        c.app = "No_Such_ECA".into();
        c.consumer_key = Some(CA_KEY.into());
    });
    assert_eq!(
        missing.oauth_enabled().await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        missing
            .set_oauth_enabled(false, &rid())
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    org.sim.shutdown().await;
}
