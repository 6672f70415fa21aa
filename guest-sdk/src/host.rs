//! Where the SDK's calls to the host go: the host's imports in a droplet,
//! or the in-memory test world when the `testing` feature is on and the
//! code runs natively (`cargo test`).

#[cfg(not(all(feature = "testing", not(target_arch = "wasm32"))))]
pub(crate) use crate::bindings::fp::droplet::{
    auth, config, kv, log, queue, response_body, streaming,
};

#[cfg(all(feature = "testing", not(target_arch = "wasm32")))]
pub(crate) use crate::testing::imports::{auth, config, kv, log, queue, response_body, streaming};

/// Reports an internal error's detail: through stderr, which the host logs
/// with the request's trace id (the `log` import would need the `log`
/// capability).
#[cfg(not(all(feature = "testing", not(target_arch = "wasm32"))))]
pub(crate) fn internal_error(code: &str, detail: &str) {
    eprintln!("the handler failed ({code}): {detail}");
}

#[cfg(all(feature = "testing", not(target_arch = "wasm32")))]
pub(crate) use crate::testing::imports::internal_error;
