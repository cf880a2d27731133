//! The tamper-evident journal, through the real binary, in every store kind: an entry changed
//! by hand in the store (the file store's `journal.jsonl`, Vault's journal KV value rewritten
//! through OpenBao's HTTP API, the AWS journal secret put again on moto) is named at its own
//! number by `rekey journal CRED --verify` (exit 6) and makes `rekey check` critical
//! (`journal-chain/store:<name>`, exit 2); an untouched journal verifies; a journal written
//! before chaining still works and the next rotation chains on; `--export` lines carry the chain
//! state. Nothing secret is printed.

mod world;

use rekey_testkit::moto::{Moto, sdk_config};
use rekey_testkit::openbao::OpenBao;
use serde_json::Value;
use world::{World, vault_world, with_aws_store};

const CRED: &str = "billing";

/// The entry this test edits: the third, the rotation's `stage begin`.
const EDITED: usize = 3;

/// `billing` imported and rotated once; `billing-eca` dropped, so `check` judges one credential.
async fn rotated(mut w: World) -> World {
    w.drop_credential("billing-eca");
    w.import_legacy(CRED).await;
    w.ok(&["rotate", CRED]).await;
    w
}

/// What a hand edit does to an entry: a different detail, everything else as it was.
fn edit(entry: &mut Value) {
    // Vault keeps each entry as a JSON string: edit what it holds.
    if let Value::String(text) = entry {
        let mut inner: Value = serde_json::from_str(text).unwrap();
        edit(&mut inner);
        *entry = Value::String(inner.to_string());
        return;
    }
    entry["detail"] = Value::String("changed by hand".into());
}

/// The journal verifies, and `check` has nothing to say about its chain.
async fn assert_intact(w: &mut World, legacy: u64) -> u64 {
    let verify = w.ok(&["journal", CRED, "--verify"]).await;
    let verdict = w.json(&["journal", CRED, "--verify"]).await;
    assert_eq!(verdict["intact"], true, "{verdict}");
    assert_eq!(verdict["legacy"], legacy, "{verdict}");
    assert!(verdict["broken_at"].is_null(), "{verdict}");
    let entries = verdict["entries"].as_u64().unwrap();
    assert_eq!(
        verify.stdout.trim(),
        format!("chain intact: {entries} entries ({legacy} before chaining)")
    );
    let check = w.rekey(&["check", "--json", "--no-notify"]).await;
    assert!(!check.stdout.contains("journal-chain/"), "{}", check.stdout);
    entries
}

/// `--verify` (text and JSON), `check` and the plain listing all name entry [`EDITED`] where
/// `location` says it is; `--export` marks the entries before it ok and it and after broken.
async fn assert_named_at_the_edit(w: &mut World, location: &str) {
    let verify = w.rekey(&["journal", CRED, "--verify"]).await;
    assert_eq!(verify.code, 6, "{}{}", verify.stdout, verify.stderr);
    assert!(
        verify.stderr.contains(&format!("at entry {EDITED} ("))
            && verify
                .stderr
                .contains(&format!("at {location}: its content changed")),
        "{}",
        verify.stderr
    );
    let json = w.rekey(&["journal", CRED, "--verify", "--json"]).await;
    assert_eq!(json.code, 6);
    let verdict: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(verdict["intact"], false, "{verdict}");
    let at = &verdict["broken_at"];
    assert_eq!(at["number"], EDITED, "{verdict}");
    assert_eq!(at["problem"], "content_changed", "{verdict}");
    assert_eq!(at["location"], location, "{verdict}");
    assert_eq!(
        (at["step"].as_str(), at["phase"].as_str()),
        (Some("stage"), Some("begin")),
        "{verdict}"
    );

    // The listing still reads (nothing is damaged) and says the chain is broken.
    let list = w.rekey(&["journal", CRED]).await;
    assert_eq!(list.code, 0, "{}", list.stderr);
    assert!(
        list.stderr.contains("chain BROKEN") && list.stderr.contains("--verify"),
        "{}",
        list.stderr
    );

    let check = w.rekey(&["check", "--json", "--no-notify"]).await;
    assert_eq!(check.code, 2, "{}{}", check.stdout, check.stderr);
    let rows: Value = serde_json::from_str(&check.stdout).unwrap();
    let finding = rows[0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"].as_str().unwrap().starts_with("journal-chain/"))
        .unwrap_or_else(|| panic!("{rows}"))
        .clone();
    assert_eq!(finding["severity"], "critical", "{finding}");
    let message = finding["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("entry {EDITED} ("))
            && message.contains(&format!("`rekey journal {CRED} --verify`")),
        "{message}"
    );
    let text = w.rekey(&["check", "--no-notify"]).await;
    assert_eq!(text.code, 2, "{}", text.stdout);

    let lines = export(w, &["journal", "--export"]).await;
    for line in &lines {
        let want = if line["seq"].as_u64().unwrap() < EDITED as u64 {
            "ok"
        } else {
            "broken"
        };
        assert_eq!(line["chain"], want, "{line}");
    }
    w.assert_no_key_bytes_leaked();
}

/// `rekey ARGS` (an export), its lines parsed; each names its credential, store and place.
async fn export(w: &mut World, args: &[&str]) -> Vec<Value> {
    let run = w.ok(args).await;
    let lines: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(!lines.is_empty(), "nothing exported");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["credential"], CRED, "{line}");
        assert_eq!(line["seq"], i + 1, "{line}");
        assert!(
            line["rotation_id"].is_string() && line["step"].is_string(),
            "{line}"
        );
    }
    lines
}

fn journal_lines(w: &World) -> Vec<Value> {
    std::fs::read_to_string(w.path("keys/billing/journal.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn write_journal_lines(w: &World, entries: &[Value]) {
    let text: String = entries.iter().map(|e| format!("{e}\n")).collect();
    std::fs::write(w.path("keys/billing/journal.jsonl"), text).unwrap();
}

#[tokio::test]
async fn a_line_edited_in_the_file_store_is_named_by_verify_and_check() {
    let mut w = rotated(World::new().await).await;
    let entries = assert_intact(&mut w, 0).await;
    let exported = export(&mut w, &["journal", "--export"]).await;
    assert_eq!(exported.len() as u64, entries);
    assert!(
        exported
            .iter()
            .all(|l| l["chain"] == "ok" && l["store"] == "local")
    );
    assert!(exported[1]["prev"] == exported[0]["hash"], "{exported:?}");

    // --output: the same lines, in a file written whole.
    let out = w.path("export.jsonl");
    let written = w
        .ok(&[
            "journal",
            "--export",
            CRED,
            "--output",
            out.to_str().unwrap(),
        ])
        .await;
    assert!(written.stdout.is_empty(), "{}", written.stdout);
    let file: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(file, exported);

    let mut lines = journal_lines(&w);
    edit(&mut lines[EDITED - 1]);
    write_journal_lines(&w, &lines);
    let location = format!(
        "{}:{EDITED}",
        w.path("keys/billing/journal.jsonl").display()
    );
    assert_named_at_the_edit(&mut w, &location).await;
}

#[tokio::test]
async fn a_journal_from_before_chaining_still_works_verifies_as_legacy_and_chains_on() {
    let mut w = rotated(World::new().await).await;
    // What the previous version wrote: the same entries without prev and hash.
    let mut lines = journal_lines(&w);
    for line in &mut lines {
        let object = line.as_object_mut().unwrap();
        assert!(object.remove("prev").is_some() && object.remove("hash").is_some());
    }
    write_journal_lines(&w, &lines);
    let legacy = lines.len() as u64;

    w.ok(&["status", CRED]).await;
    assert_eq!(assert_intact(&mut w, legacy).await, legacy);
    let exported = export(&mut w, &["journal", "--export", CRED]).await;
    assert!(
        exported.iter().all(|l| l["chain"] == "legacy"),
        "{exported:?}"
    );

    w.ok(&["rotate", CRED]).await;
    let status = w.json(&["status", CRED]).await;
    assert_eq!(status[0]["generation"], 3, "{status}");
    let total = assert_intact(&mut w, legacy).await;
    assert!(total > legacy, "the rotation journaled");
    let exported = export(&mut w, &["journal", "--export"]).await;
    for line in &exported {
        let want = if line["seq"].as_u64().unwrap() <= legacy {
            "legacy"
        } else {
            "ok"
        };
        assert_eq!(line["chain"], want, "{line}");
    }

    // The chain holds from there: an edit among the old entries after the last one shows at
    // the first chained entry, which no longer follows it.
    let mut lines = journal_lines(&w);
    edit(&mut lines[legacy as usize - 1]);
    write_journal_lines(&w, &lines);
    let verdict = w.json_any(&["journal", CRED, "--verify"]).await;
    assert_eq!(verdict["broken_at"]["number"], legacy + 1, "{verdict}");
    assert_eq!(
        verdict["broken_at"]["problem"], "does_not_follow",
        "{verdict}"
    );
    w.assert_no_key_bytes_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_journal_rewritten_through_the_http_api_is_named_by_verify_and_check() {
    let bao = OpenBao::shared();
    let (w, prefix) = vault_world(bao).await;
    let mut w = rotated(w).await;
    assert_intact(&mut w, 0).await;

    // Another holder of the token rewrites the journal with one detail changed.
    let url = format!("{}/v1/secret/data/{prefix}/{CRED}/journal", bao.addr());
    let http = reqwest::Client::new();
    let current: Value = http
        .get(&url)
        .header("X-Vault-Token", bao.root_token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut data = current["data"]["data"].clone();
    let total = data["entries"].as_array().unwrap().len();
    edit(&mut data["entries"][EDITED - 1]);
    let written: Value = http
        .post(&url)
        .header("X-Vault-Token", bao.root_token())
        // The store writes with check-and-set; so does whoever rewrites it.
        .json(&serde_json::json!({
            "data": data,
            "options": { "cas": current["data"]["metadata"]["version"] },
        }))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let version = written["data"]["version"].as_u64().unwrap();
    let location =
        format!("secret/data/{prefix}/{CRED}/journal version {version}, entry {EDITED} of {total}");
    assert_named_at_the_edit(&mut w, &location).await;
    assert_no_token_printed(&w, bao.root_token());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aws_journal_put_again_is_named_by_verify_and_check() {
    let moto = Moto::shared();
    let mut w = World::new().await;
    let prefix = with_aws_store(&mut w, moto);
    w.edit_config(|c| c.replacen("store = \"local\"", "store = \"aws\"", 1));
    let mut w = rotated(w).await;
    assert_intact(&mut w, 0).await;

    let client = aws_sdk_secretsmanager::Client::new(&sdk_config(&moto.endpoint()).await);
    let name = format!("{prefix}/{CRED}/journal");
    let value = client
        .get_secret_value()
        .secret_id(&name)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .unwrap();
    let mut journal: Value = serde_json::from_str(value.secret_string().unwrap()).unwrap();
    let total = journal["entries"].as_array().unwrap().len();
    edit(&mut journal["entries"][EDITED - 1]);
    // A new version of the journal secret, made AWSCURRENT.
    let put = client
        .put_secret_value()
        .secret_id(&name)
        .secret_string(journal.to_string())
        .version_stages("edited")
        .send()
        .await
        .unwrap();
    let version = put.version_id().unwrap();
    client
        .update_secret_version_stage()
        .secret_id(&name)
        .version_stage("AWSCURRENT")
        .move_to_version_id(version)
        .remove_from_version_id(value.version_id().unwrap())
        .send()
        .await
        .unwrap();
    let location = format!("secret {name} version {version}, entry {EDITED} of {total}");
    let verdict = w.json_any(&["journal", CRED, "--verify"]).await;
    assert_eq!(verdict["store"], "aws", "{verdict}");
    assert_named_at_the_edit(&mut w, &location).await;
}

fn assert_no_token_printed(w: &World, token: &str) {
    let printed: &[String] = &w.printed;
    for text in printed {
        assert!(!text.contains(token), "a token was printed:\n{text}");
    }
}
