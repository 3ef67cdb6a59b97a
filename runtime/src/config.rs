//! The service config file (`pcsync serve --config FILE`): its types, which generate
//! `schemas/config.schema.json`, and loading it with positioned diagnostics. Keys are
//! a stable contract: operators and scripts rely on these names. It lives with the
//! runtime, which is what it configures; the engine lends the YAML, schema and
//! diagnostics machinery.

use std::path::Path;
use std::sync::OnceLock;

use pcsync_engine::diagnostic::{Code, Diagnostic, FileId};
use pcsync_engine::load::{Loaded, MissingEnv, load_document};
use pcsync_engine::schema::Schema;
use pcsync_engine::source::Document;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The file name of the service-config schema under `schemas/`.
pub const CONFIG_SCHEMA_FILE: &str = "config.schema.json";

/// The service config's JSON Schema.
pub fn schema() -> &'static Schema {
    static CONFIG: OnceLock<Schema> = OnceLock::new();
    CONFIG.get_or_init(|| {
        Schema::generate::<ServiceConfig>("pcsync service config", "the config", CONFIG_SCHEMA_FILE)
    })
}

/// The config's secrets (JSON pointers): never shown in a diagnostic.
pub const SECRETS: &[&str] = &[
    "/admin_token",
    "/hubspot/token",
    "/hubspot/client_secret",
    "/eventbridge/shared_secret",
];

/// Loads and validates the service config at `path`. `env` looks up environment
/// variables for `${VAR}` interpolation.
pub fn load_config(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    missing: MissingEnv,
) -> Loaded<ServiceConfig> {
    load_document(
        path,
        schema(),
        SECRETS,
        env,
        missing,
        |config, doc, file, diagnostics| check(path, config, doc, file, diagnostics),
    )
}

/// What the schema cannot say: an address to listen on, a rules directory that
/// exists, a time zone the system knows.
fn check(
    path: &Path,
    config: &ServiceConfig,
    doc: &Document,
    file: FileId,
    diagnostics: &mut Vec<Diagnostic>,
) {
    if config.listen.parse::<std::net::SocketAddr>().is_err() {
        diagnostics.push(
            Diagnostic::error(
                Code::InvalidValue,
                format!("`{}` is not an address to listen on", config.listen),
            )
            .at(file, doc.value_span("/listen"))
            .with_help("write an IP address and a port, e.g. `127.0.0.1:8080` or `0.0.0.0:8080`"),
        );
    }
    let urls = [
        ("/public_url", Some(&config.public_url)),
        ("/hubspot/base_url", Some(&config.hubspot.base_url)),
        (
            "/partner_central/endpoint_url",
            config.partner_central.endpoint_url.as_ref(),
        ),
        (
            "/notifications/sns_endpoint_url",
            config.notifications.sns_endpoint_url.as_ref(),
        ),
    ];
    for (pointer, url) in urls {
        let Some(url) = url else { continue };
        let usable = reqwest::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
        if usable.is_none() {
            let span = if doc.value.pointer(pointer).is_some() {
                doc.value_span(pointer)
            } else {
                doc.key_span("")
            };
            diagnostics.push(
                Diagnostic::error(
                    Code::InvalidValue,
                    format!("`{url}` is not an http(s) URL with a host"),
                )
                .at(file, span)
                .with_help("write the whole URL, e.g. `https://api.hubapi.com`"),
            );
        }
    }
    if let Some(name) = &config.hubspot.time_zone
        && config.hubspot.time_zone().is_none()
    {
        diagnostics.push(
            Diagnostic::error(
                Code::InvalidValue,
                format!("`{name}` is not a time zone this system knows"),
            )
            .at(file, doc.value_span("/hubspot/time_zone"))
            .with_help("write an IANA time zone name, e.g. `America/New_York` or `Europe/Berlin`"),
        );
    }
    let state = config.state_path(path);
    if let Some(folder) = state.parent().filter(|f| !f.as_os_str().is_empty())
        && !folder.is_dir()
    {
        let span = if doc.value.get("state").is_some() {
            doc.value_span("/state")
        } else {
            doc.key_span("")
        };
        diagnostics.push(
            Diagnostic::error(
                Code::Io,
                format!("the state file's folder `{}` does not exist", folder.display()),
            )
            .at(file, span)
            .with_help("`state` is taken relative to the config file's folder; create the folder or fix the path"),
        );
    }
    let rules = config.rules_dir(path);
    if !rules.is_dir() {
        let span = if doc.value.get("rules").is_some() {
            doc.value_span("/rules")
        } else {
            doc.key_span("")
        };
        diagnostics.push(
            Diagnostic::error(
                Code::Io,
                format!("rules directory `{}` does not exist", rules.display()),
            )
            .at(file, span)
            .with_help("`rules` is taken relative to the config file's folder"),
        );
    }
}

/// pcsync's service configuration. `${VAR}` anywhere in a value is replaced from the
/// environment (`${VAR:-default}` gives a default); unknown keys are errors.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// The address the HTTP listener binds to.
    #[serde(default = "listen_default")]
    pub listen: String,
    /// The public base URL HubSpot calls. Webhook signatures (v3) are computed over
    /// `public_url` + path + query, so this must be exactly what HubSpot has.
    #[schemars(url)]
    pub public_url: String,
    /// The rule-pack directory, watched for changes.
    #[serde(default = "rules_default")]
    pub rules: String,
    /// How the rule directory is watched for edits.
    #[serde(default)]
    pub rules_watch: RulesWatch,
    /// The SQLite state file (inbox, dead letters, last-known state), relative to
    /// the config file's folder.
    #[serde(default = "state_default")]
    pub state: String,
    /// The bearer token the operator's routes (`GET /rules`, `POST /admin/reload`)
    /// require (`Authorization: Bearer …`). Use `${PCSYNC_ADMIN_TOKEN}`. Unset: they
    /// answer no one, unless `admin_loopback` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 16))]
    pub admin_token: Option<String>,
    /// Without `admin_token`: let peers on the loopback interface use the operator's
    /// routes, as long as no proxy forwarded the request (`Forwarded`,
    /// `X-Forwarded-For`, `X-Real-IP`, `Via`), its `Host` is `localhost`, `127.x.x.x`
    /// or `[::1]`, and its `Origin`, if any, is too (so a web page in the operator's
    /// browser cannot use them). For a laptop; a local reverse proxy that adds none
    /// of those would lend its address to anyone it serves.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin_loopback: bool,
    /// Limits on the connections the HTTP listener serves: how long a client may
    /// take, how long an idle connection stays open, how many may be open at once.
    #[serde(default)]
    pub http: HttpConfig,
    /// HubSpot connection.
    pub hubspot: HubSpotConfig,
    /// Partner Central connection. AWS credentials come from the standard AWS chain
    /// (environment, profile, role).
    pub partner_central: PartnerCentralConfig,
    /// Outbound notifications.
    #[serde(default)]
    pub notifications: NotificationsConfig,
    /// Inbound Partner Central events forwarded by an EventBridge API destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eventbridge: Option<EventBridgeConfig>,
    /// How accepted events are worked.
    #[serde(default)]
    pub worker: WorkerConfig,
    /// The Solutions API (`GET /solutions…`).
    #[serde(default)]
    pub solutions: SolutionsConfig,
    /// The record of pack runs `pcsync replay` plans again with candidate rules.
    #[serde(default)]
    pub recorded_runs: RecordedRunsConfig,
}

/// Limits on the HTTP listener's connections, so that slow, idle or numerous clients
/// cannot hold the service's file descriptors and tasks. HubSpot and EventBridge send
/// a whole batch in milliseconds; the defaults leave them ample room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// How long a request's line and headers may take to arrive, counted from when
    /// the connection opens or its previous answer was sent. A connection that sends
    /// no whole request head within it is closed.
    #[serde(default = "header_timeout_default")]
    pub header_timeout: pcsync_engine::model::DurationSpec,
    /// How long a request's whole body may take to arrive once its headers are in.
    /// A deadline, not a pause between pieces: a body trickled a byte at a time is
    /// cut off when it passes.
    #[serde(default = "body_timeout_default")]
    pub body_timeout: pcsync_engine::model::DurationSpec,
    /// How long a connection may stay open with no request in hand after its first
    /// one; HTTP/2 connections are sent GOAWAY and closed. (An HTTP/1 connection
    /// waits for its next request head no longer than `header_timeout`.)
    #[serde(default = "idle_timeout_default")]
    pub idle_timeout: pcsync_engine::model::DurationSpec,
    /// How many connections may be open at once. Beyond it a new connection is
    /// answered `503 Service Unavailable` with the reason and closed at once (counted
    /// as `pcsync_http_connections_refused`). Keep it well under the process's file
    /// descriptor limit (`ulimit -n`): the state file, the rule watcher and outbound
    /// calls need some too.
    #[serde(default = "max_connections_default")]
    #[schemars(range(min = 1))]
    pub max_connections: usize,
    /// HTTP/2: how often a connection with nothing arriving is sent a PING.
    #[serde(default = "http2_keep_alive_interval_default")]
    pub http2_keep_alive_interval: pcsync_engine::model::DurationSpec,
    /// HTTP/2: how long the answer to a PING may take before the connection is
    /// closed as dead.
    #[serde(default = "http2_keep_alive_timeout_default")]
    pub http2_keep_alive_timeout: pcsync_engine::model::DurationSpec,
    /// HTTP/2: how many requests one connection may have open at once.
    #[serde(default = "http2_max_concurrent_streams_default")]
    #[schemars(range(min = 1))]
    pub http2_max_concurrent_streams: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_timeout: header_timeout_default(),
            body_timeout: body_timeout_default(),
            idle_timeout: idle_timeout_default(),
            max_connections: max_connections_default(),
            http2_keep_alive_interval: http2_keep_alive_interval_default(),
            http2_keep_alive_timeout: http2_keep_alive_timeout_default(),
            http2_max_concurrent_streams: http2_max_concurrent_streams_default(),
        }
    }
}

fn header_timeout_default() -> pcsync_engine::model::DurationSpec {
    pcsync_engine::model::DurationSpec(std::time::Duration::from_secs(10))
}

fn body_timeout_default() -> pcsync_engine::model::DurationSpec {
    pcsync_engine::model::DurationSpec(std::time::Duration::from_secs(10))
}

fn idle_timeout_default() -> pcsync_engine::model::DurationSpec {
    pcsync_engine::model::DurationSpec(std::time::Duration::from_secs(30))
}

fn max_connections_default() -> usize {
    512
}

fn http2_keep_alive_interval_default() -> pcsync_engine::model::DurationSpec {
    pcsync_engine::model::DurationSpec(std::time::Duration::from_secs(20))
}

fn http2_keep_alive_timeout_default() -> pcsync_engine::model::DurationSpec {
    pcsync_engine::model::DurationSpec(std::time::Duration::from_secs(10))
}

fn http2_max_concurrent_streams_default() -> u32 {
    100
}

/// Recorded runs: per pack run, the event, the context its plan saw (deal, company,
/// opportunity, AWS summary, last-known state) and what it planned, kept in the
/// state file for `pcsync replay`. Tokens and secrets are never part of them;
/// personal data can be left out by path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordedRunsConfig {
    /// Whether runs are recorded.
    #[serde(default = "recorded_enabled_default")]
    pub enabled: bool,
    /// How long a run is kept.
    #[serde(default = "recorded_keep_default")]
    pub keep: pcsync_engine::model::DurationSpec,
    /// About how many megabytes the record may take in the state file; past it the
    /// oldest runs go first.
    #[serde(default = "recorded_max_mb_default")]
    #[schemars(range(min = 1))]
    pub max_mb: u64,
    /// Paths of values to leave out, replaced by `"[redacted]"`, rooted at
    /// `event`, `deal`, `company`, `opportunity`, `aws_summary` or `previous`, `*`
    /// for every member or item: `deal.properties.email`,
    /// `opportunity.Customer.Contacts`, `aws_summary.OpportunityTeam.*.Email`.
    #[serde(default)]
    pub redact: Vec<String>,
}

impl Default for RecordedRunsConfig {
    fn default() -> Self {
        RecordedRunsConfig {
            enabled: recorded_enabled_default(),
            keep: recorded_keep_default(),
            max_mb: recorded_max_mb_default(),
            redact: Vec::new(),
        }
    }
}

fn recorded_enabled_default() -> bool {
    true
}

fn recorded_keep_default() -> pcsync_engine::model::DurationSpec {
    pcsync_engine::model::DurationSpec(std::time::Duration::from_secs(14 * 86_400))
}

fn recorded_max_mb_default() -> u64 {
    512
}

/// The Solutions API: a cached copy of the Partner Central solution catalog, searched
/// in memory (ListSolutions itself has no search and no get-by-id).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SolutionsConfig {
    /// How often the catalog is read again from Partner Central (all pages).
    #[serde(default = "solutions_refresh_default")]
    pub refresh: pcsync_engine::model::DurationSpec,
    /// Browser origins allowed to call the Solutions API (CORS), e.g.
    /// `https://app.hubspot.com`; `*` allows any origin. Empty: no CORS headers.
    #[serde(default)]
    pub cors_allow_origins: Vec<String>,
    /// How search ranks solutions.
    #[serde(default)]
    pub search: SearchWeights,
    /// A list or search finding the catalog older than this answers from it and
    /// reads it again in the background; also the `Cache-Control` max-age.
    #[serde(default = "solutions_revalidate_default")]
    pub revalidate_after: pcsync_engine::model::DurationSpec,
    /// An id not in the catalog is looked up in Partner Central (one read) before
    /// answering 404, at most once per this interval however many unknown ids are
    /// asked for.
    #[serde(default = "solutions_miss_default")]
    pub unknown_id_lookup: pcsync_engine::model::DurationSpec,
}

impl Default for SolutionsConfig {
    fn default() -> Self {
        SolutionsConfig {
            refresh: solutions_refresh_default(),
            cors_allow_origins: Vec::new(),
            search: SearchWeights::default(),
            revalidate_after: solutions_revalidate_default(),
            unknown_id_lookup: solutions_miss_default(),
        }
    }
}

fn solutions_revalidate_default() -> pcsync_engine::model::DurationSpec {
    pcsync_engine::model::DurationSpec(std::time::Duration::from_secs(60))
}

fn solutions_miss_default() -> pcsync_engine::model::DurationSpec {
    pcsync_engine::model::DurationSpec(std::time::Duration::from_secs(10))
}

fn solutions_refresh_default() -> pcsync_engine::model::DurationSpec {
    pcsync_engine::model::DurationSpec(std::time::Duration::from_secs(15 * 60))
}

/// How `GET /solutions/search` scores a solution against the query (0–100). Each
/// query word takes its best match among the solution's words: the match kind's
/// weight times the field's weight. The score is the words' average, relative to
/// the best possible, plus `phrase_bonus` when the whole query appears in the name.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchWeights {
    /// Weight of a match in the solution's name.
    #[serde(default = "one")]
    #[schemars(range(min = 0.0, max = 10.0))]
    pub name: f64,
    /// Weight of a match in the solution's category.
    #[serde(default = "category_weight_default")]
    #[schemars(range(min = 0.0, max = 10.0))]
    pub category: f64,
    /// A query word equal to a word of the field.
    #[serde(default = "one")]
    #[schemars(range(min = 0.0, max = 10.0))]
    pub exact: f64,
    /// A query word that starts a word of the field (`data` → `Database`).
    #[serde(default = "prefix_weight_default")]
    #[schemars(range(min = 0.0, max = 10.0))]
    pub prefix: f64,
    /// A query word within a small edit distance of a word (`databse` → `Database`):
    /// one edit for words of 4–7 letters, two from 8.
    #[serde(default = "fuzzy_weight_default")]
    #[schemars(range(min = 0.0, max = 10.0))]
    pub fuzzy: f64,
    /// Points (0–100) added when the whole query appears in the name as written.
    #[serde(default = "phrase_bonus_default")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub phrase_bonus: f64,
    /// Results scoring below this (0–100) are left out.
    #[serde(default = "min_score_default")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub min_score: f64,
}

impl Default for SearchWeights {
    fn default() -> Self {
        SearchWeights {
            name: one(),
            category: category_weight_default(),
            exact: one(),
            prefix: prefix_weight_default(),
            fuzzy: fuzzy_weight_default(),
            phrase_bonus: phrase_bonus_default(),
            min_score: min_score_default(),
        }
    }
}

fn one() -> f64 {
    1.0
}

fn category_weight_default() -> f64 {
    0.6
}

fn prefix_weight_default() -> f64 {
    0.8
}

fn fuzzy_weight_default() -> f64 {
    0.6
}

fn phrase_bonus_default() -> f64 {
    15.0
}

fn min_score_default() -> f64 {
    20.0
}

/// How accepted events are worked.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// How long to wait after an event for more about the same deal, so that a
    /// burst of edits becomes one Partner Central write (it allows one per second).
    /// The run then covers every event of the deal already waiting, however long
    /// ago the others arrived.
    #[serde(default = "coalesce_default")]
    pub coalesce: pcsync_engine::model::DurationSpec,
    /// Tries before an event that keeps failing for a passing reason (throttling,
    /// outages) is parked in the dead-letter list.
    #[serde(default = "max_attempts_default")]
    #[schemars(range(min = 1, max = 50))]
    pub max_attempts: u32,
    /// How long an edit waits while AWS reviews the opportunity before it is checked
    /// again (an event about the opportunity checks it at once).
    #[serde(default = "defer_recheck_default")]
    pub defer_recheck: pcsync_engine::model::DurationSpec,
    /// How long applied events stay in the inbox, counted from their arrival (events
    /// not yet applied stay until they are). Within this time a redelivery of the
    /// same event is recognised and dropped (HubSpot retries for up to a day,
    /// EventBridge for up to 24 hours); after it they are deleted.
    #[serde(default = "keep_done_default")]
    pub keep_done: pcsync_engine::model::DurationSpec,
    /// Batches (each about a different deal or opportunity) worked at the same time,
    /// so that one slow call does not hold up unrelated deals. Two batches about the
    /// same opportunity still take turns. Partner Central's own limits (1 write and
    /// 10 reads a second) hold whatever this is.
    #[serde(default = "concurrency_default")]
    #[schemars(range(min = 1, max = 64))]
    pub concurrency: usize,
    /// On SIGTERM or Ctrl-C, how long the worker may take to finish the batches in
    /// hand before the process exits anyway (what it did not finish is in line again
    /// at the next start). Keep it under the orchestrator's kill timeout (Docker
    /// waits 10 s and Kubernetes 30 s by default).
    #[serde(default = "shutdown_grace_default")]
    pub shutdown_grace: pcsync_engine::model::DurationSpec,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            coalesce: coalesce_default(),
            max_attempts: max_attempts_default(),
            defer_recheck: defer_recheck_default(),
            keep_done: keep_done_default(),
            concurrency: concurrency_default(),
            shutdown_grace: shutdown_grace_default(),
        }
    }
}

fn shutdown_grace_default() -> pcsync_engine::model::DurationSpec {
    pcsync_engine::model::DurationSpec(std::time::Duration::from_secs(25))
}

fn concurrency_default() -> usize {
    4
}

fn coalesce_default() -> pcsync_engine::model::DurationSpec {
    pcsync_engine::model::DurationSpec(std::time::Duration::from_millis(500))
}

fn max_attempts_default() -> u32 {
    8
}

fn keep_done_default() -> pcsync_engine::model::DurationSpec {
    pcsync_engine::model::DurationSpec(std::time::Duration::from_secs(7 * 24 * 3600))
}

fn defer_recheck_default() -> pcsync_engine::model::DurationSpec {
    pcsync_engine::model::DurationSpec(std::time::Duration::from_secs(300))
}

impl ServiceConfig {
    /// The state file; a relative `state` is taken from the config file's folder, as
    /// `rules` is (so starting the service from another directory opens the same
    /// inbox, not a new empty one).
    pub fn state_path(&self, config_file: &std::path::Path) -> std::path::PathBuf {
        let state = std::path::Path::new(&self.state);
        match config_file.parent() {
            Some(dir) if state.is_relative() => dir.join(state),
            _ => state.to_path_buf(),
        }
    }

    /// The rule-pack directory; a relative `rules` is taken from the config file's folder.
    pub fn rules_dir(&self, config_file: &std::path::Path) -> std::path::PathBuf {
        let rules = std::path::Path::new(&self.rules);
        match config_file.parent() {
            Some(dir) if rules.is_relative() => dir.join(rules),
            _ => rules.to_path_buf(),
        }
    }
}

fn listen_default() -> String {
    "127.0.0.1:8080".into()
}

fn rules_default() -> String {
    "./rules".into()
}

fn state_default() -> String {
    "./pcsync.db".into()
}

/// HubSpot connection settings.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HubSpotConfig {
    /// The CRM API base URL.
    #[serde(default = "hubspot_base_url_default")]
    #[schemars(url)]
    pub base_url: String,
    /// The private-app access token (sent as a Bearer token). Use `${HUBSPOT_TOKEN}`.
    #[schemars(length(min = 1))]
    pub token: String,
    /// The app's client secret, which verifies webhook signatures. Use
    /// `${HUBSPOT_CLIENT_SECRET}`.
    #[schemars(length(min = 1))]
    pub client_secret: String,
    /// The app's id: events caused by this app's own writes are ignored (echo
    /// suppression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<u64>,
    /// Requests allowed per rolling 10 seconds (HubSpot's limit for the account's
    /// tier: 100, 190 or 250).
    #[serde(default = "rate_limit_default")]
    #[schemars(range(min = 1, max = 100000))]
    pub rate_limit_per_10s: u32,
    /// CRM search requests allowed per second (HubSpot's limit is 5 for every tier;
    /// a scaled simulation such as `cargo bench --bench day` raises it).
    #[serde(default = "search_per_second_default")]
    #[schemars(range(min = 1, max = 10000))]
    pub search_per_second: u32,
    /// Also accept the older v1 webhook signature (without timestamp). Off by default:
    /// v1 cannot reject replays.
    #[serde(default)]
    pub accept_v1_signatures: bool,
    /// The HubSpot account's time zone (Settings → Account defaults), as an IANA name
    /// (`America/New_York`); UTC when unset. HubSpot's daily API limit resets at its
    /// midnight: an event refused for the daily limit waits until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

impl HubSpotConfig {
    /// The account's time zone (UTC when unset); `None` for a name the system's
    /// time zone database does not know.
    pub fn time_zone(&self) -> Option<jiff::tz::TimeZone> {
        match &self.time_zone {
            None => Some(jiff::tz::TimeZone::UTC),
            Some(name) => jiff::tz::TimeZone::get(name).ok(),
        }
    }
}

fn hubspot_base_url_default() -> String {
    "https://api.hubapi.com".into()
}

fn rate_limit_default() -> u32 {
    100
}

fn search_per_second_default() -> u32 {
    5
}

/// How the rule directory is watched: file events by default (an edit is in force
/// within moments), or polling where events do not arrive (NFS, SMB, some container
/// volume drivers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RulesWatch {
    /// Compare the files at `poll_every` instead of waiting for file events.
    #[serde(default)]
    pub poll: bool,
    /// With `poll`: how often.
    #[serde(default = "poll_every_default")]
    pub poll_every: pcsync_engine::model::DurationSpec,
}

impl Default for RulesWatch {
    fn default() -> Self {
        RulesWatch {
            poll: false,
            poll_every: poll_every_default(),
        }
    }
}

fn poll_every_default() -> pcsync_engine::model::DurationSpec {
    pcsync_engine::model::DurationSpec(std::time::Duration::from_secs(2))
}

/// Partner Central connection settings.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PartnerCentralConfig {
    /// `AWS` for production or `Sandbox` for AWS's test catalog.
    pub catalog: Catalog,
    /// The AWS region. The Selling API exists only in us-east-1.
    #[serde(default = "region_default")]
    pub region: String,
    /// Override the endpoint, e.g. `http://127.0.0.1:4567` for the local sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(url)]
    pub endpoint_url: Option<String>,
    /// How long one attempt of a Partner Central or SNS call may take (connect, send,
    /// answer); a call with the SDK's retries gets three times that. A hung endpoint
    /// then costs the batch a retry, not the worker its afternoon.
    #[serde(default = "call_timeout_default")]
    pub call_timeout: pcsync_engine::model::DurationSpec,
    /// The account's daily allowances and the share scheduled work may use.
    #[serde(default)]
    pub daily_quota: DailyQuotaConfig,
    /// The account's per-second allowances, which pcsync paces its calls under.
    #[serde(default)]
    pub rate: RateConfig,
}

/// Partner Central's per-second quotas (AWS's "Quotas" page: 10 reads and 1 write a
/// second per partner account). Raise them only when AWS raised the account's
/// quotas (through Service Quotas); pcsync stays 5% under what is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    /// Reads a second.
    #[serde(default = "reads_per_second_default")]
    #[schemars(range(min = 1))]
    pub reads_per_second: u32,
    /// Writes a second.
    #[serde(default = "writes_per_second_default")]
    #[schemars(range(min = 1))]
    pub writes_per_second: u32,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            reads_per_second: reads_per_second_default(),
            writes_per_second: writes_per_second_default(),
        }
    }
}

fn reads_per_second_default() -> u32 {
    pcsync_adapters::partner_central::READS_PER_SECOND
}

fn writes_per_second_default() -> u32 {
    pcsync_adapters::partner_central::WRITES_PER_SECOND
}

/// Partner Central's daily quotas per partner account (AWS's "Quotas" page: 100,000
/// reads and 10,000 writes per rolling 24 hours). pcsync counts its own calls
/// against them, persists the counts in the state file, and holds calls back once a
/// class is spent. Lower them when other tools share the account.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DailyQuotaConfig {
    /// Reads per rolling 24 hours (GetOpportunity, GetAwsOpportunitySummary,
    /// ListOpportunities, ListSolutions, invitation reads).
    #[serde(default = "daily_reads_default")]
    #[schemars(range(min = 1))]
    pub reads: u64,
    /// Writes per rolling 24 hours (CreateOpportunity, UpdateOpportunity,
    /// Associate/DisassociateOpportunity, AssignOpportunity, the Start*Task writes,
    /// RejectEngagementInvitation).
    #[serde(default = "daily_writes_default")]
    #[schemars(range(min = 1))]
    pub writes: u64,
    /// The share of the daily reads scheduled runs may start while the day's count
    /// is below it (0 to 1): past it, schedules skip their runs until reads leave
    /// the window, and webhooks and EventBridge events keep the rest.
    #[serde(default = "scheduled_share_default")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub scheduled_share: f64,
}

impl Default for DailyQuotaConfig {
    fn default() -> Self {
        DailyQuotaConfig {
            reads: daily_reads_default(),
            writes: daily_writes_default(),
            scheduled_share: scheduled_share_default(),
        }
    }
}

fn daily_reads_default() -> u64 {
    100_000
}

fn daily_writes_default() -> u64 {
    10_000
}

fn scheduled_share_default() -> f64 {
    0.5
}

fn call_timeout_default() -> pcsync_engine::model::DurationSpec {
    pcsync_engine::model::DurationSpec(std::time::Duration::from_secs(10))
}

fn region_default() -> String {
    "us-east-1".into()
}

/// A Partner Central catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Catalog {
    /// Production.
    #[serde(rename = "AWS")]
    Aws,
    /// AWS's test catalog.
    Sandbox,
}

impl Catalog {
    /// The name Partner Central's `Catalog` members take.
    pub fn as_str(self) -> &'static str {
        match self {
            Catalog::Aws => "AWS",
            Catalog::Sandbox => "Sandbox",
        }
    }
}

/// Outbound notification settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationsConfig {
    /// The SNS topic for notification rules' `sns` channel; unset disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$"
    ))]
    pub sns_topic_arn: Option<String>,
    /// Override the SNS endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(url)]
    pub sns_endpoint_url: Option<String>,
}

/// EventBridge ingest settings.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBridgeConfig {
    /// The secret the API destination sends in the `X-Pcsync-Secret` header. Use
    /// `${EVENTBRIDGE_SECRET}`.
    #[schemars(length(min = 16))]
    pub shared_secret: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config in a temporary directory with a `rules/` folder beside it.
    fn write(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rules")).unwrap();
        let path = dir.path().join("pcsync.yaml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn rendered(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> String {
        let loaded = load_config(path, env, MissingEnv::Error);
        assert!(loaded.has_errors());
        let human = pcsync_engine::diagnostic::render_human(&loaded.sources, &loaded.diagnostics);
        let json = pcsync_engine::diagnostic::render_json(&loaded.sources, &loaded.diagnostics, 1);
        let github = pcsync_engine::diagnostic::render_github(&loaded.sources, &loaded.diagnostics);
        format!("{human}\n{json}\n{github}")
    }

    #[test]
    fn the_accounts_time_zone_must_be_one_the_system_knows() {
        let config = |zone: &str| {
            format!(
                "public_url: https://sync.example.com\nhubspot:\n  token: t\n  client_secret: s\n  \
                 time_zone: {zone}\npartner_central:\n  catalog: Sandbox\n"
            )
        };
        let (_dir, path) = write(&config("Mars/Olympus_Mons"));
        let shown = rendered(&path, &|_| None);
        assert!(
            shown.contains("`Mars/Olympus_Mons` is not a time zone this system knows"),
            "{shown}"
        );
        assert!(shown.contains("pcsync.yaml:5:14"), "{shown}");
        let (_dir, path) = write(&config("UTC"));
        let loaded = load_config(&path, &|_| None, MissingEnv::Error);
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        assert!(loaded.value.unwrap().hubspot.time_zone().is_some());
    }

    #[test]
    fn secrets_never_appear_in_a_diagnostic() {
        // Values the schema refuses, written in the file and from the environment,
        // and a secret in a flow mapping whose line has another error.
        let (_dir, path) = write(
            "public_url: https://sync.example.com\nadmin_token: hunter2secret\n\
             hubspot: {token: pat-na1-0000, client_secret: shh, app_id: -1}\n\
             partner_central:\n  catalog: Sandbox\neventbridge:\n  shared_secret: ${EB}\n",
        );
        let shown = rendered(&path, &|k| (k == "EB").then(|| "tiny".to_string()));
        for secret in ["hunter2secret", "tiny", "pat-na1-0000", "shh"] {
            assert!(!shown.contains(secret), "`{secret}` shown:\n{shown}");
        }
        assert!(shown.contains("shorter than 16 characters"), "{shown}");
        assert!(shown.contains("app_id"), "{shown}");
        assert!(
            shown.contains("${EB}"),
            "a reference is no secret:\n{shown}"
        );

        // A file that is not YAML: the secret's line is masked in the snippet.
        let (_dir, path) = write(
            "public_url: https://sync.example.com\nhubspot:\n  token: pat-na1-0000\n  client_secret: shh, bad: 1\n",
        );
        let shown = rendered(&path, &|_| None);
        assert!(shown.contains("invalid YAML"), "{shown}");
        for secret in ["pat-na1-0000", "shh"] {
            assert!(!shown.contains(secret), "`{secret}` shown:\n{shown}");
        }
    }

    #[test]
    fn misspelt_secret_keys_and_url_user_info_never_appear_in_a_diagnostic() {
        // A secret under a misspelt key (an unknown field: its line is the snippet),
        // one under a key the config does not have, and URLs with user info, one of
        // them refused (its message quotes it).
        let (_dir, path) = write(
            "public_url: htp://deploy:url-pass-1234@sync.example.com\n\
             hubspot:\n  token: t\n  client_secret: s\n  client_secert: hunter2hunter2\n  apiKey: key-0000-1111\n\
             \x20 base_url: https://ops:base-pass-5678@api.hubapi.com\n\
             partner_central:\n  catalog: Sandbox\n  endpoint_url: ftp://u:ftp-pass-9@x\n",
        );
        let shown = rendered(&path, &|_| None);
        for secret in [
            "hunter2hunter2",
            "key-0000-1111",
            "url-pass-1234",
            "base-pass-5678",
            "ftp-pass-9",
            "deploy:",
        ] {
            assert!(!shown.contains(secret), "`{secret}` shown:\n{shown}");
        }
        assert!(
            shown.contains("client_secert"),
            "the key is shown:\n{shown}"
        );
        assert!(shown.contains("htp://***@sync.example.com"), "{shown}");

        // The same in a file that is not YAML.
        let (_dir, path) = write(
            "public_url: https://a:url-pass-1234@sync.example.com\nhubspot:\n  client_secert: hunter2hunter2, bad: 1\n",
        );
        let shown = rendered(&path, &|_| None);
        assert!(shown.contains("invalid YAML"), "{shown}");
        for secret in ["hunter2hunter2", "url-pass-1234"] {
            assert!(!shown.contains(secret), "`{secret}` shown:\n{shown}");
        }
    }

    #[test]
    fn only_the_secrets_among_the_configs_keys_look_like_secrets() {
        fn keys(value: &serde_json::Value, found: &mut std::collections::BTreeSet<String>) {
            match value {
                serde_json::Value::Object(map) => {
                    if let Some(serde_json::Value::Object(properties)) = map.get("properties") {
                        found.extend(properties.keys().cloned());
                    }
                    map.values().for_each(|v| keys(v, found));
                }
                serde_json::Value::Array(items) => items.iter().for_each(|v| keys(v, found)),
                _ => {}
            }
        }
        let mut found = Default::default();
        keys(
            &serde_json::to_value(schemars::schema_for!(ServiceConfig)).unwrap(),
            &mut found,
        );
        let looks: std::collections::BTreeSet<&str> = found
            .iter()
            .map(String::as_str)
            .filter(|k| pcsync_engine::redact::secret_key(k))
            .collect();
        let declared = SECRETS
            .iter()
            .filter_map(|p| p.rsplit('/').next())
            .collect();
        assert!(found.len() > 40, "{found:?}");
        assert_eq!(looks, declared);
    }

    #[test]
    fn urls_that_cannot_be_called_and_missing_folders_are_errors() {
        let (dir, path) = write(
            "public_url: https://sync.example.com\nstate: data/pcsync.db\n\
             hubspot:\n  base_url: htp:/broken\n  token: t\n  client_secret: s\n\
             partner_central:\n  catalog: Sandbox\n  endpoint_url: localhost:4566\n",
        );
        let shown = rendered(&path, &|_| None);
        assert!(
            shown.contains("`htp:/broken` is not an http(s) URL"),
            "{shown}"
        );
        assert!(
            shown.contains("`localhost:4566` is not an http(s) URL"),
            "{shown}"
        );
        assert!(shown.contains("the state file's folder"), "{shown}");

        std::fs::create_dir(dir.path().join("data")).unwrap();
        std::fs::write(
            &path,
            "public_url: https://sync.example.com\nstate: data/pcsync.db\n\
             hubspot:\n  base_url: https://api.hubapi.com\n  token: t\n  client_secret: s\n\
             partner_central:\n  catalog: Sandbox\n",
        )
        .unwrap();
        let loaded = load_config(&path, &|_| None, MissingEnv::Error);
        let config = loaded.value.expect("checks");
        // Like `rules`, `state` is the config file's, wherever the service starts.
        assert_eq!(config.state_path(&path), dir.path().join("data/pcsync.db"));
        assert_eq!(config.rules_dir(&path), dir.path().join("./rules"));
    }
}
