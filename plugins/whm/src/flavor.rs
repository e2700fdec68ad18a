//! What tells the cPanel and WP Squared plugins apart.

use crate::model::{Description, PanelAuth, SignInStyle};
use crate::{api, links};

/// The contract version the plugins are built against (`package panelink:adapter@0.2.0`).
pub const CONTRACT_VERSION: &str = "0.2.0";

/// Which server profiles (WHM `get_current_profile` codes) an application serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileRule {
    /// Only servers of this profile, e.g. WP Squared's `WP2`.
    Require(&'static str),
    /// Any server but one of this profile, e.g. cPanel refuses `WP2`.
    Refuse(&'static str),
}

impl ProfileRule {
    /// Whether a server answering `code` is served.
    #[must_use]
    pub fn accepts(self, code: &str) -> bool {
        match self {
            Self::Require(wanted) => code.trim().eq_ignore_ascii_case(wanted),
            Self::Refuse(refused) => !code.trim().eq_ignore_ascii_case(refused),
        }
    }
}

/// One WHM-based application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flavor {
    /// The application id, lower case, e.g. `cpanel`.
    pub id: &'static str,
    /// The display name, e.g. `cPanel`.
    pub name: &'static str,
    /// The plugin's own version (its crate version).
    pub version: &'static str,
    /// One sentence for admins about what the plugin serves.
    pub description: &'static str,
    /// Which server profiles the application serves.
    pub profile: ProfileRule,
}

impl Flavor {
    /// The plugin's self-description: the 14 links, the WHM requests the plugins send
    /// ([`api::allowed_requests`]), this contract version.
    #[must_use]
    pub fn describe(&self) -> Description {
        Description {
            id: self.id.to_owned(),
            name: self.name.to_owned(),
            version: self.version.to_owned(),
            description: self.description.to_owned(),
            contract_version: CONTRACT_VERSION.to_owned(),
            links: links::link_specs(),
            allowed_requests: api::allowed_requests(),
            auth: PanelAuth::SchemeUserToken("whm".to_owned()),
            sign_in: SignInStyle::TokenExchange,
            limits: crate::LIMITS,
        }
    }
}
