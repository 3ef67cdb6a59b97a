//! pcsync's Partner Central client (the real SDK, JSON bodies) against the sandbox:
//! the opportunity comes back in the API's own shape, and an update sends the whole
//! record, signed.

use pcsync_adapters::AwsTimeouts;
use pcsync_adapters::partner_central::PartnerCentralClient;
use pcsync_sandbox::{Options, Quotas, Sandbox};

/// A seeded sandbox counting `quotas`.
async fn sandbox(quotas: Quotas) -> Sandbox {
    Sandbox::demo_on_loopback(Options {
        partner_central_quotas: quotas,
        ..Options::default()
    })
    .await
    .unwrap()
}

/// The SDK configuration the service builds, pointed at `sb`.
async fn sdk_config(sb: &Sandbox, timeouts: AwsTimeouts) -> aws_config::SdkConfig {
    pcsync_adapters::aws_sdk_config(
        "us-east-1",
        Some(&sb.partner_central_url),
        Some(("AKIDEXAMPLE", "sandbox-secret")),
        timeouts,
    )
    .await
}

async fn setup() -> (Sandbox, PartnerCentralClient) {
    let sb = sandbox(Quotas::OFF).await;
    let conf = sdk_config(&sb, AwsTimeouts::default()).await;
    let client = PartnerCentralClient::from_config(&conf, "Sandbox");
    (sb, client)
}

/// Calls the sandbox answered with 429.
fn throttled(sb: &Sandbox) -> usize {
    sb.journal
        .calls()
        .iter()
        .filter(|c| c.status == 429)
        .count()
}

#[tokio::test]
async fn reads_the_opportunity_in_the_apis_shape() {
    let (_sb, c) = setup().await;
    let o = c.get_opportunity("O5000004").await.unwrap();
    assert_eq!(o["Id"], "O5000004");
    assert_eq!(o["LifeCycle"]["ReviewStatus"], "Approved");
    assert_eq!(
        o["Project"]["ExpectedCustomerSpend"][0]["CurrencyCode"],
        "USD"
    );
    let summary = c.get_aws_summary("O5000004").await.unwrap().unwrap();
    assert_eq!(
        summary["OpportunityTeam"][0]["BusinessTitle"],
        "AWSSalesRep"
    );
    assert_eq!(summary["Insights"]["OpportunityQuality"]["Score"], 64);
    assert_eq!(
        c.get_aws_summary("O5000001").await.unwrap(),
        None,
        "not submitted: no AWS view"
    );
    assert!(c.get_opportunity("O1").await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn an_update_sends_the_whole_record_and_a_stale_one_conflicts() {
    let (sb, c) = setup().await;
    let mut o = c.get_opportunity("O5000001").await.unwrap();
    let before = o["LastModifiedDate"].as_str().unwrap().to_string();
    o["LifeCycle"]["Stage"] = "Qualified".into();
    let after = c.update_opportunity("O5000001", &before, &o).await.unwrap();
    assert_ne!(after, before);
    let stored = sb
        .partner_central
        .with_store(|s| s.opportunity("O5000001").unwrap().record.clone());
    assert_eq!(stored["LifeCycle"]["Stage"], "Qualified");
    assert_eq!(
        stored["Customer"], o["Customer"],
        "the rest of the record is kept because it was sent"
    );
    assert_eq!(stored["Project"]["Title"], "Globex on AWS");

    let err = c
        .update_opportunity("O5000001", &before, &o)
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    assert!(!err.retryable);

    // Blocked while AWS reviews: a validation error naming the review status.
    sb.partner_central
        .with_store(|s| s.set_review("O5000001", "Submitted", None, None))
        .unwrap();
    let mut o = c.get_opportunity("O5000001").await.unwrap();
    let lmd = o["LastModifiedDate"].as_str().unwrap().to_string();
    o["LifeCycle"]["Stage"] = "Committed".into();
    let err = c
        .update_opportunity("O5000001", &lmd, &o)
        .await
        .unwrap_err();
    assert_eq!(err.code, "ValidationException");
    let body = err.body.unwrap();
    assert_eq!(body["ErrorList"][0]["FieldName"], "LifeCycle.ReviewStatus");
    assert_eq!(body["ErrorList"][0]["Code"], "INVALID_RESOURCE_STATE");
}

/// Records what the client reports.
#[derive(Debug, Default)]
struct Seen {
    calls: std::sync::Mutex<Vec<(String, String)>>,
    attempts: std::sync::Mutex<Vec<(String, String)>>,
}

impl pcsync_adapters::Observer for Seen {
    fn called(&self, _: &'static str, operation: &str, outcome: &str, _: std::time::Duration) {
        let mut calls = self.calls.lock().unwrap();
        calls.push((operation.into(), outcome.into()));
    }
    fn waited(&self, _: &'static str, _: std::time::Duration) {}
    fn attempted(&self, _: &'static str, operation: &str, outcome: &str) {
        let mut attempts = self.attempts.lock().unwrap();
        attempts.push((operation.into(), outcome.into()));
    }
}

fn fault(
    operation: &str,
    count: u32,
    status: Option<u16>,
    delay_ms: Option<u64>,
) -> pcsync_sandbox::control::Fault {
    serde_json::from_value(
        serde_json::json!({"service": "partnercentral", "operation": operation,
        "count": count, "status": status, "delay_ms": delay_ms}),
    )
    .unwrap()
}

#[tokio::test]
async fn a_hung_endpoint_ends_in_a_retryable_timeout_not_a_wait() {
    let sb = sandbox(Quotas::OFF).await;
    let conf = sdk_config(
        &sb,
        AwsTimeouts {
            attempt: std::time::Duration::from_millis(200),
        },
    )
    .await;
    let seen = std::sync::Arc::new(Seen::default());
    let c = PartnerCentralClient::from_config(&conf, "Sandbox").with_observer(seen.clone());
    // Each answer would come after 40 s: every attempt times out instead.
    sb.journal
        .inject(fault("GetOpportunity", 3, None, Some(40_000)));
    let e = c.get_opportunity("O5000004").await.unwrap_err();
    assert_eq!(e.code, "Timeout", "{e:?}");
    assert!(e.retryable);
    let attempts = seen.attempts.lock().unwrap().clone();
    assert!(
        !attempts.is_empty()
            && attempts
                .iter()
                .all(|(op, outcome)| op == "GetOpportunity" && outcome == "timeout"),
        "{attempts:?}"
    );
}

#[tokio::test]
async fn every_attempt_is_counted() {
    let sb = sandbox(Quotas::OFF).await;
    let conf = sdk_config(&sb, AwsTimeouts::default()).await;
    let seen = std::sync::Arc::new(Seen::default());
    let c = PartnerCentralClient::from_config(&conf, "Sandbox").with_observer(seen.clone());
    sb.journal
        .inject(fault("GetOpportunity", 2, Some(500), None));
    c.get_opportunity("O5000004").await.unwrap();
    assert_eq!(
        *seen.calls.lock().unwrap(),
        vec![("GetOpportunity".to_string(), "ok".to_string())],
        "one call, as the caller saw it"
    );
    let attempts: Vec<String> = seen
        .attempts
        .lock()
        .unwrap()
        .iter()
        .map(|a| a.1.clone())
        .collect();
    assert_eq!(attempts, ["500", "500", "ok"], "every exchange on the wire");
}

#[tokio::test]
async fn a_restarted_client_does_not_add_its_burst_to_the_last_ones() {
    // The sandbox counts 10 reads a second per account, as AWS does.
    let sb = sandbox(Quotas::default()).await;
    let conf = sdk_config(&sb, AwsTimeouts::default()).await;
    // A process reads as fast as its limiter lets it, and is replaced at once by
    // another that does the same (a crash loop).
    for _ in 0..3 {
        let c = PartnerCentralClient::from_config(&conf, "Sandbox");
        let reads = (0..12).map(|_| c.get_opportunity("O5000004"));
        for read in futures_util::future::join_all(reads).await {
            read.unwrap();
        }
    }
    assert_eq!(throttled(&sb), 0, "no call was throttled");
}

#[tokio::test]
async fn a_throttled_write_retries_in_its_turn_and_meets_no_second_throttle() {
    // One write a second per account, as AWS counts them.
    let sb = sandbox(Quotas::default()).await;
    let conf = sdk_config(&sb, AwsTimeouts::default()).await;
    let seen = std::sync::Arc::new(Seen::default());
    let c = PartnerCentralClient::from_config(&conf, "Sandbox").with_observer(seen.clone());
    // The first write is throttled. Its retry must take a turn of the write pace like
    // any other write: sent around it (as the SDK's own retries were), it lands within
    // a second of the next paced write, and that one is throttled for real.
    sb.journal
        .inject(fault("UpdateOpportunity", 1, Some(429), None));
    let edits = ["O5000001", "O5000004"].map(|id| {
        let c = c.clone();
        async move {
            for stage in ["Qualified", "Technical Validation"] {
                let mut o = c.get_opportunity(id).await.unwrap();
                let lmd = o["LastModifiedDate"].as_str().unwrap().to_string();
                o["LifeCycle"]["Stage"] = stage.into();
                c.update_opportunity(id, &lmd, &o).await.unwrap();
            }
        }
    });
    futures_util::future::join_all(edits).await;
    assert_eq!(throttled(&sb), 1, "the injected throttle, and no other");
    let writes = seen
        .attempts
        .lock()
        .unwrap()
        .iter()
        .filter(|(op, _)| op == "UpdateOpportunity")
        .count();
    assert_eq!(writes, 5, "four writes and one retry");
}

#[tokio::test]
async fn a_spent_daily_quota_holds_calls_back_instead_of_sending_them() {
    // AWS allows the account 3 reads a day here. Another client of the account spent
    // two; pcsync counted none of them.
    let sb = sandbox(Quotas {
        reads_per_day: Some(3),
        ..Quotas::OFF
    })
    .await;
    let conf = sdk_config(&sb, AwsTimeouts::default()).await;
    let other = PartnerCentralClient::from_config(&conf, "Sandbox");
    other.get_opportunity("O5000001").await.unwrap();
    other.get_opportunity("O5000001").await.unwrap();
    let c = PartnerCentralClient::from_config(&conf, "Sandbox");
    c.get_opportunity("O5000001").await.unwrap();
    // AWS refuses the next read for the day: the answer says so, and when to retry.
    let e = c.get_opportunity("O5000001").await.unwrap_err();
    assert!(e.is_quota_spent(), "{e:?}");
    assert!(e.retryable);
    assert!(e.message.contains("daily read quota"), "{}", e.message);
    assert_eq!(e.retry_after, Some(pcsync_adapters::quota::UNKNOWN_PAUSE));
    // Once told, pcsync holds back the class without asking again, and writes
    // (another allowance) still go.
    let sent = sb.journal.calls().len();
    let e = c.get_aws_summary("O5000004").await.unwrap_err();
    assert!(e.is_quota_spent(), "{e:?}");
    assert_eq!(sb.journal.calls().len(), sent, "nothing sent");
    let status = c.daily_quotas().status(now_ms());
    assert_eq!(status[0].used, 2, "two reads counted: {status:?}");
    assert!(status[0].paused_until.is_some());
    let e = other.get_opportunity("O5000001").await.unwrap_err();
    assert!(
        e.is_quota_spent(),
        "the other client is refused by AWS too: {e:?}"
    );
}

#[tokio::test]
async fn pcsyncs_own_count_stops_it_at_the_limit_before_aws_has_to() {
    let sb = sandbox(Quotas::OFF).await;
    let conf = sdk_config(&sb, AwsTimeouts::default()).await;
    let quotas = std::sync::Arc::new(pcsync_adapters::quota::DailyQuotas::new(
        pcsync_adapters::quota::DailyLimits {
            reads: 100_000,
            writes: 2,
        },
    ));
    let c = PartnerCentralClient::from_config(&conf, "Sandbox").with_daily_quotas(quotas);
    let mut o = c.get_opportunity("O5000001").await.unwrap();
    let mut modified = o["LastModifiedDate"].as_str().unwrap().to_string();
    let first_write = std::time::Instant::now();
    for stage in ["Qualified", "Technical Validation"] {
        o["LifeCycle"]["Stage"] = stage.into();
        modified = c
            .update_opportunity("O5000001", &modified, &o)
            .await
            .unwrap();
    }
    let e = c
        .update_opportunity("O5000001", &modified, &o)
        .await
        .unwrap_err();
    assert!(e.is_quota_spent(), "{e:?}");
    // The first write leaves the window 24 hours after the start of the minute it
    // was counted in.
    let wait = e.retry_after.unwrap();
    assert!(
        wait + first_write.elapsed() > std::time::Duration::from_secs(23 * 3600 + 59 * 60),
        "{wait:?}"
    );
    assert!(
        wait <= std::time::Duration::from_secs(24 * 3600),
        "{wait:?}"
    );
    let writes = sb
        .journal
        .calls()
        .iter()
        .filter(|c| c.operation == "UpdateOpportunity")
        .count();
    assert_eq!(writes, 2, "the third write was never sent");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
