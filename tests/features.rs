//! The shipped rule packs as a user meets them: `pcsync serve` against the sandbox,
//! checked through what the sandbox recorded (Partner Central calls, HubSpot notes
//! and tasks, SNS messages). Deal update sync, snapshots and scheduled score checks
//! are in `serve.rs`; this file has deal creation and the notifications for review
//! decisions, sellers and engagement levels.

mod common;

use common::*;
use pcsync_sandbox::Sandbox;
use serde_json::{Value, json};

/// The CreateOpportunity requests the sandbox answered with success.
fn creations(sb: &Sandbox) -> Vec<Value> {
    sb.journal
        .calls()
        .into_iter()
        .filter(|c| c.operation == "CreateOpportunity" && c.status == 200)
        .map(|c| c.request)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_deal_becomes_one_opportunity_however_often_it_is_announced() {
    let (sb, _dir, service, _config) = start(|_| {}, "").await;
    let http = reqwest::Client::new();
    let done_before = drained(&http, &service, 0).await["inbox"]["done"]
        .as_u64()
        .unwrap();
    let company = create_company(
        &http,
        &sb,
        json!({ "name": "Vandelay Industries", "domain": "vandelay.example",
                "industry": "IMPORT_AND_EXPORT", "country": "United States", "state": "NY",
                "city": "New York", "zip": "10001", "address": "129 W 81st St" }),
    )
    .await;
    let created: Value = http
        .post(format!("{}/_sandbox/hubspot/deals", sb.hubspot_url))
        .json(&json!({ "company": company, "properties": {
            "dealname": "Vandelay Industries", "dealstage": "qualifiedtobuy",
            "closedate": "2031-03-31T00:00:00Z", "amount": "4200.50",
            "deal_currency_code": "EUR",
            "description": "  Vandelay needs to move its import ledger off a mainframe.  ",
        }}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let deal_id = created["id"].as_str().unwrap().to_string();
    let deal_url = format!("{}/_sandbox/hubspot/deals/{deal_id}", sb.hubspot_url);

    // The deal.creation webhook creates the opportunity; its id comes back.
    let linked = eventually("the opportunity id on the deal", &service, || async {
        let deal = hubspot_objects(&http, &sb, "deals")
            .await
            .into_iter()
            .find(|d| d["id"] == deal_id.as_str())?;
        let id = deal["properties"]["aws_opportunity_id"]
            .as_str()?
            .to_string();
        (!id.is_empty()).then_some((id, deal))
    })
    .await;
    let (opportunity_id, deal) = linked;
    assert_eq!(deal["properties"]["aws_sync_status"], "created", "{deal}");
    let made = creations(&sb);
    assert_eq!(made.len(), 1);
    let request = &made[0];
    assert_eq!(request["ClientToken"], format!("hubspot-deal-{deal_id}"));
    assert_eq!(request["PartnerOpportunityIdentifier"], deal_id.as_str());
    assert_eq!(request["Origin"], "Partner Referral");
    assert_eq!(request["LifeCycle"]["Stage"], "Qualified");
    assert_eq!(request["LifeCycle"]["TargetCloseDate"], "2031-03-31");
    assert_eq!(request["Project"]["Title"], "Vandelay Industries");
    assert_eq!(
        request["Project"]["CustomerBusinessProblem"],
        "Vandelay needs to move its import ledger off a mainframe."
    );
    assert_eq!(
        request["Project"]["ExpectedCustomerSpend"][0],
        json!({ "Amount": "4200.5", "CurrencyCode": "EUR", "Frequency": "Monthly", "TargetCompany": "AWS" })
    );
    // The customer is the deal's company, in AWS's terms; no placeholder, and no
    // OtherIndustry beside an industry that is not Other (matrix row industryOther).
    assert_eq!(
        request["Customer"]["Account"],
        json!({ "CompanyName": "Vandelay Industries", "WebsiteUrl": "https://vandelay.example",
                "Industry": "Wholesale and Distribution",
                "Address": { "CountryCode": "US", "StateOrRegion": "New York", "City": "New York",
                             "PostalCode": "10001", "StreetAddress": "129 W 81st St" } })
    );
    // No solution configured, no submission: the pack's switches are off.
    assert!(
        !sb.journal
            .calls()
            .iter()
            .any(|c| c.operation == "AssociateOpportunity"
                || c.operation == "StartEngagementFromOpportunityTask")
    );

    // The test delivers HubSpot's webhooks itself from here on.
    http.delete(format!("{}/_sandbox/hubspot/webhooks", sb.hubspot_url))
        .send_ok()
        .await;
    drained(&http, &service, done_before + 1).await;
    let now = jiff::Timestamp::now().as_millisecond();
    let creation = |event_id: u64, attempt: u32| {
        format!(
            r#"[{{"eventId":{event_id},"subscriptionId":6547001,"portalId":62515,"appId":777,"occurredAt":{now},"subscriptionType":"deal.creation","attemptNumber":{attempt},"objectId":{deal_id},"changeSource":"CRM_UI","sourceId":"userId:1"}}]"#,
        )
    };
    // HubSpot redelivers (same event id): dropped at the inbox.
    let again: Value = deliver_signed(&http, &service, &creation(77_001, 0))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["accepted"], 1, "{again}");
    let redelivered: Value = deliver_signed(&http, &service, &creation(77_001, 1))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(redelivered["duplicates"], 1, "{redelivered}");
    let h = drained(&http, &service, done_before + 2).await;
    assert_eq!(h["inbox"]["dead"], 0, "{h}");
    assert_eq!(creations(&sb).len(), 1, "the linked deal is skipped");

    // The id never made it back to the deal (say the write-back was lost) and a new
    // creation event arrives: CreateOpportunity runs again with the same ClientToken
    // and Partner Central answers with the same opportunity.
    http.patch(&deal_url)
        .json(&json!({ "properties": { "aws_opportunity_id": "" } }))
        .send_ok()
        .await;
    deliver_signed(&http, &service, &creation(77_002, 0)).await;
    eventually("the second creation attempt", &service, || async {
        (creations(&sb).len() == 2).then_some(())
    })
    .await;
    let made = creations(&sb);
    assert_eq!(made[1]["ClientToken"], made[0]["ClientToken"]);
    let for_deal = opportunities(&http, &sb)
        .await
        .iter()
        .filter(|o| o["PartnerOpportunityIdentifier"] == deal_id.as_str())
        .count();
    assert_eq!(for_deal, 1, "one opportunity for the deal");
    eventually("the id written back again", &service, || async {
        let deal = hubspot_objects(&http, &sb, "deals")
            .await
            .into_iter()
            .find(|d| d["id"] == deal_id.as_str())?;
        (deal["properties"]["aws_opportunity_id"] == opportunity_id.as_str()).then_some(())
    })
    .await;
}

/// The service with smart notifications' summary poll sweeping once at start (the
/// next sweep is 30 minutes away, and the changed-opportunities run is left out),
/// after that sweep has recorded the demo's baseline: from then on only events drive
/// the pack.
async fn start_after_baseline() -> (Sandbox, tempfile::TempDir, Service) {
    let (sb, dir, service, _config) = start(notifications_after_one_sweep, "").await;
    drained(&reqwest::Client::new(), &service, 4).await;
    (sb, dir, service)
}

/// The demo's opportunity in review status `status` and its deal: (opportunity, deal).
async fn demo_pair(http: &reqwest::Client, sb: &Sandbox, status: &str) -> (String, String) {
    let opportunity = opportunities(http, sb)
        .await
        .iter()
        .find(|o| o["LifeCycle"]["ReviewStatus"] == status)
        .unwrap()["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let deal = hubspot_objects(http, sb, "deals")
        .await
        .into_iter()
        .find(|d| d["properties"]["aws_opportunity_id"] == opportunity.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    (opportunity, deal)
}

/// Waits for the first task on `deal`.
async fn first_task(
    http: &reqwest::Client,
    sb: &Sandbox,
    service: &Service,
    what: &str,
    deal: &str,
) -> Value {
    eventually(what, service, || async {
        tasks_on(http, sb, deal).await.into_iter().next()
    })
    .await
}

/// Tasks on `deal`, oldest first.
async fn tasks_on(http: &reqwest::Client, sb: &Sandbox, deal: &str) -> Vec<Value> {
    hubspot_objects(http, sb, "tasks")
        .await
        .into_iter()
        .filter(|t| t["associations"]["deals"][0] == deal)
        .collect()
}

async fn aws(http: &reqwest::Client, sb: &Sandbox, path: &str, body: Value) {
    http.post(format!(
        "{}/_sandbox/partnercentral/opportunities/{path}",
        sb.partner_central_url
    ))
    .json(&body)
    .send_ok()
    .await;
}

/// A task's due time, in hours from now.
/// AWS raises the engagement score of the opportunity at `opportunity` (its control
/// path) to High; returns the task that tells the deal's owner.
async fn engagement_rises_to_high(
    http: &reqwest::Client,
    sb: &Sandbox,
    service: &Service,
    opportunity: &str,
    deal: &str,
) -> Value {
    aws(
        http,
        sb,
        &format!("{opportunity}/insights"),
        json!({ "engagement_score": "High" }),
    )
    .await;
    eventually("the engagement-level task", service, || async {
        tasks_on(http, sb, deal)
            .await
            .into_iter()
            .find(|t| t["properties"]["hs_task_subject"] == "🎯 AWS Engagement Score is now High")
    })
    .await
}

fn due_in_hours(task: &Value) -> f64 {
    let due: jiff::Timestamp = task["properties"]["hs_timestamp"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    (due - jiff::Timestamp::now()).as_secs_f64() / 3600.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_decisions_sellers_and_engagement_levels_reach_the_deal_team_once() {
    let (sb, _dir, service) = start_after_baseline().await;
    let http = reqwest::Client::new();
    let (submitted, submitted_deal) = demo_pair(&http, &sb, "Submitted").await;
    let (approved, approved_deal) = demo_pair(&http, &sb, "Approved").await;
    let (action, action_deal) = demo_pair(&http, &sb, "Action Required").await;
    assert!(
        hubspot_objects(&http, &sb, "tasks").await.is_empty(),
        "a baseline notifies nothing"
    );

    // AWS approves the submitted opportunity: a high-priority task due in a day, a
    // note, and an SNS message with the deal and priority as attributes.
    aws(
        &http,
        &sb,
        &format!("{submitted}/review"),
        json!({ "status": "Approved" }),
    )
    .await;
    let task = first_task(&http, &sb, &service, "the approval task", &submitted_deal).await;
    assert_eq!(
        task["properties"]["hs_task_subject"],
        "✅ AWS Approved Opportunity"
    );
    assert_eq!(task["properties"]["hs_task_priority"], "HIGH");
    assert_eq!(task["properties"]["hubspot_owner_id"], "77", "{task}");
    let hours = due_in_hours(&task);
    assert!((23.0..=24.5).contains(&hours), "due in {hours} h");
    let message = eventually("the SNS message", &service, || async {
        let all = get(&http, &format!("{}/_sandbox/sns/messages", sb.sns_url)).await?;
        all["messages"].as_array()?.first().cloned()
    })
    .await;
    // SNS subjects are printable ASCII: the emoji stays in HubSpot.
    assert_eq!(message["Subject"], "AWS Approved Opportunity");
    assert!(
        message["Message"]
            .as_str()
            .unwrap()
            .contains("Coordinate with the AWS seller"),
        "{message}"
    );
    assert_eq!(
        message["MessageAttributes"]["dealId"],
        json!({ "Type": "String", "Value": submitted_deal })
    );
    assert_eq!(
        message["MessageAttributes"]["priority"],
        json!({ "Type": "String", "Value": "high" })
    );
    let notes = hubspot_objects(&http, &sb, "notes").await;
    assert!(
        notes
            .iter()
            .any(|n| n["associations"]["deals"][0] == submitted_deal.as_str()
                && n["shown"]
                    .as_str()
                    .unwrap()
                    .contains("AWS Approved Opportunity")),
        "{notes:?}"
    );

    // Action Required names AWS's comments and reason; Rejected is medium priority,
    // due in three days.
    aws(
        &http,
        &sb,
        &format!("{approved}/review"),
        json!({ "status": "Action Required", "comments": "Add the customer's website.",
                "reason": "Missing customer information" }),
    )
    .await;
    let action_task = first_task(
        &http,
        &sb,
        &service,
        "the action-required task",
        &approved_deal,
    )
    .await;
    assert_eq!(
        action_task["properties"]["hs_task_subject"],
        "⚠️ AWS Requires Action"
    );
    let body = action_task["shown"].as_str().unwrap();
    assert!(
        body.contains("Add the customer's website.")
            && body.contains("Missing customer information"),
        "{body}"
    );
    aws(
        &http,
        &sb,
        &format!("{action}/review"),
        json!({ "status": "Rejected", "reason": "Duplicate opportunity" }),
    )
    .await;
    let rejected = eventually("the rejection task", &service, || async {
        tasks_on(&http, &sb, &action_deal).await.into_iter().next()
    })
    .await;
    assert_eq!(
        rejected["properties"]["hs_task_subject"],
        "❌ AWS Rejected Opportunity"
    );
    assert_eq!(rejected["properties"]["hs_task_priority"], "MEDIUM");
    let hours = due_in_hours(&rejected);
    assert!((71.0..=72.5).contains(&hours), "due in {hours} h");

    // AWS assigns a seller to it and raises its engagement level.
    aws(
        &http,
        &sb,
        &format!("{submitted}/seller"),
        json!({ "first_name": "Ada", "last_name": "Lovelace", "email": "ada@amazon.example" }),
    )
    .await;
    let seller = eventually("the seller task", &service, || async {
        tasks_on(&http, &sb, &submitted_deal)
            .await
            .into_iter()
            .find(|t| t["properties"]["hs_task_subject"] == "👤 AWS Seller Assigned")
    })
    .await;
    // Stored as HTML, shown as the rep reads it.
    let body = seller["shown"].as_str().unwrap();
    assert!(body.contains("Ada Lovelace (ada@amazon.example)"), "{body}");
    engagement_rises_to_high(&http, &sb, &service, &submitted, &submitted_deal).await;

    // More events with nothing new (the same decision again, the same level): no
    // notification is repeated.
    let before = hubspot_objects(&http, &sb, "tasks").await.len();
    assert_eq!(before, 5);
    let done = drained(&http, &service, 0).await["inbox"]["done"]
        .as_u64()
        .unwrap();
    aws(
        &http,
        &sb,
        &format!("{submitted}/review"),
        json!({ "status": "Approved" }),
    )
    .await;
    aws(
        &http,
        &sb,
        &format!("{submitted}/insights"),
        json!({ "engagement_score": "High" }),
    )
    .await;
    drained(&http, &service, done + 2).await;
    assert_eq!(hubspot_objects(&http, &sb, "tasks").await.len(), before);
    let messages = get(&http, &format!("{}/_sandbox/sns/messages", sb.sns_url))
        .await
        .unwrap();
    assert_eq!(messages["messages"].as_array().unwrap().len(), before);
}

/// AWS keeps no summary of an opportunity it was never sent (GetAwsOpportunitySummary
/// answers ResourceNotFoundException): a review decision on it still reaches the deal
/// team, since the review status is the opportunity's, not the summary's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_decision_is_noticed_while_aws_has_no_summary() {
    let (sb, _dir, service) = start_after_baseline().await;
    let http = reqwest::Client::new();
    let (opportunity, deal) = demo_pair(&http, &sb, "Pending Submission").await;
    assert!(
        sb.partner_central
            .with_store(|s| s.aws_summary(
                &json!({ "Catalog": "Sandbox", "RelatedOpportunityIdentifier": opportunity })
            ))
            .is_err(),
        "the demo's unsubmitted opportunity has no AWS summary"
    );
    let review = format!("{opportunity}/review");
    let action_required = || {
        aws(
            &http,
            &sb,
            &review,
            json!({ "status": "Action Required", "comments": "Add the customer's website.",
                    "reason": "Missing customer information" }),
        )
    };
    action_required().await;
    let task = first_task(&http, &sb, &service, "the action-required task", &deal).await;
    assert_eq!(
        task["properties"]["hs_task_subject"],
        "⚠️ AWS Requires Action"
    );
    assert!(
        task["shown"]
            .as_str()
            .unwrap()
            .contains("Add the customer's website."),
        "{task}"
    );
    // Once: the same decision again notifies nothing.
    let done = drained(&http, &service, 0).await["inbox"]["done"]
        .as_u64()
        .unwrap();
    action_required().await;
    drained(&http, &service, done + 1).await;
    assert_eq!(tasks_on(&http, &sb, &deal).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_partial_success_repeats_no_task_or_note() {
    let (sb, _dir, service) = start_after_baseline().await;
    let http = reqwest::Client::new();
    let (submitted, deal) = demo_pair(&http, &sb, "Submitted").await;
    // The task and the note go out; SNS fails four times (outlasting the SDK's three
    // tries), so the batch is retried.
    inject(
        &http,
        &sb,
        json!({ "service": "sns", "operation": "Publish", "status": 500, "count": 4 }),
    )
    .await;
    aws(
        &http,
        &sb,
        &format!("{submitted}/review"),
        json!({ "status": "Approved" }),
    )
    .await;
    eventually("the message after the retry", &service, || async {
        let all = get(&http, &format!("{}/_sandbox/sns/messages", sb.sns_url)).await?;
        (!all["messages"].as_array()?.is_empty()).then_some(())
    })
    .await;
    drained(&http, &service, 0).await;
    let tasks = tasks_on(&http, &sb, &deal).await;
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    let notes: Vec<Value> = hubspot_objects(&http, &sb, "notes")
        .await
        .into_iter()
        .filter(|n| {
            n["associations"]["deals"][0] == deal.as_str()
                && n["shown"].as_str().is_some_and(|b| b.starts_with("✅"))
        })
        .collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    let text = metrics(&http, &service).await.unwrap();
    assert!(
        text.contains("pcsync_effects_total{kind=\"CreateTask\",outcome=\"already_done\"} 1"),
        "{text}"
    );
    assert!(service.stderr().contains("will retry"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_sns_topic_each_notification_is_a_task_and_a_note_once() {
    // The README's config: no `notifications.sns_topic_arn`.
    let (sb, _dir, service, _config) = start_without_topic(notifications_after_one_sweep, "").await;
    let http = reqwest::Client::new();
    drained(&http, &service, 4).await;
    let (submitted, deal) = demo_pair(&http, &sb, "Submitted").await;

    // The topic's absence is said at load and on `/rules`.
    let rules = get(&http, &format!("{}/rules", service.url)).await.unwrap();
    let warnings = rules["warnings"].as_array().cloned().unwrap_or_default();
    assert!(
        warnings.iter().any(|w| w.as_str().is_some_and(
            |w| w.contains("smart-notifications") && w.contains("notifications.sns_topic_arn")
        )),
        "{rules}"
    );
    assert_eq!(
        service
            .stderr()
            .matches("no notifications.sns_topic_arn")
            .count(),
        1,
        "{}",
        service.stderr()
    );

    // Two changes in a row: each its task and note, and the state recorded, so the
    // second is not the first again.
    aws(
        &http,
        &sb,
        &format!("{submitted}/review"),
        json!({ "status": "Approved" }),
    )
    .await;
    first_task(&http, &sb, &service, "the approval task", &deal).await;
    engagement_rises_to_high(&http, &sb, &service, &submitted, &deal).await;
    let health = drained(&http, &service, 0).await;
    assert_eq!(health["inbox"]["dead"], 0, "{health}");
    let subjects: Vec<Value> = tasks_on(&http, &sb, &deal)
        .await
        .iter()
        .map(|t| t["properties"]["hs_task_subject"].clone())
        .collect();
    assert_eq!(
        subjects,
        [
            json!("✅ AWS Approved Opportunity"),
            json!("🎯 AWS Engagement Score is now High")
        ]
    );
    let notes: Vec<Value> = hubspot_objects(&http, &sb, "notes")
        .await
        .into_iter()
        .filter(|n| n["associations"]["deals"][0] == deal.as_str())
        .filter(|n| {
            n["shown"].as_str().is_some_and(|b| {
                b.contains("AWS Approved Opportunity") || b.contains("Engagement Score")
            })
        })
        .collect();
    assert_eq!(notes.len(), 2, "{notes:?}");
    let text = metrics(&http, &service).await.unwrap();
    assert!(
        text.contains("pcsync_effects_total{kind=\"Publish\",outcome=\"no_topic\"} 2"),
        "{text}"
    );
}
