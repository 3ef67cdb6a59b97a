//! Echo memory on SQLite: the values pcsync wrote to HubSpot properties, so their
//! webhooks coming back are recognised.

use super::*;
use crate::store::EchoMemory;

impl EchoMemory for SqliteStore {
    fn remember_write(
        &self,
        object: &str,
        property: &str,
        value: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.db()
            .conn
            .execute(
                "INSERT INTO written (object, property, value, written_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (object, property) DO UPDATE SET value = excluded.value, written_at = excluded.written_at",
                params![object, property, value, now_ms],
            )
            .map_err(err)?;
        Ok(())
    }

    fn last_write(&self, object: &str, property: &str) -> Result<Option<String>, StoreError> {
        self.db()
            .conn
            .query_row(
                "SELECT value FROM written WHERE object = ?1 AND property = ?2",
                params![object, property],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)
    }

    fn writes_since(
        &self,
        object: &str,
        since_ms: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let db = self.db();
        let mut query = db
            .conn
            .prepare_cached(
                "SELECT property, value FROM written WHERE object = ?1 AND written_at >= ?2",
            )
            .map_err(err)?;
        let rows = query
            .query_map(params![object, since_ms], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }

    fn written_since(&self, object: &str, since_ms: i64) -> Result<bool, StoreError> {
        self.db()
            .conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM written WHERE object = ?1 AND written_at >= ?2)",
                params![object, since_ms],
                |r| r.get(0),
            )
            .map_err(err)
    }
}
