//! The fleet's deployment store: versions in PostgreSQL, shared by every
//! host. `droplet_versions` holds modules and manifests, `droplet_current`
//! which version each droplet serves; version sequence numbers come from
//! one database sequence, so they increase across the whole fleet.
//!
//! Every change (a new current version, a rollback, a removal) is committed
//! with a `NOTIFY` on the fleet's channel in the same transaction; the
//! notification is only a hint — hosts also reconcile on a timer
//! ([`crate::droplets::fleet`]), since a notification is lost while a host is
//! disconnected.
//!

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

use super::{DeploymentStore, KEPT_VERSIONS, StoreError, VersionFiles};
use crate::droplets::rollout::plan::Rollout;
use crate::droplets::rollout::window::Counts;
use crate::droplets::version::VersionId;
use crate::storage::database::{Database, DbError};

/// Versions in the fleet's database.
pub struct PostgresStore {
    db: Arc<Database>,
}

/// A row whose column does not read back as the store wrote it.
fn corrupt(err: tokio_postgres::Error) -> StoreError {
    StoreError::Corrupt(err.to_string())
}

impl PostgresStore {
    /// The store in `db`.
    pub fn new(db: Arc<Database>) -> Self {
        Self { db }
    }

    /// The database.
    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    /// Every droplet's current version: what every host should serve.
    pub async fn wanted(&self) -> Result<Vec<(String, VersionId)>, DbError> {
        let client = self.db.client().await?;
        let rows = client
            .query(
                "SELECT c.name, v.id FROM droplet_current c
                 JOIN droplet_versions v ON v.name = c.name AND v.seq = c.seq",
                &[],
            )
            .await
            .map_err(|err| self.db.fail(err))?;
        self.db.mark_ok();
        Ok(rows
            .iter()
            .filter_map(|row| {
                let name = row.try_get(0).ok()?;
                Some((name, VersionId::parse(row.try_get(1).ok()?)?))
            })
            .collect())
    }

    /// Makes `seq` the current version of `name` and tells the fleet, in
    /// the transaction `tx`.
    async fn make_current(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        name: &str,
        version: &VersionId,
    ) -> Result<(), tokio_postgres::Error> {
        tx.execute(
            "INSERT INTO droplet_current (name, seq, since) VALUES ($1, $2, now())
             ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, since = excluded.since",
            &[&name, &(version.seq() as i64)],
        )
        .await?;
        self.hint(tx, name, version.as_str()).await
    }

    /// The fleet's hint that `name` changed (to `version`, `removed`, or
    /// `rollout`).
    pub(super) async fn hint(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        name: &str,
        version: &str,
    ) -> Result<(), tokio_postgres::Error> {
        tx.execute(
            "SELECT pg_notify($1, $2)",
            &[&self.db.channel(), &format!("{name} {version}")],
        )
        .await
        .map(|_| ())
    }
}

#[async_trait]
impl DeploymentStore for PostgresStore {
    async fn names(&self) -> Result<Vec<String>, StoreError> {
        let client = self.db.client().await?;
        let rows = client
            .query("SELECT name FROM droplet_current", &[])
            .await
            .map_err(|err| self.db.fail(err))?;
        rows.iter()
            .map(|row| row.try_get(0).map_err(corrupt))
            .collect()
    }

    async fn versions(&self, name: &str) -> Result<Vec<VersionId>, StoreError> {
        let client = self.db.client().await?;
        let rows = client
            .query(
                "SELECT id FROM droplet_versions WHERE name = $1 ORDER BY seq DESC",
                &[&name],
            )
            .await
            .map_err(|err| self.db.fail(err))?;
        rows.iter()
            .map(|row| row.try_get(0).map_err(corrupt))
            .filter_map(|id| id.map(VersionId::parse).transpose())
            .collect()
    }

    async fn current(&self, name: &str) -> Result<Option<(VersionId, SystemTime)>, StoreError> {
        let client = self.db.client().await?;
        let row = client
            .query_opt(
                "SELECT v.id, c.since FROM droplet_current c
                 JOIN droplet_versions v ON v.name = c.name AND v.seq = c.seq
                 WHERE c.name = $1",
                &[&name],
            )
            .await
            .map_err(|err| self.db.fail(err))?;
        match row {
            None => Ok(None),
            Some(row) => {
                let id: &str = row.try_get(0).map_err(corrupt)?;
                let since = row.try_get(1).map_err(corrupt)?;
                Ok(VersionId::parse(id).map(|id| (id, since)))
            }
        }
    }

    async fn read(&self, name: &str, version: &VersionId) -> Result<VersionFiles, StoreError> {
        let client = self.db.client().await?;
        let row = client
            .query_opt(
                "SELECT module, manifest FROM droplet_versions
                 WHERE name = $1 AND seq = $2 AND id = $3",
                &[&name, &(version.seq() as i64), &version.as_str()],
            )
            .await
            .map_err(|err| self.db.fail(err))?
            .ok_or_else(|| StoreError::NotStored {
                name: name.to_string(),
                version: version.to_string(),
            })?;
        Ok((
            row.try_get(0).map_err(corrupt)?,
            row.try_get(1).map_err(corrupt)?,
        ))
    }

    async fn read_manifest(
        &self,
        name: &str,
        version: &VersionId,
    ) -> Result<Option<String>, StoreError> {
        let client = self.db.client().await?;
        let row = client
            .query_opt(
                "SELECT manifest FROM droplet_versions WHERE name = $1 AND seq = $2",
                &[&name, &(version.seq() as i64)],
            )
            .await
            .map_err(|err| self.db.fail(err))?;
        match row {
            Some(row) => row.try_get(0).map_err(corrupt),
            None => Ok(None),
        }
    }

    async fn next_seq(&self) -> Result<u64, StoreError> {
        let client = self.db.client().await?;
        let row = client
            .query_one("SELECT nextval('droplet_version_seq')", &[])
            .await
            .map_err(|err| self.db.fail(err))?;
        Ok(row.try_get::<_, i64>(0).map_err(corrupt)? as u64)
    }

    async fn save(
        &self,
        name: &str,
        version: &VersionId,
        wasm: &[u8],
        manifest: Option<&str>,
        beside: bool,
    ) -> Result<(), StoreError> {
        let mut client = self.db.client().await?;
        let db = &self.db;
        let tx = client.transaction().await.map_err(|err| db.fail(err))?;
        let seq = version.seq() as i64;
        let steps = async {
            tx.execute(
                "INSERT INTO droplet_versions (name, seq, id, module, manifest)
                 VALUES ($1, $2, $3, $4, $5)",
                &[&name, &seq, &version.as_str(), &wasm, &manifest],
            )
            .await?;
            if !beside {
                self.make_current(&tx, name, version).await?;
            }
            tx.execute(
                "DELETE FROM droplet_versions WHERE name = $1 AND seq NOT IN (
                     SELECT seq FROM droplet_versions WHERE name = $1
                     ORDER BY seq DESC LIMIT $2
                 ) AND seq <> $3
                 AND seq NOT IN (SELECT seq FROM droplet_current WHERE name = $1)",
                &[&name, &(KEPT_VERSIONS as i64), &seq],
            )
            .await?;
            // A pruned canary's rollout goes with it.
            tx.execute(
                "DELETE FROM droplet_rollouts WHERE name = $1
                 AND canary NOT IN (SELECT id FROM droplet_versions WHERE name = $1)",
                &[&name],
            )
            .await
            .map(|_| ())
        };
        steps.await.map_err(|err| db.fail(err))?;
        Ok(tx.commit().await.map_err(|err| db.fail(err))?)
    }

    async fn set_current(&self, name: &str, version: &VersionId) -> Result<(), StoreError> {
        let mut client = self.db.client().await?;
        let db = &self.db;
        let tx = client.transaction().await.map_err(|err| db.fail(err))?;
        self.make_current(&tx, name, version)
            .await
            .map_err(|err| db.fail(err))?;
        Ok(tx.commit().await.map_err(|err| db.fail(err))?)
    }

    async fn remove(&self, name: &str) -> Result<(), StoreError> {
        let mut client = self.db.client().await?;
        let db = &self.db;
        let tx = client.transaction().await.map_err(|err| db.fail(err))?;
        let steps = async {
            tx.execute("DELETE FROM droplet_current WHERE name = $1", &[&name])
                .await?;
            tx.execute("DELETE FROM droplet_versions WHERE name = $1", &[&name])
                .await?;
            tx.execute("DELETE FROM fleet_served WHERE name = $1", &[&name])
                .await?;
            tx.execute("DELETE FROM droplet_rollouts WHERE name = $1", &[&name])
                .await?;
            tx.execute("DELETE FROM rollout_counts WHERE name = $1", &[&name])
                .await?;
            self.hint(&tx, name, "removed").await
        };
        steps.await.map_err(|err| db.fail(err))?;
        Ok(tx.commit().await.map_err(|err| db.fail(err))?)
    }

    async fn rollouts(&self, name: &str) -> Result<Vec<Rollout>, StoreError> {
        self.read_rollouts(Some(name)).await
    }

    async fn running_rollouts(&self) -> Result<Vec<Rollout>, StoreError> {
        self.read_rollouts(None).await
    }

    async fn write_rollout(&self, rollout: &Rollout) -> Result<bool, StoreError> {
        self.write_rollout_record(rollout).await
    }

    async fn report_counts(
        &self,
        host: &str,
        rollout: &Rollout,
        canary: &Counts,
        stable: &Counts,
    ) -> Result<(), StoreError> {
        self.report_step_counts(host, rollout, canary, stable).await
    }

    async fn fleet_counts(
        &self,
        rollout: &Rollout,
    ) -> Result<Option<(Counts, Counts)>, StoreError> {
        self.sum_step_counts(rollout).await.map(Some)
    }

    async fn judge_lease(&self, host: &str) -> Result<bool, StoreError> {
        self.take_judge_lease(host).await
    }
}
