//! The manifest's `[rollout]` table: how a canary deploy of a version is
//! judged. A leaf, like [`super::manifest`], which re-exports it.

use serde::Deserialize;

use super::manifest_rules::{MAX_BUDGET_MS, ManifestError};

/// The `[rollout]` table: a canary deploy's steps and thresholds. Each
/// field left out takes its default; `droplet deploy --canary`'s flags
/// override each one.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutSettings {
    /// The canary's share of requests at each step, in percent, rising,
    /// each between 1 and 99 (after the last, 100 %: promoted).
    /// Default `[5, 25, 50]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<u8>>,
    /// The least time a step lasts before the canary may move on, in
    /// seconds. Default 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_seconds: Option<u64>,
    /// The canary requests a step needs before it is judged. Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u64>,
    /// How far the canary's error rate may exceed the stable version's, in
    /// percentage points. Default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<f64>,
    /// How many times the stable version's p95 latency the canary's may
    /// be. Default 1.5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p95_ratio: Option<f64>,
    /// A canary p95 under this many milliseconds is never judged slow.
    /// Default 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95_floor_ms: Option<u64>,
}

/// The largest `step_seconds`: a day.
pub const MAX_STEP_SECONDS: u64 = 86_400;
/// The largest `min_requests`.
pub const MAX_MIN_REQUESTS: u64 = 10_000_000;
/// The most steps a rollout may have.
pub const MAX_STEPS: usize = 20;

impl RolloutSettings {
    /// `self`, with every field `over` sets replacing it.
    pub fn overridden_by(&self, over: &RolloutSettings) -> RolloutSettings {
        RolloutSettings {
            steps: over.steps.clone().or_else(|| self.steps.clone()),
            step_seconds: over.step_seconds.or(self.step_seconds),
            min_requests: over.min_requests.or(self.min_requests),
            max_error_rate: over.max_error_rate.or(self.max_error_rate),
            max_p95_ratio: over.max_p95_ratio.or(self.max_p95_ratio),
            p95_floor_ms: over.p95_floor_ms.or(self.p95_floor_ms),
        }
    }

    /// Refuses a value out of range, naming the field (`rollout.{field}`).
    pub fn validate(&self) -> Result<(), ManifestError> {
        let invalid = |field, problem: &str| {
            Err(ManifestError::Invalid {
                field,
                problem: problem.to_string(),
            })
        };
        if let Some(steps) = &self.steps {
            let rising = steps.windows(2).all(|pair| pair[0] < pair[1]);
            if steps.is_empty() || steps.len() > MAX_STEPS || !rising {
                return invalid(
                    "rollout.steps",
                    "must be 1 to 20 rising shares in percent, e.g. [5, 25, 50]",
                );
            }
            if steps.iter().any(|share| !(1..=99).contains(share)) {
                return invalid(
                    "rollout.steps",
                    "shares must be between 1 and 99 (100 % is the promotion)",
                );
            }
        }
        if self
            .step_seconds
            .is_some_and(|seconds| seconds == 0 || seconds > MAX_STEP_SECONDS)
        {
            return invalid("rollout.step_seconds", "must be between 1 and 86400");
        }
        if self
            .min_requests
            .is_some_and(|count| count == 0 || count > MAX_MIN_REQUESTS)
        {
            return invalid("rollout.min_requests", "must be between 1 and 10000000");
        }
        if self
            .max_error_rate
            .is_some_and(|rate| !(0.0..=100.0).contains(&rate))
        {
            return invalid(
                "rollout.max_error_rate",
                "must be between 0 and 100 (percentage points)",
            );
        }
        if self
            .max_p95_ratio
            .is_some_and(|ratio| !(1.0..=1000.0).contains(&ratio))
        {
            return invalid("rollout.max_p95_ratio", "must be between 1 and 1000");
        }
        if self.p95_floor_ms.is_some_and(|floor| floor > MAX_BUDGET_MS) {
            return invalid("rollout.p95_floor_ms", "must be at most 300000");
        }
        Ok(())
    }
}
