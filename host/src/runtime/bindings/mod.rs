//! The contract versions this host runs plugins of, each with its own generated bindings
//! (`wit/<major.minor>/adapter.wit`) and its own adapter layer mapping them onto the plain host
//! types of [`crate::adapter`], as extension hosts keep older extension APIs running. Nothing
//! outside `runtime` sees a generated type.
//!
//! - [`v0_2`]: `panelink:adapter@0.2.0`, the current contract; its types are the host's.
//! - [`v0_1`]: `panelink:adapter@0.1.0`. Its plugins declare no requests: the layer grants them
//!   exactly the WHM calls 0.1's operations map to ([`v0_1::GRANTED_REQUESTS`]), shown to admins
//!   like any declaration; it expands link templates into 0.1's per-account links, and answers
//!   `list-accounts` with `unsupported`.
//!
//! A component is bound to the first version whose world it implements, newest first.

use wasmtime::Store;
use wasmtime::component::InstancePre;

use super::CallState;
use crate::adapter as host;

pub mod v0_1;
pub mod v0_2;

// The HTTP gate speaks the current contract's types; the 0.1 layer converts to them.
pub use v0_2::{http, log, types};

/// Every contract version this host runs, newest first.
pub const SUPPORTED: [&str; 2] = [v0_2::VERSION, v0_1::VERSION];

/// A component's pre-instance, bound to the contract version it implements.
pub enum Pre {
    /// `panelink:adapter@0.1.0`.
    V0_1(v0_1::AdapterPre<CallState>),
    /// `panelink:adapter@0.2.0`.
    V0_2(v0_2::AdapterPre<CallState>),
}

/// One instance of a component, of its contract version.
pub enum Instance {
    /// `panelink:adapter@0.1.0`.
    V0_1(v0_1::Adapter),
    /// `panelink:adapter@0.2.0`.
    V0_2(v0_2::Adapter),
}

impl Pre {
    /// Bind a linked component to the newest contract version whose plugin interface it
    /// exports; the error names what each version found missing.
    pub fn new(pre: InstancePre<CallState>) -> Result<Self, String> {
        let newest = match v0_2::AdapterPre::new(pre.clone()) {
            Ok(p) => return Ok(Pre::V0_2(p)),
            Err(e) => e,
        };
        match v0_1::AdapterPre::new(pre) {
            Ok(p) => Ok(Pre::V0_1(p)),
            Err(_) => Err(format!(
                "the component does not export the plugin interface of any contract version \
                 this host runs ({}): {newest:#}",
                SUPPORTED.join(", ")
            )),
        }
    }

    /// The contract version, e.g. `0.2.0`.
    pub fn version(&self) -> &'static str {
        match self {
            Pre::V0_1(_) => v0_1::VERSION,
            Pre::V0_2(_) => v0_2::VERSION,
        }
    }

    /// A fresh instance in `store`.
    pub async fn instantiate(&self, store: &mut Store<CallState>) -> wasmtime::Result<Instance> {
        Ok(match self {
            Pre::V0_1(p) => Instance::V0_1(p.instantiate_async(store).await?),
            Pre::V0_2(p) => Instance::V0_2(p.instantiate_async(store).await?),
        })
    }
}

/// The result of an export whose WIT result is `result<T, plugin-error>`, in host types.
pub type Answer<T> = wasmtime::Result<Result<T, host::PluginError>>;

/// A provisioning call's input, in host types.
pub struct ProvisionInput {
    /// The server (without credentials).
    pub server: host::ServerTarget,
    /// Settings of the call.
    pub settings: host::Settings,
    /// The call's link templates.
    pub templates: Vec<host::LinkTemplate>,
    /// The accounts.
    pub accounts: Vec<host::AccountWork>,
}

impl Instance {
    /// `describe`.
    pub async fn describe(
        &self,
        store: &mut Store<CallState>,
    ) -> wasmtime::Result<host::Description> {
        match self {
            Instance::V0_1(a) => v0_1::describe(a, store).await,
            Instance::V0_2(a) => v0_2::describe(a, store).await,
        }
    }

    /// `check-server`.
    pub async fn check_server(
        &self,
        store: &mut Store<CallState>,
        server: &host::ServerTarget,
    ) -> Answer<host::Support> {
        match self {
            Instance::V0_1(a) => v0_1::check_server(a, store, server).await,
            Instance::V0_2(a) => v0_2::check_server(a, store, server).await,
        }
    }

    /// `provision`.
    pub async fn provision(
        &self,
        store: &mut Store<CallState>,
        input: ProvisionInput,
    ) -> Answer<Vec<host::AccountOutcome>> {
        match self {
            Instance::V0_1(a) => v0_1::provision(a, store, input).await,
            Instance::V0_2(a) => v0_2::provision(a, store, input).await,
        }
    }

    /// `deprovision`.
    pub async fn deprovision(
        &self,
        store: &mut Store<CallState>,
        server: &host::ServerTarget,
        settings: &host::Settings,
        usernames: &[String],
    ) -> Answer<Vec<host::AccountOutcome>> {
        match self {
            Instance::V0_1(a) => v0_1::deprovision(a, store, server, settings, usernames).await,
            Instance::V0_2(a) => v0_2::deprovision(a, store, server, settings, usernames).await,
        }
    }

    /// `list-links`.
    pub async fn list_links(
        &self,
        store: &mut Store<CallState>,
        server: &host::ServerTarget,
        settings: &host::Settings,
        username: &str,
    ) -> Answer<Vec<host::ListedLink>> {
        match self {
            Instance::V0_1(a) => v0_1::list_links(a, store, server, settings, username).await,
            Instance::V0_2(a) => v0_2::list_links(a, store, server, settings, username).await,
        }
    }

    /// `list-accounts` (0.1 has none: `unsupported`).
    pub async fn list_accounts(
        &self,
        store: &mut Store<CallState>,
        server: &host::ServerTarget,
    ) -> Answer<Vec<host::PanelAccount>> {
        match self {
            Instance::V0_1(_) => Ok(Err(host::PluginError::Unsupported(format!(
                "the plugin implements contract {}, which cannot list a server's accounts; \
                 contract {} can",
                v0_1::VERSION,
                v0_2::VERSION
            )))),
            Instance::V0_2(a) => v0_2::list_accounts(a, store, server).await,
        }
    }
}

/// Add every supported version's imports to the linker.
pub fn add_to_linker(linker: &mut wasmtime::component::Linker<CallState>) -> wasmtime::Result<()> {
    use wasmtime::component::HasSelf;
    v0_2::Adapter::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    v0_1::Adapter::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    Ok(())
}
