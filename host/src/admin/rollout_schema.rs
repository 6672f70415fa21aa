//! The rollout bodies of the admin API: a rollout's status, and what the
//! history says of each version.

use serde::Serialize;
use utoipa::ToSchema;

use crate::droplets::rollout::lifecycle::RolloutStatus;
use crate::droplets::rollout::plan::{Decision, Figures, RolloutState, Thresholds};

/// A rollout: where it is, both versions' figures over the current step,
/// and every decision so far.
#[derive(Debug, Serialize, ToSchema)]
pub struct RolloutView {
    /// The droplet.
    pub name: String,
    /// `running`, `promoted`, `rolled_back` or `aborted`.
    pub state: RolloutState,
    /// The canary's share of requests now, percent (0–100).
    pub share: u8,
    /// The current step (0-based) of `thresholds.steps`.
    pub step: usize,
    /// The version rolled out.
    pub canary: String,
    /// The version it is compared with.
    pub stable: String,
    /// Why it ended, naming the figures.
    pub reason: Option<String>,
    /// Its steps and thresholds.
    pub thresholds: Thresholds,
    /// Unix milliseconds.
    pub started_at_ms: u64,
    /// When the current step started, Unix milliseconds.
    pub step_started_at_ms: u64,
    /// When it ended.
    pub ended_at_ms: Option<u64>,
    /// The current step's figures, while it runs (the fleet's sums on a
    /// fleet).
    pub figures: StepFigures,
    /// Every decision, oldest first: who, when, on what figures, why.
    pub decisions: Vec<Decision>,
}

/// Both versions' figures over the current step.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct StepFigures {
    /// The canary's.
    pub canary: Option<Figures>,
    /// The stable version's.
    pub stable: Option<Figures>,
}

impl From<RolloutStatus> for RolloutView {
    fn from(status: RolloutStatus) -> Self {
        let rollout = status.rollout;
        Self {
            share: rollout.share(),
            name: rollout.name,
            state: rollout.state,
            step: rollout.step,
            canary: rollout.canary,
            stable: rollout.stable,
            reason: rollout.reason,
            thresholds: rollout.thresholds,
            started_at_ms: rollout.started_at_ms,
            step_started_at_ms: rollout.step_started_at_ms,
            ended_at_ms: rollout.ended_at_ms,
            figures: StepFigures {
                canary: status.canary,
                stable: status.stable,
            },
            decisions: rollout.decisions,
        }
    }
}

/// One stored version, and what happened to it.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryEntry {
    /// The version.
    pub version: String,
    /// Whether it serves now.
    pub current: bool,
    /// How it got here: `published`, or its rollout's state
    /// (`running`, `promoted`, `rolled_back`, `aborted`).
    pub how: String,
    /// Its rollout's reason, if it had one that ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
