//! The [`KvBackend`] trait, and the limits, errors and checks every
//! backend shares.
//!
//! A namespace is chosen by the host (the droplet's name), never by the
//! guest: backends keep namespaces in separate trees, so no key a droplet
//! passes can reach another droplet's data.

use std::time::Duration;

use async_trait::async_trait;

use crate::storage::database::ConnectError;

/// Whether writes wait for the storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// A write returns once it is durable (group commit). The default.
    Durable,
    /// A write returns once applied in memory; the backend flushes soon
    /// after (sled: every 500 ms) and at shutdown.
    Relaxed,
}

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// Largest value by default, in bytes.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1 << 20;
/// Most keys one `list_keys` call returns.
pub const MAX_LIST_LIMIT: u32 = 1000;

/// Why the kv backend could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// sled refused its directory (in use, unreadable, corrupt).
    #[error("cannot open the kv store at {dir}: {why}")]
    Sled {
        /// The directory.
        dir: String,
        /// sled's reason.
        why: String,
    },
    /// The opening task did not finish (the host is going down).
    #[error("opening the kv store was interrupted")]
    Interrupted,
    /// The database could not be reached or migrated.
    #[error(transparent)]
    Database(#[from] ConnectError),
}

/// Why a kv operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The key is empty or otherwise unacceptable.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// The key is longer than [`MAX_KEY_BYTES`].
    #[error("key too large")]
    KeyTooLarge,
    /// The value is over the host's value limit.
    #[error("value too large")]
    ValueTooLarge,
    /// The write would pass the namespace's quota.
    #[error("quota exceeded")]
    QuotaExceeded,
    /// `increment` found something that is not a decimal integer (or the
    /// sum overflowed).
    #[error("not a number")]
    NotANumber,
    /// The backend failed or the request's budget ran out.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl KvError {
    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            KvError::InvalidKey(_) => "invalid_key",
            KvError::KeyTooLarge => "key_too_large",
            KvError::ValueTooLarge => "value_too_large",
            KvError::QuotaExceeded => "quota_exceeded",
            KvError::NotANumber => "not_a_number",
            KvError::Unavailable(_) => "unavailable",
        }
    }
}

/// One page of keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPage {
    /// Keys in ascending byte order.
    pub keys: Vec<String>,
    /// Where the next page starts, if there is one.
    pub next_cursor: Option<String>,
}

/// How much a namespace stores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Live keys (expired ones may still count until purged).
    pub keys: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
}

/// Per-call limits of a namespace.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The namespace's quota in bytes, if any.
    pub quota_bytes: Option<u64>,
    /// The largest value accepted.
    pub max_value_bytes: usize,
}

/// A key-value store with one namespace per droplet. Implementations must
/// keep blocking work off the async workers and make every successful write
/// durable before returning, unless configured otherwise.
#[async_trait]
pub trait KvBackend: Send + Sync + 'static {
    /// The live value at `key`.
    async fn get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    /// Stores `value`, expiring after `ttl` if given.
    async fn set(
        &self,
        ns: &str,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        limits: Limits,
    ) -> Result<(), KvError>;
    /// Removes `key`; whether a live value was there.
    async fn delete(&self, ns: &str, key: &str) -> Result<bool, KvError>;
    /// Whether `key` holds a live value.
    async fn exists(&self, ns: &str, key: &str) -> Result<bool, KvError>;
    /// Live keys starting with `prefix`, strictly after `cursor`.
    async fn list_keys(
        &self,
        ns: &str,
        prefix: &str,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<KeyPage, KvError>;
    /// Replaces the value with `new` if the live value equals `expected`.
    async fn compare_and_swap(
        &self,
        ns: &str,
        key: &str,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
        limits: Limits,
    ) -> Result<bool, KvError>;
    /// Adds `delta` to the decimal integer at `key` (absent is 0).
    async fn increment(
        &self,
        ns: &str,
        key: &str,
        delta: i64,
        limits: Limits,
    ) -> Result<i64, KvError>;
    /// Makes every write acknowledged so far durable, relaxed ones
    /// included: the last group commit, at shutdown.
    async fn flush(&self) -> Result<(), KvError>;
    /// What the namespace stores.
    async fn usage(&self, ns: &str) -> Result<Usage, KvError>;
    /// Deletes the whole namespace.
    async fn purge(&self, ns: &str) -> Result<(), KvError>;
}

/// Bytes every stored entry counts beyond its key and value (its expiry),
/// in every backend: usage and quotas are the same whichever stores them.
pub const ENTRY_OVERHEAD_BYTES: u64 = 8;

/// The bytes an entry counts toward its namespace's usage and quota.
pub fn entry_bytes(key_len: usize, value_len: usize) -> u64 {
    (key_len + value_len) as u64 + ENTRY_OVERHEAD_BYTES
}

/// The decimal integer a stored value holds (`increment`).
pub(crate) fn parse_number(value: &[u8]) -> Result<i64, KvError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .ok_or(KvError::NotANumber)
}

/// Checks a key against the rules every backend shares.
pub fn check_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() {
        return Err(KvError::InvalidKey("keys may not be empty".to_string()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(KvError::KeyTooLarge);
    }
    Ok(())
}

/// Checks a value against the host's value limit.
pub fn check_value(value: &[u8], limits: Limits) -> Result<(), KvError> {
    if value.len() > limits.max_value_bytes {
        return Err(KvError::ValueTooLarge);
    }
    Ok(())
}

/// Counts an operation and its outcome for metrics.
pub fn record<T>(op: &'static str, result: &Result<T, KvError>) {
    metrics::counter!("droplet_kv_operations_total", "op" => op).increment(1);
    if let Err(err) = result {
        metrics::counter!("droplet_kv_errors_total", "op" => op, "kind" => err.kind()).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_are_checked() {
        assert!(check_key("a").is_ok());
        assert_eq!(
            check_key(""),
            Err(KvError::InvalidKey("keys may not be empty".into()))
        );
        assert_eq!(check_key(&"k".repeat(513)), Err(KvError::KeyTooLarge));
        assert!(check_key(&"k".repeat(512)).is_ok());
        let limits = Limits {
            quota_bytes: None,
            max_value_bytes: 4,
        };
        assert!(check_value(b"1234", limits).is_ok());
        assert_eq!(check_value(b"12345", limits), Err(KvError::ValueTooLarge));
    }
}
