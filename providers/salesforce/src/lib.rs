//! rekey's Salesforce targets: reads and replaces the JWT-bearer certificate of a Connected App
//! or an External Client App, probes the token endpoint with a key, and ends access after a leak
//! (sessions, OAuth grants, the External Client App kill switch); and rotates an External Client
//! App's consumer key and secret through staged credentials (`consumer_secret.rs`).
//!
//! Reads use SOAP `readMetadata` (there is no REST retrieve); writes are read-modify-write
//! deploys through REST `deployRequest` (check-only first), because a deploy replaces the whole
//! component and only the certificate may change.

mod access;
mod batch;
mod client;
mod client_credentials;
mod config;
mod consumer_secret;
pub mod governance;
mod metadata;
mod mint;
mod session;
mod token;
mod xml;

pub use batch::{BatchMember, DeployBatch};
pub use config::{AdminAuth, AppKind, SalesforceConfig};
pub use governance::{
    ClockReading, IpRelaxation, OAuthApp, OAuthAppKind, OAuthGrant, OrgConnection,
    RefreshTokenPolicy, SalesforceOrg, UserAccess,
};
pub use mint::{
    ClientCredentialsConfig, ClientCredentialsMinter, Mint, MintConfig, Minted, Minter, Refusal,
};
pub use session::{AdminSession, ApiUsage};

use async_trait::async_trait;
use client::Client;
use config::check_url;
use rekey_api::{
    Certificate, CertificateTarget, Error, ErrorKind, Installed, Probe, Result, Revoked,
    RotationId, Signer,
};
use std::fmt;
use std::time::Duration;
use token::TokenAnswer;
use tokio::sync::Mutex;
use tokio::time::Instant;
use xml::Element;

/// First wait between deploy status polls; doubles up to [`POLL_MAX`].
const POLL_START: Duration = Duration::from_millis(100);
const POLL_MAX: Duration = Duration::from_secs(2);
/// readMetadata takes at most ten names per call.
pub(crate) const READ_BATCH: usize = 10;

/// The app's metadata record as read, with where it lives.
struct AppRecord {
    type_name: &'static str,
    member: String,
    record: Element,
}

/// A Salesforce Connected App or External Client App as a [`CertificateTarget`].
#[derive(Debug)] // safe: the admin key and tokens redact themselves
pub struct SalesforceTarget {
    client: Client,
    org: String,
    app_kind: AppKind,
    app: String,
    integration_username: String,
    /// Configured, or read from the app's metadata on first probe.
    consumer_key: Mutex<Option<String>>,
    /// The ECA's Connect REST ids (app, consumer), found once (see `consumer_secret.rs`).
    consumer_ids: Mutex<Option<consumer_secret::ConsumerIds>>,
    deploy_timeout: Duration,
    /// The batch whose one deployment publishes this app's certificate, if any.
    batch: Option<BatchMember>,
}

impl SalesforceTarget {
    /// Checks the configuration (names, API version, https) without contacting Salesforce.
    pub fn new(config: SalesforceConfig) -> Result<Self> {
        config.validate()?;
        let login_url = check_url("login_url", &config.login_url)?;
        let client = Client::new(
            &config.org,
            login_url,
            &config.audience,
            &config.api_version,
            config.admin,
            config.request_timeout,
        )?;
        Ok(SalesforceTarget {
            client,
            org: config.org,
            app_kind: config.app_kind,
            app: config.app,
            integration_username: config.integration_username,
            consumer_key: Mutex::new(config.consumer_key.filter(|k| !k.trim().is_empty())),
            consumer_ids: Mutex::new(None),
            deploy_timeout: config.deploy_timeout,
            batch: None,
        })
    }

    /// This target's certificate is published in `member`'s batch: one deployment with the
    /// other members' apps.
    #[must_use]
    pub fn in_batch(mut self, member: BatchMember) -> Self {
        self.batch = Some(member);
        self
    }

    /// How messages name the app: "connected app Billing_Sync in org acme".
    fn label(&self) -> String {
        format!("{} {} in org {}", self.app_kind.label(), self.app, self.org)
    }

    /// Where the certificate sits in the record (inserted after `callbackUrl` when absent).
    fn certificate_path(&self) -> &'static [&'static str] {
        match self.app_kind {
            AppKind::ConnectedApp => &["oauthConfig", "certificate"],
            AppKind::ExternalClientApp => &["certificate"],
        }
    }

    fn consumer_key_path(&self) -> &'static [&'static str] {
        match self.app_kind {
            AppKind::ConnectedApp => &["oauthConfig", "consumerKey"],
            AppKind::ExternalClientApp => &["consumerKey"],
        }
    }

    fn consumer_secret_path(&self) -> &'static [&'static str] {
        match self.app_kind {
            AppKind::ConnectedApp => &["oauthConfig", "consumerSecret"],
            AppKind::ExternalClientApp => &["consumerSecret"],
        }
    }

    async fn read(&self, type_name: &str, members: &[String]) -> Result<Vec<Element>> {
        let what = format!(
            "reading {type_name} {} in org {}",
            members.join(","),
            self.org
        );
        self.client.read_metadata(&what, type_name, members).await
    }

    /// Reads the app's record, from what the org's session read ahead for this run when it
    /// holds it (observations), else from Salesforce.
    async fn read_app(&self) -> Result<AppRecord> {
        let shared = self.client.shared();
        match self.app_kind {
            AppKind::ConnectedApp => match shared.connected_app(&self.app) {
                Some(Some(record)) => {
                    return Ok(AppRecord {
                        type_name: metadata::CONNECTED_APP,
                        member: self.app.clone(),
                        record,
                    });
                }
                Some(None) => return Err(self.connected_app_not_found()),
                None => {}
            },
            AppKind::ExternalClientApp => {
                if let Some((member, record)) = shared.eca_global_oauth(&self.app) {
                    return Ok(AppRecord {
                        type_name: metadata::ECA_GLOBAL_OAUTH,
                        member,
                        record,
                    });
                }
            }
        }
        self.read_app_fresh().await
    }

    fn connected_app_not_found(&self) -> Error {
        Error::new(ErrorKind::NotFound, format!("{} not found", self.label()))
            .with_hint("use the app's API name (full name), not its label")
    }

    /// Reads the app's record from Salesforce: the ConnectedApp itself, or the ECA's global
    /// OAuth settings, whose member name is not predictable and is found by listing and matching
    /// `externalClientApplication`.
    async fn read_app_fresh(&self) -> Result<AppRecord> {
        match self.app_kind {
            AppKind::ConnectedApp => {
                let records = self
                    .read(metadata::CONNECTED_APP, std::slice::from_ref(&self.app))
                    .await?;
                let record = records
                    .into_iter()
                    .find(|r| r.text_at(&["fullName"]).as_deref() == Some(self.app.as_str()))
                    .ok_or_else(|| self.connected_app_not_found())?;
                Ok(AppRecord {
                    type_name: metadata::CONNECTED_APP,
                    member: self.app.clone(),
                    record,
                })
            }
            AppKind::ExternalClientApp => {
                if let Some((member, record)) =
                    self.find_satellite(metadata::ECA_GLOBAL_OAUTH).await?
                {
                    return Ok(AppRecord {
                        type_name: metadata::ECA_GLOBAL_OAUTH,
                        member,
                        record,
                    });
                }
                // Tell "no such app" apart from "app without readable global OAuth settings".
                self.eca_header().await?;
                Err(Error::new(ErrorKind::NotFound, format!("{} has no global OAuth settings", self.label())).with_hint(
                    "enable OAuth on the app, and allow access to OAuth consumer secrets via the Metadata API in the org's External Client App settings",
                ))
            }
        }
    }

    /// The ECA satellite of `type_name` whose `externalClientApplication` is this app, as
    /// (member name, record): member names are not predictable, so the type is listed and its
    /// members read in batches.
    async fn find_satellite(&self, type_name: &str) -> Result<Option<(String, Element)>> {
        let what = format!("listing {type_name} in org {}", self.org);
        let names = self.client.list_metadata(&what, type_name).await?;
        for batch in names.chunks(READ_BATCH) {
            let records = self.read(type_name, batch).await?;
            let found = records.into_iter().find(|r| {
                r.text_at(&["externalClientApplication"]).as_deref() == Some(self.app.as_str())
            });
            if let Some(record) = found {
                let member = record.text_at(&["fullName"]).unwrap_or_default();
                return Ok(Some((member, record)));
            }
        }
        Ok(None)
    }

    /// The ECA's header record (`ExternalClientApplication`); `NotFound` when there is no such
    /// app.
    async fn eca_header(&self) -> Result<Element> {
        let header = self
            .read(metadata::ECA_HEADER, std::slice::from_ref(&self.app))
            .await?;
        header.into_iter().next().ok_or_else(|| {
            Error::new(ErrorKind::NotFound, format!("{} not found", self.label()))
                .with_hint("use the app's API name, not its label")
        })
    }

    /// The certificate a record holds, if any.
    fn certificate_of(&self, app: &AppRecord) -> Result<Option<Certificate>> {
        app.record
            .text_at(self.certificate_path())
            .map(|pem| {
                Certificate::from_pem(&pem)
                    .map_err(|e| e.context(format!("certificate of {}", self.label())))
            })
            .transpose()
    }

    /// The deploy zip holding `body` as component `type_name` `member`, for this org's API
    /// version.
    fn deploy_zip(&self, type_name: &str, member: &str, body: &str) -> Result<Vec<u8>> {
        metadata::deploy_zip(type_name, member, body, self.client.api_version()).map_err(|e| {
            Error::new(
                ErrorKind::Unexpected,
                format!("cannot build the deploy zip for {}", self.label()),
            )
            .with_source(e)
        })
    }

    /// Deploys the zip holding component `type_name` `member` (check-only or for real) and waits
    /// for the result; returns the deploy id.
    async fn deploy(
        &self,
        type_name: &str,
        member: &str,
        zip: &[u8],
        check_only: bool,
    ) -> Result<String> {
        let mode = if check_only {
            "check-only deploy"
        } else {
            "deploy"
        };
        let what = format!("{mode} of {type_name} {member} in org {}", self.org);
        let (id, status) = self.deploy_status(&what, zip, check_only).await?;
        if status.status != "Succeeded" {
            return Err(Error::new(
                ErrorKind::Rejected,
                format!("{what}: deploy {id} {}: {}", status.status, status.failure_text()),
            )
            .with_hint("Salesforce rolled the deploy back whole (rollbackOnError), so the app is unchanged; fix the cause Salesforce names and run again")
            .changed_nothing());
        }
        Ok(id)
    }

    /// Sends the deploy and polls it until it ends: its id and final status, whatever that is.
    async fn deploy_status(
        &self,
        what: &str,
        zip: &[u8],
        check_only: bool,
    ) -> Result<(String, metadata::DeployStatus)> {
        let answer = self
            .client
            .deploy_request(what, &metadata::deploy_options(check_only), zip)
            .await?;
        let mut status = metadata::DeployStatus::parse(&answer).ok_or_else(|| {
            Error::new(
                ErrorKind::Unexpected,
                format!("{what}: answer has no deployResult"),
            )
        })?;
        let id = status.id.clone().ok_or_else(|| {
            Error::new(
                ErrorKind::Unexpected,
                format!("{what}: answer has no deploy id"),
            )
        })?;
        tracing::info!(org = %self.org, deploy_id = %id, check_only, "deploy started");
        let path = format!(
            "/services/data/v{}/metadata/deployRequest/{id}?includeDetails=true",
            self.client.api_version()
        );
        let deadline = Instant::now() + self.deploy_timeout;
        let mut delay = POLL_START;
        while !status.done {
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!("{what}: deploy {id} still {} after {}s", status.status, self.deploy_timeout.as_secs()),
                )
                .with_hint("it may still finish: check Setup > Deployment Status, then run again (install is idempotent)")
                .temporary());
            }
            tokio::time::sleep(delay.min(deadline - now)).await;
            delay = (delay * 2).min(POLL_MAX);
            let answer = self.client.rest_get(what, &path).await?;
            status = metadata::DeployStatus::parse(&answer).ok_or_else(|| {
                Error::new(
                    ErrorKind::Unexpected,
                    format!("{what}: status of {id} has no deployResult"),
                )
            })?;
        }
        if status.status == "Succeeded" {
            tracing::info!(org = %self.org, deploy_id = %id, check_only, "deploy succeeded");
        }
        Ok((id, status))
    }

    /// Refuses rekey's own admin app: rotating `what` of the app rekey logs in through would cut
    /// rekey off at the switchover, with the rotation half done and no admin session left to
    /// finish it.
    fn refuse_admin_app(&self, app: &AppRecord, what: &str) -> Result<()> {
        let app_key = app.record.text_at(self.consumer_key_path());
        if let Some(admin_key) = self.client.admin_consumer_key()
            && app_key.as_deref() == Some(admin_key)
        {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "{} is rekey's own admin app (consumer key {admin_key}); rekey will not rotate {what}",
                    self.label()
                ),
            )
            .with_hint("rotate it through a second admin app, or with auth = \"access_token_env\" for this org"));
        }
        Ok(())
    }

    /// The integration app's consumer key: configured, or read once from its metadata (through
    /// the admin connection).
    pub async fn consumer_key(&self) -> Result<String> {
        let mut cached = self.consumer_key.lock().await;
        if let Some(k) = cached.as_ref() {
            return Ok(k.clone());
        }
        let app = self.read_app().await?;
        let key = app
            .record
            .text_at(self.consumer_key_path())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Config,
                    format!("{} has no consumer key in its metadata", self.label()),
                )
                .with_hint("set the integration app's consumer_key in the configuration")
            })?;
        *cached = Some(key.clone());
        Ok(key)
    }
}

impl SalesforceTarget {
    /// [`CertificateTarget::install`], alone or in this target's batch.
    async fn install_now(
        &self,
        certificate: &Certificate,
        rotation_id: &RotationId,
    ) -> Result<Installed> {
        // Until the real deploy request is sent, nothing on the app changes. Read fresh: the
        // deploy replaces the whole record.
        let mut app = self
            .read_app_fresh()
            .await
            .map_err(Error::changed_nothing)?;
        // An unreadable current certificate is no reason to refuse replacing it.
        let current = self.certificate_of(&app).unwrap_or_else(|e| {
            tracing::warn!(target_app = %self, error = %e, "current certificate unreadable; replacing it");
            None
        });
        if current
            .as_ref()
            .is_some_and(|c| c.fingerprint == certificate.fingerprint)
        {
            tracing::info!(target_app = %self, %rotation_id, fingerprint = %certificate.fingerprint, "certificate already installed");
            return Ok(Installed::AlreadyPresent);
        }
        if !app.record.set_text(
            self.certificate_path(),
            "callbackUrl",
            certificate.pem().trim_end(),
        ) {
            return Err(Error::new(
                ErrorKind::Config,
                format!("{} has no OAuth settings (oauthConfig)", self.label()),
            )
            .with_hint("enable OAuth settings on the app before rotating its certificate"));
        }
        // Reads never return a secret; never send one even if some future read does.
        app.record.remove(self.consumer_secret_path());
        let body = xml::to_deploy_file(&app.record, app.type_name);
        tracing::info!(
            target_app = %self, %rotation_id,
            old = ?current.as_ref().map(|c| c.fingerprint), new = %certificate.fingerprint,
            "deploying certificate"
        );
        let deploy_id = match &self.batch {
            // The batch deploys it with the other members' components (check-only first).
            Some(member) => {
                let component = batch::Component {
                    type_name: app.type_name,
                    member: app.member.clone(),
                    body,
                };
                member.submit(component, self).await?
            }
            None => {
                let zip = self.deploy_zip(app.type_name, &app.member, &body)?;
                // A check-only deploy changes nothing, however it fails.
                self.deploy(app.type_name, &app.member, &zip, true)
                    .await
                    .map_err(Error::changed_nothing)?;
                self.deploy(app.type_name, &app.member, &zip, false).await?
            }
        };
        let now = self.certificate_of(&self.read_app_fresh().await?)?;
        if now.as_ref().map(|c| c.fingerprint) != Some(certificate.fingerprint) {
            return Err(Error::new(
                ErrorKind::Unexpected,
                format!(
                    "{}: deploy {deploy_id} succeeded but the app holds {} instead of {}",
                    self.label(),
                    now.map_or_else(
                        || "no certificate".to_string(),
                        |c| c.fingerprint.to_string()
                    ),
                    certificate.fingerprint
                ),
            )
            .with_hint("someone else may be changing the app; check its certificate in Setup"));
        }
        Ok(Installed::Deployed { deploy_id })
    }
}

impl fmt::Display for SalesforceTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "salesforce({}/{})", self.org, self.app)
    }
}

#[async_trait]
impl CertificateTarget for SalesforceTarget {
    async fn preflight(&self) -> Result<()> {
        let app = self.read_app().await?;
        self.refuse_admin_app(&app, "the certificate it logs in with")
    }

    async fn installed(&self) -> Result<Option<Certificate>> {
        let app = self.read_app().await?;
        self.certificate_of(&app)
    }

    async fn install(
        &self,
        certificate: &Certificate,
        rotation_id: &RotationId,
    ) -> Result<Installed> {
        let result = self.install_now(certificate, rotation_id).await;
        // Whatever came of it, this member hands in nothing more: the batch waits no longer.
        if let Some(member) = &self.batch {
            member.leave();
        }
        result
    }

    async fn probe(&self, signer: Signer<'_>) -> Result<Probe> {
        let consumer_key = self.consumer_key().await?;
        let answer = self
            .client
            .token_endpoint()
            .request(
                &consumer_key,
                &self.integration_username,
                signer,
                "key being probed",
            )
            .await?;
        Ok(match answer {
            // The access token is dropped (and zeroed) here: a probe never keeps it.
            TokenAnswer::Granted { instance_url, .. } => Probe::Accepted { instance_url },
            TokenAnswer::Refused(refusal) => Probe::Rejected {
                may_clear: refusal.untrusted_key(),
                error: refusal.error,
                description: refusal.description,
            },
        })
    }

    async fn oauth_enabled(&self) -> Result<Option<bool>> {
        self.read_oauth_enabled().await
    }

    async fn set_oauth_enabled(&self, enabled: bool, rotation_id: &RotationId) -> Result<()> {
        self.write_oauth_enabled(enabled, rotation_id).await
    }

    async fn revoke_access(&self) -> Result<Revoked> {
        self.revoke_everything().await
    }
}
