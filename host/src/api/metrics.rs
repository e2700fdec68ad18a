//! Request accounting: one middleware that counts every request by method, route template and
//! status for `/metrics`, writes one log line per request (method, route, status, duration:
//! never headers, bodies or query strings, which may carry tokens), and answers 503 for API
//! calls while the host is still starting.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;

/// Counters behind `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), RouteStats>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct RouteStats {
    count: u64,
    seconds: f64,
}

impl Metrics {
    fn record(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut requests = self.requests.lock().expect("metrics lock poisoned");
        let stats = requests
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default();
        stats.count += 1;
        stats.seconds += seconds;
    }

    /// The Prometheus text exposition.
    pub fn render(&self, ready: bool, plugins: &[(String, String)]) -> String {
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
        let requests = self.requests.lock().expect("metrics lock poisoned").clone();
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
    let method = request.method().as_str().to_owned();
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
    state.metrics().record(&method, &route, status, seconds);
    tracing::info!(
        target: "panelink::http",
        %method,
        %route,
        status,
        elapsed_ms = (seconds * 1000.0) as u64,
        "request"
    );
    response
}
