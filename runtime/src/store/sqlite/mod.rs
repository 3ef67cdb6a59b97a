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
use super::{Accepted, Arrival, Batch, Claimed, DeadLetter, Deferred, InboxStats, StoreError};

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
CREATE TABLE IF NOT EXISTS heartbeat (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS written (
    object     TEXT NOT NULL,
    property   TEXT NOT NULL,
    value      TEXT NOT NULL,
    written_at INTEGER NOT NULL,
    PRIMARY KEY (object, property)
);
CREATE TABLE IF NOT EXISTS api_calls (
    api     TEXT NOT NULL,
    class   TEXT NOT NULL,
    minute  INTEGER NOT NULL,
    calls   INTEGER NOT NULL,
    PRIMARY KEY (api, class, minute)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS opportunity_seen (
    opportunity_id TEXT PRIMARY KEY,
    stage          TEXT,
    review_status  TEXT,
    read_at        INTEGER NOT NULL,
    summary_at     INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS run (
    id          INTEGER PRIMARY KEY,
    event_id    TEXT NOT NULL,
    pack        TEXT NOT NULL,
    at          INTEGER NOT NULL,
    deal_id     TEXT,
    event       TEXT NOT NULL,
    context     TEXT NOT NULL,
    opportunity TEXT,
    aws_summary TEXT,
    entries     TEXT NOT NULL,
    bytes       INTEGER NOT NULL,
    UNIQUE (event_id, pack)
);
CREATE INDEX IF NOT EXISTS run_at ON run (at);
CREATE TABLE IF NOT EXISTS run_blob (
    hash TEXT PRIMARY KEY,
    json TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshot (
    opportunity_id TEXT NOT NULL,
    engagement_id  TEXT NOT NULL,
    template       TEXT NOT NULL,
    revision       INTEGER NOT NULL,
    json           TEXT NOT NULL,
    used_at        INTEGER NOT NULL,
    PRIMARY KEY (opportunity_id, engagement_id, template, revision)
) WITHOUT ROWID;
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
    /// The connection refuses writes (`query_only`): the WAL index could not be
    /// written ([`wal_index`]).
    refusing: bool,
}

#[derive(Debug, Clone, Copy)]
struct Counts {
    events: u64,
    dead: u64,
}

/// The embedded store.
pub struct SqliteStore {
    db: std::sync::Arc<Mutex<Db>>,
    /// What the store and its checkpoint thread share besides the database.
    shared: std::sync::Arc<Shared>,
    /// The state file.
    path: std::path::PathBuf,
    wal_path: std::path::PathBuf,
    group: Mutex<Group>,
    turn: Condvar,
    /// Ends the checkpoint thread when the store goes.
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Kept apart from [`Db`] so that syncing the WAL and noting how writes went never
/// wait for the connection.
#[derive(Debug, Default)]
struct Shared {
    /// The WAL file, synced by the group commits themselves; replaced when the
    /// connections are opened again ([`renew`]).
    wal: Mutex<Option<std::sync::Arc<std::fs::File>>>,
    /// How the last writes went, for [`Inbox::check_writable`].
    writes: Mutex<Writes>,
    /// The connection could not open the file for writing (a read-only file or
    /// file system at start-up): the checkpoint thread opens it again until it can.
    read_only: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// The WAL file held open, when it is.
    fn held_wal(&self) -> Option<std::sync::Arc<std::fs::File>> {
        self.wal.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The outcome of the latest writes: when one last succeeded, and the latest
/// failure.
#[derive(Debug, Default)]
struct Writes {
    ok_at: i64,
    failed: Option<(i64, String)>,
}

/// How long a failed write marks the store unwritable when no write succeeds after
/// it (then the probe write decides).
const FAILURE_HOLDS_MS: i64 = 30_000;

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Checkpoints the WAL every `CHECKPOINT_EVERY` until `stop`, without holding up
/// commits: PASSIVE, on its own connection, copies what was committed since the last
/// time, and this thread then flushes the database file. It also opens the
/// connections again when they cannot go on as they are ([`renew`]).
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
    mut keeper: renew::Keeper,
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
    let mut flushed = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(CHECKPOINT_EVERY);
        let Some(db) = db.upgrade() else { break };
        if keeper.renew_if_needed(&db) {
            flushed = 0;
        }
        if wal_index::lost() {
            // Its own copy of the index may say more than the file others read:
            // copying frames by it could put pages in the database file that
            // their view of the log does not account for.
            continue;
        }
        let (log, copied) = passive(&keeper.conn);
        // The checkpoint that copies the last frames flushes the database file, and
        // with it every page the earlier ones copied; a large flush holds up the
        // commits' own WAL syncs on the same disk. Flushed here, a little at a time,
        // it stays small.
        if copied != flushed {
            flushed = copied;
            let started = std::time::Instant::now();
            if let Some(file) = &keeper.file
                && let Err(e) = file.sync_data()
            {
                tracing::debug!(error = %e, "flushing the database file");
            }
            tracing::trace!(took = ?started.elapsed(), "database file flushed");
        }
        if log > WAL_FRAMES {
            let _held = db.lock().unwrap_or_else(|e| e.into_inner());
            passive(&keeper.conn);
            flushed = 0;
        }
    }
    if !wal_index::lost() {
        let _ = keeper
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }
}

/// How often the WAL is copied into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// Frames (pages) the WAL may hold before it is made to start over: 64 MiB.
const WAL_FRAMES: i64 = 16_384;

/// Rows one claim takes at most (after the first batch): reading their text holds
/// the connection, so ingest waits behind it.
const CLAIM_ROWS: usize = 2_048;

/// Events of one key that one claim takes at most. A run covers every event of its
/// key already waiting (it reads both sides fresh), so a backlog of a key is one run
/// up to this many events; the bound only keeps one batch's memory in check.
const BATCH_ROWS: usize = 5_000;

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
                .or_insert_with(|| Err(StoreError::Interrupted));
        }
        self.0.turn.notify_all();
    }
}

fn err(e: impl Into<StoreError>) -> StoreError {
    e.into()
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

/// Creates the tables a store needs (or a newer pcsync added).
fn set_up(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let opening = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    let tx = conn.transaction().map_err(opening)?;
    tx.execute_batch(SCHEMA).map_err(opening)?;
    tx.commit().map_err(opening)
}

/// Whether opening failed only because the file, its directory or its file system
/// cannot be written (SQLite cannot create the WAL beside it).
fn unwritable(e: &StoreError) -> bool {
    use rusqlite::ErrorCode::*;
    matches!(e, StoreError::Open { source, .. }
        if matches!(source.sqlite_error_code(), Some(CannotOpen | ReadOnly | PermissionDenied | SystemIoFailure)))
}

/// The connection of a store waiting for its file ([`SqliteStore::open_or_wait`]):
/// empty tables in memory, refusing writes.
fn waiting() -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open_in_memory()?;
    conn.execute_batch(SCHEMA)?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::opened(path, false)
    }

    /// [`SqliteStore::open`] for the service, which should start (and say 503) on a
    /// read-only directory or file system rather than exit: when the file cannot
    /// be opened only because nothing there can be written, the store starts
    /// empty, refusing writes, and opens the file as soon as it can (tried every
    /// second). Any other failure (an empty or foreign file, a failed move to the
    /// current layout) is still an error.
    pub fn open_or_wait(path: &Path) -> Result<Self, StoreError> {
        Self::opened(path, true)
    }

    fn opened(path: &Path, wait: bool) -> Result<Self, StoreError> {
        let opening = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        // SQLite takes an empty file for a new database. An existing state file is
        // never empty (it has a header from its first open), so an empty one was
        // truncated: refuse rather than start over silently.
        if std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0) {
            return Err(StoreError::Empty {
                path: path.to_path_buf(),
            });
        }
        wal_index::guard();
        let opened = connect(path)
            .map_err(opening)
            .and_then(|mut conn| set_up(&mut conn, path).map(|()| conn));
        let (conn, read_only, waits) = match opened {
            // SQLite opens a file it may not write read-only, and that connection
            // stays so: the store refuses writes (health says 503) until the
            // checkpoint thread manages to open it for writing.
            Ok(conn) => {
                let read_only = conn.is_readonly(rusqlite::MAIN_DB).map_err(opening)?;
                (conn, read_only, false)
            }
            Err(e) if wait && unwritable(&e) => {
                tracing::warn!(error = %e, "the state file cannot be opened where nothing can be written");
                (waiting().map_err(opening)?, true, true)
            }
            Err(e) => return Err(e),
        };
        if read_only {
            tracing::warn!(
                path = %path.display(),
                "the state file cannot be written (a read-only file or file system): \
                 writes are refused until it can, tried again every second"
            );
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut wal_path = path.as_os_str().to_owned();
        wal_path.push("-wal");
        let wal_path: std::path::PathBuf = wal_path.into();
        let shared = std::sync::Arc::new(Shared {
            // Opened now, while it is the file SQLite has open: the checkpoint thread
            // compares the two to notice that it was deleted.
            wal: Mutex::new(std::fs::File::open(&wal_path).ok().map(std::sync::Arc::new)),
            writes: Mutex::default(),
            read_only: read_only.into(),
        });
        let keeper =
            renew::Keeper::new(path, std::sync::Arc::clone(&shared), waits).map_err(opening)?;
        let db = std::sync::Arc::new(Mutex::new(Db {
            conn,
            queue: Queue::default(),
            fresh: false,
            version: 0,
            counts: None,
            refusing: false,
        }));
        let (stopping, held) = (std::sync::Arc::clone(&stop), std::sync::Arc::downgrade(&db));
        std::thread::Builder::new()
            .name("pcsync-checkpoint".into())
            .spawn(move || checkpoint(keeper, held, stopping))
            .map_err(|source| StoreError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(SqliteStore {
            db,
            shared,
            path: path.to_path_buf(),
            wal_path,
            group: Mutex::default(),
            turn: Condvar::new(),
            stop,
        })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Db> {
        let mut db = self.db.lock().expect("the store lock is never poisoned");
        if wal_index::lost() && !db.refusing {
            db.refusing = true;
            tracing::error!(
                path = %self.index_path().display(),
                "the WAL index cannot be written (made immutable, or its file system went \
                 read-only): the store refuses writes until it can, and reads meanwhile"
            );
            if let Err(e) = db.conn.pragma_update(None, "query_only", true) {
                tracing::warn!(error = %e, "the store could not be set to refuse writes");
            }
        }
        db
    }

    /// The WAL index, beside the state file.
    fn index_path(&self) -> std::path::PathBuf {
        let mut path = self.path.as_os_str().to_owned();
        path.push("-shm");
        path.into()
    }

    /// Refuses a write that met a WAL index that cannot be written: the commit may
    /// be in this process's copy of the index only, so it is not acknowledged.
    fn index_written<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if wal_index::lost() {
            return Err(StoreError::IndexUnwritable {
                path: self.index_path(),
            });
        }
        result
    }

    /// Notes how a write went (for health checks) and passes its result on.
    fn noted<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        let now = jiff::Timestamp::now().as_millisecond();
        let mut writes = self.shared.writes.lock().unwrap_or_else(|e| e.into_inner());
        match &result {
            Ok(_) => writes.ok_at = now,
            Err(e) => writes.failed = Some((now, e.to_string())),
        }
        result
    }

    /// [`Inbox::check_writable`].
    fn writable(&self, now_ms: i64) -> Result<(), StoreError> {
        if wal_index::lost() {
            return Err(StoreError::IndexUnwritable {
                path: self.index_path(),
            });
        }
        // A write the size of one row: fails at once on a read-only file system.
        // Left unsynced; it matters only that it can be written. Not noted: a full
        // disk may take one row and still refuse a batch, so only real writes say
        // the store has recovered.
        self.db().unsynced(|db| {
            db.conn
                .execute(
                    "INSERT INTO heartbeat (id, at) VALUES (1, ?1)
                     ON CONFLICT (id) DO UPDATE SET at = excluded.at",
                    params![now_ms],
                )
                .map(|_| ())
                .map_err(err)
        })?;
        let writes = self.shared.writes.lock().unwrap_or_else(|e| e.into_inner());
        match &writes.failed {
            Some((at, cause)) if *at >= writes.ok_at && now_ms - at < FAILURE_HOLDS_MS => {
                Err(StoreError::Unwritable {
                    since: (now_ms - at).max(0),
                    cause: cause.clone(),
                })
            }
            _ => Ok(()),
        }
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
        let (counts, arrived_at) =
            self.index_written(db.unsynced(|db| Self::insert_group(db, jobs)))?;
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
        let file = match self.shared.held_wal() {
            Some(file) => file,
            None => {
                let file =
                    std::sync::Arc::new(std::fs::File::open(&self.wal_path).map_err(|source| {
                        StoreError::Io {
                            path: self.wal_path.clone(),
                            source,
                        }
                    })?);
                self.shared
                    .wal
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(file)
                    .clone()
            }
        };
        let started = std::time::Instant::now();
        let r = file.sync_data().map_err(|source| StoreError::Io {
            path: self.wal_path.clone(),
            source,
        });
        tracing::trace!(took_us = started.elapsed().as_micros() as u64, "WAL synced");
        r
    }
}

/// A connection to the state file as the store writes it: WAL, each commit synced
/// (`synchronous=FULL`), checkpoints left to the checkpoint thread.
fn connect(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "busy_timeout", 5000)?;
    // 16 MiB of page cache (the default is 2 MiB): the tables' recent pages and
    // the dedupe index stay in memory instead of being re-read from the OS.
    conn.pragma_update(None, "cache_size", -16_000)?;
    // Checkpoints (copying the WAL back into the database file) run on their
    // own connection and thread, not inside a commit an HTTP request waits for.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    Ok(conn)
}

fn event_of(text: &str) -> Result<Event, StoreError> {
    Event::from_stored_json(text).map_err(StoreError::Event)
}

mod echo;
mod inbox;
mod journal;
mod quota;
mod renew;
mod runs;
mod wal_index;
pub use runs::read_runs;
mod seen;
mod snapshot;
mod state;

#[cfg(test)]
mod tests;
