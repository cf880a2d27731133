//! Metadata API: deployRequest lifecycle and validation, full-replace semantics, SOAP
//! readMetadata/listMetadata, and metadata permissions.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

fn failures(done: &Value) -> Vec<String> {
    done["deployResult"]["details"]["componentFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["problem"].as_str().unwrap().to_string())
        .collect()
}

/// `deployResult.status` and `done` of a GET answer.
fn state(s: &Value) -> (&str, bool) {
    (
        s["deployResult"]["status"].as_str().unwrap(),
        s["deployResult"]["done"].as_bool().unwrap(),
    )
}

#[tokio::test]
async fn deploy_lifecycle_pending_inprogress_succeeded() {
    // Held deploys move only when the test steps them, so it sees each state however slow the
    // machine (not by polling for states that last a few milliseconds).
    let (sim, admin) = start_as_admin("hold_deploys = true").await;
    let (status, body) = post_deploy(&sim, &admin, default_options(), billing_cert_zip(2)).await;
    assert_eq!(status, 201);
    // The POST body is the documented short form.
    let result = body["deployResult"].as_object().unwrap();
    let mut keys_seen: Vec<_> = result.keys().map(String::as_str).collect();
    keys_seen.sort();
    assert_eq!(
        keys_seen,
        [
            "checkOnly",
            "done",
            "id",
            "ignoreWarnings",
            "rollbackOnError",
            "runTestsEnabled",
            "status",
            "success"
        ]
    );
    assert_eq!(body["deployResult"]["status"], "Pending");
    assert_eq!(body["deployOptions"]["rollbackOnError"], true);
    assert_eq!(body["deployOptions"]["purgeOnDelete"], false);
    let id = body["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("0Af") && id.len() == 18);
    let step = format!("deploys/{id}/step");

    let s = deploy_status(&sim, &admin, &id).await;
    assert_eq!(state(&s), ("Pending", false), "{s}");
    assert!(s["deployResult"]["startDate"].is_null(), "{s}");

    let stepped = control(&sim, Method::POST, &step, None).await;
    assert_eq!(stepped, (200, json!({"id": id, "status": "InProgress"})));
    let s = deploy_status(&sim, &admin, &id).await;
    assert_eq!(state(&s), ("InProgress", false), "{s}");
    assert!(s["deployResult"]["startDate"].is_string(), "{s}");
    assert!(s["deployResult"]["completedDate"].is_null(), "{s}");
    // Nothing is applied before the deploy finishes.
    assert_app_cert(&sim, "Billing_Sync", 0);

    let stepped = control(&sim, Method::POST, &step, None).await;
    assert_eq!(stepped, (200, json!({"id": id, "status": "Succeeded"})));
    let s = deploy_status(&sim, &admin, &id).await;
    assert_eq!(state(&s), ("Succeeded", true), "{s}");
    assert_eq!(s["deployResult"]["success"], true);
    assert_eq!(s["deployResult"]["numberComponentsDeployed"], 1);
    assert!(s["deployResult"]["completedDate"].is_string(), "{s}");
    assert_eq!(s["url"], format!("{DEPLOY_REQUEST}/{id}"));
    let ok = &s["deployResult"]["details"]["componentSuccesses"][0];
    assert_eq!(
        (
            ok["fullName"].as_str(),
            ok["changed"].as_bool(),
            ok["componentType"].as_str()
        ),
        (Some("Billing_Sync"), Some(true), Some("ConnectedApp"))
    );
    assert_app_cert(&sim, "Billing_Sync", 2);

    // A finished deploy moves no further.
    let (code, body) = control(&sim, Method::POST, &step, None).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("finished"),
        "{body}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn get_without_details_omits_them_and_string_mode_stringifies() {
    let (sim, admin) = start_as_admin("string_values_in_deploy_status = true").await;
    let done = deploy(&sim, &admin, default_options(), ca_zip(&billing_ca_xml(""))).await;
    assert_eq!(done["deployResult"]["done"], "true");
    assert_eq!(done["deployResult"]["numberComponentsTotal"], "1");
    let id = done["id"].as_str().unwrap();
    let path = format!("{DEPLOY_REQUEST}/{id}");
    let plain: Value = get(&sim, &path, Some(&admin)).await.json().await.unwrap();
    assert!(plain["deployResult"].get("details").is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn check_only_validates_without_changing_anything() {
    let (sim, admin) = start_as_admin("").await;
    let before = sim.connected_app_xml("Billing_Sync").unwrap();
    let mut options = default_options();
    options["checkOnly"] = json!(true);
    let done = deploy(&sim, &admin, options, billing_cert_zip(2)).await;
    assert_eq!(done["deployResult"]["status"], "Succeeded");
    assert_eq!(done["deployResult"]["checkOnly"], true);
    assert_eq!(sim.connected_app_xml("Billing_Sync").unwrap(), before);
    assert_app_cert(&sim, "Billing_Sync", 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn fields_out_of_wsdl_order_fail_the_deploy_and_change_nothing() {
    let (sim, admin) = start_as_admin("").await;
    let before = sim.connected_app_xml("Billing_Sync").unwrap();
    let cert = &keys()[1].cert_pem;
    let misplaced = billing_ca_xml("").replace(
        "<scopes>Api</scopes>",
        &format!("<scopes>Api</scopes><certificate>{cert}</certificate>"),
    );
    let done = deploy(&sim, &admin, default_options(), ca_zip(&misplaced)).await;
    assert_eq!(done["deployResult"]["status"], "Failed", "{done}");
    assert_eq!(
        failures(&done),
        [
            "Error parsing file: Element {http://soap.sforce.com/2006/04/metadata}certificate invalid at this location in type oauthConfig"
        ]
    );
    assert_eq!(sim.connected_app_xml("Billing_Sync").unwrap(), before);

    let in_order = with_cert(&billing_ca_xml(""), cert);
    let done = deploy(&sim, &admin, default_options(), ca_zip(&in_order)).await;
    assert_eq!(done["deployResult"]["status"], "Succeeded", "{done}");
    sim.shutdown().await;
}

#[tokio::test]
async fn deploy_is_full_replace() {
    let (sim, admin) = start_as_admin("").await;
    assert!(
        sim.connected_app_xml("Billing_Sync")
            .unwrap()
            .contains("<scopes>RefreshToken</scopes>")
    );
    // Redeploy without the RefreshToken scope, the permission set and the certificate.
    let trimmed = billing_ca_xml("")
        .replace("<scopes>RefreshToken</scopes>", "")
        .replace(
            "<permissionSetName>Billing_Integration_Access</permissionSetName>",
            "",
        );
    let done = deploy(&sim, &admin, default_options(), ca_zip(&trimmed)).await;
    assert_eq!(done["deployResult"]["status"], "Succeeded", "{done}");
    let xml = sim.connected_app_xml("Billing_Sync").unwrap();
    assert!(!xml.contains("RefreshToken"), "{xml}");
    assert!(!xml.contains("permissionSetName"), "{xml}");
    assert!(
        sim.app_certificate_pem("Billing_Sync").is_none(),
        "certificate dropped too"
    );
    assert!(!xml.contains("consumerSecret"), "never returned");
    assert!(xml.contains(CA_KEY), "consumer key is immutable and kept");
    sim.shutdown().await;
}

#[tokio::test]
async fn eca_global_settings_keep_omitted_key_and_secret() {
    let (sim, admin) = start_as_admin("").await;
    let glbl = format!(
        r#"<ExtlClntAppGlobalOauthSettings xmlns="http://soap.sforce.com/2006/04/metadata"><callbackUrl>https://localhost/new</callbackUrl><certificate>{}</certificate><externalClientApplication>Billing_ECA</externalClientApplication><label>Billing ECA Global</label></ExtlClntAppGlobalOauthSettings>"#,
        keys()[2].cert_pem
    );
    let done = deploy(&sim, &admin, default_options(), eca_global_zip(&glbl)).await;
    assert_eq!(done["deployResult"]["status"], "Succeeded", "{done}");
    let xml = sim
        .eca_component_xml("ExtlClntAppGlobalOauthSettings", "Billing_ECA_glbloauth")
        .unwrap();
    assert!(xml.contains(ECA_KEY), "{xml}");
    assert!(
        !xml.contains(ECA_SECRET) && !xml.contains("consumerSecret"),
        "{xml}"
    );
    assert!(
        !xml.contains("isPkceRequired"),
        "full replace drops other fields: {xml}"
    );
    // The key still resolves, now with the new certificate.
    token_for(&sim, 2, ECA_KEY, "integ@acme.example").await;
    sim.shutdown().await;
}

#[tokio::test]
async fn eca_rotate_consumer_key_needs_ignore_warnings() {
    let (sim, admin) = start_as_admin("").await;
    let glbl = r#"<ExtlClntAppGlobalOauthSettings xmlns="http://soap.sforce.com/2006/04/metadata"><externalClientApplication>Billing_ECA</externalClientApplication><label>G</label><shouldRotateConsumerKey>true</shouldRotateConsumerKey></ExtlClntAppGlobalOauthSettings>"#;
    let done = deploy(&sim, &admin, default_options(), eca_global_zip(glbl)).await;
    assert_eq!(done["deployResult"]["status"], "Failed");
    let mut options = default_options();
    options["ignoreWarnings"] = json!(true);
    let done = deploy(&sim, &admin, options, eca_global_zip(glbl)).await;
    assert_eq!(done["deployResult"]["status"], "Succeeded", "{done}");
    let xml = sim
        .eca_component_xml("ExtlClntAppGlobalOauthSettings", "Billing_ECA_glbloauth")
        .unwrap();
    assert!(
        !xml.contains(ECA_KEY) && xml.contains("<consumerKey>3MVG9"),
        "{xml}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn changing_the_consumer_key_fails() {
    let (sim, admin) = start_as_admin("").await;
    let done = deploy(
        &sim,
        &admin,
        default_options(),
        ca_zip(&billing_ca_xml("").replace(CA_KEY, "3MVG9differentKey99")),
    )
    .await;
    assert_eq!(done["deployResult"]["status"], "Failed");
    assert_eq!(
        failures(&done),
        ["The consumer key can't be changed on an existing app."]
    );
    assert!(
        sim.connected_app_xml("Billing_Sync")
            .unwrap()
            .contains(CA_KEY)
    );
    sim.shutdown().await;
}

/// A deploy zip creating New_ECA with `glbl` as its global OAuth settings, which package.xml
/// names as `glbl_member` (the member name or `*`).
fn new_eca_zip(glbl_member: &str, glbl: &str) -> Vec<u8> {
    let header = r#"<ExternalClientApplication xmlns="http://soap.sforce.com/2006/04/metadata"><contactEmail>a@b.c</contactEmail><label>New</label></ExternalClientApplication>"#;
    zip(&[
        (
            "package.xml",
            &package(&[
                ("ExternalClientApplication", "New_ECA"),
                ("ExtlClntAppGlobalOauthSettings", glbl_member),
            ]),
        ),
        ("externalClientApps/New_ECA.eca", header),
        (
            "extlClntAppGlobalOauthSets/New_ECA_glbloauth.ecaGlblOauth",
            glbl,
        ),
    ])
}

#[tokio::test]
async fn consumer_key_taken_by_another_app() {
    let (sim, admin) = start_as_admin("").await;
    // A new ECA claims Billing_Sync's consumer key.
    let glbl = format!(
        r#"<ExtlClntAppGlobalOauthSettings xmlns="http://soap.sforce.com/2006/04/metadata"><consumerKey>{CA_KEY}</consumerKey><externalClientApplication>New_ECA</externalClientApplication><label>G</label></ExtlClntAppGlobalOauthSettings>"#
    );
    let done = deploy(
        &sim,
        &admin,
        default_options(),
        new_eca_zip("New_ECA_glbloauth", &glbl),
    )
    .await;
    assert_eq!(done["deployResult"]["status"], "Failed");
    assert_eq!(failures(&done), ["The consumer key is already taken"]);
    // rollbackOnError: the valid header was not created either.
    assert!(
        sim.eca_component_xml("ExternalClientApplication", "New_ECA")
            .is_none()
    );
    assert!(
        done["deployResult"]["details"]["componentSuccesses"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn new_eca_can_be_created() {
    let (sim, admin) = start_as_admin("").await;
    let glbl = format!(
        r#"<ExtlClntAppGlobalOauthSettings xmlns="http://soap.sforce.com/2006/04/metadata"><certificate>{}</certificate><externalClientApplication>New_ECA</externalClientApplication><label>G</label></ExtlClntAppGlobalOauthSettings>"#,
        keys()[2].cert_pem
    );
    let done = deploy(&sim, &admin, default_options(), new_eca_zip("*", &glbl)).await;
    assert_eq!(done["deployResult"]["status"], "Succeeded", "{done}");
    let created = &done["deployResult"]["details"]["componentSuccesses"][0];
    assert_eq!(created["created"], true);
    assert_app_cert(&sim, "New_ECA", 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn creating_a_connected_app_is_blocked_by_default() {
    let (sim, admin) = start_as_admin("").await;
    let xml = billing_ca_xml("").replace(CA_KEY, "3MVG9brandNewKey0001");
    let z = zip(&[
        ("package.xml", &package(&[("ConnectedApp", "Brand_New")])),
        ("connectedApps/Brand_New.connectedApp", &xml),
    ]);
    let done = deploy(&sim, &admin, default_options(), z).await;
    assert_eq!(done["deployResult"]["status"], "Failed");
    assert_eq!(
        failures(&done),
        [defaults().block_connected_app_creation_message]
    );
    assert!(sim.connected_app_xml("Brand_New").is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn creation_allowed_when_unblocked_with_generated_key() {
    let (sim, admin) = start_as_admin("block_connected_app_creation = false").await;
    let xml = billing_ca_xml("").replace(&format!("<consumerKey>{CA_KEY}</consumerKey>"), "");
    let z = zip(&[
        (
            "unpackaged/package.xml",
            &package(&[("ConnectedApp", "Brand_New")]),
        ),
        ("unpackaged/connectedApps/Brand_New.connectedApp", &xml),
    ]);
    let done = deploy(&sim, &admin, default_options(), z).await;
    assert_eq!(done["deployResult"]["status"], "Succeeded", "{done}");
    assert!(
        sim.connected_app_xml("Brand_New")
            .unwrap()
            .contains("<consumerKey>3MVG9")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_certificates_fail_and_change_nothing() {
    let (sim, admin) = start_as_admin("").await;
    let done = deploy(
        &sim,
        &admin,
        default_options(),
        ca_zip(&with_cert(
            &billing_ca_xml(""),
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
        )),
    )
    .await;
    assert_eq!(done["deployResult"]["status"], "Failed");
    assert_eq!(done["deployResult"]["success"], false);
    assert!(
        failures(&done)[0].starts_with("The certificate is not valid"),
        "{done}"
    );
    assert_app_cert(&sim, "Billing_Sync", 0);

    // Base64 body without armor (sfpowerkit style) is accepted.
    let bare = bare_cert(2);
    let done = deploy(
        &sim,
        &admin,
        default_options(),
        ca_zip(&with_cert(&billing_ca_xml(""), &bare)),
    )
    .await;
    assert_eq!(done["deployResult"]["status"], "Succeeded", "{done}");
    assert_app_cert(&sim, "Billing_Sync", 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn eca_certificate_over_4kb_fails() {
    let (sim, admin) = start_as_admin("").await;
    let padded = format!("{}{}", keys()[2].cert_pem, " ".repeat(4200));
    let glbl = format!(
        r#"<ExtlClntAppGlobalOauthSettings xmlns="http://soap.sforce.com/2006/04/metadata"><certificate>{padded}x</certificate><externalClientApplication>Billing_ECA</externalClientApplication><label>G</label></ExtlClntAppGlobalOauthSettings>"#
    );
    let done = deploy(&sim, &admin, default_options(), eca_global_zip(&glbl)).await;
    assert_eq!(done["deployResult"]["status"], "Failed");
    assert!(
        failures(&done).contains(&"The certificate must be smaller than 4 KB.".to_string()),
        "{done}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn package_members_must_match_files() {
    let (sim, admin) = start_as_admin("").await;
    let z = zip(&[
        (
            "package.xml",
            &package(&[
                ("ConnectedApp", "Billing_Sync"),
                ("ConnectedApp", "Missing_App"),
            ]),
        ),
        (
            "connectedApps/Billing_Sync.connectedApp",
            &billing_ca_xml(""),
        ),
    ]);
    let done = deploy(&sim, &admin, default_options(), z).await;
    assert_eq!(done["deployResult"]["status"], "Failed");
    assert_eq!(
        failures(&done),
        [
            "An object 'Missing_App' of type ConnectedApp was named in package.xml, but was not found in zipped directory"
        ]
    );

    let done = deploy(
        &sim,
        &admin,
        default_options(),
        zip(&[(
            "connectedApps/Billing_Sync.connectedApp",
            &billing_ca_xml(""),
        )]),
    )
    .await;
    assert_eq!(failures(&done), ["No package.xml found"]);
    let done = deploy(&sim, &admin, default_options(), b"not a zip".to_vec()).await;
    assert!(failures(&done)[0].starts_with("The zip file is not valid"));
    let done = deploy(
        &sim,
        &admin,
        default_options(),
        ca_zip("<ConnectedApp><label>unclosed</ConnectedApp>"),
    )
    .await;
    assert!(
        failures(&done)[0].starts_with("Error parsing file"),
        "{done}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn partial_success_without_rollback() {
    let (sim, admin) = start_as_admin("").await;
    let good = with_cert(&billing_ca_xml(""), &keys()[2].cert_pem);
    let z = zip(&[
        (
            "package.xml",
            &package(&[
                ("ConnectedApp", "Billing_Sync"),
                ("ConnectedApp", "Missing_App"),
            ]),
        ),
        ("connectedApps/Billing_Sync.connectedApp", &good),
    ]);
    let mut options = default_options();
    options["rollbackOnError"] = json!(false);
    let done = deploy(&sim, &admin, options, z).await;
    assert_eq!(done["deployResult"]["status"], "SucceededPartial", "{done}");
    assert_app_cert(&sim, "Billing_Sync", 2);
    sim.shutdown().await;
}

/// PATCHes `{"deployResult":{"status":"Canceling"}}`; returns (status, body).
async fn request_cancel(sim: &orgsim::OrgSim, token: &str, id: &str) -> (u16, Value) {
    let r = request(sim, Method::PATCH, &format!("{DEPLOY_REQUEST}/{id}"))
        .bearer_auth(token)
        .json(&json!({"deployResult": {"status": "Canceling"}}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn cancel_a_pending_deploy() {
    // Held, the deploy is still Pending when the cancel lands, whatever the machine's speed.
    let (sim, admin) = start_as_admin("hold_deploys = true").await;
    let (_, body) = post_deploy(&sim, &admin, default_options(), billing_cert_zip(2)).await;
    let id = body["id"].as_str().unwrap();
    let (status, body) = request_cancel(&sim, &admin, id).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["deployResult"]["status"], "Canceling");
    let s = deploy_status(&sim, &admin, id).await;
    assert_eq!(state(&s), ("Canceling", false), "{s}");
    // Canceled at the next phase boundary.
    assert_eq!(sim.step_deploy(id).as_deref(), Ok("Canceled"));
    let s = deploy_status(&sim, &admin, id).await;
    assert_eq!(state(&s), ("Canceled", true), "{s}");
    assert_eq!(s["deployResult"]["success"], false);
    assert_eq!(s["deployResult"]["canceledByName"], "Admin User");
    assert_app_cert(&sim, "Billing_Sync", 0);
    // A finished deploy can be canceled no more.
    let (status, body) = request_cancel(&sim, &admin, id).await;
    assert_eq!(status, 400, "{body}");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_deploy_canceled_in_progress_applies_nothing() {
    let (sim, admin) = start_as_admin("hold_deploys = true").await;
    let (_, body) = post_deploy(&sim, &admin, default_options(), billing_cert_zip(2)).await;
    let id = body["id"].as_str().unwrap();
    assert_eq!(sim.step_deploy(id).as_deref(), Ok("InProgress"));
    let (status, body) = request_cancel(&sim, &admin, id).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(sim.step_deploy(id).as_deref(), Ok("Canceled"));
    let s = deploy_status(&sim, &admin, id).await;
    assert_eq!(state(&s), ("Canceled", true), "{s}");
    assert_app_cert(&sim, "Billing_Sync", 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn only_held_deploys_are_stepped() {
    // Without hold_deploys a deploy moves on its own: a test's step would race its task.
    let (sim, admin) = start_as_admin("").await;
    let (_, body) = post_deploy(&sim, &admin, default_options(), billing_cert_zip(2)).await;
    let id = body["id"].as_str().unwrap();
    // "not held", or "finished" should the deploy already be done: refused either way.
    assert!(sim.step_deploy(id).is_err());
    assert!(sim.step_deploy("0AfNOPE").is_err());
    sim.shutdown().await;
}

#[tokio::test]
async fn deploy_needs_a_session_and_metadata_permission() {
    let sim = start("").await;
    let (status, body) = post_deploy(
        &sim,
        "00Dbogus!token",
        default_options(),
        ca_zip(&billing_ca_xml("")),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            401,
            json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
        )
    );
    let integ = token_for(&sim, 0, CA_KEY, "integ@acme.example").await;
    let (status, body) =
        post_deploy(&sim, &integ, default_options(), ca_zip(&billing_ca_xml(""))).await;
    assert_eq!(status, 403);
    assert_eq!(body[0]["errorCode"], "INSUFFICIENT_ACCESS");
    // A permission set granting ModifyMetadata is enough.
    let deployer = token_for(&sim, 0, CA_KEY, "permset@acme.example").await;
    assert_eq!(
        post_deploy(
            &sim,
            &deployer,
            default_options(),
            ca_zip(&billing_ca_xml(""))
        )
        .await
        .0,
        201
    );
    let r = get(&sim, &format!("{DEPLOY_REQUEST}/0AfNOPE"), Some(&deployer)).await;
    assert_eq!(r.status(), 404);
    sim.shutdown().await;
}

// ---- SOAP ----

#[tokio::test]
async fn read_metadata_connected_app() {
    let (sim, admin) = start_as_admin("").await;
    let (status, body) = soap(&sim, &admin, "<met:readMetadata><met:type>ConnectedApp</met:type><met:fullNames>Billing_Sync</met:fullNames><met:fullNames>Nope</met:fullNames></met:readMetadata>").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(r#"<records xsi:type="ConnectedApp">"#),
        "{body}"
    );
    assert!(body.contains("<fullName>Billing_Sync</fullName>"));
    assert!(body.contains(&format!("<consumerKey>{CA_KEY}</consumerKey>")));
    assert!(!body.contains("consumerSecret"));
    assert!(body.contains(keys()[0].cert_pem.lines().nth(1).unwrap()));
    assert!(body.contains("-----BEGIN CERTIFICATE-----"));
    // WSDL (alphabetical) order with fullName first.
    let order: Vec<usize> = [
        "<fullName>",
        "<contactEmail>",
        "<label>",
        "<oauthConfig>",
        "<permissionSetName>",
        "<profileName>",
    ]
    .iter()
    .map(|t| body.find(t).unwrap())
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{body}");
    assert!(
        body.contains(r#"<records xsi:type="ConnectedApp"/>"#),
        "unknown name: {body}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn read_metadata_base64_certificates_and_limit() {
    let (sim, admin) = start_as_admin("certificate_format_in_reads = \"base64\"").await;
    let (_, body) = soap(&sim, &admin, "<met:readMetadata><met:type>ExtlClntAppGlobalOauthSettings</met:type><met:fullNames>Billing_ECA_glbloauth</met:fullNames></met:readMetadata>").await;
    let bare = bare_cert(1);
    assert!(
        body.contains(&format!("<certificate>{bare}</certificate>")),
        "{body}"
    );
    assert!(!body.contains(ECA_SECRET));
    let names: String = (0..11)
        .map(|i| format!("<met:fullNames>N{i}</met:fullNames>"))
        .collect();
    let (status, body) = soap(
        &sim,
        &admin,
        &format!("<met:readMetadata><met:type>ConnectedApp</met:type>{names}</met:readMetadata>"),
    )
    .await;
    assert_eq!(status, 500);
    assert!(body.contains("LIMIT_EXCEEDED"));
    sim.shutdown().await;
}

#[tokio::test]
async fn list_metadata_for_ca_and_eca_types() {
    let (sim, admin) = start_as_admin("").await;
    let (status, body) = soap(&sim, &admin, "<met:listMetadata><met:queries><met:type>ConnectedApp</met:type></met:queries><met:queries><met:type>ExtlClntAppOauthConfigurablePolicies</met:type></met:queries></met:listMetadata>").await;
    assert_eq!(status, 200, "{body}");
    for expected in [
        "<fullName>Billing_Sync</fullName>",
        "<fileName>connectedApps/Billing_Sync.connectedApp</fileName>",
        "<fullName>Self_App</fullName>",
        "<type>ConnectedApp</type>",
        "<fullName>Billing_ECA_oauthPlcy</fullName>",
        "<fileName>extlClntAppOauthPolicies/Billing_ECA_oauthPlcy.ecaOauthPlcy</fileName>",
        "<manageableState>unmanaged</manageableState>",
        "<id>0H4",
    ] {
        assert!(body.contains(expected), "{expected} in {body}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn read_deploy_read_round_trip_for_eca() {
    let (sim, admin) = start_as_admin("").await;
    let (_, listed) = soap(&sim, &admin, "<met:listMetadata><met:queries><met:type>ExtlClntAppConfigurablePolicies</met:type></met:queries></met:listMetadata>").await;
    assert!(listed.contains("<fullName>Billing_ECA_plcy</fullName>"));
    let (_, read) = soap(&sim, &admin, "<met:readMetadata><met:type>ExtlClntAppConfigurablePolicies</met:type><met:fullNames>Billing_ECA_plcy</met:fullNames></met:readMetadata>").await;
    assert!(
        read.contains("<isOauthPluginEnabled>true</isOauthPluginEnabled>"),
        "{read}"
    );
    assert_eq!(
        deploy(&sim, &admin, default_options(), eca_oauth_off_zip()).await["deployResult"]["status"],
        "Succeeded"
    );
    let (_, read) = soap(&sim, &admin, "<met:readMetadata><met:type>ExtlClntAppConfigurablePolicies</met:type><met:fullNames>Billing_ECA_plcy</met:fullNames></met:readMetadata>").await;
    assert!(
        read.contains("<isOauthPluginEnabled>false</isOauthPluginEnabled>"),
        "{read}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn soap_faults_for_bad_session_and_missing_permission() {
    let sim = start("").await;
    let call = "<met:readMetadata><met:type>ConnectedApp</met:type><met:fullNames>Billing_Sync</met:fullNames></met:readMetadata>";
    let (status, body) = soap(&sim, "bogus", call).await;
    assert_eq!(status, 500);
    assert!(
        body.contains("<faultcode>sf:INVALID_SESSION_ID</faultcode>"),
        "{body}"
    );
    let integ = token_for(&sim, 0, CA_KEY, "integ@acme.example").await;
    let (status, body) = soap(&sim, &integ, call).await;
    assert_eq!(status, 500);
    assert!(
        body.contains("<faultcode>sf:INSUFFICIENT_ACCESS</faultcode>"),
        "{body}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn second_satellite_of_a_type_is_rejected_and_non_multipart_is_400() {
    let (sim, admin) = start_as_admin("").await;
    let plcy = r#"<ExtlClntAppConfigurablePolicies xmlns="http://soap.sforce.com/2006/04/metadata"><externalClientApplication>Billing_ECA</externalClientApplication><isEnabled>true</isEnabled></ExtlClntAppConfigurablePolicies>"#;
    let z = zip(&[
        (
            "package.xml",
            &package(&[("ExtlClntAppConfigurablePolicies", "Other_plcy")]),
        ),
        ("extlClntAppPolicies/Other_plcy.ecaPlcy", plcy),
    ]);
    let done = deploy(&sim, &admin, default_options(), z).await;
    assert_eq!(
        failures(&done),
        ["Billing_ECA already has a ExtlClntAppConfigurablePolicies named Billing_ECA_plcy"]
    );
    let r = request(&sim, Method::POST, DEPLOY_REQUEST)
        .bearer_auth(&admin)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()[0]["errorCode"],
        "INVALID_MULTIPART_REQUEST"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn deployments_queue_one_at_a_time_in_the_order_they_were_made() {
    let (sim, admin) = start_as_admin("hold_deploys = true").await;
    let mut ids = Vec::new();
    for key in [1, 2] {
        let (_, body) = post_deploy(&sim, &admin, default_options(), billing_cert_zip(key)).await;
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    let (first, second) = (&ids[0], &ids[1]);
    // The second waits while the first has not finished.
    let queued = sim.step_deploy(second).unwrap_err();
    assert!(queued.contains("queued behind"), "{queued}");
    assert_eq!(sim.step_deploy(first).as_deref(), Ok("InProgress"));
    assert!(sim.step_deploy(second).is_err());
    let s = deploy_status(&sim, &admin, second).await;
    assert_eq!(state(&s), ("Pending", false), "{s}");
    assert_eq!(sim.step_deploy(first).as_deref(), Ok("Succeeded"));
    assert_app_cert(&sim, "Billing_Sync", 1);
    assert_eq!(sim.step_deploy(second).as_deref(), Ok("InProgress"));
    assert_eq!(sim.step_deploy(second).as_deref(), Ok("Succeeded"));
    assert_app_cert(&sim, "Billing_Sync", 2);
    sim.shutdown().await;

    // Unqueued, the later deploy may run first.
    let (sim, admin) = start_as_admin("hold_deploys = true\ndeploys_one_at_a_time = false").await;
    let (_, a) = post_deploy(&sim, &admin, default_options(), billing_cert_zip(1)).await;
    let (_, b) = post_deploy(&sim, &admin, default_options(), billing_cert_zip(2)).await;
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    assert_eq!(sim.step_deploy(b).as_deref(), Ok("InProgress"));
    assert_eq!(sim.step_deploy(a).as_deref(), Ok("InProgress"));
    sim.shutdown().await;
}
