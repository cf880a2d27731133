//! Reading ahead for a run over many credentials of one org: the apps their observations will
//! read, in batches of ten names (the most one `readMetadata` takes), kept in the org's shared
//! session until a write changes the org; and the org's API usage.

use super::SalesforceOrg;
use crate::session::ApiUsage;
use crate::xml::Element;
use crate::{READ_BATCH, metadata};
use rekey_api::{Error, ErrorKind, Result};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// A usage reported longer ago than this is read again (a daemon's session outlives its cycles).
const USAGE_MAX_AGE: Duration = Duration::from_secs(60);

impl SalesforceOrg {
    /// Reads the Connected Apps named in `connected_apps` (ten a call) and, with `ecas`, every
    /// External Client App's global OAuth settings (one listing, then ten a call), into the org's
    /// shared session, where the targets' observation reads find them. A read that fails
    /// leaves its apps to be read one by one (and their errors reported per credential).
    pub async fn read_ahead(&self, connected_apps: &[String], ecas: bool) {
        let names: BTreeSet<&String> = connected_apps.iter().collect();
        let names: Vec<String> = names.into_iter().cloned().collect();
        for batch in names.chunks(READ_BATCH) {
            let what = format!(
                "reading {} {} in org {}",
                metadata::CONNECTED_APP,
                batch.join(","),
                self.org
            );
            match self
                .client
                .read_metadata(&what, metadata::CONNECTED_APP, batch)
                .await
            {
                Ok(records) => {
                    let mut found: HashMap<String, Element> = records
                        .into_iter()
                        .filter_map(|r| r.text_at(&["fullName"]).map(|n| (n, r)))
                        .collect();
                    let read = batch.iter().map(|n| (n.clone(), found.remove(n)));
                    self.client.shared().put_connected_apps(read);
                }
                Err(e) => {
                    tracing::debug!(org = %self.org, error = %e, "reading ahead failed; apps read one by one")
                }
            }
        }
        if ecas && let Err(e) = self.read_ahead_eca_global_oauth().await {
            tracing::debug!(org = %self.org, error = %e, "reading ahead failed; apps read one by one");
        }
    }

    async fn read_ahead_eca_global_oauth(&self) -> Result<()> {
        let type_name = metadata::ECA_GLOBAL_OAUTH;
        let what = format!("listing {type_name} in org {}", self.org);
        let mut names = self.client.list_metadata(&what, type_name).await?;
        names.sort();
        names.dedup();
        let mut by_app = HashMap::new();
        for batch in names.chunks(READ_BATCH) {
            let what = format!(
                "reading {type_name} {} in org {}",
                batch.join(","),
                self.org
            );
            for record in self.client.read_metadata(&what, type_name, batch).await? {
                if let (Some(app), Some(member)) = (
                    record.text_at(&["externalClientApplication"]),
                    record.text_at(&["fullName"]),
                ) {
                    by_app.insert(app, (member, record));
                }
            }
        }
        self.client.shared().put_eca_global_oauth(by_app);
        Ok(())
    }

    /// The org's API usage: as an answer of the last minute reported it, else from the
    /// `limits` resource (one REST call, whose own header is read too).
    pub async fn api_usage(&self) -> Result<ApiUsage> {
        if let Some(usage) = self.client.shared().usage_within(USAGE_MAX_AGE) {
            return Ok(usage);
        }
        let what = format!("reading the API limits of org {}", self.org);
        let path = format!("/services/data/v{}/limits", self.client.api_version());
        let answer = self.client.rest_get(&what, &path).await?;
        if let Some(usage) = self.client.shared().usage() {
            return Ok(usage);
        }
        let daily = answer.get("DailyApiRequests");
        let field = |name: &str| daily.and_then(|d| d.get(name)).and_then(Value::as_u64);
        match (field("Max"), field("Remaining")) {
            (Some(max), Some(remaining)) => Ok(ApiUsage {
                used: max.saturating_sub(remaining),
                max,
            }),
            _ => Err(Error::new(
                ErrorKind::Unexpected,
                format!("{what}: the answer has no DailyApiRequests"),
            )),
        }
    }

    /// The org's shared admin session.
    pub fn session(&self) -> &crate::AdminSession {
        self.client.shared()
    }
}
