//! The Solutions API of `pcsync serve`, over HTTP against the sandbox's catalog:
//! listing with filters and pages, search with relevance scores, one solution by id,
//! CORS for the configured origins, and a catalog that follows Partner Central.

mod common;

use common::*;
use pcsync_sandbox::Sandbox;
use serde_json::{Value, json};

const CONFIG: &str =
    "solutions:\n  refresh: 2s\n  cors_allow_origins: [\"https://app.example.com\"]\n";

/// The first read of the catalog fails (Partner Central refuses it once).
fn refuse_first_list(sb: &Sandbox) {
    sb.journal.inject(
        serde_json::from_value(json!({
            "service": "partnercentral", "operation": "ListSolutions", "status": 400
        }))
        .unwrap(),
    );
    // Enough solutions that ListSolutions takes two pages of 100.
    sb.partner_central.with_store(|s| {
        for i in 0..130 {
            s.add_solution(
                "Sandbox",
                &format!("S-9{i:06}"),
                &format!("Bulk Offering {i:03}"),
                "Bulk Category",
                "Active",
            );
        }
    });
}

async fn status_and_body(
    http: &reqwest::Client,
    url: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = http.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

/// Waits for the service's first successful read of the catalog.
async fn catalog_read(http: &reqwest::Client, service: &Service) {
    let url = format!("{}/solutions", service.url);
    eventually("the catalog to be read", service, || async {
        let (status, _, _) = status_and_body(http, &url).await;
        (status == 200).then_some(())
    })
    .await;
}

/// ListSolutions calls the sandbox answered so far.
fn list_solutions_calls(sb: &Sandbox) -> usize {
    sb.journal
        .calls()
        .iter()
        .filter(|c| c.operation == "ListSolutions")
        .count()
}

/// A solution published in Partner Central.
async fn publish(http: &reqwest::Client, sb: &Sandbox, id: &str, name: &str, category: &str) {
    http.post(format!(
        "{}/_sandbox/partnercentral/solutions",
        sb.partner_central_url
    ))
    .json(&json!({ "id": id, "name": name, "category": category }))
    .send_ok()
    .await;
}

fn ids(page: &Value) -> Vec<String> {
    page["solutions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn solutions_are_listed_searched_and_fetched_from_the_cached_catalog() {
    let (sb, _dir, service, _config) = start_with(|_| {}, CONFIG, refuse_first_list).await;
    let http = reqwest::Client::new();
    let api = |path: &str| format!("{}{path}", service.url);

    // Before the catalog is read: 503 with the reason and when to come back. (The
    // first read waits for the read limiter, which starts drained, so the refusal
    // may take a moment to be the reason given.)
    let (status, headers, body) =
        eventually("the first catalog read to fail", &service, || async {
            let (status, headers, body) = status_and_body(&http, &api("/solutions")).await;
            body["message"]
                .as_str()?
                .contains("ValidationException")
                .then_some((status, headers, body))
        })
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(headers["retry-after"], "5");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("ValidationException"),
        "{body}"
    );
    let first: Value = eventually("the catalog to load", &service, || async {
        let (status, _, body) = status_and_body(&http, &api("/solutions?limit=5")).await;
        (status == 200).then_some(body)
    })
    .await;

    // Name order, `limit`, and `nextToken` through every page of the active solutions
    // (the demo's six and the 130 seeded, across two ListSolutions pages).
    assert_eq!(first["count"], 5);
    assert_eq!(
        first["solutions"][0],
        json!({ "id": "S-0000001", "name": "Acme Data Lake Accelerator",
                "category": "Software Product", "status": "Active" })
    );
    let mut seen = ids(&first);
    let mut token = first["nextToken"].as_str().map(str::to_string);
    while let Some(t) = token {
        let (status, _, page) =
            status_and_body(&http, &api(&format!("/solutions?limit=40&nextToken={t}"))).await;
        assert_eq!(status, 200, "{page}");
        assert!(page["count"].as_u64().unwrap() <= 40);
        seen.extend(ids(&page));
        token = page["nextToken"].as_str().map(str::to_string);
    }
    assert_eq!(seen.len(), 136, "{seen:?}");
    let unique: std::collections::HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), 136);
    assert!(
        !seen.contains(&"S-0000006".to_string()),
        "inactive left out"
    );
    let (_, _, all) = status_and_body(&http, &api("/solutions")).await;
    assert_eq!(all["count"], 100, "limit defaults to the maximum, 100");
    assert!(all["nextToken"].is_string());

    // Filters: category and status, case-insensitive.
    let (_, _, consulting) =
        status_and_body(&http, &api("/solutions?category=consulting%20service")).await;
    assert_eq!(ids(&consulting), ["S-0000002"]);
    assert!(consulting.get("nextToken").is_none());
    let (_, _, inactive) = status_and_body(&http, &api("/solutions?status=Inactive")).await;
    assert_eq!(ids(&inactive), ["S-0000006"]);

    // Bad parameters: 400 with what is wrong.
    for bad in [
        "/solutions?limit=0",
        "/solutions?limit=101",
        "/solutions?limit=ten",
        "/solutions?nextToken=forged!",
        "/solutions/search",
        "/solutions/search?q=%20",
    ] {
        let (status, _, body) = status_and_body(&http, &api(bad)).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            body["message"].as_str().unwrap().len() > 10,
            "{bad}: {body}"
        );
    }

    // Search: scored 0–100, best first, typo-tolerant, filtered by category.
    let (_, _, found) = status_and_body(&http, &api("/solutions/search?q=database")).await;
    assert_eq!(found["query"], "database");
    assert_eq!(found["solutions"][0]["id"], "S-0000002", "{found}");
    let scores: Vec<u64> = found["solutions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["relevanceScore"].as_u64().unwrap())
        .collect();
    assert!(scores.iter().all(|s| (1..=100).contains(s)), "{found}");
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{found}");
    assert_eq!(found["count"], scores.len());
    let (_, _, typo) = status_and_body(&http, &api("/solutions/search?q=databse%20migraton")).await;
    assert_eq!(typo["solutions"][0]["id"], "S-0000002", "{typo}");
    assert!(typo["solutions"][0]["relevanceScore"].as_u64().unwrap() < 100);
    let (_, _, prefix) = status_and_body(&http, &api("/solutions/search?q=kube")).await;
    assert_eq!(ids(&prefix), ["S-0000003"], "{prefix}");
    let (_, _, bulk) = status_and_body(&http, &api("/solutions/search?q=bulk")).await;
    assert_eq!(bulk["count"], 50, "limit defaults to 50");
    let (_, _, narrowed) = status_and_body(
        &http,
        &api("/solutions/search?q=bulk&category=Software%20Product&limit=3"),
    )
    .await;
    assert_eq!(narrowed["count"], 0, "{narrowed}");
    let (_, _, none) = status_and_body(&http, &api("/solutions/search?q=zzzzqqq")).await;
    assert_eq!(
        none,
        json!({ "solutions": [], "count": 0, "query": "zzzzqqq" })
    );

    // One solution; an unknown id is a JSON 404.
    let (status, headers, one) = status_and_body(&http, &api("/solutions/S-0000002")).await;
    assert_eq!(status, 200);
    assert!(headers.contains_key("last-modified"));
    assert_eq!(one["name"], "Database Migration Factory");
    assert_eq!(
        one["arn"],
        "arn:aws:partnercentral:us-east-1:123456789012:catalog/Sandbox/solution/S-0000002"
    );
    assert!(one["createdDate"].is_string(), "{one}");
    assert!(one.as_object().unwrap().contains_key("description"));
    let (status, _, missing) = status_and_body(&http, &api("/solutions/S-7777777")).await;
    assert_eq!(status, 404);
    assert_eq!(missing["error"], "not found");

    // Listing and searching never reached Partner Central: every ListSolutions call
    // is a refresh reading the whole catalog, 100 at a time, or the one lookup of the
    // unknown id (it may have been published since the last read).
    let lists: Vec<_> = sb
        .journal
        .calls()
        .into_iter()
        .filter(|c| c.operation == "ListSolutions")
        .collect();
    let lookups = lists
        .iter()
        .filter(|c| c.request.get("Identifier").is_some())
        .collect::<Vec<_>>();
    assert_eq!(lookups.len(), 1, "{lookups:?}");
    assert_eq!(lookups[0].request["Identifier"], json!(["S-7777777"]));
    assert!(
        lists.iter().all(|c| c.request.get("Status").is_none()
            && (c.request["MaxResults"] == 100 || c.request.get("Identifier").is_some())),
        "{:?}",
        lists.iter().map(|c| &c.request).collect::<Vec<_>>()
    );
    assert!(
        sb.journal
            .calls()
            .iter()
            .all(|c| c.operation != "GetSolution")
    );

    // A solution added in Partner Central shows up after the next refresh.
    publish(
        &http,
        &sb,
        "S-0000042",
        "Quantum Ledger Advisory",
        "Consulting Service",
    )
    .await;
    eventually("the new solution to be served", &service, || async {
        let (status, _, _) = status_and_body(&http, &api("/solutions/S-0000042")).await;
        (status == 200).then_some(())
    })
    .await;
    let text = metrics(&http, &service).await.unwrap();
    assert!(
        text.contains("pcsync_solution_catalog_refreshes_total{result=\"error\"} 1"),
        "{text}"
    );
    assert!(text.contains("pcsync_solution_catalog_size 138"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_on_allowed_origins_may_call_the_solutions_api() {
    let (_sb, _dir, service, _config) = start(|_| {}, CONFIG).await;
    let http = reqwest::Client::new();
    let url = format!("{}/solutions/search?q=data", service.url);
    eventually("the catalog to load", &service, || async {
        let r = http.get(&url).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;

    let allowed = http
        .get(&url)
        .header("Origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let preflight = http
        .request(reqwest::Method::OPTIONS, &url)
        .header("Origin", "https://app.example.com")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(
        preflight.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("GET")
    );

    let other = http
        .get(&url)
        .header("Origin", "https://evil.example.net")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    // CORS is for the Solutions API only, not for webhooks or admin endpoints.
    let rules = http
        .get(format!("{}/rules", service.url))
        .header("Origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert!(rules.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_solution_is_found_at_once_and_unknown_ids_cost_one_read_an_interval() {
    let (sb, _dir, service, _config) = start(
        |_| {},
        "solutions:\n  refresh: 1h\n  unknown_id_lookup: 1h\n",
    )
    .await;
    let http = reqwest::Client::new();
    let api = |path: &str| format!("{}{path}", service.url);
    catalog_read(&http, &service).await;

    // Published in Partner Central after the catalog was read (the next read is an
    // hour away): found by id at once, and then listed too.
    publish(
        &http,
        &sb,
        "S-0000042",
        "Quantum Ledger Advisory",
        "Consulting Service",
    )
    .await;
    let asked = std::time::Instant::now();
    let (status, _, one) = status_and_body(&http, &api("/solutions/s-0000042")).await;
    assert_eq!(status, 200, "{one}");
    assert!(asked.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(one["name"], "Quantum Ledger Advisory");
    let (_, _, all) = status_and_body(&http, &api("/solutions?limit=100")).await;
    assert!(ids(&all).contains(&"S-0000042".to_string()), "{all}");

    // A burst of 1,000 unknown ids, 50 at a time: all 404, and no read of Partner
    // Central within the interval (the lookup above was the interval's one).
    let before = list_solutions_calls(&sb);
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(50));
    let mut asks = tokio::task::JoinSet::new();
    for i in 0..1_000 {
        let (http, url, gate) = (
            http.clone(),
            api(&format!("/solutions/S-{}", 8_000_000 + i)),
            gate.clone(),
        );
        asks.spawn(async move {
            let _turn = gate.acquire().await.unwrap();
            http.get(url).send().await.unwrap().status().as_u16()
        });
    }
    while let Some(status) = asks.join_next().await {
        assert_eq!(status.unwrap(), 404);
    }
    assert_eq!(
        list_solutions_calls(&sb),
        before,
        "unknown ids read the catalog"
    );

    // Answers carry an ETag and Cache-Control; a client holding the body gets 304.
    let r = http.get(api("/solutions/S-0000002")).send().await.unwrap();
    let etag = r.headers()["etag"].clone();
    assert_eq!(r.headers()["cache-control"], "public, max-age=60");
    let again = http
        .get(api("/solutions/S-0000002"))
        .header("if-none-match", etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 304);
    assert_eq!(again.headers()["etag"], etag);
    assert!(again.bytes().await.unwrap().is_empty());
    let other = http.get(api("/solutions/S-0000003")).send().await.unwrap();
    assert_ne!(other.headers()["etag"], etag);
    let missing = http.get(api("/solutions/X")).send().await.unwrap();
    assert_eq!(missing.headers()["cache-control"], "no-store");

    // The operator can have the catalog read now.
    let before = list_solutions_calls(&sb);
    let forced = http
        .post(api("/admin/solutions/refresh"))
        .send()
        .await
        .unwrap();
    assert_eq!(forced.status().as_u16(), 200);
    let forced: Value = forced.json().await.unwrap();
    assert_eq!(forced["refreshed"], true, "{forced}");
    assert!(list_solutions_calls(&sb) > before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_past_its_age_answers_at_once_and_reads_the_catalog_behind() {
    let (sb, _dir, service, _config) = start(
        |_| {},
        "solutions:\n  refresh: 1h\n  revalidate_after: 1s\n",
    )
    .await;
    let http = reqwest::Client::new();
    let api = |path: &str| format!("{}{path}", service.url);
    catalog_read(&http, &service).await;
    publish(
        &http,
        &sb,
        "S-0000043",
        "Zebra Analytics",
        "Software Product",
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    // Past its age, the list still answers from the copy it has...
    let (status, headers, stale) = status_and_body(&http, &api("/solutions?limit=100")).await;
    assert_eq!(status, 200);
    assert_eq!(headers["cache-control"], "public, max-age=1");
    assert!(!ids(&stale).contains(&"S-0000043".to_string()));
    // ...and reads the catalog behind it, so the next lists have the new solution.
    eventually("the catalog to be read again", &service, || async {
        let (_, _, all) = status_and_body(&http, &api("/solutions?limit=100")).await;
        ids(&all).contains(&"S-0000043".to_string()).then_some(())
    })
    .await;
}
