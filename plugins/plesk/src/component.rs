//! The component glue: the host's imports as a [`Transport`], and the `plugin` export. Only
//! compiled for `wasm32`; the bindings are the ones generated once in `panelink-whm`.
#![allow(
    unsafe_code,
    reason = "the export macro expands to wit-bindgen's canonical-ABI glue"
)]

use panelink_whm::api::{HttpError, HttpResponse};
use panelink_whm::bindings::exports::panelink::adapter::plugin as exports;
use panelink_whm::bindings::panelink::adapter::{log, types};
use panelink_whm::server;

use crate::plugin::{self, Transport};
use crate::{describe, model};

/// The `plugin` export.
#[derive(Debug)]
struct Plesk;

/// The host's `http` and `log` imports.
#[derive(Debug)]
struct Host;

impl Transport for Host {
    fn post_xml(&mut self, url: &str, body: Vec<u8>) -> Result<HttpResponse, HttpError> {
        panelink_whm::post(url, "text/xml", "text/xml", body)
    }

    fn debug(&mut self, message: &str) {
        log::write(log::Level::Debug, message);
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

fn outcomes(o: Vec<model::AccountOutcome>) -> Vec<types::AccountOutcome> {
    o.into_iter()
        .map(|o| types::AccountOutcome {
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
        })
        .collect()
}

fn error(e: model::PluginError) -> types::PluginError {
    match e {
        model::PluginError::Transient(m) => types::PluginError::Transient(m),
        model::PluginError::Panel(m) => types::PluginError::Panel(m),
        model::PluginError::Unsupported(m) => types::PluginError::Unsupported(m),
        model::PluginError::InvalidInput(m) => types::PluginError::InvalidInput(m),
    }
}

impl exports::Guest for Plesk {
    fn describe() -> types::Description {
        panelink_whm::wit_description(describe())
    }

    fn check_server(s: types::Server) -> Result<exports::Support, types::PluginError> {
        plugin::check_server(&mut Host, &server(s))
            .map(|s| exports::Support {
                supported: s.supported,
                detail: s.detail,
            })
            .map_err(error)
    }

    fn provision(
        s: types::Server,
        set: types::Settings,
        templates: Vec<types::LinkTemplate>,
        accounts: Vec<types::AccountWork>,
    ) -> Result<Vec<types::AccountOutcome>, types::PluginError> {
        let templates: Vec<model::LinkTemplate> = templates.into_iter().map(template).collect();
        let accounts: Vec<model::AccountWork> = accounts.into_iter().map(account).collect();
        plugin::provision(
            &mut Host,
            &server(s),
            &set.app_prefix,
            &templates,
            &accounts,
        )
        .map(outcomes)
        .map_err(error)
    }

    fn deprovision(
        s: types::Server,
        set: types::Settings,
        usernames: Vec<String>,
    ) -> Result<Vec<types::AccountOutcome>, types::PluginError> {
        plugin::deprovision(&mut Host, &server(s), &set.app_prefix, &usernames)
            .map(outcomes)
            .map_err(error)
    }

    fn list_links(
        s: types::Server,
        set: types::Settings,
        username: String,
    ) -> Result<Vec<types::ListedLink>, types::PluginError> {
        plugin::list_links(&mut Host, &server(s), &set.app_prefix, &username)
            .map(|l| {
                l.into_iter()
                    .map(|l| types::ListedLink {
                        app: l.app,
                        scope: l.scope,
                    })
                    .collect()
            })
            .map_err(error)
    }

    fn list_accounts(s: types::Server) -> Result<Vec<types::PanelAccount>, types::PluginError> {
        plugin::list_accounts(&mut Host, &server(s))
            .map(|accounts| {
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
}

panelink_whm::bindings::export_adapter!(Plesk with_types_in panelink_whm::bindings);
