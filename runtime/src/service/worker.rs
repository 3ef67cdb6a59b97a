//! The worker: claims batches of events from the inbox, loads what the triggered packs
//! need, plans, performs the effects, and settles each batch as applied, retried,
//! deferred or dead-lettered. Nothing leaves the inbox any other way.

use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use pcsync_engine::plan::{Fetch, fetches, plan_pack, settle, triggered};
use pcsync_engine::{CompiledPack, Context, Effect, Ending, Event, Outcome, RuleSet, conclude};
use serde_json::Value;

use super::creation::{self, Creation, Ended};
use super::execute::{ApiExecutor, ExecError, Executor};
use super::in_flight::InFlight;
use super::reload::RuleHost;
use crate::clock::Clock;
use crate::store::{Batch, Claimed, EffectJournal, Store};
use pcsync_engine::readiness::SubmissionGate;

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

    /// Plans and performs one pack; `wrote` becomes true when it sent a write (or
    /// finished an earlier try's follow-ups), so that the context is stale.
    async fn run_pack(
        &self,
        pack: &CompiledPack,
        rules: &RuleSet,
        event: &Event,
        ctx: &Context,
        wrote: &mut bool,
    ) -> Settled {
        let key = settle_key(event, pack);
        match super::blocking(|| self.store.pending_settle(&key)) {
            Ok(Some(saved)) => {
                *wrote = true;
                if let Some(settled) = self.finish_settle(pack, rules, event, ctx, &saved).await {
                    return settled;
                }
            }
            Ok(None) => {}
            Err(e) => return Settled::Retry(e.to_string(), None),
        }
        // A creation whose steps are not over is not planned again (its opportunity
        // exists): the steps go on once the batch's packs ran (`run_subject`).
        if let Some(deal) = &event.deal_id {
            let key = creation::key(deal, &pack.pack.name);
            match super::blocking(|| self.store.pending_settle(&key)) {
                Ok(Some(_)) => return Settled::Done,
                Ok(None) => {}
                Err(e) => return Settled::Retry(e.to_string(), None),
            }
        }
        let now = self.clock.now();
        let plan = plan_pack(pack, rules, event, ctx, now);
        self.metrics.planned(&plan.pack);
        self.recorder.record(event, ctx, &plan, now);
        tracing::debug!(
            event = %event.id,
            pack = %plan.pack,
            verdict = ?plan.verdict,
            writes = %serde_json::to_string(&plan.writes).unwrap_or_default(),
            "planned"
        );
        let mut result = Value::Null;
        let mut failure = None;
        *wrote |= !plan.writes.is_empty();
        for (index, write) in plan.writes.iter().enumerate() {
            let performed = match self
                .perform_once(event, &plan.pack, index, write, now)
                .await
            {
                Ok(Some(performed)) => performed,
                Ok(None) => continue,
                Err(e) => return Settled::Retry(e.to_string(), None),
            };
            match performed {
                Ok(answer) => {
                    // The creation's steps are written down before its id goes on
                    // the deal: whatever stops this run, they are taken later.
                    if let Effect::CreateOpportunity { deal_id, .. } = write
                        && let Some(steps) = Creation::after(&plan.writes, write, &answer)
                    {
                        let key = creation::key(deal_id, &plan.pack);
                        let now_ms = now.as_millisecond();
                        if let Err(e) = super::blocking(|| {
                            self.store.save_settle(&key, &steps.encode(), now_ms)
                        }) {
                            return Settled::Retry(e.to_string(), None);
                        }
                    }
                    if !answer.is_null() {
                        result = answer;
                    }
                }
                Err(e) if e.replan => {
                    return Settled::Replan(format!("{}: {}", plan.pack, e.message));
                }
                Err(e) if e.retryable => {
                    return after_error(&e, format!("{}: {}", plan.pack, e.message));
                }
                Err(e) => {
                    failure = Some(e.message);
                    break;
                }
            }
        }
        let writes = match failure {
            Some(message) => Outcome::Failure { message },
            None => Outcome::Success { result },
        };
        // What follows is the engine's to say, as it says it for `pcsync test`.
        let conclusion = conclude(&plan, &writes);
        if let Some(record) = conclusion.record {
            let now_ms = now.as_millisecond();
            if let Err(e) = super::blocking(|| self.store.record_state(&plan.pack, record, now_ms))
            {
                return Settled::Retry(e.to_string(), None);
            }
        }
        if let Some(follow_up) = &conclusion.follow_up {
            let key = settle_key(event, pack);
            let saved = encode_settle(&plan.writes, follow_up);
            let now_ms = now.as_millisecond();
            if let Err(e) = super::blocking(|| self.store.save_settle(&key, &saved, now_ms)) {
                return Settled::Retry(e.to_string(), None);
            }
            if let Err(settled) = self
                .follow_up(pack, rules, event, ctx, &plan.writes, follow_up, now)
                .await
            {
                return settled;
            }
            if let Err(e) = super::blocking(|| self.store.clear_settle(&key)) {
                return Settled::Retry(e.to_string(), None);
            }
        }
        ending(&plan.pack, conclusion.ending)
    }

    /// A pack run whose writes were done by an earlier try of this batch, but not all
    /// its follow-ups: finishes them rather than planning again (a fresh plan would
    /// find nothing left to change, and settle nothing).
    async fn finish_settle(
        &self,
        pack: &CompiledPack,
        rules: &RuleSet,
        event: &Event,
        ctx: &Context,
        saved: &str,
    ) -> Option<Settled> {
        let (planned, outcome) = decode_settle(saved)?;
        let now = self.clock.now();
        if let Err(settled) = self
            .follow_up(pack, rules, event, ctx, &planned, &outcome, now)
            .await
        {
            return Some(settled);
        }
        let key = settle_key(event, pack);
        if let Err(e) = super::blocking(|| self.store.clear_settle(&key)) {
            return Some(Settled::Retry(e.to_string(), None));
        }
        Some(match outcome {
            Outcome::Failure { message } => ending(&pack.pack.name, Ending::Failed(message)),
            Outcome::Success { .. } => Settled::Done,
        })
    }

    /// Takes a creation's steps from where they stopped (see [`creation`]): each
    /// solution, then the submission once the stage allows it, then its task until
    /// AWS ends it; then the pack settles with how they ended.
    async fn follow_creation(
        &self,
        pack: &CompiledPack,
        rules: &RuleSet,
        event: &Event,
        ctx: &Context,
        key: &str,
        mut steps: Creation,
    ) -> Settled {
        let now = self.clock.now();
        let name = pack.pack.name.as_str();
        let id = steps.opportunity_id().to_string();
        let save = |steps: &Creation| {
            super::blocking(|| {
                self.store
                    .save_settle(key, &steps.encode(), now.as_millisecond())
            })
            .map_err(|e| Settled::Retry(e.to_string(), None))
        };
        let mut started = false;
        while steps.ended.is_none() {
            if let Some(solution) = steps.associate.first().cloned() {
                let step = Effect::AssociateOpportunity {
                    pack: name.to_string(),
                    opportunity_id: id.clone(),
                    solution: solution.clone(),
                };
                match self.step(event, name, &step, now).await {
                    Err(settled) => return settled,
                    Ok(Ok(_)) => {
                        steps.associate.remove(0);
                    }
                    Ok(Err(message)) => {
                        steps.ended = Some(Ended::Failure(format!(
                            "AssociateOpportunity {solution}: {message}"
                        )))
                    }
                }
                if let Err(settled) = save(&steps) {
                    return settled;
                }
                continue;
            }
            let Some(submission) = steps.submission.as_mut() else {
                steps.ended = Some(Ended::Success(steps.created.clone()));
                break;
            };
            let Some(task) = &submission.task else {
                let stage = match self.executor.opportunity(&id).await {
                    Ok(Some(o)) => o
                        .pointer("/LifeCycle/Stage")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    Ok(None) => {
                        steps.ended = Some(Ended::Failure(format!(
                            "opportunity {id} is no longer in Partner Central"
                        )));
                        continue;
                    }
                    Err(e) => return after_error(&e, format!("{name}: {}", e.message)),
                };
                match pcsync_engine::readiness::submission(&stage) {
                    SubmissionGate::Open => {
                        let step = Effect::StartEngagement {
                            pack: name.to_string(),
                            opportunity_id: id.clone(),
                            client_token: submission.client_token.clone(),
                            submission: submission.submission.clone(),
                        };
                        match self.step(event, name, &step, now).await {
                            Err(settled) => return settled,
                            Ok(Ok(task)) => {
                                submission.task = Some(task);
                                started = true;
                            }
                            Ok(Err(message)) => {
                                steps.ended = Some(Ended::Failure(format!(
                                    "StartEngagementFromOpportunityTask: {message}"
                                )))
                            }
                        }
                    }
                    SubmissionGate::Refused { reason } => {
                        steps.ended = Some(Ended::Failure(reason));
                    }
                    SubmissionGate::Waits { reason } => {
                        // Said once on the deal; the steps wait for an edit of the
                        // deal that starts the pack again.
                        if !steps.told_waiting {
                            let mut result = steps.created.clone();
                            result["Submission"] =
                                serde_json::json!({ "TaskStatus": "WAITING", "Message": reason });
                            let waiting = Outcome::Success { result };
                            if let Err(settled) = self
                                .follow_up(pack, rules, event, ctx, &steps.planned, &waiting, now)
                                .await
                            {
                                return settled;
                            }
                            steps.told_waiting = true;
                            if let Err(settled) = save(&steps) {
                                return settled;
                            }
                        }
                        tracing::info!(pack = name, opportunity = %id, reason = %reason, "the submission waits");
                        return Settled::Done;
                    }
                }
                if let Err(settled) = save(&steps) {
                    return settled;
                }
                continue;
            };
            let running = task["TaskStatus"] == "IN_PROGRESS";
            let task_id = task["TaskId"].as_str().map(str::to_string);
            match task_id {
                Some(task_id) if running => {
                    if !started {
                        match self.executor.engagement_task(&task_id).await {
                            Ok(Some(listed)) => submission.task = Some(listed),
                            Ok(None) => {}
                            Err(e) => return after_error(&e, format!("{name}: {}", e.message)),
                        }
                    }
                    if submission
                        .task
                        .as_ref()
                        .is_some_and(|t| t["TaskStatus"] == "IN_PROGRESS")
                    {
                        let wait = creation::task_recheck(submission.looks);
                        submission.looks += 1;
                        if let Err(settled) = save(&steps) {
                            return settled;
                        }
                        return Settled::Following(
                            format!("{name}: submission task {task_id} of {id} is in progress"),
                            wait,
                        );
                    }
                }
                _ => {
                    let mut result = steps.created.clone();
                    result["Submission"] = task.clone();
                    steps.ended = Some(Ended::Success(result));
                    if let Err(settled) = save(&steps) {
                        return settled;
                    }
                }
            }
        }
        let outcome = match steps.ended.clone().expect("the loop ends with an ending") {
            Ended::Success(result) => Outcome::Success { result },
            Ended::Failure(message) => Outcome::Failure { message },
        };
        if let Err(settled) = self
            .follow_up(pack, rules, event, ctx, &steps.planned, &outcome, now)
            .await
        {
            return settled;
        }
        if let Err(e) = super::blocking(|| self.store.clear_settle(key)) {
            return Settled::Retry(e.to_string(), None);
        }
        match outcome {
            Outcome::Failure { message } => ending(name, Ending::Failed(message)),
            Outcome::Success { .. } => Settled::Done,
        }
    }

    /// Performs one step of a creation: its answer, or the message of a failure
    /// retries cannot fix; `Err` is how the batch ends when a retry may help.
    async fn step(
        &self,
        event: &Event,
        pack: &str,
        effect: &Effect,
        now: jiff::Timestamp,
    ) -> Result<Result<Value, String>, Settled> {
        match self.perform_once(event, pack, 0, effect, now).await {
            Err(e) => Err(Settled::Retry(e.to_string(), None)),
            Ok(None) => Ok(Ok(Value::Null)),
            Ok(Some(Ok(answer))) => Ok(Ok(answer)),
            Ok(Some(Err(e))) if e.retryable || e.waits_for_quota => Err(after_error(
                &e,
                format!("{pack}: {}: {}", effect.kind(), e.message),
            )),
            Ok(Some(Err(e))) => Ok(Err(e.message)),
        }
    }

    /// Performs the pack's `on_success` or `on_error` effects. Follow-ups (the new
    /// opportunity's id on the deal, the sync status) are effects like any other: one
    /// that fails retries the batch, which finishes them from the pending settle, and
    /// the notes already written are not repeated.
    #[allow(clippy::too_many_arguments)]
    async fn follow_up(
        &self,
        pack: &CompiledPack,
        rules: &RuleSet,
        event: &Event,
        ctx: &Context,
        planned: &[Effect],
        outcome: &Outcome,
        now: jiff::Timestamp,
    ) -> Result<(), Settled> {
        let follow = settle(pack, rules, event, ctx, planned, outcome, now);
        for (offset, effect) in follow.writes.iter().enumerate() {
            let index = planned.len() + offset;
            let performed = match self
                .perform_once(event, &pack.pack.name, index, effect, now)
                .await
            {
                Ok(Some(performed)) => performed,
                Ok(None) => continue,
                Err(e) => return Err(Settled::Retry(e.to_string(), None)),
            };
            let failed = |e: &ExecError| {
                format!(
                    "{}: follow-up {}: {}",
                    pack.pack.name,
                    effect.kind(),
                    e.message
                )
            };
            match performed {
                Ok(_) => {}
                Err(e) => return Err(after_error(&e, failed(&e))),
            }
        }
        Ok(())
    }

    /// Performs one write of a pack run, at most once where repeating it would show:
    /// notes, tasks and messages are not idempotent, so one an earlier try of this
    /// batch carried out (its journal key is remembered) is skipped, and `None` says so
    /// (as it does for a message to a channel the service does not have).
    /// A store error is the caller's to retry.
    async fn perform_once(
        &self,
        event: &Event,
        pack: &str,
        index: usize,
        effect: &Effect,
        now: jiff::Timestamp,
    ) -> Result<Option<Result<Value, ExecError>>, crate::store::StoreError> {
        // A channel the service does not have (SNS without a topic) is skipped, not
        // failed: the pack's other writes and its state go ahead (said once at load).
        if !self.rules.channels().delivers(effect) {
            tracing::debug!(event = %event.id, pack, kind = effect.kind(), "skipped: the config names no SNS topic");
            self.metrics.effect(effect.kind(), "no_topic");
            return Ok(None);
        }
        let journal = JournalKey::of(event, pack, index, effect);
        if let Some(key) = &journal
            && super::blocking(|| key.done(&*self.store))?
        {
            self.metrics.effect(effect.kind(), "already_done");
            return Ok(None);
        }
        let performed = self.executor.perform(effect, &*self.store, now).await;
        if let (Some(key), Ok(_)) = (&journal, &performed) {
            super::blocking(|| self.store.remember_effect(&key.key, now.as_millisecond()))?;
        }
        self.metrics.effect(
            effect.kind(),
            match &performed {
                Ok(_) => "ok",
                Err(e) if e.retryable => "retry",
                Err(_) => "error",
            },
        );
        Ok(Some(performed))
    }

    /// Notes what was read of the opportunity (its stage and review status) and
    /// whether its AWS summary was, for `/healthz`'s summary ages. Only bookkeeping:
    /// a store that refuses it does not fail the run.
    fn note_sightings(&self, opportunity: Option<&Value>, summary: bool, id: Option<&str>) {
        let now = self.clock.now_ms();
        let noted = super::blocking(|| {
            if let Some(o) = opportunity
                && let Some(id) = o["Id"].as_str()
            {
                let field = |f: &str| o.pointer(f).and_then(Value::as_str);
                self.store.saw_opportunity(
                    id,
                    field("/LifeCycle/Stage"),
                    field("/LifeCycle/ReviewStatus"),
                    now,
                )?;
            }
            match id {
                Some(id) if summary => self.store.saw_summary(id, now),
                _ => Ok(()),
            }
        });
        if let Err(e) = noted {
            tracing::debug!(error = %e, "cannot note what was read of an opportunity");
        }
    }

    /// Whether a copy of a deal that CRM search answered at `searched_ms` (a
    /// schedule's listing, or a deal found by its link) holds pcsync's own writes to
    /// it. Search lags writes (HubSpot reference §3.4), so it is never how pcsync
    /// reads its own write back: the copy does not stand for the deal when pcsync
    /// wrote the deal after the search, or shortly before and the copy shows other
    /// values ([`super::poll::listing_holds`]); the deal is then read by id.
    fn search_copy_holds(&self, copy: &pcsync_engine::DealSnapshot, searched_ms: i64) -> bool {
        let key = format!("deal:{}", copy.id);
        let catch_up = super::poll::SEARCH_CATCH_UP.as_millis() as i64;
        let holds = super::blocking(|| -> Result<bool, crate::store::StoreError> {
            if self.store.written_since(&key, searched_ms)? {
                return Ok(false);
            }
            let recent = self.store.writes_since(&key, searched_ms - catch_up)?;
            Ok(super::poll::listing_holds(copy, &recent))
        });
        matches!(holds, Ok(true))
    }

    /// Loads what `fetch` names for `event`: the deal, its company, the opportunity,
    /// the AWS view, snapshots, the last-known state.
    async fn resolve(&self, event: &Event, fetch: &Fetch) -> Result<Context, ExecError> {
        let x = &self.executor;
        let link = &fetch.link_property;
        let mut deal = match &event.deal_id {
            Some(id) => {
                // The listing's copy, unless it may miss pcsync's own writes
                // (another run's `remember_in` keys, say).
                let listed = super::poll::deal_from_listing(event, &fetch.deal, self.clock.now())
                    .filter(|listed| {
                        let at = super::poll::listed_at(event).map_or(0, |t| t.as_millisecond());
                        self.search_copy_holds(listed, at)
                    });
                match listed {
                    Some(listed) => Some(listed),
                    None => x.deal(id, &fetch.deal).await?,
                }
            }
            None => None,
        };
        let opportunity_id = event.opportunity_id.clone().or_else(|| {
            deal.as_ref()
                .and_then(|d| d.property(link))
                .filter(|v| !v.is_empty())
        });
        let mut opportunity = None;
        if let Some(id) = &opportunity_id
            && (fetch.opportunity || deal.is_none())
        {
            opportunity = x.opportunity(id).await?;
        }
        if deal.is_none()
            && let Some(id) = &opportunity_id
        {
            let by_identifier = opportunity
                .as_ref()
                .and_then(|o| o["PartnerOpportunityIdentifier"].as_str())
                // A partner's own CRM id, not a deal's: find the deal by its link.
                .filter(|s| pcsync_adapters::hubspot::client::is_object_id(s));
            if let Some(deal_id) = by_identifier {
                deal = x.deal(deal_id, &fetch.deal).await?;
            }
            if deal.is_none() {
                deal = x.deal_linked_to(link, id, &fetch.deal).await?;
                // Search found the deal; its copy may predate pcsync's own writes.
                if let Some(found) = &deal
                    && !self.search_copy_holds(found, self.clock.now().as_millisecond())
                {
                    deal = x.deal(&found.id.clone(), &fetch.deal).await?;
                }
            }
        }
        // AWS keeps no summary of an opportunity it was never sent: before submission
        // there is none to read, whatever error AWS would answer for it.
        let unsubmitted = opportunity
            .as_ref()
            .and_then(|o| o.pointer("/LifeCycle/ReviewStatus"))
            .and_then(Value::as_str)
            == Some("Pending Submission");
        let aws_summary = match &opportunity_id {
            Some(id) if fetch.aws_summary && !unsubmitted => x.aws_summary(id).await?,
            _ => None,
        };
        self.note_sightings(
            opportunity.as_ref(),
            aws_summary.is_some(),
            opportunity_id.as_deref(),
        );
        let snapshots = match &opportunity_id {
            Some(id) if !fetch.snapshots.is_empty() => {
                x.snapshots(id, &fetch.snapshots, &*self.store, self.clock.now())
                    .await?
            }
            _ => Vec::new(),
        };
        let company = match &deal {
            Some(d) if !fetch.company.is_empty() => {
                x.primary_company(&d.id, &fetch.company).await?
            }
            _ => None,
        };
        let previous = match &opportunity_id {
            Some(id) if fetch.previous => super::blocking(|| self.store.pack_states(id))?,
            _ => IndexMap::new(),
        };
        Ok(Context {
            deal,
            company,
            opportunity: if fetch.opportunity { opportunity } else { None },
            aws_summary,
            snapshots,
            previous,
        })
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

/// The effect journal's key for a note, task or message: the event the pack ran on,
/// the pack, the effect's place among the pack's writes, and a digest of what
/// identifies it to a reader (the deal and the title: a note's first line, a task's
/// or message's subject). Bodies and due times are left out because they may carry
/// the time of planning, which a retry changes; a retry that plans a different note
/// or task does it.
///
/// The digest is SHA-256 (its first 16 bytes, hex) over the kind, deal and title
/// joined by NUL: a specified function, so a key written by one build is found by
/// the next (std's `DefaultHasher` may change between Rust releases).
struct JournalKey {
    key: String,
}

impl JournalKey {
    fn of(event: &Event, pack: &str, index: usize, effect: &Effect) -> Option<Self> {
        use sha2::Digest;
        let (kind, deal, title) = match effect {
            Effect::CreateNote { deal_id, body, .. } => (
                "note",
                deal_id.as_str(),
                body.lines().next().unwrap_or_default(),
            ),
            Effect::CreateTask {
                deal_id, subject, ..
            } => ("task", deal_id.as_str(), subject.as_str()),
            Effect::Publish { subject, .. } => ("publish", "", subject.as_str()),
            _ => return None,
        };
        let digest = sha2::Sha256::new()
            .chain_update(kind)
            .chain_update([0])
            .chain_update(deal)
            .chain_update([0])
            .chain_update(title)
            .finalize();
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        Some(JournalKey {
            key: format!("v2|{}|{pack}|{index}|{hex}", event.id),
        })
    }

    /// Whether an earlier try carried the effect out.
    fn done(&self, store: &dyn EffectJournal) -> Result<bool, crate::store::StoreError> {
        store.effect_done(&self.key)
    }
}

/// The key of a pack run's pending settle: the event it ran on and the pack.
fn settle_key(event: &Event, pack: &CompiledPack) -> String {
    format!(
        "{}|{}|{}",
        event.id,
        event.deal_id.as_deref().unwrap_or_default(),
        pack.pack.name
    )
}

/// A pending settle as stored: the planned effects and how their writes ended
/// (versioned JSON, read back by a later try, possibly by a later pcsync).
fn encode_settle(planned: &[Effect], outcome: &Outcome) -> String {
    let (ok, value) = match outcome {
        Outcome::Success { result } => (true, result.clone()),
        Outcome::Failure { message } => (false, Value::String(message.clone())),
    };
    serde_json::json!({ "v": 1, "effects": planned, "ok": ok, "value": value }).to_string()
}

fn decode_settle(text: &str) -> Option<(Vec<Effect>, Outcome)> {
    let v: Value = serde_json::from_str(text).ok()?;
    if v["v"] != 1 {
        return None;
    }
    let effects: Vec<Effect> = serde_json::from_value(v["effects"].clone()).ok()?;
    let outcome = if v["ok"].as_bool()? {
        Outcome::Success {
            result: v["value"].clone(),
        }
    } else {
        Outcome::Failure {
            message: v["value"].as_str()?.to_string(),
        }
    };
    Some((effects, outcome))
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
#[path = "worker_tests.rs"]
mod tests;
