//! The effect journal and pending settles on SQLite: what a retried batch must not
//! do twice, and the follow-ups it still owes.

use super::*;
use crate::store::EffectJournal;

impl EffectJournal for SqliteStore {
    fn effect_done(&self, key: &str) -> Result<bool, StoreError> {
        self.db()
            .conn
            .query_row(
                "SELECT 1 FROM effect_log WHERE key = ?1",
                params![key],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
            .map_err(err)
    }

    fn remember_effect(&self, key: &str, now_ms: i64) -> Result<(), StoreError> {
        self.noted(
            self.db()
                .conn
                .execute(
                    "INSERT OR IGNORE INTO effect_log (key, done_at) VALUES (?1, ?2)",
                    params![key, now_ms],
                )
                .map(|_| ())
                .map_err(err),
        )
    }

    fn pending_settle(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.db()
            .conn
            .query_row(
                "SELECT outcome FROM pending_settle WHERE key = ?1",
                params![key],
                |row| row.get(0),
            )
            .optional()
            .map_err(err)
    }

    fn save_settle(&self, key: &str, outcome: &str, now_ms: i64) -> Result<(), StoreError> {
        self.noted(
            self.db()
                .conn
                .execute(
                    "INSERT OR REPLACE INTO pending_settle (key, outcome, at) VALUES (?1, ?2, ?3)",
                    params![key, outcome, now_ms],
                )
                .map(|_| ())
                .map_err(err),
        )
    }

    fn clear_settle(&self, key: &str) -> Result<(), StoreError> {
        self.db()
            .conn
            .execute("DELETE FROM pending_settle WHERE key = ?1", params![key])
            .map(|_| ())
            .map_err(err)
    }
}
