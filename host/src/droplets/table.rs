//! The table of current versions, and every change to it.
//!
//! The table maps each name to the [`Droplet`] version that new requests
//! get. It is behind an [`ArcSwap`]: a request takes the current version
//! without a lock and keeps it (an `Arc`) until it is answered, so a swap
//! never changes the version under a request in flight. A new version is
//! parsed, compiled and checked against the world *before* it is published
//! with one atomic pointer swap; one that fails is refused with its reason
//! and the current version keeps serving.
//!
//! Every published version is also kept in the [`DeploymentStore`], so a
//! restart serves what was published last and rollback can go back through
//! the last versions. At start-up, a module in the droplets directory that
//! is newer than the stored current version (and different) is published
//! as a new version if it loads — the same check as a live swap — and
//! otherwise the stored one is served.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use rayon::prelude::*;

use super::directory;
use super::droplet::{Droplet, DropletState, LoadProgress, Pending};
use super::loader::{Loader, Parsed, Ready};
use super::stats::DropletStats;
use super::store::DeploymentStore;
use super::version::{ContentHash, VersionId};
use crate::droplets::name::{NAME_RULE, is_droplet_name};
use crate::guest::code_cache::Origin;

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// A new version is serving.
    New(VersionId),
    /// The same module and manifest were already serving.
    Unchanged(VersionId),
}

impl Published {
    /// The version now serving.
    pub fn version(&self) -> &VersionId {
        match self {
            Published::New(version) | Published::Unchanged(version) => version,
        }
    }
}

/// Why a rollback or removal could not happen.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// No droplet has that name.
    #[error("no droplet named `{0}`")]
    NotFound(String),
    /// There is no older stored version.
    #[error("droplet `{0}` has no previous version to roll back to")]
    NoPrevious(String),
    /// The previous version no longer loads.
    #[error("{0}")]
    Invalid(String),
    /// The store refused.
    #[error("{0}")]
    Storage(String),
}

/// Every droplet this host serves, by name.
pub struct Droplets {
    table: ArcSwap<HashMap<String, Arc<Droplet>>>,
    loader: Arc<Loader>,
    store: Arc<dyn DeploymentStore>,
    dir: PathBuf,
    /// Counters by name, kept across versions and removals. A `std` mutex:
    /// held only to look up or insert.
    stats: std::sync::Mutex<HashMap<String, Arc<DropletStats>>>,
    /// Publishes, rollbacks and removals happen one at a time.
    changes: tokio::sync::Mutex<()>,
    /// Told about every version that starts serving (the registrar).
    listener: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<Arc<Droplet>>>,
}

impl Droplets {
    /// Loads every droplet: the stored current versions and the modules in
    /// `dir`, compiled now on every core (or on first request when `lazy`).
    /// A droplet that fails to load is kept, as failed, with its reason; it
    /// never stops the others. Blocking: call it off the async workers.
    pub fn load(
        dir: &Path,
        store: Arc<dyn DeploymentStore>,
        loader: Arc<Loader>,
        lazy: bool,
        progress: &dyn LoadProgress,
    ) -> std::io::Result<Self> {
        let started = Instant::now();
        let droplets = Self {
            table: ArcSwap::from_pointee(HashMap::new()),
            loader,
            store,
            dir: dir.to_path_buf(),
            stats: std::sync::Mutex::new(HashMap::new()),
            changes: tokio::sync::Mutex::new(()),
            listener: std::sync::OnceLock::new(),
        };
        let mut names: Vec<String> = directory::droplet_files(dir)?
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        names.extend(
            droplets
                .store
                .names()?
                .into_iter()
                .filter(|name| is_droplet_name(name)),
        );
        names.sort();
        names.dedup();

        let total = names.len();
        if !lazy {
            progress.started(total);
        }
        let loaded: Vec<(String, Arc<Droplet>)> = names
            .into_par_iter()
            .map(|name| {
                let droplet = droplets.load_one(&name, lazy);
                if !lazy {
                    progress.loaded();
                }
                (name, Arc::new(droplet))
            })
            .collect();
        if !lazy {
            progress.finished();
        }
        let failed = loaded
            .iter()
            .filter(|(_, droplet)| matches!(droplet.state, DropletState::Failed(_)))
            .count();
        droplets.table.store(Arc::new(loaded.into_iter().collect()));
        droplets.count_loaded();
        tracing::info!(
            dir = %dir.display(),
            droplets = total,
            failed,
            lazy,
            duration_ms = started.elapsed().as_millis() as u64,
            "droplets loaded"
        );
        Ok(droplets)
    }

    /// The version of `name` to serve from start-up: the stored current
    /// one, unless the droplets directory holds a newer, different module
    /// that loads — checked exactly as a live swap checks it, so a module
    /// that would have been refused while the host ran is refused now too,
    /// and the stored version keeps serving. Blocking.
    fn load_one(&self, name: &str, lazy: bool) -> Droplet {
        let stored = match self.store.current(name) {
            Ok(stored) => stored,
            Err(err) => {
                let reason = format!("cannot read the stored versions of {name}: {err}");
                return self.build(name, Err(reason), lazy);
            }
        };
        let dir_is_newer = match (&stored, directory::modified(&self.dir, name)) {
            (None, Some(_)) => true,
            (Some((_, published)), Some(modified)) => modified > *published,
            (_, None) => false,
        };
        if dir_is_newer {
            let current = stored.as_ref().map(|(version, _)| version);
            match self.adopt_directory_version(name, current, lazy) {
                Ok(Some(droplet)) => return droplet,
                Ok(None) => {}
                Err(reason) if current.is_some() => {
                    tracing::error!(droplet = name, reason = %reason, "new version in the droplets directory refused; the stored version keeps serving");
                }
                Err(reason) => return self.build(name, Err(reason), lazy),
            }
        }
        let version = stored
            .map(|(version, _)| version)
            .ok_or_else(|| format!("{name} has no module"));
        self.build(name, version, lazy)
    }

    /// Publishes the directory's version of `name` at start-up if it loads
    /// and differs from `current`; `None` when it is the current content.
    /// It is compiled now, even when `lazy`, if there is a `current` to
    /// keep serving should it not load; a droplet seen for the first time
    /// stays lazy (its first request compiles it). Blocking.
    fn adopt_directory_version(
        &self,
        name: &str,
        current: Option<&VersionId>,
        lazy: bool,
    ) -> Result<Option<Droplet>, String> {
        let started = Instant::now();
        let (wasm, manifest) = directory::read_version(&self.dir, name)?;
        let hash = ContentHash::of(&wasm, manifest.as_deref());
        if current.is_some_and(|version| version.has_content(&hash)) {
            return Ok(None);
        }
        let parsed = self.loader.parse(name, manifest.as_deref())?;
        let ready = if lazy && current.is_none() {
            None
        } else {
            Some(self.loader.compile(name, &wasm, &parsed.manifest)?)
        };
        let id = self
            .next_version_id(&hash)
            .and_then(|id| {
                self.store.save(name, &id, &wasm, manifest.as_deref())?;
                Ok(id)
            })
            .map_err(|err| format!("cannot store {name}: {err}"))?;
        let state = match ready {
            Some(ready) => {
                log_load(name, &id, &Ok(ready.origin), started);
                DropletState::Ready(Arc::new(ready))
            }
            None => DropletState::Pending(Pending::default()),
        };
        Ok(Some(Droplet::new(
            name,
            id,
            parsed,
            state,
            self.stats_for(name),
        )))
    }

    /// Builds the droplet for a stored version: parsed always, compiled now
    /// unless `lazy`. Blocking.
    fn build(&self, name: &str, version: Result<VersionId, String>, lazy: bool) -> Droplet {
        let started = Instant::now();
        let stats = self.stats_for(name);
        let (id, read) = match version {
            Err(reason) => (VersionId::unloaded(), Err(reason)),
            Ok(id) => {
                // A lazy droplet reads only its manifest now; its module is
                // read when its first request compiles it.
                let read = if lazy {
                    self.store
                        .read_manifest(name, &id)
                        .map(|manifest| (Vec::new(), manifest))
                } else {
                    self.store.read(name, &id)
                };
                let read = read.map_err(|err| format!("cannot read {name}: {err}"));
                (id, read)
            }
        };
        let parsed = read
            .and_then(|(wasm, manifest)| Ok((wasm, self.loader.parse(name, manifest.as_deref())?)));
        let (parsed, state) = match parsed {
            Err(reason) => {
                tracing::error!(droplet = name, version = %id, reason = %reason, "droplet failed to load");
                (Parsed::default(), DropletState::Failed(reason))
            }
            Ok((_, parsed)) if lazy => (parsed, DropletState::Pending(Pending::default())),
            Ok((wasm, parsed)) => {
                let compiled = self.loader.compile(name, &wasm, &parsed.manifest);
                log_load(
                    name,
                    &id,
                    &compiled.as_ref().map(|ready| ready.origin),
                    started,
                );
                let state = match compiled {
                    Ok(ready) => DropletState::Ready(Arc::new(ready)),
                    Err(reason) => DropletState::Failed(reason),
                };
                (parsed, state)
            }
        };
        Droplet::new(name, id, parsed, state, stats)
    }

    /// The id of the next version with content `hash`. Blocking.
    fn next_version_id(&self, hash: &ContentHash) -> std::io::Result<VersionId> {
        Ok(VersionId::new(self.store.next_seq()?, hash))
    }

    fn stats_for(&self, name: &str) -> Arc<DropletStats> {
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
                let (loader, store) = (Arc::clone(&self.loader), Arc::clone(&self.store));
                let (name, version) = (droplet.name.to_string(), droplet.version.clone());
                let manifest = droplet.manifest.clone();
                let started = Instant::now();
                let compiled = tokio::task::spawn_blocking(move || {
                    let (wasm, _) = store
                        .read(&name, &version)
                        .map_err(|err| format!("cannot read {name}.wasm: {err}"))?;
                    Ok(loader.compile(&name, &wasm, &manifest).map(Arc::new))
                })
                .await
                .unwrap_or_else(|_| Err("compilation was abandoned".to_string()))?;
                log_load(
                    &droplet.name,
                    &droplet.version,
                    &compiled.as_ref().map(|ready| ready.origin),
                    started,
                );
                Ok::<_, String>(compiled)
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

    /// The module of the current version of `name`, from the store.
    /// Blocking.
    pub fn current_module(&self, name: &str) -> std::io::Result<Vec<u8>> {
        let current = self
            .get(name)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such droplet"))?;
        self.store
            .read(name, &current.version)
            .map(|(wasm, _)| wasm)
    }

    /// The stored versions of `name`, newest first, read off the async
    /// workers.
    pub async fn history(&self, name: &str) -> Vec<VersionId> {
        let (store, name) = (Arc::clone(&self.store), name.to_string());
        tokio::task::spawn_blocking(move || store.versions(&name).unwrap_or_default())
            .await
            .unwrap_or_default()
    }

    /// Publishes a new version of `name` (a new droplet if there is none):
    /// compiled and checked first, off the async workers; refused with the
    /// reason if it cannot serve ([`ChangeError::Invalid`]) or cannot be
    /// stored ([`ChangeError::Storage`]), and then nothing changes.
    pub async fn publish(
        &self,
        name: &str,
        wasm: Vec<u8>,
        manifest: Option<String>,
        source: &'static str,
    ) -> Result<Published, ChangeError> {
        if !is_droplet_name(name) {
            return Err(ChangeError::Invalid(format!(
                "`{name}` is not a valid droplet name: {NAME_RULE}"
            )));
        }
        let hash = ContentHash::of(&wasm, manifest.as_deref());
        if let Some(current) = self.get(name)
            && current.version.has_content(&hash)
            && !matches!(current.state, DropletState::Failed(_))
        {
            return Ok(Published::Unchanged(current.version.clone()));
        }
        let started = Instant::now();
        let loader = Arc::clone(&self.loader);
        let (owned_name, manifest_for_check) = (name.to_string(), manifest.clone());
        let checked = tokio::task::spawn_blocking(move || {
            let parsed = loader.parse(&owned_name, manifest_for_check.as_deref())?;
            let ready = loader.compile(&owned_name, &wasm, &parsed.manifest)?;
            Ok::<_, String>((parsed, ready, wasm))
        })
        .await
        .map_err(|_| ChangeError::Invalid("compilation was abandoned".to_string()))?;
        let (parsed, ready, wasm) = match checked {
            Ok(checked) => checked,
            Err(reason) => {
                tracing::error!(droplet = name, source, reason = %reason, "new version refused; the current one keeps serving");
                return Err(ChangeError::Invalid(reason));
            }
        };

        let _change = self.changes.lock().await;
        let store = Arc::clone(&self.store);
        let owned_name = name.to_string();
        let id = tokio::task::spawn_blocking(move || {
            let id = VersionId::new(store.next_seq()?, &hash);
            store.save(&owned_name, &id, &wasm, manifest.as_deref())?;
            Ok::<_, std::io::Error>(id)
        })
        .await
        .map_err(|_| ChangeError::Storage("storing the version was abandoned".to_string()))?
        .map_err(|err| {
            tracing::error!(droplet = name, source, error = %err, "new version not stored; the current one keeps serving");
            ChangeError::Storage(format!("cannot store the new version: {err}"))
        })?;
        self.swap_in(name, &id, parsed, ready);
        tracing::info!(
            droplet = name,
            version = %id,
            source,
            duration_ms = started.elapsed().as_millis() as u64,
            "droplet version published"
        );
        Ok(Published::New(id))
    }

    /// Makes this host serve what the fleet wants: `wanted` (read under the
    /// change lock, so no publish of this host's can come between the read
    /// and the swaps) names every droplet's current version. A droplet
    /// serving another version is compiled from the store and swapped in;
    /// one the fleet no longer has is taken out of the table (its files
    /// stay). A version that cannot serve here is refused: the current one
    /// keeps serving, and `refused` remembers why, so it is not compiled
    /// again until the fleet wants another version.
    pub async fn converge<F>(
        &self,
        wanted: F,
        refused: &mut HashMap<String, (VersionId, String)>,
    ) -> Result<usize, String>
    where
        F: Future<Output = Result<Vec<(String, VersionId)>, String>>,
    {
        let _change = self.changes.lock().await;
        let wanted = wanted.await?;
        let names: std::collections::HashSet<&str> =
            wanted.iter().map(|(name, _)| name.as_str()).collect();
        let gone: Vec<Arc<Droplet>> = self
            .list()
            .into_iter()
            .filter(|droplet| {
                !names.contains(&*droplet.name) && droplet.version != VersionId::unloaded()
            })
            .collect();
        if !gone.is_empty() {
            self.table.rcu(|table| {
                let mut table = HashMap::clone(table);
                for droplet in &gone {
                    table.remove(&*droplet.name);
                }
                table
            });
            for droplet in &gone {
                tracing::info!(droplet = %droplet.name, "droplet removed by the fleet");
            }
            self.count_loaded();
        }
        refused.retain(|name, _| names.contains(name.as_str()));
        let mut swapped = 0;
        for (name, version) in wanted {
            let current = self.get(&name);
            if current.as_ref().is_some_and(|current| {
                current.version == version && !matches!(current.state, DropletState::Failed(_))
            }) {
                refused.remove(&name);
                continue;
            }
            if refused
                .get(&name)
                .is_some_and(|(refused, _)| *refused == version)
            {
                continue;
            }
            let started = Instant::now();
            let (loader, store) = (Arc::clone(&self.loader), Arc::clone(&self.store));
            let (owned_name, owned_version) = (name.clone(), version.clone());
            let prepared = tokio::task::spawn_blocking(move || {
                let (wasm, manifest) = store
                    .read(&owned_name, &owned_version)
                    .map_err(|err| format!("cannot read version {owned_version}: {err}"))?;
                let parsed = loader.parse(&owned_name, manifest.as_deref())?;
                let ready = loader.compile(&owned_name, &wasm, &parsed.manifest)?;
                Ok::<_, String>((parsed, ready))
            })
            .await
            .unwrap_or_else(|_| Err("compilation was abandoned".to_string()));
            match prepared {
                Ok((parsed, ready)) => {
                    self.swap_in(&name, &version, parsed, ready);
                    swapped += 1;
                    refused.remove(&name);
                    tracing::info!(
                        droplet = %name,
                        version = %version,
                        from = current.as_ref().map(|current| current.version.as_str()),
                        duration_ms = started.elapsed().as_millis() as u64,
                        "droplet version adopted from the fleet"
                    );
                }
                Err(reason) => {
                    tracing::error!(droplet = %name, version = %version, reason = %reason, "the fleet's version cannot serve here; the current one keeps serving");
                    refused.insert(name, (version, reason));
                }
            }
        }
        Ok(swapped)
    }

    /// Makes `ready` the current version of `name` with one atomic swap.
    fn swap_in(&self, name: &str, id: &VersionId, parsed: Parsed, ready: Ready) {
        let droplet = Arc::new(Droplet::new(
            name,
            id.clone(),
            parsed,
            DropletState::Ready(Arc::new(ready)),
            self.stats_for(name),
        ));
        self.table.rcu(|table| {
            let mut table = HashMap::clone(table);
            table.insert(name.to_string(), Arc::clone(&droplet));
            table
        });
        metrics::counter!("droplet_swaps_total").increment(1);
        if let Some(listener) = self.listener.get() {
            let _ = listener.send(droplet);
        }
        self.count_loaded();
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
    fn count_loaded(&self) {
        metrics::gauge!("droplet_droplets_loaded").set(self.len() as f64);
    }

    /// Serves the newest stored version older than the current one.
    pub async fn rollback(&self, name: &str) -> Result<VersionId, ChangeError> {
        let _change = self.changes.lock().await;
        let current = self
            .get(name)
            .ok_or_else(|| ChangeError::NotFound(name.to_string()))?;
        let (loader, store, owned_name) = (
            Arc::clone(&self.loader),
            Arc::clone(&self.store),
            name.to_string(),
        );
        let current_seq = current.version.seq();
        let prepared = tokio::task::spawn_blocking(move || {
            let storage = |what: &str, err: std::io::Error| {
                ChangeError::Storage(format!("cannot {what}: {err}"))
            };
            let previous = store
                .versions(&owned_name)
                .map_err(|err| storage("read the stored versions", err))?
                .into_iter()
                .find(|version| version.seq() < current_seq)
                .ok_or_else(|| ChangeError::NoPrevious(owned_name.clone()))?;
            let (wasm, manifest) = store
                .read(&owned_name, &previous)
                .map_err(|err| storage(&format!("read version {previous}"), err))?;
            let parsed = loader
                .parse(&owned_name, manifest.as_deref())
                .map_err(ChangeError::Invalid)?;
            let ready = loader
                .compile(&owned_name, &wasm, &parsed.manifest)
                .map_err(ChangeError::Invalid)?;
            store
                .set_current(&owned_name, &previous)
                .map_err(|err| storage("store the rollback", err))?;
            Ok((previous, parsed, ready))
        })
        .await
        .map_err(|_| ChangeError::Storage("rollback was abandoned".to_string()))??;
        let (id, parsed, ready) = prepared;
        self.swap_in(name, &id, parsed, ready);
        tracing::info!(droplet = name, version = %id, from = %current.version, "droplet rolled back");
        Ok(id)
    }

    /// Removes `name`: from the table (requests in flight finish), from the
    /// store and from the droplets directory. Whether it existed.
    pub async fn remove(&self, name: &str) -> Result<bool, ChangeError> {
        let _change = self.changes.lock().await;
        let mut existed = false;
        self.table.rcu(|table| {
            let mut table = HashMap::clone(table);
            existed = table.remove(name).is_some();
            table
        });
        let (store, dir, owned_name) =
            (Arc::clone(&self.store), self.dir.clone(), name.to_string());
        tokio::task::spawn_blocking(move || {
            store.remove(&owned_name)?;
            directory::remove_files(&dir, &owned_name)
        })
        .await
        .map_err(|_| ChangeError::Storage("removal was abandoned".to_string()))?
        .map_err(|err| {
            ChangeError::Storage(format!("cannot remove the files of `{name}`: {err}"))
        })?;
        if existed {
            tracing::info!(droplet = name, "droplet removed");
        }
        self.count_loaded();
        Ok(existed)
    }
}

fn log_load(name: &str, version: &VersionId, result: &Result<Origin, &String>, started: Instant) {
    match result {
        Ok(origin) => tracing::info!(
            droplet = name,
            version = %version,
            cached = *origin == Origin::Cached,
            duration_ms = started.elapsed().as_millis() as u64,
            "droplet ready"
        ),
        Err(reason) => {
            tracing::error!(droplet = name, version = %version, reason = %reason, "droplet failed to load")
        }
    }
}
