//! rekey: rotates the JWT-bearer signing key and certificate of Salesforce Connected Apps and
//! External Client Apps. `main` parses, runs, and turns the outcome into an exit code.

// `pub` marks what a module offers the rest of the binary; there is no library to reach it from.
#![allow(unreachable_pub)]

mod cli;
mod config;
mod consumers;
mod controls;
mod emergency;
mod exit;
mod governance;
mod monitor;
mod pki;
mod rotation;
mod shutdown;
mod token;
mod windows;
mod wiring;

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(exit) => return exit.into(),
    };
    // Logs go to stderr so stdout stays the command's report (and valid JSON with --json).
    let level = match cli.verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    };
    // -v/-vv raise rekey's own crates only: their request log names method, host and path and
    // nothing else, while a dependency's debug output (the AWS SDK's dumps a response, the key
    // in it) is never rekey's to print. Their warnings still show.
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let ours = [
        "rekey",
        "rekey_api",
        "rekey_http",
        "rekey_file",
        "rekey_vault",
        "rekey_aws",
        "rekey_salesforce",
        "rekey_notify",
    ];
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(tracing::Level::WARN)
        .with_targets(ours.map(|crate_name| (crate_name, level)));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false)
                // Its own report of a failed write is an `eprintln!`, which panics on a closed
                // pipe; a log line that cannot be written is dropped like any other output.
                .log_internal_errors(false),
        )
        .with(filter)
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
