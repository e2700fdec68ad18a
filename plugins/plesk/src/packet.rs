//! Plesk's XML API on the wire: the endpoint, the request packets this plugin sends (and so the
//! operations it declares), and reading the answers.
//!
//! Facts from the reference (`shared/reference/plesk`): one endpoint, `POST
//! /enterprise/control/agent.php` with `Content-Type: text/xml`; a packet holds operators, each
//! holding operations, any number of each; an answer is either one `<system>` error (nothing
//! ran) or, per operation in request order, its `<result>`s, each with `status` and on error
//! `errcode`/`errtext`. The properties of a custom button must come in schema order. What the
//! reference marks unverified is read defensively here: results are matched by `filter-id`, `id`
//! or `login` rather than by position, and an operation may answer no result at all.

use std::fmt::Write as _;

use panelink_whm::api::HttpResponse;
use panelink_xml::{self as xml, Element};

use crate::model::{PluginError, Server};

/// The XML API path.
pub const AGENT_PATH: &str = "/enterprise/control/agent.php";

/// The protocol version every packet is sent as: the first with the `ui` operator (Plesk 11.0).
pub const PROTOCOL: &str = "1.6.3.5";

/// Every operation this plugin sends, as `operator/operation`: what it declares to the host.
pub const OPERATIONS: [&str; 7] = [
    "server/get_protos",
    "server/get",
    "customer/get",
    "webspace/get",
    "ui/get-custombutton",
    "ui/create-custombutton",
    "ui/delete-custombutton",
];

/// `http(s)://<hostname>:<port>/enterprise/control/agent.php`.
#[must_use]
pub fn endpoint(server: &Server) -> String {
    let scheme = if server.secure { "https" } else { "http" };
    let host = server.hostname.as_str();
    if host.contains(':') && !host.starts_with('[') {
        format!("{scheme}://[{host}]:{}{AGENT_PATH}", server.port)
    } else {
        format!("{scheme}://{host}:{}{AGENT_PATH}", server.port)
    }
}

/// A request packet being written.
#[derive(Debug)]
pub struct Packet {
    out: String,
    operations: usize,
}

impl Default for Packet {
    fn default() -> Self {
        Self::new()
    }
}

impl Packet {
    /// An empty packet of [`PROTOCOL`].
    #[must_use]
    pub fn new() -> Self {
        let mut out = String::with_capacity(1024);
        out.push_str(r#"<?xml version="1.0" encoding="UTF-8"?><packet version=""#);
        out.push_str(PROTOCOL);
        out.push_str(r#"">"#);
        Self { out, operations: 0 }
    }

    /// Operations written so far.
    #[must_use]
    pub fn operations(&self) -> usize {
        self.operations
    }

    /// `<name>` (raw, trusted markup names only).
    pub fn open(&mut self, name: &str) -> &mut Self {
        let _ = write!(self.out, "<{name}>");
        self
    }

    /// `</name>`.
    pub fn close(&mut self, name: &str) -> &mut Self {
        let _ = write!(self.out, "</{name}>");
        self
    }

    /// `<name/>`.
    pub fn empty(&mut self, name: &str) -> &mut Self {
        let _ = write!(self.out, "<{name}/>");
        self
    }

    /// `<name>value</name>`, the value escaped.
    pub fn leaf(&mut self, name: &str, value: &str) -> &mut Self {
        let _ = write!(self.out, "<{name}>{}</{name}>", xml::escape(value));
        self
    }

    /// Counts one operation (for the per-request limit).
    pub fn count(&mut self) -> &mut Self {
        self.operations += 1;
        self
    }

    /// The finished body.
    #[must_use]
    pub fn finish(mut self) -> Vec<u8> {
        self.out.push_str("</packet>");
        self.out.into_bytes()
    }
}

/// `<server><get_protos/><get><stat/></get></server>`: the protocols and the Plesk version.
#[must_use]
pub fn check_packet() -> Vec<u8> {
    let mut p = Packet::new();
    p.open("server").empty("get_protos").count();
    p.open("get").empty("stat").close("get").count();
    p.close("server");
    p.finish()
}

/// `<customer><get>` with `gen_info` for these logins (every customer when empty).
pub fn customers(p: &mut Packet, logins: &[&str]) {
    p.open("customer").open("get").open("filter");
    for login in logins {
        p.leaf("login", login);
    }
    p.close("filter")
        .open("dataset")
        .empty("gen_info")
        .close("dataset");
    p.close("get").close("customer").count();
}

/// `<webspace><get>` of every subscription, with `gen_info`.
pub fn all_subscriptions(p: &mut Packet) {
    p.open("webspace").open("get").empty("filter");
    p.open("dataset").empty("gen_info").close("dataset");
    p.close("get").close("webspace").count();
}

/// One `<get-custombutton>` per customer id (owner filter), inside `<ui>`.
#[must_use]
pub fn buttons_packet(customer_ids: &[u32]) -> Vec<u8> {
    let mut p = Packet::new();
    p.open("ui");
    for id in customer_ids {
        p.open("get-custombutton").open("filter").open("owner");
        p.leaf("customer-id", &id.to_string());
        p.close("owner")
            .close("filter")
            .close("get-custombutton")
            .count();
    }
    p.close("ui");
    p.finish()
}

/// One `<delete-custombutton>` of these button ids (inside an open `<ui>`).
pub fn delete_buttons(p: &mut Packet, ids: &[u32]) {
    p.open("delete-custombutton").open("filter");
    for id in ids {
        p.leaf("custombutton-id", &id.to_string());
    }
    p.close("filter").close("delete-custombutton").count();
}

/// A custom button to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewButton {
    /// The owning customer's id.
    pub customer_id: u32,
    /// `sort_key`: the link's display position.
    pub sort_key: u32,
    /// `text`: the label.
    pub text: String,
    /// `conhelp`: the tooltip, carrying Panelink's marker.
    pub conhelp: String,
    /// `url`: the static link.
    pub url: String,
}

/// One `<create-custombutton>` (inside an open `<ui>`): owned by the customer, shown on the
/// customer's home page (`place` `client`), not shared with the customer's sub-users (`public`
/// false: the URL is a bearer credential), opening in a new window (`internal` false), no
/// `url-components` (the handle identifies the account; components are forgeable and their
/// spelling is unverified). Properties in schema order.
pub fn create_button(p: &mut Packet, button: &NewButton) {
    p.open("create-custombutton").open("owner");
    p.leaf("customer-id", &button.customer_id.to_string());
    p.close("owner").open("properties");
    p.leaf("sort_key", &button.sort_key.to_string());
    p.leaf("conhelp", &button.conhelp);
    p.leaf("public", "false");
    p.leaf("internal", "false");
    p.leaf("place", "client");
    p.leaf("url", &button.url);
    p.leaf("text", &button.text);
    p.close("properties").close("create-custombutton").count();
}

/// The answer to one operation: its results, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationReply {
    /// The operator, e.g. `ui`.
    pub operator: String,
    /// The operation, e.g. `create-custombutton`.
    pub operation: String,
    /// Its `<result>` elements.
    pub results: Vec<Element>,
}

/// Reads an answer: HTTP status, then the packet. `Err` for what fails the whole request.
///
/// # Errors
/// `transient` for HTTP 5xx; `panel` for other non-2xx answers, unreadable packets and `system`
/// errors, except an unsupported protocol (1005, 1017), which is `unsupported`.
pub fn read_reply(response: &HttpResponse) -> Result<Vec<OperationReply>, PluginError> {
    match response.status {
        200..=299 => {}
        500..=599 => {
            return Err(PluginError::Transient(format!(
                "the panel answered HTTP {}",
                response.status
            )));
        }
        status => {
            return Err(PluginError::Panel(format!(
                "the panel answered HTTP {status}"
            )));
        }
    }
    let root = xml::parse(&response.body)
        .map_err(|e| PluginError::Panel(format!("the panel's answer is not a packet: {e}")))?;
    if root.name != "packet" {
        return Err(PluginError::Panel(format!(
            "the panel's answer is a <{}>, not a <packet>",
            root.name
        )));
    }
    if let Some(system) = root.child("system") {
        let code = text_of(system, "errcode");
        let message = match text_of(system, "errtext") {
            "" => format!("the panel refused the request (error {code})"),
            text => format!("{text} (error {code})"),
        };
        return Err(match code {
            "1005" | "1017" => PluginError::Unsupported(message),
            _ => PluginError::Panel(message),
        });
    }
    let mut replies = Vec::new();
    for operator in root.children {
        for operation in operator.children {
            replies.push(OperationReply {
                operator: operator.name.clone(),
                operation: operation.name,
                results: operation
                    .children
                    .into_iter()
                    .filter(|c| c.name == "result")
                    .collect(),
            });
        }
    }
    Ok(replies)
}

/// The trimmed text of `element`'s child `name`; empty when absent.
#[must_use]
pub fn text_of<'a>(element: &'a Element, name: &str) -> &'a str {
    element.child(name).map_or("", Element::trimmed)
}

/// A result's verdict: `Ok` for `status` ok, else the panel's `errtext` unchanged (or the code
/// when it gave no text).
///
/// # Errors
/// The panel's error text.
pub fn status(result: &Element) -> Result<(), String> {
    match text_of(result, "status") {
        "ok" => Ok(()),
        _ => Err(
            match (text_of(result, "errtext"), text_of(result, "errcode")) {
                ("", "") => "the panel reported an error without a code".to_owned(),
                ("", code) => format!("the panel reported error {code}"),
                (text, _) => result
                    .child("errtext")
                    .map_or_else(|| text.to_owned(), |e| e.text.clone()),
            },
        ),
    }
}

/// A result's error code, when it has one.
#[must_use]
pub fn errcode(result: &Element) -> &str {
    text_of(result, "errcode")
}

/// `<id>` as a number.
#[must_use]
pub fn id_of(element: &Element) -> Option<u32> {
    text_of(element, "id").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(body: &str) -> Result<Vec<OperationReply>, PluginError> {
        read_reply(&HttpResponse {
            status: 200,
            body: body.as_bytes().to_vec(),
        })
    }

    #[test]
    fn packets_are_well_formed_and_ordered() {
        let body = check_packet();
        let root = xml::parse(&body).unwrap();
        assert_eq!(root.attr("version"), Some(PROTOCOL));
        let server = root.child("server").unwrap();
        let ops: Vec<_> = server.children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(ops, ["get_protos", "get"]);

        let mut p = Packet::new();
        p.open("ui");
        create_button(
            &mut p,
            &NewButton {
                customer_id: 7,
                sort_key: 3,
                text: "Tickets & <more>".into(),
                conhelp: "Tickets & <more> (P_clientarea_tickets)".into(),
                url: "https://b.test/sso/link/h?scope=a:b&app=X".into(),
            },
        );
        delete_buttons(&mut p, &[4, 5]);
        p.close("ui");
        assert_eq!(p.operations(), 2);
        let root = xml::parse(&p.finish()).unwrap();
        let create = &root.children[0].children[0];
        let props: Vec<_> = create.children[1]
            .children
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        // The schema's order: sort_key, conhelp, file, public, internal, noframe, place, url, text.
        assert_eq!(
            props,
            [
                "sort_key", "conhelp", "public", "internal", "place", "url", "text"
            ]
        );
        assert_eq!(
            create.children[1].child("url").unwrap().text,
            "https://b.test/sso/link/h?scope=a:b&app=X"
        );
        assert_eq!(
            create.children[1].child("text").unwrap().text,
            "Tickets & <more>"
        );
        let delete = &root.children[0].children[1];
        assert_eq!(delete.children[0].children.len(), 2);
    }

    #[test]
    fn answers_are_read_per_operation_and_system_errors_fail_the_request() {
        let ops = reply(
            "<packet version=\"1.6.3.5\"><ui><create-custombutton><result><status>ok</status><id>4</id></result></create-custombutton><create-custombutton><result><status>error</status><errcode>1015</errcode><errtext>Owner not found.</errtext></result></create-custombutton><get-custombutton/></ui></packet>",
        )
        .unwrap();
        assert_eq!(ops.len(), 3);
        assert_eq!(status(&ops[0].results[0]), Ok(()));
        assert_eq!(id_of(&ops[0].results[0]), Some(4));
        assert_eq!(status(&ops[1].results[0]), Err("Owner not found.".into()));
        assert!(ops[2].results.is_empty());

        let system = |code: &str| {
            reply(&format!(
                "<packet><system><status>error</status><errcode>{code}</errcode><errtext>No.</errtext></system></packet>"
            ))
            .unwrap_err()
        };
        assert_eq!(
            system("1001"),
            PluginError::Panel("No. (error 1001)".into())
        );
        assert_eq!(
            system("1005"),
            PluginError::Unsupported("No. (error 1005)".into())
        );
        assert!(matches!(reply("<html>"), Err(PluginError::Panel(_))));
        assert!(matches!(reply("<html/>"), Err(PluginError::Panel(_))));
        let failed = |status| {
            read_reply(&HttpResponse {
                status,
                body: Vec::new(),
            })
            .unwrap_err()
        };
        assert!(matches!(failed(503), PluginError::Transient(_)));
        assert!(matches!(failed(403), PluginError::Panel(_)));
    }

    #[test]
    fn endpoints() {
        let mut server = Server {
            hostname: "plesk.example".into(),
            port: 8443,
            secure: true,
            username: "admin".into(),
        };
        assert_eq!(
            endpoint(&server),
            "https://plesk.example:8443/enterprise/control/agent.php"
        );
        server.hostname = "::1".into();
        server.secure = false;
        assert_eq!(
            endpoint(&server),
            "http://[::1]:8443/enterprise/control/agent.php"
        );
    }
}
