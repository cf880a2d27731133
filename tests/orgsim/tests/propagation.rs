//! The `random` propagation mode: inside the window each token request is verified against only
//! the previous or only the new certificate, chosen per request, so the same key is sometimes
//! accepted and sometimes refused; after the window only the new certificate verifies.

mod common;

use common::*;
use orgsim::PropagationMode;
use reqwest::Method;
use serde_json::json;

/// Requests per key: with even odds, all 64 landing on one side has probability 2^-63.
const REQUESTS: usize = 64;

/// Deploys key 2's certificate onto Billing_Sync (key 0's is seeded).
async fn rotate_billing_cert(sim: &orgsim::OrgSim) {
    let admin = admin_token(sim).await;
    let done = deploy(sim, &admin, default_options(), billing_cert_zip(2)).await;
    assert_eq!(done["deployResult"]["status"], "Succeeded", "{done}");
    assert_app_cert(sim, "Billing_Sync", 2);
}

/// (accepted, refused with `invalid assertion`) over [`REQUESTS`] grants signed with `key`.
async fn outcomes(sim: &orgsim::OrgSim, key: usize) -> (usize, usize) {
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..REQUESTS {
        let (status, body, _) =
            grant(sim, &assertion(key, CA_KEY, "integ@acme.example", LOGIN)).await;
        match status {
            200 => accepted += 1,
            400 => {
                assert_eq!(
                    body,
                    json!({"error": "invalid_grant", "error_description": "invalid assertion"})
                );
                refused += 1;
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    (accepted, refused)
}

#[tokio::test]
async fn random_mode_trusts_the_old_or_the_new_certificate_per_request_then_only_the_new() {
    let sim = start("propagation_secs = 600\npropagation_mode = \"random\"").await;
    rotate_billing_cert(&sim).await;

    for key in [0, 2] {
        let (accepted, refused) = outcomes(&sim, key).await;
        assert!(
            accepted > 0 && refused > 0,
            "key {key} inside the window: {accepted} accepted, {refused} refused"
        );
    }
    // A key the app never held is refused whichever certificate a request is checked against.
    assert_eq!(outcomes(&sim, 1).await, (0, REQUESTS));

    // Exactly the window's length after the change (plus however long the requests above
    // took), only the new certificate verifies: the window is measured from the change in
    // milliseconds, so it does not last into the next whole second.
    sim.set_clock_offset(600);
    assert_eq!(outcomes(&sim, 0).await, (0, REQUESTS));
    assert_eq!(outcomes(&sim, 2).await, (REQUESTS, 0));
    sim.shutdown().await;
}

/// A hang guard only: the window below ends within a second of real time.
const HANG_GUARD: std::time::Duration = std::time::Duration::from_secs(60);

#[tokio::test]
async fn random_mode_through_the_control_api_and_a_window_that_ends_by_the_wall_clock() {
    let sim = start("").await;
    let (status, _) = control(
        &sim,
        Method::POST,
        "propagation",
        Some(json!({"secs": 600, "mode": "random"})),
    )
    .await;
    assert_eq!(status, 200);
    rotate_billing_cert(&sim).await;
    // Ten minutes of window: the requests are inside it however slow the machine is.
    let (accepted, refused) = outcomes(&sim, 0).await;
    assert!(
        accepted > 0 && refused > 0,
        "{accepted} accepted, {refused} refused"
    );
    // Into the window's last second of simulated time: the wall clock ends it. Waited for, not
    // timed: inside the window a batch of key 0 is refused whole with probability 2^-64.
    sim.set_clock_offset(599);
    let deadline = std::time::Instant::now() + HANG_GUARD;
    while outcomes(&sim, 0).await != (0, REQUESTS) {
        assert!(
            std::time::Instant::now() < deadline,
            "the window never ended by the wall clock"
        );
    }
    assert_eq!(outcomes(&sim, 2).await, (REQUESTS, 0));
    sim.set_propagation(0, PropagationMode::Random);
    assert_eq!(outcomes(&sim, 2).await, (REQUESTS, 0));
    sim.shutdown().await;
}
