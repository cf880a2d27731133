//! The command line: arguments (`args`), one function per subcommand (`commands`), the reports
//! they assemble (`reports`) and everything printed (`render`).

pub mod args;
mod commands;
mod render;
mod reports;

pub use args::Cli;
pub use commands::dispatch;
pub use render::error;
