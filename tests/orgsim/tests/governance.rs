//! The objects an audit reads, kept consistent with what happens in the org: Organization,
//! profiles, permission sets and their assignments, ConnectedApplication policy options,
//! OauthToken use, LoginHistory rows for token requests, SetupAuditTrail rows for deploys, and
//! the limits (daily API requests, logins per user per hour).

mod common;

use common::*;
use orgsim::Seed;
use serde_json::{Value, json};

const INTEG: &str = "integ@acme.example";
const NOBODY: &str = "nobody@acme.example";

/// The records of a query that must succeed.
async fn records(sim: &orgsim::OrgSim, token: &str, q: &str) -> Vec<Value> {
    let (s, body) = soql(sim, Some(token), q).await;
    assert_eq!(s, 200, "{q}: {body}");
    body["records"].as_array().unwrap().clone()
}

/// One field of each record.
fn column(records: &[Value], field: &str) -> Vec<Value> {
    records.iter().map(|r| r[field].clone()).collect()
}

#[tokio::test]
async fn organization_profiles_and_permission_sets() {
    let (sim, admin) = start_as_admin("").await;
    let org = records(
        &sim,
        &admin,
        "SELECT Id, Name, IsSandbox, InstanceName, OrganizationType FROM Organization",
    )
    .await;
    assert_eq!(
        org,
        [json!({
            "attributes": {"type": "Organization", "url": format!("{V}/sobjects/Organization/{ORG_ID}")},
            "Id": ORG_ID, "Name": "Acme", "IsSandbox": false, "InstanceName": "EMU1",
            "OrganizationType": "Enterprise Edition",
        })]
    );
    let profiles = records(
        &sim,
        &admin,
        "SELECT Name, PermissionsModifyAllData, PermissionsApiEnabled FROM Profile ORDER BY Name",
    )
    .await;
    assert_eq!(
        column(&profiles, "Name"),
        [
            "Billing Integration",
            "Standard User",
            "System Administrator"
        ]
    );
    assert_eq!(
        column(&profiles, "PermissionsModifyAllData"),
        [false, false, true]
    );
    assert_eq!(
        column(&profiles, "PermissionsApiEnabled"),
        [true, true, true]
    );

    // Who can change metadata: through the profile's own permission set or an assigned one.
    let holders = records(
        &sim,
        &admin,
        "SELECT Assignee.Username, PermissionSet.Name, PermissionSet.IsOwnedByProfile \
         FROM PermissionSetAssignment WHERE PermissionSet.PermissionsModifyMetadata = true \
         ORDER BY Assignee.Username",
    )
    .await;
    let summary: Vec<(Value, Value)> = holders
        .iter()
        .map(|r| {
            (
                r["Assignee"]["Username"].clone(),
                r["PermissionSet"]["IsOwnedByProfile"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (json!("admin@acme.example"), json!(true)),
            (json!("permset@acme.example"), json!(false)),
        ]
    );
    assert_eq!(holders[1]["PermissionSet"]["Name"], "Deployer");
    let sets = records(
        &sim,
        &admin,
        "SELECT Name FROM PermissionSet WHERE IsOwnedByProfile = false ORDER BY Name",
    )
    .await;
    assert_eq!(
        column(&sets, "Name"),
        ["Billing_Integration_Access", "Deployer"]
    );
    let (_, count) = soql(
        &sim,
        Some(&admin),
        "SELECT COUNT() FROM User WHERE Profile.Name = 'Standard User'",
    )
    .await;
    assert_eq!(count["totalSize"], 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn connected_application_shows_policy_options_as_deployed() {
    let (sim, admin) = start_as_admin("").await;
    let q = "SELECT Name, OptionsAllowAdminApprovedUsersOnly, OptionsHasSessionLevelPolicy, \
             CreatedBy.Username FROM ConnectedApplication ORDER BY Name";
    let apps = records(&sim, &admin, q).await;
    assert_eq!(column(&apps, "Name"), ["Billing Sync", "Self App"]);
    assert_eq!(
        column(&apps, "OptionsAllowAdminApprovedUsersOnly"),
        [true, false]
    );
    assert_eq!(
        column(&apps, "OptionsHasSessionLevelPolicy"),
        [false, false]
    );
    assert_eq!(apps[0]["CreatedBy"]["Username"], "admin@acme.example");
    let high_assurance = "<sessionPolicy><policyAction>RaiseSessionLevel</policyAction>\
                          <sessionLevel>HIGH_ASSURANCE</sessionLevel></sessionPolicy>";
    let done = deploy(
        &sim,
        &admin,
        default_options(),
        ca_zip(&with_cert(
            &billing_ca_xml(high_assurance),
            &keys()[0].cert_pem,
        )),
    )
    .await;
    assert_eq!(done["deployResult"]["status"], "Succeeded", "{done}");
    let apps = records(&sim, &admin, q).await;
    assert_eq!(column(&apps, "OptionsHasSessionLevelPolicy"), [true, false]);
    sim.shutdown().await;
}

#[tokio::test]
async fn oauth_token_use_count_and_last_used_date_move_with_each_grant() {
    let (sim, admin) = start_as_admin("").await;
    let q =
        "SELECT UseCount, LastUsedDate, User.Username FROM OauthToken WHERE AppName = 'Self App'";
    let before = records(&sim, &admin, q).await;
    assert_eq!(before.len(), 1);
    assert_eq!(before[0]["UseCount"], 0);
    assert_eq!(before[0]["User"]["Username"], NOBODY);
    // The self-authorized app lets the user in on the strength of that approval.
    token_for(&sim, 0, SELF_CA_KEY, NOBODY).await;
    sim.set_clock_offset(90);
    token_for(&sim, 0, SELF_CA_KEY, NOBODY).await;
    let after = records(&sim, &admin, q).await;
    assert_eq!(after[0]["UseCount"], 2);
    let (first, last) = (
        before[0]["LastUsedDate"].as_str().unwrap(),
        after[0]["LastUsedDate"].as_str().unwrap(),
    );
    assert!(last > first, "{first} → {last}");
    sim.shutdown().await;
}

/// A refresh token request to Billing_Sync with this secret; (status, JSON body).
async fn refresh(sim: &orgsim::OrgSim, secret: &str, token: &str) -> (u16, Value) {
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", token),
        ("client_id", CA_KEY),
        ("client_secret", secret),
    ];
    let r = post_token(sim, &form).await;
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn a_refresh_token_buys_a_session_and_counts_as_a_use_of_its_grant() {
    let (sim, admin) = start_as_admin("").await;
    let grant = sim.add_grant(INTEG, "Billing_Sync").unwrap();
    let (s, body) = refresh(&sim, "CASECRET0001", &grant.refresh_token).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["signature"].as_str().is_some_and(|s| !s.is_empty()));
    let token = body["access_token"].as_str().unwrap();
    let (s, _) = get_json(&sim, &format!("{V}/limits"), Some(token)).await;
    assert_eq!(s, 200, "the access token works");
    let row = records(
        &sim,
        &admin,
        "SELECT UseCount, User.Username FROM OauthToken WHERE AppName = 'Billing Sync'",
    )
    .await;
    assert_eq!(
        (
            row[0]["UseCount"].clone(),
            row[0]["User"]["Username"].clone()
        ),
        (json!(1), json!(INTEG))
    );
    // The app wants its secret with a refresh token; a revoked grant refreshes nothing.
    let (s, body) = refresh(&sim, "wrong", &grant.refresh_token).await;
    assert_eq!(
        (s, body["error"].clone()),
        (400, json!("invalid_client")),
        "{body}"
    );
    let (s, body) = refresh(&sim, "CASECRET0001", "5Aep861unknown").await;
    assert_eq!(
        (s, body["error"].clone()),
        (400, json!("invalid_grant")),
        "{body}"
    );
    let statuses = records(
        &sim,
        &admin,
        "SELECT Status FROM LoginHistory ORDER BY LoginTime",
    )
    .await;
    assert_eq!(
        column(&statuses, "Status"),
        ["Success", "Success", "Failed: invalid client credentials"],
        "the unknown refresh token names no user"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn login_history_has_a_row_for_every_token_request_of_a_known_user() {
    let (sim, admin) = start_as_admin("source_ip = \"203.0.113.7\"").await;
    let integ = token_for(&sim, 0, CA_KEY, INTEG).await;
    // Wrong key: refused, and recorded.
    expect_error(
        &sim,
        &assertion(1, CA_KEY, INTEG, LOGIN),
        "invalid_grant",
        "invalid assertion",
    )
    .await;
    // Unknown user: nobody to record it for.
    expect_error(
        &sim,
        &assertion(0, CA_KEY, "ghost@acme.example", LOGIN),
        "invalid_grant",
        &defaults().unknown_user_description,
    )
    .await;
    let q = "SELECT Id, Application, LoginType, SourceIp, Status, LoginUrl FROM LoginHistory \
             WHERE UserId = '{id}' ORDER BY LoginTime";
    let integ_id = sim.live_sessions(INTEG)[0].user_id.clone();
    let rows = records(&sim, &admin, &q.replace("{id}", &integ_id)).await;
    assert_eq!(
        column(&rows, "Status"),
        ["Success", "Failed: invalid assertion"]
    );
    assert_eq!(
        column(&rows, "Application"),
        ["Billing Sync", "Billing Sync"]
    );
    assert_eq!(rows[0]["LoginType"], "Remote Access 2.0");
    assert_eq!(rows[0]["SourceIp"], "203.0.113.7");
    assert_eq!(
        rows[0]["LoginUrl"],
        sim.base_url().trim_start_matches("http://")
    );
    let (_, total) = soql(&sim, Some(&admin), "SELECT COUNT() FROM LoginHistory").await;
    assert_eq!(total["totalSize"], 3, "admin's login, integ's two");

    // The session points at the login that created it, and comes from the same address.
    let sessions = records(
        &sim,
        &admin,
        &format!("SELECT LoginHistoryId, SourceIp FROM AuthSession WHERE UsersId = '{integ_id}'"),
    )
    .await;
    assert_eq!(sessions[0]["LoginHistoryId"], rows[0]["Id"]);
    assert_eq!(sessions[0]["SourceIp"], "203.0.113.7");
    let users = records(
        &sim,
        &admin,
        "SELECT Username FROM User WHERE LastLoginDate = TODAY ORDER BY Username",
    )
    .await;
    assert_eq!(column(&users, "Username"), ["admin@acme.example", INTEG]);

    // Without Manage Users a user sees their own rows; Status cannot be filtered.
    let own = records(&sim, &integ, "SELECT UserId FROM LoginHistory").await;
    assert_eq!(
        column(&own, "UserId"),
        [integ_id.as_str(), integ_id.as_str()]
    );
    let (s, body) = soql(
        &sim,
        Some(&admin),
        "SELECT Id FROM LoginHistory WHERE Status = 'Success'",
    )
    .await;
    assert_eq!((s, error_code(&body)), (400, "INVALID_FIELD"), "{body}");
    // A test can move the caller to another address mid-way.
    sim.set_source_ip("198.51.100.9".parse().unwrap());
    token_for(&sim, 0, CA_KEY, "permset@acme.example").await;
    let moved = records(
        &sim,
        &admin,
        "SELECT SourceIp FROM LoginHistory WHERE SourceIp = '198.51.100.9'",
    )
    .await;
    assert_eq!(moved.len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn setup_audit_trail_records_each_connected_app_change_a_deploy_makes() {
    let (sim, admin) = start_as_admin("").await;
    // Without View Setup and Configuration (asked at the end).
    let integ = token_for(&sim, 0, CA_KEY, INTEG).await;
    let changed = billing_ca_xml("")
        .replace("https://localhost/unused", "https://localhost/callback")
        .replace(
            "<isAdminApproved>true</isAdminApproved>",
            "<isAdminApproved>false</isAdminApproved>",
        );
    let done = deploy(
        &sim,
        &admin,
        default_options(),
        ca_zip(&with_cert(&changed, &keys()[1].cert_pem)),
    )
    .await;
    assert_eq!(done["deployResult"]["status"], "Succeeded", "{done}");
    let rows = records(
        &sim,
        &admin,
        "SELECT Action, Section, Display, CreatedDate, CreatedBy.Username FROM SetupAuditTrail ORDER BY CreatedDate",
    )
    .await;
    let actions: Vec<(Value, Value)> = rows
        .iter()
        .map(|r| (r["Action"].clone(), r["Section"].clone()))
        .collect();
    assert_eq!(
        actions,
        [
            (
                json!("changeApplicationCertificate"),
                json!("Remote Access")
            ),
            (json!("changeApplicationCallbackUrl"), json!("Application")),
            (json!("changeUserRuntimeAccessPolicy"), json!("Application")),
        ]
    );
    let cert_row = rows[0]["Display"].as_str().unwrap();
    assert!(
        cert_row.starts_with("Changed Connected App Certificate from CN="),
        "{cert_row}"
    );
    assert_eq!(
        rows[1]["Display"],
        "Changed Connected App Callback URL from https://localhost/unused to https://localhost/callback"
    );
    assert_eq!(
        rows[2]["Display"],
        "Changed connected app Billing Sync Permitted Users setting from Admin approved users are pre-authorized to All users may self-authorize"
    );
    assert!(
        rows.iter()
            .all(|r| r["CreatedBy"]["Username"] == "admin@acme.example")
    );
    // The same deploy again changes nothing, so it records nothing.
    deploy(
        &sim,
        &admin,
        default_options(),
        ca_zip(&with_cert(&changed, &keys()[1].cert_pem)),
    )
    .await;
    let (_, count) = soql(&sim, Some(&admin), "SELECT COUNT() FROM SetupAuditTrail").await;
    assert_eq!(count["totalSize"], 3);
    // Filters on Action work, on Display they do not; without View Setup the object is not there.
    let (_, found) = soql(
        &sim,
        Some(&admin),
        "SELECT Id FROM SetupAuditTrail WHERE Action LIKE 'change%Certificate'",
    )
    .await;
    assert_eq!(found["totalSize"], 1);
    let (s, body) = soql(
        &sim,
        Some(&admin),
        "SELECT Id FROM SetupAuditTrail WHERE Display = 'x'",
    )
    .await;
    assert_eq!((s, error_code(&body)), (400, "INVALID_FIELD"));
    let (s, body) = soql(&sim, Some(&integ), "SELECT Id FROM SetupAuditTrail").await;
    assert_eq!((s, error_code(&body)), (400, "INVALID_TYPE"), "{body}");
    sim.shutdown().await;
}

#[tokio::test]
async fn audit_rows_for_scopes_ip_relaxation_and_an_eca_certificate() {
    let (sim, admin) = start_as_admin("").await;
    let relaxed = billing_ca_xml("")
        .replace("<scopes>RefreshToken</scopes>", "")
        .replace(
            "</oauthConfig>",
            "</oauthConfig><oauthPolicy><ipRelaxation>BYPASS</ipRelaxation><refreshTokenPolicy>infinite</refreshTokenPolicy></oauthPolicy>",
        );
    let ca = ca_zip(&with_cert(&relaxed, &keys()[0].cert_pem));
    let done = deploy(&sim, &admin, default_options(), ca).await;
    assert_eq!(done["deployResult"]["status"], "Succeeded", "{done}");
    let global = format!(
        r#"<ExtlClntAppGlobalOauthSettings xmlns="http://soap.sforce.com/2006/04/metadata"><callbackUrl>https://localhost/unused</callbackUrl><certificate>{}</certificate><externalClientApplication>Billing_ECA</externalClientApplication><label>Billing ECA Global</label></ExtlClntAppGlobalOauthSettings>"#,
        keys()[2].cert_pem
    );
    let done = deploy(&sim, &admin, default_options(), eca_global_zip(&global)).await;
    assert_eq!(done["deployResult"]["status"], "Succeeded", "{done}");
    let rows = records(
        &sim,
        &admin,
        "SELECT Action, Display FROM SetupAuditTrail ORDER BY CreatedDate",
    )
    .await;
    assert_eq!(
        rows[0]["Display"],
        "Changed connected app Billing Sync scopes from api, refresh_token to api"
    );
    assert_eq!(
        rows[1]["Display"],
        "Changed connected app Billing Sync IP relaxation setting from Enforce IP restrictions to Relax IP restrictions"
    );
    let eca_row = rows[2]["Display"].as_str().unwrap();
    assert!(
        eca_row.starts_with("Changed Connected App Certificate from "),
        "{eca_row}"
    );
    assert_eq!(
        column(&rows, "Action"),
        [
            "changeOauthDefaultScope",
            "changeIpRelaxationPolicy",
            "changeApplicationCertificate"
        ]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn logins_per_user_per_hour_are_limited() {
    let (sim, admin) = start_as_admin("logins_per_user_per_hour = 2").await;
    token_for(&sim, 0, CA_KEY, INTEG).await;
    token_for(&sim, 0, CA_KEY, INTEG).await;
    let refused = assertion(0, CA_KEY, INTEG, LOGIN);
    expect_error(&sim, &refused, "rate_limit_exceeded", "login rate exceeded").await;
    // Another user is not throttled (admin has logged in once).
    admin_token(&sim).await;
    let statuses = records(
        &sim,
        &admin,
        "SELECT Status FROM LoginHistory ORDER BY LoginTime",
    )
    .await;
    assert_eq!(
        column(&statuses, "Status"),
        [
            "Success",
            "Success",
            "Success",
            "Login rate exceeded",
            "Success"
        ]
    );
    // An hour later the user may log in again.
    sim.set_clock_offset(3601);
    token_for(&sim, 0, CA_KEY, INTEG).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn daily_api_requests_are_a_rolling_24_hours() {
    let (sim, admin) = start_as_admin("daily_api_requests = 2").await;
    for used in 1..=2 {
        let r = get(&sim, &format!("{V}/limits"), Some(&admin)).await;
        assert_eq!(
            r.headers()["sforce-limit-info"],
            format!("api-usage={used}/2")
        );
    }
    let r = get(&sim, &format!("{V}/limits"), Some(&admin)).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        error_code(&r.json().await.unwrap()),
        "REQUEST_LIMIT_EXCEEDED"
    );
    sim.set_clock_offset(86_401);
    let admin = admin_token(&sim).await;
    let r = get(&sim, &format!("{V}/limits"), Some(&admin)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["sforce-limit-info"], "api-usage=1/2");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["DailyApiRequests"], json!({"Max": 2, "Remaining": 1}));
    sim.shutdown().await;
}

#[test]
fn trusted_ip_ranges_are_one_family_start_first() {
    let base = std::path::Path::new(".");
    let with = |ranges: &str| {
        seed_toml("").replacen(
            "session_timeout_minutes = 120",
            &format!("session_timeout_minutes = 120\n{ranges}"),
            1,
        )
    };
    let seed = Seed::from_toml_str(
        &with("trusted_ip_ranges = [{ start = \"10.0.0.0\", end = \"10.0.0.255\" }]"),
        base,
    )
    .unwrap();
    let range = &seed.org.trusted_ip_ranges[0];
    assert!(range.contains("10.0.0.7".parse().unwrap()));
    assert!(!range.contains("127.0.0.1".parse().unwrap()));
    assert!(!range.contains("::1".parse().unwrap()));
    for bad in [
        "trusted_ip_ranges = [{ start = \"10.0.0.9\", end = \"10.0.0.1\" }]",
        "trusted_ip_ranges = [{ start = \"10.0.0.1\", end = \"::1\" }]",
    ] {
        assert!(
            matches!(
                Seed::from_toml_str(&with(bad), base),
                Err(orgsim::SeedError::Invalid(_))
            ),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn records_are_read_by_id_among_the_rows_the_caller_may_see() {
    let (sim, admin) = start_as_admin("").await;
    let integ = token_for(&sim, 0, CA_KEY, INTEG).await;
    let (s, org) = get_json(
        &sim,
        &format!("{V}/sobjects/Organization/{ORG_ID}"),
        Some(&integ),
    )
    .await;
    assert_eq!((s, org["Name"].clone()), (200, json!("Acme")));
    assert_eq!(
        org["attributes"]["url"],
        format!("{V}/sobjects/Organization/{ORG_ID}")
    );
    let logins = records(
        &sim,
        &admin,
        "SELECT Id, UserId FROM LoginHistory ORDER BY LoginTime",
    )
    .await;
    let (admin_login, integ_login) = (
        logins[0]["Id"].as_str().unwrap(),
        logins[1]["Id"].as_str().unwrap(),
    );
    let path = |id: &str| format!("{V}/sobjects/LoginHistory/{id}");
    let (s, own) = get_json(&sim, &path(integ_login), Some(&integ)).await;
    assert_eq!((s, own["Status"].clone()), (200, json!("Success")));
    // Another user's login is not there for a user without Manage Users.
    assert_eq!(
        get_json(&sim, &path(admin_login), Some(&integ)).await.0,
        404
    );
    assert_eq!(
        get_json(&sim, &path(admin_login), Some(&admin)).await.0,
        200
    );
    sim.shutdown().await;
}
