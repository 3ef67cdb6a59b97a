//! pcsync's HubSpot client against the sandbox's CRM v3 over HTTP.

use indexmap::IndexMap;
use pcsync_adapters::hubspot::client::{HubSpotClient, HubSpotError, PropertySpec};
use pcsync_sandbox::{HubSpotOptions, Options, Sandbox};

async fn sandbox(limit: Option<u32>) -> Sandbox {
    let hubspot = HubSpotOptions {
        rate_limit_per_10s: limit,
        ..HubSpotOptions::default()
    };
    Sandbox::demo_on_loopback(Options {
        hubspot,
        ..Options::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn reads_finds_and_updates_deals() {
    let sb = sandbox(None).await;
    let c = HubSpotClient::new(&sb.hubspot_url, "sandbox-token", 100);
    let linked = c
        .find_deals(
            "aws_opportunity_id",
            "O5000001",
            &["dealname".into(), "aws_opportunity_id".into()],
        )
        .await
        .unwrap();
    assert_eq!(linked.len(), 1);
    let id = linked[0].id.clone();
    assert_eq!(
        linked[0].properties["dealname"].as_deref(),
        Some("Globex on AWS")
    );

    let deal = c
        .get_deal(&id, &["dealstage".into(), "aws_sync_status".into()])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        deal.properties["dealstage"].as_deref(),
        Some("appointmentscheduled")
    );
    assert_eq!(deal.properties["aws_sync_status"], None);
    assert_eq!(c.get_deal("1", &[]).await.unwrap(), None);

    c.update_deal(
        &id,
        &IndexMap::from([("aws_sync_status".to_string(), "synced".to_string())]),
    )
    .await
    .unwrap();
    let deal = c
        .get_deal(&id, &["aws_sync_status".into()])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        deal.properties["aws_sync_status"].as_deref(),
        Some("synced")
    );

    let err = c
        .update_deal(
            &id,
            &IndexMap::from([("no_such_property".to_string(), "x".to_string())]),
        )
        .await
        .unwrap_err();
    match &err {
        HubSpotError::Status {
            status, category, ..
        } => assert_eq!(
            (*status, category.as_deref()),
            (400, Some("VALIDATION_ERROR"))
        ),
        other => panic!("{other:?}"),
    }
    assert!(!err.retryable());
}

#[tokio::test]
async fn notes_and_tasks_land_on_the_deal() {
    let sb = sandbox(None).await;
    let c = HubSpotClient::new(&sb.hubspot_url, "sandbox-token", 100);
    let id = c
        .find_deals("aws_opportunity_id", "O5000002", &[])
        .await
        .unwrap()[0]
        .id
        .clone();
    let note = c
        .create_note(
            &id,
            "🔄 Synced to AWS Partner Central",
            "2026-11-28T12:00:00Z",
        )
        .await
        .unwrap();
    let task = c
        .create_task(
            &id,
            "77",
            "✅ AWS Approved Opportunity",
            "Coordinate with the AWS seller.",
            "high",
            "2026-11-29T12:00:00Z",
        )
        .await
        .unwrap();
    let (notes, tasks) = sb
        .hubspot
        .with_store(|s| (s.notes.get(&note).cloned(), s.tasks.get(&task).cloned()));
    let (notes, tasks) = (notes.unwrap(), tasks.unwrap());
    assert_eq!(notes.associations["deals"], std::slice::from_ref(&id));
    assert_eq!(tasks.properties["hs_task_priority"], "HIGH");
    assert_eq!(tasks.properties["hubspot_owner_id"], "77");
    assert_eq!(tasks.associations["deals"], [id]);
}

#[tokio::test]
async fn property_creation_reports_what_already_existed() {
    let sb = sandbox(None).await;
    let c = HubSpotClient::new(&sb.hubspot_url, "sandbox-token", 100);
    let spec = PropertySpec {
        name: "aws_review_status".into(),
        label: "AWS review status".into(),
        kind: "string".into(),
        field_type: "text".into(),
        description: "".into(),
    };
    assert!(c.create_deal_property(&spec).await.unwrap());
    assert!(
        !c.create_deal_property(&spec).await.unwrap(),
        "the second time it exists"
    );
    assert!(
        c.deal_property_names()
            .await
            .unwrap()
            .contains(&"aws_review_status".to_string())
    );
}

#[tokio::test]
async fn a_wrong_token_is_not_retryable() {
    let sb = sandbox(None).await;
    let err = HubSpotClient::new(&sb.hubspot_url, "wrong", 100)
        .deal_property_names()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HubSpotError::Status { status: 401, .. }),
        "{err:?}"
    );
    assert!(!err.retryable());
}

#[tokio::test]
async fn every_linked_deal_is_listed_past_searchs_10000_results() {
    let sb = sandbox(None).await;
    let linked_before = sb.hubspot.with_store(|s| {
        s.deals
            .values()
            .filter(|d| d.value("aws_opportunity_id").is_some())
            .count()
    });
    // 10,050 more linked deals, and some that are not linked.
    let mut expected = sb.hubspot.with_store(|s| {
        for i in 0..10_100 {
            let mut properties = std::collections::BTreeMap::new();
            properties.insert("dealname".to_string(), format!("Deal {i}"));
            if i % 201 != 200 {
                properties.insert("aws_opportunity_id".to_string(), format!("O{:07}", i));
            }
            s.insert("deals", properties);
        }
        s.deals
            .values()
            .filter(|d| d.value("aws_opportunity_id").is_some())
            .map(|d| d.id.clone())
            .collect::<Vec<_>>()
    });
    assert_eq!(expected.len(), linked_before + 10_050);
    let c = HubSpotClient::new(&sb.hubspot_url, "sandbox-token", 1_000);
    let deals = c
        .deals_with("aws_opportunity_id", &["aws_opportunity_id".into()])
        .await
        .unwrap();
    let mut listed: Vec<String> = deals.iter().map(|d| d.id.clone()).collect();
    assert_eq!(listed.len(), expected.len(), "each once");
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected);
    // No query paged past what HubSpot allows (the sandbox answers that with a 400).
    assert!(
        sb.journal.calls().iter().all(|c| c.status != 400),
        "a search paged past 10,000 results"
    );
}

#[tokio::test]
async fn the_daily_limit_is_told_apart_and_waits_until_the_accounts_midnight() {
    let sb = sandbox(None).await;
    // The account's time zone: UTC-05:00 all year (a fixed offset needs no tz database).
    let tz = jiff::tz::offset(-5).to_time_zone();
    let c = HubSpotClient::new(&sb.hubspot_url, "sandbox-token", 100).with_time_zone(tz.clone());
    for policy in ["DAILY", "TEN_SECONDLY_ROLLING"] {
        sb.journal.inject(
            serde_json::from_value(serde_json::json!({"service": "hubspot",
                "operation": "GET /crm/v3/objects/deals", "status": 429, "policy_name": policy}))
            .unwrap(),
        );
    }
    let before = jiff::Timestamp::now();
    let daily = c.get_deal("40000000001", &[]).await.unwrap_err();
    let after = jiff::Timestamp::now();
    assert!(daily.is_daily_limit(), "{daily:?}");
    assert!(
        daily
            .to_string()
            .contains("You have reached your daily limit.")
    );
    let wait = daily.retry_after().unwrap();
    let ends = |from: jiff::Timestamp| from + jiff::SignedDuration::try_from(wait).unwrap();
    let midnights =
        [before, after].map(|t| pcsync_adapters::hubspot::client::next_midnight(t, &tz));
    assert!(
        midnights
            .iter()
            .any(|m| ends(before) >= *m && ends(before) <= *m + jiff::SignedDuration::from_secs(1)),
        "{wait:?} from {before} is not the account's midnight {midnights:?}"
    );
    // The 10-second limit is not the daily one: it is retried.
    let rolling = c.get_deal("40000000001", &[]).await.unwrap_err();
    assert!(
        !rolling.is_daily_limit() && rolling.retryable(),
        "{rolling:?}"
    );
}

#[test]
fn the_accounts_midnight_is_in_its_time_zone() {
    use pcsync_adapters::hubspot::client::{next_midnight, until_midnight};
    let tz = jiff::tz::offset(-5).to_time_zone();
    // 22:30 UTC is 17:30 at UTC-05:00: the limit resets at 05:00 UTC next day.
    let now: jiff::Timestamp = "2026-12-08T22:30:00Z".parse().unwrap();
    assert_eq!(
        next_midnight(now, &tz),
        "2026-12-09T05:00:00Z".parse::<jiff::Timestamp>().unwrap()
    );
    assert_eq!(
        until_midnight(now, &tz),
        std::time::Duration::from_secs(6 * 3600 + 30 * 60)
    );
    // A moment before midnight waits a whole second, never less than the reset.
    let late: jiff::Timestamp = "2026-12-09T04:59:59.5Z".parse().unwrap();
    assert_eq!(until_midnight(late, &tz), std::time::Duration::from_secs(1));
}
