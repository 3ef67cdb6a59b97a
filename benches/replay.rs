//! `pcsync replay` throughput: a state file holding 100,000 recorded runs of the
//! shipped packs (summary polls, `Opportunity Updated` events and deal edits over
//! 2,000 opportunities, each planned by the shipped rules as the service would),
//! read back through the read-only connection and planned again with candidate
//! rules (a lower score threshold), on one thread. Prints runs per second for
//! BENCHMARKS.md; nothing here asserts a time.
//!
//!   cargo bench --bench replay
//!   cargo bench --bench replay -- --only unchanged     (one kind of pass, to profile)
//!
//! `PCSYNC_BENCH_RUNS=N` records N runs instead (a smaller corpus for callgrind);
//! `PCSYNC_BENCH_EACH=1` prints every pass.

use std::path::PathBuf;
use std::time::Instant;

use jiff::{SignedDuration, Timestamp};
use pcsync_engine::replay::{Summary, entries, replay};
use pcsync_engine::{Context, Event, load_rules, plan::plan_pack, plan::triggered_packs};
use pcsync_runtime::store::{RunFilter, RunLog, RunRecord, SqliteStore, read_runs};
use serde_json::{Value, json};

const RUNS: usize = 100_000;
const OPPORTUNITIES: usize = 2_000;
/// Timed passes over the record, per kind.
const ROUNDS: usize = 5;

fn rules(dir: &std::path::Path) -> pcsync_engine::RuleSet {
    let loaded = load_rules(&[dir.to_path_buf()]);
    assert!(!loaded.has_errors(), "packs load");
    loaded.value.expect("rule set")
}

fn main() {
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules");
    let rules_now = rules(&shipped);
    let dir = tempfile::tempdir().unwrap();
    let candidate = dir.path().join("rules");
    std::fs::create_dir_all(&candidate).unwrap();
    for entry in std::fs::read_dir(&shipped).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(
                candidate.join(path.file_name().unwrap()),
                text.replace("score_change: 15", "score_change: 10"),
            )
            .unwrap();
        }
    }
    let rules_candidate = rules(&candidate);
    let state = dir.path().join("state.db");
    let store = SqliteStore::open(&state).unwrap();

    // The record: per opportunity a deal, an opportunity and a summary whose score
    // drifts; each run planned by the shipped packs, as the worker would.
    let start: Timestamp = "2026-11-23T00:00:00Z".parse().unwrap();
    let made = Instant::now();
    let mut batch = Vec::new();
    let mut written = 0;
    let mut i = 0usize;
    let runs = std::env::var("PCSYNC_BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(RUNS);
    while written < runs {
        let n = i % OPPORTUNITIES;
        let round = i / OPPORTUNITIES;
        let at = start + SignedDuration::from_secs((i * 6) as i64);
        let id = format!("O{:07}", 1_000_000 + n);
        let deal = (40_000_000_000u64 + n as u64).to_string();
        let score = 40 + ((round * 7 + n) % 50) as i64;
        let context: Context = serde_json::from_value(json!({
            "deal": {"id": deal, "properties": {
                "dealname": format!("Deal {n} on AWS"), "dealstage": "qualifiedtobuy",
                "closedate": "2027-03-31T00:00:00.000Z", "amount": (1000 + round).to_string(),
                "description": "The customer needs to move its order system to AWS this year",
                "deal_currency_code": "USD", "aws_opportunity_id": id, "hubspot_owner_id": "77",
                "aws_synced_resources": ""}},
            "opportunity": {"Catalog": "Sandbox", "Id": id, "LastModifiedDate": "2026-11-01T00:00:00Z",
                "PartnerOpportunityIdentifier": deal,
                "LifeCycle": {"Stage": "Qualified", "ReviewStatus": "Approved", "TargetCloseDate": "2027-03-31"},
                "Project": {"Title": format!("Deal {n} on AWS"),
                    "CustomerBusinessProblem": "The customer needs to move its order system to AWS this year",
                    "ExpectedCustomerSpend": [{"Amount": "1000", "CurrencyCode": "USD", "Frequency": "Monthly", "TargetCompany": "AWS"}]},
                "Customer": {"Account": {"CompanyName": format!("Customer {n}"), "Industry": "Software and Internet",
                    "WebsiteUrl": "https://customer.example"}}},
            "aws_summary": {"Catalog": "Sandbox", "RelatedOpportunityId": id,
                "Insights": {"EngagementScore": "Medium", "OpportunityQuality": {"Score": score, "Trend": "Improving"}},
                "OpportunityTeam": []},
            "previous": {"smart-notifications": {
                "watches": {"score": score - 12, "engagement": "Medium", "review": "Approved", "seller": []},
                "marks": {"score": score - 12, "engagement": "Medium", "review": "Approved", "seller": []}}},
        }))
        .unwrap();
        let event = match i % 3 {
            0 => {
                let mut e =
                    Event::schedule("smart-notifications", Some(deal.clone()), Some(id.clone()), at);
                e.scheduled = Some(pcsync_engine::ScheduledRun {
                    listed_at: at,
                    deal: pcsync_engine::DealSnapshot {
                        id: deal.clone(),
                        properties: Default::default(),
                    },
                    reads: Some(vec![pcsync_engine::model::PartnerCentralRead::AwsSummary]),
                });
                e
            }
            1 => Event::from_value(
                &json!({"eventbridge": {"version": "0", "id": format!("e-{i}"), "source": "aws.partnercentral-selling",
                    "detail-type": "Opportunity Updated", "time": at.to_string(),
                    "detail": {"catalog": "Sandbox", "opportunity": {"identifier": id}}}}),
                at,
            )
            .unwrap(),
            _ => Event::from_value(
                &json!({"hubspot": {"subscriptionType": "deal.propertyChange", "objectId": deal.parse::<u64>().unwrap(),
                    "propertyName": "amount", "propertyValue": (1000 + round).to_string(), "eventId": i,
                    "occurredAt": at.as_millisecond(), "changeSource": "CRM_UI", "portalId": 62515, "appId": 54321}}),
                at,
            )
            .unwrap(),
        };
        for pack in triggered_packs(&rules_now, &event) {
            let plan = plan_pack(pack, &rules_now, &event, &context, at);
            let mut ctx = serde_json::to_value(&context).unwrap();
            let mut take = |m: &str| ctx.as_object_mut().and_then(|c| c.remove(m));
            let (opportunity, aws_summary) = (take("opportunity"), take("aws_summary"));
            batch.push(RunRecord {
                event_id: event.id.clone(),
                pack: plan.pack.clone(),
                at,
                deal_id: Some(deal.clone()),
                event: serde_json::to_string(&event).unwrap(),
                context: ctx,
                opportunity,
                aws_summary,
                entries: serde_json::to_string(&entries(&plan)).unwrap(),
            });
            written += 1;
        }
        if batch.len() >= 5_000 {
            store.record_runs(&batch).unwrap();
            batch.clear();
        }
        i += 1;
    }
    store.record_runs(&batch).unwrap();
    drop(store);
    let size = std::fs::metadata(&state).unwrap().len()
        + std::fs::metadata(state.with_extension("db-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    eprintln!(
        "replay: {written} runs recorded in {:.1?} ({:.0} MB)",
        made.elapsed(),
        size as f64 / 1e6
    );

    // Each pass is timed ROUNDS times, interleaved, and reported as the best and
    // the median: a shared machine's other tenants only ever slow a pass down.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1));
    let passes: [(&str, Option<&pcsync_engine::RuleSet>); 3] = [
        ("reading only", None),
        ("unchanged", Some(&rules_now)),
        ("score_change 10", Some(&rules_candidate)),
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); passes.len()];
    for _ in 0..ROUNDS {
        for (k, (name, rules)) in passes.iter().enumerate() {
            if only.is_some_and(|o| o != name) {
                continue;
            }
            let began = Instant::now();
            let mut summary = Summary::default();
            let mut bytes = 0u64;
            let read = read_runs(&state, &RunFilter::default(), |run| match rules {
                Some(rules) => summary.add(&replay(run, rules)),
                None => bytes += run.entries_json.len() as u64,
            })
            .unwrap();
            let took = began.elapsed();
            assert_eq!(read as usize, written, "every run read");
            times[k].push(read as f64 / took.as_secs_f64());
            if std::env::var_os("PCSYNC_BENCH_EACH").is_some() {
                eprintln!("  {name}: {:.0} runs/s", read as f64 / took.as_secs_f64());
            }
            if times[k].len() == 1 {
                let by_kind: Value = serde_json::to_value(&summary.by_kind).unwrap();
                match rules {
                    None => eprintln!("{name}: {:.0} MB of plan lines", bytes as f64 / 1e6),
                    Some(_) => eprintln!(
                        "{name}: {} changed, notifications {} -> {}; {by_kind}",
                        summary.changed, summary.notifications_before, summary.notifications_after
                    ),
                }
            }
        }
    }
    for ((name, _), mut rates) in passes.iter().zip(times) {
        if rates.is_empty() {
            continue;
        }
        rates.sort_by(f64::total_cmp);
        println!(
            "replay ({name}): {written} runs, best {:.0} runs/s, median {:.0} (of {})",
            rates[rates.len() - 1],
            rates[rates.len() / 2],
            rates.len()
        );
    }
}
