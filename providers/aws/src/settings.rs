//! The AWS store's `[stores.NAME]` table in `rekey.toml`, as written and as validated into
//! [`AwsConfig`]. Credentials are never in it: they come from the AWS default chain.

use crate::config::{
    AwsConfig, DEFAULT_LOCK_TTL, DEFAULT_NAME_PREFIX, check_endpoint, check_name_prefix,
};
use rekey_api::config::{Spanned, Validator, text};
use serde::Deserialize;
use std::time::Duration;

/// A `[stores.NAME]` table of `kind = "aws"`, as written. Keys of other store kinds are refused
/// by serde, naming the key and the ones that apply.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    /// `"aws"`.
    pub kind: Spanned<String>,
    /// The region; unset takes the default chain's.
    pub region: Option<Spanned<String>>,
    /// An endpoint override (VPC endpoints, tests): `https://`, or `http://` on this machine.
    pub endpoint_url: Option<Spanned<String>>,
    /// Secret names are `<name_prefix>/<credential>`; default `rekey`.
    pub name_prefix: Option<Spanned<String>>,
    /// The KMS key for secrets rekey creates; unset uses `aws/secretsmanager`.
    pub kms_key_id: Option<Spanned<String>>,
    /// Whether rekey may create a missing secret; default true.
    pub create_missing: Option<Spanned<bool>>,
    /// The rotation lease's time to live in seconds, 1..=86400; default 1800.
    pub lock_ttl_secs: Option<Spanned<i64>>,
}

impl AwsSettings {
    /// Checks the settings of store `name`, recording every problem in `v`; `None` when they
    /// cannot make a store. Defaults as documented on the fields.
    pub fn validate(self, name: &str, v: &mut Validator) -> Option<AwsConfig> {
        let section = format!("stores.{name}");
        if !v.expect_kind(&self.kind, "aws", &section) {
            return None;
        }
        let before = v.problems().len();
        if let Some(url) = &self.endpoint_url {
            v.check(url.span(), check_endpoint(url.get_ref(), &section));
        }
        let name_prefix = match &self.name_prefix {
            Some(prefix) => v
                .check(prefix.span(), check_name_prefix(prefix.get_ref(), &section))
                .unwrap_or_default(),
            None => DEFAULT_NAME_PREFIX.to_string(),
        };
        let lock_ttl = v.positive(
            &self.lock_ttl_secs,
            DEFAULT_LOCK_TTL.as_secs() as i64,
            1..=86_400,
            "lock_ttl_secs",
        );
        (v.problems().len() == before).then(|| AwsConfig {
            region: text(&self.region),
            endpoint_url: text(&self.endpoint_url),
            name_prefix,
            kms_key_id: text(&self.kms_key_id),
            create_missing: self.create_missing.as_ref().is_none_or(|c| *c.get_ref()),
            lock_ttl: Duration::from_secs(lock_ttl as u64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(text: &str) -> (Option<AwsConfig>, Vec<String>) {
        rekey_testkit::settings::validate_store(text, "sm", AwsSettings::validate)
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let (config, problems) = validate("[stores.sm]\nkind = \"aws\"\n");
        assert_eq!(problems, Vec::<String>::new());
        assert_eq!(config.unwrap(), AwsConfig::default());
        let (config, _) = validate(
            "[stores.sm]\nkind = \"aws\"\nregion = \"eu-west-1\"\nendpoint_url = \"http://127.0.0.1:5000\"\n\
             name_prefix = \"/team/rekey/\"\nkms_key_id = \"alias/rekey\"\ncreate_missing = false\nlock_ttl_secs = 60\n",
        );
        assert_eq!(
            config.unwrap(),
            AwsConfig {
                region: Some("eu-west-1".into()),
                endpoint_url: Some("http://127.0.0.1:5000".into()),
                name_prefix: "team/rekey".into(),
                kms_key_id: Some("alias/rekey".into()),
                create_missing: false,
                lock_ttl: Duration::from_secs(60),
            }
        );
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_position() {
        let text = "[stores.sm]\nkind = \"aws\"\nendpoint_url = \"http://user:SECRET@10.0.0.1\"\n\
                    name_prefix = \"a b\"\nlock_ttl_secs = 0\n";
        let (config, problems) = validate(text);
        assert_eq!(config, None);
        assert_eq!(
            problems,
            [
                "/etc/rekey/rekey.toml:3:16: stores.sm: endpoint_url must use https (plain http is allowed only for loopback hosts)",
                "/etc/rekey/rekey.toml:4:15: stores.sm: name_prefix 'a b' is not a valid Secrets Manager name prefix",
                "/etc/rekey/rekey.toml:5:17: lock_ttl_secs = 0 is out of range; use 1..=86400",
            ]
        );
        let (_, problems) = validate(
            "[stores.sm]\nkind = \"aws\"\nendpoint_url = \"https://u:SECRET@vpce.example\"\n",
        );
        assert_eq!(
            problems,
            ["/etc/rekey/rekey.toml:3:16: stores.sm: endpoint_url must not carry credentials"]
        );
    }

    #[test]
    fn keys_of_other_store_kinds_are_refused_by_name() {
        let refusal = rekey_testkit::settings::refusal::<AwsSettings>(
            "[stores.sm]\nkind = \"aws\"\nmount = \"secret\"\n",
        );
        assert!(
            refusal.starts_with(
                "/etc/rekey/rekey.toml:3:1: unknown field `mount`, expected one of `kind`, `region`"
            ),
            "{refusal}"
        );
    }
}
