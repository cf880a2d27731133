//! The org for the consumer-credential tests: the standard seed plus apps that use the client
//! credentials flow, a run-as user with API Only, and an admin allowed to manage ECA secrets.

use super::*;

pub const CRED_KEY: &str = "3MVG9credEcaKey000000000004";
pub const CRED_SECRET: &str = "CREDSECRET0000000000000000000004";
pub const CC_CA_KEY: &str = "3MVG9ccConnectedApp0000005";
pub const CC_CA_SECRET: &str = "CCCASECRET000005";
pub const RUN_AS: &str = "runas@acme.example";
pub const ADMIN: &str = "admin@acme.example";

/// An ECA with the client credentials flow on in both places; `policy_extra` goes into its
/// OAuth policies (the run-as user), `plugin` is `isOauthPluginEnabled`, `state` its
/// distributionState.
pub fn cc_eca(name: &str, policy_extra: &str, plugin: bool, state: &str) -> String {
    format!(
        r#"
[[external_client_apps]]
name = "{name}"
header = '''<ExternalClientApplication xmlns="http://soap.sforce.com/2006/04/metadata">
  <distributionState>{state}</distributionState>
  <label>{label}</label>
</ExternalClientApplication>'''
oauth_settings = '''<ExtlClntAppOauthSettings xmlns="http://soap.sforce.com/2006/04/metadata">
  <commaSeparatedOauthScopes>Api, RefreshToken, Full, Basic</commaSeparatedOauthScopes>
  <label>{label} OAuth</label>
</ExtlClntAppOauthSettings>'''
global_oauth_settings = '''<ExtlClntAppGlobalOauthSettings xmlns="http://soap.sforce.com/2006/04/metadata">
  <callbackUrl>https://localhost/unused</callbackUrl>
  <isClientCredentialsFlowEnabled>true</isClientCredentialsFlowEnabled>
  <label>{label} Global</label>
</ExtlClntAppGlobalOauthSettings>'''
oauth_policies = '''<ExtlClntAppOauthConfigurablePolicies xmlns="http://soap.sforce.com/2006/04/metadata">
  {policy_extra}
  <isClientCredentialsFlowEnabled>true</isClientCredentialsFlowEnabled>
  <label>{label} Policies</label>
  <permittedUsersPolicyType>AdminApprovedPreAuthorized</permittedUsersPolicyType>
</ExtlClntAppOauthConfigurablePolicies>'''
policies = '''<ExtlClntAppConfigurablePolicies xmlns="http://soap.sforce.com/2006/04/metadata">
  <isEnabled>true</isEnabled>
  <isOauthPluginEnabled>{plugin}</isOauthPluginEnabled>
</ExtlClntAppConfigurablePolicies>'''
"#,
        label = name.replace('_', " "),
    )
}

/// The run-as user line of an ECA's OAuth policies.
pub fn run_as(user: &str) -> String {
    format!("<clientCredentialsFlowUser>{user}</clientCredentialsFlowUser>")
}

/// The credentials org as TOML, with extra `[settings]` lines. `Cred_ECA` (key/secret from the
/// seed fields) runs as `runas@`; `NoUser_ECA` names no user, `Ghost_ECA` an unknown one,
/// `Gone_ECA` the inactive `gone@`; `Off_ECA` has its OAuth plugin off; `Packaged_ECA` is
/// packaged; `CC_App` is a Connected App with the flow on.
pub fn credentials_seed_toml(settings: &str) -> String {
    let mut text = seed_toml(settings).replacen(
        "profile = \"System Administrator\"\n",
        "profile = \"System Administrator\"\npermission_sets = [\"ECA_Secrets\"]\n",
        1,
    );
    text.push_str(&format!(
        r#"
[[profiles]]
name = "Integration Only"
permissions = ["ApiEnabled", "ApiUserOnly"]

[[permission_sets]]
name = "ECA_Secrets"
permissions = ["ExternalClientAppDeveloper", "ViewClientSecret"]

[[users]]
username = "{RUN_AS}"
name = "Run As"
profile = "Integration Only"

[[connected_apps]]
full_name = "CC_App"
consumer_secret = "{CC_CA_SECRET}"
metadata = '''<ConnectedApp xmlns="http://soap.sforce.com/2006/04/metadata">
  <contactEmail>ops@acme.example</contactEmail>
  <label>CC App</label>
  <oauthConfig>
    <callbackUrl>https://localhost/cb</callbackUrl>
    <consumerKey>{CC_CA_KEY}</consumerKey>
    <isClientCredentialEnabled>true</isClientCredentialEnabled>
    <oauthClientCredentialUser>{RUN_AS}</oauthClientCredentialUser>
    <scopes>Api</scopes>
    <scopes>Web</scopes>
  </oauthConfig>
</ConnectedApp>'''
"#
    ));
    text.push_str(&cc_eca("Cred_ECA", &run_as(RUN_AS), true, "Local"));
    text.push_str(&format!(
        "consumer_key = \"{CRED_KEY}\"\nconsumer_secret = \"{CRED_SECRET}\"\n"
    ));
    text.push_str(&cc_eca("NoUser_ECA", "", true, "Local"));
    text.push_str(&cc_eca(
        "Ghost_ECA",
        &run_as("ghost@acme.example"),
        true,
        "Local",
    ));
    text.push_str(&cc_eca(
        "Gone_ECA",
        &run_as("gone@acme.example"),
        true,
        "Local",
    ));
    text.push_str(&cc_eca("Off_ECA", &run_as(RUN_AS), false, "Local"));
    text.push_str(&cc_eca("Packaged_ECA", &run_as(RUN_AS), true, "Packaged"));
    text
}

/// Starts the credentials org with the REST setting on (unless `settings` says otherwise) and
/// logs the admin in.
pub async fn start_credentials(settings: &str) -> (OrgSim, String) {
    let on = if settings.contains("eca_secrets_over_rest") {
        ""
    } else {
        "eca_secrets_over_rest = true"
    };
    let text = credentials_seed_toml(&format!("{on}\n{settings}"));
    let sim = OrgSim::start(Seed::from_toml_str(&text, std::path::Path::new(".")).unwrap())
        .await
        .unwrap();
    let admin = admin_token(&sim).await;
    (sim, admin)
}

/// A client credentials request: the pair where `how` says (`body`, `basic`, `query`), sent
/// with `Host: host` when given; returns (status, JSON body).
pub async fn cc_login(
    sim: &OrgSim,
    key: &str,
    secret: &str,
    how: &str,
    host: Option<&str>,
) -> (u16, Value) {
    let pairs = [
        ("grant_type", "client_credentials"),
        ("client_id", key),
        ("client_secret", secret),
    ];
    let mut req = match how {
        "body" => request(sim, Method::POST, "/services/oauth2/token").form(&pairs),
        "query" => request(
            sim,
            Method::POST,
            &with_query("/services/oauth2/token", &pairs),
        ),
        "basic" => request(sim, Method::POST, "/services/oauth2/token")
            .basic_auth(key, Some(secret))
            .form(&[("grant_type", "client_credentials")]),
        other => panic!("unknown way {other}"),
    };
    if let Some(h) = host {
        req = req.header("Host", h);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Asserts a client credentials error (pair in the body).
pub async fn expect_cc_error(
    case: &str,
    sim: &OrgSim,
    key: &str,
    secret: &str,
    error: &str,
    description: &str,
) {
    let (status, body) = cc_login(sim, key, secret, "body", None).await;
    assert_eq!(
        (status, &body),
        (
            400,
            &json!({"error": error, "error_description": description})
        ),
        "{case}"
    );
}

/// A Connect REST call with the admin's (or any) token; (status, JSON body or Null when empty).
pub async fn connect(
    sim: &OrgSim,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = request(sim, method, path).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, value)
}

/// `/services/data/v67.0/apps/oauth/credentials/{appId}/{consumerId}` of an ECA.
pub fn consumer_path(sim: &OrgSim, eca: &str) -> String {
    let c = sim.eca_consumer(eca).expect("the ECA has a consumer");
    format!("{V}/apps/oauth/credentials/{}/{}", c.app_id, c.consumer_id)
}

/// The admin's token once the simulated clock runs `offset` seconds ahead (the assertion's
/// `exp` follows the simulated clock).
pub async fn admin_token_at(sim: &OrgSim, offset: i64) -> String {
    let claims = json!({"iss": CA_KEY, "sub": ADMIN, "aud": LOGIN, "exp": now() + offset + 3600});
    let (status, body, _) = grant(sim, &sign(0, &claims)).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}
