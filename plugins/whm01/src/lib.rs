//! TEST ONLY: the cPanel plugin as it was built against contract `panelink:adapter@0.1.0`
//! (`wit/0.1/adapter.wit`), from the WHM plugin's source of that time, unchanged but for the
//! WIT path and this crate's own export below. The host's tests use it to show that a 0.1
//! component still loads and provisions, and that the 0.2 plugins give the same panel state.
//! Never shipped (xtask `TEST_ONLY`); its application id is `cpanel`.

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

#[doc(hidden)]
#[cfg(target_arch = "wasm32")]
pub use wit_bindgen as __wit_bindgen;

pub use api::{HttpError, HttpResponse, Transport};
#[cfg(target_arch = "wasm32")]
pub use component::{Application, WhmPlugin};
pub use flavor::{CONTRACT_VERSION, Flavor, ProfileRule};
pub use model::*;
pub use plan::{Batch, Slot, build_deprovision_batches, build_provision_batches};

/// `n` deterministic accounts, each with the group and all 14 links (as the host pushes on
/// activation): benchmark and test input for [`build_provision_batches`].
#[must_use]
pub fn sample_accounts(n: usize) -> Vec<AccountWork> {
    (0..n)
        .map(|i| AccountWork {
            username: format!("user{i:05}"),
            domain: format!("site{i:05}.example"),
            credential: Credential {
                subscriber_id: format!("svc-{i}"),
                secret: format!(
                    "{i:016x}{:016x}",
                    (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
                ),
            },
            ensure_group: true,
            links: links::LINKS
                .iter()
                .zip(1..)
                .map(|(l, order)| LinkPush {
                    scope: l.scope.to_owned(),
                    label: l.default_label.to_owned(),
                    order,
                    token_url: "https://billing.example/applinks/token".to_owned(),
                    url: format!(
                        "https://billing.example{}",
                        l.destination.replace("{service_id}", &i.to_string())
                    ),
                })
                .collect(),
            remove: Vec::new(),
        })
        .collect()
}

/// Exports a WHM-based plugin component with the given [`Flavor`] (an expression).
///
/// ```text
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

/// The export, with the glue the bindings macro writes (unsafe by nature, and expanded in this
/// crate rather than in a dependency as the shipped plugins do).
#[allow(
    unsafe_code,
    reason = "wit-bindgen's generated canonical-ABI export glue is unsafe by nature"
)]
mod export {
    crate::export_whm_plugin!(crate::Flavor {
        id: "cpanel",
        name: "cPanel",
        version: env!("CARGO_PKG_VERSION"),
        description: "Places Application Links to the client area in the cPanel interface of hosting accounts on cPanel & WHM servers (contract 0.1.0 test build).",
        profile: crate::ProfileRule::Refuse("WP2"),
    });
}
