//! `[orgs.NAME]`: how rekey reaches each org as an administrator.

use rekey_api::config::{Spanned, Validator};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The Salesforce API version rekey speaks unless an org says otherwise.
pub const DEFAULT_API_VERSION: &str = "67.0";

/// How rekey reaches one org as an administrator.
#[derive(Debug)]
pub struct OrgConfig {
    /// Token endpoint base (My Domain, login.salesforce.com, or the emulator).
    pub login_url: String,
    /// JWT `aud`; defaults to `login_url`.
    pub audience: String,
    /// Salesforce API version, e.g. `67.0`.
    pub api_version: String,
    /// The admin connection.
    pub admin: AdminConfig,
}

/// The values of `[orgs.NAME.admin] auth`, one per [`AdminConfig`] variant.
const ADMIN_METHODS: [&str; 3] = ["jwt", "access_token_env", "sf_cli"];

/// rekey's own admin credentials for an org.
#[derive(Debug)]
pub enum AdminConfig {
    /// JWT bearer with rekey's own admin key (never the integration key it rotates).
    Jwt {
        /// Consumer key of the admin app.
        consumer_key: String,
        /// Admin username.
        username: String,
        /// Path of the admin private key.
        key_file: PathBuf,
        /// `file:line` of the setting, for errors about the file.
        origin: String,
    },
    /// `SF_ACCESS_TOKEN` and `SF_INSTANCE_URL` from the environment.
    AccessTokenEnv,
    /// The session of an org the Salesforce CLI (`sf`) is logged in to.
    SfCli {
        /// The CLI's alias or username for the org (`--target-org`).
        target_org: String,
        /// `file:line:column` of the setting, for errors about the CLI's login.
        origin: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOrg {
    pub(super) login_url: Spanned<String>,
    pub(super) audience: Option<Spanned<String>>,
    pub(super) api_version: Option<Spanned<String>>,
    pub(super) admin: Spanned<RawAdmin>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub(super) auth: Spanned<String>,
    pub(super) consumer_key: Option<String>,
    pub(super) username: Option<String>,
    pub(super) key_file: Option<Spanned<String>>,
    pub(super) target_org: Option<Spanned<String>>,
}

pub(super) fn validate_orgs(
    orgs: &BTreeMap<String, Spanned<RawOrg>>,
    v: &mut Validator,
) -> BTreeMap<String, OrgConfig> {
    let mut out = BTreeMap::new();
    for (name, org) in orgs {
        let section = format!("orgs.{name}");
        let org = org.get_ref();
        let login_url = org.login_url.get_ref().trim_end_matches('/').to_string();
        v.endpoint(&org.login_url, "login_url", &section);
        let audience = match &org.audience {
            Some(a) => {
                v.endpoint(a, "audience", &section);
                a.get_ref().trim_end_matches('/').to_string()
            }
            None => login_url.clone(),
        };
        let api_version = match &org.api_version {
            Some(version) if !is_api_version(version.get_ref()) => {
                v.problem(
                    version.span(),
                    format!(
                        "api_version '{}' is not of the form 67.0",
                        version.get_ref()
                    ),
                );
                String::new()
            }
            Some(version) => version.get_ref().clone(),
            None => DEFAULT_API_VERSION.to_string(),
        };
        let admin = org.admin.get_ref();
        // A key of another method is a mistake about which one is in force: say so.
        let method = admin.auth.get_ref().as_str();
        for (key, present, method_of_key) in [
            ("consumer_key", admin.consumer_key.is_some(), "jwt"),
            ("username", admin.username.is_some(), "jwt"),
            ("key_file", admin.key_file.is_some(), "jwt"),
            ("target_org", admin.target_org.is_some(), "sf_cli"),
        ] {
            if present && method != method_of_key && ADMIN_METHODS.contains(&method) {
                v.problem(
                    admin.auth.span(),
                    format!("orgs.{name}.admin: {key} applies to auth = \"{method_of_key}\", not \"{method}\"; remove it or change auth"),
                );
            }
        }
        let admin = match method {
            "jwt" => match (&admin.consumer_key, &admin.username, &admin.key_file) {
                (Some(consumer_key), Some(username), Some(key_file)) => AdminConfig::Jwt {
                    consumer_key: consumer_key.clone(),
                    username: username.clone(),
                    key_file: v.path(key_file.get_ref()),
                    origin: v.at(key_file.span()),
                },
                _ => {
                    v.problem(org.admin.span(), format!("orgs.{name}.admin: auth = \"jwt\" needs consumer_key, username and key_file"));
                    continue;
                }
            },
            "access_token_env" => AdminConfig::AccessTokenEnv,
            "sf_cli" => match &admin.target_org {
                Some(target) if !target.get_ref().trim().is_empty() => AdminConfig::SfCli {
                    target_org: target.get_ref().trim().to_string(),
                    origin: v.at(target.span()),
                },
                _ => {
                    v.problem(org.admin.span(), format!("orgs.{name}.admin: auth = \"sf_cli\" needs target_org = \"ALIAS_OR_USERNAME\" (as `sf org list` shows it)"));
                    continue;
                }
            },
            other => {
                v.problem(
                    admin.auth.span(),
                    format!(
                        "unknown admin auth '{other}'; use one of \"{}\"",
                        ADMIN_METHODS.join("\", \"")
                    ),
                );
                continue;
            }
        };
        out.insert(
            name.clone(),
            OrgConfig {
                login_url,
                audience,
                api_version,
                admin,
            },
        );
    }
    out
}

pub(super) fn is_api_version(v: &str) -> bool {
    v.split_once('.').is_some_and(|(major, minor)| {
        !major.is_empty() && major.bytes().all(|b| b.is_ascii_digit()) && minor == "0"
    })
}
