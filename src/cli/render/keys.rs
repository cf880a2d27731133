//! `inspect` (and `generate`), `import`, `verify`.

use super::lines::print_json;
use crate::cli::reports::{ImportReport, InspectReport, Inspected, VerifyReport};

/// `rekey inspect`.
pub fn inspect(report: &InspectReport, json: bool) {
    if json {
        return print_json(report);
    }
    for file in &report.files {
        match file {
            Inspected::Certificate {
                path,
                subject,
                issuer,
                serial,
                not_before,
                not_after,
                days_left,
                key_algorithm,
                key_bits,
                fingerprint_sha256,
                spki_sha256,
            } => {
                out!("{}: certificate", path.display());
                out!("  subject:         {subject}");
                out!("  issuer:          {issuer}");
                out!("  serial:          {serial}");
                out!("  not before:      {not_before}");
                out!("  not after:       {not_after} ({days_left} days left)");
                out!("  key:             {key_algorithm} {key_bits} bits");
                out!("  sha256:          {fingerprint_sha256}");
                out!("  public key sha256: {spki_sha256}");
            }
            Inspected::KeyInCustody { path, state } => {
                out!(
                    "{}: key in custody (never leaves its service)",
                    path.display()
                );
                out!("  key:             {}", state.handle);
                out!("  algorithm:       {}", state.handle.algorithm);
                out!(
                    "  exportable:      {}",
                    if state.exportable {
                        "YES (someone changed the key's settings)"
                    } else {
                        "no"
                    }
                );
                out!("  state:           {}", state.state);
            }
            Inspected::PrivateKey { path, facts } => {
                out!("{}: private key (contents not shown)", path.display());
                out!("  key:             {} {} bits", facts.algorithm, facts.bits);
                out!("  public key sha256: {}", facts.spki_fingerprint);
            }
        }
    }
    match report.key_matches_certificate {
        Some(true) => out!("key and certificate belong together"),
        Some(false) => out!(
            "key and certificate do NOT belong together: Salesforce would answer 'invalid assertion'"
        ),
        None => {}
    }
}

/// `rekey import`: its warnings on stderr (with `--json` too), the result on stdout.
pub fn import(report: &ImportReport, json: bool) {
    for warning in &report.warnings {
        super::lines::warning(warning);
    }
    if json {
        return print_json(report);
    }
    let what = match (&report.not_after, &report.consumer_key) {
        (Some(t), _) => format!("valid until {}", t.format("%Y-%m-%d")),
        (None, Some(key)) => format!("consumer key {key}"),
        (None, None) => String::new(),
    };
    out!(
        "{}: generation {} CURRENT ({}), {what}",
        report.credential,
        report.generation,
        report.fingerprint,
    );
}

/// `rekey verify`.
pub fn verify(report: &VerifyReport, json: bool) {
    if json {
        return print_json(report);
    }
    let who = format!(
        "{} {} key (generation {}, {})",
        report.credential, report.stage, report.generation, report.fingerprint
    );
    if report.accepted {
        out!("accepted: Salesforce issued a token for the {who}");
    } else {
        out!(
            "refused: {}: {} ({who})",
            report.error.as_deref().unwrap_or("?"),
            report.error_description.as_deref().unwrap_or("?")
        );
    }
}
