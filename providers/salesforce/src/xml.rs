//! A small XML tree that keeps text exactly as read, so a metadata record can be rewritten for
//! deploy with only the certificate changed (read-modify-write of a full-replace component).
//!
//! quick-xml is used only as a tokenizer: Salesforce metadata is plain elements and text, and a
//! tree with raw (still escaped) text lets us splice one value without re-encoding the others.

use quick_xml::Reader;
use quick_xml::escape::{escape, unescape};
use quick_xml::events::{BytesStart, Event};
use std::fmt::Write as _;

/// The Metadata API namespace every deploy file is written in.
pub(crate) const METADATA_NS: &str = "http://soap.sforce.com/2006/04/metadata";

/// Why a document could not be read as XML.
#[derive(Debug)]
pub(crate) struct XmlError(pub(crate) String);

impl std::fmt::Display for XmlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for XmlError {}

/// One element: its local name (namespace prefix dropped), attributes as written, children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Element {
    pub(crate) name: String,
    /// (qualified key, raw escaped value) in source order.
    pub(crate) attrs: Vec<(String, String)>,
    pub(crate) children: Vec<Node>,
}

/// Content of an element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Node {
    Element(Element),
    /// Character data exactly as in the source (entity references still escaped).
    Text(String),
    /// A CDATA section's content.
    CData(String),
}

impl Element {
    /// A new element with no attributes.
    pub(crate) fn new(name: &str) -> Self {
        Element {
            name: name.to_string(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Child elements in order.
    pub(crate) fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            _ => None,
        })
    }

    /// The first child element called `name`.
    pub(crate) fn child(&self, name: &str) -> Option<&Element> {
        self.elements().find(|e| e.name == name)
    }

    fn child_mut(&mut self, name: &str) -> Option<&mut Element> {
        self.children.iter_mut().find_map(|n| match n {
            Node::Element(e) if e.name == name => Some(e),
            _ => None,
        })
    }

    /// The element at `path` below this one (`[]` is this element).
    pub(crate) fn at(&self, path: &[&str]) -> Option<&Element> {
        path.iter().try_fold(self, |e, name| e.child(name))
    }

    /// Every descendant element called `name`, depth first.
    pub(crate) fn descendants<'a>(&'a self, name: &str, out: &mut Vec<&'a Element>) {
        for e in self.elements() {
            if e.name == name {
                out.push(e);
            }
            e.descendants(name, out);
        }
    }

    /// The unescaped text content (direct text and CDATA children).
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        for n in &self.children {
            match n {
                Node::Text(raw) => {
                    out.push_str(&unescape(raw).unwrap_or(std::borrow::Cow::Borrowed(raw)))
                }
                Node::CData(c) => out.push_str(c),
                Node::Element(_) => {}
            }
        }
        out
    }

    /// Text of the child at `path`, trimmed; `None` when absent or empty.
    pub(crate) fn text_at(&self, path: &[&str]) -> Option<String> {
        let text = self.at(path)?.text();
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_string())
    }

    /// Whether the element carries `xsi:nil="true"` (any prefix bound to the nil attribute).
    pub(crate) fn is_nil(&self) -> bool {
        self.attrs
            .iter()
            .any(|(k, v)| local(k) == "nil" && k.contains(':') && v == "true")
    }

    /// Sets the text of the child element at `path` to `value`, replacing every text node of that
    /// one element and nothing else. When the leaf is missing it is inserted after `after` (a
    /// sibling name) or first. Returns false when an intermediate element is missing.
    pub(crate) fn set_text(&mut self, path: &[&str], after: &str, value: &str) -> bool {
        let Some((leaf, parents)) = path.split_last() else {
            return false;
        };
        let mut parent = self;
        for name in parents {
            match parent.child_mut(name) {
                Some(p) => parent = p,
                None => return false,
            }
        }
        let text = Node::Text(escape(value).into_owned());
        if let Some(el) = parent.child_mut(leaf) {
            el.children = vec![text];
            return true;
        }
        let mut el = Element::new(leaf);
        el.children.push(text);
        let position = parent
            .children
            .iter()
            .position(|n| matches!(n, Node::Element(e) if e.name == after))
            .map(|i| i + 1)
            .unwrap_or(0);
        parent.children.insert(position, Node::Element(el));
        true
    }

    /// Removes every element at `path`, if any.
    pub(crate) fn remove(&mut self, path: &[&str]) {
        let Some((leaf, parents)) = path.split_last() else {
            return;
        };
        let mut parent = self;
        for name in parents {
            match parent.child_mut(name) {
                Some(p) => parent = p,
                None => return,
            }
        }
        parent
            .children
            .retain(|n| !matches!(n, Node::Element(e) if e.name == *leaf));
    }

    /// Writes the element, its attributes and children; text is written exactly as held.
    pub(crate) fn write(&self, out: &mut String) {
        out.push('<');
        out.push_str(&self.name);
        for (k, v) in &self.attrs {
            // Values are kept escaped; only a double quote needs escaping again if the source
            // used single quotes around it.
            let _ = write!(out, " {k}=\"{}\"", v.replace('"', "&quot;"));
        }
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        for n in &self.children {
            match n {
                Node::Element(e) => e.write(out),
                Node::Text(raw) => out.push_str(raw),
                Node::CData(c) => {
                    let _ = write!(out, "<![CDATA[{c}]]>");
                }
            }
        }
        let _ = write!(out, "</{}>", self.name);
    }
}

/// The part of a qualified name after its prefix.
fn local(qname: &str) -> &str {
    qname.rsplit_once(':').map_or(qname, |(_, l)| l)
}

fn utf8(bytes: &[u8]) -> Result<&str, XmlError> {
    std::str::from_utf8(bytes).map_err(|_| XmlError("XML is not valid UTF-8".into()))
}

fn start(e: &BytesStart<'_>) -> Result<Element, XmlError> {
    let name = local(utf8(e.name().as_ref())?).to_string();
    let mut attrs = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|err| XmlError(format!("malformed attribute in <{name}>: {err}")))?;
        attrs.push((
            utf8(a.key.as_ref())?.to_string(),
            utf8(&a.value)?.to_string(),
        ));
    }
    Ok(Element {
        name,
        attrs,
        children: Vec::new(),
    })
}

/// Parses a whole document and returns its root element. Comments, processing instructions and
/// the declaration are dropped: metadata files never need them.
pub(crate) fn parse(text: &str) -> Result<Element, XmlError> {
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let push = |stack: &mut Vec<Element>, node: Node| {
        if let Some(top) = stack.last_mut() {
            top.children.push(node);
        }
    };
    loop {
        let event = reader.read_event().map_err(|e| {
            XmlError(format!(
                "malformed XML at byte {}: {e}",
                reader.error_position()
            ))
        })?;
        match event {
            Event::Start(e) => stack.push(start(&e)?),
            Event::Empty(e) => {
                let el = start(&e)?;
                if stack.is_empty() {
                    root = Some(el);
                } else {
                    push(&mut stack, Node::Element(el));
                }
            }
            Event::End(_) => {
                let el = stack
                    .pop()
                    .ok_or_else(|| XmlError("unbalanced end tag".into()))?;
                if stack.is_empty() {
                    root = Some(el);
                } else {
                    push(&mut stack, Node::Element(el));
                }
            }
            Event::Text(t) => push(&mut stack, Node::Text(utf8(&t)?.to_string())),
            Event::GeneralRef(r) => push(&mut stack, Node::Text(format!("&{};", utf8(&r)?))),
            Event::CData(c) => push(&mut stack, Node::CData(utf8(&c)?.to_string())),
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(XmlError("XML ends inside an element".into()));
    }
    root.ok_or_else(|| XmlError("XML has no root element".into()))
}

/// Turns a record as returned by readMetadata into the body of a deploy file: drops the
/// `fullName` element (the file name carries it), namespace declarations, `xsi:*` attributes,
/// and elements that are `xsi:nil` (absent in a file). Everything else stays as read.
pub(crate) fn to_deploy_file(record: &Element, type_name: &str) -> String {
    /// Keeps `keep` children; a dropped element takes the indentation before it along.
    fn filtered(children: &[Node], keep: impl Fn(&Element) -> bool) -> Vec<Node> {
        let mut out: Vec<Node> = Vec::with_capacity(children.len());
        for n in children {
            match n {
                Node::Element(e) if !keep(e) => {
                    if matches!(out.last(), Some(Node::Text(t)) if t.trim().is_empty()) {
                        out.pop();
                    }
                }
                other => out.push(other.clone()),
            }
        }
        out
    }
    fn clean(el: &Element) -> Element {
        Element {
            name: el.name.clone(),
            attrs: el
                .attrs
                .iter()
                .filter(|(k, _)| {
                    !(k == "xmlns" || k.starts_with("xmlns:") || k.starts_with("xsi:"))
                })
                .cloned()
                .collect(),
            children: filtered(&el.children, |e| !e.is_nil())
                .into_iter()
                .map(|n| match n {
                    Node::Element(e) => Node::Element(clean(&e)),
                    other => other,
                })
                .collect(),
        }
    }
    let mut root = clean(record);
    root.name = type_name.to_string();
    root.attrs = vec![("xmlns".into(), METADATA_NS.into())];
    root.children = filtered(&root.children, |e| e.name != "fullName");
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    root.write(&mut out);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESPONSE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="http://soap.sforce.com/2006/04/metadata" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><readMetadataResponse><result><records xsi:type="ConnectedApp"><fullName>Billing_Sync</fullName>
    <contactEmail>ops@example.com</contactEmail>
    <description>Sync &amp; bill &lt;fast&gt;</description>
    <label>Billing Sync</label>
    <oauthConfig>
        <callbackUrl>https://localhost/unused</callbackUrl>
        <certificate>OLDCERT</certificate>
        <consumerKey>3MVG9.key_1</consumerKey>
        <isAdminApproved>true</isAdminApproved>
        <scopes>Api</scopes>
        <scopes>RefreshToken</scopes>
    </oauthConfig>
    <profileName>Billing Integration</profileName>
    <startUrl xsi:nil="true"/>
    <sessionPolicy><sessionTimeout>15</sessionTimeout></sessionPolicy>
</records></result></readMetadataResponse></soapenv:Body></soapenv:Envelope>"#;

    fn record() -> Element {
        let root = parse(RESPONSE).unwrap();
        let mut found = Vec::new();
        root.descendants("records", &mut found);
        found[0].clone()
    }

    #[test]
    fn reads_values_unescaped() {
        let r = record();
        assert_eq!(r.text_at(&["fullName"]).as_deref(), Some("Billing_Sync"));
        assert_eq!(
            r.text_at(&["description"]).as_deref(),
            Some("Sync & bill <fast>")
        );
        assert_eq!(
            r.text_at(&["oauthConfig", "consumerKey"]).as_deref(),
            Some("3MVG9.key_1")
        );
        assert_eq!(r.text_at(&["oauthConfig", "nothing"]), None);
    }

    #[test]
    fn deploy_file_changes_only_the_certificate() {
        let mut r = record();
        assert!(r.set_text(&["oauthConfig", "certificate"], "callbackUrl", "NEW\nCERT"));
        let file = to_deploy_file(&r, "ConnectedApp");
        let expected = r#"<?xml version="1.0" encoding="UTF-8"?>
<ConnectedApp xmlns="http://soap.sforce.com/2006/04/metadata">
    <contactEmail>ops@example.com</contactEmail>
    <description>Sync &amp; bill &lt;fast&gt;</description>
    <label>Billing Sync</label>
    <oauthConfig>
        <callbackUrl>https://localhost/unused</callbackUrl>
        <certificate>NEW
CERT</certificate>
        <consumerKey>3MVG9.key_1</consumerKey>
        <isAdminApproved>true</isAdminApproved>
        <scopes>Api</scopes>
        <scopes>RefreshToken</scopes>
    </oauthConfig>
    <profileName>Billing Integration</profileName>
    <sessionPolicy><sessionTimeout>15</sessionTimeout></sessionPolicy>
</ConnectedApp>
"#;
        assert_eq!(file, expected);
        // The file parses back to the same values.
        let back = parse(&file).unwrap();
        assert_eq!(
            back.text_at(&["oauthConfig", "certificate"]).as_deref(),
            Some("NEW\nCERT")
        );
        assert_eq!(
            back.text_at(&["description"]).as_deref(),
            Some("Sync & bill <fast>")
        );
    }

    #[test]
    fn a_missing_certificate_is_inserted_after_the_callback_url() {
        let mut r = parse("<records><oauthConfig><callbackUrl>x</callbackUrl><scopes>Api</scopes></oauthConfig></records>")
            .unwrap();
        assert!(r.set_text(&["oauthConfig", "certificate"], "callbackUrl", "C"));
        let mut out = String::new();
        r.write(&mut out);
        assert_eq!(
            out,
            "<records><oauthConfig><callbackUrl>x</callbackUrl><certificate>C</certificate><scopes>Api</scopes></oauthConfig></records>"
        );
        let mut no_oauth = parse("<records><label>x</label></records>").unwrap();
        assert!(!no_oauth.set_text(&["oauthConfig", "certificate"], "callbackUrl", "C"));
    }

    #[test]
    fn prefixed_elements_lose_their_prefix_and_cdata_is_kept() {
        let r = parse(r#"<m:records xmlns:m="urn:x"><m:certificate><![CDATA[AB<C]]></m:certificate></m:records>"#)
            .unwrap();
        assert_eq!(r.name, "records");
        assert_eq!(r.text_at(&["certificate"]).as_deref(), Some("AB<C"));
        let file = to_deploy_file(&r, "ExtlClntAppGlobalOauthSettings");
        assert!(file.contains(
            r#"<ExtlClntAppGlobalOauthSettings xmlns="http://soap.sforce.com/2006/04/metadata"><certificate><![CDATA[AB<C]]></certificate></ExtlClntAppGlobalOauthSettings>"#
        ));
    }

    #[test]
    fn malformed_xml_is_an_error() {
        assert!(parse("<a><b></a>").is_err());
        assert!(parse("").is_err());
        assert!(parse("<a>").is_err());
    }
}
