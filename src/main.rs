//! The `pcsync` binary: the CLI, and (in later stages) the service runtime that wires
//! the engine to the adapters.

mod cli;
mod commands;
mod service;
mod store;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    commands::run(cli)
}
