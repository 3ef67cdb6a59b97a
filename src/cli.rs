//! The command line: every command of the `pcsync` interface contract.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Keeps HubSpot deals and AWS Partner Central opportunities in step, driven by YAML
/// rule packs.
#[derive(Debug, Parser)]
#[command(name = "pcsync", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: webhooks and EventBridge in, Partner Central and HubSpot out.
    Serve {
        /// The service config (YAML).
        #[arg(long, required_unless_present = "sandbox")]
        config: Option<PathBuf>,
        /// Wire the service to an embedded sandbox with demo data; needs no config or
        /// credentials.
        #[arg(long)]
        sandbox: bool,
        /// With --sandbox: where the service listens.
        #[arg(long, requires = "sandbox", default_value = "127.0.0.1:8080")]
        listen: String,
        /// With --sandbox: where the sandbox's Partner Central listens (HubSpot and
        /// SNS take the next two ports).
        #[arg(long, requires = "sandbox", default_value = "127.0.0.1:4567")]
        sandbox_listen: String,
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Validate rule packs and the service config.
    ///
    /// Exit status: 0 clean (warnings allowed), 1 errors found, 2 usage or I/O error.
    Check {
        /// Rule-pack files or directories (default: `rules`, or the config's `rules`).
        paths: Vec<PathBuf>,
        /// Also validate this service config file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CheckFormat::Human)]
        format: CheckFormat,
        /// Accept a rules directory with no pack in it (a warning instead of an
        /// error). `pcsync serve` still refuses to start on one.
        #[arg(long)]
        allow_empty: bool,
    },
    /// Run rule-pack golden tests.
    Test {
        /// Test files or directories (default: `rules/tests`).
        paths: Vec<PathBuf>,
        /// Rewrite expectations from the actual output.
        #[arg(long)]
        bless: bool,
        /// Only run cases whose name matches this regular expression.
        #[arg(long, value_name = "REGEX")]
        run: Option<String>,
        /// Write a JUnit XML report to this file.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
    },
    /// Print the plan one event would produce, without side effects.
    Eval {
        /// The event (YAML or JSON).
        #[arg(long)]
        event: PathBuf,
        /// The context: deal, opportunity, AWS summary, last-known state.
        #[arg(long)]
        context: Option<PathBuf>,
        /// The time to evaluate at (RFC 3339; default: now).
        #[arg(long, value_name = "RFC3339")]
        now: Option<String>,
        /// Also print which rule decided what.
        #[arg(long)]
        trace: bool,
        /// The rule-pack directory.
        #[arg(long, default_value = "rules")]
        rules: PathBuf,
    },
    /// Write the JSON Schemas for rule packs and the service config.
    Schema {
        /// The directory to write into.
        #[arg(long, default_value = "schemas")]
        out: PathBuf,
    },
    /// Prepare an external system for pcsync.
    Setup {
        #[command(subcommand)]
        target: SetupTarget,
    },
    /// Plan the recorded runs again with candidate rules, and show what would
    /// change: per run the writes added, removed or changed, then a summary.
    ///
    /// Reads the state file without disturbing a running service; makes no remote
    /// call. Exit status: 0, or 1 when a `--fail-on` condition holds; 2 usage or I/O
    /// error.
    Replay(ReplayArgs),
    /// Inspect and replay dead letters.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Check what the service depends on, one line each with the fix for a failure:
    /// config and packs, state file, HubSpot token and properties, clock, Partner
    /// Central credentials and catalog, SNS topic, public URL. Reads only.
    ///
    /// Exit status: 0 nothing failed, 1 something did, 2 the config does not load.
    Doctor {
        /// The service config.
        #[arg(long)]
        config: PathBuf,
    },
    /// Ask a running service whether it is healthy (`GET /healthz`), for container
    /// health checks: exit 0 when it answers 200 within the timeout, 1 otherwise,
    /// with the reason on stderr.
    Healthcheck {
        /// The service's health URL.
        #[arg(long, default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
        /// How long to wait for the answer, in seconds.
        #[arg(long, default_value_t = 3)]
        timeout: u64,
    },
    /// Run the local HubSpot, Partner Central and SNS sandbox on its own, with demo
    /// data. Partner Central listens on the address given, HubSpot on the next port,
    /// SNS on the one after.
    Sandbox {
        /// The address Partner Central listens on.
        #[arg(long, default_value = "127.0.0.1:4567")]
        listen: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SetupTarget {
    /// Create the custom deal properties the rule packs use (idempotent).
    Hubspot {
        /// The service config.
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqAction {
    /// List dead letters with their reasons.
    List {
        /// The service config.
        #[arg(long)]
        config: PathBuf,
    },
    /// Put a dead letter back in the inbox.
    Retry {
        /// The dead letter's id.
        id: String,
        /// The service config.
        #[arg(long)]
        config: PathBuf,
    },
    /// Delete a dead letter.
    Drop {
        /// The dead letter's id.
        id: String,
        /// The service config.
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CheckFormat {
    Human,
    Json,
    Github,
}

/// How `pcsync replay` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReplayFormat {
    /// Per changed run, its changes; then the summary.
    Human,
    /// One JSON document: the changed runs and the summary.
    Json,
    /// GitHub Actions annotations.
    Github,
}

/// When `pcsync replay` exits 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReplayFailOn {
    /// Any run plans differently.
    Changed,
    /// Any run fails that did not.
    NewFailures,
}

/// `pcsync replay`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The candidate rule-pack directory.
    #[arg(long)]
    pub rules: PathBuf,
    /// The service config, whose state file holds the record.
    #[arg(long, required_unless_present = "state")]
    pub config: Option<PathBuf>,
    /// The state file itself (a copy of the service's, say).
    #[arg(long, conflicts_with = "config")]
    pub state: Option<PathBuf>,
    /// Runs planned in this last stretch of time (`7d`, `12h`).
    #[arg(long, conflicts_with = "from")]
    pub since: Option<String>,
    /// Runs planned at or after this time (RFC 3339, or a date).
    #[arg(long)]
    pub from: Option<String>,
    /// Runs planned before this time.
    #[arg(long)]
    pub to: Option<String>,
    /// Only this pack's runs.
    #[arg(long)]
    pub pack: Option<String>,
    /// Only runs about this deal.
    #[arg(long)]
    pub deal: Option<String>,
    /// Only these recorded runs (the `#` numbers it prints); repeatable.
    #[arg(long = "run", value_name = "ID")]
    pub runs: Vec<i64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReplayFormat::Human)]
    pub format: ReplayFormat,
    /// Exit 1 when any run changed, or when any run newly fails.
    #[arg(long, value_enum)]
    pub fail_on: Option<ReplayFailOn>,
    /// Also write the chosen runs as golden cases (`rules/tests` format), each
    /// expecting what the candidate rules plan.
    #[arg(long, value_name = "CASES.yaml")]
    pub export: Option<PathBuf>,
}
