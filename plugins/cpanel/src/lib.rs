//! Panelink's cPanel plugin: Application Links on cPanel & WHM servers (any profile but WP2).

panelink_whm::export_whm_plugin!(panelink_whm::Flavor {
    id: "cpanel",
    name: "cPanel",
    version: env!("CARGO_PKG_VERSION"),
    description: "Places Application Links to the client area in the cPanel interface of hosting accounts on cPanel & WHM servers.",
    profile: panelink_whm::ProfileRule::Refuse("WP2"),
});
