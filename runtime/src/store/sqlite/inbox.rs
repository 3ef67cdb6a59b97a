//! The inbox on SQLite: accepting (group commit), claiming, settling and the
//! dead-letter list.

use super::*;
use crate::store::Inbox;

/// A claimed key's events with their stored text, read before they are parsed.
type ClaimedText = (String, Vec<(Item, String)>);

impl SqliteStore {
    /// Writes events straight into the dead-letter list; how many were new.
    fn park_rows(db: &mut Db, events: &[(Event, String)], now_ms: i64) -> Result<u64, StoreError> {
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
        Ok(parked)
    }
}

impl Inbox for SqliteStore {
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
            let outcome = self.noted(written.and_then(|counts| self.sync_wal().map(|()| counts)));
            group = self.group();
            match outcome {
                Ok(counts) => {
                    for ((t, _, _), accepted) in jobs.iter().zip(counts) {
                        group.answers.insert(*t, Ok(accepted));
                    }
                }
                Err(e) => {
                    let shared = std::sync::Arc::new(e);
                    for (t, _, _) in &jobs {
                        group
                            .answers
                            .insert(*t, Err(StoreError::Shared(std::sync::Arc::clone(&shared))));
                    }
                }
            }
            unanswered.1.clear();
            drop(group);
            drop(unanswered);
            group = self.group();
        }
    }

    fn park(&self, events: &[(Event, String)], now_ms: i64) -> Result<u64, StoreError> {
        let mut db = self.db();
        let parked = self.index_written(Self::park_rows(&mut db, events, now_ms))?;
        if let Some(c) = &mut db.counts {
            c.events += parked;
            c.dead += parked;
        }
        Ok(parked)
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
        let all: Vec<i64> = claims
            .iter()
            .flat_map(|(_, items)| items.iter().map(|i| i.seq))
            .collect();
        let read = |db: &mut Db| -> Result<Vec<ClaimedText>, StoreError> {
            let mut claimed = Vec::with_capacity(claims.len());
            let mut read = db
                .conn
                .prepare_cached("SELECT event FROM events WHERE seq = ?1")
                .map_err(err)?;
            for (key, items) in &claims {
                let mut rows = Vec::with_capacity(items.len());
                for item in items {
                    let text: String = read
                        .query_row(params![item.seq], |r| r.get(0))
                        .map_err(err)?;
                    rows.push((*item, text));
                }
                claimed.push((key.to_string(), rows));
            }
            Ok(claimed)
        };
        // A claim that cannot be read goes back in line, not held for ever.
        let claimed = match read(db) {
            Ok(claimed) => claimed,
            Err(e) => {
                db.queue.settle(&all, Outcome::Released);
                return Err(e);
            }
        };
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
                    Err(e) => self.dead_letter(&[item.seq], &e.to_string(), now_ms)?,
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
        self.noted(self.db().settle(seqs, Outcome::Gone, Some(Update::Delete)))
    }

    fn retry(
        &self,
        seqs: &[i64],
        not_before_ms: i64,
        error: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.noted(self.db().settle(
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
        ))
    }

    fn defer(
        &self,
        seqs: &[i64],
        recheck_ms: i64,
        reason: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.noted(self.db().settle(
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
        ))
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
        self.noted(self.db().settle(
            seqs,
            Outcome::Gone,
            Some(Update::Status {
                status: "dead",
                not_before: None,
                error: Some(reason),
                bump: true,
                now: now_ms,
            }),
        ))
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

    fn flush(&self) -> Result<(), StoreError> {
        self.sync_wal()?;
        if super::wal_index::lost() {
            // Left to the next start, which rebuilds the index from the log.
            return Ok(());
        }
        // Settled: copy the log into the database file and start it over, so the
        // next start reads one file. A reader elsewhere (`pcsync dlq`) may hold it
        // back; then the log simply stays.
        let db = self.db();
        db.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(err)
    }

    fn check_writable(&self, now_ms: i64) -> Result<(), StoreError> {
        self.writable(now_ms)
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
}
