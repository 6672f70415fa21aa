//! The fleet's rollouts in PostgreSQL: `droplet_rollouts` holds each
//! rollout's record (written only over the revision before it, so one
//! write wins when two hosts decide), `rollout_counts` what every host
//! counted of a step (the judge sums them), and `rollout_judge` the lease
//! of the one host that judges, taken over when it is not renewed.

use std::time::Duration;

use super::StoreError;
use super::postgres::PostgresStore;
use crate::droplets::rollout::plan::Rollout;
use crate::droplets::rollout::window::Counts;

/// How long the judge's lease lasts unless renewed (each second): a judge
/// killed mid-rollout is replaced within this.
pub const JUDGE_LEASE: Duration = Duration::from_secs(5);

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// One host's counts of a step, as stored.
#[derive(serde::Serialize, serde::Deserialize)]
struct StepCounts {
    canary: Counts,
    stable: Counts,
}

impl PostgresStore {
    /// Every rollout of `name` (newest first), or every running one.
    pub(super) async fn read_rollouts(
        &self,
        name: Option<&str>,
    ) -> Result<Vec<Rollout>, StoreError> {
        let db = self.database();
        let client = db.client().await?;
        let rows = match name {
            Some(name) => {
                client
                    .query(
                        "SELECT record FROM droplet_rollouts WHERE name = $1",
                        &[&name],
                    )
                    .await
            }
            None => {
                client
                    .query(
                        "SELECT record FROM droplet_rollouts WHERE state = 'running'",
                        &[],
                    )
                    .await
            }
        }
        .map_err(|err| db.fail(err))?;
        let mut rollouts = rows
            .iter()
            .map(|row| {
                let record: &str = row.try_get(0).map_err(corrupt)?;
                serde_json::from_str::<Rollout>(record).map_err(corrupt)
            })
            .collect::<Result<Vec<_>, _>>()?;
        rollouts.sort_by_key(|rollout| std::cmp::Reverse(rollout.started_at_ms));
        Ok(rollouts)
    }

    /// Writes `rollout` over the revision before it, with a hint to the
    /// fleet in the same transaction; whether it was written.
    pub(super) async fn write_rollout_record(&self, rollout: &Rollout) -> Result<bool, StoreError> {
        let db = self.database();
        let record = serde_json::to_string(rollout).map_err(corrupt)?;
        let mut client = db.client().await?;
        let tx = client.transaction().await.map_err(|err| db.fail(err))?;
        let (name, canary, state) = (&rollout.name, &rollout.canary, rollout.state.as_str());
        let rev = rollout.rev as i64;
        let steps = async {
            let written = if rollout.rev == 1 {
                tx.execute(
                    "INSERT INTO droplet_rollouts (name, canary, state, rev, record)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    &[name, canary, &state, &rev, &record],
                )
                .await?
            } else {
                tx.execute(
                    "UPDATE droplet_rollouts SET state = $3, rev = $4, record = $5, updated_at = now()
                     WHERE name = $1 AND canary = $2 AND rev = $6",
                    &[name, canary, &state, &rev, &record, &(rev - 1)],
                )
                .await?
            };
            if written == 1 {
                if !rollout.running() {
                    tx.execute(
                        "DELETE FROM rollout_counts WHERE name = $1 AND canary = $2",
                        &[name, canary],
                    )
                    .await?;
                }
                self.hint(&tx, name, "rollout").await?;
            }
            Ok::<_, tokio_postgres::Error>(written == 1)
        };
        let written = steps.await.map_err(|err| db.fail(err))?;
        tx.commit().await.map_err(|err| db.fail(err))?;
        Ok(written)
    }

    /// Records `host`'s counts of the current step of `rollout`.
    pub(super) async fn report_step_counts(
        &self,
        host: &str,
        rollout: &Rollout,
        canary: &Counts,
        stable: &Counts,
    ) -> Result<(), StoreError> {
        let db = self.database();
        let counts = serde_json::to_string(&StepCounts {
            canary: canary.clone(),
            stable: stable.clone(),
        })
        .map_err(corrupt)?;
        let client = db.client().await?;
        client
            .execute(
                "INSERT INTO rollout_counts (name, canary, step_started_at, host_id, counts)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (name, canary, step_started_at, host_id)
                 DO UPDATE SET counts = excluded.counts, updated_at = now()",
                &[
                    &rollout.name,
                    &rollout.canary,
                    &(rollout.step_started_at_ms as i64),
                    &host,
                    &counts,
                ],
            )
            .await
            .map_err(|err| db.fail(err))?;
        Ok(())
    }

    /// Every host's counts of the current step of `rollout`, summed.
    pub(super) async fn sum_step_counts(
        &self,
        rollout: &Rollout,
    ) -> Result<(Counts, Counts), StoreError> {
        let db = self.database();
        let client = db.client().await?;
        let rows = client
            .query(
                "SELECT counts FROM rollout_counts
                 WHERE name = $1 AND canary = $2 AND step_started_at = $3",
                &[
                    &rollout.name,
                    &rollout.canary,
                    &(rollout.step_started_at_ms as i64),
                ],
            )
            .await
            .map_err(|err| db.fail(err))?;
        let (mut canary, mut stable) = (Counts::default(), Counts::default());
        for row in rows {
            let text: &str = row.try_get(0).map_err(corrupt)?;
            let host: StepCounts = serde_json::from_str(text).map_err(corrupt)?;
            canary.add(&host.canary);
            stable.add(&host.stable);
        }
        Ok((canary, stable))
    }

    /// Takes the judge's lease for `host` if it is free, expired or
    /// already `host`'s (renewing it); whether `host` holds it.
    pub(super) async fn take_judge_lease(&self, host: &str) -> Result<bool, StoreError> {
        let db = self.database();
        let client = db.client().await?;
        let lease = JUDGE_LEASE.as_secs_f64();
        let row = client
            .query_opt(
                "INSERT INTO rollout_judge (id, host_id, expires_at)
                 VALUES (1, $1, now() + $2::float8 * interval '1 second')
                 ON CONFLICT (id) DO UPDATE
                 SET host_id = excluded.host_id, expires_at = excluded.expires_at
                 WHERE rollout_judge.host_id = excluded.host_id
                    OR rollout_judge.expires_at < now()
                 RETURNING host_id",
                &[&host, &lease],
            )
            .await
            .map_err(|err| db.fail(err))?;
        Ok(row.is_some())
    }
}
