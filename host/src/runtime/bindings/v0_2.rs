//! The generated bindings of `wit/adapter.wit`, in one place, and their conversion to and from
//! the plain host types of [`crate::adapter`]. Nothing outside `runtime` sees a generated type.

use crate::adapter as host;

wasmtime::component::bindgen!({
    world: "adapter",
    path: "../wit",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use self::exports::panelink::adapter::plugin as guest;
pub use self::panelink::adapter::{http, log, types};

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
pub fn server(t: &host::ServerTarget) -> types::Server {
    types::Server {
        hostname: t.hostname.clone(),
        port: t.port,
        secure: t.secure,
        username: t.username.clone(),
    }
}

pub fn settings(s: &host::Settings) -> types::Settings {
    types::Settings {
        app_prefix: s.app_prefix.clone(),
        group_id: s.group_id.clone(),
        group_label: s.group_label.clone(),
        max_commands_per_request: s.max_commands_per_request,
    }
}

/// The generated type of one account's work, moved over (a sync batch carries thousands of
/// strings; they are not copied again at the edge).
pub fn account_work(w: host::AccountWork) -> types::AccountWork {
    types::AccountWork {
        username: w.username,
        domain: w.domain,
        credential: types::Credential {
            subscriber_id: w.credential.subscriber_id,
            secret: w.credential.secret.into_exposed(),
        },
        ensure_group: w.ensure_group,
        links: w
            .links
            .into_iter()
            .map(|l| types::LinkPush {
                scope: l.scope,
                label: l.label,
                order: l.order,
                token_url: l.token_url,
                url: l.url,
            })
            .collect(),
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
