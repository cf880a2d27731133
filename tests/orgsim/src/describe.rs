//! Describing objects (REST API "Describe Global", "sObject Basic Information", "sObject
//! Describe") for the objects the SOQL engine serves, from the same schema.

use crate::rest::{Caller, missing};
use crate::server::json_response;
use crate::soql::schema::{self, SObject, type_name};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

/// What describe global and basic information say of an object.
fn summary(o: &SObject, version: &str) -> Value {
    let base = format!("/services/data/{version}/sobjects/{}", o.name);
    json!({
        "activateable": false, "createable": false, "custom": false, "customSetting": false,
        "deletable": o.name == "AuthSession", "deprecatedAndHidden": false, "feedEnabled": false,
        "hasSubtypes": false, "isSubtype": false, "keyPrefix": o.key_prefix, "label": o.label,
        "labelPlural": o.label_plural, "layoutable": false, "mergeable": false,
        "mruEnabled": false, "name": o.name, "queryable": true, "replicateable": false,
        "retrieveable": true, "searchable": false, "triggerable": false, "undeletable": false,
        "updateable": false,
        "urls": {
            "rowTemplate": format!("{base}/{{ID}}"),
            "describe": format!("{base}/describe"),
            "sobject": base,
        },
    })
}

/// `GET /services/data/vNN.0/sobjects[/]`: describe global.
pub(crate) async fn global(Path(version): Path<String>, _: Caller) -> Response {
    let sobjects: Vec<Value> = schema::OBJECTS
        .iter()
        .map(|o| summary(o, &version))
        .collect();
    let body = json!({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": sobjects});
    json_response(StatusCode::OK, body)
}

/// `GET /services/data/vNN.0/sobjects/{object}[/]`: basic information.
pub(crate) async fn basic(Path((version, object)): Path<(String, String)>, _: Caller) -> Response {
    match schema::object(&object) {
        Some(o) => json_response(
            StatusCode::OK,
            json!({"objectDescribe": summary(o, &version), "recentItems": []}),
        ),
        None => missing(),
    }
}

/// `GET /services/data/vNN.0/sobjects/{object}/describe[/]`: the fields, with their types, the
/// lookups they are (`reference`, `referenceTo`, `relationshipName`) and whether they filter.
pub(crate) async fn object(Path((version, object)): Path<(String, String)>, _: Caller) -> Response {
    let Some(o) = schema::object(&object) else {
        return missing();
    };
    let fields: Vec<Value> = o
        .fields()
        .map(|f| {
            let lookup = o.relationships.iter().find(|r| r.id_field == f.name);
            let kind = if lookup.is_some() {
                "reference"
            } else {
                type_name(f.kind)
            };
            json!({
                "name": f.name,
                "label": f.name,
                "type": kind,
                "filterable": f.filterable,
                "sortable": f.filterable,
                "nillable": f.name != "Id",
                "createable": false,
                "updateable": false,
                "custom": false,
                "referenceTo": lookup.map_or_else(Vec::new, |r| vec![r.target]),
                "relationshipName": lookup.map(|r| r.name),
            })
        })
        .collect();
    let mut body = summary(o, &version);
    body["fields"] = Value::Array(fields);
    body["childRelationships"] = json!([]);
    json_response(StatusCode::OK, body)
}
