//! Key-value storage in the droplet's own namespace.
//!
//! The host picks the namespace from the droplet's name: no key can reach
//! another droplet's data. Keys are UTF-8, at most 512 bytes; values at most
//! 1 MiB by default. A write returns once it is durable on disk.
//!
//! ```no_run
//! use droplet_sdk::kv;
//!
//! let visits = kv::increment("visits", 1)?;
//! kv::set("last-path", b"/hello", None)?;
//! kv::set("session", b"token", Some(60_000))?; // expires in a minute
//! let page = kv::list_keys("user:", None, 100)?;
//! # Ok::<(), droplet_sdk::kv::Error>(())
//! ```

use crate::host::kv as wit;

pub use crate::bindings::fp::droplet::kv::{Error, KeyPage};

/// The value at `key`, or `None`.
///
/// ```
/// droplet_sdk::kv::set("color", b"blue", None)?;
/// assert_eq!(droplet_sdk::kv::get("color")?, Some(b"blue".to_vec()));
/// assert_eq!(droplet_sdk::kv::get("absent")?, None);
/// # Ok::<(), droplet_sdk::kv::Error>(())
/// ```
pub fn get(key: &str) -> Result<Option<Vec<u8>>, Error> {
    wit::get(key)
}

/// Stores `value` at `key`; with `ttl_ms` it expires that many ms from now.
///
/// ```
/// droplet_sdk::kv::set("session:42", b"token", Some(60_000))?; // gone in a minute
/// # Ok::<(), droplet_sdk::kv::Error>(())
/// ```
pub fn set(key: &str, value: &[u8], ttl_ms: Option<u64>) -> Result<(), Error> {
    wit::set(key, value, ttl_ms)
}

/// Removes `key`; true when it existed.
///
/// ```
/// droplet_sdk::kv::set("old", b"x", None)?;
/// assert!(droplet_sdk::kv::delete("old")?);
/// assert!(!droplet_sdk::kv::delete("old")?);
/// # Ok::<(), droplet_sdk::kv::Error>(())
/// ```
pub fn delete(key: &str) -> Result<bool, Error> {
    wit::delete(key)
}

/// Whether `key` holds a value.
///
/// ```
/// droplet_sdk::kv::set("flag", b"", None)?;
/// assert!(droplet_sdk::kv::exists("flag")?);
/// # Ok::<(), droplet_sdk::kv::Error>(())
/// ```
pub fn exists(key: &str) -> Result<bool, Error> {
    wit::exists(key)
}

/// One page of keys starting with `prefix`, after `cursor`.
///
/// ```
/// use droplet_sdk::kv;
///
/// for n in 0..3 {
///     kv::set(&format!("user:{n}"), b"{}", None)?;
/// }
/// // Walk every page until there is no cursor.
/// let (mut keys, mut cursor) = (Vec::new(), None);
/// loop {
///     let page = kv::list_keys("user:", cursor.as_deref(), 2)?;
///     keys.extend(page.keys);
///     match page.next_cursor {
///         Some(next) => cursor = Some(next),
///         None => break,
///     }
/// }
/// assert_eq!(keys, ["user:0", "user:1", "user:2"]);
/// # Ok::<(), droplet_sdk::kv::Error>(())
/// ```
pub fn list_keys(prefix: &str, cursor: Option<&str>, limit: u32) -> Result<KeyPage, Error> {
    wit::list_keys(prefix, cursor, limit)
}

/// Replaces the value at `key` with `new` if it currently equals `expected`.
///
/// ```
/// use droplet_sdk::kv;
///
/// // Take a lock only when nobody holds it.
/// assert!(kv::compare_and_swap("lock", None, Some(b"me"))?);
/// assert!(!kv::compare_and_swap("lock", None, Some(b"you"))?);
/// # Ok::<(), droplet_sdk::kv::Error>(())
/// ```
pub fn compare_and_swap(
    key: &str,
    expected: Option<&[u8]>,
    new: Option<&[u8]>,
) -> Result<bool, Error> {
    wit::compare_and_swap(key, expected, new)
}

/// Atomically adds `delta` to the counter at `key` and returns the new value.
///
/// ```
/// assert_eq!(droplet_sdk::kv::increment("hits", 1)?, 1);
/// assert_eq!(droplet_sdk::kv::increment("hits", 5)?, 6);
/// # Ok::<(), droplet_sdk::kv::Error>(())
/// ```
pub fn increment(key: &str, delta: i64) -> Result<i64, Error> {
    wit::increment(key, delta)
}

/// Stores `value` serialized as JSON.
///
/// ```no_run
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Todo { title: String, done: bool }
///
/// droplet_sdk::kv::set_json("todo:1", &Todo { title: "write docs".into(), done: false }, None)?;
/// let todo: Option<Todo> = droplet_sdk::kv::get_json("todo:1")?;
/// # Ok::<(), droplet_sdk::kv::JsonError>(())
/// ```
#[cfg(feature = "json")]
pub fn set_json<T: serde::Serialize + ?Sized>(
    key: &str,
    value: &T,
    ttl_ms: Option<u64>,
) -> Result<(), JsonError> {
    let bytes = serde_json::to_vec(value).map_err(JsonError::Json)?;
    set(key, &bytes, ttl_ms).map_err(JsonError::Kv)
}

/// The value at `key` parsed from JSON, or `None`.
#[cfg(feature = "json")]
pub fn get_json<T: serde::de::DeserializeOwned>(key: &str) -> Result<Option<T>, JsonError> {
    match get(key).map_err(JsonError::Kv)? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(JsonError::Json),
        None => Ok(None),
    }
}

/// Why [`get_json`] or [`set_json`] failed.
#[cfg(feature = "json")]
#[derive(Debug)]
pub enum JsonError {
    /// The store refused.
    Kv(Error),
    /// The value is not (or would not be) valid JSON for the type.
    Json(serde_json::Error),
}

#[cfg(feature = "json")]
impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JsonError::Kv(err) => write!(f, "{err}"),
            JsonError::Json(err) => write!(f, "invalid JSON value: {err}"),
        }
    }
}

#[cfg(feature = "json")]
impl std::error::Error for JsonError {}
