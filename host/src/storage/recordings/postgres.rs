//! Recordings on a fleet: the `droplet_recordings` table, so a recording
//! made on one host is fetched through any other.

use std::sync::Arc;

use tokio_postgres::Row;

use super::store::{Bounds, RecordingStore, RecordingSummary, RecordingsUnavailable, outermost};
use crate::storage::database::Database;

/// Recordings in the fleet's database.
pub struct PostgresRecordings {
    database: Arc<Database>,
}

impl PostgresRecordings {
    /// Recordings kept in `database`.
    pub fn new(database: Arc<Database>) -> Self {
        Self { database }
    }
}

fn unavailable(err: impl std::fmt::Display) -> RecordingsUnavailable {
    RecordingsUnavailable(err.to_string())
}

const SUMMARY_COLUMNS: &str =
    "trace_id, droplet, version, caller, recorded_at_ms, status, reason, host, bytes";

fn summary(row: &Row) -> Result<RecordingSummary, RecordingsUnavailable> {
    let number = |index: usize| -> Result<i64, RecordingsUnavailable> {
        row.try_get::<_, i64>(index).map_err(unavailable)
    };
    Ok(RecordingSummary {
        trace_id: row.try_get(0).map_err(unavailable)?,
        droplet: row.try_get(1).map_err(unavailable)?,
        version: row.try_get(2).map_err(unavailable)?,
        caller: row.try_get(3).map_err(unavailable)?,
        recorded_at_ms: u64::try_from(number(4)?).unwrap_or_default(),
        status: u16::try_from(row.try_get::<_, i32>(5).map_err(unavailable)?).unwrap_or_default(),
        reason: row.try_get(6).map_err(unavailable)?,
        host: row.try_get(7).map_err(unavailable)?,
        bytes: u64::try_from(number(8)?).unwrap_or_default(),
    })
}

fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[async_trait::async_trait]
impl RecordingStore for PostgresRecordings {
    async fn put(
        &self,
        summary: &RecordingSummary,
        document: &[u8],
        bounds: Bounds,
    ) -> Result<(), RecordingsUnavailable> {
        let db = &self.database;
        let mut client = db.client().await.map_err(unavailable)?;
        let tx = client
            .transaction()
            .await
            .map_err(|err| unavailable(db.fail(err)))?;
        let (recorded_at, bytes) = (signed(summary.recorded_at_ms), signed(summary.bytes));
        let status = i32::from(summary.status);
        tx.execute(
            "INSERT INTO droplet_recordings
                 (trace_id, droplet, version, caller, recorded_at_ms, status, reason, host, bytes, document)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (trace_id, droplet) DO UPDATE SET
                 version = EXCLUDED.version, caller = EXCLUDED.caller,
                 recorded_at_ms = EXCLUDED.recorded_at_ms, status = EXCLUDED.status,
                 reason = EXCLUDED.reason, host = EXCLUDED.host, bytes = EXCLUDED.bytes,
                 document = EXCLUDED.document",
            &[
                &summary.trace_id,
                &summary.droplet,
                &summary.version,
                &summary.caller,
                &recorded_at,
                &status,
                &summary.reason,
                &summary.host,
                &bytes,
                &document,
            ],
        )
        .await
        .map_err(|err| unavailable(db.fail(err)))?;
        // The newest first; whatever passes either bound goes.
        tx.execute(
            "DELETE FROM droplet_recordings r USING (
                 SELECT trace_id FROM (
                     SELECT trace_id,
                            row_number() OVER w AS n,
                            sum(bytes) OVER w AS total
                     FROM droplet_recordings WHERE droplet = $1
                     WINDOW w AS (ORDER BY recorded_at_ms DESC, trace_id DESC)
                 ) ranked WHERE n > $2::bigint OR total > $3::bigint
             ) old
             WHERE r.droplet = $1 AND r.trace_id = old.trace_id",
            &[
                &summary.droplet,
                &signed(bounds.count),
                &signed(bounds.bytes),
            ],
        )
        .await
        .map_err(|err| unavailable(db.fail(err)))?;
        tx.commit().await.map_err(|err| unavailable(db.fail(err)))?;
        Ok(())
    }

    async fn list(
        &self,
        droplet: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RecordingSummary>, RecordingsUnavailable> {
        let db = &self.database;
        let client = db.client().await.map_err(unavailable)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client
            .query(
                &format!(
                    "SELECT {SUMMARY_COLUMNS} FROM droplet_recordings
                     WHERE $1::text IS NULL OR droplet = $1
                     ORDER BY recorded_at_ms DESC LIMIT $2"
                ),
                &[&droplet, &limit],
            )
            .await
            .map_err(|err| unavailable(db.fail(err)))?;
        rows.iter().map(summary).collect()
    }

    async fn get(
        &self,
        trace_id: &str,
        droplet: Option<&str>,
    ) -> Result<Option<(RecordingSummary, Vec<u8>)>, RecordingsUnavailable> {
        let db = &self.database;
        let client = db.client().await.map_err(unavailable)?;
        let rows = client
            .query(
                &format!(
                    "SELECT {SUMMARY_COLUMNS} FROM droplet_recordings
                     WHERE trace_id = $1 AND ($2::text IS NULL OR droplet = $2)"
                ),
                &[&trace_id, &droplet],
            )
            .await
            .map_err(|err| unavailable(db.fail(err)))?;
        let found = rows.iter().map(summary).collect::<Result<Vec<_>, _>>()?;
        let Some(chosen) = outermost(found) else {
            return Ok(None);
        };
        let row = client
            .query_opt(
                "SELECT document FROM droplet_recordings WHERE trace_id = $1 AND droplet = $2",
                &[&chosen.trace_id, &chosen.droplet],
            )
            .await
            .map_err(|err| unavailable(db.fail(err)))?;
        match row {
            Some(row) => Ok(Some((chosen, row.try_get(0).map_err(unavailable)?))),
            None => Ok(None),
        }
    }
}
