//! What the sandbox's test files share: a sandbox, and the real SDK client for it.
// Each test binary uses its own subset.
#![allow(dead_code)]

use aws_sdk_partnercentralselling as pc;
use pcsync_sandbox::{Options, Quotas, Sandbox};

/// A sandbox on a free port with these Partner Central quotas.
pub async fn sandbox(quotas: Quotas) -> Sandbox {
    Sandbox::on_loopback(Options {
        partner_central_quotas: quotas,
        ..Options::default()
    })
    .await
    .unwrap()
}

/// The real Partner Central SDK client for `sb`, pcsync's shared AWS configuration
/// with `max_attempts` tries per call.
pub async fn client(sb: &Sandbox, max_attempts: u32) -> pc::Client {
    let shared = pcsync_adapters::aws_sdk_config(
        "us-east-1",
        Some(&sb.partner_central_url),
        Some(("AKIDEXAMPLE", "sandbox-secret")),
        pcsync_adapters::AwsTimeouts::default(),
    )
    .await;
    let conf = pc::config::Builder::from(&shared)
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(max_attempts))
        .build();
    pc::Client::from_conf(conf)
}

/// A CreateOpportunity request that carries every field AWS's field matrix requires of
/// a partner-originated opportunity (aws-opportunity-fields.csv), as JSON.
pub fn complete_opportunity(token: &str) -> serde_json::Value {
    serde_json::json!({
        "Catalog": "Sandbox", "ClientToken": token, "Origin": "Partner Referral",
        "PartnerOpportunityIdentifier": "hubspot-101",
        "PrimaryNeedsFromAws": ["Co-Sell - Deal Support"],
        "Customer": {"Account": {"CompanyName": "Acme", "Industry": "Software and Internet",
            "WebsiteUrl": "https://acme.example",
            "Address": {"CountryCode": "US", "PostalCode": "02110", "StateOrRegion": "Massachusetts"}}},
        "Project": {"Title": "Acme data platform",
            "CustomerBusinessProblem": "Acme needs to consolidate five data silos into one lake",
            "CustomerUseCase": "Migration/Database Migration", "DeliveryModels": ["SaaS or PaaS"],
            "SalesActivities": ["Initialized discussions with customer"],
            "ExpectedCustomerSpend": [{"Amount": "12500", "CurrencyCode": "USD", "Frequency": "Monthly", "TargetCompany": "AWS"}]},
        "Marketing": {"Source": "None"},
        "LifeCycle": {"Stage": "Prospect", "TargetCloseDate": "2030-12-31"}
    })
}

/// One Partner Central call as plain AWS JSON 1.0 over HTTP (for requests the SDK
/// cannot build, such as members the model lacks): the status and the body.
pub async fn call(
    sb: &Sandbox,
    operation: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(&sb.partner_central_url)
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amz-target", format!("AWSPartnerCentralSelling.{operation}"))
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261201/us-east-1/partnercentral-selling/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-target, \
             Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        )
        .header("x-amz-date", "20261201T000000Z")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (
        status,
        response.json().await.unwrap_or(serde_json::Value::Null),
    )
}

/// The `(FieldName, Code)` pairs of a ValidationException body, after checking its shape.
pub fn field_errors(body: &serde_json::Value, reason: &str) -> Vec<(String, String)> {
    assert_eq!(body["__type"], "ValidationException", "{body}");
    assert_eq!(body["Reason"], reason, "{body}");
    assert!(
        body["Message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body["ErrorList"]
        .as_array()
        .unwrap_or_else(|| panic!("no ErrorList: {body}"))
        .iter()
        .map(|e| {
            assert!(e["Message"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
            (
                e["FieldName"].as_str().unwrap_or_default().to_string(),
                e["Code"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Polls ListEngagementFromOpportunityTasks until the submission task ends (the
/// sandbox ends tasks a moment after they start, as AWS does); its summary.
pub async fn settled_task(
    client: &pc::Client,
    task_id: &str,
) -> pc::types::ListEngagementFromOpportunityTaskSummary {
    for _ in 0..50 {
        let listed = client
            .list_engagement_from_opportunity_tasks()
            .catalog("Sandbox")
            .task_identifier(task_id)
            .send()
            .await
            .expect("the task listing answers");
        let task = listed.task_summaries()[0].clone();
        if task.task_status() != Some(&pc::types::TaskStatus::InProgress) {
            return task;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("task {task_id} never ended");
}

/// A stand-in for pcsync's endpoint at `path` (`/webhooks/hubspot`,
/// `/events/partnercentral`): each request's headers and body text arrive on `rx`,
/// and it answers with the statuses queued in `statuses`, then 200.
pub struct Receiver {
    pub url: String,
    pub rx: Received,
    pub statuses: std::sync::Arc<std::sync::Mutex<Vec<u16>>>,
}

/// What a [`Receiver`] hands on.
pub type Received = tokio::sync::mpsc::UnboundedReceiver<(axum::http::HeaderMap, String)>;

/// Starts a [`Receiver`] on a free loopback port.
pub async fn receiver(path: &str) -> Receiver {
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use std::sync::{Arc, Mutex};
    type Sent = tokio::sync::mpsc::UnboundedSender<(HeaderMap, String)>;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route(
            path,
            axum::routing::post(
                |State((tx, statuses)): State<(Sent, Arc<Mutex<Vec<u16>>>)>,
                 headers: HeaderMap,
                 body: axum::body::Bytes| async move {
                    let _ = tx.send((headers, String::from_utf8_lossy(&body).into_owned()));
                    let next = {
                        let mut s = statuses.lock().unwrap();
                        if s.is_empty() { 200 } else { s.remove(0) }
                    };
                    StatusCode::from_u16(next).unwrap()
                },
            ),
        )
        .with_state((tx, Arc::clone(&statuses)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}{path}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { url, rx, statuses }
}

/// The next request a [`Receiver`] got, within 5 s.
pub async fn next(rx: &mut Received) -> (axum::http::HeaderMap, String) {
    tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
        .await
        .expect("a request within 5 s")
        .unwrap()
}
