//! Write droplets: small HTTP services that the droplet host runs in a fresh,
//! isolated WebAssembly instance per request.
//!
//! A droplet is a `cdylib` crate built for `wasm32-wasip2` that names one
//! handler function with [`droplet!`]:
//!
//! ```no_run
//! use droplet_sdk::{droplet, Request, Response};
//!
//! fn handle(req: Request) -> Response {
//!     Response::text(format!("hello from {}\n", req.path()))
//! }
//!
//! droplet!(handle);
//! ```
//!
//! The host's imports are wrapped in [`kv`], [`log`], [`auth`] and [`config`];
//! [`stream`] sends a response while the handler runs and reads a request
//! body as it arrives.
//! Every request runs in a fresh instance: globals do not survive between
//! requests; use [`kv`] for state.

// The generated bindings name this crate by its absolute path, so that the
// export macro works from droplet crates; make that path resolve here too.
extern crate self as droplet_sdk;

#[doc(hidden)]
pub mod bindings {
    //! Raw bindings generated from the WIT world `fp:droplet/droplet`.
    wit_bindgen::generate!({
        path: "../wit",
        world: "droplet",
        pub_export_macro: true,
        export_macro_name: "__export_droplet_world",
        default_bindings_module: "::droplet_sdk::bindings",
        runtime_path: "::droplet_sdk::__private::wit_bindgen::rt",
    });
}

pub mod auth;
pub mod config;
pub mod fetch;
mod http;
pub mod kv;
pub mod log;
pub mod stream;

pub use http::{Request, Response};

#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;

    use crate::bindings::fp::droplet::types;

    /// Runs the author's handler on a request from the host.
    pub fn run(
        handler: fn(crate::Request) -> crate::Response,
        req: types::Request,
    ) -> types::Response {
        handler(crate::Request::from_wit(req)).into_wit()
    }
}

/// Exports `handler` (a `fn(Request) -> Response`) as this droplet's request
/// handler. Use it once per droplet crate.
#[macro_export]
macro_rules! droplet {
    ($handler:path) => {
        #[doc(hidden)]
        struct __DropletExport;

        impl $crate::bindings::exports::fp::droplet::handler::Guest for __DropletExport {
            fn handle(
                request: $crate::bindings::fp::droplet::types::Request,
            ) -> $crate::bindings::fp::droplet::types::Response {
                $crate::__private::run($handler, request)
            }
        }

        $crate::bindings::__export_droplet_world!(__DropletExport with_types_in $crate::bindings);
    };
}
