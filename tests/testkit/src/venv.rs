//! The workspace's git-ignored Python virtualenv (`.venv`), where the tests get the servers and
//! clients they run from PyPI at pinned versions: OpenBao, moto, a Salesforce client library.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The workspace root (two levels above this crate).
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `.venv/bin/<tool>` of the workspace, pip-installing `packages` into the venv first if the
/// tool is missing.
pub(crate) fn venv_tool(tool: &str, packages: &[&str]) -> PathBuf {
    let path = venv().join("bin").join(tool);
    install_unless(|| path.exists(), packages);
    assert!(
        path.exists(),
        "{packages:?} installed but {} is missing",
        path.display()
    );
    path
}

/// The venv's `python`, able to import `module`: `packages` are pip-installed first when it
/// cannot.
pub fn venv_python(module: &str, packages: &[&str]) -> PathBuf {
    let python = venv().join("bin/python");
    let importable = || {
        python.exists()
            && Command::new(&python)
                .args(["-c", &format!("import {module}")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    };
    install_unless(importable, packages);
    assert!(
        importable(),
        "{packages:?} installed but {module} cannot be imported"
    );
    python
}

fn venv() -> PathBuf {
    workspace_root().join(".venv")
}

/// Installs `packages` unless `ready`. One exclusive file lock serializes every install into
/// the venv, so parallel test binaries install once, wait for each other, and never run two
/// pips against the same site-packages.
fn install_unless(ready: impl Fn() -> bool, packages: &[&str]) {
    if ready() {
        return;
    }
    let dir = workspace_root().join("target");
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let lock_path = dir.join("venv-install.lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap_or_else(|e| panic!("open {}: {e}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("lock {}: {e}", lock_path.display()));
    // Another test binary may have finished the install while this one waited for the lock.
    if ready() {
        return;
    }
    let python = venv().join("bin/python");
    if !python.exists() {
        run(Command::new("python3").arg("-m").arg("venv").arg(venv()));
    }
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(packages));
}

fn run(command: &mut Command) {
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
