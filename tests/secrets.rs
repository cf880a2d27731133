//! Consumer secret credentials through the real binary against the org emulator, on the file
//! store: an External Client App's consumer key and secret rotated through Salesforce's staged
//! credentials, the previous pair valid until it is retired, tokens minted with the client
//! credentials flow.

mod world;

use world::World;

/// Salesforce's answer to a client credentials login with `key`/`secret`: (status, body).
async fn login(w: &World, key: &str, secret: &str) -> (u16, String) {
    w.sim.client_credentials_grant(key, secret).await
}

#[tokio::test]
async fn a_rotation_makes_the_staged_pair_primary_and_keeps_the_old_one_valid_until_retired() {
    let mut w = World::etl_only().await;
    let before = w.etl_consumer();
    let rotated = w.ok(&["rotate", "etl"]).await;
    let after = w.etl_consumer();
    assert_ne!(after.key, before.key, "the key changes with the secret");
    assert_ne!(after.secret, before.secret);
    // No consumer proved adoption, so the previous pair stays valid (revoke_previous_after_hours).
    let slot = after
        .staged
        .as_ref()
        .expect("the previous pair sits in the staged slot");
    assert_eq!(
        (slot.key.as_str(), slot.state.as_str()),
        (before.key.as_str(), "Rotated")
    );
    assert!(
        rotated.stdout.contains("stays valid for 24h"),
        "{}",
        rotated.stdout
    );
    assert_eq!(
        login(&w, &before.key, &before.secret).await.0,
        200,
        "old pair still works"
    );
    assert_eq!(
        login(&w, &after.key, &after.secret).await.0,
        200,
        "new pair works"
    );

    // The store's CURRENT is the app's primary pair, PREVIOUS the old one.
    let status = w.ok(&["status", "etl", "--json"]).await;
    let row: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let row = &row.as_array().map_or(&row, |a| &a[0]);
    assert_eq!(row["generation"], 2, "{row}");
    let current = rekey_api::ConsumerSecret::new(after.key.clone(), after.secret.clone()).unwrap();
    assert_eq!(row["fingerprint"], current.fingerprint().to_hex(), "{row}");
    // Status says the previous pair still logs in, and how to end that.
    assert_eq!(row["staged"]["state"], "rotated", "{row}");
    assert_eq!(row["staged"]["key"], before.key.as_str(), "{row}");
    let text = w.ok(&["status", "etl"]).await;
    assert!(
        text.stdout.contains(&format!(
            "previous consumer key {} still logs in until",
            before.key
        )) && text.stdout.contains("`rekey retire etl` deletes it"),
        "{}",
        text.stdout
    );

    // `rekey token` mints with CURRENT through the client credentials flow.
    let token = w.ok(&["token", "etl", "--json"]).await;
    let token: serde_json::Value = serde_json::from_str(&token.stdout).unwrap();
    assert_eq!(token["stage"], "current", "{token}");

    // Retire: the old pair is refused from now on, with Salesforce's own error.
    w.ok(&["retire", "etl"]).await;
    let (status, body) = login(&w, &before.key, &before.secret).await;
    assert_eq!(status, 400);
    assert!(body.contains("invalid_client_id"), "{body}");
    assert!(
        w.etl_consumer().staged.is_none(),
        "nothing left staged at Salesforce"
    );
    let status = w.ok(&["status", "etl", "--json"]).await;
    assert!(!status.stdout.contains("\"staged\""), "{}", status.stdout);
    assert_eq!(login(&w, &after.key, &after.secret).await.0, 200);
    // Nothing rekey printed holds a secret.
    for secret in [&before.secret, &after.secret] {
        assert!(
            !w.printed.iter().any(|p| p.contains(secret.as_str())),
            "a secret was printed"
        );
    }
}

#[tokio::test]
async fn run_retires_the_previous_pair_once_its_hours_pass_and_check_warns_if_nobody_does() {
    let mut w = World::etl_only().await;
    let before = w.etl_consumer();
    w.ok(&["rotate", "etl"]).await;
    // Within revoke_previous_after_hours (24) nothing is due: the old pair stays valid.
    let run = w.ok(&["run", "--json"]).await;
    assert!(run.stdout.contains("\"not_due\""), "{}", run.stdout);
    assert_eq!(w.etl_consumer().staged.unwrap().state, "Rotated");
    // Long after the hours with no run: check warns (exit 1), naming the command that fixes it.
    let check = w.rekey_ahead(49 * 3600, &["check", "etl"]).await;
    assert_eq!(check.code, 1, "{}{}", check.stdout, check.stderr);
    assert!(
        check.stdout.contains("previous consumer secret"),
        "{}",
        check.stdout
    );
    assert!(
        check.stdout.contains("rekey retire etl"),
        "{}",
        check.stdout
    );
    // A dry run says what it would do and does nothing.
    let dry = w.ok_ahead(25 * 3600, &["run", "--dry-run", "--json"]).await;
    assert!(dry.stdout.contains("\"would_retire\""), "{}", dry.stdout);
    assert_eq!(w.etl_consumer().staged.unwrap().state, "Rotated");
    // Past the hours, a run deletes it: Salesforce refuses it from then on.
    let run = w.ok_ahead(25 * 3600, &["run", "--json"]).await;
    assert!(run.stdout.contains("\"retired\""), "{}", run.stdout);
    assert!(w.etl_consumer().staged.is_none());
    let (status, body) = login(&w, &before.key, &before.secret).await;
    assert_eq!(
        (status, body.contains("invalid_client_id")),
        (400, true),
        "{body}"
    );
    let check = w.rekey_ahead(49 * 3600, &["check", "etl"]).await;
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    // The retire is journaled, and it is no rotation: the last success is the rotation's.
    let journal = w.ok(&["journal", "etl", "--json"]).await;
    assert!(journal.stdout.contains("\"retire\""), "{}", journal.stdout);
}

/// Every command of the consumer secret runbooks, as written, exits 0 and leaves what the
/// runbook is for: a rotation finished with the previous pair deleted; after an emergency, the
/// leaked pair refused with Salesforce's error.
#[tokio::test]
async fn the_consumer_secret_runbooks_work_as_written() {
    let mut w = World::etl_only().await;
    let before = w.etl_consumer();
    for args in world::runbook_commands("runbooks/consumer-secret-rotation.md", "etl") {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        w.ok(&args).await;
    }
    let rotated = w.etl_consumer();
    assert_ne!(rotated.key, before.key);
    assert!(rotated.staged.is_none(), "retired: nothing left staged");
    assert_eq!(login(&w, &before.key, &before.secret).await.0, 400);

    for args in world::runbook_commands("runbooks/emergency-secret-revocation.md", "etl") {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        w.ok(&args).await;
    }
    let after = w.etl_consumer();
    assert_ne!(after.key, rotated.key, "a new pair");
    assert!(
        after.staged.is_none(),
        "the leaked pair is deleted, nothing staged"
    );
    let (status, body) = login(&w, &rotated.key, &rotated.secret).await;
    assert_eq!(status, 400);
    assert!(body.contains("invalid_client_id"), "{body}");
    assert_eq!(login(&w, &after.key, &after.secret).await.0, 200);
    for secret in [&before.secret, &rotated.secret, &after.secret] {
        assert!(
            !w.printed.iter().any(|p| p.contains(secret.as_str())),
            "a secret was printed"
        );
    }
}
