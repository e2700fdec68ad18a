//! A small, strict XML reader (a tree of [`Element`]s built with quick-xml) and the escaping
//! XML is written with: one piece of code for everyone who reads XML packets — the host's check
//! of `xml-packet` requests, the Plesk plugin reading answers, plesk-sim reading requests.
//!
//! Strict the way a validating server is: one root, matched end tags, UTF-8 only, no DOCTYPE (so
//! no entity other than the five predefined ones and character references, and no external
//! resource), no processing instruction besides the declaration. Anything else is a
//! [`ParseError`]. Nothing is ever expanded beyond a character, so the tree is never larger
//! than the input.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

/// One element: its name, attributes, child elements and text (the concatenation of its direct
/// text nodes, character data and references resolved).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    /// The element's name, as written (prefix included).
    pub name: String,
    /// Attributes, in order, values unescaped.
    pub attrs: Vec<(String, String)>,
    /// Child elements, in order.
    pub children: Vec<Element>,
    /// Direct text content.
    pub text: String,
}

impl Element {
    /// The first child named `name`.
    #[must_use]
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The children named `name`.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// An attribute's value.
    #[must_use]
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The text, trimmed.
    #[must_use]
    pub fn trimmed(&self) -> &str {
        self.text.trim()
    }
}

/// Why a body is not a packet this server reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// A document type declaration (and with it, custom entities).
    Doctype,
    /// An entity reference other than `&amp; &lt; &gt; &apos; &quot;` and character references.
    Entity(String),
    /// Anything else: not well-formed, not UTF-8, no root, text outside the root, a second root.
    Malformed(String),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Doctype => f.write_str("DOCTYPE declarations are not accepted"),
            Self::Entity(name) => write!(f, "undefined entity &{name};"),
            Self::Malformed(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for ParseError {}

fn malformed(what: impl std::fmt::Display) -> ParseError {
    ParseError::Malformed(what.to_string())
}

fn element(start: &BytesStart<'_>) -> Result<Element, ParseError> {
    let name = start.name().as_ref().to_owned();
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(malformed)?;
        let key = attr.key.as_ref().to_owned();
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(malformed)?
            .into_owned();
        attrs.push((key, value));
    }
    Ok(Element {
        name,
        attrs,
        ..Element::default()
    })
}

/// Parses a document into its root element.
///
/// # Errors
/// [`ParseError`] for anything but one well-formed UTF-8 element tree.
pub fn parse(body: &[u8]) -> Result<Element, ParseError> {
    let text = std::str::from_utf8(body).map_err(|_| malformed("the body is not UTF-8"))?;
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let attach = |stack: &mut Vec<Element>, root: &mut Option<Element>, done: Element| {
        match stack.last_mut() {
            Some(parent) => parent.children.push(done),
            None if root.is_none() => *root = Some(done),
            None => return Err(malformed("more than one root element")),
        }
        Ok(())
    };
    loop {
        match reader.read_event().map_err(malformed)? {
            Event::Decl(decl) => {
                if let Some(encoding) = decl.encoding() {
                    let encoding = encoding.map_err(malformed)?;
                    if !encoding.eq_ignore_ascii_case("utf-8") {
                        return Err(malformed(format!("encoding {encoding} is not UTF-8")));
                    }
                }
            }
            Event::DocType(_) => return Err(ParseError::Doctype),
            Event::PI(_) => return Err(malformed("processing instructions are not accepted")),
            Event::Comment(_) => {}
            Event::Start(start) => {
                if stack.is_empty() && root.is_some() {
                    return Err(malformed("more than one root element"));
                }
                stack.push(element(&start)?);
            }
            Event::Empty(start) => {
                if stack.is_empty() && root.is_some() {
                    return Err(malformed("more than one root element"));
                }
                let done = element(&start)?;
                attach(&mut stack, &mut root, done)?;
            }
            Event::End(_) => {
                let done = stack.pop().ok_or_else(|| malformed("unmatched end tag"))?;
                attach(&mut stack, &mut root, done)?;
            }
            Event::Text(t) => {
                let content = t.xml10_content();
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&content),
                    None if content.trim().is_empty() => {}
                    None => return Err(malformed("text outside the root element")),
                }
            }
            Event::CData(c) => {
                let content = c.xml10_content().into_owned();
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&content),
                    None => return Err(malformed("character data outside the root element")),
                }
            }
            Event::GeneralRef(r) => {
                let resolved = if r.is_char_ref() {
                    r.resolve_char_ref()
                        .map_err(malformed)?
                        .ok_or_else(|| malformed("bad character reference"))?
                } else {
                    match &*r {
                        "amp" => '&',
                        "lt" => '<',
                        "gt" => '>',
                        "apos" => '\'',
                        "quot" => '"',
                        other => return Err(ParseError::Entity(other.to_owned())),
                    }
                };
                match stack.last_mut() {
                    Some(top) => top.text.push(resolved),
                    None => return Err(malformed("a reference outside the root element")),
                }
            }
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(malformed("the document ends inside an element"));
    }
    root.ok_or_else(|| malformed("no root element"))
}

/// Escapes text for element content and attribute values.
#[must_use]
pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_packet_tree() {
        let root = parse(
            br#"<?xml version="1.0" encoding="UTF-8"?>
            <!-- hi --><packet version="1.6.3.5"><ui><get-custombutton><filter>
            <owner><customer-id>1</customer-id></owner></filter></get-custombutton></ui>
            <server><get_protos/></server><x>a &amp; b&#33;<![CDATA[<c>]]></x></packet>"#,
        )
        .unwrap();
        assert_eq!(root.name, "packet");
        assert_eq!(root.attr("version"), Some("1.6.3.5"));
        let names: Vec<_> = root.children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["ui", "server", "x"]);
        assert_eq!(root.child("x").unwrap().text, "a & b!<c>");
        let id = &root.children[0].children[0].children[0].children[0].children[0];
        assert_eq!((id.name.as_str(), id.trimmed()), ("customer-id", "1"));
    }

    #[test]
    fn refuses_what_a_strict_server_refuses() {
        assert_eq!(
            parse(br#"<!DOCTYPE p [<!ENTITY e "x">]><packet>&e;</packet>"#),
            Err(ParseError::Doctype)
        );
        assert_eq!(
            parse(b"<packet>&e;</packet>"),
            Err(ParseError::Entity("e".into()))
        );
        for bad in [
            &b"<packet><ui></packet>"[..],
            b"<packet></packet><packet/>",
            b"<packet>",
            b"",
            b"text<packet/>",
            b"<?xml version=\"1.0\" encoding=\"UTF-16\"?><packet/>",
            b"<?php x?><packet/>",
            b"<packet>\xff</packet>",
        ] {
            assert!(
                matches!(parse(bad), Err(ParseError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
