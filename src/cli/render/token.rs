//! `rekey token`: the token as JSON or as shell `export` lines.

use crate::cli::args::TokenFormat;
use crate::exit::Exit;
use crate::token::IssuedToken;
use serde::Serialize;

/// `rekey token`: the only place an access token is printed, and only to stdout. Written
/// straight to the locked stdout, without building the whole output as a string first.
pub fn token(credential: &str, token: &IssuedToken, format: TokenFormat) -> Exit {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let secret = token.access_token.expose_secret();
    let written = match format {
        TokenFormat::Json => {
            #[derive(Serialize)]
            struct TokenJson<'a> {
                access_token: &'a str,
                instance_url: &'a str,
                fingerprint: rekey_api::Fingerprint,
                generation: rekey_api::Generation,
                stage: rekey_api::Stage,
                cached: bool,
            }
            let json = TokenJson {
                access_token: secret,
                instance_url: &token.instance_url,
                fingerprint: token.fingerprint,
                generation: token.generation,
                stage: token.stage,
                cached: token.cached,
            };
            serde_json::to_writer_pretty(&mut out, &json)
                .map_err(std::io::Error::from)
                .and_then(|()| writeln!(out))
        }
        // `sf org login access-token` reads the token from SF_ACCESS_TOKEN (never from an
        // argument, which other users could read in the process list).
        TokenFormat::Sf => (|| {
            write!(out, "export SF_ACCESS_TOKEN=")?;
            write_shell_quoted(&mut out, secret)?;
            write!(
                out,
                "\nsf org login access-token --no-prompt --instance-url "
            )?;
            write_shell_quoted(&mut out, &token.instance_url)?;
            write!(out, " --alias ")?;
            write_shell_quoted(&mut out, credential)?;
            writeln!(out)
        })(),
        TokenFormat::Env => [
            ("SF_ACCESS_TOKEN", secret),
            ("SF_INSTANCE_URL", token.instance_url.as_str()),
        ]
        .iter()
        .try_for_each(|(name, value)| {
            write!(out, "export {name}=")?;
            write_shell_quoted(&mut out, value)?;
            writeln!(out)
        }),
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => Exit::Ok,
        Err(e) => {
            err!("error: cannot write the token to stdout: {e}");
            Exit::Internal
        }
    }
}

/// `value` as one POSIX shell word: single-quoted, each `'` written as `'\''`. Nothing inside
/// single quotes is expanded, so `eval` assigns exactly `value`.
fn write_shell_quoted(out: &mut impl std::io::Write, value: &str) -> std::io::Result<()> {
    out.write_all(b"'")?;
    for (i, part) in value.split('\'').enumerate() {
        if i > 0 {
            out.write_all(br"'\''")?;
        }
        out.write_all(part.as_bytes())?;
    }
    out.write_all(b"'")
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_keeps_every_character_literal() {
        let quoted = |value: &str| {
            let mut out = Vec::new();
            write_shell_quoted(&mut out, value).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(quoted("00Dx!AQ.a$b`c\"d"), "'00Dx!AQ.a$b`c\"d'");
        assert_eq!(quoted("it's"), r"'it'\''s'");
        assert_eq!(quoted(""), "''");
    }
}
