//! The WebAssembly runtime: one `Engine` for the process, one `Linker`, an
//! `InstancePre` per loaded droplet, and a fresh `Store` per request.
//!
//! Isolation is per request: every call instantiates the droplet anew from the
//! pooling allocator, runs `handle`, and drops the instance. Nothing a guest
//! does survives the call except what it writes through host imports.
//!
//! Budgets: each call has one wall-clock deadline covering instantiation,
//! guest code and host imports. A ticker thread bumps the engine's epoch every
//! millisecond; at each tick a running guest yields to the async executor (so
//! a busy guest cannot starve others on its worker) and, past its deadline,
//! traps ([`crate::guest::scheduler`]). Awaits in host imports are cut off by the
//! same deadline, which is met to well under a millisecond: its last stretch
//! is the ticker's ([`crate::guest::deadline`]).

use std::sync::Arc;

use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits,
    StoreLimitsBuilder,
};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::host_memory::HostMemory;
use super::memory_reset::MemoryReset;
use crate::bindings::DropletPre;
use crate::capabilities::guest_stdio::GuestStdio;
use crate::capabilities::recording::Tape;
use crate::capabilities::recording::sources::{self, Source};
use crate::capabilities::{self, HasImports, Imports};
use crate::guest::deadline::Deadlines;
use crate::guest::epoch_ticker::EpochTicker;
use crate::guest::scheduler::LongRunningGate;

/// Sizes of the runtime, from the host's settings.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// Instances that may exist at once, across all droplets: the size of the
    /// pooling allocator.
    pub max_instances: u32,
    /// The largest `memory_mb` any droplet may ask for.
    pub max_memory_mb: u64,
    /// Bytes of each memory wiped in place (and kept mapped) when an
    /// instance is dropped, instead of returned with madvise; `None`: 8 MiB
    /// (256 KiB on a machine with swap). Pages a call dirties beyond it are
    /// faulted in again by the next instance.
    pub keep_resident_bytes: Option<usize>,
    /// Idle slots that stay tied to the last droplet that ran in them
    /// before a slot is taken from another droplet; `None`: every slot.
    /// A slot taken from another droplet has its memory image mapped again
    /// (a syscall and page faults per call); an idle slot keeps the pages
    /// its droplet dirtied (up to the keep-resident window) resident.
    pub warm_slots: Option<u32>,
    /// Bytes of the host's heap all running calls together may hold
    /// ([`HostMemory`]).
    pub max_held_bytes: usize,
}

/// Why the runtime could not be built at start-up.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// `--max-memory-mb` does not fit this machine's address space.
    #[error("--max-memory-mb {0} is more than this machine can address")]
    MemoryTooLarge(u64),
    /// wasmtime refused the engine's configuration.
    #[error("cannot build the WebAssembly engine: {0}")]
    Engine(String),
    /// An interface could not be linked (a host bug).
    #[error("cannot link the host's imports: {0}")]
    Linker(String),
    /// The epoch ticker's thread could not start.
    #[error("cannot start the epoch ticker: {0}")]
    Ticker(std::io::Error),
}

/// The engine, linker and epoch ticker shared by every droplet.
pub struct Runtime {
    engine: Engine,
    linker: Linker<CallState>,
    pub(super) ticker: EpochTicker,
    /// Call deadlines in their last stretch, met by the ticker.
    pub(super) deadlines: Arc<Deadlines>,
    pub(super) long_running: LongRunningGate,
    /// `droplet_instantiation_seconds`, looked up once (the recorder is
    /// installed before the runtime is built).
    pub(super) instantiation: metrics::Histogram,
    /// The host-wide budget of memory calls make the host hold.
    pub(super) host_memory: Arc<HostMemory>,
}

/// What a `Store` holds for one call.
pub struct CallState {
    pub(super) wasi: WasiCtx,
    pub(super) http: WasiHttpCtx,
    pub(super) table: ResourceTable,
    pub(super) limits: StoreLimits,
    pub(super) imports: Imports,
}

impl HasImports for CallState {
    fn imports(&mut self) -> &mut Imports {
        &mut self.imports
    }

    fn table_and_imports(&mut self) -> (&mut ResourceTable, &mut Imports) {
        (&mut self.table, &mut self.imports)
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.imports.outbound,
        }
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A component linked and ready to instantiate: a droplet (our world) or
/// a standard `wasi:http/proxy` component.
#[derive(Clone)]
pub enum Linked {
    /// Exports `fp:droplet/handler`.
    Droplet(DropletPre<CallState>),
    /// Exports `wasi:http/incoming-handler`.
    Proxy(ProxyPre<CallState>),
}

impl Linked {
    /// The world it serves, for `/capabilities` and logs.
    pub fn world(&self) -> &'static str {
        match self {
            Linked::Droplet(_) => "fp:droplet/droplet",
            Linked::Proxy(_) => "wasi:http/proxy",
        }
    }
}

/// Why a component cannot be linked: it is not one this host can serve.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// It imports an interface the linker does not have.
    #[error("it imports something this host does not provide: {0}")]
    MissingImport(String),
    /// It exports neither world's handler.
    #[error("it exports neither the droplet world's handler nor wasi:http/incoming-handler: {0}")]
    NoHandler(String),
}

impl Runtime {
    /// Builds the engine (pooling allocator, epoch interruption,
    /// copy-on-write memory images), links WASI 0.2 and the droplet world, and
    /// starts the epoch ticker.
    pub fn new(settings: &RuntimeSettings) -> Result<Self, RuntimeError> {
        let reset = MemoryReset::for_this_machine();
        tracing::info!(strategy = ?reset, "instance memory reset");
        let mut pool = PoolingAllocationConfig::default();
        let instances = settings.max_instances;
        // With swap, every kept byte is rewritten: the small window stays.
        let keep_resident = match (reset, settings.keep_resident_bytes) {
            (MemoryReset::TouchedPages, Some(bytes)) => bytes,
            _ => reset.keep_resident(),
        };
        pool.total_component_instances(instances)
            // A Rust std component has a handful of core instances (the
            // program, the WASI adapter and their shims) and one or two
            // memories and tables.
            .total_core_instances(instances.saturating_mul(8))
            .max_core_instances_per_component(32)
            .total_memories(instances.saturating_mul(2))
            .max_memories_per_component(4)
            .total_tables(instances.saturating_mul(4))
            .max_tables_per_component(8)
            .total_stacks(instances)
            .max_memory_size(
                usize::try_from(settings.max_memory_mb << 20)
                    .map_err(|_| RuntimeError::MemoryTooLarge(settings.max_memory_mb))?,
            )
            // Reset memories and tables in place instead of with madvise: the
            // syscall and the TLB shootdowns it causes between CPUs cost far
            // more than rewriting the few pages a call dirtied. With
            // PAGEMAP_SCAN (Linux 6.7+) only the pages actually touched are
            // reset, so a large keep-resident window costs nothing extra —
            // unless the machine swaps ([`MemoryReset`]).
            .linear_memory_keep_resident(keep_resident)
            .table_keep_resident(keep_resident)
            .pagemap_scan(reset.pagemap_scan())
            // With wasmtime's default (100) and more droplets than that
            // taking turns, nearly every call found its slots tied to another
            // droplet and remapped the memory image: 2.5× the CPU per
            // request at 100 droplets. By default every slot may stay warm.
            .max_unused_warm_slots(settings.warm_slots.unwrap_or(u32::MAX));

        let mut config = Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .epoch_interruption(true)
            .memory_init_cow(true);
        let engine =
            Engine::new(&config).map_err(|err| RuntimeError::Engine(format!("{err:#}")))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|err| RuntimeError::Linker(format!("{err:#}")))?;
        capabilities::add_to_linker(&mut linker)
            .map_err(|err| RuntimeError::Linker(format!("{err:#}")))?;

        let deadlines = Arc::new(Deadlines::default());
        let ticker = EpochTicker::start(engine.clone(), Arc::clone(&deadlines))
            .map_err(RuntimeError::Ticker)?;
        Ok(Self {
            engine,
            linker,
            ticker,
            long_running: LongRunningGate::new(Arc::clone(&deadlines)),
            deadlines,
            instantiation: metrics::histogram!("droplet_instantiation_seconds"),
            host_memory: Arc::new(HostMemory::new(settings.max_held_bytes)),
        })
    }

    /// The process's engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Checks a compiled component against the world and pre-links it.
    /// Blocking work: call it off the async workers.
    pub fn link(&self, component: &Component) -> Result<Linked, LinkError> {
        let instance_pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|err| LinkError::MissingImport(format!("{err:#}")))?;
        match DropletPre::new(instance_pre.clone()) {
            Ok(droplet) => Ok(Linked::Droplet(droplet)),
            Err(droplet_err) => ProxyPre::new(instance_pre)
                .map(Linked::Proxy)
                .map_err(|_| LinkError::NoHandler(format!("{droplet_err:#}"))),
        }
    }

    /// A fresh store for one call: its WASI context (stdout and stderr into
    /// the call's log), its memory limit and the call's imports.
    /// A recorded call (`tape`) reads its clocks and random sources
    /// through the tape.
    pub(super) fn new_store(
        &self,
        imports: Imports,
        memory_bytes: usize,
        tape: Option<&Tape>,
    ) -> Store<CallState> {
        let log = &imports.log;
        // No sockets: a droplet is granted no network through WASI (its
        // outbound HTTP is judged by the host), and each socket would be a
        // host file descriptor a guest could hoard.
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(GuestStdio::stdout(log))
            .stderr(GuestStdio::stderr(log))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if let Some(tape) = tape {
            sources::install(&mut wasi, || Source::Taped(tape.clone()));
        }
        let wasi = wasi.build();
        let limits = StoreLimitsBuilder::new().memory_size(memory_bytes).build();
        let mut store = Store::new(
            &self.engine,
            CallState {
                wasi,
                http: WasiHttpCtx::new(),
                table: ResourceTable::new(),
                limits,
                imports,
            },
        );
        store.limiter(|state| &mut state.limits);
        store
    }

    /// For the benchmarks' breakdown of a call: builds the store (WASI
    /// context and all) as [`Runtime::call`] does, and drops it.
    #[doc(hidden)]
    pub fn measure_store(&self, imports: Imports, memory_bytes: usize) {
        drop(self.new_store(imports, memory_bytes, None));
    }

    /// Builds a store, instantiates `droplet` in it as [`Runtime::call`]
    /// does, and drops both without calling the guest: the loader's proof
    /// that a version's instance can be made, and the benchmarks'
    /// breakdown of a call.
    pub async fn instantiate_once(
        &self,
        droplet: &Linked,
        imports: Imports,
        memory_bytes: usize,
    ) -> wasmtime::Result<()> {
        let mut store = self.new_store(imports, memory_bytes, None);
        store.set_epoch_deadline(u64::MAX / 2);
        match droplet {
            Linked::Droplet(pre) => {
                pre.instantiate_async(&mut store).await?;
            }
            Linked::Proxy(pre) => {
                pre.instantiate_async(&mut store).await?;
            }
        }
        Ok(())
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // The ticker holds an engine clone; stop it before the engine goes.
        self.ticker.stop();
    }
}
