//! Command-line arguments (clap). Parsing only; no behaviour lives here.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// rekey rotates the JWT-bearer signing key and certificate of Salesforce Connected Apps and
/// External Client Apps end to end: generate, stage, publish, verify, promote.
#[derive(Debug, Parser)]
#[command(name = "rekey", version, about)]
pub struct Cli {
    /// Configuration file.
    #[arg(
        long,
        global = true,
        env = "REKEY_CONFIG",
        default_value = "rekey.toml"
    )]
    pub config: PathBuf,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log more to stderr: -v for each provider call's outcome, -vv for every request.
    /// Warnings are always shown.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what is inside PEM files: certificates (subject, validity, fingerprints) and private
    /// keys (algorithm, size, public-key fingerprint; never the key). Given a key and a
    /// certificate, tell whether they belong together.
    Inspect {
        /// PEM files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Generate a key pair and a self-signed certificate into two files, without a config or a
    /// store: the first certificate of a new app (upload it, then `rekey import` the pair). The
    /// key file is written 0600 by atomic rename; existing files are kept unless --force.
    Generate {
        /// Where the private key goes (PEM, PKCS#8).
        #[arg(long, value_name = "FILE")]
        key_out: PathBuf,
        /// Where the certificate goes (PEM).
        #[arg(long, value_name = "FILE")]
        cert_out: PathBuf,
        /// The certificate's common name.
        #[arg(long, default_value = "rekey")]
        cn: String,
        /// Days from now until the certificate's notAfter.
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
        days: u32,
        /// Key algorithm: rsa-2048, rsa-3072 or rsa-4096 (JWT bearer signs with RS256).
        #[arg(long, default_value = "rsa-2048")]
        algorithm: String,
        /// Replace files that already exist.
        #[arg(long)]
        force: bool,
    },
    /// Print the steps the next `rotate` of CREDENTIAL would run.
    Plan {
        /// Credential name from the config.
        credential: String,
    },
    /// Rotate CREDENTIAL's key and certificate. An interrupted rotation younger than
    /// resume_max_age_hours is finished first; an older one is refused (see `resume`, `abort`).
    Rotate {
        /// Credential name from the config.
        credential: String,
    },
    /// Finish CREDENTIAL's interrupted rotation from its journal, whatever its age (or finish
    /// undoing it, if an abort or rollback was interrupted).
    Resume {
        /// Credential name from the config.
        credential: String,
    },
    /// Undo CREDENTIAL's interrupted rotation: if the new certificate may have reached the app,
    /// put the previous one back and prove the previous key is accepted; make the previous
    /// generation CURRENT again everywhere; clear PENDING; close the journal as aborted.
    Abort {
        /// Credential name from the config.
        credential: String,
        /// Why, for the journal.
        #[arg(long, default_value = "no reason given")]
        reason: String,
    },
    /// List credentials: generation, fingerprint, expiry, last rotation.
    Status {
        /// Only this credential.
        credential: Option<String>,
    },
    /// Read every credential's certificate from the app and from each store and compare expiry,
    /// key age, drift and open rotations against its policy. Exit code (Nagios): 0 ok,
    /// 1 warning, 2 critical, 3 unknown (a source could not be read).
    Check {
        /// Only this credential.
        credential: Option<String>,
        /// Also write the facts as Prometheus metrics to this file (atomically; for
        /// node_exporter's textfile collector).
        #[arg(long, value_name = "PATH", conflicts_with = "preflight")]
        prometheus_textfile: Option<PathBuf>,
        /// Do not send alerts to the configured channels (and leave their state untouched).
        #[arg(long, conflicts_with = "preflight")]
        no_notify: bool,
        /// Instead: prove that a rotation could run now: the store grants every permission a
        /// rotation needs, the admin login works and the app exists. Changes nothing.
        #[arg(long)]
        preflight: bool,
    },
    /// The cron entrypoint: rotate every credential that is due (key older than rotate_every_days,
    /// certificate within renew_before_days of expiry, drift with heal_drift, or an interrupted
    /// rotation) and inside its change window, check the rest, alert, print one summary. Exit
    /// code: a failed rotation's code, else 7 if one rolled back, else `check`'s (0/1/2/3).
    Run {
        /// Print what would rotate and why; rotate nothing, send nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Run `rekey run` every [daemon] interval_secs, serve /metrics (Prometheus) and /healthz on
    /// [daemon] listen, and stop cleanly on SIGTERM (a rotation stops at a step boundary, journaled).
    Daemon,
    /// Emergency rekey after a leaked key: show the plan, ask (unless --yes), then generate and
    /// stage, [switch an External Client App's OAuth off], publish, [switch it on], verify until
    /// the new key is accepted AND the old one refused, end every session of the integration user
    /// and revoke the app's grants, promote, destroy every older generation in every store, and
    /// write an evidence bundle. Journaled and resumable; never rolled back.
    Emergency {
        /// Credential name from the config.
        #[arg(required_unless_present = "all_in_org", conflicts_with = "all_in_org")]
        credential: Option<String>,
        /// Every credential of this org, one after another, stopping at the first failure (when
        /// the admin connection itself may be compromised).
        #[arg(long, value_name = "ORG")]
        all_in_org: Option<String>,
        /// Why: kept in the journal, the evidence bundle and the notifications.
        #[arg(long)]
        reason: String,
        /// External Client Apps: switch OAuth off before publishing, on again once the app holds
        /// the new certificate, so no token at all is issued meanwhile.
        #[arg(long)]
        kill_switch: bool,
        /// Do not ask for confirmation (automation).
        #[arg(long)]
        yes: bool,
        /// Where the evidence bundle goes (default: `evidence/` beside the config file).
        #[arg(long, value_name = "DIR")]
        evidence_dir: Option<PathBuf>,
    },
    /// Put an existing key and certificate (already on the app) under rekey's management as CURRENT.
    Import {
        /// Credential name from the config.
        credential: String,
        /// The private key (PEM).
        #[arg(long)]
        key: PathBuf,
        /// Its certificate (PEM).
        #[arg(long)]
        cert: PathBuf,
    },
    /// Ask Salesforce for a token signed by one of CREDENTIAL's keys. Exit code 0 accepted, 3 refused.
    Verify {
        /// Credential name from the config.
        credential: String,
        /// Which key to sign with.
        #[arg(long, value_enum, default_value_t = StageArg::Current)]
        stage: StageArg,
    },
    /// Print CREDENTIAL's rotation journal.
    Journal {
        /// Credential name from the config.
        credential: String,
    },
    /// Print an access token for CREDENTIAL's integration user, minted by JWT bearer with the
    /// key its stores hold (CURRENT; during a rotation's propagation window PENDING or PREVIOUS,
    /// whichever Salesforce trusts), for consumers that should never handle the key. Needs no
    /// admin connection when the credential sets consumer_key. Exit code 0 minted, 3 refused.
    Token {
        /// Credential name from the config.
        credential: String,
        /// `json`: one object with the token, instance URL, and the key's fingerprint,
        /// generation and stage; `env`: `export SF_ACCESS_TOKEN=…` and `SF_INSTANCE_URL=…` lines
        /// for `eval` (what `sf org login access-token` reads).
        #[arg(long, value_enum, default_value_t = TokenFormat::Json)]
        format: TokenFormat,
        /// Mint a new token even if the cache holds one, and do not write the cache.
        #[arg(long)]
        no_cache: bool,
    },
}

/// How `rekey token` prints the token.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TokenFormat {
    /// A JSON object.
    Json,
    /// Shell `export` lines.
    Env,
}

/// A stage on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum StageArg {
    /// The key consumers use.
    Current,
    /// A staged key.
    Pending,
    /// The key before the last rotation.
    Previous,
}

impl From<StageArg> for rekey_api::Stage {
    fn from(s: StageArg) -> Self {
        match s {
            StageArg::Current => rekey_api::Stage::Current,
            StageArg::Pending => rekey_api::Stage::Pending,
            StageArg::Previous => rekey_api::Stage::Previous,
        }
    }
}
