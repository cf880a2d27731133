//! The AWS store's `[stores.NAME]` table in `rekey.toml` (`kind = "aws"`, or `kind = "aws_kms"`
//! for keys in custody in KMS), as written and as validated into [`AwsConfig`]. Credentials are
//! never in it: they come from the AWS default chain.

use crate::config::{
    AwsConfig, DEFAULT_KMS_ALIAS_PREFIX, DEFAULT_LOCK_TTL, DEFAULT_NAME_PREFIX, KeyPolicy,
    KmsConfig, check_alias_prefix, check_endpoint, check_name_prefix,
};
use rekey_api::config::{Spanned, Validator, span, text};
use serde::Deserialize;
use std::time::Duration;

/// A `[stores.NAME]` table of `kind = "aws"` or `kind = "aws_kms"`, as written. Keys of other store kinds are refused
/// by serde, naming the key and the ones that apply.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    /// `"aws"`, or `"aws_kms"` for keys in custody in KMS.
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
    /// `aws_kms` only: KMS aliases are `alias/<kms_alias_prefix><credential>/<generation>`;
    /// default `rekey/`.
    pub kms_alias_prefix: Option<Spanned<String>>,
    /// `aws_kms` only: a JSON key policy for every key rekey creates, relative to the config's
    /// folder; unset leaves KMS's default key policy.
    pub kms_key_policy_file: Option<Spanned<String>>,
}

impl AwsSettings {
    /// Checks the settings of store `name`, recording every problem in `v`; `None` when they
    /// cannot make a store. Defaults as documented on the fields.
    pub fn validate(self, name: &str, v: &mut Validator) -> Option<AwsConfig> {
        let section = format!("stores.{name}");
        let custody = self.kind.get_ref() == "aws_kms";
        let kind = if custody { "aws_kms" } else { "aws" };
        if !v.expect_kind(&self.kind, kind, &section) {
            return None;
        }
        let before = v.problems().len();
        let kms = if custody {
            Some(self.kms(&section, v))
        } else {
            v.does_not_apply(
                &section,
                "kind = \"aws\" (keys in custody in KMS take kind = \"aws_kms\")",
                &[
                    ("kms_alias_prefix", span(&self.kms_alias_prefix)),
                    ("kms_key_policy_file", span(&self.kms_key_policy_file)),
                ],
            );
            None
        };
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
            kms,
        })
    }

    /// The `aws_kms` keys; a problem is recorded at the key, and the defaults stand in.
    fn kms(&self, section: &str, v: &mut Validator) -> KmsConfig {
        let alias_prefix = match &self.kms_alias_prefix {
            Some(prefix) => v
                .check(prefix.span(), check_alias_prefix(prefix.get_ref(), section))
                .unwrap_or_default(),
            None => DEFAULT_KMS_ALIAS_PREFIX.to_string(),
        };
        let key_policy = self.kms_key_policy_file.as_ref().and_then(|file| {
            let path = v.path(file.get_ref());
            v.check(file.span(), KeyPolicy::read(path, section))
        });
        KmsConfig {
            alias_prefix,
            key_policy,
        }
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
                kms: None,
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

    #[test]
    fn aws_kms_takes_every_aws_key_and_its_own() {
        let (config, problems) = validate(
            "[stores.sm]\nkind = \"aws_kms\"\nregion = \"eu-west-1\"\nname_prefix = \"team\"\nlock_ttl_secs = 60\n",
        );
        assert_eq!(problems, Vec::<String>::new());
        let config = config.unwrap();
        assert_eq!(config.kms, Some(KmsConfig::default()));
        assert_eq!(config.kms.unwrap().alias_prefix, "rekey/");
        assert_eq!(
            (
                config.region.as_deref(),
                config.name_prefix.as_str(),
                config.lock_ttl
            ),
            (Some("eu-west-1"), "team", Duration::from_secs(60))
        );

        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("policy.json");
        std::fs::write(&policy, r#"{"Version": "2012-10-17", "Statement": []}"#).unwrap();
        let text = format!(
            "[stores.sm]\nkind = \"aws_kms\"\nkms_alias_prefix = \"team/keys/\"\nkms_key_policy_file = \"{}\"\n",
            policy.display()
        );
        let (config, problems) = validate(&text);
        assert_eq!(problems, Vec::<String>::new());
        let kms = config.unwrap().kms.unwrap();
        assert_eq!(kms.alias_prefix, "team/keys/");
        let read = kms.key_policy.unwrap();
        assert_eq!(read.path, policy);
        assert!(read.document.contains("2012-10-17"));
    }

    #[test]
    fn a_key_policy_file_is_relative_to_the_config_and_checked_at_load() {
        // The test config is /etc/rekey/rekey.toml: a relative path resolves there.
        let (_, problems) = validate(
            "[stores.sm]\nkind = \"aws_kms\"\nkms_key_policy_file = \"no-such-policy.json\"\n",
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with(
                "/etc/rekey/rekey.toml:3:23: stores.sm: kms_key_policy_file /etc/rekey/no-such-policy.json cannot be read"
            ),
            "{problems:?}"
        );

        let dir = tempfile::tempdir().unwrap();
        for (body, says) in [
            ("{\"Version\": ", "is not valid JSON"),
            ("[1, 2]", "is not a JSON object"),
        ] {
            let policy = dir.path().join("policy.json");
            std::fs::write(&policy, body).unwrap();
            let text = format!(
                "[stores.sm]\nkind = \"aws_kms\"\nkms_alias_prefix = \"aws/x\"\nkms_key_policy_file = \"{}\"\n",
                policy.display()
            );
            let (config, problems) = validate(&text);
            assert_eq!(config, None);
            assert_eq!(problems.len(), 2, "{problems:?}");
            assert_eq!(
                problems[0],
                "/etc/rekey/rekey.toml:3:20: stores.sm: kms_alias_prefix 'aws/x' cannot start a KMS alias name"
            );
            assert!(
                problems[1]
                    .starts_with("/etc/rekey/rekey.toml:4:23: stores.sm: kms_key_policy_file ")
                    && problems[1].contains(says),
                "{problems:?}"
            );
        }
    }

    #[test]
    fn kms_keys_are_refused_on_kind_aws_and_other_kinds_are_refused() {
        let (config, problems) = validate(
            "[stores.sm]\nkind = \"aws\"\nkms_alias_prefix = \"rekey/\"\nkms_key_policy_file = \"p.json\"\n",
        );
        assert_eq!(config, None);
        assert_eq!(
            problems,
            [
                "/etc/rekey/rekey.toml:3:20: stores.sm: 'kms_alias_prefix' does not apply to kind = \"aws\" (keys in custody in KMS take kind = \"aws_kms\")",
                "/etc/rekey/rekey.toml:4:23: stores.sm: 'kms_key_policy_file' does not apply to kind = \"aws\" (keys in custody in KMS take kind = \"aws_kms\")",
            ]
        );
        let (config, problems) = validate("[stores.sm]\nkind = \"vault_transit\"\n");
        assert_eq!(config, None);
        assert_eq!(
            problems,
            [
                "/etc/rekey/rekey.toml:2:8: stores.sm: kind = \"vault_transit\" where \"aws\" was expected"
            ]
        );
    }
}
