//! The webhook emitter: batches, both signatures (checked by pcsync's own verifier,
//! which shares no code with the sandbox's signer), change sources and retries.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use pcsync_adapters::hubspot::signature::{Policy, SignatureHeaders, Verified, verify};
use pcsync_sandbox::{HubSpotOptions, Options, Quotas, Sandbox};
use serde_json::{Value, json};
use tokio::sync::mpsc;

type Received = mpsc::UnboundedReceiver<(HeaderMap, String)>;
type ReceiverState = (
    mpsc::UnboundedSender<(HeaderMap, String)>,
    Arc<Mutex<Vec<u16>>>,
);

struct Receiver {
    url: String,
    rx: Received,
    statuses: Arc<Mutex<Vec<u16>>>,
}

/// A stand-in for pcsync's endpoint that records what arrives and answers with the
/// queued statuses (then 200).
async fn receiver() -> Receiver {
    let (tx, rx) = mpsc::unbounded_channel();
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let state = (tx, Arc::clone(&statuses));
    let app =
        Router::new()
            .route(
                "/webhooks/hubspot",
                post(
                    |State((tx, statuses)): State<ReceiverState>,
                     headers: HeaderMap,
                     body: Bytes| async move {
                        let _ = tx.send((headers, String::from_utf8_lossy(&body).into_owned()));
                        let next = {
                            let mut s = statuses.lock().unwrap();
                            if s.is_empty() { 200 } else { s.remove(0) }
                        };
                        StatusCode::from_u16(next).unwrap()
                    },
                ),
            )
            .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhooks/hubspot", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { url, rx, statuses }
}

async fn setup(receiver: &Receiver) -> Sandbox {
    let options = Options {
        partner_central_quotas: Quotas::OFF,
        hubspot: HubSpotOptions::unlimited(),
    };
    let sb = Sandbox::start("127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/_sandbox/hubspot/webhooks", sb.hubspot_url))
        .json(&json!({"url": receiver.url, "client_secret": "test-client-secret", "app_id": 39522895, "retry_base_ms": 50}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    sb
}

async fn next(rx: &mut Received) -> (HeaderMap, String) {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a delivery within 5 s")
        .unwrap()
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
    let mut rcv = receiver().await;
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
    let (headers, body) = next(&mut rcv.rx).await;
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
    let mut rcv = receiver().await;
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
    let _creation = next(&mut rcv.rx).await;
    http.patch(format!("{}/crm/v3/objects/deals/{id}", sb.hubspot_url))
        .bearer_auth("sandbox-token")
        .json(&json!({"properties": {"dealstage": "closedwon", "amount": "2000", "dealname": "Acme"}}))
        .send()
        .await
        .unwrap();
    let (_, body) = next(&mut rcv.rx).await;
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
    let mut rcv = receiver().await;
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
        let (headers, body) = next(&mut rcv.rx).await;
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
