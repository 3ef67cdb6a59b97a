//! HubSpot's CRM v3 API over HTTP (reqwest), with client-side rate limiting so the
//! account's limits are not hit in steady state: the private app's requests per
//! rolling 10 seconds, and CRM search's 5 per second (governor).

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota};
use indexmap::IndexMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A failed HubSpot call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubSpotError {
    /// HubSpot answered with an error.
    #[error("HubSpot answered {status}: {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// HubSpot's `category` (or `errorType` on 429s), e.g. `VALIDATION_ERROR`.
        category: Option<String>,
        /// HubSpot's message.
        message: String,
        /// Whether trying again later may succeed (429 other than the daily limit, 5xx).
        retryable: bool,
        /// How long HubSpot asked callers to wait (`Retry-After`, in seconds), if it
        /// said; for the daily limit, the time until it resets.
        retry_after: Option<Duration>,
        /// The limit a 429 names (`policyName`: `DAILY`, `TEN_SECONDLY_ROLLING`).
        policy: Option<String>,
    },
    /// The request did not get an answer (connection, timeout).
    #[error("HubSpot could not be reached: {0}")]
    Transport(String),
    /// The answer was not what the API documents.
    #[error("unexpected answer from HubSpot: {0}")]
    Decode(String),
    /// An object id that is not one (HubSpot's are numbers): never sent, since it
    /// would become part of a URL path.
    #[error("`{0}` is not a HubSpot object id (digits only)")]
    InvalidId(String),
}

impl HubSpotError {
    /// How long the API asked to wait before trying again, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            HubSpotError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether this is HubSpot's daily limit (a 429 with `policyName` `DAILY`): no
    /// retry helps before it resets, at midnight in the account's time zone
    /// (reference §5.1, §5.4), which [`HubSpotError::retry_after`] then says.
    pub fn is_daily_limit(&self) -> bool {
        matches!(self, HubSpotError::Status { status: 429, policy: Some(p), .. } if p == "DAILY")
    }

    /// Whether trying again later may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            HubSpotError::Status { retryable, .. } => *retryable,
            HubSpotError::Transport(_) => true,
            HubSpotError::Decode(_) | HubSpotError::InvalidId(_) => false,
        }
    }
}

/// The next midnight in `tz` after `now`: when HubSpot's daily limit resets ("at
/// midnight based on your time zone setting", reference §5.1).
pub fn next_midnight(now: jiff::Timestamp, tz: &jiff::tz::TimeZone) -> jiff::Timestamp {
    now.to_zoned_datetime(tz.clone())
        .date()
        .tomorrow()
        .ok()
        .and_then(|d| d.to_zoned_datetime(tz.clone()).ok())
        .map(|midnight| midnight.timestamp())
        .unwrap_or_else(|| now + jiff::SignedDuration::from_hours(24))
}

/// How long from `now` until [`next_midnight`], in whole seconds rounded up (a wait
/// counted from a moment later still ends after the reset).
pub fn until_midnight(now: jiff::Timestamp, tz: &jiff::tz::TimeZone) -> Duration {
    let wait = Duration::try_from(now.duration_until(next_midnight(now, tz)))
        .unwrap_or(Duration::from_secs(24 * 3600));
    Duration::from_secs(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
}

/// A deal as read: its id and the requested properties (`None` when unset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deal {
    /// The deal id.
    pub id: String,
    /// Property values.
    pub properties: IndexMap<String, Option<String>>,
}

/// A deal property definition to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertySpec {
    /// Internal name.
    pub name: String,
    /// Label shown in HubSpot.
    pub label: String,
    /// `string`, `number`, `datetime`…
    pub kind: String,
    /// `text`, `textarea`, `date`…
    pub field_type: String,
    /// Description shown in HubSpot.
    pub description: String,
}

/// A HubSpot CRM v3 client for one private app.
///
/// Its limiter keeps within the account's limits, so they are not hit in steady
/// state: every rolling 10 seconds at most the configured number of requests, every
/// second at most 5 searches.
#[derive(Debug)]
pub struct HubSpotClient {
    http: reqwest::Client,
    base_url: String,
    token: String,
    requests: DefaultDirectRateLimiter,
    searches: DefaultDirectRateLimiter,
    observer: Option<std::sync::Arc<dyn crate::Observer>>,
    time_zone: jiff::tz::TimeZone,
}

impl HubSpotClient {
    /// A client for `base_url` (`https://api.hubapi.com`) with a private-app `token`,
    /// sending at most `per_10s` requests per 10 seconds.
    pub fn new(base_url: &str, token: &str, per_10s: u32) -> Self {
        let requests = window_quota(per_10s, Duration::from_secs(10));
        // Spaced 5% under the limit with no burst, as for Partner Central: a burst
        // paced at exactly 5 a second meets HubSpot's rolling second with jitter and
        // is refused.
        let searches = crate::paced_quota(5);
        HubSpotClient {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
            base_url: base_url.trim_end_matches('/').to_string(),
            token: token.to_string(),
            requests: crate::drained_limiter(requests),
            searches: crate::drained_limiter(searches),
            observer: None,
            time_zone: jiff::tz::TimeZone::UTC,
        }
    }

    /// The account's time zone (HubSpot's Account defaults), UTC unless set: the daily
    /// limit resets at its midnight.
    pub fn with_time_zone(mut self, time_zone: jiff::tz::TimeZone) -> Self {
        self.time_zone = time_zone;
        self
    }

    /// Allows `per_second` CRM searches a second instead of HubSpot's 5.
    pub fn with_search_rate(mut self, per_second: u32) -> Self {
        self.searches = crate::drained_limiter(crate::paced_quota(per_second));
        self
    }

    /// Reports each call (and its wait for the rate limiter) to `observer`.
    pub fn with_observer(mut self, observer: std::sync::Arc<dyn crate::Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), HubSpotError> {
        let queued = std::time::Instant::now();
        if path.ends_with("/search") {
            self.searches.until_ready().await;
        } else {
            self.requests.until_ready().await;
        }
        let started = std::time::Instant::now();
        let operation = self
            .observer
            .as_ref()
            .map(|_| format!("{method} {}", path_template(path)));
        let result = self.send(method, path, body).await;
        if let (Some(o), Some(operation)) = (&self.observer, operation) {
            o.waited("hubspot", started - queued);
            let outcome = match &result {
                Ok(_) => "ok".to_string(),
                Err(HubSpotError::Status { status, .. }) => status.to_string(),
                Err(HubSpotError::Transport(_)) => "transport".to_string(),
                Err(HubSpotError::Decode(_)) => "decode".to_string(),
                Err(HubSpotError::InvalidId(_)) => "invalid_id".to_string(),
            };
            o.called("hubspot", &operation, &outcome, started.elapsed());
        }
        result
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), HubSpotError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base_url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            request = request.json(&b);
        }
        let response = request
            .send()
            .await
            .map_err(|e| HubSpotError::Transport(e.to_string()))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response
            .text()
            .await
            .map_err(|e| HubSpotError::Transport(e.to_string()))?;
        // Some HubSpot 404s are HTML, not JSON (reference §4.3): do not insist on JSON.
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok((status, body));
        }
        let category = body["category"]
            .as_str()
            .or_else(|| body["errorType"].as_str())
            .map(str::to_string);
        let now = jiff::Timestamp::now();
        let policy = body["policyName"].as_str().map(str::to_string);
        let daily = status == StatusCode::TOO_MANY_REQUESTS && policy.as_deref() == Some("DAILY");
        // 423 Locked: "Locks will last for 2 seconds … include a delay of at least 2
        // seconds"; 477 Migration in Progress comes with Retry-After in seconds
        // (reference §4.3).
        let locked = status.as_u16() == 423;
        let retry_after = match retry_after {
            None if locked => Some(Duration::from_secs(2)),
            None if daily => Some(until_midnight(now, &self.time_zone)),
            other => other,
        };
        let error = Err(HubSpotError::Status {
            status: status.as_u16(),
            message: body["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| text.chars().take(200).collect()),
            category,
            retryable: (status == StatusCode::TOO_MANY_REQUESTS && !daily)
                || locked
                || status.as_u16() == 477
                || status.is_server_error(),
            retry_after,
            policy,
        });
        if daily && let Some(o) = &self.observer {
            o.daily_limit("hubspot", next_midnight(now, &self.time_zone));
        }
        error
    }

    /// Reads a deal with `properties`; `None` when it does not exist.
    pub async fn get_deal(
        &self,
        id: &str,
        properties: &[String],
    ) -> Result<Option<Deal>, HubSpotError> {
        let id = checked_id(id)?;
        let query: String = properties
            .iter()
            .map(|p| format!("&properties={p}"))
            .collect();
        match self
            .call(
                Method::GET,
                &format!("/crm/v3/objects/deals/{id}?archived=false{query}"),
                None,
            )
            .await
        {
            Ok((_, body)) => Ok(Some(deal(&body)?)),
            Err(HubSpotError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The deal's primary company (v4 associations, type 5 "Primary", else the first
    /// associated company) with `properties`; `None` when the deal has no company.
    pub async fn primary_company(
        &self,
        deal_id: &str,
        properties: &[String],
    ) -> Result<Option<Deal>, HubSpotError> {
        let deal_id = checked_id(deal_id)?;
        let (_, body) = match self
            .call(
                Method::GET,
                &format!("/crm/v4/objects/deals/{deal_id}/associations/companies"),
                None,
            )
            .await
        {
            Ok(found) => found,
            Err(HubSpotError::Status { status: 404, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let results = body["results"].as_array().cloned().unwrap_or_default();
        let primary = results
            .iter()
            .find(|r| {
                r["associationTypes"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t["typeId"] == 5))
            })
            .or_else(|| results.first());
        let Some(id) = primary.and_then(|r| object_id(&r["toObjectId"])) else {
            return Ok(None);
        };
        let query: String = properties
            .iter()
            .map(|p| format!("&properties={p}"))
            .collect();
        match self
            .call(
                Method::GET,
                &format!("/crm/v3/objects/companies/{id}?archived=false{query}"),
                None,
            )
            .await
        {
            Ok((_, body)) => Ok(Some(deal(&body)?)),
            Err(HubSpotError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The deals a company is associated with (v4 associations), in HubSpot's order.
    pub async fn company_deals(&self, company_id: &str) -> Result<Vec<String>, HubSpotError> {
        let company_id = checked_id(company_id)?;
        match self
            .call(
                Method::GET,
                &format!("/crm/v4/objects/companies/{company_id}/associations/deals"),
                None,
            )
            .await
        {
            Ok((_, body)) => Ok(body["results"]
                .as_array()
                .map(|r| {
                    r.iter()
                        .filter_map(|r| object_id(&r["toObjectId"]))
                        .collect()
                })
                .unwrap_or_default()),
            Err(HubSpotError::Status { status: 404, .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Sets deal properties.
    pub async fn update_deal(
        &self,
        id: &str,
        properties: &IndexMap<String, String>,
    ) -> Result<(), HubSpotError> {
        let id = checked_id(id)?;
        self.call(
            Method::PATCH,
            &format!("/crm/v3/objects/deals/{id}"),
            Some(json!({ "properties": properties })),
        )
        .await
        .map(|_| ())
    }

    /// Deals whose `property` equals `value` (CRM search, first 100).
    pub async fn find_deals(
        &self,
        property: &str,
        value: &str,
        properties: &[String],
    ) -> Result<Vec<Deal>, HubSpotError> {
        let body = json!({
            "filterGroups": [{ "filters": [{ "propertyName": property, "operator": "EQ", "value": value }] }],
            "properties": properties,
            "limit": 100,
        });
        let (_, found) = self
            .call(Method::POST, "/crm/v3/objects/deals/search", Some(body))
            .await?;
        found["results"]
            .as_array()
            .into_iter()
            .flatten()
            .map(deal)
            .collect()
    }

    /// The deals whose `property` is one of `values` (CRM search's `IN`, all pages),
    /// with these properties: up to 50 values a query, fewer when the body would pass
    /// the 3,000 characters CRM search takes. HubSpot compares `IN` values with string
    /// properties in lower case, so they are sent that way.
    pub async fn deals_in(
        &self,
        property: &str,
        values: &[String],
        properties: &[String],
    ) -> Result<Vec<Deal>, HubSpotError> {
        const VALUES: usize = 50;
        const PAGE: u64 = 200;
        // Room for the `after` token on later pages.
        const BODY: usize = 2_950;
        let query = |values: &[String]| {
            json!({
                "filterGroups": [{ "filters": [{ "propertyName": property, "operator": "IN", "values": values }] }],
                "properties": properties,
                "sorts": [{ "propertyName": "hs_object_id", "direction": "ASCENDING" }],
                "limit": PAGE,
            })
        };
        let empty = query(&[]).to_string().len();
        let mut chunks: Vec<Vec<String>> = Vec::new();
        let mut size = empty;
        for value in values {
            let value = value.to_lowercase();
            let more = value.len() + 3;
            match chunks.last_mut() {
                Some(chunk) if chunk.len() < VALUES && size + more <= BODY => chunk.push(value),
                _ => {
                    chunks.push(vec![value]);
                    size = empty;
                }
            }
            size += more;
        }
        let mut deals = Vec::new();
        for chunk in &chunks {
            let mut after: Option<String> = None;
            loop {
                let mut body = query(chunk);
                if let Some(a) = &after {
                    body["after"] = json!(a);
                }
                let (found, next) = self.search_page(body).await?;
                after = next.filter(|_| !found.is_empty());
                deals.extend(found);
                if after.is_none() {
                    break;
                }
            }
        }
        Ok(deals)
    }

    /// Every deal that has `property` set: the deals a scheduled pack goes over.
    ///
    /// CRM search answers at most 10,000 results per query (paging further is a 400).
    /// Sorted by `hs_object_id`, the listing goes on past that with a new query for
    /// the ids above the last one seen (keyset paging), so any number of deals is
    /// listed, 200 (the page maximum) a call.
    pub async fn deals_with(
        &self,
        property: &str,
        properties: &[String],
    ) -> Result<Vec<Deal>, HubSpotError> {
        const PAGE: u64 = 200;
        const QUERY_RESULTS: u64 = 10_000;
        let mut deals = Vec::new();
        let mut above: Option<String> = None;
        let mut after: u64 = 0;
        loop {
            let mut filters = vec![json!({ "propertyName": property, "operator": "HAS_PROPERTY" })];
            if let Some(id) = &above {
                filters
                    .push(json!({ "propertyName": "hs_object_id", "operator": "GT", "value": id }));
            }
            let mut body = json!({
                "filterGroups": [{ "filters": filters }],
                "properties": properties,
                "sorts": [{ "propertyName": "hs_object_id", "direction": "ASCENDING" }],
                "limit": PAGE,
            });
            if after > 0 {
                body["after"] = json!(after.to_string());
            }
            let (found, next) = self.search_page(body).await?;
            let empty = found.is_empty();
            deals.extend(found);
            match next.and_then(|a| a.parse::<u64>().ok()) {
                None => return Ok(deals),
                Some(_) if empty => return Ok(deals),
                // The next page would pass what one query may return: start a new
                // query above the last id.
                Some(next) if next + PAGE > QUERY_RESULTS => {
                    above = deals.last().map(|d| d.id.clone());
                    after = 0;
                }
                Some(next) => after = next,
            }
        }
    }

    /// One page of a deal search: its deals, and the `after` token of the next page.
    async fn search_page(&self, body: Value) -> Result<(Vec<Deal>, Option<String>), HubSpotError> {
        let (_, page) = self
            .call(Method::POST, "/crm/v3/objects/deals/search", Some(body))
            .await?;
        let deals = page["results"]
            .as_array()
            .into_iter()
            .flatten()
            .map(deal)
            .collect::<Result<Vec<_>, _>>()?;
        let next = page["paging"]["next"]["after"].as_str().map(str::to_string);
        Ok((deals, next))
    }

    /// Adds a note to a deal (association type 214, note → deal). `body` is Markdown,
    /// stored as the HTML HubSpot keeps notes in.
    pub async fn create_note(
        &self,
        deal_id: &str,
        body: &str,
        timestamp: &str,
    ) -> Result<String, HubSpotError> {
        let input = json!({
            "properties": { "hs_timestamp": timestamp, "hs_note_body": super::html::from_markdown(body) },
            "associations": [{ "to": { "id": deal_id }, "types": [{ "associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 214 }] }],
        });
        let (_, created) = self
            .call(Method::POST, "/crm/v3/objects/notes", Some(input))
            .await?;
        id_of(&created)
    }

    /// Creates a task on a deal (association type 216, task → deal), due at `due`.
    pub async fn create_task(
        &self,
        deal_id: &str,
        owner: &str,
        subject: &str,
        body: &str,
        priority: &str,
        due: &str,
    ) -> Result<String, HubSpotError> {
        let mut properties = json!({
            "hs_timestamp": due, "hs_task_subject": subject, "hs_task_body": super::html::from_markdown(body),
            "hs_task_status": "NOT_STARTED", "hs_task_priority": priority.to_uppercase(), "hs_task_type": "TODO",
        });
        if !owner.is_empty() {
            properties["hubspot_owner_id"] = json!(owner);
        }
        let input = json!({
            "properties": properties,
            "associations": [{ "to": { "id": deal_id }, "types": [{ "associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 216 }] }],
        });
        let (_, created) = self
            .call(Method::POST, "/crm/v3/objects/tasks", Some(input))
            .await?;
        id_of(&created)
    }

    /// The names of the deal properties the account has.
    pub async fn deal_property_names(&self) -> Result<Vec<String>, HubSpotError> {
        let (_, body) = self
            .call(Method::GET, "/crm/v3/properties/deals", None)
            .await?;
        Ok(body["results"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["name"].as_str().map(str::to_string))
            .collect())
    }

    /// Creates a deal property; `Ok(false)` when one with that name already exists.
    pub async fn create_deal_property(&self, spec: &PropertySpec) -> Result<bool, HubSpotError> {
        let body = json!({
            "name": spec.name, "label": spec.label, "type": spec.kind, "fieldType": spec.field_type,
            "groupName": "dealinformation", "description": spec.description,
        });
        match self
            .call(Method::POST, "/crm/v3/properties/deals", Some(body))
            .await
        {
            Ok(_) => Ok(true),
            Err(HubSpotError::Status { status: 409, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// A GCRA quota that never exceeds `limit` requests in any rolling `window`, as
/// HubSpot counts them. A burst of the whole limit followed by the steady rate would
/// allow nearly twice the limit inside one window; a tenth of the limit as burst and
/// the rest spread evenly keeps every window at or under the limit while sustaining
/// about nine tenths of it.
///
/// With a burst of B and one request per T after it, a window of length W holds at
/// most B + ceil(W/T) − 1 requests; T = W / (limit − B + 1) makes that the limit, and
/// 1% more on T leaves room for requests that reach HubSpot closer together than they
/// left.
fn window_quota(limit: u32, window: Duration) -> Quota {
    let limit = limit.max(2);
    let burst = (limit / 10).max(1);
    let period = window.mul_f64(1.01) / (limit - burst + 1);
    Quota::with_period(period)
        .expect("a positive period")
        .allow_burst(NonZeroU32::new(burst).expect("at least one"))
}

fn id_of(v: &Value) -> Result<String, HubSpotError> {
    v["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| HubSpotError::Decode(format!("no `id` in {v}")))
}

/// Whether `id` can be a HubSpot object id: 1 to 20 ASCII digits (a `u64`). Ids
/// go into URL paths, so anything else (`1/../../owners`) is refused before a
/// request is made, whoever supplied it: a webhook, a deal property, an AWS field.
pub fn is_object_id(id: &str) -> bool {
    (1..=20).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit())
}

fn checked_id(id: &str) -> Result<&str, HubSpotError> {
    if is_object_id(id) {
        Ok(id)
    } else {
        Err(HubSpotError::InvalidId(id.chars().take(64).collect()))
    }
}

/// An associated object's id (v4 writes it as a number), as text of digits only.
fn object_id(v: &Value) -> Option<String> {
    let text = match v {
        Value::Number(n) => n.as_u64()?.to_string(),
        Value::String(s) => s.clone(),
        _ => return None,
    };
    is_object_id(&text).then_some(text)
}

fn deal(v: &Value) -> Result<Deal, HubSpotError> {
    let id = id_of(v)?;
    let properties = v["properties"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string)))
                .collect()
        })
        .unwrap_or_default();
    Ok(Deal { id, properties })
}

/// A path with its ids replaced, for metric labels: `/crm/v3/objects/deals/123?x`
/// becomes `/crm/v3/objects/deals/{id}`.
fn path_template(path: &str) -> String {
    let path = path.split('?').next().unwrap_or_default();
    path.split('/')
        .map(|segment| {
            if !segment.is_empty() && segment.chars().all(|c| c.is_ascii_digit()) {
                "{id}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[tokio::test]
    async fn an_id_with_a_path_in_it_is_never_sent() {
        // Nothing listens on port 9: a request that went out would be a transport error.
        let client = super::HubSpotClient::new("http://127.0.0.1:9", "token", 100);
        for id in [
            "1/../../../../crm/v3/owners?x=",
            "40000000005/../40000000001",
            "",
            "12 3",
        ] {
            assert!(
                matches!(
                    client.get_deal(id, &[]).await,
                    Err(super::HubSpotError::InvalidId(_))
                ),
                "{id}"
            );
            assert!(matches!(
                client.update_deal(id, &Default::default()).await,
                Err(super::HubSpotError::InvalidId(_))
            ));
            assert!(matches!(
                client.primary_company(id, &[]).await,
                Err(super::HubSpotError::InvalidId(_))
            ));
            assert!(matches!(
                client.company_deals(id).await,
                Err(super::HubSpotError::InvalidId(_))
            ));
        }
        assert!(matches!(
            client.get_deal("40000000001", &[]).await,
            Err(super::HubSpotError::Transport(_))
        ));
    }

    #[test]
    fn metric_labels_name_the_operation_not_the_object() {
        assert_eq!(
            super::path_template("/crm/v3/objects/deals/40000000001?properties=dealname"),
            "/crm/v3/objects/deals/{id}"
        );
        assert_eq!(
            super::path_template("/crm/v3/objects/deals/search"),
            "/crm/v3/objects/deals/search"
        );
        assert_eq!(
            super::path_template("/crm/v3/properties/deals/aws_sync_status"),
            "/crm/v3/properties/deals/aws_sync_status"
        );
    }

    use governor::RateLimiter;
    use governor::clock::FakeRelativeClock;

    use super::window_quota;

    /// Drives the limiter as fast as it allows for `total` time and returns when each
    /// request went out.
    fn sends(limit: u32, window: Duration, total: Duration) -> Vec<Duration> {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::direct_with_clock(window_quota(limit, window), clock.clone());
        let step = window / 1000;
        let mut now = Duration::ZERO;
        let mut sent = Vec::new();
        while now < total {
            while limiter.check().is_ok() {
                sent.push(now);
            }
            clock.advance(step);
            now += step;
        }
        sent
    }

    #[test]
    fn no_rolling_window_ever_holds_more_than_the_limit() {
        for limit in [2, 5, 100, 190, 250] {
            let window = Duration::from_secs(10);
            let sent = sends(limit, window, window * 3);
            for (i, start) in sent.iter().enumerate() {
                let inside = sent[i..]
                    .iter()
                    .take_while(|t| **t < *start + window)
                    .count();
                assert!(
                    inside <= limit as usize,
                    "{inside} requests within 10 s of {start:?} with a limit of {limit}"
                );
            }
            // …while still using most of the allowance over time.
            assert!(
                sent.len() as u32 >= limit * 5 / 2,
                "{} sent in 30 s with a limit of {limit}",
                sent.len()
            );
        }
    }
}
