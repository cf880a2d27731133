//! What a credential's sources say: `status`, `check` (with alerts and metrics) and
//! `check --preflight`.

use crate::cli::render;
use crate::cli::reports::{PreflightRow, StatusRow, StoreStatus};
use crate::config::{self, Config, CredentialConfig};
use crate::exit::Exit;
use crate::monitor::alerts::{Notifier, Observed};
use crate::monitor::findings::{self, CheckRow, check_row};
use crate::monitor::{audited, budget, metrics, observe};
use crate::{rotation, wiring};
use futures_util::StreamExt as _;
use rekey_api::{Error, ErrorKind, Result, Severity};
use std::path::Path;

pub(super) fn selected<'c>(
    config: &'c Config,
    only: Option<&str>,
) -> Result<Vec<&'c CredentialConfig>> {
    match only {
        Some(name) => Ok(vec![wiring::credential(config, name)?]),
        None => Ok(config.credentials.values().collect()),
    }
}

/// `rekey status`: one row per credential, each read on its own, so a credential whose store
/// or journal cannot be read is shown as such and never hides the others. The exit code says
/// whether every credential could be read: 0, or that of the first one that could not (a
/// damaged journal: 6), after every row was printed.
pub(super) async fn status(config_path: &Path, only: Option<&str>, json: bool) -> Result<Exit> {
    let config = config::load(config_path)?;
    let now = rekey_api::now();
    let mut rows = Vec::new();
    let mut exit = Exit::Ok;
    let creds = selected(&config, only)?;
    wiring::read_ahead(&config, &creds).await;
    for cred in creds {
        let row = status_row(&config, cred, now).await;
        let problem = match &row {
            Err(e) => Some(e.kind()),
            Ok(row) if !row.journal_damaged.is_empty() => Some(ErrorKind::Conflict),
            Ok(_) => None,
        };
        if let (Some(kind), Exit::Ok) = (problem, exit) {
            exit = Exit::of_error(kind);
        }
        rows.push(row.unwrap_or_else(|e| StatusRow::unreadable(cred, &e)));
    }
    render::status(&rows, json);
    Ok(exit)
}

/// The status of one credential; an error when its stores cannot be read at all.
async fn status_row(
    config: &Config,
    cred: &CredentialConfig,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<StatusRow> {
    let in_context = |e: Error| e.context(&cred.name);
    let stores = wiring::stores(config, cred).await.map_err(in_context)?;
    // The app is read, not assumed; if it cannot be, the row says why instead of failing.
    let (app, staged) = match wiring::salesforce_target(config, cred) {
        Ok(target) => {
            let relying = rotation::target_of(cred, &target);
            // A consumer secret's staged slot: what still logs in besides the primary pair. A
            // slot that cannot be read is left out here; `rekey check` reports it.
            let staged = match rotation::consumer_target(&relying) {
                Ok(t) => t.staged().await.ok().flatten().map(|(slot, _secret)| slot),
                Err(_) => None,
            };
            (relying.installed().await, staged)
        }
        Err(e) => (Err(e), None),
    };
    let (app_fingerprint, app_error) = match app {
        Ok(fingerprint) => (fingerprint, None),
        Err(e) => (None, Some(e.to_string())),
    };
    let mut per_store = Vec::new();
    let mut primary = None;
    let mut held = Vec::new();
    for store in &stores {
        let stages = store.stages(&cred.name).await.map_err(in_context)?;
        let fingerprint = stages.current.as_ref().map(|v| v.public.fingerprint());
        held.push(fingerprint);
        let (custody, custody_error) = match custody_of(store.as_ref(), &cred.name).await {
            Ok(state) => (state, None),
            Err(e) => (None, Some(e.to_string())),
        };
        per_store.push(StoreStatus {
            store: store.to_string(),
            generation: stages.current.as_ref().map(|v| v.generation),
            fingerprint: fingerprint.map(|f| f.to_hex()),
            matches_app: app_error
                .is_none()
                .then_some(fingerprint.is_some() && fingerprint == app_fingerprint),
            rotation_in_progress: false,
            custody,
            custody_error,
        });
        primary.get_or_insert(stages);
    }
    let stages = primary.unwrap_or_default();
    // What the journal says as far as it can be read; the damaged entries are named in the row.
    let journal = stores[0]
        .scan_journal(&cred.name)
        .await
        .map_err(in_context)?;
    // A store behind the app because of the open rotation is a rotation in progress, not drift.
    let in_flight = observe::InFlight::of(rotation::open_rotation(&journal.entries).as_ref());
    for (st, held) in per_store.iter_mut().zip(&held) {
        st.rotation_in_progress = st.matches_app == Some(false)
            && app_fingerprint
                .zip(*held)
                .is_some_and(|(app, store)| in_flight.explains(app, store));
    }
    let current = stages.current.as_ref();
    Ok(StatusRow {
        credential: cred.name.clone(),
        app: cred.app.clone(),
        store: stores[0].to_string(),
        generation: current.map(|v| v.generation),
        fingerprint: current.map(|v| v.public.fingerprint().to_hex()),
        not_after: current.and_then(|v| v.public.not_after()),
        days_left: current.and_then(|v| v.public.certificate().map(|c| c.days_left(now))),
        pending_generation: stages.pending.as_ref().map(|v| v.generation),
        previous_generation: stages.previous.as_ref().map(|v| v.generation),
        last_rotation: rotation::last_success(&journal.entries),
        open_rotation: rotation::open_rotation(&journal.entries).map(|o| o.rotation_id),
        app_fingerprint: app_fingerprint.map(|f| f.to_hex()),
        app_error,
        stores: per_store,
        staged,
        journal_damaged: journal.damaged,
        error: None,
    })
}

pub(super) async fn check(
    config_path: &Path,
    only: Option<&str>,
    prometheus_textfile: Option<&Path>,
    notify: bool,
    json: bool,
) -> Result<Exit> {
    let config = config::load(config_path)?;
    let notifier = if notify {
        Notifier::from_config(&config)?
    } else {
        None
    };
    let now = rekey_api::now();
    let mut observed = Vec::new();
    let creds = selected(&config, only)?;
    wiring::read_ahead(&config, &creds).await;
    // Observed side by side (as `run` does), in config order.
    let observations: Vec<observe::Observation> = futures_util::stream::iter(&creds)
        .map(|cred| observe::observe(&config, cred))
        .buffered(config.run.concurrency)
        .collect()
        .await;
    for o in observations {
        let findings = findings::evaluate(&o, now);
        observed.push((o, findings));
    }
    // The org audit, when asked for, only in a check of everything: a check of one credential
    // is about that credential.
    let audit = match only {
        None => audited::audit_if_asked(&config, now).await,
        Some(_) => None,
    };
    if let Some(path) = prometheus_textfile {
        budget::read_usage(&config, observed.iter().map(|(o, _)| o.org.as_str())).await;
        let judged: Vec<_> = observed
            .iter()
            .map(|(o, f)| (o.clone(), findings::worst(f)))
            .collect();
        let mut text = metrics::metrics(&judged);
        if let Some(report) = &audit {
            text.push_str(&audited::metrics(report));
        }
        text.push_str(&budget::metrics(None));
        metrics::write_textfile(path, &text)?;
    }
    if let Some(report) = &audit {
        observed.extend(audited::subjects(&config, report));
    }
    // Alerts go out before the report, so a slow channel cannot hide behind a printed table.
    let mut undelivered = false;
    if let Some(notifier) = &notifier {
        let list: Vec<Observed<'_>> = observed
            .iter()
            .map(|(observation, findings)| Observed {
                observation,
                findings,
            })
            .collect();
        let deliveries = notifier.findings(&list, now).await?;
        undelivered = deliveries.iter().any(|d| d.error.is_some());
        render::deliveries(&deliveries, json);
    }
    let rows: Vec<CheckRow> = observed
        .into_iter()
        .map(|(o, findings)| check_row(&o, findings, now))
        .collect();
    render::check(&rows, json);
    let worst = rows
        .iter()
        .map(|r| r.severity)
        .chain(undelivered.then_some(Severity::Unknown))
        .max()
        .unwrap_or(Severity::Ok);
    Ok(Exit::of_severity(worst))
}

pub(super) async fn preflight(config_path: &Path, only: Option<&str>, json: bool) -> Result<Exit> {
    let config = config::load(config_path)?;
    let mut rows = Vec::new();
    let mut worst = Exit::Ok;
    for cred in selected(&config, only)? {
        let stores = wiring::stores(&config, cred)
            .await
            .map_err(|e| e.context(&cred.name))?;
        let sf = wiring::salesforce_target(&config, cred).map_err(|e| e.context(&cred.name))?;
        // The preflight of what this credential rotates: a consumer secret's also proves the
        // org lets the admin stage and read consumer secrets.
        let target = rotation::target_of(cred, &sf);
        let mut problem = |result: Result<()>| {
            result.err().map(|e| {
                if worst == Exit::Ok {
                    worst = Exit::of_error(e.kind());
                }
                e.to_string()
            })
        };
        let mut store_problems = Vec::new();
        for store in &stores {
            store_problems.extend(problem(store.preflight(&cred.name).await));
        }
        let target_problem = problem(target.preflight().await);
        rows.push(PreflightRow {
            credential: cred.name.clone(),
            store: stores
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            store_problem: (!store_problems.is_empty()).then(|| store_problems.join("; ")),
            target: target.to_string(),
            target_problem,
        });
    }
    render::preflight(&rows, json);
    Ok(worst)
}

/// CURRENT's key as its service describes it (id, version, algorithm, whether it is exportable),
/// when `store` keeps keys in custody; `None` otherwise.
async fn custody_of(
    store: &dyn rekey_api::SecretStore,
    credential: &str,
) -> rekey_api::Result<Option<rekey_api::KeyState>> {
    if store.custody().is_none() {
        return Ok(None);
    }
    match store
        .read_stage(credential, rekey_api::Stage::Current)
        .await?
    {
        Some(rekey_api::StoredVersion {
            material: rekey_api::Material::Custody(key),
            ..
        }) => Ok(Some(key.custody()?.describe(key.handle()).await?)),
        _ => Ok(None),
    }
}
