//! The WHM API 1 functions themselves: envelopes, parameter validation with cPanel's texts, the
//! integration functions, `version`, `applist`, `get_current_profile`, `listaccts` and `batch`.
//!
//! `listaccts` answers `data.acct`, one entry per account in user-name order with WHM's fields
//! (`user`, `domain`, `owner`, `email` (`*unknown*` when unset), `suspended` (0 or 1),
//! `suspendreason` (`not suspended` when active), `suspendtime`, `plan`, `ip`, `partition`,
//! `theme`, `startdate`, `unix_startdate`, `diskused`, `disklimit`, `is_locked`, `uid`). It
//! honours `want` (a comma-separated list of the fields to return) and `search` with
//! `searchtype` `user`, `domain` or `owner` (`searchmethod=exact` for an exact match, else a
//! case-insensitive substring, where WHM takes a regular expression).
//!
//! This module knows nothing about HTTP: [`crate::server`] authenticates a request, checks
//! `api.version`, collects its parameters and hands them to `dispatch`.
//!
//! # Validation order
//!
//! Every integration function validates like cPanel's `Whostmgr::API::1::Integration` does, and
//! the first failing check answers:
//!
//! 1. each required argument, in the order below, is present (else
//!    `Provide the “<arg>” parameter for the “<function>” function.`) and then non-empty (else
//!    `The value of “<arg>” may not be empty.`) — `user` always comes first, so a missing or empty
//!    `user` wins over everything;
//! 2. the account exists (else `You do not have a user named “<user>”.`);
//! 3. the function's own checks (below).
//!
//! cPanel's code only enforces `user` plus the ID argument; the simulator also enforces what the
//! OpenAPI definitions mark required, after the ID argument, in the definitions' (alphabetical)
//! order. Required arguments per function:
//!
//! | function | required, in checking order | then |
//! |---|---|---|
//! | `create_integration_group` | user, group_id, label, order | group_id prefix, label quote, order ≥ 1, group_id characters |
//! | `create_integration_link` | user, app, implements, label, subscriber_unique_id, token | app prefix, label quote, url/autologin_token_url, hide, id/implements/group_id/order values, base64_png_image |
//! | `remove_integration_link` | user, app | app prefix |
//! | `remove_integration_group` | user, group_id | group_id prefix |
//! | `update_integration_link_token` | user, token, app (cPanel's order) | app prefix |
//! | `list_integration_links`, `list_integration_groups` | user | |
//! | `get_integration_link_user_config` | user, app | |
//!
//! The function-specific texts: `The “app” argument cannot begin with “group_”.` (and the same for
//! `group_id`), `The parameter “label” may not contain single-quote characters (').`,
//! `You must supply one of the following parameters: autologin_token_url, url`,
//! `“<v>” is not a valid Boolean. It must be one of: 0 or 1.` (`hide`),
//! `The configuration entry with “name” of “$LANG{'<label>'}” has an invalid value for “<attr>”: “<v>”.`
//! (an `order`, `id` (= app), `implements` or `group_id` value cPanel's theme assets reject),
//! `“base64_png_image” is not valid Base64.`, `“base64_png_image” is not a valid PNG image.`

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::server::Shared;
use crate::state::{FieldValues, Group, Link, ServerState, field};

/// Request parameters in arrival order (query string first, then the form body), decoded exactly
/// like [`form_urlencoded::parse`] does (`+` is a space, `%XX` a byte, an invalid `%` sequence
/// stays as it is, invalid UTF-8 becomes U+FFFD; empty `&`-separated pieces are skipped and a
/// piece without `=` has an empty value).
///
/// Every decoded key and value lives in one buffer, so parsing a form allocates nothing per
/// pair, and a cleared `Params` can be reused without allocating at all.
#[derive(Debug, Clone, Default)]
pub struct Params {
    /// The decoded keys and values, each key followed directly by its value.
    text: String,
    /// Per pair: where its key starts, where its value starts (the key's end) and where it ends.
    pairs: Vec<[usize; 3]>,
}

impl Params {
    /// No parameters.
    pub fn new() -> Self {
        Params::default()
    }

    /// The pairs of an `application/x-www-form-urlencoded` text (a query string or form body).
    pub fn parse(input: &[u8]) -> Self {
        let mut params = Params::new();
        params.extend_from_form(input);
        params
    }

    /// Appends the pairs of an `application/x-www-form-urlencoded` text.
    pub fn extend_from_form(&mut self, input: &[u8]) {
        let mut bytes = std::mem::take(&mut self.text).into_bytes();
        let (old_len, old_pairs) = (bytes.len(), self.pairs.len());
        decode_form(input, &mut bytes, &mut self.pairs);
        // Valid UTF-8 cut only at character boundaries: every key and value is valid on its own.
        let bytes = match String::from_utf8(bytes) {
            Ok(text) => {
                if self.pairs[old_pairs..]
                    .iter()
                    .flatten()
                    .all(|&i| text.is_char_boundary(i))
                {
                    self.text = text;
                    return;
                }
                text.into_bytes()
            }
            Err(error) => error.into_bytes(),
        };
        // Some key or value is not valid UTF-8: convert each on its own, invalid sequences to
        // U+FFFD, as `form_urlencoded` does.
        let mut text = String::from_utf8_lossy(&bytes[..old_len]).into_owned();
        text.reserve(bytes.len() - old_len);
        for pair in &mut self.pairs[old_pairs..] {
            let [start, mid, end] = *pair;
            let new_start = text.len();
            text.push_str(&String::from_utf8_lossy(&bytes[start..mid]));
            let new_mid = text.len();
            text.push_str(&String::from_utf8_lossy(&bytes[mid..end]));
            *pair = [new_start, new_mid, text.len()];
        }
        self.text = text;
    }

    /// Appends one already decoded pair.
    pub fn push(&mut self, key: &str, value: &str) {
        let start = self.text.len();
        self.text.push_str(key);
        let mid = self.text.len();
        self.text.push_str(value);
        self.pairs.push([start, mid, self.text.len()]);
    }

    /// Forgets every pair, keeping the memory for reuse.
    pub fn clear(&mut self) {
        self.text.clear();
        self.pairs.clear();
    }

    /// The number of pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// True without pairs.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The pairs in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&str, &str)> + '_ {
        self.pairs
            .iter()
            .map(|&[start, mid, end]| (&self.text[start..mid], &self.text[mid..end]))
    }

    /// The last value of a parameter (later values override earlier ones).
    pub fn get(&self, key: &str) -> Option<&str> {
        let text = self.text.as_bytes();
        self.pairs
            .iter()
            .rev()
            .find(|&&[start, mid, _]| &text[start..mid] == key.as_bytes())
            .map(|&[_, mid, end]| &self.text[mid..end])
    }

    /// Every value of a parameter, in order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.iter().filter(move |(k, _)| *k == key).map(|(_, v)| v)
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Params {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        let mut params = Params::new();
        for (k, v) in pairs {
            params.push(k.as_ref(), v.as_ref());
        }
        params
    }
}

/// The number of bytes of `word` (little-endian) before the first one [`decode_form`] does more
/// with than copy (`&`, `=`, `+`, `%`): 8 when there is none.
fn first_special(word: u64) -> usize {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGHS: u64 = ONES << 7;
    // The high bit of each zero byte, and possibly of bytes above one (borrows): the lowest set
    // bit is exact.
    let zero_bytes = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let found = [b'&', b'=', b'+', b'%'].iter().fold(0, |found, &special| {
        found | zero_bytes(word ^ (ONES * u64::from(special)))
    });
    (found.trailing_zeros() / 8) as usize
}

/// Appends the percent-decoded keys and values of a form to `out` (as bytes, not yet checked for
/// UTF-8) and their positions to `pairs`: `&` separates pairs (empty pieces are skipped), the first
/// `=` of a piece separates key and value (none: an empty value), `+` is a space and `%XX` a byte
/// (an invalid `%` sequence stays as it is).
fn decode_form(input: &[u8], out: &mut Vec<u8>, pairs: &mut Vec<[usize; 3]>) {
    // Decoding never lengthens: write into room for all of the input, then cut to what was written.
    let base = out.len();
    out.resize(base + input.len(), 0);
    let mut w = base;
    // The current piece: where its key starts in `out`, where its value starts once its `=` was
    // seen, and whether it has any byte yet.
    let mut start = base;
    let mut mid = None;
    let mut empty = true;
    let mut i = 0;
    while i < input.len() {
        // Eight bytes at a time while none is special: copy them all, keep those before the first
        // special one.
        if let (Some(chunk), Some(room)) = (
            input[i..].first_chunk::<8>(),
            out[w..].first_chunk_mut::<8>(),
        ) {
            *room = *chunk;
            let plain = first_special(u64::from_le_bytes(*chunk));
            i += plain;
            w += plain;
            empty &= plain == 0;
            if plain == 8 {
                continue;
            }
        }
        let b = input[i];
        i += 1;
        let decoded = match b {
            b'&' => {
                if !empty {
                    pairs.push([start, mid.unwrap_or(w), w]);
                }
                (start, mid, empty) = (w, None, true);
                continue;
            }
            b'=' if mid.is_none() => {
                mid = Some(w);
                empty = false;
                continue;
            }
            b'+' => b' ',
            b'%' => match (
                input.get(i).copied().and_then(hex_digit),
                input.get(i + 1).copied().and_then(hex_digit),
            ) {
                (Some(high), Some(low)) => {
                    i += 2;
                    high << 4 | low
                }
                _ => b'%',
            },
            _ => b,
        };
        out[w] = decoded;
        w += 1;
        empty = false;
    }
    if !empty {
        pairs.push([start, mid.unwrap_or(w), w]);
    }
    out.truncate(w);
}

/// The value of an ASCII hex digit.
fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Functions every simulated version has.
pub const BASE_FUNCTIONS: [&str; 4] = ["applist", "batch", "listaccts", "version"];

/// `get_current_profile`, present from cPanel & WHM 76.
pub const PROFILE_FUNCTION: &str = "get_current_profile";

/// The integration functions, present from cPanel & WHM 54.
pub const INTEGRATION_FUNCTIONS: [&str; 8] = [
    "create_integration_group",
    "create_integration_link",
    "get_integration_link_user_config",
    "list_integration_groups",
    "list_integration_links",
    "remove_integration_group",
    "remove_integration_link",
    "update_integration_link_token",
];

/// cPanel's prefix for group files; neither an `app` nor a `group_id` may start with it.
pub const GROUP_PREFIX: &str = "group_";

/// The error texts the simulator answers, so tests can compare without retyping curly quotes.
pub mod texts {
    /// A required argument is absent.
    pub fn missing_parameter(arg: &str, function: &str) -> String {
        format!("Provide the “{arg}” parameter for the “{function}” function.")
    }

    /// A required argument is empty.
    pub fn empty_value(arg: &str) -> String {
        format!("The value of “{arg}” may not be empty.")
    }

    /// The account does not exist.
    pub fn no_such_user(user: &str) -> String {
        format!("You do not have a user named “{user}”.")
    }

    /// An `app` or `group_id` starts with `group_`.
    pub fn group_prefix(arg: &str) -> String {
        format!("The “{arg}” argument cannot begin with “group_”.")
    }

    /// A label contains `'`.
    pub fn label_quote() -> String {
        "The parameter “label” may not contain single-quote characters (').".to_owned()
    }

    /// `create_integration_link` got neither `autologin_token_url` nor `url`.
    pub fn url_required() -> String {
        "You must supply one of the following parameters: autologin_token_url, url".to_owned()
    }

    /// `hide` is not 0 or 1.
    pub fn invalid_boolean(value: &str) -> String {
        format!("“{value}” is not a valid Boolean. It must be one of: 0 or 1.")
    }

    /// An empty value where a Boolean was expected.
    pub fn empty_boolean() -> String {
        "This value may not be empty.".to_owned()
    }

    /// A value cPanel's theme assets reject (`order`, `id`, `implements`, `group_id`).
    pub fn invalid_entry(label: &str, attr: &str, value: &str) -> String {
        format!(
            "The configuration entry with “name” of “$LANG{{'{label}'}}” has an invalid value for “{attr}”: “{value}”."
        )
    }

    /// `base64_png_image` is not Base64.
    pub fn invalid_base64() -> String {
        "“base64_png_image” is not valid Base64.".to_owned()
    }

    /// `base64_png_image` is not a PNG.
    pub fn invalid_png() -> String {
        "“base64_png_image” is not a valid PNG image.".to_owned()
    }

    /// The function does not exist on this server (unknown name, or too old a version).
    pub fn unknown_function(function: &str) -> String {
        format!("Unknown app (“{function}”) requested for this version (1) of the API.")
    }

    /// `batch` inside a `batch`.
    pub fn nested_batch() -> String {
        "The “batch” function cannot run inside a batch.".to_owned()
    }

    /// A request without `api.version=1` (WHM would run it as WHM API 0).
    pub fn api_version_missing() -> String {
        "This server simulates WHM API 1 only: add “api.version=1” to the request (without it, WHM runs the call as WHM API 0).".to_owned()
    }

    /// A request with an `api.version` other than 0 or 1.
    pub fn api_version_unsupported(version: &str) -> String {
        format!("WHM API version “{version}” is not supported: use “api.version=1”.")
    }
}

/// A WHM API 1 envelope. Success: `reason` `OK`, `result` 1; failure: `result` 0, `data` null.
pub fn envelope(command: &str, outcome: Result<Value, String>) -> Value {
    match outcome {
        Ok(data) => json!({
            "metadata": {"command": command, "reason": "OK", "result": 1, "version": 1},
            "data": data,
        }),
        Err(reason) => json!({
            "metadata": {"command": command, "reason": reason, "result": 0, "version": 1},
            "data": Value::Null,
        }),
    }
}

/// True when an envelope reports success (`metadata.result` 1).
pub fn succeeded(envelope: &Value) -> bool {
    envelope["metadata"]["result"].as_i64() == Some(1)
}

/// The functions a server of this state offers, alphabetically (what `applist` answers).
pub(crate) fn available_functions(state: &ServerState) -> Vec<&'static str> {
    let mut all: Vec<&'static str> = BASE_FUNCTIONS.to_vec();
    if state.has_profiles() {
        all.push(PROFILE_FUNCTION);
    }
    if state.has_integration() {
        all.extend(INTEGRATION_FUNCTIONS);
    }
    all.sort_unstable();
    all
}

/// Runs one top-level WHM API 1 call (counting it, with command latency) and returns its envelope.
/// Runs a function and answers its envelope as JSON text.
pub(crate) async fn dispatch(shared: &Shared, function: &str, params: &Params) -> String {
    if function == "batch" {
        return run_batch(shared, params).await;
    }
    shared.plumbing.metrics.count_call(function);
    sleep_command_latency(shared).await;
    let mut state = shared.lock_state();
    envelope_text(function, &run_command(&mut state, function, params))
}

async fn sleep_command_latency(shared: &Shared) {
    let latency = shared.plumbing.behaviour().command_latency;
    if latency > Duration::ZERO {
        tokio::time::sleep(latency).await;
    }
}

/// Runs `batch`: each `command=<function>?<query>` in order, each with command latency, stopping at
/// the first failure when `abort_on_error=1`. The top-level result is 0 when any command failed,
/// with that first failure's reason.
///
/// Without command latency the whole batch runs under one lock of the state, and the calls are
/// counted once at the end (a batch is one request: nobody observes it half done).
async fn run_batch(shared: &Shared, params: &Params) -> String {
    let commands: Vec<&str> = params.all("command").collect();
    let mut calls: Vec<(&str, u64)> = vec![("batch", 1)];
    let mut count = |function| match calls.iter_mut().find(|(f, _)| *f == function) {
        Some((_, n)) => *n += 1,
        None => calls.push((function, 1)),
    };
    if commands.is_empty() {
        shared.plumbing.metrics.count_call("batch");
        return envelope_text("batch", &Err(texts::missing_parameter("command", "batch")));
    }
    let abort_on_error = params
        .get("abort_on_error")
        .is_some_and(|v| v.trim() == "1");
    let latency = shared.plumbing.behaviour().command_latency;

    // What `envelope` would give, with `data` set on failure too; the results are written in
    // place. A successful command's envelope is its name plus about 75 bytes.
    let estimate: usize = commands
        .iter()
        .map(|c| c.find('?').unwrap_or(c.len()) + 80)
        .sum();
    let mut out = String::with_capacity(estimate + 128);
    out.push_str("{\"data\":{\"result\":[");
    let mut first_failure: Option<String> = None;
    let mut first = true;
    // Records one command's outcome; false once the batch must stop.
    let mut record = |function: &str, outcome: Result<Value, String>| {
        if !std::mem::take(&mut first) {
            out.push(',');
        }
        write_envelope(&mut out, function, &outcome);
        match outcome {
            Err(reason) => {
                first_failure.get_or_insert(reason);
                !abort_on_error
            }
            Ok(_) => true,
        }
    };
    // One decoding buffer for every command's parameters.
    let mut inner = Params::new();
    if latency == Duration::ZERO {
        let mut state = shared.lock_state();
        for command in &commands {
            let (function, outcome) = run_one(&mut state, command, &mut inner);
            count(function);
            if !record(function, outcome) {
                break;
            }
        }
    } else {
        for command in &commands {
            tokio::time::sleep(latency).await;
            let (function, outcome) = run_one(&mut shared.lock_state(), command, &mut inner);
            count(function);
            if !record(function, outcome) {
                break;
            }
        }
    }
    shared.plumbing.metrics.update(|c| {
        for (function, n) in &calls {
            *c.calls.entry((*function).to_owned()).or_default() += n;
        }
    });

    let (reason, result) = match &first_failure {
        None => ("OK", "1"),
        Some(reason) => (reason.as_str(), "0"),
    };
    out.push_str("]},\"metadata\":{\"command\":\"batch\",\"reason\":");
    push_json_string(&mut out, reason);
    out.push_str(",\"result\":");
    out.push_str(result);
    out.push_str(",\"version\":1}}");
    out
}

/// One `command` value of a batch: its function and outcome. `inner` is decoding room for the
/// command's parameters.
fn run_one<'c>(
    state: &mut ServerState,
    command: &'c str,
    inner: &mut Params,
) -> (&'c str, Result<Value, String>) {
    let (function, query) = command.split_once('?').unwrap_or((command, ""));
    if function == "batch" {
        return (function, Err(texts::nested_batch()));
    }
    inner.clear();
    inner.extend_from_form(query.as_bytes());
    (function, run_command(state, function, inner))
}

/// Appends a JSON string literal, byte for byte what `serde_json` writes.
fn push_json_string(out: &mut String, text: &str) {
    // serde_json escapes `"`, `\` and the control characters below U+0020, nothing else.
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned()));
    }
}

/// [`envelope`] as JSON text, byte for byte what serializing it gives (keys in order).
pub fn envelope_text(command: &str, outcome: &Result<Value, String>) -> String {
    let mut out = String::with_capacity(96);
    write_envelope(&mut out, command, outcome);
    out
}

fn write_envelope(out: &mut String, command: &str, outcome: &Result<Value, String>) {
    let (data, reason, result) = match outcome {
        Ok(data) => (data, "OK", "1"),
        Err(reason) => (&Value::Null, reason.as_str(), "0"),
    };
    out.push_str("{\"data\":");
    if data.is_null() {
        out.push_str("null");
    } else {
        out.push_str(&serde_json::to_string(data).unwrap_or_else(|_| "null".to_owned()));
    }
    out.push_str(",\"metadata\":{\"command\":");
    push_json_string(out, command);
    out.push_str(",\"reason\":");
    push_json_string(out, reason);
    out.push_str(",\"result\":");
    out.push_str(result);
    out.push_str(",\"version\":1}}");
}

/// Runs one non-batch function against the state: `Ok(data)` or `Err(reason)`.
pub(crate) fn run_command(
    state: &mut ServerState,
    function: &str,
    params: &Params,
) -> Result<Value, String> {
    let unknown = || Err(texts::unknown_function(function));
    match function {
        "version" => Ok(json!({ "version": state.version })),
        "applist" => Ok(json!({ "app": available_functions(state) })),
        "get_current_profile" if state.has_profiles() => Ok(profile_data(state)),
        "listaccts" => Ok(listaccts(state, params)),
        f if INTEGRATION_FUNCTIONS.contains(&f) && state.has_integration() => {
            integration(state, f, params)
        }
        _ => unknown(),
    }
}

/// `listaccts`: the accounts, filtered by `search`/`searchtype`, with the fields `want` names.
fn listaccts(state: &ServerState, params: &Params) -> Value {
    let search = params.get("search").filter(|s| !s.is_empty());
    let exact = params.get("searchmethod") == Some("exact");
    let wanted: Option<Vec<&str>> = params
        .get("want")
        .filter(|w| !w.is_empty())
        .map(|w| w.split(',').map(str::trim).collect());
    let default = crate::state::AccountDetails::default();
    let accounts: Vec<Value> = state
        .accounts
        .iter()
        .enumerate()
        .filter_map(|(i, (user, domain))| {
            let details = state.details.get(user).unwrap_or(&default);
            if let Some(search) = search {
                let field = match params.get("searchtype").unwrap_or("user") {
                    "domain" => domain.as_str(),
                    "owner" => details.owner.as_str(),
                    _ => user.as_str(),
                };
                let hit = if exact {
                    field == search
                } else {
                    field.to_lowercase().contains(&search.to_lowercase())
                };
                if !hit {
                    return None;
                }
            }
            let started = 1_420_113_600 + 86_400 * i as i64;
            let entry = json!({
                "user": user,
                "domain": domain,
                "owner": details.owner,
                "email": if details.email.is_empty() { "*unknown*" } else { details.email.as_str() },
                "suspended": i32::from(details.suspended),
                "suspendreason": if details.suspended { "Suspended by the simulator" } else { "not suspended" },
                "suspendtime": if details.suspended { json!(started + 3600) } else { Value::Null },
                "plan": "default",
                "ip": "192.0.2.10",
                "partition": "home",
                "theme": "jupiter",
                "startdate": "15 Jan 01 12:00",
                "unix_startdate": started,
                "diskused": "0M",
                "disklimit": "unlimited",
                "is_locked": 0,
                "uid": 1000 + i,
            });
            Some(match &wanted {
                None => entry,
                Some(fields) => Value::Object(
                    entry
                        .as_object()
                        .into_iter()
                        .flatten()
                        .filter(|(k, _)| fields.contains(&k.as_str()))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ),
            })
        })
        .collect();
    json!({ "acct": accounts })
}

fn profile_data(state: &ServerState) -> Value {
    let p = &state.profile;
    json!({
        "code": p.code(),
        "name": p.name(),
        "description": p.description(),
        "enabled_roles": [],
        "disabled_roles": [],
        "optional_roles": [],
    })
}

/// Checks presence then non-emptiness of each argument, in order, then that the user exists.
fn validate_request<'a>(
    state: &ServerState,
    function: &str,
    params: &'a Params,
    required: &[&str],
) -> Result<&'a str, String> {
    for arg in std::iter::once(&"user").chain(required) {
        match params.get(arg) {
            None => return Err(texts::missing_parameter(arg, function)),
            Some("") => return Err(texts::empty_value(arg)),
            Some(_) => {}
        }
    }
    let user = params.get("user").unwrap_or_default();
    if !state.accounts.contains_key(user) {
        return Err(texts::no_such_user(user));
    }
    Ok(user)
}

fn check_prefix(arg: &str, value: &str) -> Result<(), String> {
    if value.starts_with(GROUP_PREFIX) {
        Err(texts::group_prefix(arg))
    } else {
        Ok(())
    }
}

fn check_label(label: Option<&str>) -> Result<(), String> {
    if label.is_some_and(|l| l.contains('\'')) {
        Err(texts::label_quote())
    } else {
        Ok(())
    }
}

/// cPanel's theme-asset ID rule: ASCII letters, digits, `_` and `-`.
fn is_asset_id(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A Perl-truthy value: defined, non-empty and not `"0"`.
fn truthy(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty() && *v != "0")
}

fn integration(state: &mut ServerState, function: &str, params: &Params) -> Result<Value, String> {
    let get = |k: &str| params.get(k);
    match function {
        "create_integration_group" => {
            let user = validate_request(state, function, params, &["group_id", "label", "order"])?;
            let group_id = get("group_id").unwrap_or_default();
            check_prefix("group_id", group_id)?;
            let label = get("label").unwrap_or_default();
            check_label(Some(label))?;
            let order_text = get("order").unwrap_or_default();
            let order = order_text
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|o| *o >= 1)
                .ok_or_else(|| texts::invalid_entry(label, "order", order_text))?;
            if !is_asset_id(group_id) {
                return Err(texts::invalid_entry(label, "id", group_id));
            }
            let group = Group {
                group_id: group_id.to_owned(),
                label: label.to_owned(),
                order,
            };
            state
                .integration_mut(user)
                .groups
                .insert(group.group_id.clone(), group);
            Ok(Value::Null)
        }
        "create_integration_link" => {
            let user = validate_request(
                state,
                function,
                params,
                &[
                    "app",
                    "implements",
                    "label",
                    "subscriber_unique_id",
                    "token",
                ],
            )?;
            let app = get("app").unwrap_or_default();
            check_prefix("app", app)?;
            let link = build_link(app, params)?;
            let links = &mut state.integration_mut(user).links;
            // The same app replaces the whole link, under the key it has.
            match links.get_mut(app) {
                Some(old) => *old = link,
                None => {
                    links.insert(app.to_owned(), link);
                }
            }
            Ok(Value::Null)
        }
        "remove_integration_link" => {
            let user = validate_request(state, function, params, &["app"])?;
            let app = get("app").unwrap_or_default();
            check_prefix("app", app)?;
            if let Some(i) = state.integrations.get_mut(user) {
                i.links.remove(app);
            }
            state.tidy(user);
            Ok(Value::Null)
        }
        "remove_integration_group" => {
            let user = validate_request(state, function, params, &["group_id"])?;
            let group_id = get("group_id").unwrap_or_default();
            check_prefix("group_id", group_id)?;
            if let Some(i) = state.integrations.get_mut(user) {
                i.groups.remove(group_id);
            }
            state.tidy(user);
            Ok(Value::Null)
        }
        "update_integration_link_token" => {
            let user = validate_request(state, function, params, &["token", "app"])?;
            let app = get("app").unwrap_or_default();
            check_prefix("app", app)?;
            let token = get("token").unwrap_or_default();
            // cPanel overwrites the token file whether or not the link exists; a token without a
            // link is invisible, so updating an absent link is a successful no-op here.
            if let Some(link) = state
                .integrations
                .get_mut(user)
                .and_then(|i| i.links.get_mut(app))
            {
                link.set(field::TOKEN, token);
            }
            Ok(Value::Null)
        }
        "list_integration_links" => {
            let user = validate_request(state, function, params, &[])?;
            let links: Vec<Value> = state
                .integrations
                .get(user)
                .map(|i| i.links.keys().map(|app| json!({ "app": app })).collect())
                .unwrap_or_default();
            Ok(json!({ "links": links }))
        }
        "list_integration_groups" => {
            let user = validate_request(state, function, params, &[])?;
            let groups: Vec<Value> = state
                .integrations
                .get(user)
                .map(|i| i.groups.keys().map(|g| json!({ "group": g })).collect())
                .unwrap_or_default();
            Ok(json!({ "links": groups }))
        }
        "get_integration_link_user_config" => {
            let user = validate_request(state, function, params, &["app"])?;
            let app = get("app").unwrap_or_default();
            let config = state
                .integrations
                .get(user)
                .and_then(|i| i.links.get(app))
                .map(|l| json!(l.user_config()))
                .unwrap_or(Value::Null);
            Ok(json!({ "userconfig": config }))
        }
        _ => Err(texts::unknown_function(function)),
    }
}

/// Validates `create_integration_link`'s own rules (after the request checks) and builds the link.
fn build_link(app: &str, params: &Params) -> Result<Link, String> {
    // The last value of each known field (later values override earlier ones), borrowed from the
    // parameters until the link is built.
    let mut values: FieldValues<'_> = [None; Link::KNOWN_FIELDS.len()];
    let mut any_ignored = false;
    for (k, v) in params.iter() {
        if matches!(k, "user" | "app" | "api.version") {
            continue;
        }
        match Link::field_index(k) {
            Some(i) => values[i] = Some(v),
            None => any_ignored = true,
        }
    }
    let get = |i: usize| values[i];

    check_label(get(field::LABEL))?;
    let has = |i: usize| get(i).is_some_and(|v| !v.is_empty());
    if !has(field::AUTOLOGIN_TOKEN_URL) && !has(field::URL) {
        return Err(texts::url_required());
    }
    if let Some(hide) = get(field::HIDE) {
        if hide.trim().is_empty() {
            return Err(texts::empty_boolean());
        }
        if hide != "0" && hide != "1" {
            return Err(texts::invalid_boolean(hide));
        }
    }

    // What cPanel's theme layer builds from the link, with its defaults, and then validates.
    let name = truthy(get(field::LABEL)).unwrap_or(app);
    if !is_asset_id(app) {
        return Err(texts::invalid_entry(name, "id", app));
    }
    let implements = truthy(get(field::IMPLEMENTS)).unwrap_or(app);
    if !is_asset_id(implements) {
        return Err(texts::invalid_entry(name, "implements", implements));
    }
    let group_id = truthy(get(field::GROUP_ID)).unwrap_or("preferences");
    if !is_asset_id(group_id) {
        return Err(texts::invalid_entry(name, "group_id", group_id));
    }
    if let Some(order) = truthy(get(field::ORDER)) {
        let digits = order.strip_prefix('-').unwrap_or(order);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(texts::invalid_entry(name, "order", order));
        }
    }
    if let Some(image) = truthy(get(field::BASE64_PNG_IMAGE)) {
        let compact: String = image.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .map_err(|_| texts::invalid_base64())?;
        if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            return Err(texts::invalid_png());
        }
    }

    // Parameters cPanel does not know: rare, so collected only now that the link is valid.
    let mut ignored = BTreeMap::new();
    if any_ignored {
        for (k, v) in params.iter() {
            if !matches!(k, "user" | "app" | "api.version") && Link::field_index(k).is_none() {
                ignored.insert(k.to_owned(), v.to_owned());
            }
        }
    }
    Ok(Link::new(app, &values, ignored))
}

/// Builds one `batch` command value: `<function>?<form-encoded params>` (or just the function).
/// Put it in a `command` form field, which encodes it a second time on the wire.
pub fn batch_command<K, V>(function: &str, params: impl IntoIterator<Item = (K, V)>) -> String
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut query = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (k, v) in params {
        query.append_pair(k.as_ref(), v.as_ref());
        any = true;
    }
    if any {
        format!("{function}?{}", query.finish())
    } else {
        function.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::config::SimConfig;

    fn p(pairs: &[(&str, &str)]) -> Params {
        pairs.iter().copied().collect()
    }

    fn state() -> ServerState {
        ServerState::new(&SimConfig::new().account("bob", "bob.test"))
    }

    #[test]
    fn missing_arguments_before_unknown_user() {
        let mut s = state();
        let r = run_command(&mut s, "remove_integration_link", &p(&[("user", "nobody")]));
        assert_eq!(
            r.unwrap_err(),
            texts::missing_parameter("app", "remove_integration_link")
        );
        let r = run_command(
            &mut s,
            "remove_integration_link",
            &p(&[("user", "nobody"), ("app", "x")]),
        );
        assert_eq!(r.unwrap_err(), texts::no_such_user("nobody"));
    }

    #[test]
    fn link_rules() {
        let mut s = state();
        let base = [
            ("user", "bob"),
            ("app", "PANELINK_clientarea_invoices"),
            ("implements", "billing"),
            ("label", "Invoices"),
            ("subscriber_unique_id", "S1"),
            ("token", "T"),
        ];
        let r = run_command(&mut s, "create_integration_link", &p(&base));
        assert_eq!(r.unwrap_err(), texts::url_required());

        let mut with = base.to_vec();
        with.push(("url", "https://billing.test/x"));
        with.push(("hide", "yes"));
        let r = run_command(&mut s, "create_integration_link", &p(&with));
        assert_eq!(r.unwrap_err(), texts::invalid_boolean("yes"));

        with.pop();
        with.push(("order", "1x"));
        let r = run_command(&mut s, "create_integration_link", &p(&with));
        assert_eq!(
            r.unwrap_err(),
            texts::invalid_entry("Invoices", "order", "1x")
        );

        with.pop();
        with.push(("base64_png_image", "!!!"));
        let r = run_command(&mut s, "create_integration_link", &p(&with));
        assert_eq!(r.unwrap_err(), texts::invalid_base64());

        with.pop();
        with.push(("base64_png_image", "aGVsbG8="));
        let r = run_command(&mut s, "create_integration_link", &p(&with));
        assert_eq!(r.unwrap_err(), texts::invalid_png());

        with.pop();
        with.push(("description", "ignored"));
        run_command(&mut s, "create_integration_link", &p(&with)).unwrap();
        let link = &s.integrations["bob"].links["PANELINK_clientarea_invoices"];
        assert_eq!(link.token(), Some("T"));
        assert_eq!(link.ignored()["description"], "ignored");
        assert_eq!(link.get("user"), None);
        assert!(link.fields().all(|(k, _)| k != "user"));
    }

    #[test]
    fn envelope_text_is_the_serialized_envelope() {
        for (command, outcome) in [
            ("create_integration_link", Ok(Value::Null)),
            (
                "list_integration_links",
                Ok(json!({"links": [{"app": "a\"b"}]})),
            ),
            (
                "batch",
                Err("You do not have a user named “bob”.".to_owned()),
            ),
            ("x\\y", Err("line\nbreak 'quote' \"dq\"".to_owned())),
            (
                "get_integration_link_user_config",
                Ok(json!({"userconfig": {"label": "tab\there \u{1}\u{1f}\u{7f} \u{2028} </x> é"}})),
            ),
            (
                "f\u{0}\u{8}\u{c}\r",
                Err("ctl \u{1f} del \u{7f} “q” \u{2029} /".to_owned()),
            ),
            ("", Err(String::new())),
        ] {
            assert_eq!(
                envelope_text(command, &outcome),
                serde_json::to_string(&envelope(command, outcome.clone())).unwrap()
            );
        }
    }

    /// Decodes `input` with `form_urlencoded::parse`, the reference.
    fn reference(input: &[u8]) -> Vec<(String, String)> {
        form_urlencoded::parse(input).into_owned().collect()
    }

    fn decoded(params: &Params) -> Vec<(String, String)> {
        params
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn params_decode_like_form_urlencoded() {
        let tricky: [&[u8]; 24] = [
            b"",
            b"&",
            b"&&a=1&&",
            b"=",
            b"=v",
            b"k",
            b"k=",
            b"k==v=",
            b"a+b=c+d%2Bplus",
            b"pct=%25%2525",
            b"bad=%zz%g1%1%",
            b"end=%2",
            b"x=%",
            b"%61%62=%41%4a%4A",
            b"utf8=%C3%A9%E2%80%9C%F0%9F%98%80",
            b"raw=\xc3\xa9\xe2\x80\x9c",
            b"invalid=%FF%C3&lone=%80&surrogate=%ED%A0%80&overlong=%C0%80",
            b"k%C3=%A9v&raw\xff=\xfe",
            b"split%E2=%80%9C",
            b"nul=%00&ctl=%0A%0d%7F",
            b"command=create_integration_link%3Fuser%3Dbob%26label%3DOpen%2520Ticket",
            b"long=0123456789abcdef0123456789abcdef%20&next=0123456789abcdefg",
            b"a=1&a=2&b&c=&=d",
            b"12345678&12345678=12345678+1234567%",
        ];
        for input in tricky {
            assert_eq!(
                decoded(&Params::parse(input)),
                reference(input),
                "{}",
                String::from_utf8_lossy(input)
            );
        }

        // Random inputs over the bytes that matter, in many lengths (the decoder works 8 bytes at
        // a time).
        let alphabet = b"ab09fF=&&+%%%2B5zg\xc3\xa9\xff\x80\xe2";
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..20_000 {
            let len = rng.random_range(0..40);
            let input: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            assert_eq!(
                decoded(&Params::parse(&input)),
                reference(&input),
                "{input:?}"
            );
        }
    }

    #[test]
    fn params_append_reuse_and_look_up() {
        // A query string then a body (with invalid UTF-8: the slow path keeps the earlier pairs).
        let mut params = Params::parse(b"api.version=1&a=%C3%A9");
        params.extend_from_form(b"a=%FF&b=x+y&a=last");
        let mut expected = reference(b"api.version=1&a=%C3%A9");
        expected.extend(reference(b"a=%FF&b=x+y&a=last"));
        assert_eq!(decoded(&params), expected);
        assert_eq!(params.len(), 5);
        assert_eq!(params.get("a"), Some("last"));
        assert_eq!(params.get("b"), Some("x y"));
        assert_eq!(params.get("c"), None);
        assert_eq!(
            params.all("a").collect::<Vec<_>>(),
            ["é", "\u{fffd}", "last"]
        );

        params.clear();
        assert!(params.is_empty());
        params.extend_from_form(b"k=v");
        params.push("k", "pushed");
        assert_eq!(params.get("k"), Some("pushed"));
        assert_eq!(params.len(), 2);
    }

    #[test]
    fn batch_command_encodes_once() {
        assert_eq!(
            batch_command("version", Vec::<(&str, &str)>::new()),
            "version"
        );
        assert_eq!(
            batch_command("f", [("label", "A & B"), ("x", "=")]),
            "f?label=A+%26+B&x=%3D"
        );
    }
}
