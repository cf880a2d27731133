//! The JSON record remote stores (Vault, AWS) keep for each key version: the schema consumers
//! read, defined once so every store writes and reads the same thing.
//!
//! ```json
//! { "private_key": "<PEM>", "certificate": "<PEM>", "generation": "3",
//!   "fingerprint": "<sha256 hex of the certificate DER>", "not_after": "<RFC 3339>",
//!   "rotation_id": "<id>", "created_at": "<RFC 3339>" }
//! ```

use crate::{
    Certificate, Error, ErrorKind, Generation, KeyMaterial, Result, RotationId, VersionInfo,
};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

/// The record for a key version. The returned value holds the private key: callers send it to
/// their store and drop it; they never log or print it.
pub fn key_record(info: &VersionInfo, key: &KeyMaterial) -> Value {
    json!({
        "private_key": key.expose_secret_pem(),
        "certificate": info.certificate.pem(),
        "generation": info.generation.0.to_string(),
        "fingerprint": info.certificate.fingerprint.to_hex(),
        "not_after": info.certificate.not_after.to_rfc3339(),
        "rotation_id": info.rotation_id.as_ref().map(|r| r.0.clone()).unwrap_or_default(),
        "created_at": info.created_at.to_rfc3339(),
    })
}

/// What a record says about its version, without the key. `Ok(None)` for a record that holds no
/// key (a placeholder or a cleared stage); `Err` describes what is malformed, for the caller to
/// wrap with the store, path and version. `created_fallback` is used when the record has no
/// `created_at` (the store's own version timestamp).
pub fn parse_key_record(
    data: &Map<String, Value>,
    created_fallback: Option<DateTime<Utc>>,
) -> std::result::Result<Option<VersionInfo>, String> {
    if !data.contains_key("private_key") {
        return Ok(None);
    }
    let generation = match data.get("generation") {
        Some(Value::String(s)) => s.parse::<u64>().ok(),
        Some(Value::Number(n)) => n.as_u64(),
        _ => None,
    }
    .ok_or("no valid 'generation'")?;
    let pem = data
        .get("certificate")
        .and_then(Value::as_str)
        .ok_or("no 'certificate'")?;
    let certificate = Certificate::from_pem(pem).map_err(|e| format!("a bad certificate ({e})"))?;
    let created_at = data
        .get("created_at")
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .or(created_fallback)
        .unwrap_or_default();
    let rotation_id = data
        .get("rotation_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(|s| RotationId(s.to_string()));
    Ok(Some(VersionInfo {
        generation: Generation(generation),
        certificate,
        created_at,
        rotation_id,
    }))
}

/// Takes the private key out of a record (the record no longer holds it afterwards).
pub fn take_key(data: &mut Map<String, Value>) -> Result<KeyMaterial> {
    match data.get_mut("private_key").map(Value::take) {
        Some(Value::String(pem)) => KeyMaterial::from_pem(pem),
        _ => Err(Error::new(
            ErrorKind::Unexpected,
            "the record holds no 'private_key' string",
        )),
    }
}

/// Checks that a credential name can be used as one segment of a path or secret name in every
/// store: letters, digits, `-`, `_`, `.`, not starting with a dot (no `..`, no hidden files).
pub fn check_credential_name(credential: &str) -> Result<()> {
    let ok = !credential.is_empty()
        && !credential.starts_with('.')
        && credential
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Config,
            format!("credential name '{credential}' cannot be used as a store path segment"),
        )
        .with_hint("use letters, digits, '-', '_' and '.' only, not starting with '.'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_without_a_key_is_none_and_malformed_ones_say_what_is_wrong() {
        let mut data = Map::new();
        assert_eq!(parse_key_record(&data, None), Ok(None));
        data.insert("private_key".into(), "x".into());
        assert_eq!(
            parse_key_record(&data, None),
            Err("no valid 'generation'".to_string())
        );
        data.insert("generation".into(), "2".into());
        assert_eq!(
            parse_key_record(&data, None),
            Err("no 'certificate'".to_string())
        );
        assert!(take_key(&mut Map::new()).is_err());
        for bad in ["", ".hidden", "a/b", "../x"] {
            assert_eq!(
                check_credential_name(bad).unwrap_err().kind(),
                ErrorKind::Config,
                "{bad}"
            );
        }
        check_credential_name("billing-sync_2.prod").unwrap();
    }
}
