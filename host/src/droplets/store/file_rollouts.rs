//! The file store's rollout records: `{name}/rollouts/{canary}.json`, each
//! written durably and only over the revision before it, and the running
//! ones kept in memory (this process owns the data directory).

use super::file::{Files, absent_is_none};
use crate::droplets::rollout::plan::{Rollout, RolloutState};
use crate::storage::files::write_durable;

impl Files {
    pub(super) fn rollouts(&self, name: &str) -> std::io::Result<Vec<Rollout>> {
        let Some(entries) = absent_is_none(std::fs::read_dir(self.rollouts_dir(name)))? else {
            return Ok(Vec::new());
        };
        let mut rollouts = Vec::new();
        for entry in entries.filter_map(|entry| entry.ok()) {
            if entry.path().extension().is_some_and(|ext| ext == "json") {
                let text = std::fs::read(entry.path())?;
                let rollout: Rollout = serde_json::from_slice(&text).map_err(|err| {
                    std::io::Error::other(format!(
                        "{} does not read back: {err}",
                        entry.path().display()
                    ))
                })?;
                rollouts.push(rollout);
            }
        }
        rollouts.sort_by_key(|rollout| std::cmp::Reverse(rollout.started_at_ms));
        Ok(rollouts)
    }

    /// The running rollouts (a scan of every droplet's, on first use).
    pub(super) fn running(
        &self,
    ) -> std::io::Result<std::sync::MutexGuard<'_, Option<Vec<Rollout>>>> {
        let mut running = self
            .running
            .lock()
            .map_err(|_| std::io::Error::other("the rollout lock is poisoned"))?;
        if running.is_none() {
            let mut found = Vec::new();
            for name in self.names()? {
                let rollouts = self.rollouts(&name)?;
                found.extend(
                    rollouts
                        .into_iter()
                        .filter(|r| r.state == RolloutState::Running),
                );
            }
            *running = Some(found);
        }
        Ok(running)
    }

    pub(super) fn write_rollout(&self, rollout: &Rollout) -> std::io::Result<bool> {
        let mut running = self.running()?;
        let path = self
            .rollouts_dir(&rollout.name)
            .join(format!("{}.json", rollout.canary));
        let stored = match absent_is_none(std::fs::read(&path))? {
            Some(text) => serde_json::from_slice::<Rollout>(&text)
                .map(|stored| stored.rev)
                .unwrap_or(0),
            None => 0,
        };
        if stored + 1 != rollout.rev {
            return Ok(false);
        }
        std::fs::create_dir_all(self.rollouts_dir(&rollout.name))?;
        let text = serde_json::to_vec_pretty(rollout).map_err(std::io::Error::other)?;
        write_durable(&path, &text)?;
        if let Some(running) = running.as_mut() {
            running.retain(|r| !(r.name == rollout.name && r.canary == rollout.canary));
            if rollout.running() {
                running.push(rollout.clone());
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use crate::droplets::rollout::plan::{Action, Rollout, Thresholds};
    use crate::droplets::store::DeploymentStore;
    use crate::droplets::store::file::FileStore;
    use crate::droplets::version::{ContentHash, VersionId};

    #[tokio::test]
    async fn a_rollout_is_written_only_over_the_revision_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().to_path_buf());
        let hash = ContentHash::of(b"wasm", None);
        store
            .save("app", &VersionId::new(1, &hash), b"wasm", None, false)
            .await
            .unwrap();
        let started = Rollout::start("app", "1-a", "2-b", Thresholds::default(), "test");
        assert!(store.write_rollout(&started).await.unwrap());
        assert!(
            !store.write_rollout(&started).await.unwrap(),
            "a second start"
        );
        assert_eq!(
            store.running_rollouts().await.unwrap(),
            std::slice::from_ref(&started)
        );
        let advanced = started.decide(Action::Advance, "h1", None, String::new());
        let rival = started.decide(Action::Abort, "h2", None, String::new());
        assert!(store.write_rollout(&advanced).await.unwrap());
        assert!(!store.write_rollout(&rival).await.unwrap(), "decided twice");
        let promoted = advanced.decide(Action::Promote, "h1", None, "done".into());
        assert!(store.write_rollout(&promoted).await.unwrap());
        assert!(store.running_rollouts().await.unwrap().is_empty());
        let reopened = FileStore::new(dir.path().to_path_buf());
        assert_eq!(
            reopened.rollouts("app").await.unwrap(),
            std::slice::from_ref(&promoted)
        );
        assert!(reopened.running_rollouts().await.unwrap().is_empty());
        // A canary's record goes when its version is pruned.
        let first = dir
            .path()
            .join(format!("app/rollouts/{}.json", VersionId::new(1, &hash)));
        std::fs::write(&first, serde_json::to_vec(&promoted).unwrap()).unwrap();
        for seq in 2..=7 {
            let version = VersionId::new(seq, &hash);
            reopened
                .save("app", &version, b"wasm", None, false)
                .await
                .unwrap();
        }
        assert!(!first.exists(), "the pruned version's rollout is gone");
        reopened.remove("app").await.unwrap();
        assert!(reopened.rollouts("app").await.unwrap().is_empty());
    }
}
