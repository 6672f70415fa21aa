//! [`BackendConfig`]: the one place a kv backend is chosen from the host's
//! configuration, and opened.

use std::path::PathBuf;
use std::sync::Arc;

use super::backend::{Durability, KvBackend, OpenError};
use super::{postgres, sled};
use crate::ops::shutdown::Shutdown;
use crate::storage::database::{Database, DatabaseSettings};

/// Which backend keeps kv data, and its settings: chosen once from the
/// host's configuration.
#[derive(Debug, Clone)]
pub enum BackendConfig {
    /// The embedded default: sled in `dir`.
    Sled {
        /// The database directory (`{data}/kv`).
        dir: PathBuf,
        /// Whether writes wait for the disk.
        durability: Durability,
        /// The most memory sled's page cache may use, in bytes.
        cache_bytes: u64,
    },
    /// PostgreSQL (`DATABASE_URL`): shared by every host of a fleet, which
    /// also keeps its deployments there.
    Postgres {
        /// How to reach the database.
        database: DatabaseSettings,
        /// Whether a write waits for its commit to be durable.
        durability: Durability,
    },
}

/// An open backend, and the database it lives in (PostgreSQL only: the
/// deployment store and the fleet use the same pool).
pub struct OpenBackend {
    /// The kv store.
    pub kv: Arc<dyn KvBackend>,
    /// The database, when the backend is PostgreSQL.
    pub database: Option<Arc<Database>>,
}

impl BackendConfig {
    /// The backend's name, for the start-up line and `/health`.
    pub fn name(&self) -> &'static str {
        match self {
            BackendConfig::Sled { .. } => "sled",
            BackendConfig::Postgres { .. } => "postgres",
        }
    }

    /// Opens the backend and starts its upkeep, which ends at `shutdown`.
    pub async fn open(&self, shutdown: &Shutdown) -> Result<OpenBackend, OpenError> {
        match self.clone() {
            BackendConfig::Sled {
                dir,
                durability,
                cache_bytes,
            } => {
                let backend = tokio::task::spawn_blocking(move || {
                    sled::SledBackend::open(&dir, durability, cache_bytes)
                })
                .await
                .map_err(|_| OpenError::Interrupted)??;
                backend.spawn_purger(shutdown);
                Ok(OpenBackend {
                    kv: Arc::new(backend),
                    database: None,
                })
            }
            BackendConfig::Postgres {
                database,
                durability,
            } => {
                let database = Database::connect(&database, shutdown).await?;
                let backend = Arc::new(postgres::PostgresBackend::new(
                    Arc::clone(&database),
                    durability,
                ));
                backend.spawn_purger(shutdown);
                Ok(OpenBackend {
                    kv: backend,
                    database: Some(database),
                })
            }
        }
    }
}
