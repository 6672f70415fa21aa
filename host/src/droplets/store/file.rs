//! The embedded deployment store: versions as files under
//! `{data}/deployments/{name}/`: `{version}.wasm`, an optional
//! `{version}.toml`, and `current`, which names the version being served.
//! Every file is written to a temporary name, synced, and renamed into
//! place (the directory synced too): a deploy acknowledged is on disk.

use std::io::ErrorKind;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

use super::{DeploymentStore, KEPT_VERSIONS, StoreError, VersionFiles};
use crate::droplets::rollout::plan::Rollout;
use crate::droplets::rollout::window::Counts;
use crate::droplets::version::VersionId;
use crate::storage::files::{remove_if_present, write_durable};

/// The blocking half: the files themselves, behind the async
/// [`FileStore`] (its rollout records are in `file_rollouts.rs`).
pub(super) struct Files {
    pub(super) root: PathBuf,
    /// The last sequence number given; read from the stored versions on
    /// first use.
    last_seq: std::sync::Mutex<Option<u64>>,
    /// The running rollouts, read from the files on first use and kept
    /// with every write (this process owns the data directory): the judge
    /// asks every second, and a scan would read every droplet's folder.
    /// Held while a rollout record is compared and written.
    pub(super) running: std::sync::Mutex<Option<Vec<Rollout>>>,
}

impl Files {
    fn new(root: PathBuf) -> Self {
        Self {
            root,
            last_seq: std::sync::Mutex::new(None),
            running: std::sync::Mutex::new(None),
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

    pub(super) fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn wasm_path(&self, name: &str, version: &VersionId) -> PathBuf {
        self.dir(name).join(format!("{version}.wasm"))
    }

    fn manifest_path(&self, name: &str, version: &VersionId) -> PathBuf {
        self.dir(name).join(format!("{version}.toml"))
    }

    pub(super) fn rollouts_dir(&self, name: &str) -> PathBuf {
        self.dir(name).join("rollouts")
    }
}

/// `Ok(None)` for a file that is not there.
pub(super) fn absent_is_none<T>(result: std::io::Result<T>) -> std::io::Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

impl Files {
    pub(super) fn names(&self) -> std::io::Result<Vec<String>> {
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
        beside: bool,
    ) -> std::io::Result<()> {
        std::fs::create_dir_all(self.dir(name))?;
        write_durable(&self.wasm_path(name, version), wasm)?;
        if let Some(manifest) = manifest {
            write_durable(&self.manifest_path(name, version), manifest.as_bytes())?;
        }
        if !beside {
            self.set_current(name, version)?;
        }
        let current = self.current(name)?.map(|(current, _)| current);
        let old_versions = self.versions(name)?.into_iter().skip(KEPT_VERSIONS);
        for old in old_versions.filter(|old| Some(old) != current.as_ref()) {
            // Best effort: an old version left behind is only disk space.
            let _ = remove_if_present(&self.wasm_path(name, &old));
            let _ = remove_if_present(&self.manifest_path(name, &old));
            // Its rollout, if it was a canary, goes with it (a running
            // rollout's canary is the newest version, never pruned).
            let rollout = self.rollouts_dir(name).join(format!("{old}.json"));
            let _ = remove_if_present(&rollout);
        }
        Ok(())
    }

    fn set_current(&self, name: &str, version: &VersionId) -> std::io::Result<()> {
        write_durable(&self.dir(name).join("current"), version.as_str().as_bytes())
    }

    fn remove(&self, name: &str) -> std::io::Result<()> {
        if let Some(running) = self.running()?.as_mut() {
            running.retain(|rollout| rollout.name != name);
        }
        match std::fs::remove_dir_all(self.dir(name)) {
            Err(err) if err.kind() != ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }
}

/// Versions on the local disk. Each call runs its file work on the
/// blocking pool.
pub struct FileStore {
    files: Arc<Files>,
}

impl FileStore {
    /// The store in `root` (created when first written).
    pub fn new(root: PathBuf) -> Self {
        Self {
            files: Arc::new(Files::new(root)),
        }
    }

    /// Runs `work` on the files, off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Files) -> std::io::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let files = Arc::clone(&self.files);
        tokio::task::spawn_blocking(move || work(&files))
            .await
            .map_err(|_| StoreError::Io(std::io::Error::other("a deployment store task failed")))?
            .map_err(StoreError::Io)
    }
}

#[async_trait]
impl DeploymentStore for FileStore {
    async fn names(&self) -> Result<Vec<String>, StoreError> {
        self.blocking(Files::names).await
    }

    async fn versions(&self, name: &str) -> Result<Vec<VersionId>, StoreError> {
        let name = name.to_string();
        self.blocking(move |files| files.versions(&name)).await
    }

    async fn current(&self, name: &str) -> Result<Option<(VersionId, SystemTime)>, StoreError> {
        let name = name.to_string();
        self.blocking(move |files| files.current(&name)).await
    }

    async fn read(&self, name: &str, version: &VersionId) -> Result<VersionFiles, StoreError> {
        let (name, version) = (name.to_string(), version.clone());
        self.blocking(move |files| files.read(&name, &version))
            .await
    }

    async fn read_manifest(
        &self,
        name: &str,
        version: &VersionId,
    ) -> Result<Option<String>, StoreError> {
        let (name, version) = (name.to_string(), version.clone());
        self.blocking(move |files| files.read_manifest(&name, &version))
            .await
    }

    async fn next_seq(&self) -> Result<u64, StoreError> {
        self.blocking(Files::next_seq).await
    }

    async fn save(
        &self,
        name: &str,
        version: &VersionId,
        wasm: &[u8],
        manifest: Option<&str>,
        beside: bool,
    ) -> Result<(), StoreError> {
        let (name, version) = (name.to_string(), version.clone());
        let (wasm, manifest) = (wasm.to_vec(), manifest.map(str::to_string));
        self.blocking(move |files| files.save(&name, &version, &wasm, manifest.as_deref(), beside))
            .await
    }

    async fn set_current(&self, name: &str, version: &VersionId) -> Result<(), StoreError> {
        let (name, version) = (name.to_string(), version.clone());
        self.blocking(move |files| files.set_current(&name, &version))
            .await
    }

    async fn remove(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_string();
        self.blocking(move |files| files.remove(&name)).await
    }

    async fn rollouts(&self, name: &str) -> Result<Vec<Rollout>, StoreError> {
        let name = name.to_string();
        self.blocking(move |files| files.rollouts(&name)).await
    }

    async fn running_rollouts(&self) -> Result<Vec<Rollout>, StoreError> {
        if let Ok(running) = self.files.running.lock()
            && let Some(running) = running.as_ref()
        {
            return Ok(running.clone());
        }
        self.blocking(|files| Ok(files.running()?.clone().unwrap_or_default()))
            .await
    }

    async fn write_rollout(&self, rollout: &Rollout) -> Result<bool, StoreError> {
        let rollout = rollout.clone();
        self.blocking(move |files| files.write_rollout(&rollout))
            .await
    }

    async fn report_counts(
        &self,
        _host: &str,
        _rollout: &Rollout,
        _canary: &Counts,
        _stable: &Counts,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    async fn fleet_counts(
        &self,
        _rollout: &Rollout,
    ) -> Result<Option<(Counts, Counts)>, StoreError> {
        Ok(None)
    }

    async fn judge_lease(&self, _host: &str) -> Result<bool, StoreError> {
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::droplets::version::ContentHash;

    #[tokio::test]
    async fn saves_versions_and_keeps_the_newest() {
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
                    false,
                )
                .await
                .unwrap();
        }
        let versions = store.versions("app").await.unwrap();
        assert_eq!(versions.len(), KEPT_VERSIONS);
        assert_eq!(versions[0], id(7));
        assert_eq!(
            store.read("app", &versions[1]).await.unwrap(),
            (b"wasm".to_vec(), Some("budget_ms = 5".to_string()))
        );
        assert_eq!(store.current("app").await.unwrap().unwrap().0, id(7));
        assert_eq!(store.files.max_seq().unwrap(), 7);
        assert_eq!(
            FileStore::new(dir.path().to_path_buf())
                .next_seq()
                .await
                .unwrap(),
            8
        );
        store.set_current("app", &id(5)).await.unwrap();
        assert_eq!(store.current("app").await.unwrap().unwrap().0, id(5));
        // A canary is stored beside the current version, which is kept
        // however old it is.
        store.set_current("app", &id(3)).await.unwrap();
        store
            .save("app", &id(8), b"wasm", None, true)
            .await
            .unwrap();
        assert_eq!(store.current("app").await.unwrap().unwrap().0, id(3));
        let kept = store.versions("app").await.unwrap();
        assert_eq!(kept.first(), Some(&id(8)));
        assert!(kept.contains(&id(3)), "{kept:?}");
        store.remove("app").await.unwrap();
        assert!(store.names().await.unwrap().is_empty());
        assert_eq!(store.current("app").await.unwrap(), None);
    }
}
