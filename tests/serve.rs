//! `pcsync serve` as a process, against the sandbox over real HTTP: a deal edit in
//! HubSpot reaches Partner Central (and a note comes back), a forged webhook is
//! refused, a broken rule edit leaves the service running on the rules in force, and
//! a good one is picked up.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use pcsync_sandbox::Sandbox;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_syncs_deal_edits_refuses_forgeries_and_survives_bad_rule_edits() {
    let (sb, dir, service, config) = start(|_| {}, "").await;
    let rules = dir.path().join("rules");
    let http = reqwest::Client::new();
    let health = format!("{}/healthz", service.url);
    let version = get(&http, &health).await.unwrap()["rules_version"]
        .as_str()
        .unwrap()
        .to_string();

    // A rep moves the deal on; the opportunity follows, and the deal gets a note.
    let edit = |stage: &str| {
        http.patch(format!(
            "{}/_sandbox/hubspot/deals/40000000001",
            sb.hubspot_url
        ))
        .json(&json!({ "properties": { "dealstage": stage } }))
        .send()
    };
    edit("qualifiedtobuy")
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let stage_of = |want: &'static str| {
        let http = http.clone();
        let url = format!(
            "{}/_sandbox/partnercentral/opportunities",
            sb.partner_central_url
        );
        async move {
            let all = get(&http, &url).await?;
            let list = all.get("opportunities").unwrap_or(&all).as_array()?.clone();
            let o = list.into_iter().find(|o| o["Id"] == "O5000001")?;
            (o["LifeCycle"]["Stage"] == want).then_some(o)
        }
    };
    eventually("the stage to reach Partner Central", &service, || {
        stage_of("Qualified")
    })
    .await;
    let notes_url = format!("{}/_sandbox/hubspot/notes", sb.hubspot_url);
    let note = eventually("the sync note", &service, || {
        let (http, url) = (http.clone(), notes_url.clone());
        async move {
            let notes = get(&http, &url).await?;
            notes["notes"]
                .as_array()?
                .iter()
                .find(|n| n["associations"]["deals"][0] == "40000000001")
                .cloned()
        }
    })
    .await;
    // HubSpot keeps notes as HTML: the change list shows as a list.
    let body = note["shown"].as_str().unwrap();
    assert!(
        body.contains("\n- LifeCycle.Stage: Prospect → Qualified"),
        "{body}"
    );

    // A forged webhook is refused and stores nothing.
    let forged = http
        .post(format!("{}/webhooks/hubspot", service.url))
        .header("content-type", "application/json")
        .header("X-HubSpot-Signature-v3", "bm90IGEgc2lnbmF0dXJl")
        .header(
            "X-HubSpot-Request-Timestamp",
            jiff::Timestamp::now().as_millisecond().to_string(),
        )
        .body(r#"[{"eventId":1,"subscriptionType":"deal.propertyChange","objectId":40000000001,"propertyName":"dealstage","propertyValue":"closedlost","occurredAt":1,"portalId":1,"appId":777,"attemptNumber":0,"subscriptionId":1,"changeSource":"CRM_UI"}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    // Correctly signed but stale (HubSpot's 5-minute window), malformed, oversized.
    let url = format!("{}/webhooks/hubspot", service.url);
    let signed = |body: Vec<u8>, age_ms: i64| {
        let ts = (jiff::Timestamp::now().as_millisecond() - age_ms).to_string();
        let sig = pcsync_adapters::hubspot::signature::v3("test-secret", "POST", &url, &body, &ts);
        http.post(&url)
            .header("content-type", "application/json")
            .header("X-HubSpot-Signature-v3", sig)
            .header("X-HubSpot-Request-Timestamp", ts)
            .body(body)
            .send()
    };
    // Earlier work (the first edit's follow-ups) finishes first.
    drained(&http, &service, 0).await;
    let calls_before = sb.journal.calls().len();
    let stale = signed(b"[]".to_vec(), 6 * 60 * 1000).await.unwrap();
    assert_eq!(stale.status(), 401);
    let malformed = signed(b"[{\"eventId\":".to_vec(), 0).await.unwrap();
    assert_eq!(malformed.status(), 400);
    let why: Value = malformed.json().await.unwrap();
    assert!(why["message"].as_str().unwrap().contains("JSON"), "{why}");
    let oversized = signed(vec![b' '; 2 * 1024 * 1024], 0).await.unwrap();
    assert_eq!(oversized.status(), 413);
    // Its body was left unread: the connection is not used again.
    assert_eq!(oversized.headers()["connection"], "close");
    // Each was refused before anything was stored, so no work can follow it.
    let after = get(&http, &health).await.unwrap()["inbox"].clone();
    assert_eq!(after["pending"], 0, "nothing refused was stored");
    assert_eq!(after["running"], 0, "nothing refused was stored");
    assert_eq!(sb.journal.calls().len(), calls_before, "no remote call");

    // A broken edit is reported and the rules in force stay.
    let pack = rules.join("deal-update-sync.yaml");
    let good = std::fs::read_to_string(&pack).unwrap();
    std::fs::write(
        &pack,
        good.replace("to: LifeCycle.Stage", "to: LifeCycle.Stag"),
    )
    .unwrap();
    eventually("the broken edit to be reported", &service, || {
        let seen = service.stderr().contains("does not check");
        async move { seen.then_some(()) }
    })
    .await;
    assert!(
        service.stderr().contains("LifeCycle.Stag"),
        "{}",
        service.stderr()
    );
    let now = get(&http, &health).await.unwrap();
    assert_eq!(now["status"], "ok");
    assert_eq!(now["rules_version"], version.as_str());
    let shown = get(&http, &format!("{}/rules", service.url)).await.unwrap();
    assert_eq!(shown["version"], version.as_str());
    let error = shown["last_error"]["diagnostics"].as_str().unwrap();
    assert!(error.contains("LifeCycle.Stag"), "{error}");
    let asked = http
        .post(format!("{}/admin/reload", service.url))
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), 422);

    // A good edit is picked up, and deals still sync.
    std::fs::write(
        &pack,
        good.replace(
            "contractsent: Committed",
            "contractsent: Business Validation",
        ),
    )
    .unwrap();
    eventually("the good edit to be loaded", &service, || {
        let (http, health, version) = (http.clone(), health.clone(), version.clone());
        async move {
            let h = get(&http, &health).await?;
            (h["rules_version"] != version.as_str()).then_some(())
        }
    })
    .await;
    let shown = get(&http, &format!("{}/rules", service.url)).await.unwrap();
    assert!(shown["last_error"].is_null(), "{shown}");
    // SIGHUP runs the same reload: nothing changed, so the counts say unchanged.
    let status = Command::new("kill")
        .args(["-HUP", &service.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    eventually("the SIGHUP reload", &service, || async {
        let text = metrics(&http, &service).await?;
        text.contains("pcsync_reloads_total{result=\"unchanged\"}")
            .then_some(())
    })
    .await;
    assert_eq!(shown["packs"].as_array().unwrap().len(), 4);
    edit("contractsent")
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    eventually("the edited table to apply", &service, || {
        stage_of("Business Validation")
    })
    .await;
    let inbox = get(&http, &health).await.unwrap()["inbox"].clone();
    assert_eq!(inbox["dead"], 0, "{}", service.stderr());

    // What happened is counted.
    let counted = metrics(&http, &service).await.unwrap();
    for line in [
        "pcsync_events_rejected_total{reason=\"signature\"} 2",
        "pcsync_events_rejected_total{reason=\"malformed\"} 1",
        "pcsync_events_rejected_total{reason=\"too_large\"} 1",
        "pcsync_reloads_total{result=\"error\"}",
        "pcsync_reloads_total{result=\"changed\"}",
        "pcsync_effects_total{kind=\"UpdateOpportunity\",outcome=\"ok\"}",
        "pcsync_events_accepted_total{source=\"hubspot\"}",
        "pcsync_inbox_events{state=\"dead\"} 0",
    ] {
        assert!(counted.contains(line), "{line} not in\n{counted}");
    }

    // An event from another service is refused, naming the rule to narrow.
    let stray = http
        .post(format!("{}/events/partnercentral", service.url))
        .header("x-pcsync-secret", "events-secret-0123456789")
        .json(&json!({ "source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification", "detail": {} }))
        .send()
        .await
        .unwrap();
    assert_eq!(stray.status(), 400);
    // A Partner Central event pcsync cannot read is kept in the dead-letter list with
    // its reason, where `pcsync dlq` shows it, and can be dropped.
    let unreadable = http
        .post(format!("{}/events/partnercentral", service.url))
        .header("x-pcsync-secret", "events-secret-0123456789")
        .json(&json!({ "id": "e-stray", "source": "aws.partnercentral-selling", "detail-type": "Opportunity Updated",
            "detail": { "catalog": "Sandbox", "opportunity": { "identifier": "O1/../O2" } } }))
        .send()
        .await
        .unwrap();
    assert!(unreadable.status().is_success(), "{}", unreadable.status());
    let dlq = |args: &[&str]| dlq(&config, args);
    let (code, listed, err) = dlq(&["list"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(listed.contains("detail.opportunity.identifier"), "{listed}");
    let id = listed
        .split_whitespace()
        .find_map(|w| w.strip_prefix('#'))
        .unwrap()
        .to_string();
    let (code, out, _) = dlq(&["drop", &id]);
    assert_eq!(code, Some(0));
    assert!(out.contains("deleted"), "{out}");
    let (code, _, err) = dlq(&["drop", &id]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no dead letter"), "{err}");
    let (_, listed, _) = dlq(&["list"]);
    assert!(listed.contains("no dead letters"), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_access_key_id_is_not_logged_even_at_trace() {
    const KEY_ID: &str = "AKIAPCSYNCTESTKEY123";
    let env = [
        ("AWS_ACCESS_KEY_ID", KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", "the-secret-access-key"),
        ("PCSYNC_LOG", "trace"),
    ];
    let (_sb, _dir, service, _config) = start_with_env(|_| {}, "", |_| {}, &env).await;
    // The SDK resolved the credentials and signed a Partner Central call with them
    // (the start-up reads), logging both at trace.
    let log = eventually("a signed Partner Central call", &service, || async {
        let log = service.stderr();
        (log.contains("resolved identity") && log.contains("aws_sigv4")).then_some(log)
    })
    .await;
    for secret in [KEY_ID, "the-secret-access-key"] {
        let shown: Vec<&str> = log.lines().filter(|l| l.contains(secret)).collect();
        assert!(shown.is_empty(), "`{secret}` logged:\n{}", shown.join("\n"));
    }
    assert!(
        log.contains("access_key_id: \"** redacted **\""),
        "masked, not dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_coalesces_edits_defers_during_review_and_parks_what_aws_refuses() {
    let (sb, _dir, service, config) = start(|_| {}, "").await;
    let http = reqwest::Client::new();
    let edit = |deal: &str, properties: Value| {
        http.patch(format!("{}/_sandbox/hubspot/deals/{deal}", sb.hubspot_url))
            .json(&json!({ "properties": properties }))
            .send()
    };

    // Five quick edits to one deal become one full-record write, with the
    // LastModifiedDate the opportunity had.
    let before = opportunity(&http, &sb, "O5000001").await.unwrap();
    for amount in ["100", "200", "300", "400", "500"] {
        edit("40000000001", json!({ "amount": amount }))
            .await
            .unwrap();
    }
    eventually("the last amount to land", &service, || async {
        let o = opportunity(&http, &sb, "O5000001").await?;
        (o["Project"]["ExpectedCustomerSpend"][0]["Amount"] == "500").then_some(())
    })
    .await;
    let writes = updates(&sb, 200);
    assert_eq!(writes.len(), 1, "{writes:#?}");
    assert_eq!(writes[0]["LastModifiedDate"], before["LastModifiedDate"]);
    assert_eq!(
        writes[0]["Customer"], before["Customer"],
        "the whole record is sent"
    );

    // While AWS reviews the opportunity, the edit waits; approval lets it land.
    http.post(format!(
        "{}/_sandbox/partnercentral/opportunities/O5000004/review",
        sb.partner_central_url
    ))
    .json(&json!({ "status": "Submitted" }))
    .send_ok()
    .await;
    edit(
        "40000000003",
        json!({ "dealstage": "decisionmakerboughtin" }),
    )
    .await
    .unwrap();
    let health = format!("{}/healthz", service.url);
    eventually("the edit to be deferred", &service, || async {
        let h = get(&http, &health).await?;
        (h["inbox"]["deferred"].as_u64()? > 0).then_some(())
    })
    .await;
    let o = opportunity(&http, &sb, "O5000004").await.unwrap();
    assert_ne!(o["LifeCycle"]["Stage"], "Business Validation");
    // `GET /rules` shows what is held and why.
    let rules = get(&http, &format!("{}/rules", service.url)).await.unwrap();
    assert_eq!(rules["deferred"][0]["key"], "deal:40000000003", "{rules}");
    assert!(
        rules["deferred"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("deal-update-sync"),
        "{rules}"
    );
    assert!(rules["inbox"]["deferred"].as_u64().unwrap() > 0, "{rules}");
    for status in ["In review", "Approved"] {
        http.post(format!(
            "{}/_sandbox/partnercentral/opportunities/O5000004/review",
            sb.partner_central_url
        ))
        .json(&json!({ "status": status }))
        .send_ok()
        .await;
    }
    eventually("the deferred edit to land", &service, || async {
        let o = opportunity(&http, &sb, "O5000004").await?;
        (o["LifeCycle"]["Stage"] == "Business Validation").then_some(())
    })
    .await;

    // A write AWS refuses for good is parked with the reason; `dlq retry` replays it.
    inject(
        &http,
        &sb,
        json!({ "service": "partnercentral", "operation": "UpdateOpportunity", "status": 400 }),
    )
    .await;
    edit("40000000001", json!({ "dealstage": "qualifiedtobuy" }))
        .await
        .unwrap();
    eventually("the refused write to be parked", &service, || async {
        let h = get(&http, &health).await?;
        (h["inbox"]["dead"].as_u64()? > 0).then_some(())
    })
    .await;
    let dlq = |args: &[&str]| dlq(&config, args).1;
    let listed = dlq(&["list"]);
    assert!(listed.contains("deal-update-sync"), "{listed}");
    assert!(listed.contains("deal 40000000001"), "{listed}");
    for id in listed
        .split_whitespace()
        .filter_map(|w| w.strip_prefix('#'))
    {
        assert!(dlq(&["retry", id]).contains("back in the inbox"));
    }
    eventually("the replayed write to land", &service, || async {
        let o = opportunity(&http, &sb, "O5000001").await?;
        (o["LifeCycle"]["Stage"] == "Qualified").then_some(())
    })
    .await;
    assert_eq!(updates(&sb, 400).len(), 1);
}

/// The partner moves the opportunity to `Launched` (an UpdateOpportunity).
fn launch(sb: &Sandbox, id: &str) {
    sb.partner_central.with_store(|s| launch_opportunity(s, id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_runs_notice_score_changes_no_event_announces() {
    // The shipped summary poll is every 6 hours; the test runs it every 2 seconds,
    // alone, with no events delivered. One demo opportunity has launched.
    let (sb, _dir, service, _config) = start_with(
        |rules| {
            edit_pack(
                rules,
                "smart-notifications.yaml",
                NOTIFICATION_SCHEDULES,
                "  - schedule: { every: 2s, jitter: 0s, for_each: linked_deals, reads: [aws_summary] }\n",
            )
        },
        "",
        |sb| launch(sb, "O5000004"),
    )
    .await;
    let http = reqwest::Client::new();
    http.delete(format!(
        "{}/_sandbox/partnercentral/events",
        sb.partner_central_url
    ))
    .send_ok()
    .await;
    let insights = |score: u32| {
        http.post(format!(
            "{}/_sandbox/partnercentral/opportunities/O5000002/insights",
            sb.partner_central_url
        ))
        .json(&json!({ "quality_score": score }))
        .send()
    };
    insights(40).await.unwrap().error_for_status().unwrap();
    // The first run records the baseline.
    let health = format!("{}/healthz", service.url);
    eventually("a scheduled run to be applied", &service, || async {
        let h = get(&http, &health).await?;
        (h["inbox"]["done"].as_u64()? >= 4).then_some(())
    })
    .await;
    assert!(
        !sb.journal
            .calls()
            .iter()
            .any(|c| c.operation.starts_with("POST /crm/v3/objects/tasks")),
        "a baseline notifies nothing"
    );
    // AWS rescores; Partner Central sends no event for it, the next run notices.
    insights(90).await.unwrap().error_for_status().unwrap();
    let tasks = format!("{}/_sandbox/hubspot/tasks", sb.hubspot_url);
    let task = eventually("the score task", &service, || async {
        let all = get(&http, &tasks).await?;
        all["tasks"].as_array()?.first().cloned()
    })
    .await;
    let subject = task["properties"]["hs_task_subject"].as_str().unwrap();
    assert!(subject.contains("Score Increased (+50)"), "{subject}");
    assert_eq!(task["associations"]["deals"][0], "40000000002");
    // Later runs with no change send nothing more.
    let done = drained(&http, &service, 0).await["inbox"]["done"]
        .as_u64()
        .unwrap();
    drained(&http, &service, done + 4).await;
    let all = get(&http, &tasks).await.unwrap();
    assert_eq!(all["tasks"].as_array().unwrap().len(), 1, "{all}");
    // The runs took their deals from the listing (200 a search), not a read each.
    let calls = sb.journal.calls();
    let read_one = calls
        .iter()
        .filter(|c| c.operation.starts_with("GET /crm/v3/objects/deals/"))
        .count();
    let searches = calls
        .iter()
        .filter(|c| c.operation == "POST /crm/v3/objects/deals/search")
        .count();
    assert!(searches >= 3, "{searches} listings");
    assert_eq!(read_one, 0, "scheduled runs read deals one by one");
    // The launched opportunity was read once, when its run first met it; no
    // schedule polls it after that.
    let launched = calls
        .iter()
        .filter(|c| {
            c.operation == "GetAwsOpportunitySummary"
                && c.request["RelatedOpportunityIdentifier"] == "O5000004"
        })
        .count();
    let open = calls
        .iter()
        .filter(|c| {
            c.operation == "GetAwsOpportunitySummary"
                && c.request["RelatedOpportunityIdentifier"] == "O5000002"
        })
        .count();
    // The open one: its baseline and the poll that noticed the rescore, at least.
    assert!(
        launched <= 1 && open >= 2,
        "launched {launched}, open {open}"
    );
    // Health says how fresh the AWS summaries are: runs every 2 s keep them so.
    let h = get(&http, &health).await.unwrap();
    let ages = &h["aws_summaries"];
    assert!(ages["opportunities"].as_u64().unwrap() >= 1, "{h}");
    assert_eq!(ages["never_read"], 0, "{h}");
    assert!(ages["oldest_s"].as_u64().unwrap() <= 10, "{h}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_snapshot_revision_becomes_one_note_on_the_deal() {
    // The shipped weekly pass over the linked deals; here every 2 seconds, besides
    // the events.
    let (sb, _dir, service, _config) = start(
        |rules| {
            edit_pack(
                rules,
                "resource-snapshot-sync.yaml",
                "every: 7d,",
                "every: 2s, jitter: 0s,",
            )
        },
        "",
    )
    .await;
    let http = reqwest::Client::new();
    let publish = || {
        http.post(format!(
            "{}/_sandbox/partnercentral/opportunities/O5000002/snapshot",
            sb.partner_central_url
        ))
        .send()
    };
    // The titles of the snapshot notes on the deal ("📋 AWS snapshot: … (revision N)").
    let notes = format!("{}/_sandbox/hubspot/notes", sb.hubspot_url);
    let titles = || async {
        let all = get(&http, &notes).await?;
        let found: Vec<String> = all["notes"]
            .as_array()?
            .iter()
            .filter(|n| n["associations"]["deals"][0] == "40000000002")
            .filter_map(|n| n["shown"].as_str())
            .filter(|b| b.contains("AWS snapshot"))
            .map(|b| b.lines().next().unwrap_or_default().to_string())
            .collect();
        Some(found)
    };
    publish().await.unwrap().error_for_status().unwrap();
    let first = eventually("the snapshot notes", &service, || async {
        titles()
            .await
            .filter(|t| t.iter().filter(|t| t.contains("(revision 2)")).count() == 2)
    })
    .await;
    assert!(
        sb.journal
            .calls()
            .iter()
            .any(|c| c.operation == "GetResourceSnapshot" && c.status == 200)
    );
    // AWS publishes another revision: only it is noted.
    publish().await.unwrap().error_for_status().unwrap();
    let all = eventually("the next revision's notes", &service, || async {
        titles()
            .await
            .filter(|t| t.iter().filter(|t| t.contains("(revision 3)")).count() == 2)
    })
    .await;
    // Two more scheduled runs find nothing new to note.
    let done = drained(&http, &service, 0).await["inbox"]["done"]
        .as_u64()
        .unwrap();
    drained(&http, &service, done + 2).await;
    let all = titles().await.unwrap_or(all);
    let mut unique = all.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        all.len(),
        "a revision was noted twice: {all:#?}"
    );
    assert!(all.len() > first.len());
    assert!(
        all[first.len()..]
            .iter()
            .all(|t| t.contains("(revision 3)")),
        "{all:#?}"
    );
    // Further polls find nothing new and note nothing.
    let looked = |sb: &Sandbox| {
        sb.journal
            .calls()
            .iter()
            .filter(|c| c.operation == "ListEngagementResourceAssociations")
            .count()
    };
    let before = looked(&sb);
    eventually("two more polls", &service, || async {
        (looked(&sb) >= before + 2).then_some(())
    })
    .await;
    drained(&http, &service, 0).await;
    assert_eq!(
        titles().await.unwrap(),
        all,
        "a poll noted a revision again"
    );
    // A revision never changes, so each was read from AWS once, however many polls
    // and events listed it (the daily read quota counts each read).
    let mut reads: Vec<String> = sb
        .journal
        .calls()
        .iter()
        .filter(|c| c.operation == "GetResourceSnapshot" && c.status == 200)
        .map(|c| {
            let r = &c.request;
            format!(
                "{}/{}/{}",
                r["EngagementIdentifier"], r["ResourceSnapshotTemplateIdentifier"], r["Revision"]
            )
        })
        .collect();
    let read = reads.len();
    reads.sort();
    reads.dedup();
    assert_eq!(read, reads.len(), "a revision was read twice: {reads:#?}");
    let of_this_deal = sb
        .journal
        .calls()
        .iter()
        .filter(|c| c.operation == "GetResourceSnapshot" && c.status == 200)
        .filter(|c| c.request["ResourceIdentifier"] == "O5000002")
        .count();
    assert_eq!(of_this_deal, all.len(), "{reads:#?} against {all:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_in_the_inbox_survive_a_kill_and_apply_once() {
    // A long coalescing window holds the event in the inbox while the test kills.
    let (sb, _dir, mut service, config) = start(|_| {}, "worker:\n  coalesce: 3s\n").await;
    let http = reqwest::Client::new();
    let health = format!("{}/healthz", service.url);
    qualify_demo_deal(&http, &sb).await;
    // Accepted (2xx to HubSpot) but still in the coalescing window: kill it there.
    eventually("the event to be accepted", &service, || async {
        let h = get(&http, &health).await?;
        (h["inbox"]["pending"].as_u64()? > 0).then_some(())
    })
    .await;
    service.child.kill().unwrap(); // SIGKILL
    service.child.wait().unwrap();
    assert!(updates(&sb, 200).is_empty(), "killed before the write");

    service.child = spawn(&config, &service.stderr);
    demo_opportunity_qualified(&http, &sb, &service).await;
    // Everything that followed (pcsync's own writes echoing back, the EventBridge
    // event) is worked off too.
    let h = drained(&http, &service, 0).await;
    assert_eq!(h["inbox"]["dead"], 0);
    assert_eq!(updates(&sb, 200).len(), 1, "applied exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_daily_quota_holds_edits_back_and_a_restart_remembers_the_day() {
    let (sb, _dir, mut service, config) = start(|_| {}, "").await;
    let http = reqwest::Client::new();
    let health = format!("{}/healthz", service.url);
    qualify_demo_deal(&http, &sb).await;
    demo_opportunity_qualified(&http, &sb, &service).await;
    let h = drained(&http, &service, 0).await;
    let writes = h["partner_central_quota"]["write"]["used_24h"]
        .as_u64()
        .unwrap();
    let reads = h["partner_central_quota"]["read"]["used_24h"]
        .as_u64()
        .unwrap();
    assert!(writes >= 1 && reads >= 1, "{h}");
    assert_eq!(
        h["partner_central_quota"]["write"]["limit"], 10_000,
        "AWS's allowance by default"
    );
    // Each call was counted in the state file before it was sent: a crash right
    // away forgets none.
    service.child.kill().unwrap(); // SIGKILL
    service.child.wait().unwrap();

    // Restarted with an allowance of exactly the writes made: the day is spent.
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace(
        "partner_central:\n",
        &format!("partner_central:\n  daily_quota:\n    writes: {writes}\n"),
    );
    std::fs::write(&config, text).unwrap();
    service.child = spawn(&config, &service.stderr);
    let h = eventually("the service to answer", &service, || get(&http, &health)).await;
    assert_eq!(
        h["partner_central_quota"]["write"]["used_24h"], writes,
        "{h}"
    );
    assert!(
        h["partner_central_quota"]["read"]["used_24h"]
            .as_u64()
            .unwrap()
            >= reads,
        "{h}"
    );
    assert_eq!(h["partner_central_quota"]["write"]["remaining"], 0, "{h}");
    let sent = updates(&sb, 200).len();

    // An edit now waits for the window, held back on pcsync's side: not sent, not
    // retried into the dead-letter list.
    edit_deal(&http, &sb, "40000000003", json!({ "amount": "4242" })).await;
    let rules = format!("{}/rules", service.url);
    let waiting = eventually("the edit to wait for the quota", &service, || async {
        let r = get(&http, &rules).await?;
        r["deferred"]
            .as_array()?
            .iter()
            .find(|d| {
                d["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("daily write quota"))
            })
            .cloned()
    })
    .await;
    assert!(
        waiting["reason"].as_str().unwrap().contains("is spent"),
        "{waiting}"
    );
    let h = get(&http, &health).await.unwrap();
    assert_eq!(h["inbox"]["dead"], 0, "{h}");
    assert!(
        h["partner_central_quota"]["write"]["paused_until"].is_string(),
        "{h}"
    );
    assert_eq!(updates(&sb, 200).len(), sent, "nothing sent past the quota");
    let metrics = reqwest::get(format!("{}/metrics", service.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("pcsync_partnercentral_quota_remaining{class=\"write\"} 0"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_sandbox_needs_no_config_and_syncs_its_demo_deals() {
    let port = free_port();
    // Three consecutive free ports for the sandbox.
    let sandbox = loop {
        let p = free_port();
        if p < 65_000 && (1..3).all(|i| std::net::TcpListener::bind(("127.0.0.1", p + i)).is_ok()) {
            break p;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let stderr = dir.path().join("stderr.log");
    let child = Command::new(env!("CARGO_BIN_EXE_pcsync"))
        .args(["serve", "--sandbox", "--log-format", "json", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--sandbox-listen")
        .arg(format!("127.0.0.1:{sandbox}"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_PROFILE")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let service = Service {
        child,
        stderr,
        url: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    let health = format!("{}/healthz", service.url);
    eventually("the service to answer", &service, || get(&http, &health)).await;
    let pc = format!("http://127.0.0.1:{sandbox}");
    let hs = format!("http://127.0.0.1:{}", sandbox + 1);
    let sns = format!("http://127.0.0.1:{}", sandbox + 2);
    // Ready once the demo's baselines are recorded: the README's "AWS rescores and
    // approves" step, done at once, notifies.
    let ready = format!("{}/readyz", service.url);
    eventually("the service to be ready", &service, || async {
        let r = http.get(&ready).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    for (path, body) in [
        ("review", json!({ "status": "In review" })),
        ("insights", json!({ "quality_score": 90 })),
        ("review", json!({ "status": "Approved" })),
    ] {
        http.post(format!(
            "{pc}/_sandbox/partnercentral/opportunities/O5000002/{path}"
        ))
        .json(&body)
        .send_ok()
        .await;
    }
    eventually("the task and the SNS message", &service, || async {
        let tasks = get(&http, &format!("{hs}/_sandbox/hubspot/tasks")).await?;
        let messages = get(&http, &format!("{sns}/_sandbox/sns/messages")).await?;
        (!tasks["tasks"].as_array()?.is_empty() && !messages["messages"].as_array()?.is_empty())
            .then_some(())
    })
    .await;
    let deals = get(&http, &format!("{hs}/_sandbox/hubspot/deals"))
        .await
        .unwrap();
    let linked: Vec<&Value> = deals["deals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["properties"]["aws_opportunity_id"].is_string())
        .collect();
    assert!(linked.len() >= 3, "{deals}");
    http.patch(format!("{hs}/_sandbox/hubspot/deals/40000000001"))
        .json(&json!({ "properties": { "dealstage": "qualifiedtobuy" } }))
        .send_ok()
        .await;
    eventually(
        "the demo deal's stage to reach Partner Central",
        &service,
        || async {
            let all = get(
                &http,
                &format!("{pc}/_sandbox/partnercentral/opportunities"),
            )
            .await?;
            all["opportunities"]
                .as_array()?
                .iter()
                .any(|o| o["Id"] == "O5000001" && o["LifeCycle"]["Stage"] == "Qualified")
                .then_some(())
        },
    )
    .await;
    // --log-format json: every log line is one JSON object.
    let log = service.stderr();
    assert!(log.contains("\"listening\""), "{log}");
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
    // SIGTERM stops it cleanly, and the demo's throw-away state goes with it.
    let mut service = service;
    let pid = service.child.id();
    let state = std::env::temp_dir().join(format!("pcsync-sandbox-{pid}.db"));
    assert!(state.exists(), "{}", state.display());
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(service.child.wait().unwrap().success());
    assert!(!state.exists(), "{} left behind", state.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_batch_applies_once_and_echoes_are_dropped() {
    let (sb, _dir, service, _config) = start(|_| {}, "").await;
    let http = reqwest::Client::new();
    // The test delivers HubSpot's webhooks itself.
    http.delete(format!("{}/_sandbox/hubspot/webhooks", sb.hubspot_url))
        .send_ok()
        .await;
    qualify_demo_deal(&http, &sb).await;
    let change = r#"[{"eventId":9001,"subscriptionId":1,"portalId":62515,"appId":777,"occurredAt":1795873324127,"subscriptionType":"deal.propertyChange","attemptNumber":0,"objectId":40000000001,"propertyName":"dealstage","propertyValue":"qualifiedtobuy","changeSource":"CRM_UI","sourceId":"userId:1"}]"#;
    let first: Value = deliver_signed(&http, &service, change)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["accepted"], 1, "{first}");
    // HubSpot retries a delivery it thinks failed: same event id, new attempt.
    let again = change.replace(r#""attemptNumber":0"#, r#""attemptNumber":1"#);
    let second: Value = deliver_signed(&http, &service, &again)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(second["duplicates"], 1, "{second}");
    // pcsync's own write coming back (the app's INTEGRATION change) is dropped.
    let echo = r#"[{"eventId":9002,"subscriptionId":1,"portalId":62515,"appId":777,"occurredAt":1795873324128,"subscriptionType":"deal.propertyChange","attemptNumber":0,"objectId":40000000001,"propertyName":"dealstage","propertyValue":"qualifiedtobuy","changeSource":"INTEGRATION","sourceId":"777"}]"#;
    assert!(
        deliver_signed(&http, &service, echo)
            .await
            .status()
            .is_success()
    );

    drained(&http, &service, 2).await;
    let o = opportunity(&http, &sb, "O5000001").await.unwrap();
    assert_eq!(o["LifeCycle"]["Stage"], "Qualified");
    assert_eq!(updates(&sb, 200).len(), 1, "one delivery, one write");
    let counted = metrics(&http, &service).await.unwrap();
    assert!(
        counted.contains("pcsync_echoes_dropped_total 1"),
        "{counted}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_and_a_run_of_server_errors_end_in_success() {
    let (sb, _dir, service, _config) = start(|_| {}, "").await;
    let http = reqwest::Client::new();
    let fault = |status: u16, count: u32| {
        inject(
            &http,
            &sb,
            json!({ "service": "partnercentral", "operation": "UpdateOpportunity",
                    "status": status, "count": count }),
        )
    };
    let edit = |deal: &'static str, stage: &'static str| {
        edit_deal(&http, &sb, deal, json!({ "dealstage": stage }))
    };
    let stage_is = |id: &'static str, want: &'static str| {
        let (http, sb) = (&http, &sb);
        async move {
            let o = opportunity(http, sb, id).await?;
            (o["LifeCycle"]["Stage"] == want).then_some(())
        }
    };

    // Someone wrote in between: pcsync reads again and reapplies.
    fault(409, 1).await;
    edit("40000000001", "qualifiedtobuy").await;
    eventually("the write after the conflict", &service, || {
        stage_is("O5000001", "Qualified")
    })
    .await;
    assert_eq!(updates(&sb, 409).len(), 1);

    // A run of 500s outlasts the SDK's own retries; pcsync's retry finishes it.
    fault(500, 5).await;
    edit("40000000001", "presentationscheduled").await;
    eventually("the write after the outage", &service, || {
        stage_is("O5000001", "Technical Validation")
    })
    .await;
    assert_eq!(updates(&sb, 500).len(), 5);
    assert_eq!(updates(&sb, 200).len(), 2, "one write per edit");
    let h = get(&http, &format!("{}/healthz", service.url))
        .await
        .unwrap();
    assert_eq!(h["inbox"]["dead"], 0);
    let counted = metrics(&http, &service).await.unwrap();
    assert!(
        counted.contains("pcsync_batches_total{outcome=\"retry\"}"),
        "{counted}"
    );
}

/// A rep's edit whose UpdateOpportunity Partner Central answers after `delay_ms`,
/// and SIGTERM once the worker has it in hand: how the service exited, and how long
/// after the signal.
async fn stop_mid_write(
    http: &reqwest::Client,
    sb: &Sandbox,
    service: &mut Service,
    delay_ms: u64,
) -> (std::process::ExitStatus, Duration) {
    let health = format!("{}/healthz", service.url);
    inject(
        http,
        sb,
        json!({ "service": "partnercentral", "operation": "UpdateOpportunity", "delay_ms": delay_ms }),
    )
    .await;
    qualify_demo_deal(http, sb).await;
    eventually("the batch to be claimed", service, || async {
        let h = get(http, &health).await?;
        (h["inbox"]["running"].as_u64()? > 0).then_some(())
    })
    .await;
    // The update has reached Partner Central, which holds its answer.
    eventually("the update to be in flight", service, || async {
        (sb.journal.pending_faults() == 0).then_some(())
    })
    .await;
    let stopping = std::time::Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &service.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = service.child.wait().unwrap();
    (exit, stopping.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_write_in_hand_before_exiting() {
    let (sb, _dir, mut service, config) = start(|_| {}, "").await;
    let http = reqwest::Client::new();
    // Partner Central answers the write slowly, so the stop arrives mid-batch.
    let (exit, _) = stop_mid_write(&http, &sb, &mut service, 2_000).await;
    assert!(exit.success(), "{exit:?}\n{}", service.stderr());
    assert_eq!(updates(&sb, 200).len(), 1, "the write in hand finished");
    let log = service.stderr();
    assert!(log.contains("stopped"), "{log}");

    // Nothing is left half-done: a restart does not write again.
    service.child = spawn(&config, &service.stderr);
    let h = drained(&http, &service, 1).await;
    assert_eq!(h["inbox"]["dead"], 0);
    assert_eq!(updates(&sb, 200).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_waits_no_longer_than_the_grace_and_loses_nothing() {
    let (sb, _dir, mut service, config) = start(|_| {}, "worker:\n  shutdown_grace: 1s\n").await;
    let http = reqwest::Client::new();
    // The write takes 8 s; the stop allows the worker 1 s.
    let (exit, took) = stop_mid_write(&http, &sb, &mut service, 8_000).await;
    assert!(exit.success(), "{exit:?}\n{}", service.stderr());
    assert!(took < Duration::from_secs(5), "stopped after {took:?}");
    let log = service.stderr();
    assert!(
        log.contains("did not finish within worker.shutdown_grace"),
        "{log}"
    );
    assert!(log.contains("stopped"), "{log}");

    // The edit was in line again at the next start, and lands.
    service.child = spawn(&config, &service.stderr);
    demo_opportunity_qualified(&http, &sb, &service).await;
    let h = drained(&http, &service, 1).await;
    assert_eq!(h["inbox"]["dead"], 0, "{h}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_hints_set_the_retry_time_and_remote_calls_are_measured() {
    let (sb, _dir, service, _config) = start(|_| {}, "").await;
    let http = reqwest::Client::new();
    // HubSpot throttles the deal read and asks for 7 seconds.
    inject(
        &http,
        &sb,
        json!({ "service": "hubspot", "operation": "GET /crm/v3/objects/deals/",
                "status": 429, "headers": { "Retry-After": "7" } }),
    )
    .await;
    qualify_demo_deal(&http, &sb).await;
    // The first retry would come after about 2 s; HubSpot's 7 s wins.
    let line = eventually("the retry to be scheduled", &service, || async {
        service
            .stderr()
            .lines()
            .find(|l| l.contains("will retry"))
            .map(str::to_string)
    })
    .await;
    assert!(line.contains("retry_in_ms=7000"), "{line}");
    assert!(line.contains("429"), "{line}");
    eventually("the edit to land after the wait", &service, || async {
        let o = opportunity(&http, &sb, "O5000001").await?;
        (o["LifeCycle"]["Stage"] == "Qualified").then_some(())
    })
    .await;

    // Every remote call is counted by API, operation and outcome, timed, and its
    // wait for pcsync's own rate limiter recorded. The sandbox holds the update
    // before pcsync has its answer and counts it: wait for the count.
    let text = eventually("the update to be counted", &service, || async {
        let text = metrics(&http, &service).await?;
        text.contains(
            "pcsync_remote_calls_total{api=\"partnercentral\",operation=\"UpdateOpportunity\",outcome=\"ok\"} 1",
        )
        .then_some(text)
    })
    .await;
    for expected in [
        "pcsync_remote_calls_total{api=\"hubspot\",operation=\"GET /crm/v3/objects/deals/{id}\",outcome=\"429\"} 1",
        "pcsync_remote_calls_total{api=\"partnercentral\",operation=\"UpdateOpportunity\",outcome=\"ok\"} 1",
        "pcsync_remote_call_seconds_count{api=\"partnercentral\",operation=\"GetOpportunity\"}",
        "pcsync_rate_limiter_wait_seconds_count{api=\"partnercentral\"}",
        "pcsync_rate_limiter_wait_seconds_count{api=\"hubspot\"}",
    ] {
        assert!(text.contains(expected), "{expected} missing from\n{text}");
    }
}

/// Smart notifications driven by ListOpportunities' change filter alone, every 2 s:
/// no EventBridge trigger, no linked-deal sweep.
fn changed_opportunities_alone(rules: &std::path::Path) {
    edit_pack(
        rules,
        "smart-notifications.yaml",
        &format!("  - partnercentral: Opportunity Updated\n{NOTIFICATION_SCHEDULES}"),
        "  - schedule: { every: 2s, jitter: 0s, for_each: changed_opportunities }\n",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_opportunities_schedule_notices_changes_without_events() {
    // Notifications driven by ListOpportunities' change filter alone: no EventBridge
    // trigger, no linked-deal sweep.
    let (sb, _dir, service, _config) = start_with(
        changed_opportunities_alone,
        "",
        // AWS has scored the opportunity before pcsync first looks.
        o5000002_scored_40,
    )
    .await;
    let http = reqwest::Client::new();
    http.delete(format!(
        "{}/_sandbox/partnercentral/events",
        sb.partner_central_url
    ))
    .send_ok()
    .await;
    let listed = |sb: &Sandbox| {
        sb.journal
            .calls()
            .into_iter()
            .filter(|c| c.operation == "ListOpportunities")
            .collect::<Vec<_>>()
    };
    // The first run records the baseline of the recently changed opportunities.
    eventually("a first run", &service, || async {
        (!listed(&sb).is_empty()).then_some(())
    })
    .await;
    drained(&http, &service, 1).await;
    assert!(hubspot_objects(&http, &sb, "tasks").await.is_empty());
    aws_insights(&http, &sb, "O5000002", json!({ "quality_score": 95 })).await;
    let task = eventually("the score task", &service, || async {
        hubspot_objects(&http, &sb, "tasks")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(task["associations"]["deals"][0], "40000000002");
    let call = &listed(&sb)[0];
    assert!(
        call.request["LastModifiedDate"]["AfterLastModifiedDate"].is_string(),
        "{}",
        call.request
    );
}

/// What one edit in HubSpot costs of Partner Central's daily quotas with the shipped
/// packs, as README.md's arithmetic counts it ("Partner Central's daily quotas"): the
/// GetOpportunity the update is planned and sent on, the write, and the reads of the
/// `Opportunity Updated` AWS announces it with (GetOpportunity and the AWS summary,
/// read once for every pack the event runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hubspot_edit_costs_the_reads_the_readme_counts() {
    let (sb, _dir, service, _config) = start(|_| {}, "").await;
    let http = reqwest::Client::new();
    drained(&http, &service, 0).await;
    let count = |sb: &Sandbox, operation: &str| {
        sb.journal
            .calls()
            .iter()
            .filter(|c| c.operation == operation)
            .count()
    };
    let quota = [
        "GetOpportunity",
        "GetAwsOpportunitySummary",
        "ListOpportunities",
        "UpdateOpportunity",
    ];
    let before: Vec<usize> = quota.iter().map(|op| count(&sb, op)).collect();
    // The demo's approved opportunity: submitted, so AWS keeps a summary of it.
    edit_deal(&http, &sb, "40000000003", json!({ "amount": "99000" })).await;
    eventually("the announced change to be read", &service, || async {
        (count(&sb, "GetAwsOpportunitySummary") > before[1]).then_some(())
    })
    .await;
    drained(&http, &service, 0).await;
    let spent: Vec<usize> = quota
        .iter()
        .zip(&before)
        .map(|(op, b)| count(&sb, op) - b)
        .collect();
    assert_eq!(spent, [2, 1, 0, 1], "{quota:?}");
}

/// Opportunities of the catalog no deal links, changed as the service starts.
fn three_unlinked_opportunities(sb: &Sandbox) {
    sb.partner_central.with_store(|s| {
        for i in 0..3 {
            s.create(&opportunity_input("unlinked", "Unlinked", i, "Prospect"))
                .expect("valid opportunity");
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_opportunities_schedule_reads_only_the_opportunities_deals_link() {
    let (sb, _dir, service, _config) = start_with(
        changed_opportunities_alone,
        "",
        three_unlinked_opportunities,
    )
    .await;
    let http = reqwest::Client::new();
    let unlinked: Vec<String> = opportunities(&http, &sb)
        .await
        .iter()
        .filter(|o| {
            o["PartnerOpportunityIdentifier"]
                .as_str()
                .is_some_and(|p| p.starts_with("unlinked-"))
        })
        .map(|o| o["Id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(unlinked.len(), 3);
    let reads = |sb: &Sandbox, operation: &str| {
        sb.journal
            .calls()
            .into_iter()
            .filter(|c| c.operation == operation)
            .collect::<Vec<_>>()
    };
    // Two runs have listed the catalog's changes, the first with every opportunity.
    eventually("two runs", &service, || async {
        (reads(&sb, "ListOpportunities").len() >= 2).then_some(())
    })
    .await;
    drained(&http, &service, 1).await;
    let read: Vec<String> = reads(&sb, "GetOpportunity")
        .iter()
        .filter_map(|c| c.request["Identifier"].as_str().map(str::to_string))
        .collect();
    assert!(
        read.iter().any(|id| id == "O5000002"),
        "the linked opportunities are read: {read:?}"
    );
    for id in &unlinked {
        assert!(
            !read.contains(id),
            "{id}, which no deal links, was read: {read:?}"
        );
    }
}

async fn aws_insights(http: &reqwest::Client, sb: &Sandbox, id: &str, body: Value) {
    http.post(format!(
        "{}/_sandbox/partnercentral/opportunities/{id}/insights",
        sb.partner_central_url
    ))
    .json(&body)
    .send_ok()
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reload_needs_the_admin_token_when_one_is_set() {
    let token = "reload-token-0123456789";
    let (_sb, _dir, service, _config) = start(|_| {}, &format!("admin_token: {token}\n")).await;
    let http = reqwest::Client::new();
    let url = format!("{}/admin/reload", service.url);
    for auth in [None, Some("Bearer wrong-token-0123456789")] {
        let mut request = http.post(&url);
        if let Some(a) = auth {
            request = request.header("Authorization", a);
        }
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status(), 403, "{auth:?}");
        let body: Value = answer.json().await.unwrap();
        assert!(
            body["message"].as_str().unwrap().contains("admin_token"),
            "{body}"
        );
    }
    let ok = http.post(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["reloaded"], false, "nothing changed: {body}");
}

/// `pcsync serve` with `env` as its whole environment, for a config beside a copy of
/// the shipped rules: its exit code and stderr (it must end by itself).
fn serve_with_env(config: &str, env: &[(&str, &str)]) -> (Option<i32>, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules"),
        &dir.path().join("rules"),
    );
    std::fs::write(dir.path().join("pcsync.yaml"), config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pcsync"))
        .args(["serve", "--config"])
        .arg(dir.path().join("pcsync.yaml"))
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        dir,
    )
}

/// `serve` with a config whose AWS credentials must come from the standard chain,
/// run with only `HOME` set to `home`: exit code and stderr.
fn serve_from_home(home: &std::path::Path) -> (Option<i32>, String, tempfile::TempDir) {
    let port = free_port();
    let config = format!(
        "listen: 127.0.0.1:{port}\npublic_url: http://127.0.0.1:{port}\nstate: pcsync.db\n\
         hubspot:\n  base_url: http://127.0.0.1:9\n  token: t\n  client_secret: s\n\
         partner_central:\n  catalog: Sandbox\n  endpoint_url: http://127.0.0.1:9\n"
    );
    serve_with_env(&config, &[("HOME", home.to_str().unwrap())])
}

#[test]
fn missing_aws_credentials_stop_the_start_with_what_to_set() {
    let home = tempfile::tempdir().unwrap();
    let (code, stderr, _dir) = serve_from_home(home.path());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("no AWS credentials"), "{stderr}");
    assert!(stderr.contains("AWS_ACCESS_KEY_ID"), "{stderr}");
}

#[test]
fn credentials_that_fail_to_load_are_named_with_where_they_came_from() {
    // A profile that names a source profile that is not there: the chain finds
    // ~/.aws/config and fails on it, and the message says it was that file.
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".aws")).unwrap();
    std::fs::write(
        home.path().join(".aws/config"),
        "[default]\nrole_arn = arn:aws:iam::123456789012:role/pcsync\nsource_profile = absent\n",
    )
    .unwrap();
    let (code, stderr, _dir) = serve_from_home(home.path());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot get AWS credentials from ~/.aws/config"),
        "{stderr}"
    );
}

#[test]
fn a_relative_state_file_is_the_config_files_wherever_serve_starts() {
    // A state file beside the config holding an accepted event; serve started from
    // another directory must find it (it used to open a new empty inbox there).
    let dir = tempfile::tempdir().unwrap();
    {
        use pcsync_runtime::store::{Inbox, SqliteStore};
        let store = SqliteStore::open(&dir.path().join("pcsync.db")).unwrap();
        let event =
            pcsync_engine::Event::from_hubspot(&json!({"subscriptionType": "deal.creation",
            "objectId": 1, "eventId": 1, "occurredAt": 1}))
            .unwrap();
        store.accept(&[(event, "deal:1".into())], 1).unwrap();
    }
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(
        dir.path().join("pcsync.yaml"),
        "public_url: https://sync.example.com\nstate: pcsync.db\nhubspot:\n  token: t\n  client_secret: s\npartner_central:\n  catalog: Sandbox\n",
    )
    .unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pcsync"))
        .args(["dlq", "list", "--config"])
        .arg(dir.path().join("pcsync.yaml"))
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !elsewhere.path().join("pcsync.db").exists(),
        "no new state file where it started"
    );
}

/// The status line of the answer to one keep-alive `GET /healthz` on a new
/// connection, which stays open.
async fn healthz_on_a_new_connection(addr: &str) -> (tokio::net::TcpStream, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0_u8; 1024];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        match tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk)).await {
            Ok(Ok(n @ 1..)) => answer.extend_from_slice(&chunk[..n]),
            other => panic!("no status line: {other:?}"),
        }
    }
    let text = String::from_utf8_lossy(&answer);
    let status = text.lines().next().unwrap_or_default().to_string();
    (stream, status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_configured_cap_are_answered_503() {
    let (_sb, _dir, service, _config) = start(
        |_| {},
        "http:\n  max_connections: 8\n  header_timeout: 1h\n  idle_timeout: 1h\n",
    )
    .await;
    let addr = service.url.trim_start_matches("http://").to_string();
    // Served connections stay open (keep-alive, no timer near); the cap is reached
    // by the ninth at the latest (sooner when the test's other clients hold one).
    let mut held = Vec::new();
    let refused = loop {
        let (stream, status) = healthz_on_a_new_connection(&addr).await;
        if status.starts_with("HTTP/1.1 503") {
            break held.len();
        }
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        held.push(stream);
        assert!(held.len() <= 8, "nine connections served under a cap of 8");
    };
    assert!(refused > 0, "{refused}");
    drop(held);
    let http = reqwest::Client::new();
    // Once the server has seen the closes, /metrics answers (and counts them).
    let refusals = eventually("the refusals in /metrics", &service, || async {
        let text = metrics(&http, &service).await?;
        let line = text
            .lines()
            .find(|l| l.starts_with("pcsync_http_connections_refused_total "))?;
        line.rsplit(' ').next()?.parse::<u64>().ok()
    })
    .await;
    assert!(refusals >= 1, "{refusals}");
}
