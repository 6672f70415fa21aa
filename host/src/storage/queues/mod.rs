//! Where queued jobs and schedule runs are kept: [`QueueStore`], with sled
//! on a single host (`sled`, a database of its own under the data
//! directory) and PostgreSQL on a fleet (`postgres`), where any host may
//! claim a job and a lease decides who holds it. One conformance suite
//! runs on both (`tests/e2e/queue_conformance.rs`).

pub mod postgres;
mod postgres_depth;
pub mod sled;
mod sled_index;
mod sled_store;
pub mod store;

pub use self::store::{
    DeadJob, Job, JobId, NewJob, QueueError, QueueLimits, QueueStats, QueueStore, ScheduleRun, Sent,
};
