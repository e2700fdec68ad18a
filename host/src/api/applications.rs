//! Application Links (`configure_application_links`): the applications the loaded plugins serve,
//! their link configuration, their log, and the sync operations the sync engine reports through
//! [`crate::sync_port`] (syncs, the event stream).

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, Authorized, ConfigureLinks};
use super::{AppState, rfc3339};
use crate::model::{DisplayName, EffectiveLink, LinkSetting, Scope, effective_links};
use crate::runtime::Plugin;
use crate::storage;
use crate::sync_port::{Change, Event, SyncDetail, SyncSummary};

/// The active plugin of an application.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginRef {
    /// Plugin name.
    pub name: String,
    pub version: String,
    /// `sha256:<hex>` of the component.
    pub digest: String,
}

/// Server counts of an application.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerCountsView {
    /// Servers of the application.
    pub total: i64,
    /// Of which the last check said they support links.
    pub supported: i64,
    /// Of which the last sync succeeded.
    pub synced: i64,
    /// Of which the last sync failed.
    pub failed: i64,
}

/// A sync operation.
#[derive(Debug, Serialize, ToSchema)]
pub struct SyncView {
    pub id: i64,
    pub application: String,
    /// `enable`, `configure`, `disable`, `service` or `repair`.
    pub kind: String,
    /// `queued`, `running`, `completed`, `completed_with_warnings` or `failed`.
    pub state: String,
    /// Units of work done.
    pub done: u64,
    /// Units of work in total.
    pub total: u64,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

impl From<SyncSummary> for SyncView {
    fn from(s: SyncSummary) -> Self {
        Self {
            id: s.id,
            application: s.application,
            kind: s.kind.as_str().to_owned(),
            state: s.state.as_str().to_owned(),
            done: s.done,
            total: s.total,
            started_at: s.started_at.map(rfc3339),
            finished_at: s.finished_at.map(rfc3339),
        }
    }
}

/// An application.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppView {
    /// Id, e.g. `cpanel`.
    pub id: String,
    /// Name, e.g. `cPanel`.
    pub name: String,
    /// One sentence.
    pub description: String,
    /// Application Links on.
    pub enabled: bool,
    /// How the application's panel signs customers in: `token-exchange` or `static-link`.
    pub sign_in: String,
    /// Whether a static link signs the customer in (only meaningful for `static-link`; off by
    /// default, when a static link leads to the client area's login).
    pub static_sign_in: bool,
    /// `disabled`, `syncing` or `active`.
    pub status: String,
    /// Warning entries in the log.
    pub warnings: i64,
    /// The active plugin.
    pub plugin: PluginRef,
    /// Server counts.
    pub servers: ServerCountsView,
    /// The latest sync, if any.
    pub sync: Option<SyncView>,
}

/// The applications.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppList {
    /// By id.
    pub applications: Vec<AppView>,
}

/// A change to an application.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateApp {
    /// Turn Application Links on or off.
    pub enabled: Option<bool>,
    /// Let the application's static links sign customers in (`static-link` plugins; off by
    /// default: a static link then leads to the client area's login). Pushes nothing.
    pub static_sign_in: Option<bool>,
}

/// A link as shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkView {
    /// Scope, e.g. `clientarea:invoices`.
    pub scope: String,
    /// `ordering`, `support` or `account`.
    pub group: String,
    /// The plugin's label.
    pub default_label: String,
    /// The label shown.
    pub display_name: String,
    /// Shown.
    pub enabled: bool,
    /// 1-based display position.
    pub order: u32,
    /// The panel-specific feature name the plugin gives the link (cPanel's `implements`);
    /// `null` when it gives none.
    pub implements: Option<String>,
    /// The link's icon as the panel shows it, a `data:image/png;base64,…` URL; `null` when the
    /// plugin ships none.
    pub icon: Option<String>,
    /// 1-based position in the plugin's default order (what "reset to defaults" restores, with
    /// the default label and the link shown).
    pub default_order: u32,
}

/// The views of an application's effective links.
fn link_views(plugin: &Plugin, links: Vec<EffectiveLink>) -> Vec<LinkView> {
    use base64::Engine as _;
    links
        .into_iter()
        .map(|l| {
            let default_order = plugin
                .description
                .links
                .iter()
                .position(|spec| spec.scope == l.scope)
                .map_or(u32::MAX, |i| u32::try_from(i + 1).unwrap_or(u32::MAX));
            LinkView {
                scope: l.scope,
                group: l.group.as_str().to_owned(),
                default_label: l.default_label,
                display_name: l.display_name,
                enabled: l.enabled,
                order: l.order,
                implements: l.implements,
                icon: l.icon.map(|png| {
                    format!(
                        "data:image/png;base64,{}",
                        base64::engine::general_purpose::STANDARD.encode(png)
                    )
                }),
                default_order,
            }
        })
        .collect()
}

/// The links.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkList {
    /// In display order.
    pub links: Vec<LinkView>,
}

/// One link setting.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkInput {
    pub scope: String,
    /// 1–100 characters after trimming, no control characters.
    pub display_name: String,
    /// Shown.
    pub enabled: bool,
}

/// The whole link configuration.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutLinks {
    /// Every supported scope exactly once, in display order.
    pub links: Vec<LinkInput>,
}

/// The saved links and the sync that pushes them.
#[derive(Debug, Serialize, ToSchema)]
pub struct SavedLinks {
    /// In display order.
    pub links: Vec<LinkView>,
    /// The sync pushing them (null while the application is disabled).
    pub sync: Option<SyncView>,
}

/// One log entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogEntryView {
    /// When.
    pub at: String,
    /// `debug`, `info`, `notice` or `warning`.
    pub level: String,
    pub message: String,
    /// The server it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_id: Option<i64>,
    /// The service it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_id: Option<i64>,
}

/// The log of the last provisioning operation.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogView {
    /// Oldest first.
    pub entries: Vec<LogEntryView>,
}

/// A scheduled sync.
#[derive(Debug, Serialize, ToSchema)]
pub struct SyncScheduled {
    /// The sync (null until the sync engine takes requests).
    pub sync: Option<SyncView>,
}

/// One server's part of a sync.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerProgressView {
    pub server_id: i64,
    pub state: String,
    pub done: u64,
    pub total: u64,
    /// The last error there.
    pub last_error: Option<String>,
    /// Transient failures since this server's part last made progress.
    pub attempts: i64,
    /// While the server waits to be retried: when the next attempt is due (RFC 3339).
    pub next_attempt_at: Option<String>,
}

/// A sync with its per-server progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct SyncDetailView {
    pub id: i64,
    pub application: String,
    pub kind: String,
    pub state: String,
    pub done: u64,
    pub total: u64,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Per server.
    pub servers: Vec<ServerProgressView>,
}

impl From<SyncDetail> for SyncDetailView {
    fn from(d: SyncDetail) -> Self {
        let s = SyncView::from(d.summary);
        Self {
            id: s.id,
            application: s.application,
            kind: s.kind,
            state: s.state,
            done: s.done,
            total: s.total,
            started_at: s.started_at,
            finished_at: s.finished_at,
            servers: d
                .servers
                .into_iter()
                .map(|p| ServerProgressView {
                    server_id: p.server_id,
                    state: p.state.as_str().to_owned(),
                    done: p.done,
                    total: p.total,
                    last_error: p.last_error,
                    attempts: p.attempts,
                    next_attempt_at: p.next_attempt_at.map(rfc3339),
                })
                .collect(),
        }
    }
}

fn active_plugin(state: &AppState, id: &str) -> Result<std::sync::Arc<Plugin>, ApiError> {
    state
        .catalog()
        .plugins()
        .get(id)
        .ok_or_else(|| ApiError::not_found("application"))
}

async fn app_view(state: &AppState, plugin: &Plugin) -> Result<AppView, ApiError> {
    let id = plugin.id();
    let row = match state.db().application(id).await {
        Ok(row) => row,
        Err(storage::Error::NotFound(_)) => state.db().ensure_application(id).await?,
        Err(e) => return Err(e.into()),
    };
    let counts = state.db().server_counts(id).await?;
    let warnings = state.db().warning_count(id).await?;
    let sync = state.sync().latest(id).await?;
    let status = if state.sync().syncing(id).await? {
        "syncing"
    } else if row.enabled {
        "active"
    } else {
        "disabled"
    };
    Ok(AppView {
        id: id.to_owned(),
        name: plugin.description.name.clone(),
        description: plugin.description.description.clone(),
        enabled: row.enabled,
        sign_in: plugin.description.sign_in.as_str().to_owned(),
        static_sign_in: row.static_sign_in,
        status: status.to_owned(),
        warnings,
        plugin: PluginRef {
            name: plugin.id().to_owned(),
            version: plugin.version().to_owned(),
            digest: plugin.digest.clone(),
        },
        servers: ServerCountsView {
            total: counts.total,
            supported: counts.supported,
            synced: counts.synced,
            failed: counts.failed,
        },
        sync: sync.map(Into::into),
    })
}

async fn links_of(state: &AppState, plugin: &Plugin) -> Result<Vec<EffectiveLink>, ApiError> {
    let saved = state.db().link_settings(plugin.id()).await?;
    Ok(effective_links(&plugin.description.links, &saved))
}

/// The applications of the loaded plugins.
#[utoipa::path(get, path = "/api/v1/applications", tag = "applications",
    security(("bearer" = ["configure_application_links"])),
    responses((status = 200, body = AppList)))]
pub async fn list(
    _auth: Authorized<ConfigureLinks>,
    State(state): State<AppState>,
) -> Result<Json<AppList>, ApiError> {
    let mut applications = Vec::new();
    for plugin in state.catalog().plugins().all() {
        applications.push(app_view(&state, &plugin).await?);
    }
    Ok(Json(AppList { applications }))
}

/// One application.
#[utoipa::path(get, path = "/api/v1/applications/{id}", tag = "applications",
    params(("id" = String, Path, description = "Application id")),
    security(("bearer" = ["configure_application_links"])),
    responses((status = 200, body = AppView), (status = 404, body = ErrorBody)))]
pub async fn get(
    _auth: Authorized<ConfigureLinks>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<AppView>, ApiError> {
    let plugin = active_plugin(&state, &id)?;
    Ok(Json(app_view(&state, &plugin).await?))
}

/// Turn Application Links on or off (the sync engine is asked to push or remove them), and
/// static-link sign-in on or off. At least one of the two.
#[utoipa::path(patch, path = "/api/v1/applications/{id}", tag = "applications",
    request_body = UpdateApp,
    params(("id" = String, Path, description = "Application id")),
    security(("bearer" = ["configure_application_links"])),
    responses(
        (status = 202, body = AppView),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn update(
    auth: Authorized<ConfigureLinks>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateApp>,
) -> Result<(StatusCode, Json<AppView>), ApiError> {
    let plugin = active_plugin(&state, &id)?;
    if body.enabled.is_none() && body.static_sign_in.is_none() {
        return Err(ApiError::invalid_field(
            "enabled",
            "give enabled, static_sign_in or both",
        ));
    }
    let before = state.db().ensure_application(&id).await?;
    if let Some(on) = body.static_sign_in
        && before.static_sign_in != on
    {
        state
            .db()
            .set_application_static_sign_in(&auth.principal.actor(), &id, on)
            .await?;
    }
    if let Some(enabled) = body.enabled
        && before.enabled != enabled
    {
        let (_, change) = state
            .db()
            .set_application_enabled(&auth.principal.actor(), &id, enabled)
            .await?;
        state.sync().request(change).await?;
    }
    Ok((StatusCode::ACCEPTED, Json(app_view(&state, &plugin).await?)))
}

/// The application's links in display order (the plugin's defaults until saved).
#[utoipa::path(get, path = "/api/v1/applications/{id}/links", tag = "applications",
    params(("id" = String, Path, description = "Application id")),
    security(("bearer" = ["configure_application_links"])),
    responses((status = 200, body = LinkList), (status = 404, body = ErrorBody)))]
pub async fn get_links(
    _auth: Authorized<ConfigureLinks>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<LinkList>, ApiError> {
    let plugin = active_plugin(&state, &id)?;
    let links = links_of(&state, &plugin).await?;
    Ok(Json(LinkList {
        links: link_views(&plugin, links),
    }))
}

/// Check a link configuration against the plugin's supported scopes.
fn check_links(plugin: &Plugin, input: &[LinkInput]) -> Result<Vec<LinkSetting>, ApiError> {
    let supported: Vec<&str> = plugin
        .description
        .links
        .iter()
        .map(|l| l.scope.as_str())
        .collect();
    let mut fields = BTreeMap::new();
    let mut seen = HashSet::new();
    let mut settings = Vec::with_capacity(input.len());
    for (i, link) in input.iter().enumerate() {
        let scope = match Scope::parse(&link.scope) {
            Ok(scope) if !supported.contains(&scope.as_str()) => {
                fields.insert(
                    format!("links[{i}].scope"),
                    "this application does not support this scope".to_owned(),
                );
                None
            }
            Ok(_) if !seen.insert(link.scope.clone()) => {
                fields.insert(
                    format!("links[{i}].scope"),
                    "this scope is listed more than once".to_owned(),
                );
                None
            }
            Ok(scope) => Some(scope),
            Err(why) => {
                fields.insert(format!("links[{i}].scope"), why);
                None
            }
        };
        let name = match DisplayName::parse(&link.display_name) {
            Ok(name) => Some(name),
            Err(why) => {
                fields.insert(format!("links[{i}].display_name"), why);
                None
            }
        };
        if let (Some(scope), Some(display_name)) = (scope, name) {
            settings.push(LinkSetting {
                scope,
                display_name,
                enabled: link.enabled,
            });
        }
    }
    let missing: Vec<&str> = supported
        .iter()
        .copied()
        .filter(|s| !input.iter().any(|l| l.scope == *s))
        .collect();
    if !missing.is_empty() {
        fields.insert(
            "links".to_owned(),
            format!(
                "every supported scope must be listed; missing: {}",
                missing.join(", ")
            ),
        );
    }
    if fields.is_empty() {
        Ok(settings)
    } else {
        Err(ApiError::validation(fields))
    }
}

/// Save the whole link configuration (order, names, shown/hidden) at once. While the application
/// is enabled the sync engine is asked to push it; while disabled it is pushed when enabled.
#[utoipa::path(put, path = "/api/v1/applications/{id}/links", tag = "applications",
    request_body = PutLinks,
    params(("id" = String, Path, description = "Application id")),
    security(("bearer" = ["configure_application_links"])),
    responses(
        (status = 202, body = SavedLinks),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn put_links(
    auth: Authorized<ConfigureLinks>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PutLinks>,
) -> Result<(StatusCode, Json<SavedLinks>), ApiError> {
    let plugin = active_plugin(&state, &id)?;
    let settings = check_links(&plugin, &body.links)?;
    state.db().ensure_application(&id).await?;
    let change = state
        .db()
        .save_link_settings(&auth.principal.actor(), &id, &settings)
        .await?;
    let sync = state.sync().request(change).await?.into_iter().next();
    let links = links_of(&state, &plugin).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(SavedLinks {
            links: link_views(&plugin, links),
            sync: sync.map(Into::into),
        }),
    ))
}

/// The log of the application's last provisioning operation, oldest first.
#[utoipa::path(get, path = "/api/v1/applications/{id}/log", tag = "applications",
    params(("id" = String, Path, description = "Application id")),
    security(("bearer" = ["configure_application_links"])),
    responses((status = 200, body = LogView), (status = 404, body = ErrorBody)))]
pub async fn log(
    _auth: Authorized<ConfigureLinks>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<LogView>, ApiError> {
    active_plugin(&state, &id)?;
    let entries = state.db().log(&id).await?;
    Ok(Json(LogView {
        entries: entries
            .into_iter()
            .map(|e| LogEntryView {
                at: rfc3339(e.at),
                level: e.level.as_str().to_owned(),
                message: e.message,
                server_id: e.server_id,
                service_id: e.service_id,
            })
            .collect(),
    }))
}

/// Re-push everything (repair drift). 409 while Application Links are disabled.
#[utoipa::path(post, path = "/api/v1/applications/{id}/sync", tag = "applications",
    params(("id" = String, Path, description = "Application id")),
    security(("bearer" = ["configure_application_links"])),
    responses(
        (status = 202, body = SyncScheduled),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Application Links are disabled", body = ErrorBody),
    ))]
pub async fn sync(
    auth: Authorized<ConfigureLinks>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<SyncScheduled>), ApiError> {
    let plugin = active_plugin(&state, &id)?;
    let app = state.db().ensure_application(&id).await?;
    if !app.enabled {
        return Err(ApiError::conflict(format!(
            "Application Links are disabled for {}; enable them first.",
            plugin.description.name
        )));
    }
    let change = state
        .db()
        .enqueue_change(
            &Change::RepairRequested { application: id },
            Some(auth.principal.admin_id),
        )
        .await?;
    let sync = state.sync().request(change).await?.into_iter().next();
    Ok((
        StatusCode::ACCEPTED,
        Json(SyncScheduled {
            sync: sync.map(Into::into),
        }),
    ))
}

/// One sync with its per-server progress.
#[utoipa::path(get, path = "/api/v1/syncs/{id}", tag = "applications",
    params(("id" = i64, Path, description = "Sync id")),
    security(("bearer" = ["configure_application_links"])),
    responses((status = 200, body = SyncDetailView), (status = 404, body = ErrorBody)))]
pub async fn get_sync(
    _auth: Authorized<ConfigureLinks>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<SyncDetailView>, ApiError> {
    let detail = state
        .sync()
        .get(id)
        .await?
        .ok_or_else(|| ApiError::not_found("sync"))?;
    Ok(Json(detail.into()))
}

/// Server-Sent Events: `application` (an App, whenever it changes) and `sync` (a sync's
/// progress). Ends when the server shuts down.
#[utoipa::path(get, path = "/api/v1/events", tag = "applications",
    security(("bearer" = ["configure_application_links"])),
    responses((status = 200, description = "An event stream", content_type = "text/event-stream")))]
pub async fn events(
    _auth: Authorized<ConfigureLinks>,
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let receiver = state.events().subscribe();
    let stream = futures::stream::unfold((receiver, state), |(mut receiver, state)| async move {
        loop {
            let event = tokio::select! {
                event = receiver.recv() => event,
                () = state.shutdown_token().cancelled() => return None,
            };
            let sse = match event {
                Ok(Event::Application { id }) => {
                    let Some(plugin) = state.catalog().plugins().get(&id) else {
                        continue;
                    };
                    match app_view(&state, &plugin).await {
                        Ok(view) => SseEvent::default().event("application").json_data(view),
                        Err(_) => continue,
                    }
                }
                Ok(Event::Sync(summary)) => SseEvent::default()
                    .event("sync")
                    .json_data(SyncView::from(summary)),
                Err(RecvError::Lagged(missed)) => Ok(SseEvent::default()
                    .event("lagged")
                    .data(format!("{missed} events were dropped; re-read the state"))),
                Err(RecvError::Closed) => return None,
            };
            match sse {
                Ok(sse) => return Some((Ok(sse), (receiver, state))),
                Err(_) => continue,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
