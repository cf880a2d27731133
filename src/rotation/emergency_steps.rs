//! The emergency rekey's own steps: verification (the new key accepted AND the old one refused in
//! the same attempt, polled through the propagation window) and destroy (every older generation,
//! in every store).

use super::inflight::InFlight;
use super::outcome::Progress;
use super::verify::before_next_attempt;
use rekey_api::{Error, ErrorKind, Generation, Probe, Result};
use std::time::Instant;

impl<'a, 'r> InFlight<'a, 'r> {
    /// Emergency verification: the new key accepted AND the old key refused in the same attempt,
    /// polled through the propagation window. Until both hold, the leaked key may still mint.
    pub(super) async fn verify_switched(
        &self,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<String> {
        let r = self.rotation;
        let new = self.pending().await?;
        let old = match self.previous_generation {
            Some(_) => Some(self.previous_key().await?),
            None => None,
        };
        let started = Instant::now();
        for attempt in 1u32.. {
            self.lease.confirm().await?;
            // Temporary errors are waited out like a refusal that may clear; others stop.
            let answer = |result: Result<Probe>| match result {
                Err(e) if !e.is_temporary() => Err(e),
                other => Ok(other.map_err(|e| e.to_string())),
            };
            let new_answer = answer(r.target.probe(&new.material).await)?;
            let refused_old = match &old {
                None => Some("rekey holds no earlier key to probe".to_string()),
                Some(old) => match answer(r.target.probe(&old.material).await)? {
                    Ok(Probe::Rejected {
                        error, description, ..
                    }) => Some(format!("the old key is refused ({error}: {description})")),
                    _ => None,
                },
            };
            let reason = match (&new_answer, refused_old) {
                (Ok(Probe::Accepted { instance_url }), Some(refused)) => {
                    return Ok(format!(
                        "Salesforce accepted the new key for {instance_url} and {refused} (attempt {attempt})"
                    ));
                }
                (
                    Ok(Probe::Rejected {
                        error,
                        description,
                        may_clear: false,
                    }),
                    _,
                ) => {
                    return Err(Error::new(
                        ErrorKind::VerificationFailed,
                        format!("{} refused a token signed by the new key: {error}: {description}", r.target),
                    )
                    .with_hint("waiting will not fix this; correct the app or user setup, then `rekey resume`"));
                }
                (Ok(Probe::Accepted { .. }), None) => {
                    "found the new key accepted but the old one still too (propagating)".to_string()
                }
                (
                    Ok(Probe::Rejected {
                        error, description, ..
                    }),
                    _,
                ) => {
                    format!("found the new key refused for now ({error}: {description})")
                }
                (Err(e), _) => format!("got no answer ({e})"),
            };
            before_next_attempt(r, started, attempt, reason, "the emergency rekey", progress, |last| {
                Error::new(
                    ErrorKind::VerificationFailed,
                    format!(
                        "{} did not accept the new key and refuse the old one within {}s ({attempt} attempts; last: {last})",
                        r.target,
                        r.verify_timeout.as_secs()
                    ),
                )
                .with_hint("`rekey resume` keeps verifying; an emergency rekey is never rolled back, because that would trust the leaked key again")
            })
            .await?;
        }
        unreachable!("the attempt counter is unbounded")
    }

    /// Emergency: every generation before this one destroyed in every store (CURRENT is this
    /// one by now, so only the leaked and older keys go).
    pub(super) async fn destroy_older(&self) -> Result<String> {
        let r = self.rotation;
        for store in r.stores {
            for g in 1..self.generation.0 {
                self.lease.confirm().await?;
                store.destroy(r.credential, Generation(g)).await?;
            }
        }
        // A key in custody is destroyed by its service; the evidence says what that means there.
        let custody: Vec<String> = r
            .stores
            .iter()
            .filter_map(|s| s.custody())
            .map(|c| format!("; in {c}: {}", c.destroy_means()))
            .collect();
        Ok(format!(
            "generations 1 to {} destroyed in {}{}",
            self.generation.0 - 1,
            r.store_names(),
            custody.concat()
        ))
    }
}
