//! Keys and certificates outside a rotation: `inspect`, `generate`, `import`, `verify`.

use crate::cli::render;
use crate::cli::reports::{ImportReport, InspectReport, Inspected, VerifyReport};
use crate::config;
use crate::exit::Exit;
use crate::{pki, rotation, wiring};
use rekey_api::{
    Certificate, Error, ErrorKind, Generation, KeyMaterial, Material, NewVersion, Probe, Public,
    Result, RotationId, SecretStore, Stage,
};
use std::path::{Path, PathBuf};

pub(super) fn inspect(files: &[PathBuf], json: bool) -> Result<Exit> {
    let now = rekey_api::now();
    let mut report = InspectReport {
        files: Vec::new(),
        key_matches_certificate: None,
    };
    let (mut keys, mut certs) = (Vec::new(), Vec::new());
    for path in files {
        let text = pki::read_pem(path, pki::PemFile::Either)?;
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
            report.files.push(described(path.clone(), &cert, now));
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

/// What `inspect` shows of a certificate, found at `path`.
fn described(path: PathBuf, cert: &Certificate, now: chrono::DateTime<chrono::Utc>) -> Inspected {
    Inspected::Certificate {
        path,
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
    }
}

/// What `cred`'s primary store holds at `stage`; `NotFound` naming the store and the stage when
/// nothing does.
async fn primary_stage(
    config: &config::Config,
    cred: &config::CredentialConfig,
    stage: Stage,
) -> Result<rekey_api::StoredVersion> {
    let stores = wiring::stores(config, cred).await?;
    let store = &stores[0];
    let name = &cred.name;
    store.read_stage(name, stage).await?.ok_or_else(|| {
        Error::new(
            ErrorKind::NotFound,
            format!("{store}: credential '{name}' has no {stage} key"),
        )
        .with_hint(format!(
            "`rekey status {name}` shows which stages hold a key"
        ))
    })
}

/// `rekey inspect --credential`: the stage's certificate in the primary store and its key, as
/// `inspect` describes files; a key in custody as its service describes it, and proven to belong
/// to the certificate by a signature the service makes.
pub(super) async fn inspect_credential(
    config_path: &Path,
    name: &str,
    stage: Stage,
    json: bool,
) -> Result<Exit> {
    let config = config::load(config_path)?;
    let cred = wiring::credential(&config, name)?;
    let stored = primary_stage(&config, cred, stage).await?;
    let Some(cert) = stored.info.public.certificate() else {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "credential '{name}' is a consumer secret: it has no key or certificate to inspect"
            ),
        )
        .with_hint(format!("`rekey status {name}` shows its consumer key")));
    };
    let label = PathBuf::from(format!(
        "{name} {stage} (generation {})",
        stored.info.generation
    ));
    let now = rekey_api::now();
    let mut report = InspectReport {
        files: vec![described(label.clone(), cert, now)],
        key_matches_certificate: None,
    };
    match &stored.material {
        Material::Custody(key) => {
            let state = key.custody()?.describe(key.handle()).await?;
            report
                .files
                .push(Inspected::KeyInCustody { path: label, state });
            report.key_matches_certificate = Some(pki::prove_in_custody(key, cert).await.is_ok());
        }
        material => {
            let key = material.key()?;
            let facts = pki::key_facts(key)?;
            report
                .files
                .push(Inspected::PrivateKey { path: label, facts });
            report.key_matches_certificate = Some(pki::prove_pair(key, cert).is_ok());
        }
    }
    render::inspect(&report, json);
    Ok(match report.key_matches_certificate {
        Some(false) => Exit::BadInput,
        _ => Exit::Ok,
    })
}

/// `rekey generate`: a pair written to two files, then described exactly as `inspect` would.
pub(super) fn generate(
    key_out: &Path,
    cert_out: &Path,
    cn: &str,
    days: u32,
    algorithm: pki::KeyAlgorithm,
    force: bool,
    json: bool,
) -> Result<Exit> {
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
        rekey_api::write_atomic(path, bytes, mode).map_err(|e| {
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

/// `rekey import`: a key and certificate the app holds already become CURRENT. Refused, with
/// nothing changed, unless the app holds exactly that certificate (read from Salesforce): a key
/// the app does not trust would be handed to every consumer as CURRENT. Warns (stderr, and in the
/// JSON report) about a certificate that has expired or expires within `warn_days`, and about a
/// key file others can read.
pub(super) async fn import(
    config_path: &Path,
    name: &str,
    key_path: &Path,
    cert_path: &Path,
    json: bool,
) -> Result<Exit> {
    let config = config::load(config_path)?;
    let cred = wiring::credential(&config, name)?;
    if cred.kind == rekey_api::CredentialKind::ConsumerSecret {
        return Err(Error::new(
            ErrorKind::Config,
            format!("{name} is a consumer secret credential: it has no key or certificate"),
        )
        .with_hint(format!(
            "rekey import {name} (reads the app's pair from Salesforce), or --secret-file FILE / --secret-stdin"
        )));
    }
    if let Some(service) = config.stores[&cred.stores[0]].custody() {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "{name} keeps its keys in custody (store '{}', kind = \"{service}\"): a private key that exists outside the service cannot be put there; nothing was imported",
                cred.stores[0]
            ),
        )
        .with_hint(format!(
            "rotate instead: `rekey rotate {name}` has the service make a key that never leaves it and publishes its certificate; the current key keeps working until then"
        )));
    }
    let key = KeyMaterial::from_pem(pki::read_pem(key_path, pki::PemFile::Key)?)
        .map_err(|e| e.context(key_path.display()))?;
    let cert = Certificate::from_pem(&pki::read_pem(cert_path, pki::PemFile::Certificate)?)
        .map_err(|e| e.context(cert_path.display()))?;
    pki::prove_pair(&key, &cert).map_err(|e| {
        e.context(format!(
            "{} and {}",
            key_path.display(),
            cert_path.display()
        ))
    })?;
    let warnings = import_warnings(cred, key_path, cert_path, &cert);
    // Before anything is written (the lock included): the app must hold this very certificate.
    let target = wiring::target(&config, cred)?;
    let on_app = match target.installed().await {
        Ok(on_app) => on_app,
        Err(e) => {
            warnings.iter().for_each(|w| render::warning(w));
            return Err(e.context(format!("{name}: reading the certificate the app holds")));
        }
    };
    if on_app.as_ref().map(|c| c.fingerprint) != Some(cert.fingerprint) {
        warnings.iter().for_each(|w| render::warning(w));
        let held = match &on_app {
            Some(c) => format!("holds certificate {}", c.fingerprint),
            None => "holds no certificate".to_string(),
        };
        return Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "{name}: {target} {held}, not {} ({}); nothing was imported",
                cert.fingerprint,
                cert_path.display()
            ),
        )
        .with_hint(match on_app {
            Some(_) => format!(
                "import the key and certificate the app holds (`rekey inspect FILE` shows a certificate's fingerprint); to put a new key on the app, import the one it holds and run `rekey rotate {name}`"
            ),
            None => format!(
                "an app without a certificate needs no import: `rekey rotate {name}` generates a key and uploads its certificate"
            ),
        }));
    }
    let stores = wiring::stores(&config, cred).await?;
    let (material, public) = (Material::Key(key), Public::Certificate(cert.clone()));
    let generation = import_into(&stores, name, &material, &public).await?;
    let report = ImportReport {
        credential: name.to_string(),
        generation,
        fingerprint: cert.fingerprint.to_hex(),
        not_after: Some(cert.not_after),
        consumer_key: None,
        warnings,
    };
    render::import(&report, json);
    Ok(Exit::Ok)
}

/// What an import should tell the operator about its input: a certificate that has expired or
/// expires within the credential's `warn_days`, a key file others can read.
fn import_warnings(
    cred: &config::CredentialConfig,
    key_path: &Path,
    cert_path: &Path,
    cert: &Certificate,
) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut warnings = Vec::new();
    let now = rekey_api::now();
    let days_left = cert.days_left(now);
    let until = cert.not_after.format("%Y-%m-%d");
    let name = &cred.name;
    if cert.not_after <= now {
        warnings.push(format!(
            "{} expired on {until} ({} days ago): rotate right away (`rekey rotate {name}`), before a consumer or Salesforce refuses it",
            cert_path.display(),
            -days_left
        ));
    } else if days_left <= cred.policy.warn_days {
        warnings.push(format!(
            "{} expires on {until}, in {days_left} days (warn_days = {}): rotate soon (`rekey rotate {name}`)",
            cert_path.display(),
            cred.policy.warn_days
        ));
    }
    if let Ok(meta) = std::fs::metadata(key_path) {
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            warnings.push(format!(
                "{} is mode {mode:04o}: other users of this machine can {} the private key; the store's copy is 0600, so remove this file (or `chmod 600` it), and if someone may have read it, treat the key as leaked (`rekey emergency {name}`)",
                key_path.display(),
                if mode & 0o044 != 0 { "read" } else { "change" }
            ));
        }
    }
    warnings
}

/// Stores `material` as generation 1, CURRENT, in every store of `name` under the primary's
/// lease (which serializes imports and rotations of the credential); the generation CURRENT is
/// then.
pub(super) async fn import_into(
    stores: &[Box<dyn SecretStore>],
    name: &str,
    material: &Material,
    public: &Public,
) -> Result<Generation> {
    let holder = format!(
        "rekey import on {} (pid {})",
        crate::rotation::hostname(),
        std::process::id()
    );
    let lock = stores[0].lock(name, &holder).await?;
    let mut imported = Ok(());
    for store in stores {
        imported = import_locked(store.as_ref(), name, material, public).await;
        if imported.is_err() {
            break;
        }
    }
    lock.release().await?;
    imported?;
    Ok(stores[0]
        .stages(name)
        .await?
        .current
        .map_or(Generation(1), |c| c.generation))
}

/// Stores `key` as generation 1, CURRENT, unless the credential already has that certificate.
async fn import_locked(
    store: &dyn SecretStore,
    name: &str,
    material: &Material,
    public: &Public,
) -> Result<()> {
    let stages = store.stages(name).await?;
    if let Some(current) = &stages.current {
        if current.public.fingerprint() != public.fingerprint() {
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
                    material,
                    public,
                    rotation_id: &rotation_id,
                },
            )
            .await?;
        store.promote(name, generation).await?;
    }
    Ok(())
}

pub(super) async fn verify(
    config_path: &Path,
    name: &str,
    stage: Stage,
    json: bool,
) -> Result<Exit> {
    let config = config::load(config_path)?;
    let cred = wiring::credential(&config, name)?;
    let stored = primary_stage(&config, cred, stage).await?;
    let target = wiring::salesforce_target(&config, cred)?;
    let probe = rotation::target_of(cred, &target)
        .probe(&stored.material)
        .await?;
    let mut report = VerifyReport {
        credential: name.to_string(),
        stage,
        generation: stored.info.generation,
        fingerprint: stored.info.public.fingerprint().to_hex(),
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
