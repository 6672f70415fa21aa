//! [`QueueStore`]: the trait both backends implement, the jobs it holds,
//! and what operators see of each queue and schedule.
//!
//! A job is ready (waiting for its time), held (claimed by one host until
//! its lease ends) or dead (out of attempts). Claiming takes ready jobs
//! and held ones whose lease has ended (their host went away), counting
//! an attempt; only the holder may then acknowledge, retry or bury it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A job's id, unique in its store.
pub type JobId = u64;

/// How long a dedup key is remembered.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(3600);
/// The longest delay a job may be sent with: seven days.
pub const MAX_DELAY: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest dedup key, in bytes.
pub const MAX_DEDUP_KEY_BYTES: usize = 256;

/// One job to send.
pub struct NewJob<'a> {
    /// The queue.
    pub queue: &'a str,
    /// Its payload.
    pub payload: &'a [u8],
    /// How long before it may run.
    pub delay: Duration,
    /// A key that makes a second send within [`DEDUP_WINDOW`] return the
    /// first job's id instead.
    pub dedup_key: Option<&'a str>,
    /// Sent already held by this holder for this long (a schedule's
    /// instant, run at once by the host that sent it).
    pub hold: Option<(&'a str, Duration)>,
}

/// What `send` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// The job's id (the first job's, for a duplicate).
    pub id: JobId,
    /// Whether an earlier job had the same dedup key: nothing was sent.
    pub duplicate: bool,
}

/// A job claimed to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// Its queue.
    pub queue: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// This attempt, from 1.
    pub attempt: u32,
    /// When it was sent, in milliseconds since the Unix epoch.
    pub enqueued_at_ms: u64,
}

/// A job out of attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeadJob {
    /// Its id.
    pub id: JobId,
    /// Its queue.
    pub queue: String,
    /// Its payload, as UTF-8 where it is, else base64 (`payload_base64`).
    pub payload: Option<String>,
    /// Its payload in base64, when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// Why its last attempt failed.
    pub error: String,
    /// When it was sent, in milliseconds since the Unix epoch.
    pub enqueued_at_ms: u64,
}

impl DeadJob {
    /// The payload shown as text where it is UTF-8, else in base64.
    pub fn show_payload(payload: Vec<u8>) -> (Option<String>, Option<String>) {
        use base64::Engine as _;
        match String::from_utf8(payload) {
            Ok(text) => (Some(text), None),
            Err(err) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(err.into_bytes())),
            ),
        }
    }
}

/// One queue, as operators see it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueueStats {
    /// The queue.
    pub queue: String,
    /// Jobs waiting to run: ready now or delayed (retries included).
    pub waiting: u64,
    /// Of those, jobs waiting for a retry (at least one attempt made).
    pub retrying: u64,
    /// Jobs held by a host now.
    pub in_flight: u64,
    /// Jobs out of attempts.
    pub dead: u64,
    /// The age of the oldest job not yet done (waiting or in flight), in
    /// milliseconds.
    pub oldest_age_ms: Option<u64>,
}

impl QueueStats {
    /// Jobs not yet done: waiting and in flight.
    pub fn depth(&self) -> u64 {
        self.waiting + self.in_flight
    }
}

/// The last run of one schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScheduleRun {
    /// The droplet.
    pub droplet: String,
    /// The schedule's name.
    pub schedule: String,
    /// The instant run, in milliseconds since the Unix epoch.
    pub instant_ms: u64,
    /// When the run ended.
    pub finished_at_ms: u64,
    /// The status the droplet answered (or the host's, when it failed).
    pub status: u16,
    /// The host that ran it.
    pub host: String,
    /// Which attempt it was (2 or more: a host went away during an
    /// earlier one).
    pub attempt: u32,
}

/// Why a queue operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The queue holds as many jobs as the host allows.
    #[error("the queue holds its limit of {0} jobs")]
    Full(u64),
    /// The payload is larger than the host allows.
    #[error("the payload is larger than the limit of {0} bytes")]
    TooLarge(usize),
    /// An option is out of range.
    #[error("{0}")]
    Invalid(String),
    /// The store could not be reached.
    #[error("the queue store is unavailable: {0}")]
    Unavailable(String),
}

/// What one store allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Jobs one queue may hold (waiting, in flight and dead).
    pub max_jobs: u64,
    /// The largest payload, in bytes.
    pub max_payload_bytes: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self {
            max_jobs: 100_000,
            max_payload_bytes: 256 * 1024,
        }
    }
}

impl QueueLimits {
    /// Refuses a job no store would take: too large, delayed too long, a
    /// dedup key too long.
    pub fn check(&self, job: &NewJob<'_>) -> Result<(), QueueError> {
        if job.payload.len() > self.max_payload_bytes {
            return Err(QueueError::TooLarge(self.max_payload_bytes));
        }
        if job.delay > MAX_DELAY {
            return Err(QueueError::Invalid(
                "delay-ms must be at most seven days".into(),
            ));
        }
        if job
            .dedup_key
            .is_some_and(|key| key.is_empty() || key.len() > MAX_DEDUP_KEY_BYTES)
        {
            return Err(QueueError::Invalid(format!(
                "dedup-key must be 1 to {MAX_DEDUP_KEY_BYTES} bytes"
            )));
        }
        Ok(())
    }
}

/// Where jobs and schedule runs are kept: sled on one host, PostgreSQL on
/// a fleet. The same conformance suite runs on both.
#[async_trait::async_trait]
pub trait QueueStore: Send + Sync {
    /// Sends a job; durable when it returns.
    async fn send(&self, job: NewJob<'_>) -> Result<Sent, QueueError>;

    /// Claims up to `max` jobs of `queue` for `holder` until `lease` has
    /// passed, oldest first, counting an attempt on each. A held job whose
    /// lease ended on its `max_attempts`th attempt is buried instead.
    async fn claim(
        &self,
        queue: &str,
        holder: &str,
        lease: Duration,
        max: usize,
        max_attempts: u32,
    ) -> Result<Vec<Job>, QueueError>;

    /// Acknowledges a job `holder` holds: it is done. False when it no
    /// longer holds it.
    async fn ack(&self, id: JobId, holder: &str) -> Result<bool, QueueError>;

    /// Puts a job `holder` holds back, to run again after `after`; with
    /// `counted` false, the attempt it took is given back (the job was
    /// never delivered).
    async fn retry(
        &self,
        id: JobId,
        holder: &str,
        after: Duration,
        error: &str,
        counted: bool,
    ) -> Result<bool, QueueError>;

    /// Moves a job `holder` holds to its queue's dead-letter list.
    async fn bury(&self, id: JobId, holder: &str, error: &str) -> Result<bool, QueueError>;

    /// The dead jobs of `queue`, oldest first, at most `limit`.
    async fn dead(&self, queue: &str, limit: usize) -> Result<Vec<DeadJob>, QueueError>;

    /// Makes dead jobs of `queue` (all, or the one `id`) ready again with
    /// fresh attempts; how many.
    async fn redrive(&self, queue: &str, id: Option<JobId>) -> Result<u64, QueueError>;

    /// Every queue that holds a job.
    async fn stats(&self) -> Result<Vec<QueueStats>, QueueError>;

    /// Keeps the last run of a schedule (the newest instant wins).
    async fn schedule_ran(&self, run: &ScheduleRun) -> Result<(), QueueError>;

    /// The last run of every schedule.
    async fn schedule_runs(&self) -> Result<Vec<ScheduleRun>, QueueError>;

    /// Forgets dedup keys older than [`DEDUP_WINDOW`]; how many.
    async fn forget_old_keys(&self) -> Result<u64, QueueError>;
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// A duration in whole milliseconds, saturating.
pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
