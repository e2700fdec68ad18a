//! `panel-sim`: a simulator of a cPanel & WHM server's WHM API 1 — the part Panelink's cPanel and
//! WP Squared plugins use — so integration tests can tell whether a plugin would work against a real
//! WHM server, and demos can run without one.
//!
//! It answers `/json-api/<function>` over plain HTTP (GET query string or POST form body, both
//! honoured), requires `Authorization: whm <user>:<token>` and `api.version=1`, and implements
//! `version`, `applist`, `get_current_profile`, `listaccts`, the integration functions
//! (`create_integration_group`, `create_integration_link`, `remove_integration_link`,
//! `remove_integration_group`, `list_integration_links`, `list_integration_groups`,
//! `get_integration_link_user_config`, `update_integration_link_token`) and `batch`, with cPanel's
//! validation order and texts. On top it offers what tests need: counters, state snapshots,
//! injected latency and faults, a down switch, and the click cPanel performs against a link's token
//! endpoint.
//!
//! Modules:
//! - [`config`]: [`SimConfig`] (builder) and its value types [`Profile`], [`FaultKind`].
//! - [`state`]: the server's data — accounts, [`Group`]s, [`Link`]s, [`UserIntegration`] — and the
//!   version gates (integration functions from 54, profiles from 76).
//! - [`whm`]: the WHM API 1 functions, envelopes, validation ([`whm::texts`]) and `batch`.
//! - [`server`]: the hyper-based HTTP server, [`PanelSim`] and [`SimHandle`].
//! - [`metrics`]: [`Counters`] and waiting on them.
//! - [`faults`]: latency, the seeded fault lottery, queued faults, the down switch (plesk-sim uses
//!   them too, with [`metrics`]).
//! - [`http`]: the HTTP plumbing both simulators share: accept loop, connections, graceful
//!   shutdown, and per request the down switch, latency and faults before the panel's answer.
//! - [`click`]: the click ([`ClickOutcome`], [`ClickError`]).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use panel_sim::{PanelSim, Profile, SimConfig};
//! let sim = PanelSim::start(SimConfig::new().sample_accounts(3).profile(Profile::Wp2)).await?;
//! println!("WHM at {} ({})", sim.base_url(), sim.auth_header());
//! // … point a plugin at it, then inspect:
//! let bob = sim.user_integration("user1");
//! assert!(bob.links.is_empty());
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

pub mod click;
pub mod config;
pub mod faults;
pub mod http;
pub mod metrics;
pub mod server;
pub mod state;
pub mod whm;

pub use click::{ClickError, ClickOutcome, RedirectSource};
pub use config::{
    DEFAULT_API_TOKEN, DEFAULT_API_USER, DEFAULT_VERSION, FaultKind, OLD_VERSION, Profile,
    SimConfig, sample_accounts,
};
pub use metrics::Counters;
pub use server::{PanelSim, SimHandle};
pub use state::{AccountDetails, Group, Link, UserIntegration, major_version};
pub use whm::{batch_command, envelope, succeeded};
