//! `make bench`: measures rekey against the org emulator and prints Markdown tables (also written
//! to `target/bench/results.md`).
//!
//! - **Cutover**: 50 consumers mint tokens continuously (real JWT signing and HTTP each time)
//!   through one rotation while the emulator's propagation window trusts the old or the new
//!   certificate at random per request, for four strategies: a naive script with store-pull
//!   consumers, `rekey rotate` with the same consumers, and `rekey rotate` with consumers that
//!   run `rekey token` or ask `rekey agent`; the same warm-up and retry budget for all. Failed
//!   mints (in all and inside the window), the time from the app's certificate change until
//!   every consumer signs with the new key, the rotation's wall time, mint latency.
//! - **Key generation**: `rekey generate` against `openssl req -x509 -newkey rsa:2048 -nodes`.
//! - **Fleet**: one `rekey run` rotating N apps with bounded concurrency, against the
//!   keygen-only lower bound.
//! - **Check**: one `rekey check` of many credentials over several orgs (each its own emulator):
//!   wall time, peak memory, and the Salesforce calls counted from the emulators' logs.
//! - **Consumer secret**: 50 consumers log in with the client credentials flow through one
//!   `rekey rotate` of an External Client App's consumer key and secret, the old pair retired
//!   once all moved, against deleting the old pair right after the rotation. Failed logins,
//!   the time until the last consumer uses the new pair, the rotation's wall time.
//!
//! It drives the real release `rekey` binary (next to this one) as a user would, starts every
//! emulator in-process on a free 127.0.0.1 port, and stops them all before it exits.

mod check;
mod custody;
mod cutover;
mod fleet;
mod keygen;
mod machine;
mod org;
mod secret;
mod stats;
mod table;

use clap::Parser;
use org::{Error, Rekey};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Command line of `rekey-bench` (`make bench BENCH_FLAGS="…"`).
#[derive(Debug, Parser)]
#[command(
    about = "Benchmarks rekey against the org emulator; prints Markdown tables",
    args_override_self = true
)]
struct Args {
    /// Multiplies the cutover's propagation windows (rounded to whole seconds, at least 1 s
    /// for a window that is not 0).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// The cutover's propagation windows P, in seconds, before scaling.
    #[arg(long, value_delimiter = ',', default_value = "0,5,30")]
    windows: Vec<u64>,
    /// Consumers minting through each cutover rotation.
    #[arg(long, default_value_t = 50)]
    consumers: usize,
    /// Mean pause between a consumer's mints, in milliseconds (each pause is drawn from 0.5–1.5
    /// times this).
    #[arg(long, default_value_t = 2000)]
    interval_ms: u64,
    /// Cutover strategies to run, comma-separated: naive (a), rekey (b), token (c), agent (d).
    #[arg(long, value_delimiter = ',', default_value = "naive,rekey,token,agent")]
    strategies: Vec<cutover::Strategy>,
    /// Run a window's strategies one after another instead of at the same time.
    #[arg(long)]
    one_by_one: bool,
    /// Print each `rekey rotate`'s steps and their durations to stderr.
    #[arg(long, short)]
    verbose: bool,
    /// Certificates each tool makes in the key generation comparison.
    #[arg(long, default_value_t = 20)]
    keygen: usize,
    /// Apps rotated by the fleet run.
    #[arg(long, default_value_t = 1000)]
    fleet: usize,
    /// `[run] concurrency` of the fleet run, and the concurrency of its keygen-only bound.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,
    /// How often a consumer secret consumer reads the store's CURRENT pair again on its own, in
    /// seconds, before scaling by --scale (it also reads it after a refused login).
    #[arg(long, default_value_t = 10)]
    refresh_secs: u64,
    /// Orgs (each its own emulator) of the check section.
    #[arg(long, default_value_t = 10)]
    check_orgs: usize,
    /// Credentials per org of the check section.
    #[arg(long, default_value_t = 1000)]
    check_per_org: usize,
    /// Signatures each way (transit, here) in the custody section.
    #[arg(long, default_value_t = 500)]
    custody_signs: usize,
    /// Keys each way (transit, `rekey generate`) in the custody section.
    #[arg(long, default_value_t = 10)]
    custody_keys: usize,
    /// Sections to run, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "cutover,keygen,fleet,secret,check,custody"
    )]
    only: Vec<Section>,
    /// Where the Markdown goes besides stdout.
    #[arg(long, default_value = "target/bench/results.md")]
    out: PathBuf,
    /// The rekey binary (default: `rekey` next to this program, i.e. the same release build).
    #[arg(long)]
    rekey: Option<PathBuf>,
}

/// A part of the bench.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Section {
    Cutover,
    Keygen,
    Fleet,
    Secret,
    Check,
    Custody,
}

impl Args {
    /// The flags as they would be given, for the header.
    fn describe(&self) -> String {
        fn list<T: clap::ValueEnum>(items: &[T]) -> String {
            let names: Vec<String> = items
                .iter()
                .filter_map(|i| i.to_possible_value().map(|v| v.get_name().to_string()))
                .collect();
            names.join(",")
        }
        let windows: Vec<String> = self.windows.iter().map(u64::to_string).collect();
        format!(
            "--scale {} --windows {} --consumers {} --interval-ms {} --strategies {}{} --keygen {} --fleet {} --concurrency {} --refresh-secs {} --check-orgs {} --check-per-org {} --custody-signs {} --custody-keys {} --only {}",
            self.scale,
            windows.join(","),
            self.consumers,
            self.interval_ms,
            list(&self.strategies),
            if self.one_by_one { " --one-by-one" } else { "" },
            self.keygen,
            self.fleet,
            self.concurrency,
            self.refresh_secs,
            self.check_orgs,
            self.check_per_org,
            self.custody_signs,
            self.custody_keys,
            list(&self.only),
        )
    }
}

/// How far apart the runs (consumers and rotation alike) of strategies running at the same time
/// start.
const STAGGER: Duration = Duration::from_millis(2500);

/// A window of `secs` scaled by `scale`: whole seconds (the emulator's unit), never 0 for a
/// window that is not.
fn scaled(secs: u64, scale: f64) -> u64 {
    let s = (secs as f64 * scale).round().max(0.0) as u64;
    if secs > 0 { s.max(1) } else { 0 }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match bench(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rekey-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the sections, prints the Markdown and writes it to `--out`.
async fn bench(args: &Args) -> Result<(), Error> {
    let bin = match &args.rekey {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .ok_or("this program has no directory")?
            .join("rekey"),
    };
    if !bin.is_file() {
        return Err(format!(
            "{} not found; build it first (make bench does: cargo build --release -p rekey -p rekey-bench)",
            bin.display()
        )
        .into());
    }
    let rekey = Rekey { bin };
    let began = Instant::now();
    let mut sections = Vec::new();

    if args.only.contains(&Section::Cutover) {
        sections.push(cutover_section(&rekey, args).await?);
    }
    if args.only.contains(&Section::Keygen) {
        eprintln!("keygen: {} certificates per tool", args.keygen);
        let timings = keygen::run(&rekey, args.keygen).await?;
        sections.push(format!(
            "## Key generation\n\nOne RSA-2048 key and self-signed certificate per process, \
             {} per tool, interleaved (rekey, openssl, rekey, …); wall time per process.\n\n{}",
            args.keygen,
            keygen::table(&timings)
        ));
    }
    if args.only.contains(&Section::Fleet) {
        let concurrency = usize::from(args.concurrency);
        eprintln!("fleet: {} apps, concurrency {concurrency}", args.fleet);
        let fleet = fleet::run(&rekey, args.fleet, concurrency).await?;
        sections.push(format!(
            "## Fleet\n\nOne `rekey run` rotating every app of one org (all due: certificates \
             ending in 10 days), `[run] concurrency = {concurrency}`; the bound is {} \
             `rekey generate` runs, {concurrency} at a time, measured in the same run. \
             Emulated deploys take {} ms per phase (Pending, InProgress), one at a time in the org; \
             the run publishes each batch of `[run] max_batch` (default 50) certificates in one.\n\n{}",
            args.fleet,
            org::DEPLOY_PHASE_MS,
            fleet::table(&fleet)
        ));
    }
    if args.only.contains(&Section::Secret) {
        sections.push(secret_section(&rekey, args).await?);
    }
    if args.only.contains(&Section::Check) {
        let (orgs, per_org) = (args.check_orgs, args.check_per_org);
        eprintln!("check: {orgs} orgs x {per_org} credentials");
        let run = check::run(&rekey, orgs, per_org).await?;
        sections.push(format!(
            "## Check

One `rekey check --json` of {} credentials over {orgs} orgs (each its own \
             emulator, {per_org} Connected Apps, every store holding a key), after one of the \
             first org's {per_org}; wall time and peak resident memory of each process, and the \
             Salesforce calls of the large one from the emulators' call logs.\n\n{}",
            orgs * per_org,
            check::table(&run)
        ));
    }
    if args.only.contains(&Section::Custody) {
        let (signs, keys) = (args.custody_signs, args.custody_keys);
        eprintln!("custody: {signs} signatures and {keys} keys each way");
        let timings = custody::run(&rekey, signs, keys).await?;
        sections.push(format!(
            "## Custody\n\nWhat a key in custody costs: {signs} RS256 signatures of a \
             300-byte input (an assertion's size) by OpenBao's transit engine (a dev server on \
             loopback, the release `rekey-vault` client) and here with a key in memory, \
             interleaved; {keys} RSA-2048 keys made in transit and by `rekey generate` (a process \
             that also signs and writes a certificate). Every mint, probe and proof of a key in \
             custody makes one transit signature.\n\n{}",
            custody::table(&timings)
        ));
    }

    let header = format!(
        "# rekey benchmarks\n\n\
         - date: {}\n\
         - machine: {}\n\
         - flags: `{}`\n\
         - bench time: {} (without the build)\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        machine::describe(),
        args.describe(),
        table::secs(began.elapsed()),
    );
    let markdown = format!("{header}\n{}", sections.join("\n"));
    print!("{markdown}");
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, &markdown)
        .map_err(|e| format!("cannot write {}: {e}", args.out.display()))?;
    eprintln!("written to {}", args.out.display());
    Ok(())
}

/// Every window × strategy: the windows one after another, a window's strategies at the same
/// time (in turn with `--one-by-one`).
async fn cutover_section(rekey: &Rekey, args: &Args) -> Result<String, Error> {
    let interval = Duration::from_millis(args.interval_ms);
    let options = cutover::Options {
        consumers: args.consumers,
        interval,
        warmup: interval.max(Duration::from_secs(2)),
        settle: Duration::from_secs(2) + interval * 2,
        verbose: args.verbose,
    };
    let mut outcomes = Vec::new();
    for &p in &args.windows {
        let window = scaled(p, args.scale);
        let strategies = cutover::Strategy::ALL
            .into_iter()
            .filter(|s| args.strategies.contains(s));
        let started = Instant::now();
        let runs: Vec<Result<cutover::Outcome, Error>> = if args.one_by_one {
            let mut runs = Vec::new();
            for strategy in strategies {
                let world = cutover::prepare(rekey, window).await?;
                runs.push(cutover::run(rekey, world, strategy, window, &options).await);
            }
            runs
        } else {
            // Every world is set up before any run starts, so no setup runs while another
            // strategy is measured, and the rotations start STAGGER apart, so they do not
            // compete for the CPUs with each other.
            let strategies: Vec<cutover::Strategy> = strategies.collect();
            let worlds = futures_util::future::try_join_all(
                strategies.iter().map(|_| cutover::prepare(rekey, window)),
            )
            .await?;
            // The whole run starts later, not only its rotation: every strategy gets the same
            // warm-up, so the same share of mints that cannot fail.
            let options = &options;
            futures_util::future::join_all(strategies.iter().zip(worlds).enumerate().map(
                |(i, (strategy, world))| async move {
                    tokio::time::sleep(STAGGER * i as u32).await;
                    cutover::run(rekey, world, *strategy, window, options).await
                },
            ))
            .await
        };
        for outcome in runs {
            let outcome = outcome?;
            eprintln!(
                "cutover: P = {window} s, {}: CPU bench {:.0} %, whole machine {:.0} %",
                outcome.strategy.label(),
                outcome.load.average * 100.0,
                outcome.load.machine * 100.0
            );
            if let Err(e) = &outcome.rotation {
                eprintln!("  the rotation failed: {e}");
            }
            outcomes.push(outcome);
        }
        eprintln!(
            "cutover: P = {window} s done in {}",
            table::secs(started.elapsed())
        );
    }
    Ok(format!(
        "## Cutover\n\n{} consumers mint continuously (a pause of {} ms ± 50 % between mints; \
         each mint a real RS256-signed JWT-bearer grant over HTTP) through one rotation. During \
         the propagation window P after the app's certificate changes, each token request is \
         verified against only the old or only the new certificate, at random (orgsim \
         `propagation_mode = \"random\"`). Every strategy gets the same warm-up before its \
         rotation and every consumer the same retry budget: up to 10 tries over about 4.5 s \
         (pauses of 0.1 s growing to 1 s), the sweeps `rekey token` makes. Store-pull consumers \
         sign with the store's CURRENT key and, after a refusal, read CURRENT again and try \
         again; `rekey token` consumers run `rekey token --no-cache` per mint; agent consumers \
         send one request per mint to a `rekey agent` on a Unix socket, with \
         `token_cache_secs = 0` so each request is a grant. A mint fails when its budget is \
         spent without a token. \"in the window\": mints that ended from the certificate change \
         to the window's end. \"accepted → all consumers on new key\": from the app's \
         certificate change (polled every 10 ms) until the last consumer's first new-key mint \
         after which it never used the old key again. Mint p50 / p99: one mint, all its tries. \
         Rotation wall time: the script, or `rekey rotate`. Each strategy has an emulator and a \
         store of its own; {}. CPU: this bench process (emulators, in-process consumers) and its \
         `rekey` processes (the agent included), as a share of all CPUs{}.\n\n{}",
        args.consumers,
        args.interval_ms,
        if args.one_by_one {
            "they run one after another".to_string()
        } else {
            format!(
                "a window's strategies run at the same time, each run starting {} after the last",
                table::secs(STAGGER)
            )
        },
        if args.one_by_one {
            ""
        } else {
            " (so the same for the strategies of one window)"
        },
        cutover::table(&outcomes)
    ))
}

/// The consumer secret rotation: each strategy with an emulator and a store of its own, one after
/// the other.
async fn secret_section(rekey: &Rekey, args: &Args) -> Result<String, Error> {
    let interval = Duration::from_millis(args.interval_ms);
    let refresh = Duration::from_secs(scaled(args.refresh_secs, args.scale));
    let options = secret::Options {
        consumers: args.consumers,
        interval,
        refresh,
        warmup: interval.max(Duration::from_secs(2)),
        settle: Duration::from_secs(2) + interval * 2,
        adopt_timeout: refresh * 3 + Duration::from_secs(30),
        verbose: args.verbose,
    };
    let mut outcomes = Vec::new();
    for strategy in secret::Strategy::ALL {
        eprintln!("secret: {}", strategy.label());
        let started = Instant::now();
        let world = secret::prepare(rekey).await?;
        let outcome = secret::run(rekey, world, strategy, &options).await?;
        if let Err(e) = &outcome.rotation {
            eprintln!("  the rotation failed: {e}");
        }
        eprintln!(
            "secret: {} done in {}, CPU bench {:.0} %",
            strategy.label(),
            table::secs(started.elapsed()),
            outcome.load.average * 100.0
        );
        outcomes.push(outcome);
    }
    Ok(format!(
        "## Consumer secret rotation\n\n{} consumers log in continuously with the client \
         credentials flow (a pause of {} ms ± 50 % between logins; each a real token request \
         over HTTP) with the External Client App's consumer key and secret they hold. Each reads \
         the store's CURRENT pair at its start, every {} s on its own, and after a refused login \
         (a refused login counts as failed; the next one uses what it read). `rekey rotate` \
         rotates the pair through Salesforce's staged credentials: the new pair becomes primary \
         and Salesforce keeps the old one valid until it is deleted. rekey's way deletes it \
         (`rekey retire`) once every consumer logs in with the new pair; the naive way deletes \
         it right after the rotation, as a tool without adoption tracking does. \
         \"rotation start → last consumer on new pair\": until the last consumer's first login \
         with the new pair after which it never used the old one. Rotation wall time: \
         `rekey rotate` (naive: and `rekey retire`). The goal is 0 failed logins. Each strategy \
         has an emulator and a store of its own; they run one after the other.\n\n{}",
        args.consumers,
        args.interval_ms,
        refresh.as_secs(),
        secret::table(&outcomes)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_scale_to_whole_seconds_and_never_vanish() {
        assert_eq!(scaled(0, 1.0), 0);
        assert_eq!(scaled(5, 1.0), 5);
        assert_eq!(scaled(30, 0.1), 3);
        assert_eq!(scaled(5, 0.1), 1);
        assert_eq!(scaled(5, 0.01), 1);
        assert_eq!(scaled(0, 10.0), 0);
    }

    #[test]
    fn the_default_flags_describe_themselves() {
        let args = Args::parse_from(["rekey-bench"]);
        assert_eq!(
            args.describe(),
            "--scale 1 --windows 0,5,30 --consumers 50 --interval-ms 2000 --strategies naive,rekey,token,agent --keygen 20 --fleet 1000 --concurrency 8 --refresh-secs 10 --check-orgs 10 --check-per-org 1000 --custody-signs 500 --custody-keys 10 --only cutover,keygen,fleet,secret,check,custody"
        );
        let args = Args::parse_from(["rekey-bench", "--scale", "0.1", "--fleet", "100"]);
        assert!(args.describe().starts_with("--scale 0.1 "));
        assert_eq!(args.fleet, 100);
    }
}
