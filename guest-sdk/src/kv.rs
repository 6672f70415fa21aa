//! Key-value storage in the droplet's own namespace.
//!
//! ```no_run
//! let visits = droplet_sdk::kv::increment("visits", 1)?;
//! droplet_sdk::kv::set("last-path", b"/hello", None)?;
//! # Ok::<(), droplet_sdk::kv::Error>(())
//! ```

use crate::bindings::fp::droplet::kv as wit;

pub use wit::{Error, KeyPage};

/// The value at `key`, or `None`.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, Error> {
    wit::get(key)
}

/// Stores `value` at `key`; with `ttl_ms` it expires that many ms from now.
pub fn set(key: &str, value: &[u8], ttl_ms: Option<u64>) -> Result<(), Error> {
    wit::set(key, value, ttl_ms)
}

/// Removes `key`; true when it existed.
pub fn delete(key: &str) -> Result<bool, Error> {
    wit::delete(key)
}

/// Whether `key` holds a value.
pub fn exists(key: &str) -> Result<bool, Error> {
    wit::exists(key)
}

/// One page of keys starting with `prefix`, after `cursor`.
pub fn list_keys(prefix: &str, cursor: Option<&str>, limit: u32) -> Result<KeyPage, Error> {
    wit::list_keys(prefix, cursor, limit)
}

/// Replaces the value at `key` with `new` if it currently equals `expected`.
pub fn compare_and_swap(
    key: &str,
    expected: Option<&[u8]>,
    new: Option<&[u8]>,
) -> Result<bool, Error> {
    wit::compare_and_swap(key, expected, new)
}

/// Atomically adds `delta` to the counter at `key` and returns the new value.
pub fn increment(key: &str, delta: i64) -> Result<i64, Error> {
    wit::increment(key, delta)
}
