//! Work no request waits for, as operators see it: every queue (depth,
//! age of the oldest job, in flight, retrying, dead, and who consumes
//! and sends to it), a queue's dead-letter list and its re-drive, and
//! every schedule's next and last run.

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use super::reply::{typed, whole_number};
use super::schema;
use crate::app::App;
use crate::droplets::jobs_spec::{CronSchedule, valid_queue_name};
use crate::error::{HostError, clip};
use crate::storage::queues::{DeadJob, QueueError, QueueStats};

/// The most dead jobs one listing returns.
const MAX_LISTED: usize = 1000;

/// One queue.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueueView {
    /// Its counts.
    #[serde(flatten)]
    pub stats: QueueStats,
    /// Jobs not yet done: waiting and in flight.
    pub depth: u64,
    /// The droplets that consume it here.
    pub consumers: Vec<String>,
    /// The droplets that may send to it here.
    pub senders: Vec<String>,
}

/// Every queue that holds a job or that a droplet consumes.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueueList {
    /// By name.
    pub queues: Vec<QueueView>,
}

/// A queue's dead jobs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeadList {
    /// Oldest first.
    pub jobs: Vec<DeadJob>,
}

/// What a re-drive did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Redriven {
    /// Jobs made ready again.
    pub redriven: u64,
}

/// One schedule's last run.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LastRun {
    /// The instant run (RFC 3339).
    pub instant: String,
    /// When it ended (RFC 3339).
    pub finished_at: String,
    /// What the droplet answered.
    pub status: u16,
    /// The host that ran it.
    pub host: String,
    /// Which attempt (2 or more: a host went away during an earlier one).
    pub attempt: u32,
}

/// One schedule of one droplet.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScheduleView {
    /// The droplet.
    pub droplet: String,
    /// The schedule's name.
    pub name: String,
    /// Its expression.
    pub cron: String,
    /// Its time zone (UTC when absent).
    pub timezone: Option<String>,
    /// The request the droplet gets.
    pub method: String,
    /// The path it is called at.
    pub path: String,
    /// The next instant (RFC 3339).
    pub next_at: Option<String>,
    /// The last run any host recorded.
    pub last: Option<LastRun>,
}

/// Every schedule of every loaded droplet.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScheduleList {
    /// By droplet, then name.
    pub schedules: Vec<ScheduleView>,
}

fn unavailable(err: QueueError) -> HostError {
    HostError::StoreUnavailable(err.to_string())
}

fn rfc3339(ms: u64) -> String {
    DateTime::<Utc>::from_timestamp_millis(i64::try_from(ms).unwrap_or(0))
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn known_queue(queue: &str) -> Result<(), HostError> {
    if valid_queue_name(queue) {
        Ok(())
    } else {
        Err(HostError::NotFound(format!(
            "`{}` is not a queue name",
            clip(queue, 80)
        )))
    }
}

/// Every queue that holds a job or that a droplet here consumes.
#[utoipa::path(
    get,
    path = "/_admin/queues",
    tag = "jobs",
    responses(
        (status = 200, description = "Every queue, by name", body = QueueList),
        (status = 401, description = "No valid token", body = schema::ErrorBody),
        (status = 403, description = "Not an admin token", body = schema::ErrorBody),
        (status = 503, description = "The queue store is unavailable", body = schema::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(app: &App) -> Result<Response<Full<Bytes>>, HostError> {
    let mut stats: Vec<QueueStats> = app
        .queues
        .stats()
        .await
        .map_err(unavailable)?
        .into_iter()
        .filter(|queue| valid_queue_name(&queue.queue))
        .collect();
    let droplets = app.droplets.list();
    for droplet in &droplets {
        for queue in droplet
            .manifest
            .consume
            .iter()
            .map(|consume| &consume.queue)
            .chain(&droplet.manifest.send_queues)
        {
            if !stats.iter().any(|known| &known.queue == queue) {
                stats.push(QueueStats {
                    queue: queue.clone(),
                    ..QueueStats::default()
                });
            }
        }
    }
    stats.sort_by(|a, b| a.queue.cmp(&b.queue));
    let queues = stats
        .into_iter()
        .map(|stats| {
            let named = |pick: &dyn Fn(&crate::droplets::manifest::Manifest) -> bool| {
                droplets
                    .iter()
                    .filter(|droplet| pick(&droplet.manifest))
                    .map(|droplet| droplet.name.to_string())
                    .collect()
            };
            QueueView {
                depth: stats.depth(),
                consumers: named(&|manifest| {
                    manifest.consume.iter().any(|c| c.queue == stats.queue)
                }),
                senders: named(&|manifest| manifest.send_queues.contains(&stats.queue)),
                stats,
            }
        })
        .collect();
    Ok(typed(StatusCode::OK, &QueueList { queues }))
}

/// A queue's dead-letter list: jobs out of attempts, with why the last
/// one failed.
#[utoipa::path(
    get,
    path = "/_admin/queues/{queue}/dead",
    tag = "jobs",
    params(
        ("queue" = String, Path, description = "The queue"),
        ("limit" = Option<usize>, Query, description = "At most this many (default 100, at most 1000)"),
    ),
    responses(
        (status = 200, description = "Dead jobs, oldest first", body = DeadList),
        (status = 401, description = "No valid token", body = schema::ErrorBody),
        (status = 403, description = "Not an admin token", body = schema::ErrorBody),
        (status = 404, description = "Not a queue name", body = schema::ErrorBody),
        (status = 503, description = "The queue store is unavailable", body = schema::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn dead(app: &App, queue: &str, query: &str) -> Result<Response<Full<Bytes>>, HostError> {
    known_queue(queue)?;
    let mut limit = 100;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key == "limit" {
            limit = whole_number::<usize>(&key, &value)?;
        }
    }
    let jobs = app
        .queues
        .dead(queue, limit.clamp(1, MAX_LISTED))
        .await
        .map_err(unavailable)?;
    Ok(typed(StatusCode::OK, &DeadList { jobs }))
}

/// Makes a queue's dead jobs (all, or the one `job`) ready again, with
/// fresh attempts.
#[utoipa::path(
    post,
    path = "/_admin/queues/{queue}/redrive",
    tag = "jobs",
    params(
        ("queue" = String, Path, description = "The queue"),
        ("job" = Option<u64>, Query, description = "Only this dead job"),
    ),
    responses(
        (status = 200, description = "How many jobs were made ready", body = Redriven),
        (status = 401, description = "No valid token", body = schema::ErrorBody),
        (status = 403, description = "Not an admin token", body = schema::ErrorBody),
        (status = 404, description = "Not a queue name, or no such dead job", body = schema::ErrorBody),
        (status = 503, description = "The queue store is unavailable", body = schema::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn redrive(
    app: &App,
    queue: &str,
    query: &str,
) -> Result<Response<Full<Bytes>>, HostError> {
    known_queue(queue)?;
    let mut job = None;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key == "job" {
            job = Some(whole_number::<u64>(&key, &value)?);
        }
    }
    let redriven = app.queues.redrive(queue, job).await.map_err(unavailable)?;
    if let (Some(job), 0) = (job, redriven) {
        return Err(HostError::NotFound(format!(
            "queue `{queue}` has no dead job {job}"
        )));
    }
    if redriven > 0 {
        app.capabilities.queue.sent.notify_waiters();
    }
    Ok(typed(StatusCode::OK, &Redriven { redriven }))
}

/// Every schedule of every loaded droplet, with its next instant and the
/// last run any host recorded.
#[utoipa::path(
    get,
    path = "/_admin/schedules",
    tag = "jobs",
    responses(
        (status = 200, description = "Every schedule", body = ScheduleList),
        (status = 401, description = "No valid token", body = schema::ErrorBody),
        (status = 403, description = "Not an admin token", body = schema::ErrorBody),
        (status = 503, description = "The queue store is unavailable", body = schema::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn schedules(app: &App) -> Result<Response<Full<Bytes>>, HostError> {
    let runs = app.queues.schedule_runs().await.map_err(unavailable)?;
    let now = Utc::now();
    let mut schedules = Vec::new();
    for droplet in app.droplets.list() {
        for spec in &droplet.manifest.schedule {
            let next_at = CronSchedule::parse(&spec.cron, spec.timezone.as_deref())
                .ok()
                .and_then(|cron| cron.next_after(now))
                .map(|next| next.to_rfc3339_opts(SecondsFormat::Secs, true));
            let last = runs
                .iter()
                .find(|run| *run.droplet == *droplet.name && run.schedule == spec.name)
                .map(|run| LastRun {
                    instant: rfc3339(run.instant_ms),
                    finished_at: rfc3339(run.finished_at_ms),
                    status: run.status,
                    host: run.host.clone(),
                    attempt: run.attempt,
                });
            schedules.push(ScheduleView {
                droplet: droplet.name.to_string(),
                name: spec.name.clone(),
                cron: spec.cron.clone(),
                timezone: spec.timezone.clone(),
                method: spec.method.clone(),
                path: spec.path.clone(),
                next_at,
                last,
            });
        }
    }
    schedules.sort_by(|a, b| (&a.droplet, &a.name).cmp(&(&b.droplet, &b.name)));
    Ok(typed(StatusCode::OK, &ScheduleList { schedules }))
}
