//! Turning a module and its manifest into something that can serve:
//! parse and validate the manifest, expand its config, compile (or load
//! from the code cache) and check the component against the world.
//! Everything here blocks: call it off the async workers.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::droplets::manifest::{ConfigEnv, Manifest};
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

/// A manifest that parsed, with its config resolved.
#[derive(Default)]
pub struct Parsed {
    /// The manifest.
    pub manifest: Manifest,
    /// `[config]` with `${VAR}` expanded.
    pub config: Arc<BTreeMap<String, String>>,
}

/// Compiles and links droplets for the runtime.
pub struct Loader {
    runtime: Arc<Runtime>,
    cache: CodeCache,
    max_memory_mb: u64,
    config_env: ConfigEnv,
}

impl Loader {
    /// A loader for `runtime`, caching compiled code in `cache`; manifests
    /// may ask for `max_memory_mb` and expand the variables `config_env`
    /// allows.
    pub fn new(
        runtime: Arc<Runtime>,
        cache: CodeCache,
        max_memory_mb: u64,
        config_env: ConfigEnv,
    ) -> Self {
        Self {
            runtime,
            cache,
            max_memory_mb,
            config_env,
        }
    }

    /// Parses `{name}.toml` (absent: the defaults) and resolves its config
    /// from the host environment.
    pub fn parse(&self, name: &str, manifest: Option<&str>) -> Result<Parsed, String> {
        let manifest = match manifest {
            Some(text) => Manifest::parse(text, self.max_memory_mb)
                .map_err(|err| format!("invalid manifest {name}.toml: {err}"))?,
            None => Manifest::default(),
        };
        let config = manifest
            .resolve_config(&self.config_env, |var| std::env::var(var).ok())
            .map_err(|err| format!("invalid manifest {name}.toml: {err}"))?;
        Ok(Parsed {
            manifest,
            config: Arc::new(config),
        })
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
        manifest
            .check_imports(&imports)
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
