//! The JSON record remote stores (Vault, AWS) keep for each version: the schema consumers read,
//! defined once so every store writes and reads the same thing. A key:
//!
//! ```json
//! { "private_key": "<PEM>", "certificate": "<PEM>", "generation": "3",
//!   "fingerprint": "<sha256 hex of the certificate DER>", "not_after": "<RFC 3339>",
//!   "rotation_id": "<id>", "created_at": "<RFC 3339>" }
//! ```
//!
//! A key in custody: `custody` (a [`crate::KeyHandle`]: `service`, `key_id`, `version`,
//! `algorithm`) in place of `private_key`, the rest as for a key.
//!
//! A consumer secret (the field names AWS's managed Salesforce secret uses for the pair):
//!
//! ```json
//! { "consumerKey": "<client_id>", "consumerSecret": "<secret>", "generation": "3",
//!   "fingerprint": "<ConsumerSecret::fingerprint hex>", "rotation_id": "<id>",
//!   "created_at": "<RFC 3339>" }
//! ```

use crate::{
    Certificate, ConsumerSecret, CustodyKey, Error, ErrorKind, Generation, KeyHandle, KeyMaterial,
    Material, Public, Result, RotationId, VersionInfo,
};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

const CONSUMER_KEY: &str = "consumerKey";
const CONSUMER_SECRET: &str = "consumerSecret";
const CUSTODY: &str = "custody";

/// The record for a version. The returned value holds the secret: callers send it to their
/// store and drop it; they never log or print it. `Unexpected` when the material and the public
/// half are of different kinds.
pub fn version_record(info: &VersionInfo, material: &Material) -> Result<Value> {
    let mut record = json!({
        "generation": info.generation.0.to_string(),
        "fingerprint": info.public.fingerprint().to_hex(),
        "rotation_id": info.rotation_id.as_ref().map(|r| r.0.clone()).unwrap_or_default(),
        "created_at": info.created_at.to_rfc3339(),
    });
    let fields = record.as_object_mut().expect("a JSON object");
    match (material, &info.public) {
        (Material::Key(key), Public::Certificate(certificate)) => {
            fields.insert("private_key".into(), key.expose_secret_pem().into());
            fields.insert("certificate".into(), certificate.pem().into());
            fields.insert(
                "not_after".into(),
                certificate.not_after.to_rfc3339().into(),
            );
        }
        (Material::Custody(key), Public::Certificate(certificate)) => {
            let handle = serde_json::to_value(key.handle()).map_err(|e| {
                Error::new(
                    ErrorKind::Unexpected,
                    format!("cannot encode a key handle: {e}"),
                )
            })?;
            fields.insert(CUSTODY.into(), handle);
            fields.insert("certificate".into(), certificate.pem().into());
            fields.insert(
                "not_after".into(),
                certificate.not_after.to_rfc3339().into(),
            );
        }
        (Material::Consumer(secret), Public::Consumer(_)) => {
            fields.insert(CONSUMER_KEY.into(), secret.key().into());
            fields.insert(CONSUMER_SECRET.into(), secret.expose_secret().into());
        }
        _ => {
            return Err(Error::new(
                ErrorKind::Unexpected,
                format!(
                    "generation {} pairs a {} secret with a {} public half",
                    info.generation,
                    material.kind(),
                    info.public.kind()
                ),
            ));
        }
    }
    Ok(record)
}

/// What a record says about its version, without the secret. `Ok(None)` for a record that holds
/// no secret (a placeholder or a cleared stage); `Err` describes what is malformed, for the
/// caller to wrap with the store, path and version. `created_fallback` is used when the record
/// has no `created_at` (the store's own version timestamp).
pub fn parse_version_record(
    data: &Map<String, Value>,
    created_fallback: Option<DateTime<Utc>>,
) -> std::result::Result<Option<VersionInfo>, String> {
    let is_key = data.contains_key("private_key") || data.contains_key(CUSTODY);
    if !is_key && !data.contains_key(CONSUMER_SECRET) {
        return Ok(None);
    }
    let generation = match data.get("generation") {
        Some(Value::String(s)) => s.parse::<u64>().ok(),
        Some(Value::Number(n)) => n.as_u64(),
        _ => None,
    }
    .ok_or("no valid 'generation'")?;
    let public = if is_key {
        let pem = data
            .get("certificate")
            .and_then(Value::as_str)
            .ok_or("no 'certificate'")?;
        Public::Certificate(
            Certificate::from_pem(pem).map_err(|e| format!("a bad certificate ({e})"))?,
        )
    } else {
        Public::Consumer(consumer_of(data).map_err(|e| e.to_string())?.public())
    };
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
        public,
        created_at,
        rotation_id,
    }))
}

/// The consumer key and secret a record holds.
fn consumer_of(data: &Map<String, Value>) -> Result<ConsumerSecret> {
    let field = |name: &str| {
        data.get(name).and_then(Value::as_str).ok_or_else(|| {
            Error::new(
                ErrorKind::Unexpected,
                format!("the record holds no '{name}' string"),
            )
        })
    };
    ConsumerSecret::new(field(CONSUMER_KEY)?, field(CONSUMER_SECRET)?)
}

/// Takes the secret out of a record (the record no longer holds the private key afterwards).
pub fn take_material(data: &mut Map<String, Value>) -> Result<Material> {
    if data.contains_key(CONSUMER_SECRET) {
        let secret = consumer_of(data)?;
        if let Some(v) = data.get_mut(CONSUMER_SECRET) {
            v.take();
        }
        return Ok(Material::Consumer(secret));
    }
    if let Some(handle) = data.get(CUSTODY) {
        let handle: KeyHandle = serde_json::from_value(handle.clone()).map_err(|e| {
            Error::new(
                ErrorKind::Unexpected,
                format!("the record's 'custody' is not a key handle: {e}"),
            )
        })?;
        return Ok(Material::Custody(CustodyKey::new(handle)));
    }
    match data.get_mut("private_key").map(Value::take) {
        Some(Value::String(pem)) => KeyMaterial::from_pem(pem).map(Material::Key),
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
        assert_eq!(parse_version_record(&data, None), Ok(None));
        data.insert("private_key".into(), "x".into());
        assert_eq!(
            parse_version_record(&data, None),
            Err("no valid 'generation'".to_string())
        );
        data.insert("generation".into(), "2".into());
        assert_eq!(
            parse_version_record(&data, None),
            Err("no 'certificate'".to_string())
        );
        assert!(take_material(&mut Map::new()).is_err());
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
