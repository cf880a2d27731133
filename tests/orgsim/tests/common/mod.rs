//! Shared helpers for orgsim's integration tests: keys and certificates generated at test
//! time, a standard seed, JWT signing, token requests, deploy zips and SOAP calls.

#![allow(dead_code, unreachable_pub)] // each test binary uses a different subset

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use orgsim::{OrgSim, Seed, Settings};
use rcgen::{CertificateParams, KeyPair, PKCS_RSA_SHA256, RsaKeySize};
use reqwest::Method;
use serde_json::{Value, json};
use std::io::Write;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub mod consumers;
#[allow(unused_imports)] // only the consumer-credential test binaries use it
pub use consumers::*;

/// An RSA-2048 key and a self-signed certificate for it.
pub struct KeyCert {
    pub key_pem: String,
    pub cert_pem: String,
}

fn generate() -> KeyCert {
    let kp = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048).unwrap();
    let cert = CertificateParams::new(vec!["orgsim-test".to_string()])
        .unwrap()
        .self_signed(&kp)
        .unwrap();
    KeyCert {
        key_pem: kp.serialize_pem(),
        cert_pem: cert.pem(),
    }
}

/// Key generation is slow in debug builds, so each test binary makes three and shares them.
pub fn keys() -> &'static [KeyCert; 3] {
    static KEYS: OnceLock<[KeyCert; 3]> = OnceLock::new();
    KEYS.get_or_init(|| [generate(), generate(), generate()])
}

pub const ORG_ID: &str = "00D5g000000ACMEEAA";
pub const CA_KEY: &str = "3MVG9billingSyncKey0001";
pub const SELF_CA_KEY: &str = "3MVG9selfAuthKey000002";
pub const ECA_KEY: &str = "3MVG9ecaKey0000000003";
pub const ECA_SECRET: &str = "ECASECRET123456789";
pub const LOGIN: &str = "https://login.salesforce.com";
pub const TEST_HOST: &str = "https://test.salesforce.com";
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
pub const DEPLOY_REQUEST: &str = "/services/data/v67.0/metadata/deployRequest";
/// The REST root of the current API version.
pub const V: &str = "/services/data/v67.0";

/// ConnectedApp XML for the admin-approved test app (certificate from key 0 is added by the seed).
pub fn billing_ca_xml(extra: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<ConnectedApp xmlns="http://soap.sforce.com/2006/04/metadata">
    <contactEmail>ops@acme.example</contactEmail>
    <label>Billing Sync</label>
    <oauthConfig>
        <callbackUrl>https://localhost/unused</callbackUrl>
        <consumerKey>{CA_KEY}</consumerKey>
        <consumerSecret>CASECRET0001</consumerSecret>
        <isAdminApproved>true</isAdminApproved>
        <scopes>Api</scopes>
        <scopes>RefreshToken</scopes>
    </oauthConfig>
    <permissionSetName>Billing_Integration_Access</permissionSetName>
    <profileName>Billing Integration</profileName>
    <profileName>System Administrator</profileName>
    {extra}
</ConnectedApp>"#
    )
}

/// `xml` (a ConnectedApp) with `cert` in its WSDL place: after callbackUrl, before consumerKey.
pub fn with_cert(xml: &str, cert: &str) -> String {
    xml.replace(
        "<consumerKey>",
        &format!("<certificate>{cert}</certificate><consumerKey>"),
    )
}

/// A deploy zip holding `xml` as the Billing_Sync ConnectedApp.
pub fn ca_zip(xml: &str) -> Vec<u8> {
    zip(&[
        ("package.xml", &package(&[("ConnectedApp", "Billing_Sync")])),
        ("connectedApps/Billing_Sync.connectedApp", xml),
    ])
}

/// A deploy zip putting key `key`'s certificate on Billing_Sync, everything else as seeded.
pub fn billing_cert_zip(key: usize) -> Vec<u8> {
    ca_zip(&with_cert(&billing_ca_xml(""), &keys()[key].cert_pem))
}

/// A deploy zip holding `xml` as Billing_ECA's global OAuth settings.
pub fn eca_global_zip(xml: &str) -> Vec<u8> {
    zip(&[
        (
            "package.xml",
            &package(&[("ExtlClntAppGlobalOauthSettings", "Billing_ECA_glbloauth")]),
        ),
        (
            "extlClntAppGlobalOauthSets/Billing_ECA_glbloauth.ecaGlblOauth",
            xml,
        ),
    ])
}

/// A deploy zip turning Billing_ECA's OAuth plugin off (the ECA kill switch).
pub fn eca_oauth_off_zip() -> Vec<u8> {
    eca_oauth_zip(false)
}

/// A deploy zip setting Billing_ECA's OAuth plugin on or off (full replace of the policies).
pub fn eca_oauth_zip(enabled: bool) -> Vec<u8> {
    let plcy = format!(
        r#"<ExtlClntAppConfigurablePolicies xmlns="http://soap.sforce.com/2006/04/metadata"><externalClientApplication>Billing_ECA</externalClientApplication><isEnabled>true</isEnabled><isOauthPluginEnabled>{enabled}</isOauthPluginEnabled></ExtlClntAppConfigurablePolicies>"#
    );
    let plcy = plcy.as_str();
    zip(&[
        (
            "package.xml",
            &package(&[("ExtlClntAppConfigurablePolicies", "Billing_ECA_plcy")]),
        ),
        ("extlClntAppPolicies/Billing_ECA_plcy.ecaPlcy", plcy),
    ])
}

/// Key `key`'s certificate as its bare base64 body, without the PEM armor lines.
pub fn bare_cert(key: usize) -> String {
    keys()[key]
        .cert_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect()
}

/// Asserts that `app` holds key `key`'s certificate.
pub fn assert_app_cert(sim: &OrgSim, app: &str, key: usize) {
    assert_eq!(
        sim.app_certificate_pem(app).unwrap().trim(),
        keys()[key].cert_pem.trim(),
        "{app} should hold key {key}'s certificate"
    );
}

/// The standard test org as TOML. Certificates: key 0 on Billing_Sync, key 0 on Self_App,
/// key 1 on the ECA.
pub fn seed_toml(settings: &str) -> String {
    let k = keys();
    let ca = billing_ca_xml("");
    format!(
        r#"
[org]
id = "{ORG_ID}"
name = "Acme"
audiences = ["{LOGIN}", "{TEST_HOST}", "https://acme.my.salesforce.com"]
session_timeout_minutes = 120

[settings]
{phase}
{settings}

[[profiles]]
name = "System Administrator"
permissions = ["ModifyAllData", "ModifyMetadata", "CustomizeApplication", "ViewSetup", "ApiEnabled"]

[[profiles]]
name = "Billing Integration"
permissions = ["ApiEnabled"]
session_timeout_minutes = 30

[[profiles]]
name = "Standard User"
permissions = ["ApiEnabled"]

[[permission_sets]]
name = "Billing_Integration_Access"

[[permission_sets]]
name = "Deployer"
permissions = ["ModifyMetadata"]

[[users]]
username = "admin@acme.example"
id = "0055g00000ADMINAAA"
name = "Admin User"
profile = "System Administrator"

[[users]]
username = "integ@acme.example"
name = "Integration User"
profile = "Billing Integration"

[[users]]
username = "permset@acme.example"
profile = "Standard User"
permission_sets = ["Billing_Integration_Access", "Deployer"]

[[users]]
username = "nobody@acme.example"
profile = "Standard User"

[[users]]
username = "gone@acme.example"
profile = "Billing Integration"
active = false

[[approvals]]
username = "nobody@acme.example"
app = "Self_App"

[[connected_apps]]
full_name = "Billing_Sync"
metadata = '''{ca}'''
certificate = '''{c0}'''

[[connected_apps]]
full_name = "Self_App"
metadata = '''<ConnectedApp xmlns="http://soap.sforce.com/2006/04/metadata">
  <contactEmail>ops@acme.example</contactEmail>
  <label>Self App</label>
  <oauthConfig><callbackUrl>https://localhost/cb</callbackUrl><consumerKey>{SELF_CA_KEY}</consumerKey></oauthConfig>
</ConnectedApp>'''
certificate = '''{c0}'''

[[external_client_apps]]
name = "Billing_ECA"
header = '''<ExternalClientApplication xmlns="http://soap.sforce.com/2006/04/metadata">
  <contactEmail>ops@acme.example</contactEmail>
  <distributionState>Local</distributionState>
  <isProtected>false</isProtected>
  <label>Billing ECA</label>
</ExternalClientApplication>'''
oauth_settings = '''<ExtlClntAppOauthSettings xmlns="http://soap.sforce.com/2006/04/metadata">
  <commaSeparatedOauthScopes>Api, RefreshToken</commaSeparatedOauthScopes>
  <externalClientApplication>Billing_ECA</externalClientApplication>
  <label>Billing ECA OAuth</label>
</ExtlClntAppOauthSettings>'''
global_oauth_settings = '''<ExtlClntAppGlobalOauthSettings xmlns="http://soap.sforce.com/2006/04/metadata">
  <callbackUrl>https://localhost/unused</callbackUrl>
  <consumerKey>{ECA_KEY}</consumerKey>
  <consumerSecret>{ECA_SECRET}</consumerSecret>
  <externalClientApplication>Billing_ECA</externalClientApplication>
  <isPkceRequired>true</isPkceRequired>
  <label>Billing ECA Global</label>
</ExtlClntAppGlobalOauthSettings>'''
oauth_policies = '''<ExtlClntAppOauthConfigurablePolicies xmlns="http://soap.sforce.com/2006/04/metadata">
  <commaSeparatedPermissionSet>Billing_Integration_Access</commaSeparatedPermissionSet>
  <commaSeparatedProfile>Billing Integration, System Administrator</commaSeparatedProfile>
  <externalClientApplication>Billing_ECA</externalClientApplication>
  <label>Billing ECA Policies</label>
  <permittedUsersPolicyType>AdminApprovedPreAuthorized</permittedUsersPolicyType>
  <sessionTimeoutInMinutes>15</sessionTimeoutInMinutes>
</ExtlClntAppOauthConfigurablePolicies>'''
policies = '''<ExtlClntAppConfigurablePolicies xmlns="http://soap.sforce.com/2006/04/metadata">
  <externalClientApplication>Billing_ECA</externalClientApplication>
  <isEnabled>true</isEnabled>
  <isOauthPluginEnabled>true</isOauthPluginEnabled>
</ExtlClntAppConfigurablePolicies>'''
certificate = '''{c1}'''
"#,
        phase = if settings.contains("deploy_phase_ms") {
            ""
        } else {
            "deploy_phase_ms = 40"
        },
        c0 = k[0].cert_pem,
        c1 = k[1].cert_pem,
    )
}

/// The standard seed with extra `[settings]` lines.
pub fn seed_with(settings: &str) -> Seed {
    Seed::from_toml_str(&seed_toml(settings), std::path::Path::new(".")).unwrap()
}

/// The standard seed text plus `n` more users (`user-0001@acme.example`, …).
pub fn seed_toml_with_users(settings: &str, n: usize) -> String {
    let mut text = seed_toml(settings);
    for i in 0..n {
        text.push_str(&format!(
            "\n[[users]]\nusername = \"user-{i:04}@acme.example\"\nprofile = \"Standard User\"\n"
        ));
    }
    text
}

/// The standard seed plus `n` more users.
pub fn seed_with_users(settings: &str, n: usize) -> Seed {
    Seed::from_toml_str(
        &seed_toml_with_users(settings, n),
        std::path::Path::new("."),
    )
    .unwrap()
}

/// Starts an emulator with the standard seed.
pub async fn start(settings: &str) -> OrgSim {
    OrgSim::start(seed_with(settings)).await.unwrap()
}

/// Starts an emulator with the standard seed and logs the admin in; returns both.
pub async fn start_as_admin(settings: &str) -> (OrgSim, String) {
    let sim = start(settings).await;
    let admin = admin_token(&sim).await;
    (sim, admin)
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Signs claims with RS256 and key `key` of [`keys`].
pub fn sign(key: usize, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(keys()[key].key_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).unwrap()
}

/// A standard assertion signed with key `key`: iss, sub, aud, exp a day ahead (so tests may
/// move the simulated clock without the assertion expiring).
pub fn assertion(key: usize, iss: &str, sub: &str, aud: &str) -> String {
    sign(
        key,
        &json!({"iss": iss, "sub": sub, "aud": aud, "exp": now() + 86400}),
    )
}

/// A request for `path` on the emulator.
pub fn request(sim: &OrgSim, method: Method, path: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new().request(method, format!("{}{path}", sim.base_url()))
}

/// GET `path` on the emulator, with a bearer token when given.
pub async fn get(sim: &OrgSim, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = request(sim, Method::GET, path);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

/// The `Content-Type` of an answer (panics when there is none).
pub fn content_type(headers: &reqwest::header::HeaderMap) -> &str {
    headers["content-type"].to_str().unwrap()
}

/// A test-control call (`/__orgsim/{path}`) with an optional JSON body; returns (status, JSON
/// body).
pub async fn control(
    sim: &OrgSim,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = request(sim, method, &format!("/__orgsim/{path}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// POSTs these form parameters to the token endpoint.
pub async fn post_token(sim: &OrgSim, params: &[(&str, &str)]) -> reqwest::Response {
    request(sim, Method::POST, "/services/oauth2/token")
        .form(params)
        .send()
        .await
        .unwrap()
}

/// POSTs a JWT bearer grant; returns (status, JSON body, response headers).
pub async fn grant(sim: &OrgSim, assertion: &str) -> (u16, Value, reqwest::header::HeaderMap) {
    let r = post_token(sim, &[("grant_type", JWT_BEARER), ("assertion", assertion)]).await;
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, r.json().await.unwrap(), headers)
}

/// Asserts a token error.
pub async fn expect_error(sim: &OrgSim, assertion: &str, error: &str, description: &str) {
    expect_error_for("token request", sim, assertion, error, description).await;
}

/// Asserts a token error; `case` names the request in the failure message.
pub async fn expect_error_for(
    case: &str,
    sim: &OrgSim,
    assertion: &str,
    error: &str,
    description: &str,
) {
    let (status, body, _) = grant(sim, assertion).await;
    assert_eq!(
        (status, &body),
        (
            400,
            &json!({"error": error, "error_description": description})
        ),
        "{case}"
    );
}

/// Asserts that Billing_ECA's OAuth kill switch refuses a grant for `user`.
pub async fn expect_eca_oauth_disabled(sim: &OrgSim, user: &str) {
    let d = defaults();
    expect_error(
        sim,
        &assertion(1, ECA_KEY, user, LOGIN),
        &d.oauth_disabled_error,
        &d.oauth_disabled_description,
    )
    .await;
}

/// A token for a user through an app, signed with key `key` (panics if the grant fails).
pub async fn token_for(sim: &OrgSim, key: usize, iss: &str, sub: &str) -> String {
    let (status, body, _) = grant(sim, &assertion(key, iss, sub, LOGIN)).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

pub async fn admin_token(sim: &OrgSim) -> String {
    token_for(sim, 0, CA_KEY, "admin@acme.example").await
}

/// A zip with these (path, content) entries.
pub fn zip(files: &[(&str, &str)]) -> Vec<u8> {
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (path, content) in files {
        out.start_file(*path, zip::write::SimpleFileOptions::default())
            .unwrap();
        out.write_all(content.as_bytes()).unwrap();
    }
    out.finish().unwrap().into_inner()
}

/// package.xml naming `(type, member)` pairs.
pub fn package(members: &[(&str, &str)]) -> String {
    let mut types = String::new();
    for (t, m) in members {
        types.push_str(&format!(
            "<types><members>{m}</members><name>{t}</name></types>"
        ));
    }
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><Package xmlns="http://soap.sforce.com/2006/04/metadata">{types}<version>67.0</version></Package>"#
    )
}

/// POSTs a deployRequest; returns (status, body).
pub async fn post_deploy(
    sim: &OrgSim,
    token: &str,
    options: Value,
    zip_bytes: Vec<u8>,
) -> (u16, Value) {
    let form = reqwest::multipart::Form::new()
        .part(
            "json",
            reqwest::multipart::Part::text(json!({"deployOptions": options}).to_string())
                .mime_str("application/json")
                .unwrap(),
        )
        .part(
            "file",
            reqwest::multipart::Part::bytes(zip_bytes)
                .file_name("deploy.zip")
                .mime_str("application/zip")
                .unwrap(),
        );
    let r = request(sim, Method::POST, DEPLOY_REQUEST)
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// GET deployRequest/{id}?includeDetails=true.
pub async fn deploy_status(sim: &OrgSim, token: &str, id: &str) -> Value {
    let path = format!("{DEPLOY_REQUEST}/{id}?includeDetails=true");
    get(sim, &path, Some(token)).await.json().await.unwrap()
}

/// How long a test waits for something that should happen at once before it calls it a hang.
/// Only a hang guard: generous, because a loaded 2-core machine running the whole suite can
/// stall an emulator task for seconds.
pub const HANG_GUARD: Duration = Duration::from_secs(60);

/// Deploys and polls until done; returns the final GET body.
pub async fn deploy(sim: &OrgSim, token: &str, options: Value, zip_bytes: Vec<u8>) -> Value {
    let (status, body) = post_deploy(sim, token, options, zip_bytes).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        let s = deploy_status(sim, token, &id).await;
        // Accept the string rendering (string_values_in_deploy_status) too.
        if s["deployResult"]["done"] == json!(true) || s["deployResult"]["done"] == json!("true") {
            return s;
        }
        assert!(Instant::now() < deadline, "deploy never finished: {s}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn default_options() -> Value {
    json!({"checkOnly": false, "rollbackOnError": true, "singlePackage": true, "testLevel": "NoTestRun"})
}

/// POSTs a SOAP Metadata call; returns (status, body text).
pub async fn soap(sim: &OrgSim, session: &str, call: &str) -> (u16, String) {
    let envelope = format!(
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:met="http://soap.sforce.com/2006/04/metadata"><soapenv:Header><met:SessionHeader><met:sessionId>{session}</met:sessionId></met:SessionHeader></soapenv:Header><soapenv:Body>{call}</soapenv:Body></soapenv:Envelope>"#
    );
    let r = request(sim, Method::POST, "/services/Soap/m/67.0")
        .header("Content-Type", "text/xml; charset=UTF-8")
        .header("SOAPAction", "\"\"")
        .body(envelope)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Default settings, to reference field defaults in assertions.
pub fn defaults() -> Settings {
    Settings::default()
}

/// `path` with form-encoded query parameters.
pub fn with_query(path: &str, pairs: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse(&format!("http://x{path}")).unwrap();
    url.query_pairs_mut().extend_pairs(pairs);
    format!("{}?{}", url.path(), url.query().unwrap_or(""))
}

/// GET of a path, with a bearer token when given; returns (status, JSON body).
pub async fn get_json(sim: &OrgSim, path: &str, token: Option<&str>) -> (u16, Value) {
    let r = get(sim, path, token).await;
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Runs a SOQL query through `GET /services/data/v67.0/query`; returns (status, body).
pub async fn soql(sim: &OrgSim, token: Option<&str>, q: &str) -> (u16, Value) {
    get_json(sim, &with_query(&format!("{V}/query"), &[("q", q)]), token).await
}

/// The `errorCode` of a REST error array.
pub fn error_code(body: &Value) -> &str {
    body[0]["errorCode"].as_str().unwrap_or("")
}
