//! Panelink's Plesk plugin: Application Links as Plesk custom buttons, over the XML API.
//!
//! Everything but the component glue is plain Rust that compiles and tests natively
//! (`cargo test -p panelink-plesk --target x86_64-unknown-linux-gnu`):
//! - [`packet`]: the endpoint, the packets sent (and so the operations declared to the host), and
//!   reading answers (`system` errors fail a request, per-operation results do not);
//! - [`plan`]: which buttons are Panelink's, the static link of a button, what to delete and
//!   create per account;
//! - [`plugin`]: the operations (`check-server`, `provision`, `deprovision`, `list-links`,
//!   `list-accounts`) over a [`plugin::Transport`].
//!
//! How it maps the contract onto Plesk (see `shared/reference/plesk`): an account's user name is
//! the login of a Plesk customer; each link is one custom button owned by that customer (`place`
//! `client`, not public, opening in a new window) whose URL is the host's static sign-in link for
//! the service, carrying its opaque handle; Plesk has no groups and no update, so a changed link
//! is deleted and created again, and only buttons carrying Panelink's marker are ever touched.

pub mod model;
pub mod packet;
pub mod plan;
pub mod plugin;

#[cfg(target_arch = "wasm32")]
mod component;

/// The application id.
pub const ID: &str = "plesk";
/// The display name.
pub const NAME: &str = "Plesk";
/// One sentence for admins.
pub const DESCRIPTION: &str = "Places Application Links to the client area as custom buttons on the home page of Plesk customers (Plesk 11.0 or later, XML API).";

/// The contract version this plugin is built against.
pub const CONTRACT_VERSION: &str = panelink_whm::CONTRACT_VERSION;

/// The plugin's limits: up to 100 accounts a call (three packets whatever the count), at most
/// [`plugin::OPERATIONS_PER_REQUEST`] operations in one packet.
pub const LIMITS: model::Limits = model::Limits {
    accounts_per_call: plugin::ACCOUNTS_PER_CALL,
    operations_per_request: plugin::OPERATIONS_PER_REQUEST,
};

/// The plugin's self-description: the 14 links (no `implements`, a cPanel notion; no icons,
/// which Plesk takes only as a file path on the server), `POST` of XML packets carrying exactly
/// [`packet::OPERATIONS`], static-link sign-in, [`LIMITS`].
#[must_use]
pub fn describe() -> model::Description {
    model::Description {
        id: ID.to_owned(),
        name: NAME.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        description: DESCRIPTION.to_owned(),
        contract_version: CONTRACT_VERSION.to_owned(),
        links: panelink_whm::links::link_specs()
            .into_iter()
            .map(|l| model::LinkSpec {
                implements: None,
                icon: None,
                ..l
            })
            .collect(),
        allowed_requests: vec![model::AllowedRequest {
            method: model::Method::Post,
            path: packet::AGENT_PATH.to_owned(),
            calls: Some(model::Tunnel::XmlPacket(
                packet::OPERATIONS.iter().map(|&o| o.to_owned()).collect(),
            )),
        }],
        // The XML API takes the administrator's login and password as two headers.
        auth: model::PanelAuth::LoginHeaders(
            "HTTP_AUTH_LOGIN".to_owned(),
            "HTTP_AUTH_PASSWD".to_owned(),
        ),
        sign_in: model::SignInStyle::StaticLink,
        limits: LIMITS,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn describes_static_links_and_exactly_the_operations_it_sends() {
        let d = super::describe();
        assert_eq!(d.id, "plesk");
        assert_eq!(d.links.len(), 14);
        assert!(
            d.links
                .iter()
                .all(|l| l.implements.is_none() && l.icon.is_none())
        );
        assert_eq!(d.sign_in, super::model::SignInStyle::StaticLink);
        assert_eq!(d.allowed_requests.len(), 1);
        let Some(super::model::Tunnel::XmlPacket(ops)) = &d.allowed_requests[0].calls else {
            panic!("no xml-packet tunnel");
        };
        assert_eq!(ops.len(), 7);
    }
}
