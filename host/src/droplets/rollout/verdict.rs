//! The one judgement of a rollout's step ([`judge`]): a pure function of
//! the record, both versions' counts over the step and the clock, so that
//! whichever host judges decides the same.

use super::plan::{Action, Rollout};
use super::window::Counts;

/// What the judge makes of a step.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Not enough traffic or time yet.
    Hold,
    /// Within thresholds: the next step (or the promotion, after the last).
    Pass(Action, String),
    /// Out of thresholds, saying which figures.
    Fail(String),
}

/// Judges the current step of `rollout` on the canary's and the stable
/// version's counts over it, `now_ms` being the clock. A canary out of its
/// thresholds fails as soon as it has `min_requests`; one within them
/// moves on once the step has also lasted `step_seconds`.
pub fn judge(rollout: &Rollout, canary: &Counts, stable: &Counts, now_ms: u64) -> Verdict {
    let limits = &rollout.thresholds;
    if !rollout.running() || canary.requests < limits.min_requests {
        return Verdict::Hold;
    }
    let (canary_rate, stable_rate) = (canary.error_rate(), stable.error_rate());
    if canary_rate > stable_rate + limits.max_error_rate {
        return Verdict::Fail(format!(
            "error rate {canary_rate:.1} % vs {stable_rate:.1} % over {} requests (at most {} points more)",
            canary.requests, limits.max_error_rate
        ));
    }
    if let (Some(canary_p95), Some(stable_p95)) = (canary.p95_ms(), stable.p95_ms()) {
        let allowed = (stable_p95 * limits.max_p95_ratio).max(limits.p95_floor_ms as f64);
        if canary_p95 > allowed {
            return Verdict::Fail(format!(
                "p95 latency {canary_p95:.1} ms vs {stable_p95:.1} ms over {} requests (at most {allowed:.1} ms)",
                canary.requests
            ));
        }
    }
    let lasted = now_ms.saturating_sub(rollout.step_started_at_ms);
    if lasted < limits.step_seconds.saturating_mul(1000) {
        return Verdict::Hold;
    }
    let figures = format!(
        "error rate {canary_rate:.1} % vs {stable_rate:.1} % over {} requests",
        canary.requests
    );
    if rollout.step + 1 < limits.steps.len() {
        let next = limits.steps[rollout.step + 1];
        Verdict::Pass(Action::Advance, format!("{figures}; on to {next} %"))
    } else {
        Verdict::Pass(Action::Promote, format!("{figures}; every step passed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::droplets::rollout::plan::{RolloutState, Thresholds, now_ms};
    use crate::droplets::rollout::window::VersionCounters;
    use std::time::Duration;

    fn counts(requests: u64, errors: u64, millis: u64) -> Counts {
        let counters = VersionCounters::default();
        for i in 0..requests {
            counters.record(Duration::from_millis(millis), i < errors);
        }
        counters.snapshot()
    }

    fn rollout(min_requests: u64) -> Rollout {
        let thresholds = Thresholds {
            min_requests,
            step_seconds: 10,
            ..Thresholds::default()
        };
        Rollout::start("app", "1-aaaa", "2-bbbb", thresholds, "test")
    }

    #[test]
    fn a_step_holds_until_it_has_the_traffic_and_the_time_then_moves_on() {
        let rollout = rollout(100);
        let start = rollout.step_started_at_ms;
        let stable = counts(1000, 0, 2);
        assert_eq!(
            judge(&rollout, &counts(99, 0, 2), &stable, start + 60_000),
            Verdict::Hold
        );
        assert_eq!(
            judge(&rollout, &counts(100, 0, 2), &stable, start + 9_000),
            Verdict::Hold
        );
        let Verdict::Pass(Action::Advance, reason) =
            judge(&rollout, &counts(100, 0, 2), &stable, start + 10_000)
        else {
            panic!("should advance")
        };
        assert!(reason.contains("on to 25 %"), "{reason}");
        let mut last = rollout.clone();
        for share in [25, 50] {
            last = last.decide(Action::Advance, "test", None, String::new());
            assert_eq!(last.share(), share);
        }
        let verdict = judge(&last, &counts(100, 0, 2), &stable, now_ms() + 10_000);
        assert!(
            matches!(verdict, Verdict::Pass(Action::Promote, _)),
            "{verdict:?}"
        );
        let promoted = last.decide(Action::Promote, "test", None, "done".into());
        assert_eq!(
            (promoted.share(), promoted.state),
            (100, RolloutState::Promoted)
        );
        assert_eq!(promoted.rev, rollout.rev + 3);
        assert_eq!(promoted.decisions.len(), 4);
        assert_eq!(
            judge(&promoted, &counts(100, 0, 2), &stable, u64::MAX),
            Verdict::Hold
        );
    }

    #[test]
    fn a_canary_out_of_its_thresholds_fails_at_once_naming_the_figures() {
        let rollout = rollout(20);
        let start = rollout.step_started_at_ms;
        let Verdict::Fail(reason) =
            judge(&rollout, &counts(212, 66, 2), &counts(1000, 4, 2), start)
        else {
            panic!("errors should fail")
        };
        assert_eq!(
            reason,
            "error rate 31.1 % vs 0.4 % over 212 requests (at most 5 points more)"
        );
        let Verdict::Fail(reason) =
            judge(&rollout, &counts(50, 0, 200), &counts(500, 0, 20), start)
        else {
            panic!("slowness should fail")
        };
        assert!(reason.starts_with("p95 latency"), "{reason}");
        // Under the floor, slower is not slow.
        let fast = judge(
            &rollout,
            &counts(50, 0, 20),
            &counts(500, 0, 2),
            start + 10_000,
        );
        assert!(
            matches!(fast, Verdict::Pass(Action::Advance, _)),
            "{fast:?}"
        );
    }
}
