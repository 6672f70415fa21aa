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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::sync::oneshot;

use super::{Durability, KeyPage, KvBackend, KvError, Limits, MAX_LIST_LIMIT, Usage};
use crate::ops::shutdown::Shutdown;

/// How often expired keys are purged.
const PURGE_INTERVAL: Duration = Duration::from_secs(30);
/// Tree names of droplet namespaces start with this.
const TREE_PREFIX: &str = "kv/";

/// sled, opened at `{data}/kv`: the handle the host calls through.
pub struct SledBackend(Arc<Store>);

/// The database and what the backend keeps beside it.
struct Store {
    db: sled::Db,
    durability: Durability,
    commit: Arc<GroupCommit>,
    /// Open trees and their byte counts, by namespace. A `std` mutex: held
    /// only to look up or insert, never across an await or a disk access.
    namespaces: Mutex<HashMap<String, Namespace>>,
}

/// An open namespace: its tree and a running count of its bytes (computed
/// by a scan when first opened, then kept up to date by every write).
#[derive(Clone)]
struct Namespace {
    tree: sled::Tree,
    bytes: Arc<AtomicU64>,
}

impl SledBackend {
    /// Opens (or creates) the store in `dir`, its page cache bounded by
    /// `cache_bytes`. Blocking.
    pub fn open(dir: &Path, durability: Durability, cache_bytes: u64) -> Result<Self, String> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .flush_every_ms(Some(500))
            .open()
            .map_err(|err| format!("cannot open the kv store at {}: {err}", dir.display()))?;
        Ok(Self(Arc::new(Store {
            commit: Arc::new(GroupCommit::new(db.clone())),
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

impl Store {
    /// Removes every expired value; returns how many. Blocking.
    fn purge_expired(&self) -> Result<usize, sled::Error> {
        let now = now_ms();
        let mut purged = 0;
        for name in self.db.tree_names() {
            let Some(ns) = std::str::from_utf8(&name)
                .ok()
                .and_then(|name| name.strip_prefix(TREE_PREFIX))
            else {
                continue;
            };
            let Ok(namespace) = self.namespace(ns) else {
                continue;
            };
            for entry in namespace.tree.iter() {
                let (key, raw) = entry?;
                if is_expired(&raw, now)
                    && namespace
                        .tree
                        .compare_and_swap(&key, Some(&raw), None::<&[u8]>)?
                        .is_ok()
                {
                    namespace
                        .bytes
                        .fetch_sub((key.len() + raw.len()) as u64, Ordering::Relaxed);
                    purged += 1;
                }
            }
        }
        Ok(purged)
    }

    /// The namespace's tree, opened (and its size counted) on first use.
    fn namespace(&self, ns: &str) -> Result<Namespace, KvError> {
        if let Some(namespace) = self.namespaces.lock().map_err(|_| poisoned())?.get(ns) {
            return Ok(namespace.clone());
        }
        let tree = self
            .db
            .open_tree(format!("{TREE_PREFIX}{ns}"))
            .map_err(storage)?;
        let mut bytes = 0u64;
        for entry in tree.iter() {
            let (key, value) = entry.map_err(storage)?;
            bytes += (key.len() + value.len()) as u64;
        }
        let namespace = Namespace {
            tree,
            bytes: Arc::new(AtomicU64::new(bytes)),
        };
        let mut namespaces = self.namespaces.lock().map_err(|_| poisoned())?;
        Ok(namespaces
            .entry(ns.to_string())
            .or_insert(namespace)
            .clone())
    }

    /// Runs `op` on the namespace on the blocking pool.
    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        ns: &str,
        op: impl FnOnce(&Namespace) -> Result<T, KvError> + Send + 'static,
    ) -> Result<T, KvError> {
        let backend = Arc::clone(self);
        let ns = ns.to_string();
        tokio::task::spawn_blocking(move || op(&backend.namespace(&ns)?))
            .await
            .map_err(|_| KvError::Unavailable("storage task failed".to_string()))?
    }

    /// Runs the read `op` on the namespace right here when the namespace is
    /// open: sled answers reads from its page cache, so handing them to the
    /// blocking pool (two thread hand-offs) costs far more than the read. A
    /// page not in the cache costs this worker one disk read. A namespace
    /// not opened yet (its size is counted on opening) goes to the pool.
    async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        ns: &str,
        op: impl FnOnce(&Namespace) -> Result<T, KvError> + Send + 'static,
    ) -> Result<T, KvError> {
        let open = self
            .namespaces
            .lock()
            .map_err(|_| poisoned())?
            .get(ns)
            .cloned();
        match open {
            Some(namespace) => op(&namespace),
            None => self.blocking(ns, op).await,
        }
    }

    /// Waits until the writes made so far are on disk (durable mode).
    async fn durable(&self) -> Result<(), KvError> {
        match self.durability {
            Durability::Relaxed => Ok(()),
            Durability::Durable => self.commit.wait().await,
        }
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
                let mut more = false;
                for entry in namespace
                    .tree
                    .range::<Vec<u8>, _>((start, Bound::Unbounded))
                {
                    let (key, raw) = entry.map_err(storage)?;
                    if !key.starts_with(prefix.as_bytes()) {
                        break;
                    }
                    if is_expired(&raw, now) {
                        continue;
                    }
                    if keys.len() == limit {
                        more = true;
                        break;
                    }
                    keys.push(String::from_utf8_lossy(&key).into_owned());
                }
                let next_cursor = if more { keys.last().cloned() } else { None };
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

/// What a [`swap_entry`] step decided.
enum Swap<T> {
    /// Leave the entry as it is and answer `T`.
    Keep(T),
    /// Replace the entry (`None`: remove it), then answer `T`.
    Write(Option<sled::IVec>, T),
}

/// Changes `key`'s stored entry atomically: `step` sees the current entry
/// and decides; if another writer changed the entry in between, `step` runs
/// again on the new one. Growth is reserved against the namespace's quota
/// *before* the write ([`reserve`]), so concurrent writers cannot pass the
/// quota together.
fn swap_entry<T>(
    namespace: &Namespace,
    key: &str,
    limits: Limits,
    mut step: impl FnMut(Option<&[u8]>) -> Result<Swap<T>, KvError>,
) -> Result<T, KvError> {
    loop {
        let current = namespace.tree.get(key.as_bytes()).map_err(storage)?;
        let (new_raw, answer) = match step(current.as_deref())? {
            Swap::Keep(answer) => return Ok(answer),
            Swap::Write(new_raw, answer) => (new_raw, answer),
        };
        let delta = size_delta(
            key.len(),
            current.as_ref().map(|raw| raw.len()),
            new_raw.as_ref().map(|raw| raw.len()),
        );
        let grows = u64::try_from(delta).ok().filter(|&grow| grow > 0);
        if let Some(grow) = grows {
            reserve(namespace, grow, limits)?;
        }
        let outcome = namespace
            .tree
            .compare_and_swap(key.as_bytes(), current.as_ref(), new_raw);
        let swapped = matches!(outcome, Ok(Ok(())));
        if !swapped && let Some(grow) = grows {
            namespace.bytes.fetch_sub(grow, Ordering::SeqCst);
        }
        outcome.map_err(storage)?.ok();
        if swapped {
            if grows.is_none() {
                apply_delta(namespace, delta);
            }
            return Ok(answer);
        }
        // Someone wrote in between: look again.
    }
}

/// Counts `grow` more bytes in the namespace if that stays within its
/// quota, in one atomic step; refuses (counting nothing) otherwise. A
/// reservation that loses its race is given back by the caller.
fn reserve(namespace: &Namespace, grow: u64, limits: Limits) -> Result<(), KvError> {
    let before = namespace.bytes.fetch_add(grow, Ordering::SeqCst);
    if limits
        .quota_bytes
        .is_some_and(|quota| before.saturating_add(grow) > quota)
    {
        namespace.bytes.fetch_sub(grow, Ordering::SeqCst);
        return Err(KvError::QuotaExceeded);
    }
    Ok(())
}

/// One flush for every write that completed before it started.
///
/// A writer registers after its write is applied, then waits. The flusher
/// takes every waiter registered so far, flushes once, and answers them all;
/// writers that register meanwhile are served by the next flush.
struct GroupCommit {
    db: sled::Db,
    /// Waiters and whether a flusher runs. A `std` mutex: held for a push or
    /// a swap, never across a flush.
    state: Mutex<CommitState>,
}

#[derive(Default)]
struct CommitState {
    waiters: Vec<oneshot::Sender<Result<(), KvError>>>,
    flushing: bool,
}

impl GroupCommit {
    fn new(db: sled::Db) -> Self {
        Self {
            db,
            state: Mutex::new(CommitState::default()),
        }
    }

    async fn wait(self: &Arc<Self>) -> Result<(), KvError> {
        let (done, wait) = oneshot::channel();
        let start_flusher = {
            let mut state = self.state.lock().map_err(|_| poisoned())?;
            state.waiters.push(done);
            !std::mem::replace(&mut state.flushing, true)
        };
        if start_flusher {
            let commit = Arc::clone(self);
            tokio::task::spawn_blocking(move || commit.flush_until_idle());
        }
        wait.await.unwrap_or_else(|_| {
            Err(KvError::Unavailable(
                "storage flush was abandoned".to_string(),
            ))
        })
    }

    /// Flushes batch after batch until no writer is waiting.
    fn flush_until_idle(&self) {
        loop {
            let batch = match self.state.lock() {
                Ok(mut state) if state.waiters.is_empty() => {
                    state.flushing = false;
                    return;
                }
                Ok(mut state) => std::mem::take(&mut state.waiters),
                Err(_) => return,
            };
            let result = self.db.flush().map(|_| ()).map_err(storage);
            metrics::counter!("droplet_kv_flushes_total").increment(1);
            for waiter in batch {
                let _ = waiter.send(result.clone());
            }
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

fn encode(expires_at: u64, value: &[u8]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(8 + value.len());
    raw.extend_from_slice(&expires_at.to_be_bytes());
    raw.extend_from_slice(value);
    raw
}

fn expiry(raw: &[u8]) -> u64 {
    raw.get(..8)
        .and_then(|head| head.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

fn is_expired(raw: &[u8], now: u64) -> bool {
    let expires_at = expiry(raw);
    expires_at != 0 && expires_at <= now
}

/// The value of a stored entry, unless it expired.
fn live_value(raw: &[u8], now: u64) -> Option<&[u8]> {
    (raw.len() >= 8 && !is_expired(raw, now)).then(|| &raw[8..])
}

/// How a namespace's byte count changes when `key`'s stored entry goes from
/// `old` to `new` bytes (`None`: absent).
fn size_delta(key_len: usize, old: Option<usize>, new: Option<usize>) -> i64 {
    let size = |len: Option<usize>| len.map_or(0, |len| (key_len + len) as i64);
    size(new) - size(old)
}

fn apply_delta(namespace: &Namespace, delta: i64) {
    if delta >= 0 {
        namespace.bytes.fetch_add(delta as u64, Ordering::Relaxed);
    } else {
        namespace
            .bytes
            .fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
    }
}

fn storage(err: sled::Error) -> KvError {
    tracing::error!(error = %err, "kv storage error");
    KvError::Unavailable("storage error".to_string())
}

fn poisoned() -> KvError {
    KvError::Unavailable("storage state is poisoned".to_string())
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
