//! Request accounting: one middleware that counts every request by method, route template and
//! status for `/metrics`, writes one log line per request (method, route, status, duration:
//! never headers, bodies or query strings, which may carry tokens), and answers 503 for API
//! calls while the host is still starting.
//!
//! Every label comes from a bounded set, so that no client can grow `/metrics` (or fill the log
//! with words of its choosing): the method is one of HTTP's nine or `OTHER`, the route is a
//! template of the router (`(unmatched)` for anything else), the status is what a handler
//! answered; and past [`MAX_SERIES`] label sets, new ones are only counted in
//! `panelink_http_requests_unlabelled_total`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;

/// The most label sets `panelink_http_requests_total` keeps (far more than the routes × methods
/// × statuses this host answers).
pub const MAX_SERIES: usize = 2000;

/// Counters behind `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<Requests>,
    connections: Connections,
}

/// Counters of the HTTP server's connections (see `api::conn`).
#[derive(Debug, Default)]
struct Connections {
    open: AtomicU64,
    refused: AtomicU64,
    header_timeouts: AtomicU64,
    idle_timeouts: AtomicU64,
}

/// An open connection, counted until dropped.
#[derive(Debug)]
pub(crate) struct OpenConnection<'a>(&'a AtomicU64);

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Default, Clone)]
struct Requests {
    by_labels: BTreeMap<(&'static str, String, u16), RouteStats>,
    /// Requests whose label set did not fit in [`MAX_SERIES`].
    unlabelled: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct RouteStats {
    count: u64,
    seconds: f64,
}

/// A method as a label: one of HTTP's registered methods, else `OTHER`.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

impl Metrics {
    /// A connection is served; counted open until the guard drops.
    pub(crate) fn connection_opened(&self) -> OpenConnection<'_> {
        self.connections.open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(&self.connections.open)
    }

    /// A connection beyond the cap was turned away.
    pub(crate) fn connection_refused(&self) {
        self.connections.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection was closed by a timeout (`header_timeout` or `idle_timeout`).
    pub(crate) fn connection_timed_out(&self, why: &str) {
        let counter = if why == "idle_timeout" {
            &self.connections.idle_timeouts
        } else {
            &self.connections.header_timeouts
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn record(&self, method: &'static str, route: &str, status: u16, seconds: f64) {
        let mut requests = self.requests.lock().expect("metrics lock poisoned");
        let key = (method, route.to_owned(), status);
        let stats = if requests.by_labels.len() < MAX_SERIES {
            requests.by_labels.entry(key).or_default()
        } else if let Some(stats) = requests.by_labels.get_mut(&key) {
            stats
        } else {
            requests.unlabelled += 1;
            return;
        };
        stats.count += 1;
        stats.seconds += seconds;
    }

    /// The Prometheus text exposition.
    pub fn render(
        &self,
        ready: bool,
        plugins: &[(String, String)],
        calls: &[crate::catalog::CallCount],
        cache: Option<crate::runtime::CacheStats>,
    ) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP panelink_build_info Build of this process.");
        let _ = writeln!(out, "# TYPE panelink_build_info gauge");
        let _ = writeln!(
            out,
            "panelink_build_info{{version=\"{}\",contract=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            crate::runtime::CONTRACT_VERSION
        );
        let _ = writeln!(out, "# HELP panelink_ready Whether the host is ready.");
        let _ = writeln!(out, "# TYPE panelink_ready gauge");
        let _ = writeln!(out, "panelink_ready {}", u8::from(ready));
        let _ = writeln!(out, "# HELP panelink_plugin_active Active plugin versions.");
        let _ = writeln!(out, "# TYPE panelink_plugin_active gauge");
        for (name, version) in plugins {
            let _ = writeln!(
                out,
                "panelink_plugin_active{{plugin=\"{}\",version=\"{}\"}} 1",
                escape(name),
                escape(version)
            );
        }
        let Requests {
            by_labels: requests,
            unlabelled,
        } = self.requests.lock().expect("metrics lock poisoned").clone();
        let _ = writeln!(
            out,
            "# HELP panelink_http_requests_total HTTP requests answered."
        );
        let _ = writeln!(out, "# TYPE panelink_http_requests_total counter");
        for ((method, route, status), stats) in &requests {
            let _ = writeln!(
                out,
                "panelink_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {}",
                escape(route),
                stats.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP panelink_http_request_duration_seconds_sum Time spent answering HTTP requests."
        );
        let _ = writeln!(
            out,
            "# TYPE panelink_http_request_duration_seconds_sum counter"
        );
        for ((method, route, status), stats) in &requests {
            let _ = writeln!(
                out,
                "panelink_http_request_duration_seconds_sum{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {:.6}",
                escape(route),
                stats.seconds
            );
        }
        let _ = writeln!(
            out,
            "# HELP panelink_http_requests_unlabelled_total HTTP requests answered beyond the \
             label sets kept."
        );
        let _ = writeln!(
            out,
            "# TYPE panelink_http_requests_unlabelled_total counter"
        );
        let _ = writeln!(out, "panelink_http_requests_unlabelled_total {unlabelled}");
        let c = &self.connections;
        let _ = writeln!(
            out,
            "# HELP panelink_http_connections_open HTTP connections being served."
        );
        let _ = writeln!(out, "# TYPE panelink_http_connections_open gauge");
        let _ = writeln!(
            out,
            "panelink_http_connections_open {}",
            c.open.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP panelink_http_connections_refused_total Connections turned away at the \
             connection cap (http_max_connections)."
        );
        let _ = writeln!(
            out,
            "# TYPE panelink_http_connections_refused_total counter"
        );
        let _ = writeln!(
            out,
            "panelink_http_connections_refused_total {}",
            c.refused.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP panelink_http_connections_timed_out_total Connections closed by a timeout."
        );
        let _ = writeln!(
            out,
            "# TYPE panelink_http_connections_timed_out_total counter"
        );
        for (reason, counter) in [
            ("header_timeout", &c.header_timeouts),
            ("idle_timeout", &c.idle_timeouts),
        ] {
            let _ = writeln!(
                out,
                "panelink_http_connections_timed_out_total{{reason=\"{reason}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP panelink_plugin_calls_total Plugin calls of each loaded version: answered by \
             the plugin (returned) or ended by the runtime (failed: a trap, a deadline, the memory \
             or host-call cap, a denied request)."
        );
        let _ = writeln!(out, "# TYPE panelink_plugin_calls_total counter");
        for count in calls {
            for (outcome, n) in [
                ("returned", count.calls.saturating_sub(count.failed)),
                ("failed", count.failed),
            ] {
                let _ = writeln!(
                    out,
                    "panelink_plugin_calls_total{{plugin=\"{}\",version=\"{}\",outcome=\"{outcome}\"}} {n}",
                    escape(&count.plugin),
                    escape(&count.version)
                );
            }
        }
        if let Some(cache) = cache {
            let _ = writeln!(
                out,
                "# HELP panelink_plugin_cache_total Plugin compilations answered from the compile \
                 cache (hit) or compiled (miss), and cache entries deleted because their seal did \
                 not match (rejected)."
            );
            let _ = writeln!(out, "# TYPE panelink_plugin_cache_total counter");
            for (outcome, count) in [
                ("hit", cache.hits),
                ("miss", cache.misses),
                ("rejected", cache.rejected),
            ] {
                let _ = writeln!(
                    out,
                    "panelink_plugin_cache_total{{outcome=\"{outcome}\"}} {count}"
                );
            }
        }
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The middleware: readiness gate for `/api/`, accounting, one log line.
pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    // Never the method as sent: a client may send any token there.
    let method = method_label(request.method());
    // The route template (`/api/v1/servers/{id}`), never the concrete path or query.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "(unmatched)".to_owned(), |p| p.as_str().to_owned());
    let response =
        if !state.is_ready() && route.starts_with("/api/") && route != "/api/v1/openapi.json" {
            ApiError::unavailable("Panelink is starting; try again in a moment.").into_response()
        } else {
            next.run(request).await
        };
    let status = response.status().as_u16();
    let seconds = started.elapsed().as_secs_f64();
    state.metrics().record(method, &route, status, seconds);
    tracing::info!(
        target: "panelink::http",
        method,
        %route,
        status,
        elapsed_ms = (seconds * 1000.0) as u64,
        "request"
    );
    response
}

#[cfg(test)]
mod tests {
    use axum::http::Method;

    use super::*;

    #[test]
    fn labels_are_bounded() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        assert_eq!(
            method_label(&Method::from_bytes(b"PROBE123").unwrap()),
            "OTHER"
        );
        let metrics = Metrics::default();
        for i in 0..MAX_SERIES + 10 {
            metrics.record("GET", &format!("/r{i}"), 200, 0.0);
        }
        metrics.record("GET", "/r0", 200, 0.0);
        let text = metrics.render(true, &[], &[], None);
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("panelink_http_requests_total{"))
                .count(),
            MAX_SERIES
        );
        assert!(
            text.contains("panelink_http_requests_unlabelled_total 10"),
            "{text}"
        );
        assert!(text.contains("route=\"/r0\",status=\"200\"} 2"));
    }
}
