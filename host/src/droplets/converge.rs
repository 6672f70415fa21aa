//! Following the fleet: making this host serve the versions the fleet's
//! store names as current ([`Droplets::converge`], called by
//! [`super::fleet`] on hints and on a timer).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use super::droplet::Droplet;
use super::loader::{LoadError, off_thread};
use super::table::Droplets;
use super::version::VersionId;

impl Droplets {
    /// Makes this host serve what the fleet wants: `wanted()` reads every
    /// droplet's current version from the fleet's store. A droplet serving
    /// another version is compiled from the store and swapped in; one the
    /// fleet no longer has is taken out of the table (its files stay). A
    /// version that cannot serve here is refused: the current one keeps
    /// serving, and `refused` remembers why, so it is not compiled again
    /// until the fleet wants another version. How many were swapped.
    ///
    /// Compiling happens outside the change lock, as a publish does, so
    /// admin writes never wait behind it. The lock is then taken, the
    /// wanted versions read again (no publish of this host's can come
    /// between that read and the swaps), and only versions still wanted
    /// are swapped in; one that became wanted meanwhile is compiled by the
    /// next pass (its publish sent the hint that starts it).
    pub async fn converge<F, Fut, E>(
        &self,
        wanted: F,
        refused: &mut HashMap<String, (VersionId, String)>,
    ) -> Result<usize, E>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Vec<(String, VersionId)>, E>>,
    {
        let mut prepared = HashMap::new();
        for (name, version) in wanted().await? {
            if self.serves(&name, &version)
                || was_refused(refused, &name, &version)
                || self.promotable(&name, &version).is_some()
            {
                continue;
            }
            let started = Instant::now();
            let result = self.prepare_stored(&name, &version).await;
            prepared.insert(name, (version, result, started));
        }

        let _change = self.changes.lock().await;
        let wanted = wanted().await?;
        let names: HashSet<&str> = wanted.iter().map(|(name, _)| name.as_str()).collect();
        let gone: Vec<Arc<Droplet>> = self
            .list()
            .into_iter()
            .filter(|droplet| {
                !names.contains(&*droplet.name) && droplet.version != VersionId::unloaded()
            })
            .collect();
        if !gone.is_empty() {
            let gone_names: Vec<&str> = gone.iter().map(|droplet| &*droplet.name).collect();
            self.take_out(&gone_names);
            for droplet in &gone {
                tracing::info!(droplet = %droplet.name, "droplet removed by the fleet");
            }
        }
        refused.retain(|name, _| names.contains(name.as_str()));
        let mut swapped = 0;
        for (name, version) in wanted {
            if self.serves(&name, &version) {
                refused.remove(&name);
                continue;
            }
            if was_refused(refused, &name, &version) {
                continue;
            }
            if let Some(canary) = self.promotable(&name, &version) {
                // A promoted canary this host already runs: no compiling.
                self.swap_in_droplet(canary);
                self.set_canary(&name, None);
                swapped += 1;
                tracing::info!(droplet = %name, version = %version, "promoted canary adopted from the fleet");
                continue;
            }
            let Some((ready_version, result, started)) = prepared.remove(&name) else {
                continue;
            };
            if ready_version != version {
                continue;
            }
            let current = self.get(&name);
            match result {
                Ok((parsed, ready)) => {
                    self.swap_in(&name, &version, parsed, ready);
                    swapped += 1;
                    refused.remove(&name);
                    tracing::info!(
                        droplet = %name,
                        version = %version,
                        from = current.as_ref().map(|current| current.version.as_str()),
                        duration_ms = started.elapsed().as_millis() as u64,
                        "droplet version adopted from the fleet"
                    );
                }
                Err(reason) => {
                    tracing::error!(droplet = %name, version = %version, reason = %reason, "the fleet's version cannot serve here; the current one keeps serving");
                    refused.insert(name, (version, reason.to_string()));
                }
            }
        }
        Ok(swapped)
    }

    /// The canary of `name` this host runs, if it is `version`.
    fn promotable(&self, name: &str, version: &VersionId) -> Option<Arc<Droplet>> {
        self.canary(name)
            .filter(|canary| canary.droplet.version == *version)
            .map(|canary| Arc::clone(&canary.droplet))
    }

    /// Whether `name` serves `version` (loaded, not failed).
    fn serves(&self, name: &str, version: &VersionId) -> bool {
        self.get(name)
            .is_some_and(|current| current.version == *version && current.load_error().is_none())
    }

    /// A stored version, read and checked as a publish checks it.
    async fn prepare_stored(
        &self,
        name: &str,
        version: &VersionId,
    ) -> Result<(super::loader::Parsed, super::loader::Ready), LoadError> {
        let files = self
            .store
            .read(name, version)
            .await
            .map_err(|err| LoadError::read(format!("version {version}"), err))?;
        let loader = Arc::clone(&self.loader);
        let owned_name = name.to_string();
        off_thread(name, move || loader.prepare(&owned_name, &files)).await
    }
}

/// Whether `version` of `name` was refused here already.
fn was_refused(
    refused: &HashMap<String, (VersionId, String)>,
    name: &str,
    version: &VersionId,
) -> bool {
    refused
        .get(name)
        .is_some_and(|(refused, _)| refused == version)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::droplets::table::tests::table;
    use crate::testing;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn converging_refuses_a_version_it_cannot_read_once_and_drops_what_the_fleet_dropped() {
        let parts = testing::parts();
        let droplets = table(&parts);
        let missing = VersionId::parse("7-0123456789ab").unwrap();
        let mut refused = HashMap::new();
        let wanted = vec![("ghost".to_string(), missing.clone())];
        // The first read (and the compiling after it) runs without the
        // change lock, so admin writes never wait behind a reconcile; the
        // second, right before the swaps, under it.
        let reads = std::sync::Mutex::new(Vec::new());
        let swapped = droplets
            .converge(
                || {
                    reads
                        .lock()
                        .unwrap()
                        .push(droplets.changes.try_lock().is_err());
                    async { Ok::<_, String>(wanted.clone()) }
                },
                &mut refused,
            )
            .await
            .unwrap();
        assert_eq!(*reads.lock().unwrap(), [false, true]);
        assert_eq!(swapped, 0);
        let (version, reason) = &refused["ghost"];
        assert_eq!(*version, missing);
        assert!(reason.contains("cannot read version"), "{reason}");
        assert!(droplets.get("ghost").is_none());
        // The fleet no longer names it: forgotten.
        droplets
            .converge(|| async { Ok::<_, String>(Vec::new()) }, &mut refused)
            .await
            .unwrap();
        assert!(refused.is_empty());
    }
}
