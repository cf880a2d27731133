//! Minting integration tokens against orgsim: no admin connection, the answer for a trusted
//! and an untrusted key, refusals that are not about the key, and temporary failures retried.

mod common;

use common::{CA_KEY, INTEGRATION_USER, Org, Pair};
use orgsim::{Fault, FaultKind};
use rekey_api::ErrorKind;
use rekey_salesforce::{Mint, MintConfig, Minted, Minter, Refusal};
use std::time::Duration;

fn minter(org: &Org, consumer_key: &str, username: &str) -> Minter {
    Minter::new(MintConfig {
        org: "acme".into(),
        login_url: org.sim.base_url(),
        audience: org.sim.base_url(),
        consumer_key: consumer_key.into(),
        username: username.into(),
        // A hang guard only: no test here makes a request time out.
        request_timeout: Duration::from_secs(60),
    })
    .unwrap()
}

fn granted(mint: Mint) -> Minted {
    match mint {
        Mint::Granted(minted) => minted,
        Mint::Refused(r) => panic!("refused: {r}"),
    }
}

fn refused(mint: Mint) -> Refusal {
    match mint {
        Mint::Refused(refusal) => refusal,
        Mint::Granted(_) => panic!("a token was issued"),
    }
}

#[tokio::test]
async fn the_trusted_key_mints_a_working_token_and_any_other_key_is_untrusted() {
    let org = Org::start().await;
    let m = minter(&org, CA_KEY, INTEGRATION_USER);
    let minted = granted(
        m.mint(rekey_api::Signer::Local(&org.old.key()))
            .await
            .unwrap(),
    );
    assert_eq!(minted.instance_url, org.sim.base_url());
    let (status, _) = org.sim.limits(minted.access_token.expose_secret()).await;
    assert_eq!(status, 200);
    assert!(!format!("{minted:?}").contains(minted.access_token.expose_secret()));

    let stranger = Pair::generate("not on the app");
    let refusal = refused(
        m.mint(rekey_api::Signer::Local(&stranger.key()))
            .await
            .unwrap(),
    );
    assert!(refusal.untrusted_key(), "{refusal}");
    // One grant per mint and the test's own limits call: no admin login, no metadata read.
    let paths: Vec<String> = org.sim.calls().into_iter().map(|c| c.path).collect();
    assert_eq!(
        paths,
        [
            "/services/oauth2/token",
            "/services/data/v67.0/limits/",
            "/services/oauth2/token"
        ]
    );
    org.sim.shutdown().await;
}

#[tokio::test]
async fn refusals_about_the_app_or_user_are_not_blamed_on_the_key() {
    let org = Org::start().await;
    let wrong_app = refused(
        minter(&org, "3MVG9NoSuchApp", INTEGRATION_USER)
            .mint(rekey_api::Signer::Local(&org.old.key()))
            .await
            .unwrap(),
    );
    assert_eq!(wrong_app.error, "invalid_client_id");
    assert!(!wrong_app.untrusted_key());
    // The auditor exists but is not pre-authorized on the integration app.
    let not_allowed = refused(
        minter(&org, CA_KEY, common::AUDITOR_USER)
            .mint(rekey_api::Signer::Local(&org.old.key()))
            .await
            .unwrap(),
    );
    assert_eq!(not_allowed.error, "invalid_app_access");
    assert!(!not_allowed.untrusted_key());
    org.sim.shutdown().await;
}

#[tokio::test]
async fn temporary_failures_are_retried_and_a_lasting_one_is_unavailable() {
    let org = Org::start().await;
    let m = minter(&org, CA_KEY, INTEGRATION_USER);
    org.sim.inject_fault(
        Fault::new(FaultKind::ServerError {
            status: 503,
            body: String::new(),
        })
        .on_path("/services/oauth2/token")
        .times(2),
    );
    granted(
        m.mint(rekey_api::Signer::Local(&org.old.key()))
            .await
            .unwrap(),
    );
    assert_eq!(org.sim.calls().len(), 3, "two 503s, then the grant");

    org.sim
        .inject_fault(Fault::new(FaultKind::RateLimitExceeded));
    let err = m
        .mint(rekey_api::Signer::Local(&org.old.key()))
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind(), err.is_temporary()),
        (ErrorKind::Unavailable, true),
        "{err}"
    );
    org.sim.shutdown().await;
}
