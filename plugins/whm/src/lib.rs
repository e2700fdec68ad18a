//! WHM API 1 logic shared by Panelink's cPanel and WP Squared plugins.
//!
//! Everything here but [`bindings`] and the component glue is plain Rust that compiles, tests and
//! benchmarks natively (`cargo test -p panelink-whm --target x86_64-unknown-linux-gnu`). The
//! plugins themselves are thin `cdylib` crates that call [`export_whm_plugin!`] with their
//! [`Flavor`].
//!
//! For benchmarks, [`build_provision_batches`] is the pure function the plugins use to turn
//! a call's link templates and accounts into WHM `batch` request bodies; [`sample_call`] makes
//! deterministic input.

// Lets the generated bindings name this crate by its own name, as the plugins do.
#[cfg(target_arch = "wasm32")]
extern crate self as panelink_whm;

pub mod api;
pub mod encode;
pub mod flavor;
pub mod links;
pub mod model;
pub mod plan;
pub mod plugin;

#[cfg(target_arch = "wasm32")]
pub mod bindings;
#[cfg(target_arch = "wasm32")]
mod component;
#[cfg(test)]
mod plugin_tests;

#[doc(hidden)]
#[cfg(target_arch = "wasm32")]
pub use wit_bindgen as __wit_bindgen;

pub use api::{HttpError, HttpResponse, Transport};
#[cfg(target_arch = "wasm32")]
pub use component::{
    Application, WhmPlugin, accounts, listed_links, outcomes, panel_accounts, post, server,
    support, templates, wit_description,
};
pub use flavor::{CONTRACT_VERSION, Flavor, ProfileRule};
pub use model::*;
pub use plan::{Batch, Slot, build_deprovision_batches, build_provision_batches};

/// The plugins' own limits (`limits`): 300 accounts per call, 300 WHM commands per `batch`
/// request (WHM answers a 300-command batch well within the host's request timeout).
pub const LIMITS: Limits = Limits {
    accounts_per_call: 300,
    operations_per_request: 300,
};

/// A call with the 14 links' templates and `n` deterministic accounts, each getting the group
/// and every link (as the host pushes on activation): benchmark and test input for
/// [`build_provision_batches`].
#[must_use]
pub fn sample_call(n: usize) -> (Vec<LinkTemplate>, Vec<AccountWork>) {
    let templates = links::LINKS
        .iter()
        .zip(1..)
        .map(|(l, order)| LinkTemplate {
            scope: l.scope.to_owned(),
            label: l.default_label.to_owned(),
            order,
            token_url: "https://billing.example/applinks/token".to_owned(),
            url: format!(
                "https://billing.example{}",
                l.destination
                    .replace("{service_id}", SERVICE_ID_PLACEHOLDER)
            ),
        })
        .collect();
    let accounts = (0..n)
        .map(|i| AccountWork {
            username: format!("user{i:05}"),
            domain: format!("site{i:05}.example"),
            service_id: i.to_string(),
            credential: Credential::Token {
                subscriber_id: format!("svc-{i}"),
                secret: format!(
                    "{i:016x}{:016x}",
                    (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
                ),
            },
            ensure_group: true,
            links: links::LINKS.iter().map(|l| l.scope.to_owned()).collect(),
            remove: Vec::new(),
        })
        .collect();
    (templates, accounts)
}

/// Exports a WHM-based plugin component with the given [`Flavor`] (an expression).
///
/// ```
/// panelink_whm::export_whm_plugin!(panelink_whm::Flavor {
///     id: "cpanel",
///     name: "cPanel",
///     version: env!("CARGO_PKG_VERSION"),
///     description: "…",
///     profile: panelink_whm::ProfileRule::Refuse("WP2"),
/// });
/// ```
///
/// Expands to nothing outside `wasm32`, so the plugin crates still compile natively.
#[macro_export]
macro_rules! export_whm_plugin {
    ($flavor:expr $(,)?) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct App;
            impl $crate::Application for App {
                const FLAVOR: $crate::Flavor = $flavor;
            }
            type PanelinkPlugin = $crate::WhmPlugin<App>;
    $crate::bindings::export_adapter!(PanelinkPlugin with_types_in $crate::bindings);
        };
    };
}
