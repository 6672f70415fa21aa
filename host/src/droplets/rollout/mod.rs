//! Canary rollouts: a new version beside the current one, given a growing
//! share of requests, judged by the host on live traffic against the
//! stable version, and promoted or rolled back by the host itself, on one
//! host or across a fleet.
//!
//! | module | owns |
//! | --- | --- |
//! | [`plan`] | the rollout's record, thresholds and decisions |
//! | [`verdict`] | the judgement of a step: hold, pass or fail |
//! | [`window`] | per-version counters: requests, errors, a latency histogram |
//! | [`split`] | a followed canary and the sticky bucket of a caller |
//! | [`routing`] | the split at routing time, and the canaries this host follows |
//! | [`lifecycle`] | starting, promoting, aborting, ending by a deploy; status |
//! | [`judge`] | the task every host runs: follow, report, judge |

pub mod judge;
pub mod lifecycle;
pub mod plan;
pub mod routing;
pub mod split;
pub mod verdict;
pub mod window;
