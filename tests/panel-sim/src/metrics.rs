//! Instrumentation: the [`Counters`] of one simulated server (HTTP requests, calls per WHM
//! function, injected faults, refusals) and the change notification tests wait on instead of
//! sleeping.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::FaultKind;

/// A snapshot of a server's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// HTTP requests received (every request hyper parsed, including faulted and refused ones).
    pub http_requests: u64,
    /// Calls per function name. A `batch` counts once under `batch` and each of its commands
    /// under its own name; calls that failed validation count too, unknown names count under the
    /// name given, and so do WHM API 0 calls (no `api.version`). Requests that never reach a
    /// function — faults, the down switch, auth failures, an unsupported `api.version` — do not.
    pub calls: BTreeMap<String, u64>,
    /// Injected faults per kind.
    pub faults: BTreeMap<FaultKind, u64>,
    /// Requests refused with HTTP 403 for a missing or wrong `Authorization` header.
    pub auth_failures: u64,
    /// Connections or requests dropped because the server was switched down.
    pub down_rejections: u64,
    /// Requests being handled now (received, not yet answered).
    pub in_flight: u64,
    /// The most requests ever handled at once.
    pub max_in_flight: u64,
}

impl Counters {
    /// Calls of one function.
    pub fn calls(&self, function: &str) -> u64 {
        self.calls.get(function).copied().unwrap_or(0)
    }

    /// All calls of all functions (commands inside batches included, `batch` itself included).
    pub fn total_calls(&self) -> u64 {
        self.calls.values().sum()
    }

    /// Injected faults of one kind.
    pub fn faults_of(&self, kind: FaultKind) -> u64 {
        self.faults.get(&kind).copied().unwrap_or(0)
    }

    /// All injected faults.
    pub fn total_faults(&self) -> u64 {
        self.faults.values().sum()
    }
}

/// The live counters plus a change signal.
#[derive(Debug)]
pub struct Metrics {
    counters: Mutex<Counters>,
    changed: watch::Sender<u64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            counters: Mutex::new(Counters::default()),
            changed: watch::Sender::new(0),
        }
    }
}

impl Metrics {
    pub fn update(&self, f: impl FnOnce(&mut Counters)) {
        {
            let mut c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut c);
        }
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn count_call(&self, function: &str) {
        self.update(|c| *c.calls.entry(function.to_owned()).or_default() += 1);
    }

    pub fn count_fault(&self, kind: FaultKind) {
        self.update(|c| *c.faults.entry(kind).or_default() += 1);
    }

    pub fn snapshot(&self) -> Counters {
        self.counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn reset(&self) {
        self.update(|c| {
            *c = Counters {
                in_flight: c.in_flight,
                ..Counters::default()
            }
        });
    }

    /// Counts a request in until the returned guard drops.
    pub fn request_started(&self) -> InFlight<'_> {
        self.update(|c| {
            c.http_requests += 1;
            c.in_flight += 1;
            c.max_in_flight = c.max_in_flight.max(c.in_flight);
        });
        InFlight(self)
    }

    /// Waits until `pred` holds for the counters, or `timeout` passes; returns whether it held.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&Counters) -> bool,
    ) -> bool {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if pred(&self.snapshot()) {
                return true;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                // The sender lives as long as `self`; a timeout ends the wait.
                Ok(Err(_)) | Err(_) => return pred(&self.snapshot()),
            }
        }
    }
}

/// A request being handled (see [`Metrics::request_started`]).
pub struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0
            .update(|c| c.in_flight = c.in_flight.saturating_sub(1));
    }
}
