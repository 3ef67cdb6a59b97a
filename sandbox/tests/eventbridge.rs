//! EventBridge events from the Partner Central sandbox, as the developer guide's
//! table says each action raises them, delivered with the API destination's secret
//! and readable by pcsync's event parser.

mod common;

use axum::http::HeaderMap;
use pcsync_sandbox::{Quotas, Sandbox};
use serde_json::{Value, json};

async fn drain(rx: &mut common::Received, n: usize) -> Vec<(HeaderMap, Value)> {
    let mut out = Vec::new();
    while out.len() < n {
        let (headers, body) = common::next(rx).await;
        out.push((headers, serde_json::from_str(&body).unwrap_or(Value::Null)));
    }
    out
}

async fn call(sb: &Sandbox, op: &str, body: Value) -> Value {
    common::call(sb, op, body).await.1
}

#[tokio::test]
async fn actions_raise_the_documented_events() {
    let common::Receiver { url, mut rx, .. } = common::receiver("/events/partnercentral").await;
    let sb = common::sandbox(Quotas::OFF).await;
    reqwest::Client::new()
        .post(format!(
            "{}/_sandbox/partnercentral/events",
            sb.partner_central_url
        ))
        .json(&json!({"url": url, "secret": "s3cret-s3cret-s3cret"}))
        .send()
        .await
        .unwrap();

    // Qualified: AWS takes no submission of a prospect (model, `LifeCycle.Stage`).
    let mut opportunity = common::complete_opportunity("t");
    opportunity["LifeCycle"]["Stage"] = json!("Qualified");
    let created = call(&sb, "CreateOpportunity", opportunity).await;
    let id = created["Id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_string();
    let (headers, event) = drain(&mut rx, 1).await.remove(0);
    assert_eq!(headers["x-pcsync-secret"], "s3cret-s3cret-s3cret");
    assert_eq!(event["detail-type"], "Opportunity Created");
    assert_eq!(event["source"], "aws.partnercentral-selling");
    assert_eq!(event["detail"]["catalog"], "Sandbox");
    let parsed = pcsync_engine::Event::from_value(&event, jiff::Timestamp::now())
        .expect("pcsync reads the sandbox's events");
    assert_eq!(parsed.opportunity_id.as_deref(), Some(id.as_str()));

    // Associate a solution: Opportunity Updated (event table).
    sb.partner_central.with_store(|s| {
        s.add_solution(
            "Sandbox",
            "S-1234567",
            "Default",
            "Software Product",
            "Active",
        )
    });
    call(&sb, "AssociateOpportunity", json!({"Catalog": "Sandbox", "OpportunityIdentifier": id, "RelatedEntityType": "Solutions", "RelatedEntityIdentifier": "S-1234567"})).await;
    let (_, event) = drain(&mut rx, 1).await.remove(0);
    assert_eq!(event["detail-type"], "Opportunity Updated");

    // The submission task runs on its own; its events come when it completes.
    let started = call(&sb, "StartEngagementFromOpportunityTask", json!({"Catalog": "Sandbox", "ClientToken": "s", "Identifier": id, "AwsSubmission": {"InvolvementType": "Co-Sell"}})).await;
    assert_eq!(started["TaskStatus"], "IN_PROGRESS");
    // One snapshot per template (OpportunitySummaryView, AwsOpportunitySummaryFullView).
    let kinds: Vec<String> = drain(&mut rx, 6)
        .await
        .into_iter()
        .map(|(_, e)| e["detail-type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        [
            "Opportunity Updated",
            "Engagement Created",
            "Engagement Resource Snapshot Created",
            "Engagement Resource Snapshot Created",
            "Engagement Member Added",
            "Engagement Invitation Created"
        ]
    );

    reqwest::Client::new()
        .post(format!(
            "{}/_sandbox/partnercentral/opportunities/{id}/review",
            sb.partner_central_url
        ))
        .json(&json!({"status": "Approved"}))
        .send()
        .await
        .unwrap();
    let events = drain(&mut rx, 5).await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|(_, e)| e["detail-type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "Engagement Invitation Accepted",
            "Engagement Member Added",
            "Opportunity Updated",
            "Engagement Resource Snapshot Created",
            "Engagement Resource Snapshot Created"
        ]
    );
    let snapshot = &events[3].1["detail"]["resourceSnapshot"];
    assert_eq!(snapshot["resourceId"], id);
    let parsed = pcsync_engine::Event::from_value(&events[3].1, jiff::Timestamp::now()).unwrap();
    assert_eq!(parsed.kind, "Engagement Resource Snapshot Created");
    assert_eq!(parsed.opportunity_id.as_deref(), Some(id.as_str()));
}
