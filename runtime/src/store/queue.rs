//! The inbox's per-key lines, in memory: which unfinished events each ordering key
//! has, oldest first, and which keys are due. The database holds the events and
//! their state durably; this is its index for claiming, kept in step by the store
//! (and rebuilt from the database at start-up or when another process changed it).
//!
//! Why in memory: an index over every event by key puts each arrival at a random
//! place in a B-tree, so a group commit of a thousand events dirties a thousand
//! pages, and every dirty page goes through the WAL. Here an arrival is a push onto
//! a `VecDeque`, and the rows it writes are appended at the end of their tables.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use pcsync_engine::Event;

/// An unfinished event as the queue knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Item {
    pub seq: i64,
    pub received_at: i64,
    pub not_before: i64,
    pub attempts: u32,
    pub deferred: bool,
}

impl Item {
    /// An event as it arrives: due at once, never tried.
    pub fn arrived(seq: i64, at: i64) -> Item {
        Item {
            seq,
            received_at: at,
            not_before: at,
            attempts: 0,
            deferred: false,
        }
    }
}

/// One ordering key's unfinished events, oldest first.
#[derive(Debug, Default)]
struct Line {
    items: VecDeque<Item>,
    /// How many of them are claimed: a line with claimed events is not due.
    claimed: usize,
}

impl Line {
    fn running(&self) -> bool {
        self.claimed > 0
    }
}

/// What became of claimed events.
#[derive(Debug, Clone, Copy)]
pub(super) enum Outcome {
    /// Applied, or parked as dead letters: out of the line.
    Gone,
    /// Back in line as they were (claimed but not started).
    Released,
    /// Back in line, due again at this time.
    Retry { not_before: i64 },
    /// Held until this time (or until woken).
    Defer { recheck: i64 },
}

/// The lines of every key with unfinished events.
#[derive(Debug, Default)]
pub(super) struct Queue {
    lines: HashMap<Arc<str>, Line>,
    /// Keys that are not running and have a line: (head's due time, head's seq, key).
    due: BTreeSet<(i64, i64, Arc<str>)>,
    /// The same for scheduled work ([`BACKGROUND`] keys): claimed only while no
    /// other key is due.
    background: BTreeSet<(i64, i64, Arc<str>)>,
    /// Claimed events and their keys.
    running: HashMap<i64, Arc<str>>,
}

/// The ordering keys of scheduled work start so. A schedule's backlog (a weekly
/// pass over every linked deal) is claimed only while no webhook or EventBridge
/// event is due, so it never holds one up. Runs about the same deal under both kinds
/// of key still take turns (the worker's `InFlight`).
pub const BACKGROUND: &str = "schedule:";

/// Events of one key claimed together.
pub(super) type Claim = (Arc<str>, Vec<Item>);

impl Queue {
    /// A queue of `rows` (key and item, in inbox order), keeping the claims of
    /// `previous` running: their events are still in the rows, as the database does
    /// not record claims.
    pub fn rebuilt(rows: impl IntoIterator<Item = (String, Item)>, previous: Queue) -> Queue {
        let mut q = Queue {
            running: previous.running,
            ..Queue::default()
        };
        for (key, item) in rows {
            let key: Arc<str> = match q.lines.get_key_value(key.as_str()) {
                Some((k, _)) => Arc::clone(k),
                None => key.into(),
            };
            q.lines.entry(key).or_default().items.push_back(item);
        }
        // A line counts only its own claimed events: a claimed event the rows no
        // longer hold (another process removed it) is settled without touching a
        // line that was made again for its key.
        for line in q.lines.values_mut() {
            line.claimed = line
                .items
                .iter()
                .filter(|i| q.running.contains_key(&i.seq))
                .count();
        }
        let keys: Vec<Arc<str>> = q.lines.keys().cloned().collect();
        for key in keys {
            q.schedule(&key);
        }
        q
    }

    /// A new event, later than every other of its key.
    pub fn push(&mut self, key: &str, item: Item) {
        match self.lines.get_mut(key) {
            Some(line) => line.items.push_back(item),
            None => {
                let key: Arc<str> = key.into();
                let line = self.lines.entry(Arc::clone(&key)).or_default();
                line.items.push_back(item);
                self.schedule(&key);
            }
        }
    }

    /// Puts a key that is not running in the due set by its head (it must have no
    /// entry there: see `unschedule`), or forgets a key whose line is empty.
    fn schedule(&mut self, key: &Arc<str>) {
        let Some(line) = self.lines.get(key) else {
            return;
        };
        if line.running() {
            return;
        }
        match line.items.front() {
            Some(head) => {
                let entry = (head.not_before, head.seq, Arc::clone(key));
                if key.starts_with(BACKGROUND) {
                    self.background.insert(entry);
                } else {
                    self.due.insert(entry);
                }
            }
            None => {
                self.lines.remove(key);
            }
        }
    }

    fn unschedule(&mut self, key: &Arc<str>) {
        if let Some(head) = self.lines.get(key).and_then(|l| l.items.front()) {
            let entry = (head.not_before, head.seq, Arc::clone(key));
            if key.starts_with(BACKGROUND) {
                self.background.remove(&entry);
            } else {
                self.due.remove(&entry);
            }
        }
    }

    /// Claims up to `limit` keys whose head is due (`not_before <= now - coalesce`),
    /// in order of due time, each with every event of its line that had arrived by
    /// `now` (at most `per_key`), stopping once `rows` events are claimed.
    ///
    /// The coalescing window decides only *when* a key is worked (its oldest event
    /// has waited `coalesce`), not how much of its line: a run reads the deal and the
    /// opportunity fresh, so it covers every event already waiting, however long the
    /// line. Taking only the events within the window of the oldest one made a
    /// backlog (an import, a workflow over thousands of deals) cost a run, with its
    /// reads, for each half-second of events.
    pub fn claim(
        &mut self,
        now: i64,
        coalesce: i64,
        limit: usize,
        rows: usize,
        per_key: usize,
    ) -> Vec<Claim> {
        let mut claims = Vec::new();
        let mut taken = 0;
        let ready = |set: &BTreeSet<(i64, i64, Arc<str>)>| {
            set.first().is_some_and(|first| first.0 <= now - coalesce)
        };
        while claims.len() < limit && taken < rows {
            let set = if ready(&self.due) {
                &mut self.due
            } else if ready(&self.background) {
                &mut self.background
            } else {
                break;
            };
            let (_, _, key) = set.pop_first().expect("the first entry exists");
            let line = self.lines.get_mut(&key).expect("a due key has a line");
            let head = line.items[0];
            let items: Vec<Item> = line
                .items
                .iter()
                .take(per_key.max(1))
                .take_while(|i| i.seq == head.seq || i.received_at <= now)
                .copied()
                .collect();
            line.claimed = items.len();
            for item in &items {
                self.running.insert(item.seq, Arc::clone(&key));
            }
            taken += items.len();
            claims.push((key, items));
        }
        claims
    }

    /// Settles claimed events. False when one of them was not claimed here: the
    /// caller should rebuild the queue from the database.
    ///
    /// Linear in the events settled and the lines they are in: a batch may hold a
    /// key's whole backlog.
    pub fn settle(&mut self, seqs: &[i64], outcome: Outcome) -> bool {
        let mut known = true;
        let mut by_key: HashMap<Arc<str>, HashSet<i64>> = HashMap::new();
        for seq in seqs {
            match self.running.remove(seq) {
                Some(key) => {
                    by_key.entry(key).or_default().insert(*seq);
                }
                None => known = false,
            }
        }
        for (key, seqs) in by_key {
            let Some(line) = self.lines.get_mut(&key) else {
                continue;
            };
            let found = line.items.iter().filter(|i| seqs.contains(&i.seq)).count();
            line.claimed = line.claimed.saturating_sub(found);
            match outcome {
                Outcome::Gone => {
                    // Claims take a line's oldest events, so the gone ones are
                    // usually its front: popped, not searched for, however long
                    // the line behind them.
                    let mut removed = 0;
                    while line.items.front().is_some_and(|i| seqs.contains(&i.seq)) {
                        line.items.pop_front();
                        removed += 1;
                    }
                    if removed < seqs.len() {
                        line.items.retain(|i| !seqs.contains(&i.seq));
                    }
                }
                Outcome::Released => {}
                Outcome::Retry { not_before } => {
                    for i in line.items.iter_mut().filter(|i| seqs.contains(&i.seq)) {
                        i.not_before = not_before;
                        i.attempts += 1;
                        i.deferred = false;
                    }
                }
                Outcome::Defer { recheck } => {
                    for i in line.items.iter_mut().filter(|i| seqs.contains(&i.seq)) {
                        i.not_before = recheck;
                        i.deferred = true;
                    }
                }
            }
            if !line.running() {
                self.schedule(&key);
            }
        }
        known
    }

    /// Makes a key's deferred events due at `now`; returns their seqs.
    pub fn wake(&mut self, key: &str, now: i64) -> Vec<i64> {
        let Some((key, _)) = self.lines.get_key_value(key) else {
            return Vec::new();
        };
        let key = Arc::clone(key);
        self.unschedule(&key);
        let line = self.lines.get_mut(&key).expect("the key has a line");
        let mut woken = Vec::new();
        for item in line.items.iter_mut().filter(|i| i.deferred) {
            item.deferred = false;
            item.not_before = now;
            woken.push(item.seq);
        }
        self.schedule(&key);
        woken
    }

    /// Events claimed and not yet settled.
    #[cfg(test)]
    pub fn running(&self) -> u64 {
        self.running.len() as u64
    }

    /// Unfinished events by state: (pending, deferred, claimed). Claimed events
    /// are still in their lines and count as claimed only.
    pub fn tally(&self) -> (u64, u64, u64) {
        let (mut pending, mut deferred) = (0u64, 0u64);
        for line in self.lines.values() {
            for item in &line.items {
                if line.running() && self.running.contains_key(&item.seq) {
                    continue;
                }
                if item.deferred {
                    deferred += 1;
                } else {
                    pending += 1;
                }
            }
        }
        (pending, deferred, self.running.len() as u64)
    }

    /// Keys with deferred events, by their first: (key, events, earliest recheck,
    /// first deferred event), at most `limit`.
    pub fn deferred(&self, limit: usize) -> Vec<(Arc<str>, u64, i64, i64)> {
        let mut found: Vec<(Arc<str>, u64, i64, i64)> = self
            .lines
            .iter()
            .filter_map(|(key, line)| {
                let mut deferred = line.items.iter().filter(|i| i.deferred);
                let first = deferred.next()?;
                let (count, recheck) = deferred.fold((1, first.not_before), |(n, at), i| {
                    (n + 1, at.min(i.not_before))
                });
                Some((Arc::clone(key), count, recheck, first.seq))
            })
            .collect();
        found.sort_unstable_by_key(|d| d.3);
        found.truncate(limit);
        found
    }

    /// Unfinished events in every line, claimed or not.
    pub fn waiting(&self) -> u64 {
        self.lines.values().map(|l| l.items.len() as u64).sum()
    }
}

/// The key under which an event's work is ordered: its deal, else its opportunity.
pub fn ordering_key(event: &Event) -> String {
    let key = match (&event.deal_id, &event.opportunity_id, &event.company_id) {
        (Some(deal), _, _) => format!("deal:{deal}"),
        (None, Some(opportunity), _) => format!("opportunity:{opportunity}"),
        (None, None, Some(company)) => format!("company:{company}"),
        (None, None, None) => format!("event:{}", event.id),
    };
    // Scheduled work waits while live events are due ([`BACKGROUND`]).
    if event.source == pcsync_engine::Source::Schedule {
        format!("{BACKGROUND}{key}")
    } else {
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(claims: &[Claim]) -> Vec<(String, Vec<i64>)> {
        claims
            .iter()
            .map(|(k, items)| (k.to_string(), items.iter().map(|i| i.seq).collect()))
            .collect()
    }

    #[test]
    fn scheduled_work_waits_while_a_live_event_is_due() {
        let mut q = Queue::default();
        // A schedule's backlog, then a webhook about another deal.
        for seq in 1..=3 {
            q.push(&format!("{BACKGROUND}deal:{seq}"), Item::arrived(seq, 0));
        }
        q.push("deal:9", Item::arrived(4, 500));
        // Within the webhook's coalescing window, the backlog is worked.
        let first = q.claim(1_000, 1_000, 1, 100, 100);
        assert_eq!(shape(&first), [(format!("{BACKGROUND}deal:1"), vec![1])]);
        // Once it is due, the webhook goes ahead of the older scheduled runs.
        let next = q.claim(1_500, 1_000, 1, 100, 100);
        assert_eq!(shape(&next), [("deal:9".to_string(), vec![4])]);
        let rest = q.claim(1_500, 1_000, 10, 100, 100);
        assert_eq!(rest.len(), 2);
    }

    #[test]
    fn a_key_runs_one_batch_at_a_time_and_coalesces_its_window() {
        let mut q = Queue::default();
        q.push("a", Item::arrived(1, 0));
        q.push("b", Item::arrived(2, 100));
        q.push("a", Item::arrived(3, 900));
        q.push("a", Item::arrived(4, 2_000));
        assert!(
            q.claim(500, 1_000, 10, 100, 100).is_empty(),
            "inside the window"
        );
        let first = q.claim(1_000, 1_000, 10, 100, 100);
        assert_eq!(shape(&first), [("a".into(), vec![1, 3])]);
        assert!(
            q.claim(1_100, 1_000, 10, 100, 100)
                .iter()
                .all(|(k, _)| &**k != "a")
        );
        assert!(q.settle(&[1, 3], Outcome::Gone));
        let next = q.claim(5_000, 1_000, 10, 100, 100);
        assert_eq!(shape(&next), [("a".into(), vec![4])]);
        assert!(!q.settle(&[99], Outcome::Gone), "not claimed here");
    }

    #[test]
    fn a_claim_takes_every_event_its_key_has_waiting_not_only_its_window() {
        let mut q = Queue::default();
        // A backlog: an event of key a every 300 ms for a minute, one of b among them.
        for seq in 0..200 {
            q.push("a", Item::arrived(seq, seq * 300));
        }
        q.push("b", Item::arrived(1_000, 30_000));
        q.push("a", Item::arrived(1_001, 70_000));
        let c = q.claim(60_000, 500, 10, 10_000, 10_000);
        let a: Vec<i64> = (0..200).collect();
        assert_eq!(
            shape(&c),
            [("a".into(), a.clone()), ("b".into(), vec![1_000])],
            "one batch per key with all it had waiting, nothing that arrived later"
        );
        assert_eq!(q.tally(), (1, 0, 201));
        assert!(q.settle(&a, Outcome::Retry { not_before: 80_000 }));
        assert_eq!(q.tally(), (201, 0, 1));
        let c = q.claim(80_500, 500, 10, 10_000, 10_000);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].1.len(), 201, "the retry takes the later event along");
        assert!(c[0].1[..200].iter().all(|i| i.attempts == 1));
        // The bound per key still holds.
        assert!(q.settle(
            &c[0].1.iter().map(|i| i.seq).collect::<Vec<_>>(),
            Outcome::Released
        ));
        assert_eq!(q.claim(80_500, 500, 10, 10_000, 50)[0].1.len(), 50);
    }

    #[test]
    fn retries_and_deferrals_hold_their_key_until_due_or_woken() {
        let mut q = Queue::default();
        q.push("a", Item::arrived(1, 0));
        q.push("a", Item::arrived(2, 0));
        q.push("b", Item::arrived(3, 0));
        let c = q.claim(0, 0, 1, 100, 1);
        assert_eq!(shape(&c), [("a".into(), vec![1])]);
        q.settle(&[1], Outcome::Defer { recheck: 10_000 });
        let c = q.claim(10, 0, 10, 100, 100);
        assert_eq!(shape(&c), [("b".into(), vec![3])], "a's head is deferred");
        assert_eq!(q.wake("a", 20), [1]);
        let c = q.claim(20, 0, 10, 100, 100);
        assert_eq!(shape(&c), [("a".into(), vec![1, 2])]);
        q.settle(&[1, 2], Outcome::Retry { not_before: 500 });
        assert!(q.claim(499, 0, 10, 100, 100).is_empty());
        let c = q.claim(500, 0, 10, 100, 100);
        assert_eq!(c[0].1[0].attempts, 1);
        q.settle(&[1, 2], Outcome::Released);
        assert_eq!(q.claim(500, 0, 10, 100, 100)[0].1[0].attempts, 1);
    }

    #[test]
    fn a_rebuilt_queue_keeps_running_claims_out_of_new_claims() {
        let mut q = Queue::default();
        q.push("a", Item::arrived(1, 0));
        q.push("b", Item::arrived(2, 0));
        let c = q.claim(0, 0, 1, 100, 100);
        assert_eq!(shape(&c), [("a".into(), vec![1])]);
        let rows = [
            ("a".to_string(), Item::arrived(1, 0)),
            ("b".to_string(), Item::arrived(2, 0)),
            ("a".to_string(), Item::arrived(5, 0)),
        ];
        let mut q = Queue::rebuilt(rows, q);
        assert_eq!(shape(&q.claim(0, 0, 10, 100, 100)), [("b".into(), vec![2])]);
        assert!(q.settle(&[1], Outcome::Gone));
        assert_eq!(shape(&q.claim(0, 0, 10, 100, 100)), [("a".into(), vec![5])]);
        assert_eq!(q.running(), 2);
    }

    #[test]
    fn an_applied_batch_leaves_its_line_even_when_an_older_event_came_back_before_it() {
        let mut q = Queue::default();
        q.push("a", Item::arrived(5, 0));
        q.push("a", Item::arrived(6, 0));
        assert_eq!(shape(&q.claim(0, 0, 10, 100, 1)), [("a".into(), vec![5])]);
        // A dead letter older than the running batch is put back meanwhile.
        let rows = [
            ("a".to_string(), Item::arrived(2, 0)),
            ("a".to_string(), Item::arrived(5, 0)),
            ("a".to_string(), Item::arrived(6, 0)),
        ];
        let mut q = Queue::rebuilt(rows, q);
        assert!(q.settle(&[5], Outcome::Gone));
        assert_eq!(
            shape(&q.claim(0, 0, 10, 100, 100)),
            [("a".into(), vec![2, 6])]
        );
    }

    #[test]
    fn a_claim_whose_events_left_the_rows_does_not_free_its_keys_new_line() {
        let mut q = Queue::default();
        q.push("a", Item::arrived(1, 0));
        assert_eq!(shape(&q.claim(0, 0, 10, 100, 100)), [("a".into(), vec![1])]);
        // Another process removed event 1; a new event of the key arrives.
        let mut q = Queue::rebuilt([], q);
        q.push("a", Item::arrived(2, 0));
        let c = q.claim(0, 0, 10, 100, 100);
        assert_eq!(shape(&c), [("a".into(), vec![2])]);
        // The old claim ends: event 2's claim still holds the key.
        assert!(q.settle(&[1], Outcome::Gone));
        q.push("a", Item::arrived(3, 0));
        assert!(q.claim(0, 0, 10, 100, 100).is_empty(), "a is still running");
        assert!(q.settle(&[2], Outcome::Gone));
        assert_eq!(shape(&q.claim(0, 0, 10, 100, 100)), [("a".into(), vec![3])]);
    }

    #[test]
    fn claims_stop_at_the_row_bound() {
        let mut q = Queue::default();
        for k in 0..10 {
            q.push(&format!("k{k}"), Item::arrived(k, 0));
        }
        assert_eq!(q.claim(0, 0, 100, 3, 100).len(), 3);
    }
}
