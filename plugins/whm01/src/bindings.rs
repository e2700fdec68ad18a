//! The component bindings of world `panelink:adapter/adapter`, generated once for every plugin.
//!
//! Only compiled for `wasm32`; the plugins' logic lives in the rest of the crate and knows nothing
//! of these types, so it compiles and tests natively.
#![allow(
    unsafe_code,
    reason = "wit-bindgen's generated canonical-ABI glue is unsafe by nature"
)]
#![allow(missing_docs, missing_debug_implementations, reason = "generated code")]

wit_bindgen::generate!({
    world: "adapter",
    path: "../../wit/0.1",
    pub_export_macro: true,
    export_macro_name: "export_adapter",
    default_bindings_module: "panelink_whm::bindings",
    runtime_path: "panelink_whm::__wit_bindgen::rt",
});
