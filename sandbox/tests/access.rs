//! Conformance: who may call and how often. SigV4 authentication (reference §1) and
//! the per-account quotas, per second and per rolling 24 hours (reference §8), with
//! the error shapes AWS answers.

mod common;

use common::{call, complete_opportunity, sandbox};
use pcsync_sandbox::{Quotas, Sandbox};
use serde_json::{Value, json};

const SIGNATURE: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

async fn with_auth(sb: &Sandbox, authorization: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(&sb.partner_central_url)
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amz-target", "AWSPartnerCentralSelling.ListSolutions")
        .header("x-amz-date", "20261201T000000Z")
        .body(r#"{"Catalog":"Sandbox"}"#);
    if let Some(a) = authorization {
        request = request.header("authorization", a);
    }
    let response = request.send().await.unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn requests_without_a_sigv4_authorization_are_forbidden() {
    let sb = sandbox(Quotas::OFF).await;
    let (status, body) = with_auth(&sb, None).await;
    assert_eq!(status, 403);
    assert_eq!(body["__type"], "MissingAuthenticationTokenException");
    for (authorization, why) in [
        ("Bearer sandbox-token", "not SigV4"),
        (
            "AWS4-HMAC-SHA256 Credential=AKID/20261201/eu-west-1/partnercentral-selling/aws4_request, SignedHeaders=host;x-amz-date, Signature=SIG",
            "another region",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKID/20261201/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=SIG",
            "another service",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKID/20261201/us-east-1/partnercentral-selling/aws4_request, SignedHeaders=host;x-amz-date, Signature=xyz",
            "no signature",
        ),
    ] {
        let authorization = authorization.replace("SIG", SIGNATURE);
        let (status, body) = with_auth(&sb, Some(&authorization)).await;
        assert_eq!(status, 403, "{why}: {body}");
        assert_eq!(body["__type"], "InvalidSignatureException", "{why}");
    }
    let signed = format!(
        "AWS4-HMAC-SHA256 Credential=AKID/20261201/us-east-1/partnercentral-selling/aws4_request, SignedHeaders=host;x-amz-date, Signature={SIGNATURE}"
    );
    assert_eq!(with_auth(&sb, Some(&signed)).await.0, 200);
}

#[tokio::test]
async fn the_daily_quotas_count_a_rolling_day_per_class_of_operation() {
    let sb = sandbox(Quotas {
        reads_per_day: Some(3),
        writes_per_day: Some(1),
        ..Quotas::OFF
    })
    .await;
    let (status, created) = call(&sb, "CreateOpportunity", complete_opportunity("t")).await;
    assert_eq!(status, 200, "{created}");
    let id = created["Id"].as_str().unwrap();
    let (status, body) = call(&sb, "CreateOpportunity", complete_opportunity("u")).await;
    assert_eq!(status, 429);
    assert_eq!(body["__type"], "ThrottlingException");
    assert!(
        body["Message"]
            .as_str()
            .unwrap()
            .contains("Daily write quota"),
        "{body}"
    );

    let get = json!({"Catalog": "Sandbox", "Identifier": id});
    for _ in 0..3 {
        assert_eq!(call(&sb, "GetOpportunity", get.clone()).await.0, 200);
    }
    let (status, body) = call(&sb, "GetOpportunity", get).await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body["Message"]
            .as_str()
            .unwrap()
            .contains("Daily read quota"),
        "{body}"
    );
    // Operations outside the quota table (reference §8: "Not documented") are not
    // counted against it.
    let (status, body) = call(
        &sb,
        "ListEngagementResourceAssociations",
        json!({"Catalog": "Sandbox", "ResourceType": "Opportunity", "ResourceIdentifier": id}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}
