//! `rekey import` for a consumer secret: the External Client App's primary consumer key and
//! secret become generation 1, CURRENT, in every store, once they are proven to be the app's
//! (a client credentials login, or reading them back). Read from Salesforce when the org lets
//! the admin, else from a file or stdin; never from a command-line argument, which every user of
//! the machine can see.

use super::keys::import_into;
use crate::cli::render;
use crate::cli::reports::ImportReport;
use crate::config::{self, CredentialConfig};
use crate::exit::Exit;
use crate::{rotation, wiring};
use rekey_api::{
    ConsumerSecret, CredentialKind, Error, ErrorKind, Material, Probe, Public, Result,
};
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// Where the pair comes from.
pub(super) enum From {
    /// Salesforce's Connect REST API (the admin needs the org setting and View Client Secret).
    Salesforce,
    /// A JSON file.
    File(PathBuf),
    /// JSON on stdin.
    Stdin,
}

impl From {
    pub(super) fn of(file: Option<PathBuf>, stdin: bool) -> From {
        match (file, stdin) {
            (Some(path), _) => From::File(path),
            (None, true) => From::Stdin,
            (None, false) => From::Salesforce,
        }
    }
}

pub(super) async fn import(config_path: &Path, name: &str, from: From, json: bool) -> Result<Exit> {
    let config = config::load(config_path)?;
    let cred = wiring::credential(&config, name)?;
    if cred.kind != CredentialKind::ConsumerSecret {
        return Err(Error::new(
            ErrorKind::Config,
            format!("{name} is a certificate credential: import its key and certificate"),
        )
        .with_hint(format!("rekey import {name} --key KEY.pem --cert CERT.pem")));
    }
    let mut warnings = Vec::new();
    let target = wiring::salesforce_target(&config, cred)?;
    let relying = rotation::target_of(cred, &target);
    let secret = match from {
        From::Salesforce => rotation::consumer_target(&relying)?
            .primary()
            .await
            .map_err(|e| {
                e.context(format!("{name}: reading the consumer secret from Salesforce"))
                    .with_hint(format!(
                        "if the org does not let the admin read consumer secrets over REST, import it from a file: `rekey import {name} --secret-file FILE` (JSON with consumer_key and consumer_secret)"
                    ))
            })?,
        From::File(path) => {
            warnings.extend(file_warning(cred, &path));
            let text = std::fs::read_to_string(&path).map_err(|e| {
                Error::new(ErrorKind::Config, format!("cannot read {}", path.display()))
                    .with_source(e)
            })?;
            parse(&zeroize::Zeroizing::new(text)).map_err(|e| e.context(path.display()))?
        }
        From::Stdin => {
            let mut text = zeroize::Zeroizing::new(String::new());
            std::io::stdin().read_to_string(&mut text).map_err(|e| {
                Error::new(ErrorKind::Config, "cannot read stdin").with_source(e)
            })?;
            parse(&text).map_err(|e| e.context("stdin"))?
        }
    };
    let material = Material::Consumer(secret);
    // Before anything is written (the lock included): the pair must be the app's.
    match relying.probe(&material).await? {
        Probe::Accepted { .. } => {}
        Probe::Rejected {
            error, description, ..
        } => {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{name}: {relying} does not accept consumer key {} with this secret ({error}: {description}); nothing was imported",
                    material.consumer()?.key()
                ),
            )
            .with_hint("import the app's primary consumer key and secret (Setup → App Manager → the app → Manage Consumer Details)"));
        }
    }
    let public = Public::Consumer(material.consumer()?.public());
    let stores = wiring::stores(&config, cred).await?;
    let generation = import_into(&stores, name, &material, &public).await?;
    let report = ImportReport {
        credential: name.to_string(),
        generation,
        fingerprint: public.fingerprint().to_hex(),
        not_after: None,
        consumer_key: public.consumer().map(|c| c.key.clone()),
        warnings,
    };
    render::import(&report, json);
    Ok(Exit::Ok)
}

/// `{"consumer_key": "…", "consumer_secret": "…"}` (also AWS's `consumerKey`/`consumerSecret`);
/// no error quotes the input.
fn parse(text: &str) -> Result<ConsumerSecret> {
    let doc: serde_json::Value = serde_json::from_str(text).map_err(|_| {
        Error::new(
            ErrorKind::Config,
            "not a JSON object with consumer_key and consumer_secret",
        )
        .with_hint(r#"write {"consumer_key": "…", "consumer_secret": "…"}"#)
    })?;
    let field = |names: [&str; 2]| {
        names
            .iter()
            .find_map(|n| doc.get(*n).and_then(|v| v.as_str()))
            .map(ToString::to_string)
            .ok_or_else(|| {
                Error::new(ErrorKind::Config, format!("no \"{}\" string", names[0]))
                    .with_hint(r#"write {"consumer_key": "…", "consumer_secret": "…"}"#)
            })
    };
    ConsumerSecret::new(
        field(["consumer_key", "consumerKey"])?,
        field(["consumer_secret", "consumerSecret"])?,
    )
}

/// A secret file others can read is worth a warning: the store's copy is 0600.
fn file_warning(cred: &CredentialConfig, path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "{} is mode {mode:04o}: other users of this machine can {} the consumer secret; the store's copy is 0600, so remove this file (or `chmod 600` it), and if someone may have read it, treat the secret as leaked (`rekey emergency {}`)",
            path.display(),
            if mode & 0o044 != 0 { "read" } else { "change" },
            cred.name
        )
    })
}
