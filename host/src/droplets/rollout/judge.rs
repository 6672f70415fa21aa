//! The rollout task every host runs: once a second it follows the
//! store's running rollouts (compiling each canary it has not got, setting
//! each step's share, adopting a promoted canary), reports what it counted
//! of each step (a fleet's judge sums every host's reports), and, on the
//! one host holding the judge's lease, judges each step and records the
//! decision. Decisions are written over the revision they judged, so a
//! step is never decided twice; a judge killed mid-rollout loses its lease
//! within [`JUDGE_LEASE`](crate::droplets::store::postgres_rollouts::JUDGE_LEASE)
//! and another host carries on from the stored record.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::plan::{Action, Rollout, RolloutState, now_ms};
use super::split::Canary;
use super::verdict::{Verdict, judge};
use crate::droplets::droplet::DropletState;
use crate::droplets::loader::{LoadError, off_thread};
use crate::droplets::table::Droplets;
use crate::droplets::version::VersionId;
use crate::ops::shutdown::Shutdown;

/// How often a host follows, reports and (holding the lease) judges (a
/// fleet's rollout hint wakes it sooner).
pub const TICK: Duration = Duration::from_secs(1);

/// The rollout task of host `host_id`.
pub struct Judge {
    droplets: Arc<Droplets>,
    host_id: String,
    /// Canary versions this host could not compile, with why: not tried
    /// again every tick.
    refused: HashMap<String, String>,
}

impl Judge {
    /// Starts the task for `droplets` on host `host_id`, until `shutdown`;
    /// `hints` (a fleet's rollout hints) wakes it early.
    pub fn spawn(
        droplets: Arc<Droplets>,
        host_id: String,
        hints: Option<Arc<Notify>>,
        shutdown: &Shutdown,
    ) {
        let hints = hints.unwrap_or_default();
        let mut judge = Judge {
            droplets,
            host_id,
            refused: HashMap::new(),
        };
        let stop = shutdown.clone();
        shutdown.spawn(async move {
            judge.finish_interrupted_promotions().await;
            loop {
                if let Err(err) = judge.tick().await {
                    tracing::warn!(error = %err, "rollout pass failed; retrying");
                }
                tokio::select! {
                    () = tokio::time::sleep(TICK) => {}
                    () = hints.notified() => {}
                    () = stop.triggered() => break,
                }
            }
        });
    }

    /// One pass: follow, report, judge.
    pub async fn tick(&mut self) -> Result<(), String> {
        let droplets = Arc::clone(&self.droplets);
        let running = droplets
            .store
            .running_rollouts()
            .await
            .map_err(|err| format!("cannot read the running rollouts: {err}"))?;
        self.finish_ended(&running).await;
        for rollout in &running {
            self.follow(rollout).await;
        }
        for rollout in &running {
            if let Some((canary, stable)) = droplets.local_counts(rollout) {
                let reported =
                    droplets
                        .store
                        .report_counts(&self.host_id, rollout, &canary, &stable);
                if let Err(err) = reported.await {
                    tracing::warn!(droplet = %rollout.name, error = %err, "cannot report this host's rollout counts");
                }
            }
        }
        if running.is_empty() {
            return Ok(());
        }
        let lease = droplets.store.judge_lease(&self.host_id).await;
        if !lease.map_err(|err| format!("cannot take the judge's lease: {err}"))? {
            return Ok(());
        }
        for rollout in &running {
            self.judge(rollout).await;
        }
        Ok(())
    }

    /// Finishes every promotion recorded but not applied: a host that
    /// stopped between writing a rollout as promoted and pointing the
    /// store's current version at its canary. Such a droplet's newest
    /// rollout is `promoted`, and its current version is still the stable
    /// one, made current *before* the promotion (a rollback after it would
    /// be newer). Runs once, when the task starts.
    pub async fn finish_interrupted_promotions(&self) {
        let droplets = &self.droplets;
        for droplet in droplets.list() {
            let name = &*droplet.name;
            let (Ok(rollouts), Ok(Some((current, since)))) = (
                droplets.store.rollouts(name).await,
                droplets.store.current(name).await,
            ) else {
                continue;
            };
            let since_ms = since
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_millis() as u64);
            let Some(rollout) = rollouts.into_iter().next().filter(|rollout| {
                rollout.state == RolloutState::Promoted
                    && rollout.stable == current.as_str()
                    && rollout.ended_at_ms.is_some_and(|ended| since_ms < ended)
            }) else {
                continue;
            };
            let Some(canary) = VersionId::parse(&rollout.canary) else {
                continue;
            };
            let finished = async {
                let promoted = prepare(droplets, name, &canary)
                    .await
                    .map_err(|err| err.to_string())?;
                let _change = droplets.changes.lock().await;
                droplets
                    .store
                    .set_current(name, &canary)
                    .await
                    .map_err(|err| err.to_string())?;
                droplets.swap_in_droplet(promoted);
                Ok::<_, String>(())
            };
            match finished.await {
                Ok(()) => {
                    tracing::info!(droplet = name, version = %canary, "an interrupted promotion finished")
                }
                Err(err) => {
                    tracing::error!(droplet = name, version = %canary, error = %err, "an interrupted promotion could not be finished")
                }
            }
        }
    }

    /// Judges the current step of `rollout` and records what it decides.
    async fn judge(&self, rollout: &Rollout) {
        let droplets = &self.droplets;
        let current = match droplets.store.current(&rollout.name).await {
            Ok(current) => current.map(|(current, _)| current.as_str().to_string()),
            Err(err) => {
                tracing::warn!(droplet = %rollout.name, error = %err, "cannot read the current version to judge a rollout");
                return;
            }
        };
        let _change = droplets.changes.lock().await;
        if current.as_deref() != Some(&rollout.stable) {
            // Its stable version was replaced, and the change could not end
            // it then (the store refused): end it now.
            let why = format!("ended: {} is no longer the current version", rollout.stable);
            let next = rollout.decide(Action::Abort, &self.host_id, None, why);
            if let Err(err) = droplets.decided(next).await {
                tracing::info!(droplet = %rollout.name, error = %err, "rollout end not recorded");
            }
            return;
        }
        let Some((canary, stable)) = droplets.step_counts(rollout).await else {
            return;
        };
        let (action, reason) = match judge(rollout, &canary, &stable, now_ms()) {
            Verdict::Hold => return,
            Verdict::Pass(action, reason) => (action, reason),
            Verdict::Fail(reason) => (Action::RollBack, reason),
        };
        // Decided on the revision read at the start of the pass: a change
        // since (by hand, by a deploy) makes the write fail, harmlessly.
        let figures = Some(((&canary).into(), (&stable).into()));
        let next = rollout.decide(action, &self.host_id, figures, reason);
        if let Err(err) = droplets.decided(next).await {
            tracing::info!(droplet = %rollout.name, error = %err, "rollout decision not recorded");
        }
    }

    /// Makes this host split `rollout`'s traffic: its canary compiled (from
    /// the store, once) and its share set, while this host serves its
    /// stable version.
    async fn follow(&mut self, rollout: &Rollout) {
        let droplets = Arc::clone(&self.droplets);
        let name = &rollout.name;
        let Some(current) = droplets.get(name) else {
            return;
        };
        if current.version.as_str() != rollout.stable {
            return;
        }
        if let Some(canary) = droplets.canary(name)
            && canary.droplet.version.as_str() == rollout.canary
        {
            droplets.follow(&canary, rollout);
            droplets.set_canary(name, Some(canary));
            return;
        }
        if self.refused.contains_key(&rollout.canary) {
            return;
        }
        let Some(id) = VersionId::parse(&rollout.canary) else {
            return;
        };
        match prepare(&droplets, name, &id).await {
            Ok(droplet) => {
                let _change = droplets.changes.lock().await;
                let canary = Canary::new(current.version.clone(), droplet, 0);
                droplets.follow(&canary, rollout);
                droplets.set_canary(name, Some(Arc::new(canary)));
                tracing::info!(droplet = %name, canary = %id, share = rollout.share(), "following a rollout");
            }
            Err(reason) => {
                tracing::error!(droplet = %name, canary = %id, reason = %reason, "the rollout's canary cannot serve here; this host sends it nothing");
                self.refused
                    .insert(rollout.canary.clone(), reason.to_string());
            }
        }
    }

    /// Applies the end of every rollout this host followed that is no
    /// longer running (decided on another host, or before a restart).
    async fn finish_ended(&mut self, running: &[Rollout]) {
        let droplets = Arc::clone(&self.droplets);
        let followed: Vec<(String, Arc<Canary>)> = droplets
            .canaries
            .load()
            .iter()
            .map(|(n, c)| (n.clone(), Arc::clone(c)))
            .collect();
        for (name, canary) in followed {
            let version = canary.droplet.version.as_str();
            if running
                .iter()
                .any(|r| r.name == name && r.canary == version)
            {
                continue;
            }
            let ended = match droplets.store.rollouts(&name).await {
                Ok(rollouts) => rollouts.into_iter().find(|r| r.canary == version),
                Err(err) => {
                    tracing::warn!(droplet = %name, error = %err, "cannot read how a rollout ended");
                    continue;
                }
            };
            let _change = droplets.changes.lock().await;
            let applied = match ended {
                Some(ended) => droplets.apply(&ended).await,
                None => {
                    droplets.set_canary(&name, None);
                    Ok(())
                }
            };
            if let Err(err) = applied {
                tracing::warn!(droplet = %name, error = %err, "cannot follow the end of a rollout; retrying");
            }
        }
        self.refused
            .retain(|canary, _| running.iter().any(|r| &r.canary == canary));
    }
}

/// A stored canary version, checked and built, not yet serving.
async fn prepare(
    droplets: &Droplets,
    name: &str,
    id: &VersionId,
) -> Result<Arc<crate::droplets::Droplet>, LoadError> {
    let files = droplets
        .store
        .read(name, id)
        .await
        .map_err(|err| LoadError::read(format!("version {id}"), err))?;
    let loader = Arc::clone(&droplets.loader);
    let owned_name = name.to_string();
    let (parsed, ready) = off_thread(name, move || loader.prepare(&owned_name, &files)).await?;
    Ok(droplets.version(
        name,
        id.clone(),
        parsed,
        DropletState::Ready(Arc::new(ready)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::droplets::table::tests::table;
    use crate::testing;

    /// `app` serving `hello` (its stable version's id) with a running
    /// rollout of a canary, and that rollout decided as promoted (not
    /// recorded); `None` without the examples.
    async fn promoted_app(parts: &testing::Parts) -> Option<(Arc<Droplets>, VersionId, Rollout)> {
        let hello = testing::example("hello")?;
        let droplets = Arc::new(table(parts));
        let stable = droplets
            .publish("app", hello.clone(), None, "test")
            .await
            .unwrap();
        let stable = stable.version().clone();
        let canary = droplets
            .start_rollout(
                "app",
                hello,
                Some("budget_ms = 900".into()),
                &Default::default(),
            )
            .await
            .unwrap();
        let promoted = canary.decide(Action::Promote, "h1", None, "every step passed".into());
        Some((droplets, stable, promoted))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_decision_is_reported_only_once_this_host_serves_it() {
        let parts = testing::parts();
        let Some((droplets, _, promoted)) = promoted_app(&parts).await else {
            return;
        };
        // The judge between recording its decision and applying it.
        let change = droplets.changes.lock().await;
        assert!(droplets.store.write_rollout(&promoted).await.unwrap());
        let reader = tokio::spawn({
            let droplets = Arc::clone(&droplets);
            async move {
                droplets.rollout_history("app").await.unwrap()[0]
                    .rollout
                    .state
            }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!reader.is_finished(), "reported before it was applied");
        droplets.apply(&promoted).await.unwrap();
        drop(change);
        assert_eq!(reader.await.unwrap(), RolloutState::Promoted);
        assert_eq!(
            droplets.get("app").unwrap().version.as_str(),
            promoted.canary
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_promotion_recorded_but_not_applied_is_finished_when_the_task_starts() {
        let parts = testing::parts();
        let Some((droplets, stable, promoted)) = promoted_app(&parts).await else {
            return;
        };
        // Promoted in the record, the process gone before the pointer moved.
        assert!(droplets.store.write_rollout(&promoted).await.unwrap());
        let judge = Judge {
            droplets: Arc::clone(&droplets),
            host_id: "h2".into(),
            refused: HashMap::new(),
        };
        judge.finish_interrupted_promotions().await;
        let current = droplets.store.current("app").await.unwrap().unwrap().0;
        assert_eq!(current.as_str(), promoted.canary);
        assert_eq!(
            droplets.get("app").unwrap().version.as_str(),
            promoted.canary
        );
        // A rollback after a promotion is newer than it: left alone.
        assert_eq!(droplets.rollback("app").await.unwrap(), stable);
        judge.finish_interrupted_promotions().await;
        assert_eq!(droplets.get("app").unwrap().version, stable);
    }
}
