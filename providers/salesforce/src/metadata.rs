//! Metadata API shapes: SOAP readMetadata/listMetadata envelopes and their answers, the deploy
//! zip, and the REST deployRequest status (which Salesforce may send with booleans and numbers
//! as strings).

use crate::xml::{Element, METADATA_NS};
use quick_xml::escape::escape;
use serde_json::Value;
use std::io::Write as _;

/// Metadata type of a Connected App.
pub(crate) const CONNECTED_APP: &str = "ConnectedApp";
/// Metadata type of an ECA's global OAuth settings (where its certificate lives).
pub(crate) const ECA_GLOBAL_OAUTH: &str = "ExtlClntAppGlobalOauthSettings";
/// Metadata type of an ECA's header.
pub(crate) const ECA_HEADER: &str = "ExternalClientApplication";
/// Metadata type of an ECA's developer OAuth settings (its scopes).
pub(crate) const ECA_OAUTH_SETTINGS: &str = "ExtlClntAppOauthSettings";
/// Metadata type of an ECA's OAuth policies (client credentials flow switch and run-as user).
pub(crate) const ECA_OAUTH_POLICIES: &str = "ExtlClntAppOauthConfigurablePolicies";
/// Metadata type of an ECA's plugin switches (`isOauthPluginEnabled`: the kill switch).
pub(crate) const ECA_POLICIES: &str = "ExtlClntAppConfigurablePolicies";

/// The deploy file path of a component.
pub(crate) fn file_name(type_name: &str, member: &str) -> String {
    match type_name {
        CONNECTED_APP => format!("connectedApps/{member}.connectedApp"),
        ECA_POLICIES => format!("extlClntAppPolicies/{member}.ecaPlcy"),
        _ => format!("extlClntAppGlobalOauthSets/{member}.ecaGlblOauth"),
    }
}

fn envelope(session: &str, body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:met=\"{METADATA_NS}\">\
<soapenv:Header><met:SessionHeader><met:sessionId>{}</met:sessionId></met:SessionHeader></soapenv:Header>\
<soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>",
        escape(session)
    )
}

/// A `readMetadata` request for up to ten members of one type.
pub(crate) fn read_request(session: &str, type_name: &str, members: &[String]) -> String {
    let names: String = members
        .iter()
        .map(|m| format!("<met:fullNames>{}</met:fullNames>", escape(m.as_str())))
        .collect();
    envelope(
        session,
        &format!(
            "<met:readMetadata><met:type>{}</met:type>{names}</met:readMetadata>",
            escape(type_name)
        ),
    )
}

/// A `listMetadata` request for every member of one type.
pub(crate) fn list_request(session: &str, type_name: &str, api_version: &str) -> String {
    envelope(
        session,
        &format!(
            "<met:listMetadata><met:queries><met:type>{}</met:type></met:queries><met:asOfVersion>{}</met:asOfVersion></met:listMetadata>",
            escape(type_name),
            escape(api_version)
        ),
    )
}

/// A SOAP fault: `sf:INVALID_SESSION_ID` style code (prefix dropped) and its text.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Fault {
    pub(crate) code: String,
    pub(crate) message: String,
}

/// The fault in a SOAP response, if it is one.
pub(crate) fn fault(doc: &Element) -> Option<Fault> {
    let mut found = Vec::new();
    doc.descendants("Fault", &mut found);
    let f = found.first()?;
    let code = f.text_at(&["faultcode"]).unwrap_or_default();
    let code = code
        .rsplit_once(':')
        .map_or(code.as_str(), |(_, c)| c)
        .to_string();
    Some(Fault {
        code,
        message: f.text_at(&["faultstring"]).unwrap_or_default(),
    })
}

/// The records a readMetadata answered with, leaving out the placeholders it returns for names
/// that do not exist (nil records, or records without a `fullName`).
pub(crate) fn records(doc: &Element) -> Vec<Element> {
    let mut found = Vec::new();
    doc.descendants("records", &mut found);
    found
        .into_iter()
        .filter(|r| !r.is_nil() && r.text_at(&["fullName"]).is_some())
        .cloned()
        .collect()
}

/// The member names a listMetadata answered with.
pub(crate) fn listed_names(doc: &Element) -> Vec<String> {
    let mut found = Vec::new();
    doc.descendants("result", &mut found);
    found
        .into_iter()
        .filter_map(|r| r.text_at(&["fullName"]))
        .collect()
}

/// The deploy zip (single package): `package.xml` plus the one component file.
pub(crate) fn deploy_zip(
    type_name: &str,
    member: &str,
    body: &str,
    api_version: &str,
) -> std::io::Result<Vec<u8>> {
    deploy_zip_of(&[(type_name, member, body)], api_version)
}

/// The deploy zip (single package) of several components, each `(type, member, body)`:
/// `package.xml` naming every member under its type, then one file per component.
pub(crate) fn deploy_zip_of(
    components: &[(&str, &str, &str)],
    api_version: &str,
) -> std::io::Result<Vec<u8>> {
    let mut types: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (type_name, member, _) in components {
        types.entry(type_name).or_default().push(member);
    }
    let mut package =
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Package xmlns=\"{METADATA_NS}\">\n");
    for (type_name, members) in &types {
        package.push_str("    <types>\n");
        for member in members {
            package.push_str(&format!("        <members>{}</members>\n", escape(*member)));
        }
        package.push_str(&format!(
            "        <name>{}</name>\n    </types>\n",
            escape(*type_name)
        ));
    }
    package.push_str(&format!(
        "    <version>{}</version>\n</Package>\n",
        escape(api_version)
    ));
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("package.xml", options)
        .map_err(std::io::Error::other)?;
    zip.write_all(package.as_bytes())?;
    for (type_name, member, body) in components {
        zip.start_file(file_name(type_name, member), options)
            .map_err(std::io::Error::other)?;
        zip.write_all(body.as_bytes())?;
    }
    Ok(zip.finish().map_err(std::io::Error::other)?.into_inner())
}

/// The `json` part of a deployRequest.
pub(crate) fn deploy_options(check_only: bool) -> String {
    serde_json::json!({
        "deployOptions": {
            "singlePackage": true,
            "rollbackOnError": true,
            "checkOnly": check_only,
            "ignoreWarnings": false,
            "testLevel": "NoTestRun",
        }
    })
    .to_string()
}

/// A boolean Salesforce may send as `true` or `"true"`.
fn flex_bool(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// A string field that may also arrive as a number.
fn flex_str(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// One component failure of a deploy, as Salesforce wrote it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ComponentFailure {
    pub(crate) file_name: Option<String>,
    pub(crate) full_name: Option<String>,
    pub(crate) problem: String,
}

/// What a deployRequest status poll says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct DeployStatus {
    pub(crate) id: Option<String>,
    pub(crate) done: bool,
    pub(crate) status: String,
    pub(crate) failures: Vec<ComponentFailure>,
    pub(crate) error_message: Option<String>,
}

impl DeployStatus {
    /// Reads `deployResult` from a POST or GET answer.
    pub(crate) fn parse(body: &Value) -> Option<Self> {
        let result = body.get("deployResult")?;
        let failures = match result
            .get("details")
            .and_then(|d| d.get("componentFailures"))
        {
            Some(Value::Array(items)) => items.iter().collect(),
            // A single failure sometimes comes as an object rather than a one-element array.
            Some(item @ Value::Object(_)) => vec![item],
            _ => Vec::new(),
        };
        let failures = failures
            .into_iter()
            .map(|f| ComponentFailure {
                file_name: flex_str(f.get("fileName")),
                full_name: flex_str(f.get("fullName")),
                problem: flex_str(f.get("problem")).unwrap_or_default(),
            })
            .collect();
        let error_message = match (
            flex_str(result.get("errorStatusCode")),
            flex_str(result.get("errorMessage")),
        ) {
            (Some(code), Some(msg)) => Some(format!("{code}: {msg}")),
            (code, msg) => msg.or(code),
        };
        Some(DeployStatus {
            id: flex_str(result.get("id")).or_else(|| flex_str(body.get("id"))),
            done: flex_bool(result.get("done")),
            status: flex_str(result.get("status")).unwrap_or_default(),
            failures,
            error_message,
        })
    }

    /// Every failure, verbatim, joined for one error line.
    pub(crate) fn failure_text(&self) -> String {
        let mut parts: Vec<String> = self
            .failures
            .iter()
            .map(|f| match (&f.file_name, &f.full_name) {
                (Some(file), Some(name)) => format!("{file} ({name}): {}", f.problem),
                (Some(one), None) | (None, Some(one)) => format!("{one}: {}", f.problem),
                (None, None) => f.problem.clone(),
            })
            .collect();
        if parts.is_empty() {
            parts.extend(self.error_message.clone());
        }
        if parts.is_empty() {
            parts.push("no component failures reported".into());
        }
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml;
    use std::io::Read as _;

    #[test]
    fn status_accepts_string_booleans_and_numbers() {
        let body: Value = serde_json::from_str(
            r#"{"id":"0Af1","deployResult":{"id":"0Af1","done":"true","status":"Failed","success":"false",
            "numberComponentErrors":"1","details":{"componentFailures":{"fileName":"connectedApps/A.connectedApp",
            "fullName":"A","problem":"The consumer key is already taken","problemType":"Error","success":"false"}}}}"#,
        )
        .unwrap();
        let s = DeployStatus::parse(&body).unwrap();
        assert!(s.done);
        assert_eq!(s.status, "Failed");
        assert_eq!(s.id.as_deref(), Some("0Af1"));
        assert_eq!(
            s.failure_text(),
            "connectedApps/A.connectedApp (A): The consumer key is already taken"
        );

        let body: Value = serde_json::from_str(
            r#"{"deployResult":{"id":"0Af2","done":false,"status":"InProgress","details":{"componentFailures":[]}}}"#,
        )
        .unwrap();
        let s = DeployStatus::parse(&body).unwrap();
        assert!(!s.done);
        assert_eq!(s.status, "InProgress");
        assert!(s.failures.is_empty());

        let body: Value = serde_json::from_str(
            r#"{"deployResult":{"done":true,"status":"Failed","errorStatusCode":"UNKNOWN_EXCEPTION","errorMessage":"boom"}}"#,
        )
        .unwrap();
        assert_eq!(
            DeployStatus::parse(&body).unwrap().failure_text(),
            "UNKNOWN_EXCEPTION: boom"
        );
        assert!(DeployStatus::parse(&serde_json::json!({"id": 1})).is_none());
    }

    #[test]
    fn zip_holds_package_and_component_at_the_root() {
        let bytes = deploy_zip(CONNECTED_APP, "Billing_Sync", "<ConnectedApp/>", "67.0").unwrap();
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        let names: Vec<String> = zip.file_names().map(String::from).collect();
        assert_eq!(
            names,
            ["package.xml", "connectedApps/Billing_Sync.connectedApp"]
        );
        let mut package = String::new();
        zip.by_name("package.xml")
            .unwrap()
            .read_to_string(&mut package)
            .unwrap();
        let doc = xml::parse(&package).unwrap();
        assert_eq!(
            doc.text_at(&["types", "members"]).as_deref(),
            Some("Billing_Sync")
        );
        assert_eq!(
            doc.text_at(&["types", "name"]).as_deref(),
            Some("ConnectedApp")
        );
        assert_eq!(doc.text_at(&["version"]).as_deref(), Some("67.0"));

        let bytes = deploy_zip(ECA_GLOBAL_OAUTH, "billing_glbloauth", "<x/>", "67.0").unwrap();
        let zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        assert!(
            zip.file_names()
                .any(|n| n == "extlClntAppGlobalOauthSets/billing_glbloauth.ecaGlblOauth")
        );
        assert_eq!(
            file_name(ECA_POLICIES, "billing_plcy"),
            "extlClntAppPolicies/billing_plcy.ecaPlcy"
        );
    }

    #[test]
    fn one_zip_holds_every_component_of_a_batch_under_its_type() {
        let bytes = deploy_zip_of(
            &[
                (CONNECTED_APP, "A", "<ConnectedApp/>"),
                (ECA_GLOBAL_OAUTH, "b_glbl", "<x/>"),
                (CONNECTED_APP, "C", "<ConnectedApp/>"),
            ],
            "67.0",
        )
        .unwrap();
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        let names: Vec<String> = zip.file_names().map(String::from).collect();
        for file in [
            "connectedApps/A.connectedApp",
            "connectedApps/C.connectedApp",
            "extlClntAppGlobalOauthSets/b_glbl.ecaGlblOauth",
        ] {
            assert!(names.iter().any(|n| n == file), "{names:?}");
        }
        let mut package = String::new();
        zip.by_name("package.xml")
            .unwrap()
            .read_to_string(&mut package)
            .unwrap();
        assert_eq!(package.matches("<types>").count(), 2, "{package}");
        assert!(package.contains(
            "<members>A</members>\n        <members>C</members>\n        <name>ConnectedApp</name>"
        ));
    }

    #[test]
    fn soap_answers_are_read() {
        let read = xml::parse(
            r#"<e:Envelope xmlns:e="s" xmlns:xsi="i"><e:Body><readMetadataResponse><result>
            <records xsi:type="ConnectedApp"><fullName>A</fullName></records><records xsi:nil="true"/><records/>
            </result></readMetadataResponse></e:Body></e:Envelope>"#,
        )
        .unwrap();
        assert_eq!(records(&read).len(), 1);
        let list = xml::parse(
            "<Envelope><Body><listMetadataResponse><result><fullName>a_glbl</fullName><type>T</type></result>\
             <result><fullName>b_glbl</fullName></result></listMetadataResponse></Body></Envelope>",
        )
        .unwrap();
        assert_eq!(listed_names(&list), ["a_glbl", "b_glbl"]);
        let f = xml::parse(
            "<Envelope><Body><Fault><faultcode>sf:INVALID_SESSION_ID</faultcode><faultstring>INVALID_SESSION_ID: bad</faultstring></Fault></Body></Envelope>",
        )
        .unwrap();
        assert_eq!(
            fault(&f),
            Some(Fault {
                code: "INVALID_SESSION_ID".into(),
                message: "INVALID_SESSION_ID: bad".into()
            })
        );
        assert!(
            read_request("tok&en", CONNECTED_APP, &["A".into()])
                .contains("<met:sessionId>tok&amp;en</met:sessionId>")
        );
    }
}
