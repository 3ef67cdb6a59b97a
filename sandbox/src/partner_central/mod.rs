//! Partner Central Selling API over AWS JSON 1.0: `POST /`, the operation in
//! `X-Amz-Target: AWSPartnerCentralSelling.<Op>`, `application/x-amz-json-1.0`
//! bodies, errors as `{"__type": …, "Message": …}` with the model's HTTP status
//! (reference §1, §2, §10). Every rule enforced here is one Partner Central states;
//! each cites its source.

mod business;
mod engagement;
mod opportunity;
mod validate;

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::{Value, json};

pub use business::PartnerType;
pub use engagement::Engagement;
pub use opportunity::{ACCOUNT, Store};
pub use validate::{FieldError, validate};

/// Where EventBridge events go: an HTTP endpoint and the secret header value an API
/// destination would send (`X-Pcsync-Secret`).
#[derive(Debug, Clone)]
pub struct EventTarget {
    /// The endpoint (pcsync's `/events/partnercentral`).
    pub url: String,
    /// The shared secret.
    pub secret: String,
}

/// Delivers events one by one, retrying a failed delivery twice (EventBridge
/// retries API destinations; its 24-hour schedule is compressed here).
async fn deliver_events(
    mut queue: tokio::sync::mpsc::UnboundedReceiver<(EventTarget, Value)>,
    journal: Arc<crate::control::Journal>,
) {
    let http = reqwest::Client::new();
    while let Some((target, event)) = queue.recv().await {
        for attempt in 0..3u32 {
            let result = http
                .post(&target.url)
                .timeout(std::time::Duration::from_secs(5))
                .header("x-pcsync-secret", &target.secret)
                .json(&event)
                .send()
                .await;
            let status = result.as_ref().map_or(0, |r| r.status().as_u16());
            journal.record(crate::control::Call {
                service: "eventbridge".into(),
                operation: event["detail-type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                status,
                request: event.clone(),
            });
            if (200..300).contains(&status) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100 * 2u64.pow(attempt))).await;
        }
    }
}

/// The service's request quotas per partner account (developer guide "Quotas",
/// reference §8): reads 10/s and 100,000 per rolling 24 hours, writes 1/s and 10,000
/// per rolling 24 hours. `None` switches a quota off, for tests that are not about
/// throttling; tests about the daily quotas set small ones.
#[derive(Debug, Clone, Copy)]
pub struct Quotas {
    /// Write operations per second.
    pub writes_per_second: Option<u32>,
    /// Read operations per second.
    pub reads_per_second: Option<u32>,
    /// Write operations per rolling 24 hours.
    pub writes_per_day: Option<u32>,
    /// Read operations per rolling 24 hours.
    pub reads_per_day: Option<u32>,
}

impl Quotas {
    /// No quota: for tests that are not about throttling.
    pub const OFF: Quotas = Quotas {
        writes_per_second: None,
        reads_per_second: None,
        writes_per_day: None,
        reads_per_day: None,
    };
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            writes_per_second: Some(1),
            reads_per_second: Some(10),
            writes_per_day: Some(10_000),
            reads_per_day: Some(100_000),
        }
    }
}

/// Calls counted over a rolling 24 hours against a daily quota.
#[derive(Debug)]
struct DailyQuota {
    limit: usize,
    calls: Mutex<std::collections::VecDeque<std::time::Instant>>,
}

impl DailyQuota {
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

    fn new(limit: Option<u32>) -> Option<Self> {
        limit.map(|l| DailyQuota {
            limit: l as usize,
            calls: Mutex::new(std::collections::VecDeque::new()),
        })
    }

    /// Counts a call; `false` when the last 24 hours already hold `limit` calls.
    fn take(&self) -> bool {
        let now = std::time::Instant::now();
        let mut calls = self.calls.lock().expect("daily quota lock");
        while calls
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Self::WINDOW)
        {
            calls.pop_front();
        }
        if calls.len() >= self.limit {
            return false;
        }
        calls.push_back(now);
        true
    }
}

/// An error as the service returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceError {
    /// The exception's short name (`ConflictException`).
    pub kind: &'static str,
    /// The HTTP status the model gives it.
    pub status: StatusCode,
    /// The message.
    pub message: String,
    /// For `ValidationException`: `Reason` and `ErrorList`.
    pub validation: Option<(&'static str, Vec<FieldError>)>,
}

impl ServiceError {
    /// `ValidationException` (400) with `REQUEST_VALIDATION_FAILED` or
    /// `BUSINESS_VALIDATION_FAILED` and the field errors.
    pub fn validation(
        reason: &'static str,
        message: impl Into<String>,
        errors: Vec<FieldError>,
    ) -> Self {
        ServiceError {
            kind: "ValidationException",
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            validation: Some((reason, errors)),
        }
    }

    /// `ConflictException` (409).
    pub fn conflict(message: impl Into<String>) -> Self {
        ServiceError {
            kind: "ConflictException",
            status: StatusCode::CONFLICT,
            message: message.into(),
            validation: None,
        }
    }

    /// `ResourceNotFoundException` (404).
    pub fn not_found(message: impl Into<String>) -> Self {
        ServiceError {
            kind: "ResourceNotFoundException",
            status: StatusCode::NOT_FOUND,
            message: message.into(),
            validation: None,
        }
    }

    /// `ThrottlingException` (429): retried by the SDK.
    pub fn throttled(message: impl Into<String>) -> Self {
        ServiceError {
            kind: "ThrottlingException",
            status: StatusCode::TOO_MANY_REQUESTS,
            message: message.into(),
            validation: None,
        }
    }

    fn body(&self) -> Value {
        let mut body = json!({ "__type": self.kind, "Message": self.message });
        if let Some((reason, errors)) = &self.validation {
            body["Reason"] = json!(reason);
            body["ErrorList"] = errors
                .iter()
                .map(|e| json!({ "FieldName": e.field, "Message": e.message, "Code": e.code }))
                .collect();
        }
        body
    }
}

/// The Partner Central side of the sandbox.
pub struct PartnerCentral {
    journal: Arc<crate::control::Journal>,
    events: Mutex<Option<EventTarget>>,
    outbox: tokio::sync::mpsc::UnboundedSender<(EventTarget, Value)>,
    store: Mutex<Store>,
    writes: Option<DefaultDirectRateLimiter>,
    reads: Option<DefaultDirectRateLimiter>,
    writes_daily: Option<DailyQuota>,
    reads_daily: Option<DailyQuota>,
}

/// Operations counted against the write quota (developer guide "Quotas").
const WRITES: &[&str] = &[
    "CreateOpportunity",
    "UpdateOpportunity",
    "AssociateOpportunity",
    "DisassociateOpportunity",
    "RejectEngagementInvitation",
    "AssignOpportunity",
    "StartEngagementFromOpportunityTask",
    "StartEngagementByAcceptingInvitationTask",
];

/// Operations counted against the read quota (developer guide "Quotas").
const READS: &[&str] = &[
    "GetOpportunity",
    "GetAwsOpportunitySummary",
    "ListOpportunities",
    "ListSolutions",
    "GetEngagementInvitation",
    "ListEngagementInvitations",
];

impl PartnerCentral {
    /// A Partner Central with no data and these quotas, recording into `journal`.
    pub fn new(quotas: Quotas, journal: Arc<crate::control::Journal>) -> Arc<Self> {
        let limiter = |n: Option<u32>| {
            n.and_then(NonZeroU32::new)
                .map(|n| RateLimiter::direct(Quota::per_second(n)))
        };
        let (outbox, queue) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(deliver_events(queue, Arc::clone(&journal)));
        let pc = Arc::new(PartnerCentral {
            events: Mutex::new(None),
            outbox,
            journal,
            store: Mutex::new(Store::default()),
            writes: limiter(quotas.writes_per_second),
            reads: limiter(quotas.reads_per_second),
            writes_daily: DailyQuota::new(quotas.writes_per_day),
            reads_daily: DailyQuota::new(quotas.reads_per_day),
        });
        // Submission tasks end on their own, as AWS's do, whether or not anyone asks.
        let weak = Arc::downgrade(&pc);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                let Some(pc) = weak.upgrade() else { break };
                pc.with_store(|s| s.settle_tasks(jiff::Timestamp::now().as_millisecond()));
            }
        });
        pc
    }

    /// The HTTP routes.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/", post(handle))
            .with_state(Arc::clone(self))
    }

    /// Direct access to the data, for the control API and tests. Events the change
    /// raises are delivered.
    pub fn with_store<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let (out, events) = {
            let mut store = self.store.lock().expect("the store lock is never poisoned");
            let out = f(&mut store);
            (out, store.take_events())
        };
        self.dispatch(events);
        out
    }

    /// Sends events to the EventBridge target, if one is set (an API destination
    /// forwarding `aws.partnercentral-selling` events, with its secret header).
    pub fn set_event_target(&self, target: Option<EventTarget>) {
        *self.events.lock().expect("event target lock") = target;
    }

    fn dispatch(&self, events: Vec<Value>) {
        let Some(target) = self.events.lock().expect("event target lock").clone() else {
            return;
        };
        for event in events {
            let _ = self.outbox.send((target.clone(), event));
        }
    }

    /// Runs one operation on a parsed request body.
    pub fn call(&self, operation: &str, input: &Value) -> Result<Value, ServiceError> {
        // The quota table classes only some operations; the others (snapshots,
        // engagements, task listings) have no documented quota (reference §8).
        let write = WRITES.contains(&operation);
        let read = READS.contains(&operation);
        let (limiter, daily) = if write {
            (&self.writes, &self.writes_daily)
        } else {
            (&self.reads, &self.reads_daily)
        };
        if limiter.as_ref().is_some_and(|l| l.check().is_err()) {
            return Err(ServiceError::throttled("Rate exceeded"));
        }
        if (write || read) && daily.as_ref().is_some_and(|d| !d.take()) {
            return Err(ServiceError::throttled(format!(
                "Daily {} quota exceeded for this partner account (rolling 24 hours)",
                if write { "write" } else { "read" }
            )));
        }
        let input_shape = pcsync_pc_model::operation(operation).map(|o| o.input);
        let Some(input_shape) = input_shape else {
            return Err(ServiceError {
                kind: "UnknownOperationException",
                status: StatusCode::BAD_REQUEST,
                message: format!("operation {operation} is not supported by this sandbox"),
                validation: None,
            });
        };
        let errors = validate(input_shape, input);
        if !errors.is_empty() {
            return Err(ServiceError::validation(
                "REQUEST_VALIDATION_FAILED",
                "Request validation failed",
                errors,
            ));
        }
        let catalog = input["Catalog"].as_str().unwrap_or_default();
        if !matches!(catalog, "AWS" | "Sandbox") {
            // Catalog: "Value space is validated at runtime against an allowlist" (model).
            return Err(ServiceError::validation(
                "REQUEST_VALIDATION_FAILED",
                "Request validation failed",
                vec![FieldError {
                    field: "Catalog".into(),
                    message: format!("`{catalog}` is not a catalog"),
                    code: "INVALID_ENUM_VALUE",
                }],
            ));
        }
        self.with_store(|store| {
            store.settle_tasks(jiff::Timestamp::now().as_millisecond());
        });
        self.with_store(|store| match operation {
            "CreateOpportunity" => store.create(input),
            "GetOpportunity" => store.get(input),
            "UpdateOpportunity" => store.update(input),
            "ListOpportunities" => store.list(input),
            "AssociateOpportunity" => store.associate(input),
            "StartEngagementFromOpportunityTask" => store.start_engagement(input),
            "ListEngagementFromOpportunityTasks" => store.list_tasks(input),
            "GetAwsOpportunitySummary" => store.aws_summary(input),
            "ListSolutions" => store.list_solutions(input),
            "ListEngagementResourceAssociations" => store.list_associations(input),
            "ListResourceSnapshots" => store.list_snapshots(input),
            "GetResourceSnapshot" => store.get_snapshot(input),
            other => Err(ServiceError {
                kind: "UnknownOperationException",
                status: StatusCode::BAD_REQUEST,
                message: format!("operation {other} is not supported by this sandbox"),
                validation: None,
            }),
        })
    }
}

async fn handle(
    State(pc): State<Arc<PartnerCentral>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let operation = target
        .strip_prefix("AWSPartnerCentralSelling.")
        .unwrap_or(target)
        .to_string();
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let record = |status: StatusCode, request: Value| {
        pc.journal.record(crate::control::Call {
            service: "partnercentral".into(),
            operation: operation.clone(),
            status: status.as_u16(),
            request,
        });
    };
    let mut drop_after = false;
    if let Some(fault) = pc.journal.take_fault("partnercentral", &operation) {
        drop_after = fault.drop_after;
        let error_body = |status: u16| {
            let kind = match status {
                429 => "ThrottlingException",
                403 => "AccessDeniedException",
                404 => "ResourceNotFoundException",
                409 => "ConflictException",
                500.. => "InternalServerException",
                _ => "ValidationException",
            };
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let err = ServiceError {
                kind,
                status,
                message: "injected fault".into(),
                validation: None,
            };
            json_response(err.status, err.body())
        };
        if let Some(response) = crate::control::apply_fault(&fault, error_body).await {
            record(response.status(), request);
            return response;
        }
    }
    let authenticated = authenticate(&headers);
    let result = match target.strip_prefix("AWSPartnerCentralSelling.") {
        _ if authenticated.is_err() => authenticated.map(|()| Value::Null),
        None => Err(ServiceError {
            kind: "UnknownOperationException",
            status: StatusCode::BAD_REQUEST,
            message: format!("unknown X-Amz-Target `{target}`"),
            validation: None,
        }),
        Some(operation) => match serde_json::from_slice::<Value>(&body) {
            Ok(input) => pc.call(operation, &input),
            Err(e) => Err(ServiceError {
                kind: "SerializationException",
                status: StatusCode::BAD_REQUEST,
                message: format!("the body is not JSON: {e}"),
                validation: None,
            }),
        },
    };
    let (status, body) = match result {
        Ok(out) => (StatusCode::OK, out),
        Err(e) => (e.status, e.body()),
    };
    record(status, request);
    if drop_after {
        return crate::control::dropped_connection();
    }
    json_response(status, body)
}

/// Every request must carry a SigV4 `Authorization` header for the service's signing
/// name in us-east-1, with `X-Amz-Date` (reference §1: "signing name
/// partnercentral-selling"; "The API is only in us-east-1"). The sandbox does not know
/// callers' secrets, so it checks the header's shape, not the signature.
fn authenticate(headers: &HeaderMap) -> Result<(), ServiceError> {
    let forbidden = |kind: &'static str, message: String| ServiceError {
        kind,
        status: StatusCode::FORBIDDEN,
        message,
        validation: None,
    };
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(forbidden(
            "MissingAuthenticationTokenException",
            "Missing Authentication Token".into(),
        ));
    };
    let invalid = |why: &str| forbidden("InvalidSignatureException", why.to_string());
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| invalid("Only AWS4-HMAC-SHA256 (SigV4) authorization is accepted"))?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',').map(str::trim) {
        match part.split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed_headers = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let credential = credential.ok_or_else(|| {
        invalid("Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter.")
    })?;
    let scope: Vec<&str> = credential.split('/').collect();
    match scope.as_slice() {
        [key, date, region, service, "aws4_request"]
            if !key.is_empty() && date.len() == 8 && date.chars().all(|c| c.is_ascii_digit()) =>
        {
            if *service != "partnercentral-selling" {
                return Err(invalid(&format!(
                    "Credential should be scoped to correct service: 'partnercentral-selling', not '{service}'"
                )));
            }
            if *region != "us-east-1" {
                return Err(invalid(&format!(
                    "Credential should be scoped to a valid region: 'us-east-1', not '{region}'"
                )));
            }
        }
        _ => {
            return Err(invalid(
                "Credential is not <key>/<date>/<region>/<service>/aws4_request",
            ));
        }
    }
    let signed = signed_headers.unwrap_or_default();
    if !signed.split(';').any(|h| h == "host") || !signed.split(';').any(|h| h == "x-amz-date") {
        return Err(invalid("SignedHeaders must include host and x-amz-date"));
    }
    let hex_signature =
        signature.is_some_and(|s| s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()));
    if !hex_signature {
        return Err(invalid("Signature must be 64 hexadecimal characters"));
    }
    let dated = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|d| d.len() == 16 && d.as_bytes()[8] == b'T' && d.ends_with('Z'));
    if !dated {
        return Err(invalid("X-Amz-Date must be given as YYYYMMDDTHHMMSSZ"));
    }
    Ok(())
}

fn json_response(status: StatusCode, body: Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    if let Ok(id) = HeaderValue::from_str(&request_id()) {
        h.insert("x-amzn-requestid", id);
    }
    response
}

fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("sandbox-{:012}", NEXT.fetch_add(1, Ordering::Relaxed))
}
