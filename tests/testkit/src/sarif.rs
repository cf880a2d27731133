//! SARIF 2.1.0 validation for `rekey audit --format sarif`: the document is checked against the
//! OASIS SARIF 2.1.0 JSON schema committed at `tests/governance/sarif-schema-2.1.0.json` (never
//! fetched at test time) by the venv's Python and a pinned `jsonschema`, with the Draft-07
//! validator the schema declares and format checking off.

use crate::venv::{venv_python, workspace_root};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The `jsonschema` release the validation runs on (installed into the workspace's `.venv`).
pub const JSONSCHEMA: &str = "jsonschema==4.23.0";

/// Reads the schema (argv[1]) and the document (stdin); prints one `path: message` line per
/// violation, sorted by path, and exits 1 if there is any; exits 2 if the document is not JSON.
const VALIDATE: &str = r#"
import json, sys
import jsonschema
with open(sys.argv[1], encoding="utf-8") as f:
    schema = json.load(f)
jsonschema.Draft7Validator.check_schema(schema)
try:
    document = json.loads(sys.stdin.read())
except ValueError as e:
    print(f"$: not JSON: {e}")
    sys.exit(2)
validator = jsonschema.Draft7Validator(schema)
errors = sorted(validator.iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path])
for e in errors:
    path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path)
    print(f"{path}: {e.message}")
sys.exit(1 if errors else 0)
"#;

/// The committed OASIS SARIF 2.1.0 schema.
pub fn sarif_schema_path() -> PathBuf {
    workspace_root().join("tests/governance/sarif-schema-2.1.0.json")
}

/// Validates `sarif_json` against the SARIF 2.1.0 schema. `Err` holds every violation, one
/// `path: message` line each (`$.runs[0].results[0]: 'message' is a required property`), or
/// why the document could not be checked at all.
pub fn validate_sarif(sarif_json: &str) -> Result<(), String> {
    let python = venv_python("jsonschema", &[JSONSCHEMA]);
    let mut child = Command::new(&python)
        .arg("-c")
        .arg(VALIDATE)
        .arg(sarif_schema_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("run {}: {e}", python.display()))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let document = sarif_json.to_owned();
    // Written from a thread so a large document cannot deadlock against a full stdout pipe.
    let writer = std::thread::spawn(move || stdin.write_all(document.as_bytes()));
    let out = child
        .wait_with_output()
        .map_err(|e| format!("wait for {}: {e}", python.display()))?;
    writer
        .join()
        .expect("stdin writer")
        .map_err(|e| format!("write the document to the validator: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match out.status.code() {
        Some(0) => Ok(()),
        Some(1 | 2) if !stdout.is_empty() => Err(stdout),
        _ => Err(format!(
            "the validator failed ({}): {}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn minimal() -> serde_json::Value {
        json!({
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [{
                "tool": {"driver": {
                    "name": "rekey",
                    "rules": [{"id": "scope-full", "shortDescription": {"text": "the app grants the full scope"}}]
                }},
                "results": [{
                    "ruleId": "scope-full",
                    "ruleIndex": 0,
                    "level": "warning",
                    "message": {"text": "acme/Legacy_Portal: the app grants the full scope"}
                }]
            }]
        })
    }

    #[test]
    fn the_committed_schema_is_the_oasis_draft_07_schema() {
        let schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(sarif_schema_path()).unwrap()).unwrap();
        assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
        let id = schema["$id"].as_str().or(schema["id"].as_str()).unwrap();
        assert!(id.ends_with("sarif-schema-2.1.0.json"), "{id}");
        assert_eq!(schema["properties"]["version"]["enum"], json!(["2.1.0"]));
    }

    #[test]
    fn a_minimal_sarif_log_is_valid() {
        validate_sarif(&minimal().to_string()).unwrap();
    }

    #[test]
    fn version_2_0_is_refused() {
        let mut log = minimal();
        log["version"] = json!("2.0");
        let err = validate_sarif(&log.to_string()).unwrap_err();
        assert!(
            err.contains("$.version: '2.0' is not one of ['2.1.0']"),
            "{err}"
        );
    }

    #[test]
    fn a_result_without_a_message_is_refused() {
        let mut log = minimal();
        log["runs"][0]["results"][0]
            .as_object_mut()
            .unwrap()
            .remove("message");
        let err = validate_sarif(&log.to_string()).unwrap_err();
        assert!(
            err.contains("$.runs[0].results[0]: 'message' is a required property"),
            "{err}"
        );
    }

    #[test]
    fn every_violation_is_named_and_non_json_is_refused() {
        let mut log = minimal();
        log["version"] = json!("2.0");
        log["runs"][0]["results"][0]["level"] = json!("fatal");
        let err = validate_sarif(&log.to_string()).unwrap_err();
        assert_eq!(err.lines().count(), 2, "{err}");
        assert!(err.contains("$.runs[0].results[0].level:"), "{err}");
        let err = validate_sarif("{not json").unwrap_err();
        assert!(err.starts_with("$: not JSON"), "{err}");
    }
}
