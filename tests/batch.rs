//! Fleet rotation: `rekey run` publishes the due certificates of one org in one deployment
//! (`[run] max_batch` at most), fails a component Salesforce refuses for its credential alone, and
//! converges after kill -9 anywhere in a batch; `[run] org_order` rotates orgs as canaries and
//! stops at the first org whose rotations did not all succeed.
//!
//! The worlds here: one org emulator holding rekey's admin app and N Connected Apps whose
//! certificates (openssl-made, imported) end in ten days, so every credential is due; one or more
//! `[orgs.*]` tables pointing at it, one credential per app on a file store.

mod world;

use orgsim::{Fault, FaultKind, OrgSim, PropagationMode, Seed};
use rekey_testkit::receiver::Receiver;
use std::fmt::Write as _;
use world::{Held, World, legacy_pair, rekey_api_fingerprint, self_signed};

const APP_XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ConnectedApp xmlns="http://soap.sforce.com/2006/04/metadata">
    <contactEmail>platform-security@acme.example</contactEmail>
    <label>@NAME@</label>
    <oauthConfig>
        <callbackUrl>https://localhost/unused</callbackUrl>
        <consumerKey>3MVG9@NAME@Key</consumerKey>
        <isAdminApproved>true</isAdminApproved>
        <scopes>Api</scopes>
    </oauthConfig>
    <profileName>Billing Integration</profileName>
</ConnectedApp>
"#;

/// The API version every org of the fleet uses.
const API_VERSION: &str = "67.0";

/// One credential of the fleet: its name in `rekey.toml` and its app's full name.
struct Member {
    credential: String,
    app: String,
}

/// A world with `per_org` apps in each org of `orgs` (all served by one emulator), `run` the
/// `[run]` table's lines.
async fn fleet(orgs: &[&str], per_org: usize, run: &str) -> (World, Vec<Member>) {
    let dir = tempfile::tempdir().unwrap();
    legacy_pair(dir.path(), "admin");
    let demo = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/demo/seed.toml"),
    )
    .unwrap();
    // The demo's org, profiles, users and admin app; none of its integration apps.
    let mut seed = demo[..demo.find("# The integration whose certificate").unwrap()].to_string();
    let mut members = Vec::new();
    for org in orgs {
        for i in 1..=per_org {
            let credential = format!("{org}-{i}");
            let app = format!("{}_App_{i}", capitalised(org));
            // Ten days left: inside the default renew_before_days, so due.
            self_signed(dir.path(), &credential, &credential, 2048, 10);
            write!(
                seed,
                "\n[[connected_apps]]\nfull_name = \"{app}\"\ncertificate_file = \"{credential}.crt\"\nmetadata = \"\"\"{}\"\"\"\n",
                APP_XML.replace("@NAME@", &app)
            )
            .unwrap();
            members.push(Member { credential, app });
        }
    }
    std::fs::write(dir.path().join("seed.toml"), &seed).unwrap();
    let sim = OrgSim::start(Seed::from_path(&dir.path().join("seed.toml")).unwrap())
        .await
        .unwrap();
    sim.set_propagation(0, PropagationMode::Either);
    let mut config = String::new();
    for org in orgs {
        write!(
            config,
            "[orgs.{org}]\nlogin_url = \"{}\"\napi_version = \"{API_VERSION}\"\n\n[orgs.{org}.admin]\nauth = \"jwt\"\nconsumer_key = \"3MVG9RekeyAdminConsumerKey0001\"\nusername = \"rekey-admin@acme.example\"\nkey_file = \"admin.key\"\n\n",
            sim.base_url()
        )
        .unwrap();
    }
    write!(
        config,
        "[stores.local]\nkind = \"file\"\npath = \"keys\"\n\n[run]\n{run}\n\n"
    )
    .unwrap();
    for m in &members {
        let org = m.credential.rsplit_once('-').unwrap().0;
        write!(
            config,
            "[credentials.{}]\norg = \"{org}\"\napp_kind = \"connected_app\"\napp = \"{}\"\nusername = \"integration@acme.example\"\nstore = \"local\"\nverify_timeout_secs = 3\nsubject = {{ cn = \"{0}\" }}\n\n",
            m.credential, m.app
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("rekey.toml"), config).unwrap();
    let mut w = World {
        dir,
        sim,
        printed: Vec::new(),
        env: Vec::new(),
    };
    for m in &members {
        let (key, crt) = (
            format!("{}.key", m.credential),
            format!("{}.crt", m.credential),
        );
        w.ok(&["import", &m.credential, "--key", &key, "--cert", &crt])
            .await;
    }
    (w, members)
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// deployRequest POSTs (check-only or real) the emulator has seen.
fn deploys(w: &World) -> usize {
    w.sim
        .calls()
        .iter()
        .filter(|c| c.method == "POST" && c.path.ends_with("/metadata/deployRequest"))
        .count()
}

/// The first certificate each app held, by fingerprint.
fn originals(w: &World, members: &[Member]) -> Vec<String> {
    members
        .iter()
        .map(|m| {
            rekey_api_fingerprint(
                &std::fs::read_to_string(w.path(&format!("{}.crt", m.credential))).unwrap(),
            )
        })
        .collect()
}

/// `rekey run --json` whatever its exit code: the code and the report.
async fn run_json(w: &mut World) -> (i32, serde_json::Value) {
    let run = w.rekey(&["run", "--json"]).await;
    let report = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("run printed no JSON ({e}):\n{}{}", run.stdout, run.stderr));
    (run.code, report)
}

fn action<'r>(report: &'r serde_json::Value, credential: &str) -> &'r str {
    report["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["check"]["credential"] == credential)
        .unwrap_or_else(|| panic!("{credential} has no row:\n{report}"))["action"]
        .as_str()
        .unwrap()
}

/// Every credential is settled: no open rotation, no PENDING, the app holds CURRENT; the
/// fingerprints the apps hold.
async fn assert_settled(w: &mut World, members: &[Member], context: &str) -> Vec<String> {
    let status = w.json(&["status"]).await;
    let mut held = Vec::new();
    for m in members {
        let row = status
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["credential"] == m.credential.as_str())
            .unwrap_or_else(|| panic!("{context}: {} has no status row:\n{status}", m.credential));
        assert!(
            row["open_rotation"].is_null(),
            "{context}: {} journal closed\n{row}",
            m.credential
        );
        assert!(
            row["pending_generation"].is_null(),
            "{context}: {} PENDING cleared\n{row}",
            m.credential
        );
        let app = w.app_fingerprint(&m.app);
        assert_eq!(
            row["fingerprint"],
            app.as_str(),
            "{context}: {}'s app holds its CURRENT\n{row}",
            m.credential
        );
        held.push(app);
    }
    held
}

#[tokio::test]
async fn a_batch_of_due_certificates_is_published_in_one_deployment() {
    let (mut w, members) = fleet(&["acme"], 4, "concurrency = 2").await;
    let before = originals(&w, &members);
    let deploys_before = deploys(&w);
    let (code, report) = run_json(&mut w).await;
    assert_eq!(code, 0, "{report}");
    for m in &members {
        assert_eq!(action(&report, &m.credential), "rotated", "{report}");
    }
    // One check-only deploy and one deploy for all four apps.
    assert_eq!(deploys(&w) - deploys_before, 2, "{:#?}", w.sim.calls());
    let after = assert_settled(&mut w, &members, "after one batch").await;
    for (b, a) in before.iter().zip(&after) {
        assert_ne!(b, a, "every app holds a new certificate");
    }
    // Nothing is due any more: a second run deploys nothing.
    let deploys_between = deploys(&w);
    let (code, report) = run_json(&mut w).await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(deploys(&w), deploys_between);
    w.assert_no_key_bytes_leaked();
}

#[tokio::test]
async fn max_batch_splits_an_org_into_several_deployments() {
    let (mut w, members) = fleet(&["acme"], 5, "concurrency = 3\nmax_batch = 2").await;
    let deploys_before = deploys(&w);
    let (code, report) = run_json(&mut w).await;
    assert_eq!(code, 0, "{report}");
    for m in &members {
        assert_eq!(action(&report, &m.credential), "rotated", "{report}");
    }
    // Batches of 2, 2 and 1: three check-only deploys and three deploys.
    assert_eq!(deploys(&w) - deploys_before, 6);
    assert_settled(&mut w, &members, "after three batches").await;
}

#[tokio::test]
async fn a_component_salesforce_refuses_fails_its_credential_alone() {
    let (mut w, members) = fleet(&["acme"], 4, "concurrency = 4").await;
    let before = originals(&w, &members);
    let refused = &members[1];
    w.sim.inject_fault(Fault::new(FaultKind::ComponentFails {
        problem: "Cannot change this app's certificate during a release freeze".into(),
        member: refused.app.clone(),
    }));
    let deploys_before = deploys(&w);
    let (code, report) = run_json(&mut w).await;
    assert_ne!(code, 0, "a failed rotation fails the run\n{report}");
    let row = report["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["check"]["credential"] == refused.credential.as_str())
        .unwrap();
    assert_eq!(row["action"], "failed", "{report}");
    assert!(
        row["error"].as_str().unwrap().contains("release freeze"),
        "the refusal names Salesforce's problem: {row}"
    );
    for m in members
        .iter()
        .filter(|m| m.credential != refused.credential)
    {
        assert_eq!(action(&report, &m.credential), "rotated", "{report}");
    }
    // Check-only of all four (refused), check-only of the other three, their deploy.
    assert_eq!(deploys(&w) - deploys_before, 3);
    assert_eq!(
        w.app_fingerprint(&refused.app),
        before[1],
        "the refused app is unchanged"
    );
    for (i, m) in members.iter().enumerate().filter(|(i, _)| *i != 1) {
        assert_ne!(
            w.app_fingerprint(&m.app),
            before[i],
            "{} rotated",
            m.credential
        );
    }
    // Once Salesforce takes it, the next run finishes (or restarts) the refused one.
    w.sim.clear_faults();
    let (code, report) = run_json(&mut w).await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(action(&report, &refused.credential), "rotated", "{report}");
    let after = assert_settled(&mut w, &members, "after the refusal was lifted").await;
    assert_ne!(after[1], before[1]);
    w.assert_no_key_bytes_leaked();
}

/// Where a batch is killed: step boundaries every member passes (each member holds there, so the
/// first one to arrive stops the process with the others wherever they got), and `deploy-sent`:
/// the batch's deployment sent and done at Salesforce, its result not yet read.
const KILL_POINTS: &[&str] = &[
    "leased",
    "stage:done",
    "publish:begin",
    "deploy-sent",
    "publish:acted",
    "publish:done",
    "verify:done",
    "promote:done",
    "finalize:begin",
];

async fn killed_in_a_batch_at(point: &str) {
    let (mut w, members) = fleet(&["acme"], 3, "concurrency = 2").await;
    let before = originals(&w, &members);
    let context = format!("batch killed at {point}");
    let held = if point == "deploy-sent" {
        // Status polls of the deployment stall, so rekey cannot read the result: the kill comes
        // after the deploy (the second deployRequest: the first is check-only) was sent.
        let first = deploys(&w);
        w.sim.inject_fault(
            Fault::new(FaultKind::Latency { ms: 20_000 }).on_path(&format!(
                "/services/data/v{API_VERSION}/metadata/deployRequest/"
            )),
        );
        let held = Held::spawn(&w, &["run", "-vv"], "never");
        for _ in 0..3000 {
            if deploys(&w) >= first + 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(
            deploys(&w) >= first + 2,
            "{context}: the deploy was never sent"
        );
        held
    } else {
        Held::spawn(&w, &["run", "-vv"], point)
            .reached(&mut w)
            .await
    };
    let killed = held.kill(&mut w).await;
    assert_eq!(killed.code, -1, "{context}: killed by a signal");
    w.sim.clear_faults();

    // Resume each credential: one with nothing open says so (64) and changes nothing.
    let mut resumed = 0;
    for m in &members {
        let run = w.rekey(&["resume", &m.credential]).await;
        resumed += usize::from(run.code == 0);
        assert!(
            run.code == 0 || run.code == 64,
            "{context}: resume {}\n{}{}",
            m.credential,
            run.stdout,
            run.stderr
        );
    }
    // Past the lease, each member of the batch journals before it acts: something was open.
    assert!(
        point == "leased" || resumed > 0,
        "{context}: no rotation was open to resume"
    );
    assert_settled(&mut w, &members, &format!("{context}, resumed")).await;
    // Then the next run rotates whatever was not (still due), as one batch again.
    let (code, report) = run_json(&mut w).await;
    assert_eq!(code, 0, "{context}: the run after\n{report}");
    let after = assert_settled(&mut w, &members, &format!("{context}, run again")).await;
    for (m, (b, a)) in members.iter().zip(before.iter().zip(&after)) {
        assert_ne!(b, a, "{context}: {} holds a new certificate", m.credential);
    }
    w.assert_no_key_bytes_leaked();
}

#[tokio::test]
async fn a_batch_killed_at_each_step_boundary_converges() {
    for point in KILL_POINTS {
        killed_in_a_batch_at(point).await;
    }
}

#[tokio::test]
async fn canary_order_stops_at_the_first_org_whose_rotation_failed() {
    let (mut w, members) = fleet(
        &["dev", "uat", "prod"],
        2,
        "org_order = [\"dev\", \"uat\", \"prod\"]",
    )
    .await;
    let before = originals(&w, &members);
    // Salesforce never accepts a new key (an hour-long window serving only the old one), so dev's
    // verifications fail and its rotations roll back.
    w.sim.set_propagation(3600, PropagationMode::Old);
    let (code, report) = run_json(&mut w).await;
    assert_ne!(code, 0, "{report}");
    assert_eq!(report["canary_stopped_at"], "dev", "{report}");
    assert_eq!(
        report["untouched_orgs"],
        serde_json::json!(["uat", "prod"]),
        "{report}"
    );
    for m in &members {
        let action = action(&report, &m.credential);
        if m.credential.starts_with("dev-") {
            // Verification failed; undoing it waits for Salesforce too, so it may stay open.
            assert!(["rolled_back", "failed"].contains(&action), "{report}");
        } else {
            assert_eq!(action, "held", "{report}");
        }
    }
    for (m, b) in members.iter().zip(&before) {
        if !m.credential.starts_with("dev-") {
            assert_eq!(&w.app_fingerprint(&m.app), b, "{} untouched", m.credential);
        }
    }
    let text = w.rekey(&["run", "--dry-run"]).await;
    assert!(
        !text.stdout.contains("canary"),
        "a dry run rotates nothing, stops nothing"
    );

    // With Salesforce accepting new keys, dev's rotations are finished (or undone) and the next
    // run's canaries pass: every org rotates.
    w.sim.set_propagation(0, PropagationMode::Either);
    for m in members.iter().filter(|m| m.credential.starts_with("dev-")) {
        let run = w.rekey(&["resume", &m.credential]).await;
        // 0: finished; 7: the undo finished (rolled back); 64: nothing was open.
        assert!(
            [0, 7, 64].contains(&run.code),
            "{}{}",
            run.stdout,
            run.stderr
        );
    }
    let run = w.rekey(&["run"]).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(!run.stdout.contains("canary"), "{}", run.stdout);
    let after = assert_settled(&mut w, &members, "canaries passed").await;
    for (b, a) in before.iter().zip(&after) {
        assert_ne!(b, a);
    }
}

/// A rotation its consumer never adopted (`on_adoption_failure = "alert"`: the new key stays)
/// stops the canary order too: the next org is left untouched.
#[tokio::test]
async fn canary_order_stops_at_an_org_whose_rotation_was_not_adopted() {
    let (mut w, members) = fleet(&["dev", "prod"], 1, "org_order = [\"dev\", \"prod\"]").await;
    let before = originals(&w, &members);
    // dev's consumer keeps reporting the certificate it had: it never adopts the new one.
    let status = Receiver::answering(200, &format!("{{\"fingerprint\": \"{}\"}}", before[0])).await;
    let url = status.url("/status");
    w.edit_config(|c| {
        let c = c.replacen(
            "[credentials.dev-1]\n",
            "[credentials.dev-1]\non_adoption_failure = \"alert\"\n",
            1,
        );
        format!("{c}[[credentials.dev-1.consumers]]\nname = \"laggard\"\nkind = \"store\"\nstatus_url = \"{url}\"\nadopt_timeout_secs = 1\n")
    });
    let (code, report) = run_json(&mut w).await;
    assert_ne!(code, 0, "{report}");
    assert_eq!(action(&report, "dev-1"), "rotated", "{report}");
    assert_eq!(report["canary_stopped_at"], "dev", "{report}");
    assert_eq!(
        report["untouched_orgs"],
        serde_json::json!(["prod"]),
        "{report}"
    );
    assert_eq!(action(&report, "prod-1"), "held", "{report}");
    assert_eq!(
        w.app_fingerprint(&members[1].app),
        before[1],
        "prod untouched"
    );
}

#[tokio::test]
async fn the_text_report_names_the_untouched_orgs() {
    let (mut w, members) = fleet(&["dev", "prod"], 1, "org_order = [\"dev\", \"prod\"]").await;
    w.sim.inject_fault(Fault::new(FaultKind::ComponentFails {
        problem: "frozen".into(),
        member: members[0].app.clone(),
    }));
    let run = w.rekey(&["run"]).await;
    assert_ne!(run.code, 0);
    assert!(
        run.stdout
            .contains("canary: stopped at org dev (a rotation there did not succeed); 1 due credentials held back; orgs left untouched: prod"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("held back: the canary order stopped at org dev"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn org_order_must_name_defined_orgs_and_max_batch_is_bounded() {
    let (mut w, _) = fleet(&["dev"], 1, "").await;
    w.edit_config(|c| {
        c.replace(
            "[run]\n",
            "[run]\norg_order = [\"dev\", \"qa\", \"dev\"]\nmax_batch = 0\n",
        )
    });
    let run = w.rekey(&["config", "check"]).await;
    assert_eq!(run.code, 64, "{}{}", run.stdout, run.stderr);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(
        said.contains("rekey.toml:")
            && said
                .contains("run.org_order names org 'qa', which is not defined (defined orgs: dev)"),
        "{said}"
    );
    assert!(
        said.contains("run.org_order lists org 'dev' twice"),
        "{said}"
    );
}
