//! One droplet's schedule on this host. Each instant is a job of the
//! schedule's own queue (`@schedule/{droplet}/{name}`), sent by every
//! host that follows the schedule with the instant as its dedup key: the
//! one whose send went in holds it and runs it at once, the others' sends
//! are duplicates. If that host goes away mid-run, the job's lease ends
//! and any host following the schedule claims it again and reruns it with
//! the same `x-droplet-scheduled-at`. A run ends the instant whatever the
//! droplet answered (a failure is recorded, not retried); its last run is
//! kept for operators.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use tokio_util::sync::CancellationToken;

use super::call::{self, BackgroundCall};
use super::consumer::{holder, lease};
use crate::app::App;
use crate::droplets::jobs_spec::{CatchUp, CronSchedule, ScheduleSpec};
use crate::droplets::manifest::DEFAULT_BUDGET_MS;
use crate::storage::queues::{Job, NewJob, ScheduleRun};

/// How many times an instant is run again after its host went away
/// before it is given up (a run that crashes its host each time).
pub const MAX_RUNS: u32 = 5;
/// The most instants one pass fires, when the host was stalled.
const MAX_FIRED_AT_ONCE: usize = 60;

/// The queue that holds `droplet`'s `schedule` instants. Not a name a
/// droplet can send to (`@` is not allowed in queue names).
pub fn queue_name(droplet: &str, schedule: &str) -> String {
    format!("@schedule/{droplet}/{schedule}")
}

/// An instant in milliseconds since the Unix epoch.
fn now_ms_of(instant: DateTime<Utc>) -> u64 {
    u64::try_from(instant.timestamp_millis()).unwrap_or_default()
}

/// An instant as the droplet's `x-droplet-scheduled-at` says it.
pub fn instant_text(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Follows `droplet`'s `spec` until `stop`: fires each instant, and
/// reruns those whose host went away.
pub async fn follow(app: Arc<App>, droplet: Arc<str>, spec: ScheduleSpec, stop: CancellationToken) {
    let Ok(cron) = CronSchedule::parse(&spec.cron, spec.timezone.as_deref()) else {
        // Checked when the manifest loaded: a version with a bad one never serves.
        return;
    };
    let schedule = Schedule {
        queue: queue_name(&droplet, &spec.name),
        app,
        droplet,
        spec,
    };
    let mut after = Utc::now();
    if schedule.spec.catch_up == CatchUp::Latest {
        schedule.catch_up(&cron, after).await;
    }
    loop {
        let now = Utc::now();
        let mut fired = 0;
        while let Some(next) = cron.next_after(after).filter(|next| *next <= now) {
            if fired < MAX_FIRED_AT_ONCE {
                schedule.fire(next).await;
                fired += 1;
            }
            after = next;
        }
        schedule.rerun_abandoned().await;
        let wait = cron
            .next_after(after)
            .and_then(|next| (next - Utc::now()).to_std().ok())
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs(1));
        tokio::select! {
            () = tokio::time::sleep(wait.max(Duration::from_millis(5))) => {}
            () = stop.cancelled() => return,
        }
    }
}

struct Schedule {
    app: Arc<App>,
    droplet: Arc<str>,
    spec: ScheduleSpec,
    queue: String,
}

impl Schedule {
    /// With `catch_up = "latest"`: the last instant, if no host ran it.
    async fn catch_up(&self, cron: &CronSchedule, now: DateTime<Utc>) {
        let Some(latest) = cron.latest_at_or_before(now) else {
            return;
        };
        let last = match self.app.queues.schedule_runs().await {
            Ok(runs) => runs
                .into_iter()
                .find(|run| *run.droplet == *self.droplet && run.schedule == self.spec.name)
                .map(|run| run.instant_ms),
            Err(err) => {
                tracing::warn!(droplet = %self.droplet, schedule = %self.spec.name, error = %err, "cannot read the schedule's last run: no catch-up");
                return;
            }
        };
        if last.is_none_or(|instant_ms| instant_ms < now_ms_of(latest)) {
            self.fire(latest).await;
        }
    }

    fn lease(&self) -> Duration {
        lease(&self.app, &self.droplet, self.spec.budget_ms)
    }

    /// Sends `instant`'s job, held by this host; runs it if the send went
    /// in (no other host had sent it).
    async fn fire(&self, instant: DateTime<Utc>) {
        let key = now_ms_of(instant).to_string();
        let holder = holder(&self.app);
        let job = NewJob {
            queue: &self.queue,
            payload: key.as_bytes(),
            delay: Duration::ZERO,
            dedup_key: Some(&key),
            hold: Some((&holder, self.lease())),
        };
        match self.app.queues.send(job).await {
            Ok(sent) if !sent.duplicate => {
                let job = Job {
                    id: sent.id,
                    queue: self.queue.clone(),
                    payload: key.into_bytes(),
                    attempt: 1,
                    enqueued_at_ms: crate::storage::queues::store::now_ms(),
                };
                self.spawn_run(job, holder);
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(droplet = %self.droplet, schedule = %self.spec.name, instant = %instant_text(instant), error = %err, "cannot fire a scheduled instant");
            }
        }
    }

    /// Claims an instant whose host went away during its run, if any.
    async fn rerun_abandoned(&self) {
        let holder = holder(&self.app);
        let claimed = self
            .app
            .queues
            .claim(&self.queue, &holder, self.lease(), 1, MAX_RUNS)
            .await;
        if let Ok(jobs) = claimed {
            for job in jobs {
                self.spawn_run(job, holder.clone());
            }
        }
    }

    fn spawn_run(&self, job: Job, holder: String) {
        let (app, droplet, spec) = (
            Arc::clone(&self.app),
            Arc::clone(&self.droplet),
            self.spec.clone(),
        );
        tokio::spawn(async move { run(&app, droplet, &spec, job, &holder).await });
    }
}

/// Runs one instant and records it.
async fn run(app: &App, droplet: Arc<str>, spec: &ScheduleSpec, job: Job, holder: &str) {
    let instant_ms: u64 = std::str::from_utf8(&job.payload)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_default();
    let instant = DateTime::<Utc>::from_timestamp_millis(i64::try_from(instant_ms).unwrap_or(0))
        .unwrap_or_default();
    let Ok(_permit) = Arc::clone(&app.background_slots).acquire_owned().await else {
        return;
    };
    let call = BackgroundCall {
        droplet: Arc::clone(&droplet),
        method: http::Method::from_bytes(spec.method.as_bytes()).unwrap_or(http::Method::POST),
        path: spec.path.clone(),
        body: bytes::Bytes::new(),
        headers: vec![
            ("x-droplet-schedule", spec.name.clone()),
            ("x-droplet-scheduled-at", instant_text(instant)),
        ],
        budget_ms: spec.budget_ms.or(Some(
            app.droplets
                .get(&droplet)
                .map_or(DEFAULT_BUDGET_MS, |current| current.manifest.budget_ms),
        )),
        kind: "scheduled call",
    };
    let finished = call::run(app, call).await;
    let store = &app.queues;
    let settled = if finished.delivered {
        store.ack(job.id, holder).await
    } else {
        store
            .retry(
                job.id,
                holder,
                Duration::from_millis(200),
                finished.error.as_deref().unwrap_or("not delivered"),
                false,
            )
            .await
    };
    let outcome = match (finished.delivered, finished.succeeded()) {
        (false, _) => "not_delivered",
        (true, true) => "succeeded",
        (true, false) => "failed",
    };
    metrics::counter!(
        "droplet_schedule_runs_total",
        "droplet" => droplet.to_string(),
        "schedule" => spec.name.clone(),
        "outcome" => outcome
    )
    .increment(1);
    if let Err(err) = settled {
        tracing::warn!(droplet = %droplet, schedule = %spec.name, error = %err, "a scheduled run could not be settled: it runs again once its lease ends");
    }
    if finished.delivered {
        let run = ScheduleRun {
            droplet: droplet.to_string(),
            schedule: spec.name.clone(),
            instant_ms,
            finished_at_ms: crate::storage::queues::store::now_ms(),
            status: finished.status,
            host: app.host_id.clone(),
            attempt: job.attempt,
        };
        if let Err(err) = store.schedule_ran(&run).await {
            tracing::warn!(droplet = %droplet, schedule = %spec.name, error = %err, "cannot record a scheduled run");
        }
    }
}
