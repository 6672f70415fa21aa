//! The host imports a guest may be granted: one module per WIT interface,
//! each a self-contained [`Capability`] (link into the linker, check and
//! prepare the manifest's grant, build the per-call state), registered in
//! one list ([`registry`]).
//!
//! Uses [`crate::storage`], [`crate::identity`], [`crate::ops`] and the
//! manifest's fields ([`crate::droplets::manifest`], a leaf); used by
//! [`crate::guest`] (which links them) and [`crate::droplets`] (which
//! grants them at load).

pub mod auth;
pub mod call_context;
pub mod capability;
pub mod config;
pub mod guest_stdio;
pub mod kv;
pub mod log;
pub mod outbound;
pub mod queue;
pub mod recording;
pub mod registry;
pub mod response_body;
pub mod streaming;

pub use self::call_context::CallContext;
pub use self::capability::Capability;
pub use self::registry::{
    Capabilities, Grants, HasImports, Imports, add_to_linker, check_imports, granted,
};
