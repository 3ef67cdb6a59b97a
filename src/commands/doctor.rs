//! `pcsync doctor --config FILE`: checks what a running pcsync depends on, one line
//! each, with the fix for each failure: the config and rule packs, the state file,
//! the HubSpot token and the custom deal properties, the clock, Partner Central's
//! credentials and catalog (one read), the SNS topic, and the public URL. It changes
//! nothing and sends nothing but reads. Exit status: 0 when nothing failed, 1 when
//! something did, 2 when the config itself does not load.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use pcsync_adapters::hubspot::client::HubSpotClient;
use pcsync_adapters::partner_central::PartnerCentralClient;
use pcsync_engine::MissingEnv;
use pcsync_runtime::store::{Inbox, SqliteStore};

/// One check's outcome.
enum Outcome {
    Ok(String),
    Fail { what: String, fix: String },
    Skip(String),
}

fn fail(what: impl Into<String>, fix: impl Into<String>) -> Outcome {
    Outcome::Fail {
        what: what.into(),
        fix: fix.into(),
    }
}

/// How far the clock may be from HubSpot's: HubSpot refuses webhook signatures, and
/// AWS SigV4 requests, more than five minutes off; a minute leaves room.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

pub fn run(config_path: &Path) -> ExitCode {
    let config = match super::checked_config(config_path, MissingEnv::Error) {
        Ok(config) => config,
        Err(shown) => {
            eprint!("{shown}");
            println!(
                "FAIL  config: {} does not load (above)",
                config_path.display()
            );
            return ExitCode::from(super::EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pcsync doctor: cannot start the runtime: {e}");
            return ExitCode::from(super::EXIT_USAGE);
        }
    };
    let mut failed = false;
    let mut report = |name: &str, outcome: Outcome| match outcome {
        Outcome::Ok(detail) => println!("ok    {name}: {detail}"),
        Outcome::Skip(why) => println!("skip  {name}: {why}"),
        Outcome::Fail { what, fix } => {
            failed = true;
            println!("FAIL  {name}: {what}\n      fix: {fix}");
        }
    };
    report(
        "config",
        Outcome::Ok(format!("{} checks", config_path.display())),
    );

    let rules_dir = config.rules_dir(config_path);
    let rules = pcsync_runtime::service::reload::load_dir(&rules_dir);
    report(
        "rule packs",
        match &rules {
            Ok(rules) => Outcome::Ok(format!(
                "{} packs in {} check",
                rules.packs.len(),
                rules_dir.display()
            )),
            Err(shown) => fail(
                format!(
                    "the packs in {} do not check:\n{shown}",
                    rules_dir.display()
                ),
                format!(
                    "run `pcsync check {}` and fix what it says",
                    rules_dir.display()
                ),
            ),
        },
    );

    let state = config.state_path(config_path);
    report("state file", check_state(&state));

    let hubspot = &config.hubspot;
    let client = HubSpotClient::new(
        &hubspot.base_url,
        &hubspot.token,
        hubspot.rate_limit_per_10s,
    );
    let (token, properties) = runtime.block_on(async {
        match client.deal_property_names().await {
            Ok(names) => {
                let wanted = rules
                    .as_ref()
                    .map(super::setup::custom_properties)
                    .unwrap_or_default();
                let missing: Vec<&str> = wanted
                    .iter()
                    .map(|p| p.name.as_str())
                    .filter(|n| !names.iter().any(|have| have == n))
                    .collect();
                let properties = if missing.is_empty() {
                    Outcome::Ok(format!("all {} the packs use exist", wanted.len()))
                } else {
                    fail(
                        format!("missing: {}", missing.join(", ")),
                        format!("run `pcsync setup hubspot --config {}`", config_path.display()),
                    )
                };
                (Outcome::Ok("reads deal properties".into()), properties)
            }
            Err(e) => (
                fail(
                    format!("{e}"),
                    "give pcsync a private app token with the crm.objects.deals.read/write and crm.schemas.deals.read/write scopes (hubspot.token)",
                ),
                Outcome::Skip("the token does not read them".into()),
            ),
        }
    });
    report("hubspot token", token);
    report("hubspot properties", properties);
    report("clock", runtime.block_on(check_clock(&hubspot.base_url)));
    report(
        "hubspot webhooks",
        Outcome::Skip(format!(
            "HubSpot's subscription API needs the developer account's key, which pcsync does not hold; `pcsync setup hubspot` lists the subscriptions the packs need (target {}/webhooks/hubspot)",
            pcsync_engine::redact::mask_urls(&config.public_url)
        )),
    );

    let pc = &config.partner_central;
    report(
        "partner central",
        runtime.block_on(async {
            let aws = pcsync_adapters::aws_sdk_config(
                &pc.region,
                pc.endpoint_url.as_deref(),
                None,
                pcsync_adapters::AwsTimeouts {
                    attempt: pc.call_timeout.0,
                },
            )
            .await;
            if let Err(why) = pcsync_adapters::check_credentials(&aws, Duration::from_secs(10)).await
            {
                return fail(why, "see the message: the AWS credential chain found nothing usable");
            }
            let client = PartnerCentralClient::from_config(&aws, pc.catalog.as_str());
            match client.solution("S-0000000").await {
                Ok(_) => Outcome::Ok(format!(
                    "credentials work and read the {} catalog (one ListSolutions)",
                    pc.catalog.as_str()
                )),
                Err(e) if e.code == "AccessDeniedException" => fail(
                    e.to_string(),
                    format!(
                        "allow the role the partnercentral actions pcsync calls on catalog {} (deploy/cloudformation.yaml's TaskRole lists them), and link the account to Partner Central",
                        pc.catalog.as_str()
                    ),
                ),
                Err(e) => fail(
                    e.to_string(),
                    "check partner_central.region (us-east-1) and the network path to AWS",
                ),
            }
        }),
    );

    let notifications = &config.notifications;
    report(
        "sns topic",
        match &notifications.sns_topic_arn {
            None => Outcome::Skip("no notifications.sns_topic_arn".into()),
            Some(arn) if arn.split(':').nth(3) != Some(pc.region.as_str()) => fail(
                format!("{arn} is not in {}", pc.region),
                "use a topic in partner_central.region, where pcsync publishes",
            ),
            Some(arn) => Outcome::Skip(format!(
                "{arn}: not checked, since checking would send a message or need sns:GetTopicAttributes, which pcsync's role does not hold; the first notification tells"
            )),
        },
    );

    report(
        "public url",
        runtime.block_on(check_public_url(&config.public_url)),
    );
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The state file opens and takes a write (a probe row), without disturbing a
/// running service (SQLite's WAL lets both write in turn).
fn check_state(path: &Path) -> Outcome {
    let fix = format!(
        "make {} writable by the user pcsync runs as (and its folder, for the -wal and -shm files)",
        path.display()
    );
    if !path.exists() {
        let folder = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let probe = folder.join(format!(".pcsync-doctor-{}", std::process::id()));
        return match std::fs::write(&probe, b"") {
            Ok(()) => {
                let _ = std::fs::remove_file(&probe);
                Outcome::Ok(format!(
                    "{} does not exist yet; its folder is writable",
                    path.display()
                ))
            }
            Err(e) => fail(
                format!("cannot create files in {}: {e}", folder.display()),
                fix,
            ),
        };
    }
    match SqliteStore::open(path) {
        Ok(store) => match store.check_writable(jiff::Timestamp::now().as_millisecond()) {
            Ok(()) => match store.stats() {
                Ok(s) => Outcome::Ok(format!(
                    "{} takes writes ({} pending, {} dead letters)",
                    path.display(),
                    s.pending,
                    s.dead
                )),
                Err(e) => fail(e.to_string(), fix),
            },
            Err(e) => fail(e.to_string(), fix),
        },
        Err(e) => fail(e.to_string(), fix),
    }
}

/// The local clock against the `Date` HubSpot answers with.
async fn check_clock(base_url: &str) -> Outcome {
    let asked = jiff::Timestamp::now();
    let answer = reqwest::Client::new()
        .get(base_url)
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    let date = answer
        .ok()
        .and_then(|r| r.headers().get(reqwest::header::DATE).cloned())
        .and_then(|d| d.to_str().ok().map(str::to_string))
        .and_then(|d| jiff::fmt::rfc2822::parse(&d).ok().map(|z| z.timestamp()));
    let Some(theirs) = date else {
        let base_url = pcsync_engine::redact::mask_urls(base_url);
        return Outcome::Skip(format!("{base_url} gave no Date to compare with"));
    };
    let skew = theirs.duration_since(asked).unsigned_abs();
    // The answer's Date has whole seconds.
    if skew <= CLOCK_SKEW + Duration::from_secs(1) {
        Outcome::Ok(format!("within {}s of HubSpot's", skew.as_secs()))
    } else {
        fail(
            format!("{}s off HubSpot's", skew.as_secs()),
            "run an NTP client (chrony, systemd-timesyncd): HubSpot and AWS refuse requests signed more than five minutes off",
        )
    }
}

/// `public_url` reaches a pcsync from here.
async fn check_public_url(public_url: &str) -> Outcome {
    let url = format!("{}/healthz", public_url.trim_end_matches('/'));
    let answer = reqwest::Client::new()
        .get(&url)
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    // Shown without its user info (a password in the URL).
    let url = pcsync_engine::redact::mask_urls(&url).into_owned();
    match answer {
        Ok(r) => {
            let status = r.status();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            if body.get("rules_version").is_some() {
                Outcome::Ok(format!("{url} answers as pcsync ({status})"))
            } else {
                fail(
                    format!("{url} answered {status}, not as pcsync"),
                    "point public_url's host at this service (the load balancer's target, the proxy's upstream)",
                )
            }
        }
        Err(e) => fail(
            format!("{url}: {e}"),
            "start the service, and make public_url reach it: HubSpot signs and sends webhooks to that address",
        ),
    }
}
