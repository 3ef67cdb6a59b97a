//! The sandbox's HubSpot as HubSpot's own Python client (`hubspot-api-client` 12)
//! sees it: every route pcsync's HubSpot client uses, driven by the official client
//! (`hubspot_official_client.py`), so the sandbox takes what HubSpot takes and answers
//! what HubSpot's models require. `.ci/run` installs the client; without it the test
//! fails and says how to install it.

use std::process::Command;

use pcsync_sandbox::{HubSpotOptions, Options, Quotas, Sandbox, demo};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn hubspots_python_client_is_answered_on_every_route_pcsync_uses() {
    let sb = Sandbox::on_loopback(Options {
        partner_central_quotas: Quotas::OFF,
        hubspot: HubSpotOptions::default(),
    })
    .await
    .unwrap();
    let (deal, opportunity) = demo::seed(&sb).into_iter().next().unwrap();
    let company = sb
        .hubspot
        .with_store(|s| s.primary_company.get(&deal).cloned())
        .unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/hubspot_official_client.py"
    );
    let args = [
        script.to_string(),
        sb.hubspot_url.clone(),
        HubSpotOptions::default().token,
        deal.clone(),
        company.clone(),
        opportunity.clone(),
    ];
    // The client blocks; the sandbox answers on this runtime's other threads.
    let output = tokio::task::spawn_blocking(move || Command::new("python3").args(args).output())
        .await
        .unwrap()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("No module named 'hubspot'"),
        "HubSpot's Python client is not installed: `python3 -m pip install 'hubspot-api-client==12.*'` (.ci/run does)"
    );
    assert!(
        output.status.success(),
        "the official client failed:\n{stderr}"
    );
    let out: Value = serde_json::from_slice(&output.stdout).unwrap();

    assert_eq!(
        out["get_deal"]["aws_opportunity_id"],
        opportunity.as_str(),
        "{out}"
    );
    assert_eq!(
        out["update_deal"]["dealname"],
        "Renamed by the official client"
    );
    assert_eq!(
        sb.hubspot
            .with_store(|s| s.deals[&deal].properties["dealname"].clone()),
        "Renamed by the official client"
    );
    // Searches find the deal by its link (the demo's deals were there before the
    // client came, so they are indexed).
    assert_eq!(out["find_deals"], serde_json::json!([deal]), "{out}");
    assert!(
        out["deals_with"]["ids"]
            .as_array()
            .unwrap()
            .contains(&Value::from(deal.as_str())),
        "{out}"
    );
    let (notes, tasks) = sb.hubspot.with_store(|s| {
        let d = &s.deals[&deal];
        (
            d.associations.get("notes").cloned().unwrap_or_default(),
            d.associations.get("tasks").cloned().unwrap_or_default(),
        )
    });
    assert_eq!(
        notes,
        vec![out["create_note"].as_str().unwrap().to_string()]
    );
    assert_eq!(
        tasks,
        vec![out["create_task"].as_str().unwrap().to_string()]
    );
    assert!(
        out["deal_property_names"]
            .as_array()
            .unwrap()
            .contains(&Value::from("aws_opportunity_id")),
        "{out}"
    );
    assert_eq!(out["create_deal_property"], "official_client_check");
    assert_eq!(out["deal_companies"][0]["id"], company.as_str(), "{out}");
    assert!(
        out["deal_companies"][0]["types"]
            .as_array()
            .unwrap()
            .contains(&Value::from(5)),
        "{out}"
    );
    assert!(out["company"]["name"].as_str().is_some(), "{out}");
    assert!(
        out["company_deals"]
            .as_array()
            .unwrap()
            .contains(&Value::from(deal.as_str())),
        "{out}"
    );
    assert_eq!(out["owners"], serde_json::json!(["77", "78"]), "{out}");
}
