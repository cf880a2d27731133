//! `plan`, and a rotation's progress and ending (`rotate`, `resume`, `abort`, `emergency`).

use super::lines::{opt, print_json, warning};
use crate::exit::Exit;
use crate::rotation::{Closed, Ending, Plan, Progress, Unadopted};

/// `rekey plan`.
pub fn plan(plan: &Plan, json: bool) {
    if json {
        return print_json(plan);
    }
    match &plan.resumes {
        Some(id) => out!(
            "{}: resumes rotation {id} (generation {})",
            plan.credential,
            plan.new_generation
        ),
        None => out!(
            "{}: rotate generation {} -> {}",
            plan.credential,
            opt(plan.current_generation),
            plan.new_generation
        ),
    }
    for (i, step) in plan.steps.iter().enumerate() {
        let marker = if step.mutates { "changes" } else { "reads  " };
        out!(
            "  {}. {:<9} [{marker}] {}",
            i + 1,
            step.step.to_string(),
            step.action
        );
    }
}

/// Collects rotation events; prints a line per step (text) or one document at the end (JSON).
pub struct RotateProgress {
    credential: String,
    json: bool,
    events: Vec<Progress>,
}

impl RotateProgress {
    /// A renderer for a rotation of `credential`.
    pub fn new(credential: &str, json: bool) -> Self {
        RotateProgress {
            credential: credential.to_string(),
            json,
            events: Vec::new(),
        }
    }

    /// Reports one event.
    pub fn event(&mut self, event: Progress) {
        if !self.json {
            match &event {
                Progress::Resuming {
                    rotation_id,
                    last_done,
                    undoing,
                } => {
                    out!(
                        "{}: resuming rotation {rotation_id} after step {}{}",
                        self.credential,
                        opt(*last_done),
                        undoing
                            .as_ref()
                            .map_or_else(String::new, |why| format!(" (undoing it: {why})"))
                    )
                }
                Progress::StepDone {
                    step,
                    millis,
                    detail,
                } => {
                    out!(
                        "  {:<9} {:>7.2}s  {detail}",
                        step.to_string(),
                        *millis as f64 / 1000.0
                    )
                }
                Progress::AdoptionPending { waiting } => {
                    out!("  adopt     waiting for {}", waiting.join(", "))
                }
                Progress::VerifyRetry { attempt, reason } => {
                    out!("  verify    attempt {attempt} {reason}; retrying")
                }
                Progress::Retry {
                    step,
                    attempt,
                    delay_ms,
                    reason,
                } => out!(
                    "  {:<9} attempt {attempt} failed ({reason}); retrying in {:.1}s",
                    step.to_string(),
                    *delay_ms as f64 / 1000.0
                ),
                Progress::RollingBack { reason } => {
                    out!("{}: rolling back: {reason}", self.credential)
                }
            }
        }
        self.events.push(event);
    }

    /// Prints the outcome; a rollback is a failure of the rotation, so it exits non-zero.
    pub fn finish(self, outcome: &Closed) -> Exit {
        let exit = outcome.exit();
        if self.json {
            print_json(&serde_json::json!({ "outcome": outcome, "events": self.events }));
            return exit;
        }
        let until = outcome.not_after.map_or_else(String::new, |t| {
            format!(", valid until {}", t.format("%Y-%m-%d"))
        });
        let now = format!(
            "generation {} ({}){until}",
            opt(outcome.generation),
            opt(outcome.fingerprint),
        );
        let id = &outcome.rotation_id;
        let reason = outcome.reason.as_deref().unwrap_or("");
        match outcome.ending {
            Ending::Rotated => out!("{}: rotated to {now}; rotation {id}", self.credential),
            Ending::Retired => out!(
                "{}: previous consumer secret deleted at Salesforce; CURRENT is {now} ({id})",
                self.credential
            ),
            Ending::Aborted => out!(
                "{}: rotation {id} aborted ({reason}); CURRENT is {now}",
                self.credential
            ),
            Ending::RolledBack => err!(
                "error: {}: rotation {id} rolled back: {reason}\nnote: the previous key is CURRENT and on the app again: {now}",
                self.credential
            ),
        }
        unadopted(&self.credential, &outcome.unadopted);
        exit
    }
}

/// A warning for each consumer that did not adopt `credential`'s new key.
pub(super) fn unadopted(credential: &str, consumers: &[Unadopted]) {
    for u in consumers {
        warning(&format!(
            "{credential}: consumer {u} does not use the new key; it fails to get tokens until it does"
        ));
    }
}
