//! `plan()` throughput for each shipped pack on realistic events, single thread.
//! Figures are recorded in BENCHMARKS.md; nothing here asserts a time.

use std::hint::black_box;
use std::path::PathBuf;
use std::str::FromStr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jiff::Timestamp;
use pcsync_engine::{Context, Event, load_rules, plan};
use serde_json::json;

fn rules() -> pcsync_engine::RuleSet {
    let loaded = load_rules(&[PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules")]);
    assert!(!loaded.has_errors(), "shipped packs load");
    loaded.value.expect("rule set")
}

fn context(value: serde_json::Value) -> Context {
    serde_json::from_value(value).expect("context")
}

fn bench(c: &mut Criterion) {
    let rules = rules();
    let now = Timestamp::from_str("2026-11-28T12:00:00Z").unwrap();
    let opportunity = json!({
        "Catalog": "Sandbox", "Id": "O1234567", "PartnerOpportunityIdentifier": "101",
        "LastModifiedDate": "2026-11-01T00:00:00Z",
        "LifeCycle": {"Stage": "Prospect", "ReviewStatus": "Approved", "TargetCloseDate": "2026-12-31"},
        "Project": {"Title": "Acme data platform",
            "CustomerBusinessProblem": "Acme needs to consolidate five data silos into one governed lake",
            "ExpectedCustomerSpend": [{"Amount": "10000", "CurrencyCode": "USD", "Frequency": "Monthly", "TargetCompany": "AWS"}]},
        "Customer": {"Account": {"CompanyName": "Acme", "Industry": "Software and Internet", "WebsiteUrl": "https://acme.example"}}
    });
    let deal = json!({"id": "101", "properties": {
        "dealname": "Acme data platform", "dealstage": "contractsent", "closedate": "2026-12-31T00:00:00.000Z",
        "amount": "10000", "description": "Acme needs to consolidate five data silos into one governed lake",
        "deal_currency_code": "USD", "aws_opportunity_id": "O1234567", "hubspot_owner_id": "77",
        "aws_synced_resources": "eng-abcdefghijklmn/OpportunitySummaryView/1"}});
    let summary = json!({"Catalog": "Sandbox", "RelatedOpportunityId": "O1234567",
        "Insights": {"EngagementScore": "High", "OpportunityQuality": {"Score": 82, "Trend": "Improving"}},
        "OpportunityTeam": [{"FirstName": "Sam", "LastName": "Seller", "Email": "sam@amazon.example", "BusinessTitle": "AWSSalesRep"}]});
    let snapshot = |rev: u32| {
        json!({"Catalog": "Sandbox", "EngagementId": "eng-abcdefghijklmn", "ResourceType": "Opportunity",
        "ResourceId": "O1234567", "ResourceSnapshotTemplateName": "OpportunitySummaryView", "Revision": rev,
        "CreatedAt": "2026-11-28T09:00:00Z", "CreatedBy": "aws",
        "Payload": {"OpportunitySummary": {"Lifecycle": {"Stage": "Qualified", "ReviewStatus": "Approved"}}}})
    };
    let opportunity_updated = json!({"version": "0", "id": "e-1", "source": "aws.partnercentral-selling",
        "detail-type": "Opportunity Updated", "time": "2026-11-28T12:00:00Z",
        "detail": {"catalog": "Sandbox", "opportunity": {"identifier": "O1234567"}}});

    let cases: Vec<(&str, Event, Context)> = vec![
        (
            "deal-update-sync",
            Event::from_value(&json!({"hubspot": {"subscriptionType": "deal.propertyChange", "objectId": 101,
                "propertyName": "dealstage", "propertyValue": "contractsent", "eventId": 1, "occurredAt": 1764331200000u64,
                "changeSource": "CRM_UI", "portalId": 62515, "appId": 54321}}), now).unwrap(),
            context(json!({"deal": deal, "opportunity": opportunity})),
        ),
        (
            "deal-creation",
            Event::from_value(&json!({"hubspot": {"subscriptionType": "deal.creation", "objectId": 101, "eventId": 2,
                "occurredAt": 1764331200000u64}}), now).unwrap(),
            context(json!({"deal": {"id": "101", "properties": {"dealname": "Acme", "dealstage": "qualifiedtobuy",
                "closedate": "2026-12-31T00:00:00.000Z", "amount": "10000", "deal_currency_code": "USD",
                "description": "Acme needs to consolidate five data silos into one governed lake"}},
                "company": {"id": "9001", "properties": {"name": "Acme Corporation", "domain": "acme.example",
                "industry": "COMPUTER_SOFTWARE", "country": "United States", "state": "MA", "city": "Boston",
                "zip": "02110", "address": "1 Federal St"}}})),
        ),
        (
            "smart-notifications",
            Event::from_value(&json!({"eventbridge": opportunity_updated}), now).unwrap(),
            context(json!({"deal": deal, "opportunity": opportunity, "aws_summary": summary,
                "previous": {"smart-notifications": {"watches": {"score": 60, "engagement": "Medium", "review": "Submitted", "seller": []}}}})),
        ),
        (
            "resource-snapshot-sync",
            Event::from_value(&json!({"schedule": "resource-snapshot-sync", "deal_id": "101"}), now).unwrap(),
            context(json!({"deal": deal, "opportunity": opportunity, "snapshots": [snapshot(1), snapshot(2)]})),
        ),
    ];

    let mut group = c.benchmark_group("plan");
    group.throughput(Throughput::Elements(1));
    for (name, event, ctx) in &cases {
        let produced = plan(event, ctx, &rules, now);
        // The named pack must do real work (other packs the event starts may skip).
        let own: Vec<_> = produced
            .effects
            .iter()
            .filter(|e| e.pack() == *name)
            .collect();
        assert!(
            own.iter()
                .any(|e| matches!(e, pcsync_engine::PlanEntry::Write(_)))
                && !own.iter().any(|e| matches!(
                    e,
                    pcsync_engine::PlanEntry::Decision(
                        pcsync_engine::Decision::Fail { .. } | pcsync_engine::Decision::Skip { .. }
                    )
                )),
            "{name}: the benchmark event must do real work: {:#?}",
            produced.effects
        );
        group.bench_function(*name, |b| {
            b.iter(|| plan(black_box(event), black_box(ctx), black_box(&rules), now))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
