//! Conformance: the real `aws-sdk-partnercentralselling` client against the
//! sandbox over HTTP on 127.0.0.1, for each operation and each error path.

mod common;

use aws_sdk_partnercentralselling as pc;
use aws_sdk_partnercentralselling::error::ProvideErrorMetadata;
use common::{client, sandbox};
use pc::types::*;
use pcsync_sandbox::Quotas;

fn project(problem: &str) -> Project {
    Project::builder()
        .title("Acme data platform")
        .customer_business_problem(problem)
        .customer_use_case("Migration/Database Migration")
        .delivery_models(DeliveryModel::SaasOrPaas)
        .sales_activities(SalesActivity::InitializedDiscussionsWithCustomer)
        .expected_customer_spend(
            ExpectedCustomerSpend::builder()
                .amount("12500")
                .currency_code(CurrencyCode::Usd)
                .frequency(PaymentFrequency::Monthly)
                .target_company("Acme")
                .build()
                .unwrap(),
        )
        .build()
}

fn customer() -> Customer {
    Customer::builder()
        .account(
            Account::builder()
                .company_name("Acme")
                .industry(Industry::SoftwareInternet)
                .website_url("https://acme.example")
                .address(
                    Address::builder()
                        .country_code(CountryCode::Us)
                        .postal_code("02110")
                        .state_or_region("Massachusetts")
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .build()
}

async fn create(client: &pc::Client, token: &str) -> String {
    client
        .create_opportunity()
        .catalog("Sandbox")
        .client_token(token)
        .origin(OpportunityOrigin::PartnerReferral)
        .partner_opportunity_identifier("hubspot-101")
        .primary_needs_from_aws(PrimaryNeedFromAws::CoSellDealSupport)
        .marketing(Marketing::builder().source(MarketingSource::None).build())
        .customer(customer())
        .project(project(
            "Acme needs to consolidate five data silos into one lake",
        ))
        .life_cycle(
            LifeCycle::builder()
                .stage(Stage::Prospect)
                .target_close_date("2030-12-31")
                .build(),
        )
        .send()
        .await
        .expect("create succeeds")
        .id
}

/// Sends back what GetOpportunity returned, changed by `edit` (full replacement).
async fn update_with(
    client: &pc::Client,
    id: &str,
    edit: impl FnOnce(
        pc::types::builders::LifeCycleBuilder,
        pc::types::builders::ProjectBuilder,
    ) -> (LifeCycle, Project),
) -> Result<
    pc::operation::update_opportunity::UpdateOpportunityOutput,
    pc::error::SdkError<pc::operation::update_opportunity::UpdateOpportunityError>,
> {
    let got = client
        .get_opportunity()
        .catalog("Sandbox")
        .identifier(id)
        .send()
        .await
        .unwrap();
    let lc = got.life_cycle().cloned().unwrap();
    let pr = got.project().cloned().unwrap();
    let lc_builder = LifeCycle::builder()
        .set_stage(lc.stage().cloned())
        .set_target_close_date(lc.target_close_date().map(str::to_string));
    let pr_builder = Project::builder()
        .set_customer_use_case(pr.customer_use_case().map(str::to_string))
        .set_delivery_models(Some(pr.delivery_models().to_vec()))
        .set_sales_activities(Some(pr.sales_activities().to_vec()))
        .set_title(pr.title().map(str::to_string))
        .set_customer_business_problem(pr.customer_business_problem().map(str::to_string))
        .set_expected_customer_spend(Some(pr.expected_customer_spend().to_vec()));
    let (lc, pr) = edit(lc_builder, pr_builder);
    client
        .update_opportunity()
        .catalog("Sandbox")
        .identifier(id)
        .last_modified_date(got.last_modified_date)
        .set_customer(got.customer().cloned())
        .set_primary_needs_from_aws(Some(got.primary_needs_from_aws().to_vec()))
        .set_marketing(got.marketing().cloned())
        .partner_opportunity_identifier(got.partner_opportunity_identifier().unwrap_or_default())
        .life_cycle(lc)
        .project(pr)
        .send()
        .await
}

#[tokio::test]
async fn create_then_get_returns_the_record_pending_submission() {
    let sb = sandbox(Quotas::OFF).await;
    let c = client(&sb, 1).await;
    let id = create(&c, "t-1").await;
    assert!(
        id.starts_with('O') && id[1..].chars().all(|c| c.is_ascii_digit()),
        "{id}"
    );
    let got = c
        .get_opportunity()
        .catalog("Sandbox")
        .identifier(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(got.id, id);
    assert_eq!(
        got.life_cycle().unwrap().review_status(),
        Some(&ReviewStatus::PendingSubmission)
    );
    assert_eq!(got.life_cycle().unwrap().stage(), Some(&Stage::Prospect));
    // TargetCompany "only accepts the value AWS" and is coerced.
    assert_eq!(
        got.project().unwrap().expected_customer_spend()[0].target_company(),
        "AWS"
    );
    assert!(
        got.arn()
            .unwrap()
            .ends_with(&format!("catalog/Sandbox/opportunity/{id}"))
    );
}

#[tokio::test]
async fn client_token_makes_create_idempotent_and_rejects_a_different_body() {
    let sb = sandbox(Quotas::OFF).await;
    let c = client(&sb, 1).await;
    let first = create(&c, "hubspot-deal-101").await;
    let again = create(&c, "hubspot-deal-101").await;
    assert_eq!(first, again);
    let err = c
        .create_opportunity()
        .catalog("Sandbox")
        .client_token("hubspot-deal-101")
        .customer(customer())
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ConflictException"));
    assert_eq!(
        err.message(),
        Some("Conflicting client token submitted for a new request body.")
    );
    assert_eq!(
        sb.partner_central.with_store(|s| s.opportunities().count()),
        1
    );
}

#[tokio::test]
async fn update_replaces_the_whole_record_and_bumps_last_modified() {
    let sb = sandbox(Quotas::OFF).await;
    let c = client(&sb, 1).await;
    let id = create(&c, "t-2").await;
    let before = c
        .get_opportunity()
        .catalog("Sandbox")
        .identifier(&id)
        .send()
        .await
        .unwrap();
    // Without the partner's CRM id, which every update carries (matrix row
    // `partnerCrmUniqueIdentifier`), the update is refused and changes nothing.
    let err = c
        .update_opportunity()
        .catalog("Sandbox")
        .identifier(&id)
        .last_modified_date(before.last_modified_date)
        .project(project("A different business problem, long enough"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"));
    // Send only Project and the CRM id: Customer and LifeCycle become null.
    let out = c
        .update_opportunity()
        .catalog("Sandbox")
        .identifier(&id)
        .last_modified_date(before.last_modified_date)
        .partner_opportunity_identifier("crm-2")
        .project(project("A different business problem, long enough"))
        .send()
        .await
        .unwrap();
    assert!(out.last_modified_date > before.last_modified_date);
    let after = c
        .get_opportunity()
        .catalog("Sandbox")
        .identifier(&id)
        .send()
        .await
        .unwrap();
    assert!(after.customer().is_none(), "omitted members become null");
    assert_eq!(after.partner_opportunity_identifier(), Some("crm-2"));
    assert_eq!(
        after.project().unwrap().customer_business_problem(),
        Some("A different business problem, long enough")
    );
    assert_eq!(
        after.life_cycle().unwrap().review_status(),
        Some(&ReviewStatus::PendingSubmission),
        "AWS-owned status survives"
    );
    assert_eq!(after.last_modified_date, out.last_modified_date);
}

#[tokio::test]
async fn stale_last_modified_date_is_a_conflict_and_a_refetch_succeeds() {
    let sb = sandbox(Quotas::OFF).await;
    let c = client(&sb, 1).await;
    let id = create(&c, "t-3").await;
    let stale = c
        .get_opportunity()
        .catalog("Sandbox")
        .identifier(&id)
        .send()
        .await
        .unwrap()
        .last_modified_date;
    update_with(&c, &id, |l, p| {
        (l.stage(Stage::Qualified).build(), p.build())
    })
    .await
    .unwrap();
    let err = c
        .update_opportunity()
        .catalog("Sandbox")
        .identifier(&id)
        .last_modified_date(stale)
        .send()
        .await
        .unwrap_err();
    assert!(matches!(
        err.into_service_error(),
        pc::operation::update_opportunity::UpdateOpportunityError::ConflictException(_)
    ));
    update_with(&c, &id, |l, p| {
        (l.stage(Stage::TechnicalValidation).build(), p.build())
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn updates_are_blocked_while_submitted_or_in_review() {
    let sb = sandbox(Quotas::OFF).await;
    let c = client(&sb, 1).await;
    let id = create(&c, "t-4").await;
    // Any update, even one that changes nothing (reference §7 item 1: "all updates
    // are blocked"; item 5: Rejected is read-only).
    for (status, stage) in [
        ("Submitted", Stage::Committed),
        ("In review", Stage::Prospect),
        ("Rejected", Stage::Prospect),
    ] {
        sb.partner_central
            .with_store(|s| s.set_review(&id, status, None, None))
            .unwrap();
        let err = update_with(&c, &id, |l, p| (l.stage(stage).build(), p.build()))
            .await
            .unwrap_err();
        match err.into_service_error() {
            pc::operation::update_opportunity::UpdateOpportunityError::ValidationException(v) => {
                assert_eq!(
                    v.reason(),
                    &ValidationExceptionReason::BusinessValidationFailed,
                    "{status}"
                );
                assert_eq!(
                    v.error_list()[0].field_name(),
                    Some("LifeCycle.ReviewStatus"),
                    "{status}"
                );
                assert_eq!(
                    v.error_list()[0].code(),
                    &ValidationExceptionErrorCode::InvalidResourceState
                );
            }
            other => panic!("{status}: expected a ValidationException, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn action_required_allows_only_the_listed_fields() {
    let sb = sandbox(Quotas::OFF).await;
    let c = client(&sb, 1).await;
    let id = create(&c, "t-5").await;
    sb.partner_central
        .with_store(|s| {
            s.set_review(
                &id,
                "Action Required",
                Some("Add the website"),
                Some("Missing info"),
            )
        })
        .unwrap();
    update_with(&c, &id, |l, p| {
        (l.target_close_date("2031-01-31").build(), p.build())
    })
    .await
    .expect("close date is editable");
    let err = update_with(&c, &id, |l, p| {
        (l.stage(Stage::Committed).build(), p.build())
    })
    .await
    .unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"));
    let got = c
        .get_opportunity()
        .catalog("Sandbox")
        .identifier(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.life_cycle().unwrap().review_comments(),
        Some("Add the website"),
        "AWS comments survive updates"
    );
}

#[tokio::test]
async fn approved_locks_title_but_not_stage() {
    let sb = sandbox(Quotas::OFF).await;
    let c = client(&sb, 1).await;
    let id = create(&c, "t-6").await;
    sb.partner_central
        .with_store(|s| s.set_review(&id, "Approved", None, None))
        .unwrap();
    update_with(&c, &id, |l, p| {
        (l.stage(Stage::Committed).build(), p.build())
    })
    .await
    .expect("stage stays editable");
    let err = update_with(&c, &id, |l, p| (l.build(), p.title("A new title").build()))
        .await
        .unwrap_err();
    match err.into_service_error() {
        pc::operation::update_opportunity::UpdateOpportunityError::ValidationException(v) => {
            assert_eq!(v.error_list()[0].field_name(), Some("Project.Title"));
        }
        other => panic!("expected a ValidationException, got {other:?}"),
    }
}

#[tokio::test]
async fn sandbox_catalog_simulates_review_through_update() {
    let sb = sandbox(Quotas::OFF).await;
    let c = client(&sb, 1).await;
    let id = create(&c, "t-7").await;
    update_with(&c, &id, |l, p| {
        (l.review_status(ReviewStatus::Approved).build(), p.build())
    })
    .await
    .unwrap();
    let got = c
        .get_opportunity()
        .catalog("Sandbox")
        .identifier(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.life_cycle().unwrap().review_status(),
        Some(&ReviewStatus::Approved)
    );
}

#[tokio::test]
async fn validation_lists_every_bad_field() {
    let sb = sandbox(Quotas::OFF).await;
    let c = client(&sb, 1).await;
    let err = c
        .create_opportunity()
        .catalog("Sandbox")
        .client_token("t-8")
        .project(project("too short"))
        .life_cycle(
            LifeCycle::builder()
                .stage(Stage::from("Closed Won"))
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    match err.into_service_error() {
        pc::operation::create_opportunity::CreateOpportunityError::ValidationException(v) => {
            assert_eq!(
                v.reason(),
                &ValidationExceptionReason::RequestValidationFailed
            );
            let fields: Vec<(&str, &ValidationExceptionErrorCode)> = v
                .error_list()
                .iter()
                .map(|e| (e.field_name().unwrap_or_default(), e.code()))
                .collect();
            assert!(
                fields.contains(&(
                    "Project.CustomerBusinessProblem",
                    &ValidationExceptionErrorCode::InvalidStringFormat
                )),
                "{fields:?}"
            );
            assert!(
                fields.contains(&(
                    "LifeCycle.Stage",
                    &ValidationExceptionErrorCode::InvalidEnumValue
                )),
                "{fields:?}"
            );
        }
        other => panic!("expected a ValidationException, got {other:?}"),
    }
    // The SDK does not check required inputs; the service does.
    let err = c
        .get_opportunity()
        .identifier("O1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"));
}

#[tokio::test]
async fn unknown_opportunity_is_not_found() {
    let sb = sandbox(Quotas::OFF).await;
    let c = client(&sb, 1).await;
    let err = c
        .get_opportunity()
        .catalog("Sandbox")
        .identifier("O999")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(
        err.into_service_error(),
        pc::operation::get_opportunity::GetOpportunityError::ResourceNotFoundException(_)
    ));
}

#[tokio::test]
async fn writes_over_one_per_second_are_throttled_and_the_sdk_retries_them() {
    let sb = sandbox(Quotas {
        writes_per_second: Some(1),
        reads_per_second: Some(10),
        ..Quotas::OFF
    })
    .await;
    let no_retry = client(&sb, 1).await;
    create(&no_retry, "t-9").await;
    let err = no_retry
        .create_opportunity()
        .catalog("Sandbox")
        .client_token("t-10")
        .customer(customer())
        .send()
        .await
        .unwrap_err();
    assert!(matches!(
        err.into_service_error(),
        pc::operation::create_opportunity::CreateOpportunityError::ThrottlingException(_)
    ));
    // With the SDK's standard retries (exponential backoff with jitter) the write
    // goes through once the quota allows it.
    let retrying = client(&sb, 6).await;
    create(&retrying, "t-11").await;
}

#[tokio::test]
async fn list_pages_sorts_and_filters_by_modification_time() {
    let sb = sandbox(Quotas::OFF).await;
    let c = client(&sb, 1).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(create(&c, &format!("list-{i}")).await);
    }
    let items: Vec<OpportunitySummary> = c
        .list_opportunities()
        .catalog("Sandbox")
        .max_results(2)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    let listed: Vec<String> = items
        .iter()
        .filter_map(|s| s.id().map(str::to_string))
        .collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(
        listed, newest_first,
        "default sort is LastModifiedDate descending"
    );
    assert!(items[0].project().is_some() && items[0].life_cycle().is_some());

    let third = c
        .get_opportunity()
        .catalog("Sandbox")
        .identifier(&ids[2])
        .send()
        .await
        .unwrap()
        .last_modified_date;
    let since = c
        .list_opportunities()
        .catalog("Sandbox")
        .last_modified_date(
            LastModifiedDate::builder()
                .after_last_modified_date(third)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        since.opportunity_summaries().len(),
        3,
        "AfterLastModifiedDate is inclusive"
    );
}

#[tokio::test]
async fn solutions_list_filters_pages_and_associate_checks_existence() {
    let sb = sandbox(Quotas::OFF).await;
    sb.partner_central.with_store(|s| {
        for i in 1..=5 {
            let category = if i % 2 == 0 {
                "Consulting Service"
            } else {
                "Software Product"
            };
            s.add_solution(
                "Sandbox",
                &format!("S-000000{i}"),
                &format!("Solution {i}"),
                category,
                "Active",
            );
        }
        s.add_solution(
            "Sandbox",
            "S-0000009",
            "Retired",
            "Software Product",
            "Inactive",
        );
    });
    let c = client(&sb, 1).await;
    let active: Vec<SolutionBase> = c
        .list_solutions()
        .catalog("Sandbox")
        .status(SolutionStatus::Active)
        .max_results(2)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    assert_eq!(active.len(), 5);
    assert_eq!(
        active[0].id(),
        "S-0000005",
        "default sort: Identifier descending"
    );
    let consulting = c
        .list_solutions()
        .catalog("Sandbox")
        .category("Consulting Service")
        .send()
        .await
        .unwrap();
    assert_eq!(consulting.solution_summaries().len(), 2);

    let id = create(&c, "assoc").await;
    c.associate_opportunity()
        .catalog("Sandbox")
        .opportunity_identifier(&id)
        .related_entity_type(RelatedEntityType::Solutions)
        .related_entity_identifier("S-0000001")
        .send()
        .await
        .unwrap();
    let got = c
        .get_opportunity()
        .catalog("Sandbox")
        .identifier(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.related_entity_identifiers().unwrap().solutions(),
        ["S-0000001"]
    );
    let err = c
        .associate_opportunity()
        .catalog("Sandbox")
        .opportunity_identifier(&id)
        .related_entity_type(RelatedEntityType::Solutions)
        .related_entity_identifier("S-7777777")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ResourceNotFoundException"));
}

#[tokio::test]
async fn submission_creates_engagement_summary_and_snapshots() {
    let sb = sandbox(Quotas::OFF).await;
    let c = client(&sb, 1).await;
    let id = create(&c, "submit").await;
    let err = c
        .get_aws_opportunity_summary()
        .catalog("Sandbox")
        .related_opportunity_identifier(&id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some("ResourceNotFoundException"),
        "no AWS view before submission"
    );

    let submit = |token: &'static str| {
        c.start_engagement_from_opportunity_task()
            .catalog("Sandbox")
            .client_token(token)
            .identifier(&id)
            .aws_submission(
                AwsSubmission::builder()
                    .involvement_type(SalesInvolvementType::CoSell)
                    .build()
                    .unwrap(),
            )
            .send()
    };
    // A prospect is not submitted: "A lead and a prospect must be further matured to
    // a Qualified opportunity before submission" (model, `LifeCycle.Stage`).
    let err = submit("submit-prospect").await.unwrap_err();
    match err.into_service_error() {
        pc::operation::start_engagement_from_opportunity_task::StartEngagementFromOpportunityTaskError::ValidationException(v) => {
            assert_eq!(v.error_list()[0].field_name(), Some("LifeCycle.Stage"), "{v:?}");
        }
        other => panic!("expected a ValidationException, got {other:?}"),
    }
    update_with(&c, &id, |l, p| {
        (l.stage(Stage::Qualified).build(), p.build())
    })
    .await
    .unwrap();
    // The task is asynchronous; without a solution (matrix row solutionOffered) it
    // fails, with AWS's reason.
    let started = submit("submit-0").await.unwrap();
    assert_eq!(started.task_status(), Some(&TaskStatus::InProgress));
    let failed = common::settled_task(&c, started.task_id().unwrap()).await;
    assert_eq!(failed.task_status(), Some(&TaskStatus::Failed));
    assert_eq!(
        failed.reason_code(),
        Some(&ReasonCode::OpportunityValidationFailed)
    );
    assert!(
        failed.message().unwrap().contains("Solutions"),
        "{failed:?}"
    );
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

    // The same submission twice: the client token makes the second a replay.
    let started = submit("submit-1").await.unwrap();
    assert_eq!(started.task_status(), Some(&TaskStatus::InProgress));
    let task = common::settled_task(&c, started.task_id().unwrap()).await;
    assert_eq!(task.task_status(), Some(&TaskStatus::Complete));
    let engagement = task.engagement_id().unwrap().to_string();
    assert!(
        regex::Regex::new("^eng-[0-9a-z]{14}$")
            .unwrap()
            .is_match(&engagement),
        "{engagement}"
    );
    assert!(task.task_id().unwrap().starts_with("task-"));
    let again = submit("submit-1").await.unwrap();
    assert_eq!(
        again.engagement_id(),
        Some(engagement.as_str()),
        "the client token makes it idempotent"
    );

    let got = c
        .get_opportunity()
        .catalog("Sandbox")
        .identifier(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.life_cycle().unwrap().review_status(),
        Some(&ReviewStatus::Submitted)
    );
    let summary = c
        .get_aws_opportunity_summary()
        .catalog("Sandbox")
        .related_opportunity_identifier(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        summary.involvement_type(),
        Some(&SalesInvolvementType::CoSell)
    );
    assert_eq!(
        summary.insights().unwrap().engagement_score(),
        Some(&EngagementScore::Low)
    );

    let assoc = c
        .list_engagement_resource_associations()
        .catalog("Sandbox")
        .resource_identifier(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        assoc.engagement_resource_association_summaries()[0].engagement_id(),
        Some(engagement.as_str())
    );

    // AWS assigns a seller and scores it: a new snapshot revision each time.
    sb.partner_central
        .with_store(|s| {
            s.edit_summary(&id, |v| {
                v["OpportunityTeam"] = serde_json::json!([{"FirstName": "Sam", "LastName": "Seller", "Email": "sam@amazon.example", "BusinessTitle": "AWSSalesRep"}]);
                v["Insights"]["OpportunityQuality"] = serde_json::json!({"Score": 82, "Trend": "Improving"});
            })
        })
        .unwrap();
    let summary = c
        .get_aws_opportunity_summary()
        .catalog("Sandbox")
        .related_opportunity_identifier(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        summary.opportunity_team()[0].business_title(),
        Some(&AwsMemberBusinessTitle::AwsSalesRep)
    );
    assert_eq!(
        summary
            .insights()
            .unwrap()
            .opportunity_quality()
            .unwrap()
            .score(),
        Some(82)
    );

    let snapshots = c
        .list_resource_snapshots()
        .catalog("Sandbox")
        .engagement_identifier(&engagement)
        .resource_snapshot_template_identifier("OpportunitySummaryView")
        .send()
        .await
        .unwrap();
    let revisions: Vec<i32> = snapshots
        .resource_snapshot_summaries()
        .iter()
        .filter_map(|s| s.revision())
        .collect();
    assert_eq!(revisions, [1, 2]);
    let latest = c
        .get_resource_snapshot()
        .catalog("Sandbox")
        .engagement_identifier(&engagement)
        .resource_type(ResourceType::Opportunity)
        .resource_identifier(&id)
        .resource_snapshot_template_identifier("OpportunitySummaryView")
        .send()
        .await
        .unwrap();
    assert_eq!(latest.revision(), Some(2));
    match latest.payload() {
        Some(ResourceSnapshotPayload::OpportunitySummary(view)) => {
            assert_eq!(
                view.lifecycle().unwrap().review_status(),
                Some(&ReviewStatus::Submitted)
            );
        }
        other => panic!("expected an OpportunitySummary payload, got {other:?}"),
    }
    let first = c
        .get_resource_snapshot()
        .catalog("Sandbox")
        .engagement_identifier(&engagement)
        .resource_type(ResourceType::Opportunity)
        .resource_identifier(&id)
        .resource_snapshot_template_identifier("AwsOpportunitySummaryFullView")
        .revision(1)
        .send()
        .await
        .unwrap();
    assert!(matches!(
        first.payload(),
        Some(ResourceSnapshotPayload::AwsOpportunitySummaryFullView(_))
    ));

    // A submitted opportunity cannot be submitted again: that task fails.
    let again = submit("submit-2").await.unwrap();
    let failed = common::settled_task(&c, again.task_id().unwrap()).await;
    assert_eq!(failed.task_status(), Some(&TaskStatus::Failed));
    assert_eq!(
        failed.reason_code(),
        Some(&ReasonCode::OpportunitySubmissionFailed)
    );
}

#[tokio::test]
async fn a_submission_client_token_reused_with_another_body_is_a_conflict() {
    let sb = sandbox(Quotas::OFF).await;
    let c = client(&sb, 1).await;
    let id = create(&c, "resubmit").await;
    update_with(&c, &id, |l, p| {
        (l.stage(Stage::Qualified).build(), p.build())
    })
    .await
    .unwrap();
    let submit = |involvement: SalesInvolvementType| {
        c.start_engagement_from_opportunity_task()
            .catalog("Sandbox")
            .client_token("submit-once")
            .identifier(&id)
            .aws_submission(
                AwsSubmission::builder()
                    .involvement_type(involvement)
                    .build()
                    .unwrap(),
            )
            .send()
    };
    let first = submit(SalesInvolvementType::CoSell).await.unwrap();
    // The same request again is a replay of the same task…
    let again = submit(SalesInvolvementType::CoSell).await.unwrap();
    assert_eq!(again.task_id(), first.task_id());
    // …but the same token with another body is refused (the model declares
    // ConflictException and makes ClientToken an idempotency token).
    let err = submit(SalesInvolvementType::ForVisibilityOnly)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ConflictException"), "{err:?}");
    assert_eq!(
        err.message(),
        Some("Conflicting client token submitted for a new request body.")
    );
    let tasks = c
        .list_engagement_from_opportunity_tasks()
        .catalog("Sandbox")
        .opportunity_identifier(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(tasks.task_summaries().len(), 1);
}

#[tokio::test]
async fn only_an_active_solution_can_be_associated() {
    let sb = sandbox(Quotas::OFF).await;
    let c = client(&sb, 1).await;
    let id = create(&c, "inactive-solution").await;
    sb.partner_central.with_store(|s| {
        s.add_solution(
            "Sandbox",
            "S-0000008",
            "Retired tool",
            "Software Product",
            "Inactive",
        );
        s.add_solution(
            "Sandbox",
            "S-0000009",
            "Unpublished tool",
            "Software Product",
            "Draft",
        );
        s.add_solution(
            "Sandbox",
            "S-0000010",
            "Current tool",
            "Software Product",
            "Active",
        );
    });
    let associate = |solution: &'static str| {
        c.associate_opportunity()
            .catalog("Sandbox")
            .opportunity_identifier(&id)
            .related_entity_type(RelatedEntityType::Solutions)
            .related_entity_identifier(solution)
            .send()
    };
    for solution in ["S-0000008", "S-0000009"] {
        let err = associate(solution).await.unwrap_err();
        assert_eq!(err.code(), Some("ValidationException"), "{err:?}");
        let pc::operation::associate_opportunity::AssociateOpportunityError::ValidationException(v) =
            err.into_service_error()
        else {
            panic!("not a validation error");
        };
        assert_eq!(
            v.reason(),
            &ValidationExceptionReason::BusinessValidationFailed
        );
        assert_eq!(
            v.error_list()[0].field_name(),
            Some("RelatedEntityIdentifier")
        );
    }
    associate("S-0000010").await.unwrap();
    let got = c
        .get_opportunity()
        .catalog("Sandbox")
        .identifier(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.related_entity_identifiers().unwrap().solutions(),
        ["S-0000010".to_string()]
    );
}
