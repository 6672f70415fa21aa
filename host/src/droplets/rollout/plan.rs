//! What a rollout is: its record ([`Rollout`], kept in the deployment
//! store and shared by a fleet), its thresholds, and its decisions (the
//! judgement of a step is in `verdict.rs`).

use serde::{Deserialize, Serialize};

use super::window::Counts;
use crate::droplets::manifest::RolloutSettings;

/// A rollout's steps and thresholds, every default filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Thresholds {
    /// The canary's share at each step, in percent; after the last, 100 %.
    pub steps: Vec<u8>,
    /// The least time a step lasts before the canary moves on.
    pub step_seconds: u64,
    /// Canary requests a step needs before it is judged.
    pub min_requests: u64,
    /// How far the canary's error rate may exceed the stable one's, in
    /// percentage points.
    pub max_error_rate: f64,
    /// How many times the stable p95 latency the canary's may be.
    pub max_p95_ratio: f64,
    /// A canary p95 under this is never judged slow, ms.
    pub p95_floor_ms: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            steps: vec![5, 25, 50],
            step_seconds: 30,
            min_requests: 100,
            max_error_rate: 5.0,
            max_p95_ratio: 1.5,
            p95_floor_ms: 50,
        }
    }
}

impl Thresholds {
    /// The defaults, with what `settings` (already validated) sets.
    pub fn from_settings(settings: &RolloutSettings) -> Self {
        let default = Self::default();
        Self {
            steps: settings.steps.clone().unwrap_or(default.steps),
            step_seconds: settings.step_seconds.unwrap_or(default.step_seconds),
            min_requests: settings.min_requests.unwrap_or(default.min_requests),
            max_error_rate: settings.max_error_rate.unwrap_or(default.max_error_rate),
            max_p95_ratio: settings.max_p95_ratio.unwrap_or(default.max_p95_ratio),
            p95_floor_ms: settings.p95_floor_ms.unwrap_or(default.p95_floor_ms),
        }
    }
}

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// The canary takes its step's share.
    Running,
    /// The canary became the current version.
    Promoted,
    /// The canary failed its thresholds; the stable version serves.
    RolledBack,
    /// Ended by hand, or by a deploy, rollback or removal.
    Aborted,
}

impl RolloutState {
    /// The state as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Promoted => "promoted",
            Self::RolledBack => "rolled_back",
            Self::Aborted => "aborted",
        }
    }
}

/// One version's figures over a window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Figures {
    /// Requests it answered.
    pub requests: u64,
    /// Of which errors: 5xx it answered, traps, overruns, invalid responses.
    pub errors: u64,
    /// Errors per request, in percent.
    pub error_rate: f64,
    /// 95th percentile latency to the response head, ms (`null` without
    /// requests).
    pub p95_ms: Option<f64>,
}

impl From<&Counts> for Figures {
    fn from(counts: &Counts) -> Self {
        Self {
            requests: counts.requests,
            errors: counts.errors,
            error_rate: (counts.error_rate() * 10.0).round() / 10.0,
            p95_ms: counts.p95_ms().map(|p95| (p95 * 1000.0).round() / 1000.0),
        }
    }
}

/// What a decision did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Started the rollout at its first step.
    Start,
    /// Moved the canary to the next step.
    Advance,
    /// Made the canary current.
    Promote,
    /// Sent every request to the stable version again.
    RollBack,
    /// Ended the rollout without promoting.
    Abort,
}

/// One decision, as recorded: who, when, on what figures, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Decision {
    /// What it did.
    pub action: Action,
    /// When, Unix milliseconds.
    pub at_ms: u64,
    /// The judging host's id, or `operator` for a decision by hand.
    pub by: String,
    /// The canary's share before and after, percent.
    pub from_share: u8,
    /// The share after.
    pub to_share: u8,
    /// The canary's figures over the step judged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<Figures>,
    /// The stable version's over the same window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stable: Option<Figures>,
    /// Why.
    pub reason: String,
}

/// One rollout of a canary version beside a stable one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rollout {
    /// The droplet.
    pub name: String,
    /// The version serving before the rollout.
    pub stable: String,
    /// The version being rolled out.
    pub canary: String,
    /// Where it is.
    pub state: RolloutState,
    /// The current step's index in `thresholds.steps`.
    pub step: usize,
    /// Its steps and thresholds.
    pub thresholds: Thresholds,
    /// When it started, Unix milliseconds.
    pub started_at_ms: u64,
    /// When the current step started, Unix milliseconds: with `canary`,
    /// the step's identity (hosts count each step from its start).
    pub step_started_at_ms: u64,
    /// When it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at_ms: Option<u64>,
    /// Why it ended, naming the figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Every decision, oldest first.
    pub decisions: Vec<Decision>,
    /// Bumped by every write: a write that expects an older revision is
    /// refused, so two judges cannot both decide one step.
    pub rev: u64,
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

impl Rollout {
    /// A rollout of `canary` over `stable` of `name`, at its first step.
    pub fn start(name: &str, stable: &str, canary: &str, thresholds: Thresholds, by: &str) -> Self {
        let now = now_ms();
        let first = thresholds.steps.first().copied().unwrap_or(100);
        Self {
            name: name.to_string(),
            stable: stable.to_string(),
            canary: canary.to_string(),
            state: RolloutState::Running,
            step: 0,
            started_at_ms: now,
            step_started_at_ms: now,
            ended_at_ms: None,
            reason: None,
            decisions: vec![Decision {
                action: Action::Start,
                at_ms: now,
                by: by.to_string(),
                from_share: 0,
                to_share: first,
                canary: None,
                stable: None,
                reason: format!("canary {canary} beside {stable}"),
            }],
            thresholds,
            rev: 1,
        }
    }

    /// The canary's share of requests now, percent.
    pub fn share(&self) -> u8 {
        match self.state {
            RolloutState::Running => self.thresholds.steps.get(self.step).copied().unwrap_or(100),
            RolloutState::Promoted => 100,
            RolloutState::RolledBack | RolloutState::Aborted => 0,
        }
    }

    /// Whether it still runs.
    pub fn running(&self) -> bool {
        self.state == RolloutState::Running
    }

    /// Applies `action` (decided by `by`, on `figures`, for `reason`): the
    /// next revision of this record.
    pub fn decide(
        &self,
        action: Action,
        by: &str,
        figures: Option<(Figures, Figures)>,
        reason: String,
    ) -> Rollout {
        let mut next = self.clone();
        let now = now_ms();
        let from_share = self.share();
        match action {
            Action::Start => {}
            Action::Advance => {
                next.step += 1;
                next.step_started_at_ms = now;
            }
            Action::Promote => next.state = RolloutState::Promoted,
            Action::RollBack => next.state = RolloutState::RolledBack,
            Action::Abort => next.state = RolloutState::Aborted,
        }
        if !next.running() {
            next.ended_at_ms = Some(now);
            next.reason = Some(reason.clone());
        }
        let (canary, stable) = figures.map_or((None, None), |(c, s)| (Some(c), Some(s)));
        next.decisions.push(Decision {
            action,
            at_ms: now,
            by: by.to_string(),
            from_share,
            to_share: next.share(),
            canary,
            stable,
            reason,
        });
        next.rev += 1;
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(min_requests: u64) -> Rollout {
        let thresholds = Thresholds {
            min_requests,
            step_seconds: 10,
            ..Thresholds::default()
        };
        Rollout::start("app", "1-aaaa", "2-bbbb", thresholds, "test")
    }

    #[test]
    fn a_rolled_back_canary_takes_no_share_and_says_why() {
        let failed = rollout(1).decide(Action::RollBack, "h1", None, "bad".into());
        assert_eq!((failed.share(), failed.state.as_str()), (0, "rolled_back"));
        assert_eq!(failed.reason.as_deref(), Some("bad"));
        assert!(failed.ended_at_ms.is_some());
        let last = failed.decisions.last().unwrap();
        assert_eq!((last.from_share, last.to_share, &*last.by), (5, 0, "h1"));
    }
}
