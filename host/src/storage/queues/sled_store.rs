//! [`SledQueues`]' own methods: opening the database and rebuilding the
//! index, reading and writing one job, flushing, and changing a job its
//! holder holds. The trait's operations are in [`super::sled`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::sled::{SledQueues, decode, encode, unavailable};
use super::sled_index::{QueueIndex, Record, State, job_id, place, unplace};
use super::store::{JobId, QueueError, QueueLimits};
use crate::storage::group_commit::GroupCommit;

impl SledQueues {
    /// Opens (or creates) the queues in `dir` and indexes their jobs.
    pub fn open(dir: &Path, limits: QueueLimits) -> Result<Self, QueueError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(16 << 20)
            .open()
            .map_err(|err| unavailable(format!("cannot open {}: {err}", dir.display())))?;
        let tree = |name: &str| db.open_tree(name).map_err(unavailable);
        let store = Self {
            jobs: tree("jobs")?,
            payloads: tree("payloads")?,
            dedup: tree("dedup")?,
            schedules: tree("schedules")?,
            commit: Arc::new(GroupCommit::new(db.clone(), "droplet_queue_flushes_total")),
            db,
            index: Mutex::new(HashMap::new()),
            limits,
        };
        let mut index = HashMap::new();
        for entry in store.jobs.iter() {
            let (key, value) = entry.map_err(unavailable)?;
            let id = job_id(&key);
            let record: Record = decode(&value)?;
            let queue: &mut QueueIndex = index.entry(record.queue.clone()).or_default();
            place(queue, id, &record);
        }
        *store.lock() = index;
        Ok(store)
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, QueueIndex>> {
        self.index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until every change made so far is on disk (one flush for
    /// every writer waiting).
    pub(super) async fn flush(&self) -> Result<(), QueueError> {
        self.commit.wait().await.map_err(unavailable)
    }

    pub(super) fn record(&self, id: JobId) -> Result<Option<Record>, QueueError> {
        self.jobs
            .get(id.to_be_bytes())
            .map_err(unavailable)?
            .map(|bytes| decode(&bytes))
            .transpose()
    }

    pub(super) fn payload(&self, id: JobId) -> Result<Vec<u8>, QueueError> {
        Ok(self
            .payloads
            .get(id.to_be_bytes())
            .map_err(unavailable)?
            .map(|bytes| bytes.to_vec())
            .unwrap_or_default())
    }

    pub(super) fn put(&self, id: JobId, record: &Record) -> Result<(), QueueError> {
        self.jobs
            .insert(id.to_be_bytes(), encode(record)?)
            .map_err(unavailable)?;
        Ok(())
    }

    /// Changes a job `holder` holds: `change` gives its new state, or
    /// `None` to remove it. False when `holder` does not hold it.
    pub(super) fn change_held(
        &self,
        id: JobId,
        holder: &str,
        change: impl FnOnce(&mut Record) -> Option<()>,
    ) -> Result<bool, QueueError> {
        let mut index = self.lock();
        let Some(mut record) = self.record(id)? else {
            return Ok(false);
        };
        if !matches!(&record.state, State::Held { holder: held_by, .. } if held_by == holder) {
            return Ok(false);
        }
        let queue = index.entry(record.queue.clone()).or_default();
        unplace(queue, id, &record);
        match change(&mut record) {
            Some(()) => {
                self.put(id, &record)?;
                place(queue, id, &record);
            }
            None => {
                self.jobs.remove(id.to_be_bytes()).map_err(unavailable)?;
                self.payloads
                    .remove(id.to_be_bytes())
                    .map_err(unavailable)?;
            }
        }
        Ok(true)
    }
}
