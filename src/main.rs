//! The `pcsync` binary: a thin CLI. Each command lives in `commands/`; the rule-pack
//! language is `pcsync-engine`, the service `pcsync-runtime`, the remote APIs'
//! clients `pcsync-adapters`, and the local stand-ins for them `pcsync-sandbox`.

mod cli;
mod commands;
mod progress;
mod redact;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // glibc gives each thread that meets contention its own malloc arena, up to
    // eight per core, and each keeps its freed memory. The service's threads (HTTP,
    // store calls, checkpoints) made that 20-25 MiB of peak RSS on the ingest bench;
    // four arenas cost no measurable throughput. Set before any thread starts.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; nothing else runs yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
    let cli = cli::Cli::parse();
    commands::run(cli)
}
