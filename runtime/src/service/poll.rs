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

use pcsync_adapters::hubspot::client::HubSpotClient;
use pcsync_adapters::partner_central::PartnerCentralClient;
use pcsync_engine::Event;
use pcsync_engine::model::ScheduleScope;

use super::reload::RuleHost;
use crate::store::Inbox;

/// How often the poller looks for due schedules.
const TICK: Duration = Duration::from_secs(5);

/// How far back a `changed_opportunities` run looks before the previous run started,
/// for clock differences with AWS.
const OVERLAP: Duration = Duration::from_secs(60);

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
    store: Arc<dyn Inbox>,
    hubspot: Arc<HubSpotClient>,
    partner_central: PartnerCentralClient,
    first_run: FirstRun,
    scheduled_share: f64,
) {
    // Per pack and schedule: when it is next due (ms since the epoch), and for
    // `changed_opportunities` where the previous run started.
    let mut due: HashMap<String, i64> = HashMap::new();
    let mut since: HashMap<String, jiff::Timestamp> = HashMap::new();
    loop {
        let now = jiff::Timestamp::now();
        let now_ms = now.as_millisecond();
        let set = rules.current();
        for pack in set.packs.iter().filter(|p| p.pack.enabled) {
            for (i, trigger) in pack.pack.on.as_slice().iter().enumerate() {
                let Some(schedule) = &trigger.schedule else {
                    continue;
                };
                let every = schedule.every.0;
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
                        match hubspot.deals_with(link, std::slice::from_ref(link)).await {
                            Ok(deals) => {
                                let events: Vec<(Event, String)> = deals
                                    .into_iter()
                                    .map(|d| {
                                        let opportunity = d.properties.get(link).cloned().flatten();
                                        let event = Event::schedule(
                                            &pack.pack.name,
                                            Some(d.id.clone()),
                                            opportunity,
                                            now,
                                        );
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
        tokio::time::sleep(TICK).await;
    }
}
