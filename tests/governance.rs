//! `rekey audit`, `inventory` and `grants` against the governance org (tests/governance/seed.toml:
//! apps that trip every finding and apps that trip none), through the real binary.

mod world;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use world::World;

/// Every finding id the catalogue has (src/controls.rs), read from the binary's SARIF rules so
/// the list cannot drift from the code.
async fn catalogue(w: &mut World) -> Vec<String> {
    let run = w.rekey(&["audit", "--format", "sarif"]).await;
    let sarif: Value = serde_json::from_str(&run.stdout).unwrap();
    sarif["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

/// `rekey audit --json` and its exit code.
async fn audit(w: &mut World, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["audit", "--json"];
    args.extend_from_slice(extra);
    let run = w.rekey(&args).await;
    let report = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", run.stdout, run.stderr));
    (run.code, report)
}

/// Finding ids by app (`-` for the org), from an audit report.
fn by_app(report: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in report["findings"].as_array().unwrap() {
        let app = f["app"].as_str().unwrap_or("-").to_string();
        out.entry(app)
            .or_default()
            .insert(f["id"].as_str().unwrap().to_string());
    }
    out
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// A finding with what changes from run to run (dates, day counts, fingerprints, config
/// positions) replaced, for the golden files.
fn normalized(finding: &Value) -> Value {
    let mut f = finding.clone();
    let message = f["message"].as_str().unwrap_or_default().to_string();
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let w = std::mem::take(word);
        let core = w.trim_matches(|c: char| "(),.;±".contains(c));
        let replaced = if core.len() == 64 && core.chars().all(|c| c.is_ascii_hexdigit()) {
            w.replace(core, "<fingerprint>")
        } else if core.len() == 10
            && core.chars().filter(|c| *c == '-').count() == 2
            && core.chars().next().is_some_and(|c| c.is_ascii_digit())
        {
            w.replace(core, "<date>")
        } else if !core.is_empty()
            && core.chars().all(|c| c.is_ascii_digit() || c == '.')
            && !["1024", "2048"].contains(&core)
        {
            w.replace(core, "<n>")
        } else if core.contains(".toml:") {
            w.replace(core, "<config position>")
        } else {
            w
        };
        out.push_str(&replaced);
    };
    for c in message.chars() {
        if c == ' ' {
            flush(&mut word, &mut out);
            out.push(' ');
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    f["message"] = Value::from(out);
    f
}

/// Compares the findings of `id` with tests/governance/golden/<id>.json (`REKEY_BLESS=1`
/// writes it).
fn golden(id: &str, findings: &[Value]) {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/governance/golden/{id}.json"));
    let actual: Vec<Value> = findings
        .iter()
        .filter(|f| f["id"] == id)
        .map(normalized)
        .collect();
    let text = serde_json::to_string_pretty(&actual).unwrap() + "\n";
    if std::env::var_os("REKEY_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (REKEY_BLESS=1 writes it)", path.display()));
    assert_eq!(text, expected, "golden {}", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_reports_what_each_seeded_app_trips_and_nothing_on_the_clean_ones() {
    let mut w = World::governance().await;
    let (code, report) = audit(&mut w, &[]).await;
    assert_eq!(code, 2, "a critical finding exits 2\n{report:#}");
    assert_eq!(report["unreadable"], Value::Array(vec![]), "{report:#}");
    let found = by_app(&report);
    let expected: BTreeMap<String, BTreeSet<String>> = [
        (
            "Risky_Portal",
            set(&[
                "scope-full",
                "refresh-token-infinite",
                "self-authorize",
                "pkce-with-required-secret",
                "high-assurance-not-required",
                "stale-oauth-grants",
            ]),
        ),
        (
            "Weak_Key_App",
            set(&[
                "certificate-weak-key",
                "ip-relaxed",
                "unmanaged-certificate",
            ]),
        ),
        (
            "Expired_App",
            set(&["certificate-expired", "unmanaged-certificate", "unused-app"]),
        ),
        (
            "Expiring_App",
            set(&["certificate-expiring", "unmanaged-certificate"]),
        ),
        (
            "Privileged_CC",
            set(&[
                "client-credentials-enabled",
                "client-credentials-privileged-user",
            ]),
        ),
    ]
    .into_iter()
    .map(|(app, ids)| (app.to_string(), ids))
    .collect();
    assert_eq!(found, expected, "{report:#}");
    for f in report["findings"].as_array().unwrap() {
        for field in ["id", "severity", "org", "message", "remediation", "control"] {
            assert!(f[field].is_string(), "{field} missing in {f}");
        }
        assert_eq!(f["org"], "gov");
    }
    let findings = report["findings"].as_array().unwrap().clone();
    for id in found.values().flatten() {
        golden(id, &findings);
    }
    w.assert_no_key_bytes_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_catalogue_id_is_tripped_by_some_scene_and_has_its_golden_file() {
    let mut w = World::governance().await;
    let all = catalogue(&mut w).await;
    let mut seen = BTreeSet::new();
    let mut findings = Vec::new();
    let (_, base) = audit(&mut w, &[]).await;
    findings.extend(base["findings"].as_array().unwrap().iter().cloned());
    // The host's clock 45 s behind Salesforce's: a warning.
    w.sim.set_clock_offset(45);
    let (_, skewed) = audit(&mut w, &[]).await;
    w.sim.set_clock_offset(0);
    let skew: Vec<&Value> = skewed["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["id"] == "clock-skew")
        .collect();
    assert_eq!(skew.len(), 1, "{skewed:#}");
    assert_eq!(skew[0]["severity"], "warning");
    assert!(skew[0]["app"].is_null());
    findings.extend(skew.into_iter().cloned());
    // A managed credential without an owner; suppressions without a reason and past their date.
    w.edit_config(|c| {
        c.replacen("owner = \"platform-team\"\n", "", 1)
            + "\n[[audit.ignore]]\nid = \"unused-app\"\napp = \"Expired_App\"\n\n[[audit.ignore]]\nid = \"scope-full\"\napp = \"Risky_Portal\"\nreason = \"the vendor needs it\"\nuntil = 2020-01-31\n"
    });
    let (_, edited) = audit(&mut w, &[]).await;
    findings.extend(edited["findings"].as_array().unwrap().iter().cloned());
    // A consumer secret kept longer than the limit.
    w.ok(&["import", "clean-eca"]).await;
    w.edit_config(|c| c + "\n[audit]\nconsumer_secret_max_age_days = 1\n");
    let days = (3 * 86_400).to_string();
    w.sim.set_clock_offset(3 * 86_400);
    let run = w
        .rekey_with_env(
            &["audit", "--json"],
            &[("REKEY_TEST_CLOCK_OFFSET_SECS", &days)],
        )
        .await;
    w.sim.set_clock_offset(0);
    let aged: Value = serde_json::from_str(&run.stdout).unwrap();
    let age: Vec<&Value> = aged["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["id"] == "consumer-secret-age")
        .collect();
    assert_eq!(age.len(), 1, "{aged:#}");
    assert_eq!(age[0]["credential"], "clean-eca");
    findings.extend(age.into_iter().cloned());
    for f in &findings {
        seen.insert(f["id"].as_str().unwrap().to_string());
    }
    let missing: Vec<&String> = all.iter().filter(|id| !seen.contains(*id)).collect();
    assert!(missing.is_empty(), "no scene trips {missing:?}");
    for id in [
        "clock-skew",
        "no-owner",
        "suppression-without-reason",
        "suppression-expired",
        "consumer-secret-age",
    ] {
        golden(id, &findings);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clock_skew_beyond_a_minute_is_critical() {
    let mut w = World::governance().await;
    w.sim.set_clock_offset(-90);
    let (_, report) = audit(&mut w, &[]).await;
    let skew: Vec<&Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["id"] == "clock-skew")
        .collect();
    assert_eq!(skew.len(), 1, "{report:#}");
    assert_eq!(skew[0]["severity"], "critical");
    assert!(
        skew[0]["message"].as_str().unwrap().contains("ahead of"),
        "{}",
        skew[0]["message"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn suppressions_apply_in_date_are_reported_without_reason_or_expired_and_are_ledgered_once() {
    let mut w = World::governance().await;
    w.edit_config(|c| {
        c + r#"
[[audit.ignore]]
id = "certificate-expired"
app = "Expired_App"
reason = "decommissioning next week, ticket SEC-1"
until = 2099-12-31

[[audit.ignore]]
id = "certificate-weak-key"
app = "Weak_Key_App"
reason = "replaced by the vendor"
until = 2020-01-01

[[audit.ignore]]
id = "client-credentials-privileged-user"
"#
    });
    let (code, report) = audit(&mut w, &[]).await;
    let found = by_app(&report);
    let suppressed: Vec<(String, String)> = report["suppressed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["finding"]["id"].as_str().unwrap().into(),
                s["finding"]["app"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        suppressed,
        [
            ("certificate-expired".to_string(), "Expired_App".to_string()),
            (
                "client-credentials-privileged-user".into(),
                "Privileged_CC".into()
            ),
        ],
        "{report:#}"
    );
    assert!(!found["Expired_App"].contains("certificate-expired"));
    assert!(
        found["Weak_Key_App"].contains("certificate-weak-key"),
        "an expired suppression no longer applies"
    );
    assert!(
        found["Weak_Key_App"].contains("suppression-expired"),
        "{report:#}"
    );
    assert!(
        found["-"].contains("suppression-without-reason"),
        "{report:#}"
    );
    assert_eq!(code, 2, "the weak key is critical again");
    // Each suppression is recorded in the org's ledger once, however often audits run.
    audit(&mut w, &[]).await;
    let ledger = std::fs::read_to_string(w.path("keys/_org.gov/journal.jsonl")).unwrap();
    let added: Vec<&str> = ledger
        .lines()
        .filter(|l| l.contains("suppression-added"))
        .collect();
    assert_eq!(added.len(), 3, "{ledger}");
    assert!(added[0].contains("SEC-1"), "{ledger}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fail_on_critical_ignores_warnings_and_an_unreadable_org_exits_3() {
    let mut w = World::governance().await;
    w.edit_config(|c| {
        c + r#"
[[audit.ignore]]
id = "certificate-expired"
reason = "test"
[[audit.ignore]]
id = "certificate-weak-key"
reason = "test"
[[audit.ignore]]
id = "client-credentials-privileged-user"
reason = "test"
"#
    });
    let (code, report) = audit(&mut w, &[]).await;
    assert_eq!(code, 1, "warnings remain\n{report:#}");
    let (code, _) = audit(&mut w, &["--fail-on", "critical"]).await;
    assert_eq!(code, 0);
    let dead = format!("http://127.0.0.1:{}", free_port());
    let url = w.sim.base_url();
    w.edit_config(|c| c.replace(&url, &dead));
    let run = w.rekey(&["audit", "--fail-on", "critical"]).await;
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("org gov"), "{}", run.stderr);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sarif_output_validates_against_the_sarif_2_1_0_schema() {
    let mut w = World::governance().await;
    w.edit_config(|c| {
        c + "\n[[audit.ignore]]\nid = \"unused-app\"\nreason = \"archived\"\nuntil = 2099-01-01\n"
    });
    let run = w.rekey(&["audit", "--format", "sarif"]).await;
    assert_eq!(run.code, 2);
    rekey_testkit::sarif::validate_sarif(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}\n{}", run.stdout));
    let sarif: Value = serde_json::from_str(&run.stdout).unwrap();
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    let rules = sarif["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .unwrap();
    for r in results {
        let index = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], r["ruleId"]);
    }
    let suppressed: Vec<&Value> = results
        .iter()
        .filter(|r| r["suppressions"].is_array())
        .collect();
    assert_eq!(suppressed.len(), 1);
    assert_eq!(suppressed[0]["ruleId"], "unused-app");
    assert!(
        suppressed[0]["suppressions"][0]["justification"]
            .as_str()
            .unwrap()
            .starts_with("archived")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inventory_lists_every_app_managed_or_not_in_json_and_csv() {
    let mut w = World::governance().await;
    w.ok(&["import", "clean-eca"]).await;
    let rows = w.json(&["inventory"]).await;
    let rows = rows.as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["app"].as_str().unwrap()).collect();
    for app in [
        "Rekey_Admin",
        "Clean_JWT",
        "Clean_ECA",
        "Risky_Portal",
        "Weak_Key_App",
        "Expired_App",
        "Expiring_App",
        "Privileged_CC",
    ] {
        assert!(names.contains(&app), "{app} missing from {names:?}");
    }
    let row = |app: &str| rows.iter().find(|r| r["app"] == app).unwrap();
    let ca = row("Clean_JWT");
    assert_eq!(ca["kind"], "CA");
    assert_eq!(
        ca["flows"],
        serde_json::json!(["jwt-bearer", "authorization-code"])
    );
    assert_eq!(ca["managed_by"][0]["credential"], "clean-jwt");
    assert_eq!(ca["managed_by"][0]["owner"], "platform-team");
    assert_eq!(ca["managed_by"][0]["stores"], serde_json::json!(["local"]));
    assert_eq!(
        ca["certificate_fingerprint"].as_str().unwrap(),
        w.app_fingerprint("Clean_JWT")
    );
    assert!(ca["last_login"].is_string());
    let eca = row("Clean_ECA");
    assert_eq!(eca["kind"], "ECA");
    assert!(
        eca["flows"]
            .as_array()
            .unwrap()
            .contains(&Value::from("client-credentials"))
    );
    assert_eq!(eca["run_as"], "etl-runner@gov.example");
    assert_eq!(eca["consumer_secret_age_days"], 0);
    assert_eq!(eca["managed_by"][0]["kind"], "consumer_secret");
    let unmanaged = row("Weak_Key_App");
    assert_eq!(unmanaged["managed_by"], serde_json::json!([]));
    assert!(unmanaged["certificate_expires"].is_string());
    let portal = row("Risky_Portal");
    assert_eq!(portal["permitted_users"], "self-authorize");
    assert_eq!(portal["active_grants"], 3);
    let csv = w.ok(&["inventory", "--format", "csv"]).await.stdout;
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("org,app,label,kind,flows"), "{csv}");
    assert_eq!(lines.len(), rows.len() + 1, "{csv}");
    let header = lines[0].split(',').count();
    for line in &lines[1..] {
        // No field of the seed holds a quote, so splitting outside quotes is enough here.
        let mut fields = 1;
        let mut quoted = false;
        for c in line.chars() {
            match c {
                '"' => quoted = !quoted,
                ',' if !quoted => fields += 1,
                _ => {}
            }
        }
        assert_eq!(fields, header, "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_grants_are_listed_then_revoked_leaving_fresh_grants_and_login_history() {
    let mut w = World::governance().await;
    let before = w.sim.grants();
    let listed = w.json(&["grants", "--stale-after-days", "30"]).await;
    let stale = listed["stale"].as_array().unwrap();
    assert_eq!(stale.len(), 2, "{listed:#}");
    for g in stale {
        assert_eq!(g["app"], "Risky_Portal");
        assert_eq!(g["user"], "alice@gov.example");
        assert!(g["idle_days"].as_i64().unwrap() >= 45);
    }
    assert_eq!(listed["dry_run"], true);
    assert_eq!(
        w.sim.grants().len(),
        before.len(),
        "a dry run revokes nothing"
    );
    let logins_before = w.sim.login_history();
    let run = w
        .rekey(&[
            "grants",
            "--app",
            "Risky_Portal",
            "--stale-after-days",
            "30",
            "--revoke",
            "--yes",
        ])
        .await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("revoked 2, already gone 0, failed 0"),
        "{}",
        run.stdout
    );
    let after = w.sim.grants();
    assert_eq!(after.len(), before.len() - 2);
    assert!(
        after.iter().all(|g| g.username != "alice@gov.example"),
        "{after:?}"
    );
    assert!(after.iter().any(|g| g.username == "bob@gov.example"));
    // LoginHistory is untouched: every row is still there (rekey's own admin login adds one).
    let logins_after = w.sim.login_history();
    assert!(
        logins_before.iter().all(|l| logins_after.contains(l)),
        "{logins_before:?}\n{logins_after:?}"
    );
    // Journaled before and after each revocation, in the org's ledger.
    let ledger = std::fs::read_to_string(w.path("keys/_org.gov/journal.jsonl")).unwrap();
    let revokes: Vec<Value> = ledger
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["step"] == "revoke_grant")
        .collect();
    assert_eq!(revokes.len(), 4, "{ledger}");
    assert!(ledger.contains("alice@gov.example"));
    for token in before.iter().map(|g| g.delete_token.as_str()) {
        assert!(!ledger.contains(token) && !run.stdout.contains(token));
    }
    // The ledger is a journal like a credential's: chained, verified, exported, and an edit
    // by hand is named at the edited entry.
    let verdict = w.json(&["journal", "--org", "gov", "--verify"]).await;
    assert_eq!(verdict["intact"], true, "{verdict}");
    assert_eq!(verdict["entries"], 4);
    let export = w.ok(&["journal", "--export"]).await.stdout;
    let ledger_lines: Vec<Value> = export
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["credential"] == "_org.gov")
        .collect();
    assert_eq!(ledger_lines.len(), 4, "{export}");
    assert!(ledger_lines.iter().all(|l| l["chain"] == "ok"));
    let path = w.path("keys/_org.gov/journal.jsonl");
    let edited = ledger.replacen("alice@gov.example", "mallory@gov.example", 1);
    std::fs::write(&path, edited).unwrap();
    let broken = w.rekey(&["journal", "--org", "gov", "--verify"]).await;
    assert_eq!(broken.code, 6, "{}{}", broken.stdout, broken.stderr);
    assert!(broken.stderr.contains("at entry 1"), "{}", broken.stderr);
    std::fs::write(&path, &ledger).unwrap();
    // Nothing left: a second run revokes nothing and asks nothing.
    let again = w
        .ok(&["grants", "--stale-after-days", "30", "--revoke"])
        .await;
    assert!(again.stdout.contains("0 of 1 grant(s)"), "{}", again.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoking_without_yes_and_without_a_terminal_answer_changes_nothing() {
    let mut w = World::governance().await;
    let before = w.sim.grants().len();
    let run = w
        .rekey(&["grants", "--stale-after-days", "30", "--revoke"])
        .await;
    assert_eq!(run.code, 64, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("not confirmed"), "{}", run.stderr);
    assert_eq!(w.sim.grants().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_names_the_thing_and_changes_nothing() {
    let mut w = World::governance().await;
    let run = w.rekey(&["audit", "--org", "nope"]).await;
    assert_eq!(run.code, 64);
    assert!(
        run.stderr.contains("unknown org 'nope'") && run.stderr.contains("gov"),
        "{}",
        run.stderr
    );
    let run = w
        .rekey(&["grants", "--app", "Nope", "--stale-after-days", "30"])
        .await;
    assert_eq!(run.code, 64, "{}", run.stderr);
    assert!(run.stderr.contains("'Nope'"), "{}", run.stderr);
    w.edit_config(|c| c + "\n[[audit.ignore]]\nid = \"no-such-finding\"\nreason = \"x\"\n");
    let run = w.rekey(&["audit"]).await;
    assert_eq!(run.code, 64);
    assert!(
        run.stderr.contains("rekey.toml:")
            && run.stderr.contains("unknown finding id 'no-such-finding'"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_in_check_the_audit_reaches_check_metrics_and_exit_code() {
    let mut w = World::governance().await;
    w.edit_config(|c| c + "\n[audit]\nin_check = true\n");
    let run = w
        .rekey(&["check", "--json", "--prometheus-textfile", "metrics.prom"])
        .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    let rows: Value = serde_json::from_str(&run.stdout).unwrap();
    let org = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["credential"] == "org:gov")
        .unwrap();
    let ids: Vec<&str> = org["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"scope-full:Risky_Portal/audit"), "{ids:?}");
    let metrics = std::fs::read_to_string(w.path("metrics.prom")).unwrap();
    assert!(
        metrics.contains(
            "rekey_audit_findings{id=\"unmanaged-certificate\",severity=\"warning\",org=\"gov\"} 3"
        ),
        "{metrics}"
    );
    // Off by default: the same check without it has no org row.
    w.edit_config(|c| c.replace("in_check = true", "in_check = false"));
    let rows = w.json_any(&["check"]).await;
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["credential"] != "org:gov")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_readme_documents_every_finding_with_its_condition_and_control() {
    let mut w = World::governance().await;
    let run = w.rekey(&["audit", "--format", "sarif"]).await;
    let sarif: Value = serde_json::from_str(&run.stdout).unwrap();
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let runbook = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/hardening-review.md"),
    )
    .unwrap();
    for rule in sarif["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .unwrap()
    {
        let id = rule["id"].as_str().unwrap();
        let row = format!(
            "| `{id}` | {} | {} | {} |",
            rule["properties"]["severity"].as_str().unwrap(),
            rule["fullDescription"]["text"].as_str().unwrap(),
            rule["properties"]["control"].as_str().unwrap()
        );
        assert!(
            readme.contains(&row),
            "README.md lacks, or words differently:\n{row}"
        );
        assert!(
            runbook.contains(&format!("\n### {id}\n")),
            "runbooks/hardening-review.md has no section for {id}"
        );
    }
}

/// Every `rekey` command of the governance runbooks, as written, against the demo org (`acme`)
/// with `billing` (CRED) imported: each exits as the runbook says.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_command_of_the_governance_runbooks_works_as_written() {
    let mut w = World::billing_only().await;
    for runbook in [
        "runbooks/hardening-review.md",
        "runbooks/jwt-bearer-checklist.md",
    ] {
        let commands = world::runbook_commands(runbook, "billing");
        assert!(commands.len() >= 5, "{runbook}: {commands:?}");
        for args in commands {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let run = w.rekey(&args).await;
            let context = format!(
                "{runbook}: rekey {}\n{}{}",
                args.join(" "),
                run.stdout,
                run.stderr
            );
            match args[0] {
                // The demo org has findings: the audit says how bad, it never fails to read.
                "audit" if args.contains(&"critical") => {
                    assert!([0, 2].contains(&run.code), "{context}")
                }
                "audit" => assert!([0, 1, 2].contains(&run.code), "{context}"),
                _ => assert_eq!(run.code, 0, "{context}"),
            }
            if args.contains(&"sarif") {
                rekey_testkit::sarif::validate_sarif(&run.stdout)
                    .unwrap_or_else(|e| panic!("{e}\n{context}"));
            }
        }
    }
    w.assert_no_key_bytes_leaked();
}

/// With `in_check`, each org's findings are alerted once (per app and finding), not again on the
/// next check, and resolved when they clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_findings_are_alerted_once_and_resolved_when_they_clear() {
    let mut w = World::governance().await;
    let hook = rekey_testkit::receiver::Receiver::answering(200, "ok").await;
    std::fs::write(w.path("hook.secret"), "s3cret-signing-key\n").unwrap();
    let url = hook.url("/rekey");
    w.edit_config(|c| {
        format!(
            "{c}\n[audit]\nin_check = true\n\n[alerts]\nstate_file = \"state/alerts.json\"\n\n[alerts.channels.hook]\nkind = \"webhook\"\nurl = \"{url}\"\nsecret_file = \"hook.secret\"\nmin_severity = \"warning\"\n"
        )
    });
    let first = w.rekey(&["check"]).await;
    assert_eq!(first.code, 2, "{}", first.stderr);
    let sent: Vec<Value> = hook.requests().iter().map(|r| r.json()).collect();
    let about_org: Vec<&Value> = sent
        .iter()
        .filter(|m| m.to_string().contains("org:gov"))
        .collect();
    let scope_full = about_org
        .iter()
        .filter(|m| m.to_string().contains("Risky_Portal grants the full scope"))
        .count();
    assert_eq!(scope_full, 1, "{sent:#?}");
    assert!(about_org.len() >= 10, "{} org alerts", about_org.len());
    assert_eq!(w.rekey(&["check"]).await.code, 2);
    assert_eq!(
        hook.requests().len(),
        sent.len(),
        "a second check sends nothing new"
    );
    // Accepting the full scope clears that finding: one resolve for it.
    w.edit_config(|c| {
        c + "\n[[audit.ignore]]\nid = \"scope-full\"\napp = \"Risky_Portal\"\nreason = \"vendor\"\n"
    });
    assert_eq!(w.rekey(&["check"]).await.code, 2);
    let after: Vec<Value> = hook
        .requests()
        .iter()
        .skip(sent.len())
        .map(|r| r.json())
        .collect();
    assert_eq!(after.len(), 1, "{after:#?}");
    assert!(
        after[0]
            .to_string()
            .contains("scope-full:Risky_Portal/audit"),
        "{:#}",
        after[0]
    );
}

/// One audit of the org is one admin login, the app metadata read ten names a call, and one
/// query per governance object: what it costs the org's API budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_audit_logs_in_once_and_reads_metadata_in_batches() {
    let mut w = World::governance().await;
    let before = w.sim.calls().len();
    audit(&mut w, &[]).await;
    let calls: Vec<orgsim::CallRecord> = w.sim.calls().into_iter().skip(before).collect();
    let count = |f: &dyn Fn(&orgsim::CallRecord) -> bool| calls.iter().filter(|c| f(c)).count();
    let logins = count(&|c| c.path.ends_with("/oauth2/token"));
    let reads = count(&|c| {
        c.operation
            .as_deref()
            .is_some_and(|o| o.starts_with("readMetadata"))
    });
    let lists = count(&|c| {
        c.operation
            .as_deref()
            .is_some_and(|o| o.starts_with("listMetadata"))
    });
    let queries = count(&|c| c.path.contains("/query"));
    let summary = format!(
        "{} calls: {logins} login(s), {lists} listMetadata, {reads} readMetadata, {queries} queries\n{calls:#?}",
        calls.len()
    );
    assert_eq!(logins, 1, "{summary}");
    // One list per metadata type, then one read per type that has members, ten names a read:
    // the 5 Connected Apps in one, the 3 External Client Apps' headers in one, and one for each
    // of the 3 satellite types the seed's apps have.
    assert_eq!(lists, 6, "{summary}");
    assert_eq!(reads, 5, "{summary}");
    assert!(queries <= 6, "{summary}");
    eprintln!("{}", summary.lines().next().unwrap());
}

/// A ledger another runner holds makes the audit say so and record the suppression next time;
/// it never changes the verdict about the apps.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_busy_ledger_delays_recording_a_suppression_but_not_the_audit() {
    let mut w = World::governance().await;
    let suppress = |id: &str| format!("\n[[audit.ignore]]\nid = \"{id}\"\nreason = \"accepted\"\n");
    w.edit_config(|c| c + &suppress("unused-app"));
    let (code, _) = audit(&mut w, &[]).await;
    assert_eq!(code, 2);
    w.edit_config(|c| c + &suppress("scope-full"));
    let mut holder = std::process::Command::new("flock")
        // --no-fork: the lock holder is the process killed below, not a child left holding it.
        .args([
            "--no-fork",
            w.path("keys/_org.gov/lock").to_str().unwrap(),
            "sleep",
            "60",
        ])
        .spawn()
        .unwrap();
    // The holder has the lock once the audit's attempt would fail: wait until flock took it.
    let probe = || {
        std::process::Command::new("flock")
            .args(["-n", w.path("keys/_org.gov/lock").to_str().unwrap(), "true"])
            .status()
            .unwrap()
            .success()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while probe() {
        assert!(
            std::time::Instant::now() < deadline,
            "flock never took the ledger's lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let run = w.rekey(&["audit", "--json"]).await;
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("warning: org gov: recording suppressions in its ledger"),
        "{}",
        run.stderr
    );
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["unreadable"], Value::Array(vec![]));
    let ledger =
        |w: &World| std::fs::read_to_string(w.path("keys/_org.gov/journal.jsonl")).unwrap();
    assert!(!ledger(&w).contains("scope-full"));
    audit(&mut w, &[]).await;
    assert!(
        ledger(&w).contains("scope-full"),
        "recorded by the next audit"
    );
}
