//! Recorded runs on SQLite, for `pcsync replay`: one `run` row per event and pack
//! (a run planned again replaces its row), its opportunity and AWS summary kept once
//! per distinct value in `run_blob` under a digest of their JSON. Replay reads them
//! through its own read-only connection ([`read_runs`]), beside a running service.
//! Times are kept in nanoseconds: a run is planned again at exactly its time (a
//! note that shows `{{ now }}` reads the same).

use std::collections::HashMap;
use std::path::Path;

use pcsync_engine::replay::RecordedRun;
use rusqlite::OpenFlags;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::*;
use crate::store::{RunFilter, RunLog, RunRecord};

const NS_PER_MS: i64 = 1_000_000;

fn nanos(t: jiff::Timestamp) -> i64 {
    i64::try_from(t.as_nanosecond()).unwrap_or(i64::MAX)
}

fn digest(json: &str) -> String {
    Sha256::digest(json.as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl RunLog for SqliteStore {
    fn record_runs(&self, runs: &[RunRecord]) -> Result<(), StoreError> {
        let mut guard = self.db();
        let tx = guard.conn.transaction().map_err(err)?;
        {
            let mut blob = tx
                .prepare_cached("INSERT OR IGNORE INTO run_blob (hash, json) VALUES (?1, ?2)")
                .map_err(err)?;
            let mut run = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO run (event_id, pack, at, deal_id, event, context,
                         opportunity, aws_summary, entries, bytes)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .map_err(err)?;
            for r in runs {
                let mut bytes = r.event.len() + r.entries.len();
                let mut keep = |v: &Option<Value>| -> Result<Option<String>, StoreError> {
                    let Some(v) = v else { return Ok(None) };
                    let json = v.to_string();
                    let hash = digest(&json);
                    if blob.execute(params![hash, json]).map_err(err)? > 0 {
                        bytes += json.len();
                    }
                    Ok(Some(hash))
                };
                let opportunity = keep(&r.opportunity)?;
                let summary = keep(&r.aws_summary)?;
                let context = r.context.to_string();
                bytes += context.len();
                run.execute(params![
                    r.event_id,
                    r.pack,
                    nanos(r.at),
                    r.deal_id,
                    r.event,
                    context,
                    opportunity,
                    summary,
                    r.entries,
                    bytes as i64
                ])
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    fn prune_runs(&self, before_ms: i64, max_bytes: u64) -> Result<u64, StoreError> {
        let mut guard = self.db();
        let tx = guard.conn.transaction().map_err(err)?;
        let mut gone = tx
            .execute(
                "DELETE FROM run WHERE at < ?1",
                params![before_ms.saturating_mul(NS_PER_MS)],
            )
            .map_err(err)? as u64;
        // The newest runs that fit in `max_bytes` stay.
        let cut: Option<i64> = tx
            .query_row(
                "SELECT id FROM (SELECT id, SUM(bytes) OVER (ORDER BY id DESC) AS kept FROM run)
                 WHERE kept > ?1 ORDER BY id DESC LIMIT 1",
                params![i64::try_from(max_bytes).unwrap_or(i64::MAX)],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)?;
        if let Some(cut) = cut {
            gone += tx
                .execute("DELETE FROM run WHERE id <= ?1", params![cut])
                .map_err(err)? as u64;
        }
        if gone > 0 {
            tx.execute(
                "DELETE FROM run_blob WHERE hash NOT IN (
                     SELECT opportunity FROM run WHERE opportunity IS NOT NULL
                     UNION SELECT aws_summary FROM run WHERE aws_summary IS NOT NULL)",
                [],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(gone)
    }
}

/// Reads the recorded runs `filter` names from the state file at `path`, oldest
/// first, through a read-only connection: a running service goes on undisturbed
/// (WAL readers do not block its writer), and the file is never changed. Each run
/// is lent to `each` (many runs share one opportunity or summary, parsed once and
/// moved from run to run rather than copied). Returns how many were read.
pub fn read_runs(
    path: &Path,
    filter: &RunFilter,
    mut each: impl FnMut(&RecordedRun),
) -> Result<u64, StoreError> {
    let opening = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    // A reader writes the WAL index too (its read marks).
    super::wal_index::guard();
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(opening)?;
    conn.pragma_update(None, "busy_timeout", 5000)
        .map_err(opening)?;
    // Pages straight from the file mapping, not copied by a read(2) each: a
    // replay walks the whole record and looks its summaries up at random.
    conn.pragma_update(None, "mmap_size", 1i64 << 32)
        .map_err(opening)?;
    let has_runs: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'run')",
            [],
            |r| r.get(0),
        )
        .map_err(opening)?;
    if !has_runs {
        return Ok(0);
    }
    let mut q = conn
        .prepare(
            "SELECT r.id, r.at, r.pack, r.event, r.context, r.opportunity, r.aws_summary, r.entries
             FROM run r
             WHERE r.at >= ?1 AND r.at < ?2
               AND (?3 IS NULL OR r.pack = ?3) AND (?4 IS NULL OR r.deal_id = ?4)
             ORDER BY r.at, r.id",
        )
        .map_err(err)?;
    let mut blob = conn
        .prepare("SELECT json FROM run_blob WHERE hash = ?1")
        .map_err(err)?;
    // Opportunities and summaries already read, by digest, each kind on its own so
    // that many distinct summaries never push the opportunities out. Bounded, and
    // emptied when full. An opportunity is seen again by every run about it until it
    // changes, so many are kept; a summary is replaced at the next poll, so the runs
    // that share one come soon after it, and keeping few keeps the heap small and
    // warm (a record whose summaries are all distinct replayed about 8% faster).
    const CACHED: [usize; 2] = [16_384, 1_024];
    let mut blobs: [HashMap<String, Value>; 2] = [HashMap::new(), HashMap::new()];
    let mut rows = q
        .query(params![
            filter
                .from_ms
                .map_or(i64::MIN, |t| t.saturating_mul(NS_PER_MS)),
            filter
                .to_ms
                .map_or(i64::MAX, |t| t.saturating_mul(NS_PER_MS)),
            filter.pack,
            filter.deal
        ])
        .map_err(err)?;
    let mut read = 0;
    // Read in place, not copied out of SQLite's row.
    fn text<'r>(row: &'r rusqlite::Row<'_>, i: usize) -> Result<&'r str, StoreError> {
        row.get_ref(i).map_err(err)?.as_str().map_err(|e| {
            err(rusqlite::Error::FromSqlConversionFailure(
                i,
                rusqlite::types::Type::Text,
                Box::new(e),
            ))
        })
    }
    // Buffers lent to each run in turn, so that reading a run allocates only what
    // it parses.
    let (mut pack, mut entries_json) = (String::new(), String::new());
    while let Some(row) = rows.next().map_err(err)? {
        let hashes = [row.get_ref(5).map_err(err)?, row.get_ref(6).map_err(err)?]
            .map(|h| h.as_str_or_null().ok().flatten());
        // Taken from the cache for this run (its slot left empty), and put back
        // after it.
        let mut value = |kind: usize, hash: Option<&str>| -> Result<Option<Value>, StoreError> {
            let Some(hash) = hash else { return Ok(None) };
            if let Some(v) = blobs[kind].get_mut(hash) {
                return Ok(Some(std::mem::take(v)));
            }
            let v = blob
                .query_row(params![hash], |r| {
                    let json = r.get_ref(0)?.as_str()?;
                    Ok(serde_json::from_str(json))
                })
                .map_err(err)?
                .map_err(StoreError::Json)?;
            Ok(Some(v))
        };
        let id: i64 = row.get(0).map_err(err)?;
        let at: i64 = row.get(1).map_err(err)?;
        let mut context: pcsync_engine::Context =
            serde_json::from_str(text(row, 4)?).map_err(StoreError::Json)?;
        context.opportunity = value(0, hashes[0])?;
        context.aws_summary = value(1, hashes[1])?;
        // Recorded whole (typed, in one pass); the inbox's compact form otherwise.
        let event_text = text(row, 3)?;
        let event = match serde_json::from_str::<pcsync_engine::Event>(event_text) {
            Ok(event) => event,
            Err(_) => event_of(event_text)?,
        };
        pack.clear();
        pack.push_str(text(row, 2)?);
        entries_json.clear();
        entries_json.push_str(text(row, 7)?);
        let mut run = RecordedRun {
            id,
            at: jiff::Timestamp::from_nanosecond(i128::from(at)).unwrap_or_default(),
            pack: std::mem::take(&mut pack),
            event,
            context,
            entries_json: std::mem::take(&mut entries_json),
        };
        each(&run);
        read += 1;
        for (kind, hash, v) in [
            (0, hashes[0], run.context.opportunity.take()),
            (1, hashes[1], run.context.aws_summary.take()),
        ] {
            let cache = &mut blobs[kind];
            if let (Some(hash), Some(v)) = (hash, v) {
                match cache.get_mut(hash) {
                    Some(slot) => *slot = v,
                    None => {
                        if cache.len() >= CACHED[kind] {
                            cache.clear();
                        }
                        cache.insert(hash.to_string(), v);
                    }
                }
            }
        }
        (pack, entries_json) = (run.pack, run.entries_json);
    }
    Ok(read)
}
