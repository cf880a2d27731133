//! Command-line arguments (clap). Parsing only; no behaviour lives here.
//!
//! Each subcommand's doc comment is its help: the first line is the summary `rekey --help`
//! lists, the whole comment (kept verbatim, so its line breaks stay) is what `rekey help CMD`
//! and `rekey CMD --help` print.

use crate::pki::KeyAlgorithm;
use clap::builder::PossibleValue;
use clap::{Parser, Subcommand, ValueEnum};
use clap_complete::Shell;
use std::path::PathBuf;

/// rekey rotates the JWT-bearer signing key and certificate of Salesforce Connected Apps and
/// External Client Apps end to end: generate, stage, publish, verify, promote.
#[derive(Debug, Parser)]
#[command(name = "rekey", version, about, max_term_width = 80)]
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
    /// Write an annotated starting config (never over an existing file)
    ///
    /// Writes the reference configuration: every setting with its default and a line on why
    /// it matters, the optional ones commented out. Edit the org, credential and store names,
    /// then validate it with `rekey config check`. An existing file is never replaced.
    ///
    /// Exit codes: 0 written; 64 the file exists or cannot be written.
    ///
    /// Example:
    ///   rekey init --path rekey.toml && $EDITOR rekey.toml && rekey config check
    #[command(verbatim_doc_comment)]
    Init {
        /// Where the config goes.
        #[arg(long, value_name = "FILE", default_value = "rekey.toml")]
        path: PathBuf,
    },
    /// Work with the config file without touching Salesforce or a store
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script
    ///
    /// Where to put it:
    ///   bash        rekey completions bash > ~/.local/share/bash-completion/completions/rekey
    ///   zsh         rekey completions zsh > "${fpath[1]}/_rekey"
    ///   fish        rekey completions fish > ~/.config/fish/completions/rekey.fish
    ///   powershell  rekey completions powershell >> $PROFILE
    #[command(verbatim_doc_comment)]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Show what PEM files hold: certificates, public facts of keys
    ///
    /// For each certificate: subject, issuer, serial, notBefore and notAfter, days left, key
    /// algorithm and size, and the SHA-256 fingerprints of the certificate and of its public
    /// key. For each private key: algorithm, size and public-key fingerprint, never the key
    /// itself. Given exactly one key and one certificate, also whether they belong together.
    /// Needs no config, no store and no network.
    ///
    /// With --credential instead of files: the certificate of that credential's stage in its
    /// primary store and its key's public facts; a key in custody as its service describes it
    /// (id, version, algorithm, non-exportable, state), with a signature the service makes
    /// checked against the certificate here.
    ///
    /// Exit codes: 0 read; 65 a file is not a readable certificate or key, or the key does not
    /// belong to the certificate; 64 a file cannot be read, or no key at that stage.
    ///
    /// Examples:
    ///   rekey inspect billing.crt
    ///   rekey inspect billing.key billing.crt
    ///   rekey inspect --credential billing
    #[command(verbatim_doc_comment)]
    Inspect {
        /// PEM files.
        #[arg(required_unless_present = "credential", conflicts_with = "credential")]
        files: Vec<PathBuf>,
        /// A credential from the config, read from its primary store instead of files.
        #[arg(long)]
        credential: Option<String>,
        /// With --credential: which stage.
        #[arg(long, value_enum, default_value_t = StageArg::Current, requires = "credential")]
        stage: StageArg,
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
        /// Key algorithm (JWT bearer signs with RS256).
        #[arg(long, value_enum, default_value_t = KeyAlgorithm::Rsa2048)]
        algorithm: KeyAlgorithm,
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
    /// 10. finalize: confirm the app's certificate equals CURRENT everywhere, destroy the retired
    ///     keys the stores no longer keep (file store: keep_generations), close the journal.
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
    /// taken over, the open rotation is too old, or the journal is damaged: nothing is changed,
    /// and `rekey journal` names the damaged entry and how to repair it); 7 rolled back, the
    /// previous key is CURRENT
    /// and on the app again; 75 another rekey holds the lease.
    ///
    /// Example:
    ///   rekey plan billing && rekey rotate billing
    #[command(verbatim_doc_comment)]
    Rotate {
        /// Credential name from the config.
        credential: String,
    },
    /// Finish CREDENTIAL's interrupted rotation from its journal
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
    /// Delete CREDENTIAL's previous consumer secret at Salesforce now
    ///
    /// After a consumer secret rotation Salesforce keeps the previous consumer key and secret
    /// valid until they are deleted (or after 30 days). A rotation deletes them itself once
    /// every consumer proved it uses the new pair; otherwise `rekey run` deletes them
    /// revoke_previous_after_hours after the rotation. This deletes them now: from then on
    /// Salesforce refuses them. Journaled under the credential's lease; refused while a
    /// rotation is open. See runbooks/consumer-secret-rotation.md.
    ///
    /// Exit codes: 0 retired (or nothing was left to retire); 6 a rotation is open; 64 no
    /// previous consumer secret; 75 another rekey holds the lease.
    ///
    /// Example:
    ///   rekey retire etl
    #[command(verbatim_doc_comment)]
    Retire {
        /// Credential name from the config (kind = "consumer_secret").
        credential: String,
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
    /// Each credential is read on its own: one whose stores cannot be read, or whose journal
    /// is damaged, is marked in its row and named on stderr, and the others are still shown
    /// (the rotation columns of a damaged journal come from the entries that can be read).
    ///
    /// Exit codes: 0 every credential could be read (an app that cannot be read is only shown
    /// in its row); 6 a credential's journal is damaged (`rekey journal CRED` names the entry
    /// and how to repair it); else the code of the first credential that could not be read
    /// (69 unreachable, 77 refused, 70 a stage map rekey did not write), after every row.
    ///
    /// Example:
    ///   rekey status billing
    #[command(verbatim_doc_comment)]
    Status {
        /// Only this credential.
        credential: Option<String>,
    },
    /// Check expiry, key age and drift against policy, and alert
    ///
    /// Reads the certificate on the app (from Salesforce) and each store's CURRENT, and reports
    /// per credential: days to notAfter per source (warning at warn_days, default 28; critical
    /// at critical_days, default 14), a key older than max_key_age_days, drift (a store's
    /// CURRENT differs from the app: its consumers are refused), a rotation open longer than
    /// resume_max_age_hours, any store, org or journal that could not be read, and (file
    /// store) a key file or credential folder other users of the machine can open
    /// (exposed/store:NAME: critical when a key file can be read or a folder written, a warning
    /// when only the folder can be listed). What each
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
    /// Rotate what is due in its change window, check the rest (cron)
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
    /// Run `rekey run` on an interval; serve metrics and a health check
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
    /// After a leak: rekey, then end the old key's sessions and grants
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
    /// Manage an existing key and certificate (already on the app)
    ///
    /// For an integration that is live already: the key and the certificate the app holds
    /// become generation 1, CURRENT, in every store of the credential (under the primary
    /// store's lock), after proving they belong together and reading from Salesforce that the
    /// app holds exactly that certificate. Nothing is written when it does not: the error names
    /// both fingerprints. There is no override: a key the app does not trust would be handed to
    /// every consumer as CURRENT, and an app without a certificate needs no import (`rekey
    /// rotate` generates its first key and uploads the certificate). Importing the same
    /// certificate again changes nothing; a credential that already has another CURRENT is
    /// refused (use `rotate`). `rekey verify` afterwards proves Salesforce accepts the key.
    ///
    /// Warns (stderr, and "warnings" in --json) when the certificate has expired or expires
    /// within the credential's warn_days, and when the key file is readable by others (the
    /// store's copy is 0600: remove or chmod the original). Key age (check, run) counts from
    /// the certificate's notBefore when that is older than the import.
    ///
    /// Exit codes: 0 imported; 6 the app does not hold this certificate, or another key is
    /// CURRENT; 65 unreadable, or the key does not belong to the certificate; 69 Salesforce
    /// unreachable; 75 another rekey holds the lease; 77 the admin login was refused.
    ///
    /// A consumer secret (kind = "consumer_secret") is imported from Salesforce when the org
    /// lets the admin read consumer secrets over REST, else from --secret-file or
    /// --secret-stdin (never from the command line, which other users can see); it must be the
    /// app's primary pair, proven by a client credentials login (or, without that flow, by
    /// reading it back).
    ///
    /// Examples:
    ///   rekey import billing --key billing.key --cert billing.crt && rekey verify billing
    ///   rekey import etl-secret
    ///   rekey import etl-secret --secret-file etl.json
    #[command(verbatim_doc_comment)]
    Import {
        /// Credential name from the config.
        credential: String,
        /// The private key (PEM), for a certificate credential.
        #[arg(long, requires = "cert", conflicts_with_all = ["secret_file", "secret_stdin"])]
        key: Option<PathBuf>,
        /// Its certificate (PEM).
        #[arg(long, requires = "key")]
        cert: Option<PathBuf>,
        /// A consumer secret credential's key and secret, as JSON
        /// {"consumer_key": "…", "consumer_secret": "…"} (without it, and without
        /// --secret-stdin, they are read from Salesforce).
        #[arg(long, conflicts_with = "secret_stdin")]
        secret_file: Option<PathBuf>,
        /// Read that JSON from stdin instead.
        #[arg(long)]
        secret_stdin: bool,
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
    /// Print, verify or export CREDENTIAL's rotation journal
    ///
    /// Every entry from the primary store, oldest first: rotation, step, begun / done /
    /// failed, when, and its detail (names, generations, fingerprints; never key bytes). How
    /// to read it when a rotation is stuck: runbooks/rollback.md.
    ///
    /// A damaged entry (a line that is not a journal entry) does not hide the others: it is
    /// shown in its place as DAMAGED with where it is (file store: PATH:LINE; Vault and AWS:
    /// the journal's version and the entry's number) and what is wrong, never its contents;
    /// stderr says how to repair it; --json lists the readable entries only. Every command
    /// that writes to the credential (rotate, resume, abort, emergency, import) refuses with
    /// exit 6 until it is repaired.
    ///
    /// Every entry carries the hash of the entry before it (SHA-256 over its canonical JSON),
    /// so an entry changed, removed or inserted no longer fits. --verify checks the chain and
    /// names the first entry that does not fit (its number, rotation, step and place in the
    /// store); entries from before chaining are accepted as they are. stderr of a plain
    /// listing says the same in one line. --export writes every credential's journal (or
    /// CREDENTIAL's) as JSON lines for a SIEM, each with its credential, store, seq and chain
    /// state (ok, legacy, broken); a copy kept elsewhere is what exposes a journal truncated
    /// or rewritten whole by someone who can write the store.
    ///
    /// --org ORG reads the org's governance ledger instead (`rekey grants --revoke` and
    /// `rekey audit` write it; [audit] ledger_store says where); --export includes every
    /// org's ledger.
    ///
    /// Exit codes: 0 read whole (--verify: the chain is intact; --export: written, whatever
    /// the chain states); 6 an entry is damaged (--verify: the chain is broken).
    ///
    /// Examples:
    ///   rekey journal billing --json
    ///   rekey journal billing --verify
    ///   rekey journal --org acme --verify
    ///   rekey journal --export --output /var/log/rekey/journal.jsonl
    #[command(verbatim_doc_comment)]
    Journal {
        /// Credential name from the config (with --export: only this one).
        #[arg(required_unless_present_any = ["export", "org"])]
        credential: Option<String>,
        /// Instead of a credential's: the org's governance ledger (OAuth grants revoked, audit
        /// suppressions added), journal `_org.ORG` in the ledger store.
        #[arg(long, value_name = "ORG", conflicts_with = "credential")]
        org: Option<String>,
        /// Check the journal's hash chain and name the first entry that does not fit.
        #[arg(long, conflicts_with = "export")]
        verify: bool,
        /// Write the journals as JSON lines (one entry a line, with its chain state).
        #[arg(long)]
        export: bool,
        /// With --export: write to FILE (replaced atomically) instead of stdout.
        #[arg(long, value_name = "FILE", requires = "export")]
        output: Option<PathBuf>,
    },
    /// Print an access token for CREDENTIAL's integration user
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
    /// 0700 directory, written atomically. Trusted as ssh trusts its files: only a regular file
    /// (no symbolic link) this user owns, mode 0600, in folders up to / each owned by root or
    /// this user and writable by no one else (a sticky folder such as /tmp excepted), holding
    /// a token whose instance_url is the org's (login_url's origin; a My Domain for
    /// login.salesforce.com and test.salesforce.com). Anything else is ignored with one
    /// warning on stderr and a token is minted; an untrusted folder is not written. A token is
    /// reused for token_cache_secs (Salesforce does not say when a token expires: keep it below
    /// the app's session timeout), for the same user and org only, and never once its key is no
    /// longer CURRENT, PENDING or PREVIOUS. Salesforce hands back the same token while the
    /// user's session lives, so a new mint may return the same token. If an API call is
    /// refused with a cached token (a session revoked by hand), delete the cache file.
    ///
    /// Output: the token goes to stdout only, never to stderr, logs or errors. json:
    /// {"access_token", "instance_url", "fingerprint", "generation", "stage", "cached"}; env:
    /// export SF_ACCESS_TOKEN='...' and export SF_INSTANCE_URL='...', single-quoted; sf: the
    /// export of SF_ACCESS_TOKEN and the `sf org login access-token` command that logs the
    /// Salesforce CLI in with it under the credential's name as alias. On failure stdout stays
    /// empty (unless --json asks for errors as JSON there).
    ///
    /// Exit codes: 0 minted; 3 refused; 69 Salesforce unreachable.
    ///
    /// Examples:
    ///   rekey token billing
    ///   eval "$(rekey token billing --format env)" && ./nightly-load.sh
    ///   eval "$(rekey token billing --format sf)" && sf data query -o billing -q "…"
    #[command(verbatim_doc_comment)]
    Token {
        /// Credential name from the config.
        credential: String,
        /// `json`: one object with the token, instance URL, and the key's fingerprint,
        /// generation and stage; `env`: `export SF_ACCESS_TOKEN=…` and `SF_INSTANCE_URL=…` lines
        /// for `eval`; `sf`: the same token and the `sf org login access-token` command.
        #[arg(long, value_enum, default_value_t = TokenFormat::Json)]
        format: TokenFormat,
        /// Mint a new token even if the cache holds one, and do not write the cache.
        #[arg(long)]
        no_cache: bool,
    },
    /// Serve tokens to local consumers from one long-running process
    ///
    /// A local token service, in the spirit of Vault Agent, for consumers that need a token
    /// often and should not pay a process start per mint (`rekey token`) nor handle the key.
    /// Listens on [agent] socket (a Unix socket, mode 0660, given to [agent] group: whoever may
    /// open it may ask) or on [agent] listen (loopback HTTP; each request must carry
    /// `Authorization: Bearer <secret>`, the secret read at start from [agent] bearer_file,
    /// which must be this user's, mode 0600, in folders no one else can change).
    ///
    ///   GET /v1/token/CRED  {"access_token", "instance_url", "expires_at", "fingerprint",
    ///                       "generation", "stage", "cached"}; the same fallback as `rekey token` (CURRENT,
    ///                       then PENDING, then PREVIOUS; client credentials for consumer
    ///                       secrets). 404 for a credential it does not serve ([agent]
    ///                       credentials, default all), 401 without the bearer, 502 when
    ///                       Salesforce refused every key, 503 when a store or Salesforce
    ///                       cannot be reached.
    ///   GET /metrics        rekey_agent_mints_total, _mint_failures_total, _fallbacks_total,
    ///                       _cache_hits_total, _tokens_dropped_total, _tokens_held, by
    ///                       credential.
    ///
    /// Tokens live in memory only, each for its credential's token_cache_secs (0: minted per
    /// request). Every [agent] refresh_secs (default 5) it reads the stores again: a token whose
    /// key left the store is dropped, one near the end of its life minted anew, so rotations
    /// are followed without a restart. SIGTERM or SIGINT stops it: exit 0, the socket removed.
    ///
    /// Examples:
    ///   rekey agent
    ///   curl -s --unix-socket /run/rekey/agent.sock http://agent/v1/token/billing
    ///   curl -s -H "Authorization: Bearer $(cat agent.bearer)" http://127.0.0.1:9818/v1/token/billing
    #[command(verbatim_doc_comment)]
    Agent,
    /// Audit every OAuth app of an org against the hardening checklist
    ///
    /// Reads every Connected App and External Client App of the org, whether rekey manages it
    /// or not (metadata in batches of ten, OAuth grants, login history, the client credentials
    /// run-as users, the clock), and reports one finding per problem: a stable id, severity,
    /// org, app, what is wrong, what to change and the control it implements. The ids and
    /// their conditions: README, "Audit"; why each matters and how to fix it:
    /// runbooks/hardening-review.md. Changes nothing at Salesforce.
    ///
    /// Accepted exceptions live in rekey.toml as [[audit.ignore]] entries (id, app, org,
    /// reason, until). One without a reason, or past its date, is itself reported; each is
    /// recorded in the org's governance ledger the first time an audit sees it.
    ///
    /// Formats: text; json (one object: findings, suppressed, unreadable); sarif (SARIF 2.1.0,
    /// one rule per finding id, for code-scanning dashboards). --json is --format json.
    ///
    /// Exit codes: 0 nothing at or above --fail-on; 1 a warning; 2 a critical finding; 3
    /// something could not be read (and nothing worse was found).
    ///
    /// Examples:
    ///   rekey audit
    ///   rekey audit --org prod --format sarif > rekey.sarif
    ///   rekey audit --fail-on critical
    #[command(verbatim_doc_comment)]
    Audit {
        /// Only this org (a key of [orgs]); repeat for several. Default: every org.
        #[arg(long = "org", value_name = "ORG")]
        orgs: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = AuditFormat::Text)]
        format: AuditFormat,
        /// The least severity that fails the command (exit 1 or 2); less is reported only.
        #[arg(long, value_enum, default_value_t = FailOn::Warning)]
        fail_on: FailOn,
    },
    /// List an org's OAuth apps: flows, certificate, owner, last use
    ///
    /// One row per Connected App and External Client App: kind (CA or ECA), flows enabled,
    /// scopes, permitted users, the JWT certificate's fingerprint and expiry, the consumer
    /// secret's age where rekey keeps it, which credentials of rekey.toml manage it (and in
    /// which stores), their owner, the last login through it and how many OAuth grants it has.
    /// The list a non-human-identity governance process starts from. Changes nothing.
    ///
    /// Exit codes: 0 listed; 3 something could not be read (the rest is listed).
    ///
    /// Examples:
    ///   rekey inventory --org prod
    ///   rekey inventory --format csv > apps.csv
    #[command(verbatim_doc_comment)]
    Inventory {
        /// Only this org; repeat for several. Default: every org.
        #[arg(long = "org", value_name = "ORG")]
        orgs: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = InventoryFormat::Text)]
        format: InventoryFormat,
    },
    /// List OAuth grants unused for N days; revoke them with --revoke
    ///
    /// An OAuth grant is a refresh token a user approved for an app (an OauthToken row). Lists
    /// the grants unused for --stale-after-days (user, app, granted, last used, use count).
    /// A dry run unless --revoke: then it asks for confirmation (--yes in automation) and
    /// revokes each through its delete token, journaled in the org's governance ledger before
    /// and after each revocation (`rekey journal --org ORG`). Only the grants go: the users,
    /// their login history and the app stay. A grant already gone counts as done.
    ///
    /// Exit codes: 0 listed or all revoked; 3 a revocation failed (the others went on); 64
    /// unknown org or app.
    ///
    /// Examples:
    ///   rekey grants --org prod --stale-after-days 90
    ///   rekey grants --org prod --app Legacy_Portal --stale-after-days 30 --revoke --yes
    #[command(verbatim_doc_comment)]
    Grants {
        /// The org (a key of [orgs]); may be left out when the config has one org.
        #[arg(long, value_name = "ORG")]
        org: Option<String>,
        /// Only this app (API name or label).
        #[arg(long, value_name = "APP")]
        app: Option<String>,
        /// A grant not used for this many days is stale.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=3650))]
        stale_after_days: u32,
        /// Revoke the stale grants (after confirmation).
        #[arg(long)]
        revoke: bool,
        /// Do not ask for confirmation (automation).
        #[arg(long, requires = "revoke")]
        yes: bool,
    },
}

/// `rekey audit --format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AuditFormat {
    /// Lines for people.
    Text,
    /// One JSON object.
    Json,
    /// SARIF 2.1.0.
    Sarif,
}

/// `rekey inventory --format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum InventoryFormat {
    /// A table for people.
    Text,
    /// A JSON array.
    Json,
    /// CSV with a header row.
    Csv,
}

/// `rekey audit --fail-on`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// Warnings and critical findings fail.
    Warning,
    /// Only critical findings fail.
    Critical,
}

impl From<FailOn> for rekey_api::Severity {
    fn from(f: FailOn) -> Self {
        match f {
            FailOn::Warning => rekey_api::Severity::Warning,
            FailOn::Critical => rekey_api::Severity::Critical,
        }
    }
}

/// `rekey config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the config: every problem at once, with file:line:column, no network
    ///
    /// Reads and validates the config as every command does (types, ranges, names that must
    /// refer to each other, paths resolved against the config's folder) without a network
    /// call, a store or Salesforce: safe in CI and pre-commit hooks. Prints every problem at
    /// once, each with its file:line:column; when there is none, one line per credential: what
    /// it rotates and where its key lives.
    ///
    /// Exit codes: 0 valid; 64 a problem (each printed; with --json, as a list).
    ///
    /// Example:
    ///   rekey --config /etc/rekey/rekey.toml config check --json
    #[command(verbatim_doc_comment)]
    Check,
}

/// How `rekey token` prints the token.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TokenFormat {
    /// A JSON object.
    Json,
    /// Shell `export` lines.
    Env,
    /// `export SF_ACCESS_TOKEN=…` and the `sf org login access-token` command, for `eval`.
    Sf,
}

impl ValueEnum for KeyAlgorithm {
    fn value_variants<'a>() -> &'a [Self] {
        &KeyAlgorithm::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()))
    }
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
