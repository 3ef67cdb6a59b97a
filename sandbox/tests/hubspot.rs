//! Conformance of the HubSpot CRM v3 side over HTTP (reference §3–§5, §8).

use pcsync_sandbox::{HubSpotOptions, Options, Quotas, Sandbox};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

async fn sandbox(hubspot: HubSpotOptions) -> Sandbox {
    let options = Options {
        partner_central_quotas: Quotas::OFF,
        hubspot,
    };
    Sandbox::on_loopback(options).await.unwrap()
}

struct Api<'a> {
    sb: &'a Sandbox,
    http: Client,
}

impl Api<'_> {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.sb.hubspot_url))
            .bearer_auth("sandbox-token");
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let (status, headers) = (r.status(), r.headers().clone());
        (status, headers, r.json().await.unwrap_or(Value::Null))
    }

    async fn deal(&self, props: Value) -> String {
        let (status, _, body) = self
            .call(
                Method::POST,
                "/crm/v3/objects/deals",
                Some(json!({ "properties": props })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_string()
    }
}

fn api(sb: &Sandbox) -> Api<'_> {
    Api {
        sb,
        http: Client::new(),
    }
}

#[tokio::test]
async fn requests_need_the_bearer_token() {
    let sb = sandbox(HubSpotOptions::unlimited()).await;
    for auth in [None, Some("Bearer wrong")] {
        let mut req = Client::new().get(format!("{}/crm/v3/owners", sb.hubspot_url));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["status"], "error");
        assert_eq!(body["category"], "INVALID_AUTHENTICATION");
        assert!(body["correlationId"].is_string());
    }
    let (status, _, _) = api(&sb).call(Method::GET, "/crm/v3/owners", None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn deals_read_back_in_the_crm_shape() {
    let sb = sandbox(HubSpotOptions::unlimited()).await;
    let a = api(&sb);
    let id = a
        .deal(json!({"dealname": "Acme", "amount": "1500.00", "dealstage": "qualifiedtobuy"}))
        .await;
    assert!(
        id.parse::<u64>().unwrap() > u64::from(u32::MAX),
        "ids exceed 32 bits"
    );
    let (status, _, deal) = a.call(Method::GET, &format!("/crm/v3/objects/deals/{id}?properties=dealname,amount&properties=aws_opportunity_id,description"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(deal["id"], id);
    assert_eq!(deal["properties"]["dealname"], "Acme");
    assert_eq!(deal["properties"]["amount"], "1500.00");
    assert_eq!(
        deal["properties"]["description"],
        Value::Null,
        "requested but unset is null"
    );
    let created = deal["createdAt"].as_str().unwrap();
    assert!(
        regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            .unwrap()
            .is_match(created),
        "{created}"
    );
    let (status, _, missing) = a.call(Method::GET, "/crm/v3/objects/deals/999", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(missing["category"], "OBJECT_NOT_FOUND");
}

#[tokio::test]
async fn writes_to_unknown_or_read_only_properties_are_rejected() {
    let sb = sandbox(HubSpotOptions::unlimited()).await;
    let a = api(&sb);
    let id = a.deal(json!({"dealname": "Acme"})).await;
    let (status, _, body) = a
        .call(
            Method::PATCH,
            &format!("/crm/v3/objects/deals/{id}"),
            Some(json!({"properties": {"aws_opportunity_id": "O1", "hs_object_id": "5"}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["category"], "VALIDATION_ERROR");
    let codes: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["PROPERTY_DOESNT_EXIST", "READ_ONLY_VALUE"]);
    assert_eq!(
        body["errors"][0]["context"]["propertyName"][0],
        "aws_opportunity_id"
    );

    let (status, _, body) = a
        .call(
            Method::PATCH,
            &format!("/crm/v3/objects/deals/{id}"),
            Some(json!({"properties": {"deal_currency_code": "BRL"}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errors"][0]["code"], "INVALID_OPTION");

    // Once the property exists (pcsync setup creates it), the write succeeds.
    let (status, headers, _) = a
        .call(Method::POST, "/crm/v3/properties/deals", Some(json!({"name": "aws_opportunity_id", "label": "AWS opportunity", "type": "string", "fieldType": "text", "groupName": "dealinformation"})))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        headers["location"],
        "/crm/v3/properties/deals/aws_opportunity_id"
    );
    let (status, _, body) = a
        .call(
            Method::PATCH,
            &format!("/crm/v3/objects/deals/{id}"),
            Some(json!({"properties": {"aws_opportunity_id": "O1"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["properties"]["aws_opportunity_id"], "O1");
}

#[tokio::test]
async fn properties_are_validated_and_duplicates_conflict() {
    let sb = sandbox(HubSpotOptions::unlimited()).await;
    let a = api(&sb);
    let spec = json!({"name": "aws_sync_status", "label": "AWS sync status", "type": "string", "fieldType": "text", "groupName": "dealinformation"});
    assert_eq!(
        a.call(Method::POST, "/crm/v3/properties/deals", Some(spec.clone()))
            .await
            .0,
        StatusCode::CREATED
    );
    let (status, _, body) = a
        .call(Method::POST, "/crm/v3/properties/deals", Some(spec))
        .await;
    assert_eq!(
        (status, body["category"].as_str()),
        (StatusCode::CONFLICT, Some("CONFLICT"))
    );
    let (status, _, _) = a.call(Method::POST, "/crm/v3/properties/deals", Some(json!({"name": "x", "label": "X", "type": "bool", "fieldType": "text", "groupName": "dealinformation"}))).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "bool goes with booleancheckbox"
    );
    let (_, _, list) = a.call(Method::GET, "/crm/v3/properties/deals", None).await;
    assert!(
        list["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "aws_sync_status")
    );
}

#[tokio::test]
async fn notes_and_tasks_attach_to_deals_with_the_right_association_types() {
    let sb = sandbox(HubSpotOptions::unlimited()).await;
    let a = api(&sb);
    let deal = a.deal(json!({"dealname": "Acme"})).await;
    let assoc = |type_id: i64| json!([{"to": {"id": deal.clone()}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}]}]);
    let (status, _, note) = a
        .call(Method::POST, "/crm/v3/objects/notes", Some(json!({"properties": {"hs_timestamp": "2026-11-28T12:00:00Z", "hs_note_body": "Synced"}, "associations": assoc(214)})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{note}");
    let (status, _, body) = a
        .call(Method::POST, "/crm/v3/objects/notes", Some(json!({"properties": {"hs_timestamp": "1764331200000", "hs_note_body": "x"}, "associations": assoc(216)})))
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "216 is task→deal, not note→deal: {body}"
    );
    let (status, _, _) = a
        .call(
            Method::POST,
            "/crm/v3/objects/tasks",
            Some(json!({"properties": {"hs_task_subject": "Call"}, "associations": assoc(216)})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "hs_timestamp is required");
    let (status, _, task) = a
        .call(Method::POST, "/crm/v3/objects/tasks", Some(json!({"properties": {"hs_timestamp": "2026-11-29T12:00:00Z", "hs_task_subject": "Call", "hs_task_priority": "HIGH", "hubspot_owner_id": "77"}, "associations": assoc(216)})))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, _, got) = a
        .call(
            Method::GET,
            &format!("/crm/v3/objects/deals/{deal}?associations=notes,tasks"),
            None,
        )
        .await;
    assert_eq!(got["associations"]["notes"]["results"][0]["id"], note["id"]);
    assert_eq!(
        got["associations"]["notes"]["results"][0]["type"],
        "deal_to_note"
    );
    assert_eq!(got["associations"]["tasks"]["results"][0]["id"], task["id"]);
}

#[tokio::test]
async fn batch_create_and_batch_read_report_per_item_results() {
    let sb = sandbox(HubSpotOptions::unlimited()).await;
    let a = api(&sb);
    let deal = a.deal(json!({"dealname": "Acme"})).await;
    let input = |trace: &str, ts: &str| {
        json!({"properties": {"hs_timestamp": ts, "hs_note_body": "n"}, "objectWriteTraceId": trace,
        "associations": [{"to": {"id": deal}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 214}]}]})
    };
    let (status, _, body) = a
        .call(
            Method::POST,
            "/crm/v3/objects/notes/batch/create",
            Some(json!({"inputs": [input("a", "1764331200000"), input("b", "1764331200001")]})),
        )
        .await;
    assert_eq!(
        (status, body["results"].as_array().unwrap().len()),
        (StatusCode::CREATED, 2)
    );
    let (status, _, body) = a
        .call(
            Method::POST,
            "/crm/v3/objects/notes/batch/create",
            Some(json!({"inputs": [input("c", "1764331200000"), input("d", "not a time")]})),
        )
        .await;
    assert_eq!(status, StatusCode::MULTI_STATUS);
    assert_eq!(body["errors"][0]["context"]["objectWriteTraceId"][0], "d");

    let (status, _, body) = a
        .call(
            Method::POST,
            "/crm/v3/objects/deals/batch/read",
            Some(json!({"properties": ["dealname"], "inputs": [{"id": deal}, {"id": "12345"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::MULTI_STATUS);
    assert_eq!(body["results"][0]["properties"]["dealname"], "Acme");
    assert_eq!(body["errors"][0]["category"], "OBJECT_NOT_FOUND");
    assert_eq!(body["errors"][0]["context"]["ids"][0], "12345");
    let too_many: Vec<Value> = (0..101).map(|i| json!({"id": i.to_string()})).collect();
    assert_eq!(
        a.call(
            Method::POST,
            "/crm/v3/objects/deals/batch/read",
            Some(json!({"inputs": too_many}))
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn search_filters_sorts_and_pages() {
    let sb = sandbox(HubSpotOptions::unlimited()).await;
    let a = api(&sb);
    a.call(Method::POST, "/crm/v3/properties/deals", Some(json!({"name": "aws_opportunity_id", "label": "AWS", "type": "string", "fieldType": "text", "groupName": "dealinformation"}))).await;
    let mut ids = Vec::new();
    for (i, amount) in ["500", "20000", "15000", "9000"].iter().enumerate() {
        let mut props = json!({"dealname": format!("Deal {i}"), "amount": amount, "dealstage": "qualifiedtobuy"});
        if i % 2 == 1 {
            props["aws_opportunity_id"] = json!(format!("O{i}"));
        }
        ids.push(a.deal(props).await);
    }
    // Search sees the new deals once its lag has passed.
    sb.hubspot
        .advance_clock(pcsync_sandbox::hubspot::SEARCH_LAG);
    let search = |body: Value| a.call(Method::POST, "/crm/v3/objects/deals/search", Some(body));
    let (_, headers, linked) = search(json!({"filterGroups": [{"filters": [{"propertyName": "aws_opportunity_id", "operator": "HAS_PROPERTY"}]}], "properties": ["aws_opportunity_id"]})).await;
    assert_eq!(linked["total"], 2);
    assert!(
        headers.get("x-hubspot-ratelimit-max").is_none(),
        "search sends no rate-limit headers"
    );
    let (_, _, big) = search(json!({"filterGroups": [{"filters": [{"propertyName": "amount", "operator": "GT", "value": "10000"}]},
                                                    {"filters": [{"propertyName": "dealname", "operator": "EQ", "value": "deal 0"}]}],
                                    "sorts": [{"propertyName": "amount", "direction": "DESCENDING"}]})).await;
    let names: Vec<&str> = big["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["properties"]["dealname"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Deal 1", "Deal 2", "Deal 0"],
        "OR across groups, case-insensitive EQ, sorted by amount descending"
    );
    let (_, _, first) = search(json!({"limit": 3})).await;
    assert_eq!(first["paging"]["next"]["after"], "3");
    let (_, _, rest) = search(json!({"limit": 3, "after": "3"})).await;
    assert_eq!(rest["results"].as_array().unwrap().len(), 1);
    assert!(rest.get("paging").is_none());
    assert_eq!(
        search(json!({"limit": 201})).await.0,
        StatusCode::BAD_REQUEST
    );
    let groups: Vec<Value> = (0..6)
        .map(|_| json!({"filters": [{"propertyName": "amount", "operator": "HAS_PROPERTY"}]}))
        .collect();
    assert_eq!(
        search(json!({"filterGroups": groups})).await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn the_ten_second_window_is_enforced_with_hubspots_headers_and_body() {
    let sb = sandbox(HubSpotOptions {
        rate_limit_per_10s: Some(3),
        ..HubSpotOptions::default()
    })
    .await;
    let a = api(&sb);
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let (status, headers, _) = a.call(Method::GET, "/crm/v3/pipelines/deals", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["x-hubspot-ratelimit-max"], "3");
        assert_eq!(
            headers["x-hubspot-ratelimit-interval-milliseconds"],
            "10000"
        );
        remaining.push(
            headers["x-hubspot-ratelimit-remaining"]
                .to_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let (status, headers, body) = a.call(Method::GET, "/crm/v3/pipelines/deals", None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["x-hubspot-ratelimit-remaining"], "0");
    assert_eq!(body["errorType"], "RATE_LIMIT");
    assert_eq!(body["policyName"], "TEN_SECONDLY_ROLLING");
    assert_eq!(
        body["message"],
        "You have reached your ten_secondly_rolling limit."
    );
}

#[tokio::test]
async fn search_is_limited_to_five_requests_per_second() {
    let sb = sandbox(HubSpotOptions {
        rate_limit_per_10s: None,
        ..HubSpotOptions::default()
    })
    .await;
    let a = api(&sb);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(
            a.call(
                Method::POST,
                "/crm/v3/objects/deals/search",
                Some(json!({})),
            )
            .await
            .0,
        );
    }
    assert_eq!(&statuses[..5], [StatusCode::OK; 5]);
    assert_eq!(statuses[5], StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn owners_and_the_default_pipeline() {
    let sb = sandbox(HubSpotOptions::unlimited()).await;
    sb.hubspot
        .with_store(|s| s.add_owner("77", "pat@partner.example", "Pat", "Owner"));
    let a = api(&sb);
    let (_, _, owner) = a.call(Method::GET, "/crm/v3/owners/77", None).await;
    assert_eq!(
        (owner["id"].as_str(), owner["email"].as_str()),
        (Some("77"), Some("pat@partner.example"))
    );
    assert_eq!(
        a.call(Method::GET, "/crm/v3/owners/78", None).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, _, stages) = a
        .call(Method::GET, "/crm/v3/pipelines/deals/default/stages", None)
        .await;
    let ids: Vec<&str> = stages["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "appointmentscheduled",
            "qualifiedtobuy",
            "presentationscheduled",
            "decisionmakerboughtin",
            "contractsent",
            "closedwon",
            "closedlost"
        ]
    );
}

#[tokio::test]
async fn the_daily_limit_is_enforced_until_the_accounts_midnight() {
    // An account in Auckland: its day ends at its own midnight, not UTC's.
    let zone = jiff::tz::TimeZone::get("Pacific/Auckland").unwrap();
    let sb = sandbox(HubSpotOptions {
        daily_limit: 2,
        time_zone: zone.clone(),
        ..HubSpotOptions::unlimited()
    })
    .await;
    let a = api(&sb);
    let pipelines = || a.call(Method::GET, "/crm/v3/pipelines/deals", None);
    assert_eq!(pipelines().await.0, StatusCode::OK);
    assert_eq!(pipelines().await.0, StatusCode::OK);
    let (status, headers, body) = pipelines().await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    // HubSpot's documented DAILY body (reference §5.3).
    assert_eq!(body["errorType"], "RATE_LIMIT");
    assert_eq!(body["policyName"], "DAILY");
    assert_eq!(body["message"], "You have reached your daily limit.");
    assert_eq!(headers["x-hubspot-ratelimit-daily"], "2");
    assert_eq!(headers["x-hubspot-ratelimit-daily-remaining"], "0");
    // Still refused a moment before the account's midnight…
    let now = sb.hubspot.clock.now();
    let midnight = now
        .to_zoned_datetime(zone.clone())
        .date()
        .tomorrow()
        .unwrap()
        .to_zoned_datetime(zone)
        .unwrap()
        .timestamp();
    let before_midnight = now.duration_until(midnight) - jiff::SignedDuration::from_secs(60);
    sb.hubspot
        .advance_clock(before_midnight.try_into().unwrap());
    assert_eq!(pipelines().await.0, StatusCode::TOO_MANY_REQUESTS);
    // …and answered again after it.
    sb.hubspot
        .advance_clock(std::time::Duration::from_secs(120));
    assert_eq!(pipelines().await.0, StatusCode::OK);
}

#[tokio::test]
async fn search_lags_writes_while_reads_by_id_see_them_at_once() {
    let sb = sandbox(HubSpotOptions::unlimited()).await;
    let a = api(&sb);
    a.call(Method::POST, "/crm/v3/properties/deals", Some(json!({"name": "aws_opportunity_id", "label": "AWS", "type": "string", "fieldType": "text", "groupName": "dealinformation"}))).await;
    let linked_to = |opportunity: &'static str| {
        a.call(
            Method::POST,
            "/crm/v3/objects/deals/search",
            Some(json!({"filterGroups": [{"filters": [{"propertyName": "aws_opportunity_id", "operator": "EQ", "value": opportunity}]}], "properties": ["aws_opportunity_id"]})),
        )
    };
    let id = a
        .deal(json!({"dealname": "Lagging", "dealstage": "qualifiedtobuy", "aws_opportunity_id": "O1"}))
        .await;
    // A new deal is not found by search at once…
    let (_, _, found) = linked_to("O1").await;
    assert_eq!(found["total"], 0, "{found}");
    // …though a read by id has it.
    let (status, _, _) = a
        .call(Method::GET, &format!("/crm/v3/objects/deals/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    sb.hubspot
        .advance_clock(pcsync_sandbox::hubspot::SEARCH_LAG);
    let (_, _, found) = linked_to("O1").await;
    assert_eq!(found["total"], 1, "{found}");

    // A change is searched as it was until the lag has passed: the old value still
    // finds the deal, the new one not yet.
    let (status, _, _) = a
        .call(
            Method::PATCH,
            &format!("/crm/v3/objects/deals/{id}"),
            Some(json!({"properties": {"aws_opportunity_id": "O2"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(linked_to("O2").await.2["total"], 0);
    let (_, _, stale) = linked_to("O1").await;
    assert_eq!(stale["total"], 1);
    assert_eq!(
        stale["results"][0]["properties"]["aws_opportunity_id"],
        "O1"
    );
    sb.hubspot
        .advance_clock(pcsync_sandbox::hubspot::SEARCH_LAG);
    assert_eq!(linked_to("O1").await.2["total"], 0);
    assert_eq!(linked_to("O2").await.2["total"], 1);
}
