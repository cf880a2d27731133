//! The check section: one `rekey check` of many credentials spread over several orgs, each org its
//! own emulator: wall time, the process's peak memory against a check of one org's credentials,
//! and the Salesforce calls counted from each emulator's call log.

use crate::org::{self, ADMIN_CONSUMER_KEY, ADMIN_USER, Error, INTEGRATION_USER, Rekey, path_arg};
use crate::table::{Align, Table, secs};
use orgsim::{OrgSim, Seed};
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// What the section measured.
pub(crate) struct CheckRun {
    orgs: usize,
    per_org: usize,
    /// Wall time and peak resident memory (KiB) of the check of one org's credentials.
    small: (Duration, u64),
    /// The same of the check of every org's.
    large: (Duration, u64),
    /// Over every org, in the large check: admin logins, readMetadata, listMetadata, all calls.
    logins: usize,
    reads: usize,
    lists: usize,
    calls: usize,
}

/// The seed of org `k`: the admin app and users, and `per_org` Connected Apps holding the one
/// certificate every credential's store holds too.
fn seed_toml(k: usize, per_org: usize) -> String {
    let mut seed = format!(
        r#"[org]
id = "00D5g0000{k:04}CHKAA"
name = "Check {k}"

[settings]
daily_api_requests = 1000000000

{people}
"#,
        people = org::people_seed(),
    );
    for i in 0..per_org {
        let _ = write!(
            seed,
            r#"
[[connected_apps]]
full_name = "Check_App_{i:05}"
certificate_file = "shared.crt"
metadata = """<ConnectedApp xmlns="http://soap.sforce.com/2006/04/metadata">
    <label>Check App {i:05}</label>
    <oauthConfig>
        <callbackUrl>https://localhost/unused</callbackUrl>
        <consumerKey>3MVG9CheckApp{k:02}x{i:05}</consumerKey>
        <isAdminApproved>true</isAdminApproved>
        <scopes>Api</scopes>
    </oauthConfig>
</ConnectedApp>"""
"#
        );
    }
    seed
}

/// The credential of app `i` in org `k`.
fn credential(k: usize, i: usize) -> String {
    format!("c{k:02}-{i:05}")
}

/// `rekey.toml` for the orgs at `urls` (org `k` at `urls[k]`), `per_org` credentials each.
fn config_toml(urls: &[String], per_org: usize) -> String {
    let mut config = String::from(
        "[stores.local]\nkind = \"file\"\npath = \"keys\"\n\n[run]\nconcurrency = 8\n",
    );
    for (k, url) in urls.iter().enumerate() {
        let _ = write!(
            config,
            "\n[orgs.org{k:02}]\nlogin_url = \"{url}\"\n\n[orgs.org{k:02}.admin]\nauth = \"jwt\"\n\
             consumer_key = \"{ADMIN_CONSUMER_KEY}\"\nusername = \"{ADMIN_USER}\"\nkey_file = \"admin.key\"\n"
        );
    }
    for k in 0..urls.len() {
        for i in 0..per_org {
            let _ = write!(
                config,
                "\n[credentials.{cred}]\norg = \"org{k:02}\"\napp_kind = \"connected_app\"\n\
                 app = \"Check_App_{i:05}\"\nusername = \"{INTEGRATION_USER}\"\n\
                 consumer_key = \"3MVG9CheckApp{k:02}x{i:05}\"\nstore = \"local\"\nsubject = {{ cn = \"{cred}\" }}\n",
                cred = credential(k, i)
            );
        }
    }
    config
}

/// Copies the file store folder of one credential to another's (its key, certificate, metadata
/// and stage map: the same key, as if imported; no journal).
fn copy_store(from: &Path, to: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(to)?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700))?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "journal.jsonl" || name == "lock" || name == "lease" {
            continue;
        }
        std::fs::copy(entry.path(), to.join(&name))?;
    }
    Ok(())
}

/// Runs `rekey --config CONFIG check --json` in `dir` to its end: its wall time and peak
/// resident memory (KiB, the kernel's high-water mark read until it exits).
async fn timed_check(rekey: &Rekey, dir: &Path, config: &str) -> Result<(Duration, u64), Error> {
    let started = Instant::now();
    let mut child = rekey
        .command(dir, &["--config", config, "check", "--json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let status_file = format!("/proc/{}/status", child.id().ok_or("check ended at once")?);
    let mut peak = 0;
    let status = loop {
        if let Some(kib) = std::fs::read_to_string(&status_file).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        }) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let elapsed = started.elapsed();
    // Exit 0–3 are verdicts (the credentials never rotated: warnings); anything else failed.
    if status.code().is_none_or(|c| c > 3) {
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            use tokio::io::AsyncReadExt as _;
            e.read_to_string(&mut stderr).await?;
        }
        return Err(format!("rekey check exited with {status}: {}", stderr.trim()).into());
    }
    Ok((elapsed, peak))
}

/// `orgs` emulators of `per_org` apps each; one `check` of the first org's credentials, then one
/// of all of them.
pub(crate) async fn run(rekey: &Rekey, orgs: usize, per_org: usize) -> Result<CheckRun, Error> {
    let dir = tempfile::Builder::new()
        .prefix("rekey-bench-check-")
        .tempdir()?;
    let root = dir.path();
    org::admin_pair(root).await?;
    rekey
        .generate(
            root,
            &root.join("shared.key"),
            &root.join("shared.crt"),
            "shared",
            365,
        )
        .await?;
    let mut sims = Vec::new();
    for k in 0..orgs {
        let path = root.join(format!("seed-{k}.toml"));
        std::fs::write(&path, seed_toml(k, per_org))?;
        let seed = Seed::from_path(&path)
            .map_err(|e| format!("the check bench's seed is invalid: {e}"))?;
        sims.push(OrgSim::start(seed).await?);
    }
    let urls: Vec<String> = sims.iter().map(OrgSim::base_url).collect();
    std::fs::write(root.join("rekey.toml"), config_toml(&urls, per_org))?;
    std::fs::write(
        root.join("rekey-1org.toml"),
        config_toml(&urls[..1], per_org),
    )?;
    // One import through rekey, then the same key copied into every other credential's folder.
    let first = credential(0, 0);
    let key = path_arg(&root.join("shared.key"))?.to_string();
    let crt = path_arg(&root.join("shared.crt"))?.to_string();
    rekey
        .ok(root, &["import", &first, "--key", &key, "--cert", &crt])
        .await?;
    let template = root.join("keys").join(&first);
    for k in 0..orgs {
        for i in 0..per_org {
            let cred = credential(k, i);
            if cred != first {
                copy_store(&template, &root.join("keys").join(cred))?;
            }
        }
    }
    let small = timed_check(rekey, root, "rekey-1org.toml").await?;
    let before: Vec<usize> = sims.iter().map(|s| s.calls().len()).collect();
    let large = timed_check(rekey, root, "rekey.toml").await?;
    let (mut logins, mut reads, mut lists, mut calls) = (0, 0, 0, 0);
    for (sim, since) in sims.iter().zip(before) {
        for c in sim.calls().into_iter().skip(since) {
            calls += 1;
            let op = c.operation.as_deref().unwrap_or_default();
            logins += usize::from(c.path.ends_with("/oauth2/token"));
            reads += usize::from(op.starts_with("readMetadata"));
            lists += usize::from(op.starts_with("listMetadata"));
        }
    }
    for sim in sims {
        sim.shutdown().await;
    }
    Ok(CheckRun {
        orgs,
        per_org,
        small,
        large,
        logins,
        reads,
        lists,
        calls,
    })
}

/// The section's table: the two checks, the memory growth per 1,000 credentials, the calls
/// against the goal (one login per org, ⌈N/10⌉ reads per org).
pub(crate) fn table(r: &CheckRun) -> String {
    let total = r.orgs * r.per_org;
    let mut t = Table::new(&[
        ("check of", Align::Left),
        ("wall", Align::Right),
        ("peak memory", Align::Right),
    ]);
    let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
    t.row(vec![
        format!("{} credentials, 1 org", r.per_org),
        secs(r.small.0),
        mib(r.small.1),
    ]);
    t.row(vec![
        format!("{total} credentials, {} orgs", r.orgs),
        secs(r.large.0),
        mib(r.large.1),
    ]);
    let extra = total.saturating_sub(r.per_org);
    let growth = if extra == 0 {
        0.0
    } else {
        (r.large.1.saturating_sub(r.small.1)) as f64 / 1024.0 / (extra as f64 / 1000.0)
    };
    let goal_reads = r.orgs * r.per_org.div_ceil(10);
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    format!(
        "{}\n\
         - time goal (< 5 s for the large check): {}\n\
         - memory growth: {growth:.2} MiB per 1,000 more credentials (goal < 1 MB): {}\n\
         - Salesforce calls of the large check: {} in all — {} admin logins (goal {}), {} \
         readMetadata (goal at most {goal_reads}), {} listMetadata: {}\n",
        t.render(),
        verdict(r.large.0 < Duration::from_secs(5)),
        verdict(growth < 1.0),
        r.calls,
        r.logins,
        r.orgs,
        r.reads,
        r.lists,
        verdict(r.logins <= r.orgs && r.reads <= goal_reads),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_and_config_name_every_app_once() {
        let seed = seed_toml(3, 12);
        assert_eq!(seed.matches("[[connected_apps]]").count(), 13);
        assert!(seed.contains("3MVG9CheckApp03x00011"));
        let urls = vec![
            "http://127.0.0.1:1".to_string(),
            "http://127.0.0.1:2".into(),
        ];
        let config = config_toml(&urls, 12);
        assert_eq!(config.matches("[credentials.").count(), 24);
        assert!(config.contains("[credentials.c01-00011]") && config.contains("[orgs.org01]"));
    }
}
