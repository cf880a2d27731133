//! A tiny element tree for Metadata API XML: parse with quick-xml, edit, and write back.
//!
//! Metadata components and SOAP envelopes never use mixed content, so an element holds either
//! text or child elements; namespace prefixes are dropped on parse because the emulator only
//! speaks one metadata namespace.

use quick_xml::Reader;
use quick_xml::events::Event;

/// The Metadata API namespace every component and SOAP payload uses.
pub(crate) const METADATA_NS: &str = "http://soap.sforce.com/2006/04/metadata";

/// One XML element with its local name, its text and its child elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Element {
    pub(crate) name: String,
    pub(crate) text: String,
    pub(crate) children: Vec<Element>,
}

impl Element {
    /// An element with no text and no children.
    pub(crate) fn new(name: &str) -> Element {
        Element {
            name: name.to_string(),
            text: String::new(),
            children: Vec::new(),
        }
    }

    /// An element holding only text.
    pub(crate) fn with_text(name: &str, text: &str) -> Element {
        Element {
            name: name.to_string(),
            text: text.to_string(),
            children: Vec::new(),
        }
    }

    /// Parses a document and returns its root element.
    pub(crate) fn parse(text: &str) -> Result<Element, String> {
        let mut reader = Reader::from_str(text);
        let mut stack: Vec<Element> = Vec::new();
        loop {
            let event = reader
                .read_event()
                .map_err(|e| format!("{e} at byte {}", reader.buffer_position()))?;
            match event {
                Event::Start(start) => {
                    stack.push(Element::new(&local_name(start.local_name().as_ref())?));
                }
                Event::Empty(start) => {
                    let element = Element::new(&local_name(start.local_name().as_ref())?);
                    if let Some(done) = close(&mut stack, element) {
                        return Ok(done);
                    }
                }
                Event::End(_) => {
                    let element = stack.pop().ok_or("unbalanced end tag")?;
                    if let Some(done) = close(&mut stack, element) {
                        return Ok(done);
                    }
                }
                Event::Text(text) => {
                    let decoded = text.xml_content().map_err(|e| e.to_string())?;
                    push_text(&mut stack, &decoded)?;
                }
                Event::CData(data) => {
                    let decoded = data.xml_content().map_err(|e| e.to_string())?;
                    push_text(&mut stack, &decoded)?;
                }
                Event::GeneralRef(reference) => {
                    let resolved = match reference.resolve_char_ref().map_err(|e| e.to_string())? {
                        Some(c) => c.to_string(),
                        None => predefined_entity(&reference.decode().map_err(|e| e.to_string())?)?,
                    };
                    push_text(&mut stack, &resolved)?;
                }
                Event::Eof => return Err("document has no complete root element".into()),
                Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
            }
        }
    }

    /// The first child with this name.
    pub(crate) fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The first child with this name, mutably.
    pub(crate) fn child_mut(&mut self, name: &str) -> Option<&mut Element> {
        self.children.iter_mut().find(|c| c.name == name)
    }

    /// The trimmed text of the first child with this name, if it has any.
    pub(crate) fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name)
            .map(|c| c.text.trim())
            .filter(|t| !t.is_empty())
    }

    /// Texts of every child with this name (repeated fields such as `profileName`).
    pub(crate) fn child_texts(&self, name: &str) -> Vec<String> {
        self.children
            .iter()
            .filter(|c| c.name == name)
            .map(|c| c.text.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect()
    }

    /// Boolean value of a child (`true`/`false`), if present.
    pub(crate) fn child_bool(&self, name: &str) -> Option<bool> {
        self.child_text(name)
            .map(|t| t.eq_ignore_ascii_case("true"))
    }

    /// Sets the text of the first child with this name, adding the child when absent.
    pub(crate) fn set_child_text(&mut self, name: &str, text: &str) {
        match self.child_mut(name) {
            Some(child) => child.text = text.to_string(),
            None => self.children.push(Element::with_text(name, text)),
        }
    }

    /// Removes every child with this name, at any depth.
    pub(crate) fn remove_deep(&mut self, name: &str) {
        self.children.retain(|c| c.name != name);
        for child in &mut self.children {
            child.remove_deep(name);
        }
    }

    /// Reorders children into Metadata WSDL order. The WSDL lists the fields of these types
    /// alphabetically, with the inherited `fullName` first; the sort is stable so repeated
    /// fields (`scopes`, `profileName`) keep their relative order.
    pub(crate) fn sort_wsdl(&mut self) {
        self.children
            .sort_by(|a, b| wsdl_key(&a.name).cmp(&wsdl_key(&b.name)));
        for child in &mut self.children {
            child.sort_wsdl();
        }
    }

    /// Adds a child at its WSDL position (before the first sibling that sorts after it).
    pub(crate) fn insert_in_wsdl_order(&mut self, child: Element) {
        let at = self
            .children
            .iter()
            .position(|c| wsdl_key(&c.name) > wsdl_key(&child.name))
            .unwrap_or(self.children.len());
        self.children.insert(at, child);
    }

    /// The first element, at any depth, that comes before a sibling the WSDL orders ahead of
    /// it, with its parent's name: what Salesforce refuses as "invalid at this location".
    pub(crate) fn first_out_of_wsdl_order(&self) -> Option<(&str, &str)> {
        let misplaced = self
            .children
            .windows(2)
            .find(|pair| wsdl_key(&pair[0].name) > wsdl_key(&pair[1].name));
        if let Some(pair) = misplaced {
            return Some((pair[1].name.as_str(), self.name.as_str()));
        }
        self.children
            .iter()
            .find_map(Element::first_out_of_wsdl_order)
    }

    /// Writes the element (and its children) as indented XML; `attrs` go on this element only.
    pub(crate) fn write(&self, out: &mut String, attrs: &str, indent: usize) {
        let pad = "    ".repeat(indent);
        out.push_str(&pad);
        out.push('<');
        out.push_str(&self.name);
        out.push_str(attrs);
        if self.children.is_empty() && self.text.is_empty() {
            out.push_str("/>\n");
            return;
        }
        out.push('>');
        if self.children.is_empty() {
            out.push_str(&escape(&self.text));
        } else {
            out.push('\n');
            for child in &self.children {
                child.write(out, "", indent + 1);
            }
            out.push_str(&pad);
        }
        out.push_str("</");
        out.push_str(&self.name);
        out.push_str(">\n");
    }

    /// A complete metadata file: XML declaration plus the root in the metadata namespace.
    pub(crate) fn to_document(&self) -> String {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        self.write(&mut out, &format!(" xmlns=\"{METADATA_NS}\""), 0);
        out
    }
}

/// Escapes text for element content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

fn local_name(bytes: &[u8]) -> Result<String, String> {
    std::str::from_utf8(bytes)
        .map(str::to_string)
        .map_err(|e| e.to_string())
}

/// Appends a finished element to its parent, or hands it back when it is the root.
fn close(stack: &mut [Element], mut element: Element) -> Option<Element> {
    // Indentation between child elements is not content.
    if !element.children.is_empty() && element.text.trim().is_empty() {
        element.text.clear();
    }
    match stack.last_mut() {
        Some(parent) => {
            parent.children.push(element);
            None
        }
        None => Some(element),
    }
}

fn push_text(stack: &mut [Element], text: &str) -> Result<(), String> {
    match stack.last_mut() {
        Some(current) => {
            current.text.push_str(text);
            Ok(())
        }
        // Whitespace between the prolog and the root is fine; anything else is not XML.
        None if text.trim().is_empty() => Ok(()),
        None => Err("text outside the root element".into()),
    }
}

fn predefined_entity(name: &str) -> Result<String, String> {
    let resolved = match name {
        "amp" => "&",
        "lt" => "<",
        "gt" => ">",
        "quot" => "\"",
        "apos" => "'",
        other => return Err(format!("unknown entity &{other};")),
    };
    Ok(resolved.to_string())
}

/// Sort key of a field in Metadata WSDL order: the inherited `fullName` first, then the type's
/// own fields, which the WSDL lists alphabetically.
fn wsdl_key(name: &str) -> (bool, &str) {
    (name != "fullName", name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prefixed_entities_and_round_trips() {
        let doc = r#"<?xml version="1.0"?><m:Root xmlns:m="x"><b>1 &amp; 2</b><a/><fullName>F</fullName><b>&#x33;</b></m:Root>"#;
        let mut root = Element::parse(doc).unwrap();
        assert_eq!(root.name, "Root");
        assert_eq!(root.child_texts("b"), vec!["1 & 2", "3"]);
        root.sort_wsdl();
        let names: Vec<_> = root.children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["fullName", "a", "b", "b"]);
        let again = Element::parse(&root.to_document()).unwrap();
        assert_eq!(again, root);
    }

    #[test]
    fn rejects_broken_documents() {
        assert!(Element::parse("<a><b></a>").is_err());
        assert!(Element::parse("<a>").is_err());
        assert!(Element::parse("not xml").is_err());
    }
}
