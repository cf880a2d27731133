//! `orgsim`: a Salesforce org emulator for rekey's tests and demo.
//!
//! It serves the JWT bearer token endpoint, the REST `deployRequest` and SOAP
//! `readMetadata`/`listMetadata` Metadata API calls for Connected Apps and External Client
//! Apps, userinfo/limits, the calls that end access (SOQL over `AuthSession`/`OauthToken`/`User`,
//! `AuthSession` delete, `/services/oauth2/revoke`, ECA OAuth-usage token delete), and a
//! test-control API under `/__orgsim/…`, all from one loopback HTTP server. Behaviour follows
//! `providers/salesforce/platform.md`; what that reference marks as inferred is a
//! [`Settings`] field. See `README.md` for the seed format.

mod certs;
mod client_credentials;
mod control;
mod credentials;
mod deploy;
mod describe;
mod faults;
mod query;
mod records;
mod refresh;
mod rest;
mod revoke;
mod seed;
mod server;
mod soap;
mod soql;
mod state;
mod token;
mod xml;

pub use control::{ConsumerInfo, GrantInfo, SessionInfo, SessionState, StagedInfo};
pub use faults::{CallRecord, Fault, FaultKind};
pub use seed::{
    ApprovalSeed, CertificateFormat, ConnectedAppSeed, EcaSeed, IpRangeSeed, LoginSeed, OrgSeed,
    PermissionSetSeed, ProfileSeed, PropagationMode, Seed, SeedError, Settings, UserSeed,
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

    /// Sets the address the following requests come from (setting `source_ip`): their
    /// `LoginHistory` rows and the sessions they open carry it.
    pub fn set_source_ip(&self, ip: std::net::IpAddr) {
        self.shared.lock().settings.source_ip = ip;
    }

    /// Sets the certificate propagation window and which certificate verifies during it.
    pub fn set_propagation(&self, secs: u64, mode: PropagationMode) {
        control::set_propagation(&self.shared, secs, mode);
    }

    /// Adds a fault.
    pub fn inject_fault(&self, fault: Fault) {
        self.shared.lock().faults.push(fault);
    }

    /// The injected faults not used up yet, oldest first (a counted fault is removed by its
    /// last use), so a test can tell that a request has taken one.
    pub fn faults(&self) -> Vec<Fault> {
        self.shared.lock().faults.clone()
    }

    /// Moves a held deploy (setting `hold_deploys`) to its next state: Pending → InProgress →
    /// finished (validated and applied then), or Canceling → Canceled. Returns the new
    /// `deployResult.status`; an error for an unknown or finished deploy, or when deploys are
    /// not held.
    pub fn step_deploy(&self, id: &str) -> Result<String, String> {
        deploy::step(&mut self.shared.lock(), id).map(str::to_string)
    }

    /// Removes all faults.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// The call log (method, path, status, timestamp), oldest first.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.shared.lock().calls.clone()
    }

    /// Every session the org has had (live, expired, deleted, revoked), oldest first.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        control::session_infos(&self.shared.lock())
    }

    /// The live sessions of `username` (case-insensitive), oldest first.
    pub fn live_sessions(&self, username: &str) -> Vec<SessionInfo> {
        self.sessions()
            .into_iter()
            .filter(|s| s.is_live() && s.username.eq_ignore_ascii_case(username))
            .collect()
    }

    /// Adds a refresh-token grant (an `OauthToken` row, and the approval a self-authorized
    /// app needs) of `app` (ConnectedApp full name or ECA name) for `username`.
    pub fn add_grant(&self, username: &str, app: &str) -> Result<GrantInfo, String> {
        let mut st = self.shared.lock();
        let grant = st.add_grant(username, app)?;
        Ok(control::grant_info(&st, &grant))
    }

    /// The grants that exist now (revoked ones are gone), oldest first.
    pub fn grants(&self) -> Vec<GrantInfo> {
        let st = self.shared.lock();
        st.grants
            .iter()
            .map(|g| control::grant_info(&st, g))
            .collect()
    }

    /// Every LoginHistory row, oldest first: (`Id`, user id, app label, status).
    pub fn login_history(&self) -> Vec<(String, String, Option<String>, String)> {
        let st = self.shared.lock();
        st.logins
            .iter()
            .map(|l| {
                (
                    l.id.clone(),
                    l.user_id.clone(),
                    l.application.clone(),
                    l.status.clone(),
                )
            })
            .collect()
    }

    /// The record id of an app: an ECA's `0xI…` id (the Connect REST `appId`, also
    /// `identifier` in `GET /apps/oauth/usage`), a ConnectedApp's `0H4…` id.
    pub fn app_id(&self, app: &str) -> Option<String> {
        let st = self.shared.lock();
        let view = st.app_by_name(app)?;
        st.app_component_id(&view.key()).map(str::to_string)
    }

    /// `GET path` on this emulator with `Authorization: Bearer token`, over HTTP like any
    /// client (the call is logged and, under `/services/data/v…`, counts as an API call).
    /// Returns status and body.
    pub async fn get_with_token(&self, path: &str, token: &str) -> (u16, String) {
        let url = format!("{}{path}", self.base_url());
        status_and_text(reqwest::Client::new().get(url).bearer_auth(token)).await
    }

    /// `GET /services/oauth2/userinfo` with this token: 200 and the user's JSON, or 403
    /// `Bad_OAuth_Token` (plain text) for a dead or unknown token.
    pub async fn userinfo(&self, token: &str) -> (u16, String) {
        self.get_with_token("/services/oauth2/userinfo", token)
            .await
    }

    /// `GET /services/data/v67.0/limits/` with this token: 200, or 401 `INVALID_SESSION_ID`
    /// for a dead or unknown token.
    pub async fn limits(&self, token: &str) -> (u16, String) {
        self.get_with_token("/services/data/v67.0/limits/", token)
            .await
    }

    /// `POST /services/oauth2/token` with a JWT bearer `assertion`: status and JSON body text.
    pub async fn jwt_grant(&self, assertion: &str) -> (u16, String) {
        let url = format!("{}{}", self.base_url(), token::TOKEN_PATH);
        let form = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion),
        ];
        status_and_text(reqwest::Client::new().post(url).form(&form)).await
    }

    /// The OAuth consumer of ECA `eca`: primary key and secret, and the staged credential with
    /// its state and expiry. `None` for an unknown ECA or one without global OAuth settings.
    pub fn eca_consumer(&self, eca: &str) -> Option<ConsumerInfo> {
        control::consumer_info(&self.shared.lock(), eca)
    }

    /// Turns the org setting "Allow access to External Client App consumer secrets via REST
    /// API" (`eca_secrets_over_rest`) on or off.
    pub fn set_eca_secrets_over_rest(&self, on: bool) {
        self.shared.lock().settings.eca_secrets_over_rest = on;
    }

    /// Grants (`true`) or takes away (`false`) a permission (`ViewClientSecret`, `ApiUserOnly`,
    /// …) of one user, over what the seed's profiles and permission sets give.
    pub fn set_user_permission(
        &self,
        username: &str,
        permission: &str,
        granted: bool,
    ) -> Result<(), String> {
        self.shared
            .lock()
            .set_user_permission(username, permission, granted)
    }

    /// `POST /services/oauth2/token` with `grant_type=client_credentials` and the pair in the
    /// form body: status and JSON body text.
    pub async fn client_credentials_grant(&self, key: &str, secret: &str) -> (u16, String) {
        let url = format!("{}{}", self.base_url(), token::TOKEN_PATH);
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", key),
            ("client_secret", secret),
        ];
        status_and_text(reqwest::Client::new().post(url).form(&form)).await
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

/// Sends a request made by a test helper: status and body text. A transport failure is status
/// 0 with the error as the body, so a test's assertion shows it instead of a panic here.
async fn status_and_text(request: reqwest::RequestBuilder) -> (u16, String) {
    match request.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
        Err(e) => (0, format!("request failed: {e}")),
    }
}
