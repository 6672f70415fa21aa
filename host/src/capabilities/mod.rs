//! The host imports a guest may be granted: one module per WIT interface,
//! each a self-contained capability.
//!
//! Uses [`crate::storage`], [`crate::identity`] and [`crate::ops`]; used by
//! [`crate::guest`] (which links them) and [`crate::droplets`] (whose
//! manifests grant them).

pub mod all;
pub mod auth;
pub mod call_context;
pub mod config;
pub mod kv;
pub mod log;
pub mod outbound;
pub mod response_body;

pub use self::all::{Capabilities, HasImports, Imports, add_to_linker};
pub use self::call_context::CallContext;
