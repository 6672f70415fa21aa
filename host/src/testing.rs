//! What the library's unit tests share: a real runtime, real capabilities
//! on a temporary sled store, a loader, and the example droplets as built
//! by `cargo xtask examples` (the full test tier builds them first; the
//! fast tier does not, and tests that need one say so and skip).

use std::path::PathBuf;
use std::sync::Arc;

use crate::capabilities::Capabilities;
use crate::capabilities::auth::AuthCapability;
use crate::capabilities::config::ConfigCapability;
use crate::capabilities::kv::KvCapability;
use crate::capabilities::log::LogCapability;
use crate::capabilities::outbound::Outbound;
use crate::capabilities::outbound::access::OutboundCapability;
use crate::capabilities::response_body::BodyCapability;
use crate::droplets::loader::Loader;
use crate::guest::code_cache::CodeCache;
use crate::guest::runtime::{Runtime, RuntimeSettings};
use crate::storage::kv::sled::SledBackend;
use crate::storage::kv::{DEFAULT_MAX_VALUE_BYTES, Durability};

/// A host's parts, built for a test: dropped with the test.
pub struct Parts {
    /// The runtime (a small pool).
    pub runtime: Arc<Runtime>,
    /// Every capability, kv on sled in `dir`.
    pub capabilities: Arc<Capabilities>,
    /// A loader over both, its code cache kept between test runs.
    pub loader: Arc<Loader>,
    /// The temporary directory everything on disk lives in.
    pub dir: tempfile::TempDir,
}

/// Where the unit tests keep compiled examples between runs, so that only
/// the first run after a change compiles them.
fn code_cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tmp/unit-test-code-cache")
}

/// A runtime, capabilities and a loader, as `App::start` builds them.
pub fn parts() -> Parts {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let runtime = Arc::new(
        Runtime::new(&RuntimeSettings {
            max_instances: 8,
            max_memory_mb: 128,
            keep_resident_bytes: None,
            warm_slots: None,
            max_held_bytes: 1 << 30,
        })
        .expect("the runtime"),
    );
    let kv = SledBackend::open(&dir.path().join("kv"), Durability::Relaxed, 8 << 20)
        .expect("the kv store");
    let capabilities = Arc::new(Capabilities {
        kv: KvCapability {
            backend: Arc::new(kv),
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            default_quota_bytes: None,
        },
        log: LogCapability,
        config: ConfigCapability::default(),
        auth: AuthCapability { verifier: None },
        body: BodyCapability::new(64 << 20),
        outbound: OutboundCapability {
            outbound: Arc::new(Outbound::new(4).expect("the outbound client")),
        },
        streaming: crate::capabilities::streaming::StreamingCapability,
        queue: crate::capabilities::queue::QueueCapability {
            store: Arc::new(
                crate::storage::queues::sled::SledQueues::open(
                    &dir.path().join("queues"),
                    crate::storage::queues::QueueLimits::default(),
                )
                .expect("the queue store"),
            ),
            sent: Arc::new(tokio::sync::Notify::new()),
        },
    });
    let loader = Arc::new(Loader::new(
        Arc::clone(&runtime),
        CodeCache::new(Some(code_cache_dir()), runtime.engine()),
        128,
        Arc::clone(&capabilities),
    ));
    Parts {
        runtime,
        capabilities,
        loader,
        dir,
    }
}

/// Example droplet `name`'s component, or `None` (with the reason printed)
/// when the examples have not been built.
pub fn example(name: &str) -> Option<Vec<u8>> {
    let dir = std::env::var_os("DROPLET_EXAMPLES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/release")
        });
    let path = dir.join(format!("{name}.wasm"));
    match std::fs::read(&path) {
        Ok(wasm) => Some(wasm),
        Err(err) => {
            eprintln!(
                "skipped: example {name} is not built ({}: {err}); `cargo xtask test` builds it",
                path.display()
            );
            None
        }
    }
}

/// A header map of `pairs`.
pub fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
    pairs
        .iter()
        .map(|(name, value)| {
            (
                http::header::HeaderName::from_static(name),
                http::header::HeaderValue::from_static(value),
            )
        })
        .collect()
}

/// The unit tests count calls' host memory as the `droplet` binary does.
#[global_allocator]
static ALLOCATOR: crate::guest::host_memory::Counted<std::alloc::System> =
    crate::guest::host_memory::Counted(std::alloc::System);
