//! [`DeploymentStore`]: the trait every deployment store implements, and
//! [`StoreError`], what it fails with.

use std::time::SystemTime;

use async_trait::async_trait;

use crate::droplets::rollout::plan::Rollout;
use crate::droplets::rollout::window::Counts;
use crate::droplets::version::VersionId;
use crate::storage::database::DbError;

/// How many versions of each droplet a store keeps.
pub const KEPT_VERSIONS: usize = 5;

/// A module and its optional manifest, as stored.
pub type VersionFiles = (Vec<u8>, Option<String>);

/// Why a store could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The disk refused (the file store).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The database refused or cannot be reached (a fleet's store).
    #[error("{0}")]
    Database(#[from] DbError),
    /// The version asked for is not (or no longer) stored.
    #[error("version {version} of {name} is not stored")]
    NotStored {
        /// The droplet.
        name: String,
        /// The version.
        version: String,
    },
    /// A stored row did not read back as what the store wrote.
    #[error("a stored record does not read back: {0}")]
    Corrupt(String),
}

/// Published versions of every droplet, and which one each serves.
///
/// Async, like [`crate::storage::kv::KvBackend`]: a store on the network
/// awaits its queries; one on the disk runs its blocking calls on the
/// blocking pool. No method blocks an async worker.
#[async_trait]
pub trait DeploymentStore: Send + Sync + 'static {
    /// Names with a current version.
    async fn names(&self) -> Result<Vec<String>, StoreError>;
    /// The stored versions of `name`, newest (highest sequence) first.
    async fn versions(&self, name: &str) -> Result<Vec<VersionId>, StoreError>;
    /// The version `name` serves, and when it became current.
    async fn current(&self, name: &str) -> Result<Option<(VersionId, SystemTime)>, StoreError>;
    /// The module and manifest of a stored version.
    async fn read(&self, name: &str, version: &VersionId) -> Result<VersionFiles, StoreError>;
    /// Only the manifest of a stored version (lazy start-up reads no module).
    async fn read_manifest(
        &self,
        name: &str,
        version: &VersionId,
    ) -> Result<Option<String>, StoreError>;
    /// A sequence number for a new version, higher than any given before
    /// by this store (across every droplet, restarts and, for a shared
    /// store, every host).
    async fn next_seq(&self) -> Result<u64, StoreError>;
    /// Stores a new version, current unless `beside` (a canary, stored
    /// beside the current version); keeps the newest [`KEPT_VERSIONS`] and
    /// the current one.
    async fn save(
        &self,
        name: &str,
        version: &VersionId,
        wasm: &[u8],
        manifest: Option<&str>,
        beside: bool,
    ) -> Result<(), StoreError>;
    /// Makes a stored version current.
    async fn set_current(&self, name: &str, version: &VersionId) -> Result<(), StoreError>;
    /// Forgets every version of `name`, and its rollouts.
    async fn remove(&self, name: &str) -> Result<(), StoreError>;

    /// Every rollout of `name` kept, newest first.
    async fn rollouts(&self, name: &str) -> Result<Vec<Rollout>, StoreError>;
    /// Every running rollout, of every droplet.
    async fn running_rollouts(&self) -> Result<Vec<Rollout>, StoreError>;
    /// Writes `rollout` only if the stored record of its canary has the
    /// revision before `rollout.rev` (none, for revision 1): whether it
    /// was written. Two hosts deciding one step: one write wins.
    async fn write_rollout(&self, rollout: &Rollout) -> Result<bool, StoreError>;
    /// Records what `host` counted of the current step of `rollout` (a
    /// fleet sums every host's); the file store, one host's, keeps nothing.
    async fn report_counts(
        &self,
        host: &str,
        rollout: &Rollout,
        canary: &Counts,
        stable: &Counts,
    ) -> Result<(), StoreError>;
    /// The fleet's counts of the current step of `rollout` (canary,
    /// stable), summed over every host's report; `None` from a store one
    /// host owns, whose judge uses its own counts.
    async fn fleet_counts(&self, rollout: &Rollout)
    -> Result<Option<(Counts, Counts)>, StoreError>;
    /// Takes or renews, for `host`, the lease that lets one host at a time
    /// judge rollouts; whether `host` holds it. Always, for one host's
    /// store.
    async fn judge_lease(&self, host: &str) -> Result<bool, StoreError>;
}
