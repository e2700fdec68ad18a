//! The component glue: the host's imports as a [`Transport`], and the `plugin` export for any
//! [`Flavor`]. Only compiled for `wasm32`.

use std::marker::PhantomData;

use crate::api::{HttpError, HttpResponse, Transport};
use crate::bindings::exports::panelink::adapter::plugin as exports;
use crate::bindings::panelink::adapter::{http, log, types};
use crate::flavor::Flavor;
use crate::{model, plugin};

/// A WHM-based application: its [`Flavor`] as a constant.
pub trait Application: 'static {
    /// What the plugin describes itself as and which server profiles it serves.
    const FLAVOR: Flavor;
}

/// The `plugin` export of application `A`; see [`export_whm_plugin!`](crate::export_whm_plugin).
#[derive(Debug)]
pub struct WhmPlugin<A>(PhantomData<A>);

/// The host's `http` and `log` imports.
#[derive(Debug)]
struct Host;

impl Transport for Host {
    fn post_form(&mut self, url: &str, body: Vec<u8>) -> Result<HttpResponse, HttpError> {
        post(
            url,
            "application/x-www-form-urlencoded",
            "application/json",
            body,
        )
    }

    fn debug(&mut self, message: &str) {
        log::write(log::Level::Debug, message);
    }
}

/// POSTs `body` through the host's `http` import (the host adds the server's credentials).
pub fn post(
    url: &str,
    content_type: &str,
    accept: &str,
    body: Vec<u8>,
) -> Result<HttpResponse, HttpError> {
    let request = http::Request {
        method: http::Method::Post,
        url: url.to_owned(),
        headers: vec![
            ("content-type".to_owned(), content_type.to_owned()),
            ("accept".to_owned(), accept.to_owned()),
        ],
        body,
    };
    match http::send(&request) {
        Ok(response) => Ok(HttpResponse {
            status: response.status,
            body: response.body,
        }),
        Err(http::Error::Timeout) => Err(HttpError::Timeout),
        Err(http::Error::Connection(m)) => Err(HttpError::Connection(m)),
        Err(http::Error::TooLarge(cap)) => Err(HttpError::TooLarge(cap)),
        Err(http::Error::Invalid(m)) => Err(HttpError::Invalid(m)),
    }
}

/// The contract's server as the model's.
pub fn server(s: types::Server) -> model::Server {
    model::Server {
        hostname: s.hostname,
        port: s.port,
        secure: s.secure,
        username: s.username,
    }
}

/// The call's settings, with the plugin's own cap on commands per `batch`.
fn settings(s: types::Settings) -> model::Settings {
    model::Settings {
        app_prefix: s.app_prefix,
        group_id: s.group_id,
        group_label: s.group_label,
        max_commands_per_request: crate::LIMITS.operations_per_request,
    }
}

fn template(t: types::LinkTemplate) -> model::LinkTemplate {
    model::LinkTemplate {
        scope: t.scope,
        label: t.label,
        order: t.order,
        token_url: t.token_url,
        url: t.url,
    }
}

/// The call's link templates as the model's.
pub fn templates(t: Vec<types::LinkTemplate>) -> Vec<model::LinkTemplate> {
    t.into_iter().map(template).collect()
}

fn account(a: types::AccountWork) -> model::AccountWork {
    model::AccountWork {
        username: a.username,
        domain: a.domain,
        service_id: a.service_id,
        credential: match a.credential {
            types::Credential::Token(t) => model::Credential::Token {
                subscriber_id: t.subscriber_id,
                secret: t.secret,
            },
            types::Credential::LinkHandle(h) => model::Credential::LinkHandle(h),
        },
        ensure_group: a.ensure_group,
        links: a.links,
        remove: a.remove,
    }
}

/// The call's accounts as the model's.
pub fn accounts(a: Vec<types::AccountWork>) -> Vec<model::AccountWork> {
    a.into_iter().map(account).collect()
}

fn outcome(o: model::AccountOutcome) -> types::AccountOutcome {
    types::AccountOutcome {
        username: o.username,
        results: o
            .results
            .into_iter()
            .map(|r| types::OperationResult {
                op: match r.op {
                    model::Operation::EnsureGroup => types::Operation::EnsureGroup,
                    model::Operation::UpsertLink(s) => types::Operation::UpsertLink(s),
                    model::Operation::RemoveLink(s) => types::Operation::RemoveLink(s),
                    model::Operation::RemoveGroup => types::Operation::RemoveGroup,
                },
                error: r.error,
            })
            .collect(),
    }
}

fn error(e: model::PluginError) -> types::PluginError {
    match e {
        model::PluginError::Transient(m) => types::PluginError::Transient(m),
        model::PluginError::Panel(m) => types::PluginError::Panel(m),
        model::PluginError::Unsupported(m) => types::PluginError::Unsupported(m),
        model::PluginError::InvalidInput(m) => types::PluginError::InvalidInput(m),
    }
}

/// `check-server`'s answer in the contract's types.
pub fn support(
    r: Result<model::Support, model::PluginError>,
) -> Result<exports::Support, types::PluginError> {
    r.map(|s| exports::Support {
        supported: s.supported,
        detail: s.detail,
    })
    .map_err(error)
}

/// `provision`'s and `deprovision`'s answer in the contract's types.
pub fn outcomes(
    r: Result<Vec<model::AccountOutcome>, model::PluginError>,
) -> Result<Vec<types::AccountOutcome>, types::PluginError> {
    r.map(|o| o.into_iter().map(outcome).collect())
        .map_err(error)
}

/// `list-links`' answer in the contract's types.
pub fn listed_links(
    r: Result<Vec<model::ListedLink>, model::PluginError>,
) -> Result<Vec<types::ListedLink>, types::PluginError> {
    r.map(|l| {
        l.into_iter()
            .map(|l| types::ListedLink {
                app: l.app,
                scope: l.scope,
            })
            .collect()
    })
    .map_err(error)
}

/// `list-accounts`' answer in the contract's types.
pub fn panel_accounts(
    r: Result<Vec<model::PanelAccount>, model::PluginError>,
) -> Result<Vec<types::PanelAccount>, types::PluginError> {
    r.map(|accounts| {
        accounts
            .into_iter()
            .map(|a| types::PanelAccount {
                username: a.username,
                domain: a.domain,
                suspended: a.suspended,
                email: a.email,
                owner: a.owner,
            })
            .collect()
    })
    .map_err(error)
}

fn group(g: model::LinkGroup) -> types::LinkGroup {
    match g {
        model::LinkGroup::Ordering => types::LinkGroup::Ordering,
        model::LinkGroup::Support => types::LinkGroup::Support,
        model::LinkGroup::Account => types::LinkGroup::Account,
    }
}

impl<A: Application> exports::Guest for WhmPlugin<A> {
    fn describe() -> types::Description {
        wit_description(A::FLAVOR.describe())
    }

    fn check_server(s: types::Server) -> Result<exports::Support, types::PluginError> {
        support(plugin::check_server(&mut Host, &A::FLAVOR, &server(s)))
    }

    fn provision(
        s: types::Server,
        set: types::Settings,
        t: Vec<types::LinkTemplate>,
        a: Vec<types::AccountWork>,
    ) -> Result<Vec<types::AccountOutcome>, types::PluginError> {
        outcomes(plugin::provision(
            &mut Host,
            &server(s),
            &settings(set),
            &templates(t),
            &accounts(a),
        ))
    }

    fn deprovision(
        s: types::Server,
        set: types::Settings,
        usernames: Vec<String>,
    ) -> Result<Vec<types::AccountOutcome>, types::PluginError> {
        outcomes(plugin::deprovision(
            &mut Host,
            &server(s),
            &settings(set),
            &usernames,
        ))
    }

    fn list_links(
        s: types::Server,
        set: types::Settings,
        username: String,
    ) -> Result<Vec<types::ListedLink>, types::PluginError> {
        listed_links(plugin::list_links(
            &mut Host,
            &server(s),
            &settings(set),
            &username,
        ))
    }

    fn list_accounts(s: types::Server) -> Result<Vec<types::PanelAccount>, types::PluginError> {
        panel_accounts(plugin::list_accounts(&mut Host, &server(s)))
    }
}

/// A self-description in the contract's types: what every plugin built on this crate's model
/// answers to `describe`.
#[must_use]
pub fn wit_description(d: model::Description) -> types::Description {
    types::Description {
        id: d.id,
        name: d.name,
        version: d.version,
        description: d.description,
        contract_version: d.contract_version,
        links: d
            .links
            .into_iter()
            .map(|l| types::LinkSpec {
                scope: l.scope,
                group: group(l.group),
                default_label: l.default_label,
                implements: l.implements,
                destination: l.destination,
                icon: l.icon,
            })
            .collect(),
        allowed_requests: d
            .allowed_requests
            .into_iter()
            .map(|r| types::AllowedRequest {
                method: match r.method {
                    model::Method::Get => types::Method::Get,
                    model::Method::Post => types::Method::Post,
                },
                path: r.path,
                calls: r.calls.map(|t| match t {
                    model::Tunnel::WhmBatch(calls) => types::Tunnel::WhmBatch(calls),
                    model::Tunnel::XmlPacket(calls) => types::Tunnel::XmlPacket(calls),
                }),
            })
            .collect(),
        auth: match d.auth {
            model::PanelAuth::SchemeUserToken(scheme) => types::PanelAuth::SchemeUserToken(scheme),
            model::PanelAuth::Bearer => types::PanelAuth::Bearer,
            model::PanelAuth::Basic => types::PanelAuth::Basic,
            model::PanelAuth::LoginHeaders(login, token) => {
                types::PanelAuth::LoginHeaders((login, token))
            }
            model::PanelAuth::TokenHeader(name) => types::PanelAuth::TokenHeader(name),
        },
        sign_in: match d.sign_in {
            model::SignInStyle::TokenExchange => types::SignInStyle::TokenExchange,
            model::SignInStyle::StaticLink => types::SignInStyle::StaticLink,
        },
        limits: types::Limits {
            accounts_per_call: d.limits.accounts_per_call,
            operations_per_request: d.limits.operations_per_request,
        },
    }
}
