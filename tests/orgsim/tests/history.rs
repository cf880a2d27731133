//! The org's past as a seed gives it (`[[approvals]]` dates and use counts, `[[logins]]`), the
//! `Date` header from the emulator's clock, and SOAP operations in the call log.

mod common;

use common::*;
use orgsim::Seed;
use serde_json::Value;

const HISTORY: &str = r#"
[[approvals]]
username = "nobody@acme.example"
app = "Billing_Sync"
count = 2
created_days_ago = 60
last_used_days_ago = 45
use_count = 3

[[logins]]
username = "integ@acme.example"
app = "Billing_Sync"
days_ago = 3

[[logins]]
username = "integ@acme.example"
app = "Self_App"
days_ago = 120
status = "Failed: invalid assertion"
"#;

fn seed(extra: &str) -> Result<Seed, orgsim::SeedError> {
    Seed::from_toml_str(&(seed_toml("") + extra), std::path::Path::new("."))
}

async fn records(sim: &orgsim::OrgSim, token: &str, q: &str) -> Vec<Value> {
    let (s, body) = soql(sim, Some(token), q).await;
    assert_eq!(s, 200, "{q}: {body}");
    body["records"].as_array().unwrap().clone()
}

fn days_ago(text: &str) -> i64 {
    let t = chrono::DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.3f%z").unwrap();
    (now() - t.timestamp() + 3600) / 86_400
}

#[tokio::test]
async fn seeded_grants_and_logins_are_rows_of_the_past() {
    let sim = orgsim::OrgSim::start(seed(HISTORY).unwrap()).await.unwrap();
    let admin = admin_token(&sim).await;

    let grants = records(
        &sim,
        &admin,
        "SELECT AppName, CreatedDate, LastUsedDate, UseCount, User.Username FROM OauthToken WHERE AppName = 'Billing Sync'",
    )
    .await;
    assert_eq!(grants.len(), 2, "{grants:?}");
    for g in &grants {
        assert_eq!(days_ago(g["CreatedDate"].as_str().unwrap()), 60, "{g}");
        assert_eq!(days_ago(g["LastUsedDate"].as_str().unwrap()), 45, "{g}");
        assert_eq!(g["UseCount"], 3);
        assert_eq!(g["User"]["Username"], "nobody@acme.example");
    }
    // The standard seed's own approval keeps its defaults: now, never used.
    let own = records(
        &sim,
        &admin,
        "SELECT UseCount, CreatedDate FROM OauthToken WHERE AppName = 'Self App'",
    )
    .await;
    assert_eq!(own[0]["UseCount"], 0);
    assert_eq!(days_ago(own[0]["CreatedDate"].as_str().unwrap()), 0);

    let since = (chrono::Utc::now() - chrono::Duration::days(30)).format("%Y-%m-%dT%H:%M:%SZ");
    let recent = records(
        &sim,
        &admin,
        &format!("SELECT Application, LoginTime, Status, UserId FROM LoginHistory WHERE LoginTime >= {since}"),
    )
    .await;
    let seeded: Vec<&Value> = recent
        .iter()
        // The admin's own login (through Billing Sync, just now) is not seeded.
        .filter(|r| r["Application"] == "Billing Sync" && r["UserId"] != "0055g00000ADMINAAA")
        .collect();
    assert_eq!(seeded.len(), 1, "{recent:?}");
    assert_eq!(seeded[0]["Status"], "Success");
    assert_eq!(days_ago(seeded[0]["LoginTime"].as_str().unwrap()), 3);
    let old = records(
        &sim,
        &admin,
        "SELECT Application, Status FROM LoginHistory WHERE LoginTime < LAST_N_DAYS:100",
    )
    .await;
    assert_eq!(old.len(), 1, "{old:?}");
    assert_eq!(old[0]["Application"], "Self App");
    assert_eq!(old[0]["Status"], "Failed: invalid assertion");
    sim.shutdown().await;
}

#[tokio::test]
async fn seeds_with_impossible_history_are_refused() {
    let unknown_app =
        "[[logins]]\nusername = \"integ@acme.example\"\napp = \"Nope\"\ndays_ago = 1\n";
    let err = seed(unknown_app).unwrap_err().to_string();
    assert!(err.contains("unknown app Nope"), "{err}");
    let unknown_user =
        "[[logins]]\nusername = \"who@acme.example\"\napp = \"Self_App\"\ndays_ago = 1\n";
    assert!(
        seed(unknown_user)
            .unwrap_err()
            .to_string()
            .contains("unknown user")
    );
    let backwards = "[[approvals]]\nusername = \"nobody@acme.example\"\napp = \"Self_App\"\ncreated_days_ago = 1\nlast_used_days_ago = 2\n";
    let err = seed(backwards).unwrap_err().to_string();
    assert!(err.contains("last used before it was created"), "{err}");
}

#[tokio::test]
async fn the_date_header_follows_the_emulator_clock() {
    let sim = start("").await;
    let date_of = |resp: &reqwest::Response| {
        let dates: Vec<_> = resp.headers().get_all("date").iter().collect();
        assert_eq!(dates.len(), 1, "exactly one Date header: {dates:?}");
        chrono::DateTime::parse_from_rfc2822(dates[0].to_str().unwrap())
            .unwrap()
            .timestamp()
    };
    let resp = get(&sim, "/services/data/", None).await;
    let text = resp.headers()["date"].to_str().unwrap().to_string();
    assert!(text.ends_with(" GMT"), "{text}");
    assert!((date_of(&resp) - now()).abs() <= 2, "{text}");

    sim.set_clock_offset(45);
    for path in [
        "/services/data/",
        "/services/data/v67.0/limits",
        "/no/such/path",
    ] {
        let resp = get(&sim, path, None).await;
        let skew = date_of(&resp) - now();
        assert!((43..=47).contains(&skew), "{path}: skew {skew}");
    }
    sim.set_clock_offset(-3600);
    let resp = post_token(&sim, &[("grant_type", "password")]).await;
    assert!((date_of(&resp) - now() + 3600).abs() <= 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_call_log_names_soap_operations() {
    let (sim, admin) = start_as_admin("").await;
    let list = "<met:listMetadata><met:queries><met:type>ConnectedApp</met:type></met:queries><met:asOfVersion>67.0</met:asOfVersion></met:listMetadata>";
    let read = "<met:readMetadata><met:type>ConnectedApp</met:type><met:fullNames>Self_App</met:fullNames></met:readMetadata>";
    assert_eq!(soap(&sim, &admin, list).await.0, 200);
    assert_eq!(soap(&sim, &admin, read).await.0, 200);
    let ops: Vec<Option<String>> = sim
        .calls()
        .into_iter()
        .filter(|c| c.path.starts_with("/services/Soap/"))
        .map(|c| c.operation)
        .collect();
    assert_eq!(
        ops,
        [
            Some("listMetadata ConnectedApp".to_string()),
            Some("readMetadata ConnectedApp".to_string())
        ]
    );
    assert!(
        sim.calls()
            .iter()
            .filter(|c| !c.path.starts_with("/services/Soap/"))
            .all(|c| c.operation.is_none())
    );
    sim.shutdown().await;
}
