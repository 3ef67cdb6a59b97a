//! The durable state of the service: the inbox of accepted events (with their
//! retries, deferrals and dead letters), the last-known state per opportunity and
//! pack, and what pcsync last wrote (for echo suppression). A trait, so that a shared
//! database can back several replicas; SQLite is the embedded default.

mod queue;
mod sqlite;

use indexmap::IndexMap;
use pcsync_engine::{Event, PackState, StateRecord};

pub use queue::{BACKGROUND, ordering_key};
pub use sqlite::{SqliteStore, read_runs};

/// A store error, with its cause.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file cannot be opened or set up.
    #[error("state store: cannot open {path}: {source}")]
    Open {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// The state file exists but is empty: it was truncated, or made by something
    /// else. Opening it would start with an empty inbox and lose what it held.
    #[error(
        "state store: {path} is empty (0 bytes), so the events it held are gone from it; \
         restore it from a backup, or move it aside to start with an empty inbox"
    )]
    Empty {
        /// The file.
        path: std::path::PathBuf,
    },
    /// A query failed (I/O, a full disk, a locked or corrupt file).
    #[error("state store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The write-ahead log cannot be opened or synced.
    #[error("state store: {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A stored value (pack state, an event's JSON) does not read back.
    #[error("state store: a stored value does not parse: {0}")]
    Json(#[from] serde_json::Error),
    /// A stored event does not read back as an event.
    #[error("state store: a stored event does not parse: {0}")]
    Event(String),
    /// The commit that carried this request was cut short.
    #[error("state store: the commit was interrupted")]
    Interrupted,
    /// The group commit that carried this request failed; every request in the
    /// group gets the same cause.
    #[error(transparent)]
    Shared(std::sync::Arc<StoreError>),
    /// The WAL index beside the state file (`-shm`, shared memory) could not be
    /// written: made immutable, or on a file system gone read-only. The store
    /// refuses writes until it can be written and the store is opened afresh.
    #[error(
        "state store: {path} cannot be written (immutable, or on a read-only file system); \
         writes are refused until it can"
    )]
    IndexUnwritable {
        /// The WAL index file.
        path: std::path::PathBuf,
    },
    /// A write failed moments ago (a full disk, a read-only file system) and none
    /// has succeeded since: the store is not taking writes.
    #[error("state store: not taking writes since {since} ms ago: {cause}")]
    Unwritable {
        /// How long ago the last write failed.
        since: i64,
        /// Why it failed.
        cause: String,
    },
}

/// The outcome of accepting a batch of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// Events new to the inbox.
    pub new: usize,
    /// Events already there (the same delivery again).
    pub duplicates: usize,
}

/// An event on its way into the inbox.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// The event; its payload may be left out (`Null`) when `stored` carries it.
    pub event: Event,
    /// `deal:<id>` or `opportunity:<id>`: the events of one key apply in order.
    pub key: String,
    /// The text the inbox keeps, which [`Event::from_stored_json`] reads back into
    /// the whole event: [`Event::to_stored_json`], or the same form made from the
    /// payload's text as received (ingest does that, to skip serializing it again).
    pub stored: String,
}

impl Arrival {
    /// An arrival stored as [`Event::to_stored_json`] gives.
    pub fn new(event: Event, key: String) -> Result<Arrival, StoreError> {
        let stored = event.to_stored_json()?;
        Ok(Arrival { event, key, stored })
    }
}

/// One inbox entry handed to a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    /// The inbox sequence number.
    pub seq: i64,
    /// The event.
    pub event: Event,
    /// How many times it was tried before.
    pub attempts: u32,
}

/// Events of one ordering key (a deal or an opportunity) claimed together: the
/// oldest pending one and those that arrived within the coalescing window after it.
/// One plan serves them all.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `deal:<id>` or `opportunity:<id>`.
    pub key: String,
    /// Oldest first.
    pub items: Vec<Claimed>,
}

/// A dead letter: an event that will not be applied without a person's help.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The inbox sequence number (what `pcsync dlq retry|drop` take).
    pub seq: i64,
    /// The event.
    pub event: Event,
    /// Tries made.
    pub attempts: u32,
    /// Why it stopped.
    pub reason: String,
    /// When it was parked (ms since the epoch).
    pub parked_at: i64,
}

/// Edits waiting for an opportunity to become editable, per ordering key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deferred {
    /// `deal:<id>` or `opportunity:<id>`.
    pub key: String,
    /// Events waiting.
    pub events: u64,
    /// Why (the pack and the rule that deferred them).
    pub reason: String,
    /// When they are looked at again at the latest (ms since the epoch).
    pub recheck_at: i64,
}

/// Inbox counts by state (as JSON on `/healthz` and `/rules`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct InboxStats {
    /// Waiting to run (including retries).
    pub pending: u64,
    /// Being worked on.
    pub running: u64,
    /// Waiting for the opportunity to become editable.
    pub deferred: u64,
    /// Applied.
    pub done: u64,
    /// Parked in the dead-letter list.
    pub dead: u64,
}

/// The inbox: accepted events, claimed per ordering key, retried, deferred and
/// dead-lettered; nothing leaves it any other way.
pub trait Inbox: Send + Sync {
    /// Commits events to the inbox; duplicates (same event id) are dropped. Only
    /// after this returns may the sender be told 2xx.
    fn accept_arrivals(&self, arrivals: Vec<Arrival>, now_ms: i64) -> Result<Accepted, StoreError>;

    /// [`Inbox::accept_arrivals`] for events and their ordering keys.
    fn accept(&self, events: &[(Event, String)], now_ms: i64) -> Result<Accepted, StoreError> {
        let arrivals = events
            .iter()
            .map(|(event, key)| Arrival::new(event.clone(), key.clone()))
            .collect::<Result<_, _>>()?;
        self.accept_arrivals(arrivals, now_ms)
    }

    /// Commits events straight into the dead-letter list, each with its reason
    /// (events that arrived but cannot be read: kept, not lost). Returns how many
    /// were new: an event whose id is parked already is a redelivery.
    fn park(&self, events: &[(Event, String)], now_ms: i64) -> Result<u64, StoreError>;

    /// Claims up to `limit` batches that are due: per ordering key, only the oldest
    /// unfinished event (so a key's events apply in order), once `coalesce_ms` has
    /// passed since it arrived, together with that key's later events that arrived
    /// within the window.
    fn claim(&self, now_ms: i64, coalesce_ms: i64, limit: usize) -> Result<Vec<Batch>, StoreError>;

    /// Claimed events not started (the service is stopping): back in line as they
    /// were, with no attempt counted.
    fn release(&self, seqs: &[i64], now_ms: i64) -> Result<(), StoreError>;

    /// The events were applied.
    fn complete(&self, seqs: &[i64], now_ms: i64) -> Result<(), StoreError>;

    /// Try again at `not_before_ms`.
    fn retry(
        &self,
        seqs: &[i64],
        not_before_ms: i64,
        error: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Hold until `recheck_ms`, when the opportunity may be editable again.
    fn defer(
        &self,
        seqs: &[i64],
        recheck_ms: i64,
        reason: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Makes a key's deferred events due now (its opportunity changed, so it may be
    /// editable again); returns how many.
    fn wake(&self, key: &str, now_ms: i64) -> Result<u64, StoreError>;

    /// Park in the dead-letter list.
    fn dead_letter(&self, seqs: &[i64], reason: &str, now_ms: i64) -> Result<(), StoreError>;

    /// Reads the work the last run left (at start-up): every unfinished event is in
    /// line again, including any a process that died had claimed. Returns how many
    /// events are waiting (pending or deferred).
    fn recover(&self, now_ms: i64) -> Result<u64, StoreError>;

    /// The dead letters, oldest first.
    fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError>;

    /// Puts a dead letter back in the inbox; false when there is no such dead letter.
    fn requeue(&self, seq: i64, now_ms: i64) -> Result<bool, StoreError>;

    /// Deletes a dead letter; false when there is no such dead letter.
    fn drop_dead(&self, seq: i64) -> Result<bool, StoreError>;

    /// Counts by state.
    fn stats(&self) -> Result<InboxStats, StoreError>;

    /// Whether the store takes writes now (for health checks): an error when a
    /// write failed recently and none succeeded since, or when a small probe write
    /// fails (a file system remounted read-only, a full disk).
    fn check_writable(&self, now_ms: i64) -> Result<(), StoreError>;

    /// The deferred edits, oldest first, at most `limit` keys.
    fn deferred(&self, limit: usize) -> Result<Vec<Deferred>, StoreError>;

    /// Deletes applied events last touched before `before_ms`, at most `limit` of
    /// them; returns how many went.
    fn prune_done(&self, before_ms: i64, limit: usize) -> Result<u64, StoreError>;

    /// Makes every write so far durable (settles are otherwise synced by the next
    /// accepted batch) and folds the log into the database file: for a clean stop.
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// What a retried batch must not do twice (notes, tasks, messages carried out) and the
/// follow-ups it still owes (pending settles).
pub trait EffectJournal: Send + Sync {
    /// Whether the effect with this key (event, pack, content) was carried out.
    fn effect_done(&self, key: &str) -> Result<bool, StoreError>;

    /// Notes that the effect with this key was carried out, so a retry of its batch
    /// does not repeat it (a second note, task or message).
    fn remember_effect(&self, key: &str, now_ms: i64) -> Result<(), StoreError>;

    /// A pack run whose writes succeeded but whose follow-ups (`on_success`,
    /// `on_error`) did not all: the planned effects and how they ended (JSON), so a
    /// retry of the batch finishes the follow-ups instead of planning again (which
    /// would find nothing left to change, and settle nothing).
    fn pending_settle(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Records a pending settle ([`EffectJournal::pending_settle`]).
    fn save_settle(&self, key: &str, outcome: &str, now_ms: i64) -> Result<(), StoreError>;

    /// Forgets a pending settle once its follow-ups are done.
    fn clear_settle(&self, key: &str) -> Result<(), StoreError>;
}

/// The last-known state per opportunity and pack, for change detection.
pub trait PackStates: Send + Sync {
    /// The last-known state of every pack for an opportunity.
    fn pack_states(&self, opportunity_id: &str) -> Result<IndexMap<String, PackState>, StoreError>;

    /// Merges a pack run's record into the pack's state for the record's opportunity
    /// ([`PackState::merge`]).
    fn record_state(&self, pack: &str, record: &StateRecord, now_ms: i64)
    -> Result<(), StoreError>;
}

/// The values pcsync wrote to HubSpot properties, to recognise their webhooks coming
/// back.
pub trait EchoMemory: Send + Sync {
    /// Remembers a value pcsync wrote to an object's property (echo suppression).
    fn remember_write(
        &self,
        object: &str,
        property: &str,
        value: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// The value pcsync last wrote to an object's property, if any.
    fn last_write(&self, object: &str, property: &str) -> Result<Option<String>, StoreError>;

    /// Whether pcsync wrote any property of the object at or after `since_ms`: a
    /// copy of it read before then is out of date.
    fn written_since(&self, object: &str, since_ms: i64) -> Result<bool, StoreError>;

    /// The properties of the object pcsync last wrote at or after `since_ms`, with
    /// the values it wrote.
    fn writes_since(
        &self,
        object: &str,
        since_ms: i64,
    ) -> Result<Vec<(String, String)>, StoreError>;
}

/// Which revision of which resource snapshot: AWS never changes a revision once made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotId<'a> {
    /// The opportunity (`O…`).
    pub opportunity: &'a str,
    /// The engagement (`eng-…`).
    pub engagement: &'a str,
    /// The snapshot template.
    pub template: &'a str,
    /// The revision.
    pub revision: i64,
}

/// Resource snapshot revisions already read, so that each is read from AWS once
/// (GetResourceSnapshot counts against the daily read quota, and an opportunity's
/// revisions only accumulate).
pub trait SnapshotCache: Send + Sync {
    /// The revision's JSON as GetResourceSnapshot returned it, when kept. Marks it
    /// used, so that pruning keeps what is still read.
    fn cached_snapshot(
        &self,
        id: SnapshotId<'_>,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError>;

    /// Keeps a revision's JSON.
    fn cache_snapshot(&self, id: SnapshotId<'_>, json: &str, now_ms: i64)
    -> Result<(), StoreError>;

    /// Forgets revisions not used since `before_ms` (an opportunity no longer read);
    /// how many went.
    fn prune_snapshots(&self, before_ms: i64) -> Result<u64, StoreError>;
}

/// Calls counted against an API's daily quotas, per minute, so that a restart does
/// not forget the day ([`pcsync_adapters::quota`]).
pub trait QuotaLog: Send + Sync {
    /// Records the calls of these minutes (api, class, minute start in ms, calls in
    /// that minute) and forgets minutes that started before `forget_before_ms`. With
    /// `replace`, a minute takes the count given; without, it only grows (a save
    /// that raced a later reservation must not lower it).
    fn save_calls(
        &self,
        minutes: &[(&str, &str, i64, u64)],
        forget_before_ms: i64,
        replace: bool,
    ) -> Result<(), StoreError>;

    /// The minutes of `api` recorded since `since_ms`: (class, minute start, calls).
    fn load_calls(&self, api: &str, since_ms: i64) -> Result<Vec<(String, i64, u64)>, StoreError>;
}

/// What pcsync last saw of each opportunity it read: its stage and review status,
/// and when its AWS summary was last read, to say how stale the summaries are.
pub trait Sightings: Send + Sync {
    /// The opportunity was read (GetOpportunity) at `now_ms`.
    fn saw_opportunity(
        &self,
        id: &str,
        stage: Option<&str>,
        review_status: Option<&str>,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Its AWS summary was read (GetAwsOpportunitySummary) at `now_ms`.
    fn saw_summary(&self, id: &str, now_ms: i64) -> Result<(), StoreError>;

    /// How old the AWS summaries of the open, submitted opportunities are.
    fn summary_ages(&self, now_ms: i64) -> Result<SummaryAges, StoreError>;

    /// What was last seen of every opportunity read, by id: the poller's schedule.
    fn sightings(&self) -> Result<std::collections::HashMap<String, Sighting>, StoreError>;
}

/// What pcsync last saw of one opportunity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sighting {
    /// Its stage when last read in full.
    pub stage: Option<String>,
    /// Its review status when last read in full.
    pub review_status: Option<String>,
    /// When it was last read in full (ms since the epoch); `None` when only its
    /// summary was.
    pub read_at: Option<i64>,
    /// When its AWS summary was last read.
    pub summary_at: Option<i64>,
}

impl Sighting {
    /// Last seen `Launched` or `Closed Lost`: nothing more happens to it.
    pub fn closed(&self) -> bool {
        matches!(self.stage.as_deref(), Some("Launched" | "Closed Lost"))
    }

    /// Last seen before its first submission: AWS holds no summary of it yet.
    pub fn unsubmitted(&self) -> bool {
        self.review_status.as_deref() == Some("Pending Submission")
    }
}

/// How old the AWS summaries pcsync holds are, over the opportunities that have one
/// and are not closed (submitted, not `Launched` or `Closed Lost`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SummaryAges {
    /// Such opportunities pcsync has read.
    pub opportunities: u64,
    /// Of them, those whose summary it has not read yet.
    pub never_read: u64,
    /// The median age in seconds of those read.
    pub p50_s: Option<u64>,
    /// The 95th percentile.
    pub p95_s: Option<u64>,
    /// The oldest.
    pub oldest_s: Option<u64>,
}

/// One pack run as the worker records it for `pcsync replay`, ready to store: the
/// context without the opportunity and the AWS summary, which are kept once per
/// distinct value (polls see the same ones many times).
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// The event's id: a run planned again (a retry) replaces its record.
    pub event_id: String,
    /// The pack.
    pub pack: String,
    /// When it was planned, exactly: the time it is planned at again.
    pub at: jiff::Timestamp,
    /// The deal, for `--deal`.
    pub deal_id: Option<String>,
    /// The event (its stored JSON).
    pub event: String,
    /// The rest of the context, redacted.
    pub context: serde_json::Value,
    /// GetOpportunity's answer, redacted.
    pub opportunity: Option<serde_json::Value>,
    /// GetAwsOpportunitySummary's answer, redacted.
    pub aws_summary: Option<serde_json::Value>,
    /// What it planned ([`pcsync_engine::replay::entries`]), as JSON.
    pub entries: String,
}

/// Which recorded runs to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    /// Planned at or after (ms since the epoch).
    pub from_ms: Option<i64>,
    /// Planned before.
    pub to_ms: Option<i64>,
    /// Of this pack.
    pub pack: Option<String>,
    /// About this deal.
    pub deal: Option<String>,
}

/// The record of pack runs `pcsync replay` plans again.
pub trait RunLog: Send + Sync {
    /// Keeps `runs`, in one transaction.
    fn record_runs(&self, runs: &[RunRecord]) -> Result<(), StoreError>;

    /// Forgets runs planned before `before_ms`, then the oldest until the record
    /// holds about `max_bytes`; returns how many went.
    fn prune_runs(&self, before_ms: i64, max_bytes: u64) -> Result<u64, StoreError>;
}

/// The service's durable state: every part, for the worker, which uses them all.
/// Users that need less take the part they need (ingest and the pollers an
/// [`Inbox`], the executor an [`EchoMemory`] and a [`SnapshotCache`]).
pub trait Store:
    Inbox + EffectJournal + PackStates + EchoMemory + SnapshotCache + QuotaLog + Sightings + RunLog
{
}

impl<T> Store for T where
    T: Inbox
        + EffectJournal
        + PackStates
        + EchoMemory
        + SnapshotCache
        + QuotaLog
        + Sightings
        + RunLog
{
}
