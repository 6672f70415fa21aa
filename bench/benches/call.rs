//! In-process cost of one call: instantiate + `handle` + drop, for `hello`,
//! for `routes` (hello behind a 20-route `Router`, its last route) and for
//! `kvstore` answering `GET /k/{key}` (one kv `get`). The call is
//! made the way the host makes it: a loaded droplet, its capabilities built
//! by `Capabilities::for_call`, one `Runtime::call`.
//!
//! Needs the example droplets (`cargo xtask examples`); run with
//! `cargo bench -p droplet-bench --bench call`. To count instructions
//! instead of timing (the machines are noisy): build it with `--no-run`,
//! then `DROPLET_BENCH_INSTANCES=1 valgrind --tool=callgrind BENCH --bench
//! --profile-time 30 "routes:"` and divide by the calls to
//! `InstancePre::instantiate_async` (bench/README, "SDK").

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use droplet_host::bindings::GuestRequest;
use droplet_host::capabilities::Capabilities;
use droplet_host::capabilities::auth::AuthCapability;
use droplet_host::capabilities::config::ConfigCapability;
use droplet_host::capabilities::kv::KvCapability;
use droplet_host::capabilities::log::LogCapability;
use droplet_host::capabilities::outbound::access::OutboundCapability;
use droplet_host::capabilities::outbound::{Chain, Outbound};
use droplet_host::capabilities::response_body::BodyCapability;
use droplet_host::droplets::loader::Loader;
use droplet_host::droplets::stats::DropletStats;
use droplet_host::droplets::version::{ContentHash, VersionId};
use droplet_host::droplets::{Droplet, DropletState};
use droplet_host::guest::call::{Call, CallRequest};
use droplet_host::guest::code_cache::CodeCache;
use droplet_host::guest::runtime::{Runtime, RuntimeSettings};
use droplet_host::identity::policy::Caller;
use droplet_host::ops::shutdown::Shutdown;
use droplet_host::storage::kv::{BackendConfig, DEFAULT_MAX_VALUE_BYTES, Durability};

fn example(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("DROPLET_EXAMPLES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/release")
        });
    std::fs::read(dir.join(format!("{name}.wasm")))
        .expect("example droplet (run `cargo xtask examples`)")
}

/// Everything one call needs besides the request.
struct Bench {
    runtime: Arc<Runtime>,
    loader: Loader,
    capabilities: Arc<Capabilities>,
    trace_id: Arc<str>,
    _data: tempfile::TempDir,
}

impl Bench {
    /// Example `name`, loaded as the host loads a droplet.
    fn load(&self, name: &str) -> Droplet {
        let wasm = example(name);
        let parsed = self.loader.parse(name, None).expect("manifest");
        let ready = self
            .loader
            .compile(name, &wasm, &parsed.manifest)
            .expect("compile");
        let version = VersionId::new(1, &ContentHash::of(&wasm, None));
        let state = DropletState::Ready(Arc::new(ready));
        Droplet::new(
            name,
            version,
            parsed,
            state,
            Arc::new(DropletStats::new(name)),
        )
    }

    fn imports(&self, droplet: &Droplet) -> droplet_host::capabilities::Imports {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        self.capabilities.for_call(
            &droplet.grants,
            &droplet.call_context(
                &self.trace_id,
                Caller::default(),
                deadline,
                Chain::default(),
                None,
            ),
        )
    }

    async fn call(&self, droplet: &Droplet, method: &str, path: &str) -> u16 {
        let DropletState::Ready(ready) = &droplet.state else {
            panic!("the droplet is loaded");
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        let imports = self.capabilities.for_call(
            &droplet.grants,
            &droplet.call_context(
                &self.trace_id,
                Caller::default(),
                deadline,
                Chain::default(),
                None,
            ),
        );
        self.runtime
            .call(
                &ready.pre,
                Call {
                    memory_bytes: 64 << 20,
                    deadline,
                    imports,
                    request: CallRequest::Droplet(GuestRequest {
                        method: method.into(),
                        path: path.into(),
                        query: String::new(),
                        headers: Vec::new(),
                        body: b"value".to_vec(),
                    }),
                    suspect: false,
                    calls_out: false,
                    end: None,
                    tape: None,
                },
            )
            .await
            .expect("the droplet answers")
            .expect("a droplet's answer")
            .response
            .status
    }
}

fn call(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let data = tempfile::tempdir().expect("temp dir");
    let kv = BackendConfig::Sled {
        dir: data.path().join("kv"),
        durability: Durability::Durable,
        cache_bytes: 128 << 20,
    };
    let backend = rt
        .block_on(kv.open(&Shutdown::new()))
        .expect("open the kv store")
        .kv;
    let runtime = Arc::new(
        Runtime::new(&RuntimeSettings {
            // valgrind cannot reserve the pool of 100 instances' address
            // space: `DROPLET_BENCH_INSTANCES=1` for counting instructions.
            max_instances: std::env::var("DROPLET_BENCH_INSTANCES")
                .ok()
                .and_then(|count| count.parse().ok())
                .unwrap_or(100),
            max_memory_mb: 256,
            keep_resident_bytes: None,
            warm_slots: None,
            max_held_bytes: 1 << 30,
        })
        .expect("runtime"),
    );
    let cache = CodeCache::new(None, runtime.engine());
    let capabilities = Arc::new(Capabilities {
        kv: KvCapability {
            backend,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            default_quota_bytes: None,
        },
        log: LogCapability,
        config: ConfigCapability::default(),
        auth: AuthCapability { verifier: None },
        body: BodyCapability::new(512 << 20),
        outbound: OutboundCapability {
            outbound: Arc::new(Outbound::new(256).expect("outbound client")),
        },
        streaming: droplet_host::capabilities::streaming::StreamingCapability,
        queue: droplet_host::capabilities::queue::QueueCapability {
            store: Arc::new(
                droplet_host::storage::queues::sled::SledQueues::open(
                    &data.path().join("queues"),
                    droplet_host::storage::queues::QueueLimits::default(),
                )
                .expect("the queue store"),
            ),
            sent: Arc::new(tokio::sync::Notify::new()),
        },
    });
    let bench = Bench {
        loader: Loader::new(Arc::clone(&runtime), cache, 256, Arc::clone(&capabilities)),
        runtime,
        capabilities,
        trace_id: "trace".into(),
        _data: data,
    };
    let hello = bench.load("hello");
    let kvstore = bench.load("kvstore");
    let routes = bench.load("routes");
    assert_eq!(rt.block_on(bench.call(&kvstore, "PUT", "/k/bench")), 200);

    // The breakdown of one hello call: each step adds to the one before.
    c.bench_function(
        "hello step 1: per-call capabilities (Capabilities::for_call)",
        |b| b.iter(|| drop(bench.imports(&hello))),
    );
    c.bench_function("hello step 2: + store and WASI context, dropped", |b| {
        b.iter(|| bench.runtime.measure_store(bench.imports(&hello), 64 << 20))
    });
    let DropletState::Ready(hello_ready) = &hello.state else {
        panic!("hello is loaded");
    };
    c.bench_function("hello step 3: + instantiate, dropped", |b| {
        b.to_async(&rt).iter(|| async {
            bench
                .runtime
                .instantiate_once(&hello_ready.pre, bench.imports(&hello), 64 << 20)
                .await
                .expect("instantiates")
        })
    });
    c.bench_function("hello: instantiate + handle + drop", |b| {
        b.to_async(&rt)
            .iter(|| async { assert_eq!(bench.call(&hello, "GET", "/").await, 200) })
    });
    c.bench_function("routes: instantiate + the last of 20 routes + drop", |b| {
        b.to_async(&rt)
            .iter(|| async { assert_eq!(bench.call(&routes, "GET", "/hello/bench").await, 200) })
    });
    c.bench_function("kvstore: instantiate + one kv get + drop", |b| {
        b.to_async(&rt)
            .iter(|| async { assert_eq!(bench.call(&kvstore, "GET", "/k/bench").await, 200) })
    });
}

criterion_group!(benches, call);
criterion_main!(benches);
