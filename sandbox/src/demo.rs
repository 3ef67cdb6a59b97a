//! Demo data for `pcsync sandbox` and `pcsync serve --sandbox`: solutions and
//! opportunities in several review states, so every feature has something to show.

use serde_json::json;

use crate::partner_central::{PartnerCentral, Store};

/// Seeds the demo data. Returns the ids of the opportunities created.
pub fn seed(pc: &PartnerCentral) -> Vec<String> {
    pc.with_store(|s| {
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
        vec![
            opportunity(
                s,
                "demo-1",
                "Globex",
                "Globex wants to move its order system to serverless",
                "Prospect",
                None,
            ),
            opportunity(
                s,
                "demo-2",
                "Initech",
                "Initech needs a governed data lake for five business units",
                "Qualified",
                Some("Submitted"),
            ),
            opportunity(
                s,
                "demo-3",
                "Umbrella",
                "Umbrella is consolidating three data centres onto AWS",
                "Technical Validation",
                Some("Approved"),
            ),
            opportunity(
                s,
                "demo-4",
                "Hooli",
                "Hooli wants real-time analytics on clickstream data",
                "Qualified",
                Some("Action Required"),
            ),
        ]
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
                "WebsiteUrl": format!("https://{}.example", company.to_lowercase()), "Address": {"CountryCode": "US"}}},
            "Project": {"Title": format!("{company} on AWS"), "CustomerBusinessProblem": problem,
                "DeliveryModels": ["SaaS or PaaS"],
                "ExpectedCustomerSpend": [{"Amount": "12500", "CurrencyCode": "USD", "Frequency": "Monthly", "TargetCompany": "AWS"}]},
            "LifeCycle": {"Stage": stage, "TargetCloseDate": "2030-06-30"},
        }))
        .expect("demo opportunities are valid");
    let id = created["Id"].as_str().unwrap_or_default().to_string();
    if let Some(status) = review {
        s.start_engagement(&json!({"Catalog": "Sandbox", "ClientToken": format!("demo-submit-{deal}"), "Identifier": id,
            "AwsSubmission": {"InvolvementType": "Co-Sell"}}))
            .expect("demo submissions are valid");
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
