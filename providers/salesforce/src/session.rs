//! One org's admin session, shared by every target and org reader of that org in a process: the
//! cached login (so N credentials cost one login, and a daemon keeps it across cycles until
//! Salesforce refuses it), the org's API usage as the last `Sforce-Limit-Info` header said, and
//! the app records read ahead in batches for the observations of a run.

use crate::client::Session;
use crate::config::AdminAuth;
use crate::xml::Element;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use tokio::sync::Mutex;

/// The org's API usage over the rolling 24 hours, as Salesforce reports it in the
/// `Sforce-Limit-Info: api-usage=USED/MAX` header of every REST answer (or the `limits`
/// resource's `DailyApiRequests`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiUsage {
    /// Requests made.
    pub used: u64,
    /// The org's daily allocation.
    pub max: u64,
}

impl ApiUsage {
    /// Reads a `Sforce-Limit-Info` value (`api-usage=25/15000`, possibly among other
    /// comma-separated `name=value` items, e.g. `per-app-api-usage=…`); `None` without a
    /// readable `api-usage`.
    pub fn parse(header: &str) -> Option<ApiUsage> {
        header.split(',').find_map(|item| {
            let (name, value) = item.split_once('=')?;
            if name.trim() != "api-usage" {
                return None;
            }
            let (used, max) = value.trim().split_once('/')?;
            Some(ApiUsage {
                used: used.trim().parse().ok()?,
                max: max.trim().parse().ok()?,
            })
        })
    }

    /// The share of the allocation used (1.0 when the allocation is zero).
    pub fn ratio(&self) -> f64 {
        if self.max == 0 {
            1.0
        } else {
            self.used as f64 / self.max as f64
        }
    }
}

impl fmt::Display for ApiUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} API requests ({:.0} %)",
            self.used,
            self.max,
            self.ratio() * 100.0
        )
    }
}

/// App records read ahead: taken by the observation reads, dropped whole by any write to the org
/// (a rotation's read-modify-write never reads from here).
#[derive(Default)]
struct Prefetched {
    /// Connected Apps by full name; `None`: read, and the org has no such app.
    connected_apps: HashMap<String, Option<Element>>,
    /// ECA global OAuth settings by the app they belong to (member name, record), when the type
    /// was listed and read whole.
    eca_global_oauth: Option<HashMap<String, (String, Element)>>,
}

struct Shared {
    admin: AdminAuth,
    session: Mutex<Option<Arc<Session>>>,
    usage: StdMutex<Option<(ApiUsage, std::time::Instant)>>,
    prefetched: StdMutex<Prefetched>,
    logins: AtomicU64,
    /// HTTP clients by request timeout.
    clients: StdMutex<HashMap<std::time::Duration, reqwest::Client>>,
    /// A temporary login failure (after its retries), and when it happened.
    refused: StdMutex<Option<(std::time::Instant, String, Option<String>)>>,
}

/// How long a login that failed for now (throttled, unavailable) is not tried again.
const REFUSAL_MEMORY: std::time::Duration = std::time::Duration::from_secs(60);

/// rekey's admin connection to one org and its cached session, cheap to clone and shared by
/// every [`crate::SalesforceTarget`] and [`crate::SalesforceOrg`] built with it.
#[derive(Clone)]
pub struct AdminSession(Arc<Shared>);

impl fmt::Debug for AdminSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The admin auth redacts its key and token; the session itself is left out.
        f.debug_struct("AdminSession")
            .field("admin", &self.0.admin)
            .finish_non_exhaustive()
    }
}

impl From<AdminAuth> for AdminSession {
    fn from(admin: AdminAuth) -> Self {
        AdminSession::new(admin)
    }
}

impl AdminSession {
    /// A session not logged in yet.
    pub fn new(admin: AdminAuth) -> Self {
        AdminSession(Arc::new(Shared {
            admin,
            session: Mutex::new(None),
            usage: StdMutex::new(None),
            prefetched: StdMutex::new(Prefetched::default()),
            logins: AtomicU64::new(0),
            clients: StdMutex::new(HashMap::new()),
            refused: StdMutex::new(None),
        }))
    }

    /// How rekey logs in.
    pub fn admin(&self) -> &AdminAuth {
        &self.0.admin
    }

    /// The org's API usage as last reported by Salesforce in this process, if any answer
    /// carried it yet.
    pub fn usage(&self) -> Option<ApiUsage> {
        lock(&self.0.usage).map(|(usage, _)| usage)
    }

    /// [`AdminSession::usage`], when reported less than `max_age` ago.
    pub fn usage_within(&self, max_age: std::time::Duration) -> Option<ApiUsage> {
        lock(&self.0.usage).and_then(|(usage, at)| (at.elapsed() < max_age).then_some(usage))
    }

    /// How many admin logins this session made (a new one only when Salesforce refused the
    /// last).
    pub fn logins(&self) -> u64 {
        self.0.logins.load(Ordering::Relaxed)
    }

    /// The org's HTTP client for `timeout`, built by `build` the first time.
    pub(crate) fn http_client(
        &self,
        timeout: std::time::Duration,
        build: impl FnOnce() -> rekey_api::Result<reqwest::Client>,
    ) -> rekey_api::Result<reqwest::Client> {
        let mut clients = lock(&self.0.clients);
        if let Some(c) = clients.get(&timeout) {
            return Ok(c.clone());
        }
        let c = build()?;
        clients.insert(timeout, c.clone());
        Ok(c)
    }

    pub(crate) fn note_usage(&self, usage: ApiUsage) {
        *lock(&self.0.usage) = Some((usage, std::time::Instant::now()));
    }

    pub(crate) fn note_login(&self) {
        self.0.logins.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn note_refusal(&self, e: &rekey_api::Error) {
        *lock(&self.0.refused) = Some((
            std::time::Instant::now(),
            e.message().to_string(),
            e.hint().map(str::to_string),
        ));
    }

    /// The temporary login failure of the last minute, as an error to return again.
    pub(crate) fn recent_refusal(&self) -> Option<rekey_api::Error> {
        let guard = lock(&self.0.refused);
        let (at, message, hint) = guard.as_ref()?;
        (at.elapsed() < REFUSAL_MEMORY).then(|| {
            let e = rekey_api::Error::new(rekey_api::ErrorKind::Unavailable, message.clone())
                .temporary();
            match hint {
                Some(h) => e.with_hint(h.clone()),
                None => e,
            }
        })
    }

    pub(crate) fn session_slot(&self) -> &Mutex<Option<Arc<Session>>> {
        &self.0.session
    }

    /// A write changed the org: nothing read ahead may be served any more.
    pub(crate) fn invalidate(&self) {
        *lock(&self.0.prefetched) = Prefetched::default();
    }

    pub(crate) fn put_connected_apps(
        &self,
        read: impl IntoIterator<Item = (String, Option<Element>)>,
    ) {
        lock(&self.0.prefetched).connected_apps.extend(read);
    }

    pub(crate) fn put_eca_global_oauth(&self, read: HashMap<String, (String, Element)>) {
        lock(&self.0.prefetched).eca_global_oauth = Some(read);
    }

    /// The Connected App `name` as read ahead: `Some(None)` when it was read and is absent,
    /// `None` when it was not read ahead.
    pub(crate) fn connected_app(&self, name: &str) -> Option<Option<Element>> {
        lock(&self.0.prefetched).connected_apps.get(name).cloned()
    }

    /// The global OAuth settings (member, record) of ECA `app` as read ahead; `None` when the
    /// type was not read ahead or holds no settings of this app.
    pub(crate) fn eca_global_oauth(&self, app: &str) -> Option<(String, Element)> {
        lock(&self.0.prefetched)
            .eca_global_oauth
            .as_ref()
            .and_then(|all| all.get(app).cloned())
    }
}

/// A poisoned lock only means another thread panicked while holding it; the data is a cache.
fn lock<T>(m: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_api_usage_of_sforce_limit_info() {
        assert_eq!(
            ApiUsage::parse("api-usage=25/15000"),
            Some(ApiUsage {
                used: 25,
                max: 15000
            })
        );
        assert_eq!(
            ApiUsage::parse("per-app-api-usage=2/250(appName=x), api-usage= 9 / 10"),
            Some(ApiUsage { used: 9, max: 10 })
        );
        assert_eq!(ApiUsage::parse("per-app-api-usage=2/250"), None);
        assert_eq!(ApiUsage::parse("api-usage=25"), None);
        assert_eq!(ApiUsage::parse("api-usage=x/10"), None);
        assert_eq!(ApiUsage::parse(""), None);
        let u = ApiUsage {
            used: 850,
            max: 1000,
        };
        assert!((u.ratio() - 0.85).abs() < 1e-9);
        assert_eq!(u.to_string(), "850/1000 API requests (85 %)");
        assert_eq!(ApiUsage { used: 0, max: 0 }.ratio(), 1.0);
    }
}
