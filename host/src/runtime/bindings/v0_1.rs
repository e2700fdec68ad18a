//! Contract `panelink:adapter@0.1.0` (`wit/0.1/adapter.wit`), kept running: its generated
//! bindings and the adapter layer onto [`crate::adapter`].
//!
//! What 0.1 lacks, the layer supplies:
//! - **Requests.** A 0.1 description declares none; the plugin is granted exactly the WHM API 1
//!   calls that 0.1's operations map to ([`granted_requests`]): the support check's `applist`,
//!   `version` and `get_current_profile`, `list_integration_links`, and `batch` carrying the
//!   four integration commands, all POSTed. The HTTP gate enforces them like any declaration.
//! - **Sign-in and limits.** Always `token-exchange`; 300 accounts per call and 300 operations
//!   per request ([`LIMITS`], 0.1's `max-commands-per-request`).
//! - **Link templates.** 0.1 takes every account's links whole: the layer expands the call's
//!   templates per account (`{service-id}` filled in) into 0.1's `link-push`es.
//! - **`list-accounts`.** Absent: answered `unsupported` without calling the plugin.
//!
//! 0.1's `http` and `log` imports are served by the same code as 0.2's, through a conversion.

use std::collections::HashMap;

use wasmtime::Store;

use super::{Answer, ProvisionInput, v0_2};
use crate::adapter as host;
use crate::runtime::CallState;

wasmtime::component::bindgen!({
    world: "adapter",
    path: "../wit/0.1",
    imports: { default: async | trappable },
    exports: { default: async },
});

use self::exports::panelink::adapter::plugin as guest;
use self::panelink::adapter::{http, log, types};

/// This version.
pub const VERSION: &str = "0.1.0";

/// The limits of every 0.1 plugin: 0.1's default `max-commands-per-request`, and as many
/// accounts per call.
pub const LIMITS: host::Limits = host::Limits {
    accounts_per_call: 300,
    operations_per_request: 300,
};

/// The WHM API 1 functions 0.1 plugins call one request each (`POST /json-api/<function>`).
const DIRECT_FUNCTIONS: [&str; 4] = [
    "applist",
    "version",
    "get_current_profile",
    "list_integration_links",
];

/// The functions 0.1 plugins send as commands of a `batch` request.
const BATCH_FUNCTIONS: [&str; 4] = [
    "create_integration_group",
    "create_integration_link",
    "remove_integration_link",
    "remove_integration_group",
];

/// The requests a 0.1 plugin is granted: exactly what 0.1's operations map to on WHM.
pub fn granted_requests() -> Vec<host::AllowedRequest> {
    DIRECT_FUNCTIONS
        .iter()
        .map(|f| host::AllowedRequest {
            method: host::HttpMethod::Post,
            path: format!("/json-api/{f}"),
            calls: None,
        })
        .chain(std::iter::once(host::AllowedRequest {
            method: host::HttpMethod::Post,
            path: "/json-api/batch".into(),
            calls: Some(host::Tunnel::WhmBatch(
                BATCH_FUNCTIONS.iter().map(|f| (*f).to_owned()).collect(),
            )),
        }))
        .collect()
}

impl types::Host for CallState {}

impl http::Host for CallState {
    async fn send(
        &mut self,
        req: http::Request,
    ) -> wasmtime::Result<Result<http::Response, http::Error>> {
        let req = v0_2::http::Request {
            method: match req.method {
                http::Method::Get => v0_2::types::Method::Get,
                http::Method::Post => v0_2::types::Method::Post,
            },
            url: req.url,
            headers: req.headers,
            body: req.body,
        };
        let answer = <CallState as v0_2::http::Host>::send(self, req).await?;
        Ok(answer
            .map(|r| http::Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            })
            .map_err(|e| match e {
                v0_2::http::Error::Timeout => http::Error::Timeout,
                v0_2::http::Error::Connection(m) => http::Error::Connection(m),
                v0_2::http::Error::TooLarge(n) => http::Error::TooLarge(n),
                v0_2::http::Error::Invalid(m) => http::Error::Invalid(m),
            }))
    }
}

impl log::Host for CallState {
    async fn write(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            log::Level::Debug => v0_2::log::Level::Debug,
            log::Level::Info => v0_2::log::Level::Info,
            log::Level::Notice => v0_2::log::Level::Notice,
            log::Level::Warning => v0_2::log::Level::Warning,
        };
        <CallState as v0_2::log::Host>::write(self, level, message).await
    }
}

fn server(t: &host::ServerTarget) -> types::Server {
    types::Server {
        hostname: t.hostname.clone(),
        port: t.port,
        secure: t.secure,
        username: t.username.clone(),
    }
}

fn settings(s: &host::Settings) -> types::Settings {
    types::Settings {
        app_prefix: s.app_prefix.clone(),
        group_id: s.group_id.clone(),
        group_label: s.group_label.clone(),
        max_commands_per_request: LIMITS.operations_per_request,
    }
}

fn error(e: types::PluginError) -> host::PluginError {
    match e {
        types::PluginError::Transient(m) => host::PluginError::Transient(m),
        types::PluginError::Panel(m) => host::PluginError::Panel(m),
        types::PluginError::Unsupported(m) => host::PluginError::Unsupported(m),
        types::PluginError::InvalidInput(m) => host::PluginError::InvalidInput(m),
    }
}

fn outcome(o: types::AccountOutcome) -> host::AccountOutcome {
    host::AccountOutcome {
        username: o.username,
        results: o
            .results
            .into_iter()
            .map(|r| host::OperationResult {
                op: match r.op {
                    types::Operation::EnsureGroup => host::Operation::EnsureGroup,
                    types::Operation::UpsertLink(s) => host::Operation::UpsertLink(s),
                    types::Operation::RemoveLink(s) => host::Operation::RemoveLink(s),
                    types::Operation::RemoveGroup => host::Operation::RemoveGroup,
                },
                error: r.error,
            })
            .collect(),
    }
}

fn outcomes(
    r: Result<Vec<types::AccountOutcome>, types::PluginError>,
) -> Result<Vec<host::AccountOutcome>, host::PluginError> {
    r.map(|v| v.into_iter().map(outcome).collect())
        .map_err(error)
}

pub(super) async fn describe(
    a: &Adapter,
    store: &mut Store<CallState>,
) -> wasmtime::Result<host::Description> {
    let d = a.panelink_adapter_plugin().call_describe(store).await?;
    Ok(host::Description {
        id: d.id,
        name: d.name,
        version: d.version,
        description: d.description,
        contract_version: d.contract_version,
        links: d
            .links
            .into_iter()
            .map(|l| host::LinkSpec {
                scope: l.scope,
                group: match l.group {
                    types::LinkGroup::Ordering => host::LinkGroup::Ordering,
                    types::LinkGroup::Support => host::LinkGroup::Support,
                    types::LinkGroup::Account => host::LinkGroup::Account,
                },
                default_label: l.default_label,
                implements: Some(l.implements).filter(|i| !i.is_empty()),
                destination: l.destination,
                icon: None,
            })
            .collect(),
        allowed_requests: granted_requests(),
        // 0.1 was WHM's contract: its servers take WHM API tokens.
        auth: host::PanelAuth::SchemeUserToken("whm".into()),
        sign_in: host::SignInStyle::TokenExchange,
        limits: LIMITS,
    })
}

pub(super) async fn check_server(
    a: &Adapter,
    store: &mut Store<CallState>,
    target: &host::ServerTarget,
) -> Answer<host::Support> {
    Ok(a.panelink_adapter_plugin()
        .call_check_server(store, &server(target))
        .await?
        .map(|s: guest::Support| host::Support {
            supported: s.supported,
            detail: s.detail,
        })
        .map_err(error))
}

/// 0.1's work items: every account's links whole, from the call's templates. An account that
/// names a scope the call has no template for, or carries a link handle (0.1 is token-exchange
/// only), gets that as its error without reaching the plugin.
pub(super) async fn provision(
    a: &Adapter,
    store: &mut Store<CallState>,
    input: ProvisionInput,
) -> Answer<Vec<host::AccountOutcome>> {
    let templates: HashMap<&str, &host::LinkTemplate> = input
        .templates
        .iter()
        .map(|t| (t.scope.as_str(), t))
        .collect();
    let mut refused: Vec<(usize, host::AccountOutcome)> = Vec::new();
    let mut work = Vec::with_capacity(input.accounts.len());
    for (i, w) in input.accounts.into_iter().enumerate() {
        let problem = |message: String| host::AccountOutcome {
            username: w.username.clone(),
            results: vec![host::OperationResult {
                op: host::Operation::EnsureGroup,
                error: Some(message),
            }],
        };
        let (subscriber_id, secret) = match w.credential {
            host::Credential::Token {
                subscriber_id,
                secret,
            } => (subscriber_id, secret),
            host::Credential::LinkHandle(_) => {
                refused.push((
                    i,
                    problem("contract 0.1.0 plugins take token credentials only".into()),
                ));
                continue;
            }
        };
        let mut links = Vec::with_capacity(w.links.len());
        for scope in &w.links {
            let Some(t) = templates.get(scope.as_str()) else {
                refused.push((i, problem(format!("no link template for scope {scope:?}"))));
                links.clear();
                break;
            };
            links.push(types::LinkPush {
                scope: t.scope.clone(),
                label: t.label.clone(),
                order: t.order,
                token_url: t.token_url.clone(),
                url: t.url_for(&w.service_id, None),
            });
        }
        if refused.last().is_some_and(|(j, _)| *j == i) {
            continue;
        }
        work.push(types::AccountWork {
            username: w.username,
            domain: w.domain,
            credential: types::Credential {
                subscriber_id,
                secret: secret.into_exposed(),
            },
            ensure_group: w.ensure_group,
            links,
            remove: w.remove,
        });
    }
    let answered = if work.is_empty() {
        Ok(Vec::new())
    } else {
        outcomes(
            a.panelink_adapter_plugin()
                .call_provision(
                    store,
                    &server(&input.server),
                    &settings(&input.settings),
                    &work,
                )
                .await?,
        )
    };
    // The refused accounts' outcomes back in input order.
    Ok(answered.map(|mut answered| {
        for (i, outcome) in refused {
            answered.insert(i.min(answered.len()), outcome);
        }
        answered
    }))
}

pub(super) async fn deprovision(
    a: &Adapter,
    store: &mut Store<CallState>,
    target: &host::ServerTarget,
    s: &host::Settings,
    usernames: &[String],
) -> Answer<Vec<host::AccountOutcome>> {
    Ok(outcomes(
        a.panelink_adapter_plugin()
            .call_deprovision(store, &server(target), &settings(s), usernames)
            .await?,
    ))
}

pub(super) async fn list_links(
    a: &Adapter,
    store: &mut Store<CallState>,
    target: &host::ServerTarget,
    s: &host::Settings,
    username: &str,
) -> Answer<Vec<host::ListedLink>> {
    Ok(a.panelink_adapter_plugin()
        .call_list_links(store, &server(target), &settings(s), username)
        .await?
        .map(|v| {
            v.into_iter()
                .map(|l| host::ListedLink {
                    app: l.app,
                    scope: l.scope,
                })
                .collect()
        })
        .map_err(error))
}
