//! A WAL index (the `-shm` file) that can no longer be written while the store runs,
//! as when the state directory is made immutable (`chattr +i`) or its file system
//! goes read-only: SQLite writes it through a memory map, and the process died of
//! SIGBUS at its next write. In a test binary of its own: the store marks its whole
//! process when an index faults.
#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};

use pcsync_engine::Event;
use pcsync_runtime::store::{Inbox, SqliteStore};
use serde_json::json;

fn change(deal: u64, event_id: u64) -> (Event, String) {
    let e = Event::from_value(
        &json!({"hubspot": {"subscriptionType": "deal.propertyChange", "objectId": deal, "propertyName": "amount", "propertyValue": "1", "eventId": event_id, "occurredAt": 1}}),
        jiff::Timestamp::UNIX_EPOCH,
    )
    .unwrap();
    (e, format!("deal:{deal}"))
}

fn chattr(flag: &str, files: &[PathBuf]) -> bool {
    std::process::Command::new("chattr")
        .arg(flag)
        .args(files)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The files immutable until dropped (also when the test fails, so the temporary
/// directory can go).
struct Immutable(Vec<PathBuf>);

impl Drop for Immutable {
    fn drop(&mut self) {
        chattr("-i", &self.0);
    }
}

fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    p.into()
}

#[test]
fn an_index_made_immutable_mid_run_refuses_writes_keeps_what_was_acknowledged_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let probe = dir.path().join("probe");
    std::fs::write(&probe, "").unwrap();
    if !chattr("+i", std::slice::from_ref(&probe)) {
        eprintln!("skipped: making a file immutable (chattr +i) needs root on ext4, xfs or tmpfs");
        return;
    }
    chattr("-i", std::slice::from_ref(&probe));

    let s = SqliteStore::open(&path).unwrap();
    s.accept(&[change(1, 1), change(2, 2)], 10).unwrap();
    let files = vec![path.clone(), beside(&path, "-wal"), beside(&path, "-shm")];
    // The index's pages written back: the kernel then write-protects them, so the
    // next write to each goes through the file system, which refuses it.
    std::fs::File::open(&files[2]).unwrap().sync_all().unwrap();
    assert!(chattr("+i", &files));
    let immutable = Immutable(files);

    let refused = s.accept(&[change(3, 3)], 20);
    assert!(refused.is_err(), "{refused:?}");
    let health = s.check_writable(20).unwrap_err().to_string();
    assert!(health.contains("state.db-shm"), "{health}");
    assert_eq!(s.stats().unwrap().pending, 2, "the store still reads");

    drop(immutable);
    let started = std::time::Instant::now();
    while let Err(e) = s.check_writable(30) {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the store does not take writes again: {e}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(s.accept(&[change(3, 3)], 40).unwrap().new, 1);
    drop(s);
    let again = SqliteStore::open(&path).unwrap();
    assert_eq!(
        again.stats().unwrap().pending,
        3,
        "nothing acknowledged is lost"
    );
}
