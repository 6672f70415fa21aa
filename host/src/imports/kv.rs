//! `fp:droplet/kv`: the droplet's own namespace in the host's key-value store.
//!
//! Keys and values are checked here, once for every backend; each call is
//! bounded by the request's deadline and counted for metrics. Errors are
//! mapped to the guest's variant in one place.

use std::future::Future;
use std::time::Duration;

use super::Imports;
use crate::kv::{self, KvError};
use crate::runtime::bindings::fp::droplet::kv::{Error, Host, KeyPage};

impl From<KvError> for Error {
    fn from(err: KvError) -> Self {
        match err {
            KvError::InvalidKey(why) => Error::InvalidKey(why),
            KvError::KeyTooLarge => Error::KeyTooLarge,
            KvError::ValueTooLarge => Error::ValueTooLarge,
            KvError::QuotaExceeded => Error::QuotaExceeded,
            KvError::NotANumber => Error::NotANumber,
            KvError::Unavailable(why) => Error::Unavailable(why),
        }
    }
}

impl Imports {
    /// Runs one kv operation under the call's deadline and records it.
    async fn kv_call<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = Result<T, KvError>>,
    ) -> Result<T, Error> {
        let result = match tokio::time::timeout_at(self.kv.deadline, call).await {
            Ok(result) => result,
            Err(_) => Err(KvError::Unavailable(
                "the request's budget ran out".to_string(),
            )),
        };
        kv::record(op, &result);
        result.map_err(Error::from)
    }
}

impl Host for Imports {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, Error> {
        kv::check_key(&key)?;
        let (backend, ns) = (&self.kv.backend, &self.kv.namespace);
        self.kv_call("get", backend.get(ns, &key)).await
    }

    async fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: Option<u64>) -> Result<(), Error> {
        kv::check_key(&key)?;
        kv::check_value(&value, self.kv.limits)?;
        let (backend, ns, limits) = (&self.kv.backend, &self.kv.namespace, self.kv.limits);
        let ttl = ttl_ms.map(Duration::from_millis);
        self.kv_call("set", backend.set(ns, &key, value, ttl, limits))
            .await
    }

    async fn delete(&mut self, key: String) -> Result<bool, Error> {
        kv::check_key(&key)?;
        let (backend, ns) = (&self.kv.backend, &self.kv.namespace);
        self.kv_call("delete", backend.delete(ns, &key)).await
    }

    async fn exists(&mut self, key: String) -> Result<bool, Error> {
        kv::check_key(&key)?;
        let (backend, ns) = (&self.kv.backend, &self.kv.namespace);
        self.kv_call("exists", backend.exists(ns, &key)).await
    }

    async fn list_keys(
        &mut self,
        prefix: String,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<KeyPage, Error> {
        if prefix.len() > kv::MAX_KEY_BYTES {
            return Err(Error::KeyTooLarge);
        }
        let (backend, ns) = (&self.kv.backend, &self.kv.namespace);
        let page = self
            .kv_call("list_keys", backend.list_keys(ns, &prefix, cursor, limit))
            .await?;
        Ok(KeyPage {
            keys: page.keys,
            next_cursor: page.next_cursor,
        })
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Result<bool, Error> {
        kv::check_key(&key)?;
        if let Some(value) = &new {
            kv::check_value(value, self.kv.limits)?;
        }
        let (backend, ns, limits) = (&self.kv.backend, &self.kv.namespace, self.kv.limits);
        self.kv_call(
            "compare_and_swap",
            backend.compare_and_swap(ns, &key, expected, new, limits),
        )
        .await
    }

    async fn increment(&mut self, key: String, delta: i64) -> Result<i64, Error> {
        kv::check_key(&key)?;
        let (backend, ns, limits) = (&self.kv.backend, &self.kv.namespace, self.kv.limits);
        self.kv_call("increment", backend.increment(ns, &key, delta, limits))
            .await
    }
}
