//! Salesforce-shaped identifiers and tokens: 15- and 18-character ids with their checksum, and
//! random token text.

use rand::Rng;
use rand::distr::Alphanumeric;

/// Random URL-safe characters with a prefix (tokens, consumer keys and secrets).
pub(crate) fn random_token(len: usize, prefix: &str) -> String {
    let body: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect();
    format!("{prefix}{body}")
}

/// Whether two Salesforce ids name the same record: equal, or equal in their case-sensitive
/// 15-character form.
pub(crate) fn same_id(a: &str, b: &str) -> bool {
    a == b
        || (a.len() >= 15
            && b.len() >= 15
            && a.get(..15) == b.get(..15)
            && (a.len() == 15 || b.len() == 15))
}

/// Appends Salesforce's 3-character case checksum to a 15-character id.
pub(crate) fn id18(id15: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    let mut out = id15.to_string();
    for chunk in id15.as_bytes().chunks(5) {
        let bits = chunk
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_ascii_uppercase())
            .fold(0usize, |acc, (i, _)| acc | (1 << i));
        out.push(ALPHABET[bits] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id18_matches_salesforce_checksum() {
        // Known pair from Salesforce documentation examples.
        assert_eq!(id18("001A0000006Vm9r"), "001A0000006Vm9rIAC");
    }
}
