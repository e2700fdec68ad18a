//! Panelink host library: everything `panelink serve` runs, as modules that own one concern each.
//!
//! - [`adapter`]: the plugin contract as plain host types.
//! - [`runtime`]: the sandboxed plugin runtime (the only module that names wasmtime).
//! - [`model`]: domain newtypes that parse (names, e-mails, scopes, statuses, permissions).
//! - [`storage`]: SQLite/PostgreSQL (the only module that writes SQL).
//! - [`crypto`]: secrets at rest and API token hashing.
//! - [`catalog`]: installed plugin versions and the active one per application.
//! - [`signing`]: plugin signatures (ed25519 over the component's digest, application and
//!   version).
//! - [`sync_port`]: the seam between the admin API and the sync engine.
//! - [`api`]: the admin API over HTTP (the only module that knows axum).
//! - [`sso`]: single sign-on from the panels (`/oauth/token`, `/oauth/sso`) and the client
//!   portal (`/portal`); HTTP-facing, so it uses axum too.
//! - [`config`], [`cli`], [`boot`]: configuration, the command line, start-up and shutdown.

pub mod adapter;
pub mod api;
pub mod boot;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod model;
pub mod runtime;
pub mod signing;
pub mod sso;
pub mod storage;
pub mod sync;
pub mod sync_port;

pub use boot::serve;
