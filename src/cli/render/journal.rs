//! `journal`: the entries, the hash chain's verdict, the export.

use super::lines::print_json;
use crate::cli::reports::ChainReport;
use rekey_api::JournalRead;

/// `rekey journal CRED`: every entry in place, damaged ones named; the chain in one line on
/// stderr, so stdout stays one line per entry for whoever reads it.
pub fn journal(read: &JournalRead, chain: &ChainReport, json: bool) {
    if json {
        print_json(&read.entries);
    } else {
        let mut damaged = read.damaged.iter().peekable();
        for (i, e) in read.entries.iter().enumerate() {
            while let Some(d) = damaged.next_if(|d| d.after == i) {
                out!("{d}: DAMAGED, not shown");
            }
            out!(
                "{} {} {:<9} {:<6} gen {} {}",
                e.at.format("%Y-%m-%dT%H:%M:%SZ"),
                e.rotation_id,
                e.step.to_string(),
                format!("{:?}", e.phase).to_lowercase(),
                e.generation,
                e.detail.as_deref().unwrap_or("")
            );
        }
        for d in damaged {
            out!("{d}: DAMAGED, not shown");
        }
        err!("{}", chain_line(chain, true));
    }
    if read.damaged.is_empty() {
        return;
    }
    let (store, credential) = (&chain.store, &chain.credential);
    for d in &read.damaged {
        err!("error: {store}: journal entry {d}");
    }
    err!(
        "error: the rotation journal of '{credential}' is damaged ({} of {} entries cannot be read); rotations of {credential} are refused until it is repaired",
        read.damaged.len(),
        read.damaged.len() + read.entries.len()
    );
    if let Some(repair) = &read.repair {
        err!("hint: {repair}");
    }
}

/// `rekey journal CRED --verify`.
pub fn chain(report: &ChainReport, json: bool) {
    if json {
        return print_json(report);
    }
    let line = chain_line(report, false);
    if report.intact {
        out!("{line}");
    } else {
        err!("error: {line}");
        err!(
            "hint: the journal was changed outside rekey (an entry edited, removed or inserted). Compare it with the journal exported to your SIEM (`rekey journal --export`) or a backup of the store before trusting what it says; runbooks/rollback.md reads a journal"
        );
    }
}

/// The chain in one line: intact with its counts, or the first entry that does not fit (and,
/// with `suggest`, the command that says more).
fn chain_line(report: &ChainReport, suggest: bool) -> String {
    let v = &report.verdict;
    let Some(b) = &v.broken else {
        return format!(
            "chain intact: {} entries ({} before chaining)",
            v.entries, v.legacy
        );
    };
    let line = format!(
        "chain BROKEN in the journal of '{}' ({} entries) at {b}",
        report.credential, v.entries
    );
    if suggest {
        format!("{line}; `rekey journal {} --verify`", report.credential)
    } else {
        line
    }
}

/// `rekey journal --export` without `--output`: the JSON lines as they are.
pub fn export(lines: &str) {
    for line in lines.lines() {
        out!("{line}");
    }
}
