//! The contract's types as plain Rust: the WHM crate's mirrors of `panelink:adapter/types`
//! (0.2), shared by every plugin of this workspace, so the logic compiles and tests natively.

pub use panelink_whm::model::{
    AccountOutcome, AccountWork, AllowedRequest, Credential, Description, Limits, LinkGroup,
    LinkSpec, LinkTemplate, ListedLink, Method, Operation, OperationResult, PanelAccount,
    PanelAuth, PluginError, Server, SignInStyle, Support, Tunnel,
};
