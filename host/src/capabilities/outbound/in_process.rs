//! In-process calls from the outbound side: a request to
//! `http://{name}.droplet.internal/…` is not sent on the network but handed
//! to the host ([`InternalCalls`], implemented by
//! `crate::dispatch::in_process`, set once the host exists). The trait is
//! the seam that lets this capability call back up into dispatch without
//! depending on it.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;
use wasmtime_wasi_http::WasiBody;

/// The suffix of the names that reach other droplets on this host:
/// `http://{name}.droplet.internal/...`, dispatched in process.
pub const INTERNAL_SUFFIX: &str = ".droplet.internal";
/// The longest chain of in-process calls; a deeper one is a loop (508).
pub const MAX_HOPS: u32 = 8;

/// An in-process call to another droplet.
pub struct InternalCall {
    /// The droplet called.
    pub callee: String,
    /// The request, its body read.
    pub request: http::Request<Bytes>,
    /// The calling droplet.
    pub caller: Arc<str>,
    /// Calls in the chain, this one included.
    pub hops: u32,
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
