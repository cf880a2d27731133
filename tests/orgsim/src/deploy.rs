//! REST Metadata deploy: `POST/GET/PATCH /services/data/vNN.0/metadata/deployRequest[/{id}]`
//! (providers/salesforce/platform.md §3.1). The zip is unpacked and checked when posted;
//! validation against the org and the (all-or-nothing) apply happen when the deploy leaves
//! InProgress.

use crate::faults::{FaultKind, take_fault};
use crate::rest::{authenticate_versioned, insufficient_access, missing, rest_error};
use crate::server::{AppState, json_response};
use crate::state::{Check, MetaType, OrgState, User, parse_root};
use crate::xml::Element;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::time::Duration;

/// Lifecycle states the emulator uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Pending,
    InProgress,
    Succeeded,
    SucceededPartial,
    Failed,
    Canceling,
    Canceled,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "Pending",
            Status::InProgress => "InProgress",
            Status::Succeeded => "Succeeded",
            Status::SucceededPartial => "SucceededPartial",
            Status::Failed => "Failed",
            Status::Canceling => "Canceling",
            Status::Canceled => "Canceled",
        }
    }

    fn done(self) -> bool {
        matches!(
            self,
            Status::Succeeded | Status::SucceededPartial | Status::Failed | Status::Canceled
        )
    }
}

/// A component read from the zip.
#[derive(Debug, Clone)]
struct Upload {
    kind: MetaType,
    member: String,
    file_name: String,
    element: Element,
}

/// One deployment.
#[derive(Debug)]
pub(crate) struct Deploy {
    id: String,
    options: Map<String, Value>,
    status: Status,
    created_by: (String, String),
    created: String,
    started: Option<String>,
    completed: Option<String>,
    modified: String,
    cancel_requested: bool,
    uploads: Vec<Upload>,
    failures: Vec<Value>,
    successes: Vec<Value>,
    /// Problem text from a `DeployFails` fault and the member it names (`None`: the first),
    /// applied when the deploy finishes.
    forced_failure: Option<(String, Option<String>)>,
}

impl Deploy {
    fn option(&self, name: &str) -> bool {
        self.options
            .get(name)
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

fn iso_now(st: &OrgState) -> String {
    chrono::DateTime::from_timestamp(st.now(), 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `POST …/metadata/deployRequest` (multipart `json` + `file`) → 201.
pub(crate) async fn create(
    State(app): State<AppState>,
    Path(version): Path<String>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let user = match guarded(&app, &version, &headers) {
        Ok(user) => user,
        Err(response) => return response,
    };
    let Ok(mut multipart) = multipart else {
        return bad_multipart("the body must be multipart/form-data");
    };
    let (mut json_part, mut zip_part) = (None, None);
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or("").to_string();
                let Ok(bytes) = field.bytes().await else {
                    return bad_multipart("could not read a multipart part");
                };
                match name.as_str() {
                    "json" => json_part = Some(bytes),
                    "file" => zip_part = Some(bytes),
                    _ => {}
                }
            }
            Ok(None) => break,
            Err(e) => return bad_multipart(&e.to_string()),
        }
    }
    let (Some(json_part), Some(zip_part)) = (json_part, zip_part) else {
        return bad_multipart("the request needs a 'json' part and a 'file' part");
    };
    let options = match serde_json::from_slice::<Value>(&json_part) {
        Ok(v) => deploy_options(v.get("deployOptions").cloned().unwrap_or(Value::Null)),
        Err(e) => return rest_error(StatusCode::BAD_REQUEST, "JSON_PARSER_ERROR", &e.to_string()),
    };
    let (uploads, failures) = read_package(&zip_part);

    let path = format!("/services/data/{version}/metadata/deployRequest");
    let mut st = app.lock();
    let forced = take_fault(&mut st.faults, |f| match &f.kind {
        FaultKind::DeployFails { .. } => f.path_ok(&path),
        FaultKind::ComponentFails { member, .. } => {
            f.path_ok(&path) && uploads.iter().any(|u| &u.member == member)
        }
        _ => false,
    });
    let now = iso_now(&st);
    let deploy = Deploy {
        id: st.new_id("0Af"),
        options,
        status: Status::Pending,
        created_by: (user.id.clone(), user.name.clone()),
        created: now.clone(),
        started: None,
        completed: None,
        modified: now,
        cancel_requested: false,
        uploads,
        failures,
        successes: Vec::new(),
        forced_failure: match forced {
            Some(FaultKind::DeployFails { problem }) => Some((problem, None)),
            Some(FaultKind::ComponentFails { member, problem }) => Some((problem, Some(member))),
            _ => None,
        },
    };
    let id = deploy.id.clone();
    let mut body = render(&deploy, &version, false);
    // The POST answer is the short form of Salesforce's example: no url, no dates.
    if let Some(obj) = body.as_object_mut() {
        obj.remove("url");
        let short = [
            "id",
            "success",
            "checkOnly",
            "ignoreWarnings",
            "rollbackOnError",
            "status",
            "runTestsEnabled",
            "done",
        ];
        if let Some(Value::Object(result)) = obj.get_mut("deployResult") {
            result.retain(|k, _| short.contains(&k.as_str()));
        }
    }
    st.deploys.insert(id.clone(), deploy);
    // A held deploy moves only when a test steps it (`step`).
    if !st.settings.hold_deploys {
        let phase = Duration::from_millis(st.settings.deploy_phase_ms);
        tokio::spawn(run(app.clone(), id, phase));
    }
    drop(st);
    json_response(StatusCode::CREATED, body)
}

fn bad_multipart(message: &str) -> Response {
    rest_error(
        StatusCode::BAD_REQUEST,
        "INVALID_MULTIPART_REQUEST",
        message,
    )
}

/// Pending for one phase, InProgress for another, then finish.
async fn run(app: AppState, id: String, phase: Duration) {
    loop {
        tokio::time::sleep(phase).await;
        match advance(&mut app.lock(), &id) {
            Some(status) if !status.done() => {}
            _ => return,
        }
    }
}

/// Moves a deploy to its next state: Pending → InProgress, InProgress → finished (validated and
/// applied), Canceling → Canceled (nothing applied). The new state; `None` for an unknown id.
fn advance(st: &mut OrgState, id: &str) -> Option<Status> {
    let now = iso_now(st);
    let blocked = queued_behind(st, id).is_some();
    let d = st.deploys.get_mut(id)?;
    match d.status {
        Status::Pending if blocked => {}
        Status::Pending => {
            d.status = Status::InProgress;
            d.started = Some(now.clone());
            d.modified = now;
        }
        Status::Canceling => {
            d.status = Status::Canceled;
            d.completed = Some(now.clone());
            d.modified = now;
        }
        Status::InProgress => finish(st, id),
        _ => {}
    }
    st.deploys.get(id).map(|d| d.status)
}

/// The deploy a pending one waits for: Salesforce runs one deployment at a time per org, the
/// others wait in the order they were made (setting `deploys_one_at_a_time`). Deploy ids are
/// made from one increasing counter, so their order is the order they were made in.
fn queued_behind(st: &OrgState, id: &str) -> Option<String> {
    if !st.settings.deploys_one_at_a_time {
        return None;
    }
    st.deploys
        .values()
        .filter(|d| d.id != id)
        .find(|d| {
            let running = d.status == Status::InProgress
                || (d.status == Status::Canceling && d.started.is_some());
            running || (d.status == Status::Pending && d.id.as_str() < id)
        })
        .map(|d| d.id.clone())
}

/// Steps a held deploy (setting `hold_deploys`) to its next state, as [`advance`]; the new
/// status, or why it cannot move.
pub(crate) fn step(st: &mut OrgState, id: &str) -> Result<&'static str, String> {
    let status = st
        .deploys
        .get(id)
        .map(|d| d.status)
        .ok_or_else(|| format!("no deploy {id}"))?;
    if status.done() {
        return Err(format!("deploy {id} has finished ({})", status.as_str()));
    }
    if !st.settings.hold_deploys {
        // Its own task moves it; a step besides would skip a state under the task's feet.
        return Err("deploys are not held (setting hold_deploys)".into());
    }
    if status == Status::Pending
        && let Some(first) = queued_behind(st, id)
    {
        return Err(format!("deploy {id} is queued behind deploy {first}"));
    }
    Ok(advance(st, id).expect("the deploy exists").as_str())
}

/// Validates every component against the org and applies them (unless checkOnly or a
/// failure under rollbackOnError).
fn finish(st: &mut OrgState, id: &str) {
    let Some(mut d) = st.deploys.remove(id) else {
        return;
    };
    let now = iso_now(st);
    d.modified = now.clone();
    d.completed = Some(now.clone());
    if d.cancel_requested {
        d.status = Status::Canceled;
        st.deploys.insert(id.to_string(), d);
        return;
    }
    let pending: Vec<(MetaType, String, Element)> = d
        .uploads
        .iter()
        .map(|u| (u.kind, u.member.clone(), u.element.clone()))
        .collect();
    let mut good = Vec::new();
    for (i, u) in d.uploads.iter().enumerate() {
        let check = if d.option("ignoreWarnings") {
            Check::DeployIgnoringWarnings
        } else {
            Check::Deploy
        };
        let mut problems = st.check_component(u.kind, &u.member, &u.element, &pending, check);
        let forced_here = match &d.forced_failure {
            Some((_, Some(member))) => *member == u.member,
            Some((_, None)) => i == 0,
            None => false,
        };
        if forced_here {
            problems.extend(d.forced_failure.take().map(|(p, _)| p));
        }
        if problems.is_empty() {
            let created = st.component(u.kind, &u.member).is_none();
            d.successes.push(message(
                u.kind.name,
                &u.file_name,
                &u.member,
                None,
                created,
                &now,
            ));
            good.push(u.clone());
        }
        for p in problems {
            d.failures.push(message(
                u.kind.name,
                &u.file_name,
                &u.member,
                Some(&p),
                false,
                &now,
            ));
        }
    }
    // A forced failure with nothing to attach it to lands on package.xml.
    if let Some((p, _)) = d.forced_failure.take() {
        d.failures.push(message(
            "",
            "package.xml",
            "package.xml",
            Some(&p),
            false,
            &now,
        ));
    }
    let rollback = d.option("rollbackOnError");
    d.status = match (d.failures.is_empty(), good.is_empty()) {
        (true, _) => Status::Succeeded,
        (false, false) if !rollback => Status::SucceededPartial,
        _ => Status::Failed,
    };
    if d.status != Status::Failed && !d.option("checkOnly") {
        for u in good {
            let previous = st.component(u.kind, &u.member).map(|c| c.element.clone());
            st.put_component(u.kind, &u.member, u.element.clone(), &d.created_by.0);
            let by = &d.created_by.0;
            st.audit_change(u.kind, &u.member, previous.as_ref(), &u.element, by);
        }
    }
    if d.status == Status::Failed {
        // Nothing was deployed, so nothing counts as a success.
        d.successes.clear();
    }
    st.deploys.insert(id.to_string(), d);
}

/// A DeployMessage; `problem` None means a success.
fn message(
    kind: &str,
    file: &str,
    member: &str,
    problem: Option<&str>,
    created: bool,
    date: &str,
) -> Value {
    json!({
        "changed": problem.is_none() && !created,
        "columnNumber": null,
        "componentType": kind,
        "created": problem.is_none() && created,
        "createdDate": date,
        "deleted": false,
        "fileName": file,
        "fullName": member,
        "id": null,
        "lineNumber": null,
        "problem": problem,
        "problemType": problem.map(|_| "Error"),
        "success": problem.is_none(),
    })
}

/// Fills the documented option defaults around what the client sent.
fn deploy_options(sent: Value) -> Map<String, Value> {
    let mut options = Map::new();
    for (key, default) in [
        ("checkOnly", false),
        ("singlePackage", false),
        ("allowMissingFiles", false),
        ("performRetrieve", false),
        ("autoUpdatePackage", false),
        ("rollbackOnError", true),
        ("ignoreWarnings", false),
        ("purgeOnDelete", false),
        ("runAllTests", false),
    ] {
        options.insert(key.into(), Value::Bool(default));
    }
    if let Value::Object(sent) = sent {
        for (k, v) in sent {
            // Salesforce's own examples sometimes carry booleans as strings.
            let v = match v {
                Value::String(s) if s == "true" || s == "false" => Value::Bool(s == "true"),
                other => other,
            };
            options.insert(k, v);
        }
    }
    options
}

/// Unpacks the zip: finds package.xml (possibly under a root folder), checks that every
/// named member has its file, and parses the component files. Files package.xml does not
/// name are ignored, as Salesforce does.
fn read_package(bytes: &[u8]) -> (Vec<Upload>, Vec<Value>) {
    let now = "";
    let fail = |file: &str, member: &str, kind: &str, p: &str| {
        message(kind, file, member, Some(p), false, now)
    };
    // A zip or package.xml that cannot be read fails the whole deploy with this one message.
    let unreadable = |p: &str| (Vec::new(), vec![fail("package.xml", "package.xml", "", p)]);
    let files = match unzip(bytes) {
        Ok(files) => files,
        Err(e) => return unreadable(&e),
    };
    let Some(package_path) = files
        .keys()
        .filter(|p| *p == "package.xml" || p.ends_with("/package.xml"))
        .min_by_key(|p| p.len())
        .cloned()
    else {
        return unreadable("No package.xml found");
    };
    let root = &package_path[..package_path.len() - "package.xml".len()];
    let package = match Element::parse(&files[&package_path]) {
        Ok(p) if p.name == "Package" => p,
        Ok(p) => return unreadable(&format!("expected Package, found {}", p.name)),
        Err(e) => return unreadable(&format!("Error parsing file: {e}")),
    };
    let (mut uploads, mut failures) = (Vec::new(), Vec::new());
    for types in package.children.iter().filter(|c| c.name == "types") {
        let type_name = types.child_text("name").unwrap_or("");
        let Some(kind) = MetaType::by_name(type_name) else {
            failures.push(fail(
                "package.xml",
                type_name,
                type_name,
                &format!("Unknown type name '{type_name}' specified in package.xml"),
            ));
            continue;
        };
        let folder = format!("{root}{}/", kind.folder);
        let ext = format!(".{}", kind.suffix);
        for member in types.child_texts("members") {
            let named: Vec<String> = if member == "*" {
                files
                    .keys()
                    .filter_map(|p| {
                        p.strip_prefix(&folder)?
                            .strip_suffix(&ext)
                            .map(str::to_string)
                    })
                    .filter(|m| !m.contains('/'))
                    .collect()
            } else {
                vec![member.clone()]
            };
            for m in named {
                let path = format!("{folder}{m}{ext}");
                let file_name = path[root.len()..].to_string();
                let Some(text) = files.get(&path) else {
                    let p = format!(
                        "An object '{m}' of type {type_name} was named in package.xml, but was not found in zipped directory"
                    );
                    failures.push(fail("package.xml", &m, type_name, &p));
                    continue;
                };
                match parse_root(text, kind) {
                    Ok(element) => uploads.push(Upload {
                        kind,
                        member: m,
                        file_name,
                        element,
                    }),
                    Err(e) => failures.push(fail(
                        &file_name,
                        &m,
                        type_name,
                        &format!("Error parsing file: {e}"),
                    )),
                }
            }
        }
    }
    (uploads, failures)
}

fn unzip(bytes: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| format!("The zip file is not valid: {e}"))?;
    let mut files = BTreeMap::new();
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| format!("The zip file is not valid: {e}"))?;
        if entry.is_dir() {
            continue;
        }
        let mut text = String::new();
        entry
            .read_to_string(&mut text)
            .map_err(|e| format!("{}: {e}", entry.name()))?;
        files.insert(entry.name().trim_start_matches("./").to_string(), text);
    }
    Ok(files)
}

/// The deployRequest JSON body (used by GET and PATCH, trimmed for POST).
fn render(d: &Deploy, version: &str, details: bool) -> Value {
    let components_total = d.uploads.len();
    let mut result = json!({
        "id": d.id,
        "canceledBy": null,
        "canceledByName": null,
        "checkOnly": d.option("checkOnly"),
        "completedDate": d.completed,
        "createdBy": d.created_by.0,
        "createdByName": d.created_by.1,
        "createdDate": d.created,
        "done": d.status.done(),
        "errorMessage": null,
        "errorStatusCode": null,
        "ignoreWarnings": d.option("ignoreWarnings"),
        "lastModifiedDate": d.modified,
        "numberComponentErrors": d.failures.len(),
        "numberComponentsDeployed": d.successes.len(),
        "numberComponentsTotal": components_total,
        "numberTestErrors": 0,
        "numberTestsCompleted": 0,
        "numberTestsTotal": 0,
        "runTestsEnabled": false,
        "rollbackOnError": d.option("rollbackOnError"),
        "startDate": d.started,
        "stateDetail": null,
        "status": d.status.as_str(),
        "success": matches!(d.status, Status::Succeeded | Status::SucceededPartial),
    });
    if d.cancel_requested {
        result["canceledBy"] = json!(d.created_by.0);
        result["canceledByName"] = json!(d.created_by.1);
    }
    if details {
        result["details"] = json!({
            "componentFailures": d.failures,
            "componentSuccesses": d.successes,
            "runTestResult": {"numFailures": 0, "numTestsRun": 0, "totalTime": 0.0,
                              "codeCoverage": [], "codeCoverageWarnings": [], "failures": [], "successes": []},
        });
    }
    json!({
        "id": d.id,
        "url": format!("/services/data/{version}/metadata/deployRequest/{}", d.id),
        "deployOptions": d.options,
        "deployResult": result,
    })
}

/// Salesforce's GET example renders booleans and numbers as strings.
fn stringify(value: &mut Value) {
    match value {
        Value::Bool(b) => *value = Value::String(b.to_string()),
        Value::Number(n) => *value = Value::String(n.to_string()),
        Value::Array(items) => items.iter_mut().for_each(stringify),
        Value::Object(map) => map.values_mut().for_each(stringify),
        Value::String(_) | Value::Null => {}
    }
}

/// The checks every deployRequest call makes: known API version, live session, and Modify
/// All Data / Modify Metadata. Returns the caller.
#[allow(clippy::result_large_err)] // the error is the response to send, built once per request
fn guarded(app: &AppState, version: &str, headers: &HeaderMap) -> Result<User, Response> {
    let (_, user) = authenticate_versioned(app, version, headers)?;
    if !app.lock().can_modify_metadata(&user) {
        return Err(insufficient_access());
    }
    Ok(user)
}

/// `GET …/deployRequest/{id}[?includeDetails=true]` → 200.
pub(crate) async fn status(
    State(app): State<AppState>,
    Path((version, id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = guarded(&app, &version, &headers) {
        return response;
    }
    let st = app.lock();
    let Some(d) = st.deploys.get(&id) else {
        return missing();
    };
    let details = query
        .get("includeDetails")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let mut body = render(d, &version, details);
    if st.settings.string_values_in_deploy_status {
        stringify(&mut body["deployResult"]);
    }
    json_response(StatusCode::OK, body)
}

/// `PATCH …/deployRequest/{id}` with `{"deployResult":{"status":"Canceling"}}` → 202.
pub(crate) async fn cancel(
    State(app): State<AppState>,
    Path((version, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(response) = guarded(&app, &version, &headers) {
        return response;
    }
    let requested = serde_json::from_slice::<Value>(&body).ok();
    if requested
        .as_ref()
        .and_then(|v| v["deployResult"]["status"].as_str())
        != Some("Canceling")
    {
        return rest_error(
            StatusCode::BAD_REQUEST,
            "INVALID_FIELD",
            "Only deployResult.status = Canceling is supported",
        );
    }
    let mut st = app.lock();
    let now = iso_now(&st);
    let Some(d) = st.deploys.get_mut(&id) else {
        return missing();
    };
    if d.status.done() {
        return rest_error(
            StatusCode::BAD_REQUEST,
            "INVALID_STATUS",
            "The deployment has already finished",
        );
    }
    d.cancel_requested = true;
    d.status = Status::Canceling;
    d.modified = now;
    json_response(StatusCode::ACCEPTED, render(d, &version, false))
}
