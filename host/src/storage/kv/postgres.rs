//! The fleet's backend: kv on PostgreSQL, shared by every host.
//!
//! Entries are rows of `kv_entries (ns, key, value, expires_at)`; keys are
//! `bytea`, so they sort byte by byte exactly as sled's do and may hold any
//! character. `kv_namespaces` keeps each namespace's byte and key counts.
//!
//! **Atomic quota**: every write runs in one transaction that first locks
//! its namespace's row in `kv_namespaces`, then reads the entry, checks the
//! quota against the counted bytes, writes the entry and the new count, and
//! commits. Writers of one namespace take turns on that row, on every host,
//! so no two of them can pass the quota together, and CAS and increment
//! need no retry loop. Durable means committed (`synchronous_commit`);
//! `Durability::Relaxed` commits with `synchronous_commit = off`.
//!
//! Expiry is judged by the database's clock (`now()`), the same for every
//! host. Statements are prepared once per connection; no SQL is built from
//! guest input.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::Transaction;

use super::{Durability, KeyPage, KvBackend, KvError, Limits, MAX_LIST_LIMIT, Usage, entry_bytes};
use crate::ops::shutdown::Shutdown;
use crate::storage::database::{Database, DbError};

/// The get: a key's live value. `pub` so the benchmark's native baseline
/// runs exactly this query.
pub const GET_QUERY: &str = "SELECT value FROM kv_entries
     WHERE ns = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > now())";

/// How often expired keys are purged.
const PURGE_INTERVAL: Duration = Duration::from_secs(30);

/// kv in the host's PostgreSQL database.
pub struct PostgresBackend {
    db: Arc<Database>,
    durability: Durability,
}

/// The live entry a write replaces, as a write step sees it.
struct Current {
    value: Vec<u8>,
    /// Milliseconds until it expires; `None`: never.
    ttl_ms: Option<i64>,
}

/// A write's answer with the change in the namespace's bytes and keys, or
/// its refusal.
type Counted<T> = Result<(T, i64, i64), KvError>;

/// What a write step decided.
enum Step<T> {
    /// Leave the entry as it is and answer `T`.
    Keep(T),
    /// Store `value` (expiring after `ttl_ms`), then answer `T`.
    Put {
        value: Vec<u8>,
        ttl_ms: Option<i64>,
        answer: T,
    },
    /// Remove the entry, then answer `T`.
    Remove(T),
}

impl PostgresBackend {
    /// kv in `db` (whose migrations have run).
    pub fn new(db: Arc<Database>, durability: Durability) -> Self {
        Self { db, durability }
    }

    /// Starts the task that purges expired keys every [`PURGE_INTERVAL`];
    /// it ends at shutdown. Hosts of a fleet purge concurrently; the
    /// namespace lock keeps them apart.
    pub fn spawn_purger(self: &Arc<Self>, shutdown: &Shutdown) {
        let weak = Arc::downgrade(self);
        shutdown.spawn_until_triggered(async move {
            let mut interval = tokio::time::interval(PURGE_INTERVAL);
            interval.tick().await;
            loop {
                interval.tick().await;
                let Some(backend) = weak.upgrade() else { break };
                match backend.purge_expired().await {
                    Ok(0) => {}
                    Ok(count) => tracing::debug!(count, "purged expired kv keys"),
                    Err(err) => tracing::warn!(error = %err, "purging expired kv keys failed"),
                }
            }
        });
    }

    /// Removes every expired entry; returns how many.
    pub async fn purge_expired(&self) -> Result<u64, KvError> {
        let client = self.db.client().await.map_err(unavailable)?;
        let namespaces = client
            .query(
                "SELECT DISTINCT ns FROM kv_entries WHERE expires_at <= now()",
                &[],
            )
            .await
            .map_err(|err| unavailable(self.db.fail(err)))?;
        drop(client);
        let mut purged = 0;
        for row in namespaces {
            let ns: String = row.get(0);
            purged += self
                .in_namespace(&ns, |tx, ns| {
                    Box::pin(async move {
                        let gone = tx
                            .query_one(
                                "WITH gone AS (
                                     DELETE FROM kv_entries WHERE ns = $1 AND expires_at <= now()
                                     RETURNING length(key) + length(value) AS size
                                 )
                                 SELECT count(*), coalesce(sum(size), 0)::bigint FROM gone",
                                &[&ns],
                            )
                            .await?;
                        let (count, size): (i64, i64) = (gone.get(0), gone.get(1));
                        let bytes = size + count * super::ENTRY_OVERHEAD_BYTES as i64;
                        Ok(Ok((count, -bytes, -count)))
                    })
                })
                .await? as u64;
        }
        Ok(purged)
    }

    /// Runs `op` in a transaction. `op` answers `(result, byte change, key
    /// change)`, and the namespace's counts are updated in the same
    /// transaction; or it refuses with a [`KvError`], and nothing is
    /// written (the transaction is rolled back).
    async fn in_namespace<T: Send>(
        &self,
        ns: &str,
        op: impl for<'t> FnOnce(
            &'t Transaction<'t>,
            &'t str,
        ) -> futures_util::future::BoxFuture<
            't,
            Result<Counted<T>, tokio_postgres::Error>,
        > + Send,
    ) -> Result<T, KvError> {
        let mut client = self.db.client().await.map_err(unavailable)?;
        let db = &self.db;
        let tx = client
            .transaction()
            .await
            .map_err(|err| unavailable(db.fail(err)))?;
        let result = async {
            if self.durability == Durability::Relaxed {
                tx.batch_execute("SET LOCAL synchronous_commit = off")
                    .await?;
            }
            let (answer, bytes, keys) = match op(&tx, ns).await? {
                Ok(counted) => counted,
                Err(refused) => return Ok(Err(refused)),
            };
            if bytes != 0 || keys != 0 {
                let update = tx
                    .prepare_cached(
                        "UPDATE kv_namespaces SET bytes = bytes + $2, keys = keys + $3 WHERE ns = $1",
                    )
                    .await?;
                tx.execute(&update, &[&ns, &bytes, &keys]).await?;
            }
            Ok::<_, tokio_postgres::Error>(Ok(answer))
        }
        .await;
        // A refusal drops the transaction: rolled back.
        let answer = result.map_err(|err| unavailable(db.fail(err)))??;
        tx.commit().await.map_err(|err| unavailable(db.fail(err)))?;
        db.mark_ok();
        Ok(answer)
    }

    /// Changes `key`'s entry atomically under the namespace's lock: `step`
    /// sees the live entry and decides; growth is checked against the quota
    /// before anything is written.
    async fn write<T: Send + 'static>(
        &self,
        ns: &str,
        key: &str,
        limits: Limits,
        step: impl FnOnce(Option<Current>) -> Result<Step<T>, KvError> + Send + 'static,
    ) -> Result<T, KvError> {
        let key = key.as_bytes().to_vec();
        self.in_namespace(ns, move |tx, ns| {
                Box::pin(async move {
                    let lock = tx
                        .prepare_cached(
                            "INSERT INTO kv_namespaces (ns) VALUES ($1)
                             ON CONFLICT (ns) DO UPDATE SET ns = excluded.ns
                             RETURNING bytes",
                        )
                        .await?;
                    let used: i64 = tx.query_one(&lock, &[&ns]).await?.get(0);
                    let read = tx
                        .prepare_cached(
                            "SELECT value,
                                    expires_at IS NULL OR expires_at > now(),
                                    (extract(epoch FROM expires_at - now()) * 1000)::bigint
                             FROM kv_entries WHERE ns = $1 AND key = $2",
                        )
                        .await?;
                    let row = tx.query_opt(&read, &[&ns, &key]).await?;
                    let old_size = row
                        .as_ref()
                        .map(|row| entry_bytes(key.len(), row.get::<_, &[u8]>(0).len()));
                    let current = row.filter(|row| row.get::<_, bool>(1)).map(|row| Current {
                        value: row.get(0),
                        ttl_ms: row.get(2),
                    });
                    let decided = match step(current) {
                        Ok(decided) => decided,
                        Err(refused) => return Ok(Err(refused)),
                    };
                    let (answer, new_size) = match decided {
                        Step::Keep(answer) => return Ok(Ok((answer, 0, 0))),
                        Step::Remove(answer) => {
                            let delete = tx
                                .prepare_cached("DELETE FROM kv_entries WHERE ns = $1 AND key = $2")
                                .await?;
                            tx.execute(&delete, &[&ns, &key]).await?;
                            (answer, None)
                        }
                        Step::Put {
                            value,
                            ttl_ms,
                            answer,
                        } => {
                            let size = entry_bytes(key.len(), value.len());
                            let grow = size as i64 - old_size.unwrap_or(0) as i64;
                            if grow > 0
                                && limits
                                    .quota_bytes
                                    .is_some_and(|quota| used.saturating_add(grow) as u64 > quota)
                            {
                                return Ok(Err(KvError::QuotaExceeded));
                            }
                            let upsert = tx
                                .prepare_cached(
                                    "INSERT INTO kv_entries (ns, key, value, expires_at)
                                     VALUES ($1, $2, $3, now() + $4::bigint * interval '1 millisecond')
                                     ON CONFLICT (ns, key) DO UPDATE
                                     SET value = excluded.value, expires_at = excluded.expires_at",
                                )
                                .await?;
                            tx.execute(&upsert, &[&ns, &key, &value, &ttl_ms]).await?;
                            (answer, Some(size))
                        }
                    };
                    let bytes = new_size.unwrap_or(0) as i64 - old_size.unwrap_or(0) as i64;
                    let keys = new_size.is_some() as i64 - old_size.is_some() as i64;
                    Ok(Ok((answer, bytes, keys)))
                })
            })
            .await
    }

    /// A read outside any transaction.
    async fn read_one(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<tokio_postgres::Row>, KvError> {
        let client = self.db.client().await.map_err(unavailable)?;
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(|err| unavailable(self.db.fail(err)))?;
        let row = client
            .query_opt(&statement, params)
            .await
            .map_err(|err| unavailable(self.db.fail(err)))?;
        self.db.mark_ok();
        Ok(row)
    }
}

fn unavailable(err: DbError) -> KvError {
    KvError::Unavailable(err.to_string())
}

#[async_trait]
impl KvBackend for PostgresBackend {
    async fn get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let row = self.read_one(GET_QUERY, &[&ns, &key.as_bytes()]).await?;
        Ok(row.map(|row| row.get(0)))
    }

    async fn set(
        &self,
        ns: &str,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        limits: Limits,
    ) -> Result<(), KvError> {
        let ttl_ms = ttl.map(|ttl| i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1));
        self.write(ns, key, limits, move |_| {
            Ok(Step::Put {
                value,
                ttl_ms,
                answer: (),
            })
        })
        .await
    }

    async fn delete(&self, ns: &str, key: &str) -> Result<bool, KvError> {
        let limits = Limits {
            quota_bytes: None,
            max_value_bytes: usize::MAX,
        };
        // An expired entry is removed too, but was not there to the caller.
        self.write(ns, key, limits, |current| {
            Ok(Step::Remove(current.is_some()))
        })
        .await
    }

    async fn exists(&self, ns: &str, key: &str) -> Result<bool, KvError> {
        let row = self
            .read_one(
                "SELECT 1 FROM kv_entries
                 WHERE ns = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > now())",
                &[&ns, &key.as_bytes()],
            )
            .await?;
        Ok(row.is_some())
    }

    async fn list_keys(
        &self,
        ns: &str,
        prefix: &str,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<KeyPage, KvError> {
        let limit = limit.clamp(1, MAX_LIST_LIMIT) as i64;
        // Start at the prefix, or just after the cursor if that is later.
        let (start, inclusive) = match &cursor {
            Some(cursor) if cursor.as_str() >= prefix => (cursor.as_bytes(), false),
            _ => (prefix.as_bytes(), true),
        };
        let end = prefix_end(prefix.as_bytes());
        let client = self.db.client().await.map_err(unavailable)?;
        let statement = client
            .prepare_cached(
                "SELECT key FROM kv_entries
                 WHERE ns = $1
                   AND (key > $2 OR ($3 AND key = $2))
                   AND ($4::bytea IS NULL OR key < $4)
                   AND (expires_at IS NULL OR expires_at > now())
                 ORDER BY key LIMIT $5",
            )
            .await
            .map_err(|err| unavailable(self.db.fail(err)))?;
        let rows = client
            .query(&statement, &[&ns, &start, &inclusive, &end, &(limit + 1)])
            .await
            .map_err(|err| unavailable(self.db.fail(err)))?;
        self.db.mark_ok();
        let more = rows.len() as i64 > limit;
        let keys: Vec<String> = rows
            .iter()
            .take(limit as usize)
            .map(|row| String::from_utf8_lossy(row.get::<_, &[u8]>(0)).into_owned())
            .collect();
        let next_cursor = if more { keys.last().cloned() } else { None };
        Ok(KeyPage { keys, next_cursor })
    }

    async fn compare_and_swap(
        &self,
        ns: &str,
        key: &str,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
        limits: Limits,
    ) -> Result<bool, KvError> {
        self.write(ns, key, limits, move |current| {
            let live = current.map(|current| current.value);
            Ok(match (live == expected, new) {
                (false, _) => Step::Keep(false),
                (true, Some(value)) => Step::Put {
                    value,
                    ttl_ms: None,
                    answer: true,
                },
                (true, None) => Step::Remove(true),
            })
        })
        .await
    }

    async fn increment(
        &self,
        ns: &str,
        key: &str,
        delta: i64,
        limits: Limits,
    ) -> Result<i64, KvError> {
        self.write(ns, key, limits, move |current| {
            let (ttl_ms, number) = match current {
                None => (None, 0),
                Some(current) => (
                    current.ttl_ms.map(|ms| ms.max(1)),
                    super::backend::parse_number(&current.value)?,
                ),
            };
            let next = number.checked_add(delta).ok_or(KvError::NotANumber)?;
            Ok(Step::Put {
                value: next.to_string().into_bytes(),
                ttl_ms,
                answer: next,
            })
        })
        .await
    }

    async fn flush(&self) -> Result<(), KvError> {
        // Durable writes are committed before they are acknowledged; relaxed
        // ones reach the disk with the database's WAL writer.
        Ok(())
    }

    async fn usage(&self, ns: &str) -> Result<Usage, KvError> {
        let row = self
            .read_one(
                "SELECT keys, bytes FROM kv_namespaces WHERE ns = $1",
                &[&ns],
            )
            .await?;
        Ok(row.map_or(Usage::default(), |row| Usage {
            keys: row.get::<_, i64>(0).max(0) as u64,
            bytes: row.get::<_, i64>(1).max(0) as u64,
        }))
    }

    async fn purge(&self, ns: &str) -> Result<(), KvError> {
        // The namespace's counts go with it: nothing is left to update.
        self.in_namespace(ns, |tx, ns| {
            Box::pin(async move {
                tx.execute(
                    "SELECT 1 FROM kv_namespaces WHERE ns = $1 FOR UPDATE",
                    &[&ns],
                )
                .await?;
                tx.execute("DELETE FROM kv_entries WHERE ns = $1", &[&ns])
                    .await?;
                tx.execute("DELETE FROM kv_namespaces WHERE ns = $1", &[&ns])
                    .await?;
                Ok(Ok(((), 0, 0)))
            })
        })
        .await
    }
}

/// The smallest byte string greater than every string starting with
/// `prefix`; `None` when there is none (empty or all `0xff`).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_just_after_its_last_key() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }
}
