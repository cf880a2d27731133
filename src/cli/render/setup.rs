//! `init`, `config check` and `completions`.

use super::lines::print_json;
use crate::cli::reports::CredentialLine;
use crate::exit::Exit;
use rekey_api::Error;
use std::path::Path;

/// `rekey init` wrote the example config at `path`.
pub fn initialized(path: &Path, json: bool) {
    if json {
        print_json(&serde_json::json!({ "written": path }));
        return;
    }
    out!(
        "wrote {}: edit the org, credential and store names, then run `rekey config check`",
        path.display()
    );
}

/// A config without problems: one line per credential.
pub fn config_valid(path: &Path, credentials: &[CredentialLine], json: bool) {
    if json {
        print_json(&serde_json::json!({
            "config": path,
            "valid": true,
            "problems": [],
            "credentials": credentials,
        }));
        return;
    }
    out!(
        "{}: valid, {} credential(s)",
        path.display(),
        credentials.len()
    );
    for c in credentials {
        let consumers = match c.consumers {
            0 => String::new(),
            n => format!("; tells {n} consumer(s)"),
        };
        out!(
            "  {}: rotates {}; kept in {}{consumers}",
            c.name,
            c.rotates,
            c.stores.join(", ")
        );
    }
}

/// A config with problems: each on its own line (stderr, and stdout as JSON with `--json`).
pub fn config_problems(path: &Path, error: &Error, json: bool) -> Exit {
    // The validator reports one problem per line, each with its file:line:column.
    let text = error.to_string();
    let problems: Vec<&str> = text.lines().collect();
    if json {
        print_json(&serde_json::json!({
            "config": path,
            "valid": false,
            "problems": problems,
            "credentials": [],
        }));
    }
    err!(
        "error: {} problem(s) in {}:",
        problems.len(),
        path.display()
    );
    for p in &problems {
        err!("  {p}");
    }
    if let Some(hint) = error.hint() {
        err!("hint: {hint}");
    }
    Exit::of_error(error.kind())
}

/// A script (shell completions) on stdout, as it is.
pub fn script(text: &str) -> Exit {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Exit::Ok,
        Err(e) => {
            err!("error: cannot write the script to stdout: {e}");
            Exit::Internal
        }
    }
}
