//! In-process calls from the outbound side: a request to
//! `http://{name}.droplet.internal/…` is not sent on the network but handed
//! to the host ([`InternalCalls`], implemented by
//! `crate::dispatch::in_process`, set once the host exists). The trait is
//! the seam that lets this capability call back up into dispatch without
//! depending on it.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use wasmtime_wasi_http::WasiBody;

/// The suffix of the names that reach other droplets on this host:
/// `http://{name}.droplet.internal/...`, dispatched in process.
pub const INTERNAL_SUFFIX: &str = ".droplet.internal";
/// The longest chain of in-process calls; a deeper one is a loop (508).
pub const MAX_HOPS: u32 = 8;

/// Where a call stands among the in-process calls that one request from
/// outside caused.
#[derive(Clone, Default)]
pub struct Chain {
    /// In-process calls that led to this one (0: a request from outside).
    pub hops: u32,
    /// What the whole tree of calls may still do; `None` for a request
    /// from outside to a droplet that cannot call out.
    pub fanout: Option<Arc<Fanout>>,
}

impl Chain {
    /// The chain of a call this one makes.
    pub fn next(&self) -> Chain {
        Chain {
            hops: self.hops + 1,
            fanout: self.fanout.clone(),
        }
    }
}

/// What the in-process calls one request from outside causes, all
/// together, may do: how many there may be, and the concurrency slots of
/// the droplet the request reached first, which each of them also takes
/// (so that one request's fan-out is bounded by that droplet's own
/// `max_concurrency`, not by the host's whole instance pool).
pub struct Fanout {
    /// The droplet the request from outside reached.
    pub root: Arc<str>,
    /// Its concurrency slots.
    pub root_slots: Arc<Semaphore>,
    left: AtomicU32,
    budget: u32,
}

impl Fanout {
    /// A tree of at most `budget` calls below `root`.
    pub fn new(root: Arc<str>, root_slots: Arc<Semaphore>, budget: u32) -> Self {
        Self {
            root,
            root_slots,
            left: AtomicU32::new(budget),
            budget,
        }
    }

    /// Counts one more call; `false` once the budget is spent.
    pub fn take(&self) -> bool {
        self.left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(1)
            })
            .is_ok()
    }

    /// The calls the tree may make.
    pub fn budget(&self) -> u32 {
        self.budget
    }
}

/// An in-process call to another droplet.
pub struct InternalCall {
    /// The droplet called.
    pub callee: String,
    /// The request, its body read.
    pub request: http::Request<Bytes>,
    /// The calling droplet.
    pub caller: Arc<str>,
    /// Its place in the chain (this call counted).
    pub chain: Chain,
    /// The caller's deadline.
    pub deadline: Instant,
    /// The shared trace id.
    pub trace_id: Arc<str>,
}

/// What answers in-process calls: the host itself (set once it exists).
pub trait InternalCalls: Send + Sync {
    /// Runs `call` through the callee's policy, in a fresh instance.
    fn call(
        self: Arc<Self>,
        call: InternalCall,
    ) -> Pin<Box<dyn Future<Output = http::Response<WasiBody>> + Send>>;
}
