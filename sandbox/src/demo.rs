//! Demo data for `pcsync sandbox` and `pcsync serve --sandbox`: solutions,
//! opportunities in several review states, and the HubSpot deals linked to them
//! (with the custom properties the shipped packs use), so every feature has
//! something to show.

use std::collections::BTreeMap;

use serde_json::json;

use crate::Sandbox;
use crate::hubspot::store::property;
use crate::partner_central::Store;

/// The custom deal properties the shipped packs use, as `pcsync setup hubspot`
/// creates them: name, label, type, field type.
pub const CUSTOM_PROPERTIES: &[(&str, &str, &str, &str)] = &[
    ("aws_opportunity_id", "AWS opportunity ID", "string", "text"),
    ("aws_sync_status", "AWS sync status", "string", "text"),
    ("aws_last_sync_date", "AWS last sync", "datetime", "date"),
    (
        "aws_synced_resources",
        "AWS synced resources",
        "string",
        "textarea",
    ),
    (
        "aws_last_resource_sync",
        "AWS last resource sync",
        "datetime",
        "date",
    ),
    (
        "aws_customer_account_id",
        "Customer AWS account ID",
        "string",
        "text",
    ),
];

/// Seeds the demo data. Returns `(deal id, opportunity id)` pairs.
pub fn seed(sandbox: &Sandbox) -> Vec<(String, String)> {
    let opportunities = seed_partner_central(sandbox);
    sandbox.hubspot.with_store(|s| {
        s.add_owner("77", "pat.owner@partner.example", "Pat", "Owner");
        s.add_owner("78", "riley.rep@partner.example", "Riley", "Rep");
        for (name, label, kind, field) in CUSTOM_PROPERTIES {
            s.deal_properties.insert(
                name.to_string(),
                property(name, label, kind, field, "dealinformation", false, false),
            );
        }
        let stages = [
            "appointmentscheduled",
            "qualifiedtobuy",
            "presentationscheduled",
            "qualifiedtobuy",
        ];
        let mut pairs = Vec::new();
        let mut names = Vec::new();
        for ((opportunity, company), stage) in opportunities.into_iter().zip(stages) {
            let props = BTreeMap::from([
                ("dealname".to_string(), format!("{company} on AWS")),
                ("dealstage".to_string(), stage.to_string()),
                ("pipeline".to_string(), "default".to_string()),
                ("amount".to_string(), "150000".to_string()),
                (
                    "closedate".to_string(),
                    "2030-06-30T00:00:00.000Z".to_string(),
                ),
                ("deal_currency_code".to_string(), "USD".to_string()),
                ("hubspot_owner_id".to_string(), "77".to_string()),
                (
                    "description".to_string(),
                    format!("{company} is modernising its platform on AWS with our help"),
                ),
                ("aws_opportunity_id".to_string(), opportunity.clone()),
            ]);
            let deal = s.insert("deals", props);
            names.push((deal.id.clone(), company));
            pairs.push((deal.id, opportunity));
        }
        // One deal not yet linked to Partner Central, for the creation flow.
        let deal = s.insert(
            "deals",
            BTreeMap::from([
                ("dealname".to_string(), "Vandelay data lake".to_string()),
                ("dealstage".to_string(), "qualifiedtobuy".to_string()),
                ("pipeline".to_string(), "default".to_string()),
                ("amount".to_string(), "90000".to_string()),
                ("hubspot_owner_id".to_string(), "78".to_string()),
            ]),
        );
        names.push((deal.id, "Vandelay".to_string()));
        // Companies after the deals, so the deals keep the first ids.
        for (deal, name) in names {
            let company = demo_company(s, &name);
            s.associate_company(&deal, &company, true);
        }
        pairs
    })
}

/// A company as a sales team keeps it in HubSpot (default company properties).
fn demo_company(s: &mut crate::hubspot::store::Store, name: &str) -> String {
    let props = BTreeMap::from([
        ("name".to_string(), format!("{name} Corporation")),
        (
            "domain".to_string(),
            format!("{}.example", name.to_lowercase()),
        ),
        ("industry".to_string(), "COMPUTER_SOFTWARE".to_string()),
        ("country".to_string(), "United States".to_string()),
        ("state".to_string(), "WA".to_string()),
        ("city".to_string(), "Seattle".to_string()),
        ("zip".to_string(), "98101".to_string()),
        ("address".to_string(), "410 Terry Ave N".to_string()),
    ]);
    s.insert("companies", props).id
}

fn seed_partner_central(sandbox: &Sandbox) -> Vec<(String, String)> {
    sandbox.partner_central.with_store(|s| {
        // "Use the default solution S-1234567 for testing" (testing-sandbox guide).
        s.add_solution(
            "Sandbox",
            "S-1234567",
            "Sandbox default solution",
            "Software Product",
            "Active",
        );
        for (id, name, category) in [
            (
                "S-0000001",
                "Acme Data Lake Accelerator",
                "Software Product",
            ),
            (
                "S-0000002",
                "Database Migration Factory",
                "Consulting Service",
            ),
            (
                "S-0000003",
                "Managed Kubernetes Operations",
                "Managed Service",
            ),
            (
                "S-0000004",
                "Analytics Quickstart Training",
                "Training Service",
            ),
            (
                "S-0000005",
                "Security Posture Assessment",
                "Professional Service",
            ),
        ] {
            s.add_solution("Sandbox", id, name, category, "Active");
        }
        s.add_solution(
            "Sandbox",
            "S-0000006",
            "Legacy Backup Appliance",
            "Hardware Product",
            "Inactive",
        );
        [
            (
                "demo-1",
                "Globex",
                "Globex wants to move its order system to serverless",
                "Prospect",
                None,
            ),
            (
                "demo-2",
                "Initech",
                "Initech needs a governed data lake for five business units",
                "Qualified",
                Some("Submitted"),
            ),
            (
                "demo-3",
                "Umbrella",
                "Umbrella is consolidating three data centres onto AWS",
                "Technical Validation",
                Some("Approved"),
            ),
            (
                "demo-4",
                "Hooli",
                "Hooli wants real-time analytics on clickstream data",
                "Qualified",
                Some("Action Required"),
            ),
        ]
        .into_iter()
        .map(|(deal, company, problem, stage, review)| {
            (
                opportunity(s, deal, company, problem, stage, review),
                company.to_string(),
            )
        })
        .collect()
    })
}

fn opportunity(
    s: &mut Store,
    deal: &str,
    company: &str,
    problem: &str,
    stage: &str,
    review: Option<&str>,
) -> String {
    let created = s
        .create(&json!({
            "Catalog": "Sandbox",
            "ClientToken": format!("demo-{deal}"),
            "Origin": "Partner Referral",
            "OpportunityType": "Net New Business",
            "PartnerOpportunityIdentifier": deal,
            "PrimaryNeedsFromAws": ["Co-Sell - Deal Support"],
            "Customer": {"Account": {"CompanyName": company, "Industry": "Software and Internet",
                "WebsiteUrl": format!("https://{}.example", company.to_lowercase()),
                "Address": {"CountryCode": "US", "PostalCode": "98101", "StateOrRegion": "Washington", "City": "Seattle"}}},
            "Project": {"Title": format!("{company} on AWS"), "CustomerBusinessProblem": problem,
                "CustomerUseCase": "Migration/Database Migration", "DeliveryModels": ["SaaS or PaaS"],
                "SalesActivities": ["Initialized discussions with customer"],
                "ExpectedCustomerSpend": [{"Amount": "12500", "CurrencyCode": "USD", "Frequency": "Monthly", "TargetCompany": "AWS"}]},
            "Marketing": {"Source": "None"},
            "LifeCycle": {"Stage": stage, "TargetCloseDate": "2030-06-30"},
        }))
        .expect("demo opportunities are valid");
    let id = created["Id"].as_str().unwrap_or_default().to_string();
    if let Some(status) = review {
        // "Use the default solution S-1234567 for testing" (testing-sandbox guide);
        // AWS requires a solution before it accepts a submission.
        s.associate(&json!({"Catalog": "Sandbox", "OpportunityIdentifier": id,
            "RelatedEntityType": "Solutions", "RelatedEntityIdentifier": "S-1234567"}))
            .expect("the default solution exists");
        s.start_engagement(&json!({"Catalog": "Sandbox", "ClientToken": format!("demo-submit-{deal}"), "Identifier": id,
            "AwsSubmission": {"InvolvementType": "Co-Sell"}}))
            .expect("demo submissions are valid");
        s.settle_tasks(i64::MAX);
        if status != "Submitted" {
            let (comments, reason) = match status {
                "Action Required" => (
                    Some("Please add the customer's address and website."),
                    Some("Incomplete customer information"),
                ),
                _ => (None, None),
            };
            s.set_review(&id, status, comments, reason)
                .expect("the opportunity exists");
        }
        if status == "Approved" {
            let _ = s.edit_summary(&id, |v| {
                v["OpportunityTeam"] = json!([{"FirstName": "Sam", "LastName": "Seller", "Email": "sam@amazon.example", "BusinessTitle": "AWSSalesRep"}]);
                v["Insights"] = json!({"EngagementScore": "Medium", "OpportunityQuality": {"Score": 64, "Trend": "Improving"}});
            });
        }
    }
    id
}
