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
use pcsync_engine::Event;
use pcsync_engine::model::ScheduleScope;

use super::reload::RuleHost;
use crate::store::{Inbox, Store};

/// How often the poller looks for due schedules.
const TICK: Duration = Duration::from_secs(5);

/// How far back a `changed_opportunities` run looks before the previous run started,
/// for clock differences with AWS.
const OVERLAP: Duration = Duration::from_secs(60);

/// How many characters of property names a listing may ask for: CRM search refuses
/// a body over 3,000 characters, and the filters and sorts take some.
const MAX_LISTED: usize = 2_400;

/// A scheduled run's payload: the deal as the listing read it, and when.
pub fn listed_deal(deal: &Deal, now: jiff::Timestamp) -> serde_json::Value {
    serde_json::json!({
        "listed_at": now.to_string(),
        "deal": { "id": deal.id, "properties": deal.properties },
    })
}

/// The deal a scheduled run's payload carries ([`listed_deal`]), when it has every
/// property in `properties` and was listed less than [`LISTING_FRESH`] before `now`:
/// a run that waited longer reads the deal afresh.
pub fn deal_from_listing(
    event: &Event,
    properties: &[String],
    now: jiff::Timestamp,
) -> Option<pcsync_engine::DealSnapshot> {
    if event.source != pcsync_engine::Source::Schedule {
        return None;
    }
    let listed: jiff::Timestamp = event.payload["listed_at"].as_str()?.parse().ok()?;
    if now.duration_since(listed).unsigned_abs() > LISTING_FRESH {
        return None;
    }
    let deal = &event.payload["deal"];
    let id = deal["id"].as_str()?;
    if event.deal_id.as_deref() != Some(id) {
        return None;
    }
    let listed = deal["properties"].as_object()?;
    if !properties.iter().all(|p| listed.contains_key(p)) {
        return None;
    }
    Some(pcsync_engine::DealSnapshot {
        id: id.to_string(),
        properties: properties
            .iter()
            .map(|p| (p.clone(), listed[p].clone()))
            .collect(),
    })
}

/// Partner Central reads one scheduled run of a pack with these needs costs per deal,
/// against the daily read quota: the opportunity and its AWS summary. (Snapshot
/// listings and reads have no documented quota.)
pub fn reads_per_run(needs: &pcsync_engine::model::Needs) -> u64 {
    u64::from(needs.opportunity) + u64::from(needs.aws_summary)
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

/// Runs the packs' schedules until the task is dropped.
pub async fn run(
    rules: Arc<RuleHost>,
    store: Arc<dyn Store>,
    hubspot: Arc<HubSpotClient>,
    partner_central: PartnerCentralClient,
    first_run: FirstRun,
    scheduled_share: f64,
    first_pass: tokio::sync::oneshot::Sender<()>,
) {
    let mut first_pass = Some(first_pass);
    // Per pack and schedule: when it is next due (ms since the epoch), and for
    // `changed_opportunities` where the previous run started.
    let mut due: HashMap<String, i64> = HashMap::new();
    // Per schedule: the period it last ran at, when the read budget stretched it.
    let mut stretched: HashMap<String, Duration> = HashMap::new();
    let mut since: HashMap<String, jiff::Timestamp> = HashMap::new();
    loop {
        let now = jiff::Timestamp::now();
        let now_ms = now.as_millisecond();
        let set = rules.current();
        // The schedules' share of the day's reads, split between the linked_deals
        // schedules that read Partner Central.
        let reading = set
            .packs
            .iter()
            .filter(|p| p.pack.enabled)
            .flat_map(|p| {
                p.pack
                    .on
                    .as_slice()
                    .iter()
                    .filter_map(|t| t.schedule.as_ref())
                    .filter(|s| s.for_each == ScheduleScope::LinkedDeals)
                    .map(move |_| reads_per_run(&p.pack.needs))
            })
            .filter(|r| *r > 0)
            .count()
            .max(1) as u64;
        let limits = partner_central.daily_quotas().limits();
        let budget = (limits.reads as f64 * scheduled_share.clamp(0.0, 1.0)) as u64 / reading;
        for pack in set.packs.iter().filter(|p| p.pack.enabled) {
            for (i, trigger) in pack.pack.on.as_slice().iter().enumerate() {
                let Some(schedule) = &trigger.schedule else {
                    continue;
                };
                let mut every = schedule.every.0;
                let jitter = schedule.jitter.as_ref().map_or(every / 10, |j| j.0);
                let key = format!("{}#{i}:{}", pack.pack.name, every.as_millis());
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
                        let mut properties = vec![link.clone()];
                        properties
                            .extend(pack.pack.needs.deal.iter().filter(|p| *p != link).cloned());
                        if properties.iter().map(|p| p.len() + 3).sum::<usize>() > MAX_LISTED {
                            properties.truncate(1);
                        }
                        match hubspot.deals_with(link, &properties).await {
                            Ok(mut deals) => {
                                if !schedule.include_closed {
                                    match super::blocking(|| store.closed_opportunities()) {
                                        Ok(closed) => deals.retain(|d| {
                                            d.properties
                                                .get(link)
                                                .cloned()
                                                .flatten()
                                                .is_none_or(|o| !closed.contains(&o))
                                        }),
                                        Err(e) => {
                                            tracing::warn!(error = %e, "cannot read which opportunities are closed; running for all")
                                        }
                                    }
                                }
                                let reads = reads_per_run(&pack.pack.needs);
                                let period =
                                    budgeted_period(schedule.every.0, deals.len(), reads, budget);
                                if period > schedule.every.0 && stretched.get(&key) != Some(&period)
                                {
                                    tracing::warn!(
                                        pack = %pack.pack.name,
                                        deals = deals.len(),
                                        every_s = schedule.every.0.as_secs(),
                                        runs_every_s = period.as_secs(),
                                        budget_reads_per_day = budget,
                                        "the schedule runs less often to keep within its share of the daily read quota"
                                    );
                                }
                                stretched.insert(key.clone(), period);
                                every = period;
                                let events: Vec<(Event, String)> = deals
                                    .into_iter()
                                    .map(|d| {
                                        let opportunity = d.properties.get(link).cloned().flatten();
                                        let mut event = Event::schedule(
                                            &pack.pack.name,
                                            Some(d.id.clone()),
                                            opportunity,
                                            now,
                                        );
                                        event.payload = listed_deal(&d, now);
                                        let key = super::ingest::ordering_key(&event);
                                        (event, key)
                                    })
                                    .collect();
                                if !queue(&*store, &pack.pack.name, &events, now_ms) {
                                    continue;
                                }
                            }
                            Err(e) => {
                                tracing::warn!(pack = %pack.pack.name, error = %e, "scheduled run cannot list linked deals");
                                continue;
                            }
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
                                let events: Vec<(Event, String)> = changed
                                    .into_iter()
                                    .map(|(id, _)| {
                                        let event =
                                            Event::schedule(&pack.pack.name, None, Some(id), now);
                                        let key = super::ingest::ordering_key(&event);
                                        (event, key)
                                    })
                                    .collect();
                                if !queue(&*store, &pack.pack.name, &events, now_ms) {
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
        // Every schedule due at start-up has queued its work (or failed to).
        if let Some(done) = first_pass.take() {
            let _ = done.send(());
        }
        tokio::time::sleep(TICK).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        event.payload = listed_deal(&deal, at);
        // Through the inbox and back, as the worker gets it.
        Event::from_stored_json(&event.to_stored_json().unwrap()).unwrap()
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
        // Only a schedule's own payload counts.
        let mut forged = event.clone();
        forged.source = pcsync_engine::Source::Hubspot;
        assert!(deal_from_listing(&forged, &wanted, at).is_none());
        let mut other = event.clone();
        other.deal_id = Some("40000000002".into());
        assert!(deal_from_listing(&other, &wanted, at).is_none());
    }
}
