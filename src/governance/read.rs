//! Everything an audit or an inventory needs from one org, read once: the apps (metadata in
//! batches), the OAuth grants, the latest login through each app, each client credentials run-as
//! user's access, the clock, and the age of each consumer secret rekey keeps. Each source is
//! read on its own, so one refused read leaves the others' findings standing.

use crate::config::Config;
use crate::wiring;
use chrono::{DateTime, Duration, Utc};
use rekey_api::CredentialKind;
use rekey_salesforce::{ClockReading, OAuthApp, OAuthGrant, SalesforceOrg, UserAccess};
use std::collections::BTreeMap;

/// How far back logins are read: Salesforce keeps six months of LoginHistory.
const LOGIN_HISTORY_DAYS: i64 = 180;

/// One source of an org that could not be read: the org, and what and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable {
    /// The org (config name).
    pub org: String,
    /// The source and the error.
    pub what: String,
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "org {}: {}", self.org, self.what)
    }
}

/// Reports show it as its one line.
impl serde::Serialize for Unreadable {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One org as read; `None` where that source could not be read (named in `unreadable`).
#[derive(Debug)]
pub struct OrgRead {
    /// The org's name in the config.
    pub org: String,
    /// Every Connected App and External Client App.
    pub apps: Option<Vec<OAuthApp>>,
    /// Every OAuth grant (OauthToken row).
    pub grants: Option<Vec<OAuthGrant>>,
    /// The latest successful login through each app, by app name.
    pub logins: Option<BTreeMap<String, DateTime<Utc>>>,
    /// Each client credentials run-as user's access, by username (`None` inside: no such user).
    pub run_as: BTreeMap<String, Option<UserAccess>>,
    /// This host's clock against Salesforce's.
    pub clock: Option<ClockReading>,
    /// When each consumer secret credential of the org got its CURRENT pair, by credential.
    pub secret_stored: BTreeMap<String, DateTime<Utc>>,
    /// What could not be read, one line each.
    pub unreadable: Vec<Unreadable>,
    /// The connection, for what a command does next (revoking grants).
    pub connection: Option<SalesforceOrg>,
}

/// Reads `org`. Never fails: what cannot be read is named in [`OrgRead::unreadable`].
pub async fn read_org(config: &Config, org: &str, now: DateTime<Utc>) -> OrgRead {
    let mut out = OrgRead {
        org: org.to_string(),
        apps: None,
        grants: None,
        logins: None,
        run_as: BTreeMap::new(),
        clock: None,
        secret_stored: BTreeMap::new(),
        unreadable: Vec::new(),
        connection: None,
    };
    read_secret_ages(config, &mut out).await;
    let connection = match wiring::org(config, org) {
        Ok(c) => c,
        Err(e) => {
            out.unreadable.push(Unreadable {
                org: org.to_string(),
                what: e.to_string(),
            });
            return out;
        }
    };
    let mut note = |what: &str, e: rekey_api::Error| {
        out.unreadable.push(Unreadable {
            org: org.to_string(),
            what: format!("{what}: {e}"),
        });
    };
    match connection.clock_offset().await {
        Ok(c) => out.clock = Some(c),
        Err(e) => note("the clock (Date header)", e),
    }
    let apps = match connection.oauth_apps().await {
        Ok(apps) => apps,
        Err(e) => {
            note("the Connected Apps and External Client Apps", e);
            out.connection = Some(connection);
            return out;
        }
    };
    match connection.grants(&apps).await {
        Ok(g) => out.grants = Some(g),
        Err(e) => note("OAuth grants (OauthToken)", e),
    }
    let since = now - Duration::days(LOGIN_HISTORY_DAYS);
    match connection.last_logins(&apps, since).await {
        Ok(l) => out.logins = Some(l),
        Err(e) => note("logins (LoginHistory)", e),
    }
    let users: std::collections::BTreeSet<&str> = apps
        .iter()
        .filter(|a| a.client_credentials_enabled)
        .filter_map(|a| a.client_credentials_user.as_deref())
        .collect();
    for user in users {
        match connection.user_access(user).await {
            Ok(access) => {
                out.run_as.insert(user.to_string(), access);
            }
            Err(e) => note(&format!("run-as user {user}"), e),
        }
    }
    out.apps = Some(apps);
    out.connection = Some(connection);
    out
}

/// The CURRENT pair's store date of every consumer secret credential of the org, from its
/// primary store.
async fn read_secret_ages(config: &Config, out: &mut OrgRead) {
    for c in config
        .credentials
        .values()
        .filter(|c| c.org == out.org && c.kind == CredentialKind::ConsumerSecret)
    {
        let Some(primary) = c.stores.first() else {
            continue;
        };
        let stages = match wiring::store(config, primary).await {
            Ok(store) => store.stages(&c.name).await,
            Err(e) => Err(e),
        };
        match stages {
            Ok(stages) => {
                if let Some(current) = stages.current {
                    out.secret_stored.insert(c.name.clone(), current.created_at);
                }
            }
            Err(e) => out.unreadable.push(Unreadable {
                org: out.org.clone(),
                what: format!(
                    "credential {}: the consumer secret's age in store {primary}: {e}",
                    c.name
                ),
            }),
        }
    }
}
