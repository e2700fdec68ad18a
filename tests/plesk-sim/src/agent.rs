//! `agent.php`: one request packet in, one response packet out.
//!
//! In the order a real server checks (see the reference, "Results and errors"): authentication,
//! then the packet (well-formed, root `packet`, a supported `version`), then the whole packet
//! against the schema — known operators and operations, required elements, the properties of a
//! custom button in schema order. Any of these failing is one `<system>` error and nothing runs.
//! Then every operation runs in order, each answering its own `<result>`s (`status`, `errcode`,
//! `errtext`): one operation's error never stops the next.

use std::fmt::Write as _;

use crate::state::{ButtonProps, Owner, PleskState};
use panelink_xml::{self as xml, Element, ParseError};

/// Error codes (the reduced list).
pub mod codes {
    /// Authentication failed.
    pub const AUTH: u32 = 1001;
    /// Unsupported protocol version.
    pub const VERSION: u32 = 1005;
    /// Object not found.
    pub const NOT_FOUND: u32 = 1013;
    /// XML parse or schema error.
    pub const PARSE: u32 = 1014;
    /// Object owner not found.
    pub const OWNER_NOT_FOUND: u32 = 1015;
    /// Invalid value.
    pub const INVALID_VALUE: u32 = 1019;
    /// Secret key validation failed.
    pub const KEY: u32 = 11003;
}

/// The first protocol version with the `ui` operator (custom buttons).
pub const UI_PROTO: &str = "1.6.3.5";

/// The credentials a request presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `HTTP_AUTH_LOGIN` and `HTTP_AUTH_PASSWD`.
    Login {
        /// Login.
        login: String,
        /// Password.
        password: String,
    },
    /// `KEY`.
    Key(String),
    /// Neither.
    None,
}

/// One parsed operation, checked against the schema.
#[derive(Debug, Clone)]
enum Op {
    ServerProtos,
    ServerGet { gen_info: bool, stat: bool },
    CustomerGet { filter: Filter, gen_info: bool },
    WebspaceGet { filter: Filter, gen_info: bool },
    ButtonCreate(Owner, ButtonProps, Vec<String>),
    ButtonGet(ButtonFilter),
    ButtonDelete(ButtonFilter),
}

#[derive(Debug, Clone)]
enum Filter {
    All,
    By(String, Vec<String>),
}

#[derive(Debug, Clone)]
enum ButtonFilter {
    All,
    Ids(Vec<String>),
    Owners(Vec<Owner>),
}

/// A `system` error: nothing in the packet ran.
#[derive(Debug)]
struct SystemError(u32, String);

fn schema(what: impl std::fmt::Display) -> SystemError {
    SystemError(codes::PARSE, format!("XML input parser error: {what}"))
}

/// A packet that passed the checks: per operator, its operations.
type Checked = Vec<(String, Vec<(String, Op)>)>;

/// The number of operations in a request body that would run, for latency: 0 when the packet
/// would be refused as a whole.
pub fn count_operations(body: &[u8]) -> usize {
    xml::parse(body)
        .map(|root| root.children.iter().map(|o| o.children.len()).sum())
        .unwrap_or(0)
}

/// Answers one request. `count` is called with `operator/operation` for each operation that runs
/// and `packet` once for a packet that passed the checks.
pub fn answer(
    state: &mut PleskState,
    credentials: &Credentials,
    body: &[u8],
    mut count: impl FnMut(&str),
) -> Result<String, (u32, String)> {
    let latest = state.protos.first().cloned().unwrap_or_default();
    let result = (|| {
        authenticate(state, credentials)?;
        let root = xml::parse(body).map_err(|e| match e {
            ParseError::Doctype | ParseError::Entity(_) | ParseError::Malformed(_) => schema(e),
        })?;
        if root.name != "packet" {
            return Err(schema(format!(
                "the root element is <{}>, not <packet>",
                root.name
            )));
        }
        let version = match root.attr("version") {
            Some(v) => accepted_version(state, v).ok_or_else(|| {
                SystemError(codes::VERSION, format!("Unsupported protocol version {v}"))
            })?,
            None => latest.clone(),
        };
        let checked = check(&root, &version)?;
        Ok((version, checked))
    })();
    let (version, checked) = match result {
        Ok(ok) => ok,
        Err(SystemError(code, text)) => return Err((code, system_packet(&latest, code, &text))),
    };
    count("packet");
    let mut out = String::with_capacity(256);
    let _ = write!(
        out,
        r#"<?xml version="1.0" encoding="UTF-8"?><packet version="{}">"#,
        xml::escape(&version)
    );
    for (operator, operations) in &checked {
        let _ = write!(out, "<{operator}>");
        for (operation, op) in operations {
            count(&format!("{operator}/{operation}"));
            let _ = write!(out, "<{operation}>");
            run(state, op, &mut out);
            let _ = write!(out, "</{operation}>");
        }
        let _ = write!(out, "</{operator}>");
    }
    out.push_str("</packet>");
    Ok(out)
}

/// The packet answered for a checkup failure.
pub fn system_packet(version: &str, code: u32, text: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><packet version="{}"><system><status>error</status><errcode>{code}</errcode><errtext>{}</errtext></system></packet>"#,
        xml::escape(version),
        xml::escape(text)
    )
}

fn authenticate(state: &PleskState, credentials: &Credentials) -> Result<(), SystemError> {
    match credentials {
        Credentials::Login { login, password }
            if *login == state.admin_login && *password == state.admin_password =>
        {
            Ok(())
        }
        Credentials::Key(key) if state.secret_key.as_deref() == Some(key.as_str()) => Ok(()),
        Credentials::Key(_) => Err(SystemError(
            codes::KEY,
            "Secret key validation failed".to_owned(),
        )),
        _ => Err(SystemError(
            codes::AUTH,
            "Authentication failed - wrong password.".to_owned(),
        )),
    }
}

fn numbers(version: &str) -> Option<Vec<u32>> {
    version.split('.').map(|p| p.parse().ok()).collect()
}

/// Whether `a` ≥ `b` as dotted versions (missing parts are 0).
pub fn version_at_least(a: &str, b: &str) -> bool {
    let (Some(mut a), Some(mut b)) = (numbers(a), numbers(b)) else {
        return false;
    };
    let len = a.len().max(b.len());
    a.resize(len, 0);
    b.resize(len, 0);
    a >= b
}

/// The protocol a requested version selects: itself when listed, or the newest listed version it
/// is a prefix of (`1.6` and `1.6.5` name the latest of that major or minor version).
fn accepted_version(state: &PleskState, requested: &str) -> Option<String> {
    numbers(requested)?;
    state
        .protos
        .iter()
        .find(|p| *p == requested || p.starts_with(&format!("{requested}.")))
        .cloned()
}

fn check(root: &Element, version: &str) -> Result<Checked, SystemError> {
    let mut checked = Vec::new();
    for operator in &root.children {
        let mut operations = Vec::new();
        for operation in &operator.children {
            let op = match (operator.name.as_str(), operation.name.as_str()) {
                ("server", "get_protos") => Op::ServerProtos,
                ("server", "get") => {
                    only(operation, &["gen_info", "stat"])?;
                    Op::ServerGet {
                        gen_info: operation.child("gen_info").is_some(),
                        stat: operation.child("stat").is_some(),
                    }
                }
                ("customer", "get") => {
                    let (filter, gen_info) = get_request(
                        operation,
                        &[
                            "id",
                            "login",
                            "owner-id",
                            "owner-login",
                            "guid",
                            "external-id",
                        ],
                    )?;
                    Op::CustomerGet { filter, gen_info }
                }
                ("webspace", "get") => {
                    let (filter, gen_info) = get_request(
                        operation,
                        &[
                            "id",
                            "owner-id",
                            "name",
                            "owner-login",
                            "guid",
                            "owner-guid",
                            "external-id",
                            "owner-external-id",
                        ],
                    )?;
                    Op::WebspaceGet { filter, gen_info }
                }
                ("ui", _) if !version_at_least(version, UI_PROTO) => {
                    return Err(schema(format!(
                        "the operator <ui> does not exist in protocol {version}"
                    )));
                }
                ("ui", "create-custombutton") => create_request(operation)?,
                ("ui", "get-custombutton") => Op::ButtonGet(button_filter(operation)?),
                ("ui", "delete-custombutton") => Op::ButtonDelete(button_filter(operation)?),
                ("server" | "customer" | "webspace" | "ui", name) => {
                    return Err(schema(format!(
                        "<{name}> is not a known operation of <{}>",
                        operator.name
                    )));
                }
                (name, _) => return Err(schema(format!("unknown operator <{name}>"))),
            };
            operations.push((operation.name.clone(), op));
        }
        if operations.is_empty()
            && !matches!(
                operator.name.as_str(),
                "server" | "customer" | "webspace" | "ui"
            )
        {
            return Err(schema(format!("unknown operator <{}>", operator.name)));
        }
        checked.push((operator.name.clone(), operations));
    }
    Ok(checked)
}

fn only(element: &Element, allowed: &[&str]) -> Result<(), SystemError> {
    match element
        .children
        .iter()
        .find(|c| !allowed.contains(&c.name.as_str()))
    {
        Some(c) => Err(schema(format!(
            "element <{}> is not expected in <{}>",
            c.name, element.name
        ))),
        None => Ok(()),
    }
}

fn get_request(operation: &Element, filters: &[&str]) -> Result<(Filter, bool), SystemError> {
    only(operation, &["filter", "dataset"])?;
    let filter = operation
        .child("filter")
        .ok_or_else(|| schema(format!("<{}> needs a <filter>", operation.name)))?;
    let dataset = operation
        .child("dataset")
        .ok_or_else(|| schema(format!("<{}> needs a <dataset>", operation.name)))?;
    only(
        dataset,
        &[
            "gen_info",
            "stat",
            "prefs",
            "limits",
            "hosting",
            "disk_usage",
        ],
    )?;
    let filter = match filter.children.first() {
        None => Filter::All,
        Some(first) => {
            if !filters.contains(&first.name.as_str()) {
                return Err(schema(format!(
                    "element <{}> is not expected in <filter>",
                    first.name
                )));
            }
            if filter.children.iter().any(|c| c.name != first.name) {
                return Err(schema("a filter takes values of one kind only"));
            }
            Filter::By(
                first.name.clone(),
                filter
                    .children
                    .iter()
                    .map(|c| c.trimmed().to_owned())
                    .collect(),
            )
        }
    };
    Ok((filter, dataset.child("gen_info").is_some()))
}

fn owner(element: &Element) -> Result<Owner, SystemError> {
    let [choice] = element.children.as_slice() else {
        return Err(schema(
            "<owner> holds exactly one of <admin>, <customer-id>, <reseller-id>",
        ));
    };
    let id = || {
        choice
            .trimmed()
            .parse::<u32>()
            .map_err(|_| schema(format!("<{}> is not an integer", choice.name)))
    };
    match choice.name.as_str() {
        "admin" => Ok(Owner::Admin),
        "customer-id" => Ok(Owner::Customer(id()?)),
        "reseller-id" => Ok(Owner::Reseller(id()?)),
        other => Err(schema(format!(
            "element <{other}> is not expected in <owner>"
        ))),
    }
}

/// The properties of a custom button, in the only order the schema accepts.
pub const PROPERTY_ORDER: [&str; 9] = [
    "sort_key", "conhelp", "file", "public", "internal", "noframe", "place", "url", "text",
];

/// The `url-components` flags.
pub const URL_COMPONENTS: [&str; 8] = [
    "dom_id", "dom_name", "ftp_user", "ftp_pass", "cl_id", "cname", "pname", "email",
];

fn boolean(element: &Element) -> Result<bool, SystemError> {
    match element.trimmed() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(schema(format!("<{}> is not a boolean", element.name))),
    }
}

fn create_request(operation: &Element) -> Result<Op, SystemError> {
    let names: Vec<&str> = operation.children.iter().map(|c| c.name.as_str()).collect();
    if !matches!(
        names.as_slice(),
        ["owner", "properties"] | ["owner", "properties", "url-components"]
    ) {
        return Err(schema(format!(
            "<create-custombutton> holds <owner>, <properties> and optionally <url-components>, in \
             this order (found {names:?})"
        )));
    }
    let owner = owner(&operation.children[0])?;
    let mut props = ButtonProps::default();
    let mut last = None;
    for prop in &operation.children[1].children {
        let Some(at) = PROPERTY_ORDER.iter().position(|p| *p == prop.name) else {
            return Err(schema(format!(
                "element <{}> is not expected in <properties>",
                prop.name
            )));
        };
        if last.is_some_and(|last| at <= last) {
            return Err(schema(format!(
                "element <{}> is not expected here: properties go in schema order",
                prop.name
            )));
        }
        last = Some(at);
        let text = prop.text.clone();
        match prop.name.as_str() {
            "sort_key" => {
                props.sort_key = Some(
                    prop.trimmed()
                        .parse()
                        .map_err(|_| schema("<sort_key> is not an integer"))?,
                );
            }
            "conhelp" => props.conhelp = Some(text),
            "file" => props.file = Some(text),
            "public" => props.public = Some(boolean(prop)?),
            "internal" => props.internal = Some(boolean(prop)?),
            "noframe" => props.noframe = Some(boolean(prop)?),
            "place" => props.place = prop.trimmed().to_owned(),
            "url" => props.url = text,
            _ => props.text = text,
        }
    }
    for required in ["place", "url", "text"] {
        if operation.children[1].child(required).is_none() {
            return Err(schema(format!("<properties> misses <{required}>")));
        }
    }
    let mut components = Vec::new();
    if let Some(flags) = operation.children.get(2) {
        for flag in &flags.children {
            if !URL_COMPONENTS.contains(&flag.name.as_str()) {
                return Err(schema(format!(
                    "element <{}> is not expected in <url-components>",
                    flag.name
                )));
            }
            if boolean(flag)? {
                components.push(flag.name.clone());
            }
        }
    }
    Ok(Op::ButtonCreate(owner, props, components))
}

fn button_filter(operation: &Element) -> Result<ButtonFilter, SystemError> {
    only(operation, &["filter"])?;
    let filter = operation
        .child("filter")
        .ok_or_else(|| schema(format!("<{}> needs a <filter>", operation.name)))?;
    let Some(first) = filter.children.first() else {
        return Ok(ButtonFilter::All);
    };
    if filter.children.iter().any(|c| c.name != first.name) {
        return Err(schema("a filter takes values of one kind only"));
    }
    match first.name.as_str() {
        "custombutton-id" => Ok(ButtonFilter::Ids(
            filter
                .children
                .iter()
                .map(|c| c.trimmed().to_owned())
                .collect(),
        )),
        "owner" => Ok(ButtonFilter::Owners(
            filter
                .children
                .iter()
                .map(owner)
                .collect::<Result<_, _>>()?,
        )),
        other => Err(schema(format!(
            "element <{other}> is not expected in <filter>"
        ))),
    }
}

fn leaf(out: &mut String, name: &str, value: &str) {
    let _ = write!(out, "<{name}>{}</{name}>", xml::escape(value));
}

fn error_result(out: &mut String, code: u32, text: &str, extra: &[(&str, &str)]) {
    out.push_str("<result><status>error</status>");
    leaf(out, "errcode", &code.to_string());
    leaf(out, "errtext", text);
    for (name, value) in extra {
        leaf(out, name, value);
    }
    out.push_str("</result>");
}

fn owner_xml(out: &mut String, owner: Owner) {
    out.push_str("<owner>");
    match owner {
        Owner::Admin => out.push_str("<admin/>"),
        Owner::Customer(id) => leaf(out, "customer-id", &id.to_string()),
        Owner::Reseller(id) => leaf(out, "reseller-id", &id.to_string()),
    }
    out.push_str("</owner>");
}

fn run(state: &mut PleskState, op: &Op, out: &mut String) {
    match op {
        Op::ServerProtos => {
            out.push_str("<result><status>ok</status><protos>");
            for proto in &state.protos {
                leaf(out, "proto", proto);
            }
            out.push_str("</protos></result>");
        }
        Op::ServerGet { gen_info, stat } => {
            out.push_str("<result><status>ok</status>");
            if *gen_info {
                out.push_str("<gen_info>");
                leaf(out, "server_name", "plesk-sim.example.test");
                leaf(out, "server_guid", "00000000-0000-4000-8000-000000000000");
                leaf(out, "mode", "standard");
                out.push_str("</gen_info>");
            }
            if *stat {
                out.push_str("<stat><version>");
                leaf(out, "plesk_name", "psa");
                leaf(out, "plesk_version", &state.plesk_version);
                leaf(out, "plesk_os", "Ubuntu");
                leaf(out, "plesk_os_version", "22.04");
                leaf(out, "plesk_build", "sim");
                leaf(out, "os_release", "22.04");
                out.push_str("</version></stat>");
            }
            out.push_str("</result>");
        }
        Op::CustomerGet { filter, gen_info } => {
            let customers: Vec<_> = state.customers.values().cloned().collect();
            let matches = |kind: &str, value: &str, c: &crate::state::Customer| match kind {
                "id" => c.id.to_string() == value,
                "login" => c.login == value,
                "guid" => c.guid == value,
                // Every simulated customer belongs to the administrator.
                "owner-login" => value == state.admin_login,
                _ => false,
            };
            let write = |out: &mut String, c: &crate::state::Customer, filter_id: Option<&str>| {
                out.push_str("<result><status>ok</status>");
                if let Some(f) = filter_id {
                    leaf(out, "filter-id", f);
                }
                leaf(out, "id", &c.id.to_string());
                if *gen_info {
                    out.push_str("<data><gen_info>");
                    leaf(out, "cr_date", "2024-01-01");
                    leaf(out, "cname", "");
                    leaf(out, "pname", &c.pname);
                    leaf(out, "login", &c.login);
                    leaf(out, "status", &c.status.to_string());
                    leaf(out, "email", &c.email);
                    leaf(out, "guid", &c.guid);
                    out.push_str("</gen_info></data>");
                }
                out.push_str("</result>");
            };
            match filter {
                Filter::All => customers.iter().for_each(|c| write(out, c, None)),
                Filter::By(kind, values) => {
                    for value in values {
                        let found: Vec<_> = customers
                            .iter()
                            .filter(|c| matches(kind, value, c))
                            .collect();
                        if found.is_empty() {
                            error_result(
                                out,
                                codes::NOT_FOUND,
                                "customer does not exist",
                                &[("filter-id", value)],
                            );
                        }
                        for c in found {
                            write(out, c, Some(value));
                        }
                    }
                }
            }
        }
        Op::WebspaceGet { filter, gen_info } => {
            let subscriptions: Vec<_> = state.subscriptions.values().cloned().collect();
            let login_of = |id: u32| state.customers.get(&id).map(|c| c.login.clone());
            let matches = |kind: &str, value: &str, s: &crate::state::Subscription| match kind {
                "id" => s.id.to_string() == value,
                "name" => s.name == value,
                "owner-id" => s.owner_id.to_string() == value,
                "owner-login" => login_of(s.owner_id).as_deref() == Some(value),
                _ => false,
            };
            let write =
                |out: &mut String, s: &crate::state::Subscription, filter_id: Option<&str>| {
                    out.push_str("<result><status>ok</status>");
                    if let Some(f) = filter_id {
                        leaf(out, "filter-id", f);
                    }
                    leaf(out, "id", &s.id.to_string());
                    if *gen_info {
                        out.push_str("<data><gen_info>");
                        leaf(out, "cr_date", "2024-01-01");
                        leaf(out, "name", &s.name);
                        leaf(out, "ascii-name", &s.name);
                        leaf(out, "status", &s.status.to_string());
                        leaf(out, "real_size", "0");
                        leaf(out, "owner-id", &s.owner_id.to_string());
                        leaf(out, "htype", "vrt_hst");
                        leaf(
                            out,
                            "guid",
                            &format!("10000000-0000-4000-8000-{:012x}", s.id),
                        );
                        out.push_str("</gen_info></data>");
                    }
                    out.push_str("</result>");
                };
            match filter {
                Filter::All => subscriptions.iter().for_each(|s| write(out, s, None)),
                Filter::By(kind, values) => {
                    for value in values {
                        let found: Vec<_> = subscriptions
                            .iter()
                            .filter(|s| matches(kind, value, s))
                            .collect();
                        if found.is_empty() {
                            error_result(
                                out,
                                codes::NOT_FOUND,
                                "domain does not exist",
                                &[("filter-id", value)],
                            );
                        }
                        for s in found {
                            write(out, s, Some(value));
                        }
                    }
                }
            }
        }
        Op::ButtonCreate(owner, props, components) => {
            if !state.owner_exists(*owner) {
                error_result(out, codes::OWNER_NOT_FOUND, "Owner not found.", &[]);
                return;
            }
            const PLACES: [&str; 8] = [
                "client",
                "domain",
                "navigation",
                "admin",
                "admin-settings",
                "reseller",
                "reseller-settings",
                "domain-properties",
            ];
            if !PLACES.contains(&props.place.as_str()) {
                error_result(
                    out,
                    codes::INVALID_VALUE,
                    &format!("Invalid value of place: {}", props.place),
                    &[],
                );
                return;
            }
            let id = state.add_button(*owner, props.clone(), components.clone());
            out.push_str("<result><status>ok</status>");
            leaf(out, "id", &id.to_string());
            out.push_str("</result>");
        }
        Op::ButtonGet(filter) | Op::ButtonDelete(filter) => {
            let delete = matches!(op, Op::ButtonDelete(_));
            let mut selected = Vec::new();
            match filter {
                ButtonFilter::All => selected.extend(state.buttons.keys().copied()),
                ButtonFilter::Owners(owners) => {
                    for owner in owners {
                        if !state.owner_exists(*owner) {
                            error_result(out, codes::OWNER_NOT_FOUND, "Owner not found.", &[]);
                            continue;
                        }
                        selected.extend(
                            state
                                .buttons
                                .values()
                                .filter(|b| b.owner == *owner)
                                .map(|b| b.id),
                        );
                    }
                }
                ButtonFilter::Ids(ids) => {
                    for raw in ids {
                        match raw
                            .parse::<u32>()
                            .ok()
                            .filter(|id| state.buttons.contains_key(id))
                        {
                            Some(id) => selected.push(id),
                            None => error_result(
                                out,
                                codes::NOT_FOUND,
                                "Custom button does not exist.",
                                &[("id", raw)],
                            ),
                        }
                    }
                }
            }
            for id in selected {
                let Some(button) = (if delete {
                    state.buttons.remove(&id)
                } else {
                    state.buttons.get(&id).cloned()
                }) else {
                    continue;
                };
                out.push_str("<result><status>ok</status>");
                leaf(out, "id", &id.to_string());
                if !delete {
                    owner_xml(out, button.owner);
                    out.push_str("<properties>");
                    let p = &button.props;
                    if let Some(v) = p.sort_key {
                        leaf(out, "sort_key", &v.to_string());
                    }
                    if let Some(v) = &p.conhelp {
                        leaf(out, "conhelp", v);
                    }
                    if let Some(v) = &p.file {
                        leaf(out, "file", v);
                    }
                    for (name, v) in [
                        ("public", p.public),
                        ("internal", p.internal),
                        ("noframe", p.noframe),
                    ] {
                        if let Some(v) = v {
                            leaf(out, name, if v { "true" } else { "false" });
                        }
                    }
                    leaf(out, "place", &p.place);
                    leaf(out, "url", &p.url);
                    leaf(out, "text", &p.text);
                    out.push_str("</properties>");
                    if !button.url_components.is_empty() {
                        out.push_str("<url-components>");
                        for flag in &button.url_components {
                            leaf(out, flag, "true");
                        }
                        out.push_str("</url-components>");
                    }
                }
                out.push_str("</result>");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PleskConfig;

    fn admin() -> Credentials {
        Credentials::Login {
            login: crate::config::DEFAULT_ADMIN_LOGIN.into(),
            password: crate::config::DEFAULT_ADMIN_PASSWORD.into(),
        }
    }

    fn run_packet(state: &mut PleskState, body: &str) -> Result<String, (u32, String)> {
        answer(state, &admin(), body.as_bytes(), |_| {})
    }

    fn create(owner: &str, props: &str) -> String {
        format!(
            "<create-custombutton><owner>{owner}</owner><properties>{props}</properties></create-custombutton>"
        )
    }

    #[test]
    fn checkups_come_before_anything_runs() {
        let mut state = PleskState::new(&PleskConfig::new().sample_customers(1));
        let ok_create = create(
            "<customer-id>1</customer-id>",
            "<place>client</place><url>https://x.test/</url><text>A</text>",
        );
        let wrong = Credentials::Login {
            login: "admin".into(),
            password: "no".into(),
        };
        let err = answer(&mut state, &wrong, b"<packet/>", |_| {}).unwrap_err();
        assert_eq!(err.0, codes::AUTH);
        assert!(
            err.1
                .contains("<system><status>error</status><errcode>1001</errcode>"),
            "{}",
            err.1
        );
        let err = answer(
            &mut state,
            &Credentials::Key("k".into()),
            b"<packet/>",
            |_| {},
        )
        .unwrap_err();
        assert_eq!(err.0, codes::KEY);
        for (body, code) in [
            (
                format!(r#"<packet version="1.6.3.5"><ui>{ok_create}</ui><bogus/></packet>"#),
                codes::PARSE,
            ),
            (
                format!(r#"<packet version="9.9"><ui>{ok_create}</ui></packet>"#),
                codes::VERSION,
            ),
            (
                format!(r#"<packet version="1.6.3.0"><ui>{ok_create}</ui></packet>"#),
                codes::PARSE,
            ),
            (
                format!(r#"<!DOCTYPE packet><packet><ui>{ok_create}</ui></packet>"#),
                codes::PARSE,
            ),
            (
                format!(r#"<packet><ui>{ok_create}<update-custombutton/></ui></packet>"#),
                codes::PARSE,
            ),
            (
                format!(
                    "<packet><ui>{ok_create}{}</ui></packet>",
                    create(
                        "<customer-id>1</customer-id>",
                        "<url>u</url><place>client</place><text>A</text>"
                    )
                ),
                codes::PARSE,
            ),
            (
                format!(
                    "<packet><ui>{ok_create}{}</ui></packet>",
                    create(
                        "<customer-id>1</customer-id>",
                        "<place>client</place><url>u</url>"
                    )
                ),
                codes::PARSE,
            ),
        ] {
            let err = run_packet(&mut state, &body).unwrap_err();
            assert_eq!(err.0, code, "{body}: {}", err.1);
            assert!(state.buttons.is_empty(), "{body}");
        }
    }

    #[test]
    fn versions_prefixes_and_latest() {
        let state = PleskState::new(&PleskConfig::new());
        assert_eq!(
            accepted_version(&state, "1.6.3.5").as_deref(),
            Some("1.6.3.5")
        );
        assert_eq!(accepted_version(&state, "1.6").as_deref(), Some("1.6.9.1"));
        assert_eq!(
            accepted_version(&state, "1.6.5").as_deref(),
            Some("1.6.5.0")
        );
        assert_eq!(accepted_version(&state, "1.7"), None);
        assert_eq!(accepted_version(&state, "x"), None);
        assert!(version_at_least("1.6.9.1", "1.6.3.5"));
        assert!(!version_at_least("1.6.3.4", "1.6.3.5"));
    }

    #[test]
    fn operations_answer_each_their_own_results() {
        let mut state = PleskState::new(&PleskConfig::new().sample_customers(2));
        let body = format!(
            r#"<packet version="1.6.3.5"><customer><get><filter><login>user2</login><login>nobody</login></filter><dataset><gen_info/></dataset></get></customer><ui>{}{}{}</ui></packet>"#,
            create(
                "<customer-id>1</customer-id>",
                "<sort_key>3</sort_key><conhelp>c</conhelp><public>false</public><internal>false</internal><place>client</place><url>https://x.test/a?b=1&amp;c=2</url><text>A &amp; B</text>"
            ),
            create(
                "<customer-id>99</customer-id>",
                "<place>client</place><url>u</url><text>t</text>"
            ),
            create(
                "<customer-id>2</customer-id>",
                "<place>nowhere</place><url>u</url><text>t</text>"
            ),
        );
        let out = run_packet(&mut state, &body).unwrap();
        assert!(
            out.contains("<filter-id>user2</filter-id><id>2</id>"),
            "{out}"
        );
        assert!(out.contains("<errcode>1013</errcode><errtext>customer does not exist</errtext><filter-id>nobody</filter-id>"), "{out}");
        assert!(
            out.contains("<result><status>ok</status><id>1</id></result>"),
            "{out}"
        );
        assert!(out.contains("<errcode>1015</errcode>"), "{out}");
        assert!(out.contains("<errcode>1019</errcode>"), "{out}");
        assert_eq!(state.buttons.len(), 1);
        assert_eq!(state.buttons[&1].props.url, "https://x.test/a?b=1&c=2");
        assert_eq!(state.buttons[&1].props.text, "A & B");

        let out = run_packet(
            &mut state,
            "<packet><ui><get-custombutton><filter><owner><customer-id>1</customer-id></owner></filter></get-custombutton><delete-custombutton><filter><custombutton-id>1</custombutton-id><custombutton-id>7</custombutton-id></filter></delete-custombutton></ui></packet>",
        )
        .unwrap();
        assert!(out.contains("<get-custombutton><result><status>ok</status><id>1</id><owner><customer-id>1</customer-id></owner><properties><sort_key>3</sort_key><conhelp>c</conhelp><public>false</public><internal>false</internal><place>client</place><url>https://x.test/a?b=1&amp;c=2</url>"), "{out}");
        assert!(out.contains("<delete-custombutton><result><status>error</status><errcode>1013</errcode><errtext>Custom button does not exist.</errtext><id>7</id></result><result><status>ok</status><id>1</id></result></delete-custombutton>"), "{out}");
        assert!(state.buttons.is_empty());
    }
}
