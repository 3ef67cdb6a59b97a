//! Opening the store's connections again, from the checkpoint thread, when they
//! cannot go on as they are:
//! - The state file was opened read-only (a read-only file or file system at
//!   start-up). SQLite keeps such a connection read-only for good, so the store
//!   would refuse writes until a restart. Tried again every second until a
//!   connection opens for writing and takes a write.
//! - The WAL file was deleted while the store had it open. SQLite goes on writing to
//!   the deleted file, which no other process can see: one that opens the state file
//!   (`pcsync dlq`) finds a new, empty log that the shared index says is longer
//!   ("disk I/O error"), and every commit since the last checkpoint would be gone
//!   once the store closes the deleted file. Its frames are copied into the database
//!   file first (a TRUNCATE checkpoint, which also empties the index), then the
//!   connections open a new log.
//! - The WAL index could not be written ([`super::wal_index`]): the store reads
//!   through its own copy of some of its pages. Once the index file can be written,
//!   its header on disk is cleared, so that whoever reads it next (this process or
//!   another) rebuilds it from the log, and every connection of the store is
//!   closed, taking the copy with it, before new ones open.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};

use super::{Db, Shared};

/// How often a read-only store tries to open the file for writing.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// The checkpoint thread's connection and files, and what it needs to open the
/// store's connections again.
pub(super) struct Keeper {
    /// The checkpoint connection.
    pub(super) conn: Connection,
    /// The database file, flushed after checkpoints.
    pub(super) file: Option<std::fs::File>,
    path: PathBuf,
    wal_path: PathBuf,
    index_path: PathBuf,
    shared: Arc<Shared>,
    /// When a read-only store last tried to open the file for writing.
    tried: Option<Instant>,
    /// The WAL file is known to be deleted (said once in the log).
    wal_deleted: bool,
}

/// Why the connections are opened again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    ReadOnly,
    WalDeleted,
    IndexLost,
}

/// Why they could not be, this time.
#[derive(Debug, thiserror::Error)]
enum NotYet {
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("a reader holds the log, so it cannot be copied into the database file yet")]
    Busy,
    #[error("{0}")]
    SetUp(#[from] crate::store::StoreError),
    #[error("the file still opens read-only")]
    ReadOnly,
    #[error("the WAL index cannot be written yet: {0}")]
    Index(#[from] std::io::Error),
}

fn checkpoint_connection(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "busy_timeout", 5000)?;
    Ok(conn)
}

impl Keeper {
    /// `waiting`: the store could not open the file at all (yet).
    pub(super) fn new(
        path: &Path,
        shared: Arc<Shared>,
        waiting: bool,
    ) -> Result<Keeper, rusqlite::Error> {
        let (mut wal_path, mut index_path) =
            (path.as_os_str().to_owned(), path.as_os_str().to_owned());
        wal_path.push("-wal");
        index_path.push("-shm");
        Ok(Keeper {
            index_path: index_path.into(),
            conn: if waiting {
                Connection::open_in_memory()?
            } else {
                checkpoint_connection(path)?
            },
            // A store waiting for its file has none yet.
            file: (!waiting).then(|| std::fs::File::open(path).ok()).flatten(),
            path: path.to_path_buf(),
            wal_path: wal_path.into(),
            shared,
            tried: None,
            wal_deleted: false,
        })
    }

    /// Opens the connections again when they need it and can be; true when they
    /// were.
    pub(super) fn renew_if_needed(&mut self, db: &Mutex<Db>) -> bool {
        if self.state_file_moved() {
            // Deleted or replaced (`serve --sandbox` removes its state as it stops):
            // opening the path again would start a new, empty store.
            return false;
        }
        let why = if self.wal_is_deleted() {
            if !self.wal_deleted {
                self.wal_deleted = true;
                tracing::warn!(
                    path = %self.wal_path.display(),
                    "the WAL file was deleted while the store had it open: copying it into \
                     the database file and starting a new one"
                );
            }
            Why::WalDeleted
        } else if self.tried.is_none_or(|t| t.elapsed() >= RETRY_EVERY)
            && let Some(why) = if super::wal_index::lost() {
                Some(Why::IndexLost)
            } else if self
                .shared
                .read_only
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                Some(Why::ReadOnly)
            } else {
                None
            }
        {
            self.tried = Some(Instant::now());
            why
        } else {
            return false;
        };
        match self.renew(db, why) {
            Ok(()) => {
                self.wal_deleted = false;
                match why {
                    Why::ReadOnly | Why::IndexLost => tracing::info!(
                        path = %self.path.display(),
                        "the state file can be written again: the store takes writes"
                    ),
                    Why::WalDeleted => tracing::info!(
                        path = %self.wal_path.display(),
                        "the deleted WAL file is copied into the database file; a new one is in use"
                    ),
                }
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, ?why, "the store's connections are not opened again yet");
                false
            }
        }
    }

    /// Whether the state file the store opened is no longer the one at its path.
    fn state_file_moved(&self) -> bool {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let Some(held) = self.file.as_ref().and_then(|f| f.metadata().ok()) else {
                return false;
            };
            std::fs::metadata(&self.path)
                .map_or(true, |m| m.ino() != held.ino() || m.dev() != held.dev())
        }
        #[cfg(not(unix))]
        false
    }

    /// Whether the WAL file the store writes is no longer the one at its path.
    fn wal_is_deleted(&self) -> bool {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            self.shared
                .held_wal()
                .and_then(|f| f.metadata().ok())
                .is_some_and(|m| m.nlink() == 0)
        }
        #[cfg(not(unix))]
        false
    }

    fn renew(&mut self, db: &Mutex<Db>, why: Why) -> Result<(), NotYet> {
        let mut db = db.lock().unwrap_or_else(|e| e.into_inner());
        if why == Why::WalDeleted {
            // Every frame of the deleted log into the database file (synced), and
            // the shared index emptied, so that the new log starts from nothing.
            // Ingest waits meanwhile: a reader elsewhere holding the log makes this
            // wait only briefly, and it is tried again 50 ms later.
            db.conn.pragma_update(None, "query_only", false)?;
            db.conn.busy_timeout(Duration::from_millis(100))?;
            let busy = db
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    r.get::<_, i64>(0)
                });
            db.conn.busy_timeout(Duration::from_secs(5))?;
            if busy? != 0 {
                // A reader elsewhere holds the deleted log. Until it can be copied
                // in, a commit would go only to a file no one can open again, so
                // that a crash would lose it: writes are refused (503, which HubSpot
                // and EventBridge retry) rather than acknowledged.
                if !db.refusing {
                    tracing::warn!(
                        path = %self.wal_path.display(),
                        "the deleted WAL file cannot be copied in yet (a reader holds it): \
                         the store refuses writes until it can"
                    );
                }
                db.refusing = true;
                db.conn.pragma_update(None, "query_only", true)?;
                return Err(NotYet::Busy);
            }
        }
        if why == Why::IndexLost {
            // Both copies of the index's header zeroed: not valid, so the next
            // reader rebuilds the index from the log, under SQLite's own locks.
            #[cfg(unix)]
            std::os::unix::fs::FileExt::write_all_at(
                &std::fs::OpenOptions::new()
                    .write(true)
                    .open(&self.index_path)?,
                &[0; 96],
                0,
            )?;
            // Closed, every one of them, so that the copy goes with the mapping
            // (connections in one process share it); until new ones open, the
            // store answers from nothing and tries again every second.
            self.shared
                .read_only
                .store(true, std::sync::atomic::Ordering::Relaxed);
            drop(std::mem::replace(
                &mut db.conn,
                Connection::open_in_memory()?,
            ));
            drop(std::mem::replace(
                &mut self.conn,
                Connection::open_in_memory()?,
            ));
            super::wal_index::reset();
            db.refusing = false;
            db.fresh = false;
            db.counts = None;
        }
        let mut conn = super::connect(&self.path)?;
        if conn.is_readonly(rusqlite::MAIN_DB)? {
            return Err(NotYet::ReadOnly);
        }
        // A store that could not open the file at all has not set it up.
        super::set_up(&mut conn, &self.path)?;
        // A write the size of one row: a read-only file system refuses it.
        conn.execute(
            "INSERT INTO heartbeat (id, at) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET at = excluded.at",
            params![jiff::Timestamp::now().as_millisecond()],
        )?;
        let ckpt = checkpoint_connection(&self.path)?;
        ckpt.query_row("SELECT COUNT(*) FROM sqlite_master", [], |_| Ok(()))?;
        // The old connections close while the new ones have the file open, so that
        // closing them is not the last close (which would delete the new log).
        drop(std::mem::replace(&mut db.conn, conn));
        drop(std::mem::replace(&mut self.conn, ckpt));
        db.refusing = false;
        // Another connection: its `data_version` starts elsewhere.
        db.fresh = false;
        db.counts = None;
        *self.shared.wal.lock().unwrap_or_else(|e| e.into_inner()) =
            std::fs::File::open(&self.wal_path).ok().map(Arc::new);
        self.file = std::fs::File::open(&self.path).ok();
        self.shared
            .read_only
            .store(false, std::sync::atomic::Ordering::Relaxed);
        // What failed before was the old connection's doing.
        self.shared
            .writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .failed = None;
        Ok(())
    }
}
