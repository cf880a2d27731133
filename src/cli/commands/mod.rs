//! One function per subcommand: load what it needs, act, hand a report to `render`.

mod agent;
mod emergency;
mod governance;
mod import_secret;
mod journal;
mod keys;
mod rotate;
mod run;
mod setup;
mod status;
mod token;

use super::args::{Cli, Command, ConfigCommand};
use super::render;
use crate::emergency::Which;
use crate::exit::Exit;
use crate::rotation::{Emergency, Intent};

/// Runs the parsed command line.
pub async fn dispatch(cli: Cli) -> Exit {
    let json = cli.json;
    let result = match cli.command {
        Command::Init { path } => setup::init(&path, json),
        Command::Config(ConfigCommand::Check) => return setup::check(&cli.config, json),
        Command::Completions { shell } => return setup::completions(shell),
        Command::Inspect {
            credential: Some(credential),
            stage,
            ..
        } => keys::inspect_credential(&cli.config, &credential, stage.into(), json).await,
        Command::Inspect { files, .. } => keys::inspect(&files, json),
        Command::Generate {
            key_out,
            cert_out,
            cn,
            days,
            algorithm,
            force,
        } => keys::generate(&key_out, &cert_out, &cn, days, algorithm, force, json),
        Command::Plan { credential } => rotate::plan(&cli.config, &credential, json).await,
        Command::Rotate { credential } => {
            return rotate::rotate(&cli.config, &credential, &Intent::Rotate, None, json).await;
        }
        Command::Resume {
            credential,
            evidence_dir,
        } => {
            let intent = Intent::Resume;
            return rotate::rotate(&cli.config, &credential, &intent, evidence_dir, json).await;
        }
        Command::Retire { credential } => {
            return rotate::rotate(&cli.config, &credential, &Intent::Retire, None, json).await;
        }
        Command::Abort {
            credential,
            reason,
            evidence_dir,
        } => {
            let intent = Intent::Abort { reason };
            return rotate::rotate(&cli.config, &credential, &intent, evidence_dir, json).await;
        }
        Command::Status { credential } => {
            status::status(&cli.config, credential.as_deref(), json).await
        }
        Command::Check {
            credential,
            preflight: false,
            prometheus_textfile,
            no_notify,
        } => {
            status::check(
                &cli.config,
                credential.as_deref(),
                prometheus_textfile.as_deref(),
                !no_notify,
                json,
            )
            .await
        }
        Command::Run { dry_run } => run::run_once(&cli.config, dry_run, json).await,
        Command::Emergency {
            credential,
            all_in_org,
            reason,
            kill_switch,
            yes,
            evidence_dir,
        } => {
            let emergency = Emergency {
                reason,
                kill_switch,
            };
            let which = match (credential, all_in_org) {
                (Some(c), _) => Which::Credential(c),
                (None, Some(org)) => Which::Org(org),
                (None, None) => unreachable!("clap requires one of them"),
            };
            emergency::emergency(&cli.config, &which, &emergency, yes, evidence_dir, json).await
        }
        Command::Daemon => run::serve(&cli.config).await,
        Command::Agent => agent::agent(&cli.config).await,
        Command::Check {
            credential,
            preflight: true,
            ..
        } => status::preflight(&cli.config, credential.as_deref(), json).await,
        Command::Import {
            credential,
            key,
            cert,
            secret_file,
            secret_stdin,
        } => match (key, cert) {
            (Some(key), Some(cert)) => {
                keys::import(&cli.config, &credential, &key, &cert, json).await
            }
            _ => {
                let from = import_secret::From::of(secret_file, secret_stdin);
                import_secret::import(&cli.config, &credential, from, json).await
            }
        },
        Command::Verify { credential, stage } => {
            keys::verify(&cli.config, &credential, stage.into(), json).await
        }
        Command::Journal {
            credential,
            org,
            verify,
            export,
            output,
        } => {
            let which = match (credential, org) {
                (Some(name), _) => Some(journal::Which::Credential(name)),
                (None, Some(org)) => Some(journal::Which::Org(org)),
                (None, None) => None,
            };
            match (export, which) {
                (true, only) => journal::export(&cli.config, only.as_ref(), output.as_ref()).await,
                (false, Some(which)) => {
                    let ask = if verify {
                        journal::Ask::Verify
                    } else {
                        journal::Ask::List
                    };
                    journal::journal(&cli.config, &which, ask, json).await
                }
                (false, None) => unreachable!("clap requires CREDENTIAL or --org without --export"),
            }
        }
        Command::Token {
            credential,
            format,
            no_cache,
        } => token::token(&cli.config, &credential, format, !no_cache, json).await,
        Command::Audit {
            orgs,
            format,
            fail_on,
        } => governance::audit(&cli.config, &orgs, format, fail_on, json).await,
        Command::Inventory { orgs, format } => {
            governance::inventory(&cli.config, &orgs, format, json).await
        }
        Command::Grants {
            org,
            app,
            stale_after_days,
            revoke,
            yes,
        } => {
            governance::grants(
                &cli.config,
                org,
                app.as_deref(),
                stale_after_days,
                revoke,
                yes,
                json,
            )
            .await
        }
    };
    result.unwrap_or_else(|error| render::error(&error, json))
}
