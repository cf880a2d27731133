//! `plan`, `rotate`, `resume`, `abort`: one credential through the rotation protocol, its progress
//! printed as it goes and its outcome told to the channels.

use crate::cli::render;
use crate::config;
use crate::emergency;
use crate::exit::Exit;
use crate::monitor::alerts::{Notifier, RotationNews};
use crate::rotation::{self, Intent};
use crate::wiring;
use rekey_api::{Error, Result};
use std::path::{Path, PathBuf};

pub(super) async fn plan(config_path: &Path, name: &str, json: bool) -> Result<Exit> {
    let config = config::load(config_path)?;
    let cred = wiring::credential(&config, name)?;
    render::plan(&rotation::plan_credential(&config, cred, None).await?, json);
    Ok(Exit::Ok)
}

pub(super) async fn rotate(
    config_path: &Path,
    name: &str,
    intent: &Intent,
    evidence_dir: Option<PathBuf>,
    json: bool,
) -> Exit {
    let prepared = async {
        let config = config::load(config_path)?;
        wiring::credential(&config, name)?;
        let notifier = Notifier::from_config(&config)?;
        // Only now: a signal before this point ends the process at once, with nothing changed.
        crate::shutdown::listen()?;
        Ok::<_, Error>((config, notifier))
    }
    .await;
    let (config, notifier) = match prepared {
        Ok(p) => p,
        Err(error) => return render::error(&error, json),
    };
    let cred = &config.credentials[name];
    let mut progress = render::RotateProgress::new(name, json);
    let result =
        rotation::rotate_credential(&config, cred, intent, &mut |e| progress.event(e)).await;
    if let (Some(notifier), Some(news)) = (&notifier, RotationNews::of(cred, &result)) {
        match notifier.rotation(&news, rekey_api::now()).await {
            Ok(deliveries) => render::deliveries(&deliveries, json),
            Err(e) => render::warning(&format!("could not record the notification: {e}")),
        }
    }
    // Whichever command ends an emergency rekey leaves its evidence bundle.
    let dir = emergency::evidence_dir(&config, evidence_dir);
    let mut warnings = Vec::new();
    let evidence = emergency::evidence_of(&config, cred, &result, &dir, None, &mut warnings).await;
    let exit = match result {
        Ok(closed) => progress.finish(&closed),
        Err(stopped) => render::stopped(name, &stopped, json),
    };
    for warning in &warnings {
        render::warning(warning);
    }
    match evidence {
        Some(Ok(path)) => render::note(&format!("{name}: evidence bundle {}", path.display())),
        Some(Err(e)) => {
            render::warning(&format!("{name}: {e}"));
            if exit == Exit::Ok {
                return Exit::Internal;
            }
        }
        None => {}
    }
    exit
}
