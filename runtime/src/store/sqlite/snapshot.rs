//! The resource snapshot cache on SQLite: each revision's JSON as AWS returned it,
//! with when it was last used, so that pruning keeps the revisions still read.

use super::*;
use crate::store::{SnapshotCache, SnapshotId};

/// How stale `used_at` may get before a read refreshes it: a read is not worth a
/// write each time, and pruning works in days.
const TOUCH_AFTER_MS: i64 = 24 * 3600 * 1000;

impl SnapshotCache for SqliteStore {
    fn cached_snapshot(
        &self,
        id: SnapshotId<'_>,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        let db = self.db();
        let key = params![id.opportunity, id.engagement, id.template, id.revision];
        let found: Option<(String, i64)> = db
            .conn
            .query_row(
                "SELECT json, used_at FROM snapshot
                 WHERE opportunity_id = ?1 AND engagement_id = ?2 AND template = ?3 AND revision = ?4",
                key,
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(err)?;
        let Some((json, used_at)) = found else {
            return Ok(None);
        };
        if now_ms - used_at > TOUCH_AFTER_MS {
            // Only bookkeeping for pruning: a store that refuses writes still serves
            // the revision.
            if let Err(e) = db.conn.execute(
                "UPDATE snapshot SET used_at = ?5
                 WHERE opportunity_id = ?1 AND engagement_id = ?2 AND template = ?3 AND revision = ?4",
                params![id.opportunity, id.engagement, id.template, id.revision, now_ms],
            ) {
                tracing::debug!(error = %e, "cannot mark a cached snapshot used");
            }
        }
        Ok(Some(json))
    }

    fn cache_snapshot(
        &self,
        id: SnapshotId<'_>,
        json: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.db()
            .conn
            .execute(
                "INSERT INTO snapshot (opportunity_id, engagement_id, template, revision, json, used_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT DO UPDATE SET json = excluded.json, used_at = excluded.used_at",
                params![id.opportunity, id.engagement, id.template, id.revision, json, now_ms],
            )
            .map_err(err)?;
        Ok(())
    }

    fn prune_snapshots(&self, before_ms: i64) -> Result<u64, StoreError> {
        let n = self
            .db()
            .conn
            .execute(
                "DELETE FROM snapshot WHERE used_at < ?1",
                params![before_ms],
            )
            .map_err(err)?;
        Ok(n as u64)
    }
}
