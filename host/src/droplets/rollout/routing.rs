//! The table's side of the split: which version answers a request
//! ([`Droplets::route`]), and the canaries this host follows.

use std::collections::HashMap;
use std::sync::Arc;

use super::split::{Canary, StickyKey};
use crate::droplets::droplet::Droplet;
use crate::droplets::table::Droplets;

impl Droplets {
    /// The version of `current`'s droplet that answers a request: the
    /// canary of a running rollout when the request falls in its share,
    /// else `current`. `key` is asked for only during a rollout's split.
    pub fn route(
        &self,
        current: Arc<Droplet>,
        key: impl FnOnce() -> Option<StickyKey>,
    ) -> Arc<Droplet> {
        let canaries = self.canaries.load();
        if canaries.is_empty() {
            return current;
        }
        match canaries.get(&*current.name) {
            Some(canary) if canary.stable == current.version => {
                let share = canary.share();
                let key = if (1..100).contains(&share) {
                    key()
                } else {
                    None
                };
                if canary.takes(key) {
                    Arc::clone(&canary.droplet)
                } else {
                    current
                }
            }
            _ => current,
        }
    }

    /// The canary this host follows for `name`.
    pub fn canary(&self, name: &str) -> Option<Arc<Canary>> {
        self.canaries.load().get(name).cloned()
    }

    /// Follows `canary` for `name` (or stops following, with `None`).
    pub(crate) fn set_canary(&self, name: &str, canary: Option<Arc<Canary>>) {
        self.canaries.rcu(|canaries| {
            let mut canaries: HashMap<String, Arc<Canary>> = HashMap::clone(canaries);
            match &canary {
                Some(canary) => canaries.insert(name.to_string(), Arc::clone(canary)),
                None => canaries.remove(name),
            };
            canaries
        });
        let share = canary.as_ref().map_or(0, |canary| canary.share());
        metrics::gauge!("droplet_rollout_share", "droplet" => name.to_string())
            .set(f64::from(share));
    }
}
