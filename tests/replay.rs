//! `pcsync replay` as a RevOps user meets it: the service runs the shipped packs
//! against the sandbox through a scripted stretch of events and stops; replay then
//! plans the recorded runs again with unchanged rules (nothing changes), with a
//! lower score threshold (exactly the extra notifications), and with a stage-table
//! row removed (the stage update that would no longer happen, on its deal).
//! `--export` turns runs into golden cases that pass, and fail after that edit.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// `pcsync ARGS`: exit code, stdout, stderr.
fn pcsync(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pcsync"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `pcsync replay --format json` with `rules` over the service's record.
fn replay(rules: &Path, config: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "replay",
        "--rules",
        rules.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--since",
        "7d",
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    let (code, out, err) = pcsync(&args);
    assert_eq!(code, Some(0), "{err}\n{out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Until the inbox holds nothing pending or running, three looks in a row.
async fn settled(http: &reqwest::Client, service: &Service) {
    let health = format!("{}/healthz", service.url);
    let mut idle = 0;
    for _ in 0..200 {
        let h = get(http, &health).await.unwrap_or_default();
        if h["inbox"]["pending"] == 0 && h["inbox"]["running"] == 0 {
            idle += 1;
            if idle == 3 {
                return;
            }
        } else {
            idle = 0;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!("the inbox did not settle\n{}", service.stderr());
}

/// Copies the rules next to them as `name`, edited.
fn candidate(dir: &Path, name: &str, pack: &str, from: &str, to: &str) -> std::path::PathBuf {
    let rules = dir.join(name);
    copy_dir(&dir.join("rules"), &rules);
    edit_pack(&rules, pack, from, to);
    rules
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_shows_what_a_rule_edit_would_have_done_to_the_recorded_runs() {
    // Notifications by events only, after a baseline at start (no changed-opportunity
    // runs or later polls to double the runs); AWS had scored O5000002 40.
    let (sb, dir, mut service, config) =
        start_with(notifications_after_one_sweep, "", o5000002_scored_40).await;
    let http = reqwest::Client::new();
    drained(&http, &service, 4).await;
    settled(&http, &service).await;
    // The scripted events: AWS rescores by 12 (under the threshold of 15), and a rep
    // qualifies a deal.
    http.post(format!(
        "{}/_sandbox/partnercentral/opportunities/O5000002/insights",
        sb.partner_central_url
    ))
    .json(&json!({ "quality_score": 52 }))
    .send_ok()
    .await;
    qualify_demo_deal(&http, &sb).await;
    demo_opportunity_qualified(&http, &sb, &service).await;
    settled(&http, &service).await;
    assert!(hubspot_objects(&http, &sb, "tasks").await.is_empty());
    // SIGTERM: the last runs are written before it exits.
    let killed = Command::new("kill")
        .args(["-TERM", &service.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(service.child.wait().unwrap().success());
    let dir = dir.path();

    // The rules it ran with: nothing changes.
    let same = replay(&dir.join("rules"), &config, &[]);
    let summary = &same["summary"];
    assert_eq!(summary["changed"], 0, "{same:#}");
    assert!(summary["replayed"].as_u64().unwrap() >= 6, "{same:#}");
    assert_eq!(
        summary["notifications_before"],
        summary["notifications_after"]
    );

    // A threshold of 10: the rescore's notifications, and nothing else.
    let lower = candidate(
        dir,
        "rules-score-10",
        "smart-notifications.yaml",
        "score_change: 15",
        "score_change: 10",
    );
    let found = replay(&lower, &config, &[]);
    let runs = found["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{found:#}");
    assert_eq!(runs[0]["pack"], "smart-notifications");
    assert_eq!(runs[0]["opportunity"], "O5000002");
    let mut added: Vec<&str> = runs[0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["change"] == "added")
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    added.sort();
    assert_eq!(added, ["CreateNote", "CreateTask", "Publish"], "{found:#}");
    let task = runs[0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "CreateTask")
        .unwrap();
    assert!(task["label"].as_str().unwrap().contains("(+12)"), "{task}");
    let summary = &found["summary"];
    assert_eq!(
        summary["notifications_after"].as_u64().unwrap(),
        summary["notifications_before"].as_u64().unwrap() + 3
    );
    assert_eq!(summary["new_failures"], 0);
    let (code, out, err) = pcsync(&[
        "replay",
        "--rules",
        lower.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("  + CreateTask deal 40000000002: "), "{out}");
    eprintln!("{out}");

    // The `qualifiedtobuy` row gone from the stage table: the deal's stage update
    // would not happen.
    let without = candidate(
        dir,
        "rules-no-qualified",
        "deal-update-sync.yaml",
        "      qualifiedtobuy: Qualified\n",
        "",
    );
    let found = replay(&without, &config, &[]);
    let runs = found["runs"].as_array().unwrap();
    let staged: Vec<&Value> = runs
        .iter()
        .filter(|r| r["pack"] == "deal-update-sync")
        .collect();
    assert_eq!(staged.len(), 1, "{found:#}");
    assert_eq!(staged[0]["deal"], "40000000001");
    let text = staged[0]["changes"].to_string();
    assert!(
        text.contains("\"removed\"") && text.contains("UpdateOpportunity")
            || text.contains("LifeCycle.Stage"),
        "{text}"
    );
    // Human output names the deal and the change.
    let (code, out, err) = pcsync(&[
        "replay",
        "--rules",
        without.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--pack",
        "deal-update-sync",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("deal 40000000001"), "{out}");
    assert!(out.contains("1 changed"), "{out}");
    // As a CI gate.
    let (code, _, _) = pcsync(&[
        "replay",
        "--rules",
        without.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--fail-on",
        "changed",
    ]);
    assert_eq!(code, Some(1));

    // The deal's runs as golden cases: they pass with the rules they were exported
    // from, and fail once the row is gone.
    let cases = dir.join("rules/tests/exported.yaml");
    let (code, _, err) = pcsync(&[
        "replay",
        "--rules",
        dir.join("rules").to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--deal",
        "40000000001",
        "--pack",
        "deal-update-sync",
        "--export",
        cases.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = pcsync(&["test", cases.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    edit_pack(
        &dir.join("rules"),
        "deal-update-sync.yaml",
        "      qualifiedtobuy: Qualified\n",
        "",
    );
    let (code, out, err) = pcsync(&["test", cases.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}\n{err}");
}
