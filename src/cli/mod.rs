//! The command line: arguments (`args`), one function per subcommand (`commands`), the reports
//! they assemble (`reports`) and everything printed (`render`).

pub mod args;
mod commands;
mod render;
mod reports;

pub use args::Cli;
pub use commands::dispatch;
pub use render::error;

use crate::exit::Exit;

/// The parsed command line, or the exit code once clap has said why not: 0 for `--help` and
/// `--version`, 64 (usage) for a wrong argument or value, as for every other usage error.
pub fn parse() -> Result<Cli, Exit> {
    <Cli as clap::Parser>::try_parse().map_err(|e| render::clap_message(&e))
}
