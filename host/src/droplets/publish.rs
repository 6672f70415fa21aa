//! Changing what a name serves, on request: publishing a new version,
//! rolling back to the previous one, removing a droplet. Each takes the
//! table's change lock, checks first and swaps last, so a refused change
//! changes nothing.

use std::time::Instant;

use super::directory;
use super::loader::{LoadError, off_thread};
use super::name::{NAME_RULE, is_droplet_name};
use super::store::StoreError;
use super::table::Droplets;
use super::version::{ContentHash, VersionId};

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// A new version is serving.
    New(VersionId),
    /// The same module and manifest were already serving.
    Unchanged(VersionId),
}

impl Published {
    /// The version now serving.
    pub fn version(&self) -> &VersionId {
        match self {
            Published::New(version) | Published::Unchanged(version) => version,
        }
    }
}

/// Why a publish, rollback or removal could not happen.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// No droplet has that name.
    #[error("no droplet named `{0}`")]
    NotFound(String),
    /// There is no older stored version.
    #[error("droplet `{0}` has no previous version to roll back to")]
    NoPrevious(String),
    /// Not a name a droplet may have.
    #[error("`{0}` is not a valid droplet name: {NAME_RULE}")]
    BadName(String),
    /// The version cannot serve (or its files cannot be read).
    #[error("{0}")]
    Invalid(#[from] LoadError),
    /// The store refused; nothing changed.
    #[error("cannot {what}: {cause}")]
    Storage {
        /// What was being done.
        what: &'static str,
        /// Why the store refused.
        cause: StoreError,
    },
    /// A canary deploy while a rollout of the droplet runs.
    #[error(
        "a rollout of `{0}` is running: promote or abort it first (`droplet rollout promote|abort {0}`)"
    )]
    RolloutRunning(String),
    /// Promote or abort with no rollout running.
    #[error("no rollout of `{0}` is running")]
    NoRollout(String),
    /// A canary that cannot be rolled out (its reason).
    #[error("{0}")]
    BadRollout(String),
    /// The rollout changed under the decision (another host decided
    /// first); nothing was written.
    #[error("the rollout of `{0}` changed meanwhile; look at its status and retry")]
    RolloutConflict(String),
    /// The droplets directory refused.
    #[error("cannot remove the files of `{name}`: {cause}")]
    Files {
        /// The droplet.
        name: String,
        /// Why not.
        cause: std::io::Error,
    },
}

impl ChangeError {
    /// The store refused `what`.
    pub(crate) fn storage(what: &'static str) -> impl FnOnce(StoreError) -> ChangeError {
        move |cause| ChangeError::Storage { what, cause }
    }
}

impl Droplets {
    /// The module and manifest of a stored version of `name` (what a
    /// recording made on it is replayed against).
    pub async fn version_files(
        &self,
        name: &str,
        version: &VersionId,
    ) -> Result<super::store::VersionFiles, StoreError> {
        self.store.read(name, version).await
    }

    /// Publishes a new version of `name` (a new droplet if there is none):
    /// compiled and checked first, off the async workers; refused with the
    /// reason if it cannot serve ([`ChangeError::Invalid`]) or cannot be
    /// stored ([`ChangeError::Storage`]), and then nothing changes.
    pub async fn publish(
        &self,
        name: &str,
        wasm: Vec<u8>,
        manifest: Option<String>,
        source: &'static str,
    ) -> Result<Published, ChangeError> {
        if !is_droplet_name(name) {
            return Err(ChangeError::BadName(name.to_string()));
        }
        let hash = ContentHash::of(&wasm, manifest.as_deref());
        if let Some(current) = self.get(name)
            && current.version.has_content(&hash)
            && current.load_error().is_none()
        {
            return Ok(Published::Unchanged(current.version.clone()));
        }
        let started = Instant::now();
        let loader = std::sync::Arc::clone(&self.loader);
        let owned_name = name.to_string();
        let checked = off_thread(name, move || {
            let files = (wasm, manifest);
            let (parsed, ready) = loader.prepare(&owned_name, &files)?;
            Ok((parsed, ready, files))
        })
        .await;
        let (parsed, ready, (wasm, manifest)) = match checked {
            Ok(checked) => checked,
            Err(reason) => {
                tracing::error!(droplet = name, source, reason = %reason, "new version refused; the current one keeps serving");
                // A droplet that appeared in the directory and was refused
                // is there, failed: it answers 503 with the reason (as at
                // start-up), not 404 as if its file did not exist.
                if source == "directory" && !reason.is_read() {
                    let _change = self.changes.lock().await;
                    if self.get(name).is_none() {
                        self.insert_failed(name, reason.to_string());
                    }
                }
                return Err(reason.into());
            }
        };

        let _change = self.changes.lock().await;
        let stored = self.store_new_version(name, &hash, &wasm, manifest.as_deref());
        let id = stored.await.map_err(|err| {
            tracing::error!(droplet = name, source, error = %err, "new version not stored; the current one keeps serving");
            ChangeError::Storage {
                what: "store the new version",
                cause: err,
            }
        })?;
        self.swap_in(name, &id, parsed, ready);
        self.end_rollouts_for(name, &format!("a plain deploy of {id}"))
            .await;
        tracing::info!(
            droplet = name,
            version = %id,
            source,
            duration_ms = started.elapsed().as_millis() as u64,
            "droplet version published"
        );
        Ok(Published::New(id))
    }

    /// Serves the newest stored version older than the current one.
    pub async fn rollback(&self, name: &str) -> Result<VersionId, ChangeError> {
        let _change = self.changes.lock().await;
        let current = self
            .get(name)
            .ok_or_else(|| ChangeError::NotFound(name.to_string()))?;
        let previous = self
            .store
            .versions(name)
            .await
            .map_err(ChangeError::storage("read the stored versions"))?
            .into_iter()
            .find(|version| version.seq() < current.version.seq())
            .ok_or_else(|| ChangeError::NoPrevious(name.to_string()))?;
        let files = self
            .store
            .read(name, &previous)
            .await
            .map_err(|err| LoadError::read(format!("version {previous} of {name}"), err))?;
        let loader = std::sync::Arc::clone(&self.loader);
        let owned_name = name.to_string();
        let (parsed, ready) = off_thread(name, move || loader.prepare(&owned_name, &files)).await?;
        self.store
            .set_current(name, &previous)
            .await
            .map_err(ChangeError::storage("store the rollback"))?;
        self.swap_in(name, &previous, parsed, ready);
        self.end_rollouts_for(name, &format!("a rollback to {previous}"))
            .await;
        tracing::info!(droplet = name, version = %previous, from = %current.version, "droplet rolled back");
        Ok(previous)
    }

    /// Removes `name`: from the store first (durably: a removal the store
    /// refused changes nothing, and one it made is never undone by a
    /// restart), then from the table (requests in flight finish) and from
    /// the droplets directory. Whether it existed.
    pub async fn remove(&self, name: &str) -> Result<bool, ChangeError> {
        let _change = self.changes.lock().await;
        self.store
            .remove(name)
            .await
            .map_err(ChangeError::storage("remove the stored versions"))?;
        self.set_canary(name, None);
        let existed = self.take_out(&[name]);
        let (dir, owned_name) = (self.dir.clone(), name.to_string());
        tokio::task::spawn_blocking(move || directory::remove_files(&dir, &owned_name))
            .await
            .map_err(|_| std::io::Error::other("removing the files failed"))
            .and_then(|removed| removed)
            .map_err(|cause| ChangeError::Files {
                name: name.to_string(),
                cause,
            })?;
        if existed {
            tracing::info!(droplet = name, "droplet removed");
        }
        Ok(existed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::droplets::table::tests::table;
    use crate::testing;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rollback_and_removal_of_a_droplet_that_is_not_there_say_so() {
        let parts = testing::parts();
        let droplets = table(&parts);
        assert!(matches!(
            droplets.rollback("ghost").await,
            Err(ChangeError::NotFound(_))
        ));
        assert!(!droplets.remove("ghost").await.unwrap());
    }
}
