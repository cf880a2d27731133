//! A `store` consumer reads CURRENT from the store itself, so nothing is pushed to it; with a
//! `status_url` its adoption is polled, without one it counts as adopted at once.

use super::http::Http;
use super::{Adoption, Announcement, Consumer, Identity, Notice, expect_stage};
use async_trait::async_trait;
use rekey_api::Endpoint;
use rekey_api::Result;
use std::fmt;

/// A consumer that reads the store.
pub(super) struct StoreConsumer {
    id: Identity,
    /// Where it reports the fingerprint it uses, and how it is reached.
    status: Option<(Endpoint, Http)>,
}

impl fmt::Debug for StoreConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The host only: a URL's path or query may carry a token.
        f.debug_struct("StoreConsumer")
            .field("name", &self.id.name)
            .field("status_host", &self.status.as_ref().map(|(s, _)| &s.host))
            .field("adopt_timeout", &self.id.adopt_timeout)
            .finish_non_exhaustive()
    }
}

impl StoreConsumer {
    /// A store consumer, polled at `status_url` when given.
    pub(super) fn new(id: Identity, status_url: Option<&str>) -> Result<StoreConsumer> {
        let label = format!("store consumer '{}'", id.name);
        let status = status_url
            .map(|url| {
                Ok::<_, rekey_api::Error>((
                    rekey_api::endpoint(url, "status_url", &label)?,
                    Http::new(label.clone())?,
                ))
            })
            .transpose()?;
        Ok(StoreConsumer { id, status })
    }
}

/// What `prepare` and `activate` answer: nothing to tell a consumer that reads the store.
fn reads_the_store() -> String {
    "reads CURRENT from the store".to_string()
}

#[async_trait]
impl Consumer for StoreConsumer {
    fn identity(&self) -> &Identity {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "store"
    }

    async fn prepare(&self, p: &Announcement<'_>) -> Result<String> {
        expect_stage(&self.label(), Notice::Prepare, p)?;
        Ok(reads_the_store())
    }

    async fn activate(&self, p: &Announcement<'_>) -> Result<String> {
        expect_stage(&self.label(), Notice::Activate, p)?;
        Ok(reads_the_store())
    }

    async fn adopted(&self, p: &Announcement<'_>) -> Result<Adoption> {
        match &self.status {
            Some((status, http)) => http.poll(status, p).await,
            None => Ok(Adoption::Adopted {
                detail: "reads CURRENT from the store (no status_url to ask)".into(),
            }),
        }
    }
}
