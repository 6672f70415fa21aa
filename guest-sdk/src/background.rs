//! Which background call a request is: a schedule's instant or a queued
//! job. The host sets these headers itself and drops them from requests
//! that come from outside, so a droplet can trust them.
//!
//! ```
//! use droplet_sdk::Request;
//!
//! fn handle(req: Request) -> String {
//!     if let Some(run) = req.schedule() {
//!         return format!("{} at {}", run.name, run.scheduled_at);
//!     }
//!     match req.job() {
//!         Some(job) => format!("job {} of {}, attempt {}", job.id, job.queue, job.attempt),
//!         None => "a request".to_string(),
//!     }
//! }
//! let req = Request::post("/", "").with_header("x-droplet-schedule", "cleanup")
//!     .with_header("x-droplet-scheduled-at", "2026-12-04T10:05:00Z");
//! assert_eq!(handle(req), "cleanup at 2026-12-04T10:05:00Z");
//! ```

use crate::Request;

/// A call made for one instant of a `[[schedule]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledRun {
    /// The schedule's name (`x-droplet-schedule`).
    pub name: String,
    /// The instant, RFC 3339 in UTC (`x-droplet-scheduled-at`): the same
    /// when a run is repeated because its host went away, so a droplet can
    /// make its work idempotent on it.
    pub scheduled_at: String,
}

/// A call made for one job of a queue the droplet consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRun {
    /// The queue (`x-droplet-queue`).
    pub queue: String,
    /// The job's id (`x-droplet-job-id`), the same on every attempt.
    pub id: u64,
    /// This attempt, from 1 (`x-droplet-attempt`).
    pub attempt: u32,
}

impl Request {
    /// The schedule and instant this call is for, when the host made it
    /// for a `[[schedule]]`.
    pub fn schedule(&self) -> Option<ScheduledRun> {
        Some(ScheduledRun {
            name: self.header("x-droplet-schedule")?.to_string(),
            scheduled_at: self.header("x-droplet-scheduled-at")?.to_string(),
        })
    }

    /// The job and attempt this call is for, when the host made it for a
    /// queue the droplet consumes.
    ///
    /// ```
    /// let req = droplet_sdk::Request::post("/", "payload")
    ///     .with_header("x-droplet-queue", "emails")
    ///     .with_header("x-droplet-job-id", "42")
    ///     .with_header("x-droplet-attempt", "2");
    /// let job = req.job().unwrap();
    /// assert_eq!((job.queue.as_str(), job.id, job.attempt), ("emails", 42, 2));
    /// ```
    pub fn job(&self) -> Option<JobRun> {
        Some(JobRun {
            queue: self.header("x-droplet-queue")?.to_string(),
            id: self.header("x-droplet-job-id")?.parse().ok()?,
            attempt: self.header("x-droplet-attempt")?.parse().ok()?,
        })
    }
}
