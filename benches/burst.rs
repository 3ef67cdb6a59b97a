//! A burst of deal edits against Partner Central's write quota: 1,000 amount edits
//! spread over 200 linked deals (five rounds, each deal once a round), sent as fast
//! as HubSpot's webhooks carry them, into the real `pcsync serve` against the sandbox
//! with AWS's quotas on (1 write and 10 reads a second). The floor is 200
//! UpdateOpportunity calls (one per deal, the edits of a deal coalesced) and 200 s.
//! Prints the writes, the throttles and the wall time until every opportunity holds
//! its deal's last amount; BENCHMARKS.md records them. Nothing here asserts a time.
//!
//!   cargo bench --bench burst

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;

use common::{
    SendOk, edit_deal, free_port, get, opportunities_hold_amounts, seed_linked, serve_for_bench,
};
use pcsync_sandbox::{Options, Sandbox};
use serde_json::json;

const DEALS: usize = 200;
const ROUNDS: usize = 5;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let sb = Sandbox::on_loopback(Options::default()).await.unwrap();
    // The demo's custom deal properties (the follow-ups write them) and its deals.
    pcsync_sandbox::demo::seed(&sb);
    let pairs = seed_linked(&sb, "burst", "Burst", DEALS, |_| "1000".to_string());
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let config = dir.path().join("pcsync.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\npublic_url: {url}\nrules: {rules}\nstate: {state}\n\
             hubspot:\n  base_url: {hs}\n  token: sandbox-token\n  client_secret: bench-secret\n  app_id: 777\n\
             partner_central:\n  catalog: Sandbox\n  endpoint_url: {pc}\n",
            rules = concat!(env!("CARGO_MANIFEST_DIR"), "/rules"),
            state = dir.path().join("state.db").display(),
            hs = sb.hubspot_url,
            pc = sb.partner_central_url,
        ),
    )
    .unwrap();
    let mut service = serve_for_bench(&config, &url, "warn", None).await;
    let http = reqwest::Client::new();
    http.post(format!("{}/_sandbox/hubspot/webhooks", sb.hubspot_url))
        .json(&json!({ "url": format!("{url}/webhooks/hubspot"),
                       "client_secret": "bench-secret", "app_id": 777 }))
        .send_ok()
        .await;

    // The burst: five rounds over every deal, as fast as the edits go in.
    let began = Instant::now();
    for round in 1..=ROUNDS {
        for (i, (deal, _)) in pairs.iter().enumerate() {
            let amount = 1000 + round * 1000 + i;
            edit_deal(&http, &sb, deal, json!({ "amount": amount.to_string() })).await;
        }
    }
    let sent = began.elapsed();
    // Until every opportunity holds its deal's last amount.
    let want: BTreeMap<String, String> = pairs
        .iter()
        .enumerate()
        .map(|(i, (_, o))| (o.clone(), (1000 + ROUNDS * 1000 + i).to_string()))
        .collect();
    loop {
        if opportunities_hold_amounts(
            &sb,
            want.iter()
                .map(|(id, amount)| (id.as_str(), amount.as_str())),
        ) {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(1_200),
            "the burst did not land"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = began.elapsed();
    let calls = sb.journal.calls();
    let count = |op: &str, status: u16| {
        calls
            .iter()
            .filter(|c| c.operation == op && c.status == status)
            .count()
    };
    let throttled = calls.iter().filter(|c| c.status == 429).count();
    let health = get(&http, &format!("{url}/healthz")).await.unwrap();
    println!(
        "burst: {} edits over {DEALS} deals, sent in {:.1?}; every opportunity current after {:.1?} \
         ({:.2}x the {DEALS} s floor); UpdateOpportunity {} (floor {DEALS}), GetOpportunity {}, throttles {}, dead letters {}",
        DEALS * ROUNDS,
        sent,
        took,
        took.as_secs_f64() / DEALS as f64,
        count("UpdateOpportunity", 200),
        count("GetOpportunity", 200),
        throttled,
        health["inbox"]["dead"],
    );
    let _ = service.kill();
    let _ = service.wait();
}
