//! The table of current versions: which [`Droplet`] version new requests
//! of each name get, and the one atomic swap every change ends in.
//!
//! The table is behind an [`ArcSwap`]: a request takes the current version
//! without a lock and keeps it (an `Arc`) until it is answered, so a swap
//! never changes the version under a request in flight. What changes the
//! table lives beside this file: loading at start-up (`startup.rs`),
//! publish, rollback and removal (`publish.rs`), and following the fleet
//! (`converge.rs`). Each checks a new version completely
//! ([`Loader::prepare`]) *before* swapping it in; one that fails is
//! refused with its reason and the current version keeps serving.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

use super::droplet::{Droplet, DropletState};
use super::loader::{LoadError, Loader, Parsed, Ready, off_thread};
use super::rollout::split::Canary;
use super::stats::DropletStats;
use super::store::{DeploymentStore, StoreError, VersionFiles};
use super::version::{ContentHash, VersionId};
use crate::guest::code_cache::Origin;

/// Every droplet this host serves, by name.
pub struct Droplets {
    pub(super) table: ArcSwap<HashMap<String, Arc<Droplet>>>,
    /// The canary of each running rollout this host follows, by name.
    pub(super) canaries: ArcSwap<HashMap<String, Arc<Canary>>>,
    pub(super) loader: Arc<Loader>,
    pub(super) store: Arc<dyn DeploymentStore>,
    pub(super) dir: PathBuf,
    /// Counters by name, kept across versions and removals. A `std` mutex:
    /// held only to look up or insert.
    stats: std::sync::Mutex<HashMap<String, Arc<DropletStats>>>,
    /// Publishes, rollbacks, removals and convergence happen one at a time.
    pub(super) changes: tokio::sync::Mutex<()>,
    /// Told about every version that starts serving (the registrar).
    listener: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<Arc<Droplet>>>,
    /// Start-up compilation is still under way ([`Droplets::warm_up`]).
    pub(super) starting: std::sync::atomic::AtomicBool,
}

impl Droplets {
    /// An empty table over `store`, compiling with `loader`; `dir` is the
    /// droplets directory.
    pub fn new(dir: &Path, store: Arc<dyn DeploymentStore>, loader: Arc<Loader>) -> Self {
        Self {
            table: ArcSwap::from_pointee(HashMap::new()),
            canaries: ArcSwap::from_pointee(HashMap::new()),
            loader,
            store,
            dir: dir.to_path_buf(),
            stats: std::sync::Mutex::new(HashMap::new()),
            changes: tokio::sync::Mutex::new(()),
            listener: std::sync::OnceLock::new(),
            starting: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The counters of `name`, shared by all its versions.
    pub(super) fn stats_for(&self, name: &str) -> Arc<DropletStats> {
        match self.stats.lock() {
            Ok(mut stats) => Arc::clone(
                stats
                    .entry(name.to_string())
                    .or_insert_with(|| Arc::new(DropletStats::new(name))),
            ),
            Err(_) => Arc::new(DropletStats::new(name)),
        }
    }

    /// The compiled form of `droplet`, compiling it now if it is pending
    /// (its first request; the others wait for the same compilation).
    pub async fn ready(&self, droplet: &Droplet) -> Result<Arc<Ready>, String> {
        let pending = match &droplet.state {
            DropletState::Ready(ready) => return Ok(Arc::clone(ready)),
            DropletState::Failed(reason) => return Err(reason.clone()),
            DropletState::Pending(pending) => pending,
        };
        // A module that does not compile is remembered; a store that could
        // not be read (the database away) is not: the next request retries.
        let compiled = pending
            .compiled
            .get_or_try_init(|| async {
                let started = Instant::now();
                let (name, version) = (&droplet.name, &droplet.version);
                let (wasm, _) = self
                    .store
                    .read(name, version)
                    .await
                    .map_err(|err| LoadError::read(format!("{name}.wasm"), err).to_string())?;
                let loader = Arc::clone(&self.loader);
                let (owned_name, manifest) = (name.to_string(), droplet.manifest.clone());
                let compiled = off_thread(name, move || {
                    loader.compile(&owned_name, &wasm, &manifest).map(Arc::new)
                })
                .await;
                log_load(
                    name,
                    version,
                    compiled.as_ref().map(|ready| ready.origin),
                    started,
                );
                Ok::<_, String>(compiled.map_err(|err| err.to_string()))
            })
            .await?;
        compiled.clone()
    }

    /// The droplets directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current version of `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Droplet>> {
        self.table.load().get(name).cloned()
    }

    /// Every current version, by name.
    pub fn list(&self) -> Vec<Arc<Droplet>> {
        let mut droplets: Vec<_> = self.table.load().values().cloned().collect();
        droplets.sort_by(|a, b| a.name.cmp(&b.name));
        droplets
    }

    /// How many droplets there are (ready, pending or failed).
    pub fn len(&self) -> usize {
        self.table.load().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The module and manifest of the current version of `name`, from the
    /// store.
    pub async fn current_files(&self, name: &str) -> Result<Option<VersionFiles>, StoreError> {
        let Some(current) = self.get(name) else {
            return Ok(None);
        };
        Ok(Some(self.store.read(name, &current.version).await?))
    }

    /// The stored versions of `name`, newest first.
    pub async fn history(&self, name: &str) -> Result<Vec<VersionId>, StoreError> {
        self.store.versions(name).await
    }

    /// Stores `wasm` and `manifest` as a new version of `name` (content
    /// `hash`), current in the store; its id.
    pub(super) async fn store_new_version(
        &self,
        name: &str,
        hash: &ContentHash,
        wasm: &[u8],
        manifest: Option<&str>,
    ) -> Result<VersionId, StoreError> {
        let id = VersionId::new(self.store.next_seq().await?, hash);
        self.store.save(name, &id, wasm, manifest, false).await?;
        Ok(id)
    }

    /// Makes `ready` the current version of `name` with one atomic swap.
    pub(super) fn swap_in(&self, name: &str, id: &VersionId, parsed: Parsed, ready: Ready) {
        let state = DropletState::Ready(Arc::new(ready));
        self.swap_in_droplet(self.version(name, id.clone(), parsed, state));
    }

    /// Makes `droplet` (a version already built, a promoted canary) current
    /// with one atomic swap.
    pub(super) fn swap_in_droplet(&self, droplet: Arc<Droplet>) {
        self.put(Arc::clone(&droplet));
        metrics::counter!("droplet_swaps_total").increment(1);
        if let Some(listener) = self.listener.get() {
            let _ = listener.send(droplet);
        }
        self.count_loaded();
    }

    /// Puts `name`, which has no version that loads, in the table as failed
    /// with `reason`: it answers 503 saying why.
    pub(super) fn insert_failed(&self, name: &str, reason: String) {
        self.insert(
            name,
            VersionId::unloaded(),
            Parsed::default(),
            DropletState::Failed(reason),
        );
    }

    /// Makes a droplet of `name` current with one atomic swap.
    fn insert(&self, name: &str, id: VersionId, parsed: Parsed, state: DropletState) {
        self.put(self.version(name, id, parsed, state));
    }

    /// Version `id` of `name`, counted with the droplet's other versions.
    pub(super) fn version(
        &self,
        name: &str,
        id: VersionId,
        parsed: Parsed,
        state: DropletState,
    ) -> Arc<Droplet> {
        Arc::new(Droplet::new(name, id, parsed, state, self.stats_for(name)))
    }

    /// Puts `droplet` in the table with one atomic swap.
    fn put(&self, droplet: Arc<Droplet>) {
        self.table.rcu(|table| {
            let mut table = HashMap::clone(table);
            table.insert(droplet.name.to_string(), Arc::clone(&droplet));
            table
        });
    }

    /// Takes `names` out of the table (requests in flight finish); whether
    /// any was there.
    pub(super) fn take_out(&self, names: &[&str]) -> bool {
        let mut existed = false;
        self.table.rcu(|table| {
            let mut table = HashMap::clone(table);
            existed = false;
            for name in names {
                existed |= table.remove(*name).is_some();
            }
            table
        });
        self.count_loaded();
        existed
    }

    /// Tells `listener` about every current version now, and every version
    /// published from now on.
    pub fn notify(&self, listener: tokio::sync::mpsc::UnboundedSender<Arc<Droplet>>) {
        for droplet in self.list() {
            let _ = listener.send(droplet);
        }
        let _ = self.listener.set(listener);
    }

    /// Updates the gauge of droplets loaded.
    pub(super) fn count_loaded(&self) {
        metrics::gauge!("droplet_droplets_loaded").set(self.len() as f64);
    }
}

/// Logs how loading one version went.
pub(super) fn log_load(
    name: &str,
    version: &VersionId,
    result: Result<Origin, &LoadError>,
    started: Instant,
) {
    match result {
        Ok(origin) => tracing::info!(
            droplet = name,
            version = %version,
            cached = origin == Origin::Cached,
            duration_ms = started.elapsed().as_millis() as u64,
            "droplet ready"
        ),
        Err(reason) => {
            tracing::error!(droplet = name, version = %version, reason = %reason, "droplet failed to load")
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::droplets::publish::{ChangeError, Published};
    use crate::droplets::store::file::FileStore;
    use crate::testing::{self, Parts};

    /// A table over a file store and droplets directory in the parts'
    /// temporary directory.
    pub(in crate::droplets) fn table(parts: &Parts) -> Droplets {
        let dir = parts.dir.path().join("droplets");
        std::fs::create_dir_all(&dir).unwrap();
        let store = Arc::new(FileStore::new(parts.dir.path().join("deployments")));
        Droplets::new(&dir, store, Arc::clone(&parts.loader))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_version_that_cannot_serve_is_refused_and_changes_nothing() {
        let parts = testing::parts();
        let droplets = table(&parts);
        let refused = droplets
            .publish("app", b"not a component".to_vec(), None, "test")
            .await;
        assert!(
            matches!(
                refused,
                Err(ChangeError::Invalid(LoadError::NotAComponent { .. }))
            ),
            "{refused:?}"
        );
        assert!(droplets.get("app").is_none());
        assert!(droplets.store.names().await.unwrap().is_empty());
        let bad_manifest = droplets
            .publish("app", Vec::new(), Some("budget_ms = 0".into()), "test")
            .await;
        assert!(
            matches!(
                bad_manifest,
                Err(ChangeError::Invalid(LoadError::Manifest { .. }))
            ),
            "{bad_manifest:?}"
        );
        let bad_name = droplets.publish("Bad_Name", Vec::new(), None, "test").await;
        assert!(matches!(bad_name, Err(ChangeError::BadName(_))));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn publish_rollback_and_remove_each_swap_the_table_once() {
        let parts = testing::parts();
        let (Some(hello), Some(echo)) = (testing::example("hello"), testing::example("echo"))
        else {
            return;
        };
        let droplets = table(&parts);
        let first = droplets
            .publish("app", hello.clone(), None, "test")
            .await
            .unwrap();
        let Published::New(v1) = first else {
            panic!("{first:?}")
        };
        assert_eq!(
            droplets.publish("app", hello, None, "test").await.unwrap(),
            Published::Unchanged(v1.clone())
        );
        assert!(matches!(
            droplets.rollback("app").await,
            Err(ChangeError::NoPrevious(_))
        ));
        let Published::New(v2) = droplets.publish("app", echo, None, "test").await.unwrap() else {
            panic!("a new version")
        };
        assert!(v2.seq() > v1.seq());
        assert_eq!(droplets.get("app").unwrap().version, v2);
        assert_eq!(
            droplets.history("app").await.unwrap(),
            [v2.clone(), v1.clone()]
        );
        assert_eq!(droplets.rollback("app").await.unwrap(), v1);
        assert_eq!(droplets.get("app").unwrap().version, v1);
        assert!(droplets.remove("app").await.unwrap());
        assert!(droplets.get("app").is_none());
        assert!(droplets.history("app").await.unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn startup_serves_what_loads_and_keeps_what_does_not_as_failed_with_its_reason() {
        let parts = testing::parts();
        let dir = parts.dir.path().join("droplets");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("broken.wasm"), b"not a component").unwrap();
        let hello = testing::example("hello");
        if let Some(hello) = &hello {
            std::fs::write(dir.join("hello.wasm"), hello).unwrap();
        }
        let store = Arc::new(FileStore::new(parts.dir.path().join("deployments")));
        for lazy in [false, true] {
            let droplets =
                Droplets::load(&dir, store.clone(), Arc::clone(&parts.loader), lazy, &())
                    .await
                    .unwrap();
            // Refused at start, or (lazy) by the first request's compilation.
            let broken = droplets.get("broken").unwrap();
            let reason = match &broken.state {
                DropletState::Failed(reason) => reason.clone(),
                DropletState::Pending(_) if lazy => droplets.ready(&broken).await.err().unwrap(),
                _ => panic!("broken serves"),
            };
            assert!(reason.contains("not a valid component"), "{reason}");
            assert_eq!(broken.health().0, "error");
            if hello.is_some() {
                let hello = droplets.get("hello").unwrap();
                // Published once at the first start, then served from the
                // store: the second start sees the same version.
                assert_eq!(hello.version.seq(), 1);
                assert_eq!(hello.state_name(), if lazy { "inactive" } else { "active" });
                droplets.ready(&hello).await.unwrap();
            }
        }
    }
}
