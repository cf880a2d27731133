//! `orgsim`: a Salesforce org emulator for rekey's tests and demo.
//!
//! It serves the JWT bearer token endpoint, the REST `deployRequest` and SOAP
//! `readMetadata`/`listMetadata` Metadata API calls for Connected Apps and External Client
//! Apps, userinfo/limits, and a test-control API under `/__orgsim/…`, all from one loopback
//! HTTP server. Behaviour follows `salesforce-api.md`; what that reference marks as inferred
//! is a [`Settings`] field. See `README.md` for the seed format.

mod certs;
mod control;
mod deploy;
mod faults;
mod rest;
mod seed;
mod server;
mod soap;
mod state;
mod token;
mod xml;

pub use faults::{CallRecord, Fault, FaultKind};
pub use seed::{
    ApprovalSeed, CertificateFormat, ConnectedAppSeed, EcaSeed, OrgSeed, PermissionSetSeed,
    ProfileSeed, PropagationMode, Seed, SeedError, Settings, UserSeed,
};

use server::{AppState, Shared};
use state::{CONNECTED_APP, MetaType, OrgState};
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Handle to a running emulator. Dropping it without [`OrgSim::shutdown`] leaves the server
/// running until the runtime ends.
#[derive(Debug)]
pub struct OrgSim {
    shared: AppState,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl OrgSim {
    /// Starts on `127.0.0.1` with an OS-assigned port, on the current tokio runtime.
    pub async fn start(seed: Seed) -> std::io::Result<OrgSim> {
        OrgSim::start_on(seed, 0).await
    }

    /// Starts on `127.0.0.1:port` (0 = OS-assigned).
    pub async fn start_on(seed: Seed, port: u16) -> std::io::Result<OrgSim> {
        let state = OrgState::from_seed(&seed)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(Shared::new(state, base_url));
        let router = server::router(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
                // A dropped sender also stops the server.
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                eprintln!("orgsim: server error: {e}");
            }
        });
        Ok(OrgSim { shared, stop, task })
    }

    /// `http://127.0.0.1:PORT`: the instance URL and an accepted `aud`.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// Current certificate (PEM) of a ConnectedApp (full name) or ECA (name).
    pub fn app_certificate_pem(&self, app: &str) -> Option<String> {
        let st = self.shared.lock();
        let text = st.app_by_name(app)?.certificate?;
        certs::Cert::parse(&text).ok().map(|c| c.pem())
    }

    /// Every certificate `app` has held, oldest first, as PEM (the fault-matrix tests check
    /// that rekey kept the private key of each).
    pub fn certificate_history(&self, app: &str) -> Vec<String> {
        let st = self.shared.lock();
        st.app_by_name(app)
            .map(|view| st.certificate_history(&view))
            .unwrap_or_default()
            .iter()
            .map(certs::Cert::pem)
            .collect()
    }

    /// Stored ConnectedApp metadata XML (without consumerSecret).
    pub fn connected_app_xml(&self, full_name: &str) -> Option<String> {
        self.component_xml(CONNECTED_APP, full_name)
    }

    /// Stored XML of an ECA component (`ExternalClientApplication`,
    /// `ExtlClntAppGlobalOauthSettings`, …) by member name, without consumerSecret.
    pub fn eca_component_xml(&self, metadata_type: &str, member: &str) -> Option<String> {
        self.component_xml(MetaType::by_name(metadata_type)?, member)
    }

    fn component_xml(&self, kind: MetaType, member: &str) -> Option<String> {
        let st = self.shared.lock();
        Some(soap::public_view(&st.component(kind, member)?.element).to_document())
    }

    /// Shifts the simulated clock (JWT `exp`, sessions, propagation window) by `secs`.
    pub fn set_clock_offset(&self, secs: i64) {
        self.shared.lock().clock_offset = secs;
    }

    /// Sets the certificate propagation window and which certificate verifies during it.
    pub fn set_propagation(&self, secs: u64, mode: PropagationMode) {
        control::set_propagation(&self.shared, secs, mode);
    }

    /// Adds a fault.
    pub fn inject_fault(&self, fault: Fault) {
        self.shared.lock().faults.push(fault);
    }

    /// Removes all faults.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// The call log (method, path, status, timestamp), oldest first.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.shared.lock().calls.clone()
    }

    /// Replaces the whole org with a new seed.
    pub fn reseed(&self, seed: &Seed) -> Result<(), SeedError> {
        control::reseed(&self.shared, seed).map_err(SeedError::Invalid)
    }

    /// Stops accepting connections and waits for in-flight requests.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}
