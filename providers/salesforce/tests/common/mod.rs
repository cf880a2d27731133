//! Shared fixtures for the orgsim tests: keys generated at test time, a seeded org with an admin
//! app, an integration Connected App and an integration External Client App, and targets on it.

#![allow(dead_code, unreachable_pub)] // each test binary uses a different subset

use orgsim::{OrgSim, Seed};
use rekey_api::{Certificate, KeyMaterial, SecretString};
use rekey_salesforce::{AdminAuth, AppKind, SalesforceConfig, SalesforceTarget};
use serde_json::{Value, json};
use std::time::Duration;

pub const ADMIN_USER: &str = "admin@acme.test";
/// May log in through the admin app but lacks Modify All Data / Modify Metadata.
pub const AUDITOR_USER: &str = "auditor@acme.test";
pub const INTEGRATION_USER: &str = "integration@acme.test";
/// May read and deploy metadata but lacks Manage Users and Customize Application.
pub const DEPLOYER_USER: &str = "deployer@acme.test";
pub const ADMIN_APP_KEY: &str = "3MVG9adminApp.key_0001";
pub const CA: &str = "Billing_Sync";
pub const CA_KEY: &str = "3MVG9billingSync.key_0002";
pub const ECA: &str = "Billing_ECA";
pub const ECA_KEY: &str = "3MVG9billingEca.key_0003";
pub const ECA_GLOBAL_MEMBER: &str = "Billing_ECA_glbloauth";

/// An RSA-2048 key and a self-signed certificate for it.
pub struct Pair {
    pub key_pem: String,
    pub cert_pem: String,
}

impl Pair {
    pub fn generate(cn: &str) -> Pair {
        let kp =
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.self_signed(&kp).unwrap();
        Pair {
            key_pem: kp.serialize_pem(),
            cert_pem: cert.pem(),
        }
    }

    pub fn key(&self) -> KeyMaterial {
        KeyMaterial::from_pem(self.key_pem.clone()).unwrap()
    }

    pub fn cert(&self) -> Certificate {
        Certificate::from_pem(&self.cert_pem).unwrap()
    }
}

/// The keys of one test org.
pub struct Org {
    pub sim: OrgSim,
    pub admin: Pair,
    /// The integration key both apps trust at the start.
    pub old: Pair,
}

/// The ECA's plugin switches: OAuth on, SAML off (a field the kill switch must keep).
const ECA_POLICIES_TOML: &str = r#"policies = '''<?xml version="1.0" encoding="UTF-8"?>
<ExtlClntAppConfigurablePolicies xmlns="http://soap.sforce.com/2006/04/metadata">
    <externalClientApplication>Billing_ECA</externalClientApplication>
    <isEnabled>true</isEnabled>
    <isOauthPluginEnabled>true</isOauthPluginEnabled>
    <isSamlPluginEnabled>false</isSamlPluginEnabled>
</ExtlClntAppConfigurablePolicies>
'''
"#;

fn seed_toml(admin: &Pair, old: &Pair, settings: &str, eca_policies: bool) -> String {
    let policies = if eca_policies { ECA_POLICIES_TOML } else { "" };
    format!(
        r#"
[org]
id = "00D000000000001EAA"
name = "Acme"

[settings]
{settings}

[[profiles]]
name = "System Administrator"
permissions = ["ModifyAllData", "ManageUsers", "CustomizeApplication", "ApiEnabled"]

[[profiles]]
name = "Auditor"
permissions = ["ApiEnabled"]

[[profiles]]
name = "Deployer"
permissions = ["ModifyMetadata", "ApiEnabled"]

[[profiles]]
name = "Billing Integration"
permissions = ["ApiEnabled"]

[[users]]
username = "{ADMIN_USER}"
profile = "System Administrator"

[[users]]
username = "{AUDITOR_USER}"
profile = "Auditor"

[[users]]
username = "{DEPLOYER_USER}"
profile = "Deployer"

[[users]]
username = "{INTEGRATION_USER}"
profile = "Billing Integration"

[[connected_apps]]
full_name = "Rekey_Admin"
certificate = '''{admin_cert}'''
metadata = '''<?xml version="1.0" encoding="UTF-8"?>
<ConnectedApp xmlns="http://soap.sforce.com/2006/04/metadata">
    <contactEmail>security@acme.test</contactEmail>
    <label>Rekey Admin</label>
    <oauthConfig>
        <callbackUrl>https://localhost/unused</callbackUrl>
        <consumerKey>{ADMIN_APP_KEY}</consumerKey>
        <isAdminApproved>true</isAdminApproved>
        <scopes>Api</scopes>
    </oauthConfig>
    <profileName>System Administrator</profileName>
    <profileName>Auditor</profileName>
    <profileName>Deployer</profileName>
    <sessionPolicy>
        <sessionTimeout>1</sessionTimeout>
    </sessionPolicy>
</ConnectedApp>
'''

[[connected_apps]]
full_name = "{CA}"
metadata = '''<?xml version="1.0" encoding="UTF-8"?>
<ConnectedApp xmlns="http://soap.sforce.com/2006/04/metadata">
    <contactEmail>platform-security@acme.test</contactEmail>
    <description>Server-to-server sync &amp; billing, JWT bearer</description>
    <label>Billing Sync</label>
    <oauthConfig>
        <callbackUrl>https://localhost/unused</callbackUrl>
        <certificate>{old_cert}</certificate>
        <consumerKey>{CA_KEY}</consumerKey>
        <isAdminApproved>true</isAdminApproved>
        <isConsumerSecretOptional>false</isConsumerSecretOptional>
        <isIntrospectAllTokens>false</isIntrospectAllTokens>
        <scopes>Api</scopes>
        <scopes>RefreshToken</scopes>
    </oauthConfig>
    <oauthPolicy>
        <ipRelaxation>ENFORCE</ipRelaxation>
        <refreshTokenPolicy>infinite</refreshTokenPolicy>
    </oauthPolicy>
    <profileName>Billing Integration</profileName>
    <sessionPolicy>
        <sessionTimeout>15</sessionTimeout>
    </sessionPolicy>
</ConnectedApp>
'''

[[external_client_apps]]
name = "{ECA}"
header = '''<?xml version="1.0" encoding="UTF-8"?>
<ExternalClientApplication xmlns="http://soap.sforce.com/2006/04/metadata">
    <contactEmail>platform-security@acme.test</contactEmail>
    <description>Billing over an ECA</description>
    <distributionState>Local</distributionState>
    <isProtected>false</isProtected>
    <label>Billing ECA</label>
</ExternalClientApplication>
'''
oauth_settings = '''<?xml version="1.0" encoding="UTF-8"?>
<ExtlClntAppOauthSettings xmlns="http://soap.sforce.com/2006/04/metadata">
    <commaSeparatedOauthScopes>Api, RefreshToken</commaSeparatedOauthScopes>
    <externalClientApplication>{ECA}</externalClientApplication>
    <label>Billing ECA OAuth</label>
</ExtlClntAppOauthSettings>
'''
global_oauth_settings = '''<?xml version="1.0" encoding="UTF-8"?>
<ExtlClntAppGlobalOauthSettings xmlns="http://soap.sforce.com/2006/04/metadata">
    <callbackUrl>https://localhost/unused</callbackUrl>
    <certificate>{old_cert}</certificate>
    <consumerKey>{ECA_KEY}</consumerKey>
    <externalClientApplication>{ECA}</externalClientApplication>
    <isConsumerSecretOptional>false</isConsumerSecretOptional>
    <isIntrospectAllTokens>false</isIntrospectAllTokens>
    <isPkceRequired>true</isPkceRequired>
    <isSecretRequiredForRefreshToken>true</isSecretRequiredForRefreshToken>
    <label>Billing ECA Global OAuth</label>
    <shouldRotateConsumerKey>false</shouldRotateConsumerKey>
    <shouldRotateConsumerSecret>false</shouldRotateConsumerSecret>
</ExtlClntAppGlobalOauthSettings>
'''
oauth_policies = '''<?xml version="1.0" encoding="UTF-8"?>
<ExtlClntAppOauthConfigurablePolicies xmlns="http://soap.sforce.com/2006/04/metadata">
    <commaSeparatedProfile>Billing Integration</commaSeparatedProfile>
    <externalClientApplication>{ECA}</externalClientApplication>
    <ipRelaxationPolicyType>Enforce</ipRelaxationPolicyType>
    <label>Billing ECA Policies</label>
    <permittedUsersPolicyType>AdminApprovedPreAuthorized</permittedUsersPolicyType>
    <refreshTokenPolicyType>Infinite</refreshTokenPolicyType>
    <sessionTimeoutInMinutes>15</sessionTimeoutInMinutes>
</ExtlClntAppOauthConfigurablePolicies>
'''
{policies}
"#,
        admin_cert = admin.cert_pem.trim(),
        old_cert = old.cert_pem.trim(),
    )
}

impl Org {
    /// A fresh emulator with generated keys.
    pub async fn start() -> Org {
        Org::start_with("").await
    }

    /// A fresh emulator with extra `[settings]` lines.
    pub async fn start_with(settings: &str) -> Org {
        Org::start_seeded(settings, true).await
    }

    /// A fresh emulator whose ECA has no `ExtlClntAppConfigurablePolicies` component.
    pub async fn start_without_eca_policies() -> Org {
        Org::start_seeded("", false).await
    }

    /// A fresh emulator with extra `[settings]` lines and extra seed tables (more users,
    /// profiles, apps) after the common ones.
    pub async fn start_with_extra(settings: &str, extra: &str) -> Org {
        Org::start_full(settings, true, extra).await
    }

    async fn start_seeded(settings: &str, eca_policies: bool) -> Org {
        Org::start_full(settings, eca_policies, "").await
    }

    async fn start_full(settings: &str, eca_policies: bool, extra: &str) -> Org {
        let admin = Pair::generate("rekey admin");
        let old = Pair::generate("billing integration 1");
        let toml = seed_toml(&admin, &old, settings, eca_policies) + extra;
        let seed = Seed::from_toml_str(&toml, std::path::Path::new(".")).unwrap();
        let sim = OrgSim::start(seed).await.unwrap();
        Org { sim, admin, old }
    }

    pub fn config(&self, kind: AppKind, admin: AdminAuth) -> SalesforceConfig {
        let base = self.sim.base_url();
        SalesforceConfig {
            org: "acme".into(),
            login_url: base.clone(),
            audience: base,
            api_version: "67.0".into(),
            admin: admin.into(),
            app_kind: kind,
            app: match kind {
                AppKind::ConnectedApp => CA.into(),
                AppKind::ExternalClientApp => ECA.into(),
            },
            integration_username: INTEGRATION_USER.into(),
            consumer_key: None,
            // Hang guards only (no test here relies on them running out, except by setting its
            // own): a loaded 2-core machine running the whole suite can stall the emulator
            // for seconds.
            deploy_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(60),
        }
    }

    /// The admin login rekey is configured with: the admin user through the admin app.
    pub fn jwt_admin(&self) -> AdminAuth {
        self.jwt_admin_as(ADMIN_USER, &self.admin)
    }

    /// A JWT login through the admin app as `username`, signed with `key`.
    pub fn jwt_admin_as(&self, username: &str, key: &Pair) -> AdminAuth {
        AdminAuth::Jwt {
            consumer_key: ADMIN_APP_KEY.into(),
            username: username.into(),
            key: key.key(),
        }
    }

    /// A target on `kind`'s app that logs in with `admin`.
    pub fn target_as(&self, kind: AppKind, admin: AdminAuth) -> SalesforceTarget {
        SalesforceTarget::new(self.config(kind, admin)).unwrap()
    }

    /// A target on `kind`'s app that logs in with `admin`, its configuration changed by `adjust`
    /// first (another app or integration user, a shorter timeout, …).
    pub fn target_with(
        &self,
        kind: AppKind,
        admin: AdminAuth,
        adjust: impl FnOnce(&mut SalesforceConfig),
    ) -> SalesforceTarget {
        let mut config = self.config(kind, admin);
        adjust(&mut config);
        SalesforceTarget::new(config).unwrap()
    }

    /// A target on `kind`'s app with rekey's own JWT admin login.
    pub fn target(&self, kind: AppKind) -> SalesforceTarget {
        self.target_as(kind, self.jwt_admin())
    }

    /// An admin login with a bare access token (the sf CLI user's way).
    pub fn token_admin(&self, token: &str) -> AdminAuth {
        AdminAuth::AccessToken {
            token: SecretString::new(token),
            instance_url: self.sim.base_url(),
        }
    }

    /// A target logged in with a bare access token.
    pub fn token_target(&self, kind: AppKind, token: &str) -> SalesforceTarget {
        self.target_as(kind, self.token_admin(token))
    }

    /// Mints an admin access token by hand, as `sf org login jwt` would.
    pub async fn admin_access_token(&self) -> String {
        let base = self.sim.base_url();
        let claims = json!({
            "iss": ADMIN_APP_KEY,
            "sub": ADMIN_USER,
            "aud": base,
            "exp": chrono::Utc::now().timestamp() + 180,
        });
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(self.admin.key_pem.as_bytes()).unwrap();
        let jwt = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &key,
        )
        .unwrap();
        let resp = json_answer(
            reqwest::Client::new()
                .post(format!("{base}/services/oauth2/token"))
                .form(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", &jwt),
                ]),
        )
        .await;
        resp["access_token"]
            .as_str()
            .expect("admin token")
            .to_string()
    }

    /// A JWT-bearer grant for `sub` through the app with consumer key `iss`, signed with `key`,
    /// as any client (or an attacker holding the key) would make it: (status, JSON body).
    pub async fn mint(&self, iss: &str, sub: &str, key: &Pair) -> (u16, Value) {
        let claims = json!({
            "iss": iss,
            "sub": sub,
            "aud": self.sim.base_url(),
            "exp": chrono::Utc::now().timestamp() + 180,
        });
        let encoding = jsonwebtoken::EncodingKey::from_rsa_pem(key.key_pem.as_bytes()).unwrap();
        let jwt = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &encoding,
        )
        .unwrap();
        let (status, body) = self.sim.jwt_grant(&jwt).await;
        (status, serde_json::from_str(&body).unwrap())
    }

    /// An access token of the integration user through `kind`'s app, signed with the old key.
    pub async fn integration_token(&self, kind: AppKind) -> String {
        let iss = match kind {
            AppKind::ConnectedApp => CA_KEY,
            AppKind::ExternalClientApp => ECA_KEY,
        };
        let (status, body) = self.mint(iss, INTEGRATION_USER, &self.old).await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_string()
    }

    /// How many calls with this method and path the emulator has seen.
    pub fn calls_to(&self, method: &str, path: &str) -> usize {
        self.sim
            .calls()
            .iter()
            .filter(|c| c.method == method && c.path == path)
            .count()
    }

    /// How many token requests the emulator has seen.
    pub fn token_posts(&self) -> usize {
        self.sim
            .calls()
            .iter()
            .filter(|c| c.path == "/services/oauth2/token")
            .count()
    }

    /// How many deployRequest POSTs the emulator has seen.
    pub fn deploy_posts(&self) -> usize {
        self.sim
            .calls()
            .iter()
            .filter(|c| c.method == "POST" && c.path.ends_with("/metadata/deployRequest"))
            .count()
    }
}

/// Sends `request` and parses the JSON answer.
async fn json_answer(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

/// The deploys the emulator ran, in order, as (id, checkOnly): ids come from the status polls in
/// the call log, checkOnly from asking the emulator's deployRequest resource.
pub async fn deploys(org: &Org) -> Vec<(String, bool)> {
    let mut ids: Vec<String> = Vec::new();
    for call in org.sim.calls() {
        if let Some((_, id)) = call.path.split_once("/metadata/deployRequest/")
            && !ids.iter().any(|i| i == id)
        {
            ids.push(id.to_string());
        }
    }
    let token = org.admin_access_token().await;
    let mut out = Vec::new();
    for id in ids {
        let v = json_answer(
            reqwest::Client::new()
                .get(format!(
                    "{}/services/data/v67.0/metadata/deployRequest/{id}",
                    org.sim.base_url()
                ))
                .bearer_auth(&token),
        )
        .await;
        let check_only = &v["deployResult"]["checkOnly"];
        out.push((id, check_only == true || check_only == "true"));
    }
    out
}

/// A metadata document with its `certificate` elements removed, for "only the certificate
/// changed" comparisons.
pub fn without_certificate(xml: &str) -> String {
    let mut out = String::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<certificate>") {
        out.push_str(&rest[..start]);
        let end =
            rest[start..].find("</certificate>").expect("closed") + start + "</certificate>".len();
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}
