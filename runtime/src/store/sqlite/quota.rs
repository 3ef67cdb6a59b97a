//! Daily quota counts on SQLite: calls per API, class and minute.

use super::*;
use crate::store::QuotaLog;

impl QuotaLog for SqliteStore {
    fn save_calls(
        &self,
        minutes: &[(&str, &str, i64, u64)],
        forget_before_ms: i64,
        replace: bool,
    ) -> Result<(), StoreError> {
        let mut db = self.db();
        let tx = db.conn.transaction().map_err(err)?;
        {
            let mut put = tx
                .prepare_cached(if replace {
                    "INSERT INTO api_calls (api, class, minute, calls) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT DO UPDATE SET calls = excluded.calls"
                } else {
                    "INSERT INTO api_calls (api, class, minute, calls) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT DO UPDATE SET calls = MAX(calls, excluded.calls)"
                })
                .map_err(err)?;
            for (api, class, minute, calls) in minutes {
                put.execute(params![api, class, minute, *calls as i64])
                    .map_err(err)?;
            }
            tx.execute(
                "DELETE FROM api_calls WHERE minute < ?1",
                params![forget_before_ms],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    fn load_calls(&self, api: &str, since_ms: i64) -> Result<Vec<(String, i64, u64)>, StoreError> {
        let db = self.db();
        let mut rows = db
            .conn
            .prepare_cached(
                "SELECT class, minute, calls FROM api_calls WHERE api = ?1 AND minute >= ?2
                 ORDER BY minute",
            )
            .map_err(err)?;
        rows.query_map(params![api, since_ms], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64))
        })
        .map_err(err)?
        .collect::<Result<_, _>>()
        .map_err(err)
    }
}
