//! One droplet's consumer of one queue on this host: it claims up to
//! `batch` jobs at a time (as many as the host's background slots allow),
//! calls the droplet with each, and acknowledges, retries with backoff,
//! or buries it in the dead-letter list once its attempts are spent. A
//! job the host refused before the droplet ran (overloaded, busy) is put
//! back without spending an attempt. Stopped (a new version replaced its
//! manifest, or the host shuts down), it claims no more and lets the jobs
//! it holds finish.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::call::{self, BackgroundCall, Finished};
use crate::app::App;
use crate::droplets::manifest::ConsumeSpec;
use crate::storage::queues::Job;

/// How long past a job's budget its lease lasts: the host's own work
/// around the call (waiting for a slot, reading the response, the ack).
pub const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// How often an idle consumer looks again (jobs sent by another host,
/// delays and retries coming due); a send on this host wakes it at once.
pub const IDLE_POLL: Duration = Duration::from_millis(500);

/// Claims on this host so far: each claim's holder name is unique, so a
/// late answer to a lease that expired cannot settle a later claim.
static CLAIMS: AtomicU64 = AtomicU64::new(0);

/// A holder name for one claim by this host.
pub fn holder(app: &App) -> String {
    format!(
        "{}#{}#{}",
        app.host_id,
        std::process::id(),
        CLAIMS.fetch_add(1, Ordering::Relaxed)
    )
}

/// The lease a job of `droplet` with `budget_ms` (else the droplet's own)
/// is claimed for.
pub fn lease(app: &App, droplet: &str, budget_ms: Option<u64>) -> Duration {
    let budget = budget_ms
        .or_else(|| {
            app.droplets
                .get(droplet)
                .map(|current| current.manifest.budget_ms)
        })
        .unwrap_or(crate::droplets::manifest::DEFAULT_BUDGET_MS);
    Duration::from_millis(budget) + LEASE_MARGIN
}

/// Runs `droplet`'s consumer of `spec.queue` until `stop`.
pub async fn consume(app: Arc<App>, droplet: Arc<str>, spec: ConsumeSpec, stop: CancellationToken) {
    let sent = Arc::clone(&app.capabilities.queue.sent);
    let mut running = JoinSet::new();
    let batch = spec.batch as usize;
    let mut failures = 0u32;
    loop {
        while running.try_join_next().is_some() {}
        if stop.is_cancelled() {
            break;
        }
        let room = batch.saturating_sub(running.len());
        if room == 0 {
            tokio::select! {
                _ = running.join_next() => {}
                () = stop.cancelled() => {}
            }
            continue;
        }
        let first = tokio::select! {
            permit = Arc::clone(&app.background_slots).acquire_owned() => permit,
            () = stop.cancelled() => break,
        };
        let Ok(first) = first else { break };
        let mut permits = vec![first];
        while permits.len() < room {
            match Arc::clone(&app.background_slots).try_acquire_owned() {
                Ok(permit) => permits.push(permit),
                Err(_) => break,
            }
        }
        let woken = sent.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let holder = holder(&app);
        let lease = lease(&app, &droplet, spec.budget_ms);
        let claimed = app
            .queues
            .claim(
                &spec.queue,
                &holder,
                lease,
                permits.len(),
                spec.max_attempts,
            )
            .await;
        match claimed {
            Ok(jobs) if !jobs.is_empty() => {
                failures = 0;
                for (job, permit) in jobs.into_iter().zip(permits.drain(..)) {
                    let (app, droplet, spec, holder) = (
                        Arc::clone(&app),
                        Arc::clone(&droplet),
                        spec.clone(),
                        holder.clone(),
                    );
                    running.spawn(async move {
                        run_job(&app, droplet, &spec, job, &holder).await;
                        drop(permit);
                    });
                }
            }
            Ok(_) => {
                drop(permits);
                tokio::select! {
                    () = tokio::time::sleep(IDLE_POLL) => {}
                    () = &mut woken => {}
                    () = stop.cancelled() => {}
                }
            }
            Err(err) => {
                drop(permits);
                failures = failures.saturating_add(1);
                if failures == 1 || failures.is_multiple_of(60) {
                    tracing::warn!(droplet = %droplet, queue = %spec.queue, error = %err, "cannot claim jobs; trying again each second");
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = stop.cancelled() => {}
                }
            }
        }
    }
    while running.join_next().await.is_some() {}
}

/// Calls the droplet with one job and settles it.
async fn run_job(app: &App, droplet: Arc<str>, spec: &ConsumeSpec, job: Job, holder: &str) {
    let call = BackgroundCall {
        droplet: Arc::clone(&droplet),
        method: http::Method::POST,
        path: spec.path.clone(),
        body: Bytes::from(job.payload.clone()),
        headers: vec![
            ("x-droplet-queue", job.queue.clone()),
            ("x-droplet-job-id", job.id.to_string()),
            ("x-droplet-attempt", job.attempt.to_string()),
        ],
        budget_ms: spec.budget_ms,
        kind: "job call",
    };
    let finished = call::run(app, call).await;
    let (outcome, settled) = settle(app, spec, &job, holder, &finished).await;
    metrics::counter!(
        "droplet_job_attempts_total",
        "queue" => job.queue.clone(),
        "outcome" => outcome
    )
    .increment(1);
    match settled {
        Ok(true) if outcome == "dead" => tracing::warn!(
            droplet = %droplet,
            queue = %job.queue,
            job_id = job.id,
            attempts = job.attempt,
            trace_id = %finished.trace_id,
            "a job ran out of attempts: it is in the dead-letter list"
        ),
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            droplet = %droplet,
            queue = %job.queue,
            job_id = job.id,
            "a job's lease ended before it was settled: another host may run it again"
        ),
        Err(err) => tracing::warn!(
            droplet = %droplet,
            queue = %job.queue,
            job_id = job.id,
            error = %err,
            "a job could not be settled: it runs again once its lease ends"
        ),
    }
}

/// Acknowledges, retries or buries a job after its call; the outcome's
/// name and whether the store took it.
async fn settle(
    app: &App,
    spec: &ConsumeSpec,
    job: &Job,
    holder: &str,
    finished: &Finished,
) -> (
    &'static str,
    Result<bool, crate::storage::queues::QueueError>,
) {
    let store = &app.queues;
    if finished.succeeded() {
        return ("acknowledged", store.ack(job.id, holder).await);
    }
    let error = finished
        .error
        .clone()
        .unwrap_or_else(|| format!("the droplet answered {}", finished.status));
    if !finished.delivered {
        let wait = spec.retry_after(2);
        let put_back = store.retry(job.id, holder, wait, &error, false).await;
        return ("not_delivered", put_back);
    }
    if job.attempt >= spec.max_attempts {
        return ("dead", store.bury(job.id, holder, &error).await);
    }
    let wait = spec.retry_after(job.attempt.saturating_add(1));
    (
        "retried",
        store.retry(job.id, holder, wait, &error, true).await,
    )
}
