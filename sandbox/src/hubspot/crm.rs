//! CRM v3 handlers (reference §3). Bodies are parsed by hand so that malformed JSON
//! gets HubSpot's error shape rather than the framework's.

// Helpers return `Err(Response)` to answer early with HubSpot's error body; boxing
// every early answer would buy nothing on this path.
#![allow(clippy::result_large_err)]

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::store::{
    COMPANY_PROPERTIES, DEFAULT_STAGES, NOTE_PROPERTIES, NOTE_TO_DEAL, Object, TASK_PROPERTIES,
    TASK_TO_DEAL, iso, property,
};
use super::{HubSpot, error};

type Hs = State<Arc<HubSpot>>;

/// The CRM routes.
pub fn routes() -> Router<Arc<HubSpot>> {
    Router::new()
        .route(
            "/crm/v3/objects/deals",
            post(create_deal).get(super::companies::list_deals),
        )
        .route("/crm/v3/objects/deals/search", post(search))
        .route("/crm/v3/objects/deals/batch/read", post(batch_read))
        .route(
            "/crm/v3/objects/deals/{id}",
            get(get_deal).patch(patch_deal),
        )
        .route("/crm/v3/objects/notes", post(create_note))
        .route("/crm/v3/objects/tasks", post(create_task))
        .route(
            "/crm/v3/objects/notes/batch/create",
            post(batch_create_notes),
        )
        .route(
            "/crm/v3/objects/tasks/batch/create",
            post(batch_create_tasks),
        )
        .route("/crm/v3/objects/{kind}/{id}", get(get_activity))
        .route(
            "/crm/v3/properties/deals",
            get(list_properties).post(create_property),
        )
        .route("/crm/v3/properties/deals/{name}", get(get_property))
        .route("/crm/v3/owners", get(list_owners))
        // HubSpot's owners guide, and so its own clients, ask for the list with a
        // trailing slash (`GET /crm/v3/owners/`), which HubSpot answers.
        .route("/crm/v3/owners/", get(list_owners))
        .route("/crm/v3/owners/{id}", get(get_owner))
        .route("/crm/v3/pipelines/deals", get(pipelines))
        .route("/crm/v3/pipelines/deals/{id}/stages", get(stages))
}

pub(super) fn bad_request(message: &str, errors: Value) -> Response {
    error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message, errors)
}

pub(super) fn not_found(message: &str, id: &str) -> Response {
    let mut r = error(
        StatusCode::NOT_FOUND,
        "OBJECT_NOT_FOUND",
        message,
        Value::Null,
    );
    let _ = id;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    r
}

pub(super) fn parse(body: &Bytes) -> Result<Value, Response> {
    serde_json::from_slice(body).map_err(|e| {
        bad_request(
            &format!(
                "Invalid input JSON on line {}, column {}: {e}",
                e.line(),
                e.column()
            ),
            Value::Null,
        )
    })
}

/// Query parameters, with repeated keys and comma lists both supported
/// (`properties=a&properties=b` and `properties=a,b`; reference §3.2).
pub(super) fn query_list(query: &Option<String>, key: &str) -> Vec<String> {
    let Some(q) = query else { return Vec::new() };
    form_urlencoded::parse(q.as_bytes())
        .filter(|(k, _)| k == key)
        .flat_map(|(_, v)| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Checks property writes: unknown names, read-only ones and bad values, all
/// reported together as HubSpot does (reference §4.3).
pub(super) fn check_properties(
    hs: &HubSpot,
    kind: &str,
    props: &serde_json::Map<String, Value>,
) -> Result<BTreeMap<String, String>, Response> {
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    let store = hs.store.lock().expect("store lock");
    for (name, value) in props {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        let known = match kind {
            "deals" => store.deal_properties.get(name).map(|p| {
                (
                    p.read_only,
                    p.definition["type"]
                        .as_str()
                        .unwrap_or("string")
                        .to_string(),
                )
            }),
            "notes" => NOTE_PROPERTIES
                .contains(&name.as_str())
                .then(|| (false, "string".to_string())),
            "companies" => COMPANY_PROPERTIES
                .contains(&name.as_str())
                .then(|| (false, "string".to_string())),
            _ => TASK_PROPERTIES
                .contains(&name.as_str())
                .then(|| (false, "string".to_string())),
        };
        let problem = match known {
            None => Some((
                "PROPERTY_DOESNT_EXIST",
                format!("Property \"{name}\" does not exist"),
            )),
            Some((true, _)) => Some((
                "READ_ONLY_VALUE",
                format!("Property \"{name}\" is read-only"),
            )),
            Some((false, kind_name)) if !text.is_empty() => match kind_name.as_str() {
                "number" if text.parse::<f64>().is_err() => {
                    Some(("INVALID_DECIMAL", format!("{text} was not a valid number")))
                }
                "datetime" | "date" if !is_time(&text) => {
                    Some(("INVALID_DATE", format!("{text} was not a valid date")))
                }
                _ if name == "dealstage"
                    && !DEFAULT_STAGES.iter().any(|(id, _, _)| *id == text) =>
                {
                    Some((
                        "INVALID_OPTION",
                        format!("{text} was not one of the allowed options"),
                    ))
                }
                _ if name == "deal_currency_code"
                    && !["USD", "EUR", "GBP", "CAD", "AUD"].contains(&text.as_str()) =>
                {
                    Some((
                        "INVALID_OPTION",
                        format!(
                            "\"{text}\" is not a part of the current effective currency codes for portal"
                        ),
                    ))
                }
                _ if name == "hs_task_priority"
                    && !["LOW", "MEDIUM", "HIGH"].contains(&text.as_str()) =>
                {
                    Some((
                        "INVALID_OPTION",
                        format!("{text} was not one of the allowed options"),
                    ))
                }
                _ => None,
            },
            Some(_) => None,
        };
        match problem {
            Some((code, message)) => errors.push(
                json!({ "message": message, "code": code, "context": { "propertyName": [name] } }),
            ),
            None => {
                out.insert(name.clone(), text);
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        let detail: Vec<String> = errors
            .iter()
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .collect();
        Err(bad_request(
            &format!("Property values were not valid: {}", detail.join("; ")),
            Value::Array(errors),
        ))
    }
}

fn is_time(text: &str) -> bool {
    text.chars().all(|c| c.is_ascii_digit())
        || text.parse::<jiff::Timestamp>().is_ok()
        || text.parse::<jiff::civil::Date>().is_ok()
}

/// Epoch milliseconds of a HubSpot date value (ISO or epoch ms).
fn millis(text: &str) -> Option<i64> {
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
        return text.parse().ok();
    }
    text.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
        .or_else(|| {
            text.parse::<jiff::civil::Date>()
                .ok()
                .and_then(|d| d.to_zoned_datetime(jiff::tz::TimeZone::UTC).ok())
                .map(|z| z.timestamp().as_millisecond())
        })
}

pub(super) fn object_properties(body: &Value) -> Result<&serde_json::Map<String, Value>, Response> {
    body.get("properties")
        .and_then(Value::as_object)
        .ok_or_else(|| bad_request("Invalid input: `properties` is required", Value::Null))
}

async fn create_deal(State(hs): Hs, body: Bytes) -> Response {
    let body = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let props = match object_properties(&body).and_then(|p| check_properties(&hs, "deals", p)) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let object = hs.with_store(|s| {
        let mut props = props;
        props
            .entry("pipeline".into())
            .or_insert_with(|| "default".into());
        s.insert("deals", props)
    });
    hs.index.written(hs.clock.now(), None, &object);
    hs.webhooks.deal_created(&object.id, &hs.api_source());
    (
        StatusCode::CREATED,
        axum::Json(object.to_json(&[], "deals")),
    )
        .into_response()
}

async fn get_deal(State(hs): Hs, Path(id): Path<String>, RawQuery(q): RawQuery) -> Response {
    let requested = query_list(&q, "properties");
    let associations = query_list(&q, "associations");
    let Some(deal) = hs.with_store(|s| s.deals.get(&id).cloned()) else {
        return not_found("Object not found.  objectId are usually numeric.", &id);
    };
    let mut out = deal.to_json(&requested, "deals");
    if !associations.is_empty() {
        let mut assoc = serde_json::Map::new();
        for kind in associations {
            let singular = kind.trim_end_matches('s');
            if let Some(ids) = deal.associations.get(&kind).filter(|ids| !ids.is_empty()) {
                let results: Vec<Value> = ids
                    .iter()
                    .map(|i| json!({ "id": i, "type": format!("deal_to_{singular}") }))
                    .collect();
                assoc.insert(kind.clone(), json!({ "results": results }));
            }
        }
        out["associations"] = Value::Object(assoc);
    }
    axum::Json(out).into_response()
}

async fn patch_deal(State(hs): Hs, Path(id): Path<String>, body: Bytes) -> Response {
    let body = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if !hs.with_store(|s| s.deals.contains_key(&id)) {
        return not_found("Object not found.  objectId are usually numeric.", &id);
    }
    let props = match object_properties(&body).and_then(|p| check_properties(&hs, "deals", p)) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let names: Vec<String> = props.keys().cloned().collect();
    let Some(before) = hs.with_store(|s| s.deals.get(&id).cloned()) else {
        return not_found("Object not found.  objectId are usually numeric.", &id);
    };
    let changes: Vec<(String, String)> = props
        .iter()
        .filter(|(k, v)| before.properties.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let updated = hs.with_store(|s| {
        let deal = s.deals.get_mut(&id).expect("checked above");
        for (k, v) in props {
            deal.properties.insert(k, v);
        }
        deal.updated_at = jiff::Timestamp::now().max(deal.updated_at);
        deal.clone()
    });
    hs.index.written(hs.clock.now(), Some(before), &updated);
    hs.webhooks.deal_changed(&id, &changes, &hs.api_source());
    axum::Json(updated.to_json(&names, "deals")).into_response()
}

async fn batch_read(State(hs): Hs, body: Bytes) -> Response {
    let body = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let inputs = body["inputs"].as_array().cloned().unwrap_or_default();
    if inputs.len() > 100 {
        return bad_request(
            "Batch input is limited to 100 inputs per request",
            Value::Null,
        );
    }
    let requested = requested_properties(&body);
    let started = iso(jiff::Timestamp::now());
    let (found, missing): (Vec<Value>, Vec<String>) = hs.with_store(|s| {
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for input in &inputs {
            let id = match &input["id"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            match s.deals.get(&id) {
                Some(d) => found.push(d.to_json(&requested, "deals")),
                None => missing.push(id),
            }
        }
        (found, missing)
    });
    let mut out = json!({ "status": "COMPLETE", "results": found, "requestedAt": started, "startedAt": started, "completedAt": iso(jiff::Timestamp::now()), "links": {} });
    if missing.is_empty() {
        return axum::Json(out).into_response();
    }
    out["numErrors"] = json!(1);
    out["errors"] = json!([{ "status": "error", "category": "OBJECT_NOT_FOUND",
        "message": "Could not get some DEAL objects, they may be deleted or not exist. Check that ids are valid.",
        "context": { "ids": missing } }]);
    (StatusCode::MULTI_STATUS, axum::Json(out)).into_response()
}

/// Creates a note or task with its associations (reference §3.6, §3.7): `hs_timestamp`
/// is required and each association's type id must be the one for its target.
fn create_activity(hs: &HubSpot, kind: &str, input: &Value) -> Result<Object, Response> {
    let props = check_properties(hs, kind, object_properties(input)?)?;
    if props.get("hs_timestamp").is_none_or(|t| t.is_empty()) {
        return Err(bad_request(
            "Property values were not valid: hs_timestamp is required",
            json!([{ "message": "hs_timestamp is required", "code": "REQUIRED_PROPERTY", "context": { "propertyName": ["hs_timestamp"] } }]),
        ));
    }
    if !props.get("hs_timestamp").is_some_and(|t| is_time(t)) {
        return Err(bad_request(
            "Property values were not valid: hs_timestamp is not a valid date",
            Value::Null,
        ));
    }
    let expected_type = if kind == "notes" {
        NOTE_TO_DEAL
    } else {
        TASK_TO_DEAL
    };
    let mut deals = Vec::new();
    for assoc in input["associations"].as_array().into_iter().flatten() {
        let to = match &assoc["to"]["id"] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => {
                return Err(bad_request(
                    "Invalid association: `to.id` is required",
                    Value::Null,
                ));
            }
        };
        for t in assoc["types"].as_array().into_iter().flatten() {
            let category = t["associationCategory"].as_str().unwrap_or_default();
            let id = t["associationTypeId"].as_i64().unwrap_or_default();
            if category != "HUBSPOT_DEFINED" || id != expected_type {
                return Err(bad_request(
                    &format!(
                        "{category} {id} is not a valid association type from {kind} to deals (use HUBSPOT_DEFINED {expected_type})"
                    ),
                    Value::Null,
                ));
            }
        }
        if !hs.with_store(|s| s.deals.contains_key(&to)) {
            return Err(bad_request(
                &format!("No deal with id {to} exists to associate with"),
                Value::Null,
            ));
        }
        deals.push(to);
    }
    Ok(hs.with_store(|s| {
        let mut object = s.insert(kind, props);
        for deal in &deals {
            s.deals
                .get_mut(deal)
                .expect("checked above")
                .associations
                .entry(kind.to_string())
                .or_default()
                .push(object.id.clone());
        }
        object.associations.insert("deals".into(), deals);
        s.table(kind).insert(object.id.clone(), object.clone());
        object
    }))
}

async fn create_one(hs: Arc<HubSpot>, kind: &str, body: Bytes) -> Response {
    let body = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match create_activity(&hs, kind, &body) {
        Ok(o) => (StatusCode::CREATED, axum::Json(o.to_json(&[], kind))).into_response(),
        Err(r) => r,
    }
}

async fn create_note(State(hs): Hs, body: Bytes) -> Response {
    create_one(hs, "notes", body).await
}

async fn create_task(State(hs): Hs, body: Bytes) -> Response {
    create_one(hs, "tasks", body).await
}

async fn batch_create(hs: Arc<HubSpot>, kind: &str, body: Bytes) -> Response {
    let body = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let inputs = body["inputs"].as_array().cloned().unwrap_or_default();
    if inputs.len() > 100 {
        return bad_request(
            "Batch input is limited to 100 inputs per request",
            Value::Null,
        );
    }
    // Multi-status needs a unique objectWriteTraceId per input (reference §3.9);
    // without them, one bad input fails the batch.
    let traced = inputs.iter().all(|i| {
        i.get("objectWriteTraceId")
            .and_then(Value::as_str)
            .is_some()
    });
    let started = iso(jiff::Timestamp::now());
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for input in &inputs {
        match create_activity(&hs, kind, input) {
            Ok(o) => results.push(o.to_json(&[], kind)),
            Err(response) if traced => {
                let trace = input["objectWriteTraceId"].clone();
                errors.push(json!({ "status": "error", "category": "VALIDATION_ERROR",
                    "message": format!("input was not valid (HTTP {})", response.status().as_u16()),
                    "context": { "objectWriteTraceId": [trace] } }));
            }
            Err(response) => return response,
        }
    }
    let mut out = json!({ "status": "COMPLETE", "results": results, "startedAt": started, "completedAt": iso(jiff::Timestamp::now()) });
    if errors.is_empty() {
        return (StatusCode::CREATED, axum::Json(out)).into_response();
    }
    out["numErrors"] = json!(errors.len());
    out["errors"] = Value::Array(errors);
    (StatusCode::MULTI_STATUS, axum::Json(out)).into_response()
}

async fn batch_create_notes(State(hs): Hs, body: Bytes) -> Response {
    batch_create(hs, "notes", body).await
}

async fn batch_create_tasks(State(hs): Hs, body: Bytes) -> Response {
    batch_create(hs, "tasks", body).await
}

async fn get_activity(
    State(hs): Hs,
    Path((kind, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    if !matches!(kind.as_str(), "notes" | "tasks") {
        return not_found("Unknown object type", &kind);
    }
    let requested = query_list(&q, "properties");
    match hs.with_store(|s| s.table(&kind).get(&id).cloned()) {
        Some(o) => axum::Json(o.to_json(&requested, &kind)).into_response(),
        None => not_found("Object not found.  objectId are usually numeric.", &id),
    }
}

/// Deal search (reference §3.4): AND within a filter group, OR across groups, one
/// sort, `limit` ≤ 200 (default 10), numeric `after`, and HubSpot's size limits.
async fn search(State(hs): Hs, body: Bytes) -> Response {
    if body.len() > 3000 {
        return bad_request("The request body is over 3,000 characters", Value::Null);
    }
    let body = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let groups = body["filterGroups"].as_array().cloned().unwrap_or_default();
    let total_filters: usize = groups
        .iter()
        .map(|g| g["filters"].as_array().map_or(0, Vec::len))
        .sum();
    if groups.len() > 5
        || groups
            .iter()
            .any(|g| g["filters"].as_array().is_some_and(|f| f.len() > 6))
        || total_filters > 18
    {
        return bad_request(
            "Too many filters: at most 5 filterGroups of up to 6 filters, 18 filters in total",
            Value::Null,
        );
    }
    let limit = body["limit"].as_u64().unwrap_or(10);
    if limit > 200 {
        return bad_request("limit must be at most 200", Value::Null);
    }
    let after: u64 = match &body["after"] {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    };
    if after + limit > 10_000 {
        return bad_request(
            "Search results are limited to 10,000 total results",
            Value::Null,
        );
    }
    let requested = requested_properties(&body);
    let groups: Vec<Vec<Filter>> = groups
        .iter()
        .map(|g| {
            g["filters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(Filter::new)
                .collect()
        })
        .collect();
    let (sort_by, descending) = match body["sorts"].as_array().and_then(|s| s.first()) {
        Some(Value::String(s)) => match s.strip_prefix('-') {
            Some(name) => (name.to_string(), true),
            None => (s.clone(), false),
        },
        Some(o) => (
            o["propertyName"]
                .as_str()
                .unwrap_or("createdate")
                .to_string(),
            o["direction"] == "DESCENDING",
        ),
        None => ("createdate".to_string(), false),
    };
    // Filtered and sorted in place; only the page is copied out. Search sees the
    // deals as its index holds them, which lags writes (reference §3.4).
    let now = hs.clock.now();
    let (total, page) = hs.with_store(|s| {
        let index = hs.index.view(now);
        let mut deals: Vec<(Sortable<'_>, &Object)> = s
            .deals
            .values()
            .filter_map(|d| index.seen(d))
            .filter(|d| groups.is_empty() || groups.iter().any(|g| g.iter().all(|f| f.matches(d))))
            .map(|d| (Sortable::new(d.value_ref(&sort_by)), d))
            .collect();
        deals.sort_by(|(a, x), (b, y)| a.cmp(b).then_with(|| x.id.cmp(&y.id)));
        if descending {
            deals.reverse();
        }
        let page: Vec<Value> = deals
            .iter()
            .skip(after as usize)
            .take(limit as usize)
            .map(|(_, d)| d.to_json(&requested, "deals"))
            .collect();
        (deals.len() as u64, page)
    });
    let mut out = json!({ "total": total, "results": page });
    if after + limit < total {
        out["paging"] = json!({ "next": { "after": (after + limit).to_string() } });
    }
    axum::Json(out).into_response()
}

/// A value as searches order it, read once: two numbers compare as numbers, two
/// times (or dates) as times, anything else as text.
struct Sortable<'a> {
    text: Option<Cow<'a, str>>,
    number: Option<f64>,
    millis: Option<i64>,
}

impl<'a> Sortable<'a> {
    fn new(text: Option<Cow<'a, str>>) -> Self {
        Sortable {
            number: text.as_deref().and_then(|x| x.parse::<f64>().ok()),
            millis: text.as_deref().and_then(millis),
            text,
        }
    }

    fn cmp(&self, other: &Sortable<'_>) -> std::cmp::Ordering {
        match (self.number, other.number) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            _ => match (self.millis, other.millis) {
                (Some(x), Some(y)) => x.cmp(&y),
                _ => self.text.as_deref().cmp(&other.text.as_deref()),
            },
        }
    }
}

/// One search filter (reference §3.4), read from the request once and then tried
/// against each deal. String comparisons ignore case, except for enumerations
/// such as `dealstage`.
struct Filter {
    name: String,
    operator: String,
    /// `value` (its text is what EQ and the token operators compare with), and
    /// `highValue`, as orderings read them.
    low: Sortable<'static>,
    high: Sortable<'static>,
    values: Vec<String>,
    enumeration: bool,
}

impl Filter {
    fn new(f: &Value) -> Filter {
        let name = f["propertyName"].as_str().unwrap_or_default().to_string();
        let enumeration = matches!(
            name.as_str(),
            "dealstage" | "pipeline" | "deal_currency_code" | "dealtype" | "hubspot_owner_id"
        );
        let value = f["value"]
            .as_str()
            .map(str::to_string)
            .or_else(|| f["value"].as_number().map(|n| n.to_string()));
        Filter {
            low: Sortable::new(value.map(Cow::Owned)),
            high: Sortable::new(f["highValue"].as_str().map(|h| Cow::Owned(h.to_string()))),
            values: f["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            operator: f["operator"].as_str().unwrap_or("EQ").to_string(),
            enumeration,
            name,
        }
    }

    fn eq(&self, a: &str, b: &str) -> bool {
        if self.enumeration {
            a == b
        } else if let (Ok(x), Ok(y)) = (a.parse::<f64>(), b.parse::<f64>()) {
            x == y
        } else {
            a.eq_ignore_ascii_case(b)
        }
    }

    fn matches(&self, deal: &Object) -> bool {
        let value = deal.value_ref(&self.name);
        let value = value.as_deref();
        let ord = |w: &Sortable<'_>| {
            value
                .filter(|_| w.text.is_some())
                .map(|v| Sortable::new(Some(Cow::Borrowed(v))).cmp(w))
        };
        match self.operator.as_str() {
            "EQ" => value
                .zip(self.low.text.as_deref())
                .is_some_and(|(v, w)| self.eq(v, w)),
            "NEQ" => !value
                .zip(self.low.text.as_deref())
                .is_some_and(|(v, w)| self.eq(v, w)),
            "LT" => ord(&self.low).is_some_and(|o| o.is_lt()),
            "LTE" => ord(&self.low).is_some_and(|o| o.is_le()),
            "GT" => ord(&self.low).is_some_and(|o| o.is_gt()),
            "GTE" => ord(&self.low).is_some_and(|o| o.is_ge()),
            "BETWEEN" => {
                ord(&self.low).is_some_and(|o| o.is_ge())
                    && ord(&self.high).is_some_and(|o| o.is_le())
            }
            "IN" | "NOT_IN" => {
                let inside = value.is_some_and(|v| self.values.iter().any(|w| self.eq(v, w)));
                (self.operator == "IN") == inside
            }
            "HAS_PROPERTY" => value.is_some(),
            "NOT_HAS_PROPERTY" => value.is_none(),
            "CONTAINS_TOKEN" | "NOT_CONTAINS_TOKEN" => {
                let pattern = self.low.text.as_deref().unwrap_or_default().to_lowercase();
                let found = value.is_some_and(|v| {
                    v.to_lowercase().split_whitespace().any(|token| {
                        match pattern.strip_suffix('*') {
                            Some(prefix) => token.starts_with(prefix.trim_start_matches('*')),
                            None => token == pattern.trim_start_matches('*'),
                        }
                    })
                });
                (self.operator == "CONTAINS_TOKEN") == found
            }
            _ => false,
        }
    }
}

async fn list_properties(State(hs): Hs) -> Response {
    let results: Vec<Value> = hs.with_store(|s| {
        s.deal_properties
            .values()
            .map(|p| p.definition.clone())
            .collect()
    });
    axum::Json(json!({ "results": results })).into_response()
}

async fn get_property(State(hs): Hs, Path(name): Path<String>) -> Response {
    match hs.with_store(|s| s.deal_properties.get(&name).map(|p| p.definition.clone())) {
        Some(p) => axum::Json(p).into_response(),
        None => not_found(&format!("Unable to find property {name}"), &name),
    }
}

/// Creates a custom deal property (reference §3.10): required fields, valid type and
/// field type pairs, 409 for a name in use.
async fn create_property(State(hs): Hs, body: Bytes) -> Response {
    let body = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let missing: Vec<&str> = ["name", "label", "type", "fieldType", "groupName"]
        .into_iter()
        .filter(|k| body[*k].as_str().is_none_or(str::is_empty))
        .collect();
    if !missing.is_empty() {
        return bad_request(
            &format!("Missing required fields: {}", missing.join(", ")),
            Value::Null,
        );
    }
    let (name, kind, field) = (
        body["name"].as_str().unwrap_or_default(),
        body["type"].as_str().unwrap_or_default(),
        body["fieldType"].as_str().unwrap_or_default(),
    );
    let allowed: &[&str] = match kind {
        "string" => &["text", "textarea", "file", "html", "phonenumber"],
        "number" => &["number", "calculation_equation"],
        "date" | "datetime" => &["date"],
        "enumeration" => &["select", "radio", "checkbox", "booleancheckbox"],
        "bool" => &["booleancheckbox"],
        "phone_number" => &["phonenumber"],
        _ => return bad_request(&format!("`{kind}` is not a property type"), Value::Null),
    };
    if !allowed.contains(&field) {
        return bad_request(
            &format!("fieldType `{field}` does not go with type `{kind}`"),
            Value::Null,
        );
    }
    let created = hs.with_store(|s| {
        if s.deal_properties.contains_key(name) {
            return None;
        }
        let mut p = property(
            name,
            body["label"].as_str().unwrap_or_default(),
            kind,
            field,
            body["groupName"].as_str().unwrap_or_default(),
            false,
            false,
        );
        if let Some(d) = body["description"].as_str() {
            p.definition["description"] = json!(d);
        }
        if let Some(o) = body.get("options") {
            p.definition["options"] = o.clone();
        }
        s.deal_properties.insert(name.to_string(), p.clone());
        Some(p.definition)
    });
    match created {
        None => error(
            StatusCode::CONFLICT,
            "CONFLICT",
            &format!("A property named '{name}' already exists."),
            Value::Null,
        ),
        Some(definition) => {
            let mut r = (StatusCode::CREATED, axum::Json(definition)).into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("/crm/v3/properties/deals/{name}")) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
    }
}

async fn list_owners(State(hs): Hs) -> Response {
    let results: Vec<Value> = hs.with_store(|s| s.owners.values().cloned().collect());
    axum::Json(json!({ "results": results })).into_response()
}

async fn get_owner(State(hs): Hs, Path(id): Path<String>) -> Response {
    match hs.with_store(|s| s.owners.get(&id).cloned()) {
        Some(o) => axum::Json(o).into_response(),
        None => not_found("Resource not found", &id),
    }
}

fn pipeline() -> Value {
    let stages: Vec<Value> = DEFAULT_STAGES
        .iter()
        .enumerate()
        .map(|(i, (id, label, p))| {
            let closed = *id == "closedwon" || *id == "closedlost";
            json!({ "id": id, "label": label, "displayOrder": i, "metadata": { "probability": p, "isClosed": closed.to_string() },
                    "createdAt": "1970-01-01T00:00:00Z", "updatedAt": "1970-01-01T00:00:00Z", "archived": false })
        })
        .collect();
    // "The default pipelines will have createdAt = 0" (spec).
    json!({ "id": "default", "label": "Sales Pipeline", "displayOrder": 0, "stages": stages,
            "createdAt": "1970-01-01T00:00:00Z", "updatedAt": "1970-01-01T00:00:00Z", "archived": false })
}

async fn pipelines() -> Response {
    axum::Json(json!({ "results": [pipeline()] })).into_response()
}

async fn stages(Path(id): Path<String>) -> Response {
    if id != "default" {
        return not_found(&format!("Pipeline {id} not found"), &id);
    }
    axum::Json(json!({ "results": pipeline()["stages"] })).into_response()
}

/// The `properties` a batch read or search asks for (names; anything else ignored).
fn requested_properties(body: &Value) -> Vec<String> {
    body["properties"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}
