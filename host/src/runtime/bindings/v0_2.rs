//! Contract `panelink:adapter@0.2.0` (`wit/0.2/adapter.wit`): its generated bindings and the
//! adapter layer onto [`crate::adapter`], whose types follow this version one to one.

use wasmtime::Store;

use super::{Answer, ProvisionInput};
use crate::adapter as host;
use crate::runtime::CallState;

wasmtime::component::bindgen!({
    world: "adapter",
    path: "../wit/0.2",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use self::exports::panelink::adapter::plugin as guest;
pub use self::panelink::adapter::{http, log, types};

/// This version.
pub const VERSION: &str = "0.2.0";

impl From<types::LinkGroup> for host::LinkGroup {
    fn from(g: types::LinkGroup) -> Self {
        match g {
            types::LinkGroup::Ordering => host::LinkGroup::Ordering,
            types::LinkGroup::Support => host::LinkGroup::Support,
            types::LinkGroup::Account => host::LinkGroup::Account,
        }
    }
}

impl From<types::Description> for host::Description {
    fn from(d: types::Description) -> Self {
        host::Description {
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
                    group: l.group.into(),
                    default_label: l.default_label,
                    implements: l.implements,
                    destination: l.destination,
                    icon: l.icon,
                })
                .collect(),
            allowed_requests: d
                .allowed_requests
                .into_iter()
                .map(|r| host::AllowedRequest {
                    method: r.method.into(),
                    path: r.path,
                    calls: r.calls.map(|t| match t {
                        types::Tunnel::WhmBatch(calls) => host::Tunnel::WhmBatch(calls),
                        types::Tunnel::XmlPacket(calls) => host::Tunnel::XmlPacket(calls),
                    }),
                })
                .collect(),
            auth: match d.auth {
                types::PanelAuth::SchemeUserToken(scheme) => {
                    host::PanelAuth::SchemeUserToken(scheme)
                }
                types::PanelAuth::Bearer => host::PanelAuth::Bearer,
                types::PanelAuth::Basic => host::PanelAuth::Basic,
                types::PanelAuth::LoginHeaders((login, token)) => {
                    host::PanelAuth::LoginHeaders(login, token)
                }
                types::PanelAuth::TokenHeader(name) => host::PanelAuth::TokenHeader(name),
            },
            sign_in: match d.sign_in {
                types::SignInStyle::TokenExchange => host::SignInStyle::TokenExchange,
                types::SignInStyle::StaticLink => host::SignInStyle::StaticLink,
            },
            limits: host::Limits {
                accounts_per_call: d.limits.accounts_per_call,
                operations_per_request: d.limits.operations_per_request,
            },
        }
    }
}

impl From<types::Method> for host::HttpMethod {
    fn from(m: types::Method) -> Self {
        match m {
            types::Method::Get => host::HttpMethod::Get,
            types::Method::Post => host::HttpMethod::Post,
        }
    }
}

/// The server as the plugin sees it: without the token.
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
    }
}

fn template(t: host::LinkTemplate) -> types::LinkTemplate {
    types::LinkTemplate {
        scope: t.scope,
        label: t.label,
        order: t.order,
        token_url: t.token_url,
        url: t.url,
    }
}

/// The generated type of one account's work, moved over (a sync batch carries thousands of
/// strings; they are not copied again at the edge).
fn account_work(w: host::AccountWork) -> types::AccountWork {
    types::AccountWork {
        username: w.username,
        domain: w.domain,
        service_id: w.service_id,
        credential: match w.credential {
            host::Credential::Token {
                subscriber_id,
                secret,
            } => types::Credential::Token(types::TokenCredential {
                subscriber_id,
                secret: secret.into_exposed(),
            }),
            host::Credential::LinkHandle(handle) => {
                types::Credential::LinkHandle(handle.into_exposed())
            }
        },
        ensure_group: w.ensure_group,
        links: w.links,
        remove: w.remove,
    }
}

impl From<types::Operation> for host::Operation {
    fn from(o: types::Operation) -> Self {
        match o {
            types::Operation::EnsureGroup => host::Operation::EnsureGroup,
            types::Operation::UpsertLink(s) => host::Operation::UpsertLink(s),
            types::Operation::RemoveLink(s) => host::Operation::RemoveLink(s),
            types::Operation::RemoveGroup => host::Operation::RemoveGroup,
        }
    }
}

impl From<types::AccountOutcome> for host::AccountOutcome {
    fn from(o: types::AccountOutcome) -> Self {
        host::AccountOutcome {
            username: o.username,
            results: o
                .results
                .into_iter()
                .map(|r| host::OperationResult {
                    op: r.op.into(),
                    error: r.error,
                })
                .collect(),
        }
    }
}

impl From<types::ListedLink> for host::ListedLink {
    fn from(l: types::ListedLink) -> Self {
        host::ListedLink {
            app: l.app,
            scope: l.scope,
        }
    }
}

impl From<types::PanelAccount> for host::PanelAccount {
    fn from(a: types::PanelAccount) -> Self {
        host::PanelAccount {
            username: a.username,
            domain: a.domain,
            suspended: a.suspended,
            email: a.email,
            owner: a.owner,
        }
    }
}

impl From<guest::Support> for host::Support {
    fn from(s: guest::Support) -> Self {
        host::Support {
            supported: s.supported,
            detail: s.detail,
        }
    }
}

impl From<types::PluginError> for host::PluginError {
    fn from(e: types::PluginError) -> Self {
        match e {
            types::PluginError::Transient(m) => host::PluginError::Transient(m),
            types::PluginError::Panel(m) => host::PluginError::Panel(m),
            types::PluginError::Unsupported(m) => host::PluginError::Unsupported(m),
            types::PluginError::InvalidInput(m) => host::PluginError::InvalidInput(m),
        }
    }
}

impl From<log::Level> for host::LogLevel {
    fn from(l: log::Level) -> Self {
        match l {
            log::Level::Debug => host::LogLevel::Debug,
            log::Level::Info => host::LogLevel::Info,
            log::Level::Notice => host::LogLevel::Notice,
            log::Level::Warning => host::LogLevel::Warning,
        }
    }
}

/// A `result<list<T>, plugin-error>` in host types.
fn list<T, H: From<T>>(r: Result<Vec<T>, types::PluginError>) -> Result<Vec<H>, host::PluginError> {
    r.map(|v| v.into_iter().map(Into::into).collect())
        .map_err(Into::into)
}

pub(super) async fn describe(
    a: &Adapter,
    store: &mut Store<CallState>,
) -> wasmtime::Result<host::Description> {
    Ok(a.panelink_adapter_plugin()
        .call_describe(store)
        .await?
        .into())
}

pub(super) async fn check_server(
    a: &Adapter,
    store: &mut Store<CallState>,
    target: &host::ServerTarget,
) -> Answer<host::Support> {
    Ok(a.panelink_adapter_plugin()
        .call_check_server(store, &server(target))
        .await?
        .map(Into::into)
        .map_err(Into::into))
}

pub(super) async fn provision(
    a: &Adapter,
    store: &mut Store<CallState>,
    input: ProvisionInput,
) -> Answer<Vec<host::AccountOutcome>> {
    let templates: Vec<_> = input.templates.into_iter().map(template).collect();
    let accounts: Vec<_> = input.accounts.into_iter().map(account_work).collect();
    Ok(list(
        a.panelink_adapter_plugin()
            .call_provision(
                store,
                &server(&input.server),
                &settings(&input.settings),
                &templates,
                &accounts,
            )
            .await?,
    ))
}

pub(super) async fn deprovision(
    a: &Adapter,
    store: &mut Store<CallState>,
    target: &host::ServerTarget,
    s: &host::Settings,
    usernames: &[String],
) -> Answer<Vec<host::AccountOutcome>> {
    Ok(list(
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
    Ok(list(
        a.panelink_adapter_plugin()
            .call_list_links(store, &server(target), &settings(s), username)
            .await?,
    ))
}

pub(super) async fn list_accounts(
    a: &Adapter,
    store: &mut Store<CallState>,
    target: &host::ServerTarget,
) -> Answer<Vec<host::PanelAccount>> {
    Ok(list(
        a.panelink_adapter_plugin()
            .call_list_accounts(store, &server(target))
            .await?,
    ))
}
