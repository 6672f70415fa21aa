//! The outbound metrics of one droplet version:
//! `droplet_outbound_requests_total{droplet,allowed,class}` and
//! `droplet_outbound_duration_seconds{droplet}`, each series looked up in
//! the recorder once, on its first use, rather than on every request (a
//! lookup builds its labels and hashes them: about 2 µs a request).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::allow::Allowlist;
use crate::ops::metrics::status_class_index;

/// How one outbound request ended, for its `class` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered with this status.
    Status(u16),
    /// Not answered within the call's deadline.
    Timeout,
    /// Failed otherwise.
    Error,
    /// Refused: the call had sent `max_outbound_requests` already.
    OverLimit,
}

/// One label per [`Outcome`], in the order of [`Outcome::index`].
const CLASSES: [&str; 8] = [
    "1xx",
    "2xx",
    "3xx",
    "4xx",
    "5xx",
    "timeout",
    "error",
    "over_limit",
];

impl Outcome {
    fn index(self) -> usize {
        match self {
            Outcome::Status(status) => status_class_index(status),
            Outcome::Timeout => 5,
            Outcome::Error => 6,
            Outcome::OverLimit => 7,
        }
    }
}

/// One entry's counters, by [`Outcome::index`].
type ByClass = [OnceLock<metrics::Counter>; CLASSES.len()];

/// A droplet version's outbound series; the `droplet` label is the name
/// of the first call that counts (a version belongs to one droplet).
#[derive(Debug, Default)]
pub struct OutboundSeries {
    /// Each allowlist entry (its text: the `allowed` label) and its
    /// counters, by class.
    entries: Box<[(Arc<str>, ByClass)]>,
    /// Requests to a destination no entry allows.
    denied: OnceLock<metrics::Counter>,
    duration: OnceLock<metrics::Histogram>,
}

impl OutboundSeries {
    /// No series yet for the entries of `allowed`.
    pub fn new(allowed: &Allowlist) -> Self {
        Self {
            entries: allowed
                .labels()
                .map(|label| (Arc::clone(label), Default::default()))
                .collect(),
            ..Self::default()
        }
    }

    /// Counts a request that entry `entry` allowed (its index in the
    /// allowlist) and that ended with `outcome`, and its time when it was
    /// sent.
    pub fn count(
        &self,
        droplet: &Arc<str>,
        entry: usize,
        outcome: Outcome,
        elapsed: Option<Duration>,
    ) {
        if let Some((label, counters)) = self.entries.get(entry) {
            let index = outcome.index();
            counters[index]
                .get_or_init(|| {
                    metrics::counter!(
                        "droplet_outbound_requests_total",
                        "droplet" => Arc::clone(droplet),
                        "allowed" => Arc::clone(label),
                        "class" => CLASSES[index]
                    )
                })
                .increment(1);
        }
        if let Some(elapsed) = elapsed {
            self.duration
                .get_or_init(|| {
                    metrics::histogram!(
                        "droplet_outbound_duration_seconds",
                        "droplet" => Arc::clone(droplet)
                    )
                })
                .record(elapsed.as_secs_f64());
        }
    }

    /// Counts a request to a destination no entry allows.
    pub fn denied(&self, droplet: &Arc<str>) {
        self.denied
            .get_or_init(|| {
                metrics::counter!(
                    "droplet_outbound_requests_total",
                    "droplet" => Arc::clone(droplet),
                    "allowed" => "denied",
                    "class" => "denied"
                )
            })
            .increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::metrics::status_class;

    #[test]
    fn every_outcome_has_the_label_it_had() {
        for (outcome, label) in [
            (Outcome::Status(101), "1xx"),
            (Outcome::Status(200), "2xx"),
            (Outcome::Status(308), "3xx"),
            (Outcome::Status(404), "4xx"),
            (Outcome::Status(503), "5xx"),
            (Outcome::Status(999), "5xx"),
            (Outcome::Status(99), "5xx"),
            (Outcome::Timeout, "timeout"),
            (Outcome::Error, "error"),
            (Outcome::OverLimit, "over_limit"),
        ] {
            let index = outcome.index();
            assert_eq!(CLASSES[index], label, "{outcome:?}");
            if let Outcome::Status(status) = outcome {
                assert_eq!(status_class(status), label);
            }
        }
    }

    #[test]
    fn an_entry_past_the_allowlist_counts_nothing() {
        let allowed = Allowlist::parse(&["https://example.com".to_string()]).unwrap_or_default();
        let series = OutboundSeries::new(&allowed);
        let droplet: Arc<str> = "d".into();
        series.count(&droplet, 5, Outcome::Status(200), None);
        assert!(series.entries[0].1.iter().all(|c| c.get().is_none()));
        series.count(&droplet, 0, Outcome::Status(200), None);
        assert!(series.entries[0].1[1].get().is_some());
    }
}
