//! One module per command.

mod check;
mod eval;
mod sandbox;
mod schema;
mod setup;
mod test;

use std::process::ExitCode;

use crate::cli::{Cli, Command, DlqAction, SetupTarget};

/// Exit status for usage and I/O errors, and for commands not built yet.
pub const EXIT_USAGE: u8 = 2;

pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Check {
            paths,
            config,
            format,
        } => check::run(paths, config, format),
        Command::Schema { out } => schema::run(&out),
        Command::Serve { .. } => not_yet("serve", "the service runtime"),
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
        Command::Dlq { action } => {
            let name = match action {
                DlqAction::List { .. } => "dlq list",
                DlqAction::Retry { .. } => "dlq retry",
                DlqAction::Drop { .. } => "dlq drop",
            };
            not_yet(name, "the dead-letter list")
        }
        Command::Sandbox { listen } => sandbox::run(&listen),
    }
}

/// Commands whose stage has not landed answer plainly and fail, so no script
/// mistakes them for success.
fn not_yet(command: &str, what: &str) -> ExitCode {
    eprintln!("pcsync {command}: not implemented yet ({what} lands in a later release)");
    ExitCode::from(EXIT_USAGE)
}
