//! SOQL tokens: words (keywords, object names and dotted field paths), quoted strings with
//! SOQL's backslash escapes, integers, date and datetime literals, punctuation and comparison
//! operators. Every token keeps the character offset it starts at, for the caret in errors.

use super::SoqlError;

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// A keyword, object name, field path (`CreatedBy.Username`) or date literal name.
    Word(String),
    /// A quoted string, unescaped.
    Str(String),
    Int(i64),
    /// `YYYY-MM-DD`: midnight UTC of that day, in unix milliseconds.
    Date(i64),
    /// `YYYY-MM-DDThh:mm:ss[.fff](Z|±hh:mm)`, in unix milliseconds.
    DateTime(i64),
    Comma,
    LParen,
    RParen,
    Colon,
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

/// A token and the character offset where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) at: usize,
    /// The text as written, for `unexpected token: '…'`.
    pub(crate) text: String,
}

impl Token {
    /// Whether this is the keyword `kw` (case-insensitive).
    pub(crate) fn is_keyword(&self, kw: &str) -> bool {
        matches!(&self.tok, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }
}

/// Splits a query into tokens.
pub(crate) fn tokenize(soql: &str) -> Result<Vec<Token>, SoqlError> {
    let chars: Vec<char> = soql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        let two = |a: char, b: char| c == a && chars.get(i + 1) == Some(&b);
        let (tok, len) = if c.is_whitespace() {
            i += 1;
            continue;
        } else if two('!', '=') || two('<', '>') {
            (Tok::Ne, 2)
        } else if two('<', '=') {
            (Tok::Le, 2)
        } else if two('>', '=') {
            (Tok::Ge, 2)
        } else {
            match c {
                ',' => (Tok::Comma, 1),
                '(' => (Tok::LParen, 1),
                ')' => (Tok::RParen, 1),
                ':' => (Tok::Colon, 1),
                '=' => (Tok::Eq, 1),
                '<' => (Tok::Lt, 1),
                '>' => (Tok::Gt, 1),
                '\'' => {
                    let (value, len) = string(soql, &chars, i)?;
                    (Tok::Str(value), len)
                }
                c if c.is_ascii_digit()
                    || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
                {
                    let mut end = i + 1;
                    while chars.get(end).is_some_and(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '+' | '-')
                    }) {
                        end += 1;
                    }
                    let text: String = chars[i..end].iter().collect();
                    (number_or_date(soql, &text, i)?, end - i)
                }
                c if c.is_ascii_alphabetic() || c == '_' => {
                    let mut end = i + 1;
                    while chars
                        .get(end)
                        .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.'))
                    {
                        end += 1;
                    }
                    (Tok::Word(chars[i..end].iter().collect()), end - i)
                }
                other => {
                    return Err(SoqlError::malformed(
                        soql,
                        i,
                        &format!("unexpected token: '{other}'"),
                    ));
                }
            }
        };
        i += len;
        out.push(Token {
            tok,
            at: start,
            text: chars[start..i].iter().collect(),
        });
    }
    Ok(out)
}

/// A quoted string starting at `start`: its value and its length in characters.
fn string(soql: &str, chars: &[char], start: usize) -> Result<(String, usize), SoqlError> {
    let mut value = String::new();
    let mut i = start + 1;
    loop {
        match chars.get(i) {
            None => {
                return Err(SoqlError::malformed(
                    soql,
                    start,
                    "mismatched character '<EOF>' expecting '''",
                ));
            }
            Some('\'') => return Ok((value, i + 1 - start)),
            Some('\\') => {
                let escaped = match chars.get(i + 1) {
                    Some('\'') => '\'',
                    Some('"') => '"',
                    Some('\\') => '\\',
                    Some('n') => '\n',
                    Some('r') => '\r',
                    Some('t') => '\t',
                    Some('b') => '\u{8}',
                    Some('f') => '\u{c}',
                    // LIKE patterns keep `\%` and `\_` escaped for the matcher.
                    Some(c @ ('%' | '_')) => {
                        value.push('\\');
                        *c
                    }
                    other => {
                        return Err(SoqlError::malformed(
                            soql,
                            i,
                            &format!(
                                "Invalid string literal '{}'. Illegal character sequence '\\{}' in string literal.",
                                chars[start..].iter().collect::<String>(),
                                other.map(char::to_string).unwrap_or_default()
                            ),
                        ));
                    }
                };
                value.push(escaped);
                i += 2;
            }
            Some(c) => {
                value.push(*c);
                i += 1;
            }
        }
    }
}

/// An integer, a date or a datetime.
fn number_or_date(soql: &str, text: &str, at: usize) -> Result<Tok, SoqlError> {
    if let Ok(n) = text.parse::<i64>() {
        return Ok(Tok::Int(n));
    }
    if let Ok(day) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        && text.len() == 10
    {
        let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default();
        return Ok(Tok::Date(midnight.and_utc().timestamp_millis()));
    }
    if let Some(ms) = datetime(text) {
        return Ok(Tok::DateTime(ms));
    }
    Err(SoqlError::malformed(
        soql,
        at,
        &format!("unexpected token: '{text}'"),
    ))
}

/// SOQL's datetime formats: `2026-01-01T00:00:00Z`, with optional milliseconds, `Z` or an
/// offset `+hh:mm`/`-hh:mm`.
fn datetime(text: &str) -> Option<i64> {
    let utc = text
        .strip_suffix('Z')
        .map(|t| format!("{t}+00:00"))
        .unwrap_or_else(|| text.to_string());
    ["%Y-%m-%dT%H:%M:%S%:z", "%Y-%m-%dT%H:%M:%S%.3f%:z"]
        .iter()
        .find_map(|f| chrono::DateTime::parse_from_str(&utc, f).ok())
        .map(|d| d.timestamp_millis())
}
