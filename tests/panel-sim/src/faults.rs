//! Runtime behaviour knobs of a simulated server: injected latency, the fault lottery (a seedable
//! RNG drawing a [`FaultKind`] per HTTP request at the configured rate), faults queued for the next
//! requests, and the "down" switch.
//!
//! The server asks [`Behaviour::decide`] once per HTTP request, before reading the request's
//! parameters, so a faulted request never changes state.

use std::collections::VecDeque;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::{FaultKind, SimConfig, clamp_rate};

/// What the server does to requests besides answering them.
#[derive(Debug)]
pub struct Behaviour {
    pub request_latency: Duration,
    pub command_latency: Duration,
    pub fault_rate: f64,
    pub fault_kinds: Vec<FaultKind>,
    pub hang_for: Duration,
    pub down: bool,
    /// Faults forced onto the next requests, in order, before the lottery is consulted.
    pub queued: VecDeque<FaultKind>,
    rng: StdRng,
}

impl Behaviour {
    pub fn new(config: &SimConfig) -> Self {
        Behaviour {
            request_latency: config.request_latency,
            command_latency: config.command_latency,
            fault_rate: clamp_rate(config.fault_rate),
            fault_kinds: config.fault_kinds.clone(),
            hang_for: config.hang_for,
            down: false,
            queued: VecDeque::new(),
            rng: make_rng(config.seed),
        }
    }

    /// Reseeds the fault RNG.
    pub fn reseed(&mut self, seed: Option<u64>) {
        self.rng = make_rng(seed);
    }

    /// The fault for the next request, if any: a queued one first, else a draw.
    pub fn decide(&mut self) -> Option<FaultKind> {
        if let Some(kind) = self.queued.pop_front() {
            return Some(kind);
        }
        if self.fault_rate <= 0.0 || self.fault_kinds.is_empty() {
            return None;
        }
        let roll: f64 = self.rng.random();
        if roll >= self.fault_rate {
            return None;
        }
        let index = self.rng.random_range(0..self.fault_kinds.len());
        Some(self.fault_kinds[index])
    }
}

fn make_rng(seed: Option<u64>) -> StdRng {
    match seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_os_rng(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_faults() {
        let config = SimConfig::new().fault_rate(0.5).seed(42);
        let mut a = Behaviour::new(&config);
        let mut b = Behaviour::new(&config);
        let xs: Vec<_> = (0..64).map(|_| a.decide()).collect();
        let ys: Vec<_> = (0..64).map(|_| b.decide()).collect();
        assert_eq!(xs, ys);
        let faulted = xs.iter().filter(|x| x.is_some()).count();
        assert!(
            (10..=54).contains(&faulted),
            "{faulted} of 64 faulted at rate 0.5"
        );
    }

    #[test]
    fn rate_bounds_and_queue() {
        let mut never = Behaviour::new(&SimConfig::new().fault_rate(0.0).seed(1));
        assert!((0..100).all(|_| never.decide().is_none()));
        never.queued.push_back(FaultKind::Timeout);
        assert_eq!(never.decide(), Some(FaultKind::Timeout));
        assert_eq!(never.decide(), None);

        let mut always = Behaviour::new(
            &SimConfig::new()
                .fault_rate(1.0)
                .fault_kinds([FaultKind::Http500])
                .seed(1),
        );
        assert!((0..100).all(|_| always.decide() == Some(FaultKind::Http500)));
    }
}
