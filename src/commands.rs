//! One function per subcommand: load what it needs, act, hand a report to `render`.

use crate::alerts::{Notifier, Observed};
use crate::check::{self, Finding, Observation, Severity};
use crate::cli::{Cli, Command};
use crate::config::{self, Config, CredentialConfig};
use crate::consumers::CredentialConsumers;
use crate::render::{self, Exit};
use crate::rotation::{self, Failure, Intent, Rotation};
use crate::{evidence, pki, run, wiring};
use chrono::{DateTime, Utc};
use rekey_api::{
    Certificate, Error, ErrorKind, Generation, KeyMaterial, NewVersion, Probe, Result, RotationId,
    SecretStore, Stage,
};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Exit {
    let json = cli.json;
    let result = match cli.command {
        Command::Inspect { files } => inspect(&files, json),
        Command::Generate {
            key_out,
            cert_out,
            cn,
            days,
            algorithm,
            force,
        } => generate(&key_out, &cert_out, &cn, days, &algorithm, force, json),
        Command::Plan { credential } => plan(&cli.config, &credential, json).await,
        Command::Rotate { credential } => {
            return rotate(&cli.config, &credential, &Intent::Rotate, json).await;
        }
        Command::Resume { credential } => {
            return rotate(&cli.config, &credential, &Intent::Resume, json).await;
        }
        Command::Abort { credential, reason } => {
            return rotate(&cli.config, &credential, &Intent::Abort { reason }, json).await;
        }
        Command::Status { credential } => status(&cli.config, credential.as_deref(), json).await,
        Command::Check {
            credential,
            preflight: false,
            prometheus_textfile,
            no_notify,
        } => {
            check(
                &cli.config,
                credential.as_deref(),
                prometheus_textfile.as_deref(),
                !no_notify,
                json,
            )
            .await
        }
        Command::Run { dry_run } => run_once(&cli.config, dry_run, json).await,
        Command::Emergency {
            credential,
            all_in_org,
            reason,
            kill_switch,
            yes,
            evidence_dir,
        } => {
            let emergency = rotation::Emergency {
                reason,
                kill_switch,
            };
            let which = match (credential, all_in_org) {
                (Some(c), _) => Which::Credential(c),
                (None, Some(org)) => Which::Org(org),
                (None, None) => unreachable!("clap requires one of them"),
            };
            emergency_rekey(&cli.config, &which, &emergency, yes, evidence_dir, json).await
        }
        Command::Daemon => crate::daemon::serve(&cli.config).await,
        Command::Check {
            credential,
            preflight: true,
            ..
        } => preflight(&cli.config, credential.as_deref(), json).await,
        Command::Import {
            credential,
            key,
            cert,
        } => import(&cli.config, &credential, &key, &cert, json).await,
        Command::Verify { credential, stage } => {
            verify(&cli.config, &credential, stage.into(), json).await
        }
        Command::Journal { credential } => journal(&cli.config, &credential, json).await,
        Command::Token {
            credential,
            format,
            no_cache,
        } => token(&cli.config, &credential, format, !no_cache, json).await,
    };
    result.unwrap_or_else(|error| render::error(&error, None, json))
}

/// What `inspect` reports about one file.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Inspected {
    /// An X.509 certificate.
    Certificate {
        /// The file.
        path: PathBuf,
        /// Subject DN.
        subject: String,
        /// Issuer DN.
        issuer: String,
        /// Serial (hex).
        serial: String,
        /// notBefore.
        not_before: DateTime<Utc>,
        /// notAfter.
        not_after: DateTime<Utc>,
        /// Days until notAfter.
        days_left: i64,
        /// Key algorithm.
        key_algorithm: String,
        /// Key size in bits.
        key_bits: usize,
        /// SHA-256 of the DER.
        fingerprint_sha256: String,
        /// SHA-256 of the public key info.
        spki_sha256: String,
    },
    /// A private key: only its public facts.
    PrivateKey {
        /// The file.
        path: PathBuf,
        /// Public facts.
        #[serde(flatten)]
        facts: pki::KeyFacts,
    },
}

/// `inspect`'s whole report.
#[derive(Serialize)]
pub struct InspectReport {
    /// One entry per file.
    pub files: Vec<Inspected>,
    /// When exactly one key and one certificate were given: whether the key signs for the cert.
    pub key_matches_certificate: Option<bool>,
}

fn inspect(files: &[PathBuf], json: bool) -> Result<Exit> {
    let now = rekey_api::now();
    let mut report = InspectReport {
        files: Vec::new(),
        key_matches_certificate: None,
    };
    let (mut keys, mut certs) = (Vec::new(), Vec::new());
    for path in files {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::new(ErrorKind::Config, format!("cannot read {}", path.display())).with_source(e)
        })?;
        if text.contains("PRIVATE KEY-----") {
            let key = KeyMaterial::from_pem(text).map_err(|e| e.context(path.display()))?;
            let facts = pki::key_facts(&key).map_err(|e| e.context(path.display()))?;
            report.files.push(Inspected::PrivateKey {
                path: path.clone(),
                facts,
            });
            keys.push(key);
        } else {
            let cert = Certificate::from_pem(&text).map_err(|e| e.context(path.display()))?;
            report.files.push(Inspected::Certificate {
                path: path.clone(),
                subject: cert.subject.clone(),
                issuer: cert.issuer.clone(),
                serial: cert.serial.clone(),
                not_before: cert.not_before,
                not_after: cert.not_after,
                days_left: cert.days_left(now),
                key_algorithm: cert.key_algorithm.clone(),
                key_bits: cert.key_bits,
                fingerprint_sha256: cert.fingerprint.to_hex(),
                spki_sha256: cert.spki_fingerprint.to_hex(),
            });
            certs.push(cert);
        }
    }
    if let ([key], [cert]) = (keys.as_slice(), certs.as_slice()) {
        report.key_matches_certificate = Some(pki::prove_pair(key, cert).is_ok());
    }
    render::inspect(&report, json);
    Ok(match report.key_matches_certificate {
        Some(false) => Exit::BadInput,
        _ => Exit::Ok,
    })
}

/// `rekey generate`: a pair written to two files, then described exactly as `inspect` would.
fn generate(
    key_out: &Path,
    cert_out: &Path,
    cn: &str,
    days: u32,
    algorithm: &str,
    force: bool,
    json: bool,
) -> Result<Exit> {
    let algorithm = pki::KeyAlgorithm::parse(algorithm).ok_or_else(|| {
        Error::new(
            ErrorKind::Config,
            format!("--algorithm: unknown key algorithm '{algorithm}'"),
        )
        .with_hint(format!(
            "use one of {}",
            pki::KeyAlgorithm::NAMES.join(", ")
        ))
    })?;
    if key_out == cert_out {
        return Err(Error::new(
            ErrorKind::Config,
            format!("--key-out and --cert-out are both {}", key_out.display()),
        )
        .with_hint("give the key and the certificate different files"));
    }
    if !force {
        for path in [key_out, cert_out] {
            if path.exists() {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("{} already exists; nothing was written", path.display()),
                )
                .with_hint("choose another file, or pass --force to replace it"));
            }
        }
    }
    let spec = pki::CertSpec {
        algorithm,
        subject: pki::Subject {
            cn: cn.to_string(),
            o: None,
            ou: None,
        },
        validity_days: days,
    };
    let (key, certificate) = pki::generate(&spec, rekey_api::now())?;
    let write = |path: &Path, bytes: &[u8], mode: u32| {
        crate::atomic_file::write(path, bytes, mode).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("cannot write {}", path.display()),
            )
            .with_source(e)
            .with_hint("check that the folder exists and is writable")
        })
    };
    // The certificate first: a failure then leaves no key without its certificate.
    write(cert_out, certificate.pem().as_bytes(), 0o644)?;
    write(key_out, key.expose_secret_pem().as_bytes(), 0o600)?;
    inspect(&[key_out.to_path_buf(), cert_out.to_path_buf()], json)
}

async fn plan(config_path: &Path, name: &str, json: bool) -> Result<Exit> {
    let config = config::load(config_path)?;
    let cred = wiring::credential(&config, name)?;
    render::plan(&plan_of(&config, cred, None).await?, json);
    Ok(Exit::Ok)
}

/// The plan of `cred`'s next rotation (an `emergency` one when given) from its stores alone.
async fn plan_of(
    config: &Config,
    cred: &CredentialConfig,
    emergency: Option<&rotation::Emergency>,
) -> Result<rotation::Plan> {
    let stores = wiring::stores(config, cred).await?;
    let target = wiring::target(config, cred)?;
    let consumers = CredentialConsumers::from_config(cred)?;
    rotation::plan(
        &rotation_of(cred, &stores, target.as_ref(), &consumers),
        emergency,
    )
    .await
}

fn rotation_of<'a>(
    cred: &'a CredentialConfig,
    stores: &'a [Box<dyn SecretStore>],
    target: &'a dyn rekey_api::CertificateTarget,
    consumers: &'a CredentialConsumers,
) -> Rotation<'a> {
    Rotation {
        credential: &cred.name,
        stores,
        target,
        spec: &cred.cert,
        verify_timeout: cred.verify_timeout,
        resume_max_age: cred.resume_max_age,
        on_verify_failure: cred.on_verify_failure,
        consumers,
    }
}

/// Rotates (resumes, aborts) one credential: the stores and app it names, then the protocol.
pub async fn rotate_credential(
    config: &Config,
    cred: &CredentialConfig,
    intent: &Intent,
    progress: &mut (dyn FnMut(rotation::Event) + Send),
) -> std::result::Result<rotation::Outcome, Failure> {
    let stores = wiring::stores(config, cred)
        .await
        .map_err(Failure::before_start)?;
    let target = wiring::target(config, cred).map_err(Failure::before_start)?;
    // Built first: a webhook secret that cannot be read stops the rotation before it starts.
    let consumers = CredentialConsumers::from_config(cred).map_err(Failure::before_start)?;
    rotation::rotate(
        &rotation_of(cred, &stores, target.as_ref(), &consumers),
        intent,
        progress,
    )
    .await
}

async fn rotate(config_path: &Path, name: &str, intent: &Intent, json: bool) -> Exit {
    let prepared = async {
        let config = config::load(config_path)?;
        wiring::credential(&config, name)?;
        let notifier = Notifier::from_config(&config)?;
        Ok::<_, Error>((config, notifier))
    }
    .await;
    let (config, notifier) = match prepared {
        Ok(p) => p,
        Err(error) => return render::error(&error, None, json),
    };
    let cred = &config.credentials[name];
    let mut progress = render::RotateProgress::new(name, json);
    let result = rotate_credential(&config, cred, intent, &mut |e| progress.event(e)).await;
    if let (Some(notifier), Some(news)) = (&notifier, run::news(cred, &result)) {
        match notifier.rotation(&news, rekey_api::now()).await {
            Ok(deliveries) => render::deliveries(&deliveries, json),
            Err(e) => render::warning(&format!("could not record the notification: {e}")),
        }
    }
    match result {
        Ok(outcome) => progress.finish(&outcome),
        Err(Failure {
            error,
            rotation_id,
            step,
            published,
        }) => {
            let failure = render::RotationFailure {
                rotation_id,
                step,
                published,
            };
            render::error(&error, Some(&failure), json)
        }
    }
}

/// One credential's line in `status`.
#[derive(Serialize)]
pub struct StatusRow {
    /// Credential name.
    pub credential: String,
    /// Its app.
    pub app: String,
    /// Its store (display form).
    pub store: String,
    /// CURRENT generation.
    pub generation: Option<Generation>,
    /// CURRENT certificate fingerprint.
    pub fingerprint: Option<String>,
    /// CURRENT notAfter.
    pub not_after: Option<DateTime<Utc>>,
    /// Days until then.
    pub days_left: Option<i64>,
    /// PENDING generation, if a rotation is in flight.
    pub pending_generation: Option<Generation>,
    /// PREVIOUS generation.
    pub previous_generation: Option<Generation>,
    /// When the last rotation finished.
    pub last_rotation: Option<DateTime<Utc>>,
    /// An unfinished rotation.
    pub open_rotation: Option<RotationId>,
    /// The certificate the app holds now, read from Salesforce.
    pub app_fingerprint: Option<String>,
    /// Why the app could not be read, when it could not.
    pub app_error: Option<String>,
    /// Every store's CURRENT, primary first (the fields above are the primary's).
    pub stores: Vec<StoreStatus>,
}

/// One store's CURRENT for a credential.
#[derive(Serialize)]
pub struct StoreStatus {
    /// The store (display form).
    pub store: String,
    /// CURRENT generation.
    pub generation: Option<Generation>,
    /// CURRENT certificate fingerprint.
    pub fingerprint: Option<String>,
    /// Whether that is the certificate the app holds; `None` when the app could not be read.
    pub matches_app: Option<bool>,
}

fn selected<'c>(config: &'c Config, only: Option<&str>) -> Result<Vec<&'c CredentialConfig>> {
    match only {
        Some(name) => Ok(vec![wiring::credential(config, name)?]),
        None => Ok(config.credentials.values().collect()),
    }
}

async fn status(config_path: &Path, only: Option<&str>, json: bool) -> Result<Exit> {
    let config = config::load(config_path)?;
    let now = rekey_api::now();
    let mut rows = Vec::new();
    for cred in selected(&config, only)? {
        let in_context = |e: Error| e.context(&cred.name);
        let stores = wiring::stores(&config, cred).await.map_err(in_context)?;
        // The app is read, not assumed; if it cannot be, the row says why instead of failing.
        let app = match wiring::target(&config, cred) {
            Ok(target) => target.installed().await,
            Err(e) => Err(e),
        };
        let (app_fingerprint, app_error) = match app {
            Ok(cert) => (cert.map(|c| c.fingerprint), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let mut per_store = Vec::new();
        let mut primary = None;
        for store in &stores {
            let stages = store.stages(&cred.name).await.map_err(in_context)?;
            let fingerprint = stages.current.as_ref().map(|v| v.certificate.fingerprint);
            per_store.push(StoreStatus {
                store: store.to_string(),
                generation: stages.current.as_ref().map(|v| v.generation),
                fingerprint: fingerprint.map(|f| f.to_hex()),
                matches_app: app_error
                    .is_none()
                    .then_some(fingerprint.is_some() && fingerprint == app_fingerprint),
            });
            primary.get_or_insert(stages);
        }
        let stages = primary.unwrap_or_default();
        let journal = stores[0]
            .read_journal(&cred.name)
            .await
            .map_err(in_context)?;
        let current = stages.current.as_ref();
        rows.push(StatusRow {
            credential: cred.name.clone(),
            app: cred.app.clone(),
            store: stores[0].to_string(),
            generation: current.map(|v| v.generation),
            fingerprint: current.map(|v| v.certificate.fingerprint.to_hex()),
            not_after: current.map(|v| v.certificate.not_after),
            days_left: current.map(|v| v.certificate.days_left(now)),
            pending_generation: stages.pending.as_ref().map(|v| v.generation),
            previous_generation: stages.previous.as_ref().map(|v| v.generation),
            last_rotation: rotation::last_success(&journal),
            open_rotation: rotation::open_rotation(&journal).map(|o| o.rotation_id),
            app_fingerprint: app_fingerprint.map(|f| f.to_hex()),
            app_error,
            stores: per_store,
        });
    }
    render::status(&rows, json);
    Ok(Exit::Ok)
}

/// One credential's result in `check`.
#[derive(Serialize)]
pub struct CheckRow {
    /// Credential name.
    pub credential: String,
    /// Its app.
    pub app: String,
    /// Its org.
    pub org: String,
    /// Worst finding.
    pub severity: Severity,
    /// Days until the soonest notAfter among the sources that could be read.
    pub days_left: Option<i64>,
    /// Days since the primary store's CURRENT key was written.
    pub key_age_days: Option<i64>,
    /// Days since the last rotation finished.
    pub days_since_rotation: Option<i64>,
    /// What is wrong, worst first.
    pub findings: Vec<Finding>,
}

async fn check(
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
    for cred in selected(&config, only)? {
        let o = check::observe(&config, cred).await;
        let findings = check::evaluate(&o, now);
        observed.push((o, findings));
    }
    if let Some(path) = prometheus_textfile {
        let judged: Vec<_> = observed
            .iter()
            .map(|(o, f)| (o.clone(), check::worst(f)))
            .collect();
        check::write_textfile(path, &check::metrics(&judged))?;
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
    Ok(render::exit_for_severity(worst))
}

async fn run_once(config_path: &Path, dry_run: bool, json: bool) -> Result<Exit> {
    let config = config::load(config_path)?;
    let notifier = Notifier::from_config(&config)?;
    crate::shutdown::listen().map_err(|e| {
        Error::new(ErrorKind::Unexpected, "cannot listen for SIGTERM").with_source(e)
    })?;
    let report = run::run(&config, notifier.as_ref(), dry_run).await;
    render::deliveries(&report.deliveries, json);
    render::run(&report, json);
    Ok(report.exit)
}

/// `check`'s line for one observed credential.
pub fn check_row(o: &Observation, findings: Vec<Finding>, now: DateTime<Utc>) -> CheckRow {
    let held = || {
        o.sources
            .iter()
            .filter_map(|s| s.read.as_ref().ok().cloned().flatten())
    };
    CheckRow {
        credential: o.credential.clone(),
        app: o.app.clone(),
        org: o.org.clone(),
        severity: check::worst(&findings),
        days_left: held().map(|h| (h.not_after - now).num_days()).min(),
        key_age_days: held()
            .find_map(|h| h.created_at)
            .map(|t| (now - t).num_days()),
        days_since_rotation: o.last_success.map(|t| (now - t).num_days()),
        findings,
    }
}

/// One credential's preflight result: `None` means the check passed.
#[derive(Serialize)]
pub struct PreflightRow {
    /// Credential name.
    pub credential: String,
    /// The store, as displayed.
    pub store: String,
    /// Why the store would refuse a rotation.
    pub store_problem: Option<String>,
    /// The app, as displayed.
    pub target: String,
    /// Why the app side would refuse a rotation.
    pub target_problem: Option<String>,
}

async fn preflight(config_path: &Path, only: Option<&str>, json: bool) -> Result<Exit> {
    let config = config::load(config_path)?;
    let mut rows = Vec::new();
    let mut worst = Exit::Ok;
    for cred in selected(&config, only)? {
        let stores = wiring::stores(&config, cred)
            .await
            .map_err(|e| e.context(&cred.name))?;
        let target = wiring::target(&config, cred).map_err(|e| e.context(&cred.name))?;
        let mut problem = |result: Result<()>| {
            result.err().map(|e| {
                if worst == Exit::Ok {
                    worst = render::exit_for(e.kind());
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

/// What `import` did.
#[derive(Serialize)]
pub struct ImportReport {
    /// Credential name.
    pub credential: String,
    /// The generation it became.
    pub generation: Generation,
    /// Its certificate's fingerprint.
    pub fingerprint: String,
    /// Its notAfter.
    pub not_after: DateTime<Utc>,
}

async fn import(
    config_path: &Path,
    name: &str,
    key_path: &Path,
    cert_path: &Path,
    json: bool,
) -> Result<Exit> {
    let config = config::load(config_path)?;
    let cred = wiring::credential(&config, name)?;
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|e| {
            Error::new(ErrorKind::Config, format!("cannot read {}", path.display())).with_source(e)
        })
    };
    let key = KeyMaterial::from_pem(read(key_path)?).map_err(|e| e.context(key_path.display()))?;
    let cert =
        Certificate::from_pem(&read(cert_path)?).map_err(|e| e.context(cert_path.display()))?;
    pki::prove_pair(&key, &cert).map_err(|e| {
        e.context(format!(
            "{} and {}",
            key_path.display(),
            cert_path.display()
        ))
    })?;
    let stores = wiring::stores(&config, cred).await?;
    // The primary's lock serializes imports and rotations of this credential.
    let lock = stores[0].lock(name, "rekey import").await?;
    let mut imported = Ok(());
    for store in &stores {
        imported = import_locked(store.as_ref(), name, &key, &cert).await;
        if imported.is_err() {
            break;
        }
    }
    lock.release().await?;
    imported?;
    let generation = stores[0]
        .stages(name)
        .await?
        .current
        .map_or(Generation(1), |c| c.generation);
    let report = ImportReport {
        credential: name.to_string(),
        generation,
        fingerprint: cert.fingerprint.to_hex(),
        not_after: cert.not_after,
    };
    render::import(&report, json);
    Ok(Exit::Ok)
}

/// Stores `key` as generation 1, CURRENT, unless the credential already has that certificate.
async fn import_locked(
    store: &dyn SecretStore,
    name: &str,
    key: &KeyMaterial,
    cert: &Certificate,
) -> Result<()> {
    let stages = store.stages(name).await?;
    if let Some(current) = &stages.current {
        if current.certificate.fingerprint != cert.fingerprint {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("{store}: credential '{name}' already has CURRENT generation {}", current.generation),
            )
            .with_hint("import is for a credential's first key; use `rekey rotate` to replace a managed key"));
        }
    } else {
        let generation = Generation(1);
        let rotation_id = RotationId(format!(
            "{name}-import-{}",
            rekey_api::now().format("%Y%m%dT%H%M%SZ")
        ));
        store
            .stage(
                name,
                &NewVersion {
                    generation,
                    key,
                    certificate: cert,
                    rotation_id: &rotation_id,
                },
            )
            .await?;
        store.promote(name, generation).await?;
    }
    Ok(())
}

/// What `verify` observed.
#[derive(Serialize)]
pub struct VerifyReport {
    /// Credential name.
    pub credential: String,
    /// Which key signed.
    pub stage: Stage,
    /// Its generation.
    pub generation: Generation,
    /// Its certificate's fingerprint.
    pub fingerprint: String,
    /// Whether Salesforce issued a token.
    pub accepted: bool,
    /// Salesforce's error code when refused.
    pub error: Option<String>,
    /// Salesforce's error text when refused.
    pub error_description: Option<String>,
}

async fn verify(config_path: &Path, name: &str, stage: Stage, json: bool) -> Result<Exit> {
    let config = config::load(config_path)?;
    let cred = wiring::credential(&config, name)?;
    let stores = wiring::stores(&config, cred).await?;
    let store = &stores[0];
    let stored = store.read_key(name, stage).await?.ok_or_else(|| {
        Error::new(
            ErrorKind::NotFound,
            format!("{store}: credential '{name}' has no {stage} key"),
        )
    })?;
    let target = wiring::target(&config, cred)?;
    let probe = target.probe(&stored.key).await?;
    let mut report = VerifyReport {
        credential: name.to_string(),
        stage,
        generation: stored.info.generation,
        fingerprint: stored.info.certificate.fingerprint.to_hex(),
        accepted: false,
        error: None,
        error_description: None,
    };
    match probe {
        Probe::Accepted { .. } => report.accepted = true,
        Probe::Rejected {
            error, description, ..
        } => {
            report.error = Some(error);
            report.error_description = Some(description);
        }
    }
    render::verify(&report, json);
    Ok(if report.accepted {
        Exit::Ok
    } else {
        Exit::Refused
    })
}

async fn journal(config_path: &Path, name: &str, json: bool) -> Result<Exit> {
    let config = config::load(config_path)?;
    let cred = wiring::credential(&config, name)?;
    let entries = wiring::stores(&config, cred).await?[0]
        .read_journal(name)
        .await?;
    render::journal(&entries, json);
    Ok(Exit::Ok)
}

async fn token(
    config_path: &Path,
    name: &str,
    format: crate::cli::TokenFormat,
    use_cache: bool,
    json: bool,
) -> Result<Exit> {
    let config = config::load(config_path)?;
    let cred = wiring::credential(&config, name)?;
    let cache = match wiring::token_cache_dir() {
        Some(dir) if use_cache && !cred.token_cache.is_zero() => {
            Some(crate::token::cache_file(&dir, cred)?)
        }
        _ => None,
    };
    match crate::token::issue(&config, cred, cache.as_deref()).await {
        Ok(issued) => Ok(render::token(&issued, format)),
        // Salesforce's refusal is the answer, as for `verify`: exit 3, not an internal error.
        Err(error) if error.kind() == ErrorKind::Rejected => {
            render::error(&error, None, json);
            Ok(Exit::Refused)
        }
        Err(error) => Err(error),
    }
}

/// What `rekey emergency` rekeys.
enum Which {
    /// One credential.
    Credential(String),
    /// Every credential of an org.
    Org(String),
}

/// One credential's result in `rekey emergency`.
#[derive(Serialize)]
pub struct EmergencyRow {
    /// Credential name.
    pub credential: String,
    /// `rekeyed`, `failed` or `not started` (after an earlier failure).
    pub outcome: &'static str,
    /// The rotation, once one was started.
    pub rotation_id: Option<RotationId>,
    /// Why it failed.
    pub error: Option<String>,
    /// What to do about it.
    pub hint: Option<String>,
    /// Where its evidence bundle was written.
    pub evidence: Option<PathBuf>,
    /// Consumers that had not adopted the new key by their deadline.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unadopted: Vec<rotation::Unadopted>,
}

async fn emergency_rekey(
    config_path: &Path,
    which: &Which,
    emergency: &rotation::Emergency,
    yes: bool,
    evidence_dir: Option<PathBuf>,
    json: bool,
) -> Result<Exit> {
    let config = config::load(config_path)?;
    let creds: Vec<&CredentialConfig> = match which {
        Which::Credential(name) => vec![wiring::credential(&config, name)?],
        Which::Org(org) => {
            if !config.orgs.contains_key(org) {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "unknown org '{org}'; orgs in {}: {}",
                        config.path.display(),
                        config.orgs.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            config
                .credentials
                .values()
                .filter(|c| &c.org == org)
                .collect()
        }
    };
    if creds.is_empty() {
        return Err(Error::new(
            ErrorKind::Config,
            "no credential to rekey in that org",
        ));
    }
    if emergency.kill_switch
        && let Some(cred) = creds
            .iter()
            .find(|c| c.app_kind != config::AppKind::ExternalClientApp)
    {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "{}: {} is a Connected App, which has no OAuth kill switch",
                cred.name, cred.app
            ),
        )
        .with_hint(
            "omit --kill-switch (it applies to External Client Apps only); nothing was changed",
        ));
    }
    let notifier = Notifier::from_config(&config)?;
    for cred in &creds {
        let plan = plan_of(&config, cred, Some(emergency)).await?;
        if !json {
            render::plan(&plan, false);
        }
    }
    if !yes && !confirmed(&creds)? {
        return Err(Error::new(
            ErrorKind::Config,
            "the emergency rekey was not confirmed; nothing was changed",
        )
        .with_hint("answer yes at the prompt, or pass --yes in automation"));
    }
    let dir = evidence_dir.unwrap_or_else(|| {
        config
            .path
            .parent()
            .unwrap_or(Path::new("."))
            .join("evidence")
    });
    let mut rows = Vec::new();
    let mut exit = Exit::Ok;
    for cred in &creds {
        if exit != Exit::Ok {
            rows.push(EmergencyRow {
                credential: cred.name.clone(),
                outcome: "not started",
                rotation_id: None,
                error: None,
                hint: None,
                evidence: None,
                unadopted: Vec::new(),
            });
            continue;
        }
        let mut progress = render::RotateProgress::new(&cred.name, json);
        let result = rotate_credential(
            &config,
            cred,
            &Intent::Emergency(emergency.clone()),
            &mut |e| progress.event(e),
        )
        .await;
        let journal = match wiring::stores(&config, cred).await {
            Ok(stores) => stores[0].read_journal(&cred.name).await,
            Err(e) => Err(e),
        }
        .unwrap_or_else(|e| {
            // The bundle is still written, so the incident has the outcome and fingerprints.
            render::warning(&format!(
                "{}: the evidence bundle has no timeline: the journal could not be read: {e}",
                cred.name
            ));
            Vec::new()
        });
        let bundle = evidence::build(cred, emergency, &result, &journal, wiring::operator());
        let written = evidence::write(&dir, &bundle);
        if let (Some(notifier), Some(mut news)) = (&notifier, run::news(cred, &result)) {
            news.summary = format!("emergency rekey ({}): {}", emergency.reason, news.summary);
            match notifier.rotation(&news, rekey_api::now()).await {
                Ok(deliveries) => render::deliveries(&deliveries, json),
                Err(e) => render::warning(&format!("could not record the notification: {e}")),
            }
        }
        let (outcome, rotation_id, error, hint) = match &result {
            Ok(o) => ("rekeyed", Some(o.rotation_id.clone()), None, None),
            Err(f) => {
                exit = render::failure_exit(
                    &f.error,
                    Some(&render::RotationFailure {
                        rotation_id: f.rotation_id.clone(),
                        step: f.step,
                        published: f.published,
                    }),
                );
                (
                    "failed",
                    f.rotation_id.clone(),
                    Some(f.error.to_string()),
                    f.error.hint().map(str::to_string),
                )
            }
        };
        let evidence = match written {
            Ok(path) => Some(path),
            Err(e) => {
                render::warning(&e.to_string());
                if exit == Exit::Ok {
                    exit = Exit::Internal;
                }
                None
            }
        };
        rows.push(EmergencyRow {
            credential: cred.name.clone(),
            outcome,
            rotation_id,
            error,
            hint,
            evidence,
            unadopted: result.map(|o| o.unadopted).unwrap_or_default(),
        });
    }
    render::emergency(&rows, json);
    Ok(exit)
}

/// Asks on the terminal; anything but `yes` is a no.
fn confirmed(creds: &[&CredentialConfig]) -> Result<bool> {
    let names: Vec<&str> = creds.iter().map(|c| c.name.as_str()).collect();
    render::prompt(&format!(
        "This replaces the key and certificate of {} now, ends the integration sessions and destroys every older key. Type yes to go on: ",
        names.join(", ")
    ));
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).map_err(|e| {
        Error::new(ErrorKind::Config, "cannot read the confirmation").with_source(e)
    })?;
    Ok(answer.trim() == "yes")
}
