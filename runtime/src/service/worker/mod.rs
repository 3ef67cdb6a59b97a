//! The worker: claims batches of events from the inbox, loads what the triggered packs
//! need, plans, performs the effects, and settles each batch as applied, retried,
//! deferred or dead-lettered. Nothing leaves the inbox any other way.

use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use pcsync_engine::plan::{fetches, triggered};
use pcsync_engine::{Context, Ending, Event, RuleSet};

mod resolve;
mod run;
mod steps;

use super::creation::{self, Creation};
use super::execute::{ApiExecutor, ExecError, Executor};
use super::in_flight::InFlight;
use super::reload::RuleHost;
use crate::clock::Clock;
use crate::store::{Batch, Claimed, Store};

/// How long a cached snapshot revision stays when no run reads it.
pub const SNAPSHOTS_UNUSED: Duration = Duration::from_secs(30 * 24 * 3600);

/// What the worker needs. `E` performs the I/O; the clock says what time it is.
pub struct Worker<E: Executor = ApiExecutor> {
    /// The inbox and state.
    pub store: Arc<dyn Store>,
    /// The rules in force.
    pub rules: Arc<RuleHost>,
    /// The reads and writes.
    pub executor: E,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// The HubSpot app's id: its own writes come back as `INTEGRATION` events with
    /// this `sourceId`.
    pub app_id: Option<u64>,
    /// How long to wait for more events about the same deal before planning.
    pub coalesce: Duration,
    /// Tries before an event that keeps failing is parked.
    pub max_attempts: u32,
    /// How long a deferred event waits before the opportunity is checked again.
    pub defer_recheck: Duration,
    /// How long applied events are kept (to recognise redeliveries).
    pub keep_done: Duration,
    /// Counters for `/metrics`.
    pub metrics: Arc<super::metrics::Metrics>,
    /// Ingest requests committing now: a pass waits up to 50 ms for them.
    pub busy: Arc<super::Busy>,
    /// Batches worked at the same time (at least 1).
    pub concurrency: usize,
    /// The deals and opportunities batches in flight are working on.
    pub in_flight: InFlight,
    /// Where each pack run is recorded for `pcsync replay`.
    pub recorder: Arc<super::record::Recorder>,
}

/// How a batch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Applied.
    Done,
    /// Nothing to do (no pack wanted the events, or they were echoes): no remote
    /// call was made, so these settle together at the end of the pass; a crash
    /// before that only means looking at them again.
    Untouched,
    /// Will be tried again.
    Retry(String, Option<Duration>),
    /// Held until the opportunity is editable.
    Deferred(String),
    /// A daily API quota is spent: held this long, without counting an attempt.
    Wait(String, Duration),
    /// A step AWS runs on its own (a submission task) is not over: the batch is
    /// looked at again after this long, without counting an attempt.
    Following(String, Duration),
    /// Parked in the dead-letter list.
    Dead(String),
    /// The opportunity changed while the pack wrote (`ConflictException`): plan again
    /// from a fresh read. Never leaves [`Worker::process`].
    Replan(String),
}

/// What a batch works on once its context is read: its key, its deal and its
/// opportunity.
fn subjects(batch: &Batch, ctx: &Context) -> Vec<String> {
    let mut subjects = vec![batch.key.clone()];
    if let Some(deal) = &ctx.deal {
        subjects.push(format!("deal:{}", deal.id));
    }
    if let Some(id) = ctx.opportunity.as_ref().and_then(|o| o["Id"].as_str()) {
        subjects.push(format!("opportunity:{id}"));
    }
    subjects
}

/// Plans of one pack from fresh reads before a conflict is settled as a retry.
const CONFLICT_ATTEMPTS: usize = 3;

impl<E: Executor> Worker<E> {
    /// Claims due batches and processes them until `stop` turns true; the batch in
    /// hand is finished first, and claimed batches not yet started go back in line.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut last_prune = i64::MIN;
        while !*stop.borrow() {
            if self.clock.now_ms().saturating_sub(last_prune) >= 60_000 {
                last_prune = self.clock.now_ms();
                self.prune();
            }
            let yielded = std::time::Instant::now();
            while self.busy.any() && yielded.elapsed() < Duration::from_millis(50) {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let pause = match self.tick(&stop).await {
                Ok(0) => Duration::from_millis(200),
                Ok(_) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "worker: the store failed");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Deletes applied events older than `keep_done`, a slice at a time so that
    /// ingest never waits long for the database, and snapshot revisions no run has
    /// read for [`SNAPSHOTS_UNUSED`] (their opportunity is no longer read).
    pub fn prune(&self) {
        let before = self.clock.now_ms() - self.keep_done.as_millis() as i64;
        let mut pruned = 0;
        loop {
            match super::blocking(|| self.store.prune_done(before, 5_000)) {
                Ok(0) => break,
                Ok(n) => pruned += n,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot prune applied events");
                    break;
                }
            }
        }
        if pruned > 0 {
            tracing::info!(pruned, "applied events past worker.keep_done deleted");
        }
        let unused = self.clock.now_ms() - SNAPSHOTS_UNUSED.as_millis() as i64;
        match super::blocking(|| self.store.prune_snapshots(unused)) {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                pruned = n,
                "snapshot revisions unread for 30 days forgotten"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot prune the snapshot cache"),
        }
    }

    /// Claims and processes the batches that are due; returns how many there were.
    ///
    /// A store error ends the pass, and every claimed event not yet settled goes back
    /// in line (releasing touches only memory, so it works on a full or read-only
    /// disk): none stays claimed to hold its deal's later events behind it.
    pub async fn tick(
        &self,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) -> Result<usize, crate::store::StoreError> {
        let now = self.clock.now_ms();
        let batches =
            super::blocking(|| self.store.claim(now, self.coalesce.as_millis() as i64, 16))?;
        let n = batches.len();
        let mut unsettled: Vec<i64> = batches
            .iter()
            .flat_map(|b| b.items.iter().map(|c| c.seq))
            .collect();
        let worked = self.work(batches, stop, &mut unsettled).await;
        if let Err(e) = &worked
            && !unsettled.is_empty()
        {
            let now = self.clock.now_ms();
            match super::blocking(|| self.store.release(&unsettled, now)) {
                Ok(()) => tracing::warn!(error = %e, released = unsettled.len(),
                    "the store failed mid-pass; unsettled events go back in line"),
                Err(again) => tracing::error!(error = %again,
                    "cannot release events claimed before a store error"),
            }
        }
        worked.map(|()| n)
    }

    /// Processes claimed batches and settles them, taking each settled event out of
    /// `unsettled`.
    async fn work(
        &self,
        batches: Vec<Batch>,
        stop: &tokio::sync::watch::Receiver<bool>,
        unsettled: &mut Vec<i64>,
    ) -> Result<(), crate::store::StoreError> {
        use futures_util::stream::{FuturesUnordered, StreamExt};
        // A batch may hold a key's whole backlog: linear, not events × events.
        let settled = |unsettled: &mut Vec<i64>, seqs: &[i64]| {
            let seqs: std::collections::HashSet<i64> = seqs.iter().copied().collect();
            unsettled.retain(|s| !seqs.contains(s));
        };
        let mut untouched = Vec::new();
        let mut left = batches.into_iter();
        // Up to `concurrency` batches at once, each settled as it ends; none is
        // started once the service is stopping.
        let mut running = FuturesUnordered::new();
        loop {
            while running.len() < self.concurrency.max(1) && !*stop.borrow() {
                let Some(batch) = left.next() else { break };
                running.push(async move {
                    let outcome = self.process(&batch).await;
                    (batch, outcome)
                });
            }
            let Some((batch, outcome)) = running.next().await else {
                break;
            };
            match outcome {
                Settled::Untouched => {
                    self.metrics.batch("done");
                    untouched.extend(batch.items.iter().map(|c| c.seq));
                }
                outcome => {
                    super::blocking(|| self.record(&batch, &outcome))?;
                    let seqs: Vec<i64> = batch.items.iter().map(|c| c.seq).collect();
                    settled(unsettled, &seqs);
                }
            }
        }
        let now = self.clock.now_ms();
        if !untouched.is_empty() {
            super::blocking(|| self.store.complete(&untouched, now))?;
            settled(unsettled, &untouched);
        }
        let unstarted: Vec<i64> = left.flat_map(|b| b.items).map(|c| c.seq).collect();
        if !unstarted.is_empty() {
            super::blocking(|| self.store.release(&unstarted, now))?;
            settled(unsettled, &unstarted);
        }
        Ok(())
    }

    fn record(&self, batch: &Batch, settled: &Settled) -> Result<(), crate::store::StoreError> {
        let now = self.clock.now_ms();
        let seqs: Vec<i64> = batch.items.iter().map(|c| c.seq).collect();
        let attempts = batch.items.iter().map(|c| c.attempts).max().unwrap_or(0) + 1;
        self.metrics.batch(match settled {
            Settled::Done | Settled::Untouched => "done",
            Settled::Retry(_, _) if attempts >= self.max_attempts => "dead",
            Settled::Retry(_, _) | Settled::Replan(_) => "retry",
            Settled::Deferred(_) => "deferred",
            Settled::Wait(_, _) => "waiting",
            Settled::Following(_, _) => "deferred",
            Settled::Dead(_) => "dead",
        });
        match settled {
            Settled::Done | Settled::Untouched => self.store.complete(&seqs, now),
            Settled::Retry(reason, asked) if attempts >= self.max_attempts => {
                // A batch holds its key's whole backlog: only the events that have
                // had their tries are parked; the edits that joined them during the
                // backoff keep theirs.
                let (spent, rest): (Vec<&Claimed>, Vec<&Claimed>) = batch
                    .items
                    .iter()
                    .partition(|c| c.attempts + 1 >= self.max_attempts);
                let spent: Vec<i64> = spent.iter().map(|c| c.seq).collect();
                self.store.dead_letter(
                    &spent,
                    &format!("gave up after {attempts} attempts: {reason}"),
                    now,
                )?;
                if rest.is_empty() {
                    return Ok(());
                }
                let attempts = rest.iter().map(|c| c.attempts).max().unwrap_or(0) + 1;
                let rest: Vec<i64> = rest.iter().map(|c| c.seq).collect();
                let backoff = self.backoff(attempts, rest[0], *asked);
                tracing::warn!(key = %batch.key, attempts, retry_in_ms = backoff, reason = %reason, "will retry the later events");
                self.store.retry(&rest, now + backoff, reason, now)
            }
            Settled::Replan(reason) => self.store.retry(&seqs, now, reason, now),
            Settled::Retry(reason, asked) => {
                let backoff = self.backoff(attempts, batch.items[0].seq, *asked);
                tracing::warn!(key = %batch.key, attempts, retry_in_ms = backoff, reason = %reason, "will retry");
                self.store.retry(&seqs, now + backoff, reason, now)
            }
            Settled::Deferred(reason) => self.store.defer(
                &seqs,
                now + self.defer_recheck.as_millis() as i64,
                reason,
                now,
            ),
            Settled::Wait(reason, wait) => {
                tracing::warn!(key = %batch.key, wait_s = wait.as_secs(), reason = %reason, "waiting for a daily quota");
                self.store
                    .defer(&seqs, now + wait.as_millis() as i64, reason, now)
            }
            Settled::Following(reason, wait) => {
                tracing::debug!(key = %batch.key, wait_ms = wait.as_millis() as u64, reason = %reason, "following a task");
                self.store
                    .defer(&seqs, now + wait.as_millis() as i64, reason, now)
            }
            Settled::Dead(reason) => {
                tracing::error!(key = %batch.key, reason = %reason, "dead-lettered");
                self.store.dead_letter(&seqs, reason, now)
            }
        }
    }

    /// How long a batch waits before its `attempts`th try (in ms): about 2 s, 4 s,
    /// 8 s … capped at ten minutes, each shortened by up to a quarter at random
    /// (seeded by `seq`) so that retries after an outage spread out; when the API
    /// said how long to wait (Retry-After, x-amz-retry-after), at least that long (at
    /// most an hour).
    fn backoff(&self, attempts: u32, seq: i64, asked: Option<Duration>) -> i64 {
        let ceiling = (1_000i64 << attempts.min(10)).min(600_000);
        let backoff = ceiling - super::random_below(ceiling / 4, seq);
        match asked {
            Some(wait) => backoff.max((wait.as_millis() as i64).min(3_600_000)),
            None => backoff,
        }
    }

    /// Plans and applies one batch.
    pub async fn process(&self, batch: &Batch) -> Settled {
        let rules = self.rules.current();
        // Per triggered pack, the latest event of the batch that starts it: the
        // context is read fresh, so one run covers the events before it. An event
        // no pack wants needs no echo check (a store read each).
        let mut work: IndexMap<usize, &Event> = IndexMap::new();
        // Per pack, the property changes of the earlier events its run covers.
        let mut covered: IndexMap<usize, Vec<pcsync_engine::event::PropertyChange>> =
            IndexMap::new();
        let mut latest = None;
        for item in &batch.items {
            let starts: Vec<usize> = (0..rules.packs.len())
                .filter(|&i| {
                    let pack = &rules.packs[i].pack;
                    pack.enabled && triggered(pack, &item.event)
                })
                .collect();
            if starts.is_empty() {
                continue;
            }
            match self.is_echo(&item.event) {
                Ok(true) => self.metrics.echo(),
                Ok(false) => {
                    latest = Some(&item.event);
                    for i in starts {
                        // A run that reads only part of Partner Central (a
                        // `schedule.reads` poll) does not cover an earlier event's
                        // full read; the full read covers the poll.
                        let narrower = item.event.scheduled_reads().is_some()
                            && work.get(&i).is_some_and(|e| e.scheduled_reads().is_none());
                        if !narrower && let Some(earlier) = work.insert(i, &item.event) {
                            covered
                                .entry(i)
                                .or_default()
                                .extend(earlier.changed_properties().cloned());
                        }
                    }
                }
                Err(e) => return Settled::Retry(e.to_string(), None),
            }
        }
        let Some(latest) = latest else {
            return Settled::Untouched;
        };
        // A company's events run the packs they start for each of the company's deals.
        let deals = match (&latest.company_id, &latest.deal_id) {
            (Some(company), None) => match self.executor.company_deals(company).await {
                Ok(deals) => deals.into_iter().map(Some).collect(),
                Err(e) => return after_error(&e, e.message.clone()),
            },
            _ => vec![None],
        };
        let mut outcome = Settled::Done;
        for deal in deals {
            let about = |e: &Event| {
                let mut e = e.clone();
                if deal.is_some() {
                    e.deal_id = deal.clone();
                }
                e
            };
            let work: Vec<(usize, Event)> = work
                .iter()
                .map(|(i, e)| {
                    let mut e = about(e);
                    if let Some(c) = covered.get(i) {
                        e.also_changed.extend(c.iter().cloned());
                    }
                    (*i, e)
                })
                .collect();
            let ended = self.run_subject(batch, &rules, &about(latest), &work).await;
            outcome = worse(outcome, ended);
        }
        outcome
    }

    /// Loads the context for one deal (or opportunity) and runs the packs on it, one
    /// load per link property the packs use (the engine's [`fetches`]). A pack whose
    /// write met a conflict is planned again from a fresh read.
    async fn run_subject(
        &self,
        batch: &Batch,
        rules: &RuleSet,
        latest: &Event,
        work: &[(usize, Event)],
    ) -> Settled {
        let mut outcome = Settled::Done;
        for fetch in fetches(work.iter().map(|(i, _)| (*i, &rules.packs[*i]))) {
            let packs = fetch.packs.clone();
            let fetch = fetch.for_events(
                work.iter()
                    .filter(|(i, _)| packs.contains(i))
                    .map(|(_, e)| e),
            );
            let since = self.in_flight.now();
            let mut ctx = match self.resolve(latest, &fetch).await {
                Ok(ctx) => ctx,
                Err(e) => return after_error(&e, e.message.clone()),
            };
            // Held until this subject's packs have run.
            let _held = match self.in_flight.take(subjects(batch, &ctx), since).await {
                Ok(held) => held,
                Err(held) => {
                    ctx = match self.resolve(latest, &fetch).await {
                        Ok(ctx) => ctx,
                        Err(e) => return after_error(&e, e.message.clone()),
                    };
                    held
                }
            };
            // An event about the opportunity may mean it is editable again: the deal's
            // deferred edits are due now rather than at their next re-check.
            if let Some(deal) = &ctx.deal {
                let key = format!("deal:{}", deal.id);
                if key != batch.key
                    && let Err(e) = super::blocking(|| self.store.wake(&key, self.clock.now_ms()))
                {
                    return Settled::Retry(e.to_string(), None);
                }
            }
            // A pack that wrote (a create and its link on the deal, an update) leaves
            // the context behind it stale: the next pack of the group plans on a
            // fresh read, as it would in a batch of its own. A batch takes every
            // event its key has waiting, so a new deal's create and the rep's edit
            // after it often run together.
            let mut stale = false;
            // The packs whose run ended done: only their creations' steps go on (a
            // link that is still to be written goes first).
            let mut done = Vec::new();
            for (i, event) in work.iter().filter(|(i, _)| fetch.packs.contains(i)) {
                let pack = &rules.packs[*i];
                if stale {
                    ctx = match self.resolve(latest, &fetch).await {
                        Ok(ctx) => ctx,
                        Err(e) => return after_error(&e, e.message.clone()),
                    };
                    stale = false;
                }
                let mut ended = self.run_pack(pack, rules, event, &ctx, &mut stale).await;
                for _ in 1..CONFLICT_ATTEMPTS {
                    let Settled::Replan(reason) = &ended else {
                        break;
                    };
                    tracing::info!(pack = %pack.pack.name, reason = %reason, "the opportunity changed meanwhile: planning again");
                    ctx = match self.resolve(latest, &fetch).await {
                        Ok(ctx) => ctx,
                        Err(e) => return after_error(&e, e.message.clone()),
                    };
                    ended = self.run_pack(pack, rules, event, &ctx, &mut stale).await;
                }
                if let Settled::Replan(reason) = ended {
                    ended = Settled::Retry(
                        format!(
                            "{reason} (the opportunity kept changing: {CONFLICT_ATTEMPTS} plans)"
                        ),
                        None,
                    );
                }
                if ended == Settled::Done {
                    done.push(*i);
                }
                outcome = worse(outcome, ended);
            }
            // A creation's steps go on after every pack of the group ran: an edit that
            // moved the opportunity's stage (the update sync) may be what a waiting
            // submission needs.
            for (i, event) in work.iter().filter(|(i, _)| done.contains(i)) {
                let pack = &rules.packs[*i];
                let Some(deal) = &event.deal_id else { continue };
                let key = creation::key(deal, &pack.pack.name);
                let saved = match super::blocking(|| self.store.pending_settle(&key)) {
                    Ok(Some(saved)) => saved,
                    Ok(None) => continue,
                    Err(e) => return worse(outcome, Settled::Retry(e.to_string(), None)),
                };
                let Some(steps) = Creation::decode(&saved) else {
                    tracing::warn!(key = %key, "a creation's steps in a format this pcsync does not read are left alone");
                    continue;
                };
                if stale {
                    ctx = match self.resolve(latest, &fetch).await {
                        Ok(ctx) => ctx,
                        Err(e) => return worse(outcome, after_error(&e, e.message.clone())),
                    };
                }
                let ended = self
                    .follow_creation(pack, rules, event, &ctx, &key, steps)
                    .await;
                stale = true;
                outcome = worse(outcome, ended);
            }
        }
        outcome
    }

    /// Whether the event is pcsync's own write coming back.
    fn is_echo(&self, event: &Event) -> Result<bool, crate::store::StoreError> {
        if let (Some(app), Some(source)) = (self.app_id, &event.source_id)
            && event.change_source.as_deref() == Some("INTEGRATION")
            && source == &app.to_string()
        {
            return Ok(true);
        }
        let (Some(deal), Some(change)) = (&event.deal_id, &event.property) else {
            return Ok(false);
        };
        let written =
            super::blocking(|| self.store.last_write(&format!("deal:{deal}"), &change.name))?;
        Ok(written.is_some() && written == change.value)
    }
}

/// What becomes of a batch when a pack's run ended as the engine concluded.
fn ending(pack: &str, ending: Ending) -> Settled {
    match ending {
        Ending::Done => Settled::Done,
        Ending::Deferred(reason) => Settled::Deferred(format!("{pack}: {reason}")),
        Ending::Failed(reason) => Settled::Dead(format!("{pack}: {reason}")),
    }
}

/// What becomes of a batch whose call failed with `e`, `message` saying so: a
/// spent daily quota waits (no attempt counted, so nothing dead-letters over a
/// quota), a retryable failure retries, any other is dead.
fn after_error(e: &ExecError, message: String) -> Settled {
    if e.waits_for_quota {
        let wait = e
            .retry_after
            .unwrap_or(pcsync_adapters::quota::UNKNOWN_PAUSE);
        Settled::Wait(message, wait)
    } else if e.retryable {
        Settled::Retry(message, e.retry_after)
    } else {
        Settled::Dead(message)
    }
}

/// The more serious of two endings: dead beats retry beats deferred beats done.
fn worse(a: Settled, b: Settled) -> Settled {
    fn rank(s: &Settled) -> u8 {
        match s {
            Settled::Untouched | Settled::Done => 0,
            Settled::Deferred(_) | Settled::Wait(_, _) | Settled::Following(_, _) => 1,
            Settled::Retry(_, _) | Settled::Replan(_) => 2,
            Settled::Dead(_) => 3,
        }
    }
    if rank(&b) > rank(&a) { b } else { a }
}

#[cfg(test)]
mod tests;
