//! Purging expired keys from the PostgreSQL backend: a background task on
//! every host of a fleet, kept apart by the namespace locks.

use super::KvError;
use crate::ops::shutdown::Shutdown;
use std::sync::Arc;
use std::time::Duration;

use super::postgres::{PostgresBackend, unavailable};

/// How often expired keys are purged.
const PURGE_INTERVAL: Duration = Duration::from_secs(30);

impl PostgresBackend {
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
            let ns: String = row.try_get(0).map_err(super::postgres::schema)?;
            purged += self
                .in_namespace(&ns, |tx, ns| {
                    Box::pin(async move {
                        // The namespace row first, as every write takes it:
                        // one lock order, so a purge and a write to an
                        // expiring key never deadlock.
                        let lock = tx
                            .prepare_cached("SELECT 1 FROM kv_namespaces WHERE ns = $1 FOR UPDATE")
                            .await?;
                        tx.query_opt(&lock, &[&ns]).await?;
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
                        let (count, size): (i64, i64) = (gone.try_get(0)?, gone.try_get(1)?);
                        let bytes = size + count * super::ENTRY_OVERHEAD_BYTES as i64;
                        Ok(Ok((count, -bytes, -count)))
                    })
                })
                .await? as u64;
        }
        Ok(purged)
    }
}
