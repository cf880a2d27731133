//! Everything rekey prints: one file per report, text or `--json`. The only place that writes to
//! stdout or stderr (log lines aside, which the tracing subscriber writes).
//!
//! Reports handed in here carry fingerprints, names and dates, never key bytes: the types that
//! reach this module have no field that could hold one.
//!
//! Every line goes through [`out!`] or [`err!`], never `println!`: a closed pipe (`rekey rotate |
//! head -3`), a closed terminal or a full disk makes `println!` panic, and a panic half-way
//! through a rotation leaves the app holding a certificate whose key is not CURRENT. A line that
//! cannot be written is dropped; the command goes on to its next safe state.

/// A line on stdout that never fails the command.
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::render::write_line(false, format_args!($($arg)*)) };
}

/// A line on stderr that never fails the command.
macro_rules! err {
    ($($arg:tt)*) => { $crate::cli::render::write_line(true, format_args!($($arg)*)) };
}

mod agent;
mod emergency;
mod governance;
mod journal;
mod keys;
mod lines;
mod progress;
mod rotation;
mod run;
mod sarif;
mod setup;
mod status;
mod token;

pub use agent::agent;
pub use emergency::emergency;
pub use governance::{audit, grants, inventory};
pub use journal::{chain, export, journal};
pub use keys::{import, inspect, verify};
pub use lines::{deliveries, note, prompt, warning};
pub use progress::RunProgress;
pub use rotation::{RotateProgress, plan};
pub use run::{daemon, run};
pub use setup::{config_problems, config_valid, initialized, script};
pub use status::{check, preflight, status};
pub use token::token;

use crate::exit::Exit;
use crate::rotation::Stopped;
use lines::{opt, print_json};
use rekey_api::{Error, RotationId, Step};
use serde::Serialize;

#[derive(Serialize)]
struct ErrorJson<'a> {
    kind: String,
    message: String,
    hint: Option<&'a str>,
    rotation_id: Option<&'a RotationId>,
    step: Option<Step>,
    published: Option<bool>,
}

/// Prints an error that stopped a command (stderr; and stdout as JSON with `--json`) and returns
/// its exit code.
pub fn error(error: &Error, json: bool) -> Exit {
    if json {
        print_json(&serde_json::json!({ "error": ErrorJson {
            kind: error.kind().to_string(),
            message: error.to_string(),
            hint: error.hint(),
            rotation_id: None,
            step: None,
            published: None,
        }}));
    }
    err!("error: {error}");
    hint(error);
    Exit::of_error(error.kind())
}

/// Prints a rotation of `credential` that stopped: where it stood, whether the app may hold the
/// new certificate, what it left behind, and the command that finishes or clears it; returns its
/// exit code.
pub fn stopped(credential: &str, stopped: &Stopped, json: bool) -> Exit {
    let error = &stopped.error;
    if json {
        print_json(&serde_json::json!({ "error": ErrorJson {
            kind: error.kind().to_string(),
            message: error.to_string(),
            hint: error.hint(),
            rotation_id: stopped.rotation_id.as_ref(),
            step: stopped.step,
            published: Some(stopped.published),
        }}));
    }
    match &stopped.rotation_id {
        Some(id) => {
            err!(
                "error: rotation {id} failed at step {}: {error}",
                opt(stopped.step)
            );
            err!("note: {}", left_behind(credential, id, stopped));
        }
        None => err!("error: {error}"),
    }
    hint(error);
    stopped.exit()
}

/// What a stopped rotation left (the app, PENDING, the journal) and the commands that clear it.
fn left_behind(cred: &str, id: &rekey_api::RotationId, stopped: &Stopped) -> String {
    if stopped.published && stopped.emergency {
        return format!(
            "the new certificate may already be on the app; emergency rekey {id} stays open in the journal: `rekey resume {cred}` finishes it (it is never undone: that would trust the leaked key again; runbooks/emergency-rekey.md)"
        );
    }
    if stopped.published {
        return format!(
            "the new certificate may already be on the app; the journal stays open: `rekey resume {cred}` finishes the rotation, `rekey abort {cred}` undoes it (runbooks/rollback.md)"
        );
    }
    let staged = match stopped.step {
        Some(Step::Generate) | None => "",
        Some(Step::Stage) => ", its new key may be staged as PENDING",
        Some(_) => ", its new key is staged as PENDING",
    };
    format!(
        "the app was not changed, but rotation {id} stays open in the journal{staged}: `rekey resume {cred}` tries again from {}, `rekey abort {cred}` clears it (runbooks/rollback.md)",
        opt(stopped.step)
    )
}

fn hint(error: &Error) {
    if let Some(hint) = error.hint() {
        err!("hint: {hint}");
    }
}

/// Writes one line; an error (EPIPE, EBADF, ENOSPC) is dropped, see the module docs.
pub(crate) fn write_line(stderr: bool, line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = if stderr {
        writeln!(std::io::stderr().lock(), "{line}")
    } else {
        writeln!(std::io::stdout().lock(), "{line}")
    };
}

/// What clap says about the command line (help, version, or a usage error) and its exit code.
/// Written through `print`, whose failure (a closed pipe after `rekey --help | head -1`) is
/// ignored like every other output's.
pub fn clap_message(e: &clap::Error) -> Exit {
    let _ = e.print();
    if e.use_stderr() {
        Exit::Config
    } else {
        Exit::Ok
    }
}
