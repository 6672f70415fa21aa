//! Where published versions are kept, so a restart serves what was
//! published last and rollback can go back through the last versions.
//!
//! [`DeploymentStore`] is the seam: [`file::FileStore`] keeps versions under
//! the data directory (the embedded default); [`postgres::PostgresStore`]
//! keeps them in the fleet's database, shared by every host.

pub mod deployment_store;
pub mod file;
mod file_rollouts;
pub mod postgres;
pub mod postgres_rollouts;

pub use self::deployment_store::{DeploymentStore, KEPT_VERSIONS, StoreError, VersionFiles};
