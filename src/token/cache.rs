//! `rekey token`'s cache file, and the trust rule for files that hold secrets of this user.
//!
//! The cache is trusted the way ssh trusts its files (StrictModes), since a planted file would
//! hand a consumer someone else's token and instance: only a regular file (not a symbolic link,
//! one name only) that this user owns, of mode 0600, in a folder chain nobody else can change —
//! each folder up to `/`, as written and as resolved, owned by root or this user and writable by
//! neither group nor others. A sticky folder (like `/tmp`, mode 1777) may be writable by all:
//! there only an entry's owner may rename or remove it, and the folder below it is checked to be
//! ours. And the token's `instance_url` must be the org's ([`implied_instance`]). Anything else
//! is ignored with one warning, and a token is minted; an untrusted folder is not written to.
//! `rekey agent`'s bearer file is held to the same rule ([`open_private`]).

use super::mint::IssuedToken;
use crate::config::CredentialConfig;
use chrono::{DateTime, Utc};
use rekey_api::{Fingerprint, Result, SecretString, Stage, Stages};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

/// The cache file of `cred` in `dir`.
pub fn cache_file(dir: &Path, cred: &CredentialConfig) -> Result<PathBuf> {
    // The name becomes a file name: no separators, no `..`.
    rekey_api::check_credential_name(&cred.name)?;
    Ok(dir.join(format!("{}.json", cred.name)))
}

/// Why `dir` (or, before it exists, the nearest folder above it) is not a folder only this user
/// and root can change; `None` when it is. See the module docs for the rule.
pub(super) fn untrusted_dir(dir: &Path, uid: u32) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let existing = dir.ancestors().find(|p| p.exists())?;
    let resolved = match std::fs::canonicalize(existing) {
        Ok(path) => path,
        Err(e) => return Some(format!("cannot resolve {}: {e}", existing.display())),
    };
    // As written (each link's own folder) and as resolved (where the links lead).
    for folder in existing.ancestors().chain(resolved.ancestors()) {
        if folder.as_os_str().is_empty() {
            continue;
        }
        let meta = match std::fs::metadata(folder) {
            Ok(meta) => meta,
            Err(e) => return Some(format!("cannot inspect {}: {e}", folder.display())),
        };
        if !meta.is_dir() {
            return Some(format!("{} is not a folder", folder.display()));
        }
        if meta.uid() != 0 && meta.uid() != uid {
            return Some(format!(
                "{} belongs to user id {}, not to this user ({uid}) or root",
                folder.display(),
                meta.uid()
            ));
        }
        let mode = meta.permissions().mode();
        let sticky = mode & 0o1000 != 0;
        if mode & 0o022 != 0 && !sticky {
            return Some(format!(
                "{} is mode {:04o}: others can replace what is in it",
                folder.display(),
                mode & 0o7777
            ));
        }
    }
    None
}

/// Whether `instance_url`, from a cached token, is where the org `login_url` names sends its
/// tokens: the same origin (a My Domain or the emulator), or, when `login_url` is Salesforce's
/// generic login (`login.salesforce.com`, `test.salesforce.com`), an https My Domain
/// (`*.my.salesforce.com`). A token is only ever sent to its instance: a planted
/// `instance_url` would send it, and everything done with it, elsewhere.
pub fn implied_instance(login_url: &str, instance_url: &str) -> bool {
    let (Ok(login), Ok(instance)) = (
        reqwest::Url::parse(login_url),
        reqwest::Url::parse(instance_url),
    ) else {
        return false;
    };
    if rekey_api::endpoint(instance_url, "instance_url", "token cache").is_err() {
        return false;
    }
    let same_origin = login.scheme() == instance.scheme()
        && login.host_str() == instance.host_str()
        && login.port_or_known_default() == instance.port_or_known_default();
    let generic_login = matches!(
        login.host_str(),
        Some("login.salesforce.com" | "test.salesforce.com")
    );
    same_origin
        || (generic_login
            && instance.scheme() == "https"
            && instance.port().is_none()
            && instance
                .host_str()
                .is_some_and(|h| h.ends_with(".my.salesforce.com")))
}

/// A cache file's contents.
#[derive(Serialize, Deserialize)]
struct Cached<'a> {
    #[serde(borrow)]
    access_token: Cow<'a, str>,
    instance_url: String,
    fingerprint: Fingerprint,
    minted_at: DateTime<Utc>,
    /// With the login URL: whose token it is, so a changed config never reuses another's.
    username: String,
    login_url: String,
}

/// `path` opened for reading if it is a file only this user can have written or read: not a
/// symbolic link, a regular file with one name, owned by `uid`, mode 0600 or stricter (`Ok(None)`
/// when there is no such file; `Err` says what is wrong with the one there). The folders above
/// are [`untrusted_dir`]'s to judge.
pub(crate) fn open_private(
    path: &Path,
    uid: u32,
) -> std::result::Result<Option<std::fs::File>, String> {
    use rustix::fs::{Mode, OFlags};
    // Not through a symbolic link; and non-blocking, so a FIFO planted there cannot hang us.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let file = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => std::fs::File::from(fd),
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(rustix::io::Errno::LOOP) => return Err("it is a symbolic link".into()),
        Err(e) => return Err(format!("cannot open it: {e}")),
    };
    // The opened file's own facts (fstat), not the name's: nothing can swap it in between.
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot inspect it: {e}"))?;
    if !meta.file_type().is_file() {
        return Err("it is not a regular file".into());
    }
    if meta.uid() != uid {
        return Err(format!(
            "it belongs to user id {}, not to this user ({uid})",
            meta.uid()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "its mode is {:04o}, not 0600: others could have read or written it",
            meta.mode() & 0o7777
        ));
    }
    if meta.nlink() != 1 {
        return Err(format!("it has {} names (hard links)", meta.nlink()));
    }
    Ok(Some(file))
}

/// The cached token of `cred`, if it is still usable: minted for the same user and org less
/// than `token_cache_secs` ago, with a key the store still holds (`Ok(None)`: a plain miss).
/// `Err` says why a file that is there cannot be trusted (see the module docs).
pub(super) fn cached(
    path: &Path,
    uid: u32,
    cred: &CredentialConfig,
    login_url: &str,
    stages: &Stages,
) -> std::result::Result<Option<IssuedToken>, String> {
    use std::io::Read as _;
    let file = match open_private(path, uid) {
        Ok(Some(file)) => file,
        Ok(None) => return Ok(None),
        Err(why) => return Err(why),
    };
    let mut bytes = Vec::new();
    // A cache file is a few hundred bytes; more is not one.
    let read = file.take(64 * 1024).read_to_end(&mut bytes);
    let hit = match read {
        Err(e) => Err(format!("cannot read it: {e}")),
        Ok(_) => match serde_json::from_slice::<Cached>(&bytes) {
            Err(e) => {
                tracing::info!(credential = %cred.name, problem = %rekey_api::parse_problem(&e), "unreadable token cache; minting");
                Ok(None)
            }
            Ok(c) => usable(c, cred, login_url, stages),
        },
    };
    wipe(&mut bytes);
    hit
}

fn usable(
    c: Cached<'_>,
    cred: &CredentialConfig,
    login_url: &str,
    stages: &Stages,
) -> std::result::Result<Option<IssuedToken>, String> {
    let age = rekey_api::now() - c.minted_at;
    let fresh =
        age >= chrono::Duration::zero() && age.to_std().is_ok_and(|age| age < cred.token_cache);
    if !fresh || c.username != cred.username || c.login_url != login_url {
        return Ok(None);
    }
    if !implied_instance(login_url, &c.instance_url) {
        return Err(format!(
            "its instance_url is not the org's (login_url {login_url})"
        ));
    }
    // A rotation, abort or emergency rekey since: a token from a key the store no longer holds
    // may belong to a session that was revoked with it.
    let Some((stage, info)) = Stage::ALL.into_iter().find_map(|stage| {
        stages
            .get(stage)
            .filter(|v| v.public.fingerprint() == c.fingerprint)
            .map(|v| (stage, v))
    }) else {
        return Ok(None);
    };
    Ok(Some(IssuedToken {
        access_token: SecretString::new(c.access_token.into_owned()),
        instance_url: c.instance_url,
        fingerprint: c.fingerprint,
        generation: info.generation,
        stage,
        cached: true,
    }))
}

/// Writes `token` to the cache file `path` (0600, replaced whole by `write_atomic`), once its
/// folders exist and are still trusted; a token for an instance the org does not imply is not
/// cached, since it would never be read back.
pub(super) fn save(
    path: &Path,
    uid: u32,
    cred: &CredentialConfig,
    login_url: &str,
    token: &IssuedToken,
) -> std::io::Result<()> {
    if !implied_instance(login_url, &token.instance_url) {
        tracing::info!(credential = %cred.name, "not caching the token: its instance_url is not the one login_url implies");
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        if let Some(why) = untrusted_dir(dir, uid) {
            return Err(std::io::Error::other(why));
        }
    }
    let entry = Cached {
        access_token: Cow::Borrowed(token.access_token.expose_secret()),
        instance_url: token.instance_url.clone(),
        fingerprint: token.fingerprint,
        minted_at: rekey_api::now(),
        username: cred.username.clone(),
        login_url: login_url.to_string(),
    };
    let mut bytes = serde_json::to_vec(&entry)?;
    let written = rekey_api::write_atomic(path, &bytes, 0o600);
    wipe(&mut bytes);
    written
}

/// Overwrites a buffer that held a token before it is freed. Best effort (the token also passed
/// through the HTTP and JSON layers), but it keeps the plain copies this module makes short-lived.
pub(crate) fn wipe(bytes: &mut [u8]) {
    bytes.fill(0);
    std::hint::black_box(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_instance_must_be_where_the_login_url_sends_tokens() {
        let my_domain = "https://acme.my.salesforce.com";
        assert!(implied_instance(
            my_domain,
            "https://acme.my.salesforce.com"
        ));
        assert!(implied_instance(
            my_domain,
            "https://acme.my.salesforce.com/"
        ));
        assert!(implied_instance(
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080"
        ));
        for foreign in [
            "https://evil.example",
            "https://acme.my.salesforce.com.evil.example",
            "https://other.my.salesforce.com",
            "http://acme.my.salesforce.com",
            "https://acme.my.salesforce.com:8443",
            "http://127.0.0.1:8081",
            "not a url",
        ] {
            assert!(!implied_instance(my_domain, foreign), "{foreign}");
        }
        assert!(!implied_instance(
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8081"
        ));
        // Salesforce's generic login hands out the org's My Domain, whichever it is.
        for login in [
            "https://login.salesforce.com",
            "https://test.salesforce.com",
        ] {
            assert!(implied_instance(login, "https://acme.my.salesforce.com"));
            assert!(implied_instance(
                login,
                "https://acme--uat.sandbox.my.salesforce.com"
            ));
            assert!(!implied_instance(login, "https://evil.example"));
            assert!(!implied_instance(login, "http://acme.my.salesforce.com"));
            assert!(!implied_instance(
                login,
                "https://my.salesforce.com.evil.example"
            ));
        }
    }

    #[test]
    fn a_folder_chain_is_trusted_only_when_no_one_else_can_change_it() {
        use std::os::unix::fs::PermissionsExt as _;
        let uid = rustix::process::geteuid().as_raw();
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("a/b");
        std::fs::create_dir_all(&dir).unwrap();
        let chmod = |p: &Path, mode: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        chmod(base.path(), 0o700);
        chmod(&base.path().join("a"), 0o755);
        chmod(&dir, 0o700);
        assert_eq!(untrusted_dir(&dir, uid), None);
        // Not there yet: judged by the nearest folder that is.
        assert_eq!(untrusted_dir(&dir.join("c/d"), uid), None);
        chmod(&base.path().join("a"), 0o775);
        let why = untrusted_dir(&dir.join("c"), uid).unwrap();
        assert!(
            why.ends_with("a is mode 0775: others can replace what is in it"),
            "{why}"
        );
        chmod(&base.path().join("a"), 0o1777);
        assert_eq!(untrusted_dir(&dir, uid), None, "sticky");
        // Someone else's folder: root may make one; anyone else stands in as "someone else"
        // for a folder of theirs by asking as uid + 1 (root's folders are trusted by everyone).
        let why = if uid == 0 {
            let status = std::process::Command::new("chown")
                .arg("65534")
                .arg(&dir)
                .status()
                .unwrap();
            assert!(status.success());
            untrusted_dir(&dir, uid)
        } else {
            untrusted_dir(&dir, uid + 1)
        };
        let why = why.unwrap();
        assert!(why.contains("not to this user"), "{why}");
    }
}
