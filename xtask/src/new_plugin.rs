//! `cargo xtask new-plugin NAME [--dir DIR]`: a new plugin crate from the vendor template.
//!
//! The template (`xtask/template/`) is a working plugin for the Example Panel, a small JSON API
//! whose stub (`src/stub.rs`) its tests run against. The generated crate stands alone (its own
//! workspace, its own copy of the contract's WIT and a lock file pinning the same crate versions
//! as Panelink's plugins), so a vendor can move it into their own repository as it is.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The template's files: (path in the generated crate, contents). `{{id}}`, `{{name}}` and
/// `{{crate}}` are replaced; the files are valid as they are, so the template itself is built
/// and tested by Panelink's CI through a generated copy.
const FILES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../template/Cargo.toml.tmpl")),
    ("README.md", include_str!("../template/README.md.tmpl")),
    (".gitignore", "/target\n"),
    ("src/lib.rs", include_str!("../template/src/lib.rs")),
    ("src/panel.rs", include_str!("../template/src/panel.rs")),
    ("src/stub.rs", include_str!("../template/src/stub.rs")),
    (
        "src/component.rs",
        include_str!("../template/src/component.rs"),
    ),
];

/// Whether `name` can be an application id and a crate name: lower-case ASCII letters and
/// digits, starting with a letter, at most 32 characters.
fn valid_id(name: &str) -> bool {
    name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// `acmepanel` → `Acmepanel`.
fn display_name(id: &str) -> String {
    let mut chars = id.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// Runs the task with its arguments (`NAME [--dir DIR]`); returns the new crate's directory.
pub fn run(root: &Path, args: &[String]) -> Result<PathBuf> {
    let mut name = None;
    let mut dir = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--dir" => {
                dir = Some(PathBuf::from(
                    args.next().context("--dir needs a directory")?,
                ))
            }
            other if other.starts_with('-') => bail!("unknown option {other}"),
            other if name.is_none() => name = Some(other.to_owned()),
            other => bail!("unexpected argument {other}"),
        }
    }
    let Some(id) = name else {
        bail!(
            "usage: cargo xtask new-plugin NAME [--dir DIR]  (NAME: the application id, e.g. acmepanel)"
        );
    };
    if !valid_id(&id) {
        bail!(
            "{id:?} cannot be an application id: use lower-case letters and digits, starting with a letter, at most 32"
        );
    }
    let out = dir.unwrap_or_else(|| PathBuf::from(&id));
    if out.exists() && std::fs::read_dir(&out)?.next().is_some() {
        bail!("{} exists and is not empty", out.display());
    }
    let fill = |text: &str| {
        text.replace("{{id}}", &id)
            .replace("{{name}}", &display_name(&id))
            .replace("{{crate}}", &format!("{id}-panelink-plugin"))
    };
    for (path, text) in FILES {
        write(&out.join(path), &fill(text))?;
    }
    let wit = root.join("wit/0.2/adapter.wit");
    write(
        &out.join("wit/adapter.wit"),
        &std::fs::read_to_string(&wit).with_context(|| format!("reading {}", wit.display()))?,
    )?;
    // The same crate versions as Panelink's own plugins: known to build with this toolchain.
    std::fs::copy(root.join("plugins/Cargo.lock"), out.join("Cargo.lock"))
        .context("copying plugins/Cargo.lock")?;
    eprintln!(
        "new plugin `{id}` in {}\n\n  cd {}\n  cargo test                                        # its tests, against the stub panel\n  cargo build --release --target wasm32-wasip2      # the component: target/wasm32-wasip2/release/{id}.wasm\n\nthen read docs/plugin-guide.md: signing, installing, activating.",
        out.display(),
        out.display()
    );
    Ok(out)
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(valid_id("acmepanel"));
        assert!(valid_id("panel2"));
        for bad in [
            "",
            "Acme",
            "2panel",
            "acme-panel",
            "acme_panel",
            &"a".repeat(33),
        ] {
            assert!(!valid_id(bad), "{bad:?}");
        }
        assert_eq!(display_name("acmepanel"), "Acmepanel");
    }
}
