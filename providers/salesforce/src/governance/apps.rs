//! Every app of the org from the Metadata API: `listMetadata` of each type, then `readMetadata`
//! in batches of ten names (the most one call takes). An External Client App is its
//! `ExternalClientApplication` header plus up to four satellites whose member names are not
//! predictable, so every satellite type is listed and read and joined on
//! `externalClientApplication`.

use super::policy::{self, EcaRecords};
use super::{METADATA_HINT, OAuthApp, SalesforceOrg};
use crate::client::with_permission_hint;
use crate::xml::Element;
use crate::{READ_BATCH, metadata};
use rekey_api::Result;
use std::collections::BTreeMap;

impl SalesforceOrg {
    /// Every Connected App and External Client App of the org, sorted by name (a CA and an ECA
    /// of the same name: the CA first).
    pub async fn oauth_apps(&self) -> Result<Vec<OAuthApp>> {
        let mut apps: Vec<OAuthApp> = self
            .read_type(metadata::CONNECTED_APP)
            .await?
            .iter()
            .map(|(name, record)| policy::connected_app(name, record))
            .collect();

        let mut ecas: BTreeMap<String, EcaRecords> = BTreeMap::new();
        for (name, header) in self.read_type(metadata::ECA_HEADER).await? {
            ecas.entry(name).or_default().header = Some(header);
        }
        for type_name in [
            metadata::ECA_OAUTH_SETTINGS,
            metadata::ECA_GLOBAL_OAUTH,
            metadata::ECA_OAUTH_POLICIES,
            metadata::ECA_POLICIES,
        ] {
            for (member, record) in self.read_type(type_name).await? {
                let Some(eca) = record.text_at(&["externalClientApplication"]) else {
                    tracing::warn!(org = %self.org, %type_name, %member, "satellite names no external client app; ignored");
                    continue;
                };
                // A satellite of an app without a header is left out: there is no such app.
                let Some(records) = ecas.get_mut(&eca) else {
                    continue;
                };
                let slot = match type_name {
                    metadata::ECA_OAUTH_SETTINGS => &mut records.oauth_settings,
                    metadata::ECA_GLOBAL_OAUTH => &mut records.global_oauth,
                    metadata::ECA_OAUTH_POLICIES => &mut records.oauth_policies,
                    _ => &mut records.policies,
                };
                *slot = Some(record);
            }
        }
        apps.extend(
            ecas.iter()
                .map(|(name, records)| policy::external_client_app(name, records)),
        );
        apps.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(apps)
    }

    /// Every component of `type_name` as (full name, record), in listing order.
    async fn read_type(&self, type_name: &str) -> Result<Vec<(String, Element)>> {
        let what = format!("listing {type_name} in org {}", self.org);
        let mut names = self
            .client
            .list_metadata(&what, type_name)
            .await
            .map_err(|e| with_permission_hint(e, METADATA_HINT))?;
        names.sort();
        names.dedup();
        let mut out = Vec::with_capacity(names.len());
        for batch in names.chunks(READ_BATCH) {
            let what = format!(
                "reading {type_name} {} in org {}",
                batch.join(","),
                self.org
            );
            let records = self
                .client
                .read_metadata(&what, type_name, batch)
                .await
                .map_err(|e| with_permission_hint(e, METADATA_HINT))?;
            for record in records {
                // A name deleted between list and read comes back without a record: skipped.
                if let Some(name) = record.text_at(&["fullName"]) {
                    out.push((name, record));
                }
            }
        }
        Ok(out)
    }
}
