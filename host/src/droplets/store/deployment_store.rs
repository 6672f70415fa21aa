//! [`DeploymentStore`]: the trait every deployment store implements.

use std::time::SystemTime;

use crate::droplets::version::VersionId;

/// How many versions of each droplet a store keeps.
pub const KEPT_VERSIONS: usize = 5;

/// A module and its optional manifest, as stored.
pub type VersionFiles = (Vec<u8>, Option<String>);

/// Published versions of every droplet, and which one each serves.
///
/// Every method may block (disk or network): call them off the async
/// workers.
pub trait DeploymentStore: Send + Sync + 'static {
    /// Names with a current version.
    fn names(&self) -> std::io::Result<Vec<String>>;
    /// The stored versions of `name`, newest (highest sequence) first.
    fn versions(&self, name: &str) -> std::io::Result<Vec<VersionId>>;
    /// The version `name` serves, and when it became current.
    fn current(&self, name: &str) -> std::io::Result<Option<(VersionId, SystemTime)>>;
    /// The module and manifest of a stored version.
    fn read(&self, name: &str, version: &VersionId) -> std::io::Result<VersionFiles>;
    /// Only the manifest of a stored version (lazy start-up reads no module).
    fn read_manifest(&self, name: &str, version: &VersionId) -> std::io::Result<Option<String>>;
    /// A sequence number for a new version, higher than any given before
    /// by this store (across every droplet, restarts and, for a shared
    /// store, every host).
    fn next_seq(&self) -> std::io::Result<u64>;
    /// Stores a new version and makes it current; keeps the newest
    /// [`KEPT_VERSIONS`].
    fn save(
        &self,
        name: &str,
        version: &VersionId,
        wasm: &[u8],
        manifest: Option<&str>,
    ) -> std::io::Result<()>;
    /// Makes a stored version current.
    fn set_current(&self, name: &str, version: &VersionId) -> std::io::Result<()>;
    /// Forgets every version of `name`.
    fn remove(&self, name: &str) -> std::io::Result<()>;
}
