//! What a new user meets through the real binary: `rekey init` and `rekey config check` without
//! a network call, shell completions, help that fits a terminal, and the Salesforce CLI's logins
//! (an admin session borrowed from `sf`, a consumer's token handed to `sf`).

mod world;

use serde_json::Value;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Output;
use world::World;

/// `rekey args` in `dir` with nothing from a world: no REKEY_CONFIG, HOME in `dir`.
fn rekey_in(dir: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_rekey"))
        .args(args)
        .current_dir(dir)
        .env_remove("REKEY_CONFIG")
        .env("HOME", dir)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn init_writes_a_config_that_config_check_accepts_and_never_overwrites_one() {
    let dir = tempfile::tempdir().unwrap();
    let init = rekey_in(dir.path(), &["init"]);
    assert_eq!(init.status.code(), Some(0), "{}", text(&init.stderr));
    let written = std::fs::read_to_string(dir.path().join("rekey.toml")).unwrap();
    assert_eq!(
        written,
        include_str!("../src/config/rekey.example.toml"),
        "init writes the annotated example"
    );

    let check = rekey_in(dir.path(), &["config", "check"]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check.stderr));
    let out = text(&check.stdout);
    assert!(
        out.contains("billing: rotates acme/Billing_Sync (connected app); kept in vault")
            && out.contains("payments: rotates uat/Payments_Gateway (external client app)")
            && out.contains("etl: rotates acme/Nightly_ETL (external client app, consumer secret)"),
        "one line per credential: what it rotates, where its key lives:\n{out}"
    );
    let json: Value =
        serde_json::from_slice(&rekey_in(dir.path(), &["--json", "config", "check"]).stdout)
            .unwrap();
    assert_eq!(json["valid"], true, "{json}");
    assert_eq!(json["credentials"][1]["name"], "etl", "{json}");
    assert_eq!(json["credentials"][2]["name"], "payments", "{json}");

    // A config the user has edited is never replaced, nor is one at another path.
    std::fs::write(dir.path().join("rekey.toml"), "# mine\n").unwrap();
    let again = rekey_in(dir.path(), &["init"]);
    assert_eq!(again.status.code(), Some(64));
    assert!(
        text(&again.stderr).contains("rekey.toml already exists; nothing was written"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("rekey.toml")).unwrap(),
        "# mine\n"
    );
    let nowhere = rekey_in(dir.path(), &["init", "--path", "no/such/folder/rekey.toml"]);
    assert_eq!(nowhere.status.code(), Some(64));
    assert!(
        text(&nowhere.stderr).contains("cannot write no/such/folder/rekey.toml"),
        "{}",
        text(&nowhere.stderr)
    );
}

/// `config check` never reaches Salesforce (the emulator's call log stays empty) and reports
/// every problem at once with its file:line:column, as text and as JSON.
#[tokio::test(flavor = "multi_thread")]
async fn config_check_reports_every_problem_at_once_and_calls_nothing() {
    let mut w = World::new().await;
    let calls = w.sim.calls().len();
    let run = w.ok(&["config", "check"]).await;
    assert!(
        run.stdout.contains("billing: rotates acme/Billing_Sync"),
        "{}",
        run.stdout
    );

    w.edit_config(|c| {
        c.replacen(
            "[orgs.acme.admin]\n",
            "[orgs.acme.admin]\ntarget_org = \"acme\"\n",
            1,
        )
        .replacen(
            "key_algorithm = \"rsa-2048\"\n",
            "key_algorithm = \"rsa-1024\"\n",
            1,
        )
    });
    let bad = w.rekey(&["config", "check"]).await;
    assert_eq!(bad.code, 64, "{}{}", bad.stdout, bad.stderr);
    let config = w.path("rekey.toml").display().to_string();
    for problem in [
        "target_org applies to auth = \"sf_cli\", not \"jwt\"",
        "unknown key_algorithm 'rsa-1024'; use one of rsa-2048, rsa-3072, rsa-4096",
    ] {
        assert!(
            bad.stderr
                .lines()
                .any(|l| l.contains(&format!("{config}:")) && l.contains(problem)),
            "{problem} with its position:\n{}",
            bad.stderr
        );
    }
    let json = w.json_any(&["config", "check"]).await;
    assert_eq!(json["valid"], false, "{json}");
    assert_eq!(json["problems"].as_array().unwrap().len(), 2, "{json}");
    assert_eq!(w.sim.calls().len(), calls, "config check called Salesforce");
}

#[test]
fn completions_generate_for_every_shell() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let run = rekey_in(dir.path(), &["completions", shell]);
        assert_eq!(run.status.code(), Some(0), "{shell}: {}", text(&run.stderr));
        let script = text(&run.stdout);
        for word in ["rotate", "emergency", "evidence-dir"] {
            assert!(script.contains(word), "{shell}: {word} missing");
        }
        // The shells whose scripts complete values offer the closed sets.
        if shell != "powershell" {
            assert!(script.contains("rsa-4096"), "{shell}: --algorithm's values");
        }
    }
    // bash itself reads the bash script without a syntax error.
    let script = dir.path().join("rekey.bash");
    std::fs::write(
        &script,
        rekey_in(dir.path(), &["completions", "bash"]).stdout,
    )
    .unwrap();
    let parsed = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(parsed.status.success(), "{}", text(&parsed.stderr));
}

/// `rekey --help` lists one line per command, every help page fits 80 columns, and a closed set
/// of values names its choices when a wrong one is given.
#[test]
fn every_help_line_fits_80_columns_and_closed_sets_name_their_choices() {
    let dir = tempfile::tempdir().unwrap();
    let top = text(&rekey_in(dir.path(), &["--help"]).stdout);
    let commands: Vec<&str> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| {
            assert!(
                l.starts_with("  ") && !l.starts_with("   "),
                "a command's summary runs over one line: {l:?}"
            );
            l.split_whitespace().next().unwrap()
        })
        .collect();
    assert!(commands.len() > 15, "{top}");
    let mut pages = vec![vec!["--help".to_string()]];
    pages.extend(
        commands
            .iter()
            .filter(|c| **c != "help")
            .map(|c| vec![c.to_string(), "--help".to_string()]),
    );
    pages.push(vec!["config".into(), "check".into(), "--help".into()]);
    for page in pages {
        let args: Vec<&str> = page.iter().map(String::as_str).collect();
        let out = rekey_in(dir.path(), &args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        for line in text(&out.stdout).lines() {
            assert!(
                line.chars().count() <= 80,
                "rekey {args:?}: {} columns: {line}",
                line.chars().count()
            );
        }
    }
    let wrong = rekey_in(
        dir.path(),
        &[
            "generate",
            "--key-out",
            "k",
            "--cert-out",
            "c",
            "--algorithm",
            "rsa-1024",
        ],
    );
    assert_eq!(wrong.status.code(), Some(64), "a usage error");
    assert!(
        text(&wrong.stderr).contains("[possible values: rsa-2048, rsa-3072, rsa-4096]"),
        "{}",
        text(&wrong.stderr)
    );
    assert!(!dir.path().join("k").exists(), "nothing written");
}

/// A stand-in `sf` at `bin/sf` of the world: logs its arguments to `sf.log` and answers with the
/// contents of `sf-answer.json` and the exit code in `sf-exit`, as `sf org display --json` does.
fn stand_in_sf(w: &World, answer: &Value, exit: i32) -> std::path::PathBuf {
    let bin = w.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(w.path("sf-answer.json"), answer.to_string()).unwrap();
    let dir = w.path("").display().to_string();
    let sf = bin.join("sf");
    std::fs::write(
        &sf,
        format!("#!/bin/sh\necho \"$*\" >> {dir}/sf.log\ncat {dir}/sf-answer.json\nexit {exit}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&sf, std::fs::Permissions::from_mode(0o755)).unwrap();
    sf
}

/// `auth = "sf_cli"`: rekey asks the Salesforce CLI for the admin session once per run, rotates
/// with it, and never prints it; a missing CLI, an org it has no login for and an expired login
/// are each refused before anything changes, with the command that fixes it.
#[tokio::test(flavor = "multi_thread")]
async fn an_admin_session_from_the_salesforce_cli_drives_a_rotation_and_is_never_printed() {
    let mut w = World::billing_only().await;
    w.set_admin("auth = \"sf_cli\"\ntarget_org = \"acme-admin\"");
    let before = w.current_fingerprint("billing").await;
    let sf = stand_in_sf(&w, &serde_json::json!({}), 0);
    let sf = sf.to_str().unwrap();

    let missing = w
        .rekey_with_env(&["rotate", "billing"], &[("REKEY_SF", "/nonexistent/sf")])
        .await;
    assert_eq!(missing.code, 64, "{}", missing.stderr);
    assert!(
        missing.stderr.contains("needs the Salesforce CLI")
            && missing
                .stderr
                .contains("npm install --global @salesforce/cli"),
        "{}",
        missing.stderr
    );

    let login = "sf org login web --alias acme-admin";
    let cases = [
        (
            serde_json::json!({"status": 1, "name": "NamedOrgNotFoundError",
                "message": "No authorization information found for acme-admin.", "exitCode": 1}),
            1,
            "the Salesforce CLI has no login for 'acme-admin'",
        ),
        (
            serde_json::json!({"status": 0, "result": {"accessToken": "00Dexpired!token",
                "instanceUrl": w.sim.base_url(), "connectedStatus": "RefreshTokenAuthError"}}),
            0,
            "the Salesforce CLI's login for 'acme-admin' no longer works",
        ),
    ];
    for (answer, exit, said) in cases {
        stand_in_sf(&w, &answer, exit);
        let refused = w
            .rekey_with_env(&["rotate", "billing"], &[("REKEY_SF", sf)])
            .await;
        assert_eq!(refused.code, 64, "{}", refused.stderr);
        assert!(
            refused.stderr.contains(said) && refused.stderr.contains(login),
            "{said}:\n{}",
            refused.stderr
        );
        let status = w.json(&["status", "billing"]).await;
        assert!(
            status[0]["open_rotation"].is_null(),
            "nothing changed: {status}"
        );
        assert_eq!(w.app_fingerprint("Billing_Sync"), before, "nothing changed");
    }

    let token = world::admin_access_token(&w).await;
    stand_in_sf(
        &w,
        &serde_json::json!({"status": 0, "result": {"accessToken": token,
            "instanceUrl": w.sim.base_url(), "connectedStatus": "Connected",
            "username": "rekey-admin@acme.example", "alias": "acme-admin"}}),
        0,
    );
    std::fs::remove_file(w.path("sf.log")).unwrap();
    let rotated = w
        .rekey_with_env(&["rotate", "billing"], &[("REKEY_SF", sf)])
        .await;
    assert_eq!(rotated.code, 0, "{}{}", rotated.stdout, rotated.stderr);
    let current = w.current_fingerprint("billing").await;
    assert_ne!(current, before);
    assert_eq!(w.app_fingerprint("Billing_Sync"), current);
    assert_eq!(
        std::fs::read_to_string(w.path("sf.log")).unwrap(),
        "org display --json --target-org acme-admin\n",
        "one `sf` run for the whole rotation"
    );
    for printed in &w.printed {
        assert!(
            !printed.contains(&token),
            "the admin token was printed:\n{printed}"
        );
    }
    w.assert_no_key_bytes_leaked();
}

/// `rekey token --format sf`, evaluated by a shell, logs the Salesforce CLI in with the token
/// (read by `sf` from SF_ACCESS_TOKEN, never from its arguments) under the credential's name.
#[tokio::test(flavor = "multi_thread")]
async fn token_format_sf_logs_the_salesforce_cli_in_with_the_token() {
    let mut w = World::billing_only().await;
    let json = w.json(&["token", "billing"]).await;
    let token = json["access_token"].as_str().unwrap().to_string();
    let run = w.ok(&["token", "billing", "--format", "sf"]).await;
    assert_eq!(run.stdout.lines().count(), 2, "{}", run.stdout);

    // The stand-in records what a real `sf org login access-token` reads: its arguments, and
    // the token from its environment.
    let bin = w.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = w.path("sf.log");
    std::fs::write(
        bin.join("sf"),
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" \"$SF_ACCESS_TOKEN\" > {}\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(bin.join("sf"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let shell = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"PATH="$2:$PATH" && eval "$1""#)
        .arg("sh")
        .arg(&run.stdout)
        .arg(&bin)
        .output()
        .unwrap();
    assert!(shell.status.success(), "{}", text(&shell.stderr));
    let seen = std::fs::read_to_string(&log).unwrap();
    let seen: Vec<&str> = seen.lines().collect();
    assert_eq!(
        seen,
        [
            format!(
                "org login access-token --no-prompt --instance-url {} --alias billing",
                w.sim.base_url()
            )
            .as_str(),
            token.as_str()
        ]
    );
    assert!(!seen[0].contains(&token), "the token is not an argument");
}

/// `rekey run` shows its progress on stderr: a bar on a terminal (here a pty made by `script`),
/// plain lines when stderr is a pipe, nothing with `--json`; stdout stays the summary.
#[tokio::test(flavor = "multi_thread")]
async fn run_shows_progress_as_a_bar_on_a_terminal_as_lines_in_a_pipe_and_not_with_json() {
    let mut w = World::billing_only().await;
    // The imported openssl key is due: each run below rotates it.
    let piped = w.ok(&["run"]).await;
    assert!(
        piped.stderr.contains("run: observed 1 credential(s)")
            && piped.stderr.contains("run: rotating billing")
            && piped.stderr.contains("run: billing: rotated"),
        "{}",
        piped.stderr
    );
    assert!(!piped.stdout.contains("run: rotating"), "{}", piped.stdout);

    let json = w.rekey(&["--json", "run", "--dry-run"]).await;
    assert!(!json.stderr.contains("run: observed"), "{}", json.stderr);
    serde_json::from_str::<Value>(&json.stdout).expect("stdout is one JSON document");

    // Two days on, a daily rotation is due again.
    w.edit_config(|c| c.replacen("policy = {", "rotate_every_days = 1\npolicy = {", 1));
    w.set_clock(2 * 86_400);
    let terminal = w
        .shell(r#"script -qec "\"$REKEY\" run 2>&1" /dev/null"#)
        .output()
        .await
        .unwrap();
    let seen = text(&terminal.stdout);
    assert!(terminal.status.success(), "{seen}");
    assert!(
        seen.contains("observing [")
            && seen.contains("] 1/1")
            && seen.contains("billing: rotated")
            && !seen.contains("run: rotating"),
        "a bar, not lines, on a terminal:\n{seen}"
    );
}
