//! `pcsync sandbox` end to end: the real binary starts, prints its URLs, and its demo
//! data is visible through the sandbox's own API.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn sandbox_prints_its_url_and_serves_demo_data() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pcsync"))
        .args(["sandbox", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("pcsync runs");
    let stdout = child.stdout.take().unwrap();
    let _guard = Killed(child);
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().expect("a first line").unwrap();
    let url = first
        .strip_prefix("partner central: ")
        .expect("the URL line")
        .trim()
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let body: serde_json::Value =
        reqwest::get(format!("{url}/_sandbox/partnercentral/opportunities"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let mut statuses: Vec<String> = body["opportunities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["LifeCycle"]["ReviewStatus"].as_str().unwrap().to_string())
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        [
            "Action Required",
            "Approved",
            "Pending Submission",
            "Submitted"
        ]
    );

    // HubSpot's side: the demo deals, linked to the opportunities.
    let hubspot = lines.next().expect("the HubSpot line").unwrap();
    let hubspot_url = hubspot
        .strip_prefix("hubspot:")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let deals: serde_json::Value = reqwest::get(format!("{hubspot_url}/_sandbox/hubspot/deals"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let linked = deals["deals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["properties"]["aws_opportunity_id"].is_string())
        .count();
    assert_eq!(linked, 4);

    // The Partner Central API itself answers (AWS JSON 1.0), to SigV4-signed
    // requests only, as AWS does.
    let request = || {
        reqwest::Client::new()
            .post(&url)
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amz-target", "AWSPartnerCentralSelling.ListSolutions")
            .body(r#"{"Catalog":"Sandbox","Status":["Active"]}"#)
    };
    let unsigned = request().send().await.unwrap();
    assert_eq!(unsigned.status(), 403);
    let body: serde_json::Value = unsigned.json().await.unwrap();
    assert_eq!(body["__type"], "MissingAuthenticationTokenException");
    let listed: serde_json::Value = request()
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261201/us-east-1/partnercentral-selling/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-target, \
             Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        )
        .header("x-amz-date", "20261201T000000Z")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["SolutionSummaries"].as_array().unwrap().len(), 6);
}
