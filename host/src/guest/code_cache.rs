//! Compiled code cached on disk by content hash, so a restart does not
//! recompile droplets that did not change.
//!
//! A cache entry is named by the SHA-256 of the engine's compatibility
//! fingerprint (wasmtime version and every setting that affects code) and
//! the module bytes, so a different engine or a different module never
//! reads another's entry. Entries are written to a temporary file and
//! renamed into place, so a reader never sees half an entry.
//!
//! Loading an entry runs native code that wasmtime wrote: the cache
//! directory must be as trusted as the `droplet` binary itself.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::storage::files::write_atomic;

/// A directory of compiled components, or no cache at all.
pub struct CodeCache {
    dir: Option<PathBuf>,
    engine_fingerprint: u64,
}

/// Where a component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Compiled just now.
    Compiled,
    /// Read from the cache.
    Cached,
}

impl CodeCache {
    /// A cache in `dir` (created if missing), or none.
    pub fn new(dir: Option<PathBuf>, engine: &Engine) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let dir = dir.and_then(|dir| match std::fs::create_dir_all(&dir) {
            Ok(()) => Some(dir),
            Err(err) => {
                tracing::warn!(dir = %dir.display(), error = %err, "compiled-code cache disabled: cannot create its directory");
                None
            }
        });
        Self {
            dir,
            engine_fingerprint: hasher.finish(),
        }
    }

    /// The compiled component for `wasm`, from the cache or compiled now (and
    /// then cached). Blocking: call it off the async workers.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
    ) -> Result<(Component, Origin), String> {
        let entry = self.dir.as_deref().map(|dir| self.entry_path(dir, wasm));
        if let Some(path) = &entry
            && path.exists()
        {
            // SAFETY: the entry was written by `Component::serialize` of an
            // engine with the same fingerprint, atomically (temp + rename),
            // into a directory as trusted as this binary (module docs).
            // wasmtime still checks its header and version before use.
            match unsafe { Component::deserialize_file(engine, path) } {
                Ok(component) => return Ok((component, Origin::Cached)),
                Err(err) => {
                    tracing::warn!(entry = %path.display(), error = %err, "unusable cache entry; recompiling");
                }
            }
        }
        let component = Component::new(engine, wasm).map_err(|err| format!("{err:#}"))?;
        if let Some(path) = &entry {
            store_entry(path, &component);
        }
        Ok((component, Origin::Compiled))
    }

    fn entry_path(&self, dir: &Path, wasm: &[u8]) -> PathBuf {
        let mut digest = Sha256::new();
        digest.update(self.engine_fingerprint.to_le_bytes());
        digest.update(wasm);
        dir.join(format!("{:x}.cwasm", digest.finalize()))
    }
}

fn store_entry(path: &Path, component: &Component) {
    let result = component
        .serialize()
        .map_err(|err| std::io::Error::other(format!("{err:#}")))
        .and_then(|bytes| write_atomic(path, &bytes));
    if let Err(err) = result {
        tracing::warn!(entry = %path.display(), error = %err, "could not write cache entry");
    }
}
