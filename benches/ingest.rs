//! Ingest benchmark: signed batches of 100 `deal.propertyChange` events, sent by 10
//! concurrent senders (HubSpot's own concurrency), against the real `pcsync serve`
//! binary with its SQLite inbox, as HubSpot would send them. Reports events/s, time
//! to 2xx (p50, p99, max) and the service's peak RSS. The events name a property no
//! pack subscribes to, so the worker drains the inbox without remote calls while
//! ingest runs: the measurement includes the worker's share of the two cores. A
//! health probe and a metrics scrape run every second, as they would in production.
//!
//! `cargo bench --bench ingest` (release). Numbers go in BENCHMARKS.md. The service's
//! log goes to `pcsync-bench.log` in the temporary directory, at the level
//! `PCSYNC_BENCH_LOG` gives (`warn` by default; `pcsync_runtime::store=trace` shows each
//! group commit and checkpoint).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;

use common::{free_port, serve_for_bench};
use pcsync_adapters::hubspot::signature;

const SECRET: &str = "bench-client-secret";
const SENDERS: usize = 10;
const BATCHES: usize = 2_000;
const PER_BATCH: usize = 100;
/// The paced phase's rate in batches/s: 500 batches of 100 = 50,000 events/s (issue
/// 5's target), or `PCSYNC_BENCH_RATE` events/s.
fn rate_batches_per_s() -> u64 {
    std::env::var("PCSYNC_BENCH_RATE")
        .ok()
        .and_then(|r| r.parse::<u64>().ok())
        .map_or(500, |events| (events / PER_BATCH as u64).max(1))
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let config = dir.path().join("pcsync.yaml");
    let rules = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\npublic_url: {url}\nrules: {}\nstate: {}\n\
             hubspot:\n  base_url: http://127.0.0.1:9\n  token: t\n  client_secret: {SECRET}\n\
             partner_central:\n  catalog: Sandbox\n  endpoint_url: http://127.0.0.1:9\n",
            rules.display(),
            dir.path().join("state.db").display()
        ),
    )
    .unwrap();
    let mut child = serve_for_bench(
        &config,
        &url,
        "warn",
        Some(Path::new("/tmp/pcsync-bench.log")),
    )
    .await;
    let http = reqwest::Client::new();

    // Bodies are built before the clock starts; each is signed when sent, as HubSpot
    // signs with the current time.
    let saturate = Arc::new(bodies(0));
    let paced = Arc::new(bodies(BATCHES));

    // 1. Throughput: ten senders, each sending its next batch as soon as the last is
    //    answered. In this closed loop, time to 2xx is mostly queueing (Little's law:
    //    10 in flight / batches per second), so it says little about latency.
    // As in production, a health probe and a metrics scrape every second meanwhile.
    let probing = {
        let (http, url) = (http.clone(), url.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                for path in ["/healthz", "/metrics"] {
                    let answer = http.get(format!("{url}{path}")).send().await;
                    assert!(answer.is_ok_and(|a| a.status().is_success()), "{path}");
                }
            }
        })
    };
    let started = Instant::now();
    let mut closed = send_all(&url, &saturate, None).await;
    let elapsed = started.elapsed();

    // 2. Latency at the target rate: the same ten senders, each batch sent at its
    //    scheduled time for 50,000 events/s overall; time to 2xx counts from the
    //    scheduled time, so a sender held up by a slow answer is charged for it.
    let started_paced = Instant::now();
    let rate = rate_batches_per_s();
    let mut open = send_all(&url, &paced, Some(rate)).await;
    let elapsed_paced = started_paced.elapsed();
    probing.abort();
    let rss = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<u64>()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0);
    let health: serde_json::Value = http
        .get(format!("{url}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = BATCHES * PER_BATCH;
    println!(
        "ingest: {events} events in {BATCHES} signed batches of {PER_BATCH}, {SENDERS} senders"
    );
    println!(
        "  saturated: {:.0} events/s ({:.2} s); time to 2xx p50 {}, p99 {}, max {}",
        events as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        ms(percentile(&mut closed, 0.50)),
        ms(percentile(&mut closed, 0.99)),
        ms(percentile(&mut closed, 1.0)),
    );
    println!(
        "  paced at {} events/s: achieved {:.0} events/s; time to 2xx p50 {}, p99 {}, max {}",
        rate * PER_BATCH as u64,
        events as f64 / elapsed_paced.as_secs_f64(),
        ms(percentile(&mut open, 0.50)),
        ms(percentile(&mut open, 0.99)),
        ms(percentile(&mut open, 1.0)),
    );
    println!("  peak RSS of pcsync serve: {:.1} MiB", rss as f64 / 1024.0);
    let cpu = |pid: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let after = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
                let ticks =
                    after.get(11)?.parse::<f64>().ok()? + after.get(12)?.parse::<f64>().ok()?;
                Some(ticks / 100.0)
            })
            .unwrap_or(0.0)
    };
    println!(
        "  CPU time over both phases ({:.2} s): pcsync serve {:.2} s, this load generator {:.2} s",
        (elapsed + elapsed_paced).as_secs_f64(),
        cpu(&child.id().to_string()),
        cpu("self"),
    );
    println!("  inbox after: {}", health["inbox"]);
    let _ = child.kill();
    let _ = child.wait();
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn percentile(latencies: &mut [Duration], p: f64) -> Duration {
    latencies.sort();
    latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)]
}

/// `BATCHES` bodies of `PER_BATCH` `deal.propertyChange` events over 5,000 deals,
/// numbered from `first_batch * PER_BATCH`. As HubSpot's: event ids are large and in
/// no order (here scattered by a multiplicative hash), and each event occurred a
/// little before it is sent (four events a millisecond from the time the bodies
/// are built), so the inbox's dedupe index sees what it would in production.
fn bodies(first_batch: usize) -> Vec<String> {
    let base = jiff::Timestamp::now().as_millisecond();
    (first_batch..first_batch + BATCHES)
        .map(|b| {
            let events: Vec<String> = (0..PER_BATCH)
                .map(|i| {
                    let n = (b * PER_BATCH + i) as u64;
                    let event_id = 1_000_000_000 + n.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 9_000_000_000;
                    let occurred = base + (n / 4) as i64;
                    format!(
                        r#"{{"eventId":{event_id},"subscriptionId":1,"portalId":62515,"appId":1,"occurredAt":{occurred},"subscriptionType":"deal.propertyChange","attemptNumber":0,"objectId":{},"propertyName":"hs_lastmodifieddate","propertyValue":"{n}","changeSource":"CRM_UI","sourceId":"userId:1"}}"#,
                        40_000_000_000u64 + n % 5_000
                    )
                })
                .collect();
            format!("[{}]", events.join(","))
        })
        .collect()
}

/// Sends every body, signed at send time, from `SENDERS` concurrent senders; with
/// `rate`, batch `k` is due at `k / rate` seconds and its time counts from then.
/// Returns each batch's time to 2xx.
async fn send_all(url: &str, bodies: &Arc<Vec<String>>, rate: Option<u64>) -> Vec<Duration> {
    let path = "/webhooks/hubspot";
    let http = reqwest::Client::new();
    let origin = Instant::now();
    let origin_wall = jiff::Timestamp::now();
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let (http, target, bodies) = (http.clone(), format!("{url}{path}"), Arc::clone(bodies));
        senders.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for (k, body) in bodies.iter().enumerate().skip(s).step_by(SENDERS) {
                let due = match rate {
                    Some(r) => {
                        let due = origin + Duration::from_micros(k as u64 * 1_000_000 / r);
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                    None => Instant::now(),
                };
                let ts = jiff::Timestamp::now().as_millisecond().to_string();
                let sig = signature::v3(SECRET, "POST", &target, body.as_bytes(), &ts);
                let answer = http
                    .post(&target)
                    .header("content-type", "application/json")
                    .header("X-HubSpot-Signature-v3", sig)
                    .header("X-HubSpot-Request-Timestamp", ts)
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert!(answer.status().is_success(), "{}", answer.status());
                latencies.push((due - origin, due.elapsed()));
            }
            latencies
        }));
    }
    let mut timeline: Vec<(Duration, Duration)> = Vec::new();
    for s in senders {
        timeline.extend(s.await.unwrap());
    }
    // With PCSYNC_BENCH_TIMELINE=file: each batch's send time and time to 2xx (ms),
    // to see whether slow answers come together (a stall) or apart.
    if let Ok(file) = std::env::var("PCSYNC_BENCH_TIMELINE") {
        timeline.sort();
        let lines: Vec<String> = timeline
            .iter()
            .map(|(at, took)| {
                format!(
                    "{:.3} {:.3}",
                    at.as_secs_f64() * 1e3,
                    took.as_secs_f64() * 1e3
                )
            })
            .collect();
        let header = format!("origin {origin_wall}\n");
        let _ = std::fs::write(
            format!("{file}.{}", rate.unwrap_or(0)),
            header + &lines.join("\n"),
        );
    }
    timeline.into_iter().map(|(_, took)| took).collect()
}
