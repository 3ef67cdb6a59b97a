//! Helpers for the end-to-end tests: the sandbox with demo data, `pcsync serve` as a
//! process subscribed to it, and ways to wait for and read what happened.
// Each test binary uses its own subset.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pcsync_sandbox::{Options, Sandbox};
use serde_json::{Value, json};

/// Sends a request that must succeed.
pub trait SendOk {
    async fn send_ok(self);
}

impl SendOk for reqwest::RequestBuilder {
    async fn send_ok(self) {
        self.send().await.unwrap().error_for_status().unwrap();
    }
}

pub struct Service {
    pub child: Child,
    pub stderr: PathBuf,
    pub url: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Polls `check` every 100 ms until it gives a value, for up to 30 s.
pub async fn eventually<T, F, Fut>(what: &str, service: &Service, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}; service stderr:\n{}",
            service.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The service's `/metrics` text.
pub async fn metrics(http: &reqwest::Client, service: &Service) -> Option<String> {
    let answer = http.get(format!("{}/metrics", service.url)).send().await;
    answer.ok()?.text().await.ok()
}

pub async fn get(http: &reqwest::Client, url: &str) -> Option<Value> {
    http.get(url).send().await.ok()?.json().await.ok()
}

/// Runs `pcsync dlq ARGS --config CONFIG`: exit code, stdout, stderr.
pub fn dlq(config: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pcsync"))
        .arg("dlq")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts `pcsync serve --config` with its log appended to `stderr`.
pub fn spawn(config: &Path, stderr: &Path) -> Child {
    spawn_with_env(config, stderr, &[])
}

/// [`spawn`], with `env` set for the service (after, and over, the test AWS
/// credentials).
pub fn spawn_with_env(config: &Path, stderr: &Path, env: &[(&str, &str)]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(stderr)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_pcsync"))
        .args(["serve", "--config"])
        .arg(config)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// The sandbox with demo data and `pcsync serve` subscribed to it, in a temporary
/// directory with a copy of the shipped rule packs.
pub async fn start(
    tweak: fn(&Path),
    extra_config: &str,
) -> (Sandbox, tempfile::TempDir, Service, PathBuf) {
    start_with(tweak, extra_config, |_| {}).await
}

/// [`start`], with `before` run on the seeded sandbox before the service starts.
pub async fn start_with(
    tweak: fn(&Path),
    extra_config: &str,
    before: fn(&Sandbox),
) -> (Sandbox, tempfile::TempDir, Service, PathBuf) {
    start_with_env(tweak, extra_config, before, &[]).await
}

/// [`start_with`], with `env` set for the service ([`spawn_with_env`]).
pub async fn start_with_env(
    tweak: fn(&Path),
    extra_config: &str,
    before: fn(&Sandbox),
    env: &[(&str, &str)],
) -> (Sandbox, tempfile::TempDir, Service, PathBuf) {
    launch(tweak, extra_config, before, env, true).await
}

/// [`start`] with a config that names no SNS topic (`notifications.sns_topic_arn`
/// unset, as in the README's example).
pub async fn start_without_topic(
    tweak: fn(&Path),
    extra_config: &str,
) -> (Sandbox, tempfile::TempDir, Service, PathBuf) {
    launch(tweak, extra_config, |_| {}, &[], false).await
}

async fn launch(
    tweak: fn(&Path),
    extra_config: &str,
    before: fn(&Sandbox),
    env: &[(&str, &str)],
    with_topic: bool,
) -> (Sandbox, tempfile::TempDir, Service, PathBuf) {
    let sb = Sandbox::demo_on_loopback(Options::default()).await.unwrap();
    before(&sb);
    let notifications = if with_topic {
        format!(
            "notifications:\n  sns_topic_arn: {topic}\n  sns_endpoint_url: {sns}\n",
            topic = sb.sns.create_topic("pcsync-notifications"),
            sns = sb.sns_url,
        )
    } else {
        String::new()
    };
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules"),
        &dir.path().join("rules"),
    );
    tweak(&dir.path().join("rules"));
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let config = dir.path().join("pcsync.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\npublic_url: {url}\nrules: rules\nstate: {state}\n\
             hubspot:\n  base_url: {hs}\n  token: sandbox-token\n  client_secret: test-secret\n  app_id: 777\n\
             partner_central:\n  catalog: Sandbox\n  endpoint_url: {pc}\n\
             {notifications}\
             eventbridge:\n  shared_secret: events-secret-0123456789\nadmin_loopback: true\n{extra_config}",
            state = dir.path().join("state.db").display(),
            hs = sb.hubspot_url,
            pc = sb.partner_central_url,
        ),
    )
    .unwrap();
    let stderr = dir.path().join("stderr.log");
    let service = Service {
        child: spawn_with_env(&config, &stderr, env),
        stderr,
        url,
    };
    let http = reqwest::Client::new();
    let health = format!("{}/healthz", service.url);
    eventually("the service to answer", &service, || get(&http, &health)).await;

    // HubSpot's webhooks and Partner Central's events go to the service.
    for (url, body) in [
        (
            format!("{}/_sandbox/hubspot/webhooks", sb.hubspot_url),
            json!({ "url": format!("{}/webhooks/hubspot", service.url),
                    "client_secret": "test-secret", "app_id": 777 }),
        ),
        (
            format!("{}/_sandbox/partnercentral/events", sb.partner_central_url),
            json!({ "url": format!("{}/events/partnercentral", service.url),
                    "secret": "events-secret-0123456789" }),
        ),
    ] {
        http.post(url).json(&body).send_ok().await;
    }
    (sb, dir, service, config)
}

/// Every opportunity as the sandbox holds it.
pub async fn opportunities(http: &reqwest::Client, sb: &Sandbox) -> Vec<Value> {
    let all = get(
        http,
        &format!(
            "{}/_sandbox/partnercentral/opportunities",
            sb.partner_central_url
        ),
    )
    .await
    .unwrap_or_default();
    all["opportunities"].as_array().cloned().unwrap_or_default()
}

/// The opportunity as the sandbox holds it.
pub async fn opportunity(http: &reqwest::Client, sb: &Sandbox, id: &str) -> Option<Value> {
    opportunities(http, sb)
        .await
        .into_iter()
        .find(|o| o["Id"] == id)
}

/// Rewrites `from` to `to` in the pack file `pack` of the rules directory (a test's
/// faster schedule, say); the text must be there.
/// The schedules of the shipped smart-notifications pack, as written there.
#[allow(dead_code)]
pub const NOTIFICATION_SCHEDULES: &str = "  - schedule: { every: 30m, for_each: changed_opportunities }\n  - schedule: { every: 6h, for_each: linked_deals, reads: [aws_summary] }\n";

/// Smart notifications driven by events only, after a baseline: the summary poll
/// sweeps once at start (its next sweep is 6 hours away) and the
/// changed-opportunities run is left out.
#[allow(dead_code)]
pub fn notifications_after_one_sweep(rules: &Path) {
    edit_pack(
        rules,
        "smart-notifications.yaml",
        NOTIFICATION_SCHEDULES,
        "  - schedule: { every: 6h, jitter: 0s, for_each: linked_deals, reads: [aws_summary] }\n",
    )
}

/// AWS scored the demo's O5000002 40 (before pcsync first looks).
#[allow(dead_code)]
pub fn o5000002_scored_40(sb: &Sandbox) {
    sb.partner_central
        .with_store(|s| {
            s.edit_summary("O5000002", |v| {
                v["Insights"]["OpportunityQuality"]["Score"] = json!(40);
            })
        })
        .unwrap();
}

/// `n` opportunities at `Prospect` (so every edit is allowed), each linked from a deal
/// (`{name} {i} on AWS`, USD) that holds `amount(i)`: a bench's (deal, opportunity) pairs.
pub fn seed_linked(
    sb: &Sandbox,
    tag: &str,
    name: &str,
    n: usize,
    amount: impl Fn(usize) -> String,
) -> Vec<(String, String)> {
    let opportunities: Vec<String> = sb.partner_central.with_store(|s| {
        (0..n)
            .map(|i| {
                let created = s
                    .create(&opportunity_input(tag, name, i, "Prospect"))
                    .expect("valid opportunity");
                created["Id"].as_str().unwrap().to_string()
            })
            .collect()
    });
    sb.hubspot.with_store(|s| {
        opportunities
            .into_iter()
            .enumerate()
            .map(|(i, opportunity)| {
                let deal = s.insert(
                    "deals",
                    std::collections::BTreeMap::from([
                        ("dealname".to_string(), format!("{name} {i} on AWS")),
                        ("dealstage".to_string(), "appointmentscheduled".to_string()),
                        ("amount".to_string(), amount(i)),
                        ("deal_currency_code".to_string(), "USD".to_string()),
                        ("aws_opportunity_id".to_string(), opportunity.clone()),
                    ]),
                );
                (deal.id, opportunity)
            })
            .collect()
    })
}

/// A CreateOpportunity body for a bench's `i`th opportunity (`tag`: `burst-7`,
/// `name`: `Burst 7`) at `stage`, with everything AWS requires.
#[allow(dead_code)]
pub fn opportunity_input(tag: &str, name: &str, i: usize, stage: &str) -> Value {
    json!({
        "Catalog": "Sandbox",
        "ClientToken": format!("{tag}-{i}"),
        "Origin": "Partner Referral",
        "OpportunityType": "Net New Business",
        "PartnerOpportunityIdentifier": format!("{tag}-{i}"),
        "PrimaryNeedsFromAws": ["Co-Sell - Deal Support"],
        "Customer": {"Account": {"CompanyName": format!("{name} {i}"), "Industry": "Software and Internet",
            "WebsiteUrl": format!("https://{tag}{i}.example"),
            "Address": {"CountryCode": "US", "PostalCode": "98101", "StateOrRegion": "Washington", "City": "Seattle"}}},
        "Project": {"Title": format!("{name} {i} on AWS"),
            "CustomerBusinessProblem": format!("{name} needs to move its order system to AWS this year"),
            "CustomerUseCase": "Migration/Database Migration", "DeliveryModels": ["SaaS or PaaS"],
            "SalesActivities": ["Initialized discussions with customer"],
            "ExpectedCustomerSpend": [{"Amount": "1000", "CurrencyCode": "USD", "Frequency": "Monthly", "TargetCompany": "AWS"}]},
        "Marketing": {"Source": "None"},
        "LifeCycle": {"Stage": stage, "TargetCloseDate": "2030-06-30"},
    })
}

pub fn edit_pack(rules: &Path, pack: &str, from: &str, to: &str) {
    let path = rules.join(pack);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "`{from}` is not in {pack}");
    std::fs::write(&path, text.replace(from, to)).unwrap();
}

/// The UpdateOpportunity calls the sandbox answered with `status`.
pub fn updates(sb: &Sandbox, status: u16) -> Vec<Value> {
    sb.journal
        .calls()
        .into_iter()
        .filter(|c| c.operation == "UpdateOpportunity" && c.status == status)
        .map(|c| c.request)
        .collect()
}

/// Delivers `body` to the service's webhook endpoint as HubSpot would, signed (v3)
/// with the test app's secret.
pub async fn deliver_signed(
    http: &reqwest::Client,
    service: &Service,
    body: &str,
) -> reqwest::Response {
    let url = format!("{}/webhooks/hubspot", service.url);
    post_signed(http, &url, "test-secret", body).await.unwrap()
}

/// POSTs `body` to the webhook endpoint `url` as HubSpot would, signed (v3) with
/// `secret` at the current time; the answer, or why there was none.
pub async fn post_signed(
    http: &reqwest::Client,
    url: &str,
    secret: &str,
    body: &str,
) -> reqwest::Result<reqwest::Response> {
    let ts = jiff::Timestamp::now().as_millisecond().to_string();
    let sig = pcsync_adapters::hubspot::signature::v3(secret, "POST", url, body.as_bytes(), &ts);
    http.post(url)
        .header("content-type", "application/json")
        .header("X-HubSpot-Signature-v3", sig)
        .header("X-HubSpot-Request-Timestamp", ts)
        .body(body.to_string())
        .send()
        .await
}

/// Whether every opportunity in `want` (id → amount) holds that amount as its
/// first expected monthly spend (compared as numbers: `1000` and `1000.00` agree).
pub fn opportunities_hold_amounts<'a>(
    sb: &Sandbox,
    want: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> bool {
    sb.partner_central.with_store(|s| {
        want.into_iter().all(|(id, amount)| {
            s.opportunity(id).is_some_and(|o| {
                o.record["Project"]["ExpectedCustomerSpend"][0]["Amount"]
                    .as_str()
                    .is_some_and(|a| a.parse::<f64>().ok() == amount.parse::<f64>().ok())
            })
        })
    })
}

/// Waits until the inbox has nothing pending or running and at least `done` events
/// are done.
pub async fn drained(http: &reqwest::Client, service: &Service, done: u64) -> Value {
    let health = format!("{}/healthz", service.url);
    eventually("the inbox to drain", service, || async {
        let h = get(http, &health).await?;
        (h["inbox"]["pending"] == 0
            && h["inbox"]["running"] == 0
            && h["inbox"]["done"].as_u64()? >= done)
            .then_some(h)
    })
    .await
}

/// The sandbox's HubSpot objects of `kind` (`deals`, `notes`, `tasks`).
pub async fn hubspot_objects(http: &reqwest::Client, sb: &Sandbox, kind: &str) -> Vec<Value> {
    let all = get(http, &format!("{}/_sandbox/hubspot/{kind}", sb.hubspot_url))
        .await
        .unwrap_or_default();
    all[kind].as_array().cloned().unwrap_or_default()
}

/// The demo's first deal moves to `qualifiedtobuy` in HubSpot's UI.
pub async fn qualify_demo_deal(http: &reqwest::Client, sb: &Sandbox) {
    edit_deal(
        http,
        sb,
        "40000000001",
        json!({ "dealstage": "qualifiedtobuy" }),
    )
    .await;
}

/// Waits for that edit to reach the deal's opportunity (`Qualified`).
pub async fn demo_opportunity_qualified(http: &reqwest::Client, sb: &Sandbox, service: &Service) {
    eventually("the stage to reach Partner Central", service, || async {
        let o = opportunity(http, sb, "O5000001").await?;
        (o["LifeCycle"]["Stage"] == "Qualified").then_some(())
    })
    .await;
}

/// A rep edits `deal` in HubSpot's UI: the sandbox changes it and sends the webhooks.
pub async fn edit_deal(http: &reqwest::Client, sb: &Sandbox, deal: &str, properties: Value) {
    http.patch(format!("{}/_sandbox/hubspot/deals/{deal}", sb.hubspot_url))
        .json(&json!({ "properties": properties }))
        .send_ok()
        .await;
}

/// Injects a fault into the sandbox's next matching calls.
pub async fn inject(http: &reqwest::Client, sb: &Sandbox, fault: Value) {
    http.post(format!("{}/_sandbox/faults", sb.partner_central_url))
        .json(&fault)
        .send_ok()
        .await;
}

/// A sales rep adds a company in HubSpot (the sandbox's control API); its id.
pub async fn create_company(http: &reqwest::Client, sb: &Sandbox, properties: Value) -> String {
    let created: Value = http
        .post(format!("{}/_sandbox/hubspot/companies", sb.hubspot_url))
        .json(&json!({ "properties": properties }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["id"].as_str().unwrap().to_string()
}

/// `pcsync serve --config CONFIG` for a benchmark, with fake AWS credentials and the
/// log at `log` (`PCSYNC_BENCH_LOG` overrides it) into `stderr` when given;
/// returns once `url` answers its health check.
#[allow(dead_code)]
pub async fn serve_for_bench(
    config: &Path,
    url: &str,
    log: &str,
    stderr: Option<&Path>,
) -> std::process::Child {
    let child = Command::new(env!("CARGO_BIN_EXE_pcsync"))
        .args(["serve", "--config"])
        .arg(config)
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env(
            "PCSYNC_LOG",
            std::env::var("PCSYNC_BENCH_LOG").unwrap_or(log.into()),
        )
        .stdout(std::process::Stdio::null())
        .stderr(match stderr {
            Some(path) => std::process::Stdio::from(std::fs::File::create(path).unwrap()),
            None => std::process::Stdio::inherit(),
        })
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let started = std::time::Instant::now();
    while http.get(format!("{url}/healthz")).send().await.is_err() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "pcsync serve did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    child
}

/// AWS moves the opportunity `id` to `Launched`, as its own update would.
#[allow(dead_code)]
pub fn launch_opportunity(s: &mut pcsync_sandbox::partner_central::Store, id: &str) {
    use pcsync_adapters::partner_central::{READ_ONLY_LIFECYCLE, UPDATE_MEMBERS};
    let o = s
        .get(&json!({ "Catalog": "Sandbox", "Identifier": id }))
        .unwrap();
    let mut input = serde_json::Map::new();
    for member in UPDATE_MEMBERS {
        if let Some(v) = o.get(*member) {
            input.insert(member.to_string(), v.clone());
        }
    }
    let lifecycle = input["LifeCycle"].as_object_mut().unwrap();
    for member in READ_ONLY_LIFECYCLE {
        lifecycle.remove(*member);
    }
    lifecycle.insert("Stage".into(), json!("Launched"));
    input.insert("Catalog".into(), json!("Sandbox"));
    input.insert("Identifier".into(), json!(id));
    input.insert("LastModifiedDate".into(), o["LastModifiedDate"].clone());
    s.update(&Value::Object(input)).unwrap();
}
