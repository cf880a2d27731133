//! What happens in the org, as Salesforce records it: `LoginHistory` rows for token requests
//! (which also drive the per-user login rate limit), `SetupAuditTrail` rows for the metadata
//! changes deploys make, and the rolling 24-hour API request count.

use super::*;

/// The window of the daily API request allocation, in seconds.
const API_WINDOW_SECS: i64 = 86_400;
/// The window of the per-user login rate limit, in seconds.
const LOGIN_WINDOW_SECS: i64 = 3_600;
/// `LoginHistory.Status` of a request refused by the login rate limit.
pub(crate) const LOGIN_RATE_EXCEEDED: &str = "Login rate exceeded";

/// `LoginHistory.LoginUrl` of a seeded login (the real one is the host the request went to).
const SEED_LOGIN_HOST: &str = "login.salesforce.com";
/// A day in seconds, the unit of a seed's history.
const DAY: i64 = 86_400;

/// A `LoginHistory` row: one token request that named a known user.
#[derive(Debug, Clone)]
pub(crate) struct Login {
    pub(crate) id: String,
    pub(crate) user_id: String,
    /// Unix seconds (simulated clock).
    pub(crate) time: i64,
    /// The app's label, when the request named a known app.
    pub(crate) application: Option<String>,
    /// `Success`, or why the login failed.
    pub(crate) status: String,
    pub(crate) source_ip: String,
    /// The host the request was sent to.
    pub(crate) login_url: String,
}

impl Login {
    /// Whether the login succeeded.
    pub(crate) fn succeeded(&self) -> bool {
        self.status == "Success"
    }
}

/// A `SetupAuditTrail` row.
#[derive(Debug, Clone)]
pub(crate) struct AuditEntry {
    pub(crate) id: String,
    pub(crate) action: String,
    pub(crate) section: String,
    pub(crate) display: String,
    /// Unix seconds (simulated clock).
    pub(crate) created: i64,
    /// User id of who made the change.
    pub(crate) created_by: String,
}

impl OrgState {
    /// A seed's past: its approvals (`OauthToken` rows, dated and used as the seed says) and
    /// its `[[logins]]` (`LoginHistory` rows), days before now.
    pub(super) fn seed_history(&mut self, seed: &Seed) -> Result<(), String> {
        let now = self.now();
        for a in &seed.approvals {
            let created = now - i64::from(a.created_days_ago.unwrap_or(0)) * DAY;
            let last_used = a
                .last_used_days_ago
                .map_or(created, |d| now - i64::from(d) * DAY);
            if last_used < created {
                return Err(format!(
                    "approval of {} by {}: last used before it was created",
                    a.app, a.username
                ));
            }
            for _ in 0..a.count {
                self.add_grant(&a.username, &a.app)
                    .map_err(|e| format!("approval: {e}"))?;
                let grant = self.grants.last_mut().expect("just added");
                grant.created = created;
                grant.last_used = last_used;
                grant.use_count = a.use_count.unwrap_or(0);
            }
        }
        for l in &seed.logins {
            let user_id = self
                .user_by_username(&l.username)
                .ok_or(format!("login: unknown user {}", l.username))?
                .id
                .clone();
            let application = self
                .app_by_name(&l.app)
                .and_then(|app| self.app_label(&app.key()))
                .ok_or(format!("login: unknown app {}", l.app))?;
            self.record_login(&user_id, Some(application), &l.status, SEED_LOGIN_HOST);
            let login = self.logins.last_mut().expect("just recorded");
            login.time = now - i64::from(l.days_ago) * DAY;
        }
        // Seeded logins may come in any order; the history is kept oldest first.
        self.logins.sort_by_key(|l| l.time);
        Ok(())
    }

    /// Records a token request of a known user; returns the `LoginHistory` id.
    pub(crate) fn record_login(
        &mut self,
        user_id: &str,
        application: Option<String>,
        status: &str,
        login_url: &str,
    ) -> String {
        let id = self.new_id("0Ya");
        self.logins.push(Login {
            id: id.clone(),
            user_id: user_id.to_string(),
            time: self.now(),
            application,
            status: status.to_string(),
            source_ip: self.settings.source_ip.to_string(),
            login_url: login_url.to_string(),
        });
        id
    }

    /// Whether the user has used up the logins of the past hour (setting
    /// `logins_per_user_per_hour`; requests the limit refused do not count).
    pub(crate) fn login_rate_exceeded(&self, user_id: &str) -> bool {
        let since = self.now() - LOGIN_WINDOW_SECS;
        let recent = self
            .logins
            .iter()
            .filter(|l| l.user_id == user_id && l.time > since && l.status != LOGIN_RATE_EXCEEDED)
            .count();
        recent as u64 >= self.settings.logins_per_user_per_hour
    }

    /// API calls made in the past 24 hours.
    pub(crate) fn api_used(&mut self) -> u64 {
        let since = self.now() - API_WINDOW_SECS;
        while self.api_calls.front().is_some_and(|t| *t <= since) {
            self.api_calls.pop_front();
        }
        self.api_calls.len() as u64
    }

    /// Counts one API call; false (and nothing counted) when the allocation is used up.
    pub(crate) fn take_api_call(&mut self) -> bool {
        if self.api_used() >= self.settings.daily_api_requests {
            return false;
        }
        let now = self.now();
        self.api_calls.push_back(now);
        true
    }

    /// Adds a `SetupAuditTrail` row made by `user_id` now.
    pub(crate) fn audit(&mut self, user_id: &str, action: &str, section: &str, display: String) {
        let id = self.new_id("0Ym");
        let created = self.now();
        self.audit.push(AuditEntry {
            id,
            action: action.to_string(),
            section: section.to_string(),
            display,
            created,
            created_by: user_id.to_string(),
        });
    }
}
