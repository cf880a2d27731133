//! Every command of every runbook, run as written (the `sh` blocks of `runbooks/*.md`, `CRED`
//! replaced), against a stuck rotation, a scheduled one and an emergency, for every store kind;
//! each must exit as the runbook says and leave the state it is for.

mod scene;
mod world;

use rekey_api::{Generation, SecretStore};
use scene::*;
use std::path::Path;
use world::{Held, runbook_commands};

/// What a read-only command must leave as it found it: every store file and the app's
/// certificate.
fn looked_at(s: &Scene) -> (Vec<(std::path::PathBuf, Vec<u8>)>, String) {
    (world::snapshot(&s.w.path("keys")), s.w.app_fingerprint(APP))
}

/// The state a runbook command leaves, by what it is for: a rotation finished (`rotate`,
/// `resume`, a `run` that found billing due), undone (`abort`), a key put under management
/// (`import`); anything else only looks, and changes no store file and not the app.
async fn assert_runbook_state(
    s: &mut Scene,
    args: &[&str],
    before: &(Vec<(std::path::PathBuf, Vec<u8>)>, String),
    context: &str,
) {
    match args {
        ["rotate", ..] | ["resume", ..] | ["run"] => s.assert_settled(2, context).await,
        ["abort", ..] => {
            s.assert_settled(1, context).await;
            let journal = s.w.json(&["journal", CRED]).await;
            let close = journal.as_array().unwrap().last().unwrap().clone();
            let reason = args
                .iter()
                .skip_while(|a| **a != "--reason")
                .nth(1)
                .unwrap();
            assert_eq!(close["detail"], format!("aborted: {reason}"), "{context}");
        }
        ["import", ..] => {
            let status = s.w.json(&["status", CRED]).await;
            assert_eq!(status[0]["generation"], 1, "{context}\n{status}");
            assert_eq!(
                status[0]["stores"][0]["matches_app"], true,
                "{context}\n{status}"
            );
            assert!(status[0]["open_rotation"].is_null(), "{context}\n{status}");
            s.w.ok(&["verify", CRED]).await;
        }
        _ => assert!(
            looked_at(s) == *before,
            "{context}: changed the store or the app"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_command_of_the_rollback_runbook_works_on_a_stuck_rotation() {
    let commands = runbook_commands("runbooks/rollback.md", CRED);
    assert!(commands.len() >= 7, "{commands:?}");
    let scenarios = commands.into_iter().map(|command| async move {
        let mut s = Scene::file().await;
        let context = format!("rekey {}", command.join(" "));
        // Stuck after the new certificate reached the app.
        let held = Held::spawn(&s.w, &["rotate", CRED], "publish:done")
            .reached(&mut s.w)
            .await;
        held.kill(&mut s.w).await;
        let args: Vec<&str> = command.iter().map(String::as_str).collect();
        let before = looked_at(&s);
        let run = s.w.rekey(&args).await;
        assert_eq!(run.code, 0, "{context}\n{}{}", run.stdout, run.stderr);
        match args[0] {
            "resume" => s.assert_settled(2, &context).await,
            "abort" => {
                s.assert_settled(1, &context).await;
                let journal = s.w.json(&["journal", CRED]).await;
                let close = journal.as_array().unwrap().last().unwrap().clone();
                assert_eq!(
                    close["detail"], "aborted: deploy window closed",
                    "{context}"
                );
            }
            _ => {
                let status = s.w.json(&["status", CRED]).await;
                assert!(
                    status[0]["open_rotation"].is_string(),
                    "{context}: only looks\n{status}"
                );
                assert!(
                    looked_at(&s) == before,
                    "{context}: changed the store or the app"
                );
            }
        }
        s.assert_no_leaks(&context);
    });
    run_all(scenarios).await;
}

/// Every `rekey` command of the scheduling and alert-response runbooks, each on its own world in
/// the state the runbook describes (a stuck rotation for resume/abort, an emptied store for
/// import), answers 0. The systemd unit and the CronJob run subcommands tested here or, for the
/// daemon, in tests/alerting.rs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_command_of_the_scheduling_and_alert_runbooks_works() {
    let schedule = "runbooks/scheduled-rotation.md";
    let mut commands = runbook_commands(schedule, CRED);
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(schedule)).unwrap();
    let deployed: Vec<&str> = text
        .split("ExecStart=/usr/local/bin/rekey ")
        .skip(1)
        .chain(text.split("args: [\"").skip(1))
        .map(|rest| rest.split(['"', '`', '\n', ' ']).next().unwrap())
        .collect();
    assert!(deployed.len() >= 3, "{deployed:?}");
    for sub in deployed {
        assert!(
            sub == "daemon" || commands.iter().any(|c| c == &[sub]),
            "{schedule} deploys `rekey {sub}`, which no test runs"
        );
    }
    commands.extend(runbook_commands("runbooks/expiry-alert-response.md", CRED));
    assert!(commands.len() >= 18, "{commands:?}");
    let scenarios = commands.into_iter().map(|command| async move {
        let mut s = Scene::file().await;
        s.w.drop_credential("billing-eca");
        let context = format!("rekey {}", command.join(" "));
        match command[0].as_str() {
            "resume" | "abort" => {
                let held = Held::spawn(&s.w, &["rotate", CRED], "publish:done")
                    .reached(&mut s.w)
                    .await;
                held.kill(&mut s.w).await;
            }
            // The runbook's case: a store without CURRENT.
            "import" => std::fs::remove_dir_all(s.w.path(&format!("keys/{CRED}"))).unwrap(),
            _ => {}
        }
        let args: Vec<&str> = command.iter().map(String::as_str).collect();
        let before = looked_at(&s);
        let run = s.w.rekey(&args).await;
        assert_eq!(run.code, 0, "{context}\n{}{}", run.stdout, run.stderr);
        assert_runbook_state(&mut s, &args, &before, &context).await;
        s.assert_no_leaks(&context);
    });
    run_all(scenarios).await;
}

/// Every `rekey` command of the emergency runbook answers 0, each on its own world: `resume` on
/// an emergency killed after publishing; the kill-switch variant on the External Client App;
/// `--all-in-org` with both credentials imported.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_command_of_the_emergency_runbook_works() {
    let commands = runbook_commands("runbooks/emergency-rekey.md", CRED);
    assert!(commands.len() >= 8, "{commands:?}");
    let scenarios = commands.into_iter().map(|command| async move {
        let mut s = Scene::file().await;
        let mut args: Vec<String> = command
            .iter()
            .map(|w| {
                if w == "ORG" {
                    "acme".to_string()
                } else {
                    w.clone()
                }
            })
            .collect();
        if args.iter().any(|a| a == "--kill-switch") {
            for a in &mut args {
                if a == CRED {
                    *a = "billing-eca".into();
                }
            }
        }
        if args
            .iter()
            .any(|a| a == "--kill-switch" || a == "--all-in-org")
        {
            s.w.import_legacy("billing-eca").await;
        }
        let context = format!("rekey {}", args.join(" "));
        if args[0] == "resume" {
            let held = Held::spawn(
                &s.w,
                &["emergency", CRED, "--reason", "leak", "--yes"],
                "publish:done",
            )
            .reached(&mut s.w)
            .await;
            held.kill(&mut s.w).await;
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let before = looked_at(&s);
        let run = s.w.rekey(&args).await;
        assert_eq!(run.code, 0, "{context}\n{}{}", run.stdout, run.stderr);
        assert_emergency_state(&mut s, &args, &before, &context).await;
        s.assert_no_leaks(&context);
    });
    run_all(scenarios).await;
}

/// The state an emergency runbook command leaves: each credential it rekeyed (or, `resume`,
/// finished) settled on generation 2 with every older key destroyed and its evidence bundle
/// written; anything else only looks.
async fn assert_emergency_state(
    s: &mut Scene,
    args: &[&str],
    before: &(Vec<(std::path::PathBuf, Vec<u8>)>, String),
    context: &str,
) {
    let rekeyed: Vec<&str> = match args {
        ["emergency", "--all-in-org", ..] => vec![CRED, "billing-eca"],
        ["emergency", cred, ..] | ["resume", cred] => vec![*cred],
        _ => {
            assert!(
                looked_at(s) == *before,
                "{context}: changed the store or the app"
            );
            return;
        }
    };
    for cred in rekeyed {
        // Not `assert_settled`: an emergency destroys the leaked key the app once held.
        s.w.ok(&["verify", cred]).await;
        let status = s.w.json(&["status", cred]).await;
        let row = &status[0];
        assert_eq!(row["generation"], 2, "{context}: {cred}\n{status}");
        assert!(
            row["previous_generation"].is_null(),
            "{context}: old keys destroyed\n{status}"
        );
        assert!(row["open_rotation"].is_null(), "{context}\n{status}");
        assert_eq!(row["stores"][0]["matches_app"], true, "{context}\n{status}");
        let store = rekey_file::FileStore::new(s.w.path("keys"));
        assert!(
            store
                .read_generation(cred, Generation(1))
                .await
                .unwrap()
                .is_none(),
            "{context}: {cred}'s leaked key is destroyed"
        );
        let journal = s.w.json(&["journal", cred]).await;
        let rotation = journal.as_array().unwrap().last().unwrap()["rotation_id"]
            .as_str()
            .unwrap()
            .to_string();
        let bundle = s.w.path(&format!("evidence/{rotation}.json"));
        let text = std::fs::read_to_string(&bundle)
            .unwrap_or_else(|e| panic!("{context}: no evidence {}: {e}", bundle.display()));
        let evidence: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(evidence["outcome"], "completed", "{context}");
        s.w.printed.push(text);
    }
}
