//! The flows against the strict sandbox (issue #11 part C), end to end: the real
//! binary, HubSpot's webhooks and Partner Central over HTTP. Each test is one
//! production situation the flows must survive on their first real call.

mod common;

use common::*;
use pcsync_sandbox::Sandbox;
use serde_json::{Value, json};

/// CreateOpportunity calls the sandbox answered, by status.
fn creates(sb: &Sandbox, status: u16) -> Vec<Value> {
    sb.journal
        .calls()
        .into_iter()
        .filter(|c| c.operation == "CreateOpportunity" && c.status == status)
        .map(|c| c.request)
        .collect()
}

/// How many `operation` calls the sandbox answered with `status`.
fn answered(sb: &Sandbox, operation: &str, status: u16) -> usize {
    sb.journal
        .calls()
        .iter()
        .filter(|c| c.operation == operation && c.status == status)
        .count()
}

/// The deal's `aws_sync_status` once `done` says it is the one awaited.
async fn status_when(
    http: &reqwest::Client,
    sb: &Sandbox,
    service: &Service,
    id: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    eventually("the deal's status", service, || async {
        let d = deal(http, sb, id).await;
        d["properties"]["aws_sync_status"]
            .as_str()
            .filter(|s| done(s))
            .map(str::to_string)
    })
    .await
}

/// A deal the rep creates in HubSpot for `company`.
async fn new_deal(http: &reqwest::Client, sb: &Sandbox, company: &str, name: &str) -> String {
    new_deal_with(http, sb, company, json!({ "dealname": name })).await
}

/// [`new_deal`] at a deal stage of the rep's choosing.
async fn new_deal_at(
    http: &reqwest::Client,
    sb: &Sandbox,
    company: &str,
    name: &str,
    stage: &str,
) -> String {
    new_deal_with(
        http,
        sb,
        company,
        json!({ "dealname": name, "dealstage": stage }),
    )
    .await
}

/// [`new_deal`] with `properties` over the usual ones (a currency, a close date).
async fn new_deal_with(
    http: &reqwest::Client,
    sb: &Sandbox,
    company: &str,
    properties: Value,
) -> String {
    let mut all = json!({
        "dealstage": "qualifiedtobuy",
        "closedate": "2031-03-31T00:00:00Z", "amount": "9000", "deal_currency_code": "USD",
        "description": "The customer moves its order system onto AWS this year",
    });
    for (k, v) in properties.as_object().expect("properties are an object") {
        all[k] = v.clone();
    }
    let created: Value = http
        .post(format!("{}/_sandbox/hubspot/deals", sb.hubspot_url))
        .json(&json!({ "company": company, "properties": all }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["id"].as_str().unwrap().to_string()
}

fn acme(zip: &str) -> Value {
    json!({ "name": "Acme Corporation", "domain": "acme.example", "industry": "RETAIL",
            "country": "United States", "state": "MA", "city": "Boston", "zip": zip })
}

/// The deal as the sandbox holds it.
async fn deal(http: &reqwest::Client, sb: &Sandbox, id: &str) -> Value {
    hubspot_objects(http, sb, "deals")
        .await
        .into_iter()
        .find(|d| d["id"] == id)
        .unwrap()
}

/// The opportunity id on the deal, once it is there.
async fn linked(http: &reqwest::Client, sb: &Sandbox, service: &Service, id: &str) -> String {
    eventually("the opportunity id on the deal", service, || async {
        let d = deal(http, sb, id).await;
        d["properties"]["aws_opportunity_id"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    })
    .await
}

async fn notes_on(http: &reqwest::Client, sb: &Sandbox, deal: &str) -> Vec<String> {
    hubspot_objects(http, sb, "notes")
        .await
        .into_iter()
        .filter(|n| n["associations"]["deals"][0] == deal)
        .filter_map(|n| n["shown"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creation_waits_for_the_postal_code_and_happens_when_it_is_filled_in() {
    let (sb, _dir, service, _config) = start(|_| {}, "worker:\n  coalesce: 100ms\n").await;
    let http = reqwest::Client::new();
    let company = create_company(&http, &sb, acme("")).await;
    let id = new_deal(&http, &sb, &company, "Acme order system").await;

    let status = eventually("the waiting status", &service, || async {
        let d = deal(&http, &sb, &id).await;
        d["properties"]["aws_sync_status"]
            .as_str()
            .map(str::to_string)
    })
    .await;
    assert_eq!(status, "waiting for: Postal Code");
    // An unrelated edit: still waiting, and the rep is not told twice.
    edit_deal(&http, &sb, &id, json!({ "amount": "9500" })).await;
    drained(&http, &service, 0).await;
    let notes = notes_on(&http, &sb, &id).await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("Not yet sent to AWS Partner Central"),
        "{notes:?}"
    );
    assert!(notes[0].contains("\n- Postal Code"), "{notes:?}");
    assert!(creates(&sb, 200).is_empty() && creates(&sb, 400).is_empty());

    // The rep fills in the company's postal code: HubSpot's company.propertyChange
    // reaches the deal, and the opportunity is created.
    http.patch(format!(
        "{}/_sandbox/hubspot/companies/{company}",
        sb.hubspot_url
    ))
    .json(&json!({ "properties": { "zip": "02110" } }))
    .send_ok()
    .await;
    let opportunity = linked(&http, &sb, &service, &id).await;
    let made = creates(&sb, 200);
    assert_eq!(made.len(), 1);
    assert_eq!(
        made[0]["Customer"]["Account"]["Address"]["PostalCode"],
        "02110"
    );
    assert_eq!(made[0]["Customer"]["Account"]["Industry"], "Retail");
    assert_eq!(
        deal(&http, &sb, &id).await["properties"]["aws_sync_status"],
        "created"
    );
    assert!(opportunity.starts_with('O'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_lost_carries_the_reason_aws_requires() {
    let (sb, _dir, service, _config) = start(|_| {}, "worker:\n  coalesce: 100ms\n").await;
    let http = reqwest::Client::new();
    // The demo's first deal: its opportunity is Pending Submission at Prospect.
    let (deal_id, opportunity_id) = ("40000000001", "O5000001");
    edit_deal(
        &http,
        &sb,
        deal_id,
        json!({ "dealstage": "closedlost", "closed_lost_reason": "Too expensive" }),
    )
    .await;
    let o = eventually("the opportunity closed lost", &service, || async {
        let o = opportunity(&http, &sb, opportunity_id).await?;
        (o["LifeCycle"]["Stage"] == "Closed Lost").then_some(o)
    })
    .await;
    assert_eq!(o["LifeCycle"]["ClosedLostReason"], "Price");
    assert!(updates(&sb, 400).is_empty(), "{:?}", updates(&sb, 400));
    // Once Closed Lost, the pack sends nothing more for the deal's edits.
    let before = updates(&sb, 200).len();
    edit_deal(&http, &sb, deal_id, json!({ "amount": "1" })).await;
    drained(&http, &service, 0).await;
    assert_eq!(updates(&sb, 200).len(), before);
    assert!(updates(&sb, 400).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deal_in_a_currency_aws_does_not_take_waits_and_is_created_once_it_changes() {
    let (sb, _dir, service, config) = start(|_| {}, "worker:\n  coalesce: 100ms\n").await;
    let http = reqwest::Client::new();
    let company = create_company(&http, &sb, acme("02110")).await;
    let id = new_deal_with(
        &http,
        &sb,
        &company,
        json!({ "dealname": "Acme order system", "deal_currency_code": "GBP" }),
    )
    .await;
    let status = eventually("the waiting status", &service, || async {
        let d = deal(&http, &sb, &id).await;
        d["properties"]["aws_sync_status"]
            .as_str()
            .map(str::to_string)
    })
    .await;
    assert_eq!(status, "waiting for: Currency (GBP is not one of USD, EUR)");
    // An unrelated edit: still waiting, told once, and AWS was never asked.
    edit_deal(&http, &sb, &id, json!({ "amount": "9500" })).await;
    drained(&http, &service, 0).await;
    let notes = notes_on(&http, &sb, &id).await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("\n- Currency (GBP"), "{notes:?}");
    assert!(creates(&sb, 200).is_empty() && creates(&sb, 400).is_empty());
    assert!(!dlq(&config, &["list"]).1.contains(&id));

    // The rep sets a currency AWS takes: the opportunity is created in it.
    edit_deal(&http, &sb, &id, json!({ "deal_currency_code": "EUR" })).await;
    linked(&http, &sb, &service, &id).await;
    let made = creates(&sb, 200);
    assert_eq!(made.len(), 1);
    assert_eq!(
        made[0]["Project"]["ExpectedCustomerSpend"][0],
        json!({ "Amount": "9500", "CurrencyCode": "EUR", "Frequency": "Monthly", "TargetCompany": "AWS" })
    );
    assert_eq!(
        deal(&http, &sb, &id).await["properties"]["aws_sync_status"],
        "created"
    );
    assert!(creates(&sb, 400).is_empty());
}

/// `convert_currency` in both shipped packs, at 1.25 USD to the pound.
fn with_pound_rates(rules: &std::path::Path) {
    let rates = "convert_currency:\n  to: USD\n  rates: { GBP: 1.25 }\n\nmap:\n";
    for pack in ["deal-creation.yaml", "deal-update-sync.yaml"] {
        edit_pack(rules, pack, "\nmap:\n", &format!("\n{rates}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_rates_a_deal_in_pounds_is_created_and_updated_in_dollars() {
    let (sb, _dir, service, _config) =
        start(with_pound_rates, "worker:\n  coalesce: 100ms\n").await;
    let http = reqwest::Client::new();
    let company = create_company(&http, &sb, acme("02110")).await;
    let id = new_deal_with(
        &http,
        &sb,
        &company,
        json!({ "dealname": "Acme order system", "deal_currency_code": "GBP", "amount": "8000" }),
    )
    .await;
    let opportunity_id = linked(&http, &sb, &service, &id).await;
    let made = creates(&sb, 200);
    assert_eq!(made.len(), 1);
    assert_eq!(
        made[0]["Project"]["ExpectedCustomerSpend"][0],
        json!({ "Amount": "10000", "CurrencyCode": "USD", "Frequency": "Monthly", "TargetCompany": "AWS" })
    );
    edit_deal(&http, &sb, &id, json!({ "amount": "8800" })).await;
    let o = eventually(
        "the converted amount on the opportunity",
        &service,
        || async {
            let o = opportunity(&http, &sb, &opportunity_id).await?;
            (o["Project"]["ExpectedCustomerSpend"][0]["Amount"] == "11000").then_some(o)
        },
    )
    .await;
    assert_eq!(
        o["Project"]["ExpectedCustomerSpend"][0]["CurrencyCode"],
        "USD"
    );
    assert!(updates(&sb, 400).is_empty() && creates(&sb, 400).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_in_a_currency_aws_does_not_take_sends_the_rest_and_not_the_amount() {
    let (sb, _dir, service, config) = start(|_| {}, "worker:\n  coalesce: 100ms\n").await;
    let http = reqwest::Client::new();
    // The demo's first deal: its opportunity holds 12500 USD at Prospect.
    let (deal_id, opportunity_id) = ("40000000001", "O5000001");
    edit_deal(&http, &sb, deal_id, json!({ "deal_currency_code": "GBP" })).await;
    let note = eventually("the currency note", &service, || async {
        let n = notes_on(&http, &sb, deal_id).await;
        n.into_iter()
            .find(|n| n.contains("Currency GBP is not accepted"))
    })
    .await;
    assert!(
        note.contains("the currency and the amount were not synced"),
        "{note}"
    );
    edit_deal(
        &http,
        &sb,
        deal_id,
        json!({ "amount": "200000", "dealstage": "qualifiedtobuy" }),
    )
    .await;
    let o = eventually("the stage on the opportunity", &service, || async {
        let o = opportunity(&http, &sb, opportunity_id).await?;
        (o["LifeCycle"]["Stage"] == "Qualified").then_some(o)
    })
    .await;
    // The pounds were not sent as dollars.
    assert_eq!(
        o["Project"]["ExpectedCustomerSpend"][0],
        json!({ "Amount": "12500", "CurrencyCode": "USD", "Frequency": "Monthly", "TargetCompany": "AWS" })
    );
    drained(&http, &service, 0).await;
    let status = deal(&http, &sb, deal_id).await["properties"]["aws_sync_status"].clone();
    assert_eq!(
        status,
        "synced; not sent: Currency (GBP is not one of USD, EUR); \
         Estimated AWS Monthly Recurring Revenue (its currency is not sent)"
    );
    told_once_and_nothing_refused(&http, &sb, &config, deal_id, "Currency GBP").await;
}

/// The deal got one note naming `about`, AWS refused no update, and nothing about
/// the deal is dead-lettered.
async fn told_once_and_nothing_refused(
    http: &reqwest::Client,
    sb: &Sandbox,
    config: &std::path::Path,
    deal_id: &str,
    about: &str,
) {
    let told = notes_on(http, sb, deal_id)
        .await
        .into_iter()
        .filter(|n| n.contains(about))
        .count();
    assert_eq!(told, 1);
    assert!(updates(sb, 400).is_empty(), "{:?}", updates(sb, 400));
    assert!(!dlq(config, &["list"]).1.contains(deal_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_date_in_the_past_is_not_sent_and_later_edits_still_sync() {
    let (sb, _dir, service, config) = start(|_| {}, "worker:\n  coalesce: 100ms\n").await;
    let http = reqwest::Client::new();
    let (deal_id, opportunity_id) = ("40000000001", "O5000001");
    edit_deal(
        &http,
        &sb,
        deal_id,
        json!({ "closedate": "2024-01-15T00:00:00Z" }),
    )
    .await;
    let note = eventually("the close date note", &service, || async {
        let n = notes_on(&http, &sb, deal_id).await;
        n.into_iter().find(|n| n.contains("close date"))
    })
    .await;
    assert!(note.contains("2024-01-15 is in the past"), "{note}");
    // The next edit syncs; the past date stays unsent, and the deal says why.
    edit_deal(&http, &sb, deal_id, json!({ "amount": "175000" })).await;
    let o = eventually("the amount on the opportunity", &service, || async {
        let o = opportunity(&http, &sb, opportunity_id).await?;
        (o["Project"]["ExpectedCustomerSpend"][0]["Amount"] == "175000").then_some(o)
    })
    .await;
    assert_eq!(o["LifeCycle"]["TargetCloseDate"], "2030-06-30");
    drained(&http, &service, 0).await;
    assert_eq!(
        deal(&http, &sb, deal_id).await["properties"]["aws_sync_status"],
        "synced; not sent: Target Close Date (2024-01-15 is in the past; AWS takes no target close date before today)"
    );
    told_once_and_nothing_refused(&http, &sb, &config, deal_id, "close date").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deal_closed_won_with_a_past_close_date_still_launches() {
    let (sb, _dir, service, config) = start(|_| {}, "worker:\n  coalesce: 100ms\n").await;
    let http = reqwest::Client::new();
    let (deal_id, opportunity_id) = ("40000000001", "O5000001");
    edit_deal(
        &http,
        &sb,
        deal_id,
        json!({ "dealstage": "closedwon", "closedate": "2024-01-15T00:00:00Z" }),
    )
    .await;
    let o = eventually("the opportunity launched", &service, || async {
        let o = opportunity(&http, &sb, opportunity_id).await?;
        (o["LifeCycle"]["Stage"] == "Launched").then_some(o)
    })
    .await;
    assert_eq!(o["LifeCycle"]["TargetCloseDate"], "2030-06-30");
    drained(&http, &service, 0).await;
    let status = deal(&http, &sb, deal_id).await["properties"]["aws_sync_status"].clone();
    assert!(
        status
            .as_str()
            .is_some_and(|s| s.starts_with("synced; not sent: Target Close Date (2024-01-15")),
        "{status}"
    );
    assert!(updates(&sb, 400).is_empty(), "{:?}", updates(&sb, 400));
    assert!(!dlq(&config, &["list"]).1.contains(deal_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_to_a_new_opportunity_is_retried_after_hubspot_fails() {
    let (sb, _dir, service, config) = start(|_| {}, "worker:\n  coalesce: 100ms\n").await;
    let http = reqwest::Client::new();
    let company = create_company(&http, &sb, acme("02110")).await;
    // Writing the new opportunity's id back to the deal fails twice.
    inject(
        &http,
        &sb,
        json!({ "service": "hubspot", "operation": "PATCH /crm/v3/objects/deals/", "count": 2, "status": 500 }),
    )
    .await;
    let id = new_deal(&http, &sb, &company, "Acme order system").await;
    let opportunity_id = linked(&http, &sb, &service, &id).await;
    drained(&http, &service, 0).await;
    // The retries finished the follow-ups; the opportunity was created once.
    assert_eq!(creates(&sb, 200).len(), 1);
    assert_eq!(
        creates(&sb, 200)[0]["PartnerOpportunityIdentifier"],
        id.as_str()
    );
    let patches: Vec<u16> = sb
        .journal
        .calls()
        .iter()
        .filter(|c| c.operation == format!("PATCH /crm/v3/objects/deals/{id}"))
        .map(|c| c.status)
        .collect();
    assert_eq!(&patches[..3], [500, 500, 200], "{patches:?}");
    assert_eq!(
        deal(&http, &sb, &id).await["properties"]["aws_sync_status"],
        "created"
    );
    assert!(opportunity(&http, &sb, &opportunity_id).await.is_some());
    assert!(!dlq(&config, &["list"]).1.contains(&id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_retried_after_an_edit_finds_its_opportunity() {
    let (sb, _dir, service, config) = start(|_| {}, "worker:\n  coalesce: 100ms\n").await;
    let http = reqwest::Client::new();
    let company = create_company(&http, &sb, acme("02110")).await;
    // AWS creates the opportunity, but pcsync never hears the answer.
    inject(
        &http,
        &sb,
        json!({ "service": "partnercentral", "operation": "CreateOpportunity", "count": 3, "drop_after": true }),
    )
    .await;
    let id = new_deal(&http, &sb, &company, "Acme order system").await;
    eventually("the opportunity created", &service, || async {
        (!creates(&sb, 200).is_empty()).then_some(())
    })
    .await;
    // Meanwhile the rep edits the deal: the retried create carries another body
    // under the same ClientToken, which AWS refuses as a conflict.
    edit_deal(&http, &sb, &id, json!({ "amount": "12000" })).await;
    let opportunity_id = linked(&http, &sb, &service, &id).await;
    drained(&http, &service, 0).await;

    let all: Vec<Value> = opportunities(&http, &sb)
        .await
        .into_iter()
        .filter(|o| o["PartnerOpportunityIdentifier"] == id.as_str())
        .collect();
    assert_eq!(all.len(), 1, "one opportunity for the deal: {all:?}");
    assert_eq!(all[0]["Id"], opportunity_id.as_str());
    assert!(
        !creates(&sb, 409).is_empty(),
        "the edited body met the token's first body"
    );
    assert!(!dlq(&config, &["list"]).1.contains(&id));
    // The edit is not lost: once linked, the update sync brings it to the opportunity.
    let synced = eventually("the edited amount on the opportunity", &service, || async {
        let o = opportunity(&http, &sb, &opportunity_id).await?;
        (o["Project"]["ExpectedCustomerSpend"][0]["Amount"] == "12000").then_some(o)
    })
    .await;
    assert_eq!(synced["Id"], opportunity_id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_is_read_again_and_meets_the_review_that_began_meanwhile() {
    let (sb, _dir, service, config) = start(|_| {}, "worker:\n  coalesce: 100ms\n").await;
    let http = reqwest::Client::new();
    let (deal_id, opportunity_id) = ("40000000001", "O5000001");
    // The update waits long enough for AWS to take the opportunity into review.
    inject(
        &http,
        &sb,
        json!({ "service": "partnercentral", "operation": "UpdateOpportunity", "delay_ms": 1500 }),
    )
    .await;
    let reads = || {
        sb.journal
            .calls()
            .iter()
            .filter(|c| c.operation == "GetOpportunity")
            .count()
    };
    let before = reads();
    edit_deal(&http, &sb, deal_id, json!({ "closedate": "2031-06-30" })).await;
    // pcsync read the opportunity to plan, and writes with that read's version; AWS
    // starts its review before the delayed update arrives.
    eventually("pcsync to read the opportunity", &service, || async {
        (reads() > before).then_some(())
    })
    .await;
    http.post(format!(
        "{}/_sandbox/partnercentral/opportunities/{opportunity_id}/review",
        sb.partner_central_url
    ))
    .json(&json!({ "status": "Submitted" }))
    .send_ok()
    .await;
    // The stale update conflicts; planned again from a fresh read, the edit waits
    // for the review instead of failing.
    let rules = format!("{}/rules", service.url);
    let deferred = eventually("the edit deferred", &service, || async {
        let r = get(&http, &rules).await?;
        let d = r["deferred"].as_array()?.clone();
        (!d.is_empty()).then_some(d)
    })
    .await;
    assert!(
        deferred[0]["reason"].as_str().unwrap().contains("review"),
        "{deferred:?}"
    );
    assert_eq!(updates(&sb, 409).len(), 1);
    assert!(updates(&sb, 400).is_empty());
    let dead = dlq(&config, &["list"]).1;
    assert!(!dead.contains(deal_id), "{dead}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_is_sent_with_the_version_it_was_planned_on_after_one_read() {
    let (sb, _dir, service, _config) = start(|_| {}, "worker:\n  coalesce: 100ms\n").await;
    let http = reqwest::Client::new();
    let calls_about = |id: &str| {
        sb.journal
            .calls()
            .into_iter()
            .filter(|c| c.request["Identifier"] == id)
            .map(|c| (c.operation, c.request))
            .collect::<Vec<_>>()
    };
    let before = calls_about("O5000001").len();
    edit_deal(
        &http,
        &sb,
        "40000000001",
        json!({ "closedate": "2031-06-30" }),
    )
    .await;
    eventually("the update", &service, || async {
        (!updates(&sb, 200).is_empty()).then_some(())
    })
    .await;
    let calls = calls_about("O5000001");
    let since: Vec<&(String, Value)> = calls[before..].iter().collect();
    let update = since
        .iter()
        .position(|(op, _)| op == "UpdateOpportunity")
        .unwrap();
    let reads: Vec<&Value> = since[..update]
        .iter()
        .filter(|(op, _)| op == "GetOpportunity")
        .map(|(_, r)| r)
        .collect();
    assert_eq!(
        reads.len(),
        1,
        "one read to plan, none again to write: {since:?}"
    );
    let planned_on = sb.partner_central.with_store(|s| {
        s.opportunity("O5000001")
            .map(|o| o.record["LifeCycle"]["TargetCloseDate"].clone())
    });
    assert_eq!(planned_on, Some(json!("2031-06-30")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_submission_reaches_the_deal_with_aws_reason() {
    let (sb, _dir, service, _config) = start(
        |rules| {
            edit_pack(
                rules,
                "deal-creation.yaml",
                "submit_to_aws: false",
                "submit_to_aws: true",
            )
        },
        "worker:\n  coalesce: 100ms\n",
    )
    .await;
    let http = reqwest::Client::new();
    let company = create_company(&http, &sb, acme("02110")).await;
    // No solution is configured: AWS fails the submission task.
    let id = new_deal(&http, &sb, &company, "Acme order system").await;
    linked(&http, &sb, &service, &id).await;
    // The id is on the deal first; the task's end reaches it once AWS ends it.
    let status = status_when(&http, &sb, &service, &id, |s| s != "created").await;
    assert!(
        status.starts_with("created; submission failed: RelatedEntityIdentifiers.Solutions"),
        "{status}"
    );
    let notes = eventually("the submission note", &service, || async {
        let n = notes_on(&http, &sb, &id).await;
        (!n.is_empty()).then_some(n)
    })
    .await;
    assert!(
        notes[0].contains("AWS did not accept the submission")
            && notes[0].contains("OpportunityValidationFailed"),
        "{notes:?}"
    );
    let polls = sb
        .journal
        .calls()
        .iter()
        .filter(|c| c.operation == "ListEngagementFromOpportunityTasks")
        .count();
    assert!(polls >= 1, "pcsync followed the task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_locked_and_migrating_answers_are_retried() {
    let (sb, _dir, service, _config) = start(|_| {}, "worker:\n  coalesce: 100ms\n").await;
    let http = reqwest::Client::new();
    for status in [423, 477] {
        inject(
            &http,
            &sb,
            json!({ "service": "hubspot", "operation": "POST /crm/v3/objects/notes", "status": status }),
        )
        .await;
    }
    edit_deal(
        &http,
        &sb,
        "40000000001",
        json!({ "closedate": "2031-09-30" }),
    )
    .await;
    let notes = eventually("the sync note", &service, || async {
        let n = notes_on(&http, &sb, "40000000001").await;
        (!n.is_empty()).then_some(n)
    })
    .await;
    assert!(
        notes[0].contains("Synced to AWS Partner Central"),
        "{notes:?}"
    );
    // Each refusal was retried, and the note made once. (The scheduled runs that
    // start within their jitter may note other deals' snapshots meanwhile, so only
    // the refusals are counted across deals.)
    let answers: Vec<u16> = sb
        .journal
        .calls()
        .iter()
        .filter(|c| c.operation == "POST /crm/v3/objects/notes")
        .map(|c| c.status)
        .collect();
    assert_eq!(answers[..2], [423, 477], "{answers:?}");
    assert!(answers[2..].iter().all(|s| *s == 201), "{answers:?}");
    drained(&http, &service, 0).await;
    let synced = notes_on(&http, &sb, "40000000001")
        .await
        .into_iter()
        .filter(|n| n.contains("Synced to AWS Partner Central"))
        .count();
    assert_eq!(synced, 1);
}

/// A rep's edit of deal 40000000001 while HubSpot's daily limit is spent: the edit
/// waits (deferred, not dead) until the limit's reset, the next UTC midnight, as
/// `/healthz` shows. Returns whether a time is at that reset (the test may straddle
/// a midnight).
async fn edit_waits_for_the_daily_reset(
    http: &reqwest::Client,
    sb: &Sandbox,
    service: &Service,
) -> impl Fn(jiff::Timestamp) -> bool {
    let before = jiff::Timestamp::now();
    edit_deal(
        http,
        sb,
        "40000000001",
        json!({ "closedate": "2031-09-30" }),
    )
    .await;
    let health = eventually("the wait on /healthz", service, || async {
        let h = get(http, &format!("{}/healthz", service.url)).await?;
        (h["inbox"]["deferred"] == 1).then_some(h)
    })
    .await;
    let after = jiff::Timestamp::now();
    assert_eq!(health["inbox"]["dead"], 0, "{health}");
    assert_eq!(health["hubspot_daily_limit"]["waits"], 1, "{health}");
    let paused: jiff::Timestamp = health["hubspot_daily_limit"]["paused_until"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let resets = [next_utc_midnight(before), next_utc_midnight(after)];
    let near_reset = move |t: jiff::Timestamp| {
        resets
            .iter()
            .any(|r| t >= *r && t < *r + jiff::SignedDuration::from_secs(60))
    };
    assert!(near_reset(paused), "{paused} {resets:?}");
    near_reset
}

/// The next midnight in UTC after `t`.
fn next_utc_midnight(t: jiff::Timestamp) -> jiff::Timestamp {
    let utc = jiff::tz::TimeZone::UTC;
    t.to_zoned_datetime(utc.clone())
        .date()
        .tomorrow()
        .unwrap()
        .to_zoned_datetime(utc)
        .unwrap()
        .timestamp()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspots_daily_limit_waits_for_its_reset_and_is_counted_on_healthz() {
    // The account's time zone is UTC (`hubspot.time_zone` unset): the limit resets
    // at UTC midnight.
    let (sb, _dir, service, _config) = start(|_| {}, "worker:\n  coalesce: 100ms\n").await;
    let http = reqwest::Client::new();
    drained(&http, &service, 0).await;
    inject(
        &http,
        &sb,
        json!({ "service": "hubspot", "operation": "POST /crm/v3/objects/notes",
                "status": 429, "policy_name": "DAILY" }),
    )
    .await;
    let near_reset = edit_waits_for_the_daily_reset(&http, &sb, &service).await;
    let rules = get(&http, &format!("{}/rules", service.url)).await.unwrap();
    let deferred = &rules["deferred"][0];
    assert_eq!(deferred["key"], "deal:40000000001", "{rules}");
    assert!(
        deferred["reason"]
            .as_str()
            .unwrap()
            .contains("You have reached your daily limit."),
        "{deferred}"
    );
    let recheck: jiff::Timestamp = deferred["recheck_at"].as_str().unwrap().parse().unwrap();
    assert!(near_reset(recheck), "{recheck}");
    let answers: Vec<u16> = sb
        .journal
        .calls()
        .iter()
        .filter(|c| c.operation == "POST /crm/v3/objects/notes")
        .map(|c| c.status)
        .collect();
    assert_eq!(answers, [429], "one try, then the wait");
}

/// deal-creation with the sandbox's default solution, submitting when `submit`.
fn with_solution(rules: &std::path::Path, submit: bool) {
    edit_pack(
        rules,
        "deal-creation.yaml",
        r#"solution_id: """#,
        r#"solution_id: "S-1234567""#,
    );
    if submit {
        edit_pack(
            rules,
            "deal-creation.yaml",
            "submit_to_aws: false",
            "submit_to_aws: true",
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_association_leaves_the_opportunity_on_its_deal_and_is_retried_alone() {
    let (sb, _dir, service, _config) = start(
        |rules| with_solution(rules, false),
        "worker:\n  coalesce: 100ms\n",
    )
    .await;
    let http = reqwest::Client::new();
    // AWS fails the association (each of the client's three tries): the batch is
    // retried, and the retry associates without creating again.
    inject(
        &http,
        &sb,
        json!({ "service": "partnercentral", "operation": "AssociateOpportunity", "count": 3, "status": 500 }),
    )
    .await;
    let company = create_company(&http, &sb, acme("02110")).await;
    let id = new_deal(&http, &sb, &company, "Acme order system").await;
    let opportunity = linked(&http, &sb, &service, &id).await;
    eventually("the association", &service, || async {
        (answered(&sb, "AssociateOpportunity", 200) == 1).then_some(())
    })
    .await;
    assert_eq!(answered(&sb, "AssociateOpportunity", 500), 3);
    assert_eq!(answered(&sb, "CreateOpportunity", 200), 1, "created once");
    let solutions = sb.partner_central.with_store(|s| {
        s.opportunity(&opportunity)
            .map(|o| o.record["RelatedEntityIdentifiers"]["Solutions"].clone())
    });
    assert_eq!(solutions, Some(json!(["S-1234567"])));
    let status = status_when(&http, &sb, &service, &id, |s| s == "created").await;
    assert_eq!(status, "created");

    // A refusal for good: the deal keeps its opportunity and says what failed; the
    // next edit neither creates nor fails again.
    inject(
        &http,
        &sb,
        json!({ "service": "partnercentral", "operation": "AssociateOpportunity", "status": 400 }),
    )
    .await;
    let other = new_deal(&http, &sb, &company, "Acme data lake").await;
    let second = linked(&http, &sb, &service, &other).await;
    assert_ne!(second, opportunity);
    let status = status_when(&http, &sb, &service, &other, |s| s.starts_with("error")).await;
    assert!(
        status.starts_with(
            "error: AssociateOpportunity S-1234567: Partner Central: ValidationException"
        ),
        "{status}"
    );
    assert_eq!(answered(&sb, "CreateOpportunity", 200), 2);
    edit_deal(
        &http,
        &sb,
        &other,
        json!({ "closedate": "2031-09-30T00:00:00Z" }),
    )
    .await;
    eventually("the edit's update", &service, || async {
        (answered(&sb, "UpdateOpportunity", 200) >= 1).then_some(())
    })
    .await;
    assert_eq!(
        answered(&sb, "CreateOpportunity", 200),
        2,
        "no third create"
    );
    let d = deal(&http, &sb, &other).await;
    assert_eq!(d["properties"]["aws_opportunity_id"], second.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_waits_for_qualified_and_starts_at_the_edit_that_qualifies_it() {
    let (sb, _dir, service, _config) = start(
        |rules| with_solution(rules, true),
        "worker:\n  coalesce: 100ms\n",
    )
    .await;
    let http = reqwest::Client::new();
    let company = create_company(&http, &sb, acme("02110")).await;
    let id = new_deal_at(
        &http,
        &sb,
        &company,
        "Acme order system",
        "appointmentscheduled",
    )
    .await;
    let opportunity = linked(&http, &sb, &service, &id).await;
    let status = status_when(&http, &sb, &service, &id, |s| s != "created").await;
    assert!(
        status.starts_with("created; submission waits: AWS takes a submission from stage Qualified on; the opportunity is at Prospect"),
        "{status}"
    );
    assert_eq!(answered(&sb, "AssociateOpportunity", 200), 1);
    assert_eq!(
        answered(&sb, "StartEngagementFromOpportunityTask", 200)
            + answered(&sb, "StartEngagementFromOpportunityTask", 400),
        0,
        "no submission at Prospect"
    );
    // The rep qualifies the deal: the stage moves on AWS, then it is submitted.
    edit_deal(&http, &sb, &id, json!({ "dealstage": "qualifiedtobuy" })).await;
    let status = status_when(&http, &sb, &service, &id, |s| s == "submitted").await;
    assert_eq!(status, "submitted");
    assert_eq!(answered(&sb, "StartEngagementFromOpportunityTask", 200), 1);
    assert_eq!(answered(&sb, "StartEngagementFromOpportunityTask", 400), 0);
    assert_eq!(answered(&sb, "CreateOpportunity", 200), 1);
    let review = sb.partner_central.with_store(|s| {
        s.opportunity(&opportunity)
            .map(|o| o.record["LifeCycle"].clone())
    });
    let review = review.unwrap();
    assert_eq!(review["Stage"], "Qualified", "{review}");
    assert_ne!(review["ReviewStatus"], "Pending Submission", "{review}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspots_enforced_daily_limit_waits_for_the_accounts_midnight() {
    // No injected fault: the sandbox's own daily limit is spent, as an account's is
    // when other apps share it (reference §5.1). The account's time zone is UTC on
    // both sides.
    let (sb, _dir, service, _config) = start(|_| {}, "worker:\n  coalesce: 100ms\n").await;
    let http = reqwest::Client::new();
    drained(&http, &service, 0).await;
    sb.hubspot.set_daily_limit(0);
    let _at_reset = edit_waits_for_the_daily_reset(&http, &sb, &service).await;
    let refused: Vec<String> = sb
        .journal
        .calls()
        .into_iter()
        .filter(|c| c.service == "hubspot" && c.status == 429)
        .map(|c| c.operation)
        .collect();
    assert_eq!(refused.len(), 1, "one try, then the wait: {refused:?}");
}

/// An opportunity AWS referred, with no expected spend, that a rep links from a new
/// deal (`Wonka on AWS`) by pasting its id; `partner_id` is its
/// PartnerOpportunityIdentifier, if any.
fn referred_opportunity(sb: &Sandbox, partner_id: Option<&str>, spend: bool) {
    let mut input = json!({
        "Catalog": "Sandbox", "ClientToken": "aws-referral-1", "Origin": "AWS Referral",
        "OpportunityType": "Net New Business",
        "Customer": {"Account": {"CompanyName": "Wonka Industries", "Industry": "Retail",
            "WebsiteUrl": "https://wonka.example",
            "Address": {"CountryCode": "US", "PostalCode": "60601", "StateOrRegion": "Illinois"}}},
        "Project": {"Title": "Wonka on AWS",
            "CustomerBusinessProblem": "Wonka wants to move its factory systems onto AWS"},
        "LifeCycle": {"Stage": "Prospect", "TargetCloseDate": "2030-06-30"},
    });
    if let Some(partner_id) = partner_id {
        input["PartnerOpportunityIdentifier"] = json!(partner_id);
    }
    if spend {
        input["Project"]["ExpectedCustomerSpend"] = json!([{"Amount": "3000",
            "CurrencyCode": "USD", "Frequency": "Monthly", "TargetCompany": "AWS"}]);
    }
    let created = sb
        .partner_central
        .with_store(|s| s.seed(&input))
        .expect("a referral as AWS holds it");
    let id = created["Id"].as_str().unwrap().to_string();
    sb.hubspot.with_store(|s| {
        s.insert(
            "deals",
            std::collections::BTreeMap::from([
                ("dealname".to_string(), "Wonka on AWS".to_string()),
                ("dealstage".to_string(), "appointmentscheduled".to_string()),
                ("amount".to_string(), "3000".to_string()),
                ("deal_currency_code".to_string(), "USD".to_string()),
                ("aws_opportunity_id".to_string(), id),
            ]),
        );
    });
}

/// The deal and opportunity ids of the Wonka referral.
async fn wonka(http: &reqwest::Client, sb: &Sandbox) -> (String, String) {
    let d = hubspot_objects(http, sb, "deals")
        .await
        .into_iter()
        .find(|d| d["properties"]["dealname"] == "Wonka on AWS")
        .unwrap();
    (
        d["id"].as_str().unwrap().to_string(),
        d["properties"]["aws_opportunity_id"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opportunity_with_no_spend_gets_a_whole_spend_item_on_update() {
    let (sb, _dir, service, _config) = start_with(
        |_| {},
        "worker:\n  coalesce: 100ms\n",
        |sb| referred_opportunity(sb, Some("crm-wonka"), false),
    )
    .await;
    let http = reqwest::Client::new();
    let (deal_id, opportunity_id) = wonka(&http, &sb).await;
    edit_deal(&http, &sb, &deal_id, json!({ "amount": "4000" })).await;
    let sent = eventually("the update of the referral", &service, || async {
        updates(&sb, 200)
            .into_iter()
            .find(|u| u["Identifier"] == opportunity_id.as_str())
    })
    .await;
    assert!(updates(&sb, 400).is_empty(), "{:?}", updates(&sb, 400));
    assert_eq!(
        sent["Project"]["ExpectedCustomerSpend"],
        json!([{"Amount": "4000", "CurrencyCode": "USD", "Frequency": "Monthly", "TargetCompany": "AWS"}])
    );
    // The CRM id the opportunity had is kept.
    assert_eq!(sent["PartnerOpportunityIdentifier"], "crm-wonka");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opportunity_pcsync_did_not_create_gets_its_partner_crm_id_on_the_first_update() {
    let (sb, _dir, service, _config) = start_with(
        |_| {},
        "worker:\n  coalesce: 100ms\n",
        |sb| referred_opportunity(sb, None, true),
    )
    .await;
    let http = reqwest::Client::new();
    let (deal_id, opportunity_id) = wonka(&http, &sb).await;
    edit_deal(&http, &sb, &deal_id, json!({ "amount": "4000" })).await;
    let o = eventually("the referral updated", &service, || async {
        let o = opportunity(&http, &sb, &opportunity_id).await?;
        (o["Project"]["ExpectedCustomerSpend"][0]["Amount"] == "4000").then_some(o)
    })
    .await;
    assert_eq!(o["PartnerOpportunityIdentifier"], deal_id.as_str());
    assert!(updates(&sb, 400).is_empty(), "{:?}", updates(&sb, 400));
    assert_eq!(
        deal(&http, &sb, &deal_id).await["properties"]["aws_sync_status"],
        "synced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consulting_partners_move_to_launched_waits_for_the_customers_aws_account() {
    let (sb, _dir, service, _config) = start_with(
        |rules| {
            edit_pack(
                rules,
                "deal-update-sync.yaml",
                "partner_type: isv",
                "partner_type: consulting",
            )
        },
        "worker:\n  coalesce: 100ms\n",
        |sb| {
            sb.partner_central.with_store(|s| {
                s.partner_type = pcsync_sandbox::partner_central::PartnerType::Consulting;
            })
        },
    )
    .await;
    let http = reqwest::Client::new();
    // The demo's first deal: its opportunity is Pending Submission at Prospect.
    let (deal_id, opportunity_id) = ("40000000001", "O5000001");
    edit_deal(&http, &sb, deal_id, json!({ "dealstage": "closedwon" })).await;
    let status = eventually("the waiting status", &service, || async {
        let d = deal(&http, &sb, deal_id).await;
        d["properties"]["aws_sync_status"]
            .as_str()
            .filter(|s| s.starts_with("waiting"))
            .map(str::to_string)
    })
    .await;
    assert_eq!(status, "waiting for: Customer AWS Account ID");
    assert!(updates(&sb, 400).is_empty(), "{:?}", updates(&sb, 400));
    let o = opportunity(&http, &sb, opportunity_id).await.unwrap();
    assert_eq!(o["LifeCycle"]["Stage"], "Prospect");
    eventually("the note saying what is missing", &service, || async {
        let notes = notes_on(&http, &sb, deal_id).await;
        notes
            .iter()
            .any(|n| n.contains("Not yet synced") && n.contains("Customer AWS Account ID"))
            .then_some(())
    })
    .await;

    // The rep fills in the customer's account: the move happens with it.
    edit_deal(
        &http,
        &sb,
        deal_id,
        json!({ "aws_customer_account_id": "123456789012" }),
    )
    .await;
    let o = eventually("the opportunity launched", &service, || async {
        let o = opportunity(&http, &sb, opportunity_id).await?;
        (o["LifeCycle"]["Stage"] == "Launched").then_some(o)
    })
    .await;
    assert_eq!(o["Customer"]["Account"]["AwsAccountId"], "123456789012");
    assert!(updates(&sb, 400).is_empty(), "{:?}", updates(&sb, 400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_industry_is_sent_only_when_the_industry_is_other() {
    let (sb, _dir, service, _config) = start(|_| {}, "worker:\n  coalesce: 100ms\n").await;
    let http = reqwest::Client::new();
    let retail = create_company(&http, &sb, acme("02110")).await;
    let retail_deal = new_deal(&http, &sb, &retail, "Acme order system").await;
    let mut vet = acme("02110");
    vet["name"] = json!("Acme Pet Clinics");
    vet["industry"] = json!("VETERINARY");
    let vet = create_company(&http, &sb, vet).await;
    let vet_deal = new_deal(&http, &sb, &vet, "Acme clinic records").await;
    linked(&http, &sb, &service, &retail_deal).await;
    linked(&http, &sb, &service, &vet_deal).await;
    let made = creates(&sb, 200);
    let body = |deal: &str| {
        made.iter()
            .find(|c| c["PartnerOpportunityIdentifier"] == deal)
            .unwrap()["Customer"]["Account"]
            .clone()
    };
    let retail = body(&retail_deal);
    assert_eq!(retail["Industry"], "Retail");
    assert!(retail.get("OtherIndustry").is_none(), "{retail}");
    let vet = body(&vet_deal);
    assert_eq!(vet["Industry"], "Other");
    assert_eq!(vet["OtherIndustry"], "veterinary");
}
