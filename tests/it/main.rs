//! The integration test binary: real plugins in the real runtime, against panel-sim.

mod api;
mod cli;
mod console;
mod crash;
mod fleet;
mod harden;
mod harness;
mod import;
mod live;
mod plesk;
mod plugins;
mod sandbox;
mod serve;
mod sso;
mod storage;
mod swap;
mod sync;
mod vendor_kit;
