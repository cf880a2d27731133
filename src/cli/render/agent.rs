//! What `rekey agent` says: where it serves, and its stop.

use super::lines::note;
use crate::token::agent::AgentEvent;

/// `rekey agent`'s lines on stderr.
pub fn agent(event: AgentEvent<'_>) {
    match event {
        AgentEvent::Listening { at, credentials } => note(&format!(
            "rekey agent: serving tokens for {} on {at}",
            credentials.join(", ")
        )),
        AgentEvent::Stopped => note("rekey agent: stopped"),
    }
}
