//! `init`, `config check`, `completions`: getting a config and a shell ready, without a network
//! call, a store or Salesforce.

use crate::cli::render;
use crate::cli::reports::CredentialLine;
use crate::config::{self, Config, StoreConfig};
use crate::exit::Exit;
use rekey_api::{Error, ErrorKind, Result};
use std::io::Write as _;
use std::path::Path;

/// `rekey init`: the annotated example, never over an existing file (created exclusively, so a
/// file that appears meanwhile is not replaced either).
pub(super) fn init(path: &Path, json: bool) -> Result<Exit> {
    let refused = |e: std::io::Error| {
        let exists = e.kind() == std::io::ErrorKind::AlreadyExists;
        Error::new(
            ErrorKind::Config,
            if exists {
                format!("{} already exists; nothing was written", path.display())
            } else {
                format!("cannot write {}", path.display())
            },
        )
        .with_hint(if exists {
            "edit it, or give another file with --path"
        } else {
            "give a file in a folder you can write with --path"
        })
        .with_source(e)
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(refused)?;
    if let Err(e) = file
        .write_all(config::EXAMPLE.as_bytes())
        .and_then(|()| file.sync_all())
    {
        // Half a config would be worse than none: the next `init` could not replace it.
        let _ = std::fs::remove_file(path);
        return Err(refused(e));
    }
    render::initialized(path, json);
    Ok(Exit::Ok)
}

/// `rekey config check`: the config as every command loads it, and a line per credential.
pub(super) fn check(path: &Path, json: bool) -> Exit {
    match config::load(path) {
        Ok(config) => {
            render::config_valid(path, &credential_lines(&config), json);
            Exit::Ok
        }
        Err(error) => render::config_problems(path, &error, json),
    }
}

fn credential_lines(config: &Config) -> Vec<CredentialLine> {
    config
        .credentials
        .values()
        .map(|c| CredentialLine {
            name: c.name.clone(),
            rotates: match c.kind {
                rekey_api::CredentialKind::JwtCertificate => {
                    format!("{}/{} ({})", c.org, c.app, c.app_kind)
                }
                rekey_api::CredentialKind::ConsumerSecret => {
                    format!("{}/{} ({}, consumer secret)", c.org, c.app, c.app_kind)
                }
            },
            stores: c
                .stores
                .iter()
                .map(|name| match &config.stores[name] {
                    StoreConfig::File(f) => format!("{name} (file: {})", f.path.display()),
                    StoreConfig::Vault(v) => format!(
                        "{name} (vault: {}, {}/{})",
                        v.address.as_deref().unwrap_or("$VAULT_ADDR"),
                        v.mount,
                        v.path_prefix
                    ),
                    StoreConfig::Aws(a) => format!(
                        "{name} (aws: {}, {}*)",
                        a.region.as_deref().unwrap_or("default region"),
                        a.name_prefix
                    ),
                })
                .collect(),
            consumers: c.consumers.len(),
        })
        .collect()
}

/// `rekey completions SHELL`: clap's generator over the same definition the parser uses.
pub(super) fn completions(shell: clap_complete::Shell) -> Exit {
    let mut command = <crate::cli::Cli as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "rekey", &mut script);
    render::script(&String::from_utf8_lossy(&script))
}
