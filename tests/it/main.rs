//! The integration test binary: real plugins in the real runtime, against panel-sim.

mod plugins;
mod sandbox;
