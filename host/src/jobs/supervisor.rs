//! Follows the table of current versions: each second, every loaded
//! droplet's `[[schedule]]` and `[[consume]]` entries are compared with
//! the tasks running for them. A new entry gets its task; an entry gone
//! (or changed by a new version) has its task stopped — a consumer stops
//! claiming and lets the jobs it holds finish, so hot swap neither loses
//! nor doubles a job (the next version's task claims what is left, and
//! schedule instants are deduplicated by the store). It also refreshes
//! the queue gauges and forgets expired dedup keys.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{consumer, schedules};
use crate::app::App;
use crate::droplets::DropletState;

/// How often the table is compared with the running tasks.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// How often the queue gauges are refreshed.
const GAUGES_EVERY: Duration = Duration::from_secs(5);
/// How often expired dedup keys are forgotten.
const FORGET_EVERY: Duration = Duration::from_secs(600);

/// What one task runs: a schedule or a consumer of one droplet, as its
/// manifest says it (so a changed entry is a new task).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Task {
    Schedule { droplet: Arc<str>, spec: String },
    Consume { droplet: Arc<str>, spec: String },
}

/// Starts following the table, until the host shuts down.
pub fn spawn(app: &Arc<App>) {
    let app = Arc::clone(app);
    let shutdown = app.shutdown.clone();
    shutdown.spawn(async move { supervise(app).await });
}

async fn supervise(app: Arc<App>) {
    let mut running: HashMap<Task, CancellationToken> = HashMap::new();
    let mut gauges_at = Instant::now();
    let mut forgot_at = Instant::now();
    let mut tick = tokio::time::interval(FOLLOW_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = app.shutdown.triggered() => break,
        }
        follow(&app, &mut running);
        if gauges_at.elapsed() >= GAUGES_EVERY {
            gauges_at = Instant::now();
            refresh_gauges(&app).await;
        }
        if forgot_at.elapsed() >= FORGET_EVERY {
            forgot_at = Instant::now();
            if let Err(err) = app.queues.forget_old_keys().await {
                tracing::warn!(error = %err, "cannot forget expired dedup keys");
            }
        }
    }
    for stop in running.values() {
        stop.cancel();
    }
}

/// Starts the tasks the table wants and stops the others.
fn follow(app: &Arc<App>, running: &mut HashMap<Task, CancellationToken>) {
    let mut wanted = HashMap::new();
    for droplet in app.droplets.list() {
        if matches!(droplet.state, DropletState::Failed(_)) {
            continue;
        }
        let manifest = &droplet.manifest;
        for spec in &manifest.schedule {
            let task = Task::Schedule {
                droplet: Arc::clone(&droplet.name),
                spec: serde_json::to_string(spec).unwrap_or_default(),
            };
            wanted.insert(task, Work::Schedule(spec.clone()));
        }
        for spec in &manifest.consume {
            let task = Task::Consume {
                droplet: Arc::clone(&droplet.name),
                spec: serde_json::to_string(spec).unwrap_or_default(),
            };
            wanted.insert(task, Work::Consume(spec.clone()));
        }
    }
    running.retain(|task, stop| {
        let keep = wanted.contains_key(task);
        if !keep {
            stop.cancel();
        }
        keep
    });
    for (task, work) in wanted {
        if running.contains_key(&task) {
            continue;
        }
        let stop = app.shutdown.child_token();
        let droplet = match &task {
            Task::Schedule { droplet, .. } | Task::Consume { droplet, .. } => Arc::clone(droplet),
        };
        let app_for_task = Arc::clone(app);
        let token = stop.clone();
        match work {
            Work::Schedule(spec) => {
                app.shutdown
                    .spawn(schedules::follow(app_for_task, droplet, spec, token))
            }
            Work::Consume(spec) => {
                app.shutdown
                    .spawn(consumer::consume(app_for_task, droplet, spec, token))
            }
        }
        running.insert(task, stop);
    }
}

enum Work {
    Schedule(crate::droplets::manifest::ScheduleSpec),
    Consume(crate::droplets::manifest::ConsumeSpec),
}

/// Sets each queue's gauges from the store.
async fn refresh_gauges(app: &App) {
    let Ok(stats) = app.queues.stats().await else {
        return;
    };
    for queue in stats {
        let name = queue.queue.clone();
        metrics::gauge!("droplet_queue_depth", "queue" => name.clone()).set(queue.depth() as f64);
        metrics::gauge!("droplet_queue_in_flight", "queue" => name.clone())
            .set(queue.in_flight as f64);
        metrics::gauge!("droplet_queue_dead", "queue" => name.clone()).set(queue.dead as f64);
        metrics::gauge!("droplet_queue_oldest_age_seconds", "queue" => name).set(
            queue
                .oldest_age_ms
                .map_or(0.0, |age_ms| age_ms as f64 / 1000.0),
        );
    }
}
