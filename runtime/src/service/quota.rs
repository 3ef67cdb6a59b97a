//! Partner Central's daily quotas in the service: each attempt is recorded in the
//! state file before it is sent (a block of attempts at a time, see
//! [`pcsync_adapters::quota`]), the counts come back from it at start-up, scheduled
//! runs stay within their share of the reads, and health and metrics say where each
//! class stands. The counting itself is the client's.

use std::sync::Arc;
use std::time::Duration;

use pcsync_adapters::quota::{
    DailyLimits, DailyQuotas, QuotaClass, QuotaJournal, UnrecordedCount, WINDOW,
};

use crate::store::{QuotaLog, StoreError};

/// The API name the counts are kept under in the state file.
const API: &str = "partnercentral";

/// How often the counts are saved besides the journal's writes: the exact counts of
/// minutes whose reservation was given back, and old minutes forgotten.
pub const SAVE_EVERY: Duration = Duration::from_secs(5);

/// The daily quotas the service counts in: each attempt is recorded in `store`
/// before it is sent, so a crash never forgets one. Restore the saved counts into it
/// ([`restore`]) before the first call.
pub fn journaled(limits: DailyLimits, store: Arc<dyn QuotaLog>) -> DailyQuotas {
    DailyQuotas::new(limits).with_journal(Arc::new(Journal(store)))
}

/// Records reservations in the state file, synced (one SQLite transaction).
struct Journal(Arc<dyn QuotaLog>);

impl QuotaJournal for Journal {
    fn record(&self, buckets: &[(QuotaClass, i64, u64)]) -> Result<(), UnrecordedCount> {
        let rows: Vec<(&str, &str, i64, u64)> = buckets
            .iter()
            .map(|(class, minute, n)| (API, class.name(), *minute, *n))
            .collect();
        // Old minutes are forgotten by the periodic save.
        // The journal is the one writer of a reservation, in order (under the
        // quota's lock): its rows replace, so a minute's unused rest is given back.
        super::blocking(|| self.0.save_calls(&rows, i64::MIN, true))
            .map_err(|e| UnrecordedCount(Box::new(e)))
    }
}

/// Puts the counts of the last 24 hours from the state file back into `quotas`.
pub fn restore(quotas: &DailyQuotas, store: &dyn QuotaLog, now_ms: i64) -> Result<u64, StoreError> {
    let since = now_ms - WINDOW.as_millis() as i64;
    let saved = store.load_calls(API, since)?;
    let calls = saved.iter().map(|(_, _, n)| n).sum();
    quotas.restore(
        saved
            .into_iter()
            .filter_map(|(class, minute, n)| Some((QuotaClass::from_name(&class)?, minute, n))),
        now_ms,
    );
    Ok(calls)
}

/// Saves the minutes counted since the last save; kept for the next save when the
/// store refuses. At shutdown, [`DailyQuotas::release`] first, so the unused rest of
/// the reservations is not counted by the next start.
pub fn save(quotas: &DailyQuotas, store: &dyn QuotaLog, now_ms: i64) -> Result<(), StoreError> {
    save_counts(quotas, store, now_ms, false)
}

/// At shutdown, once nothing counts any more: gives back the unused rest of each
/// reservation ([`DailyQuotas::release`]) and saves the exact counts.
pub fn release_and_save(
    quotas: &DailyQuotas,
    store: &dyn QuotaLog,
    now_ms: i64,
) -> Result<(), StoreError> {
    quotas.release();
    save_counts(quotas, store, now_ms, true)
}

/// The periodic save only raises a minute's count: it reads the counts, then writes
/// them, and a reservation the journal wrote in between must stay.
fn save_counts(
    quotas: &DailyQuotas,
    store: &dyn QuotaLog,
    now_ms: i64,
    replace: bool,
) -> Result<(), StoreError> {
    let unsaved = quotas.unsaved();
    if unsaved.is_empty() {
        return Ok(());
    }
    let rows: Vec<(&str, &str, i64, u64)> = unsaved
        .iter()
        .map(|(class, minute, n)| (API, class.name(), *minute, *n))
        .collect();
    let forget = now_ms - WINDOW.as_millis() as i64;
    super::blocking(|| store.save_calls(&rows, forget, replace)).inspect_err(|_| {
        quotas.unsaved_again(unsaved);
    })
}

/// Saves the counts every [`SAVE_EVERY`] until the task is dropped.
pub async fn keep_saved(
    quotas: Arc<DailyQuotas>,
    store: Arc<dyn QuotaLog>,
    clock: Arc<dyn crate::clock::Clock>,
) {
    let mut tick = tokio::time::interval(SAVE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = save(&quotas, &*store, clock.now_ms()) {
            tracing::warn!(error = %e, "cannot save the daily quota counts; trying again");
        }
    }
}

/// Whether scheduled runs may start: the day's reads are below `share` of the
/// allowance and the class is not paused. Events (webhooks, EventBridge) are not
/// held by this; they meet the quota itself.
pub fn schedules_may_read(quotas: &DailyQuotas, share: f64, now_ms: i64) -> Result<(), String> {
    let read = quotas
        .status(now_ms)
        .into_iter()
        .find(|s| s.class == QuotaClass::Read)
        .expect("every class has a status");
    let budget = (read.limit as f64 * share.clamp(0.0, 1.0)) as u64;
    if read.paused_until.is_some() {
        return Err("the daily read quota is spent".into());
    }
    if read.used >= budget {
        return Err(format!(
            "{} reads in the last 24 hours, at the scheduled share ({budget} of {})",
            read.used, read.limit
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;
    use pcsync_adapters::quota::DailyLimits;

    const H: i64 = 3600 * 1000;

    #[test]
    fn a_periodic_save_that_raced_a_reservation_does_not_lower_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
        // The save read 10 for the minute; meanwhile the journal reserved 20 and
        // the calls up to it were sent. The save's write lands last.
        store
            .save_calls(&[(API, "read", 10 * H, 20)], i64::MIN, true)
            .unwrap();
        store
            .save_calls(&[(API, "read", 10 * H, 10)], i64::MIN, false)
            .unwrap();
        let next = DailyQuotas::new(DailyLimits::default());
        restore(&next, &store, 10 * H).unwrap();
        assert_eq!(next.used(QuotaClass::Read, 10 * H), 20);
    }

    #[test]
    fn a_restart_keeps_the_days_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let quotas = DailyQuotas::new(DailyLimits::default());
        {
            let store = SqliteStore::open(&path).unwrap();
            for i in 0..40 {
                quotas.count(QuotaClass::Read, 10 * H + i * 20_000).unwrap();
            }
            save(&quotas, &store, 11 * H).unwrap();
            // Counted after the save, saved again: the minute's count replaces the
            // saved one instead of adding to it.
            quotas
                .count(QuotaClass::Read, 10 * H + 40 * 20_000)
                .unwrap();
            quotas.count(QuotaClass::Write, 11 * H).unwrap();
            save(&quotas, &store, 11 * H).unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let next = DailyQuotas::new(DailyLimits::default());
        assert_eq!(restore(&next, &store, 12 * H).unwrap(), 42);
        assert_eq!(next.used(QuotaClass::Read, 12 * H), 41);
        assert_eq!(next.used(QuotaClass::Write, 12 * H), 1);
        // A day later, nothing is left to restore.
        let later = DailyQuotas::new(DailyLimits::default());
        assert_eq!(restore(&later, &store, 36 * H).unwrap(), 0);
    }

    #[test]
    fn a_crash_never_forgets_an_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let (reads, writes) = (137, 23);
        {
            let store = Arc::new(SqliteStore::open(&path).unwrap());
            let quotas = journaled(DailyLimits::default(), store);
            // Over three minutes, as a worker would spend them.
            for i in 0..reads {
                quotas.count(QuotaClass::Read, 10 * H + i * 1_300).unwrap();
            }
            for i in 0..writes {
                quotas.count(QuotaClass::Write, 10 * H + i * 7_000).unwrap();
            }
            // Killed: no save, no release; what was in memory is gone.
        }
        let store = SqliteStore::open(&path).unwrap();
        let next = DailyQuotas::new(DailyLimits::default());
        restore(&next, &store, 10 * H + 200_000).unwrap();
        let (read, written) = (
            next.used(QuotaClass::Read, 10 * H + 200_000),
            next.used(QuotaClass::Write, 10 * H + 200_000),
        );
        let block = |c| next.block(c) as i64;
        assert!(
            (reads..reads + block(QuotaClass::Read)).contains(&(read as i64)),
            "{read} reads counted of {reads} sent"
        );
        assert!(
            (writes..writes + block(QuotaClass::Write)).contains(&(written as i64)),
            "{written} writes counted of {writes} sent"
        );

        // Stopped cleanly, the rest of the reservation is given back.
        let later = 10 * H + 200_000;
        let store = Arc::new(store);
        let quotas = journaled(DailyLimits::default(), store.clone());
        restore(&quotas, &*store, later).unwrap();
        quotas.count(QuotaClass::Read, later).unwrap();
        release_and_save(&quotas, &*store, later).unwrap();
        let exact = DailyQuotas::new(DailyLimits::default());
        restore(&exact, &*store, later).unwrap();
        assert_eq!(exact.used(QuotaClass::Read, later), read + 1);
    }

    #[test]
    fn schedules_stop_at_their_share_of_the_reads() {
        let quotas = DailyQuotas::new(DailyLimits {
            reads: 10,
            writes: 10,
        });
        for _ in 0..4 {
            quotas.count(QuotaClass::Read, 0).unwrap();
        }
        assert_eq!(schedules_may_read(&quotas, 0.5, H), Ok(()));
        quotas.count(QuotaClass::Read, 0).unwrap();
        let refused = schedules_may_read(&quotas, 0.5, H).unwrap_err();
        assert!(refused.contains("5 reads"), "{refused}");
        assert_eq!(schedules_may_read(&quotas, 0.5, 25 * H), Ok(()));
        quotas.pause(QuotaClass::Read, 25 * H);
        assert!(schedules_may_read(&quotas, 1.0, 25 * H).is_err());
    }
}
