//! Pack state on SQLite: the last-known watched values per opportunity and pack.

use super::*;
use crate::store::PackStates;

impl PackStates for SqliteStore {
    fn pack_states(&self, opportunity_id: &str) -> Result<IndexMap<String, PackState>, StoreError> {
        let db = self.db();
        let mut q = db
            .conn
            .prepare_cached(
                "SELECT pack, state FROM pack_state WHERE opportunity_id = ?1 ORDER BY pack",
            )
            .map_err(err)?;
        let rows: Vec<(String, String)> = q
            .query_map(params![opportunity_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(err)?
            .collect::<Result<_, _>>()
            .map_err(err)?;
        rows.into_iter()
            .map(|(pack, text)| serde_json::from_str(&text).map(|s| (pack, s)).map_err(err))
            .collect()
    }

    fn record_state(
        &self,
        pack: &str,
        record: &StateRecord,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let opportunity_id = record.opportunity_id.as_str();
        let mut db = self.db();
        let tx = db.conn.transaction().map_err(err)?;
        let existing: Option<String> = tx
            .query_row(
                "SELECT state FROM pack_state WHERE opportunity_id = ?1 AND pack = ?2",
                params![opportunity_id, pack],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)?;
        let mut merged: PackState = match existing {
            Some(text) => serde_json::from_str(&text).map_err(err)?,
            None => PackState::default(),
        };
        merged.merge(record);
        tx.execute(
            "INSERT INTO pack_state (opportunity_id, pack, state, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (opportunity_id, pack) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
            params![opportunity_id, pack, serde_json::to_string(&merged).map_err(err)?, now_ms],
        )
        .map_err(err)?;
        tx.commit().map_err(err)
    }
}
