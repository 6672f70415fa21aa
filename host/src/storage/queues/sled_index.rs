//! The sled queue store's own vocabulary: a job's state and record as
//! kept, the in-memory index of each queue's jobs by state, and the keys
//! of the dedup tree. Used only by [`super::sled`].

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::{Deserialize, Serialize};

use super::store::JobId;

/// A job's state, as kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) enum State {
    /// Waiting until `at_ms`.
    Ready { at_ms: u64 },
    /// Claimed by `holder` until `until_ms`.
    Held { holder: String, until_ms: u64 },
    /// Out of attempts.
    Dead,
}

/// A job as kept (its payload is in a tree of its own).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Record {
    pub(super) queue: String,
    pub(super) state: State,
    pub(super) attempts: u32,
    pub(super) enqueued_at_ms: u64,
    pub(super) error: Option<String>,
}

/// One queue's jobs by state.
#[derive(Default)]
pub(super) struct QueueIndex {
    pub(super) ready: BTreeSet<(u64, JobId)>,
    pub(super) held: BTreeMap<JobId, u64>,
    pub(super) dead: BTreeSet<JobId>,
    pub(super) retrying: HashSet<JobId>,
    /// Jobs not yet done, by when they were sent.
    pub(super) pending: BTreeSet<(u64, JobId)>,
}

impl QueueIndex {
    pub(super) fn jobs(&self) -> u64 {
        (self.ready.len() + self.held.len() + self.dead.len()) as u64
    }
}

pub(super) fn job_id(key: &[u8]) -> JobId {
    let mut bytes = [0u8; 8];
    let len = key.len().min(8);
    bytes[..len].copy_from_slice(&key[..len]);
    u64::from_be_bytes(bytes)
}

/// Adds a job to its queue's index under its state.
pub(super) fn place(queue: &mut QueueIndex, id: JobId, record: &Record) {
    match &record.state {
        State::Ready { at_ms } => {
            queue.ready.insert((*at_ms, id));
            if record.attempts > 0 {
                queue.retrying.insert(id);
            }
        }
        State::Held { until_ms, .. } => {
            queue.held.insert(id, *until_ms);
        }
        State::Dead => {
            queue.dead.insert(id);
        }
    }
    if !matches!(record.state, State::Dead) {
        queue.pending.insert((record.enqueued_at_ms, id));
    }
}

/// Takes a job out of its queue's index.
pub(super) fn unplace(queue: &mut QueueIndex, id: JobId, record: &Record) {
    match &record.state {
        State::Ready { at_ms } => {
            queue.ready.remove(&(*at_ms, id));
            queue.retrying.remove(&id);
        }
        State::Held { .. } => {
            queue.held.remove(&id);
        }
        State::Dead => {
            queue.dead.remove(&id);
        }
    }
    queue.pending.remove(&(record.enqueued_at_ms, id));
}

pub(super) fn dedup_key(queue: &str, key: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(queue.len() + 1 + key.len());
    bytes.extend_from_slice(queue.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(key.as_bytes());
    bytes
}

pub(super) fn dedup_value(id: JobId, sent_ms: u64) -> [u8; 16] {
    let mut value = [0u8; 16];
    value[..8].copy_from_slice(&id.to_be_bytes());
    value[8..].copy_from_slice(&sent_ms.to_be_bytes());
    value
}
