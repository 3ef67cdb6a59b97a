//! The SQLite store: one file, WAL journal, `synchronous=FULL` so that an accepted
//! event survives a crash of the process or the machine once `accept` returns.
//!
//! Layout, chosen so that accepting an event appends and touches no random page:
//! - `events`: every accepted event, written once, in arrival order (`seq`), with a
//!   unique index on (occurred time, event id) for dropping redeliveries. A
//!   redelivery carries its original occurred time, so the index grows at its end
//!   instead of at a random place as an index on the id alone would.
//! - `work`: one small row per unfinished event (pending, deferred or dead) with its
//!   attempts, due time and last error; an event leaves it when applied.
//! - the per-key lines that claims need live in memory ([`Queue`]), rebuilt from
//!   `work` at start-up and whenever another process (`pcsync dlq`) changed the file.
//!   Claims are not written down: after a crash, a claimed event is simply pending.
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
use pcsync_engine::{Event, PackState, StateRecord};
use rusqlite::{Connection, OptionalExtension, params};

use super::queue::{Item, Outcome, Queue};
use super::{
    Accepted, Arrival, Batch, Claimed, DeadLetter, Deferred, InboxStats, Store, StoreError,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq          INTEGER PRIMARY KEY,
    occurred     TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    ordering_key TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    event        TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS events_id ON events (occurred, event_id);
CREATE TABLE IF NOT EXISTS work (
    seq        INTEGER PRIMARY KEY,
    status     TEXT NOT NULL CHECK (status IN ('pending', 'deferred', 'dead')),
    attempts   INTEGER NOT NULL DEFAULT 0,
    not_before INTEGER NOT NULL,
    last_error TEXT,
    updated_at INTEGER NOT NULL
);
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
CREATE TABLE IF NOT EXISTS pending_settle (
    key     TEXT PRIMARY KEY,
    outcome TEXT NOT NULL,
    at      INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS written (
    object     TEXT NOT NULL,
    property   TEXT NOT NULL,
    value      TEXT NOT NULL,
    written_at INTEGER NOT NULL,
    PRIMARY KEY (object, property)
);
";

/// State files written before the `events`/`work` split kept one `inbox` table with
/// every event's status: its rows move over once, claims in progress becoming pending.
const MIGRATE_INBOX: &str = "
INSERT INTO events (seq, occurred, event_id, ordering_key, received_at, event)
    SELECT seq, COALESCE(json_extract(event, '$.occurred_at'), ''), event_id, ordering_key, received_at, event
    FROM inbox ORDER BY seq;
INSERT INTO work (seq, status, attempts, not_before, last_error, updated_at)
    SELECT seq, CASE status WHEN 'running' THEN 'pending' ELSE status END, attempts, not_before, last_error, updated_at
    FROM inbox WHERE status <> 'done';
DROP TABLE inbox;
";

/// The connection and the in-memory lines it serves, behind one lock.
struct Db {
    conn: Connection,
    queue: Queue,
    /// Whether `queue` matches the database; false until first read, and after a
    /// change the queue could not follow (another process, a requeued dead letter).
    fresh: bool,
    /// `PRAGMA data_version` when `queue` was last known to match: it changes when
    /// another connection commits.
    version: i64,
    /// Rows in `events`, and dead letters, once counted (a count reads a whole
    /// table); kept up to date by the writes here, and counted again after a
    /// change from elsewhere.
    counts: Option<Counts>,
}

#[derive(Debug, Clone, Copy)]
struct Counts {
    events: u64,
    dead: u64,
}

/// The embedded store.
pub struct SqliteStore {
    db: std::sync::Arc<Mutex<Db>>,
    /// The WAL file, synced by the group commits themselves.
    wal: std::sync::OnceLock<std::fs::File>,
    wal_path: std::path::PathBuf,
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

/// Checkpoints the WAL every `CHECKPOINT_EVERY` until `stop`, without holding up
/// commits: PASSIVE, on its own connection, copies what was committed since the last
/// time, and this thread then flushes the database file.
///
/// The log starts over (the file is written from its beginning again) only when a
/// write begins after a checkpoint that copied every frame; under a steady flood of
/// commits some frames are always newer than the checkpoint that just ended, so it
/// would grow without end. Once the log passes `WAL_FRAMES`, a second PASSIVE runs
/// while holding the store's lock: no commit can start, so it copies the few frames
/// written during the first (milliseconds' worth) and the next commit starts the log
/// over. (Before, a RESTART checkpoint did this, but it takes SQLite's write lock, and
/// a commit that meets it sleeps in the busy handler's growing steps: the ingest
/// bench saw 20-370 ms stalls.)
fn checkpoint(
    ckpt: Connection,
    db: std::sync::Weak<Mutex<Db>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    // (frames in the log, frames copied so far)
    let passive = |ckpt: &Connection| {
        let started = std::time::Instant::now();
        match ckpt.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        }) {
            Ok((log, copied)) => {
                tracing::trace!(log, copied, took = ?started.elapsed(), "WAL checkpoint");
                (log, copied)
            }
            Err(e) => {
                tracing::debug!(error = %e, "WAL checkpoint");
                (0, 0)
            }
        }
    };
    let file = ckpt.path().and_then(|p| std::fs::File::open(p).ok());
    let mut flushed = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(CHECKPOINT_EVERY);
        let (log, copied) = passive(&ckpt);
        // The checkpoint that copies the last frames flushes the database file, and
        // with it every page the earlier ones copied; a large flush holds up the
        // commits' own WAL syncs on the same disk. Flushed here, a little at a time,
        // it stays small.
        if copied != flushed {
            flushed = copied;
            let started = std::time::Instant::now();
            if let Some(file) = &file
                && let Err(e) = file.sync_data()
            {
                tracing::debug!(error = %e, "flushing the database file");
            }
            tracing::trace!(took = ?started.elapsed(), "database file flushed");
        }
        if log > WAL_FRAMES {
            let Some(db) = db.upgrade() else { break };
            let _held = db.lock().unwrap_or_else(|e| e.into_inner());
            passive(&ckpt);
            flushed = 0;
        }
    }
    let _ = ckpt.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
}

/// How often the WAL is copied into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// Frames (pages) the WAL may hold before it is made to start over: 64 MiB.
const WAL_FRAMES: i64 = 16_384;

/// Rows one claim takes at most (after the first batch).
const CLAIM_ROWS: usize = 256;

/// Events of one key that one claim takes at most.
const BATCH_ROWS: usize = 200;

/// An event ready to insert: id, occurred time ('' when unknown), ordering key, JSON.
type Row = (String, String, String, String);

/// A new event for its key's line.
type Keyed<'a> = (&'a str, Item);

/// Requests waiting for the next group commit, and the answers of finished ones.
#[derive(Default)]
struct Group {
    queue: Vec<(u64, Vec<Row>, i64)>,
    leading: bool,
    next_ticket: u64,
    answers: HashMap<u64, Result<Accepted, StoreError>>,
}

/// Ends a group's leadership once its rows are written (or the write panicked), so
/// the next group can lead.
struct Leading<'a>(&'a SqliteStore);

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        self.0.group().leading = false;
        self.0.turn.notify_all();
    }
}

/// Answers a group's requests that have no answer yet (the commit panicked), and
/// wakes them to collect their answers.
struct Unanswered<'a>(&'a SqliteStore, Vec<u64>);

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        let mut group = self.0.group();
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

fn row(a: Arrival) -> Row {
    (
        a.event.id,
        a.event.occurred_at.unwrap_or_default(),
        a.key,
        a.stored,
    )
}

impl Db {
    /// Runs `write` with its commit left unsynced (`synchronous=NORMAL`); the caller
    /// says what makes it durable.
    fn unsynced<T>(
        &mut self,
        write: impl FnOnce(&mut Db) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        let written = write(self);
        self.conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        written
    }

    /// Rebuilds the in-memory lines when they may not match the database.
    fn sync(&mut self) -> Result<(), StoreError> {
        let version: i64 = self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(err)?;
        if self.fresh && version == self.version {
            return Ok(());
        }
        let rows: Vec<(String, Item)> = {
            let mut q = self
                .conn
                .prepare_cached(
                    "SELECT e.ordering_key, w.seq, e.received_at, w.not_before, w.attempts, w.status
                     FROM work w JOIN events e ON e.seq = w.seq
                     WHERE w.status IN ('pending', 'deferred') ORDER BY w.seq",
                )
                .map_err(err)?;
            q.query_map([], |r| {
                Ok((
                    r.get(0)?,
                    Item {
                        seq: r.get(1)?,
                        received_at: r.get(2)?,
                        not_before: r.get(3)?,
                        attempts: r.get(4)?,
                        deferred: r.get::<_, String>(5)? == "deferred",
                    },
                ))
            })
            .map_err(err)?
            .collect::<Result<_, _>>()
            .map_err(err)?
        };
        tracing::debug!(events = rows.len(), "inbox lines read from the database");
        self.queue = Queue::rebuilt(rows, std::mem::take(&mut self.queue));
        self.fresh = true;
        self.counts = None;
        self.version = version;
        Ok(())
    }

    /// Writes a change of claimed events, then settles them in the lines.
    fn settle(
        &mut self,
        seqs: &[i64],
        outcome: Outcome,
        sql: Option<Update<'_>>,
    ) -> Result<(), StoreError> {
        if let Some(update) = sql {
            // Not synced on its own: the next accepted batch's sync makes it durable
            // too (the WAL is one file). If the machine dies before that, the events
            // run again, and everything they do is safe to repeat (the effect journal
            // is synced). Syncing each settle held the store, and ingest, for a
            // disk flush several dozen times a second.
            let changed = self.unsynced(|db| db.write_settle(seqs, update))?;
            if let (Update::Status { status: "dead", .. }, Some(c)) = (update, &mut self.counts) {
                c.dead += changed as u64;
            }
        }
        if !self.queue.settle(seqs, outcome) {
            self.fresh = false;
        }
        Ok(())
    }

    /// Writes a settle; how many rows it changed.
    fn write_settle(&mut self, seqs: &[i64], update: Update<'_>) -> Result<usize, StoreError> {
        let tx = self.conn.transaction().map_err(err)?;
        let mut changed = 0;
        {
            let mut statement = tx.prepare_cached(update.sql()).map_err(err)?;
            for seq in seqs {
                changed += match update {
                    Update::Delete => statement.execute(params![seq]),
                    Update::Status {
                        status,
                        not_before,
                        error,
                        bump,
                        now,
                    } => statement.execute(params![
                        seq,
                        status,
                        not_before,
                        error,
                        i64::from(bump),
                        now
                    ]),
                }
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        Ok(changed)
    }

    /// The counts, read from the tables when not known.
    fn counts(&mut self) -> Result<Counts, StoreError> {
        if let Some(c) = self.counts {
            return Ok(c);
        }
        let (events, dead): (i64, i64) = self
            .conn
            .query_row(
                "SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM work WHERE status = 'dead')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(err)?;
        let c = Counts {
            events: events as u64,
            dead: dead as u64,
        };
        self.counts = Some(c);
        Ok(c)
    }
}

/// How settling changes `work`.
#[derive(Clone, Copy)]
enum Update<'a> {
    /// Applied: the event leaves `work`.
    Delete,
    /// A new status, due time (if any) and error (if any); `bump` counts an attempt.
    Status {
        status: &'a str,
        not_before: Option<i64>,
        error: Option<&'a str>,
        bump: bool,
        now: i64,
    },
}

impl Update<'_> {
    fn sql(&self) -> &'static str {
        match self {
            Update::Delete => "DELETE FROM work WHERE seq = ?1",
            Update::Status { .. } => {
                "UPDATE work SET status = ?2, not_before = COALESCE(?3, not_before),
                        last_error = COALESCE(?4, last_error), attempts = attempts + ?5, updated_at = ?6
                 WHERE seq = ?1 AND status <> 'dead'"
            }
        }
    }
}

impl SqliteStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path)
            .map_err(|e| StoreError(format!("cannot open {}: {e}", path.display())))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.pragma_update(None, "busy_timeout", 5000)
            .map_err(err)?;
        // 16 MiB of page cache (the default is 2 MiB): the tables' recent pages and
        // the dedupe index stay in memory instead of being re-read from the OS.
        conn.pragma_update(None, "cache_size", -16_000)
            .map_err(err)?;
        // Checkpoints (copying the WAL back into the database file) run on their
        // own connection and thread, not inside a commit an HTTP request waits for.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(err)?;
        let tx = conn.transaction().map_err(err)?;
        tx.execute_batch(SCHEMA).map_err(err)?;
        let old: bool = tx
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'inbox'",
                [],
                |_| Ok(()),
            )
            .optional()
            .map_err(err)?
            .is_some();
        if old {
            tx.execute_batch(MIGRATE_INBOX).map_err(|e| {
                StoreError(format!(
                    "cannot move the inbox of {} to the new layout: {e}",
                    path.display()
                ))
            })?;
        }
        tx.commit().map_err(err)?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let checkpointer = Connection::open(path).map_err(err)?;
        checkpointer
            .pragma_update(None, "busy_timeout", 5000)
            .map_err(err)?;
        let db = std::sync::Arc::new(Mutex::new(Db {
            conn,
            queue: Queue::default(),
            fresh: false,
            version: 0,
            counts: None,
        }));
        let (stopping, held) = (std::sync::Arc::clone(&stop), std::sync::Arc::downgrade(&db));
        std::thread::Builder::new()
            .name("pcsync-checkpoint".into())
            .spawn(move || checkpoint(checkpointer, held, stopping))
            .map_err(err)?;
        let mut wal_path = path.as_os_str().to_owned();
        wal_path.push("-wal");
        Ok(SqliteStore {
            db,
            wal: std::sync::OnceLock::new(),
            wal_path: wal_path.into(),
            group: Mutex::default(),
            turn: Condvar::new(),
            stop,
        })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Db> {
        self.db.lock().expect("the store lock is never poisoned")
    }

    fn group(&self) -> std::sync::MutexGuard<'_, Group> {
        self.group.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes queued requests' rows in one transaction; each request's counts. New
    /// events join their key's line once they are committed.
    fn commit_group(&self, jobs: &[(u64, Vec<Row>, i64)]) -> Result<Vec<Accepted>, StoreError> {
        let waited = std::time::Instant::now();
        let mut guard = self.db();
        let db = &mut *guard;
        let started = std::time::Instant::now();
        // The caller syncs the WAL after letting go of the database (see `accept`).
        let (counts, arrived_at) = db.unsynced(|db| Self::insert_group(db, jobs))?;
        tracing::trace!(
            requests = jobs.len(),
            lock_us = (started - waited).as_micros() as u64,
            write_us = started.elapsed().as_micros() as u64,
            "group written"
        );
        if let Some(c) = &mut db.counts {
            c.events += arrived_at.len() as u64;
        }
        for (key, item) in arrived_at {
            db.queue.push(key, item);
        }
        Ok(counts)
    }

    /// The rows of a group in one transaction: each request's counts, and the new
    /// events (with their keys) for the lines.
    fn insert_group<'j>(
        db: &mut Db,
        jobs: &'j [(u64, Vec<Row>, i64)],
    ) -> Result<(Vec<Accepted>, Vec<Keyed<'j>>), StoreError> {
        let tx = db.conn.transaction().map_err(err)?;
        let mut counts = Vec::with_capacity(jobs.len());
        let mut arrived: Vec<Keyed<'_>> = Vec::new();
        {
            let mut event = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO events (event_id, occurred, ordering_key, received_at, event)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(err)?;
            let mut work = tx
                .prepare_cached(
                    "INSERT INTO work (seq, status, not_before, updated_at) VALUES (?1, 'pending', ?2, ?2)",
                )
                .map_err(err)?;
            for (_, rows, now_ms) in jobs {
                let mut new = 0;
                for (id, occurred, key, text) in rows {
                    if event
                        .execute(params![id, occurred, key, now_ms, text])
                        .map_err(err)?
                        == 0
                    {
                        continue;
                    }
                    let seq = tx.last_insert_rowid();
                    work.execute(params![seq, now_ms]).map_err(err)?;
                    new += 1;
                    arrived.push((key, Item::arrived(seq, *now_ms)));
                }
                counts.push(Accepted {
                    new,
                    duplicates: rows.len() - new,
                });
            }
        }
        tx.commit().map_err(err)?;
        Ok((counts, arrived))
    }

    /// Makes everything written to the WAL so far durable.
    fn sync_wal(&self) -> Result<(), StoreError> {
        let file = match self.wal.get() {
            Some(file) => file,
            None => {
                let file = std::fs::File::open(&self.wal_path).map_err(|e| {
                    StoreError(format!("cannot open {}: {e}", self.wal_path.display()))
                })?;
                self.wal.get_or_init(|| file)
            }
        };
        let started = std::time::Instant::now();
        let r = file
            .sync_data()
            .map_err(|e| StoreError(format!("cannot sync {}: {e}", self.wal_path.display())));
        tracing::trace!(took_us = started.elapsed().as_micros() as u64, "WAL synced");
        r
    }
}

fn event_of(text: &str) -> Result<Event, StoreError> {
    Event::from_stored_json(text)
        .map_err(|e| StoreError(format!("a stored event does not parse: {e}")))
}

impl Store for SqliteStore {
    fn accept_arrivals(&self, arrivals: Vec<Arrival>, now_ms: i64) -> Result<Accepted, StoreError> {
        let rows: Vec<Row> = arrivals.into_iter().map(row).collect();
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
            let mut unanswered = Unanswered(self, jobs.iter().map(|j| j.0).collect());
            let written = {
                let _leading = Leading(self);
                self.commit_group(&jobs)
            };
            // The next group may write while this one's frames go to the disk; its
            // requests are answered once they are there.
            let outcome = written.and_then(|counts| self.sync_wal().map(|()| counts));
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
            unanswered.1.clear();
            drop(group);
            drop(unanswered);
            group = self.group();
        }
    }

    fn park(&self, events: &[(Event, String)], now_ms: i64) -> Result<(), StoreError> {
        let mut db = self.db();
        let tx = db.conn.transaction().map_err(err)?;
        let mut parked = 0;
        for (event, reason) in events {
            let (id, occurred, key, text) =
                row(Arrival::new(event.clone(), format!("event:{}", event.id))?);
            let new = tx
                .execute(
                    "INSERT OR IGNORE INTO events (event_id, occurred, ordering_key, received_at, event)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id, occurred, key, now_ms, text],
                )
                .map_err(err)?;
            if new == 1 {
                tx.execute(
                    "INSERT INTO work (seq, status, not_before, last_error, updated_at) VALUES (?1, 'dead', ?2, ?3, ?2)",
                    params![tx.last_insert_rowid(), now_ms, reason],
                )
                .map_err(err)?;
                parked += 1;
            }
        }
        tx.commit().map_err(err)?;
        if let Some(c) = &mut db.counts {
            c.events += parked;
            c.dead += parked;
        }
        Ok(())
    }

    fn claim(&self, now_ms: i64, coalesce_ms: i64, limit: usize) -> Result<Vec<Batch>, StoreError> {
        let mut guard = self.db();
        let db = &mut *guard;
        db.sync()?;
        // Per key only the oldest unfinished event can lead a batch (so a key's
        // events apply in order), once it is due: `not_before` is never earlier than
        // its arrival, so the coalescing window holds for new events too. A claim is
        // bounded so that ingest never waits long behind it.
        let claims = db
            .queue
            .claim(now_ms, coalesce_ms, limit, CLAIM_ROWS, BATCH_ROWS);
        let mut claimed: Vec<(String, Vec<(Item, String)>)> = Vec::with_capacity(claims.len());
        {
            let mut read = db
                .conn
                .prepare_cached("SELECT event FROM events WHERE seq = ?1")
                .map_err(err)?;
            for (key, items) in claims {
                let mut rows = Vec::with_capacity(items.len());
                for item in items {
                    let text: String = read
                        .query_row(params![item.seq], |r| r.get(0))
                        .map_err(err)?;
                    rows.push((item, text));
                }
                claimed.push((key.to_string(), rows));
            }
        }
        drop(guard);
        // Parsed after the database is free for ingest. A stored event that no
        // longer parses (written by another version, say) is parked with the reason
        // rather than blocking its key.
        let mut batches = Vec::new();
        for (key, rows) in claimed {
            let mut items = Vec::new();
            for (item, text) in rows {
                match event_of(&text) {
                    Ok(event) => items.push(Claimed {
                        seq: item.seq,
                        event,
                        attempts: item.attempts,
                    }),
                    Err(e) => self.dead_letter(&[item.seq], &e.0, now_ms)?,
                }
            }
            if !items.is_empty() {
                batches.push(Batch { key, items });
            }
        }
        Ok(batches)
    }

    fn release(&self, seqs: &[i64], _now_ms: i64) -> Result<(), StoreError> {
        self.db().settle(seqs, Outcome::Released, None)
    }

    fn complete(&self, seqs: &[i64], _now_ms: i64) -> Result<(), StoreError> {
        self.db().settle(seqs, Outcome::Gone, Some(Update::Delete))
    }

    fn retry(
        &self,
        seqs: &[i64],
        not_before_ms: i64,
        error: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.db().settle(
            seqs,
            Outcome::Retry {
                not_before: not_before_ms,
            },
            Some(Update::Status {
                status: "pending",
                not_before: Some(not_before_ms),
                error: Some(error),
                bump: true,
                now: now_ms,
            }),
        )
    }

    fn defer(
        &self,
        seqs: &[i64],
        recheck_ms: i64,
        reason: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.db().settle(
            seqs,
            Outcome::Defer {
                recheck: recheck_ms,
            },
            Some(Update::Status {
                status: "deferred",
                not_before: Some(recheck_ms),
                error: Some(reason),
                bump: false,
                now: now_ms,
            }),
        )
    }

    fn wake(&self, key: &str, now_ms: i64) -> Result<u64, StoreError> {
        let mut guard = self.db();
        let db = &mut *guard;
        db.sync()?;
        let woken = db.queue.wake(key, now_ms);
        let tx = db.conn.transaction().map_err(err)?;
        {
            let mut update = tx
                .prepare_cached(
                    "UPDATE work SET status = 'pending', not_before = ?2, updated_at = ?2
                     WHERE seq = ?1 AND status = 'deferred'",
                )
                .map_err(err)?;
            for seq in &woken {
                update.execute(params![seq, now_ms]).map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        Ok(woken.len() as u64)
    }

    fn dead_letter(&self, seqs: &[i64], reason: &str, now_ms: i64) -> Result<(), StoreError> {
        self.db().settle(
            seqs,
            Outcome::Gone,
            Some(Update::Status {
                status: "dead",
                not_before: None,
                error: Some(reason),
                bump: true,
                now: now_ms,
            }),
        )
    }

    fn recover(&self, _now_ms: i64) -> Result<u64, StoreError> {
        let mut db = self.db();
        db.fresh = false;
        db.sync()?;
        Ok(db.queue.waiting())
    }

    fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        let db = self.db();
        let mut q = db
            .conn
            .prepare_cached(
                "SELECT w.seq, e.event, w.attempts, COALESCE(w.last_error, ''), w.updated_at
                 FROM work w JOIN events e ON e.seq = w.seq WHERE w.status = 'dead' ORDER BY w.seq",
            )
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
        let mut db = self.db();
        let n = db
            .conn
            .execute(
                "UPDATE work SET status = 'pending', attempts = 0, not_before = ?2, updated_at = ?2
                 WHERE seq = ?1 AND status = 'dead'",
                params![seq, now_ms],
            )
            .map_err(err)?;
        // It goes back in its key's line at its place by age: read again.
        db.fresh = false;
        db.counts = None;
        Ok(n == 1)
    }

    fn drop_dead(&self, seq: i64) -> Result<bool, StoreError> {
        let mut db = self.db();
        let tx = db.conn.transaction().map_err(err)?;
        let n = tx
            .execute(
                "DELETE FROM work WHERE seq = ?1 AND status = 'dead'",
                params![seq],
            )
            .map_err(err)?;
        if n == 1 {
            tx.execute("DELETE FROM events WHERE seq = ?1", params![seq])
                .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        if let Some(c) = db.counts.as_mut().filter(|_| n == 1) {
            c.events -= 1;
            c.dead -= 1;
        }
        Ok(n == 1)
    }

    fn deferred(&self, limit: usize) -> Result<Vec<Deferred>, StoreError> {
        let mut guard = self.db();
        let db = &mut *guard;
        db.sync()?;
        let mut reason = db
            .conn
            .prepare_cached("SELECT COALESCE(last_error, '') FROM work WHERE seq = ?1")
            .map_err(err)?;
        db.queue
            .deferred(limit)
            .into_iter()
            .map(|(key, events, recheck_at, first)| {
                Ok(Deferred {
                    key: key.to_string(),
                    events,
                    reason: reason
                        .query_row(params![first], |r| r.get(0))
                        .optional()
                        .map_err(err)?
                        .unwrap_or_default(),
                    recheck_at,
                })
            })
            .collect()
    }

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
        self.db()
            .conn
            .execute(
                "INSERT OR IGNORE INTO effect_log (key, done_at) VALUES (?1, ?2)",
                params![key, now_ms],
            )
            .map(|_| ())
            .map_err(err)
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
        self.db()
            .conn
            .execute(
                "INSERT OR REPLACE INTO pending_settle (key, outcome, at) VALUES (?1, ?2, ?3)",
                params![key, outcome, now_ms],
            )
            .map(|_| ())
            .map_err(err)
    }

    fn clear_settle(&self, key: &str) -> Result<(), StoreError> {
        self.db()
            .conn
            .execute("DELETE FROM pending_settle WHERE key = ?1", params![key])
            .map(|_| ())
            .map_err(err)
    }

    fn prune_done(&self, before_ms: i64, limit: usize) -> Result<u64, StoreError> {
        let mut db = self.db();
        db.conn
            .execute(
                "DELETE FROM effect_log WHERE done_at < ?1",
                params![before_ms],
            )
            .map_err(err)?;
        db.conn
            .execute(
                "DELETE FROM pending_settle WHERE at < ?1",
                params![before_ms],
            )
            .map_err(err)?;
        // Events arrive in `seq` order, so those received before the cut come first:
        // the scan stops at the first later one instead of reading the whole table.
        let n = db
            .conn
            .execute(
                "DELETE FROM events WHERE seq IN (
                     SELECT e.seq FROM events e
                     WHERE e.seq < COALESCE((SELECT seq FROM events WHERE received_at >= ?1 ORDER BY seq LIMIT 1),
                                            9223372036854775807)
                       AND NOT EXISTS (SELECT 1 FROM work w WHERE w.seq = e.seq)
                     ORDER BY e.seq LIMIT ?2)",
                params![before_ms, limit as i64],
            )
            .map_err(err)?;
        if let Some(c) = &mut db.counts {
            c.events = c.events.saturating_sub(n as u64);
        }
        Ok(n as u64)
    }

    fn stats(&self) -> Result<InboxStats, StoreError> {
        // From the lines and the kept counts: counting rows would read whole tables
        // while holding the store (tens of milliseconds with a large inbox), and
        // health checks ask often.
        let mut db = self.db();
        db.sync()?;
        let counts = db.counts()?;
        let (pending, deferred, running) = db.queue.tally();
        let unfinished = pending + deferred + running + counts.dead;
        Ok(InboxStats {
            pending,
            running,
            deferred,
            done: counts.events.saturating_sub(unfinished),
            dead: counts.dead,
        })
    }

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
        s.accept(&[change(1, 1, "a"), change(2, 2, "a")], 10)
            .unwrap();
        s.accept(&[change(3, 3, "a"), change(4, 4, "a")], 5_000)
            .unwrap();
        let batches = s.claim(6_000, 0, 10).unwrap();
        let seq = |deal: &str| {
            batches
                .iter()
                .find(|b| b.key == format!("deal:{deal}"))
                .unwrap()
                .items[0]
                .seq
        };
        // Deal 1's event is applied and old; deal 2's is old but parked; deal 3's is
        // applied but recent; deal 4's is old enough but still waiting.
        s.complete(&[seq("1"), seq("3")], 6_000).unwrap();
        s.dead_letter(&[seq("2")], "no", 6_000).unwrap();
        s.release(&[seq("4")], 6_000).unwrap();
        assert_eq!(s.prune_done(2_000, 100).unwrap(), 1);
        assert_eq!(s.prune_done(2_000, 100).unwrap(), 0);
        let left = s.stats().unwrap();
        assert_eq!((left.done, left.dead, left.pending), (1, 1, 1));
        // A pruned event is forgotten: the same delivery again is new.
        assert_eq!(s.accept(&[change(1, 1, "a")], 7_000).unwrap().new, 1);
        assert_eq!(s.accept(&[change(2, 2, "a")], 7_000).unwrap().duplicates, 1);
        assert_eq!(s.accept(&[change(3, 3, "a")], 7_000).unwrap().duplicates, 1);
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
    fn a_dead_letter_requeued_by_another_process_is_claimed_by_the_running_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let service = SqliteStore::open(&path).unwrap();
        service.accept(&[change(1, 1, "amount")], 0).unwrap();
        let b = service.claim(0, 0, 10).unwrap();
        service.dead_letter(&[b[0].items[0].seq], "no", 0).unwrap();
        assert!(service.claim(10, 0, 10).unwrap().is_empty());
        // `pcsync dlq retry` opens the same file while the service runs.
        let cli = SqliteStore::open(&path).unwrap();
        assert!(cli.requeue(b[0].items[0].seq, 20).unwrap());
        drop(cli);
        let again = service.claim(30, 0, 10).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].items[0].event.id, change(1, 1, "amount").0.id);
    }

    #[test]
    fn a_state_file_with_the_old_single_inbox_table_moves_to_the_new_layout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let db = Connection::open(&path).unwrap();
            db.execute_batch(
                "CREATE TABLE inbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
                     ordering_key TEXT NOT NULL, received_at INTEGER NOT NULL, event TEXT NOT NULL,
                     status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, not_before INTEGER NOT NULL,
                     last_error TEXT, updated_at INTEGER NOT NULL);",
            )
            .unwrap();
            for (deal, status, error) in [
                (1, "done", None),
                (2, "running", None),
                (3, "dead", Some("bad")),
            ] {
                let (event, key) = change(deal, deal, "amount");
                db.execute(
                    "INSERT INTO inbox (event_id, ordering_key, received_at, event, status, attempts, not_before, last_error, updated_at)
                     VALUES (?1, ?2, 5, ?3, ?4, 1, 5, ?5, 5)",
                    params![event.id, key, serde_json::to_string(&event).unwrap(), status, error],
                )
                .unwrap();
            }
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.recover(10).unwrap(), 1);
        let stats = s.stats().unwrap();
        assert_eq!((stats.done, stats.pending, stats.dead), (1, 1, 1));
        let claimed = s.claim(10, 0, 10).unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(
            (claimed[0].key.as_str(), claimed[0].items[0].attempts),
            ("deal:2", 1)
        );
        assert_eq!(s.dead_letters().unwrap()[0].reason, "bad");
        // The applied event is still recognised when delivered again.
        assert_eq!(
            s.accept(&[change(1, 1, "amount")], 20).unwrap().duplicates,
            1
        );
        drop(s);
        // Opening again finds nothing left to move.
        assert_eq!(SqliteStore::open(&path).unwrap().stats().unwrap().done, 1);
    }

    #[test]
    fn counts_follow_every_change_without_recounting_and_after_another_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let s = SqliteStore::open(&path).unwrap();
        let shape = |s: &SqliteStore| {
            let t = s.stats().unwrap();
            (t.pending, t.running, t.deferred, t.done, t.dead)
        };
        s.accept(
            &[change(1, 1, "a"), change(2, 2, "a"), change(3, 3, "a")],
            0,
        )
        .unwrap();
        assert_eq!(shape(&s), (3, 0, 0, 0, 0));
        let b = s.claim(0, 0, 10).unwrap();
        assert_eq!(shape(&s), (0, 3, 0, 0, 0));
        s.defer(&[b[0].items[0].seq], 100, "review", 0).unwrap();
        s.dead_letter(&[b[1].items[0].seq], "bad", 0).unwrap();
        s.complete(&[b[2].items[0].seq], 0).unwrap();
        assert_eq!(shape(&s), (0, 0, 1, 1, 1));
        let (unreadable, _) = change(9, 9, "a");
        s.park(&[(unreadable, "cannot be read".into())], 0).unwrap();
        assert_eq!(shape(&s), (0, 0, 1, 1, 2));
        // The same dead letter parked again is not counted twice.
        let again = s.claim(200, 0, 10).unwrap();
        s.dead_letter(&[again[0].items[0].seq], "still in review", 200)
            .unwrap();
        assert_eq!(shape(&s), (0, 0, 0, 1, 3));
        assert!(s.drop_dead(b[1].items[0].seq).unwrap());
        assert_eq!(shape(&s), (0, 0, 0, 1, 2));
        assert_eq!(s.prune_done(1_000, 10).unwrap(), 1);
        assert_eq!(shape(&s), (0, 0, 0, 0, 2));
        // Another process (`pcsync dlq retry`) puts one back.
        let cli = SqliteStore::open(&path).unwrap();
        assert!(cli.requeue(b[0].items[0].seq, 300).unwrap());
        drop(cli);
        assert_eq!(shape(&s), (1, 0, 0, 0, 1));
    }

    #[test]
    fn pack_state_accumulates_sent_keys_and_writes_are_remembered() {
        let (_d, s) = store();
        let mut record = StateRecord {
            opportunity_id: "O1".into(),
            ..StateRecord::default()
        };
        record.watches.insert("score".into(), json!(50));
        record.sent = vec!["score-up:40->50".into()];
        s.record_state("smart-notifications", &record, 0).unwrap();
        record.watches.insert("score".into(), json!(70));
        record.sent = vec!["score-up:50->70".into()];
        s.record_state("smart-notifications", &record, 1).unwrap();
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
