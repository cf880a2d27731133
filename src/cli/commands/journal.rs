//! `rekey journal`: a credential's journal as far as it can be read, its hash chain checked
//! (`--verify`), or every journal exported as JSON lines for a SIEM (`--export`).

use crate::cli::render;
use crate::cli::reports::{ChainReport, ExportLine};
use crate::config;
use crate::exit::Exit;
use crate::wiring;
use rekey_api::{Error, ErrorKind, JournalRead, Result, Slot};
use std::path::{Path, PathBuf};

/// Whose journal.
pub(super) enum Which {
    /// A credential's rotation journal, in its primary store.
    Credential(String),
    /// An org's governance ledger, in the ledger store.
    Org(String),
}

/// What `rekey journal` was asked for.
pub(super) enum Ask {
    /// Every entry that can be read, and a line about the chain.
    List,
    /// The chain's verdict.
    Verify,
}

/// `rekey journal CRED [--verify]`: every entry that can be read, a damaged one named where it
/// stands (the file store: `PATH:LINE`), which makes the exit code 6 as it makes every rotation
/// of the credential refuse; with `--verify`, the chain's verdict (6 when broken).
pub(super) async fn journal(
    config_path: &Path,
    which: &Which,
    ask: Ask,
    json: bool,
) -> Result<Exit> {
    let config = config::load(config_path)?;
    let (name, store_name, read) = read(&config, which).await?;
    let verdict = rekey_api::verify_chain(&read);
    let report = ChainReport {
        credential: name,
        store: store_name,
        intact: verdict.intact(),
        verdict,
    };
    let failed = match ask {
        Ask::List => {
            render::journal(&read, &report, json);
            !read.damaged.is_empty()
        }
        Ask::Verify => {
            render::chain(&report, json);
            !report.intact
        }
    };
    Ok(if failed {
        Exit::of_error(ErrorKind::Conflict)
    } else {
        Exit::Ok
    })
}

/// `rekey journal --export [CRED] [--output FILE]`: every entry of every credential's journal
/// (or CRED's) as one JSON line with its chain state, on stdout or written atomically to FILE.
/// A journal that cannot be read stops the export before anything is written: a SIEM given
/// part of the journals could not tell what is missing.
pub(super) async fn export(
    config_path: &Path,
    only: Option<&Which>,
    output: Option<&PathBuf>,
) -> Result<Exit> {
    let config = config::load(config_path)?;
    let journals: Vec<Which> = match only {
        Some(Which::Credential(name)) => vec![Which::Credential(name.clone())],
        Some(Which::Org(org)) => vec![Which::Org(org.clone())],
        None => config
            .credentials
            .keys()
            .map(|c| Which::Credential(c.clone()))
            .chain(config.orgs.keys().map(|o| Which::Org(o.clone())))
            .collect(),
    };
    let mut text = String::new();
    for which in &journals {
        let (name, store, read) = read(&config, which).await?;
        let name = name.as_str();
        let verdict = rekey_api::verify_chain(&read);
        for (i, slot) in read.slots().into_iter().enumerate() {
            // A damaged entry has no fields to export; its number stays unused, so the gap shows.
            let Slot::Entry(entry, _) = slot else {
                continue;
            };
            let line = ExportLine {
                credential: name,
                store: &store,
                seq: i + 1,
                chain: verdict.state_of(i + 1),
                entry,
            };
            text.push_str(&serde_json::to_string(&line).map_err(|e| {
                Error::new(ErrorKind::Unexpected, format!("cannot encode JSON: {e}"))
            })?);
            text.push('\n');
        }
    }
    match output {
        None => render::export(&text),
        Some(path) => rekey_api::write_atomic(path, text.as_bytes(), 0o600).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("cannot write {}", path.display()),
            )
            .with_source(e)
            .with_hint("check that the folder exists and is writable")
        })?,
    }
    Ok(Exit::Ok)
}

/// The journal's name, its store's name and the journal as read: a credential's from its
/// primary store, an org's ledger from the ledger store.
async fn read(config: &config::Config, which: &Which) -> Result<(String, String, JournalRead)> {
    match which {
        Which::Credential(name) => {
            let cred = wiring::credential(config, name)?;
            let store = &wiring::stores(config, cred).await?[0];
            let read = store.scan_journal(name).await?;
            Ok((name.clone(), cred.stores[0].clone(), read))
        }
        Which::Org(org) => {
            let (name, store_name) = config.ledger(org)?;
            let store = wiring::store(config, store_name).await?;
            let read = store.scan_journal(&name).await?;
            Ok((name, store_name.to_string(), read))
        }
    }
}
