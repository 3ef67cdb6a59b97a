//! The SQLite store: one file, WAL journal, `synchronous=FULL` so that an accepted
//! event survives a crash of the process or the machine once `accept` returns.
//!
//! Group commit: requests accepting events at the same time share one transaction
//! (one fsync). The first to arrive while no commit is running leads: it takes every
//! queued request's rows, writes them together and hands each its own counts; the
//! others wait for their answer, or lead the next group if theirs missed this one.
//! One connection serves everything, behind a mutex, so the worker's transactions
//! never wait in SQLite's busy handler (which sleeps in steps of up to 100 ms).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Condvar, Mutex};

use indexmap::IndexMap;
use pcsync_engine::{Event, PackState};
use rusqlite::{Connection, OptionalExtension, params};

use super::{Accepted, Batch, Claimed, DeadLetter, Deferred, InboxStats, Store, StoreError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS inbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id     TEXT NOT NULL UNIQUE,
    ordering_key TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    event        TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'running', 'deferred', 'done', 'dead')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    not_before   INTEGER NOT NULL,
    last_error   TEXT,
    updated_at   INTEGER NOT NULL
);
DROP INDEX IF EXISTS inbox_order;
CREATE INDEX IF NOT EXISTS inbox_due ON inbox (status, not_before, seq);
CREATE INDEX IF NOT EXISTS inbox_key ON inbox (ordering_key, status, seq);
CREATE TABLE IF NOT EXISTS pack_state (
    opportunity_id TEXT NOT NULL,
    pack           TEXT NOT NULL,
    state          TEXT NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (opportunity_id, pack)
);
CREATE TABLE IF NOT EXISTS effect_log (
    key     TEXT PRIMARY KEY,
    done_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS written (
    object     TEXT NOT NULL,
    property   TEXT NOT NULL,
    value      TEXT NOT NULL,
    written_at INTEGER NOT NULL,
    PRIMARY KEY (object, property)
);
";

/// The embedded store.
pub struct SqliteStore {
    db: Mutex<Connection>,
    group: Mutex<Group>,
    turn: Condvar,
    /// Ends the checkpoint thread when the store goes.
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Checkpoints the WAL every 200 ms until `stop`: PASSIVE, which never blocks the
/// writer. Under writes that never pause, the log cannot start over that way, so once
/// the WAL file has grown past 256 MiB every checkpoint is a RESTART, which holds
/// writers back while it copies the frames since the previous one (200 ms' worth)
/// and lets the log start over. The file keeps its size; that is its disk cost.
/// (Measured on the ingest bench: RESTART only when the log itself passes a frame
/// count, with the file cut back after, gave a worse p99, from fewer, larger copies.)
fn checkpoint(db: Connection, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let wal = db.path().map(|p| format!("{p}-wal"));
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let large = wal
            .as_ref()
            .and_then(|w| std::fs::metadata(w).ok())
            .is_some_and(|m| m.len() > 256 * 1024 * 1024);
        let mode = if large { "RESTART" } else { "PASSIVE" };
        if let Err(e) = db.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(())) {
            tracing::debug!(error = %e, "WAL checkpoint");
        }
    }
    let _ = db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
}

/// Rows one claim marks running at most (after the first batch).
const CLAIM_ROWS: usize = 256;

/// An event ready to insert: id, ordering key, JSON.
type Row = (String, String, String);

/// A claimed inbox row: sequence number, event JSON, attempts so far.
type StoredRow = (i64, String, u32);

/// Requests waiting for the next group commit, and the answers of finished ones.
#[derive(Default)]
struct Group {
    queue: Vec<(u64, Vec<Row>, i64)>,
    leading: bool,
    next_ticket: u64,
    answers: HashMap<u64, Result<Accepted, StoreError>>,
}

/// Ends a group's leadership even if the commit panicked, so others can lead.
struct Leading<'a>(&'a SqliteStore, Vec<u64>);

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        let mut group = self.0.group();
        group.leading = false;
        for ticket in self.1.drain(..) {
            group
                .answers
                .entry(ticket)
                .or_insert_with(|| Err(StoreError("the commit was interrupted".into())));
        }
        self.0.turn.notify_all();
    }
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

impl SqliteStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Connection::open(path)
            .map_err(|e| StoreError(format!("cannot open {}: {e}", path.display())))?;
        db.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        db.pragma_update(None, "synchronous", "FULL").map_err(err)?;
        db.pragma_update(None, "busy_timeout", 5000).map_err(err)?;
        // 16 MiB of page cache (the default is 2 MiB): the inbox's indexes stay in
        // memory instead of being re-read from the OS on every claim.
        db.pragma_update(None, "cache_size", -16_000).map_err(err)?;
        // Checkpoints (copying the WAL back into the database file) run on their
        // own connection and thread, not inside a commit an HTTP request waits for.
        db.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(err)?;
        db.execute_batch(SCHEMA).map_err(err)?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let checkpointer = Connection::open(path).map_err(err)?;
        checkpointer
            .pragma_update(None, "busy_timeout", 5000)
            .map_err(err)?;
        let stopping = std::sync::Arc::clone(&stop);
        std::thread::Builder::new()
            .name("pcsync-checkpoint".into())
            .spawn(move || checkpoint(checkpointer, stopping))
            .map_err(err)?;
        Ok(SqliteStore {
            db: Mutex::new(db),
            group: Mutex::default(),
            turn: Condvar::new(),
            stop,
        })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().expect("the store lock is never poisoned")
    }

    fn group(&self) -> std::sync::MutexGuard<'_, Group> {
        self.group.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes queued requests' rows in one transaction; each request's counts.
    fn commit_group(&self, jobs: &[(u64, Vec<Row>, i64)]) -> Result<Vec<Accepted>, StoreError> {
        let mut db = self.db();
        let tx = db.transaction().map_err(err)?;
        let mut counts = Vec::with_capacity(jobs.len());
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO inbox (event_id, ordering_key, received_at, event, status, not_before, updated_at)
                     VALUES (?1, ?2, ?3, ?4, 'pending', ?3, ?3)",
                )
                .map_err(err)?;
            for (_, rows, now_ms) in jobs {
                let mut new = 0;
                for (id, key, text) in rows {
                    new += insert
                        .execute(params![id, key, now_ms, text])
                        .map_err(err)?;
                }
                counts.push(Accepted {
                    new,
                    duplicates: rows.len() - new,
                });
            }
        }
        tx.commit().map_err(err)?;
        Ok(counts)
    }

    fn set_status(
        &self,
        seqs: &[i64],
        status: &str,
        not_before: Option<i64>,
        error: Option<&str>,
        bump: bool,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut db = self.db();
        let tx = db.transaction().map_err(err)?;
        {
            let mut update = tx
                .prepare_cached(
                    "UPDATE inbox SET status = ?2, not_before = COALESCE(?3, not_before), last_error = COALESCE(?4, last_error),
                            attempts = attempts + ?5, updated_at = ?6 WHERE seq = ?1",
                )
                .map_err(err)?;
            for seq in seqs {
                update
                    .execute(params![
                        seq,
                        status,
                        not_before,
                        error,
                        i64::from(bump),
                        now_ms
                    ])
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }
}

fn event_of(text: &str) -> Result<Event, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError(format!("a stored event does not parse: {e}")))
}

impl Store for SqliteStore {
    fn accept(&self, events: &[(Event, String)], now_ms: i64) -> Result<Accepted, StoreError> {
        // Serialized here, in the caller's thread, not while holding the database.
        let rows: Vec<Row> = events
            .iter()
            .map(|(event, key)| {
                let text = serde_json::to_string(event).map_err(err)?;
                Ok((event.id.clone(), key.clone(), text))
            })
            .collect::<Result<_, StoreError>>()?;
        let mut group = self.group();
        let ticket = group.next_ticket;
        group.next_ticket += 1;
        group.queue.push((ticket, rows, now_ms));
        loop {
            if let Some(answer) = group.answers.remove(&ticket) {
                return answer;
            }
            if group.leading {
                group = self.turn.wait(group).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            group.leading = true;
            let jobs = std::mem::take(&mut group.queue);
            drop(group);
            let mut leading = Leading(self, jobs.iter().map(|j| j.0).collect());
            let outcome = self.commit_group(&jobs);
            group = self.group();
            match outcome {
                Ok(counts) => {
                    for ((t, _, _), accepted) in jobs.iter().zip(counts) {
                        group.answers.insert(*t, Ok(accepted));
                    }
                }
                Err(e) => {
                    for (t, _, _) in &jobs {
                        group.answers.insert(*t, Err(StoreError(e.0.clone())));
                    }
                }
            }
            leading.1.clear();
            drop(group);
            drop(leading);
            group = self.group();
        }
    }

    fn park(&self, events: &[(Event, String)], now_ms: i64) -> Result<(), StoreError> {
        let mut db = self.db();
        let tx = db.transaction().map_err(err)?;
        for (event, reason) in events {
            let text = serde_json::to_string(event).map_err(err)?;
            tx.execute(
                "INSERT OR IGNORE INTO inbox (event_id, ordering_key, received_at, event, status, not_before, last_error, updated_at)
                 VALUES (?1, ?2, ?3, ?4, 'dead', ?3, ?5, ?3)",
                params![event.id, format!("event:{}", event.id), now_ms, text, reason],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    fn claim(&self, now_ms: i64, coalesce_ms: i64, limit: usize) -> Result<Vec<Batch>, StoreError> {
        let mut db = self.db();
        let tx = db.transaction().map_err(err)?;
        // Due events that head their key (no earlier event of the key is waiting or
        // running), read in order of when they became due, so the scan touches only
        // due rows and stops after `limit` heads: events waiting out a backoff or a
        // deferral cost nothing until their time. `not_before` is never earlier than
        // `received_at`, so the coalescing window holds for new events too.
        let mut heads: Vec<(i64, String, i64)> = Vec::new();
        for status in ["pending", "deferred"] {
            let mut q = tx
                .prepare_cached(
                    "SELECT i.seq, i.ordering_key, i.received_at FROM inbox i INDEXED BY inbox_due
                     WHERE i.status = ?4 AND i.not_before <= ?1 - ?2
                       AND NOT EXISTS (SELECT 1 FROM inbox j
                                       WHERE j.ordering_key = i.ordering_key
                                         AND j.status IN ('pending', 'running', 'deferred')
                                         AND j.seq < i.seq)
                     ORDER BY i.not_before, i.seq LIMIT ?3",
                )
                .map_err(err)?;
            let found: Vec<(i64, String, i64)> = q
                .query_map(params![now_ms, coalesce_ms, limit as i64, status], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .map_err(err)?
                .collect::<Result<_, _>>()
                .map_err(err)?;
            heads.extend(found);
        }
        heads.sort_unstable_by_key(|h| h.0);
        heads.truncate(limit);
        let mut claimed: Vec<(String, Vec<StoredRow>)> = Vec::new();
        // A claim holds the database while it marks rows running: bounded, so that
        // ingest never waits long behind it (the rest is claimed on the next pass).
        let mut marked = 0;
        for (head, key, received) in heads {
            if marked >= CLAIM_ROWS {
                break;
            }
            let rows: Vec<StoredRow> = {
                let mut rows = tx
                    .prepare_cached(
                        "SELECT seq, event, attempts FROM inbox
                         WHERE ordering_key = ?1 AND status IN ('pending', 'deferred')
                           AND (seq = ?2 OR (seq > ?2 AND received_at <= ?3))
                         ORDER BY seq LIMIT 200",
                    )
                    .map_err(err)?;
                rows.query_map(params![key, head, received + coalesce_ms], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .map_err(err)?
                .collect::<Result<_, _>>()
                .map_err(err)?
            };
            {
                let mut running = tx
                    .prepare_cached(
                        "UPDATE inbox SET status = 'running', updated_at = ?2 WHERE seq = ?1",
                    )
                    .map_err(err)?;
                for (seq, _, _) in &rows {
                    running.execute(params![seq, now_ms]).map_err(err)?;
                }
            }
            marked += rows.len();
            claimed.push((key, rows));
        }
        tx.commit().map_err(err)?;
        drop(db);
        // Parsed after the database is free for ingest. A stored event that no
        // longer parses (written by another version, say) is parked with the reason
        // rather than blocking its key.
        let mut batches = Vec::new();
        for (key, rows) in claimed {
            let mut items = Vec::new();
            for (seq, text, attempts) in rows {
                match event_of(&text) {
                    Ok(event) => items.push(Claimed {
                        seq,
                        event,
                        attempts,
                    }),
                    Err(e) => self.dead_letter(&[seq], &e.0, now_ms)?,
                }
            }
            if !items.is_empty() {
                batches.push(Batch { key, items });
            }
        }
        Ok(batches)
    }

    fn release(&self, seqs: &[i64], now_ms: i64) -> Result<(), StoreError> {
        self.set_status(seqs, "pending", None, None, false, now_ms)
    }

    fn complete(&self, seqs: &[i64], now_ms: i64) -> Result<(), StoreError> {
        self.set_status(seqs, "done", None, None, false, now_ms)
    }

    fn retry(
        &self,
        seqs: &[i64],
        not_before_ms: i64,
        error: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.set_status(
            seqs,
            "pending",
            Some(not_before_ms),
            Some(error),
            true,
            now_ms,
        )
    }

    fn defer(
        &self,
        seqs: &[i64],
        recheck_ms: i64,
        reason: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.set_status(
            seqs,
            "deferred",
            Some(recheck_ms),
            Some(reason),
            false,
            now_ms,
        )
    }

    fn wake(&self, key: &str, now_ms: i64) -> Result<u64, StoreError> {
        let n = self
            .db()
            .execute(
                "UPDATE inbox SET status = 'pending', not_before = ?2, updated_at = ?2 \
                 WHERE ordering_key = ?1 AND status = 'deferred'",
                params![key, now_ms],
            )
            .map_err(err)?;
        Ok(n as u64)
    }

    fn dead_letter(&self, seqs: &[i64], reason: &str, now_ms: i64) -> Result<(), StoreError> {
        self.set_status(seqs, "dead", None, Some(reason), true, now_ms)
    }

    fn recover(&self, now_ms: i64) -> Result<u64, StoreError> {
        let n = self
            .db()
            .execute("UPDATE inbox SET status = 'pending', not_before = ?1, updated_at = ?1 WHERE status = 'running'", params![now_ms])
            .map_err(err)?;
        Ok(n as u64)
    }

    fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        let db = self.db();
        let mut q = db
            .prepare_cached("SELECT seq, event, attempts, COALESCE(last_error, ''), updated_at FROM inbox WHERE status = 'dead' ORDER BY seq")
            .map_err(err)?;
        let rows: Vec<(i64, String, u32, String, i64)> = q
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .map_err(err)?
            .collect::<Result<_, _>>()
            .map_err(err)?;
        rows.into_iter()
            .map(|(seq, text, attempts, reason, parked_at)| {
                Ok(DeadLetter {
                    seq,
                    event: event_of(&text)?,
                    attempts,
                    reason,
                    parked_at,
                })
            })
            .collect()
    }

    fn requeue(&self, seq: i64, now_ms: i64) -> Result<bool, StoreError> {
        let n = self
            .db()
            .execute(
                "UPDATE inbox SET status = 'pending', attempts = 0, not_before = ?2, updated_at = ?2 WHERE seq = ?1 AND status = 'dead'",
                params![seq, now_ms],
            )
            .map_err(err)?;
        Ok(n == 1)
    }

    fn drop_dead(&self, seq: i64) -> Result<bool, StoreError> {
        let n = self
            .db()
            .execute(
                "DELETE FROM inbox WHERE seq = ?1 AND status = 'dead'",
                params![seq],
            )
            .map_err(err)?;
        Ok(n == 1)
    }

    fn deferred(&self, limit: usize) -> Result<Vec<Deferred>, StoreError> {
        let db = self.db();
        let mut q = db
            .prepare_cached(
                "SELECT ordering_key, COUNT(*), COALESCE(MAX(last_error), ''), MIN(not_before), MIN(seq) AS first
                 FROM inbox INDEXED BY inbox_due WHERE status = 'deferred'
                 GROUP BY ordering_key ORDER BY first LIMIT ?1",
            )
            .map_err(err)?;
        q.query_map(params![limit as i64], |r| {
            Ok(Deferred {
                key: r.get(0)?,
                events: r.get::<_, i64>(1)? as u64,
                reason: r.get(2)?,
                recheck_at: r.get(3)?,
            })
        })
        .map_err(err)?
        .collect::<Result<_, _>>()
        .map_err(err)
    }

    fn effect_done(&self, key: &str) -> Result<bool, StoreError> {
        self.db()
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
        self.db()
            .execute(
                "INSERT OR IGNORE INTO effect_log (key, done_at) VALUES (?1, ?2)",
                params![key, now_ms],
            )
            .map(|_| ())
            .map_err(err)
    }

    fn prune_done(&self, before_ms: i64, limit: usize) -> Result<u64, StoreError> {
        let db = self.db();
        db.execute(
            "DELETE FROM effect_log WHERE done_at < ?1",
            params![before_ms],
        )
        .map_err(err)?;
        let n = db
            .execute(
                "DELETE FROM inbox WHERE seq IN (SELECT seq FROM inbox INDEXED BY inbox_due
                     WHERE status = 'done' AND updated_at < ?1 ORDER BY not_before, seq LIMIT ?2)",
                params![before_ms, limit as i64],
            )
            .map_err(err)?;
        Ok(n as u64)
    }

    fn stats(&self) -> Result<InboxStats, StoreError> {
        let db = self.db();
        let mut q = db
            .prepare_cached("SELECT status, COUNT(*) FROM inbox GROUP BY status")
            .map_err(err)?;
        let mut stats = InboxStats::default();
        let rows = q
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(err)?;
        for row in rows {
            let (status, n) = row.map_err(err)?;
            let n = n as u64;
            match status.as_str() {
                "pending" => stats.pending = n,
                "running" => stats.running = n,
                "deferred" => stats.deferred = n,
                "done" => stats.done = n,
                _ => stats.dead = n,
            }
        }
        Ok(stats)
    }

    fn pack_states(&self, opportunity_id: &str) -> Result<IndexMap<String, PackState>, StoreError> {
        let db = self.db();
        let mut q = db
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
        opportunity_id: &str,
        pack: &str,
        state: &PackState,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut db = self.db();
        let tx = db.transaction().map_err(err)?;
        let existing: Option<String> = tx
            .query_row(
                "SELECT state FROM pack_state WHERE opportunity_id = ?1 AND pack = ?2",
                params![opportunity_id, pack],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)?;
        let mut merged = state.clone();
        if let Some(text) = existing {
            let old: PackState = serde_json::from_str(&text).map_err(err)?;
            let mut sent = old.sent;
            for key in &state.sent {
                if !sent.contains(key) {
                    sent.push(key.clone());
                }
            }
            merged.sent = sent;
        }
        tx.execute(
            "INSERT INTO pack_state (opportunity_id, pack, state, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (opportunity_id, pack) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
            params![opportunity_id, pack, serde_json::to_string(&merged).map_err(err)?, now_ms],
        )
        .map_err(err)?;
        tx.commit().map_err(err)
    }

    fn remember_write(
        &self,
        object: &str,
        property: &str,
        value: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.db()
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
            .query_row(
                "SELECT value FROM written WHERE object = ?1 AND property = ?2",
                params![object, property],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;
    use serde_json::json;

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("state.db")).unwrap();
        (dir, s)
    }

    fn change(deal: u64, event_id: u64, property: &str) -> (Event, String) {
        let e = Event::from_value(
            &json!({"hubspot": {"subscriptionType": "deal.propertyChange", "objectId": deal, "propertyName": property, "propertyValue": "x", "eventId": event_id, "occurredAt": 1}}),
            Timestamp::UNIX_EPOCH,
        )
        .unwrap();
        (e, format!("deal:{deal}"))
    }

    #[test]
    fn applied_events_are_pruned_after_their_time_and_nothing_else_is() {
        let (_dir, s) = store();
        s.accept(
            &[change(1, 1, "a"), change(2, 2, "a"), change(3, 3, "a")],
            10,
        )
        .unwrap();
        let batches = s.claim(1_000, 0, 10).unwrap();
        s.complete(&[batches[0].items[0].seq], 1_000).unwrap();
        s.complete(&[batches[1].items[0].seq], 5_000).unwrap();
        s.dead_letter(&[batches[2].items[0].seq], "no", 1_000)
            .unwrap();
        assert_eq!(s.prune_done(2_000, 100).unwrap(), 1);
        let left = s.stats().unwrap();
        assert_eq!((left.done, left.dead), (1, 1));
        // A pruned event is forgotten: the same delivery again is new.
        assert_eq!(s.accept(&[change(1, 1, "a")], 6_000).unwrap().new, 1);
        assert_eq!(s.accept(&[change(2, 2, "a")], 6_000).unwrap().duplicates, 1);
    }

    #[test]
    fn events_waiting_out_a_backoff_do_not_hold_up_due_ones() {
        let (_dir, s) = store();
        s.accept(&[change(1, 1, "a"), change(2, 2, "a")], 10)
            .unwrap();
        let first = s.claim(100, 0, 10).unwrap();
        assert_eq!(first.len(), 2);
        let seqs: Vec<i64> = first.iter().map(|b| b.items[0].seq).collect();
        s.retry(&seqs, 1_000_000, "throttled", 100).unwrap();
        s.accept(&[change(3, 3, "a"), change(1, 4, "a")], 200)
            .unwrap();
        // Deal 3 is due; deal 1's new event waits behind its own retry, in order.
        let due = s.claim(300, 0, 10).unwrap();
        assert_eq!(due.len(), 1, "{due:?}");
        assert_eq!(due[0].key, "deal:3");
        // Once the backoff ends the retries come first, then deal 1's later event.
        s.complete(&[due[0].items[0].seq], 300).unwrap();
        let later = s.claim(1_000_000, 0, 10).unwrap();
        let keys: Vec<&str> = later.iter().map(|b| b.key.as_str()).collect();
        assert_eq!(keys, ["deal:1", "deal:2"]);
        let done: Vec<i64> = later.iter().map(|b| b.items[0].seq).collect();
        s.complete(&done, 1_000_000).unwrap();
        let last = s.claim(1_000_001, 0, 10).unwrap();
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].items[0].event.id, change(1, 4, "a").0.id);
    }

    #[test]
    fn concurrent_accepts_share_commits_and_each_gets_its_own_counts() {
        let (_dir, s) = store();
        let s = std::sync::Arc::new(s);
        // Eight requests at once, each of 50 events; every second request repeats
        // the previous one's events (a redelivery racing the original).
        let answers: Vec<Accepted> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8u64)
                .map(|r| {
                    let s = std::sync::Arc::clone(&s);
                    scope.spawn(move || {
                        let base = (r / 2) * 1_000;
                        let events: Vec<_> = (0..50)
                            .map(|i| change(i % 7, base + i, "dealstage"))
                            .collect();
                        s.accept(&events, 10).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let new: usize = answers.iter().map(|a| a.new).sum();
        let duplicates: usize = answers.iter().map(|a| a.duplicates).sum();
        assert_eq!(new, 200, "{answers:?}");
        assert_eq!(duplicates, 200, "{answers:?}");
        assert!(answers.iter().all(|a| a.new + a.duplicates == 50));
        assert_eq!(s.stats().unwrap().pending, 200);
        // Per key, inbox order is arrival order: claims still come oldest first.
        let batches = s.claim(100, 0, 100).unwrap();
        assert_eq!(batches.len(), 7);
        for b in &batches {
            assert!(b.items.windows(2).all(|w| w[0].seq < w[1].seq));
        }
    }

    #[test]
    fn duplicate_deliveries_are_dropped_at_the_inbox() {
        let (_d, s) = store();
        assert_eq!(
            s.accept(&[change(1, 10, "amount"), change(1, 11, "dealstage")], 0)
                .unwrap(),
            Accepted {
                new: 2,
                duplicates: 0
            }
        );
        assert_eq!(
            s.accept(&[change(1, 10, "amount")], 5).unwrap(),
            Accepted {
                new: 0,
                duplicates: 1
            }
        );
        assert_eq!(s.stats().unwrap().pending, 2);
    }

    #[test]
    fn one_key_runs_in_order_and_rapid_edits_coalesce_into_one_batch() {
        let (_d, s) = store();
        s.accept(&[change(1, 1, "amount")], 0).unwrap();
        s.accept(&[change(1, 2, "dealstage"), change(2, 3, "amount")], 300)
            .unwrap();
        s.accept(&[change(1, 4, "closedate")], 5_000).unwrap();
        assert!(
            s.claim(400, 1_000, 10).unwrap().is_empty(),
            "nothing is due before the window has passed"
        );
        let batches = s.claim(1_500, 1_000, 10).unwrap();
        let shape: Vec<(String, Vec<i64>)> = batches
            .iter()
            .map(|b| (b.key.clone(), b.items.iter().map(|i| i.seq).collect()))
            .collect();
        assert_eq!(
            shape,
            [
                ("deal:1".to_string(), vec![1, 2]),
                ("deal:2".to_string(), vec![3])
            ]
        );
        assert!(
            s.claim(10_000, 1_000, 10).unwrap().is_empty(),
            "deal 1's next event waits for the running batch"
        );
        s.complete(&[1, 2], 10_000).unwrap();
        let next = s.claim(10_000, 1_000, 10).unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].items[0].seq, 4);
    }

    #[test]
    fn retries_deferrals_and_dead_letters() {
        let (_d, s) = store();
        s.accept(&[change(1, 1, "amount")], 0).unwrap();
        let b = s.claim(0, 0, 10).unwrap();
        s.retry(&[b[0].items[0].seq], 1_000, "HubSpot answered 503", 0)
            .unwrap();
        assert!(s.claim(500, 0, 10).unwrap().is_empty());
        let b = s.claim(1_000, 0, 10).unwrap();
        assert_eq!(b[0].items[0].attempts, 1);
        s.defer(&[1], 60_000, "AWS is reviewing the opportunity", 1_000)
            .unwrap();
        assert_eq!(s.stats().unwrap().deferred, 1);
        let b = s.claim(60_000, 0, 10).unwrap();
        s.dead_letter(
            &[b[0].items[0].seq],
            "ValidationException: LifeCycle.Stage",
            60_000,
        )
        .unwrap();
        let dead = s.dead_letters().unwrap();
        assert_eq!(
            (dead.len(), dead[0].reason.as_str(), dead[0].attempts),
            (1, "ValidationException: LifeCycle.Stage", 2)
        );
        assert!(s.requeue(1, 70_000).unwrap());
        assert!(!s.requeue(1, 70_000).unwrap(), "no longer a dead letter");
        assert_eq!(s.claim(70_000, 0, 10).unwrap()[0].items[0].attempts, 0);
        s.dead_letter(&[1], "again", 70_000).unwrap();
        assert!(s.drop_dead(1).unwrap());
        assert_eq!(s.stats().unwrap(), InboxStats::default());
    }

    #[test]
    fn claimed_work_of_a_crashed_process_is_recovered_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let s = SqliteStore::open(&path).unwrap();
            s.accept(&[change(1, 1, "amount"), change(2, 2, "amount")], 0)
                .unwrap();
            assert_eq!(s.claim(0, 0, 10).unwrap().len(), 2);
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.recover(100).unwrap(), 2);
        assert_eq!(s.claim(100, 0, 10).unwrap().len(), 2);
    }

    #[test]
    fn pack_state_accumulates_sent_keys_and_writes_are_remembered() {
        let (_d, s) = store();
        let mut state = PackState::default();
        state.watches.insert("score".into(), json!(50));
        state.sent = vec!["score-up:40->50".into()];
        s.record_state("O1", "smart-notifications", &state, 0)
            .unwrap();
        state.watches.insert("score".into(), json!(70));
        state.sent = vec!["score-up:50->70".into()];
        s.record_state("O1", "smart-notifications", &state, 1)
            .unwrap();
        let got = &s.pack_states("O1").unwrap()["smart-notifications"];
        assert_eq!(got.watches["score"], 70);
        assert_eq!(got.sent, ["score-up:40->50", "score-up:50->70"]);
        assert!(s.pack_states("O2").unwrap().is_empty());

        assert_eq!(s.last_write("deal:1", "aws_sync_status").unwrap(), None);
        s.remember_write("deal:1", "aws_sync_status", "synced", 0)
            .unwrap();
        assert_eq!(
            s.last_write("deal:1", "aws_sync_status")
                .unwrap()
                .as_deref(),
            Some("synced")
        );
    }
}
