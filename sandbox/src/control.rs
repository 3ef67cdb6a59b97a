//! The control API under `/_sandbox`, for tests and demos: seed data, act as AWS
//! (review, seller, scores, snapshots), inject faults, and read the recorded calls.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::hubspot::HubSpot;
use crate::partner_central::{PartnerCentral, ServiceError};

/// One call the sandbox answered.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Call {
    /// `partnercentral`, `hubspot`, `sns`.
    pub service: String,
    /// The operation (`UpdateOpportunity`) or `METHOD /path`.
    pub operation: String,
    /// The HTTP status answered.
    pub status: u16,
    /// The request body, parsed when it is JSON.
    pub request: Value,
}

/// A fault to inject into the next matching requests.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct Fault {
    /// The service (`partnercentral`, `hubspot`, `sns`).
    pub service: String,
    /// The operation, or a `METHOD /path` prefix; empty matches any.
    #[serde(default)]
    pub operation: String,
    /// How many requests it affects.
    #[serde(default = "one")]
    pub count: u32,
    /// Answer with this HTTP status (and an error body for the service).
    #[serde(default)]
    pub status: Option<u16>,
    /// Wait this long before answering.
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// Close the connection without an answer.
    #[serde(default)]
    pub drop: bool,
    /// Carry the request out, then close the connection without its answer (a write
    /// that happened although the caller saw it fail). Partner Central only.
    #[serde(default)]
    pub drop_after: bool,
    /// Headers added to the error answer, e.g. `Retry-After` on a HubSpot 429 or
    /// `x-amz-retry-after` on a Partner Central throttle.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub headers: std::collections::BTreeMap<String, String>,
    /// HubSpot only: the limit a 429 names in its body's `policyName` (`DAILY`, or
    /// `TEN_SECONDLY_ROLLING` when left out), with HubSpot's message for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_name: Option<String>,
}

fn one() -> u32 {
    1
}

/// Calls and faults, shared by every service of one sandbox.
#[derive(Debug, Default)]
pub struct Journal {
    calls: Mutex<Vec<Call>>,
    faults: Mutex<Vec<Fault>>,
}

impl Journal {
    /// Records a call.
    pub fn record(&self, call: Call) {
        self.calls.lock().expect("journal lock").push(call);
    }

    /// Every recorded call, oldest first.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("journal lock").clone()
    }

    /// How many uses of injected faults are left: 0 once every matching request has
    /// arrived (a delayed one is then being held).
    pub fn pending_faults(&self) -> u32 {
        let faults = self.faults.lock().expect("journal lock");
        faults.iter().map(|f| f.count).sum()
    }

    /// Adds a fault.
    pub fn inject(&self, fault: Fault) {
        self.faults.lock().expect("journal lock").push(fault);
    }

    /// Takes one use of the first fault matching this request, if any.
    pub fn take_fault(&self, service: &str, operation: &str) -> Option<Fault> {
        let mut faults = self.faults.lock().expect("journal lock");
        let i = faults.iter().position(|f| {
            f.service == service && f.count > 0 && operation.starts_with(&f.operation)
        })?;
        faults[i].count -= 1;
        let fault = faults[i].clone();
        if faults[i].count == 0 {
            faults.remove(i);
        }
        Some(fault)
    }
}

/// Applies a fault's delay; returns the response that replaces the real one, if any.
pub async fn apply_fault(
    fault: &Fault,
    error_body: impl FnOnce(u16) -> Response,
) -> Option<Response> {
    if let Some(ms) = fault.delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if fault.drop {
        return Some(dropped_connection());
    }
    let mut response = fault.status.map(error_body)?;
    for (name, value) in &fault.headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            axum::http::HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    Some(response)
}

/// A response whose body fails at once, so the server closes the connection
/// without a complete answer (the client sees a dropped connection).
pub(crate) fn dropped_connection() -> Response {
    struct Broken;
    impl http_body::Body for Broken {
        type Data = axum::body::Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
            std::task::Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "injected fault",
            ))))
        }
    }
    Response::builder()
        .status(StatusCode::OK)
        .header("content-length", "100")
        .body(axum::body::Body::new(Broken))
        .expect("a static response")
}

#[derive(Clone)]
struct Control {
    journal: Arc<Journal>,
    pc: Arc<PartnerCentral>,
    hs: Arc<HubSpot>,
    sns: Arc<crate::sns::Sns>,
}

/// The `/_sandbox` routes.
pub fn router(
    journal: Arc<Journal>,
    pc: Arc<PartnerCentral>,
    hs: Arc<HubSpot>,
    sns: Arc<crate::sns::Sns>,
) -> Router {
    Router::new()
        .route("/_sandbox/sns/messages", get(sns_messages))
        .route(
            "/_sandbox/hubspot/deals",
            get(hubspot_deals).post(hubspot_create_deal),
        )
        .route(
            "/_sandbox/hubspot/deals/{id}",
            axum::routing::patch(hubspot_edit_deal),
        )
        .route("/_sandbox/hubspot/companies", post(hubspot_create_company))
        .route(
            "/_sandbox/hubspot/companies/{id}",
            axum::routing::patch(hubspot_edit_company),
        )
        .route("/_sandbox/hubspot/{kind}", get(hubspot_objects))
        .route("/_sandbox/hubspot/owners", post(hubspot_owner))
        .route("/_sandbox/hubspot/clock", post(hubspot_clock))
        .route("/_sandbox/hubspot/limits", post(hubspot_limits))
        .route(
            "/_sandbox/hubspot/webhooks",
            post(hubspot_webhooks).delete(hubspot_webhooks_off),
        )
        .route("/_sandbox/calls", get(calls))
        .route("/_sandbox/faults", post(fault))
        .route(
            "/_sandbox/partnercentral/opportunities",
            get(opportunities).post(seed_opportunity),
        )
        .route("/_sandbox/partnercentral/solutions", post(seed_solution))
        .route(
            "/_sandbox/partnercentral/events",
            post(events_on).delete(events_off),
        )
        .route(
            "/_sandbox/partnercentral/opportunities/{id}/review",
            post(review),
        )
        .route(
            "/_sandbox/partnercentral/opportunities/{id}/seller",
            post(seller),
        )
        .route(
            "/_sandbox/partnercentral/opportunities/{id}/insights",
            post(insights),
        )
        .route(
            "/_sandbox/partnercentral/opportunities/{id}/snapshot",
            post(snapshot),
        )
        .with_state(Control {
            journal,
            pc,
            hs,
            sns,
        })
}

fn answer(result: Result<Value, ServiceError>) -> Response {
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => (
            e.status,
            Json(json!({ "error": e.kind, "message": e.message })),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct CallFilter {
    service: Option<String>,
    operation: Option<String>,
}

async fn calls(State(c): State<Control>, Query(f): Query<CallFilter>) -> Response {
    let calls: Vec<Call> = c
        .journal
        .calls()
        .into_iter()
        .filter(|call| f.service.as_ref().is_none_or(|s| *s == call.service))
        .filter(|call| f.operation.as_ref().is_none_or(|o| *o == call.operation))
        .collect();
    Json(json!({ "calls": calls })).into_response()
}

async fn fault(State(c): State<Control>, Json(fault): Json<Fault>) -> Response {
    c.journal.inject(fault.clone());
    Json(json!({ "injected": fault })).into_response()
}

async fn opportunities(State(c): State<Control>) -> Response {
    let all: Vec<Value> =
        c.pc.with_store(|s| s.opportunities().map(|o| o.record.clone()).collect());
    Json(json!({ "opportunities": all })).into_response()
}

/// Seeds an opportunity: a CreateOpportunity body (without quotas or a token).
async fn seed_opportunity(State(c): State<Control>, Json(mut body): Json<Value>) -> Response {
    if body.get("ClientToken").is_none() {
        body["ClientToken"] = json!(format!("seed-{}", c.journal.calls().len()));
    }
    if body.get("Catalog").is_none() {
        body["Catalog"] = json!("Sandbox");
    }
    answer(c.pc.with_store(|s| s.seed(&body)))
}

#[derive(Deserialize)]
struct SolutionSeed {
    #[serde(default = "sandbox_catalog")]
    catalog: String,
    id: String,
    name: String,
    category: String,
    #[serde(default = "active")]
    status: String,
}

fn sandbox_catalog() -> String {
    "Sandbox".into()
}

fn active() -> String {
    "Active".into()
}

async fn seed_solution(State(c): State<Control>, Json(s): Json<SolutionSeed>) -> Response {
    c.pc.with_store(|store| store.add_solution(&s.catalog, &s.id, &s.name, &s.category, &s.status));
    Json(json!({ "Id": s.id })).into_response()
}

#[derive(Deserialize)]
struct Review {
    status: String,
    comments: Option<String>,
    reason: Option<String>,
}

/// AWS reviews the opportunity: `Approved`, `Action Required`, `Rejected`, …
async fn review(
    State(c): State<Control>,
    Path(id): Path<String>,
    Json(r): Json<Review>,
) -> Response {
    const STATUSES: &[&str] = &[
        "Pending Submission",
        "Submitted",
        "In review",
        "Approved",
        "Rejected",
        "Action Required",
    ];
    if !STATUSES.contains(&r.status.as_str()) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "unknown review status", "allowed": STATUSES })),
        )
            .into_response();
    }
    answer(
        c.pc.with_store(|s| {
            s.set_review(&id, &r.status, r.comments.as_deref(), r.reason.as_deref())
        }),
    )
}

#[derive(Deserialize)]
struct Seller {
    first_name: String,
    last_name: String,
    email: String,
    #[serde(default = "sales_rep")]
    business_title: String,
}

fn sales_rep() -> String {
    "AWSSalesRep".into()
}

/// AWS assigns a member of its team (an `AWSSalesRep` by default).
async fn seller(
    State(c): State<Control>,
    Path(id): Path<String>,
    Json(s): Json<Seller>,
) -> Response {
    answer(c.pc.with_store(|store| {
        store.edit_summary(&id, |v| {
            let member = json!({ "FirstName": s.first_name, "LastName": s.last_name, "Email": s.email, "BusinessTitle": s.business_title });
            match v["OpportunityTeam"].as_array_mut() {
                Some(team) => team.push(member),
                None => v["OpportunityTeam"] = json!([member]),
            }
        })
    }))
}

#[derive(Deserialize)]
struct Insights {
    engagement_score: Option<String>,
    quality_score: Option<i64>,
    trend: Option<String>,
}

/// AWS rescores the opportunity: `EngagementScore` (High/Medium/Low) and/or the
/// numeric `OpportunityQuality.Score` (0–100).
async fn insights(
    State(c): State<Control>,
    Path(id): Path<String>,
    Json(i): Json<Insights>,
) -> Response {
    if i.engagement_score
        .as_deref()
        .is_some_and(|e| !matches!(e, "High" | "Medium" | "Low"))
    {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "engagement_score is High, Medium or Low" })),
        )
            .into_response();
    }
    if i.quality_score.is_some_and(|q| !(0..=100).contains(&q)) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "quality_score is 0 to 100" })),
        )
            .into_response();
    }
    answer(c.pc.with_store(|store| {
        store.edit_summary(&id, |v| {
            if let Some(e) = &i.engagement_score {
                v["Insights"]["EngagementScore"] = json!(e);
            }
            if let Some(q) = i.quality_score {
                let previous = v
                    .pointer("/Insights/OpportunityQuality/Score")
                    .and_then(Value::as_i64);
                let trend = i.trend.clone().unwrap_or_else(|| {
                    match previous.map(|p| q.cmp(&p)) {
                        Some(std::cmp::Ordering::Greater) => "Improving",
                        Some(std::cmp::Ordering::Less) => "Declining",
                        _ => "No Change",
                    }
                    .to_string()
                });
                v["Insights"]["OpportunityQuality"] = json!({ "Score": q, "Trend": trend });
            }
        })
    }))
}

/// AWS publishes a new snapshot revision of the opportunity.
async fn snapshot(State(c): State<Control>, Path(id): Path<String>) -> Response {
    answer(c.pc.with_store(|store| {
        if store.opportunity(&id).is_none() {
            return Err(ServiceError::not_found(format!(
                "Opportunity {id} was not found"
            )));
        }
        store.snapshot_if_engaged(&id, "aws");
        Ok(json!({ "opportunity": id }))
    }))
}

fn full(o: &crate::hubspot::store::Object, kind: &str) -> Value {
    let mut v = o.to_json(&o.properties.keys().cloned().collect::<Vec<_>>(), kind);
    v["associations"] = json!(o.associations);
    v
}

async fn hubspot_deals(State(c): State<Control>) -> Response {
    let deals: Vec<Value> =
        c.hs.with_store(|s| s.deals.values().map(|d| full(d, "deals")).collect());
    Json(json!({ "deals": deals })).into_response()
}

async fn hubspot_objects(State(c): State<Control>, Path(kind): Path<String>) -> Response {
    if !matches!(kind.as_str(), "notes" | "tasks" | "companies") {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "deals, companies, notes or tasks" })),
        )
            .into_response();
    }
    // Notes and tasks also say what HubSpot's timeline shows of their HTML bodies.
    let objects: Vec<Value> = c.hs.with_store(|s| {
        s.table(&kind)
            .values()
            .map(|o| {
                let mut v = full(o, &kind);
                for body in ["hs_note_body", "hs_task_body"] {
                    if let Some(html) = o.properties.get(body) {
                        v["shown"] = json!(crate::hubspot::store::shown(html));
                    }
                }
                v
            })
            .collect()
    });
    Json(json!({ kind: objects })).into_response()
}

fn properties(body: &Value) -> std::collections::BTreeMap<String, String> {
    body["properties"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Moves the HubSpot account's clock forward (`{"advance_ms": N}`): search catches
/// up with the writes whose lag has passed, and the daily limit resets past the
/// account's midnight.
async fn hubspot_clock(State(c): State<Control>, Json(body): Json<Value>) -> Response {
    let ms = body["advance_ms"].as_u64().unwrap_or(0);
    c.hs.advance_clock(Duration::from_millis(ms));
    Json(json!({ "now": c.hs.clock.now().to_string() })).into_response()
}

/// Sets the HubSpot account's daily allowance from now on (`{"daily": N}`).
async fn hubspot_limits(State(c): State<Control>, Json(body): Json<Value>) -> Response {
    match body["daily"].as_u64().and_then(|n| u32::try_from(n).ok()) {
        Some(n) => {
            c.hs.set_daily_limit(n);
            Json(json!({ "daily": n })).into_response()
        }
        None => (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "`daily` is the number of requests allowed a day" })),
        )
            .into_response(),
    }
}

/// A sales rep creates a deal in HubSpot's UI.
async fn hubspot_create_deal(State(c): State<Control>, Json(body): Json<Value>) -> Response {
    let mut props = properties(&body);
    props
        .entry("pipeline".into())
        .or_insert_with(|| "default".into());
    let company = body["company"].as_str().map(str::to_string);
    let deal = c.hs.with_store(|s| {
        let deal = s.insert("deals", props);
        if let Some(company) = &company {
            s.associate_company(&deal.id, company, true);
        }
        deal
    });
    c.hs.index.written(c.hs.clock.now(), None, &deal);
    c.hs.webhooks.deal_created(&deal.id, &user());
    (StatusCode::CREATED, Json(full(&deal, "deals"))).into_response()
}

/// A sales rep adds a company (`{"properties": {…}, "deals": [ids]}`: the deals it is
/// the primary company of).
async fn hubspot_create_company(State(c): State<Control>, Json(body): Json<Value>) -> Response {
    let props = properties(&body);
    let deals: Vec<String> = body["deals"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| {
                    d.as_str()
                        .map(str::to_string)
                        .or_else(|| d.as_u64().map(|n| n.to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    let company = c.hs.with_store(|s| {
        let company = s.insert("companies", props);
        for deal in &deals {
            s.associate_company(deal, &company.id, true);
        }
        company
    });
    (StatusCode::CREATED, Json(full(&company, "companies"))).into_response()
}

/// A sales rep edits a company in HubSpot's UI.
async fn hubspot_edit_company(
    State(c): State<Control>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    match crate::hubspot::companies::edit_company(&c.hs, &id, properties(&body)) {
        Some((company, changes)) => {
            c.hs.webhooks.company_changed(&id, &changes, &user());
            Json(full(&company, "companies")).into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no company {id}") })),
        )
            .into_response(),
    }
}

/// A sales rep edits a deal in HubSpot's UI.
async fn hubspot_edit_deal(
    State(c): State<Control>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let props = properties(&body);
    let edited = c.hs.with_store(|s| {
        let deal = s.deals.get_mut(&id)?;
        let before = deal.clone();
        let changes: Vec<(String, String)> = props
            .iter()
            .filter(|(k, v)| deal.properties.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        deal.properties.extend(props);
        deal.updated_at = jiff::Timestamp::now();
        Some((before, deal.clone(), changes))
    });
    match edited {
        Some((before, d, changes)) => {
            c.hs.index.written(c.hs.clock.now(), Some(before), &d);
            c.hs.webhooks.deal_changed(&d.id, &changes, &user());
            Json(full(&d, "deals")).into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no deal {id}") })),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct Owner {
    id: String,
    email: String,
    first_name: String,
    last_name: String,
}

async fn hubspot_owner(State(c): State<Control>, Json(o): Json<Owner>) -> Response {
    c.hs.with_store(|s| s.add_owner(&o.id, &o.email, &o.first_name, &o.last_name));
    Json(json!({ "id": o.id })).into_response()
}

/// A sales rep in HubSpot's UI.
fn user() -> crate::hubspot::ChangeSource {
    crate::hubspot::ChangeSource {
        change_source: "CRM_UI".into(),
        source_id: "userId:47812075".into(),
    }
}

#[derive(Deserialize)]
struct Webhooks {
    url: String,
    client_secret: String,
    app_id: u64,
    #[serde(default)]
    properties: Vec<String>,
    #[serde(default)]
    max_attempts: Option<u32>,
    #[serde(default)]
    retry_base_ms: Option<u64>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

/// Subscribes an app: its target URL, client secret and id (and, for tests, a
/// compressed retry schedule).
async fn hubspot_webhooks(State(c): State<Control>, Json(w): Json<Webhooks>) -> Response {
    let mut target = crate::hubspot::WebhookTarget::new(&w.url, &w.client_secret, w.app_id);
    target.properties = w.properties;
    if let Some(n) = w.max_attempts {
        target.max_attempts = n.clamp(1, 10);
    }
    if let Some(ms) = w.retry_base_ms {
        target.retry_base = Duration::from_millis(ms);
    }
    if let Some(ms) = w.timeout_ms {
        target.timeout = Duration::from_millis(ms);
    }
    c.hs.webhooks.set_target(Some(target));
    Json(json!({ "subscribed": w.url })).into_response()
}

async fn hubspot_webhooks_off(State(c): State<Control>) -> Response {
    c.hs.webhooks.set_target(None);
    Json(json!({ "subscribed": null })).into_response()
}

#[derive(Deserialize)]
struct Events {
    url: String,
    #[serde(default)]
    secret: String,
}

/// Forwards Partner Central's EventBridge events to `url` (as an API destination).
async fn events_on(State(c): State<Control>, Json(e): Json<Events>) -> Response {
    c.pc.set_event_target(Some(crate::partner_central::EventTarget {
        url: e.url.clone(),
        secret: e.secret,
    }));
    Json(json!({ "forwarding_to": e.url })).into_response()
}

async fn events_off(State(c): State<Control>) -> Response {
    c.pc.set_event_target(None);
    Json(json!({ "forwarding_to": null })).into_response()
}

async fn sns_messages(State(c): State<Control>) -> Response {
    Json(json!({ "messages": c.sns.messages() })).into_response()
}
