//! The control API: acting as AWS, injected faults and recorded calls, seen through
//! the real SDK client and plain HTTP.

use std::time::Instant;

mod common;

use aws_sdk_partnercentralselling as pc;
use common::{client, sandbox};
use pc::types::*;
use pcsync_sandbox::{Quotas, Sandbox};
use serde_json::{Value, json};

async fn post(sb: &Sandbox, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", sb.partner_central_url))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn get(sb: &Sandbox, path: &str) -> Value {
    reqwest::get(format!("{}{path}", sb.partner_central_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn seeded(sb: &Sandbox) -> String {
    let (status, created) = post(
        sb,
        "/_sandbox/partnercentral/opportunities",
        json!({"Origin": "Partner Referral", "LifeCycle": {"Stage": "Qualified"},
               "Customer": {"Account": {"CompanyName": "Acme", "WebsiteUrl": "https://acme.example"}}}),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    created["Id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn aws_actions_change_what_the_api_returns() {
    let sb = sandbox(Quotas::OFF).await;
    let c = client(&sb, 1).await;
    let id = seeded(&sb).await;
    sb.partner_central.with_store(|s| {
        s.add_solution(
            "Sandbox",
            "S-1234567",
            "Default",
            "Software Product",
            "Active",
        )
    });
    c.associate_opportunity()
        .catalog("Sandbox")
        .opportunity_identifier(&id)
        .related_entity_type(RelatedEntityType::Solutions)
        .related_entity_identifier("S-1234567")
        .send()
        .await
        .unwrap();
    let started = c
        .start_engagement_from_opportunity_task()
        .catalog("Sandbox")
        .client_token("go")
        .identifier(&id)
        .aws_submission(
            AwsSubmission::builder()
                .involvement_type(SalesInvolvementType::CoSell)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let task = common::settled_task(&c, started.task_id().unwrap()).await;
    assert_eq!(task.task_status(), Some(&TaskStatus::Complete));
    let (status, _) = post(&sb, &format!("/_sandbox/partnercentral/opportunities/{id}/review"), json!({"status": "Action Required", "comments": "Add the website", "reason": "Missing information"})).await;
    assert_eq!(status, 200);
    let (status, _) = post(
        &sb,
        &format!("/_sandbox/partnercentral/opportunities/{id}/seller"),
        json!({"first_name": "Sam", "last_name": "Seller", "email": "sam@amazon.example"}),
    )
    .await;
    assert_eq!(status, 200);
    for score in [60, 82] {
        let (status, _) = post(
            &sb,
            &format!("/_sandbox/partnercentral/opportunities/{id}/insights"),
            json!({"engagement_score": "High", "quality_score": score}),
        )
        .await;
        assert_eq!(status, 200);
    }

    let got = c
        .get_opportunity()
        .catalog("Sandbox")
        .identifier(&id)
        .send()
        .await
        .unwrap();
    let lc = got.life_cycle().unwrap();
    assert_eq!(lc.review_status(), Some(&ReviewStatus::ActionRequired));
    assert_eq!(lc.review_comments(), Some("Add the website"));
    assert_eq!(lc.review_status_reason(), Some("Missing information"));
    let summary = c
        .get_aws_opportunity_summary()
        .catalog("Sandbox")
        .related_opportunity_identifier(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        summary.opportunity_team()[0].email(),
        Some("sam@amazon.example")
    );
    assert_eq!(
        summary.insights().unwrap().engagement_score(),
        Some(&EngagementScore::High)
    );
    assert_eq!(
        summary
            .insights()
            .unwrap()
            .opportunity_quality()
            .unwrap()
            .trend(),
        Some("Improving")
    );

    let (status, body) = post(
        &sb,
        &format!("/_sandbox/partnercentral/opportunities/{id}/insights"),
        json!({"engagement_score": "Huge"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn injected_server_errors_are_retried_by_the_sdk_and_recorded() {
    let sb = sandbox(Quotas::OFF).await;
    let id = seeded(&sb).await;
    post(&sb, "/_sandbox/faults", json!({"service": "partnercentral", "operation": "GetOpportunity", "count": 2, "status": 500})).await;
    let c = client(&sb, 3).await;
    let got = c
        .get_opportunity()
        .catalog("Sandbox")
        .identifier(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(got.id, id);
    let calls = get(
        &sb,
        "/_sandbox/calls?service=partnercentral&operation=GetOpportunity",
    )
    .await;
    let statuses: Vec<u64> = calls["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [500, 500, 200]);
    assert_eq!(calls["calls"][2]["request"]["Identifier"], id);
}

#[tokio::test]
async fn an_injected_client_error_is_not_retried() {
    let sb = sandbox(Quotas::OFF).await;
    let id = seeded(&sb).await;
    post(
        &sb,
        "/_sandbox/faults",
        json!({"service": "partnercentral", "operation": "GetOpportunity", "status": 400}),
    )
    .await;
    let c = client(&sb, 3).await;
    let err = c
        .get_opportunity()
        .catalog("Sandbox")
        .identifier(&id)
        .send()
        .await
        .unwrap_err();
    assert!(matches!(
        err.into_service_error(),
        pc::operation::get_opportunity::GetOpportunityError::ValidationException(_)
    ));
    c.get_opportunity()
        .catalog("Sandbox")
        .identifier(&id)
        .send()
        .await
        .expect("the fault was used up");
}

#[tokio::test]
async fn delays_and_dropped_connections_can_be_injected() {
    let sb = sandbox(Quotas::OFF).await;
    let id = seeded(&sb).await;
    let c = client(&sb, 1).await;
    post(
        &sb,
        "/_sandbox/faults",
        json!({"service": "partnercentral", "operation": "GetOpportunity", "delay_ms": 300}),
    )
    .await;
    let started = Instant::now();
    c.get_opportunity()
        .catalog("Sandbox")
        .identifier(&id)
        .send()
        .await
        .unwrap();
    assert!(started.elapsed().as_millis() >= 300);

    post(
        &sb,
        "/_sandbox/faults",
        json!({"service": "partnercentral", "operation": "GetOpportunity", "drop": true}),
    )
    .await;
    let err = c
        .get_opportunity()
        .catalog("Sandbox")
        .identifier(&id)
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error().is_none(),
        "a dropped connection is not a service answer: {err:?}"
    );
}

#[tokio::test]
async fn the_hubspot_accounts_clock_and_daily_allowance_are_set_over_http() {
    let sb = sandbox(Quotas::OFF).await;
    let http = reqwest::Client::new();
    let hubspot = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{}{path}", sb.hubspot_url))
            .bearer_auth("sandbox-token")
    };
    // A rep creates a deal in HubSpot's UI: search does not find it yet.
    let (status, _) = post(
        &sb,
        "/_sandbox/hubspot/deals",
        json!({"properties": {"dealname": "Fresh", "dealstage": "qualifiedtobuy"}}),
    )
    .await;
    assert_eq!(status, 201);
    let total = || async {
        let found: Value = hubspot(reqwest::Method::POST, "/crm/v3/objects/deals/search")
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        found["total"].clone()
    };
    assert_eq!(total().await, 0);
    let lag = pcsync_sandbox::hubspot::SEARCH_LAG.as_millis() as u64;
    let (status, _) = post(&sb, "/_sandbox/hubspot/clock", json!({"advance_ms": lag})).await;
    assert_eq!(status, 200);
    assert_eq!(total().await, 1);

    // The day's allowance spent: HubSpot's daily 429.
    let (status, _) = post(&sb, "/_sandbox/hubspot/limits", json!({"daily": 0})).await;
    assert_eq!(status, 200);
    let refused = hubspot(reqwest::Method::GET, "/crm/v3/pipelines/deals")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 429);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["policyName"], "DAILY");
    let (status, _) = post(&sb, "/_sandbox/hubspot/limits", json!({"daily": -1})).await;
    assert_eq!(status, 400);
}
