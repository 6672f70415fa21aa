//! Group commit for the sled backend: writers queue on a [`GroupCommit`],
//! and one flush serves every write that completed before it started, so
//! concurrent writers share the cost of `fsync`.

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::KvError;
use super::sled_entry::{poisoned, storage};

/// One flush for every write that completed before it started.
///
/// A writer registers after its write is applied, then waits. The flusher
/// takes every waiter registered so far, flushes once, and answers them all;
/// writers that register meanwhile are served by the next flush.
pub(super) struct GroupCommit {
    db: sled::Db,
    /// Waiters and whether a flusher runs. A `std` mutex: held for a push or
    /// a swap, never across a flush.
    state: Mutex<CommitState>,
}

#[derive(Default)]
pub(super) struct CommitState {
    waiters: Vec<oneshot::Sender<Result<(), KvError>>>,
    flushing: bool,
}

impl GroupCommit {
    pub(super) fn new(db: sled::Db) -> Self {
        Self {
            db,
            state: Mutex::new(CommitState::default()),
        }
    }

    pub(super) async fn wait(self: &Arc<Self>) -> Result<(), KvError> {
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
    pub(super) fn flush_until_idle(&self) {
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
