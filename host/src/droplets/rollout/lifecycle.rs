//! Starting and ending a rollout on request: a canary deploy, promote and
//! abort by hand, and the end of a rollout that a plain deploy, rollback
//! or removal brings. Each takes the table's change lock, as a publish
//! does, writes the store first and changes what this host serves last.

use std::sync::Arc;
use std::time::Instant;

use super::plan::{Action, Figures, Rollout, Thresholds};
use super::split::Canary;
use super::window::Counts;
use crate::droplets::droplet::DropletState;
use crate::droplets::loader::off_thread;
use crate::droplets::manifest::RolloutSettings;
use crate::droplets::name::is_droplet_name;
use crate::droplets::publish::ChangeError;
use crate::droplets::table::Droplets;
use crate::droplets::version::{ContentHash, VersionId};

/// Who decides by hand, in a decision's `by`.
pub const OPERATOR: &str = "operator";

/// A rollout as its status shows it: the record, and both versions'
/// figures over the current step (the fleet's, on a fleet).
#[derive(Debug, Clone)]
pub struct RolloutStatus {
    /// The record.
    pub rollout: Rollout,
    /// The canary's figures over the current step, while it runs.
    pub canary: Option<Figures>,
    /// The stable version's.
    pub stable: Option<Figures>,
}

impl Droplets {
    /// Starts a rollout of a new version of `name` beside the one it
    /// serves: checked as a publish checks it, stored beside the current
    /// version, and split off at the first step's share. Its thresholds
    /// are its manifest's `[rollout]`, with what `over` sets.
    pub async fn start_rollout(
        &self,
        name: &str,
        wasm: Vec<u8>,
        manifest: Option<String>,
        over: &RolloutSettings,
    ) -> Result<Rollout, ChangeError> {
        if !is_droplet_name(name) {
            return Err(ChangeError::BadName(name.to_string()));
        }
        over.validate()
            .map_err(|err| ChangeError::BadRollout(err.to_string()))?;
        let stable = self
            .get(name)
            .ok_or_else(|| ChangeError::NotFound(name.to_string()))?;
        if let Some(reason) = stable.load_error() {
            return Err(ChangeError::BadRollout(format!(
                "`{name}` has no version serving to compare a canary with ({reason}): deploy it plainly"
            )));
        }
        let hash = ContentHash::of(&wasm, manifest.as_deref());
        if stable.version.has_content(&hash) {
            return Err(ChangeError::BadRollout(format!(
                "the canary is the version `{name}` already serves ({})",
                stable.version
            )));
        }
        let started = Instant::now();
        let loader = Arc::clone(&self.loader);
        let owned_name = name.to_string();
        let (parsed, ready, (wasm, manifest)) = off_thread(name, move || {
            let files = (wasm, manifest);
            let (parsed, ready) = loader.prepare(&owned_name, &files)?;
            Ok((parsed, ready, files))
        })
        .await?;
        let thresholds = Thresholds::from_settings(&parsed.manifest.rollout.overridden_by(over));

        let _change = self.changes.lock().await;
        let current = self.get(name);
        if current.as_ref().map(|current| &current.version) != Some(&stable.version) {
            return Err(ChangeError::RolloutConflict(name.to_string()));
        }
        let stored_rollouts = self.store.rollouts(name).await;
        let rollouts = stored_rollouts.map_err(|cause| ChangeError::Storage {
            what: "read the droplet's rollouts",
            cause,
        })?;
        if rollouts.iter().any(Rollout::running) {
            return Err(ChangeError::RolloutRunning(name.to_string()));
        }
        let id = VersionId::new(
            self.store
                .next_seq()
                .await
                .map_err(ChangeError::storage("store the canary"))?,
            &hash,
        );
        self.store
            .save(name, &id, &wasm, manifest.as_deref(), true)
            .await
            .map_err(ChangeError::storage("store the canary"))?;
        let rollout = Rollout::start(
            name,
            stable.version.as_str(),
            id.as_str(),
            thresholds,
            OPERATOR,
        );
        if !self
            .store
            .write_rollout(&rollout)
            .await
            .map_err(ChangeError::storage("record the rollout"))?
        {
            return Err(ChangeError::RolloutConflict(name.to_string()));
        }
        let state = DropletState::Ready(Arc::new(ready));
        let canary = Canary::new(
            stable.version.clone(),
            self.version(name, id, parsed, state),
            0,
        );
        self.follow(&canary, &rollout);
        self.set_canary(name, Some(Arc::new(canary)));
        log_decision(&rollout, started);
        Ok(rollout)
    }

    /// Ends the running rollout of `name` by hand: `promote` makes the
    /// canary current, otherwise it is aborted.
    pub async fn end_rollout(&self, name: &str, promote: bool) -> Result<Rollout, ChangeError> {
        let _change = self.changes.lock().await;
        let rollout = self
            .running_rollout(name)
            .await?
            .ok_or_else(|| ChangeError::NoRollout(name.to_string()))?;
        let (action, reason) = if promote {
            (Action::Promote, "promoted by hand")
        } else {
            (Action::Abort, "aborted by hand")
        };
        let figures = self.step_figures(&rollout).await;
        let next = rollout.decide(action, OPERATOR, figures, reason.to_string());
        self.decided(next).await
    }

    /// Ends the running rollout of `name`, if any, because `why` (a plain
    /// deploy, a rollback) replaced both its versions; called with the
    /// change lock held. The change it follows has happened: a store that
    /// refuses now leaves the record running, and the judge ends it later
    /// (its stable version is no longer current).
    pub(crate) async fn end_rollouts_for(&self, name: &str, why: &str) {
        self.set_canary(name, None);
        let ended = async {
            if let Some(rollout) = self.running_rollout(name).await? {
                let next = rollout.decide(Action::Abort, OPERATOR, None, format!("ended by {why}"));
                self.decided(next).await?;
            }
            Ok::<_, ChangeError>(())
        };
        if let Err(err) = ended.await {
            tracing::warn!(droplet = name, error = %err, "the rollout could not be ended now; the judge will end it");
        }
    }

    /// Writes the decision `next` (over the revision before it) and makes
    /// this host follow it; the change lock is held.
    pub(super) async fn decided(&self, next: Rollout) -> Result<Rollout, ChangeError> {
        let started = Instant::now();
        if !self
            .store
            .write_rollout(&next)
            .await
            .map_err(ChangeError::storage("record the decision"))?
        {
            return Err(ChangeError::RolloutConflict(next.name.clone()));
        }
        self.apply(&next).await?;
        log_decision(&next, started);
        Ok(next)
    }

    /// Makes this host serve what the decided `rollout` says: a new share,
    /// the canary as current (promoted; the store's current version is set
    /// here too, so a promotion interrupted before it is finished by the
    /// next host to see it), or the stable version alone.
    pub(super) async fn apply(&self, rollout: &Rollout) -> Result<(), ChangeError> {
        let name = &rollout.name;
        let canary = self
            .canary(name)
            .filter(|canary| canary.droplet.version.as_str() == rollout.canary);
        match (rollout.share(), canary) {
            (100, canary) => {
                let stable = VersionId::parse(&rollout.stable);
                let store_current = self
                    .store
                    .current(name)
                    .await
                    .map_err(ChangeError::storage("read the current version"))?;
                if let (Some(stable), Some((current, _))) = (&stable, store_current)
                    && current == *stable
                    && let Some(promoted) = VersionId::parse(&rollout.canary)
                {
                    self.store
                        .set_current(name, &promoted)
                        .await
                        .map_err(ChangeError::storage("promote the canary"))?;
                }
                let serving_stable = self
                    .get(name)
                    .is_some_and(|current| Some(&current.version) == stable.as_ref());
                if let Some(canary) = canary
                    && serving_stable
                {
                    self.swap_in_droplet(Arc::clone(&canary.droplet));
                }
                self.set_canary(name, None);
            }
            (0, _) => self.set_canary(name, None),
            (share, Some(canary)) => {
                canary.set_share(share);
                self.follow(&canary, rollout);
                self.set_canary(name, Some(canary));
            }
            (_, None) => {}
        }
        Ok(())
    }

    /// The running rollout of `name`, from the store.
    async fn running_rollout(&self, name: &str) -> Result<Option<Rollout>, ChangeError> {
        let rollouts = self
            .store
            .rollouts(name)
            .await
            .map_err(ChangeError::storage("read the droplet's rollouts"))?;
        Ok(rollouts.into_iter().find(Rollout::running))
    }

    /// Every rollout of `name` (newest first), the running one with its
    /// current step's figures. Read under the change lock: a decision is
    /// recorded, then applied, under that lock, so a decision this host
    /// made is never reported before this host serves it (a `promoted`
    /// read here means the next request gets the canary).
    pub async fn rollout_history(&self, name: &str) -> Result<Vec<RolloutStatus>, ChangeError> {
        let rollouts = {
            let _change = self.changes.lock().await;
            self.store.rollouts(name).await
        }
        .map_err(ChangeError::storage("read the droplet's rollouts"))?;
        let mut statuses = Vec::with_capacity(rollouts.len());
        for rollout in rollouts {
            let figures = if rollout.running() {
                self.step_figures(&rollout).await
            } else {
                None
            };
            let (canary, stable) = figures.map_or((None, None), |(c, s)| (Some(c), Some(s)));
            statuses.push(RolloutStatus {
                rollout,
                canary,
                stable,
            });
        }
        Ok(statuses)
    }

    /// Both versions' figures over the current step of `rollout`: the
    /// fleet's sums, or this host's own counts.
    pub(super) async fn step_figures(&self, rollout: &Rollout) -> Option<(Figures, Figures)> {
        let (canary, stable) = self.step_counts(rollout).await?;
        Some(((&canary).into(), (&stable).into()))
    }

    /// Both versions' counts over the current step of `rollout`.
    pub(super) async fn step_counts(&self, rollout: &Rollout) -> Option<(Counts, Counts)> {
        match self.store.fleet_counts(rollout).await {
            Ok(Some(counts)) => Some(counts),
            Ok(None) => self.local_counts(rollout),
            Err(err) => {
                tracing::warn!(droplet = %rollout.name, error = %err, "cannot read the fleet's rollout counts");
                None
            }
        }
    }

    /// This host's counts of the current step of `rollout`.
    pub(super) fn local_counts(&self, rollout: &Rollout) -> Option<(Counts, Counts)> {
        let canary = self.canary(&rollout.name)?;
        let stable = self
            .get(&rollout.name)
            .filter(|stable| stable.version == canary.stable)?;
        let baseline = canary.baseline.lock().ok()?.clone();
        if baseline.step_started_at_ms != rollout.step_started_at_ms {
            return Some((Counts::default(), Counts::default()));
        }
        Some((
            canary.droplet.counters.snapshot().since(&baseline.canary),
            stable.counters.snapshot().since(&baseline.stable),
        ))
    }

    /// Counts `canary`'s current step from now, on this host, if the step
    /// of `rollout` is not the one it counts already.
    pub(super) fn follow(&self, canary: &Canary, rollout: &Rollout) {
        canary.set_share(rollout.share());
        let Ok(mut baseline) = canary.baseline.lock() else {
            return;
        };
        if baseline.step_started_at_ms == rollout.step_started_at_ms {
            return;
        }
        baseline.step_started_at_ms = rollout.step_started_at_ms;
        baseline.canary = canary.droplet.counters.snapshot();
        baseline.stable = self
            .get(&rollout.name)
            .filter(|stable| stable.version == canary.stable)
            .map(|stable| stable.counters.snapshot())
            .unwrap_or_default();
    }
}

/// One JSON line per decision, and its metric.
fn log_decision(rollout: &Rollout, started: Instant) {
    let Some(decision) = rollout.decisions.last() else {
        return;
    };
    let action = serde_json::to_value(decision.action)
        .ok()
        .and_then(|action| action.as_str().map(str::to_string))
        .unwrap_or_default();
    metrics::counter!("droplet_rollout_decisions_total", "droplet" => rollout.name.clone(), "action" => action.clone())
        .increment(1);
    tracing::info!(
        target: "droplet::rollout",
        droplet = %rollout.name,
        action = %action,
        state = rollout.state.as_str(),
        canary = %rollout.canary,
        stable = %rollout.stable,
        from_share = decision.from_share,
        share = decision.to_share,
        by = %decision.by,
        canary_requests = decision.canary.as_ref().map(|f| f.requests),
        canary_error_rate = decision.canary.as_ref().map(|f| f.error_rate),
        canary_p95_ms = decision.canary.as_ref().and_then(|f| f.p95_ms),
        stable_requests = decision.stable.as_ref().map(|f| f.requests),
        stable_error_rate = decision.stable.as_ref().map(|f| f.error_rate),
        stable_p95_ms = decision.stable.as_ref().and_then(|f| f.p95_ms),
        reason = %decision.reason,
        duration_ms = started.elapsed().as_millis() as u64,
        "rollout decision"
    );
}
