//! SOAP Metadata API (`POST /services/Soap/m/NN.0`): `readMetadata` and `listMetadata` for
//! ConnectedApp and the ECA types (providers/salesforce/platform.md §3.2).

use crate::certs::Cert;
use crate::faults::SoapOperation;
use crate::rest::{known_version, missing, session_user};
use crate::seed::CertificateFormat;
use crate::server::AppState;
use crate::state::{Component, MetaType, OrgState, certificate, set_certificate};
use crate::xml::{Element, METADATA_NS, escape};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

const ENVELOPE_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
/// readMetadata accepts at most this many names per call.
const MAX_READ_NAMES: usize = 10;

/// The Metadata SOAP endpoint.
pub(crate) async fn metadata(
    State(app): State<AppState>,
    Path(version): Path<String>,
    body: String,
) -> Response {
    if !known_version(&version) {
        return missing();
    }
    let Ok(envelope) = Element::parse(&body) else {
        return fault("soapenv:Client", "Unable to parse the SOAP envelope");
    };
    let session_id = envelope
        .child("Header")
        .and_then(|h| h.child("SessionHeader"))
        .and_then(|s| s.child_text("sessionId"));
    let Some((_, user)) = session_user(&app, session_id) else {
        return fault(
            "sf:INVALID_SESSION_ID",
            "INVALID_SESSION_ID: Invalid Session ID found in SessionHeader: Illegal Session",
        );
    };
    let Some(call) = envelope.child("Body").and_then(|b| b.children.first()) else {
        return fault("soapenv:Client", "The SOAP body is empty");
    };
    let st = app.lock();
    if !st.can_modify_metadata(&user) {
        return fault(
            "sf:INSUFFICIENT_ACCESS",
            "INSUFFICIENT_ACCESS: insufficient access rights on object id: Modify All Data or Modify Metadata required",
        );
    }
    let mut response = match call.name.as_str() {
        "readMetadata" => read_metadata(&st, call),
        "listMetadata" => list_metadata(&st, call),
        other => fault(
            "soapenv:Client",
            &format!("No operation available for request {{{METADATA_NS}}}{other}"),
        ),
    };
    response.extensions_mut().insert(operation(call));
    response
}

/// `readMetadata ConnectedApp`: the call and the (first) type it names, for the call log.
fn operation(call: &Element) -> SoapOperation {
    let type_name = call
        .child_text("type")
        .or_else(|| call.child("queries").and_then(|q| q.child_text("type")));
    SoapOperation(match type_name {
        Some(t) => format!("{} {t}", call.name),
        None => call.name.clone(),
    })
}

fn read_metadata(st: &OrgState, call: &Element) -> Response {
    let type_name = call.child_text("type").unwrap_or("");
    let Some(kind) = MetaType::by_name(type_name) else {
        return fault(
            "sf:INVALID_TYPE",
            &format!("INVALID_TYPE: Unknown type: {type_name}"),
        );
    };
    let names = call.child_texts("fullNames");
    if names.len() > MAX_READ_NAMES {
        return fault(
            "sf:LIMIT_EXCEEDED",
            "LIMIT_EXCEEDED: Too many fullNames. Maximum is 10.",
        );
    }
    let mut out = String::from("<readMetadataResponse>\n<result>\n");
    for name in names {
        match st.component(kind, &name) {
            Some(c) => {
                let mut record =
                    read_view(&c.element, kind, st.settings.certificate_format_in_reads);
                record.name = "records".into();
                record
                    .children
                    .insert(0, Element::with_text("fullName", &name));
                record.write(&mut out, &format!(" xsi:type=\"{}\"", kind.name), 0);
            }
            // Salesforce answers unknown names with an empty record rather than an error.
            None => out.push_str(&format!("<records xsi:type=\"{}\"/>\n", kind.name)),
        }
    }
    out.push_str("</result>\n</readMetadataResponse>\n");
    envelope(&out)
}

fn list_metadata(st: &OrgState, call: &Element) -> Response {
    let mut out = String::from("<listMetadataResponse>\n");
    for query in call.children.iter().filter(|c| c.name == "queries") {
        let Some(kind) = query.child_text("type").and_then(MetaType::by_name) else {
            continue;
        };
        for ((t, member), c) in &st.components {
            if t == kind.name {
                file_properties(st, kind, member, c).write(&mut out, "", 0);
            }
        }
    }
    out.push_str("</listMetadataResponse>\n");
    envelope(&out)
}

/// FileProperties for one component.
fn file_properties(st: &OrgState, kind: MetaType, member: &str, c: &Component) -> Element {
    let date = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let by_name = st
        .user_by_id(&c.modified_by)
        .map(|u| u.name.clone())
        .unwrap_or_default();
    let mut result = Element::new("result");
    for (field, value) in [
        ("createdById", c.modified_by.clone()),
        ("createdByName", by_name.clone()),
        ("createdDate", date(c.created)),
        (
            "fileName",
            format!("{}/{member}.{}", kind.folder, kind.suffix),
        ),
        ("fullName", member.to_string()),
        ("id", c.id.clone()),
        ("lastModifiedById", c.modified_by.clone()),
        ("lastModifiedByName", by_name),
        ("lastModifiedDate", date(c.modified)),
        ("manageableState", "unmanaged".to_string()),
        ("type", kind.name.to_string()),
    ] {
        result.children.push(Element::with_text(field, &value));
    }
    result
}

/// A component as reads return it: no consumerSecret, certificate in the configured format,
/// fields in WSDL order.
pub(crate) fn read_view(element: &Element, kind: MetaType, format: CertificateFormat) -> Element {
    let mut view = public_view(element);
    if let Some(cert) = certificate(element, kind).and_then(|t| Cert::parse(t).ok()) {
        let text = match format {
            CertificateFormat::Pem => cert.pem(),
            CertificateFormat::Base64 => cert.base64(),
        };
        set_certificate(&mut view, kind, &text);
    }
    view.sort_wsdl();
    view
}

/// The stored component minus the consumer secret, which Salesforce never returns.
pub(crate) fn public_view(element: &Element) -> Element {
    let mut view = element.clone();
    view.remove_deep("consumerSecret");
    view
}

fn envelope(body: &str) -> Response {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soapenv:Envelope xmlns:soapenv=\"{ENVELOPE_NS}\" \
         xmlns=\"{METADATA_NS}\" xmlns:xsi=\"{XSI_NS}\">\n<soapenv:Body>\n{body}</soapenv:Body>\n</soapenv:Envelope>\n"
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/xml;charset=UTF-8")],
        xml,
    )
        .into_response()
}

/// A SOAP fault; SOAP 1.1 sends faults with HTTP 500.
fn fault(code: &str, message: &str) -> Response {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soapenv:Envelope xmlns:soapenv=\"{ENVELOPE_NS}\" \
         xmlns:sf=\"{METADATA_NS}\">\n<soapenv:Body>\n<soapenv:Fault>\n<faultcode>{}</faultcode>\n\
         <faultstring>{}</faultstring>\n</soapenv:Fault>\n</soapenv:Body>\n</soapenv:Envelope>\n",
        escape(code),
        escape(message)
    );
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "text/xml;charset=UTF-8")],
        xml,
    )
        .into_response()
}
