//! The `orgsim` binary: serves a seeded emulated org on 127.0.0.1 until SIGTERM/SIGINT.

use clap::Parser;
use orgsim::{OrgSim, Seed};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Salesforce org emulator.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Seed file (.toml or .json).
    #[arg(long)]
    seed: PathBuf,
    /// Port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Also write the base URL to this file (atomically, via rename).
    #[arg(long)]
    url_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("orgsim: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let seed = Seed::from_path(&args.seed)?;
    let sim = OrgSim::start_on(seed, args.port).await?;
    let url = sim.base_url();
    // The URL file comes first so that whoever saw the printed line can also read the file.
    if let Some(path) = &args.url_file {
        write_atomically(path, &url)?;
    }
    let mut stdout = std::io::stdout();
    writeln!(stdout, "orgsim listening on {url}")?;
    stdout.flush()?;
    wait_for_signal().await?;
    sim.shutdown().await;
    Ok(())
}

/// Writes a sibling temp file and renames it, so readers never see a partial URL.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

async fn wait_for_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result,
        _ = term.recv() => Ok(()),
    }
}
