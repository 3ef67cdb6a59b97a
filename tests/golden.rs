//! `pcsync test` end to end: every shipped golden case passes, a wrong expectation
//! fails with a diff naming the field, `--bless` rewrites a stale expectation so the
//! next run passes, and `--run` / `--junit` work.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn pcsync(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pcsync"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("the pcsync binary runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn every_shipped_and_language_golden_case_passes() {
    let out = pcsync(&root(), &["test", "rules/tests", "tests/language"]);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    let summary = report.lines().last().unwrap_or_default();
    assert!(summary.ends_with(" passed, 0 failed"), "{summary}");
    let passed: usize = summary.split(' ').next().unwrap().parse().unwrap();
    assert!(
        passed >= 50,
        "expected the full suite, ran {passed}: {report}"
    );
}

/// A scratch copy of the deal-update-sync pack and one of its cases.
fn scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rules/tests")).unwrap();
    std::fs::copy(
        root().join("rules/deal-update-sync.yaml"),
        dir.path().join("rules/deal-update-sync.yaml"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("rules/tests/case.yaml"),
        r#"# a comment that --bless must keep
cases:
  - name: stage change
    now: 2026-11-28T12:00:00Z
    event: {hubspot: {subscriptionType: deal.propertyChange, objectId: 101, propertyName: dealstage, propertyValue: closedwon, occurredAt: 0}}
    context:
      deal: {id: "101", properties: {dealstage: closedwon, aws_opportunity_id: O1}}
      opportunity: {Id: O1, PartnerOpportunityIdentifier: "101", LifeCycle: {Stage: Prospect, ReviewStatus: Approved}}
    expect:
      contains:
        - UpdateOpportunity: {changes: [{field: LifeCycle.Stage, old: Prospect, new: Committed}]}
  - name: untouched
    now: 2026-11-28T12:00:00Z
    event: {hubspot: {subscriptionType: deal.propertyChange, objectId: 101, propertyName: dealname, propertyValue: x, occurredAt: 0}}
    expect:
      effects: []
"#,
    )
    .unwrap();
    dir
}

#[test]
fn a_wrong_expectation_fails_with_a_diff_naming_the_field() {
    let dir = scratch();
    let out = pcsync(dir.path(), &["test"]);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("stage change ... FAILED"), "{report}");
    assert!(report.contains("untouched ... ok"), "{report}");
    assert!(
        report.contains("new: Committed"),
        "the expectation is shown: {report}"
    );
    assert!(
        report.contains("new: Launched"),
        "the actual value is shown: {report}"
    );
    assert!(report.contains("1 passed, 1 failed"), "{report}");
}

#[test]
fn bless_rewrites_a_stale_expectation_and_the_next_run_passes() {
    let dir = scratch();
    let file = dir.path().join("rules/tests/case.yaml");
    let out = pcsync(dir.path(), &["test", "--bless"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let blessed = std::fs::read_to_string(&file).unwrap();
    assert!(
        blessed.starts_with("# a comment that --bless must keep\n"),
        "{blessed}"
    );
    assert!(blessed.contains("new: Launched"), "{blessed}");
    assert!(!blessed.contains("new: Committed"), "{blessed}");
    assert!(blessed.contains("  - name: untouched\n"), "{blessed}");

    let again = pcsync(dir.path(), &["test"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(text(&again).contains("2 passed, 0 failed"));
}

#[test]
fn run_filters_cases_and_junit_reports_them() {
    let dir = scratch();
    let junit = dir.path().join("report.xml");
    let out = pcsync(
        dir.path(),
        &[
            "test",
            "--run",
            "untouched",
            "--junit",
            junit.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("1 passed, 0 failed"));
    let xml = std::fs::read_to_string(junit).unwrap();
    assert!(xml.contains("<testcase name=\"untouched\""), "{xml}");
    assert!(!xml.contains("stage change"), "{xml}");
}

#[test]
fn eval_prints_the_plan_and_trace_for_one_event() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("event.json"),
        r#"[{"objectId":101,"propertyName":"dealstage","propertyValue":"contractsent","changeSource":"CRM_UI","eventId":1,"subscriptionId":2,"portalId":3,"appId":4,"occurredAt":1764331200000,"subscriptionType":"deal.propertyChange","attemptNumber":0}]"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("context.yaml"),
        "deal: {id: \"101\", properties: {dealstage: contractsent, aws_opportunity_id: O1}}\nopportunity: {Id: O1, LifeCycle: {Stage: Prospect, ReviewStatus: Submitted}}\n",
    )
    .unwrap();
    let rules = root().join("rules");
    let out = pcsync(
        dir.path(),
        &[
            "eval",
            "--rules",
            rules.to_str().unwrap(),
            "--event",
            "event.json",
            "--context",
            "context.yaml",
            "--now",
            "2026-11-28T12:00:00Z",
            "--trace",
        ],
    );
    let report = text(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(report.contains("- Defer:"), "{report}");
    assert!(
        report.contains("while_status:\n    - Submitted"),
        "{report}"
    );
    assert!(report.contains("trace:"), "{report}");
    assert!(
        report.contains("decision: 'defer: AWS is reviewing"),
        "{report}"
    );
}

#[test]
fn eval_explains_a_malformed_event() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("event.yaml"),
        "{objectId: 1, subscriptionType: deal.propertyChange}\n",
    )
    .unwrap();
    let rules = root().join("rules");
    let out = pcsync(
        dir.path(),
        &[
            "eval",
            "--rules",
            rules.to_str().unwrap(),
            "--event",
            "event.yaml",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("`propertyName` is missing"),
        "{}",
        text(&out)
    );
}
