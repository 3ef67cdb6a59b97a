//! One module per command.

mod check;
mod dlq;
mod doctor;
mod eval;
mod healthcheck;
mod replay;
mod sandbox;
mod schema;
mod serve;
mod setup;
mod test;

use std::process::ExitCode;

use crate::cli::{Cli, Command, SetupTarget};

/// Exit status for usage and I/O errors, and for commands not built yet.
pub const EXIT_USAGE: u8 = 2;

pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Check {
            paths,
            config,
            format,
            allow_empty,
        } => check::run(paths, config, format, allow_empty),
        Command::Schema { out } => schema::run(&out),
        Command::Serve {
            config,
            sandbox,
            listen,
            sandbox_listen,
            log_format,
        } => {
            let sandbox = sandbox.then_some(serve::SandboxAddrs {
                service: listen,
                sandbox: sandbox_listen,
            });
            serve::run(config.as_deref(), sandbox, log_format)
        }
        Command::Test {
            paths,
            bless,
            run,
            junit,
        } => test::run(paths, bless, run, junit),
        Command::Eval {
            event,
            context,
            now,
            trace,
            rules,
        } => eval::run(&event, context.as_deref(), now.as_deref(), trace, &rules),
        Command::Setup {
            target: SetupTarget::Hubspot { config },
        } => setup::run(&config),
        Command::Replay(args) => replay::run(args),
        Command::Dlq { action } => dlq::run(action),
        Command::Sandbox { listen } => sandbox::run(&listen),
        Command::Healthcheck { url, timeout } => healthcheck::run(&url, timeout),
        Command::Doctor { config } => doctor::run(&config),
    }
}

/// Loads and checks the service config at `path` (environment variables filled in);
/// the rendered diagnostics when it does not check.
fn checked_config(
    path: &std::path::Path,
    missing: pcsync_engine::MissingEnv,
) -> Result<pcsync_runtime::config::ServiceConfig, String> {
    let loaded = pcsync_runtime::config::load_config(path, &|k| std::env::var(k).ok(), missing);
    match loaded.value {
        Some(config) if !loaded.has_errors() => Ok(config),
        _ => Err(pcsync_engine::diagnostic::render_human(
            &loaded.sources,
            &loaded.diagnostics,
        )),
    }
}
