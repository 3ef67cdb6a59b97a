//! The Partner Central Selling API through the real AWS SDK client, with
//! opportunities as JSON in the API's own shape.
//!
//! pcsync's engine works on the opportunity as Partner Central returns it (JSON) and
//! UpdateOpportunity is a full replacement. Converting the SDK's typed structs to and
//! from that JSON for every member would duplicate the whole model by hand. Instead
//! the SDK client does everything it does (endpoint, SigV4 signing, retries,
//! timeouts, error parsing) and two smithy interceptors handle the body: one keeps the
//! raw response JSON, the other puts the full record into the request before it is
//! signed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_partnercentralselling as pc;
use aws_sdk_partnercentralselling::config::interceptors::AfterDeserializationInterceptorContextRef;
use aws_sdk_partnercentralselling::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_partnercentralselling::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_partnercentralselling::primitives::{DateTime, DateTimeFormat};
use governor::DefaultDirectRateLimiter;

use crate::quota::{DailyQuotas, QuotaClass};
use serde_json::{Map, Value};

/// Members of an opportunity an UpdateOpportunity request carries besides `Catalog`,
/// `Identifier` and `LastModifiedDate` (the service model's UpdateOpportunityRequest).
pub const UPDATE_MEMBERS: &[&str] = &[
    "PrimaryNeedsFromAws",
    "NationalSecurity",
    "PartnerOpportunityIdentifier",
    "Customer",
    "Project",
    "OpportunityType",
    "Marketing",
    "SoftwareRevenue",
    "LifeCycle",
];

/// LifeCycle members AWS owns: GetOpportunity returns them, UpdateOpportunity must not
/// carry them (the `AWS` catalog refuses a change to them; reference §5.3, §7).
pub const READ_ONLY_LIFECYCLE: &[&str] = &[
    "ReviewStatus",
    "ReviewComments",
    "ReviewStatusReason",
    "NextStepsHistory",
];

/// A failed Partner Central call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Partner Central: {code}: {message}")]
pub struct PcError {
    /// The exception (`ConflictException`, `ValidationException`…), or `Transport`.
    pub code: String,
    /// What the service said.
    pub message: String,
    /// Whether a retry may succeed (throttling, server errors, transport).
    pub retryable: bool,
    /// The raw error body, when there was one (a `ValidationException`'s `ErrorList`).
    pub body: Option<Box<Value>>,
    /// How long the service asked callers to wait (`x-amz-retry-after`), when it said.
    pub retry_after: Option<std::time::Duration>,
}

impl PcError {
    /// A stale `LastModifiedDate`: refetch and reapply.
    pub fn is_conflict(&self) -> bool {
        self.code == "ConflictException"
    }

    /// The resource does not exist.
    pub fn is_not_found(&self) -> bool {
        self.code == "ResourceNotFoundException"
    }

    /// A daily quota is spent ([`crate::quota`]): the call was not sent, or AWS
    /// refused it for that reason; `retry_after` says when the window allows one.
    pub fn is_quota_spent(&self) -> bool {
        self.code == QUOTA_SPENT
    }

    /// AWS refused the call because the account's daily quota is spent. Which error
    /// AWS answers then is not documented (reference §8): a
    /// `ServiceQuotaExceededException`, or a `ThrottlingException` that says it is
    /// about the day rather than the rate.
    fn says_daily_quota(&self) -> bool {
        let message = self.message.to_ascii_lowercase();
        self.code == "ServiceQuotaExceededException"
            || (self.code == "ThrottlingException"
                && (message.contains("daily") || message.contains("24 hours")))
    }

    fn quota_spent(class: crate::quota::QuotaClass, status: String, wait: Duration) -> PcError {
        PcError {
            code: QUOTA_SPENT.to_string(),
            message: format!(
                "the daily {} quota is spent ({status}); calls in it wait {} min",
                class.name(),
                wait.as_secs().div_ceil(60)
            ),
            retryable: true,
            body: None,
            retry_after: Some(wait),
        }
    }
}

impl PcError {
    /// A call not sent because its count against the daily quota could not be
    /// recorded (the state file refuses writes): worth retrying once it takes them.
    fn unrecorded(e: crate::quota::UnrecordedCount) -> PcError {
        PcError {
            code: QUOTA_UNRECORDED.to_string(),
            message: format!("{e}; the call was not sent"),
            retryable: true,
            body: None,
            retry_after: None,
        }
    }
}

/// [`PcError::code`] of a call not sent because its daily quota count could not be
/// recorded.
pub const QUOTA_UNRECORDED: &str = "DailyQuotaUnrecorded";

/// [`PcError::code`] of a call a spent daily quota held back.
pub const QUOTA_SPENT: &str = "DailyQuotaSpent";

/// One revision of one of an opportunity's engagement resource snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRevision {
    /// The engagement (`eng-…`).
    pub engagement: String,
    /// The snapshot template (`OpportunitySummaryView`, …).
    pub template: String,
    /// The revision (from 1).
    pub revision: i32,
}

/// Keeps the raw JSON body of the response the SDK deserialized.
#[derive(Debug, Clone, Default)]
struct RawResponse(Arc<Mutex<Option<Vec<u8>>>>);

impl Intercept for RawResponse {
    fn name(&self) -> &'static str {
        "pcsync::RawResponse"
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if let Some(bytes) = context.response().body().bytes() {
            *self.0.lock().expect("raw response lock") = Some(bytes.to_vec());
        }
        Ok(())
    }
}

impl RawResponse {
    fn json(&self) -> Result<Value, PcError> {
        let bytes = self
            .0
            .lock()
            .expect("raw response lock")
            .take()
            .unwrap_or_default();
        serde_json::from_slice(&bytes).map_err(|e| PcError {
            code: "Decode".into(),
            message: format!("the response is not JSON: {e}"),
            retryable: false,
            body: None,
            retry_after: None,
        })
    }
}

fn error<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
    e: SdkError<E, pc::config::http::HttpResponse>,
) -> PcError {
    let (retryable, body, retry_after) = match &e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            (true, None, None)
        }
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            let body = s
                .raw()
                .body()
                .bytes()
                .and_then(|b| serde_json::from_slice(b).ok());
            // Milliseconds, as the SDK's own retries read it.
            let retry_after = s
                .raw()
                .headers()
                .get("x-amz-retry-after")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(std::time::Duration::from_millis);
            (
                status >= 500 || e.code() == Some("ThrottlingException"),
                body,
                retry_after,
            )
        }
        _ => (false, None, None),
    };
    let fallback = if matches!(e, SdkError::TimeoutError(_)) {
        "Timeout"
    } else {
        "Transport"
    };
    PcError {
        code: e.code().unwrap_or(fallback).to_string(),
        message: e
            .message()
            .map(str::to_string)
            .unwrap_or_else(|| pc::error::DisplayErrorContext(&e).to_string()),
        retryable,
        body,
        retry_after,
    }
}

/// A Partner Central client for one catalog. Its limiters keep within the Selling
/// API's account quotas (1 write and 10 reads per second), so that throttling is
/// not hit in steady state (paced: [`crate::paced_quota`]); clones share them.
#[derive(Clone)]
pub struct PartnerCentralClient {
    client: pc::Client,
    catalog: String,
    reads: Arc<DefaultDirectRateLimiter>,
    writes: Arc<DefaultDirectRateLimiter>,
    quotas: Arc<DailyQuotas>,
    observer: Option<Arc<dyn crate::Observer>>,
}

impl std::fmt::Debug for PartnerCentralClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartnerCentralClient")
            .field("catalog", &self.catalog)
            .finish_non_exhaustive()
    }
}

/// Where a paged listing is: the token to send next. Like the SDK's paginators, a
/// listing ends at an absent, empty or repeated token (a service that repeats one
/// would otherwise be asked for the same page forever).
#[derive(Default)]
struct Pages {
    next: Option<String>,
    seen: Option<String>,
}

impl Pages {
    /// The token for the next request (none for the first).
    fn token(&mut self) -> Option<String> {
        self.next.take()
    }

    /// After a page with `next` as its `NextToken`: whether another page follows.
    fn advance(&mut self, next: Option<&str>) -> bool {
        match next.filter(|t| !t.is_empty()) {
            Some(t) if self.seen.as_deref() != Some(t) => {
                self.seen = Some(t.to_string());
                self.next = Some(t.to_string());
                true
            }
            _ => false,
        }
    }
}

/// The API's name in metrics.
const API: &str = "partnercentral";

/// Attempts per call, as the SDK's standard retry mode makes.
const ATTEMPTS: u32 = 3;
/// The first retry's backoff at most, doubling per retry up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: std::time::Duration = std::time::Duration::from_secs(1);
const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(20);

/// How long to wait before retry `attempt + 1`: the service's `x-amz-retry-after` when
/// it sent one, else the SDK's standard "full jitter" (a random share of a doubling
/// bound), never more than [`MAX_BACKOFF`].
fn backoff(attempt: u32, retry_after: Option<std::time::Duration>) -> std::time::Duration {
    retry_after
        .unwrap_or_else(|| {
            let bound = INITIAL_BACKOFF.saturating_mul(1 << attempt.saturating_sub(1).min(5));
            bound.min(MAX_BACKOFF).mul_f64(fastrand::f64())
        })
        .min(MAX_BACKOFF)
}

/// Partner Central's account quotas: reads per second, writes per second.
/// AWS's read quota per second per partner account (reference §8).
pub const READS_PER_SECOND: u32 = 10;
/// AWS's write quota per second per partner account.
pub const WRITES_PER_SECOND: u32 = 1;

impl PartnerCentralClient {
    /// A client using the standard AWS credential chain, talking to `endpoint_url`
    /// when given (the sandbox) instead of AWS.
    pub async fn new(catalog: &str, region: &str, endpoint_url: Option<&str>) -> Self {
        let config =
            crate::aws_sdk_config(region, endpoint_url, None, crate::AwsTimeouts::default()).await;
        Self::from_client(pc::Client::new(&config), catalog)
    }

    /// A client from a shared SDK configuration ([`crate::aws_sdk_config`]).
    pub fn from_config(config: &aws_config::SdkConfig, catalog: &str) -> Self {
        Self::from_client(pc::Client::new(config), catalog)
    }

    /// A client over an existing SDK client.
    pub fn from_client(client: pc::Client, catalog: &str) -> Self {
        // Retries happen in `send`, through the limiters.
        let client = pc::Client::from_conf(
            client
                .config()
                .to_builder()
                .retry_config(pc::config::retry::RetryConfig::disabled())
                .build(),
        );
        let per_second = |n: u32| Arc::new(crate::drained_limiter(crate::paced_quota(n)));
        PartnerCentralClient {
            client,
            catalog: catalog.to_string(),
            reads: per_second(READS_PER_SECOND),
            writes: per_second(WRITES_PER_SECOND),
            quotas: Arc::new(DailyQuotas::new(Default::default())),
            observer: None,
        }
    }

    /// Paces calls under `reads` and `writes` a second instead of AWS's default
    /// quotas, for an account whose quotas AWS raised.
    pub fn with_rates(mut self, reads: u32, writes: u32) -> Self {
        let per_second = |n: u32| Arc::new(crate::drained_limiter(crate::paced_quota(n)));
        self.reads = per_second(reads);
        self.writes = per_second(writes);
        self
    }

    /// Counts calls against `quotas` (shared by every clone of this client, and
    /// restored from the state file by the caller) instead of its own.
    pub fn with_daily_quotas(mut self, quotas: Arc<DailyQuotas>) -> Self {
        self.quotas = quotas;
        self
    }

    /// The daily quotas this client counts against.
    pub fn daily_quotas(&self) -> &Arc<DailyQuotas> {
        &self.quotas
    }

    /// Reports each call (and its wait for the rate limiter) to `observer`, and each
    /// attempt the SDK makes for it.
    pub fn with_observer(mut self, observer: Arc<dyn crate::Observer>) -> Self {
        let config = self
            .client
            .config()
            .to_builder()
            .interceptor(crate::Attempts {
                api: API,
                observer: Arc::clone(&observer),
            })
            .build();
        self.client = pc::Client::from_conf(config);
        self.observer = Some(observer);
        self
    }

    /// Sends `request` (a fresh SDK `send()` per attempt) once `limiter` allows, and
    /// again after a retryable failure (throttling, 5xx, timeout, transport), up to
    /// [`ATTEMPTS`] times with jittered exponential backoff, each retry through the
    /// limiter as well. The SDK's own retries are off for this client: they went out
    /// around the limiter, so a throttled call's retry landed within a second of the
    /// next paced write and was throttled in turn. Reports the waits and the call.
    async fn send<O, E, F>(
        &self,
        operation: &'static str,
        limiter: &DefaultDirectRateLimiter,
        mut request: impl FnMut() -> F,
    ) -> Result<O, PcError>
    where
        F: std::future::Future<Output = Result<O, SdkError<E, pc::config::http::HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let began = std::time::Instant::now();
        let mut waited = std::time::Duration::ZERO;
        let mut attempt = 1;
        let class = crate::quota::quota_class(operation);
        let now_ms = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64)
        };
        let spent = |class: QuotaClass, wait: Duration| {
            let used = self.quotas.used(class, now_ms());
            let limit = self.quotas.limits().of(class);
            PcError::quota_spent(class, format!("{used} of {limit} calls in 24 hours"), wait)
        };
        let result = loop {
            if let Some(class) = class
                && let Err(wait) = self.quotas.admit(class, now_ms())
            {
                break Err(spent(class, wait));
            }
            let queued = std::time::Instant::now();
            limiter.until_ready().await;
            waited += queued.elapsed();
            // Counted (durably, with a journal) before it is sent; a call whose
            // count cannot be kept is not sent.
            if let Some(class) = class
                && let Err(e) = self.quotas.count(class, now_ms())
            {
                break Err(PcError::unrecorded(e));
            }
            match request().await.map_err(error) {
                Err(e) if e.says_daily_quota() => {
                    // Without a documented class, the read allowance (the limiter it
                    // shares) is the one AWS means.
                    let class = class.unwrap_or(QuotaClass::Read);
                    let wait = self.quotas.pause(class, now_ms());
                    let mut spent = spent(class, wait);
                    spent.message = format!("{}; AWS said: {}", spent.message, e.message);
                    break Err(spent);
                }
                Err(e) if e.retryable && attempt < ATTEMPTS => {
                    tokio::time::sleep(backoff(attempt, e.retry_after)).await;
                    attempt += 1;
                }
                result => break result,
            }
        };
        if let Some(o) = &self.observer {
            o.waited(API, waited);
            let outcome = match &result {
                Ok(_) => "ok",
                Err(e) => e.code.as_str(),
            };
            o.called(
                API,
                operation,
                outcome,
                began.elapsed().saturating_sub(waited),
            );
        }
        result
    }

    /// [`PartnerCentralClient::send`] for a request that keeps the raw response body
    /// (`request` attaches the given [`RawResponse`] with `.interceptor(raw)`): the
    /// response as the API's JSON.
    async fn send_json<O, E, F>(
        &self,
        operation: &'static str,
        limiter: &DefaultDirectRateLimiter,
        mut request: impl FnMut(RawResponse) -> F,
    ) -> Result<Value, PcError>
    where
        F: std::future::Future<Output = Result<O, SdkError<E, pc::config::http::HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let raw = RawResponse::default();
        self.send(operation, limiter, || request(raw.clone()))
            .await?;
        raw.json()
    }

    /// GetOpportunity, as Partner Central returns it.
    pub async fn get_opportunity(&self, id: &str) -> Result<Value, PcError> {
        self.send_json("GetOpportunity", &self.reads, |raw| {
            self.client
                .get_opportunity()
                .catalog(&self.catalog)
                .identifier(id)
                .customize()
                .interceptor(raw)
                .send()
        })
        .await
    }

    /// GetAwsOpportunitySummary, as Partner Central returns it; `None` before AWS has
    /// one (the opportunity was not submitted).
    pub async fn get_aws_summary(&self, id: &str) -> Result<Option<Value>, PcError> {
        match self
            .send_json("GetAwsOpportunitySummary", &self.reads, |raw| {
                self.client
                    .get_aws_opportunity_summary()
                    .catalog(&self.catalog)
                    .related_opportunity_identifier(id)
                    .customize()
                    .interceptor(raw)
                    .send()
            })
            .await
        {
            Ok(json) => Ok(Some(json)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The revisions of the opportunity's engagement resource snapshots with these
    /// template names, oldest first per engagement and template:
    /// ListEngagementResourceAssociations finds the engagements, ListResourceSnapshots
    /// their revisions. AWS never changes a revision once made, so a caller that
    /// kept one need not read it again ([`PartnerCentralClient::snapshot`]).
    pub async fn snapshot_revisions(
        &self,
        opportunity_id: &str,
        templates: &[String],
    ) -> Result<Vec<SnapshotRevision>, PcError> {
        let opportunity = pc::types::ResourceType::Opportunity;
        let mut engagements = Vec::new();
        let mut pages = Pages::default();
        loop {
            let token = pages.token();
            let page = self
                .send("ListEngagementResourceAssociations", &self.reads, || {
                    self.client
                        .list_engagement_resource_associations()
                        .catalog(&self.catalog)
                        .resource_type(opportunity.clone())
                        .resource_identifier(opportunity_id)
                        .set_next_token(token.clone())
                        .send()
                })
                .await?;
            for a in page.engagement_resource_association_summaries() {
                if let Some(id) = a.engagement_id()
                    && !engagements.iter().any(|e| e == id)
                {
                    engagements.push(id.to_string());
                }
            }
            if !pages.advance(page.next_token()) {
                break;
            }
        }
        let mut found = Vec::new();
        for engagement in &engagements {
            for template in templates {
                let mut revisions = Vec::new();
                let mut pages = Pages::default();
                loop {
                    let token = pages.token();
                    let page = self
                        .send("ListResourceSnapshots", &self.reads, || {
                            self.client
                                .list_resource_snapshots()
                                .catalog(&self.catalog)
                                .engagement_identifier(engagement)
                                .resource_type(opportunity.clone())
                                .resource_identifier(opportunity_id)
                                .resource_snapshot_template_identifier(template)
                                .set_next_token(token.clone())
                                .send()
                        })
                        .await?;
                    revisions.extend(
                        page.resource_snapshot_summaries()
                            .iter()
                            .filter_map(|s| s.revision()),
                    );
                    if !pages.advance(page.next_token()) {
                        break;
                    }
                }
                revisions.sort_unstable();
                revisions.dedup();
                found.extend(revisions.into_iter().map(|revision| SnapshotRevision {
                    engagement: engagement.clone(),
                    template: template.clone(),
                    revision,
                }));
            }
        }
        Ok(found)
    }

    /// GetResourceSnapshot for one revision of one of the opportunity's snapshots, as
    /// the API returns it.
    pub async fn snapshot(
        &self,
        opportunity_id: &str,
        which: &SnapshotRevision,
    ) -> Result<Value, PcError> {
        self.send_json("GetResourceSnapshot", &self.reads, |raw| {
            self.client
                .get_resource_snapshot()
                .catalog(&self.catalog)
                .engagement_identifier(&which.engagement)
                .resource_type(pc::types::ResourceType::Opportunity)
                .resource_identifier(opportunity_id)
                .resource_snapshot_template_identifier(&which.template)
                .revision(which.revision)
                .customize()
                .interceptor(raw)
                .send()
        })
        .await
    }

    /// CreateOpportunity with `body` (the request's members besides `Catalog` and
    /// `ClientToken`), idempotent on `client_token`. Returns the response (`Id`,
    /// `LastModifiedDate`).
    pub async fn create_opportunity(
        &self,
        client_token: &str,
        body: &Value,
    ) -> Result<Value, PcError> {
        let mut request = body.as_object().cloned().unwrap_or_default();
        request.insert("Catalog".into(), Value::String(self.catalog.clone()));
        request.insert(
            "ClientToken".into(),
            Value::String(client_token.to_string()),
        );
        let bytes = Value::Object(request).to_string().into_bytes();
        self.send_json("CreateOpportunity", &self.writes, |raw| {
            let bytes = bytes.clone();
            self.client
                .create_opportunity()
                .catalog(&self.catalog)
                .client_token(client_token)
                .customize()
                .mutate_request(move |r| {
                    *r.body_mut() = bytes.clone().into();
                    r.headers_mut()
                        .insert("content-length", bytes.len().to_string());
                })
                .interceptor(raw)
                .send()
        })
        .await
    }

    /// The opportunity pcsync created with this `PartnerOpportunityIdentifier`, as
    /// CreateOpportunity answers (`Id`, `PartnerOpportunityIdentifier`,
    /// `LastModifiedDate`): ListOpportunities newest first, a few pages at most (the
    /// one sought was created moments ago). For a create whose ClientToken meets a
    /// changed body after an earlier try succeeded.
    pub async fn find_by_partner_identifier(
        &self,
        partner_id: &str,
    ) -> Result<Option<Value>, PcError> {
        if partner_id.is_empty() {
            return Ok(None);
        }
        let sort = pc::types::OpportunitySort::builder()
            .sort_by(pc::types::OpportunitySortName::CreatedDate)
            .sort_order(pc::types::SortOrder::Descending)
            .build()
            .map_err(|e| PcError {
                code: "InvalidInput".into(),
                message: e.to_string(),
                retryable: false,
                body: None,
                retry_after: None,
            })?;
        let mut pages = Pages::default();
        for _ in 0..5 {
            let token = pages.token();
            let page = self
                .send_json("ListOpportunities", &self.reads, |raw| {
                    self.client
                        .list_opportunities()
                        .catalog(&self.catalog)
                        .sort(sort.clone())
                        .max_results(100)
                        .set_next_token(token.clone())
                        .customize()
                        .interceptor(raw)
                        .send()
                })
                .await?;
            let found = page["OpportunitySummaries"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|o| o["PartnerOpportunityIdentifier"] == partner_id);
            if let Some(o) = found {
                return Ok(Some(serde_json::json!({
                    "Id": o["Id"],
                    "PartnerOpportunityIdentifier": o["PartnerOpportunityIdentifier"],
                    "LastModifiedDate": o["LastModifiedDate"],
                })));
            }
            if !pages.advance(page["NextToken"].as_str()) {
                break;
            }
        }
        Ok(None)
    }

    /// The whole solution catalog (every status, all pages), as ListSolutions returns
    /// its `SolutionSummaries`. ListSolutions has no search and no get-by-id, so the
    /// Solutions API keeps this list in memory and answers from it.
    pub async fn list_solutions(&self) -> Result<Vec<Value>, PcError> {
        let mut solutions = Vec::new();
        let mut pages = Pages::default();
        loop {
            let token = pages.token();
            let mut page = self
                .send_json("ListSolutions", &self.reads, |raw| {
                    self.client
                        .list_solutions()
                        .catalog(&self.catalog)
                        .max_results(100)
                        .set_next_token(token.clone())
                        .customize()
                        .interceptor(raw)
                        .send()
                })
                .await?;
            if let Some(Value::Array(items)) = page.get_mut("SolutionSummaries").map(Value::take) {
                solutions.extend(items);
            }
            if !pages.advance(page["NextToken"].as_str()) {
                break;
            }
        }
        Ok(solutions)
    }

    /// One solution by id (ListSolutions filtered to it: the API has no
    /// GetSolution), as ListSolutions returns it; `None` when the catalog has none.
    pub async fn solution(&self, id: &str) -> Result<Option<Value>, PcError> {
        let page = self
            .send_json("ListSolutions", &self.reads, |raw| {
                self.client
                    .list_solutions()
                    .catalog(&self.catalog)
                    .identifier(id)
                    .customize()
                    .interceptor(raw)
                    .send()
            })
            .await?;
        Ok(page["SolutionSummaries"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["Id"].as_str() == Some(id)))
            .cloned())
    }

    /// The opportunities changed on or after `since` (RFC 3339), by ListOpportunities
    /// with a `LastModifiedDate` filter, all pages: each id with its
    /// `LastModifiedDate`.
    pub async fn changed_opportunities(
        &self,
        since: &str,
    ) -> Result<Vec<(String, String)>, PcError> {
        let after =
            DateTime::from_str(since, DateTimeFormat::DateTimeWithOffset).map_err(|e| PcError {
                code: "InvalidInput".into(),
                message: format!("`{since}` is not RFC 3339: {e}"),
                retryable: false,
                body: None,
                retry_after: None,
            })?;
        let filter = pc::types::LastModifiedDate::builder()
            .after_last_modified_date(after)
            .build();
        let mut changed = Vec::new();
        let mut pages = Pages::default();
        loop {
            let token = pages.token();
            let page = self
                .send("ListOpportunities", &self.reads, || {
                    self.client
                        .list_opportunities()
                        .catalog(&self.catalog)
                        .last_modified_date(filter.clone())
                        .max_results(100)
                        .set_next_token(token.clone())
                        .send()
                })
                .await?;
            for o in page.opportunity_summaries() {
                if let Some(id) = o.id() {
                    let modified = o
                        .last_modified_date()
                        .and_then(|d| d.fmt(DateTimeFormat::DateTime).ok())
                        .unwrap_or_default();
                    changed.push((id.to_string(), modified));
                }
            }
            if !pages.advance(page.next_token()) {
                break;
            }
        }
        Ok(changed)
    }

    /// AssociateOpportunity with a solution.
    pub async fn associate_solution(
        &self,
        opportunity_id: &str,
        solution_id: &str,
    ) -> Result<(), PcError> {
        self.send("AssociateOpportunity", &self.writes, || {
            self.client
                .associate_opportunity()
                .catalog(&self.catalog)
                .opportunity_identifier(opportunity_id)
                .related_entity_type(pc::types::RelatedEntityType::Solutions)
                .related_entity_identifier(solution_id)
                .send()
        })
        .await
        .map(|_| ())
    }

    /// StartEngagementFromOpportunityTask: submits the opportunity to AWS. The task
    /// is asynchronous: the answer (`TaskId`, `TaskStatus`…, as the API writes it) is
    /// usually `IN_PROGRESS`; [`PartnerCentralClient::engagement_task`] follows it.
    pub async fn start_engagement(
        &self,
        opportunity_id: &str,
        client_token: &str,
        involvement_type: &str,
        visibility: &str,
    ) -> Result<Value, PcError> {
        let submission = pc::types::AwsSubmission::builder()
            .involvement_type(pc::types::SalesInvolvementType::from(involvement_type))
            .visibility(pc::types::Visibility::from(visibility))
            .build()
            .map_err(|e| PcError {
                code: "InvalidInput".into(),
                message: e.to_string(),
                retryable: false,
                body: None,
                retry_after: None,
            })?;
        self.send_json("StartEngagementFromOpportunityTask", &self.writes, |raw| {
            self.client
                .start_engagement_from_opportunity_task()
                .catalog(&self.catalog)
                .client_token(client_token)
                .identifier(opportunity_id)
                .aws_submission(submission.clone())
                .customize()
                .interceptor(raw)
                .send()
        })
        .await
    }

    /// A submission task as ListEngagementFromOpportunityTasks lists it (`TaskStatus`
    /// `IN_PROGRESS`, `COMPLETE` or `FAILED` with `ReasonCode` and `Message`); `None`
    /// when the listing does not know it.
    pub async fn engagement_task(&self, task_id: &str) -> Result<Option<Value>, PcError> {
        let mut page = self
            .send_json("ListEngagementFromOpportunityTasks", &self.reads, |raw| {
                self.client
                    .list_engagement_from_opportunity_tasks()
                    .catalog(&self.catalog)
                    .task_identifier(task_id)
                    .customize()
                    .interceptor(raw)
                    .send()
            })
            .await?;
        Ok(page["TaskSummaries"].as_array_mut().and_then(|tasks| {
            let i = tasks.iter().position(|t| t["TaskId"] == task_id)?;
            Some(tasks.swap_remove(i))
        }))
    }

    /// UpdateOpportunity with the whole `record` (as GetOpportunity returned it, with
    /// pcsync's changes applied), guarded by `last_modified` (RFC 3339). Returns the new
    /// `LastModifiedDate`.
    pub async fn update_opportunity(
        &self,
        id: &str,
        last_modified: &str,
        record: &Value,
    ) -> Result<String, PcError> {
        let when =
            DateTime::from_str(last_modified, DateTimeFormat::DateTimeWithOffset).map_err(|e| {
                PcError {
                    code: "InvalidInput".into(),
                    message: format!("LastModifiedDate `{last_modified}` is not RFC 3339: {e}"),
                    retryable: false,
                    body: None,
                    retry_after: None,
                }
            })?;
        let mut body = Map::new();
        body.insert("Catalog".into(), Value::String(self.catalog.clone()));
        body.insert("Identifier".into(), Value::String(id.to_string()));
        body.insert(
            "LastModifiedDate".into(),
            Value::String(last_modified.to_string()),
        );
        for member in UPDATE_MEMBERS {
            if let Some(v) = record.get(*member).filter(|v| !v.is_null()) {
                body.insert((*member).to_string(), v.clone());
            }
        }
        if let Some(lifecycle) = body.get_mut("LifeCycle").and_then(Value::as_object_mut) {
            for member in READ_ONLY_LIFECYCLE {
                lifecycle.remove(*member);
            }
        }
        let bytes = Value::Object(body).to_string().into_bytes();
        let out = self
            .send_json("UpdateOpportunity", &self.writes, |raw| {
                let bytes = bytes.clone();
                self.client
                    .update_opportunity()
                    .catalog(&self.catalog)
                    .identifier(id)
                    .last_modified_date(when)
                    .customize()
                    .mutate_request(move |request| {
                        // The full record replaces the SDK's body before it is signed.
                        *request.body_mut() = bytes.clone().into();
                        request
                            .headers_mut()
                            .insert("content-length", bytes.len().to_string());
                    })
                    .interceptor(raw)
                    .send()
            })
            .await?;
        Ok(out["LastModifiedDate"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::Pages;

    #[test]
    fn a_listing_ends_at_an_absent_empty_or_repeated_token() {
        let mut pages = Pages::default();
        assert_eq!(pages.token(), None);
        assert!(pages.advance(Some("t1")));
        assert_eq!(pages.token().as_deref(), Some("t1"));
        assert!(pages.advance(Some("t2")));
        assert_eq!(pages.token().as_deref(), Some("t2"));
        assert!(!pages.advance(Some("t2")), "repeated");
        assert!(!Pages::default().advance(Some("")), "empty");
        assert!(!Pages::default().advance(None), "absent");
    }
}
