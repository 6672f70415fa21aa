//! The droplets directory: `{name}.wasm` with an optional `{name}.toml`,
//! scanned at start-up, read by the watcher, and cleaned when a droplet is
//! removed.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::loader::LoadError;
use super::store::VersionFiles;
use crate::droplets::name::{NAME_RULE, is_droplet_name};
use crate::storage::files::remove_if_present;

/// The `(name, path)` of every `*.wasm` in `dir` whose name is a valid,
/// unreserved droplet name; other files are skipped with a warning.
pub fn droplet_files(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|ext| ext.to_str()) != Some("wasm") {
            continue;
        }
        let Some(name) = path.file_stem().and_then(|stem| stem.to_str()) else {
            continue;
        };
        if !is_droplet_name(name) {
            tracing::warn!(file = %path.display(), "skipped: droplet names are {NAME_RULE}");
            continue;
        }
        files.push((name.to_string(), path));
    }
    files.sort();
    Ok(files)
}

/// Reads `{name}.wasm` and the optional `{name}.toml` from `dir`.
pub fn read_version(dir: &Path, name: &str) -> Result<VersionFiles, LoadError> {
    let wasm = std::fs::read(dir.join(format!("{name}.wasm")))
        .map_err(|err| LoadError::read(format!("{name}.wasm"), err))?;
    let manifest = match std::fs::read_to_string(dir.join(format!("{name}.toml"))) {
        Ok(text) => Some(text),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => return Err(LoadError::read(format!("{name}.toml"), err)),
    };
    Ok((wasm, manifest))
}

/// When `name`'s files in `dir` last changed (the newer of module and
/// manifest); `None` without a module.
pub fn modified(dir: &Path, name: &str) -> Option<SystemTime> {
    let modified = |path: PathBuf| {
        std::fs::metadata(path)
            .and_then(|meta| meta.modified())
            .ok()
    };
    let wasm = modified(dir.join(format!("{name}.wasm")))?;
    let manifest = modified(dir.join(format!("{name}.toml")));
    Some(manifest.map_or(wasm, |manifest| manifest.max(wasm)))
}

/// Removes `name`'s module and manifest from `dir`, if they are there.
pub fn remove_files(dir: &Path, name: &str) -> std::io::Result<()> {
    for ext in ["wasm", "toml"] {
        remove_if_present(&dir.join(format!("{name}.{ext}")))?;
    }
    Ok(())
}
