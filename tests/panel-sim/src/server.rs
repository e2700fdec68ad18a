//! The HTTP side: [`PanelSim::start`] binds a listener and serves each connection with hyper's
//! HTTP/1 connection server; [`SimHandle`] is the test's grip on the running server (address,
//! state, instrumentation, runtime knobs, clicks, shutdown).
//!
//! Per request, in this order: count it; refuse it when the server is down (close the connection);
//! sleep the request latency; draw a fault (HTTP 500, hang then close, or close) — all before any
//! parameter is read, so a faulted request changes nothing, except a 500-after-work fault, which
//! answers HTTP 500 once the function has run; route `/json-api/<function>`
//! (anything else is 404, methods other than GET/POST 405); check `Authorization: whm
//! <user>:<token>` (else HTTP 403); collect parameters (query string, then an
//! `application/x-www-form-urlencoded` body); check `api.version`; run the function
//! ([`crate::whm`]). One more route stands for the customer's side of cPanel: `GET /sim/click?user=U&app=A`
//! clicks `U`'s link `A` as cPanel does ([`crate::click`]) and answers 303 to where the click
//! leads (404 with cPanel's message when there is no such link), so a browser can follow a link
//! into the client area. The accept loop, the connections, the down switch, the latency and the
//! faults are [`crate::http`]'s plumbing, which plesk-sim serves with too.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::click::{self, ClickError, ClickOutcome};
use crate::config::{FaultKind, Profile, SimConfig, clamp_rate};
use crate::faults::Behaviour;
use crate::http::{Admission, Answer, BODY_LIMIT, Plumbing, Running, Service, respond};
use crate::metrics::Counters;
use crate::state::{AccountDetails, Group, Link, ServerState, UserIntegration};
use crate::whm::{self, Params, texts};

/// The body real WHM answers (with HTTP 403) for a missing or invalid API token.
fn access_denied_body() -> Value {
    json!({
        "cpanelresult": {
            "apiversion": "2",
            "error": "Access denied",
            "data": {"reason": "Access denied", "result": "0"},
            "type": "text",
        }
    })
}

/// State shared by the accept loop, every connection and the [`SimHandle`].
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<ServerState>,
    pub(crate) plumbing: Plumbing,
    client: reqwest::Client,
    click_max_wait: Mutex<Duration>,
}

impl Shared {
    fn new(config: &SimConfig, client: reqwest::Client) -> Self {
        Shared {
            state: Mutex::new(ServerState::new(config)),
            plumbing: Plumbing::new(Behaviour::new(config)),
            client,
            click_max_wait: Mutex::new(config.click_max_wait),
        }
    }

    /// Clicks `user`'s link `app` the way cPanel does (see [`crate::click`]).
    async fn click(self: &Arc<Self>, user: &str, app: &str) -> Result<ClickOutcome, ClickError> {
        let link = self
            .lock_state()
            .integrations
            .get(user)
            .and_then(|i| i.links.get(app).cloned())
            .ok_or_else(|| ClickError::NoSuchLink {
                user: user.to_owned(),
                app: app.to_owned(),
            })?;
        let max_wait = *self
            .click_max_wait
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let shared = Arc::clone(self);
        let current_token = move || {
            shared
                .lock_state()
                .integrations
                .get(user)
                .and_then(|i| i.links.get(app))
                .and_then(|l| l.token().map(str::to_owned))
        };
        click::click(&self.client, user, &link, max_wait, current_token).await
    }

    pub(crate) fn lock_state(&self) -> MutexGuard<'_, ServerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Entry point: starts simulated servers.
#[derive(Debug, Clone, Copy)]
pub struct PanelSim;

impl PanelSim {
    /// Binds `config.listen` and starts serving on the current Tokio runtime. The server runs
    /// until [`SimHandle::shutdown`] or until the handle is dropped.
    pub async fn start(config: SimConfig) -> io::Result<SimHandle> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(config.click_timeout)
            .build()
            .map_err(io::Error::other)?;
        let shared = Arc::new(Shared::new(&config, client));
        let server = Running::start(config.listen, Arc::clone(&shared)).await?;
        Ok(SimHandle { shared, server })
    }
}

fn respond_json(status: StatusCode, value: &Value) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    respond(status, "application/json; charset=utf-8", body)
}

fn respond_text(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    respond(status, "text/plain; charset=utf-8", text.to_owned())
}

impl Service for Shared {
    const NAME: &'static str = "panel-sim";

    fn plumbing(&self) -> &Plumbing {
        &self.plumbing
    }

    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Answer {
        handle(self, request).await
    }
}

async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Answer {
    let _in_flight = shared.plumbing.metrics.request_started();

    if request.uri().path() == "/sim/click" {
        return Ok(customer_click(&shared, request.uri().query()).await);
    }
    let fail_after_work = match shared.plumbing.admit().await? {
        Admission::Proceed {
            fail_after_work, ..
        } => fail_after_work,
        Admission::Http500 => {
            return Ok(respond_text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error\n\npanel-sim injected an HTTP 500 fault.\n",
            ));
        }
    };

    let Some(function) = request
        .uri()
        .path()
        .strip_prefix("/json-api/")
        .filter(|f| !f.is_empty() && !f.contains('/'))
        .map(str::to_owned)
    else {
        return Ok(respond_text(StatusCode::NOT_FOUND, "Not Found\n"));
    };
    if request.method() != Method::GET && request.method() != Method::POST {
        return Ok(respond_text(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method Not Allowed\n",
        ));
    }

    if !authorized(&shared, &request) {
        shared.plumbing.metrics.update(|c| c.auth_failures += 1);
        let mut response = respond_json(StatusCode::FORBIDDEN, &access_denied_body());
        response
            .extensions_mut()
            .insert(hyper::ext::ReasonPhrase::from_static(
                b"Forbidden Access denied",
            ));
        return Ok(response);
    }

    let (parts, body) = request.into_parts();
    let form_body = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    let body = match Limited::new(body, BODY_LIMIT).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Ok(respond_text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request body too large or unreadable\n",
            ));
        }
    };
    let answer = answer(
        &shared,
        &function,
        parts.uri.query(),
        form_body.then_some(&body[..]),
    )
    .await;
    if fail_after_work {
        return Ok(respond_text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error\n\npanel-sim injected an HTTP 500 fault after the work.\n",
        ));
    }
    Ok(respond(
        StatusCode::OK,
        "application/json; charset=utf-8",
        answer,
    ))
}

/// `GET /sim/click?user=U&app=A`: the customer clicks a link in their panel; the browser is sent
/// where the click leads.
async fn customer_click(shared: &Arc<Shared>, query: Option<&str>) -> Response<Full<Bytes>> {
    let mut params = Params::new();
    if let Some(query) = query {
        params.extend_from_form(query.as_bytes());
    }
    let user = params.get("user").unwrap_or_default().to_owned();
    let app = params.get("app").unwrap_or_default().to_owned();
    match shared.click(&user, &app).await {
        Ok(outcome) => {
            let mut response = respond(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
            if let Ok(location) = outcome.redirect_url.parse() {
                response
                    .headers_mut()
                    .insert(http::header::LOCATION, location);
            }
            response
        }
        Err(e) => respond_text(StatusCode::NOT_FOUND, &format!("{e}\n")),
    }
}

/// Collects a request's parameters (query string, then the form body when there is one), checks
/// `api.version` and runs the function: the JSON text answered with HTTP 200.
async fn answer(
    shared: &Shared,
    function: &str,
    query: Option<&str>,
    body: Option<&[u8]>,
) -> String {
    let mut params = Params::new();
    if let Some(query) = query {
        params.extend_from_form(query.as_bytes());
    }
    if let Some(body) = body {
        params.extend_from_form(body);
    }
    match params.get("api.version").map(str::trim) {
        Some("1") => whm::dispatch(shared, function, &params).await,
        None | Some("0") => api0(shared, function).to_string(),
        Some(other) => {
            let mut env = whm::envelope(function, Err(texts::api_version_unsupported(other)));
            env["metadata"]["version"] = json!(other);
            env.to_string()
        }
    }
}

/// WHM API 0, as far as simulated: `version` answers the legacy `{"version": …}` shape (what a
/// real server answers to a call without `api.version`); everything else is an error envelope.
fn api0(shared: &Shared, function: &str) -> Value {
    shared.plumbing.metrics.count_call(function);
    if function == "version" {
        return json!({ "version": shared.lock_state().version });
    }
    json!({
        "metadata": {
            "command": function,
            "reason": texts::api_version_missing(),
            "result": 0,
            "version": 0,
        },
        "data": Value::Null,
    })
}

/// Checks `Authorization: whm <user>:<token>` (scheme case-insensitive).
fn authorized(shared: &Shared, request: &Request<Incoming>) -> bool {
    let Some(header) = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, credentials)) = header.trim().split_once(char::is_whitespace) else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("whm") {
        return false;
    }
    let Some((user, token)) = credentials.trim().split_once(':') else {
        return false;
    };
    let state = shared.lock_state();
    user == state.api_user && token == state.api_token
}

/// The handle of a running simulated server. Dropping it stops the server (see
/// [`SimHandle::shutdown`] to wait for that).
#[derive(Debug)]
pub struct SimHandle {
    shared: Arc<Shared>,
    server: Running,
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.shared.plumbing.request_shutdown();
    }
}

impl SimHandle {
    // ---- address and credentials ------------------------------------------------------------

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://<addr>` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// `http://<addr>/json-api/<function>`.
    pub fn url(&self, function: &str) -> String {
        format!("{}/json-api/{function}", self.base_url())
    }

    /// The accepted API username.
    pub fn api_user(&self) -> String {
        self.shared.lock_state().api_user.clone()
    }

    /// The accepted API token.
    pub fn api_token(&self) -> String {
        self.shared.lock_state().api_token.clone()
    }

    /// The `Authorization` header value the server accepts: `whm <user>:<token>`.
    pub fn auth_header(&self) -> String {
        let state = self.shared.lock_state();
        format!("whm {}:{}", state.api_user, state.api_token)
    }

    /// Changes the accepted credentials.
    pub fn set_api_credentials(&self, user: impl Into<String>, token: impl Into<String>) {
        let mut state = self.shared.lock_state();
        state.api_user = user.into();
        state.api_token = token.into();
    }

    // ---- server state -----------------------------------------------------------------------

    /// The version string.
    pub fn version(&self) -> String {
        self.shared.lock_state().version.clone()
    }

    /// Changes the version string (an old version hides the integration functions at once).
    pub fn set_version(&self, version: impl Into<String>) {
        self.shared.lock_state().version = version.into();
    }

    /// The profile.
    pub fn profile(&self) -> Profile {
        self.shared.lock_state().profile.clone()
    }

    /// Changes the profile.
    pub fn set_profile(&self, profile: Profile) {
        self.shared.lock_state().profile = profile;
    }

    /// The accounts: username → domain.
    pub fn accounts(&self) -> BTreeMap<String, String> {
        self.shared.lock_state().accounts.clone()
    }

    /// True when the account exists.
    pub fn has_account(&self, user: &str) -> bool {
        self.shared.lock_state().accounts.contains_key(user)
    }

    /// Adds (or re-domains) an account.
    pub fn add_account(&self, user: impl Into<String>, domain: impl Into<String>) {
        self.shared
            .lock_state()
            .accounts
            .insert(user.into(), domain.into());
    }

    /// Sets what `listaccts` reports of an account (suspended, owner, e-mail).
    pub fn set_account_details(&self, user: impl Into<String>, details: AccountDetails) {
        self.shared
            .lock_state()
            .details
            .insert(user.into(), details);
    }

    /// Removes an account with its integration groups and links; false when it did not exist.
    pub fn remove_account(&self, user: &str) -> bool {
        self.shared.lock_state().remove_account(user)
    }

    /// A snapshot of one user's groups and links (empty when it has none or does not exist).
    pub fn user_integration(&self, user: &str) -> UserIntegration {
        self.shared.lock_state().snapshot(user)
    }

    /// A snapshot of every user's groups and links (users with neither are absent).
    pub fn integrations(&self) -> BTreeMap<String, UserIntegration> {
        self.shared.lock_state().integrations.clone()
    }

    /// One user's links by app.
    pub fn links(&self, user: &str) -> BTreeMap<String, Link> {
        self.user_integration(user).links
    }

    /// One link.
    pub fn link(&self, user: &str, app: &str) -> Option<Link> {
        self.shared
            .lock_state()
            .integrations
            .get(user)
            .and_then(|i| i.links.get(app))
            .cloned()
    }

    /// One user's groups by group ID.
    pub fn groups(&self, user: &str) -> BTreeMap<String, Group> {
        self.user_integration(user).groups
    }

    /// The users that have at least one link, sorted.
    pub fn users_with_links(&self) -> Vec<String> {
        self.shared
            .lock_state()
            .integrations
            .values()
            .filter(|i| !i.links.is_empty())
            .map(|i| i.user.clone())
            .collect()
    }

    /// Total number of links over all users.
    pub fn link_count(&self) -> usize {
        self.shared
            .lock_state()
            .integrations
            .values()
            .map(|i| i.links.len())
            .sum()
    }

    /// Removes every group and link of every user.
    pub fn clear_integrations(&self) {
        self.shared.lock_state().integrations.clear();
    }

    // ---- instrumentation --------------------------------------------------------------------

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        self.shared.plumbing.metrics.snapshot()
    }

    /// Calls of one function so far (batch commands counted individually).
    pub fn calls(&self, function: &str) -> u64 {
        self.counters().calls(function)
    }

    /// HTTP requests so far.
    pub fn http_requests(&self) -> u64 {
        self.counters().http_requests
    }

    /// Injected faults so far.
    pub fn faults_injected(&self) -> u64 {
        self.counters().total_faults()
    }

    /// Zeroes every counter.
    pub fn reset_counters(&self) {
        self.shared.plumbing.metrics.reset();
    }

    /// Waits (without polling) until `pred` holds for the counters or `timeout` passes; returns
    /// whether it held.
    pub async fn wait_for(&self, timeout: Duration, pred: impl FnMut(&Counters) -> bool) -> bool {
        self.shared.plumbing.metrics.wait_for(timeout, pred).await
    }

    // ---- behaviour --------------------------------------------------------------------------

    /// Changes the per-request latency.
    pub fn set_request_latency(&self, latency: Duration) {
        self.shared.plumbing.behaviour().request_latency = latency;
    }

    /// Changes the per-command latency.
    pub fn set_command_latency(&self, latency: Duration) {
        self.shared.plumbing.behaviour().command_latency = latency;
    }

    /// Changes the fault rate (clamped to 0.0–1.0).
    pub fn set_fault_rate(&self, rate: f64) {
        self.shared.plumbing.behaviour().fault_rate = clamp_rate(rate);
    }

    /// Changes the fault kinds drawn from.
    pub fn set_fault_kinds(&self, kinds: impl IntoIterator<Item = FaultKind>) {
        self.shared.plumbing.behaviour().fault_kinds = kinds.into_iter().collect();
    }

    /// Changes how long a timeout fault hangs.
    pub fn set_hang_for(&self, hang_for: Duration) {
        self.shared.plumbing.behaviour().hang_for = hang_for;
    }

    /// Reseeds the fault RNG (`None`: from the OS).
    pub fn reseed(&self, seed: Option<u64>) {
        self.shared.plumbing.behaviour().reseed(seed);
    }

    /// Forces `kind` onto the next `count` HTTP requests (before the random draw is consulted).
    pub fn inject_faults(&self, kind: FaultKind, count: usize) {
        self.shared
            .plumbing
            .behaviour()
            .queued
            .extend(std::iter::repeat_n(kind, count));
    }

    /// Forgets faults forced by [`SimHandle::inject_faults`] that have not happened yet.
    pub fn clear_injected_faults(&self) {
        self.shared.plumbing.behaviour().queued.clear();
    }

    /// Switches the server down (every new connection and every request is closed without an
    /// answer) or back up.
    pub fn set_down(&self, down: bool) {
        self.shared.plumbing.behaviour().down = down;
    }

    /// True when the server is switched down.
    pub fn is_down(&self) -> bool {
        self.shared.plumbing.is_down()
    }

    /// Changes the longest wait between click attempts.
    pub fn set_click_max_wait(&self, wait: Duration) {
        *self
            .shared
            .click_max_wait
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = wait;
    }

    // ---- the click --------------------------------------------------------------------------

    /// Clicks `user`'s link `app` the way cPanel does (see [`crate::click`]).
    pub async fn click(&self, user: &str, app: &str) -> Result<ClickOutcome, ClickError> {
        self.shared.click(user, app).await
    }

    /// The URL a browser opens to click `user`'s link `app` as the customer (`/sim/click`).
    pub fn click_url(&self, user: &str, app: &str) -> String {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("user", user)
            .append_pair("app", app)
            .finish();
        format!("{}/sim/click?{query}", self.base_url())
    }

    // ---- lifecycle --------------------------------------------------------------------------

    /// Stops accepting, lets in-flight requests finish (up to 2 s; hanging faults end at once) and
    /// waits until the server task is gone.
    pub async fn shutdown(self) {
        self.shared.plumbing.request_shutdown();
        self.server.join().await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use rand::Rng;
    use rand::distr::Alphanumeric;

    use super::*;

    /// A sync-shaped `create_integration_group` command.
    fn group_command(user: &str) -> String {
        format!("create_integration_group?user={user}&group_id=panelink&label=Panelink&order=1")
    }

    /// A sync-shaped `create_integration_link` command: link `i` of `user`, with a random token.
    fn link_command(user: &str, i: usize, rng: &mut impl Rng) -> String {
        let token: String = rng
            .sample_iter(Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        format!(
            "create_integration_link?user={user}&app=PANELINK_billing_open_ticket_{i}&label=Open%20Ticket&implements=PANELINK_billing_open_ticket&subscriber_unique_id=sub-0123456789abcdef&token={token}&autologin_token_url=https%3A%2F%2Fbilling.example%2Foauth%2Ftoken%3Fscope%3Dclientarea%253Asso%2Bopen_ticket%26module%3Dcpanel&url=https%3A%2F%2Fbilling.example%2Fsubmitticket.php&group_id=panelink&order=3"
        )
    }

    /// A `batch` body of these commands.
    fn batch_body(commands: impl IntoIterator<Item = String>) -> String {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("api.version", "1");
        for command in commands {
            form.append_pair("command", &command);
        }
        form.finish()
    }

    /// A sync-shaped batch body: per account one `create_integration_group` and 14
    /// `create_integration_link`, `commands` commands in all.
    fn sync_batch_body(accounts: &[String], commands: usize) -> String {
        let mut rng = rand::rng();
        let all = accounts
            .iter()
            .flat_map(|user| (0..15).map(move |i| (user, i)));
        let commands: Vec<String> = all
            .take(commands)
            .map(|(user, i)| {
                if i == 0 {
                    group_command(user)
                } else {
                    link_command(user, i, &mut rng)
                }
            })
            .collect();
        batch_body(commands)
    }

    /// Resident memory per stored link: creates a group for each of 1,430 accounts, then 14 links
    /// for each (20,020) through sync-shaped batches, and divides the growth of the resident set
    /// during the links by their number. Prints, asserts no size. Run it alone, in its own
    /// process: `cargo test -p panel-sim --release --lib -- --ignored --nocapture link_memory`
    #[test]
    #[ignore = "measurement"]
    fn link_memory() {
        const ACCOUNTS: usize = 1430;
        const LINKS: usize = 14;
        /// Resident bytes, from `/proc/self/statm` (4 KiB pages).
        fn resident() -> usize {
            let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
            let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
            pages * 4096
        }
        let config = SimConfig::new().sample_accounts(ACCOUNTS);
        let shared = Shared::new(&config, reqwest::Client::new());
        let accounts: Vec<String> = config.accounts.keys().cloned().collect();
        let mut rng = rand::rng();
        let group_bodies: Vec<String> = accounts
            .chunks(20)
            .map(|chunk| batch_body(chunk.iter().map(|user| group_command(user))))
            .collect();
        let link_bodies: Vec<String> = accounts
            .chunks(20)
            .map(|chunk| {
                let commands: Vec<String> = chunk
                    .iter()
                    .flat_map(|user| (1..=LINKS).map(move |i| (user, i)))
                    .map(|(user, i)| link_command(user, i, &mut rng))
                    .collect();
                batch_body(commands)
            })
            .collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let run = |bodies: &[String]| {
            for body in bodies {
                let answer =
                    runtime.block_on(answer(&shared, "batch", None, Some(body.as_bytes())));
                assert!(
                    answer.ends_with(r#""reason":"OK","result":1,"version":1}}"#),
                    "{answer}"
                );
            }
        };
        run(&group_bodies);
        let before = resident();
        let start = Instant::now();
        run(&link_bodies);
        let wall = start.elapsed();
        let after = resident();
        let links: usize = shared
            .lock_state()
            .integrations
            .values()
            .map(|i| i.links.len())
            .sum();
        assert_eq!(links, ACCOUNTS * LINKS);
        println!(
            "{links} links: {:.0} bytes resident per link, {:.2} µs per link command",
            (after - before) as f64 / links as f64,
            wall.as_secs_f64() * 1e6 / links as f64
        );
    }

    /// Time per command of a 300-command sync-shaped batch, from the collected body to the answer
    /// text, on one thread (so wall time is CPU time). Prints, asserts no timing:
    /// `cargo test -p panel-sim --release --lib -- --ignored --nocapture batch_cpu`
    #[test]
    #[ignore = "measurement"]
    fn batch_cpu_per_command() {
        const COMMANDS: usize = 300;
        const ROUNDS: usize = 200;
        let config = SimConfig::new().sample_accounts(1000);
        let shared = Shared::new(&config, reqwest::Client::new());
        let accounts: Vec<String> = config.accounts.keys().cloned().collect();
        let bodies: Vec<String> = accounts
            .chunks(20)
            .take(10)
            .map(|chunk| sync_batch_body(chunk, COMMANDS))
            .collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut walls = Vec::with_capacity(ROUNDS);
        for round in 0..ROUNDS {
            let body = &bodies[round % bodies.len()];
            if round % bodies.len() == 0 {
                shared.lock_state().integrations.clear();
            }
            let start = Instant::now();
            let answer = runtime.block_on(answer(&shared, "batch", None, Some(body.as_bytes())));
            walls.push(start.elapsed());
            assert!(
                answer.ends_with(r#""reason":"OK","result":1,"version":1}}"#),
                "{answer}"
            );
        }
        walls.sort_unstable();
        let per = |d: Duration| d.as_secs_f64() * 1e6 / COMMANDS as f64;
        println!(
            "per command: best {:.2} µs, median {:.2} µs",
            per(walls[0]),
            per(walls[ROUNDS / 2])
        );
    }
}
