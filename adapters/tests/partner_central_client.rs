//! pcsync's Partner Central client (the real SDK, JSON bodies) against the sandbox:
//! the opportunity comes back in the API's own shape, and an update sends the whole
//! record, signed.

use pcsync_adapters::partner_central::PartnerCentralClient;
use pcsync_sandbox::{Options, Quotas, Sandbox, demo};

async fn setup() -> (Sandbox, PartnerCentralClient) {
    let sb = Sandbox::start(
        "127.0.0.1:0".parse().unwrap(),
        Options {
            partner_central_quotas: Quotas::OFF,
            ..Options::default()
        },
    )
    .await
    .unwrap();
    demo::seed(&sb);
    let conf = pcsync_adapters::aws_sdk_config(
        "us-east-1",
        Some(&sb.partner_central_url),
        Some(("AKIDEXAMPLE", "sandbox-secret")),
    )
    .await;
    let client = PartnerCentralClient::from_config(&conf, "Sandbox");
    (sb, client)
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
