//! Turning a module and its manifest into something that can serve:
//! parse and validate the manifest, expand its config, compile (or load
//! from the code cache) and check the component against the world.
//! Everything here blocks: call it off the async workers.

use std::sync::Arc;

use crate::capabilities::{self, Capabilities, Grants};
use crate::droplets::manifest::Manifest;
use crate::guest::code_cache::{CodeCache, Origin};
use crate::guest::runtime::{Linked, Runtime};

/// A droplet that can be instantiated.
pub struct Ready {
    /// The pre-linked component.
    pub pre: Linked,
    /// Where its compiled code came from.
    pub origin: Origin,
    /// The interfaces the component imports (read from the component).
    pub imports: Vec<String>,
}

/// A manifest that parsed, with what it grants each capability prepared.
#[derive(Default)]
pub struct Parsed {
    /// The manifest.
    pub manifest: Manifest,
    /// What it grants each capability (its `[config]` resolved, its
    /// allowlist parsed, its kv quota).
    pub grants: Grants,
}

/// Compiles and links droplets for the runtime.
pub struct Loader {
    runtime: Arc<Runtime>,
    cache: CodeCache,
    max_memory_mb: u64,
    capabilities: Arc<Capabilities>,
}

impl Loader {
    /// A loader for `runtime`, caching compiled code in `cache`; manifests
    /// may ask for `max_memory_mb`, and are granted `capabilities`.
    pub fn new(
        runtime: Arc<Runtime>,
        cache: CodeCache,
        max_memory_mb: u64,
        capabilities: Arc<Capabilities>,
    ) -> Self {
        Self {
            runtime,
            cache,
            max_memory_mb,
            capabilities,
        }
    }

    /// Parses `{name}.toml` (absent: the defaults) and prepares what it
    /// grants each capability (its config resolved from the host
    /// environment, its allowlist parsed).
    pub fn parse(&self, name: &str, manifest: Option<&str>) -> Result<Parsed, String> {
        let manifest = match manifest {
            Some(text) => Manifest::parse(text, self.max_memory_mb)
                .map_err(|err| format!("invalid manifest {name}.toml: {err}"))?,
            None => Manifest::default(),
        };
        let grants = self
            .capabilities
            .grant(&manifest)
            .map_err(|err| format!("invalid manifest {name}.toml: {err}"))?;
        Ok(Parsed { manifest, grants })
    }

    /// Compiles `{name}.wasm` (or loads it from the cache), checks that it
    /// imports nothing its `manifest` does not grant, and links it.
    pub fn compile(&self, name: &str, wasm: &[u8], manifest: &Manifest) -> Result<Ready, String> {
        let (component, origin) = self
            .cache
            .load_or_compile(self.runtime.engine(), wasm)
            .map_err(|err| format!("{name}.wasm is not a valid component: {err}"))?;
        let imports: Vec<String> = component
            .component_type()
            .imports(self.runtime.engine())
            .map(|(import, _)| import.to_string())
            .collect();
        capabilities::check_imports(manifest, &imports)
            .map_err(|why| format!("{name}.wasm cannot serve: {why}, in {name}.toml"))?;
        let pre = self
            .runtime
            .link(&component)
            .map_err(|err| format!("{name}.wasm cannot serve: {err}"))?;
        Ok(Ready {
            pre,
            origin,
            imports,
        })
    }
}
