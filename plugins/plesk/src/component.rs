//! The component glue: the host's imports as a [`Transport`], and the `plugin` export. Only
//! compiled for `wasm32`; the bindings are the ones generated once in `panelink-whm`.
#![allow(
    unsafe_code,
    reason = "the export macro expands to wit-bindgen's canonical-ABI glue"
)]

use panelink_whm::api::{HttpError, HttpResponse};
use panelink_whm::bindings::exports::panelink::adapter::plugin as exports;
use panelink_whm::bindings::panelink::adapter::{log, types};
use panelink_whm::{
    accounts, listed_links, outcomes, panel_accounts, server, support, templates, wit_description,
};

use crate::describe;
use crate::plugin::{self, Transport};

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

impl exports::Guest for Plesk {
    fn describe() -> types::Description {
        wit_description(describe())
    }

    fn check_server(s: types::Server) -> Result<exports::Support, types::PluginError> {
        support(plugin::check_server(&mut Host, &server(s)))
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
            &set.app_prefix,
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
            &set.app_prefix,
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
            &set.app_prefix,
            &username,
        ))
    }

    fn list_accounts(s: types::Server) -> Result<Vec<types::PanelAccount>, types::PluginError> {
        panel_accounts(plugin::list_accounts(&mut Host, &server(s)))
    }
}

panelink_whm::bindings::export_adapter!(Plesk with_types_in panelink_whm::bindings);
