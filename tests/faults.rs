//! The crash-and-fault suite: the real binary against the sandbox, with scripted
//! deal edits, SIGKILLs at random moments and at chosen points, injected faults
//! and restarts, then invariants checked against the sandbox's recorded calls.
//!
//! Short form (CI, part of `cargo test`): `FAULT_CYCLES` cycles, 8 by default.
//! Long form (figures in RELIABILITY.md):
//!
//!     FAULT_CYCLES=120 cargo test --test faults -- --nocapture
//!
//! `FAULT_SEED` replays a run (the seed is printed). Each cycle picks a fault kind
//! (in turn, so every kind occurs), edits deals' amounts, and kills the service:
//! at a random moment, while a write hangs (before it lands), or right after a
//! write landed (before its follow-ups). At the end the service runs undisturbed
//! until the inbox is empty, and:
//! - nothing is lost: each deal's final amount reached its opportunity;
//! - nothing is duplicated: no amount was written twice (a retry after a write
//!   that landed must not write again);
//! - nothing is stuck: no event pending, running, deferred or dead;
//! - health was truthful: while the store refused writes `/healthz` said 503,
//!   and 200 once it took them again.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// Deals whose opportunities take updates, and their opportunities.
const DEALS: [(&str, &str); 2] = [("40000000001", "O5000001"), ("40000000003", "O5000004")];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    None,
    ServerError,
    Throttled,
    Slow,
    Timeout,
    AnswerLost,
    Conflict,
    DiskFull,
    ReadOnly,
}

const FAULTS: [Fault; 9] = [
    Fault::None,
    Fault::ServerError,
    Fault::Throttled,
    Fault::Slow,
    Fault::Timeout,
    Fault::AnswerLost,
    Fault::Conflict,
    Fault::DiskFull,
    Fault::ReadOnly,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kill {
    AtRandom,
    DuringWrite,
    AfterWrite,
}

/// A small deterministic generator (xorshift), so a run can be replayed by seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Successful UpdateOpportunity calls: (opportunity, amount written).
fn written(sb: &pcsync_sandbox::Sandbox) -> Vec<(String, String)> {
    updates(sb, 200)
        .iter()
        .map(|r| {
            (
                r["Identifier"].as_str().unwrap_or_default().to_string(),
                r.pointer("/Project/ExpectedCustomerSpend/0/Amount")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// Makes the state file refuse writes (a trigger on every table the service
/// writes), as a full disk or a read-only mount would; `None` lifts it.
fn refuse_writes(state: &std::path::Path, message: Option<&str>) {
    let conn = rusqlite::Connection::open(state).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    for (table, op) in [
        ("events", "INSERT"),
        ("work", "UPDATE"),
        ("work", "DELETE"),
        ("heartbeat", "INSERT"),
        ("heartbeat", "UPDATE"),
        ("effect_log", "INSERT"),
    ] {
        let name = format!("fault_{table}_{op}").to_lowercase();
        match message {
            Some(m) => conn
                .execute_batch(&format!(
                    "CREATE TRIGGER IF NOT EXISTS {name} BEFORE {op} ON {table} BEGIN SELECT RAISE(ABORT, '{m}'); END;"
                ))
                .unwrap(),
            None => conn
                .execute_batch(&format!("DROP TRIGGER IF EXISTS {name};"))
                .unwrap(),
        }
    }
}

async fn health_status(http: &reqwest::Client, service: &Service) -> Option<u16> {
    let answer = http
        .get(format!("{}/healthz", service.url))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    Some(answer.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_and_faults_lose_nothing_duplicate_nothing_and_leave_nothing_stuck() {
    let cycles = env_u64("FAULT_CYCLES").unwrap_or(8);
    let seed = env_u64("FAULT_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1
    });
    println!("fault suite: {cycles} cycles, FAULT_SEED={seed}");
    let mut rng = Rng(seed);
    let (sb, dir, mut service, config) =
        start(|_| {}, "worker:\n  coalesce: 300ms\n  max_attempts: 50\n").await;
    // A short call timeout, so that a hung write is a timeout within the cycle.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            "  catalog: Sandbox\n",
            "  catalog: Sandbox\n  call_timeout: 1s\n",
        ),
    )
    .unwrap();
    service.child.kill().unwrap();
    service.child.wait().unwrap();
    service.child = spawn(&config, &service.stderr);
    let state = dir.path().join("state.db");
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut amounts: HashMap<&str, u64> = HashMap::new();
    let (mut edits, mut kills, mut restarts) = (0u64, BTreeMap::new(), 0u64);
    let mut faults: BTreeMap<Fault, u64> = BTreeMap::new();
    let mut health_lies = Vec::new();
    for cycle in 0..cycles {
        let fault = FAULTS[(cycle % FAULTS.len() as u64) as usize];
        *faults.entry(fault).or_default() += 1;
        let kill = match rng.below(3) {
            0 => Kill::AtRandom,
            1 => Kill::DuringWrite,
            _ => Kill::AfterWrite,
        };
        let writes_before = written(&sb).len();
        let pc_fault = |body: Value| {
            let mut f = json!({"service": "partnercentral", "operation": "UpdateOpportunity"});
            f.as_object_mut()
                .unwrap()
                .extend(body.as_object().unwrap().clone());
            f
        };
        match fault {
            Fault::None | Fault::DiskFull | Fault::ReadOnly => {}
            Fault::ServerError => {
                inject(&http, &sb, pc_fault(json!({"count": 3, "status": 500}))).await
            }
            Fault::Throttled => {
                inject(&http, &sb, pc_fault(json!({"count": 2, "status": 429}))).await
            }
            Fault::Slow => inject(&http, &sb, pc_fault(json!({"count": 2, "delay_ms": 600}))).await,
            Fault::Timeout => {
                inject(&http, &sb, pc_fault(json!({"count": 1, "delay_ms": 2500}))).await
            }
            Fault::AnswerLost => {
                inject(
                    &http,
                    &sb,
                    pc_fault(json!({"count": 1, "drop_after": true})),
                )
                .await
            }
            Fault::Conflict => {
                inject(&http, &sb, pc_fault(json!({"count": 1, "status": 409}))).await
            }
        }
        if kill == Kill::DuringWrite {
            inject(&http, &sb, pc_fault(json!({"count": 1, "delay_ms": 5000}))).await;
        }
        if matches!(fault, Fault::DiskFull | Fault::ReadOnly) {
            let message = if fault == Fault::DiskFull {
                "database or disk is full"
            } else {
                "attempt to write a readonly database"
            };
            refuse_writes(&state, Some(message));
            // Health must say so while it lasts.
            let said = eventually("health to report the store", &service, || async {
                let status = health_status(&http, &service).await?;
                (status == 503).then_some(status)
            })
            .await;
            assert_eq!(said, 503);
        }
        // One to three edits per deal; each a new amount.
        for (deal, _) in DEALS {
            for _ in 0..1 + rng.below(3) {
                let amount = amounts.entry(deal).or_insert(10_000);
                *amount += 1 + rng.below(50);
                edit_deal(&http, &sb, deal, json!({ "amount": amount.to_string() })).await;
                edits += 1;
            }
        }
        if matches!(fault, Fault::DiskFull | Fault::ReadOnly) {
            tokio::time::sleep(Duration::from_millis(300 + rng.below(700))).await;
            if health_status(&http, &service).await != Some(503) {
                health_lies.push(format!("cycle {cycle}: ok while the store refused writes"));
            }
            refuse_writes(&state, None);
            let back = eventually("health to recover", &service, || async {
                let status = health_status(&http, &service).await?;
                (status == 200).then_some(status)
            })
            .await;
            assert_eq!(back, 200);
        }
        match kill {
            Kill::AtRandom => tokio::time::sleep(Duration::from_millis(rng.below(3_000))).await,
            Kill::DuringWrite => {
                // Past the coalescing window and the write limiter's first second:
                // the write, held 5 s by the sandbox, is on its way. Killed before
                // it lands.
                tokio::time::sleep(Duration::from_millis(1_400 + rng.below(400))).await;
            }
            Kill::AfterWrite => {
                let deadline = Instant::now() + Duration::from_secs(8);
                while Instant::now() < deadline && written(&sb).len() == writes_before {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
        service.child.kill().unwrap(); // SIGKILL
        service.child.wait().unwrap();
        *kills.entry(kill).or_insert(0u64) += 1;
        service.child = spawn(&config, &service.stderr);
        restarts += 1;
        eventually("the service to answer again", &service, || async {
            health_status(&http, &service).await.filter(|s| *s == 200)
        })
        .await;
    }

    // Undisturbed: everything accepted is worked off. Events that failed many
    // times wait out their backoff (doubling, at most 10 minutes), so this may take
    // a while after a long run; it must end with an empty line.
    let drain_started = Instant::now();
    let h = loop {
        let h = get(&http, &format!("{}/healthz", service.url)).await;
        if let Some(h) = h.filter(|h| {
            let i = &h["inbox"];
            i["pending"] == 0 && i["running"] == 0 && i["deferred"] == 0
        }) {
            break h;
        }
        assert!(
            drain_started.elapsed() < Duration::from_secs(15 * 60),
            "the inbox did not drain in 15 minutes\n{}",
            service.stderr()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let drain = drain_started.elapsed();
    let final_amounts = eventually("every deal's last amount to land", &service, || async {
        let mut got = Vec::new();
        for (deal, id) in DEALS {
            let o = opportunity(&http, &sb, id).await?;
            let amount = o
                .pointer("/Project/ExpectedCustomerSpend/0/Amount")?
                .as_str()?
                .to_string();
            (amount == amounts[deal].to_string()).then_some(())?;
            got.push((deal, amount));
        }
        Some(got)
    })
    .await;
    let all = written(&sb);
    let mut seen = std::collections::HashSet::new();
    let duplicated: Vec<_> = all.iter().filter(|w| !seen.insert((*w).clone())).collect();
    let stuck = h["inbox"]["pending"].as_u64().unwrap_or(0)
        + h["inbox"]["running"].as_u64().unwrap_or(0)
        + h["inbox"]["deferred"].as_u64().unwrap_or(0);
    let dead = h["inbox"]["dead"].as_u64().unwrap_or(0);
    // Every 429 the sandbox answered, by service and operation: the injected ones
    // are UpdateOpportunity's; any other is pcsync outrunning a limit.
    let mut throttled: BTreeMap<String, u64> = BTreeMap::new();
    for c in sb.journal.calls().iter().filter(|c| c.status == 429) {
        *throttled
            .entry(format!("{} {}", c.service, c.operation))
            .or_default() += 1;
    }
    println!(
        "fault suite: cycles={cycles} edits={edits} restarts={restarts} kills={kills:?} faults={faults:?} \
         writes={} lost=0 duplicated={} stuck={stuck} dead={dead} health_lies={} 429s={throttled:?} injected_429s={} \
         took={:.0?} drain={drain:.0?} final={final_amounts:?}",
        all.len(),
        duplicated.len(),
        health_lies.len(),
        2 * faults.get(&Fault::Throttled).copied().unwrap_or(0),
        started.elapsed(),
    );
    assert!(
        duplicated.is_empty(),
        "written twice: {duplicated:?}\n{}",
        service.stderr()
    );
    assert_eq!((stuck, dead), (0, 0), "{h}\n{}", service.stderr());
    assert!(health_lies.is_empty(), "{health_lies:?}");
}

/// Makes a directory read-only until dropped: immutable (`chattr +i`) where that
/// works (root on ext4, xfs, tmpfs), else by its mode (which root would ignore).
struct ReadOnlyDir(std::path::PathBuf);

impl ReadOnlyDir {
    fn make(dir: &std::path::Path) -> ReadOnlyDir {
        let immutable = std::process::Command::new("chattr")
            .arg("+i")
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !immutable {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        }
        ReadOnlyDir(dir.to_path_buf())
    }
}

impl Drop for ReadOnlyDir {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .stderr(std::process::Stdio::null())
            .status();
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
    }
}

/// Started on a read-only state directory (SQLite cannot even create its log
/// there), the service answers 503 instead of exiting, and takes writes within
/// seconds of the directory becoming writable, without a restart: what HubSpot
/// delivered meanwhile (retried after the 503s) is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_on_a_read_only_state_directory_the_service_recovers_by_itself() {
    let (sb, dir, mut service, config) = start(|_| {}, "").await;
    let stopped = std::process::Command::new("kill")
        .args(["-TERM", &service.child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    service.child.wait().unwrap();
    let state_dir = dir.path().join("state");
    std::fs::create_dir(&state_dir).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let old = format!("state: {}", dir.path().join("state.db").display());
    assert!(text.contains(&old));
    let new = format!("state: {}", state_dir.join("state.db").display());
    std::fs::write(&config, text.replace(&old, &new)).unwrap();
    let read_only = ReadOnlyDir::make(&state_dir);
    service.child = spawn(&config, &service.stderr);
    let http = reqwest::Client::new();
    let said = eventually("health to report the store", &service, || async {
        health_status(&http, &service).await
    })
    .await;
    assert_eq!(said, 503, "{}", service.stderr());
    edit_deal(&http, &sb, DEALS[0].0, json!({ "amount": "54321" })).await;

    drop(read_only);
    let lifted = Instant::now();
    eventually("health to recover", &service, || async {
        health_status(&http, &service).await.filter(|s| *s == 200)
    })
    .await;
    println!(
        "read-only state directory: 200 {:?} after it became writable",
        lifted.elapsed()
    );
    eventually("the edit made meanwhile to land", &service, || async {
        let o = opportunity(&http, &sb, DEALS[0].1).await?;
        (o.pointer("/Project/ExpectedCustomerSpend/0/Amount")? == "54321").then_some(())
    })
    .await;
}
