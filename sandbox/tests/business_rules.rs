//! Conformance: the business rules of AWS's opportunity field matrix and developer
//! guide, each asserted with the error shape AWS answers (`ValidationException`,
//! `Reason`, `ErrorList` of `{FieldName, Message, Code}`). Requests go as plain AWS
//! JSON 1.0 so that each can carry exactly the members a rule is about; the SDK path
//! is covered in `partner_central.rs`.

mod common;

use common::{call, complete_opportunity, field_errors, sandbox};
use pcsync_sandbox::Quotas;
use serde_json::{Value, json};

fn pairs(errors: &[(String, String)]) -> Vec<(&str, &str)> {
    errors
        .iter()
        .map(|(f, c)| (f.as_str(), c.as_str()))
        .collect()
}

async fn create(sb: &pcsync_sandbox::Sandbox, body: Value) -> String {
    let (status, out) = call(sb, "CreateOpportunity", body).await;
    assert_eq!(status, 200, "{out}");
    out["Id"].as_str().unwrap().to_string()
}

async fn get(sb: &pcsync_sandbox::Sandbox, id: &str) -> Value {
    let (status, out) = call(
        sb,
        "GetOpportunity",
        json!({"Catalog": "Sandbox", "Identifier": id}),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    out
}

/// GetOpportunity's record turned into an UpdateOpportunity request the way AWS's own
/// sample does it (rename Id, drop what the request has no member for), then `edit`ed.
async fn update(
    sb: &pcsync_sandbox::Sandbox,
    id: &str,
    edit: impl FnOnce(&mut Value),
) -> (u16, Value) {
    let mut record = get(sb, id).await;
    let obj = record.as_object_mut().unwrap();
    for gone in [
        "Id",
        "Arn",
        "CreatedDate",
        "RelatedEntityIdentifiers",
        "OpportunityTeam",
    ] {
        obj.remove(gone);
    }
    obj.insert("Identifier".into(), json!(id));
    if let Some(lc) = record["LifeCycle"].as_object_mut() {
        for aws_owned in [
            "ReviewStatus",
            "ReviewComments",
            "ReviewStatusReason",
            "NextStepsHistory",
        ] {
            lc.remove(aws_owned);
        }
    }
    edit(&mut record);
    call(sb, "UpdateOpportunity", record).await
}

#[tokio::test]
async fn create_refuses_a_partner_opportunity_missing_the_matrix_mandatory_fields() {
    let sb = sandbox(Quotas::OFF).await;
    let (status, body) = call(
        &sb,
        "CreateOpportunity",
        json!({"Catalog": "Sandbox", "ClientToken": "t", "Origin": "Partner Referral",
               "Customer": {"Account": {"CompanyName": "Acme"}},
               "Project": {"Title": "Acme"}}),
    )
    .await;
    assert_eq!(status, 400);
    let errors = field_errors(&body, "BUSINESS_VALIDATION_FAILED");
    let got = pairs(&errors);
    for field in [
        "Customer.Account.Address.CountryCode",
        "Customer.Account.WebsiteUrl",
        "Customer.Account.Industry",
        "Customer.Account.Address.PostalCode",
        "LifeCycle.TargetCloseDate",
        "Project.DeliveryModels",
        "Marketing.Source",
        "PrimaryNeedsFromAws",
        "Project.SalesActivities",
        "Project.ExpectedCustomerSpend.Amount",
        "Project.CustomerBusinessProblem",
        "Project.CustomerUseCase",
    ] {
        assert!(
            got.contains(&(field, "REQUIRED_FIELD_MISSING")),
            "{field}: {got:?}"
        );
    }
    assert!(!got.iter().any(|(f, _)| *f == "Project.Title"), "{got:?}");
    assert!(
        !got.iter()
            .any(|(f, _)| *f == "Customer.Account.CompanyName"),
        "{got:?}"
    );
    assert_eq!(
        sb.partner_central.with_store(|s| s.opportunities().count()),
        0
    );
}

/// How a case changes a complete opportunity.
type Edit = Box<dyn Fn(&mut Value)>;

#[tokio::test]
async fn create_applies_the_conditional_rows() {
    let sb = sandbox(Quotas::OFF).await;
    let cases: Vec<(&str, Edit, (&str, &str))> = vec![
        (
            "industryOther",
            Box::new(|o| o["Customer"]["Account"]["Industry"] = json!("Other")),
            ("Customer.Account.OtherIndustry", "REQUIRED_FIELD_MISSING"),
        ),
        (
            "state: required in the US",
            Box::new(|o| {
                o["Customer"]["Account"]["Address"]
                    .as_object_mut()
                    .unwrap()
                    .remove("StateOrRegion");
            }),
            (
                "Customer.Account.Address.StateOrRegion",
                "REQUIRED_FIELD_MISSING",
            ),
        ),
        (
            "state: only in the US",
            Box::new(|o| {
                o["Customer"]["Account"]["Address"] =
                    json!({"CountryCode": "DE", "PostalCode": "10115", "StateOrRegion": "Berlin"})
            }),
            ("Customer.Account.Address.StateOrRegion", "INVALID_VALUE"),
        ),
        (
            "state: from the documented list",
            Box::new(|o| o["Customer"]["Account"]["Address"]["StateOrRegion"] = json!("Mass.")),
            ("Customer.Account.Address.StateOrRegion", "INVALID_VALUE"),
        ),
        (
            "postalCode: a country without one takes none",
            Box::new(|o| {
                o["Customer"]["Account"]["Address"] =
                    json!({"CountryCode": "BQ", "PostalCode": "0000"})
            }),
            ("Customer.Account.Address.PostalCode", "INVALID_VALUE"),
        ),
        (
            "isMarketingDevelopmentFunded",
            Box::new(|o| o["Marketing"] = json!({"Source": "Marketing Activity"})),
            ("Marketing.AwsFundingUsed", "REQUIRED_FIELD_MISSING"),
        ),
        (
            "IsOppFromMarketingActivity: No means no channels",
            Box::new(|o| o["Marketing"] = json!({"Source": "None", "Channels": ["Email"]})),
            ("Marketing.Channels", "INVALID_VALUE"),
        ),
        (
            "doesOppBelongToNatSec: only for Government",
            Box::new(|o| o["NationalSecurity"] = json!("Yes")),
            ("NationalSecurity", "INVALID_VALUE"),
        ),
        (
            "parentOppId",
            Box::new(|o| o["OpportunityType"] = json!("Flat Renewal")),
            (
                "Project.RelatedOpportunityIdentifier",
                "REQUIRED_FIELD_MISSING",
            ),
        ),
        (
            "competitiveTrackingOther",
            Box::new(|o| o["Project"]["CompetitorName"] = json!("*Other")),
            ("Project.OtherCompetitorNames", "REQUIRED_FIELD_MISSING"),
        ),
        (
            "targetCloseDate: not in the past",
            Box::new(|o| o["LifeCycle"]["TargetCloseDate"] = json!("2020-01-31")),
            ("LifeCycle.TargetCloseDate", "INVALID_VALUE"),
        ),
        (
            "expectedMonthlyAwsRevenue: greater than 0",
            Box::new(|o| o["Project"]["ExpectedCustomerSpend"][0]["Amount"] = json!("0")),
            (
                "Project.ExpectedCustomerSpend[0].Amount",
                "VALUE_OUT_OF_RANGE",
            ),
        ),
        (
            "expected spend currency: USD or EUR",
            Box::new(|o| o["Project"]["ExpectedCustomerSpend"][0]["CurrencyCode"] = json!("GBP")),
            (
                "Project.ExpectedCustomerSpend[0].CurrencyCode",
                "INVALID_VALUE",
            ),
        ),
        (
            "closedLostReason: Create No",
            Box::new(|o| o["LifeCycle"]["ClosedLostReason"] = json!("Price")),
            ("LifeCycle.ClosedLostReason", "ACTION_NOT_PERMITTED"),
        ),
        (
            "useCase: from the documented list",
            Box::new(|o| o["Project"]["CustomerUseCase"] = json!("Data Lakes")),
            ("Project.CustomerUseCase", "INVALID_VALUE"),
        ),
    ];
    for (i, (rule, edit, expected)) in cases.into_iter().enumerate() {
        let mut body = complete_opportunity(&format!("t-{i}"));
        edit(&mut body);
        let (status, out) = call(&sb, "CreateOpportunity", body).await;
        assert_eq!(status, 400, "{rule}: {out}");
        let errors = field_errors(&out, "BUSINESS_VALIDATION_FAILED");
        assert!(pairs(&errors).contains(&expected), "{rule}: {errors:?}");
    }
    // National security excuses the website and company name, and sets no state.
    let mut natsec = complete_opportunity("natsec");
    natsec["NationalSecurity"] = json!("Yes");
    natsec["Customer"]["Account"] = json!({"CompanyName": "", "Industry": "Government",
        "Address": {"CountryCode": "US", "PostalCode": "20001"}});
    create(&sb, natsec).await;
    // An AWS referral simulated in the Sandbox catalog is AWS's data, not checked.
    create(
        &sb,
        json!({"Catalog": "Sandbox", "ClientToken": "ref", "Origin": "AWS Referral"}),
    )
    .await;
}

#[tokio::test]
async fn members_unknown_to_the_model_are_refused() {
    let sb = sandbox(Quotas::OFF).await;
    let mut body = complete_opportunity("t");
    body["Customer"]["Account"]["Website"] = json!("https://acme.example");
    body["Arn"] = json!("arn:aws:partnercentral:us-east-1:1:catalog/Sandbox/opportunity/O1");
    let (status, out) = call(&sb, "CreateOpportunity", body).await;
    assert_eq!(status, 400);
    let errors = field_errors(&out, "REQUEST_VALIDATION_FAILED");
    assert_eq!(
        pairs(&errors),
        [
            ("Arn", "INVALID_VALUE"),
            ("Customer.Account.Website", "INVALID_VALUE")
        ]
    );
}

#[tokio::test]
async fn closing_lost_needs_a_reason_and_then_locks_the_opportunity() {
    let sb = sandbox(Quotas::OFF).await;
    let id = create(&sb, complete_opportunity("t")).await;
    let (status, out) = update(&sb, &id, |r| r["LifeCycle"]["Stage"] = json!("Closed Lost")).await;
    assert_eq!(status, 400);
    assert_eq!(
        pairs(&field_errors(&out, "BUSINESS_VALIDATION_FAILED")),
        [("LifeCycle.ClosedLostReason", "REQUIRED_FIELD_MISSING")]
    );
    let (status, out) = update(&sb, &id, |r| {
        r["LifeCycle"]["Stage"] = json!("Closed Lost");
        r["LifeCycle"]["ClosedLostReason"] = json!("Price");
    })
    .await;
    assert_eq!(status, 200, "{out}");
    let (status, out) = update(&sb, &id, |r| {
        r["LifeCycle"]["TargetCloseDate"] = json!("2031-01-31")
    })
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        pairs(&field_errors(&out, "BUSINESS_VALIDATION_FAILED")),
        [("LifeCycle.TargetCloseDate", "ACTION_NOT_PERMITTED")]
    );
}

#[tokio::test]
async fn after_launched_only_the_isv_columns_are_updatable() {
    let sb = sandbox(Quotas::OFF).await;
    let id = create(&sb, complete_opportunity("t")).await;
    let (status, out) = update(&sb, &id, |r| r["LifeCycle"]["Stage"] = json!("Launched")).await;
    assert_eq!(status, 200, "{out}");
    let (status, out) = update(&sb, &id, |r| {
        r["Project"]["DeliveryModels"] = json!(["SaaS or PaaS", "Professional Services"]);
    })
    .await;
    assert_eq!(
        status, 200,
        "row deliveryModel: Yes (ISV Partners Only): {out}"
    );
    let (status, out) = update(&sb, &id, |r| {
        r["LifeCycle"]["Stage"] = json!("Committed");
        r["Project"]["ExpectedCustomerSpend"][0]["Amount"] = json!("99");
    })
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        pairs(&field_errors(&out, "BUSINESS_VALIDATION_FAILED")),
        [
            ("LifeCycle.Stage", "ACTION_NOT_PERMITTED"),
            (
                "Project.ExpectedCustomerSpend[0].Amount",
                "ACTION_NOT_PERMITTED"
            )
        ]
    );
}

#[tokio::test]
async fn approved_locks_the_rows_not_updatable_until_launched() {
    let sb = sandbox(Quotas::OFF).await;
    let id = create(&sb, complete_opportunity("t")).await;
    sb.partner_central
        .with_store(|s| s.set_review(&id, "Approved", None, None))
        .unwrap();
    let (status, out) = update(&sb, &id, |r| {
        r["Customer"]["Account"]["CompanyName"] = json!("Acme Holdings");
        r["Customer"]["Account"]["Address"]["City"] = json!("Boston");
        r["LifeCycle"]["Stage"] = json!("Qualified");
    })
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        pairs(&field_errors(&out, "BUSINESS_VALIDATION_FAILED")),
        [("Customer.Account.CompanyName", "ACTION_NOT_PERMITTED")]
    );
    let (status, out) = update(&sb, &id, |r| {
        r["Customer"]["Account"]["Address"]["City"] = json!("Boston");
        r["LifeCycle"]["Stage"] = json!("Qualified");
    })
    .await;
    assert_eq!(status, 200, "{out}");
}

#[tokio::test]
async fn read_only_members_cannot_change_in_the_aws_catalog() {
    let sb = sandbox(Quotas::OFF).await;
    let mut body = complete_opportunity("t");
    body["Catalog"] = json!("AWS");
    let (status, out) = call(&sb, "CreateOpportunity", body).await;
    assert_eq!(status, 200, "{out}");
    let id = out["Id"].as_str().unwrap().to_string();
    let (_, record) = call(
        &sb,
        "GetOpportunity",
        json!({"Catalog": "AWS", "Identifier": id}),
    )
    .await;
    let request = |lifecycle: Value| {
        json!({"Catalog": "AWS", "Identifier": id, "LastModifiedDate": record["LastModifiedDate"],
               "PrimaryNeedsFromAws": record["PrimaryNeedsFromAws"], "Customer": record["Customer"],
               "Project": record["Project"], "Marketing": record["Marketing"],
               "PartnerOpportunityIdentifier": record["PartnerOpportunityIdentifier"],
               "LifeCycle": lifecycle})
    };
    for (member, value) in [
        ("ReviewStatus", json!("Approved")),
        ("ReviewComments", json!("looks good")),
        ("ReviewStatusReason", json!("none")),
        (
            "NextStepsHistory",
            json!([{"Value": "call", "Time": "2026-01-01T00:00:00Z"}]),
        ),
    ] {
        let mut lifecycle = record["LifeCycle"].clone();
        lifecycle[member] = value;
        let (status, out) = call(&sb, "UpdateOpportunity", request(lifecycle)).await;
        assert_eq!(status, 400, "{member}: {out}");
        assert_eq!(
            pairs(&field_errors(&out, "BUSINESS_VALIDATION_FAILED")),
            [(
                format!("LifeCycle.{member}").as_str(),
                "ACTION_NOT_PERMITTED"
            )]
        );
    }
    // The unchanged values may travel with the record, as AWS's own sample sends them.
    let (status, out) = call(
        &sb,
        "UpdateOpportunity",
        request(record["LifeCycle"].clone()),
    )
    .await;
    assert_eq!(status, 200, "{out}");
}

#[tokio::test]
async fn update_refuses_a_changed_close_date_in_the_past_and_a_currency_aws_does_not_take() {
    let sb = sandbox(Quotas::OFF).await;
    let id = create(&sb, complete_opportunity("t")).await;
    // Row `targetCloseDate`: "Date cannot be in the past", on update as on create.
    let (status, out) = update(&sb, &id, |r| {
        r["LifeCycle"]["TargetCloseDate"] = json!("2024-01-15");
        r["LifeCycle"]["Stage"] = json!("Launched");
    })
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        pairs(&field_errors(&out, "BUSINESS_VALIDATION_FAILED")),
        [("LifeCycle.TargetCloseDate", "INVALID_VALUE")]
    );
    // Reference §5.2: "Accepted values are USD and EUR", though the model lists 168.
    let (status, out) = update(&sb, &id, |r| {
        r["Project"]["ExpectedCustomerSpend"][0]["CurrencyCode"] = json!("GBP");
    })
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        pairs(&field_errors(&out, "BUSINESS_VALIDATION_FAILED")),
        [(
            "Project.ExpectedCustomerSpend[0].CurrencyCode",
            "INVALID_VALUE"
        )]
    );
    // The same move to Launched without the past date is taken.
    let (status, out) = update(&sb, &id, |r| r["LifeCycle"]["Stage"] = json!("Launched")).await;
    assert_eq!(status, 200, "{out}");
}

#[tokio::test]
async fn a_spend_item_is_refused_unless_whole() {
    let sb = sandbox(Quotas::OFF).await;
    let id = create(&sb, complete_opportunity("t")).await;
    let (status, out) = update(&sb, &id, |r| {
        r["Project"]["ExpectedCustomerSpend"] = json!([{"Amount": "900"}]);
    })
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        pairs(&field_errors(&out, "REQUEST_VALIDATION_FAILED")),
        [
            (
                "Project.ExpectedCustomerSpend[0].CurrencyCode",
                "REQUIRED_FIELD_MISSING"
            ),
            (
                "Project.ExpectedCustomerSpend[0].Frequency",
                "REQUIRED_FIELD_MISSING"
            ),
            (
                "Project.ExpectedCustomerSpend[0].TargetCompany",
                "REQUIRED_FIELD_MISSING"
            )
        ]
    );
    let mut partial = complete_opportunity("u");
    partial["Project"]["ExpectedCustomerSpend"] = json!([{"Amount": "900", "CurrencyCode": "USD"}]);
    let (status, out) = call(&sb, "CreateOpportunity", partial).await;
    assert_eq!(status, 400);
    assert_eq!(
        pairs(&field_errors(&out, "REQUEST_VALIDATION_FAILED")),
        [
            (
                "Project.ExpectedCustomerSpend[0].Frequency",
                "REQUIRED_FIELD_MISSING"
            ),
            (
                "Project.ExpectedCustomerSpend[0].TargetCompany",
                "REQUIRED_FIELD_MISSING"
            )
        ]
    );
}

#[tokio::test]
async fn every_update_carries_the_partner_crm_id() {
    let sb = sandbox(Quotas::OFF).await;
    let id = create(&sb, complete_opportunity("t")).await;
    let (status, out) = update(&sb, &id, |r| {
        r.as_object_mut()
            .unwrap()
            .remove("PartnerOpportunityIdentifier");
    })
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        pairs(&field_errors(&out, "BUSINESS_VALIDATION_FAILED")),
        [("PartnerOpportunityIdentifier", "REQUIRED_FIELD_MISSING")]
    );
    let (status, out) = update(&sb, &id, |_| {}).await;
    assert_eq!(status, 200, "{out}");
}

#[tokio::test]
async fn a_consulting_partner_launches_with_the_customers_aws_account() {
    let sb = sandbox(Quotas::OFF).await;
    sb.partner_central.with_store(|s| {
        s.partner_type = pcsync_sandbox::partner_central::PartnerType::Consulting;
    });
    let id = create(&sb, complete_opportunity("t")).await;
    let (status, out) = update(&sb, &id, |r| r["LifeCycle"]["Stage"] = json!("Launched")).await;
    assert_eq!(status, 400);
    assert_eq!(
        pairs(&field_errors(&out, "BUSINESS_VALIDATION_FAILED")),
        [("Customer.Account.AwsAccountId", "REQUIRED_FIELD_MISSING")]
    );
    let (status, out) = update(&sb, &id, |r| {
        r["LifeCycle"]["Stage"] = json!("Launched");
        r["Customer"]["Account"]["AwsAccountId"] = json!("123456789012");
    })
    .await;
    assert_eq!(status, 200, "{out}");
}
