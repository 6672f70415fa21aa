//! The droplets this host serves, their versions, and swaps between them.
//!
//! The table maps each name to the [`Droplet`] version that new requests
//! get. It is behind an [`ArcSwap`]: a request takes the current version
//! without a lock and keeps it (an `Arc`) until it is answered, so a swap
//! never changes the version under a request in flight. A new version is
//! parsed, compiled and checked against the world *before* it is published
//! with one atomic pointer swap; one that fails is refused with its reason
//! and the current version keeps serving.
//!
//! Every published version is also stored on disk ([`store`]), so a restart
//! serves what was published last and rollback can go back through the last
//! versions. At start-up, a module in the droplets directory that is newer
//! than the stored current version (and different) is published as a new
//! version; otherwise the stored one is served.

pub mod loader;
pub mod stats;
pub mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::{OnceCell, Semaphore};

use self::loader::{Loader, Parsed, Ready, content_hash};
use self::stats::DropletStats;
use self::store::{DeploymentStore, StoredVersion};
use crate::cache::Origin;
use crate::manifest::Manifest;
use crate::router::{NAME_RULE, is_droplet_name};

/// One published version of a droplet.
pub struct Droplet {
    /// Its name, as routed.
    pub name: Arc<str>,
    /// Its manifest (the defaults when the manifest failed to parse).
    pub manifest: Manifest,
    /// `{seq}-{hash}`: what it is running, as shown in `x-droplet-version`.
    pub version: Arc<str>,
    /// Ready to serve, waiting to be compiled, or why it cannot serve.
    pub state: DropletState,
    /// Its `[config]` with environment variables expanded.
    pub config: Arc<std::collections::BTreeMap<String, String>>,
    /// Slots for concurrent calls (`max_concurrency`) of this version.
    pub slots: Semaphore,
    /// Counters of this droplet, shared by all its versions.
    pub stats: Arc<DropletStats>,
    /// When this version was published (or loaded at start-up).
    pub published_at: SystemTime,
}

/// Whether a droplet version can serve.
pub enum DropletState {
    /// Compiled and linked.
    Ready(Arc<Ready>),
    /// Registered but not compiled yet (`--lazy`): compiled by the first
    /// request, which the others wait for.
    Pending(Pending),
    /// Failed to load; the reason is shown to callers and logged.
    Failed(String),
}

/// A version to compile on first use.
pub struct Pending {
    wasm: PathBuf,
    compiled: OnceCell<Result<Arc<Ready>, String>>,
}

impl Droplet {
    /// The compiled version, compiling it now if it is pending.
    pub async fn ready(&self, loader: &Arc<Loader>) -> Result<Arc<Ready>, String> {
        match &self.state {
            DropletState::Ready(ready) => Ok(Arc::clone(ready)),
            DropletState::Failed(reason) => Err(reason.clone()),
            DropletState::Pending(pending) => pending
                .compiled
                .get_or_init(|| async {
                    let loader = Arc::clone(loader);
                    let (name, wasm) = (self.name.to_string(), pending.wasm.clone());
                    let started = Instant::now();
                    let compiled = tokio::task::spawn_blocking(move || {
                        let bytes = std::fs::read(&wasm)
                            .map_err(|err| format!("cannot read {name}.wasm: {err}"))?;
                        loader.compile(&name, &bytes).map(Arc::new)
                    })
                    .await
                    .unwrap_or_else(|_| Err("compilation was abandoned".to_string()));
                    log_load(
                        &self.name,
                        &self.version,
                        &compiled.as_ref().map(|ready| ready.origin),
                        started,
                    );
                    compiled
                })
                .await
                .clone(),
        }
    }

    /// `active`, `inactive` (not compiled yet) or `error` (cannot serve).
    pub fn state_name(&self) -> &'static str {
        match &self.state {
            DropletState::Ready(_) => "active",
            DropletState::Pending(pending) => match pending.compiled.get() {
                Some(Ok(_)) => "active",
                Some(Err(_)) => "error",
                None => "inactive",
            },
            DropletState::Failed(_) => "error",
        }
    }

    /// Whether this version holds the module and manifest with content hash
    /// `hash` (compared on the 12 hex digits the version id carries).
    pub fn has_content(&self, hash: &str) -> bool {
        self.version
            .split_once('-')
            .is_some_and(|(_, short)| hash.starts_with(short))
    }

    /// The sequence number of this version.
    pub fn seq(&self) -> u64 {
        self.version
            .split_once('-')
            .and_then(|(seq, _)| seq.parse().ok())
            .unwrap_or(0)
    }
}

fn log_load(name: &str, version: &str, result: &Result<Origin, &String>, started: Instant) {
    match result {
        Ok(origin) => tracing::info!(
            droplet = name,
            version,
            cached = *origin == Origin::Cached,
            duration_ms = started.elapsed().as_millis() as u64,
            "droplet ready"
        ),
        Err(reason) => {
            tracing::error!(droplet = name, version, reason = %reason, "droplet failed to load")
        }
    }
}

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// A new version is serving.
    New(String),
    /// The same module and manifest were already serving.
    Unchanged(String),
}

impl Published {
    /// The version now serving.
    pub fn version(&self) -> &str {
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
    /// The disk refused.
    #[error("{0}")]
    Storage(String),
}

/// Every droplet this host serves, by name.
pub struct Droplets {
    table: ArcSwap<HashMap<String, Arc<Droplet>>>,
    loader: Arc<Loader>,
    store: Arc<DeploymentStore>,
    dir: PathBuf,
    seq: AtomicU64,
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
    /// `dir`, compiled now (or on first request when `lazy`). A droplet that
    /// fails to load is kept, as failed, with its reason; it never stops the
    /// others. Blocking: call it off the async workers.
    pub fn load(
        dir: &Path,
        store: DeploymentStore,
        loader: Arc<Loader>,
        lazy: bool,
    ) -> std::io::Result<Self> {
        let started = Instant::now();
        let store = Arc::new(store);
        let droplets = Self {
            table: ArcSwap::from_pointee(HashMap::new()),
            loader,
            seq: AtomicU64::new(store.max_seq()),
            store,
            dir: dir.to_path_buf(),
            stats: std::sync::Mutex::new(HashMap::new()),
            changes: tokio::sync::Mutex::new(()),
            listener: std::sync::OnceLock::new(),
        };
        let mut names: Vec<String> = droplet_files(dir)?
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        names.extend(
            droplets
                .store
                .names()
                .into_iter()
                .filter(|name| is_droplet_name(name)),
        );
        names.sort();
        names.dedup();

        let versions: Vec<(String, Result<StoredVersion, String>)> = names
            .into_iter()
            .map(|name| {
                let version = droplets.startup_version(&name);
                (name, version)
            })
            .collect();
        let total = versions.len();
        let progress = Progress::new(total, lazy);
        let loaded = parallel_map(versions, |(name, version)| {
            let droplet = droplets.build(&name, version, lazy);
            progress.tick();
            (name, Arc::new(droplet))
        });
        progress.finish();
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

    /// Which version of `name` to serve at start-up: the stored current one,
    /// unless the droplets directory holds a newer, different module (then
    /// that is stored as a new version).
    fn startup_version(&self, name: &str) -> Result<StoredVersion, String> {
        let stored = self.store.current(name);
        let wasm_path = self.dir.join(format!("{name}.wasm"));
        let dir_modified = newest_mtime(&wasm_path, &self.dir.join(format!("{name}.toml")));
        let use_dir = match (&stored, dir_modified) {
            (None, Some(_)) => true,
            (Some((_, published)), Some(modified)) => modified > *published,
            (_, None) => false,
        };
        if !use_dir {
            return stored
                .map(|(version, _)| version)
                .ok_or_else(|| format!("{name} has no module"));
        }
        let (wasm, manifest) = read_dir_version(&self.dir, name)?;
        let hash = content_hash(&wasm, manifest.as_deref());
        if let Some((version, _)) = &stored
            && version.id.ends_with(&hash[..12])
        {
            return Ok(version.clone());
        }
        let id = self.next_version_id(&hash);
        self.store
            .save(name, &id, &wasm, manifest.as_deref())
            .map_err(|err| format!("cannot store {name}: {err}"))?;
        self.store
            .current(name)
            .map(|(version, _)| version)
            .ok_or_else(|| format!("cannot store {name}"))
    }

    /// Builds the droplet for a stored version: parsed always, compiled now
    /// unless `lazy`. Blocking.
    fn build(&self, name: &str, version: Result<StoredVersion, String>, lazy: bool) -> Droplet {
        let started = Instant::now();
        let stats = self.stats_for(name);
        let (id, files) = match version {
            Ok(version) => (version.id.clone(), Ok(version)),
            Err(reason) => ("0-unloaded".to_string(), Err(reason)),
        };
        // A lazy droplet reads only its manifest now; its module is read when
        // its first request compiles it.
        let loaded = files.and_then(|version| {
            let read = |path: &Path| {
                std::fs::read(path).map_err(|err| format!("cannot read {name}: {err}"))
            };
            let manifest = match &version.manifest {
                Some(path) => Some(
                    String::from_utf8(read(path)?)
                        .map_err(|_| format!("{name}.toml is not UTF-8"))?,
                ),
                None => None,
            };
            let parsed = self.loader.parse(name, manifest.as_deref())?;
            let wasm = if lazy {
                Vec::new()
            } else {
                read(&version.wasm)?
            };
            Ok((version, wasm, parsed))
        });
        let droplet = |manifest: Manifest, config, state| Droplet {
            name: name.into(),
            slots: Semaphore::new(manifest.max_concurrency as usize),
            manifest,
            version: id.as_str().into(),
            state,
            config,
            stats: Arc::clone(&stats),
            published_at: SystemTime::now(),
        };
        match loaded {
            Err(reason) => {
                tracing::error!(droplet = name, version = %id, reason = %reason, "droplet failed to load");
                droplet(
                    Manifest::default(),
                    Arc::default(),
                    DropletState::Failed(reason),
                )
            }
            Ok((version, _, Parsed { manifest, config })) if lazy => droplet(
                manifest,
                config,
                DropletState::Pending(Pending {
                    wasm: version.wasm,
                    compiled: OnceCell::new(),
                }),
            ),
            Ok((_, wasm, Parsed { manifest, config })) => {
                let compiled = self.loader.compile(name, &wasm);
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
                droplet(manifest, config, state)
            }
        }
    }

    /// The id of the next version with content `hash`: `{seq}-{hash12}`.
    fn next_version_id(&self, hash: &str) -> String {
        format!(
            "{}-{}",
            self.seq.fetch_add(1, Ordering::SeqCst) + 1,
            &hash[..12]
        )
    }

    fn stats_for(&self, name: &str) -> Arc<DropletStats> {
        match self.stats.lock() {
            Ok(mut stats) => Arc::clone(stats.entry(name.to_string()).or_default()),
            Err(_) => Arc::default(),
        }
    }

    /// The loader, for compiling pending droplets.
    pub fn loader(&self) -> &Arc<Loader> {
        &self.loader
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
    pub fn current_module(&self, name: &str) -> std::io::Result<Vec<u8>> {
        let current = self.get(name).map(|droplet| droplet.version.to_string());
        let version = self
            .store
            .versions(name)
            .into_iter()
            .find(|version| Some(&version.id) == current.as_ref())
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no stored module"))?;
        std::fs::read(version.wasm)
    }

    /// The stored versions of `name`, newest first.
    pub fn history(&self, name: &str) -> Vec<String> {
        self.store
            .versions(name)
            .into_iter()
            .map(|version| version.id)
            .collect()
    }

    /// Publishes a new version of `name` (a new droplet if there is none):
    /// compiled and checked first, off the async workers; refused with the
    /// reason if it cannot serve, and then nothing changes.
    pub async fn publish(
        &self,
        name: &str,
        wasm: Vec<u8>,
        manifest: Option<String>,
        source: &'static str,
    ) -> Result<Published, String> {
        if !is_droplet_name(name) {
            return Err(format!("`{name}` is not a valid droplet name: {NAME_RULE}"));
        }
        let hash = content_hash(&wasm, manifest.as_deref());
        if let Some(current) = self.get(name)
            && current.has_content(&hash)
            && !matches!(current.state, DropletState::Failed(_))
        {
            return Ok(Published::Unchanged(current.version.to_string()));
        }
        let started = Instant::now();
        let loader = Arc::clone(&self.loader);
        let (owned_name, manifest_for_check) = (name.to_string(), manifest.clone());
        let checked = tokio::task::spawn_blocking(move || {
            let parsed = loader.parse(&owned_name, manifest_for_check.as_deref())?;
            let ready = loader.compile(&owned_name, &wasm)?;
            Ok::<_, String>((parsed, ready, wasm))
        })
        .await
        .map_err(|_| "compilation was abandoned".to_string())?;
        let (parsed, ready, wasm) = match checked {
            Ok(checked) => checked,
            Err(reason) => {
                tracing::error!(droplet = name, source, reason = %reason, "new version refused; the current one keeps serving");
                return Err(reason);
            }
        };

        let _change = self.changes.lock().await;
        let id = self.next_version_id(&hash);
        let store = Arc::clone(&self.store);
        let (owned_name, owned_id) = (name.to_string(), id.clone());
        tokio::task::spawn_blocking(move || {
            store.save(&owned_name, &owned_id, &wasm, manifest.as_deref())
        })
        .await
        .map_err(|_| "storing the version was abandoned".to_string())?
        .map_err(|err| format!("cannot store the new version: {err}"))?;
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

    /// Makes `ready` the current version of `name` with one atomic swap.
    fn swap_in(&self, name: &str, id: &str, parsed: Parsed, ready: Ready) {
        let droplet = Arc::new(Droplet {
            name: name.into(),
            slots: Semaphore::new(parsed.manifest.max_concurrency as usize),
            manifest: parsed.manifest,
            version: id.into(),
            state: DropletState::Ready(Arc::new(ready)),
            config: parsed.config,
            stats: self.stats_for(name),
            published_at: SystemTime::now(),
        });
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
    pub async fn rollback(&self, name: &str) -> Result<String, ChangeError> {
        let _change = self.changes.lock().await;
        let current = self
            .get(name)
            .ok_or_else(|| ChangeError::NotFound(name.to_string()))?;
        let previous = self
            .store
            .versions(name)
            .into_iter()
            .find(|version| version.seq < current.seq())
            .ok_or_else(|| ChangeError::NoPrevious(name.to_string()))?;
        let (loader, store, owned_name) = (
            Arc::clone(&self.loader),
            Arc::clone(&self.store),
            name.to_string(),
        );
        let prepared = tokio::task::spawn_blocking(move || {
            let (wasm, manifest) = previous.read().map_err(|err| {
                ChangeError::Storage(format!("cannot read version {}: {err}", previous.id))
            })?;
            let parsed = loader
                .parse(&owned_name, manifest.as_deref())
                .map_err(ChangeError::Invalid)?;
            let ready = loader
                .compile(&owned_name, &wasm)
                .map_err(ChangeError::Invalid)?;
            store
                .set_current(&owned_name, &previous.id)
                .map_err(|err| ChangeError::Storage(format!("cannot store the rollback: {err}")))?;
            Ok((previous.id, parsed, ready))
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
            for ext in ["wasm", "toml"] {
                match std::fs::remove_file(dir.join(format!("{owned_name}.{ext}"))) {
                    Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
                    _ => {}
                }
            }
            Ok(())
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
pub fn read_dir_version(dir: &Path, name: &str) -> Result<(Vec<u8>, Option<String>), String> {
    let wasm = std::fs::read(dir.join(format!("{name}.wasm")))
        .map_err(|err| format!("cannot read {name}.wasm: {err}"))?;
    let manifest = match std::fs::read_to_string(dir.join(format!("{name}.toml"))) {
        Ok(text) => Some(text),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => return Err(format!("cannot read {name}.toml: {err}")),
    };
    Ok((wasm, manifest))
}

fn newest_mtime(wasm: &Path, manifest: &Path) -> Option<SystemTime> {
    let modified = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|meta| meta.modified())
            .ok()
    };
    let wasm = modified(wasm)?;
    Some(modified(manifest).map_or(wasm, |manifest| manifest.max(wasm)))
}

/// Maps `items` on as many threads as there are cores, keeping order.
fn parallel_map<T: Send, U: Send>(items: Vec<T>, map: impl Fn(T) -> U + Sync) -> Vec<U> {
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(items.len().max(1));
    let queue = std::sync::Mutex::new(items.into_iter().enumerate());
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().ok().and_then(|mut queue| queue.next());
                    let Some((index, item)) = next else { break };
                    let mapped = map(item);
                    if let Ok(mut results) = results.lock() {
                        results.push((index, mapped));
                    }
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_default();
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, mapped)| mapped).collect()
}

/// A progress bar on a terminal while many droplets compile.
struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn new(total: usize, lazy: bool) -> Self {
        use std::io::IsTerminal;
        if lazy || total < 2 || !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = indicatif::ProgressBar::new(total as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "compiling droplets {bar:40} {pos}/{len} {elapsed}",
        ) {
            bar.set_style(style);
        }
        Self(Some(bar))
    }

    fn tick(&self) {
        if let Some(bar) = &self.0 {
            bar.inc(1);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
