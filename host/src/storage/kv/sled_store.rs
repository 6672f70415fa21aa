//! The sled backend's store: the database, its open namespaces (each a
//! tree and its byte count) and the group commit writes wait on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::sled_entry::{Namespace, is_expired, now_ms, poisoned, storage};
use super::{Durability, KvError};
use crate::storage::group_commit::GroupCommit;

/// Tree names of droplet namespaces start with this.
pub(super) const TREE_PREFIX: &str = "kv/";

/// The database and what the backend keeps beside it.
pub(super) struct Store {
    pub(super) db: sled::Db,
    pub(super) durability: Durability,
    pub(super) commit: Arc<GroupCommit>,
    /// Open trees and their byte counts, by namespace. A `std` mutex: held
    /// only to look up or insert, never across an await or a disk access.
    pub(super) namespaces: Mutex<HashMap<String, Namespace>>,
}

impl Store {
    /// Removes every expired value; returns how many. Blocking.
    pub(super) fn purge_expired(&self) -> Result<usize, sled::Error> {
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
    pub(super) fn namespace(&self, ns: &str) -> Result<Namespace, KvError> {
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
    pub(super) async fn blocking<T: Send + 'static>(
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
    pub(super) async fn read<T: Send + 'static>(
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
    pub(super) async fn durable(&self) -> Result<(), KvError> {
        match self.durability {
            Durability::Relaxed => Ok(()),
            Durability::Durable => self
                .commit
                .wait()
                .await
                .map_err(|err| KvError::Unavailable(err.0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::storage::kv::sled::{MAX_SCANNED_PER_LIST, SledBackend};
    use crate::storage::kv::{Durability, KvBackend, Limits};

    #[tokio::test]
    async fn listing_past_many_expired_keys_is_bounded_work_per_call() {
        let dir = tempfile::tempdir().unwrap();
        let backend =
            SledBackend::open(&dir.path().join("kv"), Durability::Relaxed, 8 << 20).unwrap();
        let limits = Limits {
            quota_bytes: None,
            max_value_bytes: 1 << 20,
        };
        let ttl = Some(Duration::from_millis(1));
        for i in 0..MAX_SCANNED_PER_LIST + 500 {
            let key = format!("a{i:05}");
            backend
                .set("ns", &key, b"x".to_vec(), ttl, limits)
                .await
                .unwrap();
        }
        for key in ["b1", "b2", "b3"] {
            backend
                .set("ns", key, b"v".to_vec(), None, limits)
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let first = backend.list_keys("ns", "", None, 10).await.unwrap();
        assert!(first.keys.is_empty(), "{:?}", first.keys);
        let mut cursor = first.next_cursor.clone();
        assert!(cursor.is_some(), "stopped early, with a cursor to go on");
        let mut live = Vec::new();
        let mut pages = 1;
        while let Some(at) = cursor {
            let page = backend.list_keys("ns", "", Some(at), 10).await.unwrap();
            live.extend(page.keys);
            cursor = page.next_cursor;
            pages += 1;
            assert!(pages < 10, "the walk does not end");
        }
        assert_eq!(live, ["b1", "b2", "b3"]);
    }
}
