//! Prometheus metrics: the recorder behind `GET /metrics`.
//!
//! | metric | labels | what |
//! | --- | --- | --- |
//! | `droplet_requests_total` | `droplet`, `class` | droplet calls by status class |
//! | `droplet_request_duration_seconds` | `droplet` | histogram of request latency |
//! | `droplet_budget_overruns_total` | `droplet` | calls that overran `budget_ms` |
//! | `droplet_traps_total` | `droplet` | calls that trapped |
//! | `droplet_instantiation_seconds` | | histogram of instantiation time |
//! | `droplet_kv_operations_total` | `op` | kv calls by operation |
//! | `droplet_kv_errors_total` | `op`, `kind` | kv calls that failed |
//! | `droplet_kv_flushes_total` | | group-commit flushes |
//! | `droplet_swaps_total` | | versions published |
//! | `droplet_droplets_loaded` | | droplets in the table |
//! | `droplet_registrations_total` | `outcome` | registry registrations |
//! | `droplet_rollout_share` | `droplet` | a running rollout's canary share, percent |
//! | `droplet_rollout_decisions_total` | `droplet`, `action` | rollout decisions |
//! | `droplet_recordings_total` | `droplet`, `reason` | recordings kept for replay |
//! | `droplet_recordings_dropped_total` | | recordings dropped: the writer was behind |
//! | `droplet_jobs_sent_total` | `queue` | jobs sent (duplicates by dedup key not counted) |
//! | `droplet_job_attempts_total` | `queue`, `outcome` | job calls: `acknowledged`, `retried`, `dead`, `not_delivered` |
//! | `droplet_schedule_runs_total` | `droplet`, `schedule`, `outcome` | scheduled runs: `succeeded`, `failed`, `not_delivered` |
//! | `droplet_queue_depth`, `_in_flight`, `_dead`, `_oldest_age_seconds` | `queue` | each queue, every 5 s |
//! | `droplet_queue_flushes_total` | | flushes of the queue store on sled |
//!
//! Labels name only droplets the host serves now (and fixed words, and
//! queue names, which come from manifests): `/metrics` leaves out the series
//! of removed droplets, so cardinality is bounded by the number of droplets.

use std::time::Duration;

use metrics_exporter_prometheus::BuildError;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::ops::shutdown::Shutdown;

/// Latency buckets, in seconds: 100 µs to 10 s.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Installs the process-wide recorder and starts its upkeep task, which
/// ends at `shutdown`.
pub fn install(shutdown: &Shutdown) -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_string()), BUCKETS)?
        .install_recorder()?;
    let upkeep = handle.clone();
    shutdown.spawn_until_triggered(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(5));
        loop {
            interval.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// A status's class for metrics labels: `1xx` … `5xx`.
pub fn status_class(status: u16) -> &'static str {
    ["1xx", "2xx", "3xx", "4xx", "5xx"][status_class_index(status)]
}

/// [`status_class`] as an index, 0 (`1xx`) to 4 (`5xx`), for counters kept
/// in an array by class.
pub fn status_class_index(status: u16) -> usize {
    match status / 100 {
        1 => 0,
        2 => 1,
        3 => 2,
        4 => 3,
        _ => 4,
    }
}
