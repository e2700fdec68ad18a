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
//! - [`sync_port`]: the sync engine's vocabulary (changes, syncs, the record, events), shared
//!   by `api`, `storage` and `sync` and depending on none of them.
//! - [`sync`]: the sync engine: which work a change causes ([`sync::work_for`]), the one entry
//!   point for a change ([`sync::SyncEngine::request`]), the workers that push it.
//! - [`import`]: account import: a panel's hosting accounts as clients and services (API and
//!   command line).
//! - [`api`]: everything served over HTTP, and the only module that knows the web framework,
//!   HTTP and JSON: the admin API, the single sign-on endpoints (`/oauth/token`, `/oauth/sso`)
//!   and the client portal (`/portal`), its pages rendered with maud.
//! - [`sso`]: single sign-on's and the portal's rules as plain Rust: which credential gets a
//!   token, who a token signs in, rate limits, sessions, cookies and CSRF, who may change what.
//! - [`config`], [`cli`], [`boot`]: configuration, the command line, start-up and shutdown.

pub mod adapter;
pub mod api;
pub mod boot;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod import;
pub mod model;
pub mod runtime;
pub mod signing;
pub mod sso;
pub mod storage;
pub mod sync;
pub mod sync_port;

pub use boot::serve;
