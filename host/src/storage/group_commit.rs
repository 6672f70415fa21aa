//! Group commit for a sled database (the kv backend's, the queues'):
//! writers queue on a [`GroupCommit`], and one flush serves every write
//! that completed before it started, so concurrent writers share the cost
//! of `fsync`. The flush is sled's blocking `flush` on the blocking pool
//! (its `flush_async` hangs when many callers wait on it at once).

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Why a flush failed (logged where it happened).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FlushError(pub String);

/// One flush for every write that completed before it started.
///
/// A writer registers after its write is applied, then waits. The flusher
/// takes every waiter registered so far, flushes once, and answers them all;
/// writers that register meanwhile are served by the next flush.
pub struct GroupCommit {
    db: sled::Db,
    /// The counter each flush increments.
    metric: &'static str,
    /// Waiters and whether a flusher runs. A `std` mutex: held for a push or
    /// a swap, never across a flush.
    state: Mutex<CommitState>,
}

#[derive(Default)]
struct CommitState {
    waiters: Vec<oneshot::Sender<Result<(), FlushError>>>,
    flushing: bool,
}

impl GroupCommit {
    /// Flushes `db`, counting each flush in the counter `metric`.
    pub fn new(db: sled::Db, metric: &'static str) -> Self {
        Self {
            db,
            metric,
            state: Mutex::new(CommitState::default()),
        }
    }

    /// Waits until everything written before the call is on disk.
    pub async fn wait(self: &Arc<Self>) -> Result<(), FlushError> {
        let (done, wait) = oneshot::channel();
        let start_flusher = {
            let mut state = self
                .state
                .lock()
                .map_err(|_| FlushError("storage state is poisoned".to_string()))?;
            state.waiters.push(done);
            !std::mem::replace(&mut state.flushing, true)
        };
        if start_flusher {
            let commit = Arc::clone(self);
            tokio::task::spawn_blocking(move || commit.flush_until_idle());
        }
        wait.await
            .unwrap_or_else(|_| Err(FlushError("storage flush was abandoned".to_string())))
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
            let result = self.db.flush().map(|_| ()).map_err(|err| {
                tracing::error!(error = %err, "storage flush failed");
                FlushError("storage error".to_string())
            });
            metrics::counter!(self.metric).increment(1);
            for waiter in batch {
                let _ = waiter.send(result.clone());
            }
        }
    }
}
