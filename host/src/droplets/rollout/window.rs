//! Per-version counters a rollout judges: requests, errors and a
//! fixed-size latency histogram, kept with atomics (no lock, no allocation
//! per call). A window is the difference of two snapshots ([`Counts`]), so
//! a step is judged on what happened during it, not on totals since start.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Latency buckets: four per power of two of microseconds (a bucket is at
/// most 25 % wide), from 0 µs to about 2.4 hours.
pub const BUCKETS: usize = 128;

/// The live counters of one version on this host.
#[derive(Debug)]
pub struct VersionCounters {
    requests: AtomicU64,
    errors: AtomicU64,
    latency: [AtomicU64; BUCKETS],
}

impl Default for VersionCounters {
    fn default() -> Self {
        Self {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl VersionCounters {
    /// Counts one answered request: how long until its response head, and
    /// whether it is the version's error (a 5xx it answered, a trap, an
    /// overrun, an invalid response).
    pub fn record(&self, latency: Duration, error: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency[bucket(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// Everything counted so far.
    pub fn snapshot(&self) -> Counts {
        Counts {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            latency: self
                .latency
                .iter()
                .map(|count| count.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

/// Counts over some window: a snapshot, a difference of two, or a sum over
/// the fleet's hosts.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    /// Requests answered.
    pub requests: u64,
    /// Of which errors.
    pub errors: u64,
    /// Requests by latency bucket ([`BUCKETS`] long, or empty for none).
    pub latency: Vec<u64>,
}

impl Counts {
    /// What was counted after `earlier` (a snapshot of the same counters).
    pub fn since(&self, earlier: &Counts) -> Counts {
        Counts {
            requests: self.requests.saturating_sub(earlier.requests),
            errors: self.errors.saturating_sub(earlier.errors),
            latency: (0..self.latency.len())
                .map(|i| {
                    self.latency[i].saturating_sub(earlier.latency.get(i).copied().unwrap_or(0))
                })
                .collect(),
        }
    }

    /// Adds `other` (another host's counts of the same window).
    pub fn add(&mut self, other: &Counts) {
        self.requests += other.requests;
        self.errors += other.errors;
        if self.latency.len() < other.latency.len() {
            self.latency.resize(other.latency.len(), 0);
        }
        for (mine, theirs) in self.latency.iter_mut().zip(&other.latency) {
            *mine += theirs;
        }
    }

    /// The error rate in percent (0 with no requests).
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 * 100.0 / self.requests as f64
        }
    }

    /// The 95th percentile latency in milliseconds (the upper edge of its
    /// bucket), `None` with no requests.
    pub fn p95_ms(&self) -> Option<f64> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = total.saturating_mul(95).div_ceil(100);
        let mut seen = 0;
        for (index, count) in self.latency.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(upper_edge(index) as f64 / 1000.0);
            }
        }
        None
    }
}

/// The bucket of a latency in microseconds.
pub fn bucket(micros: u64) -> usize {
    if micros < 4 {
        return micros as usize;
    }
    let log = u64::from(63 - micros.leading_zeros());
    let sub = (micros >> (log - 2)) & 3;
    (((log - 1) * 4 + sub) as usize).min(BUCKETS - 1)
}

/// The largest latency in microseconds bucket `index` holds.
fn upper_edge(index: usize) -> u64 {
    if index < 4 {
        return index as u64;
    }
    let (log, sub) = (index as u64 / 4 + 1, index as u64 % 4);
    ((4 + sub + 1) << (log - 2)) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_rise_with_latency_and_hold_it_within_a_quarter() {
        let mut last = 0;
        for micros in (0..5000).chain([65_535, 1 << 20, 3_000_000, u64::MAX]) {
            let index = bucket(micros);
            assert!(index >= last, "{micros}");
            last = index;
            if index < BUCKETS - 1 {
                let edge = upper_edge(index);
                assert!(edge >= micros, "{micros} above its bucket's edge {edge}");
                assert!(
                    edge as f64 <= micros as f64 * 1.25 + 1.0,
                    "{micros}: {edge}"
                );
            }
        }
    }

    #[test]
    fn a_window_is_the_difference_of_two_snapshots_and_windows_add_up() {
        let counters = VersionCounters::default();
        for _ in 0..50 {
            counters.record(Duration::from_millis(1), false);
        }
        let start = counters.snapshot();
        for i in 0..100 {
            counters.record(
                Duration::from_millis(if i < 90 { 2 } else { 40 }),
                i % 10 == 0,
            );
        }
        let window = counters.snapshot().since(&start);
        assert_eq!((window.requests, window.errors), (100, 10));
        assert_eq!(window.error_rate(), 10.0);
        let p95 = window.p95_ms().unwrap();
        assert!((40.0..=50.0).contains(&p95), "{p95}");
        let mut fleet = window.clone();
        fleet.add(&window);
        assert_eq!((fleet.requests, fleet.errors), (200, 20));
        assert_eq!(fleet.p95_ms(), Some(p95));
        assert_eq!(Counts::default().p95_ms(), None);
        assert_eq!(Counts::default().error_rate(), 0.0);
    }
}
