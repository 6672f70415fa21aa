//! The embedded backend: one sled tree per droplet under `{data}/kv`.
//!
//! Values are stored as an 8-byte big-endian expiry (milliseconds since the
//! Unix epoch, 0 for none) followed by the value. Expired values are never
//! returned and are purged by a background task.
//!
//! **Durability**: a write returns only once sled has flushed it to disk.
//! Writers do not flush one by one: they queue on a [`GroupCommit`], and one
//! flush serves every write that completed before it started, so concurrent
//! writers share the cost of `fsync`. `Durability::Relaxed` skips the wait
//! (sled still flushes in the background every 500 ms).
//!
//! sled's calls block, so every operation runs on tokio's blocking pool.
//! At shutdown, [`KvBackend::flush`] makes every write so far durable,
//! relaxed ones included.

use std::collections::HashMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::sled_entry::{
    Swap, apply_delta, encode, expiry, is_expired, live_value, now_ms, size_delta, storage,
    swap_entry,
};
use super::sled_store::{Store, TREE_PREFIX};
use crate::storage::group_commit::GroupCommit;

/// Entries one `list_keys` call reads at most, expired ones included.
pub const MAX_SCANNED_PER_LIST: usize = 4096;
use super::{Durability, KeyPage, KvBackend, KvError, Limits, MAX_LIST_LIMIT, OpenError, Usage};
use crate::ops::shutdown::Shutdown;

/// How often expired keys are purged.
const PURGE_INTERVAL: Duration = Duration::from_secs(30);

/// sled, opened at `{data}/kv`: the handle the host calls through.
pub struct SledBackend(Arc<Store>);

impl SledBackend {
    /// Opens (or creates) the store in `dir`, its page cache bounded by
    /// `cache_bytes`. Blocking.
    pub fn open(dir: &Path, durability: Durability, cache_bytes: u64) -> Result<Self, OpenError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .flush_every_ms(Some(500))
            .open()
            .map_err(|err| OpenError::Sled {
                dir: dir.display().to_string(),
                why: err.to_string(),
            })?;
        Ok(Self(Arc::new(Store {
            commit: Arc::new(GroupCommit::new(db.clone(), "droplet_kv_flushes_total")),
            db,
            durability,
            namespaces: Mutex::new(HashMap::new()),
        })))
    }

    /// Starts the task that purges expired keys every [`PURGE_INTERVAL`]; it
    /// ends at shutdown or when the backend is dropped.
    pub fn spawn_purger(&self, shutdown: &Shutdown) {
        let weak = Arc::downgrade(&self.0);
        shutdown.spawn_until_triggered(async move {
            let mut interval = tokio::time::interval(PURGE_INTERVAL);
            interval.tick().await;
            loop {
                interval.tick().await;
                let Some(store) = weak.upgrade() else { break };
                let purged = tokio::task::spawn_blocking(move || store.purge_expired()).await;
                match purged {
                    Ok(Ok(0)) => {}
                    Ok(Ok(count)) => tracing::debug!(count, "purged expired kv keys"),
                    Ok(Err(err)) => tracing::warn!(error = %err, "purging expired kv keys failed"),
                    Err(err) => tracing::warn!(error = %err, "kv purge task failed"),
                }
            }
        });
    }

    /// Removes every expired value; returns how many. Blocking.
    pub fn purge_expired(&self) -> Result<usize, sled::Error> {
        self.0.purge_expired()
    }
}

#[async_trait]
impl KvBackend for SledBackend {
    async fn get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let key = key.to_string();
        self.0
            .read(ns, move |namespace| {
                let raw = namespace.tree.get(key.as_bytes()).map_err(storage)?;
                Ok(raw.and_then(|raw| live_value(&raw, now_ms()).map(<[u8]>::to_vec)))
            })
            .await
    }

    async fn set(
        &self,
        ns: &str,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        limits: Limits,
    ) -> Result<(), KvError> {
        let key = key.to_string();
        let expires_at = ttl.map_or(0, |ttl| {
            now_ms().saturating_add(ttl.as_millis() as u64).max(1)
        });
        self.0
            .blocking(ns, move |namespace| {
                // An `IVec`: a retry clones a reference, not the value.
                let raw = sled::IVec::from(encode(expires_at, &value));
                swap_entry(namespace, &key, limits, |_| {
                    Ok(Swap::Write(Some(raw.clone()), ()))
                })
            })
            .await?;
        self.0.durable().await
    }

    async fn delete(&self, ns: &str, key: &str) -> Result<bool, KvError> {
        let key = key.to_string();
        let existed = self
            .0
            .blocking(ns, move |namespace| {
                let old = namespace.tree.remove(key.as_bytes()).map_err(storage)?;
                apply_delta(
                    namespace,
                    size_delta(key.len(), old.as_ref().map(|old| old.len()), None),
                );
                Ok(old.is_some_and(|old| live_value(&old, now_ms()).is_some()))
            })
            .await?;
        self.0.durable().await?;
        Ok(existed)
    }

    async fn exists(&self, ns: &str, key: &str) -> Result<bool, KvError> {
        Ok(self.get(ns, key).await?.is_some())
    }

    async fn list_keys(
        &self,
        ns: &str,
        prefix: &str,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<KeyPage, KvError> {
        let prefix = prefix.to_string();
        let limit = limit.clamp(1, MAX_LIST_LIMIT) as usize;
        self.0
            .read(ns, move |namespace| {
                // Start at the prefix, or just after the cursor if that is later.
                let start = match &cursor {
                    Some(cursor) if cursor.as_str() >= prefix.as_str() => {
                        Bound::Excluded(cursor.as_bytes().to_vec())
                    }
                    _ => Bound::Included(prefix.as_bytes().to_vec()),
                };
                let now = now_ms();
                let mut keys = Vec::new();
                // Entries read, expired ones included: one call's work is
                // bounded (it runs on an async worker), however many
                // expired keys lie in the way.
                let mut scanned = 0;
                let mut next_cursor = None;
                for entry in namespace
                    .tree
                    .range::<Vec<u8>, _>((start, Bound::Unbounded))
                {
                    let (key, raw) = entry.map_err(storage)?;
                    if !key.starts_with(prefix.as_bytes()) {
                        break;
                    }
                    if keys.len() == limit {
                        next_cursor = keys.last().cloned();
                        break;
                    }
                    scanned += 1;
                    if !is_expired(&raw, now) {
                        keys.push(String::from_utf8_lossy(&key).into_owned());
                    }
                    if scanned == MAX_SCANNED_PER_LIST {
                        // Resume after this entry, live or expired.
                        next_cursor = Some(String::from_utf8_lossy(&key).into_owned());
                        break;
                    }
                }
                Ok(KeyPage { keys, next_cursor })
            })
            .await
    }

    async fn compare_and_swap(
        &self,
        ns: &str,
        key: &str,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
        limits: Limits,
    ) -> Result<bool, KvError> {
        let key = key.to_string();
        let swapped = self
            .0
            .blocking(ns, move |namespace| {
                let new_raw = new
                    .as_deref()
                    .map(|value| sled::IVec::from(encode(0, value)));
                swap_entry(namespace, &key, limits, |current| {
                    let live = current.and_then(|raw| live_value(raw, now_ms()));
                    Ok(if live == expected.as_deref() {
                        Swap::Write(new_raw.clone(), true)
                    } else {
                        Swap::Keep(false)
                    })
                })
            })
            .await?;
        if swapped {
            self.0.durable().await?;
        }
        Ok(swapped)
    }

    async fn increment(
        &self,
        ns: &str,
        key: &str,
        delta: i64,
        limits: Limits,
    ) -> Result<i64, KvError> {
        let key = key.to_string();
        let value = self
            .0
            .blocking(ns, move |namespace| {
                swap_entry(namespace, &key, limits, |current| {
                    let (expires_at, number) =
                        match current.filter(|raw| !is_expired(raw, now_ms())) {
                            None => (0, 0i64),
                            Some(raw) => (
                                expiry(raw),
                                super::backend::parse_number(raw.get(8..).unwrap_or_default())?,
                            ),
                        };
                    let next = number.checked_add(delta).ok_or(KvError::NotANumber)?;
                    Ok(Swap::Write(
                        Some(encode(expires_at, next.to_string().as_bytes()).into()),
                        next,
                    ))
                })
            })
            .await?;
        self.0.durable().await?;
        Ok(value)
    }

    async fn purge(&self, ns: &str) -> Result<(), KvError> {
        let store = Arc::clone(&self.0);
        let ns = ns.to_string();
        tokio::task::spawn_blocking(move || {
            if let Ok(mut namespaces) = store.namespaces.lock() {
                namespaces.remove(&ns);
            }
            store
                .db
                .drop_tree(format!("{TREE_PREFIX}{ns}"))
                .map_err(storage)?;
            store.db.flush().map_err(storage)?;
            Ok(())
        })
        .await
        .map_err(|_| KvError::Unavailable("storage task failed".to_string()))?
    }

    async fn flush(&self) -> Result<(), KvError> {
        let store = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || store.db.flush().map(|_| ()).map_err(storage))
            .await
            .map_err(|_| KvError::Unavailable("storage task failed".to_string()))?
    }

    async fn usage(&self, ns: &str) -> Result<Usage, KvError> {
        self.0
            .blocking(ns, |namespace| {
                Ok(Usage {
                    keys: namespace.tree.len() as u64,
                    bytes: namespace.bytes.load(Ordering::Relaxed),
                })
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_carry_their_expiry() {
        let raw = encode(0, b"v");
        assert_eq!(live_value(&raw, 5), Some(&b"v"[..]));
        let raw = encode(10, b"v");
        assert_eq!(live_value(&raw, 9), Some(&b"v"[..]));
        assert_eq!(live_value(&raw, 10), None);
    }

    #[test]
    fn concurrent_writers_cannot_pass_the_quota_together() {
        let dir = tempfile::tempdir().unwrap();
        let backend =
            SledBackend::open(&dir.path().join("kv"), Durability::Relaxed, 1 << 20).unwrap();
        let namespace = backend.0.namespace("ns").unwrap();
        let limits = Limits {
            quota_bytes: Some(1 << 20),
            max_value_bytes: 1 << 20,
        };
        let value = vec![7u8; 300 * 1024];
        let stored: usize = std::thread::scope(|scope| {
            let writers: Vec<_> = (0..16)
                .map(|i| {
                    let (namespace, value) = (&namespace, &value);
                    scope.spawn(move || {
                        let raw = sled::IVec::from(encode(0, value));
                        swap_entry(namespace, &format!("k{i}"), limits, |_| {
                            Ok(Swap::Write(Some(raw.clone()), ()))
                        })
                        .is_ok() as usize
                    })
                })
                .collect();
            writers
                .into_iter()
                .map(|writer| writer.join().unwrap())
                .sum()
        });
        assert_eq!(
            stored, 3,
            "three 300 KiB values fit in 1 MiB, a fourth does not"
        );
        let counted = namespace.bytes.load(Ordering::SeqCst);
        assert!(counted <= 1 << 20, "{counted} bytes counted");
        let on_disk: usize = namespace
            .tree
            .iter()
            .map(|entry| entry.map(|(k, v)| k.len() + v.len()).unwrap())
            .sum();
        assert_eq!(on_disk as u64, counted);
    }

    #[test]
    fn size_delta_counts_key_and_value() {
        assert_eq!(size_delta(3, None, Some(10)), 13);
        assert_eq!(size_delta(3, Some(10), Some(4)), -6);
        assert_eq!(size_delta(3, Some(10), None), -13);
    }
}
