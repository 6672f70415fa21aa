//! Published versions on disk, so a restart serves what was published last
//! and rollback can go back through the last versions.
//!
//! Layout under `{data}/deployments/{name}/`: `{version}.wasm`, an optional
//! `{version}.toml`, and `current`, which names the version being served.
//! A version id is `{seq}-{hash}`: a sequence number, increasing across the
//! whole host and across restarts, and the first 12 hex digits of the
//! content hash of module and manifest. Every file is written to a
//! temporary name and renamed into place.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// How many versions of each droplet are kept.
pub const KEPT_VERSIONS: usize = 5;

/// The deployment store.
pub struct DeploymentStore {
    root: PathBuf,
}

/// One stored version.
#[derive(Debug, Clone)]
pub struct StoredVersion {
    /// `{seq}-{hash}`.
    pub id: String,
    /// Its sequence number.
    pub seq: u64,
    /// The module.
    pub wasm: PathBuf,
    /// The manifest, if it had one.
    pub manifest: Option<PathBuf>,
}

impl StoredVersion {
    /// Reads the module and manifest.
    pub fn read(&self) -> std::io::Result<(Vec<u8>, Option<String>)> {
        let wasm = std::fs::read(&self.wasm)?;
        let manifest = match &self.manifest {
            Some(path) => Some(std::fs::read_to_string(path)?),
            None => None,
        };
        Ok((wasm, manifest))
    }
}

impl DeploymentStore {
    /// The store in `root` (created when first written).
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Names with a stored current version.
    pub fn names(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        entries
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.path().join("current").exists())
            .filter_map(|entry| entry.file_name().into_string().ok())
            .collect()
    }

    /// Every stored version of `name`, newest first.
    pub fn versions(&self, name: &str) -> Vec<StoredVersion> {
        let dir = self.dir(name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut versions: Vec<StoredVersion> = entries
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| {
                let file = entry.file_name().into_string().ok()?;
                let id = file.strip_suffix(".wasm")?.to_string();
                let seq = id.split_once('-')?.0.parse().ok()?;
                let manifest = dir.join(format!("{id}.toml"));
                Some(StoredVersion {
                    seq,
                    wasm: dir.join(&file),
                    manifest: manifest.exists().then_some(manifest),
                    id,
                })
            })
            .collect();
        versions.sort_by_key(|version| std::cmp::Reverse(version.seq));
        versions
    }

    /// The version `name` currently serves, and when it was published.
    pub fn current(&self, name: &str) -> Option<(StoredVersion, SystemTime)> {
        let pointer = self.dir(name).join("current");
        let id = std::fs::read_to_string(&pointer).ok()?;
        let published = std::fs::metadata(&pointer)
            .and_then(|meta| meta.modified())
            .ok()?;
        let version = self
            .versions(name)
            .into_iter()
            .find(|version| version.id == id.trim())?;
        Some((version, published))
    }

    /// The highest sequence number stored, across every droplet.
    pub fn max_seq(&self) -> u64 {
        self.names()
            .iter()
            .flat_map(|name| self.versions(name))
            .map(|version| version.seq)
            .max()
            .unwrap_or(0)
    }

    /// Stores a new version and makes it current; keeps the newest
    /// [`KEPT_VERSIONS`].
    pub fn save(
        &self,
        name: &str,
        id: &str,
        wasm: &[u8],
        manifest: Option<&str>,
    ) -> std::io::Result<()> {
        let dir = self.dir(name);
        std::fs::create_dir_all(&dir)?;
        write_atomic(&dir.join(format!("{id}.wasm")), wasm)?;
        if let Some(manifest) = manifest {
            write_atomic(&dir.join(format!("{id}.toml")), manifest.as_bytes())?;
        }
        self.set_current(name, id)?;
        for old in self.versions(name).into_iter().skip(KEPT_VERSIONS) {
            let _ = std::fs::remove_file(&old.wasm);
            if let Some(manifest) = &old.manifest {
                let _ = std::fs::remove_file(manifest);
            }
        }
        Ok(())
    }

    /// Makes a stored version current.
    pub fn set_current(&self, name: &str, id: &str) -> std::io::Result<()> {
        write_atomic(&self.dir(name).join("current"), id.as_bytes())
    }

    /// Forgets every version of `name`.
    pub fn remove(&self, name: &str) -> std::io::Result<()> {
        match std::fs::remove_dir_all(self.dir(name)) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }
}

/// Writes `bytes` to a temporary file beside `path` and renames it there.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", fastrand::u64(..)));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_versions_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let store = DeploymentStore::new(dir.path().to_path_buf());
        for seq in 1..=7u64 {
            store
                .save(
                    "app",
                    &format!("{seq}-abc"),
                    b"wasm",
                    (seq % 2 == 0).then_some("budget_ms = 5"),
                )
                .unwrap();
        }
        let versions = store.versions("app");
        assert_eq!(versions.len(), KEPT_VERSIONS);
        assert_eq!(versions[0].id, "7-abc");
        assert!(versions[1].manifest.is_some());
        assert_eq!(store.current("app").unwrap().0.id, "7-abc");
        assert_eq!(store.max_seq(), 7);
        store.set_current("app", "5-abc").unwrap();
        assert_eq!(store.current("app").unwrap().0.id, "5-abc");
        store.remove("app").unwrap();
        assert!(store.names().is_empty());
    }
}
