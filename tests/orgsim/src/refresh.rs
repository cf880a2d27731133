//! The OAuth 2.0 refresh token flow at the token endpoint
//! (`grant_type=refresh_token&refresh_token=…&client_id=…[&client_secret=…]`): a grant's refresh
//! token (an `OauthToken` row) buys an access token, and that row's `UseCount` and
//! `LastUsedDate` move.

use crate::state::OrgState;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// The `grant_type` of the flow.
pub(crate) const REFRESH_TOKEN: &str = "refresh_token";

/// A token-endpoint error: (`error`, `error_description`).
type GrantError = (String, String);

fn err(error: &str, description: &str) -> GrantError {
    (error.to_string(), description.to_string())
}

/// The user and app label of the grant a refresh request names.
pub(crate) fn named_login(
    st: &OrgState,
    params: &HashMap<String, String>,
) -> Option<(String, Option<String>)> {
    let token = params.get("refresh_token")?;
    let g = st.grants.iter().find(|g| g.refresh_token == *token)?;
    Some((g.user_id.clone(), st.app_label(&g.app_key)))
}

/// The refresh grant; a new session is created by login `login_id`.
pub(crate) fn grant(
    st: &mut OrgState,
    base_url: &str,
    params: &HashMap<String, String>,
    login_id: &str,
) -> Result<Value, GrantError> {
    let client_id = params.get("client_id").map_or("", String::as_str);
    let app = st
        .app_by_consumer_key(client_id)
        .ok_or_else(|| err("invalid_client_id", "client identifier invalid"))?;
    if !app.oauth_enabled {
        return Err(err(
            &st.settings.oauth_disabled_error,
            &st.settings.oauth_disabled_description,
        ));
    }
    let token = params.get("refresh_token").map_or("", String::as_str);
    let key = app.key();
    let user_id = st
        .grants
        .iter()
        .find(|g| g.refresh_token == token && g.app_key == key)
        .map(|g| g.user_id.clone())
        .ok_or_else(|| err("invalid_grant", "expired access/refresh token"))?;
    let (required, secret) = st.refresh_secret(&app);
    let given = params.get("client_secret").map(String::as_str);
    if required && (secret.is_none() || given != secret.as_deref()) {
        return Err(err("invalid_client", "invalid client credentials"));
    }
    let user = st
        .user_by_id(&user_id)
        .cloned()
        .ok_or_else(|| err("invalid_grant", "expired access/refresh token"))?;
    if !user.active {
        return Err(err("inactive_user", &st.settings.inactive_user_description));
    }
    let now = st.now();
    if let Some(g) = st.grants.iter_mut().find(|g| g.refresh_token == token) {
        g.use_count += 1;
        g.last_used = now;
    }
    let minutes = app
        .session_timeout_minutes
        .or_else(|| st.profile_timeout(&user))
        .unwrap_or(st.org.session_timeout_minutes);
    let session = st.session_for(&user.id, &key, i64::from(minutes) * 60, login_id);
    let id = format!("{base_url}/id/{}/{}", st.org.id, user.id);
    let issued_at = (now * 1000).to_string();
    // Salesforce signs `id` + `issued_at` with the consumer secret, so a client can tell the
    // answer came from the org.
    let signature = secret
        .map(|s| {
            STANDARD.encode(hmac_sha256(
                s.as_bytes(),
                format!("{id}{issued_at}").as_bytes(),
            ))
        })
        .unwrap_or_default();
    Ok(json!({
        "access_token": session.token,
        "signature": signature,
        "scope": app.scope,
        "instance_url": base_url,
        "id": id,
        "token_type": "Bearer",
        "issued_at": issued_at,
    }))
}

/// HMAC-SHA256 (RFC 2104).
pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_test_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
