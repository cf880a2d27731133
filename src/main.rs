//! rekey: rotates the JWT-bearer signing key and certificate of Salesforce Connected Apps and
//! External Client Apps. `main` parses, runs, and turns the outcome into an exit code.

// `pub` marks what a module offers the rest of the binary; there is no library to reach it from.
#![allow(unreachable_pub)]

mod cli;
mod config;
mod consumers;
mod emergency;
mod exit;
mod monitor;
mod pki;
mod rotation;
mod shutdown;
mod token;
mod windows;
mod wiring;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // Logs go to stderr so stdout stays the command's report (and valid JSON with --json).
    let level = match cli.verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        // Its own report of a failed write is an `eprintln!`, which panics on a closed pipe; a
        // log line that cannot be written is dropped like any other output (cli::render).
        .log_internal_errors(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let error = rekey_api::Error::new(
                rekey_api::ErrorKind::Unexpected,
                "cannot start the async runtime",
            )
            .with_source(e);
            return cli::error(&error, cli.json).into();
        }
    };
    runtime.block_on(cli::dispatch(cli)).into()
}
