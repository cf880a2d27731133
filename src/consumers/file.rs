//! A `file` consumer gets the key (0600) and certificate (0644) PEMs written atomically, for
//! consumers that cannot read a store; its adoption is the files holding the new certificate and a
//! key that belongs to it.

use super::{Adoption, Announcement, Consumer, Identity, Notice, expect_stage, file_error, parent};
use crate::pki;
use async_trait::async_trait;
use rekey_api::{Certificate, Error, ErrorKind, KeyMaterial, Result};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

/// Files that receive each generation.
#[derive(Debug)]
pub(super) struct FileConsumer {
    id: Identity,
    key_path: PathBuf,
    /// `None` for a consumer secret, which has no certificate.
    cert_path: Option<PathBuf>,
}

impl FileConsumer {
    /// A consumer whose key goes to `key_path` and certificate to `cert_path`.
    pub(super) fn new(id: Identity, key_path: &Path, cert_path: Option<&Path>) -> FileConsumer {
        FileConsumer {
            id,
            key_path: key_path.to_path_buf(),
            cert_path: cert_path.map(Path::to_path_buf),
        }
    }

    /// The folders exist and this user may create files in them; nothing is written.
    fn check_writable(&self) -> Result<String> {
        let mut dirs: Vec<&Path> = Vec::new();
        for path in std::iter::once(self.key_path.as_path()).chain(self.cert_path.as_deref()) {
            let dir = parent(path);
            let label = self.label();
            let metadata = std::fs::metadata(dir).map_err(|e| {
                Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "{label}: cannot use the folder {} of {}",
                        dir.display(),
                        path.display()
                    ),
                )
                .with_source(e)
                .with_hint("create the folder (rekey writes the files, never folders)")
            })?;
            if !metadata.is_dir() {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("{label}: {} is not a folder", dir.display()),
                ));
            }
            rustix::fs::accessat(
                rustix::fs::CWD,
                dir,
                rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
                rustix::fs::AtFlags::EACCESS,
            )
            .map_err(|e| {
                Error::new(
                    ErrorKind::PermissionDenied,
                    format!("{label}: cannot create files in {}", dir.display()),
                )
                .with_source(std::io::Error::from(e))
                .with_hint("let the user rekey runs as write to the folder")
            })?;
            if std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("{label}: {} is a folder, not a file", path.display()),
                ));
            }
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        Ok(format!("can write {}", dirs.join(" and ")))
    }

    /// Key first, certificate last: the certificate marks a complete write (adoption reads it).
    fn write_files(&self, p: &Announcement<'_>) -> Result<String> {
        let key_path = self.key_path.as_path();
        let label = self.label();
        let material = p.material.ok_or_else(|| {
            Error::new(
                ErrorKind::Unexpected,
                format!("{label}: activate was announced without the key"),
            )
            .with_hint("this is a rekey bug; please report it")
        })?;
        let what = |wrote: bool| if wrote { "wrote" } else { "unchanged" };
        let handed = super::handover(material)?;
        let wrote_key = write_if_changed(key_path, handed.as_bytes(), 0o600, true)
            .map_err(|e| file_error(&label, key_path, e))?;
        let Some(certificate_pem) = p.certificate_pem else {
            // A consumer secret: the one file holds the consumer key and secret as JSON.
            return Ok(format!(
                "consumer key and secret {} ({}, 0600): generation {} ({})",
                key_path.display(),
                what(wrote_key),
                p.generation,
                p.new_fingerprint
            ));
        };
        let cert_path = self.cert_path.as_deref().ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!("{label}: a certificate was announced but no cert_path is configured"),
            )
        })?;
        let wrote_cert = write_if_changed(cert_path, certificate_pem.as_bytes(), 0o644, false)
            .map_err(|e| file_error(&label, cert_path, e))?;
        Ok(format!(
            "key {} ({}, 0600), certificate {} ({}, 0644): generation {} ({})",
            key_path.display(),
            what(wrote_key),
            cert_path.display(),
            what(wrote_cert),
            p.generation,
            p.new_fingerprint
        ))
    }
}

#[async_trait]
impl Consumer for FileConsumer {
    fn identity(&self) -> &Identity {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "file"
    }

    /// The folders exist and are writable; nothing is written before the switchover.
    async fn prepare(&self, p: &Announcement<'_>) -> Result<String> {
        expect_stage(&self.label(), Notice::Prepare, p)?;
        self.check_writable()
    }

    async fn activate(&self, p: &Announcement<'_>) -> Result<String> {
        expect_stage(&self.label(), Notice::Activate, p)?;
        self.write_files(p)
    }

    async fn adopted(&self, p: &Announcement<'_>) -> Result<Adoption> {
        Ok(file_adoption(&self.key_path, self.cert_path.as_deref(), p))
    }
}

/// Writes `bytes` atomically with exactly `mode` unless the file already holds them with that
/// mode; whether it wrote. A secret file is read back into a buffer zeroed on drop.
fn write_if_changed(path: &Path, bytes: &[u8], mode: u32, secret: bool) -> std::io::Result<bool> {
    let same_mode = std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o7777 == mode);
    let same_bytes = same_mode
        && if secret {
            std::fs::read_to_string(path)
                .ok()
                .map(zeroize::Zeroizing::new)
                .is_some_and(|held| held.as_bytes() == bytes)
        } else {
            std::fs::read(path).is_ok_and(|held| held == bytes)
        };
    if same_bytes {
        return Ok(false);
    }
    rekey_api::write_atomic(path, bytes, mode)?;
    // The umask may have narrowed the mode; a consumer expects exactly this one.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(true)
}

/// A consumer secret's file holds the announced pair (compared by fingerprint).
fn consumer_secret_adoption(key_path: &Path, p: &Announcement<'_>) -> Adoption {
    let held = std::fs::read_to_string(key_path)
        .map(zeroize::Zeroizing::new)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|doc| {
            let field = |name: &str| {
                doc.get(name)
                    .and_then(|v| v.as_str())
                    .map(ToString::to_string)
            };
            rekey_api::ConsumerSecret::new(field("consumer_key")?, field("consumer_secret")?).ok()
        });
    match held {
        Some(pair) if pair.fingerprint() == p.new_fingerprint => Adoption::Adopted {
            detail: format!(
                "{} holds consumer key {} (generation {})",
                key_path.display(),
                pair.key(),
                p.generation
            ),
        },
        Some(pair) => Adoption::Waiting {
            detail: format!(
                "{} holds consumer key {} ({}), not generation {} ({})",
                key_path.display(),
                pair.key(),
                pair.fingerprint(),
                p.generation,
                p.new_fingerprint
            ),
        },
        None => Adoption::Waiting {
            detail: format!(
                "{} holds no readable consumer key and secret",
                key_path.display()
            ),
        },
    }
}

/// The files hold the announced certificate and a key that belongs to it.
fn file_adoption(key_path: &Path, cert_path: Option<&Path>, p: &Announcement<'_>) -> Adoption {
    let waiting = |detail: String| Adoption::Waiting { detail };
    let (Some(cert_path), Some(_)) = (cert_path, p.certificate_pem) else {
        return consumer_secret_adoption(key_path, p);
    };
    let cert = match std::fs::read_to_string(cert_path) {
        Ok(text) => match Certificate::from_pem(&text) {
            Ok(cert) => cert,
            Err(_) => {
                return waiting(format!(
                    "{} holds no readable certificate",
                    cert_path.display()
                ));
            }
        },
        Err(e) => return waiting(format!("cannot read {}: {e}", cert_path.display())),
    };
    if cert.fingerprint != p.new_fingerprint {
        return waiting(format!(
            "{} holds {}, not {} (generation {})",
            cert_path.display(),
            cert.fingerprint,
            p.new_fingerprint,
            p.generation
        ));
    }
    let key = match std::fs::read_to_string(key_path) {
        Ok(text) => match KeyMaterial::from_pem(text) {
            Ok(key) => key,
            Err(_) => return waiting(format!("{} holds no readable key", key_path.display())),
        },
        Err(e) => return waiting(format!("cannot read {}: {e}", key_path.display())),
    };
    if pki::prove_pair(&key, &cert).is_err() {
        return waiting(format!(
            "the key in {} does not belong to the certificate in {}",
            key_path.display(),
            cert_path.display()
        ));
    }
    Adoption::Adopted {
        detail: format!(
            "{} holds {} (generation {}) and {} its key",
            cert_path.display(),
            p.new_fingerprint,
            p.generation,
            key_path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumers::testing::*;
    use rekey_api::Stage;
    use std::os::unix::fs::MetadataExt as _;

    #[tokio::test]
    async fn a_file_consumer_gets_both_pems_atomically_with_their_modes_and_only_once() {
        let dir = tempfile::tempdir().unwrap();
        let consumer = one(
            dir.path(),
            "name = \"legacy\"\nkind = \"file\"\nkey_path = \"legacy/key.pem\"\ncert_path = \"legacy/cert.pem\"\n",
        );
        let folder = dir.path().join("legacy");
        let listing = || {
            let mut names: Vec<String> = std::fs::read_dir(&folder)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        let err = consumer
            .prepare(&announce(Stage::Pending))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        std::fs::create_dir(&folder).unwrap();
        assert_eq!(
            consumer.prepare(&announce(Stage::Pending)).await.unwrap(),
            format!("can write {}", folder.display())
        );
        assert!(listing().is_empty(), "prepare writes nothing");
        let p = announce(Stage::Current);
        assert!(!consumer.adopted(&p).await.unwrap().is_adopted());

        let detail = consumer.activate(&p).await.unwrap();
        assert!(
            detail.contains("(wrote, 0600)") && detail.contains("(wrote, 0644)"),
            "{detail}"
        );
        assert_no_key(&detail);
        let (key, cert, _, _) = pairs();
        let (key_path, cert_path) = (folder.join("key.pem"), folder.join("cert.pem"));
        assert_eq!(
            Some(read(key_path.clone()).as_str()),
            crate::consumers::secret_text(key)
        );
        assert_eq!(read(cert_path.clone()), cert.pem());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&key_path), mode(&cert_path)), (0o600, 0o644));
        assert_eq!(
            listing(),
            ["cert.pem", "key.pem"],
            "no temporary file is left"
        );
        assert!(consumer.adopted(&p).await.unwrap().is_adopted());

        // Again: nothing is rewritten.
        let inode = |p: &Path| std::fs::metadata(p).unwrap().ino();
        let before = (inode(&key_path), inode(&cert_path));
        let detail = consumer.activate(&p).await.unwrap();
        assert!(
            detail.contains("(unchanged, 0600)") && detail.contains("(unchanged, 0644)"),
            "{detail}"
        );
        assert_eq!((inode(&key_path), inode(&cert_path)), before);

        // Reverting writes the previous generation by rename (new inodes), and the new one is
        // then no longer adopted.
        let old = revert();
        consumer.activate(&old).await.unwrap();
        assert_ne!(inode(&key_path), before.0);
        assert_eq!(read(cert_path.clone()), pairs().3.pem());
        assert!(consumer.adopted(&old).await.unwrap().is_adopted());
        let waiting = consumer.adopted(&p).await.unwrap();
        assert!(!waiting.is_adopted(), "{waiting:?}");

        // A certificate without its key is not an adoption.
        std::fs::write(&cert_path, cert.pem()).unwrap();
        let mismatch = consumer.adopted(&p).await.unwrap();
        assert!(
            mismatch.detail().contains("does not belong"),
            "{mismatch:?}"
        );
        assert_eq!(listing(), ["cert.pem", "key.pem"]);
    }
}
