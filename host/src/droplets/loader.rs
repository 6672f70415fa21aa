//! Turning a module and its manifest into something that can serve:
//! parse and validate the manifest, prepare what it grants each
//! capability, compile (or load from the code cache), check the
//! component's imports against the grants and link it against the world
//! ([`Loader::prepare`], the one check every version passes before it may
//! serve). Compiling blocks: [`off_thread`] runs it on the blocking pool
//! and turns a panic into a logged refusal.

use std::sync::Arc;

use futures_util::FutureExt;
use wasmtime::PoolConcurrencyLimitError;

use super::store::{StoreError, VersionFiles};
use crate::capabilities::outbound::Chain;
use crate::capabilities::{self, CallContext, Capabilities, Grants};
use crate::droplets::manifest::{Manifest, ManifestError};
use crate::guest::code_cache::{CodeCache, Origin};
use crate::guest::runtime::{LinkError, Linked, Runtime};

/// Bounds the trial instantiation's imports (nothing awaits in it).
const LOAD_INSTANCE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// A droplet that can be instantiated.
pub struct Ready {
    /// The pre-linked component.
    pub pre: Linked,
    /// Where its compiled code came from.
    pub origin: Origin,
    /// The interfaces the component imports (read from the component).
    pub imports: Vec<String>,
}

impl Ready {
    /// Whether it imports `fp:droplet/streaming`: its calls stream (its
    /// request body is read as it arrives, its response may start early).
    pub fn streams(&self) -> bool {
        self.imports
            .iter()
            .any(|import| import.starts_with("fp:droplet/streaming@"))
    }
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

/// Why a version cannot serve, or could not even be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The manifest does not parse, or an option is out of range.
    #[error("invalid manifest {name}.toml: {cause}")]
    Manifest {
        /// The droplet.
        name: String,
        /// What is wrong with it.
        cause: ManifestError,
    },
    /// The bytes are not a component (or not one this engine compiles).
    #[error("{name}.wasm is not a valid component: {reason}")]
    NotAComponent {
        /// The droplet.
        name: String,
        /// The compiler's reason.
        reason: String,
    },
    /// It imports a capability its manifest does not grant.
    #[error("{name}.wasm cannot serve: {reason}, in {name}.toml")]
    NotGranted {
        /// The droplet.
        name: String,
        /// Which import, and the line that would grant it.
        reason: String,
    },
    /// Its instance cannot be made (an initial memory over its
    /// `memory_mb`, a table over the host's limits).
    #[error("{name}.wasm cannot serve: its instance cannot be made: {reason}")]
    Instantiate {
        /// The droplet.
        name: String,
        /// wasmtime's reason.
        reason: String,
    },
    /// It does not fit the world.
    #[error("{name}.wasm cannot serve: {cause}")]
    Link {
        /// The droplet.
        name: String,
        /// Why not.
        cause: LinkError,
    },
    /// Its files could not be read.
    #[error("cannot read {what}: {cause}")]
    Read {
        /// What was being read.
        what: String,
        /// Why not.
        cause: ReadError,
    },
    /// Neither the store nor the droplets directory has a module for it.
    #[error("{name} has no module")]
    NoModule {
        /// The droplet.
        name: String,
    },
    /// The host panicked while compiling it: a host bug, logged with its
    /// message.
    #[error("compiling {name} failed inside the host: {message}")]
    Panicked {
        /// The droplet.
        name: String,
        /// The panic's message.
        message: String,
    },
}

/// Where reading a version's files failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// In the deployment store.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// In the droplets directory.
    #[error("{0}")]
    Directory(#[from] std::io::Error),
}

impl LoadError {
    /// A read of `what` that failed.
    pub fn read(what: impl Into<String>, source: impl Into<ReadError>) -> Self {
        LoadError::Read {
            what: what.into(),
            cause: source.into(),
        }
    }

    /// Whether it is a failure to read, which a later try may not meet (the
    /// database away), rather than a verdict on the version.
    pub fn is_read(&self) -> bool {
        matches!(self, LoadError::Read { .. })
    }
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
    pub fn parse(&self, name: &str, manifest: Option<&str>) -> Result<Parsed, LoadError> {
        let invalid = |cause| LoadError::Manifest {
            name: name.to_string(),
            cause,
        };
        let manifest = match manifest {
            Some(text) => Manifest::parse(text, self.max_memory_mb).map_err(invalid)?,
            None => Manifest::default(),
        };
        let grants = self.capabilities.grant(&manifest).map_err(invalid)?;
        Ok(Parsed { manifest, grants })
    }

    /// Compiles `{name}.wasm` (or loads it from the cache), checks that it
    /// imports nothing its `manifest` does not grant, and links it.
    pub fn compile(
        &self,
        name: &str,
        wasm: &[u8],
        manifest: &Manifest,
    ) -> Result<Ready, LoadError> {
        let (component, origin) = self
            .cache
            .load_or_compile(self.runtime.engine(), wasm)
            .map_err(|reason| LoadError::NotAComponent {
                name: name.to_string(),
                reason,
            })?;
        let imports: Vec<String> = component
            .component_type()
            .imports(self.runtime.engine())
            .map(|(import, _)| import.to_string())
            .collect();
        let pre = self
            .runtime
            .link(&component)
            .map_err(|cause| LoadError::Link {
                name: name.to_string(),
                cause,
            })?;
        let standard = matches!(pre, Linked::Proxy(_));
        capabilities::check_imports(manifest, &imports, standard).map_err(|reason| {
            LoadError::NotGranted {
                name: name.to_string(),
                reason,
            }
        })?;
        self.instantiate_once(name, &pre, manifest)?;
        Ok(Ready {
            pre,
            origin,
            imports,
        })
    }

    /// Instantiates the version once, as a call would, and drops the
    /// instance: a version whose instance cannot be made is refused with
    /// the reason now, not answered 500 on every request while `/health`
    /// says it is active. Blocking (the instantiation never waits: no
    /// guest code runs).
    fn instantiate_once(
        &self,
        name: &str,
        pre: &Linked,
        manifest: &Manifest,
    ) -> Result<(), LoadError> {
        let (droplet, version, trace_id): (Arc<str>, Arc<str>, Arc<str>) =
            (name.into(), "load".into(), "load".into());
        let context = CallContext {
            droplet: &droplet,
            version: &version,
            trace_id: &trace_id,
            caller: Default::default(),
            deadline: tokio::time::Instant::now() + LOAD_INSTANCE_DEADLINE,
            chain: Chain::default(),
            tape: None,
        };
        let imports = self.capabilities.for_call(&Grants::default(), &context);
        let memory = usize::try_from(manifest.memory_mb << 20).unwrap_or(usize::MAX);
        let made = self
            .runtime
            .instantiate_once(pre, imports, memory)
            .now_or_never();
        match made {
            Some(Err(err)) if err.downcast_ref::<PoolConcurrencyLimitError>().is_none() => {
                Err(LoadError::Instantiate {
                    name: name.to_string(),
                    reason: err.root_cause().to_string(),
                })
            }
            // Made; or the pool is full right now (a verdict on the host's
            // load, not on the version), or it waited on something.
            _ => Ok(()),
        }
    }

    /// The whole check of a version before it may serve: its manifest
    /// parsed and granted, its module compiled and linked. Blocking.
    pub fn prepare(&self, name: &str, files: &VersionFiles) -> Result<(Parsed, Ready), LoadError> {
        let (wasm, manifest) = files;
        let parsed = self.parse(name, manifest.as_deref())?;
        let ready = self.compile(name, wasm, &parsed.manifest)?;
        Ok((parsed, ready))
    }
}

/// Runs `work` (a compilation) on the blocking pool. A panic inside it is
/// a host bug: logged with its message, and the version refused.
pub async fn off_thread<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> Result<T, LoadError> + Send + 'static,
) -> Result<T, LoadError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(err) => {
            let message = if err.is_panic() {
                let panic = err.into_panic();
                panic
                    .downcast_ref::<&str>()
                    .map(|text| text.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".to_string())
            } else {
                "the compilation was cancelled".to_string()
            };
            tracing::error!(droplet = name, panic = %message, "compiling a droplet panicked inside the host");
            Err(LoadError::Panicked {
                name: name.to_string(),
                message,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_while_compiling_is_a_refusal_with_its_message() {
        let refused = off_thread::<()>("boom", || panic!("the compiler fell over")).await;
        match refused {
            Err(LoadError::Panicked { name, message }) => {
                assert_eq!(name, "boom");
                assert_eq!(message, "the compiler fell over");
            }
            other => panic!("{other:?}"),
        }
    }
}
