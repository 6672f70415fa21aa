//! In-process cost of one call: instantiate + `handle` + drop, for `hello`.
//!
//! Needs the example droplets (`cargo xtask examples`); run with
//! `cargo bench -p droplet-bench --bench call`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use droplet_host::imports::Imports;
use droplet_host::imports::log::GuestLog;
use droplet_host::runtime::{Call, GuestRequest, Runtime, RuntimeSettings};
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

fn call(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let runtime = Runtime::new(&RuntimeSettings {
        max_instances: 100,
        max_memory_mb: 256,
    })
    .expect("runtime");
    let component = Component::new(runtime.engine(), example("hello")).expect("compile hello");
    let pre = runtime.link(&component).expect("link hello");
    let config = Arc::new(BTreeMap::new());
    let (name, version, trace): (Arc<str>, Arc<str>, Arc<str>) =
        ("hello".into(), "bench".into(), "trace".into());

    c.bench_function("hello: instantiate + handle + drop", |b| {
        b.to_async(&rt).iter(|| async {
            let response = runtime
                .call(Call {
                    droplet: &pre,
                    memory_bytes: 64 << 20,
                    deadline: tokio::time::Instant::now() + Duration::from_secs(1),
                    imports: Imports {
                        log: Arc::new(GuestLog::new(name.clone(), version.clone(), trace.clone())),
                        config: Arc::clone(&config),
                    },
                    request: GuestRequest {
                        method: "GET".into(),
                        path: "/".into(),
                        query: String::new(),
                        headers: Vec::new(),
                        body: Vec::new(),
                    },
                })
                .await
                .expect("hello answers");
            assert_eq!(response.status, 200);
        })
    });
}

criterion_group!(benches, call);
criterion_main!(benches);
