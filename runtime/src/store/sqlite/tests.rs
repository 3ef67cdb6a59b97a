//! The SQLite store's tests.

use super::*;
use crate::store::{EchoMemory, Inbox, PackStates};
use jiff::Timestamp;
use serde_json::json;

fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("state.db")).unwrap();
    (dir, s)
}

fn change(deal: u64, event_id: u64, property: &str) -> (Event, String) {
    let e = Event::from_value(
        &json!({"hubspot": {"subscriptionType": "deal.propertyChange", "objectId": deal, "propertyName": property, "propertyValue": "x", "eventId": event_id, "occurredAt": 1}}),
        Timestamp::UNIX_EPOCH,
    )
    .unwrap();
    (e, format!("deal:{deal}"))
}

#[test]
fn applied_events_are_pruned_after_their_time_and_nothing_else_is() {
    let (_dir, s) = store();
    s.accept(&[change(1, 1, "a"), change(2, 2, "a")], 10)
        .unwrap();
    s.accept(&[change(3, 3, "a"), change(4, 4, "a")], 5_000)
        .unwrap();
    let batches = s.claim(6_000, 0, 10).unwrap();
    let seq = |deal: &str| {
        batches
            .iter()
            .find(|b| b.key == format!("deal:{deal}"))
            .unwrap()
            .items[0]
            .seq
    };
    // Deal 1's event is applied and old; deal 2's is old but parked; deal 3's is
    // applied but recent; deal 4's is old enough but still waiting.
    s.complete(&[seq("1"), seq("3")], 6_000).unwrap();
    s.dead_letter(&[seq("2")], "no", 6_000).unwrap();
    s.release(&[seq("4")], 6_000).unwrap();
    assert_eq!(s.prune_done(2_000, 100).unwrap(), 1);
    assert_eq!(s.prune_done(2_000, 100).unwrap(), 0);
    let left = s.stats().unwrap();
    assert_eq!((left.done, left.dead, left.pending), (1, 1, 1));
    // A pruned event is forgotten: the same delivery again is new.
    assert_eq!(s.accept(&[change(1, 1, "a")], 7_000).unwrap().new, 1);
    assert_eq!(s.accept(&[change(2, 2, "a")], 7_000).unwrap().duplicates, 1);
    assert_eq!(s.accept(&[change(3, 3, "a")], 7_000).unwrap().duplicates, 1);
}

#[test]
fn events_waiting_out_a_backoff_do_not_hold_up_due_ones() {
    let (_dir, s) = store();
    s.accept(&[change(1, 1, "a"), change(2, 2, "a")], 10)
        .unwrap();
    let first = s.claim(100, 0, 10).unwrap();
    assert_eq!(first.len(), 2);
    let seqs: Vec<i64> = first.iter().map(|b| b.items[0].seq).collect();
    s.retry(&seqs, 1_000_000, "throttled", 100).unwrap();
    s.accept(&[change(3, 3, "a"), change(1, 4, "a")], 200)
        .unwrap();
    // Deal 3 is due; deal 1's new event waits behind its own retry, in order.
    let due = s.claim(300, 0, 10).unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(due[0].key, "deal:3");
    // Once the backoff ends the retries come first, deal 1's with its later event
    // behind it in the same run (a run reads the deal fresh, so it covers both).
    s.complete(&[due[0].items[0].seq], 300).unwrap();
    let later = s.claim(1_000_000, 0, 10).unwrap();
    let keys: Vec<&str> = later.iter().map(|b| b.key.as_str()).collect();
    assert_eq!(keys, ["deal:1", "deal:2"]);
    let deal1: Vec<&str> = later[0].items.iter().map(|c| c.event.id.as_str()).collect();
    assert_eq!(
        deal1,
        [
            change(1, 1, "a").0.id.as_str(),
            change(1, 4, "a").0.id.as_str()
        ],
        "in order"
    );
    let done: Vec<i64> = later
        .iter()
        .flat_map(|b| b.items.iter().map(|c| c.seq))
        .collect();
    s.complete(&done, 1_000_000).unwrap();
    assert!(s.claim(1_000_001, 0, 10).unwrap().is_empty());
}

#[test]
fn concurrent_accepts_share_commits_and_each_gets_its_own_counts() {
    let (_dir, s) = store();
    let s = std::sync::Arc::new(s);
    // Eight requests at once, each of 50 events; every second request repeats
    // the previous one's events (a redelivery racing the original).
    let answers: Vec<Accepted> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8u64)
            .map(|r| {
                let s = std::sync::Arc::clone(&s);
                scope.spawn(move || {
                    let base = (r / 2) * 1_000;
                    let events: Vec<_> = (0..50)
                        .map(|i| change(i % 7, base + i, "dealstage"))
                        .collect();
                    s.accept(&events, 10).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let new: usize = answers.iter().map(|a| a.new).sum();
    let duplicates: usize = answers.iter().map(|a| a.duplicates).sum();
    assert_eq!(new, 200, "{answers:?}");
    assert_eq!(duplicates, 200, "{answers:?}");
    assert!(answers.iter().all(|a| a.new + a.duplicates == 50));
    assert_eq!(s.stats().unwrap().pending, 200);
    // Per key, inbox order is arrival order: claims still come oldest first.
    let batches = s.claim(100, 0, 100).unwrap();
    assert_eq!(batches.len(), 7);
    for b in &batches {
        assert!(b.items.windows(2).all(|w| w[0].seq < w[1].seq));
    }
}

#[test]
fn duplicate_deliveries_are_dropped_at_the_inbox() {
    let (_d, s) = store();
    assert_eq!(
        s.accept(&[change(1, 10, "amount"), change(1, 11, "dealstage")], 0)
            .unwrap(),
        Accepted {
            new: 2,
            duplicates: 0
        }
    );
    assert_eq!(
        s.accept(&[change(1, 10, "amount")], 5).unwrap(),
        Accepted {
            new: 0,
            duplicates: 1
        }
    );
    assert_eq!(s.stats().unwrap().pending, 2);
}

#[test]
fn one_key_runs_in_order_and_rapid_edits_coalesce_into_one_batch() {
    let (_d, s) = store();
    s.accept(&[change(1, 1, "amount")], 0).unwrap();
    s.accept(&[change(1, 2, "dealstage"), change(2, 3, "amount")], 300)
        .unwrap();
    s.accept(&[change(1, 4, "closedate")], 5_000).unwrap();
    assert!(
        s.claim(400, 1_000, 10).unwrap().is_empty(),
        "nothing is due before the window has passed"
    );
    let batches = s.claim(1_500, 1_000, 10).unwrap();
    let shape: Vec<(String, Vec<i64>)> = batches
        .iter()
        .map(|b| (b.key.clone(), b.items.iter().map(|i| i.seq).collect()))
        .collect();
    assert_eq!(
        shape,
        [
            ("deal:1".to_string(), vec![1, 2]),
            ("deal:2".to_string(), vec![3])
        ]
    );
    assert!(
        s.claim(10_000, 1_000, 10).unwrap().is_empty(),
        "deal 1's next event waits for the running batch"
    );
    s.complete(&[1, 2], 10_000).unwrap();
    let next = s.claim(10_000, 1_000, 10).unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].items[0].seq, 4);
}

#[test]
fn retries_deferrals_and_dead_letters() {
    let (_d, s) = store();
    s.accept(&[change(1, 1, "amount")], 0).unwrap();
    let b = s.claim(0, 0, 10).unwrap();
    s.retry(&[b[0].items[0].seq], 1_000, "HubSpot answered 503", 0)
        .unwrap();
    assert!(s.claim(500, 0, 10).unwrap().is_empty());
    let b = s.claim(1_000, 0, 10).unwrap();
    assert_eq!(b[0].items[0].attempts, 1);
    s.defer(&[1], 60_000, "AWS is reviewing the opportunity", 1_000)
        .unwrap();
    assert_eq!(s.stats().unwrap().deferred, 1);
    let b = s.claim(60_000, 0, 10).unwrap();
    s.dead_letter(
        &[b[0].items[0].seq],
        "ValidationException: LifeCycle.Stage",
        60_000,
    )
    .unwrap();
    let dead = s.dead_letters().unwrap();
    assert_eq!(
        (dead.len(), dead[0].reason.as_str(), dead[0].attempts),
        (1, "ValidationException: LifeCycle.Stage", 2)
    );
    assert!(s.requeue(1, 70_000).unwrap());
    assert!(!s.requeue(1, 70_000).unwrap(), "no longer a dead letter");
    assert_eq!(s.claim(70_000, 0, 10).unwrap()[0].items[0].attempts, 0);
    s.dead_letter(&[1], "again", 70_000).unwrap();
    assert!(s.drop_dead(1).unwrap());
    assert_eq!(s.stats().unwrap(), InboxStats::default());
}

#[test]
fn claimed_work_of_a_crashed_process_is_recovered_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let s = SqliteStore::open(&path).unwrap();
        s.accept(&[change(1, 1, "amount"), change(2, 2, "amount")], 0)
            .unwrap();
        assert_eq!(s.claim(0, 0, 10).unwrap().len(), 2);
    }
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.recover(100).unwrap(), 2);
    assert_eq!(s.claim(100, 0, 10).unwrap().len(), 2);
}

#[test]
fn a_dead_letter_requeued_by_another_process_is_claimed_by_the_running_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let service = SqliteStore::open(&path).unwrap();
    service.accept(&[change(1, 1, "amount")], 0).unwrap();
    let b = service.claim(0, 0, 10).unwrap();
    service.dead_letter(&[b[0].items[0].seq], "no", 0).unwrap();
    assert!(service.claim(10, 0, 10).unwrap().is_empty());
    // `pcsync dlq retry` opens the same file while the service runs.
    let cli = SqliteStore::open(&path).unwrap();
    assert!(cli.requeue(b[0].items[0].seq, 20).unwrap());
    drop(cli);
    let again = service.claim(30, 0, 10).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].items[0].event.id, change(1, 1, "amount").0.id);
}

#[test]
fn counts_follow_every_change_without_recounting_and_after_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let s = SqliteStore::open(&path).unwrap();
    let shape = |s: &SqliteStore| {
        let t = s.stats().unwrap();
        (t.pending, t.running, t.deferred, t.done, t.dead)
    };
    s.accept(
        &[change(1, 1, "a"), change(2, 2, "a"), change(3, 3, "a")],
        0,
    )
    .unwrap();
    assert_eq!(shape(&s), (3, 0, 0, 0, 0));
    let b = s.claim(0, 0, 10).unwrap();
    assert_eq!(shape(&s), (0, 3, 0, 0, 0));
    s.defer(&[b[0].items[0].seq], 100, "review", 0).unwrap();
    s.dead_letter(&[b[1].items[0].seq], "bad", 0).unwrap();
    s.complete(&[b[2].items[0].seq], 0).unwrap();
    assert_eq!(shape(&s), (0, 0, 1, 1, 1));
    let (unreadable, _) = change(9, 9, "a");
    s.park(&[(unreadable, "cannot be read".into())], 0).unwrap();
    assert_eq!(shape(&s), (0, 0, 1, 1, 2));
    // The same dead letter parked again is not counted twice.
    let again = s.claim(200, 0, 10).unwrap();
    s.dead_letter(&[again[0].items[0].seq], "still in review", 200)
        .unwrap();
    assert_eq!(shape(&s), (0, 0, 0, 1, 3));
    assert!(s.drop_dead(b[1].items[0].seq).unwrap());
    assert_eq!(shape(&s), (0, 0, 0, 1, 2));
    assert_eq!(s.prune_done(1_000, 10).unwrap(), 1);
    assert_eq!(shape(&s), (0, 0, 0, 0, 2));
    // Another process (`pcsync dlq retry`) puts one back.
    let cli = SqliteStore::open(&path).unwrap();
    assert!(cli.requeue(b[0].items[0].seq, 300).unwrap());
    drop(cli);
    assert_eq!(shape(&s), (1, 0, 0, 0, 1));
}

#[test]
fn pack_state_accumulates_sent_keys_and_writes_are_remembered() {
    let (_d, s) = store();
    let mut record = StateRecord {
        opportunity_id: "O1".into(),
        ..StateRecord::default()
    };
    record.watches.insert("score".into(), json!(50));
    record.sent = vec!["score-up:40->50".into()];
    s.record_state("smart-notifications", &record, 0).unwrap();
    record.watches.insert("score".into(), json!(70));
    record.sent = vec!["score-up:50->70".into()];
    s.record_state("smart-notifications", &record, 1).unwrap();
    let got = &s.pack_states("O1").unwrap()["smart-notifications"];
    assert_eq!(got.watches["score"], 70);
    assert_eq!(got.sent, ["score-up:40->50", "score-up:50->70"]);
    assert!(s.pack_states("O2").unwrap().is_empty());

    assert_eq!(s.last_write("deal:1", "aws_sync_status").unwrap(), None);
    s.remember_write("deal:1", "aws_sync_status", "synced", 0)
        .unwrap();
    assert_eq!(
        s.last_write("deal:1", "aws_sync_status")
            .unwrap()
            .as_deref(),
        Some("synced")
    );
    // A copy of the deal read at 0 is out of date; one read at 1 is not.
    assert!(s.written_since("deal:1", 0).unwrap());
    assert!(!s.written_since("deal:1", 1).unwrap());
    assert!(!s.written_since("deal:2", 0).unwrap());
    // What was written since a moment, with the values written.
    s.remember_write("deal:1", "aws_synced_resources", "r1", 5)
        .unwrap();
    assert_eq!(
        s.writes_since("deal:1", 1).unwrap(),
        [("aws_synced_resources".to_string(), "r1".to_string())]
    );
    assert_eq!(s.writes_since("deal:1", 0).unwrap().len(), 2);
    assert!(s.writes_since("deal:2", 0).unwrap().is_empty());
}

#[test]
fn an_empty_or_foreign_state_file_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    // Truncated to nothing: starting would silently begin with an empty inbox.
    let empty = dir.path().join("truncated.db");
    std::fs::write(&empty, b"").unwrap();
    let e = SqliteStore::open(&empty)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains(&*empty.to_string_lossy()) && e.contains("empty"),
        "{e}"
    );
    assert_eq!(
        std::fs::metadata(&empty).unwrap().len(),
        0,
        "left as it was"
    );

    // Not a database at all, and a database whose pages are damaged.
    let foreign = dir.path().join("notes.db");
    std::fs::write(&foreign, "these are my notes, not a database\n".repeat(200)).unwrap();
    let e = SqliteStore::open(&foreign)
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains(&*foreign.to_string_lossy()), "{e}");

    let damaged = dir.path().join("damaged.db");
    drop(SqliteStore::open(&damaged).unwrap());
    let mut bytes = std::fs::read(&damaged).unwrap();
    for b in bytes.iter_mut().skip(100).take(4000) {
        *b = 0xA5;
    }
    std::fs::write(&damaged, bytes).unwrap();
    let _ = std::fs::remove_file(dir.path().join("damaged.db-wal"));
    let e = SqliteStore::open(&damaged)
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains(&*damaged.to_string_lossy()), "{e}");

    // A new file is fine.
    assert!(SqliteStore::open(&dir.path().join("new.db")).is_ok());
}

#[test]
fn snapshot_revisions_are_kept_until_unread_for_long_enough() {
    use crate::store::{SnapshotCache, SnapshotId};
    let (dir, s) = store();
    let id = |revision| SnapshotId {
        opportunity: "O1",
        engagement: "eng-abcdefghijklmn",
        template: "OpportunitySummaryView",
        revision,
    };
    assert_eq!(s.cached_snapshot(id(1), 0).unwrap(), None);
    s.cache_snapshot(id(1), r#"{"Revision":1}"#, 0).unwrap();
    s.cache_snapshot(id(2), r#"{"Revision":2}"#, 0).unwrap();
    assert_eq!(
        s.cached_snapshot(id(1), 1).unwrap().as_deref(),
        Some(r#"{"Revision":1}"#)
    );
    // Another template or opportunity is another snapshot.
    let other = SnapshotId {
        template: "AwsOpportunitySummaryFullView",
        ..id(1)
    };
    assert_eq!(s.cached_snapshot(other, 1).unwrap(), None);
    // Revision 1 is read again two days on, revision 2 is not: pruning what was
    // unread for a day keeps 1 and forgets 2.
    let day = 24 * 3600 * 1000;
    assert!(s.cached_snapshot(id(1), 2 * day).unwrap().is_some());
    assert_eq!(s.prune_snapshots(day).unwrap(), 1);
    assert!(s.cached_snapshot(id(1), 2 * day).unwrap().is_some());
    assert_eq!(s.cached_snapshot(id(2), 2 * day).unwrap(), None);
    // And it is all in the file.
    drop(s);
    let s = SqliteStore::open(&dir.path().join("state.db")).unwrap();
    assert!(s.cached_snapshot(id(1), 2 * day).unwrap().is_some());
}

#[test]
fn summary_ages_cover_open_submitted_opportunities_only() {
    use crate::store::Sightings;
    let (_dir, s) = store();
    let min = 60_000;
    // Open and submitted, summaries read 10 and 30 minutes before `now`.
    s.saw_opportunity("O1", Some("Qualified"), Some("Approved"), 0)
        .unwrap();
    s.saw_summary("O1", 50 * min).unwrap();
    s.saw_opportunity("O2", Some("Prospect"), Some("Submitted"), 0)
        .unwrap();
    s.saw_summary("O2", 30 * min).unwrap();
    // Open and submitted, its summary never read.
    s.saw_opportunity("O3", Some("Prospect"), Some("In review"), 0)
        .unwrap();
    // Not counted: not submitted, or closed.
    s.saw_opportunity("O4", Some("Prospect"), Some("Pending Submission"), 0)
        .unwrap();
    s.saw_opportunity("O5", Some("Launched"), Some("Approved"), 0)
        .unwrap();
    s.saw_summary("O5", 0).unwrap();
    s.saw_opportunity("O6", Some("Closed Lost"), Some("Approved"), 0)
        .unwrap();
    let ages = s.summary_ages(60 * min).unwrap();
    assert_eq!(ages.opportunities, 3, "{ages:?}");
    assert_eq!(ages.never_read, 1);
    assert_eq!(ages.oldest_s, Some(30 * 60));
    assert_eq!(ages.p95_s, Some(30 * 60));
    // Seen again later: a closed one leaves the count.
    s.saw_opportunity("O2", Some("Closed Lost"), Some("Approved"), 61 * min)
        .unwrap();
    let ages = s.summary_ages(61 * min).unwrap();
    assert_eq!(ages.opportunities, 2);
    assert_eq!(ages.oldest_s, Some(11 * 60));
}

#[test]
fn recorded_runs_read_back_share_their_opportunity_and_are_pruned_by_age_and_size() {
    use crate::store::{RunFilter, RunLog, RunRecord};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pcsync.db");
    let s = SqliteStore::open(&path).unwrap();
    let at = |secs: i64| jiff::Timestamp::from_second(1_800_000_000 + secs).unwrap();
    let run = |event: &str, deal: &str, secs: i64| RunRecord {
        event_id: event.into(),
        pack: "smart-notifications".into(),
        at: at(secs),
        deal_id: Some(deal.into()),
        event: Event::schedule("smart-notifications", Some(deal.into()), None, at(secs))
            .to_stored_json()
            .unwrap(),
        context: serde_json::json!({ "deal": { "id": deal, "properties": {} } }),
        opportunity: Some(
            serde_json::json!({ "Id": "O1", "Project": { "Title": "x".repeat(1000) } }),
        ),
        aws_summary: None,
        entries: "[]".into(),
    };
    s.record_runs(&[
        run("e1", "101", 0),
        run("e2", "102", 10),
        run("e3", "101", 20),
    ])
    .unwrap();
    // Planned again: the record of e1 is replaced, not doubled.
    s.record_runs(&[run("e1", "101", 0)]).unwrap();
    let read = |filter: RunFilter| {
        let mut got = Vec::new();
        crate::store::read_runs(&path, &filter, |r| got.push(r.clone())).unwrap();
        got
    };
    let all = read(RunFilter::default());
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].at, at(0), "to the nanosecond");
    assert_eq!(all[0].context.opportunity.as_ref().unwrap()["Id"], "O1");
    let blobs: i64 = s
        .db()
        .conn
        .query_row("SELECT COUNT(*) FROM run_blob", [], |r| r.get(0))
        .unwrap();
    assert_eq!(blobs, 1, "one opportunity, kept once");
    let deal = read(RunFilter {
        deal: Some("101".into()),
        from_ms: Some(at(5).as_millisecond()),
        ..Default::default()
    });
    assert_eq!(deal.len(), 1);
    // Older than the retention: gone. Then the size cap keeps only the newest.
    assert_eq!(s.prune_runs(at(5).as_millisecond(), u64::MAX).unwrap(), 1);
    assert_eq!(s.prune_runs(0, 1).unwrap(), 2);
    assert!(read(RunFilter::default()).is_empty());
    let blobs: i64 = s
        .db()
        .conn
        .query_row("SELECT COUNT(*) FROM run_blob", [], |r| r.get(0))
        .unwrap();
    assert_eq!(blobs, 0, "an opportunity no run refers to is forgotten");
}

/// Polls `check` until it gives a value (for up to 10 s).
fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let started = std::time::Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A file or directory nothing may write until this is dropped: immutable
/// (`chattr +i`) where that works (root on ext4, xfs, tmpfs), else read-only by its
/// mode (which root would ignore).
struct Unwritable(std::path::PathBuf);

impl Unwritable {
    fn make(path: &std::path::Path) -> Unwritable {
        let immutable = std::process::Command::new("chattr")
            .arg("+i")
            .arg(path)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !immutable {
            use std::os::unix::fs::PermissionsExt;
            let mode = if path.is_dir() { 0o555 } else { 0o444 };
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        Unwritable(path.to_path_buf())
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .stderr(std::process::Stdio::null())
            .status();
        use std::os::unix::fs::PermissionsExt;
        let mode = if self.0.is_dir() { 0o755 } else { 0o644 };
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(mode));
    }
}

#[test]
fn a_store_opened_on_a_read_only_file_takes_writes_once_it_can_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    SqliteStore::open(&path)
        .unwrap()
        .accept(&[change(1, 1, "a")], 10)
        .unwrap();
    let locked = Unwritable::make(&path);
    let s = SqliteStore::open(&path).unwrap();
    assert!(s.check_writable(20).is_err(), "the file is read-only");
    assert!(s.accept(&[change(2, 2, "a")], 20).is_err());
    assert_eq!(s.stats().unwrap().pending, 1, "it is read all the same");
    drop(locked);
    eventually("the store to take writes", || s.check_writable(30).ok());
    assert_eq!(s.accept(&[change(2, 2, "a")], 40).unwrap().new, 1);
    drop(s);
    assert_eq!(
        SqliteStore::open(&path).unwrap().stats().unwrap().pending,
        2
    );
}

#[test]
fn a_wal_file_deleted_while_open_is_copied_in_and_replaced_so_other_processes_read() {
    let (dir, s) = store();
    let path = dir.path().join("state.db");
    s.accept(&[change(1, 1, "a"), change(2, 2, "a")], 10)
        .unwrap();
    let parked = s.claim(1_000, 0, 10).unwrap()[0].items[0].seq;
    s.dead_letter(&[parked], "no", 1_000).unwrap();
    std::fs::remove_file(dir.path().join("state.db-wal")).unwrap();
    // Accepted while the store still writes to the deleted file.
    s.accept(&[change(3, 3, "a")], 2_000).unwrap();
    // `pcsync dlq list` beside the running store: a second store on the file.
    let letters = eventually("another store to read the dead letters", || {
        SqliteStore::open(&path)
            .and_then(|other| other.dead_letters())
            .ok()
    });
    assert_eq!(letters.iter().map(|l| l.seq).collect::<Vec<_>>(), [parked]);
    assert!(dir.path().join("state.db-wal").exists());
    s.accept(&[change(4, 4, "a")], 3_000).unwrap();
    let other = SqliteStore::open(&path).unwrap();
    assert_eq!(
        (other.stats().unwrap().pending, other.stats().unwrap().dead),
        (3, 1),
        "what the store accepted before and after, as another process sees it"
    );
    drop((s, other));
    let again = SqliteStore::open(&path).unwrap().stats().unwrap();
    assert_eq!(
        (again.pending, again.dead),
        (3, 1),
        "nothing acknowledged is lost"
    );
}

#[test]
fn a_deleted_wal_that_a_reader_holds_refuses_writes_until_it_is_copied_in() {
    let (dir, s) = store();
    let path = dir.path().join("state.db");
    s.accept(&[change(1, 1, "a")], 10).unwrap();
    // `pcsync replay` elsewhere, in a read transaction on the log.
    let reader = rusqlite::Connection::open(&path).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let _: i64 = reader
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap();
    std::fs::remove_file(dir.path().join("state.db-wal")).unwrap();
    // Once the store has seen it, a commit would go only to the deleted file.
    eventually("the store to refuse writes", || {
        s.accept(&[change(2, 2, "a")], 20).is_err().then_some(())
    });
    reader.execute_batch("COMMIT").unwrap();
    drop(reader);
    eventually("the store to take writes again", || {
        s.accept(&[change(3, 3, "a")], 30).ok()
    });
    drop(s);
    let again = SqliteStore::open(&path).unwrap().stats().unwrap();
    assert!(again.pending >= 2, "{again:?}");
}

#[test]
fn the_service_store_starts_in_a_read_only_directory_and_opens_its_file_once_writable() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let path = state.join("state.db");
    SqliteStore::open(&path)
        .unwrap()
        .accept(&[change(1, 1, "a")], 10)
        .unwrap();
    assert!(!state.join("state.db-wal").exists(), "closed cleanly");
    let locked = Unwritable::make(&state);
    assert!(
        SqliteStore::open(&path).is_err(),
        "not even the log can be created there"
    );
    let s = SqliteStore::open_or_wait(&path).unwrap();
    assert!(s.check_writable(20).is_err());
    assert!(s.accept(&[change(2, 2, "a")], 20).is_err());
    drop(locked);
    eventually("the store to take writes", || s.check_writable(30).ok());
    assert_eq!(s.stats().unwrap().pending, 1, "what the file held");
    assert_eq!(s.accept(&[change(2, 2, "a")], 40).unwrap().new, 1);
    drop(s);
    assert_eq!(
        SqliteStore::open(&path).unwrap().stats().unwrap().pending,
        2
    );
}
