//! HubSpot CRM v3 over HTTP: deals, notes, tasks, deal properties, owners and
//! pipelines, with Bearer authentication, HubSpot's error bodies and its rate limits
//! (reference §3–§5; §8 is the checklist this follows).

pub mod clock;
pub mod companies;
mod crm;
pub mod index;
mod limits;
pub mod store;
pub mod webhooks;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub use limits::RollingWindow;
pub use store::Store;
pub use webhooks::{ChangeSource, Emitter, WebhookTarget};

use crate::control::Journal;

/// HubSpot settings of the sandbox.
#[derive(Debug, Clone)]
pub struct HubSpotOptions {
    /// The private-app token clients must send as `Authorization: Bearer …`.
    pub token: String,
    /// Requests per rolling 10 seconds (100, 190 or 250 by tier); `None` for no limit.
    pub rate_limit_per_10s: Option<u32>,
    /// CRM search requests per second (5); `None` for no limit.
    pub search_per_second: Option<u32>,
    /// Requests allowed per day, reported in `X-HubSpot-RateLimit-Daily` and
    /// enforced: once they are spent, requests get HubSpot's daily 429 until the
    /// account's midnight (reference §5.1, §5.3).
    pub daily_limit: u32,
    /// The account's time zone (HubSpot's Account defaults): the daily limit resets
    /// at its midnight.
    pub time_zone: jiff::tz::TimeZone,
    /// How long a deal's write takes to reach CRM search ("a few moments",
    /// reference §3.4); zero for none.
    pub search_lag: Duration,
}

/// The strict sandbox's search lag: longer than any flow takes from a write to its
/// next step, so a flow that looks for its own write through search finds nothing,
/// and short enough that "a few moments" holds. Tests that need search to catch up
/// advance the account's clock ([`HubSpot::advance_clock`]) instead of waiting.
pub const SEARCH_LAG: Duration = Duration::from_secs(5);

impl HubSpotOptions {
    /// The default token, with no rate limit: for tests that are not about them.
    pub fn unlimited() -> Self {
        HubSpotOptions {
            rate_limit_per_10s: None,
            search_per_second: None,
            ..HubSpotOptions::default()
        }
    }
}

impl Default for HubSpotOptions {
    fn default() -> Self {
        HubSpotOptions {
            token: "sandbox-token".into(),
            rate_limit_per_10s: Some(100),
            search_per_second: Some(5),
            daily_limit: 250_000,
            time_zone: jiff::tz::TimeZone::UTC,
            search_lag: SEARCH_LAG,
        }
    }
}

/// The HubSpot side of the sandbox.
pub struct HubSpot {
    pub(crate) store: Mutex<Store>,
    /// The webhook emitter.
    pub webhooks: Arc<Emitter>,
    pub(crate) journal: Arc<Journal>,
    options: HubSpotOptions,
    window: Option<RollingWindow>,
    search: Option<RollingWindow>,
    daily: Mutex<Daily>,
    /// The account's time, for the daily limit and search's lag.
    pub clock: clock::Clock,
    /// What CRM search sees of the deals.
    pub index: index::SearchIndex,
}

/// Requests counted against the daily limit on one day of the account's calendar.
#[derive(Debug)]
struct Daily {
    limit: u32,
    day: Option<jiff::civil::Date>,
    used: u32,
}

/// A HubSpot error response (reference §4.3).
pub fn error(status: StatusCode, category: &str, message: &str, errors: Value) -> Response {
    let mut body = json!({ "status": "error", "message": message, "correlationId": correlation_id(), "category": category });
    if !errors.is_null() {
        body["errors"] = errors;
    }
    (status, axum::Json(body)).into_response()
}

fn correlation_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("00000000-0000-4000-8000-{n:012x}")
}

impl HubSpot {
    /// A HubSpot account with the default pipeline, its deal properties and no data.
    pub fn new(options: HubSpotOptions, journal: Arc<Journal>) -> Arc<Self> {
        let window = options
            .rate_limit_per_10s
            .map(|n| RollingWindow::new(n, Duration::from_secs(10)));
        let search = options
            .search_per_second
            .map(|n| RollingWindow::new(n, Duration::from_secs(1)));
        let webhooks = Emitter::start(Arc::clone(&journal));
        Arc::new(HubSpot {
            store: Mutex::new(Store::default()),
            webhooks,
            journal,
            window,
            search,
            daily: Mutex::new(Daily {
                limit: options.daily_limit,
                day: None,
                used: 0,
            }),
            clock: clock::Clock::default(),
            index: index::SearchIndex::new(
                jiff::SignedDuration::try_from(options.search_lag)
                    .unwrap_or(jiff::SignedDuration::MAX),
            ),
            options,
        })
    }

    /// Moves the account's clock forward by `by`: search sees the writes whose lag
    /// has passed, and the daily limit resets if that crosses the account's midnight.
    pub fn advance_clock(&self, by: Duration) {
        self.clock
            .advance(jiff::SignedDuration::try_from(by).unwrap_or(jiff::SignedDuration::MAX));
    }

    /// Sets the daily allowance from now on (the requests already made today still
    /// count): a test spends it without making that many requests.
    pub fn set_daily_limit(&self, limit: u32) {
        self.daily.lock().expect("daily counter lock").limit = limit;
    }

    /// Counts a request against today's allowance in the account's time zone:
    /// `(limit, remaining)`, or the limit when it is spent (the request is not
    /// counted).
    fn take_daily(&self) -> Result<(u32, u32), u32> {
        let today = self
            .clock
            .now()
            .to_zoned_datetime(self.options.time_zone.clone())
            .date();
        let mut daily = self.daily.lock().expect("daily counter lock");
        if daily.day != Some(today) {
            daily.day = Some(today);
            daily.used = 0;
        }
        if daily.used >= daily.limit {
            return Err(daily.limit);
        }
        daily.used += 1;
        Ok((daily.limit, daily.limit - daily.used))
    }

    /// Direct access to the data, for the control API and tests.
    pub fn with_store<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        f(&mut self.store.lock().expect("the store lock is never poisoned"))
    }

    /// Who the API's writes come from: the app whose webhooks are configured.
    pub fn api_source(&self) -> ChangeSource {
        ChangeSource {
            change_source: "INTEGRATION".into(),
            source_id: self
                .webhooks
                .app_id()
                .map(|id| id.to_string())
                .unwrap_or_default(),
        }
    }

    /// The HTTP routes.
    pub fn router(self: &Arc<Self>) -> Router {
        crm::routes()
            .merge(companies::routes())
            .layer(middleware::from_fn_with_state(Arc::clone(self), guard))
            .with_state(Arc::clone(self))
    }
}

/// Authentication, rate limits and their headers, faults and the call journal, for
/// every CRM request.
async fn guard(State(hs): State<Arc<HubSpot>>, request: Request, next: Next) -> Response {
    let operation = format!("{} {}", request.method(), request.uri().path());
    let is_search = request.uri().path().ends_with("/search");
    let record = |status: StatusCode| {
        hs.journal.record(crate::control::Call {
            service: "hubspot".into(),
            operation: operation.clone(),
            status: status.as_u16(),
            request: Value::Null,
        });
    };
    if let Some(fault) = hs.journal.take_fault("hubspot", &operation) {
        // HubSpot's error guide (reference §4.3): 423 Locked "Locks will last for 2
        // seconds"; 477 Migration in Progress comes with Retry-After in seconds.
        let policy = fault.policy_name.clone();
        let error_body = |status: u16| {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            match status.as_u16() {
                // A 429 in HubSpot's shape, naming its limit (reference §5.3).
                429 => match policy.as_deref() {
                    Some("DAILY") => rate_limited("You have reached your daily limit.", "DAILY"),
                    Some(other) => rate_limited(
                        &format!("You have reached your {} limit.", other.to_lowercase()),
                        other,
                    ),
                    None => rate_limited(
                        "You have reached your ten_secondly_rolling limit.",
                        "TEN_SECONDLY_ROLLING",
                    ),
                },
                423 => error(
                    status,
                    "LOCKED",
                    "The object is locked by another request; retry after at least 2 seconds",
                    Value::Null,
                ),
                477 => {
                    let mut r = error(
                        status,
                        "MIGRATION_IN_PROGRESS",
                        "This account's data is being migrated; retry after the time in Retry-After",
                        Value::Null,
                    );
                    r.headers_mut()
                        .insert("retry-after", axum::http::HeaderValue::from_static("1"));
                    r
                }
                _ => error(status, "INTERNAL_ERROR", "injected fault", Value::Null),
            }
        };
        if let Some(response) = crate::control::apply_fault(&fault, error_body).await {
            record(response.status());
            return response;
        }
    }
    let token_ok = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t == hs.options.token);
    if !token_ok {
        record(StatusCode::UNAUTHORIZED);
        return error(
            StatusCode::UNAUTHORIZED,
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            Value::Null,
        );
    }
    // Search has its own 5/s limit and sends no rate-limit headers (reference §5.2).
    if is_search {
        if hs.search.as_ref().is_some_and(|w| w.hit().is_none()) {
            record(StatusCode::TOO_MANY_REQUESTS);
            return rate_limited("You have reached your secondly limit.", "SECONDLY");
        }
        let response = next.run(request).await;
        record(response.status());
        return response;
    }
    // The daily limit, shared by the account's private apps, resets at midnight in
    // the account's time zone; once spent, HubSpot answers its DAILY 429 (reference
    // §5.1, §5.3).
    let daily = match hs.take_daily() {
        Ok(daily) => daily,
        Err(limit) => {
            record(StatusCode::TOO_MANY_REQUESTS);
            let mut response = rate_limited("You have reached your daily limit.", "DAILY");
            let h = response.headers_mut();
            h.insert("x-hubspot-ratelimit-daily", HeaderValue::from(limit));
            h.insert("x-hubspot-ratelimit-daily-remaining", HeaderValue::from(0));
            return response;
        }
    };
    let remaining = match &hs.window {
        None => None,
        Some(w) => match w.hit() {
            Some(left) => Some((w.max(), left, w.window())),
            None => {
                record(StatusCode::TOO_MANY_REQUESTS);
                let mut response = rate_limited(
                    "You have reached your ten_secondly_rolling limit.",
                    "TEN_SECONDLY_ROLLING",
                );
                add_headers(&mut response, w.max(), 0, w.window(), daily);
                return response;
            }
        },
    };
    let mut response = next.run(request).await;
    if let Some((max, left, window)) = remaining {
        add_headers(&mut response, max, left, window, daily);
    }
    record(response.status());
    response
}

fn add_headers(
    response: &mut Response,
    max: u32,
    left: u32,
    window: Duration,
    (daily_limit, daily_left): (u32, u32),
) {
    let h = response.headers_mut();
    for (name, value) in [
        ("x-hubspot-ratelimit-max", max.to_string()),
        ("x-hubspot-ratelimit-remaining", left.to_string()),
        (
            "x-hubspot-ratelimit-interval-milliseconds",
            window.as_millis().to_string(),
        ),
        ("x-hubspot-ratelimit-daily", daily_limit.to_string()),
        (
            "x-hubspot-ratelimit-daily-remaining",
            daily_left.to_string(),
        ),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
}

/// A 429 in HubSpot's shape (`errorType`, `policyName`; reference §5.3).
fn rate_limited(message: &str, policy: &str) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        axum::Json(json!({
            "status": "error", "message": message, "errorType": "RATE_LIMIT",
            "correlationId": correlation_id(), "policyName": policy, "requestId": correlation_id(),
        })),
    )
        .into_response()
}
