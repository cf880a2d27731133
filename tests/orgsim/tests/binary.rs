//! The `orgsim` binary: start with a seed, print the URL, serve, exit 0 on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Kills the server if the test fails before its orderly SIGTERM, so no orphan keeps the
/// harness's output pipes open.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn binary_serves_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.toml");
    std::fs::write(&seed, common::seed_toml("")).unwrap();
    let url_file = dir.path().join("url");
    let child = Command::new(env!("CARGO_BIN_EXE_orgsim"))
        .arg("--seed")
        .arg(&seed)
        .arg("--url-file")
        .arg(&url_file)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("orgsim listening on ")
        .expect(&line)
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert_eq!(std::fs::read_to_string(&url_file).unwrap(), url);

    let r = reqwest::get(format!("{url}/services/data/")).await.unwrap();
    assert_eq!(r.status(), 200);

    // SIGTERM through kill(1): the test harness has no libc binding and unsafe is forbidden.
    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(child.0.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn binary_rejects_a_bad_seed() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.toml");
    std::fs::write(&seed, "[org]\nid = \"nope\"").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_orgsim"))
        .arg("--seed")
        .arg(&seed)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid seed"));
}
