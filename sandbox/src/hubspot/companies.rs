//! Companies (CRM v3 objects `companies`, type `0-2`), deal ↔ company associations
//! through the v4 associations API, and the paged deal listing (reference §3, §3.8:
//! deal → company primary is type 5, unlabeled 341; company → deal 6 and 342).

// Helpers return `Err(Response)` to answer early with HubSpot's error body.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde_json::{Value, json};

use super::HubSpot;
use super::crm::{bad_request, check_properties, not_found, object_properties, parse, query_list};
use super::store::{
    COMPANY_TO_DEAL, COMPANY_TO_DEAL_PRIMARY, DEAL_TO_COMPANY, DEAL_TO_COMPANY_PRIMARY,
};

type Hs = State<Arc<HubSpot>>;

/// The routes.
pub fn routes() -> Router<Arc<HubSpot>> {
    Router::new()
        .route("/crm/v3/objects/companies", axum::routing::post(create))
        .route("/crm/v3/objects/companies/{id}", get(read).patch(update))
        .route(
            "/crm/v4/objects/{from}/{id}/associations/{to}",
            get(associations),
        )
        .route(
            "/crm/v4/objects/deals/{deal}/associations/companies/{company}",
            put(associate),
        )
}

/// `GET /crm/v3/objects/deals?limit=&after=&properties=`: deals in id order, at most
/// 100 a page, with `paging.next.after` while more remain.
pub(super) async fn list_deals(State(hs): Hs, RawQuery(q): RawQuery) -> Response {
    let params: Vec<(String, String)> = q
        .as_deref()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let one = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let limit = match one("limit").map(|l| l.parse::<usize>()) {
        None => 10,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        Some(_) => {
            return bad_request("limit must be between 1 and 100", Value::Null);
        }
    };
    let after = one("after").unwrap_or_default();
    let requested = query_list(&q, "properties");
    let (page, more) = hs.with_store(|s| {
        let mut ids: Vec<&String> = s.deals.keys().collect();
        ids.sort_by_key(|id| id.parse::<u64>().unwrap_or(u64::MAX));
        let start = ids
            .iter()
            .position(|id| {
                after.is_empty()
                    || id.parse::<u64>().unwrap_or(0) > after.parse::<u64>().unwrap_or(0)
            })
            .unwrap_or(ids.len());
        let page: Vec<Value> = ids[start..]
            .iter()
            .take(limit)
            .map(|id| s.deals[*id].to_json(&requested, "deals"))
            .collect();
        (page, ids.len() > start + limit)
    });
    let mut out = json!({ "results": page });
    if more && let Some(last) = out["results"].as_array().and_then(|r| r.last()) {
        let after = last["id"].clone();
        out["paging"] = json!({ "next": { "after": after, "link": format!("?after={}", after.as_str().unwrap_or_default()) } });
    }
    axum::Json(out).into_response()
}

async fn create(State(hs): Hs, body: Bytes) -> Response {
    let body = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let props = match object_properties(&body).and_then(|p| check_properties(&hs, "companies", p)) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let company = hs.with_store(|s| s.insert("companies", props));
    (
        StatusCode::CREATED,
        axum::Json(company.to_json(&[], "companies")),
    )
        .into_response()
}

async fn read(State(hs): Hs, Path(id): Path<String>, RawQuery(q): RawQuery) -> Response {
    let requested = query_list(&q, "properties");
    match hs.with_store(|s| s.companies.get(&id).cloned()) {
        Some(c) => axum::Json(c.to_json(&requested, "companies")).into_response(),
        None => not_found("Object not found.  objectId are usually numeric.", &id),
    }
}

async fn update(State(hs): Hs, Path(id): Path<String>, body: Bytes) -> Response {
    let body = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if !hs.with_store(|s| s.companies.contains_key(&id)) {
        return not_found("Object not found.  objectId are usually numeric.", &id);
    }
    let props = match object_properties(&body).and_then(|p| check_properties(&hs, "companies", p)) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let names: Vec<String> = props.keys().cloned().collect();
    let (company, changes) = edit_company(&hs, &id, props).expect("checked above");
    hs.webhooks.company_changed(&id, &changes, &hs.api_source());
    axum::Json(company.to_json(&names, "companies")).into_response()
}

/// Applies property values to a company; the changed ones, for webhooks.
pub fn edit_company(
    hs: &HubSpot,
    id: &str,
    props: std::collections::BTreeMap<String, String>,
) -> Option<(super::store::Object, Vec<(String, String)>)> {
    hs.with_store(|s| {
        let company = s.companies.get_mut(id)?;
        let changes: Vec<(String, String)> = props
            .iter()
            .filter(|(k, v)| company.properties.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        company.properties.extend(props);
        company.updated_at = jiff::Timestamp::now().max(company.updated_at);
        Some((company.clone(), changes))
    })
}

/// `GET /crm/v4/objects/{deals|companies}/{id}/associations/{companies|deals}`.
async fn associations(
    State(hs): Hs,
    Path((from, id, to)): Path<(String, String, String)>,
) -> Response {
    let pair = (from.as_str(), to.as_str());
    if !matches!(pair, ("deals", "companies") | ("companies", "deals")) {
        return bad_request(
            &format!("this sandbox associates deals and companies, not {from} and {to}"),
            Value::Null,
        );
    }
    let found = hs.with_store(|s| {
        let object = if from == "deals" {
            s.deals.get(&id)
        } else {
            s.companies.get(&id)
        }?;
        let ids = object.associations.get(&to).cloned().unwrap_or_default();
        let results: Vec<Value> = ids
            .iter()
            .map(|other| {
                let (deal, company) = if from == "deals" {
                    (id.as_str(), other.as_str())
                } else {
                    (other.as_str(), id.as_str())
                };
                let primary = s.primary_company.get(deal).map(String::as_str) == Some(company);
                let (primary_type, plain_type) = if from == "deals" {
                    (DEAL_TO_COMPANY_PRIMARY, DEAL_TO_COMPANY)
                } else {
                    (COMPANY_TO_DEAL_PRIMARY, COMPANY_TO_DEAL)
                };
                let mut types = vec![json!({"category": "HUBSPOT_DEFINED", "typeId": plain_type, "label": null})];
                if primary {
                    types.insert(0, json!({"category": "HUBSPOT_DEFINED", "typeId": primary_type, "label": "Primary"}));
                }
                json!({ "toObjectId": other.parse::<u64>().unwrap_or_default(), "associationTypes": types })
            })
            .collect();
        Some(results)
    });
    match found {
        Some(results) => axum::Json(json!({ "results": results })).into_response(),
        None => not_found("Object not found.  objectId are usually numeric.", &id),
    }
}

/// `PUT /crm/v4/objects/deals/{deal}/associations/companies/{company}` with the types
/// to add (`[{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 5}]`).
async fn associate(
    State(hs): Hs,
    Path((deal, company)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let body = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(types) = body.as_array() else {
        return bad_request("the body must be a list of association types", Value::Null);
    };
    let mut primary = false;
    for t in types {
        match (
            t["associationCategory"].as_str(),
            t["associationTypeId"].as_i64(),
        ) {
            (Some("HUBSPOT_DEFINED"), Some(DEAL_TO_COMPANY_PRIMARY)) => primary = true,
            (Some("HUBSPOT_DEFINED"), Some(DEAL_TO_COMPANY)) => {}
            _ => {
                return bad_request(
                    &format!("{t} is not a deal-to-company association type"),
                    Value::Null,
                );
            }
        }
    }
    if !hs.with_store(|s| s.associate_company(&deal, &company, primary)) {
        return not_found("Object not found.  objectId are usually numeric.", &deal);
    }
    axum::Json(json!({
        "fromObjectTypeId": "0-3", "fromObjectId": deal.parse::<u64>().unwrap_or_default(),
        "toObjectTypeId": "0-2", "toObjectId": company.parse::<u64>().unwrap_or_default(),
        "labels": if primary { json!(["Primary"]) } else { json!([]) },
    }))
    .into_response()
}
