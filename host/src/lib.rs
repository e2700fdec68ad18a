//! Panelink host library: everything `panelink serve` runs, as modules that own one concern each.
//!
//! - [`adapter`]: the plugin contract as plain host types.
//! - [`runtime`]: the sandboxed plugin runtime (the only module that names wasmtime).

pub mod adapter;
pub mod runtime;
