//! The integration test binary: real plugins in the real runtime, against panel-sim.

mod api;
mod cli;
mod crash;
mod harden;
mod harness;
mod import;
mod plesk;
mod plugins;
mod sandbox;
mod sso;
mod storage;
mod sync;
