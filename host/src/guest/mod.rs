//! Running a component: the engine and linker built once ([`runtime`]),
//! one call in a fresh instance ([`call`]; a `wasi:http` component's in
//! [`proxy`], its body streamed by [`stream`]), the epoch scheduler and the deadline that bound it
//! ([`scheduler`], [`gate_hold`], [`gated_threads`], [`epoch_ticker`], [`guest_clock`], [`deadline`]), how memory is wiped between calls
//! ([`memory_reset`]), the bridge between HTTP and the guest's records
//! ([`records`]), and the compiled-code cache ([`code_cache`]).
//!
//! Uses [`crate::capabilities`] (linked into every instance) and
//! [`crate::ops`]; used by [`crate::droplets`] and [`crate::dispatch`].

pub mod call;
pub mod code_cache;
pub mod deadline;
pub mod epoch_ticker;
pub mod gate_hold;
pub mod gated_threads;
pub mod guest_clock;
pub mod guest_priority;
pub mod host_memory;
pub mod memory_reset;
pub mod proxy;
pub mod records;
pub mod replay;
pub mod request_headers;
pub mod runtime;
pub mod scheduler;
pub mod stream;
