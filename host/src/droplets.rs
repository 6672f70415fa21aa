//! The table of droplets this host serves: for each name, its manifest, its
//! version and either a linked component ready to instantiate or the reason
//! it failed to load.
//!
//! The table is behind an [`ArcSwap`] so a request takes a consistent
//! snapshot without a lock, and a new table can be published atomically.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::cache::{CodeCache, Origin, hex};
use crate::manifest::Manifest;
use crate::router::{RESERVED_NAMES, is_valid_name};
use crate::runtime::{CallState, DropletPre, Runtime};

/// One droplet as loaded.
pub struct Droplet {
    /// Its name, as routed.
    pub name: Arc<str>,
    /// Its manifest (the defaults when the manifest failed to parse).
    pub manifest: Manifest,
    /// Content hash of its module and manifest: what it is running.
    pub version: Arc<str>,
    /// Ready to serve, or why not.
    pub state: DropletState,
    /// Slots for concurrent calls (`max_concurrency`).
    pub slots: Semaphore,
}

/// Whether a droplet can serve.
pub enum DropletState {
    /// Linked and ready.
    Ready(Ready),
    /// Failed to load; the reason is shown to callers and logged.
    Failed(String),
}

/// A droplet that can be instantiated.
pub struct Ready {
    /// The pre-linked component.
    pub pre: DropletPre<CallState>,
    /// Its `[config]` with environment variables expanded.
    pub config: Arc<BTreeMap<String, String>>,
}

/// Every droplet this host knows, by name.
#[derive(Default)]
pub struct Droplets {
    table: ArcSwap<HashMap<String, Arc<Droplet>>>,
}

impl Droplets {
    /// The droplet called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Droplet>> {
        self.table.load().get(name).cloned()
    }

    /// How many droplets there are (ready or failed).
    pub fn len(&self) -> usize {
        self.table.load().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Loads every `{name}.wasm` (with its optional `{name}.toml`) in `dir`.
    /// A droplet that fails to load is kept, as failed, with its reason; it
    /// never stops the others. Blocking: call it off the async workers.
    pub fn load_dir(
        dir: &Path,
        runtime: &Runtime,
        cache: &CodeCache,
        max_memory_mb: u64,
    ) -> std::io::Result<Self> {
        let started = Instant::now();
        let mut table = HashMap::new();
        for (name, wasm_path) in droplet_files(dir)? {
            let droplet = load_one(&name, &wasm_path, runtime, cache, max_memory_mb);
            table.insert(name, Arc::new(droplet));
        }
        let failed = table
            .values()
            .filter(|droplet| matches!(droplet.state, DropletState::Failed(_)))
            .count();
        tracing::info!(
            dir = %dir.display(),
            loaded = table.len() - failed,
            failed,
            duration_ms = started.elapsed().as_millis() as u64,
            "droplets loaded"
        );
        Ok(Self {
            table: ArcSwap::from_pointee(table),
        })
    }
}

/// The `(name, path)` of every `*.wasm` in `dir` whose name is a valid,
/// unreserved droplet name; other files are skipped with a warning.
fn droplet_files(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|ext| ext.to_str()) != Some("wasm") {
            continue;
        }
        let Some(name) = path.file_stem().and_then(|stem| stem.to_str()) else {
            continue;
        };
        if !is_valid_name(name) || RESERVED_NAMES.contains(&name) {
            tracing::warn!(
                file = %path.display(),
                "skipped: droplet names are [a-z0-9][a-z0-9-]{{0,62}} and may not be `health` or `metrics`"
            );
            continue;
        }
        files.push((name.to_string(), path));
    }
    files.sort();
    Ok(files)
}

/// Loads one droplet; never fails, a failure is the droplet's state.
fn load_one(
    name: &str,
    wasm_path: &Path,
    runtime: &Runtime,
    cache: &CodeCache,
    max_memory_mb: u64,
) -> Droplet {
    let started = Instant::now();
    let manifest_path = wasm_path.with_extension("toml");
    let wasm = std::fs::read(wasm_path);
    let manifest_text = match std::fs::read_to_string(&manifest_path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(format!("cannot read {name}.toml: {err}")),
    };
    let version = {
        let mut digest = Sha256::new();
        if let Ok(wasm) = &wasm {
            digest.update(wasm);
        }
        if let Ok(Some(text)) = &manifest_text {
            digest.update(text.as_bytes());
        }
        let full = hex(&digest.finalize());
        Arc::<str>::from(&full[..12])
    };

    let mut manifest = Manifest::default();
    let state = (|| {
        let manifest_text = manifest_text?;
        if let Some(text) = manifest_text {
            manifest = Manifest::parse(&text, max_memory_mb)
                .map_err(|err| format!("invalid manifest {name}.toml: {err}"))?;
        }
        let config = manifest
            .resolve_config(|var| std::env::var(var).ok())
            .map_err(|err| format!("invalid manifest {name}.toml: {err}"))?;
        let wasm = wasm.map_err(|err| format!("cannot read {name}.wasm: {err}"))?;
        let (component, origin) = cache
            .load_or_compile(runtime.engine(), &wasm)
            .map_err(|err| format!("{name}.wasm is not a valid component: {err}"))?;
        let pre = runtime
            .link(&component)
            .map_err(|err| format!("{name}.wasm cannot serve: {err}"))?;
        Ok::<_, String>((
            Ready {
                pre,
                config: Arc::new(config),
            },
            origin,
        ))
    })();

    let state = match state {
        Ok((ready, origin)) => {
            tracing::info!(
                droplet = name,
                version = %version,
                cached = origin == Origin::Cached,
                duration_ms = started.elapsed().as_millis() as u64,
                "droplet ready"
            );
            DropletState::Ready(ready)
        }
        Err(reason) => {
            tracing::error!(droplet = name, version = %version, reason = %reason, "droplet failed to load");
            DropletState::Failed(reason)
        }
    };
    Droplet {
        name: name.into(),
        slots: Semaphore::new(manifest.max_concurrency as usize),
        manifest,
        version,
        state,
    }
}
