//! The `http` import: outbound HTTP bound to the one server a call works on, limited to the
//! requests the plugin declared.
//!
//! Two checks run on every request, in order, before anything is sent:
//! - the **grant**: the server's scheme, host and port, matched on the parsed URL the request
//!   will really go to, never on a header the guest wrote;
//! - the **policy**: the plugin's declared [`AllowedRequest`]s, matched on method and exact path,
//!   and for a tunnel on every call inside, read from the request exactly as the panel will read
//!   it: for WHM `batch` every `command` of the query string and the form body, for an XML packet
//!   every `operator/operation` of the body ([`packet_operations`]).
//!
//! Either failing ends the call with a capability violation. Only a few harmless guest headers
//! pass (`Accept`, `Accept-Language`, `Content-Type`, `User-Agent`); the server's own credentials
//! are added here, as the plugin's description declares (`panel-auth`: e.g.
//! `Authorization: whm <user>:<token>` for WHM, `HTTP_AUTH_LOGIN` and `HTTP_AUTH_PASSWD` headers
//! for an XML packet API), so the token never enters the sandbox.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::Semaphore;

use super::bindings::http;
use crate::adapter::{AllowedRequest, HttpMethod, PanelAuth, ServerTarget, Tunnel};

/// Limits of outbound HTTP.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Time to establish a connection.
    pub connect_timeout: Duration,
    /// Time for a whole request, answer included.
    pub request_timeout: Duration,
    /// Largest answer body accepted, in bytes.
    pub max_response_bytes: u64,
    /// Requests in flight to one panel server at once, over all calls (`None`, the default: no
    /// limit). With one, a server sees its requests one after another however many batches the
    /// sync engine prepares for it at once: the host's own work on the next batch overlaps the
    /// panel's answer to this one, and the panel carries no more load than with a single batch
    /// (the sync benchmark runs so). Not the default yet: under load a sync test with faults and
    /// a dead server once failed to finish with it on, not yet explained.
    pub max_in_flight_per_server: Option<usize>,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            max_response_bytes: 16 * 1024 * 1024,
            max_in_flight_per_server: None,
        }
    }
}

/// Build the one HTTP client the runtime shares between calls.
pub fn client(limits: &HttpLimits) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(limits.connect_timeout)
        .timeout(limits.request_timeout)
        // Redirects could lead outside the grant: the plugin sees them as answers instead.
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .expect("the HTTP client configuration is static and valid")
}

/// A panel server as grants and gates know it: scheme, lower-case host, port.
pub type ServerKey = (&'static str, String, u16);

/// What a call may reach: exactly one server.
#[derive(Clone)]
pub struct Grant {
    scheme: &'static str,
    host: String,
    port: u16,
    /// The credential headers (lower-case name, value): they carry the server's API token.
    credentials: Vec<(String, String)>,
    /// The server's share of [`HttpLimits::max_in_flight_per_server`].
    gate: Option<Arc<Semaphore>>,
}

impl std::fmt::Debug for Grant {
    /// Never the `Authorization` value: it carries the server's API token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("scheme", &self.scheme)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("credentials", &"***")
            .finish_non_exhaustive()
    }
}

impl Grant {
    /// The grant for one server, its credentials presented as `auth` says.
    pub fn for_server(target: &ServerTarget, auth: &PanelAuth) -> Self {
        Self {
            scheme: target.scheme(),
            host: target.hostname.to_ascii_lowercase(),
            port: target.port,
            credentials: auth.headers(&target.username, target.api_token.expose()),
            gate: None,
        }
    }

    /// The grant, its requests taking turns at `gate` (see
    /// [`HttpLimits::max_in_flight_per_server`]).
    pub fn with_gate(mut self, gate: Option<Arc<Semaphore>>) -> Self {
        self.gate = gate;
        self
    }

    /// The key of the server a grant is for (gates are per server).
    pub fn server_key(target: &ServerTarget) -> ServerKey {
        (
            target.scheme(),
            target.hostname.to_ascii_lowercase(),
            target.port,
        )
    }

    /// Check a URL against the grant. `Err` names the violation.
    fn check(&self, url: &url::Url) -> Result<(), String> {
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = url.port_or_known_default();
        if url.scheme() != self.scheme
            || host != self.host.trim_start_matches('[').trim_end_matches(']')
            || port != Some(self.port)
        {
            return Err(format!(
                "request to {}://{}:{} is outside the grant {}://{}:{}",
                url.scheme(),
                host,
                port.map_or_else(|| "?".into(), |p| p.to_string()),
                self.scheme,
                self.host,
                self.port
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("request URL carries credentials".into());
        }
        Ok(())
    }
}

/// The only headers a guest may set (lower case). Everything else is dropped: credentials,
/// `Host`, hop-by-hop headers, and anything a server or proxy might route by (such as
/// `X-Original-URL`), which would let a request reach another path than the policy checked.
const PASSED_HEADERS: &[&str] = &["accept", "accept-language", "content-type", "user-agent"];

/// Most requests one plugin may declare.
const MAX_ALLOWED_REQUESTS: usize = 256;
/// Most calls one tunnel may list.
const MAX_TUNNEL_CALLS: usize = 1024;
/// Longest declared path, and longest tunnelled call name.
const MAX_PATH: usize = 1024;
const MAX_CALL_NAME: usize = 128;
/// The form content type the host sends WHM `batch` requests with.
const FORM: &str = "application/x-www-form-urlencoded";
/// The content type the host sends XML packets with.
const XML: &str = "text/xml";

/// What kind of body a checked request sends, which sets its content type and credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sends {
    /// Whatever the guest wrote (its `Content-Type` passes).
    Plain,
    /// A strict form ([`FORM`]).
    Form,
    /// An XML packet ([`XML`]).
    Xml,
}

impl Sends {
    fn content_type(self) -> Option<&'static str> {
        match self {
            Sends::Plain => None,
            Sends::Form => Some(FORM),
            Sends::Xml => Some(XML),
        }
    }
}

/// What a plugin may ask of its panel: its declared requests, checked and compiled for matching.
#[derive(Debug, Default)]
pub struct Policy {
    rules: HashMap<(HttpMethod, String), Rule>,
}

#[derive(Debug)]
enum Rule {
    /// The path names the one call.
    Plain,
    /// WHM API 1 `batch`: these functions may be named by `command` fields.
    WhmBatch(HashSet<String>),
    /// An XML packet: these `operator/operation`s may be in it.
    XmlPacket(HashSet<String>),
}

/// At most the first 100 bytes of `s` (at a character boundary): the plugin's own text in an
/// error message, kept short whatever it sent.
fn cut(s: &str) -> &str {
    let mut end = s.len().min(100);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Whether a declared path is in the one spelling the matcher compares: `/`, or `/`-separated
/// non-empty segments of letters, digits and `-._~`, none `.` or `..`.
fn plain_path(path: &str) -> bool {
    path == "/"
        || (path.starts_with('/')
            && path[1..].split('/').all(|segment| {
                !segment.is_empty()
                    && segment != "."
                    && segment != ".."
                    && segment
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
            }))
}

impl Policy {
    /// Check a plugin's declaration and compile it. `Err` says what is wrong, for the load error.
    pub fn new(declared: &[AllowedRequest]) -> Result<Self, String> {
        if declared.len() > MAX_ALLOWED_REQUESTS {
            return Err(format!(
                "the plugin declares {} allowed requests; at most {MAX_ALLOWED_REQUESTS} are accepted",
                declared.len()
            ));
        }
        let mut rules = HashMap::new();
        for request in declared {
            let what = format!(
                "allowed request {} {:?}",
                request.method.as_str(),
                cut(&request.path)
            );
            if request.path.len() > MAX_PATH || !plain_path(&request.path) {
                return Err(format!(
                    "{what}: the path must start with '/' and hold only non-empty segments of \
                     letters, digits and '-._~' (no '.' or '..', no query string, no escapes)"
                ));
            }
            let rule = match &request.calls {
                None => Rule::Plain,
                Some(Tunnel::WhmBatch(functions)) => {
                    if functions.is_empty() || functions.len() > MAX_TUNNEL_CALLS {
                        return Err(format!(
                            "{what}: a whm-batch tunnel lists 1 to {MAX_TUNNEL_CALLS} functions"
                        ));
                    }
                    let mut set = HashSet::new();
                    for function in functions {
                        let name_ok = !function.is_empty()
                            && function.len() <= MAX_CALL_NAME
                            && function
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
                        if !name_ok {
                            return Err(format!(
                                "{what}: batch function {:?} must be 1-{MAX_CALL_NAME} letters, \
                                 digits and '_'",
                                cut(function)
                            ));
                        }
                        if function == "batch" {
                            return Err(format!("{what}: a batch cannot run `batch` inside it"));
                        }
                        if !set.insert(function.clone()) {
                            return Err(format!("{what}: batch function {function:?} is repeated"));
                        }
                    }
                    Rule::WhmBatch(set)
                }
                Some(Tunnel::XmlPacket(operations)) => {
                    if operations.is_empty() || operations.len() > MAX_TUNNEL_CALLS {
                        return Err(format!(
                            "{what}: an xml-packet tunnel lists 1 to {MAX_TUNNEL_CALLS} operations"
                        ));
                    }
                    let mut set = HashSet::new();
                    for operation in operations {
                        let plain = operation
                            .split_once('/')
                            .is_some_and(|(operator, name)| xml_name(operator) && xml_name(name));
                        if !plain {
                            return Err(format!(
                                "{what}: packet operation {:?} must be `operator/operation`, \
                                 each 1-{MAX_CALL_NAME} letters, digits, '-' and '_'",
                                cut(operation)
                            ));
                        }
                        if !set.insert(operation.clone()) {
                            return Err(format!(
                                "{what}: packet operation {operation:?} is repeated"
                            ));
                        }
                    }
                    Rule::XmlPacket(set)
                }
            };
            if rules
                .insert((request.method, request.path.clone()), rule)
                .is_some()
            {
                return Err(format!("{what} is declared twice"));
            }
        }
        Ok(Self { rules })
    }

    /// Check one request. `Ok` says what it sends (the content type the host sends it with,
    /// replacing the guest's, and its credential headers); `Err` names the violation.
    fn check(&self, method: HttpMethod, url: &url::Url, body: &[u8]) -> Result<Sends, String> {
        let path = url.path();
        match self.rules.get(&(method, path.to_owned())) {
            None => Err(format!(
                "{} {} is not among the plugin's allowed requests",
                method.as_str(),
                cut(path)
            )),
            Some(Rule::Plain) => Ok(Sends::Plain),
            Some(Rule::WhmBatch(allowed)) => {
                if let Some(query) = url.query() {
                    check_batch_form("query string", query.as_bytes(), allowed)?;
                }
                check_batch_form("body", body, allowed)?;
                Ok(Sends::Form)
            }
            Some(Rule::XmlPacket(allowed)) => {
                if url.query().is_some() {
                    return Err("an XML packet request carries no query string".into());
                }
                for operation in packet_operations(body)? {
                    if !allowed.contains(&operation) {
                        return Err(format!(
                            "packet operation {:?} is not among the plugin's allowed operations",
                            cut(&operation)
                        ));
                    }
                }
                Ok(Sends::Xml)
            }
        }
    }
}

/// Whether an XML element name is one the packet check accepts as an operator or operation:
/// 1 to [`MAX_CALL_NAME`] ASCII letters, digits, `-` and `_` (no namespace prefix, which a panel
/// might resolve differently).
fn xml_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CALL_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Every operation of an XML packet, as `operator/operation`, in order: the root must be
/// `<packet>`, each of its children is an operator and each child of an operator an operation.
/// Refused (`Err` says why): a body that is not one well-formed UTF-8 document, a DOCTYPE (and
/// so any entity but the predefined ones), processing instructions, another root, text
/// directly inside the packet or an operator, and names that are not plain.
pub fn packet_operations(body: &[u8]) -> Result<Vec<String>, String> {
    let root = panelink_xml::parse(body).map_err(|e| match e {
        panelink_xml::ParseError::Doctype | panelink_xml::ParseError::Entity(_) => {
            format!("the XML packet is refused: {e}")
        }
        panelink_xml::ParseError::Malformed(why) => {
            format!("the body is not a well-formed XML packet: {}", cut(&why))
        }
    })?;
    if root.name != "packet" {
        return Err(format!(
            "the XML body's root is <{}>, not <packet>",
            cut(&root.name)
        ));
    }
    if !root.text.trim().is_empty() {
        return Err("the XML packet holds text outside its operators".into());
    }
    let mut operations = Vec::new();
    for operator in &root.children {
        if !xml_name(&operator.name) {
            return Err(format!(
                "packet operator {:?} is not a plain name",
                cut(&operator.name)
            ));
        }
        if !operator.text.trim().is_empty() {
            return Err(format!(
                "packet operator <{}> holds text outside its operations",
                operator.name
            ));
        }
        for operation in &operator.children {
            if !xml_name(&operation.name) {
                return Err(format!(
                    "packet operation {:?} is not a plain name",
                    cut(&operation.name)
                ));
            }
            operations.push(format!("{}/{}", operator.name, operation.name));
        }
    }
    Ok(operations)
}

/// Bytes a strict form may hold: RFC 3986's unreserved characters, `%` (of an `%XX` escape),
/// `+` (a space), `=` and `&`. Without `;` (which some servers also split on) or anything else,
/// every reader splits the form into the same fields.
const STRICT_FORM: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(c, b'-' | b'.' | b'_' | b'~' | b'%' | b'+' | b'=' | b'&');
        b += 1;
    }
    table
};

/// Percent-decodes `input` (`+` is a space) into `out`, stopping after `limit` bytes or at the
/// first decoded `stop` byte. A `%` without two hex digits after it stays a `%`, which no
/// plain name or allowed function holds: what readers disagree about is refused.
fn decode_until(input: &[u8], stop: Option<u8>, limit: usize, out: &mut Vec<u8>) {
    fn hex(b: u8) -> Option<u8> {
        char::from(b).to_digit(16).map(|d| d as u8)
    }
    out.clear();
    let mut i = 0;
    while i < input.len() && out.len() <= limit {
        let escaped = match input[i..] {
            [b'%', hi, lo, ..] => hex(hi).zip(hex(lo)).map(|(hi, lo)| hi << 4 | lo),
            _ => None,
        };
        let b = match (escaped, input[i]) {
            (Some(b), _) => {
                i += 3;
                b
            }
            (None, b'+') => {
                i += 1;
                b' '
            }
            (None, b) => {
                i += 1;
                b
            }
        };
        if Some(b) == stop {
            return;
        }
        out.push(b);
    }
}

/// Check every `command` field of a WHM `batch` form against the allowed functions: the form
/// must be strict (see [`STRICT_FORM`]), every field name plain, and every command's function
/// (its value up to the first `?`, decoded) one of `allowed`. One pass over the bytes; only
/// names and functions are decoded.
fn check_batch_form(where_: &str, form: &[u8], allowed: &HashSet<String>) -> Result<(), String> {
    let mut scratch = Vec::new();
    let mut check_field = |field: &[u8]| -> Result<(), String> {
        if field.is_empty() {
            return Ok(());
        }
        let (raw_name, raw_value) = match field.iter().position(|&b| b == b'=') {
            Some(eq) => (&field[..eq], &field[eq + 1..]),
            None => (field, &[][..]),
        };
        decode_until(raw_name, None, MAX_CALL_NAME, &mut scratch);
        let plain_name = !scratch.is_empty()
            && scratch.len() <= MAX_CALL_NAME
            && scratch
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !plain_name {
            return Err(format!(
                "the batch {where_} has a field named {:?}, not a plain name",
                String::from_utf8_lossy(&scratch)
            ));
        }
        if scratch != b"command" {
            return Ok(());
        }
        decode_until(raw_value, Some(b'?'), MAX_CALL_NAME, &mut scratch);
        let allowed_function = std::str::from_utf8(&scratch)
            .ok()
            .filter(|f| f.len() <= MAX_CALL_NAME)
            .is_some_and(|f| allowed.contains(f));
        if !allowed_function {
            return Err(format!(
                "batch command {:?} is not among the plugin's allowed batch functions",
                String::from_utf8_lossy(&scratch)
            ));
        }
        Ok(())
    };
    if let Some(at) = first_not_strict(form) {
        return Err(format!(
            "the batch {where_} is not strictly form-encoded (byte {:#04x} at {at})",
            form[at]
        ));
    }
    let mut field_start = 0;
    for at in memchr::memchr_iter(b'&', form) {
        check_field(&form[field_start..at])?;
        field_start = at + 1;
    }
    check_field(&form[field_start..])
}

/// The position of the first byte of `form` that [`STRICT_FORM`] refuses. A sync batch's body
/// is up to a few hundred KiB, so this is checked 32 bytes at a time with comparisons the
/// compiler turns into vector instructions; only a chunk that fails is looked at byte by byte.
fn first_not_strict(form: &[u8]) -> Option<usize> {
    #[inline(always)]
    fn strict(c: u8) -> bool {
        // One unsigned comparison per range (`x - lo < len`), which vectorises.
        ((c | 0x20).wrapping_sub(b'a') < 26)
            | (c.wrapping_sub(b'0') < 10)
            | (c == b'-')
            | (c == b'.')
            | (c == b'_')
            | (c == b'~')
            | (c == b'%')
            | (c == b'+')
            | (c == b'=')
            | (c == b'&')
    }
    const CHUNK: usize = 32;
    let chunks = form.chunks_exact(CHUNK);
    let tail = chunks.remainder();
    for (i, chunk) in chunks.enumerate() {
        if !chunk.iter().fold(true, |ok, &c| ok & strict(c)) {
            let at = chunk.iter().position(|&c| !STRICT_FORM[usize::from(c)]);
            return at.map(|at| i * CHUNK + at);
        }
    }
    tail.iter()
        .position(|&c| !STRICT_FORM[usize::from(c)])
        .map(|at| form.len() - tail.len() + at)
}

/// The outcome of one guest request: an answer for the guest, or a violation that ends the call.
pub enum Sent {
    /// Give this to the guest.
    Answer(Result<http::Response, http::Error>),
    /// The guest asked for something outside its grant.
    Violation(String),
}

/// Send one guest request within `grant` and `policy`.
pub async fn send(
    client: &reqwest::Client,
    limits: &HttpLimits,
    grant: Option<&Grant>,
    policy: &Policy,
    req: http::Request,
) -> Sent {
    let Some(grant) = grant else {
        return Sent::Violation("this call has no outbound HTTP grant".into());
    };
    let url = match url::Url::parse(&req.url) {
        Ok(url) => url,
        Err(e) => return Sent::Answer(Err(http::Error::Invalid(format!("bad URL: {e}")))),
    };
    if let Err(violation) = grant.check(&url) {
        return Sent::Violation(violation);
    }
    let sends = match policy.check(req.method.into(), &url, &req.body) {
        Ok(sends) => sends,
        Err(violation) => return Sent::Violation(violation),
    };
    let content_type = sends.content_type();
    // Held until the answer is read whole: the request is in flight until then. The semaphore
    // is never closed.
    let _turn = match &grant.gate {
        Some(gate) => gate.acquire().await.ok(),
        None => None,
    };
    let method = match req.method {
        http::Method::Get => reqwest::Method::GET,
        http::Method::Post => reqwest::Method::POST,
    };
    let mut builder = client.request(method, url);
    for (name, value) in &req.headers {
        let name = name.to_ascii_lowercase();
        if !PASSED_HEADERS.contains(&name.as_str())
            || (content_type.is_some() && name == "content-type")
        {
            continue;
        }
        builder = builder.header(name, value);
    }
    if let Some(content_type) = content_type {
        builder = builder.header(reqwest::header::CONTENT_TYPE, content_type);
    }
    for (name, value) in &grant.credentials {
        builder = builder.header(name.as_str(), value.as_str());
    }
    if !req.body.is_empty() {
        builder = builder.body(req.body);
    }
    let response = match builder.send().await {
        Ok(r) => r,
        Err(e) => return Sent::Answer(Err(transport_error(&e))),
    };
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    if let Some(len) = response.content_length()
        && len > limits.max_response_bytes
    {
        return Sent::Answer(Err(http::Error::TooLarge(len)));
    }
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => {
                body.extend_from_slice(&chunk);
                if body.len() as u64 > limits.max_response_bytes {
                    return Sent::Answer(Err(http::Error::TooLarge(body.len() as u64)));
                }
            }
            Err(e) => return Sent::Answer(Err(transport_error(&e))),
        }
    }
    Sent::Answer(Ok(http::Response {
        status,
        headers,
        body,
    }))
}

/// Map a reqwest failure to the contract's error, without the URL (it may carry secrets in a
/// query string) and without the server's credentials.
fn transport_error(e: &reqwest::Error) -> http::Error {
    if e.is_timeout() {
        http::Error::Timeout
    } else if e.is_connect() {
        http::Error::Connection("could not connect to the server".into())
    } else if e.is_builder() {
        http::Error::Invalid("malformed request".into())
    } else {
        let mut detail = String::from("connection failed");
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            detail = format!("connection failed: {s}");
            source = s.source();
        }
        http::Error::Connection(detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::Secret;

    /// The vectorised strictness check finds exactly the byte the table refuses, for every
    /// byte value, in a chunk, at a chunk's edges and in the tail.
    #[test]
    fn the_fast_strictness_check_agrees_with_the_table() {
        let clean = b"api.version=1&command=create_integration_link%3Fuser%3Dbob".repeat(3);
        assert_eq!(first_not_strict(&clean), None);
        for byte in 0..=255u8 {
            for at in [0, 1, 31, 32, 33, 63, 64, clean.len() - 1] {
                let mut form = clean.clone();
                form[at] = byte;
                let expected = (!STRICT_FORM[usize::from(byte)]).then_some(at);
                assert_eq!(
                    first_not_strict(&form),
                    expected,
                    "byte {byte:#04x} at {at}"
                );
            }
        }
        assert_eq!(first_not_strict(b""), None);
    }

    fn grant() -> Grant {
        Grant::for_server(
            &ServerTarget {
                hostname: "Panel.Example".into(),
                port: 2087,
                secure: true,
                username: "root".into(),
                api_token: Secret::new("tok"),
            },
            &PanelAuth::SchemeUserToken("whm".into()),
        )
    }

    #[test]
    fn a_grant_never_prints_its_token() {
        let printed = format!("{:?}", grant());
        assert!(!printed.contains("tok"), "{printed}");
        assert!(printed.contains("panel.example"), "{printed}");
    }

    #[test]
    fn grant_matches_only_its_server() {
        let g = grant();
        let ok = |u: &str| g.check(&url::Url::parse(u).unwrap()).is_ok();
        assert!(ok("https://panel.example:2087/json-api/applist"));
        assert!(!ok("http://panel.example:2087/json-api/applist"));
        assert!(!ok("https://panel.example:2086/json-api/applist"));
        assert!(!ok("https://panel.example/json-api/applist"));
        assert!(!ok("https://other.example:2087/"));
        assert!(!ok("https://panel.example.evil:2087/"));
        assert!(!ok("https://u:p@panel.example:2087/"));
    }

    fn declared() -> Vec<AllowedRequest> {
        vec![
            AllowedRequest {
                method: HttpMethod::Post,
                path: "/json-api/applist".into(),
                calls: None,
            },
            AllowedRequest {
                method: HttpMethod::Post,
                path: "/json-api/batch".into(),
                calls: Some(Tunnel::WhmBatch(vec![
                    "create_integration_group".into(),
                    "create_integration_link".into(),
                ])),
            },
        ]
    }

    fn check(policy: &Policy, method: HttpMethod, url: &str, body: &str) -> Result<(), String> {
        policy
            .check(method, &url::Url::parse(url).unwrap(), body.as_bytes())
            .map(|_| ())
    }

    #[test]
    fn declarations_are_checked() {
        assert!(Policy::new(&declared()).is_ok());
        assert!(Policy::new(&[]).is_ok());
        let with = |f: &dyn Fn(&mut AllowedRequest)| {
            let mut d = declared();
            f(&mut d[1]);
            Policy::new(&d)
        };
        for path in [
            "",
            "json-api/batch",
            "/json-api//batch",
            "/json-api/../batch",
            "/json-api/./batch",
            "/json-api/batch?x=1",
            "/json-api/%62atch",
            "/json-api/*",
            "/json-api/batch/",
        ] {
            let err = with(&|r| r.path = path.into()).unwrap_err();
            assert!(err.contains("path"), "{path}: {err}");
        }
        assert!(with(&|r| r.path = "/".into()).is_ok());
        for (calls, why) in [
            (vec![], "1 to"),
            (vec!["batch".into()], "inside"),
            (vec!["api token".into()], "letters"),
            (vec!["a".into(), "a".into()], "repeated"),
        ] {
            let err = with(&|r| r.calls = Some(Tunnel::WhmBatch(calls.clone()))).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
        assert!(with(&|r| r.calls = Some(Tunnel::XmlPacket(vec!["ui/get".into()]))).is_ok());
        for (calls, why) in [
            (vec![], "1 to"),
            (vec!["ui".into()], "operator/operation"),
            (vec!["ui/".into()], "operator/operation"),
            (vec!["x:ui/get".into()], "operator/operation"),
            (vec!["ui/get/more".into()], "operator/operation"),
            (vec!["ui/get".into(), "ui/get".into()], "repeated"),
        ] {
            let err = with(&|r| r.calls = Some(Tunnel::XmlPacket(calls.clone()))).unwrap_err();
            assert!(err.contains(why), "{calls:?}: {err}");
        }
        let err = with(&|r| r.path = "/json-api/applist".into()).unwrap_err();
        assert!(err.contains("twice"), "{err}");
        // The same path with another method is another request.
        assert!(
            with(&|r| {
                r.path = "/json-api/applist".into();
                r.method = HttpMethod::Get;
            })
            .is_ok()
        );
    }

    #[test]
    fn only_declared_paths_and_methods_pass() {
        let p = Policy::new(&declared()).unwrap();
        let base = "https://panel.example:2087";
        assert!(
            check(
                &p,
                HttpMethod::Post,
                &format!("{base}/json-api/applist"),
                ""
            )
            .is_ok()
        );
        assert!(
            check(
                &p,
                HttpMethod::Post,
                &format!("{base}/json-api/applist?api.version=1"),
                ""
            )
            .is_ok()
        );
        for (method, path) in [
            (HttpMethod::Get, "/json-api/applist"),
            (HttpMethod::Post, "/json-api/api_token_create"),
            (HttpMethod::Post, "/json-api/APPLIST"),
            (HttpMethod::Post, "/json-api/%61pplist"),
            (HttpMethod::Post, "/json-api/applist/"),
            (HttpMethod::Post, "/cpsess123/json-api/applist"),
            (HttpMethod::Post, "/json-api/applist;x"),
        ] {
            let err = check(&p, method, &format!("{base}{path}"), "").unwrap_err();
            assert!(err.contains("not among"), "{path}: {err}");
        }
        // Dot segments are resolved by the URL parser before matching.
        assert!(
            check(
                &p,
                HttpMethod::Post,
                &format!("{base}/x/../json-api/applist"),
                ""
            )
            .is_ok()
        );
    }

    #[test]
    fn every_batch_command_must_be_declared() {
        let p = Policy::new(&declared()).unwrap();
        let url = "https://panel.example:2087/json-api/batch";
        let group = "command=create_integration_group%3Fuser%3Dbob%26label%3DBilling%2520%2526";
        let ok = |url: &str, body: &str| check(&p, HttpMethod::Post, url, body);
        assert!(
            ok(
                url,
                &format!("api.version=1&{group}&command=create_integration_link")
            )
            .is_ok()
        );
        assert!(ok(url, "api.version=1").is_ok());
        assert!(ok(url, "").is_ok());
        assert_eq!(
            p.check(
                HttpMethod::Post,
                &url::Url::parse(url).unwrap(),
                b"api.version=1"
            ),
            Ok(Sends::Form)
        );
        for (url, body) in [
            (
                url.to_owned(),
                format!("api.version=1&{group}&command=api_token_create"),
            ),
            (
                url.to_owned(),
                "command=api_token_create%3Ftoken_name%3Dx".to_owned(),
            ),
            // Hidden in the query string.
            (
                format!("{url}?command=api_token_create"),
                format!("api.version=1&{group}"),
            ),
            // Escaped name and function: decoded as the panel decodes them.
            (url.to_owned(), "comm%61nd=%61pi_token_create".to_owned()),
            // Spaces are not trimmed away.
            (url.to_owned(), "command=+api_token_create".to_owned()),
            (
                url.to_owned(),
                "command=create_integration_link+".to_owned(),
            ),
            // A batch inside a batch.
            (
                url.to_owned(),
                "command=batch%3Fcommand%3Dapi_token_create".to_owned(),
            ),
            // Over-long names.
            (url.to_owned(), format!("command={}", "a".repeat(300))),
            // A malformed escape is not read as the function it might be.
            (
                url.to_owned(),
                "command=create_integration_lin%6".to_owned(),
            ),
            (
                url.to_owned(),
                "command=create_integration_link%".to_owned(),
            ),
        ] {
            let err = ok(&url, &body).unwrap_err();
            assert!(err.contains("not among"), "{body}: {err}");
        }
        for body in [
            // `;` separates fields for some servers: refused outright.
            "api.version=1;command=api_token_create",
            "command=create_integration_link&x=a b",
            "<packet/>",
        ] {
            let err = ok(url, body).unwrap_err();
            assert!(err.contains("strictly form-encoded"), "{body}: {err}");
        }
        // Malformed escapes in values the panel only passes on are left to it.
        assert!(ok(url, "command=create_integration_link%3Fx%3D%zz&x=%4").is_ok());
        for body in [
            "command%20=api_token_create",
            "command%00=x",
            "%3D=x",
            "=x",
            "comm%6nd=x",
            "command%",
        ] {
            let err = ok(url, body).unwrap_err();
            assert!(err.contains("plain name"), "{body}: {err}");
        }
    }

    fn packet_policy() -> Policy {
        Policy::new(&[AllowedRequest {
            method: HttpMethod::Post,
            path: "/enterprise/control/agent.php".into(),
            calls: Some(Tunnel::XmlPacket(vec![
                "server/get_protos".into(),
                "ui/get-custombutton".into(),
                "ui/create-custombutton".into(),
            ])),
        }])
        .unwrap()
    }

    #[test]
    fn every_packet_operation_must_be_declared() {
        let p = packet_policy();
        let url = "https://panel.example:2087/enterprise/control/agent.php";
        let ok = |body: &str| check(&p, HttpMethod::Post, url, body);
        let create = "<create-custombutton><owner><customer-id>1</customer-id></owner>\
                      <properties><url>https://x/?a=1&amp;b=2</url></properties></create-custombutton>";
        assert!(
            ok(&format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><!-- c --><packet version="1.6.3.5">
               <server><get_protos/></server><ui>{create}<get-custombutton/></ui></packet>"#
            ))
            .is_ok()
        );
        assert!(ok("<packet/>").is_ok());
        assert_eq!(
            p.check(
                HttpMethod::Post,
                &url::Url::parse(url).unwrap(),
                b"<packet/>"
            ),
            Ok(Sends::Xml)
        );
        assert_eq!(
            packet_operations(b"<packet><ui><a/><b>x</b></ui><server><a/></server></packet>"),
            Ok(vec!["ui/a".into(), "ui/b".into(), "server/a".into()])
        );
        for (body, why) in [
            // An undeclared operation, first, last or beside declared ones, or the right
            // operation under another operator.
            (format!("<packet><ui>{create}<delete-custombutton/></ui></packet>"), "not among"),
            ("<packet><secret_key><create/></secret_key></packet>".to_owned(), "not among"),
            ("<packet><server><get_protos/><create_session/></server></packet>".to_owned(), "not among"),
            ("<packet><customer><get-custombutton/></customer></packet>".to_owned(), "not among"),
            // Entities and DTDs: refused outright, declared or not.
            (
                r#"<!DOCTYPE packet [<!ENTITY x "<delete-custombutton/>">]><packet><ui>&x;</ui></packet>"#.to_owned(),
                "DOCTYPE",
            ),
            ("<packet><ui>&x;</ui></packet>".to_owned(), "entity"),
            (
                r#"<!DOCTYPE packet SYSTEM "http://evil.example/x.dtd"><packet/>"#.to_owned(),
                "DOCTYPE",
            ),
            // Unparsable or ambiguous bodies.
            ("".to_owned(), "well-formed"),
            ("api.version=1&command=x".to_owned(), "well-formed"),
            ("<packet><ui></packet>".to_owned(), "well-formed"),
            ("<packet/><packet><ui><delete-custombutton/></ui></packet>".to_owned(), "well-formed"),
            (r#"<?xml version="1.0" encoding="UTF-16"?><packet/>"#.to_owned(), "well-formed"),
            ("<?php x ?><packet/>".to_owned(), "well-formed"),
            ("<request><ui><get-custombutton/></ui></request>".to_owned(), "root"),
            ("<packet>ui/get-custombutton</packet>".to_owned(), "text"),
            ("<packet><ui>x<get-custombutton/></ui></packet>".to_owned(), "text"),
            ("<packet><x:ui><get-custombutton/></x:ui></packet>".to_owned(), "plain name"),
            ("<packet><ui><x:delete-custombutton/></ui></packet>".to_owned(), "plain name"),
        ] {
            let err = ok(&body).unwrap_err();
            assert!(err.contains(why), "{body}: {err}");
        }
        let mut not_utf8 = b"<packet><ui><get-custombutton/></ui>".to_vec();
        not_utf8.extend_from_slice(b"\xff</packet>");
        assert!(
            p.check(HttpMethod::Post, &url::Url::parse(url).unwrap(), &not_utf8)
                .is_err()
        );
        // No query string beside a packet.
        let err = check(&p, HttpMethod::Post, &format!("{url}?x=1"), "<packet/>").unwrap_err();
        assert!(err.contains("query string"), "{err}");
    }

    #[test]
    fn credentials_are_presented_as_the_plugin_declares() {
        let target = ServerTarget {
            hostname: "p.example".into(),
            port: 8443,
            secure: true,
            username: "root".into(),
            api_token: Secret::new("tok"),
        };
        let creds = |auth: PanelAuth| Grant::for_server(&target, &auth).credentials;
        let one = |name: &str, value: &str| vec![(name.to_owned(), value.to_owned())];
        assert_eq!(
            creds(PanelAuth::SchemeUserToken("whm".into())),
            one("authorization", "whm root:tok")
        );
        assert_eq!(creds(PanelAuth::Bearer), one("authorization", "Bearer tok"));
        assert_eq!(
            creds(PanelAuth::Basic),
            one("authorization", "Basic cm9vdDp0b2s=")
        );
        assert_eq!(
            creds(PanelAuth::LoginHeaders(
                "HTTP_AUTH_LOGIN".into(),
                "HTTP_AUTH_PASSWD".into()
            )),
            vec![
                ("http_auth_login".to_owned(), "root".to_owned()),
                ("http_auth_passwd".to_owned(), "tok".to_owned())
            ]
        );
        assert_eq!(
            creds(PanelAuth::TokenHeader("X-API-Key".into())),
            one("x-api-key", "tok")
        );
        // Never printed.
        assert!(!format!("{:?}", Grant::for_server(&target, &PanelAuth::Bearer)).contains("tok"));
    }

    #[test]
    fn credential_declarations_are_checked() {
        for bad in [
            PanelAuth::SchemeUserToken(String::new()),
            PanelAuth::SchemeUserToken("wh m".into()),
            PanelAuth::TokenHeader("Host".into()),
            PanelAuth::TokenHeader("content-length".into()),
            PanelAuth::TokenHeader("bad header".into()),
            PanelAuth::TokenHeader("Proxy-Authorization".into()),
            PanelAuth::LoginHeaders("X-User".into(), "x-user".into()),
            PanelAuth::LoginHeaders("Authorization".into(), "X-Token".into()),
            PanelAuth::LoginHeaders("Cookie".into(), "X-Token".into()),
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
        for good in [
            PanelAuth::SchemeUserToken("whm".into()),
            PanelAuth::Bearer,
            PanelAuth::Basic,
            PanelAuth::LoginHeaders("HTTP_AUTH_LOGIN".into(), "HTTP_AUTH_PASSWD".into()),
            PanelAuth::TokenHeader("KEY".into()),
            PanelAuth::TokenHeader("Authorization".into()),
        ] {
            assert!(good.check().is_ok(), "{good:?}");
        }
    }
}
