//! Partner Central's daily quotas, counted on pcsync's side.
//!
//! Besides its per-second rates, the Selling API allows each partner account 100,000
//! reads and 10,000 writes per rolling 24 hours, each over a listed set of
//! operations (developer guide "Quotas"; the other operations have no documented
//! quota). AWS reports no usage, so pcsync counts every attempt it sends, in minute
//! buckets over the last 24 hours. It persists them (the runtime saves
//! [`DailyQuotas::unsaved`] and hands them back with [`DailyQuotas::restore`]), so a
//! restart does not forget the day.
//!
//! A crash must not forget them either: a process killed in a loop would otherwise
//! take the account past AWS's quota. With a [`QuotaJournal`], an attempt is
//! counted durably before it is sent: the journal records a *reservation* for the
//! minute, this call and the [`DailyQuotas::block`] − 1 after it, and those are then
//! counted in memory. A crash over-counts by at most the unused rest of one block per
//! class (over-counting is the safe direction) and never under-counts. A new minute
//! takes a new reservation, and the same write records the previous minute's exact
//! count, so only the newest minute ever holds an unused rest.
//!
//! A class whose count reaches its limit, or that AWS says is spent, is *paused*:
//! calls in it are refused on this side, with how long until the window allows one
//! again, instead of being sent to fail.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where counts are recorded, durably, before the calls they count are sent (the
/// runtime's state file).
pub trait QuotaJournal: Send + Sync {
    /// Records each (class, minute start in ms, calls in that minute), replacing
    /// what was recorded for that minute; returns once they survive a crash.
    fn record(&self, buckets: &[(QuotaClass, i64, u64)]) -> Result<(), UnrecordedCount>;
}

/// A count the [`QuotaJournal`] could not record: the call is not sent.
#[derive(Debug, thiserror::Error)]
#[error("cannot record the daily quota count: {0}")]
pub struct UnrecordedCount(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// A daily quota: which operations count against which allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QuotaClass {
    /// 100,000 per rolling 24 hours.
    Read,
    /// 10,000 per rolling 24 hours.
    Write,
}

impl QuotaClass {
    /// Both classes.
    pub const ALL: [QuotaClass; 2] = [QuotaClass::Read, QuotaClass::Write];

    /// `read` or `write`, for metrics, health and the state file.
    pub fn name(self) -> &'static str {
        match self {
            QuotaClass::Read => "read",
            QuotaClass::Write => "write",
        }
    }

    /// The class a [`QuotaClass::name`] names.
    pub fn from_name(name: &str) -> Option<QuotaClass> {
        QuotaClass::ALL.into_iter().find(|c| c.name() == name)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The class an operation counts against, if its quota is documented (developer
/// guide "Quotas").
pub fn quota_class(operation: &str) -> Option<QuotaClass> {
    const READS: &[&str] = &[
        "GetOpportunity",
        "GetAwsOpportunitySummary",
        "ListOpportunities",
        "ListSolutions",
        "GetEngagementInvitation",
        "ListEngagementInvitations",
    ];
    const WRITES: &[&str] = &[
        "CreateOpportunity",
        "UpdateOpportunity",
        "AssociateOpportunity",
        "DisassociateOpportunity",
        "RejectEngagementInvitation",
        "AssignOpportunity",
        "StartEngagementFromOpportunityTask",
        "StartEngagementByAcceptingInvitationTask",
    ];
    if READS.contains(&operation) {
        Some(QuotaClass::Read)
    } else if WRITES.contains(&operation) {
        Some(QuotaClass::Write)
    } else {
        None
    }
}

/// The allowances per rolling 24 hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyLimits {
    /// Reads.
    pub reads: u64,
    /// Writes.
    pub writes: u64,
}

impl Default for DailyLimits {
    fn default() -> Self {
        DailyLimits {
            reads: 100_000,
            writes: 10_000,
        }
    }
}

impl DailyLimits {
    /// The allowance of `class`.
    pub fn of(&self, class: QuotaClass) -> u64 {
        match class {
            QuotaClass::Read => self.reads,
            QuotaClass::Write => self.writes,
        }
    }
}

const MINUTE_MS: i64 = 60_000;
/// The rolling window.
pub const WINDOW: Duration = Duration::from_secs(24 * 3600);
const WINDOW_MS: i64 = 24 * 3600 * 1000;
/// How long a class stays paused when AWS says it is spent but pcsync's own count
/// does not show when it frees (other clients of the account spent it too).
pub const UNKNOWN_PAUSE: Duration = Duration::from_secs(15 * 60);

/// Where a class stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaStatus {
    /// The class.
    pub class: QuotaClass,
    /// Calls counted in the last 24 hours.
    pub used: u64,
    /// The allowance.
    pub limit: u64,
    /// Until when calls in the class are refused (ms since the epoch), when paused.
    pub paused_until: Option<i64>,
}

impl QuotaStatus {
    /// What is left of the allowance.
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }
}

/// The calls counted per class over the last 24 hours, and the pauses.
pub struct DailyQuotas {
    limits: DailyLimits,
    inner: Mutex<Inner>,
    journal: Option<Arc<dyn QuotaJournal>>,
}

impl std::fmt::Debug for DailyQuotas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DailyQuotas")
            .field("limits", &self.limits)
            .field("journaled", &self.journal.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Per class: (minute start in ms, calls), oldest first.
    minutes: [VecDeque<(i64, u64)>; 2],
    /// Per class: refused until (ms), 0 when not paused.
    paused: [i64; 2],
    /// Buckets changed since the last [`DailyQuotas::unsaved`].
    unsaved: BTreeMap<(QuotaClass, i64), u64>,
    /// Per class: the minute the journal holds a reservation for, and the calls it
    /// recorded for that minute (at least those counted in it).
    reserved: [Option<(i64, u64)>; 2],
}

impl Inner {
    /// The calls counted in `class` in the minute starting at `minute`, if any.
    fn count_in(&self, class: QuotaClass, minute: i64) -> Option<u64> {
        let buckets = &self.minutes[class.index()];
        buckets
            .binary_search_by_key(&minute, |(m, _)| *m)
            .ok()
            .map(|i| buckets[i].1)
    }

    /// Takes back a call just counted in `minute` (its journal write failed).
    fn uncount(&mut self, class: QuotaClass, minute: i64) {
        let buckets = &mut self.minutes[class.index()];
        if let Some(i) = buckets.iter().rposition(|(m, _)| *m == minute) {
            buckets[i].1 -= 1;
            if buckets[i].1 == 0 {
                buckets.remove(i);
            }
        }
    }

    fn prune(&mut self, class: QuotaClass, now_ms: i64) {
        let buckets = &mut self.minutes[class.index()];
        while buckets
            .front()
            .is_some_and(|(m, _)| *m + WINDOW_MS <= now_ms)
        {
            buckets.pop_front();
        }
    }

    fn used(&mut self, class: QuotaClass, now_ms: i64) -> u64 {
        self.prune(class, now_ms);
        self.minutes[class.index()].iter().map(|(_, n)| n).sum()
    }

    /// How long until the window holds fewer than `limit` calls, when it holds
    /// `limit` or more now.
    fn frees_in(&mut self, class: QuotaClass, limit: u64, now_ms: i64) -> Option<i64> {
        let used = self.used(class, now_ms);
        if used < limit {
            return None;
        }
        // Calls that must leave the window before one more fits.
        let mut excess = used + 1 - limit;
        for (minute, n) in &self.minutes[class.index()] {
            if *n >= excess {
                return Some((minute + WINDOW_MS - now_ms).max(1));
            }
            excess -= n;
        }
        None
    }
}

impl DailyQuotas {
    /// Counting against `limits`, from nothing.
    pub fn new(limits: DailyLimits) -> Self {
        DailyQuotas {
            limits,
            inner: Mutex::new(Inner::default()),
            journal: None,
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The allowances.
    pub fn limits(&self) -> DailyLimits {
        self.limits
    }

    /// Records counts in `journal` before each call is sent (see the module's
    /// documentation). Restore the counts of an earlier process before counting.
    pub fn with_journal(mut self, journal: Arc<dyn QuotaJournal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// How many calls of `class` one journal write reserves: a ten-thousandth of the
    /// allowance, at least one (10 reads, 1 write by default), so that a crash
    /// over-counts by less than 0.01% of the day, at a write per 10 reads.
    pub fn block(&self, class: QuotaClass) -> u64 {
        (self.limits.of(class) / 10_000).max(1)
    }

    /// Counts one call about to be sent in `class`; with a journal, once the count is
    /// recorded. When it cannot be, the call is not counted and must not be sent.
    pub fn count(&self, class: QuotaClass, now_ms: i64) -> Result<(), UnrecordedCount> {
        let minute = now_ms - now_ms.rem_euclid(MINUTE_MS);
        let mut inner = self.inner();
        let buckets = &mut inner.minutes[class.index()];
        // A clock that stepped back counts into the newest bucket.
        let (minute, n) = match buckets.back_mut() {
            Some((m, n)) if *m >= minute => {
                *n += 1;
                (*m, *n)
            }
            _ => {
                buckets.push_back((minute, 1));
                (minute, 1)
            }
        };
        let Some(journal) = &self.journal else {
            inner.unsaved.insert((class, minute), n);
            return Ok(());
        };
        let reserved = inner.reserved[class.index()];
        if let Some((m, through)) = reserved
            && m == minute
            && n <= through
        {
            // Recorded already (as the reservation).
            return Ok(());
        }
        let through = n - 1 + self.block(class);
        let mut rows = Vec::with_capacity(2);
        // The previous minute's reservation is done with: its exact count.
        if let Some((m, _)) = reserved
            && m != minute
            && let Some(exact) = inner.count_in(class, m)
        {
            rows.push((class, m, exact));
        }
        rows.push((class, minute, through));
        match journal.record(&rows) {
            Ok(()) => {
                for (class, m, _) in &rows {
                    inner.unsaved.remove(&(*class, *m));
                }
                inner.reserved[class.index()] = Some((minute, through));
                Ok(())
            }
            Err(e) => {
                inner.uncount(class, minute);
                Err(e)
            }
        }
    }

    /// Gives back the unused rest of each class's reservation (at shutdown, before
    /// the last save): the next [`DailyQuotas::unsaved`] has the exact counts.
    pub fn release(&self) {
        let mut inner = self.inner();
        for class in QuotaClass::ALL {
            if let Some((minute, _)) = inner.reserved[class.index()].take()
                && let Some(n) = inner.count_in(class, minute)
            {
                inner.unsaved.insert((class, minute), n);
            }
        }
    }

    /// `Ok` when a call in `class` may go now; else how long until one may.
    pub fn admit(&self, class: QuotaClass, now_ms: i64) -> Result<(), Duration> {
        let mut inner = self.inner();
        let paused = inner.paused[class.index()];
        if paused > now_ms {
            return Err(Duration::from_millis((paused - now_ms) as u64));
        }
        match inner.frees_in(class, self.limits.of(class), now_ms) {
            Some(wait) => {
                inner.paused[class.index()] = now_ms + wait;
                Err(Duration::from_millis(wait as u64))
            }
            None => Ok(()),
        }
    }

    /// AWS said `class` is spent: refuse it until pcsync's count shows the window
    /// allowing a call, or for [`UNKNOWN_PAUSE`] when its count is below the limit.
    /// Returns how long.
    pub fn pause(&self, class: QuotaClass, now_ms: i64) -> Duration {
        let mut inner = self.inner();
        // Its own count is at most what AWS counted: free as soon as calls leave the
        // window in the amount pcsync knows of, at the earliest.
        let wait = inner
            .frees_in(class, self.limits.of(class), now_ms)
            .unwrap_or(UNKNOWN_PAUSE.as_millis() as i64);
        inner.paused[class.index()] = inner.paused[class.index()].max(now_ms + wait);
        Duration::from_millis((inner.paused[class.index()] - now_ms) as u64)
    }

    /// Where each class stands.
    pub fn status(&self, now_ms: i64) -> Vec<QuotaStatus> {
        let mut inner = self.inner();
        QuotaClass::ALL
            .into_iter()
            .map(|class| QuotaStatus {
                class,
                used: inner.used(class, now_ms),
                limit: self.limits.of(class),
                paused_until: Some(inner.paused[class.index()]).filter(|p| *p > now_ms),
            })
            .collect()
    }

    /// Calls counted in `class` over the last 24 hours.
    pub fn used(&self, class: QuotaClass, now_ms: i64) -> u64 {
        self.inner().used(class, now_ms)
    }

    /// The buckets changed since the last call: (class, minute start in ms, calls in
    /// that minute), for the state file. A minute the journal holds a reservation for
    /// gives the reservation, so that a save never records less than it.
    pub fn unsaved(&self) -> Vec<(QuotaClass, i64, u64)> {
        let mut inner = self.inner();
        let reserved = inner.reserved;
        std::mem::take(&mut inner.unsaved)
            .into_iter()
            .map(|((c, m), n)| match reserved[c.index()] {
                Some((at, through)) if at == m => (c, m, n.max(through)),
                _ => (c, m, n),
            })
            .collect()
    }

    /// Marks buckets [`DailyQuotas::unsaved`] gave as unsaved again (their save
    /// failed); a bucket counted again since keeps its newer count.
    pub fn unsaved_again(&self, buckets: Vec<(QuotaClass, i64, u64)>) {
        let mut inner = self.inner();
        for (class, minute, n) in buckets {
            inner.unsaved.entry((class, minute)).or_insert(n);
        }
    }

    /// Puts back buckets saved by an earlier process, adding to any counted since.
    pub fn restore(&self, saved: impl IntoIterator<Item = (QuotaClass, i64, u64)>, now_ms: i64) {
        let mut inner = self.inner();
        for (class, minute, n) in saved {
            if minute + WINDOW_MS <= now_ms || n == 0 {
                continue;
            }
            let minute = minute - minute.rem_euclid(MINUTE_MS);
            let buckets = &mut inner.minutes[class.index()];
            match buckets.binary_search_by_key(&minute, |(m, _)| *m) {
                Ok(i) => buckets[i].1 += n,
                Err(i) => buckets.insert(i, (minute, n)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3600 * 1000;

    #[test]
    fn operations_count_against_the_documented_classes_only() {
        assert_eq!(quota_class("GetOpportunity"), Some(QuotaClass::Read));
        assert_eq!(quota_class("ListSolutions"), Some(QuotaClass::Read));
        assert_eq!(quota_class("UpdateOpportunity"), Some(QuotaClass::Write));
        assert_eq!(quota_class("AssociateOpportunity"), Some(QuotaClass::Write));
        assert_eq!(quota_class("GetResourceSnapshot"), None);
        assert_eq!(quota_class("SubmitOpportunity"), None);
    }

    #[test]
    fn calls_leave_the_count_24_hours_after_they_were_made() {
        let q = DailyQuotas::new(DailyLimits::default());
        q.count(QuotaClass::Read, 0).unwrap();
        q.count(QuotaClass::Read, 30 * 60_000).unwrap();
        q.count(QuotaClass::Write, 30 * 60_000).unwrap();
        assert_eq!(q.used(QuotaClass::Read, H), 2);
        assert_eq!(q.used(QuotaClass::Read, 24 * H), 1);
        assert_eq!(q.used(QuotaClass::Write, 24 * H), 1);
        assert_eq!(q.used(QuotaClass::Read, 25 * H), 0);
    }

    #[test]
    fn a_spent_class_is_refused_until_its_oldest_calls_leave_the_window() {
        let q = DailyQuotas::new(DailyLimits {
            reads: 3,
            writes: 10,
        });
        q.count(QuotaClass::Read, 0).unwrap();
        q.count(QuotaClass::Read, 2 * H).unwrap();
        assert_eq!(q.admit(QuotaClass::Read, 3 * H), Ok(()));
        q.count(QuotaClass::Read, 3 * H).unwrap();
        // Three in the window: the next may go when the first leaves it, at 24 h.
        assert_eq!(
            q.admit(QuotaClass::Read, 4 * H),
            Err(Duration::from_millis((20 * H) as u64))
        );
        assert_eq!(q.admit(QuotaClass::Write, 4 * H), Ok(()));
        let status = q.status(4 * H);
        assert_eq!(status[0].remaining(), 0);
        assert_eq!(status[0].paused_until, Some(24 * H));
        assert_eq!(q.admit(QuotaClass::Read, 24 * H), Ok(()));
    }

    #[test]
    fn aws_saying_spent_pauses_the_class_even_below_the_count() {
        let q = DailyQuotas::new(DailyLimits::default());
        q.count(QuotaClass::Write, 0).unwrap();
        assert_eq!(q.pause(QuotaClass::Write, H), UNKNOWN_PAUSE);
        assert_eq!(q.admit(QuotaClass::Write, H), Err(UNKNOWN_PAUSE));
        assert_eq!(q.admit(QuotaClass::Read, H), Ok(()));
        assert_eq!(
            q.admit(QuotaClass::Write, H + UNKNOWN_PAUSE.as_millis() as i64),
            Ok(())
        );
    }

    #[test]
    fn saved_buckets_come_back_in_a_new_process_and_old_ones_do_not() {
        let q = DailyQuotas::new(DailyLimits::default());
        for i in 0..5 {
            q.count(QuotaClass::Read, H + i * 1_000).unwrap();
        }
        q.count(QuotaClass::Write, 2 * H).unwrap();
        let saved = q.unsaved();
        assert_eq!(saved.len(), 2);
        assert!(q.unsaved().is_empty(), "taken once");
        let next = DailyQuotas::new(DailyLimits::default());
        next.count(QuotaClass::Read, 3 * H).unwrap();
        next.restore(saved.clone(), 3 * H);
        assert_eq!(next.used(QuotaClass::Read, 3 * H), 6);
        assert_eq!(next.used(QuotaClass::Write, 3 * H), 1);
        let later = DailyQuotas::new(DailyLimits::default());
        later.restore(saved, 26 * H);
        assert_eq!(later.used(QuotaClass::Read, 26 * H), 0);
    }

    /// The journal's records, as the state file would hold them per minute.
    #[derive(Default)]
    struct Recorded {
        rows: Mutex<BTreeMap<(QuotaClass, i64), u64>>,
        writes: Mutex<u64>,
        fail: std::sync::atomic::AtomicBool,
    }

    impl QuotaJournal for Recorded {
        fn record(&self, buckets: &[(QuotaClass, i64, u64)]) -> Result<(), UnrecordedCount> {
            if self.fail.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(UnrecordedCount("disk full".into()));
            }
            *self.writes.lock().unwrap() += 1;
            let mut rows = self.rows.lock().unwrap();
            for (class, minute, n) in buckets {
                rows.insert((*class, *minute), *n);
            }
            Ok(())
        }
    }

    impl Recorded {
        fn total(&self, class: QuotaClass) -> u64 {
            let rows = self.rows.lock().unwrap();
            rows.iter()
                .filter(|((c, _), _)| *c == class)
                .map(|(_, n)| n)
                .sum()
        }
    }

    #[test]
    fn every_call_is_recorded_before_it_counts_and_a_block_at_a_time() {
        let journal = Arc::new(Recorded::default());
        let q = DailyQuotas::new(DailyLimits::default()).with_journal(journal.clone());
        assert_eq!(
            (q.block(QuotaClass::Read), q.block(QuotaClass::Write)),
            (10, 1)
        );
        // 25 reads in the first minute, 7 in the next, and 5 writes.
        for i in 0..25 {
            q.count(QuotaClass::Read, H + i * 1_000).unwrap();
            assert!(journal.total(QuotaClass::Read) > i as u64);
        }
        for i in 0..7 {
            q.count(QuotaClass::Read, H + 60_000 + i * 1_000).unwrap();
        }
        for i in 0..5 {
            q.count(QuotaClass::Write, H + i * 1_000).unwrap();
            assert_eq!(journal.total(QuotaClass::Write), i as u64 + 1);
        }
        // Reads: three blocks in the first minute, one in the next; writes: each.
        assert_eq!(*journal.writes.lock().unwrap(), 4 + 5);
        // The first minute holds its exact count since the second began; only the
        // newest minute holds an unused rest, less than a block.
        let rows = journal.rows.lock().unwrap().clone();
        assert_eq!(rows[&(QuotaClass::Read, H)], 25);
        assert_eq!(rows[&(QuotaClass::Read, H + 60_000)], 10);
        assert_eq!(q.used(QuotaClass::Read, H + 120_000), 32);
        // A periodic save records nothing below the reservation; at shutdown the
        // rest is given back.
        assert!(
            q.unsaved()
                .iter()
                .all(|(c, m, n)| *n >= rows.get(&(*c, *m)).copied().unwrap_or(0))
        );
        q.release();
        let exact = q.unsaved();
        assert!(
            exact.contains(&(QuotaClass::Read, H + 60_000, 7)),
            "{exact:?}"
        );
        assert!(exact.contains(&(QuotaClass::Write, H, 5)), "{exact:?}");
    }

    #[test]
    fn a_call_whose_count_cannot_be_recorded_is_not_counted() {
        let journal = Arc::new(Recorded::default());
        let q = DailyQuotas::new(DailyLimits::default()).with_journal(journal.clone());
        q.count(QuotaClass::Write, H).unwrap();
        journal
            .fail
            .store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(q.count(QuotaClass::Write, H + 1_000).is_err());
        assert_eq!(q.used(QuotaClass::Write, H + 2_000), 1);
        journal
            .fail
            .store(false, std::sync::atomic::Ordering::Relaxed);
        q.count(QuotaClass::Write, H + 3_000).unwrap();
        assert_eq!(journal.total(QuotaClass::Write), 2);
    }
}
