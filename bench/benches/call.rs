//! In-process cost of one call: instantiate + `handle` + drop, for `hello`
//! and for `kvstore` answering `GET /k/{key}` (one kv `get`).
//!
//! Needs the example droplets (`cargo xtask examples`); run with
//! `cargo bench -p droplet-bench --bench call`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use droplet_host::imports::log::GuestLog;
use droplet_host::imports::{AuthAccess, Imports, KvAccess};
use droplet_host::kv::sled::{Durability, Sled, SledBackend};
use droplet_host::kv::{DEFAULT_MAX_VALUE_BYTES, KvBackend, Limits};
use droplet_host::runtime::{Call, CallState, DropletPre, GuestRequest, Runtime, RuntimeSettings};
use wasmtime::component::Component;

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
    runtime: Runtime,
    kv: Arc<dyn KvBackend>,
    config: Arc<BTreeMap<String, String>>,
    _data: tempfile::TempDir,
}

impl Bench {
    fn imports(&self, name: &Arc<str>) -> Imports {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        Imports {
            log: Arc::new(GuestLog::new(name.clone(), "bench".into(), "trace".into())),
            config: Arc::clone(&self.config),
            kv: KvAccess {
                backend: Arc::clone(&self.kv),
                namespace: name.clone(),
                limits: Limits {
                    quota_bytes: None,
                    max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
                },
                deadline,
            },
            auth: AuthAccess {
                caller: None,
                verifier: None,
            },
        }
    }

    fn link(&self, example_name: &str) -> DropletPre<CallState> {
        let component =
            Component::new(self.runtime.engine(), example(example_name)).expect("compile");
        self.runtime.link(&component).expect("link")
    }

    async fn call(
        &self,
        pre: &DropletPre<CallState>,
        name: &Arc<str>,
        method: &str,
        path: &str,
    ) -> u16 {
        self.runtime
            .call(Call {
                droplet: pre,
                memory_bytes: 64 << 20,
                deadline: tokio::time::Instant::now() + Duration::from_secs(1),
                imports: self.imports(name),
                request: GuestRequest {
                    method: method.into(),
                    path: path.into(),
                    query: String::new(),
                    headers: Vec::new(),
                    body: b"value".to_vec(),
                },
                suspect: false,
            })
            .await
            .expect("the droplet answers")
            .status
    }
}

fn call(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let data = tempfile::tempdir().expect("temp dir");
    let sled = SledBackend::open(&data.path().join("kv"), Durability::Durable).expect("open sled");
    let bench = Bench {
        runtime: Runtime::new(&RuntimeSettings {
            max_instances: 100,
            max_memory_mb: 256,
        })
        .expect("runtime"),
        kv: Arc::new(Sled(sled)),
        config: Arc::new(BTreeMap::new()),
        _data: data,
    };
    let hello = bench.link("hello");
    let kvstore = bench.link("kvstore");
    let (hello_name, kv_name): (Arc<str>, Arc<str>) = ("hello".into(), "kvstore".into());
    assert_eq!(
        rt.block_on(bench.call(&kvstore, &kv_name, "PUT", "/k/bench")),
        200
    );

    c.bench_function("hello: instantiate + handle + drop", |b| {
        b.to_async(&rt)
            .iter(|| async { assert_eq!(bench.call(&hello, &hello_name, "GET", "/").await, 200) })
    });
    c.bench_function("kvstore: instantiate + one kv get + drop", |b| {
        b.to_async(&rt).iter(|| async {
            assert_eq!(bench.call(&kvstore, &kv_name, "GET", "/k/bench").await, 200)
        })
    });
}

criterion_group!(benches, call);
criterion_main!(benches);
