//! Command-line arguments (clap). Parsing only; no behaviour lives here.
//!
//! Each subcommand's doc comment is its help: the first line is the summary `rekey --help`
//! lists, the whole comment (kept verbatim, so its line breaks stay) is what `rekey help CMD`
//! and `rekey CMD --help` print.

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
    /// Log more to stderr: -v each request to Salesforce, Vault and AWS (method, host, path;
    /// never a query, token or body) and each provider call's outcome, -vv also each answer's
    /// status and time. Warnings are always shown.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what PEM files hold: certificates, and the public facts of private keys
    ///
    /// For each certificate: subject, issuer, serial, notBefore and notAfter, days left, key
    /// algorithm and size, and the SHA-256 fingerprints of the certificate and of its public
    /// key. For each private key: algorithm, size and public-key fingerprint, never the key
    /// itself. Given exactly one key and one certificate, also whether they belong together.
    /// Needs no config, no store and no network.
    ///
    /// Exit codes: 0 read; 65 a file is not a readable certificate or key, or the key does not
    /// belong to the certificate; 64 a file cannot be read.
    ///
    /// Examples:
    ///   rekey inspect billing.crt
    ///   rekey inspect billing.key billing.crt
    #[command(verbatim_doc_comment)]
    Inspect {
        /// PEM files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Generate a key pair and a self-signed certificate into two files
    ///
    /// The first certificate of a new app, made without a config or a store: upload the
    /// certificate to the app, then put the pair under management with `rekey import`. The
    /// certificate (0644) is written first, then the key (PKCS#8 PEM, 0600), each by atomic
    /// rename; the pair is then described as `inspect` describes it. Existing files are kept
    /// unless --force.
    ///
    /// Exit codes: 0 written; 64 a file exists (without --force) or an option is wrong.
    ///
    /// Example:
    ///   rekey generate --key-out billing.key --cert-out billing.crt --cn billing-sync --days 365
    #[command(verbatim_doc_comment)]
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
    /// Print the steps the next `rotate` of CREDENTIAL would run
    ///
    /// The steps in order, as data (with --json, machine-readable): generate, stage,
    /// [prepare], publish, verify, promote, [activate, adopt], finalize (the bracketed ones
    /// when the credential has consumers). While a rotation is open: the steps left of it,
    /// which `rekey resume` would run. Changes nothing.
    ///
    /// Example:
    ///   rekey plan billing
    #[command(verbatim_doc_comment)]
    Plan {
        /// Credential name from the config.
        credential: String,
    },
    /// Rotate CREDENTIAL's key and certificate end to end
    ///
    /// 1. preflight: the stores grant what a rotation needs, the admin login works, the app
    ///    exists and is not rekey's own admin app (nothing is written before this passes);
    /// 2. take the credential's lease in its primary store;
    /// 3. generate a key pair (key_algorithm) and a self-signed certificate (subject,
    ///    validity_days), and prove they belong together;
    /// 4. stage the key as PENDING in every store of the credential, primary first;
    /// 5. prepare (with consumers): tell each where the PENDING key is;
    /// 6. publish: read the app, replace only its certificate, deploy check-only, then for real;
    /// 7. verify: ask until Salesforce issues a token signed by the new key
    ///    (up to verify_timeout_secs, through the propagation window);
    /// 8. promote: the new key becomes CURRENT in every store, the old one PREVIOUS;
    /// 9. activate and adopt (with consumers): tell each to use the new key, wait until each
    ///    shows it does (adopt_timeout_secs);
    /// 10. finalize: confirm the app's certificate equals CURRENT everywhere, close the journal.
    ///
    /// A progress line per step with its duration. Each step is journaled before it acts and is
    /// idempotent. An interrupted rotation younger than resume_max_age_hours is finished first;
    /// an older one is refused, naming its id, last step and age (decide with `resume` or
    /// `abort`). If Salesforce never accepts the new key, on_verify_failure = "rollback" (the
    /// default) puts the previous certificate back and proves the previous key works ("keep"
    /// leaves the rotation open). A consumer that refuses activate or does not adopt in time:
    /// on_adoption_failure = "rollback" (the default) undoes app, stores and consumers;
    /// "alert" keeps the new key, warns and notifies. See src/consumers/README.md.
    ///
    /// Exit codes: 0 rotated; 4 failed after the new certificate may have reached the app (the
    /// journal stays open: `rekey resume` or `rekey abort`, runbooks/rollback.md); 5 failed
    /// before the app changed; 6 conflict (the store or app changed under rekey, the lease was
    /// taken over, or the open rotation is too old); 7 rolled back, the previous key is CURRENT
    /// and on the app again; 75 another rekey holds the lease.
    ///
    /// Example:
    ///   rekey plan billing && rekey rotate billing
    #[command(verbatim_doc_comment)]
    Rotate {
        /// Credential name from the config.
        credential: String,
    },
    /// Finish CREDENTIAL's interrupted rotation from its journal, whatever its age
    ///
    /// Continues with the same rotation id, generation and staged key (never a new one), from
    /// the first step the journal does not show as done; a rotation whose consumers had not yet
    /// proven adoption activates them again before it waits. If an abort or a rollback was
    /// interrupted, finishes undoing it (recalling the consumers last). Safe to run again if it
    /// is interrupted itself. How to read the journal first: runbooks/rollback.md.
    ///
    /// Exit codes: as `rotate`; 64 no open rotation.
    ///
    /// Example:
    ///   rekey resume billing
    #[command(verbatim_doc_comment)]
    Resume {
        /// Credential name from the config.
        credential: String,
        /// Where an emergency rekey's evidence bundle goes when this ends one (default:
        /// `evidence/` beside the config file).
        #[arg(long, value_name = "DIR")]
        evidence_dir: Option<PathBuf>,
    },
    /// Undo CREDENTIAL's interrupted rotation
    ///
    /// If the new certificate may have reached the app: deploy the previous one again and
    /// prove Salesforce accepts the previous key. Then make the previous generation CURRENT
    /// again in every store, clear PENDING (the key is kept, recoverable, if the app may have
    /// trusted it), tell the consumers to stay on the previous key, and close the journal as
    /// aborted with the reason. Refused for an emergency rekey once its new certificate may be
    /// on the app. Safe to run again if it is interrupted itself. See runbooks/rollback.md.
    ///
    /// Exit codes: 0 aborted; 4 the undo failed after the app may have changed (run it again);
    /// 6 conflict; 64 no open rotation; 75 another rekey holds the lease.
    ///
    /// Example:
    ///   rekey abort billing --reason "deploy window closed"
    #[command(verbatim_doc_comment)]
    Abort {
        /// Credential name from the config.
        credential: String,
        /// Where an emergency rekey's evidence bundle goes when this ends one (default:
        /// `evidence/` beside the config file).
        #[arg(long, value_name = "DIR")]
        evidence_dir: Option<PathBuf>,
        /// Why, for the journal.
        #[arg(long, default_value = "no reason given")]
        reason: String,
    },
    /// List credentials: generation, fingerprint, expiry, last rotation
    ///
    /// For every credential (or only CREDENTIAL): the CURRENT generation, its fingerprint,
    /// notAfter and days left; the PENDING and PREVIOUS generations; the last rotation and any
    /// open one; the certificate the app holds (read from Salesforce) and each store's CURRENT,
    /// flagging any store that differs from the app. Changes nothing; `rekey check` judges.
    ///
    /// Example:
    ///   rekey status billing
    #[command(verbatim_doc_comment)]
    Status {
        /// Only this credential.
        credential: Option<String>,
    },
    /// Check expiry, key age and drift against each credential's policy, and alert
    ///
    /// Reads the certificate on the app (from Salesforce) and each store's CURRENT, and reports
    /// per credential: days to notAfter per source (warning at warn_days, default 28; critical
    /// at critical_days, default 14), a key older than max_key_age_days, drift (a store's
    /// CURRENT differs from the app: its consumers are refused), a rotation open longer than
    /// resume_max_age_hours, and any store, org or journal that could not be read. What each
    /// finding means and how to clear it: runbooks/expiry-alert-response.md.
    ///
    /// With an [alerts] section, each finding also goes to the channels, de-duplicated through
    /// state_file: once when it appears, again when its severity rises or after
    /// renotify_hours, and a resolve when it clears (never while its source is unreadable). A
    /// channel that fails is named on stderr, retried on the next run, and turns an otherwise
    /// clean exit into 3. --no-notify sends nothing.
    ///
    /// --prometheus-textfile also writes the facts atomically for node_exporter:
    /// rekey_certificate_not_after_timestamp_seconds, rekey_key_created_timestamp_seconds,
    /// rekey_last_rotation_success_timestamp_seconds, rekey_drift, rekey_source_up (labels
    /// credential, app, org, source = "app" or "store:<name>"), rekey_check_status.
    ///
    /// --preflight instead proves a rotation could run now, changing nothing: the store grants
    /// every permission a rotation needs (Vault: asks sys/capabilities-self and names each
    /// missing capability and path), the admin login works, the app exists and is not rekey's
    /// own admin app. `rotate` runs the same checks before it writes anything. Exit code 0
    /// ready, else the first problem's (77 refused, 69 unreachable, 64 not found).
    ///
    /// Exit codes (Nagios): 0 ok; 1 warning; 2 critical (or no CURRENT key); 3 unknown (a
    /// source could not be read, or an alert could not be delivered). The worst wins:
    /// critical > warning > unknown.
    ///
    /// Examples:
    ///   rekey check
    ///   rekey check billing --prometheus-textfile /var/lib/node_exporter/rekey.prom
    ///   rekey check --preflight billing
    #[command(verbatim_doc_comment)]
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
        /// rotation needs, the admin login works and the app exists (and is not rekey's own
        /// admin app). Changes nothing.
        #[arg(long)]
        preflight: bool,
    },
    /// The cron entrypoint: rotate what is due inside its change window, check the rest
    ///
    /// A credential is due when its key is at least rotate_every_days old, a certificate (on
    /// the app or in a store) is within renew_before_days of notAfter, heal_drift = true and
    /// the app holds a certificate no store has, or a rotation of it was interrupted (that one
    /// is finished at once, window or not). A due credential rotates only while one of its
    /// windows is open; up to [run] concurrency rotate at once. Every credential is checked and
    /// alerted on as by `rekey check`, each rotation's outcome is announced to the alert
    /// channels, and one summary is printed. SIGTERM stops a rotation at its next step
    /// boundary, journaled, for the next run to finish. Setting it up:
    /// runbooks/scheduled-rotation.md.
    ///
    /// Exit codes: a failed rotation's (4, 5, 6, 75), else 7 if one rolled back, else
    /// `check`'s (0, 1, 2, 3).
    ///
    /// Examples:
    ///   rekey run --dry-run
    ///   rekey --config /etc/rekey/rekey.toml run
    #[command(verbatim_doc_comment)]
    Run {
        /// Print what would rotate and why; rotate nothing, send nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Run `rekey run` every interval and serve Prometheus metrics and a health check
    ///
    /// Runs `rekey run` every [daemon] interval_secs (from the start of one run to the next)
    /// and serves on [daemon] listen (default 127.0.0.1:9817):
    ///   /metrics  the `check` families plus rekey_runs_total,
    ///             rekey_run_last_finished_timestamp_seconds, rekey_run_last_exit_code,
    ///             rekey_rotations_total{outcome}, rekey_notifications_failed_total;
    ///   /healthz  200, or 503 once no run has finished for two intervals plus 30 minutes.
    /// On SIGTERM it stops any rotation at a step boundary (journaled) and exits 0.
    /// See runbooks/scheduled-rotation.md.
    ///
    /// Example:
    ///   rekey --config /etc/rekey/rekey.toml daemon
    #[command(verbatim_doc_comment)]
    Daemon,
    /// After a leaked key: rekey, then end every session and grant the old key made
    ///
    /// Shows the plan and asks (unless --yes), then: generate and stage → [External Client App
    /// with --kill-switch: OAuth off] → publish → [OAuth on] → verify until Salesforce accepts
    /// the new key AND refuses the old one → delete every live session (AuthSession) of the
    /// integration user, revoke the app's grants (OauthToken DeleteTokens), delete an ECA's
    /// refresh tokens → promote → destroy every older generation in every store → write the
    /// evidence bundle (JSON, 0600: timeline, fingerprints, revocation counts, operator, host,
    /// reason, verification; never key bytes) → notify the [alerts] channels. Consumers are
    /// told as in a rotation; laggards are reported, never rolled back.
    ///
    /// Journaled and resumable (run it again); never rolled back, and `abort` refuses once the
    /// new certificate may be on the app. Besides what a rotation needs, the admin user needs
    /// Manage Users and Customize Application (and api_version 59.0 or later for an External
    /// Client App). The whole procedure: runbooks/emergency-rekey.md.
    ///
    /// Exit codes: 0 rekeyed; 4 stopped after the new certificate may be on the app (run it
    /// again); 5 stopped before the app changed; 6 conflict; 64 not confirmed, or --kill-switch
    /// on a Connected App (nothing changed); 75 another rekey holds the lease.
    ///
    /// Examples:
    ///   rekey emergency billing --reason "key committed to a public repo" --yes
    ///   rekey emergency --all-in-org acme --reason "admin laptop lost" --kill-switch
    #[command(verbatim_doc_comment)]
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
    /// Put an existing key and certificate (already on the app) under management
    ///
    /// For an integration that is live already: the key and the certificate the app holds
    /// become generation 1, CURRENT, in every store of the credential (under the primary
    /// store's lock), after proving they belong together. Importing the same certificate again
    /// changes nothing; a credential that already has another CURRENT is refused (use
    /// `rotate`). Salesforce is not asked: `rekey verify` afterwards proves the app trusts it.
    ///
    /// Exit codes: 0 imported; 6 another key is CURRENT; 65 unreadable, or the key does not
    /// belong to the certificate; 75 another rekey holds the lease.
    ///
    /// Example:
    ///   rekey import billing --key billing.key --cert billing.crt && rekey verify billing
    #[command(verbatim_doc_comment)]
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
    /// Ask Salesforce for a token signed by one of CREDENTIAL's keys
    ///
    /// Signs a JWT-bearer assertion for the integration user with the key the primary store
    /// holds at --stage and sends it to the org's token endpoint. Prints Salesforce's answer
    /// (accepted, or its error and description), never the token.
    ///
    /// Exit codes: 0 accepted; 3 refused; 64 no key at that stage; 69 Salesforce unreachable.
    ///
    /// Examples:
    ///   rekey verify billing
    ///   rekey verify billing --stage pending
    #[command(verbatim_doc_comment)]
    Verify {
        /// Credential name from the config.
        credential: String,
        /// Which key to sign with.
        #[arg(long, value_enum, default_value_t = StageArg::Current)]
        stage: StageArg,
    },
    /// Print CREDENTIAL's rotation journal
    ///
    /// Every entry from the primary store, oldest first: rotation, step, begun / done /
    /// failed, when, and its detail (names, generations, fingerprints; never key bytes). How
    /// to read it when a rotation is stuck: runbooks/rollback.md.
    ///
    /// Example:
    ///   rekey journal billing --json
    #[command(verbatim_doc_comment)]
    Journal {
        /// Credential name from the config.
        credential: String,
    },
    /// Print an access token for CREDENTIAL's integration user, for its consumers
    ///
    /// For consumers (jobs, CI, the sf CLI) that should never handle the key: the token is
    /// minted by JWT bearer with the key the credential's stores hold.
    ///
    /// Which key: CURRENT, read from the primary store (when it cannot be read, the next).
    /// While a rotation's certificate change propagates, Salesforce may trust only the new key
    /// (between publish and promote) or only the old one (just after promote) and refuses the
    /// other with `invalid_grant: invalid assertion`; rekey then signs with PENDING, then
    /// PREVIOUS, so no mint fails at any point of a rotation ("stage" says which key signed).
    /// When no stored key is trusted it sweeps the stages again, up to ten sweeps over about
    /// 4.5 s, then exits 3. Any other refusal (user not pre-authorized, wrong audience or
    /// consumer key, ...) is reported at once with Salesforce's error, exit 3. 5xx, timeouts,
    /// REQUEST_LIMIT_EXCEEDED and login throttling are retried with backoff, then exit 69.
    ///
    /// Needs read access to the store and the credential's section of rekey.toml with
    /// consumer_key set; without consumer_key rekey reads it from the app through the org's
    /// admin connection, which a consumer should not hold.
    ///
    /// Cache: $XDG_CACHE_HOME/rekey/tokens/<credential>.json (default ~/.cache/...), 0600 in a
    /// 0700 directory, written atomically; a file others may write is ignored. A token is
    /// reused for token_cache_secs (Salesforce does not say when a token expires: keep it below
    /// the app's session timeout), for the same user and org only, and never once its key is no
    /// longer CURRENT, PENDING or PREVIOUS. Salesforce hands back the same token while the
    /// user's session lives, so a new mint may return the same token. If an API call is
    /// refused with a cached token (a session revoked by hand), delete the cache file.
    ///
    /// Output: the token goes to stdout only, never to stderr, logs or errors. json:
    /// {"access_token", "instance_url", "fingerprint", "generation", "stage", "cached"}; env:
    /// export SF_ACCESS_TOKEN='...' and export SF_INSTANCE_URL='...', single-quoted. On failure
    /// stdout stays empty (unless --json asks for errors as JSON there).
    ///
    /// Exit codes: 0 minted; 3 refused; 69 Salesforce unreachable.
    ///
    /// Examples:
    ///   rekey token billing
    ///   eval "$(rekey token billing --format env)" &&
    ///     sf org login access-token --instance-url "$SF_INSTANCE_URL" --no-prompt
    #[command(verbatim_doc_comment)]
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
