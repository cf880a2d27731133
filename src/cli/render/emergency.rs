//! `rekey emergency`'s summary.

use super::lines::print_json;
use super::rotation::unadopted;
use crate::emergency::EmergencyRow;

/// `rekey emergency`'s summary, one line per credential.
pub fn emergency(rows: &[EmergencyRow], json: bool) {
    if json {
        return print_json(&rows);
    }
    for r in rows {
        out!(
            "{}: emergency rekey {}{}",
            r.credential,
            r.outcome,
            r.rotation_id
                .as_ref()
                .map_or_else(String::new, |id| format!(" (rotation {id})"))
        );
        if let Some(e) = &r.error {
            err!("error: {}: {e}", r.credential);
        }
        if let Some(h) = &r.hint {
            err!("hint: {h}");
        }
        if let Some(path) = &r.evidence {
            out!("  evidence: {}", path.display());
        }
        unadopted(&r.credential, &r.unadopted);
    }
}
