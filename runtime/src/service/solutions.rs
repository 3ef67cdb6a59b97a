//! The Solutions API (feature 2): `GET /solutions`, `GET /solutions/search?q=`,
//! `GET /solutions/{id}`, for HubSpot workflows and browser apps choosing a solution.
//!
//! Partner Central's ListSolutions filters by status, id and category but has no
//! keyword search and no get-by-id, and its read quota (10/s per account) is shared
//! with the sync. So pcsync keeps a copy of the whole catalog (every page, every
//! status) in memory, reads it again every `solutions.refresh`, and answers all three
//! endpoints from that copy: no request reaches Partner Central. Search is token and
//! prefix matching on name and category, tolerant of small typos, scored 0–100 with
//! the weights of `solutions.search` in the config.
//!
//! The copy stays fresh without spending the read quota: an id not in it is looked
//! up in Partner Central before answering 404 (ListSolutions for that id: one read,
//! one lookup at a time, at most one per `solutions.unknown_id_lookup`, however
//! many unknown ids arrive), and added to the copy when found; a list or
//! search that finds it older than `solutions.revalidate_after` answers from it and
//! reads it again in the background, and `POST /admin/solutions/refresh` reads it
//! at once. Answers carry an `ETag` (a digest of the body; `If-None-Match` gets a
//! 304) and `Cache-Control`.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::config::{SearchWeights, SolutionsConfig};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pcsync_adapters::partner_central::PartnerCentralClient;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::service::metrics::Metrics;

/// Largest page of `GET /solutions` and `GET /solutions/search`.
const MAX_LIMIT: usize = 100;
/// Longest search query accepted.
const MAX_QUERY: usize = 200;

/// One solution of the catalog, with its words ready for search.
#[derive(Debug, Clone)]
struct Solution {
    id: String,
    arn: String,
    name: String,
    category: String,
    status: String,
    catalog: String,
    created: Option<String>,
    marketplace_arn: Option<String>,
    /// `name` lower-cased, for ordering.
    name_key: String,
    name_words: Vec<String>,
    /// `name_words` joined by single spaces, for phrase matches.
    name_phrase: String,
    category_words: Vec<String>,
}

impl Solution {
    fn from_summary(s: &Value) -> Option<Solution> {
        let text = |k: &str| s[k].as_str().map(str::to_string);
        let name = text("Name").unwrap_or_default();
        let category = text("Category").unwrap_or_default();
        let name_words = words(&name);
        Some(Solution {
            id: text("Id").filter(|id| !id.is_empty())?,
            arn: text("Arn").unwrap_or_default(),
            name_key: name.to_lowercase(),
            name_phrase: name_words.join(" "),
            name_words,
            category_words: words(&category),
            name,
            category,
            status: text("Status").unwrap_or_default(),
            catalog: text("Catalog").unwrap_or_default(),
            created: text("CreatedDate"),
            marketplace_arn: text("AwsMarketplaceSolutionArn"),
        })
    }

    fn summary(&self) -> Value {
        json!({ "id": self.id, "name": self.name, "category": self.category, "status": self.status })
    }

    fn detail(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "arn": self.arn,
            "name": self.name,
            "category": self.category,
            "status": self.status,
            // ListSolutions carries no description; kept so clients written to the
            // spec's shape read `null` rather than fail.
            "description": null,
            "createdDate": self.created,
            "catalog": self.catalog,
        });
        if let Some(arn) = &self.marketplace_arn {
            v["awsMarketplaceSolutionArn"] = json!(arn);
        }
        v
    }

    /// The keyset position of this solution in name order.
    fn position(&self) -> (&str, &str) {
        (&self.name_key, &self.id)
    }
}

/// Lower-case alphanumeric words.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// A loaded catalog, in name order.
struct Catalog {
    solutions: Vec<Solution>,
    loaded_at: jiff::Timestamp,
}

/// The cached catalog and how to refresh it.
pub struct Solutions {
    client: PartnerCentralClient,
    config: SolutionsConfig,
    metrics: Arc<Metrics>,
    current: RwLock<Option<Arc<Catalog>>>,
    last_error: RwLock<Option<String>>,
    /// One read of the catalog at a time.
    reading: tokio::sync::Mutex<()>,
    /// When the latest read began.
    last_read: std::sync::Mutex<Option<std::time::Instant>>,
    /// When the latest lookup of an unknown id began; one lookup at a time.
    last_lookup: tokio::sync::Mutex<Option<std::time::Instant>>,
    /// The time a catalog is loaded at, and aged by.
    clock: Arc<dyn crate::clock::Clock>,
}

impl Solutions {
    /// A catalog that loads on the first [`Solutions::refresh`].
    pub fn new(
        client: PartnerCentralClient,
        config: SolutionsConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        Solutions {
            client,
            config,
            metrics,
            current: RwLock::new(None),
            last_error: RwLock::new(None),
            reading: tokio::sync::Mutex::new(()),
            last_read: std::sync::Mutex::new(None),
            last_lookup: tokio::sync::Mutex::new(None),
            clock: Arc::new(crate::clock::SystemClock),
        }
    }

    /// The catalog, dated and aged by `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn crate::clock::Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Looks up a solution id the copy does not hold, unless a lookup happened less
    /// than `solutions.unknown_id_lookup` ago (then `None` at once); a solution found
    /// joins the copy.
    async fn look_up(&self, id: &str) -> Option<Solution> {
        let mut last = self.last_lookup.lock().await;
        // A lookup that finished while this one waited may have found it.
        if let Ok(c) = self.catalog()
            && let Some(s) = c.solutions.iter().find(|s| s.id.eq_ignore_ascii_case(id))
        {
            return Some(s.clone());
        }
        if last.is_some_and(|t| t.elapsed() < self.config.unknown_id_lookup.0) {
            return None;
        }
        *last = Some(std::time::Instant::now());
        let found = match self.client.solution(&id.to_ascii_uppercase()).await {
            Ok(found) => found.as_ref().and_then(Solution::from_summary)?,
            Err(e) => {
                tracing::warn!(error = %e, id, "cannot look up a solution");
                return None;
            }
        };
        let mut current = self.current.write().expect("catalog lock");
        if let Some(c) = current.as_ref() {
            let mut solutions = c.solutions.clone();
            let at = solutions.partition_point(|s| s.position() < found.position());
            solutions.insert(at, found.clone());
            *current = Some(Arc::new(Catalog {
                solutions,
                loaded_at: c.loaded_at,
            }));
        }
        Some(found)
    }

    fn last_read(&self) -> Option<std::time::Instant> {
        *self.last_read.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the catalog unless a read began since the caller asked or less than
    /// `gap` ago: concurrent callers share one read, and a flood of them makes at
    /// most one per `gap`. `None` when no read was made for this call.
    pub async fn refresh_shared(&self, gap: Duration) -> Option<Result<usize, String>> {
        let asked = std::time::Instant::now();
        let _turn = self.reading.lock().await;
        if self
            .last_read()
            .is_some_and(|began| began >= asked || began.elapsed() < gap)
        {
            return None;
        }
        Some(self.refresh().await)
    }

    /// Reads the whole catalog from Partner Central and swaps it in; on failure the
    /// previous copy keeps answering.
    pub async fn refresh(&self) -> Result<usize, String> {
        *self.last_read.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
        match self.client.list_solutions().await {
            Ok(summaries) => {
                let mut solutions: Vec<Solution> = summaries
                    .iter()
                    .filter_map(Solution::from_summary)
                    .collect();
                solutions.sort_by(|a, b| a.position().cmp(&b.position()));
                solutions.dedup_by(|a, b| a.id == b.id);
                let n = solutions.len();
                *self.current.write().expect("catalog lock") = Some(Arc::new(Catalog {
                    solutions,
                    loaded_at: self.clock.now(),
                }));
                *self.last_error.write().expect("catalog lock") = None;
                self.metrics.solution_refresh(Some(n));
                Ok(n)
            }
            Err(e) => {
                let message = e.to_string();
                *self.last_error.write().expect("catalog lock") = Some(message.clone());
                self.metrics.solution_refresh(None);
                Err(message)
            }
        }
    }

    /// Refreshes every `solutions.refresh`; after a failure, again sooner (5 s,
    /// doubling up to the interval) so a start during an outage recovers quickly.
    pub async fn run(self: Arc<Self>) {
        let every = self.config.refresh.0.max(Duration::from_secs(1));
        let mut backoff = Duration::from_secs(5).min(every);
        loop {
            let read = match self.refresh_shared(Duration::ZERO).await {
                Some(read) => read,
                // Another read just happened (a miss, a revalidation): it counts.
                None => Ok(self.catalog().map_or(0, |c| c.solutions.len())),
            };
            let wait = match read {
                Ok(n) => {
                    tracing::info!(solutions = n, "solution catalog read");
                    backoff = Duration::from_secs(5).min(every);
                    every
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "cannot read the solution catalog");
                    let wait = backoff;
                    backoff = (backoff * 2).min(every);
                    wait
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    fn catalog(&self) -> Result<Arc<Catalog>, ApiError> {
        if let Some(c) = self.current.read().expect("catalog lock").as_ref() {
            return Ok(Arc::clone(c));
        }
        let reason = self
            .last_error
            .read()
            .expect("catalog lock")
            .clone()
            .unwrap_or_else(|| "it is being read from Partner Central".into());
        Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            error: "catalog not loaded",
            message: format!("the solution catalog is not loaded yet: {reason}"),
        })
    }
}

/// The Solutions API routes, with CORS for the configured origins.
pub fn router(solutions: Arc<Solutions>) -> axum::Router {
    let cors = cors(&solutions.config.cors_allow_origins);
    let max_age = solutions.config.revalidate_after.0;
    let router = axum::Router::new()
        .route("/solutions", get(list))
        .route("/solutions/search", get(search))
        .route("/solutions/{id}", get(detail))
        .layer(axum::middleware::from_fn(move |request, next| {
            validators(request, next, max_age)
        }))
        .with_state(solutions);
    match cors {
        Some(layer) => router.layer(layer),
        None => router,
    }
}

/// CORS for `origins` (`*` for any); `None` when the list is empty.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET])
            .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
            .max_age(Duration::from_secs(600)),
    )
}

/// `ETag` (a digest of the body) and `Cache-Control` on every answer, and 304 Not
/// Modified when the client holds that body already (`If-None-Match`).
async fn validators(
    request: axum::extract::Request,
    next: axum::middleware::Next,
    max_age: Duration,
) -> Response {
    use sha2::Digest;
    let held = request.headers().get(header::IF_NONE_MATCH).cloned();
    let response = next.run(request).await;
    if response.status() != StatusCode::OK {
        let mut response = response;
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let digest = sha2::Sha256::digest(&bytes);
    let tag = format!(
        "\"{}\"",
        digest[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let tag = HeaderValue::from_str(&tag).expect("hex is a valid header value");
    parts.headers.insert(header::ETAG, tag.clone());
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={}", max_age.as_secs())) {
        parts.headers.insert(header::CACHE_CONTROL, v);
    }
    let matches = held.is_some_and(|h| {
        h.to_str().is_ok_and(|h| {
            h.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == "*" || t.as_bytes() == tag.as_bytes())
        })
    });
    if matches {
        parts.status = StatusCode::NOT_MODIFIED;
        parts.headers.remove(header::CONTENT_TYPE);
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, axum::body::Body::empty());
    }
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// Reads the catalog again in the background when it is older than
/// `solutions.revalidate_after`.
fn revalidate(solutions: &Arc<Solutions>, catalog: &Catalog) {
    let age = solutions.clock.now().duration_since(catalog.loaded_at);
    let after = solutions.config.revalidate_after.0;
    if age.unsigned_abs() < after {
        return;
    }
    let solutions = Arc::clone(solutions);
    tokio::spawn(async move {
        if let Some(Err(error)) = solutions.refresh_shared(after).await {
            tracing::warn!(%error, "cannot read the solution catalog again");
        }
    });
}

/// A refused request: its status and a JSON body saying why.
struct ApiError {
    status: StatusCode,
    error: &'static str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(json!({ "error": self.error, "message": self.message })),
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        error: "bad request",
        message: message.into(),
    }
}

/// Answers with the catalog's read time as `Last-Modified`.
fn answer(catalog: &Catalog, body: Value) -> Response {
    let mut response = Json(body).into_response();
    let when = catalog
        .loaded_at
        .strftime("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    if let Ok(v) = HeaderValue::from_str(&when) {
        response.headers_mut().insert(header::LAST_MODIFIED, v);
    }
    response
}

#[derive(Debug, Deserialize)]
struct ListParams {
    category: Option<String>,
    status: Option<String>,
    limit: Option<String>,
    #[serde(rename = "nextToken")]
    next_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SearchParams {
    q: Option<String>,
    category: Option<String>,
    status: Option<String>,
    limit: Option<String>,
}

/// `limit`: 1–100, `default` when absent.
fn limit(raw: Option<&str>, default: usize) -> Result<usize, ApiError> {
    match raw.map(str::trim) {
        None | Some("") => Ok(default),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(bad_request(format!(
                "limit must be a whole number from 1 to {MAX_LIMIT}, not `{text}`"
            ))),
        },
    }
}

/// The filters `category` and `status` (comma-separated, case-insensitive; status
/// `Active` unless given, `all` for every status).
struct Filter {
    categories: Option<Vec<String>>,
    statuses: Option<Vec<String>>,
}

impl Filter {
    fn new(category: Option<&str>, status: Option<&str>) -> Filter {
        let list = |text: &str| -> Vec<String> {
            text.split(',')
                .map(|s| s.trim().to_lowercase())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let categories = category.map(list).filter(|c| !c.is_empty());
        let statuses = match status.map(list) {
            None => Some(vec!["active".to_string()]),
            Some(s) if s.is_empty() || s.iter().any(|s| s == "all") => None,
            Some(s) => Some(s),
        };
        Filter {
            categories,
            statuses,
        }
    }

    fn admits(&self, s: &Solution) -> bool {
        let within = |wanted: &Option<Vec<String>>, value: &str| {
            wanted
                .as_ref()
                .is_none_or(|w| w.iter().any(|w| w.eq_ignore_ascii_case(value)))
        };
        within(&self.categories, &s.category) && within(&self.statuses, &s.status)
    }
}

/// `nextToken`: the name-order position after which the next page starts.
fn encode_token(s: &Solution) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}\u{0}{}", s.name_key, s.id))
}

fn decode_token(token: &str) -> Option<(String, String)> {
    let bytes = URL_SAFE_NO_PAD.decode(token.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (name, id) = text.split_once('\u{0}')?;
    Some((name.to_string(), id.to_string()))
}

/// `GET /solutions`: the catalog in name order, filtered, a page at a time.
async fn list(
    State(solutions): State<Arc<Solutions>>,
    Query(p): Query<ListParams>,
) -> Result<Response, ApiError> {
    let catalog = solutions.catalog()?;
    revalidate(&solutions, &catalog);
    let limit = limit(p.limit.as_deref(), MAX_LIMIT)?;
    let after = match p.next_token.as_deref().filter(|t| !t.trim().is_empty()) {
        None => None,
        Some(t) => Some(
            decode_token(t)
                .ok_or_else(|| bad_request("nextToken is not one this service issued"))?,
        ),
    };
    let filter = Filter::new(p.category.as_deref(), p.status.as_deref());
    let mut page: Vec<&Solution> = catalog
        .solutions
        .iter()
        .filter(|s| {
            after
                .as_ref()
                .is_none_or(|(name, id)| s.position() > (name.as_str(), id.as_str()))
        })
        .filter(|s| filter.admits(s))
        .take(limit + 1)
        .collect();
    let more = page.len() > limit;
    page.truncate(limit);
    let mut body = json!({
        "solutions": page.iter().map(|s| s.summary()).collect::<Vec<_>>(),
        "count": page.len(),
    });
    if more && let Some(last) = page.last() {
        body["nextToken"] = json!(encode_token(last));
    }
    Ok(answer(&catalog, body))
}

/// `GET /solutions/search?q=`: matching solutions, best first, each with its
/// `relevanceScore` (0–100).
async fn search(
    State(solutions): State<Arc<Solutions>>,
    Query(p): Query<SearchParams>,
) -> Result<Response, ApiError> {
    let query = p.q.as_deref().map(str::trim).unwrap_or_default();
    if query.is_empty() {
        return Err(bad_request(
            "q is required: the words to search solution names and categories for",
        ));
    }
    if query.chars().count() > MAX_QUERY {
        return Err(bad_request(format!(
            "q is longer than {MAX_QUERY} characters"
        )));
    }
    let catalog = solutions.catalog()?;
    revalidate(&solutions, &catalog);
    let limit = limit(p.limit.as_deref(), 50)?;
    let filter = Filter::new(p.category.as_deref(), p.status.as_deref());
    let scorer = Scorer::new(query, &solutions.config.search);
    let mut hits: Vec<(u8, &Solution)> = catalog
        .solutions
        .iter()
        .filter(|s| filter.admits(s))
        .filter_map(|s| scorer.score(s).map(|score| (score, s)))
        .collect();
    // Best first; ties in name order (the catalog's order, kept by a stable sort).
    hits.sort_by_key(|hit| std::cmp::Reverse(hit.0));
    hits.truncate(limit);
    let results: Vec<Value> = hits
        .iter()
        .map(|(score, s)| {
            let mut v = s.summary();
            v["relevanceScore"] = json!(score);
            v
        })
        .collect();
    Ok(answer(
        &catalog,
        json!({ "solutions": results, "count": hits.len(), "query": query }),
    ))
}

/// `GET /solutions/{id}`.
async fn detail(
    State(solutions): State<Arc<Solutions>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let find = |catalog: &Catalog| {
        catalog
            .solutions
            .iter()
            .find(|s| s.id.eq_ignore_ascii_case(id.trim()))
            .map(|s| s.detail())
    };
    let mut catalog = solutions.catalog()?;
    let mut found = find(&catalog);
    // Published since the last read? Look it up (at most once per
    // `unknown_id_lookup`) before saying no. Ids that cannot be solutions' are not.
    if found.is_none() && is_solution_id(id.trim()) && solutions.look_up(id.trim()).await.is_some()
    {
        catalog = solutions.catalog()?;
        found = find(&catalog);
    }
    match found {
        Some(detail) => Ok(answer(&catalog, detail)),
        None => Err(ApiError {
            status: StatusCode::NOT_FOUND,
            error: "not found",
            message: format!("no solution `{id}` in the catalog (ids look like S-0000001)"),
        }),
    }
}

/// Whether `id` has the shape of a solution id (`S-` and 1 to 19 digits, the
/// service model's pattern).
fn is_solution_id(id: &str) -> bool {
    match (id.get(..2), id.get(2..)) {
        (Some(prefix), Some(digits)) => {
            prefix.eq_ignore_ascii_case("S-")
                && (1..=19).contains(&digits.len())
                && digits.bytes().all(|b| b.is_ascii_digit())
        }
        _ => false,
    }
}

/// Scores solutions against one query.
struct Scorer<'a> {
    raw: String,
    phrase: String,
    words: Vec<String>,
    weights: &'a SearchWeights,
    best_possible: f64,
}

impl<'a> Scorer<'a> {
    fn new(query: &str, weights: &'a SearchWeights) -> Scorer<'a> {
        let words = words(query);
        let best_possible = weights.name.max(weights.category)
            * weights.exact.max(weights.prefix).max(weights.fuzzy);
        Scorer {
            raw: query.trim().to_string(),
            phrase: words.join(" "),
            words,
            weights,
            best_possible,
        }
    }

    /// The score (0–100), or `None` below `min_score` or with no match at all.
    fn score(&self, s: &Solution) -> Option<u8> {
        if s.id.eq_ignore_ascii_case(&self.raw) {
            return Some(100);
        }
        if self.words.is_empty() || self.best_possible <= 0.0 {
            return None;
        }
        let w = self.weights;
        let total: f64 = self
            .words
            .iter()
            .map(|q| {
                let in_name = s
                    .name_words
                    .iter()
                    .map(|n| self.matched(q, n))
                    .fold(0.0, f64::max);
                let in_category = s
                    .category_words
                    .iter()
                    .map(|c| self.matched(q, c))
                    .fold(0.0, f64::max);
                (in_name * w.name).max(in_category * w.category)
            })
            .sum();
        if total <= 0.0 {
            return None;
        }
        let mut score = 100.0 * total / (self.words.len() as f64 * self.best_possible);
        if s.name_phrase.contains(&self.phrase) {
            score += w.phrase_bonus;
        }
        let score = score.clamp(0.0, 100.0);
        (score >= w.min_score).then_some(score.round() as u8)
    }

    /// How well query word `q` matches the word `word`: the weight of the best kind.
    fn matched(&self, q: &str, word: &str) -> f64 {
        let w = self.weights;
        if q == word {
            w.exact
        } else if q.chars().count() >= 2 && word.starts_with(q) {
            w.prefix
        } else if close(q, word) {
            w.fuzzy
        } else {
            0.0
        }
    }
}

/// Within a typo: one edit for words of 4–7 letters, two from 8 (transpositions
/// count as one). Also a typo in a prefix (`databse` → `databases`).
fn close(q: &str, word: &str) -> bool {
    let len = q.chars().count();
    let allowed = match len {
        0..=3 => return false,
        4..=7 => 1,
        _ => 2,
    };
    if strsim::damerau_levenshtein(q, word) <= allowed {
        return true;
    }
    // Compare with the word's start of the same length, for queries typed halfway.
    let start: String = word.chars().take(len).collect();
    start.chars().count() == len && strsim::damerau_levenshtein(q, &start) <= allowed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solution(id: &str, name: &str, category: &str, status: &str) -> Solution {
        Solution::from_summary(&json!({
            "Id": id, "Name": name, "Category": category, "Status": status,
            "Arn": format!("arn:aws:partnercentral:us-east-1:123456789012:catalog/Sandbox/solution/{id}"),
            "Catalog": "Sandbox", "CreatedDate": "2024-01-01T00:00:00Z",
        }))
        .expect("a solution")
    }

    fn scores(query: &str, weights: &SearchWeights, catalog: &[Solution]) -> Vec<(String, u8)> {
        let scorer = Scorer::new(query, weights);
        let mut hits: Vec<(String, u8)> = catalog
            .iter()
            .filter_map(|s| scorer.score(s).map(|n| (s.name.clone(), n)))
            .collect();
        hits.sort_by_key(|hit| std::cmp::Reverse(hit.1));
        hits
    }

    fn catalog() -> Vec<Solution> {
        vec![
            solution(
                "S-0000001",
                "AWS Database Migration Service",
                "Database",
                "Active",
            ),
            solution("S-0000002", "Data Lake Accelerator", "Analytics", "Active"),
            solution(
                "S-0000003",
                "Serverless Web Platform",
                "Software Product",
                "Active",
            ),
            solution(
                "S-0000004",
                "Managed Databases for SaaS",
                "Consulting Service",
                "Active",
            ),
        ]
    }

    #[test]
    fn exact_words_outrank_prefixes_and_typos_still_find_the_solution() {
        let w = SearchWeights::default();
        let hits = scores("database", &w, &catalog());
        assert_eq!(hits[0], ("AWS Database Migration Service".into(), 100));
        // `database` starts `Databases`: found, ranked below the exact word.
        let managed = hits
            .iter()
            .find(|h| h.0 == "Managed Databases for SaaS")
            .unwrap();
        assert!(managed.1 < 100 && managed.1 >= 80, "{hits:?}");
        assert!(
            !hits.iter().any(|h| h.0 == "Serverless Web Platform"),
            "{hits:?}"
        );

        let typo = scores("databse migraton", &w, &catalog());
        assert_eq!(typo[0].0, "AWS Database Migration Service", "{typo:?}");
        assert!(typo[0].1 >= 50 && typo[0].1 < 100, "{typo:?}");
    }

    #[test]
    fn every_query_word_counts_and_a_category_match_weighs_less_than_a_name_match() {
        let w = SearchWeights::default();
        let hits = scores("analytics", &w, &catalog());
        assert_eq!(hits, vec![("Data Lake Accelerator".into(), 60)]);
        let half = scores("serverless oracle", &w, &catalog());
        assert_eq!(half, vec![("Serverless Web Platform".into(), 50)]);
        assert!(scores("zzz", &w, &catalog()).is_empty());
        // A lone letter is no prefix of everything.
        assert!(scores("d", &w, &catalog()).is_empty());
    }

    #[test]
    fn weights_come_from_config() {
        let w = SearchWeights {
            category: 1.0,
            ..SearchWeights::default()
        };
        assert_eq!(
            scores("analytics", &w, &catalog()),
            vec![("Data Lake Accelerator".into(), 100)]
        );
        let strict = SearchWeights {
            fuzzy: 0.0,
            ..SearchWeights::default()
        };
        assert!(scores("databse", &strict, &catalog()).is_empty());
        let picky = SearchWeights {
            min_score: 96.0,
            ..SearchWeights::default()
        };
        assert_eq!(scores("database", &picky, &catalog()).len(), 1);
    }

    #[test]
    fn an_id_is_found_by_search_too() {
        let w = SearchWeights::default();
        assert_eq!(
            scores("s-0000003", &w, &catalog()),
            vec![("Serverless Web Platform".into(), 100)]
        );
    }

    #[test]
    fn only_ids_shaped_like_solutions_ones_read_the_catalog_again() {
        for id in ["S-0000042", "s-1", "S-1234567890123456789"] {
            assert!(is_solution_id(id), "{id}");
        }
        for id in [
            "S-",
            "S-12345678901234567890",
            "S-12a",
            "X-123",
            "aé1",
            "é",
            "",
        ] {
            assert!(!is_solution_id(id), "{id}");
        }
    }

    #[test]
    fn page_tokens_round_trip_and_foreign_tokens_are_refused() {
        let s = solution("S-0000002", "Data Lake Accelerator", "Analytics", "Active");
        assert_eq!(
            decode_token(&encode_token(&s)),
            Some(("data lake accelerator".into(), "S-0000002".into()))
        );
        assert_eq!(decode_token("not a token!"), None);
        assert_eq!(decode_token(&URL_SAFE_NO_PAD.encode("no separator")), None);
    }

    #[test]
    fn filters_default_to_active_and_ignore_case() {
        let inactive = solution("S-9", "Old Tool", "Database", "Inactive");
        let active = solution("S-8", "New Tool", "Database", "Active");
        let default = Filter::new(None, None);
        assert!(default.admits(&active) && !default.admits(&inactive));
        let all = Filter::new(Some("database"), Some("all"));
        assert!(all.admits(&active) && all.admits(&inactive));
        let other = Filter::new(Some("Analytics, Software Product"), Some("inactive"));
        assert!(!other.admits(&inactive));
        assert!(Filter::new(None, Some("INACTIVE")).admits(&inactive));
    }
}
