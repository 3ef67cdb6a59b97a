//! The webhook emitter: batches, both signatures (checked by pcsync's own verifier,
//! which shares no code with the sandbox's signer), change sources and retries.

mod common;

use std::time::Duration;

use axum::http::HeaderMap;
use pcsync_adapters::hubspot::signature::{Policy, SignatureHeaders, Verified, verify};
use pcsync_sandbox::{HubSpotOptions, Options, Quotas, Sandbox};
use serde_json::{Value, json};

async fn setup(receiver: &common::Receiver) -> Sandbox {
    let options = Options {
        partner_central_quotas: Quotas::OFF,
        hubspot: HubSpotOptions::unlimited(),
    };
    let sb = Sandbox::on_loopback(options).await.unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/_sandbox/hubspot/webhooks", sb.hubspot_url))
        .json(&json!({"url": receiver.url, "client_secret": "test-client-secret", "app_id": 39522895, "retry_base_ms": 50}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    sb
}

fn verified(
    url: &str,
    headers: &HeaderMap,
    body: &str,
    accept_v1: bool,
) -> Result<Verified, String> {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let sig = SignatureHeaders {
        v3: if accept_v1 {
            None
        } else {
            h("x-hubspot-signature-v3")
        },
        timestamp: h("x-hubspot-request-timestamp"),
        v1: h("x-hubspot-signature"),
        v1_version: h("x-hubspot-signature-version"),
    };
    let now = jiff::Timestamp::now().as_millisecond() as u64;
    verify(
        "test-client-secret",
        "POST",
        url,
        body.as_bytes(),
        sig,
        Policy {
            accept_v1,
            ..Policy::default()
        },
        now,
    )
    .map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_user_created_deal_arrives_signed_with_v1_and_v3() {
    let mut rcv = common::receiver("/webhooks/hubspot").await;
    let sb = setup(&rcv).await;
    let created: Value = reqwest::Client::new()
        .post(format!("{}/_sandbox/hubspot/deals", sb.hubspot_url))
        .json(&json!({"properties": {"dealname": "Acme"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (headers, body) = common::next(&mut rcv.rx).await;
    assert_eq!(verified(&rcv.url, &headers, &body, false), Ok(Verified::V3));
    assert_eq!(verified(&rcv.url, &headers, &body, true), Ok(Verified::V1));
    let events: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e["subscriptionType"], "deal.creation");
    assert_eq!(e["objectId"].to_string(), created["id"].as_str().unwrap());
    assert_eq!(e["changeFlag"], "CREATED");
    assert_eq!(
        (e["changeSource"].as_str(), e["sourceId"].as_str()),
        (Some("CRM_UI"), Some("userId:47812075"))
    );
    assert_eq!(
        (e["appId"].as_u64(), e["attemptNumber"].as_u64()),
        (Some(39522895), Some(0))
    );
}

#[tokio::test]
async fn api_writes_batch_one_event_per_property_from_the_app() {
    let mut rcv = common::receiver("/webhooks/hubspot").await;
    let sb = setup(&rcv).await;
    let http = reqwest::Client::new();
    let id = http
        .post(format!("{}/crm/v3/objects/deals", sb.hubspot_url))
        .bearer_auth("sandbox-token")
        .json(&json!({"properties": {"dealname": "Acme", "amount": "10"}}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let _creation = common::next(&mut rcv.rx).await;
    http.patch(format!("{}/crm/v3/objects/deals/{id}", sb.hubspot_url))
        .bearer_auth("sandbox-token")
        .json(&json!({"properties": {"dealstage": "closedwon", "amount": "2000", "dealname": "Acme"}}))
        .send()
        .await
        .unwrap();
    let (_, body) = common::next(&mut rcv.rx).await;
    let events: Vec<Value> = serde_json::from_str(&body).unwrap();
    let mut changed: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["propertyName"].as_str().unwrap().to_string(),
                e["propertyValue"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    changed.sort();
    assert_eq!(
        changed,
        [
            ("amount".to_string(), "2000".to_string()),
            ("dealstage".to_string(), "closedwon".to_string())
        ],
        "unchanged dealname sends nothing"
    );
    assert!(
        events
            .iter()
            .all(|e| e["subscriptionType"] == "deal.propertyChange"
                && e["changeSource"] == "INTEGRATION"
                && e["sourceId"] == "39522895")
    );
}

#[tokio::test]
async fn failed_deliveries_are_retried_with_a_higher_attempt_number_and_a_fresh_signature() {
    let mut rcv = common::receiver("/webhooks/hubspot").await;
    rcv.statuses.lock().unwrap().extend([500, 503]);
    let sb = setup(&rcv).await;
    reqwest::Client::new()
        .post(format!("{}/_sandbox/hubspot/deals", sb.hubspot_url))
        .json(&json!({"properties": {"dealname": "Acme"}}))
        .send()
        .await
        .unwrap();
    let mut attempts = Vec::new();
    for _ in 0..3 {
        let (headers, body) = common::next(&mut rcv.rx).await;
        assert_eq!(verified(&rcv.url, &headers, &body, false), Ok(Verified::V3));
        let events: Vec<Value> = serde_json::from_str(&body).unwrap();
        attempts.push(events[0]["attemptNumber"].as_u64().unwrap());
    }
    assert_eq!(attempts, [0, 1, 2]);
    // The journal records a delivery once its answer is back: wait for the third.
    let mut statuses = Vec::new();
    for _ in 0..50 {
        let calls: Value = reqwest::get(format!(
            "{}/_sandbox/calls?service=hubspot-webhooks",
            sb.hubspot_url
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        statuses = calls["calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["status"].as_u64().unwrap())
            .collect();
        if statuses.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(statuses, [500, 503, 200]);
}
