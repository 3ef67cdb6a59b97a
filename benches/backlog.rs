//! A backlog draining: 100,000 deal edits over 1,000 linked deals, already in the
//! inbox when the real `pcsync serve` starts against the sandbox, as after a HubSpot
//! import or a workflow over every deal that ran while pcsync was behind. The edits
//! arrived over ten minutes (so a deal's edits are seconds apart, far more than one
//! coalescing window), each deal's last one is what its deal holds.
//!
//! The floor is one run per deal: one read of the deal, one of the opportunity and
//! one UpdateOpportunity each. It prints the drain time (until the inbox is empty and
//! every opportunity holds its deal's last amount), the runs the deal-update-sync
//! pack made, the reads and writes the sandbox answered, and the time the write
//! quota alone needs; BENCHMARKS.md records them. Nothing here asserts a time.
//!
//!   cargo bench --bench backlog                       (100,000 events, 1,000 deals)
//!   cargo bench --bench backlog -- 20000 200          (other sizes)
//!   cargo bench --bench backlog -- --scale 1          (AWS's default quotas)
//!
//! `--scale` (10 unless told) multiplies Partner Central's per-second quotas on both
//! sides, as an account whose quotas AWS raised: at AWS's defaults (1 write a
//! second) the thousand writes alone take 17 minutes, and the run would measure the
//! quota rather than pcsync. The daily quotas stay AWS's.
//!
//!   cargo bench --bench backlog -- --soak 600         (a soak: 300 edits/s, 8 deals)
//!
//! `--soak SECONDS` instead sends 300 signed edits a second over 8 deals as HubSpot's
//! webhooks carry them (batches of 100), at AWS's default quotas unless `--scale`
//! says otherwise, and prints every 30 s the inbox's backlog, the service's open
//! descriptors and its resident memory, then how long the drain took after the
//! last edit.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;

use common::{
    free_port, get, opportunities_hold_amounts, post_signed, seed_linked, serve_for_bench,
};
use pcsync_engine::Event;
use pcsync_runtime::store::ordering_key;
use pcsync_runtime::store::{Inbox, SqliteStore};
use pcsync_sandbox::{Options, Quotas, Sandbox};
use serde_json::json;

/// Over how long the queued edits arrived.
const ARRIVALS: Duration = Duration::from_secs(600);

fn main() {
    let mut sizes = Vec::new();
    let mut scale = None;
    let mut soak = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--scale" => {
                scale = Some(
                    args.next()
                        .and_then(|s| s.parse::<u32>().ok())
                        .expect("--scale takes a number"),
                )
            }
            "--soak" => {
                soak = Some(
                    args.next()
                        .and_then(|s| s.parse::<u64>().ok())
                        .expect("--soak takes seconds"),
                )
            }
            "--bench" => {}
            other => sizes.push(other.parse::<usize>().expect("sizes are numbers")),
        }
    }
    let events = sizes.first().copied().unwrap_or(100_000);
    let deals = sizes.get(1).copied().unwrap_or(1_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    match soak {
        Some(seconds) => runtime.block_on(soak_run(seconds, scale.unwrap_or(1))),
        None => runtime.block_on(run(events, deals, scale.unwrap_or(10))),
    }
}

/// The sandbox with Partner Central's per-second quotas `scale` times AWS's.
async fn sandbox(scale: u32) -> Sandbox {
    let quotas = Quotas {
        reads_per_second: Some(10 * scale),
        writes_per_second: Some(scale),
        ..Quotas::default()
    };
    Sandbox::demo_on_loopback(Options {
        partner_central_quotas: quotas,
        ..Options::default()
    })
    .await
    .unwrap()
}

/// pcsync's config against `sb`, pacing at `scale` times AWS's quotas; the config's
/// path and the service's URL.
fn write_config(
    sb: &Sandbox,
    dir: &std::path::Path,
    state: &std::path::Path,
    scale: u32,
) -> (std::path::PathBuf, String) {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let config = dir.join("pcsync.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\npublic_url: {url}\nrules: {rules}\nstate: {state}\n\
             hubspot:\n  base_url: {hs}\n  token: sandbox-token\n  client_secret: {SECRET}\n  app_id: 777\n\
             partner_central:\n  catalog: Sandbox\n  endpoint_url: {pc}\n\
             \x20 rate: {{ reads_per_second: {reads}, writes_per_second: {writes} }}\n",
            rules = concat!(env!("CARGO_MANIFEST_DIR"), "/rules"),
            state = state.display(),
            hs = sb.hubspot_url,
            pc = sb.partner_central_url,
            reads = 10 * scale,
            writes = scale,
        ),
    )
    .unwrap();
    (config, url)
}

/// The HubSpot app secret the webhooks are signed with.
const SECRET: &str = "bench-secret";

async fn run(events: usize, deals: usize, scale: u32) {
    let sb = sandbox(scale).await;
    // Edit `e` is about deal `e % deals` and sets its amount to 2,000 + e.
    let last = |i: usize| 2_000 + i + deals * ((events - 1 - i) / deals);
    let pairs = seed_linked(&sb, "backlog", "Backlog", deals, |i| last(i).to_string());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");

    // The backlog, committed to the inbox before the service starts, in arrival
    // order over the last ten minutes.
    let queuing = Instant::now();
    {
        let store = SqliteStore::open(&state).unwrap();
        let end = jiff::Timestamp::now().as_millisecond();
        let start = end - ARRIVALS.as_millis() as i64;
        // A round of edits over every deal arrives at one moment, the rounds spread
        // over the ten minutes.
        for chunk in (0..events).collect::<Vec<_>>().chunks(deals) {
            let at = start + (chunk[0] as i64 * ARRIVALS.as_millis() as i64) / events as i64;
            let batch: Vec<(Event, String)> = chunk
                .iter()
                .map(|&e| {
                    let (deal, _) = &pairs[e % deals];
                    let event = Event::from_hubspot(&json!({
                        "subscriptionType": "deal.propertyChange",
                        "objectId": deal.parse::<u64>().unwrap(),
                        "propertyName": "amount", "propertyValue": (2_000 + e).to_string(),
                        "eventId": 1_000_000 + e, "occurredAt": at, "changeSource": "IMPORT",
                    }))
                    .unwrap();
                    let key = ordering_key(&event);
                    (event, key)
                })
                .collect();
            store.accept(&batch, at).unwrap();
        }
    }
    eprintln!(
        "backlog: {events} events over {deals} deals queued in {:.1?}",
        queuing.elapsed()
    );

    let (config, url) = write_config(&sb, dir.path(), &state, scale);
    let began = Instant::now();
    let mut service = serve_for_bench(&config, &url, "warn", None).await;
    let http = reqwest::Client::new();
    let want: BTreeMap<&str, String> = pairs
        .iter()
        .enumerate()
        .map(|(i, (_, o))| (o.as_str(), last(i).to_string()))
        .collect();
    loop {
        let current =
            opportunities_hold_amounts(&sb, want.iter().map(|(id, amount)| (*id, amount.as_str())));
        let health = get(&http, &format!("{url}/healthz")).await;
        let drained = health.as_ref().is_some_and(|h| {
            h["inbox"]["pending"] == 0 && h["inbox"]["running"] == 0 && h["inbox"]["deferred"] == 0
        });
        if current && drained {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(7_200),
            "the backlog did not drain: {health:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = began.elapsed();
    let calls = sb.journal.calls();
    let count = |service: &str, op: &str| {
        calls
            .iter()
            .filter(|c| c.service == service && c.operation.starts_with(op) && c.status < 300)
            .count()
    };
    let metrics = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let runs: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("pcsync_plans_total") && l.contains("deal-update-sync"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let health = get(&http, &format!("{url}/healthz")).await.unwrap();
    let writes = count("partnercentral", "UpdateOpportunity");
    println!(
        "backlog: {events} queued events over {deals} deals drained in {took:.1?}; \
         deal-update-sync runs {runs} (floor {deals}); UpdateOpportunity {writes} (floor {deals}; \
         the write quota alone needs {:.0} s); GetOpportunity {}; GetAwsOpportunitySummary {}; \
         HubSpot deal reads {} (HubSpot calls {}, at its 100 per 10 s); throttles {}; dead letters {}",
        writes as f64 / (0.95 * f64::from(scale)),
        count("partnercentral", "GetOpportunity"),
        count("partnercentral", "GetAwsOpportunitySummary"),
        count("hubspot", "GET /crm/v3/objects/deals/"),
        calls.iter().filter(|c| c.service == "hubspot").count(),
        calls.iter().filter(|c| c.status == 429).count(),
        health["inbox"]["dead"],
    );
    let _ = service.kill();
    let _ = service.wait();
}

/// The service's open descriptors and resident memory (KiB), from /proc.
fn process_use(pid: u32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0);
    (fds, rss)
}

/// Edits at 300 a second over 8 deals for `seconds`, sent as HubSpot sends them.
async fn soak_run(seconds: u64, scale: u32) {
    const DEALS: usize = 8;
    const PER_SECOND: usize = 300;
    let sb = sandbox(scale).await;
    let pairs = seed_linked(&sb, "backlog", "Backlog", DEALS, |_| "1000".to_string());
    let dir = tempfile::tempdir().unwrap();
    let (config, url) = write_config(&sb, dir.path(), &dir.path().join("state.db"), scale);
    let mut service = serve_for_bench(&config, &url, "error", None).await;
    let pid = service.id();
    let http = reqwest::Client::new();
    let hook = format!("{url}/webhooks/hubspot");
    let health = format!("{url}/healthz");
    let pending = |h: &Option<serde_json::Value>| {
        h.as_ref()
            .and_then(|h| h["inbox"]["pending"].as_u64())
            .unwrap_or(0)
    };
    let began = Instant::now();
    let mut next = 0usize;
    let mut last = [0usize; DEALS];
    let mut ticker = tokio::time::interval(Duration::from_millis(1_000 / 3));
    println!("soak: t (s), pending, open descriptors, RSS (MiB)");
    while began.elapsed() < Duration::from_secs(seconds) {
        ticker.tick().await;
        // A third of a second's edits in one webhook request.
        let now = jiff::Timestamp::now().as_millisecond();
        let events: Vec<serde_json::Value> = (0..PER_SECOND / 3)
            .map(|_| {
                let e = next;
                next += 1;
                let i = e % DEALS;
                last[i] = 2_000 + e;
                json!({"subscriptionType": "deal.propertyChange",
                    "objectId": pairs[i].0.parse::<u64>().unwrap(), "propertyName": "amount",
                    "propertyValue": last[i].to_string(), "eventId": 1_000_000 + e,
                    "occurredAt": now, "portalId": 1, "appId": 1})
            })
            .collect();
        sb.hubspot.with_store(|s| {
            for (i, (deal, _)) in pairs.iter().enumerate() {
                if let Some(d) = s.table("deals").get_mut(deal) {
                    d.properties.insert("amount".into(), last[i].to_string());
                }
            }
        });
        // A refusal (the connection cap, a full inbox) is part of what a soak shows.
        let body = serde_json::to_string(&events).unwrap();
        let _ = post_signed(&http, &hook, SECRET, &body).await;
        let t = began.elapsed().as_secs();
        if next % (30 * PER_SECOND) < PER_SECOND / 3 {
            let (fds, rss) = process_use(pid);
            let h = get(&http, &health).await;
            println!("soak: {t}, {}, {fds}, {}", pending(&h), rss / 1024);
        }
    }
    let sent = began.elapsed();
    let draining = Instant::now();
    loop {
        let h = get(&http, &health).await;
        if pending(&h) == 0 && h.as_ref().is_some_and(|h| h["inbox"]["running"] == 0) {
            break;
        }
        assert!(draining.elapsed() < Duration::from_secs(7_200), "no drain");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let calls = sb.journal.calls();
    let count = |op: &str| {
        calls
            .iter()
            .filter(|c| c.operation == op && c.status < 300)
            .count()
    };
    let (fds, rss) = process_use(pid);
    println!(
        "soak: {next} edits over {DEALS} deals in {sent:.0?}, drained {:.1?} after the last; \
         UpdateOpportunity {}, GetOpportunity {} ({:.2} reads/s); throttles {}; \
         {fds} descriptors and {} MiB at the end",
        draining.elapsed(),
        count("UpdateOpportunity"),
        count("GetOpportunity"),
        count("GetOpportunity") as f64 / (sent + draining.elapsed()).as_secs_f64(),
        calls.iter().filter(|c| c.status == 429).count(),
        rss / 1024,
    );
    let _ = service.kill();
    let _ = service.wait();
}
