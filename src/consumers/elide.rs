//! Keeping key material out of what a failed command said: its last stderr lines are quoted in
//! errors, on stderr and in the journal, so any line holding a piece of the key rekey handed over
//! — however short — or anything that looks like key material is elided.

use rekey_http::{DETAIL_MAX, one_line};

/// How many of a failed command's last stderr lines are quoted.
const STDERR_LINES: usize = 5;

/// The last non-empty lines a command wrote to stderr, one line each, joined by ` | `. A line
/// that could be key material is replaced by `[elided]` (see [`could_be_key`]).
pub(super) fn stderr_tail(stderr: &[u8], key: Option<&str>) -> String {
    let text = String::from_utf8_lossy(stderr);
    let known = key.map(KnownKey::of);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(STDERR_LINES)..]
        .iter()
        .map(|line| {
            if could_be_key(line, known.as_ref()) {
                "[elided]".to_string()
            } else {
                one_line(line, DETAIL_MAX)
            }
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The shortest run of a key's PEM body that is elided wherever it appears: long enough that
/// ordinary words and hex fingerprints do not match a random base64 body by chance (64^-8 per
/// position), short enough that any meaningful piece of the key is caught.
const KEY_FRAGMENT: usize = 8;

/// What rekey knows of the key it handed over, to recognise it in what a command printed.
/// Matching what was handed over, rather than guessing from a line's length, also catches the
/// last line of a PEM body, which can be as short as 20 characters.
struct KnownKey<'k> {
    /// Every non-empty line of the PEM, trimmed: armour lines and body lines, however short.
    lines: Vec<&'k str>,
    /// The base64 body without armour or whitespace, so a fragment spanning two lines matches.
    body: String,
}

impl<'k> KnownKey<'k> {
    fn of(pem: &'k str) -> KnownKey<'k> {
        let lines: Vec<&str> = pem
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let body = lines
            .iter()
            .filter(|l| !l.starts_with("-----"))
            .flat_map(|l| l.chars())
            .filter(|c| !c.is_whitespace())
            .collect();
        KnownKey { lines, body }
    }

    /// `line` holds one of the PEM's lines, or a run of at least [`KEY_FRAGMENT`]
    /// non-whitespace characters found in its body.
    fn appears_in(&self, line: &str) -> bool {
        if self.lines.iter().any(|l| line.contains(l)) {
            return true;
        }
        // Every run of KEY_FRAGMENT or more that occurs in the body contains a KEY_FRAGMENT-long
        // window that does, so windows of the whitespace-separated runs are enough. Bytes, not
        // characters: the body is ASCII, so only an ASCII window (valid UTF-8) can match.
        line.split(char::is_whitespace)
            .flat_map(|run| run.as_bytes().windows(KEY_FRAGMENT))
            .filter_map(|window| std::str::from_utf8(window).ok())
            .any(|window| self.body.contains(window))
    }
}

/// Whether a stderr line could be key material: part of the key rekey handed over (when it
/// did), or, for any other key the command might print, a line mentioning a PEM private key or
/// a long base64 run that is not a hex digest (fingerprints are fine to show).
fn could_be_key(line: &str, key: Option<&KnownKey<'_>>) -> bool {
    if key.is_some_and(|k| k.appears_in(line)) || line.contains("PRIVATE KEY") {
        return true;
    }
    let base64 = |c: &char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
    let mut run = String::new();
    for c in line.chars().chain(std::iter::once(' ')) {
        if base64(&c) {
            run.push(c);
            continue;
        }
        if run.len() >= 40 && !run.chars().all(|c| c.is_ascii_hexdigit()) {
            return true;
        }
        run.clear();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumers::testing::*;

    #[test]
    fn every_piece_of_the_key_handed_over_is_elided_however_short() {
        let key = &pairs().0;
        let pem = crate::consumers::secret_text(key).unwrap();
        let elided = |line: &str| {
            stderr_tail(line.as_bytes(), crate::consumers::secret_text(key)) == "[elided]"
        };
        // Each line alone, as a command that prints the key file line by line would, armour
        // included; indented or not, the comparison is after trimming.
        for line in pem.lines().filter(|l| !l.trim().is_empty()) {
            assert!(elided(line), "not elided: a line of the key");
            assert!(
                elided(&format!("  {line}  ")),
                "not elided: an indented line"
            );
        }
        let last = last_body_line(key);
        assert!(last.len() < SHORT_TAIL);
        assert!(elided(last), "not elided: the short last line");
        assert!(elided(&format!("read {last} at EOF")));
        // Eight characters of the body, across a line break, inside other text.
        let body: String = key_lines().concat();
        let across = key_lines()[0].len() - 4;
        let fragment = &body[across..across + KEY_FRAGMENT];
        assert!(
            elided(&format!("bad token x{fragment}y in request")),
            "{fragment}"
        );
        // Fewer are not key material: they could be anything.
        let short = &fragment[..KEY_FRAGMENT - 1];
        let seven = format!("saw {short} here");
        assert_eq!(
            stderr_tail(seven.as_bytes(), crate::consumers::secret_text(key)),
            seven
        );
        // A hex fingerprint is shown, the new one as any other.
        for fingerprint in [pairs().1.fingerprint, pairs().3.fingerprint] {
            let line = format!("fingerprint {fingerprint} not adopted");
            assert_eq!(
                stderr_tail(line.as_bytes(), crate::consumers::secret_text(key)),
                line
            );
        }
    }

    #[test]
    fn stderr_lines_that_could_be_key_material_are_elided() {
        let key = &pairs().0;
        let body_line = key_lines()[3].clone();
        // The generated key's own armour line, as a command that cats the key file would print.
        let armour = crate::consumers::secret_text(key)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_string();
        assert!(armour.starts_with("-----BEGIN"), "{armour}");
        let text = format!(
            "one\n\nfingerprint {}\n{body_line}\nsecret: {}\n{armour}\nsix\nseven\n",
            pairs().1.fingerprint,
            &body_line[5..40]
        );
        let tail = stderr_tail(text.as_bytes(), crate::consumers::secret_text(key));
        assert_eq!(tail, "[elided] | [elided] | [elided] | six | seven");
        let tail = stderr_tail(
            b"fingerprint ok\nQUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlq\n",
            None,
        );
        assert_eq!(tail, "fingerprint ok | [elided]");
        let hex = format!("reports {}", pairs().1.fingerprint);
        assert_eq!(stderr_tail(hex.as_bytes(), None), hex);
    }
}
