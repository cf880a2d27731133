//! REST discovery as clients walk it: the versions list, every version's resource map,
//! describe-global, `//services/…` paths, query/queryAll/tooling query with client-chosen batch
//! sizes, and the token endpoint's answer to a GET.

mod common;

use common::*;
use orgsim::OrgSim;
use serde_json::{Value, json};

#[tokio::test]
async fn every_version_from_31_to_67_is_listed_and_served_the_same() {
    let (sim, admin) = start_as_admin("").await;
    let (s, list) = get_json(&sim, "/services/data/", None).await;
    assert_eq!(s, 200);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 37, "v31.0 … v67.0");
    assert_eq!(
        list[0],
        json!({"label": "Summer '14", "url": "/services/data/v31.0", "version": "31.0"})
    );
    assert_eq!(
        list[20],
        json!({"label": "Spring '21", "url": "/services/data/v51.0", "version": "51.0"})
    );
    assert_eq!(list[36]["label"], "Summer '26");
    for version in ["v31.0", "v51.0", "v58.0", "v67.0"] {
        let (s, body) = soql_at(&sim, version, "query", &admin, "SELECT COUNT() FROM User").await;
        assert_eq!((s, body["totalSize"].clone()), (200, json!(5)), "{version}");
    }
    sim.shutdown().await;
}

/// A query through `/services/data/{version}/{resource}`.
async fn soql_at(
    sim: &OrgSim,
    version: &str,
    resource: &str,
    token: &str,
    q: &str,
) -> (u16, Value) {
    let path = with_query(&format!("/services/data/{version}/{resource}"), &[("q", q)]);
    get_json(sim, &path, Some(token)).await
}

#[tokio::test]
async fn a_version_answers_its_resource_map_with_or_without_trailing_slash() {
    let (sim, admin) = start_as_admin("").await;
    for path in [
        "/services/data/v67.0",
        "/services/data/v67.0/",
        "/services/data/v31.0",
    ] {
        let (s, map) = get_json(&sim, path, Some(&admin)).await;
        assert_eq!(s, 200, "{path}: {map}");
        let version = path.trim_end_matches('/').rsplit('/').next().unwrap();
        for resource in [
            "sobjects", "query", "queryAll", "tooling", "metadata", "limits",
        ] {
            assert_eq!(
                map[resource],
                format!("/services/data/{version}/{resource}"),
                "{path}"
            );
        }
        assert_eq!(
            map["identity"],
            format!("{}/id/{ORG_ID}/0055g00000ADMINAAA", sim.base_url()),
            "identity is absolute"
        );
    }
    assert_eq!(get(&sim, "/services/data/v67.0", None).await.status(), 401);
    sim.shutdown().await;
}

#[tokio::test]
async fn describe_global_lists_every_queryable_object() {
    let (sim, admin) = start_as_admin("").await;
    for path in [format!("{V}/sobjects"), format!("{V}/sobjects/")] {
        let (s, body) = get_json(&sim, &path, Some(&admin)).await;
        assert_eq!(s, 200, "{body}");
        let names: Vec<&str> = body["sobjects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap())
            .collect();
        for name in [
            "AuthSession",
            "ConnectedApplication",
            "LoginHistory",
            "OauthToken",
            "Organization",
            "PermissionSet",
            "PermissionSetAssignment",
            "Profile",
            "SetupAuditTrail",
            "User",
        ] {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
        let user = &body["sobjects"][names.iter().position(|n| *n == "User").unwrap()];
        assert_eq!(user["keyPrefix"], "005");
        assert_eq!(user["queryable"], true);
        assert_eq!(user["urls"]["sobject"], format!("{V}/sobjects/User"));
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn an_object_describes_its_fields_lookups_and_filters() {
    let (sim, admin) = start_as_admin("").await;
    for path in [
        format!("{V}/sobjects/LoginHistory/describe"),
        format!("{V}/sobjects/loginhistory/describe/"),
    ] {
        let (s, body) = get_json(&sim, &path, Some(&admin)).await;
        assert_eq!(s, 200, "{path}: {body}");
        assert_eq!(body["name"], "LoginHistory");
        let field = |name: &str| {
            body["fields"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["name"] == name)
                .cloned()
                .unwrap_or_else(|| panic!("no {name}"))
        };
        assert_eq!(field("Status")["filterable"], false);
        assert_eq!(field("LoginTime")["type"], "datetime");
        assert_eq!(field("SourceIp")["filterable"], true);
    }
    let (_, user) = get_json(&sim, &format!("{V}/sobjects/User/describe"), Some(&admin)).await;
    let profile_id = user["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "ProfileId")
        .unwrap();
    assert_eq!(
        (
            &profile_id["type"],
            &profile_id["referenceTo"],
            &profile_id["relationshipName"]
        ),
        (&json!("reference"), &json!(["Profile"]), &json!("Profile"))
    );
    let (s, basic) = get_json(&sim, &format!("{V}/sobjects/SetupAuditTrail"), Some(&admin)).await;
    assert_eq!(s, 200);
    assert_eq!(basic["objectDescribe"]["keyPrefix"], "0Ym");
    let (s, _) = get_json(
        &sim,
        &format!("{V}/sobjects/Account/describe"),
        Some(&admin),
    )
    .await;
    assert_eq!(s, 404);
    // Records are still read by id under the same prefix.
    let (s, record) = get_json(
        &sim,
        &format!("{V}/sobjects/User/0055g00000ADMINAAA"),
        Some(&admin),
    )
    .await;
    assert_eq!(
        (s, record["Username"].clone()),
        (200, json!("admin@acme.example"))
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn double_slash_paths_are_served_like_single_slash_ones() {
    let (sim, admin) = start_as_admin("").await;
    let single = soql(
        &sim,
        Some(&admin),
        "SELECT Username FROM User ORDER BY Username",
    )
    .await;
    let path = with_query(
        "//services/data/v67.0/query",
        &[("q", "SELECT Username FROM User ORDER BY Username")],
    );
    let r = reqwest::Client::new()
        .get(format!("{}{path}", sim.base_url()))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert!(r.url().path().starts_with("//services/"), "{}", r.url());
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), single.1);
    let r = reqwest::Client::new()
        .get(format!("{}//services/data/", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    sim.shutdown().await;

    // Without the normalisation a real org's strictness can be emulated.
    let (sim, admin) = start_as_admin("collapse_double_slashes = false").await;
    let r = reqwest::Client::new()
        .get(format!("{}//services/data/v67.0/limits", sim.base_url()))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn tooling_query_and_query_all_serve_the_same_objects_and_pages() {
    let sim = OrgSim::start(seed_with_users("", 250)).await.unwrap();
    let admin = admin_token(&sim).await;
    let q = "SELECT Username FROM User ORDER BY Username";
    let (_, plain) = soql_at(&sim, "v67.0", "query", &admin, q).await;
    for resource in ["tooling/query", "queryAll"] {
        let (s, body) = soql_at(&sim, "v67.0", resource, &admin, q).await;
        assert_eq!(s, 200, "{resource}: {body}");
        assert_eq!(body, plain, "{resource}");
    }
    // A batch size the client asks for, paged through the same resource.
    let path = with_query(&format!("{V}/tooling/query"), &[("q", q)]);
    let r = request(&sim, reqwest::Method::GET, &path)
        .bearer_auth(&admin)
        .header("Sforce-Query-Options", "batchSize=200")
        .send()
        .await
        .unwrap();
    let first: Value = r.json().await.unwrap();
    assert_eq!(
        (first["totalSize"].clone(), first["done"].clone()),
        (json!(255), json!(false))
    );
    assert_eq!(first["records"].as_array().unwrap().len(), 200);
    let next = first["nextRecordsUrl"].as_str().unwrap();
    assert!(
        next.starts_with(&format!("{V}/tooling/query/01g")) && next.ends_with("-200"),
        "{next}"
    );
    let (s, second) = get_json(&sim, next, Some(&admin)).await;
    assert_eq!(s, 200);
    assert_eq!(second["done"], true);
    assert_eq!(second["records"].as_array().unwrap().len(), 55);
    sim.shutdown().await;
}

#[tokio::test]
async fn batch_sizes_stay_within_200_and_2000() {
    let sim = OrgSim::start(seed_with_users("", 2100)).await.unwrap();
    let admin = admin_token(&sim).await;
    let path = with_query(&format!("{V}/query"), &[("q", "SELECT Id FROM User")]);
    for (asked, got) in [
        (None, 2000),
        (Some("batchSize=5"), 200),
        (Some("batchSize=9999"), 2000),
        (Some("batchSize=300"), 300),
    ] {
        let mut req = request(&sim, reqwest::Method::GET, &path).bearer_auth(&admin);
        if let Some(options) = asked {
            req = req.header("Sforce-Query-Options", options);
        }
        let body: Value = req.send().await.unwrap().json().await.unwrap();
        assert_eq!(body["records"].as_array().unwrap().len(), got, "{asked:?}");
        assert_eq!(body["totalSize"], 2105);
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_get_on_the_token_endpoint_is_a_json_error() {
    let sim = start("").await;
    for method in [reqwest::Method::GET, reqwest::Method::PUT] {
        let r = request(&sim, method.clone(), "/services/oauth2/token")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{method}");
        assert!(content_type(r.headers()).starts_with("application/json"));
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"error": "invalid_request", "error_description": "must use HTTP POST"})
        );
    }
    sim.shutdown().await;
}
