//! `rekey grants`: the OAuth grants (refresh tokens users approved, `OauthToken` rows) unused for
//! N days, and their revocation. Each revocation is journaled in the org's ledger before it is
//! made and again with its outcome, so an interrupted run leaves a record of what it was doing;
//! revoking a grant that is already gone is a success, so a second run finishes the first.

use super::ledger::Ledger;
use crate::config::Config;
use crate::wiring;
use chrono::{DateTime, Duration, Utc};
use rekey_api::{Error, ErrorKind, Phase, Result, Step};
use rekey_salesforce::{OAuthGrant, SalesforceOrg};
use serde::Serialize;
use serde_json::json;

/// One stale grant, as listed.
#[derive(Clone, Debug, Serialize)]
pub struct GrantRow {
    /// The app's API name (its label when no app matched).
    pub app: String,
    /// The user who approved it: username, else user id.
    pub user: String,
    /// When it was granted.
    pub created: DateTime<Utc>,
    /// When it was last used; `None`: never.
    pub last_used: Option<DateTime<Utc>>,
    /// How often it was used.
    pub use_count: u64,
    /// Days since it was last used (or granted, if never used).
    pub idle_days: i64,
}

/// The stale grants of one org, ready to list or revoke.
pub struct GrantsReport {
    /// The org.
    pub org: String,
    /// The threshold.
    pub stale_after_days: u32,
    /// Grants of the selected app(s) in the org, stale or not.
    pub total: usize,
    /// The stale ones, oldest use first.
    pub rows: Vec<GrantRow>,
    grants: Vec<OAuthGrant>,
    connection: SalesforceOrg,
}

/// What a revocation run did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RevokeOutcome {
    /// Grants Salesforce revoked now.
    pub revoked: u32,
    /// Grants that were already gone (revoked meanwhile, or by an earlier run).
    pub already_gone: u32,
    /// Grants that could not be revoked, one line each (user, app, why).
    pub failed: Vec<String>,
}

/// When a grant was last used, or granted if it never was: what staleness counts from.
pub(super) fn last_activity(g: &OAuthGrant) -> DateTime<Utc> {
    g.last_used.unwrap_or(g.created)
}

/// Lists `org`'s grants (of `app` only, when given) unused for `stale_after_days` at `now`.
pub async fn stale_grants(
    config: &Config,
    org: &str,
    app: Option<&str>,
    stale_after_days: u32,
    now: DateTime<Utc>,
) -> Result<GrantsReport> {
    let connection = wiring::org(config, org)?;
    let apps = connection.oauth_apps().await?;
    if let Some(app) = app
        && !apps.iter().any(|a| a.name == app || a.label == app)
    {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("org {org} has no Connected App or External Client App named '{app}'"),
        )
        .with_hint("`rekey inventory --org ORG` lists every app by API name"));
    }
    let all = connection.grants(&apps).await?;
    let selected: Vec<OAuthGrant> = all
        .into_iter()
        .filter(|g| app.is_none_or(|a| g.app == a || g.app_label == a))
        .collect();
    let cutoff = now - Duration::days(i64::from(stale_after_days));
    let total = selected.len();
    let mut stale: Vec<OAuthGrant> = selected
        .into_iter()
        .filter(|g| last_activity(g) < cutoff)
        .collect();
    stale.sort_by_key(last_activity);
    let rows = stale
        .iter()
        .map(|g| GrantRow {
            app: g.app.clone(),
            user: g.username.clone().unwrap_or_else(|| g.user_id.clone()),
            created: g.created,
            last_used: g.last_used,
            use_count: g.use_count,
            idle_days: (now - last_activity(g)).num_days(),
        })
        .collect();
    Ok(GrantsReport {
        org: org.to_string(),
        stale_after_days,
        total,
        rows,
        grants: stale,
        connection,
    })
}

impl GrantsReport {
    /// Revokes every listed grant, each journaled in the org's ledger before and after.
    pub async fn revoke(&self, config: &Config) -> Result<RevokeOutcome> {
        let mut outcome = RevokeOutcome::default();
        if self.grants.is_empty() {
            return Ok(outcome);
        }
        let mut ledger = Ledger::open(config, &self.org, "grants").await?;
        let result = self.revoke_each(&mut ledger, &mut outcome).await;
        let closed = ledger.close().await;
        result.and(closed).map(|()| outcome)
    }

    async fn revoke_each(&self, ledger: &mut Ledger, outcome: &mut RevokeOutcome) -> Result<()> {
        for (grant, row) in self.grants.iter().zip(&self.rows) {
            let facts = json!({
                "event": "grant-revoke",
                "org": self.org,
                "app": row.app,
                "user": row.user,
                "created": row.created,
                "last_used": row.last_used,
                "use_count": row.use_count,
                "stale_after_days": self.stale_after_days,
            });
            ledger
                .append(Step::RevokeGrant, Phase::Begin, facts.clone())
                .await?;
            let mut done = facts;
            match self.connection.revoke_grant(grant).await {
                Ok(true) => {
                    outcome.revoked += 1;
                    done["outcome"] = "revoked".into();
                    ledger.append(Step::RevokeGrant, Phase::Done, done).await?;
                }
                Ok(false) => {
                    outcome.already_gone += 1;
                    done["outcome"] = "already gone".into();
                    ledger.append(Step::RevokeGrant, Phase::Done, done).await?;
                }
                Err(e) => {
                    outcome
                        .failed
                        .push(format!("{} for {}: {e}", row.user, row.app));
                    done["outcome"] = e.to_string().into();
                    ledger
                        .append(Step::RevokeGrant, Phase::Failed, done)
                        .await?;
                }
            }
        }
        Ok(())
    }
}
