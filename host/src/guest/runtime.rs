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
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use tokio::time::Instant;
use tracing::Instrument;
use wasmtime::CallHook;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolConcurrencyLimitError,
    PoolingAllocationConfig, Store, StoreLimits, StoreLimitsBuilder, Trap,
};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bindings::{self, DropletPre, GuestResponse};
use crate::capabilities::{self, HasImports, Imports};
use crate::guest::deadline::Deadlines;
use crate::guest::scheduler::{EpochTicker, LongRunningGate, guest_priority};

/// How much of each memory and table is reset in place (not with madvise)
/// when an instance is dropped, without swap: with PAGEMAP_SCAN only the
/// pages a call touched are rewritten.
const KEEP_RESIDENT_BYTES: usize = 8 << 20;
/// The same with swap: every kept byte is rewritten (no PAGEMAP_SCAN), so
/// keep little; the rest is returned with madvise.
const KEEP_RESIDENT_BYTES_WITH_SWAP: usize = 256 << 10;

/// How an instance's memory is wiped before its slot is reused — the
/// isolation between requests rests on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryReset {
    /// Rewrite only the pages the call touched (found with PAGEMAP_SCAN,
    /// Linux 6.7+) in an 8 MiB window; madvise beyond it.
    TouchedPages,
    /// Rewrite a small window whole, madvise the rest: chosen when the
    /// machine has swap, because PAGEMAP_SCAN does not report dirty pages
    /// the kernel swapped out (wasmtime PR #14357), which could then
    /// survive into the next instance.
    WholeWindow,
}

impl MemoryReset {
    /// The safe strategy for this machine: [`MemoryReset::WholeWindow`] if
    /// any swap is active (`/proc/swaps` lists a device or file).
    pub fn for_this_machine() -> Self {
        let swap_active = std::fs::read_to_string("/proc/swaps")
            .map(|swaps| swaps.lines().skip(1).any(|line| !line.trim().is_empty()))
            .unwrap_or(false);
        if swap_active {
            MemoryReset::WholeWindow
        } else {
            MemoryReset::TouchedPages
        }
    }

    fn keep_resident(self) -> usize {
        match self {
            MemoryReset::TouchedPages => KEEP_RESIDENT_BYTES,
            MemoryReset::WholeWindow => KEEP_RESIDENT_BYTES_WITH_SWAP,
        }
    }

    fn pagemap_scan(self) -> Enabled {
        match self {
            MemoryReset::TouchedPages => Enabled::Auto,
            MemoryReset::WholeWindow => Enabled::No,
        }
    }
}

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
}

/// The engine, linker and epoch ticker shared by every droplet.
pub struct Runtime {
    engine: Engine,
    linker: Linker<CallState>,
    ticker: EpochTicker,
    /// Call deadlines in their last stretch, met by the ticker.
    deadlines: Arc<Deadlines>,
    long_running: LongRunningGate,
    /// `droplet_instantiation_seconds`, looked up once (the recorder is
    /// installed before the runtime is built).
    instantiation: metrics::Histogram,
}

/// What a `Store` holds for one call.
pub struct CallState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    limits: StoreLimits,
    imports: Imports,
}

impl HasImports for CallState {
    fn imports(&mut self) -> &mut Imports {
        &mut self.imports
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

/// The request a call hands to the component, in its world's terms.
pub enum CallRequest {
    /// For a droplet's `handle`.
    Droplet(bindings::GuestRequest),
    /// For a `wasi:http/proxy` component's `incoming-handler.handle`.
    Http(http::Request<Full<Bytes>>),
}

/// One call into a droplet.
pub struct Call<'a> {
    /// The droplet, linked and ready to instantiate.
    pub droplet: &'a Linked,
    /// The droplet's linear-memory cap in bytes.
    pub memory_bytes: usize,
    /// When the call must be over.
    pub deadline: Instant,
    /// The imports' state for this call.
    pub imports: Imports,
    /// The request to hand to `handle`.
    pub request: CallRequest,
    /// The droplet's recent calls mostly trapped or overran: schedule this
    /// call as long-running from its start.
    pub suspect: bool,
    /// The droplet may call out (its manifest allows outbound HTTP), so
    /// the call may wait on the host for long.
    pub calls_out: bool,
}

/// What a call answered: the status and headers, and the body handed over
/// (counted against the host's response-byte budget like any other).
pub struct Answer {
    /// Status and headers.
    pub response: GuestResponse,
    /// The body, or why it was refused.
    pub body: crate::capabilities::response_body::ResponseBody,
}

/// How long a `wasi:http` component that has returned may take to finish
/// its response (whatever it wrote is buffered by then).
const PROXY_FINISH_GRACE: Duration = Duration::from_millis(100);

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

/// Why a call produced no response.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The deadline passed.
    #[error("budget exceeded")]
    BudgetExceeded,
    /// The guest trapped; the message names the trap (and the panic, if any).
    #[error("{0}")]
    Trap(String),
    /// The pooling allocator had no free slot.
    #[error("no free instance slot")]
    PoolExhausted,
    /// The request was built for the other world than the component's:
    /// a host bug.
    #[error("the request does not match the component's world")]
    WorldMismatch,
}

/// The marker [`Runtime::call`] fails with when the request does not fit
/// the component's world, so that [`classify`] can tell it from a trap.
#[derive(Debug, thiserror::Error)]
#[error("the request does not match the component's world")]
struct WorldMismatch;

impl Runtime {
    /// Builds the engine (pooling allocator, epoch interruption,
    /// copy-on-write memory images), links WASI 0.2 and the droplet world, and
    /// starts the epoch ticker.
    pub fn new(settings: &RuntimeSettings) -> anyhow::Result<Self> {
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
            .max_memory_size(usize::try_from(settings.max_memory_mb << 20)?)
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
        let engine = Engine::new(&config).map_err(|err| anyhow::anyhow!("{err:#}"))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|err| anyhow::anyhow!("{err:#}"))?;
        capabilities::add_to_linker(&mut linker).map_err(|err| anyhow::anyhow!("{err:#}"))?;

        let deadlines = Arc::new(Deadlines::default());
        let ticker = EpochTicker::start(engine.clone(), Arc::clone(&deadlines))?;
        Ok(Self {
            engine,
            linker,
            ticker,
            long_running: LongRunningGate::new(Arc::clone(&deadlines)),
            deadlines,
            instantiation: metrics::histogram!("droplet_instantiation_seconds"),
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
    fn new_store(&self, imports: Imports, memory_bytes: usize) -> Store<CallState> {
        let log = &imports.log;
        let wasi = WasiCtxBuilder::new()
            .stdout(log.stdout())
            .stderr(log.stderr())
            .build();
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
        drop(self.new_store(imports, memory_bytes));
    }

    /// For the benchmarks' breakdown of a call: builds the store,
    /// instantiates `droplet` in it as [`Runtime::call`] does, and drops
    /// both without calling the guest.
    #[doc(hidden)]
    pub async fn measure_instantiate(
        &self,
        droplet: &Linked,
        imports: Imports,
        memory_bytes: usize,
    ) -> anyhow::Result<()> {
        let mut store = self.new_store(imports, memory_bytes);
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

    /// Runs one request in a fresh instance and drops the instance.
    pub async fn call(&self, call: Call<'_>) -> Result<Answer, CallError> {
        let log = Arc::clone(&call.imports.log);
        let mut store = self.new_store(call.imports, call.memory_bytes);
        store.set_epoch_deadline(1);
        let mut scheduler = self.long_running.scheduler(call.deadline, call.suspect);
        // A call that may wait long on the host (outbound HTTP, another
        // droplet) gives its gate permit back whenever it calls the host.
        // Only such calls pay for the hook.
        if call.calls_out {
            let gate = scheduler.gate();
            store.call_hook(move |_, hook| {
                if matches!(hook, CallHook::CallingHost) {
                    gate.release();
                }
                Ok(())
            });
        }
        store.epoch_deadline_callback(move |_| Ok(scheduler.on_tick()));

        let run = async {
            let instantiating = std::time::Instant::now();
            match (call.droplet, call.request) {
                (Linked::Droplet(pre), CallRequest::Droplet(request)) => {
                    let instance = pre
                        .instantiate_async(&mut store)
                        .instrument(crate::step_span!("instantiate"))
                        .await?;
                    self.instantiation
                        .record(instantiating.elapsed().as_secs_f64());
                    let response = instance
                        .fp_droplet_handler()
                        .call_handle(&mut store, &request)
                        .instrument(crate::step_span!("guest"))
                        .await?;
                    let body = store.data_mut().imports.body.take();
                    Ok(Answer { response, body })
                }
                (Linked::Proxy(pre), CallRequest::Http(request)) => {
                    let instance = pre
                        .instantiate_async(&mut store)
                        .instrument(crate::step_span!("instantiate"))
                        .await?;
                    self.instantiation
                        .record(instantiating.elapsed().as_secs_f64());
                    serve_http(&mut store, &instance, request)
                        .instrument(crate::step_span!("guest"))
                        .await
                }
                // The dispatcher built the request for the other world: a
                // host bug, not the guest's doing.
                _ => Err(wasmtime::Error::new(WorldMismatch)),
            }
        };
        // A poll that ran a long-running guest may have lowered the
        // thread's priority; it is back before the thread runs anything else.
        let outcome = {
            let mut run = std::pin::pin!(run);
            let run = std::future::poll_fn(|cx| {
                let _restore = guest_priority::Restore;
                run.as_mut().poll(cx)
            });
            tokio::select! {
                biased;
                outcome = run => Some(outcome),
                () = self.deadlines.at(call.deadline.into_std()) => None,
            }
        };
        // Drop the instance before logging: its stdio streams flush on drop.
        drop(store);
        let result = match outcome {
            None => Err(CallError::BudgetExceeded),
            Some(Ok(answer)) => Ok(answer),
            Some(Err(err)) => Err(classify(&err, log.failure_hint())),
        };
        log.finish();
        result
    }
}

/// Runs a `wasi:http/proxy` component's `incoming-handler.handle` on
/// `request`, reading its response body as it is written (so a component
/// that streams is never blocked on a full buffer), into the call's
/// response body: the same size limit and host-wide budget as a droplet's.
async fn serve_http(
    store: &mut Store<CallState>,
    proxy: &wasmtime_wasi_http::p2::bindings::Proxy,
    request: http::Request<Full<Bytes>>,
) -> wasmtime::Result<Answer> {
    use http_body_util::BodyExt;

    let incoming = store.data_mut().http().new_incoming_request(
        Scheme::Http,
        request.map(|body| {
            body.map_err(
                |never| -> wasmtime_wasi_http::p2::bindings::http::types::ErrorCode {
                    match never {}
                },
            )
        }),
    )?;
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let outparam = store.data_mut().http().new_response_outparam(sender)?;
    let mut written = store.data_mut().imports.body.take();
    let collect = async move {
        let response = receiver
            .await
            .map_err(|_| {
                wasmtime::format_err!("the component returned without setting a response")
            })?
            .map_err(|code| {
                wasmtime::format_err!("the component answered with an error: {code:?}")
            })?;
        let (parts, mut body) = response.into_parts();
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|err| wasmtime::format_err!("its response body failed: {err}"))?;
            // A refused body ends the call: the answer is the host's, and
            // the instance (perhaps blocked writing the rest) is dropped.
            if let Some(data) = frame.data_ref()
                && written.write(data).is_err()
            {
                break;
            }
        }
        Ok::<_, wasmtime::Error>((parts, written))
    };
    let handle = proxy
        .wasi_http_incoming_handler()
        .call_handle(&mut *store, incoming, outparam);
    tokio::pin!(collect, handle);
    let mut returned = false;
    let collected = tokio::select! {
        collected = &mut collect => collected,
        handled = &mut handle => {
            handled?;
            returned = true;
            // It has returned: whatever it wrote is buffered.
            tokio::time::timeout(PROXY_FINISH_GRACE, &mut collect)
                .await
                .map_err(|_| wasmtime::format_err!("the component returned without finishing its response"))?
        }
    };
    let (parts, body) = collected?;
    // Let the handler finish too (it may still be running after the body).
    if !returned {
        let _ = tokio::time::timeout(PROXY_FINISH_GRACE, handle).await;
    }
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    Ok(Answer {
        response: GuestResponse {
            status: parts.status.as_u16(),
            headers,
        },
        body,
    })
}

/// Turns a wasmtime error into what the client may know about it.
fn classify(err: &wasmtime::Error, hint: Option<String>) -> CallError {
    if let Some(trap) = err.downcast_ref::<Trap>() {
        if *trap == Trap::Interrupt {
            return CallError::BudgetExceeded;
        }
        // `Trap`'s message starts "wasm trap: "; the client knows it is one.
        let trap = trap.to_string();
        let trap = trap.strip_prefix("wasm trap: ").unwrap_or(&trap);
        return CallError::Trap(match hint {
            Some(hint) if hint.starts_with("panicked at ") => hint,
            Some(hint) => format!("trapped: {trap} ({hint})"),
            None => format!("trapped: {trap}"),
        });
    }
    if err.downcast_ref::<PoolConcurrencyLimitError>().is_some() {
        return CallError::PoolExhausted;
    }
    if err.downcast_ref::<WorldMismatch>().is_some() {
        return CallError::WorldMismatch;
    }
    // Not a trap: instantiation refused (for example an initial memory over
    // the droplet's cap) or a host import failed fatally. The root cause is
    // about the droplet, never a host path.
    CallError::Trap(format!("failed: {}", err.root_cause()))
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // The ticker holds an engine clone; stop it before the engine goes.
        self.ticker.stop();
    }
}
