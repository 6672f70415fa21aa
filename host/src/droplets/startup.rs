//! Loading every droplet at start-up: the stored current versions and the
//! modules in the droplets directory. A droplet that fails to load is
//! kept, as failed, with its reason; it never stops the others.
//!
//! At start-up, a module in the droplets directory that is newer than the
//! stored current version (and different) is published as a new version
//! if it loads — the same check as a live swap — and otherwise the stored
//! one is served. The reads are async (the store may be a database); the
//! compilations run together on every core, off the async workers — at
//! start-up of the host, after it listens ([`Droplets::warm_up`]).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use rayon::prelude::*;

use super::directory;
use super::droplet::{Droplet, DropletState, LoadProgress, Pending};
use super::loader::{LoadError, Loader, Parsed, Ready};
use super::name::is_droplet_name;
use super::store::{DeploymentStore, StoreError, VersionFiles};
use super::table::{Droplets, log_load};
use super::version::{ContentHash, VersionId};

/// Why the host cannot load its droplets at all.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The droplets directory cannot be listed.
    #[error("cannot read the droplets directory {dir}: {cause}")]
    Directory {
        /// The directory.
        dir: String,
        /// Why not.
        cause: std::io::Error,
    },
    /// The deployment store cannot list its droplets.
    #[error("cannot read the deployment store: {0}")]
    Store(#[from] StoreError),
}

/// What one droplet's start-up version is, once its files are read.
enum Plan {
    /// Serve a stored version (`files` holds only the manifest when lazy).
    Stored(VersionId, VersionFiles),
    /// Publish the droplets directory's module, newer than the stored
    /// `fallback` (which serves if it does not load).
    Directory {
        files: VersionFiles,
        hash: ContentHash,
        fallback: Option<Box<Plan>>,
    },
    /// It cannot serve: why.
    Failed(VersionId, LoadError),
}

/// A plan, compiled (or parsed only, when lazy).
enum Built {
    /// A version ready (or pending, when lazy) to go into the table.
    Serve(VersionId, Parsed, DropletState),
    /// The directory's module loaded: store it as a new version first.
    Publish {
        files: VersionFiles,
        hash: ContentHash,
        parsed: Parsed,
        ready: Option<Ready>,
        fallback: Option<Box<Plan>>,
        started: Instant,
    },
}

impl Droplets {
    /// Loads every droplet: the stored current versions and the modules in
    /// `dir`, compiled now on every core (or on first request when `lazy`).
    pub async fn load(
        dir: &Path,
        store: Arc<dyn DeploymentStore>,
        loader: Arc<Loader>,
        lazy: bool,
        progress: &dyn LoadProgress,
    ) -> Result<Self, StartupError> {
        let started = Instant::now();
        let droplets = Droplets::new(dir, store, loader);
        let owned_dir = dir.to_path_buf();
        let files = tokio::task::spawn_blocking(move || directory::droplet_files(&owned_dir))
            .await
            .map_err(|_| std::io::Error::other("listing the directory failed"))
            .and_then(|files| files)
            .map_err(|cause| StartupError::Directory {
                dir: dir.display().to_string(),
                cause,
            })?;
        let mut names: Vec<String> = files.into_iter().map(|(name, _)| name).collect();
        names.extend(
            droplets
                .store
                .names()
                .await?
                .into_iter()
                .filter(|name| is_droplet_name(name)),
        );
        names.sort();
        names.dedup();

        // Each plan waits on the store and the file system: 32 at once, in
        // order (10 000 droplets one after another took 0.86 s).
        let droplets_ref = &droplets;
        let plans: Vec<(Plan, String)> = futures_util::stream::iter(names)
            .map(|name| async move { (droplets_ref.plan(&name, lazy).await, name) })
            .buffered(32)
            .collect()
            .await;
        let total = plans.len();
        if !lazy {
            progress.started(total);
        }
        let loader = Arc::clone(&droplets.loader);
        let built: Vec<(String, Built)> = tokio::task::block_in_place(|| {
            plans
                .into_par_iter()
                .map(|(plan, name)| {
                    let built = build(&loader, &name, plan, lazy);
                    if !lazy {
                        progress.loaded();
                    }
                    (name, built)
                })
                .collect()
        });
        if !lazy {
            progress.finished();
        }
        let mut table = std::collections::HashMap::with_capacity(total);
        for (name, built) in built {
            let droplet = droplets.adopt(&name, built, lazy).await;
            table.insert(name, Arc::new(droplet));
        }
        let failed = table
            .values()
            .filter(|droplet| matches!(droplet.state, DropletState::Failed(_)))
            .count();
        droplets.table.store(Arc::new(table));
        droplets.count_loaded();
        tracing::info!(
            dir = %dir.display(),
            droplets = total,
            failed,
            lazy,
            duration_ms = started.elapsed().as_millis() as u64,
            "{}",
            if lazy { "droplets registered" } else { "droplets loaded" }
        );
        Ok(droplets)
    }

    /// Compiles every droplet still pending, as many at once as there are
    /// cores, while the host already serves: a request for one still
    /// compiling waits for that compilation (outside its budget), as a
    /// lazy droplet's first request does. Logs `droplets loaded` when all
    /// are done; until then the host's `/health` says `starting`.
    pub async fn warm_up(self: Arc<Self>, progress: Arc<dyn LoadProgress + Send>) {
        use std::sync::atomic::Ordering;

        let started = Instant::now();
        self.starting.store(true, Ordering::Relaxed);
        let pending: Vec<Arc<Droplet>> = self
            .list()
            .into_iter()
            .filter(|droplet| matches!(droplet.state, DropletState::Pending(_)))
            .collect();
        let total = self.len();
        progress.started(pending.len());
        let parallel = std::thread::available_parallelism().map_or(2, |cores| cores.get());
        futures_util::stream::iter(pending)
            .for_each_concurrent(parallel, |droplet| {
                let (this, progress) = (&self, &progress);
                async move {
                    // A failure is remembered in the droplet and logged.
                    let _ = this.ready(&droplet).await;
                    progress.loaded();
                }
            })
            .await;
        progress.finished();
        self.starting.store(false, Ordering::Relaxed);
        let failed = self
            .list()
            .iter()
            .filter(|droplet| droplet.health().0 == "error")
            .count();
        tracing::info!(
            dir = %self.dir.display(),
            droplets = total,
            failed,
            lazy = false,
            duration_ms = started.elapsed().as_millis() as u64,
            "droplets loaded"
        );
    }

    /// Whether start-up compilation is still under way.
    pub fn starting(&self) -> bool {
        self.starting.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Reads what `name` will serve from: the stored current version,
    /// unless the droplets directory holds a newer, different module.
    async fn plan(&self, name: &str, lazy: bool) -> Plan {
        let stored = match self.store.current(name).await {
            Ok(stored) => stored,
            Err(err) => {
                let what = format!("the stored versions of {name}");
                return Plan::Failed(VersionId::unloaded(), LoadError::read(what, err));
            }
        };
        let current = stored.as_ref().map(|(id, _)| id.clone());
        let stored_plan = |lazy| async move {
            let Some(id) = current else {
                let reason = LoadError::NoModule {
                    name: name.to_string(),
                };
                return Plan::Failed(VersionId::unloaded(), reason);
            };
            // A lazy droplet reads only its manifest now; its module is
            // read when its first request compiles it.
            let read = if lazy {
                self.store
                    .read_manifest(name, &id)
                    .await
                    .map(|manifest| (Vec::new(), manifest))
            } else {
                self.store.read(name, &id).await
            };
            match read {
                Ok(files) => Plan::Stored(id, files),
                Err(err) => Plan::Failed(id, LoadError::read(name.to_string(), err)),
            }
        };
        // The directory's module is read only when it is newer than the
        // stored version (a plain restart reads each module once, from the
        // store).
        let published = stored.as_ref().map(|(_, published)| *published);
        let (dir, owned_name) = (self.dir.clone(), name.to_string());
        let newer = tokio::task::spawn_blocking(move || {
            let modified = directory::modified(&dir, &owned_name)?;
            let newer = published.is_none_or(|published| modified > published);
            newer.then(|| directory::read_version(&dir, &owned_name))
        })
        .await
        .ok()
        .flatten();
        let Some(read) = newer else {
            return stored_plan(lazy).await;
        };
        let files = match read {
            Ok(files) => files,
            Err(err) if stored.is_some() => {
                tracing::error!(droplet = name, reason = %err, "new version in the droplets directory refused; the stored version keeps serving");
                return stored_plan(lazy).await;
            }
            Err(reason) => return Plan::Failed(VersionId::unloaded(), reason),
        };
        let hash = ContentHash::of(&files.0, files.1.as_deref());
        if stored
            .as_ref()
            .is_some_and(|(version, _)| version.has_content(&hash))
        {
            return stored_plan(lazy).await;
        }
        // With a stored version to fall back on, the directory's module is
        // compiled now even when lazy, so that it is refused now if it
        // would be refused live.
        let fallback = match stored {
            Some(_) => Some(Box::new(stored_plan(lazy).await)),
            None => None,
        };
        Plan::Directory {
            files,
            hash,
            fallback,
        }
    }

    /// Turns a built plan into the droplet to serve, storing the droplets
    /// directory's module as a new version when it loaded.
    async fn adopt(&self, name: &str, built: Built, lazy: bool) -> Droplet {
        let (id, parsed, state) = match built {
            Built::Serve(id, parsed, state) => (id, parsed, state),
            Built::Publish {
                files: (wasm, manifest),
                hash,
                parsed,
                ready,
                fallback,
                started,
            } => {
                let stored = self.store_new_version(name, &hash, &wasm, manifest.as_deref());
                match (stored.await, fallback) {
                    (Ok(id), _) => {
                        if let Some(ready) = &ready {
                            log_load(name, &id, Ok(ready.origin), started);
                        }
                        let state = match ready {
                            Some(ready) => DropletState::Ready(Arc::new(ready)),
                            None => DropletState::Pending(Pending::default()),
                        };
                        (id, parsed, state)
                    }
                    (Err(err), Some(fallback)) => {
                        tracing::error!(droplet = name, reason = %err, "new version in the droplets directory not stored; the stored version keeps serving");
                        let loader = &self.loader;
                        let built =
                            tokio::task::block_in_place(|| build(loader, name, *fallback, lazy));
                        return Box::pin(self.adopt(name, built, lazy)).await;
                    }
                    (Err(err), None) => {
                        let reason = format!("cannot store {name}: {err}");
                        tracing::error!(droplet = name, reason = %reason, "droplet failed to load");
                        (
                            VersionId::unloaded(),
                            Parsed::default(),
                            DropletState::Failed(reason),
                        )
                    }
                }
            }
        };
        Droplet::new(name, id, parsed, state, self.stats_for(name))
    }
}

/// Parses and compiles one plan (parses only, when `lazy` and nothing
/// older must stand by). Blocking.
fn build(loader: &Loader, name: &str, plan: Plan, lazy: bool) -> Built {
    let started = Instant::now();
    match plan {
        Plan::Failed(id, reason) => failed(name, id, reason),
        Plan::Stored(id, (wasm, manifest)) => match loader.parse(name, manifest.as_deref()) {
            Err(reason) => failed(name, id, reason),
            Ok(parsed) if lazy => {
                Built::Serve(id, parsed, DropletState::Pending(Pending::default()))
            }
            Ok(parsed) => {
                let compiled = loader.compile(name, &wasm, &parsed.manifest);
                log_load(
                    name,
                    &id,
                    compiled.as_ref().map(|ready| ready.origin),
                    started,
                );
                let state = match compiled {
                    Ok(ready) => DropletState::Ready(Arc::new(ready)),
                    Err(reason) => DropletState::Failed(reason.to_string()),
                };
                Built::Serve(id, parsed, state)
            }
        },
        Plan::Directory {
            files,
            hash,
            fallback,
        } => {
            let checked = loader.parse(name, files.1.as_deref()).and_then(|parsed| {
                let ready = if lazy && fallback.is_none() {
                    None
                } else {
                    Some(loader.compile(name, &files.0, &parsed.manifest)?)
                };
                Ok((parsed, ready))
            });
            match (checked, fallback) {
                (Ok((parsed, ready)), fallback) => Built::Publish {
                    files,
                    hash,
                    parsed,
                    ready,
                    fallback,
                    started,
                },
                (Err(reason), Some(fallback)) => {
                    tracing::error!(droplet = name, reason = %reason, "new version in the droplets directory refused; the stored version keeps serving");
                    build(loader, name, *fallback, lazy)
                }
                (Err(reason), None) => failed(name, VersionId::unloaded(), reason),
            }
        }
    }
}

fn failed(name: &str, id: VersionId, reason: LoadError) -> Built {
    tracing::error!(droplet = name, version = %id, reason = %reason, "droplet failed to load");
    Built::Serve(
        id,
        Parsed::default(),
        DropletState::Failed(reason.to_string()),
    )
}
