//! The fleet's per-queue job limit: each queue's depth as last counted,
//! trusted for [`DEPTH_FRESH`] and raised by this host's sends meanwhile,
//! so a send does not count the queue each time.

use std::time::{Duration, Instant};

use super::postgres::{PostgresQueues, signed, unsigned};
use super::store::QueueError;

/// How long a queue's counted depth is trusted before it is counted again.
const DEPTH_FRESH: Duration = Duration::from_secs(1);

impl PostgresQueues {
    pub(super) fn cached_depth(&self, queue: &str) -> Option<u64> {
        let depth = self
            .depth
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        depth
            .get(queue)
            .filter(|(counted, _)| counted.elapsed() < DEPTH_FRESH)
            .map(|(_, jobs)| *jobs)
    }

    pub(super) fn set_depth(&self, queue: &str, jobs: u64, fresh: bool) {
        let mut depth = self
            .depth
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match depth.get_mut(queue) {
            Some(entry) if !fresh => entry.1 = jobs,
            _ => {
                depth.insert(queue.to_string(), (Instant::now(), jobs));
            }
        }
    }

    /// Refuses a send past the queue's limit.
    pub(super) async fn check_depth(
        &self,
        client: &deadpool_postgres::Object,
        queue: &str,
    ) -> Result<(), QueueError> {
        let jobs = match self.cached_depth(queue) {
            Some(jobs) => jobs,
            None => {
                let row = client
                    .query_one(
                        "SELECT count(*) FROM (SELECT 1 FROM droplet_jobs WHERE queue = $1 LIMIT $2) s",
                        &[&queue, &signed(self.limits.max_jobs)],
                    )
                    .await
                    .map_err(|err| self.fail(err))?;
                let jobs = unsigned(row.get(0));
                self.set_depth(queue, jobs, true);
                jobs
            }
        };
        if jobs >= self.limits.max_jobs {
            return Err(QueueError::Full(self.limits.max_jobs));
        }
        Ok(())
    }
}
