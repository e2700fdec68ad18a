//! A plugin component whose self-description and behaviour are text in its own bytes, for the
//! host's install, signature, canary and failure-policy tests.
//!
//! The component keeps a fixed-size region of [`REGION_SIZE`] bytes that starts with the marker
//! [`MARKER`] followed by `key=value` lines, padded with spaces. A test copies the built
//! component and rewrites that region (same size, so nothing else moves): every rewrite is a
//! different component (another digest) describing itself as the test wants. The keys:
//!
//! | key           | meaning |
//! |---------------|---------|
//! | `id`, `name`, `version`, `description`, `contract` | the self-description's fields |
//! | `link`        | one link (repeatable): `scope\|group\|default label\|destination`, group `ordering`, `support` or `account` |
//! | `check`       | `check-server`: `supported`, `unsupported`, `trap` (panics) or `loop` (spins) |
//! | `provision`   | `provision`: `ok`, `trap` or `loop` |
//!
//! `deprovision` and `list-links` always behave. Only compiled for `wasm32`: natively this crate
//! holds the region's layout and nothing else.

/// The first bytes of the region.
pub const MARKER: &str = "PANELINK-SPECIMEN-CONFIG\n";

/// The region's size in bytes, marker included.
pub const REGION_SIZE: usize = 2048;

/// What an unmodified build describes.
pub const DEFAULT_CONFIG: &str = "PANELINK-SPECIMEN-CONFIG\n\
    id=specimen\n\
    name=Specimen\n\
    version=1.0.0\n\
    description=A plugin whose description tests rewrite.\n\
    contract=0.2.0\n\
    check=supported\n\
    provision=ok\n\
    link=clientarea:invoices|account|View Invoice History|/clientarea.php?action=invoices\n\
    link=clientarea:tickets|support|Open Ticket|/supporttickets.php\n";

/// The region with `text` at its start, padded with spaces.
const fn region(text: &str) -> [u8; REGION_SIZE] {
    let mut out = [b' '; REGION_SIZE];
    let bytes = text.as_bytes();
    assert!(
        bytes.len() <= REGION_SIZE,
        "the default configuration is too long"
    );
    let mut i = 0;
    while i < bytes.len() {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

/// The region tests rewrite; read through `black_box` so the compiler cannot fold it away.
#[used]
static CONFIG: [u8; REGION_SIZE] = region(DEFAULT_CONFIG);

#[cfg(target_arch = "wasm32")]
mod component;
