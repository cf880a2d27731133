//! The consumer secret target against orgsim: an External Client App's consumer key and secret
//! staged, rotated and deleted over Connect REST; the org setting and permission gates; probes
//! and `rekey token` mints through the client credentials flow; and no secret in any message.

mod common;

use common::{ADMIN_USER, CA, ECA, Org};
use orgsim::{Fault, FaultKind};
use rekey_api::{
    ConsumerSecret, ConsumerSecretTarget, Error, ErrorKind, Probe, Proof, StagedState,
};
use rekey_salesforce::{
    AppKind, ClientCredentialsConfig, ClientCredentialsMinter, Mint, SalesforceTarget,
};
use std::time::Duration;

/// An ECA with the client credentials flow on and a run-as user.
const PAY: &str = "Payments_ECA";
const PAY_KEY: &str = "3MVG9paymentsEca.key_0004";
const PAY_SECRET: &str = "5EED0PAYMENTS0SECRET00000000000000000000000000000000000000000001";
const RUN_AS: &str = "runas@acme.test";
const DEVELOPER: &str = "ExternalClientAppDeveloper";
const VIEW_SECRET: &str = "ViewClientSecret";

const EXTRA_SEED: &str = r#"
[[profiles]]
name = "Payments Run-As"
permissions = ["ApiEnabled", "ApiOnly"]

[[users]]
username = "runas@acme.test"
profile = "Payments Run-As"

[[external_client_apps]]
name = "Payments_ECA"
consumer_key = "3MVG9paymentsEca.key_0004"
consumer_secret = "5EED0PAYMENTS0SECRET00000000000000000000000000000000000000000001"
header = '''<?xml version="1.0" encoding="UTF-8"?>
<ExternalClientApplication xmlns="http://soap.sforce.com/2006/04/metadata">
    <contactEmail>platform-security@acme.test</contactEmail>
    <distributionState>Local</distributionState>
    <isProtected>false</isProtected>
    <label>Payments ECA</label>
</ExternalClientApplication>
'''
oauth_settings = '''<?xml version="1.0" encoding="UTF-8"?>
<ExtlClntAppOauthSettings xmlns="http://soap.sforce.com/2006/04/metadata">
    <commaSeparatedOauthScopes>Api</commaSeparatedOauthScopes>
    <externalClientApplication>Payments_ECA</externalClientApplication>
    <label>Payments ECA OAuth</label>
</ExtlClntAppOauthSettings>
'''
global_oauth_settings = '''<?xml version="1.0" encoding="UTF-8"?>
<ExtlClntAppGlobalOauthSettings xmlns="http://soap.sforce.com/2006/04/metadata">
    <callbackUrl>https://localhost/unused</callbackUrl>
    <consumerKey>3MVG9paymentsEca.key_0004</consumerKey>
    <externalClientApplication>Payments_ECA</externalClientApplication>
    <isClientCredentialsFlowEnabled>true</isClientCredentialsFlowEnabled>
    <isConsumerSecretOptional>false</isConsumerSecretOptional>
    <label>Payments ECA Global OAuth</label>
</ExtlClntAppGlobalOauthSettings>
'''
oauth_policies = '''<?xml version="1.0" encoding="UTF-8"?>
<ExtlClntAppOauthConfigurablePolicies xmlns="http://soap.sforce.com/2006/04/metadata">
    <clientCredentialsFlowUser>runas@acme.test</clientCredentialsFlowUser>
    <externalClientApplication>Payments_ECA</externalClientApplication>
    <isClientCredentialsFlowEnabled>true</isClientCredentialsFlowEnabled>
    <label>Payments ECA Policies</label>
    <permittedUsersPolicyType>AdminApprovedPreAuthorized</permittedUsersPolicyType>
</ExtlClntAppOauthConfigurablePolicies>
'''

[[external_client_apps]]
name = "Vendor_ECA"
consumer_key = "3MVG9vendorEca.key_0005"
header = '''<?xml version="1.0" encoding="UTF-8"?>
<ExternalClientApplication xmlns="http://soap.sforce.com/2006/04/metadata">
    <contactEmail>vendor@example.test</contactEmail>
    <distributionState>Packaged</distributionState>
    <isProtected>false</isProtected>
    <label>Vendor ECA</label>
</ExternalClientApplication>
'''
"#;

/// An org with the REST setting on and the admin holding both permissions.
async fn org() -> Org {
    let org = Org::start_with_extra("eca_secrets_over_rest = true", EXTRA_SEED).await;
    for permission in [DEVELOPER, VIEW_SECRET] {
        org.sim
            .set_user_permission(ADMIN_USER, permission, true)
            .unwrap();
    }
    org
}

fn target(org: &Org, app: &str) -> SalesforceTarget {
    org.target_with(AppKind::ExternalClientApp, org.jwt_admin(), |c| {
        c.app = app.into();
        c.integration_username = RUN_AS.into();
    })
}

fn pair(key: &str, secret: &str) -> ConsumerSecret {
    ConsumerSecret::new(key, secret).unwrap()
}

async fn accepted(t: &SalesforceTarget, secret: &ConsumerSecret) -> bool {
    match t.probe(secret).await.unwrap() {
        Probe::Accepted { .. } => true,
        Probe::Rejected { .. } => false,
    }
}

/// Everything an error shows: message, hint and Debug.
fn shown(e: &Error) -> String {
    format!("{e} | {} | {e:?}", e.hint().unwrap_or_default())
}

fn assert_no_secret(text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "a secret leaked into: {text}");
    }
}

#[tokio::test]
async fn stage_rotate_delete_moves_the_pair_with_an_overlap_and_ends_the_old_one() {
    let org = org().await;
    let t = target(&org, PAY);
    t.preflight().await.unwrap();
    assert_eq!(t.proof().await.unwrap(), Proof::ClientCredentials);
    let old = t.primary().await.unwrap();
    assert_eq!((old.key(), old.expose_secret()), (PAY_KEY, PAY_SECRET));
    assert!(t.staged().await.unwrap().is_none());
    assert!(accepted(&t, &old).await);

    let (staged, new) = t.stage().await.unwrap();
    assert_eq!(staged.state, StagedState::Active);
    assert_eq!(staged.key, new.key());
    assert_ne!(new.key(), PAY_KEY);
    let info = org.sim.eca_consumer(PAY).unwrap();
    let sim_staged = info.staged.clone().unwrap();
    assert_eq!(
        (sim_staged.id.as_str(), sim_staged.secret.as_str()),
        (staged.id.as_str(), new.expose_secret())
    );
    assert!(
        staged.created_by.is_some() && staged.created_at.is_some() && staged.expires_at.is_some()
    );
    // Staged is not primary yet: the primary pair is unchanged, the staged one cannot log in.
    let still = t.primary().await.unwrap();
    assert_eq!(still.fingerprint(), old.fingerprint());
    assert!(!accepted(&t, &new).await);
    let (again, again_secret) = t.staged().await.unwrap().unwrap();
    assert_eq!(
        (again.id.as_str(), again.state),
        (staged.id.as_str(), StagedState::Active)
    );
    assert_eq!(again_secret.unwrap().fingerprint(), new.fingerprint());

    t.rotate(&staged.id).await.unwrap();
    assert_eq!(t.primary().await.unwrap().fingerprint(), new.fingerprint());
    let (rotated, rotated_secret) = t.staged().await.unwrap().unwrap();
    assert_eq!(
        (rotated.state, rotated.key.as_str()),
        (StagedState::Rotated, PAY_KEY)
    );
    assert_eq!(rotated_secret.unwrap().fingerprint(), old.fingerprint());
    // The overlap: both pairs log in.
    assert!(accepted(&t, &old).await);
    assert!(accepted(&t, &new).await);

    t.delete_staged(&rotated.id).await.unwrap();
    assert!(t.staged().await.unwrap().is_none());
    match t.probe(&old).await.unwrap() {
        Probe::Rejected {
            error,
            description,
            may_clear,
        } => {
            assert_eq!(
                (error.as_str(), description.as_str(), may_clear),
                ("invalid_client_id", "client identifier invalid", false)
            );
        }
        Probe::Accepted { .. } => panic!("the deleted pair still logs in"),
    }
    assert!(accepted(&t, &new).await);
    // Already gone (and a made-up id): what was asked for.
    t.delete_staged(&rotated.id).await.unwrap();
    t.delete_staged("0Hs000000000000AAA").await.unwrap();
    assert_eq!(
        org.sim.eca_consumer(PAY).unwrap().secret,
        new.expose_secret()
    );
    let debug = format!("{t:?} {staged:?} {rotated:?} {new:?} {old:?}");
    assert_no_secret(&debug, &[PAY_SECRET, new.expose_secret()]);
    org.sim.shutdown().await;
}

#[tokio::test]
async fn a_taken_slot_is_a_conflict_naming_it_and_nothing_is_deleted() {
    let org = org().await;
    let t = target(&org, PAY);
    let (first, first_secret) = t.stage().await.unwrap();
    let err = t.stage().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.is_changed_nothing());
    let text = shown(&err);
    let creator = first.created_by.clone().unwrap();
    for part in [
        first.id.as_str(),
        "Active",
        creator.as_str(),
        "someone else may be rotating",
        "rekey status",
    ] {
        assert!(text.contains(part), "{part} missing from {text}");
    }
    assert_no_secret(&text, &[PAY_SECRET, first_secret.expose_secret()]);
    let left = org.sim.eca_consumer(PAY).unwrap().staged.unwrap();
    assert_eq!((left.id, left.state.as_str()), (first.id.clone(), "Active"));
    assert!(!org.sim.calls().iter().any(|c| c.method == "DELETE"));
    org.sim.shutdown().await;
}

#[tokio::test]
async fn the_rest_setting_and_each_permission_are_refused_with_their_own_words() {
    let org = org().await;
    let t = target(&org, PAY);
    org.sim.set_eca_secrets_over_rest(false);
    let setting = t.preflight().await.unwrap_err();
    let staging = t.stage().await.unwrap_err();
    for e in [&setting, &staging] {
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
        assert!(e.is_changed_nothing());
        let text = shown(e);
        assert!(
            text.contains("Allow access to External Client App consumer secrets via REST API"),
            "{text}"
        );
        assert!(
            text.contains("enableClientSecretInRestApiAccess")
                && text.contains("Setup → External Client App Settings"),
            "{text}"
        );
    }
    org.sim.set_eca_secrets_over_rest(true);

    org.sim
        .set_user_permission(ADMIN_USER, VIEW_SECRET, false)
        .unwrap();
    let no_view = t.preflight().await.unwrap_err();
    assert!(t.stage().await.is_err());
    org.sim
        .set_user_permission(ADMIN_USER, VIEW_SECRET, true)
        .unwrap();
    org.sim
        .set_user_permission(ADMIN_USER, DEVELOPER, false)
        .unwrap();
    let no_dev = t.preflight().await.unwrap_err();
    for (e, missing) in [(&no_view, VIEW_SECRET), (&no_dev, DEVELOPER)] {
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        let text = shown(e);
        // Salesforce's own message names the missing permission; the hint names both.
        assert!(text.contains(missing), "{text}");
        assert!(
            text.contains("lacks a permission") && text.contains("View Client Secret"),
            "{text}"
        );
        assert!(
            !text.contains("enableClientSecretInRestApiAccess"),
            "{text}"
        );
    }
    assert!(!shown(&setting).contains("lacks a permission"));
    assert_eq!(org.sim.eca_consumer(PAY).unwrap().staged, None);
    assert_eq!(org.sim.eca_consumer(PAY).unwrap().secret, PAY_SECRET);
    org.sim.shutdown().await;
}

#[tokio::test]
async fn an_old_api_version_and_a_connected_app_are_refused_before_any_call() {
    let org = org().await;
    let old_api = org.target_with(AppKind::ExternalClientApp, org.jwt_admin(), |c| {
        c.app = PAY.into();
        c.api_version = "64.0".into();
    });
    for e in [
        old_api.preflight().await.unwrap_err(),
        old_api.stage().await.unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(
            e.to_string().contains("64.0") && e.to_string().contains("65.0"),
            "{e}"
        );
    }
    let ca = org.target(AppKind::ConnectedApp);
    let secret = pair("3MVG9x", "y");
    let errors = [
        ca.preflight().await.unwrap_err(),
        ca.proof().await.unwrap_err(),
        ca.primary().await.unwrap_err(),
        ca.staged().await.unwrap_err(),
        ca.stage().await.unwrap_err(),
        ca.rotate("0Hs1").await.unwrap_err(),
        ca.delete_staged("0Hs1").await.unwrap_err(),
        ca.probe(&secret).await.unwrap_err(),
        ca.revoke_access().await.unwrap_err(),
    ];
    for e in &errors {
        assert_eq!(e.kind(), ErrorKind::Config);
        let text = shown(e);
        assert!(
            text.contains(CA)
                && text.contains("no API to rotate a Connected App's consumer secret"),
            "{text}"
        );
        assert!(
            text.contains("Manage Consumer Details") && text.contains("External Client App"),
            "{text}"
        );
    }
    assert!(org.sim.calls().is_empty(), "{:?}", org.sim.calls());
    org.sim.shutdown().await;
}

#[tokio::test]
async fn proof_follows_the_client_credentials_flow_and_its_run_as_user() {
    let org = org().await;
    assert_eq!(
        target(&org, PAY).proof().await.unwrap(),
        Proof::ClientCredentials
    );
    assert_eq!(target(&org, ECA).proof().await.unwrap(), Proof::ReadBack);
    org.sim.shutdown().await;
}

#[tokio::test]
async fn revoke_access_ends_the_run_as_users_sessions_and_the_apps_tokens() {
    let org = org().await;
    let t = target(&org, PAY);
    let (status, body) = org.sim.client_credentials_grant(PAY_KEY, PAY_SECRET).await;
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(org.sim.limits(&token).await.0, 200);
    let revoked = t.revoke_access().await.unwrap();
    assert!(revoked.sessions >= 1, "{revoked:?}");
    assert_eq!(revoked.app_tokens_deleted, Some(true));
    assert_eq!(org.sim.limits(&token).await.0, 401);
    let again = t.revoke_access().await.unwrap();
    assert_eq!(again.sessions, 0);
    org.sim.shutdown().await;
}

#[tokio::test]
async fn rekey_token_mints_with_a_consumer_secret_and_reports_refusals() {
    let org = org().await;
    let minter = ClientCredentialsMinter::new(ClientCredentialsConfig {
        org: "acme".into(),
        login_url: org.sim.base_url(),
        request_timeout: Duration::from_secs(60),
    })
    .unwrap();
    let minted = match minter.mint(&pair(PAY_KEY, PAY_SECRET)).await.unwrap() {
        Mint::Granted(m) => m,
        Mint::Refused(r) => panic!("refused: {r}"),
    };
    assert_eq!(minted.instance_url, org.sim.base_url());
    assert_eq!(
        org.sim.limits(minted.access_token.expose_secret()).await.0,
        200
    );
    assert_no_secret(
        &format!("{minted:?}"),
        &[minted.access_token.expose_secret(), PAY_SECRET],
    );

    let wrong = "5EED0WRONG";
    let refusal = match minter.mint(&pair(PAY_KEY, wrong)).await.unwrap() {
        Mint::Refused(r) => r,
        Mint::Granted(_) => panic!("a wrong secret minted a token"),
    };
    assert_eq!(
        (refusal.error.as_str(), refusal.description.as_str()),
        ("invalid_client", "invalid client credentials")
    );
    assert!(!refusal.may_clear_for_consumer_secret());
    assert_no_secret(&format!("{refusal} {refusal:?}"), &[wrong, PAY_SECRET]);
    // Only token requests (and the test's own limits call): no admin login, no metadata.
    let calls = org.sim.calls();
    assert!(
        calls
            .iter()
            .all(|c| c.path == "/services/oauth2/token" || c.path.ends_with("/limits/")),
        "{calls:?}"
    );
    org.sim.shutdown().await;
}

#[tokio::test]
async fn probing_an_app_without_the_client_credentials_flow_is_a_refusal_that_will_not_clear() {
    let org = org().await;
    let t = target(&org, ECA);
    let primary = t.primary().await.unwrap();
    match t.probe(&primary).await.unwrap() {
        Probe::Rejected {
            may_clear, error, ..
        } => assert!(!may_clear, "{error}"),
        Probe::Accepted { .. } => panic!("an app without the flow issued a token"),
    }
    org.sim.shutdown().await;
}

#[tokio::test]
async fn a_packaged_app_is_refused_by_preflight() {
    let org = org().await;
    let err = target(&org, "Vendor_ECA").preflight().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("packaged"), "{err}");
    assert!(
        !org.sim
            .calls()
            .iter()
            .any(|c| c.method != "GET" && c.path.contains("/apps/oauth"))
    );
    org.sim.shutdown().await;
}

#[tokio::test]
async fn temporary_failures_are_temporary_and_minting_retries_them() {
    let org = org().await;
    let t = target(&org, PAY);
    t.primary().await.unwrap();
    org.sim.inject_fault(
        Fault::new(FaultKind::ServerError {
            status: 503,
            body: String::new(),
        })
        .on_path("/services/data/v67.0/apps/oauth/credentials")
        .times(1),
    );
    let err = t.stage().await.unwrap_err();
    assert_eq!(
        (err.kind(), err.is_temporary()),
        (ErrorKind::Unavailable, true),
        "{err}"
    );
    assert_eq!(org.sim.eca_consumer(PAY).unwrap().staged, None);
    org.sim.inject_fault(
        Fault::new(FaultKind::DataNotAvailable)
            .on_path("/services/data/v67.0/apps/oauth/credentials")
            .times(1),
    );
    let err = t.primary().await.unwrap_err();
    assert_eq!(
        (err.kind(), err.is_temporary()),
        (ErrorKind::Unavailable, true),
        "{err}"
    );
    assert!(!shown(&err).contains(PAY_SECRET));

    let minter = ClientCredentialsMinter::new(ClientCredentialsConfig {
        org: "acme".into(),
        login_url: org.sim.base_url(),
        request_timeout: Duration::from_secs(60),
    })
    .unwrap();
    let before = org.token_posts();
    org.sim.inject_fault(
        Fault::new(FaultKind::ServerError {
            status: 503,
            body: String::new(),
        })
        .on_path("/services/oauth2/token")
        .times(2),
    );
    assert!(matches!(
        minter.mint(&pair(PAY_KEY, PAY_SECRET)).await.unwrap(),
        Mint::Granted(_)
    ));
    assert_eq!(org.token_posts() - before, 3, "two 503s, then the grant");
    org.sim.shutdown().await;
}
