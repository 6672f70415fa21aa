//! Per-droplet counters, kept across versions: requests by status class,
//! traps, budget overruns, calls in flight, and a window of recent calls for
//! latency percentiles and health.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// How many recent calls the latency window and the health verdict use.
const WINDOW: usize = 256;
/// Health looks at this many of the most recent calls.
const HEALTH_WINDOW: usize = 10;

/// Counters of one droplet (by name, whatever its version).
#[derive(Debug, Default)]
pub struct DropletStats {
    by_class: [AtomicU64; 5],
    traps: AtomicU64,
    budget_overruns: AtomicU64,
    in_flight: AtomicI64,
    /// Recent calls: latency and whether the droplet failed (trap or
    /// overrun). A `std` mutex: held for a push or a copy, never across an
    /// await.
    recent: Mutex<VecDeque<(Duration, bool)>>,
}

/// A snapshot of [`DropletStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
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
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Latency {
    /// Calls in the window.
    pub samples: usize,
    /// Median, in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, in milliseconds.
    pub p99_ms: f64,
}

impl DropletStats {
    /// Counts a response with `status`.
    pub fn record_status(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a trap.
    pub fn record_trap(&self) {
        self.traps.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a budget overrun.
    pub fn record_overrun(&self) {
        self.budget_overruns.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a finished call: its latency and whether the droplet failed.
    pub fn record_call(&self, latency: Duration, failed: bool) {
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() == WINDOW {
                recent.pop_front();
            }
            recent.push_back((latency, failed));
        }
    }

    /// p50 and p99 of the recent calls.
    pub fn latency(&self) -> Latency {
        let mut samples: Vec<Duration> = match self.recent.lock() {
            Ok(recent) => recent.iter().map(|(latency, _)| *latency).collect(),
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
        let last = recent.len().min(HEALTH_WINDOW);
        let failed = recent
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

    #[test]
    fn counts_by_class_and_in_flight() {
        let stats = DropletStats::default();
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
        let stats = DropletStats::default();
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
