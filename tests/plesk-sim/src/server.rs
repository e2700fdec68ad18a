//! The HTTP side: [`PleskSim::start`] binds a listener and serves `POST
//! /enterprise/control/agent.php` with hyper; [`PleskHandle`] is the test's grip on the running
//! server (address, credentials, state, counters, faults, shutdown).
//!
//! Per request, in this order: count it; close it when the server is down; sleep the request
//! latency; draw a fault (panel-sim's lottery: HTTP 500, hang then close, close, or 500 after
//! the work) — before the body is read, so a faulted request changes nothing; route (other paths
//! 404, other methods 405); require `Content-Type: text/xml`; read the credentials
//! (`HTTP_AUTH_LOGIN` + `HTTP_AUTH_PASSWD`, or `KEY`) and answer the packet ([`crate::agent`]).
//! Checkup failures are answered with HTTP 200 and a `<system>` error, as Plesk does.
//! The accept loop, the connections and everything before the route are panel-sim's
//! [`panel_sim::http`] plumbing.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use panel_sim::faults::Behaviour;
use panel_sim::http::{Admission, Answer, BODY_LIMIT, Plumbing, Running, Service, respond};
use panel_sim::metrics::Counters;

use crate::agent::{self, Credentials, codes};
use crate::config::{FaultKind, PleskConfig};
use crate::state::{Button, Customer, PleskState, Subscription};

/// The one path of the XML API.
pub const AGENT_PATH: &str = "/enterprise/control/agent.php";

#[derive(Debug)]
struct Shared {
    state: Mutex<PleskState>,
    plumbing: Plumbing,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, PleskState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Entry point: starts simulated Plesk servers.
#[derive(Debug, Clone, Copy)]
pub struct PleskSim;

impl PleskSim {
    /// Binds `config.listen` and serves on the current Tokio runtime until
    /// [`PleskHandle::shutdown`] or until the handle is dropped.
    pub async fn start(config: PleskConfig) -> io::Result<PleskHandle> {
        let shared = Arc::new(Shared {
            state: Mutex::new(PleskState::new(&config)),
            plumbing: Plumbing::new(Behaviour::new(&config.behaviour_config())),
        });
        let server = Running::start(config.listen, Arc::clone(&shared)).await?;
        Ok(PleskHandle { shared, server })
    }
}

impl Service for Shared {
    const NAME: &'static str = "plesk-sim";

    fn plumbing(&self) -> &Plumbing {
        &self.plumbing
    }

    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Answer {
        handle(self, request).await
    }
}

fn header(request: &Request<Incoming>, name: &str) -> Option<String> {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Answer {
    let _in_flight = shared.plumbing.metrics.request_started();
    let (fail_after_work, operation_latency) = match shared.plumbing.admit().await? {
        Admission::Proceed {
            fail_after_work,
            command_latency,
        } => (fail_after_work, command_latency),
        Admission::Http500 => {
            return Ok(respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                "plesk-sim injected an HTTP 500 fault\n",
            ));
        }
    };
    if request.uri().path() != AGENT_PATH {
        return Ok(respond(StatusCode::NOT_FOUND, "text/plain", "Not Found\n"));
    }
    if request.method() != Method::POST {
        return Ok(respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "Method Not Allowed\n",
        ));
    }
    let xml = header(&request, "content-type").is_some_and(|v| {
        v.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/xml"))
    });
    let credentials = match (
        header(&request, "http_auth_login"),
        header(&request, "http_auth_passwd"),
        header(&request, "key"),
    ) {
        (_, _, Some(key)) => Credentials::Key(key),
        (Some(login), Some(password), None) => Credentials::Login { login, password },
        _ => Credentials::None,
    };
    let body = match Limited::new(request.into_body(), BODY_LIMIT)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Ok(respond(
                StatusCode::PAYLOAD_TOO_LARGE,
                "text/plain",
                "Request too large\n",
            ));
        }
    };
    let answer = if xml {
        if operation_latency > Duration::ZERO {
            let operations = u32::try_from(agent::count_operations(&body)).unwrap_or(u32::MAX);
            tokio::time::sleep(operation_latency.saturating_mul(operations)).await;
        }
        let mut calls = Vec::new();
        let answer = agent::answer(&mut shared.state(), &credentials, &body, |call| {
            calls.push(call.to_owned());
        });
        for call in calls {
            shared.plumbing.metrics.count_call(&call);
        }
        answer
    } else {
        let latest = shared.state().protos.first().cloned().unwrap_or_default();
        let text = "The request's Content-Type must be text/xml.";
        Err((
            codes::PARSE,
            agent::system_packet(&latest, codes::PARSE, text),
        ))
    };
    let body = match answer {
        Ok(body) => body,
        Err((code, body)) => {
            if code == codes::AUTH || code == codes::KEY {
                shared.plumbing.metrics.update(|c| c.auth_failures += 1);
            }
            shared
                .plumbing
                .metrics
                .count_call(&format!("system/{code}"));
            body
        }
    };
    if fail_after_work {
        return Ok(respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            "plesk-sim injected an HTTP 500 fault after the work\n",
        ));
    }
    Ok(respond(StatusCode::OK, "text/xml; charset=UTF-8", body))
}

/// The handle of a running simulated Plesk server. Dropping it stops the server.
#[derive(Debug)]
pub struct PleskHandle {
    shared: Arc<Shared>,
    server: Running,
}

impl Drop for PleskHandle {
    fn drop(&mut self) {
        self.shared.plumbing.request_shutdown();
    }
}

impl PleskHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://<addr>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// `http://<addr>/enterprise/control/agent.php`.
    pub fn agent_url(&self) -> String {
        format!("{}{AGENT_PATH}", self.base_url())
    }

    /// The administrator's login and password.
    pub fn admin(&self) -> (String, String) {
        let state = self.shared.state();
        (state.admin_login.clone(), state.admin_password.clone())
    }

    /// Changes the Plesk version and the accepted protocols.
    pub fn set_version<P: Into<String>>(
        &self,
        version: impl Into<String>,
        protos: impl IntoIterator<Item = P>,
    ) {
        let mut state = self.shared.state();
        state.plesk_version = version.into();
        state.protos = protos.into_iter().map(Into::into).collect();
    }

    /// Adds a customer with subscriptions; returns its id (the existing one for a known login).
    pub fn add_customer<D: AsRef<str>>(
        &self,
        login: &str,
        domains: impl IntoIterator<Item = D>,
    ) -> u32 {
        let mut state = self.shared.state();
        let id = state.add_customer(login);
        for domain in domains {
            state.add_subscription(id, domain.as_ref());
        }
        id
    }

    /// Removes a customer with its subscriptions and buttons.
    pub fn remove_customer(&self, login: &str) -> bool {
        self.shared.state().remove_customer(login)
    }

    /// Suspends or reactivates a customer.
    pub fn set_suspended(&self, login: &str, suspended: bool) {
        let mut state = self.shared.state();
        if let Some(id) = state.customer_id(login)
            && let Some(c) = state.customers.get_mut(&id)
        {
            c.status = if suspended {
                crate::state::STATUS_SUSPENDED
            } else {
                crate::state::STATUS_ACTIVE
            };
        }
    }

    /// The customers, by id.
    pub fn customers(&self) -> Vec<Customer> {
        self.shared.state().customers.values().cloned().collect()
    }

    /// The subscriptions, by id.
    pub fn subscriptions(&self) -> Vec<Subscription> {
        self.shared
            .state()
            .subscriptions
            .values()
            .cloned()
            .collect()
    }

    /// A customer's id by login.
    pub fn customer_id(&self, login: &str) -> Option<u32> {
        self.shared.state().customer_id(login)
    }

    /// Every custom button, by id.
    pub fn buttons(&self) -> Vec<Button> {
        self.shared.state().buttons.values().cloned().collect()
    }

    /// The buttons a customer owns (by login), by id.
    pub fn buttons_of(&self, login: &str) -> Vec<Button> {
        self.shared.state().buttons_of(login)
    }

    /// Adds a button directly (as a customer or another tool would); returns its id.
    pub fn add_button(&self, owner: crate::state::Owner, props: crate::state::ButtonProps) -> u32 {
        self.shared.state().add_button(owner, props, Vec::new())
    }

    /// A snapshot of the counters: `calls` holds `packet` (packets that passed the checkups),
    /// `<operator>/<operation>` per operation run, and `system/<code>` per checkup failure.
    pub fn counters(&self) -> Counters {
        self.shared.plumbing.metrics.snapshot()
    }

    /// Zeroes the counters.
    pub fn reset_counters(&self) {
        self.shared.plumbing.metrics.reset();
    }

    /// Waits until `pred` holds for the counters or `timeout` passes; returns whether it held.
    pub async fn wait_for(&self, timeout: Duration, pred: impl FnMut(&Counters) -> bool) -> bool {
        self.shared.plumbing.metrics.wait_for(timeout, pred).await
    }

    /// Changes the per-request latency.
    pub fn set_request_latency(&self, latency: Duration) {
        self.shared.plumbing.behaviour().request_latency = latency;
    }

    /// Changes the per-operation latency.
    pub fn set_operation_latency(&self, latency: Duration) {
        self.shared.plumbing.behaviour().command_latency = latency;
    }

    /// Changes the fault rate (clamped to 0.0–1.0).
    pub fn set_fault_rate(&self, rate: f64) {
        self.shared.plumbing.behaviour().fault_rate = panel_sim::config::clamp_rate(rate);
    }

    /// Changes the fault kinds drawn from.
    pub fn set_fault_kinds(&self, kinds: impl IntoIterator<Item = FaultKind>) {
        self.shared.plumbing.behaviour().fault_kinds = kinds.into_iter().collect();
    }

    /// Changes how long a timeout fault hangs.
    pub fn set_hang_for(&self, hang_for: Duration) {
        self.shared.plumbing.behaviour().hang_for = hang_for;
    }

    /// Forces `kind` onto the next `count` requests.
    pub fn inject_faults(&self, kind: FaultKind, count: usize) {
        self.shared
            .plumbing
            .behaviour()
            .queued
            .extend(std::iter::repeat_n(kind, count));
    }

    /// Switches the server down (connections closed without an answer) or back up.
    pub fn set_down(&self, down: bool) {
        self.shared.plumbing.behaviour().down = down;
    }

    /// Stops accepting, lets in-flight requests finish (up to 2 s) and waits for the server task.
    pub async fn shutdown(self) {
        self.shared.plumbing.request_shutdown();
        self.server.join().await;
    }
}
