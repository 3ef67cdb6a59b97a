//! `pcsync serve`: the service. Ingest (HubSpot webhooks, EventBridge events) commits
//! events to the SQLite inbox; the worker plans and applies them; the rule-pack
//! directory is watched and reloaded when it changes (see `service::reload`).
//!
//! `--sandbox` needs no config: it starts the embedded sandbox with demo data, points
//! the clients at it, and subscribes the service to its webhooks and events.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use pcsync_adapters::hubspot::client::HubSpotClient;
use pcsync_adapters::partner_central::PartnerCentralClient;
use pcsync_adapters::quota::{DailyLimits, QuotaClass};
use pcsync_adapters::sns::SnsPublisher;
use pcsync_engine::MissingEnv;
use pcsync_runtime::config::ServiceConfig;
use serde_json::json;

use super::EXIT_USAGE;
use crate::cli::LogFormat;
use pcsync_runtime::service::admin;
use pcsync_runtime::service::channels::Channels;
use pcsync_runtime::service::execute::ApiExecutor;
use pcsync_runtime::service::ingest::{self, Ingest};
use pcsync_runtime::service::metrics::Metrics;
use pcsync_runtime::service::quota;
use pcsync_runtime::service::reload::RuleHost;
use pcsync_runtime::service::solutions::Solutions;
use pcsync_runtime::service::worker::Worker;
use pcsync_runtime::store::{SqliteStore, Store};

/// Where `serve --sandbox` listens: the service, and the sandbox's Partner Central
/// (HubSpot and SNS on the next two ports, as `pcsync sandbox`).
pub struct SandboxAddrs {
    /// The service.
    pub service: String,
    /// The sandbox.
    pub sandbox: String,
}
/// The demo HubSpot app.
const SANDBOX_APP_ID: u64 = 1_160_452;
const SANDBOX_CLIENT_SECRET: &str = "sandbox-client-secret";
const SANDBOX_EVENTS_SECRET: &str = "sandbox-eventbridge-secret";

pub fn run(config: Option<&Path>, sandbox: Option<SandboxAddrs>, log: LogFormat) -> ExitCode {
    init_logs(log);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pcsync serve: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    runtime.block_on(async {
        match serve(config, sandbox).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("pcsync serve: {message}");
                ExitCode::from(EXIT_USAGE)
            }
        }
    })
}

async fn serve(config_path: Option<&Path>, sandbox: Option<SandboxAddrs>) -> Result<(), String> {
    // The sandbox lives as long as the service.
    let mut _sandbox = None;
    let (config, rules_dir, state, static_credentials) = if let Some(addrs) = &sandbox {
        let started = start_sandbox(&addrs.sandbox).await?;
        let config = sandbox_config(&started, &addrs.service);
        let rules_dir = match config_path {
            Some(path) => load(path)?.rules_dir(path),
            None => PathBuf::from(&config.rules),
        };
        _sandbox = Some(started);
        let state = PathBuf::from(&config.state);
        (config, rules_dir, state, Some(("sandbox", "sandbox")))
    } else {
        let path = config_path.ok_or("--config is required without --sandbox")?;
        let config = load(path)?;
        let (dir, state) = (config.rules_dir(path), config.state_path(path));
        (config, dir, state, None)
    };

    let metrics = Arc::new(Metrics::default());
    // The one clock every part of the service tells the time by.
    let clock: Arc<dyn pcsync_runtime::clock::Clock> = Arc::new(pcsync_runtime::clock::SystemClock);
    let channels = Channels::of(&config.notifications);
    let rules = Arc::new(
        RuleHost::load(&rules_dir, Arc::clone(&metrics))
            .map_err(|shown| {
                format!(
                    "the rule packs in {} do not check:\n{shown}",
                    rules_dir.display()
                )
            })?
            .with_channels(channels)
            .with_clock(Arc::clone(&clock)),
    );
    let in_force = rules.current();
    tracing::info!(
        packs = in_force.packs.len(),
        directory = %rules_dir.display(),
        version = %in_force.version,
        "rules loaded"
    );
    for warning in channels.warnings(&in_force) {
        tracing::warn!("{warning}");
    }

    // On a read-only directory the service starts all the same, saying 503 until
    // the file can be written.
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open_or_wait(&state).map_err(|e| e.to_string())?);
    let waiting = store
        .recover(clock.now_ms())
        .map_err(|e| format!("reading {}: {e}", state.display()))?;
    if waiting > 0 {
        tracing::info!(waiting, "unfinished events from the last run are in line");
    }

    let pc = &config.partner_central;
    let timeouts = pcsync_adapters::AwsTimeouts {
        attempt: pc.call_timeout.0,
    };
    let aws = pcsync_adapters::aws_sdk_config(
        &pc.region,
        pc.endpoint_url.as_deref(),
        static_credentials,
        timeouts,
    )
    .await;
    if static_credentials.is_none() {
        pcsync_adapters::check_credentials(&aws, std::time::Duration::from_secs(10)).await?;
    }
    let observer: Arc<dyn pcsync_adapters::Observer> = metrics.clone();
    let notifications = &config.notifications;
    let sns = match &notifications.sns_topic_arn {
        Some(topic) => {
            let sns_aws = pcsync_adapters::aws_sdk_config(
                &pc.region,
                notifications.sns_endpoint_url.as_deref(),
                static_credentials,
                timeouts,
            )
            .await;
            Some((
                SnsPublisher::from_config(&sns_aws).with_observer(observer.clone()),
                topic.clone(),
            ))
        }
        None => None,
    };
    let hubspot = Arc::new(
        HubSpotClient::new(
            &config.hubspot.base_url,
            &config.hubspot.token,
            config.hubspot.rate_limit_per_10s,
        )
        .with_search_rate(config.hubspot.search_per_second)
        .with_time_zone(
            config
                .hubspot
                .time_zone()
                .unwrap_or(jiff::tz::TimeZone::UTC),
        )
        .with_observer(observer.clone()),
    );
    // The day's Partner Central calls, as the last run left them: the allowance is
    // per rolling 24 hours, whoever restarted in between.
    let quotas = Arc::new(quota::journaled(
        DailyLimits {
            reads: pc.daily_quota.reads,
            writes: pc.daily_quota.writes,
        },
        Arc::clone(&store) as Arc<dyn pcsync_runtime::store::QuotaLog>,
    ));
    let now_ms = clock.now_ms();
    let counted = quota::restore(&quotas, &*store, now_ms)
        .map_err(|e| format!("reading {}: {e}", state.display()))?;
    tracing::info!(
        calls = counted,
        reads = quotas.used(QuotaClass::Read, now_ms),
        writes = quotas.used(QuotaClass::Write, now_ms),
        "Partner Central calls in the last 24 hours"
    );
    metrics.watch_quotas(Arc::clone(&quotas));
    tokio::spawn(quota::keep_saved(
        Arc::clone(&quotas),
        Arc::clone(&store) as Arc<dyn pcsync_runtime::store::QuotaLog>,
        Arc::clone(&clock),
    ));
    let partner_central = PartnerCentralClient::from_config(&aws, pc.catalog.as_str())
        .with_rates(pc.rate.reads_per_second, pc.rate.writes_per_second)
        .with_observer(observer)
        .with_daily_quotas(Arc::clone(&quotas));
    // The Solutions API shares the client, and so its read quota, with the sync.
    let solutions = Arc::new(
        Solutions::new(
            partner_central.clone(),
            config.solutions.clone(),
            Arc::clone(&metrics),
        )
        .with_clock(Arc::clone(&clock)),
    );
    tokio::spawn(Arc::clone(&solutions).run());
    let poller_pc = partner_central.clone();
    let executor = ApiExecutor {
        hubspot: Arc::clone(&hubspot),
        partner_central,
        sns,
        snapshot_turns: Default::default(),
        planned: Default::default(),
    };
    let busy = Arc::new(pcsync_runtime::service::Busy::default());
    let worker = Arc::new(Worker {
        store: Arc::clone(&store),
        rules: Arc::clone(&rules),
        executor,
        clock: Arc::clone(&clock),
        app_id: config.hubspot.app_id,
        coalesce: config.worker.coalesce.0,
        max_attempts: config.worker.max_attempts,
        defer_recheck: config.worker.defer_recheck.0,
        keep_done: config.worker.keep_done.0,
        metrics: Arc::clone(&metrics),
        busy: Arc::clone(&busy),
        concurrency: config.worker.concurrency,
        in_flight: Default::default(),
        recorder: Arc::new(pcsync_runtime::service::record::Recorder::start(
            &config.recorded_runs,
            Arc::clone(&store) as Arc<dyn pcsync_runtime::store::RunLog>,
            Arc::clone(&clock),
        )),
    });
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let working = spawn_worker(Arc::clone(&worker), stopping)?;
    tokio::spawn(Arc::clone(&rules).watch(match config.rules_watch {
        pcsync_runtime::config::RulesWatch {
            poll: true,
            poll_every,
        } => pcsync_runtime::service::reload::Watch::Poll(poll_every.0),
        _ => pcsync_runtime::service::reload::Watch::Events,
    }));
    tokio::spawn(Arc::clone(&rules).on_hangup());
    let (first_pass, first_pass_done) = tokio::sync::oneshot::channel();
    let poller = pcsync_runtime::service::poll::Poller::new(
        Arc::clone(&rules),
        Arc::clone(&store),
        hubspot,
        poller_pc,
        Arc::clone(&clock),
        if _sandbox.is_some() {
            pcsync_runtime::service::poll::FirstRun::Immediately
        } else {
            pcsync_runtime::service::poll::FirstRun::WithinJitter
        },
        config.partner_central.daily_quota.scheduled_share,
    );
    tokio::spawn(poller.run(first_pass));
    // The sandbox's demo compares opportunities with their last-known state: it is
    // ready once the start-up runs recorded it, so that a rescore tried right
    // after start-up notifies as the README says.
    let readiness = Arc::new(match &_sandbox {
        Some(_) => admin::Readiness::starting("recording the demo opportunities' baselines"),
        None => admin::Readiness::default(),
    });
    if _sandbox.is_some() {
        let readiness = Arc::clone(&readiness);
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let _ = first_pass_done.await;
            // Not forever: an event that keeps failing stays pending, and the demo
            // should still start.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            loop {
                let stats = pcsync_runtime::service::blocking(|| store.stats());
                if stats.is_ok_and(|s| s.pending == 0 && s.running == 0) {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    tracing::warn!("ready without every baseline: start-up work is still pending");
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            readiness.ready();
            tracing::info!("ready: the demo opportunities' baselines are recorded");
            println!("ready: the demo opportunities' baselines are recorded");
        });
    }

    let ingest = Arc::new(Ingest {
        store: Arc::clone(&store) as Arc<dyn pcsync_runtime::store::Inbox>,
        client_secret: config.hubspot.client_secret.clone(),
        public_url: config.public_url.clone(),
        accept_v1: config.hubspot.accept_v1_signatures,
        eventbridge_secret: config.eventbridge.as_ref().map(|e| e.shared_secret.clone()),
        catalog: config.partner_central.catalog.as_str().to_string(),
        clock: Arc::clone(&clock),
        metrics: Arc::clone(&metrics),
        busy,
    });
    let app = ingest::router(ingest)
        .merge(pcsync_runtime::service::solutions::router(Arc::clone(
            &solutions,
        )))
        .merge(admin::router(Arc::new(admin::Admin {
            store: Arc::clone(&store),
            rules: Arc::clone(&rules),
            metrics: Arc::clone(&metrics),
            admin_token: config.admin_token.clone(),
            admin_loopback: config.admin_loopback,
            clock: Arc::clone(&clock),
            readiness,
            solutions: Some(Arc::clone(&solutions)),
        })));
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(address = %format!("http://{local}"), "listening");
    if let Some(sandbox) = &_sandbox {
        subscribe(sandbox, &format!("http://{local}")).await?;
        println!("sandbox partner central: {}", sandbox.partner_central_url);
        println!("sandbox hubspot:         {}", sandbox.hubspot_url);
        println!("sandbox sns:             {}", sandbox.sns_url);
        println!(
            "try: curl -X PATCH {}/_sandbox/hubspot/deals/<id> -H 'content-type: application/json' -d '{{\"properties\":{{\"dealstage\":\"qualifiedtobuy\"}}}}'",
            sandbox.hubspot_url
        );
    }
    // On SIGTERM or Ctrl-C: stop taking requests and let those in flight answer,
    // then let the worker finish the batch in hand (its claimed but unstarted
    // batches go back in line). Anything cut short is recovered at the next start.
    let served = pcsync_runtime::service::http::serve(
        listener,
        app,
        &config.http,
        metrics,
        shutdown_signal(),
    )
    .await
    .map_err(|e| e.to_string());
    tracing::info!("stopping: finishing the work in hand");
    let _ = stop.send(true);
    let grace = config.worker.shutdown_grace.0;
    match tokio::time::timeout(grace, working).await {
        Ok(_) => tracing::info!("the work in hand is finished"),
        Err(_) => tracing::warn!(
            waited = ?grace,
            "the work in hand did not finish within worker.shutdown_grace; it is in line again at the next start"
        ),
    }
    // The last second's recorded runs, for replay.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), worker.recorder.flush()).await;
    if let Err(e) = quota::release_and_save(&quotas, &*store, clock.now_ms()) {
        tracing::warn!(error = %e, "the last daily quota counts were not saved");
    }
    match pcsync_runtime::service::blocking(|| store.flush()) {
        Ok(()) => tracing::info!("stopped"),
        Err(e) => tracing::warn!(error = %e, "stopped; the state file was not flushed"),
    }
    if _sandbox.is_some() {
        // The sandbox's demo state is not worth keeping; nothing else uses the file.
        drop(store);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", state.display()));
        }
    }
    served
}

/// Starts the worker on a thread of its own, with its own single-threaded runtime,
/// at a lower scheduling priority (nice 10) than the threads answering requests:
/// when the two cores are busy, the kernel runs ingest first, and the worker has
/// every cycle ingest leaves. Answering a webhook quickly is what HubSpot measures;
/// an accepted event is durable and can wait a moment. Resolves when the worker
/// has stopped.
fn spawn_worker(
    worker: Arc<Worker>,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::sync::oneshot::Receiver<()>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the worker's runtime: {e}"))?;
    let (done, finished) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("pcsync-worker".into())
        .spawn(move || {
            #[cfg(target_os = "linux")]
            // SAFETY: gettid and setpriority only read and set this thread's niceness.
            unsafe {
                let tid = libc::gettid();
                if libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10) != 0 {
                    tracing::debug!("the worker runs at normal priority (setpriority failed)");
                }
            }
            runtime.block_on(worker.run(stopping));
            let _ = done.send(());
        })
        .map_err(|e| format!("cannot start the worker: {e}"))?;
    Ok(finished)
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM (what systemd, Docker and Kubernetes send).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Logs go to stderr as text or one JSON object per line; `PCSYNC_LOG` filters them
/// (`info` by default, `pcsync=debug` adds each plan). Access key ids the AWS SDK
/// logs at debug and trace are masked ([`crate::redact`]).
fn init_logs(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("PCSYNC_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(crate::redact::Redacting(std::io::stderr));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn load(path: &Path) -> Result<ServiceConfig, String> {
    super::checked_config(path, MissingEnv::Error)
        .map_err(|shown| format!("the config does not check:\n{shown}"))
}

async fn start_sandbox(listen: &str) -> Result<pcsync_sandbox::Sandbox, String> {
    let addr = listen
        .parse()
        .map_err(|e| format!("`{listen}` is not an address to listen on: {e}"))?;
    let sandbox = pcsync_sandbox::Sandbox::start(addr, pcsync_sandbox::Options::default())
        .await
        .map_err(|e| {
            format!("cannot start the sandbox on {listen} (and the next two ports): {e}")
        })?;
    for (deal, opportunity) in pcsync_sandbox::demo::seed(&sandbox) {
        println!("demo: deal {deal} <-> opportunity {opportunity}");
    }
    Ok(sandbox)
}

/// The service config for the sandbox: its URLs, demo secrets, the repository's
/// rule packs and a fresh state file.
fn sandbox_config(sandbox: &pcsync_sandbox::Sandbox, listen: &str) -> ServiceConfig {
    let state = std::env::temp_dir().join(format!("pcsync-sandbox-{}.db", std::process::id()));
    let value = json!({
        "listen": listen,
        "public_url": format!("http://{listen}"),
        "rules": "./rules",
        "state": state.display().to_string(),
        "hubspot": {
            "base_url": sandbox.hubspot_url,
            "token": pcsync_sandbox::HubSpotOptions::default().token,
            "client_secret": SANDBOX_CLIENT_SECRET,
            "app_id": SANDBOX_APP_ID,
        },
        "partner_central": {
            "catalog": "Sandbox",
            "region": "us-east-1",
            "endpoint_url": sandbox.partner_central_url,
        },
        "notifications": {
            "sns_topic_arn": sandbox.sns.create_topic("pcsync-notifications"),
            "sns_endpoint_url": sandbox.sns_url,
        },
        "eventbridge": { "shared_secret": SANDBOX_EVENTS_SECRET },
        // A laptop: `curl -X POST localhost:…/admin/reload` works as is.
        "admin_loopback": true,
        // Any page may try the Solutions API against the demo catalog.
        "solutions": { "refresh": "1m", "cors_allow_origins": ["*"] },
    });
    serde_json::from_value(value).expect("the sandbox config matches ServiceConfig")
}

/// Subscribes the service to the sandbox's HubSpot webhooks and Partner Central events.
async fn subscribe(sandbox: &pcsync_sandbox::Sandbox, service: &str) -> Result<(), String> {
    let http = reqwest::Client::new();
    let calls = [
        (
            format!("{}/_sandbox/hubspot/webhooks", sandbox.hubspot_url),
            json!({ "url": format!("{service}/webhooks/hubspot"),
                    "client_secret": SANDBOX_CLIENT_SECRET, "app_id": SANDBOX_APP_ID }),
        ),
        (
            format!(
                "{}/_sandbox/partnercentral/events",
                sandbox.partner_central_url
            ),
            json!({ "url": format!("{service}/events/partnercentral"),
                    "secret": SANDBOX_EVENTS_SECRET }),
        ),
    ];
    for (url, body) in calls {
        http.post(&url)
            .json(&body)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("cannot subscribe to the sandbox ({url}): {e}"))?;
    }
    Ok(())
}
