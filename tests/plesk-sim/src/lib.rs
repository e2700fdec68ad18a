//! `plesk-sim`: a simulator of a Plesk server's XML API — the part Panelink's Plesk plugin uses —
//! faithful to what `shared/reference/plesk/plesk-xml-api-research.md` establishes, so
//! integration tests can tell whether the plugin would work against a real server.
//!
//! It answers `POST /enterprise/control/agent.php` with `Content-Type: text/xml`, authenticated
//! by `HTTP_AUTH_LOGIN` + `HTTP_AUTH_PASSWD` (the administrator) or `KEY` (a secret key). A
//! request is one `<packet version="…">` of operators, each holding operations, any number of
//! each. Checkup failures (authentication 1001 / 11003, unsupported version 1005, a packet that
//! is not well-formed or breaks the schema 1014, DOCTYPE included) answer one `<system>` error and
//! run nothing; otherwise every operation answers its own `<result>`s with `status`, and on error
//! `errcode` and `errtext`. Simulated operations:
//! - `server`: `get_protos`, `get` (`gen_info`, `stat` with `version/plesk_version`);
//! - `customer`: `get` (filter by `id`, `login`, `guid`, … or all; `gen_info`);
//! - `webspace`: `get` (filter by `name`, `owner-id`, `owner-login`, … or all; `gen_info`);
//! - `ui` (protocol 1.6.3.5 and later): `create-custombutton` (owner, properties in schema order,
//!   optional `url-components`), `get-custombutton` and `delete-custombutton` (filter by
//!   `custombutton-id` or `owner`).
//!
//! On top: latency per request and per operation, panel-sim's fault lottery and queued faults,
//! a down switch, counters per operation, and the state for tests to inspect and change.
//!
//! Modules: [`config`] ([`PleskConfig`]), [`state`] (customers, subscriptions, [`Button`]s),
//! [`agent`] (packets in, packets out, read with `panelink-xml`, the strict reader the
//! host's packet check uses too), [`server`] (HTTP,
//! [`PleskSim`], [`PleskHandle`]).

pub mod agent;
pub mod config;
pub mod server;
pub mod state;

pub use config::{
    CustomerSeed, DEFAULT_ADMIN_LOGIN, DEFAULT_ADMIN_PASSWORD, DEFAULT_PROTOS, DEFAULT_VERSION,
    FaultKind, OLD_VERSION, PleskConfig,
};
pub use panel_sim::Counters;
pub use server::{AGENT_PATH, PleskHandle, PleskSim};
pub use state::{Button, ButtonProps, Customer, Owner, Subscription};
