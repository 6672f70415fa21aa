//! How long a call's guest code has run: the time since it last resumed
//! (after a yield, or since the call began) less the time it spent waiting
//! in host imports meanwhile. The scheduler gates a call as long-running
//! on this, not on the time since it began: a call that waited on a slow
//! import (a durable kv write behind a flush, another droplet, an outbound
//! request) has not used the CPU while it waited, and must not queue behind
//! runaway droplets for the rest of its few microseconds of work.
//!
//! Kept with atomics (a call's hook, its epoch callback and its yield
//! futures each hold a handle; they never run at once), in nanoseconds
//! since the call began.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One call's guest clock.
#[derive(Clone)]
pub struct GuestClock(Arc<Inner>);

struct Inner {
    origin: Instant,
    /// Time spent in host imports so far.
    host: AtomicU64,
    /// When the current host import began (plus one), 0 outside any.
    entered: AtomicU64,
    /// When the guest last resumed, and `host` then.
    resumed: AtomicU64,
    host_at_resume: AtomicU64,
}

impl Default for GuestClock {
    fn default() -> Self {
        Self(Arc::new(Inner {
            origin: Instant::now(),
            host: AtomicU64::new(0),
            entered: AtomicU64::new(0),
            resumed: AtomicU64::new(0),
            host_at_resume: AtomicU64::new(0),
        }))
    }
}

impl GuestClock {
    fn now(&self) -> u64 {
        u64::try_from(self.0.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The guest calls a host import.
    pub fn entering_host(&self) {
        self.0.entered.store(self.now() + 1, Ordering::Relaxed);
    }

    /// The host import returns to the guest.
    pub fn left_host(&self) {
        let entered = self.0.entered.swap(0, Ordering::Relaxed);
        if entered != 0 {
            let spent = self.now().saturating_sub(entered - 1);
            self.0.host.fetch_add(spent, Ordering::Relaxed);
        }
    }

    /// The guest resumes after a yield.
    pub fn resumed(&self) {
        self.0.resumed.store(self.now(), Ordering::Relaxed);
        let host = self.0.host.load(Ordering::Relaxed);
        self.0.host_at_resume.store(host, Ordering::Relaxed);
    }

    /// How long the guest has run since it last resumed.
    pub fn ran_since_resume(&self) -> Duration {
        let wall = self
            .now()
            .saturating_sub(self.0.resumed.load(Ordering::Relaxed));
        let host = self
            .0
            .host
            .load(Ordering::Relaxed)
            .saturating_sub(self.0.host_at_resume.load(Ordering::Relaxed));
        Duration::from_nanos(wall.saturating_sub(host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_in_the_host_is_not_guest_time() {
        // Margins wide enough for a loaded machine: 200 ms in the host
        // against a bound of 100 ms of guest time around it.
        let clock = GuestClock::default();
        std::thread::sleep(Duration::from_millis(5));
        let ran = clock.ran_since_resume();
        assert!(ran >= Duration::from_millis(5), "{ran:?}");
        clock.resumed();
        clock.entering_host();
        std::thread::sleep(Duration::from_millis(200));
        clock.left_host();
        let ran = clock.ran_since_resume();
        assert!(
            ran < Duration::from_millis(100),
            "waiting in the host: {ran:?}"
        );
        clock.left_host();
        let ran = clock.ran_since_resume();
        assert!(
            ran < Duration::from_millis(100),
            "one leave per entry: {ran:?}"
        );
    }
}
