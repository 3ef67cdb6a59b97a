//! Reload latency: from an editor's save (write a new file, rename it over the pack)
//! to the new rule set in force, with the service's watcher (file events, 50 ms
//! debounce) over a copy of the shipped packs. Prints p50, p95 and the worst of 40
//! saves; the figures are recorded in BENCHMARKS.md. Nothing here asserts a time.
//!
//!   cargo bench --bench reload

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;

use common::copy_dir;
use pcsync_runtime::service::metrics::Metrics;
use pcsync_runtime::service::reload::{RuleHost, Watch};

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    copy_dir(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules"),
        &rules,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let host = Arc::new(RuleHost::load(&rules, Arc::new(Metrics::default())).unwrap());
    runtime.spawn(Arc::clone(&host).watch(Watch::Events));
    std::thread::sleep(Duration::from_millis(300));
    let pack = rules.join("smart-notifications.yaml");
    let original = std::fs::read_to_string(&pack).unwrap();
    let mut took = Vec::new();
    for i in 0..40 {
        let before = host.current().version.clone();
        let saved = Instant::now();
        let swap = rules.join(".smart-notifications.yaml.swp");
        std::fs::write(&swap, format!("{original}\n# edit {i}\n")).unwrap();
        std::fs::rename(&swap, &pack).unwrap();
        while host.current().version == before {
            assert!(
                saved.elapsed() < Duration::from_secs(10),
                "the edit was not seen"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        took.push(saved.elapsed());
        // Apart, as edits are.
        std::thread::sleep(Duration::from_millis(100));
    }
    took.sort();
    let at = |q: f64| took[((took.len() - 1) as f64 * q).round() as usize];
    println!(
        "reload: edit to new rules in force over {} saves: p50 {:?}, p95 {:?}, worst {:?}",
        took.len(),
        at(0.5),
        at(0.95),
        took[took.len() - 1]
    );
}
