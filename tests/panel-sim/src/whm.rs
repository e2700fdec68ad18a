//! The WHM API 1 functions themselves: envelopes, parameter validation with cPanel's texts, the
//! integration functions, `version`, `applist`, `get_current_profile` and `batch`.
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
use crate::state::{Group, Link, ServerState};

/// Request parameters in arrival order (query string first, then the form body).
pub type Params = Vec<(String, String)>;

/// Functions every simulated version has.
pub const BASE_FUNCTIONS: [&str; 3] = ["applist", "batch", "version"];

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

/// The last value of a parameter (later values override earlier ones).
pub(crate) fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
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
pub(crate) async fn dispatch(
    shared: &Shared,
    function: &str,
    params: &[(String, String)],
) -> String {
    if function == "batch" {
        return run_batch(shared, params).await;
    }
    shared.metrics.count_call(function);
    sleep_command_latency(shared).await;
    let mut state = shared.lock_state();
    envelope_text(function, &run_command(&mut state, function, params))
}

async fn sleep_command_latency(shared: &Shared) {
    let latency = shared.lock_behaviour().command_latency;
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
async fn run_batch(shared: &Shared, params: &[(String, String)]) -> String {
    let commands: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.as_str())
        .collect();
    let mut calls: Vec<(&str, u64)> = vec![("batch", 1)];
    let mut count = |function| match calls.iter_mut().find(|(f, _)| *f == function) {
        Some((_, n)) => *n += 1,
        None => calls.push((function, 1)),
    };
    if commands.is_empty() {
        shared.metrics.count_call("batch");
        return envelope_text("batch", &Err(texts::missing_parameter("command", "batch")));
    }
    let abort_on_error = param(params, "abort_on_error").is_some_and(|v| v.trim() == "1");
    let latency = shared.lock_behaviour().command_latency;

    let mut results = String::with_capacity(commands.len() * 96 + 16);
    let mut first_failure: Option<String> = None;
    // Records one command's outcome; false once the batch must stop.
    let mut record = |function: &str, outcome: Result<Value, String>| {
        results.push_str(if results.is_empty() { "" } else { "," });
        write_envelope(&mut results, function, &outcome);
        match outcome {
            Err(reason) => {
                first_failure.get_or_insert(reason);
                !abort_on_error
            }
            Ok(_) => true,
        }
    };
    if latency == Duration::ZERO {
        let mut state = shared.lock_state();
        for command in &commands {
            let (function, outcome) = run_one(&mut state, command);
            count(function);
            if !record(function, outcome) {
                break;
            }
        }
    } else {
        for command in &commands {
            tokio::time::sleep(latency).await;
            let (function, outcome) = run_one(&mut shared.lock_state(), command);
            count(function);
            if !record(function, outcome) {
                break;
            }
        }
    }
    shared.metrics.update(|c| {
        for (function, n) in &calls {
            *c.calls.entry((*function).to_owned()).or_default() += n;
        }
    });

    let data = format!("{{\"result\":[{results}]}}");
    let (reason, result) = match &first_failure {
        None => ("OK", 1),
        Some(reason) => (reason.as_str(), 0),
    };
    // What `envelope` would give, with `data` set on failure too.
    let mut out = String::with_capacity(data.len() + 96);
    out.push_str("{\"data\":");
    out.push_str(&data);
    out.push_str(",\"metadata\":{\"command\":\"batch\",\"reason\":");
    out.push_str(&json_string(reason));
    out.push_str(&format!(",\"result\":{result},\"version\":1}}}}"));
    out
}

/// One `command` value of a batch: its function and outcome.
fn run_one<'c>(state: &mut ServerState, command: &'c str) -> (&'c str, Result<Value, String>) {
    let (function, query) = command.split_once('?').unwrap_or((command, ""));
    if function == "batch" {
        return (function, Err(texts::nested_batch()));
    }
    let inner: Params = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    (function, run_command(state, function, &inner))
}

/// A JSON string literal.
fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned())
}

/// [`envelope`] as JSON text, byte for byte what serializing it gives (keys in order).
pub fn envelope_text(command: &str, outcome: &Result<Value, String>) -> String {
    let mut out = String::with_capacity(96);
    write_envelope(&mut out, command, outcome);
    out
}

fn write_envelope(out: &mut String, command: &str, outcome: &Result<Value, String>) {
    let (data, reason, result) = match outcome {
        Ok(data) => (data, "OK", 1),
        Err(reason) => (&Value::Null, reason.as_str(), 0),
    };
    out.push_str("{\"data\":");
    out.push_str(&serde_json::to_string(data).unwrap_or_else(|_| "null".to_owned()));
    out.push_str(",\"metadata\":{\"command\":");
    out.push_str(&json_string(command));
    out.push_str(",\"reason\":");
    out.push_str(&json_string(reason));
    out.push_str(&format!(",\"result\":{result},\"version\":1}}}}"));
}

/// Runs one non-batch function against the state: `Ok(data)` or `Err(reason)`.
pub(crate) fn run_command(
    state: &mut ServerState,
    function: &str,
    params: &[(String, String)],
) -> Result<Value, String> {
    let unknown = || Err(texts::unknown_function(function));
    match function {
        "version" => Ok(json!({ "version": state.version })),
        "applist" => Ok(json!({ "app": available_functions(state) })),
        "get_current_profile" if state.has_profiles() => Ok(profile_data(state)),
        f if INTEGRATION_FUNCTIONS.contains(&f) && state.has_integration() => {
            integration(state, f, params)
        }
        _ => unknown(),
    }
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
    params: &'a [(String, String)],
    required: &[&str],
) -> Result<&'a str, String> {
    for arg in std::iter::once(&"user").chain(required) {
        match param(params, arg) {
            None => return Err(texts::missing_parameter(arg, function)),
            Some("") => return Err(texts::empty_value(arg)),
            Some(_) => {}
        }
    }
    let user = param(params, "user").unwrap_or_default();
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

fn integration(
    state: &mut ServerState,
    function: &str,
    params: &[(String, String)],
) -> Result<Value, String> {
    let get = |k: &str| param(params, k);
    match function {
        "create_integration_group" => {
            let user = validate_request(state, function, params, &["group_id", "label", "order"])?
                .to_owned();
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
                .integration_mut(&user)
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
            )?
            .to_owned();
            let app = get("app").unwrap_or_default().to_owned();
            check_prefix("app", &app)?;
            let link = build_link(&app, params)?;
            state.integration_mut(&user).links.insert(app, link);
            Ok(Value::Null)
        }
        "remove_integration_link" => {
            let user = validate_request(state, function, params, &["app"])?.to_owned();
            let app = get("app").unwrap_or_default();
            check_prefix("app", app)?;
            if let Some(i) = state.integrations.get_mut(&user) {
                i.links.remove(app);
            }
            state.tidy(&user);
            Ok(Value::Null)
        }
        "remove_integration_group" => {
            let user = validate_request(state, function, params, &["group_id"])?.to_owned();
            let group_id = get("group_id").unwrap_or_default();
            check_prefix("group_id", group_id)?;
            if let Some(i) = state.integrations.get_mut(&user) {
                i.groups.remove(group_id);
            }
            state.tidy(&user);
            Ok(Value::Null)
        }
        "update_integration_link_token" => {
            let user = validate_request(state, function, params, &["token", "app"])?.to_owned();
            let app = get("app").unwrap_or_default();
            check_prefix("app", app)?;
            let token = get("token").unwrap_or_default();
            // cPanel overwrites the token file whether or not the link exists; a token without a
            // link is invisible, so updating an absent link is a successful no-op here.
            if let Some(link) = state
                .integrations
                .get_mut(&user)
                .and_then(|i| i.links.get_mut(app))
            {
                link.fields.insert("token".to_owned(), token.to_owned());
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
fn build_link(app: &str, params: &[(String, String)]) -> Result<Link, String> {
    let mut fields = BTreeMap::new();
    let mut ignored = BTreeMap::new();
    for (k, v) in params {
        if matches!(k.as_str(), "user" | "app" | "api.version") {
            continue;
        }
        if Link::KNOWN_FIELDS.contains(&k.as_str()) {
            fields.insert(k.clone(), v.clone());
        } else {
            ignored.insert(k.clone(), v.clone());
        }
    }
    let get = |k: &str| fields.get(k).map(String::as_str);

    check_label(get("label"))?;
    let has = |k: &str| get(k).is_some_and(|v| !v.is_empty());
    if !has("autologin_token_url") && !has("url") {
        return Err(texts::url_required());
    }
    if let Some(hide) = get("hide") {
        if hide.trim().is_empty() {
            return Err(texts::empty_boolean());
        }
        if hide != "0" && hide != "1" {
            return Err(texts::invalid_boolean(hide));
        }
    }

    // What cPanel's theme layer builds from the link, with its defaults, and then validates.
    let name = truthy(get("label")).unwrap_or(app);
    if !is_asset_id(app) {
        return Err(texts::invalid_entry(name, "id", app));
    }
    let implements = truthy(get("implements")).unwrap_or(app);
    if !is_asset_id(implements) {
        return Err(texts::invalid_entry(name, "implements", implements));
    }
    let group_id = truthy(get("group_id")).unwrap_or("preferences");
    if !is_asset_id(group_id) {
        return Err(texts::invalid_entry(name, "group_id", group_id));
    }
    if let Some(order) = truthy(get("order")) {
        let digits = order.strip_prefix('-').unwrap_or(order);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(texts::invalid_entry(name, "order", order));
        }
    }
    if let Some(image) = truthy(get("base64_png_image")) {
        let compact: String = image.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .map_err(|_| texts::invalid_base64())?;
        if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            return Err(texts::invalid_png());
        }
    }

    Ok(Link {
        app: app.to_owned(),
        fields,
        ignored,
    })
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
    use super::*;
    use crate::config::SimConfig;

    fn p(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
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
        assert_eq!(link.ignored["description"], "ignored");
        assert!(!link.fields.contains_key("user"));
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
        ] {
            assert_eq!(
                envelope_text(command, &outcome),
                serde_json::to_string(&envelope(command, outcome.clone())).unwrap()
            );
        }
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
