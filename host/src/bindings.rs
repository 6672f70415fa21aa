//! The Rust side of `wit/droplet.wit`, generated once for the whole host:
//! the runtime instantiates and calls the `droplet` world through it, and
//! each capability in [`crate::capabilities`] implements its interface's `Host`
//! trait from it.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "droplet",
    imports: { default: async },
    exports: { default: async },
});

pub use fp::droplet::types::{Request as GuestRequest, Response as GuestResponse};
