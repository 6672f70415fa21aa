//! Per-droplet counters, kept across versions: requests by status class,
//! traps, budget overruns, calls in flight, a window of recent calls for
//! latency percentiles and health, and a per-second series of the last five
//! minutes for the dashboard.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::series::{Point, SERIES_SECONDS, Series, bucket, clock};

/// How many recent calls the latency window and the health verdict use.
const WINDOW: usize = 256;
/// Health looks at this many of the most recent calls.
const HEALTH_WINDOW: usize = 10;

/// Counters of one droplet (by name, whatever its version).
#[derive(Debug)]
pub struct DropletStats {
    /// The droplet's name: its metrics' `droplet` label.
    name: Arc<str>,
    /// Its Prometheus series, each looked up in the recorder once, on first
    /// use (so a droplet without traffic has none), not on every request.
    metrics: Handles,
    by_class: [AtomicU64; 5],
    traps: AtomicU64,
    budget_overruns: AtomicU64,
    in_flight: AtomicI64,
    /// Recent calls and the per-second series. A `std` mutex: held for a
    /// push or a copy, never across an await; one lock per call (and one
    /// more for a 5xx answer).
    recent: Mutex<Recent>,
}

/// A droplet's handles into the process's metrics recorder.
#[derive(Debug, Default)]
struct Handles {
    /// `droplet_requests_total`, by status class (1xx … 5xx).
    requests: [OnceLock<metrics::Counter>; 5],
    duration: OnceLock<metrics::Histogram>,
    overruns: OnceLock<metrics::Counter>,
    traps: OnceLock<metrics::Counter>,
}

/// What [`DropletStats`] keeps under its one lock.
#[derive(Debug, Default)]
struct Recent {
    /// The last [`WINDOW`] calls: latency and whether the droplet failed
    /// (trap or overrun).
    calls: VecDeque<(Duration, bool)>,
    /// Allocated on the first call, so an idle droplet costs nothing here.
    series: Option<Box<Series>>,
}

/// A snapshot of [`DropletStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct StatsSnapshot {
    /// Responses 1xx..5xx, by class.
    pub requests: [u64; 5],
    /// Calls that trapped.
    pub traps: u64,
    /// Calls that overran their budget.
    pub budget_overruns: u64,
    /// Calls running now.
    pub in_flight: i64,
}

/// Latency percentiles over the recent window.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Latency {
    /// Calls in the window.
    pub samples: usize,
    /// Median, in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, in milliseconds.
    pub p99_ms: f64,
}

impl DropletStats {
    /// No calls yet, for the droplet called `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            metrics: Handles::default(),
            by_class: Default::default(),
            traps: AtomicU64::new(0),
            budget_overruns: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            recent: Mutex::default(),
        }
    }

    /// Counts a response with `status`, here and in
    /// `droplet_requests_total`.
    pub fn record_status(&self, status: u16) {
        let class = crate::ops::metrics::status_class_index(status);
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        self.metrics.requests[class]
            .get_or_init(|| {
                let class = crate::ops::metrics::status_class(status);
                metrics::counter!("droplet_requests_total", "droplet" => Arc::clone(&self.name), "class" => class)
            })
            .increment(1);
        if status >= 500
            && let Ok(mut recent) = self.recent.lock()
        {
            let second = clock();
            let series = recent
                .series
                .get_or_insert_with(|| Box::new(Series::new(second)));
            series.advance(second);
            series.errors += 1;
        }
    }

    /// Records a request's whole time in the host, in
    /// `droplet_request_duration_seconds`.
    pub fn record_duration(&self, duration: Duration) {
        self.metrics
            .duration
            .get_or_init(|| metrics::histogram!("droplet_request_duration_seconds", "droplet" => Arc::clone(&self.name)))
            .record(duration.as_secs_f64());
    }

    /// Counts a trap, here and in `droplet_traps_total`.
    pub fn record_trap(&self) {
        self.traps.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .traps
            .get_or_init(
                || metrics::counter!("droplet_traps_total", "droplet" => Arc::clone(&self.name)),
            )
            .increment(1);
    }

    /// Counts a budget overrun, here and in `droplet_budget_overruns_total`.
    pub fn record_overrun(&self) {
        self.budget_overruns.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .overruns
            .get_or_init(|| metrics::counter!("droplet_budget_overruns_total", "droplet" => Arc::clone(&self.name)))
            .increment(1);
    }

    /// Records a finished call: its latency and whether the droplet failed.
    pub fn record_call(&self, latency: Duration, failed: bool) {
        let second = clock();
        if let Ok(mut recent) = self.recent.lock() {
            if recent.calls.len() == WINDOW {
                recent.calls.pop_front();
            }
            recent.calls.push_back((latency, failed));
            let series = recent
                .series
                .get_or_insert_with(|| Box::new(Series::new(second)));
            series.advance(second);
            series.requests += 1;
            series.histogram[bucket(latency.as_micros() as u64)] += 1;
        }
    }

    /// The last `seconds` finished seconds (at most [`SERIES_SECONDS`]),
    /// oldest first; seconds without calls are zeros.
    pub fn series(&self, seconds: usize) -> Vec<Point> {
        let second = clock();
        if let Ok(mut recent) = self.recent.lock()
            && let Some(series) = recent.series.as_mut()
        {
            series.advance(second);
            return series.points(seconds);
        }
        vec![Point::default(); seconds.min(SERIES_SECONDS)]
    }

    /// p50 and p99 of the recent calls.
    pub fn latency(&self) -> Latency {
        let mut samples: Vec<Duration> = match self.recent.lock() {
            Ok(recent) => recent.calls.iter().map(|(latency, _)| *latency).collect(),
            Err(_) => return Latency::default(),
        };
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort();
        // Milliseconds to the microsecond: no float noise in the JSON.
        let at = |q: f64| {
            let sample = samples[((samples.len() - 1) as f64 * q).round() as usize];
            sample.as_micros() as f64 / 1e3
        };
        Latency {
            samples: samples.len(),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
        }
    }

    /// Whether most of the last calls (at least three) trapped or overran.
    pub fn failing(&self) -> bool {
        let Ok(recent) = self.recent.lock() else {
            return false;
        };
        let last = recent.calls.len().min(HEALTH_WINDOW);
        let failed = recent
            .calls
            .iter()
            .rev()
            .take(last)
            .filter(|(_, failed)| *failed)
            .count();
        last >= 3 && failed * 2 > last
    }

    /// Marks a call as running until the guard drops.
    pub fn enter(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            requests: std::array::from_fn(|class| self.by_class[class].load(Ordering::Relaxed)),
            traps: self.traps.load(Ordering::Relaxed),
            budget_overruns: self.budget_overruns.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
        }
    }
}

/// A call in flight; counted down when dropped.
pub struct InFlight<'a>(&'a DropletStats);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::droplets::series::SERIES_SECONDS;

    #[test]
    fn series_finishes_seconds_and_zeroes_idle_ones() {
        let mut series = Series::new(10);
        for micros in 1..=100 {
            series.requests += 1;
            series.histogram[bucket(micros * 1000)] += 1;
        }
        series.errors = 3;
        series.advance(11);
        series.requests = 1;
        series.advance(14);
        let points = series.points(4);
        assert_eq!(points.len(), 4);
        assert_eq!(points[0].requests, 100);
        assert_eq!(points[0].errors, 3);
        // The 99th of 1..=100 ms, to its bucket's 25 %.
        assert!((99_000..=124_000).contains(&points[0].p99_us), "{points:?}");
        assert_eq!(points[1].requests, 1);
        assert_eq!(points[2], Point::default());
        assert_eq!(points[3], Point::default());
        // A long silence clears the whole ring.
        series.advance(14 + 2 * SERIES_SECONDS as u64);
        assert!(
            series
                .points(SERIES_SECONDS)
                .iter()
                .all(|p| p.requests == 0)
        );
    }

    #[test]
    fn counts_by_class_and_in_flight() {
        let stats = DropletStats::new("test");
        stats.record_status(200);
        stats.record_status(204);
        stats.record_status(503);
        {
            let _call = stats.enter();
            assert_eq!(stats.snapshot().in_flight, 1);
        }
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.requests, [0, 2, 0, 0, 1]);
        assert_eq!(snapshot.in_flight, 0);
    }

    #[test]
    fn latency_window_and_health() {
        let stats = DropletStats::new("test");
        assert_eq!(stats.latency().samples, 0);
        for ms in 1..=100 {
            stats.record_call(Duration::from_millis(ms), false);
        }
        let latency = stats.latency();
        assert_eq!(latency.samples, 100);
        assert!((latency.p50_ms - 50.0).abs() <= 1.0, "{latency:?}");
        assert!((latency.p99_ms - 99.0).abs() <= 1.0, "{latency:?}");
        assert!(!stats.failing());
        for _ in 0..6 {
            stats.record_call(Duration::from_millis(50), true);
        }
        assert!(stats.failing());
        for _ in 0..10 {
            stats.record_call(Duration::from_millis(1), false);
        }
        assert!(!stats.failing());
    }
}
