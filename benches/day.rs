//! A simulated day against Partner Central's API budget: the real `pcsync serve`
//! with the shipped packs, against the sandbox, with 1,000 and then 10,000 linked
//! deals. The day is compressed `--scale` times (288: 24 h in 300 s): the packs' schedules
//! and the per-second limits of both APIs (the sandbox's and pcsync's pacing) are
//! scaled together, while the daily quotas stay as AWS sets them (100,000 reads and
//! 10,000 writes), since the run is one day of them.
//!
//! A warm-up before the day is not measured: the opportunities' first sightings,
//! the weekly snapshot pass (each revision read once, ever) and a first poll round,
//! until the inbox is empty.
//!
//! During the day AWS rescores opportunities (most with an `Opportunity Updated`
//! event, some with the event lost, as EventBridge delivery is best effort), approves
//! submitted ones, and sellers edit deal amounts in HubSpot. At the end it prints, for
//! BENCHMARKS.md: the reads and writes pcsync counted per quota class against the
//! quota, the calls per operation the sandbox answered, throttles, how old the open
//! opportunities' AWS summaries got (p50 and p95, sampled through the day, in
//! simulated hours), and the time from a rescore to its task (with its event, in
//! real seconds; with the event lost, in simulated minutes). Nothing here asserts a
//! time.
//!
//!   cargo bench --bench day                          (1,000 and 10,000 deals)
//!   cargo bench --bench day -- 2000                  (other sizes)
//!   cargo bench --bench day -- 10000 --scale 96      (a day in 15 minutes)
//!
//! The compression multiplies the load on one machine that runs both pcsync and
//! the sandbox (whose HubSpot search scans every deal, as an index-less fake
//! does): at 10,000 deals and 288 times, the two saturate two cores, and the run
//! measures the machine rather than the budget. A smaller `--scale` keeps the
//! day's arithmetic (a day of quota, schedules and limits scaled alike) and only
//! takes longer.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;

use common::{
    SendOk, copy_dir, edit_deal, edit_pack, free_port, get, launch_opportunity, opportunity_input,
    serve_for_bench,
};
use pcsync_sandbox::{HubSpotOptions, Options, Quotas, Sandbox};
use serde_json::{Value, json};

/// How much faster than real time the day runs, unless `--scale` says otherwise.
const SCALE: u32 = 288;

/// What becomes of the seeded opportunities, in tenths: never submitted, submitted,
/// approved, launched (approved, then closed).
const PENDING: usize = 1;
const SUBMITTED: usize = 1;
const LAUNCHED: usize = 1;

/// Per simulated day, as shares of the deals: rescores AWS announces, rescores whose
/// event is lost, approvals of submitted opportunities, and deal amount edits.
const RESCORED: f64 = 0.05;
const RESCORED_SILENTLY: f64 = 0.01;
const APPROVED: f64 = 0.02;
const EDITED: f64 = 0.02;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Pending,
    Submitted,
    Approved,
    Launched,
}

struct Linked {
    deal: String,
    opportunity: String,
    kind: Kind,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scale = args
        .iter()
        .position(|a| a == "--scale")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(SCALE);
    let sizes: Vec<usize> = args
        .iter()
        .enumerate()
        .filter(|(i, _)| *i == 0 || args[i - 1] != "--scale")
        .filter_map(|(_, a)| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1_000, 10_000]
    } else {
        sizes
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for deals in sizes {
        runtime.block_on(day(deals, scale));
    }
}

/// `n` opportunities in the mix above, each with a scored AWS summary once
/// submitted, and their linked deals.
fn seed(sb: &Sandbox, n: usize) -> Vec<Linked> {
    let kind = |i: usize| match i % 10 {
        x if x < PENDING => Kind::Pending,
        x if x < PENDING + SUBMITTED => Kind::Submitted,
        x if x < 10 - LAUNCHED => Kind::Approved,
        _ => Kind::Launched,
    };
    let opportunities: Vec<(String, Kind)> = sb.partner_central.with_store(|s| {
        let created: Vec<(String, Kind)> = (0..n)
            .map(|i| {
                let o = s
                    .create(&opportunity_input("day", "Day", i, "Qualified"))
                    .expect("valid opportunity");
                let id = o["Id"].as_str().unwrap().to_string();
                if kind(i) != Kind::Pending {
                    s.associate(&json!({"Catalog": "Sandbox", "OpportunityIdentifier": id,
                        "RelatedEntityType": "Solutions", "RelatedEntityIdentifier": "S-1234567"}))
                        .expect("the default solution exists");
                    s.start_engagement(
                        &json!({"Catalog": "Sandbox", "ClientToken": format!("day-submit-{i}"),
                        "Identifier": id, "AwsSubmission": {"InvolvementType": "Co-Sell"}}),
                    )
                    .expect("valid submission");
                }
                (id, kind(i))
            })
            .collect();
        s.settle_tasks(i64::MAX);
        for (i, (id, kind)) in created.iter().enumerate() {
            if matches!(kind, Kind::Approved | Kind::Launched) {
                s.set_review(id, "Approved", None, None).unwrap();
            }
            if *kind != Kind::Pending {
                s.edit_summary(id, |v| {
                    v["Insights"]["OpportunityQuality"] =
                        json!({ "Score": 30 + (i % 40) as i64, "Trend": "No Change" });
                })
                .unwrap();
            }
            if *kind == Kind::Launched {
                launch_opportunity(s, id);
            }
        }
        // Nothing listens yet; the seeding's events go nowhere.
        s.take_events();
        created
    });
    sb.hubspot.with_store(|s| {
        s.add_owner("7001", "owner@example.com", "Dana", "Owner");
        opportunities
            .into_iter()
            .enumerate()
            .map(|(i, (opportunity, kind))| {
                let deal = s.insert(
                    "deals",
                    BTreeMap::from([
                        ("dealname".to_string(), format!("Day {i} on AWS")),
                        ("dealstage".to_string(), "qualifiedtobuy".to_string()),
                        ("amount".to_string(), "1000".to_string()),
                        ("deal_currency_code".to_string(), "USD".to_string()),
                        ("hubspot_owner_id".to_string(), "7001".to_string()),
                        ("aws_opportunity_id".to_string(), opportunity.clone()),
                    ]),
                );
                Linked {
                    deal: deal.id,
                    opportunity,
                    kind,
                }
            })
            .collect()
    })
}

/// The shipped packs with their schedules `scale` times faster.
fn scaled_rules(dir: &std::path::Path, scale: u32) -> std::path::PathBuf {
    let rules = dir.join("rules");
    copy_dir(
        &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules"),
        &rules,
    );
    let scaled = |d: Duration| format!("every: {}ms,", d.as_millis() / u128::from(scale));
    let h = |n: u64| Duration::from_secs(n * 3600);
    for (pack, every, period) in [
        (
            "smart-notifications.yaml",
            "every: 30m,",
            Duration::from_secs(1800),
        ),
        ("smart-notifications.yaml", "every: 6h,", h(6)),
        ("resource-snapshot-sync.yaml", "every: 1h,", h(1)),
        ("resource-snapshot-sync.yaml", "every: 7d,", h(168)),
    ] {
        edit_pack(&rules, pack, every, &scaled(period));
    }
    // The weekly pass runs at start, inside the warm-up, not at a random hour of the
    // measured day.
    edit_pack(
        &rules,
        "resource-snapshot-sync.yaml",
        "for_each: linked_deals }",
        "for_each: linked_deals, jitter: 0s }",
    );
    rules
}

/// Percentiles of `values` (sorted here).
fn percentiles(values: &mut [f64]) -> (f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.95))
}

async fn day(n: usize, scale: u32) {
    // One simulated day, in real time.
    let day_length = Duration::from_secs(86_400 / u64::from(scale));
    // Per second, scaled; per day, AWS's own: the run is one day.
    let quotas = Quotas {
        reads_per_second: Some(10 * scale),
        writes_per_second: Some(scale),
        ..Quotas::default()
    };
    let hubspot = HubSpotOptions {
        rate_limit_per_10s: Some(100 * scale),
        search_per_second: Some(5 * scale),
        ..HubSpotOptions::default()
    };
    let sb = Sandbox::on_loopback(Options {
        partner_central_quotas: quotas,
        hubspot,
    })
    .await
    .unwrap();
    // The demo's custom deal properties (the packs write them), then the day's deals.
    pcsync_sandbox::demo::seed(&sb);
    let seeding = Instant::now();
    let linked = seed(&sb, n);
    eprintln!("day: {n} deals seeded in {:.1?}", seeding.elapsed());
    let topic = sb.sns.create_topic("pcsync-notifications");
    let dir = tempfile::tempdir().unwrap();
    let rules = scaled_rules(dir.path(), scale);
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let health_url = format!("{url}/healthz");
    let config = dir.path().join("pcsync.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\npublic_url: {url}\nrules: {rules}\nstate: {state}\n\
             hubspot:\n  base_url: {hs}\n  token: sandbox-token\n  client_secret: bench-secret\n  app_id: 777\n\
             \x20 rate_limit_per_10s: {hs_rate}\n  search_per_second: {hs_search}\n\
             partner_central:\n  catalog: Sandbox\n  endpoint_url: {pc}\n\
             \x20 rate: {{ reads_per_second: {reads}, writes_per_second: {writes} }}\n\
             \x20 daily_quota: {{ reads: {daily_reads}, writes: {daily_writes} }}\n\
             notifications:\n  sns_topic_arn: {topic}\n  sns_endpoint_url: {sns}\n\
             eventbridge:\n  shared_secret: events-secret-0123456789\n",
            rules = rules.display(),
            state = dir.path().join("state.db").display(),
            hs = sb.hubspot_url,
            pc = sb.partner_central_url,
            sns = sb.sns_url,
            hs_rate = 100 * scale,
            hs_search = 5 * scale,
            reads = 10 * scale,
            writes = scale,
            // pcsync's budget arithmetic is per 24 real hours: a simulated day's
            // quota is scale times that. The sandbox keeps AWS's own daily numbers,
            // which the run (one simulated day) must stay under.
            daily_reads = 100_000 * u64::from(scale),
            daily_writes = 10_000 * u64::from(scale),
        ),
    )
    .unwrap();
    let mut service = serve_for_bench(&config, &url, "error", None).await;
    let http = reqwest::Client::new();
    for (target, body) in [
        (
            format!("{}/_sandbox/hubspot/webhooks", sb.hubspot_url),
            json!({ "url": format!("{url}/webhooks/hubspot"),
                    "client_secret": "bench-secret", "app_id": 777 }),
        ),
        (
            format!("{}/_sandbox/partnercentral/events", sb.partner_central_url),
            json!({ "url": format!("{url}/events/partnercentral"),
                    "secret": "events-secret-0123456789" }),
        ),
    ] {
        http.post(target).json(&body).send_ok().await;
    }

    // Warm-up, not measured: the first sightings (each opportunity's baseline), the
    // weekly snapshot pass (each revision read once, ever) and a first round of the
    // summary poll, until the inbox is empty: the day is a day in steady state.
    let warming = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle = get(&http, &health_url)
            .await
            .is_some_and(|h| h["inbox"]["pending"] == 0 && h["inbox"]["running"] == 0);
        if (idle && warming.elapsed() > day_length / 4)
            || warming.elapsed() > Duration::from_secs(1_800)
        {
            break;
        }
    }
    let warm = get(&http, &health_url).await.unwrap();
    let warm_calls = sb.journal.calls().len();
    eprintln!("day: warmed up in {:.0?}", warming.elapsed());

    // The day: each real second, its share of the day's changes, spread over the
    // deals in turn.
    let day_began = Instant::now();
    let began_at = jiff::Timestamp::now();
    let scored: Vec<&Linked> = linked
        .iter()
        .filter(|l| matches!(l.kind, Kind::Approved | Kind::Submitted))
        .collect();
    let submitted: Vec<&Linked> = linked
        .iter()
        .filter(|l| l.kind == Kind::Submitted)
        .collect();
    let editable: Vec<&Linked> = linked.iter().filter(|l| l.kind == Kind::Pending).collect();
    let per_second = |share: f64| share * n as f64 / day_length.as_secs_f64();
    let mut owed = [0.0f64; 4];
    let mut next = [0usize; 4];
    // When each rescore was made, and whether its event was delivered.
    let mut rescores: HashMap<String, (jiff::Timestamp, bool)> = HashMap::new();
    let mut ages: Vec<(f64, f64)> = Vec::new();
    let mut second = 0u64;
    while day_began.elapsed() < day_length {
        second += 1;
        for (slot, share) in [RESCORED, RESCORED_SILENTLY, APPROVED, EDITED]
            .into_iter()
            .enumerate()
        {
            owed[slot] += per_second(share);
        }
        while owed[0] >= 1.0 || owed[1] >= 1.0 {
            let silent = owed[0] < 1.0;
            owed[usize::from(silent)] -= 1.0;
            let l = scored[next[0] % scored.len()];
            next[0] += 1;
            if rescores.contains_key(&l.deal) {
                continue;
            }
            // +20: past the pack's threshold of 15, so a task follows.
            sb.partner_central.with_store(|s| {
                s.edit_summary(&l.opportunity, |v| {
                    let now = v["Insights"]["OpportunityQuality"]["Score"]
                        .as_i64()
                        .unwrap_or(30);
                    v["Insights"]["OpportunityQuality"] =
                        json!({ "Score": (now + 20).min(100), "Trend": "Improving" });
                })
                .unwrap();
                if silent {
                    s.take_events();
                }
            });
            rescores.insert(l.deal.clone(), (jiff::Timestamp::now(), !silent));
        }
        while owed[2] >= 1.0 && next[2] < submitted.len() {
            owed[2] -= 1.0;
            let l = submitted[next[2]];
            next[2] += 1;
            sb.partner_central.with_store(|s| {
                s.set_review(&l.opportunity, "Approved", None, None)
                    .unwrap()
            });
        }
        while owed[3] >= 1.0 {
            owed[3] -= 1.0;
            let l = editable[next[3] % editable.len()];
            next[3] += 1;
            edit_deal(
                &http,
                &sb,
                &l.deal,
                json!({ "amount": (1000 + next[3]).to_string() }),
            )
            .await;
        }
        // After the first poll period, how old the open summaries are.
        if second.is_multiple_of(2)
            && let Some(h) = get(&http, &health_url).await
            && let (Some(p50), Some(p95)) = (
                h["aws_summaries"]["p50_s"].as_f64(),
                h["aws_summaries"]["p95_s"].as_f64(),
            )
        {
            ages.push((p50, p95));
        }
        let target = Duration::from_secs(second);
        if let Some(rest) = target.checked_sub(day_began.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
    // Let the day's last work land (a poll period at most).
    tokio::time::sleep(day_length / 4).await;
    let h = get(&http, &health_url).await.unwrap();
    let _ = service.kill();
    let _ = service.wait();

    // What it cost.
    let calls: Vec<_> = sb.journal.calls().into_iter().skip(warm_calls).collect();
    let mut operations: BTreeMap<&str, usize> = BTreeMap::new();
    for c in calls.iter().filter(|c| c.service == "partnercentral") {
        *operations.entry(c.operation.as_str()).or_default() += 1;
    }
    let mut throttled: BTreeMap<&str, usize> = BTreeMap::new();
    for c in calls
        .iter()
        .filter(|c| c.service == "partnercentral" && c.status == 429)
    {
        *throttled.entry(c.operation.as_str()).or_default() += 1;
    }
    let throttles: usize = throttled.values().sum();
    let hubspot_429 = calls
        .iter()
        .filter(|c| c.service == "hubspot" && c.status == 429)
        .count();
    let quota = |class: &str, limit: u32| {
        let used = |h: &Value| {
            h["partner_central_quota"][class]["used_24h"]
                .as_u64()
                .unwrap_or(0)
        };
        format!("{} of {limit}", used(&h) - used(&warm))
    };
    // Staleness, in simulated hours.
    let hours = |s: f64| s * f64::from(scale) / 3600.0;
    let (mut p50s, mut p95s): (Vec<f64>, Vec<f64>) = ages.iter().copied().unzip();
    let (typical_p50, _) = percentiles(&mut p50s);
    let (typical_p95, _) = percentiles(&mut p95s);
    let worst_p95 = p95s.iter().copied().fold(f64::NAN, f64::max);
    // Rescore to task: the first task on each rescored deal after the rescore.
    let tasks: Vec<(String, jiff::Timestamp, String)> = sb.hubspot.with_store(|s| {
        s.table("tasks")
            .values()
            .filter_map(|t| {
                let deal = t.associations.get("deals")?.first()?.clone();
                let subject = t
                    .properties
                    .get("hs_task_subject")
                    .cloned()
                    .unwrap_or_default();
                Some((deal, t.created_at, subject))
            })
            .collect()
    });
    let (mut announced, mut silent, mut missed) = (Vec::new(), Vec::new(), 0usize);
    for (deal, (at, with_event)) in &rescores {
        let first = tasks
            .iter()
            .filter(|(d, created, subject)| d == deal && created >= at && subject.contains("Score"))
            .map(|(_, created, _)| created.duration_since(*at).as_secs_f64())
            .fold(f64::INFINITY, f64::min);
        match (first.is_finite(), with_event) {
            (false, _) => missed += 1,
            (true, true) => announced.push(first),
            (true, false) => silent.push(first),
        }
    }
    let (event_p50, event_p95) = percentiles(&mut announced);
    let (silent_p50, silent_p95) = percentiles(&mut silent);
    let minutes = |s: f64| s * f64::from(scale) / 60.0;
    println!(
        "day: {n} linked deals, a day in {:.0?} ({}x), from {began_at}",
        day_length, scale
    );
    println!(
        "  quota (pcsync's count): reads {}, writes {}",
        quota("read", 100_000),
        quota("write", 10_000)
    );
    println!(
        "  throttles: Partner Central {throttles} {throttled:?}, HubSpot {hubspot_429}; dead letters {}",
        h["inbox"]["dead"]
    );
    println!("  Partner Central calls: {operations:?}");
    println!(
        "  open summaries' age (simulated h): p50 {:.1}, p95 {:.1} typical, p95 {:.1} at worst; at the end {}",
        hours(typical_p50),
        hours(typical_p95),
        hours(worst_p95),
        h["aws_summaries"]
    );
    println!(
        "  rescore to task: with its event p50 {:.2} s, p95 {:.2} s real ({} rescores); \
         event lost p50 {:.0} min, p95 {:.0} min simulated ({}); no task {missed}",
        event_p50,
        event_p95,
        announced.len(),
        minutes(silent_p50),
        minutes(silent_p95),
        silent.len(),
    );
}
