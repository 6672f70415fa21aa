//! Write droplets: small HTTP services that the droplet host runs in a fresh,
//! isolated WebAssembly instance per request.
//!
//! A droplet is a `cdylib` crate built for `wasm32-wasip2` that names one
//! handler function with [`droplet!`]. The handler returns anything that
//! becomes a response ([`IntoResponse`]): a [`Response`], text, [`Json`],
//! or a [`Result`] whose error is answered in the host's JSON error shape,
//! so `?` works on every SDK call:
//!
//! ```no_run
//! use droplet_sdk::{droplet, kv, Json, Request, Response, Result, Router};
//!
//! fn handle(req: Request) -> Response {
//!     Router::new()
//!         .get("/hello/:name", hello)
//!         .post("/visits", visit)
//!         .handle(req)
//! }
//!
//! fn hello(req: Request) -> String {
//!     format!("hello, {}\n", req.param("name").unwrap_or("you"))
//! }
//!
//! fn visit(_req: Request) -> Result<Json<i64>> {
//!     Ok(Json(kv::increment("visits", 1)?)) // a kv failure is a 503
//! }
//!
//! droplet!(handle);
//! ```
//!
//! The host's imports are wrapped in [`kv`], [`log`], [`auth`], [`config`],
//! [`queue`] and [`fetch`]; [`background`] tells a scheduled or queued
//! call from a request; [`stream`] sends a response while the handler runs and
//! reads a request body as it arrives.
//! Every request runs in a fresh instance: globals do not survive between
//! requests; use [`kv`] for state.
//!
//! With the `testing` feature, `cargo test` runs handlers natively against
//! an in-memory world (see [`testing`]); with `http`, [`Request`] and
//! [`Response`] convert to and from the [`http`](https://docs.rs/http)
//! crate's types.

#![warn(missing_docs)]

// The generated bindings name this crate by its absolute path, so that the
// export macro works from droplet crates; make that path resolve here too.
extern crate self as droplet_sdk;

#[doc(hidden)]
#[allow(missing_docs)]
pub mod bindings {
    //! Raw bindings generated from the WIT world `fp:droplet/droplet`.
    wit_bindgen::generate!({
        path: "../wit",
        world: "droplet",
        pub_export_macro: true,
        export_macro_name: "__export_droplet_world",
        default_bindings_module: "::droplet_sdk::bindings",
        runtime_path: "::droplet_sdk::__private::wit_bindgen::rt",
        // Authors compare errors and claims in their tests.
        additional_derives: [PartialEq, Eq],
        // A pending call's pollable is the standard one, waited on with the
        // others by `rt`.
        with: {
            "wasi:io/poll@0.2.12": ::wasip2::io::poll,
        },
    });
}

pub mod auth;
pub mod background;
pub mod config;
mod error;
pub mod fetch;
mod host;
#[cfg(feature = "http")]
mod interop;
pub mod kv;
pub mod log;
pub mod queue;
mod request;
mod response;
mod router;
pub mod rt;
pub mod stream;
#[cfg(all(feature = "testing", not(target_arch = "wasm32")))]
pub mod testing;

pub use error::Error;
pub use request::Request;
#[cfg(feature = "json")]
pub use response::Json;
pub use response::{IntoResponse, Response};
pub use router::Router;

/// A handler's result: a response (by default a [`Response`]) or an
/// [`Error`] answered in the host's JSON error shape.
pub type Result<T = Response, E = Error> = std::result::Result<T, E>;

#[doc(hidden)]
#[allow(missing_docs)]
pub mod __private {
    pub use wit_bindgen;

    use crate::IntoResponse;
    use crate::bindings::fp::droplet::types;

    /// Runs the author's async handler on a request from the host.
    pub fn run_async<R: IntoResponse, F: std::future::Future<Output = R>>(
        handler: fn(crate::Request) -> F,
        req: types::Request,
    ) -> types::Response {
        crate::rt::block_on(handler(crate::Request::from_wit(req)))
            .into_response()
            .into_wit()
    }

    /// Runs the author's handler on a request from the host.
    pub fn run<R: IntoResponse>(
        handler: fn(crate::Request) -> R,
        req: types::Request,
    ) -> types::Response {
        handler(crate::Request::from_wit(req))
            .into_response()
            .into_wit()
    }
}

/// Exports `handler` as this droplet's request handler: a
/// `fn(Request) -> R` where `R` is any [`IntoResponse`] (a [`Response`],
/// a [`Result`], text, [`Json`]…), or, written `droplet!(async handler)`,
/// an `async fn(Request) -> R` (run by [`rt::block_on`]). Use it once per
/// droplet crate.
#[macro_export]
macro_rules! droplet {
    (async $handler:path) => {
        $crate::__droplet_export!(run_async, $handler);
    };
    ($handler:path) => {
        $crate::__droplet_export!(run, $handler);
    };
}

/// The export both forms of [`droplet!`] make: `$runner` (`run` or
/// `run_async` in `__private`) calls the handler.
#[doc(hidden)]
#[macro_export]
macro_rules! __droplet_export {
    ($runner:ident, $handler:path) => {
        #[doc(hidden)]
        struct __DropletExport;

        impl $crate::bindings::exports::fp::droplet::handler::Guest for __DropletExport {
            fn handle(
                request: $crate::bindings::fp::droplet::types::Request,
            ) -> $crate::bindings::fp::droplet::types::Response {
                $crate::__private::$runner($handler, request)
            }
        }

        $crate::bindings::__export_droplet_world!(__DropletExport with_types_in $crate::bindings);
    };
}

/// Logs at `$level`: the message formatted as by `format!` (named
/// arguments captured inline), each `name = value` also a field.
#[doc(hidden)]
#[macro_export]
macro_rules! __log_at {
    ($level:expr, $fmt:literal $(, $key:ident = $value:expr)* $(,)?) => {{
        $(let $key = &$value;)*
        $crate::log::log_owned(
            $level,
            &::std::format!($fmt),
            &[$((
                ::std::string::String::from(::std::stringify!($key)),
                ::std::string::ToString::to_string($key),
            )),*],
        )
    }};
}

/// `log::trace!("message {field}", field = value, …)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __log_trace {
    ($($args:tt)*) => { $crate::__log_at!($crate::log::Level::Trace, $($args)*) };
}

/// `log::debug!("message {field}", field = value, …)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __log_debug {
    ($($args:tt)*) => { $crate::__log_at!($crate::log::Level::Debug, $($args)*) };
}

/// `log::info!("message {field}", field = value, …)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __log_info {
    ($($args:tt)*) => { $crate::__log_at!($crate::log::Level::Info, $($args)*) };
}

/// `log::warn!("message {field}", field = value, …)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __log_warn {
    ($($args:tt)*) => { $crate::__log_at!($crate::log::Level::Warn, $($args)*) };
}

/// `log::error!("message {field}", field = value, …)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __log_error {
    ($($args:tt)*) => { $crate::__log_at!($crate::log::Level::Error, $($args)*) };
}
