//! The worker, in-process: a real SQLite store in a temporary directory, a manual
//! clock and an executor that serves an in-memory HubSpot and Partner Central and
//! records every write it is asked for. No sleeps: time moves when a test moves it.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indexmap::IndexMap;
use jiff::Timestamp;
use pcsync_engine::plan::{plan_pack, triggered_packs};
use pcsync_engine::{
    Context, DealSnapshot, Decision, Effect, Event, Outcome, Plan, PlanEntry, RuleSet, Verdict,
    golden,
};
use serde_json::{Value, json};

use super::{Settled, Worker};
use crate::clock::{Clock, ManualClock};
use crate::service::execute::{ExecError, Executor, set_path};
use crate::service::metrics::Metrics;
use crate::service::reload::{RuleHost, load_dir};
use crate::store::SqliteStore;
use crate::store::ordering_key;
use crate::store::{EchoMemory, Inbox, PackStates, Store};

/// What the in-memory remote holds.
#[derive(Default)]
struct World {
    deals: IndexMap<String, DealSnapshot>,
    companies: HashMap<String, DealSnapshot>,
    company_deals: HashMap<String, Vec<String>>,
    opportunities: HashMap<String, Value>,
    summaries: HashMap<String, Value>,
    snapshots: HashMap<String, Vec<Value>>,
    /// Submission tasks by id, as ListEngagementFromOpportunityTasks lists them.
    tasks: HashMap<String, Value>,
}

/// An executor over a [`World`] that records each write it is asked for (done or
/// failed) and fails the writes it was told to.
#[derive(Default)]
struct Recording {
    world: Mutex<World>,
    /// Every write asked for, in order.
    asked: Mutex<Vec<Effect>>,
    /// Failures for coming writes, by effect kind (`*` for any), first come first used.
    failures: Mutex<VecDeque<(String, ExecError)>>,
    /// What a successful write answers; `None` for the natural answer.
    answer: Mutex<Option<Value>>,
    /// An opportunity whose updates hang until the gate opens (a slow endpoint).
    hold: Mutex<Option<(String, Arc<tokio::sync::Notify>)>>,
    /// Every read of a deal or an opportunity (`deal:ID`, `opportunity:ID`), in order.
    reads: Mutex<Vec<String>>,
    /// The deals as CRM search's index holds them while it lags writes; `None`:
    /// search sees the world as it is.
    searched: Mutex<Option<IndexMap<String, DealSnapshot>>>,
}

impl Recording {
    fn fail_next(&self, kind: &str, error: ExecError) {
        self.failures
            .lock()
            .unwrap()
            .push_back((kind.to_string(), error));
    }

    fn asked(&self) -> Vec<Effect> {
        self.asked.lock().unwrap().clone()
    }

    fn asked_kinds(&self) -> Vec<&'static str> {
        self.asked().iter().map(Effect::kind).collect()
    }

    fn take(&self) -> Vec<Effect> {
        std::mem::take(&mut *self.asked.lock().unwrap())
    }
}

fn retryable(message: &str) -> ExecError {
    ExecError {
        message: message.into(),
        retryable: true,
        retry_after: None,
        replan: false,
        waits_for_quota: false,
    }
}

impl Executor for Recording {
    async fn perform(
        &self,
        effect: &Effect,
        store: &dyn EchoMemory,
        now: Timestamp,
    ) -> Result<Value, ExecError> {
        let gate = match (effect, &*self.hold.lock().unwrap()) {
            (Effect::UpdateOpportunity { id, .. }, Some((held, gate))) if id == held => {
                Some(Arc::clone(gate))
            }
            _ => None,
        };
        if let Some(gate) = gate {
            gate.notified().await;
        }
        self.asked.lock().unwrap().push(effect.clone());
        {
            let mut failures = self.failures.lock().unwrap();
            if let Some(i) = failures
                .iter()
                .position(|(k, _)| k == effect.kind() || k == "*")
            {
                return Err(failures.remove(i).unwrap().1);
            }
        }
        let mut world = self.world.lock().unwrap();
        let natural = match effect {
            Effect::UpdateOpportunity { id, changes, .. } => {
                if let Some(o) = world.opportunities.get_mut(id) {
                    for c in changes {
                        set_path(o, &c.field, c.new.clone())?;
                    }
                    o["LastModifiedDate"] = json!(now.to_string());
                }
                json!({ "LastModifiedDate": now.to_string() })
            }
            Effect::CreateOpportunity { fields, .. } => {
                let mut record = json!({ "Catalog": "Sandbox", "Id": "O9000001",
                    "LastModifiedDate": now.to_string(),
                    "LifeCycle": { "ReviewStatus": "Pending Submission" } });
                for f in fields {
                    set_path(&mut record, &f.field, f.new.clone())?;
                }
                world.opportunities.insert("O9000001".into(), record);
                json!({ "Id": "O9000001" })
            }
            Effect::AssociateOpportunity { .. } => Value::Null,
            Effect::StartEngagement { opportunity_id, .. } => {
                let task = json!({ "TaskId": "task-0000000000001", "TaskStatus": "IN_PROGRESS",
                    "OpportunityId": opportunity_id });
                world
                    .tasks
                    .insert("task-0000000000001".into(), task.clone());
                task
            }
            Effect::UpdateDeal {
                deal_id,
                properties,
                ..
            } => {
                for (name, value) in properties {
                    store
                        .remember_write(
                            &format!("deal:{deal_id}"),
                            name,
                            value,
                            now.as_millisecond(),
                        )
                        .map_err(ExecError::from)?;
                    if let Some(deal) = world.deals.get_mut(deal_id) {
                        deal.properties.insert(name.clone(), json!(value));
                    }
                }
                Value::Null
            }
            Effect::Publish { .. } => json!({ "MessageId": "m-1" }),
            Effect::CreateNote { .. } | Effect::CreateTask { .. } => Value::Null,
        };
        Ok(self.answer.lock().unwrap().clone().unwrap_or(natural))
    }

    async fn deal(
        &self,
        id: &str,
        properties: &[String],
    ) -> Result<Option<DealSnapshot>, ExecError> {
        // As the real client: an id that is not digits is never looked up.
        if !pcsync_adapters::hubspot::client::is_object_id(id) {
            return Err(ExecError {
                message: format!("`{id}` is not a HubSpot object id"),
                retryable: false,
                retry_after: None,
                replan: false,
                waits_for_quota: false,
            });
        }
        self.reads.lock().unwrap().push(format!("deal:{id}"));
        let world = self.world.lock().unwrap();
        Ok(world.deals.get(id).map(|d| only(d, properties)))
    }

    async fn deal_linked_to(
        &self,
        link: &str,
        opportunity_id: &str,
        properties: &[String],
    ) -> Result<Option<DealSnapshot>, ExecError> {
        let world = self.world.lock().unwrap();
        let searched = self.searched.lock().unwrap();
        Ok(searched
            .as_ref()
            .unwrap_or(&world.deals)
            .values()
            .find(|d| d.property(link).as_deref() == Some(opportunity_id))
            .map(|d| only(d, properties)))
    }

    async fn primary_company(
        &self,
        deal_id: &str,
        properties: &[String],
    ) -> Result<Option<DealSnapshot>, ExecError> {
        let world = self.world.lock().unwrap();
        Ok(world.companies.get(deal_id).map(|c| only(c, properties)))
    }

    async fn company_deals(&self, company_id: &str) -> Result<Vec<String>, ExecError> {
        let world = self.world.lock().unwrap();
        Ok(world
            .company_deals
            .get(company_id)
            .cloned()
            .unwrap_or_default())
    }

    async fn opportunity(&self, id: &str) -> Result<Option<Value>, ExecError> {
        self.reads.lock().unwrap().push(format!("opportunity:{id}"));
        Ok(self.world.lock().unwrap().opportunities.get(id).cloned())
    }

    async fn aws_summary(&self, id: &str) -> Result<Option<Value>, ExecError> {
        Ok(self.world.lock().unwrap().summaries.get(id).cloned())
    }

    async fn engagement_task(&self, task_id: &str) -> Result<Option<Value>, ExecError> {
        self.reads.lock().unwrap().push(format!("task:{task_id}"));
        Ok(self.world.lock().unwrap().tasks.get(task_id).cloned())
    }

    async fn snapshots(
        &self,
        id: &str,
        _templates: &[String],
        _cache: &dyn crate::store::SnapshotCache,
        _now: Timestamp,
    ) -> Result<Vec<Value>, ExecError> {
        Ok(self
            .world
            .lock()
            .unwrap()
            .snapshots
            .get(id)
            .cloned()
            .unwrap_or_default())
    }
}

/// The object with only the properties asked for, as HubSpot answers.
fn only(object: &DealSnapshot, properties: &[String]) -> DealSnapshot {
    DealSnapshot {
        id: object.id.clone(),
        properties: object
            .properties
            .iter()
            .filter(|(k, _)| properties.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// A worker over `rules`, a fresh store and a manual clock.
struct Harness {
    dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    clock: Arc<ManualClock>,
    worker: Worker<Recording>,
}

const COALESCE: Duration = Duration::from_secs(2);
const DEFER_RECHECK: Duration = Duration::from_secs(300);

fn harness(rules_dir: &Path, rules: RuleSet, now: Timestamp) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("pcsync.db")).unwrap());
    let clock = Arc::new(ManualClock::new(now));
    let metrics = Arc::new(Metrics::default());
    let rules = Arc::new(RuleHost::new(rules_dir, rules, Arc::clone(&metrics)));
    let worker = test_worker(&store, rules, Recording::default(), &clock, metrics);
    Harness {
        dir,
        store,
        clock,
        worker,
    }
}

/// The worker the tests drive: over `store` and `rules`, on the manual clock.
fn test_worker(
    store: &Arc<SqliteStore>,
    rules: Arc<RuleHost>,
    executor: Recording,
    clock: &Arc<ManualClock>,
    metrics: Arc<Metrics>,
) -> Worker<Recording> {
    Worker {
        store: Arc::clone(store) as Arc<dyn Store>,
        rules,
        executor,
        clock: Arc::clone(clock) as Arc<dyn Clock>,
        app_id: Some(4242),
        coalesce: COALESCE,
        max_attempts: 3,
        defer_recheck: DEFER_RECHECK,
        keep_done: Duration::from_secs(3600),
        metrics,
        busy: Arc::new(super::super::Busy::default()),
        concurrency: 4,
        in_flight: Default::default(),
        recorder: Default::default(),
    }
}

impl Harness {
    /// The shipped packs, a deal linked to an opportunity in `review` status.
    fn shipped(review: &str) -> Harness {
        let dir = repo("rules");
        let h = harness(
            &dir,
            load_dir(&dir).unwrap(),
            "2026-11-28T12:00:00Z".parse().unwrap(),
        );
        let mut world = h.worker.executor.world.lock().unwrap();
        world.deals.insert(
            "101".into(),
            serde_json::from_value(json!({"id": "101", "properties": {
                "dealname": "Acme data platform", "dealstage": "appointmentscheduled",
                "closedate": "2026-12-31T00:00:00.000Z", "amount": "10000",
                "description": "Acme needs to consolidate five data silos into one governed lake",
                "deal_currency_code": "USD", "aws_opportunity_id": "O1234567",
                "hubspot_owner_id": "77"}}))
            .unwrap(),
        );
        world.opportunities.insert(
            "O1234567".into(),
            json!({"Catalog": "Sandbox", "Id": "O1234567", "PartnerOpportunityIdentifier": "101",
                "LastModifiedDate": "2026-11-01T00:00:00Z",
                "LifeCycle": {"Stage": "Prospect", "ReviewStatus": review, "TargetCloseDate": "2026-12-31"},
                "Project": {"Title": "Acme data platform",
                    "CustomerBusinessProblem": "Acme needs to consolidate five data silos into one governed lake",
                    "ExpectedCustomerSpend": [{"Amount": "10000", "CurrencyCode": "USD",
                        "Frequency": "Monthly", "TargetCompany": "AWS"}]}}),
        );
        drop(world);
        h
    }

    /// HubSpot reports `property` of deal 101 changed to `value`.
    fn edit(&self, event_id: u64, property: &str, value: &str) {
        self.edit_from(event_id, property, value, json!({}));
    }

    fn edit_from(&self, event_id: u64, property: &str, value: &str, extra: Value) {
        self.worker
            .executor
            .world
            .lock()
            .unwrap()
            .deals
            .get_mut("101")
            .unwrap()
            .properties
            .insert(property.into(), json!(value));
        let mut hook = json!({"subscriptionType": "deal.propertyChange", "objectId": 101,
            "propertyName": property, "propertyValue": value, "eventId": event_id,
            "occurredAt": self.clock.now_ms()});
        hook.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let event = Event::from_hubspot(&hook).unwrap();
        let key = ordering_key(&event);
        self.store
            .accept(&[(event, key)], self.clock.now_ms())
            .unwrap();
    }

    async fn tick(&self) -> usize {
        let (_stop, stopping) = tokio::sync::watch::channel(false);
        self.worker.tick(&stopping).await.unwrap()
    }

    fn later(&self, by: Duration) {
        self.clock.advance(by);
    }

    fn stage(&self) -> Value {
        self.worker.executor.world.lock().unwrap().opportunities["O1234567"]["LifeCycle"]["Stage"]
            .clone()
    }
}

#[tokio::test]
async fn quick_edits_of_one_deal_are_one_write_once_the_window_has_passed() {
    let h = Harness::shipped("Approved");
    h.edit(1, "dealstage", "qualifiedtobuy");
    h.later(Duration::from_millis(500));
    h.edit(2, "dealstage", "presentationscheduled");
    assert_eq!(h.tick().await, 0, "nothing is claimed inside the window");
    assert!(h.worker.executor.asked().is_empty());
    h.later(COALESCE);
    assert_eq!(h.tick().await, 1);
    let updates: Vec<Effect> = h
        .worker
        .executor
        .asked()
        .into_iter()
        .filter(|e| e.kind() == "UpdateOpportunity")
        .collect();
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert_eq!(h.stage(), "Technical Validation");
    assert_eq!(h.store.stats().unwrap().done, 2);
}

#[tokio::test]
async fn a_backlog_of_one_deal_is_one_run_with_one_read_of_each_side_and_one_write() {
    let h = Harness::shipped("Approved");
    // Ten minutes of amount edits, one every 2 s, waiting while the worker was busy
    // elsewhere (an import, a workflow over many deals): far more than one window.
    for i in 0..300u64 {
        h.edit(i + 1, "amount", &(20_000 + i).to_string());
        h.later(Duration::from_secs(2));
    }
    assert_eq!(h.tick().await, 1, "one batch");
    let stats = h.store.stats().unwrap();
    assert_eq!((stats.pending, stats.done), (0, 300), "{stats:?}");
    let reads = h.worker.executor.reads.lock().unwrap().clone();
    assert_eq!(
        reads.iter().filter(|r| *r == "deal:101").count(),
        1,
        "{reads:?}"
    );
    assert_eq!(
        reads
            .iter()
            .filter(|r| *r == "opportunity:O1234567")
            .count(),
        1,
        "{reads:?}"
    );
    let updates = h
        .worker
        .executor
        .asked_kinds()
        .into_iter()
        .filter(|k| *k == "UpdateOpportunity")
        .count();
    assert_eq!(updates, 1);
    let world = h.worker.executor.world.lock().unwrap();
    assert_eq!(
        world.opportunities["O1234567"]["Project"]["ExpectedCustomerSpend"][0]["Amount"], "20299",
        "the last edit is what lands"
    );
}

#[tokio::test]
async fn a_store_error_mid_pass_puts_the_claimed_events_back_in_line() {
    let h = Harness::shipped("Approved");
    // The store refuses to settle, as a full disk would: a trigger makes SQLite
    // abort the delete that marks events applied.
    let db = rusqlite::Connection::open(h.dir.path().join("pcsync.db")).unwrap();
    db.execute_batch(
        "CREATE TRIGGER full_disk BEFORE DELETE ON work BEGIN SELECT RAISE(ABORT, 'disk full'); END",
    )
    .unwrap();
    h.edit(1, "dealstage", "qualifiedtobuy");
    h.later(COALESCE);
    let (_stop, stopping) = tokio::sync::watch::channel(false);
    let failed = h.worker.tick(&stopping).await;
    assert!(failed.is_err(), "the pass reports the store error");
    let stats = h.store.stats().unwrap();
    assert_eq!((stats.running, stats.pending), (0, 1), "{stats:?}");

    // Once the disk has room, the event and the deal's later edits go through.
    db.execute_batch("DROP TRIGGER full_disk").unwrap();
    h.edit(2, "dealstage", "presentationscheduled");
    h.later(COALESCE);
    assert_eq!(h.tick().await, 1);
    assert_eq!(h.stage(), "Technical Validation");
    let stats = h.store.stats().unwrap();
    assert_eq!(
        (stats.running, stats.pending, stats.done),
        (0, 0, 2),
        "{stats:?}"
    );
}

#[tokio::test]
async fn a_partner_identifier_that_is_no_deal_id_is_not_followed() {
    let h = Harness::shipped("Approved");
    updated_with_partner_id(&h, "1/../../../../crm/v3/owners/");
    h.later(COALESCE);
    h.tick().await;
    // The deal is found by its link instead, and the event is applied.
    let stats = h.store.stats().unwrap();
    assert_eq!(
        (stats.done, stats.dead, stats.pending),
        (1, 0, 0),
        "{stats:?} {:?}",
        h.store.dead_letters()
    );
}

#[tokio::test]
async fn a_slow_call_for_one_deal_does_not_hold_up_another() {
    let h = Harness::shipped("Approved");
    {
        let mut world = h.worker.executor.world.lock().unwrap();
        let mut other = world.deals["101"].clone();
        other.id = "102".into();
        other
            .properties
            .insert("aws_opportunity_id".into(), json!("O7654321"));
        world.deals.insert("102".into(), other);
        let mut opportunity = world.opportunities["O1234567"].clone();
        opportunity["Id"] = json!("O7654321");
        world.opportunities.insert("O7654321".into(), opportunity);
    }
    let gate = Arc::new(tokio::sync::Notify::new());
    *h.worker.executor.hold.lock().unwrap() = Some(("O1234567".into(), Arc::clone(&gate)));
    h.edit(1, "dealstage", "qualifiedtobuy");
    let hook = json!({"subscriptionType": "deal.propertyChange", "objectId": 102,
        "propertyName": "dealstage", "propertyValue": "qualifiedtobuy", "eventId": 2,
        "occurredAt": h.clock.now_ms()});
    h.worker
        .executor
        .world
        .lock()
        .unwrap()
        .deals
        .get_mut("102")
        .unwrap()
        .properties
        .insert("dealstage".into(), json!("qualifiedtobuy"));
    let event = Event::from_hubspot(&hook).unwrap();
    let key = ordering_key(&event);
    h.store.accept(&[(event, key)], h.clock.now_ms()).unwrap();
    h.later(COALESCE);

    let updated =
        |id: &str| {
            h.worker.executor.asked().iter().any(
                |e| matches!(e, Effect::UpdateOpportunity { id: updated, .. } if updated == id),
            )
        };
    let watch = async {
        // Deal 102's write goes out while deal 101's call still hangs.
        for _ in 0..500 {
            if updated("O7654321") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (other, held) = (updated("O7654321"), updated("O1234567"));
        gate.notify_one();
        assert!(
            other && !held,
            "deal 102 written: {other}, deal 101 written: {held}"
        );
    };
    let (ticked, ()) = tokio::join!(h.tick(), watch);
    assert_eq!(ticked, 2);
    assert!(
        updated("O1234567"),
        "deal 101's write finishes once its call answers"
    );
    assert_eq!(h.store.stats().unwrap().done, 2);
}

#[tokio::test]
async fn a_throttled_write_is_retried_after_its_backoff_and_not_before() {
    let h = Harness::shipped("Approved");
    h.worker
        .executor
        .fail_next("UpdateOpportunity", retryable("ThrottlingException"));
    h.edit(1, "dealstage", "qualifiedtobuy");
    h.later(COALESCE);
    h.tick().await;
    assert_eq!(h.stage(), "Prospect");
    assert_eq!(h.store.stats().unwrap().pending, 1);
    // The first backoff is 1.5 to 2 s: not yet due at 1 s, due at 2 s.
    h.later(Duration::from_secs(1));
    assert_eq!(h.tick().await, 0);
    h.later(Duration::from_secs(1) + COALESCE);
    assert_eq!(h.tick().await, 1);
    assert_eq!(h.stage(), "Qualified");
    assert_eq!(h.store.stats().unwrap().done, 1);
}

#[tokio::test]
async fn an_edit_during_review_waits_and_lands_when_the_opportunity_wakes_it() {
    let h = Harness::shipped("Submitted");
    h.edit(1, "dealstage", "qualifiedtobuy");
    h.later(COALESCE);
    h.tick().await;
    assert_eq!(h.stage(), "Prospect");
    let deferred = h.store.deferred(10).unwrap();
    assert_eq!(deferred.len(), 1);
    assert!(
        deferred[0]
            .reason
            .starts_with("deal-update-sync: AWS is reviewing"),
        "{deferred:?}"
    );
    // Not due before its re-check.
    h.later(Duration::from_secs(10));
    assert_eq!(h.tick().await, 0);
    // AWS approves: its event about the opportunity wakes the deal's edit.
    h.worker
        .executor
        .world
        .lock()
        .unwrap()
        .opportunities
        .get_mut("O1234567")
        .unwrap()["LifeCycle"]["ReviewStatus"] = json!("Approved");
    let event = Event::from_value(
        &json!({"eventbridge": {"version": "0", "id": "eb-1", "source": "aws.partnercentral-selling",
            "detail-type": "Opportunity Updated", "time": "2026-11-28T12:00:30Z",
            "detail": {"catalog": "Sandbox", "opportunity": {"identifier": "O1234567"}}}}),
        h.clock.now(),
    )
    .unwrap();
    let key = ordering_key(&event);
    h.store.accept(&[(event, key)], h.clock.now_ms()).unwrap();
    h.later(COALESCE);
    h.tick().await;
    // The woken edit is due, long before its re-check, once the window has passed.
    assert!(h.store.deferred(10).unwrap().is_empty());
    assert_eq!(h.store.stats().unwrap().pending, 1);
    h.later(COALESCE);
    h.tick().await;
    assert_eq!(h.stage(), "Qualified");
    assert_eq!(h.store.stats().unwrap().done, 2);
}

#[tokio::test]
async fn a_refused_write_is_dead_lettered_with_its_reason_and_on_error_runs() {
    let h = Harness::shipped("Approved");
    h.worker.executor.fail_next(
        "UpdateOpportunity",
        ExecError::permanent("ValidationException: Stage is not valid"),
    );
    h.edit(1, "dealstage", "qualifiedtobuy");
    h.later(COALESCE);
    h.tick().await;
    let dead = h.store.dead_letters().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].reason,
        "deal-update-sync: ValidationException: Stage is not valid"
    );
    let world = h.worker.executor.world.lock().unwrap();
    assert_eq!(
        world.deals["101"].property("aws_sync_status").as_deref(),
        Some("error: ValidationException: Stage is not valid")
    );
}

#[tokio::test]
async fn retries_that_exhaust_max_attempts_end_in_the_dead_letter_list() {
    let h = Harness::shipped("Approved");
    for _ in 0..3 {
        h.worker
            .executor
            .fail_next("UpdateOpportunity", retryable("HTTP 503"));
    }
    h.edit(1, "dealstage", "qualifiedtobuy");
    for _ in 0..3 {
        h.later(Duration::from_secs(600));
        h.tick().await;
    }
    let dead = h.store.dead_letters().unwrap();
    assert_eq!(dead.len(), 1, "{:?}", h.store.stats());
    assert!(
        dead[0].reason.starts_with("gave up after 3 attempts"),
        "{}",
        dead[0].reason
    );
}

#[tokio::test]
async fn edits_that_joined_a_failing_batch_keep_their_own_tries() {
    let h = Harness::shipped("Approved");
    for _ in 0..3 {
        h.worker
            .executor
            .fail_next("UpdateOpportunity", retryable("HTTP 503"));
    }
    h.edit(1, "dealstage", "qualifiedtobuy");
    h.later(Duration::from_secs(600));
    h.tick().await;
    // During the backoff the rep edits the amount; the retry takes it along.
    h.edit(2, "amount", "25000");
    for _ in 0..2 {
        h.later(Duration::from_secs(600));
        h.tick().await;
    }
    // The first edit had its three tries; the second only two, and is still in line.
    let dead = h.store.dead_letters().unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].reason.starts_with("gave up after 3 attempts"));
    assert_eq!(h.store.stats().unwrap().pending, 1);
    h.later(Duration::from_secs(600));
    h.tick().await;
    let stats = h.store.stats().unwrap();
    assert_eq!((stats.pending, stats.dead), (0, 1), "{stats:?}");
    let world = h.worker.executor.world.lock().unwrap();
    assert_eq!(
        world.opportunities["O1234567"]["Project"]["ExpectedCustomerSpend"][0]["Amount"],
        "25000"
    );
}

#[tokio::test]
async fn pcsyncs_own_writes_coming_back_are_dropped() {
    let h = Harness::shipped("Approved");
    // From the app itself.
    h.edit_from(
        1,
        "dealstage",
        "qualifiedtobuy",
        json!({"changeSource": "INTEGRATION", "sourceId": "4242"}),
    );
    // A value pcsync wrote itself.
    h.store
        .remember_write("deal:101", "closedate", "2027-01-31", h.clock.now_ms())
        .unwrap();
    h.edit(2, "closedate", "2027-01-31");
    h.later(COALESCE);
    h.tick().await;
    assert!(h.worker.executor.asked().is_empty());
    assert_eq!(h.store.stats().unwrap().done, 2);
}

#[tokio::test]
async fn a_retried_batch_finishes_its_follow_ups_without_repeating_a_note() {
    let h = Harness::shipped("Approved");
    // The update lands and the status is set; the "synced" note's first try fails.
    h.worker
        .executor
        .fail_next("CreateNote", retryable("HubSpot 502"));
    h.edit(1, "dealstage", "qualifiedtobuy");
    h.later(COALESCE);
    h.tick().await;
    assert_eq!(
        h.worker
            .executor
            .take()
            .iter()
            .map(Effect::kind)
            .collect::<Vec<_>>(),
        ["UpdateOpportunity", "UpdateDeal", "CreateNote"]
    );
    h.later(Duration::from_secs(3) + COALESCE);
    h.tick().await;
    // No second update from a fresh plan; the note is written once.
    assert_eq!(
        h.worker.executor.asked_kinds(),
        ["UpdateDeal", "CreateNote"]
    );
    assert_eq!(h.store.stats().unwrap().done, 1);
    // A later try of a batch whose note was done does not write it again.
    h.worker
        .executor
        .fail_next("CreateNote", retryable("HubSpot 502"));
    h.edit(2, "dealstage", "presentationscheduled");
    h.later(COALESCE);
    h.tick().await;
    h.worker.executor.take();
    h.later(Duration::from_secs(3) + COALESCE);
    h.tick().await;
    assert_eq!(
        h.worker
            .executor
            .asked_kinds()
            .iter()
            .filter(|k| **k == "CreateNote")
            .count(),
        1
    );
}

#[tokio::test]
async fn a_value_the_stage_table_lacks_is_noted_and_settles_nothing() {
    // Regression: the service ran on_success after such a note and "no field
    // changed"; `pcsync test` did not.
    let h = Harness::shipped("Approved");
    h.edit(1, "dealstage", "galactic_stage");
    h.later(COALESCE);
    h.tick().await;
    let asked = h.worker.executor.asked();
    assert_eq!(asked.len(), 1, "{asked:?}");
    let Effect::CreateNote { body, .. } = &asked[0] else {
        panic!("{asked:?}")
    };
    assert!(body.contains("galactic_stage"), "{body}");
    assert_eq!(h.store.stats().unwrap().done, 1);
}

#[test]
fn the_journal_key_is_a_specified_digest() {
    let event = Event::from_hubspot(&json!({"subscriptionType": "deal.creation",
        "objectId": 101, "eventId": 7, "occurredAt": 1764331200000u64}))
    .unwrap();
    let note = Effect::CreateNote {
        pack: "p".into(),
        deal_id: "101".into(),
        body: "🔄 Synced\nmore".into(),
    };
    let key = super::run::JournalKey::of(&event, "p", 3, &note).unwrap();
    // SHA-256 of "note\0101\0🔄 Synced", first 16 bytes: the same in every build.
    use sha2::Digest;
    let digest = sha2::Sha256::digest("note\u{0}101\u{0}🔄 Synced".as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(key.key, format!("v2|{}|p|3|{hex}", event.id));
}

/// Drives one golden step through the worker: each triggered pack runs in
/// `run_pack` against a fresh store, with the step's context, and the step's outcome
/// as what the executor answers. The plan reported is what the executor was asked
/// and the store recorded, with the pack's verdict between its writes and its
/// follow-ups, as `pcsync test` shows it.
fn drive(rules: &RuleSet, event: &Event, ctx: &Context, now: Timestamp, outcome: &Outcome) -> Plan {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // The worker's own rule host is not used: run_pack is given the step's rules.
        let shipped = repo("rules");
        let h = harness(&shipped, load_dir(&shipped).unwrap(), now);
        let mut plan = Plan::default();
        for pack in triggered_packs(rules, event) {
            let planned = plan_pack(pack, rules, event, ctx, now);
            // The outcome is how the pack's own writes end; its follow-ups succeed.
            match outcome {
                Outcome::Failure { message } if !planned.writes.is_empty() => h
                    .worker
                    .executor
                    .fail_next("*", ExecError::permanent(message.clone())),
                Outcome::Failure { .. } => {}
                Outcome::Success { result } => {
                    *h.worker.executor.answer.lock().unwrap() = Some(result.clone())
                }
            }
            let settled = h.worker.run_pack(pack, rules, event, ctx, &mut false).await;
            h.worker.executor.failures.lock().unwrap().clear();
            let asked = h.worker.executor.take();
            let (writes, follow_ups) = asked.split_at(planned.writes.len().min(asked.len()));
            plan.effects
                .extend(writes.iter().cloned().map(PlanEntry::Write));
            plan.effects
                .extend(planned.decision().map(PlanEntry::Decision));
            plan.trace.extend(planned.trace.iter().cloned());
            for id in opportunity_ids(event, ctx, &pack.pack.needs.link_property) {
                if let Some(state) = h.store.pack_states(&id).unwrap().get(&pack.pack.name) {
                    plan.effects
                        .push(PlanEntry::Decision(Decision::RecordState {
                            pack: pack.pack.name.clone(),
                            record: pcsync_engine::StateRecord {
                                opportunity_id: id.clone(),
                                watches: state.watches.clone(),
                                marks: state.marks.clone(),
                                sent: state.sent.clone(),
                            },
                        }));
                }
            }
            plan.effects
                .extend(follow_ups.iter().cloned().map(PlanEntry::Write));
            let wrote_and_failed =
                !planned.writes.is_empty() && matches!(outcome, Outcome::Failure { .. });
            let expected = match &planned.verdict {
                Verdict::Fail { .. } => "dead",
                _ if wrote_and_failed => "dead",
                Verdict::Defer { .. } => "deferred",
                _ => "done",
            };
            let ended = match settled {
                Settled::Done | Settled::Untouched => "done",
                Settled::Deferred(_) => "deferred",
                Settled::Dead(_) => "dead",
                other => panic!("{}: the worker ended with {other:?}", pack.pack.name),
            };
            assert_eq!(ended, expected, "{}: how the batch ends", pack.pack.name);
        }
        plan
    })
}

/// Where a pack's recorded state may be kept: the ids the planner may have used.
fn opportunity_ids(event: &Event, ctx: &Context, link: &str) -> Vec<String> {
    let mut ids: Vec<String> = [
        event.opportunity_id.clone(),
        ctx.opportunity
            .as_ref()
            .and_then(|o| o["Id"].as_str())
            .map(str::to_string),
        ctx.deal.as_ref().and_then(|d| d.property(link)),
    ]
    .into_iter()
    .flatten()
    .filter(|id| !id.is_empty())
    .collect();
    ids.dedup();
    ids
}

#[test]
fn every_golden_case_gives_the_same_effects_through_the_worker() {
    let files = golden::test_files(&[repo("rules/tests"), repo("tests/language/tests")]).unwrap();
    assert!(files.len() >= 7, "{files:?}");
    let mut cache = golden::RuleCache::default();
    let mut steps = 0;
    let mut failures = Vec::new();
    for file in &files {
        let result = golden::run_file_with(file, None, &mut cache, &mut drive);
        assert!(
            result.error.is_none(),
            "{}: {:?}",
            file.display(),
            result.error
        );
        for case in &result.cases {
            for step in &case.steps {
                steps += 1;
                if let Some(failure) = &step.failure {
                    failures.push(format!(
                        "{} :: {} ({})\n{failure}",
                        file.display(),
                        case.name,
                        step.pointer
                    ));
                }
            }
        }
    }
    assert!(steps >= 60, "only {steps} steps ran");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[tokio::test]
async fn batches_about_one_opportunity_take_turns_and_read_again() {
    let in_flight = super::InFlight::default();
    let since = in_flight.now();
    let first = in_flight
        .take(vec!["deal:101".into(), "opportunity:O1".into()], since)
        .await
        .ok()
        .expect("free: taken, and nothing changed since");
    // Another deal is free; the same opportunity from its own batch must wait.
    assert!(in_flight.take(vec!["deal:102".into()], since).await.is_ok());
    let second = in_flight.take(
        vec!["opportunity:O1".into(), "opportunity:O1".into()],
        since,
    );
    tokio::pin!(second);
    assert!(
        futures_util::poll!(second.as_mut()).is_pending(),
        "waits while the deal's batch works on the opportunity"
    );
    drop(first);
    assert!(second.await.is_err(), "it waited, so it reads again");
    // A batch that read before another finished with the subject reads again, even
    // though it did not have to wait.
    let before = in_flight.now();
    drop(in_flight.take(vec!["opportunity:O2".into()], before).await);
    assert!(
        in_flight
            .take(vec!["opportunity:O2".into()], before)
            .await
            .is_err()
    );
    let after = in_flight.now();
    assert!(
        in_flight
            .take(vec!["opportunity:O2".into()], after)
            .await
            .is_ok()
    );
}

/// HubSpot's answer when the account's daily limit is spent (reference §5.3), as
/// the client reads it at `now`, the account's time zone being UTC.
fn hubspot_daily_limit(now: Timestamp) -> ExecError {
    ExecError::from(pcsync_adapters::hubspot::client::HubSpotError::Status {
        status: 429,
        category: Some("RATE_LIMIT".into()),
        message: "You have reached your daily limit.".into(),
        retryable: false,
        retry_after: Some(pcsync_adapters::hubspot::client::until_midnight(
            now,
            &jiff::tz::TimeZone::UTC,
        )),
        policy: Some("DAILY".into()),
    })
}

#[tokio::test]
async fn hubspots_daily_limit_waits_for_midnight_without_counting_an_attempt() {
    let h = Harness::shipped("Approved");
    h.edit(1, "dealstage", "qualifiedtobuy");
    h.later(COALESCE);
    // The follow-up on the deal meets the daily limit at every reset, more often
    // than max_attempts (3): it waits each time, and is never dead-lettered.
    for round in 0..4 {
        h.worker
            .executor
            .fail_next("UpdateDeal", hubspot_daily_limit(h.clock.now()));
        assert_eq!(h.tick().await, 1, "round {round}: {:?}", h.store.stats());
        let deferred = h.store.deferred(10).unwrap();
        assert_eq!(deferred.len(), 1, "{:?}", h.store.stats());
        assert!(
            deferred[0].reason.contains("daily limit"),
            "{}",
            deferred[0].reason
        );
        let midnight = h
            .clock
            .now()
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .date()
            .tomorrow()
            .unwrap()
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .unwrap()
            .timestamp();
        assert_eq!(deferred[0].recheck_at, midnight.as_millisecond());
        // Not before the reset.
        let wait = Duration::try_from(h.clock.now().duration_until(midnight)).unwrap();
        h.later(wait - Duration::from_secs(1));
        assert_eq!(h.tick().await, 0);
        // Then, as any event due again, once the coalescing window has passed.
        h.later(Duration::from_secs(1) + COALESCE);
    }
    assert!(h.store.dead_letters().unwrap().is_empty());
    assert_eq!(h.tick().await, 1);
    assert_eq!(h.store.stats().unwrap().done, 1);
    let world = h.worker.executor.world.lock().unwrap();
    assert_eq!(
        world.deals["101"].property("aws_sync_status").as_deref(),
        Some("synced")
    );
}

#[tokio::test]
async fn without_an_sns_topic_notifications_are_tasks_and_notes_and_the_state_is_recorded() {
    let mut h = Harness::shipped("Approved");
    let dir = repo("rules");
    let rules = load_dir(&dir).unwrap();
    h.worker.rules = Arc::new(
        RuleHost::new(&dir, load_dir(&dir).unwrap(), Arc::clone(&h.worker.metrics))
            .with_channels(crate::service::channels::Channels { sns: false }),
    );
    let pack = rules
        .packs
        .iter()
        .find(|p| p.pack.name == "smart-notifications")
        .unwrap();
    // Since the last run: the score went 60 → 90, the engagement level Low → High,
    // and AWS approved.
    let watches: IndexMap<String, Value> = [
        ("score", json!(60)),
        ("engagement", json!("Low")),
        ("review", json!("Submitted")),
        ("seller", json!([])),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let (deal, opportunity) = {
        let world = h.worker.executor.world.lock().unwrap();
        (
            world.deals["101"].clone(),
            world.opportunities["O1234567"].clone(),
        )
    };
    let ctx = Context {
        deal: Some(deal),
        opportunity: Some(opportunity),
        aws_summary: Some(json!({"Insights": {"OpportunityQuality": {"Score": 90},
            "EngagementScore": "High"}, "OpportunityTeam": []})),
        previous: [(
            "smart-notifications".to_string(),
            pcsync_engine::PackState {
                marks: watches.clone(),
                watches,
                sent: Vec::new(),
            },
        )]
        .into_iter()
        .collect(),
        ..Context::default()
    };
    // As the API executor without a topic answers a message it is asked to send.
    h.worker.executor.fail_next(
        "Publish",
        ExecError::permanent(
            "a pack publishes a notification but the config has no notifications.sns_topic_arn",
        ),
    );
    let event = Event::from_value(
        &json!({"eventbridge": {"version": "0", "id": "eb-1", "source": "aws.partnercentral-selling",
            "detail-type": "Opportunity Updated", "time": "2026-11-28T12:00:00Z",
            "detail": {"catalog": "Sandbox", "opportunity": {"identifier": "O1234567"}}}}),
        h.clock.now(),
    )
    .unwrap();
    let settled = h
        .worker
        .run_pack(pack, &rules, &event, &ctx, &mut false)
        .await;
    assert_eq!(settled, Settled::Done);
    // Each notification once, as a task and a note; no message was asked for.
    let kinds = h.worker.executor.asked_kinds();
    assert_eq!(
        kinds.iter().filter(|k| **k == "CreateTask").count(),
        3,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "CreateNote").count(),
        3,
        "{kinds:?}"
    );
    assert!(!kinds.contains(&"Publish"), "{kinds:?}");
    // The state is recorded: the next run sees no change.
    let states = h.store.pack_states("O1234567").unwrap();
    let state = &states["smart-notifications"];
    assert_eq!(state.watches["review"], "Approved");
    assert_eq!(state.watches["score"], 90);
    assert_eq!(state.sent.len(), 3, "{:?}", state.sent);
}

/// The shipped packs with deal-creation associating `S-1234567` and submitting, and
/// deal 102 (at `stage`) of a complete company, not yet in Partner Central.
fn submitting(stage: &str) -> (tempfile::TempDir, Harness) {
    let rules = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo("rules")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let text = std::fs::read_to_string(&path).unwrap();
            let text = text
                .replace("submit_to_aws: false", "submit_to_aws: true")
                .replace(r#"solution_id: """#, r#"solution_id: "S-1234567""#);
            std::fs::write(rules.path().join(path.file_name().unwrap()), text).unwrap();
        }
    }
    let h = harness(
        rules.path(),
        load_dir(rules.path()).unwrap(),
        "2026-11-28T12:00:00Z".parse().unwrap(),
    );
    let mut world = h.worker.executor.world.lock().unwrap();
    world.deals.insert(
        "102".into(),
        serde_json::from_value(json!({"id": "102", "properties": {
            "dealname": "Acme order system", "dealstage": stage,
            "closedate": "2027-06-30T00:00:00.000Z", "amount": "9000",
            "description": "The customer moves its order system onto AWS this year",
            "deal_currency_code": "USD", "aws_opportunity_id": "", "hubspot_owner_id": "77"}}))
        .unwrap(),
    );
    world.companies.insert(
        "102".into(),
        serde_json::from_value(json!({"id": "9002", "properties": {
            "name": "Acme Corporation", "domain": "acme.example", "industry": "RETAIL",
            "country": "United States", "state": "MA", "city": "Boston", "zip": "02110",
            "address": "1 Federal St"}}))
        .unwrap(),
    );
    drop(world);
    (rules, h)
}

impl Harness {
    /// HubSpot reports deal 102 created.
    fn deal_created(&self, event_id: u64) {
        let hook = json!({"subscriptionType": "deal.creation", "objectId": 102,
            "eventId": event_id, "occurredAt": self.clock.now_ms()});
        let event = Event::from_hubspot(&hook).unwrap();
        let key = ordering_key(&event);
        self.store
            .accept(&[(event, key)], self.clock.now_ms())
            .unwrap();
    }

    /// HubSpot reports `property` of deal 102 changed to `value`.
    fn edit_102(&self, event_id: u64, property: &str, value: &str) {
        self.worker
            .executor
            .world
            .lock()
            .unwrap()
            .deals
            .get_mut("102")
            .unwrap()
            .properties
            .insert(property.into(), json!(value));
        let hook = json!({"subscriptionType": "deal.propertyChange", "objectId": 102,
            "propertyName": property, "propertyValue": value, "eventId": event_id,
            "occurredAt": self.clock.now_ms()});
        let event = Event::from_hubspot(&hook).unwrap();
        let key = ordering_key(&event);
        self.store
            .accept(&[(event, key)], self.clock.now_ms())
            .unwrap();
    }

    fn deal_102(&self, property: &str) -> Option<String> {
        self.worker.executor.world.lock().unwrap().deals["102"].property(property)
    }

    /// The service stops and starts again on the same state file: a new store and
    /// worker, the same remote world and time.
    fn restart(self) -> Harness {
        let Harness {
            dir,
            store,
            clock,
            worker,
        } = self;
        let Worker {
            executor,
            rules,
            metrics,
            ..
        } = worker;
        drop(store);
        let store = Arc::new(SqliteStore::open(&dir.path().join("pcsync.db")).unwrap());
        store.recover(clock.now_ms()).unwrap();
        let worker = test_worker(&store, rules, executor, &clock, metrics);
        Harness {
            dir,
            store,
            clock,
            worker,
        }
    }
}

#[tokio::test]
async fn a_submission_task_is_followed_across_batches_and_a_restart_and_a_late_failure_reaches_the_deal()
 {
    let (_rules, h) = submitting("qualifiedtobuy");
    h.deal_created(1);
    h.later(COALESCE);
    assert_eq!(h.tick().await, 1);
    // The id is on the deal before the steps; the task AWS started is running.
    assert_eq!(
        h.worker
            .executor
            .take()
            .iter()
            .map(Effect::kind)
            .collect::<Vec<_>>(),
        [
            "CreateOpportunity",
            "UpdateDeal",
            "AssociateOpportunity",
            "StartEngagement"
        ]
    );
    assert_eq!(
        h.deal_102("aws_opportunity_id").as_deref(),
        Some("O9000001")
    );
    assert_eq!(h.deal_102("aws_sync_status").as_deref(), Some("created"));
    assert_eq!(
        h.store.stats().unwrap().deferred,
        1,
        "the event waits for the task"
    );

    // A restart: the task is followed from the store, not started again.
    let h = h.restart();
    h.later(Duration::from_secs(1) + COALESCE);
    assert_eq!(h.tick().await, 1);
    assert!(
        h.worker.executor.take().is_empty(),
        "still running: nothing written"
    );
    let looked = |h: &Harness| {
        h.worker
            .executor
            .reads
            .lock()
            .unwrap()
            .iter()
            .filter(|r| *r == "task:task-0000000000001")
            .count()
    };
    assert_eq!(looked(&h), 1);
    assert_eq!(h.deal_102("aws_sync_status").as_deref(), Some("created"));

    // Much later than any in-batch polling would wait, AWS fails it.
    h.later(Duration::from_secs(45));
    {
        let mut world = h.worker.executor.world.lock().unwrap();
        let task = world.tasks.get_mut("task-0000000000001").unwrap();
        task["TaskStatus"] = json!("FAILED");
        task["ReasonCode"] = json!("OpportunitySubmissionFailed");
        task["Message"] = json!("AWS could not verify the customer's website");
    }
    h.later(COALESCE);
    assert_eq!(h.tick().await, 1);
    assert_eq!(looked(&h), 2);
    let asked = h.worker.executor.take();
    assert_eq!(
        asked.iter().map(Effect::kind).collect::<Vec<_>>(),
        ["UpdateDeal", "CreateNote"],
        "{asked:?}"
    );
    assert_eq!(
        h.deal_102("aws_sync_status").as_deref(),
        Some("created; submission failed: AWS could not verify the customer's website")
    );
    let Effect::CreateNote { body, .. } = &asked[1] else {
        unreachable!()
    };
    assert!(body.contains("OpportunitySubmissionFailed"), "{body}");
    let stats = h.store.stats().unwrap();
    assert_eq!(
        (stats.deferred, stats.pending, stats.done),
        (0, 0, 1),
        "{stats:?}"
    );
    // Nothing is left to follow: a later edit of the deal makes no call to AWS.
    h.edit_102(
        2,
        "description",
        "The customer moves its order system and its data",
    );
    h.later(COALESCE);
    h.tick().await;
    assert!(!h.worker.executor.take().iter().any(|e| matches!(
        e,
        Effect::CreateOpportunity { .. } | Effect::StartEngagement { .. }
    )),);
}

#[tokio::test]
async fn a_submission_waits_at_prospect_and_starts_after_the_edit_that_qualifies_it() {
    let (_rules, h) = submitting("appointmentscheduled");
    h.deal_created(1);
    h.later(COALESCE);
    h.tick().await;
    assert_eq!(
        h.worker
            .executor
            .take()
            .iter()
            .map(Effect::kind)
            .collect::<Vec<_>>(),
        [
            "CreateOpportunity",
            "UpdateDeal",
            "AssociateOpportunity",
            "UpdateDeal"
        ]
    );
    let status = h.deal_102("aws_sync_status").unwrap();
    assert!(
        status.starts_with(
            "created; submission waits: AWS takes a submission from stage Qualified on"
        ),
        "{status}"
    );
    let stats = h.store.stats().unwrap();
    assert_eq!(
        (stats.deferred, stats.done),
        (0, 1),
        "nothing holds the deal's edits"
    );
    // An edit that does not move the stage: the submission still waits, told once.
    h.edit_102(2, "amount", "9500");
    h.later(COALESCE);
    h.tick().await;
    let asked = h.worker.executor.take();
    assert!(
        !asked.iter().any(|e| matches!(
            e,
            Effect::StartEngagement { .. } | Effect::CreateOpportunity { .. }
        )),
        "{asked:?}"
    );
    // The rep qualifies the deal: the update sync moves the stage, then the
    // submission starts, once.
    h.edit_102(3, "dealstage", "qualifiedtobuy");
    h.later(COALESCE);
    h.tick().await;
    let kinds: Vec<&str> = h.worker.executor.take().iter().map(Effect::kind).collect();
    let update = kinds
        .iter()
        .position(|k| *k == "UpdateOpportunity")
        .unwrap();
    let start = kinds.iter().position(|k| *k == "StartEngagement").unwrap();
    assert!(update < start, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "StartEngagement").count(), 1);
    h.worker
        .executor
        .world
        .lock()
        .unwrap()
        .tasks
        .get_mut("task-0000000000001")
        .unwrap()["TaskStatus"] = json!("COMPLETE");
    h.later(Duration::from_secs(1) + COALESCE);
    h.tick().await;
    assert_eq!(h.deal_102("aws_sync_status").as_deref(), Some("submitted"));
}

#[tokio::test]
async fn a_failed_association_leaves_the_link_is_retried_alone_and_a_refusal_reaches_the_deal() {
    // The link's write fails first: no step is taken before it is on the deal.
    let (_rules, h) = submitting("qualifiedtobuy");
    h.worker
        .executor
        .fail_next("UpdateDeal", retryable("HubSpot 502"));
    h.deal_created(1);
    h.later(COALESCE);
    h.tick().await;
    assert_eq!(
        h.worker
            .executor
            .take()
            .iter()
            .map(Effect::kind)
            .collect::<Vec<_>>(),
        ["CreateOpportunity", "UpdateDeal"]
    );
    h.later(Duration::from_secs(3) + COALESCE);
    h.tick().await;
    assert_eq!(
        h.worker
            .executor
            .take()
            .iter()
            .map(Effect::kind)
            .collect::<Vec<_>>(),
        ["UpdateDeal", "AssociateOpportunity", "StartEngagement"]
    );
    assert_eq!(
        h.deal_102("aws_opportunity_id").as_deref(),
        Some("O9000001")
    );

    let (_rules, h) = submitting("qualifiedtobuy");
    h.worker
        .executor
        .fail_next("AssociateOpportunity", retryable("InternalServerException"));
    h.deal_created(1);
    h.later(COALESCE);
    h.tick().await;
    assert_eq!(
        h.deal_102("aws_opportunity_id").as_deref(),
        Some("O9000001")
    );
    h.worker.executor.take();
    // The retry associates and submits; it creates nothing.
    h.later(Duration::from_secs(3) + COALESCE);
    h.tick().await;
    assert_eq!(
        h.worker
            .executor
            .take()
            .iter()
            .map(Effect::kind)
            .collect::<Vec<_>>(),
        ["AssociateOpportunity", "StartEngagement"]
    );

    // A solution AWS refuses for good: the status says so and the link stays.
    let (_rules, h) = submitting("qualifiedtobuy");
    h.worker.executor.fail_next(
        "AssociateOpportunity",
        ExecError::permanent("ResourceNotFoundException: Solution S-1234567 was not found"),
    );
    h.deal_created(1);
    h.later(COALESCE);
    h.tick().await;
    assert_eq!(
        h.deal_102("aws_opportunity_id").as_deref(),
        Some("O9000001")
    );
    assert_eq!(
        h.deal_102("aws_sync_status").as_deref(),
        Some(
            "error: AssociateOpportunity S-1234567: ResourceNotFoundException: Solution S-1234567 was not found"
        )
    );
    assert!(!h.worker.executor.asked_kinds().contains(&"StartEngagement"));
    assert_eq!(h.store.dead_letters().unwrap().len(), 1);
}

/// An AWS event for O1234567, whose partner identifier is no deal id: its deal is
/// found through CRM search by its link.
fn found_through_search(h: &Harness) {
    updated_with_partner_id(h, "partner-crm-7");
}

/// AWS announces `Opportunity Updated` for O1234567, which now has `partner_id` as
/// its PartnerOpportunityIdentifier.
fn updated_with_partner_id(h: &Harness, partner_id: &str) {
    h.worker
        .executor
        .world
        .lock()
        .unwrap()
        .opportunities
        .get_mut("O1234567")
        .unwrap()["PartnerOpportunityIdentifier"] = json!(partner_id);
    let event = Event::from_eventbridge(&json!({"id": "e-1", "detail-type": "Opportunity Updated",
        "time": "2026-11-28T12:00:00Z", "source": "aws.partnercentral-selling",
        "detail": {"catalog": "Sandbox", "opportunity": {"identifier": "O1234567"}}}))
    .unwrap();
    let key = ordering_key(&event);
    h.store.accept(&[(event, key)], h.clock.now_ms()).unwrap();
}

#[tokio::test]
async fn a_deal_found_through_search_that_misses_pcsyncs_own_write_is_read_by_id() {
    let h = Harness::shipped("Approved");
    // pcsync renamed the deal a moment ago; search's index still has the old name.
    let mut stale = h.worker.executor.world.lock().unwrap().deals.clone();
    h.worker.executor.world.lock().unwrap().deals["101"]
        .properties
        .insert("dealname".into(), json!("Acme data platform v2"));
    h.store
        .remember_write(
            "deal:101",
            "dealname",
            "Acme data platform v2",
            h.clock.now_ms(),
        )
        .unwrap();
    *h.worker.executor.searched.lock().unwrap() = Some(stale.clone());
    found_through_search(&h);
    h.later(COALESCE);
    h.tick().await;
    assert!(
        h.worker
            .executor
            .reads
            .lock()
            .unwrap()
            .contains(&"deal:101".to_string()),
        "{:?}",
        h.worker.executor.reads.lock().unwrap()
    );

    // Once search has caught up, the copy it found stands for the deal.
    let h2 = Harness::shipped("Approved");
    h2.store
        .remember_write(
            "deal:101",
            "dealname",
            "Acme data platform v2",
            h2.clock.now_ms(),
        )
        .unwrap();
    stale["101"]
        .properties
        .insert("dealname".into(), json!("Acme data platform v2"));
    h2.worker.executor.world.lock().unwrap().deals = stale.clone();
    *h2.worker.executor.searched.lock().unwrap() = Some(stale);
    found_through_search(&h2);
    h2.later(COALESCE);
    h2.tick().await;
    assert!(
        !h2.worker
            .executor
            .reads
            .lock()
            .unwrap()
            .contains(&"deal:101".to_string()),
        "{:?}",
        h2.worker.executor.reads.lock().unwrap()
    );
}

/// A batch is planned on its newest event; what a run says about "the edit that
/// brought it" holds for the batch's earlier edits too.
#[tokio::test]
async fn a_held_back_close_date_is_noted_when_a_later_edit_of_the_batch_is_planned() {
    let h = Harness::shipped("Pending Submission");
    h.edit(1, "closedate", "2024-01-15T00:00:00.000Z");
    h.edit(
        2,
        "description",
        "Acme needs to consolidate six data silos into one governed lake",
    );
    h.later(COALESCE + Duration::from_millis(10));
    h.tick().await;
    let asked = h.worker.executor.asked();
    let notes: Vec<&String> = asked
        .iter()
        .filter_map(|e| match e {
            Effect::CreateNote { body, .. } if body.contains("in the past") => Some(body),
            _ => None,
        })
        .collect();
    assert_eq!(notes.len(), 1, "{asked:#?}");
    assert!(
        asked
            .iter()
            .any(|e| matches!(e, Effect::UpdateOpportunity { changes, .. }
        if changes.iter().any(|c| c.field == "Project.CustomerBusinessProblem")))
    );
}
