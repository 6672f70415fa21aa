//! The embedded deployment store: versions as files under
//! `{data}/deployments/{name}/`: `{version}.wasm`, an optional
//! `{version}.toml`, and `current`, which names the version being served.
//! Every file is written to a temporary name, synced, and renamed into
//! place (the directory synced too): a deploy acknowledged is on disk.

use std::io::ErrorKind;
use std::path::PathBuf;
use std::time::SystemTime;

use super::{DeploymentStore, KEPT_VERSIONS, VersionFiles};
use crate::droplets::version::VersionId;
use crate::storage::files::{remove_if_present, write_durable};

/// Versions on the local disk.
pub struct FileStore {
    root: PathBuf,
    /// The last sequence number given; read from the stored versions on
    /// first use.
    last_seq: std::sync::Mutex<Option<u64>>,
}

impl FileStore {
    /// The store in `root` (created when first written).
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            last_seq: std::sync::Mutex::new(None),
        }
    }

    /// The highest sequence number stored, across every droplet (0: none).
    fn max_seq(&self) -> std::io::Result<u64> {
        let mut max = 0;
        for name in self.names()? {
            if let Some(newest) = self.versions(&name)?.first() {
                max = max.max(newest.seq());
            }
        }
        Ok(max)
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn wasm_path(&self, name: &str, version: &VersionId) -> PathBuf {
        self.dir(name).join(format!("{version}.wasm"))
    }

    fn manifest_path(&self, name: &str, version: &VersionId) -> PathBuf {
        self.dir(name).join(format!("{version}.toml"))
    }
}

/// `Ok(None)` for a file that is not there.
fn absent_is_none<T>(result: std::io::Result<T>) -> std::io::Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

impl DeploymentStore for FileStore {
    fn names(&self) -> std::io::Result<Vec<String>> {
        let Some(entries) = absent_is_none(std::fs::read_dir(&self.root))? else {
            return Ok(Vec::new());
        };
        Ok(entries
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.path().join("current").exists())
            .filter_map(|entry| entry.file_name().into_string().ok())
            .collect())
    }

    fn versions(&self, name: &str) -> std::io::Result<Vec<VersionId>> {
        let Some(entries) = absent_is_none(std::fs::read_dir(self.dir(name)))? else {
            return Ok(Vec::new());
        };
        let mut versions: Vec<VersionId> = entries
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| {
                let file = entry.file_name().into_string().ok()?;
                VersionId::parse(file.strip_suffix(".wasm")?)
            })
            .collect();
        versions.sort_by_key(|version| std::cmp::Reverse(version.seq()));
        Ok(versions)
    }

    fn current(&self, name: &str) -> std::io::Result<Option<(VersionId, SystemTime)>> {
        let pointer = self.dir(name).join("current");
        let Some(id) = absent_is_none(std::fs::read_to_string(&pointer))? else {
            return Ok(None);
        };
        let published = std::fs::metadata(&pointer)?.modified()?;
        Ok(self
            .versions(name)?
            .into_iter()
            .find(|version| version.as_str() == id.trim())
            .map(|version| (version, published)))
    }

    fn read(&self, name: &str, version: &VersionId) -> std::io::Result<VersionFiles> {
        let wasm = std::fs::read(self.wasm_path(name, version))?;
        Ok((wasm, self.read_manifest(name, version)?))
    }

    fn read_manifest(&self, name: &str, version: &VersionId) -> std::io::Result<Option<String>> {
        absent_is_none(std::fs::read_to_string(self.manifest_path(name, version)))
    }

    fn next_seq(&self) -> std::io::Result<u64> {
        let mut last = self
            .last_seq
            .lock()
            .map_err(|_| std::io::Error::other("the version counter is poisoned"))?;
        let next = match *last {
            Some(seq) => seq,
            None => self.max_seq()?,
        } + 1;
        *last = Some(next);
        Ok(next)
    }

    fn save(
        &self,
        name: &str,
        version: &VersionId,
        wasm: &[u8],
        manifest: Option<&str>,
    ) -> std::io::Result<()> {
        std::fs::create_dir_all(self.dir(name))?;
        write_durable(&self.wasm_path(name, version), wasm)?;
        if let Some(manifest) = manifest {
            write_durable(&self.manifest_path(name, version), manifest.as_bytes())?;
        }
        self.set_current(name, version)?;
        for old in self.versions(name)?.into_iter().skip(KEPT_VERSIONS) {
            // Best effort: an old version left behind is only disk space.
            let _ = remove_if_present(&self.wasm_path(name, &old));
            let _ = remove_if_present(&self.manifest_path(name, &old));
        }
        Ok(())
    }

    fn set_current(&self, name: &str, version: &VersionId) -> std::io::Result<()> {
        write_durable(&self.dir(name).join("current"), version.as_str().as_bytes())
    }

    fn remove(&self, name: &str) -> std::io::Result<()> {
        match std::fs::remove_dir_all(self.dir(name)) {
            Err(err) if err.kind() != ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::droplets::version::ContentHash;

    #[test]
    fn saves_versions_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().to_path_buf());
        let hash = ContentHash::of(b"wasm", None);
        let id = |seq| VersionId::new(seq, &hash);
        for seq in 1..=7u64 {
            store
                .save(
                    "app",
                    &id(seq),
                    b"wasm",
                    (seq % 2 == 0).then_some("budget_ms = 5"),
                )
                .unwrap();
        }
        let versions = store.versions("app").unwrap();
        assert_eq!(versions.len(), KEPT_VERSIONS);
        assert_eq!(versions[0], id(7));
        assert_eq!(
            store.read("app", &versions[1]).unwrap(),
            (b"wasm".to_vec(), Some("budget_ms = 5".to_string()))
        );
        assert_eq!(store.current("app").unwrap().unwrap().0, id(7));
        assert_eq!(store.max_seq().unwrap(), 7);
        assert_eq!(
            FileStore::new(dir.path().to_path_buf()).next_seq().unwrap(),
            8
        );
        store.set_current("app", &id(5)).unwrap();
        assert_eq!(store.current("app").unwrap().unwrap().0, id(5));
        store.remove("app").unwrap();
        assert!(store.names().unwrap().is_empty());
        assert_eq!(store.current("app").unwrap(), None);
    }
}
