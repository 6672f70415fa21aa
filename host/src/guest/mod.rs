//! Running a component: the engine and linker built once, one call in a
//! fresh instance, the epoch scheduler and the deadline that bound it, the
//! bridge between HTTP and the guest's records, and the compiled-code
//! cache.
//!
//! Uses [`crate::capabilities`] (linked into every instance) and
//! [`crate::ops`]; used by [`crate::droplets`] and [`crate::dispatch`].

pub mod code_cache;
pub mod deadline;
pub mod records;
pub mod runtime;
pub mod scheduler;
