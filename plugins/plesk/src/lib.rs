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

/// The application id.
pub const ID: &str = "plesk";
/// The display name.
pub const NAME: &str = "Plesk";
/// One sentence for admins.
pub const DESCRIPTION: &str = "Places Application Links to the client area as custom buttons on the home page of Plesk customers (Plesk 11.0 or later, XML API).";
