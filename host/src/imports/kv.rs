//! `fp:droplet/kv`: not backed by storage yet.
//!
//! Every call answers `unavailable`, as the WIT documents, so droplets written
//! against the interface link and get a clear, non-fatal error until the
//! storage backend lands.

use super::Imports;
use crate::runtime::bindings::fp::droplet::kv::{Error, Host, KeyPage};

const NOT_YET: &str = "key-value storage is not enabled on this host yet";

fn unavailable<T>() -> Result<T, Error> {
    Err(Error::Unavailable(NOT_YET.to_string()))
}

impl Host for Imports {
    async fn get(&mut self, _key: String) -> Result<Option<Vec<u8>>, Error> {
        unavailable()
    }

    async fn set(
        &mut self,
        _key: String,
        _value: Vec<u8>,
        _ttl_ms: Option<u64>,
    ) -> Result<(), Error> {
        unavailable()
    }

    async fn delete(&mut self, _key: String) -> Result<bool, Error> {
        unavailable()
    }

    async fn exists(&mut self, _key: String) -> Result<bool, Error> {
        unavailable()
    }

    async fn list_keys(
        &mut self,
        _prefix: String,
        _cursor: Option<String>,
        _limit: u32,
    ) -> Result<KeyPage, Error> {
        unavailable()
    }

    async fn compare_and_swap(
        &mut self,
        _key: String,
        _expected: Option<Vec<u8>>,
        _new: Option<Vec<u8>>,
    ) -> Result<bool, Error> {
        unavailable()
    }

    async fn increment(&mut self, _key: String, _delta: i64) -> Result<i64, Error> {
        unavailable()
    }
}
