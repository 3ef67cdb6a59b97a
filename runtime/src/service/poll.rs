//! Pollers: the schedules rule packs declare (`every: 30m, for_each: linked_deals`).
//! Each due run puts one `schedule` event per linked deal (or, with
//! `for_each: changed_opportunities`, per opportunity ListOpportunities reports changed
//! since the previous run) in the inbox, where it is ordered, retried and
//! dead-lettered like any other event. One task runs every
//! schedule, so two runs of one poller never overlap; a run that fails is logged and
//! tried again at the next tick. Each run is shifted by up to its jitter, so that
//! many packs do not fire at once. A run is skipped while the day's Partner Central
//! reads are past the share schedules may use (`partner_central.daily_quota`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pcsync_adapters::hubspot::client::{Deal, HubSpotClient};
use pcsync_adapters::partner_central::PartnerCentralClient;
use pcsync_engine::model::{PartnerCentralRead, Schedule, ScheduleScope};
use pcsync_engine::{Event, ScheduledRun};
use serde_json::Value;

use super::reload::RuleHost;
use crate::clock::Clock;
use crate::store::{Inbox, Sighting, Store};

/// How often the poller looks for due schedules.
const TICK: Duration = Duration::from_secs(5);

/// How far back a `changed_opportunities` run looks before the previous run started,
/// for clock differences with AWS.
const OVERLAP: Duration = Duration::from_secs(60);

/// How many characters of property names a listing may ask for: CRM search refuses
/// a body over 3,000 characters, and the filters and sorts take some.
const MAX_LISTED: usize = 2_400;

/// What a scheduled run carries: the deal as the listing read it, and when; and for
/// a `schedule.reads` poll, what the run reads of Partner Central
/// ([`pcsync_engine::Event::scheduled_reads`]).
pub fn listed_deal(
    deal: &Deal,
    now: jiff::Timestamp,
    reads: Option<&[PartnerCentralRead]>,
) -> ScheduledRun {
    ScheduledRun {
        listed_at: now,
        deal: pcsync_engine::DealSnapshot {
            id: deal.id.clone(),
            properties: deal
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().map_or(Value::Null, Value::String)))
                .collect(),
        },
        reads: reads.map(<[PartnerCentralRead]>::to_vec),
    }
}

/// When a scheduled run's listing read its deal.
pub fn listed_at(event: &Event) -> Option<jiff::Timestamp> {
    Some(event.scheduled.as_ref()?.listed_at)
}

/// The deal a scheduled run carries ([`listed_deal`]), when it has every property in
/// `properties` and was listed less than [`LISTING_FRESH`] before `now`: a run that
/// waited longer reads the deal afresh.
pub fn deal_from_listing(
    event: &Event,
    properties: &[String],
    now: jiff::Timestamp,
) -> Option<pcsync_engine::DealSnapshot> {
    if event.source != pcsync_engine::Source::Schedule {
        return None;
    }
    let run = event.scheduled.as_ref()?;
    if now.duration_since(run.listed_at).unsigned_abs() > LISTING_FRESH {
        return None;
    }
    let deal = &run.deal;
    if event.deal_id.as_deref() != Some(deal.id.as_str()) {
        return None;
    }
    if !properties.iter().all(|p| deal.properties.contains_key(p)) {
        return None;
    }
    Some(pcsync_engine::DealSnapshot {
        id: deal.id.clone(),
        properties: properties
            .iter()
            .map(|p| (p.clone(), deal.properties[p].clone()))
            .collect(),
    })
}

/// Partner Central reads one scheduled run of a pack with these needs costs per deal,
/// against the daily read quota: the opportunity and its AWS summary, or what
/// `schedule.reads` narrows them to. (Snapshot listings and reads have no documented
/// quota.)
pub fn reads_per_run(needs: &pcsync_engine::model::Needs, schedule: &Schedule) -> u64 {
    match &schedule.reads {
        Some(reads) => reads.len() as u64,
        None => u64::from(needs.opportunity) + u64::from(needs.aws_summary),
    }
}

/// How much less often a `schedule.reads` poll goes over a closed opportunity
/// (with `include_closed`) than over an open one.
pub const CLOSED_SLOWER: u32 = 4;

/// What a `schedule.reads` poll goes over in one sweep.
#[derive(Debug, Default)]
pub struct Sweep {
    /// The deals due now, each with whether its run is narrowed to `reads` (its
    /// opportunity was read in full before) or reads everything (a first reading).
    pub due: Vec<(Deal, bool)>,
    /// The deals the poll goes over at all, closed ones counted at their slower
    /// pace: what its reads a day are worked out from.
    pub weight: f64,
    /// Due deals left for the next sweep, past the sweep's cap.
    pub held: usize,
}

/// Which of a `schedule.reads` poll's linked deals are due at `now_ms`, each
/// opportunity on its own clock: due once its last read of what the poll reads
/// (by any run, or queued by this poll) is within a sweep of `period` old (so it is
/// read again before it is `period` old), closed ones at
/// [`CLOSED_SLOWER`] times that (and only with `include_closed`). Opportunities last
/// seen before their first submission have no AWS summary and are left to events. A
/// `capped` sweep queues at most twice its even share of the poll's deals (and at
/// least [`SWEEP_FLOOR`]), so a start-up with every summary unread spreads its
/// reads rather than filling the inbox ahead of events.
#[allow(clippy::too_many_arguments)]
pub fn sweep(
    deals: &[Deal],
    link: &str,
    schedule: &Schedule,
    sightings: &HashMap<String, Sighting>,
    queued: &HashMap<String, i64>,
    period: Duration,
    sweep_every: Duration,
    capped: bool,
    now_ms: i64,
) -> Sweep {
    let reads = schedule.reads.as_deref().unwrap_or_default();
    let summary = reads.contains(&PartnerCentralRead::AwsSummary);
    let mut out = Sweep::default();
    let mut due: Vec<(i64, Deal, bool)> = Vec::new();
    for deal in deals {
        let Some(opportunity) = deal.properties.get(link).cloned().flatten() else {
            continue;
        };
        let seen = sightings.get(&opportunity);
        let full = seen.and_then(|s| s.read_at).is_some();
        let closed = seen.is_some_and(Sighting::closed);
        if (closed && !schedule.include_closed) || seen.is_some_and(Sighting::unsubmitted) {
            continue;
        }
        let (pace, weight) = if closed {
            (period * CLOSED_SLOWER, 1.0 / f64::from(CLOSED_SLOWER))
        } else {
            (period, 1.0)
        };
        out.weight += weight;
        let read = seen.and_then(|s| if summary { s.summary_at } else { s.read_at });
        let last = read.max(queued.get(&opportunity).copied());
        match last {
            // Due a sweep ahead, so that it is read before it is `pace` old.
            Some(at) if now_ms - at < pace.saturating_sub(sweep_every).as_millis() as i64 => {}
            _ => due.push((last.unwrap_or(i64::MIN), deal.clone(), full)),
        }
    }
    // The longest unread first.
    due.sort_by_key(|(at, _, _)| *at);
    let share = 2.0 * out.weight * sweep_every.as_secs_f64() / period.as_secs_f64().max(1.0);
    let cap = if capped {
        SWEEP_FLOOR.max(share.ceil() as usize)
    } else {
        usize::MAX
    };
    out.held = due.len().saturating_sub(cap);
    out.due = due
        .into_iter()
        .take(cap)
        .map(|(_, d, full)| (d, full))
        .collect();
    out
}

/// The fewest due deals a capped sweep may queue.
pub const SWEEP_FLOOR: usize = 100;

/// How often a `schedule.reads` poll looks for due opportunities: a twelfth of its
/// period, at most every 30 minutes (each sweep lists the linked deals: 50 CRM
/// searches at 10,000 deals).
pub fn sweep_every(every: Duration) -> Duration {
    (every / 12).min(Duration::from_secs(30 * 60))
}

/// A schedule's key in the poller's books: its pack, place and period.
fn schedule_key(pack: &str, index: usize, schedule: &Schedule) -> String {
    format!("{pack}#{index}:{}", schedule.every.0.as_millis())
}

/// The keys of the enabled packs' schedules.
fn scheduled_keys(set: &pcsync_engine::RuleSet) -> impl Iterator<Item = String> + '_ {
    set.packs.iter().filter(|p| p.pack.enabled).flat_map(|p| {
        p.pack
            .on
            .as_slice()
            .iter()
            .enumerate()
            .filter_map(move |(i, t)| Some(schedule_key(&p.pack.name, i, t.schedule.as_ref()?)))
    })
}

/// A schedule's part of the `total` reads a day schedules may spend, when it would
/// spend `own` at its period and the others what `wanted` holds: all of it while
/// together they fit, otherwise a part in proportion to `own`.
pub fn share_of(wanted: &HashMap<String, f64>, total: u64, key: &str, own: f64) -> u64 {
    let all: f64 = wanted
        .iter()
        .filter(|(k, _)| k.as_str() != key)
        .map(|(_, v)| v)
        .sum::<f64>()
        + own;
    if all <= total as f64 {
        total
    } else {
        (total as f64 * own / all) as u64
    }
}

/// The Partner Central reads a day a schedule over `deals` deals at `reads` each
/// spends when it runs every `every`.
pub fn per_day(every: Duration, deals: usize, reads: u64) -> f64 {
    deals as f64 * reads as f64 * 86_400.0 / every.as_secs_f64().max(1e-3)
}

/// The period a `linked_deals` schedule runs at: `every`, or longer when runs over
/// `deals` deals at `reads` reads each, every `every`, would spend more than
/// `budget_per_day` reads a day.
pub fn budgeted_period(every: Duration, deals: usize, reads: u64, budget_per_day: u64) -> Duration {
    let cost = deals as u64 * reads;
    if cost == 0 {
        return every;
    }
    let day = 86_400.0;
    let needed = Duration::from_secs_f64(cost as f64 * day / budget_per_day.max(1) as f64);
    every.max(needed)
}

/// How long a listed deal stands for a fresh read.
pub const LISTING_FRESH: Duration = Duration::from_secs(10 * 60);

/// How long after pcsync writes a deal a listing may still show it as it was: CRM
/// search "may take a few moments" to see a write (HubSpot reference §3.4), and
/// HubSpot gives no bound, so this is generous.
pub const SEARCH_CATCH_UP: Duration = Duration::from_secs(10 * 60);

/// Whether a listed deal holds what pcsync last wrote to it: `written` are the
/// properties pcsync wrote within [`SEARCH_CATCH_UP`] before the listing, with the
/// values written. A listed value that differs may be search's index not having
/// caught up with pcsync's own write, so the deal is then read by id (and when a
/// person changed it since, that read costs one call and is right too).
pub fn listing_holds(listed: &pcsync_engine::DealSnapshot, written: &[(String, String)]) -> bool {
    written.iter().all(|(property, value)| {
        !listed.properties.contains_key(property)
            || listed.property(property).unwrap_or_default() == *value
    })
}

/// Of `changed` (id and `LastModifiedDate`, as ListOpportunities reports them), the
/// opportunities modified since `seen` last noted them, which it then notes.
pub fn new_changes(
    seen: &mut HashMap<String, String>,
    changed: Vec<(String, String)>,
) -> Vec<String> {
    changed
        .into_iter()
        .filter_map(|(id, at)| {
            let news = seen.get(&id).is_none_or(|before| *before != at);
            news.then(|| {
                seen.insert(id.clone(), at);
                id
            })
        })
        .collect()
}

/// The deal properties a listing asks for: the link and what the pack needs, or the
/// link alone when they would not fit a search body ([`MAX_LISTED`]; the runs then
/// read their deals).
fn listed_properties(link: &str, needed: &[String]) -> Vec<String> {
    let mut properties = vec![link.to_string()];
    properties.extend(needed.iter().filter(|p| *p != link).cloned());
    if properties.iter().map(|p| p.len() + 3).sum::<usize>() > MAX_LISTED {
        properties.truncate(1);
    }
    properties
}

/// One scheduled run's event for a listed deal.
fn scheduled(
    pack: &str,
    deal: &Deal,
    opportunity: Option<String>,
    reads: Option<&[PartnerCentralRead]>,
    now: jiff::Timestamp,
) -> (Event, String) {
    let mut event = Event::schedule(pack, Some(deal.id.clone()), opportunity, now);
    event.scheduled = Some(listed_deal(deal, now, reads));
    let key = crate::store::ordering_key(&event);
    (event, key)
}

/// Logs, once per change, that the read budget stretched a schedule's period.
fn note_stretch(
    stretched: &mut HashMap<String, Duration>,
    key: &str,
    pack: &str,
    schedule: &Schedule,
    deals: usize,
    period: Duration,
    budget: u64,
) {
    if period > schedule.every.0 && stretched.get(key) != Some(&period) {
        tracing::warn!(
            pack = %pack,
            deals,
            every_s = schedule.every.0.as_secs(),
            runs_every_s = period.as_secs(),
            budget_reads_per_day = budget,
            "the schedule runs less often to keep within its share of the daily read quota"
        );
    }
    stretched.insert(key.to_string(), period);
}

/// Commits a run's events; whether it worked.
fn queue(store: &dyn Inbox, pack: &str, events: &[(Event, String)], now_ms: i64) -> bool {
    match super::blocking(|| store.accept(events, now_ms)) {
        Ok(a) => {
            tracing::info!(pack = %pack, queued = a.new, "scheduled run queued its work");
            true
        }
        Err(e) => {
            tracing::error!(pack = %pack, error = %e, "scheduled run not queued");
            false
        }
    }
}

/// When a schedule first runs after start-up (or after its pack appears).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstRun {
    /// Within the schedule's jitter, so that a restart neither waits a whole period
    /// nor fires every pack at once.
    WithinJitter,
    /// At once: `serve --sandbox`, whose demo needs the notifications' baseline
    /// before anyone rescores an opportunity.
    Immediately,
}

/// The schedules' runner: what each schedule last did, and where it goes on from.
/// [`Poller::tick`] makes one pass over the schedules at the clock's time, so a test
/// drives it in-process on a [`crate::clock::ManualClock`]; [`Poller::run`] ticks
/// every few seconds until the task is dropped.
pub struct Poller {
    rules: Arc<RuleHost>,
    store: Arc<dyn Store>,
    hubspot: Arc<HubSpotClient>,
    partner_central: PartnerCentralClient,
    clock: Arc<dyn Clock>,
    first_run: FirstRun,
    scheduled_share: f64,
    /// Passes made so far (the first one is not capped for `FirstRun::Immediately`).
    passes: u64,
    /// Per pack and schedule: when it is next due (ms since the epoch).
    due: HashMap<String, i64>,
    /// Per schedule: the period it last ran at, when the read budget stretched it.
    stretched: HashMap<String, Duration>,
    /// Per `changed_opportunities` schedule: where the previous run started.
    since: HashMap<String, jiff::Timestamp>,
    /// Per linked_deals schedule: the reads a day it would spend at its own period.
    wanted: HashMap<String, f64>,
    /// Per changed_opportunities schedule: the LastModifiedDate it last queued each
    /// opportunity at.
    modified: HashMap<String, HashMap<String, String>>,
    /// Per `schedule.reads` poll: when it last queued each opportunity.
    polled: HashMap<String, HashMap<String, i64>>,
}

impl Poller {
    /// A poller over the packs `rules` holds, queueing into `store`.
    pub fn new(
        rules: Arc<RuleHost>,
        store: Arc<dyn Store>,
        hubspot: Arc<HubSpotClient>,
        partner_central: PartnerCentralClient,
        clock: Arc<dyn Clock>,
        first_run: FirstRun,
        scheduled_share: f64,
    ) -> Poller {
        Poller {
            rules,
            store,
            hubspot,
            partner_central,
            clock,
            first_run,
            scheduled_share,
            passes: 0,
            due: HashMap::new(),
            stretched: HashMap::new(),
            since: HashMap::new(),
            wanted: HashMap::new(),
            modified: HashMap::new(),
            polled: HashMap::new(),
        }
    }

    /// Runs the schedules until the task is dropped. `first_pass` is told once every
    /// schedule due at start-up has queued its work (or failed to).
    pub async fn run(mut self, first_pass: tokio::sync::oneshot::Sender<()>) {
        self.tick().await;
        let _ = first_pass.send(());
        loop {
            tokio::time::sleep(TICK).await;
            self.tick().await;
        }
    }

    /// One pass: every schedule due at the clock's time queues its runs.
    pub async fn tick(&mut self) {
        let now = self.clock.now();
        let Poller {
            rules,
            store,
            hubspot,
            partner_central,
            clock: _,
            first_run,
            scheduled_share,
            passes,
            due,
            stretched,
            since,
            wanted,
            modified,
            polled,
        } = self;
        let (first_run, scheduled_share) = (*first_run, *scheduled_share);
        let first_pass = *passes == 0;
        *passes += 1;
        let now_ms = now.as_millisecond();
        let set = rules.current();
        // The schedules' share of the day's reads. When the linked_deals schedules
        // together would spend more at their own periods, each gets a part in
        // proportion to what it would spend (as of its last run), and stretches.
        let limits = partner_central.daily_quotas().limits();
        let total = (limits.reads as f64 * scheduled_share.clamp(0.0, 1.0)) as u64;
        let keys: std::collections::HashSet<String> = scheduled_keys(&set).collect();
        wanted.retain(|key, _| keys.contains(key));
        for pack in set.packs.iter().filter(|p| p.pack.enabled) {
            for (i, trigger) in pack.pack.on.as_slice().iter().enumerate() {
                let Some(schedule) = &trigger.schedule else {
                    continue;
                };
                let mut every = schedule.every.0;
                // A poll (`reads`) sweeps often; its jitter is a tenth of a sweep.
                let paced = if schedule.reads.is_some() {
                    sweep_every(every)
                } else {
                    every
                };
                let jitter = schedule.jitter.as_ref().map_or(paced / 10, |j| j.0);
                let key = schedule_key(&pack.pack.name, i, schedule);
                // The first run comes within the jitter of start-up (or of the pack
                // appearing), so a restart does not wait a whole period.
                let next = *due.entry(key.clone()).or_insert_with(|| match first_run {
                    FirstRun::Immediately => now_ms,
                    FirstRun::WithinJitter => {
                        now_ms + super::random_below(jitter.as_millis() as i64, &key)
                    }
                });
                if now_ms < next {
                    continue;
                }
                // Scheduled runs read what no event announces; they keep within their
                // share of the day's reads, and the rest stays for events.
                if let Err(why) = super::quota::schedules_may_read(
                    partner_central.daily_quotas(),
                    scheduled_share,
                    now_ms,
                ) {
                    tracing::warn!(pack = %pack.pack.name, reason = %why, "scheduled run skipped to spare the daily read quota");
                    let period = every.as_millis() as i64;
                    due.insert(key.clone(), now_ms + period);
                    continue;
                }
                match schedule.for_each {
                    ScheduleScope::LinkedDeals => {
                        let link = &pack.pack.needs.link_property;
                        // The listing reads the properties the run needs, 200 deals a
                        // search, so the runs need not read each deal again.
                        let properties = listed_properties(link, &pack.pack.needs.deal);
                        let mut deals = match hubspot.deals_with(link, &properties).await {
                            Ok(deals) => deals,
                            Err(e) => {
                                tracing::warn!(pack = %pack.pack.name, error = %e, "scheduled run cannot list linked deals");
                                continue;
                            }
                        };
                        let sightings = match super::blocking(|| store.sightings()) {
                            Ok(s) => s,
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot read what was last seen of the opportunities; running for all");
                                HashMap::new()
                            }
                        };
                        let reads = reads_per_run(&pack.pack.needs, schedule);
                        let events: Vec<(Event, String)> = if let Some(narrow) = &schedule.reads {
                            // A poll: each opportunity on its own clock, a sweep at a
                            // time.
                            let queued = polled.entry(key.clone()).or_default();
                            let capped = !(first_run == FirstRun::Immediately && first_pass);
                            let plan = |period| {
                                sweep(
                                    &deals,
                                    link,
                                    schedule,
                                    &sightings,
                                    queued,
                                    period,
                                    sweep_every(period),
                                    capped,
                                    now_ms,
                                )
                            };
                            let mut swept = plan(schedule.every.0);
                            let deals = swept.weight.ceil() as usize;
                            let own = per_day(schedule.every.0, deals, reads);
                            let budget = share_of(wanted, total, &key, own);
                            wanted.insert(key.clone(), own);
                            let period = budgeted_period(schedule.every.0, deals, reads, budget);
                            note_stretch(
                                stretched,
                                &key,
                                &pack.pack.name,
                                schedule,
                                deals,
                                period,
                                budget,
                            );
                            if period > schedule.every.0 {
                                swept = plan(period);
                            }
                            if swept.held > 0 {
                                tracing::info!(pack = %pack.pack.name, held = swept.held, "a sweep left due opportunities for the next one, to spread its reads");
                            }
                            queued.retain(|_, at| {
                                now_ms - *at < (period * CLOSED_SLOWER).as_millis() as i64
                            });
                            every = sweep_every(period);
                            swept
                                .due
                                .into_iter()
                                .map(|(d, narrowed)| {
                                    let opportunity = d.properties.get(link).cloned().flatten();
                                    if let Some(o) = &opportunity {
                                        queued.insert(o.clone(), now_ms);
                                    }
                                    let reads = narrowed.then_some(narrow.as_slice());
                                    scheduled(&pack.pack.name, &d, opportunity, reads, now)
                                })
                                .collect()
                        } else {
                            if !schedule.include_closed {
                                deals.retain(|d| {
                                    d.properties
                                        .get(link)
                                        .cloned()
                                        .flatten()
                                        .and_then(|o| sightings.get(&o))
                                        .is_none_or(|s| !s.closed())
                                });
                            }
                            let own = per_day(schedule.every.0, deals.len(), reads);
                            let budget = share_of(wanted, total, &key, own);
                            wanted.insert(key.clone(), own);
                            let period =
                                budgeted_period(schedule.every.0, deals.len(), reads, budget);
                            note_stretch(
                                stretched,
                                &key,
                                &pack.pack.name,
                                schedule,
                                deals.len(),
                                period,
                                budget,
                            );
                            every = period;
                            deals
                                .iter()
                                .map(|d| {
                                    let opportunity = d.properties.get(link).cloned().flatten();
                                    scheduled(&pack.pack.name, d, opportunity, None, now)
                                })
                                .collect()
                        };
                        if !queue(&**store, &pack.pack.name, &events, now_ms) {
                            continue;
                        }
                    }
                    ScheduleScope::ChangedOpportunities => {
                        // The first run looks one period back.
                        let from =
                            since.get(&key).copied().unwrap_or_else(|| now - every) - OVERLAP;
                        match partner_central
                            .changed_opportunities(&from.to_string())
                            .await
                        {
                            Ok(changed) => {
                                // The overlap lists again what the previous run saw:
                                // only a newer modification is news.
                                let seen = modified.entry(key.clone()).or_default();
                                let fresh = new_changes(seen, changed);
                                let floor = (from - OVERLAP).to_string();
                                seen.retain(|_, at| *at >= floor);
                                // ListOpportunities reports the whole catalog's
                                // changes: only those a deal links are read, one
                                // search per 50 instead of a GetOpportunity each,
                                // and the runs get the deal as listed.
                                let link = &pack.pack.needs.link_property;
                                let properties = listed_properties(link, &pack.pack.needs.deal);
                                let linked = if fresh.is_empty() {
                                    Vec::new()
                                } else {
                                    match hubspot.deals_in(link, &fresh, &properties).await {
                                        Ok(deals) => deals,
                                        Err(e) => {
                                            tracing::warn!(pack = %pack.pack.name, error = %e, "scheduled run cannot find the deals that link the changed opportunities");
                                            for id in &fresh {
                                                seen.remove(id);
                                            }
                                            continue;
                                        }
                                    }
                                };
                                let events: Vec<(Event, String)> = linked
                                    .iter()
                                    .filter_map(|d| {
                                        let opportunity =
                                            d.properties.get(link).cloned().flatten()?;
                                        // The search matched without case; the
                                        // opportunity's id is as AWS spells it.
                                        let id = fresh
                                            .iter()
                                            .find(|f| f.eq_ignore_ascii_case(&opportunity))?;
                                        Some(scheduled(
                                            &pack.pack.name,
                                            d,
                                            Some(id.clone()),
                                            None,
                                            now,
                                        ))
                                    })
                                    .collect();
                                if fresh.len() > events.len() {
                                    tracing::debug!(pack = %pack.pack.name, changed = fresh.len(), linked = events.len(), "changed opportunities no deal links are not read");
                                }
                                if !queue(&**store, &pack.pack.name, &events, now_ms) {
                                    continue;
                                }
                                since.insert(key.clone(), now);
                            }
                            Err(e) => {
                                tracing::warn!(pack = %pack.pack.name, error = %e, "scheduled run cannot list changed opportunities");
                                continue;
                            }
                        }
                    }
                }
                let period = every.as_millis() as i64;
                due.insert(
                    key.clone(),
                    now_ms + period + super::random_below(jitter.as_millis() as i64, &key),
                );
            }
        }
    }
}

#[cfg(test)]
mod poller_tests {
    //! The poller in-process: its schedules go by a manual clock, its calls go to the
    //! sandbox over HTTP.
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::SqliteStore;
    use pcsync_sandbox::{Options, Quotas, Sandbox};
    use serde_json::json;

    const PACK: &str = "pack: changed\non:\n  - schedule: { every: 30m, jitter: 0s, for_each: changed_opportunities }\nneeds:\n  deal: [dealname]\n  opportunity: true\n";

    struct Rig {
        sb: Sandbox,
        store: Arc<SqliteStore>,
        clock: Arc<ManualClock>,
        poller: Poller,
        _dir: tempfile::TempDir,
    }

    async fn rig() -> Rig {
        let sb = Sandbox::demo_on_loopback(Options {
            partner_central_quotas: Quotas::OFF,
            ..Options::default()
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("rules");
        std::fs::create_dir(&rules).unwrap();
        std::fs::write(rules.join("changed.yaml"), PACK).unwrap();
        let metrics = Arc::new(crate::service::metrics::Metrics::default());
        let host = Arc::new(RuleHost::new(
            &rules,
            super::super::reload::load_dir(&rules).unwrap(),
            metrics,
        ));
        let store = Arc::new(SqliteStore::open(&dir.path().join("pcsync.db")).unwrap());
        let aws = pcsync_adapters::aws_sdk_config(
            "us-east-1",
            Some(&sb.partner_central_url),
            Some(("AKIDEXAMPLE", "sandbox-secret")),
            pcsync_adapters::AwsTimeouts::default(),
        )
        .await;
        let clock = Arc::new(ManualClock::new(jiff::Timestamp::now()));
        let poller = Poller::new(
            host,
            Arc::clone(&store) as Arc<dyn Store>,
            Arc::new(HubSpotClient::new(&sb.hubspot_url, "sandbox-token", 100)),
            PartnerCentralClient::from_config(&aws, "Sandbox"),
            Arc::clone(&clock) as Arc<dyn Clock>,
            FirstRun::Immediately,
            0.5,
        );
        Rig {
            sb,
            store,
            clock,
            poller,
            _dir: dir,
        }
    }

    impl Rig {
        /// The (deal, opportunity) of every run queued since the last call.
        fn queued(&self) -> Vec<(Option<String>, Option<String>)> {
            let now = self.clock.now_ms() + 3_600_000;
            let batches = self.store.claim(now, 0, 1_000).unwrap();
            let seqs: Vec<i64> = batches
                .iter()
                .flat_map(|b| b.items.iter().map(|c| c.seq))
                .collect();
            self.store.complete(&seqs, now).unwrap();
            let mut runs: Vec<_> = batches
                .into_iter()
                .flat_map(|b| b.items)
                .map(|c| (c.event.deal_id, c.event.opportunity_id))
                .collect();
            runs.sort();
            runs
        }

        fn listings(&self) -> usize {
            self.sb
                .journal
                .calls()
                .iter()
                .filter(|c| c.operation == "ListOpportunities")
                .count()
        }
    }

    #[tokio::test]
    async fn a_changed_opportunities_schedule_runs_by_the_clock_for_linked_opportunities_only() {
        let mut rig = rig().await;
        // The sandbox's catalog also holds opportunities no deal links.
        rig.sb.partner_central.with_store(|s| {
            s.create(&json!({
                "Catalog": "Sandbox", "ClientToken": "unlinked", "Origin": "Partner Referral",
                "OpportunityType": "Net New Business", "PartnerOpportunityIdentifier": "crm-77",
                "PrimaryNeedsFromAws": ["Co-Sell - Deal Support"],
                "Customer": {"Account": {"CompanyName": "Unlinked", "Industry": "Software and Internet",
                    "WebsiteUrl": "https://unlinked.example",
                    "Address": {"CountryCode": "US", "PostalCode": "98101", "StateOrRegion": "Washington", "City": "Seattle"}}},
                "Project": {"Title": "Unlinked on AWS", "CustomerBusinessProblem": "Unlinked needs to move its order system to AWS this year",
                    "CustomerUseCase": "Migration/Database Migration", "DeliveryModels": ["SaaS or PaaS"],
                    "SalesActivities": ["Initialized discussions with customer"],
                    "ExpectedCustomerSpend": [{"Amount": "1000", "CurrencyCode": "USD", "Frequency": "Monthly", "TargetCompany": "AWS"}]},
                "Marketing": {"Source": "None"},
                "LifeCycle": {"Stage": "Prospect", "TargetCloseDate": "2030-06-30"},
            }))
            .unwrap();
        });
        let linked: Vec<(Option<String>, Option<String>)> = rig.sb.hubspot.with_store(|s| {
            s.table("deals")
                .values()
                .filter_map(|d| {
                    let o = d.properties.get("aws_opportunity_id")?.clone();
                    Some((Some(d.id.clone()), Some(o)))
                })
                .collect()
        });
        assert!(!linked.is_empty());

        // The first pass lists the last period's changes: a run per linked deal.
        rig.poller.tick().await;
        assert_eq!(rig.listings(), 1);
        let mut expected = linked.clone();
        expected.sort();
        assert_eq!(rig.queued(), expected);

        // Not due again until the clock has moved on by the period.
        rig.clock.advance(Duration::from_secs(29 * 60));
        rig.poller.tick().await;
        assert_eq!(rig.listings(), 1);

        // Due: only what changed since the previous run, and only if a deal links it.
        rig.clock.advance(Duration::from_secs(2 * 60));
        let changed = linked[0].1.clone().unwrap();
        rig.sb.partner_central.with_store(|s| {
            let ids: Vec<String> = s
                .opportunities()
                .filter_map(|o| o.record["Id"].as_str().map(str::to_string))
                .collect();
            for id in ids {
                s.set_review(&id, "Submitted", None, None).unwrap();
            }
        });
        rig.poller.tick().await;
        assert_eq!(rig.listings(), 2);
        let queued = rig.queued();
        assert_eq!(queued.len(), linked.len(), "{queued:?}");
        assert!(
            queued
                .iter()
                .any(|(_, o)| o.as_deref() == Some(changed.as_str()))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_that_does_not_show_pcsyncs_own_write_yet_is_not_used() {
        let listed = pcsync_engine::DealSnapshot {
            id: "40000000001".into(),
            properties: [
                ("aws_synced_resources".to_string(), serde_json::json!("r1")),
                ("aws_sync_status".to_string(), serde_json::Value::Null),
            ]
            .into_iter()
            .collect(),
        };
        let wrote = |p: &str, v: &str| vec![(p.to_string(), v.to_string())];
        assert!(listing_holds(&listed, &[]));
        assert!(listing_holds(&listed, &wrote("aws_synced_resources", "r1")));
        assert!(listing_holds(&listed, &wrote("aws_sync_status", "")));
        // Not listed: nothing to contradict.
        assert!(listing_holds(
            &listed,
            &wrote("aws_last_sync_date", "2026-12-08")
        ));
        // Search still shows the deal as before pcsync's write.
        assert!(!listing_holds(
            &listed,
            &wrote("aws_synced_resources", "r1;r2")
        ));
        assert!(!listing_holds(&listed, &wrote("aws_sync_status", "synced")));
    }

    fn listed(at: jiff::Timestamp) -> Event {
        let deal = Deal {
            id: "40000000001".into(),
            properties: [
                (
                    "aws_opportunity_id".to_string(),
                    Some("O5000001".to_string()),
                ),
                ("dealname".to_string(), Some("Globex on AWS".to_string())),
                ("hubspot_owner_id".to_string(), None),
            ]
            .into_iter()
            .collect(),
        };
        let mut event = Event::schedule(
            "smart-notifications",
            Some(deal.id.clone()),
            Some("O5000001".into()),
            at,
        );
        event.scheduled = Some(listed_deal(&deal, at, None));
        // Through the inbox and back, as the worker gets it.
        Event::from_stored_json(&event.to_stored_json().unwrap()).unwrap()
    }

    fn linked(id: &str, opportunity: &str) -> Deal {
        Deal {
            id: id.into(),
            properties: [(
                "aws_opportunity_id".to_string(),
                Some(opportunity.to_string()),
            )]
            .into_iter()
            .collect(),
        }
    }

    fn summary_poll(include_closed: bool) -> Schedule {
        serde_json::from_value(serde_json::json!({
            "every": "6h", "reads": ["aws_summary"], "include_closed": include_closed
        }))
        .unwrap()
    }

    #[test]
    fn a_summary_poll_goes_over_each_opportunity_when_its_summary_is_old() {
        const H: i64 = 3_600_000;
        let now = 100 * H;
        let seen = |stage: &str, review: &str, summary_hours_ago: i64| Sighting {
            stage: Some(stage.into()),
            review_status: Some(review.into()),
            read_at: Some(now - 50 * H),
            summary_at: Some(now - summary_hours_ago * H),
        };
        let sightings: HashMap<String, Sighting> = [
            ("O2", seen("Qualified", "Approved", 7)),
            ("O3", seen("Qualified", "Approved", 1)),
            ("O4", seen("Launched", "Approved", 7)),
            ("O5", seen("Prospect", "Pending Submission", 70)),
            ("O6", seen("Qualified", "Submitted", 7)),
            ("O7", seen("Closed Lost", "Approved", 25)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let deals: Vec<Deal> = (1..=7)
            .map(|i| linked(&format!("{i}"), &format!("O{i}")))
            .collect();
        // O6 was queued by this poll an hour ago and has not run yet.
        let queued: HashMap<String, i64> = [("O6".to_string(), now - H)].into_iter().collect();
        let six = Duration::from_secs(6 * 3600);
        let due = |swept: &Sweep| -> Vec<(String, bool)> {
            swept
                .due
                .iter()
                .map(|(d, narrowed)| (d.id.clone(), *narrowed))
                .collect()
        };
        let go = |include_closed| {
            sweep(
                &deals,
                "aws_opportunity_id",
                &summary_poll(include_closed),
                &sightings,
                &queued,
                six,
                sweep_every(six),
                true,
                now,
            )
        };
        let open = go(false);
        // Never read in full: a full first reading. Old summary: the poll's read.
        assert_eq!(
            due(&open),
            [("1".to_string(), false), ("2".to_string(), true)]
        );
        assert_eq!(
            open.weight, 4.0,
            "1, 2, 3 and 6; closed and unsubmitted left out"
        );
        let closed = go(true);
        // Closed ones at a quarter of the pace: 25 hours is due, 7 is not.
        assert_eq!(
            due(&closed),
            [
                ("1".to_string(), false),
                ("7".to_string(), true),
                ("2".to_string(), true)
            ]
        );
        assert_eq!(closed.weight, 4.5);
    }

    #[test]
    fn a_sweep_spreads_a_backlog_unless_told_not_to() {
        let deals: Vec<Deal> = (0..500)
            .map(|i| linked(&format!("{i}"), &format!("O{i}")))
            .collect();
        let six = Duration::from_secs(6 * 3600);
        let go = |capped| {
            sweep(
                &deals,
                "aws_opportunity_id",
                &summary_poll(false),
                &HashMap::new(),
                &HashMap::new(),
                six,
                sweep_every(six),
                capped,
                0,
            )
        };
        // Half-hour sweeps of a 6-hour period: twice the even share is 84, at least 100.
        let capped = go(true);
        assert_eq!((capped.due.len(), capped.held), (100, 400));
        let all = go(false);
        assert_eq!((all.due.len(), all.held), (500, 0));
        assert_eq!(sweep_every(six), Duration::from_secs(1800));
        assert_eq!(
            sweep_every(Duration::from_secs(600)),
            Duration::from_secs(50)
        );
    }

    #[test]
    fn schedules_share_the_read_budget_in_proportion_to_their_wants() {
        let wanted: HashMap<String, f64> = [
            ("poll".to_string(), 40_000.0),
            ("pass".to_string(), 1_430.0),
        ]
        .into_iter()
        .collect();
        // Together within 50,000: each may use all of it (its period is its own).
        assert_eq!(share_of(&wanted, 50_000, "poll", 40_000.0), 50_000);
        // At twice the deals the poll wants 80,000: it gets 80/81.43 of 50,000.
        assert_eq!(share_of(&wanted, 50_000, "poll", 80_000.0), 49_121);
        assert_eq!(share_of(&wanted, 30_000, "pass", 1_430.0), 1_035);
        // 10,000 open deals, the summary every 6 hours: 40,000 reads a day.
        assert_eq!(per_day(Duration::from_secs(6 * 3600), 10_000, 1), 40_000.0);
    }

    #[test]
    fn a_changed_opportunities_run_queues_only_what_changed_since_the_last() {
        let mut seen = HashMap::new();
        let at = |id: &str, t: &str| (id.to_string(), t.to_string());
        let first = new_changes(
            &mut seen,
            vec![
                at("O1", "2026-12-01T10:00:00Z"),
                at("O2", "2026-12-01T10:00:30Z"),
            ],
        );
        assert_eq!(first, ["O1", "O2"]);
        // The overlap lists O2 again, unchanged, and O1 modified since.
        let next = new_changes(
            &mut seen,
            vec![
                at("O2", "2026-12-01T10:00:30Z"),
                at("O1", "2026-12-01T10:00:50Z"),
            ],
        );
        assert_eq!(next, ["O1"]);
    }

    #[test]
    fn a_schedule_runs_less_often_when_its_reads_would_pass_its_budget() {
        let half_hour = Duration::from_secs(30 * 60);
        // 100 deals at 2 reads every 30 minutes: 9,600 a day, within 50,000.
        assert_eq!(budgeted_period(half_hour, 100, 2, 50_000), half_hour);
        // 1,000 deals: 96,000 a day would pass it; every 57.6 minutes keeps to it.
        let period = budgeted_period(half_hour, 1_000, 2, 50_000);
        assert_eq!(period.as_secs(), 3_456);
        let per_day = 1_000.0 * 2.0 * 86_400.0 / period.as_secs_f64();
        assert!(per_day <= 50_000.0, "{per_day}");
        // A pack that reads nothing from Partner Central is not held back.
        assert_eq!(budgeted_period(half_hour, 1_000_000, 0, 1), half_hour);
    }

    #[test]
    fn a_scheduled_run_uses_the_deal_its_listing_read_while_fresh() {
        let at: jiff::Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
        let event = listed(at);
        let wanted = ["dealname".to_string(), "hubspot_owner_id".to_string()];
        let deal = deal_from_listing(&event, &wanted, at + jiff::SignedDuration::from_secs(60))
            .expect("fresh and complete");
        assert_eq!(deal.id, "40000000001");
        assert_eq!(deal.properties["dealname"], "Globex on AWS");
        assert_eq!(deal.properties["hubspot_owner_id"], serde_json::Value::Null);
        assert_eq!(deal.properties.len(), 2, "only what was asked");
        // Too old, or missing a property the run needs: read afresh.
        let late = at + jiff::SignedDuration::from_secs(11 * 60);
        assert!(deal_from_listing(&event, &wanted, late).is_none());
        let more = ["dealname".to_string(), "amount".to_string()];
        assert!(deal_from_listing(&event, &more, at).is_none());
        // Only a schedule's own listing counts.
        let mut forged = event.clone();
        forged.source = pcsync_engine::Source::Hubspot;
        assert!(deal_from_listing(&forged, &wanted, at).is_none());
        let mut other = event.clone();
        other.deal_id = Some("40000000002".into());
        assert!(deal_from_listing(&other, &wanted, at).is_none());
    }
}
