//! Credentials whose keys are in custody: a custody store is the credential's only store, holds
//! certificates' keys only, and no consumer is handed the key.

use super::tests::GOOD;
use super::*;
use std::path::Path;

/// GOOD with billing's store keeping keys in Vault transit, then `extra` appended.
fn in_transit(extra: &str) -> std::result::Result<Config, String> {
    let text = GOOD.replace(
        "[stores.local]\nkind = \"file\"\npath = \"keys\"",
        "[stores.local]\nkind = \"vault_transit\"\naddress = \"https://vault.example:8200\"\n\n[stores.files]\nkind = \"file\"\npath = \"keys\"",
    );
    parse(&format!("{text}{extra}"), Path::new("rekey.toml")).map_err(|e| e.to_string())
}

#[test]
fn a_transit_store_keeps_the_credentials_keys_in_custody() {
    let config = in_transit("").unwrap();
    assert_eq!(
        config.stores["local"].custody(),
        Some(rekey_api::CustodyService::VaultTransit)
    );
    assert_eq!(config.stores["files"].custody(), None);
}

#[test]
fn a_custody_store_is_its_credentials_only_store() {
    let err = parse(
        &GOOD
            .replace(
                "[stores.local]\nkind = \"file\"\npath = \"keys\"",
                "[stores.local]\nkind = \"vault_transit\"\naddress = \"https://vault.example:8200\"\n\n[stores.files]\nkind = \"file\"\npath = \"keys\"",
            )
            .replace("store = \"local\"", "stores = [\"local\", \"files\"]"),
        Path::new("rekey.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("store 'local' keeps the keys in custody (kind = \"vault_transit\"), where they stay: list that store alone"),
        "{err}"
    );
    assert!(err.starts_with("rekey.toml:"), "{err}");
}

#[test]
fn consumers_handed_the_key_are_refused_where_they_are_declared() {
    let err = in_transit(
        "\n[[credentials.billing.consumers]]\nname = \"etl\"\nkind = \"file\"\nkey_path = \"k.pem\"\ncert_path = \"c.pem\"\n\n[[credentials.billing.consumers]]\nname = \"job\"\nkind = \"exec\"\ncommand = [\"/bin/true\"]\ndeliver_key = \"file\"\n",
    )
    .unwrap_err();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines[0].contains("consumers 'etl': a file consumer writes the private key to a file, but the keys of 'billing' are in custody (store 'local', kind = \"vault_transit\") and keys in custody are never handed out"), "{err}");
    assert!(
        lines[1].contains(
            "consumers 'job': an exec consumer with deliver_key is handed the private key"
        ),
        "{err}"
    );
    for line in lines {
        assert!(line.starts_with("rekey.toml:"), "{line}");
        assert!(
            line.contains("`rekey agent`") && line.contains("`rekey token billing`"),
            "{line}"
        );
    }
    // Consumers that read the store, or run without the key, are fine.
    in_transit(
        "\n[[credentials.billing.consumers]]\nname = \"etl\"\nkind = \"store\"\n\n[[credentials.billing.consumers]]\nname = \"job\"\nkind = \"exec\"\ncommand = [\"/bin/true\"]\n",
    )
    .unwrap();
}

#[test]
fn a_consumer_secret_is_never_kept_in_custody() {
    let err = in_transit("")
        .map(|_| ())
        .and_then(|()| {
            let text = GOOD
                .replace(
                    "[stores.local]\nkind = \"file\"\npath = \"keys\"",
                    "[stores.local]\nkind = \"vault_transit\"\naddress = \"https://vault.example:8200\"",
                )
                .replace("app_kind = \"connected_app\"", "kind = \"consumer_secret\"\napp_kind = \"external_client_app\"")
                .replace("username = \"integration@acme.example\"\n", "")
                .replace("subject = { cn = \"billing-sync\", o = \"Acme\" }\n", "");
            parse(&text, Path::new("rekey.toml")).map(|_| ()).map_err(|e| e.to_string())
        })
        .unwrap_err();
    assert!(
        err.contains("store 'local' (kind = \"vault_transit\") keeps private keys of certificates in custody; a consumer secret cannot be kept there"),
        "{err}"
    );
}
