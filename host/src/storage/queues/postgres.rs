//! Queues on a fleet: the `droplet_jobs` table, claimed with
//! `FOR UPDATE SKIP LOCKED` so any host may consume and a job is held by
//! one host at a time; every time is the database's clock, so hosts whose
//! clocks differ still agree on leases and delays. Dedup keys are a table
//! with a unique key, and each schedule's last run a row.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_postgres::Row;

use super::store::{
    DEDUP_WINDOW, DeadJob, Job, JobId, NewJob, QueueError, QueueLimits, QueueStats, QueueStore,
    ScheduleRun, Sent, millis,
};
use crate::storage::database::Database;

/// Queues in the fleet's database.
pub struct PostgresQueues {
    pub(super) database: Arc<Database>,
    pub(super) limits: QueueLimits,
    /// Each queue's job count as last counted, and the sends since: the
    /// limit is checked against it, so a fleet may pass it by the jobs sent
    /// in one second.
    pub(super) depth: Mutex<HashMap<String, (Instant, u64)>>,
}

pub(super) fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(super) fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

impl PostgresQueues {
    /// Queues kept in `database`.
    pub fn new(database: Arc<Database>, limits: QueueLimits) -> Self {
        Self {
            database,
            limits,
            depth: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn fail(&self, err: tokio_postgres::Error) -> QueueError {
        QueueError::Unavailable(self.database.fail(err).to_string())
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, QueueError> {
        self.database
            .client()
            .await
            .map_err(|err| QueueError::Unavailable(err.to_string()))
    }
}

fn job(row: &Row, queue: &str) -> Job {
    Job {
        id: unsigned(row.get(0)),
        queue: queue.to_string(),
        payload: row.get(1),
        attempt: u32::try_from(row.get::<_, i32>(2)).unwrap_or_default(),
        enqueued_at_ms: unsigned(row.get(3)),
    }
}

#[async_trait::async_trait]
impl QueueStore for PostgresQueues {
    async fn send(&self, new: NewJob<'_>) -> Result<Sent, QueueError> {
        self.limits.check(&new)?;
        let mut client = self.client().await?;
        self.check_depth(&client, new.queue).await?;
        let tx = client.transaction().await.map_err(|err| self.fail(err))?;
        let (holder, lease_ms) = match new.hold {
            Some((holder, lease)) => (Some(holder), signed(millis(lease))),
            None => (None, 0),
        };
        let row = tx
            .query_one(
                "INSERT INTO droplet_jobs (queue, payload, state, available_at, holder, lease_until, attempts)
                 VALUES ($1, $2,
                         CASE WHEN $4::text IS NULL THEN 'ready' ELSE 'held' END,
                         now() + $3 * interval '1 millisecond',
                         $4,
                         CASE WHEN $4::text IS NULL THEN NULL ELSE now() + $5 * interval '1 millisecond' END,
                         CASE WHEN $4::text IS NULL THEN 0 ELSE 1 END)
                 RETURNING id",
                &[
                    &new.queue,
                    &new.payload,
                    &(signed(millis(new.delay)) as f64),
                    &holder,
                    &(lease_ms as f64),
                ],
            )
            .await
            .map_err(|err| self.fail(err))?;
        let id: i64 = row.get(0);
        if let Some(key) = new.dedup_key {
            let window_ms = millis(DEDUP_WINDOW) as f64;
            tx.execute(
                "DELETE FROM droplet_job_keys
                 WHERE queue = $1 AND key = $2 AND sent_at < now() - $3 * interval '1 millisecond'",
                &[&new.queue, &key, &window_ms],
            )
            .await
            .map_err(|err| self.fail(err))?;
            let kept = tx
                .query_opt(
                    "INSERT INTO droplet_job_keys (queue, key, id) VALUES ($1, $2, $3)
                     ON CONFLICT (queue, key) DO NOTHING RETURNING id",
                    &[&new.queue, &key, &id],
                )
                .await
                .map_err(|err| self.fail(err))?;
            if kept.is_none() {
                tx.rollback().await.map_err(|err| self.fail(err))?;
                let first = client
                    .query_one(
                        "SELECT id FROM droplet_job_keys WHERE queue = $1 AND key = $2",
                        &[&new.queue, &key],
                    )
                    .await
                    .map_err(|err| self.fail(err))?;
                return Ok(Sent {
                    id: unsigned(first.get(0)),
                    duplicate: true,
                });
            }
        }
        tx.commit().await.map_err(|err| self.fail(err))?;
        if let Some(jobs) = self.cached_depth(new.queue) {
            self.set_depth(new.queue, jobs + 1, false);
        }
        Ok(Sent {
            id: unsigned(id),
            duplicate: false,
        })
    }

    async fn claim(
        &self,
        queue: &str,
        holder: &str,
        lease: Duration,
        max: usize,
        max_attempts: u32,
    ) -> Result<Vec<Job>, QueueError> {
        let client = self.client().await?;
        let max_attempts = i32::try_from(max_attempts).unwrap_or(i32::MAX);
        client
            .execute(
                "UPDATE droplet_jobs
                 SET state = 'dead', holder = NULL, lease_until = NULL,
                     error = 'its host went away during its last attempt (the lease ended)'
                 WHERE queue = $1 AND state = 'held' AND lease_until < now() AND attempts >= $2",
                &[&queue, &max_attempts],
            )
            .await
            .map_err(|err| self.fail(err))?;
        let rows = client
            .query(
                // Two index scans (the partial indexes of held and of ready
                // jobs), each locking only rows no other host holds.
                "WITH expired AS (
                     SELECT id FROM droplet_jobs
                     WHERE queue = $1 AND state = 'held' AND lease_until < now()
                     ORDER BY lease_until LIMIT $4
                     FOR UPDATE SKIP LOCKED),
                 ready AS (
                     SELECT id FROM droplet_jobs
                     WHERE queue = $1 AND state = 'ready' AND available_at <= now()
                     ORDER BY available_at, id LIMIT $4
                     FOR UPDATE SKIP LOCKED),
                 picked AS (
                     SELECT id FROM expired UNION ALL SELECT id FROM ready LIMIT $4)
                 UPDATE droplet_jobs j
                 SET state = 'held', holder = $2,
                     lease_until = now() + $3 * interval '1 millisecond',
                     attempts = j.attempts + 1
                 FROM picked
                 WHERE j.id = picked.id
                 RETURNING j.id, j.payload, j.attempts,
                           (extract(epoch FROM j.enqueued_at) * 1000)::bigint",
                &[
                    &queue,
                    &holder,
                    &(millis(lease) as f64),
                    &i64::try_from(max).unwrap_or(i64::MAX),
                ],
            )
            .await
            .map_err(|err| self.fail(err))?;
        let mut jobs: Vec<Job> = rows.iter().map(|row| job(row, queue)).collect();
        jobs.sort_by_key(|job| job.id);
        Ok(jobs)
    }

    async fn ack(&self, id: JobId, holder: &str) -> Result<bool, QueueError> {
        let client = self.client().await?;
        let done = client
            .execute(
                "DELETE FROM droplet_jobs WHERE id = $1 AND state = 'held' AND holder = $2",
                &[&signed(id), &holder],
            )
            .await
            .map_err(|err| self.fail(err))?;
        Ok(done == 1)
    }

    async fn retry(
        &self,
        id: JobId,
        holder: &str,
        after: Duration,
        error: &str,
        counted: bool,
    ) -> Result<bool, QueueError> {
        let client = self.client().await?;
        let given_back: i32 = if counted { 0 } else { 1 };
        let changed = client
            .execute(
                "UPDATE droplet_jobs
                 SET state = 'ready', holder = NULL, lease_until = NULL,
                     available_at = now() + $3 * interval '1 millisecond',
                     error = $4, attempts = greatest(attempts - $5, 0)
                 WHERE id = $1 AND state = 'held' AND holder = $2",
                &[
                    &signed(id),
                    &holder,
                    &(millis(after) as f64),
                    &error,
                    &given_back,
                ],
            )
            .await
            .map_err(|err| self.fail(err))?;
        Ok(changed == 1)
    }

    async fn bury(&self, id: JobId, holder: &str, error: &str) -> Result<bool, QueueError> {
        let client = self.client().await?;
        let changed = client
            .execute(
                "UPDATE droplet_jobs SET state = 'dead', holder = NULL, lease_until = NULL, error = $3
                 WHERE id = $1 AND state = 'held' AND holder = $2",
                &[&signed(id), &holder, &error],
            )
            .await
            .map_err(|err| self.fail(err))?;
        Ok(changed == 1)
    }

    async fn dead(&self, queue: &str, limit: usize) -> Result<Vec<DeadJob>, QueueError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, payload, attempts, coalesce(error, ''),
                        (extract(epoch FROM enqueued_at) * 1000)::bigint
                 FROM droplet_jobs WHERE queue = $1 AND state = 'dead' ORDER BY id LIMIT $2",
                &[&queue, &i64::try_from(limit).unwrap_or(i64::MAX)],
            )
            .await
            .map_err(|err| self.fail(err))?;
        Ok(rows
            .iter()
            .map(|row| {
                let (payload, payload_base64) = DeadJob::show_payload(row.get(1));
                DeadJob {
                    id: unsigned(row.get(0)),
                    queue: queue.to_string(),
                    payload,
                    payload_base64,
                    attempts: u32::try_from(row.get::<_, i32>(2)).unwrap_or_default(),
                    error: row.get(3),
                    enqueued_at_ms: unsigned(row.get(4)),
                }
            })
            .collect())
    }

    async fn redrive(&self, queue: &str, id: Option<JobId>) -> Result<u64, QueueError> {
        let client = self.client().await?;
        let id = id.map(signed);
        let moved = client
            .execute(
                "UPDATE droplet_jobs SET state = 'ready', available_at = now(), attempts = 0
                 WHERE queue = $1 AND state = 'dead' AND ($2::bigint IS NULL OR id = $2)",
                &[&queue, &id],
            )
            .await
            .map_err(|err| self.fail(err))?;
        Ok(moved)
    }

    async fn stats(&self) -> Result<Vec<QueueStats>, QueueError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT queue,
                        count(*) FILTER (WHERE state = 'ready'),
                        count(*) FILTER (WHERE state = 'ready' AND attempts > 0),
                        count(*) FILTER (WHERE state = 'held'),
                        count(*) FILTER (WHERE state = 'dead'),
                        (extract(epoch FROM now() - min(enqueued_at) FILTER (WHERE state <> 'dead')) * 1000)::bigint
                 FROM droplet_jobs GROUP BY queue ORDER BY queue",
                &[],
            )
            .await
            .map_err(|err| self.fail(err))?;
        let stats: Vec<QueueStats> = rows
            .iter()
            .map(|row| QueueStats {
                queue: row.get(0),
                waiting: unsigned(row.get(1)),
                retrying: unsigned(row.get(2)),
                in_flight: unsigned(row.get(3)),
                dead: unsigned(row.get(4)),
                oldest_age_ms: row.get::<_, Option<i64>>(5).map(unsigned),
            })
            .collect();
        for queue in &stats {
            self.set_depth(&queue.queue, queue.depth() + queue.dead, true);
        }
        Ok(stats)
    }

    async fn schedule_ran(&self, run: &ScheduleRun) -> Result<(), QueueError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO droplet_schedule_runs
                     (droplet, schedule, instant_ms, finished_at_ms, status, host, attempt)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (droplet, schedule) DO UPDATE SET
                     instant_ms = EXCLUDED.instant_ms, finished_at_ms = EXCLUDED.finished_at_ms,
                     status = EXCLUDED.status, host = EXCLUDED.host, attempt = EXCLUDED.attempt
                 WHERE droplet_schedule_runs.instant_ms <= EXCLUDED.instant_ms",
                &[
                    &run.droplet,
                    &run.schedule,
                    &signed(run.instant_ms),
                    &signed(run.finished_at_ms),
                    &i32::from(run.status),
                    &run.host,
                    &i32::try_from(run.attempt).unwrap_or(i32::MAX),
                ],
            )
            .await
            .map_err(|err| self.fail(err))?;
        Ok(())
    }

    async fn schedule_runs(&self) -> Result<Vec<ScheduleRun>, QueueError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT droplet, schedule, instant_ms, finished_at_ms, status, host, attempt
                 FROM droplet_schedule_runs ORDER BY droplet, schedule",
                &[],
            )
            .await
            .map_err(|err| self.fail(err))?;
        Ok(rows
            .iter()
            .map(|row| ScheduleRun {
                droplet: row.get(0),
                schedule: row.get(1),
                instant_ms: unsigned(row.get(2)),
                finished_at_ms: unsigned(row.get(3)),
                status: u16::try_from(row.get::<_, i32>(4)).unwrap_or_default(),
                host: row.get(5),
                attempt: u32::try_from(row.get::<_, i32>(6)).unwrap_or_default(),
            })
            .collect())
    }

    async fn forget_old_keys(&self) -> Result<u64, QueueError> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM droplet_job_keys WHERE sent_at < now() - $1 * interval '1 millisecond'",
                &[&(millis(DEDUP_WINDOW) as f64)],
            )
            .await
            .map_err(|err| self.fail(err))
    }
}
