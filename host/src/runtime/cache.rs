//! The on-disk cache of compiled components, and why its entries can be trusted.
//!
//! Compiling a component takes hundreds of milliseconds of CPU; a restart should not pay it
//! again. wasmtime's own cache (the `cache` feature, safe) stores each compilation under
//! `<dir>/modules/wasmtime-<version>/<name>`, the name a hash of the component's bytes and of
//! every engine setting that shapes the code, so a different component, engine version, target
//! or setting never finds another's entry. wasmtime loads what it finds there as machine code,
//! checking only that it is well-formed for this engine; a damaged entry could still run, and
//! an entry copied under another name would run as the wrong component.
//!
//! So this host trusts an entry only when it sealed it itself: after a compilation that missed,
//! the new entry's seal (HMAC-SHA256 with a key derived from the host's secret key, over the
//! entry's path and bytes) goes into `<dir>/panelink-seals`. Before every compilation, every
//! entry wasmtime could read is checked against its seal, and any without a matching one
//! (damaged, truncated, swapped, copied from another host, written by anyone else) is deleted,
//! counted as `rejected` and logged, so that wasmtime misses and compiles afresh. An entry is
//! hashed again only when its size or modification time changed since this process checked it.
//! Checking, compiling and sealing hold an exclusive lock on `<dir>/panelink.lock`, so processes
//! sharing the directory never take each other's fresh entries for foreign ones.
//!
//! The directory is created with mode 0700. This protects against damage and against entries
//! that did not come from this host; it does not protect against an attacker who runs as the
//! host's user (who could read the secret key or replace the binary anyway).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The file the seals are kept in, inside the cache directory.
const SEALS: &str = "panelink-seals";
/// The lock file, inside the cache directory.
const LOCK: &str = "panelink.lock";
/// The key used when none is configured: seals then detect damage, not forgery.
const UNKEYED: [u8; 32] = *b"panelink code cache, no key set.";

/// The key the cache's seals are made with. Its `Debug` form hides it.
#[derive(Clone)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// A key from 32 secret bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheKey(***)")
    }
}

/// How the compile cache has fared in this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Compilations answered from the cache.
    pub hits: u64,
    /// Compilations that ran (and were stored).
    pub misses: u64,
    /// Entries deleted because their seal did not match.
    pub rejected: u64,
}

/// Whether one compilation came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Loaded from a sealed entry.
    Hit,
    /// Compiled.
    Miss,
}

/// A cache directory with its seals.
pub(crate) struct CodeCache {
    dir: PathBuf,
    key: [u8; 32],
    wasmtime: wasmtime::Cache,
    /// Entries checked by this process: relative path → (size, modification time).
    checked: Mutex<HashMap<String, (u64, SystemTime)>>,
    rejected: AtomicU64,
}

impl std::fmt::Debug for CodeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeCache").field("dir", &self.dir).finish()
    }
}

type Seal = Hmac<Sha256>;

impl CodeCache {
    /// Open (create) the directory; `key` `None` seals without a key (damage detection only).
    pub(crate) fn open(dir: &Path, key: Option<&CacheKey>) -> anyhow::Result<Self> {
        // wasmtime wants an absolute path.
        let dir = std::path::absolute(dir)?;
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the plugin cache directory {}: {e}",
                dir.display()
            )
        })?;
        let mut config = wasmtime::CacheConfig::new();
        config.with_directory(&dir);
        // wasmtime would rewrite a much-used entry with stronger compression, breaking its
        // seal (it would then be compiled again): it never does here.
        config.with_optimized_compression_usage_counter_threshold(u64::MAX);
        Ok(Self {
            wasmtime: wasmtime::Cache::new(config)?,
            key: key.map_or(UNKEYED, |k| k.0),
            dir,
            checked: Mutex::default(),
            rejected: AtomicU64::new(0),
        })
    }

    /// The wasmtime cache over the directory, for the engine's configuration.
    pub(crate) fn wasmtime(&self) -> wasmtime::Cache {
        self.wasmtime.clone()
    }

    /// The counters.
    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.wasmtime.cache_hits() as u64,
            misses: self.wasmtime.cache_misses() as u64,
            rejected: self.rejected.load(Ordering::Relaxed),
        }
    }

    /// Run one compilation (`compile` uses the engine this cache belongs to) with only sealed
    /// entries in reach, and seal what it stored. Blocking: call it on a blocking thread.
    /// Fails, compiling nothing, when an unsealed entry cannot be deleted.
    pub(crate) fn compile<T>(&self, compile: impl FnOnce() -> T) -> Result<(T, Outcome), String> {
        let lock = self.lock();
        let mut seals = self.read_seals();
        self.drop_unsealed(&seals)?;
        let misses = self.wasmtime.cache_misses();
        let value = compile();
        let outcome = if self.wasmtime.cache_misses() == misses {
            Outcome::Hit
        } else {
            self.seal_new(&mut seals);
            Outcome::Miss
        };
        drop(lock);
        Ok((value, outcome))
    }

    /// The exclusive lock on the directory; `None` (and a warning) when it cannot be taken,
    /// which leaves processes sharing the directory to recompile now and then, nothing worse.
    fn lock(&self) -> Option<std::fs::File> {
        let path = self.dir.join(LOCK);
        let locked = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .and_then(|file| file.lock().map(|()| file));
        match locked {
            Ok(file) => Some(file),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot lock the plugin cache");
                None
            }
        }
    }

    fn seal_of(&self, name: &str, bytes: &[u8]) -> Seal {
        let mut mac = <Seal as Mac>::new_from_slice(&self.key).expect("HMAC takes any key size");
        mac.update(name.as_bytes());
        mac.update(&[0]);
        mac.update(bytes);
        mac
    }

    /// `name → hex seal`; unreadable or malformed lines are no seals.
    fn read_seals(&self) -> HashMap<String, String> {
        std::fs::read_to_string(self.dir.join(SEALS))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let (name, seal) = line.split_once(' ')?;
                Some((name.to_owned(), seal.to_owned()))
            })
            .collect()
    }

    /// Every file wasmtime could load as code: `modules/<compiler>/<name>`, names without a dot
    /// (wasmtime's own bookkeeping files, `.stats` and `.wip-…`, are never loaded as code).
    fn entries(&self) -> Vec<(String, PathBuf, std::fs::Metadata)> {
        let mut found = Vec::new();
        let Ok(compilers) = std::fs::read_dir(self.dir.join("modules")) else {
            return found;
        };
        for compiler in compilers.flatten() {
            let Ok(files) = std::fs::read_dir(compiler.path()) else {
                continue;
            };
            for file in files.flatten() {
                let file_name = file.file_name();
                let Some(file_name) = file_name.to_str() else {
                    continue;
                };
                if file_name.contains('.') {
                    continue;
                }
                let Ok(meta) = file.metadata() else { continue };
                if !meta.is_file() {
                    continue;
                }
                let name = format!("{}/{file_name}", compiler.file_name().to_string_lossy());
                found.push((name, file.path(), meta));
            }
        }
        found
    }

    /// Delete every entry whose seal does not match.
    fn drop_unsealed(&self, seals: &HashMap<String, String>) -> Result<(), String> {
        let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
        for (name, path, meta) in self.entries() {
            let stamp = (
                meta.len(),
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            );
            if checked.get(&name) == Some(&stamp) && seals.contains_key(&name) {
                continue;
            }
            let sound = seals
                .get(&name)
                .and_then(|seal| hex::decode(seal).ok())
                .zip(std::fs::read(&path).ok())
                .is_some_and(|(seal, bytes)| {
                    self.seal_of(&name, &bytes).verify_slice(&seal).is_ok()
                });
            if sound {
                checked.insert(name, stamp);
                continue;
            }
            checked.remove(&name);
            self.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                entry = %path.display(),
                "plugin cache entry without a matching seal (damaged, or not written by this \
                 host): deleted; the component is compiled again"
            );
            let _ = std::fs::remove_file(path.with_file_name(format!(
                "{}.stats",
                path.file_name().unwrap_or_default().to_string_lossy()
            )));
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                // Left in place, wasmtime could load it: compile nothing.
                return Err(format!(
                    "the plugin cache holds an entry this host did not seal and cannot delete ({}): {e}",
                    path.display()
                ));
            }
        }
        Ok(())
    }

    /// Seal the entries the compilation just stored (the ones this process has not checked),
    /// and forget seals of entries that are gone.
    fn seal_new(&self, seals: &mut HashMap<String, String>) {
        let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
        let entries = self.entries();
        for (name, path, meta) in &entries {
            if checked.contains_key(name) {
                continue;
            }
            let Ok(bytes) = std::fs::read(path) else {
                continue;
            };
            let seal = hex::encode(self.seal_of(name, &bytes).finalize().into_bytes());
            seals.insert(name.clone(), seal);
            checked.insert(
                name.clone(),
                (
                    meta.len(),
                    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                ),
            );
        }
        seals.retain(|name, _| entries.iter().any(|(n, _, _)| n == name));
        let mut text = String::new();
        for (name, seal) in seals.iter() {
            text.push_str(name);
            text.push(' ');
            text.push_str(seal);
            text.push('\n');
        }
        let temp = self.dir.join(format!("{SEALS}.new"));
        if let Err(e) =
            std::fs::write(&temp, text).and_then(|()| std::fs::rename(&temp, self.dir.join(SEALS)))
        {
            tracing::warn!(error = %e, "cannot write the plugin cache's seals; entries will be compiled again");
        }
    }
}
