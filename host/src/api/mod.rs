//! Everything served over HTTP: the only module that knows axum, HTTP and JSON.
//!
//! [`app`] builds the whole router from an [`AppState`]: `/api/v1/*` (per `api.md`),
//! `/healthz`, `/readyz`, `/metrics` and `/api/v1/openapi.json`, plus single sign-on
//! ([`oauth`]: `/oauth/*`), the client portal ([`portal`]: `/portal/*`) and the admin console
//! ([`console`]: `/admin/*`, a client of this API), which are not part of the OpenAPI document.
//! The admin API's routes and their OpenAPI description come from one place: every handler
//! carries a `#[utoipa::path]` and is mounted with `utoipa_axum::routes!`, so the document ([`openapi`]) always names exactly the routes served.
//! Each operation's required permission is its `security` requirement (`bearer: [<permission>]`),
//! and the handler enforces the same one through its [`extract::Authorized`] argument, which runs
//! before the body is read.
//!
//! Requests: JSON bodies through [`extract::ApiJson`] (size limit, 400/413/422 mapping), fields
//! checked into `model` newtypes with [`error::Check`] so a refused request reports every bad
//! field at once and changes nothing. Responses: view structs (`*View`) built from storage types;
//! timestamps as RFC 3339 UTC. Errors: [`error::ApiError`], the contract's error body.
//!
//! Single sign-on and the portal keep their rules in [`crate::sso`]; [`oauth`] and [`portal`]
//! only read requests and write answers. Pages are HTML rendered with maud through [`page`].
//!
//! Submodules: [`admins`] (roles, admins, audit), [`servers`], [`clients`] (clients, users,
//! services), [`applications`] (apps, links, log, syncs, events), [`plugins`], [`ops`] (health,
//! readiness, metrics, the OpenAPI document), [`metrics`], [`oauth`], [`portal`], [`page`].

pub mod admins;
pub mod applications;
pub mod clients;
mod conn;
pub mod console;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod oauth;
pub mod ops;
pub mod page;
pub mod plugins;
pub mod portal;
pub mod servers;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::catalog::Catalog;
use crate::storage::Db;
use crate::sync::SyncRequests;
use crate::sync_port::Events;

pub use error::ApiError;

/// Request size limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// JSON bodies.
    pub max_body_bytes: usize,
    /// Plugin uploads.
    pub max_plugin_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_plugin_bytes: 64 * 1024 * 1024,
        }
    }
}

struct StateInner {
    db: Db,
    catalog: Arc<Catalog>,
    sync: Arc<dyn SyncRequests>,
    events: Events,
    metrics: metrics::Metrics,
    ready: AtomicBool,
    limits: Limits,
    shutdown: CancellationToken,
    sso: crate::sso::Sso,
}

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<StateInner>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("db", &self.inner.db)
            .field("ready", &self.is_ready())
            .finish()
    }
}

impl AppState {
    /// A state, not ready yet (see [`AppState::set_ready`]).
    pub fn new(
        db: Db,
        catalog: Arc<Catalog>,
        sync: Arc<dyn SyncRequests>,
        events: Events,
        limits: Limits,
    ) -> Self {
        Self {
            inner: Arc::new(StateInner {
                db,
                catalog,
                sync,
                events,
                metrics: metrics::Metrics::default(),
                ready: AtomicBool::new(false),
                limits,
                shutdown: CancellationToken::new(),
                sso: crate::sso::Sso::default(),
            }),
        }
    }

    /// The same state with these single sign-on settings (the default ones are for
    /// `http://127.0.0.1:8080`). Call it before the state is cloned.
    pub fn with_sso(mut self, sso: crate::sso::Sso) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("AppState::with_sso is called before the state is shared")
            .sso = sso;
        self
    }

    /// Single sign-on's settings and rate limits, which [`oauth`] and [`portal`] apply.
    pub fn sso(&self) -> &crate::sso::Sso {
        &self.inner.sso
    }

    /// Mark the host ready (migrations applied, plugins loaded) or not.
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::SeqCst);
    }

    /// Whether the host is ready.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::SeqCst)
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The plugin catalog.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.inner.catalog
    }

    /// The sync engine's seam.
    pub fn sync(&self) -> &Arc<dyn SyncRequests> {
        &self.inner.sync
    }

    /// The event bus.
    pub fn events(&self) -> &Events {
        &self.inner.events
    }

    /// Request limits.
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    pub(crate) fn metrics(&self) -> &metrics::Metrics {
        &self.inner.metrics
    }

    /// Cancelled when the server shuts down (ends event streams).
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Panelink admin API",
        description = "Admin API of Panelink: servers, clients, services, Application Links, \
                       plugins, admins. Authenticate with `Authorization: Bearer <token>`; each \
                       operation's security requirement names the permission it needs."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "admins", description = "Roles, admins and the audit log (manage_admins)"),
        (name = "servers", description = "Panel servers (manage_servers)"),
        (name = "clients", description = "Clients, their users and services (manage_clients)"),
        (name = "applications", description = "Application Links (configure_application_links)"),
        (name = "plugins", description = "Plugin versions (manage_plugins)"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
    }
}

fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi_json))
        .routes(routes!(admins::create_role, admins::list_roles))
        .routes(routes!(admins::create_admin, admins::list_admins))
        .routes(routes!(admins::update_admin, admins::delete_admin))
        .routes(routes!(admins::list_tokens, admins::issue_token))
        .routes(routes!(admins::rotate_token))
        .routes(routes!(admins::revoke_token))
        .routes(routes!(admins::audit_log))
        .routes(routes!(servers::create, servers::list))
        .routes(routes!(servers::get, servers::update, servers::delete))
        .routes(routes!(servers::check))
        .routes(routes!(servers::import))
        .routes(routes!(clients::create, clients::list))
        .routes(routes!(clients::get, clients::update))
        .routes(routes!(clients::create_user, clients::list_users))
        .routes(routes!(clients::update_user))
        .routes(routes!(clients::activity))
        .routes(routes!(clients::create_service, clients::list_services))
        .routes(routes!(clients::get_service, clients::update_service))
        .routes(routes!(clients::rotate_credential))
        .routes(routes!(applications::list))
        .routes(routes!(applications::get, applications::update))
        .routes(routes!(applications::get_links, applications::put_links))
        .routes(routes!(applications::log))
        .routes(routes!(applications::sync))
        .routes(routes!(applications::get_sync))
        .routes(routes!(applications::events))
        .routes(routes!(plugins::list, plugins::upload))
        .routes(routes!(plugins::activate))
        .routes(routes!(plugins::rollback))
}

/// The OpenAPI 3 document of every route [`app`] serves, each operation with every error
/// status it can answer (`error::document_errors`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = router().split_for_parts().1;
    error::document_errors(&mut doc);
    doc
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    let (router, _doc) = router().split_for_parts();
    router
        .merge(oauth::router())
        .merge(portal::router())
        .merge(console::router())
        .fallback(ops::fallback)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.limits().max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::observe,
        ))
        .with_state(state)
}

/// Serve [`app`] on `listener` with the connection limits of `http` (header, body and idle
/// timeouts, the connection cap: see `conn`) until `shutdown` resolves, then stop taking
/// connections, end the event streams and let requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    http: crate::config::HttpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let token = state.shutdown_token().clone();
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: finishing requests in flight");
            token.cancel();
            stop.cancel();
        });
    }
    // The connecting address (for the SSO rate limits and the client activity log) is given to
    // each request by `conn`.
    conn::serve(listener, app(state.clone()), http, state, stop).await
}

/// RFC 3339 UTC with milliseconds, from milliseconds since the Unix epoch.
pub(crate) fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let second_of_day = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }
}
