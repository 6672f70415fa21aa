//! A droplet's per-second traffic of the last five minutes (the dashboard's
//! charts): a ring of one-second buckets, written by every call and read
//! without stopping the writers.

use std::sync::OnceLock;
use std::time::Instant;

/// Seconds of history the per-second series keeps.
pub const SERIES_SECONDS: usize = 300;

/// Latency buckets of one second's histogram: exact below 8 µs, then four
/// per power of two (at most 25 % wide) up to 2^28 µs (4.5 minutes).
pub(crate) const BUCKETS: usize = 8 + 4 * 26;

/// One finished second of a droplet's traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Point {
    /// Calls that finished in that second.
    pub requests: u32,
    /// Responses with a 5xx status.
    pub errors: u32,
    /// The 99th percentile of those calls' latency, in microseconds (the
    /// upper edge of its histogram bucket; 0 without calls).
    pub p99_us: u32,
}

/// The per-second ring: the second being counted and the finished ones.
#[derive(Debug)]
pub(crate) struct Series {
    /// The second (on [`clock`]) being counted.
    pub(crate) now: u64,
    pub(crate) requests: u32,
    pub(crate) errors: u32,
    pub(crate) histogram: [u32; BUCKETS],
    /// Finished seconds, at `second % SERIES_SECONDS`.
    pub(crate) history: [Point; SERIES_SECONDS],
}

/// Bytes one droplet's per-second series takes once it has traffic.
pub const SERIES_BYTES: usize = std::mem::size_of::<Series>();

/// Whole seconds since the first time anyone asked: the series' clock.
pub(crate) fn clock() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_secs()
}

pub(crate) fn bucket(micros: u64) -> usize {
    if micros < 8 {
        return micros as usize;
    }
    let log = 63 - u64::from(micros.leading_zeros());
    let sub = (micros >> (log - 2)) & 3;
    (8 + (log as usize - 3) * 4 + sub as usize).min(BUCKETS - 1)
}

/// The largest latency (µs) bucket `index` holds.
pub(crate) fn bucket_top(index: usize) -> u64 {
    if index < 8 {
        return index as u64;
    }
    let (log, sub) = ((index - 8) / 4 + 3, (index - 8) % 4);
    ((4 + sub as u64 + 1) << (log - 2)) - 1
}

impl Series {
    pub(crate) fn new(now: u64) -> Self {
        Self {
            now,
            requests: 0,
            errors: 0,
            histogram: [0; BUCKETS],
            history: [Point::default(); SERIES_SECONDS],
        }
    }

    /// Moves the counting on to `second`: finishes the current one and
    /// zeroes the seconds nobody called in.
    pub(crate) fn advance(&mut self, second: u64) {
        if second <= self.now {
            return;
        }
        self.history[(self.now % SERIES_SECONDS as u64) as usize] = Point {
            requests: self.requests,
            errors: self.errors,
            p99_us: self.p99_us(),
        };
        let idle = (second - self.now - 1).min(SERIES_SECONDS as u64);
        for gap in 1..=idle {
            self.history[((self.now + gap) % SERIES_SECONDS as u64) as usize] = Point::default();
        }
        self.now = second;
        self.requests = 0;
        self.errors = 0;
        self.histogram = [0; BUCKETS];
    }

    pub(crate) fn p99_us(&self) -> u32 {
        if self.requests == 0 {
            return 0;
        }
        let rank = (u64::from(self.requests) * 99).div_ceil(100);
        let mut seen = 0u64;
        for (index, count) in self.histogram.iter().enumerate() {
            seen += u64::from(*count);
            if seen >= rank {
                return u32::try_from(bucket_top(index)).unwrap_or(u32::MAX);
            }
        }
        0
    }

    /// The last `seconds` finished seconds, oldest first (zeros before the
    /// clock began).
    pub(crate) fn points(&self, seconds: usize) -> Vec<Point> {
        let seconds = seconds.min(SERIES_SECONDS) as u64;
        let before_start = seconds.saturating_sub(self.now) as usize;
        let mut points = vec![Point::default(); before_start];
        points.extend(
            (self.now.saturating_sub(seconds)..self.now)
                .map(|second| self.history[(second % SERIES_SECONDS as u64) as usize]),
        );
        points
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_at_most_a_quarter_wide() {
        let mut last = 0;
        for micros in 0..2_000_000u64 {
            let index = bucket(micros);
            assert!(index >= last, "{micros}");
            assert!(micros <= bucket_top(index), "{micros} above bucket {index}");
            if micros >= 8 {
                assert!(bucket_top(index) <= micros + micros / 4, "{micros}");
            }
            last = index;
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn the_series_costs_a_droplet_under_4_kib() {
        // The dashboard's memory per droplet with traffic: five minutes of
        // seconds plus the second being counted.
        const { assert!(SERIES_BYTES <= 4096) };
        println!("series: {SERIES_BYTES} bytes per droplet");
    }
}
