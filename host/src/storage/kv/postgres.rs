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

use deadpool_postgres::Transaction;

use super::{Durability, KvError, Limits, entry_bytes};
use crate::storage::database::{Database, DbError};
use crate::storage::shared_reads::SharedReads;

/// The get: a key's live value. `pub` so the benchmark's native baseline
/// runs exactly this query.
pub const GET_QUERY: &str = "SELECT value FROM kv_entries
     WHERE ns = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > now())";

/// kv in the host's PostgreSQL database.
pub struct PostgresBackend {
    pub(super) db: Arc<Database>,
    /// The connections standalone reads share.
    reads: SharedReads,
    durability: Durability,
}

/// The live entry a write replaces, as a write step sees it.
pub(super) struct Current {
    pub(super) value: Vec<u8>,
    /// Milliseconds until it expires; `None`: never.
    pub(super) ttl_ms: Option<i64>,
}

/// A write's answer with the change in the namespace's bytes and keys, or
/// its refusal.
pub(super) type Counted<T> = Result<(T, i64, i64), KvError>;

/// What a write step decided.
pub(super) enum Step<T> {
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
        let reads = SharedReads::new(Arc::clone(&db));
        Self {
            db,
            reads,
            durability,
        }
    }

    /// Runs `op` in a transaction. `op` answers `(result, byte change, key
    /// change)`, and the namespace's counts are updated in the same
    /// transaction; or it refuses with a [`KvError`], and nothing is
    /// written (the transaction is rolled back).
    pub(super) async fn in_namespace<T: Send>(
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
    pub(super) async fn write<T: Send + 'static>(
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
                    let used: i64 = tx.query_one(&lock, &[&ns]).await?.try_get(0)?;
                    let read = tx
                        .prepare_cached(
                            "SELECT value,
                                    expires_at IS NULL OR expires_at > now(),
                                    (extract(epoch FROM expires_at - now()) * 1000)::bigint
                             FROM kv_entries WHERE ns = $1 AND key = $2",
                        )
                        .await?;
                    let row = tx.query_opt(&read, &[&ns, &key]).await?;
                    let (old_size, current) = match row {
                        None => (None, None),
                        Some(row) => {
                            let value: Vec<u8> = row.try_get(0)?;
                            let live: bool = row.try_get(1)?;
                            let ttl_ms: Option<i64> = row.try_get(2)?;
                            let size = entry_bytes(key.len(), value.len());
                            (Some(size), live.then_some(Current { value, ttl_ms }))
                        }
                    };
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
    pub(super) async fn read_one(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<tokio_postgres::Row>, KvError> {
        let client = self.reads.client().await.map_err(unavailable)?;
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

/// A row that does not have the columns or types the code reads: the
/// schema is not the one this host migrated to.
pub(super) fn schema(err: tokio_postgres::Error) -> KvError {
    KvError::Unavailable(format!("the kv table does not read as expected: {err}"))
}

pub(super) fn unavailable(err: DbError) -> KvError {
    KvError::Unavailable(err.to_string())
}
