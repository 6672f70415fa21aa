//! `fp:droplet/kv`: the droplet's own namespace in the host's key-value store.
//!
//! Keys and values are checked here, once for every backend; each call is
//! bounded by the request's deadline and counted for metrics. Errors are
//! mapped to the guest's variant in one place.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use tokio::time::Instant;

use wasmtime::component::{HasSelf, Linker};

use super::call_context::CallContext;
use super::capability::{Capability, StoreData};
use super::recording::{Blob, Call, Reply, Tape, live};
use crate::bindings::fp::droplet::kv::{self as wit, Error, Host, KeyPage};
use crate::droplets::manifest::{Manifest, ManifestError};
use crate::storage::kv::{self, KvBackend, KvError, Limits};

/// The host-wide half: the backend every droplet's namespace lives in.
pub struct KvCapability {
    /// The store ([`crate::storage::kv::BackendConfig`] chose it).
    pub backend: Arc<dyn KvBackend>,
    /// The largest value accepted, in bytes.
    pub max_value_bytes: usize,
    /// The quota of droplets whose manifest sets no `kv_quota_mb`, in
    /// bytes; `None`: unlimited.
    pub default_quota_bytes: Option<u64>,
}

/// What the `kv` import may reach for one call.
pub struct KvAccess {
    /// The store.
    pub backend: Arc<dyn KvBackend>,
    /// The droplet's namespace, chosen by the host.
    pub namespace: Arc<str>,
    /// Quota and value limit.
    pub limits: Limits,
    /// The call's deadline: a kv call still waiting then answers `unavailable`.
    pub deadline: Instant,
    /// Where the call's kv calls are recorded, when it is recorded.
    pub tape: Option<Tape>,
}

impl Capability for KvCapability {
    const GRANT: Option<&'static str> = Some("kv");
    const INTERFACES: &'static [&'static str] = &["fp:droplet/kv"];
    /// The droplet's quota (its manifest's, else the host's default) and
    /// value limit.
    type Grant = Option<Limits>;
    type Access = KvAccess;

    fn link<T: StoreData>(
        linker: &mut Linker<T>,
        access: fn(&mut T) -> &mut KvAccess,
    ) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, HasSelf<KvAccess>>(linker, access)
    }

    fn grant(&self, manifest: &Manifest) -> Result<Option<Limits>, ManifestError> {
        Ok(Some(Limits {
            quota_bytes: manifest
                .kv_quota_mb
                .map(|mb| mb.saturating_mul(1 << 20))
                .or(self.default_quota_bytes),
            max_value_bytes: self.max_value_bytes,
        }))
    }

    /// One call's view: the droplet's own namespace, its quota, and the
    /// call's deadline. A version whose manifest was never granted (it
    /// failed to load, and is never called) gets the host's limits.
    fn for_call(&self, grant: &Option<Limits>, call: &CallContext<'_>) -> KvAccess {
        KvAccess {
            backend: Arc::clone(&self.backend),
            namespace: Arc::clone(call.droplet),
            limits: grant.unwrap_or(Limits {
                quota_bytes: self.default_quota_bytes,
                max_value_bytes: self.max_value_bytes,
            }),
            deadline: call.deadline,
            tape: call.tape.clone(),
        }
    }
}

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

impl KvAccess {
    /// Runs one kv operation under the call's deadline and records it.
    async fn kv_call<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = Result<T, KvError>>,
    ) -> Result<T, Error> {
        let span = crate::step_span!("kv", otel.name = %format_args!("kv.{op}"), kv.op = op);
        let result = match tokio::time::timeout_at(self.deadline, call)
            .instrument(span)
            .await
        {
            Ok(result) => result,
            Err(_) => Err(KvError::Unavailable(
                "the request's budget ran out".to_string(),
            )),
        };
        kv::record(op, &result);
        result.map_err(Error::from)
    }
}

impl KvAccess {
    /// Keeps a finished call on the tape, when the call is recorded
    /// (`entry` is only built then).
    fn keep(&self, entry: impl FnOnce() -> (Call, Reply)) {
        if let Some(tape) = &self.tape {
            let (call, reply) = entry();
            tape.keep(call, reply);
        }
    }

    /// A copy of `value` for the tape, when the call is recorded.
    fn copy_for_tape(&self, value: Option<&Vec<u8>>) -> Option<Option<Blob>> {
        self.tape
            .as_ref()
            .map(|_| value.map(|bytes| Blob(bytes.clone())))
    }
}

impl Host for KvAccess {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, Error> {
        let result = async {
            kv::check_key(&key)?;
            let (backend, ns) = (&self.backend, &self.namespace);
            self.kv_call("get", backend.get(ns, &key)).await
        }
        .await;
        self.keep(|| {
            (
                Call::KvGet { key },
                Reply::Value(live::kv_result(&result, live::value)),
            )
        });
        result
    }

    async fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: Option<u64>) -> Result<(), Error> {
        let kept = self.copy_for_tape(Some(&value));
        let result = async {
            kv::check_key(&key)?;
            kv::check_value(&value, self.limits)?;
            let (backend, ns, limits) = (&self.backend, &self.namespace, self.limits);
            let ttl = ttl_ms.map(Duration::from_millis);
            self.kv_call("set", backend.set(ns, &key, value, ttl, limits))
                .await
        }
        .await;
        self.keep(|| {
            let value = kept.flatten().unwrap_or_default();
            let reply = Reply::Done(live::kv_result(&result, |_| ()));
            (Call::KvSet { key, value, ttl_ms }, reply)
        });
        result
    }

    async fn delete(&mut self, key: String) -> Result<bool, Error> {
        let result = async {
            kv::check_key(&key)?;
            let (backend, ns) = (&self.backend, &self.namespace);
            self.kv_call("delete", backend.delete(ns, &key)).await
        }
        .await;
        self.keep(|| {
            (
                Call::KvDelete { key },
                Reply::Flag(live::kv_result(&result, |flag| *flag)),
            )
        });
        result
    }

    async fn exists(&mut self, key: String) -> Result<bool, Error> {
        let result = async {
            kv::check_key(&key)?;
            let (backend, ns) = (&self.backend, &self.namespace);
            self.kv_call("exists", backend.exists(ns, &key)).await
        }
        .await;
        self.keep(|| {
            (
                Call::KvExists { key },
                Reply::Flag(live::kv_result(&result, |flag| *flag)),
            )
        });
        result
    }

    async fn list_keys(
        &mut self,
        prefix: String,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<KeyPage, Error> {
        let kept_cursor = self.tape.as_ref().and(cursor.clone());
        let result = async {
            if prefix.len() > kv::MAX_KEY_BYTES {
                return Err(Error::KeyTooLarge);
            }
            let (backend, ns) = (&self.backend, &self.namespace);
            let page = self
                .kv_call("list_keys", backend.list_keys(ns, &prefix, cursor, limit))
                .await?;
            Ok(KeyPage {
                keys: page.keys,
                next_cursor: page.next_cursor,
            })
        }
        .await;
        self.keep(|| {
            let call = Call::KvListKeys {
                prefix,
                cursor: kept_cursor,
                limit,
            };
            (call, Reply::Page(live::kv_result(&result, live::page)))
        });
        result
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Result<bool, Error> {
        let kept = self
            .copy_for_tape(expected.as_ref())
            .zip(self.copy_for_tape(new.as_ref()));
        let result = async {
            kv::check_key(&key)?;
            if let Some(value) = &new {
                kv::check_value(value, self.limits)?;
            }
            let (backend, ns, limits) = (&self.backend, &self.namespace, self.limits);
            self.kv_call(
                "compare_and_swap",
                backend.compare_and_swap(ns, &key, expected, new, limits),
            )
            .await
        }
        .await;
        self.keep(|| {
            let (expected, new) = kept.unwrap_or_default();
            let call = Call::KvCompareAndSwap { key, expected, new };
            (call, Reply::Flag(live::kv_result(&result, |flag| *flag)))
        });
        result
    }

    async fn increment(&mut self, key: String, delta: i64) -> Result<i64, Error> {
        let result = async {
            kv::check_key(&key)?;
            let (backend, ns, limits) = (&self.backend, &self.namespace, self.limits);
            self.kv_call("increment", backend.increment(ns, &key, delta, limits))
                .await
        }
        .await;
        self.keep(|| {
            let reply = Reply::Number(live::kv_result(&result, |value| *value));
            (Call::KvIncrement { key, delta }, reply)
        });
        result
    }
}
