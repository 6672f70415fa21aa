//! Queues on one host: a sled database of their own under the data
//! directory (`{data}/queues`), with an index of every job's state kept
//! in memory (rebuilt from the database at open), so a claim never scans.
//! One process owns the database (the data directory's lock), so one
//! mutex makes every change atomic; a send, an ack and a burial are
//! flushed to disk before they return, writers sharing each flush
//! ([`GroupCommit`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::storage::group_commit::GroupCommit;

use super::sled_index::{
    QueueIndex, Record, State, dedup_key, dedup_value, job_id, place, unplace,
};
use super::store::{
    DEDUP_WINDOW, DeadJob, Job, JobId, NewJob, QueueError, QueueLimits, QueueStats, QueueStore,
    ScheduleRun, Sent, millis, now_ms,
};

/// Queues in a sled database.
pub struct SledQueues {
    pub(super) db: sled::Db,
    pub(super) jobs: sled::Tree,
    pub(super) payloads: sled::Tree,
    pub(super) dedup: sled::Tree,
    pub(super) schedules: sled::Tree,
    pub(super) index: Mutex<HashMap<String, QueueIndex>>,
    pub(super) limits: QueueLimits,
    pub(super) commit: Arc<GroupCommit>,
}

pub(super) fn unavailable(err: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable(err.to_string())
}

pub(super) fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, QueueError> {
    serde_json::from_slice(bytes).map_err(unavailable)
}

pub(super) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, QueueError> {
    serde_json::to_vec(value).map_err(unavailable)
}

#[async_trait::async_trait]
impl QueueStore for SledQueues {
    async fn send(&self, job: NewJob<'_>) -> Result<Sent, QueueError> {
        self.limits.check(&job)?;
        let now = now_ms();
        let sent = {
            let mut index = self.lock();
            let remembered = match job.dedup_key {
                Some(key) => self
                    .dedup
                    .get(dedup_key(job.queue, key))
                    .map_err(unavailable)?
                    .filter(|value| value.len() == 16)
                    .map(|value| (job_id(&value[..8]), job_id(&value[8..])))
                    .filter(|(_, sent_ms)| now.saturating_sub(*sent_ms) < millis(DEDUP_WINDOW)),
                None => None,
            };
            if let Some((id, _)) = remembered {
                Sent {
                    id,
                    duplicate: true,
                }
            } else {
                let queue = index.entry(job.queue.to_string()).or_default();
                if queue.jobs() >= self.limits.max_jobs {
                    return Err(QueueError::Full(self.limits.max_jobs));
                }
                let id = self.db.generate_id().map_err(unavailable)?;
                let state = match job.hold {
                    Some((holder, lease)) => State::Held {
                        holder: holder.to_string(),
                        until_ms: now.saturating_add(millis(lease)),
                    },
                    None => State::Ready {
                        at_ms: now.saturating_add(millis(job.delay)),
                    },
                };
                let record = Record {
                    queue: job.queue.to_string(),
                    attempts: u32::from(job.hold.is_some()),
                    state,
                    enqueued_at_ms: now,
                    error: None,
                };
                self.payloads
                    .insert(id.to_be_bytes(), job.payload)
                    .map_err(unavailable)?;
                self.put(id, &record)?;
                if let Some(key) = job.dedup_key {
                    self.dedup
                        .insert(dedup_key(job.queue, key), &dedup_value(id, now))
                        .map_err(unavailable)?;
                }
                place(queue, id, &record);
                Sent {
                    id,
                    duplicate: false,
                }
            }
        };
        if !sent.duplicate {
            self.flush().await?;
        }
        Ok(sent)
    }

    async fn claim(
        &self,
        queue_name: &str,
        holder: &str,
        lease: Duration,
        max: usize,
        max_attempts: u32,
    ) -> Result<Vec<Job>, QueueError> {
        let now = now_ms();
        let mut buried = false;
        let jobs = {
            let mut index = self.lock();
            let Some(queue) = index.get_mut(queue_name) else {
                return Ok(Vec::new());
            };
            let expired: Vec<JobId> = queue
                .held
                .iter()
                .filter(|(_, until)| **until < now)
                .map(|(id, _)| *id)
                .collect();
            let mut chosen = Vec::new();
            for id in expired {
                let Some(mut record) = self.record(id)? else {
                    queue.held.remove(&id);
                    continue;
                };
                if record.attempts >= max_attempts {
                    unplace(queue, id, &record);
                    record.state = State::Dead;
                    record.error =
                        Some("its host went away during its last attempt (the lease ended)".into());
                    self.put(id, &record)?;
                    place(queue, id, &record);
                    buried = true;
                } else if chosen.len() < max {
                    chosen.push((id, record));
                }
            }
            let ready: Vec<(u64, JobId)> = queue
                .ready
                .iter()
                .take_while(|(at, _)| *at <= now)
                .take(max.saturating_sub(chosen.len()))
                .copied()
                .collect();
            for (_, id) in ready {
                if let Some(record) = self.record(id)? {
                    chosen.push((id, record));
                }
            }
            let mut jobs = Vec::with_capacity(chosen.len());
            for (id, mut record) in chosen {
                unplace(queue, id, &record);
                record.attempts = record.attempts.saturating_add(1);
                record.state = State::Held {
                    holder: holder.to_string(),
                    until_ms: now.saturating_add(millis(lease)),
                };
                self.put(id, &record)?;
                place(queue, id, &record);
                let payload = self.payload(id)?;
                jobs.push(Job {
                    id,
                    queue: queue_name.to_string(),
                    payload,
                    attempt: record.attempts,
                    enqueued_at_ms: record.enqueued_at_ms,
                });
            }
            jobs
        };
        if buried {
            self.flush().await?;
        }
        Ok(jobs)
    }

    async fn ack(&self, id: JobId, holder: &str) -> Result<bool, QueueError> {
        let done = self.change_held(id, holder, |_| None)?;
        if done {
            self.flush().await?;
        }
        Ok(done)
    }

    async fn retry(
        &self,
        id: JobId,
        holder: &str,
        after: Duration,
        error: &str,
        counted: bool,
    ) -> Result<bool, QueueError> {
        let at_ms = now_ms().saturating_add(millis(after));
        self.change_held(id, holder, |record| {
            record.state = State::Ready { at_ms };
            record.error = Some(error.to_string());
            if !counted {
                record.attempts = record.attempts.saturating_sub(1);
            }
            Some(())
        })
    }

    async fn bury(&self, id: JobId, holder: &str, error: &str) -> Result<bool, QueueError> {
        let buried = self.change_held(id, holder, |record| {
            record.state = State::Dead;
            record.error = Some(error.to_string());
            Some(())
        })?;
        if buried {
            self.flush().await?;
        }
        Ok(buried)
    }

    async fn dead(&self, queue: &str, limit: usize) -> Result<Vec<DeadJob>, QueueError> {
        let ids: Vec<JobId> = {
            let index = self.lock();
            index
                .get(queue)
                .map(|queue| queue.dead.iter().take(limit).copied().collect())
                .unwrap_or_default()
        };
        let mut dead = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(record) = self.record(id)? else {
                continue;
            };
            let (payload, payload_base64) = DeadJob::show_payload(self.payload(id)?);
            dead.push(DeadJob {
                id,
                queue: record.queue,
                payload,
                payload_base64,
                attempts: record.attempts,
                error: record.error.unwrap_or_default(),
                enqueued_at_ms: record.enqueued_at_ms,
            });
        }
        Ok(dead)
    }

    async fn redrive(&self, queue_name: &str, id: Option<JobId>) -> Result<u64, QueueError> {
        let now = now_ms();
        let moved = {
            let mut index = self.lock();
            let Some(queue) = index.get_mut(queue_name) else {
                return Ok(0);
            };
            let ids: Vec<JobId> = match id {
                Some(id) => queue.dead.contains(&id).then_some(id).into_iter().collect(),
                None => queue.dead.iter().copied().collect(),
            };
            for id in &ids {
                if let Some(mut record) = self.record(*id)? {
                    unplace(queue, *id, &record);
                    record.state = State::Ready { at_ms: now };
                    record.attempts = 0;
                    self.put(*id, &record)?;
                    place(queue, *id, &record);
                }
            }
            ids.len() as u64
        };
        if moved > 0 {
            self.flush().await?;
        }
        Ok(moved)
    }

    async fn stats(&self) -> Result<Vec<QueueStats>, QueueError> {
        let now = now_ms();
        let index = self.lock();
        let mut stats: Vec<QueueStats> = index
            .iter()
            .filter(|(_, queue)| queue.jobs() > 0)
            .map(|(name, queue)| QueueStats {
                queue: name.clone(),
                waiting: queue.ready.len() as u64,
                retrying: queue.retrying.len() as u64,
                in_flight: queue.held.len() as u64,
                dead: queue.dead.len() as u64,
                oldest_age_ms: queue
                    .pending
                    .first()
                    .map(|(sent, _)| now.saturating_sub(*sent)),
            })
            .collect();
        stats.sort_by(|a, b| a.queue.cmp(&b.queue));
        Ok(stats)
    }

    async fn schedule_ran(&self, run: &ScheduleRun) -> Result<(), QueueError> {
        let key = dedup_key(&run.droplet, &run.schedule);
        let _index = self.lock();
        let newer = match self.schedules.get(&key).map_err(unavailable)? {
            Some(bytes) => decode::<ScheduleRun>(&bytes)?.instant_ms <= run.instant_ms,
            None => true,
        };
        if newer {
            self.schedules
                .insert(key, encode(run)?)
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn schedule_runs(&self) -> Result<Vec<ScheduleRun>, QueueError> {
        self.schedules
            .iter()
            .map(|entry| decode(&entry.map_err(unavailable)?.1))
            .collect()
    }

    async fn forget_old_keys(&self) -> Result<u64, QueueError> {
        let now = now_ms();
        let mut forgotten = 0;
        for entry in self.dedup.iter() {
            let (key, value) = entry.map_err(unavailable)?;
            let sent_ms = if value.len() == 16 {
                job_id(&value[8..])
            } else {
                0
            };
            if now.saturating_sub(sent_ms) >= millis(DEDUP_WINDOW) {
                self.dedup.remove(key).map_err(unavailable)?;
                forgotten += 1;
            }
        }
        Ok(forgotten)
    }
}
