//! Key-value storage behind the `kv` import: the [`KvBackend`] trait and
//! the limits every backend share ([`backend`]), [`BackendConfig`], the one
//! place a backend is chosen from the host's configuration ([`config`]),
//! one module per backend ([`sled`]: the embedded default; [`postgres`]: a
//! fleet's shared store), and the dashboard's cache of each droplet's
//! usage ([`usage_cache`]).

pub mod backend;
pub mod config;
pub mod postgres;
mod postgres_ops;
mod postgres_purge;
pub mod sled;
mod sled_entry;
mod sled_store;
pub mod usage_cache;

pub use self::backend::{
    DEFAULT_MAX_VALUE_BYTES, Durability, ENTRY_OVERHEAD_BYTES, KeyPage, KvBackend, KvError, Limits,
    MAX_KEY_BYTES, MAX_LIST_LIMIT, OpenError, Usage, check_key, check_value, entry_bytes, record,
};
pub use self::config::{BackendConfig, OpenBackend};
