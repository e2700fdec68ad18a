//! Panelink's WP Squared plugin: Application Links on WP Squared servers (cPanel & WHM, profile WP2).

panelink_whm::export_whm_plugin!(panelink_whm::Flavor {
    id: "wpsquared",
    name: "WP Squared",
    version: env!("CARGO_PKG_VERSION"),
    description: "Places Application Links to the client area in the interface of hosting accounts on WP Squared servers.",
    profile: panelink_whm::ProfileRule::Require("WP2"),
});
