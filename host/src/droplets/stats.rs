//! Per-droplet counters, kept across versions: requests by status class,
//! traps, budget overruns and calls in flight.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Counters of one droplet (by name, whatever its version).
#[derive(Debug, Default)]
pub struct DropletStats {
    by_class: [AtomicU64; 5],
    traps: AtomicU64,
    budget_overruns: AtomicU64,
    in_flight: AtomicI64,
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
}
