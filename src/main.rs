//! The `pcsync` binary: the CLI, and (in later stages) the service runtime that wires
//! the engine to the adapters.

mod cli;
mod commands;
// The store lands before the service that uses it (issue 5); its tests run now.
#[allow(dead_code, unused_imports)]
mod service;
#[allow(dead_code, unused_imports)]
mod store;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    commands::run(cli)
}
